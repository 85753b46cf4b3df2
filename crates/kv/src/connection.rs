//! A client connection: reads requests from a buffer filled from the
//! socket (every complete request at once, which is what makes pipelining
//! cheap) and writes replies.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::frame::{locate_request, FrameError, Limits, Located};

/// Why a connection ends.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The client sent something that is not a valid request; the text
    /// says what.
    #[error("Protocol error: {0}")]
    Protocol(String),
    /// The client was silent too long, or too slow sending a request.
    #[error("{0}")]
    TimedOut(TimedOut),
    /// The client left more replies unread than the output limits allow.
    #[error(
        "its replies stayed unread past the soft client output buffer limit ({0} bytes unsent)"
    )]
    Unread(usize),
}

/// A connection's replies not yet written, in order: short ones copied
/// into one buffer, long ones (a store's answer, or a stored value the
/// answer holds as a part of its own) kept as they are, shared with whoever
/// else holds them, not copied. Its length is the bytes left to send, which
/// the client output buffer limits count: a stored value queued a thousand
/// times counts a thousand times there, though its memory exists once.
#[derive(Debug, Default)]
pub struct Output {
    chunks: VecDeque<Bytes>,
    /// The bytes in `chunks`.
    queued: usize,
    /// The replies after the last chunk.
    pub buf: BytesMut,
}

/// Below this, a reply is copied into [`Output::buf`] rather than kept as
/// a chunk of its own.
const SHORT_REPLY: usize = 4096;

impl Output {
    /// An empty output.
    pub fn new() -> Output {
        Output {
            chunks: VecDeque::new(),
            queued: 0,
            buf: BytesMut::with_capacity(16 * 1024),
        }
    }

    /// The bytes not yet written.
    pub fn len(&self) -> usize {
        self.queued + self.buf.len()
    }

    /// Whether every reply was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `replies` after what is there.
    pub fn push(&mut self, replies: Bytes) {
        if replies.is_empty() {
            return;
        }
        if replies.len() < SHORT_REPLY {
            self.buf.extend_from_slice(&replies);
            return;
        }
        if !self.buf.is_empty() {
            let short = self.buf.split().freeze();
            self.queued += short.len();
            self.chunks.push_back(short);
        }
        self.queued += replies.len();
        self.chunks.push_back(replies);
    }

    /// Drops the first `n` bytes (written), at most [`Output::len`].
    fn advance(&mut self, mut n: usize) {
        while let Some(chunk) = self.chunks.front_mut() {
            if n < chunk.len() {
                chunk.advance(n);
                self.queued -= n;
                return;
            }
            n -= chunk.len();
            self.queued -= chunk.len();
            self.chunks.pop_front();
        }
        self.buf.advance(n);
    }
}

/// The most buffers one vectored write of [`Connection::write_output`]
/// passes (well below the system's limit, 1,024 on Linux).
const WRITE_SLICES: usize = 64;

/// Which read deadline a client missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimedOut {
    /// It sent nothing for `--timeout` seconds.
    #[error("idle for longer than the idle timeout")]
    Idle,
    /// A request it started did not arrive in full within
    /// `--request-read-timeout-ms`.
    #[error("a request did not arrive in full within the request read timeout")]
    Request,
}

/// How long a connection waits for its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadTimeouts {
    /// For the first byte of a request, after the last reply (`None`:
    /// forever).
    pub idle: Option<Duration>,
    /// For the rest of a request, from when its first byte arrived (or
    /// from when the server reads again, if it arrived before).
    pub request: Duration,
}

/// A client's socket: plain TCP, or TLS (`--tls-port`).
pub use raft_node::tls::TcpOrTls as ClientStream;

/// A buffered client connection.
pub struct Connection {
    stream: ClientStream,
    peer: String,
    buffer: BytesMut,
    limits: Limits,
    max_request: usize,
    timeouts: ReadTimeouts,
    /// When the first byte of the request at the front of `buffer` arrived
    /// (meaningful while `buffer` is not empty).
    partial_since: Instant,
    /// Bytes read and written since the last call to `take_counts`.
    read: u64,
    written: u64,
}

impl Connection {
    /// Wraps a socket (whose peer is `peer`); a request may be at most
    /// `max_request` bytes, and the client is waited for at most as long as
    /// `timeouts` say.
    pub fn new(
        stream: ClientStream,
        peer: String,
        max_request: usize,
        timeouts: ReadTimeouts,
    ) -> Connection {
        Connection {
            stream,
            peer,
            buffer: BytesMut::with_capacity(16 * 1024),
            limits: Limits {
                max_bulk: max_request,
                max_elements: max_request / 4,
                max_line: max_request.min(Limits::default().max_line),
                ..Limits::default()
            },
            max_request,
            timeouts,
            partial_since: Instant::now(),
            read: 0,
            written: 0,
        }
    }

