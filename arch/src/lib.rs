//! x86_64 and aarch64 behind one API: boot, CPU features, console, traps, clock, paging, power.
//!
//! Hermit style: `x86_64/` and `aarch64/` are selected by `cfg` and re-exported
//! here under one set of names; there is no trait between the kernel and the
//! architecture. Portable pieces (boot info, command line, FDT parsing, frame
//! allocator, log ring) are plain modules that also build on the host, where
//! `cargo test` exercises them.
//!
//! The arch-neutral API every architecture module provides (the contract):
//!
//! - boot: the image's entry point (`_start`, PVH note / Linux Image header)
//!   sets up an early stack, enables FP/SIMD, builds the identity-mapped page
//!   tables (phys == virt for RAM and MMIO), fills a [`BootInfo`] and calls
//!   the kernel's `#[no_mangle] extern "Rust" fn kernel_main(&'static BootInfo) -> !`.
//! - `console::write_bytes(&[u8])`, `console::read_byte() -> Option<u8>`
//! - `cpu::features() -> CpuFeatures` (detected once at boot)
//! - `time::now_ns() -> u64` (monotonic), `time::since_boot_ns() -> u64`
//!   (from the first instruction)
//! - `trap::init()`: exception vectors; an unexpected exception prints a report
//!   and powers off with a failure code
//! - `mm::map_mmio(phys, len)`, DMA-able frames from the frame allocator
//! - `power::exit(code) -> !`
#![cfg_attr(not(test), no_std)]
pub mod fdt;

// aarch64 (added on branch boot-arm)
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod aarch64;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use self::aarch64::{console, cpu, mm, power, task, time, trap};
