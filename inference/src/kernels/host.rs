//! CPU features of the machine a host program runs on, detected with std's macros (feature
//! `std`: tests, benchmarks, the host tools). The engine itself never detects: the kernel passes
//! what it decoded from CPUID/XCR0 or the ID registers (`features.rs`), and a test checks that
//! this std detection and that decoding agree on the host.

use super::CpuFeatures;

pub fn host_features() -> CpuFeatures {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        CpuFeatures {
            avx2: has!("avx2"),
            fma: has!("fma"),
            f16c: has!("f16c"),
            avx512f: has!("avx512f"),
            avx512bw: has!("avx512bw"),
            avx512vl: has!("avx512vl"),
            avx512vnni: has!("avx512vnni"),
            avxvnni: has!("avxvnni"),
            ..CpuFeatures::default()
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        CpuFeatures {
            neon: has!("neon"),
            dotprod: has!("dotprod"),
            i8mm: has!("i8mm"),
            ..CpuFeatures::default()
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    CpuFeatures::default()
}
