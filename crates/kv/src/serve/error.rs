//! Why `raft-kv serve` did not start, or stopped on its own: typed errors
//! whose [`StartErrorKind`] a caller matches on, and the exit codes that
//! carry those kinds to a script or a supervisor (and to
//! [`crate::local`], which tells a port taken by another process from a
//! real failure by the code alone).
//!
//! `raft-kv serve` exits with 0 after a clean stop, with
//! [`StartErrorKind::exit_code`] for a start that failed, with
//! [`EXIT_STORAGE_FAILED`] when its storage failed while it served, and with
//! [`EXIT_OTHER`] for anything else.
//! [`exit_codes_help`] is the table `raft-kv serve --help` ends with (and
//! the README shows).

use std::fmt::{self, Write as _};
use std::io;
use std::path::{Path, PathBuf};

use raft_node::persistence::PersistenceError;
use raft_node::tls::TlsError;
use raft_node::{NodeError, TransportError};

use crate::datadir::MembersMismatch;

/// The exit code of a `raft-kv serve` that stopped cleanly.
pub const EXIT_STOPPED: u8 = 0;
/// The exit code of an error of none of the kinds (the runtime did not
/// start, say).
pub const EXIT_OTHER: u8 = 1;
/// The exit code of a node that stopped acknowledging because its storage
/// failed while it served (a full disk, a failed fsync).
pub const EXIT_STORAGE_FAILED: u8 = 11;

/// One of the listeners of `raft-kv serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// RESP clients in plaintext (`--client-addr`).
    Client,
    /// RESP clients over TLS (`--tls-port`, `--tls-addr`).
    Tls,
    /// Raft peers (`--peer-addr`).
    Peer,
    /// The admin HTTP endpoint (`--admin-addr`).
    Admin,
}

impl Listener {
    /// What listens there, as a message names it.
    pub fn what(self) -> &'static str {
        match self {
            Listener::Client => "clients",
            Listener::Tls => "TLS clients",
            Listener::Peer => "peers",
            Listener::Admin => "the admin endpoint",
        }
    }

    /// The flag(s) that set its address.
    pub fn flag(self) -> &'static str {
        match self {
            Listener::Client => "--client-addr",
            Listener::Tls => "--tls-port, --tls-addr",
            Listener::Peer => "--peer-addr",
            Listener::Admin => "--admin-addr",
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what())
    }
}

/// Whose TLS material failed to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMaterial {
    /// The node's certificates directory (`--certs-dir`): mutual TLS
    /// between nodes.
    Peer {
        /// The directory.
        certs_dir: PathBuf,
    },
    /// The TLS port's certificate, key and CA (`--tls-cert-file`, ...).
    ClientPort,
    /// The admin endpoint's (`--admin-tls`).
    Admin,
}

impl fmt::Display for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsMaterial::Peer { certs_dir } => write!(f, "--certs-dir {}", certs_dir.display()),
            TlsMaterial::ClientPort => f.write_str("the TLS port (--tls-port, --tls-addr)"),
            TlsMaterial::Admin => f.write_str("--admin-tls"),
        }
    }
}

/// What kind of failure a [`StartError`] is: what a caller matches on, and
/// what the exit code of `raft-kv serve` says ([`StartErrorKind::exit_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartErrorKind {
    /// A flag, the config file or a setting (the descriptor limit, a
    /// test's environment variable) is wrong.
    Setting,
    /// Another process listens on one of the node's addresses: choose
    /// another, or stop that process (a free port picked a moment ago
    /// may have been taken meanwhile: pick again).
    AddressInUse,
    /// An address cannot be listened on for another reason (it is not
    /// this host's, a privileged port).
    Listen,
    /// Another raft-kv process holds the data directory's lock.
    DataDirLocked,
    /// The data directory cannot be used: a file in its place, no
    /// permission, a read-only file system, an I/O error.
    DataDirUnusable,
    /// The data directory belongs to another node or cluster, or the
    /// flags contradict the state it holds.
    DataDirMismatch,
    /// The store in the data directory is damaged.
    StoreCorrupt,
    /// TLS material is missing, unreadable, invalid, or not this node's.
    Tls,
    /// The Raft node did not start for another reason.
    Node,
}

