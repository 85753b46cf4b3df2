//! The TCP transport: the conformance kit, handshakes, bad frames,
//! reconnection, timeouts, back-pressure, a 3-node cluster on loopback, and
//! a fuzzed decoder.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use raft_core::{Append, Body, Entry, EntryPayload, Message, VoteRequest};
use raft_node::codec::{decode_envelope, decode_reply, encode_envelope, encode_reply};
use raft_node::example::{kv_get, KvCommand, KvOutput};
use raft_node::testkit::transport::{sample_envelopes, Kit};
use raft_node::transport::tcp::frame::{
    self, decode_close, FrameDecoder, FrameError, FrameKind, Hello, VERSION,
};
use raft_node::transport::tcp::{TcpOptions, TcpTransport};
use raft_node::transport::{
    Connection, Envelope, Handler, Posted, Reply, Request, Transport, TransportError,
};
use raft_node::{Bootstrap, MemoryPersistence, Node, NodeError, Options, Role};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

// --- helpers ---

/// A port nothing listens at right now (bound and released).
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let address = listener.local_addr().expect("local address").to_string();
    drop(listener);
    address
}

fn options(node: &str, cluster: &str) -> TcpOptions {
    let mut options = TcpOptions::new(node, cluster).insecure();
    options.request_timeout = Duration::from_secs(2);
    options.connect_timeout = Duration::from_secs(1);
    options
}

fn transport(options: TcpOptions) -> Arc<TcpTransport> {
    Arc::new(TcpTransport::new(options).expect("valid options"))
}

fn read_envelope(what: &str) -> Envelope {
    Envelope {
        cluster: 1,
        from: Arc::from("test"),
        request: Request::Read(Bytes::from(what.to_owned())),
    }
}

fn command(payload: impl Into<Bytes>) -> Envelope {
    Envelope {
        cluster: 1,
        from: Arc::from("test"),
        request: Request::Command(payload.into()),
    }
}

/// Answers reads with "echo <payload>", commands with their payload, and
/// never answers a command "hang" (counting how many such futures were
/// dropped unanswered).
#[derive(Default)]
struct Echo {
    calls: AtomicUsize,
    hung: AtomicUsize,
    dropped: Arc<AtomicUsize>,
    seen: Mutex<Vec<Envelope>>,
}

struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Handler for Echo {
    async fn handle(&self, envelope: Envelope) -> Reply {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(envelope.clone());
        match envelope.request {
            Request::Command(payload) if payload.as_ref() == b"hang" => {
                self.hung.fetch_add(1, Ordering::SeqCst);
                let _guard = DropCount(self.dropped.clone());
                std::future::pending::<()>().await;
                Reply::Ack
            }
            Request::Command(payload) if payload.starts_with(b"big ") => {
                let n: usize = std::str::from_utf8(&payload[4..]).unwrap().parse().unwrap();
                Reply::Output(Bytes::from(vec![7u8; n]))
            }
            Request::Command(payload) => Reply::Output(payload),
            Request::Read(payload) => Reply::Output(Bytes::from([b"echo ", &payload[..]].concat())),
            _ => Reply::Ack,
        }
    }
}

async fn serve(options: TcpOptions) -> (Arc<TcpTransport>, String, Arc<Echo>) {
    let server = transport(options);
    let echo = Arc::new(Echo::default());
    let address = server
        .listen("127.0.0.1:0", echo.clone())
        .await
        .expect("listen");
    (server, address, echo)
}

async fn expect_echo(connection: &Arc<dyn Connection>, what: &str) {
    let reply = connection.invoke(read_envelope(what)).await;
    assert_eq!(
        reply,
        Ok(Reply::Output(Bytes::from(format!("echo {what}")))),
        "{what}"
    );
}

/// Polls until `condition` holds, for at most `limit`.
async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `futures` in order until all are done (the first polls happen in
/// order, so the requests are queued in order).
async fn join_in_order<T>(futures: Vec<Pin<Box<dyn Future<Output = T> + Send + '_>>>) -> Vec<T> {
    let mut pending: Vec<Option<Pin<Box<dyn Future<Output = T> + Send + '_>>>> =
        futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut remaining = 0;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => remaining += 1,
                }
            }
        }
        if remaining == 0 {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// A raw TCP client that did the handshake by hand.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn connect(address: &str, cluster: &str) -> Raw {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        let hello = Hello {
            version: VERSION,
            max_frame: 1 << 20,
            max_in_flight: 64,
            cluster: cluster.into(),
            node: "raw".into(),
            address: String::new(),
        };
        stream.write_all(&hello.frame()).await.expect("write hello");
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
        };
        let frame = raw.next_frame().await.expect("the listener's hello");
        assert_eq!(frame.kind, FrameKind::Hello);
        let theirs = Hello::decode(&frame.payload).expect("a valid hello");
        assert_eq!(theirs.cluster, cluster);
        raw
    }

    async fn next_frame(&mut self) -> Option<frame::Frame> {
        let decoder = FrameDecoder::new(64 << 20);
        loop {
            if let Some(frame) = decoder.decode(&mut self.buf).expect("valid frames") {
                return Some(frame);
            }
            let read =
                tokio::time::timeout(Duration::from_secs(5), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("the listener answers or closes in time");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads until the listener closes; the reason of its `Close` frame.
    async fn closed_reason(&mut self) -> Option<String> {
        let mut reason = None;
        while let Some(frame) = self.next_frame().await {
            if frame.kind == FrameKind::Close {
                reason = Some(decode_close(&frame.payload));
            }
        }
        reason
    }
}

// --- the conformance kit ---

async fn kit_factory(setup: raft_node::testkit::transport::Setup) -> (Arc<dyn Transport>, String) {
    let address = free_address();
    let mut options = TcpOptions::new(format!("kit-{}", setup.index), "kit").insecure();
    options.request_timeout = setup.request_timeout;
    options.advertise = Some(address.clone());
    let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new(options).unwrap());
    (transport, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_kit_on_a_multi_thread_runtime() {
    Kit::new(kit_factory).run_all().await;
}

#[tokio::test]
async fn conformance_kit_on_a_current_thread_runtime() {
    Kit::new(kit_factory).run_all().await;
}

// --- listening ---

#[tokio::test]
async fn listen_binds_exactly_the_address_given() {
    let (server, address, _) = serve(options("s", "c")).await;
    let (host, port) = address.rsplit_once(':').unwrap();
    assert_eq!(host, "127.0.0.1");
    assert_ne!(port, "0");
    assert_eq!(server.listening(), vec![address.clone()]);
    let other = transport(options("t", "c"));
    let taken = other.listen(&address, Arc::new(Echo::default())).await;
    assert_eq!(taken, Err(TransportError::AddressInUse(address.clone())));
    let bad = other
        .listen("not an address", Arc::new(Echo::default()))
        .await;
    assert!(matches!(bad, Err(TransportError::Other(_))), "{bad:?}");
    server.shutdown().await.unwrap();
    assert!(server.listening().is_empty());
}

#[test]
fn options_are_validated() {
    assert!(TcpOptions::new("a", "b").insecure().validate().is_ok());
    let e = TcpOptions::new("a", "b").validate().unwrap_err();
    assert!(e.to_string().contains("invalid TCP option `tls`"), "{e}");
    let mut o = TcpOptions::new("a", "b").insecure();
    o.max_frame_size = 10;
    let e = TcpTransport::new(o).unwrap_err();
    assert!(e.to_string().contains("max_frame_size"), "{e}");
    let mut o = TcpOptions::new("a", "b").insecure();
    o.reconnect_backoff_max = Duration::from_millis(1);
    assert!(o
        .validate()
        .unwrap_err()
        .to_string()
        .contains("reconnect_backoff_max"));
    let mut o = TcpOptions::new("a", "b").insecure();
    o.max_in_flight = 0;
    assert!(o.validate().is_err());
    let mut o = TcpOptions::new("a", "b").insecure();
    o.request_timeout = Duration::ZERO;
    assert!(o.validate().is_err());
}

// --- handshake ---

/// Records the events logged on this thread (the runtime is
/// current-thread, so every task's too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl tracing::Subscriber for Logs {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(format!("{}", event.metadata().level()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn a_peer_of_another_cluster_is_refused_and_both_sides_log_why() {
    let logs = Logs::default();
    let _default = tracing::subscriber::set_default(logs.clone());
    let (server, address, echo) = serve(options("server-node", "blue")).await;
    let intruder = transport(options("intruder-node", "green"));
    let refused = intruder.connect(&address).await.map(|_| ());
    let Err(TransportError::Unreachable { reason, .. }) = &refused else {
        panic!("expected Unreachable, got {refused:?}");
    };
    // The refused side is told what it sent, nothing of ours.
    assert!(
        reason.contains("cluster mismatch") && reason.contains("\"green\""),
        "{reason}"
    );
    assert!(
        !reason.contains("blue") && !reason.contains("server-node"),
        "the refusal told the intruder our cluster or id: {reason}"
    );
    eventually(Duration::from_secs(2), "the refusal counted", || {
        server.stats().handshakes_refused == 1
    })
    .await;
    assert_eq!(intruder.stats().refused_by_peer, 1);
    assert_eq!(intruder.stats().connect_failures, 1);
    assert_eq!(echo.calls.load(Ordering::SeqCst), 0);
    let logs = logs.0.lock().unwrap().clone();
    let warnings: Vec<&String> = logs
        .iter()
        .filter(|l| l.starts_with("WARN") && l.contains("cluster mismatch"))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("refusing a peer's handshake")
                && l.contains("\"blue\"")
                && l.contains("\"green\"")),
        "the refusing side logs both clusters: {logs:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("refusing a peer's handshake"))
            && warnings
                .iter()
                .any(|l| l.contains("the peer refused the handshake")),
        "both sides log the reason: {logs:#?}"
    );
    // A peer of the right cluster is still welcome.
    let friend = transport(options("friend", "blue"));
    let connection = friend.connect(&address).await.unwrap();
    expect_echo(&connection, "welcome").await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_listener_answering_another_cluster_is_refused_by_the_connecting_side() {
    // A raw listener that answers any hello with a hello of another cluster.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let fake = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let hello = Hello {
            version: VERSION,
            max_frame: 1 << 20,
            max_in_flight: 64,
            cluster: "other".into(),
            node: "fake".into(),
            address: String::new(),
        };
        stream.write_all(&hello.frame()).await.unwrap();
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
        };
        raw.closed_reason().await
    });
    let client = transport(options("client", "mine"));
    let result = client.connect(&address).await.map(|_| ());
    let Err(TransportError::Unreachable { reason, .. }) = result else {
        panic!("expected Unreachable, got {result:?}");
    };
    assert!(reason.contains("cluster mismatch"), "{reason}");
    assert_eq!(client.stats().handshakes_refused, 1);
    // The fake listener was told why.
    let told = fake.await.unwrap().expect("a close frame");
    assert!(told.contains("cluster mismatch"), "{told}");
}

