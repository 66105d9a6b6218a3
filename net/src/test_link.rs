//! Test support: two [`Nic`]s joined by an in-memory Ethernet link, and a smoltcp
//! `Device` over a [`Nic`] for a client-side stack.

use crate::stack::{instant, Nic, MAX_FRAME};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv4Cidr};
use std::cell::Cell;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

pub struct LinkNic {
    mac: [u8; 6],
    inbox: Queue,
    outbox: Queue,
    /// Frames sent so far.
    pub sent: usize,
}

/// Two ends of one link.
pub fn link() -> (LinkNic, LinkNic) {
    let ab: Queue = Default::default();
    let ba: Queue = Default::default();
    (
        LinkNic {
            mac: [2, 0, 0, 0, 0, 1],
            inbox: ba.clone(),
            outbox: ab.clone(),
            sent: 0,
        },
        LinkNic {
            mac: [2, 0, 0, 0, 0, 2],
            inbox: ab,
            outbox: ba,
            sent: 0,
        },
    )
}

impl Nic for LinkNic {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        let f = self.inbox.borrow_mut().pop_front()?;
        buf[..f.len()].copy_from_slice(&f);
        Some(f.len())
    }
    fn can_send(&mut self) -> bool {
        self.outbox.borrow().len() < 256
    }
    fn send(&mut self, frame: &[u8]) -> bool {
        assert!(frame.len() <= MAX_FRAME);
        self.sent += 1;
        self.outbox.borrow_mut().push_back(frame.to_vec());
        true
    }
}

/// A smoltcp device over a [`Nic`] (the client side of the tests).
pub struct Device<'a>(pub &'a mut LinkNic);

pub struct Rx(Vec<u8>);
pub struct Tx<'a>(&'a mut LinkNic);

impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.send(&buf);
        r
    }
}

impl smoltcp::phy::Device for Device<'_> {
    type RxToken<'a>
        = Rx
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a>
    where
        Self: 'a;
    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let f = self.0.inbox.borrow_mut().pop_front()?;
        Some((Rx(f), Tx(self.0)))
    }
    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(self.0))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = MAX_FRAME;
        c
    }
}

pub const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
pub const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
pub const MS: u64 = 1_000_000;

thread_local! {
    static NOW: Cell<u64> = const { Cell::new(1_000 * MS) };
    /// The client side, pumped by the server's idle hook while a write waits.
    pub static CLIENTS: RefCell<Option<Clients>> = const { RefCell::new(None) };
}

pub fn now() -> u64 {
    NOW.with(Cell::get)
}

pub fn advance(ns: u64) {
    NOW.with(|n| n.set(n.get() + ns));
}

pub fn idle() {
    advance(MS);
    CLIENTS.with(|c| {
        if let Some(c) = c.borrow_mut().as_mut() {
            c.poll();
        }
    });
}

pub struct Clients {
    nic: LinkNic,
    iface: Interface,
    sockets: SocketSet<'static>,
    /// Whether each socket's received bytes are read by `poll` (a slow reader says no).
    pub reading: Vec<(SocketHandle, bool, Vec<u8>)>,
    next_port: u16,
}

impl Clients {
    pub fn new(nic: LinkNic) -> Self {
        let mut nic = nic;
        let mac = EthernetAddress(nic.mac());
        let mut dev = Device(&mut nic);
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ethernet(mac)),
            &mut dev,
            instant(now()),
        );
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::Ipv4(Ipv4Cidr::new(CLIENT_IP, 24)));
        });
        Clients {
            nic,
            iface,
            sockets: SocketSet::new(Vec::new()),
            reading: Vec::new(),
            next_port: 40000,
        }
    }

    pub fn poll(&mut self) {
        let mut dev = Device(&mut self.nic);
        self.iface.poll(instant(now()), &mut dev, &mut self.sockets);
        for (h, reading, got) in &mut self.reading {
            let s = self.sockets.get_mut::<tcp::Socket>(*h);
            if *reading {
                while s.can_recv() {
                    let _ = s.recv(|b| {
                        got.extend_from_slice(b);
                        (b.len(), ())
                    });
                }
            }
        }
    }

    pub fn connect(&mut self) -> usize {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64 * 1024]),
            tcp::SocketBuffer::new(vec![0; 64 * 1024]),
        );
        self.next_port += 1;
        s.connect(
            self.iface.context(),
            (IpAddress::Ipv4(SERVER_IP), 8080),
            self.next_port,
        )
        .unwrap();
        let h = self.sockets.add(s);
        self.reading.push((h, true, Vec::new()));
        self.reading.len() - 1
    }

    pub fn socket(&mut self, i: usize) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.reading[i].0)
    }
}

pub fn with_clients<R>(f: impl FnOnce(&mut Clients) -> R) -> R {
    CLIENTS.with(|c| f(c.borrow_mut().as_mut().unwrap()))
}

pub fn received(i: usize) -> Vec<u8> {
    with_clients(|c| c.reading[i].2.clone())
}

pub fn client_state(i: usize) -> tcp::State {
    with_clients(|c| c.socket(i).state())
}

/// Runs `step` (the server side) and the clients until `done` or 15 simulated seconds.
pub fn run_until(mut step: impl FnMut(), mut done: impl FnMut() -> bool) {
    for _ in 0..15_000 {
        step();
        with_clients(Clients::poll);
        if done() {
            return;
        }
        advance(MS);
    }
    panic!("no progress within 15 simulated seconds");
}
