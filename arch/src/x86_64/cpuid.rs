//! CPUID and XCR0 → [`CpuFeatures`]: the one decoding of "what this x86 CPU has and what
//! the OS has enabled". Portable: the kernel runs it at boot (after enabling the XSAVE
//! state it wants), host programs run it on the CPUID of the machine they run on, and the
//! host tests feed it register values.
//!
//! A SIMD feature counts only if the CPU has it (CPUID) *and* its register state is
//! enabled in XCR0 (Intel SDM vol. 1, 13.3 and 15.2): AVX needs XCR0 SSE|AVX (bits 1-2),
//! AVX-512 also opmask|ZMM_Hi256|Hi16_ZMM (bits 5-7). Without that the first instruction
//! raises #UD.

use crate::cpu_features::CpuFeatures;

pub const XCR0_X87: u64 = 1 << 0;
pub const XCR0_SSE: u64 = 1 << 1;
pub const XCR0_AVX: u64 = 1 << 2;
pub const XCR0_AVX512: u64 = (1 << 5) | (1 << 6) | (1 << 7);

/// The raw CPUID words (and XCR0) the decoding needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct X86Cpuid {
    /// CPUID.0:EAX, the highest basic leaf.
    pub max_leaf: u32,
    /// CPUID.1:ECX / EDX.
    pub leaf1_ecx: u32,
    pub leaf1_edx: u32,
    /// CPUID.(7,0):EBX / ECX and CPUID.(7,1):EAX; 0 when leaf 7 is absent.
    pub leaf7_ebx: u32,
    pub leaf7_ecx: u32,
    pub leaf7_1_eax: u32,
    /// XCR0 bits the CPU supports: CPUID.(0xD,0):EDX:EAX; 0 when leaf 0xD is absent.
    pub xcr0_supported: u64,
    /// CPUID.0x80000001:EDX and CPUID.0x80000007:EDX; 0 when absent.
    pub ext1_edx: u32,
    pub ext7_edx: u32,
    /// XCR0 as XGETBV(0) reads it; 0 when CR4.OSXSAVE is off (CPUID.1:ECX bit 27).
    pub xcr0: u64,
}

const fn bit(v: u32, n: u32) -> bool {
    v >> n & 1 == 1
}

impl X86Cpuid {
    /// Reads CPUID (and XCR0 when the OS enabled XSAVE) on the running CPU; works in
    /// ring 0 and in ring 3.
    #[cfg(target_arch = "x86_64")]
    pub fn read() -> X86Cpuid {
        use core::arch::x86_64::__cpuid_count as cpuid;
        let max_leaf = cpuid(0, 0).eax;
        let max_ext = cpuid(0x8000_0000, 0).eax;
        let l1 = cpuid(1, 0);
        let (l7, l7_1) = if max_leaf >= 7 {
            let l7 = cpuid(7, 0);
            let sub1 = if l7.eax >= 1 { cpuid(7, 1).eax } else { 0 };
            (l7, sub1)
        } else {
            (cpuid(0, 0), 0)
        };
        let xcr0_supported = if max_leaf >= 0xd {
            let d = cpuid(0xd, 0);
            (d.edx as u64) << 32 | d.eax as u64
        } else {
            0
        };
        let ext = |leaf: u32| {
            if max_ext >= leaf {
                cpuid(leaf, 0).edx
            } else {
                0
            }
        };
        X86Cpuid {
            max_leaf,
            leaf1_ecx: l1.ecx,
            leaf1_edx: l1.edx,
            leaf7_ebx: if max_leaf >= 7 { l7.ebx } else { 0 },
            leaf7_ecx: if max_leaf >= 7 { l7.ecx } else { 0 },
            leaf7_1_eax: l7_1,
            xcr0_supported,
            ext1_edx: ext(0x8000_0001),
            ext7_edx: ext(0x8000_0007),
            xcr0: if bit(l1.ecx, 27) { xgetbv0() } else { 0 },
        }
    }

    /// The XCR0 an OS should enable: x87|SSE, plus AVX and AVX-512 state when the CPU has
    /// those instructions, masked by what the CPU supports in XCR0. 0 without XSAVE
    /// (CPUID.1:ECX bit 26) or leaf 0xD: then XCR0 cannot be written.
    pub fn xcr0_wanted(&self) -> u64 {
        if !bit(self.leaf1_ecx, 26) || self.max_leaf < 0xd {
            return 0;
        }
        let mut want = XCR0_X87 | XCR0_SSE;
        if bit(self.leaf1_ecx, 28) {
            want |= XCR0_AVX;
        }
        if bit(self.leaf7_ebx, 16) {
            want |= XCR0_AVX512;
        }
        want & self.xcr0_supported
    }
}

/// XGETBV(0); only valid when CR4.OSXSAVE is set.
#[cfg(target_arch = "x86_64")]
fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: called only when CPUID.1:ECX.OSXSAVE says CR4.OSXSAVE is set, so XGETBV is
    // enabled; it reads a register and has no other effect.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi,
                         options(nomem, nostack, preserves_flags))
    };
    (hi as u64) << 32 | lo as u64
}

