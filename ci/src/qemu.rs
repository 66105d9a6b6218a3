//! QEMU machines and command lines.

use crate::exit::ExitDecoding;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// x86 q35 with qboot (fast firmware that boots PVH kernels).
    Q35,
    /// x86 microvm: no firmware tables beyond the minimum, no PCI by default.
    Microvm,
    /// aarch64 virt.
    Virt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Machine {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "q35" => Some(Self::Q35),
            "microvm" => Some(Self::Microvm),
            "virt" => Some(Self::Virt),
            _ => None,
        }
    }

    pub fn arch(self) -> Arch {
        match self {
            Self::Q35 | Self::Microvm => Arch::X86_64,
            Self::Virt => Arch::Aarch64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Q35 => "q35",
            Self::Microvm => "microvm",
            Self::Virt => "virt",
        }
    }

    pub fn exit_decoding(self) -> ExitDecoding {
        // aarch64 passes the same status through semihosting (arch/src/aarch64/power.rs).
        ExitDecoding::DebugExit
    }
}

impl Accel {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tcg" => Some(Self::Tcg),
            "kvm" => Some(Self::Kvm),
            _ => None,
        }
    }
}

impl Arch {
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }
}

/// QEMU user networking (slirp: DHCP, the guest at 10.0.2.15) on a virtio-net card, with
/// one guest TCP port forwarded from the host's loopback only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserNet {
    /// Host side, bound to 127.0.0.1.
    pub host_port: u16,
    /// Guest side (the kernel's `http_port=`).
    pub guest_port: u16,
    /// A virtio-mmio card instead of PCI (always on microvm, which has no PCI).
    pub mmio: bool,
}

impl UserNet {
    pub fn qemu_args(&self, machine: Machine) -> Vec<String> {
        // Modern-only PCI ids (the drivers drive no legacy devices) and no option ROM
        // (nothing runs it; QEMU would still look for the file).
        let device = if self.mmio || machine == Machine::Microvm {
            "virtio-net-device,netdev=net0".to_string()
        } else {
            "virtio-net-pci,netdev=net0,disable-legacy=on,romfile=".to_string()
        };
        vec![
            "-netdev".into(),
            format!(
                "user,id=net0,hostfwd=tcp:127.0.0.1:{}-:{}",
                self.host_port, self.guest_port
            ),
            "-device".into(),
            device,
        ]
    }

    /// The MCP endpoint as seen from the host.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.host_port)
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for tests that boot several VMs;
/// QEMU fails loudly if another process took it meanwhile).
pub fn free_local_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Everything needed to boot one VM.
#[derive(Clone, Debug)]
pub struct VmConfig {
    pub machine: Machine,
    pub accel: Accel,
    /// Kernel image: the ELF on x86 (PVH), the raw Image on aarch64.
    pub kernel: PathBuf,
    pub cmdline: String,
    pub memory_mib: u32,
    /// CPU model; `None` = `max` (TCG) / `host,-arch-capabilities` (KVM).
    pub cpu: Option<String>,
    /// Captured runs are killed after this.
    pub timeout: Duration,
    /// Appended verbatim (devices, chardevs...).
    pub extra_args: Vec<String>,
    /// Extra `-M` options, e.g. `"x-foo=on"` (comma-joined after ours).
    pub machine_opts: Vec<String>,
    /// Guest RAM from a shared memfd backend (`-object memory-backend-memfd,
    /// share=on` + `-M …,memory-backend=mem`): vhost-user devices
    /// (virtiofsd, vhost-device-vsock) need it.
    pub shared_memory: bool,
    /// A virtio-net card on QEMU user networking.
    pub net: Option<UserNet>,
}

impl VmConfig {
    pub fn new(machine: Machine, kernel: impl Into<PathBuf>) -> Self {
        Self {
            machine,
            accel: Accel::Tcg,
            kernel: kernel.into(),
            cmdline: String::new(),
            memory_mib: 256,
            cpu: None,
            timeout: Duration::from_secs(60),
            extra_args: Vec::new(),
            machine_opts: Vec::new(),
            shared_memory: false,
            net: None,
        }
    }

