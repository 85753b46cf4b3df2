//! The persistence kit's crash-durability check: a store acknowledges a
//! save only once the save would survive the machine losing power.
//!
//! The checks of [`persistence`](super::persistence) reopen a store within
//! one process, which a store that never calls `fsync` passes: the page
//! cache answers for the disk. This check runs the store in a child
//! process and looks at it from two sides:
//!
//! - **Killed**: the parent kills the child with SIGKILL at random
//!   moments, reopens the store and requires every acknowledged save to be
//!   there (and nothing that was never submitted). This catches a store
//!   that acknowledges before it even writes (a buffer in the process).
//! - **Unsynced**: after each acknowledged save, the child looks up every
//!   page of every file under the store's directory in the kernel's page
//!   flags (`/proc/self/pagemap`, `/proc/kpageflags`): a page still dirty
//!   or under writeback is data a power loss would drop, so the save was
//!   acknowledged too early. This catches a store without `fsync`, which
//!   SIGKILL alone cannot: the page cache outlives the process.
//!
//! The page check needs Linux and root (the kernel hides page frame
//! numbers from other users) and a directory on a disk-backed file system
//! (tmpfs pages are never clean). Where it cannot run, the report says why
//! ([`Report::page_check`]) and only the kill half runs. It does not see
//! directory entries (a new file's name not yet made durable with a sync
//! of its directory).
//!
//! # How a test uses it
//!
//! The child is the test binary itself, run again with an environment
//! variable naming the store's directory; the child test opens the store
//! there and hands it to [`child`]. Both halves live in one test file:
//!
//! ```ignore
//! use raft_node::testkit::durability::{self, CrashTest};
//!
//! #[tokio::test]
//! async fn crash_child() {
//!     // Does nothing unless run by `crash_test` below.
//!     let Some(dir) = durability::child_dir() else { return };
//!     durability::child(|| FilePersistence::open(&dir)).await;
//! }
//!
//! #[tokio::test]
//! async fn my_store_keeps_what_it_acknowledged() {
//!     if durability::child_dir().is_some() { return; }
//!     let dir = tempfile::tempdir_in(".").unwrap();
//!     let open = || async { FilePersistence::open(dir.path()).await.unwrap() };
//!     durability::check(CrashTest::new("crash_child", dir.path()), open).await;
//! }
//! ```
//!
//! [`check`] panics with what went wrong; [`try_check`] returns it.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::persistence::{ChangeGenerator, Opener};
use crate::persistence::Persistence;

const CHILD_DIR: &str = "RAFT_KIT_CRASH_DIR";
const CHILD_SEED: &str = "RAFT_KIT_CRASH_SEED";
const CHILD_START: &str = "RAFT_KIT_CRASH_START";
const CHILD_STEPS: &str = "RAFT_KIT_CRASH_STEPS";
const CHILD_PAGES: &str = "RAFT_KIT_CRASH_PAGES";

/// How the parent runs the check.
#[derive(Debug, Clone)]
pub struct CrashTest {
    /// The name of the test that calls [`child`], run again with
    /// `--exact`.
    pub child_test: String,
    /// The store's directory: the child's store lives there, and the page
    /// check looks at every file under it.
    pub dir: PathBuf,
    /// How many times a child is started and killed (default 20).
    pub kills: u64,
    /// The most saves one child makes before it stops (default 300).
    pub steps: u64,
    /// The seed of the random changes and kill times.
    pub seed: u64,
    /// Whether the child looks at page flags after each save (default
    /// true; the check still runs without it where it cannot).
    pub page_check: bool,
}

impl CrashTest {
    /// A check of the store in `dir`, whose child half is the test named
    /// `child_test`.
    pub fn new(child_test: &str, dir: &Path) -> CrashTest {
        CrashTest {
            child_test: child_test.to_owned(),
            dir: dir.to_owned(),
            kills: 20,
            steps: 300,
            seed: 0xd0_7ab1e,
            page_check: true,
        }
    }

