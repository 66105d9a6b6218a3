//! CPU feature detection (CPUID) and FP/SIMD state enabling.
//!
//! SSE is switched on by the 32-bit boot code (CR0/CR4), because the compiler
//! may use SSE anywhere in Rust. Here, still before any Rust float code, we
//! enable the XSAVE-managed state the CPU offers: CR4.OSXSAVE, then XCR0 with
//! x87|SSE|AVX and, when AVX-512 is present, opmask|ZMM_Hi256|Hi16_ZMM —
//! masked by what CPUID leaf 0xD says XCR0 supports. Without this, the first
//! AVX instruction would raise #UD.

use crate::cpu_features::CpuFeatures;
use core::arch::asm;
use core::arch::x86_64::{__cpuid_count, CpuidResult};
use core::ptr::addr_of;

static mut FEATURES: CpuFeatures = CpuFeatures {
    sse2: false,
    sse3: false,
    ssse3: false,
    sse4_1: false,
    sse4_2: false,
    popcnt: false,
    xsave: false,
    avx: false,
    avx2: false,
    fma: false,
    f16c: false,
    bmi2: false,
    avx512f: false,
    avx512bw: false,
    avx512vl: false,
    avx512vnni: false,
    avx_vnni: false,
    invariant_tsc: false,
    nx: false,
    pdpe1gb: false,
    xcr0: 0,
    neon: false,
    fp16: false,
    dotprod: false,
    i8mm: false,
    bf16: false,
    sve: false,
};

const XCR0_X87: u64 = 1 << 0;
const XCR0_SSE: u64 = 1 << 1;
const XCR0_AVX: u64 = 1 << 2;
const XCR0_AVX512: u64 = (1 << 5) | (1 << 6) | (1 << 7);
const CR4_OSXSAVE: u64 = 1 << 18;
const EFER: u32 = 0xc000_0080;
const EFER_NXE: u64 = 1 << 11;

/// `ret`: the exec-from-data self-test copies this into a data page and calls it.
pub const RET_INSTRUCTION: &[u8] = &[0xc3];

pub fn cpuid(leaf: u32, sub: u32) -> CpuidResult {
    __cpuid_count(leaf, sub)
}

fn bit(r: u32, n: u32) -> bool {
    r & (1 << n) != 0
}

/// # Safety
/// `msr` must exist on this CPU (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    ((hi as u64) << 32) | lo as u64
}

/// # Safety
/// `msr` must exist and `v` be a valid value for it; MSRs change CPU behaviour.
pub unsafe fn wrmsr(msr: u32, v: u64) {
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack))
    };
}

/// Detect features and enable AVX / AVX-512 state and no-execute pages.
/// Called once by the boot path before any float code.
pub fn init() {
    let max = cpuid(0, 0).eax;
    let max_ext = cpuid(0x8000_0000, 0).eax;
    let l1 = cpuid(1, 0);
    let l7 = if max >= 7 {
        cpuid(7, 0)
    } else {
        CpuidResult {
            eax: 0,
            ebx: 0,
            ecx: 0,
            edx: 0,
        }
    };
    let l7_1 = if max >= 7 && l7.eax >= 1 {
        cpuid(7, 1).eax
    } else {
        0
    };
    let e1 = if max_ext >= 0x8000_0001 {
        cpuid(0x8000_0001, 0).edx
    } else {
        0
    };
    let e7 = if max_ext >= 0x8000_0007 {
        cpuid(0x8000_0007, 0).edx
    } else {
        0
    };

    let mut f = CpuFeatures {
        sse2: bit(l1.edx, 26),
        sse3: bit(l1.ecx, 0),
        ssse3: bit(l1.ecx, 9),
        sse4_1: bit(l1.ecx, 19),
        sse4_2: bit(l1.ecx, 20),
        popcnt: bit(l1.ecx, 23),
        xsave: bit(l1.ecx, 26),
        bmi2: bit(l7.ebx, 8),
        nx: bit(e1, 20),
        pdpe1gb: bit(e1, 26),
        invariant_tsc: bit(e7, 8),
        ..CpuFeatures::default()
    };

    if f.xsave && max >= 0xd {
        let d = cpuid(0xd, 0);
        let supported = ((d.edx as u64) << 32) | d.eax as u64;
        let mut want = XCR0_X87 | XCR0_SSE;
        if bit(l1.ecx, 28) {
            want |= XCR0_AVX;
        }
        if bit(l7.ebx, 16) {
            want |= XCR0_AVX512;
        }
        let xcr0 = want & supported;
        // Safety: OSXSAVE is supported (CPUID.1:ECX.XSAVE) and xcr0 only has
        // bits CPUID.0xD reports as supported, with x87|SSE always set.
        unsafe {
            let mut cr4: u64;
            asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
            cr4 |= CR4_OSXSAVE;
            asm!("mov cr4, {}", in(reg) cr4, options(nostack));
            asm!("xsetbv", in("ecx") 0, in("eax") xcr0 as u32, in("edx") (xcr0 >> 32) as u32,
                 options(nostack));
        }
        f.xcr0 = xcr0;
    }
    let avx_state = f.xcr0 & (XCR0_SSE | XCR0_AVX) == XCR0_SSE | XCR0_AVX;
    let avx512_state = avx_state && f.xcr0 & XCR0_AVX512 == XCR0_AVX512;
    f.avx = avx_state && bit(l1.ecx, 28);
    f.fma = f.avx && bit(l1.ecx, 12);
    f.f16c = f.avx && bit(l1.ecx, 29);
    f.avx2 = f.avx && bit(l7.ebx, 5);
    f.avx_vnni = f.avx2 && bit(l7_1, 4);
    f.avx512f = avx512_state && bit(l7.ebx, 16);
    f.avx512bw = f.avx512f && bit(l7.ebx, 30);
    f.avx512vl = f.avx512f && bit(l7.ebx, 31);
    f.avx512vnni = f.avx512f && bit(l7.ecx, 11);

    if f.nx {
        // Safety: NX is supported; page tables built later use the NX bit.
        unsafe { wrmsr(EFER, rdmsr(EFER) | EFER_NXE) };
    }
    // Safety: single-threaded boot, before anyone reads FEATURES.
    unsafe { FEATURES = f };
}

pub fn features() -> &'static CpuFeatures {
    // Safety: written once in `init` before the kernel runs, then read-only.
    unsafe { &*addr_of!(FEATURES) }
}

pub fn halt() -> ! {
    loop {
        // Safety: interrupts off: the CPU stays halted.
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
    // Safety: SSE is always on (enabled at boot, required by the target).
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
    // Safety: AVX state enabled in XCR0 and CPUID reports AVX.
    if unsafe { dot_avx(&a, &b) } != EXPECTED {
        return Err("AVX dot product wrong");
    }
    if !f.fma {
        return Ok("sse avx");
    }
    // Safety: as above, plus CPUID FMA.
    if unsafe { dot_fma(&a, &b) } != EXPECTED {
        return Err("FMA dot product wrong");
    }
    if !f.avx512f {
        return Ok("sse avx fma");
    }
    // Safety: AVX-512 state enabled in XCR0 and CPUID reports AVX512F.
    if unsafe { dot_avx512(&a, &b) } != EXPECTED {
        return Err("AVX-512 dot product wrong");
    }
    Ok("sse avx fma avx512f")
}
