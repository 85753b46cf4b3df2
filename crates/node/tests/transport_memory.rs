//! The in-memory transport: the conformance kit, and what is specific to it
//! (faults, delays, determinism, throughput).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use raft_node::testkit::transport::{run_all, sample_envelopes, Kit, Setup};
use raft_node::transport::memory::{FaultError, KindStats, MemoryNetwork, MemoryTransport};
use raft_node::transport::{Envelope, Handler, Reply, Request, Transport, TransportError};
use tokio::time::Instant;

// --- helpers ---

/// What a kit factory returns.
type Made = Pin<Box<dyn Future<Output = (Arc<dyn Transport>, String)> + Send>>;

/// A kit factory on `network`: transport `node-i` listens at `node-i`.
fn factory(network: &MemoryNetwork) -> impl Fn(Setup) -> Made {
    let network = network.clone();
    move |setup| {
        let network = network.clone();
        Box::pin(async move {
            network.set_timeout(setup.request_timeout);
            let address = format!("node-{}", setup.index);
            let transport: Arc<dyn Transport> = Arc::new(network.transport(address.clone()));
            (transport, address)
        })
    }
}

const HANG: &[u8] = b"hang";

/// Records what it receives, with the (tokio) time, and answers with its
/// name; never answers [`HANG`].
struct Log {
    name: String,
    seen: Mutex<Vec<(Envelope, Instant)>>,
}

impl Log {
    fn new(name: &str) -> Arc<Log> {
        Arc::new(Log {
            name: name.to_owned(),
            seen: Mutex::new(Vec::new()),
        })
    }

