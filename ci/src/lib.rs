//! Host-side VM runner: boots microkernelia images under QEMU with a timeout,
//! captures the serial console, and decodes the kernel's exit code.
//!
//! - [`qemu`]: machines (x86 q35 + qboot, x86 microvm, aarch64 virt), accelerator,
//!   and the QEMU command line built from a [`qemu::VmConfig`].
//! - [`run`]: run captured (tests, benchmarks) or interactive (`make run-*`).
//! - [`exit`]: what QEMU's exit status means for each machine.
//! - [`build`]: where `make` puts kernel images; builds them on request.
//! - [`floatcheck`]: objdump proof that x86 float code uses SSE, not soft-float.
//! - [`daemons`]: one virtiofsd + vhost-device-vsock per VM, their QEMU
//!   arguments, the vsock host client, cleanup on drop.
//! - [`mcp_vm`]: a VM serving MCP in the background (daemons, ready line, vsock
//!   connection), for `mk-run run --share`, `mcp-cli bridge --boot`, tests, benchmarks.
//! - [`orphan`]: children that die with the runner even when it is killed.
//! - [`live_vm`]: a VM whose serial can be watched while it runs.
//! - [`symbolize`]: function and line for each address of a fault report.

pub mod build;
pub mod daemons;
pub mod exit;
pub mod floatcheck;
pub mod live_vm;
pub mod mcp_vm;
pub mod orphan;
pub mod qemu;
pub mod run;
pub mod symbolize;

pub use qemu::{Accel, Arch, Machine, UserNet, VmConfig};
pub use run::{run_captured, run_interactive, VmOutcome};
