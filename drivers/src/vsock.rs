//! A vsock stream server over virtio-drivers' connection manager.
//!
//! virtio-drivers' `VsockConnectionManager` parses events and keeps a
//! receive ring per connection, but out of the box it advertises 1 KiB of
//! buffer, never tells the peer that buffer space was freed (the host stalls
//! after the first KiB), and fails a send outright when the peer lacks
//! credit. This layer adds what streams of megabytes need:
//!
//! - a receive buffer of [`CONNECTION_BUFFER`] bytes per connection, and a
//!   CREDIT_UPDATE whenever a quarter of it has been consumed (or the buffer
//!   ran empty), so the peer always learns about freed space;
//! - sends split into packets of at most [`MAX_PACKET`] (vhost-device-vsock
//!   refuses larger ones) and at most the peer's free credit, waiting for
//!   credit by polling the device;
//! - connection state: accepted, peer closed (data still readable), reset.
//!
//! Polling, not interrupts: the kernel is a single-core unikernel with one
//! event loop. Polling needs no interrupt controller code (IOAPIC on q35,
//! none on microvm's mmio IRQs, GIC on virt) and adds no latency under TCG;
//! the loop calls an idle hook between empty polls so the CPU can pause.

use crate::clock::Clock;
use crate::virtio::Kicker;
use alloc::{collections::VecDeque, vec::Vec};
use virtio_drivers::{
    device::socket::{
        DisconnectReason, SocketError, VirtIOSocket, VsockAddr, VsockConnectionManager,
        VsockEventType,
    },
    transport::Transport,
    Error as VirtioError, Hal,
};

/// Receive buffer per connection; also the credit we advertise.
pub const CONNECTION_BUFFER: u32 = 256 * 1024;
/// Largest packet payload we send (vhost-device-vsock's limit is 64 KiB).
pub const MAX_PACKET: usize = 64 * 1024;
/// Size of each RX virtqueue buffer (header + payload).
pub const RX_BUFFER_SIZE: usize = 64 * 1024;

pub type SocketDriver<H, T> = VirtIOSocket<H, T, RX_BUFFER_SIZE>;

/// A connection handle: the peer's address and our port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId {
    pub peer: VsockAddr,
    pub port: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VsockError {
    /// The peer reset the connection or it is unknown.
    Reset,
    /// The peer shut down and every byte it sent has been read.
    Closed,
    /// No progress within the deadline (peer gives no credit / no data).
    Timeout,
    Device(VirtioError),
}

impl core::fmt::Display for VsockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Reset => write!(f, "connection reset by peer"),
            Self::Closed => write!(f, "connection closed by peer"),
            Self::Timeout => write!(f, "vsock operation timed out"),
            Self::Device(e) => write!(f, "vsock device error: {e}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Peer sent SHUTDOWN; buffered data can still be read.
    PeerClosed,
    Reset,
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    state: State,
    /// Bytes read since the peer was last told (CREDIT_UPDATE or any packet).
    unadvertised: u32,
}

pub struct VsockServer<H: Hal, T: Transport> {
    mgr: VsockConnectionManager<H, T, RX_BUFFER_SIZE>,
    conns: Vec<Conn>,
    accepted: VecDeque<ConnId>,
    clock: Clock,
    kicker: Option<Kicker>,
    last_kick_ns: u64,
}

/// While idle, ring the RX and TX doorbells this often (see [`Kicker`]).
const KICK_INTERVAL_NS: u64 = 2_000_000;

impl<H: Hal, T: Transport> VsockServer<H, T> {
    /// Listens on `port`.
    pub fn new(driver: SocketDriver<H, T>, port: u32, clock: Clock) -> Self {
        let mut mgr = VsockConnectionManager::new_with_capacity(driver, CONNECTION_BUFFER);
        mgr.listen(port);
        Self {
            mgr,
            conns: Vec::new(),
            accepted: VecDeque::new(),
            clock,
            kicker: None,
            last_kick_ns: 0,
        }
    }

    /// Lets the server re-notify the device's queues while it waits.
    pub fn with_kicker(mut self, kicker: Kicker) -> Self {
        self.kicker = Some(kicker);
        self
    }

    fn kick_if_idle(&mut self) {
        let Some(k) = self.kicker else { return };
        let now = self.clock.now();
        if now.saturating_sub(self.last_kick_ns) >= KICK_INTERVAL_NS {
            self.last_kick_ns = now;
            k.kick(0); // RX: buffers we gave back
            k.kick(1); // TX
        }
    }

