//! The host side of a VM's virtio devices: one virtiofsd and one
//! vhost-device-vsock per VM, the QEMU arguments that attach them, and the
//! cleanup of every process and socket they leave behind.
//!
//! Each VM gets a private directory (`/tmp/mk-vm-<pid>-<n>/`) holding the
//! vhost-user sockets and vhost-device-vsock's host-side Unix socket.
//! [`VmDevices`] is a guard: dropping it (normal end, test failure, panic
//! unwinding) kills and reaps both daemons and removes the directory.
//!
//! vhost-user needs all guest RAM in a shared memfd, so the arguments
//! include `-object memory-backend-memfd,...,share=on` and
//! `-machine memory-backend=mem` (its size must equal `-m`).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How the devices are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceBus {
    /// `vhost-user-*-pci`: x86 q35, aarch64 virt.
    Pci,
    /// `vhost-user-*-device` on virtio-mmio: x86 microvm (and virt).
    Mmio,
}

#[derive(Clone, Debug)]
pub struct DeviceOptions {
    /// Directory the guest sees through virtio-fs.
    pub share_dir: PathBuf,
    /// virtio-fs tag (QEMU's `tag=`; virtiofsd's `--tag` crashes QEMU 7.2).
    pub fs_tag: String,
    pub guest_cid: u32,
    pub bus: DeviceBus,
    /// Must equal the VM's `-m` in MiB.
    pub memory_mib: u32,
    /// Add `-global virtio-mmio.force-legacy=false` on mmio (tests turn it
    /// off to check that legacy devices are refused).
    pub modern_mmio: bool,
    /// Directory for the sockets and logs; `None`: a fresh `/tmp/mk-vm-<pid>-<n>`.
    /// A fixed one gives `make run-*` users a stable vsock socket path.
    pub run_dir: Option<PathBuf>,
}

impl DeviceOptions {
    pub fn new(share_dir: impl Into<PathBuf>, bus: DeviceBus, memory_mib: u32) -> Self {
        Self {
            share_dir: share_dir.into(),
            fs_tag: "share".into(),
            guest_cid: 3,
            bus,
            memory_mib,
            modern_mmio: true,
            run_dir: None,
        }
    }
}

