//! The TCP transport on loopback: append throughput and small-request rate
//! between two transports of one process, with latency percentiles.
//!
//! `cargo bench -p raft-node --bench tcp_transport` (each case runs
//! `TCP_BENCH_SECS` seconds, 3 by default, after a short warm-up).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use raft_core::{Append, Body, Entry, EntryPayload, Message};
use raft_node::transport::tcp::{TcpOptions, TcpTransport};
use raft_node::transport::{Connection, Envelope, Handler, Reply, Request, Transport};

/// Answers every request at once, like a node's handler queueing a Raft
/// message.
struct Sink;

#[async_trait]
impl Handler for Sink {
    async fn handle(&self, _envelope: Envelope) -> Reply {
        Reply::Ack
    }
}

fn raft(body: Body) -> Envelope {
    Envelope {
        cluster: 7,
        from: Arc::from("127.0.0.1:7001"),
        request: Request::Raft(Message {
            cluster: 7,
            from: 1,
            to: 2,
            term: 3,
            body,
        }),
    }
}

fn append(entries: usize, bytes: usize) -> Envelope {
    let payload = Bytes::from(vec![0xAB; bytes]);
    raft(Body::Append(Append {
        prev_index: 1000,
        prev_term: 3,
        commit: 1000,
        round: 1,
        entries: (0..entries as u64)
            .map(|i| Entry {
                term: 3,
                index: 1001 + i,
                payload: EntryPayload::Command(payload.clone()),
            })
            .collect(),
    }))
}

struct Figures {
    requests: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let at = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[at.min(self.latencies.len() - 1)]
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

type Call<'a> = Pin<Box<dyn Future<Output = (Instant, bool)> + Send + 'a>>;

/// Sends `envelope` over `connection` for `duration`, keeping `window`
/// requests in flight.
async fn run(
    connection: &Arc<dyn Connection>,
    envelope: &Envelope,
    window: usize,
    duration: Duration,
) -> Figures {
    let call = |start: Instant| -> Call<'_> {
        let envelope = envelope.clone();
        Box::pin(async move {
            let ok = matches!(connection.invoke(envelope).await, Ok(Reply::Ack));
            (start, ok)
        })
    };
    let mut inflight: FuturesUnordered<Call<'_>> = FuturesUnordered::new();
    let begin = Instant::now();
    let mut latencies = Vec::new();
    let mut failed = 0u64;
    for _ in 0..window {
        inflight.push(call(Instant::now()));
    }
    while let Some((start, ok)) = inflight.next().await {
        let now = Instant::now();
        latencies.push(now - start);
        if !ok {
            failed += 1;
        }
        if now - begin < duration {
            inflight.push(call(now));
        }
    }
    let elapsed = begin.elapsed();
    assert_eq!(failed, 0, "requests failed");
    latencies.sort_unstable();
    Figures {
        requests: latencies.len() as u64,
        elapsed,
        latencies,
    }
}

fn encoded_len(envelope: &Envelope) -> usize {
    raft_node::codec::encode_envelope(envelope).len()
}

fn payload_len(envelope: &Envelope) -> usize {
    match &envelope.request {
        Request::Raft(Message {
            body: Body::Append(a),
            ..
        }) => a
            .entries
            .iter()
            .map(|e| match &e.payload {
                EntryPayload::Command(c) => c.len(),
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

fn main() {
    let secs: f64 = std::env::var("TCP_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let duration = Duration::from_secs_f64(secs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let server = TcpTransport::new(TcpOptions::new("server", "bench").insecure()).expect("options");
        let address = server
            .listen("127.0.0.1:0", Arc::new(Sink))
            .await
            .expect("listen");
        let client = TcpTransport::new(TcpOptions::new("client", "bench").insecure()).expect("options");
        let connection = client.connect(&address).await.expect("connect");
        println!("TCP transport on loopback ({address}), one connection, {secs} s per case, 2 worker threads");
        println!();
        println!(
            "{:<34} {:>8} {:>12} {:>10} {:>10} {:>10} {:>10}",
            "case", "window", "requests/s", "MB/s", "wire MB/s", "p50", "p99"
        );
        let cases: Vec<(&str, Envelope, usize)> = vec![
            ("append 1 x 64 KiB", append(1, 64 * 1024), 64),
            ("append 64 x 100 B", append(64, 100), 64),
            ("heartbeat (small request)", raft(Body::Heartbeat { commit: 1000, round: 9 }), 1),
            ("heartbeat (small request)", raft(Body::Heartbeat { commit: 1000, round: 9 }), 64),
        ];
        for (name, envelope, window) in cases {
            // Warm-up.
            run(&connection, &envelope, window, Duration::from_millis(300)).await;
            let figures = run(&connection, &envelope, window, duration).await;
            let rate = figures.rate();
            let payload = payload_len(&envelope) as f64 * rate / 1e6;
            let wire = (encoded_len(&envelope) + 13) as f64 * rate / 1e6;
            println!(
                "{:<34} {:>8} {:>12.0} {:>10.1} {:>10.1} {:>10.1?} {:>10.1?}",
                name,
                window,
                rate,
                payload,
                wire,
                figures.percentile(0.50),
                figures.percentile(0.99),
            );
        }
        println!();
        println!("MB/s: entry payload bytes per second (10^6 bytes); wire MB/s: request frames");
        let stats = client.stats();
        println!(
            "client: {} requests sent, {} timeouts, {} reconnects",
            stats.requests_sent, stats.timeouts, stats.reconnects
        );
        connection.close().await.expect("close");
        server.shutdown().await.expect("shutdown");
        client.shutdown().await.expect("shutdown");
    });
}
