//! Commands this server answers itself: PING ECHO AUTH HELLO INFO COMMAND
//! CONFIG SELECT CLIENT QUIT READONLY READWRITE.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};

use super::table::index_of;
use super::{arity_error, Command, Local};
use crate::acl::commands::{CommandSpec, CATEGORIES, COMMANDS};
use crate::acl::{self, Auth, View};
use crate::config::Settings;
use crate::context::Context;
use crate::frame::{put_array, put_bulk, put_error, put_int, put_null, put_simple, Frame};
use crate::metrics::Metrics;
use crate::store::{encode_reads, glob_match, Read};

/// The version reported to clients (INFO, HELLO).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The Redis version raft-kv presents itself as: the protocol and command
/// set of Redis 7's string commands.
pub const REDIS_VERSION: &str = "7.0.0";

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

/// One client connection's state.
#[derive(Debug)]
pub struct Session {
    /// The client's id (CLIENT ID).
    pub id: u64,
    /// The peer's address.
    pub peer: String,
    /// Who the connection is (checked against the node's users before
    /// every command).
    pub auth: Auth,
    /// READONLY: reads are answered from this node's state, possibly stale.
    pub local_reads: bool,
    /// CLIENT SETNAME.
    pub name: Option<Bytes>,
    /// QUIT was received: close after replying.
    pub quit: bool,
    /// MULTI's queue and WATCH's keys.
    pub tx: super::transactions::TxState,
}

impl Session {
    /// A new connection's session: who it is is settled at its first
    /// command (the default user, if that one needs no password).
    pub fn new(peer: String) -> Session {
        Session {
            id: NEXT_CLIENT.fetch_add(1, Ordering::Relaxed),
            peer,
            auth: Auth::Pending,
            local_reads: false,
            name: None,
            quit: false,
            tx: Default::default(),
        }
    }

    /// Whether the connection is authenticated (as its gate last settled).
    pub fn is_authenticated(&self) -> bool {
        matches!(self.auth, Auth::User { .. } | Auth::Provisional(_))
    }
}

/// Whether `command` may run before AUTH. As in Redis, an unknown command
/// or a wrong number of arguments is reported before authentication is
/// checked; any other error (a bad option, a bad value) is not, so that an
/// unauthenticated client learns nothing but NOAUTH.
pub fn allowed_before_auth(command: &Command) -> bool {
    matches!(
        command,
        Command::Local(Local::Auth { .. } | Local::Hello { .. } | Local::Quit)
            | Command::Refused(_)
    )
}

/// INFO's TLS section: between nodes and on the TLS port, with the
/// counters of refused peers and clients.
fn info_tls(s: &mut String, ctx: &Context) {
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let _ = write!(s, "# TLS\r\n");
    if let Some(tcp) = &ctx.tcp {
        let stats = tcp.stats();
        let tls = tcp.tls();
        let _ = write!(
            s,
            "tls_peers:{}\r\ntls_peer_cert_not_after:{}\r\ntls_peer_handshake_failures:{}\r\ntls_peer_identity_mismatches:{}\r\ntls_peer_sender_mismatches:{}\r\ntls_peer_reloads:{}\r\ntls_peer_closed_by_reload:{}\r\n",
            if tls.is_some() { "mutual" } else { "off" },
            tls.map_or(0, |t| unix(t.certificate().not_after)),
            stats.tls_handshake_failures,
            stats.identity_mismatches,
            stats.sender_mismatches,
            stats.tls_reloads,
            stats.closed_by_reload,
        );
    }
    let _ = write!(
        s,
        "tls_clients:{}\r\ntls_client_cert_not_after:{}\r\ntls_client_handshake_failures:{}\r\n\r\n",
        if ctx.client_tls.is_some() { "on" } else { "off" },
        ctx.client_tls
            .as_ref()
            .map_or(0, |t| unix(t.certificate().not_after)),
        ctx.metrics.snapshot().tls_handshake_failures,
    );
}

