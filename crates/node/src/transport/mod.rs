//! The Transport API (the seed's): a transport connects to a peer described
//! in its own terms (a name for the in-memory transport, `host:port` for
//! TCP) and returns a [`Connection`] with `invoke`, `listen` and `close`;
//! the accepting side is [`Transport::listen`].
//!
//! What travels is an [`Envelope`]: the sender's cluster id and address and
//! one [`Request`]. A transport that moves bytes encodes envelopes (the TCP
//! transport has a compact binary encoding); the in-memory transport hands
//! them over as they are.

#[cfg(any(test, feature = "testkit"))]
pub mod faulty;
pub mod memory;
pub mod tcp;

use std::sync::Arc;
use std::time::Duration;

use crate::error::UnknownKind;
use async_trait::async_trait;
use bytes::Bytes;

/// One request between nodes, with the sender's cluster and address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Envelope {
    /// The sender's cluster (the hash of its cluster id string, as carried by
    /// every Raft message): a node refuses envelopes of another cluster.
    pub cluster: u64,
    /// Where the sender listens, in the transport's terms: how to reply to a
    /// node that is not (yet) in this node's configuration, such as a leader
    /// adding this node. Empty when the sender does not listen.
    pub from: Arc<str>,
    /// What is asked.
    pub request: Request,
}

/// The message types: the Raft RPCs and the client calls forwarded to the
/// leader.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Request {
    /// A Raft message (append entries, vote, pre-vote, install snapshot
    /// chunk, timeout-now, read index, and their replies). One-way: posted
    /// where the connection can ([`Connection::post`]), else invoked and
    /// answered with [`Reply::Ack`]; Raft's own replies travel as requests
    /// too.
    Raft(raft_core::Message),
    /// A command forwarded to the leader; the reply carries its output.
    Command(Bytes),
    /// A linearizable read forwarded to the leader; the reply carries its
    /// result.
    Read(Bytes),
    /// Add the node at `address` (forwarded to the leader).
    Join {
        /// The joining node's address, in the transport's terms.
        address: String,
    },
    /// Remove the node with this id (forwarded to the leader).
    Leave {
        /// The node's id.
        id: String,
    },
    /// Who are you? Answered with [`Reply::Hello`].
    Hello,
    /// A command of a client session forwarded to the leader: applied
    /// once however often it reaches the log (a retry is answered with the
    /// first reply); the reply carries its output.
    SessionCommand {
        /// The session (the index of the entry that registered it).
        session: u64,
        /// The command's number in its session.
        seq: u64,
        /// Every command of the session numbered below `floor` was
        /// answered or given up by its caller: the session may forget
        /// their replies.
        floor: u64,
        /// The command for the state machine.
        command: Bytes,
    },
    /// Register a client session, forwarded to the leader; the reply
    /// carries its id (8 bytes, little-endian).
    OpenSession,
    /// A client call (a command, read, join or leave forwarded to the
    /// leader) with the time its caller still waits for it: the node that
    /// handles it takes at most that long, and a transport waits for its
    /// reply at least that long (beyond its own request timeout).
    Within {
        /// How long the caller still waits.
        within: Duration,
        /// The call.
        call: Box<Request>,
    },
}

impl Request {
    /// The message type's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Raft(m) => m.body.kind(),
            Request::Command(_) | Request::SessionCommand { .. } | Request::OpenSession => {
                "command"
            }
            Request::Read(_) => "read",
            Request::Join { .. } => "join",
            Request::Leave { .. } => "leave",
            Request::Hello => "hello",
            Request::Within { call, .. } => call.kind(),
        }
    }

    /// How long the caller of a [`Request::Within`] still waits; `None`
    /// for other requests (they take the transport's request timeout).
    pub fn within(&self) -> Option<Duration> {
        match self {
            Request::Within { within, .. } => Some(*within),
            _ => None,
        }
    }

    /// The time a transport waits for the reply to this request: its own
    /// request `timeout`, or longer for a call that carries its own
    /// deadline ([`Request::Within`]), which a transport never cuts short.
    pub fn reply_timeout(&self, timeout: Duration) -> Duration {
        self.within().map_or(timeout, |w| w.max(timeout))
    }
}

