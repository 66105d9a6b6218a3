//! PVH entry: QEMU (`-kernel`, q35 with qboot or microvm) finds
//! `XEN_ELFNOTE_PHYS32_ENTRY` (type 18, an 8-byte address) through the PT_NOTE
//! header and jumps to `pvh_start` in 32-bit protected mode, paging off, with
//! `ebx` = physical address of `hvm_start_info`.
//!
//! 32-bit part: read the TSC (the "first instruction" time stamp), zero .bss,
//! identity-map the first 4 GiB with 2 MiB pages, enable PAE + SSE
//! (CR4.OSFXSR|OSXMMEXCPT, CR0.MP, CR0.EM=0), long mode, paging with
//! write-protect, load a 64-bit GDT and far-jump. 64-bit part: segments, stack,
//! then Rust: console, CPU features (XCR0 for AVX/AVX-512 before any Rust
//! float code runs), traps, clock, boot info, own page tables, `kernel_main`.

use crate::bootinfo::BootInfo;
use core::ptr::addr_of_mut;

/// Boot stack, with an unmapped guard page below it.
pub const BOOT_STACK_SIZE: usize = 128 * 1024;

core::arch::global_asm!(
    r#"
    .section .note.Xen, "a"
    .p2align 2
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .p2align 2
    .quad pvh_start

    .section .data.boot, "aw"
    .p2align 3
    .global boot_tsc
boot_tsc: .quad 0
pvh_start_info: .quad 0

    .section .rodata.boot, "a"
    .p2align 3
early_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
early_gdt_end:
early_gdt_ptr:
    .word early_gdt_end - early_gdt - 1
    .quad early_gdt

    .section .bss.boot, "aw", @nobits
    .p2align 12
early_pml4: .skip 4096
early_pdpt: .skip 4096
early_pd: .skip 4096 * 4
    .global boot_stack_guard
boot_stack_guard: .skip 4096
    .global boot_stack_bottom
boot_stack_bottom: .skip {stack_size}
    .global boot_stack_top
boot_stack_top:

    .section .text.boot, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    cld
    rdtsc
    mov esi, eax
    mov ebp, edx
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    xor eax, eax
    rep stosb
    mov dword ptr [boot_tsc], esi
    mov dword ptr [boot_tsc + 4], ebp
    mov dword ptr [pvh_start_info], ebx
    mov esp, offset boot_stack_top

    mov eax, offset early_pdpt
    or eax, 3
    mov dword ptr [early_pml4], eax
    mov edi, offset early_pdpt
    mov eax, offset early_pd
    or eax, 3
    mov ecx, 4
.Lpdpt_loop:
    mov dword ptr [edi], eax
    add eax, 4096
    add edi, 8
    dec ecx
    jnz .Lpdpt_loop
    mov edi, offset early_pd
    mov eax, 0x83
    xor edx, edx
    mov ecx, 2048
.Lpd_loop:
    mov dword ptr [edi], eax
    mov dword ptr [edi + 4], edx
    add eax, 0x200000
    adc edx, 0
    add edi, 8
    dec ecx
    jnz .Lpd_loop

    mov eax, cr4
    or eax, (1 << 5) | (1 << 9) | (1 << 10)
    mov cr4, eax
    mov eax, offset early_pml4
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 1 << 8
    wrmsr
    mov eax, cr0
    and eax, ~((1 << 2) | (1 << 3))
    or eax, (1 << 31) | (1 << 16) | (1 << 5) | (1 << 1) | 1
    mov cr0, eax
    lgdt [early_gdt_ptr]
    .byte 0xea
    .long .Llong_mode
    .word 0x08

    .code64
.Llong_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, offset boot_stack_top
    xor ebp, ebp
    mov edi, dword ptr [pvh_start_info]
    call {entry}
    ud2
"#,
    stack_size = const BOOT_STACK_SIZE,
    entry = sym x86_64_start,
);

static mut BOOT_INFO: BootInfo = BootInfo::new("x86_64 PVH");

extern "Rust" {
    fn kernel_main(info: &'static BootInfo) -> !;
}

extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// Read physical memory for the PVH parser: only below 4 GiB (the early map)
/// and never page 0.
fn read_phys(phys: u64, buf: &mut [u8]) -> bool {
    let Some(end) = phys.checked_add(buf.len() as u64) else {
        return false;
    };
    if phys < 0x1000 || end > 1 << 32 {
        return false;
    }
    // SAFETY: identity-mapped by the early page tables.
    unsafe { core::ptr::copy_nonoverlapping(phys as *const u8, buf.as_mut_ptr(), buf.len()) };
    true
}

extern "C" fn x86_64_start(start_info: u32) -> ! {
    use core::fmt::Write;
    super::console::init();
    super::cpu::init();
    super::trap::init();
    super::time::start_calibration();

    // SAFETY: written only here, before anything else can see it.
    let info = unsafe { &mut *addr_of_mut!(BOOT_INFO) };
    if let Err(e) = super::pvh::parse(start_info as u64, &mut read_phys, info) {
        let _ = writeln!(
            super::console::Writer,
            "boot: bad hvm_start_info at {start_info:#x}: {e:?}"
        );
        super::power::exit(crate::exit_code::EXCEPTION);
    }
    // SAFETY: linker symbols; only their addresses are used.
    unsafe {
        info.kernel_start = &__kernel_start as *const u8 as u64;
        info.kernel_end = &__kernel_end as *const u8 as u64;
    }
    super::mm::init(info);
    super::time::finish_calibration();
    super::apic::init();
    let info: &'static BootInfo = info;
    // SAFETY: provided by the kernel binary with exactly this signature.
    unsafe { kernel_main(info) }
}
