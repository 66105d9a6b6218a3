#!/usr/bin/env bash
# Install what building and booting microkernelia needs, only if missing:
# QEMU (Debian packages) and the pinned Rust toolchain's components/targets.
# Idempotent; takes well under a second when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v qemu-system-x86_64 >/dev/null || need_apt+=(qemu-system-x86)
[ -f /usr/share/qemu/qboot.rom ] || need_apt+=(qemu-system-data)
command -v qemu-system-aarch64 >/dev/null || need_apt+=(qemu-system-arm)
# The inference kernels' NEON/dotprod/i8mm tests run as aarch64 Linux binaries under qemu-user.
command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
[ -d /usr/aarch64-linux-gnu/lib ] || need_apt+=(libc6-dev-arm64-cross)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# rust-toolchain.toml pins the channel, components and targets; rustup installs
# them on first use. Check the pieces the kernel build needs explicitly.
if ! command -v rustup >/dev/null; then
    echo "setup: rustup not found; install it from your distribution or rustup.rs" >&2
    exit 1
fi
sysroot="$(rustc --print sysroot)"
[ -d "$sysroot/lib/rustlib/src/rust/library" ] || rustup component add rust-src
[ -x "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objdump" ] || rustup component add llvm-tools
for t in x86_64-unknown-none aarch64-unknown-none aarch64-unknown-linux-gnu; do
    [ -d "$sysroot/lib/rustlib/$t" ] || rustup target add "$t"
done