/// Why a node failed a client call it handled for a peer
/// ([`Reply::Failed`]): what the caller may do next. The wire carries the
/// code; the message that goes with it is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ErrorCode {
    /// The node knows no leader (an election is under way): the call took
    /// no effect; retry once a leader is known.
    NoLeader,
    /// The node is not the leader: the call took no effect; retry on the
    /// leader.
    NotLeader,
    /// The call cannot be done right now (a membership change is in flight,
    /// too much is waiting to commit, the node is starting or stopping): it
    /// took no effect; retry shortly.
    Retry,
    /// The call was refused and retrying it fails the same way; it took no
    /// effect.
    Refused,
    /// The call may or may not have taken effect, for the reason the kind
    /// gives (it timed out, leadership was lost before it committed, ...).
    /// On the wire, [`UnknownKind::Unspecified`] is number 5, as before
    /// kinds existed; a known kind is `0x40` plus its number, which a node
    /// of an earlier version reads as an outcome unknown (the cautious
    /// reading of any number it does not know).
    OutcomeUnknown(UnknownKind),
    /// The session of a [`Request::SessionCommand`] expired: the command
    /// was not applied; register a new session and send it again.
    SessionExpired,
}

/// The wire number of [`ErrorCode::OutcomeUnknown`] of the kind numbered 0:
/// the codes from here on are outcomes unknown, `0x40 + kind.number()`.
const UNKNOWN_KIND_BASE: u8 = 0x40;

impl ErrorCode {
    /// The code's number on the wire.
    pub fn number(self) -> u8 {
        match self {
            ErrorCode::NoLeader => 1,
            ErrorCode::NotLeader => 2,
            ErrorCode::Retry => 3,
            ErrorCode::Refused => 4,
            ErrorCode::OutcomeUnknown(UnknownKind::Unspecified) => 5,
            ErrorCode::OutcomeUnknown(kind) => UNKNOWN_KIND_BASE + kind.number(),
            ErrorCode::SessionExpired => 6,
        }
    }