impl StartErrorKind {
    /// Every kind, in the order of their exit codes.
    pub const ALL: [StartErrorKind; 9] = [
        StartErrorKind::Setting,
        StartErrorKind::AddressInUse,
        StartErrorKind::Listen,
        StartErrorKind::DataDirLocked,
        StartErrorKind::DataDirUnusable,
        StartErrorKind::DataDirMismatch,
        StartErrorKind::StoreCorrupt,
        StartErrorKind::Tls,
        StartErrorKind::Node,
    ];

    /// The exit code of `raft-kv serve` for a start that failed so (2 is
    /// also clap's for a flag it cannot parse).
    pub const fn exit_code(self) -> u8 {
        match self {
            StartErrorKind::Setting => 2,
            StartErrorKind::AddressInUse => 3,
            StartErrorKind::Listen => 4,
            StartErrorKind::DataDirLocked => 5,
            StartErrorKind::DataDirUnusable => 6,
            StartErrorKind::DataDirMismatch => 7,
            StartErrorKind::StoreCorrupt => 8,
            StartErrorKind::Tls => 9,
            StartErrorKind::Node => 10,
        }
    }

    /// The kind an exit code of `raft-kv serve` stands for, if it stands
    /// for one.
    pub fn from_exit_code(code: i32) -> Option<StartErrorKind> {
        StartErrorKind::ALL
            .into_iter()
            .find(|k| i32::from(k.exit_code()) == code)
    }

    /// The kind in a few words, as `--help` lists it.
    pub fn summary(self) -> &'static str {
        match self {
            StartErrorKind::Setting => "a flag, the config file or a setting is wrong",
            StartErrorKind::AddressInUse => {
                "an address (client, TLS, peer or admin) is in use by another process"
            }
            StartErrorKind::Listen => {
                "an address cannot be listened on (not this host's, no permission)"
            }
            StartErrorKind::DataDirLocked => {
                "the data directory is in use by another raft-kv process"
            }
            StartErrorKind::DataDirUnusable => {
                "the data directory cannot be used (a file, permissions, read-only, I/O error)"
            }
            StartErrorKind::DataDirMismatch => {
                "the data directory belongs to another node or cluster, or --members contradicts it"
            }
            StartErrorKind::StoreCorrupt => "the store in the data directory is damaged",
            StartErrorKind::Tls => {
                "TLS material is missing, unreadable, invalid or not this node's"
            }
            StartErrorKind::Node => "the Raft node did not start",
        }
    }
}

/// The exit codes of `raft-kv serve`, one a line, as `--help` ends with
/// them and the README lists them.
pub fn exit_codes_help() -> String {
    let mut lines = vec![
        (EXIT_STOPPED, "stopped cleanly (SIGTERM, Ctrl-C)"),
        (EXIT_OTHER, "another error"),
    ];
    lines.extend(StartErrorKind::ALL.map(|k| (k.exit_code(), k.summary())));
    lines.push((
        EXIT_STORAGE_FAILED,
        "the node stopped while serving: its storage failed (a full disk, a failed fsync)",
    ));
    let mut out = String::from("Exit codes:\n");
    for (code, meaning) in lines {
        let _ = writeln!(out, "  {code:>2}  {meaning}");
    }
    out.truncate(out.trim_end().len());
    out
}

