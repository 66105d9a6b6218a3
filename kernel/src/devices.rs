//! Device bring-up: find the virtio devices (PCI ECAM and virtio-mmio) and
//! start the virtio-fs client, the vsock driver and the network card on them.
//!
//! - x86 q35: ECAM from ACPI MCFG (RSDP from PVH); BARs as qboot assigned
//!   them (unassigned ones get space from the q35 PCI hole).
//! - x86 microvm: virtio-mmio from `virtio_mmio.device=` on the command line
//!   (QEMU adds them), else probing the fixed window.
//! - aarch64 virt: ECAM and `ranges` from the FDT `pci-host-ecam-generic`
//!   node, BARs assigned here; `virtio,mmio` nodes.

use alloc::vec::Vec;
use arch::BootInfo;
use drivers::hal::{set_dma_ops, DmaOps, IdentityHal};
use drivers::mmio_discovery::MmioSlot;
use drivers::net::NetDevice;
use drivers::pci::{self, BarAllocator, BarKind, BarPlacement, Ecam, PciWindow};
use drivers::virtio::{
    mmio::{MmioProbeError, MmioTransport},
    pci::{virtio_id_of, PciTransport},
    regs::Regs,
    AnyTransport, Kicker, VirtioTransport, DEVICE_ID_FS, DEVICE_ID_NET, DEVICE_ID_VSOCK,
};
use drivers::virtiofs::{FsClient, VirtioFsChannel};
use drivers::vsock::SocketDriver;

pub type Fs = FsClient<VirtioFsChannel<IdentityHal, AnyTransport>>;
pub type Vsock = SocketDriver<IdentityHal, AnyTransport>;
pub type Net = NetDevice<IdentityHal, AnyTransport>;

/// Request deadline: virtiofsd answers in microseconds; seconds mean it is gone.
pub const TIMEOUT_NS: u64 = 10_000_000_000;

fn dma_alloc(pages: usize) -> Option<u64> {
    arch::mm::alloc_frames(pages as u64, 4096)
}
fn dma_free(paddr: u64, pages: usize) {
    if let Err(e) = arch::mm::free_frames(paddr, pages as u64) {
        log::error!("dma: freeing {pages} pages at {paddr:#x} failed: {e:?}");
    }
}
static DMA: DmaOps = DmaOps {
    alloc_pages: dma_alloc,
    free_pages: dma_free,
};

/// The drivers' idle hook, called between empty polls while a request waits
/// (a virtio-fs reply, vsock credit): lets other cooperative tasks run (a
/// no-op in the boot context), then waits as `drivers::idle::IdleBackoff`
/// says: the first millisecond of an idle run spins (a reply from virtiofsd
/// takes microseconds), after that the CPU sleeps in 200 µs slices
/// (`arch::cpu::idle`). A gap of more than 20 µs between calls means work
/// happened: a new run. The serve loop, which waits for whole requests, backs
/// off further with its own `IdleBackoff` (`serve.rs`).
pub fn idle() {
    use drivers::idle::{IdleBackoff, IdleWait};
    static BACKOFF: arch::spin::SpinLock<IdleBackoff> = arch::spin::SpinLock::new(
        IdleBackoff::new(1_000_000, 200_000, 200_000).with_work_gap(20_000),
    );
    crate::task::yield_now();
    let wait = BACKOFF.lock().wait(arch::time::now_ns());
    match wait {
        IdleWait::Spin => core::hint::spin_loop(),
        IdleWait::Sleep(ns) => {
            arch::cpu::idle(ns);
        }
    }
    BACKOFF.lock().waited(arch::time::now_ns());
}

/// The drivers' clock: the arch timer, [`idle`] between empty polls, [`TIMEOUT_NS`].
pub fn clock() -> drivers::clock::Clock {
    drivers::clock::Clock {
        now_ns: arch::time::now_ns,
        idle,
        timeout_ns: TIMEOUT_NS,
    }
}

fn map(phys: u64, len: usize) -> usize {
    // Page-align: map_mmio works on whole pages.
    let start = phys & !0xfff;
    let end = (phys + len as u64 + 0xfff) & !0xfff;
    if let Err(e) = arch::mm::map_mmio(start, end - start) {
        log::error!("devices: cannot map {phys:#x}+{len:#x}: {e:?}");
    }
    phys as usize
}

