//! Physical frames and the kernel's own page tables (4-level, identity:
//! virtual == physical).
//!
//! Built once at boot from the memory map, replacing the early 4 GiB map:
//! - the first MiB and every RAM / ACPI region of the memory map RW +
//!   no-execute, 2 MiB pages where a whole aligned 2 MiB is covered, 4 KiB
//!   otherwise (reserved regions above 1 MiB are device windows: `map_mmio`);
//! - the kernel image at 4 KiB granularity: text R+X, rodata R+NX,
//!   data/bss/stacks RW+NX (CR0.WP is set, so the kernel cannot write text);
//! - page 0 unmapped (null pointers fault);
//! - the page under every stack (boot, IST, task stacks) unmapped (guard page),
//!   registered so the trap handler can name a fault there a stack overflow;
//! - MMIO mapped on request, uncached (`map_mmio`).
//!
//! Intermediate entries are P|W without NX: permissions come from the leaf.

use crate::bootinfo::{BootInfo, MemoryKind};
use crate::frame_alloc::{align_down, align_up, FrameAllocator, FrameError, PAGE_SIZE};
use crate::spin::SpinLock;
use crate::stack::Stack;
use core::arch::asm;

const P: u64 = 1 << 0;
const W: u64 = 1 << 1;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
const ADDR: u64 = 0x000f_ffff_ffff_f000;
const HUGE: u64 = 2 << 20;
/// Physical addresses we accept (QEMU's default phys-bits is 40; 46 is the
/// most common real limit).
const MAX_PHYS: u64 = 1 << 46;
const LOW_MEMORY_END: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Empty, overflowing, or beyond the physical address width.
    BadRange,
    /// The range overlaps the kernel image.
    Overlap,
    /// No frames left for page tables.
    NoMemory,
}

struct Mm {
    frames: FrameAllocator,
    pml4: u64,
    nx: u64,
    /// The tables are in CR3: changes need TLB invalidation (not while building).
    live: bool,
}

static MM: SpinLock<Mm> = SpinLock::new(Mm {
    frames: FrameAllocator::new(),
    pml4: 0,
    nx: 0,
    live: false,
});
const MAX_GUARDS: usize = 64;
static GUARDS: SpinLock<[Option<Stack>; MAX_GUARDS]> = SpinLock::new([None; MAX_GUARDS]);
static KERNEL_IMAGE: SpinLock<(u64, u64)> = SpinLock::new((0, 0));

extern "C" {
    static __kernel_start: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
    static boot_stack_guard: u8;
    static boot_stack_bottom: u8;
    static boot_stack_top: u8;
}

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// The page table in the frame at `phys`.
///
/// # Safety
/// `phys` must be a page-table frame (identity-mapped RAM) that no other live reference
/// points into: frames owned by [`MM`], used under its lock, or read-only walks of the
/// live tables (`is_mapped`) that tolerate concurrent updates of single entries.
unsafe fn table(phys: u64) -> &'static mut [u64; 512] {
    // SAFETY: as the caller guarantees.
    unsafe { &mut *(phys as *mut [u64; 512]) }
}

fn invlpg(addr: u64) {
    // SAFETY: invalidating a TLB entry is always safe.
    unsafe { asm!("invlpg [{}]", in(reg) addr, options(nostack)) };
}

impl Mm {
    fn new_table(&mut self) -> Result<u64, MapError> {
        let t = self.frames.alloc(1, PAGE_SIZE).ok_or(MapError::NoMemory)?;
        // SAFETY: a fresh frame from our allocator, not yet linked into any table.
        unsafe { table(t) }.fill(0);
        Ok(t)
    }

