//! Proof that the x86 kernel does floating point in SSE registers, not through
//! soft-float library calls: no soft-float builtin symbols in the ELF, and
//! scalar SSE arithmetic (`mulss`, `addss`) in its disassembly.

use std::path::{Path, PathBuf};
use std::process::Command;

/// compiler-builtins' soft-float entry points (f32/f64 arithmetic, compare, convert).
pub const SOFT_FLOAT_SYMBOLS: &[&str] = &[
    "__addsf3",
    "__subsf3",
    "__mulsf3",
    "__divsf3",
    "__adddf3",
    "__subdf3",
    "__muldf3",
    "__divdf3",
    "__eqsf2",
    "__ltsf2",
    "__gtsf2",
    "__eqdf2",
    "__ltdf2",
    "__gtdf2",
    "__floatsisf",
    "__fixsfsi",
    "__floatsidf",
    "__fixdfsi",
    "__extendsfdf2",
    "__truncdfsf2",
];
pub const REQUIRED_SSE: &[&str] = &["mulss", "addss"];

#[derive(Debug)]
pub struct FloatReport {
    pub soft_float_symbols: Vec<String>,
    /// Count of each required mnemonic in the disassembly.
    pub sse_counts: Vec<(String, usize)>,
}

impl FloatReport {
    pub fn ok(&self) -> bool {
        self.soft_float_symbols.is_empty() && self.sse_counts.iter().all(|(_, n)| *n > 0)
    }
}

/// rustup's llvm tools (component llvm-tools), else the system's.
fn llvm_tool(name: &str) -> PathBuf {
    let sysroot = Command::new("rustc")
        .arg("--print")
        .arg("sysroot")
        .output()
        .ok();
    if let Some(o) = sysroot.filter(|o| o.status.success()) {
        let root = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let p = Path::new(&root)
            .join("lib/rustlib/x86_64-unknown-linux-gnu/bin")
            .join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

fn run(tool: &str, args: &[&str], elf: &Path) -> Result<String, String> {
    let bin = llvm_tool(tool);
    let o = Command::new(&bin)
        .args(args)
        .arg(elf)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !o.status.success() {
        return Err(format!(
            "{} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

pub fn check(elf: &Path) -> Result<FloatReport, String> {
    let syms = run("llvm-nm", &[], elf)?;
    let soft_float_symbols = syms
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|s| SOFT_FLOAT_SYMBOLS.contains(s))
        .map(str::to_string)
        .collect();
    let dis = run("llvm-objdump", &["-d", "--no-show-raw-insn"], elf)?;
    let sse_counts = REQUIRED_SSE
        .iter()
        .map(|m| {
            let n = dis
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some(m))
                .count();
            (m.to_string(), n)
        })
        .collect();
    Ok(FloatReport {
        soft_float_symbols,
        sse_counts,
    })
}
