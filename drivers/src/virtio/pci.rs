//! Virtio over PCI, modern interface (virtio 1.2 §4.1.4): the common
//! configuration, notification, ISR and device configuration structures are
//! found through vendor capabilities and live in memory BARs.

use super::{device_type_of, regs::Regs, VirtioTransport};
use crate::pci::{capabilities, Bar, BarKind, Bdf, ConfigAccess};
use virtio_drivers::{
    transport::{DeviceStatus, DeviceType, InterruptStatus, Transport},
    Error, PhysAddr,
};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Red Hat / virtio vendor id; modern device ids are 0x1040 + virtio id.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
const MODERN_DEVICE_BASE: u16 = 0x1040;

const CAP_ID_VENDOR: u8 = 0x09;
const CFG_COMMON: u8 = 1;
const CFG_NOTIFY: u8 = 2;
const CFG_ISR: u8 = 3;
const CFG_DEVICE: u8 = 4;

// struct virtio_pci_common_cfg
const DEVICE_FEATURE_SELECT: usize = 0x00;
const DEVICE_FEATURE: usize = 0x04;
const DRIVER_FEATURE_SELECT: usize = 0x08;
const DRIVER_FEATURE: usize = 0x0c;
const DEVICE_STATUS: usize = 0x14;
const CONFIG_GENERATION: usize = 0x15;
const QUEUE_SELECT: usize = 0x16;
const QUEUE_SIZE: usize = 0x18;
const QUEUE_ENABLE: usize = 0x1c;
const QUEUE_NOTIFY_OFF: usize = 0x1e;
const QUEUE_DESC: usize = 0x20;
const QUEUE_DRIVER: usize = 0x28;
const QUEUE_DEVICE: usize = 0x30;
const COMMON_CFG_LEN: usize = 0x38;

/// The virtio device id behind a PCI id, for modern (non-transitional) ids.
pub fn virtio_id_of(vendor: u16, device: u16) -> Option<u32> {
    (vendor == VIRTIO_VENDOR && (MODERN_DEVICE_BASE..=0x107f).contains(&device))
        .then(|| (device - MODERN_DEVICE_BASE) as u32)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioPciError {
    NotVirtio {
        vendor: u16,
        device: u16,
    },
    MissingCapability(&'static str),
    /// A capability points at a BAR that is absent, I/O, or too small.
    BadBar {
        bar: u8,
        offset: u32,
        length: u32,
    },
}

impl core::fmt::Display for VirtioPciError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotVirtio { vendor, device } => {
                write!(f, "{vendor:04x}:{device:04x} is not a modern virtio device")
            }
            Self::MissingCapability(c) => write!(f, "virtio capability {c} missing"),
            Self::BadBar { bar, offset, length } => write!(
                f,
                "virtio structure at BAR{bar}+{offset:#x} ({length:#x} bytes) is not in a memory BAR"
            ),
        }
    }
}

#[derive(Debug)]
pub struct PciTransport {
    device_id: u32,
    common: Regs,
    notify: Regs,
    notify_multiplier: u32,
    isr: Regs,
    device_cfg: Option<Regs>,
}

