//! Minimal cooperative tasks: each has its own stack from `arch::mm::alloc_stack`
//! (guard page below, canary at the bottom). The boot context is the scheduler:
//! [`run`] switches to each runnable task in turn, [`yield_now`] switches back.
//! The canary of a task is checked whenever it switches out and when it exits;
//! a smashed canary stops the kernel with a report.

use crate::exit_code;
use alloc::boxed::Box;
use alloc::vec::Vec;
use arch::spin::SpinLock;
use arch::stack::Stack;
use arch::task::{switch, Context};

/// Default stack: 64 KiB including the guard page.
pub const DEFAULT_STACK_PAGES: u64 = 16;

struct Task {
    name: &'static str,
    ctx: Context,
    stack: Stack,
    body: Option<Box<dyn FnOnce() + Send>>,
    finished: bool,
}

struct Scheduler {
    // Boxed: a task's Context must not move while the task is switched out.
    #[allow(clippy::vec_box)]
    tasks: Vec<Box<Task>>,
    current: Option<usize>,
    boot_ctx: Context,
}

static SCHED: SpinLock<Scheduler> = SpinLock::new(Scheduler {
    tasks: Vec::new(),
    current: None,
    boot_ctx: Context::empty(),
});

#[derive(Debug)]
pub enum SpawnError {
    NoStackMemory,
}

pub fn spawn(
    name: &'static str,
    stack_pages: u64,
    body: impl FnOnce() + Send + 'static,
) -> Result<(), SpawnError> {
    let stack = arch::mm::alloc_stack(stack_pages).ok_or(SpawnError::NoStackMemory)?;
    // SAFETY: the stack was just mapped for us.
    unsafe { stack.plant_canary() };
    let mut task = Box::new(Task {
        name,
        ctx: Context::empty(),
        stack,
        body: Some(Box::new(body)),
        finished: false,
    });
    let arg = &*task as *const Task as usize;
    task.ctx = Context::new(stack.top, task_entry, arg);
    SCHED.lock().tasks.push(task);
    Ok(())
}

/// Run all spawned tasks until every one has finished; frees their stacks.
/// Call from the boot context only.
pub fn run() {
    let mut next = 0;
    loop {
        let (from, to) = {
            let mut s = SCHED.lock();
            if s.tasks.iter().all(|t| t.finished) {
                for t in s.tasks.drain(..) {
                    arch::mm::free_stack(t.stack);
                }
                return;
            }
            let n = s.tasks.len();
            let i = (next..next + n)
                .map(|i| i % n)
                .find(|&i| !s.tasks[i].finished)
                .unwrap();
            next = i + 1;
            s.current = Some(i);
            let to = &s.tasks[i].ctx as *const Context;
            (&mut s.boot_ctx as *mut Context, to)
        };
        // SAFETY: both contexts live in the static scheduler / boxed tasks,
        // which are not freed while switched to.
        unsafe { switch(from, to) };
        SCHED.lock().current = None;
    }
}

/// Give the CPU back to the scheduler; returns when this task is next picked.
pub fn yield_now() {
    let (from, to) = {
        let mut s = SCHED.lock();
        let Some(i) = s.current else { return };
        check_canary(&s.tasks[i]);
        let from = &mut s.tasks[i].ctx as *mut Context;
        (from, &s.boot_ctx as *const Context)
    };
    // SAFETY: see `run`.
    unsafe { switch(from, to) };
}

/// The running task's stack, `None` in the boot context.
pub fn current_stack() -> Option<Stack> {
    let s = SCHED.lock();
    s.current.map(|i| s.tasks[i].stack)
}

fn check_canary(t: &Task) {
    // SAFETY: the stack stays mapped until the task is freed.
    if !unsafe { t.stack.canary_intact() } {
        log::error!(
            "stack canary of task '{}' smashed (stack {:#x}-{:#x})",
            t.name,
            t.stack.bottom,
            t.stack.top
        );
        arch::power::exit(exit_code::STACK_CANARY);
    }
}

extern "C" fn task_entry(arg: usize) -> ! {
    // SAFETY: `arg` is the boxed Task set up by `spawn`; it outlives the task.
    let task = unsafe { &mut *(arg as *mut Task) };
    if let Some(body) = task.body.take() {
        body();
    }
    let (from, to) = {
        let s = SCHED.lock();
        check_canary(task);
        task.finished = true;
        let from = &mut task.ctx as *mut Context;
        (from, &s.boot_ctx as *const Context)
    };
    // SAFETY: see `run`. A finished task is never switched to again.
    unsafe { switch(from, to) };
    unreachable!("finished task resumed");
}
