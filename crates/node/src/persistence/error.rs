//! Why a store failed, typed so that a caller can tell a full disk from a
//! failing one, or a damaged file from a refused change, without reading
//! the message.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft_core::LogIndex;

use super::refusal::{IdentityMismatch, InvalidChange};

/// Why persistence failed.
///
/// ```
/// use std::io;
/// use raft_node::persistence::{IoFailure, PersistenceError};
///
/// let full = io::Error::from(io::ErrorKind::StorageFull);
/// let e = PersistenceError::Io(IoFailure::new("writing 4096 bytes to", "/data/segment-1", full));
/// assert!(e.is_storage_full());
/// assert_eq!(e.io_kind(), Some(io::ErrorKind::StorageFull));
/// match &e {
///     PersistenceError::Io(f) => assert_eq!(f.path(), Some(std::path::Path::new("/data/segment-1"))),
///     _ => unreachable!(),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersistenceError {
    /// The stored state is damaged: [`Corruption`] says where and what.
    #[error("stored state is corrupt: {0}")]
    Corrupt(Corruption),
    /// Reading or writing the store failed: [`IoFailure`] says what was
    /// being done, on which file, and the [`io::ErrorKind`]. After a failed
    /// write or sync the node stops acknowledging.
    #[error("storage I/O failed: {0}")]
    Io(IoFailure),
    /// The change does not fit what is stored (a gap in the log, a
    /// snapshot older than the stored one, ...): [`InvalidChange`] says
    /// what was expected and what was found.
    #[error("invalid change: {0}")]
    Invalid(InvalidChange),
    /// The store belongs to another node or cluster, or its records
    /// disagree on whose it is: [`IdentityMismatch`] says whose it is and
    /// whose it was expected to be.
    /// (Boxed: it is rare, and the error stays small.)
    #[error("identity mismatch: {0}")]
    Identity(Box<IdentityMismatch>),
}

impl PersistenceError {
    /// An [`PersistenceError::Io`]: `action` (a phrase that the path
    /// follows, such as `"fdatasync of"`) failed on `path` with `error`.
    pub fn io(action: impl Into<String>, path: impl AsRef<Path>, error: io::Error) -> Self {
        PersistenceError::Io(IoFailure::new(action, path, error))
    }

    /// A [`PersistenceError::Identity`] of `mismatch`.
    pub fn identity(mismatch: IdentityMismatch) -> Self {
        PersistenceError::Identity(Box::new(mismatch))
    }

    /// A [`PersistenceError::Corrupt`] with nothing but a description (add
    /// where with [`Corruption`]'s builders).
    pub fn corrupt(problem: impl Into<String>) -> Self {
        PersistenceError::Corrupt(Corruption::new(problem))
    }

    /// The kind of the I/O error behind a [`PersistenceError::Io`].
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            PersistenceError::Io(f) => Some(f.kind()),
            _ => None,
        }
    }

    /// True when the store failed because its file system is full (or the
    /// user's quota is used up): freeing space, then restarting, recovers.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, PersistenceError::Io(f) if f.is_storage_full())
    }
}

/// A failed I/O operation of a store: what was being done, on which file
/// (and where in it), and the operating system's error.
///
/// Cloning shares the underlying [`io::Error`]; two failures are equal when
/// they say the same (kind, action, file, offset, error text).
#[derive(Debug, Clone)]
pub struct IoFailure {
    kind: io::ErrorKind,
    action: String,
    path: Option<PathBuf>,
    offset: Option<u64>,
    source: Option<Arc<io::Error>>,
    fail_stop: bool,
}

impl IoFailure {
    /// `action` (a phrase that the path follows, such as
    /// `"writing 4096 bytes to"`) failed on `path` with `error`.
    pub fn new(action: impl Into<String>, path: impl AsRef<Path>, error: io::Error) -> IoFailure {
        IoFailure {
            kind: error.kind(),
            action: action.into(),
            path: Some(path.as_ref().to_owned()),
            offset: None,
            source: Some(Arc::new(error)),
            fail_stop: false,
        }
    }

    /// A failure without an operating-system error behind it (a store's
    /// worker that is gone, an injected failure): `action` says what.
    pub fn other(kind: io::ErrorKind, action: impl Into<String>) -> IoFailure {
        IoFailure {
            kind,
            action: action.into(),
            path: None,
            offset: None,
            source: None,
            fail_stop: false,
        }
    }

    /// The same failure, at `offset` in the file.
    pub fn at_offset(mut self, offset: u64) -> IoFailure {
        self.offset = Some(offset);
        self
    }

