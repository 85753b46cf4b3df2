//! The server's client-facing metrics ([`Metrics`]: commands, latencies,
//! connections, bytes, batches) and their Prometheus rendering together
//! with the node's, the store's and the transport's counters
//! ([`render_prometheus`]).
//!
//! [`Metrics::record`] is called for every command of every pipeline, so it
//! is a lookup in a static table and a few relaxed atomic adds: no lock, no
//! allocation.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use raft_node::Role;

use crate::cmd::table::{index_of, COMMANDS};
use crate::context::Context;

/// How a command counts in the latency histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// Changes the data: timed in the write histogram.
    Write,
    /// Reads the data: timed in the read histogram.
    Read,
    /// Anything else (connection, server and cluster commands): counted,
    /// not timed.
    Other,
}

/// The index under which commands outside the command table count: one
/// past its last entry. Every other index is the command's in
/// [`crate::cmd::table::COMMANDS`] (subcommands count under their
/// container, and have no counter of their own).
pub const OTHER: usize = COMMANDS.len();

/// The number of counters: one per entry of the table, and "other".
const COUNTED: usize = COMMANDS.len() + 1;

/// The index of `name` (a top-level command name, any case) in the command
/// table ([`OTHER`] if it is not there).
pub fn command_index(name: &str) -> usize {
    match index_of(name.as_bytes()) {
        Some(i) if !COMMANDS[i].is_subcommand() => i,
        _ => OTHER,
    }
}

/// The name a counter is shown under.
fn counted_name(i: usize) -> &'static str {
    COMMANDS.get(i).map_or("other", |c| c.name)
}

/// How the command at `index` is timed: by its ACL categories.
pub fn command_kind(index: usize) -> CommandKind {
    match COMMANDS.get(index) {
        Some(c) if c.is_write() => CommandKind::Write,
        Some(c) if c.is_read() => CommandKind::Read,
        _ => CommandKind::Other,
    }
}

/// The upper bounds of the latency buckets, in nanoseconds (a last,
/// unbounded `+Inf` bucket follows).
pub const LATENCY_BOUNDS_NANOS: [u64; 16] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
];

/// The `le` labels of the buckets, in seconds.
const LATENCY_LABELS: [&str; 17] = [
    "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
];

const BUCKETS: usize = LATENCY_BOUNDS_NANOS.len() + 1;

/// One command's counters, alone on its cache line (commands running on
/// different threads do not contend).
#[repr(align(64))]
#[derive(Default)]
struct CommandCounters {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// A latency histogram: per-bucket (not cumulative) counts and the sum.
/// The count is the sum of the buckets, so a snapshot is always
/// consistent with itself.
#[repr(align(64))]
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; BUCKETS];
        let mut total = 0u64;
        for (c, b) in cumulative.iter_mut().zip(&self.buckets) {
            total += b.load(Relaxed);
            *c = total;
        }
        HistogramSnapshot {
            cumulative,
            count: total,
            sum: Duration::from_nanos(self.sum_nanos.load(Relaxed)),
        }
    }
}

/// A latency histogram at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Cumulative counts: `cumulative[i]` observations took at most
    /// `LATENCY_BOUNDS_NANOS[i]`; the last is the `+Inf` bucket (equal to
    /// `count`).
    pub cumulative: [u64; 17],
    /// Observations.
    pub count: u64,
    /// The sum of the observed latencies.
    pub sum: Duration,
}

impl HistogramSnapshot {
    /// The `q`-quantile (0 to 1), estimated as Prometheus'
    /// `histogram_quantile` does: linear interpolation inside the bucket
    /// that holds it, and the highest finite bound if it falls in `+Inf`.
    /// `None` without observations or for a `q` outside 0..=1.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * self.count as f64;
        let mut below = 0u64;
        for (i, &cumulative) in self.cumulative.iter().enumerate() {
            let here = cumulative - below;
            if here > 0 && cumulative as f64 >= rank {
                let Some(&upper) = LATENCY_BOUNDS_NANOS.get(i) else {
                    return Some(Duration::from_nanos(LATENCY_BOUNDS_NANOS[BUCKETS - 2]));
                };
                let lower = if i == 0 {
                    0
                } else {
                    LATENCY_BOUNDS_NANOS[i - 1]
                };
                let fraction = ((rank - below as f64) / here as f64).clamp(0.0, 1.0);
                let nanos = lower as f64 + (upper - lower) as f64 * fraction;
                return Some(Duration::from_nanos(nanos as u64));
            }
            below = cumulative;
        }
        None
    }
}

/// Why the ACL refused a client (INFO's `acl_access_denied_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclDenial {
    /// AUTH (or HELLO AUTH) with a wrong user name or password, or as a
    /// user that is off.
    Auth,
    /// A command the user's rules do not allow.
    Command,
    /// A key the user's key patterns do not match.
    Key,
}

/// The client-facing counters of one raft-kv server. Every method takes
/// `&self` and only does relaxed atomic operations: share it in an `Arc`.
pub struct Metrics {
    /// By index in the command table, then "other" ([`OTHER`]).
    commands: Box<[CommandCounters]>,
    writes: Histogram,
    reads: Histogram,
    connections_opened: AtomicU64,
    connections_closed: AtomicU64,
    connections_refused: AtomicU64,
    connections_denied: AtomicU64,
    protocol_errors: AtomicU64,
    tls_handshake_failures: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    write_batches: AtomicU64,
    write_batched: AtomicU64,
    read_batches: AtomicU64,
    read_batched: AtomicU64,
    /// By [`AclDenial`], in its order.
    acl_denied: [AtomicU64; 3],
    /// Clients closed for missing a read deadline: idle, then request.
    timed_out: [AtomicU64; 2],
    /// By [`OutputEvent`], in its order.
    output: [AtomicU64; 3],
}

