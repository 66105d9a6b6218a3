//! GGUF conversion on a GGUF written here from stories260K (F32 and F16 tensors, GPT-2
//! tokenizer metadata): logits must equal the llama2.c conversion's (F32) or stay close
//! (F16), the F32 exporter must round-trip, and damaged files must be clear errors.

use inference::exec::Inline;
use inference::kernels::{CpuFeatures, Kernels};
use inference::model::Matrix;
use inference::quant::{dequantize_row, f32_to_f16};
use inference::Model;
use mk_models::eval::{all_logits, teacher_forced};
use mk_models::gguf::{self, gpt2_byte_to_char, GGML_F16, GGML_F32};
use mk_models::{llama2c, Quant};

const CKPT: &[u8] = include_bytes!("../stories260k/stories260K.bin");
const TOK: &[u8] = include_bytes!("../stories260k/tok512.bin");

fn values(m: &Matrix) -> Vec<f32> {
    let mut v = vec![0.0; m.rows * m.cols];
    for r in 0..m.rows {
        dequantize_row(m.qtype, m.row(r), &mut v[r * m.cols..(r + 1) * m.cols]);
    }
    v
}

struct W(Vec<u8>);

impl W {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn kv_u32(&mut self, k: &str, v: u32) {
        self.str(k);
        self.u32(4);
        self.u32(v);
    }
    fn kv_f32(&mut self, k: &str, v: f32) {
        self.str(k);
        self.u32(6);
        self.u32(v.to_bits());
    }
    fn kv_str(&mut self, k: &str, v: &str) {
        self.str(k);
        self.u32(8);
        self.str(v);
    }
    fn kv_strs(&mut self, k: &str, v: &[String]) {
        self.str(k);
        self.u32(9);
        self.u32(8);
        self.u64(v.len() as u64);
        for s in v {
            self.str(s);
        }
    }
    fn kv_i32s(&mut self, k: &str, v: &[i32]) {
        self.str(k);
        self.u32(9);
        self.u32(5);
        self.u64(v.len() as u64);
        for &x in v {
            self.u32(x as u32);
        }
    }
}

/// stories260K as a llama GGUF with matrices of `ggml_type` (F32 or F16), norms F32.
fn write_gguf(m: &Model, ggml_type: u32) -> Vec<u8> {
    let c = &m.config;
    let w = &m.weights;
    let mut tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)> = Vec::new();
    let enc = |v: &[f32], t: u32| -> Vec<u8> {
        if t == GGML_F16 {
            v.iter()
                .flat_map(|&x| f32_to_f16(x).to_le_bytes())
                .collect()
        } else {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
    };
    let mut mat = |name: String, m: &Matrix| {
        tensors.push((
            name,
            vec![m.cols as u64, m.rows as u64],
            ggml_type,
            enc(&values(m), ggml_type),
        ));
    };
    mat("token_embd.weight".into(), &w.tok_embeddings);
    for (l, lw) in w.layers.iter().enumerate() {
        for (g, mm) in [
            ("attn_q", &lw.wq),
            ("attn_k", &lw.wk),
            ("attn_v", &lw.wv),
            ("attn_output", &lw.wo),
            ("ffn_gate", &lw.w1),
            ("ffn_down", &lw.w2),
            ("ffn_up", &lw.w3),
        ] {
            mat(format!("blk.{l}.{g}.weight"), mm);
        }
    }
    let mut vec = |name: String, v: &[f32]| {
        tensors.push((name, vec![v.len() as u64], GGML_F32, enc(v, GGML_F32)));
    };
    vec("output_norm.weight".into(), &w.norm);
    for (l, lw) in w.layers.iter().enumerate() {
        vec(format!("blk.{l}.attn_norm.weight"), &lw.attention_norm);
        vec(format!("blk.{l}.ffn_norm.weight"), &lw.ffn_norm);
    }
    // GPT-2 style vocabulary: 256 byte symbols, then two-letter merges.
    let chars = gpt2_byte_to_char();
    let mut tokens: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
    let mut merges = Vec::new();
    for i in 0..c.vocab_size - 256 {
        let (a, b) = (
            (b'a' + (i % 26) as u8) as char,
            (b'a' + (i / 26) as u8) as char,
        );
        tokens.push(format!("{a}{b}"));
        merges.push(format!("{a} {b}"));
    }
    let mut o = W(Vec::new());
    o.0.extend_from_slice(b"GGUF");
    o.u32(3);
    o.u64(tensors.len() as u64);
    o.u64(14);
    o.kv_str("general.architecture", "llama");
    o.kv_u32("llama.embedding_length", c.dim as u32);
    o.kv_u32("llama.feed_forward_length", c.hidden_dim as u32);
    o.kv_u32("llama.block_count", c.n_layers as u32);
    o.kv_u32("llama.attention.head_count", c.n_heads as u32);
    o.kv_u32("llama.attention.head_count_kv", c.n_kv_heads as u32);
    o.kv_u32("llama.context_length", c.seq_len as u32);
    o.kv_f32("llama.rope.freq_base", c.rope_theta);
    o.kv_f32("llama.attention.layer_norm_rms_epsilon", c.norm_eps);
    o.kv_str("tokenizer.ggml.model", "gpt2");
    o.kv_strs("tokenizer.ggml.tokens", &tokens);
    o.kv_i32s("tokenizer.ggml.token_type", &vec![1; tokens.len()]);
    o.kv_strs("tokenizer.ggml.merges", &merges);
    o.kv_u32("tokenizer.ggml.eos_token_id", 1);
    let mut offset = 0u64;
    for (name, dims, ty, data) in &tensors {
        o.str(name);
        o.u32(dims.len() as u32);
        for &d in dims {
            o.u64(d);
        }
        o.u32(*ty);
        o.u64(offset);
        offset += (data.len() as u64).div_ceil(32) * 32;
    }
    while !o.0.len().is_multiple_of(32) {
        o.0.push(0);
    }
    for (_, _, _, data) in &tensors {
        o.0.extend_from_slice(data);
        while !o.0.len().is_multiple_of(32) {
            o.0.push(0);
        }
    }
    o.0
}

