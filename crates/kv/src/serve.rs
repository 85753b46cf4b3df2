//! `raft-kv serve`: one node with its file store, TCP transport, RESP
//! listener and optional admin endpoint.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use raft_node::persistence::file::{FaultFs, FileOptions};
use raft_node::persistence::Persistence;
use raft_node::tls::TlsConfig;
use raft_node::transport::Transport;
use raft_node::{
    ApplyMode, Bootstrap, FilePersistence, Node, Options, ReadMode, Role, TcpOptions, TcpTransport,
};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::acl::{PasswordHash, SharedUsers};
use crate::config::{Settings, Start};
use crate::context::Context;
use crate::datadir::{DataDir, FlagsVerdict, StoredState};
use crate::local::Signals;
use crate::metrics::Metrics;
use crate::store::KvStore;
use crate::tls::ReloadableAcceptor;

pub mod error;

pub use error::{exit_codes_help, Listener, ServeError, StartError, StartErrorKind, TlsMaterial};

/// A running server.
pub struct Running {
    /// What its parts share.
    pub ctx: Arc<Context>,
    /// Where clients connect.
    pub client_addr: SocketAddr,
    /// Where TLS clients connect (`--tls-port`).
    pub tls_addr: Option<SocketAddr>,
    /// Where the admin endpoint listens.
    pub admin_addr: Option<SocketAddr>,
    /// The certificates directory of the peer TLS, if any.
    certs_dir: Option<std::path::PathBuf>,
    /// The admin endpoint's TLS, if any.
    admin_tls: Option<ReloadableAcceptor>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Held while the server runs: no other process opens the same store.
    _lock: std::fs::File,
}

