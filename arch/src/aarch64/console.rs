//! PL011 UART console (ARM PrimeCell UART, DDI 0183). The base address comes
//! from the FDT (`/chosen/stdout-path`); until then the QEMU virt default is used.
//! Polled, lock-free: the trap handler writes through it too.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// QEMU virt's UART0, used until the FDT has been read.
const VIRT_PL011: u64 = 0x0900_0000;

const DR: u64 = 0x00; // data
const FR: u64 = 0x18; // flags
const LCR_H: u64 = 0x2c; // line control
const CR: u64 = 0x30; // control
const FR_RXFE: u32 = 1 << 4; // receive FIFO empty
const FR_TXFF: u32 = 1 << 5; // transmit FIFO full
const LCR_H_FEN: u32 = 1 << 4; // FIFOs on
const LCR_H_WLEN8: u32 = 3 << 5; // 8 data bits, no parity, 1 stop bit
const CR_UARTEN: u32 = 1 << 0;
const CR_TXE: u32 = 1 << 8;
const CR_RXE: u32 = 1 << 9;

static BASE: AtomicU64 = AtomicU64::new(VIRT_PL011);

fn reg(off: u64) -> *mut u32 {
    (BASE.load(Ordering::Relaxed) + off) as *mut u32
}

/// Use the PL011 at `base` (8N1, FIFOs on). QEMU ignores the baud divisors,
/// real hardware keeps what the firmware set.
pub fn init(base: u64) {
    BASE.store(base, Ordering::Relaxed);
    // SAFETY: `base` is the PL011 the FDT names; it is mapped (boot map covers
    // the low GiB as Device memory, mm::init maps it again).
    unsafe {
        reg(CR).write_volatile(0);
        reg(LCR_H).write_volatile(LCR_H_FEN | LCR_H_WLEN8);
        reg(CR).write_volatile(CR_UARTEN | CR_TXE | CR_RXE);
    }
}

/// The console's MMIO base (mm maps it before switching page tables).
pub fn base() -> u64 {
    BASE.load(Ordering::Relaxed)
}

fn put(b: u8) {
    // SAFETY: the console registers are mapped as Device memory.
    unsafe {
        while reg(FR).read_volatile() & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        reg(DR).write_volatile(b as u32);
    }
}

pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            put(b'\r');
        }
        put(b);
    }
}

pub fn read_byte() -> Option<u8> {
    // SAFETY: as in `put`.
    unsafe {
        if reg(FR).read_volatile() & FR_RXFE != 0 {
            None
        } else {
            Some(reg(DR).read_volatile() as u8)
        }
    }
}

/// `fmt::Write` over the console, for reports that must not take locks.
pub struct Writer;

impl fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Boot cannot go on (before `kernel_main`, no panic handler of ours yet):
/// say why and power off with the exception exit code.
pub fn early_panic(args: fmt::Arguments<'_>) -> ! {
    use fmt::Write;
    let _ = writeln!(Writer, "\nBOOT FAILED: {args}");
    super::power::exit(crate::exit_code::EXCEPTION)
}