#[test]
fn gguf_f32_and_f16_convert_and_export() {
    let ours = llama2c::convert(CKPT, TOK, Quant::F32).unwrap();
    let reference = Model::load(&ours).unwrap();
    let k = Kernels::select(&CpuFeatures::default());
    let seq: Vec<u32> = vec![
        1, 403, 407, 261, 378, 306, 275, 350, 430, 265, 267, 300, 13, 290,
    ];
    let expected = all_logits(&reference, &seq, &k, &Inline);

    let f32_gguf = write_gguf(&reference, GGML_F32);
    let m32_bytes = gguf::convert(&f32_gguf, Quant::F32).unwrap();
    let m32 = Model::load(&m32_bytes).unwrap();
    assert_eq!(m32.config, reference.config);
    assert_eq!(all_logits(&m32, &seq, &k, &Inline), expected);
    assert_eq!(m32.tokenizer.encode("ab", false), [256 + 26]);

    let f16_gguf = write_gguf(&reference, GGML_F16);
    let m16_bytes = gguf::convert(&f16_gguf, Quant::F32).unwrap();
    let m16 = Model::load(&m16_bytes).unwrap();
    let a = teacher_forced(&reference, &m16, &seq, &k, &Inline);
    assert!(a.ratio() >= 0.9 && a.max_logit_error < 0.1, "{a:?}");

    // The F32 exporter widens F16 exactly: same logits as converting the F16 file.
    let exported = gguf::export_f32(&f16_gguf).unwrap();
    let g = gguf::Gguf::parse(&exported).unwrap();
    assert!(g.tensors.iter().all(|t| t.ggml_type == GGML_F32));
    let mx_bytes = gguf::convert(&exported, Quant::F32).unwrap();
    let mx = Model::load(&mx_bytes).unwrap();
    assert_eq!(
        all_logits(&mx, &seq, &k, &Inline),
        all_logits(&m16, &seq, &k, &Inline)
    );

    // Quantised targets from an F16 GGUF.
    for q in [Quant::Q8_0, Quant::Q4_0, Quant::Q4_1] {
        let b = gguf::convert(&f16_gguf, q).unwrap();
        let m = Model::load(&b).unwrap();
        assert_eq!(m.weights.layers[0].w2.qtype, q.matrix_type());
    }
}

#[test]
fn damaged_gguf_is_an_error() {
    let ours = llama2c::convert(CKPT, TOK, Quant::F32).unwrap();
    let reference = Model::load(&ours).unwrap();
    let good = write_gguf(&reference, GGML_F16);
    assert!(gguf::convert(&good, Quant::F32).is_ok());
    for len in [0, 3, 20, 1000, good.len() / 2, good.len() - 1] {
        assert!(
            gguf::convert(&good[..len], Quant::F32).is_err(),
            "len {len}"
        );
    }
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(gguf::convert(&bad_magic, Quant::F32).is_err());
    let mut s = 77u32;
    for _ in 0..300 {
        let mut b = good.clone();
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        let i = (s as usize) % 4096.min(b.len());
        b[i] ^= (s >> 8) as u8 | 1;
        let _ = gguf::convert(&b, Quant::F32);
    }
}
