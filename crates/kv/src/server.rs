//! The RESP server: an accept loop with a limit on connections, and per
//! connection a loop that reads every request the client has sent so far,
//! runs them in order (consecutive writes as one log entry, shared with
//! those of other connections that arrive meanwhile ([`crate::proposer`]);
//! consecutive reads as one linearizable read) and writes the replies back
//! together.
//! Every request passes the gate first: who the connection is, under the
//! users the node has applied, and whether that user may run it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_node::{LeaderInfo, NodeError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use crate::acl::{self, commands, Denied, Identity};
use crate::blocking;
use crate::cmd::{self, Command, Local, Session};
use crate::config::Settings;
use crate::connection::{
    ClientStream, Connection, ConnectionError, Output, ReadTimeouts, TimedOut,
};
use crate::context::Context;
use crate::frame::put_error;
use crate::metrics::{AclDenial, OutputEvent};
use crate::proposer::Limits;
use crate::store::{
    encode_bounded_reads, encoded_write_len, split_bounded_answer, Read, ReplyRoom,
};
use crate::tls::ReloadableAcceptor;

/// The most bytes of one log entry of several writes; a larger run of writes
/// is split (a single larger command goes alone: it is at most
/// `--max-request-bytes`, which fits the largest entry the peers carry).
/// Writes of other connections join an entry within the same bound, and
/// within `--max-pipeline` writes.
pub(crate) const MAX_BATCH_BYTES: usize = 1 << 20;

/// The reply to every command but PING and QUIT while the node does not
/// know the cluster's users (and has no `--requirepass` of its own).
pub const LOADING: &str =
    "LOADING this node has not yet received the cluster's users; retry in a moment";

/// How long a TLS client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the error sent to a client being closed for its slowness may
/// take to write.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves clients on `listener` until `shutdown` turns true; over TLS if
/// `tls` is given (the `--tls-port` listener). Both listeners share the
/// connection limit `slots`.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    settings: Arc<Settings>,
    slots: Arc<Semaphore>,
    tls: Option<ReloadableAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait, go on.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            ctx.metrics.connection_refused();
            tokio::spawn(refuse(stream));
            continue;
        };
        ctx.metrics.connection_opened();
        let (ctx, settings, shutdown) = (ctx.clone(), settings.clone(), shutdown.clone());
        let acceptor = tls.as_ref().map(ReloadableAcceptor::acceptor);
        tokio::spawn(async move {
            debug!(%peer, "client connected");
            let metrics = ctx.metrics.clone();
            let _ = stream.set_nodelay(true);
            let stream = match acceptor {
                None => ClientStream::Plain(stream),
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => {
                            ClientStream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls)))
                        }
                        Ok(Err(e)) => {
                            metrics.tls_handshake_failed();
                            debug!(%peer, error = %e, "client TLS handshake failed");
                            metrics.connection_closed();
                            drop(permit);
                            return;
                        }
                        Err(_) => {
                            metrics.tls_handshake_failed();
                            debug!(%peer, "client TLS handshake timed out");
                            metrics.connection_closed();
                            drop(permit);
                            return;
                        }
                    }
                }
            };
            if protected_mode(&settings, &ctx, peer.ip(), &stream) {
                metrics.connection_denied();
                debug!(%peer, "protected mode: a remote client while the default user has no password");
                let mut stream = stream;
                use tokio::io::AsyncWriteExt;
                let _ = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, async {
                    stream.write_all(DENIED.as_bytes()).await?;
                    stream.shutdown().await
                })
                .await;
                metrics.connection_closed();
                drop(permit);
                return;
            }
            match handle(stream, peer.to_string(), ctx, settings, shutdown).await {
                Ok(()) => debug!(%peer, "client disconnected"),
                Err(ConnectionError::Io(e)) => {
                    debug!(%peer, error = %e, "client connection failed")
                }
                Err(ConnectionError::Protocol(why)) => {
                    warn!(%peer, %why, "malformed request: closing the connection")
                }
                Err(ConnectionError::TimedOut(why)) => {
                    debug!(%peer, %why, "client timed out: closing the connection")
                }
                Err(e @ ConnectionError::Unread(_)) => {
                    info!(%peer, why = %e, "client output buffer limit: closing the connection")
                }
            }
            metrics.connection_closed();
            drop(permit);
        });
    }
    info!("client listener stopped");
}

