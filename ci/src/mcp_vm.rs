//! A VM serving MCP: its daemons (virtiofsd over the model share, vhost-device-vsock), QEMU
//! in the background with the serial console captured, the wait for the kernel's ready
//! line, and the vsock connection to the MCP port. Dropping it stops QEMU and the daemons.
//!
//! Used by `mk-run serve`, `mcp-cli bridge --boot`, the end-to-end tests and `make bench`.

use crate::daemons::{DeviceBus, DeviceOptions, VmDevices};
use crate::live_vm::LiveVm;
use crate::qemu::{Accel, Arch, Machine, UserNet, VmConfig};
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The line the kernel prints once MCP is served (kernel/src/serve.rs).
pub const READY: &str = "mcp ready: ";
/// The kernel's default MCP vsock port.
pub const DEFAULT_PORT: u32 = 5000;
/// The kernel's default HTTP port (`http_port=`), and the host port `make run-*` forwards.
pub const DEFAULT_HTTP_PORT: u16 = 8080;
/// The model `make run-*` and `mcp-cli bridge --boot` use by default (made by `make models`).
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct.q8_0.safetensors";

/// Where `make models` puts the models (the share of `make run-*`).
pub fn default_share() -> PathBuf {
    crate::build::repo_root().join("build/share")
}

/// Guest RAM for a model file of `model_bytes`: the kernel keeps 1/8 of free RAM out of
/// the heap, and the heap holds the file, the KV cache and activations (64 MiB covers
/// SmolLM2-135M at the default context of 1024) and some headroom. On aarch64 virt the
/// heap is the RAM above the DTB, which QEMU puts 128 MiB into RAM.
pub fn memory_mib_for_model(model_bytes: u64, arch: Arch) -> u32 {
    let need_mib = model_bytes.div_ceil(1 << 20) + 64 + 32;
    let below_dtb = match arch {
        Arch::X86_64 => 0,
        Arch::Aarch64 => 128,
    };
    let total = (need_mib * 9 / 8 + 16 + below_dtb).next_multiple_of(64);
    total.max(256) as u32
}

/// How the devices attach on each machine.
pub fn bus_for(machine: Machine) -> DeviceBus {
    match machine {
        Machine::Microvm => DeviceBus::Mmio,
        Machine::Q35 | Machine::Virt => DeviceBus::Pci,
    }
}

#[derive(Clone, Debug)]
pub struct McpVmSpec {
    pub machine: Machine,
    pub accel: Accel,
    /// `None`: `max` under TCG.
    pub cpu: Option<String>,
    pub kernel: PathBuf,
    /// Directory the guest sees as the share.
    pub share: PathBuf,
    /// Model path inside the share (`model=`), if any.
    pub model: Option<String>,
    pub port: u32,
    /// `None`: sized from the model file.
    pub memory_mib: Option<u32>,
    /// More kernel command line (e.g. `loglevel=debug context=512`).
    pub extra_cmdline: String,
    /// Where the sockets go (`None`: a fresh temporary directory).
    pub run_dir: Option<PathBuf>,
    /// MCP over HTTP on a virtio-net card, forwarded from this host's loopback.
    pub http: Option<UserNet>,
}

impl McpVmSpec {
    pub fn new(machine: Machine, kernel: impl Into<PathBuf>, share: impl Into<PathBuf>) -> Self {
        McpVmSpec {
            machine,
            accel: Accel::Tcg,
            cpu: None,
            kernel: kernel.into(),
            share: share.into(),
            model: None,
            port: DEFAULT_PORT,
            memory_mib: None,
            extra_cmdline: String::new(),
            run_dir: None,
            http: None,
        }
    }

    /// Adds a virtio-net card serving MCP over HTTP, reachable at
    /// `http://127.0.0.1:<host_port>/mcp` (`0`: a free port).
    pub fn with_http(mut self, host_port: u16) -> io::Result<Self> {
        let host_port = match host_port {
            0 => crate::qemu::free_local_port()?,
            p => p,
        };
        self.http = Some(UserNet {
            host_port,
            guest_port: DEFAULT_HTTP_PORT,
            mmio: bus_for(self.machine) == DeviceBus::Mmio,
        });
        Ok(self)
    }

    pub fn cmdline(&self) -> String {
        let mut c = format!("port={}", self.port);
        if let Some(net) = &self.http {
            c.push_str(&format!(" http_port={}", net.guest_port));
        }
        if let Some(m) = &self.model {
            c.push_str(&format!(" model={m}"));
        }
        if !self.extra_cmdline.is_empty() {
            c.push(' ');
            c.push_str(&self.extra_cmdline);
        }
        c
    }

    pub fn memory(&self) -> u32 {
        self.memory_mib.unwrap_or_else(|| {
            let bytes = self
                .model
                .as_ref()
                .and_then(|m| std::fs::metadata(self.share.join(m)).ok())
                .map_or(0, |md| md.len());
            memory_mib_for_model(bytes, self.machine.arch())
        })
    }

    /// The devices' options for this VM.
    pub fn device_options(&self) -> DeviceOptions {
        let mut o = DeviceOptions::new(&self.share, bus_for(self.machine), self.memory());
        o.run_dir = self.run_dir.clone();
        o
    }

