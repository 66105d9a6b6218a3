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
//!
//! Further names each architecture module provides (same signatures on both):
//!
//! - `console::init()` is done by boot; `console::write_bytes` works from then on
//!   (and from the trap handler, without locks).
//! - `cpu::features() -> &'static CpuFeatures`, `cpu::halt() -> !` (idle forever),
//!   `cpu::RET_INSTRUCTION: &[u8]` (a "return" opcode, for the exec-from-data
//!   self-test), `cpu::read_u64(addr)` (a raw load through asm, for the
//!   null-read self-test: no Rust-level null dereference),
//!   `cpu::simd_selftest() -> Result<&'static str, &'static str>` (every SIMD
//!   unit present computes a known dot product; `Ok` names the units).
//! - `cpu::idle(max_ns) -> bool`: wait up to `max_ns` asleep (woken by a timer
//!   interrupt), `false` if it could only spin; may return early.
//!   `cpu::timer_interrupts() -> u64`: count of those wake-ups.
//! - `time::frequency_hz() -> u64`, `time::calibration() -> &'static str`
//!   (how the clock was calibrated, for the boot log).
//! - `mm::alloc_frames(pages, align) -> Option<u64>`, `mm::free_frames(addr, pages)`,
//!   `mm::free_bytes() -> u64`, `mm::largest_free_bytes() -> u64` (the global
//!   [`frame_alloc::FrameAllocator`]; `free_frames` returns `Result<(), FrameError>`);
//!   `mm::map_mmio(phys, len) -> Result<(), mm::MapError>`;
//!   `mm::alloc_stack(pages) -> Option<stack::Stack>` (`pages` includes the
//!   guard page, which is left unmapped; the trap handler names a fault in it a
//!   stack overflow), `mm::free_stack(stack::Stack)`;
//!   `mm::boot_stack() -> stack::Stack`; `mm::is_mapped(addr) -> bool` (walks
//!   the live page tables; lock-free, usable from the trap handler).
//! - `task::Context` (`Context::empty()` is a const fn), `task::Context::new(stack_top, entry: extern "C" fn(usize) -> !, arg)`,
//!   `unsafe task::switch(from: *mut Context, to: *const Context)`.
//! - `power::exit(code: u8) -> !` — a code from [`exit_code`]; the runner decodes it.
#![cfg_attr(not(test), no_std)]

/// Items that only exist on one architecture's bare-metal target (the hardware code); the
/// portable files of that architecture's folder stay outside it, so `cargo test` on any
/// host compiles and tests them.
macro_rules! bare_metal {
    ($arch:literal: $($item:item)*) => {
        $( #[cfg(all(target_arch = $arch, target_os = "none"))] $item )*
    };
}

// Portable and used by both architectures.
pub mod bootinfo;
pub mod cmdline;
pub mod cpu_features;
pub mod exit_code;
pub mod fdt;
pub mod fdt_bootinfo;
pub mod frame_alloc;
pub mod log_ring;
pub mod spin;
pub mod stack;

// One folder per architecture: its portable, host-tested files (decoding, table logic)
// build everywhere; its hardware files only on its own bare-metal target.
pub mod aarch64;
pub mod x86_64;

pub use bootinfo::BootInfo;
pub use cpu_features::CpuFeatures;

bare_metal! { "x86_64":
    pub use self::x86_64::{console, cpu, mm, power, task, time, trap};
}
bare_metal! { "aarch64":
    pub use self::aarch64::{console, cpu, mm, power, task, time, trap};
}