/// Whether `name` is a valid client name (CLIENT SETNAME, HELLO SETNAME).
fn valid_client_name(name: &[u8]) -> bool {
    !name.iter().any(|b| *b <= b' ' || *b > b'~')
}

const BAD_CLIENT_NAME: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";

/// Parses a server command; `None` if the name is unknown.
pub fn parse(name: &[u8], args: &[Bytes]) -> Option<Command> {
    let n = args.len();
    let name_str = std::str::from_utf8(name).unwrap_or("?");
    let arity = |ok: bool, c: Local| {
        Some(if ok {
            Command::Local(c)
        } else {
            Command::Refused(arity_error(name_str))
        })
    };
    match name {
        b"ping" => arity(n <= 1, Local::Ping(args.first().cloned())),
        b"echo" => arity(
            n == 1,
            Local::Echo(args.first().cloned().unwrap_or_default()),
        ),
        b"auth" => arity(
            n == 1 || n == 2,
            Local::Auth {
                user: (n == 2).then(|| args[0].clone()),
                password: args.last().cloned().unwrap_or_default(),
            },
        ),
        b"hello" => Some(parse_hello(args)),
        b"info" => arity(true, Local::Info(args.to_vec())),
        b"command" => arity(true, Local::Command(args.to_vec())),
        b"config" => arity(n >= 1, Local::Config(args.to_vec())),
        b"select" => arity(
            n == 1,
            Local::Select(args.first().cloned().unwrap_or_default()),
        ),
        b"client" => arity(n >= 1, Local::Client(args.to_vec())),
        b"quit" => arity(true, Local::Quit),
        b"readonly" => arity(n == 0, Local::ReadOnly),
        b"readwrite" => arity(n == 0, Local::ReadWrite),
        _ => None,
    }
}

fn parse_hello(args: &[Bytes]) -> Command {
    let mut auth = None;
    let mut name = None;
    let version = args.first().cloned();
    let mut i = 1;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        match opt.as_slice() {
            b"AUTH" if i + 2 < args.len() => {
                auth = Some((args[i + 1].clone(), args[i + 2].clone()));
                i += 3;
            }
            b"SETNAME" if i + 1 < args.len() => {
                name = Some(args[i + 1].clone());
                i += 2;
            }
            // HELLO runs before AUTH, so its own errors are shown then too.
            _ => {
                return Command::Refused(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&args[i])
                ))
            }
        }
    }
    Command::Local(Local::Hello {
        version,
        auth,
        name,
    })
}

/// AUTH (and HELLO's AUTH option) against the users the node knows: on
/// success the connection is that user. As in Redis, asking for the
/// default user while it needs no password is an error (raft-kv says so
/// for `AUTH default password` too, where Redis would accept any password).
fn check_auth(
    user: Option<&[u8]>,
    password: &[u8],
    ctx: &Context,
    session: &mut Session,
) -> Result<(), String> {
    let view = ctx.acl.view();
    let Some(users) = view.users() else {
        return Err(crate::server::LOADING.into());
    };
    let name = user.unwrap_or(acl::DEFAULT_USER);
    if name == acl::DEFAULT_USER
        && users
            .get(acl::DEFAULT_USER)
            .is_some_and(|d| d.is_enabled() && d.is_nopass())
    {
        return Err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into());
    }
    let Some(u) = users.authenticate(name, password) else {
        ctx.metrics.acl_denied(crate::metrics::AclDenial::Auth);
        return Err("WRONGPASS invalid username-password pair or user is disabled.".into());
    };
    session.auth = match view {
        View::Local(_) => Auth::Provisional(acl::PasswordHash::of(password)),
        _ => Auth::User {
            name: u.name().clone(),
            serial: u.serial(),
        },
    };
    Ok(())
}

