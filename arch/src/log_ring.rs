//! In-memory ring of log lines, read back by cursor (the MCP `logs` tool).
//!
//! Records are `[u16 length][bytes]` in a circular byte buffer. Cursors are
//! absolute byte offsets that only grow, so a reader knows when lines it had
//! not read yet were overwritten (`skipped`).

pub struct LogRing<const N: usize> {
    buf: [u8; N],
    /// Absolute offset one past the newest record.
    head: u64,
    /// Absolute offset of the oldest record still in the buffer.
    tail: u64,
    /// Count of lines written since boot.
    lines: u64,
}

/// Result of reading one line.
#[derive(Debug, PartialEq, Eq)]
pub struct LineRead {
    /// Bytes copied into the caller's buffer (a longer line is cut).
    pub len: usize,
    /// Cursor to pass for the next line.
    pub next: u64,
    /// True if lines between the given cursor and this one were overwritten.
    pub skipped: bool,
}

impl<const N: usize> LogRing<N> {
    /// Longest line stored; longer lines are cut.
    pub const MAX_LINE: usize = if N / 2 < 4096 { N / 2 } else { 4096 };

    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            head: 0,
            tail: 0,
            lines: 0,
        }
    }

    pub fn push(&mut self, line: &[u8]) {
        let line = &line[..line.len().min(Self::MAX_LINE)];
        let need = 2 + line.len() as u64;
        while self.head + need - self.tail > N as u64 {
            let len = self.read_u16(self.tail) as u64;
            self.tail += 2 + len;
        }
        let len = (line.len() as u16).to_le_bytes();
        self.write_at(self.head, &len);
        self.write_at(self.head + 2, line);
        self.head += need;
        self.lines += 1;
    }

    /// Cursor of the oldest line still held.
    pub fn oldest(&self) -> u64 {
        self.tail
    }

    /// Cursor one past the newest line (read from here to get only new lines).
    pub fn end(&self) -> u64 {
        self.head
    }

    pub fn lines_written(&self) -> u64 {
        self.lines
    }

    /// Copy the line at or after `cursor` into `out`; `None` when no newer line exists.
    /// A cursor that does not point at a record start (it was made up, or it is
    /// older than the buffer) restarts at the oldest line and reports `skipped`.
    pub fn read(&self, cursor: u64, out: &mut [u8]) -> Option<LineRead> {
        if cursor >= self.head {
            return None;
        }
        let (pos, skipped) = if cursor < self.tail || !self.is_record_start(cursor) {
            (self.tail, true)
        } else {
            (cursor, false)
        };
        let len = self.read_u16(pos) as usize;
        let n = len.min(out.len());
        self.read_at(pos + 2, &mut out[..n]);
        Some(LineRead {
            len: n,
            next: pos + 2 + len as u64,
            skipped,
        })
    }

    fn is_record_start(&self, cursor: u64) -> bool {
        let mut p = self.tail;
        while p < cursor {
            p += 2 + self.read_u16(p) as u64;
        }
        p == cursor
    }

    fn read_u16(&self, at: u64) -> u16 {
        let mut b = [0u8; 2];
        self.read_at(at, &mut b);
        u16::from_le_bytes(b)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all<const N: usize>(r: &LogRing<N>, mut cur: u64) -> (Vec<String>, u64, bool) {
        let mut out = vec![];
        let mut any_skip = false;
        let mut buf = [0u8; 256];
        while let Some(l) = r.read(cur, &mut buf) {
            any_skip |= l.skipped;
            out.push(String::from_utf8(buf[..l.len].to_vec()).unwrap());
            cur = l.next;
        }
        (out, cur, any_skip)
    }

    #[test]
    fn reads_lines_in_order_and_resumes() {
        let mut r = LogRing::<256>::new();
        r.push(b"one");
        r.push(b"two");
        let (v, cur, skip) = read_all(&r, 0);
        assert_eq!(v, ["one", "two"]);
        assert!(!skip);
        r.push(b"three");
        let (v, cur2, _) = read_all(&r, cur);
        assert_eq!(v, ["three"]);
        assert_eq!(cur2, r.end());
        assert!(r.read(cur2, &mut [0u8; 8]).is_none());
    }

    #[test]
    fn overwrites_oldest_and_wraps() {
        let mut r = LogRing::<64>::new();
        for i in 0..50 {
            r.push(format!("line {i:02}").as_bytes());
        }
        assert_eq!(r.lines_written(), 50);
        let (v, _, skip) = read_all(&r, 0);
        assert!(skip, "cursor 0 was overwritten");
        assert_eq!(v.last().unwrap(), "line 49");
        // 64 bytes hold 7 records of 9 bytes.
        assert_eq!(v.len(), 7);
        for w in v.windows(2) {
            assert!(w[0] < w[1]);
        }
    }

    #[test]
    fn long_lines_are_cut_and_bad_cursors_recover() {
        let mut r = LogRing::<64>::new();
        r.push(&[b'x'; 100]);
        let mut buf = [0u8; 100];
        let l = r.read(0, &mut buf).unwrap();
        assert_eq!(l.len, LogRing::<64>::MAX_LINE);
        r.push(b"ab");
        // Cursor in the middle of a record: restart at the oldest one.
        let l = r.read(3, &mut buf).unwrap();
        assert!(l.skipped);
        assert_eq!(l.next, r.oldest() + 2 + LogRing::<64>::MAX_LINE as u64);
        // Small output buffer: the line is cut, the cursor still advances fully.
        let mut small = [0u8; 1];
        let l2 = r.read(l.next, &mut small).unwrap();
        assert_eq!((l2.len, &small), (1, b"a"));
        assert_eq!(l2.next, r.end());
    }
}
