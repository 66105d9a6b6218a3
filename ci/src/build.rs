//! Where kernel images are, and building them (through `make`, which holds the
//! one copy of the build flags).

use crate::qemu::Arch;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (this crate lives in `<root>/ci`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ci has a parent")
        .to_path_buf()
}

/// Default image path for an architecture; overridable with `MK_KERNEL_X86` /
/// `MK_KERNEL_ARM`.
pub fn kernel_image(arch: Arch) -> PathBuf {
    let (var, rel) = match arch {
        Arch::X86_64 => (
            "MK_KERNEL_X86",
            "kernel/target/x86_64-microkernelia/release/kernel",
        ),
        Arch::Aarch64 => (
            "MK_KERNEL_ARM",
            "kernel/target/aarch64-unknown-none/release/Image",
        ),
    };
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(rel))
}

/// `make build-x86` / `make build-arm`.
pub fn build(arch: Arch) -> io::Result<PathBuf> {
    let target = match arch {
        Arch::X86_64 => "build-x86",
        Arch::Aarch64 => "build-arm",
    };
    let st = Command::new("make")
        .arg("-s")
        .arg(target)
        .current_dir(repo_root())
        .status()?;
    if !st.success() {
        return Err(io::Error::other(format!("make {target} failed: {st}")));
    }
    Ok(kernel_image(arch))
}
