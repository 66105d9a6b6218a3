//! Power-off with an exit code through QEMU's isa-debug-exit device
//! (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`); the encoding, and how
//! the runner decodes it, is in [`crate::exit_code`].

use super::port::outl;
use crate::exit_code;

const DEBUG_EXIT_PORT: u16 = 0xf4;

pub fn exit(code: u8) -> ! {
    super::console::write_bytes(&exit_code::exit_line(code));
    // SAFETY: writing the debug-exit port; without the device this is a no-op.
    unsafe { outl(DEBUG_EXIT_PORT, exit_code::debug_exit_value(code)) };
    // No debug-exit device (e.g. real hardware): stop here.
    super::cpu::halt()
}
