//! Boot tests on x86_64 (q35 + qboot and microvm, TCG). Each run boots the
//! kernel image built by `make build-x86` (path in `MK_KERNEL_X86`) and
//! asserts on its serial output and exit code. Each faulting self-test gets
//! its own boot, so any one of them can fail on its own.
#![cfg(feature = "vm")]

mod common;

use ci::qemu::Arch;
use ci::{Machine, VmConfig, VmOutcome};
use common::*;
use std::time::Duration;

const MACHINES: [Machine; 2] = [Machine::Q35, Machine::Microvm];

fn boot(machine: Machine, cmdline: &str) -> VmOutcome {
    let cfg = VmConfig::new(machine, kernel(Arch::X86_64))
        .cmdline(cmdline)
        .timeout(Duration::from_secs(60));
    run(&cfg)
}

#[test]
fn normal_boot_runs_all_selftests_and_exits_zero() {
    for m in MACHINES {
        let r = boot(m, "");
        assert_all_selftests_ok(&r, &format!("{m:?}"));
        assert!(r.serial.contains("on x86_64 PVH"), "{}", r.describe());
        // SSE always; the TCG `max` CPU also has AVX2 + FMA, so those paths run.
        assert!(
            r.serial
                .contains("simd: dot product checked on: sse avx fma"),
            "{}",
            r.describe()
        );
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
    assert_cmdline_reached(&boot(Machine::Microvm, CMDLINE));
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
        assert_canary_caught(&boot(m, "selftest=canary"));
    }
}

#[test]
fn panic_is_reported_with_its_location() {
    assert_panic_reported(&boot(Machine::Microvm, "selftest=panic"));
}

#[test]
fn unknown_selftest_fails() {
    assert_unknown_selftest_fails(&boot(Machine::Q35, "selftest=no-such-test"));
}

#[test]
fn hung_kernel_times_out_instead_of_hanging_the_test() {
    let cfg = VmConfig::new(Machine::Microvm, kernel(Arch::X86_64))
        .cmdline("selftest=hang")
        .timeout(Duration::from_secs(8));
    let r = assert_hang_is_killed(&cfg, Duration::from_secs(30));
    assert!(
        r.serial.contains("selftest hang: expecting no end"),
        "{}",
        r.describe()
    );
}

#[test]
fn float_code_uses_sse_not_soft_float() {
    let r = ci::floatcheck::check(&kernel(Arch::X86_64)).unwrap();
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
    assert_fault_symbolized(&r, Arch::X86_64);
}

#[test]
fn boots_with_shared_memory_backend_for_vhost_user() {
    for m in MACHINES {
        let mut cfg = VmConfig::new(m, kernel(Arch::X86_64)).cmdline("selftest=heap");
        cfg.shared_memory = true;
        let r = run(&cfg);
        assert_exit(&r, SUCCESS);
    }
}
