//! In-guest device tests, selected with `test=<name>` on the command line;
//! the host test (ci/tests/devices.rs) checks what they print.
//!
//! - `fs-checksum`: lists the share root, reads `file=` (default
//!   `random.bin`) in 4 MiB pieces, prints its mk64 checksum and the read
//!   throughput.
//! - `vsock-echo`: listens on `echo_port=` (default 5000) and echoes u32
//!   big-endian length-prefixed frames (at most 1 MiB) on every connection
//!   until `conns=` (default 2) connections that sent data have ended.
//! - `delay_ms=N` (any test): wait N ms before bringing the devices up.
//! - `fs-errors`: bad paths, missing files, short reads, and a file the host
//!   truncates and removes while it is open (the host is told over vsock).

use crate::devices::{self, Devices};
use crate::exit_code;
use alloc::{vec, vec::Vec};
use arch::BootInfo;
use drivers::fuse::FsError;
use drivers::vsock::{ConnId, VsockError, VsockServer};
use mcp::frame::{encode_frame, read_frame, FrameDecoder, FrameEvent};

pub fn run(info: &BootInfo, name: &str) -> u8 {
    // `delay_ms=` holds device bring-up back: the host side must cope with a
    // guest that is slow to come up (connections made before it listens).
    if let Some(ms) = info
        .cmdline()
        .get("delay_ms")
        .and_then(|v| v.parse::<u64>().ok())
    {
        let until = arch::time::now_ns() + ms * 1_000_000;
        while arch::time::now_ns() < until {
            devices::idle();
        }
    }
    let devices = devices::init(info);
    let result = match name {
        "fs-checksum" => fs_checksum(devices, info),
        "vsock-echo" => vsock_echo(devices, info),
        "fs-errors" => fs_errors(devices, info),
        other => Err(alloc::format!("unknown test {other:?}")),
    };
    match result {
        Ok(()) => {
            log::info!("test {name}: PASS");
            exit_code::SUCCESS
        }
        Err(e) => {
            log::error!("test {name}: FAIL: {e}");
            exit_code::SELFTEST_FAILED
        }
    }
}

type TestResult = Result<(), alloc::string::String>;

/// mk64: FNV-1a's constants over little-endian u64 words (the tail padded
/// with zeros). Word-wise, so 64 MiB hash quickly under TCG; the host test
/// computes the same.
pub struct Mk64(u64);

impl Mk64 {
    pub fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    /// `bytes.len()` must be a multiple of 8 except for the last call.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0 ^ w).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0 ^ u64::from_le_bytes(w)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn fs_checksum(devices: Devices, info: &BootInfo) -> TestResult {
    let mut fs = devices.fs.ok_or("no virtio-fs device")?;
    let cmdline = info.cmdline();
    let name = cmdline.get("file").unwrap_or("random.bin");
    let entries = fs.list("/").map_err(|e| alloc::format!("list /: {e}"))?;
    for e in &entries {
        log::info!(
            "fs-list: {} {} {}",
            if e.is_dir { "dir" } else { "file" },
            e.name,
            e.size.unwrap_or(0)
        );
    }
    let file = fs
        .open(name)
        .map_err(|e| alloc::format!("open {name}: {e}"))?;
    let size = file.size();
    let mut buf = vec![0u8; 4 << 20];
    let mut hash = Mk64::new();
    let start = arch::time::now_ns();
    let mut read_ns = 0u64;
    let mut offset = 0u64;
    while offset < size {
        let n = (size - offset).min(buf.len() as u64) as usize;
        let t = arch::time::now_ns();
        fs.read_exact_at(&file, offset, &mut buf[..n])
            .map_err(|e| alloc::format!("read {name}: {e}"))?;
        read_ns += arch::time::now_ns().saturating_sub(t);
        hash.update(&buf[..n]);
        offset += n as u64;
    }
    let ns = arch::time::now_ns().saturating_sub(start).max(1);
    let read_ns = read_ns.max(1);
    fs.close(file).map_err(|e| alloc::format!("close: {e}"))?;
    log::info!("fs-checksum: file={name} bytes={size} mk64={:016x}", hash.0);
    log::info!(
        "fs-throughput: {} KiB read in {} ms = {} KiB/s ({} KiB per READ, up to {} in flight); with checksum {} ms",
        size / 1024,
        read_ns / 1_000_000,
        size * 1_000_000_000 / 1024 / read_ns,
        fs.max_read() / 1024,
        (buf.len() / fs.max_read() as usize).min(drivers::virtiofs::REQUEST_QUEUE_SIZE / 2),
        ns / 1_000_000
    );
    Ok(())
}

