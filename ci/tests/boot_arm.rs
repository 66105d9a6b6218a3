//! Boot tests on aarch64 (QEMU virt, TCG, `-cpu max` and `-cpu cortex-a72`).
//! Each run boots the raw Image built by `make build-arm` (path in
//! `MK_KERNEL_ARM`) and asserts on its serial output and exit code. Each
//! faulting self-test gets its own boot, so any one of them can fail on its own.
#![cfg(feature = "vm")]

mod common;

use ci::qemu::Arch;
use ci::{Machine, VmConfig, VmOutcome};
use common::*;
use std::time::Duration;

/// `max` has NEON + FP16 + DotProd + I8MM + BF16 + SVE; cortex-a72 only NEON.
const CPUS: [&str; 2] = ["max", "cortex-a72"];

fn config(cpu: &str, cmdline: &str) -> VmConfig {
    let mut cfg = VmConfig::new(Machine::Virt, kernel(Arch::Aarch64))
        .cmdline(cmdline)
        .timeout(Duration::from_secs(60));
    cfg.cpu = Some(cpu.to_string());
    cfg
}

fn boot(cpu: &str, cmdline: &str) -> VmOutcome {
    run(&config(cpu, cmdline))
}

#[test]
fn normal_boot_runs_all_selftests_and_exits_zero() {
    for cpu in CPUS {
        let r = boot(cpu, "");
        assert_all_selftests_ok(&r, cpu);
        assert!(
            r.serial.contains("on aarch64 Linux Image (QEMU virt)"),
            "{}",
            r.describe()
        );
        // virt's generic timer: 62.5 MHz up to QEMU 8.2, 1 GHz from 9.0.
        let hz = number_after(&r.serial, "clock: ");
        assert!(hz == 62_500_000 || hz == 1_000_000_000, "{}", r.describe());
        // 256 MiB minus the DTB (QEMU pads it to 1 MiB), which is reserved.
        let mib = number_after(&r.serial, "memory: ");
        assert!((250..256).contains(&mib), "{}", r.describe());
    }
}

#[test]
fn cpu_features_come_from_the_id_registers() {
    let max = boot("max", "selftest=simd");
    assert_exit(&max, SUCCESS);
    assert!(
        max.serial
            .contains("cpu simd: neon fp16 dotprod i8mm bf16 sve"),
        "{}",
        max.describe()
    );
    // SDOT ran (and matched the scalar result) only where DotProd exists.
    assert!(
        max.serial
            .contains("simd: dot product checked on: neon, sdot"),
        "{}",
        max.describe()
    );
    let a72 = boot("cortex-a72", "selftest=simd");
    assert_exit(&a72, SUCCESS);
    assert!(
        a72.serial.contains("cpu simd: neon\n"),
        "{}",
        a72.describe()
    );
    assert!(
        a72.serial.contains("simd: dot product checked on: neon\n"),
        "{}",
        a72.describe()
    );
}

#[test]
fn cmdline_and_memory_come_from_the_fdt() {
    let mut cfg = config("max", CMDLINE);
    cfg.memory_mib = 1024;
    let r = run(&cfg);
    assert_cmdline_reached(&r);
    let mib = number_after(&r.serial, "memory: ");
    assert!((1018..1024).contains(&mib), "{}", r.describe());
}

#[test]
fn idle_sleeps_on_the_virtual_timer() {
    // GICv2 (virt's default): wfi until the EL1 virtual timer's PPI.
    let r = boot("max", "selftest=idle");
    assert_exit(&r, SUCCESS);
    let asleep = number_after(&r.serial, "idle calls, ");
    let irqs = number_after(&r.serial, "asleep, ");
    assert!(asleep >= 1 && irqs >= 1, "{}", r.describe());
    // GICv3 is not driven: idle must say it only spun, and still wait.
    let mut cfg = config("cortex-a72", "selftest=idle");
    cfg.machine_opts.push("gic-version=3".into());
    let r = run(&cfg);
    assert_exit(&r, SUCCESS);
    assert!(
        r.serial.contains("0 asleep, 0 timer interrupts"),
        "{}",
        r.describe()
    );
}

#[test]
fn boots_when_entered_at_el2() {
    // virtualization=on starts the CPU at EL2; the entry drops to EL1.
    let mut cfg = config("max", "selftest=tasks");
    cfg.machine_opts.push("virtualization=on".into());
    let r = run(&cfg);
    assert_exit(&r, SUCCESS);
    assert!(r.serial.contains("selftest tasks: ok"), "{}", r.describe());
}

