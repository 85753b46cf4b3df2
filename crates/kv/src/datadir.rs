//! The data directory of `raft-kv serve`: checked before use (a file in
//! its place, a directory it may not write), locked against a second
//! process, holding the node's id and its cluster's name beside the store;
//! and what a failed start made in it is removed again, so that a first
//! start that fails leaves nothing behind.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::config::{Start, DEFAULT_CLUSTER};
use crate::serve::StartError;

/// The entries a start may make in the data directory (besides `LOCK`):
/// removed again if the start fails and they were not there before.
const MADE_BY_A_START: [&str; 6] = [
    "node-id",
    "node-id.tmp",
    CLUSTER_FILE,
    "cluster.tmp",
    "raft",
    "spool",
];

/// The file that keeps the cluster's name.
const CLUSTER_FILE: &str = "cluster";

/// The lock file.
const LOCK_FILE: &str = "LOCK";

/// A locked data directory, while a server starts in it. Dropped without
/// [`DataDir::keep`] (the start failed), it removes what this start made:
/// the directories it created and the entries a start makes (`MADE_BY_A_START`) that
/// were not there before, never a store that was.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    /// Held while the server runs; `None` once kept.
    lock: Option<File>,
    /// This start created the lock file.
    made_lock: bool,
    /// Directories this start created, outermost first.
    made_dirs: Vec<PathBuf>,
    /// Which of [`MADE_BY_A_START`] were there before this start.
    existed: [bool; MADE_BY_A_START.len()],
}

impl DataDir {
    /// Checks `path`, creates it (and what is missing above it) if needed,
    /// and takes its lock (an advisory lock the kernel drops when the
    /// process ends, however it ends: two processes writing one store
    /// would corrupt it).
    pub fn open(path: &Path) -> Result<DataDir, StartError> {
        let mut dir = DataDir {
            path: path.to_path_buf(),
            lock: None,
            made_lock: false,
            made_dirs: Vec::new(),
            existed: [true; MADE_BY_A_START.len()],
        };
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StartError::NotADirectory {
                    dir: path.to_path_buf(),
                    file: path.to_path_buf(),
                })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => dir.create()?,
            Err(e) => return Err(StartError::data_dir(path, "look into", path, e)),
        }
        dir.lock()?;
        for (existed, name) in dir.existed.iter_mut().zip(MADE_BY_A_START) {
            *existed = path.join(name).symlink_metadata().is_ok();
        }
        Ok(dir)
    }

    /// Creates the directory and every missing one above it, noting each.
    fn create(&mut self) -> Result<(), StartError> {
        let mut missing: Vec<&Path> = self
            .path
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .take_while(|a| a.symlink_metadata().is_err())
            .collect();
        missing.reverse();
        for d in missing {
            match std::fs::create_dir(d) {
                Ok(()) => self.made_dirs.push(d.to_path_buf()),
                // Made meanwhile by someone else: not ours to remove.
                Err(e) if e.kind() == ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => return Err(StartError::data_dir(&self.path, "create", d, e)),
            }
        }
        Ok(())
    }

    fn lock(&mut self) -> Result<(), StartError> {
        let path = self.path.join(LOCK_FILE);
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true);
        let file = match options.clone().create_new(true).open(&path) {
            Ok(f) => {
                self.made_lock = true;
                f
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => options
                .open(&path)
                .map_err(|e| StartError::data_dir(&self.path, "open", &path, e))?,
            Err(e) => return Err(StartError::data_dir(&self.path, "create", &path, e)),
        };
        #[cfg(unix)]
        {
            use std::io::{Read, Seek, Write};
            use std::os::fd::AsRawFd;
            let mut file = file;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                // Another process holds it: whatever is here is its own now.
                self.made_lock = false;
                self.made_dirs.clear();
                return Err(StartError::DataDirLocked {
                    dir: self.path.clone(),
                    holder: holder.trim().parse().ok(),
                });
            }
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = writeln!(file, "{}", std::process::id());
            self.lock = Some(file);
        }
        #[cfg(not(unix))]
        {
            self.lock = Some(file);
        }
        Ok(())
    }

    /// Whether the node held state here before this start (its id or its
    /// store): then its flags are checked against that state.
    pub fn held_state(&self) -> bool {
        let existed = |name: &str| {
            MADE_BY_A_START
                .iter()
                .position(|n| *n == name)
                .is_some_and(|i| self.existed[i])
        };
        existed("node-id") || existed("raft")
    }

    /// The cluster's name: the one kept here, or `given`, or
    /// [`DEFAULT_CLUSTER`] for a new node (then kept here). A `given` name
    /// other than the kept one is refused, naming both.
    pub fn cluster(&self, given: Option<&str>) -> Result<String, StartError> {
        let file = self.path.join(CLUSTER_FILE);
        let stored = match std::fs::read_to_string(&file) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(StartError::data_dir(&self.path, "read", &file, e)),
        };
        match (given, stored) {
            (Some(given), Some(stored)) if given != stored => Err(StartError::OtherCluster {
                given: given.to_string(),
                stored,
                file,
            }),
            (_, Some(stored)) => Ok(stored),
            (given, None) => {
                // A new node, or one made before the name was kept here (its
                // store checks the name when it opens).
                let name = given.unwrap_or(DEFAULT_CLUSTER).to_string();
                let tmp = self.path.join("cluster.tmp");
                std::fs::write(&tmp, format!("{name}\n"))
                    .and_then(|_| File::open(&tmp)?.sync_all())
                    .and_then(|_| std::fs::rename(&tmp, &file))
                    .map_err(|e| StartError::data_dir(&self.path, "write", &file, e))?;
                Ok(name)
            }
        }
    }

    /// The start succeeded: everything stays, and the returned lock is to
    /// be held while the server runs.
    pub fn keep(mut self) -> File {
        self.lock
            .take()
            .expect("a DataDir holds its lock from open until keep")
    }
}

