//! The admin HTTP endpoint: `GET /status` (the node's status as JSON, see
//! [`NodeStatus`]) and `GET /metrics` (Prometheus, see
//! [`crate::metrics::render_prometheus`]).
//!
//! It is deliberately small: HTTP/1.x, one request per connection
//! (`Connection: close`), request heads of at most [`MAX_HEAD`] bytes read
//! within [`READ_TIMEOUT`], at most [`MAX_CONNECTIONS`] connections at once.
//! Nothing a client sends makes it panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raft_node::{MemberRole, Role};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::context::Context;
use crate::metrics::render_prometheus;
use crate::tls::ReloadableAcceptor;

/// The largest request head (request line and headers) accepted, in bytes.
pub const MAX_HEAD: usize = 16 * 1024;

/// The most headers a request may carry.
pub const MAX_HEADERS: usize = 64;

/// How long a client has to send its request head, and then to read the
/// response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The most admin connections served at once; beyond it, a connection gets
/// `503 Service Unavailable` and is closed.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connection is kept open after its response, for the client
/// to close it (see `finish`).
const LINGER: Duration = Duration::from_secs(1);

/// The most bytes read and discarded after a response.
const LINGER_BYTES: usize = 256 * 1024;

/// Refused connections are logged at `warn` at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How long [`node_status`] waits for the node's peer list.
const PEERS_TIMEOUT: Duration = Duration::from_secs(1);

/// The paths served, for the 404 body.
const KNOWN_PATHS: &str = "known paths: GET /status, GET /metrics";

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
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    if last_warning.is_none_or(|t: Instant| t.elapsed() >= WARN_EVERY) {
                        last_warning = Some(Instant::now());
                        tracing::warn!(%peer, limit = MAX_CONNECTIONS, "admin endpoint: too many connections, refusing some");
                    } else {
                        tracing::debug!(%peer, "admin endpoint: too many connections, refusing one");
                    }
                    let refusal = response(
                        503,
                        "text/plain; charset=utf-8",
                        b"too many admin connections\n",
                        None,
                    );
                    match refusing.clone().try_acquire_owned() {
                        // Over TLS, a refusal would cost a handshake:
                        // the connection is just closed.
                        _ if tls.is_some() => drop(stream),
                        Ok(permit) => {
                            connections.spawn(async move {
                                finish(stream, &refusal, &peer.to_string()).await;
                                drop(permit);
                            });
                        }
                        // Best effort, without waiting: the socket is
                        // fresh, its send buffer is empty.
                        Err(_) => drop(stream.try_write(&refusal)),
                    }
                    continue;
                };
                let ctx = ctx.clone();
                let acceptor = tls.as_ref().map(ReloadableAcceptor::acceptor);
                connections.spawn(async move {
                    let peer = peer.to_string();
                    match acceptor {
                        None => serve_connection(stream, peer, &ctx).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => serve_connection(tls, peer, &ctx).await,
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "admin endpoint: TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "admin endpoint: TLS handshake timed out"),
                            }
                        }
                    }
                    drop(permit);
                });
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

/// What a request asks for, or why it is refused.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// The request head is incomplete: read more.
    Partial,
    /// A complete head: the method and the path (without its query).
    Request { method: String, path: String },
    /// Refused: the status and the reason.
    Bad(u16, String),
}

fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            Parsed::Bad(431, format!("the request head exceeds {MAX_HEAD} bytes"))
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(_)) => {
            let (Some(method), Some(target)) = (request.method, request.path) else {
                return Parsed::Bad(400, "a request line without a method or path".into());
            };
            let path = target.split(['?', '#']).next().unwrap_or_default();
            Parsed::Request {
                method: method.to_owned(),
                path: path.to_owned(),
            }
        }
        Err(httparse::Error::TooManyHeaders) => {
            Parsed::Bad(431, format!("too many headers (at most {MAX_HEADERS})"))
        }
        Err(e) => Parsed::Bad(400, format!("malformed request: {e}")),
    }
}