    /// The code of a wire number; a number this version does not know is
    /// taken as an [`ErrorCode::OutcomeUnknown`] (the cautious reading), of
    /// [`UnknownKind::Unspecified`] unless it names a kind this version
    /// knows.
    pub fn from_number(number: u8) -> ErrorCode {
        match number {
            1 => ErrorCode::NoLeader,
            2 => ErrorCode::NotLeader,
            3 => ErrorCode::Retry,
            4 => ErrorCode::Refused,
            6 => ErrorCode::SessionExpired,
            n if n >= UNKNOWN_KIND_BASE => {
                ErrorCode::OutcomeUnknown(UnknownKind::from_number(n - UNKNOWN_KIND_BASE))
            }
            _ => ErrorCode::OutcomeUnknown(UnknownKind::Unspecified),
        }
    }
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Reply {
    /// Received (one-way requests).
    Ack,
    /// The output of a command or the result of a read.
    Output(Bytes),
    /// The answer to [`Request::Hello`].
    Hello {
        /// The node's id.
        id: String,
        /// The node's cluster id.
        cluster: String,
        /// True if the node holds no log and no membership yet: it can be
        /// added to a cluster safely.
        empty: bool,
        /// Where the node's clients reach it ([`crate::Options::client_address`]);
        /// empty if it serves no clients (or is of a version that does not
        /// say).
        client_address: String,
    },
    /// The request failed on the remote node; the message says why.
    Error(String),
    /// A client call failed on the node that handled it: the code says
    /// whether it may have taken effect and what to do next, the message
    /// says why for people.
    Failed {
        /// What kind of failure.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
    /// Refused: the sender is not a member of the configuration of the
    /// leader it asked (a forwarded command, read or leave from a node that
    /// was removed). The message says so for people.
    NotMember(String),
}

/// Why a transport operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No node listens at that address, or the connection to it could not
    /// be made: the request was not delivered.
    #[error("cannot reach {address}: {reason}")]
    Unreachable {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The connection broke after the request was sent: the peer may have
    /// handled it.
    #[error("lost the connection to {address} with the request in flight: {reason}")]
    Lost {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The request got no reply in time.
    #[error("no reply from {address} within {timeout_ms} ms")]
    Timeout {
        /// The address.
        address: String,
        /// The time waited.
        timeout_ms: u64,
    },
    /// The connection was closed.
    #[error("the connection to {address} is closed")]
    Closed {
        /// The address.
        address: String,
    },
    /// Another listener already uses that address.
    #[error("address {0} is already in use")]
    AddressInUse(String),
    /// The request is larger than the largest frame the connection carries
    /// (this side's maximum or the peer's, whichever is smaller): it was
    /// not sent, and the connection stays up.
    #[error("a request of {bytes} bytes exceeds the maximum frame size of {max_bytes} bytes")]
    TooLarge {
        /// The request's size, framed.
        bytes: usize,
        /// The largest frame the connection carries.
        max_bytes: usize,
    },
    /// Something else went wrong.
    #[error("transport error: {0}")]
    Other(String),
}

impl TransportError {
    /// True if the request certainly never reached the peer's handler
    /// (nothing listened there, the connection could not be made, the
    /// request was too large to send): sending it again cannot make the
    /// peer handle it twice. A timeout, a closed or a lost connection may
    /// come after the peer handled the request.
    pub fn not_delivered(&self) -> bool {
        matches!(
            self,
            TransportError::Unreachable { .. }
                | TransportError::AddressInUse(_)
                | TransportError::TooLarge { .. }
        )
    }
}

/// Handles requests arriving from peers.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    async fn handle(&self, envelope: Envelope) -> Reply;

    /// Takes a one-way request (a [`Request::Raft`] the peer posted, see
    /// [`Connection::post`]) at once, without a future, if the handler can:
    /// `Ok` if it took it, else the envelope back, for the transport to
    /// hand to [`Handler::handle`] (whose reply it drops). A transport may
    /// call it for a posted request instead of `handle`; the default takes
    /// nothing. It must not block: a handler that would wait (its queue is
    /// full) gives the envelope back.
    fn post(&self, envelope: Envelope) -> Result<(), Envelope> {
        Err(envelope)
    }
}

/// A way to reach peers and be reached by them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), raft_node::TransportError> {
/// use std::sync::Arc;
/// use async_trait::async_trait;
/// use raft_node::transport::{Envelope, Handler, Reply, Request, Transport};
/// use raft_node::MemoryNetwork;
///
/// struct Echo;
/// #[async_trait]
/// impl Handler for Echo {
///     async fn handle(&self, envelope: Envelope) -> Reply {
///         match envelope.request {
///             Request::Command(bytes) => Reply::Output(bytes),
///             _ => Reply::Error("only commands".into()),
///         }
///     }
/// }
///
/// let net = MemoryNetwork::new();
/// let server = net.transport("server");
/// server.listen("server", Arc::new(Echo)).await?;
/// let connection = net.transport("client").connect("server").await?;
/// let envelope = Envelope {
///     cluster: 1,
///     from: "client".into(),
///     request: Request::Command("hi".into()),
/// };
/// assert_eq!(connection.invoke(envelope).await?, Reply::Output("hi".into()));
/// connection.close().await?;
/// # Ok(()) }
/// ```
///
/// The [guide](crate::guide) writes a transport of its own and checks it
/// with the conformance kit.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Connects to the peer at `address` (in this transport's terms).
    /// Connecting may be lazy: an unreachable peer may only show up as an
    /// error on the first `invoke`.
    async fn connect(&self, address: &str) -> Result<Arc<dyn Connection>, TransportError>;

    /// Accepts connections at `address`: every request that arrives is
    /// answered by `handler`. Returns once listening, with the address
    /// actually bound (for TCP, port 0 becomes the port the system chose).
    async fn listen(
        &self,
        address: &str,
        handler: Arc<dyn Handler>,
    ) -> Result<String, TransportError>;

    /// Stops accepting connections (the node is shutting down).
    async fn shutdown(&self) -> Result<(), TransportError>;

    /// Tells the transport which node it serves, before the node listens
    /// or connects: [`crate::Node::new`] calls it once the node's id (given,
    /// stored or generated) and cluster id are known, so that a transport
    /// that needs them (the TCP transport's handshake and certificate
    /// checks) need not be told them again when it is made. A transport
    /// made for another node or cluster refuses. The default accepts.
    fn bind_node(&self, node_id: &str, cluster: &str) -> Result<(), TransportError> {
        let _ = (node_id, cluster);
        Ok(())
    }

    /// The largest command, in bytes, whose log entry this transport can
    /// carry to a peer (alone in an append, with every header), or `None`
    /// if there is no limit (the default). A node refuses larger commands
    /// ([`crate::NodeError::EntryTooLarge`]) before they reach its log: an
    /// entry that cannot be sent would stall replication.
    fn max_entry_bytes(&self) -> Option<usize> {
        None
    }
}

/// What became of a [`Connection::post`].
#[derive(Debug)]
pub enum Posted {
    /// Handed to the connection: the peer gets it unless the connection
    /// breaks (a one-way message is neither answered nor retried).
    Sent,
    /// Not sent, for this reason.
    Failed(TransportError),
    /// Not sent: the connection cannot post it now; send it with `invoke`.
    Unsupported(Envelope),
}

/// A connection to one peer.
#[async_trait]
pub trait Connection: Send + Sync + 'static {
    /// Sends `envelope` and waits for the peer's reply (or an error on
    /// failure or timeout). Requests on one connection are delivered in the
    /// order in which their `invoke` futures were first polled: to pipeline,
    /// poll them in the order created (`FuturesUnordered` does); spawning a
    /// task per request does not keep the order.
    ///
    /// A request that carries its caller's deadline ([`Request::Within`])
    /// waits for its reply that long if it is longer than the transport's
    /// own request timeout ([`Request::reply_timeout`]). An error after
    /// which the peer cannot have handled the request is
    /// [`TransportError::Unreachable`] (or `TooLarge`); one after which it
    /// may have is another ([`TransportError::not_delivered`]): a node
    /// retries a forwarded command only after the former.
    async fn invoke(&self, envelope: Envelope) -> Result<Reply, TransportError>;

