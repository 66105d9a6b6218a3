//! CPU feature detection (CPUID) and FP/SIMD state enabling.
//!
//! SSE is switched on by the 32-bit boot code (CR0/CR4), because the compiler
//! may use SSE anywhere in Rust. Here, still before any Rust float code, we
//! enable the XSAVE-managed state the CPU offers: CR4.OSXSAVE, then XCR0 with
//! x87|SSE|AVX and, when AVX-512 is present, opmask|ZMM_Hi256|Hi16_ZMM —
//! masked by what CPUID leaf 0xD says XCR0 supports. Without this, the first
//! AVX instruction would raise #UD.

use super::cpuid::X86Cpuid;
use crate::cpu_features::CpuFeatures;
use crate::spin::WriteOnce;
use core::arch::asm;
use core::arch::x86_64::{__cpuid_count, CpuidResult};

static FEATURES: WriteOnce<CpuFeatures> = WriteOnce::new();

const CR4_OSXSAVE: u64 = 1 << 18;
const EFER: u32 = 0xc000_0080;
const EFER_NXE: u64 = 1 << 11;

/// `ret`: the exec-from-data self-test copies this into a data page and calls it.
pub const RET_INSTRUCTION: &[u8] = &[0xc3];

pub fn cpuid(leaf: u32, sub: u32) -> CpuidResult {
    __cpuid_count(leaf, sub)
}

/// # Safety
/// `msr` must exist on this CPU (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    ((hi as u64) << 32) | lo as u64
}

/// # Safety
/// `msr` must exist and `v` be a valid value for it; MSRs change CPU behaviour.
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the caller guarantees the MSR and value are valid.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack))
    };
}

/// Enable XSAVE-managed state (CR4.OSXSAVE, then XCR0 = `xcr0`) and no-execute pages.
fn enable_state(xcr0: u64, nx: bool) {
    if xcr0 != 0 {
        // SAFETY: `xcr0` comes from `X86Cpuid::xcr0_wanted`: the CPU has XSAVE and
        // supports every bit in it, with x87|SSE always set.
        unsafe {
            let mut cr4: u64;
            asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
            cr4 |= CR4_OSXSAVE;
            asm!("mov cr4, {}", in(reg) cr4, options(nostack));
            asm!("xsetbv", in("ecx") 0, in("eax") xcr0 as u32, in("edx") (xcr0 >> 32) as u32,
                 options(nostack));
        }
    }
    if nx {
        // SAFETY: CPUID reports NX; page tables use the NX bit from now on.
        unsafe { wrmsr(EFER, rdmsr(EFER) | EFER_NXE) };
    }
}

/// Detect features and enable AVX / AVX-512 state and no-execute pages.
/// Called once by the boot path before any float code.
pub fn init() {
    let before = X86Cpuid::read();
    enable_state(before.xcr0_wanted(), before.ext1_edx & (1 << 20) != 0);
    // Read again: CPUID.1:ECX.OSXSAVE and XCR0 now show what was enabled.
    let f = CpuFeatures::from_x86(&X86Cpuid::read());
    // Only fails if called twice; the first detection stays.
    let _ = FEATURES.set(f);
}

/// What this CPU has and the kernel enabled; set by [`init`] before anything else runs.
pub fn features() -> &'static CpuFeatures {
    FEATURES.get().expect("cpu::features() before cpu::init()")
}

