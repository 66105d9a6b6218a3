//! IPv4 over Ethernet with smoltcp: the interface, its address (DHCP or static), and a
//! fixed pool of TCP sockets listening on one port.
//!
//! The network card comes in as the small [`Nic`] trait (copy a received frame out, queue
//! a frame to send), so the same code runs over virtio-net in the kernel and over an
//! in-memory link in the host tests. smoltcp's own clock is the caller's: every call takes
//! `now_ns` (the kernel passes the arch clock), and [`NetStack::poll_delay_ns`] says when
//! the next timer (retransmission, DHCP renewal, delayed ACK) is due.
//!
//! Connections are bounded by construction: the pool has `max_connections` sockets, each
//! with fixed receive and send buffers, all allocated once here. A SYN that finds no
//! listening socket is answered with a reset, so a flood of connections costs nothing
//! beyond the pool. A socket whose connection ended goes back to listening.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

/// Largest Ethernet frame without FCS (1500-byte MTU).
pub const MAX_FRAME: usize = 1514;

/// An Ethernet card, polled.
pub trait Nic {
    fn mac(&self) -> [u8; 6];
    /// Copies the next received frame into `buf` (at least [`MAX_FRAME`] bytes) and
    /// returns its length, or `None` when nothing arrived.
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize>;
    /// Whether [`Nic::send`] can queue a frame now.
    fn can_send(&mut self) -> bool;
    /// Queues one frame; false when it was dropped (TCP will retransmit).
    fn send(&mut self, frame: &[u8]) -> bool;
}

/// How the interface gets its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Setup {
    /// Ask a DHCP server (QEMU's user networking answers: 10.0.2.15/24 via 10.0.2.2).
    Dhcp,
    Static {
        address: Ipv4Cidr,
        gateway: Option<Ipv4Address>,
    },
}

impl Ipv4Setup {
    /// From the kernel command line: `ip=A.B.C.D/N` (no `ip=` or `ip=dhcp`: DHCP) and
    /// `gw=A.B.C.D` (only with a static address).
    pub fn parse(ip: Option<&str>, gw: Option<&str>) -> Result<Ipv4Setup, String> {
        let ip = match ip {
            None | Some("dhcp") => {
                if let Some(g) = gw {
                    return Err(alloc::format!(
                        "gw={g} needs a static ip=A.B.C.D/N (DHCP brings its own router)"
                    ));
                }
                return Ok(Ipv4Setup::Dhcp);
            }
            Some(ip) => ip,
        };
        let (addr, prefix) = ip
            .split_once('/')
            .ok_or_else(|| alloc::format!("ip={ip}: expected A.B.C.D/prefix, e.g. 10.0.2.15/24"))?;
        let addr: Ipv4Address = addr
            .parse()
            .map_err(|_| alloc::format!("ip={ip}: `{addr}` is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (1..=32).contains(p))
            .ok_or_else(|| alloc::format!("ip={ip}: prefix must be 1..32"))?;
        let address = Ipv4Cidr::new(addr, prefix);
        let gateway = match gw {
            None => None,
            Some(g) => {
                let g: Ipv4Address = g
                    .parse()
                    .map_err(|_| alloc::format!("gw={g}: not an IPv4 address"))?;
                if !address.contains_addr(&g) {
                    return Err(alloc::format!("gw={g} is not inside ip={ip}"));
                }
                Some(g)
            }
        };
        Ok(Ipv4Setup::Static { address, gateway })
    }
}

/// The TCP side: one port, a fixed number of connections and buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConfig {
    pub port: u16,
    /// Simultaneous connections (sockets in the pool).
    pub max_connections: usize,
    pub rx_buffer: usize,
    pub tx_buffer: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            port: 8080,
            max_connections: 48,
            rx_buffer: 16 * 1024,
            tx_buffer: 64 * 1024,
        }
    }
}

/// Reset a connection the peer stopped acknowledging after this long.
const TCP_TIMEOUT: Duration = Duration::from_secs(30);

pub fn instant(now_ns: u64) -> Instant {
    Instant::from_micros((now_ns / 1000) as i64)
}

/// A smoltcp `Device` over a [`Nic`] for one `poll`; frames are copied through `rx`.
struct NicDevice<'a, N: Nic> {
    nic: &'a mut N,
    rx: &'a mut [u8],
    tx: &'a mut [u8],
}

struct Rx<'a>(&'a [u8]);
struct Tx<'a, N: Nic> {
    nic: &'a mut N,
    buf: &'a mut [u8],
}

impl RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl<N: Nic> TxToken for Tx<'_, N> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(self.buf.len());
        let r = f(&mut self.buf[..len]);
        if !self.nic.send(&self.buf[..len]) {
            log::debug!("net: a {len}-byte frame was dropped (transmit queue full)");
        }
        r
    }
}

impl<N: Nic> Device for NicDevice<'_, N> {
    type RxToken<'a>
        = Rx<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a, N>
    where
        Self: 'a;

    fn receive(&mut self, _ts: Instant) -> Option<(Rx<'_>, Tx<'_, N>)> {
        if !self.nic.can_send() {
            // Leave frames queued until a reply (an ACK) could go out.
            return None;
        }
        let n = self.nic.recv(self.rx)?;
        Some((
            Rx(&self.rx[..n]),
            Tx {
                nic: self.nic,
                buf: self.tx,
            },
        ))
    }

    fn transmit(&mut self, _ts: Instant) -> Option<Tx<'_, N>> {
        if !self.nic.can_send() {
            return None;
        }
        Some(Tx {
            nic: self.nic,
            buf: self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(16);
        caps
    }
}

