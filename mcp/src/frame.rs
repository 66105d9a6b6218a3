//! Framing: every message is a u32 big-endian payload length followed by that many bytes of
//! UTF-8 JSON. The decoder is incremental: bytes may arrive in any chunking (one byte at a
//! time, several frames in one read, a header split across reads).
//!
//! Error handling is part of the wire contract:
//! - a length above the configured maximum is reported as [`FrameEvent::Oversized`] as soon
//!   as the header is complete; the body is then skipped without buffering it, so the
//!   connection survives and the next frame decodes normally;
//! - a zero length is reported as [`FrameEvent::Empty`] (an error, never a wait for data);
//! - a stream that ends inside a frame is reported by [`FrameDecoder::truncated`].

use alloc::vec::Vec;

/// Frames whose payload is larger than this are refused (1 MiB).
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Length of the frame header in bytes.
pub const HEADER_LEN: usize = 4;

/// One decoded unit of the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEvent {
    /// A complete payload.
    Frame(Vec<u8>),
    /// A header announced `len` bytes, more than the limit; the body is being skipped.
    Oversized { len: u32, limit: usize },
    /// A header announced a zero-length payload.
    Empty,
}

/// How a stream ended in the middle of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    /// Bytes the header announced (None when the header itself was cut).
    pub expected: Option<u32>,
    /// Bytes of the header or payload that did arrive.
    pub received: usize,
}

#[derive(Debug)]
enum State {
    Header {
        bytes: [u8; HEADER_LEN],
        have: usize,
    },
    Body {
        len: usize,
        buf: Vec<u8>,
    },
    Skip {
        len: u32,
        remaining: usize,
    },
}

/// Incremental frame decoder.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame: usize,
    state: State,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder {
            max_frame,
            state: State::Header {
                bytes: [0; HEADER_LEN],
                have: 0,
            },
        }
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Consumes all of `data`, pushing every completed event to `events`.
    pub fn feed(&mut self, mut data: &[u8], events: &mut Vec<FrameEvent>) {
        while !data.is_empty() {
            match &mut self.state {
                State::Header { bytes, have } => {
                    let take = (HEADER_LEN - *have).min(data.len());
                    bytes[*have..*have + take].copy_from_slice(&data[..take]);
                    *have += take;
                    data = &data[take..];
                    if *have == HEADER_LEN {
                        let len = u32::from_be_bytes(*bytes);
                        self.start_body(len, events);
                    }
                }
                State::Body { len, buf } => {
                    let take = (*len - buf.len()).min(data.len());
                    buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if buf.len() == *len {
                        let payload = core::mem::take(buf);
                        events.push(FrameEvent::Frame(payload));
                        self.reset();
                    }
                }
                State::Skip { remaining, .. } => {
                    let take = (*remaining).min(data.len());
                    *remaining -= take;
                    data = &data[take..];
                    if *remaining == 0 {
                        self.reset();
                    }
                }
            }
        }
    }

    /// True when the decoder holds part of a frame (header or body).
    pub fn is_mid_frame(&self) -> bool {
        match &self.state {
            State::Header { have, .. } => *have > 0,
            State::Body { .. } | State::Skip { .. } => true,
        }
    }

    /// Call when the stream has ended: reports a frame that was cut short.
    pub fn truncated(&self) -> Option<Truncated> {
        match &self.state {
            State::Header { have, .. } if *have > 0 => Some(Truncated {
                expected: None,
                received: *have,
            }),
            State::Header { .. } => None,
            State::Body { len, buf } => Some(Truncated {
                expected: Some(*len as u32),
                received: buf.len(),
            }),
            State::Skip { len, remaining } => Some(Truncated {
                expected: Some(*len),
                received: *len as usize - *remaining,
            }),
        }
    }

    fn start_body(&mut self, len: u32, events: &mut Vec<FrameEvent>) {
        if len == 0 {
            events.push(FrameEvent::Empty);
            self.reset();
        } else if len as usize > self.max_frame {
            events.push(FrameEvent::Oversized {
                len,
                limit: self.max_frame,
            });
            self.state = State::Skip {
                len,
                remaining: len as usize,
            };
        } else {
            // The length is bounded by max_frame, so reserving it up front is safe.
            self.state = State::Body {
                len: len as usize,
                buf: Vec::with_capacity(len as usize),
            };
        }
    }

    fn reset(&mut self) {
        self.state = State::Header {
            bytes: [0; HEADER_LEN],
            have: 0,
        };
    }
}

/// Why [`read_frame`] returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrameError<E> {
    /// The header announced more than the limit; the payload was not read.
    TooLarge { len: u32, limit: usize },
    /// The byte source failed (or ended).
    Source(E),
}

/// Payload bytes [`read_frame`] asks its source for at a time.
const READ_STEP: usize = 64 * 1024;

/// Reads one frame from a blocking byte source, for clients and tests (servers decode
/// incrementally with [`FrameDecoder`]). `read_exact` fills the buffer it is given or fails.
/// The payload buffer grows with the bytes that arrive, one step ahead at most.
pub fn read_frame<E>(
    max_frame: usize,
    mut read_exact: impl FnMut(&mut [u8]) -> Result<(), E>,
) -> Result<Vec<u8>, ReadFrameError<E>> {
    let mut header = [0u8; HEADER_LEN];
    read_exact(&mut header).map_err(ReadFrameError::Source)?;
    let len = u32::from_be_bytes(header);
    if len as usize > max_frame {
        return Err(ReadFrameError::TooLarge {
            len,
            limit: max_frame,
        });
    }
    let len = len as usize;
    let mut payload = Vec::new();
    while payload.len() < len {
        let start = payload.len();
        payload.resize(start + (len - start).min(READ_STEP), 0);
        read_exact(&mut payload[start..]).map_err(ReadFrameError::Source)?;
    }
    Ok(payload)
}

