//! Boot self-tests, selected with `selftest=<name>` on the command line.
//!
//! A normal boot (`selftest` absent or `all`) runs every non-faulting test and
//! exits 0 only if all pass. The faulting tests each provoke one exception
//! that the trap handler must report and turn into a failure exit code; if the
//! fault does not happen, the test itself reports failure.

use crate::{exit_code, logger, task};
use alloc::boxed::Box;
use alloc::vec::Vec;
use arch::frame_alloc::PAGE_SIZE;
use arch::spin::SpinLock;
use arch::BootInfo;
use core::hint::black_box;
use core::sync::atomic::{AtomicPtr, Ordering};

/// The boot info, for tests that need the memory map.
static BOOT_INFO: AtomicPtr<BootInfo> = AtomicPtr::new(core::ptr::null_mut());

pub fn set_boot_info(info: &'static BootInfo) {
    BOOT_INFO.store(info as *const BootInfo as *mut BootInfo, Ordering::Relaxed);
}

fn boot_info() -> Option<&'static BootInfo> {
    // SAFETY: only ever set from a &'static BootInfo.
    unsafe { BOOT_INFO.load(Ordering::Relaxed).as_ref() }
}

type TestFn = fn() -> Result<(), &'static str>;

const NON_FAULTING: &[(&str, TestFn)] = &[
    ("frames", frames),
    ("heap", heap),
    ("clock", clock),
    ("float", float),
    ("simd", simd),
    ("log-ring", log_ring),
    ("tasks", tasks),
    ("paging", paging),
    ("idle", idle),
];

/// Tests that must not return: (name, what should happen, test).
const FAULTING: &[(&str, &str, fn())] = &[
    (
        "write-text",
        "a page fault: write to a read-only page",
        write_text,
    ),
    (
        "exec-data",
        "a page fault: instruction fetch from a no-execute page",
        exec_data,
    ),
    ("null-read", "a page fault: null pointer", null_read),
    (
        "stack-overflow",
        "a page fault in a stack guard page",
        stack_overflow,
    ),
    (
        "big-frame",
        "a page fault in a stack guard page (stack probe)",
        big_frame,
    ),
    ("canary", "the canary check to stop the kernel", canary),
    ("panic", "a panic report", panic),
    ("hang", "no end: the host must time out", hang),
];

pub fn run_all() -> u8 {
    let mut failed = 0;
    for (name, f) in NON_FAULTING {
        failed += !run_logged(name, *f) as usize;
    }
    log::info!(
        "selftests done: {} ok, {} failed",
        NON_FAULTING.len() - failed,
        failed
    );
    if failed == 0 {
        exit_code::SUCCESS
    } else {
        exit_code::SELFTEST_FAILED
    }
}

pub fn run_one(name: &str) -> u8 {
    if let Some((n, f)) = NON_FAULTING.iter().find(|(n, _)| *n == name) {
        return if run_logged(n, *f) {
            exit_code::SUCCESS
        } else {
            exit_code::SELFTEST_FAILED
        };
    }
    if let Some((n, expect, f)) = FAULTING.iter().find(|(n, _, _)| *n == name) {
        log::info!("selftest {n}: expecting {expect}");
        f();
        log::error!("selftest {n}: FAILED: the expected fault did not happen");
        return exit_code::SELFTEST_FAILED;
    }
    log::error!("unknown selftest '{name}'; known:");
    let names = NON_FAULTING
        .iter()
        .map(|(n, _)| *n)
        .chain(FAULTING.iter().map(|(n, _, _)| *n));
    for n in names {
        log::error!("  {n}");
    }
    exit_code::SELFTEST_FAILED
}

fn run_logged(name: &str, f: TestFn) -> bool {
    let t0 = arch::time::now_ns();
    let r = f();
    let us = (arch::time::now_ns() - t0) / 1000;
    match r {
        Ok(()) => log::info!("selftest {name}: ok ({us} us)"),
        Err(e) => log::error!("selftest {name}: FAILED: {e}"),
    }
    r.is_ok()
}

