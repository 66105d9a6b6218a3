//! Decoding QEMU's exit status into the kernel's exit code.
//!
//! x86 (isa-debug-exit): the kernel writes `0x40 | code` to port 0xf4 and QEMU
//! exits with `(v << 1) | 1`, i.e. `0x81 + 2 * code` (see arch/src/x86_64/power.rs).
//! Status 0 means QEMU shut down without the kernel's exit (e.g. a triple fault
//! with `-no-reboot`), 1 a QEMU error.
//!
//! aarch64: semihosting SYS_EXIT_EXTENDED makes QEMU exit with the status the
//! kernel passes, and it passes the same `0x81 + 2 * code`, so `DebugExit`
//! decodes both arches; PSCI SYSTEM_OFF (no `-semihosting`) gives 0 = no code.
//! `Direct` (status = code) is kept for images that exit that way.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitDecoding {
    DebugExit,
    Direct,
}

/// What a QEMU exit status says about the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelExit {
    /// The kernel exited with this code (0 = success).
    Code(u8),
    /// QEMU stopped without a kernel exit code (status given).
    NoCode(i32),
    /// QEMU was killed by a signal (e.g. our timeout).
    Killed,
}

impl ExitDecoding {
    pub fn decode(self, status: Option<i32>) -> KernelExit {
        let Some(s) = status else {
            return KernelExit::Killed;
        };
        match self {
            ExitDecoding::DebugExit if (0x81..=0xff).contains(&s) && s % 2 == 1 => {
                KernelExit::Code(((s - 0x81) / 2) as u8)
            }
            ExitDecoding::DebugExit => KernelExit::NoCode(s),
            ExitDecoding::Direct if (0..=255).contains(&s) => KernelExit::Code(s as u8),
            ExitDecoding::Direct => KernelExit::NoCode(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_exit_codes() {
        let d = ExitDecoding::DebugExit;
        assert_eq!(d.decode(Some(129)), KernelExit::Code(0));
        assert_eq!(d.decode(Some(135)), KernelExit::Code(3));
        assert_eq!(d.decode(Some(255)), KernelExit::Code(63));
        assert_eq!(d.decode(Some(0)), KernelExit::NoCode(0));
        assert_eq!(d.decode(Some(1)), KernelExit::NoCode(1));
        assert_eq!(d.decode(Some(130)), KernelExit::NoCode(130));
        assert_eq!(d.decode(None), KernelExit::Killed);
    }

    #[test]
    fn direct_codes() {
        assert_eq!(ExitDecoding::Direct.decode(Some(0)), KernelExit::Code(0));
        assert_eq!(ExitDecoding::Direct.decode(Some(3)), KernelExit::Code(3));
    }
}