impl Drop for DataDir {
    /// The start failed: removes what it made, while still holding the lock
    /// (no other process can have started here meanwhile).
    fn drop(&mut self) {
        let Some(lock) = self.lock.take() else {
            return;
        };
        for (existed, name) in self.existed.iter().zip(MADE_BY_A_START) {
            if *existed {
                continue;
            }
            let p = self.path.join(name);
            let _ = match p.symlink_metadata() {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
                Ok(_) => std::fs::remove_file(&p),
                Err(_) => Ok(()),
            };
        }
        if self.made_lock {
            let _ = std::fs::remove_file(self.path.join(LOCK_FILE));
        }
        drop(lock);
        // Innermost first; one that is not empty (something else was put
        // there) stays.
        for d in self.made_dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// What a node's data directory holds, as the node sees it once started
/// from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    /// The node's id.
    pub id: String,
    /// Its cluster.
    pub cluster: String,
    /// The members (id, address) it was created with; none for a node
    /// that joined.
    pub founding: Vec<(String, String)>,
    /// The members of the configuration it holds; none for a node that was
    /// never added.
    pub members: Vec<(String, String)>,
}

/// What a node's start flags mean, given the state it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagsVerdict {
    /// Nothing to say.
    Fine,
    /// Worth a line in the log (info): the flag is ignored, and agrees
    /// with the state.
    Note(String),
    /// Worth a warning: the flag is ignored, and no longer agrees with the
    /// state (the cluster changed since), or asks for what the node did
    /// already (`--join` on a member).
    Warn(String),
}

fn shown(members: &[(String, String)]) -> String {
    if members.is_empty() {
        return "none".into();
    }
    let mut list: Vec<String> = members.iter().map(|(i, a)| format!("{i}={a}")).collect();
    list.sort();
    list.join(",")
}