impl PciTransport {
    /// Builds the transport for the function `bdf` whose memory BARs are
    /// assigned (`bars`, CPU addresses), mapping each structure with
    /// `map(phys, len) -> virt`.
    ///
    /// # Safety
    /// `bars` must be the function's real, decoding BARs, and the mappings
    /// must stay valid and unshared while the transport lives.
    pub unsafe fn new(
        ca: &impl ConfigAccess,
        bdf: Bdf,
        bars: &[Option<Bar>; 6],
        mut map: impl FnMut(u64, usize) -> usize,
    ) -> Result<Self, VirtioPciError> {
        let id = ca.read32(bdf, 0);
        let (vendor, device) = (id as u16, (id >> 16) as u16);
        let device_id =
            virtio_id_of(vendor, device).ok_or(VirtioPciError::NotVirtio { vendor, device })?;
        let mut common = None;
        let mut notify = None;
        let mut isr = None;
        let mut device_cfg = None;
        let mut notify_multiplier = 0;
        for (cap_id, offset) in capabilities(ca, bdf) {
            if cap_id != CAP_ID_VENDOR {
                continue;
            }
            let header = ca.read32(bdf, offset);
            let cfg_type = (header >> 24) as u8;
            let bar = ca.read8(bdf, offset + 4);
            let bar_offset = ca.read32(bdf, offset + 8);
            let length = ca.read32(bdf, offset + 12);
            let slot = match cfg_type {
                CFG_COMMON => &mut common,
                CFG_NOTIFY => {
                    notify_multiplier = ca.read32(bdf, offset + 16);
                    &mut notify
                }
                CFG_ISR => &mut isr,
                CFG_DEVICE => &mut device_cfg,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some((bar, bar_offset, length));
            }
        }
        let mut region = |found: Option<(u8, u32, u32)>, name| -> Result<Regs, VirtioPciError> {
            let (bar, offset, length) = found.ok_or(VirtioPciError::MissingCapability(name))?;
            let bad = VirtioPciError::BadBar {
                bar,
                offset,
                length,
            };
            let b = bars.get(bar as usize).copied().flatten().ok_or(bad)?;
            if b.kind == BarKind::Io || b.cpu_addr == 0 || offset as u64 + length as u64 > b.size {
                return Err(bad);
            }
            let phys = b.cpu_addr + offset as u64;
            // SAFETY: inside an assigned memory BAR of this function.
            Ok(unsafe { Regs::new(map(phys, length as usize), length as usize) })
        };
        let common = region(common, "common")?;
        if common.len() < COMMON_CFG_LEN {
            return Err(VirtioPciError::MissingCapability("common (too short)"));
        }
        let notify = region(notify, "notify")?;
        let isr = region(isr, "isr")?;
        let device_cfg = match device_cfg {
            Some(d) => Some(region(Some(d), "device")?),
            None => None,
        };
        Ok(Self {
            device_id,
            common,
            notify,
            notify_multiplier,
            isr,
            device_cfg,
        })
    }
}

impl PciTransport {
    fn notify_address(&self, queue: u16) -> Option<usize> {
        self.common.write16(QUEUE_SELECT, queue);
        let off = self.common.read16(QUEUE_NOTIFY_OFF) as usize * self.notify_multiplier as usize;
        (off + 2 <= self.notify.len()).then(|| self.notify.base() + off)
    }

    pub fn kicker(&self) -> super::Kicker {
        super::Kicker::Pci([0, 1, 2, 3].map(|q| self.notify_address(q)))
    }
}

impl VirtioTransport for PciTransport {
    fn device_id(&self) -> u32 {
        self.device_id
    }
}

impl Transport for PciTransport {
    fn device_type(&self) -> DeviceType {
        device_type_of(self.device_id)
    }

    fn read_device_features(&mut self) -> u64 {
        self.common
            .read_selected_u64(DEVICE_FEATURE_SELECT, DEVICE_FEATURE)
            & !super::HIDDEN_FEATURES
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.common
            .write_selected_u64(DRIVER_FEATURE_SELECT, DRIVER_FEATURE, driver_features);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.common.write16(QUEUE_SELECT, queue);
        self.common.read16(QUEUE_SIZE).into()
    }

