//! The TCP transport: nodes reach each other over TCP (on tokio), with
//! mutual TLS, a compact binary encoding, pipelining, back-pressure,
//! timeouts and reconnection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use raft_node::tls::TlsConfig;
//! use raft_node::{Bootstrap, Node, Options, TcpOptions, TcpTransport};
//!
//! // ca.crt: the cluster's CA; node.crt, node.key: this node's certificate
//! // (CertificateAuthority::issue_node, or `raft-kv cert create-node`).
//! let tls = TlsConfig::from_pem_files("certs/ca.crt", "certs/node.crt", "certs/node.key")?;
//! // The node tells the transport its id and cluster id when it starts.
//! let transport = TcpTransport::new(TcpOptions::default().with_tls(tls))?;
//! let node = Node::new(Options {
//!     id: Some("n1".into()),
//!     cluster: Some("my-cluster".into()),
//!     address: Some("127.0.0.1:7001".into()),
//!     transport: Some(Arc::new(transport)),
//!     bootstrap: Bootstrap::Static(vec![
//!         ("n1".into(), "127.0.0.1:7001".into()),
//!         ("n2".into(), "127.0.0.1:7002".into()),
//!         ("n3".into(), "127.0.0.1:7003".into()),
//!     ]),
//!     ..Options::default()
//! })
//! .await?;
//! # let _ = node; Ok(()) }
//! ```
//!
//! # Frames
//!
//! A TCP connection carries length-delimited frames: a `u32` length, a kind
//! byte, a `u64` request id and a payload (see [`frame`] for the layout).
//! Envelopes and replies are encoded with [`crate::codec`]. A frame longer
//! than [`TcpOptions::max_frame_size`] (16 MiB by default), a frame of an
//! unknown kind, or a frame whose payload does not decode closes that
//! connection: the receiving side logs the reason (`tracing::warn`), counts
//! it in [`TcpTransport::stats`], and tells the peer why in a `Close` frame
//! if it still can. Nothing a peer sends makes this transport panic, and a
//! bad connection never holds up the listener or other connections.
//!
//! A request larger than the frame size (this side's or the peer's, from its
//! handshake) is not sent: its `invoke` fails with
//! [`TransportError::TooLarge`] and the connection goes on. So that no log
//! entry is too large to replicate, a [`crate::Node`] on this transport
//! refuses commands larger than [`TcpOptions::max_entry_bytes`] (the frame
//! size less the headers of an append carrying one entry:
//! [`DEFAULT_MAX_ENTRY_BYTES`] for 16 MiB frames), and its sender logs and
//! counts a message a peer with a smaller frame size cannot take
//! ([`crate::NodeMetrics::messages_oversized`]).
//!
//! # Security
//!
//! With [`TcpOptions::tls`] (see [`crate::tls`]), every connection starts
//! with a TLS 1.3 handshake in which both sides show a certificate from the
//! cluster's CA; the connecting side also checks that the listener's
//! certificate is valid for the host it dialed. Then, inside TLS, the
//! handshake below runs, and each side checks that the other's certificate
//! names the node id its `Hello` claims, in this cluster. From then on a
//! Raft message whose sender is not that node closes the connection
//! ([`TcpStats::sender_mismatches`]). A peer that fails any of this has
//! sent nothing the handler sees, and has learned nothing: the TLS
//! handshake fails before raft-node's own bytes flow, and certificates name
//! nodes only by a digest. [`TcpTransport::reload_tls`] installs renewed
//! certificates and CA bundles without a restart.
//!
//! Without TLS a transport must be made [`TcpOptions::insecure`]
//! explicitly: then any process that reaches the port and knows the
//! cluster's name can send Raft messages as any node.
//!
//! # Handshake
//!
//! The connecting side sends a `Hello` first (magic, protocol version, its
//! maximum frame size, its cluster id, its node id, the address it listens
//! at); the listener checks it and answers with its own `Hello`, which the
//! connecting side checks in turn. A peer of another cluster (or another
//! protocol version) is refused with a `Close` frame whose reason names
//! only what the peer sent (`cluster mismatch: this node is not of cluster
//! "theirs"`), never this node's cluster or id; both sides log it (the
//! refusing side with both clusters and nodes), the refusing side counts it in [`TcpStats::handshakes_refused`], the
//! refused side in [`TcpStats::refused_by_peer`], and the connecting side's
//! `connect` fails with [`TransportError::Unreachable`] carrying the reason.
//! A handshake must complete within [`TcpOptions::connect_timeout`].
//!
//! # Requests and replies
//!
//! [`Transport::connect`] opens one TCP connection (and does the handshake:
//! an unreachable peer or a refused handshake fails `connect`) and returns a
//! [`Connection`] that multiplexes requests over it: each request gets an id
//! (unique on that connection), and the reply carries it back, so many
//! requests are in flight at once and replies may come back in any order.
//! Requests are written in the order their `invoke` futures were first
//! polled (each is queued synchronously at its first poll), and the
//! listener hands them to its [`Handler`] in that order (it calls
//! `handle` and polls each future once in arrival order), then lets them run
//! concurrently: a slow or stuck request does not hold up later ones.
//!
//! A Raft message can also be posted ([`Connection::post`]): written as a
//! `Post` frame that the listener hands to its handler like a request but
//! does not answer, which saves a reply frame, a wake-up of each side and
//! the bookkeeping of a waiting request per message. It is posted only on
//! an established connection whose peer speaks protocol version 2 or later
//! (a version 1 peer is still accepted, and gets requests), and only when
//! no request waits in the queue (so it overtakes none); otherwise the
//! envelope is given back to be invoked. A posted message lost with its
//! connection is not retried: Raft sends again.
//!
//! Every `invoke` fails with [`TransportError::Timeout`] if no reply came
//! within [`TcpOptions::request_timeout`] of its first poll (time spent
//! queued or reconnecting included); the connecting side then sends a
//! `Cancel` frame, and the listener drops that request's handler future (as
//! the in-memory transport does when a request times out). The listener
//! also drops a handler future that runs longer than
//! [`TcpOptions::handler_timeout`], answering [`Reply::Error`].
//!
//! # Back-pressure and memory
//!
//! On the connecting side, at most [`TcpOptions::max_in_flight`] requests
//! per connection are written and unanswered; further requests **wait** in
//! the connection's queue, in order, until replies free the window (within
//! their timeout). The queue itself holds at most
//! [`TcpOptions::queue_capacity`] requests: an `invoke` that finds it full
//! **fails at once** with [`TransportError::Other`] (and counts in
//! [`TcpStats::queue_full`]) rather than growing memory. So a connection
//! holds at most `max_in_flight + queue_capacity` encoded requests, each at
//! most `max_frame_size` bytes. A peer that does not answer (or does not
//! read) thus slows its senders down instead of growing memory; the node's
//! own sender task bounds itself to 64 messages in flight per peer and
//! drops messages when its own queue is full, which Raft recovers from.
//!
//! On the listening side, each connection runs at most `max_in_flight`
//! handlers at once (replies not yet written count too); beyond that it
//! stops reading the socket, and TCP's flow control pushes back on the
//! sender.
//!
//! # Reconnection
//!
//! A [`Connection`] survives a broken TCP connection: requests already
//! written fail with [`TransportError::Lost`] (the peer may have handled
//! them), requests not yet written with [`TransportError::Unreachable`]
//! ("connection lost: ..."), and the next request reconnects (and redoes
//! the handshake).
//! Failed attempts back off exponentially from
//! [`TcpOptions::reconnect_backoff_min`] to
//! [`TcpOptions::reconnect_backoff_max`] (a connection that lived longer
//! than the maximum backoff starts again from the minimum); a request that
//! would time out before the next attempt fails at once with
//! [`TransportError::Unreachable`] and the last error, the others wait for
//! the attempt. An attempt that fails fails the requests waiting for it.
//! Requests are never sent twice.
//!
//! # Shutdown and close
//!
//! [`Transport::shutdown`] stops accepting (the listening socket is closed
//! when it returns, so the address can be bound again at once), stops
//! handing requests to the handler, closes accepted connections (with a
//! `Close` frame saying so: requests in flight on them fail on the other
//! side), and closes the connections this transport opened. The transport
//! can listen and connect again afterwards. Dropping the transport does the
//! same without waiting. [`Connection::close`] (or dropping the connection)
//! closes its TCP connection; its requests fail with
//! [`TransportError::Closed`].
//!
//! # Back channels
//!
//! [`Connection::listen`] follows the in-memory transport's convention:
//! node A, which does not listen, connects to B and listens on that
//! connection; when B then connects to A's address (the
//! [`TcpOptions::advertise`] address A announced in its handshake) and
//! nothing accepts TCP connections there, B's connection goes over A's
//! connection instead. Closing A's connection ends it. A node that listens
//! (every [`crate::Node`] does) never needs this.
//!
//! # Addresses
//!
//! [`Transport::listen`] binds exactly the address it is given (a
//! `host:port` or `ip:port`; port 0 picks a free port) and returns the
//! address bound (`127.0.0.1:0` becomes `127.0.0.1:41234`). Nothing else
//! is bound.

