//! A harness for end-to-end tests of raft-kv: real `raft-kv serve`
//! processes on free local ports, each with its own data directory, driven
//! through the Redis protocol (the `redis` crate, or raw TCP).
//!
//! Every child process is killed when its [`Cluster`] is dropped, so a
//! failing test leaves nothing running. Waits panic with the tail of the
//! nodes' logs (stderr, kept in `<data dir>/stderr.log`), and a failing
//! test shows every node's log; `RAFT_KV_KEEP_TEST_DATA=1` keeps the data
//! directories of a failed test.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_raft-kv");

/// How long a node may take to print its ready line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a cluster may take to elect a leader all nodes agree on.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long "eventually" may take (replication, leadership changes).
pub const EVENTUALLY: Duration = Duration::from_secs(15);

/// Fast election timing, to keep the tests quick.
pub const TIMING: &[&str] = &[
    "--heartbeat-ms",
    "20",
    "--election-timeout-min-ms",
    "100",
    "--election-timeout-max-ms",
    "200",
];

/// `GET <path>` on an admin endpoint: the response body.
pub fn http_get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the admin endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// `n` distinct free TCP ports on 127.0.0.1: all are bound at once (so no
/// two are the same), then released for the nodes to take.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// The last `lines` lines of a file (or why it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// A node could not start: one of its addresses is in use.
#[derive(Debug)]
pub struct Busy;

/// One `raft-kv serve` process (running or not) and how to start it again.
pub struct Node {
    /// The node's id (`n1`, `n2`...).
    pub id: String,
    /// Where its peers reach it.
    pub peer_addr: String,
    /// Its client (RESP) port.
    pub client_port: u16,
    /// Its data directory (also holds `stderr.log`).
    pub data_dir: PathBuf,
    /// Every argument after `raft-kv`.
    pub args: Vec<String>,
    /// The limit on open descriptors (soft and hard) the process starts
    /// with, if not the test's own.
    pub nofile: Option<u64>,
    child: Option<Child>,
}

