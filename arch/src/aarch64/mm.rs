//! Physical memory and the kernel's page tables (identity map, phys == virt).
//!
//! VMSAv8-64, 4 KiB granule, 48-bit VA (T0SZ = 16), four levels (L0..L3),
//! TTBR0 only (EPD1 = 1). MAIR slots: 0 Device-nGnRE (MMIO), 1 Normal
//! write-back RW-allocate (RAM), 2 Normal non-cacheable.
//!
//! Final map (built by [`init`] on the boot map, then switched to):
//! - kernel text: read-only, executable (PXN = 0); rodata: read-only, XN;
//!   data, bss, stacks: read-write, XN; the page under each stack unmapped;
//! - the rest of RAM: read-write, XN, in 2 MiB blocks where aligned;
//! - MMIO only on request ([`map_mmio`]), Device-nGnRE, XN;
//! - everything else, page 0 included, unmapped.
//!
//! Splitting a live 2 MiB block into a table of pages with the same output
//! and attributes (to unmap a guard page inside it) writes the table
//! descriptor over the block and then invalidates the TLB. Strictly that
//! change of block size wants break-before-make (ARM ARM D8.14) or FEAT_BBM
//! level 2; QEMU does not model TLB conflict aborts, and a BBM window would
//! unmap the very stack or code doing the split.

use core::arch::asm;

use crate::bootinfo::BootInfo;
use crate::frame_alloc::FrameAllocator;
use crate::spin::SpinLock;
use crate::stack::Stack;

pub use crate::frame_alloc::PAGE_SIZE;

pub use super::vmsa::MapError;
use super::vmsa::{Tables, DATA, DEVICE, MAIR as VMSA_MAIR, NORMAL, RODATA, TEXT, VALID};

pub(super) const MAIR: u64 = VMSA_MAIR;

/// Boot map 1 GiB blocks (boot.rs): low GiB as MMIO, RAM executable.
pub(super) const BOOT_DEVICE_BLOCK: u64 = VALID | DEVICE;
pub(super) const BOOT_RAM_BLOCK: u64 = (1 << 30) | VALID | NORMAL;

const T0SZ_48BIT: u64 = 16;
const TCR_SH0_INNER: u64 = 3 << 12;
const TCR_T1SZ: u64 = 16 << 16;
const TCR_EPD1: u64 = 1 << 23;
const TCR_WALK_WBWA: u64 = (1 << 8) | (1 << 10); // IRGN0, ORGN0
/// Boot map walks are non-cacheable: its tables were written with the MMU off.
pub(super) const TCR_BOOT: u64 = T0SZ_48BIT | TCR_SH0_INNER | TCR_T1SZ | TCR_EPD1;

struct Mm {
    frames: FrameAllocator,
    /// `None` until `init` built them.
    tables: Option<Tables>,
    /// Whether TTBR0 points at `tables` (changes then need TLB maintenance).
    live: bool,
    ram: [(u64, u64); 8],
    ram_len: usize,
}

static MM: SpinLock<Mm> = SpinLock::new(Mm {
    frames: FrameAllocator::new(),
    tables: None,
    live: false,
    ram: [(0, 0); 8],
    ram_len: 0,
});

/// Stacks with a guard page (boot, exception, handed out), for the fault report.
const MAX_GUARDED: usize = 64;
static GUARDED: SpinLock<([Option<Stack>; MAX_GUARDED], usize)> =
    SpinLock::new(([None; MAX_GUARDED], 0));

fn remember_stack(s: Stack) {
    let mut g = GUARDED.lock();
    if g.1 < MAX_GUARDED {
        let n = g.1;
        g.0[n] = Some(s);
        g.1 += 1;
    }
}

extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __boot_stack_guard: u8;
    static __boot_stack_bottom: u8;
    static __boot_stack_top: u8;
    static __exception_stack_guard: u8;
    static __exception_stack_bottom: u8;
    static __exception_stack_top: u8;
    static __image_end: u8;
}

macro_rules! sym_addr {
    ($s:ident) => {
        // Linker-script symbol: only its address is used.
        core::ptr::addr_of!($s) as u64
    };
}

