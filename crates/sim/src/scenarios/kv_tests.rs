//! MIT 6.5840 lab 4 (`kvraft/test_test.go`): the replicated key-value
//! service under clients, an unreliable network, partitions and crashes,
//! checked for linearizability at the end (Porcupine there,
//! `raft_lincheck` here).
//!
//! The simulator's clients stand for MIT's: each runs one read, write or
//! compare-and-set at a time on a few shared keys (MIT's clients each
//! append to their own key; shared keys make the linearizability check
//! stronger). Like MIT's, they can reach every server. A client whose
//! server crashed gives up after a timeout, leaving its operation open in
//! the history (MIT's clerk would retry; without duplicate detection a
//! retry could apply a write twice). [`one_partition`] needs clients
//! confined to one side of a partition: it uses scripted clerks.

use raft_lincheck::Output;

use super::clerk::{Clerk, Request};
use super::support::{ensure, mit_config, ScenarioReport, Tester, MS, SECOND};
use crate::net::NetConfig;

/// The shape of one of MIT's `GenericTest` runs.
#[derive(Debug, Clone, Copy)]
struct Generic {
    clients: usize,
    unreliable: bool,
    crash: bool,
    partitions: bool,
    /// MIT's `maxraftstate`, as "snapshot every this many entries" (0: no
    /// snapshots).
    snapshot_every: u64,
}

/// MIT's electionTimeout in the kv tests.
const ELECTION_TIMEOUT: u64 = SECOND;

/// MIT's `GenericTest` with 5 servers: three rounds of 5 s of client
/// operations, during which (if `partitions`) the servers are split in two
/// random groups about every second; after each round the network heals,
/// (if `crash`) every server crashes and restarts, every operation started
/// finishes, and a clerk reaching all servers reads every key (MIT's
/// per-client check, which must succeed within 10 s). Every round must
/// complete operations, and the whole history must be linearizable.
fn generic_test(seed: u64, g: Generic) -> Result<ScenarioReport, String> {
    let servers = 5;
    let mut cfg = mit_config(seed, servers);
    cfg.clients = g.clients;
    cfg.keys = 4;
    cfg.client_timeout_us = 2 * SECOND;
    cfg.snapshot_every = g.snapshot_every;
    if g.unreliable {
        cfg.net = NetConfig::unreliable();
    }
    let keys = cfg.keys;
    let all: Vec<usize> = (0..servers).collect();
    let mut t = Tester::new(cfg);
    let mut ck = Clerk::new(g.clients, &all);
    let mut completed = 0;
    let mut partitions = 0;
    for round in 0..3 {
        t.sim.start_clients();
        if g.partitions {
            // Allow the clients to perform some operations without interruption
            t.sleep(SECOND)?;
            let end = t.sim.now + 5 * SECOND;
            while t.sim.now < end {
                let (mut p1, mut p2) = (Vec::new(), Vec::new());
                for i in 0..servers {
                    if t.rand(2) == 0 {
                        p1.push(i);
                    } else {
                        p2.push(i);
                    }
                }
                t.partition(&p1, &p2);
                partitions += 1;
                let pause = ELECTION_TIMEOUT + t.rand(200) * MS;
                t.sleep(pause)?;
            }
        } else {
            t.sleep(5 * SECOND)?;
        }
        t.sim.stop_clients();
        if g.partitions {
            // A client may have submitted a request in a minority: it won't
            // return until that server discovers a new term has started.
            t.connect_all();
            t.sleep(ELECTION_TIMEOUT)?;
        }
        if g.crash {
            t.crash_all_and_restart(ELECTION_TIMEOUT)?;
        }
        // wait for the clients' last operations.
        t.settle_ops(2 * t.sim.cfg.client_timeout_us)?;
        let now_completed = t.sim.workload.completed();
        ensure!(
            t,
            now_completed > completed,
            "round {round}: no client operation completed"
        );
        completed = now_completed;
        for key in 0..keys {
            ck.get(&mut t, key)?;
        }
    }
    t.check_linearizable()?;
    if g.partitions {
        t.figure("partitions", partitions);
    }
    if g.snapshot_every > 0 {
        let taken = t.sim.stats.snapshots_taken;
        ensure!(t, taken > 0, "no snapshot was taken");
        t.figure("snapshots_taken", taken);
    }
    t.finish()
}

/// TestBasic4A: one client, no faults.
pub fn basic(seed: u64) -> Result<ScenarioReport, String> {
    let g = Generic {
        clients: 1,
        unreliable: false,
        crash: false,
        partitions: false,
        snapshot_every: 0,
    };
    generic_test(seed, g)
}

/// TestConcurrent4A: five clients, no faults.
pub fn concurrent(seed: u64) -> Result<ScenarioReport, String> {
    let g = Generic {
        clients: 5,
        unreliable: false,
        crash: false,
        partitions: false,
        snapshot_every: 0,
    };
    generic_test(seed, g)
}

/// TestUnreliable4A: five clients on an unreliable network.
pub fn unreliable(seed: u64) -> Result<ScenarioReport, String> {
    let g = Generic {
        clients: 5,
        unreliable: true,
        crash: false,
        partitions: false,
        snapshot_every: 0,
    };
    generic_test(seed, g)
}

/// TestManyPartitionsOneClient4A: one client, random partitions.
pub fn many_partitions_one_client(seed: u64) -> Result<ScenarioReport, String> {
    let g = Generic {
        clients: 1,
        unreliable: false,
        crash: false,
        partitions: true,
        snapshot_every: 0,
    };
    generic_test(seed, g)
}