    pub fn guest_cid(&self) -> u64 {
        self.mgr.guest_cid()
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.id == id)
    }

    /// Handles every pending device event. Returns whether anything happened.
    pub fn poll(&mut self) -> Result<bool, VsockError> {
        let mut progressed = false;
        loop {
            let event = match self.mgr.poll() {
                Ok(Some(e)) => e,
                Ok(None) => {
                    if !progressed {
                        self.kick_if_idle();
                    }
                    return Ok(progressed);
                }
                // A peer that ignored our credit overflowed a receive buffer:
                // bytes are lost, so the stream cannot go on. virtio-drivers
                // does not say which connection; the sender's next read or
                // write on it fails when the host resets it.
                Err(VirtioError::SocketDeviceError(SocketError::OutputBufferTooShort(n))) => {
                    log::error!("vsock: peer overran our receive buffer by a {n}-byte packet");
                    progressed = true;
                    continue;
                }
                Err(e) => return Err(VsockError::Device(e)),
            };
            progressed = true;
            let id = ConnId {
                peer: event.source,
                port: event.destination.port,
            };
            match event.event_type {
                VsockEventType::ConnectionRequest => {
                    // The manager accepted it (we listen on the port).
                    self.conns.retain(|c| c.id != id);
                    self.conns.push(Conn {
                        id,
                        state: State::Open,
                        unadvertised: 0,
                    });
                    self.accepted.push_back(id);
                }
                VsockEventType::Disconnected { reason } => {
                    if let Some(c) = self.conn_mut(id) {
                        c.state = match reason {
                            DisconnectReason::Reset => State::Reset,
                            DisconnectReason::Shutdown => State::PeerClosed,
                        };
                    }
                }
                VsockEventType::Received { .. }
                | VsockEventType::CreditUpdate
                | VsockEventType::Connected
                | VsockEventType::CreditRequest => {}
            }
        }
    }

    /// The next connection accepted since the last call.
    pub fn next_accepted(&mut self) -> Option<ConnId> {
        self.accepted.pop_front()
    }

    /// Bytes that `recv` can return now without waiting.
    pub fn available(&mut self, id: ConnId) -> usize {
        self.mgr
            .recv_buffer_available_bytes(id.peer, id.port)
            .unwrap_or(0)
    }

    /// Reads what is buffered (possibly 0 bytes). `Closed` once the peer has
    /// shut down and everything was read; `Reset` after a reset.
    pub fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> Result<usize, VsockError> {
        let state = self
            .conns
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.state)
            .ok_or(VsockError::Reset)?;
        // The manager forgets a closed connection once it is drained: 0.
        let n = self.mgr.recv(id.peer, id.port, buf).unwrap_or_default();
        if n == 0 {
            return match state {
                State::Open => Ok(0),
                State::PeerClosed => Err(VsockError::Closed),
                State::Reset => Err(VsockError::Reset),
            };
        }
        let empty = self.available(id) == 0;
        let c = self.conn_mut(id).ok_or(VsockError::Reset)?;
        c.unadvertised += n as u32;
        if state == State::Open && (c.unadvertised >= CONNECTION_BUFFER / 4 || empty) {
            c.unadvertised = 0;
            self.mgr
                .update_credit(id.peer, id.port)
                .map_err(VsockError::Device)?;
        }
        Ok(n)
    }

    /// Reads exactly `buf.len()` bytes, polling the device while waiting.
    pub fn recv_exact(&mut self, id: ConnId, buf: &mut [u8]) -> Result<(), VsockError> {
        let mut done = 0;
        let mut last_progress = self.clock.now();
        while done < buf.len() {
            let n = self.recv(id, &mut buf[done..])?;
            done += n;
            if n > 0 {
                last_progress = self.clock.now();
                continue;
            }
            if !self.poll()? {
                if self.clock.expired(last_progress) {
                    return Err(VsockError::Timeout);
                }
                self.clock.idle();
            } else {
                last_progress = self.clock.now();
            }
        }
        Ok(())
    }

    /// Sends all of `data`, in order, waiting for the peer's credit.
    pub fn send_all(&mut self, id: ConnId, data: &[u8]) -> Result<(), VsockError> {
        let mut sent = 0;
        let mut chunk = MAX_PACKET;
        let mut last_progress = self.clock.now();
        while sent < data.len() {
            match self.conns.iter().find(|c| c.id == id).map(|c| c.state) {
                Some(State::Open) => {}
                Some(State::PeerClosed) => return Err(VsockError::Closed),
                _ => return Err(VsockError::Reset),
            }
            let len = chunk.min(data.len() - sent);
            match self.mgr.send(id.peer, id.port, &data[sent..sent + len]) {
                Ok(()) => {
                    sent += len;
                    // Every packet carries our fwd_cnt: the peer is up to date.
                    if let Some(c) = self.conn_mut(id) {
                        c.unadvertised = 0;
                    }
                    chunk = MAX_PACKET;
                    last_progress = self.clock.now();
                }
                Err(VirtioError::SocketDeviceError(SocketError::InsufficientBufferSpaceInPeer)) => {
                    // Smaller packets use partial credit; below 4 KiB wait
                    // for a credit update instead of trickling bytes.
                    if chunk > 4096 {
                        chunk /= 2;
                        continue;
                    }
                    if !self.poll()? {
                        if self.clock.expired(last_progress) {
                            return Err(VsockError::Timeout);
                        }
                        self.clock.idle();
                    } else {
                        chunk = MAX_PACKET;
                    }
                }
                Err(VirtioError::SocketDeviceError(SocketError::NotConnected)) => {
                    return Err(VsockError::Reset)
                }
                Err(e) => return Err(VsockError::Device(e)),
            }
        }
        Ok(())
    }

    /// Closes our side: SHUTDOWN to the peer, forget the connection.
    pub fn close(&mut self, id: ConnId) {
        if let Some(i) = self.conns.iter().position(|c| c.id == id) {
            let c = self.conns.swap_remove(i);
            let _ = match c.state {
                State::Open => self.mgr.shutdown(id.peer, id.port),
                _ => self.mgr.force_close(id.peer, id.port),
            };
        }
    }
}

#[cfg(test)]
mod tests;
