//! The admin HTTP endpoint: `GET /status` (the node's status as JSON, see
//! [`NodeStatus`]) and `GET /metrics` (Prometheus, see
//! [`crate::metrics::render_prometheus`]), an axum router served by hyper,
//! over TLS when configured.
//!
//! Everything is bounded: HTTP/1.x, one request per connection
//! (`Connection: close`); a request head of at most [`MAX_HEAD`] bytes and
//! [`MAX_HEADERS`] headers (else 431), sent within [`READ_TIMEOUT`]; a
//! body of at most [`MAX_BODY`] bytes (else 413); an answer within
//! [`REQUEST_TIMEOUT`] (else 503); a whole connection within
//! [`CONNECTION_TIMEOUT`]; at most [`MAX_CONNECTIONS`] connections at
//! once, and beyond it a connection is answered `503 Service Unavailable`.
//! Nothing a client sends makes it panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::encoding::prometheus_text;
use raft_node::{MemberRole, Role};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use crate::context::Context;
use crate::metrics::render_prometheus;
use crate::tls::ReloadableAcceptor;

/// The largest request head (request line and headers) accepted, in bytes.
pub const MAX_HEAD: usize = 16 * 1024;

/// The most headers a request may carry.
pub const MAX_HEADERS: usize = 64;

/// The largest request body accepted, in bytes (no route reads one).
pub const MAX_BODY: usize = 64 * 1024;

/// How long a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the server may take to answer a request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a connection is served: the head sent, the answer, and the
/// client reading it.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// The most admin connections served at once; beyond it, a connection gets
/// `503 Service Unavailable` and is closed.
pub const MAX_CONNECTIONS: usize = 64;

/// Refused connections are logged at `warn` at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How long [`node_status`] waits for the node's peer list.
const PEERS_TIMEOUT: Duration = Duration::from_secs(1);

/// The paths served, for the 404 and 405 bodies.
const KNOWN_PATHS: &str = "known paths: GET /status, GET /metrics";

/// The methods served (`HEAD` answers as `GET` would, without the body).
const ALLOWED: &str = "GET, HEAD";

/// The status of one node, as served by `GET /status` (JSON) and used by
/// the RESP commands INFO and RAFT.STATUS.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node's id.
    pub id: String,
    /// The id of its cluster.
    pub cluster: String,
    /// Where it listens for its peers (Raft traffic).
    pub address: String,
    /// Its Raft role: "follower", "pre-candidate", "candidate" or "leader".
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The leader it knows, if any.
    pub leader: Option<LeaderStatus>,
    /// Its commit index.
    pub commit_index: u64,
    /// The index applied to the state machine.
    pub applied_index: u64,
    /// Its last log index.
    pub last_index: u64,
    /// The index of its latest snapshot.
    pub snapshot_index: u64,
    /// Committed entries waiting for the state machine, and how often apply
    /// back-pressure acted.
    pub apply_backlog: ApplyBacklogJson,
    /// Where clients connect (RESP).
    pub client_address: String,
    /// Where the admin endpoint listens, if anywhere.
    pub admin_address: Option<String>,
    /// Seconds since the server started.
    pub uptime_seconds: u64,
    /// Why the node stopped acknowledging, after a storage failure.
    pub stopped: Option<String>,
    /// True once the node knows it was removed from the cluster: it serves
    /// no commands or reads.
    pub removed: bool,
    /// The index of the configuration entry that removed it, if it applied
    /// that entry (else it learned it from the leader's refusal).
    pub removed_index: Option<u64>,
    /// The other members of the configuration.
    pub peers: Vec<PeerStatusJson>,
}

/// Committed entries waiting for the state machine (apply back-pressure,
/// `raft_node::Options::max_unapplied_bytes`).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ApplyBacklogJson {
    /// How many entries wait to be applied, with the commands admitted on
    /// this node (as leader) and not yet answered.
    pub entries: usize,
    /// The bytes of the committed entries waiting to be applied (admitted
    /// commands not counted).
    pub bytes: usize,
    /// The limit on entries.
    pub max_entries: usize,
    /// The limit on bytes.
    pub max_bytes: usize,
    /// Commands that waited, on this node as leader, for the state machine
    /// to catch up.
    pub proposals_waited: u64,
    /// Appends from the leader this node left unanswered, as a follower,
    /// while its state machine was behind.
    pub appends_deferred: u64,
}

/// The leader a node knows.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct LeaderStatus {
    /// The leader's id.
    pub id: String,
    /// Where it listens for its peers.
    pub address: String,
    /// Where its clients reach it (its RESP address), once this node has
    /// heard it from the leader.
    pub client_address: Option<String>,
}