/// The node's id: given, or kept in `<data>/node-id`, or new.
fn node_id(settings: &Settings, dir: &Path) -> Result<String, StartError> {
    let file = dir.join("node-id");
    let stored = match std::fs::read_to_string(&file) {
        Ok(s) => Some(s.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(StartError::data_dir(dir, "read", &file, e)),
    };
    let id = match (&settings.id, stored) {
        (Some(given), Some(stored)) if *given != stored => {
            return Err(StartError::OtherNode {
                given: given.clone(),
                stored,
                file,
            })
        }
        (_, Some(stored)) => return Ok(stored),
        (Some(given), None) => given.clone(),
        (None, None) => (Options::default().uuid)(),
    };
    let tmp = dir.join("node-id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &file))
        .map_err(|e| StartError::data_dir(dir, "write", &file, e))?;
    Ok(id)
}

/// The environment variable of a fault for tests of the chaos suite:
/// `RAFT_KV_TEST_FAULT_FAIL_SYNC_AFTER=N` lets the store's first `N`
/// fsyncs succeed and fails every later one with `EIO`, as a dying disk
/// does. Never set it outside such tests.
pub const FAULT_FAIL_SYNC_AFTER: &str = "RAFT_KV_TEST_FAULT_FAIL_SYNC_AFTER";

/// The environment variable of another fault for tests of the chaos
/// suite: `RAFT_KV_TEST_FAULT_STALL_SYNC_WHILE=PATH` makes every fsync of
/// the store wait while a file exists at `PATH`, as a disk that hangs does.
/// Never set it outside such tests.
pub const FAULT_STALL_SYNC_WHILE: &str = "RAFT_KV_TEST_FAULT_STALL_SYNC_WHILE";

/// The faulty file layer [`FAULT_FAIL_SYNC_AFTER`] and
/// [`FAULT_STALL_SYNC_WHILE`] ask for, if they do.
fn fault_fs() -> Result<Option<Arc<FaultFs>>, StartError> {
    let stall = std::env::var_os(FAULT_STALL_SYNC_WHILE).map(std::path::PathBuf::from);
    let Ok(value) = std::env::var(FAULT_FAIL_SYNC_AFTER) else {
        return Ok(stall.map(|path| {
            warn!("{FAULT_STALL_SYNC_WHILE}={}: every fsync waits while that file exists (a fault for tests)", path.display());
            let fs = FaultFs::new();
            fs.stall_syncs_while(path);
            Arc::new(fs)
        }));
    };
    let n: u64 = value.parse().map_err(|_| StartError::Setting {
        setting: FAULT_FAIL_SYNC_AFTER,
        reason: format!("{FAULT_FAIL_SYNC_AFTER}={value:?}: expected a number of fsyncs"),
    })?;
    warn!("{FAULT_FAIL_SYNC_AFTER}={n}: every fsync after the first {n} fails (a fault for tests)");
    let fs = FaultFs::new();
    fs.fail_syncs_after(n);
    if let Some(path) = stall {
        fs.stall_syncs_while(path);
    }
    Ok(Some(Arc::new(fs)))
}

/// Starts a server: opens the store, starts the node, listens for clients
/// (and the admin endpoint), and for a joining node asks to be added.
pub async fn start(mut settings: Settings) -> Result<Running, StartError> {
    crate::limits::fit_connections(&mut settings).map_err(|reason| StartError::Setting {
        setting: "the descriptor limit (ulimit -n)",
        reason,
    })?;
    let settings = Arc::new(settings);
    let dir = &settings.data_dir;
    // Until `keep`, a failure removes what this start made in `dir`.
    let data = DataDir::open(dir)?;
    let id = node_id(&settings, dir)?;
    let cluster = data.cluster(settings.cluster.as_deref())?;
    // No spinning for the next save: raft-kv shares its cores with its
    // clients (and, on one machine, with other nodes); a sleeping writer
    // costs a wake-up, a spinning one a core.
    let mut file_options = FileOptions::default()
        .spin(std::time::Duration::ZERO)
        .expect_identity(&id, &cluster);
    if let Some(fs) = fault_fs()? {
        file_options = file_options.fs(fs);
    }
    let store = dir.join("raft");
    let file = Arc::new(
        FilePersistence::open_with(&store, file_options)
            .await
            .map_err(|source| StartError::Store {
                path: store.clone(),
                source,
            })?,
    );
    let tcp_options = TcpOptions::new(&id, &cluster);
    let tcp_options = match &settings.certs_dir {
        Some(dir) => tcp_options.with_tls(load_peer_tls(dir, &id, &cluster)?),
        None => {
            warn!(
                "RUNNING WITHOUT TLS BETWEEN NODES (--insecure): Raft traffic is plaintext and unauthenticated; anyone who can reach {} can read and write every key and change the cluster's members. Use --certs-dir outside a closed test network.",
                settings.peer_addr
            );
            tcp_options.insecure()
        }
    };
    let tcp = Arc::new(TcpTransport::new(tcp_options).map_err(StartError::Transport)?);
    let client_tls = match &settings.client_tls {
        Some((_, files)) => {
            Some(
                ReloadableAcceptor::new(files.clone()).map_err(|source| StartError::Tls {
                    material: TlsMaterial::ClientPort,
                    source,
                })?,
            )
        }
        None => None,
    };
    let admin_tls = match &settings.admin_tls {
        Some(files) => {
            Some(
                ReloadableAcceptor::new(files.clone()).map_err(|source| StartError::Tls {
                    material: TlsMaterial::Admin,
                    source,
                })?,
            )
        }
        None => None,
    };
    // Clients first: a port in use is found before the node starts.
    let clients = listen(Listener::Client, &settings.client_addr).await?;
    if !crate::config::is_loopback(&settings.client_addr) {
        warn!(
            address = %settings.client_addr,
            "clients connect in plaintext on a non-loopback address: passwords and data cross the network in clear; serve remote clients with --tls-addr or --tls-port"
        );
    }
    let tls_clients = match &settings.client_tls {
        Some((address, _)) => Some(listen(Listener::Tls, address).await?),
        None => None,
    };
    let admin = match &settings.admin_addr {
        Some(a) => Some(listen(Listener::Admin, a).await?),
        None => None,
    };
    // Only the hash of --requirepass is kept: for this node until it has
    // the cluster's users, and for the init entry if it founds them.
    let local_password = settings
        .requirepass
        .as_deref()
        .map(|p| PasswordHash::of(p.as_bytes()));
    let users = Arc::new(SharedUsers::new(local_password));
    let wakeups = Arc::new(crate::blocking::Wakeups::new());
    let bootstrap = match &settings.start {
        Start::Single => Bootstrap::Single,
        Start::Members(m) => Bootstrap::Static(m.clone()),
        Start::Join(_) => Bootstrap::Join,
    };
    let (transport, persistence): (Arc<dyn Transport>, Arc<dyn Persistence>) =
        match crate::fault::from_env().map_err(|reason| StartError::Setting {
            setting: crate::fault::EARLY_ACK,
            reason,
        })? {
            Some(_) => {
                let early = crate::fault::early_ack().expect("just turned on");
                (
                    Arc::new(crate::fault::HeldBack::new(tcp.clone(), early.hold)),
                    Arc::new(crate::fault::Durable::new(file.clone(), early)),
                )
            }
            None => (tcp.clone(), file.clone()),
        };
    let node = Node::new(Options {
        id: Some(id.clone()),
        cluster: Some(cluster.clone()),
        address: Some(settings.peer_addr.clone()),
        transport: Some(transport),
        persistence: Some(persistence),
        state_machine: Some(Box::new(
            KvStore::publishing_users_to(users.clone()).waking(wakeups.clone()),
        )),
        bootstrap,
        heartbeat_interval: settings.heartbeat,
        election_timeout_min: settings.election_timeout_min,
        election_timeout_max: settings.election_timeout_max,
        read_mode: if settings.lease_reads {
            ReadMode::Lease
        } else {
            ReadMode::ReadIndex
        },
        snapshot_threshold: settings.snapshot_threshold,
        // The store is in memory: every command and query takes
        // microseconds, so the driver applies them and answers at once
        // (snapshots and restores run on a blocking task).
        apply_mode: ApplyMode::Inline,
        snapshot_spool: Some(dir.join("spool")),
        command_timeout: settings.command_timeout,
        forward_to_leader: !settings.redirect,
        client_address: Some(advertised_client_address(
            bound(Listener::Client, &settings.client_addr, &clients)?,
            &settings.peer_addr,
        )),
        ..Options::default()
    })
    .await
    .map_err(|e| StartError::from_node(e, &store))?;
    if data.held_state() {
        if let Err(e) = check_start_flags(&settings, &node) {
            let _ = node.shutdown().await;
            return Err(e);
        }
    }
    let client_addr = bound(Listener::Client, &settings.client_addr, &clients)?;
    let tls_addr = match (&tls_clients, &settings.client_tls) {
        (Some(l), Some((address, _))) => Some(bound(Listener::Tls, address, l)?),
        _ => None,
    };
    let admin_addr = match (&admin, &settings.admin_addr) {
        (Some(l), Some(address)) => Some(bound(Listener::Admin, address, l)?),
        _ => None,
    };
    let ctx = Arc::new(Context {
        node: node.clone(),
        metrics: Arc::new(Metrics::new()),
        writes: Default::default(),
        wakeups,
        acl: users.clone(),
        file: Some(file),
        tcp: Some(tcp),
        client_tls: client_tls.clone(),
        client_address: client_addr.to_string(),
        admin_address: admin_addr.map(|a| a.to_string()),
        started: Instant::now(),
    });
    let (shutdown, watch_rx) = watch::channel(false);
    // Both client listeners share one limit on connections.
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let mut tasks = vec![tokio::spawn(crate::server::serve(
        clients,
        ctx.clone(),
        settings.clone(),
        slots.clone(),
        None,
        watch_rx.clone(),
    ))];
    if let Some(l) = tls_clients {
        tasks.push(tokio::spawn(crate::server::serve(
            l,
            ctx.clone(),
            settings.clone(),
            slots,
            client_tls,
            watch_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(crate::users_init::run(
        node.clone(),
        users,
        local_password,
        watch_rx.clone(),
    )));
    if let Some(l) = admin {
        tasks.push(tokio::spawn(crate::admin::serve_admin(
            l,
            ctx.clone(),
            admin_tls.clone(),
            watch_rx.clone(),
        )));
    }
    if let Start::Join(member) = &settings.start {
        let (node, member) = (node.clone(), member.clone());
        tasks.push(tokio::spawn(async move {
            match node.join_cluster(&member).await {
                Ok(()) => info!(%member, "joined the cluster"),
                Err(e) => warn!(%member, error = %e, "could not join the cluster"),
            }
        }));
    }
    Ok(Running {
        ctx,
        client_addr,
        tls_addr,
        admin_addr,
        certs_dir: settings.certs_dir.clone(),
        admin_tls,
        shutdown,
        tasks,
        _lock: data.keep(),
    })
}

/// Listens for `listener` on `address`.
async fn listen(listener: Listener, address: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen {
            listener,
            address: address.to_string(),
            source,
        })
}

/// The address `l` (listening for `listener` on `address`) is bound to.
fn bound(listener: Listener, address: &str, l: &TcpListener) -> Result<SocketAddr, StartError> {
    l.local_addr().map_err(|source| StartError::Listen {
        listener,
        address: address.to_string(),
        source,
    })
}

/// The address a client elsewhere reaches this node's RESP port at, as
/// redirects name it: the client listener's, with a wildcard host
/// (0.0.0.0, ::) replaced by the host of `peer_addr`, which other
/// machines reach this one at.
pub fn advertised_client_address(client: SocketAddr, peer_addr: &str) -> String {
    if !client.ip().is_unspecified() {
        return client.to_string();
    }
    match peer_addr.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{}", client.port()),
        None => client.to_string(),
    }
}

/// Checks `--members` and `--join` against the state the node started
/// from: says in the log what they no longer do, refuses what contradicts
/// it.
fn check_start_flags(settings: &Settings, node: &Node) -> Result<(), StartError> {
    let stored = StoredState {
        id: node.id().to_string(),
        cluster: node.cluster().to_string(),
        founding: node.founding_members().to_vec(),
        members: node.members(),
    };
    match crate::datadir::check_start_flags(&settings.start, &stored, &settings.data_dir) {
        Ok(FlagsVerdict::Fine) => {}
        Ok(FlagsVerdict::Note(note)) => info!("{note}"),
        Ok(FlagsVerdict::Warn(warning)) => warn!("{warning}"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Reads the node's TLS material from `dir` and checks that it is this
/// node's, with errors that say what to do.
fn load_peer_tls(dir: &Path, id: &str, cluster: &str) -> Result<TlsConfig, StartError> {
    let tls = crate::tls::peer_tls(dir).map_err(|source| StartError::Tls {
        material: TlsMaterial::Peer {
            certs_dir: dir.to_path_buf(),
        },
        source,
    })?;
    if !tls.is_for_node(cluster, id) {
        return Err(StartError::NotThisNodesCertificate {
            certs_dir: dir.to_path_buf(),
            id: id.to_string(),
            cluster: cluster.to_string(),
        });
    }
    Ok(tls)
}

impl Running {
    /// Reads every TLS file again (SIGHUP): the peer certificate and CA
    /// bundle, the TLS port's and the admin endpoint's certificates. What
    /// fails to load keeps its old configuration; the errors say which.
    pub fn reload_tls(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let (Some(dir), Some(tcp)) = (&self.certs_dir, &self.ctx.tcp) {
            let node = &self.ctx.node;
            match load_peer_tls(dir, node.id(), node.cluster()) {
                Ok(tls) => match tcp.reload_tls(tls) {
                    Ok(closed) => info!(closed, "peer TLS reloaded from {}", dir.display()),
                    Err(e) => errors.push(format!("peer TLS: {e}")),
                },
                Err(e) => errors.push(format!("peer TLS: {e}")),
            }
        }
        for (what, acceptor) in [
            ("the TLS port", &self.ctx.client_tls),
            ("--admin-tls", &self.admin_tls),
        ] {
            if let Some(acceptor) = acceptor {
                match acceptor.reload() {
                    Ok(()) => info!("{what} TLS reloaded"),
                    Err(e) => errors.push(format!("{what}: {e}")),
                }
            }
        }
        for e in &errors {
            warn!(error = %e, "TLS reload failed; the previous configuration stays");
        }
        errors
    }

    /// Stops listening, closes client connections, shuts the node down.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        if let Err(e) = self.ctx.node.shutdown().await {
            warn!(error = %e, "node shutdown");
        }
    }
}

/// Sets up logging: `level` (a flag), else RUST_LOG, else info; to stderr,
/// in colour only on a terminal (and not with `NO_COLOR`).
pub fn init_logging(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|e| {
            eprintln!("raft-kv: invalid --log-level '{l}': {e}; using info");
            EnvFilter::new("info")
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(crate::config::log_colors(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .try_init();
}

/// `raft-kv serve`: starts, prints where it listens, runs until SIGTERM or
/// Ctrl-C, then shuts down gracefully. An error's
/// [`exit_code`](ServeError::exit_code) says what failed.
pub async fn run(settings: Settings) -> Result<(), ServeError> {
    let admin_scheme = if settings.admin_tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Listen for signals before anything starts: a SIGTERM that arrives
    // between the ready line and the wait below must stop the node
    // gracefully, not kill it with the default action (a SIGTERM during
    // the start is held and stops it once started).
    let mut signals = Signals::new();
    let hangup = hangup_signal();
    let running = Arc::new(start(settings).await?);
    let node = &running.ctx.node;
    println!(
        "raft-kv node {} of cluster {}: clients on {}{}, peers on {} ({}){}",
        node.id(),
        node.cluster(),
        running.client_addr,
        running
            .tls_addr
            .map(|a| format!(" (TLS on {a})"))
            .unwrap_or_default(),
        node.address(),
        if running.certs_dir.is_some() {
            "mutual TLS"
        } else {
            "INSECURE: no TLS"
        },
        running
            .admin_addr
            .map(|a| format!(", admin on {admin_scheme}://{a}"))
            .unwrap_or_default()
    );
    let reloader = tokio::spawn(reload_on_hangup(running.clone(), hangup));
    let node = node.clone();
    info!(
        id = node.id(),
        role = ?node.role(),
        clients = %running.client_addr,
        "serving"
    );
    // Until a signal, or until the node stops acknowledging on its own (its
    // storage failed: a failed fsync, a full disk). Then the process exits
    // non-zero: a node that answers every request with an error would keep
    // its clients, and a supervisor, from noticing.
    let failed = tokio::select! {
        _ = signals.recv() => None,
        reason = node.stopped() => Some(reason),
    };
    match &failed {
        None => info!("shutting down"),
        Some(reason) if reason.is_storage_full() => error!(
            %reason,
            "the node stopped acknowledging: its disk is full; exiting with an error: free space, then restart it"
        ),
        Some(reason) => error!(
            %reason,
            "the node stopped acknowledging (storage failure): exiting with an error; fix the disk, then restart it"
        ),
    }
    reloader.abort();
    let _ = reloader.await;
    match &failed {
        None => hand_over(&node).await,
        Some(_) => handed_over_after_failure(&node).await,
    }
    match Arc::try_unwrap(running) {
        Ok(running) => running.stop().await,
        Err(_) => warn!("the server is still in use; stopping the node only"),
    }
    info!("stopped");
    match failed {
        None => Ok(()),
        Some(reason) => Err(ServeError::StorageFailed(reason)),
    }
}

/// After a storage failure the node itself hands leadership to its most
/// up-to-date voter if it led (it can no longer save anything, but it can
/// still send what it holds): waits, at most two seconds, for that.
async fn handed_over_after_failure(node: &Node) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while node.role() == Role::Leader && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    match node.leader() {
        Some(l) if l.id != node.id() => info!(leader = %l.id, "leadership handed over"),
        _ => {}
    }
}

/// A leader that is asked to stop first hands leadership to its most
/// up-to-date voter (as etcd does), so that clients see a short pause
/// rather than an election timeout. Best effort, at most two seconds.
async fn hand_over(node: &Node) {
    if node.role() != Role::Leader {
        return;
    }
    let Ok(peers) = node.peers().await else {
        return;
    };
    let best = peers
        .iter()
        .filter(|p| p.role == raft_node::MemberRole::Voter && p.connected)
        .max_by_key(|p| p.match_index.unwrap_or(0));
    if let Some(p) = best {
        let to = p.id.clone();
        match tokio::time::timeout(
            std::time::Duration::from_secs(2),
            node.transfer_leadership(&to),
        )
        .await
        {
            Ok(Ok(())) => info!(to = %to, "handed leadership over before stopping"),
            Ok(Err(e)) => warn!(to = %to, error = %e, "leadership hand-over failed"),
            Err(_) => warn!(to = %to, "leadership hand-over timed out"),
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

/// Starts listening for SIGHUP (whose default action would end the
/// process) before the node starts.
fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::hangup()).ok()
    }
}

/// Reloads the TLS files on every SIGHUP.
async fn reload_on_hangup(running: Arc<Running>, hangup: Hangup) {
    #[cfg(unix)]
    {
        let Some(mut hangup) = hangup else {
            return;
        };
        while hangup.recv().await.is_some() {
            info!("SIGHUP: reloading the TLS certificates");
            running.reload_tls();
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (running, hangup);
    }
}
