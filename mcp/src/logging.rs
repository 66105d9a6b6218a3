//! Log levels (the RFC 5424 severities MCP uses) and the bounded ring of log lines behind
//! the `logs` tool: readers page through it with a cursor (a sequence number), so a
//! `logs --follow` client never sees a line twice and learns when lines were dropped.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

/// MCP logging levels, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

pub const LOG_LEVEL_NAMES: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

impl LogLevel {
    pub const ALL: [LogLevel; 8] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Notice,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Alert,
        LogLevel::Emergency,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        LOG_LEVEL_NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
    }

    pub fn as_str(self) -> &'static str {
        LOG_LEVEL_NAMES[self as usize]
    }
}

/// One stored line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Sequence number, starting at 0 and never reused.
    pub seq: u64,
    pub level: LogLevel,
    /// Time stamp in milliseconds since boot (supplied by the caller).
    pub ms: u64,
    pub text: String,
}

/// A page of lines returned by [`LogRing::since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Cursor to pass next time.
    pub next_cursor: u64,
    /// Lines older than the requested cursor that were overwritten before being read.
    pub dropped: u64,
}

/// Bounded ring of log lines; the oldest line is dropped when full.
#[derive(Debug)]
pub struct LogRing {
    lines: VecDeque<LogLine>,
    capacity: usize,
    next_seq: u64,
}

impl LogRing {
    pub fn new(capacity: usize) -> Self {
        LogRing {
            lines: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            next_seq: 0,
        }
    }

    pub fn push(&mut self, level: LogLevel, ms: u64, text: impl Into<String>) {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(LogLine {
            seq: self.next_seq,
            level,
            ms,
            text: text.into(),
        });
        self.next_seq += 1;
    }

    /// Lines with `seq >= cursor` and `level >= min_level`, at most `limit` of them.
    pub fn since(&self, cursor: u64, min_level: LogLevel, limit: usize) -> LogPage {
        let oldest = self.lines.front().map_or(self.next_seq, |l| l.seq);
        let dropped = oldest.saturating_sub(cursor);
        let mut lines = Vec::new();
        let mut next_cursor = cursor.max(oldest).min(self.next_seq);
        for line in self.lines.iter().filter(|l| l.seq >= cursor) {
            if lines.len() == limit {
                break;
            }
            next_cursor = line.seq + 1;
            if line.level >= min_level {
                lines.push(line.clone());
            }
        }
        LogPage {
            lines,
            next_cursor,
            dropped,
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_paging_and_level_filter() {
        let mut ring = LogRing::new(4);
        for i in 0..6u64 {
            let level = if i % 2 == 0 {
                LogLevel::Info
            } else {
                LogLevel::Error
            };
            ring.push(level, i, alloc::format!("line {i}"));
        }
        // Lines 0 and 1 were overwritten.
        let page = ring.since(0, LogLevel::Debug, 100);
        assert_eq!(page.dropped, 2);
        assert_eq!(
            page.lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
            [2, 3, 4, 5]
        );
        assert_eq!(page.next_cursor, 6);
        let page = ring.since(3, LogLevel::Error, 100);
        assert_eq!(page.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [3, 5]);
        let page = ring.since(2, LogLevel::Debug, 1);
        assert_eq!(page.lines.len(), 1);
        assert_eq!(page.next_cursor, 3);
        let page = ring.since(6, LogLevel::Debug, 10);
        assert!(page.lines.is_empty());
        assert_eq!(page.next_cursor, 6);
        assert_eq!(page.dropped, 0);
    }

    #[test]
    fn level_names_round_trip() {
        for l in LogLevel::ALL {
            assert_eq!(LogLevel::parse(l.as_str()), Some(l));
        }
        assert_eq!(LogLevel::parse("verbose"), None);
        assert!(LogLevel::Debug < LogLevel::Emergency);
    }
}
