//! The service's platform interfaces over the kernel: virtio-fs for the share, the logger's
//! ring for `logs`, the heap's counters, the CPU features `arch` decoded at boot (the
//! engine's type: it picks its kernels from them).

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use drivers::virtiofs::File;
use mcp::LogLevel;
use mk_service::logs::LogPage;
use mk_service::{
    DirEntry, FileHandle, LogSource, MemoryStats, Platform, PlatformInfo, ReadOnlyFs,
};

use crate::devices::Fs;

/// The share over virtio-fs; open files live in slots indexed by the handle.
pub struct ShareFs {
    fs: Fs,
    files: Vec<Option<File>>,
}

/// The service names the root `""`; FUSE path resolution wants `/`.
fn share_path(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

impl ReadOnlyFs for ShareFs {
    fn open(&mut self, path: &str) -> Result<FileHandle, String> {
        let f = self.fs.open(share_path(path)).map_err(|e| e.to_string())?;
        let slot = match self.files.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.files.push(None);
                self.files.len() - 1
            }
        };
        self.files[slot] = Some(f);
        Ok(FileHandle(slot as u64))
    }

    fn size(&mut self, h: FileHandle) -> Result<u64, String> {
        let mut f = self
            .files
            .get_mut(h.0 as usize)
            .and_then(Option::take)
            .ok_or_else(|| "bad file handle".to_string())?;
        let r = self.fs.size(&mut f).map_err(|e| e.to_string());
        self.files[h.0 as usize] = Some(f);
        r
    }

    fn read_at(&mut self, h: FileHandle, offset: u64, buf: &mut [u8]) -> Result<usize, String> {
        // Split borrow: the file is moved out while the client reads.
        let f = self
            .files
            .get_mut(h.0 as usize)
            .and_then(Option::take)
            .ok_or_else(|| "bad file handle".to_string())?;
        let r = self.fs.read_at(&f, offset, buf).map_err(|e| e.to_string());
        self.files[h.0 as usize] = Some(f);
        r
    }

    fn close(&mut self, h: FileHandle) {
        if let Some(f) = self.files.get_mut(h.0 as usize).and_then(Option::take) {
            if let Err(e) = self.fs.close(f) {
                log::warn!("virtio-fs: close: {e}");
            }
        }
    }

    fn list(&mut self, dir: &str) -> Result<Vec<DirEntry>, String> {
        let entries = self.fs.list(share_path(dir)).map_err(|e| e.to_string())?;
        Ok(entries
            .into_iter()
            .map(|e| DirEntry {
                name: e.name,
                is_dir: e.is_dir,
                size: e.size,
            })
            .collect())
    }
}

/// The kernel's log ring, as `logs` pages it.
pub struct KernelLogs;

impl LogSource for KernelLogs {
    fn page(&self, cursor: u64, min_level: LogLevel, limit: usize) -> LogPage {
        crate::logger::with_ring(|ring| mk_service::logs::page(ring, cursor, min_level, limit))
    }
}

pub struct HeapStats;

impl MemoryStats for HeapStats {
    fn heap_used_bytes(&self) -> u64 {
        crate::heap::used_bytes()
    }
    fn heap_free_bytes(&self) -> u64 {
        crate::heap::free_bytes()
    }
}

pub fn platform(fs: Fs) -> Platform {
    let f = arch::cpu::features();
    Platform {
        fs: Box::new(ShareFs {
            fs,
            files: Vec::new(),
        }),
        logs: Box::new(KernelLogs),
        memory: Box::new(HeapStats),
        clock: arch::time::since_boot_ns,
        executor: Box::new(inference::exec::Inline),
        info: PlatformInfo {
            kernel_version: String::from(env!("CARGO_PKG_VERSION")),
            arch: if cfg!(target_arch = "x86_64") {
                "x86_64"
            } else {
                "aarch64"
            },
            cpu_feature_names: f.simd_names().map(String::from).collect(),
            cpu_features: *f,
        },
    }
}