    /// Walk to the entry for `addr` at level `stop` (1 = PT, 2 = PD), creating
    /// tables and splitting 2 MiB pages on the way as needed.
    fn entry(&mut self, addr: u64, stop: u32) -> Result<&'static mut u64, MapError> {
        // SAFETY (every `table` call here): `self` (the locked MM) owns the tables reached
        // from `pml4`; each reference lives for one statement.
        let mut t = self.pml4;
        for level in (stop + 1..=4).rev() {
            let idx = ((addr >> (12 + 9 * (level - 1))) & 511) as usize;
            let e = unsafe { table(t) }[idx];
            if e & P == 0 {
                let n = self.new_table()?;
                (unsafe { table(t) })[idx] = n | P | W;
                t = n;
            } else if e & PS != 0 {
                // Only 2 MiB pages are ever created (level 2); split into 4 KiB.
                let n = self.new_table()?;
                let base = e & ADDR & !(HUGE - 1);
                let flags = e & !(ADDR | PS);
                for (i, pte) in unsafe { table(n) }.iter_mut().enumerate() {
                    *pte = (base + i as u64 * PAGE_SIZE) | flags;
                }
                (unsafe { table(t) })[idx] = n | P | W;
                t = n;
            } else {
                t = e & ADDR;
            }
        }
        let idx = ((addr >> (12 + 9 * (stop - 1))) & 511) as usize;
        Ok(&mut unsafe { table(t) }[idx])
    }

    fn map_4k(&mut self, addr: u64, flags: u64) -> Result<(), MapError> {
        *self.entry(addr, 1)? = if flags == 0 { 0 } else { addr | flags };
        if self.live {
            invlpg(addr);
        }
        Ok(())
    }

    fn map_range(&mut self, start: u64, end: u64, flags: u64) -> Result<(), MapError> {
        let mut a = align_down(start, PAGE_SIZE);
        let end = align_up(end, PAGE_SIZE);
        while a < end {
            if a.is_multiple_of(HUGE) && a + HUGE <= end {
                let e = self.entry(a, 2)?;
                if *e & P != 0 && *e & PS == 0 {
                    // Already split into 4 KiB pages: keep them, set each.
                    for i in 0..512 {
                        self.map_4k(a + i * PAGE_SIZE, flags)?;
                    }
                } else {
                    *e = a | flags | PS;
                    if self.live {
                        invlpg(a);
                    }
                }
                a += HUGE;
            } else {
                self.map_4k(a, flags)?;
                a += PAGE_SIZE;
            }
        }
        Ok(())
    }
}

/// Build the kernel's page tables from the memory map and switch to them.
pub fn init(info: &BootInfo) {
    let mut mm = MM.lock();
    // Low memory holds firmware structures (qboot tables, EBDA, the start
    // info); the kernel image follows. Both stay out of the allocator.
    mm.frames = FrameAllocator::from_memory_map(
        &info.memory,
        &[(0, LOW_MEMORY_END), (info.kernel_start, info.kernel_end)],
    );
    // Page tables come from the lowest free frames (first fit), well inside
    // the early 4 GiB identity map that is live while we build.
    mm.nx = if super::cpu::features().nx { NX } else { 0 };
    let nx = mm.nx;
    mm.pml4 = mm.new_table().expect("mm: no frame for the PML4");
    *KERNEL_IMAGE.lock() = (info.kernel_start, info.kernel_end);

    let data = P | W | nx;
    // The first MiB (BIOS data, EBDA, the RSDP in 0xe0000-0xfffff, qboot's
    // tables) and every RAM or ACPI region. Other "reserved" regions are
    // device windows (q35: PCIe ECAM at 0xb0000000, the HyperTransport hole
    // below 1 TiB): drivers map what they use with `map_mmio`, uncached.
    mm.map_range(0, LOW_MEMORY_END, data)
        .expect("mm: mapping low memory");
    for r in info.memory.regions() {
        let ram = matches!(
            r.kind,
            MemoryKind::Usable | MemoryKind::AcpiReclaimable | MemoryKind::AcpiNvs
        );
        if ram {
            mm.map_range(r.start, r.end(), data)
                .expect("mm: mapping RAM");
        }
    }
    // The kernel image, whatever the memory map says about it.
    // SAFETY (all `sym` calls): linker symbols, only addresses taken.
    let (text, text_end, ro, ro_end, kend) = unsafe {
        (
            sym(&__text_start),
            sym(&__text_end),
            sym(&__rodata_start),
            sym(&__rodata_end),
            sym(&__kernel_end),
        )
    };
    let kstart = unsafe { sym(&__kernel_start) };
    let mut a = align_down(kstart, PAGE_SIZE);
    while a < kend {
        let flags = if (text..text_end).contains(&a) {
            P
        } else if a < text || (ro..ro_end).contains(&a) {
            P | nx
        } else {
            data
        };
        mm.map_4k(a, flags).expect("mm: mapping kernel");
        a += PAGE_SIZE;
    }
    mm.map_4k(0, 0).expect("mm: unmapping page 0");
    for stack in core::iter::once(boot_stack()).chain(super::gdt::ist_stacks()) {
        mm.map_4k(stack.guard.unwrap(), 0)
            .expect("mm: stack guard page");
        register_guard(stack);
    }

    let pml4 = mm.pml4;
    // SAFETY: the new tables identity-map all RAM including the running code,
    // its stack and these tables.
    unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack)) };
    mm.live = true;
}

