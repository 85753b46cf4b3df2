//! MIT 6.5840 lab 3C (`raft/test_test.go`): persistence, Figure 8, churn.
//!
//! A crash here is the simulator's: the node loses everything not yet on
//! its disk (MIT's `ShutdownServer` keeps only what was `Persist`ed), and a
//! restart rebuilds it from that disk.

use raft_core::LogIndex;
use rand::Rng;

use super::support::{
    cmd_hash, ensure, mit_config, ScenarioReport, Tester, MS, RAFT_ELECTION_TIMEOUT,
};
use crate::net::NetConfig;

/// TestPersist13C: committed commands survive crashing every server, the
/// leader, a second leader while one more command commits without it, and
/// a follower.
pub fn persist1(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 3;
    let mut t = Tester::new(mit_config(seed, servers));
    let mut committed = vec![(t.one(11, servers, true)?, 11)];

    t.crash_all_and_restart(0)?;
    committed.push((t.one(12, servers, true)?, 12));

    let leader1 = t.check_one_leader()?;
    t.crash(leader1);
    t.restart(leader1)?;
    committed.push((t.one(13, servers, true)?, 13));

    let leader2 = t.check_one_leader()?;
    t.crash(leader2);
    let index14 = t.one(14, servers - 1, true)?;
    committed.push((index14, 14));
    t.restart(leader2)?;

    // wait for leader2 to join before killing i3 (MIT's wait(4, ...)).
    t.wait(index14, servers, None)?;

    let i3 = (t.check_one_leader()? + 1) % servers;
    t.crash(i3);
    committed.push((t.one(15, servers - 1, true)?, 15));
    t.restart(i3)?;
    committed.push((t.one(16, servers, true)?, 16));

    for (index, x) in committed {
        t.check_survived(index, x, servers)?;
    }
    t.finish()
}

/// TestPersist23C: five times, on five servers: a command commits on all;
/// two followers crash and one commits on three; the other three crash, the
/// first two restart, then a third, and one more commits on those three
/// (which must include a server that holds the previous one); all restart.
pub fn persist2(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 5;
    let mut t = Tester::new(mit_config(seed, servers));
    let mut committed = Vec::new();
    let mut index = 1;
    for _ in 0..5 {
        committed.push((t.one(10 + index, servers, true)?, 10 + index));
        index += 1;

        let leader1 = t.check_one_leader()?;
        t.crash((leader1 + 1) % servers);
        t.crash((leader1 + 2) % servers);
        committed.push((t.one(10 + index, servers - 2, true)?, 10 + index));
        index += 1;

        for k in [0, 3, 4] {
            t.crash((leader1 + k) % servers);
        }
        t.restart((leader1 + 1) % servers)?;
        t.restart((leader1 + 2) % servers)?;
        t.sleep(RAFT_ELECTION_TIMEOUT)?;
        t.restart((leader1 + 3) % servers)?;
        committed.push((t.one(10 + index, servers - 2, true)?, 10 + index));
        index += 1;

        t.restart((leader1 + 4) % servers)?;
        t.restart(leader1)?;
    }
    committed.push((t.one(1000, servers, true)?, 1000));
    for (index, x) in committed {
        t.check_survived(index, x, servers)?;
    }
    t.finish()
}

/// TestPersist33C: a partitioned leader and one follower crash, the leader
/// restarts: what the pair committed survives, and the cluster goes on.
pub fn persist3(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 3;
    let mut t = Tester::new(mit_config(seed, servers));
    let a = t.one(101, 3, true)?;

    let leader = t.check_one_leader()?;
    t.disconnect((leader + 2) % servers);
    let b = t.one(102, 2, true)?;

    t.crash(leader);
    t.crash((leader + 1) % servers);
    t.connect((leader + 2) % servers);
    t.restart(leader)?;
    let c = t.one(103, 2, true)?;

    t.restart((leader + 1) % servers)?;
    let d = t.one(104, servers, true)?;
    for (index, x) in [(a, 101), (b, 102), (c, 103), (d, 104)] {
        t.check_survived(index, x, servers)?;
    }
    t.finish()
}

/// A random pause as in MIT's Figure 8 tests: usually under 13 ms, one time
/// in ten up to half an election timeout.
fn figure8_pause(t: &mut Tester) -> u64 {
    if t.rand(1000) < 100 {
        t.rand(RAFT_ELECTION_TIMEOUT / MS / 2) * MS
    } else {
        t.rand(13) * MS
    }
}