mod client;
pub mod frame;
mod server;
mod session;
mod stream;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;

#[cfg(doc)]
use super::Reply;
use super::{Connection, Handler, Transport, TransportError};
use crate::tls::TlsConfig;
use client::ConnShared;
use session::Session;

/// The default [`TcpOptions::max_frame_size`]: 16 MiB. The node's appends
/// carry at most 1 MiB of entries (`max_append_bytes`, unless one entry is
/// larger) and its snapshot chunks 1 MiB (`snapshot_chunk_bytes`), so this
/// leaves room for commands of up to [`DEFAULT_MAX_ENTRY_BYTES`].
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;

/// The longest address a node sends in its envelopes over TCP: the socket
/// address it listens at, as printed (`[<39-character IPv6>%<10-digit
/// scope>]:<5-digit port>`).
pub const MAX_SOCKET_ADDRESS_BYTES: usize = 58;

/// The largest command whose log entry fits, alone in an append, in a frame
/// of `max_frame_size` bytes: the frame less its head
/// ([`frame::FRAME_HEAD`]) and the append's headers
/// ([`crate::codec::one_entry_append_overhead`]) for the longest sender
/// address ([`MAX_SOCKET_ADDRESS_BYTES`]). A command forwarded from a
/// follower to the leader needs less. 0 if the frame cannot hold even the
/// headers.
pub const fn max_entry_bytes(max_frame_size: usize) -> usize {
    max_frame_size.saturating_sub(
        frame::FRAME_HEAD + crate::codec::one_entry_append_overhead(MAX_SOCKET_ADDRESS_BYTES),
    )
}

