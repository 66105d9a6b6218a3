//! microkernelia: a unikernel that boots on x86_64 and aarch64 and serves an LLM
//! over MCP. This crate only glues: the architecture layer (`arch`) brings the
//! machine up and calls [`kernel_main`]; here we start logging and the heap, then
//! serve MCP (`model=`, see serve.rs), or run the self-tests / device tests the
//! command line asks for, and report boot time.
#![no_std]
#![no_main]

extern crate alloc;

mod device_tests;
mod devices;
mod heap;
mod logger;
mod selftest;
mod serve;
mod task;

use arch::BootInfo;

/// Exit codes the kernel reports to the host (defined once in `arch`; the runner decodes them).
pub use arch::exit_code;

/// Called by the architecture's boot code with paging, FP/SIMD, console, traps,
/// clock and the frame allocator up.
#[no_mangle]
pub fn kernel_main(info: &'static BootInfo) -> ! {
    let cmdline = info.cmdline();
    logger::init(cmdline.get("loglevel"));
    log::info!(
        "microkernelia {} on {}",
        env!("CARGO_PKG_VERSION"),
        info.protocol
    );
    log::info!("cmdline: \"{}\"", cmdline.as_str());
    log_platform(info);
    heap::init();

    log::info!(
        "boot done: {} us since first instruction",
        arch::time::since_boot_ns() / 1000
    );

    selftest::set_boot_info(info);

    // Device tests (test=fs-checksum, vsock-echo, fs-errors): see device_tests.rs.
    if let Some(test) = cmdline.get("test") {
        arch::power::exit(device_tests::run(info, test));
    }

    // `model=` / `port=` / `serve`: the MCP server (runs until the VM is stopped).
    if cmdline.get("selftest").is_none() && serve::wanted(info) {
        let e = serve::run(info);
        log::error!("mcp: cannot serve: {e}");
        arch::power::exit(exit_code::SERVE_FAILED);
    }

    let code = match cmdline.get("selftest") {
        None | Some("") | Some("all") => selftest::run_all(),
        Some("none") => exit_code::SUCCESS,
        Some(name) => selftest::run_one(name),
    };
    arch::power::exit(code)
}

fn log_platform(info: &BootInfo) {
    let f = arch::cpu::features();
    let mut simd = heapless_join::<256>(f.simd_names());
    if simd.is_empty() {
        simd.push_str("none");
    }
    log::info!("cpu simd: {}", simd.as_str());
    log::info!(
        "clock: {} Hz ({})",
        arch::time::frequency_hz(),
        arch::time::calibration()
    );
    for r in info.memory.regions() {
        log::debug!("mem {:#012x}-{:#012x} {:?}", r.start, r.end(), r.kind);
    }
    log::info!(
        "memory: {} MiB usable, kernel image {:#x}-{:#x}, rsdp {:?}, fdt {:?}",
        info.memory.usable_bytes() >> 20,
        info.kernel_start,
        info.kernel_end,
        info.rsdp,
        info.fdt
    );
}

/// Join names with spaces into a fixed buffer (before the heap exists).
fn heapless_join<'a, const N: usize>(items: impl Iterator<Item = &'a str>) -> logger::FixedStr<N> {
    let mut s = logger::FixedStr::<N>::new();
    for (i, it) in items.enumerate() {
        if i > 0 {
            s.push_str(" ");
        }
        s.push_str(it);
    }
    s
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write;
    let mut out = logger::RawConsole;
    let _ = write!(out, "\nPANIC: {}\n", info);
    arch::power::exit(exit_code::PANIC)
}
