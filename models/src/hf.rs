//! Hugging Face llama checkpoints -> our model: a directory with `config.json`,
//! `tokenizer.json` (byte-level BPE, as SmolLM2 / GPT-2) and one or more `*.safetensors`
//! shards with F32, F16 or BF16 tensors.
//!
//! HF llama q/k projections are laid out for `rotate_half` RoPE (first half of each head
//! paired with the second half); our forward pass rotates interleaved pairs, so their rows are
//! permuted per head: new row 2i + j <- old row j * head_dim/2 + i (the same permutation as
//! llama.cpp's converter).

use std::collections::HashMap;
use std::path::Path;

use inference::format::{self, token_type, ModelWriter};
use inference::quant::{f16_to_f32, QuantType};
use inference::tokenizer::{TokenizerKind, Vocab};
use inference::{Config, Model};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::gguf::gpt2_byte_to_char;
use crate::requantize::requantize;
use crate::{read_file, ConvertError, Quant};

fn bad<T>(what: impl Into<String>) -> Result<T, ConvertError> {
    Err(ConvertError::Input(what.into()))
}

fn json(path: &Path) -> Result<Value, ConvertError> {
    let bytes = read_file(&path.to_string_lossy())?;
    serde_json::from_slice(&bytes).or_else(|e| bad(format!("{}: {e}", path.display())))
}

