//! MIT 6.5840 lab 3A and 3B (`raft/test_test.go`): elections and agreement.
//!
//! Each scenario follows its MIT test step by step; MIT's `t.Fatalf`
//! becomes a returned failure, its sleeps are simulated time. Where MIT
//! hard-codes log indexes, ours shift by the blank entry each new leader
//! appends, so the expected indexes are computed from the log instead.

use raft_core::{EntryPayload, Term};
use rand::Rng;

use super::support::{
    cmd_hash, ensure, mit_config, ScenarioReport, Tester, MS, RAFT_ELECTION_TIMEOUT, SECOND,
};
use crate::cluster::id_of;

/// TestInitialElection3A: three servers elect a leader; after a while with
/// no failure everyone still agrees on the term, and it has not changed;
/// there is still a leader.
pub fn initial_election(seed: u64) -> Result<ScenarioReport, String> {
    let mut t = Tester::new(mit_config(seed, 3));
    t.check_one_leader()?;
    t.sleep(50 * MS)?;
    let term1 = t.check_terms()?;
    ensure!(t, term1 >= 1, "term is {term1}, but should be at least 1");
    t.sleep(2 * RAFT_ELECTION_TIMEOUT)?;
    let term2 = t.check_terms()?;
    // MIT only warns here; with pre-vote and check-quorum a quiet cluster
    // has no reason to start an election, so we require it.
    ensure!(
        t,
        term1 == term2,
        "term changed from {term1} to {term2} with no failure"
    );
    t.check_one_leader()?;
    t.figure("term", term2);
    t.finish()
}

/// TestReElection3A: a disconnected leader is replaced; its return does not
/// disturb the new leader; with two of three servers gone there is no
/// leader; a quorum elects one again, and the last server's return keeps it.
pub fn re_election(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 3;
    let mut t = Tester::new(mit_config(seed, servers));
    let leader1 = t.check_one_leader()?;

    // if the leader disconnects, a new one should be elected.
    t.disconnect(leader1);
    let new_leader = t.check_one_leader()?;
    let term = t.sim.raft(new_leader).map_or(0, |r| r.term());

    // if the old leader rejoins, that shouldn't disturb the new leader.
    t.connect(leader1);
    let leader2 = t.check_one_leader()?;
    let term2 = t.sim.raft(leader2).map_or(0, |r| r.term());
    ensure!(
        t,
        leader2 == new_leader && term2 == term,
        "the old leader's return disturbed the leader: n{} in term {term} became n{} in term {term2}",
        id_of(new_leader),
        id_of(leader2)
    );

    // if there's no quorum, no new leader should be elected.
    t.disconnect(leader2);
    t.disconnect((leader2 + 1) % servers);
    t.sleep(2 * RAFT_ELECTION_TIMEOUT)?;
    t.check_no_leader()?;

    // if a quorum arises, it should elect a leader.
    t.connect((leader2 + 1) % servers);
    t.check_one_leader()?;

    // re-join of last node shouldn't prevent leader from existing.
    t.connect(leader2);
    t.check_one_leader()?;
    t.finish()
}

/// TestManyElections3A: seven servers; nine times, up to three random ones
/// are disconnected: either the leader survives or the remaining majority
/// elects one, and exactly one connected server leads; then they come back.
pub fn many_elections(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 7;
    let mut t = Tester::new(mit_config(seed, servers));
    t.check_one_leader()?;
    for _ in 1..10 {
        let picks = [t.rand_server(), t.rand_server(), t.rand_server()];
        for &i in &picks {
            t.disconnect(i);
        }
        // either the current leader should still be alive,
        // or the remaining four should elect a new one.
        t.check_one_leader()?;
        // Stronger than MIT: with check-quorum, no connected server is
        // still leader of an older term either.
        let leaders = t.connected_leaders();
        ensure!(
            t,
            leaders.len() == 1,
            "connected servers {leaders:?} all claim to lead"
        );
        for &i in &picks {
            t.connect(i);
        }
    }
    t.check_one_leader()?;
    t.finish()
}

/// TestBasicAgree3B: three commands, each committed on all three servers
/// at the expected index: the one after the leader's last entry (MIT's 1,
/// 2, 3 shifted by the leader's blank entry), never committed before it was
/// proposed.
pub fn basic_agree(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 3;
    let mut t = Tester::new(mit_config(seed, servers));
    // MIT knows the first index is 1; ours follows the new leader's blank
    // entry, so ask the leader's log where the first command will go.
    let leader = t.check_one_leader()?;
    let raft = t.sim.raft(leader).expect("a leader runs");
    let mut expected = raft.last_index() + 1;
    for i in 1..expected {
        let blank = raft
            .entry(i)
            .is_some_and(|e| e.payload == EntryPayload::Blank);
        ensure!(
            t,
            blank,
            "entry {i} before any command is not a leader's blank entry"
        );
    }
    for k in 1..=3u64 {
        let (nd, _) = t.n_committed(expected);
        ensure!(
            t,
            nd == 0,
            "some have committed index {expected} before Start()"
        );
        let xindex = t.one(k * 100, servers, false)?;
        ensure!(
            t,
            xindex == expected,
            "got index {xindex} but expected {expected}"
        );
        expected = xindex + 1;
    }
    t.finish()
}