fn same(a: &[(String, String)], b: &[(String, String)]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// `--members` given to a node that holds state, naming neither the
/// members it was founded with nor its members now: only a mistake can
/// ask for that, so the start is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--members {} does not match this node's state: {}, {}. --members only founds a new cluster: leave it out to restart this node, or give an empty --data-dir to found another cluster",
    shown(.listed),
    holds(.dir, .stored),
    history(.stored)
)]
pub struct MembersMismatch {
    /// The members given.
    pub listed: Vec<(String, String)>,
    /// The data directory.
    pub dir: PathBuf,
    /// What it holds (boxed: the error stays small).
    pub stored: Box<StoredState>,
}

/// "`dir` holds node n1 of cluster c".
fn holds(dir: &Path, stored: &StoredState) -> String {
    format!(
        "{} holds node {} of cluster {}",
        dir.display(),
        stored.id,
        stored.cluster
    )
}

/// What became of a node since it was made, as a refusal says it.
fn history(stored: &StoredState) -> String {
    if stored.founding.is_empty() && stored.members.is_empty() {
        "started to join a cluster and not added yet".to_string()
    } else if stored.founding.is_empty() {
        format!(
            "which joined its cluster; its members are now {}",
            shown(&stored.members)
        )
    } else {
        format!(
            "founded with {}; its members are now {}",
            shown(&stored.founding),
            shown(&stored.members)
        )
    }
}

