//! What the service needs from the machine it runs on, as small interfaces: the kernel
//! implements them over virtio-fs, its log ring, heap and CPU feature detection; host tests
//! implement them over a directory and std.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use inference::exec::Executor;
use inference::kernels::CpuFeatures;
use mcp::LogLevel;

use crate::logs::LogPage;

/// An open file of a [`ReadOnlyFs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHandle(pub u64);

/// One entry of [`ReadOnlyFs::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
    /// Size in bytes, when the file system knows it without opening the file.
    pub size: Option<u64>,
}

/// A read-only file system (the virtio-fs share). Paths are relative to its root and use
/// `/` as separator. Errors are human-readable messages (they end up in tool results).
pub trait ReadOnlyFs {
    fn open(&mut self, path: &str) -> Result<FileHandle, String>;
    fn size(&mut self, file: FileHandle) -> Result<u64, String>;
    /// Reads up to `buf.len()` bytes at `offset`; 0 means end of file.
    fn read_at(&mut self, file: FileHandle, offset: u64, buf: &mut [u8]) -> Result<usize, String>;
    fn close(&mut self, file: FileHandle);
    /// Entries of a directory (`""` or `"/"` is the root).
    fn list(&mut self, dir: &str) -> Result<Vec<DirEntry>, String>;
}

/// The kernel log, paged with a cursor (the `logs` tool); [`crate::logs::page`] pages a
/// log ring.
pub trait LogSource {
    /// Lines from `cursor` on, at or above `min_level`, at most `limit`.
    fn page(&self, cursor: u64, min_level: LogLevel, limit: usize) -> LogPage;
}

/// Heap usage, for `health` and for refusing models that do not fit.
pub trait MemoryStats {
    fn heap_used_bytes(&self) -> u64;
    fn heap_free_bytes(&self) -> u64;
}

/// Facts about the machine reported by `metadata`.
#[derive(Debug, Clone)]
pub struct PlatformInfo {
    pub kernel_version: String,
    /// `x86_64` or `aarch64`.
    pub arch: &'static str,
    /// Names of the SIMD features the CPU offers (CPUID / ID registers), for display.
    pub cpu_feature_names: Vec<String>,
    /// The same, as the inference engine's feature set (selects the matmul kernels).
    pub cpu_features: CpuFeatures,
}

/// Everything the service runs on.
pub struct Platform {
    pub fs: Box<dyn ReadOnlyFs>,
    pub logs: Box<dyn LogSource>,
    pub memory: Box<dyn MemoryStats>,
    /// Monotonic nanoseconds (since boot in the kernel).
    pub clock: fn() -> u64,
    /// Where the matmuls run (one core in the kernel today: `Inline`).
    pub executor: Box<dyn Executor>,
    pub info: PlatformInfo,
}
