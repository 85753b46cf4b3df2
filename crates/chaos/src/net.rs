//! Where the nodes live and how clients reach them: on 127.0.0.1 (the
//! loopback fallback: nodes can be killed and paused, not partitioned), or
//! each in its own network namespace joined to the others by a veth pair to
//! a bridge in a namespace of its own, where partitions are blackhole
//! routes.
//!
//! Namespace names start with [`PREFIX`] followed by the runner's process
//! id, so a run removes what an earlier runner left behind when it died
//! (its process id is gone), and removes its own on drop. Nothing is
//! configured outside these namespaces: the addresses (10.77.0.0/24) and
//! the bridge exist only inside them. A node's client port is on the
//! loopback of its own namespace; clients enter that namespace to connect
//! (`setns` on the connecting thread), so partitions cut only the traffic
//! between nodes, as if every node had clients next to it. Flaky links are
//! nftables rules in the nodes' namespaces that drop a share of the
//! packets to the other nodes at random (`numgen random`), plus netem delay
//! and jitter where the kernel has `sch_netem`. Where it has not, delays are
//! made by relays of the runner ([`crate::relay`]), to which an nftables
//! rule in each node's namespace redirects the peer connections that reach
//! it.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// The first characters of every namespace a runner makes.
pub const PREFIX: &str = "rkvc";

/// The peer port of every node in namespaces.
pub(crate) const NS_PEER_PORT: u16 = 7000;
/// The client port of every node in namespaces (on its own loopback).
const NS_CLIENT_PORT: u16 = 6379;

/// Where the nodes run.
pub enum Net {
    /// On 127.0.0.1 with free ports: `(peer, client)` per node.
    Loopback(Vec<(u16, u16)>),
    /// In network namespaces.
    Namespaces(Namespaces),
}

impl Net {
    /// Loopback addresses for `n` nodes: free ports, all bound at once so
    /// that no two are the same, then released for the nodes to take.
    pub fn loopback(n: usize) -> io::Result<Net> {
        let listeners = (0..2 * n)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<io::Result<Vec<_>>>()?;
        let ports = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Net::Loopback(
            ports.chunks(2).map(|p| (p[0], p[1])).collect(),
        ))
    }

    /// Whether partitions are possible.
    pub fn can_partition(&self) -> bool {
        matches!(self, Net::Namespaces(_))
    }

    /// Node `i`'s peer address (as the other nodes reach it).
    pub fn peer_addr(&self, i: usize) -> SocketAddr {
        match self {
            Net::Loopback(p) => SocketAddr::from((Ipv4Addr::LOCALHOST, p[i].0)),
            Net::Namespaces(_) => SocketAddr::from((Namespaces::addr(i), NS_PEER_PORT)),
        }
    }

    /// Node `i`'s client address, in its own network namespace.
    pub fn client_addr(&self, i: usize) -> SocketAddr {
        match self {
            Net::Loopback(p) => SocketAddr::from((Ipv4Addr::LOCALHOST, p[i].1)),
            Net::Namespaces(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, NS_CLIENT_PORT)),
        }
    }

    /// The namespace node `i` must run in, as a descriptor (for `setns`).
    pub fn namespace_fd(&self, i: usize) -> Option<RawFd> {
        match self {
            Net::Loopback(_) => None,
            Net::Namespaces(ns) => Some(ns.node_fds[i].as_raw_fd()),
        }
    }

    /// A connection to node `i`'s client port.
    pub fn connect(&self, i: usize, timeout: Duration) -> io::Result<TcpStream> {
        let addr = self.client_addr(i);
        match self {
            Net::Loopback(_) => TcpStream::connect_timeout(&addr, timeout),
            Net::Namespaces(ns) => {
                ns.in_namespace(i, || TcpStream::connect_timeout(&addr, timeout))
            }
        }
    }
}

/// Numbers the namespace sets of one runner.
static RUNS: AtomicU32 = AtomicU32::new(0);

/// How a slow link is slow.
#[derive(Debug, Clone, Copy)]
pub enum Slow {
    /// Every packet delayed (netem), with normally distributed jitter.
    Delay {
        /// Milliseconds.
        delay: u64,
        /// Milliseconds.
        jitter: u64,
    },
    /// A bandwidth limit (tbf): bursts queue, and packets that would wait
    /// longer than the queue allows are dropped.
    Bandwidth {
        /// Kilobits per second.
        kbit: u64,
        /// The longest a packet waits, in milliseconds.
        queue_ms: u64,
    },
}

impl std::fmt::Display for Slow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Slow::Delay { delay, jitter } => write!(f, "{delay} ms delay +- {jitter} ms (netem)"),
            Slow::Bandwidth { kbit, queue_ms } => write!(
                f,
                "{:.1} Mbit/s, queued up to {queue_ms} ms (tbf; no netem here)",
                *kbit as f64 / 1000.0
            ),
        }
    }
}

