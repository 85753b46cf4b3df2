//! Snapshot files: a header with the metadata, the data, a footer with the
//! data's checksum. The metadata reads cheaply (one small read) and the data
//! reads by ranges, so that a snapshot can be streamed in chunks without
//! being loaded whole.
//!
//! ```text
//! offset 0   magic "RAFTSNAP" (8) | version u32 | meta_len u32
//! 16         meta (meta_len bytes: index u64, term u64, membership)
//! 16+m       data_len u64 | header_crc u32 (crc32c of bytes 0 .. 24+m)
//! 28+m       data (data_len bytes)
//! 28+m+d     data_crc u32 (crc32c of the data) | end magic "SNAPEND\0" (8)
//! ```

use std::io;
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use raft_core::SnapshotMeta;

use super::format::TMP_SUFFIX;
use super::vfs::{FileHandle, FileSystem, OpenMode, StdFs};
use crate::codec::{self, Reader};
use crate::persistence::{Corruption, InvalidChange, IoFailure, PersistenceError};

const MAGIC: &[u8; 8] = b"RAFTSNAP";
const END_MAGIC: &[u8; 8] = b"SNAPEND\0";
const VERSION: u32 = 1;
const FOOTER_LEN: u64 = 12;
/// Metadata larger than this is refused as corrupt (a membership of this
/// size would be absurd).
const MAX_META: u32 = 64 << 20;
/// The chunk size for checksumming and copying.
const CHUNK: usize = 1 << 20;

/// Reads a snapshot file written by [`FilePersistence`](super::FilePersistence):
/// its metadata at once, its data by ranges.
///
/// ```no_run
/// # use raft_node::persistence::file::{FilePersistence, SnapshotReader};
/// # async fn demo(store: &FilePersistence) -> Result<(), raft_node::PersistenceError> {
/// if let Some(path) = store.snapshot_path() {
///     let mut reader = SnapshotReader::open(&path)?;
///     let mut chunk = vec![0u8; 64 * 1024];
///     let mut offset = 0;
///     while offset < reader.data_len() {
///         let n = chunk.len().min((reader.data_len() - offset) as usize);
///         reader.read_data(offset, &mut chunk[..n])?;
///         offset += n as u64; // send `chunk[..n]` somewhere
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SnapshotReader {
    file: Box<dyn FileHandle>,
    path: PathBuf,
    meta: SnapshotMeta,
    data_offset: u64,
    data_len: u64,
    data_crc: u32,
}

impl SnapshotReader {
    /// Opens the snapshot file at `path` and reads its metadata (the data
    /// is not read, nor checked: see [`SnapshotReader::verify`]).
    pub fn open(path: &Path) -> Result<SnapshotReader, PersistenceError> {
        SnapshotReader::open_with(&StdFs, path)
    }

