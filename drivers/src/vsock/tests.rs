//! The server against a fake vsock device that reads and writes the real
//! split virtqueues in memory (virtio 1.2 §2.7) and plays the host: it
//! enforces the credit the guest advertises, gives only a small credit of
//! its own, and can reset a connection mid-message.

use super::*;
use crate::hal::IdentityHal;
use crate::virtio::fake_device::{read_chain, write_chain, Chain, Queue};
use crate::virtio::F_VERSION_1;
use mcp::frame::{encode_frame, read_frame, ReadFrameError};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus};
use zerocopy::{FromBytes, Immutable, IntoBytes};

const GUEST_CID: u64 = 3;
const HOST_CID: u64 = 2;
const PORT: u32 = 1234;
const HDR: usize = 44;
/// The host's receive buffer: small, so the guest must wait for credit.
const HOST_BUF: u32 = 48 * 1024;

const OP_REQUEST: u16 = 1;
const OP_RESPONSE: u16 = 2;
const OP_RST: u16 = 3;
const OP_SHUTDOWN: u16 = 4;
const OP_RW: u16 = 5;
const OP_CREDIT_UPDATE: u16 = 6;
const OP_CREDIT_REQUEST: u16 = 7;

struct HostConn {
    port: u32,
    connected: bool,
    reset: bool,
    to_send: VecDeque<u8>,
    /// Reset the connection after sending this many bytes.
    reset_after: Option<usize>,
    sent: usize,
    received: Vec<u8>,
    tx_cnt: u32,
    fwd_cnt: u32,
    advertised_fwd: u32,
    guest_buf_alloc: u32,
    guest_fwd_cnt: u32,
    shutdown_after_send: bool,
    shut: bool,
}

#[derive(Default)]
struct Dev {
    queues: [Queue; 3],
    status: u32,
    to_guest: VecDeque<Vec<u8>>,
    conns: Vec<HostConn>,
    max_unread_seen: u32,
}

thread_local! {
    static DEV: RefCell<Option<Rc<RefCell<Dev>>>> = const { RefCell::new(None) };
}

fn header(
    src_port: u32,
    dst_port: u32,
    op: u16,
    len: u32,
    buf_alloc: u32,
    fwd_cnt: u32,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(HDR);
    h.extend(HOST_CID.to_le_bytes());
    h.extend(GUEST_CID.to_le_bytes());
    h.extend(src_port.to_le_bytes());
    h.extend(dst_port.to_le_bytes());
    h.extend(len.to_le_bytes());
    h.extend(1u16.to_le_bytes()); // stream
    h.extend(op.to_le_bytes());
    h.extend(0u32.to_le_bytes());
    h.extend(buf_alloc.to_le_bytes());
    h.extend(fwd_cnt.to_le_bytes());
    h
}

impl Dev {
    fn take_chains(&mut self, q: usize) -> Vec<(u16, Chain)> {
        self.queues[q].take_chains()
    }

    fn push_used(&mut self, q: usize, head: u16, len: u32) {
        self.queues[q].push_used(head, len);
    }

    fn conn(&mut self, port: u32) -> Option<&mut HostConn> {
        self.conns.iter_mut().find(|c| c.port == port)
    }

