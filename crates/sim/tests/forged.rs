//! Forged messages with implausible terms: every seed sends some, and every
//! node refuses them without changing.

use raft_core::bugs::BugSet;
use raft_sim::cluster::id_of;
use raft_sim::run::profile;
use raft_sim::{Sim, SimConfig};

#[test]
fn every_forged_term_is_refused_and_counted() {
    let mut sim = Sim::new(SimConfig::new(7, 3));
    sim.run_for(500_000);
    for round in 0..60 {
        sim.inject_forged_term(round % 3);
    }
    assert!(sim.violation.is_none(), "{:?}", sim.violation);
    assert_eq!(sim.stats.forged_terms_injected, 60);
    for n in 0..3 {
        let r = sim.raft(n).expect("running");
        assert_eq!(r.metrics().refused_implausible_term, 20, "n{}", id_of(n));
        assert!(r.term() < 10, "n{} kept a plausible term", id_of(n));
    }
    sim.run_for(500_000);
    assert!(sim.leader().is_some(), "the cluster still has a leader");
}

#[test]
fn every_seed_forges_a_message() {
    for seed in 0..12 {
        let (cfg, mix, _) = profile(seed, BugSet::default());
        let mut sim = Sim::new(cfg);
        sim.start_clients();
        sim.start_faults(mix, 2_000_000);
        sim.run_until(2_000_000);
        assert!(sim.violation.is_none(), "seed {seed}: {:?}", sim.violation);
        assert!(sim.stats.forged_terms_injected > 0, "seed {seed}");
    }
}
