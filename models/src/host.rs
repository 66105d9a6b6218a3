//! Host-side glue for running the engine: a clock, and the CPU feature set for kernel choice.

use std::sync::OnceLock;
use std::time::Instant;

use inference::kernels::CpuFeatures;

/// Monotonic nanoseconds since the first call (the engine takes the clock as `fn() -> u64`).
pub fn clock_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// CPU features of this host, detected with std (the engine itself never detects; it takes
/// the feature set as a parameter).
pub fn host_features() -> CpuFeatures {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as x86;
        CpuFeatures {
            avx2: x86!("avx2"),
            fma: x86!("fma"),
            f16c: x86!("f16c"),
            avx512f: x86!("avx512f"),
            avx512bw: x86!("avx512bw"),
            avx512vl: x86!("avx512vl"),
            avx512vnni: x86!("avx512vnni"),
            avxvnni: x86!("avxvnni"),
            ..CpuFeatures::default()
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as arm;
        CpuFeatures {
            neon: arm!("neon"),
            dotprod: arm!("dotprod"),
            i8mm: arm!("i8mm"),
            ..CpuFeatures::default()
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        CpuFeatures::default()
    }
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