#[tokio::test]
async fn a_handshake_that_never_comes_is_timed_out_on_both_sides() {
    let mut o = options("server", "c");
    o.connect_timeout = Duration::from_millis(200);
    let (server, address, _) = serve(o.clone()).await;
    // A client that connects and says nothing.
    let mut silent = TcpStream::connect(&address).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the listener closes a silent connection");
    assert_eq!(server.stats().handshake_timeouts, 1);
    // A listener that accepts and never answers the handshake.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_address = mute.local_addr().unwrap().to_string();
    let holder = tokio::spawn(async move {
        let (stream, _) = mute.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(stream);
    });
    let client = transport(o);
    let start = Instant::now();
    let result = client.connect(&mute_address).await.map(|_| ());
    assert!(
        matches!(&result, Err(TransportError::Unreachable { reason, .. }) if reason.contains("within 200 ms")),
        "{result:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    holder.abort();
    server.shutdown().await.unwrap();
}

// --- bad frames ---

#[tokio::test]
async fn bad_frames_close_their_connection_only() {
    let (server, address, echo) = serve(options("server", "c")).await;
    let client = transport(options("client", "c"));
    let good = client.connect(&address).await.unwrap();
    expect_echo(&good, "before").await;

    // (bytes sent after the handshake, counter, what the reason says)
    let mut malformed_request = BytesMut::new();
    malformed_request.extend_from_slice(&frame::encode_frame(
        FrameKind::Request,
        1,
        b"\x01\x02garbage",
    ));
    let oversized = {
        let mut b = BytesMut::new();
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&[2u8; 32]);
        b
    };
    let unknown = frame::encode_frame(FrameKind::Request, 9, b"");
    let mut unknown = BytesMut::from(&unknown[..]);
    unknown[4] = 0xEE;
    let too_short = BytesMut::from(&[3u8, 0, 0, 0, 2, 0, 0][..]);
    let second_hello = BytesMut::from(
        &Hello {
            version: VERSION,
            max_frame: 1 << 20,
            max_in_flight: 64,
            cluster: "c".into(),
            node: "again".into(),
            address: String::new(),
        }
        .frame()[..],
    );
    let bad_reply = BytesMut::from(&frame::encode_frame(FrameKind::Reply, 1, &[42])[..]);
    let cases: Vec<(&str, BytesMut, &str)> = vec![
        ("malformed request", malformed_request, "bad request"),
        (
            "oversized frame",
            oversized,
            "exceeds the maximum frame size",
        ),
        ("unknown kind", unknown, "unknown frame kind 238"),
        ("frame too short", too_short, "shorter than"),
        ("second handshake", second_hello, "second handshake"),
        ("malformed reply", bad_reply, "bad reply"),
    ];
    for (i, (what, bytes, expected)) in cases.into_iter().enumerate() {
        let before = server.stats();
        let mut raw = Raw::connect(&address, "c").await;
        raw.stream.write_all(&bytes).await.unwrap();
        let reason = raw.closed_reason().await;
        assert!(
            reason.as_deref().is_some_and(|r| r.contains(expected)),
            "{what}: the listener closes the connection saying why, got {reason:?}"
        );
        let after = server.stats();
        let bumped = match what {
            "oversized frame" => after.oversized_frames - before.oversized_frames,
            "unknown kind" => after.unknown_frames - before.unknown_frames,
            _ => after.malformed_frames - before.malformed_frames,
        };
        assert_eq!(bumped, 1, "{what}: counted once");
        // The listener and the other connection keep serving.
        expect_echo(&good, &format!("after case {i}")).await;
        let fresh = client.connect(&address).await.unwrap();
        expect_echo(&fresh, &format!("new connection after case {i}")).await;
        fresh.close().await.unwrap();
    }
    let stats = server.stats();
    assert_eq!(stats.oversized_frames, 1);
    assert_eq!(stats.unknown_frames, 1);
    assert_eq!(stats.malformed_frames, 4);
    assert_eq!(echo.calls.load(Ordering::SeqCst), 13);

    // Bad bytes instead of a handshake: counted the same way.
    for (bytes, counter) in [
        (
            frame::encode_frame(FrameKind::Request, 1, b"x").to_vec(),
            "malformed",
        ),
        (
            frame::encode_frame(FrameKind::Hello, 0, b"RAFT\x01").to_vec(),
            "malformed",
        ),
        (vec![0xff, 0xff, 0xff, 0x7f, 1], "oversized"),
        (vec![20, 0, 0, 0, 0], "unknown"),
    ] {
        let before = server.stats();
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
        };
        let reason = raw.closed_reason().await;
        assert!(reason.is_some(), "told why ({counter})");
        let after = server.stats();
        let bumped = match counter {
            "oversized" => after.oversized_frames - before.oversized_frames,
            "unknown" => after.unknown_frames - before.unknown_frames,
            _ => after.malformed_frames - before.malformed_frames,
        };
        assert_eq!(bumped, 1, "{counter} handshake counted");
    }
    expect_echo(&good, "at the end").await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_peer_sending_a_bad_reply_fails_the_waiting_request() {
    // A fake listener: handshake, then a garbage reply to the first request.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
        };
        let hello = raw.next_frame().await.unwrap();
        assert_eq!(hello.kind, FrameKind::Hello);
        let ours = Hello {
            version: VERSION,
            max_frame: 1 << 20,
            max_in_flight: 64,
            cluster: "c".into(),
            node: "fake".into(),
            address: String::new(),
        };
        raw.stream.write_all(&ours.frame()).await.unwrap();
        let request = raw.next_frame().await.unwrap();
        assert_eq!(request.kind, FrameKind::Request);
        let garbage = frame::encode_frame(FrameKind::Reply, request.id, &[9, 9, 9]);
        raw.stream.write_all(&garbage).await.unwrap();
        raw.closed_reason().await
    });
    let client = transport(options("client", "c"));
    let connection = client.connect(&address).await.unwrap();
    let result = connection.invoke(read_envelope("x")).await;
    assert!(
        matches!(&result, Err(TransportError::Lost { reason, .. }) if reason.contains("bad reply")),
        "{result:?}"
    );
    assert_eq!(client.stats().malformed_frames, 1);
}