impl Node {
    /// Where clients connect.
    pub fn client_addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// A `redis://` URL for this node, with a password if given.
    pub fn url(&self, password: Option<&str>) -> String {
        match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.client_port),
            None => format!("redis://127.0.0.1:{}/", self.client_port),
        }
    }

    /// The node's log file.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("stderr.log")
    }

    /// The tail of the node's log.
    pub fn log_tail(&self) -> String {
        tail(&self.log_path(), 40)
    }

    /// Whether the process is running (started and not exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Starts the process and waits for its ready line. If one of its
    /// ports was taken meanwhile (by another process's outgoing
    /// connection, say), tries again for a few seconds: the ports of a
    /// restarted node cannot change.
    pub fn start(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.try_start() {
                Ok(()) => return,
                Err(Busy) if Instant::now() < deadline => thread::sleep(Duration::from_millis(200)),
                Err(Busy) => panic!(
                    "node {}: its ports stayed in use for 10 s\nlog:\n{}",
                    self.id,
                    self.log_tail()
                ),
            }
        }
    }

    /// Starts the process and waits for its ready line; `Err(Busy)` if it
    /// exited because one of its addresses is in use (its exit code says
    /// so); panics on any other failure.
    pub fn try_start(&mut self) -> Result<(), Busy> {
        assert!(self.child.is_none(), "node {} is already running", self.id);
        std::fs::create_dir_all(&self.data_dir).expect("create the data directory");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the log file");
        let mut command = Command::new(BIN);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(n) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            // Pass every line on, and keep draining after the ready line.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if line.starts_with(&format!("raft-kv node {} of cluster", self.id))
                        && line.contains(&format!("clients on {}", self.client_addr()))
                    {
                        return Ok(());
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.wait().ok());
                    self.child = None;
                    let in_use = raft_kv::serve::StartErrorKind::AddressInUse.exit_code();
                    if status.and_then(|s| s.code()) == Some(i32::from(in_use)) {
                        return Err(Busy);
                    }
                    panic!(
                        "node {} exited before it was ready ({status:?}); stdout: {seen:?}\nargs: {:?}\nlog:\n{}",
                        self.id,
                        self.args,
                        self.log_tail()
                    );
                }
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "node {} printed no ready line within {START_TIMEOUT:?}; stdout: {seen:?}\nlog:\n{}",
                    self.id,
                    self.log_tail()
                );
            }
        }
    }

    /// Waits up to `timeout` for the process to exit on its own; its exit
    /// status, or `None` if it is still running (or was not started).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait (up to 20 s) for a clean exit; panics if it does
    /// not exit, or exits with a failure.
    pub fn terminate(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", c.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match c.try_wait() {
                Ok(Some(s)) => {
                    assert!(
                        s.success(),
                        "node {} exited with {s} after SIGTERM\nlog:\n{}",
                        self.id,
                        self.log_tail()
                    );
                    return;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!(
                        "node {} did not exit within 20 s of SIGTERM\nlog:\n{}",
                        self.id,
                        self.log_tail()
                    );
                }
            }
        }
    }

    /// A connection (5 s to connect, 15 s per reply).
    pub fn conn(&self) -> redis::Connection {
        self.conn_with(None)
    }

    /// A connection with a password in the URL.
    pub fn conn_with(&self, password: Option<&str>) -> redis::Connection {
        self.try_conn(password).unwrap_or_else(|e| {
            panic!(
                "cannot connect to node {} at {}: {e}\nlog:\n{}",
                self.id,
                self.client_addr(),
                self.log_tail()
            )
        })
    }

    /// A connection, or the error.
    pub fn try_conn(&self, password: Option<&str>) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url(password))?;
        let con = client.get_connection_with_timeout(Duration::from_secs(5))?;
        con.set_read_timeout(Some(Duration::from_secs(15)))?;
        con.set_write_timeout(Some(Duration::from_secs(15)))?;
        Ok(con)
    }

    /// A connection whose reads are local (READONLY).
    pub fn readonly_conn(&self) -> redis::Connection {
        let mut con = self.conn();
        let ok: String = redis::cmd("READONLY").query(&mut con).expect("READONLY");
        assert_eq!(ok, "OK");
        con
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A set of nodes of one cluster, in a temporary directory.
pub struct Cluster {
    /// The nodes, in the order they were made.
    pub nodes: Vec<Node>,
    /// The cluster's name.
    pub name: String,
    /// Flags given to every node.
    pub extra: Vec<String>,
    /// The cluster's certificate authority (nodes get certificates from it
    /// unless `extra` has `--insecure`).
    pub ca: raft_node::tls::CertificateAuthority,
    dir: tempfile::TempDir,
}

/// Makes node `id`'s certificates directory under `parent` (from `ca`, for
/// `cluster`, host 127.0.0.1) and returns its `--certs-dir` flag, unless
/// `extra` asks for `--insecure`.
pub fn certs_args(
    ca: &raft_node::tls::CertificateAuthority,
    cluster: &str,
    id: &str,
    parent: &Path,
    extra: &[String],
) -> Vec<String> {
    if extra
        .iter()
        .any(|a| a == "--insecure" || a == "--certs-dir")
    {
        return Vec::new();
    }
    let dir = parent.join(format!("{id}-certs"));
    let _ = std::fs::remove_dir_all(&dir);
    raft_kv::cert::make_node_dir(ca, cluster, id, &["127.0.0.1".into()], 30, &dir)
        .expect("make a node's certificates");
    vec!["--certs-dir".into(), dir.display().to_string()]
}

/// A new certificate authority for a test cluster.
pub fn new_ca() -> raft_node::tls::CertificateAuthority {
    raft_node::tls::CertificateAuthority::generate(raft_node::tls::Validity::days(30))
        .expect("make a CA")
}

fn node_args(
    id: &str,
    cluster: &str,
    peer_port: u16,
    client_port: u16,
    data_dir: &Path,
    extra: &[String],
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "serve".into(),
        "--id".into(),
        id.into(),
        "--cluster".into(),
        cluster.into(),
        "--peer-addr".into(),
        format!("127.0.0.1:{peer_port}"),
        "--client-addr".into(),
        format!("127.0.0.1:{client_port}"),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--log-level".into(),
        "warn".into(),
    ];
    // The fast timing, but for the flags `extra` sets itself.
    for pair in TIMING.chunks(2) {
        if !extra.iter().any(|e| e == pair[0]) {
            a.extend(pair.iter().map(|s| s.to_string()));
        }
    }
    a.extend(extra.iter().cloned());
    a
}

impl Cluster {
    /// A cluster of one: a node started without `--members`.
    pub fn single(extra: &[&str]) -> Cluster {
        Cluster::start(1, extra)
    }

