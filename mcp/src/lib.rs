//! MCP server core: framing, JSON-RPC 2.0, lifecycle, tool registry (no_std + alloc).
//!
//! The same code runs in the kernel (over virtio-vsock) and in the host test server
//! (`mcp-cli serve`, over TCP/Unix sockets). Layering, bottom up:
//!
//! - [`frame`]: u32 big-endian length prefix + UTF-8 JSON payload, incremental decoder.
//! - [`jsonrpc`]: JSON-RPC 2.0 message classification, error codes and response encoding.
//! - [`version`]: the MCP protocol revisions we speak and what each one allows.
//! - [`schema`]: a JSON Schema subset validator for tool arguments and outputs.
//! - [`tools`]: the [`Tool`] trait, the [`ToolRegistry`] and the per-call [`CallContext`].
//! - [`catalog`]: the JSON Schemas of the kernel's tools (infer, health, ...), shared by the
//!   kernel and the host test server.
//! - [`server`]: the protocol state machine (lifecycle, dispatch) for one message at a time.
//! - [`connection`] and [`server_loop`]: the transport-independent loop over many byte streams.
//! - [`log_ring`]: the log ring buffer behind the `logs` tool.
#![no_std]

extern crate alloc;

pub mod catalog;
pub mod connection;
pub mod frame;
pub mod jsonrpc;
pub mod log_ring;
pub mod schema;
pub mod server;
pub mod server_loop;
pub mod tools;
pub mod version;

pub use connection::{Connection, ConnectionClosed, MemoryConnection, ReadStatus};
pub use frame::{encode_frame, FrameDecoder, FrameEvent, DEFAULT_MAX_FRAME};
pub use log_ring::{LogLevel, LogLine, LogRing};
pub use server::{Server, ServerConfig, ServerStats, Session};
pub use server_loop::{Acceptor, ConnectionId, NoAcceptor, ServerLoop};
pub use tools::{CallContext, Tool, ToolDef, ToolError, ToolOutput, ToolRegistry};
pub use version::ProtocolVersion;

pub use serde_json;
