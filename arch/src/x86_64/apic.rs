//! Local APIC timer, used for one thing: letting the CPU sleep (`hlt`) in
//! `cpu::idle` instead of spinning, so a waiting kernel does not burn a host
//! core. Interrupts stay off everywhere else.
//!
//! xAPIC registers through MMIO (QEMU 7.2 TCG has no x2APIC and no
//! TSC-deadline mode: CPUID.1:ECX bit 24 is clear), one-shot mode, divide by
//! 1, its rate calibrated against the (already calibrated) TSC over 100 µs.
//! The legacy 8259 PICs are remapped to vectors 0x20-0x2f and masked, so a
//! stray legacy IRQ can never look like a CPU exception.

use super::cpu::{cpuid, rdmsr};
use super::port::outb;
use core::sync::atomic::{AtomicU64, Ordering};

pub const TIMER_VECTOR: u8 = 0x40;
pub const SPURIOUS_VECTOR: u8 = 0xff;

const IA32_APIC_BASE: u32 = 0x1b;
const REG_EOI: u64 = 0xb0;
const REG_SVR: u64 = 0xf0;
const REG_LVT_TIMER: u64 = 0x320;
const REG_INITIAL_COUNT: u64 = 0x380;
const REG_CURRENT_COUNT: u64 = 0x390;
const REG_DIVIDE: u64 = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;
const CALIBRATION_NS: u64 = 100_000;

/// MMIO base of the local APIC; 0 = no usable APIC timer.
static BASE: AtomicU64 = AtomicU64::new(0);
/// APIC timer ticks per millisecond.
static TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);
static TIMER_IRQS: AtomicU64 = AtomicU64::new(0);
static OTHER_IRQS: AtomicU64 = AtomicU64::new(0);

fn read(reg: u64) -> u32 {
    // SAFETY: `BASE` is mapped uncached by `init` before any access.
    unsafe { ((BASE.load(Ordering::Relaxed) + reg) as *const u32).read_volatile() }
}

fn write(reg: u64, v: u32) {
    // SAFETY: as in `read`.
    unsafe { ((BASE.load(Ordering::Relaxed) + reg) as *mut u32).write_volatile(v) }
}

fn mask_legacy_pics() {
    // SAFETY: the standard 8259 initialisation sequence; on machines without
    // PICs (microvm pic=off) the ports are unassigned and ignore writes.
    unsafe {
        outb(0x20, 0x11); // ICW1: init, ICW4 follows
        outb(0xa0, 0x11);
        outb(0x21, 0x20); // ICW2: vector bases 0x20 / 0x28
        outb(0xa1, 0x28);
        outb(0x21, 0x04); // ICW3: slave on IRQ2
        outb(0xa1, 0x02);
        outb(0x21, 0x01); // ICW4: 8086 mode
        outb(0xa1, 0x01);
        outb(0x21, 0xff); // mask everything
        outb(0xa1, 0xff);
    }
}

/// Enable the local APIC and calibrate its timer. Needs the TSC calibrated
/// and the page tables live (`map_mmio`).
pub fn init() {
    mask_legacy_pics();
    if cpuid(1, 0).edx & (1 << 9) == 0 {
        return;
    }
    // SAFETY: the APIC base MSR exists when CPUID reports an APIC.
    let msr = unsafe { rdmsr(IA32_APIC_BASE) };
    if msr & (1 << 11) == 0 || msr & (1 << 10) != 0 {
        return; // globally disabled, or in x2APIC mode (MMIO unusable)
    }
    let base = msr & 0x000f_ffff_ffff_f000;
    if super::mm::map_mmio(base, 4096).is_err() {
        return;
    }
    BASE.store(base, Ordering::Relaxed);
    write(REG_SVR, 0x100 | SPURIOUS_VECTOR as u32); // software enable
    write(REG_DIVIDE, 0xb); // divide by 1
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    write(REG_INITIAL_COUNT, u32::MAX);
    let t0 = super::time::now_ns();
    while super::time::now_ns() - t0 < CALIBRATION_NS {
        core::hint::spin_loop();
    }
    let elapsed = super::time::now_ns() - t0;
    let ticks = (u32::MAX - read(REG_CURRENT_COUNT)) as u64;
    write(REG_INITIAL_COUNT, 0);
    let per_ms = ticks * 1_000_000 / elapsed.max(1);
    if per_ms == 0 {
        BASE.store(0, Ordering::Relaxed);
        return;
    }
    TICKS_PER_MS.store(per_ms, Ordering::Relaxed);
}

/// Sleep in `hlt` until the timer fires after about `ns` (or any interrupt).
/// Returns false without sleeping if there is no usable APIC timer.
pub fn sleep(ns: u64) -> bool {
    let per_ms = TICKS_PER_MS.load(Ordering::Relaxed);
    if BASE.load(Ordering::Relaxed) == 0 || per_ms == 0 {
        return false;
    }
    let ticks = (ns as u128 * per_ms as u128 / 1_000_000).clamp(1, u32::MAX as u128) as u32;
    write(REG_LVT_TIMER, TIMER_VECTOR as u32); // unmasked, one-shot
    write(REG_INITIAL_COUNT, ticks);
    // SAFETY: the IDT handles every vector; `sti; hlt` is atomic (the STI
    // shadow covers HLT), so a timer already pending wakes the HLT. The
    // handler may use any caller-saved register, hence the clobbers.
    unsafe { core::arch::asm!("sti", "hlt", "cli", clobber_abi("C")) };
    write(REG_INITIAL_COUNT, 0);
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    true
}

/// Called by the trap entry for vectors 32-255.
pub fn interrupt(vector: u8) {
    match vector {
        SPURIOUS_VECTOR => return, // no EOI for spurious interrupts
        TIMER_VECTOR => TIMER_IRQS.fetch_add(1, Ordering::Relaxed),
        _ => OTHER_IRQS.fetch_add(1, Ordering::Relaxed),
    };
    if BASE.load(Ordering::Relaxed) != 0 {
        write(REG_EOI, 0);
    }
}

/// Timer interrupts taken so far.
pub fn timer_interrupts() -> u64 {
    TIMER_IRQS.load(Ordering::Relaxed)
}
