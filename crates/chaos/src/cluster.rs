//! The `raft-kv serve` processes of one run: started, SIGKILLed and
//! restarted with the same flags and data, paused (SIGSTOP) and resumed
//! (SIGCONT), started with test-only faults in their environment, under a
//! faked clock (libfaketime), with their data on a tmpfs that can fill, and
//! replaced by fresh nodes that join. Every process dies with the runner
//! (`PR_SET_PDEATHSIG`) and is killed when the [`Cluster`] is dropped;
//! every tmpfs is unmounted then.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use crate::net::Net;
use crate::relay::Relays;
use crate::resp::{Conn, Reply};

/// The environment variable that sets the nodes' `--log-level` (default
/// `warn`), e.g. `info` or `raft_node=debug` to see their elections.
pub const LOG_LEVEL: &str = "RAFT_KV_CHAOS_LOG_LEVEL";

/// How long a node may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Raft timing of every node: fast elections, so that faults show.
pub const TIMING: &[&str] = &[
    "--heartbeat-ms",
    "30",
    "--election-timeout-min-ms",
    "150",
    "--election-timeout-max-ms",
    "300",
];

/// The longest election timeout in [`TIMING`]: pauses last longer.
pub const ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(300);

/// Where libfaketime's library is on Debian (`libfaketime`).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// How every node of a cluster is started.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Environment variables of every node (test-only faults).
    pub env: Vec<(String, String)>,
    /// Mutual TLS between the nodes, with certificates made for the run.
    pub tls: bool,
    /// Every node's data directory on a tmpfs of its own, which can fill.
    pub tmpfs: bool,
    /// Give every node a disk that can be made to hang
    /// ([`Cluster::stall_disk`]).
    pub stall_disk: bool,
    /// Every node under libfaketime, its clock's offset and rate read
    /// from a file of its own ([`Cluster::jump_clock`],
    /// [`Cluster::restart_with_clock_rate`]).
    pub fake_clock: bool,
    /// Relays of the runner on every link between nodes (in namespaces),
    /// for delays ([`crate::relay`]), seeded with this.
    pub relays: Option<u64>,
}

/// One node: its flags and its process, if running.
struct Node {
    id: String,
    args: Vec<String>,
    /// Variables set for this node alone (a fault), on top of the setup's.
    env: Vec<(String, String)>,
    data: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// Its tmpfs is mounted on `data`.
    mounted: bool,
    /// Seconds its faked clock is ahead.
    clock_ahead: u64,
}

/// The nodes of one run.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    net: Arc<Net>,
    setup: Setup,
    nodes: Vec<Node>,
    /// How many nodes were replaced so far (fresh ids are numbered).
    replaced: usize,
    /// The relays on the links, if the setup asks (dropped after the nodes).
    relays: Option<Relays>,
}

/// Runs a command; its error output if it fails.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The size of each node's tmpfs.
pub const TMPFS_SIZE: &str = "48m";

impl Cluster {
    /// Starts `n` nodes of a new cluster, data in `dir/n<i>`, and waits
    /// until every one is ready.
    pub fn start(
        bin: &Path,
        dir: &Path,
        net: Arc<Net>,
        n: usize,
        setup: &Setup,
    ) -> Result<Cluster, String> {
        let members: Vec<String> = (0..n)
            .map(|i| format!("n{}={}", i + 1, net.peer_addr(i)))
            .collect();
        let mut cluster = Cluster {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            net,
            setup: setup.clone(),
            nodes: Vec::new(),
            replaced: 0,
            relays: None,
        };
        if let Some(seed) = setup.relays {
            cluster.relays = Some(Relays::start(cluster.net.clone(), n, seed)?);
        }
        if setup.tls {
            let ca = dir.join("ca");
            cluster.cert(&["create-ca", "--certs-dir", &ca.display().to_string()])?;
        }
        for i in 0..n {
            let id = format!("n{}", i + 1);
            let node = cluster.node(i, &id, &format!("--members={}", members.join(",")))?;
            cluster.nodes.push(node);
        }
        for i in 0..n {
            cluster.start_node(i)?;
        }
        Ok(cluster)
    }

