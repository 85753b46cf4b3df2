//! Relays on the links between nodes, for delays with jitter where the
//! kernel has no `sch_netem`.
//!
//! In every node's namespace an nftables rule redirects the peer
//! connections that arrive from the others (`iifname eth0 tcp dport 7000`)
//! to a listener of the runner in that namespace, which connects on to the
//! node over the namespace's loopback and copies the bytes both ways. The
//! link of a connection is known from its source address. Everything else
//! stays as it was: a node's packets still leave through its own `eth0`,
//! so partitions (blackhole routes), flaky packets (nftables) and bandwidth
//! limits (tbf) act on them as before, and TLS passes through untouched.
//!
//! While a link has no [`LinkDelay`], its bytes pass at once. With one,
//! every chunk read from a connection is held for the link's delay, give
//! or take its jitter, drawn anew for every chunk, but never delivered
//! before the chunk ahead of it: within a connection the bytes keep their
//! order (TCP's), while chunks of different connections (the two
//! directions of a pair of nodes, and the links of different pairs)
//! overtake one another. With `replay` set, now and then a connection's
//! first bytes (its handshake and first messages, up to [`REPLAY_MAX`])
//! are sent again over a fresh connection: the node gets those messages
//! twice. Under TLS the replayed handshake fails, and nothing is
//! duplicated; without TLS the node accepts the replay and runs again the
//! client commands forwarded over it (a replay attack on an
//! unauthenticated transport, not a network fault), so the runner asks for
//! replays only under TLS.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::net::{Namespaces, Net, NS_PEER_PORT};
use crate::Rng;

/// The port the relays listen on in every node's namespace.
pub const RELAY_PORT: u16 = 17000;

/// The most bytes of a connection's start kept for a replay.
pub const REPLAY_MAX: usize = 256 << 10;

/// The least time between two replays of one connection.
const REPLAY_EVERY: Duration = Duration::from_millis(500);

/// How one direction of a link is slowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDelay {
    /// The base delay, in milliseconds.
    pub delay_ms: u64,
    /// How far a chunk's delay strays from the base, in percent of it
    /// (drawn evenly within).
    pub jitter_pct: u64,
    /// The chance, in tenths of a percent per chunk, that the connection's
    /// start is replayed over a fresh connection (at most every 0.5 s).
    pub replay_permille: u64,
}

/// Counts of what the relays did.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Connections relayed.
    pub connections: AtomicU64,
    /// Chunks held back by a delay.
    pub delayed: AtomicU64,
    /// Chunks delivered before one that was read earlier on another
    /// connection of the same pair of nodes (either direction).
    pub overtaken: AtomicU64,
    /// Connections replayed.
    pub replays: AtomicU64,
}

/// The state every relay task shares.
struct Shared {
    nodes: usize,
    /// `links[from * nodes + to]`.
    links: Mutex<Vec<Option<LinkDelay>>>,
    /// Per pair of nodes (`min * nodes + max`): the read time (µs since
    /// `epoch`) of the last chunk delivered on it, to count overtakes.
    last_read: Mutex<Vec<u64>>,
    epoch: Instant,
    stats: RelayStats,
    seed: u64,
}

impl Shared {
    fn link(&self, from: usize, to: usize) -> Option<LinkDelay> {
        self.links.lock().unwrap_or_else(|e| e.into_inner())[from * self.nodes + to]
    }

    /// Notes the delivery of a chunk of the pair `pair` read at `read`:
    /// counts it overtaken if one read later was delivered before it.
    fn delivered(&self, pair: usize, read: Instant) {
        let at = read.duration_since(self.epoch).as_micros() as u64;
        let mut last = self.last_read.lock().unwrap_or_else(|e| e.into_inner());
        if at < last[pair] {
            self.stats.overtaken.fetch_add(1, Ordering::Relaxed);
        } else {
            last[pair] = at;
        }
    }
}

