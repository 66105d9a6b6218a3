//! x86_64: PVH boot on QEMU q35 (qboot) and microvm.
//!
//! Portable (host-tested): `cpuid` (CPUID and XCR0 → CPU features), `page_fault` (#PF
//! error codes in words), `pvh` (`hvm_start_info` → `BootInfo`). The rest is hardware
//! code, built only for the bare-metal target.

pub mod cpuid;
pub mod page_fault;
pub mod pvh;

bare_metal! { "x86_64":
    mod apic;
    mod boot;
    pub mod console;
    pub mod cpu;
    pub(crate) mod gdt;
    pub mod mm;
    mod port;
    pub mod power;
    pub mod task;
    pub mod time;
    pub mod trap;
}
