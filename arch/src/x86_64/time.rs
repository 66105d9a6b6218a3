//! Monotonic clock: the TSC, converted to nanoseconds with a calibrated frequency.
//!
//! Calibration, first source that works:
//! 1. CPUID 0x15 (TSC/crystal ratio × crystal Hz) — real Intel CPUs; QEMU TCG
//!    `-cpu max` reports max leaf 0xd, so not there.
//! 2. CPUID 0x16 (base MHz) — same.
//! 3. Hypervisor leaf 0x40000010 (TSC kHz; KVM/VMware with `vmware-cpuid-freq`).
//! 4. The PIT: channel 0 counts down at least 2 ms (±1 PIT tick = 0.04%, read
//!    back with latch commands) against the TSC. The window is opened early
//!    and closed after the page tables are built, so it overlaps boot work.
//!    This is what q35 uses under TCG, and microvm with `pit=on` (the runner
//!    keeps the PIT on for this reason).
//! 5. Nothing (microvm with `pit=off` under TCG): assume 1 GHz and say so in
//!    the boot log — the clock is then monotonic but not to scale.
//!
//! Under TCG the guest TSC follows the host TSC, so the PIT measurement holds.

use super::cpu::cpuid;
use super::port::{inb, outb};
use core::arch::x86_64::_rdtsc;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

extern "C" {
    /// TSC at the first instruction (`pvh_start`).
    static boot_tsc: u64;
}

static FREQ_HZ: AtomicU64 = AtomicU64::new(0);
/// ns = ticks * MULT >> 32.
static MULT: AtomicU64 = AtomicU64::new(0);
static SOURCE: AtomicUsize = AtomicUsize::new(0);

const SOURCES: [&str; 6] = [
    "uncalibrated",
    "cpuid 0x15 crystal",
    "cpuid 0x16 base frequency",
    "hypervisor cpuid 0x40000010",
    "PIT channel 0, 2 ms",
    "no calibration source: assumed 1 GHz",
];

const PIT_HZ: u64 = 1_193_182;
const PIT_WINDOW_MS: u64 = 2;

fn rdtsc() -> u64 {
    // SAFETY: RDTSC is always available on x86_64.
    unsafe { _rdtsc() }
}

fn set_frequency(hz: u64, src: usize) {
    FREQ_HZ.store(hz, Ordering::Relaxed);
    MULT.store(
        ((1_000_000_000u128 << 32) / hz as u128) as u64,
        Ordering::Relaxed,
    );
    SOURCE.store(src, Ordering::Relaxed);
}

/// PIT count and TSC when the PIT window started; 0 = no window open.
static PIT_COUNT0: AtomicU64 = AtomicU64::new(0);
static PIT_TSC0: AtomicU64 = AtomicU64::new(0);

/// Start calibrating. A CPUID source finishes at once; the PIT window is left
/// running while the rest of boot (boot info, page tables) proceeds, and
/// [`finish_calibration`] waits out whatever is left of it.
pub fn start_calibration() {
    if let Some((hz, src)) = cpuid_frequency() {
        return set_frequency(hz, src);
    }
    match pit_start() {
        Some((c0, t0)) => {
            PIT_COUNT0.store(c0, Ordering::Relaxed);
            PIT_TSC0.store(t0, Ordering::Relaxed);
        }
        None => set_frequency(1_000_000_000, 5),
    }
}

pub fn finish_calibration() {
    let c0 = PIT_COUNT0.swap(0, Ordering::Relaxed);
    if c0 == 0 {
        return;
    }
    let t0 = PIT_TSC0.load(Ordering::Relaxed);
    // If the window was overrun (the count wrapped), measure afresh.
    let hz = pit_finish(c0, t0).or_else(|| pit_start().and_then(|(c, t)| pit_finish(c, t)));
    match hz {
        Some(hz) => set_frequency(hz, 4),
        None => set_frequency(1_000_000_000, 5),
    }
}