/// Another member of the configuration, as seen from this node.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct PeerStatusJson {
    /// The member's id.
    pub id: String,
    /// Where it listens for its peers.
    pub address: String,
    /// "voter" or "learner".
    pub role: String,
    /// On the leader: the highest index known replicated on it.
    pub match_index: Option<u64>,
    /// On the leader: the commit index minus `match_index` (0 if it is
    /// ahead of the commit index).
    pub lag: Option<u64>,
    /// On the leader: how long ago it last answered, in milliseconds.
    pub last_contact_ms: Option<u64>,
    /// It answered a message or a probe from this node within the last
    /// election timeout (every node probes its idle peers each heartbeat).
    pub connected: bool,
}

/// The lower-case name of a role, as in [`NodeStatus::role`].
pub fn role_name(role: Role) -> String {
    role.to_string()
}

/// The status of the node of `ctx` now. The peer list is left empty if the
/// node does not answer within a second (it is shutting down, or stuck).
pub async fn node_status(ctx: &Context) -> NodeStatus {
    let peers = tokio::time::timeout(PEERS_TIMEOUT, ctx.node.peers())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let m = ctx.node.metrics();
    let leading = m.role == Role::Leader;
    let peers = peers
        .into_iter()
        .map(|p| PeerStatusJson {
            role: match p.role {
                MemberRole::Voter => "voter",
                MemberRole::Learner => "learner",
            }
            .to_owned(),
            lag: p
                .match_index
                .filter(|_| leading)
                .map(|i| m.commit_index.saturating_sub(i)),
            match_index: p.match_index,
            last_contact_ms: p
                .last_contact
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            connected: p.connected,
            id: p.id,
            address: p.address,
        })
        .collect();
    NodeStatus {
        id: ctx.node.id().to_owned(),
        cluster: ctx.node.cluster().to_owned(),
        address: ctx.node.address().to_owned(),
        role: role_name(m.role),
        term: m.term,
        leader: m.leader.map(|l| LeaderStatus {
            id: l.id,
            address: l.address,
            client_address: l.client_address,
        }),
        commit_index: m.commit_index,
        applied_index: m.applied_index,
        last_index: m.last_index,
        snapshot_index: m.snapshot_index,
        apply_backlog: ApplyBacklogJson {
            entries: m.apply_backlog.entries + m.apply_backlog.admitted,
            bytes: m.apply_backlog.bytes,
            max_entries: m.apply_backlog.max_entries,
            max_bytes: m.apply_backlog.max_bytes,
            proposals_waited: m.apply_backlog.proposals_waited,
            appends_deferred: m.apply_backlog.appends_deferred,
        },
        client_address: ctx.client_address.clone(),
        admin_address: ctx.admin_address.clone(),
        uptime_seconds: ctx.started.elapsed().as_secs(),
        stopped: m.stopped,
        removed: m.removed.is_some(),
        removed_index: m.removed.and_then(|r| r.index),
        peers,
    }
}

/// The routes, with the request limits.
fn router(ctx: Arc<Context>) -> Router {
    with_limits(
        Router::new()
            .route("/status", get(status))
            .route("/metrics", get(metrics))
            .method_not_allowed_fallback(method_not_allowed)
            .fallback(not_found)
            .with_state(ctx),
    )
}

/// What connections beyond [`MAX_CONNECTIONS`] are answered.
fn refusal() -> Router {
    with_limits(Router::new().fallback(|| async {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many admin connections\n",
        )
    }))
}

/// Every response is fresh (`Cache-Control: no-store`); a request's body
/// is limited to [`MAX_BODY`] (413), its answer to [`REQUEST_TIMEOUT`]
/// (503).
fn with_limits(router: Router) -> Router {
    router
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

async fn status(State(ctx): State<Arc<Context>>) -> Response {
    let status = node_status(&ctx).await;
    match serde_json::to_vec_pretty(&status) {
        Ok(mut body) => {
            body.push(b'\n');
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "admin endpoint: cannot encode the status");
            let body = format!("cannot encode the status: {e}\n");
            (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
        }
    }
}

async fn metrics(State(ctx): State<Arc<Context>>) -> Response {
    let body = render_prometheus(&ctx).await;
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        body,
    )
        .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    tracing::debug!(%method, path = uri.path(), "admin endpoint: method not allowed");
    let body = format!("method {method} not allowed: only GET ({KNOWN_PATHS})\n");
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, ALLOWED)],
        body,
    )
        .into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed(method, uri).await;
    }
    tracing::debug!(path = uri.path(), "admin endpoint: not found");
    let body = format!("no such path {:?}; {KNOWN_PATHS}\n", uri.path());
    (StatusCode::NOT_FOUND, body).into_response()
}

