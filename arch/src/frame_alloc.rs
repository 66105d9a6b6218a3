//! Physical frame allocator over the boot memory map.
//!
//! A sorted list of free page ranges: first-fit, any power-of-two alignment,
//! contiguous runs of any length (DMA rings and buffers need that), and frees
//! that merge with their neighbours. No allocation of its own, so it works
//! before the heap exists. Fragmentation is bounded by [`MAX_FREE_RANGES`]; a
//! free that would need more ranges than that is refused (the frames leak, the
//! allocator stays consistent).

pub const PAGE_SIZE: u64 = 4096;
pub const MAX_FREE_RANGES: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    start: u64,
    end: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Address or size not page-aligned, or empty.
    Unaligned,
    /// Part of the range is already free (double free) or overlaps free memory.
    Overlap,
    /// The free list is full.
    TooFragmented,
}

pub struct FrameAllocator {
    free: [Range; MAX_FREE_RANGES],
    len: usize,
}

pub const fn align_up(x: u64, a: u64) -> u64 {
    (x + a - 1) & !(a - 1)
}

pub const fn align_down(x: u64, a: u64) -> u64 {
    x & !(a - 1)
}

impl FrameAllocator {
    pub const fn new() -> Self {
        Self {
            free: [Range { start: 0, end: 0 }; MAX_FREE_RANGES],
            len: 0,
        }
    }

    /// Build from the usable regions of a memory map, minus `reserved` ranges
    /// (kernel image, boot structures, firmware tables). Page 0 is never handed out.
    pub fn from_memory_map(map: &crate::bootinfo::MemoryMap, reserved: &[(u64, u64)]) -> Self {
        let mut fa = Self::new();
        for r in map.usable() {
            let _ = fa.add_free(r.start, r.end());
        }
        let _ = fa.reserve(0, PAGE_SIZE);
        for &(s, e) in reserved {
            let _ = fa.reserve(s, e);
        }
        fa
    }

    /// Add RAM `[start, end)`; shrunk inward to page boundaries.
    pub fn add_free(&mut self, start: u64, end: u64) -> Result<(), FrameError> {
        let s = align_up(start, PAGE_SIZE);
        let e = align_down(end, PAGE_SIZE);
        if s >= e {
            return Ok(());
        }
        self.insert(Range { start: s, end: e })
    }

    /// Remove `[start, end)` (widened to page boundaries) from the free set,
    /// wherever it overlaps.
    pub fn reserve(&mut self, start: u64, end: u64) -> Result<(), FrameError> {
        let s = align_down(start, PAGE_SIZE);
        let e = align_up(end, PAGE_SIZE);
        let mut i = 0;
        while i < self.len {
            let r = self.free[i];
            if r.end <= s || r.start >= e {
                i += 1;
                continue;
            }
            match (r.start < s, r.end > e) {
                (true, true) => {
                    // Split into two.
                    if self.len == MAX_FREE_RANGES {
                        return Err(FrameError::TooFragmented);
                    }
                    self.free[i].end = s;
                    self.insert_at(
                        i + 1,
                        Range {
                            start: e,
                            end: r.end,
                        },
                    );
                    return Ok(());
                }
                (true, false) => {
                    self.free[i].end = s;
                    i += 1;
                }
                (false, true) => {
                    self.free[i].start = e;
                    i += 1;
                }
                (false, false) => self.remove_at(i),
            }
        }
        Ok(())
    }

    /// Allocate `pages` contiguous frames aligned to `align` bytes (a power of
    /// two, at least a page). Returns the physical address of the first frame.
    pub fn alloc(&mut self, pages: u64, align: u64) -> Option<u64> {
        if pages == 0 || !align.is_power_of_two() {
            return None;
        }
        let align = align.max(PAGE_SIZE);
        let size = pages.checked_mul(PAGE_SIZE)?;
        for i in 0..self.len {
            let r = self.free[i];
            let start = align_up(r.start, align);
            let Some(end) = start.checked_add(size) else {
                continue;
            };
            if start < r.start || end > r.end {
                continue;
            }
            // Carve [start, end) out of r.
            if start == r.start && end == r.end {
                self.remove_at(i);
            } else if start == r.start {
                self.free[i].start = end;
            } else if end == r.end {
                self.free[i].end = start;
            } else {
                if self.len == MAX_FREE_RANGES {
                    continue;
                }
                self.free[i].end = start;
                self.insert_at(
                    i + 1,
                    Range {
                        start: end,
                        end: r.end,
                    },
                );
            }
            return Some(start);
        }
        None
    }