/// `[start, end)` of the loaded image, bss and stacks included.
pub fn image_extent() -> (u64, u64) {
    (sym_addr!(__image_start), sym_addr!(__image_end))
}

pub fn boot_stack() -> Stack {
    Stack {
        bottom: sym_addr!(__boot_stack_bottom),
        top: sym_addr!(__boot_stack_top),
        guard: Some(sym_addr!(__boot_stack_guard)),
    }
}

fn exception_stack() -> Stack {
    Stack {
        bottom: sym_addr!(__exception_stack_bottom),
        top: sym_addr!(__exception_stack_top),
        guard: Some(sym_addr!(__exception_stack_guard)),
    }
}

/// Frame allocator over the memory map, then the final page tables, then
/// the switch from the boot map.
pub(super) fn init(info: &BootInfo) {
    let mut mm = MM.lock();
    let (img_start, img_end) = image_extent();
    mm.frames = FrameAllocator::from_memory_map(&info.memory, &[(img_start, img_end)]);
    for r in info.memory.regions() {
        // On virt every memory-map entry is RAM (reserved ones hold the DTB).
        if mm.ram_len < mm.ram.len() {
            let i = mm.ram_len;
            mm.ram[i] = (r.start, r.end());
            mm.ram_len += 1;
        }
    }
    let Some(root) = mm.frames.alloc(1, PAGE_SIZE) else {
        drop(mm);
        super::console::early_panic(format_args!("no memory for page tables"));
    };
    // SAFETY: a fresh frame of identity-mapped RAM, zeroed here; table frames
    // come from the allocator and are never freed.
    unsafe {
        core::ptr::write_bytes(root as *mut u64, 0, 512);
        mm.tables = Some(Tables::new(root));
    }

    let text_end = sym_addr!(__text_end);
    let rodata_end = sym_addr!(__rodata_end);
    let boot = boot_stack();
    let exc = exception_stack();
    let build = |mm: &mut Mm| -> Result<(), MapError> {
        mm.map(img_start, text_end, TEXT, false)?;
        mm.map(text_end, rodata_end, RODATA, false)?;
        mm.map(rodata_end, boot.guard.unwrap_or(boot.bottom), DATA, false)?;
        mm.map(boot.bottom, boot.top, DATA, false)?;
        mm.map(exc.bottom, exc.top, DATA, false)?;
        mm.map(exc.top, img_end, DATA, false)?;
        for i in 0..mm.ram_len {
            let (s, e) = mm.ram[i];
            // The image's pages are mapped above; RAM around it gets blocks.
            if s < img_start {
                mm.map(s, e.min(img_start), DATA, true)?;
            }
            if e > img_end {
                mm.map(s.max(img_end), e, DATA, true)?;
            }
        }
        let uart = super::console::base() & !(PAGE_SIZE - 1);
        mm.map(uart, uart + PAGE_SIZE, DEVICE, false)
    };
    if let Err(e) = build(&mut mm) {
        drop(mm);
        super::console::early_panic(format_args!("building page tables: {e:?}"));
    }
    // SAFETY: the new tables map everything the kernel uses (image with its
    // stacks, RAM, console) at the same addresses as the boot map.
    unsafe {
        asm!(
            "dsb ishst",
            "mrs {t}, tcr_el1",
            "orr {t}, {t}, {wbwa}",
            "msr tcr_el1, {t}",
            "msr ttbr0_el1, {root}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            t = out(reg) _,
            wbwa = in(reg) TCR_WALK_WBWA,
            root = in(reg) root,
            options(nostack),
        );
    }
    mm.live = true;
    drop(mm);
    remember_stack(boot);
    remember_stack(exc);
}

impl Mm {
    /// Identity-map `[start, end)` (nothing if empty); see [`Tables::map`].
    fn map(&mut self, start: u64, end: u64, attrs: u64, blocks: bool) -> Result<(), MapError> {
        if start >= end {
            return Ok(());
        }
        let Mm { frames, tables, .. } = self;
        let t = tables.as_mut().ok_or(MapError::NotReady)?;
        let r = t.map(start, end, attrs, blocks, &mut || {
            frames.alloc(1, PAGE_SIZE)
        });
        self.flush_tlb();
        r
    }