/// The relays of one cluster; removed (rules and listeners) on drop.
pub struct Relays {
    net: Arc<Net>,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Relays {
    /// Puts relays on every link between `nodes` nodes in namespaces
    /// (before the nodes start: connections made earlier are not
    /// redirected).
    pub fn start(net: Arc<Net>, nodes: usize, seed: u64) -> Result<Relays, String> {
        let Net::Namespaces(ns) = &*net else {
            return Err("relays need network namespaces".into());
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("chaos-relay")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the relays' runtime: {e}"))?;
        let shared = Arc::new(Shared {
            nodes,
            links: Mutex::new(vec![None; nodes * nodes]),
            last_read: Mutex::new(vec![0; nodes * nodes]),
            epoch: Instant::now(),
            stats: RelayStats::default(),
            seed,
        });
        let relays = Relays {
            net: net.clone(),
            shared: shared.clone(),
            runtime: Some(runtime),
        };
        let runtime = relays.runtime.as_ref().expect("just made");
        for to in 0..nodes {
            let listener = ns
                .in_namespace(to, || {
                    let l = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, RELAY_PORT))?;
                    l.set_nonblocking(true)?;
                    Ok(l)
                })
                .map_err(|e| format!("cannot listen for the relay of n{}: {e}", to + 1))?;
            let listener = {
                let _entered = runtime.enter();
                TcpListener::from_std(listener)
                    .map_err(|e| format!("cannot listen for the relay of n{}: {e}", to + 1))?
            };
            runtime.spawn(accept(net.clone(), shared.clone(), to, listener));
            ns.redirect_peer_port(to, RELAY_PORT)?;
        }
        Ok(relays)
    }

    /// Slows the link from node `from` to node `to` (`None`: bytes pass at
    /// once).
    pub fn set(&self, from: usize, to: usize, delay: Option<LinkDelay>) {
        let n = self.shared.nodes;
        self.shared.links.lock().unwrap_or_else(|e| e.into_inner())[from * n + to] = delay;
    }

    /// Lets every link pass bytes at once again (chunks already held are
    /// delivered when their time comes, in order).
    pub fn clear(&self) {
        let mut links = self.shared.links.lock().unwrap_or_else(|e| e.into_inner());
        links.iter_mut().for_each(|l| *l = None);
    }

    /// What the relays did so far.
    pub fn stats(&self) -> &RelayStats {
        &self.shared.stats
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Waits (briefly) for the tasks to be dropped: their sockets
            // close, and the next cluster's relays can listen again.
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        if let Net::Namespaces(ns) = &*self.net {
            for i in 0..self.shared.nodes {
                ns.remove_redirect(i);
            }
        }
    }
}

/// The node index of a peer address in namespaces (10.77.0.<i+1>).
fn node_of(addr: SocketAddr, nodes: usize) -> Option<usize> {
    match addr {
        SocketAddr::V4(a) if a.ip().octets()[..3] == Namespaces::addr(0).octets()[..3] => {
            let i = a.ip().octets()[3] as usize;
            (1..=nodes).contains(&i).then(|| i - 1)
        }
        _ => None,
    }
}

