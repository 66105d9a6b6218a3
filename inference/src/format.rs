//! The microkernelia model file: one `.safetensors` file holding weights, hyper-parameters and
//! tokenizer. Names and keys live here; the layout is documented in docs/MODEL_FORMAT.md.
//! `ModelWriter` produces files (used by the `mk-models` converters and by tests that build
//! corrupted files); `model::Model::load` reads them.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::config::Config;
use crate::quant::{quantize_row, row_bytes, QuantType};
use crate::tokenizer::{TokenizerKind, Vocab};

/// Value of the `format` metadata key.
pub const FORMAT_NAME: &str = "microkernelia-llm";
/// Value of the `format_version` metadata key understood by this loader.
pub const FORMAT_VERSION: &str = "1";

// Metadata keys (all values are strings, safetensors requires that).
pub const KEY_FORMAT: &str = "format";
pub const KEY_VERSION: &str = "format_version";
pub const KEY_ARCH: &str = "arch";
pub const KEY_DIM: &str = "dim";
pub const KEY_HIDDEN_DIM: &str = "hidden_dim";
pub const KEY_N_LAYERS: &str = "n_layers";
pub const KEY_N_HEADS: &str = "n_heads";
pub const KEY_N_KV_HEADS: &str = "n_kv_heads";
pub const KEY_VOCAB_SIZE: &str = "vocab_size";
pub const KEY_SEQ_LEN: &str = "seq_len";
pub const KEY_ROPE_THETA: &str = "rope_theta";
pub const KEY_NORM_EPS: &str = "norm_eps";
pub const KEY_TIED: &str = "tied_classifier";
pub const KEY_TOK_KIND: &str = "tokenizer.kind";
pub const KEY_TOK_BOS: &str = "tokenizer.bos_id";
pub const KEY_TOK_EOS: &str = "tokenizer.eos_ids";
pub const KEY_TOK_ADD_BOS: &str = "tokenizer.add_bos";
pub const KEY_CHAT_TEMPLATE: &str = "chat.template";
pub const KEY_CHAT_SYSTEM: &str = "chat.default_system";
pub const KEY_NAME: &str = "name";
pub const KEY_SOURCE: &str = "source";
/// Prefix of the per-matrix quant type key: `qtype.<tensor>` = `F32|Q8_0|Q4_0|Q4_1`.
pub const QTYPE_PREFIX: &str = "qtype.";
/// Prefix of the per-matrix logical shape key: `shape.<tensor>` = `rows,cols` ([out, in]).
pub const SHAPE_PREFIX: &str = "shape.";

// Tensor names.
pub const T_TOK_EMBD: &str = "tok_embeddings";
pub const T_NORM: &str = "norm";
pub const T_OUTPUT: &str = "output";
pub const T_TOK_TOKENS: &str = "tokenizer.tokens";
pub const T_TOK_OFFSETS: &str = "tokenizer.token_offsets";
pub const T_TOK_SCORES: &str = "tokenizer.scores";
pub const T_TOK_TYPES: &str = "tokenizer.token_types";
pub const T_TOK_MERGES: &str = "tokenizer.merges";

/// Per-layer tensor names, `layers.<i>.<suffix>`.
pub const LAYER_VECTORS: [&str; 2] = ["attention_norm", "ffn_norm"];
/// Per-layer matrices, llama2.c names: wq wk wv wo (attention), w1 gate, w2 down, w3 up.
pub const LAYER_MATRICES: [&str; 7] = ["wq", "wk", "wv", "wo", "w1", "w2", "w3"];

pub fn layer_tensor(layer: usize, suffix: &str) -> String {
    format!("layers.{layer}.{suffix}")
}

/// Logical [rows, cols] of a per-layer matrix (PyTorch [out, in]).
pub fn layer_matrix_shape(c: &Config, suffix: &str) -> Option<(usize, usize)> {
    Some(match suffix {
        "wq" => (c.dim, c.dim),
        "wk" | "wv" => (c.kv_dim(), c.dim),
        "wo" => (c.dim, c.dim),
        "w1" | "w3" => (c.hidden_dim, c.dim),
        "w2" => (c.dim, c.hidden_dim),
        _ => return None,
    })
}

/// Token type codes stored in `tokenizer.token_types` (GGUF numbering).
pub mod token_type {
    pub const NORMAL: u8 = 1;
    pub const UNKNOWN: u8 = 2;
    pub const CONTROL: u8 = 3;
    pub const USER_DEFINED: u8 = 4;
    pub const UNUSED: u8 = 5;
    pub const BYTE: u8 = 6;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dtype {
    F32,
    U32,
    U8,
}

impl Dtype {
    fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::U32 => "U32",
            Dtype::U8 => "U8",
        }
    }
}

