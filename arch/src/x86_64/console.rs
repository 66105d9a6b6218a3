//! COM1 16550 UART (port 0x3f8) at 115200 8N1, polled. Present on q35 and on
//! microvm (isa-serial). Lock-free so the trap handler can always print.

use super::port::{inb, outb};

const COM1: u16 = 0x3f8;
const LSR: u16 = COM1 + 5;
const LSR_DATA_READY: u8 = 1 << 0;
const LSR_THR_EMPTY: u8 = 1 << 5;

pub fn init() {
    // SAFETY: standard 16550 programming sequence on the COM1 ports.
    unsafe {
        outb(COM1 + 1, 0x00); // no interrupts
        outb(COM1 + 3, 0x80); // DLAB on
        outb(COM1, 0x01); // divisor 1 = 115200 baud
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8N1, DLAB off
        outb(COM1 + 2, 0xc7); // FIFO on, cleared, 14-byte threshold
        outb(COM1 + 4, 0x03); // DTR | RTS
    }
}

/// With the FIFO on, THR-empty means the whole 16-byte FIFO is empty: after
/// one status read we may send 16 bytes (port reads are the slow part).
const FIFO_DEPTH: usize = 16;

fn wait_fifo_empty() {
    // Bounded wait: a missing UART reads 0xff ("empty") anyway.
    for _ in 0..100_000 {
        // SAFETY: reading the line status register has no side effects.
        if unsafe { inb(LSR) } & LSR_THR_EMPTY != 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// Write bytes; `\n` becomes `\r\n` for terminals.
pub fn write_bytes(bytes: &[u8]) {
    let mut room = 0;
    for &b in bytes {
        for c in if b == b'\n' {
            &b"\r\n"[..]
        } else {
            core::slice::from_ref(&b)
        } {
            if room == 0 {
                wait_fifo_empty();
                room = FIFO_DEPTH;
            }
            // SAFETY: writing the transmit holding register.
            unsafe { outb(COM1, *c) };
            room -= 1;
        }
    }
}

pub fn read_byte() -> Option<u8> {
    // SAFETY: reading LSR then RBR.
    unsafe { (inb(LSR) & LSR_DATA_READY != 0 && inb(LSR) != 0xff).then(|| inb(COM1)) }
}

/// `core::fmt` sink on the console, for arch code that runs without `log`.
pub struct Writer;

impl core::fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}
