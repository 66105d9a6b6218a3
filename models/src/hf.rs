//! Hugging Face llama checkpoints (config.json + tokenizer.json + *.safetensors, F32/F16/BF16)
//! -> our model. (In progress.)

use std::path::Path;

use crate::{ConvertError, Quant};

pub fn convert_dir(_dir: &Path, _quant: Quant) -> Result<Vec<u8>, ConvertError> {
    Err(ConvertError::Input(
        "HF conversion not implemented yet".into(),
    ))
}