    fn unmap_page(&mut self, va: u64) -> Result<(), MapError> {
        let Mm { frames, tables, .. } = self;
        let t = tables.as_mut().ok_or(MapError::NotReady)?;
        let r = t.unmap_page(va, &mut || frames.alloc(1, PAGE_SIZE));
        self.flush_tlb();
        r
    }

    fn flush_tlb(&self) {
        if self.live {
            // SAFETY: TLB maintenance only.
            unsafe {
                asm!(
                    "dsb ishst",
                    "tlbi vmalle1",
                    "dsb nsh",
                    "isb",
                    options(nostack)
                )
            };
        }
    }

    fn overlaps_ram(&self, start: u64, end: u64) -> bool {
        self.ram[..self.ram_len]
            .iter()
            .any(|&(s, e)| start < e && s < end)
    }
}

/// Map `[phys, phys + len)` as Device-nGnRE, execute-never (idempotent).
pub fn map_mmio(phys: u64, len: u64) -> Result<(), MapError> {
    let end = phys.checked_add(len).ok_or(MapError::BadRange)?;
    if len == 0 {
        return Err(MapError::BadRange);
    }
    let mut mm = MM.lock();
    if mm.overlaps_ram(phys, end) {
        return Err(MapError::OverlapsRam);
    }
    mm.map(phys, end, DEVICE, true)
}

pub fn alloc_frames(pages: u64, align: u64) -> Option<u64> {
    MM.lock().frames.alloc(pages, align)
}

/// Return frames; a double free or a misaligned range is refused.
pub fn free_frames(addr: u64, pages: u64) -> Result<(), crate::frame_alloc::FrameError> {
    MM.lock().frames.free(addr, pages)
}

pub fn free_bytes() -> u64 {
    MM.lock().frames.free_bytes()
}

/// Size of the largest free run of frames, in bytes.
pub fn largest_free_bytes() -> u64 {
    MM.lock().frames.largest_range().map_or(0, |(s, e)| e - s)
}

/// A stack of `pages` pages in total: the lowest one is an unmapped guard.
pub fn alloc_stack(pages: u64) -> Option<Stack> {
    if pages < 2 {
        return None;
    }
    let mut mm = MM.lock();
    let base = mm.frames.alloc(pages, PAGE_SIZE)?;
    if mm.unmap_page(base).is_err() {
        let _ = mm.frames.free(base, pages);
        return None;
    }
    drop(mm);
    let s = Stack::with_guard(base, pages);
    remember_stack(s);
    Some(s)
}

/// Give back a stack from [`alloc_stack`]: its guard page is mapped again.
pub fn free_stack(stack: Stack) {
    let Some(guard) = stack.guard else { return };
    {
        let mut g = GUARDED.lock();
        let n = g.1;
        if let Some(i) = g.0[..n]
            .iter()
            .position(|s| s.and_then(|s| s.guard) == Some(guard))
        {
            g.0[i] = g.0[n - 1];
            g.0[n - 1] = None;
            g.1 -= 1;
        }
    }
    let mut mm = MM.lock();
    if mm.map(guard, guard + PAGE_SIZE, DATA, false).is_ok() {
        let _ = mm.frames.free(guard, (stack.top - guard) / PAGE_SIZE);
    }
}

/// The stack whose guard page holds `addr` (lock-free for the trap handler:
/// `None` if the list is being updated right now).
pub fn guard_page_stack(addr: u64) -> Option<Stack> {
    let g = GUARDED.try_lock()?;
    g.0[..g.1]
        .iter()
        .flatten()
        .find(|s| s.in_guard(addr))
        .copied()
}

/// Whether `va` is mapped (hence readable) in the live tables (walks TTBR0; used
/// by the trap handler, so it takes no locks).
pub fn is_mapped(va: u64) -> bool {
    let root: u64;
    // SAFETY: reading TTBR0_EL1 has no side effects.
    unsafe { asm!("mrs {}, ttbr0_el1", out(reg) root, options(nomem, nostack)) };
    // SAFETY: the live tables sit in identity-mapped RAM and are only read.
    unsafe { Tables::new(root & super::vmsa::ADDR_MASK) }
        .translate(va)
        .is_some()
}
