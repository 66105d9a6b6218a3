//! MCP server core: framing, JSON-RPC 2.0, lifecycle, tool registry (no_std + alloc).
#![no_std]
