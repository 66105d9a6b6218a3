//! Entry from the boot loader (QEMU's built-in arm64 Linux loader) and the
//! hand-over to the kernel.
//!
//! The loader jumps to the first byte of the Image at EL1 with the MMU off,
//! x0 = physical address of the DTB, x1..x3 = 0 (Linux `booting.rst`).
//! The asm below, before any Rust:
//! 1. reads CNTVCT (boot-time origin) and keeps x0; drops from EL2 to EL1
//!    if entered at EL2 (`-M virt,virtualization=on`);
//! 2. enables FP/SIMD (CPACR_EL1.FPEN = 0b11): the target's Rust code uses NEON;
//! 3. zeroes .bss;
//! 4. builds a boot identity map of 1 GiB blocks (0–1 GiB Device-nGnRE for
//!    MMIO, 1–4 GiB Normal write-back for RAM) and turns the MMU and caches on,
//!    because with the MMU off every access is Device memory (unaligned
//!    accesses fault, exclusives are not guaranteed);
//! 5. puts the exception stack in SP_EL1 and the boot stack in SP_EL0 and runs
//!    the kernel on SP_EL0 (SPSel = 0): an overflow into the boot stack's
//!    guard page then still has a good stack for the exception report.
//!
//! `rust_entry` then installs the vectors, reads the FDT into the `BootInfo`,
//! builds the final page tables (mm.rs) and calls `kernel_main`.

use core::arch::global_asm;

use crate::bootinfo::BootInfo;
use crate::fdt::Fdt;

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    // Linux arm64 Image header (Documentation/arch/arm64/booting.rst).
    b       primary_entry           // code0
    .long   0                       // code1
    .quad   0x80000                 // text_offset: QEMU loads us at RAM + 0x80000
    .quad   __image_size            // image_size incl. bss and stacks (must be != 0
                                    // or QEMU ignores text_offset)
    // flags: bit 0 = 0 little endian, bits 1-2 = 1 4 KiB pages, bit 3 = 0:
    // we are linked at a fixed address, so ask to stay near the base of RAM.
    .quad   0x2
    .quad   0, 0, 0                 // res2..res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5 (no PE/COFF header)

primary_entry:
    mrs     x19, cntvct_el0         // boot-time origin (second instruction)
    mov     x20, x0                 // DTB

    // Only CPU 0 boots (QEMU keeps secondaries off until PSCI CPU_ON).
    mrs     x1, mpidr_el1
    and     x1, x1, #0xffffff
    cbnz    x1, 9f
    // We run at EL1; QEMU virt enters at EL1, or at EL2 with virtualization=on.
    mrs     x1, CurrentEL
    cmp     x1, #(2 << 2)
    b.eq    3f
    cmp     x1, #(1 << 2)
    b.ne    9f                      // EL3 (secure=on): not supported, park
    b       4f
3:  // EL2 -> EL1: EL1 is AArch64 (HCR_EL2.RW), counters and FP/SIMD not
    // trapped (CNTHCTL_EL2.EL1PCTEN|EL1PCEN, CPTR_EL2 with TFP = TZ = 0),
    // virtual counter offset 0, EL1 sees the real MIDR/MPIDR, SCTLR_EL1 in a
    // known state (RES1 bits, MMU off), then ERET to EL1h with DAIF masked.
    mov     x1, #(1 << 31)
    msr     hcr_el2, x1
    mov     x1, #3
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr
    mov     x1, #0x32ff             // RES1 bits; TZ (bit 8) = 0: SVE not trapped
    msr     cptr_el2, x1
    isb
    mrs     x1, id_aa64pfr0_el1
    ubfx    x1, x1, #32, #4
    cbz     x1, 5f
    mov     x1, #0x1ff              // ZCR_EL2.LEN = max: EL1 may use full SVE width
    msr     S3_4_C1_C2_0, x1
5:
    mrs     x1, midr_el1
    msr     vpidr_el2, x1
    mrs     x1, mpidr_el1
    msr     vmpidr_el2, x1
    ldr     x1, ={sctlr_el1_res1}
    msr     sctlr_el1, x1
    mov     x1, #0x3c5
    msr     spsr_el2, x1
    adr     x1, 4f
    msr     elr_el2, x1
    isb
    eret
4:

    // FP/SIMD on: CPACR_EL1.FPEN (bits 21:20) = 0b11.
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb

    // Zero .bss (MMU off: plain aligned stores only).
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1], #8
    b       1b
