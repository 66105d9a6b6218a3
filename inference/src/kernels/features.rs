//! Decoding CPU feature registers into [`CpuFeatures`]. No std detection macros: the kernel
//! passes in what it read (CPUID / XGETBV on x86_64, ID_AA64*_EL1 on aarch64), and the same
//! pure decoding is unit-tested on the host.

use super::CpuFeatures;

/// Raw x86 CPUID / XCR0 values the decoding needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct X86Cpuid {
    /// CPUID.(EAX=1):ECX
    pub leaf1_ecx: u32,
    /// CPUID.(EAX=7, ECX=0):EBX
    pub leaf7_ebx: u32,
    /// CPUID.(EAX=7, ECX=0):ECX
    pub leaf7_ecx: u32,
    /// CPUID.(EAX=7, ECX=1):EAX
    pub leaf7_1_eax: u32,
    /// XCR0 (XGETBV(0)); 0 when CPUID.1:ECX.OSXSAVE is clear.
    pub xcr0: u64,
}

/// Raw aarch64 ID register values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Aarch64IdRegs {
    pub id_aa64pfr0_el1: u64,
    pub id_aa64isar0_el1: u64,
    pub id_aa64isar1_el1: u64,
}

const fn bit(v: u32, n: u32) -> bool {
    v >> n & 1 == 1
}

impl CpuFeatures {
    /// x86 features usable right now: the CPU must have them (CPUID) and the OS (or our
    /// kernel) must have enabled their register state in XCR0 (SDM vol. 1, 13.3 / 15.2).
    pub fn from_x86_cpuid(c: &X86Cpuid) -> CpuFeatures {
        let osxsave = bit(c.leaf1_ecx, 27);
        // XCR0 bits 1 (SSE) and 2 (AVX YMM_Hi128); 5..=7 opmask, ZMM_Hi256, Hi16_ZMM.
        let ymm = osxsave && c.xcr0 & 0b110 == 0b110;
        let zmm = ymm && c.xcr0 & 0b1110_0000 == 0b1110_0000;
        let avx = ymm && bit(c.leaf1_ecx, 28);
        let avx512f = zmm && bit(c.leaf7_ebx, 16);
        CpuFeatures {
            avx2: avx && bit(c.leaf7_ebx, 5),
            fma: avx && bit(c.leaf1_ecx, 12),
            f16c: avx && bit(c.leaf1_ecx, 29),
            avx512f,
            avx512bw: avx512f && bit(c.leaf7_ebx, 30),
            avx512vl: avx512f && bit(c.leaf7_ebx, 31),
            avx512vnni: avx512f && bit(c.leaf7_ecx, 11),
            avxvnni: avx && bit(c.leaf7_1_eax, 4),
            ..CpuFeatures::default()
        }
    }

    /// aarch64 features from the ID registers (Arm ARM D19.2): AdvSIMD is ID_AA64PFR0_EL1
    /// bits [23:20] (0xf = absent), DotProd ID_AA64ISAR0_EL1 [47:44], I8MM ID_AA64ISAR1_EL1
    /// [55:52].
    pub fn from_aarch64_id_regs(r: &Aarch64IdRegs) -> CpuFeatures {
        let field = |v: u64, lsb: u32| (v >> lsb) & 0xf;
        let neon = field(r.id_aa64pfr0_el1, 20) != 0xf;
        CpuFeatures {
            neon,
            dotprod: neon && field(r.id_aa64isar0_el1, 44) >= 1,
            i8mm: neon && field(r.id_aa64isar1_el1, 52) >= 1,
            ..CpuFeatures::default()
        }
    }
}

