//! Faults injected into real `raft-kv serve` processes under a client
//! workload, in the manner of Jepsen: for each nemesis, a fresh cluster,
//! clients doing GET, SET (some with a time to live), SET NX, CAS and
//! transactions (a CAS as WATCH/GET/MULTI/SET/EXEC, and writes and reads
//! of a pair of keys in one MULTI/EXEC) on a few keys, a seeded schedule
//! of faults and heals, then a check that
//!
//! - the history of every key is linearizable (raft-lincheck), including a
//!   final linearizable read of every key, so a lost acknowledged write
//!   shows as a violation;
//! - no transaction is seen half done (the pair's two keys read in one
//!   transaction always hold the same value);
//! - every node converges on those final values (local reads);
//! - after the last heal, a write succeeds within the liveness bound;
//! - no node exited on its own.
//!
//! The report of each nemesis gives the operations that succeeded, failed
//! for certain or have an unknown outcome, the verdict, and the longest
//! unavailability after a fault (the longest time without an acknowledged
//! write from the fault to the first one after its heal).

#![warn(missing_docs)]

pub mod cluster;
pub mod net;
pub mod plot;
pub mod relay;
pub mod resp;
pub mod workload;

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use raft_lincheck::{Input, Operation, Output};

use cluster::{Cluster, Setup};
use net::{Namespaces, Net};
use resp::Reply;
use workload::Shared;

/// A small deterministic generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A duration in `[min, max)`.
    pub fn between(&mut self, min: Duration, max: Duration) -> Duration {
        let span = (max - min).as_millis() as u64;
        min + Duration::from_millis(self.below(span))
    }

    /// The numbers `0..n` in a random order.
    pub fn shuffled(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
        v
    }
}

/// A kind of fault, injected and healed over and over during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nemesis {
    /// SIGKILL a random node, then restart it.
    KillRandom,
    /// SIGKILL the leader, then restart it.
    KillLeader,
    /// SIGKILL a majority, then restart them.
    KillMajority,
    /// SIGSTOP a random node for longer than an election timeout, then
    /// SIGCONT.
    PauseRandom,
    /// SIGSTOP the leader for longer than an election timeout, then SIGCONT.
    PauseLeader,
    /// Split the nodes into two halves that cannot reach each other.
    PartitionHalves,
    /// Cut one random node off from all others.
    PartitionOne,
    /// Cut the leader off from all others.
    PartitionLeader,
    /// Split the others into two halves, with one node that sees both.
    PartitionBridge,
    /// Nodes on a ring, each seeing only its two neighbours: overlapping
    /// majorities, none of which sees all the others (on 3 nodes: a line).
    PartitionRing,
    /// Slow links between nodes: netem delay with jitter where the kernel
    /// has it, else a token-bucket bandwidth limit (tbf) that queues
    /// packets.
    SlowPackets,
    /// Packets between nodes dropped and duplicated at random (nftables).
    FlakyPackets,
    /// Every link between nodes delayed, each by its own base delay with
    /// jitter, so that messages of different connections overtake one
    /// another, and some connections replayed (duplicated messages):
    /// netem where the kernel has it, else relays in the runner.
    Delay,
    /// A node's clock jumps ahead, or the node restarts with a clock that
    /// runs fast or slow (libfaketime: its monotonic and wall clocks
    /// alike).
    ClockSkew,
    /// A node's data directory (a tmpfs) filled up: it must exit, and
    /// restart once space is freed.
    DiskFull,
    /// A node restarted with every fsync after the first few failing: it
    /// must exit, and restart on a working disk.
    FsyncFail,
    /// A node's disk hangs (the leader half the time): every fsync of it
    /// waits until the heal. A leader that cannot make its log durable
    /// must hand over instead of holding the cluster up.
    DiskStall,
    /// A voter (the leader half the time) removed and replaced by a fresh,
    /// empty node that joins (`--join`).
    Membership,
    /// Several faults at once on different nodes: a kill, a pause, a node
    /// cut off and a clock jump (those that can run here).
    Combined,
    /// Each fault one of the others, at random (those that can run here).
    Mixed,
    /// No fault: the clients alone, for a baseline (not in [`Nemesis::ALL`]).
    None,
}

impl Nemesis {
    /// Every nemesis, in the order a full run goes through them.
    pub const ALL: [Nemesis; 20] = [
        Nemesis::KillRandom,
        Nemesis::KillLeader,
        Nemesis::KillMajority,
        Nemesis::PauseRandom,
        Nemesis::PauseLeader,
        Nemesis::PartitionHalves,
        Nemesis::PartitionOne,
        Nemesis::PartitionLeader,
        Nemesis::PartitionBridge,
        Nemesis::PartitionRing,
        Nemesis::SlowPackets,
        Nemesis::FlakyPackets,
        Nemesis::Delay,
        Nemesis::ClockSkew,
        Nemesis::DiskFull,
        Nemesis::FsyncFail,
        Nemesis::DiskStall,
        Nemesis::Membership,
        Nemesis::Combined,
        Nemesis::Mixed,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Nemesis::KillRandom => "kill-random",
            Nemesis::KillLeader => "kill-leader",
            Nemesis::KillMajority => "kill-majority",
            Nemesis::PauseRandom => "pause-random",
            Nemesis::PauseLeader => "pause-leader",
            Nemesis::PartitionHalves => "partition-halves",
            Nemesis::PartitionOne => "partition-one",
            Nemesis::PartitionLeader => "partition-leader",
            Nemesis::PartitionBridge => "partition-bridge",
            Nemesis::PartitionRing => "partition-ring",
            Nemesis::SlowPackets => "slow-packets",
            Nemesis::FlakyPackets => "flaky-packets",
            Nemesis::Delay => "delay",
            Nemesis::ClockSkew => "clock-skew",
            Nemesis::DiskFull => "disk-full",
            Nemesis::FsyncFail => "fsync-fail",
            Nemesis::DiskStall => "disk-stall",
            Nemesis::Membership => "membership",
            Nemesis::Combined => "combined",
            Nemesis::Mixed => "mixed",
            Nemesis::None => "none",
        }
    }

    /// The nemesis of that name.
    pub fn parse(name: &str) -> Option<Nemesis> {
        Nemesis::ALL
            .into_iter()
            .chain([Nemesis::None])
            .find(|n| n.name() == name)
    }

    /// Whether it needs network namespaces.
    pub fn needs_namespaces(self) -> bool {
        matches!(
            self,
            Nemesis::PartitionHalves
                | Nemesis::PartitionOne
                | Nemesis::PartitionLeader
                | Nemesis::PartitionBridge
                | Nemesis::PartitionRing
                | Nemesis::SlowPackets
                | Nemesis::FlakyPackets
                | Nemesis::Delay
        )
    }

    /// Why it cannot run with `caps`, if it cannot.
    pub fn missing(self, caps: &Capabilities) -> Option<&'static str> {
        match self {
            n if n.needs_namespaces() && !caps.namespaces => Some("needs network namespaces"),
            Nemesis::ClockSkew if !caps.faketime => {
                Some("needs libfaketime (Debian package libfaketime)")
            }
            Nemesis::FlakyPackets if !caps.nft => Some("needs nftables (Debian package nftables)"),
            Nemesis::SlowPackets if !caps.tbf => Some("needs tc (iproute2) with netem or tbf"),
            Nemesis::Delay if !caps.netem && !caps.relay => {
                Some("needs netem, or nftables with nat for the relays")
            }
            Nemesis::DiskFull if !caps.tmpfs => Some("needs to mount a tmpfs (root)"),
            _ => None,
        }
    }

    /// Its schedule's seed, from the run's: a nemesis run alone with the
    /// same seed makes the same choices.
    fn seed(self, seed: u64) -> u64 {
        self.name()
            .bytes()
            .fold(seed ^ 0xCBF2_9CE4_8422_2325, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
            })
    }
}

/// Where the nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetChoice {
    /// In network namespaces if possible, else on 127.0.0.1 (saying why).
    Auto,
    /// In network namespaces (an error if impossible).
    Namespaces,
    /// On 127.0.0.1: kills and pauses only.
    Loopback,
}

/// What this machine lets a run do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Capabilities {
    /// Network namespaces: partitions and flaky packets.
    pub namespaces: bool,
    /// Mounting a tmpfs (root): a disk that fills.
    pub tmpfs: bool,
    /// libfaketime: clocks of their own per node.
    pub faketime: bool,
    /// nftables in the namespaces: packet loss.
    pub nft: bool,
    /// tc netem in the namespaces: delay, jitter.
    pub netem: bool,
    /// tc tbf in the namespaces: a bandwidth limit (slow links without
    /// netem).
    pub tbf: bool,
    /// nftables redirections in the namespaces: relays on the links
    /// (delays without netem).
    pub relay: bool,
}

