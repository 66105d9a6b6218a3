//! The kernel's exit codes and how they reach the host, defined once: the kernel, both
//! architectures' power-off and trap paths, and the host runner (`ci`, whose tests use
//! these names) all take them from here.
//!
//! x86 writes [`debug_exit_value`] to QEMU's isa-debug-exit port, and QEMU exits with
//! `(v << 1) | 1` = [`qemu_status`]; aarch64 passes [`qemu_status`] to semihosting
//! SYS_EXIT_EXTENDED, so one decoding ([`from_qemu_status`]) serves both. QEMU's own
//! statuses 0 (shut down without a code, e.g. a triple fault with `-no-reboot`, or PSCI
//! SYSTEM_OFF) and 1 (QEMU error) can never be mistaken for a kernel exit.

pub const SUCCESS: u8 = 0;
/// A self-test or device test failed.
pub const SELFTEST_FAILED: u8 = 1;
/// A Rust panic.
pub const PANIC: u8 = 2;
/// An unexpected CPU exception (the trap report says which), or a boot failure before
/// the kernel runs.
pub const EXCEPTION: u8 = 3;
/// A task's stack canary was overwritten.
pub const STACK_CANARY: u8 = 4;
/// The MCP server could not start (no devices, bad command line).
pub const SERVE_FAILED: u8 = 5;
/// Codes above this are clamped to it (six bits survive the debug-exit encoding).
pub const MAX: u8 = 63;

/// What a code means, for logs and test messages.
pub fn name(code: u8) -> &'static str {
    match code {
        SUCCESS => "success",
        SELFTEST_FAILED => "self-test failed",
        PANIC => "panic",
        EXCEPTION => "CPU exception",
        STACK_CANARY => "stack canary smashed",
        SERVE_FAILED => "MCP server could not start",
        _ => "unknown",
    }
}

const fn clamp(code: u8) -> u8 {
    if code > MAX {
        MAX
    } else {
        code
    }
}

/// The value x86 writes to isa-debug-exit for `code`.
pub const fn debug_exit_value(code: u8) -> u32 {
    0x40 | clamp(code) as u32
}

/// QEMU's exit status for a kernel exit with `code` (`0x81 + 2 * code`; 129 = success).
pub const fn qemu_status(code: u8) -> u32 {
    (debug_exit_value(code) << 1) | 1
}

/// The kernel's code from QEMU's exit status; `None` if the status is not a kernel exit.
pub fn from_qemu_status(status: i32) -> Option<u8> {
    if (qemu_status(0) as i32..=qemu_status(MAX) as i32).contains(&status) && status % 2 == 1 {
        Some(((status - qemu_status(0) as i32) / 2) as u8)
    } else {
        None
    }
}

/// The console's last line, `microkernelia: exit NN`, which the host also matches.
pub fn exit_line(code: u8) -> [u8; 23] {
    let code = clamp(code);
    let mut line = *b"microkernelia: exit 00\n";
    line[20] = b'0' + code / 10;
    line[21] = b'0' + code % 10;
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_and_clamps() {
        assert_eq!(qemu_status(SUCCESS), 129);
        assert_eq!(qemu_status(EXCEPTION), 135);
        assert_eq!(debug_exit_value(200), 0x40 | 63);
        for code in 0..=MAX {
            assert_eq!(from_qemu_status(qemu_status(code) as i32), Some(code));
        }
        for s in [0, 1, 128, 130, 256, -1] {
            assert_eq!(from_qemu_status(s), None, "{s}");
        }
    }

    #[test]
    fn exit_line_has_two_digits() {
        assert_eq!(&exit_line(3), b"microkernelia: exit 03\n");
        assert_eq!(&exit_line(99), b"microkernelia: exit 63\n");
        assert_eq!(name(STACK_CANARY), "stack canary smashed");
    }
}