/// An ECAM host bridge to scan.
struct HostBridge {
    ecam: u64,
    bus_start: u8,
    bus_end: u8,
    /// Windows to place BARs in.
    windows: Vec<PciWindow>,
    placement: BarPlacement,
}

/// Every virtio transport found, whatever the bus.
pub fn discover(info: &BootInfo) -> Vec<AnyTransport> {
    set_dma_ops(&DMA);
    let mut found = Vec::new();
    let bridges = host_bridges(info);
    for bridge in &bridges {
        scan_pci(bridge, &mut found);
    }
    for slot in mmio_slots(info, bridges.is_empty()) {
        let base = map(slot.base, slot.size as usize);
        // SAFETY: a virtio-mmio window from the platform description, mapped above.
        match unsafe { MmioTransport::probe(Regs::new(base, slot.size as usize)) } {
            Ok(t) => {
                log::info!(
                    "devices: virtio-mmio device id {} at {:#x}",
                    t.device_id(),
                    slot.base
                );
                found.push(AnyTransport::Mmio(t));
            }
            Err(MmioProbeError::Empty) => {}
            // Probing a fixed window finds holes too.
            Err(e @ MmioProbeError::BadMagic(_)) => log::debug!("devices: {:#x}: {e}", slot.base),
            Err(e) => log::error!("devices: virtio-mmio at {:#x}: {e}", slot.base),
        }
    }
    found
}

