//! The HTTP/1.1 server: [`crate::http::RequestReader`] on every connection of the
//! [`NetStack`]'s pool, and the writes back.
//!
//! One request per connection is handed out at a time: a connection yields its next
//! request only after the response to the previous one is finished (HTTP/1.1 answers in
//! order anyway), and while it waits nothing more is read from it, so TCP's window pushes
//! back on a client that pipelines. Framing errors and timeouts are answered here (status,
//! `Connection: close`, a one-line text body) and close the connection; everything else
//! goes to the caller, who answers with [`HttpServer::respond`] or a chunked stream
//! ([`HttpServer::start_stream`], [`HttpServer::send_chunk`], [`HttpServer::end_stream`]).
//!
//! Writes wait (polling the card) while the connection's send buffer is full, and give up
//! after `Clock::write_timeout_ns` without progress: a client that stops reading loses its
//! own connection and holds nobody else up for longer than that.

use alloc::vec::Vec;

use smoltcp::socket::tcp;

use crate::http::{self, Event, Limits, Request, RequestReader};
use crate::stack::{NetStack, Nic};

/// Time source and idle hook for the waits in writes.
#[derive(Clone, Copy)]
pub struct Clock {
    pub now_ns: fn() -> u64,
    /// Called between polls while a write waits (the kernel sleeps a little).
    pub idle: fn(),
    /// A write that makes no progress for this long fails and aborts the connection.
    pub write_timeout_ns: u64,
}

/// One TCP connection: the pool slot and which connection on it (slots are reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnRef {
    pub slot: u16,
    pub generation: u32,
}

/// The connection is gone (closed, reset, or a write timed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

#[derive(Debug)]
struct Slot {
    generation: u32,
    /// Some while a connection is open on the slot.
    reader: Option<RequestReader>,
    /// A request was handed out and its response is not finished.
    busy: bool,
}

/// Bytes read from one connection per poll (fairness).
const READ_CHUNK: usize = 4096;

pub struct HttpServer<N: Nic> {
    nic: N,
    stack: NetStack,
    slots: Vec<Slot>,
    limits: Limits,
    clock: Clock,
}

impl<N: Nic> HttpServer<N> {
    pub fn new(nic: N, stack: NetStack, limits: Limits, clock: Clock) -> Self {
        let slots = (0..stack.pool_size())
            .map(|_| Slot {
                generation: 0,
                reader: None,
                busy: false,
            })
            .collect();
        HttpServer {
            nic,
            stack,
            slots,
            limits,
            clock,
        }
    }

