//! virtio-mmio version 2 ("modern") transport, virtio 1.2 §4.2.2.
//!
//! Legacy (version 1) devices are refused: they use page-based queue
//! addresses and the legacy feature set. QEMU's microvm creates legacy
//! devices unless it runs with `-global virtio-mmio.force-legacy=false`.

use super::{device_type_of, regs::Regs, VirtioTransport};
use virtio_drivers::{
    transport::{DeviceStatus, DeviceType, InterruptStatus, Transport},
    Error, PhysAddr,
};
use zerocopy::{FromBytes, Immutable, IntoBytes};

const MAGIC: usize = 0x000;
const VERSION: usize = 0x004;
const DEVICE_ID: usize = 0x008;
const DEVICE_FEATURES: usize = 0x010;
const DEVICE_FEATURES_SEL: usize = 0x014;
const DRIVER_FEATURES: usize = 0x020;
const DRIVER_FEATURES_SEL: usize = 0x024;
const QUEUE_SEL: usize = 0x030;
const QUEUE_NUM_MAX: usize = 0x034;
const QUEUE_NUM: usize = 0x038;
const QUEUE_READY: usize = 0x044;
pub(crate) const QUEUE_NOTIFY: usize = 0x050;
const INTERRUPT_STATUS: usize = 0x060;
const INTERRUPT_ACK: usize = 0x064;
const STATUS: usize = 0x070;
const QUEUE_DESC: usize = 0x080;
const QUEUE_DRIVER: usize = 0x090;
const QUEUE_DEVICE: usize = 0x0a0;
const CONFIG_GENERATION: usize = 0x0fc;
const CONFIG: usize = 0x100;

/// "virt" in little endian.
pub const MAGIC_VALUE: u32 = 0x7472_6976;

/// Size of one virtio-mmio slot as QEMU lays them out.
pub const SLOT_SIZE: usize = 0x200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioProbeError {
    /// No virtio-mmio header at this address.
    BadMagic(u32),
    /// A version 1 device; the message says how to get a modern one.
    Legacy,
    UnknownVersion(u32),
    /// Device id 0: an unused slot.
    Empty,
    /// The window is too small to hold the header.
    TooSmall(usize),
}

impl core::fmt::Display for MmioProbeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "no virtio-mmio magic (read {m:#x})"),
            Self::Legacy => write!(
                f,
                "legacy virtio-mmio (version 1) device refused; run QEMU with \
                 -global virtio-mmio.force-legacy=false"
            ),
            Self::UnknownVersion(v) => write!(f, "unknown virtio-mmio version {v}"),
            Self::Empty => write!(f, "empty virtio-mmio slot (device id 0)"),
            Self::TooSmall(n) => write!(f, "virtio-mmio window of {n:#x} bytes is too small"),
        }
    }
}

/// A modern virtio-mmio device.
#[derive(Debug)]
pub struct MmioTransport {
    regs: Regs,
    device_id: u32,
}

impl MmioTransport {
    /// Checks the header and returns a transport for a modern device.
    ///
    /// # Safety
    /// `regs` must cover a virtio-mmio slot (header and config space) that
    /// nothing else uses while the transport lives.
    pub unsafe fn probe(regs: Regs) -> Result<Self, MmioProbeError> {
        if regs.len() < CONFIG {
            return Err(MmioProbeError::TooSmall(regs.len()));
        }
        let magic = regs.read32(MAGIC);
        if magic != MAGIC_VALUE {
            return Err(MmioProbeError::BadMagic(magic));
        }
        // An empty slot first: QEMU's unused slots also report version 1
        // on virt, and they are not an error.
        let device_id = regs.read32(DEVICE_ID);
        if device_id == 0 {
            return Err(MmioProbeError::Empty);
        }
        match regs.read32(VERSION) {
            1 => return Err(MmioProbeError::Legacy),
            2 => {}
            v => return Err(MmioProbeError::UnknownVersion(v)),
        }
        Ok(Self { regs, device_id })
    }

    pub fn base(&self) -> usize {
        self.regs.base()
    }

    pub fn kicker(&self) -> super::Kicker {
        super::Kicker::Mmio(self.regs)
    }
}

impl VirtioTransport for MmioTransport {
    fn device_id(&self) -> u32 {
        self.device_id
    }
}

impl Transport for MmioTransport {
    fn device_type(&self) -> DeviceType {
        device_type_of(self.device_id)
    }

    fn read_device_features(&mut self) -> u64 {
        self.regs
            .read_selected_u64(DEVICE_FEATURES_SEL, DEVICE_FEATURES)
            & !super::HIDDEN_FEATURES
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.regs
            .write_selected_u64(DRIVER_FEATURES_SEL, DRIVER_FEATURES, driver_features);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.regs.write32(QUEUE_SEL, queue.into());
        self.regs.read32(QUEUE_NUM_MAX)
    }

