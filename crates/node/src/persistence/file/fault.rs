//! A [`FileSystem`] that injects faults, for tests: torn writes, failing
//! `fsync`s and a full disk.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::vfs::{FileHandle, FileSystem, OpenMode, StdFs};

/// Faults to inject, shared by every clone of a [`FaultFs`] and every file
/// opened through it.
#[derive(Debug, Default)]
struct Faults {
    /// Every `sync_data` / `sync_all` / `sync_dir` fails with `EIO`.
    fail_syncs: bool,
    /// Syncs that may still succeed before every later one fails with
    /// `EIO`.
    syncs_left: Option<u64>,
    /// Bytes that may still be written before writes fail with `ENOSPC`.
    space_left: Option<u64>,
    /// The next write to a file whose name ends with `.0` lands only its
    /// first `.1` bytes, then the disk is dead.
    tear: Option<(String, usize)>,
    /// A torn write happened: every later operation fails (the machine
    /// "crashed"; reopen through a healed file system).
    dead: bool,
    /// While this file exists, every sync waits (a disk that hangs).
    stall_while: Option<PathBuf>,
    /// Counters.
    counts: FaultCounts,
    /// The paths of the files opened, followed through renames.
    open_files: Vec<Weak<Mutex<PathBuf>>>,
}

/// What a [`FaultFs`] saw and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Writes attempted.
    pub writes: u64,
    /// Syncs attempted (files and directories).
    pub syncs: u64,
    /// Syncs failed on purpose.
    pub failed_syncs: u64,
    /// Writes failed with `ENOSPC`.
    pub enospc: u64,
    /// Writes torn.
    pub torn: u64,
}

/// A [`FileSystem`] over another (the real one by default) that injects
/// faults on demand. Clones share the faults.
///
/// - [`FaultFs::fail_syncs`]: `fsync`/`fdatasync` fail with `EIO`;
/// - [`FaultFs::set_space_left`]: writes beyond a budget fail with
///   `ENOSPC`, after writing what fits (as a full disk does);
/// - [`FaultFs::tear_next_write`]: the next write to a matching file lands
///   only a prefix, then every operation fails (a crash in the middle of a
///   write).
#[derive(Debug, Clone)]
pub struct FaultFs {
    inner: Arc<dyn FileSystem>,
    faults: Arc<Mutex<Faults>>,
}

impl Default for FaultFs {
    fn default() -> FaultFs {
        FaultFs::new()
    }
}

impl FaultFs {
    /// Over the real file system, with no fault.
    pub fn new() -> FaultFs {
        FaultFs::over(Arc::new(StdFs))
    }