fn check(cond: bool, msg: &'static str) -> Result<(), &'static str> {
    if cond {
        Ok(())
    } else {
        Err(msg)
    }
}

// ---- non-faulting ----

fn frames() -> Result<(), &'static str> {
    let before = arch::mm::free_bytes();
    let a = arch::mm::alloc_frames(1, PAGE_SIZE).ok_or("single frame")?;
    let b = arch::mm::alloc_frames(64, 0x10000).ok_or("64 contiguous frames")?;
    check(b % 0x10000 == 0, "alignment not honoured")?;
    check(
        a + PAGE_SIZE <= b || b + 64 * PAGE_SIZE <= a,
        "frames overlap",
    )?;
    // The frames are identity-mapped RAM: fill and verify the whole run.
    let words = (64 * PAGE_SIZE / 8) as usize;
    let p = b as *mut u64;
    for i in 0..words {
        // SAFETY: we own these frames and they are mapped RW.
        unsafe { p.add(i).write_volatile(i as u64 ^ 0xa5a5) };
    }
    for i in 0..words {
        if unsafe { p.add(i).read_volatile() } != i as u64 ^ 0xa5a5 {
            return Err("frame contents corrupted");
        }
    }
    arch::mm::free_frames(a, 1).map_err(|_| "free single frame")?;
    arch::mm::free_frames(b, 64).map_err(|_| "free 64 frames")?;
    check(
        arch::mm::free_frames(b, 64).is_err(),
        "double free accepted",
    )?;
    check(arch::mm::free_bytes() == before, "free bytes not restored")
}

fn heap() -> Result<(), &'static str> {
    let mut v: Vec<u64> = Vec::new();
    for i in 0..100_000u64 {
        v.push(i * i);
    }
    check(
        v.iter()
            .enumerate()
            .all(|(i, &x)| x == (i as u64) * (i as u64)),
        "vec contents",
    )?;
    let boxes: Vec<Box<[u8; 1000]>> = (0..200).map(|i| Box::new([i as u8; 1000])).collect();
    check(
        boxes
            .iter()
            .enumerate()
            .all(|(i, b)| b.iter().all(|&x| x == i as u8)),
        "box contents",
    )?;
    drop(boxes);
    // A large allocation (16 MiB) inside the heap arena.
    let big = alloc::vec![7u8; 16 << 20];
    check(
        crate::heap::contains(big.as_ptr() as u64, big.len() as u64),
        "allocation outside the heap arenas",
    )?;
    check(big[0] == 7 && big[big.len() - 1] == 7, "big contents")?;
    // Over-aligned layout.
    let layout = core::alloc::Layout::from_size_align(4096, 4096).unwrap();
    // SAFETY: non-zero size; freed right away with the same layout.
    unsafe {
        let q = alloc::alloc::alloc(layout);
        check(
            !q.is_null() && (q as usize).is_multiple_of(4096),
            "aligned alloc",
        )?;
        alloc::alloc::dealloc(q, layout);
    }
    Ok(())
}

fn clock() -> Result<(), &'static str> {
    check(arch::time::frequency_hz() > 0, "no clock frequency")?;
    let mut last = arch::time::now_ns();
    let start = last;
    for _ in 0..10_000 {
        let t = arch::time::now_ns();
        check(t >= last, "clock went backwards")?;
        last = t;
    }
    // Busy-wait until at least 1 ms has passed: the clock must advance.
    let mut spins = 0u64;
    while arch::time::now_ns() - start < 1_000_000 {
        spins += 1;
        check(spins < 1_000_000_000, "clock does not advance")?;
    }
    check(
        arch::time::since_boot_ns() > arch::time::now_ns() - start,
        "since_boot < elapsed",
    )
}

#[inline(never)]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn float() -> Result<(), &'static str> {
    let a: Vec<f32> = (0..64).map(|i| black_box(i as f32) * 0.5).collect();
    let b: Vec<f32> = (0..64).map(|i| black_box(64.0 - i as f32)).collect();
    // sum_{i<64} (i/2)(64-i) = (64 * sum i - sum i^2) / 2 = (64*2016 - 85344)/2 = 21840
    check(dot_f32(&a, &b) == 21840.0, "f32 dot product")?;
    let x = black_box(2.0f64);
    let mut s = x;
    for _ in 0..30 {
        s = 0.5 * (s + x / s); // Newton for sqrt(2)
    }
    check(
        (s - core::f64::consts::SQRT_2).abs() < 1e-15,
        "f64 newton sqrt",
    )?;
    check(
        black_box(1.0f32) / black_box(0.0f32) == f32::INFINITY,
        "f32 division by zero",
    )?;
    check(black_box(f32::NAN).is_nan(), "NaN")
}

