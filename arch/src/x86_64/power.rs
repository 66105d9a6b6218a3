//! Power-off with an exit code through QEMU's isa-debug-exit device
//! (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
//!
//! QEMU exits with status `(v << 1) | 1` for a written value `v`. We write
//! `0x40 | code`, so a kernel exit gives host status `0x81 + 2 * code`
//! (129 = success) and is never confused with QEMU's own status 0 (normal
//! shutdown, e.g. a triple fault with `-no-reboot`) or 1 (QEMU error). The
//! runner (`ci`) decodes it. Codes above 63 are clamped to 63.

use super::port::outl;

const DEBUG_EXIT_PORT: u16 = 0xf4;
pub const EXIT_BASE: u32 = 0x40;

pub fn exit(code: u8) -> ! {
    let code = code.min(63);
    let mut line = *b"microkernelia: exit 00\n";
    line[20] = b'0' + code / 10;
    line[21] = b'0' + code % 10;
    super::console::write_bytes(&line);
    // Safety: writing the debug-exit port; without the device this is a no-op.
    unsafe { outl(DEBUG_EXIT_PORT, EXIT_BASE | code as u32) };
    // No debug-exit device (e.g. real hardware): stop here.
    super::cpu::halt()
}