/// Runs a command answered by this server (RAFT.* included) and writes
/// its reply.
pub async fn run(
    local: Local,
    session: &mut Session,
    ctx: &Context,
    settings: &Settings,
    out: &mut BytesMut,
) {
    match local {
        Local::Ping(None) => put_simple(out, "PONG"),
        Local::Ping(Some(m)) | Local::Echo(m) => put_bulk(out, &m),
        Local::Auth { user, password } => {
            match check_auth(user.as_deref(), &password, ctx, session) {
                Ok(()) => put_simple(out, "OK"),
                Err(e) => put_error(out, &e),
            }
        }
        Local::Hello {
            version,
            auth,
            name,
        } => hello(version, auth, name, session, ctx, out),
        Local::Info(sections) => {
            let text = info(&sections, session, ctx, settings).await;
            put_bulk(out, text.as_bytes());
        }
        Local::Command(args) => command(&args, out),
        Local::Config(args) => config(&args, settings, &ctx.metrics, out),
        Local::Select(db) => {
            if db.as_ref() == b"0" {
                put_simple(out, "OK")
            } else if super::parse_i64(&db).is_none() {
                put_error(out, &super::not_integer())
            } else {
                put_error(out, "ERR DB index is out of range")
            }
        }
        Local::Client(args) => client(&args, session, out),
        Local::Quit => {
            session.quit = true;
            put_simple(out, "OK")
        }
        Local::ReadOnly => {
            session.local_reads = true;
            put_simple(out, "OK")
        }
        Local::ReadWrite => {
            session.local_reads = false;
            put_simple(out, "OK")
        }
        Local::RaftStatus
        | Local::RaftJoin { .. }
        | Local::RaftLeave(_)
        | Local::RaftTransfer(_) => super::raft::run(local, ctx, out).await,
        Local::Acl(sub) => super::acl::run(sub, &session.auth, session.local_reads, ctx, out).await,
        Local::Tx(c) => super::transactions::run(c, session, ctx, settings, out).await,
    }
}

fn hello(
    version: Option<Bytes>,
    auth: Option<(Bytes, Bytes)>,
    name: Option<Bytes>,
    session: &mut Session,
    ctx: &Context,
    out: &mut BytesMut,
) {
    if let Some(v) = &version {
        match super::parse_i64(v) {
            Some(2) => {}
            Some(_) => {
                return put_error(out, "NOPROTO sorry, this protocol version is not supported")
            }
            None => {
                return put_error(
                    out,
                    "ERR Protocol version is not an integer or out of range",
                )
            }
        }
    }
    if let Some((user, pass)) = auth {
        if let Err(e) = check_auth(Some(&user), &pass, ctx, session) {
            return put_error(out, &e);
        }
    }
    if !session.is_authenticated() {
        return put_error(
            out,
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    if let Some(name) = name {
        if !valid_client_name(&name) {
            return put_error(out, BAD_CLIENT_NAME);
        }
        session.name = (!name.is_empty()).then_some(name);
    }
    let role = if ctx.node.role() == raft_node::Role::Leader {
        "master"
    } else {
        "replica"
    };
    Frame::Array(vec![
        Frame::Bulk("server".into()),
        Frame::Bulk("raft-kv".into()),
        Frame::Bulk("version".into()),
        Frame::Bulk(REDIS_VERSION.into()),
        Frame::Bulk("proto".into()),
        Frame::Integer(2),
        Frame::Bulk("id".into()),
        Frame::Integer(session.id as i64),
        Frame::Bulk("mode".into()),
        Frame::Bulk("standalone".into()),
        Frame::Bulk("role".into()),
        Frame::Bulk(role.into()),
        Frame::Bulk("modules".into()),
        Frame::Array(vec![]),
    ])
    .encode(out);
}

/// One command as Redis 7's COMMAND shows it: name, arity, flags, first
/// key, last key, step, ACL categories, tips, key specifications (none
/// shown) and subcommands.
fn command_info(spec: &CommandSpec, out: &mut BytesMut) {
    put_array(out, 10);
    put_bulk(out, spec.name.as_bytes());
    put_int(out, spec.arity);
    put_array(out, spec.flags.len());
    for f in spec.flags {
        put_simple(out, f);
    }
    put_int(out, spec.first_key);
    put_int(out, spec.last_key);
    put_int(out, spec.key_step);
    let categories: Vec<&str> = CATEGORIES
        .iter()
        .enumerate()
        .filter(|(i, _)| spec.categories & (1 << i) != 0)
        .map(|(_, c)| *c)
        .collect();
    put_array(out, categories.len());
    for c in categories {
        put_simple(out, &format!("@{c}"));
    }
    put_array(out, 0);
    put_array(out, 0);
    let subs = subcommands_of(spec);
    put_array(out, subs.len());
    for sub in subs {
        command_info(sub, out);
    }
}

/// One command's documentation as Redis 7's COMMAND DOCS gives it: a map
/// (a flat array in RESP2) of its summary, since, group and complexity,
/// and a container's subcommands (a map of their names to their own).
fn command_docs(spec: &CommandSpec, out: &mut BytesMut) {
    let subs = subcommands_of(spec);
    let fields = [
        ("summary", spec.summary),
        ("since", spec.doc.since),
        ("group", spec.doc.group),
        ("complexity", spec.doc.complexity),
    ];
    put_array(out, fields.len() * 2 + if subs.is_empty() { 0 } else { 2 });
    for (name, value) in fields {
        put_bulk(out, name.as_bytes());
        put_bulk(out, value.as_bytes());
    }
    if !subs.is_empty() {
        put_bulk(out, b"subcommands");
        put_array(out, subs.len() * 2);
        for sub in subs {
            put_bulk(out, sub.name.as_bytes());
            command_docs(sub, out);
        }
    }
}

/// A container's subcommands, in the table's order (none for a command).
fn subcommands_of(spec: &CommandSpec) -> Vec<&'static CommandSpec> {
    let prefix = format!("{}|", spec.name);
    COMMANDS
        .iter()
        .filter(|c| c.name.starts_with(&prefix))
        .collect()
}

/// The top-level commands (subcommands are shown inside their container).
fn top_level() -> impl Iterator<Item = &'static CommandSpec> {
    COMMANDS.iter().filter(|c| !c.is_subcommand())
}

