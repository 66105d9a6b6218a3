//! Loading a model file from a byte slice (no_std: the kernel reads the file into memory).
//! Every field is validated; anything wrong is a `LoadError`, never a panic. Matrices borrow
//! the file bytes; small f32 vectors and the tokenizer are copied out.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::header::{self, Dtype, Header};

use crate::config::Config;
use crate::format::*;
use crate::kernels::MatRef;
use crate::quant::{check_row_len, row_bytes, QuantType};
use crate::tokenizer::{Tokenizer, TokenizerError, TokenizerKind, Vocab};

/// Why a model file was rejected.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadError {
    /// The safetensors container itself is malformed (header length, JSON, offsets, sizes).
    Container(String),
    /// `format` / `format_version` / `arch` say this is not a model we understand.
    NotAModel(String),
    MissingMetadata(&'static str),
    /// A metadata value does not parse or is out of range.
    BadMetadata {
        key: String,
        value: String,
    },
    InvalidConfig(&'static str),
    MissingTensor(String),
    UnexpectedTensor(String),
    WrongDtype {
        tensor: String,
        expected: &'static str,
        found: String,
    },
    WrongShape {
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A matrix is missing its `qtype.` / `shape.` entry, or has an unknown quant type.
    BadQuant {
        tensor: String,
        why: &'static str,
    },
    Tokenizer(TokenizerError),
    /// Tokenizer tensors are inconsistent (offsets out of order or beyond the blob...).
    BadTokenizerData(&'static str),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::Container(e) => write!(f, "invalid safetensors container: {e}"),
            LoadError::NotAModel(w) => write!(f, "not a microkernelia model: {w}"),
            LoadError::MissingMetadata(k) => write!(f, "missing metadata key {k}"),
            LoadError::BadMetadata { key, value } => {
                write!(f, "bad metadata value {key}={value:?}")
            }
            LoadError::InvalidConfig(w) => write!(f, "invalid hyper-parameters: {w}"),
            LoadError::MissingTensor(t) => write!(f, "missing tensor {t}"),
            LoadError::UnexpectedTensor(t) => write!(f, "unexpected tensor {t}"),
            LoadError::WrongDtype {
                tensor,
                expected,
                found,
            } => write!(f, "tensor {tensor}: dtype {found}, expected {expected}"),
            LoadError::WrongShape {
                tensor,
                expected,
                found,
            } => write!(f, "tensor {tensor}: shape {found:?}, expected {expected:?}"),
            LoadError::BadQuant { tensor, why } => write!(f, "tensor {tensor}: {why}"),
            LoadError::Tokenizer(e) => write!(f, "tokenizer: {e}"),
            LoadError::BadTokenizerData(w) => write!(f, "tokenizer data: {w}"),
        }
    }
}

/// A weight matrix in the file: `rows` rows of `row_bytes(qtype, cols)` bytes.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    pub qtype: QuantType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> Matrix<'a> {
    pub fn as_ref(&self) -> MatRef<'a> {
        MatRef {
            qtype: self.qtype,
            rows: self.rows,
            cols: self.cols,
            data: self.data,
        }
    }

    /// Bytes of row `r` (caller guarantees r < rows).
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = row_bytes(self.qtype, self.cols);
        &self.data[r * rb..(r + 1) * rb]
    }
}

pub struct LayerWeights<'a> {
    pub attention_norm: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    pub wq: Matrix<'a>,
    pub wk: Matrix<'a>,
    pub wv: Matrix<'a>,
    pub wo: Matrix<'a>,
    /// FFN gate.
    pub w1: Matrix<'a>,
    /// FFN down.
    pub w2: Matrix<'a>,
    /// FFN up.
    pub w3: Matrix<'a>,
}

pub struct Weights<'a> {
    pub tok_embeddings: Matrix<'a>,
    pub layers: Vec<LayerWeights<'a>>,
    pub norm: Vec<f32>,
    /// Separate classifier; `None` when tied to `tok_embeddings`.
    pub output: Option<Matrix<'a>>,
}