    fn handle_tx(&mut self) {
        for (head, chain) in self.take_chains(1) {
            assert!(chain.iter().all(|c| !c.2), "TX chains are device-readable");
            let pkt = read_chain(&chain);
            self.push_used(1, head, 0);
            let u32_at = |o: usize| u32::from_le_bytes(pkt[o..o + 4].try_into().unwrap());
            let (src_port, dst_port, len) = (u32_at(16), u32_at(20), u32_at(24) as usize);
            let op = u16::from_le_bytes(pkt[30..32].try_into().unwrap());
            assert_eq!(src_port, PORT);
            assert!(
                len <= 64 * 1024,
                "packet larger than vhost-device-vsock accepts"
            );
            let (buf_alloc, fwd_cnt) = (u32_at(36), u32_at(40));
            let mut reply = None;
            let Some(c) = self.conn(dst_port) else {
                continue;
            };
            c.guest_buf_alloc = buf_alloc;
            c.guest_fwd_cnt = fwd_cnt;
            match op {
                OP_RESPONSE => c.connected = true,
                OP_RW => {
                    let unread = c.tx_cnt.wrapping_sub(c.fwd_cnt);
                    assert!(
                        unread + len as u32 <= HOST_BUF,
                        "guest ignored the host's credit"
                    );
                    c.received.extend_from_slice(&pkt[HDR..HDR + len]);
                    c.tx_cnt = c.tx_cnt.wrapping_add(len as u32);
                }
                OP_CREDIT_REQUEST => {
                    reply = Some(header(
                        c.port,
                        PORT,
                        OP_CREDIT_UPDATE,
                        0,
                        HOST_BUF,
                        c.fwd_cnt,
                    ));
                }
                OP_SHUTDOWN | OP_RST => c.shut = true,
                OP_CREDIT_UPDATE => {}
                op => panic!("unexpected op {op}"),
            }
            if let Some(r) = reply {
                self.to_guest.push_back(r);
            }
        }
    }

    fn host_work(&mut self) {
        let mut out = Vec::new();
        for c in &mut self.conns {
            // The host application consumes everything and tells the guest.
            c.fwd_cnt = c.tx_cnt;
            if c.fwd_cnt != c.advertised_fwd {
                c.advertised_fwd = c.fwd_cnt;
                out.push(header(
                    c.port,
                    PORT,
                    OP_CREDIT_UPDATE,
                    0,
                    HOST_BUF,
                    c.fwd_cnt,
                ));
            }
            if !c.connected || c.reset {
                continue;
            }
            // Send within the guest's credit; track the worst backlog.
            while !c.to_send.is_empty() {
                let free = c
                    .guest_buf_alloc
                    .wrapping_sub(c.sent as u32 - c.guest_fwd_cnt);
                let limit = c.reset_after.map_or(usize::MAX, |r| r - c.sent);
                let n = (free as usize)
                    .min(c.to_send.len())
                    .min(RX_BUFFER_SIZE - HDR)
                    .min(limit);
                if n == 0 {
                    break;
                }
                let mut p = header(c.port, PORT, OP_RW, n as u32, HOST_BUF, c.fwd_cnt);
                p.extend(c.to_send.drain(..n));
                c.sent += n;
                out.push(p);
                if c.reset_after == Some(c.sent) {
                    out.push(header(c.port, PORT, OP_RST, 0, HOST_BUF, c.fwd_cnt));
                    c.reset = true;
                    break;
                }
            }
            if c.to_send.is_empty() && c.shutdown_after_send && !c.shut {
                c.shut = true;
                out.push(header(c.port, PORT, OP_SHUTDOWN, 0, HOST_BUF, c.fwd_cnt));
            }
        }
        self.to_guest.extend(out);
    }

    fn deliver_rx(&mut self) {
        if self.to_guest.is_empty() {
            return;
        }
        let chains = self.take_chains(0);
        let mut unused = Vec::new();
        for (head, chain) in chains {
            let Some(pkt) = self.to_guest.pop_front() else {
                unused.push(head);
                continue;
            };
            assert!(chain.len() == 1 && chain[0].2);
            let n = write_chain(&chain, &pkt);
            self.push_used(0, head, n as u32);
        }
        // Put back buffers we could not fill (rewind the avail cursor).
        self.queues[0].unpop(unused.len());
    }

    fn pump(&mut self) {
        if self.status & DeviceStatus::DRIVER_OK.bits() == 0 {
            return;
        }
        self.handle_tx();
        self.host_work();
        self.deliver_rx();
        for c in &self.conns {
            self.max_unread_seen = self.max_unread_seen.max(c.sent as u32 - c.guest_fwd_cnt);
        }
    }
}

fn pump() {
    DEV.with(|d| {
        if let Some(d) = d.borrow().as_ref() {
            d.borrow_mut().pump();
        }
    });
}

