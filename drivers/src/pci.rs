//! PCI: ECAM configuration access, enumeration, BAR sizing and assignment.
//!
//! Enumeration walks every bus of the ECAM window, every device and, for
//! multi-function devices, every function. Bridges are not followed: on q35
//! and on aarch64 virt the virtio devices sit on the root bus (no
//! `pcie-root-port` is configured by the runner), and buses behind a bridge
//! would be in the same ECAM window anyway.
//!
//! BARs: on x86 q35 the firmware (qboot) has assigned them and we only read
//! them back. On aarch64 virt nothing does, so [`BarAllocator`] hands out
//! addresses from the host bridge's FDT `ranges` windows (PCI bus address
//! and CPU address may differ; the BAR gets the bus address, the driver maps
//! the CPU address).

use alloc::vec::Vec;

/// Bus/device/function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// 32-bit configuration space access (offsets are dword aligned).
pub trait ConfigAccess {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32;
    fn write32(&self, bdf: Bdf, offset: u16, value: u32);

    fn read16(&self, bdf: Bdf, offset: u16) -> u16 {
        (self.read32(bdf, offset & !3) >> ((offset & 2) * 8)) as u16
    }
    fn read8(&self, bdf: Bdf, offset: u16) -> u8 {
        (self.read32(bdf, offset & !3) >> ((offset & 3) * 8)) as u8
    }
}

/// Configuration space registers (PCI Local Bus 3.0 §6.1).
pub const REG_ID: u16 = 0x00;
pub const REG_COMMAND_STATUS: u16 = 0x04;
pub const REG_CLASS: u16 = 0x08;
pub const REG_HEADER: u16 = 0x0c;
pub const REG_BAR0: u16 = 0x10;
pub const REG_CAP_PTR: u16 = 0x34;
pub const COMMAND_IO: u32 = 1 << 0;
pub const COMMAND_MEMORY: u32 = 1 << 1;
pub const COMMAND_BUS_MASTER: u32 = 1 << 2;
const STATUS_CAP_LIST: u32 = 1 << 20;

/// An ECAM window: 4 KiB of configuration space per function, 1 MiB per bus.
#[derive(Debug, Clone, Copy)]
pub struct Ecam {
    base: usize,
    bus_start: u8,
    bus_end: u8,
}

impl Ecam {
    /// Bytes of ECAM needed for `buses` buses.
    pub const fn window_size(bus_start: u8, bus_end: u8) -> usize {
        (bus_end as usize - bus_start as usize + 1) << 20
    }

    /// Maps the ECAM window at physical `phys` for buses `bus_start..=bus_end`
    /// with `map(phys, len) -> virtual address`.
    ///
    /// # Safety
    /// `phys` must be an ECAM window covering those buses, and `map` must
    /// return a mapping of it that stays valid.
    pub unsafe fn new(
        phys: u64,
        bus_start: u8,
        bus_end: u8,
        map: impl FnOnce(u64, usize) -> usize,
    ) -> Self {
        let base = map(phys, Self::window_size(bus_start, bus_end));
        Self {
            base,
            bus_start,
            bus_end,
        }
    }

    pub fn buses(&self) -> core::ops::RangeInclusive<u8> {
        self.bus_start..=self.bus_end
    }

    fn address(&self, bdf: Bdf, offset: u16) -> Option<usize> {
        if bdf.bus < self.bus_start
            || bdf.bus > self.bus_end
            || bdf.device >= 32
            || bdf.function >= 8
            || offset >= 4096
        {
            return None;
        }
        Some(
            self.base
                + ((bdf.bus - self.bus_start) as usize) * (1 << 20)
                + (bdf.device as usize) * (1 << 15)
                + (bdf.function as usize) * (1 << 12)
                + (offset & !3) as usize,
        )
    }
}

impl ConfigAccess for Ecam {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        match self.address(bdf, offset) {
            // SAFETY: inside the window mapped in `new`.
            Some(a) => unsafe { (a as *const u32).read_volatile() },
            None => u32::MAX,
        }
    }
    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        if let Some(a) = self.address(bdf, offset) {
            // SAFETY: inside the window mapped in `new`.
            unsafe { (a as *mut u32).write_volatile(value) }
        }
    }
}

