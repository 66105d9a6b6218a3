//! Where virtio-mmio devices are.
//!
//! - x86 microvm: QEMU appends `virtio_mmio.device=<size>@<base>:<irq>` to
//!   the kernel command line for every virtio-mmio transport that has a
//!   device plugged in (machine option `auto-kernel-cmdline`, on by
//!   default). That list is what we use. If it is empty (e.g.
//!   `auto-kernel-cmdline=off`), [`MICROVM_WINDOW`] is probed slot by slot:
//!   empty slots answer with device id 0.
//! - aarch64 virt: `virtio,mmio` nodes of the FDT, each with one `reg`
//!   window (the kernel passes the parsed (base, size) pairs).

use alloc::vec::Vec;

/// One virtio-mmio transport window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioSlot {
    pub base: u64,
    pub size: u64,
    pub irq: Option<u32>,
}

/// microvm's virtio-mmio window: 24 slots of 512 bytes from 0xfeb00000
/// (QEMU hw/i386/microvm.h; devices are handed out from the top down).
pub const MICROVM_WINDOW: (u64, usize, u64) = (0xfeb0_0000, 24, 0x200);

pub fn microvm_window_slots() -> Vec<MmioSlot> {
    let (base, count, size) = MICROVM_WINDOW;
    (0..count as u64)
        .map(|i| MmioSlot {
            base: base + i * size,
            size,
            irq: None,
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdlineError<'a> {
    pub entry: &'a str,
    pub why: &'static str,
}

fn parse_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// `<size>[KMG]`, as Linux's memparse.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    parse_number(digits)?.checked_mul(1 << shift)
}

/// Parses one `<size>@<base>:<irq>[:<first id>]` value.
pub fn parse_device_entry(value: &str) -> Result<MmioSlot, CmdlineError<'_>> {
    let err = |why| CmdlineError { entry: value, why };
    let (size, rest) = value.split_once('@').ok_or(err("missing '@'"))?;
    let mut parts = rest.split(':');
    let base = parts
        .next()
        .and_then(parse_number)
        .ok_or(err("bad base address"))?;
    let irq = parts
        .next()
        .map(|i| i.parse::<u32>().map_err(|_| err("bad irq")))
        .transpose()?;
    let size = parse_size(size).ok_or(err("bad size"))?;
    if size < 0x100 {
        return Err(err("window smaller than the virtio-mmio header"));
    }
    Ok(MmioSlot { base, size, irq })
}

/// Every `virtio_mmio.device=` entry of a command line, in order; entries
/// that do not parse are returned as errors so the caller can log them.
pub fn from_cmdline(cmdline: &str) -> Vec<Result<MmioSlot, CmdlineError<'_>>> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|arg| arg.strip_prefix("virtio_mmio.device="))
        .map(parse_device_entry)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_microvm_entries() {
        // As QEMU 7.2 microvm appends them.
        let cmdline = "console=ttyS0 test=fs virtio_mmio.device=512@0xfeb02e00:35 virtio_mmio.device=512@0xfeb02c00:34";
        let slots: Vec<_> = from_cmdline(cmdline)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            slots,
            vec![
                MmioSlot {
                    base: 0xfeb0_2e00,
                    size: 512,
                    irq: Some(35)
                },
                MmioSlot {
                    base: 0xfeb0_2c00,
                    size: 512,
                    irq: Some(34)
                }
            ]
        );
    }

    #[test]
    fn size_suffixes_and_errors() {
        assert_eq!(parse_device_entry("4K@0x1000:5:3").unwrap().size, 4096);
        assert_eq!(
            parse_device_entry("0x200@4096").unwrap(),
            MmioSlot {
                base: 4096,
                size: 512,
                irq: None
            }
        );
        assert_eq!(parse_device_entry("512").unwrap_err().why, "missing '@'");
        assert_eq!(
            parse_device_entry("512@zz:1").unwrap_err().why,
            "bad base address"
        );
        assert_eq!(
            parse_device_entry("512@0x1000:x").unwrap_err().why,
            "bad irq"
        );
        assert_eq!(
            parse_device_entry("16@0x1000:1").unwrap_err().why,
            "window smaller than the virtio-mmio header"
        );
        assert!(from_cmdline("virtio_mmio.device= x")
            .first()
            .unwrap()
            .is_err());
    }

    #[test]
    fn microvm_window_covers_the_top_slots() {
        let s = microvm_window_slots();
        assert_eq!(s.len(), 24);
        assert_eq!(s.last().unwrap().base, 0xfeb0_2e00);
    }
}
