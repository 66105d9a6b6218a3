//! The stream transport: length-prefixed frames over many byte-stream connections (vsock in
//! the kernel, TCP/Unix sockets on the host), served by one single-threaded loop.
//!
//! `poll` visits every connection, reads what is available, decodes frames and hands each
//! to [`Server::handle`] in arrival order, with the connection as the [`Peer`]: responses
//! and notifications become frames on it, and while a tool runs its pump reads the caller's
//! connection (a `notifications/cancelled` for the running request cancels it; everything
//! else waits in the connection's backlog) and, during an exclusive call, serves the other
//! connections' light requests and accepts new connections. Exactly one request runs
//! against the model at a time.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::vec::Vec;
use serde_json::{json, Value};

use crate::connection::{Connection, ReadStatus};
use crate::frame::{encode_frame, FrameDecoder, FrameEvent};
use crate::jsonrpc::{is_cancellation_of, RpcError};
use crate::logging::LogLevel;
use crate::peer::{ConnectionClosed, MessageKind, Pump, RunningCall, Sink};
use crate::server::{log_notification, Server};
use crate::session::Session;

/// Identifies a connection inside a [`ServerLoop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Bytes read from one connection per `poll` at most (fairness between connections).
const READ_BUDGET: usize = 256 * 1024;
/// Bytes read from the caller's connection per cancellation check at most, so a flooding
/// client cannot stall its own tool.
const POLL_BUDGET: usize = 64 * 1024;
/// Bytes read from each other connection per service round while an exclusive tool runs.
const SERVICE_BUDGET: usize = 16 * 1024;
/// Size of one `try_read`.
const READ_CHUNK: usize = 4096;

/// The transport state of one connection: its frame decoder and what was read but not
/// served yet.
#[derive(Debug)]
struct Stream {
    decoder: FrameDecoder,
    /// Frames that arrived while a tool was running, in arrival order.
    backlog: VecDeque<FrameEvent>,
    /// The peer will send no more bytes (we may still write).
    read_closed: bool,
    /// A frame cut short by the end of the stream has been reported.
    eof_handled: bool,
    /// Writing failed: the connection is dead.
    write_closed: bool,
}

impl Stream {
    fn new(max_frame: usize) -> Self {
        Stream {
            decoder: FrameDecoder::new(max_frame),
            backlog: VecDeque::new(),
            read_closed: false,
            eof_handled: false,
            write_closed: false,
        }
    }

    /// One `try_read` from `conn`, at most `max` bytes, decoded: complete frames are
    /// appended to `events`. Returns the bytes read, or None when nothing happened (no data;
    /// the end of the stream counts as something). The one place bytes become frames.
    fn read_once(
        &mut self,
        conn: &mut impl Connection,
        max: usize,
        events: &mut Vec<FrameEvent>,
    ) -> Option<usize> {
        if max == 0 || self.read_closed || self.write_closed {
            return None;
        }
        let mut buf = [0u8; READ_CHUNK];
        match conn.try_read(&mut buf[..max.min(READ_CHUNK)]) {
            ReadStatus::Data(n) => {
                self.decoder.feed(&buf[..n], events);
                Some(n)
            }
            ReadStatus::WouldBlock => None,
            ReadStatus::Closed => {
                self.read_closed = true;
                Some(0)
            }
        }
    }

    /// Reads and decodes what `conn` has, up to `budget` bytes.
    fn read(&mut self, conn: &mut impl Connection, budget: usize, events: &mut Vec<FrameEvent>) {
        let mut left = budget;
        while let Some(n) = self.read_once(conn, left, events) {
            left = left.saturating_sub(n);
        }
    }

    /// Writes one message as a frame; a failed write marks the connection dead.
    fn send(&mut self, conn: &mut impl Connection, message: &[u8]) -> Result<(), ConnectionClosed> {
        if self.write_closed {
            return Err(ConnectionClosed);
        }
        conn.write_all(&encode_frame(message)).inspect_err(|_| {
            self.write_closed = true;
        })
    }

    fn is_finished(&self) -> bool {
        self.write_closed || (self.read_closed && self.backlog.is_empty())
    }

    /// Removes a queued `notifications/cancelled` for `request_id`; true if there was one.
    fn take_cancellation(&mut self, request_id: &Value) -> bool {
        let found = self.backlog.iter().position(|event| {
            matches!(event, FrameEvent::Frame(payload) if is_cancellation_of(payload, request_id))
        });
        found.map(|i| self.backlog.remove(i)).is_some()
    }
}