/// One function found on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciFunction {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    pub class: u8,
    pub subclass: u8,
    pub header_type: u8,
}

/// Every function present on `buses`.
pub fn enumerate(ca: &impl ConfigAccess, buses: core::ops::RangeInclusive<u8>) -> Vec<PciFunction> {
    let mut found = Vec::new();
    for bus in buses {
        for device in 0..32 {
            for function in 0..8 {
                let bdf = Bdf {
                    bus,
                    device,
                    function,
                };
                let id = ca.read32(bdf, REG_ID);
                let vendor = id as u16;
                if vendor == 0xffff || vendor == 0 {
                    if function == 0 {
                        break;
                    }
                    continue;
                }
                let class = ca.read32(bdf, REG_CLASS);
                let header_type = ca.read8(bdf, REG_HEADER + 2);
                found.push(PciFunction {
                    bdf,
                    vendor,
                    device: (id >> 16) as u16,
                    class: (class >> 24) as u8,
                    subclass: (class >> 16) as u8,
                    header_type: header_type & 0x7f,
                });
                if function == 0 && header_type & 0x80 == 0 {
                    break;
                }
            }
        }
    }
    found
}

/// A capability in the standard list: (id, offset).
pub fn capabilities(ca: &impl ConfigAccess, bdf: Bdf) -> Vec<(u8, u16)> {
    let mut caps = Vec::new();
    if ca.read32(bdf, REG_COMMAND_STATUS) & STATUS_CAP_LIST == 0 {
        return caps;
    }
    let mut offset = (ca.read8(bdf, REG_CAP_PTR) & 0xfc) as u16;
    // At most 48 capabilities fit in 256 bytes; the bound stops a looping list.
    while offset >= 0x40 && caps.len() < 48 {
        let header = ca.read32(bdf, offset);
        caps.push((header as u8, offset));
        offset = ((header >> 8) as u8 & 0xfc) as u16;
    }
    caps
}

/// Address space of a memory BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32,
    Mem64,
}

/// A sized BAR. `cpu_addr` is where the CPU reaches it (0 = unassigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub index: u8,
    pub kind: BarKind,
    pub prefetchable: bool,
    pub size: u64,
    pub cpu_addr: u64,
}

/// Sizes the BARs of a type-0 function (all-ones probe, PCI 3.0 §6.2.5.1)
/// and returns them with their current address. Decoding is switched off
/// while probing and restored afterwards.
pub fn size_bars(ca: &impl ConfigAccess, bdf: Bdf) -> [Option<Bar>; 6] {
    let mut bars = [None; 6];
    let command = ca.read32(bdf, REG_COMMAND_STATUS);
    ca.write32(
        bdf,
        REG_COMMAND_STATUS,
        command & !(COMMAND_IO | COMMAND_MEMORY) & 0xffff,
    );
    let mut i = 0usize;
    while i < 6 {
        let offset = REG_BAR0 + 4 * i as u16;
        let original = ca.read32(bdf, offset);
        ca.write32(bdf, offset, u32::MAX);
        let probed = ca.read32(bdf, offset);
        ca.write32(bdf, offset, original);
        if original & 1 == 1 {
            let mask = probed & !0x3;
            if mask != 0 {
                bars[i] = Some(Bar {
                    index: i as u8,
                    kind: BarKind::Io,
                    prefetchable: false,
                    size: (!mask).wrapping_add(1) as u64 & 0xffff_ffff,
                    cpu_addr: (original & !0x3) as u64,
                });
            }
            i += 1;
            continue;
        }
        let prefetchable = original & 0x8 != 0;
        let is64 = (original >> 1) & 0x3 == 2;
        if is64 && i < 5 {
            let high_offset = offset + 4;
            let original_high = ca.read32(bdf, high_offset);
            ca.write32(bdf, high_offset, u32::MAX);
            let probed_high = ca.read32(bdf, high_offset);
            ca.write32(bdf, high_offset, original_high);
            let mask = ((probed_high as u64) << 32) | (probed & !0xf) as u64;
            if mask != 0 {
                bars[i] = Some(Bar {
                    index: i as u8,
                    kind: BarKind::Mem64,
                    prefetchable,
                    size: (!mask).wrapping_add(1),
                    cpu_addr: ((original_high as u64) << 32) | (original & !0xf) as u64,
                });
            }
            i += 2;
        } else {
            let mask = probed & !0xf;
            if mask != 0 {
                bars[i] = Some(Bar {
                    index: i as u8,
                    kind: BarKind::Mem32,
                    prefetchable,
                    size: (!mask).wrapping_add(1) as u64,
                    cpu_addr: (original & !0xf) as u64,
                });
            }
            i += 1;
        }
    }
    ca.write32(bdf, REG_COMMAND_STATUS, command & 0xffff);
    bars
}

