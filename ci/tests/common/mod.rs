//! What the boot tests of both architectures (boot_x86.rs, boot_arm.rs) check the same
//! way: the kernel's exit codes and exit line, the self-test summary, the panic, canary,
//! unknown-test and hang reports, and host-side symbolization of a fault report.
// Each test crate includes this module and uses a part of it.
#![allow(dead_code)]

use ci::build::kernel_image;
use ci::exit::KernelExit;
use ci::qemu::Arch;
use ci::{run_captured, VmConfig, VmOutcome};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The kernel's exit codes, from their one definition.
pub use arch::exit_code::{EXCEPTION, PANIC, SELFTEST_FAILED, STACK_CANARY, SUCCESS};

/// The self-tests a normal boot runs (kernel/src/selftest.rs), on every architecture.
pub const SELFTESTS: [&str; 9] = [
    "frames", "heap", "clock", "float", "simd", "log-ring", "tasks", "paging", "idle",
];

/// The image `make build-x86` / `make build-arm` built; fails the test if it is missing.
pub fn kernel(arch: Arch) -> PathBuf {
    let kernel = kernel_image(arch);
    let make = match arch {
        Arch::X86_64 => "make build-x86",
        Arch::Aarch64 => "make build-arm",
    };
    assert!(
        kernel.exists(),
        "no kernel image at {} (run `{make}`)",
        kernel.display()
    );
    kernel
}

/// Boots and returns the outcome with a console's CR LF turned into LF.
pub fn run(cfg: &VmConfig) -> VmOutcome {
    let mut r = run_captured(cfg).expect("QEMU could not be started");
    r.serial = r.serial.replace("\r\n", "\n");
    r
}

/// The decimal number right after the first `prefix` in the log.
pub fn number_after(serial: &str, prefix: &str) -> u64 {
    let rest = &serial[serial
        .find(prefix)
        .unwrap_or_else(|| panic!("no '{prefix}'"))
        + prefix.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after '{prefix}'"))
}

pub fn assert_exit(r: &VmOutcome, code: u8) {
    assert!(!r.timed_out, "kernel hung\n{}", r.describe());
    assert_eq!(
        r.exit,
        KernelExit::Code(code),
        "wrong exit\n{}",
        r.describe()
    );
    assert!(
        r.serial.contains(&format!("microkernelia: exit {code:02}")),
        "exit line missing\n{}",
        r.describe()
    );
}

/// A normal boot (`what` names the machine or CPU): every self-test passed, the boot-done
/// line was seen, and every log line is time-stamped.
pub fn assert_all_selftests_ok(r: &VmOutcome, what: &str) {
    assert_exit(r, SUCCESS);
    for t in SELFTESTS {
        assert!(
            r.serial.contains(&format!("selftest {t}: ok")),
            "{t} on {what}\n{}",
            r.describe()
        );
    }
    let done = format!("selftests done: {} ok, 0 failed", SELFTESTS.len());
    assert!(r.serial.contains(&done), "{}", r.describe());
    let us = r.boot_done_kernel_us.expect("boot done line");
    assert!(us > 0, "{}", r.describe());
    assert!(r.boot_done_wall.is_some());
    for l in r.serial.lines().filter(|l| l.contains(" INFO ")) {
        assert!(
            l.starts_with('[') && l.as_bytes()[13] == b']',
            "unstamped line: {l}"
        );
    }
}

/// A command line with keys the kernel ignores besides the one self-test to run.
pub const CMDLINE: &str = "selftest=heap model=/models/x.st port=5000";

/// A boot with [`CMDLINE`]: the kernel saw all of it and ran only the named self-test.
pub fn assert_cmdline_reached(r: &VmOutcome) {
    assert_exit(r, SUCCESS);
    assert!(r.serial.contains(&format!("cmdline: \"{CMDLINE}\"")));
    assert!(r.serial.contains("selftest heap: ok"));
    assert!(
        !r.serial.contains("selftest frames"),
        "only the named test runs"
    );
}

/// `selftest=panic`.
pub fn assert_panic_reported(r: &VmOutcome) {
    assert_exit(r, PANIC);
    assert!(
        r.serial.contains("PANIC: panicked at src/selftest.rs:"),
        "{}",
        r.describe()
    );
    assert!(r.serial.contains("index out of bounds"), "{}", r.describe());
}

/// `selftest=canary`.
pub fn assert_canary_caught(r: &VmOutcome) {
    assert_exit(r, STACK_CANARY);
    assert!(
        r.serial.contains("stack canary of task 'canary' smashed"),
        "{}",
        r.describe()
    );
}

/// `selftest=no-such-test`.
pub fn assert_unknown_selftest_fails(r: &VmOutcome) {
    assert_exit(r, SELFTEST_FAILED);
    assert!(r.serial.contains("unknown selftest 'no-such-test'"));
}

/// Boots `cfg` (`selftest=hang` with a short timeout): the runner must kill the VM within
/// `limit`. Returns the outcome for more checks.
pub fn assert_hang_is_killed(cfg: &VmConfig, limit: Duration) -> VmOutcome {
    let t0 = Instant::now();
    let r = run(cfg);
    assert!(r.timed_out, "{}", r.describe());
    assert_eq!(r.exit, KernelExit::Killed);
    assert!(t0.elapsed() < limit, "runner did not stop the VM in time");
    r
}

/// `selftest=write-text`: the host names the faulting function and its callers from the
/// kernel's symbols (for aarch64 the ELF next to the raw Image).
pub fn assert_fault_symbolized(r: &VmOutcome, arch: Arch) {
    assert_exit(r, EXCEPTION);
    let text = ci::symbolize::annotate(&r.serial, &kernel_image(arch));
    let frame0 = text
        .lines()
        .find(|l| l.trim_start().starts_with("#0 "))
        .unwrap();
    assert!(
        frame0.contains("kernel::selftest::write_text at kernel/src/selftest.rs:"),
        "{text}"
    );
    assert!(
        text.contains("kernel_main at kernel/src/main.rs:"),
        "{text}"
    );
}