impl CpuFeatures {
    /// The features CPUID reports and the enabled XCR0 allows.
    pub fn from_x86(c: &X86Cpuid) -> CpuFeatures {
        let osxsave = bit(c.leaf1_ecx, 27);
        let xcr0 = if osxsave { c.xcr0 } else { 0 };
        let ymm = xcr0 & (XCR0_SSE | XCR0_AVX) == XCR0_SSE | XCR0_AVX;
        let zmm = ymm && xcr0 & XCR0_AVX512 == XCR0_AVX512;
        let avx = ymm && bit(c.leaf1_ecx, 28);
        let avx2 = avx && bit(c.leaf7_ebx, 5);
        let avx512f = zmm && bit(c.leaf7_ebx, 16);
        CpuFeatures {
            sse2: bit(c.leaf1_edx, 26),
            sse3: bit(c.leaf1_ecx, 0),
            ssse3: bit(c.leaf1_ecx, 9),
            sse4_1: bit(c.leaf1_ecx, 19),
            sse4_2: bit(c.leaf1_ecx, 20),
            popcnt: bit(c.leaf1_ecx, 23),
            xsave: bit(c.leaf1_ecx, 26),
            bmi2: bit(c.leaf7_ebx, 8),
            nx: bit(c.ext1_edx, 20),
            pdpe1gb: bit(c.ext1_edx, 26),
            invariant_tsc: bit(c.ext7_edx, 8),
            xcr0,
            avx,
            fma: avx && bit(c.leaf1_ecx, 12),
            f16c: avx && bit(c.leaf1_ecx, 29),
            avx2,
            avxvnni: avx && bit(c.leaf7_1_eax, 4),
            avx512f,
            avx512bw: avx512f && bit(c.leaf7_ebx, 30),
            avx512vl: avx512f && bit(c.leaf7_ebx, 31),
            avx512vnni: avx512f && bit(c.leaf7_ecx, 11),
            ..CpuFeatures::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU with everything, OS state for everything enabled.
    fn all() -> X86Cpuid {
        X86Cpuid {
            max_leaf: 0xd,
            leaf1_ecx: 1 << 12 | 1 << 26 | 1 << 27 | 1 << 28 | 1 << 29,
            leaf1_edx: 1 << 26,
            leaf7_ebx: 1 << 5 | 1 << 16 | 1 << 30 | 1 << 31,
            leaf7_ecx: 1 << 11,
            leaf7_1_eax: 1 << 4,
            xcr0_supported: 0xe7,
            ext1_edx: 1 << 20,
            ext7_edx: 1 << 8,
            xcr0: 0xe7,
        }
    }

    #[test]
    fn everything_enabled() {
        let f = CpuFeatures::from_x86(&all());
        assert!(f.avx && f.avx2 && f.fma && f.f16c && f.avxvnni);
        assert!(f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni);
        assert!(f.sse2 && f.xsave && f.nx && f.invariant_tsc);
        assert_eq!(f.xcr0, 0xe7);
    }

    #[test]
    fn simd_needs_os_enabled_state() {
        // The OS enabled AVX but not the AVX-512 state: no AVX-512.
        let f = CpuFeatures::from_x86(&X86Cpuid { xcr0: 0x7, ..all() });
        assert!(f.avx2 && !f.avx512f && !f.avx512vnni);
        // No OSXSAVE: nothing that uses YMM state, whatever XCR0 would say.
        let f = CpuFeatures::from_x86(&X86Cpuid {
            leaf1_ecx: all().leaf1_ecx & !(1 << 27),
            ..all()
        });
        assert!(!f.avx && !f.avx2 && !f.fma && !f.avx512f && f.xcr0 == 0);
        assert!(f.sse2 && f.nx, "non-SIMD features do not depend on XCR0");
    }

    #[test]
    fn xcr0_wanted_follows_cpuid() {
        assert_eq!(all().xcr0_wanted(), 0xe7);
        // TCG `-cpu max`: AVX, no AVX-512; CPUID.0xD offers x87|SSE|AVX.
        let tcg = X86Cpuid {
            leaf7_ebx: 1 << 5,
            xcr0_supported: 0x7,
            ..all()
        };
        assert_eq!(tcg.xcr0_wanted(), 0x7);
        // The CPU supports AVX-512 state but has no AVX-512F: not enabled.
        assert_eq!(
            X86Cpuid {
                leaf7_ebx: 1 << 5,
                ..all()
            }
            .xcr0_wanted(),
            0x7
        );
        // No XSAVE, or no leaf 0xD: XCR0 cannot be written.
        let no_xsave = X86Cpuid {
            leaf1_ecx: all().leaf1_ecx & !(1 << 26),
            ..all()
        };
        assert_eq!(no_xsave.xcr0_wanted(), 0);
        assert_eq!(
            X86Cpuid {
                max_leaf: 7,
                ..all()
            }
            .xcr0_wanted(),
            0
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn agrees_with_std_detection_on_this_host() {
        use std::arch::is_x86_feature_detected as has;
        let f = CpuFeatures::from_x86(&X86Cpuid::read());
        let pairs = [
            (f.sse2, has!("sse2"), "sse2"),
            (f.sse4_2, has!("sse4.2"), "sse4.2"),
            (f.avx, has!("avx"), "avx"),
            (f.avx2, has!("avx2"), "avx2"),
            (f.fma, has!("fma"), "fma"),
            (f.f16c, has!("f16c"), "f16c"),
            (f.bmi2, has!("bmi2"), "bmi2"),
            (f.avx512f, has!("avx512f"), "avx512f"),
            (f.avx512bw, has!("avx512bw"), "avx512bw"),
            (f.avx512vl, has!("avx512vl"), "avx512vl"),
            (f.avx512vnni, has!("avx512vnni"), "avx512vnni"),
            (f.avxvnni, has!("avxvnni"), "avxvnni"),
        ];
        for (ours, std, name) in pairs {
            assert_eq!(ours, std, "{name}: decoded {ours}, std detects {std}");
        }
    }
}