/// Why a server did not start; the text says what to fix, the
/// [`kind`](StartError::kind) what a caller may match on.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error("{reason}")]
    Setting {
        /// Which (a flag, an environment variable, `ulimit -n`).
        setting: &'static str,
        /// What is wrong with it, naming it and its value.
        reason: String,
    },
    /// Cannot listen on an address (in use: [`StartErrorKind::AddressInUse`]).
    #[error("cannot listen for {listener} on {address} ({}): {source}", .listener.flag())]
    Listen {
        /// Which listener.
        listener: Listener,
        /// The address it was to listen on.
        address: String,
        /// Why not.
        source: io::Error,
    },
    /// Another raft-kv process holds the data directory's lock.
    #[error(
        "the data directory {} is in use by another raft-kv process{}: two processes must not share a store",
        .dir.display(),
        .holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    DataDirLocked {
        /// The data directory.
        dir: PathBuf,
        /// The process that holds the lock, as its lock file says.
        holder: Option<u32>,
    },
    /// `--data-dir`, or a directory above it, is a file.
    #[error("{}", not_a_directory(.dir, .file))]
    NotADirectory {
        /// The data directory.
        dir: PathBuf,
        /// The file in its way (`dir` itself, or one above it).
        file: PathBuf,
    },
    /// Something in the data directory cannot be read, made or written.
    #[error("{}", data_dir_io(.dir, .action, .path, .source))]
    DataDirIo {
        /// The data directory.
        dir: PathBuf,
        /// What was being done (`create`, `read`, `write`, ...).
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// `--id` is not the id kept in the data directory.
    #[error(
        "--id {given} does not match the id {stored} kept in {}: this data directory belongs to another node",
        .file.display()
    )]
    OtherNode {
        /// The id given.
        given: String,
        /// The id kept.
        stored: String,
        /// The file it is kept in.
        file: PathBuf,
    },
    /// `--cluster` is not the name kept in the data directory.
    #[error(
        "--cluster {given} does not match the cluster {stored} kept in {}: this data directory belongs to a node of cluster {stored}; leave --cluster out (or give --cluster {stored}), or give another --data-dir for a node of cluster {given}",
        .file.display()
    )]
    OtherCluster {
        /// The name given.
        given: String,
        /// The name kept.
        stored: String,
        /// The file it is kept in.
        file: PathBuf,
    },
    /// `--members` contradicts the state the node holds.
    #[error(transparent)]
    Members(#[from] MembersMismatch),
    /// The store could not be opened (or read): the typed
    /// [`PersistenceError`] says why.
    #[error("cannot open the store in {}: {source}", .path.display())]
    Store {
        /// The store's directory.
        path: PathBuf,
        /// Why.
        source: PersistenceError,
    },
    /// TLS material could not be loaded.
    #[error("{material}: {source}")]
    Tls {
        /// Whose.
        material: TlsMaterial,
        /// Why.
        source: TlsError,
    },
    /// The certificate in `--certs-dir` names another node or cluster.
    #[error(
        "--certs-dir {}: {} is not this node's: it does not name node {id:?} of cluster {cluster:?} (make this node's with `raft-kv cert create-node --id {id} --cluster {cluster} --host <its peer host>`)",
        .certs_dir.display(),
        crate::tls::NODE_CERT
    )]
    NotThisNodesCertificate {
        /// The certificates directory.
        certs_dir: PathBuf,
        /// This node's id.
        id: String,
        /// This node's cluster.
        cluster: String,
    },
    /// The TCP transport refused its options.
    #[error("invalid transport options: {0}")]
    Transport(#[source] TransportError),
    /// The Raft node did not start.
    #[error("the node did not start: {0}")]
    Node(#[source] NodeError),
}

impl StartError {
    /// What kind of failure this is.
    pub fn kind(&self) -> StartErrorKind {
        match self {
            StartError::Setting { .. } => StartErrorKind::Setting,
            StartError::Listen { source, .. } if source.kind() == io::ErrorKind::AddrInUse => {
                StartErrorKind::AddressInUse
            }
            StartError::Listen { .. } => StartErrorKind::Listen,
            StartError::DataDirLocked { .. } => StartErrorKind::DataDirLocked,
            StartError::NotADirectory { .. } | StartError::DataDirIo { .. } => {
                StartErrorKind::DataDirUnusable
            }
            StartError::OtherNode { .. }
            | StartError::OtherCluster { .. }
            | StartError::Members(_) => StartErrorKind::DataDirMismatch,
            StartError::Store { source, .. } => match source {
                PersistenceError::Io(_) => StartErrorKind::DataDirUnusable,
                PersistenceError::Identity(_) => StartErrorKind::DataDirMismatch,
                PersistenceError::Corrupt(_) | PersistenceError::Invalid(_) => {
                    StartErrorKind::StoreCorrupt
                }
            },
            StartError::Tls { .. } | StartError::NotThisNodesCertificate { .. } => {
                StartErrorKind::Tls
            }
            StartError::Transport(_) | StartError::Node(_) => StartErrorKind::Node,
        }
    }

    /// The exit code of `raft-kv serve` for this error.
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }

    /// Why `doing` failed on `path` in (or above) the data directory `dir`:
    /// a [`StartError::NotADirectory`] when a file stands where a
    /// directory should, else a [`StartError::DataDirIo`].
    pub fn data_dir(dir: &Path, action: &'static str, path: &Path, source: io::Error) -> Self {
        if matches!(
            source.kind(),
            io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists
        ) {
            if let Some(file) = first_non_directory(dir) {
                return StartError::NotADirectory {
                    dir: dir.to_path_buf(),
                    file,
                };
            }
        }
        StartError::DataDirIo {
            dir: dir.to_path_buf(),
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The error of a node that did not start, sorted: the peer address in
    /// use, the store, or the node itself.
    pub fn from_node(e: NodeError, store: &Path) -> Self {
        match e {
            NodeError::Transport(TransportError::AddressInUse(address)) => StartError::Listen {
                listener: Listener::Peer,
                address,
                // The transport keeps the kind of the operating system's
                // error (EADDRINUSE), not the error itself.
                source: io::Error::from(io::ErrorKind::AddrInUse),
            },
            NodeError::Persistence(source) => StartError::Store {
                path: store.to_path_buf(),
                source,
            },
            other => StartError::Node(other),
        }
    }
}

/// The first path from the root down to `dir` that exists and is not a
/// directory.
fn first_non_directory(dir: &Path) -> Option<PathBuf> {
    let mut ancestors: Vec<&Path> = dir.ancestors().collect();
    ancestors.reverse();
    ancestors
        .into_iter()
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| std::fs::metadata(a).is_ok_and(|m| !m.is_dir()))
        .map(Path::to_path_buf)
}

fn not_a_directory(dir: &Path, file: &Path) -> String {
    if file == dir {
        format!("--data-dir {} is a file, not a directory", dir.display())
    } else {
        format!(
            "--data-dir {}: {} is a file, not a directory",
            dir.display(),
            file.display()
        )
    }
}

/// Why `action` failed on `path` in the data directory `dir`, said so that
/// the operator knows what to fix.
fn data_dir_io(dir: &Path, action: &str, path: &Path, e: &io::Error) -> String {
    let shown = dir.display();
    match e.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "--data-dir {shown}: permission denied: cannot {action} {} (the user running raft-kv needs to read and write it: check the owner and mode of the directory and of those above it)",
            path.display()
        ),
        io::ErrorKind::ReadOnlyFilesystem => format!(
            "--data-dir {shown}: cannot {action} {}: the file system is read-only",
            path.display()
        ),
        _ => format!("--data-dir {shown}: cannot {action} {}: {e}", path.display()),
    }
}