/// Prefixes `payload` with its u32 big-endian length.
///
/// Payloads longer than `u32::MAX` cannot be framed; callers enforce the (much smaller)
/// frame limit before this point, so the length is saturated rather than checked here.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn decode_all(dec: &mut FrameDecoder, data: &[u8], chunk: usize) -> Vec<FrameEvent> {
        let mut events = Vec::new();
        for piece in data.chunks(chunk.max(1)) {
            dec.feed(piece, &mut events);
        }
        events
    }

    #[test]
    fn frames_decode_in_any_chunking() {
        let mut stream = encode_frame(b"{\"a\":1}");
        stream.extend(encode_frame(b"[]"));
        stream.extend(encode_frame(b"\"x\""));
        for chunk in 1..=stream.len() {
            let mut dec = FrameDecoder::default();
            let events = decode_all(&mut dec, &stream, chunk);
            assert_eq!(
                events,
                vec![
                    FrameEvent::Frame(b"{\"a\":1}".to_vec()),
                    FrameEvent::Frame(b"[]".to_vec()),
                    FrameEvent::Frame(b"\"x\"".to_vec()),
                ],
                "chunk size {chunk}"
            );
            assert!(!dec.is_mid_frame());
            assert_eq!(dec.truncated(), None);
        }
    }

    #[test]
    fn oversized_frame_is_skipped_and_stream_survives() {
        let mut dec = FrameDecoder::new(8);
        let mut stream = encode_frame(b"0123456789abcdef"); // 16 > 8
        stream.extend(encode_frame(b"ok"));
        for chunk in [1, 3, 7, 100] {
            let events = decode_all(&mut dec, &stream, chunk);
            assert_eq!(
                events,
                vec![
                    FrameEvent::Oversized { len: 16, limit: 8 },
                    FrameEvent::Frame(b"ok".to_vec()),
                ]
            );
        }
    }

    #[test]
    fn frame_exactly_at_limit_is_accepted() {
        let mut dec = FrameDecoder::new(4);
        let events = decode_all(&mut dec, &encode_frame(b"abcd"), 2);
        assert_eq!(events, vec![FrameEvent::Frame(b"abcd".to_vec())]);
    }

    #[test]
    fn huge_announced_length_does_not_allocate() {
        let mut dec = FrameDecoder::default();
        let mut events = Vec::new();
        dec.feed(&u32::MAX.to_be_bytes(), &mut events);
        assert_eq!(
            events,
            vec![FrameEvent::Oversized {
                len: u32::MAX,
                limit: DEFAULT_MAX_FRAME
            }]
        );
        assert_eq!(
            dec.truncated(),
            Some(Truncated {
                expected: Some(u32::MAX),
                received: 0
            })
        );
    }

    #[test]
    fn zero_length_frame_is_an_event_not_a_wait() {
        let mut dec = FrameDecoder::default();
        let mut stream = vec![0, 0, 0, 0];
        stream.extend(encode_frame(b"1"));
        let events = decode_all(&mut dec, &stream, 1);
        assert_eq!(
            events,
            vec![FrameEvent::Empty, FrameEvent::Frame(b"1".to_vec())]
        );
    }

    #[test]
    fn blocking_reads_take_whole_frames_and_refuse_large_ones() {
        let mut stream = encode_frame(&vec![7u8; 200_000]);
        stream.extend(encode_frame(b""));
        stream.extend(encode_frame(b"0123456789"));
        let mut at = 0;
        let mut reads = Vec::new();
        let mut source = |buf: &mut [u8]| -> Result<(), &'static str> {
            let end = at + buf.len();
            if end > stream.len() {
                return Err("end of stream");
            }
            buf.copy_from_slice(&stream[at..end]);
            reads.push(buf.len());
            at = end;
            Ok(())
        };
        assert_eq!(read_frame(1 << 20, &mut source), Ok(vec![7u8; 200_000]));
        assert_eq!(read_frame(1 << 20, &mut source), Ok(vec![]));
        assert_eq!(
            read_frame(9, &mut source),
            Err(ReadFrameError::TooLarge { len: 10, limit: 9 })
        );
        // The refused payload was not read.
        assert_eq!(at, stream.len() - 10);
        // The 200 000-byte payload came in steps of at most 64 KiB.
        assert_eq!(reads[..5], [4, 65536, 65536, 65536, 3392]);
        let gone = |_: &mut [u8]| Err::<(), _>("end of stream");
        assert_eq!(
            read_frame(1 << 20, gone),
            Err(ReadFrameError::Source("end of stream"))
        );
    }

    #[test]
    fn truncation_is_reported() {
        let mut dec = FrameDecoder::default();
        let mut events = Vec::new();
        dec.feed(&[0, 0], &mut events);
        assert_eq!(
            dec.truncated(),
            Some(Truncated {
                expected: None,
                received: 2
            })
        );
        dec.feed(&[0, 10, b'{'], &mut events);
        assert!(events.is_empty());
        assert_eq!(
            dec.truncated(),
            Some(Truncated {
                expected: Some(10),
                received: 1
            })
        );
    }
}