/// How each connection is served: one request, with the head's limits.
fn http1() -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .keep_alive(false)
        .title_case_headers(true)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS);
    http
}

/// Serves `router` on one connection, for at most [`CONNECTION_TIMEOUT`].
async fn serve_connection<S>(http: &http1::Builder, stream: S, router: Router)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "admin endpoint: connection failed"),
        Err(_) => tracing::debug!("admin endpoint: connection timed out"),
    }
}

/// Serves `GET /status` and `GET /metrics` on `listener` until `shutdown`
/// turns true (at once if it already is); then stops accepting, drops the
/// listener and aborts the connections still being served. If the sender
/// of `shutdown` is dropped without turning it true, it serves until this
/// future is dropped.
pub async fn serve_admin(
    listener: TcpListener,
    ctx: Arc<Context>,
    tls: Option<ReloadableAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (router, refusal) = (router(ctx), refusal());
    let http = Arc::new(http1());
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Connections beyond the limit are answered 503 by tasks of their own,
    // as many at once.
    let refusing = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut last_warning: Option<Instant> = None;
    let mut connections = JoinSet::new();
    let local = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    tracing::debug!(address = %local, "admin endpoint listening");
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: do not spin.
                        tracing::warn!(address = %local, error = %e, "admin endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let span = tracing::debug_span!("admin", %peer);
                let http = http.clone();
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    if last_warning.is_none_or(|t: Instant| t.elapsed() >= WARN_EVERY) {
                        last_warning = Some(Instant::now());
                        tracing::warn!(%peer, limit = MAX_CONNECTIONS, "admin endpoint: too many connections, refusing some");
                    } else {
                        tracing::debug!(%peer, "admin endpoint: too many connections, refusing one");
                    }
                    // Over TLS, a refusal would cost a handshake: the
                    // connection is just closed, as it is when too many
                    // are being refused.
                    if tls.is_some() {
                        continue;
                    }
                    let Ok(permit) = refusing.clone().try_acquire_owned() else {
                        continue;
                    };
                    let refusal = refusal.clone();
                    connections.spawn(async move {
                        serve_connection(&http, stream, refusal).await;
                        drop(permit);
                    }.instrument(span));
                    continue;
                };
                let router = router.clone();
                let acceptor = tls.as_ref().map(ReloadableAcceptor::acceptor);
                connections.spawn(async move {
                    match acceptor {
                        None => serve_connection(&http, stream, router).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => serve_connection(&http, tls, router).await,
                                Ok(Err(e)) => tracing::debug!(error = %e, "admin endpoint: TLS handshake failed"),
                                Err(_) => tracing::debug!("admin endpoint: TLS handshake timed out"),
                            }
                        }
                    }
                    drop(permit);
                }.instrument(span));
            }
        }
    }
    drop(listener);
    connections.shutdown().await;
    tracing::debug!(address = %local, "admin endpoint stopped");
}