2:
    // Boot identity map: L0[0] -> L1; L1 entries are 1 GiB blocks.
    adrp    x1, {boot_l0}
    adrp    x2, {boot_l1}
    orr     x3, x2, #3              // table descriptor
    str     x3, [x1]
    ldr     x3, ={dev_block}        // 0-1 GiB: Device-nGnRE, XN
    str     x3, [x2]
    ldr     x3, ={ram_block}        // 1-4 GiB: Normal WB, inner shareable
    str     x3, [x2, #8]
    mov     x4, #(1 << 30)
    add     x3, x3, x4
    str     x3, [x2, #16]
    add     x3, x3, x4
    str     x3, [x2, #24]

    ldr     x3, ={mair}
    msr     mair_el1, x3
    // TCR: T0SZ = 16 (48-bit VA), table walks non-cacheable (the tables were
    // written with the MMU off, so no cache maintenance is needed), 4 KiB
    // granule, TTBR1 walks off (EPD1), IPS = PARange (at most 48 bits).
    mrs     x3, id_aa64mmfr0_el1
    and     x3, x3, #0xf
    cmp     x3, #5
    mov     x4, #5
    csel    x3, x4, x3, hi
    ldr     x4, ={tcr_boot}
    orr     x4, x4, x3, lsl #32
    msr     tcr_el1, x4
    msr     ttbr0_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    // SCTLR_EL1: M (MMU), C (data cache), I (instruction cache), SA (SP
    // alignment check); A (alignment check) off.
    mrs     x3, sctlr_el1
    ldr     x4, ={sctlr_set}
    orr     x3, x3, x4
    bic     x3, x3, #(1 << 1)
    msr     sctlr_el1, x3
    isb

    // Exception stack in SP_EL1 (current SP, SPSel = 1), kernel stack in SP_EL0.
    adrp    x1, __exception_stack_top
    add     x1, x1, :lo12:__exception_stack_top
    mov     sp, x1
    adrp    x1, __boot_stack_top
    add     x1, x1, :lo12:__boot_stack_top
    msr     sp_el0, x1
    msr     spsel, #0
    mov     x29, xzr                // end of the frame-pointer chain
    mov     x30, xzr
    mov     x0, x20
    mov     x1, x19
    bl      {rust_entry}
9:  wfe
    b       9b
    .ltorg
    "#,
    boot_l0 = sym BOOT_L0,
    boot_l1 = sym BOOT_L1,
    rust_entry = sym rust_entry,
    dev_block = const crate::aarch64::mm::BOOT_DEVICE_BLOCK,
    ram_block = const crate::aarch64::mm::BOOT_RAM_BLOCK,
    mair = const crate::aarch64::mm::MAIR,
    tcr_boot = const crate::aarch64::mm::TCR_BOOT,
    sctlr_set = const (1u64 << 0) | (1 << 2) | (1 << 3) | (1 << 12),
    // SCTLR_EL1 bits 11, 20, 22, 23, 28, 29 are RES1 in ARMv8.0.
    sctlr_el1_res1 = const 0x30d0_0800u64,
);

#[repr(C, align(4096))]
struct BootTable([u64; 512]);

static mut BOOT_L0: BootTable = BootTable([0; 512]);
static mut BOOT_L1: BootTable = BootTable([0; 512]);

static mut BOOT_INFO: BootInfo = BootInfo::new("aarch64 Linux Image (QEMU virt)");

extern "Rust" {
    fn kernel_main(info: &'static BootInfo) -> !;
}

/// Rust side of the boot: runs once, on the boot stack, MMU on (boot map).
///
/// # Safety
/// Only the entry asm above calls it, once, on the boot CPU, with `dtb` as the loader
/// passed it in x0 and `boot_ticks` the counter read at the first instruction.
unsafe extern "C" fn rust_entry(dtb: u64, boot_ticks: u64) -> ! {
    super::time::init(boot_ticks);
    super::trap::init();
    super::cpu::init();
    super::power::init();

    // SAFETY: single CPU, nothing else references BOOT_INFO before kernel_main.
    let info = unsafe { &mut *core::ptr::addr_of_mut!(BOOT_INFO) };
    // SAFETY: the loader passes a DTB inside RAM, which the boot map covers.
    let fdt = match unsafe { Fdt::from_ptr(dtb as *const u8) } {
        Ok(f) => f,
        Err(e) => {
            super::console::early_panic(format_args!("no usable device tree at {dtb:#x}: {e}"));
        }
    };
    if let Some(base) = fdt.pl011_base() {
        super::console::init(base);
    }
    fill_boot_info(info, &fdt, dtb);
    super::mm::init(info);
    super::gic::init(&fdt);
    super::power::init_psci(&fdt);

    // SAFETY: provided by the kernel binary with exactly this signature.
    unsafe { kernel_main(info) }
}

/// The kernel image's extent, then the FDT's memory map and command line.
fn fill_boot_info(info: &mut BootInfo, fdt: &Fdt<'_>, dtb: u64) {
    let (start, end) = super::mm::image_extent();
    info.kernel_start = start;
    info.kernel_end = end;
    crate::fdt_bootinfo::fill_from_fdt(info, fdt, dtb);
}
