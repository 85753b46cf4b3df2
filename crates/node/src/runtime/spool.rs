//! Where a snapshot being received from the leader goes, chunk by chunk: a
//! file in the spool directory, so that memory stays bounded whatever the
//! snapshot's size. Complete, it is checked (its length, its metadata) and
//! mapped into memory (the page cache, not the heap) to be saved, restored
//! and sent on. A transfer cut off half-way leaves a file that the next
//! transfer (or the next start) removes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use raft_core::{IncomingChunk, SnapshotMeta};

use crate::persistence::{InvalidChange, PersistenceError};

/// The file being received.
struct Receiving {
    meta: SnapshotMeta,
    total: u64,
    written: u64,
    path: PathBuf,
    file: File,
}

/// A node's spool of incoming snapshots.
pub(crate) struct Spool {
    dir: PathBuf,
    prefix: String,
    current: Option<Receiving>,
    /// The directory is this spool's own ([`Spool::private`]): removed
    /// with it.
    own_dir: bool,
}

/// The private spools made in this process so far (part of their names).
static PRIVATE: AtomicU64 = AtomicU64::new(0);

/// `node_id` with everything but ASCII letters and digits replaced.
fn safe_name(node_id: &str) -> String {
    node_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn io(action: &str, path: &Path, e: std::io::Error) -> PersistenceError {
    PersistenceError::io(action, path, e)
}

/// Maps `path` read-only; the mapping stays valid after the file is removed.
pub(crate) fn map_file(path: &Path) -> Result<Bytes, PersistenceError> {
    let file = File::open(path).map_err(|e| io("opening", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| io("reading the size of", path, e))?
        .len();
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the mapped files are written once, completely, before being
    // mapped, and never modified afterwards (spool files are removed, not
    // rewritten; snapshot files are immutable): nothing changes the bytes
    // under the mapping.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io("mapping", path, e))?;
    Ok(Bytes::from_owner(map))
}

impl Spool {
    /// The spool of node `node_id` in `dir`; removes what an earlier run of
    /// this node left behind.
    pub(crate) fn open(dir: PathBuf, node_id: &str) -> Spool {
        let prefix = format!("raft-{}-incoming-", safe_name(node_id));
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Spool {
            dir,
            prefix,
            current: None,
            own_dir: false,
        }
    }

    /// The spool of node `node_id` in a directory of its own under
    /// `raft-node-spool` in the system's temporary directory, named after
    /// the node, this process and a count: a node of the same id in another
    /// cluster or process never shares it. Removed when the spool is
    /// dropped (a process killed half-way through a transfer leaves it
    /// behind: no other process can tell that it is not in use).
    pub(crate) fn private(node_id: &str) -> Spool {
        let parent = std::env::temp_dir().join("raft-node-spool");
        let safe = safe_name(node_id);
        let count = PRIVATE.fetch_add(1, Ordering::Relaxed);
        Spool {
            dir: parent.join(format!("{safe}-{}-{count}", std::process::id())),
            prefix: format!("raft-{safe}-incoming-"),
            current: None,
            own_dir: true,
        }
    }

    /// Writes one chunk (chunks come in order; offset 0 starts afresh).
    pub(crate) fn write(&mut self, chunk: &IncomingChunk) -> Result<(), PersistenceError> {
        if chunk.offset == 0 {
            self.discard();
            fs::create_dir_all(&self.dir).map_err(|e| io("creating", &self.dir, e))?;
            let path = self.dir.join(format!(
                "{}{}-{}.part",
                self.prefix, chunk.meta.index, chunk.meta.term
            ));
            let file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| io("creating", &path, e))?;
            self.current = Some(Receiving {
                meta: chunk.meta.clone(),
                total: chunk.total_bytes,
                written: 0,
                path,
                file,
            });
        }
        let Some(r) = &mut self.current else {
            return Err(PersistenceError::Invalid(InvalidChange::ChunkNotNext {
                index: chunk.meta.index,
                offset: chunk.offset,
                receiving: None,
                received: 0,
            }));
        };
        if r.meta != chunk.meta || r.written != chunk.offset || r.total != chunk.total_bytes {
            return Err(PersistenceError::Invalid(InvalidChange::ChunkNotNext {
                index: chunk.meta.index,
                offset: chunk.offset,
                receiving: Some(r.meta.index),
                received: r.written,
            }));
        }
        r.file
            .write_all(&chunk.data)
            .map_err(|e| io("writing", &r.path, e))?;
        r.written += chunk.data.len() as u64;
        Ok(())
    }

    /// The snapshot `meta` is complete: checks it and maps it.
    pub(crate) fn finish(&mut self, meta: &SnapshotMeta) -> Result<Bytes, PersistenceError> {
        let Some(r) = self.current.take() else {
            return Err(PersistenceError::Invalid(
                InvalidChange::SnapshotIncomplete {
                    index: meta.index,
                    receiving: None,
                    received: 0,
                    total: 0,
                },
            ));
        };
        let result = if &r.meta != meta || r.written != r.total {
            Err(PersistenceError::Invalid(
                InvalidChange::SnapshotIncomplete {
                    index: meta.index,
                    receiving: Some(r.meta.index),
                    received: r.written,
                    total: r.total,
                },
            ))
        } else {
            // The file holds what was written to it, unless something else
            // changed it meanwhile: never restore from such a file.
            map_file(&r.path).and_then(|data| {
                if data.len() as u64 == r.total {
                    Ok(data)
                } else {
                    Err(PersistenceError::Io(crate::persistence::IoFailure::other(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "the snapshot received in {} holds {} bytes, but {} were written to it: something else changed the file (two nodes of the same id sharing a spool directory?)",
                            r.path.display(),
                            data.len(),
                            r.total
                        ),
                    )))
                }
            })
        };
        // Mapped (or failed): the file itself is no longer needed.
        let _ = fs::remove_file(&r.path);
        result
    }

    /// Drops a transfer that will not complete.
    fn discard(&mut self) {
        if let Some(r) = self.current.take() {
            let _ = fs::remove_file(&r.path);
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.discard();
        if self.own_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::Membership;

    fn chunk(offset: u64, data: &'static [u8], total: u64) -> IncomingChunk {
        IncomingChunk {
            meta: SnapshotMeta {
                index: 60,
                term: 1,
                membership: Membership::default(),
            },
            total_bytes: total,
            offset,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn nodes_of_the_same_id_get_private_spools_of_their_own() {
        let mut a = Spool::private("n4");
        let mut b = Spool::private("n4");
        assert_ne!(a.dir, b.dir);
        a.write(&chunk(0, b"abcd", 8)).unwrap();
        // b starting a transfer of the same snapshot touches nothing of a's.
        b.write(&chunk(0, b"wxyz", 8)).unwrap();
        a.write(&chunk(4, b"efgh", 8)).unwrap();
        let meta = chunk(0, b"", 8).meta;
        assert_eq!(&a.finish(&meta).unwrap()[..], b"abcdefgh");
        let dir = a.dir.clone();
        assert!(dir.is_dir());
        drop(a);
        assert!(!dir.exists(), "a private spool is removed with it");
    }

    #[test]
    fn a_spooled_file_changed_by_someone_else_is_never_restored() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path().to_path_buf(), "n4");
        spool.write(&chunk(0, b"abcd", 8)).unwrap();
        spool.write(&chunk(4, b"efgh", 8)).unwrap();
        // Another node of the same id, given the same directory, starts
        // the same transfer: the file is truncated under this one.
        let path = spool.current.as_ref().unwrap().path.clone();
        std::fs::write(&path, b"").unwrap();
        let e = spool.finish(&chunk(0, b"", 8).meta).unwrap_err();
        assert!(
            e.to_string().contains("holds 0 bytes, but 8 were written"),
            "{e}"
        );
    }
}