/// TestFigure83C: 1000 rounds of: propose at every running server, wait a
/// little, crash the leader found (often before it commits), keep at least
/// three servers running; a leader of a new term may find entries of older
/// terms to finish replicating. In the end every server restarts and all
/// five agree on a new command. The checkers (log matching, state machine
/// safety, leader completeness) run throughout.
pub fn figure8(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 5;
    let mut t = Tester::new(mit_config(seed, servers));
    let x = t.rng.random();
    t.one(x, 1, true)?;
    let mut nup = servers;
    for _ in 0..1000 {
        let mut leader = None;
        for i in 0..servers {
            if t.is_up(i) {
                let x = t.rng.random();
                if t.start(i, x).is_some() {
                    leader = Some(i);
                }
            }
        }
        let pause = figure8_pause(&mut t);
        t.sleep(pause)?;
        if let Some(l) = leader {
            t.crash(l);
            nup -= 1;
        }
        if nup < 3 {
            let s = t.rand_server();
            if !t.is_up(s) {
                t.restart(s)?;
                nup += 1;
            }
        }
    }
    for i in 0..servers {
        if !t.is_up(i) {
            t.restart(i)?;
        }
    }
    let x = t.rng.random();
    t.one(x, servers, true)?;
    t.figure("crashes", t.sim.stats.crashes);
    t.finish()
}

/// MIT's long reordering (`SetLongReordering`): a third of the messages
/// are held back for up to 2.2 s, on top of the unreliable network.
fn long_reordering() -> NetConfig {
    NetConfig {
        long_delay_per_mille: 333,
        long_delay_max_us: 2_200 * MS,
        ..NetConfig::unreliable()
    }
}

/// TestFigure8Unreliable3C: Figure 8 on an unreliable network (loss,
/// duplication, reordering; long reordering from round 200), with leaders
/// disconnected instead of crashed; in the end all five are connected and
/// agree on a new command.
pub fn figure8_unreliable(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 5;
    let mut cfg = mit_config(seed, servers);
    cfg.net = NetConfig::unreliable();
    let mut t = Tester::new(cfg);
    let x = t.rand(10_000);
    t.one(x, 1, true)?;
    let mut nup = servers;
    for iters in 0..1000 {
        if iters == 200 {
            t.sim.net.config = long_reordering();
        }
        let mut leader = None;
        for i in 0..servers {
            let x = t.rand(10_000);
            if t.start(i, x).is_some() && t.connected[i] {
                leader = Some(i);
            }
        }
        let pause = figure8_pause(&mut t);
        t.sleep(pause)?;
        if let Some(l) = leader {
            if t.rand(1000) < RAFT_ELECTION_TIMEOUT / MS / 2 {
                t.disconnect(l);
                nup -= 1;
            }
        }
        if nup < 3 {
            let s = t.rand_server();
            if !t.connected[s] {
                t.connect(s);
                nup += 1;
            }
        }
    }
    for i in 0..servers {
        if !t.connected[i] {
            t.connect(i);
        }
    }
    let x = t.rand(10_000);
    t.one(x, servers, true)?;
    t.finish()
}

/// One of MIT's churn clients: proposes a random command at every server
/// (one may lead), checks a few times with backoff whether it committed,
/// and remembers the commands it saw committed.
struct ChurnClient {
    me: u64,
    /// Commands seen committed.
    values: Vec<u64>,
    /// The command being watched: index, command, checks done.
    watching: Option<(LogIndex, u64, usize)>,
    /// When this client acts next.
    wake: u64,
    done: bool,
}

/// MIT's churn client checks for its command after these pauses, then
/// gives up on it.
const CHURN_BACKOFF_MS: [u64; 5] = [10, 20, 50, 100, 200];