/// The interface, its sockets and the address state.
pub struct NetStack {
    iface: Interface,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    tcp: Vec<SocketHandle>,
    config: TcpConfig,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

impl NetStack {
    /// Brings the interface up on `nic`. `seed` randomises TCP sequence numbers and
    /// ports; pass something that differs between boots.
    pub fn new<N: Nic>(
        nic: &mut N,
        setup: Ipv4Setup,
        tcp: TcpConfig,
        seed: u64,
        now_ns: u64,
    ) -> Self {
        let mac = EthernetAddress(nic.mac());
        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        config.random_seed = seed;
        let mut rx = vec![0u8; MAX_FRAME];
        let mut tx = vec![0u8; MAX_FRAME];
        let mut device = NicDevice {
            nic,
            rx: &mut rx,
            tx: &mut tx,
        };
        let mut iface = Interface::new(config, &mut device, instant(now_ns));
        let mut sockets = SocketSet::new(Vec::new());
        let dhcp = match setup {
            Ipv4Setup::Dhcp => Some(sockets.add(dhcpv4::Socket::new())),
            Ipv4Setup::Static { address, gateway } => {
                iface.update_ip_addrs(|addrs| {
                    let _ = addrs.push(IpCidr::Ipv4(address));
                });
                if let Some(gw) = gateway {
                    let _ = iface.routes_mut().add_default_ipv4_route(gw);
                }
                None
            }
        };
        let handles = (0..tcp.max_connections)
            .map(|_| {
                let socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0u8; tcp.rx_buffer]),
                    tcp::SocketBuffer::new(vec![0u8; tcp.tx_buffer]),
                );
                sockets.add(socket)
            })
            .collect();
        let mut stack = NetStack {
            iface,
            sockets,
            dhcp,
            tcp: handles,
            config: tcp,
            rx,
            tx,
        };
        stack.relisten();
        stack
    }

    pub fn tcp_config(&self) -> &TcpConfig {
        &self.config
    }

    /// The interface's IPv4 address, once it has one.
    pub fn ipv4(&self) -> Option<Ipv4Cidr> {
        self.iface.ip_addrs().iter().find_map(|a| match a {
            IpCidr::Ipv4(c) => Some(*c),
            #[allow(unreachable_patterns)]
            _ => None,
        })
    }

    /// Moves frames between the card and the sockets and runs the timers. Returns whether
    /// anything changed (a socket may have data, space or a new state).
    pub fn poll<N: Nic>(&mut self, nic: &mut N, now_ns: u64) -> bool {
        let mut device = NicDevice {
            nic,
            rx: &mut self.rx,
            tx: &mut self.tx,
        };
        let changed = self
            .iface
            .poll(instant(now_ns), &mut device, &mut self.sockets)
            == PollResult::SocketStateChanged;
        self.poll_dhcp();
        self.relisten();
        changed
    }

    /// How long until smoltcp needs a poll even if no frame arrives.
    pub fn poll_delay_ns(&mut self, now_ns: u64) -> Option<u64> {
        self.iface
            .poll_delay(instant(now_ns), &self.sockets)
            .map(|d| d.total_micros() * 1000)
    }

    fn poll_dhcp(&mut self) {
        let Some(h) = self.dhcp else { return };
        let had_lease = self.ipv4().is_some();
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
            None => return,
            Some(dhcpv4::Event::Configured(c)) => Some((c.address, c.router)),
            // Also reported once at start, before any lease.
            Some(dhcpv4::Event::Deconfigured) if !had_lease => return,
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        self.iface.update_ip_addrs(|addrs| {
            addrs.retain(|a| !matches!(a, IpCidr::Ipv4(_)));
            if let Some((address, _)) = event {
                let _ = addrs.push(IpCidr::Ipv4(address));
            }
        });
        self.iface.routes_mut().remove_default_ipv4_route();
        match event {
            Some((address, router)) => {
                if let Some(r) = router {
                    let _ = self.iface.routes_mut().add_default_ipv4_route(r);
                }
                log::info!(
                    "net: DHCP lease {address}{}",
                    router.map_or(String::new(), |r| alloc::format!(" via {r}"))
                );
            }
            None => log::warn!("net: DHCP lease lost"),
        }
    }

    /// Every pool socket whose connection is over listens again. When none is left
    /// listening, connections in TIME-WAIT (we closed first, e.g. after `Connection:
    /// close`) are dropped early so that new clients are not refused for their 10 s.
    fn relisten(&mut self) {
        let listening = self
            .tcp
            .iter()
            .any(|&h| self.sockets.get::<tcp::Socket>(h).state() == tcp::State::Listen);
        for &h in &self.tcp {
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            if !listening && s.state() == tcp::State::TimeWait {
                s.abort();
            }
        }
        for &h in &self.tcp {
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            if s.state() == tcp::State::Closed {
                s.set_timeout(Some(TCP_TIMEOUT));
                s.set_nagle_enabled(false);
                if let Err(e) = s.listen(self.config.port) {
                    log::error!("net: listen on port {}: {e}", self.config.port);
                }
            }
        }
    }

    /// Number of sockets in the pool; connection `i` is pool socket `i`.
    pub fn pool_size(&self) -> usize {
        self.tcp.len()
    }

    pub fn socket(&mut self, i: usize) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.tcp[i])
    }

    /// Pool sockets with an established (or closing) connection.
    pub fn connections(&self) -> usize {
        self.tcp
            .iter()
            .filter(|&&h| {
                let s = self.sockets.get::<tcp::Socket>(h);
                !matches!(s.state(), tcp::State::Listen | tcp::State::Closed)
            })
            .count()
    }
}
