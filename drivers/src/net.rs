//! virtio-net: Ethernet frames in and out, polled, without waiting.
//!
//! virtio-drivers' `VirtIONetRaw` negotiates the device and drives the two queues; this
//! layer owns the buffers. virtio-drivers' higher-level `VirtIONet` blocks in `send` until
//! the device has consumed the packet (a spin with no deadline, see
//! `add_notify_wait_pop`); a TCP stack that keeps a window of segments in flight wants to
//! queue and go on, so [`NetDevice::send`] queues a frame and returns, and the buffers of
//! finished transmissions are collected on the next call. When the transmit queue is full
//! the frame is refused (`false`): the TCP stack keeps its own copy and retransmits.
//!
//! Receive buffers: all [`QUEUE_SIZE`] descriptors of the receive queue hold a buffer of
//! [`RX_BUFFER`] bytes (a full 1514-byte frame plus the 12-byte virtio-net header; no
//! mergeable buffers are negotiated). [`NetDevice::recv`] copies a frame out and gives the
//! buffer straight back to the device, so memory is fixed at initialisation: about
//! `QUEUE_SIZE * (RX_BUFFER + TX_BUFFER)`.
//!
//! Like [`crate::vsock::VsockServer`], the device re-rings both doorbells now and then
//! while idle ([`Kicker`]), so a notification virtio-drivers skipped cannot stall a queue.

use crate::virtio::{Kicker, VirtioTransport, DEVICE_ID_NET};
use alloc::vec;
use alloc::vec::Vec;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::{transport::Transport, Error as VirtioError, Hal};

/// Descriptors per queue (a power of two; QEMU offers 256).
pub const QUEUE_SIZE: usize = 64;
/// One frame and the virtio-net header; virtio-drivers requires at least 1526.
pub const RX_BUFFER: usize = 2048;
const TX_BUFFER: usize = 2048;
/// Largest frame we send or accept (1500-byte MTU + Ethernet header, no FCS).
pub const MAX_FRAME: usize = 1514;
/// While idle, ring the doorbells this often.
const KICK_INTERVAL_NS: u64 = 2_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// Not a virtio-net device.
    WrongDevice(u32),
    Device(VirtioError),
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::WrongDevice(id) => write!(f, "virtio device id {id} is not a network card"),
            Self::Device(e) => write!(f, "virtio-net device error: {e}"),
        }
    }
}

impl From<VirtioError> for NetError {
    fn from(e: VirtioError) -> Self {
        Self::Device(e)
    }
}

/// Counters for the log and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    pub received: u64,
    pub sent: u64,
    /// Frames refused because the transmit queue was full.
    pub tx_full: u64,
    /// Received frames dropped (larger than the caller's buffer, or a device error).
    pub rx_dropped: u64,
}

pub struct NetDevice<H: Hal, T: Transport> {
    raw: VirtIONetRaw<H, T, QUEUE_SIZE>,
    /// Receive buffers by descriptor token; all of them are with the device.
    rx: Vec<Option<Vec<u8>>>,
    /// Transmit buffers with the device, by token.
    tx: Vec<Option<Vec<u8>>>,
    /// Transmit buffers back from the device, for reuse.
    tx_free: Vec<Vec<u8>>,
    stats: NetStats,
    kicker: Option<(Kicker, fn() -> u64)>,
    last_kick_ns: u64,
}

impl<H: Hal, T: VirtioTransport> NetDevice<H, T> {
    /// Initialises the device and gives it every receive buffer.
    pub fn new(transport: T) -> Result<Self, NetError> {
        let id = transport.device_id();
        if id != DEVICE_ID_NET {
            return Err(NetError::WrongDevice(id));
        }
        let raw = VirtIONetRaw::<H, T, QUEUE_SIZE>::new(transport)?;
        let mut dev = NetDevice {
            raw,
            rx: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx_free: Vec::new(),
            stats: NetStats::default(),
            kicker: None,
            last_kick_ns: 0,
        };
        for _ in 0..QUEUE_SIZE {
            dev.give_rx(vec![0u8; RX_BUFFER])?;
        }
        Ok(dev)
    }
}

impl<H: Hal, T: Transport> NetDevice<H, T> {
    /// Lets the device re-notify its queues while idle (see the module docs).
    pub fn with_kicker(mut self, kicker: Kicker, now_ns: fn() -> u64) -> Self {
        self.kicker = Some((kicker, now_ns));
        self
    }

    pub fn mac(&self) -> [u8; 6] {
        self.raw.mac_address()
    }

