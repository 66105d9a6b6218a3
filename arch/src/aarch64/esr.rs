//! Decoding of the aarch64 Exception Syndrome Register (ESR_ELx, ARM ARM
//! D19.2.40) for the exception report: the class, and for instruction and
//! data aborts the fault status, level, access and the likely cause.
//! Portable so the host tests can check it against syndromes QEMU produced.

use core::fmt;

/// An ESR_EL1 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

/// Abort fault status (DFSC/IFSC, ISS[5:0]) grouped by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    AddressSize,
    Translation,
    AccessFlag,
    Permission,
    SyncExternal,
    Alignment,
    TlbConflict,
    Other,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::AddressSize => "address size fault",
            FaultKind::Translation => "translation fault",
            FaultKind::AccessFlag => "access flag fault",
            FaultKind::Permission => "permission fault",
            FaultKind::SyncExternal => "synchronous external abort",
            FaultKind::Alignment => "alignment fault",
            FaultKind::TlbConflict => "TLB conflict abort",
            FaultKind::Other => "other fault",
        }
    }
}

/// What an abort did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Fetch,
}

impl Esr {
    /// Exception class, ESR[31:26].
    pub fn class(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    pub fn iss(self) -> u64 {
        self.0 & 0x1ff_ffff
    }

    pub fn class_name(self) -> &'static str {
        match self.class() {
            0x00 => "Unknown reason (undefined instruction)",
            0x01 => "WFI/WFE trapped",
            0x07 => "SVE/SIMD/FP access trapped",
            0x0e => "Illegal execution state",
            0x15 => "SVC",
            0x16 => "HVC",
            0x17 => "SMC",
            0x18 => "MSR/MRS/system instruction trapped",
            0x19 => "SVE access trapped",
            0x20 => "Instruction Abort from lower EL",
            0x21 => "Instruction Abort",
            0x22 => "PC alignment fault",
            0x24 => "Data Abort from lower EL",
            0x25 => "Data Abort",
            0x26 => "SP alignment fault",
            0x2c => "Floating-point exception",
            0x2f => "SError interrupt",
            0x30 | 0x31 => "Breakpoint",
            0x32 | 0x33 => "Software step",
            0x34 | 0x35 => "Watchpoint",
            0x3c => "BRK instruction",
            _ => "Reserved exception class",
        }
    }

    pub fn is_instruction_abort(self) -> bool {
        matches!(self.class(), 0x20 | 0x21)
    }

    pub fn is_data_abort(self) -> bool {
        matches!(self.class(), 0x24 | 0x25)
    }

    pub fn is_abort(self) -> bool {
        self.is_instruction_abort() || self.is_data_abort()
    }

    /// Fault kind and translation level (levels for the kinds that have one).
    pub fn fault(self) -> Option<(FaultKind, Option<u8>)> {
        if !self.is_abort() {
            return None;
        }
        let fsc = (self.iss() & 0x3f) as u8;
        let level = Some(fsc & 3);
        Some(match fsc {
            0x00..=0x03 => (FaultKind::AddressSize, level),
            0x04..=0x07 => (FaultKind::Translation, level),
            0x09..=0x0b => (FaultKind::AccessFlag, level),
            0x0d..=0x0f => (FaultKind::Permission, level),
            0x10 => (FaultKind::SyncExternal, None),
            0x21 => (FaultKind::Alignment, None),
            0x30 => (FaultKind::TlbConflict, None),
            _ => (FaultKind::Other, None),
        })
    }

    pub fn access(self) -> Option<Access> {
        if self.is_instruction_abort() {
            Some(Access::Fetch)
        } else if self.is_data_abort() {
            // WnR, ISS[6].
            Some(if self.iss() & (1 << 6) != 0 {
                Access::Write
            } else {
                Access::Read
            })
        } else {
            None
        }
    }

    /// Whether FAR holds the faulting address (aborts with FnV, ISS[10], clear).
    pub fn far_valid(self) -> bool {
        self.is_abort() && self.iss() & (1 << 10) == 0
    }

