//! `virtio_drivers::Hal` over the kernel's frame allocator.
//!
//! The kernel maps RAM and MMIO identically (phys == virt), so sharing a
//! buffer with a device is just handing over its address, and no bounce
//! buffers are needed (DMA is cache-coherent on x86 and on QEMU virt).
//!
//! The Hal's functions have no `self`, so the allocator is registered once
//! at boot with [`set_dma_ops`]. DMA memory is returned only from
//! `dma_dealloc`, which virtio-drivers calls when the owning `Dma` (a queue's
//! rings) is dropped, i.e. after the queue is gone: memory a device can
//! still write is never freed while its queue lives.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// Physically contiguous page allocation, page aligned.
pub struct DmaOps {
    pub alloc_pages: fn(pages: usize) -> Option<u64>,
    pub free_pages: fn(paddr: u64, pages: usize),
}

static OPS: AtomicPtr<DmaOps> = AtomicPtr::new(core::ptr::null_mut());

/// Registers the allocator behind [`IdentityHal`] (once, at boot).
pub fn set_dma_ops(ops: &'static DmaOps) {
    OPS.store(ops as *const DmaOps as *mut DmaOps, Ordering::Release);
}

fn ops() -> Option<&'static DmaOps> {
    // SAFETY: only ever set from a `&'static DmaOps`.
    unsafe { OPS.load(Ordering::Acquire).as_ref() }
}

/// The Hal for an identity-mapped kernel.
pub struct IdentityHal;

// SAFETY: allocations are page-aligned, zeroed, physically contiguous and
// identity-mapped; shared buffers are passed by their (identical) address.
unsafe impl Hal for IdentityHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(paddr) = ops().and_then(|o| (o.alloc_pages)(pages)) else {
            // virtio-drivers turns a 0 address into Error::DmaError.
            return (0, NonNull::dangling());
        };
        let ptr = paddr as usize as *mut u8;
        // SAFETY: freshly allocated, identity-mapped pages owned by us.
        unsafe { core::ptr::write_bytes(ptr, 0, pages * PAGE_SIZE) };
        (paddr, NonNull::new(ptr).unwrap_or(NonNull::dangling()))
    }

    /// # Safety
    /// As `Hal::dma_dealloc`: `paddr`/`pages` come from one `dma_alloc` and are no longer used.
    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        match ops() {
            Some(o) => {
                (o.free_pages)(paddr, pages);
                0
            }
            None => -1,
        }
    }

    /// # Safety
    /// As `Hal::mmio_phys_to_virt`: the region is a device's MMIO, mapped by the kernel.
    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as usize as *mut u8).unwrap_or(NonNull::dangling())
    }

    /// # Safety
    /// As `Hal::share`: `buffer` stays valid until `unshare` (identity map: no copy).
    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as usize as PhysAddr
    }

    /// # Safety
    /// As `Hal::unshare`: the pair of an earlier `share` (nothing to undo here).
    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::alloc::{alloc, dealloc, Layout};
    use std::cell::Cell;

    thread_local! {
        /// Pages allocated and not yet freed by this test thread.
        static LIVE: Cell<usize> = const { Cell::new(0) };
    }

    fn layout(pages: usize) -> Layout {
        Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap()
    }
    fn host_alloc(pages: usize) -> Option<u64> {
        LIVE.with(|l| l.set(l.get() + pages));
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout(pages)) };
        // Dirty the memory so the test sees the Hal zero it.
        unsafe { core::ptr::write_bytes(p, 0xa5, pages * PAGE_SIZE) };
        Some(p as u64)
    }
    fn host_free(paddr: u64, pages: usize) {
        LIVE.with(|l| l.set(l.get() - pages));
        // SAFETY: allocated by host_alloc with the same layout.
        unsafe { dealloc(paddr as *mut u8, layout(pages)) }
    }
    static HOST: DmaOps = DmaOps {
        alloc_pages: host_alloc,
        free_pages: host_free,
    };

    /// Pages this test thread holds.
    pub(crate) fn live_pages() -> usize {
        LIVE.with(Cell::get)
    }

    /// DMA from the host heap, for every test that drives queues.
    pub(crate) fn install_test_dma() {
        set_dma_ops(&HOST);
    }

    #[test]
    fn dma_pages_are_zeroed_aligned_and_returned() {
        install_test_dma();
        let (paddr, vaddr) = IdentityHal::dma_alloc(3, BufferDirection::Both);
        assert_eq!(paddr % PAGE_SIZE as u64, 0);
        assert_eq!(paddr, vaddr.as_ptr() as u64, "identity mapping");
        let bytes = unsafe { core::slice::from_raw_parts(vaddr.as_ptr(), 3 * PAGE_SIZE) };
        assert!(bytes.iter().all(|&b| b == 0));
        assert_eq!(LIVE.with(Cell::get), 3);
        assert_eq!(unsafe { IdentityHal::dma_dealloc(paddr, vaddr, 3) }, 0);
        assert_eq!(LIVE.with(Cell::get), 0);
        let buf = [1u8, 2, 3];
        let shared =
            unsafe { IdentityHal::share(NonNull::from(&buf[..]), BufferDirection::DriverToDevice) };
        assert_eq!(shared, buf.as_ptr() as u64);
    }
}