    /// Runs `raft-kv cert` with `args`.
    fn cert(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["cert"];
        all.extend_from_slice(args);
        run(&self.bin.display().to_string(), &all)
    }

    /// The flags and data directory of a node `id` in slot `i` (its
    /// addresses), founding the cluster or joining it (`start`: the
    /// `--members=...` or `--join=...` flag); makes its certificates and
    /// mounts its tmpfs if the setup asks.
    fn node(&self, i: usize, id: &str, start: &str) -> Result<Node, String> {
        let data = self.dir.join(id);
        std::fs::create_dir_all(&data)
            .map_err(|e| format!("cannot make {}: {e}", data.display()))?;
        let mut mounted = false;
        if self.setup.tmpfs {
            let size = format!("size={TMPFS_SIZE}");
            let path = data.display().to_string();
            run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &path])?;
            mounted = true;
        }
        let peer = self.net.peer_addr(i);
        let log_level = std::env::var(LOG_LEVEL).unwrap_or_else(|_| "warn".into());
        let mut args: Vec<String> = [
            "serve",
            "--id",
            id,
            "--cluster",
            "chaos",
            "--peer-addr",
            &peer.to_string(),
            "--client-addr",
            &self.net.client_addr(i).to_string(),
            "--data-dir",
            &data.display().to_string(),
            start,
            "--log-level",
            &log_level,
            "--command-timeout-ms",
            "1000",
            "--snapshot-threshold",
            "500",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(TIMING.iter().map(|s| s.to_string()));
        if self.setup.tls {
            let certs = self.dir.join(format!("certs-{id}"));
            let ca = self.dir.join("ca");
            self.cert(&[
                "create-node",
                "--certs-dir",
                &certs.display().to_string(),
                "--id",
                id,
                "--cluster",
                "chaos",
                "--host",
                &peer.ip().to_string(),
                "--ca-cert",
                &ca.join("ca.crt").display().to_string(),
                "--ca-key",
                &ca.join("ca.key").display().to_string(),
            ])?;
            args.extend(["--certs-dir".to_string(), certs.display().to_string()]);
        } else {
            args.push("--insecure".into());
        }
        Ok(Node {
            id: id.to_string(),
            args,
            env: Vec::new(),
            data,
            child: None,
            paused: false,
            mounted,
            clock_ahead: 0,
        })
    }

    /// The relays on the links, if the setup put them there.
    pub fn relays(&self) -> Option<&Relays> {
        self.relays.as_ref()
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.log", self.nodes[i].id))
    }

    /// Node `i`'s id (`n<i+1>`, or a fresh one once it was replaced).
    pub fn id(&self, i: usize) -> &str {
        &self.nodes[i].id
    }

    /// Whether every node's data is on a tmpfs of its own.
    pub fn on_tmpfs(&self) -> bool {
        self.setup.tmpfs
    }

    /// Whether the nodes talk TLS to each other.
    pub fn tls(&self) -> bool {
        self.setup.tls
    }

    /// Whether every node runs under libfaketime.
    pub fn fake_clock(&self) -> bool {
        self.setup.fake_clock
    }

    /// Node `i`'s peer address.
    pub fn peer_addr(&self, i: usize) -> std::net::SocketAddr {
        self.net.peer_addr(i)
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.nodes[i].data
    }

    /// The file node `i`'s faked clock reads its offset and rate from.
    fn stall_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("stall-n{}", i + 1))
    }

    /// Whether the nodes' disks can be made to hang.
    pub fn stalls_disk(&self) -> bool {
        self.setup.stall_disk
    }

    /// Makes node `i`'s disk hang (every fsync waits) or work again: the
    /// node, started with the stall fault's variable (`RAFT_KV_TEST_FAULT_STALL_SYNC_WHILE`),
    /// waits while the file exists.
    pub fn stall_disk(&mut self, i: usize, stall: bool) -> Result<(), String> {
        let path = self.stall_file(i);
        let result = if stall {
            std::fs::write(&path, b"").map_err(|e| e.to_string())
        } else {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            }
        };
        result.map_err(|e| {
            format!(
                "cannot {} {}: {e}",
                if stall { "make" } else { "remove" },
                path.display()
            )
        })
    }

    fn clock_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("clock-n{}", i + 1))
    }

    /// Writes node `i`'s faked clock (libfaketime syntax: `+2.5` seconds
    /// ahead, `+2.5 x2` ahead and running twice as fast); a running node
    /// reads it within a second (`FAKETIME_CACHE_DURATION`).
    fn set_clock(&self, i: usize, spec: &str) -> Result<(), String> {
        let path = self.clock_file(i);
        std::fs::write(&path, format!("{spec}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Moves node `i`'s clock (monotonic and wall alike) `seconds` ahead,
    /// for good: a monotonic clock never goes back (the kernel's does
    /// not), so the offsets only add up.
    pub fn jump_clock(&mut self, i: usize, seconds: u64) -> Result<(), String> {
        self.nodes[i].clock_ahead += seconds;
        self.set_clock(i, &format!("+{}", self.nodes[i].clock_ahead))
    }

    /// Restarts node `i` with its clock running at `rate` times the real
    /// one (a rate change in a running process would move its clock back).
    pub fn restart_with_clock_rate(&mut self, i: usize, rate: &str) -> Result<(), String> {
        let ahead = self.nodes[i].clock_ahead;
        let spec = if rate == "1" {
            format!("+{ahead}")
        } else {
            format!("+{ahead} x{rate}")
        };
        self.set_clock(i, &spec)?;
        self.kill(i);
        self.start_node(i)
    }

    /// Sets a variable in node `i`'s environment for its next starts
    /// (`None` removes it).
    pub fn set_env(&mut self, i: usize, name: &str, value: Option<&str>) {
        let env = &mut self.nodes[i].env;
        env.retain(|(n, _)| n != name);
        if let Some(v) = value {
            env.push((name.to_string(), v.to_string()));
        }
    }

    /// The whole log of node `i`.
    pub fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// Waits up to `timeout` for node `i` to exit on its own; its status.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.nodes[i].child.as_mut()?.try_wait().ok()?;
            if let Some(status) = status {
                self.nodes[i].child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Replaces node `i` by a fresh, empty node with a new id at the same
    /// addresses, which joins through node `via` (the runner removes the
    /// old one from the configuration first); the new id.
    pub fn replace(&mut self, i: usize, via: usize) -> Result<String, String> {
        self.kill(i);
        self.unmount(i);
        self.replaced += 1;
        let id = format!("n{}r{}", i + 1, self.replaced);
        let join = format!("--join={}", self.net.peer_addr(via));
        let env = std::mem::take(&mut self.nodes[i].env);
        let ahead = self.nodes[i].clock_ahead;
        self.nodes[i] = self.node(i, &id, &join)?;
        self.nodes[i].env = env;
        // The slot's clock file stays: so does how far ahead it is.
        self.nodes[i].clock_ahead = ahead;
        self.start_node(i)?;
        Ok(id)
    }

    /// Unmounts node `i`'s tmpfs, if mounted.
    fn unmount(&mut self, i: usize) {
        if !self.nodes[i].mounted {
            return;
        }
        let path = self.nodes[i].data.display().to_string();
        if run("umount", &[&path]).is_err() {
            // Still busy (a process not reaped yet): detach it now.
            let _ = run("umount", &["-l", &path]);
        }
        self.nodes[i].mounted = false;
    }

    /// Starts node `i` (again) and waits for its ready line.
    pub fn start_node(&mut self, i: usize) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(|e| format!("cannot open the log of n{}: {e}", i + 1))?;
        let mut command = Command::new(&self.bin);
        command.args(&self.nodes[i].args);
        command.envs(self.setup.env.iter().map(|(k, v)| (k, v)));
        command.envs(self.nodes[i].env.iter().map(|(k, v)| (k, v)));
        if self.setup.stall_disk {
            command.env(crate::raft_kv_fault::STALL_SYNC_WHILE, self.stall_file(i));
        }
        if self.setup.fake_clock {
            let clock = self.clock_file(i);
            if !clock.exists() {
                self.set_clock(i, "+0")?;
            }
            command
                .env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", &clock)
                .env("FAKETIME_CACHE_DURATION", "1");
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let ns = self.net.namespace_fd(i);
        // SAFETY: prctl(2) and setns(2) are async-signal-safe; nothing else
        // runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = ns {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        self.nodes[i].child = Some(child);
        self.nodes[i].paused = false;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            // Pass every line on, and keep draining after the ready line.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains("clients on") => return Ok(()),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.kill(i);
        Err(format!(
            "{} did not start; its log ({}):\n{}",
            self.nodes[i].id,
            self.log_path(i).display(),
            self.log_tail(i)
        ))
    }

    /// The last lines of node `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn signal(&self, i: usize, signal: i32) {
        if let Some(c) = &self.nodes[i].child {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(c.id() as i32, signal) };
        }
    }

    /// SIGKILLs node `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].paused = false;
    }

    /// SIGSTOPs node `i`.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.nodes[i].paused = true;
    }

    /// SIGCONTs node `i`.
    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.nodes[i].paused = false;
    }

    /// Resumes every paused node and restarts every stopped one.
    pub fn restore(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                self.resume(i);
            }
            let exited = match &mut self.nodes[i].child {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => true,
            };
            if exited {
                self.nodes[i].child = None;
                self.start_node(i)?;
            }
        }
        Ok(())
    }

    /// Which nodes exited on their own (not killed by the runner).
    pub fn exited(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| match &mut self.nodes[i].child {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => false,
            })
            .collect()
    }

    /// The node that says it is the leader, among the running, unpaused
    /// ones, once one does and every other one it can ask names it
    /// (waits up to `timeout`).
    pub fn leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut leader = None;
            let mut named = Vec::new();
            for i in 0..self.nodes.len() {
                if self.nodes[i].child.is_none() || self.nodes[i].paused {
                    continue;
                }
                let Some(info) = self.raft_info(i) else {
                    continue;
                };
                if field(&info, "raft_role").as_deref() == Some("leader") {
                    leader = Some(i);
                }
                named.push(field(&info, "raft_leader_id").unwrap_or_default());
            }
            if let Some(l) = leader {
                let id = &self.nodes[l].id;
                if named.iter().all(|n| n == id) {
                    return Some(l);
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(30));
        }
    }

    /// Waits until every node knows the cluster's users (answers a GET
    /// with something else than `LOADING`), up to `timeout`.
    pub fn wait_users(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.nodes.len() {
            loop {
                match self.call(i, &[b"GET", b"chaos:ready"]) {
                    Ok(Reply::Error(e)) if e.starts_with("LOADING") => {}
                    Ok(_) => break,
                    Err(_) => {}
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "{} did not learn the cluster's users within {} s",
                        self.nodes[i].id,
                        timeout.as_secs()
                    ));
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// `INFO raft` of node `i`, if it answers within half a second.
    pub fn raft_info(&self, i: usize) -> Option<String> {
        match self.call(i, &[b"INFO", b"raft"]).ok()? {
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        }
    }

    /// Sends one command to node `i`; its reply (within two seconds).
    pub fn call(&self, i: usize, args: &[&[u8]]) -> Result<Reply, String> {
        let timeout = Duration::from_millis(500);
        let stream = self
            .net
            .connect(i, timeout)
            .map_err(|e| format!("cannot reach {}: {e}", self.nodes[i].id))?;
        let mut con = Conn::new(stream, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        con.call(args).map_err(|e| e.to_string())
    }
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

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.resume(i);
            self.kill(i);
            self.unmount(i);
        }
    }
}