/// The reply to a client refused by protected mode (as Redis's).
pub const DENIED: &str = "-DENIED raft-kv is running in protected mode because the cluster's default user has no password: only clients on the loopback interface, and TLS clients with a certificate, are served. Set a password from loopback (ACL SETUSER default on >password), serve remote clients on --tls-port with client certificates, or start with --insecure.\r\n";

/// Protected mode, as Redis has it: a client from another host is refused
/// while the cluster's default user is on and has no password (anyone
/// could do anything), unless it showed a client certificate, or the
/// server runs with `--insecure`.
fn protected_mode(
    settings: &Settings,
    ctx: &Context,
    peer: std::net::IpAddr,
    stream: &ClientStream,
) -> bool {
    if settings.insecure || peer.is_loopback() || stream.peer_certificates().is_some() {
        return false;
    }
    let users = ctx.acl.cluster();
    users.is_initialized()
        && users
            .get(acl::DEFAULT_USER)
            .is_some_and(|u| u.is_enabled() && u.is_nopass())
}

async fn refuse(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
}

async fn handle(
    stream: ClientStream,
    peer: String,
    ctx: Arc<Context>,
    settings: Arc<Settings>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let timeouts = ReadTimeouts {
        idle: settings.idle_timeout,
        request: settings.request_read_timeout,
    };
    let mut conn = Connection::new(stream, peer, settings.max_request_bytes, timeouts);
    let mut session = Session::new(conn.peer());
    let mut requests = Vec::new();
    let mut out = Output::new();
    loop {
        let read = tokio::select! {
            r = conn.read_requests(settings.max_pipeline, &mut requests) => r,
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        };
        match read {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(ConnectionError::Protocol(why)) => {
                ctx.metrics.protocol_error();
                put_error(&mut out.buf, &format!("ERR Protocol error: {why}"));
                let _ = conn.write_output(&mut out).await;
                return Err(ConnectionError::Protocol(why));
            }
            // As Redis does, an idle client is closed without a word.
            Err(ConnectionError::TimedOut(TimedOut::Idle)) => {
                ctx.metrics.client_timed_out(TimedOut::Idle);
                return Err(ConnectionError::TimedOut(TimedOut::Idle));
            }
            Err(ConnectionError::TimedOut(TimedOut::Request)) => {
                ctx.metrics.client_timed_out(TimedOut::Request);
                put_error(
                    &mut out.buf,
                    &format!(
                        "ERR Protocol error: the request did not arrive in full within {} ms of its first byte",
                        settings.request_read_timeout.as_millis()
                    ),
                );
                let _ = tokio::time::timeout(FAREWELL_TIMEOUT, conn.write_output(&mut out)).await;
                return Err(ConnectionError::TimedOut(TimedOut::Request));
            }
            Err(e) => return Err(e),
        }
        let started = Instant::now();
        let ran = run_batch(
            &mut requests,
            &mut session,
            &ctx,
            &settings,
            started,
            &mut conn,
            &mut out,
            &mut shutdown,
        )
        .await;
        if ran.is_ok() {
            if out.len() >= settings.output_limit.soft {
                drain(&mut conn, &mut out, &ctx, &settings).await?;
            } else {
                conn.write_output(&mut out).await?;
            }
        }
        let (read, written) = conn.take_counts();
        ctx.metrics.bytes_in(read);
        ctx.metrics.bytes_out(written);
        ran?;
        if session.quit {
            return Ok(());
        }
    }
}

