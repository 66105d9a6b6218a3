//! The `log` facade backend. Each record is written once, as a structured record (level,
//! time since the first instruction, target, message), into the kernel's log ring
//! (`arch::log_ring`); the console prints the same record's line, and the MCP `logs` tool
//! pages through the ring ([`with_ring`]).

use arch::log_ring::{Level as RingLevel, LogRing, Record, Visit};
use arch::spin::SpinLock;
use core::fmt::{self, Write};
use log::{Level, LevelFilter, Log, Metadata};

const RING_BYTES: usize = 64 * 1024;
/// Longest message kept (longer ones are cut); formatted on the stack.
const MAX_MESSAGE: usize = 512;
/// How long a logger waits for the ring before it gives the record to the console only.
/// The lock is held for a copy of at most one record, so a wait this long means the ring's
/// holder is this very CPU (a fault or an allocation failure while the ring was locked).
const RING_LOCK_SPINS: u32 = 1 << 20;

static RING: SpinLock<LogRing<RING_BYTES>> = SpinLock::new(LogRing::new());
/// Serialises console output so lines do not interleave.
static CONSOLE: SpinLock<()> = SpinLock::new(());
static LOGGER: KernelLogger = KernelLogger;

struct KernelLogger;

pub fn init(level: Option<&str>) {
    let filter = match level {
        Some("error") => LevelFilter::Error,
        Some("warn") => LevelFilter::Warn,
        Some("debug") => LevelFilter::Debug,
        Some("trace") => LevelFilter::Trace,
        _ => LevelFilter::Info,
    };
    // Only fails if a logger is already set: then the first one stays.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(filter);
}

fn ring_level(l: Level) -> RingLevel {
    match l {
        Level::Error => RingLevel::Error,
        Level::Warn => RingLevel::Warn,
        Level::Info => RingLevel::Info,
        Level::Debug => RingLevel::Debug,
        Level::Trace => RingLevel::Trace,
    }
}

impl Log for KernelLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut message = FixedStr::<MAX_MESSAGE>::new();
        let _ = write!(message, "{}", record.args());
        let mut entry = Record {
            seq: 0,
            level: ring_level(record.level()),
            time_ns: arch::time::since_boot_ns(),
            target: record.target(),
            message: message.as_str(),
        };
        for _ in 0..RING_LOCK_SPINS {
            if let Some(mut ring) = RING.try_lock() {
                entry.seq = ring.push(entry.level, entry.time_ns, entry.target, entry.message);
                break;
            }
            core::hint::spin_loop();
        }
        let _g = CONSOLE.try_lock();
        let _ = writeln!(RawConsole, "{entry}");
    }

    fn flush(&self) {}
}

/// Runs `f` on the log ring (locked meanwhile: `f` must not log).
pub fn with_ring<R>(f: impl FnOnce(&LogRing<RING_BYTES>) -> R) -> R {
    f(&RING.lock())
}

/// Calls `f` with each record from `cursor` on (oldest first); returns where to go on and
/// how many records the cursor had missed.
pub fn read_since(cursor: u64, mut f: impl FnMut(&Record<'_>)) -> Visit {
    with_ring(|ring| {
        ring.read(cursor, |record| {
            f(record);
            true
        })
    })
}

/// Cursor that reads only records logged from now on.
pub fn cursor_now() -> u64 {
    with_ring(LogRing::next_seq)
}

/// Writes straight to the console, for panic and fault paths.
pub struct RawConsole;

impl Write for RawConsole {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        arch::console::write_bytes(s.as_bytes());
        Ok(())
    }
}

/// A string in a fixed buffer; writes past the end are cut at a char boundary.
pub struct FixedStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FixedStr<N> {
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    pub fn push_str(&mut self, s: &str) {
        let mut n = s.len().min(N - self.len);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
    }

    pub fn as_str(&self) -> &str {
        // Only whole chars are ever copied in.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Write for FixedStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s);
        Ok(())
    }
}
