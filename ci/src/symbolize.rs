//! Host-side symbolization of the kernel's fault reports: the addresses in
//! `rip=` and backtrace lines (`#N 0x...`) get the function and source line
//! they belong to, using binutils' `addr2line` on the kernel ELF (inlined
//! frames resolved to the real, outermost function). Without `addr2line` or
//! an ELF image, the text is returned unchanged.

use std::path::Path;
use std::process::Command;

/// An address to look up: (line index, address, is a return address).
fn addresses(text: &str) -> Vec<(usize, u64, bool)> {
    let mut v = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix('#') {
            // "#N 0x..." — frame 0 is the faulting rip, others return addresses.
            let mut parts = rest.split_whitespace();
            let n = parts.next().and_then(|n| n.parse::<u32>().ok());
            let a = parts.next().and_then(parse_hex);
            if let (Some(n), Some(a)) = (n, a) {
                v.push((i, a, n > 0));
            }
        }
    }
    v
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

fn is_elf(p: &Path) -> bool {
    std::fs::read(p)
        .map(|b| b.starts_with(b"\x7fELF"))
        .unwrap_or(false)
}

/// Run addr2line on `addrs`; one "function at file:line" per address.
fn lookup(elf: &Path, addrs: &[u64]) -> Option<Vec<String>> {
    let out = Command::new("addr2line")
        .args(["-a", "-f", "-C", "-i", "-e"])
        .arg(elf)
        .args(addrs.iter().map(|a| format!("{a:#x}")))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // Groups: "0x<addr>" then (function, location) pairs, innermost first.
    let mut groups: Vec<Vec<String>> = Vec::new();
    for l in text.lines() {
        if l.starts_with("0x") && parse_hex(l).is_some() {
            groups.push(Vec::new());
        } else if let Some(g) = groups.last_mut() {
            g.push(l.to_string());
        }
    }
    Some(
        groups
            .iter()
            .map(|g| match g.len() {
                n if n >= 2 => {
                    let (func, loc) = (&g[n - 2], &g[n - 1]);
                    format!("{func} at {}", shorten(loc))
                }
                _ => "??".to_string(),
            })
            .collect(),
    )
}

/// Drop the directory part up to the crate (`/work/x/kernel/src/a.rs` → `kernel/src/a.rs`).
fn shorten(loc: &str) -> &str {
    match loc.rfind("/src/") {
        Some(i) => {
            let start = loc[..i].rfind('/').map_or(0, |j| j + 1);
            &loc[start..]
        }
        None => loc,
    }
}

/// The ELF with the symbols for a booted image: the image itself, or for a
/// raw aarch64 `Image` the `kernel` ELF it was objcopied from (same directory).
fn symbol_file(image: &Path) -> Option<std::path::PathBuf> {
    if is_elf(image) {
        return Some(image.to_path_buf());
    }
    let elf = image.with_file_name("kernel");
    is_elf(&elf).then_some(elf)
}

/// Annotate backtrace lines in `serial` with symbols from `image` (an ELF, or
/// a raw Image next to its ELF).
pub fn annotate(serial: &str, image: &Path) -> String {
    let addrs = addresses(serial);
    let Some(elf) = symbol_file(image).filter(|_| !addrs.is_empty()) else {
        return serial.to_string();
    };
    let elf = elf.as_path();
    // A return address points after the call: look up the call itself.
    let query: Vec<u64> = addrs
        .iter()
        .map(|&(_, a, ret)| if ret { a - 1 } else { a })
        .collect();
    let Some(names) = lookup(elf, &query) else {
        return serial.to_string();
    };
    let mut lines: Vec<String> = serial.lines().map(str::to_string).collect();
    for ((i, _, _), name) in addrs.iter().zip(names) {
        if name != "??" && !name.starts_with("?? ") {
            lines[*i] = format!("{}  {name}", lines[*i]);
        }
    }
    let mut s = lines.join("\n");
    if serial.ends_with('\n') {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_backtrace_addresses() {
        let t = "x\n    backtrace (frame pointers):\n      #0 0x0000000000101000\n      #1 0x10\n  #x 0x5\n";
        assert_eq!(addresses(t), vec![(2, 0x101000, false), (3, 0x10, true)]);
    }

    #[test]
    fn shortens_paths() {
        assert_eq!(
            shorten("/work/wt/a/kernel/src/selftest.rs:340"),
            "kernel/src/selftest.rs:340"
        );
        assert_eq!(shorten("??:0"), "??:0");
    }

    #[test]
    fn non_elf_is_unchanged() {
        let t = "      #0 0x1000\n";
        assert_eq!(annotate(t, Path::new("/nonexistent")), t);
    }
}
