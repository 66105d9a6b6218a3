//! Host-side glue for running the engine: a clock, and the CPU feature set for kernel choice.

use std::sync::OnceLock;
use std::time::Instant;

use inference::kernels::CpuFeatures;

/// Monotonic nanoseconds since the first call (the engine takes the clock as `fn() -> u64`).
pub fn clock_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// CPU features of this host, detected with std (the engine itself never detects).
pub fn host_features() -> CpuFeatures {
    #[allow(unused_mut)]
    let mut f = CpuFeatures::default();
    #[cfg(target_arch = "x86_64")]
    {
        f.avx2 = std::arch::is_x86_feature_detected!("avx2");
    }
    f
}

/// Executor over std threads: each `run` spreads tasks over `threads` scoped threads (the
/// caller is one of them). Simple rather than fast: threads are spawned per call.
pub struct ScopedThreads {
    pub threads: usize,
}

impl inference::exec::Executor for ScopedThreads {
    fn workers(&self) -> usize {
        self.threads.max(1)
    }

    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= tasks {
                break;
            }
            f(i);
        };
        std::thread::scope(|s| {
            for _ in 1..self.workers().min(tasks) {
                s.spawn(work);
            }
            work();
        });
    }
}
