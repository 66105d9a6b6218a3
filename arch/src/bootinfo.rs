//! What the boot code found out about the platform, in one arch-neutral shape.
//!
//! Filled once by the architecture's boot path (PVH `hvm_start_info` on x86_64,
//! the FDT on aarch64) before `kernel_main` runs, then only read. Fixed-size so
//! it needs no allocator.

/// Maximum number of memory map entries kept; QEMU's maps have fewer than 10.
pub const MAX_MEMORY_REGIONS: usize = 64;
/// Longest kernel command line kept (longer ones are cut at a char boundary).
pub const MAX_CMDLINE: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Free RAM the kernel may use (the kernel image itself is reserved separately).
    Usable,
    /// Firmware / device memory; never allocated.
    Reserved,
    /// ACPI tables (may be reclaimed after parsing; we never do).
    AcpiReclaimable,
    AcpiNvs,
    Unusable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub start: u64,
    pub len: u64,
    pub kind: MemoryKind,
}

impl MemoryRegion {
    pub const EMPTY: Self = Self {
        start: 0,
        len: 0,
        kind: MemoryKind::Reserved,
    };

    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// A fixed-capacity memory map. Entries past the capacity are dropped and counted.
#[derive(Clone, Copy, Debug)]
pub struct MemoryMap {
    regions: [MemoryRegion; MAX_MEMORY_REGIONS],
    len: usize,
    pub dropped: usize,
}

impl MemoryMap {
    pub const fn new() -> Self {
        Self {
            regions: [MemoryRegion::EMPTY; MAX_MEMORY_REGIONS],
            len: 0,
            dropped: 0,
        }
    }

    pub fn push(&mut self, region: MemoryRegion) {
        if region.len == 0 {
            return;
        }
        if self.len == MAX_MEMORY_REGIONS {
            self.dropped += 1;
            return;
        }
        self.regions[self.len] = region;
        self.len += 1;
    }

    pub fn regions(&self) -> &[MemoryRegion] {
        &self.regions[..self.len]
    }

    pub fn usable(&self) -> impl Iterator<Item = &MemoryRegion> {
        self.regions()
            .iter()
            .filter(|r| r.kind == MemoryKind::Usable)
    }

    /// Total bytes of usable RAM.
    pub fn usable_bytes(&self) -> u64 {
        self.usable().map(|r| r.len).sum()
    }

    /// Highest address (exclusive) of any usable RAM; the extent of the identity map.
    pub fn usable_end(&self) -> u64 {
        self.usable().map(|r| r.end()).max().unwrap_or(0)
    }
}

impl Default for MemoryMap {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything the kernel learns from the boot protocol.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    pub memory: MemoryMap,
    cmdline_buf: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    /// Physical address of the ACPI RSDP (x86: from `hvm_start_info`).
    pub rsdp: Option<u64>,
    /// Physical address of the flattened device tree blob (aarch64).
    pub fdt: Option<u64>,
    /// Physical extent `[start, end)` of the loaded kernel image incl. bss and boot stack.
    pub kernel_start: u64,
    pub kernel_end: u64,
    /// Human-readable boot protocol / platform, e.g. "x86_64 PVH".
    pub protocol: &'static str,
}

impl BootInfo {
    pub const fn new(protocol: &'static str) -> Self {
        Self {
            memory: MemoryMap::new(),
            cmdline_buf: [0; MAX_CMDLINE],
            cmdline_len: 0,
            rsdp: None,
            fdt: None,
            kernel_start: 0,
            kernel_end: 0,
            protocol,
        }
    }

    /// Store the command line, replacing invalid UTF-8 by '?' and cutting it at
    /// [`MAX_CMDLINE`] bytes.
    pub fn set_cmdline(&mut self, raw: &[u8]) {
        let n = raw.len().min(MAX_CMDLINE);
        for (dst, &b) in self.cmdline_buf.iter_mut().zip(&raw[..n]) {
            // ASCII only: keeps the result valid UTF-8 whatever was cut.
            *dst = if b.is_ascii() && b != 0 { b } else { b'?' };
        }
        self.cmdline_len = n;
    }

    pub fn cmdline_str(&self) -> &str {
        // set_cmdline stores ASCII only.
        core::str::from_utf8(&self.cmdline_buf[..self.cmdline_len]).unwrap_or("")
    }

    pub fn cmdline(&self) -> crate::cmdline::Cmdline<'_> {
        crate::cmdline::Cmdline::new(self.cmdline_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_map_sums_usable_only() {
        let mut m = MemoryMap::new();
        m.push(MemoryRegion {
            start: 0,
            len: 0x9fc00,
            kind: MemoryKind::Usable,
        });
        m.push(MemoryRegion {
            start: 0xf0000,
            len: 0x10000,
            kind: MemoryKind::Reserved,
        });
        m.push(MemoryRegion {
            start: 0x100000,
            len: 0xff00000,
            kind: MemoryKind::Usable,
        });
        m.push(MemoryRegion {
            start: 0x200000,
            len: 0,
            kind: MemoryKind::Usable,
        });
        assert_eq!(m.regions().len(), 3);
        assert_eq!(m.usable_bytes(), 0x9fc00 + 0xff00000);
        assert_eq!(m.usable_end(), 0x10000000);
    }

    #[test]
    fn memory_map_counts_overflow() {
        let mut m = MemoryMap::new();
        for i in 0..(MAX_MEMORY_REGIONS as u64 + 3) {
            m.push(MemoryRegion {
                start: i * 0x1000,
                len: 0x1000,
                kind: MemoryKind::Usable,
            });
        }
        assert_eq!(m.regions().len(), MAX_MEMORY_REGIONS);
        assert_eq!(m.dropped, 3);
    }

    #[test]
    fn cmdline_is_sanitised_and_cut() {
        let mut b = BootInfo::new("test");
        b.set_cmdline(b"selftest=heap \xff\x00x=1");
        assert_eq!(b.cmdline_str(), "selftest=heap ??x=1");
        assert_eq!(b.cmdline().get("selftest"), Some("heap"));
        let long = [b'a'; MAX_CMDLINE + 10];
        b.set_cmdline(&long);
        assert_eq!(b.cmdline_str().len(), MAX_CMDLINE);
    }
}