struct Slot<C> {
    conn: C,
    session: Session,
    stream: Stream,
}

impl<C: Connection> Slot<C> {
    fn new(conn: C, max_frame: usize) -> Self {
        Slot {
            conn,
            session: Session::new(),
            stream: Stream::new(max_frame),
        }
    }

    /// Serves one decoded frame event of this connection. `others` is serviced while an
    /// exclusive tool runs (None: this is itself a request served meanwhile).
    fn serve(
        &mut self,
        server: &mut Server,
        event: FrameEvent,
        others: Option<&mut (dyn Others + '_)>,
    ) {
        let mut peer = StreamPeer {
            conn: &mut self.conn,
            stream: &mut self.stream,
            others,
        };
        match event {
            FrameEvent::Frame(payload) => server.handle(&mut self.session, &payload, &mut peer),
            FrameEvent::Oversized { len, limit } => server.reject(
                &mut peer,
                RpcError::invalid_request(format!(
                    "frame of {len} bytes exceeds the limit of {limit} bytes"
                ))
                .with_data(json!({ "length": len, "limit": limit })),
            ),
            FrameEvent::Empty => server.reject(
                &mut peer,
                RpcError::parse("empty frame (length 0): expected a JSON-RPC message"),
            ),
        }
    }

    /// Reports a frame cut short by the end of the stream (best effort: the peer may have
    /// closed only its sending side and still read our answer).
    fn report_truncation(&mut self, server: &mut Server) {
        let Some(t) = self.stream.decoder.truncated() else {
            return;
        };
        let message = match t.expected {
            Some(n) => format!(
                "truncated frame: the stream ended after {} of {n} payload bytes",
                t.received
            ),
            None => format!(
                "truncated frame: the stream ended after {} of 4 header bytes",
                t.received
            ),
        };
        let mut peer = StreamPeer {
            conn: &mut self.conn,
            stream: &mut self.stream,
            others: None,
        };
        server.reject(&mut peer, RpcError::parse(message));
    }
}

/// A connection as the [`crate::Peer`] of the request being served on it.
struct StreamPeer<'a, 'o, C> {
    conn: &'a mut C,
    stream: &'a mut Stream,
    others: Option<&'a mut (dyn Others + 'o)>,
}

impl<C: Connection> Sink for StreamPeer<'_, '_, C> {
    fn send(&mut self, _: MessageKind, message: &[u8]) -> Result<(), ConnectionClosed> {
        self.stream.send(self.conn, message)
    }
}

impl<C: Connection> Pump for StreamPeer<'_, '_, C> {
    fn pump(&mut self, server: &mut Server, call: &RunningCall<'_>) -> bool {
        if self.stream.write_closed {
            return true;
        }
        let mut cancelled = false;
        let mut events = Vec::new();
        self.stream.read(self.conn, POLL_BUDGET, &mut events);
        for event in events {
            if matches!(&event, FrameEvent::Frame(p) if is_cancellation_of(p, call.id)) {
                cancelled = true;
            } else {
                self.stream.backlog.push_back(event);
            }
        }
        if call.exclusive {
            if let Some(others) = self.others.as_mut() {
                others.service(server);
            }
        }
        cancelled || self.stream.write_closed
    }

    fn cancelled_while_queued(&mut self, request_id: &Value) -> bool {
        self.stream.take_cancellation(request_id)
    }
}

pub struct ServerLoop<C: Connection> {
    server: Server,
    slots: Vec<Slot<C>>,
    next_id: u64,
}

impl<C: Connection> ServerLoop<C> {
    pub fn new(server: Server) -> Self {
        ServerLoop {
            server,
            slots: Vec::new(),
            next_id: 0,
        }
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    pub fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }

    /// Starts serving a new connection.
    pub fn add(&mut self, conn: C) -> ConnectionId {
        let id = ConnectionId(self.next_id);
        self.next_id += 1;
        let max_frame = self.server.config().max_frame;
        self.slots.push(Slot::new(conn, max_frame));
        id
    }

    pub fn connection_count(&self) -> usize {
        self.slots.len()
    }

    /// Like [`ServerLoop::poll`], and also accepts new connections from `acceptor`, even
    /// while a long tool call runs (so that e.g. `health` can be asked meanwhile).
    pub fn poll_accepting(&mut self, acceptor: &mut dyn Acceptor<C>) -> bool {
        let mut activity = false;
        while let Some(conn) = acceptor.accept() {
            activity = true;
            self.add(conn);
        }
        activity | self.poll_inner(acceptor)
    }