pub fn halt() -> ! {
    loop {
        // SAFETY: interrupts off: the CPU stays halted.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// Wait up to `max_ns` with the CPU asleep (`hlt` until the local APIC timer
/// or another interrupt); `true` if it slept, `false` if it could only spin
/// (no usable APIC timer: then it busy-waits the full time). May return early:
/// callers loop on their own condition or deadline.
pub fn idle(max_ns: u64) -> bool {
    if super::apic::sleep(max_ns) {
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
    super::apic::timer_interrupts()
}

/// A raw 64-bit load, for the null-read self-test (no Rust-level null deref).
///
/// # Safety
/// Faults if `addr` is not mapped; that is the point.
pub unsafe fn read_u64(addr: usize) -> u64 {
    let v: u64;
    unsafe {
        asm!("mov {v}, qword ptr [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
    };
    v
}

// ---- SIMD self-test: the same dot product with each vector width present ----

const N: usize = 64;
/// sum_{i<64} (i/2)(64-i) = 21840, exact in f32 whatever the summation order.
const EXPECTED: f32 = 21840.0;

fn inputs() -> ([f32; N], [f32; N]) {
    let mut a = [0f32; N];
    let mut b = [0f32; N];
    for i in 0..N {
        a[i] = core::hint::black_box(i as f32 * 0.5);
        b[i] = core::hint::black_box((N - i) as f32);
    }
    (a, b)
}

fn dot_sse(a: &[f32; N], b: &[f32; N]) -> f32 {
    use core::arch::x86_64::*;
    // SAFETY: SSE is always on (enabled at boot, required by the target).
    unsafe {
        let mut acc = _mm_setzero_ps();
        for i in (0..N).step_by(4) {
            acc = _mm_add_ps(acc, _mm_mul_ps(_mm_loadu_ps(&a[i]), _mm_loadu_ps(&b[i])));
        }
        let mut out = [0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), acc);
        out.iter().sum()
    }
}

/// # Safety
/// The CPU must have AVX and XCR0 must enable its state (`features().avx`).
#[target_feature(enable = "avx")]
unsafe fn dot_avx(a: &[f32; N], b: &[f32; N]) -> f32 {
    use core::arch::x86_64::*;
    let mut acc = _mm256_setzero_ps();
    for i in (0..N).step_by(8) {
        acc = _mm256_add_ps(
            acc,
            _mm256_mul_ps(_mm256_loadu_ps(&a[i]), _mm256_loadu_ps(&b[i])),
        );
    }
    let mut out = [0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), acc);
    out.iter().sum()
}

/// # Safety
/// The CPU must have AVX and FMA with AVX state enabled (`features().fma`).
#[target_feature(enable = "avx,fma")]
unsafe fn dot_fma(a: &[f32; N], b: &[f32; N]) -> f32 {
    use core::arch::x86_64::*;
    let mut acc = _mm256_setzero_ps();
    for i in (0..N).step_by(8) {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(&a[i]), _mm256_loadu_ps(&b[i]), acc);
    }
    let mut out = [0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), acc);
    out.iter().sum()
}

/// # Safety
/// The CPU must have AVX-512F with its state enabled in XCR0 (`features().avx512f`).
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32; N], b: &[f32; N]) -> f32 {
    use core::arch::x86_64::*;
    let mut acc = _mm512_setzero_ps();
    for i in (0..N).step_by(16) {
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(&a[i]), _mm512_loadu_ps(&b[i]), acc);
    }
    _mm512_reduce_add_ps(acc)
}

/// Run the dot product on every SIMD unit present; `Ok` names the units used.
pub fn simd_selftest() -> Result<&'static str, &'static str> {
    let f = features();
    let (a, b) = inputs();
    if dot_sse(&a, &b) != EXPECTED {
        return Err("SSE dot product wrong");
    }
    if !f.avx {
        return Ok("sse");
    }
    // SAFETY: AVX state enabled in XCR0 and CPUID reports AVX.
    if unsafe { dot_avx(&a, &b) } != EXPECTED {
        return Err("AVX dot product wrong");
    }
    if !f.fma {
        return Ok("sse avx");
    }
    // SAFETY: as above, plus CPUID FMA.
    if unsafe { dot_fma(&a, &b) } != EXPECTED {
        return Err("FMA dot product wrong");
    }
    if !f.avx512f {
        return Ok("sse avx fma");
    }
    // SAFETY: AVX-512 state enabled in XCR0 and CPUID reports AVX512F.
    if unsafe { dot_avx512(&a, &b) } != EXPECTED {
        return Err("AVX-512 dot product wrong");
    }
    Ok("sse avx fma avx512f")
}