/// What the client output buffer limits did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputEvent {
    /// A connection's unsent replies reached the soft limit: the server
    /// stopped reading it until they drained.
    Backpressure = 0,
    /// A client stayed past the soft limit too long and was closed.
    Closed = 1,
    /// A read was refused: its reply would exceed the hard limit.
    ReplyRefused = 2,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("snapshot", &self.snapshot())
            .finish_non_exhaustive()
    }
}

/// The plain counters of [`Metrics`] at one moment (for INFO and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// Commands that succeeded.
    pub commands_ok: u64,
    /// Commands that failed (an error reply).
    pub commands_failed: u64,
    /// Client connections open now.
    pub connections_current: u64,
    /// Client connections accepted since the start.
    pub connections_total: u64,
    /// Client connections refused at the connection limit.
    pub connections_refused: u64,
    /// Remote clients refused by protected mode.
    pub connections_denied: u64,
    /// Connections closed for a malformed or too large request.
    pub protocol_errors: u64,
    /// Client connections on the TLS port whose TLS handshake failed (no
    /// or an untrusted client certificate, not TLS, too slow).
    pub tls_handshake_failures: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Write batches (log entries of client writes).
    pub write_batches: u64,
    /// Commands in those write batches.
    pub write_batch_commands: u64,
    /// Read batches.
    pub read_batches: u64,
    /// Commands in those read batches.
    pub read_batch_commands: u64,
    /// Failed authentications.
    pub acl_denied_auth: u64,
    /// Commands refused by the user's command rules.
    pub acl_denied_command: u64,
    /// Commands refused by the user's key patterns.
    pub acl_denied_key: u64,
    /// Clients closed after `--timeout` seconds of silence.
    pub timed_out_idle: u64,
    /// Clients closed for a request that did not arrive in full within
    /// `--request-read-timeout-ms`.
    pub timed_out_request: u64,
    /// Times a connection's unsent replies reached the soft output limit
    /// (the server stopped reading it until they drained).
    pub output_backpressure: u64,
    /// Clients closed for staying past the soft output limit too long.
    pub output_limit_closed: u64,
    /// Reads refused because their reply would exceed the hard output
    /// limit.
    pub replies_refused_for_size: u64,
}

impl Metrics {
    /// All counters at zero.
    pub fn new() -> Metrics {
        Metrics {
            commands: (0..COUNTED).map(|_| CommandCounters::default()).collect(),
            writes: Histogram::default(),
            reads: Histogram::default(),
            connections_opened: AtomicU64::new(0),
            connections_closed: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_denied: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            write_batches: AtomicU64::new(0),
            write_batched: AtomicU64::new(0),
            read_batches: AtomicU64::new(0),
            read_batched: AtomicU64::new(0),
            acl_denied: std::array::from_fn(|_| AtomicU64::new(0)),
            timed_out: std::array::from_fn(|_| AtomicU64::new(0)),
            output: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// A client was closed for missing a read deadline.
    pub fn client_timed_out(&self, why: crate::connection::TimedOut) {
        let i = match why {
            crate::connection::TimedOut::Idle => 0,
            crate::connection::TimedOut::Request => 1,
        };
        self.timed_out[i].fetch_add(1, Relaxed);
    }

    /// The client output buffer limits acted (`n` times).
    pub fn output_limit(&self, what: OutputEvent, n: u64) {
        self.output[what as usize].fetch_add(n, Relaxed);
    }

    /// The ACL refused a client.
    pub fn acl_denied(&self, why: AclDenial) {
        self.acl_denied[why as usize].fetch_add(1, Relaxed);
    }

    /// One client command finished. `command` is the lower-case command
    /// name ("get", "set", "mset", "raft.status", ...); names outside
    /// [`COMMANDS`] count under "other". `ok` is false when the reply was
    /// an error. `latency` is from when the server read the command to when
    /// its reply was ready; it goes to the write or the read histogram by
    /// the command's [`CommandKind`] (other commands are not timed).
    pub fn record(&self, command: &str, ok: bool, latency: Duration) {
        let index = command_index(command);
        let counters = &self.commands[index];
        if ok {
            counters.ok.fetch_add(1, Relaxed);
        } else {
            counters.failed.fetch_add(1, Relaxed);
        }
        match command_kind(index) {
            CommandKind::Write => self.writes.observe(latency),
            CommandKind::Read => self.reads.observe(latency),
            CommandKind::Other => {}
        }
    }

    /// A client connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_opened.fetch_add(1, Relaxed);
    }

    /// A client connection (one counted by
    /// [`connection_opened`](Self::connection_opened)) was closed.
    pub fn connection_closed(&self) {
        self.connections_closed.fetch_add(1, Relaxed);
    }

    /// A remote client refused by protected mode (the default user has no
    /// password).
    pub fn connection_denied(&self) {
        self.connections_denied.fetch_add(1, Relaxed);
    }

    /// A connection refused because the limit of connections was reached.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    /// A connection closed because its request was malformed or too large.
    pub fn protocol_error(&self) {
        self.protocol_errors.fetch_add(1, Relaxed);
    }

    /// A client's TLS handshake failed.
    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.fetch_add(1, Relaxed);
    }