impl Capabilities {
    /// What the machine offers, `namespaces` given (they were made or
    /// not); checks tmpfs, libfaketime, nftables and netem by trying them.
    pub fn probe(namespaces: Option<&Namespaces>) -> Capabilities {
        let (nft, netem, tbf, relay) = match namespaces {
            Some(ns) => (
                ns.try_nft(),
                ns.try_netem(),
                ns.try_tbf(),
                ns.try_redirect(),
            ),
            None => (false, false, false, false),
        };
        Capabilities {
            namespaces: namespaces.is_some(),
            tmpfs: tmpfs_works(),
            faketime: std::path::Path::new(cluster::LIBFAKETIME).exists(),
            nft,
            netem,
            tbf: tbf || netem,
            relay,
        }
    }
}

/// Whether a tmpfs can be mounted here (tried on a directory of its own).
fn tmpfs_works() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    let dir = std::env::temp_dir().join(format!("raft-kv-chaos-probe-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return false;
    }
    let path = dir.display().to_string();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs", &path])
        .output()
        .is_ok_and(|o| o.status.success());
    if mounted {
        let _ = std::process::Command::new("umount").arg(&path).output();
    }
    let _ = std::fs::remove_dir(&dir);
    mounted
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `raft-kv` executable.
    pub bin: PathBuf,
    /// How many nodes (3 or 5).
    pub nodes: usize,
    /// How many clients.
    pub clients: u64,
    /// How many keys.
    pub keys: u64,
    /// The seed of the fault schedules and of the clients' choices.
    pub seed: u64,
    /// How long the nemeses run (faults and heals).
    pub duration: Length,
    /// The longest a write may take to succeed after the last heal.
    pub liveness_bound: Duration,
    /// Clients read with READONLY (local, possibly stale reads): the
    /// check must then fail under partitions.
    pub readonly_reads: bool,
    /// A leader answers plain SETs once its own log holds them, before a
    /// majority does (a test-only server fault): the check must then fail
    /// when leaders are killed.
    pub early_ack: bool,
    /// EXEC ignores watched keys (a test-only server fault): the check
    /// must then fail, a WATCH/MULTI/EXEC CAS succeeding from a value the
    /// key no longer held.
    pub ignore_watch: bool,
    /// The relays of the `delay` nemesis on every link for every nemesis
    /// (without it, only where a `delay` fault may come: `delay`,
    /// `combined`, `mixed`).
    pub relays: bool,
    /// Mutual TLS between the nodes.
    pub tls: bool,
    /// Where the nodes run.
    pub net: NetChoice,
    /// The nemeses to run, one after the other.
    pub nemeses: Vec<Nemesis>,
    /// Where the nodes' data and logs go (a directory per nemesis, removed
    /// if it passes).
    pub dir: PathBuf,
    /// Where to draw each nemesis's latency and throughput pictures, if
    /// anywhere.
    pub plots: Option<PathBuf>,
    /// Keep every nemesis's data, logs and history (`history.txt`), not
    /// only those of the nemeses that failed.
    pub keep: bool,
}

/// How long the nemeses of a run run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Each this long.
    Each(Duration),
    /// The whole run about this long: each nemesis gets an equal share of
    /// what is left when it starts (so the time spent starting clusters and
    /// checking histories comes out of it too).
    Total(Duration),
}

impl Length {
    /// The shortest a nemesis may run: a quiet spell and a fault held
    /// longer than an election timeout, then its heal.
    pub const MIN_EACH: Duration = Duration::from_secs(3);

    /// Parses a length as given to `--duration`: a number of seconds, or a
    /// number followed by `s`, `m` or `h` (`90`, `90s`, `2m`, `30m`, `1h`,
    /// `1.5h`).
    pub fn parse_duration(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
            Some((i, _)) => t.split_at(i),
            None => (t, "s"),
        };
        let scale = match unit {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(format!(
                    "{text:?} is not a length: give seconds (90) or a number with s, m or h (90s, 30m, 1h)"
                ))
            }
        };
        let value: f64 = number.trim().parse().map_err(|_| {
            format!("{text:?} is not a length: give seconds (90) or a number with s, m or h (90s, 30m, 1h)")
        })?;
        if !value.is_finite() || value <= 0.0 {
            return Err(format!("{text:?}: a length must be more than 0"));
        }
        let seconds = value * scale;
        if seconds > 7.0 * 86400.0 {
            return Err(format!("{text:?}: more than a week"));
        }
        Ok(Duration::from_secs_f64(seconds))
    }

    /// How long the next nemesis runs, with `left` nemeses (this one
    /// included) to run and `remaining` of a total left.
    fn next(self, remaining: Duration, left: usize) -> Duration {
        match self {
            Length::Each(d) => d,
            Length::Total(_) => (remaining / left.max(1) as u32).max(Length::MIN_EACH),
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// What was done, e.g. `kill n2 (leader)`.
    pub what: String,
    /// When it was injected (µs since the start of the run).
    pub at: u64,
    /// When it was healed.
    pub healed: u64,
}

/// The outcome of one nemesis.
#[derive(Debug, Clone)]
pub struct Report {
    /// The nemesis.
    pub nemesis: Nemesis,
    /// The seed of its schedule (with `--nemesis` it replays).
    pub seed: u64,
    /// Operations acknowledged.
    pub ok: u64,
    /// Operations that certainly had no effect.
    pub failed: u64,
    /// Writes whose outcome is unknown (no reply, or an error that does
    /// not rule out an effect).
    pub unknown: u64,
    /// Writes with a time to live (`SET .. PX`) that may have taken effect
    /// (acknowledged or unknown).
    pub expiring: u64,
    /// Transactions that EXEC answered.
    pub transactions: u64,
    /// The slowest fdatasync of the runner's disk probe during the run.
    pub slowest_sync: Duration,
    /// The faults, in order.
    pub faults: Vec<Fault>,
    /// The longest time without an acknowledged write, from a fault to the
    /// first acknowledged write after its heal.
    pub longest_unavailability: Duration,
    /// The fault it followed.
    pub worst_fault: Option<String>,
    /// The time from the last heal to the first successful write, if
    /// one succeeded within the bound.
    pub liveness: Option<Duration>,
    /// The checker's verdict.
    pub verdict: String,
    /// Everything wrong: a violation, a liveness miss, a divergence, a
    /// node that exited. Empty if the nemesis passed.
    pub problems: Vec<String>,
    /// Where its data and logs are, if kept (it failed).
    pub kept: Option<PathBuf>,
    /// Its latency and throughput pictures, if drawn.
    pub plots: Vec<PathBuf>,
}

impl Report {
    /// Whether nothing went wrong.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<17} {:>6} ok {:>5} failed {:>4} unknown ({} expiring writes, {} transactions)  {:>2} faults  unavailable <= {:>4.2} s ({})  ",
            self.nemesis.name(),
            self.ok,
            self.failed,
            self.unknown,
            self.expiring,
            self.transactions,
            self.faults.len(),
            self.longest_unavailability.as_secs_f64(),
            self.worst_fault.as_deref().unwrap_or("no fault"),
        )?;
        if self.slowest_sync >= Duration::from_secs(1) {
            write!(
                f,
                "disk stalled up to {:.2} s  ",
                self.slowest_sync.as_secs_f64()
            )?;
        }
        match self.liveness {
            Some(d) => write!(f, "write {:.2} s after heal  ", d.as_secs_f64())?,
            None => write!(f, "no write after heal  ")?,
        }
        if self.passed() {
            write!(f, "PASS")
        } else {
            let firsts: Vec<&str> = self
                .problems
                .iter()
                .map(|p| p.lines().next().unwrap_or_default())
                .collect();
            write!(f, "FAIL: {}", firsts.join("; "))
        }
    }
}

