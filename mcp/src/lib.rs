//! MCP protocol core: framing, JSON-RPC 2.0, lifecycles, schema validation and the tool
//! registry (no_std + alloc). The application's tools (names, schemas, implementations)
//! live with the application (`kernel/service`).
//!
//! The same code runs in the kernel (over virtio-vsock) and in the host test server
//! (`mcp-cli serve`, over TCP/Unix sockets). Layering, bottom up:
//!
//! - [`frame`]: u32 big-endian length prefix + UTF-8 JSON payload, incremental decoder.
//! - [`jsonrpc`]: JSON-RPC 2.0 message classification, error codes and response encoding.
//! - [`version`]: the MCP protocol revisions we speak and what each one allows.
//! - [`schema`]: a JSON Schema subset validator for tool arguments and outputs.
//! - [`logging`]: the MCP log levels.
//! - [`tools`]: the [`Tool`] trait, the [`ToolRegistry`] and the per-call [`CallContext`].
//! - [`session`]: what one client negotiated ([`Session`]), independent of any transport.
//! - [`peer`]: the seam to a transport: a [`Sink`] for replies and notifications, a [`Pump`]
//!   run between a tool's steps (cancellation, other clients).
//! - [`server`]: the protocol engine; [`Server::handle`] serves one incoming message
//!   (lifecycle methods in `lifecycle`, `tools/call` in `call`).
//! - [`connection`] and [`server_loop`]: the stream transport, one loop over many byte
//!   streams carrying frames; an HTTP transport would sit beside it on the same core.
#![no_std]

extern crate alloc;

mod call;
pub mod connection;
pub mod frame;
pub mod jsonrpc;
mod lifecycle;
pub mod logging;
pub mod peer;
pub mod schema;
pub mod server;
pub mod server_loop;
pub mod session;
pub mod tools;
pub mod version;

pub use connection::{Connection, MemoryConnection, ReadStatus};
pub use frame::{encode_frame, FrameDecoder, FrameEvent, DEFAULT_MAX_FRAME};
pub use logging::LogLevel;
pub use peer::{ConnectionClosed, MessageKind, Peer, Pump, Recorder, RunningCall, Sink};
pub use server::{Server, ServerConfig, ServerStats};
pub use server_loop::{Acceptor, ConnectionId, NoAcceptor, ServerLoop};
pub use session::Session;
pub use tools::{CallContext, Tool, ToolDef, ToolError, ToolOutput, ToolRegistry};
pub use version::ProtocolVersion;

pub use serde_json;