// --- sizes ---

#[tokio::test]
async fn requests_and_replies_too_large_for_the_peer_fail_without_closing() {
    let mut small = options("server", "c");
    small.max_frame_size = 64 * 1024;
    let (server, address, echo) = serve(small).await;
    let client = transport(options("client", "c"));
    let connection = client.connect(&address).await.unwrap();
    let big = connection.invoke(command(vec![1u8; 100 * 1024])).await;
    assert!(
        matches!(&big, Err(TransportError::TooLarge { bytes, max_bytes: 65536 }) if *bytes > 100 * 1024),
        "{big:?}"
    );
    assert!(big.unwrap_err().to_string().contains("maximum frame size"));
    let fits = connection.invoke(command(vec![1u8; 60 * 1024])).await;
    assert_eq!(fits, Ok(Reply::Output(Bytes::from(vec![1u8; 60 * 1024]))));
    // The client accepts 16 MiB: a 1 MiB reply comes back whole.
    let reply = connection.invoke(command("big 1048576")).await;
    assert_eq!(reply, Ok(Reply::Output(Bytes::from(vec![7u8; 1 << 20]))));
    // A client with a small maximum gets an error reply instead.
    let mut tiny = options("tiny", "c");
    tiny.max_frame_size = 4096;
    let tiny = transport(tiny);
    let tiny_connection = tiny.connect(&address).await.unwrap();
    let reply = tiny_connection.invoke(command("big 10000")).await;
    assert!(
        matches!(&reply, Ok(Reply::Error(m)) if m.contains("exceeds the peer's maximum frame size")),
        "{reply:?}"
    );
    expect_echo(&tiny_connection, "still open").await;
    expect_echo(&connection, "still open").await;
    assert_eq!(echo.calls.load(Ordering::SeqCst), 5);
    assert_eq!(server.stats().oversized_frames, 0);
    server.shutdown().await.unwrap();
}