    pub fn cmdline(mut self, c: &str) -> Self {
        self.cmdline = c.to_string();
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// QEMU arguments (without the binary). `serial` is the `-serial` value:
    /// `stdio` for captured runs, `mon:stdio` for interactive ones (Ctrl-A X quits).
    pub fn qemu_args(&self, serial: &str) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &str| a.push(s.to_string());
        // Machine options: ours, then `machine_opts`, then the shared memory backend.
        let mut m = String::from(match self.machine {
            Machine::Q35 => "q35",
            // PIT kept on: it calibrates the TSC (see arch/src/x86_64/time.rs).
            Machine::Microvm => "microvm,x-option-roms=off,pit=on,pic=off,rtc=off",
            Machine::Virt => "virt",
        });
        for o in &self.machine_opts {
            m.push(',');
            m.push_str(o);
        }
        if self.shared_memory {
            m.push_str(",memory-backend=mem");
            push("-object");
            push(&format!(
                "memory-backend-memfd,id=mem,size={}M,share=on",
                self.memory_mib
            ));
        }
        push("-M");
        push(&m);
        match self.machine {
            Machine::Q35 => {
                push("-bios");
                push("/usr/share/qemu/qboot.rom");
            }
            Machine::Microvm => {}
            Machine::Virt => {
                // The aarch64 kernel exits through semihosting (status 0x81 + 2 * code).
                push("-semihosting");
            }
        }
        push("-nodefaults");
        push("-no-reboot");
        push("-display");
        push("none");
        match self.accel {
            Accel::Tcg => {
                push("-accel");
                push("tcg");
            }
            Accel::Kvm => {
                push("-accel");
                push("kvm");
            }
        }
        let cpu = match (&self.cpu, self.accel) {
            (Some(c), _) => c.clone(),
            // KVM here aborts on MSR 0x10a with plain `host`.
            (None, Accel::Kvm) if self.machine.arch() == Arch::X86_64 => {
                "host,-arch-capabilities".into()
            }
            (None, Accel::Kvm) => "host".into(),
            (None, Accel::Tcg) => "max".into(),
        };
        push("-cpu");
        push(&cpu);
        push("-m");
        push(&format!("{}M", self.memory_mib));
        push("-serial");
        push(serial);
        if self.machine.arch() == Arch::X86_64 {
            push("-device");
            push("isa-debug-exit,iobase=0xf4,iosize=0x04");
        }
        push("-kernel");
        push(&self.kernel.display().to_string());
        if !self.cmdline.is_empty() {
            push("-append");
            push(&self.cmdline);
        }
        if let Some(net) = &self.net {
            a.extend(net.qemu_args(self.machine));
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_pair(a: &[String], k: &str, v: &str) -> bool {
        a.windows(2).any(|w| w[0] == k && w[1] == v)
    }

    #[test]
    fn q35_uses_qboot_and_debug_exit() {
        let a = VmConfig::new(Machine::Q35, "/k")
            .cmdline("selftest=heap")
            .qemu_args("stdio");
        assert!(has_pair(&a, "-bios", "/usr/share/qemu/qboot.rom"));
        assert!(has_pair(
            &a,
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04"
        ));
        assert!(has_pair(&a, "-append", "selftest=heap"));
        assert!(has_pair(&a, "-cpu", "max"));
        assert!(has_pair(&a, "-kernel", "/k"));
        assert!(a.contains(&"-nodefaults".to_string()));
    }

    #[test]
    fn microvm_and_kvm() {
        let mut c = VmConfig::new(Machine::Microvm, "/k");
        c.accel = Accel::Kvm;
        c.extra_args = vec!["-object".into(), "x".into()];
        let a = c.qemu_args("mon:stdio");
        assert!(has_pair(
            &a,
            "-M",
            "microvm,x-option-roms=off,pit=on,pic=off,rtc=off"
        ));
        assert!(has_pair(&a, "-cpu", "host,-arch-capabilities"));
        assert!(has_pair(&a, "-accel", "kvm"));
        assert!(has_pair(&a, "-serial", "mon:stdio"));
        assert_eq!(a.last().unwrap(), "x");
        assert!(!a.contains(&"-append".to_string()));
    }

    #[test]
    fn shared_memory_and_machine_opts() {
        let mut c = VmConfig::new(Machine::Q35, "/k");
        c.memory_mib = 512;
        c.shared_memory = true;
        c.machine_opts.push("x=1".into());
        let a = c.qemu_args("stdio");
        assert!(has_pair(&a, "-M", "q35,x=1,memory-backend=mem"));
        assert!(has_pair(
            &a,
            "-object",
            "memory-backend-memfd,id=mem,size=512M,share=on"
        ));
        assert!(has_pair(&a, "-m", "512M"));
    }

    #[test]
    fn user_networking_forwards_from_loopback_to_a_modern_card() {
        let mut c = VmConfig::new(Machine::Q35, "/k");
        let mut net = UserNet {
            host_port: 18080,
            guest_port: 8080,
            mmio: false,
        };
        c.net = Some(net.clone());
        let a = c.qemu_args("stdio");
        assert!(has_pair(
            &a,
            "-netdev",
            "user,id=net0,hostfwd=tcp:127.0.0.1:18080-:8080"
        ));
        assert!(has_pair(
            &a,
            "-device",
            "virtio-net-pci,netdev=net0,disable-legacy=on,romfile="
        ));
        net.mmio = true;
        c.machine = Machine::Virt;
        c.net = Some(net.clone());
        assert!(has_pair(
            &c.qemu_args("stdio"),
            "-device",
            "virtio-net-device,netdev=net0"
        ));
        c.machine = Machine::Microvm;
        assert!(has_pair(
            &c.qemu_args("stdio"),
            "-device",
            "virtio-net-device,netdev=net0"
        ));
        assert_eq!(net.url(), "http://127.0.0.1:18080/mcp");
        assert_ne!(free_local_port().unwrap(), 0);
    }

    #[test]
    fn virt_has_no_debug_exit() {
        let a = VmConfig::new(Machine::Virt, "/Image").qemu_args("stdio");
        assert!(has_pair(&a, "-M", "virt"));
        assert!(!a.iter().any(|s| s.contains("isa-debug-exit")));
        assert_eq!(Machine::Virt.arch(), Arch::Aarch64);
        assert_eq!(Machine::parse("microvm"), Some(Machine::Microvm));
        assert_eq!(Machine::parse("pc"), None);
    }
}
