//! A deterministic simulator for `raft-core`: seeded clusters of 3 to 7
//! nodes under message loss, duplication, reordering and delay, partitions,
//! crashes that lose unpersisted writes, clock skew, membership changes and
//! snapshots, with every Raft invariant checked after every step and client
//! histories checked for linearizability at the end.

pub mod checker;
pub mod cluster;
mod driver;
pub mod faults;
pub mod hash;
pub mod kv;
pub mod net;
pub mod node;
mod observe;
mod queue;
pub mod run;
pub mod trace;
pub mod workload;

pub use checker::Violation;
pub use cluster::{Sim, SimConfig};
pub mod election;
pub mod scenarios;