/// HF rotate_half layout -> interleaved pairs, for a [heads * head_dim, cols] matrix.
pub fn permute_for_interleaved_rope(w: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let rows = w.len() / cols;
    let hd = rows / heads;
    let mut out = vec![0.0f32; w.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let src = h * hd + j * (hd / 2) + i;
                let dst = h * hd + 2 * i + j;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// The inverse of `permute_for_interleaved_rope` (tests use it to write HF checkpoints).
pub fn permute_to_rotate_half(w: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let rows = w.len() / cols;
    let hd = rows / heads;
    let mut out = vec![0.0f32; w.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let src = h * hd + 2 * i + j;
                let dst = h * hd + j * (hd / 2) + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

fn to_f32(dtype: Dtype, data: &[u8]) -> Result<Vec<f32>, ConvertError> {
    Ok(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        other => return bad(format!("tensor dtype {other:?} unsupported (F32/F16/BF16)")),
    })
}

fn read_config(cfg: &Value) -> Result<Config, ConvertError> {
    let num = |k: &str| {
        cfg[k]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| ConvertError::Input(format!("config.json: {k} missing")))
    };
    let arch_ok = cfg["architectures"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("LlamaForCausalLM")));
    if !arch_ok {
        return bad("config.json: only LlamaForCausalLM is supported");
    }
    if !cfg["rope_scaling"].is_null() {
        return bad("config.json: rope_scaling is not supported");
    }
    let n_heads = num("num_attention_heads")?;
    let c = Config {
        dim: num("hidden_size")?,
        hidden_dim: num("intermediate_size")?,
        n_layers: num("num_hidden_layers")?,
        n_heads,
        n_kv_heads: num("num_key_value_heads").unwrap_or(n_heads),
        vocab_size: num("vocab_size")?,
        seq_len: num("max_position_embeddings")?,
        rope_theta: cfg["rope_theta"].as_f64().unwrap_or(10000.0) as f32,
        norm_eps: cfg["rms_norm_eps"].as_f64().unwrap_or(1e-5) as f32,
        tied_classifier: cfg["tie_word_embeddings"].as_bool().unwrap_or(false),
    };
    c.check().map_err(|e| ConvertError::Input(e.into()))?;
    Ok(c)
}

/// tokenizer.json (byte-level BPE) -> vocabulary.
fn read_tokenizer(tj: &Value, cfg: &Value, vocab_size: usize) -> Result<Vocab, ConvertError> {
    let model = &tj["model"];
    if model["type"].as_str() != Some("BPE") {
        return bad("tokenizer.json: only BPE models are supported");
    }
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| ConvertError::Input("tokenizer.json: model.vocab missing".into()))?;
    let mut texts: Vec<Option<String>> = vec![None; vocab_size];
    let mut types = vec![token_type::NORMAL; vocab_size];
    let mut put = |text: &str, id: u64, ty: u8| -> Result<(), ConvertError> {
        let slot = texts
            .get_mut(id as usize)
            .ok_or_else(|| ConvertError::Input(format!("token id {id} >= vocab_size")))?;
        *slot = Some(text.to_string());
        types[id as usize] = ty;
        Ok(())
    };
    for (text, id) in vocab {
        put(text, id.as_u64().unwrap_or(u64::MAX), token_type::NORMAL)?;
    }
    for t in tj["added_tokens"].as_array().into_iter().flatten() {
        let ty = if t["special"].as_bool() == Some(true) {
            token_type::CONTROL
        } else {
            token_type::USER_DEFINED
        };
        put(
            t["content"].as_str().unwrap_or(""),
            t["id"].as_u64().unwrap_or(u64::MAX),
            ty,
        )?;
    }
    let inv: HashMap<char, u8> = gpt2_byte_to_char()
        .iter()
        .enumerate()
        .map(|(b, &c)| (c, b as u8))
        .collect();
    let mut tokens = Vec::with_capacity(vocab_size);
    for (i, t) in texts.iter().enumerate() {
        let t = t.as_deref().unwrap_or("");
        if texts[i].is_none() {
            types[i] = token_type::UNUSED;
        }
        let mapped: Option<Vec<u8>> = t.chars().map(|c| inv.get(&c).copied()).collect();
        tokens.push(match mapped {
            Some(b) if types[i] == token_type::NORMAL => b,
            _ => t.as_bytes().to_vec(),
        });
    }
    let index: HashMap<&str, u32> = texts
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.as_deref().map(|t| (t, i as u32)))
        .collect();
    let mut merges = Vec::new();
    for m in model["merges"].as_array().into_iter().flatten() {
        // Either "a b" or ["a", "b"].
        let (a, b) = match m {
            Value::String(s) => match s.split_once(' ') {
                Some(p) => p,
                None => return bad(format!("merge {s:?}")),
            },
            Value::Array(p) if p.len() == 2 => {
                (p[0].as_str().unwrap_or(""), p[1].as_str().unwrap_or(""))
            }
            _ => return bad("tokenizer.json: bad merge entry"),
        };
        match (index.get(a), index.get(b)) {
            (Some(&x), Some(&y)) => merges.push((x, y)),
            _ => return bad(format!("merge {a:?} {b:?} names unknown tokens")),
        }
    }
    let id = |k: &str| cfg[k].as_u64().map(|v| v as u32);
    let mut eos: Vec<u32> = match &cfg["eos_token_id"] {
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_u64())
            .map(|v| v as u32)
            .collect(),
        v => v.as_u64().map(|v| v as u32).into_iter().collect(),
    };
    eos.retain(|&e| (e as usize) < vocab_size);
    Ok(Vocab {
        kind: TokenizerKind::Gpt2,
        tokens,
        scores: Vec::new(),
        types,
        merges,
        bos: id("bos_token_id").filter(|&b| (b as usize) < vocab_size),
        eos,
        add_bos: false,
    })
}

