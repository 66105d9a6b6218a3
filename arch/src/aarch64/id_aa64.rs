//! Decoding of the aarch64 ID registers into [`CpuFeatures`] (portable, so
//! the host tests can check it against register values read on QEMU CPUs).
//!
//! Fields (ARM ARM D19.2): ID_AA64PFR0_EL1 FP [19:16] and AdvSIMD [23:20]
//! (0 = present, 1 = present with half precision, 0xf = absent), SVE [35:32];
//! ID_AA64ISAR0_EL1 DP [47:44] (SDOT/UDOT); ID_AA64ISAR1_EL1 BF16 [47:44],
//! I8MM [55:52] (SMMLA/UMMLA/USDOT).

use crate::cpu_features::CpuFeatures;

fn field(reg: u64, lsb: u32) -> u64 {
    (reg >> lsb) & 0xf
}

pub fn decode(pfr0: u64, isar0: u64, isar1: u64) -> CpuFeatures {
    let fp = field(pfr0, 16);
    let simd = field(pfr0, 20);
    CpuFeatures {
        neon: simd != 0xf,
        fp16: fp == 1 && simd == 1,
        sve: field(pfr0, 32) != 0,
        dotprod: field(isar0, 44) >= 1,
        i8mm: field(isar1, 52) >= 1,
        bf16: field(isar1, 44) >= 1,
        ..CpuFeatures::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(f: CpuFeatures) -> Vec<&'static str> {
        f.simd_names().collect()
    }

    // Register values read at EL1 on QEMU 7.2 `-M virt -cpu <name>`.
    #[test]
    fn qemu_cpus() {
        let max = decode(0x1201001120110022, 0x1221111110212120, 0x11111101211012);
        assert_eq!(
            names(max),
            ["neon", "fp16", "dotprod", "i8mm", "bf16", "sve"]
        );
        let a72 = decode(0x22, 0x11120, 0x0);
        assert_eq!(names(a72), ["neon"]);
        let n1 = decode(0x1100000010110012, 0x100010211120, 0x100001);
        assert_eq!(names(n1), ["neon", "fp16", "dotprod"]);
        let a64fx = decode(0x101110011, 0x10211120, 0x10001);
        assert_eq!(names(a64fx), ["neon", "fp16", "sve"]);
    }

    #[test]
    fn no_fp_no_simd() {
        let f = decode(0xff << 16, 0, 0);
        assert!(!f.neon && !f.fp16);
    }
}
