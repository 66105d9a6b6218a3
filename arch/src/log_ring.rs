//! The kernel log: one bounded ring of structured records (level, time, target, message),
//! written once by the logger. The serial console prints each record as it is pushed (a
//! record's `Display` is the console line) and the MCP `logs` tool pages through the ring
//! by sequence number. Fixed size and no allocation: the logger runs before the heap exists,
//! and whatever is logged, the ring never grows.
//!
//! Records are stored back to back in a circular byte buffer:
//! `[u16 record length][u8 level][u8 target length][u64 time ns][target][message]`.
//! Sequence numbers count records since boot. When a new record needs room, the oldest
//! ones are dropped; a reader whose cursor points at a dropped record learns how many it
//! missed.

use core::fmt;

/// Severity, in the order and with the names of the `log` crate (most severe first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Level {
    Error = 1,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Error,
        Level::Warn,
        Level::Info,
        Level::Debug,
        Level::Trace,
    ];

    /// `ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }

    fn from_u8(v: u8) -> Level {
        Level::ALL
            .get(usize::from(v).wrapping_sub(1))
            .copied()
            .unwrap_or(Level::Error)
    }
}

/// One log record as read back from the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Position in the log since boot (0, 1, 2, ...).
    pub seq: u64,
    pub level: Level,
    /// When it was logged, in nanoseconds since boot.
    pub time_ns: u64,
    /// Where it comes from (the `log` target, usually the module path).
    pub target: &'a str,
    pub message: &'a str,
}

/// The console line: `[    s.micros] LEVEL message`.
impl fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:5}.{:06}] {:<5} {}",
            self.time_ns / 1_000_000_000,
            (self.time_ns / 1000) % 1_000_000,
            self.level.name(),
            self.message
        )
    }
}

/// Where a [`LogRing::read`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visit {
    /// Cursor to pass next time (one past the last record consumed).
    pub next: u64,
    /// Records at or after the given cursor that were dropped before they could be read.
    pub dropped: u64,
}

/// Bytes in front of a record's target and message.
const HEADER: usize = 12;
/// Longest target stored; longer ones are cut.
pub const MAX_TARGET: usize = 64;
/// Upper bound of [`LogRing::MAX_RECORD`] for every ring size (the reader's buffer).
const RECORD_LIMIT: usize = 4096;

/// A ring of `N` bytes of records.
pub struct LogRing<const N: usize> {
    buf: [u8; N],
    /// Absolute byte offset one past the newest record.
    head: u64,
    /// Absolute byte offset of the oldest record still held.
    tail: u64,
    /// Sequence number of the record at `tail`.
    first_seq: u64,
    /// Sequence number the next record gets.
    next_seq: u64,
}

impl<const N: usize> LogRing<N> {
    /// Largest record in bytes (header, target and message); longer messages are cut at a
    /// character boundary.
    pub const MAX_RECORD: usize = if N / 2 < RECORD_LIMIT {
        N / 2
    } else {
        RECORD_LIMIT
    };

    pub const fn new() -> Self {
        const { assert!(N >= 4 * HEADER, "a log ring needs room for records") };
        Self {
            buf: [0; N],
            head: 0,
            tail: 0,
            first_seq: 0,
            next_seq: 0,
        }
    }

