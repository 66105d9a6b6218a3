//! `mcp-cli serve`: the host-side instance of the kernel's server loop (same `mcp` crate
//! code, same framing) over TCP or a Unix socket, with the test tool set. Integration tests
//! and local experiments use it in place of the VM.

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::thread;
use std::time::{Duration, Instant};

use mcp::{Acceptor, Connection, ConnectionClosed, ReadStatus, Server, ServerConfig, ServerLoop};
use mk_service::logs::Level;

use crate::target::Stream;
use crate::test_tools;

/// A non-blocking host socket as an `mcp::Connection`.
pub struct SocketConnection {
    stream: Stream,
}

impl SocketConnection {
    pub fn new(stream: Stream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(SocketConnection { stream })
    }
}

impl Connection for SocketConnection {
    fn try_read(&mut self, buf: &mut [u8]) -> ReadStatus {
        match self.stream.read(buf) {
            Ok(0) => ReadStatus::Closed,
            Ok(n) => ReadStatus::Data(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                ReadStatus::WouldBlock
            }
            Err(_) => ReadStatus::Closed,
        }
    }

    fn write_all(&mut self, mut data: &[u8]) -> Result<(), ConnectionClosed> {
        while !data.is_empty() {
            match self.stream.write(data) {
                Ok(0) => return Err(ConnectionClosed),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_micros(200))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(ConnectionClosed),
            }
        }
        Ok(())
    }
}

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, String),
}

