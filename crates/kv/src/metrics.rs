//! The server's client-facing metrics ([`Metrics`]: commands, latencies,
//! connections, bytes, batches) and their Prometheus exposition together
//! with the node's, the store's and the transport's counters
//! ([`render_prometheus`]), written by `prometheus-client` in the
//! Prometheus text format (version 0.0.4).
//!
//! [`Metrics::record`] is called for every command of every pipeline: a
//! lookup in a static table, a counter, and the command's latency into two
//! histograms: `prometheus-client`'s, with the fixed buckets the exposition
//! shows, and an HDR histogram (`hdrhistogram`, 3 significant digits) for
//! the quantiles INFO shows ([`Metrics::latency`]). The HDR histograms are
//! sharded by thread and merged when read, so that recording takes a lock
//! that no other thread usually holds.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram as HdrHistogram;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::cmd::table::{index_of, COMMANDS};

mod exposition;

pub use exposition::render_prometheus;

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

/// The upper bounds of the exposition's latency buckets, in nanoseconds
/// (a last, unbounded `+Inf` bucket follows).
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

/// The significant decimal digits the latency quantiles keep: a quantile
/// is within 0.1% of the latency it stands for.
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// The longest latency the quantiles tell apart; a longer one counts as
/// this long (it bounds the HDR histograms' memory).
pub const LATENCY_RECORDED_MAX: Duration = Duration::from_secs(3600);

/// The most shards of an HDR histogram: threads beyond it share them.
const LATENCY_SHARDS_MAX: usize = 16;

/// An empty HDR histogram of nanoseconds that grows to the values it is
/// given.
fn hdr_histogram() -> HdrHistogram<u64> {
    HdrHistogram::new(LATENCY_SIGNIFICANT_DIGITS)
        .expect("3 significant digits are within hdrhistogram's 0 to 5")
}

/// The shard the current thread records into: threads are numbered in the
/// order they first record.
fn shard_of_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed);
    }
    SHARD.with(|s| *s)
}

/// One shard of an HDR histogram, alone on its cache lines.
#[repr(align(128))]
struct Shard(Mutex<HdrHistogram<u64>>);

/// Latencies in nanoseconds at [`LATENCY_SIGNIFICANT_DIGITS`], sharded by
/// thread; [`Quantiles::merged`] adds the shards up.
struct Quantiles {
    shards: Box<[Shard]>,
}

impl Quantiles {
    fn new() -> Quantiles {
        let shards = std::thread::available_parallelism()
            .map_or(4, NonZeroUsize::get)
            .clamp(1, LATENCY_SHARDS_MAX);
        Quantiles {
            shards: (0..shards)
                .map(|_| Shard(Mutex::new(hdr_histogram())))
                .collect(),
        }
    }

    fn record(&self, latency: Duration) {
        let nanos = u64::try_from(latency.min(LATENCY_RECORDED_MAX).as_nanos())
            .expect("an hour in nanoseconds fits in 64 bits");
        let shard = &self.shards[shard_of_thread() % self.shards.len()];
        shard
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(nanos)
            .expect("a histogram that grows records any value up to an hour");
    }

    fn reset(&self) {
        for shard in self.shards.iter() {
            shard
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .reset();
        }
    }

    fn merged(&self) -> HdrHistogram<u64> {
        let mut all = hdr_histogram();
        for shard in self.shards.iter() {
            let shard = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            all.add(&*shard)
                .expect("a histogram that grows takes any other's values");
        }
        all
    }
}

/// The latencies of one kind of command.
struct Latency {
    /// In the exposition's buckets, in seconds.
    buckets: Histogram,
    /// For the quantiles.
    quantiles: Quantiles,
}

impl Latency {
    fn new() -> Latency {
        Latency {
            buckets: Histogram::new(LATENCY_BOUNDS_NANOS.iter().map(|&n| n as f64 / 1e9)),
            quantiles: Quantiles::new(),
        }
    }

    fn record(&self, latency: Duration) {
        self.buckets.observe(latency.as_secs_f64());
        self.quantiles.record(latency);
    }
}