/// [`max_entry_bytes`] of the default frame size: 16,777,046 bytes.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = max_entry_bytes(DEFAULT_MAX_FRAME_SIZE);

/// The smallest [`TcpOptions::max_frame_size`] accepted: room for a
/// handshake.
pub const MIN_FRAME_SIZE: usize = 1024;

/// The options of a [`TcpTransport`]. [`TcpOptions::new`] gives the
/// defaults; change fields as needed.
#[derive(Debug, Clone)]
pub struct TcpOptions {
    /// This node's id, sent in the handshake (for the peer's logs) and
    /// named by its certificate. Empty (as in `TcpOptions::default()`):
    /// the node's, which the node tells the transport when it starts
    /// ([`Transport::bind_node`]); a given one must be the node's.
    pub node_id: String,
    /// The cluster id string: a peer whose handshake carries another one is
    /// refused. Empty: the node's, as for `node_id`.
    pub cluster: String,
    /// The largest frame accepted, in bytes (after the 4-byte length; the
    /// default is [`DEFAULT_MAX_FRAME_SIZE`], at least [`MIN_FRAME_SIZE`],
    /// at most `u32::MAX`). It must exceed the largest request the node
    /// sends: an append carries up to `max_append_bytes` of entries (1 MiB
    /// by default, or one entry of any size), a snapshot chunk
    /// `snapshot_chunk_bytes` (1 MiB), a forwarded command its own size.
    /// Each side tells the other its maximum in the handshake: a request or
    /// reply too large for the peer fails locally
    /// ([`TransportError::TooLarge`] for a request, [`Reply::Error`] for a
    /// reply) instead of being sent. A node refuses commands larger than
    /// [`TcpOptions::max_entry_bytes`].
    pub max_frame_size: usize,
    /// How long `invoke` waits for a reply, from its first poll (queueing
    /// and reconnecting included), before [`TransportError::Timeout`].
    /// Default 5 s.
    pub request_timeout: Duration,
    /// How long a connection attempt (TCP connect and handshake) may take,
    /// both when connecting and when accepting. Default 2 s.
    pub connect_timeout: Duration,
    /// How long the listener lets a handler run before dropping it and
    /// answering [`Reply::Error`]. Default 10 s.
    pub handler_timeout: Duration,
    /// Requests written and not yet answered, per connection and direction
    /// (and handlers running per accepted connection). Default 256.
    pub max_in_flight: usize,
    /// Requests waiting to be written, per connection: beyond it, `invoke`
    /// fails at once. Default 1024.
    pub queue_capacity: usize,
    /// The first wait before reconnecting after a failed attempt. Default
    /// 20 ms.
    pub reconnect_backoff_min: Duration,
    /// The longest wait between reconnection attempts. Default 2 s.
    pub reconnect_backoff_max: Duration,
    /// The address announced in the handshake, for back channels (see the
    /// [module documentation](self)). Default: the first address this
    /// transport listens at, if any.
    pub advertise: Option<String>,
    /// Accepted connections whose handshake (TLS and `Hello`) may run at
    /// once; a connection beyond it is closed at once
    /// ([`TcpStats::handshakes_shed`]). Each buffers at most
    /// [`frame::MAX_HANDSHAKE_FRAME`] (plus TLS's own bounded buffers) and
    /// lasts at most `connect_timeout`, so peers that never finish their
    /// handshake cost bounded memory. Default 64.
    pub max_pending_handshakes: usize,
    /// The most connections peers have opened to this node (handshake
    /// done) that it serves at once; a handshake beyond it is refused with
    /// "too many connections" ([`TcpStats::connections_refused_full`]), so
    /// a member that reconnects in a loop (or a leaked certificate) cannot
    /// take every descriptor. Each member keeps one or two. Default 256.
    pub max_connections: usize,
    /// Mutual TLS between nodes (see [`crate::tls`]): the certificate must
    /// name `node_id` of `cluster`. Default: none, which
    /// [`TcpTransport::new`] refuses unless `insecure` is set.
    pub tls: Option<TlsConfig>,
    /// Run without TLS: plaintext, and any process that can reach the port
    /// and knows the cluster's name can send Raft messages as any node.
    /// Only for tests and networks where nothing else can connect. Default
    /// false.
    pub insecure: bool,
}