/// Converts a HF checkpoint directory.
pub fn convert_dir(dir: &Path, quant: Quant) -> Result<Vec<u8>, ConvertError> {
    let cfg = json(&dir.join("config.json"))?;
    let tj = json(&dir.join("tokenizer.json"))?;
    let mut shards: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| ConvertError::Io(dir.display().to_string(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    shards.sort();
    if shards.is_empty() {
        return bad("no *.safetensors in the directory");
    }
    let shard_bytes = shards
        .iter()
        .map(|p| read_file(&p.to_string_lossy()))
        .collect::<Result<Vec<_>, _>>()?;
    let files = shard_bytes
        .iter()
        .map(|b| SafeTensors::deserialize(b).or_else(|e| bad(format!("safetensors: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>, ConvertError> {
        for f in &files {
            if let Ok(t) = f.tensor(name) {
                if t.shape() != shape {
                    return bad(format!("{name}: shape {:?}, expected {shape:?}", t.shape()));
                }
                return to_f32(t.dtype(), t.data());
            }
        }
        bad(format!("tensor {name} missing"))
    };
    let mut c = read_config(&cfg)?;
    if c.tied_classifier
        && files.iter().any(|f| f.tensor("lm_head.weight").is_ok())
        && tensor("lm_head.weight", &[c.vocab_size, c.dim])?
            != tensor("model.embed_tokens.weight", &[c.vocab_size, c.dim])?
    {
        c.tied_classifier = false;
    }
    let vocab = read_tokenizer(&tj, &cfg, c.vocab_size)?;
    let (dim, hid, kv) = (c.dim, c.hidden_dim, c.kv_dim());
    let mut w = ModelWriter::new(&c);
    let f32m = QuantType::F32;
    w.add_matrix(
        format::T_TOK_EMBD,
        f32m,
        c.vocab_size,
        dim,
        &tensor("model.embed_tokens.weight", &[c.vocab_size, dim])?,
    )?;
    if !c.tied_classifier {
        w.add_matrix(
            format::T_OUTPUT,
            f32m,
            c.vocab_size,
            dim,
            &tensor("lm_head.weight", &[c.vocab_size, dim])?,
        )?;
    }
    w.add_vector(format::T_NORM, &tensor("model.norm.weight", &[dim])?)?;
    for l in 0..c.n_layers {
        let p = |s: &str| format!("model.layers.{l}.{s}.weight");
        let ours = |s: &str| format::layer_tensor(l, s);
        w.add_vector(
            &ours("attention_norm"),
            &tensor(&p("input_layernorm"), &[dim])?,
        )?;
        w.add_vector(
            &ours("ffn_norm"),
            &tensor(&p("post_attention_layernorm"), &[dim])?,
        )?;
        let q = permute_for_interleaved_rope(
            &tensor(&p("self_attn.q_proj"), &[dim, dim])?,
            c.n_heads,
            dim,
        );
        let k = permute_for_interleaved_rope(
            &tensor(&p("self_attn.k_proj"), &[kv, dim])?,
            c.n_kv_heads,
            dim,
        );
        w.add_matrix(&ours("wq"), f32m, dim, dim, &q)?;
        w.add_matrix(&ours("wk"), f32m, kv, dim, &k)?;
        w.add_matrix(
            &ours("wv"),
            f32m,
            kv,
            dim,
            &tensor(&p("self_attn.v_proj"), &[kv, dim])?,
        )?;
        w.add_matrix(
            &ours("wo"),
            f32m,
            dim,
            dim,
            &tensor(&p("self_attn.o_proj"), &[dim, dim])?,
        )?;
        w.add_matrix(
            &ours("w1"),
            f32m,
            hid,
            dim,
            &tensor(&p("mlp.gate_proj"), &[hid, dim])?,
        )?;
        w.add_matrix(
            &ours("w2"),
            f32m,
            dim,
            hid,
            &tensor(&p("mlp.down_proj"), &[dim, hid])?,
        )?;
        w.add_matrix(
            &ours("w3"),
            f32m,
            hid,
            dim,
            &tensor(&p("mlp.up_proj"), &[hid, dim])?,
        )?;
    }
    w.set_tokenizer(&vocab)?;
    w.set_meta(format::KEY_SOURCE, "Hugging Face safetensors");
    if let Some(t) = tj
        .get("chat_template")
        .or(cfg.get("chat_template"))
        .and_then(Value::as_str)
    {
        if t.contains("<|im_start|>") {
            w.set_meta(format::KEY_CHAT_TEMPLATE, "chatml");
        }
    }
    let exact = w.finish();
    if quant == Quant::F32 {
        return Ok(exact);
    }
    let model = Model::load(&exact).map_err(|e| ConvertError::Input(e.to_string()))?;
    requantize(&model, quant, None)
}
