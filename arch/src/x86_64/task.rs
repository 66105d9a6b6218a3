//! Context switch for cooperative kernel tasks: callee-saved registers go on
//! the old stack, the stack pointer into its `Context`, then the new one is
//! loaded. Caller-saved state (including SSE registers, all caller-saved in
//! the SysV ABI) is already spilled by the compiler around the call.

#[repr(C)]
#[derive(Debug)]
pub struct Context {
    rsp: u64,
}

core::arch::global_asm!(
    r#"
    .section .text.switch, "ax"
    .global arch_context_switch
arch_context_switch:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov [rdi], rsp
    mov rsp, [rsi]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    /* First run of a task: r12 = argument, r13 = entry (see Context::new). */
    .global arch_task_start
arch_task_start:
    mov rdi, r12
    xor ebp, ebp
    call r13
    ud2
"#
);

extern "C" {
    fn arch_context_switch(from: *mut Context, to: *const Context);
    fn arch_task_start();
}

impl Context {
    pub const fn empty() -> Self {
        Self { rsp: 0 }
    }

    /// A context that starts `entry(arg)` on the stack ending at `stack_top`.
    pub fn new(stack_top: u64, entry: extern "C" fn(usize) -> !, arg: usize) -> Self {
        let top = stack_top & !0xf;
        // Layout popped by arch_context_switch: r15 r14 r13 r12 rbx rbp, ret.
        // The return slot sits at top - 24, so after `ret` rsp = top - 16 is
        // 16-byte aligned at the `call r13` in arch_task_start (SysV ABI).
        let frame: [u64; 7] = [
            0,
            0,
            entry as *const () as u64,
            arg as u64,
            0,
            0,
            arch_task_start as *const () as u64,
        ];
        let base = top - 24 - 6 * 8;
        // SAFETY: the caller hands us a fresh, mapped stack.
        unsafe {
            core::ptr::copy_nonoverlapping(frame.as_ptr(), base as *mut u64, 7);
        }
        Self { rsp: base }
    }
}

/// Save the current context into `from` and continue in `to`.
///
/// # Safety
/// `to` must hold a context saved by `switch` or made by `Context::new`, whose
/// stack is still mapped; `from` must stay valid until switched back to.
pub unsafe fn switch(from: *mut Context, to: *const Context) {
    unsafe { arch_context_switch(from, to) }
}