impl Default for TcpOptions {
    /// The defaults, for the node that uses the transport: its id and
    /// cluster id come from the node when it starts (from
    /// [`crate::Options`], its store, or generated).
    fn default() -> TcpOptions {
        TcpOptions::new("", "")
    }
}

impl TcpOptions {
    /// The defaults for the node `node_id` of the cluster `cluster`
    /// (`TcpOptions::default()` takes both from the node instead).
    pub fn new(node_id: impl Into<String>, cluster: impl Into<String>) -> TcpOptions {
        TcpOptions {
            node_id: node_id.into(),
            cluster: cluster.into(),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            handler_timeout: Duration::from_secs(10),
            max_in_flight: 256,
            queue_capacity: 1024,
            reconnect_backoff_min: Duration::from_millis(20),
            reconnect_backoff_max: Duration::from_secs(2),
            advertise: None,
            max_pending_handshakes: 64,
            max_connections: 256,
            tls: None,
            insecure: false,
        }
    }

    /// These options with mutual TLS ([`TcpOptions::tls`]).
    pub fn with_tls(mut self, tls: TlsConfig) -> TcpOptions {
        self.tls = Some(tls);
        self
    }

    /// These options without TLS ([`TcpOptions::insecure`]).
    pub fn insecure(mut self) -> TcpOptions {
        self.insecure = true;
        self
    }

    /// The largest command a node on a transport with these options
    /// replicates: [`max_entry_bytes`] of `max_frame_size`. Peers must
    /// accept frames as large (give every node the same `max_frame_size`).
    pub fn max_entry_bytes(&self) -> usize {
        max_entry_bytes(self.max_frame_size)
    }

    /// Checks the options; the error names the option and what is wrong.
    pub fn validate(&self) -> Result<(), TransportError> {
        let invalid = |option: &str, reason: String| {
            Err(TransportError::Other(format!(
                "invalid TCP option `{option}`: {reason}"
            )))
        };
        if self.max_frame_size < MIN_FRAME_SIZE || self.max_frame_size > u32::MAX as usize {
            return invalid(
                "max_frame_size",
                format!(
                    "{} is not between {MIN_FRAME_SIZE} and {}",
                    self.max_frame_size,
                    u32::MAX
                ),
            );
        }
        for (option, value) in [
            ("request_timeout", self.request_timeout),
            ("connect_timeout", self.connect_timeout),
            ("handler_timeout", self.handler_timeout),
            ("reconnect_backoff_min", self.reconnect_backoff_min),
        ] {
            if value.is_zero() {
                return invalid(option, "must be positive".into());
            }
        }
        if self.reconnect_backoff_max < self.reconnect_backoff_min {
            return invalid(
                "reconnect_backoff_max",
                format!(
                    "{:?} is below reconnect_backoff_min ({:?})",
                    self.reconnect_backoff_max, self.reconnect_backoff_min
                ),
            );
        }
        if self.max_in_flight == 0 {
            return invalid("max_in_flight", "must be at least 1".into());
        }
        if self.queue_capacity == 0 {
            return invalid("queue_capacity", "must be at least 1".into());
        }
        if self.max_pending_handshakes == 0 {
            return invalid("max_pending_handshakes", "must be at least 1".into());
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1".into());
        }
        match &self.tls {
            None if !self.insecure => {
                return invalid(
                    "tls",
                    "none given: give a TLS configuration (mutual TLS between nodes, see raft_node::tls) or set `insecure` to run without one (then anyone who can reach the port can send Raft messages)".into(),
                )
            }
            None => {}
            // Without the node's id (given later by the node) the
            // certificate is checked then.
            Some(_) if self.node_id.is_empty() || self.cluster.is_empty() => {}
            Some(tls) => {
                if let Err(e) = tls.check_node(&self.cluster, &self.node_id) {
                    return invalid("tls", e.to_string());
                }
            }
        }
        Ok(())
    }
}