    /// Waits until at least one request is complete, then moves every
    /// complete request (at most `max`) into `into`. `Ok(false)` when the
    /// client closed the connection; [`ConnectionError::TimedOut`] when it
    /// sent nothing within the idle timeout, or did not finish a request
    /// within the request read timeout of its first byte.
    pub async fn read_requests(
        &mut self,
        max: usize,
        into: &mut Vec<Vec<Bytes>>,
    ) -> Result<bool, ConnectionError> {
        let idle_since = Instant::now();
        if !self.buffer.is_empty() {
            // The rest of a request is waited for from now: the time the
            // server spent on earlier requests is not the client's.
            self.partial_since = idle_since;
        }
        loop {
            let mut used = 0;
            let first = into.len();
            let mut located = Vec::new();
            while first + located.len() < max {
                match locate_request(&self.buffer[used..], &self.limits) {
                    Ok((_, n)) if n > self.max_request => {
                        return Err(ConnectionError::Protocol(format!(
                            "request of {n} bytes is larger than the limit of {} bytes",
                            self.max_request
                        )));
                    }
                    Ok((request, n)) => {
                        located.push((used, request));
                        used += n;
                    }
                    Err(FrameError::Incomplete) => break,
                    Err(FrameError::Invalid(why)) => return Err(ConnectionError::Protocol(why)),
                }
            }
            // The requests' bytes become one shared buffer that their
            // arguments are slices of: no copy per argument.
            let chunk = self.buffer.split_to(used).freeze();
            if used > 0 && !self.buffer.is_empty() {
                // What is left began after a whole request, in the last read
                // (or is whole itself, past `max`).
                self.partial_since = Instant::now();
            }
            for (at, request) in located {
                let args: Vec<Bytes> = match request {
                    Located::Ranges(ranges) => ranges
                        .into_iter()
                        .map(|r| chunk.slice(at + r.start..at + r.end))
                        .collect(),
                    Located::Args(args) => args,
                };
                // An empty line between requests is skipped.
                if !args.is_empty() {
                    into.push(args);
                }
            }
            if !into.is_empty() {
                return Ok(true);
            }
            if self.buffer.len() > self.max_request {
                return Err(ConnectionError::Protocol(format!(
                    "request larger than the limit of {} bytes",
                    self.max_request
                )));
            }
            let (deadline, missed) = if self.buffer.is_empty() {
                (self.timeouts.idle.map(|t| idle_since + t), TimedOut::Idle)
            } else {
                (
                    Some(self.partial_since + self.timeouts.request),
                    TimedOut::Request,
                )
            };
            let was_empty = self.buffer.is_empty();
            self.buffer.reserve(16 * 1024);
            let read = self.stream.read_buf(&mut self.buffer);
            let n = match deadline {
                None => read.await?,
                Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                    Ok(n) => n?,
                    Err(_) => return Err(ConnectionError::TimedOut(missed)),
                },
            };
            if was_empty {
                self.partial_since = Instant::now();
            }
            if n == 0 {
                if self.buffer.is_empty() {
                    return Ok(false);
                }
                return Err(ConnectionError::Protocol(
                    "the connection closed in the middle of a request".into(),
                ));
            }
            self.read += n as u64;
        }
    }

    /// While the connection waits for something other than its client (a
    /// blocked BLPOP): reads what the client sends into the buffer, to be
    /// run after. `Ok(false)` when the client closed the connection. Once
    /// the buffer holds a whole request's worth (`max_request`), it reads
    /// no more (never resolves): the client is back-pressured, as while
    /// any request runs.
    pub async fn read_while_blocked(&mut self) -> Result<bool, ConnectionError> {
        if self.buffer.len() >= self.max_request {
            return std::future::pending().await;
        }
        self.buffer.reserve(16 * 1024);
        let n = self.stream.read_buf(&mut self.buffer).await?;
        self.read += n as u64;
        Ok(n > 0)
    }

    /// Writes `bytes` and flushes.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnectionError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes every reply of `out` and flushes; what was written leaves
    /// `out`, so that after an error (or a cancellation) `out` holds what
    /// is left. Its chunks are written as they are, several at a time
    /// (vectored writes, over TLS too): a reply made of stored values and
    /// the framing between them is never copied into one buffer.
    pub async fn write_output(&mut self, out: &mut Output) -> Result<(), ConnectionError> {
        while !out.is_empty() {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let mut used = 0;
            for (slice, chunk) in slices.iter_mut().zip(&out.chunks) {
                *slice = IoSlice::new(chunk);
                used += 1;
            }
            if used < WRITE_SLICES && !out.buf.is_empty() {
                slices[used] = IoSlice::new(&out.buf);
                used += 1;
            }
            let n = self.stream.write_vectored(&slices[..used]).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
            }
            self.written += n as u64;
            out.advance(n);
        }
        if out.buf.capacity() > 64 * 1024 {
            // A large burst leaves no large buffer behind.
            out.buf = BytesMut::with_capacity(16 * 1024);
        }
        self.stream.flush().await?;
        Ok(())
    }

    /// Bytes read and written since the last call.
    pub fn take_counts(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.read),
            std::mem::take(&mut self.written),
        )
    }

    /// The peer's address.
    pub fn peer(&self) -> String {
        self.peer.clone()
    }
}
