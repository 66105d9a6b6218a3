//! The seam between the protocol core and a transport.
//!
//! [`Server::handle`](crate::Server::handle) serves one incoming message for one
//! [`Session`](crate::Session) and talks back through a [`Peer`]: the transport's side of
//! the request being handled. A peer is two small traits:
//!
//! - [`Sink`]: where the request's response and the notifications sent while it runs go
//!   (a length-prefixed frame on a stream; a JSON body or SSE events of an HTTP response);
//! - [`Pump`]: what the transport does between a running tool's steps: read what its
//!   clients sent meanwhile, report whether this request was cancelled, and (during an
//!   exclusive call) serve other clients' requests that do not need the model.
//!
//! Nothing here knows about bytes streams, connections or sockets: the stream transport
//! ([`crate::ServerLoop`]) is one user, an HTTP transport (sessions named by a header, one
//! POST per message) is another.

use alloc::vec::Vec;
use serde_json::Value;

use crate::server::Server;

/// What an outgoing message is. A stream transport writes both alike; HTTP answers a POST
/// with the response and may stream notifications before it as server-sent events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// The response to the message being handled (for a batch: the array of responses).
    Response,
    /// A notification sent while the request runs (progress, log messages).
    Notification,
}

/// The client is gone: nothing more can be delivered to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionClosed;

/// Where the messages of the request being handled go.
pub trait Sink {
    /// Delivers one serialised JSON-RPC message (compact JSON, no newline). An error means the
    /// client is gone; a running tool is then cancelled.
    fn send(&mut self, kind: MessageKind, message: &[u8]) -> Result<(), ConnectionClosed>;
}

/// The request whose tool is running.
#[derive(Debug, Clone, Copy)]
pub struct RunningCall<'a> {
    /// Its JSON-RPC id (what a `notifications/cancelled` names as `requestId`).
    pub id: &'a Value,
    /// The tool uses the model (see [`crate::Tool::exclusive`]): other clients wait for it,
    /// except for what [`Server::must_wait`] lets through.
    pub exclusive: bool,
}

/// What the transport does while one of its requests runs a tool.
pub trait Pump {
    /// Called between the tool's steps (each progress report and cancellation check); must
    /// not block. Reads what the client sent meanwhile and returns true when `call` is
    /// cancelled: a `notifications/cancelled` naming `call.id` arrived, or the client is
    /// gone. Everything else the client sent is kept and served after the call, in order.
    ///
    /// When `call.exclusive`, this is also where the transport serves its *other* clients:
    /// a message for which [`Server::must_wait`] is false may be handled at once (with
    /// `server`, on that client's own session and peer); the rest waits for the call to end.
    /// A non-exclusive call never serves others (no nesting).
    fn pump(&mut self, server: &mut Server, call: &RunningCall<'_>) -> bool;

    /// Called once before the tool starts: true when a `notifications/cancelled` for
    /// `request_id` arrived while the request waited its turn (a transport that queues
    /// messages behind a running call keeps them), so that it never starts.
    fn cancelled_while_queued(&mut self, request_id: &Value) -> bool {
        let _ = request_id;
        false
    }
}

/// The transport's side of one request: a [`Sink`] and a [`Pump`].
pub trait Peer: Sink + Pump {}

impl<T: Sink + Pump + ?Sized> Peer for T {}

/// A peer without a transport, for serving messages one at a time (tests, simple
/// embeddings): keeps everything sent, never cancels, serves nobody else.
#[derive(Debug, Default)]
pub struct Recorder {
    pub responses: Vec<Vec<u8>>,
    pub notifications: Vec<Vec<u8>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The oldest response not taken yet, parsed.
    pub fn take_response(&mut self) -> Option<Value> {
        if self.responses.is_empty() {
            return None;
        }
        serde_json::from_slice(&self.responses.remove(0)).ok()
    }

    /// Every notification not taken yet, parsed, oldest first.
    pub fn take_notifications(&mut self) -> Vec<Value> {
        core::mem::take(&mut self.notifications)
            .iter()
            .filter_map(|n| serde_json::from_slice(n).ok())
            .collect()
    }
}

impl Sink for Recorder {
    fn send(&mut self, kind: MessageKind, message: &[u8]) -> Result<(), ConnectionClosed> {
        match kind {
            MessageKind::Response => self.responses.push(message.to_vec()),
            MessageKind::Notification => self.notifications.push(message.to_vec()),
        }
        Ok(())
    }
}

impl Pump for Recorder {
    fn pump(&mut self, _: &mut Server, _: &RunningCall<'_>) -> bool {
        false
    }
}