    /// Starts `n` nodes `n1..nN` with static membership (`--members`; none
    /// for a single node) and the `extra` flags, and waits until each is
    /// ready. Does not wait for a leader: see [`Cluster::wait_leader`].
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(n, extra, |_| {})
    }

    /// [`Cluster::start`], with `setup` called on each node (its data
    /// directory made) before it starts: to put a node's data on another
    /// file system, say.
    pub fn start_with(n: usize, extra: &[&str], mut setup: impl FnMut(&mut Node)) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("raft-kv-test-")
            .tempdir()
            .expect("make a temporary directory");
        let name = format!(
            "test-{}-{}",
            std::process::id(),
            dir.path()
                .file_name()
                .map(|f| f.to_string_lossy().replace(['.', '_'], "-"))
                .unwrap_or_default()
        );
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let ca = new_ca();
        // Ports are free when chosen, but another process may take one
        // before the node binds it: then start over with new ones.
        for _attempt in 0..5 {
            let ports = free_ports(2 * n);
            let members: Vec<String> = (0..n)
                .map(|i| format!("n{}=127.0.0.1:{}", i + 1, ports[2 * i]))
                .collect();
            let mut nodes = Vec::new();
            for i in 0..n {
                let id = format!("n{}", i + 1);
                let data_dir = dir.path().join(&id);
                let _ = std::fs::remove_dir_all(&data_dir);
                let mut args = node_args(
                    &id,
                    &name,
                    ports[2 * i],
                    ports[2 * i + 1],
                    &data_dir,
                    &extra,
                );
                if n > 1 {
                    args.push("--members".into());
                    args.push(members.join(","));
                }
                args.extend(certs_args(&ca, &name, &id, dir.path(), &extra));
                nodes.push(Node {
                    id,
                    peer_addr: format!("127.0.0.1:{}", ports[2 * i]),
                    client_port: ports[2 * i + 1],
                    data_dir,
                    args,
                    nofile: None,
                    child: None,
                });
            }
            if nodes.iter_mut().all(|node| {
                std::fs::create_dir_all(&node.data_dir).expect("create the data directory");
                setup(node);
                node.try_start().is_ok()
            }) {
                return Cluster {
                    nodes,
                    name,
                    extra,
                    ca,
                    dir,
                };
            }
            drop(nodes);
        }
        panic!("could not start a cluster of {n}: ports kept being taken");
    }

    /// Starts a new, empty node `id` that joins through `via` (a member's
    /// peer address) with `--join`; returns its index once it is ready.
    pub fn start_joining(&mut self, id: &str, via: &str) -> usize {
        let data_dir = self.dir.path().join(id);
        for _attempt in 0..5 {
            let ports = free_ports(2);
            let _ = std::fs::remove_dir_all(&data_dir);
            let mut args = node_args(id, &self.name, ports[0], ports[1], &data_dir, &self.extra);
            args.push("--join".into());
            args.push(via.to_string());
            args.extend(certs_args(
                &self.ca,
                &self.name,
                id,
                self.dir.path(),
                &self.extra,
            ));
            let mut node = Node {
                id: id.to_string(),
                peer_addr: format!("127.0.0.1:{}", ports[0]),
                client_port: ports[1],
                data_dir: data_dir.clone(),
                args,
                nofile: None,
                child: None,
            };
            if node.try_start().is_ok() {
                self.nodes.push(node);
                return self.nodes.len() - 1;
            }
        }
        panic!("could not start {id}: ports kept being taken");
    }

    /// The cluster's temporary directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Node `id`'s certificates directory (given as `--certs-dir`).
    pub fn certs_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}-certs"))
    }

    /// The node at index `i`, to change.
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    /// The node at index `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// The index of the node with this id.
    pub fn index_of(&self, id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The indexes of the running nodes.
    pub fn running(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect()
    }

    /// A connection to node `i`.
    pub fn conn(&self, i: usize) -> redis::Connection {
        self.nodes[i].conn()
    }

    /// Waits until one running node is leader and every running node in
    /// `among` (all running nodes if empty) names it as leader; returns its
    /// index.
    pub fn wait_leader_among(&mut self, among: &[usize], password: Option<&str>) -> usize {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        let mut last = Vec::new();
        loop {
            let ids: Vec<usize> = if among.is_empty() {
                self.running()
            } else {
                among.to_vec()
            };
            last.clear();
            let mut leader = None;
            let mut agree = true;
            let mut named = Vec::new();
            for &i in &ids {
                match raft_info(&self.nodes[i], password) {
                    Some(info) => {
                        let role = field(&info, "raft_role").unwrap_or_default();
                        let named_id = field(&info, "raft_leader_id").unwrap_or_default();
                        if role == "leader" {
                            leader = Some(i);
                        }
                        last.push(format!(
                            "{}: role={role} leader={named_id}",
                            self.nodes[i].id
                        ));
                        named.push(named_id);
                    }
                    None => {
                        agree = false;
                        last.push(format!("{}: no answer", self.nodes[i].id));
                    }
                }
            }
            if let (Some(l), true) = (leader, agree) {
                if named.iter().all(|n| *n == self.nodes[l].id) {
                    return l;
                }
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = ids
                    .iter()
                    .map(|&i| format!("--- {} ---\n{}", self.nodes[i].id, self.nodes[i].log_tail()))
                    .collect();
                panic!(
                    "no leader agreed on within {LEADER_TIMEOUT:?}: {last:?}\n{}",
                    logs.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a leader all running nodes agree on.
    pub fn wait_leader(&mut self) -> usize {
        self.wait_leader_among(&[], None)
    }

    /// The followers among the running nodes, given the leader.
    pub fn followers(&mut self, leader: usize) -> Vec<usize> {
        self.running()
            .into_iter()
            .filter(|&i| i != leader)
            .collect()
    }

    /// The logs of every node, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.id, n.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    /// On a failure, shows every node's log (the test harness prints it
    /// with the failure), and keeps the data if `RAFT_KV_KEEP_TEST_DATA`
    /// is set.
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        for node in &mut self.nodes {
            node.kill();
        }
        eprintln!(
            "logs of the nodes of cluster {}:\n{}",
            self.name,
            self.logs()
        );
        if std::env::var_os("RAFT_KV_KEEP_TEST_DATA").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("data kept in {}", self.dir.path().display());
        }
    }
}

/// `INFO <section>` of a node, or `None` if it does not answer (a node that
/// does not know the cluster's users yet answers LOADING: that is waited
/// out, for a few seconds).
pub fn info(node: &Node, section: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut con = node.try_conn(None).ok()?;
        con.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        match redis::cmd("INFO").arg(section).query::<String>(&mut con) {
            Ok(text) => return Some(text),
            Err(e) if err_text(&e).starts_with("LOADING") && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20))
            }
            Err(_) => return None,
        }
    }
}