/// Back-pressure: writes every unsent reply of `out` before the connection
/// goes on (nothing more of it is read or run meanwhile); a client that
/// does not take them within the soft output time is closed.
async fn drain(
    conn: &mut Connection,
    out: &mut Output,
    ctx: &Context,
    settings: &Settings,
) -> Result<(), ConnectionError> {
    ctx.metrics.output_limit(OutputEvent::Backpressure, 1);
    match tokio::time::timeout(settings.output_limit.soft_time, conn.write_output(out)).await {
        Ok(written) => written,
        Err(_) => {
            ctx.metrics.output_limit(OutputEvent::Closed, 1);
            Err(ConnectionError::Unread(out.len()))
        }
    }
}

/// The lower-case name a request's command counts under in the metrics
/// (a container's, for a subcommand), from the command table (no
/// allocation); "other" for a command that is not in it.
fn static_name(spec: Option<usize>) -> &'static str {
    match spec {
        Some(i) => {
            let name = commands::COMMANDS[i].name;
            name.split_once('|')
                .map_or(name, |(container, _)| container)
        }
        None => "other",
    }
}

/// The redirect to the leader a client can follow, as Redis Cluster's:
/// `MOVED <slot> <host:port>` names the leader's client address (redis-cli
/// -c reconnects there and sends the command again). raft-kv has no hash
/// slots, every key lives on the leader: the slot is always 0.
fn moved(leader: &LeaderInfo) -> Option<String> {
    leader
        .client_address
        .as_ref()
        .map(|address| format!("MOVED 0 {address}"))
}

/// The RESP error a client sees for a failed write or read; `leader` is
/// the leader this node knows of (for a redirect when the call could not
/// reach it).
pub fn error_reply(e: &NodeError, leader: Option<&LeaderInfo>) -> String {
    match e {
        NodeError::NotLeader { leader: None } => {
            "CLUSTERDOWN no leader: the cluster is electing one or cannot reach a quorum; retry"
                .into()
        }
        // Never the leader's peer address: clients cannot use it.
        NodeError::NotLeader { leader: Some(l) } => moved(l).unwrap_or_else(|| {
            format!(
                "TRYAGAIN not the leader; the leader is {}, whose client address this node has not heard yet; retry",
                l.id
            )
        }),
        NodeError::LeadershipLost | NodeError::Retry(_) => format!("TRYAGAIN {e}"),
        NodeError::Timeout { .. } => format!("TIMEOUT {e}"),
        NodeError::Busy => format!("BUSY {e}"),
        // This node cannot reach the leader (it may be down: an election
        // follows); its client may, so the leader's client address is
        // named, but not as a redirect to follow blindly.
        NodeError::Transport(_) => match leader.and_then(|l| Some((&l.id, l.client_address.as_ref()?))) {
            Some((id, address)) => format!(
                "TRYAGAIN this node cannot reach the leader {id} (clients reach it at {address}): {e}; retry"
            ),
            None => format!("TRYAGAIN cannot reach the leader: {e}"),
        },
        NodeError::Remote(m) => format!("ERR the leader answered: {m}"),
        _ => format!("ERR {e}"),
    }
}

/// One request as read, parsed.
struct Request {
    /// Its entry in the command table ([`commands::lookup`]).
    spec: Option<usize>,
    name: &'static str,
    command: Command,
    args: Vec<Bytes>,
}

/// Takes the next requests of `parsed` (the next one last) into a batch
/// while `fits` accepts their command and the gate lets them run; their
/// names go to `names`. A request the gate stops stays, with the gate's
/// answer in `next_gate`.
#[allow(clippy::too_many_arguments)]
fn take_batch<T>(
    parsed: &mut Vec<Request>,
    names: &mut Vec<&'static str>,
    next_gate: &mut Option<Gate>,
    session: &mut Session,
    ctx: &Context,
    mut fits: impl FnMut(&Command) -> bool,
    unwrap: impl Fn(Command) -> Option<T>,
) -> Vec<T> {
    let mut batch = Vec::new();
    while let Some(next) = parsed.last() {
        if !fits(&next.command) {
            break;
        }
        match gate(next, session, ctx) {
            Gate::Run => {}
            other => {
                *next_gate = Some(other);
                break;
            }
        }
        let Some(request) = parsed.pop() else {
            break;
        };
        let Some(item) = unwrap(request.command) else {
            unreachable!("`fits` accepted the command: it is of the batch's kind")
        };
        names.push(request.name);
        batch.push(item);
    }
    batch
}

