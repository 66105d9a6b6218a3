//! GGUF (v2/v3) reader, the converter GGUF -> our model, and an F32 GGUF exporter (used to
//! give llama.cpp exactly our dequantised weights as an independent oracle).
//! Layout: models/SMOLLM2-SOURCE.md ("GGUF layout").

use std::collections::HashMap;

use inference::format::{self, token_type, ModelWriter};
use inference::quant::{dequantize_row, f16_to_f32, row_bytes, QuantType};
use inference::tokenizer::{TokenizerKind, Vocab};
use inference::{Config, Model};

use inference::exec::Inline;
use inference::kernels::Kernels;

use crate::calibration::calibrate;
use crate::requantize::requantize;
use crate::{ConvertError, Quant};

/// ggml tensor type codes.
pub const GGML_F32: u32 = 0;
pub const GGML_F16: u32 = 1;
pub const GGML_Q4_0: u32 = 2;
pub const GGML_Q4_1: u32 = 3;
pub const GGML_Q8_0: u32 = 8;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        Some(match *self {
            Value::U8(v) => v as u64,
            Value::U16(v) => v as u64,
            Value::U32(v) => v as u64,
            Value::U64(v) => v,
            Value::I8(v) if v >= 0 => v as u64,
            Value::I16(v) if v >= 0 => v as u64,
            Value::I32(v) if v >= 0 => v as u64,
            Value::I64(v) if v >= 0 => v as u64,
            _ => return None,
        })
    }

    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::I8(v) => v as i64,
            Value::I16(v) => v as i64,
            Value::I32(v) => v as i64,
            Value::I64(v) => v,
            _ => self.as_u64()? as i64,
        })
    }

    pub fn as_f32(&self) -> Option<f32> {
        Some(match *self {
            Value::F32(v) => v,
            Value::F64(v) => v as f32,
            _ => self.as_i64()? as f32,
        })
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    /// dims[0] is the row length (innermost).
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Relative to the data section.
    pub offset: u64,
}

pub struct Gguf<'a> {
    pub version: u32,
    pub kv: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    /// Bytes of the key/value section, verbatim (the F32 exporter copies it).
    pub kv_bytes: &'a [u8],
    pub alignment: u64,
    pub data: &'a [u8],
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