fn simd() -> Result<(), &'static str> {
    let units = arch::cpu::simd_selftest()?;
    log::info!("simd: dot product checked on: {units}");
    Ok(())
}

fn log_ring() -> Result<(), &'static str> {
    use arch::log_ring::Level;
    use core::fmt::Write;
    let cursor = logger::cursor_now();
    log::info!("log-ring probe 1");
    log::info!("log-ring probe 2");
    let mut seen = Vec::new();
    let visit = logger::read_since(cursor, |record| {
        seen.push((record.message.contains("probe"), record.level))
    });
    check(
        seen == [(true, Level::Info), (true, Level::Info)] && visit.dropped == 0,
        "did not read back exactly the two lines",
    )?;
    let next = visit.next;
    let mut again = 0;
    check(
        logger::read_since(next, |_| again += 1).next == next && again == 0,
        "cursor not at end",
    )?;
    // The console line of a record: `[    s.micros] INFO  text`.
    let mut stamped = false;
    logger::read_since(cursor, |record| {
        let mut line = logger::FixedStr::<128>::new();
        let _ = write!(line, "{record}");
        stamped = line.as_str().starts_with('[') && line.as_str().contains("] INFO");
    });
    check(stamped, "line not time-stamped")
}

fn tasks() -> Result<(), &'static str> {
    static ORDER: SpinLock<Vec<(u8, u8)>> = SpinLock::new(Vec::new());
    ORDER.lock().clear();
    for id in 0..3u8 {
        task::spawn("selftest-task", task::DEFAULT_STACK_PAGES, move || {
            for step in 0..3u8 {
                // Use some stack so the canary check is meaningful.
                let buf = black_box([id; 512]);
                ORDER.lock().push((buf[511], step));
                task::yield_now();
            }
        })
        .map_err(|_| "spawn")?;
    }
    task::run();
    let order = ORDER.lock().clone();
    // Round-robin: step s of every task before step s+1 of any.
    let expect: Vec<(u8, u8)> = (0..3).flat_map(|s| (0..3).map(move |id| (id, s))).collect();
    check(order == expect, "tasks did not interleave round-robin")
}

/// The page tables say what the protection tests rely on, and `map_mmio`
/// refuses bad ranges with an error and maps good ones.
fn paging() -> Result<(), &'static str> {
    use arch::mm::{is_mapped, map_mmio};
    let info = boot_info().ok_or("no boot info")?;
    check(!is_mapped(0), "page 0 is mapped")?;
    check(
        is_mapped(paging as fn() -> Result<(), &'static str> as usize as u64),
        "text not mapped",
    )?;
    let boot = arch::mm::boot_stack();
    check(
        !is_mapped(boot.guard.ok_or("boot stack has no guard")?),
        "boot stack guard mapped",
    )?;
    check(
        is_mapped(boot.bottom) && is_mapped(boot.top - 1),
        "boot stack not mapped",
    )?;
    check(
        map_mmio(0x1000_0000, 0).is_err(),
        "empty MMIO range accepted",
    )?;
    check(
        map_mmio(u64::MAX - 0xfff, 0x2000).is_err(),
        "overflowing MMIO range accepted",
    )?;
    check(
        map_mmio(info.kernel_start, 0x1000).is_err(),
        "MMIO over the kernel accepted",
    )?;
    // A hole above RAM: a partial 4 KiB head, then whole 2 MiB pages.
    let hole = (info.memory.usable_end() + (2 << 30) - 1) & !((1 << 30) - 1);
    let (start, len) = (hole - 0x1000, 0x40_1000);
    check(!is_mapped(start), "hole already mapped")?;
    map_mmio(start, len).map_err(|_| "map_mmio of a free hole failed")?;
    check(
        is_mapped(start) && is_mapped(hole + 0x20_0000) && is_mapped(start + len - 1),
        "not mapped",
    )?;
    check(!is_mapped(start + len), "mapped past the end")?;
    Ok(())
}