impl Listener {
    fn accept(&self) -> io::Result<Option<Stream>> {
        let result = match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
            Listener::Unix(l, _) => l.accept().map(|(s, _)| Stream::Unix(s)),
        };
        match result {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub struct ServeOptions {
    pub tcp: Option<String>,
    pub unix: Option<String>,
    pub token_delay: Duration,
    pub max_frame: usize,
    /// Serve the kernel's real tools (mk-service) with this model file instead of the test
    /// tools; its directory is the share.
    pub model: Option<std::path::PathBuf>,
    /// Matmul threads for the real service.
    pub threads: usize,
}

/// Binds, prints `listening <tcp|unix> <address>` on stdout, and serves forever.
pub fn run(opts: ServeOptions) -> Result<(), String> {
    serve(opts, true)
}

/// Like [`run`] without the `listening` line (stdout belongs to the caller).
pub fn run_quiet(opts: ServeOptions) -> Result<(), String> {
    serve(opts, false)
}

fn serve(opts: ServeOptions, announce: bool) -> Result<(), String> {
    let listener = match (&opts.tcp, &opts.unix) {
        (Some(addr), None) => {
            let l = TcpListener::bind(addr).map_err(|e| format!("cannot bind tcp {addr}: {e}"))?;
            let local = l.local_addr().map_err(|e| e.to_string())?;
            if announce {
                println!("listening tcp {local}");
            }
            Listener::Tcp(l)
        }
        (None, Some(path)) => {
            let l =
                UnixListener::bind(path).map_err(|e| format!("cannot bind unix {path}: {e}"))?;
            if announce {
                println!("listening unix {path}");
            }
            Listener::Unix(l, path.clone())
        }
        _ => return Err("serve needs exactly one of --tcp HOST:PORT or --unix PATH".into()),
    };
    io::stdout().flush().map_err(|e| e.to_string())?;
    match &listener {
        Listener::Tcp(l) => l.set_nonblocking(true),
        Listener::Unix(l, _) => l.set_nonblocking(true),
    }
    .map_err(|e| e.to_string())?;

    let start = Instant::now();
    let log = mk_service::host::shared_log();
    let (config, tools) = match &opts.model {
        Some(model) => real_service(model, opts.threads, &log, opts.max_frame)?,
        None => {
            log.borrow_mut().push(
                Level::Info,
                0,
                "serve",
                "test server started (echo generator, no model)",
            );
            let config = ServerConfig {
                name: "microkernelia-test".into(),
                title: Some("microkernelia host test server".into()),
                instructions: Some(
                    "Host test server: the infer tool echoes prompt words; no model is loaded."
                        .into(),
                ),
                max_frame: opts.max_frame,
                ..ServerConfig::default()
            };
            (
                config,
                test_tools::registry(opts.token_delay, log.clone(), start),
            )
        }
    };
    let mut server_loop: ServerLoop<SocketConnection> = ServerLoop::new(Server::new(config, tools));
    let mut acceptor = LoggingAcceptor {
        listener,
        log,
        start,
        accepted: 0,
        error: None,
    };
    let mut idle_rounds = 0u32;
    loop {
        let busy = server_loop.poll_accepting(&mut acceptor);
        if let Some(e) = acceptor.error.take() {
            return Err(e);
        }
        if busy {
            idle_rounds = 0;
        } else {
            // Back off gently while idle; stay responsive while busy.
            idle_rounds = idle_rounds.saturating_add(1);
            let pause = if idle_rounds < 100 { 100 } else { 2000 };
            thread::sleep(Duration::from_micros(pause));
        }
    }
}

/// The kernel's tools (mk-service) on the host: the model's directory is the share, the
/// engine runs with this CPU's best kernels on `threads` threads.
fn real_service(
    model: &std::path::Path,
    threads: usize,
    log: &test_tools::SharedLog,
    max_frame: usize,
) -> Result<(ServerConfig, mcp::ToolRegistry), String> {
    use mk_service::host::{DirFs, HostMemory, RingLogs};
    let dir = model
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = model
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("model file name is not UTF-8")?;
    let features = mk_models::host::host_features();
    let platform = mk_service::Platform {
        fs: Box::new(DirFs::new(dir)),
        logs: Box::new(RingLogs(log.clone())),
        memory: Box::new(HostMemory),
        clock: mk_models::host::clock_ns,
        executor: Box::new(mk_models::host::ScopedThreads {
            threads: threads.max(1),
        }),
        info: mk_service::PlatformInfo {
            kernel_version: env!("CARGO_PKG_VERSION").into(),
            arch: std::env::consts::ARCH,
            cpu_feature_names: Vec::new(),
            cpu_features: features,
        },
    };
    let service = mk_service::Service::new(platform, mk_service::ModelLimits::default());
    let summary = service.load(name)?;
    log.borrow_mut().push(
        Level::Info,
        0,
        "serve",
        &format!(
            "host service: {summary}, kernels {}, {threads} thread(s)",
            service.kernel_variant()
        ),
    );
    let mut tools = mcp::ToolRegistry::new();
    service.register(&mut tools)?;
    let config = ServerConfig {
        name: "microkernelia-host".into(),
        title: Some("microkernelia engine on the host".into()),
        max_frame,
        ..ServerConfig::default()
    };
    // The service's state lives in the tools (Rc); the Service handle can go.
    Ok((config, tools))
}

/// Accepts connections for the server loop (also while a tool runs) and logs them.
struct LoggingAcceptor {
    listener: Listener,
    log: test_tools::SharedLog,
    start: Instant,
    accepted: u64,
    /// A failed accept() ends the server; reported after the poll round.
    error: Option<String>,
}

impl Acceptor<SocketConnection> for LoggingAcceptor {
    fn accept(&mut self) -> Option<SocketConnection> {
        loop {
            let stream = match self.listener.accept() {
                Ok(Some(stream)) => stream,
                Ok(None) => return None,
                Err(e) => {
                    self.error = Some(format!("accept failed: {e}"));
                    return None;
                }
            };
            match SocketConnection::new(stream) {
                Ok(conn) => {
                    self.log.borrow_mut().push(
                        Level::Debug,
                        test_tools::ns_since(self.start),
                        "serve",
                        &format!("connection {} opened", self.accepted),
                    );
                    self.accepted += 1;
                    return Some(conn);
                }
                Err(e) => eprintln!("serve: dropping a connection: {e}"),
            }
        }
    }
}