/// A number field of `INFO <section>` (0 if the node does not answer).
pub fn info_number(node: &Node, section: &str, name: &str) -> u64 {
    info(node, section)
        .and_then(|i| field(&i, name))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `INFO raft` of a node, or `None` if it does not answer.
pub fn raft_info(node: &Node, password: Option<&str>) -> Option<String> {
    let mut con = node.try_conn(password).ok()?;
    con.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    redis::cmd("INFO")
        .arg("raft")
        .query::<String>(&mut con)
        .ok()
}

/// The value of `name:` in an INFO text.
pub fn field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::to_string)
    })
}

/// An error as the server sent it: `CODE detail`.
pub fn err_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// Runs `cmd` and returns its error text; panics if it succeeds.
pub fn expect_err(con: &mut redis::Connection, cmd: &redis::Cmd) -> String {
    match cmd.query::<redis::Value>(con) {
        Ok(v) => panic!("expected an error from {cmd:?}, got {v:?}"),
        Err(e) => err_text(&e),
    }
}

/// Polls `f` every 20 ms until it returns `Some`, for up to `timeout`;
/// panics with `what` otherwise.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A raw TCP connection, to send bytes that no client library would.
pub struct Raw {
    /// The socket.
    pub stream: TcpStream,
}

impl Raw {
    /// Connects (5 s read timeout).
    pub fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set the read timeout");
        stream.set_nodelay(true).ok();
        Raw { stream }
    }

    /// Sends bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads until `n` CRLF-terminated lines have arrived (or the
    /// connection closes, or 5 s pass); returns what was read.
    pub fn read_lines(&mut self, n: usize) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.windows(2).filter(|w| w == b"\r\n").count() < n {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Reads until the server closes the connection (or 5 s pass);
    /// returns what was read and whether it closed.
    pub fn read_to_close(&mut self) -> (String, bool) {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        (String::from_utf8_lossy(&got).into_owned(), closed)
    }
}

/// Writes a file (for configuration files of tests).
pub fn write_file(path: &Path, text: &str) {
    let mut f = File::create(path).expect("create a file");
    f.write_all(text.as_bytes()).expect("write a file");
}

/// A redis command from its words.
pub fn cmd(args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

/// Runs a command that must succeed; its reply.
pub fn q(con: &mut redis::Connection, args: &[&str]) -> redis::Value {
    cmd(args)
        .query::<redis::Value>(con)
        .unwrap_or_else(|e| panic!("{args:?} failed: {}", err_text(&e)))
}

/// A bulk string reply.
pub fn bulk(s: &str) -> redis::Value {
    redis::Value::BulkString(s.as_bytes().to_vec())
}

/// The text of a string reply.
pub fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Okay => "OK".into(),
        other => panic!("not a string: {other:?}"),
    }
}
