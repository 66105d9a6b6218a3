//! llama2.c legacy ("version 0") checkpoint + `tokenizer.bin` -> our model file.
//! Layouts: models/stories260k/SOURCE.md.

use inference::format::{token_type, ModelWriter};
use inference::tokenizer::{TokenizerKind, Vocab};
use inference::Config;

use inference::exec::Inline;
use inference::kernels::{CpuFeatures, Kernels};
use inference::quant::QuantType;
use inference::Model;

use crate::calibration::calibrate;
use crate::requantize::{requantize, self_generated_sequences};
use crate::{ConvertError, Quant};

fn read_i32(b: &[u8], at: usize) -> Result<i32, ConvertError> {
    b.get(at..at + 4)
        .map(|s| i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| ConvertError::Input("truncated file".into()))
}

fn read_f32s(b: &[u8], at: &mut usize, n: usize) -> Result<Vec<f32>, ConvertError> {
    let end = n
        .checked_mul(4)
        .and_then(|len| at.checked_add(len))
        .filter(|&e| e <= b.len())
        .ok_or_else(|| ConvertError::Input("checkpoint truncated".into()))?;
    let v = b[*at..end]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    *at = end;
    Ok(v)
}

/// Parses tokenizer.bin: i32 max_token_length, then per token f32 score, i32 len, bytes.
pub fn read_tokenizer(b: &[u8], vocab_size: usize) -> Result<Vocab, ConvertError> {
    let mut at = 4;
    read_i32(b, 0)?;
    let mut tokens = Vec::with_capacity(vocab_size);
    let mut scores = Vec::with_capacity(vocab_size);
    let mut types = Vec::with_capacity(vocab_size);
    for id in 0..vocab_size {
        let score = f32::from_bits(read_i32(b, at)? as u32);
        let len = read_i32(b, at + 4)?;
        let len = usize::try_from(len)
            .map_err(|_| ConvertError::Input(format!("token {id}: negative length")))?;
        let bytes = b
            .get(at + 8..at + 8 + len)
            .ok_or_else(|| ConvertError::Input("tokenizer truncated".into()))?
            .to_vec();
        at += 8 + len;
        let is_byte = bytes.len() == 6 && bytes.starts_with(b"<0x") && bytes.ends_with(b">");
        types.push(match id {
            0 => token_type::UNKNOWN,
            1 | 2 => token_type::CONTROL,
            _ if is_byte => token_type::BYTE,
            _ => token_type::NORMAL,
        });
        tokens.push(bytes);
        scores.push(score);
    }
    Ok(Vocab {
        kind: TokenizerKind::SentencePiece,
        tokens,
        scores,
        types,
        merges: Vec::new(),
        bos: Some(1),
        // llama2.c's run.c stops when BOS is sampled.
        eos: vec![1],
        add_bos: true,
    })
}

/// Converts a checkpoint + tokenizer to our format with matrices at `quant`. Quantised
/// targets are calibrated on text the f32 model samples itself (32 x 400 tokens, seeds
/// 1-32): importance-weighted block search plus GPTQ error feedback (llama2.c models are
/// small, so this costs seconds). `convert_with(.., false)` skips GPTQ.
pub fn convert(ckpt: &[u8], tokenizer: &[u8], quant: Quant) -> Result<Vec<u8>, ConvertError> {
    convert_with(ckpt, tokenizer, quant, true)
}

pub fn convert_with(
    ckpt: &[u8],
    tokenizer: &[u8],
    quant: Quant,
    gptq: bool,
) -> Result<Vec<u8>, ConvertError> {
    let exact = convert_f32(ckpt, tokenizer)?;
    if quant == Quant::F32 {
        return Ok(exact);
    }
    let model = Model::load(&exact).map_err(|e| ConvertError::Input(e.to_string()))?;
    let kernels = Kernels::select(&CpuFeatures::default());
    let seqs = self_generated_sequences(&model, "", 32, 400, &kernels, &Inline);
    let stats = calibrate(&model, &seqs, gptq, &kernels, &Inline);
    requantize(&model, quant, Some(&stats))
}