/// TestFollowerFailure3B: agreement survives one disconnected follower;
/// with both followers gone, a proposal is not committed.
pub fn follower_failure(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 3;
    let mut t = Tester::new(mit_config(seed, servers));
    t.one(101, servers, false)?;

    // disconnect one follower from the network.
    let leader1 = t.check_one_leader()?;
    t.disconnect((leader1 + 1) % servers);

    // the leader and remaining follower should be able to agree.
    t.one(102, servers - 1, false)?;
    t.sleep(RAFT_ELECTION_TIMEOUT)?;
    let last = t.one(103, servers - 1, false)?;

    // disconnect the remaining follower
    let leader2 = t.check_one_leader()?;
    t.disconnect((leader2 + 1) % servers);
    t.disconnect((leader2 + 2) % servers);

    // submit a command: it goes right after the last one (MIT's index 4).
    let Some((index, _)) = t.start(leader2, 104) else {
        return Err(t.failure("leader rejected Start()"));
    };
    ensure!(
        t,
        index == last + 1,
        "expected index {}, got {index}",
        last + 1
    );
    t.sleep(2 * RAFT_ELECTION_TIMEOUT)?;

    // check that command 104 did not commit.
    t.check_no_agreement(index)?;
    t.finish()
}

/// TestLeaderFailure3B: the followers of a disconnected leader elect a new
/// one and agree; with the second leader gone too, a command proposed
/// everywhere is not committed.
pub fn leader_failure(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 3;
    let mut t = Tester::new(mit_config(seed, servers));
    t.one(101, servers, false)?;

    // disconnect the first leader: the remaining followers elect a new one.
    let leader1 = t.check_one_leader()?;
    t.disconnect(leader1);
    t.one(102, servers - 1, false)?;
    t.sleep(RAFT_ELECTION_TIMEOUT)?;
    let last = t.one(103, servers - 1, false)?;

    // disconnect the new leader and submit a command to each server.
    let leader2 = t.check_one_leader()?;
    t.disconnect(leader2);
    let mut proposed = Vec::new();
    for i in 0..servers {
        if let Some((index, _)) = t.start(i, 104) {
            proposed.push(index);
        }
    }
    t.sleep(2 * RAFT_ELECTION_TIMEOUT)?;

    // check that command 104 did not commit (MIT's index 4: right after 103).
    t.check_no_agreement(last + 1)?;
    for index in proposed {
        let h = t.committed_hash(index);
        ensure!(
            t,
            h != Some(cmd_hash(104)),
            "command 104 committed at {index} with no majority"
        );
    }
    t.finish()
}

/// TestFailAgree3B: a disconnected follower misses four commands; once
/// reconnected, all three servers keep the earlier agreements and agree on
/// new commands.
pub fn fail_agree(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 3;
    let mut t = Tester::new(mit_config(seed, servers));
    t.one(101, servers, false)?;

    // disconnect one follower from the network.
    let leader = t.check_one_leader()?;
    t.disconnect((leader + 1) % servers);

    // the leader and remaining follower should be able to agree.
    t.one(102, servers - 1, false)?;
    t.one(103, servers - 1, false)?;
    t.sleep(RAFT_ELECTION_TIMEOUT)?;
    t.one(104, servers - 1, false)?;
    let missed = t.one(105, servers - 1, false)?;

    // re-connect: the full set preserves previous agreements and agrees on
    // new commands.
    t.connect((leader + 1) % servers);
    t.one(106, servers, true)?;
    t.sleep(RAFT_ELECTION_TIMEOUT)?;
    t.one(107, servers, true)?;
    let (nd, h) = t.n_committed(missed);
    ensure!(
        t,
        nd == servers && h == Some(cmd_hash(105)),
        "the rejoined follower lacks 105"
    );
    t.finish()
}