pub fn boot_stack() -> Stack {
    // SAFETY: linker symbols, only addresses taken.
    unsafe {
        Stack {
            bottom: sym(&boot_stack_bottom),
            top: sym(&boot_stack_top),
            guard: Some(sym(&boot_stack_guard)),
        }
    }
}

pub fn alloc_frames(pages: u64, align: u64) -> Option<u64> {
    MM.lock().frames.alloc(pages, align)
}

pub fn free_frames(addr: u64, pages: u64) -> Result<(), FrameError> {
    MM.lock().frames.free(addr, pages)
}

pub fn free_bytes() -> u64 {
    MM.lock().frames.free_bytes()
}

pub fn largest_free_bytes() -> u64 {
    MM.lock().frames.largest_range().map_or(0, |(s, e)| e - s)
}

/// Map device memory `[phys, phys + len)` uncached, RW, no-execute, at the
/// same virtual address.
pub fn map_mmio(phys: u64, len: u64) -> Result<(), MapError> {
    let end = phys
        .checked_add(len)
        .filter(|&e| len > 0 && e <= MAX_PHYS)
        .ok_or(MapError::BadRange)?;
    let (ks, ke) = *KERNEL_IMAGE.lock();
    if phys < ke && end > ks {
        return Err(MapError::Overlap);
    }
    let mut mm = MM.lock();
    let flags = P | W | PCD | PWT | mm.nx;
    mm.map_range(phys, end, flags)
}

/// A stack of `pages` pages (at least 2) whose lowest page is an unmapped guard.
pub fn alloc_stack(pages: u64) -> Option<Stack> {
    if pages < 2 {
        return None;
    }
    let mut mm = MM.lock();
    let base = mm.frames.alloc(pages, PAGE_SIZE)?;
    if mm.map_4k(base, 0).is_err() {
        let _ = mm.frames.free(base, pages);
        return None;
    }
    drop(mm);
    let s = Stack::with_guard(base, pages);
    if !register_guard(s) {
        free_stack(s);
        return None;
    }
    Some(s)
}

pub fn free_stack(s: Stack) {
    let Some(guard) = s.guard else { return };
    let mut g = GUARDS.lock();
    if let Some(slot) = g.iter_mut().find(|x| **x == Some(s)) {
        *slot = None;
    }
    drop(g);
    let mut mm = MM.lock();
    let data = P | W | mm.nx;
    if mm.map_4k(guard, data).is_ok() {
        let _ = mm.frames.free(guard, (s.top - guard) / PAGE_SIZE);
    }
}

fn register_guard(s: Stack) -> bool {
    let mut g = GUARDS.lock();
    match g.iter_mut().find(|x| x.is_none()) {
        Some(slot) => {
            *slot = Some(s);
            true
        }
        None => false,
    }
}

/// The stack whose guard page contains `addr` (for the trap report).
pub fn guard_page_stack(addr: u64) -> Option<Stack> {
    let g = GUARDS.try_lock()?;
    g.iter().flatten().find(|s| s.in_guard(addr)).copied()
}

/// True if `addr` is mapped in the active page tables (walks CR3; lock-free
/// so the trap handler can use it).
pub fn is_mapped(addr: u64) -> bool {
    let mut t: u64;
    // SAFETY: reading CR3.
    unsafe { asm!("mov {}, cr3", out(reg) t, options(nomem, nostack)) };
    t &= ADDR;
    if addr >= 1 << 47 {
        return false;
    }
    for level in (1..=4u32).rev() {
        // SAFETY: a read of one entry of the live tables (identity-mapped frames).
        let e = unsafe { table(t) }[((addr >> (12 + 9 * (level - 1))) & 511) as usize];
        if e & P == 0 {
            return false;
        }
        if level == 1 || e & PS != 0 {
            return true;
        }
        t = e & ADDR;
    }
    false
}