/// Turns on memory decoding and bus mastering (DMA).
pub fn enable_memory_and_dma(ca: &impl ConfigAccess, bdf: Bdf) {
    let command = ca.read32(bdf, REG_COMMAND_STATUS) & 0xffff;
    ca.write32(
        bdf,
        REG_COMMAND_STATUS,
        command | COMMAND_MEMORY | COMMAND_BUS_MASTER,
    );
}

/// One window of a PCI host bridge's `ranges` (IEEE 1275 PCI binding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciWindow {
    pub kind: BarKind,
    pub prefetchable: bool,
    pub pci_addr: u64,
    pub cpu_addr: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangesError {
    /// Length is not a whole number of entries.
    BadLength {
        len: usize,
        entry: usize,
    },
    BadCells,
}

fn read_cells(bytes: &[u8], cells: usize) -> u64 {
    bytes[..cells * 4].chunks_exact(4).fold(0u64, |acc, c| {
        (acc << 32) | u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64
    })
}

/// Parses a PCI host bridge `ranges` property: each entry is a 3-cell PCI
/// address (phys.hi carries the space code in bits 24–25 and prefetchable
/// in bit 30), a parent address of `parent_address_cells`, and a size of
/// `size_cells`.
pub fn parse_ranges(
    bytes: &[u8],
    parent_address_cells: usize,
    size_cells: usize,
) -> Result<Vec<PciWindow>, RangesError> {
    if !(1..=2).contains(&parent_address_cells) || !(1..=2).contains(&size_cells) {
        return Err(RangesError::BadCells);
    }
    let entry = 4 * (3 + parent_address_cells + size_cells);
    if !bytes.len().is_multiple_of(entry) {
        return Err(RangesError::BadLength {
            len: bytes.len(),
            entry,
        });
    }
    let mut windows = Vec::new();
    for e in bytes.chunks_exact(entry) {
        let hi = read_cells(e, 1) as u32;
        let pci_addr = read_cells(&e[4..], 2);
        let cpu_addr = read_cells(&e[12..], parent_address_cells);
        let size = read_cells(&e[12 + 4 * parent_address_cells..], size_cells);
        let kind = match (hi >> 24) & 3 {
            1 => BarKind::Io,
            2 => BarKind::Mem32,
            3 => BarKind::Mem64,
            _ => continue, // configuration space: not a BAR window
        };
        windows.push(PciWindow {
            kind,
            prefetchable: hi & (1 << 30) != 0,
            pci_addr,
            cpu_addr,
            size,
        });
    }
    Ok(windows)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarAssignError {
    /// No window has room for this BAR.
    NoSpace { bdf: Bdf, bar: u8, size: u64 },
    /// The BAR reports a size that is not a power of two.
    BadSize { bdf: Bdf, bar: u8, size: u64 },
}

impl core::fmt::Display for BarAssignError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoSpace { bdf, bar, size } => {
                write!(f, "{bdf} BAR{bar}: no PCI window has {size:#x} bytes free")
            }
            Self::BadSize { bdf, bar, size } => {
                write!(f, "{bdf} BAR{bar}: size {size:#x} is not a power of two")
            }
        }
    }
}

/// Bump allocation of BAR space from the host bridge windows.
#[derive(Debug)]
pub struct BarAllocator {
    windows: Vec<(PciWindow, u64)>, // (window, bytes used)
}