/// `class` e.g. "Data Abort (EC 0x25", `status` e.g. "permission fault at level 3, write".
fn expect_abort(selftest: &str, class: &str, status: &str, cause: &str) {
    for cpu in CPUS {
        let r = boot(cpu, &format!("selftest={selftest}"));
        assert_exit(&r, EXCEPTION);
        let s = &r.serial;
        let header = s
            .lines()
            .find(|l| l.starts_with("*** CPU exception: "))
            .unwrap_or_else(|| panic!("no exception report on {cpu}\n{}", r.describe()));
        assert!(header.contains(class), "{cpu}: {header}\n{}", r.describe());
        assert!(header.contains(status), "{cpu}: {header}\n{}", r.describe());
        assert!(header.contains("from EL1 on SP_EL0"), "{header}");
        assert!(
            s.contains(&format!("cause: {cause}")),
            "{cpu}\n{}",
            r.describe()
        );
        assert!(s.contains("ESR 0x") && s.contains("FAR 0x") && s.contains("ELR 0x"));
        assert!(s.contains("x0  0x") && s.contains("x30 0x") && s.contains("sp  0x"));
        assert!(s.contains("backtrace:\n    #0 0x"), "{}", r.describe());
        assert!(
            s.contains("    #2 0x"),
            "backtrace has callers\n{}",
            r.describe()
        );
        assert!(!s.contains("FAILED"), "{}", r.describe());
    }
}

#[test]
fn write_to_text_faults() {
    expect_abort(
        "write-text",
        "Data Abort (EC 0x25",
        "permission fault at level 3, write",
        "write to a read-only page",
    );
}

#[test]
fn exec_from_data_faults() {
    expect_abort(
        "exec-data",
        "Instruction Abort (EC 0x21",
        "permission fault at level 3, instruction fetch",
        "instruction fetch from a no-execute page",
    );
}

#[test]
fn null_read_faults() {
    expect_abort(
        "null-read",
        "Data Abort (EC 0x25",
        "translation fault",
        "access to an unmapped page (null pointer)",
    );
    let r = boot("max", "selftest=null-read");
    assert!(
        r.serial.contains("FAR 0x0000000000000000 "),
        "{}",
        r.describe()
    );
}

#[test]
fn stack_overflow_hits_the_guard_page() {
    expect_abort(
        "stack-overflow",
        "Data Abort (EC 0x25",
        "translation fault at level 3, write",
        "stack overflow: access to the guard page below a stack",
    );
    // The report names the stack, and the guard page holds FAR.
    let r = boot("max", "selftest=stack-overflow");
    let s = &r.serial;
    let guard_line = s
        .lines()
        .find(|l| l.contains("stack: 0x"))
        .expect("stack line");
    let guard = u64::from_str_radix(guard_line.rsplit("0x").next().unwrap().trim(), 16).unwrap();
    let far_hex = s.split("FAR 0x").nth(1).unwrap();
    let far = u64::from_str_radix(&far_hex[..16], 16).unwrap();
    assert!(
        (guard..guard + 4096).contains(&far),
        "FAR {far:#x} guard {guard:#x}"
    );
    assert!(
        s.contains("... same frame"),
        "recursion folded\n{}",
        r.describe()
    );
}

#[test]
fn frame_larger_than_the_stack_hits_the_guard_page() {
    // aarch64-unknown-none emits inline stack probes: a 64 KiB frame cannot
    // jump over the guard page.
    expect_abort(
        "big-frame",
        "Data Abort (EC 0x25",
        "translation fault at level 3, write",
        "stack overflow: access to the guard page below a stack",
    );
}

#[test]
fn panic_is_reported_with_its_location() {
    assert_panic_reported(&boot("cortex-a72", "selftest=panic"));
}

#[test]
fn smashed_canary_is_caught_on_switch() {
    assert_canary_caught(&boot("cortex-a72", "selftest=canary"));
}

#[test]
fn unknown_selftest_fails() {
    assert_unknown_selftest_fails(&boot("max", "selftest=no-such-test"));
}

#[test]
fn hung_kernel_times_out_instead_of_hanging_the_test() {
    let cfg = config("max", "selftest=hang").timeout(Duration::from_secs(3));
    assert_hang_is_killed(&cfg, Duration::from_secs(20));
}

#[test]
fn fault_report_symbolizes_on_the_host() {
    // The raw Image has no symbols; annotate finds the ELF next to it.
    let r = boot("max", "selftest=write-text");
    assert_fault_symbolized(&r, Arch::Aarch64);
}
