//! `raft-sim election`: the Raft paper's leader-election measurement
//! (Ongaro & Ousterhout, USENIX ATC 2014, section 9.3 and Figure 16).
//!
//! The paper "repeatedly crashed the leader of a cluster of five servers and
//! timed how long it took to detect the crash and elect a new leader". Its
//! setup, and how each part is reproduced here:
//!
//! - five servers "with a broadcast time of roughly 15ms": five voters, a
//!   one-way network delay drawn uniformly from 5-10 ms, so that an RPC round
//!   trip takes 10-20 ms, 15 ms on average; disk writes take 0.1-1 ms (the
//!   paper does not say; its 15 ms is taken to be mostly network);
//! - "the servers in each trial had different log lengths, so some
//!   candidates were not eligible to become leader": just before the crash
//!   the leader appends an entry that reaches only two of its four followers
//!   (the appends to the other two are lost), so only those two can win;
//! - "a synchronized broadcast of heartbeat RPCs from the leader before
//!   terminating its process" and "the leader was crashed uniformly randomly
//!   within its heartbeat interval, which was half of the minimum election
//!   timeout": the heartbeat interval is half the minimum election timeout,
//!   and the crash comes at a uniformly random instant after one of the
//!   leader's heartbeat broadcasts and before the next.
//!
//! A trial measures the virtual time from the crash until a surviving node
//! becomes leader (of a higher term, necessarily). Each trial is its own
//! freshly built [`Sim`] with its own seed: independent, and reproducible
//! event for event from that seed.
//!
//! Time runs on 1 ms ticks, so an election timeout of `k` ticks lasts
//! between `k - 1` and `k` ms depending on where between two ticks the timer
//! was reset; every node's ticks have their own random phase.

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

use crate::cluster::{id_of, Sim, SimConfig};
use crate::net::NetConfig;

/// One line of the table: an election-timeout range and the election
/// options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Shortest election timeout, ms (= ticks).
    pub min_ms: u64,
    /// One past the longest election timeout, ms (= ticks).
    pub max_ms: u64,
    /// Pre-vote on.
    pub pre_vote: bool,
    /// Check-quorum (and the follower lease that comes with it) on.
    pub check_quorum: bool,
    /// What the paper reports for this timeout range.
    pub paper: &'static str,
    /// One-way network delay range, microseconds.
    pub delay_us: (u64, u64),
    /// Disk write latency range, microseconds.
    pub disk_us: (u64, u64),
    /// Followers that miss the entry appended just before the crash (0 to
    /// 4): with 2, only the other 2 followers can win.
    pub lagging: usize,
}

/// The default one-way network delay: an RPC round trip of 10-20 ms, 15 ms
/// on average, the paper's broadcast time.
pub const DELAY_US: (u64, u64) = (5_000, 10_000);
/// The default disk write latency.
pub const DISK_US: (u64, u64) = (100, 1_000);

impl Setup {
    const fn new(min_ms: u64, max_ms: u64, pre_vote: bool, check_quorum: bool) -> Setup {
        let paper = match (min_ms, max_ms) {
            (12, 24) => "mean 35, max 152 (text)",
            (150, 300) => "no figure in text; floor ~75",
            (150, 155) => "median 287 (text)",
            (150, 200) => "max 513 (text)",
            _ => "-",
        };
        Setup {
            min_ms,
            max_ms,
            pre_vote,
            check_quorum,
            paper,
            delay_us: DELAY_US,
            disk_us: DISK_US,
            lagging: 2,
        }
    }

    /// The heartbeat interval: half the minimum election timeout, as in the
    /// paper.
    pub fn heartbeat_ms(&self) -> u64 {
        (self.min_ms / 2).max(1)
    }

    /// The simulated cluster of one trial.
    pub fn sim_config(&self, seed: u64) -> SimConfig {
        let mut cfg = SimConfig::new(seed, 5);
        cfg.tick_us = 1_000;
        cfg.raft.election_timeout_ticks_min = self.min_ms;
        cfg.raft.election_timeout_ticks_max = self.max_ms;
        cfg.raft.heartbeat_interval_ticks = self.heartbeat_ms();
        cfg.raft.pre_vote = self.pre_vote;
        cfg.raft.check_quorum = self.check_quorum;
        cfg.net = NetConfig {
            delay_min_us: self.delay_us.0,
            delay_max_us: self.delay_us.1,
            ..NetConfig::reliable()
        };
        cfg.disk_delay_us = self.disk_us;
        cfg.trace_capacity = 64;
        cfg
    }