    fn notify(&mut self, queue: u16) {
        match self.notify_address(queue) {
            // SAFETY: inside the mapped notify window (checked).
            Some(a) => unsafe { (a as *mut u16).write_volatile(queue) },
            None => {
                log::error!("virtio-pci: notify offset of queue {queue} outside the notify window")
            }
        }
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.common.read8(DEVICE_STATUS).into())
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.common.write8(DEVICE_STATUS, status.bits() as u8);
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

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
        self.common.write16(QUEUE_SELECT, queue);
        self.common.write16(QUEUE_SIZE, size as u16);
        self.common.write64_split(QUEUE_DESC, descriptors);
        self.common.write64_split(QUEUE_DRIVER, driver_area);
        self.common.write64_split(QUEUE_DEVICE, device_area);
        self.common.write16(QUEUE_ENABLE, 1);
    }

    fn queue_unset(&mut self, _queue: u16) {
        // Modern PCI cannot disable a single queue (§4.1.4.3.2: queue_enable
        // must not be written 0); the device reset on drop releases it.
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.common.write16(QUEUE_SELECT, queue);
        self.common.read16(QUEUE_ENABLE) == 1
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        // Reading the ISR acknowledges it.
        InterruptStatus::from_bits_truncate(self.isr.read8(0).into())
    }

    fn read_config_generation(&self) -> u32 {
        self.common.read8(CONFIG_GENERATION).into()
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        let cfg = self.device_cfg.as_ref().ok_or(Error::ConfigSpaceMissing)?;
        let mut value = T::new_zeroed();
        let bytes = value.as_mut_bytes();
        if offset + bytes.len() > cfg.len() {
            return Err(Error::ConfigSpaceTooSmall);
        }
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = cfg.read8(offset + i);
        }
        Ok(value)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> Result<(), Error> {
        let cfg = self.device_cfg.as_ref().ok_or(Error::ConfigSpaceMissing)?;
        let bytes = value.as_bytes();
        if offset + bytes.len() > cfg.len() {
            return Err(Error::ConfigSpaceTooSmall);
        }
        for (i, byte) in bytes.iter().enumerate() {
            cfg.write8(offset + i, *byte);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::tests::FakeBus;
    use crate::pci::{size_bars, REG_CAP_PTR, REG_COMMAND_STATUS};

    #[test]
    fn maps_virtio_pci_ids() {
        assert_eq!(virtio_id_of(0x1af4, 0x1053), Some(19));
        assert_eq!(virtio_id_of(0x1af4, 0x105a), Some(26));
        assert_eq!(
            virtio_id_of(0x1af4, 0x1000),
            None,
            "transitional ids are legacy"
        );
        assert_eq!(virtio_id_of(0x8086, 0x1053), None);
    }

    #[test]
    fn finds_structures_through_vendor_capabilities() {
        let mut bus = FakeBus::default();
        let f = Bdf {
            bus: 0,
            device: 2,
            function: 0,
        };
        bus.add_function(f, 0x1af4, 0x105a, false);
        bus.add_bar(f, 4, 0x4000, 0xc);
        // The fake BAR keeps only size-aligned addresses, like hardware.
        let bar_mem = vec![0u8; 0x8000];
        let base = (bar_mem.as_ptr() as u64).next_multiple_of(0x4000);
        bus.write32(f, 0x10 + 16, base as u32);
        bus.write32(f, 0x10 + 20, (base >> 32) as u32);
        bus.set_raw(f, REG_COMMAND_STATUS, 1 << 20);
        bus.write32(f, REG_CAP_PTR, 0x40);
        // (offset, cfg_type, bar offset, length, next)
        for (at, ty, off, len, next) in [
            (0x40u16, 1u32, 0u32, 0x38u32, 0x54u32),
            (0x54, 3, 0x1000, 4, 0x64),
            (0x64, 4, 0x2000, 0x40, 0x74),
            (0x74, 2, 0x3000, 0x1000, 0),
        ] {
            bus.write32(f, at, 0x09 | (next << 8) | (20 << 16) | (ty << 24));
            bus.write32(f, at + 4, 4);
            bus.write32(f, at + 8, off);
            bus.write32(f, at + 12, len);
            bus.write32(f, at + 16, 4);
        }
        let bars = size_bars(&bus, f);
        assert_eq!(bars[4].unwrap().cpu_addr & !0xf, base & !0xf);
        // SAFETY: the fake BAR memory outlives the transport.
        let t = unsafe { PciTransport::new(&bus, f, &bars, |p, _| p as usize) }.unwrap();
        assert_eq!(t.device_id(), 26);
        assert_eq!(t.common.base(), base as usize);
        assert_eq!(t.isr.base(), base as usize + 0x1000);
        assert_eq!(t.device_cfg.unwrap().len(), 0x40);
        assert_eq!(t.notify_multiplier, 4);
    }
}
