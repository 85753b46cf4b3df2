//! The persistence kit's crash-durability check on the file store: the
//! store passes it, and the same store with its syncs turned off fails it
//! (the check would catch a store that acknowledges before its data is on
//! disk).
//!
//! The page half of the check needs root and a disk-backed directory: the
//! stores live under the target directory, not in /tmp (a tmpfs on many
//! machines). With `RAFT_KV_REQUIRE_ROOT_TESTS=1` (CI) a missing page check
//! fails the tests instead of skipping.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft_node::persistence::file::{
    FileHandle, FileOptions, FilePersistence, FileSystem, OpenMode, StdFs,
};
use raft_node::testkit::durability::{self, CrashTest};

/// The file system, with every sync a no-op: a store that never calls
/// fsync.
#[derive(Debug)]
struct NoSync;

#[derive(Debug)]
struct NoSyncFile(Box<dyn FileHandle>);

impl FileSystem for NoSync {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileHandle>> {
        Ok(Box::new(NoSyncFile(StdFs.open(path, mode)?)))
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        StdFs.remove(path)
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

impl FileHandle for NoSyncFile {
    fn size(&mut self) -> io::Result<u64> {
        self.0.size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_at(offset, buf)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn sync_all(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn options(sync: bool) -> FileOptions {
    let options = FileOptions::default()
        .segment_size(64 << 10)
        .preallocate(false);
    if sync {
        options
    } else {
        options.fs(Arc::new(NoSync))
    }
}

async fn open(dir: PathBuf, sync: bool) -> FilePersistence {
    FilePersistence::open_with(&dir, options(sync))
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// A directory on the disk that holds the build, not on a tmpfs.
fn store_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a directory for the store")
}

fn page_check_required() -> bool {
    std::env::var("RAFT_KV_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1")
}

/// The child half for the file store (does nothing unless run by a test
/// below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_file() {
    let Some(dir) = durability::child_dir() else {
        return;
    };
    durability::child(|| open(dir.clone(), true)).await;
}

/// The child half for the file store without syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_file_without_sync() {
    let Some(dir) = durability::child_dir() else {
        return;
    };
    durability::child(|| open(dir.clone(), false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_keeps_every_acknowledged_save_through_kills_and_power_loss() {
    if durability::child_dir().is_some() {
        return;
    }
    let dir = store_dir();
    let path = dir.path().to_owned();
    let report = durability::check(CrashTest::new("crash_child_file", dir.path()), || {
        open(path.clone(), true)
    })
    .await;
    eprintln!("file store: {report}");
    if let Err(why) = &report.page_check {
        assert!(
            !page_check_required(),
            "the page check must run here but did not: {why}"
        );
        eprintln!("skipping the page half: {why}");
    }
    assert!(report.acknowledged > 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_store_that_never_syncs_fails_the_durability_check() {
    if durability::child_dir().is_some() {
        return;
    }
    let dir = store_dir();
    let path = dir.path().to_owned();
    let test = CrashTest::new("crash_child_file_without_sync", dir.path()).kills(5);
    match durability::try_check(test, || open(path.clone(), false)).await {
        Err(e) => {
            assert!(e.contains("must sync"), "failed for another reason: {e}");
            eprintln!("caught as it must be: {e}");
        }
        Ok(report) => {
            // Only the page half can catch it: without it the kill half
            // passes (the page cache outlives the killed process).
            let why = report
                .page_check
                .expect_err("the page check ran and found nothing unsynced");
            assert!(
                !page_check_required(),
                "the page check must run here but did not: {why}"
            );
            eprintln!("skipping: the page check cannot run here: {why}");
        }
    }
}