    /// `n` bytes read from a client.
    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Relaxed);
    }

    /// `n` bytes written to a client.
    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Relaxed);
    }

    /// `commands` client writes went into one log entry (pipelined, or of
    /// several connections).
    pub fn write_batch(&self, commands: usize) {
        self.write_batches.fetch_add(1, Relaxed);
        self.write_batched.fetch_add(commands as u64, Relaxed);
    }

    /// `commands` client reads were served by one linearizable read.
    pub fn read_batch(&self, commands: usize) {
        self.read_batches.fetch_add(1, Relaxed);
        self.read_batched.fetch_add(commands as u64, Relaxed);
    }

    /// How many times `command` (a name as given to [`record`](Self::record))
    /// succeeded and failed.
    pub fn command_counts(&self, command: &str) -> (u64, u64) {
        let c = &self.commands[command_index(command)];
        (c.ok.load(Relaxed), c.failed.load(Relaxed))
    }

    /// The write (`writes`) or read latency histogram now.
    pub fn latency(&self, writes: bool) -> HistogramSnapshot {
        if writes {
            self.writes.snapshot()
        } else {
            self.reads.snapshot()
        }
    }

    /// The `q`-quantile (0 to 1) of write (`writes`) or read latencies,
    /// estimated from the buckets (see [`HistogramSnapshot::quantile`]);
    /// `None` before the first such command.
    pub fn latency_quantile(&self, writes: bool, q: f64) -> Option<Duration> {
        self.latency(writes).quantile(q)
    }

    /// The plain counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let (mut ok, mut failed) = (0, 0);
        for c in &self.commands {
            ok += c.ok.load(Relaxed);
            failed += c.failed.load(Relaxed);
        }
        let opened = self.connections_opened.load(Relaxed);
        let closed = self.connections_closed.load(Relaxed);
        MetricsSnapshot {
            commands_ok: ok,
            commands_failed: failed,
            connections_current: opened.saturating_sub(closed),
            connections_total: opened,
            connections_refused: self.connections_refused.load(Relaxed),
            connections_denied: self.connections_denied.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            tls_handshake_failures: self.tls_handshake_failures.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            write_batches: self.write_batches.load(Relaxed),
            write_batch_commands: self.write_batched.load(Relaxed),
            read_batches: self.read_batches.load(Relaxed),
            read_batch_commands: self.read_batched.load(Relaxed),
            acl_denied_auth: self.acl_denied[AclDenial::Auth as usize].load(Relaxed),
            acl_denied_command: self.acl_denied[AclDenial::Command as usize].load(Relaxed),
            acl_denied_key: self.acl_denied[AclDenial::Key as usize].load(Relaxed),
            timed_out_idle: self.timed_out[0].load(Relaxed),
            timed_out_request: self.timed_out[1].load(Relaxed),
            output_backpressure: self.output[OutputEvent::Backpressure as usize].load(Relaxed),
            output_limit_closed: self.output[OutputEvent::Closed as usize].load(Relaxed),
            replies_refused_for_size: self.output[OutputEvent::ReplyRefused as usize].load(Relaxed),
        }
    }
}

/// Writes the Prometheus text exposition format.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP raftkv_{name} {help}");
        let _ = writeln!(self.out, "# TYPE raftkv_{name} {kind}");
    }

    /// One sample; `labels` is already formatted (`key="value",...`).
    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "raftkv_{name} {value}");
        } else {
            let _ = writeln!(self.out, "raftkv_{name}{{{labels}}} {value}");
        }
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, "", value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "gauge", help);
        self.sample(name, "", value);
    }

    /// A counter family with one label.
    fn labelled(&mut self, name: &str, help: &str, label: &str, values: &[(&str, u64)]) {
        self.family(name, "counter", help);
        for (v, n) in values {
            self.sample(name, &format!("{label}=\"{v}\""), n);
        }
    }
}