/// A child process killed and reaped on drop.
struct ChildGuard {
    name: &'static str,
    child: Child,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed (with its contents) on drop.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The daemons of one VM. Fields drop in order: daemons first, then the
/// directory with their sockets.
pub struct VmDevices {
    virtiofsd: ChildGuard,
    vsock: ChildGuard,
    dir: DirGuard,
    options: DeviceOptions,
}

static NEXT_VM: AtomicU32 = AtomicU32::new(0);

/// Where `cargo install` puts the daemons, if they are not on PATH.
fn find_program(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if !on_path {
        if let Some(home) = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        {
            let p = home.join("bin").join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    PathBuf::from(name)
}

fn spawn(name: &'static str, args: &[String], log: &Path) -> io::Result<ChildGuard> {
    let log = std::fs::File::create(log)?;
    let child = crate::orphan::die_with_parent(&mut Command::new(find_program(name)))
        .args(args)
        // Warnings and errors into the per-VM log (shown when a test fails);
        // MK_DAEMON_LOG=debug for more.
        .env(
            "RUST_LOG",
            std::env::var("MK_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start {name} (run `make setup`): {e}"),
            )
        })?;
    Ok(ChildGuard { name, child })
}

/// Waits until `path` exists (the daemon is listening) or the daemon dies.
fn wait_for_socket(guard: &mut ChildGuard, path: &Path, log: &Path) -> io::Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if let Some(status) = guard.child.try_wait()? {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(io::Error::other(format!(
                "{} exited ({status}) before listening:\n{log}",
                guard.name
            )));
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(io::Error::other(format!(
                "{} did not create {}",
                guard.name,
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

impl VmDevices {
    /// Starts both daemons and waits until their sockets exist.
    pub fn start(options: DeviceOptions) -> io::Result<Self> {
        if !options.share_dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "share directory {} does not exist",
                    options.share_dir.display()
                ),
            ));
        }
        let n = NEXT_VM.fetch_add(1, Ordering::Relaxed);
        let dir = options.run_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("mk-vm-{}-{n}", std::process::id()))
        });
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let dir = DirGuard(dir);
        let fs_sock = dir.0.join("fs.sock");
        let fs_log = dir.0.join("virtiofsd.log");
        let mut virtiofsd = spawn(
            "virtiofsd",
            &[
                format!("--socket-path={}", fs_sock.display()),
                format!("--shared-dir={}", options.share_dir.display()),
                "--sandbox=none".into(),
                "--cache=never".into(),
            ],
            &fs_log,
        )?;
        wait_for_socket(&mut virtiofsd, &fs_sock, &fs_log)?;
        let vsock_sock = dir.0.join("vsock.sock");
        let vsock_log = dir.0.join("vhost-device-vsock.log");
        let mut vsock = spawn(
            "vhost-device-vsock",
            &[
                "--guest-cid".into(),
                options.guest_cid.to_string(),
                "--socket".into(),
                vsock_sock.display().to_string(),
                "--uds-path".into(),
                dir.0.join("vsock.uds").display().to_string(),
            ],
            &vsock_log,
        )?;
        wait_for_socket(&mut vsock, &vsock_sock, &vsock_log)?;
        Ok(Self {
            virtiofsd,
            vsock,
            dir,
            options,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// vhost-device-vsock's host-side socket (`CONNECT <port>` goes here).
    pub fn vsock_uds(&self) -> PathBuf {
        self.dir.0.join("vsock.uds")
    }

    /// QEMU arguments attaching the memory backend and both devices.
    pub fn qemu_args(&self) -> Vec<String> {
        qemu_args(
            &self.options,
            &self.dir.0.join("fs.sock"),
            &self.dir.0.join("vsock.sock"),
        )
    }

    /// The daemons' logs, for test failure messages.
    pub fn logs(&self) -> String {
        ["virtiofsd.log", "vhost-device-vsock.log"]
            .iter()
            .map(|f| {
                format!(
                    "--- {f}\n{}",
                    std::fs::read_to_string(self.dir.0.join(f)).unwrap_or_default()
                )
            })
            .collect()
    }

    /// Connects to guest `port` through vhost-device-vsock's Unix socket.
    /// Retries while the guest refuses (not listening yet) or does not
    /// answer within 3 s (its driver is not up: vhost-device-vsock may hold
    /// or lose the request), until `timeout`. An abandoned attempt can still
    /// reach the guest later as a connection that closes without data; the
    /// guest side must ignore those.
    pub fn connect_vsock(&self, port: u32, timeout: Duration) -> io::Result<UnixStream> {
        let start = Instant::now();
        loop {
            let left = timeout
                .saturating_sub(start.elapsed())
                .max(Duration::from_millis(100));
            match try_connect(&self.vsock_uds(), port, left) {
                Ok(s) => return Ok(s),
                Err(e) if start.elapsed() >= timeout => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("vsock connect to port {port}: {e}"),
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Whether both daemons are still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.virtiofsd.child.try_wait(), Ok(None))
            && matches!(self.vsock.child.try_wait(), Ok(None))
    }
}

/// vhost-device-vsock host protocol: `CONNECT <port>\n` → `OK <host port>\n`.
fn try_connect(uds: &Path, port: u32, wait: Duration) -> io::Result<UnixStream> {
    let mut s = UnixStream::connect(uds)?;
    s.set_read_timeout(Some(wait))?;
    s.write_all(format!("CONNECT {port}\n").as_bytes())?;
    // Read the reply byte by byte: payload may follow right after it.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = io::Read::read(&mut s, &mut byte)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "no listener on that port",
            ));
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
        if line.len() > 64 {
            return Err(io::Error::other("overlong CONNECT reply"));
        }
    }
    let line = String::from_utf8_lossy(&line);
    if !line.starts_with("OK ") {
        return Err(io::Error::other(format!("CONNECT refused: {line:?}")));
    }
    s.set_read_timeout(None)?;
    Ok(s)
}