    /// Sets the number of kills.
    pub fn kills(mut self, kills: u64) -> CrashTest {
        self.kills = kills;
        self
    }

    /// Sets the most saves per child.
    pub fn steps(mut self, steps: u64) -> CrashTest {
        self.steps = steps;
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> CrashTest {
        self.seed = seed;
        self
    }

    /// Turns the page check off (a store whose files the check should not
    /// read, for example).
    pub fn without_page_check(mut self) -> CrashTest {
        self.page_check = false;
        self
    }
}

/// What a passing check saw.
#[derive(Debug, Clone)]
pub struct Report {
    /// Children started and killed.
    pub kills: u64,
    /// Saves acknowledged, over all children.
    pub acknowledged: u64,
    /// Saves found durable after a kill although their acknowledgement had
    /// not been seen (allowed: the kill came between the two).
    pub durable_before_ack: u64,
    /// Pages looked up in the page flags after acknowledged saves.
    pub pages_checked: u64,
    /// `Ok(())` if the page check ran, else why it could not.
    pub page_check: Result<(), String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} kills, {} saves acknowledged, {} more found durable before their acknowledgement, ",
            self.kills, self.acknowledged, self.durable_before_ack
        )?;
        match &self.page_check {
            Ok(()) => write!(
                f,
                "{} pages checked clean after acknowledgements",
                self.pages_checked
            ),
            Err(why) => write!(f, "page check not run: {why}"),
        }
    }
}

/// The store's directory when this process is a child started by
/// [`check`], else `None`.
pub fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD_DIR).map(PathBuf::from)
}

/// Runs the check; panics with what went wrong.
pub async fn check<O: Opener>(test: CrashTest, open: O) -> Report {
    match try_check(test, open).await {
        Ok(report) => report,
        Err(e) => panic!("crash durability: {e}"),
    }
}

