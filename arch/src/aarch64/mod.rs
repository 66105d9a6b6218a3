//! aarch64 (QEMU `virt`): Linux arm64 Image boot, PL011, generic timer, PSCI /
//! semihosting power-off, EL1 exception vectors, 4 KiB-granule identity paging.
//!
//! Boot flow: `boot.rs` (asm entry, boot map, MMU on) → `boot::rust_entry`
//! (traps, FDT → `BootInfo`, frame allocator, final page tables, GIC) →
//! the kernel's `kernel_main`.

//!
//! Portable (host-tested): `esr` (exception syndromes), `id_aa64` (ID registers → CPU
//! features), `vmsa` (translation-table logic). The rest is hardware code, built only for
//! `aarch64-unknown-none`.

pub mod esr;
pub mod id_aa64;
pub mod vmsa;

bare_metal! { "aarch64":
    mod boot;
    pub mod console;
    pub mod cpu;
    mod gic;
    pub mod mm;
    pub mod power;
    pub mod task;
    pub mod time;
    pub mod trap;
}
