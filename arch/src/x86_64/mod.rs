//! x86_64: PVH boot on QEMU q35 (qboot) and microvm.

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