    fn label(&self) -> String {
        format!("{}-{} ms", self.min_ms, self.max_ms)
    }
}

/// The four configurations the paper's comparison needs: 150-300 ms (the
/// paper's recommendation) and 12-24 ms (its fastest), each without and with
/// pre-vote; check-quorum on, as this library ships.
pub const DEFAULT_SETUPS: [Setup; 4] = [
    Setup::new(150, 300, false, true),
    Setup::new(150, 300, true, true),
    Setup::new(12, 24, false, true),
    Setup::new(12, 24, true, true),
];

/// More lines with `--all`: the algorithm exactly as the paper ran it
/// (neither pre-vote nor check-quorum), and the two narrower timeout ranges
/// the paper quotes figures for.
pub const EXTRA_SETUPS: [Setup; 6] = [
    Setup::new(150, 300, false, false),
    Setup::new(12, 24, false, false),
    Setup::new(150, 155, false, false),
    Setup::new(150, 155, false, true),
    Setup::new(150, 200, false, false),
    Setup::new(150, 200, false, true),
];

/// Virtual time allowed for the first leader to settle, and then for a new
/// one after the crash, in election timeouts: far beyond anything observed.
const PATIENCE_TIMEOUTS: u64 = 200;

fn step_or_fail(sim: &mut Sim, what: &str) -> Result<(), String> {
    if sim.step() {
        return Ok(());
    }
    Err(match &sim.violation {
        Some(v) => format!("{what}: invariant '{}' broken: {}", v.invariant, v.detail),
        None => format!("{what}: the event queue ran dry"),
    })
}

/// Runs one trial with `seed`; returns the time from the leader's crash to
/// the next leader, in microseconds.
pub fn trial(setup: &Setup, seed: u64) -> Result<u64, String> {
    let mut sim = Sim::new(setup.sim_config(seed));
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xE1EC_7104_0000_0093);
    let patience_us = PATIENCE_TIMEOUTS * setup.max_ms * 1_000;

    // A stable leader: every node follows it and it committed an entry of its
    // own term.
    let leader = loop {
        if sim.now > patience_us {
            return Err(format!(
                "seed {seed}: no stable leader after {patience_us} us"
            ));
        }
        step_or_fail(&mut sim, "before the crash")?;
        let Some(l) = sim.leader() else { continue };
        let r = sim.raft(l).expect("the leader runs");
        let committed_own = r.entry_term(r.commit_index()) == Some(r.term());
        let followed = (0..sim.nodes.len()).all(|n| {
            sim.raft(n)
                .is_some_and(|f| f.term() == r.term() && f.leader() == Some(id_of(l)))
        });
        if committed_own && followed {
            break l;
        }
    };
    let old_term = sim.raft(leader).expect("the leader runs").term();

    // Wait for the leader's next heartbeat broadcast: a tick of the leader
    // that sends a request to every follower.
    let followers = sim.nodes.len() as u64 - 1;
    loop {
        let ticks = sim.raft(leader).map(|r| r.ticks());
        let requests = sim.stats.requests_sent;
        step_or_fail(&mut sim, "waiting for a heartbeat")?;
        let r = sim.raft(leader).expect("nothing crashes it");
        if r.role() != raft_core::Role::Leader {
            return Err(format!("seed {seed}: the leader stepped down on its own"));
        }
        if Some(r.ticks()) != ticks && sim.stats.requests_sent >= requests + followers {
            break;
        }
    }
    let heartbeat_at = sim.now;

    // Different log lengths: a new entry misses `lagging` followers (two of
    // the four by default): the appends to them are dropped as they are sent.
    let others: Vec<usize> = (0..sim.nodes.len()).filter(|&n| n != leader).collect();
    let lagging = setup.lagging.min(others.len());
    let missed: Vec<usize> = sample(&mut rng, others.len(), lagging)
        .into_iter()
        .map(|i| others[i])
        .collect();
    for &f in &missed {
        sim.net.set_link(leader, f, false);
    }
    let proposed = sim.propose_at(leader, Bytes::from_static(b"entry-before-crash"));
    for &f in &missed {
        sim.net.set_link(leader, f, true);
    }
    if proposed.is_none() {
        return Err(format!("seed {seed}: the leader refused the proposal"));
    }

    // The crash, uniformly within the heartbeat interval.
    let heartbeat_us = setup.heartbeat_ms() * 1_000;
    let crash_at = heartbeat_at + rng.random_range(0..heartbeat_us);
    sim.run_until(crash_at);
    if let Some(v) = &sim.violation {
        return Err(format!(
            "seed {seed}: invariant '{}' broken: {}",
            v.invariant, v.detail
        ));
    }
    sim.crash(leader);

    loop {
        if let Some(l) = sim.leader() {
            let term = sim.raft(l).expect("the leader runs").term();
            debug_assert!(l != leader && term > old_term);
            return Ok(sim.now - crash_at);
        }
        if sim.now - crash_at > patience_us {
            return Err(format!(
                "seed {seed}: no new leader {patience_us} us after the crash"
            ));
        }
        step_or_fail(&mut sim, "after the crash")?;
    }
}