    pub fn stats(&self) -> NetStats {
        self.stats
    }

    fn give_rx(&mut self, mut buf: Vec<u8>) -> Result<(), NetError> {
        // SAFETY: the buffer is kept in `self.rx` under its token and not touched until
        // the device returns it (`recv`), or until the queue is gone (drop order: `raw`
        // first, and its Drop unsets the queues).
        let token = unsafe { self.raw.receive_begin(&mut buf)? };
        match self.rx.get_mut(token as usize) {
            Some(slot @ None) => {
                *slot = Some(buf);
                Ok(())
            }
            _ => Err(NetError::Device(VirtioError::WrongToken)),
        }
    }

    /// Collects transmit buffers the device has finished with.
    fn reclaim_tx(&mut self) {
        while let Some(token) = self.raw.poll_transmit() {
            let Some(buf) = self.tx.get_mut(token as usize).and_then(Option::take) else {
                log::error!("virtio-net: device completed unknown transmit token {token}");
                return;
            };
            // SAFETY: the same buffer that was given to `transmit_begin` under this token.
            if let Err(e) = unsafe { self.raw.transmit_complete(token, &buf) } {
                log::error!("virtio-net: transmit completion: {e}");
            }
            self.tx_free.push(buf);
        }
    }

    fn kick_if_idle(&mut self) {
        let Some((k, now_ns)) = self.kicker else {
            return;
        };
        let now = now_ns();
        if now.saturating_sub(self.last_kick_ns) >= KICK_INTERVAL_NS {
            self.last_kick_ns = now;
            k.kick(0);
            k.kick(1);
        }
    }

    /// Copies the next received frame into `out` and returns its length. A frame that
    /// does not fit `out` (or that the device returned damaged) is dropped and counted,
    /// and the next one is looked at.
    pub fn recv(&mut self, out: &mut [u8]) -> Option<usize> {
        loop {
            let Some(token) = self.raw.poll_receive() else {
                self.kick_if_idle();
                return None;
            };
            let Some(mut buf) = self.rx.get_mut(token as usize).and_then(Option::take) else {
                log::error!("virtio-net: device returned unknown receive token {token}");
                return None;
            };
            // SAFETY: the same buffer that was given to `receive_begin` under this token.
            let result = unsafe { self.raw.receive_complete(token, &mut buf) };
            let frame = match result {
                Ok((hdr, len)) if hdr + len <= buf.len() && len <= out.len() => {
                    out[..len].copy_from_slice(&buf[hdr..hdr + len]);
                    self.stats.received += 1;
                    Some(len)
                }
                Ok(_) | Err(_) => {
                    self.stats.rx_dropped += 1;
                    None
                }
            };
            if let Err(e) = self.give_rx(buf) {
                log::error!("virtio-net: cannot requeue a receive buffer: {e}");
            }
            if frame.is_some() {
                return frame;
            }
        }
    }

    /// Whether a frame can be queued now.
    pub fn can_send(&mut self) -> bool {
        self.reclaim_tx();
        self.raw.can_send()
    }

    /// Queues one frame for transmission; false when the queue is full or the frame is
    /// larger than [`MAX_FRAME`].
    pub fn send(&mut self, frame: &[u8]) -> bool {
        if frame.len() > MAX_FRAME {
            self.stats.tx_full += 1;
            return false;
        }
        if !self.can_send() {
            self.stats.tx_full += 1;
            return false;
        }
        let mut buf = self.tx_free.pop().unwrap_or_default();
        buf.resize(TX_BUFFER, 0);
        let Ok(hdr) = self.raw.fill_buffer_header(&mut buf) else {
            return false;
        };
        buf[hdr..hdr + frame.len()].copy_from_slice(frame);
        buf.truncate(hdr + frame.len());
        // SAFETY: the buffer is kept in `self.tx` under its token until the device returns
        // it (`reclaim_tx`); its heap allocation does not move meanwhile.
        match unsafe { self.raw.transmit_begin(&buf) } {
            Ok(token) if (token as usize) < self.tx.len() && self.tx[token as usize].is_none() => {
                self.tx[token as usize] = Some(buf);
                self.stats.sent += 1;
                true
            }
            Ok(token) => {
                // Cannot happen with a consistent queue; keep the buffer alive forever
                // rather than free memory the device may still read.
                log::error!("virtio-net: transmit token {token} already in use");
                core::mem::forget(buf);
                false
            }
            Err(e) => {
                self.tx_free.push(buf);
                log::warn!("virtio-net: transmit: {e}");
                self.stats.tx_full += 1;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