fn cpuid_frequency() -> Option<(u64, usize)> {
    let max = cpuid(0, 0).eax;
    if max >= 0x15 {
        let l = cpuid(0x15, 0);
        if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
            return Some((l.ecx as u64 * l.ebx as u64 / l.eax as u64, 1));
        }
    }
    if max >= 0x16 {
        let mhz = cpuid(0x16, 0).eax & 0xffff;
        if mhz != 0 {
            return Some((mhz as u64 * 1_000_000, 2));
        }
    }
    let hv_present = cpuid(1, 0).ecx & (1 << 31) != 0;
    if hv_present && cpuid(0x4000_0000, 0).eax >= 0x4000_0010 {
        let khz = cpuid(0x4000_0010, 0).eax;
        if khz != 0 {
            return Some((khz as u64 * 1000, 3));
        }
    }
    None
}

fn pit_read() -> u64 {
    // SAFETY: latch + read of PIT channel 0.
    unsafe {
        outb(0x43, 0x00); // latch channel 0
        let lo = inb(0x40) as u64;
        let hi = inb(0x40) as u64;
        (hi << 8) | lo
    }
}

/// Longest TSC gap around a PIT read that we accept as one instant: a vCPU
/// descheduled mid-read (busy host) would otherwise skew the calibration.
const MAX_READ_GAP: u64 = 20_000;

/// A PIT count with the TSC at the middle of its read, if the read was quick.
fn pit_read_timed() -> Option<(u64, u64)> {
    let a = rdtsc();
    let c = pit_read();
    let b = rdtsc();
    (b - a <= MAX_READ_GAP).then_some((c, a + (b - a) / 2))
}

/// Start PIT channel 0 counting down from 0xffff (55 ms of range) and return
/// the first count seen moving with its TSC. Channel 0 is used rather than
/// channel 2 because channel 2's gate lives in port 0x61 (the PC speaker),
/// which microvm does not have. Interrupts are off, so the IRQ0 that mode 0
/// raises at terminal count goes nowhere.
fn pit_start() -> Option<(u64, u64)> {
    // SAFETY: standard PIT programming; without a PIT the ports read 0xff.
    unsafe {
        outb(0x43, 0x30); // channel 0, lobyte/hibyte, mode 0, binary
        outb(0x40, 0xff);
        outb(0x40, 0xff);
    }
    // Wait for the count to start moving (loading takes one PIT clock).
    // A PIT ticks every 838 ns; 10M TSC ticks is a few ms on any CPU that
    // runs this, so an absent PIT (reads 0xffff forever) costs little.
    let first = pit_read();
    let start = rdtsc();
    loop {
        if let Some((c, t)) = pit_read_timed() {
            if c != first {
                return (c != 0).then_some((c, t));
            }
        }
        if rdtsc() - start > 10_000_000 {
            return None;
        }
    }
}

/// Wait until the PIT has counted PIT_WINDOW_MS since `(c0, t0)` and derive
/// the TSC frequency; `None` if the count wrapped or misbehaves.
fn pit_finish(c0: u64, t0: u64) -> Option<u64> {
    let window = PIT_HZ * PIT_WINDOW_MS / 1000;
    for _ in 0..100_000_000u64 {
        let Some((c, t1)) = pit_read_timed() else {
            continue;
        };
        if c > c0 {
            return None; // wrapped (window overrun) or garbage
        }
        if c0 - c >= window {
            // Scale by the ticks actually elapsed (may overshoot the window).
            let hz = (t1 - t0) as u128 * PIT_HZ as u128 / (c0 - c) as u128;
            return (hz > 0).then_some(hz as u64);
        }
    }
    None
}

fn ticks_to_ns(ticks: u64) -> u64 {
    ((ticks as u128 * MULT.load(Ordering::Relaxed) as u128) >> 32) as u64
}

fn boot() -> u64 {
    // SAFETY: written once by the entry code before any Rust ran.
    unsafe { core::ptr::addr_of!(boot_tsc).read() }
}

/// Monotonic nanoseconds (origin: the first instruction).
pub fn now_ns() -> u64 {
    ticks_to_ns(rdtsc().saturating_sub(boot()))
}

/// Nanoseconds since the first instruction of the kernel.
pub fn since_boot_ns() -> u64 {
    now_ns()
}

pub fn frequency_hz() -> u64 {
    FREQ_HZ.load(Ordering::Relaxed)
}

pub fn calibration() -> &'static str {
    SOURCES[SOURCE.load(Ordering::Relaxed)]
}