#[cfg(target_arch = "x86_64")]
fn host_bridges(info: &BootInfo) -> Vec<HostBridge> {
    let Some(rsdp) = info.rsdp else {
        return Vec::new();
    };
    // SAFETY: the RSDP from the boot protocol; RAM is identity-mapped.
    match unsafe { drivers::acpi_mcfg::ecam_regions(rsdp as usize) } {
        Ok(regions) => regions
            .into_iter()
            .filter(|r| r.segment == 0)
            .map(|r| HostBridge {
                ecam: r.base + ((r.bus_start as u64) << 20),
                bus_start: r.bus_start,
                bus_end: r.bus_end,
                windows: alloc::vec![PCI_HOLE],
                placement: BarPlacement::Firmware,
            })
            .collect(),
        Err(e) => {
            // microvm has ACPI but no PCI.
            log::info!("devices: no PCI ECAM ({e})");
            Vec::new()
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn mmio_slots(info: &BootInfo, no_pci: bool) -> Vec<MmioSlot> {
    let mut slots = Vec::new();
    for entry in drivers::mmio_discovery::from_cmdline(info.cmdline_str()) {
        match entry {
            Ok(s) => slots.push(s),
            Err(e) => log::error!("devices: bad virtio_mmio.device={}: {}", e.entry, e.why),
        }
    }
    if slots.is_empty() && no_pci {
        log::info!("devices: no virtio_mmio.device= entries, probing the microvm window");
        slots = drivers::mmio_discovery::microvm_window_slots();
    }
    slots
}

#[cfg(target_arch = "aarch64")]
mod fdt_discovery;

#[cfg(target_arch = "aarch64")]
fn host_bridges(info: &BootInfo) -> Vec<HostBridge> {
    fdt_discovery::host_bridges(info)
}

#[cfg(target_arch = "aarch64")]
fn mmio_slots(info: &BootInfo, _no_pci: bool) -> Vec<MmioSlot> {
    fdt_discovery::mmio_slots(info)
}

/// q35's 32-bit PCI hole above the ECAM window, for BARs firmware left empty.
#[cfg(target_arch = "x86_64")]
const PCI_HOLE: PciWindow = PciWindow {
    kind: BarKind::Mem32,
    prefetchable: false,
    pci_addr: 0xc000_0000,
    cpu_addr: 0xc000_0000,
    size: 0x3ec0_0000,
};

fn scan_pci(bridge: &HostBridge, found: &mut Vec<AnyTransport>) {
    // Only the root bus: bridges are not followed (see drivers::pci).
    let root = bridge.bus_start;
    let _ = bridge.bus_end;
    // SAFETY: ECAM window of the root bus from MCFG / FDT.
    let ecam = unsafe { Ecam::new(bridge.ecam, root, root, map) };
    let mut allocator = BarAllocator::new(&bridge.windows);
    for f in pci::enumerate(&ecam, ecam.buses()) {
        log::debug!(
            "pci {} {:04x}:{:04x} class {:02x}",
            f.bdf,
            f.vendor,
            f.device,
            f.class
        );
        let Some(id) = virtio_id_of(f.vendor, f.device) else {
            continue;
        };
        if ![DEVICE_ID_FS, DEVICE_ID_VSOCK, DEVICE_ID_NET].contains(&id) {
            continue;
        }
        let bars = match pci::prepare_bars(&ecam, f.bdf, bridge.placement, &mut allocator) {
            Ok((bars, placed)) => {
                if placed && bridge.placement == BarPlacement::Firmware {
                    log::info!(
                        "devices: {} has unassigned BARs, placed them in the PCI hole",
                        f.bdf
                    );
                }
                bars
            }
            Err(e) => {
                log::error!("devices: {e}");
                continue;
            }
        };
        for b in bars.iter().flatten().filter(|b| b.kind != BarKind::Io) {
            map(b.cpu_addr, b.size as usize);
        }
        // SAFETY: the function's own BARs, assigned and mapped above.
        match unsafe { PciTransport::new(&ecam, f.bdf, &bars, |p, _| p as usize) } {
            Ok(t) => {
                log::info!("devices: virtio-pci device id {id} at {}", f.bdf);
                found.push(AnyTransport::Pci(t));
            }
            Err(e) => log::error!("devices: {}: {e}", f.bdf),
        }
    }
}

/// The devices the kernel uses.
pub struct Devices {
    pub fs: Option<Fs>,
    pub vsock: Option<Vsock>,
    /// Doorbells of the vsock device: give them to `VsockServer::with_kicker`.
    pub vsock_kicker: Option<Kicker>,
    /// The first network card (absent: MCP is served on vsock only).
    pub net: Option<Net>,
}

pub fn init(info: &BootInfo) -> Devices {
    let mut devices = Devices {
        fs: None,
        vsock: None,
        vsock_kicker: None,
        net: None,
    };
    for mut t in discover(info) {
        match t.device_id() {
            DEVICE_ID_FS if devices.fs.is_none() => {
                let channel = match VirtioFsChannel::<IdentityHal, _>::new(t, clock()) {
                    Ok(c) => c,
                    Err(e) => {
                        log::error!("virtio-fs: {e}");
                        continue;
                    }
                };
                let tag = alloc::string::String::from(channel.tag());
                match FsClient::new(channel) {
                    Ok(fs) => {
                        log::info!(
                            "virtio-fs: tag \"{tag}\", reads of {} KiB",
                            fs.max_read() / 1024
                        );
                        devices.fs = Some(fs);
                    }
                    Err(e) => log::error!("virtio-fs: FUSE_INIT failed: {e}"),
                }
            }
            DEVICE_ID_VSOCK if devices.vsock.is_none() => {
                let kicker = t.kicker();
                match Vsock::new(t) {
                    Ok(v) => {
                        log::info!("vsock: guest cid {}", v.guest_cid());
                        devices.vsock = Some(v);
                        devices.vsock_kicker = Some(kicker);
                    }
                    Err(e) => log::error!("vsock: {e}"),
                }
            }
            DEVICE_ID_NET if devices.net.is_none() => {
                let kicker = t.kicker();
                match Net::new(t) {
                    Ok(n) => {
                        let m = n.mac();
                        log::info!(
                            "virtio-net: mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                            m[0],
                            m[1],
                            m[2],
                            m[3],
                            m[4],
                            m[5]
                        );
                        devices.net = Some(n.with_kicker(kicker, arch::time::now_ns));
                    }
                    Err(e) => log::error!("virtio-net: {e}"),
                }
            }
            id => log::info!("devices: ignoring virtio device id {id}"),
        }
    }
    devices
}