/// TestManyPartitionsManyClients4A: five clients, random partitions.
pub fn many_partitions_many_clients(seed: u64) -> Result<ScenarioReport, String> {
    let g = Generic {
        clients: 5,
        unreliable: false,
        crash: false,
        partitions: true,
        snapshot_every: 0,
    };
    generic_test(seed, g)
}

/// TestPersistOneClient4A: one client, every server crashes and restarts
/// after each round.
pub fn persist_one_client(seed: u64) -> Result<ScenarioReport, String> {
    let g = Generic {
        clients: 1,
        unreliable: false,
        crash: true,
        partitions: false,
        snapshot_every: 0,
    };
    generic_test(seed, g)
}

/// TestPersistConcurrent4A: five clients, crash and restart of all.
pub fn persist_concurrent(seed: u64) -> Result<ScenarioReport, String> {
    let g = Generic {
        clients: 5,
        unreliable: false,
        crash: true,
        partitions: false,
        snapshot_every: 0,
    };
    generic_test(seed, g)
}

/// TestPersistPartition4A: five clients, partitions, crash and restart.
pub fn persist_partition(seed: u64) -> Result<ScenarioReport, String> {
    let g = Generic {
        clients: 5,
        unreliable: false,
        crash: true,
        partitions: true,
        snapshot_every: 0,
    };
    generic_test(seed, g)
}

/// TestPersistPartitionUnreliable4A: the same on an unreliable network.
pub fn persist_partition_unreliable(seed: u64) -> Result<ScenarioReport, String> {
    let g = Generic {
        clients: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        snapshot_every: 0,
    };
    generic_test(seed, g)
}

/// TestSnapshotUnreliableRecoverConcurrentPartition4B: the hardest 4A
/// shape with snapshots (every 8 entries) on.
pub fn snapshot_unreliable_recover_partition(seed: u64) -> Result<ScenarioReport, String> {
    let g = Generic {
        clients: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        snapshot_every: 8,
    };
    generic_test(seed, g)
}

/// TestOnePartition4A: with the leader in a majority of three, a clerk
/// there puts and gets; two clerks confined to the minority start a put
/// and a get, which do not complete while the partition lasts (a second
/// majority put does); once healed, both complete, and the minority's put
/// (the last one) is what a clerk reads.
pub fn one_partition(seed: u64) -> Result<ScenarioReport, String> {
    let servers = 5;
    let key = 1;
    let mut t = Tester::new(mit_config(seed, servers));
    let all: Vec<usize> = (0..servers).collect();
    let mut ck = Clerk::new(0, &all);
    ck.put(&mut t, key, 13)?;

    // progress in majority: the leader and two others.
    let leader = t.check_one_leader()?;
    let mut p1 = vec![leader];
    let mut p2 = Vec::new();
    for i in (0..servers).filter(|&i| i != leader) {
        if p1.len() < 3 {
            p1.push(i);
        } else {
            p2.push(i);
        }
    }
    t.partition(&p1, &p2);
    let mut ckp1 = Clerk::new(1, &p1);
    let mut ckp2a = Clerk::new(2, &p2);
    let mut ckp2b = Clerk::new(3, &p2);
    ckp1.put(&mut t, key, 14)?;
    let v = ckp1.get(&mut t, key)?;
    ensure!(
        t,
        v == Some(14),
        "get in the majority returned {v:?}, want 14"
    );

    // no progress in minority
    ckp2a.begin(&mut t, Request::Put(key, 15));
    ckp2b.begin(&mut t, Request::Get(key));
    Clerk::run(&mut t, &mut [&mut ckp2a, &mut ckp2b], SECOND)?;
    ensure!(t, ckp2a.result().is_none(), "put in minority completed");
    ensure!(t, ckp2b.result().is_none(), "get in minority completed");

    ckp1.begin(&mut t, Request::Get(key));
    let v = Clerk::await_result(
        &mut t,
        &mut [&mut ckp1, &mut ckp2a, &mut ckp2b],
        0,
        10 * SECOND,
    )?;
    ensure!(
        t,
        v == Output::Read(Some(14)),
        "get in the majority returned {v:?}, want 14"
    );
    ckp1.begin(&mut t, Request::Put(key, 16));
    Clerk::await_result(
        &mut t,
        &mut [&mut ckp1, &mut ckp2a, &mut ckp2b],
        0,
        10 * SECOND,
    )?;
    ensure!(
        t,
        ckp2a.busy() && ckp2b.busy(),
        "an operation in the minority completed"
    );
    ckp1.begin(&mut t, Request::Get(key));
    let v = Clerk::await_result(
        &mut t,
        &mut [&mut ckp1, &mut ckp2a, &mut ckp2b],
        0,
        10 * SECOND,
    )?;
    ensure!(
        t,
        v == Output::Read(Some(16)),
        "get in the majority returned {v:?}, want 16"
    );

    // completion after heal
    t.connect_all();
    ckp2a.servers = all.clone();
    ckp2b.servers = all.clone();
    Clerk::run(&mut t, &mut [&mut ckp2a, &mut ckp2b], ELECTION_TIMEOUT)?;
    let limit = 30 * 100 * MS;
    Clerk::await_result(&mut t, &mut [&mut ckp2a, &mut ckp2b], 0, limit)?;
    Clerk::await_result(&mut t, &mut [&mut ckp2a, &mut ckp2b], 1, limit)?;
    let v = ck.get(&mut t, key)?;
    ensure!(
        t,
        v == Some(15),
        "after healing, get returned {v:?}, want 15"
    );
    t.check_linearizable()?;
    t.finish()
}