/// A connection being echoed: its frame decoder holds what is not yet a whole frame.
struct Echo {
    id: ConnId,
    decoder: FrameDecoder,
    frames: usize,
    received: usize,
}

const MAX_FRAME: usize = 1 << 20;

fn vsock_echo(devices: Devices, info: &BootInfo) -> TestResult {
    let driver = devices.vsock.ok_or("no vsock device")?;
    let cmdline = info.cmdline();
    let port = cmdline
        .get("echo_port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(5000);
    let want: usize = cmdline
        .get("conns")
        .and_then(|p| p.parse().ok())
        .unwrap_or(2);
    let mut server = VsockServer::new(driver, port, devices::clock());
    if let Some(k) = devices.vsock_kicker {
        server = server.with_kicker(k);
    }
    log::info!(
        "vsock-echo: listening on cid {} port {port}",
        server.guest_cid()
    );
    let mut conns: Vec<Echo> = Vec::new();
    let mut ended = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while ended < want {
        let progressed = server
            .poll()
            .map_err(|e| alloc::format!("vsock poll: {e}"))?;
        while let Some(id) = server.next_accepted() {
            log::info!("vsock-echo: accepted connection from port {}", id.peer.port);
            conns.push(Echo {
                id,
                decoder: FrameDecoder::new(MAX_FRAME),
                frames: 0,
                received: 0,
            });
        }
        let mut i = 0;
        while i < conns.len() {
            match pump_echo(&mut server, &mut conns[i], &mut buf) {
                Ok(()) => i += 1,
                Err(why) => {
                    let c = conns.swap_remove(i);
                    log::info!(
                        "vsock-echo: connection from port {} ended after {} frames: {why}",
                        c.id.peer.port,
                        c.frames
                    );
                    server.close(c.id);
                    // A connection that never carried a byte is a host
                    // connect attempt given up before we answered: not a
                    // client, so it does not count.
                    if c.received > 0 {
                        ended += 1;
                    }
                }
            }
        }
        if !progressed {
            devices::idle();
        }
    }
    log::info!("vsock-echo: {ended} connections served");
    Ok(())
}

/// Decodes what arrived and echoes every complete frame. `Err` ends the connection (with
/// the reason).
fn pump_echo<H: virtio_drivers::Hal, T: virtio_drivers::transport::Transport>(
    server: &mut VsockServer<H, T>,
    c: &mut Echo,
    buf: &mut [u8],
) -> Result<(), alloc::string::String> {
    let mut events = Vec::new();
    let mut ended = None;
    loop {
        match server.recv(c.id, buf) {
            Ok(0) => break,
            Ok(n) => {
                c.decoder.feed(&buf[..n], &mut events);
                c.received += n;
            }
            Err(VsockError::Closed) if !c.decoder.is_mid_frame() => {
                ended = Some(alloc::string::String::from("closed by peer"));
                break;
            }
            Err(e) => {
                let pending = c.decoder.truncated().map_or(0, |t| t.received);
                ended = Some(alloc::format!(
                    "{e} with {pending} bytes of a frame pending"
                ));
                break;
            }
        }
    }
    // Frames that arrived before the end are still echoed.
    for event in events {
        let payload = match event {
            FrameEvent::Frame(payload) => payload,
            FrameEvent::Empty => Vec::new(),
            FrameEvent::Oversized { len, limit } => {
                return Err(alloc::format!(
                    "frame of {len} bytes refused (limit {limit})"
                ))
            }
        };
        server
            .send_all(c.id, &encode_frame(&payload))
            .map_err(|e| alloc::format!("echo: {e}"))?;
        c.frames += 1;
    }
    ended.map_or(Ok(()), Err)
}

fn expect_err<T>(what: &str, r: Result<T, FsError>, want: fn(&FsError) -> bool) -> TestResult {
    match r {
        Err(e) if want(&e) => {
            log::info!("fs-errors: {what}: {e} (as expected)");
            Ok(())
        }
        Err(e) => Err(alloc::format!("{what}: wrong error {e}")),
        Ok(_) => Err(alloc::format!("{what}: succeeded but must fail")),
    }
}

fn fs_errors(devices: Devices, _info: &BootInfo) -> TestResult {
    let mut fs = devices.fs.ok_or("no virtio-fs device")?;
    expect_err("open missing", fs.open("no-such-file"), |e| {
        *e == FsError::NotFound
    })?;
    expect_err("escape with ..", fs.open("../etc/passwd"), |e| {
        matches!(e, FsError::BadPath(_))
    })?;
    expect_err("escape inside path", fs.open("sub/../../x"), |e| {
        matches!(e, FsError::BadPath(_))
    })?;
    expect_err("list a file", fs.list("small.txt"), |e| {
        *e == FsError::NotADirectory
    })?;
    expect_err("open a directory", fs.open("/"), |e| {
        *e == FsError::IsADirectory
    })?;
    let small = fs
        .open("small.txt")
        .map_err(|e| alloc::format!("open small.txt: {e}"))?;
    let mut buf = vec![0u8; (small.size() + 100) as usize];
    expect_err(
        "read past the end",
        fs.read_exact_at(&small, 0, &mut buf),
        |e| matches!(e, FsError::UnexpectedEof { .. }),
    )?;
    fs.close(small).map_err(|e| alloc::format!("close: {e}"))?;

    // A file that vanishes while open: tell the host over vsock, which
    // truncates and deletes it, then read.
    let driver = devices.vsock.ok_or("no vsock device")?;
    let mut server = VsockServer::new(driver, 5001, devices::clock());
    if let Some(k) = devices.vsock_kicker {
        server = server.with_kicker(k);
    }
    let file = fs
        .open("vanish.bin")
        .map_err(|e| alloc::format!("open vanish.bin: {e}"))?;
    let size = file.size();
    log::info!("fs-errors: vanish.bin open ({size} bytes), waiting for the host");
    let id = loop {
        server.poll().map_err(|e| alloc::format!("vsock: {e}"))?;
        if let Some(id) = server.next_accepted() {
            break id;
        }
        devices::idle();
    };
    server
        .send_all(id, &encode_frame(b"opened"))
        .map_err(|e| alloc::format!("vsock: {e}"))?;
    let reply = read_frame(64, |buf| server.recv_exact(id, buf))
        .map_err(|e| alloc::format!("vsock: {e:?}"))?;
    if reply != b"gone" {
        return Err("host did not confirm the removal".into());
    }
    let mut buf = vec![0u8; size as usize];
    expect_err(
        "read a vanished file",
        fs.read_exact_at(&file, 0, &mut buf),
        |e| matches!(e, FsError::UnexpectedEof { .. }),
    )?;
    let _ = fs.close(file);
    expect_err("open a vanished file", fs.open("vanish.bin"), |e| {
        *e == FsError::NotFound
    })?;
    // The client goes on working after all of that.
    fs.list("/")
        .map_err(|e| alloc::format!("list after errors: {e}"))?;
    Ok(())
}