struct FakeTransport(Rc<RefCell<Dev>>);

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::Socket
    }
    fn read_device_features(&mut self) -> u64 {
        F_VERSION_1
    }
    fn write_driver_features(&mut self, _f: u64) {}
    fn max_queue_size(&mut self, _q: u16) -> u32 {
        64
    }
    fn notify(&mut self, _q: u16) {
        self.0.borrow_mut().pump();
    }
    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.0.borrow().status)
    }
    fn set_status(&mut self, s: DeviceStatus) {
        self.0.borrow_mut().status = s.bits();
    }
    fn set_guest_page_size(&mut self, _s: u32) {}
    fn requires_legacy_layout(&self) -> bool {
        false
    }
    fn queue_set(&mut self, q: u16, size: u32, desc: u64, avail: u64, used: u64) {
        self.0.borrow_mut().queues[q as usize] = Queue::new(size, desc, avail, used);
    }
    fn queue_unset(&mut self, q: u16) {
        self.0.borrow_mut().queues[q as usize] = Queue::default();
    }
    fn queue_used(&mut self, q: u16) -> bool {
        self.0.borrow().queues[q as usize].size != 0
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::empty()
    }
    fn read_config_generation(&self) -> u32 {
        0
    }
    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, VirtioError> {
        let cfg = GUEST_CID.to_le_bytes();
        T::read_from_bytes(&cfg[offset..offset + size_of::<T>()])
            .map_err(|_| VirtioError::InvalidParam)
    }
    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        _o: usize,
        _v: T,
    ) -> Result<(), VirtioError> {
        Err(VirtioError::Unsupported)
    }
}

fn now_ns() -> u64 {
    std::time::Instant::now()
        .duration_since(*START.get_or_init(std::time::Instant::now))
        .as_nanos() as u64
}
static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

fn setup(conns: Vec<HostConn>) -> (VsockServer<IdentityHal, FakeTransport>, Rc<RefCell<Dev>>) {
    crate::hal::tests::install_test_dma();
    let dev = Rc::new(RefCell::new(Dev {
        conns,
        ..Default::default()
    }));
    DEV.with(|d| *d.borrow_mut() = Some(dev.clone()));
    let driver =
        SocketDriver::<IdentityHal, FakeTransport>::new(FakeTransport(dev.clone())).unwrap();
    let clock = Clock {
        now_ns,
        idle: pump,
        timeout_ns: 5_000_000_000,
    };
    let server = VsockServer::new(driver, PORT, clock);
    {
        let mut d = dev.borrow_mut();
        let requests: Vec<_> = d
            .conns
            .iter()
            .map(|c| header(c.port, PORT, OP_REQUEST, 0, HOST_BUF, 0))
            .collect();
        d.to_guest.extend(requests);
        d.deliver_rx();
    }
    (server, dev)
}

fn host_conn(port: u32, payload: &[u8]) -> HostConn {
    HostConn {
        port,
        connected: false,
        reset: false,
        to_send: payload.iter().copied().collect(),
        reset_after: None,
        sent: 0,
        received: Vec::new(),
        tx_cnt: 0,
        fwd_cnt: 0,
        advertised_fwd: 0,
        guest_buf_alloc: 0,
        guest_fwd_cnt: 0,
        shutdown_after_send: false,
        shut: false,
    }
}

fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
    messages.iter().flat_map(|m| encode_frame(m)).collect()
}

/// One MCP frame (the protocol's codec) read through the server's blocking `recv_exact`.
fn read_msg(
    server: &mut VsockServer<IdentityHal, FakeTransport>,
    id: ConnId,
    max: usize,
) -> Result<Vec<u8>, ReadFrameError<VsockError>> {
    read_frame(max, |buf| server.recv_exact(id, buf))
}

fn write_msg(
    server: &mut VsockServer<IdentityHal, FakeTransport>,
    id: ConnId,
    payload: &[u8],
) -> Result<(), VsockError> {
    server.send_all(id, &encode_frame(payload))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed as u32)
                .to_le_bytes()[1]
        })
        .collect()
}

