//! Exception handling: IDT with the 32 CPU exception vectors, a readable
//! report (name, error code decoded, CR2, registers, frame-pointer backtrace)
//! and power-off with a failure code.

use super::gdt;
use crate::frame_alloc::PAGE_SIZE;
use core::arch::asm;
use core::fmt::Write;
use core::ptr::{addr_of, addr_of_mut};

/// Exit code for an unexpected exception (the kernel's `exit_code::EXCEPTION`).
pub const EXIT_EXCEPTION: u8 = 3;

core::arch::global_asm!(
    r#"
    .macro TRAP_NOERR n
    .p2align 4
trap_stub_\n:
    push 0
    push \n
    jmp trap_common
    .endm

    .macro TRAP_ERR n
    .p2align 4
trap_stub_\n:
    push \n
    jmp trap_common
    .endm

    .section .text.trap, "ax"
    TRAP_NOERR 0
    TRAP_NOERR 1
    TRAP_NOERR 2
    TRAP_NOERR 3
    TRAP_NOERR 4
    TRAP_NOERR 5
    TRAP_NOERR 6
    TRAP_NOERR 7
    TRAP_ERR 8
    TRAP_NOERR 9
    TRAP_ERR 10
    TRAP_ERR 11
    TRAP_ERR 12
    TRAP_ERR 13
    TRAP_ERR 14
    TRAP_NOERR 15
    TRAP_NOERR 16
    TRAP_ERR 17
    TRAP_NOERR 18
    TRAP_NOERR 19
    TRAP_NOERR 20
    TRAP_ERR 21
    TRAP_NOERR 22
    TRAP_NOERR 23
    TRAP_NOERR 24
    TRAP_NOERR 25
    TRAP_NOERR 26
    TRAP_NOERR 27
    TRAP_NOERR 28
    TRAP_ERR 29
    TRAP_ERR 30
    TRAP_NOERR 31

trap_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call {dispatch}
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq

    .section .rodata.trap, "a"
    .p2align 3
    .global trap_stub_table
trap_stub_table:
    .quad trap_stub_0
    .quad trap_stub_1
    .quad trap_stub_2
    .quad trap_stub_3
    .quad trap_stub_4
    .quad trap_stub_5
    .quad trap_stub_6
    .quad trap_stub_7
    .quad trap_stub_8
    .quad trap_stub_9
    .quad trap_stub_10
    .quad trap_stub_11
    .quad trap_stub_12
    .quad trap_stub_13
    .quad trap_stub_14
    .quad trap_stub_15
    .quad trap_stub_16
    .quad trap_stub_17
    .quad trap_stub_18
    .quad trap_stub_19
    .quad trap_stub_20
    .quad trap_stub_21
    .quad trap_stub_22
    .quad trap_stub_23
    .quad trap_stub_24
    .quad trap_stub_25
    .quad trap_stub_26
    .quad trap_stub_27
    .quad trap_stub_28
    .quad trap_stub_29
    .quad trap_stub_30
    .quad trap_stub_31
"#,
    dispatch = sym trap_dispatch,
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
    static trap_stub_table: [u64; 32];
}

#[repr(C, packed)]
struct IdtPtr {
    limit: u16,
    base: u64,
}

pub fn init() {
    gdt::init();
    // Safety: single-threaded boot; the IDT is static.
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
    // Safety: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack)) };
    v
}

/// Why a page fault happened, in words (SDM vol. 3 §4.7 error code bits).
fn page_fault_cause(error: u64, addr: u64) -> &'static str {
    let present = error & 1 != 0;
    let write = error & 2 != 0;
    let fetch = error & 16 != 0;
    if super::mm::guard_page_stack(addr).is_some() {
        return "stack overflow: access to the guard page below a stack";
    }
    if error & 8 != 0 {
        return "reserved bit set in a page table entry";
    }
    match (present, write, fetch) {
        (true, _, true) => "instruction fetch from a no-execute page",
        (false, _, true) => "instruction fetch from an unmapped page",
        (true, true, _) => "write to a read-only page",
        (false, _, _) if addr < PAGE_SIZE => "access to an unmapped page (null pointer)",
        (false, true, _) => "write to an unmapped page",
        (false, false, _) => "read of an unmapped page",
        (true, false, _) => "protection violation on read",
    }
}

static IN_TRAP: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

extern "C" fn trap_dispatch(f: &mut TrapFrame) {
    let mut w = super::console::Writer;
    if IN_TRAP.swap(true, core::sync::atomic::Ordering::SeqCst) {
        let _ = writeln!(
            w,
            "\n*** nested CPU exception, vector {} at rip={:#x}",
            f.vector, f.rip
        );
        super::power::exit(EXIT_EXCEPTION);
    }
    let (name, mnemonic) = NAMES[(f.vector & 31) as usize];
    let _ = writeln!(
        w,
        "\n*** CPU exception: {name} ({mnemonic}), vector {}, error code {:#x}",
        f.vector, f.error
    );
    if f.vector == 14 {
        let cr2 = read_cr2();
        let _ = writeln!(w, "    cause: {}", page_fault_cause(f.error, cr2));
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
        // Safety: both words are mapped (checked just above).
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
    super::power::exit(EXIT_EXCEPTION);
}
