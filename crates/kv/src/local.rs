//! Local clusters of `raft-kv serve` processes, for `raft-kv demo`,
//! `raft-kv cluster` and tests.
//!
//! Every node is a child process with its own data directory
//! (`<dir>/<id>`) and its stderr log in `<dir>/<id>.log`; all are founded
//! together with a static `--members` list. [`LocalCluster::start`] returns
//! once every node printed its "clients on" line. Nodes can then be killed
//! (SIGKILL), terminated (SIGTERM, then SIGKILL after a timeout) and
//! restarted with the same flags. Dropping the cluster kills every node
//! that is still running, so no process outlives its launcher's normal
//! exit paths, errors and panics included.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

pub mod error;

pub use error::{LocalError, NodeNotReady, NotReady};

/// The host every local node listens on.
pub const HOST: &str = "127.0.0.1";

/// How many lines of a node's log an error message shows.
const LOG_TAIL_LINES: usize = 15;

/// The environment variable `raft-kv serve` reads its password from.
const PASSWORD_ENV: &str = "RAFT_KV_REQUIREPASS";

/// Which ports the nodes use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// Free ports picked by the system; with or without admin endpoints.
    Free {
        /// Give every node an admin HTTP endpoint too.
        admin: bool,
    },
    /// Node `i` (from 0) uses `client + i`, `peer + i` and `admin + i`.
    From {
        /// The first client (RESP) port.
        client: u16,
        /// The first peer (Raft) port.
        peer: u16,
        /// The first admin port, if the nodes have admin endpoints.
        admin: Option<u16>,
    },
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The `raft-kv` executable.
    pub binary: PathBuf,
    /// The parent directory of the nodes' data directories and logs.
    pub dir: PathBuf,
    /// The cluster's name (`--cluster`).
    pub name: String,
    /// How many nodes; their ids are `n1`, `n2`, ...
    pub nodes: usize,
    /// Which ports they use.
    pub ports: Ports,
    /// The client password, if any (passed in the environment, not argv).
    pub requirepass: Option<String>,
    /// More `serve` flags given to every node (timing, log level).
    pub extra_args: Vec<String>,
    /// Mutual TLS between the nodes (the default): a throwaway CA in
    /// `<dir>/ca` and a certificates directory per node, `<dir>/<id>-certs`,
    /// made on the first start and kept. False: `--insecure`.
    pub tls: bool,
    /// How long a node may take to print its "clients on" line.
    pub start_timeout: Duration,
}

impl ClusterSpec {
    /// `nodes` nodes of the running executable on free ports in `dir`.
    pub fn new(dir: impl Into<PathBuf>, nodes: usize) -> Result<ClusterSpec, LocalError> {
        let binary = std::env::current_exe().map_err(LocalError::Executable)?;
        Ok(ClusterSpec {
            binary,
            dir: dir.into(),
            name: "raft-kv-local".into(),
            nodes,
            ports: Ports::Free { admin: false },
            requirepass: None,
            extra_args: Vec::new(),
            tls: true,
            start_timeout: Duration::from_secs(15),
        })
    }
}

/// Where one node listens and keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id (`n1`, ...).
    pub id: String,
    /// Where clients connect (`127.0.0.1:port`).
    pub client_addr: String,
    /// Where peers connect.
    pub peer_addr: String,
    /// The admin endpoint, if any.
    pub admin_addr: Option<String>,
    /// The node's data directory.
    pub data_dir: PathBuf,
    /// The file its stderr (its log) goes to.
    pub log: PathBuf,
}

/// One node process (running or not).
#[derive(Debug)]
pub struct LocalNode {
    info: NodeInfo,
    args: Vec<OsString>,
    child: Option<Child>,
}

impl LocalNode {
    /// Where the node listens and keeps its files.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// The node's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Whether the process was started and has not been seen to exit.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last lines of the node's log, indented, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.info.log, LOG_TAIL_LINES)
    }
}

/// A running local cluster; dropping it kills every node still running.
#[derive(Debug)]
pub struct LocalCluster {
    binary: PathBuf,
    requirepass: Option<String>,
    start_timeout: Duration,
    nodes: Vec<LocalNode>,
}

