//! The byte stream under a session: plain TCP, or TLS over TCP
//! ([`TcpOrTls`]). The handshake code reads and writes it whole; a session
//! splits it into a reader and a writer half.

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

/// The read half of a session's stream.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;

/// The write half of a session's stream.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection's stream (raft-node's [`TcpOrTls`]).
pub(crate) use crate::tls::TcpOrTls as PeerStream;

/// Splits a stream into halves that a reader and a writer task own: plain
/// TCP splits without a lock, TLS with tokio's split (one TLS state).
pub(crate) fn split(stream: PeerStream) -> (ReadHalf, WriteHalf) {
    match stream {
        PeerStream::Plain(tcp) => {
            let (read, write) = tcp.into_split();
            (Box::new(read), Box::new(write))
        }
        PeerStream::Tls(tls) => {
            let (read, write) = tokio::io::split(*tls);
            (Box::new(read), Box::new(write))
        }
    }
}

/// Who the peer of a TLS session proved to be, kept to check its messages
/// and to check its certificate again after a reload.
#[derive(Debug, Clone)]
pub(crate) struct PeerAuth {
    /// The core's number of the node the certificate names: every Raft
    /// message on the session must come from it.
    pub node: raft_core::NodeId,
    /// The chain the peer showed.
    pub chain: Vec<CertificateDer<'static>>,
    /// For a dialed session, the name its certificate was checked against
    /// (`None`: an accepted session, checked as a client).
    pub server_name: Option<ServerName<'static>>,
}
