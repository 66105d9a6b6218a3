//! LLaMA-family inference engine: model format, quantised SIMD kernels, tokenizers, sampler (no_std + alloc).
#![no_std]