/// Runs every nemesis of `config`, printing as it goes; the reports. An
/// error if the run itself could not proceed (a node that does not start,
/// namespaces asked for and unavailable).
pub fn run(config: &Config) -> Result<Vec<Report>, String> {
    for dir in remove_leftover_dirs() {
        println!("removed the data of an earlier run: {}", dir.display());
    }
    let removed = net::remove_leftovers();
    if !removed.is_empty() {
        println!(
            "removed the namespaces of an earlier run: {}",
            removed.join(" ")
        );
    }
    let namespaces = match (config.net, net::unavailable()) {
        (NetChoice::Loopback, _) => None,
        (NetChoice::Namespaces, Some(why)) => {
            return Err(format!("network namespaces unavailable: {why}"))
        }
        (NetChoice::Namespaces, None) => Some(Namespaces::create(config.nodes)?),
        (NetChoice::Auto, None) => {
            match Namespaces::create(config.nodes) {
                Ok(ns) => Some(ns),
                Err(e) => {
                    println!("network namespaces unavailable ({e}): nodes on 127.0.0.1, kill and pause only");
                    None
                }
            }
        }
        (NetChoice::Auto, Some(why)) => {
            println!(
                "network namespaces unavailable ({why}): nodes on 127.0.0.1, kill and pause only"
            );
            None
        }
    };
    let caps = Capabilities::probe(namespaces.as_ref());
    let runnable: Vec<Nemesis> = config
        .nemeses
        .iter()
        .copied()
        .filter(|n| n.missing(&caps).is_none())
        .collect();
    let shared_net = namespaces.map(|ns| Arc::new(Net::Namespaces(ns)));
    println!(
        "raft-kv chaos: {} nodes {}, {} clients, {} keys, {}, seed {}{}",
        config.nodes,
        if shared_net.is_some() {
            "in network namespaces (10.77.0.0/24)"
        } else {
            "on 127.0.0.1"
        },
        config.clients,
        config.keys,
        match config.duration {
            Length::Each(d) => format!("{:.1} s per nemesis", d.as_secs_f64()),
            Length::Total(d) => format!(
                "{} in all ({:.1} s per nemesis, less the time to start and check each)",
                human(d),
                d.as_secs_f64() / runnable.len().max(1) as f64
            ),
        },
        config.seed,
        if config.readonly_reads {
            ", READONLY reads (stale reads expected)"
        } else {
            ""
        }
    );
    println!(
        "faults available: tmpfs {}, libfaketime {}, nftables loss {}, netem delay {}, relays {}{}",
        yes_no(caps.tmpfs),
        yes_no(caps.faketime),
        yes_no(caps.nft),
        yes_no(caps.netem),
        yes_no(caps.relay),
        if caps.namespaces && !caps.netem {
            " (no sch_netem in this kernel: slow-packets limits bandwidth with tbf instead of delaying, flaky-packets drops and duplicates with nftables, delay holds bytes back in relays of the runner, where connections overtake one another)"
        } else {
            ""
        }
    );
    if config.relays && (!caps.relay || caps.netem) {
        println!("--relays: no relays here (they need namespaces and nftables nat, and are used only without netem)");
    }
    let mut reports = Vec::new();
    let started = Instant::now();
    let total = match config.duration {
        Length::Total(d) => d,
        Length::Each(d) => d * runnable.len() as u32,
    };
    for &nemesis in &config.nemeses {
        if let Some(why) = nemesis.missing(&caps) {
            println!("{:<17} skipped: {why}", nemesis.name());
            continue;
        }
        let net = match &shared_net {
            Some(n) => n.clone(),
            None => Arc::new(Net::loopback(config.nodes).map_err(|e| e.to_string())?),
        };
        let left = runnable.len() - reports.len();
        let duration = config
            .duration
            .next(total.saturating_sub(started.elapsed()), left);
        let report = run_one(config, nemesis, net, &caps, duration)?;
        println!("{report}");
        if let Some(dir) = &report.kept {
            println!("  data and logs kept in {}", dir.display());
            let _ = std::fs::write(config.dir.join(KEPT), "");
        }
        for plot in &report.plots {
            println!("  plot: {}", plot.display());
        }
        reports.push(report);
    }
    Ok(reports)
}

/// The file in a run's directory that says a failure kept its data: the
/// next run leaves it.
const KEPT: &str = "kept";

/// The start of the name of a run's default directory (followed by the
/// runner's process id).
pub const DIR_PREFIX: &str = "raft-kv-chaos-";

