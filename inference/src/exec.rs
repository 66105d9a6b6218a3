//! Work splitting for the matmuls: the crate takes an executor as a parameter so the same code
//! runs on std threads on the host and on the kernel's own CPUs later.

/// Runs `tasks` independent tasks, possibly in parallel.
pub trait Executor: Sync {
    /// Number of workers that can run tasks at the same time (>= 1).
    fn workers(&self) -> usize;
    /// Calls `f(i)` once for every `i in 0..tasks` and returns when all calls have returned.
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync));
}

/// Runs every task on the caller, in order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inline;

impl Executor for Inline {
    fn workers(&self) -> usize {
        1
    }

    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        for i in 0..tasks {
            f(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn inline_runs_each_task_once() {
        let sum = AtomicUsize::new(0);
        let count = AtomicUsize::new(0);
        Inline.run(10, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.into_inner(), 10);
        assert_eq!(sum.into_inner(), 45);
        assert_eq!(Inline.workers(), 1);
    }
}
