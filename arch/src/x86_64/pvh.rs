//! PVH boot: parse Xen's `hvm_start_info` (which QEMU fills for `-kernel` with
//! a `XEN_ELFNOTE_PHYS32_ENTRY` note) into a [`BootInfo`].
//!
//! Layout per xen/include/public/arch-x86/hvm/start_info.h (facts, not code):
//! magic u32 @0, version u32 @4, flags @8, nr_modules @12, modlist_paddr u64 @16,
//! cmdline_paddr u64 @24, rsdp_paddr u64 @32, and from version 1 on
//! memmap_paddr u64 @40, memmap_entries u32 @48. Memory map entries are 24
//! bytes: addr u64, size u64, type u32 (E820 types), reserved u32.
//!
//! Portable: memory is read through a callback, so the host tests feed it a
//! fake physical memory and the kernel passes raw pointer reads.

use crate::bootinfo::{BootInfo, MemoryKind, MemoryRegion};

pub const HVM_START_MAGIC: u32 = 0x336e_c578;
const MEMMAP_ENTRY_SIZE: u64 = 24;
/// More entries than this is a corrupt table, not a real machine.
const MAX_MEMMAP_ENTRIES: u32 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvhError {
    BadMagic(u32),
    /// A structure could not be read (outside readable memory).
    Unreadable(u64),
    TooManyEntries(u32),
    /// Version 0 has no memory map and we do not probe for one.
    NoMemoryMap,
}

pub fn e820_kind(ty: u32) -> MemoryKind {
    match ty {
        1 => MemoryKind::Usable,
        3 => MemoryKind::AcpiReclaimable,
        4 => MemoryKind::AcpiNvs,
        5 => MemoryKind::Unusable,
        _ => MemoryKind::Reserved,
    }
}