/// Why `raft-kv serve` ended with an error: it did not start, or its node
/// stopped while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The server did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The node stopped acknowledging because its storage failed (a full
    /// disk, a failed fsync): [`NodeError::storage_error`] has the typed
    /// [`PersistenceError`].
    #[error("{0}")]
    StorageFailed(NodeError),
}

impl ServeError {
    /// The exit code of `raft-kv serve` for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::Start(e) => e.exit_code(),
            ServeError::StorageFailed(_) => EXIT_STORAGE_FAILED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_is_distinct_and_listed() {
        let mut codes: Vec<u8> = StartErrorKind::ALL.map(StartErrorKind::exit_code).to_vec();
        codes.extend([EXIT_STOPPED, EXIT_OTHER, EXIT_STORAGE_FAILED]);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), codes.len(), "{codes:?}");
        let help = exit_codes_help();
        for k in StartErrorKind::ALL {
            assert_eq!(
                StartErrorKind::from_exit_code(k.exit_code().into()),
                Some(k)
            );
            let line = format!("  {:>2}  {}", k.exit_code(), k.summary());
            assert!(help.lines().any(|l| l == line), "{line:?} in\n{help}");
        }
        for code in [EXIT_STOPPED, EXIT_OTHER, EXIT_STORAGE_FAILED] {
            assert_eq!(StartErrorKind::from_exit_code(code.into()), None);
            assert!(
                help.contains(&format!("\n  {code:>2}  ")),
                "{code} in\n{help}"
            );
        }
    }

    #[test]
    fn a_listener_in_use_is_its_own_kind() {
        let e = StartError::Listen {
            listener: Listener::Admin,
            address: "127.0.0.1:8001".into(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert_eq!(e.kind(), StartErrorKind::AddressInUse);
        assert_eq!(e.exit_code(), 3);
        assert!(
            e.to_string().starts_with(
                "cannot listen for the admin endpoint on 127.0.0.1:8001 (--admin-addr): "
            ),
            "{e}"
        );
        let e = StartError::Listen {
            listener: Listener::Client,
            address: "10.9.9.9:6379".into(),
            source: io::Error::from(io::ErrorKind::AddrNotAvailable),
        };
        assert_eq!(e.kind(), StartErrorKind::Listen);
    }

    #[test]
    fn node_errors_are_sorted_by_what_failed() {
        let store = Path::new("/data/raft");
        let e = StartError::from_node(
            NodeError::Transport(TransportError::AddressInUse("127.0.0.1:7001".into())),
            store,
        );
        assert!(
            matches!(&e, StartError::Listen { listener: Listener::Peer, address, .. } if address == "127.0.0.1:7001"),
            "{e:?}"
        );
        assert_eq!(e.kind(), StartErrorKind::AddressInUse);
        let e = StartError::from_node(
            NodeError::Persistence(PersistenceError::corrupt("a torn record")),
            store,
        );
        assert_eq!(e.kind(), StartErrorKind::StoreCorrupt);
        assert!(
            e.to_string()
                .starts_with("cannot open the store in /data/raft: "),
            "{e}"
        );
        let e = StartError::from_node(NodeError::ShuttingDown, store);
        assert_eq!(e.kind(), StartErrorKind::Node);
    }

    #[test]
    fn store_and_tls_errors_have_their_kinds() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let e = StartError::Store {
            path: PathBuf::from("/data/raft"),
            source: PersistenceError::io("opening", "/data/raft/log-1", denied),
        };
        assert_eq!(e.kind(), StartErrorKind::DataDirUnusable);
        let e = StartError::Tls {
            material: TlsMaterial::Peer {
                certs_dir: PathBuf::from("/etc/raft-kv/certs"),
            },
            source: TlsError::NoCertificate {
                what: "/etc/raft-kv/certs/ca.crt".into(),
            },
        };
        assert_eq!(e.kind(), StartErrorKind::Tls);
        assert_eq!(e.exit_code(), 9);
        assert!(
            e.to_string().starts_with(
                "--certs-dir /etc/raft-kv/certs: /etc/raft-kv/certs/ca.crt: no PEM certificate"
            ),
            "{e}"
        );
        let e = StartError::NotThisNodesCertificate {
            certs_dir: PathBuf::from("c"),
            id: "n5".into(),
            cluster: "shop".into(),
        };
        assert_eq!(e.kind(), StartErrorKind::Tls);
        assert!(
            e.to_string()
                .contains("is not this node's: it does not name node \"n5\""),
            "{e}"
        );
    }

    #[test]
    fn data_directory_problems_say_what_to_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let e = StartError::data_dir(tmp.path(), "create", &tmp.path().join("LOCK"), denied);
        assert_eq!(e.kind(), StartErrorKind::DataDirUnusable);
        let e = e.to_string();
        assert!(
            e.contains("permission denied: cannot create") && e.contains("owner and mode"),
            "{e}"
        );
    }
}