/// TestFailNoAgree3B: five servers, three followers disconnected: the
/// leader accepts a proposal but it is not committed; after the repair, a
/// new leader (possibly one that never saw it) takes new proposals at the
/// next index or the one after, and all five agree.
pub fn fail_no_agree(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 5;
    let mut t = Tester::new(mit_config(seed, servers));
    let first = t.one(10, servers, false)?;

    // 3 of 5 followers disconnect
    let leader = t.check_one_leader()?;
    for k in 1..=3 {
        t.disconnect((leader + k) % servers);
    }
    let Some((index, _)) = t.start(leader, 20) else {
        return Err(t.failure("leader rejected Start()"));
    };
    // MIT: index 2, right after the command at 1.
    ensure!(
        t,
        index == first + 1,
        "expected index {}, got {index}",
        first + 1
    );
    t.sleep(2 * RAFT_ELECTION_TIMEOUT)?;
    let (n, _) = t.n_committed(index);
    ensure!(t, n == 0, "{n} committed but no majority");

    // repair
    for k in 1..=3 {
        t.connect((leader + k) % servers);
    }
    // the disconnected majority may have chosen a leader from among their
    // own ranks, forgetting index 2.
    let leader2 = t.check_one_leader()?;
    let Some((index2, _)) = t.start(leader2, 30) else {
        return Err(t.failure("leader2 rejected Start()"));
    };
    // MIT: 2 <= index2 <= 3. Ours: after the new leader's blank entry,
    // which follows either 10 (20 forgotten) or 20 (20 kept).
    let (lo, hi) = (first + 2, first + 3);
    ensure!(
        t,
        (lo..=hi).contains(&index2),
        "unexpected index {index2}, expected {lo}..={hi}"
    );
    t.one(1000, servers, true)?;
    t.finish()
}

/// TestConcurrentStarts3B: five commands proposed at once at the leader all
/// commit on all three servers (retried if the term changes meanwhile).
pub fn concurrent_starts(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 3;
    let mut t = Tester::new(mit_config(seed, servers));
    for attempt in 0..5 {
        if attempt > 0 {
            t.sleep(3 * SECOND)?;
        }
        let leader = t.check_one_leader()?;
        let Some((_, term)) = t.start(leader, 1) else {
            continue;
        };
        // All five at the same instant: nothing runs in between.
        let mut indexes = Vec::new();
        for ii in 0..5 {
            if let Some((i, term1)) = t.start(leader, 100 + ii) {
                if term1 == term {
                    indexes.push((i, 100 + ii));
                }
            }
        }
        let moved: Vec<Term> = (0..servers)
            .filter_map(|j| t.sim.raft(j).map(|r| r.term()))
            .collect();
        if moved.iter().any(|&tj| tj != term) {
            continue; // term changed -- can't expect all Start()s to succeed
        }
        let mut failed = false;
        let mut committed = Vec::new();
        for &(index, _) in &indexes {
            match t.wait(index, servers, Some(term))? {
                None => {
                    failed = true;
                    break;
                }
                Some(h) => committed.push(h),
            }
        }
        if failed {
            continue;
        }
        for x in 100..105 {
            ensure!(t, committed.contains(&cmd_hash(x)), "cmd {x} missing");
        }
        t.figure("attempts", attempt + 1);
        return t.finish();
    }
    Err(t.failure("term changed too often"))
}

/// TestRejoin3B: a partitioned leader appends three commands no one else
/// sees; the others move on; when it rejoins (with the second leader gone)
/// its stale entries are replaced, and all three agree in the end.
pub fn rejoin(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 3;
    let mut t = Tester::new(mit_config(seed, servers));
    t.one(101, servers, true)?;

    // leader network failure
    let leader1 = t.check_one_leader()?;
    t.disconnect(leader1);

    // make old leader try to agree on some entries
    let mut stale = Vec::new();
    for x in [102, 103, 104] {
        stale.extend(t.start(leader1, x));
    }
    ensure!(
        t,
        stale.len() == 3,
        "the partitioned leader refused proposals"
    );

    // new leader commits, also for index=2
    t.one(103, 2, true)?;

    // new leader network failure; old leader connected again
    let leader2 = t.check_one_leader()?;
    t.disconnect(leader2);
    t.connect(leader1);
    t.one(104, 2, true)?;

    // all together now
    t.connect(leader2);
    t.one(105, servers, true)?;
    // The old leader's entries were replaced, never committed.
    for (index, term) in stale {
        let c = t.sim.checker.committed_at(index);
        ensure!(
            t,
            c.is_none_or(|(t2, _)| t2 != term),
            "stale entry {index}/{term} committed"
        );
    }
    t.finish()
}