/// Resolves once `shutdown` is true; never if its sender is gone first.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::{test_context, value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// An admin endpoint on a free loopback port: its address, the shutdown
    /// switch, and its task.
    async fn start(
        ctx: Arc<Context>,
    ) -> (String, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(serve_admin(listener, ctx, None, rx));
        (address, tx, task)
    }

    /// Sends `request` as is and returns the status and the body.
    async fn raw(address: &str, request: &[u8]) -> (u16, String, String) {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
            .await
            .expect("a response in time")
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("a content length")
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        (status, head.to_owned(), body.to_owned())
    }

    async fn get(address: &str, path: &str) -> (u16, String, String) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: t\r\n\r\n");
        raw(address, request.as_bytes()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_is_json_with_the_node_state() {
        let ctx = test_context(None).await;
        let (address, tx, task) = start(ctx.clone()).await;
        let (status, head, body) = get(&address, "/status").await;
        assert_eq!(status, 200, "{body}");
        assert!(head.contains("Content-Type: application/json"), "{head}");
        assert!(head.contains("Connection: close"), "{head}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let m = ctx.node.metrics();
        assert_eq!(json["id"], ctx.node.id());
        assert_eq!(json["cluster"], ctx.node.cluster());
        assert_eq!(json["role"], "leader");
        assert_eq!(json["term"], m.term);
        assert_eq!(json["leader"]["id"], ctx.node.id());
        assert!(json["commit_index"].as_u64().unwrap() >= 1);
        assert!(json["last_index"].as_u64().unwrap() >= json["commit_index"].as_u64().unwrap());
        assert_eq!(json["snapshot_index"], m.snapshot_index);
        assert_eq!(json["client_address"], "127.0.0.1:6379");
        assert!(json["stopped"].is_null());
        assert_eq!(json["peers"], serde_json::json!([]));

        let direct = node_status(&ctx).await;
        assert_eq!(direct.role, "leader");
        assert_eq!(direct.id, ctx.node.id());

        // A query string is ignored.
        let (status, _, _) = get(&address, "/status?pretty=1").await;
        assert_eq!(status, 200);

        // HEAD answers as GET would, without the body.
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"HEAD /status HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out));
        read.await.expect("a response in time").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        assert!(text.contains("Content-Type: application/json"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        tx.send(true).unwrap();
        task.await.unwrap();
        ctx.node.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_are_served_and_rise() {
        let ctx = test_context(None).await;
        let (address, tx, task) = start(ctx.clone()).await;
        let (status, head, body) = get(&address, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(body.contains("# TYPE raftkv_commands_total counter"));
        assert!(body.contains("raftkv_role{role=\"leader\"} 1"));
        let get_ok = "raftkv_commands_total{command=\"get\",result=\"ok\"}";
        assert_eq!(value(&body, get_ok), Some(0.0));
        for _ in 0..3 {
            ctx.metrics.record("get", true, Duration::from_micros(80));
        }
        let (_, _, body) = get(&address, "/metrics").await;
        assert_eq!(value(&body, get_ok), Some(3.0));
        let count = "raftkv_command_duration_seconds_count{kind=\"read\"}";
        assert_eq!(value(&body, count), Some(3.0));
        tx.send(true).unwrap();
        task.await.unwrap();
        ctx.node.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_requests_get_4xx() {
        let ctx = test_context(None).await;
        let (address, tx, task) = start(ctx.clone()).await;

        let (status, _, body) = get(&address, "/nope").await;
        assert_eq!(status, 404);
        assert!(
            body.contains("/status") && body.contains("/metrics"),
            "{body}"
        );
        assert_eq!(body.lines().count(), 1);

        let (status, head, _) = raw(&address, b"POST /status HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, 405);
        assert!(head.contains("Allow: GET"), "{head}");
        let (status, _, _) = raw(&address, b"DELETE /nope HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, 405);

        // Malformed heads are refused by hyper, without a body.
        let (status, head, _) = raw(&address, b"\x00\x01garbage\r\n\r\n").await;
        assert_eq!(status, 400);
        assert!(head.contains("Connection: close"), "{head}");
        let (status, _, _) = raw(&address, b"GET /status HTTP/9.9\r\n\r\n").await;
        assert_eq!(status, 400);
        let (status, _, _) = raw(&address, b"GET /status HTTP/1.1\r\nBad Header\r\n\r\n").await;
        assert_eq!(status, 400);

        // A head cut short by the client is closed unanswered.
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"GET /status HTTP/1.1\r\nHost")
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out));
        read.await.expect("closed in time").unwrap();
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));

        // Too large a head, and too many headers; as many as allowed pass.
        let mut big = b"GET /status HTTP/1.1\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD + 100, b'a');
        let (status, _, body) = raw(&address, &big).await;
        assert_eq!(status, 431, "{body}");
        let headers = |n: usize| {
            let mut request = b"GET /status HTTP/1.1\r\n".to_vec();
            for i in 0..n {
                request.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
            }
            request.extend_from_slice(b"\r\n");
            request
        };
        let (status, _, _) = raw(&address, &headers(MAX_HEADERS + 1)).await;
        assert_eq!(status, 431);
        let (status, _, _) = raw(&address, &headers(MAX_HEADERS)).await;
        assert_eq!(status, 200);

        // Too large a body.
        let request = format!(
            "GET /status HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let (status, head, _) = raw(&address, request.as_bytes()).await;
        assert_eq!(status, 413, "{head}");

        // A client that connects and sends nothing does not hold up others.
        let _idle = TcpStream::connect(&address).await.unwrap();
        let (status, _, _) = get(&address, "/status").await;
        assert_eq!(status, 200);

        tx.send(true).unwrap();
        task.await.unwrap();
        ctx.node.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_later_than_the_request_timeout_is_a_503() {
        let slow = with_limits(Router::new().route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(2 * REQUEST_TIMEOUT).await;
                "late\n"
            }),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            serve_connection(&http1(), stream, slow).await;
        });
        let started = tokio::time::Instant::now();
        let (status, head, _) = get(&address, "/slow").await;
        assert_eq!(status, 503, "{head}");
        assert!(started.elapsed() >= REQUEST_TIMEOUT);
        assert!(started.elapsed() < 2 * REQUEST_TIMEOUT);
        server.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_server_stops_on_shutdown() {
        let ctx = test_context(None).await;
        let (address, tx, task) = start(ctx.clone()).await;
        let (status, _, _) = get(&address, "/status").await;
        assert_eq!(status, 200);
        // A connection in progress is cut when the server stops.
        let mut slow = TcpStream::connect(&address).await.unwrap();
        slow.write_all(b"GET /status HTTP/1.1\r\n").await.unwrap();
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the server stops in time")
            .unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the connection in progress was closed");
        assert!(out.is_empty());
        assert!(
            TcpStream::connect(&address).await.is_err(),
            "nothing listens any more"
        );

        // Already true: returns at once.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (_tx, rx) = watch::channel(true);
        tokio::time::timeout(
            Duration::from_secs(5),
            serve_admin(listener, ctx.clone(), None, rx),
        )
        .await
        .expect("returns at once");
        ctx.node.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_the_limit_get_503() {
        let ctx = test_context(None).await;
        let (address, tx, task) = start(ctx.clone()).await;
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut s = TcpStream::connect(&address).await.unwrap();
            s.write_all(b"GET /status").await.unwrap();
            idle.push(s);
        }
        // Let the server take them all.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, head, body) = get(&address, "/status").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body, "too many admin connections\n");
        assert!(head.contains("Cache-Control: no-store"), "{head}");
        drop(idle);
        // Slots come back as those connections end.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (status, _, _) = get(&address, "/status").await;
            if status == 200 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "slots never freed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tx.send(true).unwrap();
        task.await.unwrap();
        ctx.node.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_reports_its_peers_and_their_lag() {
        use crate::metrics::Metrics;
        use raft_node::{Bootstrap, MemoryNetwork, Node, Options};

        let net = MemoryNetwork::new();
        let members: Vec<(String, String)> = (1..=3)
            .map(|i| (format!("n{i}"), format!("n{i}")))
            .collect();
        let mut nodes = Vec::new();
        for (id, address) in &members {
            let node = Node::new(Options {
                id: Some(id.clone()),
                cluster: Some("c".into()),
                transport: Some(Arc::new(net.transport(address))),
                bootstrap: Bootstrap::Static(members.clone()),
                ..Options::default()
            })
            .await
            .unwrap();
            nodes.push(node);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let leader = loop {
            if let Some(i) = nodes.iter().position(|n| n.role() == Role::Leader) {
                break i;
            }
            assert!(tokio::time::Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let context = |node: &Node| Context {
            node: node.clone(),
            metrics: Arc::new(Metrics::new()),
            writes: Default::default(),
            wakeups: Default::default(),
            acl: Arc::new(crate::acl::SharedUsers::new(None)),
            file: None,
            tcp: None,
            client_tls: None,
            client_address: String::new(),
            admin_address: None,
            started: std::time::Instant::now(),
        };
        let set = raft_node::example::KvCommand::Set {
            key: "k".into(),
            value: "v".into(),
        };
        nodes[leader].command(set.encode()).await.unwrap();

        let ctx = context(&nodes[leader]);
        let status = node_status(&ctx).await;
        assert_eq!(status.role, "leader");
        assert_eq!(status.peers.len(), 2);
        for p in &status.peers {
            assert_eq!(p.role, "voter");
            assert!(p.id == "n1" || p.id == "n2" || p.id == "n3");
            assert_ne!(p.id, status.id);
            assert_eq!(p.address, p.id);
            let matched = p.match_index.expect("the leader knows the match index");
            assert_eq!(p.lag, Some(status.commit_index.saturating_sub(matched)));
            assert!(p.last_contact_ms.is_some());
        }
        let text = render_prometheus(&ctx).await;
        for p in &status.peers {
            let series = format!("raftkv_peer_lag_entries{{peer=\"{}\"}}", p.id);
            let lag = value(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
            assert!(lag >= 0.0);
            let series = format!("raftkv_peer_connected{{peer=\"{}\"}}", p.id);
            assert!(value(&text, &series).is_some());
        }

        let follower = (leader + 1) % 3;
        let ctx = context(&nodes[follower]);
        let status = node_status(&ctx).await;
        assert_eq!(status.role, "follower");
        assert_eq!(status.leader.as_ref().unwrap().id, nodes[leader].id());
        assert_eq!(status.peers.len(), 2);
        assert!(status.peers.iter().all(|p| p.lag.is_none()));
        let text = render_prometheus(&ctx).await;
        assert!(!text.contains("raftkv_peer_lag_entries{"));
        for n in &nodes {
            n.shutdown().await.unwrap();
        }
    }
}
