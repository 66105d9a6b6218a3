//! Volatile access to a register block at a (identity-mapped) address.

/// A window of device registers. `base` is a virtual address that is valid
/// for the window's length for as long as the value lives.
#[derive(Debug, Clone, Copy)]
pub struct Regs {
    base: usize,
    len: usize,
}

impl Regs {
    /// # Safety
    /// `base..base + len` must be mapped device (or test) memory that stays
    /// valid and is not used by anything else while the `Regs` lives.
    pub const unsafe fn new(base: usize, len: usize) -> Self {
        Self { base, len }
    }

    pub fn base(&self) -> usize {
        self.base
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn at<T>(&self, offset: usize) -> *mut T {
        assert!(
            offset + core::mem::size_of::<T>() <= self.len,
            "register offset {offset:#x} outside window of {:#x} bytes",
            self.len
        );
        (self.base + offset) as *mut T
    }

    pub fn read8(&self, offset: usize) -> u8 {
        // SAFETY: in bounds of the window promised valid by `new`.
        unsafe { self.at::<u8>(offset).read_volatile() }
    }
    pub fn read16(&self, offset: usize) -> u16 {
        // SAFETY: as above.
        unsafe { self.at::<u16>(offset).read_volatile() }
    }
    pub fn read32(&self, offset: usize) -> u32 {
        // SAFETY: as above.
        unsafe { self.at::<u32>(offset).read_volatile() }
    }
    pub fn write8(&self, offset: usize, value: u8) {
        // SAFETY: as above.
        unsafe { self.at::<u8>(offset).write_volatile(value) }
    }
    pub fn write16(&self, offset: usize, value: u16) {
        // SAFETY: as above.
        unsafe { self.at::<u16>(offset).write_volatile(value) }
    }
    pub fn write32(&self, offset: usize, value: u32) {
        // SAFETY: as above.
        unsafe { self.at::<u32>(offset).write_volatile(value) }
    }
    /// 64-bit registers as two 32-bit halves, low first (virtio 1.2 §4.1.3.1).
    /// Reads a 64-bit feature word through a select register (both transports expose the
    /// device's feature bits 32 at a time: write the word index to `select`, read `value`).
    pub fn read_selected_u64(&self, select: usize, value: usize) -> u64 {
        self.write32(select, 0);
        let low = self.read32(value) as u64;
        self.write32(select, 1);
        let high = self.read32(value) as u64;
        (high << 32) | low
    }

    /// Writes a 64-bit feature word through a select register, 32 bits at a time.
    pub fn write_selected_u64(&self, select: usize, value: usize, word: u64) {
        self.write32(select, 0);
        self.write32(value, word as u32);
        self.write32(select, 1);
        self.write32(value, (word >> 32) as u32);
    }

    pub fn write64_split(&self, offset: usize, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }
}
