//! What the CPU has and the OS allows, for both architectures: decoded once at boot
//! (`x86_64::cpuid` from CPUID and XCR0, `aarch64::id_aa64` from the ID registers),
//! kept by `cpu::features()`, and passed as it is to the inference engine, whose
//! `KernelVariant::supported` is the one mapping to kernel variants.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    // x86_64
    pub sse2: bool,
    pub sse3: bool,
    pub ssse3: bool,
    pub sse4_1: bool,
    pub sse4_2: bool,
    pub popcnt: bool,
    pub xsave: bool,
    pub avx: bool,
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub bmi2: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vl: bool,
    pub avx512vnni: bool,
    pub avxvnni: bool,
    pub invariant_tsc: bool,
    pub nx: bool,
    pub pdpe1gb: bool,
    /// XCR0 as enabled (x87|SSE|AVX|AVX-512 state), 0 without XSAVE.
    pub xcr0: u64,
    // aarch64
    pub neon: bool,
    pub fp16: bool,
    pub dotprod: bool,
    pub i8mm: bool,
    pub bf16: bool,
    pub sve: bool,
}

impl CpuFeatures {
    /// Names of the SIMD features present, for the boot log.
    pub fn simd_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            (self.sse2, "sse2"),
            (self.sse3, "sse3"),
            (self.ssse3, "ssse3"),
            (self.sse4_1, "sse4.1"),
            (self.sse4_2, "sse4.2"),
            (self.avx, "avx"),
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.f16c, "f16c"),
            (self.avx512f, "avx512f"),
            (self.avx512bw, "avx512bw"),
            (self.avx512vl, "avx512vl"),
            (self.avx512vnni, "avx512vnni"),
            (self.avxvnni, "avxvnni"),
            (self.neon, "neon"),
            (self.fp16, "fp16"),
            (self.dotprod, "dotprod"),
            (self.i8mm, "i8mm"),
            (self.bf16, "bf16"),
            (self.sve, "sve"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_only_present_features() {
        let f = CpuFeatures {
            sse2: true,
            avx2: true,
            dotprod: true,
            ..Default::default()
        };
        let v: Vec<_> = f.simd_names().collect();
        assert_eq!(v, ["sse2", "avx2", "dotprod"]);
    }
}
