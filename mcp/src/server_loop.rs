//! The transport-independent server loop: many connections, one request at a time.
//!
//! The loop is single-threaded by design (the kernel has one core serving MCP): `poll`
//! visits every connection, reads what is available, decodes frames and serves them in
//! arrival order. A tool call runs to completion inside `poll`; meanwhile only the caller's
//! connection is pumped (for `notifications/cancelled`), so exactly one request runs against
//! the model at a time and other connections wait their turn.

use alloc::vec::Vec;

use crate::connection::{Connection, ReadStatus};
use crate::frame::FrameEvent;
use crate::jsonrpc::notification_value;
use crate::log_ring::LogLevel;
use crate::server::{Others, Server, Session};
use serde_json::json;

/// Identifies a connection inside a [`ServerLoop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

struct Slot<C> {
    id: ConnectionId,
    conn: C,
    session: Session,
}

/// Bytes read from one connection per `poll` at most (fairness between connections).
const READ_BUDGET: usize = 256 * 1024;

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
        let session = self.server.new_session();
        self.slots.push(Slot { id, conn, session });
        id
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

    pub fn connection_count(&self) -> usize {
        self.slots.len()
    }

    pub fn connection_mut(&mut self, id: ConnectionId) -> Option<&mut C> {
        self.slots
            .iter_mut()
            .find(|s| s.id == id)
            .map(|s| &mut s.conn)
    }

    /// Stops serving a connection and hands it back.
    pub fn remove(&mut self, id: ConnectionId) -> Option<C> {
        let pos = self.slots.iter().position(|s| s.id == id)?;
        Some(self.slots.remove(pos).conn)
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
        let mut buf = [0u8; 4096];
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
                while let Some(event) = slot.session.backlog.pop_front() {
                    activity = true;
                    self.server.handle_event_with(
                        &mut slot.session,
                        event,
                        &mut slot.conn,
                        &mut others,
                    );
                }
                if budget == 0 || slot.session.read_closed || slot.session.write_closed {
                    break;
                }
                match slot.conn.try_read(&mut buf) {
                    ReadStatus::Data(n) => {
                        activity = true;
                        budget = budget.saturating_sub(n);
                        slot.session.decoder.feed(&buf[..n], &mut events);
                        slot.session.backlog.extend(events.drain(..));
                    }
                    ReadStatus::WouldBlock => break,
                    ReadStatus::Closed => {
                        activity = true;
                        slot.session.read_closed = true;
                    }
                }
            }
        }
        if !newcomers.is_empty() {
            activity = true;
            self.slots.append(&mut newcomers);
        }
        for slot in &mut self.slots {
            // The end of a stream may have been seen by a tool's cancellation pump or while
            // servicing other connections.
            if slot.session.read_closed && !slot.session.eof_handled {
                slot.session.eof_handled = true;
                activity = true;
                self.server
                    .handle_truncated(&mut slot.session, &mut slot.conn);
            }
        }
        self.slots.retain(|s| !s.session.is_finished());
        activity
    }

    /// Sends `notifications/message` to every legacy session whose level admits `level`.
    pub fn notify_log(&mut self, level: LogLevel, logger: &str, message: &str) {
        let note = notification_value(
            "notifications/message",
            json!({ "level": level.as_str(), "logger": logger, "data": message }),
        );
        for slot in &mut self.slots {
            if slot.session.admits_log(level) {
                slot.session.send(&mut slot.conn, &note);
            }
        }
    }
}

/// Bytes read from one other connection per service round while a tool runs.
const SERVICE_BUDGET: usize = 16 * 1024;

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
        let mut buf = [0u8; 2048];
        let mut events: Vec<FrameEvent> = Vec::new();
        while let Some(conn) = self.acceptor.accept() {
            let id = ConnectionId(*self.next_id);
            *self.next_id += 1;
            let session = server.new_session();
            self.newcomers.push(Slot { id, conn, session });
        }
        let slots = self.before.iter_mut().chain(self.after.iter_mut());
        for slot in slots.chain(self.newcomers.iter_mut()) {
            let mut budget = SERVICE_BUDGET;
            while budget > 0 && !slot.session.read_closed && !slot.session.write_closed {
                match slot.conn.try_read(&mut buf) {
                    ReadStatus::Data(n) => {
                        budget = budget.saturating_sub(n);
                        slot.session.decoder.feed(&buf[..n], &mut events);
                    }
                    ReadStatus::WouldBlock => break,
                    ReadStatus::Closed => slot.session.read_closed = true,
                }
            }
            for event in events.drain(..) {
                if slot.session.backlog.is_empty() && !server.must_wait(&event) {
                    server.handle_event(&mut slot.session, event, &mut slot.conn);
                } else {
                    slot.session.backlog.push_back(event);
                }
            }
        }
    }
}