struct PendingTensor {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
    /// Sort key: 4-byte dtypes and F32 matrices first so they stay 4-byte aligned.
    order: u8,
}

/// Errors from building a model file.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteError {
    /// A matrix's data does not have the size its quant type and shape require.
    BadMatrixSize {
        name: String,
        expected: usize,
        actual: usize,
    },
    DuplicateTensor(String),
    InvalidConfig(&'static str),
}

impl core::fmt::Display for WriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WriteError::BadMatrixSize {
                name,
                expected,
                actual,
            } => write!(f, "matrix {name}: {actual} bytes, expected {expected}"),
            WriteError::DuplicateTensor(n) => write!(f, "tensor {n} added twice"),
            WriteError::InvalidConfig(why) => write!(f, "invalid config: {why}"),
        }
    }
}

/// Builds a model file in memory.
pub struct ModelWriter {
    meta: Vec<(String, String)>,
    tensors: Vec<PendingTensor>,
}

impl ModelWriter {
    pub fn new(c: &Config) -> Self {
        let mut w = ModelWriter {
            meta: Vec::new(),
            tensors: Vec::new(),
        };
        w.set_meta(KEY_FORMAT, FORMAT_NAME);
        w.set_meta(KEY_VERSION, FORMAT_VERSION);
        w.set_meta(KEY_ARCH, "llama");
        w.set_meta(KEY_DIM, &c.dim.to_string());
        w.set_meta(KEY_HIDDEN_DIM, &c.hidden_dim.to_string());
        w.set_meta(KEY_N_LAYERS, &c.n_layers.to_string());
        w.set_meta(KEY_N_HEADS, &c.n_heads.to_string());
        w.set_meta(KEY_N_KV_HEADS, &c.n_kv_heads.to_string());
        w.set_meta(KEY_VOCAB_SIZE, &c.vocab_size.to_string());
        w.set_meta(KEY_SEQ_LEN, &c.seq_len.to_string());
        // `{:?}` prints the shortest string that parses back to the same f32.
        w.set_meta(KEY_ROPE_THETA, &format!("{:?}", c.rope_theta));
        w.set_meta(KEY_NORM_EPS, &format!("{:?}", c.norm_eps));
        w.set_meta(KEY_TIED, if c.tied_classifier { "true" } else { "false" });
        w
    }

    /// Sets (or replaces) a metadata entry.
    pub fn set_meta(&mut self, key: &str, value: &str) {
        if let Some(e) = self.meta.iter_mut().find(|(k, _)| k == key) {
            e.1 = value.to_string();
        } else {
            self.meta.push((key.to_string(), value.to_string()));
        }
    }

    fn push(&mut self, t: PendingTensor) -> Result<(), WriteError> {
        if self.tensors.iter().any(|p| p.name == t.name) {
            return Err(WriteError::DuplicateTensor(t.name));
        }
        self.tensors.push(t);
        Ok(())
    }

    /// Adds an F32 vector (norm weights).
    pub fn add_vector(&mut self, name: &str, values: &[f32]) -> Result<(), WriteError> {
        self.push(PendingTensor {
            name: name.to_string(),
            dtype: Dtype::F32,
            shape: alloc::vec![values.len()],
            data: f32_bytes(values),
            order: 0,
        })
    }

    /// Adds a matrix already in `qtype` block layout (`rows` rows of `row_bytes(qtype, cols)`).
    pub fn add_matrix_raw(
        &mut self,
        name: &str,
        qtype: QuantType,
        rows: usize,
        cols: usize,
        data: Vec<u8>,
    ) -> Result<(), WriteError> {
        let rb = row_bytes(qtype, cols);
        let expected = rows * rb;
        if data.len() != expected {
            return Err(WriteError::BadMatrixSize {
                name: name.to_string(),
                expected,
                actual: data.len(),
            });
        }
        self.set_meta(&format!("{QTYPE_PREFIX}{name}"), qtype.name());
        self.set_meta(&format!("{SHAPE_PREFIX}{name}"), &format!("{rows},{cols}"));
        self.push(PendingTensor {
            name: name.to_string(),
            dtype: Dtype::U8,
            shape: alloc::vec![rows, rb],
            data,
            order: if qtype == QuantType::F32 { 1 } else { 2 },
        })
    }

