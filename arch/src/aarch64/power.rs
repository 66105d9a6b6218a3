//! Power-off with an exit code.
//!
//! - With QEMU `-semihosting`: Arm semihosting SYS_EXIT_EXTENDED (0x20) with
//!   reason ADP_Stopped_ApplicationExit (0x20026); QEMU exits with the
//!   subcode as its status. We pass `exit_code::qemu_status(code)`, the status
//!   x86's isa-debug-exit produces, so one decoding serves both architectures
//!   (see [`crate::exit_code`]). Semihosting traps are `HLT #0xF000` on A64.
//! - Otherwise: PSCI SYSTEM_OFF (0x8400_0008) through the conduit the FDT's
//!   /psci `method` names (hvc on virt at EL1); QEMU then exits with 0, so a
//!   non-zero code is only visible on the console.
//!
//! Whether semihosting is on is probed once at boot: without it, HLT is an
//! undefined instruction, which the trap handler recognises at the probe's
//! address and skips.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, Ordering};

const SYS_ERRNO: u64 = 0x13;
const SYS_EXIT_EXTENDED: u64 = 0x20;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;

static SEMIHOSTING: AtomicBool = AtomicBool::new(false);
static PSCI_SMC: AtomicBool = AtomicBool::new(false);

global_asm!(
    r#"
    .section .text.semihosting_probe, "ax"
    .global mk_semihosting_probe
    .global mk_semihosting_probe_hlt
mk_semihosting_probe:
    mov     x0, #{errno}
    mov     x1, xzr
mk_semihosting_probe_hlt:
    hlt     #0xf000
    ret
    "#,
    errno = const SYS_ERRNO,
);

extern "C" {
    /// Returns SYS_ERRNO's value with semihosting, `u64::MAX` without (set by
    /// the trap handler).
    fn mk_semihosting_probe() -> u64;
    static mk_semihosting_probe_hlt: u8;
}

/// Address of the probe's HLT, for the trap handler.
pub(super) fn probe_address() -> u64 {
    // Only the symbol's address is taken.
    core::ptr::addr_of!(mk_semihosting_probe_hlt) as u64
}

/// Probe for semihosting; needs the exception vectors installed.
pub(super) fn init() {
    // SAFETY: the probe either performs a harmless semihosting call or takes
    // an undefined-instruction exception the trap handler resumes from.
    let r = unsafe { mk_semihosting_probe() };
    SEMIHOSTING.store(r != u64::MAX, Ordering::Relaxed);
}

/// Read the PSCI conduit from the FDT (`method = "hvc" | "smc"`).
pub(super) fn init_psci(fdt: &crate::fdt::Fdt<'_>) {
    let smc = fdt
        .nodes()
        .find(|n| n.is_compatible("arm,psci-0.2") || n.is_compatible("arm,psci-1.0"))
        .and_then(|n| n.property("method")?.as_str())
        == Some("smc");
    PSCI_SMC.store(smc, Ordering::Relaxed);
}

pub fn semihosting() -> bool {
    SEMIHOSTING.load(Ordering::Relaxed)
}

/// Power off with a code from [`crate::exit_code`]. Never returns.
pub fn exit(code: u8) -> ! {
    super::console::write_bytes(&crate::exit_code::exit_line(code));
    if semihosting() {
        let status = crate::exit_code::qemu_status(code) as u64;
        let block = [ADP_STOPPED_APPLICATION_EXIT, status];
        // SAFETY: semihosting is on (probed); QEMU reads the two-word block.
        unsafe {
            asm!("hlt #0xf000", in("x0") SYS_EXIT_EXTENDED, in("x1") block.as_ptr(),
                 options(nostack));
        }
    }
    if code != 0 {
        super::console::write_bytes(
            b"power: no semihosting, exit code is lost (PSCI SYSTEM_OFF exits 0)\n",
        );
    }
    // SAFETY: PSCI SYSTEM_OFF does not return on success.
    unsafe {
        if PSCI_SMC.load(Ordering::Relaxed) {
            asm!("smc #0", inout("x0") PSCI_SYSTEM_OFF => _, options(nostack));
        } else {
            asm!("hvc #0", inout("x0") PSCI_SYSTEM_OFF => _, options(nostack));
        }
    }
    super::cpu::halt()
}