    fn notify(&mut self, queue: u16) {
        self.regs.write32(QUEUE_NOTIFY, queue.into());
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.regs.read32(STATUS))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.regs.write32(STATUS, status.bits());
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {
        // Only legacy devices have GuestPageSize.
    }

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.regs.write32(QUEUE_SEL, queue.into());
        self.regs.write32(QUEUE_NUM, size);
        self.regs.write64_split(QUEUE_DESC, descriptors);
        self.regs.write64_split(QUEUE_DRIVER, driver_area);
        self.regs.write64_split(QUEUE_DEVICE, device_area);
        self.regs.write32(QUEUE_READY, 1);
    }

    fn queue_unset(&mut self, queue: u16) {
        self.regs.write32(QUEUE_SEL, queue.into());
        self.regs.write32(QUEUE_READY, 0);
        self.regs.write32(QUEUE_NUM, 0);
        self.regs.write64_split(QUEUE_DESC, 0);
        self.regs.write64_split(QUEUE_DRIVER, 0);
        self.regs.write64_split(QUEUE_DEVICE, 0);
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.regs.write32(QUEUE_SEL, queue.into());
        self.regs.read32(QUEUE_READY) != 0
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        let status = self.regs.read32(INTERRUPT_STATUS);
        if status != 0 {
            self.regs.write32(INTERRUPT_ACK, status);
        }
        InterruptStatus::from_bits_truncate(status)
    }

    fn read_config_generation(&self) -> u32 {
        self.regs.read32(CONFIG_GENERATION)
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        let size = core::mem::size_of::<T>();
        if CONFIG + offset + size > self.regs.len() {
            return Err(Error::ConfigSpaceTooSmall);
        }
        let mut value = T::new_zeroed();
        for (i, byte) in value.as_mut_bytes().iter_mut().enumerate() {
            *byte = self.regs.read8(CONFIG + offset + i);
        }
        Ok(value)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> Result<(), Error> {
        let bytes = value.as_bytes();
        if CONFIG + offset + bytes.len() > self.regs.len() {
            return Err(Error::ConfigSpaceTooSmall);
        }
        for (i, byte) in bytes.iter().enumerate() {
            self.regs.write8(CONFIG + offset + i, *byte);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(version: u32, device_id: u32) -> Vec<u32> {
        let mut mem = vec![0u32; SLOT_SIZE / 4];
        mem[0] = MAGIC_VALUE;
        mem[1] = version;
        mem[2] = device_id;
        mem
    }

    fn probe(mem: &mut [u32]) -> Result<MmioTransport, MmioProbeError> {
        // SAFETY: the test memory lives for the whole call.
        unsafe { MmioTransport::probe(Regs::new(mem.as_mut_ptr() as usize, mem.len() * 4)) }
    }

    #[test]
    fn modern_device_is_accepted_with_its_raw_id() {
        let mut mem = slot(2, 26);
        let t = probe(&mut mem).unwrap();
        assert_eq!(t.device_id(), 26);
    }

    #[test]
    fn legacy_device_is_refused_with_a_hint() {
        let mut mem = slot(1, 19);
        let err = probe(&mut mem).unwrap_err();
        assert_eq!(err, MmioProbeError::Legacy);
        assert!(format!("{err}").contains("force-legacy=false"));
    }

    #[test]
    fn empty_slot_and_garbage_are_told_apart() {
        let mut mem = slot(2, 0);
        assert_eq!(probe(&mut mem).unwrap_err(), MmioProbeError::Empty);
        let mut mem = slot(1, 0);
        assert_eq!(
            probe(&mut mem).unwrap_err(),
            MmioProbeError::Empty,
            "empty legacy slot"
        );
        let mut mem = slot(2, 19);
        mem[0] = 0xffff_ffff;
        assert_eq!(
            probe(&mut mem).unwrap_err(),
            MmioProbeError::BadMagic(0xffff_ffff)
        );
    }

    #[test]
    fn event_idx_is_never_offered_and_kicks_hit_the_doorbell() {
        let mut mem = slot(2, 19);
        mem[DEVICE_FEATURES / 4] = (1 << 29) | (1 << 28) | 1;
        let mut t = probe(&mut mem).unwrap();
        let f = t.read_device_features();
        assert_eq!(f & (1 << 29), 0, "EVENT_IDX hidden");
        assert_eq!(f & ((1 << 28) | 1), (1 << 28) | 1, "other features kept");
        t.kicker().kick(1);
        let _ = t;
        assert_eq!(mem[QUEUE_NOTIFY / 4], 1);
    }

    #[test]
    fn queue_setup_writes_split_addresses() {
        let mut mem = slot(2, 19);
        let mut t = probe(&mut mem).unwrap();
        t.queue_set(1, 64, 0x1_2345_6000, 0x2000, 0x3000);
        let _ = t;
        assert_eq!(mem[QUEUE_SEL / 4], 1);
        assert_eq!(mem[QUEUE_NUM / 4], 64);
        assert_eq!(mem[QUEUE_DESC / 4], 0x2345_6000);
        assert_eq!(mem[QUEUE_DESC / 4 + 1], 1);
        assert_eq!(mem[QUEUE_DRIVER / 4], 0x2000);
        assert_eq!(mem[QUEUE_DEVICE / 4], 0x3000);
        assert_eq!(mem[QUEUE_READY / 4], 1);
    }
}
