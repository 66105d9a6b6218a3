//! Host daemons a VM depends on (virtiofsd, vhost-device-vsock, ...): started
//! before QEMU, stopped (killed and reaped) after it or when dropped.
//!
//! A daemon that serves a vhost-user socket is ready when the socket file
//! exists; `ready_path` waits for that, bounded by `ready_timeout`.

use std::io;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub program: String,
    pub args: Vec<String>,
    /// Wait for this path to exist after starting.
    pub ready_path: Option<PathBuf>,
    pub ready_timeout: Duration,
    child: Option<Child>,
}

impl Daemon {
    pub fn new(program: &str, args: &[&str]) -> Self {
        Self {
            program: program.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ready_path: None,
            ready_timeout: Duration::from_secs(10),
            child: None,
        }
    }

    pub fn ready_when_exists(mut self, p: impl Into<PathBuf>) -> Self {
        self.ready_path = Some(p.into());
        self
    }

    pub fn start(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {}: {e}", self.program)))?;
        if let Some(p) = &self.ready_path {
            let t0 = Instant::now();
            while !p.exists() {
                if let Some(st) = child.try_wait()? {
                    return Err(io::Error::other(format!(
                        "{} exited early: {st}",
                        self.program
                    )));
                }
                if t0.elapsed() > self.ready_timeout {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(io::Error::other(format!(
                        "{} not ready: {} did not appear",
                        self.program,
                        p.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.child = Some(child);
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_ready_path_and_stops() {
        let dir = std::env::temp_dir().join(format!("mk-daemon-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("ready");
        let _ = std::fs::remove_file(&f);
        let script = format!("sleep 0.1; touch {}; sleep 30", f.display());
        let mut d = Daemon::new("sh", &["-c", &script]).ready_when_exists(&f);
        let t0 = Instant::now();
        d.start().unwrap();
        assert!(f.exists());
        d.stop();
        assert!(t0.elapsed() < Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn early_exit_is_an_error() {
        let mut d = Daemon::new("sh", &["-c", "exit 3"]).ready_when_exists("/nonexistent/mk-x");
        assert!(d.start().is_err());
    }
}