/// A bridge namespace and one namespace per node, removed on drop.
pub struct Namespaces {
    /// `rkvc<pid>r<count>`: the start of every name.
    run: String,
    /// How many node namespaces were asked for.
    nodes: usize,
    node_fds: Vec<File>,
    home: File,
    /// Some link is flaky (nftables rules or netem to remove).
    flaky: AtomicBool,
}

/// Runs `ip` with `args`; its error output if it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The names of the network namespaces that exist.
fn namespaces() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The process id in a namespace name made by a runner, if it is one.
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Removes the namespaces of runners that are no longer running (and kills
/// what still runs in them); returns their names.
pub fn remove_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    for name in namespaces() {
        let Some(pid) = owner(&name) else { continue };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_inside(&name);
        if ip(&["netns", "del", &name]).is_ok() {
            removed.push(name);
        }
    }
    removed
}

/// SIGKILLs every process in namespace `name`.
fn kill_inside(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) with a process id and a signal number.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Why namespaces cannot be used here, if they cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("no `ip` command (iproute2)".into()),
    }
}

impl Namespaces {
    /// Node `i`'s address.
    pub fn addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, i as u8 + 1)
    }

    fn node(&self, i: usize) -> String {
        format!("{}n{}", self.run, i + 1)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.run)
    }

    /// Makes the namespaces of `nodes` nodes, after removing those of dead
    /// runners. On failure, removes what it made.
    pub fn create(nodes: usize) -> Result<Namespaces, String> {
        let home = File::open("/proc/thread-self/ns/net")
            .map_err(|e| format!("cannot open this thread's network namespace: {e}"))?;
        let mut ns = Namespaces {
            run: format!(
                "{PREFIX}{}r{}",
                std::process::id(),
                RUNS.fetch_add(1, Ordering::Relaxed)
            ),
            nodes,
            node_fds: Vec::new(),
            home,
            flaky: AtomicBool::new(false),
        };
        let br = ns.bridge();
        ip(&["netns", "add", &br])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..nodes {
            let name = ns.node(i);
            ip(&["netns", "add", &name])?;
            let port = format!("v{}", i + 1);
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &name,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            let cidr = format!("{}/24", Namespaces::addr(i));
            ip(&["-n", &name, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &name, "link", "set", "eth0", "up"])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            let fd = File::open(format!("/run/netns/{name}"))
                .map_err(|e| format!("cannot open namespace {name}: {e}"))?;
            ns.node_fds.push(fd);
        }
        Ok(ns)
    }

    /// Runs `f` on this thread inside node `i`'s namespace (sockets made
    /// there stay there), then comes back.
    pub(crate) fn in_namespace<T>(
        &self,
        i: usize,
        f: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        // SAFETY: setns(2) with an open namespace descriptor; it changes
        // only this thread's network namespace, restored below.
        if unsafe { libc::setns(self.node_fds[i].as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let result = f();
        // SAFETY: as above, back to the namespace this thread came from.
        if unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            panic!(
                "cannot return to the runner's network namespace: {}",
                io::Error::last_os_error()
            );
        }
        result
    }

    /// Cuts the traffic between nodes `a` and `b`, both ways.
    pub fn cut(&self, a: usize, b: usize) -> Result<(), String> {
        for (from, to) in [(a, b), (b, a)] {
            let dest = format!("{}/32", Namespaces::addr(to));
            ip(&["-n", &self.node(from), "route", "add", "blackhole", &dest])?;
        }
        Ok(())
    }

    /// Runs `program` with `args` in node `i`'s namespace.
    fn exec(&self, i: usize, program: &str, args: &[&str]) -> Result<(), String> {
        let node = self.node(i);
        let mut all = vec!["netns", "exec", &node, program];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Whether nftables rules can be set in the namespaces (tried).
    pub fn try_nft(&self) -> bool {
        let ok = self.exec(0, "nft", &["add", "table", "ip", "chaosprobe"]);
        let _ = self.exec(0, "nft", &["delete", "table", "ip", "chaosprobe"]);
        ok.is_ok()
    }

    /// Whether a qdisc works in the namespaces (tried).
    fn try_qdisc(&self, qdisc: &[&str]) -> bool {
        let mut args = vec!["qdisc", "add", "dev", "eth0", "root"];
        args.extend_from_slice(qdisc);
        let ok = self.exec(0, "tc", &args);
        let _ = self.exec(0, "tc", &["qdisc", "del", "dev", "eth0", "root"]);
        ok.is_ok()
    }

    /// Whether netem works in the namespaces (tried).
    pub fn try_netem(&self) -> bool {
        self.try_qdisc(&["netem", "delay", "1ms"])
    }

    /// Whether tbf works in the namespaces (tried).
    pub fn try_tbf(&self) -> bool {
        self.try_qdisc(&["tbf", "rate", "1mbit", "burst", "32kbit", "latency", "50ms"])
    }

    /// Slows node `i`'s outgoing packets (a qdisc on its link).
    pub fn slow(&self, i: usize, slow: Slow) -> Result<(), String> {
        self.flaky.store(true, Ordering::Relaxed);
        let spec = match slow {
            Slow::Delay { delay, jitter } => {
                format!("netem delay {delay}ms {jitter}ms distribution normal")
            }
            Slow::Bandwidth { kbit, queue_ms } => {
                format!("tbf rate {kbit}kbit burst 16kbit latency {queue_ms}ms")
            }
        };
        let mut args = vec!["qdisc", "add", "dev", "eth0", "root"];
        args.extend(spec.split(' '));
        self.exec(i, "tc", &args)
    }

    /// Makes node `i`'s outgoing packets to the other nodes (of `n`) flaky:
    /// `loss` percent dropped and `dup` percent sent twice, at random
    /// (nftables `numgen random`).
    pub fn flaky(&self, i: usize, n: usize, loss: u64, dup: u64) -> Result<(), String> {
        self.flaky.store(true, Ordering::Relaxed);
        self.exec(i, "nft", &["add", "table", "ip", "chaos"])?;
        self.exec(
            i,
            "nft",
            &[
                "add",
                "chain",
                "ip",
                "chaos",
                "out",
                "{ type filter hook output priority 0; }",
            ],
        )?;
        let mut rules = vec![format!(
            "oifname eth0 ip daddr 10.77.0.0/24 numgen random mod 100 < {loss} drop"
        )];
        if dup > 0 {
            for j in (0..n).filter(|&j| j != i) {
                let to = Namespaces::addr(j);
                rules.push(format!(
                    "oifname eth0 ip daddr {to} numgen random mod 100 < {dup} dup to {to}"
                ));
            }
        }
        for rule in rules {
            let mut args = vec!["add", "rule", "ip", "chaos", "out"];
            args.extend(rule.split(' '));
            self.exec(i, "nft", &args)?;
        }
        Ok(())
    }

    /// Whether nftables can redirect connections in the namespaces (the
    /// relays need it; tried).
    pub fn try_redirect(&self) -> bool {
        let ok = self.redirect_peer_port(0, crate::relay::RELAY_PORT);
        self.remove_redirect(0);
        ok.is_ok()
    }

    /// Redirects the peer connections that reach node `i` from the others
    /// (through `eth0`) to `port` in its namespace, where a relay listens;
    /// connections already made stay as they are.
    pub fn redirect_peer_port(&self, i: usize, port: u16) -> Result<(), String> {
        self.exec(i, "nft", &["add", "table", "ip", "chaosrelay"])?;
        self.exec(
            i,
            "nft",
            &[
                "add",
                "chain",
                "ip",
                "chaosrelay",
                "pre",
                "{ type nat hook prerouting priority -100; }",
            ],
        )?;
        let rule = format!("iifname eth0 tcp dport {NS_PEER_PORT} redirect to :{port}");
        let mut args = vec!["add", "rule", "ip", "chaosrelay", "pre"];
        args.extend(rule.split(' '));
        self.exec(i, "nft", &args)
    }

    /// Removes the redirection of node `i`'s peer port, if any.
    pub fn remove_redirect(&self, i: usize) {
        let _ = self.exec(i, "nft", &["delete", "table", "ip", "chaosrelay"]);
    }

    /// Removes every cut and every flaky link.
    pub fn heal(&self) -> Result<(), String> {
        let flaky = self.flaky.swap(false, Ordering::Relaxed);
        for i in 0..self.node_fds.len() {
            ip(&["-n", &self.node(i), "route", "flush", "type", "blackhole"])?;
            if flaky {
                let _ = self.exec(i, "nft", &["delete", "table", "ip", "chaos"]);
                let _ = self.exec(i, "tc", &["qdisc", "del", "dev", "eth0", "root"]);
            }
        }
        Ok(())
    }

    /// Removes every namespace of this set that exists.
    fn teardown(&mut self) {
        self.node_fds.clear();
        let exist = namespaces();
        let mine = (0..self.nodes)
            .map(|i| self.node(i))
            .chain([self.bridge()])
            .filter(|name| exist.contains(name));
        for name in mine {
            kill_inside(&name);
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_a_namespace_is_read_from_its_name() {
        assert_eq!(owner("rkvc1234r0n2"), Some(1234));
        assert_eq!(owner("rkvc77r3br"), Some(77));
        assert_eq!(owner("rkvcxn1"), None);
        assert_eq!(owner("other"), None);
    }
}