/// Summary figures of one configuration, in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Trials run.
    pub trials: usize,
    /// Trials that elected a new leader.
    pub elected: usize,
    /// Shortest time to a new leader.
    pub min_us: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile (nearest rank).
    pub p99_us: u64,
    /// Longest.
    pub max_us: u64,
    /// The first failure, if any.
    pub failure: Option<String>,
}

impl Figures {
    /// Summarizes the outcomes of a set of trials.
    pub fn of(outcomes: &[Result<u64, String>]) -> Figures {
        let mut times: Vec<u64> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok().copied())
            .collect();
        times.sort_unstable();
        let rank = |q: f64| -> u64 {
            if times.is_empty() {
                return 0;
            }
            let i = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
            times[i]
        };
        Figures {
            trials: outcomes.len(),
            elected: times.len(),
            min_us: times.first().copied().unwrap_or(0),
            mean_us: if times.is_empty() {
                0.0
            } else {
                times.iter().sum::<u64>() as f64 / times.len() as f64
            },
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            max_us: times.last().copied().unwrap_or(0),
            failure: outcomes.iter().find_map(|o| o.as_ref().err().cloned()),
        }
    }
}

/// Runs `trials` trials of `setup` (seeds `base_seed..base_seed + trials`)
/// on `threads` threads; the outcome does not depend on the thread count.
pub fn run_setup(setup: &Setup, trials: usize, base_seed: u64, threads: usize) -> Figures {
    let threads = threads.clamp(1, trials.max(1));
    let mut outcomes: Vec<Result<u64, String>> = Vec::with_capacity(trials);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..trials)
                        .step_by(threads)
                        .map(|i| (i, trial(setup, base_seed + i as u64)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, Result<u64, String>)> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("a trial panicked"))
            .collect();
        all.sort_by_key(|(i, _)| *i);
        outcomes.extend(all.into_iter().map(|(_, o)| o));
    });
    Figures::of(&outcomes)
}

const USAGE: &str = "usage: raft-sim election [--trials N] [--seed S] [--threads T] [--all]
         [--delay-ms A-B] [--disk-ms A-B] [--lagging K]
  --trials N     trials per configuration (1000)
  --seed S       seeds S..S+N (0)
  --all          also the paper's own algorithm (no pre-vote, no check-quorum) and the
                 150-155 and 150-200 ms ranges the paper quotes figures for
  --delay-ms A-B one-way network delay, uniform (5-10)
  --disk-ms A-B  disk write latency, uniform (0.1-1)
  --lagging K    followers that miss the leader's last entry, 0-4 (2)";

/// Parses `A-B` (milliseconds, fractions allowed) into a microsecond range.
fn parse_range_ms(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once('-')?;
    let us = |x: &str| -> Option<u64> {
        let ms: f64 = x.trim().parse().ok()?;
        (ms.is_finite() && ms >= 0.0).then(|| (ms * 1000.0).round() as u64)
    };
    let (a, b) = (us(a)?, us(b)?);
    (a <= b).then_some((a, b))
}

