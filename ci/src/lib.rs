//! Host-side VM runner: boots microkernelia images under QEMU with a timeout,
//! captures the serial console, and decodes the kernel's exit code.
//!
//! - [`qemu`]: machines (x86 q35 + qboot, x86 microvm, aarch64 virt), accelerator,
//!   and the QEMU command line built from a [`qemu::VmConfig`].
//! - [`run`]: run captured (tests, benchmarks) or interactive (`make run-*`).
//! - [`daemon`]: host daemons a VM needs (virtiofsd, vhost-device-vsock),
//!   started before QEMU and stopped after it.
//! - [`exit`]: what QEMU's exit status means for each machine.
//! - [`build`]: where `make` puts kernel images; builds them on request.
//! - [`floatcheck`]: objdump proof that x86 float code uses SSE, not soft-float.
//! - [`symbolize`]: function and line for each address of a fault report.

pub mod build;
pub mod daemon;
pub mod exit;
pub mod floatcheck;
pub mod qemu;
pub mod run;
pub mod symbolize;

pub use qemu::{Accel, Arch, Machine, VmConfig};
pub use run::{run_captured, run_interactive, VmOutcome};
