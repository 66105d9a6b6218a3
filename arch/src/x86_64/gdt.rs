//! The runtime GDT: 64-bit code/data and a TSS whose interrupt stack table
//! gives #DF, #PF, NMI and #MC their own stacks — so a stack overflow into a
//! guard page can still be reported instead of escalating to a triple fault.

use core::arch::asm;
use core::ptr::{addr_of, addr_of_mut};

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
const TSS_SEL: u16 = 0x18;

pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_PAGE_FAULT: u8 = 2;
pub const IST_NMI: u8 = 3;
pub const IST_MACHINE_CHECK: u8 = 4;
const IST_STACK_SIZE: usize = 16 * 1024;
const IST_COUNT: usize = 4;
const PAGE: usize = 4096;

#[repr(C, packed(4))]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

/// Each IST stack sits above its own guard page (unmapped by `mm::init`).
#[repr(C, align(4096))]
struct IstStacks([[u8; PAGE + IST_STACK_SIZE]; IST_COUNT]);

static mut IST_STACKS: IstStacks = IstStacks([[0; PAGE + IST_STACK_SIZE]; IST_COUNT]);
static mut TSS: Tss = Tss {
    _reserved0: 0,
    rsp: [0; 3],
    _reserved1: 0,
    ist: [0; 7],
    _reserved2: 0,
    _reserved3: 0,
    iomap_base: core::mem::size_of::<Tss>() as u16,
};
static mut GDT: [u64; 5] = [
    0,
    0x00af_9a00_0000_ffff, // 64-bit code, DPL 0
    0x00cf_9200_0000_ffff, // data, DPL 0
    0,                     // TSS low (filled in init)
    0,                     // TSS high
];

#[repr(C, packed)]
struct DescriptorPtr {
    limit: u16,
    base: u64,
}

/// IST stack `index` (1-based, as in the IDT), with its guard page.
pub fn ist_stack(index: u8) -> crate::stack::Stack {
    // SAFETY: only the address is taken.
    let base = unsafe { addr_of!(IST_STACKS.0) as *const u8 as u64 };
    let guard = base + (index as u64 - 1) * (PAGE + IST_STACK_SIZE) as u64;
    crate::stack::Stack {
        bottom: guard + PAGE as u64,
        top: guard + (PAGE + IST_STACK_SIZE) as u64,
        guard: Some(guard),
    }
}

pub fn ist_stacks() -> impl Iterator<Item = crate::stack::Stack> {
    (1..=IST_COUNT as u8).map(ist_stack)
}

pub fn init() {
    // SAFETY: single-threaded boot; the GDT and TSS are static and live forever.
    unsafe {
        let tss = &mut *addr_of_mut!(TSS);
        for i in 1..=IST_COUNT as u8 {
            tss.ist[i as usize - 1] = ist_stack(i).top;
        }
        let base = addr_of!(TSS) as u64;
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        let gdt = &mut *addr_of_mut!(GDT);
        gdt[3] = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x89 << 40) // present, 64-bit TSS (available)
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        gdt[4] = base >> 32;
        let ptr = DescriptorPtr {
            limit: (5 * 8 - 1) as u16,
            base: addr_of!(GDT) as u64,
        };
        asm!(
            "lgdt [{ptr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            cs = const KERNEL_CS as u64,
            tmp = out(reg) _,
            ds = in(reg) KERNEL_DS as u64,
            tss = in(reg) TSS_SEL as u64,
        );
    }
}