    /// Allocate at least `bytes` (rounded up to pages), aligned to `align`.
    pub fn alloc_bytes(&mut self, bytes: u64, align: u64) -> Option<u64> {
        self.alloc(align_up(bytes.max(1), PAGE_SIZE) / PAGE_SIZE, align)
    }

    /// Return `pages` frames starting at `addr`.
    pub fn free(&mut self, addr: u64, pages: u64) -> Result<(), FrameError> {
        if !addr.is_multiple_of(PAGE_SIZE) || pages == 0 {
            return Err(FrameError::Unaligned);
        }
        let end = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|s| addr.checked_add(s));
        let end = end.ok_or(FrameError::Unaligned)?;
        self.insert(Range { start: addr, end })
    }

    pub fn free_bytes(&self) -> u64 {
        self.ranges().map(|(s, e)| e - s).sum()
    }

    /// The largest free contiguous run, as `(start, end)`.
    pub fn largest_range(&self) -> Option<(u64, u64)> {
        self.ranges().max_by_key(|(s, e)| e - s)
    }

    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.free[..self.len].iter().map(|r| (r.start, r.end))
    }

    fn insert(&mut self, new: Range) -> Result<(), FrameError> {
        let pos = self.free[..self.len].partition_point(|r| r.start < new.start);
        let prev_touch = pos > 0 && self.free[pos - 1].end >= new.start;
        let next_touch = pos < self.len && self.free[pos].start <= new.end;
        if (pos > 0 && self.free[pos - 1].end > new.start)
            || (pos < self.len && self.free[pos].start < new.end)
        {
            return Err(FrameError::Overlap);
        }
        match (prev_touch, next_touch) {
            (true, true) => {
                self.free[pos - 1].end = self.free[pos].end;
                self.remove_at(pos);
            }
            (true, false) => self.free[pos - 1].end = new.end,
            (false, true) => self.free[pos].start = new.start,
            (false, false) => {
                if self.len == MAX_FREE_RANGES {
                    return Err(FrameError::TooFragmented);
                }
                self.insert_at(pos, new);
            }
        }
        Ok(())
    }

    fn insert_at(&mut self, i: usize, r: Range) {
        self.free.copy_within(i..self.len, i + 1);
        self.free[i] = r;
        self.len += 1;
    }

    fn remove_at(&mut self, i: usize) {
        self.free.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootinfo::{MemoryKind, MemoryMap, MemoryRegion};

    fn q35_map() -> MemoryMap {
        let mut m = MemoryMap::new();
        m.push(MemoryRegion {
            start: 0,
            len: 0x9fc00,
            kind: MemoryKind::Usable,
        });
        m.push(MemoryRegion {
            start: 0x9fc00,
            len: 0x400,
            kind: MemoryKind::Reserved,
        });
        m.push(MemoryRegion {
            start: 0xf0000,
            len: 0x10000,
            kind: MemoryKind::Reserved,
        });
        m.push(MemoryRegion {
            start: 0x100000,
            len: 0x7ee0000,
            kind: MemoryKind::Usable,
        });
        m
    }

    #[test]
    fn built_from_map_skips_page0_and_reserved() {
        let fa = FrameAllocator::from_memory_map(&q35_map(), &[(0x100000, 0x180123)]);
        let v: Vec<_> = fa.ranges().collect();
        assert_eq!(v, [(0x1000, 0x9f000), (0x181000, 0x7fe0000)]);
    }

    #[test]
    fn alloc_is_aligned_contiguous_and_disjoint() {
        let mut fa = FrameAllocator::new();
        fa.add_free(0x1000, 0x400000).unwrap();
        let a = fa.alloc(3, PAGE_SIZE).unwrap();
        let b = fa.alloc(16, 0x10000).unwrap();
        let c = fa.alloc_bytes(0x200000, 0x200000).unwrap();
        assert_eq!(a, 0x1000);
        assert_eq!(b % 0x10000, 0);
        assert_eq!(c, 0x200000);
        assert!(a + 3 * PAGE_SIZE <= b);
        assert!(b + 16 * PAGE_SIZE <= c);
        // The gap left by alignment is still free.
        assert!(fa.ranges().any(|(s, _)| s == 0x4000));
        let before = fa.free_bytes();
        assert_eq!(fa.alloc(0x1000, PAGE_SIZE), None, "cannot exceed memory");
        assert_eq!(fa.free_bytes(), before);
    }

    #[test]
    fn free_merges_and_detects_double_free() {
        let mut fa = FrameAllocator::new();
        fa.add_free(0x10000, 0x20000).unwrap();
        let total = fa.free_bytes();
        let a = fa.alloc(4, PAGE_SIZE).unwrap();
        let b = fa.alloc(4, PAGE_SIZE).unwrap();
        let c = fa.alloc(4, PAGE_SIZE).unwrap();
        fa.free(b, 4).unwrap();
        assert_eq!(fa.free(b, 4), Err(FrameError::Overlap));
        assert_eq!(fa.free(b + PAGE_SIZE, 1), Err(FrameError::Overlap));
        fa.free(a, 4).unwrap();
        fa.free(c, 4).unwrap();
        assert_eq!(fa.free_bytes(), total);
        assert_eq!(fa.ranges().count(), 1, "fully merged");
        assert_eq!(fa.free(0x123, 1), Err(FrameError::Unaligned));
        assert_eq!(fa.free(0x1000, 0), Err(FrameError::Unaligned));
    }

    #[test]
    fn reserve_splits_trims_and_removes() {
        let mut fa = FrameAllocator::new();
        fa.add_free(0x0, 0x100000).unwrap();
        fa.add_free(0x200000, 0x300000).unwrap();
        fa.reserve(0x50000, 0x60000).unwrap();
        fa.reserve(0xf0000, 0x210000).unwrap();
        let v: Vec<_> = fa.ranges().collect();
        assert_eq!(v, [(0, 0x50000), (0x60000, 0xf0000), (0x210000, 0x300000)]);
        fa.reserve(0, 0x400000).unwrap();
        assert_eq!(fa.free_bytes(), 0);
        assert_eq!(fa.alloc(1, PAGE_SIZE), None);
    }

    #[test]
    fn fragmentation_limit_is_an_error_not_corruption() {
        let mut fa = FrameAllocator::new();
        fa.add_free(0, 0x1000_0000).unwrap();
        let pages: Vec<u64> = (0..600).map(|_| fa.alloc(1, PAGE_SIZE).unwrap()).collect();
        // Free every other page: each becomes its own range until the list is full.
        let mut refused = 0;
        for p in pages.iter().step_by(2) {
            if fa.free(*p, 1) == Err(FrameError::TooFragmented) {
                refused += 1;
            }
        }
        assert!(refused > 0);
        assert_eq!(fa.ranges().count(), MAX_FREE_RANGES);
        let v: Vec<_> = fa.ranges().collect();
        assert!(v.windows(2).all(|w| w[0].1 < w[1].0), "sorted and disjoint");
        // Every allocation still returns free, unique memory.
        let a = fa.alloc(1, PAGE_SIZE).unwrap();
        assert!(!pages.iter().skip(1).step_by(2).any(|&p| p == a));
    }

    #[test]
    fn bad_requests() {
        let mut fa = FrameAllocator::new();
        fa.add_free(0x1000, 0x2000).unwrap();
        assert_eq!(fa.alloc(0, PAGE_SIZE), None);
        assert_eq!(fa.alloc(1, 3000), None);
        assert_eq!(fa.alloc(u64::MAX, PAGE_SIZE), None);
        assert_eq!(fa.free(!0xfff, 2), Err(FrameError::Unaligned));
    }
}