/// Converts a checkpoint + tokenizer to an exact f32 model.
pub fn convert_f32(ckpt: &[u8], tokenizer: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let mut h = [0i32; 7];
    for (i, v) in h.iter_mut().enumerate() {
        *v = read_i32(ckpt, 4 * i)?;
    }
    if h.iter().enumerate().any(|(i, &v)| v <= 0 && i != 5) || h[5] == 0 {
        return Err(ConvertError::Input(format!("bad header {h:?}")));
    }
    let tied = h[5] > 0;
    let c = Config {
        dim: h[0] as usize,
        hidden_dim: h[1] as usize,
        n_layers: h[2] as usize,
        n_heads: h[3] as usize,
        n_kv_heads: h[4] as usize,
        vocab_size: h[5].unsigned_abs() as usize,
        seq_len: h[6] as usize,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        tied_classifier: tied,
    };
    c.check().map_err(|e| ConvertError::Input(e.into()))?;
    let (dim, hid, nl, kv) = (c.dim, c.hidden_dim, c.n_layers, c.kv_dim());
    let mut at = 28;
    let emb = read_f32s(ckpt, &mut at, c.vocab_size * dim)?;
    let rms_att = read_f32s(ckpt, &mut at, nl * dim)?;
    let wq = read_f32s(ckpt, &mut at, nl * dim * dim)?;
    let wk = read_f32s(ckpt, &mut at, nl * kv * dim)?;
    let wv = read_f32s(ckpt, &mut at, nl * kv * dim)?;
    let wo = read_f32s(ckpt, &mut at, nl * dim * dim)?;
    let rms_ffn = read_f32s(ckpt, &mut at, nl * dim)?;
    let w1 = read_f32s(ckpt, &mut at, nl * hid * dim)?;
    let w2 = read_f32s(ckpt, &mut at, nl * dim * hid)?;
    let w3 = read_f32s(ckpt, &mut at, nl * hid * dim)?;
    let rms_final = read_f32s(ckpt, &mut at, dim)?;
    // Legacy RoPE tables (unused): seq_len * head_size/2 twice.
    read_f32s(ckpt, &mut at, c.seq_len * c.head_dim())?;
    let wcls = if tied {
        None
    } else {
        Some(read_f32s(ckpt, &mut at, c.vocab_size * dim)?)
    };
    if at != ckpt.len() {
        return Err(ConvertError::Input(format!(
            "{} trailing bytes after the weights",
            ckpt.len() - at
        )));
    }
    let vocab = read_tokenizer(tokenizer, c.vocab_size)?;

    let mut w = ModelWriter::new(&c);
    let add = |w: &mut ModelWriter, name: &str, qt, rows, cols, v: &[f32]| {
        w.add_matrix(name, qt, rows, cols, v)
    };
    let mq = QuantType::F32;
    add(&mut w, "tok_embeddings", mq, c.vocab_size, dim, &emb)?;
    w.add_vector("norm", &rms_final)?;
    if let Some(wcls) = &wcls {
        add(&mut w, "output", mq, c.vocab_size, dim, wcls)?;
    }
    let layer = |v: &[f32], l: usize, n: usize| v[l * n..(l + 1) * n].to_vec();
    for l in 0..nl {
        let name = |s: &str| inference::format::layer_tensor(l, s);
        w.add_vector(&name("attention_norm"), &layer(&rms_att, l, dim))?;
        w.add_vector(&name("ffn_norm"), &layer(&rms_ffn, l, dim))?;
        add(&mut w, &name("wq"), mq, dim, dim, &layer(&wq, l, dim * dim))?;
        add(&mut w, &name("wk"), mq, kv, dim, &layer(&wk, l, kv * dim))?;
        add(&mut w, &name("wv"), mq, kv, dim, &layer(&wv, l, kv * dim))?;
        add(&mut w, &name("wo"), mq, dim, dim, &layer(&wo, l, dim * dim))?;
        add(&mut w, &name("w1"), mq, hid, dim, &layer(&w1, l, hid * dim))?;
        add(&mut w, &name("w2"), mq, dim, hid, &layer(&w2, l, dim * hid))?;
        add(&mut w, &name("w3"), mq, hid, dim, &layer(&w3, l, hid * dim))?;
    }
    w.set_tokenizer(&vocab)?;
    w.set_meta(inference::format::KEY_SOURCE, "llama2.c legacy checkpoint");
    Ok(w.finish())
}
