//! HF checkpoint conversion: stories260K written out as a Hugging Face llama checkpoint
//! (rotate_half q/k layout, two shards, byte-level BPE tokenizer.json) must convert back to
//! a model with bit-identical logits (F32) or near-identical ones (F16 / BF16).

use std::borrow::Cow;
use std::path::PathBuf;

use inference::exec::Inline;
use inference::kernels::{CpuFeatures, Kernels};
use inference::model::Matrix;
use inference::quant::{dequantize_row, f32_to_f16};
use inference::Model;
use mk_models::eval::{all_logits, teacher_forced};
use mk_models::gguf::gpt2_byte_to_char;
use mk_models::hf::{convert_dir, permute_to_rotate_half};
use mk_models::{llama2c, Quant};
use safetensors::{Dtype, View};

const CKPT: &[u8] = include_bytes!("../stories260k/stories260K.bin");
const TOK: &[u8] = include_bytes!("../stories260k/tok512.bin");

struct T {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &T {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn encode(v: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::F16 => v
            .iter()
            .flat_map(|&x| f32_to_f16(x).to_le_bytes())
            .collect(),
        // Round to nearest even.
        _ => v
            .iter()
            .flat_map(|&x| {
                let b = x.to_bits();
                let r = b.wrapping_add(0x7fff + ((b >> 16) & 1));
                ((r >> 16) as u16).to_le_bytes()
            })
            .collect(),
    }
}

fn values(m: &Matrix) -> Vec<f32> {
    let mut v = vec![0.0; m.rows * m.cols];
    for r in 0..m.rows {
        dequantize_row(m.qtype, m.row(r), &mut v[r * m.cols..(r + 1) * m.cols]);
    }
    v
}

fn write_hf(model: &Model, dtype: Dtype, dir: &PathBuf) {
    let c = &model.config;
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": c.dim, "intermediate_size": c.hidden_dim,
        "num_hidden_layers": c.n_layers, "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads, "vocab_size": c.vocab_size,
        "max_position_embeddings": c.seq_len, "rope_theta": c.rope_theta,
        "rms_norm_eps": c.norm_eps, "tie_word_embeddings": true,
        "bos_token_id": 1, "eos_token_id": 2,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    // Byte-level BPE: 256 byte symbols, then 256 two-letter merges.
    let chars = gpt2_byte_to_char();
    let mut vocab = serde_json::Map::new();
    for (b, ch) in chars.iter().enumerate() {
        vocab.insert(ch.to_string(), b.into());
    }
    let mut merges = Vec::new();
    for i in 0..c.vocab_size - 256 {
        let (a, b) = (
            (b'a' + (i % 26) as u8) as char,
            (b'a' + (i / 26) as u8) as char,
        );
        vocab.insert(format!("{a}{b}"), (256 + i).into());
        merges.push(format!("{a} {b}"));
    }
    let tj = serde_json::json!({"model": {"type": "BPE", "vocab": vocab, "merges": merges}, "added_tokens": []});
    std::fs::write(dir.join("tokenizer.json"), tj.to_string()).unwrap();

    let w = &model.weights;
    let t = |v: &[f32], shape: Vec<usize>| T {
        dtype,
        shape,
        data: encode(v, dtype),
    };
    let (dim, kv, hid) = (c.dim, c.kv_dim(), c.hidden_dim);
    let mut shard0 = vec![
        (
            "model.embed_tokens.weight".to_string(),
            t(&values(&w.tok_embeddings), vec![c.vocab_size, dim]),
        ),
        ("model.norm.weight".to_string(), t(&w.norm, vec![dim])),
    ];
    let mut shard1 = Vec::new();
    for (l, lw) in w.layers.iter().enumerate() {
        let p = |s: &str| format!("model.layers.{l}.{s}.weight");
        let dst = if l % 2 == 0 { &mut shard0 } else { &mut shard1 };
        dst.push((p("input_layernorm"), t(&lw.attention_norm, vec![dim])));
        dst.push((p("post_attention_layernorm"), t(&lw.ffn_norm, vec![dim])));
        let q = permute_to_rotate_half(&values(&lw.wq), c.n_heads, dim);
        let k = permute_to_rotate_half(&values(&lw.wk), c.n_kv_heads, dim);
        dst.push((p("self_attn.q_proj"), t(&q, vec![dim, dim])));
        dst.push((p("self_attn.k_proj"), t(&k, vec![kv, dim])));
        dst.push((p("self_attn.v_proj"), t(&values(&lw.wv), vec![kv, dim])));
        dst.push((p("self_attn.o_proj"), t(&values(&lw.wo), vec![dim, dim])));
        dst.push((p("mlp.gate_proj"), t(&values(&lw.w1), vec![hid, dim])));
        dst.push((p("mlp.down_proj"), t(&values(&lw.w2), vec![dim, hid])));
        dst.push((p("mlp.up_proj"), t(&values(&lw.w3), vec![hid, dim])));
    }
    for (i, shard) in [shard0, shard1].iter().enumerate() {
        let bytes =
            safetensors::serialize(shard.iter().map(|(n, t)| (n.as_str(), t)), None).unwrap();
        std::fs::write(
            dir.join(format!("model-0000{}-of-00002.safetensors", i + 1)),
            bytes,
        )
        .unwrap();
    }
}

fn tmpdir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mk-models-hf-{tag}-{}", std::process::id()))
}

#[test]
fn hf_checkpoint_roundtrip() {
    let ours = llama2c::convert(CKPT, TOK, Quant::F32).unwrap();
    let reference = Model::load(&ours).unwrap();
    let k = Kernels::select(&CpuFeatures::default());
    let seq: Vec<u32> = vec![
        1, 403, 407, 261, 378, 306, 275, 350, 430, 265, 267, 300, 13, 290, 455,
    ];
    let expected = all_logits(&reference, &seq, &k, &Inline);
    for (dtype, min_agreement) in [(Dtype::F32, 1.0), (Dtype::F16, 0.9), (Dtype::BF16, 0.9)] {
        let dir = tmpdir(&format!("{dtype:?}"));
        write_hf(&reference, dtype, &dir);
        let bytes = convert_dir(&dir, Quant::F32).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let m = Model::load(&bytes).unwrap();
        assert_eq!(m.config, reference.config);
        // The tokenizer came across: "ab" is one merged token.
        assert_eq!(m.tokenizer.encode("ab", false), [256 + 26]);
        if dtype == Dtype::F32 {
            assert_eq!(all_logits(&m, &seq, &k, &Inline), expected);
        }
        let a = teacher_forced(&reference, &m, &seq, &k, &Inline);
        println!(
            "HF {dtype:?}: top-1 {:.1}%, max logit error {}",
            100.0 * a.ratio(),
            a.max_logit_error
        );
        assert!(a.ratio() >= min_agreement, "{dtype:?}: {a:?}");
    }
}

#[test]
fn hf_errors_are_reported() {
    let dir = tmpdir("bad");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(convert_dir(&dir, Quant::F32).is_err());
    std::fs::write(dir.join("config.json"), "{\"architectures\": [\"GPT2\"]}").unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    let e = convert_dir(&dir, Quant::F32).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        e.contains("safetensors") || e.contains("LlamaForCausalLM"),
        "{e}"
    );
}