/// What the gate decided for a request.
enum Gate {
    /// Run it.
    Run,
    /// Reply with this error instead.
    Refuse(String),
    /// Close the connection: its user was deleted or turned off.
    Close,
}

/// Whether `request` may run on this connection now: a command that does
/// not exist (or has the wrong arity) gets its error whoever asks; while
/// the node does not know its users only PING and QUIT run; before AUTH
/// only AUTH, HELLO and QUIT; after it, what the user's rules allow.
fn gate(request: &Request, session: &mut Session, ctx: &Context) -> Gate {
    if matches!(request.command, Command::Refused(_)) {
        return Gate::Run;
    }
    let view = ctx.acl.view();
    match acl::resolve(&mut session.auth, &view) {
        Identity::Closed => Gate::Close,
        Identity::Loading => match request.command {
            Command::Local(Local::Ping(_) | Local::Quit) => Gate::Run,
            _ => Gate::Refuse(LOADING.into()),
        },
        Identity::Anonymous => {
            if cmd::server::allowed_before_auth(&request.command) {
                Gate::Run
            } else {
                Gate::Refuse("NOAUTH Authentication required.".into())
            }
        }
        Identity::User(user) => {
            // Every command that parses has an entry; one added without
            // would run unchecked, so it is refused instead (fail closed).
            let Some(spec) = request.spec else {
                ctx.metrics.acl_denied(AclDenial::Command);
                return Gate::Refuse(format!(
                    "NOPERM '{}' has no entry in the command table: no user may run it",
                    request.name
                ));
            };
            match user.check(spec, &request.args) {
                Ok(()) => Gate::Run,
                Err(Denied::Command) => {
                    ctx.metrics.acl_denied(AclDenial::Command);
                    Gate::Refuse(format!(
                        "NOPERM User {} has no permissions to run the '{}' command",
                        String::from_utf8_lossy(user.name()),
                        commands::COMMANDS[spec].name
                    ))
                }
                Err(Denied::Key(_)) => {
                    ctx.metrics.acl_denied(AclDenial::Key);
                    Gate::Refuse("NOPERM No permissions to access a key".into())
                }
            }
        }
    }
}

/// Whether `w` is `SET key value` without a condition, `GET` or a
/// relative time (which may be out of range once added to the log's time),
/// whose reply is `+OK` whatever the store holds.
fn is_plain_set(w: &crate::store::Write) -> bool {
    matches!(
        w,
        crate::store::Write::Set {
            condition: crate::store::SetCondition::Always,
            get: false,
            ttl: crate::store::SetTtl::Clear
                | crate::store::SetTtl::Keep
                | crate::store::SetTtl::At(_),
            ..
        }
    )
}