fn err<T>(what: impl Into<String>) -> Result<T, ConvertError> {
    Err(ConvertError::Input(what.into()))
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ConvertError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(e) => {
                let s = &self.b[self.at..e];
                self.at = e;
                Ok(s)
            }
            None => err(format!("GGUF truncated at byte {}", self.at)),
        }
    }
    fn u8(&mut self) -> Result<u8, ConvertError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ConvertError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, ConvertError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, ConvertError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn len(&mut self) -> Result<usize, ConvertError> {
        let n = self.u64()?;
        // Any length must fit in what is left of the file.
        if n > (self.b.len() - self.at) as u64 {
            return err(format!("GGUF length {n} beyond end of file"));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String, ConvertError> {
        let n = self.len()?;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).or_else(|_| err("GGUF string is not UTF-8"))
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<Value, ConvertError> {
        Ok(match ty {
            0 => Value::U8(self.u8()?),
            1 => Value::I8(self.u8()? as i8),
            2 => Value::U16(self.u16()?),
            3 => Value::I16(self.u16()? as i16),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(self.u32()? as i32),
            6 => Value::F32(f32::from_bits(self.u32()?)),
            7 => Value::Bool(self.u8()? != 0),
            8 => Value::Str(self.string()?),
            9 if depth == 0 => {
                let ety = self.u32()?;
                let n = self.len()?;
                let mut v = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    v.push(self.value(ety, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(self.u64()? as i64),
            12 => Value::F64(f64::from_bits(self.u64()?)),
            _ => return err(format!("GGUF value type {ty} unsupported")),
        })
    }
}

impl<'a> Gguf<'a> {
    pub fn parse(b: &'a [u8]) -> Result<Gguf<'a>, ConvertError> {
        let mut c = Cursor { b, at: 0 };
        if c.take(4)? != b"GGUF" {
            return err("not a GGUF file (bad magic)");
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return err(format!("GGUF version {version} unsupported"));
        }
        let n_tensors = c.u64()?;
        let n_kv = c.u64()?;
        if n_tensors > 1 << 20 || n_kv > 1 << 20 {
            return err("GGUF counts implausible");
        }
        let kv_start = c.at;
        let mut kv = Vec::new();
        for _ in 0..n_kv {
            let k = c.string()?;
            let ty = c.u32()?;
            kv.push((k, c.value(ty, 0)?));
        }
        let kv_bytes = &b[kv_start..c.at];
        let mut tensors = Vec::new();
        for _ in 0..n_tensors {
            let name = c.string()?;
            let nd = c.u32()?;
            if nd == 0 || nd > 4 {
                return err(format!("tensor {name}: {nd} dims"));
            }
            let dims = (0..nd).map(|_| c.u64()).collect::<Result<Vec<_>, _>>()?;
            let ggml_type = c.u32()?;
            let offset = c.u64()?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let alignment = kv
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(32);
        if alignment == 0 || alignment > 1 << 16 {
            return err("bad general.alignment");
        }
        let data_start = (c.at as u64).div_ceil(alignment) * alignment;
        let data = b.get(data_start as usize..).unwrap_or(&[]);
        Ok(Gguf {
            version,
            kv,
            tensors,
            kv_bytes,
            alignment,
            data,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn num(&self, key: &str) -> Result<usize, ConvertError> {
        self.get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| ConvertError::Input(format!("GGUF key {key} missing or not a number")))
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Rows, cols and bytes of a 1-D or 2-D tensor.
    pub fn tensor_data(&self, t: &TensorInfo) -> Result<(usize, usize, &'a [u8]), ConvertError> {
        let cols = usize::try_from(t.dims[0]).unwrap_or(usize::MAX);
        let rows = t.dims[1..]
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .and_then(|r| usize::try_from(r).ok())
            .ok_or_else(|| ConvertError::Input(format!("tensor {}: dims overflow", t.name)))?;
        let row = match t.ggml_type {
            GGML_F32 => cols.checked_mul(4),
            GGML_F16 => cols.checked_mul(2),
            GGML_Q8_0 | GGML_Q4_0 | GGML_Q4_1 if cols.is_multiple_of(32) => Some(row_bytes(
                qtype_of(t.ggml_type).unwrap_or(QuantType::F32),
                cols,
            )),
            ty => return err(format!("tensor {}: ggml type {ty} unsupported", t.name)),
        };
        let size = row.and_then(|r| r.checked_mul(rows));
        let start = t.offset as usize;
        let bytes = size
            .and_then(|s| start.checked_add(s))
            .and_then(|end| self.data.get(start..end))
            .ok_or_else(|| ConvertError::Input(format!("tensor {}: data out of bounds", t.name)))?;
        Ok((rows, cols, bytes))
    }

    /// A tensor as f32 values (dequantised), row-major.
    pub fn tensor_f32(&self, t: &TensorInfo) -> Result<Vec<f32>, ConvertError> {
        let (rows, cols, bytes) = self.tensor_data(t)?;
        let mut out = vec![0.0f32; rows * cols];
        match t.ggml_type {
            GGML_F16 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
                }
            }
            ty => {
                let qt = qtype_of(ty).unwrap_or(QuantType::F32);
                let rb = row_bytes(qt, cols);
                for (r, dst) in out.chunks_exact_mut(cols.max(1)).enumerate().take(rows) {
                    dequantize_row(qt, &bytes[r * rb..(r + 1) * rb], dst);
                }
            }
        }
        Ok(out)
    }
}

/// Our quant type for a ggml type whose blocks we store unchanged.
pub fn qtype_of(ggml_type: u32) -> Option<QuantType> {
    Some(match ggml_type {
        GGML_F32 => QuantType::F32,
        GGML_Q8_0 => QuantType::Q8_0,
        GGML_Q4_0 => QuantType::Q4_0,
        GGML_Q4_1 => QuantType::Q4_1,
        _ => return None,
    })
}

/// GPT-2's byte -> printable character table (bytes 33..=126, 161..=172, 174..=255 map to
/// themselves, the others to 256, 257, ... in order).
pub fn gpt2_byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let cp = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(cp).unwrap_or('\0');
    }
    table
}

fn strings(v: Option<&Value>, key: &str) -> Result<Vec<String>, ConvertError> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ConvertError::Input(format!("{key}: not strings"))),
        _ => err(format!("GGUF key {key} missing")),
    }
}

fn read_vocab(g: &Gguf) -> Result<Vocab, ConvertError> {
    let model = g
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .unwrap_or("");
    let texts = strings(g.get("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens")?;
    let n = texts.len();
    let types: Vec<u8> = match g.get("tokenizer.ggml.token_type") {
        Some(Value::Array(a)) if a.len() == n => a
            .iter()
            .map(|v| v.as_i64().unwrap_or(1).clamp(0, 255) as u8)
            .collect(),
        _ => vec![token_type::NORMAL; n],
    };
    let id_of = |key: &str| g.get(key).and_then(Value::as_u64).map(|v| v as u32);
    let bos = id_of("tokenizer.ggml.bos_token_id");
    let mut eos: Vec<u32> = id_of("tokenizer.ggml.eos_token_id").into_iter().collect();
    let add_bos = matches!(
        g.get("tokenizer.ggml.add_bos_token"),
        Some(Value::Bool(true))
    );
    match model {
        "gpt2" => {
            let inv: HashMap<char, u8> = gpt2_byte_to_char()
                .iter()
                .enumerate()
                .map(|(b, &c)| (c, b as u8))
                .collect();
            let tokens: Vec<Vec<u8>> = texts
                .iter()
                .zip(&types)
                .map(|(t, &ty)| {
                    let mapped: Option<Vec<u8>> = t.chars().map(|c| inv.get(&c).copied()).collect();
                    match mapped {
                        Some(bytes) if ty != token_type::CONTROL => bytes,
                        // Control tokens (and any text outside the byte alphabet) are literal.
                        _ => t.as_bytes().to_vec(),
                    }
                })
                .collect();
            let index: HashMap<&str, u32> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| (t.as_str(), i as u32))
                .collect();
            let merges = strings(g.get("tokenizer.ggml.merges"), "tokenizer.ggml.merges")?
                .iter()
                .map(|m| {
                    let (a, b) = m
                        .split_once(' ')
                        .ok_or_else(|| ConvertError::Input(format!("merge {m:?}")))?;
                    match (index.get(a), index.get(b)) {
                        (Some(&x), Some(&y)) => Ok((x, y)),
                        _ => err(format!("merge {m:?} names unknown tokens")),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            // `<|endoftext|>` ends generation too when it is a control token.
            if let Some(&e) = index.get("<|endoftext|>") {
                if types[e as usize] == token_type::CONTROL && !eos.contains(&e) {
                    eos.push(e);
                }
            }
            Ok(Vocab {
                kind: TokenizerKind::Gpt2,
                tokens,
                scores: Vec::new(),
                types,
                merges,
                bos,
                eos,
                add_bos,
            })
        }
        other => err(format!(
            "tokenizer.ggml.model {other:?} unsupported (gpt2 only)"
        )),
    }
}

fn read_config(g: &Gguf, vocab: usize, tied: bool) -> Result<Config, ConvertError> {
    let arch = g
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or("");
    if arch != "llama" {
        return err(format!("architecture {arch:?} unsupported (llama only)"));
    }
    let f = |k: &str, d: f32| g.get(k).and_then(Value::as_f32).unwrap_or(d);
    let n_heads = g.num("llama.attention.head_count")?;
    let c = Config {
        dim: g.num("llama.embedding_length")?,
        hidden_dim: g.num("llama.feed_forward_length")?,
        n_layers: g.num("llama.block_count")?,
        n_heads,
        n_kv_heads: g.num("llama.attention.head_count_kv").unwrap_or(n_heads),
        vocab_size: vocab,
        seq_len: g.num("llama.context_length")?,
        rope_theta: f("llama.rope.freq_base", 10000.0),
        norm_eps: f("llama.attention.layer_norm_rms_epsilon", 1e-5),
        tied_classifier: tied,
    };
    c.check().map_err(|e| ConvertError::Input(e.into()))?;
    if let Some(rd) = g.get("llama.rope.dimension_count").and_then(Value::as_u64) {
        if rd as usize != c.head_dim() {
            return err("partial RoPE (rope.dimension_count != head_dim) unsupported");
        }
    }
    Ok(c)
}

/// GGUF -> exact model (source blocks kept; F16 widened to F32).
pub fn convert_exact(bytes: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let g = Gguf::parse(bytes)?;
    let vocab = read_vocab(&g)?;
    let tied = g.tensor("output.weight").is_none();
    let c = read_config(&g, vocab.tokens.len(), tied)?;
    let mut w = ModelWriter::new(&c);
    let matrix = |w: &mut ModelWriter, gname: &str, ours: &str, rows: usize, cols: usize| {
        let t = g
            .tensor(gname)
            .ok_or_else(|| ConvertError::Input(format!("tensor {gname} missing")))?;
        let (r, cl, data) = g.tensor_data(t)?;
        if (r, cl) != (rows, cols) || t.dims.len() != 2 {
            return err(format!(
                "tensor {gname}: shape {:?}, expected [{cols}, {rows}]",
                t.dims
            ));
        }
        match qtype_of(t.ggml_type) {
            Some(qt) => w.add_matrix_raw(ours, qt, rows, cols, data.to_vec())?,
            None => w.add_matrix(ours, QuantType::F32, rows, cols, &g.tensor_f32(t)?)?,
        }
        Ok(())
    };
    let vector = |w: &mut ModelWriter, gname: &str, ours: &str, len: usize| {
        let t = g
            .tensor(gname)
            .ok_or_else(|| ConvertError::Input(format!("tensor {gname} missing")))?;
        if t.dims != [len as u64] {
            return err(format!(
                "tensor {gname}: shape {:?}, expected [{len}]",
                t.dims
            ));
        }
        w.add_vector(ours, &g.tensor_f32(t)?)?;
        Ok(())
    };
    matrix(
        &mut w,
        "token_embd.weight",
        format::T_TOK_EMBD,
        c.vocab_size,
        c.dim,
    )?;
    if !tied {
        matrix(
            &mut w,
            "output.weight",
            format::T_OUTPUT,
            c.vocab_size,
            c.dim,
        )?;
    }
    vector(&mut w, "output_norm.weight", format::T_NORM, c.dim)?;
    let names = [
        ("attn_q", "wq"),
        ("attn_k", "wk"),
        ("attn_v", "wv"),
        ("attn_output", "wo"),
        ("ffn_gate", "w1"),
        ("ffn_down", "w2"),
        ("ffn_up", "w3"),
    ];
    for l in 0..c.n_layers {
        vector(
            &mut w,
            &format!("blk.{l}.attn_norm.weight"),
            &format::layer_tensor(l, "attention_norm"),
            c.dim,
        )?;
        vector(
            &mut w,
            &format!("blk.{l}.ffn_norm.weight"),
            &format::layer_tensor(l, "ffn_norm"),
            c.dim,
        )?;
        for (gn, ours) in names {
            let (rows, cols) = format::layer_matrix_shape(&c, ours).unwrap_or((0, 0));
            matrix(
                &mut w,
                &format!("blk.{l}.{gn}.weight"),
                &format::layer_tensor(l, ours),
                rows,
                cols,
            )?;
        }
    }
    w.set_tokenizer(&vocab)?;
    if let Some(name) = g.get("general.name").and_then(Value::as_str) {
        w.set_meta(format::KEY_NAME, name);
    }
    w.set_meta(format::KEY_SOURCE, "GGUF");
    let template = g
        .get("tokenizer.chat_template")
        .and_then(Value::as_str)
        .unwrap_or("");
    if template.contains("<|im_start|>") {
        w.set_meta(format::KEY_CHAT_TEMPLATE, "chatml");
        if let Some(sys) = default_system_prompt(template) {
            w.set_meta(format::KEY_CHAT_SYSTEM, &sys);
        }
    }
    Ok(w.finish())
}

/// The system prompt a ChatML jinja template inserts when there is none: the text between
/// `<|im_start|>system\n` and `<|im_end|>` in a literal of the template.
fn default_system_prompt(template: &str) -> Option<String> {
    let start = template
        .find("<|im_start|>system\\n")
        .map(|i| (i, 20))
        .or_else(|| template.find("<|im_start|>system\n").map(|i| (i, 19)))?;
    let rest = &template[start.0 + start.1..];
    let end = rest.find("<|im_end|>")?;
    let s = &rest[..end];
    // Only a literal (no jinja expression) is a default prompt.
    (!s.contains("{{") && !s.contains('\'') && !s.is_empty()).then(|| s.to_string())
}

/// Built-in calibration text for re-quantising GGUF models: prose, dialogue, code, numbers.
pub const CALIBRATION_TEXT: &str = "<|im_start|>user\nCan you explain how rainbows form?<|im_end|>\n<|im_start|>assistant\nSure! A rainbow forms when sunlight enters raindrops, bends (refracts), reflects off the back of the drop and bends again on the way out. Each colour bends by a slightly different angle, so white light spreads into red, orange, yellow, green, blue and violet.<|im_end|>\nOnce upon a time, in a small village by the sea, there lived an old fisherman who told stories every evening. def mean(xs):\n    return sum(xs) / len(xs)  # average of 3, 5 and 10 is 6\nThe meeting is on 12 March 2024 at 09:30.";

/// GGUF -> our model at `quant` (matrices already at that type are kept bit for bit).
/// Matrices re-quantised to a 4-bit type are importance-weighted with activation statistics
/// of the exact model on a built-in calibration text.
pub fn convert(bytes: &[u8], quant: Quant) -> Result<Vec<u8>, ConvertError> {
    convert_with(bytes, quant, false)
}

/// As `convert`; `gptq` adds GPTQ error feedback to the 4-bit re-rounding.
pub fn convert_with(bytes: &[u8], quant: Quant, gptq: bool) -> Result<Vec<u8>, ConvertError> {
    let exact = convert_exact(bytes)?;
    let model = Model::load(&exact).map_err(|e| ConvertError::Input(e.to_string()))?;
    let needs_rounding = matches!(quant, Quant::Q4_0 | Quant::Q4_1)
        && model
            .weights
            .layers
            .iter()
            .any(|l| l.wq.qtype != quant.matrix_type());
    let stats = if needs_rounding {
        let kernels = Kernels::select(&crate::host::host_features());
        let seq = model.tokenizer.encode(CALIBRATION_TEXT, true);
        Some(calibrate(&model, &[seq], gptq, &kernels, &Inline))
    } else {
        None
    };
    requantize(&model, quant, stats.as_ref())
}

/// Writes an F32 GGUF with the same metadata as `bytes` and every tensor dequantised
/// exactly (F32 weights are what our f32 model computes with): llama.cpp's oracle input.
pub fn export_f32(bytes: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let g = Gguf::parse(bytes)?;
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&g.version.to_le_bytes());
    out.extend_from_slice(&(g.tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(g.kv.len() as u64).to_le_bytes());
    out.extend_from_slice(g.kv_bytes);
    let mut datas = Vec::new();
    let mut offset = 0u64;
    for t in &g.tensors {
        let v = g.tensor_f32(t)?;
        out.extend_from_slice(&(t.name.len() as u64).to_le_bytes());
        out.extend_from_slice(t.name.as_bytes());
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&GGML_F32.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        offset += (bytes.len() as u64).div_ceil(g.alignment) * g.alignment;
        datas.push(bytes);
    }
    let pad = |out: &mut Vec<u8>| {
        while !(out.len() as u64).is_multiple_of(g.alignment) {
            out.push(0);
        }
    };
    pad(&mut out);
    for d in datas {
        out.extend_from_slice(&d);
        pad(&mut out);
    }
    Ok(out)
}