    /// The QEMU configuration once the devices run.
    pub fn vm_config(&self, devices: &VmDevices) -> VmConfig {
        let mut cfg = VmConfig::new(self.machine, &self.kernel).cmdline(&self.cmdline());
        cfg.accel = self.accel;
        cfg.cpu = self.cpu.clone();
        cfg.memory_mib = self.memory();
        cfg.extra_args = devices.qemu_args();
        cfg.net = self.http.clone();
        if self.machine == Machine::Virt {
            // virt always has 32 virtio-mmio slots; as legacy devices every empty one
            // would be reported as refused.
            cfg.extra_args
                .extend(["-global".into(), "virtio-mmio.force-legacy=false".into()]);
        }
        cfg
    }
}

pub struct McpVm {
    // Dropped in this order: QEMU first, then the daemons.
    vm: LiveVm,
    devices: VmDevices,
    pub port: u32,
    pub machine: Machine,
    http: Option<UserNet>,
}

impl McpVm {
    /// Starts the daemons and QEMU; does not wait for the kernel.
    pub fn boot(spec: &McpVmSpec) -> io::Result<McpVm> {
        if !spec.kernel.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no kernel image at {} (make build-*)",
                    spec.kernel.display()
                ),
            ));
        }
        if let Some(m) = &spec.model {
            if !spec.share.join(m).is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "model {m} is not in the share {} (make models)",
                        spec.share.display()
                    ),
                ));
            }
        }
        let devices = VmDevices::start(spec.device_options())?;
        let mut cfg = spec.vm_config(&devices);
        // Served VMs run until dropped.
        cfg.timeout = Duration::from_secs(u32::MAX as u64);
        let vm = LiveVm::start(&cfg)?;
        Ok(McpVm {
            vm,
            devices,
            port: spec.port,
            machine: spec.machine,
            http: spec.http.clone(),
        })
    }

    /// Serial console so far, `\r` removed.
    pub fn serial(&self) -> String {
        self.vm.serial()
    }

    /// Waits until a serial line contains `needle`; returns that line. Fails when QEMU
    /// exits or `timeout` passes, with the console and daemon logs in the message.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let seen = self.vm.wait_for(needle, timeout);
        let serial = self.serial();
        match serial.lines().find(|l| l.contains(needle)) {
            Some(line) if seen => Ok(line.to_string()),
            _ => Err(format!(
                "no {needle:?} within {timeout:?} (or QEMU exited)\n--- serial ---\n{serial}\n{}",
                self.devices.logs()
            )),
        }
    }

    /// Waits for the ready line; returns the kernel's boot-to-ready time in µs. Connect
    /// only after it (see `ci::live_vm` for why).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<u64, String> {
        let line = self.wait_for(READY, timeout)?;
        Ok(parse_ready_us(&line).unwrap_or(0))
    }

    /// A stream to the guest's MCP port.
    pub fn connect(&self) -> io::Result<UnixStream> {
        self.devices
            .connect_vsock(self.port, Duration::from_secs(30))
    }

    /// The MCP endpoint over HTTP, when the VM has a network card.
    pub fn http_url(&self) -> Option<String> {
        self.http.as_ref().map(UserNet::url)
    }

    /// vhost-device-vsock's host socket (`mcp-cli --vsock-uds`).
    pub fn vsock_uds(&self) -> PathBuf {
        self.devices.vsock_uds()
    }

    pub fn run_dir(&self) -> &Path {
        self.devices.dir()
    }

    /// Stops QEMU and the daemons (also done on drop).
    pub fn shutdown(self) {}
}

/// `... mcp ready: ...: 123456 us since first instruction` → 123456.
pub fn parse_ready_us(line: &str) -> Option<u64> {
    let rest = &line[line.find(READY)?..];
    let end = rest.find(" us since first instruction")?;
    let digits = rest[..end].rsplit(' ').next()?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_sized_to_the_model() {
        assert_eq!(memory_mib_for_model(1 << 20, Arch::X86_64), 256);
        // SmolLM2-135M Q8_0 (~145 MiB): file + state + the kernel's 1/8 reserve.
        let m = memory_mib_for_model(145 << 20, Arch::X86_64);
        assert!((256..=384).contains(&m), "{m}");
        assert_eq!(m % 64, 0);
        assert_eq!(memory_mib_for_model(145 << 20, Arch::Aarch64), m + 128);
        assert!(memory_mib_for_model(1 << 30, Arch::X86_64) > 1024);
    }

    #[test]
    fn ready_line() {
        let l = "[    0.5] INFO  mcp ready: vsock cid 3 port 5000, model m, kernels avx2: 512345 us since first instruction";
        assert_eq!(parse_ready_us(l), Some(512345));
        assert_eq!(parse_ready_us("mcp ready: soon"), None);
    }

    #[test]
    fn cmdline_and_bus() {
        let mut s = McpVmSpec::new(Machine::Microvm, "/k", "/share");
        s.model = Some("m.safetensors".into());
        s.extra_cmdline = "loglevel=debug".into();
        assert_eq!(s.cmdline(), "port=5000 model=m.safetensors loglevel=debug");
        assert_eq!(bus_for(s.machine), DeviceBus::Mmio);
        assert_eq!(bus_for(Machine::Virt), DeviceBus::Pci);
        s.memory_mib = Some(512);
        assert_eq!(s.memory(), 512);
        let s = s.with_http(18081).unwrap();
        assert_eq!(
            s.cmdline(),
            "port=5000 http_port=8080 model=m.safetensors loglevel=debug"
        );
    }
}