    /// The likely cause of an abort at `far`; `in_stack_guard` says whether
    /// `far` lies in the guard page of a known stack.
    pub fn cause(self, far: u64, in_stack_guard: bool) -> Option<&'static str> {
        let (kind, _) = self.fault()?;
        let access = self.access()?;
        Some(match (kind, access) {
            (FaultKind::Translation, _) if in_stack_guard => {
                "stack overflow: access to the guard page below a stack"
            }
            (FaultKind::Translation, _) if far < 4096 => {
                "access to an unmapped page (null pointer)"
            }
            (FaultKind::Translation, Access::Fetch) => "instruction fetch from an unmapped page",
            (FaultKind::Translation, Access::Write) => "write to an unmapped page",
            (FaultKind::Translation, Access::Read) => "read of an unmapped page",
            (FaultKind::Permission, Access::Fetch) => "instruction fetch from a no-execute page",
            (FaultKind::Permission, Access::Write) => "write to a read-only page",
            (FaultKind::Permission, Access::Read) => "protection violation on read",
            (FaultKind::Alignment, _) => {
                "unaligned access to Device memory or with alignment checks on"
            }
            _ => "see the fault status",
        })
    }
}

/// "Data Abort (EC 0x25)" plus, for aborts, [`Esr::detail`].
impl fmt::Display for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (EC {:#04x}){}",
            self.class_name(),
            self.class(),
            self.detail()
        )
    }
}

impl Esr {
    /// For aborts ": permission fault at level 3, write"; empty otherwise.
    pub fn detail(self) -> Detail {
        Detail(self)
    }
}

/// See [`Esr::detail`].
pub struct Detail(Esr);

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((kind, level)) = self.0.fault() else {
            return Ok(());
        };
        write!(f, ": {}", kind.name())?;
        if let Some(l) = level {
            write!(f, " at level {l}")?;
        }
        match self.0.access() {
            Some(Access::Write) => write!(f, ", write"),
            Some(Access::Read) => write!(f, ", read"),
            Some(Access::Fetch) => write!(f, ", instruction fetch"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Syndromes QEMU 7.2 reported for the boot self-tests (virt, -cpu max).
    #[test]
    fn selftest_syndromes() {
        let write_text = Esr(0x9600_004f);
        assert_eq!(
            write_text.to_string(),
            "Data Abort (EC 0x25): permission fault at level 3, write"
        );
        assert_eq!(
            write_text.cause(0x4008_22e8, false),
            Some("write to a read-only page")
        );

        let exec_data = Esr(0x8600_000f);
        assert_eq!(
            exec_data.to_string(),
            "Instruction Abort (EC 0x21): permission fault at level 3, instruction fetch"
        );
        assert_eq!(
            exec_data.cause(0x4009_8000, false),
            Some("instruction fetch from a no-execute page")
        );

        let null_read = Esr(0x9600_0006);
        assert_eq!(
            null_read.to_string(),
            "Data Abort (EC 0x25): translation fault at level 2, read"
        );
        assert_eq!(
            null_read.cause(0, false),
            Some("access to an unmapped page (null pointer)")
        );
        assert_eq!(
            null_read.cause(0x1_0000_0000, false),
            Some("read of an unmapped page")
        );

        let overflow = Esr(0x9600_0047);
        assert_eq!(
            overflow.to_string(),
            "Data Abort (EC 0x25): translation fault at level 3, write"
        );
        assert_eq!(
            overflow.cause(0x4000_7ed0, true),
            Some("stack overflow: access to the guard page below a stack")
        );
        assert_eq!(
            overflow.cause(0x4000_7ed0, false),
            Some("write to an unmapped page")
        );
        assert!(overflow.far_valid());
    }

    #[test]
    fn non_aborts_have_no_fault_or_cause() {
        // The semihosting probe without -semihosting: HLT is undefined (EC 0).
        let undef = Esr(0x0200_0000);
        assert_eq!(
            undef.to_string(),
            "Unknown reason (undefined instruction) (EC 0x00)"
        );
        assert_eq!(
            (undef.fault(), undef.access(), undef.cause(0, false)),
            (None, None, None)
        );
        assert!(!undef.far_valid());
        // SVE access trapped to EL2 (seen before CPTR_EL2.TZ was cleared).
        assert_eq!(Esr(0x6600_0000).class_name(), "SVE access trapped");
        assert_eq!(Esr(0xf200_0000).to_string(), "BRK instruction (EC 0x3c)");
    }

    #[test]
    fn far_not_valid_and_alignment() {
        let fnv = Esr(0x9600_0410); // external abort, FnV set
        assert!(!fnv.far_valid());
        assert_eq!(fnv.fault(), Some((FaultKind::SyncExternal, None)));
        let align = Esr(0x9600_0061); // write, alignment fault
        assert_eq!(
            align.to_string(),
            "Data Abort (EC 0x25): alignment fault, write"
        );
    }
}
