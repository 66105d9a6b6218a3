//! [`BootInfo`] from a device tree (the aarch64 boot path; portable so the
//! host tests can run it on QEMU's DTBs): RAM from `/memory`, the command line
//! from `/chosen/bootargs`, the blob's own address. RAM holding the DTB and
//! every `/memreserve/` entry is cut out of the usable regions and listed as
//! reserved, so the frame allocator never hands it out.

use crate::bootinfo::{BootInfo, MemoryKind, MemoryRegion};
use crate::fdt::Fdt;

/// Most reservations honoured (the DTB itself plus /memreserve/ entries).
const MAX_HOLES: usize = 16;

pub fn fill_from_fdt(info: &mut BootInfo, fdt: &Fdt<'_>, dtb_phys: u64) {
    info.fdt = Some(dtb_phys);
    info.set_cmdline(fdt.bootargs().unwrap_or("").as_bytes());

    let mut holes = [(0u64, 0u64); MAX_HOLES];
    holes[0] = (dtb_phys, dtb_phys.saturating_add(fdt.total_size() as u64));
    let mut n = 1;
    for (addr, size) in fdt.reserved().take(MAX_HOLES - 1) {
        holes[n] = (addr, addr.saturating_add(size));
        n += 1;
    }
    let holes = &mut holes[..n];
    holes.sort_unstable();
    for ram in fdt.memory_regions() {
        let ram_end = ram.address.saturating_add(ram.size);
        let mut cur = ram.address;
        for &(hs, he) in holes.iter() {
            if he <= cur || hs >= ram_end {
                continue;
            }
            push(info, cur, hs.max(cur), MemoryKind::Usable);
            push(info, hs.max(cur), he.min(ram_end), MemoryKind::Reserved);
            cur = he.min(ram_end);
        }
        push(info, cur, ram_end, MemoryKind::Usable);
    }
}

fn push(info: &mut BootInfo, start: u64, end: u64, kind: MemoryKind) {
    if end > start {
        info.memory.push(MemoryRegion {
            start,
            len: end - start,
            kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemoryKind::{Reserved, Usable};

    const MAX_256M: &[u8] = include_bytes!("../tests/fixtures/virt-max-256m.dtb");

    fn regions(info: &BootInfo) -> Vec<(u64, u64, MemoryKind)> {
        info.memory
            .regions()
            .iter()
            .map(|r| (r.start, r.end(), r.kind))
            .collect()
    }

    #[test]
    fn dtb_is_cut_out_of_ram() {
        let fdt = Fdt::new(MAX_256M).unwrap();
        let mut info = BootInfo::new("test");
        // Where QEMU puts the DTB with -m 256M (x0 = 0x48000000).
        fill_from_fdt(&mut info, &fdt, 0x4800_0000);
        let end = 0x4800_0000 + MAX_256M.len() as u64;
        assert_eq!(
            regions(&info),
            [
                (0x4000_0000, 0x4800_0000, Usable),
                (0x4800_0000, end, Reserved),
                (end, 0x5000_0000, Usable)
            ]
        );
        assert_eq!(info.cmdline().get("selftest"), Some("null-read"));
        assert_eq!(info.cmdline().get("foo"), Some("bar"));
        assert_eq!(info.fdt, Some(0x4800_0000));
    }

    #[test]
    fn dtb_at_ram_edges_and_outside() {
        let fdt = Fdt::new(MAX_256M).unwrap();
        let len = MAX_256M.len() as u64;
        let mut info = BootInfo::new("test");
        fill_from_fdt(&mut info, &fdt, 0x4000_0000);
        assert_eq!(
            regions(&info),
            [
                (0x4000_0000, 0x4000_0000 + len, Reserved),
                (0x4000_0000 + len, 0x5000_0000, Usable)
            ]
        );
        let mut info = BootInfo::new("test");
        fill_from_fdt(&mut info, &fdt, 0x5000_0000 - 8);
        assert_eq!(
            regions(&info),
            [
                (0x4000_0000, 0x5000_0000 - 8, Usable),
                (0x5000_0000 - 8, 0x5000_0000, Reserved)
            ]
        );
        let mut info = BootInfo::new("test");
        fill_from_fdt(&mut info, &fdt, 0x1000);
        assert_eq!(regions(&info), [(0x4000_0000, 0x5000_0000, Usable)]);
        assert_eq!(info.memory.usable_bytes(), 256 << 20);
    }

    #[test]
    fn memreserve_entries_are_honoured() {
        // Append one /memreserve/ entry: rebuild the blob with the reservation
        // map moved to the end (offsets are free to point anywhere).
        let mut b = MAX_256M.to_vec();
        while !b.len().is_multiple_of(8) {
            b.push(0);
        }
        let rsv = b.len() as u32;
        for v in [0x4010_0000u64, 0x2000, 0, 0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let total = b.len() as u32;
        b[4..8].copy_from_slice(&total.to_be_bytes());
        b[16..20].copy_from_slice(&rsv.to_be_bytes());
        let fdt = Fdt::new(&b).unwrap();
        assert_eq!(fdt.reserved().collect::<Vec<_>>(), [(0x4010_0000, 0x2000)]);
        let mut info = BootInfo::new("test");
        fill_from_fdt(&mut info, &fdt, 0x4800_0000);
        let end = 0x4800_0000 + b.len() as u64;
        assert_eq!(
            regions(&info),
            [
                (0x4000_0000, 0x4010_0000, Usable),
                (0x4010_0000, 0x4010_2000, Reserved),
                (0x4010_2000, 0x4800_0000, Usable),
                (0x4800_0000, end, Reserved),
                (end, 0x5000_0000, Usable)
            ]
        );
    }
}