impl<'a> Weights<'a> {
    pub fn classifier(&self) -> &Matrix<'a> {
        self.output.as_ref().unwrap_or(&self.tok_embeddings)
    }
}

/// A loaded model: hyper-parameters, weights borrowing the file bytes, tokenizer.
pub struct Model<'a> {
    pub config: Config,
    pub weights: Weights<'a>,
    pub tokenizer: Tokenizer,
    /// Chat template name (`chatml`) if the model is a chat model.
    pub chat_template: Option<String>,
    /// System prompt used when a conversation has none.
    pub default_system: Option<String>,
    /// Free-form name and provenance from the converter.
    pub name: Option<String>,
    pub source: Option<String>,
}

/// A tensor's dtype, shape and bytes.
struct TensorRef<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    data: &'a [u8],
}

impl<'a> TensorRef<'a> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> &'a [u8] {
        self.data
    }
}

struct Reader<'f, 'a> {
    st: &'f Header<'a>,
    /// The data section (after the header); offsets were validated against it.
    data: &'a [u8],
    /// Which tensors (by `Header` index) were consumed (to reject unexpected ones).
    used: Vec<bool>,
}

impl<'f, 'a> Reader<'f, 'a> {
    fn meta(&self, key: &'static str) -> Result<&'f str, LoadError> {
        self.meta_opt(key).ok_or(LoadError::MissingMetadata(key))
    }

    fn meta_opt(&self, key: &str) -> Option<&'f str> {
        self.st.meta(key)
    }

    fn parse<T: core::str::FromStr>(&self, key: &'static str) -> Result<T, LoadError> {
        let v = self.meta(key)?;
        v.parse().map_err(|_| bad(key, v))
    }

    fn tensor(&mut self, name: &str, dtype: Dtype) -> Result<TensorRef<'a>, LoadError> {
        let (index, info) = self
            .st
            .tensor(name)
            .ok_or_else(|| LoadError::MissingTensor(name.to_string()))?;
        let (start, end) = info.data_offsets;
        let t = TensorRef {
            dtype: info.dtype,
            shape: info.shape().to_vec(),
            data: self.data.get(start..end).ok_or_else(|| {
                LoadError::Container(alloc::format!("{name}: offsets out of range"))
            })?,
        };
        if t.dtype() != dtype {
            return Err(LoadError::WrongDtype {
                tensor: name.to_string(),
                expected: dtype.name(),
                found: t.dtype().name().to_string(),
            });
        }
        self.used[index] = true;
        Ok(t)
    }

    fn f32_vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, LoadError> {
        let t = self.tensor(name, Dtype::F32)?;
        check_shape(name, t.shape(), &[len])?;
        Ok(le_f32s(t.data()))
    }

    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<Matrix<'a>, LoadError> {
        let qkey = alloc::format!("{QTYPE_PREFIX}{name}");
        let skey = alloc::format!("{SHAPE_PREFIX}{name}");
        let bq = |why| LoadError::BadQuant {
            tensor: name.to_string(),
            why,
        };
        let qtype = self.meta_opt(&qkey).ok_or(bq("no qtype metadata"))?;
        let qtype = QuantType::from_name(qtype).ok_or(bq("unknown quant type"))?;
        // K-quant rows are whole 256-value super-blocks (the kernels rely on it).
        check_row_len(qtype, cols)
            .map_err(|_| bq("row length is not a multiple of its type's block"))?;
        let shape = self.meta_opt(&skey).ok_or(bq("no shape metadata"))?;
        let logical = parse_usize_list(shape).ok_or(bq("unparseable shape metadata"))?;
        check_shape(&skey, &logical, &[rows, cols])?;
        let t = self.tensor(name, Dtype::U8)?;
        check_shape(name, t.shape(), &[rows, row_bytes(qtype, cols)])?;
        Ok(Matrix {
            qtype,
            rows,
            cols,
            data: t.data(),
        })
    }
}

