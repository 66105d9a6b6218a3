//! MCP over HTTP: the virtio-net card as an [`mk_net::stack::Nic`], the stack's address from
//! the command line (`ip=`, `gw=`; DHCP without them), the Streamable HTTP transport on
//! `http_port=` (default 8080) with `token=`, `http_hosts=`, `http_origins=`,
//! `http_sessions=`, `http_node=` (session id prefix for load balancers), the entropy the stack and the session ids use, and the connection type
//! that lets one `ServerLoop` serve vsock streams and HTTP sessions alike.

use alloc::string::String;
use alloc::vec::Vec;

use mcp::{Acceptor, Connection, ConnectionClosed, ReadStatus};
use mk_net::http::Limits;
use mk_net::http_server::{Clock, HttpServer};
use mk_net::mcp_http::{
    valid_node_name, HttpConfig, McpHttp, SessionAcceptor, SessionConnection, SharedTransport,
};
use mk_net::stack::{Ipv4Setup, NetStack, Nic, TcpConfig};

use super::vsock_conn::{VsockAcceptor, VsockConnection};
use crate::devices::{self, Net};

pub const DEFAULT_HTTP_PORT: u16 = 8080;

pub struct VirtioNic(Net);

impl Nic for VirtioNic {
    fn mac(&self) -> [u8; 6] {
        self.0.mac()
    }
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.0.recv(buf)
    }
    fn can_send(&mut self) -> bool {
        self.0.can_send()
    }
    fn send(&mut self, frame: &[u8]) -> bool {
        self.0.send(frame)
    }
}

pub type Transport = SharedTransport<VirtioNic>;

/// A client that stops reading loses its connection after this long without progress.
const WRITE_TIMEOUT_NS: u64 = 10_000_000_000;

/// How long `start` waits for a DHCP lease before serving anyway (QEMU answers at once).
const DHCP_WAIT_NS: u64 = 5_000_000_000;

fn list(value: Option<&str>, default: Vec<String>) -> Vec<String> {
    match value {
        None => default,
        Some(v) => v.split(',').map(|h| String::from(h.trim())).collect(),
    }
}

/// Brings the stack and the transport up on `net`; `Err` for a bad command line.
pub fn start(info: &arch::BootInfo, net: Net, max_body: usize) -> Result<Transport, String> {
    let c = info.cmdline();
    let setup = Ipv4Setup::parse(c.get("ip"), c.get("gw"))?;
    let port = match c.get("http_port") {
        None => DEFAULT_HTTP_PORT,
        Some(p) => p
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| alloc::format!("bad http_port={p:?}: expected 1..65535"))?,
    };
    let tcp = TcpConfig {
        port,
        ..TcpConfig::default()
    };
    let mut nic = VirtioNic(net);
    let now = arch::time::now_ns();
    let stack = NetStack::new(&mut nic, setup, tcp, random_u64(), now);
    if let Ipv4Setup::Static { address, gateway } = setup {
        log::info!(
            "net: static address {address}{}",
            gateway.map_or(String::new(), |g| alloc::format!(" via {g}"))
        );
    }
    let clock = Clock {
        now_ns: arch::time::now_ns,
        idle: devices::idle,
        write_timeout_ns: WRITE_TIMEOUT_NS,
    };
    let limits = Limits {
        max_body,
        ..Limits::default()
    };
    let defaults = HttpConfig::default();
    let config = HttpConfig {
        token: c.get("token").map(String::from),
        allowed_hosts: list(c.get("http_hosts"), defaults.allowed_hosts.clone()),
        allowed_origins: list(c.get("http_origins"), defaults.allowed_origins.clone()),
        max_sessions: match c.get("http_sessions") {
            None => defaults.max_sessions,
            Some(v) => v
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| alloc::format!("bad http_sessions={v:?}: expected a count"))?,
        },
        session_prefix: match c.get("http_node") {
            None => None,
            Some(n) if valid_node_name(n) => Some(String::from(n)),
            Some(n) => {
                return Err(alloc::format!(
                    "bad http_node={n:?}: 1 to 32 letters, digits, - or _"
                ))
            }
        },
        ..defaults
    };
    let mut http = HttpServer::new(nic, stack, limits, clock);
    let start = arch::time::now_ns();
    while http.stack().ipv4().is_none() && arch::time::now_ns() - start < DHCP_WAIT_NS {
        if !http.poll_network() {
            devices::idle();
        }
    }
    match http.stack().ipv4() {
        Some(a) => log::info!(
            "http: MCP Streamable HTTP on http://{}:{port}/mcp{}",
            a.address(),
            if config.token.is_some() {
                " (bearer token required)"
            } else {
                ""
            }
        ),
        None => log::warn!("http: no IPv4 address yet (DHCP); serving once one comes"),
    }
    Ok(McpHttp::new(http, config, random_u64).shared())
}

