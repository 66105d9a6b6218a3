//! EL1 exception vectors (VBAR_EL1) and the exception report.
//!
//! The kernel runs on SP_EL0 (SPSel = 0), so every exception it takes lands
//! in the "current EL with SP0" group and runs on SP_EL1, the dedicated
//! exception stack: a stack overflow into a guard page still gets a report.
//! The asm saves all general registers plus SP_EL0, ELR, SPSR, ESR and FAR in
//! a [`TrapFrame`], calls [`handle`], restores and returns (`eret`) if the
//! handler resumes; an unexpected exception never returns: it prints the
//! report and powers off with [`exit_code::EXCEPTION`].

use core::arch::{asm, global_asm};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use super::console::Writer;
use super::esr::Esr;
use crate::exit_code;


/// Saved state of the interrupted code (layout shared with the asm below).
#[repr(C)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub sp_el0: u64,
    pub elr: u64,
    pub spsr: u64,
    pub esr: u64,
    pub far: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 288 && FRAME_SIZE % 16 == 0);

global_asm!(
    r#"
    .macro MK_VENTRY kind
    .balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       mk_trap_common
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global mk_vectors
mk_vectors:
    // current EL, SP_EL0 (the kernel's normal state)
    MK_VENTRY 0
    MK_VENTRY 1
    MK_VENTRY 2
    MK_VENTRY 3
    // current EL, SP_ELx (inside the exception handler itself)
    MK_VENTRY 4
    MK_VENTRY 5
    MK_VENTRY 6
    MK_VENTRY 7
    // lower EL, AArch64 / AArch32 (unused: no EL0)
    MK_VENTRY 8
    MK_VENTRY 9
    MK_VENTRY 10
    MK_VENTRY 11
    MK_VENTRY 12
    MK_VENTRY 13
    MK_VENTRY 14
    MK_VENTRY 15

mk_trap_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, sp_el0
    stp     x30, x1, [sp, #240]
    mrs     x1, elr_el1
    mrs     x2, spsr_el1
    stp     x1, x2, [sp, #256]
    mrs     x1, esr_el1
    mrs     x2, far_el1
    stp     x1, x2, [sp, #272]
    mov     x1, x0
    mov     x0, sp
    bl      {handle}
    ldp     x1, x2, [sp, #256]
    msr     elr_el1, x1
    msr     spsr_el1, x2
    ldp     x30, x1, [sp, #240]
    msr     sp_el0, x1
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #{frame}
    eret
    "#,
    frame = const FRAME_SIZE,
    handle = sym handle,
);

extern "C" {
    static mk_vectors: u8;
}

/// Install the vector table.
pub fn init() {
    // SAFETY: mk_vectors is a complete, 2 KiB-aligned vector table.
    unsafe {
        let v = core::ptr::addr_of!(mk_vectors) as u64;
        asm!("msr vbar_el1, {}", "isb", in(reg) v, options(nostack));
    }
}

const KIND_NAMES: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
const ORIGIN_NAMES: [&str; 4] = [
    "EL1 on SP_EL0",
    "EL1 on SP_EL1 (in handler)",
    "EL0 AArch64",
    "EL0 AArch32",
];

static IN_REPORT: AtomicBool = AtomicBool::new(false);

extern "C" fn handle(frame: &mut TrapFrame, kind: u64) {
    let ec = (frame.esr >> 26) & 0x3f;
    // Semihosting probe without `-semihosting`: HLT is undefined; skip it.
    if kind == 0 && ec == 0 && frame.elr == super::power::probe_address() {
        frame.x[0] = u64::MAX;
        frame.elr += 4;
        return;
    }
    // IRQs are only unmasked inside `cpu::idle` (the timer that wakes it).
    if kind == 1 || kind == 5 {
        super::gic::handle_irq();
        return;
    }
    if IN_REPORT.swap(true, Ordering::Relaxed) {
        // Faulted while reporting: keep it short and stop.
        super::console::write_bytes(
            b"\n*** nested CPU exception while printing an exception report\n",
        );
        super::power::exit(exit_code::EXCEPTION);
    }
    report(frame, kind);
    super::power::exit(exit_code::EXCEPTION)
}

fn report(f: &TrapFrame, kind: u64) {
    let w = &mut Writer;
    let esr = Esr(f.esr);
    let kind_name = KIND_NAMES[(kind & 3) as usize];
    let origin = ORIGIN_NAMES[((kind >> 2) & 3) as usize];
    // "Data Abort (EC 0x25, synchronous, from EL1 on SP_EL0): permission fault ..."
    let _ = write!(
        w,
        "\n*** CPU exception: {} (EC {:#04x}, {kind_name}, from {origin})",
        esr.class_name(),
        esr.class()
    );
    let _ = writeln!(w, "{}", esr.detail());
    let far_note = if esr.is_abort() && !esr.far_valid() {
        " (not valid)"
    } else {
        ""
    };
    let _ = writeln!(
        w,
        "    ESR {:#010x}  FAR {:#018x}{far_note}  ELR {:#018x}  SPSR {:#010x}",
        f.esr, f.far, f.elr, f.spsr
    );
    if esr.far_valid() {
        let guard = super::mm::guard_page_stack(f.far);
        if let Some(cause) = esr.cause(f.far, guard.is_some()) {
            let _ = writeln!(w, "    cause: {cause}");
        }
        if let Some(s) = guard {
            let _ = writeln!(
                w,
                "    stack: {:#x}-{:#x}, guard page {:#x}",
                s.bottom,
                s.top,
                s.guard.unwrap_or(0)
            );
        }
    }
    let sp = if (kind >> 2) & 3 == 1 {
        f as *const TrapFrame as u64 + FRAME_SIZE as u64
    } else {
        f.sp_el0
    };
    for row in 0..8 {
        let _ = write!(w, " ");
        for i in row * 4..(row * 4 + 4).min(31) {
            let _ = write!(w, " x{i:<2} {:#018x}", f.x[i]);
        }
        if row == 7 {
            let _ = write!(w, " sp  {sp:#018x}");
        }
        let _ = writeln!(w);
    }
    backtrace(w, f);
}

/// Frame-pointer chain: each frame record is [previous x29, return address].
fn backtrace(w: &mut Writer, f: &TrapFrame) {
    let _ = writeln!(w, "  backtrace:");
    let _ = writeln!(w, "    #0 {:#018x}", f.elr);
    let _ = writeln!(w, "    #1 {:#018x} (lr)", f.x[30]);
    let mut fp = f.x[29];
    let (mut last, mut repeats) = (0u64, 0u32);
    for depth in 2..64 {
        if fp == 0 || fp % 16 != 0 || !super::mm::is_mapped(fp) || !super::mm::is_mapped(fp + 8) {
            break;
        }
        // SAFETY: both words are mapped (checked just above).
        let (next, ret) = unsafe { ((fp as *const u64).read(), ((fp + 8) as *const u64).read()) };
        if ret == 0 {
            break;
        }
        // Deep recursion (the stack-overflow case) prints one line per return address.
        if ret == last {
            repeats += 1;
        } else {
            if repeats > 0 {
                let _ = writeln!(w, "       ... same frame {repeats} more times");
            }
            let _ = writeln!(w, "    #{depth} {:#018x}", ret);
            (last, repeats) = (ret, 0);
        }
        if next <= fp {
            break; // the stack grows down: callers' frames are higher
        }
        fp = next;
    }
    if repeats > 0 {
        let _ = writeln!(w, "       ... same frame {repeats} more times");
    }
}
