//! The `logs` tool's view of the log ring (`arch::log_ring`, the one ring the kernel's
//! logger writes and the host servers reuse): pages of lines by cursor, with MCP levels.

use alloc::string::String;
use alloc::vec::Vec;

pub use arch::log_ring::{Level, LogRing, Record};
use mcp::LogLevel;

/// One line of a [`LogPage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The record's sequence number (a cursor that reads from this line on).
    pub seq: u64,
    pub level: LogLevel,
    /// Milliseconds since boot.
    pub ms: u64,
    pub text: String,
}

/// A page of lines returned by [`page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Cursor to pass next time.
    pub next_cursor: u64,
    /// Lines at or after the requested cursor that were overwritten before being read.
    pub dropped: u64,
}

/// The MCP level of a log record. MCP has no trace level: trace records read as `debug`.
pub fn mcp_level(level: Level) -> LogLevel {
    match level {
        Level::Error => LogLevel::Error,
        Level::Warn => LogLevel::Warning,
        Level::Info => LogLevel::Info,
        Level::Debug | Level::Trace => LogLevel::Debug,
    }
}

/// Records with `seq >= cursor` whose level is at least `min_level`, at most `limit` of
/// them; the cursor advances past the records skipped by the level filter too.
pub fn page<const N: usize>(
    ring: &LogRing<N>,
    cursor: u64,
    min_level: LogLevel,
    limit: usize,
) -> LogPage {
    let mut lines = Vec::new();
    let visit = ring.read(cursor, |record| {
        if lines.len() == limit {
            return false;
        }
        let level = mcp_level(record.level);
        if level >= min_level {
            lines.push(LogLine {
                seq: record.seq,
                level,
                ms: record.time_ns / 1_000_000,
                text: String::from(record.message),
            });
        }
        true
    });
    LogPage {
        lines,
        next_cursor: visit.next,
        dropped: visit.dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn cursor_paging_and_level_filter() {
        // Records of 12 + 1 + 6 bytes: an 80-byte ring holds 4 of them.
        let mut ring = LogRing::<80>::new();
        for i in 0..6u64 {
            let level = if i % 2 == 0 {
                Level::Info
            } else {
                Level::Error
            };
            ring.push(level, i * 1_000_000, "t", &format!("line {i}"));
        }
        // Lines 0 and 1 were overwritten.
        let page0 = page(&ring, 0, LogLevel::Debug, 100);
        assert_eq!(page0.dropped, 2);
        assert_eq!(
            page0.lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
            [2, 3, 4, 5]
        );
        assert_eq!(page0.lines[0].ms, 2);
        assert_eq!(page0.next_cursor, 6);
        let p = page(&ring, 3, LogLevel::Error, 100);
        assert_eq!(p.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [3, 5]);
        let p = page(&ring, 2, LogLevel::Debug, 1);
        assert_eq!(p.lines.len(), 1);
        assert_eq!(p.next_cursor, 3);
        let p = page(&ring, 6, LogLevel::Debug, 10);
        assert!(p.lines.is_empty());
        assert_eq!(p.next_cursor, 6);
        assert_eq!(p.dropped, 0);
    }

    #[test]
    fn levels_map_to_mcp_levels() {
        assert_eq!(mcp_level(Level::Warn), LogLevel::Warning);
        assert_eq!(mcp_level(Level::Trace), LogLevel::Debug);
        assert_eq!(mcp_level(Level::Error).as_str(), "error");
    }
}
