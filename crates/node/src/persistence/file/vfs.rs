//! The file layer under [`FilePersistence`](super::FilePersistence): a small
//! set of blocking file operations behind two traits, so that tests can put
//! faults between the store and the disk ([`FaultFs`](super::FaultFs)).
//!
//! Every call blocks: the store calls them from its own threads only, never
//! from an async task.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// How [`FileSystem::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    Write,
    /// Read and write a new, empty file (an existing one is emptied).
    Create,
}

/// The directory operations the store needs.
pub trait FileSystem: Send + Sync + Debug + 'static {
    /// Opens `path` as `mode` says.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileHandle>>;
    /// Creates `dir` and its parents if they do not exist.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir` (files and directories alike).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file at `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The bytes an unprivileged writer may still use on the file system
    /// holding `dir`, if known (default: unknown).
    fn available_space(&self, dir: &Path) -> io::Result<Option<u64>> {
        let _ = dir;
        Ok(None)
    }
}

/// An open file.
pub trait FileHandle: Send + Debug {
    /// The file's size in bytes.
    fn size(&mut self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; fails if the file ends first.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset` (extending the file if needed).
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes the file's data (and the metadata needed to read it, such as
    /// its size) durable: `fdatasync`.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes the file's data and all its metadata durable: `fsync`.
    fn sync_all(&mut self) -> io::Result<()>;
}

/// The real file system ([`std::fs`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

impl FileSystem for StdFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileHandle>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::Write => options.read(true).write(true),
            OpenMode::Create => options.read(true).write(true).create(true).truncate(true),
        };
        Ok(Box::new(StdFile(options.open(path)?)))
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            File::open(dir)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(())
        }
    }

    fn available_space(&self, dir: &Path) -> io::Result<Option<u64>> {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: `path` is a valid C string and `st` a valid statvfs
            // buffer for the call to fill.
            if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
                return Err(io::Error::last_os_error());
            }
            #[allow(clippy::unnecessary_cast)] // the field types vary by platform
            Ok(Some(
                (st.f_bavail as u64).saturating_mul(st.f_frsize as u64),
            ))
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(None)
        }
    }
}

/// A [`std::fs::File`].
#[derive(Debug)]
struct StdFile(File);

impl FileHandle for StdFile {
    fn size(&mut self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    #[cfg(unix)]
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }

    #[cfg(not(unix))]
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        self.0.seek(SeekFrom::Start(offset))?;
        self.0.read_exact(buf)
    }

    #[cfg(unix)]
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }

    #[cfg(not(unix))]
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        self.0.seek(SeekFrom::Start(offset))?;
        self.0.write_all(buf)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
}

/// Reads the whole file.
pub(crate) fn read_whole(file: &mut dyn FileHandle) -> io::Result<Vec<u8>> {
    let size = usize::try_from(file.size()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the file is too large"))?;
    let mut buf = vec![0u8; size];
    file.read_at(0, &mut buf)?;
    Ok(buf)
}