/// Counters of a [`TcpTransport`], from [`TcpTransport::stats`]; they only
/// grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpStats {
    /// TCP connections accepted by the listeners.
    pub connections_accepted: u64,
    /// Outgoing connections established (handshake done), reconnections
    /// included.
    pub connections_opened: u64,
    /// Outgoing connection attempts that failed (TCP connect, handshake,
    /// refusal or timeout).
    pub connect_failures: u64,
    /// Outgoing connections re-established by a [`Connection`] after it
    /// lost its first.
    pub reconnects: u64,
    /// Handshakes this side refused: another cluster or protocol version,
    /// or a certificate that does not name the node claimed.
    pub handshakes_refused: u64,
    /// Handshakes a peer refused.
    pub refused_by_peer: u64,
    /// Accepted connections that sent no complete handshake in time.
    pub handshake_timeouts: u64,
    /// Connections closed for a malformed frame: too short, a payload that
    /// does not decode, or a frame out of place (such as a request before
    /// the handshake).
    pub malformed_frames: u64,
    /// Connections closed for a frame longer than the maximum.
    pub oversized_frames: u64,
    /// Connections closed for a frame of an unknown kind.
    pub unknown_frames: u64,
    /// Requests written.
    pub requests_sent: u64,
    /// Requests received.
    pub requests_received: u64,
    /// Invokes that timed out.
    pub timeouts: u64,
    /// Invokes refused because the connection's queue was full.
    pub queue_full: u64,
    /// Bytes written to peers' sockets: every frame (handshakes, requests,
    /// replies, cancels, closes) on both dialed and accepted connections,
    /// counted as the socket takes them.
    pub bytes_sent: u64,
    /// Bytes read from peers' sockets: every frame (handshakes included) on
    /// both dialed and accepted connections, counted as the socket gives
    /// them (a frame cut short by a broken connection counts what arrived).
    /// With TLS, both byte counts are of raft-node's frames, before
    /// encryption and after decryption.
    pub bytes_received: u64,
    /// TLS handshakes that failed, either way: no certificate, one from an
    /// untrusted CA, expired, not valid for the host dialed, or not TLS at
    /// all. Nothing of raft-node's protocol was exchanged on them.
    pub tls_handshake_failures: u64,
    /// TLS peers whose certificate did not name the node their handshake
    /// claimed (refused; counted in `handshakes_refused` too).
    pub identity_mismatches: u64,
    /// TLS connections closed for a Raft message whose sender was not the
    /// node the connection authenticated.
    pub sender_mismatches: u64,
    /// TLS configurations installed by [`TcpTransport::reload_tls`].
    pub tls_reloads: u64,
    /// Connections closed by a reload because the peer's certificate was no
    /// longer trusted.
    pub closed_by_reload: u64,
    /// Accepted connections closed at once because
    /// [`TcpOptions::max_pending_handshakes`] handshakes were running.
    pub handshakes_shed: u64,
    /// Handshakes refused because [`TcpOptions::max_connections`] peer
    /// connections were open.
    pub connections_refused_full: u64,
}

