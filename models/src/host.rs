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
