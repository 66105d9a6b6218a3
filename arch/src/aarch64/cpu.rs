//! CPU identification (ID_AA64*_EL1, ARM ARM D19.2), FP/SIMD/SVE enabling,
//! and the small CPU helpers the kernel's self-tests need.

use core::arch::asm;

use crate::cpu_features::CpuFeatures;
use crate::spin::WriteOnce;

static FEATURES: WriteOnce<CpuFeatures> = WriteOnce::new();

macro_rules! read_sysreg {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: ID registers are readable at EL1 and have no side effects.
        unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

pub(super) fn init() {
    let f = super::id_aa64::decode(
        read_sysreg!("id_aa64pfr0_el1"),
        read_sysreg!("id_aa64isar0_el1"),
        read_sysreg!("id_aa64isar1_el1"),
    );
    if f.sve {
        // SAFETY: SVE is implemented. CPACR_EL1.ZEN = 0b11 stops SVE
        // instructions from trapping; ZCR_EL1.LEN = max asks for the longest
        // vector the CPU has (QEMU resets it to 128 bits). ZCR_EL1 is written
        // by encoding (S3_0_C1_C2_0) so the assembler needs no +sve.
        unsafe {
            asm!(
                "mrs {t}, cpacr_el1",
                "orr {t}, {t}, #(3 << 16)",
                "msr cpacr_el1, {t}",
                "isb",
                "mov {t}, #0x1ff",
                "msr S3_0_C1_C2_0, {t}",
                "isb",
                t = out(reg) _,
                options(nomem, nostack),
            );
        }
    }
    // Only fails if called twice; the first detection stays.
    let _ = FEATURES.set(f);
}

/// What this CPU has; set by [`init`] at boot, before anything else reads it.
pub fn features() -> &'static CpuFeatures {
    FEATURES.get().expect("cpu::features() before cpu::init()")
}

/// SVE vector length in bytes (16..=256), `None` without SVE. `RDVL x0, #1`
/// is emitted by encoding (0x04bf5020) so the assembler needs no +sve.
pub fn sve_vector_bytes() -> Option<u64> {
    if !features().sve {
        return None;
    }
    let vl: u64;
    // SAFETY: SVE is implemented and enabled (CPACR_EL1.ZEN) by `init`.
    unsafe { asm!(".inst 0x04bf5020", out("x0") vl, options(nomem, nostack)) };
    Some(vl)
}

/// Wait up to `max_ns` with the CPU asleep (`wfi` until the EL1 virtual timer
/// or another interrupt); `true` if it slept, `false` if it could only spin
/// (no GICv2 to deliver the timer: then it busy-waits the full time). May
/// return early: callers loop on their own condition or deadline.
pub fn idle(max_ns: u64) -> bool {
    if super::gic::sleep(max_ns) {
        return true;
    }
    let t0 = super::time::now_ns();
    while super::time::now_ns() - t0 < max_ns {
        core::hint::spin_loop();
    }
    false
}

/// Timer interrupts taken by `idle` so far (evidence that it really slept).
pub fn timer_interrupts() -> u64 {
    super::gic::timer_interrupts()
}

/// Idle forever with interrupts masked.
pub fn halt() -> ! {
    loop {
        // SAFETY: masks interrupts and waits; no memory effects.
        unsafe { asm!("msr daifset, #0xf", "wfi", options(nomem, nostack)) };
    }
}

/// A64 `RET` (0xd65f03c0, little endian), for the execute-from-data test.
pub const RET_INSTRUCTION: &[u8] = &[0xc0, 0x03, 0x5f, 0xd6];

/// A raw 64-bit load through asm (the null-read self-test must not be a Rust
/// null dereference, which would be undefined behaviour).
///
/// # Safety
/// Faults unless `addr` is mapped and readable; that is the point of it.
pub unsafe fn read_u64(addr: usize) -> u64 {
    let v: u64;
    // SAFETY: the caller accepts the fault.
    unsafe { asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly)) };
    v
}

/// NEON f32 FMA dot product and, where present, the integer SDOT used by the
/// quantised kernels, each against a scalar result; `Ok` names the units used.
pub fn simd_selftest() -> Result<&'static str, &'static str> {
    use core::arch::aarch64::*;
    let a: [f32; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let b: [f32; 8] = [0.5, -1.0, 2.0, 0.25, -3.0, 1.5, 0.0, 4.0];
    let scalar: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    // SAFETY: NEON is always present on this target (FPEN was set at entry).
    let neon = unsafe {
        let acc = vfmaq_f32(
            vmulq_f32(vld1q_f32(a.as_ptr()), vld1q_f32(b.as_ptr())),
            vld1q_f32(a.as_ptr().add(4)),
            vld1q_f32(b.as_ptr().add(4)),
        );
        vaddvq_f32(acc)
    };
    if neon != scalar || scalar != 31.5 {
        return Err("NEON f32 dot product mismatch");
    }
    if features().dotprod {
        let x: [i8; 16] = [
            1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -16,
        ];
        let y: [i8; 16] = [127, 127, -128, 3, 2, 1, 0, -1, 5, 5, 5, 5, -7, 7, -7, 7];
        let mut want = [0i32; 4];
        for (i, w) in want.iter_mut().enumerate() {
            *w = (0..4)
                .map(|k| x[4 * i + k] as i32 * y[4 * i + k] as i32)
                .sum();
        }
        let mut got = [0i32; 4];
        // SAFETY: FEAT_DotProd is implemented (ID_AA64ISAR0_EL1.DP). SDOT is
        // emitted by encoding: `sdot v0.4s, v1.16b, v2.16b` = 0x4e829420.
        unsafe {
            let vx = vld1q_s8(x.as_ptr());
            let vy = vld1q_s8(y.as_ptr());
            let acc: int32x4_t;
            asm!(
                "movi v0.4s, #0",
                ".inst 0x4e829420",
                in("v1") vx, in("v2") vy, out("v0") acc,
                options(nomem, nostack, pure),
            );
            vst1q_s32(got.as_mut_ptr(), acc);
        }
        if got != want {
            return Err("SDOT int8 dot product mismatch");
        }
        return Ok("neon, sdot");
    }
    Ok("neon")
}
