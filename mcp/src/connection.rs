//! The byte-stream abstraction the stream transport ([`crate::ServerLoop`]) runs on.
//!
//! Reads never block: the loop polls every connection, and while a tool runs its progress
//! callback polls the caller's connection for a `notifications/cancelled`. Writes may block
//! until the bytes are accepted (the kernel's vsock driver waits for credit; host sockets
//! wait for buffer space). A kernel vsock stream and a host TCP/Unix socket both fit.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

pub use crate::peer::ConnectionClosed;

/// Result of a non-blocking read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// `n > 0` bytes were written to the start of the buffer.
    Data(usize),
    /// Nothing available right now.
    WouldBlock,
    /// The peer closed its sending side (or the connection failed); no more data will come.
    Closed,
}

/// A bidirectional byte stream.
pub trait Connection {
    /// Reads whatever is available without waiting.
    fn try_read(&mut self, buf: &mut [u8]) -> ReadStatus;
    /// Writes all of `data` (may wait for the transport to accept it).
    fn write_all(&mut self, data: &[u8]) -> Result<(), ConnectionClosed>;
}

impl<C: Connection + ?Sized> Connection for &mut C {
    fn try_read(&mut self, buf: &mut [u8]) -> ReadStatus {
        (**self).try_read(buf)
    }
    fn write_all(&mut self, data: &[u8]) -> Result<(), ConnectionClosed> {
        (**self).write_all(data)
    }
}

/// A connection the caller keeps a handle to while a [`crate::ServerLoop`] owns it (tests
/// push input and read output through their clone).
impl<C: Connection> Connection for Rc<RefCell<C>> {
    fn try_read(&mut self, buf: &mut [u8]) -> ReadStatus {
        self.borrow_mut().try_read(buf)
    }
    fn write_all(&mut self, data: &[u8]) -> Result<(), ConnectionClosed> {
        self.borrow_mut().write_all(data)
    }
}

/// An in-memory connection: tests (and the kernel's self-test) push client bytes in and
/// read the server's bytes out. Incoming data is delivered in chunks as pushed, so tests
/// control the chunking the server sees.
#[derive(Debug, Default)]
pub struct MemoryConnection {
    incoming: VecDeque<Vec<u8>>,
    /// Everything the server wrote.
    pub outgoing: Vec<u8>,
    /// When set, reads report `Closed` once `incoming` is drained.
    pub peer_closed: bool,
    /// When set, writes fail.
    pub write_closed: bool,
}

impl MemoryConnection {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues bytes from the client; one push is delivered by at most one read.
    pub fn push(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.incoming.push_back(bytes.to_vec());
        }
    }

    pub fn pending_input(&self) -> usize {
        self.incoming.iter().map(Vec::len).sum()
    }
}

impl Connection for MemoryConnection {
    fn try_read(&mut self, buf: &mut [u8]) -> ReadStatus {
        let Some(front) = self.incoming.front_mut() else {
            return if self.peer_closed {
                ReadStatus::Closed
            } else {
                ReadStatus::WouldBlock
            };
        };
        let n = front.len().min(buf.len());
        buf[..n].copy_from_slice(&front[..n]);
        front.drain(..n);
        if front.is_empty() {
            self.incoming.pop_front();
        }
        ReadStatus::Data(n)
    }

    fn write_all(&mut self, data: &[u8]) -> Result<(), ConnectionClosed> {
        if self.write_closed {
            return Err(ConnectionClosed);
        }
        self.outgoing.extend_from_slice(data);
        Ok(())
    }
}