/// The last `n` lines of a log file, indented by four spaces.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => return format!("    (cannot read {}: {e})", path.display()),
    };
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "    (the log is empty)".into();
    }
    let mut out = String::new();
    for l in &lines[lines.len().saturating_sub(n)..] {
        let _ = writeln!(out, "    {l}");
    }
    out.truncate(out.trim_end().len());
    out
}

/// Binds `count` free ports on [`HOST`] at once (so that they differ) and
/// releases them.
pub fn free_ports(count: usize) -> Result<Vec<u16>, LocalError> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let l = StdListener::bind((HOST, 0)).map_err(LocalError::NoFreePort)?;
        held.push(l);
    }
    held.iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(LocalError::NoFreePort)
        })
        .collect()
}

/// Checks that every `(port, what)` can be bound on [`HOST`] now, the way
/// the nodes bind them (with SO_REUSEADDR: connections of a node that just
/// stopped, in TIME_WAIT, do not make a port look taken).
fn check_ports_free(ports: &[(u16, String)]) -> Result<(), LocalError> {
    let mut held = Vec::new();
    for (port, what) in ports {
        let bound = tokio::net::TcpSocket::new_v4().and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(std::net::SocketAddr::from(([127, 0, 0, 1], *port)))?;
            Ok(s)
        });
        match bound {
            Ok(s) => held.push(s),
            Err(source) => {
                return Err(LocalError::PortTaken {
                    port: *port,
                    what: what.clone(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// The nodes' addresses and files.
fn plan(spec: &ClusterSpec) -> Result<Vec<NodeInfo>, LocalError> {
    let n = spec.nodes;
    let (clients, peers, admins): (Vec<u16>, Vec<u16>, Vec<Option<u16>>) = match &spec.ports {
        Ports::Free { admin } => {
            let per = if *admin { 3 } else { 2 };
            let p = free_ports(n * per)?;
            (
                (0..n).map(|i| p[i * per]).collect(),
                (0..n).map(|i| p[i * per + 1]).collect(),
                (0..n).map(|i| admin.then(|| p[i * per + 2])).collect(),
            )
        }
        Ports::From {
            client,
            peer,
            admin,
        } => {
            let range = |first: u16, flag: &'static str| -> Result<Vec<u16>, LocalError> {
                (0..n)
                    .map(|i| {
                        u16::try_from(first as usize + i)
                            .ok()
                            .filter(|p| *p != 0)
                            .ok_or(LocalError::PortRange {
                                flag,
                                first,
                                nodes: n,
                            })
                    })
                    .collect()
            };
            let clients = range(*client, "port")?;
            let peers = range(*peer, "peer-port")?;
            let admins = match admin {
                Some(a) => range(*a, "admin-port")?.into_iter().map(Some).collect(),
                None => vec![None; n],
            };
            let mut all: Vec<(u16, String)> = Vec::new();
            for i in 0..n {
                all.push((clients[i], format!("the client port of n{}", i + 1)));
                all.push((peers[i], format!("the peer port of n{}", i + 1)));
                if let Some(a) = admins[i] {
                    all.push((a, format!("the admin port of n{}", i + 1)));
                }
            }
            for (i, (p, what)) in all.iter().enumerate() {
                if let Some((_, other)) = all[..i].iter().find(|(q, _)| q == p) {
                    return Err(LocalError::PortsOverlap {
                        port: *p,
                        first: other.clone(),
                        second: what.clone(),
                    });
                }
            }
            check_ports_free(&all)?;
            (clients, peers, admins)
        }
    };
    Ok((0..n)
        .map(|i| {
            let id = format!("n{}", i + 1);
            NodeInfo {
                client_addr: format!("{HOST}:{}", clients[i]),
                peer_addr: format!("{HOST}:{}", peers[i]),
                admin_addr: admins[i].map(|a| format!("{HOST}:{a}")),
                data_dir: spec.dir.join(&id),
                log: spec.dir.join(format!("{id}.log")),
                id,
            }
        })
        .collect())
}

fn serve_args(spec: &ClusterSpec, nodes: &[NodeInfo], me: &NodeInfo) -> Vec<OsString> {
    let members = nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.peer_addr))
        .collect::<Vec<_>>()
        .join(",");
    let mut args: Vec<OsString> = vec![
        "serve".into(),
        "--id".into(),
        me.id.clone().into(),
        "--cluster".into(),
        spec.name.clone().into(),
        "--peer-addr".into(),
        me.peer_addr.clone().into(),
        "--client-addr".into(),
        me.client_addr.clone().into(),
        "--data-dir".into(),
        me.data_dir.clone().into(),
        "--members".into(),
        members.into(),
    ];
    if let Some(a) = &me.admin_addr {
        args.push("--admin-addr".into());
        args.push(a.clone().into());
    }
    if spec.tls {
        args.push("--certs-dir".into());
        args.push(certs_dir(spec, &me.id).into());
    } else {
        args.push("--insecure".into());
    }
    args.extend(spec.extra_args.iter().map(OsString::from));
    args
}

/// Node `id`'s certificates directory.
pub fn certs_dir(spec: &ClusterSpec, id: &str) -> PathBuf {
    spec.dir.join(format!("{id}-certs"))
}

/// The directory of a local cluster's CA.
pub fn ca_dir(spec: &ClusterSpec) -> PathBuf {
    spec.dir.join("ca")
}

/// Makes the cluster's CA and each node's certificate, unless they are
/// there from an earlier start (a kept `--data-dir`).
fn ensure_certificates(spec: &ClusterSpec) -> Result<(), LocalError> {
    use raft_node::tls::{CertificateAuthority, Validity};
    let failed = LocalError::Certificates;
    let ca_dir = ca_dir(spec);
    let ca_key = ca_dir.join(crate::tls::CA_KEY);
    let ca = if ca_key.exists() {
        crate::cert::load_authority(&ca_dir, None, None).map_err(failed)?
    } else {
        let ca =
            CertificateAuthority::generate(Validity::days(3650)).map_err(|e| failed(e.into()))?;
        crate::cert::write_authority(&ca, &ca_dir, &ca_key, true).map_err(failed)?;
        ca
    };
    for i in 1..=spec.nodes {
        let id = format!("n{i}");
        let dir = certs_dir(spec, &id);
        let fine = crate::tls::peer_tls(&dir).is_ok_and(|tls| tls.is_for_node(&spec.name, &id));
        if !fine {
            let _ = std::fs::remove_dir_all(&dir);
            crate::cert::make_node_dir(&ca, &spec.name, &id, &[HOST.to_string()], 3650, &dir)
                .map_err(failed)?;
        }
    }
    Ok(())
}

impl LocalCluster {
    /// Starts every node and waits until each listens. Free ports are
    /// picked again (up to three times) if another process took one
    /// between the choice and the start: a node's `raft-kv serve` then
    /// exits with the code of [`StartErrorKind::AddressInUse`]
    /// ([`LocalError::is_address_in_use`]).
    ///
    /// [`StartErrorKind::AddressInUse`]: crate::serve::StartErrorKind::AddressInUse
    pub async fn start(spec: &ClusterSpec) -> Result<LocalCluster, LocalError> {
        if spec.nodes == 0 {
            return Err(LocalError::NoNodes);
        }
        std::fs::create_dir_all(&spec.dir).map_err(|source| LocalError::CreateDir {
            dir: spec.dir.clone(),
            source,
        })?;
        let fresh = !(1..=spec.nodes).any(|i| spec.dir.join(format!("n{i}")).exists());
        if spec.tls {
            ensure_certificates(spec)?;
        }
        let mut attempt = 1;
        loop {
            let nodes = plan(spec)?;
            match LocalCluster::start_planned(spec, nodes).await {
                Ok(c) => return Ok(c),
                Err(e)
                    if attempt < 3
                        && fresh
                        && matches!(spec.ports, Ports::Free { .. })
                        && e.is_address_in_use() =>
                {
                    attempt += 1;
                    for i in 1..=spec.nodes {
                        let _ = std::fs::remove_dir_all(spec.dir.join(format!("n{i}")));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn start_planned(
        spec: &ClusterSpec,
        infos: Vec<NodeInfo>,
    ) -> Result<LocalCluster, LocalError> {
        let mut cluster = LocalCluster {
            binary: spec.binary.clone(),
            requirepass: spec.requirepass.clone(),
            start_timeout: spec.start_timeout,
            nodes: infos
                .iter()
                .map(|info| LocalNode {
                    args: serve_args(spec, &infos, info),
                    info: info.clone(),
                    child: None,
                })
                .collect(),
        };
        // Start them all, then wait for each: they start in parallel.
        let mut outputs = Vec::new();
        for i in 0..cluster.nodes.len() {
            outputs.push(cluster.spawn(i)?);
        }
        let waits = outputs.into_iter().map(|out| cluster.wait_ready(out));
        let results = futures_join_all(waits).await;
        let mut failed = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            if let Err(why) = r {
                failed.push(cluster.start_failure(i, why).await);
            }
        }
        if !failed.is_empty() {
            // `cluster` is dropped here: the nodes that did start are killed.
            return Err(LocalError::NotReady(failed));
        }
        Ok(cluster)
    }

    /// Starts node `i`'s process; returns its stdout.
    fn spawn(&mut self, i: usize) -> Result<ChildStdout, LocalError> {
        let node = &mut self.nodes[i];
        let id = &node.info.id;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.info.log)
            .map_err(|source| LocalError::LogFile {
                id: id.clone(),
                log: node.info.log.clone(),
                source,
            })?;
        let _ = writeln!(
            log,
            "--- raft-kv: starting {id}: {} {} ---",
            self.binary.display(),
            node.args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut cmd = Command::new(&self.binary);
        cmd.args(&node.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .env_remove(PASSWORD_ENV)
            // The log is a file: no colour codes in it.
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        if let Some(p) = &self.requirepass {
            cmd.env(PASSWORD_ENV, p);
        }
        // If this process dies without stopping its nodes (SIGKILL, a
        // crash), the kernel sends them SIGTERM: no node outlives the demo
        // or the cluster command holding its ports.
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| LocalError::Spawn {
            id: id.clone(),
            binary: self.binary.clone(),
            source,
        })?;
        let stdout = child
            .stdout
            .take()
            .expect("a child spawned with a piped stdout has one");
        node.child = Some(child);
        Ok(stdout)
    }

    /// Reads a node's stdout until its "clients on" line, then keeps
    /// draining it in the background (so a later write never fails).
    /// Returns why the node is not ready otherwise.
    async fn wait_ready(&self, stdout: ChildStdout) -> Result<(), NotReady> {
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(self.start_timeout, async {
            loop {
                match lines.next_line().await {
                    Ok(Some(l)) if l.contains("clients on") => return Ok(()),
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(NotReady::Exited),
                    Err(e) => return Err(NotReady::Output(e)),
                }
            }
        })
        .await
        .unwrap_or(Err(NotReady::Timeout(self.start_timeout)));
        if ready.is_ok() {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        }
        ready
    }

    /// The error for node `i` that did not start: why, its exit status (it
    /// is killed if it still runs) and the end of its log.
    async fn start_failure(&mut self, i: usize, why: NotReady) -> NodeNotReady {
        let node = &mut self.nodes[i];
        let mut status = None;
        if let Some(mut child) = node.child.take() {
            // An exiting process gets a moment, so that its last words
            // are in the log and its status is known.
            status = match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
                Ok(Ok(s)) => Some(s),
                _ => {
                    let _ = child.start_kill();
                    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                    None
                }
            };
        }
        NodeNotReady {
            info: node.info.clone(),
            why,
            status,
            log_tail: log_tail(&node.info.log, LOG_TAIL_LINES),
        }
    }

    /// The nodes, in order `n1`, `n2`, ...
    pub fn nodes(&self) -> &[LocalNode] {
        &self.nodes
    }

    /// Node `i` (from 0).
    pub fn node(&self, i: usize) -> &LocalNode {
        &self.nodes[i]
    }

    /// Node `i` (from 0), mutable (to ask whether it runs).
    pub fn node_mut(&mut self, i: usize) -> &mut LocalNode {
        &mut self.nodes[i]
    }

    /// The index of the node with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.info.id == id)
    }

    /// Kills node `i` with SIGKILL and waits for it to be gone.
    pub async fn kill(&mut self, i: usize) -> Result<(), LocalError> {
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            child.start_kill().ok();
            tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .map_err(|_| LocalError::KillTimeout {
                    id: node.info.id.clone(),
                })?
                .map_err(|source| LocalError::Wait {
                    id: node.info.id.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Stops node `i` gracefully: SIGTERM, then SIGKILL if it has not
    /// exited within `timeout`. Returns its exit status, or `None` if it
    /// had to be killed (or was not running).
    pub async fn terminate(
        &mut self,
        i: usize,
        timeout: Duration,
    ) -> Result<Option<ExitStatus>, LocalError> {
        let node = &mut self.nodes[i];
        let Some(mut child) = node.child.take() else {
            return Ok(None);
        };
        terminate_child(&node.info.id, &mut child, timeout).await
    }

    /// Stops every node gracefully and at once (see
    /// [`LocalCluster::terminate`]); returns each node's exit status.
    pub async fn stop(
        &mut self,
        timeout: Duration,
    ) -> Vec<(String, Result<Option<ExitStatus>, LocalError>)> {
        let stops = self.nodes.iter_mut().map(|n| {
            let child = n.child.take();
            let id = n.info.id.clone();
            async move {
                let r = match child {
                    Some(mut c) => terminate_child(&id, &mut c, timeout).await,
                    None => Ok(None),
                };
                (id, r)
            }
        });
        futures_join_all(stops).await
    }

    /// Starts node `i` again with the same flags (stopping it first,
    /// gracefully, if it still runs) and waits until it listens.
    pub async fn restart(&mut self, i: usize) -> Result<(), LocalError> {
        if self.nodes[i].child.is_some() {
            self.terminate(i, Duration::from_secs(5)).await?;
        }
        let out = self.spawn(i)?;
        if let Err(why) = self.wait_ready(out).await {
            return Err(LocalError::NotReady(vec![self.start_failure(i, why).await]));
        }
        Ok(())
    }

    /// Nodes that exited on their own since the last look, with their
    /// status; they are then no longer running.
    pub fn exited(&mut self) -> Vec<(String, ExitStatus)> {
        let mut gone = Vec::new();
        for n in &mut self.nodes {
            if let Some(c) = &mut n.child {
                if let Ok(Some(status)) = c.try_wait() {
                    gone.push((n.info.id.clone(), status));
                    n.child = None;
                }
            }
        }
        gone
    }
}

impl Drop for LocalCluster {
    /// Kills every node still running and waits (up to two seconds) until
    /// they are gone, so that their directory can be removed right after.
    fn drop(&mut self) {
        let mut children: Vec<Child> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.child.take())
            .collect();
        for c in &mut children {
            let _ = c.start_kill();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
            if children.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// SIGTERM, wait up to `timeout`, then SIGKILL.
async fn terminate_child(
    id: &str,
    child: &mut Child,
    timeout: Duration,
) -> Result<Option<ExitStatus>, LocalError> {
    if let Ok(Some(status)) = child.try_wait() {
        return Ok(Some(status));
    }
    if let Some(pid) = child.id() {
        sigterm(pid);
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => Ok(Some(status)),
        Ok(Err(source)) => Err(LocalError::Wait {
            id: id.to_string(),
            source,
        }),
        Err(_) => {
            let _ = child.start_kill();
            match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                Ok(_) => Ok(None),
                Err(_) => Err(LocalError::StopTimeout { id: id.to_string() }),
            }
        }
    }
}

/// Ctrl-C and SIGTERM, listened for from creation on (a signal that
/// arrives between two waits is not lost), so that a launcher can stop its
/// nodes instead of dying and leaving them behind.
pub struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Starts listening for Ctrl-C (SIGINT) and SIGTERM.
    pub fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Waits for the next signal; says which it was (`interrupted` or
    /// `terminated`).
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.interrupt) => "interrupted",
                _ = next(&mut self.terminate) => "terminated",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted"
        }
    }
}

impl Default for Signals {
    fn default() -> Signals {
        Signals::new()
    }
}

/// Runs futures concurrently on this task and collects their outputs in
/// order (a tiny `join_all`, to avoid a dependency).
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    use std::pin::Pin;
    use std::task::Poll;
    let mut pending: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, out) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

/// Sends SIGTERM to `pid` (a graceful stop for a node).
fn sigterm(pid: u32) {
    #[cfg(unix)]
    // SAFETY: kill(2) with a pid of our own child and a valid signal.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::StartErrorKind;

    #[test]
    fn free_ports_differ() {
        let p = free_ports(6).unwrap();
        let mut q = p.clone();
        q.sort();
        q.dedup();
        assert_eq!(q.len(), 6);
    }

    #[test]
    fn a_taken_port_is_named() {
        let held = StdListener::bind((HOST, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let mut spec = ClusterSpec::new("/nonexistent", 2).unwrap();
        spec.ports = Ports::From {
            client: port,
            peer: free_ports(1).unwrap()[0],
            admin: None,
        };
        // n1's client port is checked first.
        let e = plan(&spec).unwrap_err();
        assert!(
            matches!(&e, LocalError::PortTaken { port: p, .. } if *p == port),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.contains(&format!("port {port} (the client port of n1) is taken")),
            "{e}"
        );
    }

    #[test]
    fn overlapping_ranges_are_refused() {
        let mut spec = ClusterSpec::new("/nonexistent", 3).unwrap();
        spec.ports = Ports::From {
            client: 40000,
            peer: 40002,
            admin: None,
        };
        let e = plan(&spec).unwrap_err();
        assert!(
            matches!(e, LocalError::PortsOverlap { port: 40002, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("overlap"), "{e}");
    }

    #[test]
    fn the_log_tail_is_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("n1.log");
        std::fs::write(
            &log,
            (1..=30).map(|i| format!("line {i}\n")).collect::<String>(),
        )
        .unwrap();
        let t = log_tail(&log, 3);
        assert_eq!(t, "    line 28\n    line 29\n    line 30");
        assert!(log_tail(&dir.path().join("none"), 3).contains("cannot read"));
    }

    /// A stand-in for `raft-kv serve` in `dir`: a script that exits with
    /// `code` the first `failures` times it runs (it counts its runs in
    /// `dir/runs`), then prints a ready line and sleeps.
    fn fake_serve(dir: &Path, failures: usize, code: u8) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("fake-serve");
        let runs = dir.join("runs");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho run >> '{runs}'\nif [ \"$(wc -l < '{runs}')\" -le {failures} ]; then echo 'failed on purpose' >&2; exit {code}; fi\necho 'raft-kv node n1 of cluster c: clients on 127.0.0.1:1'\nexec sleep 30\n",
                runs = runs.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    fn runs(dir: &Path) -> usize {
        std::fs::read_to_string(dir.join("runs"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    fn fake_spec(dir: &Path, failures: usize, code: u8) -> ClusterSpec {
        let mut spec = ClusterSpec::new(dir.join("cluster"), 1).unwrap();
        spec.binary = fake_serve(dir, failures, code);
        spec.tls = false;
        spec
    }

    #[tokio::test]
    async fn a_start_whose_port_was_taken_is_tried_again_on_new_ports() {
        let dir = tempfile::tempdir().unwrap();
        let in_use = StartErrorKind::AddressInUse.exit_code();
        let cluster = LocalCluster::start(&fake_spec(dir.path(), 1, in_use))
            .await
            .expect("the second attempt starts");
        assert_eq!(runs(dir.path()), 2);
        drop(cluster);

        // Taken every time: given up after three attempts, saying why.
        let dir = tempfile::tempdir().unwrap();
        let e = LocalCluster::start(&fake_spec(dir.path(), 10, in_use))
            .await
            .unwrap_err();
        assert_eq!(runs(dir.path()), 3);
        assert!(e.is_address_in_use(), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("exit status: 3: an address"), "{e}");
        assert!(e.contains("failed on purpose"), "{e}");
    }

    #[tokio::test]
    async fn a_start_that_failed_otherwise_is_not_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let tls = StartErrorKind::Tls.exit_code();
        let e = LocalCluster::start(&fake_spec(dir.path(), 10, tls))
            .await
            .unwrap_err();
        assert_eq!(runs(dir.path()), 1);
        assert!(!e.is_address_in_use(), "{e:?}");
        match &e {
            LocalError::NotReady(nodes) => {
                assert_eq!(nodes.len(), 1);
                assert_eq!(nodes[0].start_error(), Some(StartErrorKind::Tls));
                assert!(matches!(nodes[0].why, NotReady::Exited), "{e:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_node_that_fails_to_start_shows_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = ClusterSpec::new(dir.path(), 1).unwrap();
        // `sh serve --id ...` looks for a script named `serve`, complains
        // on stderr and exits: a node that dies before listening.
        spec.binary = PathBuf::from("/bin/sh");
        let e = LocalCluster::start(&spec).await.unwrap_err();
        assert!(!e.is_address_in_use(), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("node n1"), "{e}");
        assert!(e.contains("exited before listening"), "{e}");
        assert!(e.contains("No such file"), "{e}");
        assert!(e.contains("n1.log"), "{e}");
    }
}
