//! Exception handling: IDT with the 32 CPU exception vectors, a readable
//! report (name, error code decoded, CR2, registers, frame-pointer backtrace)
//! and power-off with a failure code. Vectors 32-255 (interrupts) go to
//! `apic::interrupt` and return with `iretq`.

use super::gdt;
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
    TRAP_NOERR 32
    TRAP_NOERR 33
    TRAP_NOERR 34
    TRAP_NOERR 35
    TRAP_NOERR 36
    TRAP_NOERR 37
    TRAP_NOERR 38
    TRAP_NOERR 39
    TRAP_NOERR 40
    TRAP_NOERR 41
    TRAP_NOERR 42
    TRAP_NOERR 43
    TRAP_NOERR 44
    TRAP_NOERR 45
    TRAP_NOERR 46
    TRAP_NOERR 47
    TRAP_NOERR 48
    TRAP_NOERR 49
    TRAP_NOERR 50
    TRAP_NOERR 51
    TRAP_NOERR 52
    TRAP_NOERR 53
    TRAP_NOERR 54
    TRAP_NOERR 55
    TRAP_NOERR 56
    TRAP_NOERR 57
    TRAP_NOERR 58
    TRAP_NOERR 59
    TRAP_NOERR 60
    TRAP_NOERR 61
    TRAP_NOERR 62
    TRAP_NOERR 63
    TRAP_NOERR 64
    TRAP_NOERR 65
    TRAP_NOERR 66
    TRAP_NOERR 67
    TRAP_NOERR 68
    TRAP_NOERR 69
    TRAP_NOERR 70
    TRAP_NOERR 71
    TRAP_NOERR 72
    TRAP_NOERR 73
    TRAP_NOERR 74
    TRAP_NOERR 75
    TRAP_NOERR 76
    TRAP_NOERR 77
    TRAP_NOERR 78
    TRAP_NOERR 79
    TRAP_NOERR 80
    TRAP_NOERR 81
    TRAP_NOERR 82
    TRAP_NOERR 83
    TRAP_NOERR 84
    TRAP_NOERR 85
    TRAP_NOERR 86
    TRAP_NOERR 87
    TRAP_NOERR 88
    TRAP_NOERR 89
    TRAP_NOERR 90
    TRAP_NOERR 91
    TRAP_NOERR 92
    TRAP_NOERR 93
    TRAP_NOERR 94
    TRAP_NOERR 95
    TRAP_NOERR 96
    TRAP_NOERR 97
    TRAP_NOERR 98
    TRAP_NOERR 99
    TRAP_NOERR 100
    TRAP_NOERR 101
    TRAP_NOERR 102
    TRAP_NOERR 103
    TRAP_NOERR 104
    TRAP_NOERR 105
    TRAP_NOERR 106
    TRAP_NOERR 107
    TRAP_NOERR 108
    TRAP_NOERR 109
    TRAP_NOERR 110
    TRAP_NOERR 111
    TRAP_NOERR 112
    TRAP_NOERR 113
    TRAP_NOERR 114
    TRAP_NOERR 115
    TRAP_NOERR 116
    TRAP_NOERR 117
    TRAP_NOERR 118
    TRAP_NOERR 119
    TRAP_NOERR 120
    TRAP_NOERR 121
    TRAP_NOERR 122
    TRAP_NOERR 123
    TRAP_NOERR 124
    TRAP_NOERR 125
    TRAP_NOERR 126
    TRAP_NOERR 127
    TRAP_NOERR 128
    TRAP_NOERR 129
    TRAP_NOERR 130
    TRAP_NOERR 131
    TRAP_NOERR 132
    TRAP_NOERR 133
    TRAP_NOERR 134
    TRAP_NOERR 135
    TRAP_NOERR 136
    TRAP_NOERR 137
    TRAP_NOERR 138
    TRAP_NOERR 139
    TRAP_NOERR 140
    TRAP_NOERR 141
    TRAP_NOERR 142
    TRAP_NOERR 143
    TRAP_NOERR 144
    TRAP_NOERR 145
    TRAP_NOERR 146
    TRAP_NOERR 147
    TRAP_NOERR 148
    TRAP_NOERR 149
    TRAP_NOERR 150
    TRAP_NOERR 151
    TRAP_NOERR 152
    TRAP_NOERR 153
    TRAP_NOERR 154
    TRAP_NOERR 155
    TRAP_NOERR 156
    TRAP_NOERR 157
    TRAP_NOERR 158
    TRAP_NOERR 159
    TRAP_NOERR 160
    TRAP_NOERR 161
    TRAP_NOERR 162
    TRAP_NOERR 163
    TRAP_NOERR 164
    TRAP_NOERR 165
    TRAP_NOERR 166
    TRAP_NOERR 167
    TRAP_NOERR 168
    TRAP_NOERR 169
    TRAP_NOERR 170
    TRAP_NOERR 171
    TRAP_NOERR 172
    TRAP_NOERR 173
    TRAP_NOERR 174
    TRAP_NOERR 175
    TRAP_NOERR 176
    TRAP_NOERR 177
    TRAP_NOERR 178
    TRAP_NOERR 179
    TRAP_NOERR 180
    TRAP_NOERR 181
    TRAP_NOERR 182
    TRAP_NOERR 183
    TRAP_NOERR 184
    TRAP_NOERR 185
    TRAP_NOERR 186
    TRAP_NOERR 187
    TRAP_NOERR 188
    TRAP_NOERR 189
    TRAP_NOERR 190
    TRAP_NOERR 191
    TRAP_NOERR 192
    TRAP_NOERR 193
    TRAP_NOERR 194
    TRAP_NOERR 195
    TRAP_NOERR 196
    TRAP_NOERR 197
    TRAP_NOERR 198
    TRAP_NOERR 199
    TRAP_NOERR 200
    TRAP_NOERR 201
    TRAP_NOERR 202
    TRAP_NOERR 203
    TRAP_NOERR 204
    TRAP_NOERR 205
    TRAP_NOERR 206
    TRAP_NOERR 207
    TRAP_NOERR 208
    TRAP_NOERR 209
    TRAP_NOERR 210
    TRAP_NOERR 211
    TRAP_NOERR 212
    TRAP_NOERR 213
    TRAP_NOERR 214
    TRAP_NOERR 215
    TRAP_NOERR 216
    TRAP_NOERR 217
    TRAP_NOERR 218
    TRAP_NOERR 219
    TRAP_NOERR 220
    TRAP_NOERR 221
    TRAP_NOERR 222
    TRAP_NOERR 223
    TRAP_NOERR 224
    TRAP_NOERR 225
    TRAP_NOERR 226
    TRAP_NOERR 227
    TRAP_NOERR 228
    TRAP_NOERR 229
    TRAP_NOERR 230
    TRAP_NOERR 231
    TRAP_NOERR 232
    TRAP_NOERR 233
    TRAP_NOERR 234
    TRAP_NOERR 235
    TRAP_NOERR 236
    TRAP_NOERR 237
    TRAP_NOERR 238
    TRAP_NOERR 239
    TRAP_NOERR 240
    TRAP_NOERR 241
    TRAP_NOERR 242
    TRAP_NOERR 243
    TRAP_NOERR 244
    TRAP_NOERR 245
    TRAP_NOERR 246
    TRAP_NOERR 247
    TRAP_NOERR 248
    TRAP_NOERR 249
    TRAP_NOERR 250
    TRAP_NOERR 251
    TRAP_NOERR 252
    TRAP_NOERR 253
    TRAP_NOERR 254
    TRAP_NOERR 255

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
    .quad trap_stub_32
    .quad trap_stub_33
    .quad trap_stub_34
    .quad trap_stub_35
    .quad trap_stub_36
    .quad trap_stub_37
    .quad trap_stub_38
    .quad trap_stub_39
    .quad trap_stub_40
    .quad trap_stub_41
    .quad trap_stub_42
    .quad trap_stub_43
    .quad trap_stub_44
    .quad trap_stub_45
    .quad trap_stub_46
    .quad trap_stub_47
    .quad trap_stub_48
    .quad trap_stub_49
    .quad trap_stub_50
    .quad trap_stub_51
    .quad trap_stub_52
    .quad trap_stub_53
    .quad trap_stub_54
    .quad trap_stub_55
    .quad trap_stub_56
    .quad trap_stub_57
    .quad trap_stub_58
    .quad trap_stub_59
    .quad trap_stub_60
    .quad trap_stub_61
    .quad trap_stub_62
    .quad trap_stub_63
    .quad trap_stub_64
    .quad trap_stub_65
    .quad trap_stub_66
    .quad trap_stub_67
    .quad trap_stub_68
    .quad trap_stub_69
    .quad trap_stub_70
    .quad trap_stub_71
    .quad trap_stub_72
    .quad trap_stub_73
    .quad trap_stub_74
    .quad trap_stub_75
    .quad trap_stub_76
    .quad trap_stub_77
    .quad trap_stub_78
    .quad trap_stub_79
    .quad trap_stub_80
    .quad trap_stub_81
    .quad trap_stub_82
    .quad trap_stub_83
    .quad trap_stub_84
    .quad trap_stub_85
    .quad trap_stub_86
    .quad trap_stub_87
    .quad trap_stub_88
    .quad trap_stub_89
    .quad trap_stub_90
    .quad trap_stub_91
    .quad trap_stub_92
    .quad trap_stub_93
    .quad trap_stub_94
    .quad trap_stub_95
    .quad trap_stub_96
    .quad trap_stub_97
    .quad trap_stub_98
    .quad trap_stub_99
    .quad trap_stub_100
    .quad trap_stub_101
    .quad trap_stub_102
    .quad trap_stub_103
    .quad trap_stub_104
    .quad trap_stub_105
    .quad trap_stub_106
    .quad trap_stub_107
    .quad trap_stub_108
    .quad trap_stub_109
    .quad trap_stub_110
    .quad trap_stub_111
    .quad trap_stub_112
    .quad trap_stub_113
    .quad trap_stub_114
    .quad trap_stub_115
    .quad trap_stub_116
    .quad trap_stub_117
    .quad trap_stub_118
    .quad trap_stub_119
    .quad trap_stub_120
    .quad trap_stub_121
    .quad trap_stub_122
    .quad trap_stub_123
    .quad trap_stub_124
    .quad trap_stub_125
    .quad trap_stub_126
    .quad trap_stub_127
    .quad trap_stub_128
    .quad trap_stub_129
    .quad trap_stub_130
    .quad trap_stub_131
    .quad trap_stub_132
    .quad trap_stub_133
    .quad trap_stub_134
    .quad trap_stub_135
    .quad trap_stub_136
    .quad trap_stub_137
    .quad trap_stub_138
    .quad trap_stub_139
    .quad trap_stub_140
    .quad trap_stub_141
    .quad trap_stub_142
    .quad trap_stub_143
    .quad trap_stub_144
    .quad trap_stub_145
    .quad trap_stub_146
    .quad trap_stub_147
    .quad trap_stub_148
    .quad trap_stub_149
    .quad trap_stub_150
    .quad trap_stub_151
    .quad trap_stub_152
    .quad trap_stub_153
    .quad trap_stub_154
    .quad trap_stub_155
    .quad trap_stub_156
    .quad trap_stub_157
    .quad trap_stub_158
    .quad trap_stub_159
    .quad trap_stub_160
    .quad trap_stub_161
    .quad trap_stub_162
    .quad trap_stub_163
    .quad trap_stub_164
    .quad trap_stub_165
    .quad trap_stub_166
    .quad trap_stub_167
    .quad trap_stub_168
    .quad trap_stub_169
    .quad trap_stub_170
    .quad trap_stub_171
    .quad trap_stub_172
    .quad trap_stub_173
    .quad trap_stub_174
    .quad trap_stub_175
    .quad trap_stub_176
    .quad trap_stub_177
    .quad trap_stub_178
    .quad trap_stub_179
    .quad trap_stub_180
    .quad trap_stub_181
    .quad trap_stub_182
    .quad trap_stub_183
    .quad trap_stub_184
    .quad trap_stub_185
    .quad trap_stub_186
    .quad trap_stub_187
    .quad trap_stub_188
    .quad trap_stub_189
    .quad trap_stub_190
    .quad trap_stub_191
    .quad trap_stub_192
    .quad trap_stub_193
    .quad trap_stub_194
    .quad trap_stub_195
    .quad trap_stub_196
    .quad trap_stub_197
    .quad trap_stub_198
    .quad trap_stub_199
    .quad trap_stub_200
    .quad trap_stub_201
    .quad trap_stub_202
    .quad trap_stub_203
    .quad trap_stub_204
    .quad trap_stub_205
    .quad trap_stub_206
    .quad trap_stub_207
    .quad trap_stub_208
    .quad trap_stub_209
    .quad trap_stub_210
    .quad trap_stub_211
    .quad trap_stub_212
    .quad trap_stub_213
    .quad trap_stub_214
    .quad trap_stub_215
    .quad trap_stub_216
    .quad trap_stub_217
    .quad trap_stub_218
    .quad trap_stub_219
    .quad trap_stub_220
    .quad trap_stub_221
    .quad trap_stub_222
    .quad trap_stub_223
    .quad trap_stub_224
    .quad trap_stub_225
    .quad trap_stub_226
    .quad trap_stub_227
    .quad trap_stub_228
    .quad trap_stub_229
    .quad trap_stub_230
    .quad trap_stub_231
    .quad trap_stub_232
    .quad trap_stub_233
    .quad trap_stub_234
    .quad trap_stub_235
    .quad trap_stub_236
    .quad trap_stub_237
    .quad trap_stub_238
    .quad trap_stub_239
    .quad trap_stub_240
    .quad trap_stub_241
    .quad trap_stub_242
    .quad trap_stub_243
    .quad trap_stub_244
    .quad trap_stub_245
    .quad trap_stub_246
    .quad trap_stub_247
    .quad trap_stub_248
    .quad trap_stub_249
    .quad trap_stub_250
    .quad trap_stub_251
    .quad trap_stub_252
    .quad trap_stub_253
    .quad trap_stub_254
    .quad trap_stub_255
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
    static trap_stub_table: [u64; 256];
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
        let in_guard = super::mm::guard_page_stack(cr2).is_some();
        let _ = writeln!(
            w,
            "    cause: {}",
            crate::x86_fault::page_fault_cause(f.error, cr2, in_guard)
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