/// TestBackup3B: the leader backs up quickly over incorrect follower logs:
/// 50 uncommitted entries in a minority, 50 committed by the majority, 50
/// more uncommitted in another minority; then the first minority rejoins
/// with one up-to-date server, which must overwrite its 50 stale entries.
pub fn backup(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 5;
    let mut t = Tester::new(mit_config(seed, servers));
    let x = t.rng.random();
    t.one(x, servers, true)?;

    // put leader and one follower in a partition
    let leader1 = t.check_one_leader()?;
    for k in 2..=4 {
        t.disconnect((leader1 + k) % servers);
    }

    // submit lots of commands that won't commit
    for _ in 0..50 {
        let x = t.rng.random();
        t.start(leader1, x);
    }
    t.sleep(RAFT_ELECTION_TIMEOUT / 2)?;
    t.disconnect(leader1);
    t.disconnect((leader1 + 1) % servers);

    // allow other partition to recover
    for k in 2..=4 {
        t.connect((leader1 + k) % servers);
    }

    // lots of successful commands to new group.
    for _ in 0..50 {
        let x = t.rng.random();
        t.one(x, 3, true)?;
    }

    // now another partitioned leader and one follower
    let leader2 = t.check_one_leader()?;
    let mut other = (leader1 + 2) % servers;
    if leader2 == other {
        other = (leader2 + 1) % servers;
    }
    t.disconnect(other);

    // lots more commands that won't commit
    for _ in 0..50 {
        let x = t.rng.random();
        t.start(leader2, x);
    }
    t.sleep(RAFT_ELECTION_TIMEOUT / 2)?;

    // bring original leader back to life,
    for i in 0..servers {
        t.disconnect(i);
    }
    t.connect(leader1);
    t.connect((leader1 + 1) % servers);
    t.connect(other);

    // lots of successful commands to new group.
    let began = t.sim.now;
    for _ in 0..50 {
        let x = t.rng.random();
        t.one(x, 3, true)?;
    }
    t.figure("backup_phase_ms", (t.sim.now - began) / MS);

    // now everyone
    for i in 0..servers {
        t.connect(i);
    }
    let x = t.rng.random();
    t.one(x, servers, true)?;
    t.finish()
}

/// TestCount3B: RPC counts are not too high, counted as requests sent
/// (appends, heartbeats, votes, pre-votes, snapshots, timeout-now,
/// read-index): at most 30 to elect the first leader; at most
/// `(iters + 1 + 3) * 3` = 42 to agree on 10 commands (12 proposed); at
/// most 60 in one idle second.
pub fn count(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 3;
    let mut t = Tester::new(mit_config(seed, servers));
    t.check_one_leader()?;
    let total1 = t.sim.stats.requests_sent;
    ensure!(
        t,
        (1..=30).contains(&total1),
        "too many or few RPCs ({total1}) to elect initial leader"
    );
    t.figure("election_requests", total1);

    let iters = 10u64;
    let mut agreement = None;
    'attempts: for attempt in 0..5 {
        if attempt > 0 {
            t.sleep(3 * SECOND)?; // give the cluster some time to settle
        }
        let leader = t.check_one_leader()?;
        let total1 = t.sim.stats.requests_sent;
        let Some((starti, term)) = t.start(leader, 1) else {
            continue;
        };
        let mut cmds = Vec::new();
        for i in 1..iters + 2 {
            let x = t.rng.random::<u32>() as u64;
            cmds.push(x);
            match t.start(leader, x) {
                Some((index1, term1)) if term1 == term => {
                    ensure!(
                        t,
                        index1 == starti + i,
                        "Start() put the command at {index1}, not {}",
                        starti + i
                    );
                }
                _ => continue 'attempts, // no longer the leader
            }
        }
        for i in 1..iters + 1 {
            match t.wait(starti + i, servers, Some(term))? {
                None => continue 'attempts, // term changed -- try again
                Some(h) => ensure!(
                    t,
                    h == cmd_hash(cmds[(i - 1) as usize]),
                    "wrong value committed for index {}",
                    starti + i
                ),
            }
        }
        let moved = (0..servers).any(|j| t.sim.raft(j).is_some_and(|r| r.term() != term));
        if moved {
            continue; // term changed -- can't expect low RPC counts
        }
        let used = t.sim.stats.requests_sent - total1;
        let budget = (iters + 1 + 3) * 3;
        ensure!(
            t,
            used <= budget,
            "too many RPCs ({used} > {budget}) for {iters} entries"
        );
        agreement = Some(used);
        break;
    }
    let Some(used) = agreement else {
        return Err(t.failure("term changed too often"));
    };
    t.figure("agreement_requests", used);

    let total2 = t.sim.stats.requests_sent;
    t.sleep(RAFT_ELECTION_TIMEOUT)?;
    let idle = t.sim.stats.requests_sent - total2;
    ensure!(
        t,
        idle <= 3 * 20,
        "too many RPCs ({idle}) for 1 second of idleness"
    );
    t.figure("idle_requests", idle);
    t.finish()
}