/// Escapes a label value (backslash, double quote, newline).
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The server's metrics in the Prometheus text exposition format (version
/// 0.0.4, every name prefixed `raftkv_`): the client-facing [`Metrics`],
/// the node's positions and counters, the peers' lag (on the leader), and
/// the file store's and the TCP transport's counters when the server runs
/// on them.
pub async fn render_prometheus(ctx: &Context) -> String {
    let peers = tokio::time::timeout(Duration::from_secs(1), ctx.node.peers())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut e = Exposition {
        out: String::with_capacity(16 * 1024),
    };
    render_client(&mut e, &ctx.metrics);
    e.gauge(
        "uptime_seconds",
        "Seconds since the server started.",
        ctx.started.elapsed().as_secs(),
    );

    // The node.
    let m = ctx.node.metrics();
    e.family(
        "role",
        "gauge",
        "The node's Raft role: 1 for the current one, 0 for the others.",
    );
    for role in [
        Role::Follower,
        Role::PreCandidate,
        Role::Candidate,
        Role::Leader,
    ] {
        e.sample(
            "role",
            &format!("role=\"{role}\""),
            u8::from(m.role == role),
        );
    }
    e.gauge("term", "The node's current Raft term.", m.term);
    e.gauge(
        "leader_known",
        "1 if the node knows a leader, else 0.",
        u8::from(m.leader.is_some()),
    );
    e.gauge("commit_index", "The node's commit index.", m.commit_index);
    e.gauge(
        "applied_index",
        "The index applied to the state machine.",
        m.applied_index,
    );
    e.gauge("last_log_index", "The node's last log index.", m.last_index);
    e.gauge(
        "snapshot_index",
        "The index of the node's latest snapshot.",
        m.snapshot_index,
    );
    e.gauge(
        "log_entries",
        "Log entries held (last log index - snapshot index).",
        m.last_index.saturating_sub(m.snapshot_index),
    );
    e.gauge(
        "stopped",
        "1 if the node stopped acknowledging after a storage failure, else 0.",
        u8::from(m.stopped.is_some()),
    );
    e.gauge(
        "removed",
        "1 if the node knows it was removed from the cluster (it serves no commands or reads), else 0.",
        u8::from(m.removed.is_some()),
    );
    let c = &m.core;
    e.counter(
        "elections_total",
        "Elections started (term increments by campaigning).",
        c.elections,
    );
    e.counter(
        "pre_elections_total",
        "Pre-vote rounds started.",
        c.pre_elections,
    );
    e.counter(
        "leaderships_total",
        "Times this node became leader.",
        c.leaderships,
    );
    e.counter(
        "proposals_total",
        "Commands proposed while leader.",
        c.proposals,
    );
    e.counter(
        "proposals_refused_total",
        "Proposals refused by back-pressure.",
        c.proposals_refused,
    );
    e.counter(
        "snapshots_taken_total",
        "Snapshots this node took.",
        c.snapshots_taken,
    );
    e.counter(
        "snapshots_installed_total",
        "Snapshots received from a leader and installed.",
        c.snapshots_installed,
    );
    e.counter(
        "snapshots_sent_total",
        "Snapshot transfers started as leader.",
        c.snapshots_sent,
    );
    e.labelled(
        "raft_reads_total",
        "Linearizable reads confirmed, by how: a heartbeat round or the leader lease.",
        "by",
        &[("round", c.reads_by_round), ("lease", c.reads_by_lease)],
    );
    e.labelled(
        "raft_messages_refused_total",
        "Raft messages refused, by reason.",
        "reason",
        &[
            ("foreign_cluster", c.refused_foreign_cluster),
            ("misaddressed", c.refused_misaddressed),
            ("malformed", c.refused_malformed),
            ("implausible_term", c.refused_implausible_term),
        ],
    );
    e.counter(
        "leader_transfers_aborted_total",
        "Leadership transfers that timed out.",
        c.transfers_aborted,
    );
    e.counter(
        "raft_messages_sent_total",
        "Raft messages handed to the transport and acknowledged.",
        m.messages_sent,
    );
    e.counter(
        "raft_messages_dropped_total",
        "Raft messages dropped (a peer's queue was full, or it was unreachable).",
        m.messages_dropped,
    );
    e.counter(
        "raft_messages_failed_total",
        "Raft messages whose sending failed.",
        m.messages_failed,
    );
    e.counter(
        "raft_messages_oversized_total",
        "Raft messages larger than the largest frame their peer accepts (also failed): the peer falls behind at that entry.",
        m.messages_oversized,
    );

    // Apply back-pressure.
    let b = &m.apply_backlog;
    e.gauge(
        "apply_backlog_entries",
        "Committed entries waiting for the state machine (with commands admitted on the leader and not yet answered).",
        b.entries + b.admitted,
    );
    e.gauge(
        "apply_backlog_bytes",
        "Bytes of committed entries waiting for the state machine.",
        b.bytes,
    );
    e.counter(
        "apply_proposals_waited_total",
        "Commands that waited, on this node as leader, for the state machine to catch up (apply back-pressure).",
        b.proposals_waited,
    );
    e.counter(
        "apply_appends_deferred_total",
        "Appends this node left unanswered, as a follower, while its state machine was behind (apply back-pressure).",
        b.appends_deferred,
    );

    // The peers.
    e.family(
        "peer_connected",
        "gauge",
        "1 if the last message to the peer got through, else 0.",
    );
    for p in &peers {
        let labels = format!("peer=\"{}\"", escape_label(&p.id));
        e.sample("peer_connected", &labels, u8::from(p.connected));
    }
    e.family(
        "peer_lag_entries",
        "gauge",
        "On the leader: the commit index minus the peer's match index.",
    );
    if m.role == Role::Leader {
        for p in &peers {
            if let Some(matched) = p.match_index {
                let labels = format!("peer=\"{}\"", escape_label(&p.id));
                e.sample(
                    "peer_lag_entries",
                    &labels,
                    m.commit_index.saturating_sub(matched),
                );
            }
        }
    }

    // The file store.
    if let Some(file) = &ctx.file {
        let s = file.stats();
        e.counter("fsyncs_total", "fdatasyncs of log segments.", s.syncs);
        e.counter(
            "group_commits_total",
            "Batches of saves written and acknowledged together.",
            s.commits,
        );
        e.counter(
            "wal_saves_total",
            "Saves acknowledged by the store.",
            s.saves,
        );
        e.counter(
            "wal_failed_saves_total",
            "Saves that failed with an I/O error.",
            s.failed_saves,
        );
        e.counter(
            "wal_bytes_written_total",
            "Bytes written to log segments.",
            s.bytes_written,
        );
        e.counter(
            "wal_entries_written_total",
            "Log entries written.",
            s.entries_written,
        );
        e.counter(
            "wal_segments_created_total",
            "Log segments created.",
            s.segments_created,
        );
        e.counter(
            "wal_segments_deleted_total",
            "Log segments removed by compaction.",
            s.segments_deleted,
        );
        e.counter(
            "snapshots_written_total",
            "Snapshot files written by the store.",
            s.snapshots_written,
        );
    }

    // The TCP transport.
    if let Some(tcp) = &ctx.tcp {
        let s = tcp.stats();
        e.counter(
            "peer_connections_accepted_total",
            "Peer TCP connections accepted.",
            s.connections_accepted,
        );
        e.counter(
            "peer_connections_opened_total",
            "Peer TCP connections established by this node, reconnections included.",
            s.connections_opened,
        );
        e.counter(
            "peer_connect_failures_total",
            "Peer connection attempts that failed.",
            s.connect_failures,
        );
        e.counter(
            "peer_reconnects_total",
            "Peer connections re-established after one was lost.",
            s.reconnects,
        );
        e.counter(
            "peer_handshakes_refused_total",
            "Peer handshakes refused (another cluster or protocol version).",
            s.handshakes_refused,
        );
        e.counter(
            "peer_refused_by_peer_total",
            "Handshakes of this node that a peer refused.",
            s.refused_by_peer,
        );
        e.counter(
            "peer_malformed_frames_total",
            "Peer connections closed for a malformed frame.",
            s.malformed_frames,
        );
        e.counter(
            "peer_oversized_frames_total",
            "Peer connections closed for a frame over the maximum size.",
            s.oversized_frames,
        );
        e.counter(
            "peer_unknown_frames_total",
            "Peer connections closed for a frame of an unknown kind.",
            s.unknown_frames,
        );
        e.counter(
            "peer_requests_sent_total",
            "Requests written to peers.",
            s.requests_sent,
        );
        e.counter(
            "peer_requests_received_total",
            "Requests received from peers.",
            s.requests_received,
        );
        e.counter(
            "peer_timeouts_total",
            "Requests to peers that timed out.",
            s.timeouts,
        );
        e.counter(
            "peer_queue_full_total",
            "Requests to peers refused because the connection's queue was full.",
            s.queue_full,
        );
        e.counter(
            "peer_bytes_sent_total",
            "Bytes written to peers' sockets.",
            s.bytes_sent,
        );
        e.counter(
            "peer_bytes_received_total",
            "Bytes read from peers' sockets.",
            s.bytes_received,
        );
        e.counter(
            "peer_tls_handshake_failures_total",
            "Peer TLS handshakes that failed: no certificate, an untrusted or expired one, not TLS.",
            s.tls_handshake_failures,
        );
        e.counter(
            "peer_identity_mismatches_total",
            "Peers refused because their certificate named another node than they claimed.",
            s.identity_mismatches,
        );
        e.counter(
            "peer_sender_mismatches_total",
            "Peer connections closed for a Raft message in another node's name.",
            s.sender_mismatches,
        );
        e.counter(
            "peer_handshakes_shed_total",
            "Peer connections closed at once because too many handshakes were running.",
            s.handshakes_shed,
        );
        e.counter(
            "peer_connections_refused_full_total",
            "Peer handshakes refused because the most peer connections a node serves were open.",
            s.connections_refused_full,
        );
        e.counter(
            "peer_tls_reloads_total",
            "TLS configurations reloaded (SIGHUP).",
            s.tls_reloads,
        );
        e.counter(
            "peer_closed_by_reload_total",
            "Peer connections closed by a reload because the peer's certificate was no longer trusted.",
            s.closed_by_reload,
        );
        if let Some(tls) = tcp.tls() {
            e.gauge(
                "peer_tls_certificate_not_after_seconds",
                "When the node's peer certificate expires (Unix time).",
                unix_seconds(tls.certificate().not_after),
            );
        }
    }
    if let Some(tls) = &ctx.client_tls {
        e.gauge(
            "client_tls_certificate_not_after_seconds",
            "When the TLS port's certificate expires (Unix time).",
            unix_seconds(tls.certificate().not_after),
        );
    }
    e.out
}