/// Runs the check; returns what went wrong.
pub async fn try_check<O: Opener>(test: CrashTest, mut open: O) -> Result<Report, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding the test binary: {e}"))?;
    let mut rng = SmallRng::seed_from_u64(test.seed);
    // The parent's copy of the generator, at the last step known durable.
    let mut generator = ChangeGenerator::new(test.seed);
    let mut durable: u64 = 0;
    let mut report = Report {
        kills: 0,
        acknowledged: 0,
        durable_before_ack: 0,
        pages_checked: 0,
        page_check: Err("no child got far enough to say".into()),
    };
    for kill in 0..test.kills {
        let mut child = Command::new(&exe)
            .args([
                &test.child_test,
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, &test.dir)
            .env(CHILD_SEED, test.seed.to_string())
            .env(CHILD_START, durable.to_string())
            .env(CHILD_STEPS, test.steps.to_string())
            .env(CHILD_PAGES, u8::from(test.page_check).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the child {}: {e}", exe.display()))?;
        let mut lines = Lines::read(&mut child);
        // Let it open and write for a while, then kill it; now and then
        // while it opens.
        let ready = if rng.random_ratio(1, 6) {
            std::thread::sleep(Duration::from_micros(rng.random_range(0..20_000)));
            false
        } else {
            lines.wait_for("READY", Duration::from_secs(60))
        };
        if ready {
            std::thread::sleep(Duration::from_micros(rng.random_range(2_000..150_000)));
        }
        let _ = child.kill();
        let status = child
            .wait()
            .map_err(|e| format!("waiting for the child: {e}"))?;
        let (out, err) = lines.finish();
        let mut seen = Seen::new(durable);
        for line in &out {
            seen.line(line);
        }
        if let Some(unsynced) = &seen.unsynced {
            return Err(format!(
                "save {} was acknowledged while {unsynced} not on disk yet: a power loss \
                 would drop it; the store must sync (fdatasync) before it acknowledges",
                seen.acked
            ));
        }
        if let Some(why) = &seen.child_failed {
            return Err(format!("the child failed: {why}"));
        }
        if !seen.done && status.success() {
            return Err(format!(
                "child {kill} exited on its own before finishing; its stderr:\n{}",
                err.join("\n")
            ));
        }
        if let Some(page_check) = seen.page_check.clone() {
            report.page_check = page_check;
        }
        report.pages_checked += seen.pages;

        // What is there must be the state after some step between the last
        // acknowledged and the last submitted one.
        let store = open.open().await;
        let loaded = store
            .load()
            .await
            .map_err(|e| format!("reopening after kill {kill}: {e}"))?;
        drop(store);
        for _ in durable..seen.acked {
            generator.next_change();
        }
        let mut candidate = generator.clone();
        let mut matched = None;
        let mut errors = Vec::new();
        for step in seen.acked..=seen.submitted {
            if step > seen.acked {
                candidate.next_change();
            }
            match candidate.model().check(loaded.as_ref()) {
                Ok(()) => {
                    matched = Some((step, candidate.clone()));
                    break;
                }
                Err(e) => errors.push(format!("after save {step}: {e}")),
            }
        }
        let Some((step, at)) = matched else {
            return Err(format!(
                "after kill {kill} the store matches no state between the last acknowledged \
                 save ({}) and the last submitted one ({}): an acknowledged save was lost\n{}",
                seen.acked,
                seen.submitted,
                errors.join("\n")
            ));
        };
        report.kills += 1;
        report.acknowledged += seen.acked - durable;
        report.durable_before_ack += step - seen.acked;
        generator = at;
        durable = step;
    }
    if durable == 0 && test.kills > 0 {
        return Err("no child acknowledged a save".into());
    }
    Ok(report)
}

/// The child's half: opens the store with `open`, checks it holds what
/// the parent says was durable, then saves random changes one at a time,
/// printing each it submits and each acknowledgement, and after each
/// acknowledgement looks for pages not yet on disk. Returns at once when
/// this process is not a child ([`child_dir`] is `None`).
pub async fn child<O: Opener>(mut open: O) {
    let Some(dir) = child_dir() else {
        return;
    };
    let var = |name: &str| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("crash child: {name} missing"))
    };
    let (seed, start, steps) = (var(CHILD_SEED), var(CHILD_START), var(CHILD_STEPS));
    let mut pages = if var(CHILD_PAGES) == 1 {
        PageFlags::open(&dir)
    } else {
        Err("turned off".into())
    };
    match &pages {
        Ok(_) => println!("PAGES ok"),
        Err(why) => println!("PAGES off {why}"),
    }
    let mut generator = ChangeGenerator::new(seed);
    for _ in 0..start {
        generator.next_change();
    }
    let store = open.open().await;
    let loaded = match store.load().await {
        Ok(loaded) => loaded,
        Err(e) => return fail(&format!("load: {e}")),
    };
    if let Err(e) = generator.model().check(loaded.as_ref()) {
        return fail(&format!(
            "the store does not hold the {start} saves it should: {e}"
        ));
    }
    println!("READY {start}");
    for step in start + 1..=start + steps {
        println!("SUBMIT {step}");
        if let Err(e) = store.save(generator.next_change()).await {
            return fail(&format!("save {step}: {e}"));
        }
        println!("ACK {step}");
        if let Ok(flags) = &mut pages {
            match flags.unsynced(&dir) {
                Ok((checked, None)) => println!("CLEAN {checked}"),
                Ok((_, Some(what))) => {
                    println!("UNSYNCED {what}");
                    std::process::exit(3);
                }
                Err(e) => return fail(&format!("page check: {e}")),
            }
        }
    }
    println!("DONE {}", start + steps);
}

fn fail(why: &str) {
    println!("FAILED {why}");
    std::process::exit(2);
}