impl ChurnClient {
    fn step(&mut self, t: &mut Tester, stop: bool) {
        if let Some((index, x, k)) = self.watching {
            if k < CHURN_BACKOFF_MS.len() {
                let (nd, h) = t.n_committed(index);
                if nd == 0 {
                    self.watching = Some((index, x, k + 1));
                    self.wake = t.sim.now + CHURN_BACKOFF_MS[k] * MS;
                    return;
                }
                if h == Some(cmd_hash(x)) {
                    self.values.push(x);
                }
            }
            self.watching = None;
        }
        if stop {
            self.done = true;
            return;
        }
        let x = t.rng.random();
        let mut index = None;
        for i in 0..t.n() {
            if let Some((i1, _)) = t.start(i, x) {
                index = Some(i1);
            }
        }
        match index {
            Some(index) => self.watching = Some((index, x, 0)),
            None => self.wake = t.sim.now + (79 + self.me * 17) * MS,
        }
    }
}

/// Runs the churn clients (and the simulation) for `d`; with `stop`, until
/// every client has finished its current command.
fn run_churn(
    t: &mut Tester,
    clients: &mut [ChurnClient],
    d: u64,
    stop: bool,
) -> Result<(), String> {
    let until = t.sim.now + d;
    loop {
        let active = clients.iter().filter(|c| !c.done);
        let next = active.map(|c| c.wake).min().unwrap_or(u64::MAX);
        let all_done = clients.iter().all(|c| c.done);
        if (!stop && next > until) || (stop && all_done) {
            break;
        }
        t.sim.run_until(next.max(t.sim.now));
        t.ok()?;
        let now = t.sim.now;
        for c in clients.iter_mut().filter(|c| !c.done && c.wake <= now) {
            c.step(t, stop);
        }
    }
    if !stop {
        t.sim.run_until(until);
    }
    t.ok()
}

/// TestReliableChurn3C / TestUnreliableChurn3C: three clients propose
/// commands while, 20 times every 0.7 s, a random server may be
/// disconnected, restarted and reconnected, or crashed; key-value clients
/// run alongside. In the end everything is repaired: every command a
/// client saw committed is in the log all five servers applied, and the
/// key-value history is linearizable.
fn churn(seed: u64, reliable: bool) -> Result<ScenarioReport, String> {
    let servers = 5;
    let mut cfg = mit_config(seed, servers);
    cfg.clients = 3;
    if !reliable {
        cfg.net = NetConfig::unreliable();
    }
    let mut t = Tester::new(cfg);
    let mut clients: Vec<ChurnClient> = (0..3)
        .map(|me| ChurnClient {
            me,
            values: Vec::new(),
            watching: None,
            wake: 0,
            done: false,
        })
        .collect();
    t.sim.start_clients();
    for _ in 0..20 {
        if t.rand(1000) < 200 {
            let i = t.rand_server();
            t.disconnect(i);
        }
        if t.rand(1000) < 500 {
            let i = t.rand_server();
            t.restart(i)?; // restarts it if it is down, and connects it
        }
        if t.rand(1000) < 200 {
            let i = t.rand_server();
            if t.is_up(i) {
                t.crash(i);
            }
        }
        run_churn(&mut t, &mut clients, RAFT_ELECTION_TIMEOUT * 7 / 10, false)?;
    }
    run_churn(&mut t, &mut clients, RAFT_ELECTION_TIMEOUT, false)?;
    t.sim.net.config = NetConfig::reliable();
    for i in 0..servers {
        t.restart(i)?;
    }
    run_churn(&mut t, &mut clients, 0, true)?;
    t.sim.stop_clients();
    t.sleep(RAFT_ELECTION_TIMEOUT)?;

    let x = t.rng.random();
    let last = t.one(x, servers, true)?;
    let mut really = Vec::with_capacity(last as usize);
    for index in 1..=last {
        really.extend(t.wait(index, servers, None)?);
    }
    let values: Vec<u64> = clients
        .iter()
        .flat_map(|c| c.values.iter().copied())
        .collect();
    for &v in &values {
        ensure!(
            t,
            really.contains(&cmd_hash(v)),
            "didn't find committed value {v} in the log"
        );
    }
    t.figure("client_values_committed", values.len() as u64);
    t.settle_ops(2 * t.sim.cfg.client_timeout_us)?;
    t.check_linearizable()?;
    t.finish()
}

/// TestReliableChurn3C: churn on a reliable network.
pub fn reliable_churn(seed: u64) -> Result<ScenarioReport, String> {
    churn(seed, true)
}

/// TestUnreliableChurn3C: churn on an unreliable network.
pub fn unreliable_churn(seed: u64) -> Result<ScenarioReport, String> {
    churn(seed, false)
}