/// Parse the start info at physical `addr`. `read(phys, buf)` fills `buf` from
/// physical memory and returns false if that range is not readable.
pub fn parse(
    addr: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
    info: &mut BootInfo,
) -> Result<(), PvhError> {
    let mut hdr = [0u8; 56];
    if !read(addr, &mut hdr) {
        return Err(PvhError::Unreadable(addr));
    }
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let magic = u32_at(&hdr, 0);
    if magic != HVM_START_MAGIC {
        return Err(PvhError::BadMagic(magic));
    }
    let version = u32_at(&hdr, 4);
    let cmdline_paddr = u64_at(&hdr, 24);
    let rsdp = u64_at(&hdr, 32);
    info.rsdp = (rsdp != 0).then_some(rsdp);

    if cmdline_paddr != 0 {
        // NUL-terminated; read in chunks up to the kept maximum.
        let mut buf = [0u8; crate::bootinfo::MAX_CMDLINE];
        let mut len = 0;
        'outer: while len < buf.len() {
            let chunk = (buf.len() - len).min(64);
            if !read(cmdline_paddr + len as u64, &mut buf[len..len + chunk]) {
                return Err(PvhError::Unreadable(cmdline_paddr + len as u64));
            }
            for i in 0..chunk {
                if buf[len + i] == 0 {
                    len += i;
                    break 'outer;
                }
            }
            len += chunk;
        }
        info.set_cmdline(&buf[..len]);
    }

    if version < 1 {
        return Err(PvhError::NoMemoryMap);
    }
    let memmap = u64_at(&hdr, 40);
    let entries = u32_at(&hdr, 48);
    if entries > MAX_MEMMAP_ENTRIES {
        return Err(PvhError::TooManyEntries(entries));
    }
    for i in 0..entries as u64 {
        let mut e = [0u8; MEMMAP_ENTRY_SIZE as usize];
        let at = memmap + i * MEMMAP_ENTRY_SIZE;
        if !read(at, &mut e) {
            return Err(PvhError::Unreadable(at));
        }
        info.memory.push(MemoryRegion {
            start: u64_at(&e, 0),
            len: u64_at(&e, 8),
            kind: e820_kind(u32_at(&e, 16)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeMem(Vec<u8>);
    impl FakeMem {
        fn put(&mut self, at: usize, b: &[u8]) {
            self.0[at..at + b.len()].copy_from_slice(b);
        }
        fn reader(&self) -> impl FnMut(u64, &mut [u8]) -> bool + '_ {
            |a, buf| {
                let a = a as usize;
                match self.0.get(a..a + buf.len()) {
                    Some(s) => {
                        buf.copy_from_slice(s);
                        true
                    }
                    None => false,
                }
            }
        }
    }

    /// A start info as QEMU 7.2 builds it for q35 with 128 MiB.
    fn qemu_like(cmdline: &[u8], version: u32, entries: u32) -> FakeMem {
        let mut m = FakeMem(vec![0; 0x2000]);
        m.put(0x100, &HVM_START_MAGIC.to_le_bytes());
        m.put(0x104, &version.to_le_bytes());
        m.put(0x100 + 24, &0x800u64.to_le_bytes());
        m.put(0x100 + 32, &0xf5b60u64.to_le_bytes());
        m.put(0x100 + 40, &0x400u64.to_le_bytes());
        m.put(0x100 + 48, &entries.to_le_bytes());
        m.put(0x800, cmdline);
        let map: [(u64, u64, u32); 4] = [
            (0, 0x9fc00, 1),
            (0x9fc00, 0x400, 2),
            (0x100000, 0x7f00000, 1),
            (0xfeffc000, 0x4000, 2),
        ];
        for (i, (a, s, t)) in map.iter().enumerate() {
            let o = 0x400 + i * 24;
            m.put(o, &a.to_le_bytes());
            m.put(o + 8, &s.to_le_bytes());
            m.put(o + 16, &t.to_le_bytes());
        }
        m
    }

    #[test]
    fn parses_memmap_cmdline_rsdp() {
        let m = qemu_like(b"selftest=null-read\0garbage", 1, 4);
        let mut info = BootInfo::new("x86_64 PVH");
        parse(0x100, &mut m.reader(), &mut info).unwrap();
        assert_eq!(info.cmdline_str(), "selftest=null-read");
        assert_eq!(info.rsdp, Some(0xf5b60));
        let r = info.memory.regions();
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[2],
            MemoryRegion {
                start: 0x100000,
                len: 0x7f00000,
                kind: MemoryKind::Usable
            }
        );
        assert_eq!(r[3].kind, MemoryKind::Reserved);
        assert_eq!(info.memory.usable_bytes(), 0x9fc00 + 0x7f00000);
    }

    #[test]
    fn rejects_bad_input() {
        let mut info = BootInfo::new("x");
        let m = qemu_like(b"\0", 1, 4);
        assert_eq!(
            parse(0x104, &mut m.reader(), &mut info),
            Err(PvhError::BadMagic(1))
        );
        assert_eq!(
            parse(0x1ff0, &mut m.reader(), &mut info),
            Err(PvhError::Unreadable(0x1ff0))
        );
        let m = qemu_like(b"\0", 0, 4);
        assert_eq!(
            parse(0x100, &mut m.reader(), &mut info),
            Err(PvhError::NoMemoryMap)
        );
        let m = qemu_like(b"\0", 1, 5000);
        assert_eq!(
            parse(0x100, &mut m.reader(), &mut info),
            Err(PvhError::TooManyEntries(5000))
        );
        let m = qemu_like(b"\0", 1, 400);
        assert!(matches!(
            parse(0x100, &mut m.reader(), &mut info),
            Err(PvhError::Unreadable(_))
        ));
    }

    #[test]
    fn unterminated_cmdline_stops_at_limit_or_memory_end() {
        let mut m = qemu_like(b"", 1, 4);
        for i in 0x800..0x2000 {
            m.0[i] = b'a';
        }
        let mut info = BootInfo::new("x");
        parse(0x100, &mut m.reader(), &mut info).unwrap();
        assert_eq!(info.cmdline_str().len(), crate::bootinfo::MAX_CMDLINE);
    }
}
