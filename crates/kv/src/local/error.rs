//! Why a local cluster, or one of its nodes, did not start or stop: typed,
//! so that [`LocalCluster::start`](super::LocalCluster::start) tries again
//! on new ports exactly when a node's `raft-kv serve` exited because an
//! address was in use (its exit code, not its text, says so).

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use super::{NodeInfo, HOST};
use crate::cert::CertError;
use crate::serve::StartErrorKind;

/// Why a local cluster or one of its nodes could not be started or
/// stopped; the text says what happened and shows the node's log.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A cluster of no nodes was asked for.
    #[error("a cluster needs at least one node")]
    NoNodes,
    /// The running executable, to start as nodes, cannot be found.
    #[error("cannot find the raft-kv executable to run as nodes: {0}")]
    Executable(#[source] std::io::Error),
    /// No free port could be bound.
    #[error("cannot find a free port on {HOST}: {0}")]
    NoFreePort(#[source] std::io::Error),
    /// A port of a chosen range ([`Ports::From`](super::Ports::From)) is taken.
    #[error("port {port} ({what}) is taken on {HOST}: {source}; is another raft-kv or redis-server running? Choose other ports")]
    PortTaken {
        /// The port.
        port: u16,
        /// Which node's which port it was to be.
        what: String,
        /// Why it cannot be bound.
        source: std::io::Error,
    },
    /// A range of ports runs past 65535.
    #[error("--{flag} {first} leaves no room for {nodes} nodes (ports end at 65535)")]
    PortRange {
        /// The flag of the range (`port`, `peer-port`, `admin-port`).
        flag: &'static str,
        /// Its first port.
        first: u16,
        /// How many nodes.
        nodes: usize,
    },
    /// Two ranges of ports overlap.
    #[error("port {port} would be both {first} and {second}: choose --port, --peer-port and --admin-port ranges that do not overlap")]
    PortsOverlap {
        /// The port.
        port: u16,
        /// One use of it.
        first: String,
        /// The other.
        second: String,
    },
    /// The cluster's directory cannot be made.
    #[error("cannot create the directory {}: {source}", .dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster's CA or a node's certificate cannot be made.
    #[error("cannot make the cluster's certificates: {0}")]
    Certificates(#[source] CertError),
    /// A node's log file cannot be opened.
    #[error("cannot open the log file {} of {id}: {source}", .log.display())]
    LogFile {
        /// The node.
        id: String,
        /// Its log file.
        log: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A node's process cannot be started.
    #[error("cannot start {id} ({}): {source}", .binary.display())]
    Spawn {
        /// The node.
        id: String,
        /// The executable.
        binary: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Nodes were started but did not listen (at least one).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    NotReady(Vec<NodeNotReady>),
    /// A node did not exit after SIGKILL.
    #[error("{id} did not exit within 10 s of SIGKILL")]
    KillTimeout {
        /// The node.
        id: String,
    },
    /// A node did not exit after SIGTERM, then SIGKILL.
    #[error("{id} did not exit after SIGTERM and SIGKILL")]
    StopTimeout {
        /// The node.
        id: String,
    },
    /// Waiting for a node to exit failed.
    #[error("waiting for {id} to exit: {source}")]
    Wait {
        /// The node.
        id: String,
        /// Why.
        source: std::io::Error,
    },
}

impl LocalError {
    /// Whether a node did not start because one of its addresses was in
    /// use (its `raft-kv serve` exited with
    /// [`StartErrorKind::AddressInUse`]'s code): a free port taken by
    /// another process between the choice and the start.
    pub fn is_address_in_use(&self) -> bool {
        match self {
            LocalError::NotReady(nodes) => nodes
                .iter()
                .any(|n| n.start_error() == Some(StartErrorKind::AddressInUse)),
            _ => false,
        }
    }
}

/// Why a started node is not ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// It exited before it printed its "clients on" line.
    #[error("exited before listening")]
    Exited,
    /// Its output could not be read.
    #[error("cannot read its output: {0}")]
    Output(#[source] std::io::Error),
    /// It printed no "clients on" line in time.
    #[error("did not start listening within {0:?}")]
    Timeout(Duration),
}

/// A node that was started and did not listen: why, how it exited, and
/// the end of its log.
#[derive(Debug, thiserror::Error)]
#[error(
    "node {} (clients on {}, peers on {}) {why}{}. The end of its log {}:\n{log_tail}",
    .info.id,
    .info.client_addr,
    .info.peer_addr,
    exit_shown(.status),
    .info.log.display()
)]
pub struct NodeNotReady {
    /// The node.
    pub info: NodeInfo,
    /// Why it is not ready.
    pub why: NotReady,
    /// How it exited; `None` if it had to be killed.
    pub status: Option<ExitStatus>,
    /// The last lines of its log, indented.
    pub log_tail: String,
}

impl NodeNotReady {
    /// Why `raft-kv serve` did not start, as its exit code says; `None`
    /// when it did not exit with one of [`StartErrorKind`]'s codes.
    pub fn start_error(&self) -> Option<StartErrorKind> {
        self.status?.code().and_then(StartErrorKind::from_exit_code)
    }
}

/// ` (exit status: 3: an address ... is in use ...)`, or nothing.
fn exit_shown(status: &Option<ExitStatus>) -> String {
    let Some(s) = status else {
        return String::new();
    };
    match s.code().and_then(StartErrorKind::from_exit_code) {
        Some(kind) => format!(" ({s}: {})", kind.summary()),
        None => format!(" ({s})"),
    }
}
