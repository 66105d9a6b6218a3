//! Port I/O.
use core::arch::asm;

/// Write a byte to an I/O port.
///
/// # Safety
/// `port` must belong to a device the caller drives, and `v` must be a value that device
/// accepts: port writes reprogram hardware (PICs, timers, the debug-exit device).
pub unsafe fn outb(port: u16, v: u8) {
    // SAFETY: as the caller guarantees.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    }
}

/// Read a byte from an I/O port.
///
/// # Safety
/// `port` must belong to a device the caller drives: some port reads have side effects
/// (they acknowledge or consume data).
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as the caller guarantees.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

/// Write a 32-bit value to an I/O port.
///
/// # Safety
/// As [`outb`].
pub unsafe fn outl(port: u16, v: u32) {
    // SAFETY: as the caller guarantees.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    }
}
