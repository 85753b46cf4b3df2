//! MIT 6.5840 lab 3D (`raft/test_test.go`): snapshots.
//!
//! MIT's tester snapshots every `SnapShotInterval` = 10 applied commands
//! and its Raft keeps no log entries below a snapshot, so a follower that
//! falls behind the leader's snapshot must be sent it. Here: the simulator
//! snapshots every 10 applied entries (`snapshot_every`) and the core keeps
//! no trailing entries (`snapshot_trailing_entries = 0`; the default keeps
//! 20, which would let most lagging followers catch up from the log).

use rand::Rng;

use super::support::{ensure, mit_config, ScenarioReport, Tester, RAFT_ELECTION_TIMEOUT};
use crate::cluster::{id_of, SimConfig};
use crate::net::NetConfig;

/// MIT's `SnapShotInterval`.
const SNAPSHOT_INTERVAL: u64 = 10;

/// MIT's `MAXLOGSIZE` is 2000 bytes of Raft state; in entries, a bound that
/// only a log that is never compacted exceeds (30 rounds add 300+ entries).
const MAX_LOG_ENTRIES: u64 = 60;

fn snapshot_config(seed: u64, reliable: bool) -> SimConfig {
    let mut cfg = mit_config(seed, 3);
    cfg.snapshot_every = SNAPSHOT_INTERVAL;
    cfg.raft.snapshot_trailing_entries = 0;
    if !reliable {
        cfg.net = NetConfig::unreliable();
    }
    cfg
}

/// MIT's `snapcommon`: 30 rounds in which a victim (a follower, or every
/// third round the leader) is disconnected or crashed while 5 to 14
/// commands are proposed, then comes back and must catch up, through an
/// installed snapshot when it fell behind the leader's; the log stays
/// short throughout.
fn snapcommon(
    seed: u64,
    disconnect: bool,
    reliable: bool,
    crash: bool,
) -> Result<ScenarioReport, String> {
    let iters = 30;
    let servers = 3;
    let mut t = Tester::new(snapshot_config(seed, reliable));
    let x = t.rng.random();
    t.one(x, servers, true)?;
    let mut leader1 = t.check_one_leader()?;
    let mut max_log = 0;

    for i in 0..iters {
        let (mut victim, mut sender) = ((leader1 + 1) % servers, leader1);
        if i % 3 == 1 {
            sender = (leader1 + 1) % servers;
            victim = leader1;
        }
        if disconnect {
            t.disconnect(victim);
            let x = t.rng.random();
            t.one(x, servers - 1, true)?;
        }
        if crash {
            t.crash(victim);
            let x = t.rng.random();
            t.one(x, servers - 1, true)?;
        }

        // perhaps send enough to get a snapshot
        let nn = SNAPSHOT_INTERVAL / 2 + t.rand(SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            let x = t.rng.random();
            t.start(sender, x);
        }

        // let applier threads catch up with the Start()'s
        let x = t.rng.random();
        if !disconnect && !crash {
            // make sure all followers have caught up, so that an
            // InstallSnapshot RPC isn't required for SnapshotBasic.
            t.one(x, servers, true)?;
        } else {
            t.one(x, servers - 1, true)?;
        }

        let size = t.max_log_entries();
        max_log = max_log.max(size);
        ensure!(
            t,
            size < MAX_LOG_ENTRIES,
            "log size too large: {size} entries held"
        );

        if disconnect {
            // reconnect a follower, who may be behind and need a snapshot.
            t.connect(victim);
            let x = t.rng.random();
            t.one(x, servers, true)?;
            leader1 = t.check_one_leader()?;
        }
        if crash {
            t.restart(victim)?;
            let x = t.rng.random();
            t.one(x, servers, true)?;
            leader1 = t.check_one_leader()?;
        }
    }
    let taken = t.sim.stats.snapshots_taken;
    ensure!(t, taken > 0, "no snapshot was taken");
    t.figure("snapshots_taken", taken);
    t.figure("max_log_entries", max_log);
    if disconnect || crash {
        let installed = t.sim.stats.snapshots_installed;
        ensure!(
            t,
            installed > 0,
            "no lagging follower was sent a snapshot in {iters} rounds"
        );
    }
    t.finish()
}

/// TestSnapshotBasic3D: snapshots are taken and the log stays short, with
/// every follower kept up to date.
pub fn snapshot_basic(seed: u64) -> Result<ScenarioReport, String> {
    snapcommon(seed, false, true, false)
}

