//! The Prometheus exposition of a server's metrics: the client-facing
//! [`Metrics`] as they are, and the node's, its store's and its
//! transport's counters read at each scrape, encoded by `prometheus-client`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use raft_node::Role;

use super::{counted_name, AclDenial, Metrics, OutputEvent};
use crate::cmd::table::COMMANDS;
use crate::context::Context;

/// The name a counter family is declared under: `prometheus-client` adds
/// the `_total` suffix that every counter of the exposition carries.
fn counter_family(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

/// One unlabelled metric as a family of its own. Counter names end in
/// `_total`, as exposed.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> fmt::Result {
    let kind = metric.metric_type();
    let name = match kind {
        MetricType::Counter => counter_family(name),
        _ => name,
    };
    metric.encode(encoder.encode_descriptor(name, help, None, kind)?)
}

/// A counter family with one label, `label`: its values and counters.
fn labelled(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, &Counter)],
) -> fmt::Result {
    let mut family =
        encoder.encode_descriptor(counter_family(name), help, None, MetricType::Counter)?;
    for (value, counter) in values {
        counter.encode(family.encode_family(&[(label, *value)])?)?;
    }
    Ok(())
}

/// The client-facing part of the exposition: the [`Metrics`] as they are
/// when scraped.
#[derive(Debug)]
struct ClientExposition(Arc<Metrics>);

impl Collector for ClientExposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let m = &self.0;
        let e = &mut encoder;
        let mut family = e.encode_descriptor(
            "commands",
            "Client commands run, by command and result.",
            None,
            MetricType::Counter,
        )?;
        for (i, c) in m.commands.iter().enumerate() {
            if COMMANDS.get(i).is_some_and(|c| c.is_subcommand()) {
                continue;
            }
            let name = counted_name(i);
            c.ok.encode(family.encode_family(&[("command", name), ("result", "ok")])?)?;
            c.failed
                .encode(family.encode_family(&[("command", name), ("result", "error")])?)?;
        }

        let mut family = e.encode_descriptor(
            "command_duration_seconds",
            "Client command latency, from reading the command to its reply being ready, \
             for write and read commands.",
            None,
            MetricType::Histogram,
        )?;
        for (kind, latency) in [("write", &m.writes), ("read", &m.reads)] {
            latency
                .buckets
                .encode(family.encode_family(&[("kind", kind)])?)?;
        }

        single(
            e,
            "connections",
            "Client connections open now.",
            &m.connections,
        )?;
        single(
            e,
            "connections_total",
            "Client connections accepted.",
            &m.connections_total,
        )?;
        single(
            e,
            "connections_refused_total",
            "Client connections refused at the connection limit.",
            &m.connections_refused,
        )?;
        single(
            e,
            "connections_denied_total",
            "Remote clients refused by protected mode (the default user has no password).",
            &m.connections_denied,
        )?;
        single(
            e,
            "protocol_errors_total",
            "Client connections closed for a malformed or too large request.",
            &m.protocol_errors,
        )?;
        labelled(
            e,
            "clients_timed_out_total",
            "Client connections closed for missing a read deadline: idle for --timeout, or a request not in full within --request-read-timeout-ms.",
            "reason",
            &[("idle", &m.timed_out[0]), ("request", &m.timed_out[1])],
        )?;
        single(
            e,
            "client_output_backpressure_total",
            "Times a connection's unsent replies reached the soft client output buffer limit: the server stopped reading it until they drained.",
            &m.output[OutputEvent::Backpressure as usize],
        )?;
        single(
            e,
            "client_output_limit_closed_total",
            "Client connections closed for leaving their replies unread past the soft client output buffer limit for too long.",
            &m.output[OutputEvent::Closed as usize],
        )?;
        single(
            e,
            "replies_refused_for_size_total",
            "Reads refused because their reply would exceed the hard client output buffer limit.",
            &m.output[OutputEvent::ReplyRefused as usize],
        )?;
        labelled(
            e,
            "acl_denied_total",
            "Clients refused by the ACL, by reason: a failed AUTH, a command or a key the user may not use.",
            "reason",
            &[
                ("auth", &m.acl_denied[AclDenial::Auth as usize]),
                ("command", &m.acl_denied[AclDenial::Command as usize]),
                ("key", &m.acl_denied[AclDenial::Key as usize]),
            ],
        )?;
        single(
            e,
            "client_tls_handshake_failures_total",
            "Client TLS handshakes that failed on the TLS port.",
            &m.tls_handshake_failures,
        )?;
        single(
            e,
            "client_bytes_received_total",
            "Bytes read from clients.",
            &m.bytes_in,
        )?;
        single(
            e,
            "client_bytes_sent_total",
            "Bytes written to clients.",
            &m.bytes_out,
        )?;
        for (name, help, batches) in [
            (
                "write_batch_size",
                "Client writes per log entry (a connection's pipelined writes, and those of connections that arrive while one is under way, share one).",
                &m.write_batches,
            ),
            (
                "read_batch_size",
                "Client reads per linearizable read (pipelined reads share one).",
                &m.read_batches,
            ),
        ] {
            single(e, name, help, &batches.sizes)?;
        }
        Ok(())
    }
}

/// One family of [`NodeExposition`]: a counter or a gauge, and its samples,
/// each with a label (its name and value) or none.
#[derive(Debug)]
struct ScrapedFamily {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Option<(&'static str, String)>, u64)>,
}

/// The node's, its store's and its transport's part of the exposition:
/// values read once per scrape, shown as constant metrics.
#[derive(Debug, Default)]
struct NodeExposition {
    families: Vec<ScrapedFamily>,
}

impl NodeExposition {
    /// An unlabelled counter; `name` ends in `_total`, as exposed.
    fn counter(&mut self, name: &'static str, help: &'static str, value: u64) {
        self.families.push(ScrapedFamily {
            name: counter_family(name),
            help,
            kind: MetricType::Counter,
            samples: vec![(None, value)],
        });
    }