/// The latencies of one kind of command at one moment, to
/// [`LATENCY_SIGNIFICANT_DIGITS`] (see [`Metrics::latency`]).
#[derive(Debug, Clone)]
pub struct LatencySnapshot {
    histogram: HdrHistogram<u64>,
}

impl LatencySnapshot {
    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The `q`-quantile (0 to 1): the latency that a fraction `q` of the
    /// recorded ones do not exceed, to 3 significant digits (the highest
    /// latency equivalent to it at that precision). `None` without
    /// observations or for a `q` outside 0..=1.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.histogram.is_empty() || !(0.0..=1.0).contains(&q) {
            return None;
        }
        Some(Duration::from_nanos(self.histogram.value_at_quantile(q)))
    }

    /// The longest latency recorded (to 3 significant digits), if any.
    pub fn max(&self) -> Option<Duration> {
        (!self.histogram.is_empty()).then(|| Duration::from_nanos(self.histogram.max()))
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

/// One command's counters.
#[derive(Default)]
struct CommandCounters {
    ok: Counter,
    failed: Counter,
}

/// The upper bounds of the batch size buckets: 1, 2, 4, ... 1024 commands
/// (a last, unbounded `+Inf` bucket follows).
const BATCH_BUCKETS: u16 = 11;

/// Batches and the commands in them.
struct Batches {
    batches: Counter,
    commands: Counter,
    /// Commands per batch, for the exposition.
    sizes: Histogram,
}

impl Batches {
    fn new() -> Batches {
        Batches {
            batches: Counter::default(),
            commands: Counter::default(),
            sizes: Histogram::new(exponential_buckets(1.0, 2.0, BATCH_BUCKETS)),
        }
    }

    fn add(&self, commands: usize) {
        self.batches.inc();
        self.commands.inc_by(commands as u64);
        self.sizes.observe(commands as f64);
    }
}

/// The client-facing counters of one raft-kv server. Every method takes
/// `&self`: share it in an `Arc`.
pub struct Metrics {
    /// By index in the command table, then "other" ([`OTHER`]).
    commands: Box<[CommandCounters]>,
    writes: Latency,
    reads: Latency,
    /// Open now.
    connections: Gauge,
    connections_total: Counter,
    connections_refused: Counter,
    connections_denied: Counter,
    protocol_errors: Counter,
    tls_handshake_failures: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    write_batches: Batches,
    read_batches: Batches,
    /// By [`AclDenial`], in its order.
    acl_denied: [Counter; 3],
    /// Clients closed for missing a read deadline: idle, then request.
    timed_out: [Counter; 2],
    /// By [`OutputEvent`], in its order.
    output: [Counter; 3],
    /// The counters at the last `CONFIG RESETSTAT`: INFO shows the counts
    /// since (the exposition's counters never go back).
    info_base: Mutex<MetricsSnapshot>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

impl MetricsSnapshot {
    /// The counts since `base` (taken earlier); open connections as they
    /// are.
    fn since(&self, base: &MetricsSnapshot) -> MetricsSnapshot {
        MetricsSnapshot {
            connections_current: self.connections_current,
            commands_ok: self.commands_ok.saturating_sub(base.commands_ok),
            commands_failed: self.commands_failed.saturating_sub(base.commands_failed),
            connections_total: self
                .connections_total
                .saturating_sub(base.connections_total),
            connections_refused: self
                .connections_refused
                .saturating_sub(base.connections_refused),
            connections_denied: self
                .connections_denied
                .saturating_sub(base.connections_denied),
            protocol_errors: self.protocol_errors.saturating_sub(base.protocol_errors),
            tls_handshake_failures: self
                .tls_handshake_failures
                .saturating_sub(base.tls_handshake_failures),
            bytes_in: self.bytes_in.saturating_sub(base.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(base.bytes_out),
            write_batches: self.write_batches.saturating_sub(base.write_batches),
            write_batch_commands: self
                .write_batch_commands
                .saturating_sub(base.write_batch_commands),
            read_batches: self.read_batches.saturating_sub(base.read_batches),
            read_batch_commands: self
                .read_batch_commands
                .saturating_sub(base.read_batch_commands),
            acl_denied_auth: self.acl_denied_auth.saturating_sub(base.acl_denied_auth),
            acl_denied_command: self
                .acl_denied_command
                .saturating_sub(base.acl_denied_command),
            acl_denied_key: self.acl_denied_key.saturating_sub(base.acl_denied_key),
            timed_out_idle: self.timed_out_idle.saturating_sub(base.timed_out_idle),
            timed_out_request: self
                .timed_out_request
                .saturating_sub(base.timed_out_request),
            output_backpressure: self
                .output_backpressure
                .saturating_sub(base.output_backpressure),
            output_limit_closed: self
                .output_limit_closed
                .saturating_sub(base.output_limit_closed),
            replies_refused_for_size: self
                .replies_refused_for_size
                .saturating_sub(base.replies_refused_for_size),
        }
    }
}

impl Metrics {
    /// All counters at zero.
    pub fn new() -> Metrics {
        Metrics {
            commands: (0..COUNTED).map(|_| CommandCounters::default()).collect(),
            writes: Latency::new(),
            reads: Latency::new(),
            connections: Gauge::default(),
            connections_total: Counter::default(),
            connections_refused: Counter::default(),
            connections_denied: Counter::default(),
            protocol_errors: Counter::default(),
            tls_handshake_failures: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            write_batches: Batches::new(),
            read_batches: Batches::new(),
            acl_denied: Default::default(),
            timed_out: Default::default(),
            output: Default::default(),
            info_base: Mutex::default(),
        }
    }

    /// `CONFIG RESETSTAT`: INFO's counters start again from zero, and the
    /// latency quantiles (INFO's and the exposition's) forget every
    /// command so far. The exposition's counters and buckets go on, as
    /// Prometheus expects of them.
    pub fn reset_stats(&self) {
        let now = self.snapshot();
        *self
            .info_base
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = now;
        self.writes.quantiles.reset();
        self.reads.quantiles.reset();
    }

    /// The counters since the last [`reset_stats`](Self::reset_stats) (or
    /// the start), as INFO shows them; open connections are counted as
    /// they are.
    pub fn stats(&self) -> MetricsSnapshot {
        let base = *self
            .info_base
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.snapshot().since(&base)
    }

    /// A client was closed for missing a read deadline.
    pub fn client_timed_out(&self, why: crate::connection::TimedOut) {
        let i = match why {
            crate::connection::TimedOut::Idle => 0,
            crate::connection::TimedOut::Request => 1,
        };
        self.timed_out[i].inc();
    }

    /// The client output buffer limits acted (`n` times).
    pub fn output_limit(&self, what: OutputEvent, n: u64) {
        self.output[what as usize].inc_by(n);
    }

    /// The ACL refused a client.
    pub fn acl_denied(&self, why: AclDenial) {
        self.acl_denied[why as usize].inc();
    }

    /// One client command finished. `command` is the lower-case command
    /// name ("get", "set", "mset", "raft.status", ...); names outside
    /// [`COMMANDS`] count under "other". `ok` is false when the reply was
    /// an error. `latency` is from when the server read the command to when
    /// its reply was ready; it goes to the write or the read latencies by
    /// the command's [`CommandKind`] (other commands are not timed).
    pub fn record(&self, command: &str, ok: bool, latency: Duration) {
        let index = command_index(command);
        let counters = &self.commands[index];
        if ok {
            counters.ok.inc();
        } else {
            counters.failed.inc();
        }
        match command_kind(index) {
            CommandKind::Write => self.writes.record(latency),
            CommandKind::Read => self.reads.record(latency),
            CommandKind::Other => {}
        }
    }

    /// A client connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_total.inc();
        self.connections.inc();
    }

    /// A client connection (one counted by
    /// [`connection_opened`](Self::connection_opened)) was closed.
    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    /// A remote client refused by protected mode (the default user has no
    /// password).
    pub fn connection_denied(&self) {
        self.connections_denied.inc();
    }

    /// A connection refused because the limit of connections was reached.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A connection closed because its request was malformed or too large.
    pub fn protocol_error(&self) {
        self.protocol_errors.inc();
    }

    /// A client's TLS handshake failed.
    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    /// `n` bytes read from a client.
    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.inc_by(n);
    }

    /// `n` bytes written to a client.
    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.inc_by(n);
    }

    /// `commands` client writes went into one log entry (pipelined, or of
    /// several connections).
    pub fn write_batch(&self, commands: usize) {
        self.write_batches.add(commands);
    }

    /// `commands` client reads were served by one linearizable read.
    pub fn read_batch(&self, commands: usize) {
        self.read_batches.add(commands);
    }

    /// How many times `command` (a name as given to [`record`](Self::record))
    /// succeeded and failed.
    pub fn command_counts(&self, command: &str) -> (u64, u64) {
        let c = &self.commands[command_index(command)];
        (c.ok.get(), c.failed.get())
    }

    /// The write (`writes`) or read latencies now, for their quantiles
    /// (the exposition shows them in buckets).
    pub fn latency(&self, writes: bool) -> LatencySnapshot {
        let latency = if writes { &self.writes } else { &self.reads };
        LatencySnapshot {
            histogram: latency.quantiles.merged(),
        }
    }

    /// The `q`-quantile (0 to 1) of write (`writes`) or read latencies
    /// (see [`LatencySnapshot::quantile`]); `None` before the first such
    /// command.
    pub fn latency_quantile(&self, writes: bool, q: f64) -> Option<Duration> {
        self.latency(writes).quantile(q)
    }

    /// The plain counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let (mut ok, mut failed) = (0, 0);
        for c in self.commands.iter() {
            ok += c.ok.get();
            failed += c.failed.get();
        }
        MetricsSnapshot {
            commands_ok: ok,
            commands_failed: failed,
            connections_current: u64::try_from(self.connections.get()).unwrap_or(0),
            connections_total: self.connections_total.get(),
            connections_refused: self.connections_refused.get(),
            connections_denied: self.connections_denied.get(),
            protocol_errors: self.protocol_errors.get(),
            tls_handshake_failures: self.tls_handshake_failures.get(),
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            write_batches: self.write_batches.batches.get(),
            write_batch_commands: self.write_batches.commands.get(),
            read_batches: self.read_batches.batches.get(),
            read_batch_commands: self.read_batches.commands.get(),
            acl_denied_auth: self.acl_denied[AclDenial::Auth as usize].get(),
            acl_denied_command: self.acl_denied[AclDenial::Command as usize].get(),
            acl_denied_key: self.acl_denied[AclDenial::Key as usize].get(),
            timed_out_idle: self.timed_out[0].get(),
            timed_out_request: self.timed_out[1].get(),
            output_backpressure: self.output[OutputEvent::Backpressure as usize].get(),
            output_limit_closed: self.output[OutputEvent::Closed as usize].get(),
            replies_refused_for_size: self.output[OutputEvent::ReplyRefused as usize].get(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Instant;

    use raft_node::{FilePersistence, Node, Options, Role};

    use crate::context::Context;

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
            wakeups: Default::default(),
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
        assert_eq!(command_index("bzpopmin"), OTHER);
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
    }

    #[test]
    fn counters_and_histograms_add_up() {
        let m = Arc::new(Metrics::new());
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

        assert_eq!(m.latency(true).count(), 10);
        assert_eq!(m.latency(false).count(), 1);
        let text = exposition::client_text(&m);
        let bucket = |kind: &str, le: &str| {
            let series =
                format!("raftkv_command_duration_seconds_bucket{{kind=\"{kind}\",le=\"{le}\"}}");
            value(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
        };
        // The bounds in seconds, written as Prometheus's Go clients write
        // them.
        let les = [
            "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
            "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
        ];
        for (bound, le) in LATENCY_BOUNDS_NANOS.iter().zip(les) {
            let seconds: f64 = le.parse().unwrap();
            assert_eq!((seconds * 1e9).round() as u64, *bound, "{le}");
        }
        let cumulative: Vec<f64> = les.iter().map(|le| bucket("write", le)).collect();
        assert!(cumulative.windows(2).all(|p| p[0] <= p[1]));
        assert_eq!(cumulative[les.len() - 1], 10.0);
        // <= 50us: 1, 10, 50; <= 100us: + 51; <= 500us: + 300, 300; ...
        assert_eq!(cumulative[0], 3.0);
        assert_eq!(cumulative[1], 4.0);
        assert_eq!(cumulative[3], 6.0);
        assert_eq!(cumulative[4], 7.0);
        assert_eq!(cumulative[5], 8.0);
        assert_eq!(cumulative[10], 9.0);
        assert_eq!(cumulative[15], 9.0);
        let count = "raftkv_command_duration_seconds_count{kind=\"write\"}";
        assert_eq!(value(&text, count), Some(10.0));
        let sum = value(&text, "raftkv_command_duration_seconds_sum{kind=\"write\"}").unwrap();
        let total: u64 = micros.iter().sum::<u64>() + 1;
        assert!((sum - total as f64 / 1e6).abs() < 1e-9, "{sum}");
        assert_eq!(bucket("read", les[1]), 0.0);
        assert_eq!(bucket("read", les[2]), 1.0);

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

    /// Whether `got` is within 0.1% (3 significant digits) of `want`.
    fn close(got: Duration, want: Duration) -> bool {
        got.as_nanos().abs_diff(want.as_nanos()) * 1000 <= want.as_nanos()
    }

    #[test]
    fn resetstat_zeroes_what_info_shows_and_never_the_exposition() {
        let m = Arc::new(Metrics::new());
        m.connection_opened();
        m.connection_opened();
        m.record("set", true, Duration::from_micros(300));
        m.reset_stats();
        m.connection_opened();
        let stats = m.stats();
        assert_eq!(stats.connections_total, 1);
        assert_eq!(
            stats.connections_current, 3,
            "open connections stay counted"
        );
        assert_eq!(stats.commands_ok, 0);
        assert_eq!(m.latency(true).count(), 0, "the quantiles start again");
        assert_eq!(m.snapshot().connections_total, 3);
        assert_eq!(m.snapshot().commands_ok, 1);
        let text = exposition::client_text(&m);
        assert!(
            text.contains("raftkv_command_duration_seconds_count{kind=\"write\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn quantiles_have_three_significant_digits() {
        let m = Metrics::new();
        assert_eq!(m.latency_quantile(true, 0.5), None);
        assert_eq!(m.latency(true).max(), None);
        // 90 commands at 300us, 10 at 3ms.
        for _ in 0..90 {
            m.record("mset", true, Duration::from_micros(300));
        }
        for _ in 0..10 {
            m.record("incr", true, Duration::from_millis(3));
        }
        let q = |q| m.latency_quantile(true, q).unwrap();
        let (fast, slow) = (Duration::from_micros(300), Duration::from_millis(3));
        for p in [0.0, 0.5, 0.9] {
            assert!(close(q(p), fast), "{p}: {:?}", q(p));
        }
        for p in [0.95, 0.99, 1.0] {
            assert!(close(q(p), slow), "{p}: {:?}", q(p));
        }
        assert!(close(m.latency(true).max().unwrap(), slow));
        assert_eq!(m.latency_quantile(true, 1.5), None);
        assert_eq!(m.latency_quantile(true, -0.1), None);
        assert_eq!(m.latency_quantile(true, f64::NAN), None);
        assert_eq!(m.latency_quantile(false, 0.5), None);

        // Spread over five decades, every percentile is where it should be.
        let m = Metrics::new();
        let all: Vec<Duration> = (1..=1000u64)
            .map(|i| Duration::from_nanos(1_000 * i * i))
            .collect();
        for (i, d) in all.iter().enumerate() {
            let name = if i % 2 == 0 { "get" } else { "mget" };
            m.record(name, true, *d);
        }
        let reads = m.latency(false);
        assert_eq!(reads.count(), 1000);
        for p in 1..=100u64 {
            let want = all[(p * 10 - 1) as usize];
            let got = reads.quantile(p as f64 / 100.0).unwrap();
            assert!(close(got, want), "p{p}: {got:?}, not {want:?}");
        }

        // Beyond the longest told apart: counted as that.
        m.record("get", true, Duration::from_secs(24 * 3600));
        let max = m.latency(false).max().unwrap();
        assert!(close(max, LATENCY_RECORDED_MAX), "{max:?}");
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
        assert_eq!(m.latency(true).count(), 20_000);
        assert_eq!(m.latency(false).count(), 20_000);
    }
}
