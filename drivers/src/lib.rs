//! PCI (ECAM), virtio-mmio, the virtio Hal, vsock connections and the virtio-fs (FUSE) client.
//!
//! Everything here is portable and host-tested except the few lines that touch
//! real MMIO, which only run in the kernel. Layout, one concern per file:
//!
//! - [`pci`]: ECAM configuration access, bus enumeration, BAR sizing and
//!   assignment from the host bridge's `ranges` (aarch64 virt assigns nothing).
//! - [`acpi_mcfg`]: the ECAM windows of x86 q35 from the ACPI MCFG table.
//! - [`mmio_discovery`]: virtio-mmio slots from the microvm command line
//!   (`virtio_mmio.device=`) and from FDT `reg` values.
//! - [`virtio`]: modern (1.x) transports for PCI and virtio-mmio v2 that
//!   implement `virtio_drivers::transport::Transport`; virtio-drivers 0.13's
//!   own transports reject device id 26 (virtio-fs), so both devices use ours.
//! - [`hal`]: the `virtio_drivers::Hal` over the kernel's frame allocator
//!   (identity mapping).
//! - [`fuse`] + [`virtiofs`]: FUSE messages and the virtio-fs client with a
//!   small read-only file API.
//! - [`net`]: virtio-net frames in and out without blocking, for the TCP/IP stack.
//! - [`vsock`]: a stream server over virtio-drivers' vsock connection manager
//!   with credit handling for messages of megabytes.
//! - [`idle`]: how long a polling loop waits after an empty poll (spin, then
//!   sleeps that double up to a cap).
//! - [`clock`]: the time source and deadline of the drivers' waiting loops.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod acpi_mcfg;
pub mod clock;
pub mod fuse;
pub mod hal;
pub mod idle;
pub mod mmio_discovery;
pub mod net;
pub mod pci;
pub mod virtio;
pub mod virtiofs;
pub mod vsock;