/// Reads the request head from `stream`: what it asks, or why not (`None`:
/// the client went away or timed out, nothing to answer).
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Parsed> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        loop {
            if buf.len() >= MAX_HEAD {
                return Some(parse(&buf));
            }
            let mut chunk = [0u8; 4096];
            let room = (MAX_HEAD - buf.len()).min(chunk.len());
            match stream.read(&mut chunk[..room]).await {
                Ok(0) if buf.is_empty() => return None,
                Ok(0) => {
                    return Some(Parsed::Bad(
                        400,
                        "the connection closed before the request head ended".into(),
                    ))
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    tracing::debug!(error = %e, "admin endpoint: read error");
                    return None;
                }
            }
            match parse(&buf) {
                Parsed::Partial => {}
                parsed => return Some(parsed),
            }
        }
    };
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(parsed) => parsed,
        Err(_) if buf.is_empty() => {
            tracing::debug!("admin endpoint: an idle connection timed out");
            None
        }
        Err(_) => Some(Parsed::Bad(
            408,
            format!(
                "no complete request head within {} s",
                READ_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// Serves one connection: one request, one response, then close.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: String,
    ctx: &Context,
) {
    let Some(parsed) = read_request(&mut stream).await else {
        return;
    };
    let response = match parsed {
        Parsed::Partial => return,
        Parsed::Bad(status, reason) => {
            tracing::debug!(%peer, status, %reason, "admin endpoint: bad request");
            response(
                status,
                "text/plain; charset=utf-8",
                format!("{reason}\n").as_bytes(),
                None,
            )
        }
        Parsed::Request { method, path } => route(ctx, &peer, &method, &path).await,
    };
    finish(stream, &response, &peer).await;
}

/// Writes `response`, closes the sending side, then reads and discards
/// what the client still sends (for at most [`LINGER`] and
/// [`LINGER_BYTES`]) before closing: closing a socket with unread input
/// would reset the connection, and the client could lose the response.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, response: &[u8], peer: &str) {
    let write = async {
        stream.write_all(response).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(READ_TIMEOUT, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "admin endpoint: write error");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "admin endpoint: the client did not read the response");
            return;
        }
    }
    let drain = async {
        let mut scratch = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// The response to a well-formed request.
async fn route(ctx: &Context, peer: &str, method: &str, path: &str) -> Vec<u8> {
    let known = matches!(path, "/status" | "/metrics");
    if method != "GET" {
        tracing::debug!(%peer, %method, %path, "admin endpoint: method not allowed");
        let body = format!("method {method} not allowed: only GET ({KNOWN_PATHS})\n");
        return response(
            405,
            "text/plain; charset=utf-8",
            body.as_bytes(),
            Some("Allow: GET\r\n"),
        );
    }
    if !known {
        tracing::debug!(%peer, %path, "admin endpoint: not found");
        let body = format!("no such path {path:?}; {KNOWN_PATHS}\n");
        return response(404, "text/plain; charset=utf-8", body.as_bytes(), None);
    }
    if path == "/status" {
        let status = node_status(ctx).await;
        match serde_json::to_vec_pretty(&status) {
            Ok(mut body) => {
                body.push(b'\n');
                response(200, "application/json", &body, None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin endpoint: cannot encode the status");
                let body = format!("cannot encode the status: {e}\n");
                response(500, "text/plain; charset=utf-8", body.as_bytes(), None)
            }
        }
    } else {
        let body = render_prometheus(ctx).await;
        response(200, "text/plain; version=0.0.4", body.as_bytes(), None)
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A complete HTTP/1.1 response that closes the connection; `extra` is
/// more header lines, each ending in CRLF.
fn response(status: u16, content_type: &str, body: &[u8], extra: Option<&str>) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n{}\r\n",
        reason_phrase(status),
        body.len(),
        extra.unwrap_or(""),
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::{test_context, value};
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

        let (status, _, body) = raw(&address, b"\x00\x01garbage\r\n\r\n").await;
        assert_eq!(status, 400);
        assert!(body.starts_with("malformed request"), "{body}");
        let (status, _, _) = raw(&address, b"GET /status HTTP/9.9\r\n\r\n").await;
        assert_eq!(status, 400);
        let (status, _, _) = raw(&address, b"GET /status HTTP/1.1\r\nBad Header\r\n\r\n").await;
        assert_eq!(status, 400);

        // A head cut short by the client.
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"GET /status HTTP/1.1\r\nHost")
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        assert!(
            out.starts_with(b"HTTP/1.1 400 "),
            "{}",
            String::from_utf8_lossy(&out)
        );

        // Too large a head, and too many headers.
        let mut big = b"GET /status HTTP/1.1\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD + 100, b'a');
        let (status, _, body) = raw(&address, &big).await;
        assert_eq!(status, 431, "{body}");
        let mut many = b"GET /status HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let (status, _, _) = raw(&address, &many).await;
        assert_eq!(status, 431);

        // A client that connects and sends nothing does not hold up others.
        let _idle = TcpStream::connect(&address).await.unwrap();
        let (status, _, _) = get(&address, "/status").await;
        assert_eq!(status, 200);

        tx.send(true).unwrap();
        task.await.unwrap();
        ctx.node.shutdown().await.unwrap();
    }

    #[test]
    fn parse_splits_method_and_path() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\n"), Parsed::Partial);
        assert_eq!(
            parse(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Parsed::Request {
                method: "GET".into(),
                path: "/metrics".into()
            }
        );
        assert!(matches!(
            parse(b"\r\n\r\n\r\n"),
            Parsed::Partial | Parsed::Bad(400, _)
        ));
        assert!(matches!(
            parse(b"G\0T / HTTP/1.1\r\n\r\n"),
            Parsed::Bad(400, _)
        ));
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
        let (status, _, body) = get(&address, "/status").await;
        assert_eq!(status, 503, "{body}");
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