fn command(args: &[Bytes], out: &mut BytesMut) {
    let sub = args.first().map(|a| a.to_ascii_uppercase());
    match sub.as_deref() {
        None => {
            put_array(out, top_level().count());
            for c in top_level() {
                command_info(c, out);
            }
        }
        Some(b"COUNT") => put_int(out, top_level().count() as i64),
        Some(b"DOCS") => {
            // Every top-level command, or the ones named (unknown names
            // are left out, as in Redis).
            let named: Vec<&CommandSpec> = if args.len() == 1 {
                top_level().collect()
            } else {
                args[1..]
                    .iter()
                    .filter_map(|name| index_of(name).map(|i| &COMMANDS[i]))
                    .collect()
            };
            put_array(out, named.len() * 2);
            for c in named {
                put_bulk(out, c.name.as_bytes());
                command_docs(c, out);
            }
        }
        Some(b"LIST") => {
            put_array(out, top_level().count());
            for c in top_level() {
                put_bulk(out, c.name.as_bytes());
            }
        }
        Some(b"INFO") => {
            put_array(out, args.len() - 1);
            for name in &args[1..] {
                let name = name.to_ascii_lowercase();
                match COMMANDS.iter().find(|c| c.name.as_bytes() == name.as_slice()) {
                    Some(c) => command_info(c, out),
                    None => out.extend_from_slice(b"*-1\r\n"),
                }
            }
        }
        Some(other) => put_error(
            out,
            &format!(
                "ERR unknown subcommand '{}'. Try COMMAND, COMMAND COUNT, COMMAND INFO, COMMAND LIST or COMMAND DOCS.",
                String::from_utf8_lossy(other)
            ),
        ),
    }
}