/// Removes the default directories (`raft-kv-chaos-<pid>` in the temporary
/// directory) of runners that are no longer running, unmounting the tmpfs
/// they left, except those a failure kept; returns them.
pub fn remove_leftover_dirs() -> Vec<PathBuf> {
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return Vec::new();
    };
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        if pid == std::process::id()
            || std::path::Path::new(&format!("/proc/{pid}")).exists()
            || dir.join(KEPT).exists()
        {
            continue;
        }
        let prefix = format!("{}/", dir.display());
        for point in mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&prefix))
        {
            let _ = std::process::Command::new("umount")
                .args(["-l", point])
                .output();
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

/// A length as `30m`, `1h 30m`, `45 s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m}m"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, 0) => format!("{h}h {m}m"),
        _ => format!("{:.0} s", d.as_secs_f64()),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Prints a line prefixed with the time since `started`.
fn note(started: Instant, text: &str) {
    println!("  {:>6.2}s {text}", started.elapsed().as_secs_f64());
}

/// Runs one nemesis on a fresh cluster.
fn run_one(
    config: &Config,
    nemesis: Nemesis,
    net: Arc<Net>,
    caps: &Capabilities,
    duration: Duration,
) -> Result<Report, String> {
    let seed = nemesis.seed(config.seed);
    let dir = config.dir.join(nemesis.name());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    println!("{} (seed {})", nemesis.name(), config.seed);
    let setup = Setup {
        env: [
            config.early_ack.then(|| {
                (
                    raft_kv_fault::EARLY_ACK.to_string(),
                    raft_kv_fault::EARLY_ACK_HOLD_MS.to_string(),
                )
            }),
            config
                .ignore_watch
                .then(|| (raft_kv_fault::IGNORE_WATCH.to_string(), "1".to_string())),
        ]
        .into_iter()
        .flatten()
        .collect(),
        tls: config.tls,
        tmpfs: caps.tmpfs && matches!(nemesis, Nemesis::DiskFull | Nemesis::Mixed),
        stall_disk: matches!(nemesis, Nemesis::DiskStall | Nemesis::Mixed),
        fake_clock: caps.faketime
            && matches!(
                nemesis,
                Nemesis::ClockSkew | Nemesis::Combined | Nemesis::Mixed
            ),
        relays: (caps.relay
            && !caps.netem
            && (config.relays
                || matches!(nemesis, Nemesis::Delay | Nemesis::Combined | Nemesis::Mixed)))
        .then_some(seed),
    };
    let mut cluster = Cluster::start(&config.bin, &dir, net.clone(), config.nodes, &setup)?;
    if cluster.leader(Duration::from_secs(20)).is_none() {
        return Err(format!("{}: no leader within 20 s", nemesis.name()));
    }
    cluster.wait_users(Duration::from_secs(10))?;
    let shared = Arc::new(Shared {
        net: net.clone(),
        nodes: config.nodes,
        keys: config.keys,
        readonly: config.readonly_reads,
        started: Instant::now(),
        stop: AtomicBool::new(false),
        history: Mutex::new(Vec::new()),
        timings: Mutex::new(Vec::new()),
        longest_ttl_ms: AtomicU64::new(0),
        transactions: AtomicU64::new(0),
        anomalies: Mutex::new(Vec::new()),
    });
    let _stop = StopOnDrop(shared.clone());
    let probe_disk = DiskProbe::start(&dir, shared.started);
    let clients: Vec<_> = (0..config.clients)
        .map(|id| {
            let shared = shared.clone();
            let seed = config.seed;
            thread::spawn(move || workload::client(id, seed, shared))
        })
        .collect();

    let mut problems = Vec::new();
    let mut rng = Rng::new(seed);
    let mut faults = Vec::new();
    let end = shared.started + duration;
    loop {
        if nemesis == Nemesis::None {
            // The clients alone.
            thread::sleep(duration);
            break;
        }
        let quiet = rng.between(Duration::from_millis(400), Duration::from_millis(900));
        let hold = rng.between(
            cluster::ELECTION_TIMEOUT_MAX * 3,
            cluster::ELECTION_TIMEOUT_MAX * 5,
        );
        // A stalled disk is held long enough to tell a leader that hands
        // over (after two election timeouts) from one that holds the
        // cluster up for as long as the stall lasts.
        let hold = if nemesis == Nemesis::DiskStall {
            hold * 2
        } else {
            hold
        };
        if Instant::now() + quiet + hold > end {
            break;
        }
        thread::sleep(quiet);
        let at = shared.now();
        let Injected {
            what,
            undo,
            problems: injecting,
        } = inject(nemesis, &mut cluster, &net, &mut rng, caps)?;
        note(shared.started, &what);
        problems.extend(injecting);
        thread::sleep(hold);
        for i in cluster.exited() {
            if !undo.may_exit(i) {
                problems.push(format!(
                    "{} exited on its own:\n{}",
                    cluster.id(i),
                    cluster.log_tail(i)
                ));
            }
        }
        undo.heal(&mut cluster, &net)?;
        faults.push(Fault {
            what,
            at,
            healed: shared.now(),
        });
        match cluster.relays().map(|r| r.stats()) {
            Some(s) if s.delayed.load(Ordering::Relaxed) > 0 => note(
                shared.started,
                &format!(
                    "healed (relays so far: {} connections, {} chunks delayed, {} delivered after a later one, {} replays of a connection)",
                    s.connections.load(Ordering::Relaxed),
                    s.delayed.load(Ordering::Relaxed),
                    s.overtaken.load(Ordering::Relaxed),
                    s.replays.load(Ordering::Relaxed),
                ),
            ),
            _ => note(shared.started, "healed"),
        }
    }
    for i in cluster.exited() {
        problems.push(format!(
            "{} exited on its own:\n{}",
            cluster.id(i),
            cluster.log_tail(i)
        ));
    }
    cluster.restore()?;
    let healed = Instant::now();
    let healed_at = shared.now();
    let probe = first_write(&shared, config.liveness_bound);
    shared.stop.store(true, Ordering::Relaxed);
    let slowest_sync = probe_disk.finish();
    for c in clients {
        c.join()
            .map_err(|_| "a client thread panicked".to_string())?;
    }
    let mut history = std::mem::take(&mut *shared.history.lock().expect("clients are done"));
    // The first write acknowledged after the heal: a client's or the probe's.
    let liveness = history
        .iter()
        .filter(|o| o.call >= healed_at && o.input != Input::Read)
        .filter_map(|o| o.ret_time())
        .min()
        .map(|t| Duration::from_micros(t - healed_at))
        .into_iter()
        .chain(probe)
        .min();
    match liveness {
        Some(d) => note(
            shared.started,
            &format!("a write succeeded {:.2} s after the heal", d.as_secs_f64()),
        ),
        None => problems.push(format!(
            "no write succeeded within {:.1} s of the heal",
            config.liveness_bound.as_secs_f64()
        )),
    }
    let expiring: HashSet<(u64, u64)> = history
        .iter()
        .filter_map(|o| match o.input {
            Input::Expire(v) => Some((o.key, v)),
            _ => None,
        })
        .collect();
    if !expiring.is_empty() {
        settle_expiries(&shared);
    }
    // Within two liveness bounds of the heal, or one after the expiries
    // settled if that took longer (up to SETTLE_BOUND under clock skew).
    let finals = final_reads(
        &shared,
        config.clients,
        &mut history,
        (healed + config.liveness_bound * 2).max(Instant::now() + config.liveness_bound),
    );
    match &finals {
        Some(values) => problems.extend(convergence(&shared, values, &expiring)),
        None => problems.push("the final reads did not succeed".into()),
    }

    problems.extend(
        std::mem::take(&mut *shared.anomalies.lock().expect("clients are done"))
            .into_iter()
            .take(5),
    );
    let ok = history.iter().filter(|o| o.ret.is_some()).count() as u64;
    let unknown = history.len() as u64 - ok - expiring.len() as u64;
    let failed = shared.failed();
    if ok < 10 {
        problems.push(format!("only {ok} operations succeeded"));
    }
    let verdict = match raft_lincheck::check_with_limit(&history, 2_000_000) {
        Ok(r) => format!(
            "linearizable ({} operations, {} keys, {} states explored)",
            r.operations, r.keys, r.states_explored
        ),
        Err(e) => {
            let text = match e {
                raft_lincheck::CheckError::Violation(_) => format!("not linearizable: {e}"),
                _ => format!("inconclusive: {e}"),
            };
            problems.push(first_lines(&text, 30));
            text
        }
    };
    note(shared.started, &first_lines(&verdict, 30));
    let mut acked: Vec<u64> = history
        .iter()
        .filter(|o| o.input != Input::Read)
        .filter_map(|o| o.ret_time())
        .collect();
    acked.sort_unstable();
    // A node whose disk hangs must not hold the others up: while it
    // lasts (six election timeouts or more), writes must be acknowledged
    // again (a leader hands over after two).
    // (Alone only: within `mixed` a stall is held as briefly as the rest.)
    let stalls = faults
        .iter()
        .filter(|f| nemesis == Nemesis::DiskStall && f.what.starts_with(STALL_FAULT));
    for f in stalls {
        if !acked.iter().any(|&t| t > f.at && t < f.healed) {
            problems.push(format!(
                "no write was acknowledged during the {:.2} s of `{}`: the node whose disk stalled held the cluster up",
                (f.healed - f.at) as f64 / 1e6,
                f.what
            ));
        }
    }
    let (longest_unavailability, worst_fault) = faults
        .iter()
        .map(|f| {
            (
                unavailability(&acked, f, shared.now()),
                Some(f.what.clone()),
            )
        })
        .max()
        .unwrap_or_default();
    drop(cluster);
    let timings = shared.timings.lock().expect("clients are done");
    let plots = config.plots.as_ref().map_or(Ok(Vec::new()), |d| {
        plot::draw(d, nemesis.name(), &timings, &faults)
    });
    let plots = plots.unwrap_or_else(|e| {
        note(shared.started, &format!("no plots: {e}"));
        Vec::new()
    });
    drop(timings);
    let kept = if problems.is_empty() && !config.keep {
        let _ = std::fs::remove_dir_all(&dir);
        None
    } else {
        std::fs::write(dir.join("history.txt"), render(&history)).ok();
        Some(dir)
    };
    Ok(Report {
        nemesis,
        seed: config.seed,
        ok,
        failed,
        unknown,
        expiring: expiring.len() as u64,
        transactions: shared.transactions.load(Ordering::Relaxed),
        slowest_sync,
        faults,
        longest_unavailability,
        worst_fault,
        liveness,
        verdict,
        problems,
        kept,
        plots,
    })
}

/// Stops the clients when a run ends, early (an error) or not.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// How to undo a fault.
enum Undo {
    /// Restart these nodes.
    Restart(Vec<usize>),
    /// SIGCONT this node.
    Resume(usize),
    /// Remove every network cut and packet loss.
    Heal,
    /// Let the relays pass bytes at once again.
    Undelay,
    /// Restart this node with its clock at the real rate.
    ClockRate(usize),
    /// Nothing to undo (a clock that jumped ahead stays ahead).
    Nothing,
    /// Remove the filler from this node's disk and restart it.
    FreeSpace(usize, PathBuf),
    /// Restart this node without the failing fsyncs.
    FixDisk(usize),
    /// Wait until this (fresh) node is a voter.
    Joined(usize),
    /// Let this node's disk complete its syncs again.
    Unstall(usize),
    /// Undo each, in reverse order.
    All(Vec<Undo>),
}

impl Undo {
    /// Whether node `i` may exit on its own while the fault lasts.
    fn may_exit(&self, i: usize) -> bool {
        match self {
            Undo::FreeSpace(j, _) | Undo::FixDisk(j) => *j == i,
            Undo::All(all) => all.iter().any(|u| u.may_exit(i)),
            _ => false,
        }
    }

    fn heal(self, cluster: &mut Cluster, net: &Net) -> Result<(), String> {
        match self {
            Undo::Restart(nodes) => nodes.into_iter().try_for_each(|i| cluster.start_node(i)),
            Undo::Resume(i) => {
                cluster.resume(i);
                Ok(())
            }
            Undo::Heal => match net {
                Net::Namespaces(ns) => ns.heal(),
                Net::Loopback(_) => Ok(()),
            },
            Undo::Undelay => {
                if let Some(r) = cluster.relays() {
                    r.clear();
                }
                Ok(())
            }
            Undo::ClockRate(i) => cluster.restart_with_clock_rate(i, "1"),
            Undo::Nothing => Ok(()),
            Undo::FreeSpace(i, filler) => {
                std::fs::remove_file(&filler)
                    .map_err(|e| format!("cannot remove {}: {e}", filler.display()))?;
                cluster.kill(i);
                cluster.start_node(i)
            }
            Undo::FixDisk(i) => {
                cluster.set_env(i, raft_kv_fault::FAIL_SYNC_AFTER, None);
                cluster.kill(i);
                cluster.start_node(i)
            }
            Undo::Joined(i) => wait_voter(cluster, i),
            Undo::Unstall(i) => cluster.stall_disk(i, false),
            Undo::All(all) => all.into_iter().rev().try_for_each(|u| u.heal(cluster, net)),
        }
    }
}

/// The names of the test-only faults of `raft-kv serve` (environment
/// variables).
mod raft_kv_fault {
    /// Every fsync after the first N fails.
    pub const FAIL_SYNC_AFTER: &str = "RAFT_KV_TEST_FAULT_FAIL_SYNC_AFTER";
    /// A leader answers plain SETs once its own log holds them, before a
    /// majority does, and holds its Raft messages back this many
    /// milliseconds ([`EARLY_ACK_HOLD_MS`]).
    pub const EARLY_ACK: &str = "RAFT_KV_TEST_FAULT_EARLY_ACK";
    /// How long a node with the early-acknowledgement bug holds back its
    /// appends (heartbeats pass: no elections follow): long enough for a
    /// kill to land between an acknowledgement and the followers' copies.
    pub const EARLY_ACK_HOLD_MS: &str = "100";
    /// EXEC ignores the keys its connection watched.
    pub const IGNORE_WATCH: &str = "RAFT_KV_TEST_FAULT_IGNORE_WATCH";
    /// Every fsync of the store waits while the file it names exists.
    pub const STALL_SYNC_WHILE: &str = "RAFT_KV_TEST_FAULT_STALL_SYNC_WHILE";
}

/// Waits (up to 15 s) until node `i` is a voter in the leader's
/// configuration; asks the cluster to add it (RAFT.JOIN) if its own
/// request gave up.
fn wait_voter(cluster: &Cluster, i: usize) -> Result<(), String> {
    let id = cluster.id(i).to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut asked = false;
    while Instant::now() < deadline {
        if let Some(l) = cluster.leader(Duration::from_secs(1)) {
            let info = cluster.raft_info(l).unwrap_or_default();
            let member = info.lines().find(|p| p.contains(&format!("id={id},")));
            if member.is_some_and(|p| p.contains("role=voter")) {
                return Ok(());
            }
            if member.is_none() && !asked && l != i {
                asked = true;
                let addr = cluster.peer_addr(i).to_string();
                let _ = cluster.call(l, &[b"RAFT.JOIN", id.as_bytes(), addr.as_bytes()]);
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{id} is not a voter 15 s after it joined"))
}

/// Node ids as `{n1,n3}`.
fn ids(cluster: &Cluster, nodes: &[usize]) -> String {
    let names: Vec<&str> = nodes.iter().map(|&i| cluster.id(i)).collect();
    format!("{{{}}}", names.join(","))
}

/// One injected fault: what was done, how to undo it, and what went
/// wrong while injecting it (a node that did not fail-stop).
struct Injected {
    what: String,
    undo: Undo,
    problems: Vec<String>,
}

impl Injected {
    fn new(what: String, undo: Undo) -> Injected {
        Injected {
            what,
            undo,
            problems: Vec::new(),
        }
    }
}

/// The node a fault hits: the leader for the `leader` variants (or a
/// random node if there is none), else a random one; and how to name it.
fn pick(cluster: &Cluster, rng: &mut Rng, leader: bool) -> (usize, &'static str) {
    let random = rng.below(cluster.len() as u64) as usize;
    if !leader {
        return (random, "");
    }
    match cluster.leader(Duration::from_secs(2)) {
        Some(l) => (l, " (leader)"),
        None => (random, " (no leader)"),
    }
}

/// Injects a clock fault into node `i` under libfaketime: a jump ahead
/// (1 to 30 s, as after a suspended VM), or a restart with a clock that
/// runs twice or half as fast; what was done and how to undo it.
fn clock_fault(cluster: &mut Cluster, i: usize, rng: &mut Rng) -> Result<(String, Undo), String> {
    let id = cluster.id(i).to_string();
    match rng.below(4) {
        0 | 1 => {
            let seconds = 1 + rng.below(30);
            cluster.jump_clock(i, seconds)?;
            Ok((
                format!("clock of {id} jumps {seconds} s ahead"),
                Undo::Nothing,
            ))
        }
        r => {
            let rate = if r == 2 { "2" } else { "0.5" };
            cluster.restart_with_clock_rate(i, rate)?;
            Ok((
                format!("restart {id} with its clock at x{rate}"),
                Undo::ClockRate(i),
            ))
        }
    }
}

/// How long a node whose disk failed may take to exit.
const FAIL_STOP_BOUND: Duration = Duration::from_secs(15);

/// Injects one fault of `nemesis`: what was done and how to undo it.
fn inject(
    nemesis: Nemesis,
    cluster: &mut Cluster,
    net: &Net,
    rng: &mut Rng,
    caps: &Capabilities,
) -> Result<Injected, String> {
    if nemesis == Nemesis::Mixed {
        let kinds: Vec<Nemesis> = Nemesis::ALL
            .into_iter()
            .filter(|k| *k != Nemesis::Mixed && k.missing(caps).is_none())
            .filter(|k| *k != Nemesis::DiskFull || cluster.on_tmpfs())
            .filter(|k| *k != Nemesis::DiskStall || cluster.stalls_disk())
            .filter(|k| *k != Nemesis::ClockSkew || cluster.fake_clock())
            .filter(|k| *k != Nemesis::Delay || caps.netem || cluster.relays().is_some())
            .collect();
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        return inject(kind, cluster, net, rng, caps);
    }
    let n = cluster.len();
    let cut = |a: &[usize], b: &[usize]| -> Result<(), String> {
        let Net::Namespaces(ns) = net else {
            return Err("partitions need network namespaces".into());
        };
        for &x in a {
            for &y in b {
                ns.cut(x, y)?;
            }
        }
        Ok(())
    };
    let others = |i: usize| -> Vec<usize> { (0..n).filter(|&j| j != i).collect() };
    let injected = match nemesis {
        Nemesis::KillRandom | Nemesis::KillLeader => {
            let (i, why) = pick(cluster, rng, nemesis == Nemesis::KillLeader);
            let id = cluster.id(i).to_string();
            let what = format!("kill {id}{why}{}", kill_timed(cluster, &[i]));
            Injected::new(what, Undo::Restart(vec![i]))
        }
        Nemesis::KillMajority => {
            let mut nodes = rng.shuffled(n)[..n / 2 + 1].to_vec();
            nodes.sort();
            let names = ids(cluster, &nodes);
            let what = format!("kill {names}{}", kill_timed(cluster, &nodes));
            Injected::new(what, Undo::Restart(nodes))
        }
        Nemesis::DiskStall => {
            let leader = rng.below(2) == 0;
            let (i, why) = pick(cluster, rng, leader);
            cluster.stall_disk(i, true)?;
            Injected::new(
                format!("{STALL_FAULT} {}{why}", cluster.id(i)),
                Undo::Unstall(i),
            )
        }
        Nemesis::PauseRandom | Nemesis::PauseLeader => {
            let (i, why) = pick(cluster, rng, nemesis == Nemesis::PauseLeader);
            cluster.pause(i);
            Injected::new(format!("pause {}{why}", cluster.id(i)), Undo::Resume(i))
        }
        Nemesis::PartitionHalves => {
            let order = rng.shuffled(n);
            let (mut a, mut b) = (order[..n / 2].to_vec(), order[n / 2..].to_vec());
            a.sort();
            b.sort();
            cut(&a, &b)?;
            Injected::new(
                format!("partition {} | {}", ids(cluster, &a), ids(cluster, &b)),
                Undo::Heal,
            )
        }
        Nemesis::PartitionOne | Nemesis::PartitionLeader => {
            let (i, why) = pick(cluster, rng, nemesis == Nemesis::PartitionLeader);
            cut(&[i], &others(i))?;
            Injected::new(format!("isolate {}{why}", cluster.id(i)), Undo::Heal)
        }
        Nemesis::PartitionBridge => {
            let order = rng.shuffled(n);
            let bridge = order[0];
            let rest = &order[1..];
            let (mut a, mut b) = (
                rest[..rest.len() / 2].to_vec(),
                rest[rest.len() / 2..].to_vec(),
            );
            a.sort();
            b.sort();
            cut(&a, &b)?;
            Injected::new(
                format!(
                    "partition {} | {} bridged by {}",
                    ids(cluster, &a),
                    ids(cluster, &b),
                    cluster.id(bridge)
                ),
                Undo::Heal,
            )
        }
        Nemesis::PartitionRing => {
            let order = rng.shuffled(n);
            // Cut every pair that is not adjacent on the ring (on 3 nodes,
            // every pair is: cut the ring open into a line).
            let mut cuts: Vec<(usize, usize)> = (0..n)
                .flat_map(|a| (a + 2..n).map(move |b| (a, b)))
                .filter(|&(a, b)| !(a == 0 && b == n - 1))
                .map(|(a, b)| (order[a], order[b]))
                .collect();
            if cuts.is_empty() {
                cuts.push((order[0], order[n - 1]));
            }
            for (a, b) in &cuts {
                cut(&[*a], &[*b])?;
            }
            let ring: Vec<&str> = order.iter().map(|&i| cluster.id(i)).collect();
            let shape = if n > 3 { "ring" } else { "line" };
            Injected::new(format!("{shape} {}", ring.join("-")), Undo::Heal)
        }
        Nemesis::SlowPackets => {
            let Net::Namespaces(ns) = net else {
                return Err("slow packets need network namespaces".into());
            };
            let slow = if caps.netem {
                let delay = 5 + rng.below(46);
                net::Slow::Delay {
                    delay,
                    jitter: delay / 2,
                }
            } else {
                net::Slow::Bandwidth {
                    kbit: 1000 + 500 * rng.below(7),
                    queue_ms: 50 + 50 * rng.below(4),
                }
            };
            for i in 0..n {
                ns.slow(i, slow)?;
            }
            Injected::new(format!("every link: {slow}"), Undo::Heal)
        }
        Nemesis::FlakyPackets => {
            let Net::Namespaces(ns) = net else {
                return Err("flaky packets need network namespaces".into());
            };
            let loss = 5 + rng.below(26);
            let dup = rng.below(11);
            for i in 0..n {
                ns.flaky(i, n, loss, dup)?;
            }
            Injected::new(
                format!("every link: {loss}% of packets dropped, {dup}% duplicated"),
                Undo::Heal,
            )
        }
        Nemesis::Delay => {
            let (what, undo) = delay_links(cluster, net, rng, caps, None)?;
            Injected::new(what, undo)
        }
        Nemesis::ClockSkew => {
            let leader = rng.below(2) == 0;
            let (i, why) = pick(cluster, rng, leader);
            let (what, undo) = clock_fault(cluster, i, rng)?;
            Injected::new(format!("{what}{why}"), undo)
        }
        Nemesis::DiskFull => disk_full(cluster, rng)?,
        Nemesis::FsyncFail => fsync_fail(cluster, rng)?,
        Nemesis::Membership => replace_node(cluster, rng)?,
        Nemesis::Combined => combined(cluster, net, rng, caps)?,
        Nemesis::Mixed => unreachable!("a mixed fault is one of the others"),
        Nemesis::None => unreachable!("no fault is injected without a nemesis"),
    };
    Ok(injected)
}

/// Delays links between nodes, each by a base delay of 20-200 ms give or
/// take half of it (every link, or those of node `only`): per node with
/// netem where the kernel has it, else per link (each direction its own)
/// in the relays, which also replay some connections' starts. What was
/// done (every link's delay) and how to undo it.
fn delay_links(
    cluster: &Cluster,
    net: &Net,
    rng: &mut Rng,
    caps: &Capabilities,
    only: Option<usize>,
) -> Result<(String, Undo), String> {
    let n = cluster.len();
    let touched = |a: usize, b: usize| only.is_none_or(|i| a == i || b == i);
    if let Some(relays) = cluster.relays() {
        // A replayed connection is refused by TLS (the handshake fails).
        // Without TLS it is accepted, and the client commands a follower
        // forwarded over it run again (no sessions, as for any replay of
        // an unauthenticated stream: a replay attack, not a fault of a
        // network, which never duplicates the bytes of a TCP stream into
        // another): replays only under TLS.
        let replay = rng.below(6) * u64::from(cluster.tls());
        let mut links = Vec::new();
        for a in 0..n {
            for b in (0..n).filter(|&b| b != a && touched(a, b)) {
                let delay_ms = 20 + rng.below(181);
                relays.set(
                    a,
                    b,
                    Some(relay::LinkDelay {
                        delay_ms,
                        jitter_pct: 50,
                        replay_permille: replay,
                    }),
                );
                links.push(format!("{}>{} {delay_ms}", cluster.id(a), cluster.id(b)));
            }
        }
        let whose = match only {
            Some(i) => format!("links of {}", cluster.id(i)),
            None => "every link".to_string(),
        };
        return Ok((
            format!(
                "{whose} delayed, ms +-50% ({}){} (relays)",
                links.join(", "),
                if cluster.tls() {
                    format!(", {replay} per mille of chunks replay their connection")
                } else {
                    String::new()
                }
            ),
            Undo::Undelay,
        ));
    }
    let Net::Namespaces(ns) = net else {
        return Err("delays need network namespaces".into());
    };
    if !caps.netem {
        return Err("delays need netem or the relays".into());
    }
    let mut nodes = Vec::new();
    for i in (0..n).filter(|&i| only.is_none_or(|o| o == i)) {
        let delay = 20 + rng.below(181);
        ns.slow(
            i,
            net::Slow::Delay {
                delay,
                jitter: delay / 2,
            },
        )?;
        nodes.push(format!("{} {delay}", cluster.id(i)));
    }
    Ok((
        format!(
            "packets leaving {} delayed, ms +-50% (netem)",
            nodes.join(", ")
        ),
        Undo::Heal,
    ))
}

/// Several faults at once, each on a node of its own: a kill, a pause, a
/// node cut off (in namespaces), a clock jump (under libfaketime) and a
/// node's links delayed (netem or relays), as many as there are nodes.
fn combined(
    cluster: &mut Cluster,
    net: &Net,
    rng: &mut Rng,
    caps: &Capabilities,
) -> Result<Injected, String> {
    let mut kinds = vec![Nemesis::KillRandom, Nemesis::PauseRandom];
    if net.can_partition() {
        kinds.push(Nemesis::PartitionOne);
    }
    if cluster.fake_clock() {
        kinds.push(Nemesis::ClockSkew);
    }
    if net.can_partition() && (caps.netem || cluster.relays().is_some()) {
        kinds.push(Nemesis::Delay);
    }
    let order = rng.shuffled(cluster.len());
    let mut whats = Vec::new();
    let mut undos = Vec::new();
    for (kind, &i) in kinds.into_iter().zip(&order) {
        let id = cluster.id(i).to_string();
        match kind {
            Nemesis::KillRandom => {
                cluster.kill(i);
                whats.push(format!("kill {id}"));
                undos.push(Undo::Restart(vec![i]));
            }
            Nemesis::PauseRandom => {
                cluster.pause(i);
                whats.push(format!("pause {id}"));
                undos.push(Undo::Resume(i));
            }
            Nemesis::PartitionOne => {
                let Net::Namespaces(ns) = net else { continue };
                for j in (0..cluster.len()).filter(|&j| j != i) {
                    ns.cut(i, j)?;
                }
                whats.push(format!("isolate {id}"));
                undos.push(Undo::Heal);
            }
            Nemesis::Delay => {
                let (what, undo) = delay_links(cluster, net, rng, caps, Some(i))?;
                whats.push(what);
                undos.push(undo);
            }
            _ => {
                let (what, undo) = clock_fault(cluster, i, rng)?;
                whats.push(what);
                undos.push(undo);
            }
        }
    }
    Ok(Injected::new(whats.join(" + "), Undo::All(undos)))
}

/// Fills a node's tmpfs but for a little space, then writes large values
/// (to a key of their own) until the node exits: it must, with an error
/// that says why, within [`FAIL_STOP_BOUND`].
fn disk_full(cluster: &mut Cluster, rng: &mut Rng) -> Result<Injected, String> {
    let leader = rng.below(2) == 0;
    let (i, why) = pick(cluster, rng, leader);
    let id = cluster.id(i).to_string();
    let dir = cluster.data_dir(i).to_path_buf();
    let free = free_bytes(&dir)?;
    let filler = dir.join("chaos-filler");
    let leave = 256 << 10;
    write_filler(&filler, free.saturating_sub(leave))?;
    let value = vec![b'x'; 64 << 10];
    let started = Instant::now();
    let mut status = None;
    let mut writes = 0;
    while started.elapsed() < FAIL_STOP_BOUND {
        if let Some(s) = cluster.wait_exit(i, Duration::ZERO) {
            status = Some(s);
            break;
        }
        // Once it stopped acknowledging, no more: every write lands on
        // every node's disk.
        if cluster.log_text(i).contains("stopped acknowledging") {
            status = cluster.wait_exit(i, FAIL_STOP_BOUND.saturating_sub(started.elapsed()));
            break;
        }
        // Through another node: the full one may be the one to stop.
        let via = (i + 1 + writes % (cluster.len() - 1)) % cluster.len();
        let _ = cluster.call(via, &[b"SET", b"chaos:ballast", &value]);
        writes += 1;
    }
    let mut injected = Injected::new(
        format!(
            "fill the disk of {id}{why} ({} KiB left, {writes} writes of 64 KiB)",
            leave >> 10
        ),
        Undo::FreeSpace(i, filler),
    );
    injected
        .problems
        .extend(fail_stopped(cluster, i, status, "No space left"));
    Ok(injected)
}

/// Restarts a node whose fsyncs fail after the first few (a test-only
/// fault of `raft-kv serve`); it must exit, saying why, within
/// [`FAIL_STOP_BOUND`].
fn fsync_fail(cluster: &mut Cluster, rng: &mut Rng) -> Result<Injected, String> {
    let leader = rng.below(2) == 0;
    let (i, why) = pick(cluster, rng, leader);
    let id = cluster.id(i).to_string();
    let after = rng.below(40);
    cluster.kill(i);
    cluster.set_env(i, raft_kv_fault::FAIL_SYNC_AFTER, Some(&after.to_string()));
    // It may fail before it is ready: that is a fail-stop too.
    let started = cluster.start_node(i);
    let status = cluster.wait_exit(i, FAIL_STOP_BOUND);
    let mut injected = Injected::new(
        format!("restart {id}{why} with every fsync after the first {after} failing"),
        Undo::FixDisk(i),
    );
    if started.is_err() && status.is_none() {
        injected.problems.push(format!(
            "{id} neither started nor exited with failing fsyncs"
        ));
    }
    injected
        .problems
        .extend(fail_stopped(cluster, i, status, "fsync"));
    Ok(injected)
}

/// Whether node `i` fail-stopped: exited with an error whose log says
/// `cause` and that it stopped; a problem if not.
fn fail_stopped(
    cluster: &Cluster,
    i: usize,
    status: Option<std::process::ExitStatus>,
    cause: &str,
) -> Option<String> {
    let id = cluster.id(i);
    let log = cluster.log_text(i);
    match status {
        None => Some(format!(
            "{id} kept running {} s after its disk failed (no fail-stop)",
            FAIL_STOP_BOUND.as_secs()
        )),
        Some(s) if s.success() => Some(format!("{id} exited with {s} after its disk failed")),
        Some(_) if !log.contains(cause) || !log.contains("stopped") => Some(format!(
            "{id} exited without saying why ({cause:?}) in its log:\n{}",
            cluster.log_tail(i)
        )),
        Some(_) => None,
    }
}

/// Removes a voter (the leader half the time) with RAFT.LEAVE and starts a
/// fresh, empty node in its place that joins through another member.
fn replace_node(cluster: &mut Cluster, rng: &mut Rng) -> Result<Injected, String> {
    let leader = rng.below(2) == 0;
    let (i, why) = pick(cluster, rng, leader);
    let old = cluster.id(i).to_string();
    let via = (i + 1) % cluster.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cluster.call(via, &[b"RAFT.LEAVE", old.as_bytes()]) {
            Ok(Reply::Simple(s)) if s == "OK" => break,
            reply if Instant::now() > deadline => {
                return Err(format!("RAFT.LEAVE {old} did not succeed: {reply:?}"))
            }
            _ => thread::sleep(Duration::from_millis(100)),
        }
    }
    let new = cluster.replace(i, via)?;
    Ok(Injected::new(
        format!("remove {old}{why}, add {new} (--join)"),
        Undo::Joined(i),
    ))
}

/// The bytes free on the file system of `dir`.
fn free_bytes(dir: &std::path::Path) -> Result<u64, String> {
    let path = std::ffi::CString::new(dir.display().to_string()).map_err(|e| e.to_string())?;
    // SAFETY: statvfs(2) fills the struct it is given; the path is a valid
    // C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(format!(
            "statvfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Writes a file of `len` bytes at `path` (written, not sparse).
fn write_filler(path: &std::path::Path, len: u64) -> Result<(), String> {
    use std::io::Write;
    let mut f =
        std::fs::File::create(path).map_err(|e| format!("cannot make {}: {e}", path.display()))?;
    let chunk = vec![0x5au8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])
            .map_err(|e| format!("cannot fill {}: {e}", path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

/// How a disk-stall fault is described.
const STALL_FAULT: &str = "stall the disk of";

/// SIGKILLs `nodes` and waits for each to die; a note to add to the
/// fault's description if that took a second or longer (a process in
/// uninterruptible sleep, such as an fdatasync the disk holds back, dies
/// only once it returns).
fn kill_timed(cluster: &mut Cluster, nodes: &[usize]) -> String {
    let started = Instant::now();
    for &i in nodes {
        cluster.kill(i);
    }
    let took = started.elapsed();
    if took < Duration::from_secs(1) {
        return String::new();
    }
    format!(
        " (they took {:.2} s to die: blocked in the kernel, most likely on the disk)",
        took.as_secs_f64()
    )
}

/// How often the disk probe syncs.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// A thread that measures the disk the nodes' data is on, for the report:
/// every [`PROBE_EVERY`] it writes a few bytes to a file of its own in the
/// run's directory and fdatasyncs them, as the nodes do for every write.
/// A sync of a second or longer is printed as it ends: the cluster cannot
/// acknowledge a write while most of its nodes' syncs wait that long, so
/// an unavailability that matches one is the disk's, not Raft's.
struct DiskProbe {
    stop: Arc<AtomicBool>,
    slowest_us: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl DiskProbe {
    fn start(dir: &std::path::Path, started: Instant) -> DiskProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let slowest_us = Arc::new(AtomicU64::new(0));
        let path = dir.join("disk-probe");
        let (stop2, slowest2) = (stop.clone(), slowest_us.clone());
        let thread = std::fs::File::create(&path).ok().map(|file| {
            thread::spawn(move || {
                use std::os::unix::fs::FileExt as _;
                while !stop2.load(Ordering::Relaxed) {
                    let begun = Instant::now();
                    // The same 512 bytes rewritten: the file stays that
                    // small however long the run.
                    if file.write_all_at(&[0; 512], 0).is_err() || file.sync_data().is_err() {
                        return;
                    }
                    let took = begun.elapsed();
                    slowest2.fetch_max(took.as_micros() as u64, Ordering::Relaxed);
                    if took >= Duration::from_secs(1) {
                        note(
                            started,
                            &format!(
                                "disk stall: an fdatasync of the runner's probe took {:.2} s",
                                took.as_secs_f64()
                            ),
                        );
                    }
                    thread::sleep(PROBE_EVERY.saturating_sub(took));
                }
                let _ = std::fs::remove_file(&path);
            })
        });
        DiskProbe {
            stop,
            slowest_us,
            thread,
        }
    }

    /// Stops the probe; its slowest sync.
    fn finish(mut self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Duration::from_micros(self.slowest_us.load(Ordering::Relaxed))
    }
}

/// Writes a probe key through every node in turn until one write succeeds
/// (within `bound`); how long it took. Prints the first failure.
fn first_write(shared: &Shared, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut i = 0;
    let mut told = false;
    while start.elapsed() < bound {
        let node = i % shared.nodes;
        if let Some(mut con) = workload::connect(shared, node, false) {
            let reply = con.call(&[b"SET", b"chaos:probe", b"1"]);
            if matches!(&reply, Ok(Reply::Simple(s)) if s == "OK") {
                return Some(start.elapsed());
            }
            if !told {
                told = true;
                note(
                    shared.started,
                    &format!(
                        "a write through n{} failed {:.2} s after the heal: {reply:?}",
                        node + 1,
                        start.elapsed().as_secs_f64()
                    ),
                );
            }
        }
        i += 1;
        thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Reads every key linearizably (through any node that answers, until
/// `deadline`), adding the reads to the history as client `client`'s; the
/// values, or `None` if some key could not be read.
fn final_reads(
    shared: &Shared,
    client: u64,
    history: &mut Vec<Operation>,
    deadline: Instant,
) -> Option<Vec<Option<u64>>> {
    let mut values = Vec::new();
    let mut i = 0;
    for k in 0..shared.all_keys() {
        let key = workload::key_name(k);
        loop {
            if Instant::now() > deadline {
                return None;
            }
            i += 1;
            let Some(mut con) = workload::connect(shared, i % shared.nodes, false) else {
                continue;
            };
            let call = shared.now();
            if let Ok(Reply::Bulk(v)) = con.call(&[b"GET", key.as_bytes()]) {
                let v = v.as_deref().map(workload::parse_value);
                history.push(Operation::completed(
                    client,
                    k,
                    Input::Read,
                    call,
                    shared.now(),
                    Output::Read(v),
                ));
                values.push(v);
                break;
            }
        }
    }
    Some(values)
}

/// How long [`settle_expiries`] waits at most for the keys' times to live
/// to run out, after the longest one: a leader whose clock is behind the
/// log's time (after another's jumped ahead) lets keys live that much
/// longer, and the clock-skew nemesis jumps clocks by up to 30 s.
const SETTLE_BOUND: Duration = Duration::from_secs(40);

/// Waits, before the final reads, for the clients' keys to have no time to
/// live left, so that none expires between the final reads and the
/// convergence check: first the longest time to live sent and a margin
/// (every expiring write was sent before the clients stopped), then until
/// `PTTL` answers -1 (no time to live) or -2 (absent) for every key, for
/// at most [`SETTLE_BOUND`] more. If keys still have one then, says so and
/// goes on: the check allows for expiries, and the convergence check accepts
/// a node that no longer has an expiring value.
fn settle_expiries(shared: &Shared) {
    let longest = Duration::from_millis(shared.longest_ttl_ms.load(Ordering::Relaxed));
    thread::sleep(longest + Duration::from_millis(200));
    let start = Instant::now();
    let mut i = 0;
    let mut left = Vec::new();
    while start.elapsed() < SETTLE_BOUND {
        i += 1;
        let Some(mut con) = workload::connect(shared, i % shared.nodes, false) else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        left = (0..shared.all_keys())
            .filter(|&k| {
                let key = workload::key_name(k);
                !matches!(
                    con.call(&[b"PTTL", key.as_bytes()]),
                    Ok(Reply::Int(-1 | -2))
                )
            })
            .collect();
        if left.is_empty() {
            if start.elapsed() > Duration::from_millis(100) {
                note(
                    shared.started,
                    &format!(
                        "keys without a time to live {:.2} s after the longest one ran out",
                        start.elapsed().as_secs_f64()
                    ),
                );
            }
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    note(
        shared.started,
        &format!(
            "keys {left:?} still have a time to live (or did not answer PTTL) {} s after the longest one ran out",
            SETTLE_BOUND.as_secs()
        ),
    );
}

/// Reads every key locally (READONLY) on every node until each has the
/// final values (for up to 10 s); a problem per node that does not. A
/// node may lack a final value that was written with a time to live
/// (`expiring`, as `(key, value)`): it expired since the final reads.
fn convergence(
    shared: &Shared,
    values: &[Option<u64>],
    expiring: &HashSet<(u64, u64)>,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut problems = Vec::new();
    for i in 0..shared.nodes {
        let mut seen = Vec::new();
        loop {
            if let Some(mut con) = workload::connect(shared, i, true) {
                seen = (0..shared.all_keys())
                    .map(
                        |k| match con.call(&[b"GET", workload::key_name(k).as_bytes()]) {
                            Ok(Reply::Bulk(v)) => Some(v.as_deref().map(workload::parse_value)),
                            _ => None,
                        },
                    )
                    .collect();
                if converged(&seen, values, expiring) {
                    break;
                }
            }
            if Instant::now() > deadline {
                problems.push(format!(
                    "n{} diverged: local reads {seen:?}, the cluster's values {values:?}",
                    i + 1
                ));
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    problems
}

/// Whether a node's local reads `seen` (`None`: no answer) agree with the
/// cluster's final `values`: equal, or absent where the final value was
/// written with a time to live (`expiring`, as `(key, value)`).
fn converged(
    seen: &[Option<Option<u64>>],
    values: &[Option<u64>],
    expiring: &HashSet<(u64, u64)>,
) -> bool {
    seen.len() == values.len()
        && seen
            .iter()
            .zip(values)
            .enumerate()
            .all(|(k, (seen, value))| match (*seen, *value) {
                (None, _) => false,
                (Some(None), Some(v)) => expiring.contains(&(k as u64, v)),
                (Some(seen), value) => seen == value,
            })
}

/// The longest time without an acknowledged write from the start of
/// `fault` on, counting the gaps that begin before it is healed (so the
/// recovery after the heal counts too); `acked` holds the completion times
/// of the acknowledged writes and CASes, sorted; `end` closes a gap no
/// write ends.
fn unavailability(acked: &[u64], fault: &Fault, end: u64) -> Duration {
    let mut previous = fault.at;
    let mut longest = 0;
    for &t in acked.iter().filter(|&&t| t > fault.at) {
        longest = longest.max(t - previous);
        if t > fault.healed {
            return Duration::from_micros(longest);
        }
        previous = t;
    }
    Duration::from_micros(longest.max(end.saturating_sub(previous)))
}

/// The history, one operation a line, in invocation order.
fn render(history: &[Operation]) -> String {
    let mut ops: Vec<&Operation> = history.iter().collect();
    ops.sort_by_key(|o| o.call);
    let mut out = String::new();
    for o in ops {
        let _ = writeln!(out, "{o}");
    }
    out
}

/// The first `n` lines of `text`, saying how many were left out.
fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= n {
        return text.to_string();
    }
    format!(
        "{}\n... ({} more lines)",
        lines[..n].join("\n"),
        lines.len() - n
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nemesis_is_found_by_its_name() {
        for n in Nemesis::ALL {
            assert_eq!(Nemesis::parse(n.name()), Some(n));
        }
        assert_eq!(Nemesis::parse("nothing"), None);
    }

    #[test]
    fn a_nemesis_is_skipped_only_for_what_this_machine_lacks() {
        let none = Capabilities::default();
        assert_eq!(Nemesis::KillLeader.missing(&none), None);
        assert_eq!(Nemesis::FsyncFail.missing(&none), None);
        assert_eq!(Nemesis::Membership.missing(&none), None);
        assert!(Nemesis::PartitionRing.missing(&none).is_some());
        assert!(Nemesis::ClockSkew.missing(&none).is_some());
        assert!(Nemesis::DiskFull.missing(&none).is_some());
        let all = Capabilities {
            namespaces: true,
            tmpfs: true,
            faketime: true,
            nft: true,
            netem: false,
            tbf: true,
            relay: true,
        };
        for n in Nemesis::ALL {
            assert_eq!(n.missing(&all), None, "{}", n.name());
        }
    }

    #[test]
    fn a_nemesis_schedule_depends_on_the_seed_and_the_nemesis() {
        assert_eq!(Nemesis::KillLeader.seed(1), Nemesis::KillLeader.seed(1));
        assert_ne!(Nemesis::KillLeader.seed(1), Nemesis::KillLeader.seed(2));
        assert_ne!(Nemesis::KillLeader.seed(1), Nemesis::KillRandom.seed(1));
    }

    #[test]
    fn a_duration_is_seconds_or_a_number_with_a_unit() {
        let ok = |t: &str| Length::parse_duration(t).unwrap();
        assert_eq!(ok("4"), Duration::from_secs(4));
        assert_eq!(ok("4s"), Duration::from_secs(4));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("30m"), Duration::from_secs(1800));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1.5m"), Duration::from_secs(90));
        for bad in ["", "m", "0", "-3", "5x", "1d", "10 mins", "nan", "inf"] {
            let e = Length::parse_duration(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_total_is_shared_by_the_nemeses_left() {
        let total = Length::Total(Duration::from_secs(1800));
        assert_eq!(
            total.next(Duration::from_secs(1800), 19),
            Duration::from_secs(1800) / 19
        );
        // Time spent so far comes out of the later ones' shares.
        assert_eq!(
            total.next(Duration::from_secs(100), 2),
            Duration::from_secs(50)
        );
        assert_eq!(total.next(Duration::ZERO, 3), Length::MIN_EACH);
        let each = Length::Each(Duration::from_secs(4));
        assert_eq!(each.next(Duration::ZERO, 3), Duration::from_secs(4));
        assert_eq!(human(Duration::from_secs(1800)), "30m");
        assert_eq!(human(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(human(Duration::from_secs(45)), "45 s");
    }

    #[test]
    fn a_shuffle_is_a_permutation() {
        let mut rng = Rng::new(7);
        let mut v = rng.shuffled(5);
        v.sort();
        assert_eq!(v, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_node_converged_if_it_has_the_final_values_or_lost_an_expiring_one() {
        let expiring: HashSet<(u64, u64)> = [(1, 20)].into();
        let values = [Some(10), Some(20), None];
        assert!(converged(
            &[Some(Some(10)), Some(Some(20)), Some(None)],
            &values,
            &expiring
        ));
        // Key 1's final value 20 was written with a time to live.
        assert!(converged(
            &[Some(Some(10)), Some(None), Some(None)],
            &values,
            &expiring
        ));
        // Key 0's was not: losing it is a divergence.
        assert!(!converged(
            &[Some(None), Some(Some(20)), Some(None)],
            &values,
            &expiring
        ));
        // Another value, a key that did not answer, a missing key.
        assert!(!converged(
            &[Some(Some(10)), Some(Some(21)), Some(None)],
            &values,
            &expiring
        ));
        assert!(!converged(
            &[Some(Some(10)), None, Some(None)],
            &values,
            &expiring
        ));
        assert!(!converged(
            &[Some(Some(10)), Some(Some(20))],
            &values,
            &expiring
        ));
        // An expiring value of another key does not count.
        assert!(!converged(
            &[Some(Some(10)), Some(Some(20)), Some(Some(20))],
            &values,
            &expiring
        ));
    }

    #[test]
    fn unavailability_is_the_longest_gap_between_acknowledged_writes_during_a_fault() {
        let fault = |at, healed| Fault {
            what: String::new(),
            at,
            healed,
        };
        let acked = [10, 120, 150, 400, 450, 900];
        // From 100: gaps 20, 30, 250 (ends after the heal at 300).
        assert_eq!(
            unavailability(&acked, &fault(100, 300), 1000),
            Duration::from_micros(250)
        );
        // From 460: 440 to the write at 900, after the heal at 500.
        assert_eq!(
            unavailability(&acked, &fault(460, 500), 1000),
            Duration::from_micros(440)
        );
        // No write after the heal: the gap runs to the end.
        assert_eq!(
            unavailability(&acked, &fault(950, 960), 1000),
            Duration::from_micros(50)
        );
    }
}