    pub fn stack(&self) -> &NetStack {
        &self.stack
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn now_ns(&self) -> u64 {
        (self.clock.now_ns)()
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.slots.iter().filter(|s| s.reader.is_some()).count()
    }

    /// Moves packets only (no request parsing): what a waiting write does.
    pub fn poll_network(&mut self) -> bool {
        let now = self.now_ns();
        self.stack.poll(&mut self.nic, now)
    }

    /// Polls the network, reads every connection and returns the requests that are
    /// complete (at most one per connection). Framing errors and timeouts are answered
    /// here. The flag says whether anything happened.
    pub fn poll(&mut self) -> (bool, Vec<(ConnRef, Request)>) {
        let now = self.now_ns();
        let mut activity = self.stack.poll(&mut self.nic, now);
        let mut out = Vec::new();
        let mut buf = [0u8; READ_CHUNK];
        for i in 0..self.slots.len() {
            activity |= self.poll_slot(i, now, &mut buf, &mut out);
        }
        (activity, out)
    }

    fn poll_slot(
        &mut self,
        i: usize,
        now: u64,
        buf: &mut [u8],
        out: &mut Vec<(ConnRef, Request)>,
    ) -> bool {
        let limits = self.limits;
        let socket = self.stack.socket(i);
        let slot = &mut self.slots[i];
        let open = !matches!(
            socket.state(),
            tcp::State::Listen | tcp::State::Closed | tcp::State::SynReceived
        );
        match (&slot.reader, open) {
            (None, true) => {
                slot.generation = slot.generation.wrapping_add(1);
                slot.reader = Some(RequestReader::new(limits, now));
                slot.busy = false;
            }
            (Some(_), false) => {
                slot.reader = None;
                slot.busy = false;
                return true;
            }
            (None, false) => return false,
            (Some(_), true) => {}
        }
        if slot.busy {
            return false;
        }
        let Some(reader) = slot.reader.as_mut() else {
            return false;
        };
        let mut activity = false;
        if reader.wants_input() && socket.can_recv() {
            if let Ok(n) = socket.recv_slice(buf) {
                if n > 0 {
                    reader.push(&buf[..n], now);
                    activity = true;
                }
            }
        }
        let conn = ConnRef {
            slot: i as u16,
            generation: slot.generation,
        };
        match reader.next_event(now) {
            None => {
                // The peer finished sending: once nothing is in progress, we are done too.
                if !socket.may_recv() && !reader.in_request() && socket.recv_queue() == 0 {
                    socket.close();
                }
            }
            Some(Event::Request(r)) => {
                slot.busy = true;
                out.push((conn, r));
                activity = true;
            }
            Some(Event::Continue) => {
                let _ = socket.send_slice(http::CONTINUE);
                activity = true;
            }
            Some(Event::Error(e)) => {
                log::info!("http: connection {}: {e}", conn.slot);
                let body = alloc::format!("{e}\n");
                let response = http::response(
                    e.status(),
                    &[("Content-Type", "text/plain; charset=utf-8")],
                    body.as_bytes(),
                    false,
                );
                // Best effort: a client that sent garbage may not read it.
                let _ = socket.send_slice(&response);
                socket.close();
                activity = true;
            }
            Some(Event::IdleTimeout) => {
                socket.close();
                activity = true;
            }
        }
        activity
    }

    /// Whether `conn` is still the open connection on its slot.
    pub fn is_open(&mut self, conn: ConnRef) -> bool {
        let Some(slot) = self.slots.get(conn.slot as usize) else {
            return false;
        };
        slot.generation == conn.generation
            && slot.reader.is_some()
            && self.stack.socket(conn.slot as usize).may_send()
    }

    /// Writes all of `data`, waiting while the send buffer is full.
    pub fn write_all(&mut self, conn: ConnRef, data: &[u8]) -> Result<(), Gone> {
        let mut rest = data;
        let mut last_progress = self.now_ns();
        while !rest.is_empty() {
            if !self.is_open(conn) {
                return Err(Gone);
            }
            let n = self
                .stack
                .socket(conn.slot as usize)
                .send_slice(rest)
                .map_err(|_| Gone)?;
            rest = &rest[n..];
            if rest.is_empty() {
                break;
            }
            // Progress is bytes taken, not packets seen: ACKs of a zero window do not count.
            self.poll_network();
            let now = self.now_ns();
            if n > 0 {
                last_progress = now;
            } else if now.saturating_sub(last_progress) > self.clock.write_timeout_ns {
                log::info!("http: connection {}: client stopped reading", conn.slot);
                self.stack.socket(conn.slot as usize).abort();
                return Err(Gone);
            } else {
                (self.clock.idle)();
            }
        }
        // What was queued goes out at the next poll of the interface: the serve loop polls
        // again right after work, and a running tool's next step pumps the network. (Polling
        // here too doubled the per-token cost of a streamed infer.)
        Ok(())
    }

    /// Sends a complete response and finishes the exchange; `keep_alive = false` closes
    /// the connection after it.
    pub fn respond(
        &mut self,
        conn: ConnRef,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        keep_alive: bool,
    ) -> Result<(), Gone> {
        let bytes = http::response(status, headers, body, keep_alive);
        let r = self.write_all(conn, &bytes);
        self.finish(conn, keep_alive && r.is_ok());
        r
    }

    /// Starts a chunked response (e.g. an SSE stream).
    pub fn start_stream(
        &mut self,
        conn: ConnRef,
        status: u16,
        headers: &[(&str, &str)],
        keep_alive: bool,
    ) -> Result<(), Gone> {
        self.write_all(conn, &http::chunked_head(status, headers, keep_alive))
    }

    pub fn send_chunk(&mut self, conn: ConnRef, data: &[u8]) -> Result<(), Gone> {
        self.write_all(conn, &http::chunk(data))
    }

    /// Ends a chunked response and finishes the exchange.
    pub fn end_stream(&mut self, conn: ConnRef, keep_alive: bool) -> Result<(), Gone> {
        let r = self.write_all(conn, http::LAST_CHUNK);
        self.finish(conn, keep_alive && r.is_ok());
        r
    }

    /// The response to `conn`'s request is complete: read its next request, or close.
    pub fn finish(&mut self, conn: ConnRef, keep_alive: bool) {
        let now = self.now_ns();
        let Some(slot) = self.slots.get_mut(conn.slot as usize) else {
            return;
        };
        if slot.generation != conn.generation {
            return;
        }
        slot.busy = false;
        if let Some(r) = slot.reader.as_mut() {
            r.touch(now);
        }
        if !keep_alive {
            self.stack.socket(conn.slot as usize).close();
        }
    }

    /// Closes a connection at once (RST), e.g. when its session was deleted.
    pub fn abort(&mut self, conn: ConnRef) {
        if self.is_open(conn) {
            self.stack.socket(conn.slot as usize).abort();
        }
    }
}

#[cfg(test)]
mod tests;
