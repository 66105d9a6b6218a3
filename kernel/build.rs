//! Pick the linker script of the architecture being built.
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let arch_dir = manifest.join("../arch/src");
    let script = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => arch_dir.join("x86_64/link.ld"),
        Ok("aarch64") => arch_dir.join("aarch64/link.ld"),
        _ => return,
    };
    println!("cargo:rustc-link-arg=-T{}", script.display());
    println!("cargo:rerun-if-changed={}", script.display());
}