    /// Over `inner`, with no fault.
    pub fn over(inner: Arc<dyn FileSystem>) -> FaultFs {
        FaultFs {
            inner,
            faults: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    /// While `fail` is true, every sync fails with `EIO`.
    pub fn fail_syncs(&self, fail: bool) {
        self.lock().fail_syncs = fail;
    }

    /// After `n` more successful syncs, every sync fails with `EIO` (the
    /// `n + 1`-th from now is the first to fail).
    pub fn fail_syncs_after(&self, n: u64) {
        self.lock().syncs_left = Some(n);
    }

    /// Writes fail with `ENOSPC` once `bytes` more bytes have been written
    /// (`None`: no limit).
    pub fn set_space_left(&self, bytes: Option<u64>) {
        self.lock().space_left = bytes;
    }

    /// The next write to a file whose name ends with `suffix` (e.g. `.wal`)
    /// lands only its first `keep` bytes and fails; every operation after
    /// it fails too, until [`FaultFs::heal`].
    pub fn tear_next_write(&self, suffix: &str, keep: usize) {
        self.lock().tear = Some((suffix.to_owned(), keep));
    }

    /// While a file exists at `path`, every sync waits for it to go (a
    /// disk that hangs for as long as another process says, e.g. a test
    /// runner that creates and removes the file).
    pub fn stall_syncs_while(&self, path: PathBuf) {
        self.lock().stall_while = Some(path);
    }

    /// Removes every fault (the disk works again).
    pub fn heal(&self) {
        let mut f = self.lock();
        f.fail_syncs = false;
        f.syncs_left = None;
        f.space_left = None;
        f.tear = None;
        f.dead = false;
    }

    /// What happened so far.
    pub fn counts(&self) -> FaultCounts {
        self.lock().counts
    }

    fn check_alive(&self) -> io::Result<()> {
        check_alive(&self.lock())
    }
}

fn lock(faults: &Mutex<Faults>) -> MutexGuard<'_, Faults> {
    faults.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_alive(f: &Faults) -> io::Result<()> {
    if f.dead {
        Err(io::Error::other(
            "injected: the disk is gone after a torn write",
        ))
    } else {
        Ok(())
    }
}

fn sync_fault(faults: &Mutex<Faults>) -> io::Result<()> {
    let stall = lock(faults).stall_while.clone();
    if let Some(path) = stall {
        while path.exists() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let mut f = lock(faults);
    check_alive(&f)?;
    f.counts.syncs += 1;
    match f.syncs_left {
        Some(0) => f.fail_syncs = true,
        Some(n) => f.syncs_left = Some(n - 1),
        None => {}
    }
    if f.fail_syncs {
        f.counts.failed_syncs += 1;
        return Err(io::Error::other("injected fsync failure (EIO)"));
    }
    Ok(())
}

impl FileSystem for FaultFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileHandle>> {
        self.check_alive()?;
        let inner = self.inner.open(path, mode)?;
        let path = Arc::new(Mutex::new(path.to_owned()));
        {
            let mut f = self.lock();
            f.open_files.retain(|w| w.strong_count() > 0);
            f.open_files.push(Arc::downgrade(&path));
        }
        Ok(Box::new(FaultFile {
            inner,
            path,
            faults: self.faults.clone(),
        }))
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.check_alive()?;
        self.inner.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.check_alive()?;
        self.inner.list(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check_alive()?;
        self.inner.rename(from, to)?;
        // Open files keep their identity: a write to a renamed file is a
        // write to its new name.
        for file in self.lock().open_files.iter().filter_map(Weak::upgrade) {
            let mut p = file.lock().unwrap_or_else(|e| e.into_inner());
            if *p == from {
                *p = to.to_owned();
            }
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.check_alive()?;
        self.inner.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sync_fault(&self.faults)?;
        self.inner.sync_dir(dir)
    }

    /// The space left before `ENOSPC` if a budget is set, else the real
    /// file system's.
    fn available_space(&self, dir: &Path) -> io::Result<Option<u64>> {
        let left = self.lock().space_left;
        match left {
            Some(left) => Ok(Some(left)),
            None => self.inner.available_space(dir),
        }
    }
}

/// A file opened through a [`FaultFs`].
#[derive(Debug)]
struct FaultFile {
    inner: Box<dyn FileHandle>,
    /// Its current path (renames followed).
    path: Arc<Mutex<PathBuf>>,
    faults: Arc<Mutex<Faults>>,
}

impl FileHandle for FaultFile {
    fn size(&mut self) -> io::Result<u64> {
        check_alive(&lock(&self.faults))?;
        self.inner.size()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_alive(&lock(&self.faults))?;
        self.inner.read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut f = lock(&self.faults);
        check_alive(&f)?;
        f.counts.writes += 1;
        if let Some((suffix, keep)) = f.tear.clone() {
            let name = self.path.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if name.to_string_lossy().ends_with(&suffix) {
                f.tear = None;
                f.dead = true;
                f.counts.torn += 1;
                let keep = keep.min(buf.len());
                self.inner.write_at(offset, &buf[..keep])?;
                return Err(io::Error::other(format!(
                    "injected torn write: {keep} of {} bytes landed",
                    buf.len()
                )));
            }
        }
        if let Some(left) = f.space_left {
            let len = buf.len() as u64;
            if len > left {
                f.space_left = Some(0);
                f.counts.enospc += 1;
                self.inner.write_at(offset, &buf[..left as usize])?;
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "No space left on device (injected ENOSPC)",
                ));
            }
            f.space_left = Some(left - len);
        }
        drop(f);
        self.inner.write_at(offset, buf)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        check_alive(&lock(&self.faults))?;
        self.inner.set_len(len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        sync_fault(&self.faults)?;
        self.inner.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        sync_fault(&self.faults)?;
        self.inner.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_fail_from_the_one_after_the_allowed_count_on() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let fs = FaultFs::new();
        let mut file = fs
            .open(&dir.path().join("f"), OpenMode::Create)
            .expect("open");
        fs.fail_syncs_after(2);
        assert!(file.sync_data().is_ok());
        assert!(fs.sync_dir(dir.path()).is_ok());
        assert!(file.sync_data().is_err());
        assert!(file.sync_all().is_err());
        assert_eq!(fs.counts().failed_syncs, 2);
        fs.heal();
        assert!(file.sync_data().is_ok());
    }
}
