//! LLaMA-family inference engine: model format, quantised SIMD kernels, tokenizers, sampler (no_std + alloc).
#![no_std]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

// Kernels side (see CONTRACT.md).
pub mod exec;
pub mod kernels;
pub mod quant;

// Engine side.
pub mod chat;
pub mod config;
pub mod format;
pub mod forward;
pub mod generate;
pub mod header;
pub mod model;
pub mod ops;
pub mod prompt;
pub mod sampler;
pub mod tokenizer;

pub use config::Config;
pub use forward::{
    forward, ForwardError, Logits, MatmulInput, NoObserver, Observer, State, StateAllocError,
    StateLayout,
};
pub use generate::{Engine, GenerateError, GenerateParams, Generation, StopReason, Timings};
pub use model::{LoadError, Model};
pub use sampler::{Sampler, SamplerConfig};
pub use tokenizer::Tokenizer;
