//! GICv2 and the EL1 virtual timer, used for one thing: letting the CPU sleep
//! (`wfi`) in `cpu::idle` instead of spinning, so a waiting kernel does not
//! burn a host core. IRQs stay masked (PSTATE.I) everywhere else.
//!
//! The distributor and CPU interface come from the FDT (`arm,cortex-a15-gic` /
//! `arm,gic-400`: reg[0] GICD, reg[1] GICC; QEMU virt: 0x0800_0000 and
//! 0x0801_0000), the virtual timer's PPI from `/timer` (third `interrupts`
//! entry; PPI 11 = INTID 27 on virt). Only that interrupt is enabled. A GICv3
//! (`arm,gic-v3`, `-M virt,gic-version=3`) is not driven: `idle` then spins.
//!
//! Why no race: `idle` executes WFI with IRQs still masked. A pending IRQ wakes
//! WFI regardless of PSTATE.I (ARM ARM D1.16.2), so an interrupt that fires
//! before the WFI makes it return at once; IRQs are then unmasked for a
//! moment so the handler runs (acknowledge, disarm the timer, EOI).

use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::fdt::Fdt;

// Distributor registers (GICv2 architecture spec, 4.3).
const GICD_CTLR: u64 = 0x000;
const GICD_ISENABLER: u64 = 0x100;
const GICD_IPRIORITYR: u64 = 0x400;
// CPU interface registers (4.4).
const GICC_CTLR: u64 = 0x000;
const GICC_PMR: u64 = 0x004;
const GICC_IAR: u64 = 0x00c;
const GICC_EOIR: u64 = 0x010;
const SPURIOUS: u32 = 1023;
/// QEMU virt's virtual timer: PPI 11.
const DEFAULT_VTIMER_INTID: u32 = 27;

static GICD: AtomicU64 = AtomicU64::new(0);
/// 0 = no GIC driven (idle spins).
static GICC: AtomicU64 = AtomicU64::new(0);
static VTIMER_INTID: AtomicU32 = AtomicU32::new(DEFAULT_VTIMER_INTID);
static TIMER_IRQS: AtomicU64 = AtomicU64::new(0);
static OTHER_IRQS: AtomicU64 = AtomicU64::new(0);

fn write32(base: &AtomicU64, reg: u64, v: u32) {
    // SAFETY: the GIC frames were mapped as Device memory by `init`.
    unsafe { ((base.load(Ordering::Relaxed) + reg) as *mut u32).write_volatile(v) }
}

fn read32(base: &AtomicU64, reg: u64) -> u32 {
    // SAFETY: as in `write32`.
    unsafe { ((base.load(Ordering::Relaxed) + reg) as *const u32).read_volatile() }
}

/// Find and set up the GIC (needs `mm::map_mmio`). Leaves idle spinning if
/// there is no GICv2 or its frames cannot be mapped.
pub(super) fn init(fdt: &Fdt<'_>) {
    let Some(node) = ["arm,cortex-a15-gic", "arm,gic-400", "arm,cortex-a9-gic"]
        .iter()
        .find_map(|c| fdt.compatible_nodes(c).next())
    else {
        return;
    };
    let Some(mut regs) = node.reg() else { return };
    let (Some(d), Some(c)) = (regs.next(), regs.next()) else {
        return;
    };
    if super::mm::map_mmio(d.address, d.size).is_err()
        || super::mm::map_mmio(c.address, c.size).is_err()
    {
        return;
    }
    // /timer interrupts: secure phys, non-secure phys, virtual, hyp; each
    // <type number flags>, type 1 = PPI (INTID 16 + number).
    if let Some(p) = fdt
        .compatible_nodes("arm,armv8-timer")
        .next()
        .and_then(|t| t.property("interrupts"))
    {
        let cells: [Option<u32>; 9] = {
            let mut it = p.u32s();
            core::array::from_fn(|_| it.next())
        };
        if let (Some(1), Some(n)) = (cells[6], cells[7]) {
            VTIMER_INTID.store(16 + n, Ordering::Relaxed);
        }
    }
    GICD.store(d.address, Ordering::Relaxed);
    let intid = VTIMER_INTID.load(Ordering::Relaxed);
    // Priority 0x80 for the timer, enable it, unmask priorities < 0xf0, turn
    // on both groups at distributor and CPU interface (no security
    // extensions on virt: group 0 is signalled as IRQ with FIQEn = 0).
    // SAFETY: byte access to IPRIORITYR is architecturally allowed.
    unsafe {
        ((d.address + GICD_IPRIORITYR + intid as u64) as *mut u8).write_volatile(0x80);
    }
    write32(
        &GICD,
        GICD_ISENABLER + 4 * (intid as u64 / 32),
        1 << (intid % 32),
    );
    write32(&GICD, GICD_CTLR, 0b11);
    GICC.store(c.address, Ordering::Relaxed);
    write32(&GICC, GICC_PMR, 0xf0);
    write32(&GICC, GICC_CTLR, 0b11);
}

fn timer_disarm() {
    // SAFETY: CNTV_CTL_EL0 is accessible at EL1; 0 = timer off.
    unsafe { asm!("msr cntv_ctl_el0, xzr", "isb", options(nomem, nostack)) };
}

/// Sleep until the virtual timer fires `max_ns` from now (or another
/// interrupt comes); `false` if there is no GIC to wake us (caller spins).
pub(super) fn sleep(max_ns: u64) -> bool {
    if GICC.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let hz = super::time::frequency_hz() as u128;
    let ticks = ((max_ns as u128 * hz).div_ceil(1_000_000_000)).max(1) as u64;
    let deadline = super::time::ticks().saturating_add(ticks);
    // SAFETY: arms the EL1 virtual timer (ENABLE, IMASK clear), waits, then
    // opens the IRQ mask for the pending interrupt to be taken (see the
    // module comment for why this order has no lost wake-up).
    unsafe {
        asm!(
            "msr cntv_cval_el0, {d}",
            "mov {t}, #1",
            "msr cntv_ctl_el0, {t}",
            "isb",
            "dsb sy",
            "wfi",
            "msr daifclr, #2",
            "isb",
            "msr daifset, #2",
            d = in(reg) deadline,
            t = out(reg) _,
            options(nostack),
        );
    }
    timer_disarm();
    true
}

/// IRQ entry (from the vectors): acknowledge, handle, end of interrupt.
pub(super) fn handle_irq() {
    if GICC.load(Ordering::Relaxed) == 0 {
        return;
    }
    let iar = read32(&GICC, GICC_IAR);
    let intid = iar & 0x3ff;
    if intid == SPURIOUS {
        return;
    }
    if intid == VTIMER_INTID.load(Ordering::Relaxed) {
        // Level-triggered: the line stays up until the timer is disarmed.
        timer_disarm();
        TIMER_IRQS.fetch_add(1, Ordering::Relaxed);
    } else {
        OTHER_IRQS.fetch_add(1, Ordering::Relaxed);
    }
    write32(&GICC, GICC_EOIR, iar);
}

pub(super) fn timer_interrupts() -> u64 {
    TIMER_IRQS.load(Ordering::Relaxed)
}