/// A connection of the one `ServerLoop`: a vsock stream or an HTTP session.
pub enum AnyConnection {
    Vsock(VsockConnection),
    Http(SessionConnection<VirtioNic>),
}

impl Connection for AnyConnection {
    fn try_read(&mut self, buf: &mut [u8]) -> ReadStatus {
        match self {
            AnyConnection::Vsock(c) => c.try_read(buf),
            AnyConnection::Http(c) => c.try_read(buf),
        }
    }
    fn write_all(&mut self, data: &[u8]) -> Result<(), ConnectionClosed> {
        match self {
            AnyConnection::Vsock(c) => c.write_all(data),
            AnyConnection::Http(c) => c.write_all(data),
        }
    }
}

/// New vsock connections and new HTTP sessions.
pub struct Acceptors {
    pub vsock: Option<VsockAcceptor>,
    pub http: Option<SessionAcceptor<VirtioNic>>,
}

impl Acceptor<AnyConnection> for Acceptors {
    fn accept(&mut self) -> Option<AnyConnection> {
        if let Some(c) = self.vsock.as_mut().and_then(|a| a.accept()) {
            return Some(AnyConnection::Vsock(c));
        }
        self.http
            .as_mut()
            .and_then(|a| a.accept())
            .map(AnyConnection::Http)
    }
}

/// Waits `ms` milliseconds, idling the CPU (for the conformance suite's test tools).
pub fn sleep_ms(ms: u64) {
    let end = arch::time::now_ns() + ms * 1_000_000;
    while arch::time::now_ns() < end {
        devices::idle();
    }
}

/// 64 random bits: the CPU's generator (RDRAND, RNDR) when it has one, mixed with the
/// clock; the clock alone otherwise (QEMU's `-cpu max` has both generators).
pub fn random_u64() -> u64 {
    let t = arch::time::now_ns();
    let hw = hardware_random().unwrap_or(0);
    splitmix(t ^ hw.rotate_left(17) ^ splitmix(hw))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(target_arch = "x86_64")]
fn hardware_random() -> Option<u64> {
    // CPUID.1:ECX bit 30 = RDRAND.
    if core::arch::x86_64::__cpuid(1).ecx & (1 << 30) == 0 {
        return None;
    }
    for _ in 0..10 {
        let mut v = 0u64;
        // SAFETY: RDRAND is present (checked above).
        if unsafe { core::arch::x86_64::_rdrand64_step(&mut v) } == 1 {
            return Some(v);
        }
    }
    None
}

#[cfg(target_arch = "aarch64")]
fn hardware_random() -> Option<u64> {
    let isar0: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { core::arch::asm!("mrs {}, ID_AA64ISAR0_EL1", out(reg) isar0) };
    if (isar0 >> 60) & 0xf == 0 {
        return None;
    }
    for _ in 0..10 {
        let v: u64;
        let ok: u64;
        // SAFETY: FEAT_RNG is present (checked above); RNDR (s3_3_c2_c4_0) sets Z on failure.
        unsafe {
            core::arch::asm!(
                "mrs {v}, s3_3_c2_c4_0",
                "cset {ok}, ne",
                v = out(reg) v,
                ok = out(reg) ok,
            )
        };
        if ok == 1 {
            return Some(v);
        }
    }
    None
}