fn accept_all(server: &mut VsockServer<IdentityHal, FakeTransport>, n: usize) -> Vec<ConnId> {
    let mut ids = Vec::new();
    while ids.len() < n {
        server.poll().unwrap();
        while let Some(id) = server.next_accepted() {
            ids.push(id);
        }
        pump();
    }
    ids
}

#[test]
fn echoes_1b_64k_1m_on_two_connections_within_credit() {
    let messages = vec![
        pattern(1, 1),
        pattern(64 * 1024, 2),
        pattern(1024 * 1024, 3),
    ];
    let wire = framed(&messages);
    let (mut server, dev) = setup(vec![host_conn(5000, &wire), host_conn(5001, &wire)]);
    let ids = accept_all(&mut server, 2);
    assert_eq!(
        ids.iter().map(|i| i.peer.port).collect::<Vec<_>>(),
        vec![5000, 5001]
    );
    // Interleave: one message per connection in turn.
    for _ in 0..messages.len() {
        for &id in &ids {
            let m = read_msg(&mut server, id, 2 * 1024 * 1024).unwrap();
            write_msg(&mut server, id, &m).unwrap();
        }
    }
    for _ in 0..10 {
        pump();
    }
    let d = dev.borrow();
    for c in &d.conns {
        assert!(c.received == wire, "echo on port {} differs", c.port);
    }
    assert!(
        d.max_unread_seen <= CONNECTION_BUFFER,
        "host exceeded the guest's advertised buffer"
    );
}

#[test]
fn reset_mid_message_is_an_error_and_other_connections_go_on() {
    let big = framed(&[pattern(300_000, 9)]);
    let mut broken = host_conn(6000, &big);
    broken.reset_after = Some(100_000);
    let good = framed(&[pattern(200_000, 4)]);
    let (mut server, dev) = setup(vec![broken, host_conn(6001, &good)]);
    let ids = accept_all(&mut server, 2);
    assert_eq!(
        read_msg(&mut server, ids[0], 1 << 20),
        Err(ReadFrameError::Source(VsockError::Reset))
    );
    let m = read_msg(&mut server, ids[1], 1 << 20).unwrap();
    assert!(m == pattern(200_000, 4));
    write_msg(&mut server, ids[1], &m).unwrap();
    assert_eq!(
        write_msg(&mut server, ids[0], b"late"),
        Err(VsockError::Reset)
    );
    for _ in 0..5 {
        pump();
    }
    assert!(dev.borrow().conns[1].received == good);
}

#[test]
fn peer_shutdown_leaves_data_readable_then_closed() {
    let wire = framed(&[pattern(70_000, 5)]);
    let mut c = host_conn(7000, &wire);
    c.shutdown_after_send = true;
    let live_before = crate::hal::tests::live_pages();
    let (mut server, _dev) = setup(vec![c]);
    let queue_pages = crate::hal::tests::live_pages() - live_before;
    assert!(queue_pages >= 3, "three rings allocated through the Hal");
    let id = accept_all(&mut server, 1)[0];
    let m = read_msg(&mut server, id, 1 << 20).unwrap();
    assert_eq!(
        crate::hal::tests::live_pages() - live_before,
        queue_pages,
        "ring memory stays while the queues live"
    );
    assert_eq!(m.len(), 70_000);
    assert_eq!(
        read_msg(&mut server, id, 1 << 20),
        Err(ReadFrameError::Source(VsockError::Closed))
    );
    assert_eq!(server.send_all(id, b"x"), Err(VsockError::Closed));
    drop(server);
    assert_eq!(
        crate::hal::tests::live_pages(),
        live_before,
        "rings freed with the device"
    );
}

#[test]
fn oversized_frames_are_refused() {
    // The header of a 2 MiB frame, then only 10 bytes of it.
    let wire = encode_frame(&pattern(2 << 20, 0))[..14].to_vec();
    let (mut server, _dev) = setup(vec![host_conn(8000, &wire)]);
    let id = accept_all(&mut server, 1)[0];
    assert_eq!(
        read_msg(&mut server, id, 1 << 20),
        Err(ReadFrameError::TooLarge {
            len: 2 << 20,
            limit: 1 << 20
        })
    );
}