fn config(args: &[Bytes], settings: &Settings, metrics: &Metrics, out: &mut BytesMut) {
    let sub = args[0].to_ascii_uppercase();
    match sub.as_slice() {
        b"GET" if args.len() >= 2 => {
            let params: Vec<(&str, String)> = vec![
                ("save", String::new()),
                ("appendonly", "no".into()),
                ("databases", "1".into()),
                ("maxclients", settings.max_connections.to_string()),
                ("proto-max-bulk-len", settings.max_request_bytes.to_string()),
                (
                    "client-output-buffer-limit",
                    format!("normal {}", settings.output_limit),
                ),
                (
                    "timeout",
                    settings.idle_timeout.map_or(0, |t| t.as_secs()).to_string(),
                ),
                ("maxmemory", "0".into()),
                ("bind", settings.client_addr.clone()),
                ("cluster-enabled", "no".into()),
            ];
            let mut found = Vec::new();
            for pattern in &args[1..] {
                let pattern = pattern.to_ascii_lowercase();
                for (name, value) in &params {
                    if glob_match(&pattern, name.as_bytes())
                        && !found.iter().any(|(n, _)| n == name)
                    {
                        found.push((*name, value.clone()));
                    }
                }
            }
            put_array(out, found.len() * 2);
            for (name, value) in found {
                put_bulk(out, name.as_bytes());
                put_bulk(out, value.as_bytes());
            }
        }
        b"GET" => put_error(out, &arity_error("config|get")),
        b"RESETSTAT" => {
            metrics.reset_stats();
            put_simple(out, "OK")
        }
        b"SET" | b"REWRITE" => put_error(
            out,
            "ERR raft-kv is configured by its flags and config file: restart the node to change a setting",
        ),
        _ => put_error(
            out,
            &format!(
                "ERR unknown subcommand '{}'. Try CONFIG GET.",
                String::from_utf8_lossy(&args[0])
            ),
        ),
    }
}

fn client(args: &[Bytes], session: &mut Session, out: &mut BytesMut) {
    let sub = args[0].to_ascii_uppercase();
    match (sub.as_slice(), args.len()) {
        (b"ID", 1) => put_int(out, session.id as i64),
        (b"SETNAME", 2) => {
            if !valid_client_name(&args[1]) {
                put_error(out, BAD_CLIENT_NAME)
            } else {
                session.name = (!args[1].is_empty()).then(|| args[1].clone());
                put_simple(out, "OK")
            }
        }
        (b"GETNAME", 1) => match &session.name {
            Some(n) => put_bulk(out, n),
            None => put_null(out),
        },
        // Client libraries announce themselves; nothing to keep.
        (b"SETINFO", 3) => put_simple(out, "OK"),
        (b"INFO", 1) | (b"LIST", 1) => {
            let line = format!(
                "id={} addr={} name={} db=0\n",
                session.id,
                session.peer,
                session
                    .name
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
            );
            put_bulk(out, line.as_bytes())
        }
        _ => put_error(
            out,
            &format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT ID, SETNAME, GETNAME, SETINFO, INFO.",
                String::from_utf8_lossy(&args[0])
            ),
        ),
    }
}

