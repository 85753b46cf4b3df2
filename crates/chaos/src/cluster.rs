//! The `raft-kv serve` processes of one run: started, SIGKILLed and
//! restarted with the same flags and data, paused (SIGSTOP) and resumed
//! (SIGCONT). Every process dies with the runner (`PR_SET_PDEATHSIG`) and
//! is killed when the [`Cluster`] is dropped.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use crate::net::Net;
use crate::resp::{Conn, Reply};

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

/// One node: its flags and its process, if running.
struct Node {
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
}

/// The nodes of one run.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    net: Arc<Net>,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `n` nodes of a new cluster, data in `dir/n<i>`, and waits
    /// until every one is ready.
    pub fn start(bin: &Path, dir: &Path, net: Arc<Net>, n: usize) -> Result<Cluster, String> {
        let members: Vec<String> = (0..n)
            .map(|i| format!("n{}={}", i + 1, net.peer_addr(i)))
            .collect();
        let nodes = (0..n)
            .map(|i| {
                let mut args: Vec<String> = [
                    "serve",
                    "--id",
                    &format!("n{}", i + 1),
                    "--cluster",
                    "chaos",
                    "--peer-addr",
                    &net.peer_addr(i).to_string(),
                    "--client-addr",
                    &net.client_addr(i).to_string(),
                    "--data-dir",
                    &dir.join(format!("n{}", i + 1)).display().to_string(),
                    "--members",
                    &members.join(","),
                    "--insecure",
                    "--log-level",
                    "warn",
                    "--command-timeout-ms",
                    "1000",
                    "--snapshot-threshold",
                    "500",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                args.extend(TIMING.iter().map(|s| s.to_string()));
                Node {
                    args,
                    child: None,
                    paused: false,
                }
            })
            .collect();
        let mut cluster = Cluster {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            net,
            nodes,
        };
        for i in 0..n {
            cluster.start_node(i)?;
        }
        Ok(cluster)
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
        self.dir.join(format!("n{}.log", i + 1))
    }

    /// Starts node `i` (again) and waits for its ready line.
    pub fn start_node(&mut self, i: usize) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(|e| format!("cannot open the log of n{}: {e}", i + 1))?;
        let mut command = Command::new(&self.bin);
        command
            .args(&self.nodes[i].args)
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
            "n{} did not start; its log ({}):\n{}",
            i + 1,
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
                let id = format!("n{}", l + 1);
                if named.iter().all(|n| *n == id) {
                    return Some(l);
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(30));
        }
    }

    /// `INFO raft` of node `i`, if it answers within half a second.
    fn raft_info(&self, i: usize) -> Option<String> {
        let timeout = Duration::from_millis(500);
        let stream = self.net.connect(i, timeout).ok()?;
        let mut con = Conn::new(stream, timeout).ok()?;
        match con.call(&[b"INFO", b"raft"]).ok()? {
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        }
    }
}

/// The value of `name:` in an INFO text.
fn field(info: &str, name: &str) -> Option<String> {
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
        }
    }
}
