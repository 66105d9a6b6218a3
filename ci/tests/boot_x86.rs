//! Boot tests on x86_64 (q35 + qboot and microvm, TCG). Each run boots the
//! kernel image built by `make build-x86` (path in `MK_KERNEL_X86`) and
//! asserts on its serial output and exit code. Each faulting self-test gets
//! its own boot, so any one of them can fail on its own.
#![cfg(feature = "vm")]

use ci::build::kernel_image;
use ci::exit::KernelExit;
use ci::qemu::Arch;
use ci::{run_captured, Machine, VmConfig, VmOutcome};
use std::time::{Duration, Instant};

const MACHINES: [Machine; 2] = [Machine::Q35, Machine::Microvm];

/// Kernel exit codes (kernel/src/main.rs `exit_code`).
const SUCCESS: u8 = 0;
const SELFTEST_FAILED: u8 = 1;
const PANIC: u8 = 2;
const EXCEPTION: u8 = 3;
const STACK_CANARY: u8 = 4;

fn boot(machine: Machine, cmdline: &str) -> VmOutcome {
    let kernel = kernel_image(Arch::X86_64);
    assert!(
        kernel.exists(),
        "no kernel image at {} (run `make build-x86`)",
        kernel.display()
    );
    let cfg = VmConfig::new(machine, kernel)
        .cmdline(cmdline)
        .timeout(Duration::from_secs(60));
    run_captured(&cfg, &mut []).expect("QEMU could not be started")
}