async fn info(sections: &[Bytes], session: &Session, ctx: &Context, settings: &Settings) -> String {
    let wanted: Vec<String> = sections
        .iter()
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| w == "all" || w == "default" || w == "everything");
    let want = |s: &str| all || wanted.iter().any(|w| w == s);
    let status = crate::admin::node_status(ctx).await;
    let mut s = String::new();
    if want("server") {
        let _ = write!(
            s,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nraft_kv_version:{VERSION}\r\nredis_mode:standalone\r\nos:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
            std::env::consts::OS,
            std::process::id(),
            ctx.client_address.rsplit(':').next().unwrap_or(""),
            ctx.started.elapsed().as_secs(),
        );
    }
    if want("clients") {
        let _ = write!(
            s,
            "# Clients\r\nconnected_clients:{}\r\nblocked_clients:{}\r\nmaxclients:{}\r\nthis_client_id:{}\r\nthis_client_reads:{}\r\n\r\n",
            ctx.metrics.snapshot().connections_current,
            ctx.wakeups.blocked(),
            settings.max_connections,
            session.id,
            if session.local_reads { "local" } else { "linearizable" },
        );
    }
    if want("stats") {
        let counts = ctx.metrics.stats();
        let latencies = [ctx.metrics.latency(false), ctx.metrics.latency(true)];
        let q = |w: bool, p: f64| {
            latencies[usize::from(w)]
                .quantile(p)
                .map(|d| format!("{:.3}", d.as_secs_f64() * 1000.0))
                .unwrap_or_else(|| "-".into())
        };
        let _ = write!(
            s,
            "# Stats\r\ntotal_connections_received:{}\r\nrejected_connections:{}\r\nclients_timed_out_idle:{}\r\nclients_timed_out_request:{}\r\nclient_output_backpressure:{}\r\nclient_output_limit_closed:{}\r\nreplies_refused_for_size:{}\r\nacl_access_denied_auth:{}\r\nacl_access_denied_cmd:{}\r\nacl_access_denied_key:{}\r\nacl_access_denied_channel:0\r\nwrite_latency_p50_ms:{}\r\nwrite_latency_p99_ms:{}\r\nread_latency_p50_ms:{}\r\nread_latency_p99_ms:{}\r\n\r\n",
            counts.connections_total,
            counts.connections_refused,
            counts.timed_out_idle,
            counts.timed_out_request,
            counts.output_backpressure,
            counts.output_limit_closed,
            counts.replies_refused_for_size,
            counts.acl_denied_auth,
            counts.acl_denied_command,
            counts.acl_denied_key,
            q(true, 0.5),
            q(true, 0.99),
            q(false, 0.5),
            q(false, 0.99),
        );
    }
    if want("replication") {
        let leader = status.role == "leader";
        let _ = write!(
            s,
            "# Replication\r\nrole:{}\r\nconnected_slaves:{}\r\n\r\n",
            if leader { "master" } else { "slave" },
            if leader {
                status.peers.iter().filter(|p| p.connected).count()
            } else {
                0
            }
        );
    }
    if want("raft") {
        let _ = write!(
            s,
            "# Raft\r\nraft_id:{}\r\nraft_cluster:{}\r\nraft_role:{}\r\nraft_term:{}\r\nraft_leader_id:{}\r\nraft_leader_address:{}\r\nraft_leader_client_address:{}\r\nraft_commit_index:{}\r\nraft_applied_index:{}\r\nraft_last_index:{}\r\nraft_snapshot_index:{}\r\nraft_apply_backlog_entries:{}\r\nraft_apply_backlog_bytes:{}\r\nraft_apply_proposals_waited:{}\r\nraft_apply_appends_deferred:{}\r\nraft_removed:{}\r\nraft_removed_index:{}\r\nraft_peers:{}\r\n",
            status.id,
            status.cluster,
            status.role,
            status.term,
            status.leader.as_ref().map(|l| l.id.as_str()).unwrap_or(""),
            status.leader.as_ref().map(|l| l.address.as_str()).unwrap_or(""),
            status
                .leader
                .as_ref()
                .and_then(|l| l.client_address.as_deref())
                .unwrap_or(""),
            status.commit_index,
            status.applied_index,
            status.last_index,
            status.snapshot_index,
            status.apply_backlog.entries,
            status.apply_backlog.bytes,
            status.apply_backlog.proposals_waited,
            status.apply_backlog.appends_deferred,
            u8::from(status.removed),
            status
                .removed_index
                .map(|i| i.to_string())
                .unwrap_or_default(),
            status.peers.len(),
        );
        for (i, p) in status.peers.iter().enumerate() {
            let _ = write!(
                s,
                "raft_peer{i}:id={},address={},role={},match={},lag={},connected={}\r\n",
                p.id,
                p.address,
                p.role,
                p.match_index.map(|m| m.to_string()).unwrap_or_default(),
                p.lag.map(|m| m.to_string()).unwrap_or_default(),
                p.connected as u8,
            );
        }
        s.push_str("\r\n");
    }
    if want("tls") {
        info_tls(&mut s, ctx);
    }
    if want("keyspace") {
        let counts = ctx
            .node
            .read_local(encode_reads(&[Read::DbSize, Read::VolatileLen]))
            .await
            .ok()
            .and_then(|b: bytes::Bytes| {
                let limits = Default::default();
                let (keys, used) = Frame::parse(&b[..], &limits).ok()?;
                let (volatile, _) = Frame::parse(&b[used..], &limits).ok()?;
                match (keys, volatile) {
                    (Frame::Integer(n), Frame::Integer(v)) => Some((n, v)),
                    _ => None,
                }
            });
        s.push_str("# Keyspace\r\n");
        if let Some((n, v)) = counts.filter(|(n, _)| *n > 0) {
            // avg_ttl is Redis's sampled estimate; raft-kv does not keep one.
            let _ = write!(s, "db0:keys={n},expires={v},avg_ttl=0\r\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_options_parse() {
        let a = |s: &str| -> Vec<Bytes> { s.split(' ').map(|x| x.to_string().into()).collect() };
        assert_eq!(
            parse_hello(&a("2 AUTH default pw SETNAME me")),
            Command::Local(Local::Hello {
                version: Some("2".into()),
                auth: Some(("default".into(), "pw".into())),
                name: Some("me".into()),
            })
        );
        assert!(matches!(
            parse_hello(&a("2 AUTH default")),
            Command::Refused(_)
        ));
        assert!(matches!(parse_hello(&a("2 FOO")), Command::Refused(_)));
    }

    /// The reply of `COMMAND args...`, parsed.
    fn command_reply(line: &str) -> Frame {
        let args: Vec<Bytes> = line.split(' ').map(|x| x.to_string().into()).collect();
        let mut out = BytesMut::new();
        command(&args, &mut out);
        let (f, used) = Frame::parse(&out, &crate::frame::Limits::default()).expect("one reply");
        assert_eq!(used, out.len());
        f
    }

    /// A RESP2 map (a flat array of names and values) as pairs.
    fn pairs(f: &Frame) -> Vec<(String, Frame)> {
        let Frame::Array(a) = f else {
            panic!("not a map: {f:?}")
        };
        assert_eq!(a.len() % 2, 0, "a map has pairs: {a:?}");
        a.chunks(2)
            .map(|p| match &p[0] {
                Frame::Bulk(k) => (String::from_utf8(k.to_vec()).unwrap(), p[1].clone()),
                other => panic!("a map's key is a bulk string: {other:?}"),
            })
            .collect()
    }

    fn text(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn command_docs_come_from_the_table() {
        // The named commands, in order; unknown names left out; any case.
        let docs = pairs(&command_reply("DOCS get NOSUCH HSet acl|whoami"));
        let names: Vec<&str> = docs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["get", "hset", "acl|whoami"]);
        assert_eq!(
            pairs(&docs[0].1),
            [
                ("summary".to_string(), text("the value of a key")),
                ("since".to_string(), text("1.0.0")),
                ("group".to_string(), text("string")),
                ("complexity".to_string(), text("O(1)")),
            ]
        );
        let hset = pairs(&docs[1].1);
        assert_eq!(hset[2], ("group".to_string(), text("hash")));
        // A container carries its subcommands' docs, keyed by their names.
        let acl = pairs(&command_reply("DOCS acl"));
        assert_eq!(acl.len(), 1);
        let fields = pairs(&acl[0].1);
        let (last, subs) = fields.last().unwrap();
        assert_eq!(last, "subcommands");
        let subs = pairs(subs);
        assert!(subs.iter().any(|(n, _)| n == "acl|setuser"), "{subs:?}");
        assert_eq!(
            subs.len(),
            subcommands_of(&COMMANDS[index_of(b"acl").unwrap()]).len()
        );
        // No name: every top-level command.
        let all = pairs(&command_reply("DOCS"));
        assert_eq!(all.len(), top_level().count());
        assert!(all.iter().all(|(n, _)| !n.contains('|')));
    }
}