impl BarAllocator {
    pub fn new(windows: &[PciWindow]) -> Self {
        Self {
            windows: windows
                .iter()
                .filter(|w| w.kind != BarKind::Io)
                .map(|w| (*w, 0))
                .collect(),
        }
    }

    /// Finds room for `size` bytes aligned to `size`. 64-bit BARs go to a
    /// 64-bit window when there is one, else below 4 GiB; 32-bit BARs only
    /// below 4 GiB. Returns (pci address, cpu address).
    fn take(&mut self, kind: BarKind, size: u64) -> Option<(u64, u64)> {
        let order: &[BarKind] = match kind {
            BarKind::Mem64 => &[BarKind::Mem64, BarKind::Mem32],
            _ => &[BarKind::Mem32],
        };
        for want in order {
            for (w, used) in self.windows.iter_mut().filter(|(w, _)| w.kind == *want) {
                let Some(start) = (w.pci_addr + *used).checked_next_multiple_of(size) else {
                    continue;
                };
                let end = start.checked_add(size)?;
                if end > w.pci_addr + w.size {
                    continue;
                }
                if kind == BarKind::Mem32 && end > 1 << 32 {
                    continue;
                }
                *used = end - w.pci_addr;
                return Some((start, w.cpu_addr + (start - w.pci_addr)));
            }
        }
        None
    }

    /// Sizes and assigns every memory BAR of `bdf` (I/O BARs are left
    /// alone: virtio uses memory BARs), then enables memory decoding and
    /// bus mastering. Largest BARs first keeps the packing tight.
    pub fn assign(
        &mut self,
        ca: &impl ConfigAccess,
        bdf: Bdf,
    ) -> Result<[Option<Bar>; 6], BarAssignError> {
        let mut bars = size_bars(ca, bdf);
        let mut order: Vec<usize> = (0..6)
            .filter(|&i| matches!(bars[i], Some(b) if b.kind != BarKind::Io))
            .collect();
        order.sort_by_key(|&i| core::cmp::Reverse(bars[i].map_or(0, |b| b.size)));
        for i in order {
            let Some(bar) = bars[i].as_mut() else {
                continue;
            };
            if !bar.size.is_power_of_two() {
                return Err(BarAssignError::BadSize {
                    bdf,
                    bar: bar.index,
                    size: bar.size,
                });
            }
            let (pci, cpu) = self
                .take(bar.kind, bar.size)
                .ok_or(BarAssignError::NoSpace {
                    bdf,
                    bar: bar.index,
                    size: bar.size,
                })?;
            let offset = REG_BAR0 + 4 * bar.index as u16;
            let low_flags = ca.read32(bdf, offset) & 0xf;
            ca.write32(bdf, offset, (pci as u32 & !0xf) | low_flags);
            if bar.kind == BarKind::Mem64 {
                ca.write32(bdf, offset + 4, (pci >> 32) as u32);
            }
            bar.cpu_addr = cpu;
        }
        enable_memory_and_dma(ca, bdf);
        Ok(bars)
    }
}

/// Who places a host bridge's BARs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarPlacement {
    /// Nothing before us did (QEMU virt): every memory BAR is placed from the windows.
    Kernel,
    /// Firmware did (q35 with qboot or SeaBIOS): its addresses are kept, but a function
    /// with a memory BAR it left at 0 is placed from the windows as a whole (qboot leaves
    /// the virtio BARs unassigned).
    Firmware,
}

