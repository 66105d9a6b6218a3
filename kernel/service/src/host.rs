//! The platform on a hosted OS (std): the share is a directory, the log is a log ring like
//! the kernel's, memory is what the OS reports available. Host tests and `mcp-cli serve --model` use it;
//! it is not compiled for the kernel (`target_os = "none"`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::string::{String, ToString};
use std::vec::Vec;

use mcp::LogLevel;

use crate::logs::{self, LogPage, LogRing};
use crate::platform::{DirEntry, FileHandle, LogSource, MemoryStats, ReadOnlyFs};

/// A directory as the share. Paths may not leave it (checked by the service, and `..`
/// components are refused here too).
pub struct DirFs {
    root: PathBuf,
    files: HashMap<u64, File>,
    next: u64,
}

impl DirFs {
    pub fn new(root: impl Into<PathBuf>) -> DirFs {
        DirFs {
            root: root.into(),
            files: HashMap::new(),
            next: 0,
        }
    }

    fn path(&self, p: &str) -> Result<PathBuf, String> {
        let p = p.trim_start_matches('/');
        if p.split('/').any(|c| c == "..") {
            return Err(std::format!("path {p:?} leaves the share"));
        }
        Ok(self.root.join(p))
    }
}

impl ReadOnlyFs for DirFs {
    fn open(&mut self, path: &str) -> Result<FileHandle, String> {
        let f = File::open(self.path(path)?).map_err(|e| e.to_string())?;
        if f.metadata().map_err(|e| e.to_string())?.is_dir() {
            return Err("is a directory".into());
        }
        self.next += 1;
        self.files.insert(self.next, f);
        Ok(FileHandle(self.next))
    }

    fn size(&mut self, file: FileHandle) -> Result<u64, String> {
        let f = self.files.get(&file.0).ok_or("bad file handle")?;
        Ok(f.metadata().map_err(|e| e.to_string())?.len())
    }

    fn read_at(&mut self, file: FileHandle, offset: u64, buf: &mut [u8]) -> Result<usize, String> {
        let f = self.files.get(&file.0).ok_or("bad file handle")?;
        f.read_at(buf, offset).map_err(|e| e.to_string())
    }

    fn close(&mut self, file: FileHandle) {
        self.files.remove(&file.0);
    }

    fn list(&mut self, dir: &str) -> Result<Vec<DirEntry>, String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.path(dir)?).map_err(|e| e.to_string())? {
            let e = e.map_err(|e| e.to_string())?;
            let md = e.metadata().map_err(|e| e.to_string())?;
            out.push(DirEntry {
                name: e.file_name().to_string_lossy().into_owned(),
                is_dir: md.is_dir(),
                size: md.is_file().then_some(md.len()),
            });
        }
        Ok(out)
    }
}

/// Bytes of log a host server keeps (the kernel's ring size).
pub const LOG_BYTES: usize = 64 * 1024;

/// A log ring shared with whoever writes the log.
pub type SharedLog = Rc<RefCell<LogRing<LOG_BYTES>>>;

/// An empty [`SharedLog`].
pub fn shared_log() -> SharedLog {
    Rc::new(RefCell::new(LogRing::new()))
}

/// The `logs` tool over a [`SharedLog`].
pub struct RingLogs(pub SharedLog);

impl LogSource for RingLogs {
    fn page(&self, cursor: u64, min_level: LogLevel, limit: usize) -> LogPage {
        logs::page(&self.0.borrow(), cursor, min_level, limit)
    }
}

/// `MemAvailable` from /proc/meminfo as the free heap; used = this process's RSS.
pub struct HostMemory;

fn meminfo_kib(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

impl MemoryStats for HostMemory {
    fn heap_used_bytes(&self) -> u64 {
        meminfo_kib("/proc/self/status", "VmRSS:").unwrap_or(0) * 1024
    }
    fn heap_free_bytes(&self) -> u64 {
        meminfo_kib("/proc/meminfo", "MemAvailable:").unwrap_or(0) * 1024
    }
}