    /// Appends a record, dropping the oldest ones as needed; returns its sequence number.
    pub fn push(&mut self, level: Level, time_ns: u64, target: &str, message: &str) -> u64 {
        // The target may take at most half the room, the message gets the rest.
        let room = Self::MAX_RECORD - HEADER;
        let target = cut(target, MAX_TARGET.min(room / 2));
        let message = cut(message, room - target.len());
        let len = HEADER + target.len() + message.len();
        while self.head + len as u64 - self.tail > N as u64 {
            self.tail += self.record_len(self.tail) as u64;
            self.first_seq += 1;
        }
        let mut header = [0u8; HEADER];
        header[..2].copy_from_slice(&(len as u16).to_le_bytes());
        header[2] = level as u8;
        header[3] = target.len() as u8;
        header[4..].copy_from_slice(&time_ns.to_le_bytes());
        self.write_at(self.head, &header);
        self.write_at(self.head + HEADER as u64, target.as_bytes());
        self.write_at(
            self.head + (HEADER + target.len()) as u64,
            message.as_bytes(),
        );
        self.head += len as u64;
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Sequence number of the oldest record still held.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Sequence number of the next record (a cursor that reads only what comes after now).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Visits the records with `seq >= cursor`, oldest first, while `f` returns true; the
    /// record `f` refuses is not consumed. A cursor past the newest record reads nothing.
    pub fn read(&self, cursor: u64, mut f: impl FnMut(&Record<'_>) -> bool) -> Visit {
        let dropped = self.first_seq.saturating_sub(cursor);
        let mut next = cursor.clamp(self.first_seq, self.next_seq);
        let mut at = self.tail;
        let mut seq = self.first_seq;
        let mut bytes = [0u8; RECORD_LIMIT];
        while seq < self.next_seq {
            let len = self.record_len(at);
            if seq >= cursor {
                let record = &mut bytes[..len];
                self.read_at(at, record);
                let target_len = usize::from(record[3]);
                let time_ns = u64::from_le_bytes([
                    record[4], record[5], record[6], record[7], record[8], record[9], record[10],
                    record[11],
                ]);
                let (target, message) = record[HEADER..].split_at(target_len);
                let rec = Record {
                    seq,
                    level: Level::from_u8(record[2]),
                    time_ns,
                    // Only whole characters are stored (see `cut`).
                    target: core::str::from_utf8(target).unwrap_or(""),
                    message: core::str::from_utf8(message).unwrap_or(""),
                };
                if !f(&rec) {
                    break;
                }
                next = seq + 1;
            }
            at += len as u64;
            seq += 1;
        }
        Visit { next, dropped }
    }

    fn record_len(&self, at: u64) -> usize {
        let mut b = [0u8; 2];
        self.read_at(at, &mut b);
        usize::from(u16::from_le_bytes(b))
    }

    fn write_at(&mut self, at: u64, data: &[u8]) {
        let start = (at % N as u64) as usize;
        let first = data.len().min(N - start);
        self.buf[start..start + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
    }

    fn read_at(&self, at: u64, out: &mut [u8]) {
        let start = (at % N as u64) as usize;
        let first = out.len().min(N - start);
        out[..first].copy_from_slice(&self.buf[start..start + first]);
        let rest = out.len() - first;
        out[first..].copy_from_slice(&self.buf[..rest]);
    }
}

impl<const N: usize> Default for LogRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (seq, message) of every record from `cursor` on, and where the read ended.
    fn read_all<const N: usize>(r: &LogRing<N>, cursor: u64) -> (Vec<(u64, String)>, Visit) {
        let mut out = vec![];
        let visit = r.read(cursor, |rec| {
            out.push((rec.seq, rec.message.to_string()));
            true
        });
        (out, visit)
    }

    #[test]
    fn records_keep_their_fields_and_resume_by_cursor() {
        let mut r = LogRing::<256>::new();
        assert_eq!(
            r.push(Level::Info, 1_500_000_123, "kernel::serve", "one"),
            0
        );
        assert_eq!(r.push(Level::Trace, 7, "drivers::vsock", "two"), 1);
        let mut seen = vec![];
        let v = r.read(0, |rec| {
            seen.push((rec.seq, rec.level, rec.time_ns, rec.target.to_string()));
            true
        });
        assert_eq!(
            seen,
            [
                (0, Level::Info, 1_500_000_123, "kernel::serve".to_string()),
                (1, Level::Trace, 7, "drivers::vsock".to_string())
            ]
        );
        assert_eq!(
            v,
            Visit {
                next: 2,
                dropped: 0
            }
        );
        r.push(Level::Warn, 8, "t", "three");
        let (v2, end) = read_all(&r, v.next);
        assert_eq!(v2, [(2, "three".to_string())]);
        assert_eq!(end.next, r.next_seq());
        assert_eq!(read_all(&r, end.next).0, []);
        // A cursor from the future reads nothing and points at the next record.
        assert_eq!(
            read_all(&r, 99).1,
            Visit {
                next: 3,
                dropped: 0
            }
        );
    }

    #[test]
    fn the_console_line_is_stamped_with_level_and_time() {
        let mut r = LogRing::<256>::new();
        r.push(Level::Info, 12_003_004_005, "t", "hello");
        r.read(0, |rec| {
            assert_eq!(rec.to_string(), "[   12.003004] INFO  hello");
            true
        });
    }

    #[test]
    fn refused_record_is_not_consumed() {
        let mut r = LogRing::<256>::new();
        for m in ["a", "b", "c"] {
            r.push(Level::Info, 0, "t", m);
        }
        let mut n = 0;
        let v = r.read(0, |_| {
            n += 1;
            n <= 2
        });
        assert_eq!(v.next, 2);
        assert_eq!(read_all(&r, v.next).0, [(2, "c".to_string())]);
    }

    #[test]
    fn overwrites_oldest_and_counts_what_a_reader_missed() {
        let mut r = LogRing::<128>::new();
        for i in 0..50 {
            r.push(Level::Debug, i, "t", &format!("line {i:02}"));
        }
        assert_eq!(r.next_seq(), 50);
        // Records are 12 + 1 + 7 = 20 bytes: 128 bytes hold 6 of them.
        assert_eq!(r.first_seq(), 44);
        let (lines, v) = read_all(&r, 0);
        assert_eq!(v.dropped, 44);
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], (44, "line 44".to_string()));
        assert_eq!(lines.last().unwrap(), &(49, "line 49".to_string()));
        let (_, v) = read_all(&r, 46);
        assert_eq!(
            v,
            Visit {
                next: 50,
                dropped: 0
            }
        );
    }

    #[test]
    fn long_fields_are_cut_on_character_boundaries() {
        let mut r = LogRing::<64>::new();
        let long = "é".repeat(100);
        r.push(Level::Error, 0, &"x".repeat(100), &long);
        r.read(0, |rec| {
            assert_eq!(rec.target, "xxxxxxxxxx");
            assert_eq!(rec.message, "ééééé");
            true
        });
        let mut r = LogRing::<1024>::new();
        r.push(Level::Error, 0, &"x".repeat(100), &long);
        r.read(0, |rec| {
            assert_eq!(rec.target.len(), MAX_TARGET);
            assert_eq!(rec.message, long);
            true
        });
    }
}