/// Reads CPUID / XCR0 on the running CPU (works in ring 0 and ring 3).
#[cfg(target_arch = "x86_64")]
pub fn read_x86_cpuid() -> X86Cpuid {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    #[target_feature(enable = "xsave")]
    unsafe fn xgetbv0() -> u64 {
        core::arch::x86_64::_xgetbv(0)
    }
    // SAFETY: CPUID exists on every x86_64 CPU; XGETBV only runs when CPUID.1:ECX.OSXSAVE says
    // the OS enabled it.
    unsafe {
        let max = __cpuid(0).eax;
        let l1 = __cpuid(1);
        let (l7, l7_1) = if max >= 7 {
            (__cpuid_count(7, 0), __cpuid_count(7, 1))
        } else {
            (__cpuid(0), __cpuid(0))
        };
        let osxsave = bit(l1.ecx, 27);
        X86Cpuid {
            leaf1_ecx: l1.ecx,
            leaf7_ebx: if max >= 7 { l7.ebx } else { 0 },
            leaf7_ecx: if max >= 7 { l7.ecx } else { 0 },
            leaf7_1_eax: if max >= 7 { l7_1.eax } else { 0 },
            xcr0: if osxsave { xgetbv0() } else { 0 },
        }
    }
}

/// Reads the ID registers. Only valid at EL1 (the kernel) or under an OS that emulates these
/// reads for EL0 (Linux does, HWCAP_CPUID).
///
/// # Safety
/// Traps (undefined instruction) at EL0 without OS emulation.
#[cfg(target_arch = "aarch64")]
pub unsafe fn read_aarch64_id_regs() -> Aarch64IdRegs {
    let (pfr0, isar0, isar1): (u64, u64, u64);
    core::arch::asm!(
        "mrs {0}, ID_AA64PFR0_EL1",
        "mrs {1}, ID_AA64ISAR0_EL1",
        "mrs {2}, ID_AA64ISAR1_EL1",
        out(reg) pfr0, out(reg) isar0, out(reg) isar1,
        options(nomem, nostack, preserves_flags)
    );
    Aarch64IdRegs {
        id_aa64pfr0_el1: pfr0,
        id_aa64isar0_el1: isar0,
        id_aa64isar1_el1: isar1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_needs_os_enabled_state() {
        let all = X86Cpuid {
            leaf1_ecx: 1 << 12 | 1 << 27 | 1 << 28 | 1 << 29,
            leaf7_ebx: 1 << 5 | 1 << 16 | 1 << 30 | 1 << 31,
            leaf7_ecx: 1 << 11,
            leaf7_1_eax: 1 << 4,
            xcr0: 0xe7,
        };
        let f = CpuFeatures::from_x86_cpuid(&all);
        assert!(
            f.avx2
                && f.fma
                && f.f16c
                && f.avx512f
                && f.avx512bw
                && f.avx512vl
                && f.avx512vnni
                && f.avxvnni
        );
        // The OS enabled AVX but not the AVX-512 state: no AVX-512.
        let f = CpuFeatures::from_x86_cpuid(&X86Cpuid { xcr0: 0x7, ..all });
        assert!(f.avx2 && !f.avx512f && !f.avx512vnni);
        // No OSXSAVE: nothing that uses YMM state.
        let f = CpuFeatures::from_x86_cpuid(&X86Cpuid {
            leaf1_ecx: all.leaf1_ecx & !(1 << 27),
            ..all
        });
        assert_eq!(f, CpuFeatures::default());
    }

    #[test]
    fn aarch64_fields() {
        let r = Aarch64IdRegs {
            id_aa64pfr0_el1: 0x1 << 20,
            id_aa64isar0_el1: 0x1 << 44,
            id_aa64isar1_el1: 0x1 << 52,
        };
        let f = CpuFeatures::from_aarch64_id_regs(&r);
        assert!(f.neon && f.dotprod && f.i8mm);
        let f = CpuFeatures::from_aarch64_id_regs(&Aarch64IdRegs {
            id_aa64isar1_el1: 0,
            ..r
        });
        assert!(f.neon && f.dotprod && !f.i8mm);
        let f = CpuFeatures::from_aarch64_id_regs(&Aarch64IdRegs {
            id_aa64pfr0_el1: 0xf << 20,
            ..r
        });
        assert_eq!(f, CpuFeatures::default());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_reading_agrees_with_std_detection() {
        let f = CpuFeatures::from_x86_cpuid(&read_x86_cpuid());
        assert_eq!(f, crate::kernels::host_features());
    }
}
