//! Child processes (QEMU, virtiofsd, vhost-device-vsock) that die with the process that
//! started them. Guards kill them on drop, but a runner killed by a signal (an MCP client
//! ending `mcp-cli bridge --boot` with SIGTERM, a test harness timeout) runs no
//! destructors; Linux's parent-death signal covers that case.

use std::process::Command;

#[cfg(target_os = "linux")]
extern "C" {
    fn prctl(option: i32, ...) -> i32;
}

/// Makes the child started by `cmd` receive SIGKILL when the thread that started it ends.
/// Callers start children from a thread that outlives them (the one owning the guard).
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        const PR_SET_PDEATHSIG: i32 = 1;
        const SIGKILL: i32 = 9;
        // SAFETY: prctl is async-signal-safe (a plain system call), as pre_exec requires.
        unsafe {
            cmd.pre_exec(|| {
                if prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_dies_with_its_parent_thread() {
        // A thread starts a long sleep and ends; the sleep must go with it. (Not waited
        // for on purpose: the process reaps nothing, the check reads /proc.)
        #[allow(clippy::zombie_processes)]
        let pid = std::thread::spawn(|| {
            let child = die_with_parent(&mut Command::new("sleep"))
                .arg("30")
                .spawn()
                .unwrap();
            child.id()
        })
        .join()
        .unwrap();
        let start = std::time::Instant::now();
        let gone = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
        };
        while !gone(pid) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "child {pid} outlived its parent thread"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
