//! raft-kv: a replicated key-value service on raft-node that speaks the
//! Redis protocol (RESP2), so that redis-cli, redis-benchmark and Redis
//! client libraries work against it unchanged.
//!
//! The shape follows tokio's mini-redis: [`frame`] parses and encodes RESP,
//! [`connection`] frames a socket, [`cmd`] parses and runs commands,
//! [`server`] accepts connections (as many as [`limits`] lets the
//! descriptors hold). [`store`] is the replicated state machine
//! (a batch of writes is one log entry, the ACL users included; [`acl`]
//! checks them, [`users_init`] founds them), [`admin`] the HTTP status and
//! metrics endpoint, [`serve`] puts one node together, [`demo`] and
//! [`cluster`] start local clusters of processes; [`proposer`] joins the
//! writes of concurrent connections into shared log entries.
#![warn(missing_docs)]

pub mod acl;
pub mod admin;
pub mod blocking;
pub mod cert;
pub mod client;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod context;
pub mod datadir;
pub mod demo;
pub mod fault;
pub mod frame;
pub mod limits;
pub mod local;
pub mod metrics;
pub mod proposer;
pub mod serve;
pub mod server;
pub mod store;
pub mod tls;
pub mod users_init;
