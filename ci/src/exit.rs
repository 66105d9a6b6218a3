//! Decoding QEMU's exit status into the kernel's exit code.
//!
//! `DebugExit` is the kernel's own encoding on both architectures (x86
//! isa-debug-exit, aarch64 semihosting), defined with the codes in
//! `arch::exit_code`; status 0 means QEMU stopped without a kernel exit (a triple
//! fault with `-no-reboot`, PSCI SYSTEM_OFF), 1 a QEMU error. `Direct`
//! (status = code) is kept for images that exit that way.

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
            ExitDecoding::DebugExit => match arch::exit_code::from_qemu_status(s) {
                Some(code) => KernelExit::Code(code),
                None => KernelExit::NoCode(s),
            },
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
