//! Exception handling: IDT with the 32 CPU exception vectors, a readable
//! report (name, error code decoded, CR2, registers, frame-pointer backtrace)
//! and power-off with a failure code. Vectors 32-255 (interrupts) go to
//! `apic::interrupt` and return with `iretq`.

use super::gdt;
use core::arch::asm;
use core::fmt::Write;
use core::ptr::{addr_of, addr_of_mut};


/// Vectors for which the CPU pushes an error code (#DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP,
/// #VC, #SX): bit `v` set for vector `v`. The stubs of all others push a 0 in its place.
const ERROR_CODE_VECTORS: u64 =
    1 << 8 | 1 << 10 | 1 << 11 | 1 << 12 | 1 << 13 | 1 << 14 | 1 << 17 | 1 << 21 | 1 << 29 | 1 << 30;
/// Every stub starts on a 16-byte boundary, and the table below relies on it: a stub is at
/// most 12 bytes (push imm8, push imm32, jmp rel32). `init` checks the total length.
const STUB_SIZE: u64 = 16;

// One stub per vector, generated: push a 0 where the CPU pushed no error code, push the
// vector, join the common path; then the table of stub addresses the IDT is built from.
core::arch::global_asm!(
    r#"
    .section .text.trap, "ax"
    .p2align 4
    .global trap_stubs
trap_stubs:
    .set vector, 0
    .rept 256
    .p2align 4
    .set has_error_code, 0
    .if vector < 32
    .set has_error_code, ({error_code_vectors} >> vector) & 1
    .endif
    .if has_error_code == 0
    pushq $0
    .endif
    pushq $vector
    jmp trap_common
    .set vector, vector + 1
    .endr
    .p2align 4
    .global trap_stubs_end
trap_stubs_end:

trap_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call {dispatch}
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq

    .section .rodata.trap, "a"
    .p2align 3
    .global trap_stub_table
trap_stub_table:
    .set vector, 0
    .rept 256
    .quad trap_stubs + vector * {stub_size}
    .set vector, vector + 1
    .endr
"#,
    error_code_vectors = const ERROR_CODE_VECTORS,
    stub_size = const STUB_SIZE,
    dispatch = sym trap_dispatch,
    options(att_syntax),
);

/// Saved state, lowest address first (the order `trap_common` pushes in reverse).
#[repr(C)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

#[derive(Clone, Copy)]
#[repr(C, packed)]
struct IdtEntry {
    offset_lo: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_hi: u32,
    zero: u32,
}

const EMPTY: IdtEntry = IdtEntry {
    offset_lo: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_hi: 0,
    zero: 0,
};
static mut IDT: [IdtEntry; 256] = [EMPTY; 256];

extern "C" {
    static trap_stub_table: [u64; 256];
    static trap_stubs: u8;
    static trap_stubs_end: u8;
}

#[repr(C, packed)]
struct IdtPtr {
    limit: u16,
    base: u64,
}

pub fn init() {
    let (start, end) = (addr_of!(trap_stubs) as u64, addr_of!(trap_stubs_end) as u64);
    if end - start != 256 * STUB_SIZE {
        let _ = writeln!(
            super::console::Writer,
            "trap: stubs are {} bytes, not 256 x {STUB_SIZE}: the IDT would be wrong",
            end - start
        );
        super::power::exit(crate::exit_code::EXCEPTION);
    }
    gdt::init();
    // SAFETY: single-threaded boot; the IDT is static.
    unsafe {
        let idt = &mut *addr_of_mut!(IDT);
        let stubs = &*addr_of!(trap_stub_table);
        for (v, &addr) in stubs.iter().enumerate() {
            let ist = match v {
                2 => gdt::IST_NMI,
                8 => gdt::IST_DOUBLE_FAULT,
                14 => gdt::IST_PAGE_FAULT,
                18 => gdt::IST_MACHINE_CHECK,
                _ => 0,
            };
            idt[v] = IdtEntry {
                offset_lo: addr as u16,
                selector: gdt::KERNEL_CS,
                ist,
                type_attr: 0x8e, // present, DPL 0, 64-bit interrupt gate
                offset_mid: (addr >> 16) as u16,
                offset_hi: (addr >> 32) as u32,
                zero: 0,
            };
        }
        let ptr = IdtPtr {
            limit: (256 * 16 - 1) as u16,
            base: addr_of!(IDT) as u64,
        };
        asm!("lidt [{}]", in(reg) &ptr, options(nostack));
    }
}