fn qemu_args(o: &DeviceOptions, fs_sock: &Path, vsock_sock: &Path) -> Vec<String> {
    let (fs_dev, vsock_dev) = match o.bus {
        DeviceBus::Pci => ("vhost-user-fs-pci", "vhost-user-vsock-pci"),
        DeviceBus::Mmio => ("vhost-user-fs-device", "vhost-user-vsock-device"),
    };
    let mut a = vec![
        "-object".to_string(),
        format!(
            "memory-backend-memfd,id=mem,size={}M,share=on",
            o.memory_mib
        ),
        "-machine".into(),
        "memory-backend=mem".into(),
        "-chardev".into(),
        format!("socket,id=fs0,path={}", fs_sock.display()),
        "-device".into(),
        format!("{fs_dev},chardev=fs0,tag={}", o.fs_tag),
        "-chardev".into(),
        format!("socket,id=vsock0,path={}", vsock_sock.display()),
        "-device".into(),
        format!("{vsock_dev},chardev=vsock0"),
    ];
    if o.bus == DeviceBus::Mmio && o.modern_mmio {
        // microvm creates legacy (version 1) virtio-mmio otherwise.
        a.extend(["-global".into(), "virtio-mmio.force-legacy=false".into()]);
    }
    a
}

/// Reads one line (for simple host programs talking to the guest).
pub fn read_line(stream: &mut UnixStream) -> io::Result<String> {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_args_for_pci_and_mmio() {
        let mut o = DeviceOptions::new("/tmp", DeviceBus::Pci, 512);
        let pci = qemu_args(&o, Path::new("/d/fs.sock"), Path::new("/d/vsock.sock")).join(" ");
        assert!(pci.contains("memory-backend-memfd,id=mem,size=512M,share=on"));
        assert!(pci.contains("-machine memory-backend=mem"));
        assert!(pci.contains("-device vhost-user-fs-pci,chardev=fs0,tag=share"));
        assert!(pci.contains("-device vhost-user-vsock-pci,chardev=vsock0"));
        assert!(!pci.contains("force-legacy"));
        o.bus = DeviceBus::Mmio;
        let mmio = qemu_args(&o, Path::new("/d/fs.sock"), Path::new("/d/vsock.sock")).join(" ");
        assert!(mmio.contains("-device vhost-user-fs-device,chardev=fs0,tag=share"));
        assert!(mmio.contains("-device vhost-user-vsock-device,chardev=vsock0"));
        assert!(mmio.contains("-global virtio-mmio.force-legacy=false"));
    }

    #[test]
    fn missing_share_is_an_error_before_anything_starts() {
        let o = DeviceOptions::new("/nonexistent/mk-share", DeviceBus::Pci, 256);
        assert_eq!(
            VmDevices::start(o).err().unwrap().kind(),
            io::ErrorKind::NotFound
        );
    }

    /// Needs the daemons (`make setup`): starts both, then checks that the
    /// guard kills them and removes their sockets.
    #[cfg(feature = "vm")]
    #[test]
    fn daemons_start_and_are_cleaned_up() {
        let share = std::env::temp_dir().join(format!("mk-share-test-{}", std::process::id()));
        std::fs::create_dir_all(&share).unwrap();
        let mut d = VmDevices::start(DeviceOptions::new(&share, DeviceBus::Pci, 256)).unwrap();
        assert!(d.alive(), "{}", d.logs());
        let dir = d.dir().to_path_buf();
        let pids = [d.virtiofsd.child.id(), d.vsock.child.id()];
        assert!(dir.join("fs.sock").exists() && dir.join("vsock.sock").exists());
        drop(d);
        assert!(!dir.exists(), "socket directory removed");
        for pid in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "daemon {pid} reaped"
            );
        }
        std::fs::remove_dir_all(&share).unwrap();
    }
}