    /// Quantises an f32 row-major [rows, cols] matrix to `qtype` and adds it.
    pub fn add_matrix(
        &mut self,
        name: &str,
        qtype: QuantType,
        rows: usize,
        cols: usize,
        values: &[f32],
    ) -> Result<(), WriteError> {
        if values.len() != rows * cols {
            return Err(WriteError::BadMatrixSize {
                name: name.to_string(),
                expected: rows * cols * 4,
                actual: values.len() * 4,
            });
        }
        let rb = row_bytes(qtype, cols);
        let mut data = alloc::vec![0u8; rows * rb];
        if cols > 0 {
            for (src, dst) in values.chunks_exact(cols).zip(data.chunks_exact_mut(rb)) {
                quantize_row(qtype, src, dst);
            }
        }
        self.add_matrix_raw(name, qtype, rows, cols, data)
    }

    /// Stores the tokenizer (vocabulary tensors + metadata).
    pub fn set_tokenizer(&mut self, v: &Vocab) -> Result<(), WriteError> {
        let kind = match v.kind {
            TokenizerKind::SentencePiece => "sentencepiece",
            TokenizerKind::Gpt2 => "gpt2",
        };
        self.set_meta(KEY_TOK_KIND, kind);
        if let Some(b) = v.bos {
            self.set_meta(KEY_TOK_BOS, &b.to_string());
        }
        let eos: Vec<String> = v.eos.iter().map(|e| e.to_string()).collect();
        self.set_meta(KEY_TOK_EOS, &eos.join(","));
        self.set_meta(KEY_TOK_ADD_BOS, if v.add_bos { "true" } else { "false" });
        let mut blob = Vec::new();
        let mut offsets = Vec::with_capacity(v.tokens.len() + 1);
        offsets.push(0u32);
        for t in &v.tokens {
            blob.extend_from_slice(t);
            offsets.push(blob.len() as u32);
        }
        let n = v.tokens.len();
        self.push(PendingTensor {
            name: T_TOK_OFFSETS.to_string(),
            dtype: Dtype::U32,
            shape: alloc::vec![n + 1],
            data: offsets.iter().flat_map(|o| o.to_le_bytes()).collect(),
            order: 0,
        })?;
        self.push(PendingTensor {
            name: T_TOK_SCORES.to_string(),
            dtype: Dtype::F32,
            shape: alloc::vec![v.scores.len()],
            data: f32_bytes(&v.scores),
            order: 0,
        })?;
        if !v.merges.is_empty() {
            self.push(PendingTensor {
                name: T_TOK_MERGES.to_string(),
                dtype: Dtype::U32,
                shape: alloc::vec![v.merges.len(), 2],
                data: v
                    .merges
                    .iter()
                    .flat_map(|&(a, b)| a.to_le_bytes().into_iter().chain(b.to_le_bytes()))
                    .collect(),
                order: 0,
            })?;
        }
        self.push(PendingTensor {
            name: T_TOK_TYPES.to_string(),
            dtype: Dtype::U8,
            shape: alloc::vec![v.types.len()],
            data: v.types.clone(),
            order: 3,
        })?;
        let len = blob.len();
        self.push(PendingTensor {
            name: T_TOK_TOKENS.to_string(),
            dtype: Dtype::U8,
            shape: alloc::vec![len],
            data: blob,
            order: 3,
        })
    }

    /// Serialises to safetensors bytes: u64 header length, JSON header padded with spaces to a
    /// multiple of 8, then the tensor data back to back in header order.
    pub fn finish(mut self) -> Vec<u8> {
        self.tensors
            .sort_by(|a, b| (a.order, &a.name).cmp(&(b.order, &b.name)));
        let mut header = String::from("{\"__metadata__\":{");
        for (i, (k, v)) in self.meta.iter().enumerate() {
            if i > 0 {
                header.push(',');
            }
            push_json_string(&mut header, k);
            header.push(':');
            push_json_string(&mut header, v);
        }
        header.push('}');
        let mut offset = 0usize;
        for t in &self.tensors {
            header.push(',');
            push_json_string(&mut header, &t.name);
            let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
            header.push_str(&format!(
                ":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                t.dtype.name(),
                shape.join(","),
                offset,
                offset + t.data.len()
            ));
            offset += t.data.len();
        }
        header.push('}');
        while header.len() % 8 != 0 {
            header.push(' ');
        }
        let mut out = Vec::with_capacity(8 + header.len() + offset);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
        }
        out
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
