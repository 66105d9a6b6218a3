//! Kernel heap: talc over arenas taken from the frame allocator.
//!
//! Sized from the memory map: everything free except a reserve kept for the
//! frame allocator (page tables, task stacks, DMA buffers) — 1/8 of free RAM,
//! at least 4 MiB, at most 256 MiB. RAM often comes in more than one run (q35
//! splits it at 2 GiB below the PCI hole and continues at 4 GiB), and one
//! allocation cannot span runs: the largest run becomes the first arena (the
//! biggest possible single allocation), further runs become more arenas.

use arch::frame_alloc::PAGE_SIZE;
use arch::spin::SpinLock;
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use talc::lock_api::{GuardSend, RawMutex};
use talc::source::Manual;
use talc::TalcLock;

const MIN_RESERVE: u64 = 4 << 20;
const MAX_RESERVE: u64 = 256 << 20;
const HEAP_ALIGN: u64 = 2 << 20;
const MAX_ARENAS: usize = 8;

static HEAP: TalcLock<RawSpin, Manual> = TalcLock::new(Manual);
/// Bytes of all arenas, and bytes currently allocated (for `health` and the model-size
/// check).
static TOTAL: AtomicU64 = AtomicU64::new(0);
static USED: AtomicU64 = AtomicU64::new(0);

/// talc plus a count of the bytes in use.
struct CountingHeap;

#[global_allocator]
static ALLOCATOR: CountingHeap = CountingHeap;

// SAFETY: forwards to talc unchanged; only counts.
unsafe impl GlobalAlloc for CountingHeap {
    /// # Safety
    /// As the `GlobalAlloc` method: `layout` (and `ptr`) as the trait requires.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = HEAP.alloc(layout);
        if !p.is_null() {
            USED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    /// # Safety
    /// As the `GlobalAlloc` method: `layout` (and `ptr`) as the trait requires.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = HEAP.alloc_zeroed(layout);
        if !p.is_null() {
            USED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    /// # Safety
    /// As the `GlobalAlloc` method: `layout` (and `ptr`) as the trait requires.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.dealloc(ptr, layout);
        USED.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }

    /// # Safety
    /// As the `GlobalAlloc` method: `layout` (and `ptr`) as the trait requires.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = HEAP.realloc(ptr, layout, new_size);
        if !p.is_null() {
            USED.fetch_add(new_size as u64, Ordering::Relaxed);
            USED.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
}

/// Heap bytes in use.
pub fn used_bytes() -> u64 {
    USED.load(Ordering::Relaxed)
}

/// Heap bytes not in use, over all arenas (the largest single allocation may be less:
/// one allocation cannot span arenas).
pub fn free_bytes() -> u64 {
    TOTAL.load(Ordering::Relaxed).saturating_sub(used_bytes())
}
/// `(start, size)` of each arena; size 0 = unused slot.
static ARENAS: SpinLock<[(u64, u64); MAX_ARENAS]> = SpinLock::new([(0, 0); MAX_ARENAS]);

/// Take `size` bytes (2 MiB-aligned) out of the frame allocator, shrinking
/// by 2 MiB steps when alignment costs the fit.
fn take(mut size: u64) -> Option<(u64, u64)> {
    size &= !(HEAP_ALIGN - 1);
    while size >= HEAP_ALIGN {
        if let Some(s) = arch::mm::alloc_frames(size / PAGE_SIZE, HEAP_ALIGN) {
            return Some((s, size));
        }
        size -= HEAP_ALIGN;
    }
    None
}

pub fn init() {
    let free = arch::mm::free_bytes();
    let reserve = (free / 8).clamp(MIN_RESERVE, MAX_RESERVE);
    let mut arenas = ARENAS.lock();
    let mut total = 0;
    for slot in arenas.iter_mut() {
        let left = arch::mm::free_bytes().saturating_sub(reserve);
        let Some((start, size)) = take(left.min(arch::mm::largest_free_bytes())) else {
            break;
        };
        // SAFETY: the frames are ours alone, identity-mapped RW, and never freed.
        let claimed = unsafe { HEAP.lock().claim(start as *mut u8, size as usize) };
        if claimed.is_none() {
            // Too small for talc's metadata (first arena only): give it back.
            let _ = arch::mm::free_frames(start, size / PAGE_SIZE);
            break;
        }
        *slot = (start, size);
        total += size;
    }
    if total == 0 {
        panic!("heap: no room (free {free} bytes)");
    }
    TOTAL.store(total, Ordering::Relaxed);
    for &(start, size) in arenas.iter().filter(|a| a.1 > 0) {
        log::info!("heap: arena {} MiB at {start:#x}", size >> 20);
    }
    log::info!(
        "heap: {} MiB in total, {} MiB left to the frame allocator",
        total >> 20,
        arch::mm::free_bytes() >> 20
    );
}

/// True if `[p, p + len)` lies inside one heap arena.
pub fn contains(p: u64, len: u64) -> bool {
    ARENAS
        .lock()
        .iter()
        .any(|&(s, n)| n > 0 && p >= s && p + len <= s + n)
}

/// A spin lock for talc's `lock_api` interface (one CPU, no interrupts: it is
/// never actually contended, only guarded against re-entrancy).
pub struct RawSpin(AtomicBool);

unsafe impl RawMutex for RawSpin {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawSpin(AtomicBool::new(false));
    type GuardMarker = GuardSend;

    fn lock(&self) {
        while !self.try_lock() {
            core::hint::spin_loop();
        }
    }

    fn try_lock(&self) -> bool {
        self.0
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// # Safety
    /// As `RawMutex::unlock`: only the holder of the lock calls it.
    unsafe fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}
