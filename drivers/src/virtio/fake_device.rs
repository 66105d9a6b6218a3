//! Test support: the device side of split virtqueues (virtio 1.2 §2.7) in
//! host memory, so drivers run against real rings. Addresses are host
//! pointers (the identity Hal hands those out).

/// A descriptor chain: (address, length, device-writable).
pub(crate) type Chain = Vec<(u64, u32, bool)>;

#[derive(Default, Clone, Copy)]
pub(crate) struct Queue {
    pub size: u32,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub last_avail: u16,
}

/// # Safety
/// `addr` must point at a `T` in a ring the driver gave the device.
unsafe fn rd<T: Copy>(addr: u64) -> T {
    // SAFETY: callers pass ring addresses the driver gave the device.
    unsafe { (addr as *const T).read_volatile() }
}
/// # Safety
/// As [`rd`], for a write.
unsafe fn wr<T>(addr: u64, v: T) {
    // SAFETY: as above.
    unsafe { (addr as *mut T).write_volatile(v) }
}

impl Queue {
    pub fn new(size: u32, desc: u64, avail: u64, used: u64) -> Self {
        Self {
            size,
            desc,
            avail,
            used,
            last_avail: 0,
        }
    }

    /// Pops every chain the driver made available: (head, chain).
    pub fn take_chains(&mut self) -> Vec<(u16, Chain)> {
        let mut out = Vec::new();
        if self.size == 0 {
            return out;
        }
        // SAFETY: ring addresses from queue_set.
        let avail_idx: u16 = unsafe { rd(self.avail + 2) };
        while self.last_avail != avail_idx {
            let slot = self.avail + 4 + 2 * (self.last_avail as u64 % self.size as u64);
            let head: u16 = unsafe { rd(slot) };
            let mut chain = Vec::new();
            let mut i = head;
            loop {
                let d = self.desc + 16 * i as u64;
                let (addr, len, flags, next): (u64, u32, u16, u16) =
                    unsafe { (rd(d), rd(d + 8), rd(d + 12), rd(d + 14)) };
                assert_eq!(flags & 4, 0, "indirect descriptors were not negotiated");
                chain.push((addr, len, flags & 2 != 0));
                if flags & 1 == 0 {
                    break;
                }
                i = next;
            }
            out.push((head, chain));
            self.last_avail = self.last_avail.wrapping_add(1);
        }
        out
    }

    /// Gives `n` popped chains back (they will be popped again).
    pub fn unpop(&mut self, n: usize) {
        self.last_avail = self.last_avail.wrapping_sub(n as u16);
    }

    pub fn push_used(&self, head: u16, len: u32) {
        // SAFETY: ring addresses from queue_set.
        unsafe {
            let idx: u16 = rd(self.used + 2);
            let slot = self.used + 4 + 8 * (idx as u64 % self.size as u64);
            wr(slot, head as u32);
            wr(slot + 4, len);
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            wr(self.used + 2, idx.wrapping_add(1));
        }
    }
}

/// The device-readable bytes of a chain, concatenated.
pub(crate) fn read_chain(chain: &Chain) -> Vec<u8> {
    let mut out = Vec::new();
    for &(addr, len, writable) in chain {
        if !writable {
            // SAFETY: a buffer the driver shared for this request.
            out.extend_from_slice(unsafe {
                std::slice::from_raw_parts(addr as *const u8, len as usize)
            });
        }
    }
    out
}

/// Writes `data` into the device-writable buffers; returns bytes written.
pub(crate) fn write_chain(chain: &Chain, data: &[u8]) -> usize {
    let mut done = 0;
    for &(addr, len, writable) in chain {
        if writable && done < data.len() {
            let n = (len as usize).min(data.len() - done);
            // SAFETY: a writable buffer the driver shared for this request.
            unsafe { std::ptr::copy_nonoverlapping(data[done..].as_ptr(), addr as *mut u8, n) };
            done += n;
        }
    }
    assert_eq!(done, data.len(), "reply larger than the driver's buffers");
    done
}
