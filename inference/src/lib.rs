//! LLaMA-family inference engine: model format, quantised SIMD kernels, tokenizers, sampler (no_std + alloc).
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod exec;
pub mod kernels;
pub mod quant;
