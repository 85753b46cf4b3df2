//! A small RESP2 client on tokio, used by `raft-kv demo`, `raft-kv cluster`
//! and the tests: one connection, one command at a time ([`Client::call`])
//! or many sent together ([`Client::pipeline`]), and every read bounded by
//! a timeout so that a node that hangs cannot hang the caller.
//!
//! An error *reply* (`-ERR ...`, `-TRYAGAIN ...`) is a normal answer and
//! comes back as `Ok(Frame::Error(..))`; [`ClientError`] is for a connection
//! that failed. After a `ClientError` the connection's state is unknown
//! (a reply may still be on its way): drop the client and connect again.

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::frame::{put_array, put_bulk, Frame, FrameError, Limits};

/// How long [`Client::connect`] waits for the connection, and the default
/// read timeout of a new client.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call failed (not an error reply: those are `Ok(Frame::Error)`).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// No complete reply arrived within the read timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection before replying.
    #[error("the server closed the connection")]
    Closed,
    /// The server sent something that is not RESP; the text says what.
    #[error("invalid reply: {0}")]
    Protocol(String),
}

/// One connection to a RESP server.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    buffer: BytesMut,
    out: BytesMut,
    timeout: Duration,
    limits: Limits,
}

impl Client {
    /// Connects to `addr` (waiting at most [`DEFAULT_TIMEOUT`]); replies are
    /// then awaited for at most [`DEFAULT_TIMEOUT`] each (see
    /// [`Client::set_timeout`]).
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        let stream = tokio::time::timeout(DEFAULT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection within {DEFAULT_TIMEOUT:?}"),
                )
            })??;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buffer: BytesMut::with_capacity(16 * 1024),
            out: BytesMut::with_capacity(4 * 1024),
            timeout: DEFAULT_TIMEOUT,
            limits: Limits {
                max_bulk: 512 << 20,
                max_elements: 16 << 20,
                ..Limits::default()
            },
        })
    }

    /// Sets how long to wait for each reply.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The read timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one command (its name and arguments) and returns the reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Frame, ClientError> {
        self.out.clear();
        encode_command(&mut self.out, args.iter().copied());
        self.stream.write_all(&self.out).await?;
        self.read_frame().await
    }

    /// Sends every command, then reads their replies, in order.
    pub async fn pipeline(&mut self, commands: &[Vec<Bytes>]) -> Result<Vec<Frame>, ClientError> {
        self.out.clear();
        for c in commands {
            encode_command(&mut self.out, c.iter().map(|a| a.as_ref()));
        }
        self.stream.write_all(&self.out).await?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(self.read_frame().await?);
        }
        Ok(replies)
    }

    /// Reads one reply, waiting at most the read timeout for it.
    async fn read_frame(&mut self) -> Result<Frame, ClientError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.read_frame_unbounded()).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(timeout)),
        }
    }

    async fn read_frame_unbounded(&mut self) -> Result<Frame, ClientError> {
        loop {
            match Frame::parse(&self.buffer, &self.limits) {
                Ok((frame, used)) => {
                    self.buffer.advance(used);
                    return Ok(frame);
                }
                Err(FrameError::Incomplete) => {}
                Err(FrameError::Invalid(why)) => return Err(ClientError::Protocol(why)),
            }
            self.buffer.reserve(16 * 1024);
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// `INFO raft`, parsed.
    pub async fn raft_info(&mut self) -> Result<RaftInfo, String> {
        match self.call(&[b"INFO", b"raft"]).await {
            Ok(Frame::Bulk(b)) => Ok(RaftInfo::parse(&String::from_utf8_lossy(&b))),
            Ok(Frame::Error(e)) => Err(format!("INFO raft failed: {e}")),
            Ok(other) => Err(format!("INFO raft: unexpected reply {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Appends a command as a RESP array of bulk strings.
fn encode_command<'a>(out: &mut BytesMut, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    put_array(out, args.len());
    for a in args {
        put_bulk(out, a);
    }
}

/// A node's Raft state as `INFO raft` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftInfo {
    /// The node's id.
    pub id: String,
    /// `leader`, `follower`, `candidate`, ...
    pub role: String,
    /// The current term.
    pub term: u64,
    /// The leader's id as this node knows it; empty when none is known.
    pub leader_id: String,
    /// The highest log index known to be committed.
    pub commit_index: u64,
    /// The highest log index applied to the store.
    pub applied_index: u64,
}

impl RaftInfo {
    /// Reads the `raft_*:value` lines of an `INFO` reply; missing lines
    /// leave their fields empty or zero.
    pub fn parse(text: &str) -> RaftInfo {
        let mut info = RaftInfo::default();
        for line in text.lines() {
            let Some((key, value)) = line.trim_end().split_once(':') else {
                continue;
            };
            let number = || value.parse::<u64>().unwrap_or(0);
            match key {
                "raft_id" => info.id = value.to_string(),
                "raft_role" => info.role = value.to_string(),
                "raft_term" => info.term = number(),
                "raft_leader_id" => info.leader_id = value.to_string(),
                "raft_commit_index" => info.commit_index = number(),
                "raft_applied_index" => info.applied_index = number(),
                _ => {}
            }
        }
        info
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A fake server: answers every complete request with `reply(args)`,
    /// sending the replies of one read in pieces to exercise reassembly.
    async fn fake_server(reply: fn(&[Bytes]) -> Option<Frame>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = BytesMut::new();
                    loop {
                        if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut out = BytesMut::new();
                        while let Ok((args, used)) = Frame::parse_request(&buf, &Limits::default())
                        {
                            buf.advance(used);
                            if let Some(f) = reply(&args) {
                                f.encode(&mut out);
                            }
                        }
                        for chunk in out.chunks(3) {
                            if s.write_all(chunk).await.is_err() {
                                return;
                            }
                            s.flush().await.ok();
                        }
                    }
                });
            }
        });
        addr
    }

    fn echo(args: &[Bytes]) -> Option<Frame> {
        Some(match args[0].as_ref() {
            b"PING" => Frame::Simple("PONG".into()),
            b"FAIL" => Frame::Error("ERR no".into()),
            b"SILENT" => return None,
            b"INFO" => Frame::Bulk(Bytes::from_static(
                b"# Raft\r\nraft_id:n2\r\nraft_role:leader\r\nraft_term:7\r\nraft_leader_id:n2\r\nraft_commit_index:12\r\nraft_applied_index:11\r\n",
            )),
            _ => Frame::Array(args.iter().cloned().map(Frame::Bulk).collect()),
        })
    }

    #[tokio::test]
    async fn calls_and_error_replies() {
        let addr = fake_server(echo).await;
        let mut c = Client::connect(addr).await.unwrap();
        assert_eq!(
            c.call(&[b"PING"]).await.unwrap(),
            Frame::Simple("PONG".into())
        );
        assert_eq!(
            c.call(&[b"FAIL"]).await.unwrap(),
            Frame::Error("ERR no".into())
        );
        assert_eq!(
            c.call(&[b"SET", b"k", b"a\r\nb"]).await.unwrap(),
            Frame::Array(vec![
                Frame::Bulk("SET".into()),
                Frame::Bulk("k".into()),
                Frame::Bulk("a\r\nb".into())
            ])
        );
    }

    #[tokio::test]
    async fn pipelines_keep_the_order() {
        let addr = fake_server(echo).await;
        let mut c = Client::connect(addr).await.unwrap();
        let commands: Vec<Vec<Bytes>> = (0..100)
            .map(|i| vec![Bytes::from("GET"), Bytes::from(format!("key{i}"))])
            .collect();
        let replies = c.pipeline(&commands).await.unwrap();
        assert_eq!(replies.len(), 100);
        for (i, r) in replies.iter().enumerate() {
            let Frame::Array(items) = r else {
                panic!("{r:?}")
            };
            assert_eq!(items[1], Frame::Bulk(Bytes::from(format!("key{i}"))));
        }
    }

    #[tokio::test]
    async fn a_missing_reply_times_out() {
        let addr = fake_server(echo).await;
        let mut c = Client::connect(addr).await.unwrap();
        c.set_timeout(Duration::from_millis(100));
        assert!(matches!(
            c.call(&[b"SILENT"]).await,
            Err(ClientError::Timeout(_))
        ));
    }

    #[tokio::test]
    async fn a_closed_connection_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            drop(s);
        });
        let mut c = Client::connect(addr).await.unwrap();
        let e = c.call(&[b"PING"]).await.unwrap_err();
        assert!(
            matches!(e, ClientError::Closed | ClientError::Io(_)),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn raft_info_is_parsed() {
        let addr = fake_server(echo).await;
        let mut c = Client::connect(addr).await.unwrap();
        let info = c.raft_info().await.unwrap();
        assert_eq!(
            info,
            RaftInfo {
                id: "n2".into(),
                role: "leader".into(),
                term: 7,
                leader_id: "n2".into(),
                commit_index: 12,
                applied_index: 11,
            }
        );
        assert!(info.is_leader());
    }
}
