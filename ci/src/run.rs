//! Running a VM: captured (serial collected, timeout enforced) or interactive.

use crate::exit::KernelExit;
use crate::qemu::VmConfig;
use std::io::{self, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The line the kernel prints when initialisation is complete.
pub const BOOT_DONE: &str = "boot done: ";

#[derive(Debug)]
pub struct VmOutcome {
    /// QEMU's exit status (`None` if killed by a signal, e.g. on timeout).
    pub status: Option<i32>,
    pub exit: KernelExit,
    /// Serial console output, `\r` removed.
    pub serial: String,
    /// QEMU's stderr.
    pub stderr: String,
    pub timed_out: bool,
    /// Wall time from spawning QEMU to its exit (or the kill).
    pub wall: Duration,
    /// Wall time from spawning QEMU to the end of the "boot done" line.
    pub boot_done_wall: Option<Duration>,
    /// The kernel's own count: first instruction to "boot done", in µs.
    pub boot_done_kernel_us: Option<u64>,
}

impl VmOutcome {
    /// The kernel's exit code, if it gave one.
    pub fn code(&self) -> Option<u8> {
        match self.exit {
            KernelExit::Code(c) => Some(c),
            _ => None,
        }
    }

    /// A summary for assertion messages: status and the serial log.
    pub fn describe(&self) -> String {
        format!(
            "status {:?} ({:?}), timed out: {}\n--- serial ---\n{}\n--- stderr ---\n{}",
            self.status, self.exit, self.timed_out, self.serial, self.stderr
        )
    }
}

/// Parse `boot done: N us` out of a serial line.
pub fn parse_boot_done_us(line: &str) -> Option<u64> {
    let rest = &line[line.find(BOOT_DONE)? + BOOT_DONE.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    rest[digits.len()..]
        .starts_with(" us")
        .then(|| digits.parse().ok())
        .flatten()
}

/// Boot `cfg`, collect its serial output, and kill it after `cfg.timeout`.
/// A hung kernel gives `timed_out = true`; this never blocks longer than the
/// timeout plus the time to reap QEMU.
pub fn run_captured(cfg: &VmConfig) -> io::Result<VmOutcome> {
    let bin = cfg.machine.arch().qemu_binary();
    let start = Instant::now();
    // A runner killed by a signal runs no destructors: QEMU must die with it.
    let mut child = crate::orphan::die_with_parent(&mut Command::new(bin))
        .args(cfg.qemu_args("stdio"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {bin}: {e}")))?;

    // Serial reader: forwards chunks with their arrival time.
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let mut out = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    let mut err = child.stderr.take().expect("piped stderr");
    let err_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });

    let mut serial = Vec::new();
    let mut boot_done_wall = None;
    let mut timed_out = false;
    let mut collect = |serial: &mut Vec<u8>, at: Instant, chunk: Vec<u8>| {
        serial.extend_from_slice(&chunk);
        if boot_done_wall.is_none() {
            // The "boot done" line counts once its newline arrived.
            let text = String::from_utf8_lossy(serial);
            if let Some(p) = text.find(BOOT_DONE) {
                if text[p..].contains('\n') {
                    boot_done_wall = Some(at - start);
                }
            }
        }
    };
    let status = loop {
        while let Ok((at, chunk)) = rx.try_recv() {
            collect(&mut serial, at, chunk);
        }
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() >= cfg.timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        if let Ok((at, chunk)) = rx.recv_timeout(Duration::from_millis(5)) {
            collect(&mut serial, at, chunk);
        }
    };
    let wall = start.elapsed();
    let _ = reader.join();
    while let Ok((at, chunk)) = rx.try_recv() {
        collect(&mut serial, at, chunk);
    }
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let serial = String::from_utf8_lossy(&serial).replace('\r', "");
    let boot_done_kernel_us = serial.lines().find_map(parse_boot_done_us);
    let code = status.code();
    Ok(VmOutcome {
        status: code,
        exit: if timed_out {
            KernelExit::Killed
        } else {
            cfg.machine.exit_decoding().decode(code)
        },
        serial,
        stderr,
        timed_out,
        wall,
        boot_done_wall,
        boot_done_kernel_us,
    })
}

/// Boot with the serial console on this terminal (`mon:stdio`: Ctrl-A X quits,
/// Ctrl-A C toggles the QEMU monitor). Returns the decoded exit.
pub fn run_interactive(cfg: &VmConfig) -> io::Result<KernelExit> {
    let bin = cfg.machine.arch().qemu_binary();
    let status = crate::orphan::die_with_parent(&mut Command::new(bin))
        .args(cfg.qemu_args("mon:stdio"))
        .status()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {bin}: {e}")))?;
    Ok(cfg.machine.exit_decoding().decode(status.code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_done_line() {
        assert_eq!(
            parse_boot_done_us("[    0.0205] INFO  boot done: 20521 us since first"),
            Some(20521)
        );
        assert_eq!(parse_boot_done_us("boot done: x us"), None);
        assert_eq!(parse_boot_done_us("boot done: 12 ms"), None);
        assert_eq!(parse_boot_done_us("nothing"), None);
    }
}