/// What the parent read from one child.
struct Seen {
    submitted: u64,
    acked: u64,
    done: bool,
    pages: u64,
    page_check: Option<Result<(), String>>,
    unsynced: Option<String>,
    child_failed: Option<String>,
}

impl Seen {
    fn new(durable: u64) -> Seen {
        Seen {
            submitted: durable,
            acked: durable,
            done: false,
            pages: 0,
            page_check: None,
            unsynced: None,
            child_failed: None,
        }
    }

    fn line(&mut self, line: &str) {
        // The test harness may print before the child's first line.
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| {
            matches!(
                *w,
                "READY" | "SUBMIT" | "ACK" | "DONE" | "CLEAN" | "UNSYNCED" | "PAGES" | "FAILED"
            )
        }) else {
            return;
        };
        let rest = words[at + 1..].join(" ");
        let number = words.get(at + 1).and_then(|n| n.parse::<u64>().ok());
        match (words[at], number) {
            ("SUBMIT", Some(n)) => self.submitted = self.submitted.max(n),
            ("ACK", Some(n)) => self.acked = self.acked.max(n),
            ("DONE", Some(_)) => self.done = true,
            ("CLEAN", Some(n)) => self.pages += n,
            ("UNSYNCED", _) => self.unsynced = Some(rest),
            ("FAILED", _) => self.child_failed = Some(rest),
            ("PAGES", _) if rest == "ok" => self.page_check = Some(Ok(())),
            ("PAGES", _) => {
                self.page_check = Some(Err(rest.trim_start_matches("off ").to_owned()));
            }
            _ => {}
        }
    }
}

/// The child's output, read on threads so that it never blocks.
struct Lines {
    out: mpsc::Receiver<String>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
    early: VecDeque<String>,
}