/// Accepts the connections redirected to node `to`'s relay.
async fn accept(net: Arc<Net>, shared: Arc<Shared>, to: usize, listener: TcpListener) {
    let mut count = 0u64;
    loop {
        let Ok((down, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        count += 1;
        let Some(from) = node_of(from, shared.nodes) else {
            continue;
        };
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        let seed = shared.seed ^ (to as u64) << 56 ^ (from as u64) << 48 ^ count;
        tokio::spawn(relay(net.clone(), shared.clone(), from, to, down, seed));
    }
}

/// A new socket to node `to`'s peer port, made in its namespace.
async fn connect_node(net: &Net, to: usize) -> std::io::Result<TcpStream> {
    let Net::Namespaces(ns) = net else {
        return Err(std::io::Error::other("relays need namespaces"));
    };
    let socket = ns.in_namespace(to, TcpSocket::new_v4)?;
    socket.set_nodelay(true)?;
    let addr = SocketAddr::from((Namespaces::addr(to), NS_PEER_PORT));
    tokio::time::timeout(Duration::from_secs(2), socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connecting timed out"))?
}

/// Relays one connection from node `from` to node `to`, both ways.
async fn relay(
    net: Arc<Net>,
    shared: Arc<Shared>,
    from: usize,
    to: usize,
    down: TcpStream,
    seed: u64,
) {
    let Ok(up) = connect_node(&net, to).await else {
        return;
    };
    let _ = down.set_nodelay(true);
    let (down_r, down_w) = down.into_split();
    let (up_r, up_w) = up.into_split();
    let pair = from.min(to) * shared.nodes + from.max(to);
    let forth = pump(
        shared.clone(),
        (from, to),
        pair,
        down_r,
        up_w,
        Some(net),
        Rng::new(seed),
    );
    let back = pump(
        shared.clone(),
        (to, from),
        pair,
        up_r,
        down_w,
        None,
        Rng::new(!seed),
    );
    tokio::join!(forth, back);
}

/// Copies one direction of a connection on link `link`, each chunk held as
/// the link says when it is read; `replay_to` is the network to replay the
/// connection's start over (the direction that opened it), if any.
async fn pump(
    shared: Arc<Shared>,
    link: (usize, usize),
    pair: usize,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    replay_to: Option<Arc<Net>>,
    mut rng: Rng,
) {
    let mut buf = vec![0u8; 64 << 10];
    // Chunks held: when each is due, when it was read, its bytes.
    let mut held: VecDeque<(Instant, Instant, Vec<u8>)> = VecDeque::new();
    let mut start: Vec<u8> = Vec::new();
    let mut last_replay: Option<Instant> = None;
    let mut eof = false;
    loop {
        let due = held.front().map(|c| c.0);
        if eof && due.is_none() {
            let _ = to.shutdown().await;
            return;
        }
        tokio::select! {
            read = from.read(&mut buf), if !eof && held.len() < 4096 => {
                let n = match read {
                    Ok(0) | Err(_) => {
                        eof = true;
                        continue;
                    }
                    Ok(n) => n,
                };
                let now = Instant::now();
                if replay_to.is_some() && start.len() < REPLAY_MAX {
                    let keep = n.min(REPLAY_MAX - start.len());
                    start.extend_from_slice(&buf[..keep]);
                }
                match shared.link(link.0, link.1) {
                    None if held.is_empty() => {
                        shared.delivered(pair, now);
                        if to.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                    None => held.push_back((held.back().map_or(now, |c| c.0), now, buf[..n].to_vec())),
                    Some(d) => {
                        shared.stats.delayed.fetch_add(1, Ordering::Relaxed);
                        let spread = d.delay_ms * d.jitter_pct / 100;
                        let ms = d.delay_ms - spread + rng.below(2 * spread + 1);
                        let at = (now + Duration::from_millis(ms)).max(held.back().map_or(now, |c| c.0));
                        held.push_back((at, now, buf[..n].to_vec()));
                        let replay = d.replay_permille > 0
                            && rng.below(1000) < d.replay_permille
                            && last_replay.is_none_or(|t| t.elapsed() > REPLAY_EVERY);
                        if let (true, Some(net)) = (replay, &replay_to) {
                            last_replay = Some(now);
                            shared.stats.replays.fetch_add(1, Ordering::Relaxed);
                            tokio::spawn(replay_start(net.clone(), link.1, start.clone()));
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let (_, read, bytes) = held.pop_front().expect("a chunk is due");
                shared.delivered(pair, read);
                if to.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends `start` (a connection's first bytes) to node `to` over a fresh
/// connection, reads what comes back for a second, and closes it.
async fn replay_start(net: Arc<Net>, to: usize, start: Vec<u8>) {
    let Ok(mut stream) = connect_node(&net, to).await else {
        return;
    };
    if stream.write_all(&start).await.is_err() {
        return;
    }
    let mut sink = vec![0u8; 16 << 10];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