    /// Serves everything currently available on every connection. Returns true when any
    /// bytes were read or frames handled (callers may idle when it returns false).
    /// Finished connections (peer closed and all its frames served, or write failed) are
    /// dropped.
    pub fn poll(&mut self) -> bool {
        self.poll_inner(&mut NoAcceptor)
    }

    fn poll_inner(&mut self, acceptor: &mut dyn Acceptor<C>) -> bool {
        let mut activity = false;
        let mut events = Vec::new();
        // Connections accepted while a tool runs; they join `slots` after this round.
        let mut newcomers: Vec<Slot<C>> = Vec::new();
        for i in 0..self.slots.len() {
            let (before, rest) = self.slots.split_at_mut(i);
            let Some((slot, after)) = rest.split_first_mut() else {
                break;
            };
            let mut others = OtherSlots {
                before,
                after,
                newcomers: &mut newcomers,
                acceptor: &mut *acceptor,
                next_id: &mut self.next_id,
            };
            let mut budget = READ_BUDGET;
            loop {
                // Frames queued earlier (including those read while a tool ran) first:
                // they arrived before anything we read next.
                while let Some(event) = slot.stream.backlog.pop_front() {
                    activity = true;
                    slot.serve(&mut self.server, event, Some(&mut others));
                }
                // One read at a time, so that what it completes is served before more is
                // taken from the connection.
                let Some(n) = slot.stream.read_once(&mut slot.conn, budget, &mut events) else {
                    break;
                };
                activity = true;
                budget = budget.saturating_sub(n);
                slot.stream.backlog.extend(events.drain(..));
            }
        }
        if !newcomers.is_empty() {
            activity = true;
            self.slots.append(&mut newcomers);
        }
        for slot in &mut self.slots {
            // The end of a stream may have been seen by a tool's cancellation pump or while
            // servicing other connections.
            if slot.stream.read_closed && !slot.stream.eof_handled {
                slot.stream.eof_handled = true;
                activity = true;
                slot.report_truncation(&mut self.server);
            }
        }
        self.slots.retain(|s| !s.stream.is_finished());
        activity
    }

    /// Sends `notifications/message` to every session whose level admits `level`.
    pub fn notify_log(&mut self, level: LogLevel, logger: &str, message: &str) {
        let note = log_notification(level, logger, message);
        for slot in &mut self.slots {
            if slot.session.admits_log(level) {
                let _ = slot.stream.send(&mut slot.conn, &note);
            }
        }
    }
}

/// Source of new connections (a host listener, the kernel's vsock listen port).
pub trait Acceptor<C> {
    /// A newly established connection, if one is waiting; never blocks.
    fn accept(&mut self) -> Option<C>;
}

/// Accepts nothing (connections are added with [`ServerLoop::add`]).
pub struct NoAcceptor;

impl<C> Acceptor<C> for NoAcceptor {
    fn accept(&mut self) -> Option<C> {
        None
    }
}

/// Connections other than the caller's, serviced while an exclusive tool runs.
trait Others {
    fn service(&mut self, server: &mut Server);
}

/// The connections around the one whose exclusive tool is running.
struct OtherSlots<'a, C> {
    before: &'a mut [Slot<C>],
    after: &'a mut [Slot<C>],
    newcomers: &'a mut Vec<Slot<C>>,
    acceptor: &'a mut dyn Acceptor<C>,
    next_id: &'a mut u64,
}

impl<C: Connection> Others for OtherSlots<'_, C> {
    /// Reads what the other connections sent and serves what does not need the running
    /// tool's exclusivity. Per connection, order is kept: once one frame has to wait, every
    /// later frame of that connection waits behind it.
    fn service(&mut self, server: &mut Server) {
        let mut events: Vec<FrameEvent> = Vec::new();
        while let Some(conn) = self.acceptor.accept() {
            *self.next_id += 1;
            let max_frame = server.config().max_frame;
            self.newcomers.push(Slot::new(conn, max_frame));
        }
        let slots = self.before.iter_mut().chain(self.after.iter_mut());
        for slot in slots.chain(self.newcomers.iter_mut()) {
            slot.stream
                .read(&mut slot.conn, SERVICE_BUDGET, &mut events);
            for event in events.drain(..) {
                let waits = matches!(&event, FrameEvent::Frame(p) if server.must_wait(p));
                if slot.stream.backlog.is_empty() && !waits {
                    slot.serve(server, event, None);
                } else {
                    slot.stream.backlog.push_back(event);
                }
            }
        }
    }
}
