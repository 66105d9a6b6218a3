//! VMSAv8-64 stage-1 translation tables: 4 KiB granule, 48-bit VA, four
//! levels (L0..L3), identity mappings (output address == input address).
//!
//! Portable: tables are reached through their physical address used as a
//! pointer (identity map on the target, host allocations in the tests), so
//! the descriptor logic — block/page choice, block splitting, unmapping, the
//! walk — is tested with plain `cargo test`. The aarch64 `mm` module owns the
//! live tables and does the TLB maintenance after each change.
//!
//! Descriptor format: ARM ARM D8.3 (valid bit, table/page bit, lower
//! attributes AttrIndx[4:2] AP[7:6] SH[9:8] AF[10], upper PXN[53] UXN[54]).

pub const PAGE_SIZE: u64 = 4096;
pub const BLOCK_2M: u64 = 2 << 20;
/// Input addresses are 48 bits (T0SZ = 16).
pub const VA_LIMIT: u64 = 1 << 48;

pub const VALID: u64 = 1 << 0;
/// Table descriptor at L0-L2, page descriptor at L3 (clear: block at L1/L2).
pub const TABLE_OR_PAGE: u64 = 1 << 1;
pub const AP_READ_ONLY: u64 = 1 << 7;
pub const SH_INNER: u64 = 3 << 8;
pub const AF: u64 = 1 << 10;
pub const PXN: u64 = 1 << 53;
pub const UXN: u64 = 1 << 54;
pub const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
/// Attribute bits of a block/page descriptor (all but output address and type).
pub const ATTR_MASK: u64 = !ADDR_MASK & !(VALID | TABLE_OR_PAGE);

pub const fn attr_index(i: u64) -> u64 {
    i << 2
}

/// MAIR_EL1 slots: 0 Device-nGnRE (0x04), 1 Normal write-back RW-allocate
/// (0xff), 2 Normal non-cacheable (0x44).
pub const MAIR: u64 = 0x04 | (0xff << 8) | (0x44 << 16);
const MAIR_DEVICE: u64 = 0;
const MAIR_NORMAL: u64 = 1;

/// Normal cacheable RAM, accessed.
pub const NORMAL: u64 = attr_index(MAIR_NORMAL) | SH_INNER | AF;
/// MMIO: Device-nGnRE, never executable.
pub const DEVICE: u64 = attr_index(MAIR_DEVICE) | AF | PXN | UXN;
/// Kernel text: read-only, executable at EL1.
pub const TEXT: u64 = NORMAL | AP_READ_ONLY | UXN;
pub const RODATA: u64 = NORMAL | AP_READ_ONLY | PXN | UXN;
/// Data, bss, heap, stacks: read-write, never executable.
pub const DATA: u64 = NORMAL | PXN | UXN;

// The permissions the boot self-tests rely on.
const _: () = assert!(TEXT & AP_READ_ONLY != 0 && TEXT & PXN == 0);
const _: () = assert!(RODATA & AP_READ_ONLY != 0 && RODATA & PXN != 0);
const _: () = assert!(DATA & AP_READ_ONLY == 0 && DATA & PXN != 0 && DATA & UXN != 0);

/// Why a mapping request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No frame left for a page table.
    OutOfMemory,
    /// The range overlaps RAM (MMIO requests must not remap RAM).
    OverlapsRam,
    /// Empty, overflowing, or beyond the 48-bit address space.
    BadRange,
    /// The page tables are not built yet.
    NotReady,
}

/// A leaf found by [`Tables::translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Output address of `va`.
    pub pa: u64,
    /// Attribute bits ([`ATTR_MASK`] of the descriptor).
    pub attrs: u64,
    /// Bytes the descriptor maps: 4 KiB, 2 MiB or 1 GiB.
    pub size: u64,
}

fn level_shift(level: usize) -> u32 {
    39 - 9 * level as u32
}

fn index(va: u64, level: usize) -> usize {
    ((va >> level_shift(level)) & 511) as usize
}

/// A tree of translation tables rooted at an L0 table.
pub struct Tables {
    root: u64,
}