/// Entry point of `raft-sim election`.
pub fn main(args: &[String]) -> ExitCode {
    let mut trials = 1000usize;
    let mut base_seed = 0u64;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut all = false;
    let (mut delay_us, mut disk_us, mut lagging) = (DELAY_US, DISK_US, 2usize);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let flag = arg.as_str();
        match flag {
            "--all" => {
                all = true;
                continue;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {}
        }
        let value = it.next().map_or("", String::as_str);
        let number = || -> Result<u64, String> {
            value
                .parse()
                .map_err(|_| format!("{flag}: '{value}' is not a number"))
        };
        let range = || -> Result<(u64, u64), String> {
            parse_range_ms(value)
                .ok_or_else(|| format!("{flag}: '{value}' is not a range like 5-10"))
        };
        let parsed = match flag {
            "--trials" => number().map(|n| trials = n.max(1) as usize),
            "--seed" => number().map(|n| base_seed = n),
            "--threads" => number().map(|n| threads = n.max(1) as usize),
            "--delay-ms" => range().map(|r| delay_us = r),
            "--disk-ms" => range().map(|r| disk_us = r),
            "--lagging" => number().map(|n| lagging = (n as usize).min(4)),
            other => Err(format!("unknown option '{other}'")),
        };
        if let Err(e) = parsed {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }

    let mut setups = DEFAULT_SETUPS.to_vec();
    if all {
        setups.extend(EXTRA_SETUPS);
    }
    for s in &mut setups {
        s.delay_us = delay_us;
        s.disk_us = disk_us;
        s.lagging = lagging;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let began = Instant::now();
    println!("Leader election after a leader crash: Raft paper (ATC 2014) section 9.3, Figure 16");
    println!("  5 voters; 1 ms ticks; heartbeat every min/2 ms (as in the paper); one-way network");
    println!(
        "  delay {}-{} ms (the paper's broadcast time, an RPC round trip, was roughly 15 ms);",
        ms(delay_us.0),
        ms(delay_us.1)
    );
    println!(
        "  disk writes {}-{} ms. Each trial: a stable leader appends an entry that misses {lagging} of",
        ms(disk_us.0),
        ms(disk_us.1)
    );
    println!(
        "  its 4 followers (different log lengths), then crashes at a uniformly random instant"
    );
    println!("  of its heartbeat interval. Time from the crash to a new leader, in ms; seeds from {base_seed}.");
    println!();
    println!(
        "{:<12} {:<8} {:<8} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}   paper, ms (1000 trials)",
        "timeouts", "pre-vote", "chk-quo", "trials", "elected", "min", "mean", "p50", "p99", "max"
    );
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut failed = false;
    for setup in &setups {
        let f = run_setup(setup, trials, base_seed, threads);
        println!(
            "{:<12} {:<8} {:<8} {:>6} {:>7} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1}   {}",
            setup.label(),
            yes_no(setup.pre_vote),
            yes_no(setup.check_quorum),
            f.trials,
            f.elected,
            ms(f.min_us),
            f.mean_us / 1000.0,
            ms(f.p50_us),
            ms(f.p99_us),
            ms(f.max_us),
            setup.paper
        );
        if let Some(e) = &f.failure {
            println!("  FAILED: {e}");
            failed = true;
        }
    }
    println!();
    println!(
        "Paper, section 9.3: 12-24 ms elects a leader in 35 ms on average, the longest of 1000"
    );
    println!(
        "trials took 152 ms; 150-155 ms has a median of 287 ms; 150-200 ms a worst case of 513 ms;"
    );
    println!(
        "150-300 ms is recommended as conservative and appears only as a curve in Figure 16; the"
    );
    println!("smallest possible downtime is about half the minimum election timeout. The paper's");
    println!(
        "algorithm has neither pre-vote nor check-quorum (both came later, with Ongaro's thesis):"
    );
    println!("--all adds rows without them.");
    println!("({:.1} s)", began.elapsed().as_secs_f64());
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_trial_elects_a_new_leader() {
        let setup = Setup::new(12, 24, false, true);
        let f = run_setup(&setup, 20, 0, 2);
        assert_eq!(f.failure, None);
        assert_eq!((f.trials, f.elected), (20, 20));
        assert!(
            f.min_us as f64 <= f.mean_us && f.mean_us <= f.max_us as f64,
            "{f:?}"
        );
        assert!(
            f.min_us <= f.p50_us && f.p50_us <= f.p99_us && f.p99_us <= f.max_us,
            "{f:?}"
        );
    }

    #[test]
    fn a_trial_is_deterministic_per_seed() {
        let setup = Setup::new(12, 24, true, true);
        assert_eq!(trial(&setup, 7), trial(&setup, 7));
    }
}
