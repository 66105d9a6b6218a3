//! Monotonic clock from the ARM generic timer: the virtual counter CNTVCT_EL0
//! at CNTFRQ_EL0 Hz (62.5 MHz on QEMU 7.2 virt, i.e. 16 ns per tick). The
//! frequency is set by firmware/QEMU, so there is nothing to calibrate.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

static FREQ_HZ: AtomicU64 = AtomicU64::new(0);
/// ns per tick as a 32.32 fixed-point factor: a multiply instead of a 128-bit
/// division per clock read (exact for 62.5 MHz; for other rates the error is
/// below 2^-32 ns per tick, under a microsecond per day).
static NS_PER_TICK_32: AtomicU64 = AtomicU64::new(0);
static BOOT_TICKS: AtomicU64 = AtomicU64::new(0);

pub(super) fn init(boot_ticks: u64) {
    let f: u64;
    // SAFETY: CNTFRQ_EL0 is readable at EL1.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    let f = f.max(1);
    FREQ_HZ.store(f, Ordering::Relaxed);
    NS_PER_TICK_32.store(
        ((1_000_000_000u128 << 32) / f as u128) as u64,
        Ordering::Relaxed,
    );
    BOOT_TICKS.store(boot_ticks, Ordering::Relaxed);
}

/// Raw counter value. The ISB keeps the read from being hoisted above earlier
/// instructions (ARM ARM D11.2.2: counter reads may be speculated).
pub fn ticks() -> u64 {
    let t: u64;
    // SAFETY: CNTVCT_EL0 is readable at EL1.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) t, options(nomem, nostack)) };
    t
}

pub fn frequency_hz() -> u64 {
    FREQ_HZ.load(Ordering::Relaxed)
}

pub fn calibration() -> &'static str {
    "CNTFRQ_EL0 (generic timer, set by the platform)"
}

fn ticks_to_ns(t: u64) -> u64 {
    ((t as u128 * NS_PER_TICK_32.load(Ordering::Relaxed) as u128) >> 32) as u64
}

/// Nanoseconds on the virtual counter (starts near 0 when the VM starts).
pub fn now_ns() -> u64 {
    ticks_to_ns(ticks())
}

/// Nanoseconds since the kernel's first instruction.
pub fn since_boot_ns() -> u64 {
    ticks_to_ns(ticks().wrapping_sub(BOOT_TICKS.load(Ordering::Relaxed)))
}

/// Counter value at the kernel's first instruction, in ns (time the VM spent
/// before the kernel ran: QEMU loader and reset).
pub fn boot_origin_ns() -> u64 {
    ticks_to_ns(BOOT_TICKS.load(Ordering::Relaxed))
}