/// Runs the requests in order and adds their replies to `out`; whenever
/// the unsent replies reach the soft output limit, they are written before
/// the next request runs ([`drain`]). Fails only if the client is closed
/// for not reading them.
#[allow(clippy::too_many_arguments)]
async fn run_batch(
    requests: &mut Vec<Vec<Bytes>>,
    session: &mut Session,
    ctx: &Context,
    settings: &Settings,
    started: Instant,
    conn: &mut Connection,
    output: &mut Output,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let mut parsed: Vec<Request> = requests
        .drain(..)
        .map(|args| {
            let spec = commands::lookup(&args);
            Request {
                spec,
                name: static_name(spec),
                command: cmd::parse(&args),
                args,
            }
        })
        .collect();
    parsed.reverse();
    let mut names = Vec::new();
    // The gate's answer for the next request, when a batch already asked.
    let mut next_gate: Option<Gate> = None;
    while let Some(request) = parsed.pop() {
        if output.len() >= settings.output_limit.soft {
            drain(conn, output, ctx, settings).await?;
        }
        let out = &mut output.buf;
        match next_gate
            .take()
            .unwrap_or_else(|| gate(&request, session, ctx))
        {
            Gate::Run => {}
            Gate::Refuse(e) => {
                // Refused while queued: EXEC will fail (EXECABORT).
                session.tx.flag();
                put_error(out, &e);
                ctx.metrics.record(request.name, false, started.elapsed());
                continue;
            }
            Gate::Close => {
                session.quit = true;
                return Ok(());
            }
        }
        let name = request.name;
        let command = if session.tx.in_multi() {
            let max = ctx.node.max_entry_bytes().unwrap_or(usize::MAX);
            // Redis refuses at queue time only unknown commands and those
            // whose number of arguments its table refuses; the rest of
            // its argument errors (MSET's pairs, PING's extra argument)
            // come when the command runs: in EXEC's array.
            let command = match request.command {
                Command::Refused(e)
                    if request.spec.is_some_and(|i| {
                        let spec = &commands::COMMANDS[i];
                        !spec.is_subcommand() && spec.arity_ok(request.args.len())
                    }) =>
                {
                    Command::Invalid(e)
                }
                c => c,
            };
            match session.tx.queue(command, max, out) {
                Some(c) => c,
                None => {
                    ctx.metrics.record(name, true, started.elapsed());
                    continue;
                }
            }
        } else {
            request.command
        };
        match command {
            Command::Write(w) if blocking::is_blocking(&w) => {
                // Alone, not batched: it may wait (outside MULTI only: in
                // a transaction it is queued, and pops or not at once).
                match blocking::run(w, ctx, settings, conn, shutdown).await {
                    Ok(done) => {
                        // The wait is not the server's latency.
                        let from = done.timed_from.into_std().max(started);
                        finish(done.result.map(|r| vec![r]), &[name], ctx, from, output)
                    }
                    Err(_) => {
                        // The client left, or the server is stopping: no
                        // reply, and the rest of the requests is not run.
                        ctx.metrics.record(name, false, started.elapsed());
                        session.quit = true;
                        return Ok(());
                    }
                }
            }
            Command::Write(w) => {
                // The entry's bytes: its format byte and its writes.
                let mut bytes = 1 + encoded_write_len(&w);
                let batch_max =
                    MAX_BATCH_BYTES.min(ctx.node.max_entry_bytes().unwrap_or(usize::MAX));
                names.clear();
                names.push(name);
                let mut writes = vec![w];
                writes.extend(take_batch(
                    &mut parsed,
                    &mut names,
                    &mut next_gate,
                    session,
                    ctx,
                    |c| match c {
                        Command::Write(next) if !blocking::is_blocking(next) => {
                            bytes += encoded_write_len(next);
                            bytes <= batch_max
                        }
                        _ => false,
                    },
                    |c| match c {
                        Command::Write(w) => Some(w),
                        _ => None,
                    },
                ));
                if let Some(early) = crate::fault::early_ack() {
                    if ctx.node.role() == raft_node::Role::Leader && writes.iter().all(is_plain_set)
                    {
                        // The bug: +OK once the leader's own log holds
                        // them, whatever becomes of the entry after.
                        let ok = Bytes::from("+OK\r\n".repeat(writes.len()));
                        // An entry of its own, not behind the one under
                        // way (the proposer's), which may wait for its
                        // commit.
                        let durable = early.when_durable(&writes);
                        let entry = crate::store::encode_writes(&writes);
                        let node = ctx.node.clone();
                        let mut proposal =
                            tokio::spawn(async move { node.command_without_session(entry).await });
                        let result = tokio::select! {
                            Ok(()) = durable => Ok(ok),
                            done = &mut proposal => {
                                done.unwrap_or(Err(NodeError::ShuttingDown))
                            }
                        };
                        finish(result.map(|r| vec![r]), &names, ctx, started, output);
                        continue;
                    }
                }
                let limits = Limits {
                    bytes: batch_max,
                    writes: settings.max_pipeline,
                };
                let bytes = writes.iter().map(encoded_write_len).sum();
                let result = ctx
                    .writes
                    .propose(&ctx.node, &ctx.metrics, writes, bytes, limits)
                    .await;
                finish(result.map(|r| vec![r]), &names, ctx, started, output);
            }
            Command::Read(r) => {
                names.clear();
                names.push(name);
                let mut reads = vec![r];
                reads.extend(take_batch(
                    &mut parsed,
                    &mut names,
                    &mut next_gate,
                    session,
                    ctx,
                    |c| matches!(c, Command::Read(_)),
                    |c| match c {
                        Command::Read(r) => Some(r),
                        _ => None,
                    },
                ));
                run_reads(
                    &reads, &names, session, ctx, settings, started, conn, output,
                )
                .await?;
            }
            Command::Local(local) => {
                cmd::server::run(local, session, ctx, settings, out).await;
                ctx.metrics.record(name, true, started.elapsed());
                if session.quit {
                    return Ok(());
                }
            }
            Command::Invalid(e) | Command::Refused(e) => {
                put_error(out, &e);
                ctx.metrics.record(name, false, started.elapsed());
            }
            Command::Answer(frame) => {
                frame.encode(out);
                ctx.metrics.record(name, true, started.elapsed());
            }
        }
    }
    Ok(())
}