const NAMES: [(&str, &str); 32] = [
    ("Divide error", "#DE"),
    ("Debug", "#DB"),
    ("Non-maskable interrupt", "NMI"),
    ("Breakpoint", "#BP"),
    ("Overflow", "#OF"),
    ("BOUND range exceeded", "#BR"),
    ("Invalid opcode", "#UD"),
    ("Device not available", "#NM"),
    ("Double fault", "#DF"),
    ("Coprocessor segment overrun", "#CSO"),
    ("Invalid TSS", "#TS"),
    ("Segment not present", "#NP"),
    ("Stack-segment fault", "#SS"),
    ("General protection fault", "#GP"),
    ("Page fault", "#PF"),
    ("Reserved", "#15"),
    ("x87 floating-point exception", "#MF"),
    ("Alignment check", "#AC"),
    ("Machine check", "#MC"),
    ("SIMD floating-point exception", "#XM"),
    ("Virtualization exception", "#VE"),
    ("Control protection exception", "#CP"),
    ("Reserved", "#22"),
    ("Reserved", "#23"),
    ("Reserved", "#24"),
    ("Reserved", "#25"),
    ("Reserved", "#26"),
    ("Reserved", "#27"),
    ("Hypervisor injection exception", "#HV"),
    ("VMM communication exception", "#VC"),
    ("Security exception", "#SX"),
    ("Reserved", "#31"),
];

fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack)) };
    v
}

static IN_TRAP: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

extern "C" fn trap_dispatch(f: &mut TrapFrame) {
    if f.vector >= 32 {
        // A device or timer interrupt (only taken inside `cpu::idle`).
        return super::apic::interrupt(f.vector as u8);
    }
    let mut w = super::console::Writer;
    if IN_TRAP.swap(true, core::sync::atomic::Ordering::SeqCst) {
        let _ = writeln!(
            w,
            "\n*** nested CPU exception, vector {} at rip={:#x}",
            f.vector, f.rip
        );
        super::power::exit(crate::exit_code::EXCEPTION);
    }
    let (name, mnemonic) = NAMES[(f.vector & 31) as usize];
    let _ = writeln!(
        w,
        "\n*** CPU exception: {name} ({mnemonic}), vector {}, error code {:#x}",
        f.vector, f.error
    );
    if f.vector == 14 {
        let cr2 = read_cr2();
        let in_guard = super::mm::guard_page_stack(cr2).is_some();
        let _ = writeln!(
            w,
            "    cause: {}",
            super::page_fault::page_fault_cause(f.error, cr2, in_guard)
        );
        let _ = writeln!(w, "    address (CR2): {cr2:#018x}");
        if let Some(s) = super::mm::guard_page_stack(cr2) {
            let _ = writeln!(
                w,
                "    stack: {:#x}-{:#x}, guard page {:#x}",
                s.bottom,
                s.top,
                s.guard.unwrap_or(0)
            );
        }
    }
    if f.vector == 8 {
        let _ = writeln!(
            w,
            "    cause: an exception while delivering another (often a stack overflow)"
        );
    }
    let _ = writeln!(
        w,
        "    rip={:#018x} cs={:#x} rflags={:#x} rsp={:#018x} ss={:#x}",
        f.rip, f.cs, f.rflags, f.rsp, f.ss
    );
    let regs = [
        ("rax", f.rax),
        ("rbx", f.rbx),
        ("rcx", f.rcx),
        ("rdx", f.rdx),
        ("rsi", f.rsi),
        ("rdi", f.rdi),
        ("rbp", f.rbp),
        ("r8", f.r8),
        ("r9", f.r9),
        ("r10", f.r10),
        ("r11", f.r11),
        ("r12", f.r12),
        ("r13", f.r13),
        ("r14", f.r14),
        ("r15", f.r15),
    ];
    for row in regs.chunks(4) {
        let _ = write!(w, "   ");
        for (n, v) in row {
            let _ = write!(w, " {n:>3}={v:#018x}");
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(w, "    backtrace (frame pointers):");
    let _ = writeln!(w, "      #0 {:#018x}", f.rip);
    let mut rbp = f.rbp;
    for depth in 1..32 {
        if rbp == 0
            || !rbp.is_multiple_of(8)
            || !super::mm::is_mapped(rbp)
            || !super::mm::is_mapped(rbp + 8)
        {
            break;
        }
        // SAFETY: both words are mapped (checked just above).
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        let _ = writeln!(w, "      #{depth} {ret:#018x}");
        if next <= rbp {
            break; // frames must move up the stack
        }
        rbp = next;
    }
    super::power::exit(crate::exit_code::EXCEPTION);
}