/// The counters behind [`TcpStats`].
#[derive(Default)]
struct Counters {
    connections_accepted: AtomicU64,
    connections_opened: AtomicU64,
    connect_failures: AtomicU64,
    reconnects: AtomicU64,
    handshakes_refused: AtomicU64,
    refused_by_peer: AtomicU64,
    handshake_timeouts: AtomicU64,
    malformed_frames: AtomicU64,
    oversized_frames: AtomicU64,
    unknown_frames: AtomicU64,
    requests_sent: AtomicU64,
    requests_received: AtomicU64,
    timeouts: AtomicU64,
    queue_full: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    tls_handshake_failures: AtomicU64,
    identity_mismatches: AtomicU64,
    sender_mismatches: AtomicU64,
    tls_reloads: AtomicU64,
    closed_by_reload: AtomicU64,
    handshakes_shed: AtomicU64,
    connections_refused_full: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` bytes to `counter` (one relaxed add per socket read or write).
fn add_bytes(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> TcpStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TcpStats {
            connections_accepted: get(&self.connections_accepted),
            connections_opened: get(&self.connections_opened),
            connect_failures: get(&self.connect_failures),
            reconnects: get(&self.reconnects),
            handshakes_refused: get(&self.handshakes_refused),
            refused_by_peer: get(&self.refused_by_peer),
            handshake_timeouts: get(&self.handshake_timeouts),
            malformed_frames: get(&self.malformed_frames),
            oversized_frames: get(&self.oversized_frames),
            unknown_frames: get(&self.unknown_frames),
            requests_sent: get(&self.requests_sent),
            requests_received: get(&self.requests_received),
            timeouts: get(&self.timeouts),
            queue_full: get(&self.queue_full),
            bytes_sent: get(&self.bytes_sent),
            bytes_received: get(&self.bytes_received),
            tls_handshake_failures: get(&self.tls_handshake_failures),
            identity_mismatches: get(&self.identity_mismatches),
            sender_mismatches: get(&self.sender_mismatches),
            tls_reloads: get(&self.tls_reloads),
            closed_by_reload: get(&self.closed_by_reload),
            handshakes_shed: get(&self.handshakes_shed),
            connections_refused_full: get(&self.connections_refused_full),
        }
    }
}

/// Locks `mutex`, ignoring poisoning: no code of this module panics while
/// holding a lock, and no user code runs under one.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The instant `duration` from now (a duration too long for the clock is
/// as good as a year).
fn after(duration: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(duration)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A listening socket's accept task.
struct Listening {
    address: String,
    task: JoinHandle<()>,
}

/// What the listeners and accepted connections share, under one lock.
#[derive(Default)]
struct Accepted {
    /// Bumped by every shutdown: a handshake that started under an older
    /// epoch does not become a session.
    epoch: u64,
    /// Accepted connections by serial number.
    sessions: HashMap<u64, Weak<Session>>,
    /// Back channels: the address a peer announced -> its connection.
    back_channels: HashMap<String, Weak<Session>>,
}

/// What a transport's tasks share.
struct Shared {
    options: TcpOptions,
    /// The node's id and cluster id, once the node has told them
    /// ([`Transport::bind_node`]); before, the options' (if given).
    identity: std::sync::OnceLock<(String, String)>,
    /// The TLS configuration in force (replaced by a reload); `None` for an
    /// insecure transport.
    tls: RwLock<Option<TlsConfig>>,
    counters: Counters,
    listening: Mutex<Vec<Listening>>,
    accepted: Mutex<Accepted>,
    /// Connections this transport opened (pruned as they go).
    connections: Mutex<Vec<Weak<ConnShared>>>,
    /// Serial numbers of sessions (for logs and the registry).
    next_serial: AtomicU64,
}

impl Shared {
    /// The node's id: as the node told it, else as the options gave it.
    fn node_id(&self) -> &str {
        self.identity
            .get()
            .map_or(self.options.node_id.as_str(), |(id, _)| id.as_str())
    }

    /// The cluster id: as the node told it, else as the options gave it.
    fn cluster(&self) -> &str {
        self.identity
            .get()
            .map_or(self.options.cluster.as_str(), |(_, c)| c.as_str())
    }

    /// The TLS configuration in force.
    fn tls(&self) -> Option<TlsConfig> {
        self.tls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn serial(&self) -> u64 {
        self.next_serial.fetch_add(1, Ordering::Relaxed)
    }

    /// The address announced in handshakes.
    fn advertised(&self) -> String {
        if let Some(address) = &self.options.advertise {
            return address.clone();
        }
        lock(&self.listening)
            .first()
            .map(|l| l.address.clone())
            .unwrap_or_default()
    }

    /// Stops listening, closes accepted and opened connections; returns the
    /// accept tasks (aborted) to wait for.
    fn stop(&self) -> Vec<JoinHandle<()>> {
        let listening = std::mem::take(&mut *lock(&self.listening));
        let (sessions, back) = {
            let mut accepted = lock(&self.accepted);
            accepted.epoch += 1;
            (
                std::mem::take(&mut accepted.sessions),
                std::mem::take(&mut accepted.back_channels),
            )
        };
        drop(back);
        for l in &listening {
            l.task.abort();
        }
        for session in sessions.values().filter_map(Weak::upgrade) {
            session.stop_serving();
            session.close("the listener is shutting down");
        }
        let connections = std::mem::take(&mut *lock(&self.connections));
        for connection in connections.iter().filter_map(Weak::upgrade) {
            connection.shut();
        }
        listening.into_iter().map(|l| l.task).collect()
    }
}

/// A [`Transport`] over TCP. See the [module documentation](self).
pub struct TcpTransport {
    shared: Arc<Shared>,
}

impl fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listening: Vec<String> = lock(&self.shared.listening)
            .iter()
            .map(|l| l.address.clone())
            .collect();
        f.debug_struct("TcpTransport")
            .field("node_id", &self.shared.node_id())
            .field("cluster", &self.shared.cluster())
            .field("listening", &listening)
            .finish_non_exhaustive()
    }
}

impl TcpTransport {
    /// A transport with these options (checked by
    /// [`TcpOptions::validate`]). It does nothing until asked to listen or
    /// connect; it needs a tokio runtime with I/O and time enabled.
    pub fn new(options: TcpOptions) -> Result<TcpTransport, TransportError> {
        options.validate()?;
        if let Some(tls) = &options.tls {
            let left = crate::tls::seconds_until(tls.certificate().not_after);
            if left < 7 * 24 * 3600 {
                tracing::warn!(
                    node = %options.node_id,
                    seconds_left = left,
                    "the node's TLS certificate expires within a week (or has expired): make a new one and reload"
                );
            }
        } else {
            tracing::warn!(
                node = %options.node_id,
                "the TCP transport runs WITHOUT TLS (insecure): traffic between nodes is plaintext and unauthenticated"
            );
        }
        Ok(TcpTransport {
            shared: Arc::new(Shared {
                tls: RwLock::new(options.tls.clone()),
                identity: std::sync::OnceLock::new(),
                options,
                counters: Counters::default(),
                listening: Mutex::new(Vec::new()),
                accepted: Mutex::new(Accepted::default()),
                connections: Mutex::new(Vec::new()),
                next_serial: AtomicU64::new(1),
            }),
        })
    }

    /// The options (with the TLS configuration given at the start; see
    /// [`TcpTransport::tls`] for the one in force).
    pub fn options(&self) -> &TcpOptions {
        &self.shared.options
    }

    /// The TLS configuration in force; `None` for an insecure transport.
    pub fn tls(&self) -> Option<TlsConfig> {
        self.shared.tls()
    }

    /// Installs a new TLS configuration (a renewed certificate, a new CA
    /// bundle) without a restart: new connections use it at once.
    /// Connections already open whose peer's certificate the new
    /// configuration no longer trusts are closed (their peers reconnect,
    /// and must show a certificate it trusts); the others go on. Returns how
    /// many were closed. Fails, changing nothing, if the transport is
    /// insecure or the certificate does not name this node.
    pub fn reload_tls(&self, tls: TlsConfig) -> Result<usize, TransportError> {
        if self.shared.tls().is_none() {
            return Err(TransportError::Other(
                "this transport runs without TLS: TLS cannot be turned on by a reload".into(),
            ));
        }
        tls.check_node(self.shared.cluster(), self.shared.node_id())
            .map_err(|e| TransportError::Other(format!("TLS reload refused: {e}")))?;
        *self
            .shared
            .tls
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(tls.clone());
        bump(&self.shared.counters.tls_reloads);
        let mut sessions: Vec<Arc<Session>> = lock(&self.shared.accepted)
            .sessions
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        sessions.extend(
            lock(&self.shared.connections)
                .iter()
                .filter_map(Weak::upgrade)
                .filter_map(|c| c.current()),
        );
        let mut closed = 0;
        for session in sessions {
            let Some(auth) = &session.auth else { continue };
            if let Err(reason) = tls.verify_peer(&auth.chain, auth.server_name.as_ref()) {
                tracing::warn!(
                    peer = %session.peer,
                    node = %session.hello.node,
                    %reason,
                    "closing a connection: after the TLS reload the peer's certificate is no longer trusted"
                );
                bump(&self.shared.counters.closed_by_reload);
                session.close(&format!("your certificate is no longer trusted: {reason}"));
                closed += 1;
            }
        }
        tracing::info!(
            serial = %tls.certificate().serial,
            closed,
            "TLS configuration reloaded"
        );
        Ok(closed)
    }

    /// The counters so far.
    pub fn stats(&self) -> TcpStats {
        self.shared.counters.snapshot()
    }

    /// The addresses this transport listens at.
    pub fn listening(&self) -> Vec<String> {
        lock(&self.shared.listening)
            .iter()
            .map(|l| l.address.clone())
            .collect()
    }

    /// Connects to `address` ([`Transport::connect`]), with the concrete
    /// type. Fails if the peer cannot be reached or refuses the handshake.
    pub async fn connect_to(&self, address: &str) -> Result<client::TcpConnection, TransportError> {
        client::TcpConnection::open(self.shared.clone(), address).await
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        drop(self.shared.stop());
    }
}

#[async_trait]
impl Transport for TcpTransport {
    /// Opens a TCP connection to `address` (`host:port`) and does the
    /// handshake, within [`TcpOptions::connect_timeout`]: fails with
    /// [`TransportError::Unreachable`] if nothing accepts there, if the
    /// handshake fails or is refused (the reason says why, e.g. `cluster
    /// mismatch: ...`), or if it takes too long. If nothing accepts there
    /// but a peer announcing `address` opened a back channel to this
    /// transport, the connection goes over it.
    /// Takes the node's id and cluster id; refuses another node's or
    /// cluster's than the options named, a second node, and a certificate
    /// that does not name this node.
    fn bind_node(&self, node_id: &str, cluster: &str) -> Result<(), TransportError> {
        let options = &self.shared.options;
        let refuse = |what: &str, given: &str, node: &str| {
            Err(TransportError::Other(format!(
                "the TCP transport was made for {what} {given:?}, but the node using it is of {what} {node:?}: give the node's, or leave it empty in TcpOptions to take the node's"
            )))
        };
        if !options.node_id.is_empty() && options.node_id != node_id {
            return refuse("node", &options.node_id, node_id);
        }
        if !options.cluster.is_empty() && options.cluster != cluster {
            return refuse("cluster", &options.cluster, cluster);
        }
        if let Some(tls) = self.shared.tls() {
            tls.check_node(cluster, node_id)
                .map_err(|e| TransportError::Other(format!("TLS: {e}")))?;
        }
        let wanted = (node_id.to_owned(), cluster.to_owned());
        let bound = self.shared.identity.get_or_init(|| wanted.clone());
        if *bound != wanted {
            return Err(TransportError::Other(format!(
                "the TCP transport already serves node {:?} of cluster {:?}: one transport per node",
                bound.0, bound.1
            )));
        }
        Ok(())
    }