/// Runs consecutive reads as few linearizable queries as the output limits
/// allow: each query answers, in order, the reads whose replies fit the
/// room left under the soft limit (the first under the hard limit), sized
/// by the store before it builds them; a read whose reply alone would
/// exceed the hard limit gets an error naming it. Between queries the
/// replies are written if they reached the soft limit ([`drain`]). The
/// store answers in parts ([`raft_node::Node::read_parts`]): the stored
/// values a reply holds are queued as they are, shared, not copied; the
/// limits count the bytes to send all the same.
#[allow(clippy::too_many_arguments)]
async fn run_reads(
    reads: &[Read],
    names: &[&'static str],
    session: &Session,
    ctx: &Context,
    settings: &Settings,
    started: Instant,
    conn: &mut Connection,
    output: &mut Output,
) -> Result<(), ConnectionError> {
    let limit = settings.output_limit;
    let mut from = 0;
    while from < reads.len() {
        if output.len() >= limit.soft {
            drain(conn, output, ctx, settings).await?;
        }
        let unsent = output.len();
        let room = ReplyRoom {
            soft: limit.soft.saturating_sub(unsent),
            hard: limit.hard.saturating_sub(unsent),
            limit: limit.hard,
        };
        let query = encode_bounded_reads(&reads[from..], room);
        let result = if session.local_reads {
            ctx.node.read_local_parts(query).await
        } else {
            match barrier(ctx).await {
                Ok(()) => ctx.node.read_parts(query).await,
                Err(e) => Err(e),
            }
        };
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => {
                finish(Err(e), &names[from..], ctx, started, output);
                return Ok(());
            }
        };
        let Some(bounded) = split_bounded_answer(&answer) else {
            // Not an answer to a bounded query: the store's error.
            finish(Ok(answer), &names[from..], ctx, started, output);
            return Ok(());
        };
        if bounded.answered == 0 {
            // The next reply fits once the unsent ones are out.
            if unsent == 0 {
                // Cannot happen: with nothing unsent the first read has the
                // whole hard limit, and a larger reply is refused.
                for n in &names[from..] {
                    put_error(&mut output.buf, "ERR the store answered no read");
                    ctx.metrics.record(n, false, started.elapsed());
                }
                return Ok(());
            }
            drain(conn, output, ctx, settings).await?;
            continue;
        }
        let to = (from + bounded.answered).min(reads.len());
        ctx.metrics.read_batch(to - from);
        if bounded.refused > 0 {
            ctx.metrics
                .output_limit(OutputEvent::ReplyRefused, bounded.refused as u64);
        }
        finish(Ok(bounded.replies), &names[from..to], ctx, started, output);
        from = to;
    }
    Ok(())
}

