//! Serving the model: at boot, mount the virtio-fs share, load `model=<path>` from it, register
//! the MCP tools (mk-service) and serve MCP forever on vsock port `port=` (default 5000) and,
//! when there is a network card, over Streamable HTTP on `http_port=` (default 8080; see
//! http.rs for its options). One `ServerLoop` serves both.
//!
//! Command line: `model=<path in the share>` (optional: `load_model` can load one later),
//! `port=<vsock port>`, `context=<KV cache positions>` (default 1024, capped at the model's),
//! `idle_max_us=<longest sleep between polls while idle>` (default [`IDLE_MAX_SLEEP_US`]).

use alloc::rc::Rc;
use alloc::string::{String, ToString};
use core::cell::RefCell;

use arch::BootInfo;
use drivers::idle::{IdleBackoff, IdleWait};
use drivers::vsock::VsockServer;
use mcp::{Server, ServerConfig, ServerLoop, ToolRegistry};
use mk_service::{ModelLimits, Service};

use crate::devices;

mod http;
mod platform;
mod vsock_conn;

use http::{Acceptors, AnyConnection};
use mk_net::mcp_http::SessionAcceptor;
use vsock_conn::VsockAcceptor;

pub const DEFAULT_PORT: u32 = 5000;

/// Idle serve loop: spin this long after the last work (the next frame of a burst is
/// microseconds away), then sleep from [`IDLE_MIN_SLEEP_US`] doubling up to `idle_max_us=`.
/// Measured under TCG (docs/ARCHITECTURE.md, "Polling, not interrupts"): the idle QEMU
/// process costs about 13% of a host core with fixed 200 us slices and about 1% with 5 ms.
const IDLE_SPIN_US: u64 = 1_000;
const IDLE_MIN_SLEEP_US: u64 = 200;
pub const IDLE_MAX_SLEEP_US: u64 = 5_000;

/// Whether the command line asks for the MCP server.
pub fn wanted(info: &BootInfo) -> bool {
    let c = info.cmdline();
    c.get("model").is_some() || c.get("port").is_some() || c.get("serve").is_some()
}

/// Brings the devices and the service up and serves; returns only on a fatal setup error.
pub fn run(info: &BootInfo) -> String {
    let cmdline = info.cmdline();
    let port: u32 = match cmdline.number("port", DEFAULT_PORT) {
        Ok(p) => p,
        Err(e) => return e.to_string(),
    };
    let idle_max_us: u64 = match cmdline.number("idle_max_us", IDLE_MAX_SLEEP_US) {
        Ok(us) => us,
        Err(e) => return e.to_string(),
    };
    let limits = ModelLimits {
        max_context: match cmdline.number("context", ModelLimits::default().max_context) {
            Ok(c) if c > 0 => c,
            Ok(_) => return String::from("context=0: need at least one position"),
            Err(e) => return e.to_string(),
        },
        ..ModelLimits::default()
    };
    let devices = devices::init(info);
    let kicker = devices.vsock_kicker;
    let Some(fs) = devices.fs else {
        return String::from(
            "no virtio-fs device: the model share is attached with vhost-user-fs (make run-*)",
        );
    };
    if devices.vsock.is_none() && devices.net.is_none() {
        return String::from(
            "no vsock device and no network card: MCP is served over vhost-user-vsock or \
             virtio-net (make run-*)",
        );
    }

    let service = Service::new(platform::platform(fs), limits);
    log::info!("matmul kernels: {}", service.kernel_variant());
    let mut model = String::from("none");
    if let Some(path) = info.cmdline().get("model") {
        match service.load(path) {
            Ok(summary) => {
                log::info!("model: loaded {path}: {summary}");
                model = String::from(path);
            }
            // Still serve: `load_model` can load another one.
            Err(e) => log::error!("model: {e}"),
        }
    }
    let mut tools = ToolRegistry::new();
    if let Err(e) = service.register(&mut tools) {
        return e;
    }
    // The official conformance suite's test tools (docs/MCP.md, "Conformance").
    if info.cmdline().get("conformance").is_some() {
        if let Err(e) = mk_net::conformance_tools::register(&mut tools, http::sleep_ms) {
            return e;
        }
    }
    let config = ServerConfig {
        name: String::from("microkernelia"),
        version: String::from(env!("CARGO_PKG_VERSION")),
        ..ServerConfig::default()
    };
    let max_frame = config.max_frame;
    let mut server_loop: ServerLoop<AnyConnection> = ServerLoop::new(Server::new(config, tools));
    let mut listening = String::new();
    let vsock = devices.vsock.map(|vsock| {
        let mut server = VsockServer::new(vsock, port, devices::clock());
        if let Some(k) = kicker {
            // Re-rings the doorbells while idle (notifications virtio-drivers may skip).
            server = server.with_kicker(k);
        }
        listening = alloc::format!("vsock cid {} port {port}", server.guest_cid());
        VsockAcceptor(Rc::new(RefCell::new(server)))
    });
    let http = match devices.net.map(|n| http::start(info, n, max_frame)) {
        None => None,
        Some(Err(e)) => return e,
        Some(Ok(t)) => {
            let port = t.borrow().http().stack().tcp_config().port;
            if !listening.is_empty() {
                listening.push_str(", ");
            }
            listening.push_str(&alloc::format!("http port {port}"));
            Some(SessionAcceptor(t))
        }
    };
    let mut acceptor = Acceptors { vsock, http };
    log::info!(
        "mcp ready: {listening}, model {model}, kernels {}: {} us since first instruction",
        service.kernel_variant(),
        arch::time::since_boot_ns() / 1000
    );
    let mut backoff = IdleBackoff::new(
        IDLE_SPIN_US * 1000,
        IDLE_MIN_SLEEP_US * 1000,
        idle_max_us.saturating_mul(1000),
    );
    loop {
        if server_loop.poll_accepting(&mut acceptor) {
            backoff.work();
            continue;
        }
        // Lets other cooperative tasks run if this loop is one (a no-op in the boot context).
        crate::task::yield_now();
        match backoff.wait(arch::time::now_ns()) {
            IdleWait::Spin => core::hint::spin_loop(),
            // Wakes at the timer (or any interrupt): the next poll sees what came meanwhile,
            // and VsockServer::poll re-rings the doorbells (its Kicker) at most every 2 ms.
            IdleWait::Sleep(ns) => {
                arch::cpu::idle(ns);
            }
        }
    }
}
