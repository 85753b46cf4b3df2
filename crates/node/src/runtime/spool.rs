//! Where a snapshot being received from the leader goes, chunk by chunk: a
//! file in the spool directory, so that memory stays bounded whatever the
//! snapshot's size. Complete, it is checked (its length, its metadata) and
//! mapped into memory (the page cache, not the heap) to be saved, restored
//! and sent on. A transfer cut off half-way leaves a file that the next
//! transfer (or the next start) removes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

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
        let safe: String = node_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let prefix = format!("raft-{safe}-incoming-");
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
            map_file(&r.path)
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
    }
}
