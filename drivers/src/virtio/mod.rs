//! Modern virtio transports (PCI 1.x and virtio-mmio v2) and the shared
//! feature-negotiation step.
//!
//! virtio-drivers 0.13 ships PCI and MMIO transports, but both turn the
//! device id into its `DeviceType` enum first and refuse id 26 (virtio-fs),
//! which it does not know. These transports keep the raw id
//! ([`VirtioTransport::device_id`]) and implement the crate's `Transport`
//! trait, so the crate's `VirtQueue` and vsock driver run on them unchanged.

pub mod mmio;
pub mod pci;
pub mod regs;

use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};

/// Virtio device ids (virtio 1.2 §5).
pub const DEVICE_ID_VSOCK: u32 = 19;
pub const DEVICE_ID_FS: u32 = 26;

/// VIRTIO_F_VERSION_1 (virtio 1.2 §6): a modern device; we drive no other kind.
pub const F_VERSION_1: u64 = 1 << 32;

/// Why a virtio device could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioInitError {
    /// The device does not offer VIRTIO_F_VERSION_1 (a legacy-only device).
    NotModern,
    /// The device cleared FEATURES_OK after we wrote our feature set.
    FeaturesRejected { offered: u64, wanted: u64 },
    /// The device id is not the one the driver expects.
    WrongDevice { expected: u32, found: u32 },
}

impl core::fmt::Display for VirtioInitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotModern => write!(f, "device does not offer VIRTIO_F_VERSION_1 (legacy only)"),
            Self::FeaturesRejected { offered, wanted } => write!(
                f,
                "device rejected features {wanted:#x} (offered {offered:#x})"
            ),
            Self::WrongDevice { expected, found } => {
                write!(f, "expected virtio device id {expected}, found {found}")
            }
        }
    }
}

/// A transport that can also tell the raw virtio device id.
pub trait VirtioTransport: Transport {
    fn device_id(&self) -> u32;
}

/// Maps a raw id to virtio-drivers' enum for `Transport::device_type`. The
/// enum has no variant for 26; nothing in virtio-drivers reads
/// `device_type` while driving queues, and our drivers check
/// [`VirtioTransport::device_id`] instead, so unknown ids report `IoMemory`.
pub(crate) fn device_type_of(id: u32) -> DeviceType {
    DeviceType::try_from(id).unwrap_or(DeviceType::IoMemory)
}

/// Device initialisation steps 1–6 of virtio 1.2 §3.1.1: reset, ACKNOWLEDGE,
/// DRIVER, feature negotiation, FEATURES_OK and the check that the device
/// kept it. Returns the negotiated features. The caller then sets up its
/// queues and calls `finish_init` (DRIVER_OK).
pub fn negotiate_features<T: Transport>(
    transport: &mut T,
    wanted: u64,
) -> Result<u64, VirtioInitError> {
    transport.set_status(DeviceStatus::empty());
    transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
    let offered = transport.read_device_features();
    if offered & F_VERSION_1 == 0 {
        transport.set_status(DeviceStatus::FAILED);
        return Err(VirtioInitError::NotModern);
    }
    let negotiated = offered & (wanted | F_VERSION_1);
    transport.write_driver_features(negotiated);
    transport
        .set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK);
    if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
        transport.set_status(DeviceStatus::FAILED);
        return Err(VirtioInitError::FeaturesRejected { offered, wanted });
    }
    Ok(negotiated)
}