    fn ids(&self) -> Vec<u64> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(e, _)| e.cluster)
            .collect()
    }

    fn times(&self) -> Vec<Instant> {
        self.seen.lock().unwrap().iter().map(|(_, t)| *t).collect()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[async_trait]
impl Handler for Log {
    async fn handle(&self, envelope: Envelope) -> Reply {
        let hang = matches!(&envelope.request, Request::Command(b) if b.as_ref() == HANG);
        self.seen.lock().unwrap().push((envelope, Instant::now()));
        if hang {
            std::future::pending::<()>().await;
        }
        Reply::Output(Bytes::from(self.name.clone()))
    }
}

/// A request whose id travels in the cluster field.
fn request(id: u64) -> Envelope {
    Envelope {
        cluster: id,
        from: Arc::from(""),
        request: Request::Command(Bytes::from(id.to_be_bytes().to_vec())),
    }
}

/// A transport named and listening at `name`, with its log.
async fn node(network: &MemoryNetwork, name: &str) -> (MemoryTransport, Arc<Log>) {
    let transport = network.transport(name);
    let log = Log::new(name);
    transport.listen(name, log.clone()).await.unwrap();
    (transport, log)
}

async fn send(transport: &MemoryTransport, to: &str, id: u64) -> Result<Reply, TransportError> {
    transport
        .connect(to)
        .await
        .unwrap()
        .invoke(request(id))
        .await
}

fn is_timeout<T: std::fmt::Debug>(result: &Result<T, TransportError>) -> bool {
    matches!(result, Err(TransportError::Timeout { .. }))
}

fn answered_by<T: PartialEq<Reply> + std::fmt::Debug>(
    result: &Result<T, TransportError>,
    name: &str,
) -> bool {
    matches!(result, Ok(reply) if *reply == Reply::Output(Bytes::from(name.to_owned())))
}

/// Polls each future once, in order (each registers its turn), and returns
/// them.
async fn start_all<F: Future + Unpin>(mut futures: Vec<F>) -> Vec<F> {
    std::future::poll_fn(|cx| {
        for future in futures.iter_mut() {
            let poll = Pin::new(future).poll(cx);
            assert!(poll.is_pending(), "a delayed request completed at once");
        }
        Poll::Ready(())
    })
    .await;
    futures
}

/// Awaits futures polled in order (the first polls happen in order).
async fn join_in_order<T, F: Future<Output = T> + Unpin>(futures: Vec<F>) -> Vec<T> {
    let mut slots: Vec<Option<F>> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = slots.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in slots.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match Pin::new(future).poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

// --- the conformance kit ---

#[tokio::test(start_paused = true)]
async fn kit_paused_time() {
    let network = MemoryNetwork::new();
    run_all(factory(&network)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kit_real_time_multi_thread() {
    let network = MemoryNetwork::new();
    let start = std::time::Instant::now();
    Kit::new(factory(&network))
        .request_timeout(Duration::from_millis(100))
        .run_all()
        .await;
    println!("kit in real time: {:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn kit_with_delays_and_drops_off() {
    // Delays must not break any guarantee of the kit.
    let network = MemoryNetwork::with_seed(3);
    network
        .set_delay(Duration::from_millis(1), Duration::from_millis(20))
        .unwrap();
    Kit::new(factory(&network))
        .request_timeout(Duration::from_millis(500))
        .run_all()
        .await;
}

#[tokio::test(start_paused = true)]
async fn kit_checks_one_by_one() {
    let network = MemoryNetwork::new();
    let kit = Kit::new(factory(&network));
    kit.ordering().await;
    kit.back_channel().await;
    kit.restart().await;
}

// --- links ---

#[tokio::test(start_paused = true)]
async fn partition_cuts_both_ways_until_healed() {
    let network = MemoryNetwork::new();
    network.set_timeout(Duration::from_secs(1));
    let (a, _) = node(&network, "a").await;
    let (b, b_log) = node(&network, "b").await;
    let (c, _) = node(&network, "c").await;
    network.partition("a", "b");
    let start = Instant::now();
    assert!(is_timeout(&send(&a, "b", 1).await));
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "lost: waits the timeout"
    );
    assert!(is_timeout(&send(&b, "a", 2).await));
    assert!(answered_by(&send(&a, "c", 3).await, "c"));
    assert!(answered_by(&send(&c, "b", 4).await, "b"));
    assert_eq!(b_log.ids(), vec![4]);
    let stats = network.stats();
    assert_eq!((stats.delivered, stats.dropped), (2, 2));
    network.heal();
    assert!(answered_by(&send(&a, "b", 5).await, "b"));
    assert!(answered_by(&send(&b, "a", 6).await, "a"));
}

#[tokio::test(start_paused = true)]
async fn cut_is_one_way() {
    let network = MemoryNetwork::new();
    let (a, _) = node(&network, "a").await;
    let (b, _) = node(&network, "b").await;
    // An existing connection sees the change (its cached route is refreshed).
    let a_to_b = a.connect("b").await.unwrap();
    assert!(a_to_b.invoke(request(0)).await.is_ok());
    network.cut("a", "b");
    assert!(is_timeout(&a_to_b.invoke(request(1)).await));
    assert!(answered_by(&send(&b, "a", 2).await, "a"));
    network.reconnect("b");
    assert!(answered_by(&a_to_b.invoke(request(3)).await, "b"));
}

#[tokio::test(start_paused = true)]
async fn isolate_cuts_everyone_until_reconnected() {
    let network = MemoryNetwork::new();
    let (a, _) = node(&network, "a").await;
    let (b, _) = node(&network, "b").await;
    let (c, _) = node(&network, "c").await;
    network.partition("b", "c");
    network.isolate("a");
    assert!(is_timeout(&send(&a, "b", 1).await));
    assert!(is_timeout(&send(&b, "a", 2).await));
    assert!(is_timeout(&send(&c, "a", 3).await));
    // Isolation covers addresses that appear later.
    let (d, _) = node(&network, "d").await;
    assert!(is_timeout(&send(&d, "a", 4).await));
    assert!(is_timeout(&send(&a, "d", 5).await));
    assert!(answered_by(&send(&d, "b", 6).await, "b"));
    network.reconnect("a");
    assert!(answered_by(&send(&a, "b", 7).await, "b"));
    assert!(answered_by(&send(&d, "a", 8).await, "a"));
    // Reconnecting a does not heal b-c.
    assert!(is_timeout(&send(&b, "c", 9).await));
    network.heal();
    assert!(answered_by(&send(&b, "c", 10).await, "c"));
}

#[tokio::test(start_paused = true)]
async fn reconnect_undoes_cuts_to_and_from_an_address_only() {
    let network = MemoryNetwork::new();
    let (a, _) = node(&network, "a").await;
    let (b, _) = node(&network, "b").await;
    let (_c, _) = node(&network, "c").await;
    network.cut("a", "c");
    network.cut("b", "a");
    network.cut("b", "c");
    network.reconnect("a");
    assert!(answered_by(&send(&a, "c", 1).await, "c"));
    assert!(answered_by(&send(&b, "a", 2).await, "a"));
    assert!(is_timeout(&send(&b, "c", 3).await));
}

#[tokio::test(start_paused = true)]
async fn heal_keeps_drop_rate_and_delay() {
    let network = MemoryNetwork::new();
    network.set_timeout(Duration::from_secs(1));
    let (a, _) = node(&network, "a").await;
    let (_b, _) = node(&network, "b").await;
    network
        .set_delay(Duration::from_millis(30), Duration::from_millis(30))
        .unwrap();
    network.isolate("b");
    network.heal();
    let start = Instant::now();
    assert!(answered_by(&send(&a, "b", 1).await, "b"));
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    network.set_drop_rate(1.0).unwrap();
    network.heal();
    assert!(is_timeout(&send(&a, "b", 2).await));
}

#[tokio::test(start_paused = true)]
async fn unreachable_fails_at_once() {
    let network = MemoryNetwork::new();
    let a = network.transport("a");
    let connection = a.connect("nobody").await.expect("connect is lazy");
    let start = Instant::now();
    let result = connection.invoke(request(1)).await;
    assert!(
        matches!(&result, Err(TransportError::Unreachable { address, .. }) if address == "nobody"),
        "{result:?}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    // The same connection works once someone listens.
    let (_n, _) = node(&network, "nobody").await;
    assert!(answered_by(&connection.invoke(request(2)).await, "nobody"));
}

// --- drops ---

#[tokio::test(start_paused = true)]
async fn drop_rate_one_drops_everything() {
    let network = MemoryNetwork::with_seed(11);
    network.set_timeout(Duration::from_millis(100));
    let (a, _) = node(&network, "a").await;
    let (_b, b_log) = node(&network, "b").await;
    network.set_drop_rate(1.0).unwrap();
    let connection = a.connect("b").await.unwrap();
    for id in 0..100 {
        assert!(is_timeout(&connection.invoke(request(id)).await));
    }
    assert_eq!(b_log.count(), 0);
    let stats = network.stats();
    assert_eq!((stats.delivered, stats.dropped), (0, 100));
    assert_eq!(
        stats.by_kind.get("command"),
        Some(&KindStats {
            delivered: 0,
            dropped: 100
        })
    );
    network.set_drop_rate(0.0).unwrap();
    assert!(answered_by(&connection.invoke(request(100)).await, "b"));
}

#[tokio::test(start_paused = true)]
async fn drop_rate_drops_about_that_share() {
    let network = MemoryNetwork::with_seed(5);
    network.set_timeout(Duration::from_millis(10));
    let (a, _) = node(&network, "a").await;
    let (_b, b_log) = node(&network, "b").await;
    network.set_drop_rate(0.25).unwrap();
    let connection = a.connect("b").await.unwrap();
    for id in 0..2000 {
        let _ = connection.invoke(request(id)).await;
    }
    let stats = network.stats();
    assert_eq!(stats.delivered + stats.dropped, 2000);
    assert_eq!(stats.delivered as usize, b_log.count());
    assert!((400..600).contains(&stats.dropped), "{stats:?}");
}

#[test]
fn invalid_fault_settings_are_refused() {
    let network = MemoryNetwork::new();
    for rate in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            network.set_drop_rate(rate),
            Err(FaultError::DropRate(_))
        ));
    }
    let (min, max) = (Duration::from_millis(10), Duration::from_millis(5));
    assert_eq!(
        network.set_delay(min, max),
        Err(FaultError::Delay { min, max })
    );
    assert!(network.set_delay(Duration::ZERO, Duration::MAX).is_ok());
}

// --- delays and order ---

#[tokio::test(start_paused = true)]
async fn delays_keep_per_connection_order() {
    let network = MemoryNetwork::with_seed(42);
    let (a, _) = node(&network, "a").await;
    let (_b, log) = node(&network, "b").await;
    let (min, max) = (Duration::from_millis(1), Duration::from_millis(50));
    network.set_delay(min, max).unwrap();
    let first = a.connect("b").await.unwrap();
    let second = a.connect("b").await.unwrap();
    let start = Instant::now();
    // Two connections, interleaved: ids 0, 2, 4... on the first, 1, 3, 5...
    // on the second.
    let calls: Vec<_> = (0..400u64)
        .map(|id| {
            let connection = if id % 2 == 0 { &first } else { &second };
            connection.invoke(request(id))
        })
        .collect();
    let replies = join_in_order(calls).await;
    assert!(replies.iter().all(|r| answered_by(r, "b")));
    let ids = log.ids();
    let times = log.times();
    for parity in 0..2 {
        let on_one: Vec<u64> = ids.iter().copied().filter(|id| id % 2 == parity).collect();
        let expected: Vec<u64> = (0..400).filter(|id| id % 2 == parity).collect();
        assert_eq!(on_one, expected, "connection {parity} kept its order");
    }
    assert_ne!(
        ids,
        (0..400).collect::<Vec<_>>(),
        "the two connections are independent: their requests interleave differently"
    );
    assert!(times.iter().all(|t| *t >= start + min));
    // Each connection's queue is held up by its slowest request so far, so
    // everything arrives by the largest delay drawn.
    assert!(start.elapsed() <= max, "{:?}", start.elapsed());
    assert!(start.elapsed() > max / 2);
}

#[tokio::test(start_paused = true)]
async fn delays_are_drawn_within_bounds() {
    let network = MemoryNetwork::with_seed(9);
    let (a, _) = node(&network, "a").await;
    let (_b, _) = node(&network, "b").await;
    let (min, max) = (Duration::from_millis(10), Duration::from_millis(20));
    network.set_delay(min, max).unwrap();
    let connection = a.connect("b").await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for id in 0..200 {
        let start = Instant::now();
        assert!(connection.invoke(request(id)).await.is_ok());
        let elapsed = start.elapsed();
        assert!(elapsed >= min && elapsed <= max, "{elapsed:?}");
        seen.insert(elapsed.as_millis());
    }
    assert!(seen.len() >= 8, "delays vary: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn timeout_counts_the_delay() {
    let network = MemoryNetwork::new();
    network.set_timeout(Duration::from_secs(1));
    let (a, _) = node(&network, "a").await;
    let (_b, log) = node(&network, "b").await;
    network
        .set_delay(Duration::from_secs(2), Duration::from_secs(2))
        .unwrap();
    let connection = a.connect("b").await.unwrap();
    let start = Instant::now();
    assert!(is_timeout(&connection.invoke(request(1)).await));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    // The request gave up its turn: the next one is not held up.
    network.set_delay(Duration::ZERO, Duration::ZERO).unwrap();
    let start = Instant::now();
    assert!(answered_by(&connection.invoke(request(2)).await, "b"));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(log.ids(), vec![2]);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_request_gives_up_its_turn() {
    let network = MemoryNetwork::new();
    let (a, _) = node(&network, "a").await;
    let (_b, log) = node(&network, "b").await;
    network
        .set_delay(Duration::from_millis(100), Duration::from_millis(100))
        .unwrap();
    let connection = a.connect("b").await.unwrap();
    let mut started = start_all(vec![
        connection.invoke(request(0)),
        connection.invoke(request(1)),
        connection.invoke(request(2)),
    ])
    .await;
    // Cancel the first and the last while they wait.
    drop(started.remove(2));
    drop(started.remove(0));
    let start = Instant::now();
    let reply = started.remove(0).await;
    assert!(answered_by(&reply, "b"));
    assert!(start.elapsed() <= Duration::from_millis(100));
    assert_eq!(log.ids(), vec![1]);
    let reply = connection.invoke(request(3)).await;
    assert!(answered_by(&reply, "b"));
    assert_eq!(log.ids(), vec![1, 3]);
}

#[tokio::test(start_paused = true)]
async fn switching_delays_off_keeps_order() {
    let network = MemoryNetwork::with_seed(1);
    let (a, _) = node(&network, "a").await;
    let (_b, log) = node(&network, "b").await;
    network
        .set_delay(Duration::from_millis(10), Duration::from_millis(80))
        .unwrap();
    let connection = a.connect("b").await.unwrap();
    let delayed = start_all((0..20).map(|id| connection.invoke(request(id))).collect()).await;
    network.set_delay(Duration::ZERO, Duration::ZERO).unwrap();
    // Queued behind delayed requests: not delivered at once.
    let mut calls = delayed;
    calls.extend((20..40).map(|id| connection.invoke(request(id))));
    let replies = join_in_order(calls).await;
    assert!(replies.iter().all(|r| answered_by(r, "b")));
    assert_eq!(log.ids(), (0..40).collect::<Vec<_>>());
    // Once the queue is empty, the hot path is back.
    let start = Instant::now();
    assert!(connection.invoke(request(40)).await.is_ok());
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn in_flight_requests_see_later_faults() {
    let network = MemoryNetwork::new();
    network.set_timeout(Duration::from_secs(1));
    let (a, _) = node(&network, "a").await;
    let (b, log) = node(&network, "b").await;
    network
        .set_delay(Duration::from_millis(100), Duration::from_millis(100))
        .unwrap();

    // A partition that forms while a request is in flight loses it.
    let connection = a.connect("b").await.unwrap();
    let mut call = start_all(vec![connection.invoke(request(1))]).await;
    network.partition("a", "b");
    assert!(is_timeout(&call.remove(0).await));
    network.heal();

    // Closing the connection fails its delayed requests with Closed.
    let mut call = start_all(vec![connection.invoke(request(2))]).await;
    connection.close().await.unwrap();
    let result = call.remove(0).await;
    assert!(
        matches!(result, Err(TransportError::Closed { .. })),
        "{result:?}"
    );

    // A listener that shuts down meanwhile makes them Unreachable.
    let connection = a.connect("b").await.unwrap();
    let mut call = start_all(vec![connection.invoke(request(3))]).await;
    b.shutdown().await.unwrap();
    let result = call.remove(0).await;
    assert!(
        matches!(result, Err(TransportError::Unreachable { .. })),
        "{result:?}"
    );
    assert_eq!(log.count(), 0);
}

// --- determinism ---

/// Three nodes exchanging requests concurrently over a lossy, slow network;
/// the trace of what happened when, in virtual time.
fn lossy_run(seed: u64) -> (Vec<String>, raft_node::transport::memory::Stats) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let network = MemoryNetwork::with_seed(seed);
        network.set_timeout(Duration::from_millis(30));
        network.set_drop_rate(0.3).unwrap();
        network
            .set_delay(Duration::ZERO, Duration::from_millis(20))
            .unwrap();
        let names = ["a", "b", "c"];
        let mut transports = Vec::new();
        let mut logs = Vec::new();
        for name in names {
            let (transport, log) = node(&network, name).await;
            transports.push(Arc::new(transport));
            logs.push(log);
        }
        let origin = Instant::now();
        let mut tasks = Vec::new();
        for (i, from) in transports.iter().enumerate() {
            for to in names.iter().filter(|&&to| to != names[i]) {
                let connection = from.connect(to).await.unwrap();
                let label = format!("{}->{to}", names[i]);
                tasks.push(tokio::spawn(async move {
                    let mut trace = Vec::new();
                    for id in 0..40 {
                        let result = connection.invoke(request(id)).await;
                        let outcome = if result.is_ok() { "ok" } else { "lost" };
                        trace.push(format!("{label} {id} {outcome} at {:?}", origin.elapsed()));
                    }
                    trace
                }));
            }
        }
        let mut trace = Vec::new();
        for task in tasks {
            trace.extend(task.await.unwrap());
        }
        for (name, log) in names.iter().zip(&logs) {
            for (envelope, at) in log.seen.lock().unwrap().iter() {
                trace.push(format!(
                    "{name} got {} at {:?}",
                    envelope.cluster,
                    *at - origin
                ));
            }
        }
        (trace, network.stats())
    })
}

#[test]
fn same_seed_same_deliveries_and_drops() {
    let (first, first_stats) = lossy_run(7);
    let (second, second_stats) = lossy_run(7);
    assert_eq!(first, second);
    assert_eq!(first_stats, second_stats);
    assert!(
        first_stats.dropped > 0 && first_stats.delivered > 0,
        "{first_stats:?}"
    );
    let (other, _) = lossy_run(8);
    assert_ne!(first, other, "another seed, another run");
}

// --- registry, back channels, stats ---

#[tokio::test(start_paused = true)]
async fn listen_conflicts_and_release() {
    let network = MemoryNetwork::new();
    let first = network.transport("first");
    let second = network.transport("second");
    let client = network.transport("client");
    first.listen("x", Log::new("one")).await.unwrap();
    assert!(network.is_listening("x"));
    assert!(matches!(
        second.listen("x", Log::new("two")).await,
        Err(TransportError::AddressInUse(_))
    ));
    // The owner may listen again: the new handler replaces the old one.
    first.listen("x", Log::new("three")).await.unwrap();
    assert!(answered_by(&send(&client, "x", 1).await, "three"));
    // Dropping a transport releases its addresses.
    drop(first);
    assert!(!network.is_listening("x"));
    assert!(matches!(
        send(&client, "x", 2).await,
        Err(TransportError::Unreachable { .. })
    ));
    second.listen("x", Log::new("two")).await.unwrap();
    assert!(answered_by(&send(&client, "x", 3).await, "two"));
    second.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    assert!(!network.is_listening("x"));
}

#[tokio::test(start_paused = true)]
async fn back_channel_rules() {
    let network = MemoryNetwork::new();
    let (server, _) = node(&network, "server").await;
    let client = network.transport("client");
    let forth = client.connect("server").await.unwrap();
    forth.listen(Log::new("back"));
    assert!(answered_by(&send(&server, "client", 1).await, "back"));
    // Only the peer the connection goes to reaches the back channel.
    let (other, _) = node(&network, "other").await;
    assert!(matches!(
        send(&other, "client", 2).await,
        Err(TransportError::Unreachable { .. })
    ));
    // A later listen on another connection to the same peer replaces it.
    let again = client.connect("server").await.unwrap();
    again.listen(Log::new("back again"));
    assert!(answered_by(&send(&server, "client", 3).await, "back again"));
    // A listener at the address takes precedence.
    client.listen("client", Log::new("listener")).await.unwrap();
    assert!(answered_by(&send(&server, "client", 4).await, "listener"));
    client.shutdown().await.unwrap();
    assert!(answered_by(&send(&server, "client", 5).await, "back again"));
    // Dropping the connection removes it; closing the replaced one is harmless.
    forth.close().await.unwrap();
    assert!(answered_by(&send(&server, "client", 6).await, "back again"));
    drop(again);
    assert!(send(&server, "client", 7).await.is_err());
    // Listening on a closed connection does nothing.
    let closed = client.connect("server").await.unwrap();
    closed.close().await.unwrap();
    closed.listen(Log::new("ghost"));
    assert!(send(&server, "client", 8).await.is_err());
    // Back channels obey faults like any link.
    let live = client.connect("server").await.unwrap();
    live.listen(Log::new("back"));
    network.cut("server", "client");
    assert!(is_timeout(&send(&server, "client", 9).await));
}

#[tokio::test(start_paused = true)]
async fn stats_count_every_kind() {
    let network = MemoryNetwork::new();
    let (a, _) = node(&network, "a").await;
    let (_b, _) = node(&network, "b").await;
    let connection = a.connect("b").await.unwrap();
    let samples = sample_envelopes();
    for envelope in &samples {
        assert!(connection.invoke(envelope.clone()).await.is_ok());
    }
    let stats = network.stats();
    assert_eq!(stats.delivered, samples.len() as u64);
    assert_eq!(stats.dropped, 0);
    let mut expected = std::collections::BTreeMap::<&str, KindStats>::new();
    for envelope in &samples {
        expected
            .entry(envelope.request.kind())
            .or_default()
            .delivered += 1;
    }
    assert_eq!(stats.by_kind, expected);
    assert_eq!(stats.by_kind.len(), 19, "every message type appears");
}

/// Handlers that own transports: when the network lets go of such a handler,
/// the transport it owns is dropped and unregisters itself, which takes the
/// network's lock. The network must not hold it then (no deadlock).
#[tokio::test(start_paused = true)]
async fn handlers_owning_transports_are_released() {
    struct Owner(#[allow(dead_code)] MemoryTransport);
    #[async_trait]
    impl Handler for Owner {
        async fn handle(&self, _: Envelope) -> Reply {
            Reply::Ack
        }
    }
    let network = MemoryNetwork::new();
    let owned = |name: &'static str| {
        let network = network.clone();
        async move {
            let transport = network.transport(name);
            transport.listen(name, Log::new(name)).await.unwrap();
            Arc::new(Owner(transport))
        }
    };
    let host = network.transport("host");
    let client = network.transport("client");

    // Shutdown releases the handler.
    host.listen("x", owned("one").await).await.unwrap();
    assert!(network.is_listening("one"));
    host.shutdown().await.unwrap();
    assert!(!network.is_listening("one"));

    // A connection's cached route holds the handler until it is refreshed.
    host.listen("x", owned("two").await).await.unwrap();
    let connection = client.connect("x").await.unwrap();
    assert!(connection.invoke(request(1)).await.is_ok());
    host.shutdown().await.unwrap();
    assert!(network.is_listening("two"));
    assert!(connection.invoke(request(2)).await.is_err());
    assert!(!network.is_listening("two"));

    // Listening again replaces (and releases) the handler.
    host.listen("x", owned("three").await).await.unwrap();
    host.listen("x", Log::new("x")).await.unwrap();
    assert!(!network.is_listening("three"));

    // Back channels release theirs when replaced, closed or dropped.
    let first = client.connect("host").await.unwrap();
    first.listen(owned("four").await);
    let second = client.connect("host").await.unwrap();
    second.listen(owned("five").await);
    assert!(!network.is_listening("four"));
    second.close().await.unwrap();
    assert!(!network.is_listening("five"));
    let third = client.connect("host").await.unwrap();
    third.listen(owned("six").await);
    drop(third);
    assert!(!network.is_listening("six"));
    drop(first);
}

/// The transport takes part in tokio's cooperative scheduling: a task that
/// invokes in a loop, answered at once every time, still lets other tasks
/// run (on a current-thread runtime it would otherwise starve them forever).
#[tokio::test(start_paused = true)]
async fn a_loop_of_invokes_lets_other_tasks_run() {
    let network = MemoryNetwork::new();
    let (a, _) = node(&network, "a").await;
    let (_b, _) = node(&network, "b").await;
    let connection = a.connect("b").await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move { flag.store(true, std::sync::atomic::Ordering::SeqCst) });
    let mut invokes = 0u64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) && invokes < 100_000 {
        connection.invoke(request(invokes)).await.unwrap();
        invokes += 1;
    }
    assert!(
        invokes < 1000,
        "the other task ran only after {invokes} invokes"
    );
}