    /// The same failure, marked as the one that made the store refuse
    /// every later save (fail-stop: after a failed write or sync, what
    /// reached the disk is unknown).
    pub fn fail_stop(mut self) -> IoFailure {
        self.fail_stop = true;
        self
    }

    /// The kind of the error ([`io::ErrorKind::StorageFull`] for a full
    /// disk, `ENOSPC`).
    pub fn kind(&self) -> io::ErrorKind {
        self.kind
    }

    /// What was being done, as a phrase the path follows
    /// (`"fdatasync of"`, `"opening"`, `"writing 4096 bytes to"`).
    pub fn action(&self) -> &str {
        &self.action
    }

    /// The file (or directory) it was done on.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Where in the file, when it says.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// The operating system's error.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_deref()
    }

    /// True when the file system is full ([`io::ErrorKind::StorageFull`],
    /// `ENOSPC`) or the user's quota is used up
    /// ([`io::ErrorKind::QuotaExceeded`], `EDQUOT`).
    pub fn is_storage_full(&self) -> bool {
        matches!(
            self.kind,
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
    }

    /// True when this failure made the store refuse every later save
    /// (reopen it to recover what is durable).
    pub fn is_fail_stop(&self) -> bool {
        self.fail_stop
    }
}

impl PartialEq for IoFailure {
    fn eq(&self, other: &IoFailure) -> bool {
        self.kind == other.kind
            && self.action == other.action
            && self.path == other.path
            && self.offset == other.offset
            && self.fail_stop == other.fail_stop
            && self.source.as_ref().map(ToString::to_string)
                == other.source.as_ref().map(ToString::to_string)
    }
}

impl Eq for IoFailure {}

impl fmt::Display for IoFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.action)?;
        if let Some(path) = &self.path {
            write!(f, " {}", path.display())?;
        }
        if let Some(offset) = self.offset {
            write!(f, " at offset {offset}")?;
        }
        match &self.source {
            Some(e) => write!(f, " failed: {e}")?,
            None => write!(f, " ({:?})", self.kind)?,
        }
        if self.kind == io::ErrorKind::StorageFull {
            f.write_str(" (the disk is full: ENOSPC)")?;
        } else if self.kind == io::ErrorKind::QuotaExceeded {
            f.write_str(" (the disk quota is used up: EDQUOT)")?;
        }
        if self.fail_stop {
            f.write_str(
                "; the store refuses every later save (fail-stop): reopen it to recover what is durable",
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for IoFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Damage found in a store: where (the file and the offset in it, or the
/// log index of the entry) and what is wrong.
///
/// ```
/// use raft_node::persistence::Corruption;
///
/// let c = Corruption::new("a complete record with a bad checksum")
///     .in_file("/data/segment-3")
///     .at_offset(4096);
/// assert_eq!(c.offset(), Some(4096));
/// assert_eq!(c.to_string(), "/data/segment-3 at offset 4096: a complete record with a bad checksum");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    file: Option<PathBuf>,
    offset: Option<u64>,
    index: Option<LogIndex>,
    problem: String,
}

impl Corruption {
    /// Damage described by `problem` (what was found, and what it means).
    pub fn new(problem: impl Into<String>) -> Corruption {
        Corruption {
            file: None,
            offset: None,
            index: None,
            problem: problem.into(),
        }
    }

    /// Found in `file` (or directory).
    pub fn in_file(mut self, file: impl AsRef<Path>) -> Corruption {
        self.file = Some(file.as_ref().to_owned());
        self
    }

    /// Found at `offset` in the file.
    pub fn at_offset(mut self, offset: u64) -> Corruption {
        self.offset = Some(offset);
        self
    }

    /// Found in (or about) the log entry or snapshot at `index`.
    pub fn at_index(mut self, index: LogIndex) -> Corruption {
        self.index = Some(index);
        self
    }

    /// The damaged file (or the store's directory, for damage that no
    /// single file holds).
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Where in the file.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// The log index of the damaged entry or snapshot.
    pub fn index(&self) -> Option<LogIndex> {
        self.index
    }

    /// What is wrong.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = false;
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            said = true;
        }
        if let Some(offset) = self.offset {
            write!(f, "{}at offset {offset}", if said { " " } else { "" })?;
            said = true;
        }
        if let Some(index) = self.index {
            write!(
                f,
                "{}{}index {index}",
                if said { " " } else { "" },
                if said { "(" } else { "" }
            )?;
            if said {
                f.write_str(")")?;
            }
            said = true;
        }
        if said {
            f.write_str(": ")?;
        }
        f.write_str(&self.problem)
    }
}
