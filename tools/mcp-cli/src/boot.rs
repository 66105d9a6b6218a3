//! `--boot`: boot a VM of our own (daemons + QEMU through the ci crate's runner),
//! wait until the kernel serves MCP, and hand its vsock stream to the bridge. The VM and
//! its daemons stop when the bridge ends (stdin closed and the guest answered).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ci::mcp_vm::{McpVm, McpVmSpec};
use ci::{Accel, Arch, Machine};

use crate::target::Stream;

pub struct BootOptions {
    /// `x86_64` or `aarch64`.
    pub arch: String,
    pub machine: Option<String>,
    /// A model file on the host; its directory becomes the share.
    pub model: Option<PathBuf>,
    pub kernel: Option<PathBuf>,
    pub accel: Option<String>,
    pub ready_timeout: Duration,
    /// Also serve MCP over HTTP on this host port (0: a free one).
    pub http_port: Option<u16>,
}

fn spec(o: &BootOptions) -> Result<McpVmSpec, String> {
    let arch = match o.arch.as_str() {
        "x86_64" | "x86" => Arch::X86_64,
        "aarch64" | "arm" | "arm64" => Arch::Aarch64,
        other => return Err(format!("--boot {other}: expected x86_64 or aarch64")),
    };
    let machine = match o.machine.as_deref() {
        None if arch == Arch::X86_64 => Machine::Q35,
        None => Machine::Virt,
        Some(m) => Machine::parse(m).ok_or_else(|| format!("unknown machine {m}"))?,
    };
    if machine.arch() != arch {
        return Err(format!(
            "machine {} is not an {} machine",
            machine.name(),
            o.arch
        ));
    }
    let model = match &o.model {
        Some(m) => m.clone(),
        None => ci::mcp_vm::default_share().join(ci::mcp_vm::DEFAULT_MODEL),
    };
    if !model.is_file() {
        return Err(format!(
            "model {} not found (make models, or --model PATH)",
            model.display()
        ));
    }
    let share = model
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = model
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("model file name is not UTF-8")?
        .to_string();
    let kernel = o
        .kernel
        .clone()
        .unwrap_or_else(|| ci::build::kernel_image(arch));
    let mut s = McpVmSpec::new(machine, kernel, share);
    s.model = Some(name);
    if let Some(a) = &o.accel {
        s.accel = Accel::parse(a).ok_or_else(|| format!("unknown accelerator {a}"))?;
    }
    if let Some(p) = o.http_port {
        s = s
            .with_http(p)
            .map_err(|e| format!("no free port for HTTP: {e}"))?;
    }
    Ok(s)
}

/// Boots and waits for the ready line; progress goes to stderr (stdout is the MCP stream).
/// Returns the VM, its vsock stream and, with `http_port`, its MCP URL.
pub fn boot(o: &BootOptions) -> Result<(McpVm, Stream, Option<String>), String> {
    let spec = spec(o)?;
    let t0 = Instant::now();
    eprintln!(
        "mcp-cli: booting {} ({} MiB, model {})",
        spec.machine.name(),
        spec.memory(),
        spec.model.as_deref().unwrap_or("none")
    );
    let mut vm = McpVm::boot(&spec).map_err(|e| e.to_string())?;
    let kernel_us = vm.wait_ready(o.ready_timeout)?;
    let stream = vm
        .connect()
        .map_err(|e| format!("cannot connect to the guest: {e}"))?;
    eprintln!(
        "mcp-cli: ready after {:.1} s (kernel: {:.1} ms from first instruction)",
        t0.elapsed().as_secs_f64(),
        kernel_us as f64 / 1000.0
    );
    let url = vm.http_url();
    if let Some(u) = &url {
        eprintln!("mcp-cli: MCP over HTTP at {u}");
    }
    Ok((vm, Stream::Unix(stream), url))
}
