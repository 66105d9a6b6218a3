//! Kernel task contexts and the switch between them (AAPCS64: x19-x28,
//! the frame pointer x29, the link register x30, SP and d8-d15 are callee
//! saved; everything else the caller of `switch` has already saved).

use core::arch::global_asm;

/// Saved callee-saved state of a task that is not running.
#[repr(C)]
#[derive(Debug)]
pub struct Context {
    x19_x28: [u64; 10],
    fp: u64,
    lr: u64,
    sp: u64,
    d8_d15: [u64; 8],
    _pad: u64,
}

const _: () = assert!(core::mem::size_of::<Context>() == 176);

global_asm!(
    r#"
    .section .text.mk_context_switch, "ax"
    .global mk_context_switch
mk_context_switch:                  // x0 = from, x1 = to
    stp     x19, x20, [x0, #0]
    stp     x21, x22, [x0, #16]
    stp     x23, x24, [x0, #32]
    stp     x25, x26, [x0, #48]
    stp     x27, x28, [x0, #64]
    stp     x29, x30, [x0, #80]
    mov     x2, sp
    str     x2, [x0, #96]
    stp     d8, d9, [x0, #104]
    stp     d10, d11, [x0, #120]
    stp     d12, d13, [x0, #136]
    stp     d14, d15, [x0, #152]
    ldp     x19, x20, [x1, #0]
    ldp     x21, x22, [x1, #16]
    ldp     x23, x24, [x1, #32]
    ldp     x25, x26, [x1, #48]
    ldp     x27, x28, [x1, #64]
    ldp     x29, x30, [x1, #80]
    ldr     x2, [x1, #96]
    mov     sp, x2
    ldp     d8, d9, [x1, #104]
    ldp     d10, d11, [x1, #120]
    ldp     d12, d13, [x1, #136]
    ldp     d14, d15, [x1, #152]
    ret

    // First run of a new task: x19 = entry, x20 = argument.
    .global mk_task_trampoline
mk_task_trampoline:
    mov     x0, x20
    mov     x29, xzr                // end of the frame-pointer chain
    mov     x30, xzr
    br      x19
    "#
);

extern "C" {
    fn mk_context_switch(from: *mut Context, to: *const Context);
    fn mk_task_trampoline();
}

impl Context {
    /// A context to save into (the boot context before its first switch).
    pub const fn empty() -> Self {
        Context {
            x19_x28: [0; 10],
            fp: 0,
            lr: 0,
            sp: 0,
            d8_d15: [0; 8],
            _pad: 0,
        }
    }

    /// A context that starts `entry(arg)` on a stack whose top is `stack_top`.
    pub fn new(stack_top: u64, entry: extern "C" fn(usize) -> !, arg: usize) -> Self {
        let mut c = Context::empty();
        c.x19_x28[0] = entry as *const () as u64;
        c.x19_x28[1] = arg as u64;
        c.lr = mk_task_trampoline as *const () as u64;
        c.sp = stack_top & !15; // AAPCS64: SP 16-byte aligned
        c
    }
}

/// Save the running task's state into `from` and resume `to`.
///
/// # Safety
/// `to` must be a context from [`Context::new`] or an earlier `switch`, whose
/// stack is still alive; `from` must be valid for writes.
pub unsafe fn switch(from: *mut Context, to: *const Context) {
    // SAFETY: per the caller's contract.
    unsafe { mk_context_switch(from, to) }
}
