//! CPU features of the machine a host program runs on (feature `std`: tests, benchmarks, the
//! host tools). On x86_64 this is the kernel's own path: `arch`'s CPUID/XCR0 reader and decoder
//! (`arch::x86_64::cpuid`, whose tests check it against std's detection), so host and guest
//! pick kernels the same way. On aarch64 the ID registers are EL1-only; std's detection reads
//! the HWCAPs Linux derives from them.

use super::CpuFeatures;

pub fn host_features() -> CpuFeatures {
    #[cfg(target_arch = "x86_64")]
    {
        CpuFeatures::from_x86(&arch::x86_64::cpuid::X86Cpuid::read())
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        CpuFeatures {
            neon: has!("neon"),
            fp16: has!("fp16"),
            dotprod: has!("dotprod"),
            i8mm: has!("i8mm"),
            bf16: has!("bf16"),
            sve: has!("sve"),
            ..CpuFeatures::default()
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    CpuFeatures::default()
}