/// `cpu::idle` waits without spinning where the architecture can (a timer
/// interrupt wakes the halted CPU), and the kernel carries on afterwards.
fn idle() -> Result<(), &'static str> {
    const WAIT_NS: u64 = 2_000_000;
    let irqs0 = arch::cpu::timer_interrupts();
    let t0 = arch::time::now_ns();
    let mut slept = 0;
    let mut calls = 0;
    while arch::time::now_ns() - t0 < WAIT_NS && calls < 1000 {
        calls += 1;
        slept += arch::cpu::idle(WAIT_NS - (arch::time::now_ns() - t0).min(WAIT_NS)) as u32;
    }
    let us = (arch::time::now_ns() - t0) / 1000;
    let irqs = arch::cpu::timer_interrupts() - irqs0;
    log::info!(
        "idle: waited {us} us in {calls} idle calls, {slept} asleep, {irqs} timer interrupts"
    );
    check(us >= WAIT_NS / 1000, "returned before the time was up")?;
    check(
        slept == 0 || irqs > 0,
        "claims to have slept but no timer interrupt came",
    )
}

// ---- faulting: each must end in the trap handler ----

fn write_text() {
    let p = write_text as fn() as usize as *mut u8;
    log::info!(
        "selftest write-text: writing to kernel text at {:#x}",
        p as usize
    );
    // SAFETY: none — this must fault (text is mapped read+execute only).
    unsafe { p.write_volatile(0xcc) };
}

/// In .data (non-zero initialiser), mapped RW + no-execute.
static mut DATA_CODE: [u8; 16] = [0xff; 16];

fn exec_data() {
    let code = arch::cpu::RET_INSTRUCTION;
    // SAFETY: single-threaded boot; the buffer is only used here.
    let p = unsafe {
        let buf = &mut *core::ptr::addr_of_mut!(DATA_CODE);
        buf[..code.len()].copy_from_slice(code);
        buf.as_ptr()
    };
    log::info!(
        "selftest exec-data: calling into .data at {:#x}",
        p as usize
    );
    // SAFETY: none — this must fault (data is mapped no-execute).
    let f: extern "C" fn() = unsafe { core::mem::transmute(p) };
    f();
}

fn null_read() {
    log::info!("selftest null-read: reading address 0");
    // SAFETY: none — page 0 is unmapped, this must fault.
    let v = unsafe { arch::cpu::read_u64(0) };
    log::error!("null read returned {v:#x}");
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    black_box(recurse(depth + 1)) + frame[depth as usize % 64]
}

fn stack_overflow() {
    let r = task::spawn("overflow", 4, || {
        let s = task::current_stack().unwrap();
        log::info!(
            "selftest stack-overflow: recursing on stack {:#x}-{:#x}, guard {:#x}",
            s.bottom,
            s.top,
            s.guard.unwrap_or(0)
        );
        black_box(recurse(0));
    });
    if r.is_ok() {
        task::run();
    }
}

/// One frame of 64 KiB on a 16 KiB stack: without stack probes the stack
/// pointer would jump over the guard page into whatever lies below.
#[inline(never)]
fn huge_frame() -> u8 {
    let mut big = [0u8; 64 * 1024];
    black_box(&mut big);
    big[black_box(7)]
}

fn big_frame() {
    let r = task::spawn("big-frame", 4, || {
        let s = task::current_stack().unwrap();
        log::info!(
            "selftest big-frame: 64 KiB frame on stack {:#x}-{:#x}, guard {:#x}",
            s.bottom,
            s.top,
            s.guard.unwrap_or(0)
        );
        black_box(huge_frame());
    });
    if r.is_ok() {
        task::run();
    }
}

fn canary() {
    let r = task::spawn("canary", task::DEFAULT_STACK_PAGES, || {
        let s = task::current_stack().unwrap();
        log::info!("selftest canary: overwriting the canary at {:#x}", s.bottom);
        // SAFETY: the bottom word of our own stack is mapped; this simulates an
        // overflow that stopped short of the guard page.
        unsafe { (s.bottom as *mut u64).write_volatile(0) };
        task::yield_now();
    });
    if r.is_ok() {
        task::run();
    }
}

fn panic() {
    let v: Vec<u32> = Vec::new();
    // An out-of-bounds index the compiler cannot see through.
    let i = black_box(3usize);
    log::info!("selftest panic: indexing an empty vector at {i}");
    black_box(v[i]);
}

/// Never returns: lets the host tests prove a hung kernel fails by timeout.
fn hang() {
    log::info!("selftest hang: spinning forever");
    arch::cpu::halt();
}