fn bad(key: &str, value: &str) -> LoadError {
    LoadError::BadMetadata {
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn check_shape(name: &str, found: &[usize], expected: &[usize]) -> Result<(), LoadError> {
    if found != expected {
        return Err(LoadError::WrongShape {
            tensor: name.to_string(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        });
    }
    Ok(())
}

fn parse_usize_list(s: &str) -> Option<Vec<usize>> {
    s.split(',').map(|p| p.trim().parse().ok()).collect()
}

fn parse_bool(key: &'static str, v: &str) -> Result<bool, LoadError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(key, v)),
    }
}

/// Little-endian f32s from possibly unaligned bytes.
fn le_f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn le_u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl<'a> Model<'a> {
    /// Parses and validates a model file held in memory.
    pub fn load(bytes: &'a [u8]) -> Result<Model<'a>, LoadError> {
        // header::read validates header length, JSON, dtypes x shapes against offsets, and
        // that the offsets tile the data section exactly; it allocates header::parse_bytes.
        let (st, data) = header::read(bytes).map_err(|e| LoadError::Container(e.to_string()))?;
        let mut r = Reader {
            st: &st,
            data,
            used: alloc::vec![false; st.tensor_count()],
        };
        let format = r.meta(KEY_FORMAT)?;
        if format != FORMAT_NAME {
            return Err(LoadError::NotAModel(alloc::format!("format is {format:?}")));
        }
        let version = r.meta(KEY_VERSION)?;
        if version != FORMAT_VERSION {
            return Err(LoadError::NotAModel(alloc::format!(
                "format_version {version} (this loader reads {FORMAT_VERSION})"
            )));
        }
        let arch = r.meta(KEY_ARCH)?;
        if arch != "llama" {
            return Err(LoadError::NotAModel(alloc::format!("arch {arch:?}")));
        }
        let config = Config {
            dim: r.parse(KEY_DIM)?,
            hidden_dim: r.parse(KEY_HIDDEN_DIM)?,
            n_layers: r.parse(KEY_N_LAYERS)?,
            n_heads: r.parse(KEY_N_HEADS)?,
            n_kv_heads: r.parse(KEY_N_KV_HEADS)?,
            vocab_size: r.parse(KEY_VOCAB_SIZE)?,
            seq_len: r.parse(KEY_SEQ_LEN)?,
            rope_theta: r.parse(KEY_ROPE_THETA)?,
            norm_eps: r.parse(KEY_NORM_EPS)?,
            tied_classifier: parse_bool(KEY_TIED, r.meta(KEY_TIED)?)?,
        };
        config.check().map_err(LoadError::InvalidConfig)?;
        let c = &config;

        let tok_embeddings = r.matrix(T_TOK_EMBD, c.vocab_size, c.dim)?;
        let norm = r.f32_vector(T_NORM, c.dim)?;
        let output = if c.tied_classifier {
            None
        } else {
            Some(r.matrix(T_OUTPUT, c.vocab_size, c.dim)?)
        };
        let mut layers = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let mut m = |s: &str| {
                let (rows, cols) = layer_matrix_shape(c, s).unwrap_or((0, 0));
                r.matrix(&layer_tensor(l, s), rows, cols)
            };
            let (wq, wk, wv, wo) = (m("wq")?, m("wk")?, m("wv")?, m("wo")?);
            let (w1, w2, w3) = (m("w1")?, m("w2")?, m("w3")?);
            layers.push(LayerWeights {
                attention_norm: r.f32_vector(&layer_tensor(l, "attention_norm"), c.dim)?,
                ffn_norm: r.f32_vector(&layer_tensor(l, "ffn_norm"), c.dim)?,
                wq,
                wk,
                wv,
                wo,
                w1,
                w2,
                w3,
            });
        }
        let tokenizer = load_tokenizer(&mut r, c.vocab_size)?;

        if let Some(i) = r.used.iter().position(|&u| !u) {
            let name = st.tensor_at(i).map_or("", |(n, _)| n);
            return Err(LoadError::UnexpectedTensor(name.to_string()));
        }
        let opt = |k: &str| r.meta_opt(k).map(|s| s.to_string());
        let chat_template = opt(KEY_CHAT_TEMPLATE);
        if let Some(t) = &chat_template {
            if t != "chatml" {
                return Err(bad(KEY_CHAT_TEMPLATE, t));
            }
        }
        Ok(Model {
            chat_template,
            default_system: opt(KEY_CHAT_SYSTEM),
            name: opt(KEY_NAME),
            source: opt(KEY_SOURCE),
            config,
            weights: Weights {
                tok_embeddings,
                layers,
                norm,
                output,
            },
            tokenizer,
        })
    }
}

fn load_tokenizer(r: &mut Reader, vocab_size: usize) -> Result<Tokenizer, LoadError> {
    let kind = match r.meta(KEY_TOK_KIND)? {
        "sentencepiece" => TokenizerKind::SentencePiece,
        "gpt2" => TokenizerKind::Gpt2,
        other => return Err(bad(KEY_TOK_KIND, other)),
    };
    let bos = match r.meta_opt(KEY_TOK_BOS) {
        None => None,
        Some(v) => Some(v.parse::<u32>().map_err(|_| bad(KEY_TOK_BOS, v))?),
    };
    let eos_s = r.meta(KEY_TOK_EOS)?;
    let eos = if eos_s.is_empty() {
        Vec::new()
    } else {
        eos_s
            .split(',')
            .map(|p| p.trim().parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad(KEY_TOK_EOS, eos_s))?
    };
    let add_bos = parse_bool(KEY_TOK_ADD_BOS, r.meta(KEY_TOK_ADD_BOS)?)?;

    let offsets_t = r.tensor(T_TOK_OFFSETS, Dtype::U32)?;
    check_shape(T_TOK_OFFSETS, offsets_t.shape(), &[vocab_size + 1])?;
    let offsets = le_u32s(offsets_t.data());
    let blob_t = r.tensor(T_TOK_TOKENS, Dtype::U8)?;
    let blob = blob_t.data();
    if offsets[0] != 0 || offsets[vocab_size] as usize != blob.len() {
        return Err(LoadError::BadTokenizerData(
            "offsets do not span the token bytes",
        ));
    }
    let mut tokens = Vec::with_capacity(vocab_size);
    for w in offsets.windows(2) {
        if w[1] < w[0] || w[1] as usize > blob.len() {
            return Err(LoadError::BadTokenizerData("offsets decrease"));
        }
        tokens.push(blob[w[0] as usize..w[1] as usize].to_vec());
    }
    let types_t = r.tensor(T_TOK_TYPES, Dtype::U8)?;
    check_shape(T_TOK_TYPES, types_t.shape(), &[vocab_size])?;
    let types = types_t.data().to_vec();
    let scores_t = r.tensor(T_TOK_SCORES, Dtype::F32)?;
    let scores = le_f32s(scores_t.data());
    let expected_scores = match kind {
        TokenizerKind::SentencePiece => vocab_size,
        TokenizerKind::Gpt2 => 0,
    };
    check_shape(T_TOK_SCORES, scores_t.shape(), &[expected_scores])?;
    let merges = if r.st.tensor(T_TOK_MERGES).is_some() {
        let t = r.tensor(T_TOK_MERGES, Dtype::U32)?;
        let shape = t.shape();
        if shape.len() != 2 || shape[1] != 2 {
            return Err(LoadError::WrongShape {
                tensor: T_TOK_MERGES.to_string(),
                expected: alloc::vec![shape.first().copied().unwrap_or(0), 2],
                found: shape.to_vec(),
            });
        }
        le_u32s(t.data())
            .chunks_exact(2)
            .map(|p| (p[0], p[1]))
            .collect()
    } else {
        Vec::new()
    };
    Tokenizer::new(Vocab {
        kind,
        tokens,
        scores,
        types,
        merges,
        bos,
        eos,
        add_bos,
    })
    .map_err(LoadError::Tokenizer)
}