// --- reconnection ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reconnects_after_the_listener_restarts_on_the_same_port() {
    let (first, address, _) = serve(options("first", "c")).await;
    let mut client_options = options("client", "c");
    client_options.reconnect_backoff_min = Duration::from_millis(10);
    client_options.reconnect_backoff_max = Duration::from_millis(200);
    let client = transport(client_options);
    let connection = client.connect(&address).await.unwrap();
    expect_echo(&connection, "before").await;
    first.shutdown().await.unwrap();
    drop(first);
    // Down: requests fail (not hang) while nothing listens.
    for _ in 0..3 {
        let result = connection.invoke(read_envelope("while down")).await;
        assert!(
            matches!(
                result,
                Err(TransportError::Unreachable { .. } | TransportError::Lost { .. })
            ),
            "{result:?}"
        );
    }
    // The same port again, a new process-like transport.
    let second = transport(options("second", "c"));
    let echo = Arc::new(Echo::default());
    second.listen(&address, echo.clone()).await.unwrap();
    let start = Instant::now();
    loop {
        match connection.invoke(read_envelope("after")).await {
            Ok(reply) => {
                assert_eq!(reply, Reply::Output(Bytes::from("echo after")));
                break;
            }
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(3),
                    "never reconnected: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let stats = client.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert!(stats.connect_failures >= 1, "{stats:?}");
    // Pipelined requests after the reconnection arrive in order.
    let calls: Vec<Pin<Box<dyn Future<Output = _> + Send + '_>>> = (0..200)
        .map(|i| {
            let c = connection.clone();
            Box::pin(async move { c.invoke(command(format!("{i}"))).await })
                as Pin<Box<dyn Future<Output = _> + Send>>
        })
        .collect();
    let replies = join_in_order(calls).await;
    assert!(replies.iter().all(Result::is_ok));
    let seen = echo.seen.lock().unwrap().clone();
    let commands: Vec<String> = seen
        .iter()
        .filter_map(|e| match &e.request {
            Request::Command(p) => Some(String::from_utf8(p.to_vec()).unwrap()),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    assert_eq!(commands, expected);
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_in_flight_when_the_connection_breaks_fail_and_the_next_one_reconnects() {
    let (server, address, echo) = serve(options("server", "c")).await;
    let client = transport(options("client", "c"));
    let connection = client.connect(&address).await.unwrap();
    let stuck = {
        let c = connection.clone();
        tokio::spawn(async move { c.invoke(command("hang")).await })
    };
    eventually(Duration::from_secs(2), "the request arrived", || {
        echo.hung.load(Ordering::SeqCst) == 1
    })
    .await;
    // The listener restarts in place (same transport, same port).
    server.shutdown().await.unwrap();
    let result = stuck.await.unwrap();
    assert!(
        matches!(&result, Err(TransportError::Lost { reason, .. }) if reason.contains("shutting down")),
        "{result:?}"
    );
    server.listen(&address, echo.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    expect_echo(&connection, "reconnected").await;
    assert_eq!(client.stats().reconnects, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_peer_that_dies_mid_request_fails_the_request_at_once_and_comes_back() {
    // A fake peer: handshake, read one request, then vanish (as a killed
    // process would: the socket is dropped without a Close frame).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let fake = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
        };
        raw.next_frame().await.unwrap();
        let ours = Hello {
            version: VERSION,
            max_frame: 1 << 20,
            max_in_flight: 64,
            cluster: "c".into(),
            node: "doomed".into(),
            address: String::new(),
        };
        raw.stream.write_all(&ours.frame()).await.unwrap();
        let request = raw.next_frame().await.unwrap();
        assert_eq!(request.kind, FrameKind::Request);
        drop(raw);
        drop(listener);
    });
    let client = transport(options("client", "c"));
    let connection = client.connect_to(&address).await.unwrap();
    assert!(connection.is_connected());
    assert_eq!(connection.address(), address);
    let start = Instant::now();
    let result = connection.invoke(read_envelope("doomed")).await;
    assert!(
        matches!(&result, Err(TransportError::Lost { reason, .. }) if reason.contains("connection lost")),
        "{result:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "failed at once, not at the timeout"
    );
    fake.await.unwrap();
    assert!(!connection.is_connected());
    // The peer comes back at the same address.
    let revived = transport(options("revived", "c"));
    let echo = Arc::new(Echo::default());
    revived.listen(&address, echo).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reply = connection.invoke(read_envelope("back")).await;
    assert_eq!(reply, Ok(Reply::Output(Bytes::from("echo back"))));
    assert!(connection.is_connected());
    revived.shutdown().await.unwrap();
    // Shutting the client transport down closes its connections.
    client.shutdown().await.unwrap();
    let closed = connection.invoke(read_envelope("after shutdown")).await;
    assert!(
        matches!(closed, Err(TransportError::Closed { .. })),
        "{closed:?}"
    );
}

#[tokio::test]
async fn failed_attempts_back_off() {
    let address = free_address();
    let mut o = options("client", "c");
    o.reconnect_backoff_min = Duration::from_millis(100);
    o.reconnect_backoff_max = Duration::from_millis(400);
    o.request_timeout = Duration::from_millis(50);
    let (server, _, _) = {
        let server = transport(options("server", "c"));
        let echo = Arc::new(Echo::default());
        server.listen(&address, echo.clone()).await.unwrap();
        (server, address.clone(), echo)
    };
    let client = transport(o);
    let connection = client.connect(&address).await.unwrap();
    expect_echo(&connection, "up").await;
    server.shutdown().await.unwrap();
    // Hammer the connection for a second: attempts are spaced out by the
    // backoff (100, 200, 400, 400 ms), the rest fail fast.
    let start = Instant::now();
    let mut failures = 0;
    while start.elapsed() < Duration::from_secs(1) {
        let result = connection.invoke(read_envelope("down")).await;
        assert!(result.is_err());
        failures += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let attempts = client.stats().connect_failures;
    assert!(
        failures > 50,
        "requests fail fast during the backoff: {failures}"
    );
    assert!(
        (2..=6).contains(&attempts),
        "{attempts} connection attempts in a second with backoff from 100 ms to 400 ms"
    );
}

// --- timeouts ---

#[tokio::test]
async fn a_request_never_answered_times_out_and_the_listener_drops_its_handler() {
    let (server, address, echo) = serve(options("server", "c")).await;
    let mut o = options("client", "c");
    o.request_timeout = Duration::from_millis(300);
    let client = transport(o);
    let connection = client.connect(&address).await.unwrap();
    let start = Instant::now();
    let result = connection.invoke(command("hang")).await;
    let elapsed = start.elapsed();
    assert!(
        matches!(
            result,
            Err(TransportError::Timeout {
                timeout_ms: 300,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(290) && elapsed < Duration::from_secs(1),
        "{elapsed:?}"
    );
    // The cancel frame made the listener drop the handler's future.
    eventually(Duration::from_secs(1), "the handler dropped", || {
        echo.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(client.stats().timeouts, 1);
    expect_echo(&connection, "after the timeout").await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_listener_gives_up_on_a_handler_after_the_handler_timeout() {
    let mut o = options("server", "c");
    o.handler_timeout = Duration::from_millis(200);
    let (server, address, echo) = serve(o).await;
    let client = transport(options("client", "c"));
    let connection = client.connect(&address).await.unwrap();
    let start = Instant::now();
    let result = connection.invoke(command("hang")).await;
    assert!(
        matches!(&result, Ok(Reply::Error(m)) if m.contains("did not answer within 200 ms")),
        "{result:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(echo.dropped.load(Ordering::SeqCst), 1);
    server.shutdown().await.unwrap();
}

// --- back-pressure ---

#[tokio::test]
async fn a_peer_that_never_answers_gets_a_bounded_window_and_queue() {
    let (server, address, echo) = serve(options("server", "c")).await;
    let mut o = options("client", "c");
    o.max_in_flight = 4;
    o.queue_capacity = 8;
    o.request_timeout = Duration::from_millis(600);
    let client = transport(o);
    let connection = client.connect(&address).await.unwrap();
    let hung: Vec<Pin<Box<dyn Future<Output = _> + Send + '_>>> = (0..20)
        .map(|_| {
            Box::pin(connection.invoke(command("hang")))
                as Pin<Box<dyn Future<Output = Result<Reply, TransportError>> + Send>>
        })
        .collect();
    let observe = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Only the window was written; the rest waits or was refused.
        (echo.calls.load(Ordering::SeqCst), client.stats())
    };
    let (results, (written, stats)) = tokio::join!(join_in_order(hung), observe);
    assert_eq!(written, 4, "only max_in_flight requests reach the peer");
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(TransportError::Other(m)) if m.contains("full")))
        .count();
    let timed_out = results
        .iter()
        .filter(|r| matches!(r, Err(TransportError::Timeout { .. })))
        .count();
    // The queue holds 8 besides the window (4 of them taken into the window
    // already or not when the last invokes start): the rest fail at once.
    assert!((8..=12).contains(&refused), "{results:?}");
    assert_eq!(stats.queue_full, refused as u64);
    assert_eq!(refused + timed_out, 20, "{results:?}");
    // The refused ones are the last ones (in order of first poll).
    assert!(results[20 - refused..]
        .iter()
        .all(|r| matches!(r, Err(TransportError::Other(_)))));
    // Memory does not grow: rounds of the same never exceed the bounds.
    for round in 0..3 {
        let before = echo.calls.load(Ordering::SeqCst);
        let calls: Vec<Pin<Box<dyn Future<Output = _> + Send + '_>>> = (0..50)
            .map(|_| {
                Box::pin(connection.invoke(command("hang")))
                    as Pin<Box<dyn Future<Output = Result<Reply, TransportError>> + Send>>
            })
            .collect();
        let results = join_in_order(calls).await;
        assert!(results.iter().all(Result::is_err));
        let delivered = echo.calls.load(Ordering::SeqCst) - before;
        assert!(
            delivered <= 4 + 8,
            "round {round}: {delivered} requests reached a peer that answers none"
        );
    }
    // Once the peer answers again, so does the connection.
    expect_echo(&connection, "alive").await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_listener_runs_a_bounded_number_of_handlers_per_connection() {
    let mut o = options("server", "c");
    o.max_in_flight = 3;
    o.handler_timeout = Duration::from_millis(600);
    let (server, address, echo) = serve(o).await;
    // A well-behaved client keeps its window to the listener's limit (told
    // in the handshake): its cancels get through, nothing blocks.
    let mut client_options = options("client", "c");
    client_options.request_timeout = Duration::from_millis(400);
    let client = transport(client_options);
    let connection = client.connect(&address).await.unwrap();
    let calls: Vec<Pin<Box<dyn Future<Output = _> + Send + '_>>> = (0..10)
        .map(|_| {
            Box::pin(connection.invoke(command("hang")))
                as Pin<Box<dyn Future<Output = Result<Reply, TransportError>> + Send>>
        })
        .collect();
    let observe = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        echo.calls.load(Ordering::SeqCst)
    };
    let (results, running) = tokio::join!(join_in_order(calls), observe);
    assert_eq!(running, 3, "the window is the listener's limit");
    assert!(results
        .iter()
        .all(|r| matches!(r, Err(TransportError::Timeout { .. }))));
    expect_echo(&connection, "right after the timeouts").await;
    eventually(
        Duration::from_secs(1),
        "the listener dropped the handlers",
        || echo.dropped.load(Ordering::SeqCst) == 3,
    )
    .await;

    // A client ignoring the limit: the listener runs 3 handlers, then stops
    // reading that connection until one ends (here: the handler timeout).
    let before = echo.hung.load(Ordering::SeqCst);
    let mut raw = Raw::connect(&address, "c").await;
    let mut flood = Vec::new();
    for id in 0..10u64 {
        flood.extend_from_slice(&frame::request_frame(id, &command("hang")).0);
    }
    raw.stream.write_all(&flood).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(echo.hung.load(Ordering::SeqCst) - before, 3);
    // Other connections are not held up.
    expect_echo(&connection, "beside a flooding connection").await;
    // After the handler timeout, the next ones run; the first three got an
    // error reply.
    let mut errors = 0;
    while errors < 3 {
        let frame = raw.next_frame().await.expect("replies");
        assert_eq!(frame.kind, FrameKind::Reply);
        let reply = decode_reply(&frame.payload).unwrap();
        assert!(
            matches!(&reply, Reply::Error(m) if m.contains("did not answer")),
            "{reply:?}"
        );
        errors += 1;
    }
    eventually(Duration::from_secs(2), "the next handlers started", || {
        echo.hung.load(Ordering::SeqCst) - before == 6
    })
    .await;
    server.shutdown().await.unwrap();
}

// --- a cluster ---

fn set(key: &str, value: &str) -> Bytes {
    KvCommand::Set {
        key: key.to_owned().into(),
        value: value.to_owned().into(),
    }
    .encode()
}

async fn get(node: &Node, key: &str) -> Option<Bytes> {
    match KvOutput::decode(&node.read(kv_get(key.as_bytes())).await.expect("read")) {
        Some(KvOutput::Value(v)) => v,
        other => panic!("unexpected read output {other:?}"),
    }
}

async fn leader_of(nodes: &[Node]) -> usize {
    let start = Instant::now();
    loop {
        let leaders: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.role() == Role::Leader)
            .map(|(i, _)| i)
            .collect();
        if leaders.len() == 1 {
            return leaders[0];
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no leader elected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_over_tcp_elects_replicates_and_survives_its_leader() {
    let ids = ["n1", "n2", "n3"];
    let members: Vec<(String, String)> = ids
        .iter()
        .map(|id| (id.to_string(), free_address()))
        .collect();
    let mut nodes = Vec::new();
    let mut transports = Vec::new();
    for (id, address) in &members {
        let t = transport(TcpOptions::new(id.clone(), "tcp-cluster").insecure());
        transports.push(t.clone());
        let node = Node::new(Options {
            id: Some(id.clone()),
            cluster: Some("tcp-cluster".into()),
            address: Some(address.clone()),
            transport: Some(t),
            persistence: Some(Arc::new(MemoryPersistence::new())),
            bootstrap: Bootstrap::Static(members.clone()),
            ..Options::default()
        })
        .await
        .expect("node starts");
        assert_eq!(node.address(), address);
        nodes.push(node);
    }
    let leader = leader_of(&nodes).await;
    // Writes through every node: followers forward to the leader over TCP.
    for (i, node) in nodes.iter().enumerate() {
        node.command(set(&format!("k{i}"), &format!("via {}", node.id())))
            .await
            .expect("write");
    }
    for node in &nodes {
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                get(node, &format!("k{i}")).await,
                Some(Bytes::from(format!("via {id}")))
            );
        }
    }
    for t in &transports {
        let stats = t.stats();
        assert!(
            stats.requests_sent > 0 && stats.requests_received > 0,
            "{stats:?}"
        );
        assert_eq!(
            stats.malformed_frames + stats.oversized_frames + stats.unknown_frames,
            0
        );
    }
    // Kill the leader.
    nodes[leader].shutdown().await.expect("shutdown");
    let survivors: Vec<Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, n)| n.clone())
        .collect();
    let next = leader_of(&survivors).await;
    assert_ne!(survivors[next].id(), nodes[leader].id());
    for node in &survivors {
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                get(node, &format!("k{i}")).await,
                Some(Bytes::from(format!("via {id}"))),
                "at {}",
                node.id()
            );
        }
    }
    // Still writable with two of three, through the follower too.
    for node in &survivors {
        node.command(set("after", node.id()))
            .await
            .expect("write after failover");
    }
    assert!(get(&survivors[next], "after").await.is_some());
    for node in &survivors {
        node.shutdown().await.expect("shutdown");
    }
}

// --- entry sizes ---

/// An append of one command entry of `bytes` bytes from `from`, with every
/// number at its widest.
fn append_of(from: &str, bytes: usize) -> Envelope {
    Envelope {
        cluster: u64::MAX,
        from: Arc::from(from),
        request: Request::Raft(Message {
            cluster: u64::MAX,
            from: u64::MAX,
            to: u64::MAX,
            term: u64::MAX,
            body: Body::Append(Append {
                prev_index: u64::MAX,
                prev_term: u64::MAX,
                entries: vec![Entry {
                    index: u64::MAX,
                    term: u64::MAX,
                    payload: EntryPayload::Command(Bytes::from(vec![7u8; bytes])),
                }],
                commit: u64::MAX,
                round: u64::MAX,
            }),
        }),
    }
}

#[test]
fn the_largest_entry_fills_a_frame_exactly() {
    use raft_node::transport::tcp::{
        max_entry_bytes, DEFAULT_MAX_ENTRY_BYTES, DEFAULT_MAX_FRAME_SIZE, MAX_SOCKET_ADDRESS_BYTES,
    };
    // The longest address a node sends: its socket address, as printed.
    let longest = std::net::SocketAddrV6::new(
        std::net::Ipv6Addr::new(
            0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
        ),
        65535,
        0,
        u32::MAX,
    )
    .to_string();
    assert_eq!(longest.len(), MAX_SOCKET_ADDRESS_BYTES, "{longest}");
    for max_frame in [64 * 1024, DEFAULT_MAX_FRAME_SIZE] {
        let max = max_entry_bytes(max_frame);
        assert_eq!(
            frame::request_frame(u64::MAX, &append_of(&longest, max)).1,
            max_frame
        );
        assert_eq!(
            frame::request_frame(u64::MAX, &append_of(&longest, max + 1)).1,
            max_frame + 1
        );
        // A forwarded command of that size fits too.
        let forwarded = Envelope {
            cluster: u64::MAX,
            from: Arc::from(longest.as_str()),
            request: Request::Command(Bytes::from(vec![7u8; max])),
        };
        assert!(frame::request_frame(u64::MAX, &forwarded).1 < max_frame);
    }
    assert_eq!(DEFAULT_MAX_ENTRY_BYTES, 16_777_046);
    assert_eq!(
        TcpOptions::new("a", "c").max_entry_bytes(),
        DEFAULT_MAX_ENTRY_BYTES
    );
}

/// A `KvCommand::Set` of exactly `bytes` bytes (at least 12).
fn set_of_size(key: &str, bytes: usize) -> Bytes {
    let value = vec![b'v'; bytes - 9 - key.len()];
    let command = KvCommand::Set {
        key: key.to_owned().into(),
        value: value.into(),
    }
    .encode();
    assert_eq!(command.len(), bytes);
    command
}

/// Nodes on TCP transports with these maximum frame sizes, all members of
/// one cluster from the start.
async fn cluster_with_frames(name: &str, frames: &[usize]) -> Vec<Node> {
    let members: Vec<(String, String)> = (0..frames.len())
        .map(|i| (format!("n{}", i + 1), free_address()))
        .collect();
    let mut nodes = Vec::new();
    for ((id, address), &max_frame) in members.iter().zip(frames) {
        let mut options = TcpOptions::new(id.clone(), name).insecure();
        options.max_frame_size = max_frame;
        nodes.push(
            Node::new(Options {
                id: Some(id.clone()),
                cluster: Some(name.into()),
                address: Some(address.clone()),
                transport: Some(transport(options)),
                persistence: Some(Arc::new(MemoryPersistence::new())),
                bootstrap: Bootstrap::Static(members.clone()),
                command_timeout: Duration::from_secs(3),
                ..Options::default()
            })
            .await
            .expect("node starts"),
        );
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_its_peers_cannot_carry_is_refused_before_the_log_and_the_largest_replicates() {
    let max_frame = 2 << 20;
    let nodes = cluster_with_frames("entry-sizes", &[max_frame; 3]).await;
    let leader = leader_of(&nodes).await;
    let follower = (leader + 1) % 3;
    let max = raft_node::transport::tcp::max_entry_bytes(max_frame);
    assert_eq!(nodes[0].max_entry_bytes(), Some(max));
    nodes[leader]
        .command(set("before", "1"))
        .await
        .expect("write");
    // Positions in the metrics are refreshed once per tick (10 ms).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let last = nodes[leader].metrics().last_index;
    // Refused on the leader and on a follower (before forwarding), naming
    // both sizes; nothing reaches the log.
    for at in [leader, follower] {
        let refused = nodes[at]
            .command_without_session(set_of_size("big", max + 1))
            .await;
        assert_eq!(
            refused,
            Err(NodeError::EntryTooLarge {
                bytes: max + 1,
                max_bytes: max
            })
        );
        let text = refused.unwrap_err().to_string();
        assert!(
            text.contains(&(max + 1).to_string()) && text.contains(&max.to_string()),
            "{text}"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(nodes[leader].metrics().last_index, last);
    // The largest command goes through a follower (forwarded in a frame)
    // and reaches every node; writes go on.
    nodes[follower]
        .command_without_session(set_of_size("big", max))
        .await
        .expect("the largest command commits");
    nodes[leader]
        .command(set("after", "2"))
        .await
        .expect("write");
    for node in &nodes {
        assert_eq!(get(node, "big").await.map(|v| v.len()), Some(max - 12));
        assert_eq!(get(node, "after").await, Some(Bytes::from("2")));
        assert_eq!(node.metrics().messages_oversized, 0);
    }
    for node in &nodes {
        node.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_send_an_entry_to_a_peer_says_so() {
    // n2 accepts smaller frames than n1 (a misconfiguration): n1 takes a
    // command that n2 cannot be sent.
    let nodes = cluster_with_frames("small-peer", &[2 << 20, 1 << 20]).await;
    let leader = leader_of(&nodes).await;
    if leader != 0 {
        nodes[leader]
            .transfer_leadership("n1")
            .await
            .expect("transfer");
        eventually(Duration::from_secs(5), "n1 leads", || {
            nodes[0].role() == Role::Leader
        })
        .await;
    }
    let mut events = nodes[0].subscribe();
    let stuck = nodes[0].command(set_of_size("big", 1536 * 1024)).await;
    assert!(
        matches!(stuck, Err(NodeError::Timeout { .. })),
        "without n2 the entry cannot commit: {stuck:?}"
    );
    assert!(nodes[0].metrics().messages_oversized > 0);
    let warning = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.next().await {
                Some(raft_node::Event::Warning(w)) if w.contains("largest frame") => return w,
                Some(_) => continue,
                None => panic!("the node went away"),
            }
        }
    })
    .await
    .expect("a warning event");
    assert!(
        warning.contains("n2") && warning.contains("1048576"),
        "{warning}"
    );
    // Raft sends the append again and again; it is warned about once.
    let again = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match events.next().await {
                Some(raft_node::Event::Warning(w)) if w.contains("largest frame") => return w,
                Some(_) => continue,
                None => panic!("the node went away"),
            }
        }
    })
    .await;
    assert!(again.is_err(), "warned twice: {again:?}");
    for node in &nodes {
        node.shutdown().await.expect("shutdown");
    }
}

// --- fuzzing the decoders ---

fn random_bytes(rng: &mut SmallRng, max: usize) -> Vec<u8> {
    let n = rng.random_range(0..=max);
    (0..n).map(|_| rng.random::<u8>()).collect()
}

fn random_message(rng: &mut SmallRng) -> Message {
    let body = match rng.random_range(0..4) {
        0 => Body::Append(Append {
            prev_index: rng.random(),
            prev_term: rng.random(),
            commit: rng.random(),
            round: rng.random(),
            entries: (0..rng.random_range(0..8))
                .map(|i| Entry {
                    term: rng.random(),
                    index: i,
                    payload: if rng.random() {
                        EntryPayload::Command(Bytes::from(random_bytes(rng, 100)))
                    } else {
                        EntryPayload::Blank
                    },
                })
                .collect(),
        }),
        1 => Body::Heartbeat {
            commit: rng.random(),
            round: rng.random(),
        },
        2 => Body::Vote(VoteRequest {
            pre: rng.random(),
            last_index: rng.random(),
            last_term: rng.random(),
            transfer: rng.random(),
        }),
        _ => Body::ReadIndex { id: rng.random() },
    };
    Message {
        cluster: rng.random(),
        from: rng.random(),
        to: rng.random(),
        term: rng.random(),
        body,
    }
}

fn random_envelope(rng: &mut SmallRng) -> Envelope {
    let text = |rng: &mut SmallRng| {
        let n = rng.random_range(0..20);
        (0..n)
            .map(|_| char::from_u32(rng.random_range(32..0x2FFF)).unwrap_or('?'))
            .collect::<String>()
    };
    let request = match rng.random_range(0..6) {
        0 => Request::Raft(random_message(rng)),
        1 => Request::Command(Bytes::from(random_bytes(rng, 200))),
        2 => Request::Read(Bytes::from(random_bytes(rng, 50))),
        3 => Request::Join { address: text(rng) },
        4 => Request::Leave { id: text(rng) },
        _ => Request::Hello,
    };
    Envelope {
        cluster: rng.random(),
        from: Arc::from(text(rng)),
        request,
    }
}

/// Feeds `bytes` to a frame decoder and every frame's payload to every
/// payload decoder; the frames decoded and whether the stream was refused.
fn feed(decoder: &FrameDecoder, bytes: &[u8]) -> (Vec<frame::Frame>, Option<FrameError>) {
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    loop {
        let _ = decoder.missing(&buf);
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => {
                let _ = decode_envelope(&frame.payload);
                let _ = decode_reply(&frame.payload);
                let _ = Hello::decode(&frame.payload);
                let _ = decode_close(&frame.payload);
                frames.push(frame);
            }
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

#[test]
fn fuzz_the_frame_decoder_and_the_codec() {
    let mut rng = SmallRng::seed_from_u64(0x7c9_f00d);
    let decoder = FrameDecoder::new(1 << 20);
    let mut inputs = 0u64;

    // 1. Random bytes: 100,000 streams, some with a plausible head.
    for i in 0..100_000 {
        let mut bytes = random_bytes(&mut rng, 300);
        if i % 2 == 0 && bytes.len() >= 5 {
            let length = rng.random_range(0..(bytes.len() as u32 + 16));
            bytes[..4].copy_from_slice(&length.to_le_bytes());
            bytes[4] = rng.random_range(0..8);
        }
        feed(&decoder, &bytes);
        inputs += 1;
    }

    // 2. Random payloads straight into the codec: 100,000 of each, with a
    // valid first tag half the time so that decoding goes deeper.
    for i in 0..100_000 {
        let mut envelope = random_bytes(&mut rng, 200);
        if i % 2 == 0 && envelope.len() > 12 {
            let from_len = rng.random_range(0..4u32);
            envelope[8..12].copy_from_slice(&from_len.to_le_bytes());
            let tag = 12 + from_len as usize;
            if tag < envelope.len() {
                envelope[tag] = rng.random_range(0..6);
            }
        }
        let _ = decode_envelope(&envelope);
        let mut reply = random_bytes(&mut rng, 40);
        if let Some(first) = reply.first_mut() {
            *first %= 5;
        }
        let _ = decode_reply(&reply);
        let _ = Hello::decode(&reply);
        inputs += 3;
    }

    // 3. Valid frames round-trip: the samples and 20,000 random envelopes,
    // one stream, cut at random places.
    let mut valid: Vec<(Envelope, Bytes)> = sample_envelopes()
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let frame = frame::request_frame(i as u64, &e).0;
            (e, frame)
        })
        .collect();
    for i in 0..20_000 {
        let e = random_envelope(&mut rng);
        let frame = frame::request_frame(1000 + i, &e).0;
        valid.push((e, frame));
    }
    let mut stream = Vec::new();
    for (_, frame) in &valid {
        stream.extend_from_slice(frame);
    }
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let step = rng.random_range(1..70_000).min(stream.len() - at);
        buf.extend_from_slice(&stream[at..at + step]);
        at += step;
        while let Some(frame) = decoder.decode(&mut buf).expect("valid frames decode") {
            decoded.push(frame);
        }
    }
    assert!(buf.is_empty());
    assert_eq!(decoded.len(), valid.len());
    for (frame, (envelope, _)) in decoded.iter().zip(&valid) {
        assert_eq!(frame.kind, FrameKind::Request);
        assert_eq!(
            &decode_envelope(&frame.payload).expect("round trip"),
            envelope
        );
        assert_eq!(
            decode_envelope(&encode_envelope(envelope)).as_ref(),
            Ok(envelope)
        );
    }
    for reply in [
        Reply::Ack,
        Reply::Output(Bytes::from_static(b"out")),
        Reply::Hello {
            id: "n".into(),
            cluster: "c".into(),
            empty: false,
            client_address: "h:1".into(),
        },
        Reply::Error("e".into()),
    ] {
        let (frame, _) = frame::reply_frame(5, &reply);
        let (frames, error) = feed(&decoder, &frame);
        assert_eq!(error, None);
        assert_eq!(decode_reply(&frames[0].payload), Ok(reply.clone()));
        assert_eq!(decode_reply(&encode_reply(&reply)), Ok(reply));
    }
    inputs += valid.len() as u64;

    // 4. Mutations of valid frames: bit flips, truncations, length lies,
    // junk appended. Big samples get fewer mutations.
    let mut flips = 0u64;
    let mut truncations = 0u64;
    let mut lies = 0u64;
    for (index, (_, frame)) in valid.iter().enumerate().take(2_000) {
        let rounds = if frame.len() > 10_000 { 20 } else { 60 };
        for _ in 0..rounds {
            // Bit flips.
            let mut flipped = frame.to_vec();
            for _ in 0..rng.random_range(1..8) {
                let bit = rng.random_range(0..flipped.len() * 8);
                flipped[bit / 8] ^= 1 << (bit % 8);
            }
            feed(&decoder, &flipped);
            flips += 1;
            // Truncations: a strict prefix is never a frame; its payload
            // never decodes.
            let cut = rng.random_range(0..frame.len());
            let (frames, _) = feed(&decoder, &frame[..cut]);
            assert!(
                frames.is_empty(),
                "sample {index} cut at {cut} made a frame"
            );
            if cut > 13 {
                assert!(decode_envelope(&frame[13..cut]).is_err());
            }
            truncations += 1;
            // The length field lies.
            let mut lying = frame.to_vec();
            let true_length = frame.len() - 4;
            let length = match rng.random_range(0..3) {
                0 => rng.random::<u32>(),
                1 => true_length.saturating_sub(rng.random_range(1..=true_length.min(64))) as u32,
                _ => (true_length + rng.random_range(1..64)) as u32,
            };
            lying[..4].copy_from_slice(&length.to_le_bytes());
            let junk = random_bytes(&mut rng, 64);
            lying.extend_from_slice(&junk);
            let (frames, _) = feed(&decoder, &lying);
            if let Some(first) = frames.first() {
                if length as usize != true_length {
                    assert!(
                        decode_envelope(&first.payload).is_err(),
                        "sample {index} with length {length} instead of {true_length} decoded"
                    );
                }
            }
            lies += 1;
        }
    }
    inputs += flips + truncations + lies;
    println!(
        "fuzzed {inputs} inputs: 100000 random streams, 300000 random payloads, {} valid frames \
         round-tripped, {flips} bit-flipped, {truncations} truncated, {lies} with a lying length",
        valid.len()
    );
    assert!(inputs >= 100_000);
}

#[tokio::test]
async fn fuzz_a_live_listener_with_mutated_streams() {
    let (server, address, _) = serve(options("server", "c")).await;
    let mut rng = SmallRng::seed_from_u64(42);
    let hello = Hello {
        version: VERSION,
        max_frame: 1 << 20,
        max_in_flight: 64,
        cluster: "c".into(),
        node: "fuzzer".into(),
        address: String::new(),
    }
    .frame();
    let samples = sample_envelopes();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let mut bytes = hello.to_vec();
        for j in 0..3 {
            let e = &samples[(i + j) % samples.len()];
            if !matches!(&e.request, Request::Raft(m) if matches!(m.body, Body::Snapshot(_))) {
                bytes.extend_from_slice(&frame::request_frame(j as u64, e).0);
            }
        }
        // Mutate past the handshake half the time, anywhere otherwise.
        let from = if i % 2 == 0 { hello.len() } else { 0 };
        for _ in 0..rng.random_range(1..6) {
            let at = rng.random_range(from..bytes.len());
            bytes[at] = rng.random();
        }
        if rng.random_range(0..3) == 0 {
            bytes.truncate(rng.random_range(from..bytes.len()));
        }
        let address = address.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&address).await.unwrap();
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
            let mut sink = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Still serving.
    let client = transport(options("client", "c"));
    let connection = client.connect(&address).await.unwrap();
    expect_echo(&connection, "after the fuzz").await;
    let stats = server.stats();
    assert!(stats.connections_accepted >= 201, "{stats:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_handshake_frame_announcing_megabytes_is_refused_before_it_is_buffered() {
    let (server, address, echo) = serve(options("server-node", "blue")).await;
    let mut stream = TcpStream::connect(&address).await.unwrap();
    // A Hello frame whose length says 1 MiB: refused on its first bytes.
    let mut head = Vec::new();
    head.extend_from_slice(&(1u32 << 20).to_le_bytes());
    head.push(FrameKind::Hello as u8);
    head.extend_from_slice(&0u64.to_le_bytes());
    stream.write_all(&head).await.unwrap();
    let mut back = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut back)).await;
    assert!(read.is_ok(), "the listener waited for the megabyte");
    assert_eq!(server.stats().oversized_frames, 1);
    assert_eq!(echo.calls.load(Ordering::SeqCst), 0);
    server.shutdown().await.unwrap();
}

/// At most `max_connections` peer connections are served at once: one more
/// is refused after its handshake, saying why, and counted; once one
/// closes, a new one is served again.
#[tokio::test]
async fn peer_connections_beyond_max_connections_are_refused() {
    let mut server_options = options("server-node", "blue");
    server_options.max_connections = 2;
    let (server, address, _echo) = serve(server_options).await;
    let first = transport(options("a", "blue"));
    let second = transport(options("b", "blue"));
    let third = transport(options("c", "blue"));
    let c1 = first.connect(&address).await.expect("first");
    expect_echo(&c1, "one").await;
    let c2 = second.connect(&address).await.expect("second");
    expect_echo(&c2, "two").await;
    let refused = third.connect(&address).await.map(|_| ());
    let Err(TransportError::Unreachable { reason, .. }) = &refused else {
        panic!("expected Unreachable, got {refused:?}");
    };
    assert!(
        reason.contains("too many connections") && reason.contains("at most 2"),
        "{reason}"
    );
    assert_eq!(server.stats().connections_refused_full, 1);
    // One closes: a new connection is served again.
    let _ = c1.close().await;
    first.shutdown().await.unwrap();
    eventually(Duration::from_secs(3), "a slot frees", || {
        server.stats().connections_refused_full == 1
    })
    .await;
    let mut served = false;
    for _ in 0..30 {
        if let Ok(c3) = third.connect(&address).await {
            if c3.invoke(read_envelope("three")).await.is_ok() {
                served = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "a connection is served once another closed");
    server.shutdown().await.unwrap();
}

// --- posts ---

#[tokio::test]
async fn a_posted_raft_message_reaches_the_handler_and_gets_no_reply() {
    let (server, address, echo) = serve(options("server", "c")).await;
    let mut raw = Raw::connect(&address, "c").await;
    let post = append_of("raw", 10);
    raw.stream
        .write_all(&frame::post_frame(&post).0)
        .await
        .unwrap();
    raw.stream
        .write_all(&frame::request_frame(5, &read_envelope("after")).0)
        .await
        .unwrap();
    // The only frame back is the reply to the request, after the post
    // was handled.
    let frame = raw.next_frame().await.expect("a reply");
    assert_eq!((frame.kind, frame.id), (FrameKind::Reply, 5));
    assert_eq!(
        decode_reply(&frame.payload).unwrap(),
        Reply::Output(Bytes::from_static(b"echo after"))
    );
    assert_eq!(echo.seen.lock().unwrap().first(), Some(&post));
    assert_eq!(server.stats().requests_received, 2);
}

/// A raw listener that answers the handshake with protocol `version`, then
/// returns the first frame it reads after it.
async fn listener_of_version(
    version: u32,
) -> (String, tokio::task::JoinHandle<Option<frame::Frame>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let fake = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
        };
        let theirs = raw.next_frame().await.expect("a hello");
        assert_eq!(theirs.kind, FrameKind::Hello);
        let hello = Hello {
            version,
            max_frame: 1 << 20,
            max_in_flight: 64,
            cluster: "c".into(),
            node: "fake".into(),
            address: String::new(),
        };
        raw.stream.write_all(&hello.frame()).await.unwrap();
        raw.next_frame().await
    });
    (address, fake)
}

#[tokio::test]
async fn raft_messages_are_posted_only_to_peers_that_take_posts() {
    let client = transport(options("client", "c"));
    // Version 2: posted.
    let (address, fake) = listener_of_version(VERSION).await;
    let connection = client.connect(&address).await.expect("connect");
    let message = append_of("client", 10);
    assert!(matches!(connection.post(message.clone()), Posted::Sent));
    let frame = fake.await.unwrap().expect("a frame");
    assert_eq!(frame.kind, FrameKind::Post);
    assert_eq!(decode_envelope(&frame.payload).unwrap(), message);
    // Anything but a Raft message is given back, to be invoked.
    assert!(matches!(
        connection.post(read_envelope("x")),
        Posted::Unsupported(e) if e == read_envelope("x")
    ));
    // Version 1 is accepted, and given requests only.
    let (address, fake) = listener_of_version(1).await;
    let connection = client
        .connect(&address)
        .await
        .expect("a version 1 peer is accepted");
    let Posted::Unsupported(back) = connection.post(message.clone()) else {
        panic!("posted to a version 1 peer");
    };
    assert_eq!(back, message);
    let invoked = tokio::spawn(async move { connection.invoke(back).await });
    let frame = fake.await.unwrap().expect("a frame");
    assert_eq!(frame.kind, FrameKind::Request);
    assert_eq!(decode_envelope(&frame.payload).unwrap(), message);
    invoked.abort();
}

#[tokio::test]
async fn a_peer_that_does_not_read_gets_at_most_a_window_of_unwritten_posts() {
    // A raw listener that takes 4 requests in flight and never reads past
    // the handshake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (done, until_done) = tokio::sync::oneshot::channel::<()>();
    let fake = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
        };
        raw.next_frame().await.expect("a hello");
        let hello = Hello {
            version: VERSION,
            max_frame: 1 << 20,
            max_in_flight: 4,
            cluster: "c".into(),
            node: "fake".into(),
            address: String::new(),
        };
        raw.stream.write_all(&hello.frame()).await.unwrap();
        let _ = until_done.await;
    });
    let client = transport(options("client", "c"));
    let connection = client.connect(&address).await.expect("connect");
    let message = append_of("client", 512 << 10);
    let mut sent = 0;
    let mut given_back = false;
    // Far more than the socket buffers hold.
    for _ in 0..400 {
        match connection.post(message.clone()) {
            Posted::Sent => sent += 1,
            Posted::Unsupported(_) => {
                given_back = true;
                break;
            }
            Posted::Failed(e) => panic!("post failed: {e}"),
        }
        // Let the writer run.
        tokio::task::yield_now().await;
    }
    assert!(
        given_back,
        "all {sent} posts taken while the peer read nothing"
    );
    let _ = done.send(());
    fake.await.unwrap();
}

