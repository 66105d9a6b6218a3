//! Modern virtio transports (PCI 1.x and virtio-mmio v2) and the shared
//! feature-negotiation step.
//!
//! virtio-drivers 0.13 ships PCI and MMIO transports, but both turn the
//! device id into its `DeviceType` enum first and refuse id 26 (virtio-fs),
//! which it does not know. These transports keep the raw id
//! ([`VirtioTransport::device_id`]) and implement the crate's `Transport`
//! trait, so the crate's `VirtQueue` and vsock driver run on them unchanged.

#[cfg(test)]
pub(crate) mod fake_device;
pub mod mmio;
pub mod pci;
pub mod regs;

use virtio_drivers::{
    transport::{DeviceStatus, DeviceType, InterruptStatus, Transport},
    Error, PhysAddr,
};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Virtio device ids (virtio 1.2 §5).
pub const DEVICE_ID_NET: u32 = 1;
pub const DEVICE_ID_VSOCK: u32 = 19;
pub const DEVICE_ID_FS: u32 = 26;

/// VIRTIO_F_VERSION_1 (virtio 1.2 §6): a modern device; we drive no other kind.
pub const F_VERSION_1: u64 = 1 << 32;

/// Features these transports never offer to a driver.
///
/// VIRTIO_F_EVENT_IDX (bit 29): virtio-drivers 0.13 decides whether to
/// notify with `avail_idx >= avail_event + 1`, which ignores 16-bit
/// wrap-around: once the indices wrap, a device waiting at a high
/// `avail_event` is never notified again and the queue stalls. Without it the
/// device suppresses notifications with the used ring's NO_NOTIFY flag.
pub const HIDDEN_FEATURES: u64 = 1 << 29;

/// Rings a queue's doorbell from outside the driver that owns the
/// transport. Spurious notifications are allowed (virtio 1.2 §2.7.13);
/// [`crate::vsock::VsockServer`] sends one now and then while idle, so a
/// notification the driver skipped (virtio-drivers has no full barrier
/// between publishing `avail.idx` and reading the device's NO_NOTIFY flag)
/// cannot leave a queue stalled.
#[derive(Debug, Clone, Copy)]
pub enum Kicker {
    Mmio(regs::Regs),
    /// Notify address of queues 0..4 (None: outside the window).
    Pci([Option<usize>; 4]),
}

impl Kicker {
    pub fn kick(&self, queue: u16) {
        match self {
            Kicker::Mmio(r) => r.write32(mmio::QUEUE_NOTIFY, queue.into()),
            Kicker::Pci(addrs) => {
                if let Some(Some(a)) = addrs.get(queue as usize) {
                    // SAFETY: inside the notify window mapped for the transport.
                    unsafe { (*a as *mut u16).write_volatile(queue) }
                }
            }
        }
    }
}

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

/// Either transport, so the kernel can hold one device type for both buses.
#[derive(Debug)]
pub enum AnyTransport {
    Pci(pci::PciTransport),
    Mmio(mmio::MmioTransport),
}

macro_rules! delegate {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            AnyTransport::Pci($t) => $e,
            AnyTransport::Mmio($t) => $e,
        }
    };
}

impl VirtioTransport for AnyTransport {
    fn device_id(&self) -> u32 {
        delegate!(self, t => t.device_id())
    }
}

impl AnyTransport {
    pub fn kicker(&mut self) -> Kicker {
        match self {
            AnyTransport::Pci(t) => t.kicker(),
            AnyTransport::Mmio(t) => t.kicker(),
        }
    }
}

impl Transport for AnyTransport {
    fn device_type(&self) -> DeviceType {
        delegate!(self, t => t.device_type())
    }
    fn read_device_features(&mut self) -> u64 {
        delegate!(self, t => t.read_device_features())
    }
    fn write_driver_features(&mut self, f: u64) {
        delegate!(self, t => t.write_driver_features(f))
    }
    fn max_queue_size(&mut self, q: u16) -> u32 {
        delegate!(self, t => t.max_queue_size(q))
    }
    fn notify(&mut self, q: u16) {
        delegate!(self, t => t.notify(q))
    }
    fn get_status(&self) -> DeviceStatus {
        delegate!(self, t => t.get_status())
    }
    fn set_status(&mut self, s: DeviceStatus) {
        delegate!(self, t => t.set_status(s))
    }
    fn set_guest_page_size(&mut self, s: u32) {
        delegate!(self, t => t.set_guest_page_size(s))
    }
    fn requires_legacy_layout(&self) -> bool {
        false
    }
    fn queue_set(&mut self, q: u16, size: u32, desc: PhysAddr, driver: PhysAddr, device: PhysAddr) {
        delegate!(self, t => t.queue_set(q, size, desc, driver, device))
    }
    fn queue_unset(&mut self, q: u16) {
        delegate!(self, t => t.queue_unset(q))
    }
    fn queue_used(&mut self, q: u16) -> bool {
        delegate!(self, t => t.queue_used(q))
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        delegate!(self, t => t.ack_interrupt())
    }
    fn read_config_generation(&self) -> u32 {
        delegate!(self, t => t.read_config_generation())
    }
    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        delegate!(self, t => t.read_config_space(offset))
    }
    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> Result<(), Error> {
        delegate!(self, t => t.write_config_space(offset, value))
    }
}