fn unix_seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The client-facing part of the exposition.
fn render_client(e: &mut Exposition, metrics: &Metrics) {
    e.family(
        "commands_total",
        "counter",
        "Client commands run, by command and result.",
    );
    for (i, c) in metrics.commands.iter().enumerate() {
        if COMMANDS.get(i).is_some_and(|c| c.is_subcommand()) {
            continue;
        }
        let name = counted_name(i);
        e.sample(
            "commands_total",
            &format!("command=\"{name}\",result=\"ok\""),
            c.ok.load(Relaxed),
        );
        e.sample(
            "commands_total",
            &format!("command=\"{name}\",result=\"error\""),
            c.failed.load(Relaxed),
        );
    }

    e.family(
        "command_duration_seconds",
        "histogram",
        "Client command latency, from reading the command to its reply being ready, \
         for write and read commands.",
    );
    for (kind, histogram) in [("write", &metrics.writes), ("read", &metrics.reads)] {
        let h = histogram.snapshot();
        for (le, cumulative) in LATENCY_LABELS.iter().zip(h.cumulative) {
            e.sample(
                "command_duration_seconds_bucket",
                &format!("kind=\"{kind}\",le=\"{le}\""),
                cumulative,
            );
        }
        let labels = format!("kind=\"{kind}\"");
        e.sample("command_duration_seconds_sum", &labels, seconds(h.sum));
        e.sample("command_duration_seconds_count", &labels, h.count);
    }

    let s = metrics.snapshot();
    e.gauge(
        "connections",
        "Client connections open now.",
        s.connections_current,
    );
    e.counter(
        "connections_total",
        "Client connections accepted.",
        s.connections_total,
    );
    e.counter(
        "connections_refused_total",
        "Client connections refused at the connection limit.",
        s.connections_refused,
    );
    e.counter(
        "connections_denied_total",
        "Remote clients refused by protected mode (the default user has no password).",
        s.connections_denied,
    );
    e.counter(
        "protocol_errors_total",
        "Client connections closed for a malformed or too large request.",
        s.protocol_errors,
    );
    e.labelled(
        "clients_timed_out_total",
        "Client connections closed for missing a read deadline: idle for --timeout, or a request not in full within --request-read-timeout-ms.",
        "reason",
        &[("idle", s.timed_out_idle), ("request", s.timed_out_request)],
    );
    e.counter(
        "client_output_backpressure_total",
        "Times a connection's unsent replies reached the soft client output buffer limit: the server stopped reading it until they drained.",
        s.output_backpressure,
    );
    e.counter(
        "client_output_limit_closed_total",
        "Client connections closed for leaving their replies unread past the soft client output buffer limit for too long.",
        s.output_limit_closed,
    );
    e.counter(
        "replies_refused_for_size_total",
        "Reads refused because their reply would exceed the hard client output buffer limit.",
        s.replies_refused_for_size,
    );
    e.labelled(
        "acl_denied_total",
        "Clients refused by the ACL, by reason: a failed AUTH, a command or a key the user may not use.",
        "reason",
        &[
            ("auth", s.acl_denied_auth),
            ("command", s.acl_denied_command),
            ("key", s.acl_denied_key),
        ],
    );
    e.counter(
        "client_tls_handshake_failures_total",
        "Client TLS handshakes that failed on the TLS port.",
        s.tls_handshake_failures,
    );
    e.counter(
        "client_bytes_received_total",
        "Bytes read from clients.",
        s.bytes_in,
    );
    e.counter(
        "client_bytes_sent_total",
        "Bytes written to clients.",
        s.bytes_out,
    );
    for (name, help, count, sum) in [
        (
            "write_batch_size",
            "Client writes per log entry (a connection's pipelined writes, and those of connections that arrive while one is under way, share one).",
            s.write_batches,
            s.write_batch_commands,
        ),
        (
            "read_batch_size",
            "Client reads per linearizable read (pipelined reads share one).",
            s.read_batches,
            s.read_batch_commands,
        ),
    ] {
        e.family(name, "summary", help);
        e.sample(&format!("{name}_sum"), "", sum);
        e.sample(&format!("{name}_count"), "", count);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Instant;

    use raft_node::example::KvCommand;
    use raft_node::{FilePersistence, Node, Options};

    /// A single-node leader in memory (or on `file`), in a [`Context`].
    pub(crate) async fn test_context(file: Option<Arc<FilePersistence>>) -> Arc<Context> {
        let options = Options {
            persistence: file.clone().map(|f| f as Arc<dyn raft_node::Persistence>),
            ..Options::default()
        };
        let node = Node::new(options).await.expect("a single node starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.role() != Role::Leader {
            assert!(Instant::now() < deadline, "the single node never led");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Arc::new(Context {
            node,
            metrics: Arc::new(Metrics::new()),
            writes: Default::default(),
            acl: Arc::new(crate::acl::SharedUsers::new(None)),
            file,
            tcp: None,
            client_tls: None,
            client_address: "127.0.0.1:6379".into(),
            admin_address: None,
            started: Instant::now(),
        })
    }

    /// A fresh directory under the system's temporary directory.
    pub(crate) fn temp_dir(what: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("raft-kv-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        dir
    }

    /// The value of the sample `series` (name and labels, as written).
    pub(crate) fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
    }

    #[test]
    fn commands_count_under_their_entry_in_the_command_table() {
        for (i, c) in COMMANDS.iter().enumerate() {
            if !c.is_subcommand() {
                assert_eq!(command_index(c.name), i, "{}", c.name);
                assert_eq!(counted_name(i), c.name);
            }
        }
        assert_eq!(counted_name(OTHER), "other");
        assert_eq!(command_index("blpop"), OTHER);
        assert_eq!(command_index("acl|whoami"), OTHER);
        assert_eq!(command_index(""), OTHER);
        assert_eq!(command_index("GET"), command_index("get"));
        assert_eq!(command_index("Raft.Status"), command_index("raft.status"));
        assert_eq!(command_index("a-very-long-UNKNOWN-command-name"), OTHER);
        assert_eq!(command_index("GÉT"), OTHER);
        // Timed by category: the writes and reads of the data.
        let kind = |name: &str| command_kind(command_index(name));
        for name in ["set", "del", "incrby", "mset", "flushdb", "cas"] {
            assert_eq!(kind(name), CommandKind::Write, "{name}");
        }
        for name in ["get", "mget", "exists", "strlen", "dbsize", "keys", "scan"] {
            assert_eq!(kind(name), CommandKind::Read, "{name}");
        }
        for name in ["ping", "auth", "acl", "config", "raft.status", "other"] {
            assert_eq!(kind(name), CommandKind::Other, "{name}");
        }
        assert_eq!(LATENCY_LABELS.len(), BUCKETS);
        for (bound, label) in LATENCY_BOUNDS_NANOS.iter().zip(LATENCY_LABELS) {
            let seconds: f64 = label.parse().unwrap();
            assert_eq!((seconds * 1e9).round() as u64, *bound, "{label}");
        }
    }

    #[test]
    fn counters_and_histograms_add_up() {
        let m = Metrics::new();
        let micros = [10, 50, 51, 300, 300, 700, 2_000, 80_000, 9_000_000];
        for us in micros {
            m.record("set", true, Duration::from_micros(us));
        }
        m.record("set", false, Duration::from_micros(1));
        m.record("get", true, Duration::from_micros(120));
        m.record("ping", true, Duration::from_micros(5));
        m.record("frobnicate", false, Duration::from_micros(5));
        assert_eq!(m.command_counts("set"), (9, 1));
        assert_eq!(m.command_counts("get"), (1, 0));
        assert_eq!(m.command_counts("whatever"), (0, 1));

        let w = m.latency(true);
        assert_eq!(w.count, 10);
        assert_eq!(w.cumulative[BUCKETS - 1], w.count);
        let total: u64 = micros.iter().sum::<u64>() + 1;
        assert_eq!(w.sum, Duration::from_micros(total));
        assert!(w.cumulative.windows(2).all(|p| p[0] <= p[1]));
        // <= 50us: 1, 10, 50; <= 100us: + 51; <= 500us: + 300, 300; ...
        assert_eq!(w.cumulative[0], 3);
        assert_eq!(w.cumulative[1], 4);
        assert_eq!(w.cumulative[3], 6);
        assert_eq!(w.cumulative[4], 7);
        assert_eq!(w.cumulative[5], 8);
        assert_eq!(w.cumulative[10], 9);
        assert_eq!(w.cumulative[15], 9);
        let r = m.latency(false);
        assert_eq!((r.count, r.cumulative[1], r.cumulative[2]), (1, 0, 1));

        m.connection_opened();
        m.connection_opened();
        m.connection_closed();
        m.connection_refused();
        m.protocol_error();
        m.bytes_in(10);
        m.bytes_out(25);
        m.write_batch(3);
        m.write_batch(5);
        m.read_batch(2);
        m.acl_denied(AclDenial::Auth);
        m.acl_denied(AclDenial::Key);
        m.acl_denied(AclDenial::Key);
        m.client_timed_out(crate::connection::TimedOut::Request);
        m.output_limit(OutputEvent::Backpressure, 1);
        m.output_limit(OutputEvent::Backpressure, 1);
        m.output_limit(OutputEvent::Closed, 1);
        m.output_limit(OutputEvent::ReplyRefused, 3);
        let s = m.snapshot();
        assert_eq!(
            s,
            MetricsSnapshot {
                commands_ok: 11,
                commands_failed: 2,
                connections_current: 1,
                connections_total: 2,
                connections_refused: 1,
                connections_denied: 0,
                protocol_errors: 1,
                tls_handshake_failures: 0,
                bytes_in: 10,
                bytes_out: 25,
                write_batches: 2,
                write_batch_commands: 8,
                read_batches: 1,
                read_batch_commands: 2,
                acl_denied_auth: 1,
                acl_denied_command: 0,
                acl_denied_key: 2,
                timed_out_idle: 0,
                timed_out_request: 1,
                output_backpressure: 2,
                output_limit_closed: 1,
                replies_refused_for_size: 3,
            }
        );
    }

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let m = Metrics::new();
        assert_eq!(m.latency_quantile(true, 0.5), None);
        // 90 commands at 300us (250us..500us], 10 at 3ms (2.5ms..5ms].
        for _ in 0..90 {
            m.record("mset", true, Duration::from_micros(300));
        }
        for _ in 0..10 {
            m.record("incr", true, Duration::from_millis(3));
        }
        let us = |q| m.latency_quantile(true, q).unwrap().as_micros();
        assert!((250..=500).contains(&us(0.5)), "{}", us(0.5));
        assert!((250..=500).contains(&us(0.9)), "{}", us(0.9));
        assert!((2_500..=5_000).contains(&us(0.95)), "{}", us(0.95));
        assert!((2_500..=5_000).contains(&us(0.99)), "{}", us(0.99));
        assert_eq!(us(1.0), 5_000);
        assert_eq!(us(0.0), 250);
        assert!(us(0.5) <= us(0.9) && us(0.9) <= us(0.95));
        assert_eq!(m.latency_quantile(true, 1.5), None);
        assert_eq!(m.latency_quantile(true, f64::NAN), None);
        assert_eq!(m.latency_quantile(false, 0.5), None);
        // Beyond the last bound: the last finite bound.
        m.record("get", true, Duration::from_secs(60));
        assert_eq!(m.latency_quantile(false, 0.5), Some(Duration::from_secs(5)));
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let m = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        let name = if i % 2 == 0 { "set" } else { "get" };
                        m.record(name, t % 2 == 0, Duration::from_micros(i % 700));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (ok, failed) = m.command_counts("set");
        assert_eq!(ok + failed, 20_000);
        assert_eq!(m.latency(true).count, 20_000);
        assert_eq!(m.latency(false).count, 20_000);
    }

    /// Checks the exposition's shape: every sample belongs to a family
    /// declared by `# HELP` and `# TYPE` before it.
    fn check_exposition(text: &str) {
        let mut declared: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(name.starts_with("raftkv_"), "{line}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
                assert!(
                    ["counter", "gauge", "histogram", "summary"].contains(&kind),
                    "{line}"
                );
                assert!(
                    !declared.iter().any(|(n, _)| n == name),
                    "declared twice: {name}"
                );
                declared.push((name.to_owned(), kind.to_owned()));
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = declared.last().expect("a sample before any TYPE");
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| *b == family.0))
                    .unwrap_or(name);
                assert_eq!(base, family.0, "a sample outside its family: {line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_exposition_has_the_node_and_client_metrics() {
        let ctx = test_context(None).await;
        let text = render_prometheus(&ctx).await;
        check_exposition(&text);
        for name in [
            "# TYPE raftkv_commands_total counter",
            "# TYPE raftkv_command_duration_seconds histogram",
            "# TYPE raftkv_connections gauge",
            "# TYPE raftkv_write_batch_size summary",
            "raftkv_role{role=\"leader\"} 1",
            "raftkv_role{role=\"follower\"} 0",
            "raftkv_elections_total ",
            "raftkv_leaderships_total 1",
            "raftkv_raft_reads_total{by=\"lease\"} ",
            "raftkv_raft_messages_refused_total{reason=\"foreign_cluster\"} 0",
            "raftkv_raft_messages_refused_total{reason=\"implausible_term\"} 0",
            "raftkv_raft_messages_dropped_total ",
            "raftkv_raft_messages_oversized_total 0",
            "raftkv_client_output_backpressure_total 0",
            "raftkv_client_output_limit_closed_total 0",
            "raftkv_replies_refused_for_size_total 0",
            "raftkv_command_duration_seconds_bucket{kind=\"read\",le=\"+Inf\"} 0",
        ] {
            assert!(text.contains(name), "missing {name:?} in\n{text}");
        }
        assert!(!text.contains("raftkv_fsyncs_total"));
        assert!(!text.contains("raftkv_peer_bytes_sent_total"));
        let m = ctx.node.metrics();
        assert_eq!(value(&text, "raftkv_term"), Some(m.term as f64));
        assert!(value(&text, "raftkv_commit_index").unwrap() >= 1.0);

        let set = "raftkv_commands_total{command=\"set\",result=\"ok\"}";
        let other = "raftkv_commands_total{command=\"other\",result=\"error\"}";
        assert_eq!(value(&text, set), Some(0.0));
        ctx.metrics.record("set", true, Duration::from_micros(700));
        ctx.metrics.record("set", true, Duration::from_millis(30));
        ctx.metrics.record("bogus", false, Duration::from_micros(1));
        ctx.metrics.connection_opened();
        ctx.metrics.write_batch(2);
        let text = render_prometheus(&ctx).await;
        check_exposition(&text);
        assert_eq!(value(&text, set), Some(2.0));
        assert_eq!(value(&text, other), Some(1.0));
        assert_eq!(value(&text, "raftkv_connections"), Some(1.0));
        assert_eq!(value(&text, "raftkv_write_batch_size_sum"), Some(2.0));
        assert_eq!(value(&text, "raftkv_write_batch_size_count"), Some(1.0));
        let bucket = |le: &str| {
            value(
                &text,
                &format!("raftkv_command_duration_seconds_bucket{{kind=\"write\",le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.0005"), Some(0.0));
        assert_eq!(bucket("0.001"), Some(1.0));
        assert_eq!(bucket("0.025"), Some(1.0));
        assert_eq!(bucket("0.05"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(2.0));
        let count = "raftkv_command_duration_seconds_count{kind=\"write\"}";
        assert_eq!(value(&text, count), Some(2.0));
        let sum = value(&text, "raftkv_command_duration_seconds_sum{kind=\"write\"}").unwrap();
        assert!((sum - 0.0307).abs() < 1e-9, "{sum}");
        ctx.node.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_file_store_counters_appear_and_rise() {
        let dir = temp_dir("metrics");
        let file = Arc::new(FilePersistence::open(&dir).await.expect("open the store"));
        let ctx = test_context(Some(file)).await;
        let text = render_prometheus(&ctx).await;
        check_exposition(&text);
        let fsyncs = value(&text, "raftkv_fsyncs_total").expect("fsyncs in the exposition");
        let entries = value(&text, "raftkv_wal_entries_written_total").unwrap();
        assert!(value(&text, "raftkv_group_commits_total").is_some());
        assert!(value(&text, "raftkv_wal_bytes_written_total").unwrap() > 0.0);
        assert!(value(&text, "raftkv_wal_segments_created_total").unwrap() >= 1.0);
        let set = KvCommand::Set {
            key: "k".into(),
            value: "v".into(),
        };
        ctx.node.command(set.encode()).await.expect("a command");
        let text = render_prometheus(&ctx).await;
        assert!(value(&text, "raftkv_fsyncs_total").unwrap() > fsyncs);
        assert!(value(&text, "raftkv_wal_entries_written_total").unwrap() > entries);
        ctx.node.shutdown().await.unwrap();
        drop(ctx);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }
}
