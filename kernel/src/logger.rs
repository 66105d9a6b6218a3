//! The `log` facade backend: every line goes to the console and into an
//! in-memory ring (read back later by the MCP `logs` tool through [`read_since`]),
//! stamped with monotonic time since the first instruction.

use arch::log_ring::LogRing;
use arch::spin::SpinLock;
use core::fmt::{self, Write};
use log::{Level, LevelFilter, Log, Metadata, Record};

const RING_BYTES: usize = 64 * 1024;
const MAX_LINE: usize = 512;

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

impl Log for KernelLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = FixedStr::<MAX_LINE>::new();
        let ns = arch::time::since_boot_ns();
        let _ = write!(
            line,
            "[{:5}.{:06}] {:<5} {}",
            ns / 1_000_000_000,
            (ns / 1000) % 1_000_000,
            level_name(record.level()),
            record.args()
        );
        // If a log call re-enters (from a fault while logging), skip the ring
        // rather than deadlock; the console still gets the line.
        if let Some(mut ring) = RING.try_lock() {
            ring.push(line.as_str().as_bytes());
        }
        let _g = CONSOLE.try_lock();
        arch::console::write_bytes(line.as_str().as_bytes());
        arch::console::write_bytes(b"\n");
    }

    fn flush(&self) {}
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Error => "ERROR",
        Level::Warn => "WARN",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

/// Call `f` with each log line newer than `cursor` (oldest first) and return
/// the cursor to use next time. `skipped` tells that older lines were lost.
pub fn read_since(cursor: u64, mut f: impl FnMut(&str, bool)) -> u64 {
    let ring = RING.lock();
    let mut buf = [0u8; MAX_LINE];
    let mut cur = cursor;
    while let Some(l) = ring.read(cur, &mut buf) {
        f(
            core::str::from_utf8(&buf[..l.len]).unwrap_or("<invalid utf-8>"),
            l.skipped,
        );
        cur = l.next;
    }
    cur
}

/// Like [`read_since`], with each line's own cursor, stopping when `f` returns false.
/// Returns the cursor after the last line visited.
pub fn read_from(cursor: u64, mut f: impl FnMut(&str, u64, bool) -> bool) -> u64 {
    let ring = RING.lock();
    let mut buf = [0u8; MAX_LINE];
    let mut cur = cursor;
    while let Some(l) = ring.read(cur, &mut buf) {
        // A skipped read restarts at the oldest line: its cursor is where it begins.
        let at = if l.skipped { ring.oldest() } else { cur };
        cur = l.next;
        let text = core::str::from_utf8(&buf[..l.len]).unwrap_or("<invalid utf-8>");
        if !f(text, at, l.skipped) {
            break;
        }
    }
    cur
}

/// Cursor that reads only lines logged from now on.
pub fn cursor_now() -> u64 {
    RING.lock().end()
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
