//! Kernel heap: one contiguous block from the frame allocator, managed by talc.
//!
//! Sized from the memory map: everything free except a reserve kept for the
//! frame allocator (page tables, task stacks, DMA buffers) — 1/8 of free RAM,
//! at least 4 MiB, at most 256 MiB — and no more than the largest contiguous run.

use arch::frame_alloc::PAGE_SIZE;
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use talc::lock_api::{GuardSend, RawMutex};
use talc::source::Manual;
use talc::TalcLock;

const MIN_RESERVE: u64 = 4 << 20;
const MAX_RESERVE: u64 = 256 << 20;
const HEAP_ALIGN: u64 = 2 << 20;

static HEAP: TalcLock<RawSpin, Manual> = TalcLock::new(Manual);
/// Bytes currently allocated (for `health` and the model-size check).
static USED: AtomicU64 = AtomicU64::new(0);

/// talc plus a count of the bytes in use.
struct CountingHeap;

#[global_allocator]
static ALLOCATOR: CountingHeap = CountingHeap;

// SAFETY: forwards to talc unchanged; only counts.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = HEAP.alloc(layout);
        if !p.is_null() {
            USED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = HEAP.alloc_zeroed(layout);
        if !p.is_null() {
            USED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.dealloc(ptr, layout);
        USED.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }

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

/// Heap bytes not in use (fragmentation aside: the largest possible allocation may be less).
pub fn free_bytes() -> u64 {
    HEAP_SIZE
        .load(Ordering::Relaxed)
        .saturating_sub(used_bytes())
}
static HEAP_START: AtomicU64 = AtomicU64::new(0);
static HEAP_SIZE: AtomicU64 = AtomicU64::new(0);

pub fn init() {
    let free = arch::mm::free_bytes();
    let reserve = (free / 8).clamp(MIN_RESERVE, MAX_RESERVE);
    let want = free
        .saturating_sub(reserve)
        .min(arch::mm::largest_free_bytes());
    // Round down to whole 2 MiB so the block can start 2 MiB-aligned.
    let mut size = want & !(HEAP_ALIGN - 1);
    let start = loop {
        if size < HEAP_ALIGN {
            panic!("heap: no room (free {free} bytes)");
        }
        if let Some(s) = arch::mm::alloc_frames(size / PAGE_SIZE, HEAP_ALIGN) {
            break s;
        }
        // Alignment cost us the fit: try one step smaller.
        size -= HEAP_ALIGN;
    };
    // Safety: the frames are ours alone, identity-mapped RW, and never freed.
    unsafe {
        HEAP.lock()
            .claim(start as *mut u8, size as usize)
            .expect("heap: talc refused the arena");
    }
    HEAP_START.store(start, Ordering::Relaxed);
    HEAP_SIZE.store(size, Ordering::Relaxed);
    log::info!(
        "heap: {} MiB at {:#x} (reserve {} MiB for frames)",
        size >> 20,
        start,
        reserve >> 20
    );
}

/// `(start, size)` of the heap arena.
pub fn arena() -> (u64, u64) {
    (
        HEAP_START.load(Ordering::Relaxed),
        HEAP_SIZE.load(Ordering::Relaxed),
    )
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

    unsafe fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}