/// Checks `--members` and `--join` (as `start`) against the state the node
/// holds in `dir`: flags that found or join a cluster are ignored once a
/// node holds state, so the operator is told; a flag that contradicts the
/// state (a member list that is neither the one the node was founded with
/// nor its members now) can only be a mistake, and is refused.
pub fn check_start_flags(
    start: &Start,
    stored: &StoredState,
    dir: &Path,
) -> Result<FlagsVerdict, MembersMismatch> {
    let holds = holds(dir, stored);
    let never_added = stored.founding.is_empty() && stored.members.is_empty();
    match start {
        Start::Single => Ok(FlagsVerdict::Fine),
        // Not added yet: the join is asked for again.
        Start::Join(_) if never_added => Ok(FlagsVerdict::Fine),
        Start::Join(member) => Ok(FlagsVerdict::Warn(format!(
            "--join {member} is ignored: {holds} (members: {}), which rejoins its cluster by itself",
            shown(&stored.members)
        ))),
        Start::Members(list) if same(list, &stored.members) => Ok(FlagsVerdict::Note(
            format!("--members is ignored: {holds}, whose members are the ones listed"),
        )),
        Start::Members(list) if same(list, &stored.founding) => Ok(FlagsVerdict::Warn(format!(
            "--members is ignored: {holds}, founded with the members listed; its members are now {}",
            shown(&stored.members)
        ))),
        Start::Members(list) => Err(MembersMismatch {
            listed: list.clone(),
            dir: dir.to_path_buf(),
            stored: Box::new(stored.clone()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &str) -> Vec<(String, String)> {
        list.split(',')
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (i, a) = e.split_once('=').unwrap();
                (i.to_string(), a.to_string())
            })
            .collect()
    }

    fn stored(founding: &str, members: &str) -> StoredState {
        StoredState {
            id: "n1".into(),
            cluster: "shop".into(),
            founding: pairs(founding),
            members: pairs(members),
        }
    }

    #[test]
    fn member_flags_are_checked_against_the_state_held() {
        let dir = Path::new("/var/lib/raft-kv");
        let three = "n1=a:1,n2=b:1,n3=c:1";
        let four = "n1=a:1,n2=b:1,n3=c:1,n4=d:1";
        let check = |start: Start, s: &StoredState| check_start_flags(&start, s, dir);
        let founded = stored(three, three);
        assert_eq!(check(Start::Single, &founded), Ok(FlagsVerdict::Fine));
        // The same list, in any order: said, not warned.
        let listed = Start::Members(pairs("n3=c:1,n1=a:1,n2=b:1"));
        assert!(matches!(
            check(listed.clone(), &founded),
            Ok(FlagsVerdict::Note(_))
        ));
        // The founding list after the cluster grew: a warning naming the members now.
        match check(listed, &stored(three, four)) {
            Ok(FlagsVerdict::Warn(w)) => assert!(w.contains(four), "{w}"),
            other => panic!("{other:?}"),
        }
        // Another list: refused, saying what is held.
        let e = check(Start::Members(pairs("n1=a:1,n9=z:1")), &founded)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--members n1=a:1,n9=z:1 does not match")
                && e.contains("/var/lib/raft-kv holds node n1 of cluster shop")
                && e.contains(&format!("founded with {three}")),
            "{e}"
        );
        // A node that joined: --join is ignored once it was added.
        let joined = stored("", four);
        match check(Start::Join("a:1".into()), &joined) {
            Ok(FlagsVerdict::Warn(w)) => assert!(
                w.starts_with(
                    "--join a:1 is ignored: /var/lib/raft-kv holds node n1 of cluster shop"
                ),
                "{w}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            check(Start::Join("a:1".into()), &stored("", "")),
            Ok(FlagsVerdict::Fine),
            "not added yet: the join is asked again"
        );
        let e = check(Start::Members(pairs(three)), &stored("", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not added yet"), "{e}");
        let e = check(Start::Members(pairs(three)), &joined)
            .unwrap_err()
            .to_string();
        assert!(e.contains("which joined its cluster"), "{e}");
    }

    #[test]
    fn data_directory_problems_say_what_to_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let e = DataDir::open(&file).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("--data-dir {} is a file, not a directory", file.display())
        );
        let below = file.join("data");
        let e = DataDir::open(&below).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "--data-dir {}: {} is a file, not a directory",
                below.display(),
                file.display()
            )
        );
        assert!(matches!(
            DataDir::open(&below),
            Err(StartError::NotADirectory { file: f, .. }) if f == file
        ));
    }

    #[test]
    fn a_directory_in_use_names_the_process_that_holds_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("d");
        let first = DataDir::open(&path).unwrap();
        let second = DataDir::open(&path);
        match &second {
            Err(e @ StartError::DataDirLocked { dir, holder }) => {
                assert_eq!(dir, &path);
                assert_eq!(*holder, Some(std::process::id()));
                assert_eq!(e.kind(), crate::serve::StartErrorKind::DataDirLocked);
            }
            other => panic!("{other:?}"),
        }
        drop(second);
        drop(first);
        assert!(!path.exists(), "the first open made it and removes it");
    }

    #[test]
    fn a_failed_first_start_leaves_nothing_and_an_existing_store_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a").join("b");
        {
            let d = DataDir::open(&path).unwrap();
            std::fs::create_dir(path.join("raft")).unwrap();
            std::fs::write(path.join("node-id"), "n1\n").unwrap();
            assert_eq!(d.cluster(None).unwrap(), DEFAULT_CLUSTER);
            assert!(!d.held_state());
        }
        assert!(
            !tmp.path().join("a").exists(),
            "the directories it made are gone"
        );
        // A start that succeeds keeps everything; a later one that fails
        // removes nothing.
        let d = DataDir::open(&path).unwrap();
        std::fs::create_dir(path.join("raft")).unwrap();
        std::fs::write(path.join("node-id"), "n1\n").unwrap();
        assert_eq!(d.cluster(Some("shop")).unwrap(), "shop");
        drop(d.keep());
        {
            let d = DataDir::open(&path).unwrap();
            assert!(d.held_state());
            let e = d.cluster(Some("other")).unwrap_err();
            assert_eq!(e.kind(), crate::serve::StartErrorKind::DataDirMismatch);
            let e = e.to_string();
            assert!(
                e.contains("--cluster other does not match the cluster shop kept in"),
                "{e}"
            );
            assert_eq!(d.cluster(None).unwrap(), "shop");
        }
        for kept in ["raft", "node-id", "cluster", "LOCK"] {
            assert!(path.join(kept).exists(), "{kept} was removed");
        }
    }
}
