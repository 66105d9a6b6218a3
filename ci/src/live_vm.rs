//! A VM whose serial console can be watched while it runs, for tests whose
//! host side must wait for the guest (e.g. connect over vsock only once the
//! guest listens).
//!
//! Why wait: vhost-device-vsock 0.3.0 drops host connections that arrive
//! after QEMU has attached but before the guest activated the device ("Received
//! a backend event before vring initialization"), and afterwards serves no
//! host connection at all (measured: about 1 run in 10 under load). A host
//! client must connect only once the guest is up.

use crate::exit::KernelExit;
use crate::qemu::VmConfig;
use crate::run::VmOutcome;
use std::io::{self, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct LiveVm {
    child: Child,
    serial: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    start: Instant,
    cfg: VmConfig,
}

impl LiveVm {
    pub fn start(cfg: &VmConfig) -> io::Result<Self> {
        let bin = cfg.machine.arch().qemu_binary();
        let mut child = crate::orphan::die_with_parent(&mut Command::new(bin))
            .args(cfg.qemu_args("stdio"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {bin}: {e}")))?;
        let serial = Arc::new(Mutex::new(Vec::new()));
        let mut out = child.stdout.take().expect("piped stdout");
        let sink = serial.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            s
        });
        Ok(Self {
            child,
            serial,
            reader: Some(reader),
            stderr: Some(stderr),
            start: Instant::now(),
            cfg: cfg.clone(),
        })
    }

    pub fn serial(&self) -> String {
        String::from_utf8_lossy(&self.serial.lock().unwrap()).replace('\r', "")
    }

    /// Waits until the serial output contains `text`; false on timeout or
    /// when QEMU exits first.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.serial().contains(text) {
                return true;
            }
            if start.elapsed() > timeout || matches!(self.child.try_wait(), Ok(Some(_))) {
                return self.serial().contains(text);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for QEMU to exit (killing it after the config's timeout).
    pub fn finish(mut self) -> io::Result<VmOutcome> {
        let mut timed_out = false;
        let status = loop {
            if let Some(st) = self.child.try_wait()? {
                break st;
            }
            if self.start.elapsed() >= self.cfg.timeout {
                timed_out = true;
                let _ = self.child.kill();
                break self.child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let wall = self.start.elapsed();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let code = status.code();
        Ok(VmOutcome {
            status: code,
            exit: if timed_out {
                KernelExit::Killed
            } else {
                self.cfg.machine.exit_decoding().decode(code)
            },
            serial: self.serial(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            timed_out,
            wall,
            boot_done_wall: None,
            boot_done_kernel_us: None,
        })
    }
}

impl Drop for LiveVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
