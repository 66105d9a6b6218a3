//! Kernel stacks: layout (guard page below, canary at the lowest usable word)
//! and the canary check done on every task switch and exit.
//!
//! ```text
//!   top ─────────────┐  (stack grows down)
//!        ...         │  usable
//!   bottom: CANARY   │  lowest word; overwritten only by an overflow that
//!   ─────────────────┘  did not reach the guard page
//!   guard page (unmapped): an overflow past here faults
//! ```

use crate::frame_alloc::PAGE_SIZE;

/// Canary base value; each stack mixes in its own address so a copied
/// canary from another stack does not pass.
const CANARY_BASE: u64 = 0x5ac6_ca7a_b1e5_f00d;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stack {
    /// Lowest mapped address (the canary lives here).
    pub bottom: u64,
    /// One past the highest address; the initial stack pointer.
    pub top: u64,
    /// Start of the unmapped guard page (`bottom - PAGE_SIZE`), if any.
    pub guard: Option<u64>,
}

pub fn canary_value(bottom: u64) -> u64 {
    CANARY_BASE ^ bottom.rotate_left(17)
}

impl Stack {
    /// Stack from a block of `pages` pages at `base` whose first page is the guard.
    pub fn with_guard(base: u64, pages: u64) -> Self {
        Self {
            bottom: base + PAGE_SIZE,
            top: base + pages * PAGE_SIZE,
            guard: Some(base),
        }
    }

    pub fn contains(&self, addr: u64) -> bool {
        (self.bottom..self.top).contains(&addr)
    }

    pub fn in_guard(&self, addr: u64) -> bool {
        self.guard
            .is_some_and(|g| (g..g + PAGE_SIZE).contains(&addr))
    }

    /// Write the canary at the bottom of the stack.
    ///
    /// # Safety
    /// `bottom` must be mapped, writable, and not in use.
    pub unsafe fn plant_canary(&self) {
        unsafe { (self.bottom as *mut u64).write_volatile(canary_value(self.bottom)) }
    }

    /// # Safety
    /// `bottom` must be mapped and readable.
    pub unsafe fn canary_intact(&self) -> bool {
        unsafe { (self.bottom as *const u64).read_volatile() == canary_value(self.bottom) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_detects_overwrite() {
        let mut mem = vec![0u64; 3 * PAGE_SIZE as usize / 8];
        let base = (mem.as_mut_ptr() as u64 + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
        let s = Stack::with_guard(base - PAGE_SIZE, 2);
        assert_eq!(s.bottom, base);
        assert_eq!(s.top, base + PAGE_SIZE);
        assert!(s.in_guard(base - 1) && !s.in_guard(base));
        assert!(s.contains(base) && !s.contains(s.top));
        unsafe {
            s.plant_canary();
            assert!(s.canary_intact());
            (s.bottom as *mut u8).add(3).write(0x42);
            assert!(!s.canary_intact());
        }
        assert_ne!(canary_value(0x1000), canary_value(0x2000));
    }
}