impl Lines {
    fn read(child: &mut std::process::Child) -> Lines {
        let (tx, out) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let out_thread = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
            Vec::new()
        });
        let err_thread = std::thread::spawn(move || {
            let mut lines: Vec<String> = BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .collect();
            let keep = lines.len().saturating_sub(40);
            lines.drain(..keep);
            lines
        });
        Lines {
            out,
            threads: vec![out_thread, err_thread],
            early: VecDeque::new(),
        }
    }

    /// Waits up to `limit` for a line containing `word`; false if the
    /// output ended or the time ran out first.
    fn wait_for(&mut self, word: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match self
                .out
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    let found = line.contains(word);
                    // Kept for `finish`.
                    self.early.push_back(line);
                    if found {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// All stdout lines and the last stderr lines, once the child is gone.
    fn finish(mut self) -> (Vec<String>, Vec<String>) {
        let mut threads = std::mem::take(&mut self.threads).into_iter();
        let out_thread = threads.next().expect("stdout thread");
        let err_thread = threads.next().expect("stderr thread");
        let _ = out_thread.join();
        let mut out: Vec<String> = self.early.drain(..).collect();
        out.extend(self.out.try_iter());
        let err = err_thread.join().unwrap_or_default();
        (out, err)
    }
}

/// Reads the kernel's flags of page-cache pages.
struct PageFlags {
    pagemap: File,
    kpageflags: File,
}

/// `KPF_DIRTY` and `KPF_WRITEBACK` in `/proc/kpageflags`
/// (Documentation/admin-guide/mm/pagemap.rst).
const KPF_DIRTY: u64 = 1 << 4;
const KPF_WRITEBACK: u64 = 1 << 8;
const PAGE: usize = 4096;
const TMPFS_MAGIC: i64 = 0x0102_1994;

impl PageFlags {
    /// Opens the page flags, or says why they cannot be read for `dir`.
    fn open(dir: &Path) -> Result<PageFlags, String> {
        if !cfg!(target_os = "linux") {
            return Err("page flags are Linux only".into());
        }
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| "the directory's name holds a NUL byte".to_owned())?;
        // SAFETY: statfs writes into the zeroed struct we own; the path is
        // a valid C string.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c_dir.as_ptr(), &mut fs) } != 0 {
            return Err(format!(
                "statfs {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            ));
        }
        if fs.f_type as i64 == TMPFS_MAGIC {
            return Err(format!(
                "{} is on tmpfs, whose pages are never written to a disk",
                dir.display()
            ));
        }
        let pagemap =
            File::open("/proc/self/pagemap").map_err(|e| format!("/proc/self/pagemap: {e}"))?;
        let kpageflags = File::open("/proc/kpageflags")
            .map_err(|e| format!("/proc/kpageflags: {e} (needs root)"))?;
        let flags = PageFlags {
            pagemap,
            kpageflags,
        };
        // Without CAP_SYS_ADMIN the kernel reports page frame number 0.
        let probe = [7u8; PAGE];
        let pfn = flags.frame_of(probe.as_ptr())?;
        if pfn == 0 {
            return Err("page frame numbers are hidden (needs root)".into());
        }
        Ok(flags)
    }

    /// The page frame number behind the byte at `at` of this process.
    fn frame_of(&self, at: *const u8) -> Result<u64, String> {
        // SAFETY: reads one byte of memory the caller owns, so the page is
        // mapped in before its entry is read.
        unsafe { std::ptr::read_volatile(at) };
        let mut entry = [0u8; 8];
        self.pagemap
            .read_exact_at(&mut entry, (at as usize / PAGE * 8) as u64)
            .map_err(|e| format!("reading /proc/self/pagemap: {e}"))?;
        let entry = u64::from_le_bytes(entry);
        if entry >> 63 == 0 {
            return Ok(0);
        }
        Ok(entry & ((1 << 55) - 1))
    }

    /// Looks at every page of every file under `dir`: the pages checked,
    /// and the first file and page still dirty or under writeback.
    fn unsynced(&mut self, dir: &Path) -> Result<(u64, Option<String>), String> {
        let mut checked = 0;
        let mut stack = vec![dir.to_owned()];
        while let Some(at) = stack.pop() {
            let entries = match std::fs::read_dir(&at) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("listing {}: {e}", at.display())),
            };
            for entry in entries {
                let entry = entry.map_err(|e| format!("listing {}: {e}", at.display()))?;
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() {
                    let (n, bad) = self.file(&path)?;
                    checked += n;
                    if let Some(page) = bad {
                        return Ok((
                            checked,
                            Some(format!("page {page} of {} was", path.display())),
                        ));
                    }
                }
            }
        }
        Ok((checked, None))
    }

    /// Checks one file: pages looked at, and the first unsynced one.
    fn file(&mut self, path: &Path) -> Result<(u64, Option<u64>), String> {
        let file = match File::open(path) {
            Ok(file) => file,
            // Removed meanwhile (compaction): nothing to lose.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, None)),
            Err(e) => return Err(format!("opening {}: {e}", path.display())),
        };
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        if len == 0 {
            return Ok((0, None));
        }
        // SAFETY: a read-only shared mapping; the store may change the file
        // meanwhile, which changes what we read, not whether we may read it
        // (we read one byte per page and never keep a reference).
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| format!("mapping {}: {e}", path.display()))?;
        let pages = (len as usize).div_ceil(PAGE);
        for page in 0..pages {
            let pfn = self.frame_of(map[page * PAGE..].as_ptr())?;
            if pfn == 0 {
                continue;
            }
            let mut flags = [0u8; 8];
            self.kpageflags
                .read_exact_at(&mut flags, pfn * 8)
                .map_err(|e| format!("reading /proc/kpageflags: {e}"))?;
            if u64::from_le_bytes(flags) & (KPF_DIRTY | KPF_WRITEBACK) != 0 {
                return Ok((page as u64 + 1, Some(page as u64)));
            }
        }
        Ok((pages as u64, None))
    }
}