    /// [`SnapshotReader::open`] through a given file layer.
    pub(crate) fn open_with(
        fs: &dyn FileSystem,
        path: &Path,
    ) -> Result<SnapshotReader, PersistenceError> {
        let io_err = |what: &str, e: io::Error| {
            PersistenceError::Io(IoFailure::new(format!("{what} snapshot file"), path, e))
        };
        let corrupt = |offset: u64, what: &str| {
            PersistenceError::Corrupt(Corruption::new(what).in_file(path).at_offset(offset))
        };
        let mut file = fs
            .open(path, OpenMode::Read)
            .map_err(|e| io_err("opening", e))?;
        let size = file.size().map_err(|e| io_err("reading the size of", e))?;
        if size < 16 + 12 + FOOTER_LEN {
            return Err(corrupt(0, "the file is too short to be a snapshot"));
        }
        let mut head = [0u8; 16];
        file.read_at(0, &mut head)
            .map_err(|e| io_err("reading", e))?;
        if &head[..8] != MAGIC {
            return Err(corrupt(
                0,
                "the file does not start with the snapshot magic",
            ));
        }
        let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if version != VERSION {
            return Err(corrupt(8, "unknown snapshot format version"));
        }
        let meta_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
        if meta_len > MAX_META || u64::from(meta_len) + 28 + FOOTER_LEN > size {
            return Err(corrupt(12, "a metadata length larger than the file"));
        }
        let mut header = vec![0u8; 28 + meta_len as usize];
        file.read_at(0, &mut header)
            .map_err(|e| io_err("reading", e))?;
        let m = 16 + meta_len as usize;
        let crc = u32::from_le_bytes(header[m + 8..m + 12].try_into().unwrap_or_default());
        if crc32c::crc32c(&header[..m + 8]) != crc {
            return Err(corrupt(
                m as u64 + 8,
                "the header's checksum does not match",
            ));
        }
        let mut r = Reader::new(&header[16..m], "snapshot metadata");
        let meta = codec::get_snapshot_meta(&mut r)
            .and_then(|meta| r.finish().map(|()| meta))
            .map_err(|e| corrupt(16 + e.offset as u64, &e.to_string()))?;
        let data_len = u64::from_le_bytes(header[m..m + 8].try_into().unwrap_or_default());
        let data_offset = m as u64 + 12;
        if data_offset
            .checked_add(data_len)
            .and_then(|e| e.checked_add(FOOTER_LEN))
            != Some(size)
        {
            return Err(corrupt(
                m as u64,
                &format!("the data length {data_len} does not match the file size {size}"),
            ));
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        file.read_at(data_offset + data_len, &mut footer)
            .map_err(|e| io_err("reading", e))?;
        if &footer[4..] != END_MAGIC {
            return Err(corrupt(
                data_offset + data_len + 4,
                "the file does not end with the snapshot end magic",
            ));
        }
        Ok(SnapshotReader {
            file,
            path: path.to_owned(),
            meta,
            data_offset,
            data_len,
            data_crc: u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]),
        })
    }

    /// The snapshot's index, term and membership.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Where the snapshot's data starts in the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The length of the data.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fills `buf` with the data from `offset` (relative to the data's
    /// start); the range must lie inside the data.
    pub fn read_data(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), PersistenceError> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.data_len) {
            return Err(PersistenceError::Invalid(InvalidChange::ReadPastEnd {
                file: self.path.clone(),
                offset,
                bytes: buf.len() as u64,
                data_bytes: self.data_len,
            }));
        }
        self.file
            .read_at(self.data_offset + offset, buf)
            .map_err(|e| {
                PersistenceError::Io(
                    IoFailure::new("reading snapshot file", &self.path, e)
                        .at_offset(self.data_offset + offset),
                )
            })
    }

    /// Reads the whole data in chunks and checks it against the footer's
    /// checksum (memory: one chunk).
    pub fn verify(&mut self) -> Result<(), PersistenceError> {
        self.scan(|_| {})
    }

    /// Reads the whole data into memory, checking its checksum.
    pub fn read_all(&mut self) -> Result<Bytes, PersistenceError> {
        let len = usize::try_from(self.data_len).map_err(|_| {
            PersistenceError::Io(IoFailure::new(
                "reading snapshot file",
                &self.path,
                io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!("{} bytes do not fit in memory", self.data_len),
                ),
            ))
        })?;
        let mut data = Vec::with_capacity(len);
        self.scan(|chunk| data.extend_from_slice(chunk))?;
        Ok(Bytes::from(data))
    }

    fn scan(&mut self, mut each: impl FnMut(&[u8])) -> Result<(), PersistenceError> {
        let mut crc = 0u32;
        let mut buf = vec![0u8; CHUNK.min(self.data_len as usize)];
        let mut offset = 0u64;
        while offset < self.data_len {
            let n = CHUNK.min((self.data_len - offset) as usize);
            self.read_data(offset, &mut buf[..n])?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            each(&buf[..n]);
            offset += n as u64;
        }
        if crc != self.data_crc {
            return Err(PersistenceError::Corrupt(
                Corruption::new(format!(
                    "the snapshot's data ({} bytes from offset {}) does not match its checksum",
                    self.data_len, self.data_offset
                ))
                .in_file(&self.path)
                .at_offset(self.data_offset + self.data_len)
                .at_index(self.meta.index),
            ));
        }
        Ok(())
    }
}

/// Writes a snapshot file: to a temporary name first; [`SnapshotWriter::finish`]
/// makes it durable and gives it its name.
#[derive(Debug)]
pub(crate) struct SnapshotWriter {
    file: Box<dyn FileHandle>,
    tmp: PathBuf,
    path: PathBuf,
    offset: u64,
    data_left: u64,
    crc: u32,
}

impl SnapshotWriter {
    /// Starts the file that will be `path`, for `data_len` bytes of data.
    pub(crate) fn create(
        fs: &dyn FileSystem,
        path: &Path,
        meta: &SnapshotMeta,
        data_len: u64,
    ) -> io::Result<SnapshotWriter> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(TMP_SUFFIX);
        let tmp = PathBuf::from(tmp);
        let mut file = fs.open(&tmp, OpenMode::Create)?;
        let mut m = BytesMut::new();
        codec::put_snapshot_meta(&mut m, meta);
        let mut header = BytesMut::with_capacity(28 + m.len());
        header.put_slice(MAGIC);
        header.put_u32_le(VERSION);
        header.put_u32_le(m.len() as u32);
        header.put_slice(&m);
        header.put_u64_le(data_len);
        let crc = crc32c::crc32c(&header);
        header.put_u32_le(crc);
        file.write_at(0, &header)?;
        Ok(SnapshotWriter {
            file,
            tmp,
            path: path.to_owned(),
            offset: header.len() as u64,
            data_left: data_len,
            crc: 0,
        })
    }

    /// Appends data.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() as u64 > self.data_left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "more snapshot data than announced",
            ));
        }
        for chunk in data.chunks(CHUNK) {
            self.file.write_at(self.offset, chunk)?;
            self.crc = crc32c::crc32c_append(self.crc, chunk);
            self.offset += chunk.len() as u64;
        }
        self.data_left -= data.len() as u64;
        Ok(())
    }

    /// Writes the footer, syncs the file, renames it to its name and syncs
    /// the directory: the snapshot file is then durable.
    pub(crate) fn finish(mut self, fs: &dyn FileSystem, dir: &Path) -> io::Result<PathBuf> {
        if self.data_left != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "less snapshot data than announced",
            ));
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        footer[..4].copy_from_slice(&self.crc.to_le_bytes());
        footer[4..].copy_from_slice(END_MAGIC);
        self.file.write_at(self.offset, &footer)?;
        self.file.sync_all()?;
        drop(self.file);
        fs.rename(&self.tmp, &self.path)?;
        fs.sync_dir(dir)?;
        Ok(self.path)
    }
}