fn assert_exit(r: &VmOutcome, code: u8) {
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

#[test]
fn normal_boot_runs_all_selftests_and_exits_zero() {
    for m in MACHINES {
        let r = boot(m, "");
        assert_exit(&r, SUCCESS);
        for t in [
            "frames", "heap", "clock", "float", "simd", "log-ring", "tasks", "paging", "idle",
        ] {
            assert!(
                r.serial.contains(&format!("selftest {t}: ok")),
                "{t} on {m:?}\n{}",
                r.describe()
            );
        }
        assert!(
            r.serial.contains("selftests done: 9 ok, 0 failed"),
            "{}",
            r.describe()
        );
        assert!(r.serial.contains("on x86_64 PVH"), "{}", r.describe());
        // SSE always; the TCG `max` CPU also has AVX2 + FMA, so those paths run.
        assert!(
            r.serial
                .contains("simd: dot product checked on: sse avx fma"),
            "{}",
            r.describe()
        );
        let us = r.boot_done_kernel_us.expect("boot done line");
        assert!(us > 0, "{}", r.describe());
        assert!(r.boot_done_wall.is_some());
        // Every log line is time-stamped.
        for l in r.serial.lines().filter(|l| l.contains(" INFO ")) {
            assert!(
                l.starts_with('[') && l.as_bytes()[13] == b']',
                "unstamped line: {l}"
            );
        }
    }
}

#[test]
fn idle_sleeps_on_the_apic_timer() {
    for m in MACHINES {
        let r = boot(m, "selftest=idle");
        assert_exit(&r, SUCCESS);
        let line = r
            .serial
            .lines()
            .find(|l| l.contains("idle: waited"))
            .unwrap_or("");
        assert!(
            !line.contains(" 0 asleep") && !line.contains(" 0 timer interrupts"),
            "{m:?}: {line}"
        );
    }
}

#[test]
fn clock_is_calibrated_from_the_pit() {
    for m in MACHINES {
        let r = boot(m, "selftest=clock");
        assert_exit(&r, SUCCESS);
        assert!(
            r.serial.contains("(PIT channel 0, 2 ms)"),
            "{m:?}\n{}",
            r.describe()
        );
    }
}

#[test]
fn cmdline_reaches_the_kernel() {
    let r = boot(
        Machine::Microvm,
        "selftest=heap model=/models/x.st port=5000",
    );
    assert_exit(&r, SUCCESS);
    assert!(r
        .serial
        .contains("cmdline: \"selftest=heap model=/models/x.st port=5000\""));
    assert!(r.serial.contains("selftest heap: ok"));
    assert!(
        !r.serial.contains("selftest frames"),
        "only the named test runs"
    );
}

fn expect_page_fault(selftest: &str, cause: &str) {
    for m in MACHINES {
        let r = boot(m, &format!("selftest={selftest}"));
        assert_exit(&r, EXCEPTION);
        let s = &r.serial;
        assert!(
            s.contains("*** CPU exception: Page fault (#PF), vector 14"),
            "{m:?}\n{}",
            r.describe()
        );
        assert!(
            s.contains(&format!("cause: {cause}")),
            "{m:?}\n{}",
            r.describe()
        );
        assert!(s.contains("address (CR2):") && s.contains("rip=") && s.contains("r15="));
        assert!(
            s.contains("backtrace (frame pointers):\n      #0 "),
            "{}",
            r.describe()
        );
        assert!(
            s.contains("      #1 0x"),
            "backtrace has callers\n{}",
            r.describe()
        );
        assert!(!s.contains("FAILED"), "{}", r.describe());
    }
}

#[test]
fn write_to_text_faults() {
    expect_page_fault("write-text", "write to a read-only page");
}

#[test]
fn exec_from_data_faults() {
    expect_page_fault("exec-data", "instruction fetch from a no-execute page");
}

#[test]
fn null_read_faults() {
    expect_page_fault("null-read", "access to an unmapped page (null pointer)");
}

#[test]
fn stack_overflow_hits_the_guard_page() {
    expect_page_fault(
        "stack-overflow",
        "stack overflow: access to the guard page below a stack",
    );
}

#[test]
fn a_frame_larger_than_the_stack_cannot_jump_the_guard_page() {
    expect_page_fault(
        "big-frame",
        "stack overflow: access to the guard page below a stack",
    );
}

#[test]
fn smashed_canary_is_caught_on_switch() {
    for m in MACHINES {
        let r = boot(m, "selftest=canary");
        assert_exit(&r, STACK_CANARY);
        assert!(
            r.serial.contains("stack canary of task 'canary' smashed"),
            "{}",
            r.describe()
        );
    }
}

#[test]
fn panic_is_reported_with_its_location() {
    let r = boot(Machine::Microvm, "selftest=panic");
    assert_exit(&r, PANIC);
    assert!(
        r.serial.contains("PANIC: panicked at src/selftest.rs:"),
        "{}",
        r.describe()
    );
    assert!(r.serial.contains("index out of bounds"), "{}", r.describe());
}

#[test]
fn unknown_selftest_fails() {
    let r = boot(Machine::Q35, "selftest=no-such-test");
    assert_exit(&r, SELFTEST_FAILED);
    assert!(r.serial.contains("unknown selftest 'no-such-test'"));
}

#[test]
fn hung_kernel_times_out_instead_of_hanging_the_test() {
    let kernel = kernel_image(Arch::X86_64);
    let cfg = VmConfig::new(Machine::Microvm, kernel)
        .cmdline("selftest=hang")
        .timeout(Duration::from_secs(8));
    let t0 = Instant::now();
    let r = run_captured(&cfg, &mut []).unwrap();
    assert!(r.timed_out, "{}", r.describe());
    assert_eq!(r.exit, KernelExit::Killed);
    assert!(
        r.serial.contains("selftest hang: expecting no end"),
        "{}",
        r.describe()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "runner did not stop the VM in time"
    );
}

#[test]
fn float_code_uses_sse_not_soft_float() {
    let r = ci::floatcheck::check(&kernel_image(Arch::X86_64)).unwrap();
    assert!(
        r.soft_float_symbols.is_empty(),
        "{:?}",
        r.soft_float_symbols
    );
    for (m, n) in &r.sse_counts {
        assert!(*n > 0, "no {m} in the kernel");
    }
}

#[test]
fn fault_report_symbolizes_on_the_host() {
    let r = boot(Machine::Q35, "selftest=write-text");
    assert_exit(&r, EXCEPTION);
    let text = ci::symbolize::annotate(&r.serial, &kernel_image(Arch::X86_64));
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

#[test]
fn boots_with_shared_memory_backend_for_vhost_user() {
    for m in MACHINES {
        let mut cfg = VmConfig::new(m, kernel_image(Arch::X86_64)).cmdline("selftest=heap");
        cfg.shared_memory = true;
        let r = run_captured(&cfg, &mut []).unwrap();
        assert_exit(&r, SUCCESS);
    }
}