/// TestSnapshotInstall3D: disconnected followers catch up through
/// installed snapshots.
pub fn snapshot_install(seed: u64) -> Result<ScenarioReport, String> {
    snapcommon(seed, true, true, false)
}

/// TestSnapshotInstallUnreliable3D: the same on an unreliable network.
pub fn snapshot_install_unreliable(seed: u64) -> Result<ScenarioReport, String> {
    snapcommon(seed, true, false, false)
}

/// TestSnapshotInstallCrash3D: crashed followers restart from their own
/// snapshot and catch up through the leader's.
pub fn snapshot_install_crash(seed: u64) -> Result<ScenarioReport, String> {
    snapcommon(seed, false, true, true)
}

/// TestSnapshotInstallUnCrash3D: the same on an unreliable network.
pub fn snapshot_install_uncrash(seed: u64) -> Result<ScenarioReport, String> {
    snapcommon(seed, false, false, true)
}

/// Crashes every server and restarts it; each must come back with at least
/// the snapshot its disk held (MIT checks this indirectly: a server that
/// ignored its snapshot would disagree on indexes; a restarted node may
/// take a newer one at once as it re-applies its log). Returns how many
/// servers had a snapshot on disk.
fn crash_all_restart_from_snapshots(t: &mut Tester) -> Result<u64, String> {
    let mut on_disk = Vec::new();
    for i in 0..t.n() {
        t.crash(i);
        on_disk.push(t.sim.nodes[i].disk.snapshot.as_ref().map(|s| s.meta.index));
    }
    for (i, &disk) in on_disk.iter().enumerate() {
        t.restart(i)?;
        let restored = t
            .sim
            .raft(i)
            .and_then(|r| r.snapshot_meta())
            .map(|m| m.index);
        ensure!(
            t,
            restored >= disk,
            "n{} restarted with snapshot {restored:?}, but its disk held {disk:?}",
            id_of(i)
        );
    }
    Ok(on_disk.iter().filter(|d| d.is_some()).count() as u64)
}

/// TestSnapshotAllCrash3D: five times, 5 to 14 commands commit (enough for
/// a snapshot), every server crashes and restarts from its snapshot and the
/// tail of its log, and the next command lands after the last one.
pub fn snapshot_all_crash(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 3;
    let mut t = Tester::new(snapshot_config(seed, false));
    let x = t.rng.random();
    t.one(x, servers, true)?;
    let mut restored = 0;
    for _ in 0..5 {
        // perhaps enough to get a snapshot
        let nn = SNAPSHOT_INTERVAL / 2 + t.rand(SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            let x = t.rng.random();
            t.one(x, servers, true)?;
        }
        let x = t.rng.random();
        let index1 = t.one(x, servers, true)?;

        // crash all
        restored += crash_all_restart_from_snapshots(&mut t)?;

        let x = t.rng.random();
        let index2 = t.one(x, servers, true)?;
        ensure!(
            t,
            index2 > index1,
            "index decreased from {index1} to {index2}"
        );
    }
    ensure!(t, restored > 0, "no server ever restarted from a snapshot");
    t.figure("restarts_from_snapshot", restored);
    t.finish()
}

/// TestSnapshotInit3D: servers restored from a snapshot write correct
/// state afterwards: crash all, commit one command, crash all again, and
/// the cluster still agrees on the next command.
pub fn snapshot_init(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 3;
    let mut t = Tester::new(snapshot_config(seed, false));
    let x = t.rng.random();
    t.one(x, servers, true)?;

    // enough ops to make a snapshot
    for _ in 0..SNAPSHOT_INTERVAL + 1 {
        let x = t.rng.random();
        t.one(x, servers, true)?;
    }
    let restored = crash_all_restart_from_snapshots(&mut t)?;
    ensure!(
        t,
        restored == servers as u64,
        "{restored} of {servers} servers restarted from a snapshot"
    );

    // a single op, to get something to be written back to persistent storage.
    let x = t.rng.random();
    let a = t.one(x, servers, true)?;

    crash_all_restart_from_snapshots(&mut t)?;

    // do another op to trigger potential bug
    let x = t.rng.random();
    let b = t.one(x, servers, true)?;
    ensure!(t, b > a, "index decreased from {a} to {b}");
    t.sleep(RAFT_ELECTION_TIMEOUT)?;
    t.finish()
}