    /// An unlabelled gauge.
    fn gauge(&mut self, name: &'static str, help: &'static str, value: impl TryInto<u64>) {
        self.families.push(ScrapedFamily {
            name,
            help,
            kind: MetricType::Gauge,
            samples: vec![(None, value.try_into().unwrap_or(u64::MAX))],
        });
    }

    /// A counter family with one label; `name` ends in `_total`.
    fn counters(
        &mut self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
        values: &[(&str, u64)],
    ) {
        self.families.push(ScrapedFamily {
            name: counter_family(name),
            help,
            kind: MetricType::Counter,
            samples: values
                .iter()
                .map(|(v, n)| (Some((label, (*v).to_owned())), *n))
                .collect(),
        });
    }

    /// A gauge family with one label (maybe without samples).
    fn gauges(
        &mut self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
        values: impl IntoIterator<Item = (String, u64)>,
    ) {
        self.families.push(ScrapedFamily {
            name,
            help,
            kind: MetricType::Gauge,
            samples: values
                .into_iter()
                .map(|(v, n)| (Some((label, v)), n))
                .collect(),
        });
    }
}

impl Collector for NodeExposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        for f in &self.families {
            let mut family = encoder.encode_descriptor(f.name, f.help, None, f.kind)?;
            for (label, value) in &f.samples {
                let pair;
                let labels: &[(&str, &str)] = match label {
                    Some((k, v)) => {
                        pair = [(*k, v.as_str())];
                        &pair
                    }
                    None => &[],
                };
                let sample = family.encode_family(&labels)?;
                match f.kind {
                    MetricType::Counter => ConstCounter::new(*value).encode(sample)?,
                    _ => ConstGauge::new(*value).encode(sample)?,
                }
            }
        }
        Ok(())
    }
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
    let mut e = NodeExposition::default();
    e.gauge(
        "uptime_seconds",
        "Seconds since the server started.",
        ctx.started.elapsed().as_secs(),
    );

    // The node.
    let m = ctx.node.metrics();
    e.gauges(
        "role",
        "The node's Raft role: 1 for the current one, 0 for the others.",
        "role",
        [
            Role::Follower,
            Role::PreCandidate,
            Role::Candidate,
            Role::Leader,
        ]
        .map(|role| (role.to_string(), u64::from(m.role == role))),
    );
    e.gauge("term", "The node's current Raft term.", m.term);
    e.gauge(
        "leader_known",
        "1 if the node knows a leader, else 0.",
        u64::from(m.leader.is_some()),
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
        u64::from(m.stopped.is_some()),
    );
    e.gauge(
        "removed",
        "1 if the node knows it was removed from the cluster (it serves no commands or reads), else 0.",
        u64::from(m.removed.is_some()),
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
    e.counters(
        "raft_reads_total",
        "Linearizable reads confirmed, by how: a heartbeat round or the leader lease.",
        "by",
        &[("round", c.reads_by_round), ("lease", c.reads_by_lease)],
    );
    e.counters(
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
    e.gauges(
        "peer_connected",
        "1 if the last message to the peer got through, else 0.",
        "peer",
        peers.iter().map(|p| (p.id.clone(), u64::from(p.connected))),
    );
    let leading = m.role == Role::Leader;
    e.gauges(
        "peer_lag_entries",
        "On the leader: the commit index minus the peer's match index.",
        "peer",
        peers
            .iter()
            .filter(|_| leading)
            .filter_map(|p| Some((p.id.clone(), m.commit_index.saturating_sub(p.match_index?)))),
    );

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

    let mut registry = Registry::with_prefix("raftkv");
    registry.register_collector(Box::new(ClientExposition(ctx.metrics.clone())));
    registry.register_collector(Box::new(e));
    encode(&registry)
}

/// `registry` in the Prometheus text format.
fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(32 * 1024);
    if let Err(e) = prometheus_text::encode(&mut out, registry) {
        // Writing to a string cannot fail, nor can the collectors above.
        tracing::warn!(error = %e, "the metrics could not be encoded");
    }
    out
}

fn unix_seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The client-facing part of the exposition alone.
#[cfg(test)]
pub(super) fn client_text(metrics: &Arc<Metrics>) -> String {
    let mut registry = Registry::with_prefix("raftkv");
    registry.register_collector(Box::new(ClientExposition(metrics.clone())));
    encode(&registry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::{temp_dir, test_context, value};
    use raft_node::example::KvCommand;
    use raft_node::FilePersistence;

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
            "# TYPE raftkv_write_batch_size histogram",
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
        let batches = |le: &str| {
            value(
                &text,
                &format!("raftkv_write_batch_size_bucket{{le=\"{le}\"}}"),
            )
        };
        assert_eq!(batches("1"), Some(0.0));
        assert_eq!(batches("2"), Some(1.0));
        assert_eq!(batches("+Inf"), Some(1.0));
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
        let mut e = NodeExposition::default();
        e.gauges(
            "peer_connected",
            "1 if the last message to the peer got through, else 0.",
            "peer",
            [(r#"a"b\c"#.to_owned(), 1), ("x\ny".to_owned(), 0)],
        );
        let mut registry = Registry::with_prefix("raftkv");
        registry.register_collector(Box::new(e));
        let text = encode(&registry);
        check_exposition(&text);
        assert!(
            text.contains(r#"raftkv_peer_connected{peer="a\"b\\c"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"raftkv_peer_connected{peer="x\ny"} 0"#),
            "{text}"
        );
    }
}