    /// Sends a one-way [`Request::Raft`] without waiting for, or getting,
    /// a reply, if the transport can at once: after the requests already
    /// under way on this connection, and before later ones. A transport
    /// that cannot (the default) gives the envelope back
    /// ([`Posted::Unsupported`]), to be sent with [`Connection::invoke`].
    fn post(&self, envelope: Envelope) -> Posted {
        Posted::Unsupported(envelope)
    }

    /// Listens for requests the peer sends back over this connection (the
    /// seed's `listen`): an optional capability for applications built on
    /// a transport, which the node itself never uses. Every node listens at
    /// its own address and every envelope carries its sender's address, so
    /// replies and requests in the other direction travel over the peer's
    /// own connections; a back channel would add a second way for messages
    /// to arrive, with its own ordering and its own authentication, for no
    /// gain in a cluster whose nodes all reach each other.
    ///
    /// A transport defines which requests arrive here; the in-memory one
    /// delivers what the peer sends to this connection's own address while
    /// nothing else listens there. The default drops `handler`: nothing
    /// arrives. The transport kit checks it only for transports that
    /// implement it ([`Kit::without_back_channel`] leaves it out).
    ///
    /// [`Kit::without_back_channel`]: crate::testkit::transport::Kit::without_back_channel
    fn listen(&self, handler: Arc<dyn Handler>) {
        drop(handler);
    }

    /// Closes the connection; later `invoke`s fail with
    /// [`TransportError::Closed`].
    async fn close(&self) -> Result<(), TransportError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_unknown_kinds_are_codes_an_earlier_version_reads_as_outcome_unknown() {
        // An earlier version knows the numbers 1 to 6 and reads any other
        // as an outcome unknown.
        let earlier_known = 1..=6u8;
        for kind in UnknownKind::ALL {
            let code = ErrorCode::OutcomeUnknown(kind);
            let n = code.number();
            assert_eq!(ErrorCode::from_number(n), code, "{kind:?}");
            if kind == UnknownKind::Unspecified {
                assert_eq!(n, 5, "as before kinds existed");
            } else {
                assert!(!earlier_known.contains(&n), "{kind:?} is {n}");
            }
        }
        // What an earlier version sends, or a kind of a later one.
        assert_eq!(
            ErrorCode::from_number(5),
            ErrorCode::OutcomeUnknown(UnknownKind::Unspecified)
        );
        assert_eq!(
            ErrorCode::from_number(0x7f),
            ErrorCode::OutcomeUnknown(UnknownKind::Unspecified)
        );
        assert_eq!(ErrorCode::from_number(6), ErrorCode::SessionExpired);
    }
}
