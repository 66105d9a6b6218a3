//! Device tests (issue 3): the guest reads a 64 MiB pseudo-random file over
//! virtio-fs and reports its checksum, echoes 1 B / 64 KiB / 1 MiB frames
//! over vsock on two concurrent connections, and survives a host that drops
//! a connection mid-frame or removes a file it has open. Each machine boots
//! with its own virtiofsd + vhost-device-vsock (ci::daemons).
//!
//! Machines: `MK_DEVICE_MACHINES` (default "q35 microvm", plus "virt
//! virt-mmio" when the aarch64 image exists). `virt` attaches the devices
//! over PCI (ECAM, BARs assigned by the kernel), `virt-mmio` over virtio-mmio.
#![cfg(feature = "vm")]

use ci::build::kernel_image;
use ci::daemons::{DeviceBus, DeviceOptions, VmDevices};
use ci::exit::KernelExit;
use ci::live_vm::LiveVm;
use ci::{run_captured, Machine, VmConfig, VmOutcome};
use mcp::frame::encode_frame;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MEMORY_MIB: u32 = 256;
const FILE_LEN: usize = 64 << 20;

/// (machine, bus, name)
fn machines() -> Vec<(Machine, DeviceBus, String)> {
    let list = std::env::var("MK_DEVICE_MACHINES").unwrap_or_else(|_| {
        let mut m = String::from("q35 microvm");
        if kernel_image(ci::Arch::Aarch64).exists() {
            m.push_str(" virt virt-mmio");
        }
        m
    });
    list.split_whitespace()
        .map(|name| {
            let (m, bus) = match name {
                "virt-mmio" => (Machine::Virt, DeviceBus::Mmio),
                "microvm" => (Machine::Microvm, DeviceBus::Mmio),
                other => (
                    Machine::parse(other).unwrap_or_else(|| panic!("unknown machine {other}")),
                    DeviceBus::Pci,
                ),
            };
            (m, bus, name.to_string())
        })
        .collect()
}

/// A share directory removed on drop.
struct Share(PathBuf);

impl Share {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mk-share-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("small.txt"), b"hello\n").unwrap();
        Share(dir)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// xorshift64* bytes: reproducible "random" content.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// mk64, as kernel/src/device_tests.rs computes it: FNV-1a constants over
/// little-endian u64 words, tail zero-padded.
fn mk64(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for c in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn start_devices(bus: DeviceBus, share: &Path) -> VmDevices {
    VmDevices::start(DeviceOptions::new(share, bus, MEMORY_MIB))
        .expect("daemons (run `make setup`)")
}

fn config(m: Machine, devices: &VmDevices, cmdline: &str) -> VmConfig {
    let kernel = kernel_image(m.arch());
    assert!(
        kernel.exists(),
        "no kernel image at {} (make build-*)",
        kernel.display()
    );
    let mut cfg = VmConfig::new(m, kernel)
        .cmdline(cmdline)
        .timeout(Duration::from_secs(120));
    cfg.memory_mib = MEMORY_MIB;
    cfg.extra_args = devices.qemu_args();
    cfg
}

fn assert_pass(m: &str, r: &VmOutcome, test: &str, devices: &VmDevices) {
    assert!(
        !r.timed_out
            && r.exit == KernelExit::Code(0)
            && r.serial.contains(&format!("test {test}: PASS")),
        "{test} on {m} failed\n{}\n{}",
        r.describe(),
        devices.logs()
    );
}

#[test]
fn guest_lists_share_and_checksums_64_mib_file() {
    let data = pseudo_random(FILE_LEN, 0x6d6b_2026);
    let expected = mk64(&data);
    for (machine, bus, m) in machines() {
        let m = m.as_str();
        let share = Share::new(&format!("fs-{m}"));
        std::fs::write(share.0.join("random.bin"), &data).unwrap();
        let devices = start_devices(bus, &share.0);
        let r = run_captured(&config(machine, &devices, "test=fs-checksum")).unwrap();
        assert_pass(m, &r, "fs-checksum", &devices);
        for line in [
            "fs-list: file small.txt 6",
            "fs-list: dir sub",
            "fs-list: file random.bin 67108864",
        ] {
            assert!(
                r.serial.contains(line),
                "{line:?} missing on {m}\n{}",
                r.describe()
            );
        }
        let want = format!("fs-checksum: file=random.bin bytes={FILE_LEN} mk64={expected:016x}");
        assert!(
            r.serial.contains(&want),
            "checksum differs on {m}: want {want}\n{}",
            r.describe()
        );
        if let Some(l) = r.serial.lines().find(|l| l.contains("fs-throughput")) {
            println!("{m}: {l} (VM wall {:?})", r.wall);
        }
    }
}

fn write_frame(s: &mut impl Write, payload: &[u8]) {
    s.write_all(&encode_frame(payload)).unwrap();
}

fn read_frame(s: &mut impl Read) -> Vec<u8> {
    mcp::frame::read_frame(1 << 20, |buf| s.read_exact(buf)).unwrap()
}

#[test]
fn vsock_echoes_1b_64k_1m_on_two_connections_and_survives_a_dropped_one() {
    for (machine, bus, m) in machines() {
        let m = m.as_str();
        let share = Share::new(&format!("vs-{m}"));
        let devices = start_devices(bus, &share.0);
        // On q35 the guest also waits 5 s before its driver starts, so the
        // host connects long before anyone listens.
        let delay = if m == "q35" { " delay_ms=5000" } else { "" };
        let cfg = config(
            machine,
            &devices,
            &format!("test=vsock-echo echo_port=5000 conns=3{delay}"),
        );
        let mut vm = LiveVm::start(&cfg).unwrap();
        // Connect only once the guest listens (see ci::live_vm).
        let listening = vm.wait_for("vsock-echo: listening", Duration::from_secs(60));
        let started = std::time::Instant::now();
        let echo = |k: u64| -> Result<(), String> {
            let mut s = devices
                .connect_vsock(5000, Duration::from_secs(60))
                .map_err(|e| format!("connection {k}: {e}"))?;
            for (i, size) in [1usize, 64 << 10, 1 << 20].into_iter().enumerate() {
                let msg = pseudo_random(size, k * 10 + i as u64 + 1);
                write_frame(&mut s, &msg);
                if read_frame(&mut s) != msg {
                    return Err(format!("connection {k}: {size}-byte echo differs"));
                }
            }
            Ok(())
        };
        let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
            let clients: Vec<_> = (0..2u64).map(|k| scope.spawn(move || echo(k))).collect();
            clients.into_iter().map(|c| c.join().unwrap()).collect()
        });
        // A third connection sends half a frame and hangs up.
        let dropped = devices
            .connect_vsock(5000, Duration::from_secs(10))
            .map(|mut s| {
                // The header of a 1000-byte frame and 300 of its bytes.
                s.write_all(&encode_frame(&[7u8; 1000])[..304]).unwrap();
            });
        let host_side = format!(
            "listening seen: {listening}, {results:?}, dropped: {dropped:?}, after {:?}",
            started.elapsed()
        );
        let r = vm.finish().unwrap();
        assert!(
            results.iter().all(Result::is_ok) && dropped.is_ok(),
            "host side on {m}: {host_side}\n{}\n{}",
            r.describe(),
            devices.logs()
        );
        assert_pass(m, &r, "vsock-echo", &devices);
        assert_eq!(
            r.serial.matches("ended after 3 frames").count(),
            2,
            "{}",
            r.describe()
        );
        assert!(
            r.serial.contains("ended after 0 frames")
                && r.serial.contains("bytes of a frame pending"),
            "dropped connection not reported\n{}",
            r.describe()
        );
    }
}

