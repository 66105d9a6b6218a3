//! Connection targets: the vhost-device-vsock Unix socket (+ guest port), or a plain TCP or
//! Unix socket (host test server).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Where the MCP server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// vhost-device-vsock's host-side Unix socket; we ask it for guest `port`.
    VsockUds {
        path: String,
        port: u32,
    },
    Tcp(String),
    Unix(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::VsockUds { path, port } => write!(f, "vsock {path} port {port}"),
            Target::Tcp(addr) => write!(f, "tcp {addr}"),
            Target::Unix(path) => write!(f, "unix {path}"),
        }
    }
}

/// A connected byte stream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }

    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

impl Target {
    pub fn connect(&self) -> Result<Stream, String> {
        match self {
            Target::Tcp(addr) => TcpStream::connect(addr)
                .map(|s| {
                    let _ = s.set_nodelay(true);
                    Stream::Tcp(s)
                })
                .map_err(|e| format!("cannot connect to tcp {addr}: {e}")),
            Target::Unix(path) => UnixStream::connect(path)
                .map(Stream::Unix)
                .map_err(|e| format!("cannot connect to unix socket {path}: {e}")),
            Target::VsockUds { path, port } => {
                let mut s = UnixStream::connect(path)
                    .map_err(|e| format!("cannot connect to vsock socket {path}: {e}"))?;
                vsock_handshake(&mut s, *port).map_err(|e| {
                    format!("vsock handshake with {path} for port {port} failed: {e}")
                })?;
                Ok(Stream::Unix(s))
            }
        }
    }
}

/// vhost-device-vsock (Firecracker-style hybrid vsock): send `CONNECT <port>\n`, expect
/// `OK <host port>\n`. The reply is read byte by byte so no guest data is consumed.
fn vsock_handshake(s: &mut UnixStream, port: u32) -> io::Result<()> {
    s.write_all(format!("CONNECT {port}\n").as_bytes())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 {
        match s.read(&mut byte)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before answering (is the guest listening on that port?)",
                ))
            }
            _ if byte[0] == b'\n' => break,
            _ => line.push(byte[0]),
        }
    }
    s.set_read_timeout(None)?;
    let text = String::from_utf8_lossy(&line);
    if text.starts_with("OK") {
        Ok(())
    } else {
        Err(io::Error::other(format!("unexpected answer {text:?}")))
    }
}
