//! aarch64 virt: the PCI host bridge and virtio-mmio slots from the FDT.

use super::HostBridge;
use alloc::vec::Vec;
use arch::fdt::Fdt;
use arch::BootInfo;
use drivers::mmio_discovery::MmioSlot;
use drivers::pci;

fn fdt(info: &BootInfo) -> Option<Fdt<'static>> {
    let addr = info.fdt?;
    // SAFETY: the DTB the boot loader handed over; RAM is identity-mapped
    // and the blob is never freed.
    match unsafe { Fdt::from_ptr(addr as *const u8) } {
        Ok(f) => Some(f),
        Err(e) => {
            log::error!("devices: FDT at {addr:#x} unusable: {e}");
            None
        }
    }
}

/// `pci-host-ecam-generic` nodes: ECAM `reg`, `bus-range`, and the
/// `ranges` windows BARs are assigned from.
pub fn host_bridges(info: &BootInfo) -> Vec<HostBridge> {
    let Some(fdt) = fdt(info) else {
        return Vec::new();
    };
    let mut bridges = Vec::new();
    for node in fdt.compatible_nodes("pci-host-ecam-generic") {
        let Some(reg) = node.reg().and_then(|mut r| r.next()) else {
            log::error!("devices: {} has no usable reg", node.name);
            continue;
        };
        let (bus_start, bus_end) = match node
            .property("bus-range")
            .map(|p| p.u32s().collect::<Vec<_>>())
        {
            Some(v) if v.len() == 2 && v[0] <= v[1] && v[1] <= 255 => (v[0] as u8, v[1] as u8),
            _ => (0, ((reg.size >> 20).clamp(1, 256) - 1) as u8),
        };
        let windows = match node.property("ranges") {
            Some(p) => match pci::parse_ranges(
                p.value,
                node.parent_cells.address as usize,
                node.child_cells().size as usize,
            ) {
                Ok(w) => w,
                Err(e) => {
                    log::error!("devices: {} ranges: {e:?}", node.name);
                    continue;
                }
            },
            None => Vec::new(),
        };
        if windows.is_empty() {
            log::error!("devices: {} has no BAR windows", node.name);
            continue;
        }
        log::info!(
            "devices: PCI ECAM at {:#x}, buses {bus_start}-{bus_end}, {} windows",
            reg.address,
            windows.len()
        );
        bridges.push(HostBridge {
            ecam: reg.address,
            bus_start,
            bus_end,
            windows,
            placement: pci::BarPlacement::Kernel,
        });
    }
    bridges
}

/// `virtio,mmio` nodes.
pub fn mmio_slots(info: &BootInfo) -> Vec<MmioSlot> {
    let Some(fdt) = fdt(info) else {
        return Vec::new();
    };
    fdt.compatible_nodes("virtio,mmio")
        .filter_map(|n| n.reg().and_then(|mut r| r.next()))
        .map(|r| MmioSlot {
            base: r.address,
            size: r.size,
            irq: None,
        })
        .collect()
}