#[test]
fn bad_paths_short_reads_and_a_vanishing_file_are_errors() {
    for (machine, bus, m) in machines() {
        let m = m.as_str();
        let share = Share::new(&format!("err-{m}"));
        let vanish = share.0.join("vanish.bin");
        std::fs::write(&vanish, pseudo_random(300_000, 5)).unwrap();
        let devices = start_devices(bus, &share.0);
        let cfg = config(machine, &devices, "test=fs-errors");
        let mut vm = LiveVm::start(&cfg).unwrap();
        assert!(
            vm.wait_for("waiting for the host", Duration::from_secs(60)),
            "{}",
            vm.serial()
        );
        let mut s = devices
            .connect_vsock(5001, Duration::from_secs(60))
            .unwrap();
        assert_eq!(read_frame(&mut s), b"opened");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&vanish)
            .unwrap()
            .set_len(1000)
            .unwrap();
        std::fs::remove_file(&vanish).unwrap();
        write_frame(&mut s, b"gone");
        let r = vm.finish().unwrap();
        assert_pass(m, &r, "fs-errors", &devices);
        for line in [
            "open missing: no such file or directory",
            "escape with ..: path",
            "read past the end: file ended early",
            "read a vanished file: file ended early: wanted 300000 bytes at 0, got 1000",
            "open a vanished file: no such file or directory",
        ] {
            assert!(
                r.serial.contains(line),
                "{line:?} missing on {m}\n{}",
                r.describe()
            );
        }
        assert!(!r.serial.contains("PANIC"), "{}", r.describe());
    }
}

#[test]
fn legacy_virtio_mmio_is_refused_with_a_clear_message() {
    let share = Share::new("legacy");
    let mut options = DeviceOptions::new(&share.0, DeviceBus::Mmio, MEMORY_MIB);
    options.modern_mmio = false;
    let devices = VmDevices::start(options).unwrap();
    let r = run_captured(&config(Machine::Microvm, &devices, "test=fs-checksum")).unwrap();
    assert!(!r.timed_out, "{}", r.describe());
    assert!(
        r.serial.contains("legacy virtio-mmio (version 1) device refused; run QEMU with -global virtio-mmio.force-legacy=false"),
        "{}",
        r.describe()
    );
    assert!(
        r.serial
            .contains("test fs-checksum: FAIL: no virtio-fs device"),
        "{}",
        r.describe()
    );
    assert_eq!(r.exit, KernelExit::Code(1), "{}", r.describe());
    assert!(!r.serial.contains("PANIC"), "{}", r.describe());
}