    async fn connect(&self, address: &str) -> Result<Arc<dyn Connection>, TransportError> {
        match client::TcpConnection::open(self.shared.clone(), address).await {
            Ok(connection) => Ok(Arc::new(connection)),
            Err(e) => match server::back_channel(&self.shared, address) {
                Some(connection) => Ok(Arc::new(connection)),
                None => Err(e),
            },
        }
    }

    /// Binds `address` and accepts connections there; returns the address
    /// bound. Fails with [`TransportError::AddressInUse`] if the address is
    /// taken, [`TransportError::Other`] if it cannot be bound otherwise.
    async fn listen(
        &self,
        address: &str,
        handler: Arc<dyn Handler>,
    ) -> Result<String, TransportError> {
        server::listen(&self.shared, address, handler).await
    }

    /// Stops listening and closes every connection (see the [module
    /// documentation](self)). Idempotent; the transport can be used again.
    async fn shutdown(&self) -> Result<(), TransportError> {
        for task in self.shared.stop() {
            let _ = task.await;
        }
        Ok(())
    }

    /// [`TcpOptions::max_entry_bytes`].
    fn max_entry_bytes(&self) -> Option<usize> {
        Some(self.shared.options.max_entry_bytes())
    }
}

pub use client::TcpConnection;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Envelope, Reply, Request};
    use bytes::Bytes;

    struct Echo;

    #[async_trait]
    impl Handler for Echo {
        async fn handle(&self, envelope: Envelope) -> Reply {
            match envelope.request {
                Request::Read(payload) => Reply::Output(payload),
                _ => Reply::Ack,
            }
        }
    }

    fn read(payload: &[u8]) -> Envelope {
        Envelope {
            cluster: 1,
            from: Arc::from("test"),
            request: Request::Read(Bytes::copy_from_slice(payload)),
        }
    }

    /// Waits until both directions balance: what one side wrote, the other
    /// read.
    async fn balanced(a: &TcpTransport, b: &TcpTransport) -> (TcpStats, TcpStats) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (sa, sb) = (a.stats(), b.stats());
            if sa.bytes_sent == sb.bytes_received && sb.bytes_sent == sa.bytes_received {
                return (sa, sb);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "byte counters never balanced: {sa:?} vs {sb:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_are_counted_both_ways() {
        let server = TcpTransport::new(TcpOptions::new("b", "c").insecure()).unwrap();
        let client = TcpTransport::new(TcpOptions::new("a", "c").insecure()).unwrap();
        assert_eq!(
            (client.stats().bytes_sent, client.stats().bytes_received),
            (0, 0)
        );
        let address = server.listen("127.0.0.1:0", Arc::new(Echo)).await.unwrap();
        let connection = client.connect(&address).await.unwrap();
        // The handshakes went both ways.
        let (after_hello, _) = balanced(&client, &server).await;
        assert!(after_hello.bytes_sent > 0 && after_hello.bytes_received > 0);

        let payload = vec![9u8; 100_000];
        let reply = connection.invoke(read(&payload)).await.unwrap();
        assert_eq!(reply, Reply::Output(Bytes::from(payload)));
        let (after, _) = balanced(&client, &server).await;
        // At least the payload went out and came back.
        assert!(
            after.bytes_sent - after_hello.bytes_sent >= 100_000,
            "{after:?}"
        );
        assert!(
            after.bytes_received - after_hello.bytes_received >= 100_000,
            "{after:?}"
        );
        assert_eq!(after.requests_sent, 1);
        connection.close().await.unwrap();
        server.shutdown().await.unwrap();
    }
}