/// The BARs of `bdf`, placed as `placement` says, with memory decoding and bus mastering
/// on. `Ok((bars, placed_here))`: whether this call placed them.
pub fn prepare_bars(
    ca: &impl ConfigAccess,
    bdf: Bdf,
    placement: BarPlacement,
    alloc: &mut BarAllocator,
) -> Result<([Option<Bar>; 6], bool), BarAssignError> {
    if placement == BarPlacement::Firmware {
        let bars = size_bars(ca, bdf);
        let unassigned = bars
            .iter()
            .flatten()
            .any(|b| b.kind != BarKind::Io && b.cpu_addr == 0);
        if !unassigned {
            enable_memory_and_dma(ca, bdf);
            return Ok((bars, false));
        }
    }
    alloc.assign(ca, bdf).map(|bars| (bars, true))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// A configuration space of fake functions whose BARs answer the
    /// all-ones sizing probe like hardware: writable bits are the address
    /// bits above the size, the low flag bits are read-only.
    #[derive(Default)]
    pub(crate) struct FakeBus {
        pub space: RefCell<BTreeMap<(Bdf, u16), u32>>,
        /// (bdf, bar index) -> (size, flags)
        pub bar_defs: BTreeMap<(Bdf, u8), (u64, u32)>,
    }

    impl FakeBus {
        pub fn add_function(&mut self, bdf: Bdf, vendor: u16, device: u16, multi: bool) {
            let mut s = self.space.borrow_mut();
            s.insert((bdf, REG_ID), ((device as u32) << 16) | vendor as u32);
            s.insert((bdf, REG_CLASS), 0x0200_0000);
            s.insert((bdf, REG_HEADER), if multi { 0x0080_0000 } else { 0 });
        }
        pub fn add_bar(&mut self, bdf: Bdf, index: u8, size: u64, flags: u32) {
            self.bar_defs.insert((bdf, index), (size, flags));
            let mut s = self.space.borrow_mut();
            s.insert((bdf, REG_BAR0 + 4 * index as u16), flags);
            if flags & 0x6 == 0x4 {
                s.insert((bdf, REG_BAR0 + 4 * index as u16 + 4), 0);
            }
        }
        /// Writes a register as the device itself would (no write masks).
        pub fn set_raw(&self, bdf: Bdf, offset: u16, value: u32) {
            self.space.borrow_mut().insert((bdf, offset), value);
        }
        fn bar_of(&self, bdf: Bdf, offset: u16) -> Option<(u64, u32, bool)> {
            if !(REG_BAR0..REG_BAR0 + 24).contains(&offset) {
                return None;
            }
            let idx = ((offset - REG_BAR0) / 4) as u8;
            if let Some(&(size, flags)) = self.bar_defs.get(&(bdf, idx)) {
                return Some((size, flags, false));
            }
            if idx > 0 {
                if let Some(&(size, flags)) = self.bar_defs.get(&(bdf, idx - 1)) {
                    if flags & 0x6 == 0x4 {
                        return Some((size, flags, true));
                    }
                }
            }
            None
        }
    }

    impl ConfigAccess for FakeBus {
        fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
            *self
                .space
                .borrow()
                .get(&(bdf, offset))
                .unwrap_or(&if offset == REG_ID { u32::MAX } else { 0 })
        }
        fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
            let stored = match self.bar_of(bdf, offset) {
                Some((size, flags, false)) => {
                    (value & !((size as u32).wrapping_sub(1)) & !0xf) | flags
                }
                Some((size, _, true)) => value & !(((size - 1) >> 32) as u32),
                None if offset == REG_ID => return,
                // Status (upper half) is not written by command writes here.
                None if offset == REG_COMMAND_STATUS => {
                    (self.read32(bdf, offset) & 0xffff_0000) | (value & 0xffff)
                }
                // Unimplemented BARs are hardwired to zero.
                None if (REG_BAR0..REG_BAR0 + 24).contains(&offset) => 0,
                None => value,
            };
            self.space.borrow_mut().insert((bdf, offset), stored);
        }
    }

    const fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
        Bdf {
            bus,
            device,
            function,
        }
    }

    #[test]
    fn enumerates_single_and_multi_function_devices() {
        let mut bus = FakeBus::default();
        bus.add_function(bdf(0, 0, 0), 0x8086, 0x29c0, false);
        bus.add_function(bdf(0, 3, 0), 0x1af4, 0x1053, true);
        bus.add_function(bdf(0, 3, 2), 0x1af4, 0x105a, false);
        // Function 1 of a single-function device must not be reported.
        bus.add_function(bdf(0, 0, 1), 0x1234, 0x5678, false);
        let found: Vec<_> = enumerate(&bus, 0..=0)
            .iter()
            .map(|f| (f.bdf, f.device))
            .collect();
        assert_eq!(
            found,
            vec![
                (bdf(0, 0, 0), 0x29c0),
                (bdf(0, 3, 0), 0x1053),
                (bdf(0, 3, 2), 0x105a)
            ]
        );
    }

    #[test]
    fn sizes_32_and_64_bit_bars() {
        let mut bus = FakeBus::default();
        let f = bdf(0, 1, 0);
        bus.add_function(f, 0x1af4, 0x1053, false);
        bus.add_bar(f, 1, 0x1000, 0x0);
        bus.add_bar(f, 4, 0x4000, 0xc); // 64-bit prefetchable
        let bars = size_bars(&bus, f);
        assert_eq!(bars[0], None);
        assert_eq!(bars[1].unwrap().size, 0x1000);
        assert_eq!(bars[1].unwrap().kind, BarKind::Mem32);
        let b4 = bars[4].unwrap();
        assert_eq!(
            (b4.size, b4.kind, b4.prefetchable),
            (0x4000, BarKind::Mem64, true)
        );
        assert_eq!(bars[5], None, "upper half of a 64-bit BAR is not a BAR");
    }

    /// `ranges` of QEMU 7.2 aarch64 virt (highmem): IO, MMIO32, MMIO64.
    pub(crate) fn virt_ranges() -> Vec<u8> {
        let cells: [u32; 21] = [
            0x0100_0000,
            0,
            0,
            0x0,
            0x3eff_0000,
            0x0,
            0x0001_0000,
            0x0200_0000,
            0,
            0x1000_0000,
            0x0,
            0x1000_0000,
            0x0,
            0x2eff_0000,
            0x0300_0000,
            0x80,
            0x0,
            0x80,
            0x0,
            0x80,
            0x0,
        ];
        cells.iter().flat_map(|c| c.to_be_bytes()).collect()
    }

    #[test]
    fn parses_virt_ranges() {
        let w = parse_ranges(&virt_ranges(), 2, 2).unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].kind, BarKind::Io);
        assert_eq!(w[0].cpu_addr, 0x3eff_0000);
        assert_eq!(
            (w[1].kind, w[1].pci_addr, w[1].size),
            (BarKind::Mem32, 0x1000_0000, 0x2eff_0000)
        );
        assert_eq!(
            (w[2].kind, w[2].cpu_addr, w[2].size),
            (BarKind::Mem64, 0x80_0000_0000, 0x80_0000_0000)
        );
        assert!(matches!(
            parse_ranges(&virt_ranges()[..20], 2, 2),
            Err(RangesError::BadLength { .. })
        ));
    }

    #[test]
    fn assigns_bars_from_windows_and_enables_the_device() {
        let mut bus = FakeBus::default();
        let f = bdf(0, 1, 0);
        bus.add_function(f, 0x1af4, 0x105a, false);
        bus.add_bar(f, 1, 0x1000, 0x0);
        bus.add_bar(f, 4, 0x4000, 0xc);
        let windows = parse_ranges(&virt_ranges(), 2, 2).unwrap();
        let mut alloc = BarAllocator::new(&windows);
        let bars = alloc.assign(&bus, f).unwrap();
        let b4 = bars[4].unwrap();
        assert_eq!(b4.cpu_addr, 0x80_0000_0000);
        assert_eq!(bus.read32(f, REG_BAR0 + 16) & !0xf, 0);
        assert_eq!(bus.read32(f, REG_BAR0 + 20), 0x80);
        assert_eq!(bus.read32(f, REG_BAR0 + 16) & 0xf, 0xc, "flag bits kept");
        let b1 = bars[1].unwrap();
        assert_eq!(b1.cpu_addr, 0x1000_0000);
        assert_eq!(bus.read32(f, REG_BAR0 + 4), 0x1000_0000);
        let cmd = bus.read32(f, REG_COMMAND_STATUS);
        assert_eq!(
            cmd & (COMMAND_MEMORY | COMMAND_BUS_MASTER),
            COMMAND_MEMORY | COMMAND_BUS_MASTER
        );
        // A second device gets the next aligned slot, not an overlapping one.
        let g = bdf(0, 2, 0);
        bus.add_function(g, 0x1af4, 0x1053, false);
        bus.add_bar(g, 4, 0x4000, 0xc);
        let bars = alloc.assign(&bus, g).unwrap();
        assert_eq!(bars[4].unwrap().cpu_addr, 0x80_0000_4000);
    }

    #[test]
    fn full_windows_give_an_error() {
        let mut bus = FakeBus::default();
        let f = bdf(0, 1, 0);
        bus.add_function(f, 0x1af4, 0x105a, false);
        bus.add_bar(f, 0, 0x2000, 0x0);
        let tiny = [PciWindow {
            kind: BarKind::Mem32,
            prefetchable: false,
            pci_addr: 0x1000,
            cpu_addr: 0x1000,
            size: 0x1000,
        }];
        let err = BarAllocator::new(&tiny).assign(&bus, f).unwrap_err();
        assert_eq!(
            err,
            BarAssignError::NoSpace {
                bdf: f,
                bar: 0,
                size: 0x2000
            }
        );
    }

    #[test]
    fn firmware_bars_are_kept_and_empty_ones_placed_without_overlap() {
        let hole = [PciWindow {
            kind: BarKind::Mem32,
            prefetchable: false,
            pci_addr: 0xc000_0000,
            cpu_addr: 0xc000_0000,
            size: 0x3ec0_0000,
        }];
        let mut alloc = BarAllocator::new(&hole);
        let mut bus = FakeBus::default();
        // Assigned by firmware: kept as it is.
        let a = bdf(0, 1, 0);
        bus.add_function(a, 0x8086, 0x10d3, false);
        bus.add_bar(a, 0, 0x2_0000, 0x0);
        bus.write32(a, REG_BAR0, 0xfeb0_0000);
        let (bars, placed) = prepare_bars(&bus, a, BarPlacement::Firmware, &mut alloc).unwrap();
        assert!(!placed);
        assert_eq!(bars[0].unwrap().cpu_addr, 0xfeb0_0000);
        // Two virtio functions qboot left empty: placed from the hole, aligned, disjoint.
        let mut placed_ranges = Vec::new();
        for dev in [2, 3] {
            let f = bdf(0, dev, 0);
            bus.add_function(f, 0x1af4, 0x105a, false);
            bus.add_bar(f, 1, 0x1000, 0x0);
            bus.add_bar(f, 4, 0x4000, 0xc);
            let (bars, placed) = prepare_bars(&bus, f, BarPlacement::Firmware, &mut alloc).unwrap();
            assert!(placed);
            for b in bars.iter().flatten() {
                assert!(b.cpu_addr >= 0xc000_0000 && b.cpu_addr.is_multiple_of(b.size));
                placed_ranges.push((b.cpu_addr, b.cpu_addr + b.size));
            }
            let cmd = bus.read32(f, REG_COMMAND_STATUS);
            assert_eq!(cmd & COMMAND_MEMORY, COMMAND_MEMORY);
        }
        placed_ranges.sort();
        assert_eq!(placed_ranges.len(), 4);
        assert!(
            placed_ranges.windows(2).all(|w| w[0].1 <= w[1].0),
            "{placed_ranges:x?}"
        );
        // With the kernel placing, even assigned BARs are moved into the window.
        let (bars, placed) = prepare_bars(&bus, a, BarPlacement::Kernel, &mut alloc).unwrap();
        assert!(placed && bars[0].unwrap().cpu_addr >= 0xc000_0000);
    }

    #[test]
    fn capability_list_is_walked_and_bounded() {
        let mut bus = FakeBus::default();
        let f = bdf(0, 1, 0);
        bus.add_function(f, 0x1af4, 0x105a, false);
        bus.set_raw(f, REG_COMMAND_STATUS, STATUS_CAP_LIST);
        bus.write32(f, REG_CAP_PTR, 0x40);
        bus.write32(f, 0x40, 0x0000_5009);
        bus.write32(f, 0x50, 0x0000_4009); // loops back to 0x40
        let caps = capabilities(&bus, f);
        assert_eq!(caps.len(), 48);
        assert_eq!(&caps[..2], &[(9, 0x40), (9, 0x50)]);
    }
}
