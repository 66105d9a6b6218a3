//! mk-models: converters from llama2.c / GGUF / Hugging Face safetensors to the microkernelia
//! model file (docs/MODEL_FORMAT.md), plus helpers for the `mk-models` CLI and tests.

pub mod calibration;
pub mod eval;
pub mod gguf;
pub mod gptq;
pub mod hf;
pub mod host;
pub mod llama2c;
pub mod quantize;
pub mod requantize;

use inference::quant::QuantType;

/// Target quantisation of a conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    F32,
    Q8_0,
    Q4_0,
    Q4_1,
}

impl Quant {
    pub fn parse(s: &str) -> Option<Quant> {
        Some(match s.to_ascii_lowercase().as_str() {
            "f32" => Quant::F32,
            "q8_0" => Quant::Q8_0,
            "q4_0" => Quant::Q4_0,
            "q4_1" => Quant::Q4_1,
            _ => return None,
        })
    }

    /// Quant type of the layer matrices (and of an untied classifier).
    pub fn matrix_type(self) -> QuantType {
        match self {
            Quant::F32 => QuantType::F32,
            Quant::Q8_0 => QuantType::Q8_0,
            Quant::Q4_0 => QuantType::Q4_0,
            Quant::Q4_1 => QuantType::Q4_1,
        }
    }

    /// Quant type of the token embedding: Q8_0 for every quantised target (as in the
    /// SmolLM2 Q4_1 GGUF, whose token_embd is Q8_0), exact for F32.
    pub fn embedding_type(self) -> QuantType {
        match self {
            Quant::F32 => QuantType::F32,
            _ => QuantType::Q8_0,
        }
    }

    /// Quant type of one matrix in a `self` model (the mix; docs/MODEL_FORMAT.md
    /// "Quantisation mixes"): `matrix` is `tok_embeddings`, `output`, or a layer matrix
    /// (`wq` .. `w3`) of `layer` out of `n_layers`.
    pub fn tensor_type(self, matrix: &str, layer: Option<usize>, n_layers: usize) -> QuantType {
        let _ = (layer, n_layers);
        match matrix {
            // The classifier (tied or not) and the embedding keep 8 bits: llama.cpp never
            // puts them at 4 bits either (Q6_K/Q8_0).
            inference::format::T_TOK_EMBD | inference::format::T_OUTPUT => self.embedding_type(),
            _ => self.matrix_type(),
        }
    }
}

#[derive(Debug)]
pub enum ConvertError {
    Io(String, std::io::Error),
    /// The input model is malformed or unsupported.
    Input(String),
    Write(inference::format::WriteError),
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConvertError::Io(p, e) => write!(f, "{p}: {e}"),
            ConvertError::Input(w) => write!(f, "bad input model: {w}"),
            ConvertError::Write(e) => write!(f, "writing model: {e}"),
        }
    }
}

impl std::error::Error for ConvertError {}

impl From<inference::format::WriteError> for ConvertError {
    fn from(e: inference::format::WriteError) -> Self {
        ConvertError::Write(e)
    }
}

pub fn read_file(path: &str) -> Result<Vec<u8>, ConvertError> {
    std::fs::read(path).map_err(|e| ConvertError::Io(path.to_string(), e))
}