/// With the early-acknowledgement bug on ([`crate::fault`]), commits a
/// no-op write through the log, which commits every write the leader
/// acknowledged before it: a read that follows sees them. Without it,
/// nothing.
pub(crate) async fn barrier(ctx: &Context) -> Result<(), NodeError> {
    if crate::fault::early_ack().is_none() {
        return Ok(());
    }
    let entry = crate::store::encode_writes(&[crate::fault::barrier_write()]);
    ctx.node.command_without_session(entry).await.map(drop)
}

/// Queues the replies of the requests `names` (in parts, sent one after
/// the other), or the error each gets, and counts them.
fn finish(
    result: Result<Vec<Bytes>, NodeError>,
    names: &[&'static str],
    ctx: &Context,
    started: Instant,
    output: &mut Output,
) {
    let latency = started.elapsed();
    match result {
        Ok(replies) => {
            for part in replies {
                output.push(part);
            }
            for n in names {
                ctx.metrics.record(n, true, latency);
            }
        }
        Err(e) => {
            let reply = error_reply(&e, ctx.node.leader().as_ref());
            for n in names {
                put_error(&mut output.buf, &reply);
                ctx.metrics.record(n, false, latency);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(request: &str) -> &'static str {
        let args: Vec<Bytes> = request
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        static_name(commands::lookup(&args))
    }

    #[test]
    fn redirects_name_the_leaders_client_address() {
        let leader = |client: Option<&str>| LeaderInfo {
            id: "n2".into(),
            address: "10.0.0.2:7001".into(),
            client_address: client.map(str::to_string),
        };
        let known = leader(Some("10.0.0.2:6379"));
        let not_leader = |l: &LeaderInfo| NodeError::NotLeader {
            leader: Some(l.clone()),
        };
        assert_eq!(
            error_reply(&not_leader(&known), None),
            "MOVED 0 10.0.0.2:6379"
        );
        let unknown = leader(None);
        let e = error_reply(&not_leader(&unknown), None);
        assert!(
            e.starts_with("TRYAGAIN not the leader; the leader is n2,"),
            "{e}"
        );
        assert!(!e.contains("7001"), "a peer address in {e}");
        let unreachable = NodeError::Transport(raft_node::transport::TransportError::Closed {
            address: "10.0.0.2:7001".into(),
        });
        assert_eq!(
            error_reply(&unreachable, Some(&known)),
            "TRYAGAIN this node cannot reach the leader n2 (clients reach it at 10.0.0.2:6379): the connection to 10.0.0.2:7001 is closed; retry"
        );
        assert!(error_reply(&unreachable, Some(&unknown)).starts_with("TRYAGAIN cannot reach"));
        assert!(
            error_reply(&NodeError::NotLeader { leader: None }, None).starts_with("CLUSTERDOWN")
        );
    }

    #[test]
    fn requests_count_under_their_command() {
        assert_eq!(name("GET k"), "get");
        assert_eq!(name("Config Get maxmemory"), "config");
        assert_eq!(name("acl whoami"), "acl");
        assert_eq!(name("RAFT.STATUS"), "raft.status");
        assert_eq!(name("bzpopmin z 0"), "other");
    }

    #[test]
    fn every_command_counts_under_its_own_name() {
        for c in commands::COMMANDS.iter().filter(|c| !c.is_subcommand()) {
            assert_eq!(name(c.name), c.name);
        }
    }
}