impl Tables {
    /// # Safety
    /// `root` must be the address of a 4 KiB-aligned table of 512 descriptors
    /// (zeroed if new) that stays accessible at that address, as must every
    /// table it references and every frame `alloc` hands out later.
    pub const unsafe fn new(root: u64) -> Self {
        Self { root }
    }

    pub fn root(&self) -> u64 {
        self.root
    }

    fn entry(table: u64, i: usize) -> *mut u64 {
        (table as *mut u64).wrapping_add(i)
    }

    fn read(table: u64, i: usize) -> u64 {
        // SAFETY: `new`'s contract: every table we reach is accessible.
        unsafe { Self::entry(table, i).read_volatile() }
    }

    fn write(table: u64, i: usize, d: u64) {
        // SAFETY: as in `read`.
        unsafe { Self::entry(table, i).write_volatile(d) }
    }

    fn new_table(alloc: &mut dyn FnMut() -> Option<u64>) -> Result<u64, MapError> {
        let t = alloc().ok_or(MapError::OutOfMemory)?;
        for i in 0..512 {
            Self::write(t, i, 0);
        }
        Ok(t)
    }

    /// The table at `level` (1..=3) that holds `va`'s descriptor, creating
    /// tables on the way and splitting blocks that stand in the way into a
    /// table of the next level with the same output and attributes.
    fn table_for(
        &mut self,
        va: u64,
        level: usize,
        alloc: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<u64, MapError> {
        let mut t = self.root;
        for l in 0..level {
            let i = index(va, l);
            let d = Self::read(t, i);
            t = if d & VALID == 0 {
                let n = Self::new_table(alloc)?;
                Self::write(t, i, n | VALID | TABLE_OR_PAGE);
                n
            } else if d & TABLE_OR_PAGE == 0 {
                let n = Self::new_table(alloc)?;
                let child = l + 1;
                let step = 1u64 << level_shift(child);
                let ty = if child == 3 {
                    VALID | TABLE_OR_PAGE
                } else {
                    VALID
                };
                for k in 0..512u64 {
                    let out = (d & ADDR_MASK) + k * step;
                    Self::write(n, k as usize, out | (d & ATTR_MASK) | ty);
                }
                Self::write(t, i, n | VALID | TABLE_OR_PAGE);
                n
            } else {
                d & ADDR_MASK
            };
        }
        Ok(t)
    }

    /// Identity-map `[start, end)` (rounded out to pages) with `attrs`; 2 MiB
    /// blocks where `blocks`, the alignment and the length allow and no
    /// finer table exists there already, 4 KiB pages elsewhere. Existing
    /// mappings in the range are replaced.
    pub fn map(
        &mut self,
        start: u64,
        end: u64,
        attrs: u64,
        blocks: bool,
        alloc: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<(), MapError> {
        let start = start & !(PAGE_SIZE - 1);
        let end = end.checked_add(PAGE_SIZE - 1).ok_or(MapError::BadRange)? & !(PAGE_SIZE - 1);
        if end > VA_LIMIT || start >= end {
            return Err(MapError::BadRange);
        }
        let attrs = attrs & ATTR_MASK;
        let mut va = start;
        while va < end {
            if blocks && va.is_multiple_of(BLOCK_2M) && end - va >= BLOCK_2M {
                let l2 = self.table_for(va, 2, alloc)?;
                let d = Self::read(l2, index(va, 2));
                if d & (VALID | TABLE_OR_PAGE) != VALID | TABLE_OR_PAGE {
                    Self::write(l2, index(va, 2), va | attrs | VALID);
                    va += BLOCK_2M;
                    continue;
                }
            }
            let l3 = self.table_for(va, 3, alloc)?;
            Self::write(l3, index(va, 3), va | attrs | VALID | TABLE_OR_PAGE);
            va += PAGE_SIZE;
        }
        Ok(())
    }

    /// Make the page holding `va` invalid (splitting a block if needed).
    pub fn unmap_page(
        &mut self,
        va: u64,
        alloc: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<(), MapError> {
        if va >= VA_LIMIT {
            return Err(MapError::BadRange);
        }
        let l3 = self.table_for(va, 3, alloc)?;
        Self::write(l3, index(va, 3), 0);
        Ok(())
    }

    /// Walk the tables for `va`: the leaf (page or block) mapping it, if any.
    pub fn translate(&self, va: u64) -> Option<Leaf> {
        if va >= VA_LIMIT {
            return None;
        }
        let mut t = self.root;
        for level in 0..4 {
            let d = Self::read(t, index(va, level));
            if d & VALID == 0 {
                return None;
            }
            let is_table = d & TABLE_OR_PAGE != 0 && level < 3;
            if !is_table {
                if level == 0 {
                    return None; // L0 has no block descriptors with 4 KiB pages
                }
                let size = 1u64 << level_shift(level);
                let base = d & ADDR_MASK & !(size - 1);
                return Some(Leaf {
                    pa: base + (va & (size - 1)),
                    attrs: d & ATTR_MASK,
                    size,
                });
            }
            t = d & ADDR_MASK;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(4096))]
    struct Frame([u64; 512]);

    /// Table frames from the host heap; their addresses play physical memory.
    struct Pool {
        frames: Vec<Box<Frame>>,
        limit: usize,
    }

    impl Pool {
        fn new(limit: usize) -> Self {
            Self {
                frames: Vec::new(),
                limit,
            }
        }
        fn alloc(&mut self) -> Option<u64> {
            if self.frames.len() == self.limit {
                return None;
            }
            let mut f = Box::new(Frame([0xdead_beef; 512])); // garbage: must be zeroed
            let a = f.0.as_mut_ptr() as u64;
            self.frames.push(f);
            Some(a)
        }
    }

    fn tables(pool: &mut Pool) -> Tables {
        let root = pool.alloc().unwrap();
        for i in 0..512 {
            Tables::write(root, i, 0);
        }
        // SAFETY: the pool keeps every frame alive for the test.
        unsafe { Tables::new(root) }
    }

    #[test]
    fn kernel_layout_gets_pages_and_ram_gets_blocks() {
        let mut pool = Pool::new(64);
        let mut t = tables(&mut pool);
        let mut a = || pool.alloc();
        // The aarch64 image layout: text, rodata, data at 0x40080000..
        t.map(0x4008_0000, 0x4009_4000, TEXT, false, &mut a)
            .unwrap();
        t.map(0x4009_4000, 0x4009_7000, RODATA, false, &mut a)
            .unwrap();
        t.map(0x4009_7000, 0x400a_c000, DATA, false, &mut a)
            .unwrap();
        t.map(0x4000_0000, 0x4008_0000, DATA, true, &mut a).unwrap();
        t.map(0x400f_6000, 0x5000_0000, DATA, true, &mut a).unwrap();
        t.map(0x0900_0000, 0x0900_1000, DEVICE, false, &mut a)
            .unwrap();

        let leaf = |va| t.translate(va);
        assert_eq!(
            leaf(0x4008_0123),
            Some(Leaf {
                pa: 0x4008_0123,
                attrs: TEXT,
                size: 4096
            })
        );
        assert_eq!(leaf(0x4009_4000).unwrap().attrs, RODATA);
        assert_eq!(leaf(0x4009_7008).unwrap().attrs, DATA);
        // The gap between bss and the RAM above the image stays unmapped.
        assert_eq!(leaf(0x400b_0000), None);
        // The 2 MiB holding the image is in pages; the rest of RAM in blocks.
        assert_eq!(leaf(0x4010_0000).unwrap().size, 4096);
        let b = leaf(0x4020_0000 + 0x1234).unwrap();
        assert_eq!((b.pa, b.size, b.attrs), (0x4020_1234, BLOCK_2M, DATA));
        assert_eq!(leaf(0x4fff_ffff).unwrap().size, BLOCK_2M);
        assert_eq!(leaf(0x5000_0000), None);
        assert_eq!(leaf(0), None, "page 0 unmapped");
        assert_eq!(leaf(0x0900_0004).unwrap().attrs, DEVICE);
        assert_eq!(leaf(0x0900_1000), None);
    }

    #[test]
    fn unmapping_a_guard_page_splits_the_block() {
        let mut pool = Pool::new(16);
        let mut t = tables(&mut pool);
        let mut a = || pool.alloc();
        t.map(0x4800_0000, 0x4840_0000, DATA, true, &mut a).unwrap();
        assert_eq!(t.translate(0x4820_1000).unwrap().size, BLOCK_2M);
        t.unmap_page(0x4820_1000, &mut a).unwrap();
        assert_eq!(t.translate(0x4820_1000), None);
        assert_eq!(t.translate(0x4820_1fff), None);
        // The rest of the split block still maps the same frames, as pages.
        for va in [0x4820_0000u64, 0x4820_2000, 0x483f_f000] {
            assert_eq!(
                t.translate(va),
                Some(Leaf {
                    pa: va,
                    attrs: DATA,
                    size: 4096
                })
            );
        }
        // The neighbouring block is untouched.
        assert_eq!(t.translate(0x4800_0000).unwrap().size, BLOCK_2M);
        // Mapping the guard back (freeing a stack) restores it as a page.
        t.map(0x4820_1000, 0x4820_2000, DATA, false, &mut a)
            .unwrap();
        assert_eq!(t.translate(0x4820_1000).unwrap().pa, 0x4820_1000);
    }

    #[test]
    fn one_gib_blocks_split_down_to_pages() {
        let mut pool = Pool::new(16);
        let mut t = tables(&mut pool);
        // A boot-map style 1 GiB block at L1 (RAM, 1-2 GiB).
        let mut a = || pool.alloc();
        let l1 = t.table_for(0x4000_0000, 1, &mut a).unwrap();
        Tables::write(l1, 1, 0x4000_0000 | NORMAL | VALID);
        assert_eq!(t.translate(0x7fff_f000).unwrap().size, 1 << 30);
        t.unmap_page(0x5000_0000, &mut a).unwrap();
        assert_eq!(t.translate(0x5000_0000), None);
        assert_eq!(
            t.translate(0x5000_1000).unwrap(),
            Leaf {
                pa: 0x5000_1000,
                attrs: NORMAL,
                size: 4096
            }
        );
        assert_eq!(t.translate(0x5020_0000).unwrap().size, BLOCK_2M);
        assert_eq!(t.translate(0x7fff_f123).unwrap().pa, 0x7fff_f123);
    }

    #[test]
    fn mmio_far_above_ram_and_bad_ranges() {
        let mut pool = Pool::new(16);
        let mut t = tables(&mut pool);
        let mut a = || pool.alloc();
        // PCI ECAM of virt (256 GiB) and a 64-bit BAR window at 512 GiB (L0[1]).
        t.map(0x40_1000_0000, 0x40_2000_0000, DEVICE, true, &mut a)
            .unwrap();
        t.map(0x80_0000_0000, 0x80_0020_0000, DEVICE, true, &mut a)
            .unwrap();
        assert_eq!(t.translate(0x40_1234_5678).unwrap().attrs, DEVICE);
        assert_eq!(t.translate(0x80_0000_0010).unwrap().size, BLOCK_2M);
        assert_eq!(
            t.map(0x1000, 0x1000, DEVICE, true, &mut a),
            Err(MapError::BadRange)
        );
        assert_eq!(
            t.map(u64::MAX - 10, u64::MAX, DEVICE, true, &mut a),
            Err(MapError::BadRange)
        );
        assert_eq!(
            t.map(VA_LIMIT - 4096, VA_LIMIT + 4096, DEVICE, true, &mut a),
            Err(MapError::BadRange)
        );
        assert_eq!(t.unmap_page(VA_LIMIT, &mut a), Err(MapError::BadRange));
        assert_eq!(t.translate(VA_LIMIT), None);
    }

    #[test]
    fn running_out_of_table_frames_is_an_error() {
        let mut pool = Pool::new(3); // root + L1 + L2, no L3
        let mut t = tables(&mut pool);
        let mut a = || pool.alloc();
        t.map(0x4000_0000, 0x4020_0000, DATA, true, &mut a).unwrap();
        assert_eq!(
            t.map(0x4020_0000, 0x4020_1000, DATA, false, &mut a),
            Err(MapError::OutOfMemory)
        );
        assert_eq!(
            t.unmap_page(0x4000_0000, &mut a),
            Err(MapError::OutOfMemory)
        );
        // The failed split left the block intact.
        assert_eq!(t.translate(0x4000_0000).unwrap().size, BLOCK_2M);
    }
}