// --- multi-thread stress ---

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_on_a_multi_thread_runtime() {
    let network = MemoryNetwork::with_seed(99);
    network.set_timeout(Duration::from_millis(50));
    network.set_drop_rate(0.1).unwrap();
    network
        .set_delay(Duration::ZERO, Duration::from_millis(2))
        .unwrap();
    let (a, _) = node(&network, "a").await;
    let (_b, log) = node(&network, "b").await;
    let connection = a.connect("b").await.unwrap();
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let connection = connection.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for i in 0..50 {
                if connection.invoke(request(task * 1000 + i)).await.is_ok() {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += task.await.unwrap();
    }
    let stats = network.stats();
    assert_eq!(stats.delivered + stats.dropped, 400);
    assert_eq!(ok as usize, log.count());
    // Each task awaits its requests one by one: its own order holds.
    let ids = log.ids();
    for task in 0..8u64 {
        let mine: Vec<u64> = ids.iter().copied().filter(|id| id / 1000 == task).collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
    }
}

// --- throughput ---

/// Not a timed assertion: prints invokes per second, on one task, with a
/// trivial handler. `cargo test --release -p raft-node --test
/// transport_memory -- --nocapture throughput`
#[tokio::test]
async fn throughput() {
    struct Trivial;
    #[async_trait]
    impl Handler for Trivial {
        async fn handle(&self, _: Envelope) -> Reply {
            Reply::Ack
        }
    }
    let invokes: u32 = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let network = MemoryNetwork::new();
    let server = network.transport("server");
    server.listen("server", Arc::new(Trivial)).await.unwrap();
    let client = network.transport("client");
    let connection = client.connect("server").await.unwrap();
    let heartbeat = sample_envelopes()
        .into_iter()
        .find(|e| e.request.kind() == "heartbeat")
        .unwrap();
    for (label, envelope) in [
        (
            "hello",
            Envelope {
                cluster: 1,
                from: Arc::from("client"),
                request: Request::Hello,
            },
        ),
        ("heartbeat", heartbeat),
    ] {
        let start = std::time::Instant::now();
        for _ in 0..invokes {
            let reply = connection.invoke(envelope.clone()).await;
            assert!(matches!(reply, Ok(Reply::Ack)));
        }
        let elapsed = start.elapsed();
        println!(
            "memory transport throughput ({label}): {invokes} invokes in {elapsed:?}: {:.0} invokes/s",
            f64::from(invokes) / elapsed.as_secs_f64()
        );
    }
    assert_eq!(network.stats().delivered, 2 * u64::from(invokes));
}