// --- the node tells the transport who it is ---

async fn node_on_default_tcp(
    id: Option<&str>,
    cluster: Option<&str>,
    bootstrap: raft_node::Bootstrap,
    tcp: TcpOptions,
) -> Result<raft_node::Node, raft_node::NodeError> {
    let transport = TcpTransport::new(tcp).expect("valid options");
    raft_node::Node::new(raft_node::Options {
        id: id.map(Into::into),
        cluster: cluster.map(Into::into),
        address: Some("127.0.0.1:0".into()),
        transport: Some(Arc::new(transport)),
        bootstrap,
        ..raft_node::Options::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_self_assigned_ids_give_default_tcp_options_their_id_and_cluster() {
    let default = || TcpOptions::default().insecure();
    // Both ids self-assigned; the joining node must name the cluster.
    let a = node_on_default_tcp(None, None, raft_node::Bootstrap::Single, default())
        .await
        .expect("a starts");
    let b = node_on_default_tcp(
        None,
        Some(a.cluster()),
        raft_node::Bootstrap::Join,
        default(),
    )
    .await
    .expect("b starts");
    a.join(b.address()).await.expect("b joins over TCP");
    let set = raft_node::example::KvCommand::Set {
        key: "k".into(),
        value: "v".into(),
    };
    // Through b: forwarded to a over TCP, whose handshake carried b's
    // generated id and a's cluster.
    b.command(set.encode()).await.expect("a command through b");
    let members = a.members();
    assert!(members.iter().any(|(id, _)| id == b.id()), "{members:?}");
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_transport_made_for_another_node_is_refused_by_name() {
    let made_for_b = TcpOptions::new("b", "c1").insecure();
    let started = node_on_default_tcp(
        Some("a"),
        Some("c1"),
        raft_node::Bootstrap::Single,
        made_for_b,
    )
    .await;
    let Err(refused) = started else {
        panic!("a node must not use a transport made for another");
    };
    let message = refused.to_string();
    assert!(
        message.contains("made for node \"b\"") && message.contains("\"a\""),
        "{message}"
    );
    let other_cluster = TcpOptions::new("a", "c2").insecure();
    let started = node_on_default_tcp(
        Some("a"),
        Some("c1"),
        raft_node::Bootstrap::Single,
        other_cluster,
    )
    .await;
    let Err(refused) = started else {
        panic!("a node must not use a transport made for another cluster");
    };
    assert!(refused.to_string().contains("cluster \"c2\""), "{refused}");
}
