//! `raft-kv demo`: the tour a newcomer runs first. It starts a 3-node
//! cluster of `raft-kv serve` processes in a temporary directory, writes and
//! reads keys with concurrent clients, kills the leader with SIGKILL,
//! measures how long the cluster had no leader, checks that no
//! acknowledged write was lost, restarts the killed node, watches it catch
//! up, and prints a summary with a list of checks. It exits with 0 only if
//! every check passed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use crate::client::{Client, ClientError, RaftInfo};
use crate::frame::Frame;
use crate::local::{ClusterSpec, LocalCluster, Ports, Signals};

/// The demo's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// How many keys to write and read back
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub keys: u64,
    /// How many clients write and read at once
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=512))]
    pub clients: u64,
    /// Keep the nodes' data directories and logs, and print where they are
    #[arg(long)]
    pub keep: bool,
    /// The raft-kv executable to run as nodes [default: this one]
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

impl Default for DemoArgs {
    fn default() -> DemoArgs {
        DemoArgs {
            keys: 5000,
            clients: 16,
            keep: false,
            binary: None,
        }
    }
}

/// How many nodes the demo runs.
const NODES: usize = 3;
/// How many more keys are written after the failover.
const KEYS_AFTER_FAILOVER: u64 = 100;
/// Keys per MGET when checking.
const MGET_CHUNK: usize = 500;
/// How often a retryable error reply (TRYAGAIN, CLUSTERDOWN, ...) is retried.
const RETRIES: u32 = 40;
/// The pause between retries.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The longest wait for a leader, a new leader, or a catch-up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the cluster is polled while waiting.
const POLL: Duration = Duration::from_millis(10);

/// Runs the demo; prints its progress and summary and returns its exit
/// code: 0 if every check passed, 1 otherwise, 130 when interrupted.
pub fn run(args: DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = match tempfile::Builder::new().prefix("raft-kv-demo-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "demo: cannot create a temporary directory in {}: {e}",
                std::env::temp_dir().display()
            );
            return ExitCode::FAILURE;
        }
    };
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => match std::env::current_exe() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("demo: cannot find the raft-kv executable (give it with --binary): {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let outcome = runtime.block_on(async {
        let mut signals = Signals::new();
        tokio::select! {
            r = demo(&args, binary, dir.path()) => Some(r),
            _ = signals.recv() => None,
        }
    });
    // Every node has been stopped or killed by now (the cluster is dropped
    // when `demo` returns or is interrupted); finish the runtime's tasks.
    runtime.shutdown_timeout(Duration::from_secs(2));
    let where_logs = if args.keep {
        let path = dir.keep();
        format!("the nodes' data and logs are kept in {}", path.display())
    } else {
        format!(
            "the nodes' data and logs were in {} (removed; run with --keep to keep them)",
            dir.path().display()
        )
    };
    match outcome {
        None => {
            println!("\ndemo: interrupted; every node was stopped");
            println!("{where_logs}");
            ExitCode::from(130)
        }
        Some(Err(e)) => {
            println!("\ndemo: FAILED: {e}");
            println!("{where_logs}");
            ExitCode::FAILURE
        }
        Some(Ok(report)) => {
            report.print();
            if args.keep {
                println!("{where_logs}");
            }
            if report.failed() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// One check: what was checked, whether it held, and the details.
struct Check {
    name: String,
    passed: bool,
    detail: String,
}

/// What the demo measured and checked.
#[derive(Default)]
struct Report {
    nodes: usize,
    clients: u64,
    writes: usize,
    write_time: Duration,
    reads: usize,
    read_time: Duration,
    verified_reads: usize,
    set_latency: Vec<Duration>,
    get_latency: Vec<Duration>,
    failover: Option<Duration>,
    killed: String,
    new_leader: String,
    catch_up: Option<Duration>,
    caught_up_index: u64,
    total: Duration,
    checks: Vec<Check>,
}

impl Report {
    fn check(&mut self, name: impl Into<String>, passed: bool, detail: impl Into<String>) {
        let check = Check {
            name: name.into(),
            passed,
            detail: detail.into(),
        };
        let mark = if check.passed { "ok" } else { "FAILED" };
        if check.detail.is_empty() {
            println!("      check: {}: {mark}", check.name);
        } else {
            println!("      check: {}: {mark} ({})", check.name, check.detail);
        }
        self.checks.push(check);
    }

    fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.passed).count()
    }

    fn print(&self) {
        let rate = |n: usize, t: Duration| {
            if t.is_zero() {
                "-".to_string()
            } else {
                format!("{:.0}", n as f64 / t.as_secs_f64())
            }
        };
        println!();
        println!(
            "Summary ({} nodes, {} clients, {:.1} s in all)",
            self.nodes,
            self.clients,
            self.total.as_secs_f64()
        );
        println!("  {:27}{:-^40}", "", " latency ");
        println!(
            "  {:<8}{:>7}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "", "count", "ops/s", "p50", "p90", "p99", "max"
        );
        for (name, count, time, samples) in [
            ("SET", self.writes, self.write_time, &self.set_latency),
            ("GET", self.reads, self.read_time, &self.get_latency),
        ] {
            let mut s = samples.clone();
            s.sort();
            let q = |p: f64| quantile(&s, p).map(fmt_ms).unwrap_or_else(|| "-".into());
            println!(
                "  {name:<8}{count:>7}{:>10}{:>10}{:>10}{:>10}{:>10}",
                rate(count, time),
                q(0.50),
                q(0.90),
                q(0.99),
                s.last().copied().map(fmt_ms).unwrap_or_else(|| "-".into())
            );
        }
        println!(
            "  {:<8}{:>7} keys checked after the failover and the restart",
            "MGET", self.verified_reads
        );
        match self.failover {
            Some(d) => println!(
                "  failover  no leader for {} (from the SIGKILL of leader {} until {} took a write)",
                fmt_ms(d),
                self.killed,
                self.new_leader
            ),
            None => println!("  failover  -"),
        }
        match self.catch_up {
            Some(d) => println!(
                "  catch-up  {} for the restarted {} to apply every committed entry (index {})",
                fmt_ms(d),
                self.killed,
                self.caught_up_index
            ),
            None => println!("  catch-up  -"),
        }
        println!();
        println!("Checks");
        for c in &self.checks {
            let mark = if c.passed { "PASS" } else { "FAIL" };
            if c.detail.is_empty() || c.passed {
                println!("  {mark}  {}", c.name);
            } else {
                println!("  {mark}  {}: {}", c.name, c.detail);
            }
        }
        println!();
        match self.failed() {
            0 => println!("demo: all checks passed"),
            1 => println!("demo: 1 check FAILED"),
            n => println!("demo: {n} checks FAILED"),
        }
    }
}

/// The `q` quantile of sorted samples (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `1.23 ms`, `45.6 ms`, `789 ms`.
fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn key(i: u64) -> String {
    format!("demo:key:{i}")
}

fn value(i: u64) -> String {
    format!("value {i} of the raft-kv demo")
}

/// Whether an error reply means "the cluster is busy electing; try again":
/// its error code (the first word, as Redis clients read it) is one of
/// those (a `BUSYKEY` or `TIMEOUTX` is not).
fn retryable(e: &str) -> bool {
    matches!(
        e.split(' ').next(),
        Some("TRYAGAIN" | "CLUSTERDOWN" | "TIMEOUT" | "BUSY" | "LOADING")
    )
}

/// A connection to one node that reconnects after a failure.
struct Conn {
    addr: String,
    client: Option<Client>,
    timeout: Duration,
    readonly: bool,
}

impl Conn {
    fn new(addr: &str, timeout: Duration) -> Conn {
        Conn {
            addr: addr.to_string(),
            client: None,
            timeout,
            readonly: false,
        }
    }

    /// Sends one command; a connection failure drops the connection (the
    /// next call connects again) and is returned as an error.
    async fn call(&mut self, args: &[&[u8]]) -> Result<Frame, String> {
        let client = self.client().await?;
        match client.call(args).await {
            Ok(f) => Ok(f),
            Err(e) => {
                self.client = None;
                Err(self.describe(e))
            }
        }
    }

    async fn pipeline(&mut self, commands: &[Vec<Bytes>]) -> Result<Vec<Frame>, String> {
        let client = self.client().await?;
        match client.pipeline(commands).await {
            Ok(f) => Ok(f),
            Err(e) => {
                self.client = None;
                Err(self.describe(e))
            }
        }
    }

    async fn client(&mut self) -> Result<&mut Client, String> {
        if self.client.is_none() {
            let mut c = Client::connect(self.addr.as_str())
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
            c.set_timeout(self.timeout);
            if self.readonly {
                match c.call(&[b"READONLY"]).await {
                    Ok(Frame::Simple(_)) => {}
                    Ok(other) => return Err(format!("READONLY on {}: {other:?}", self.addr)),
                    Err(e) => return Err(format!("READONLY on {}: {e}", self.addr)),
                }
            }
            self.client = Some(c);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    fn describe(&self, e: ClientError) -> String {
        format!("{}: {e}", self.addr)
    }

    async fn raft_info(&mut self) -> Result<RaftInfo, String> {
        match self.call(&[b"INFO", b"raft"]).await? {
            Frame::Bulk(b) => Ok(RaftInfo::parse(&String::from_utf8_lossy(&b))),
            other => Err(format!(
                "INFO raft on {}: unexpected reply {other:?}",
                self.addr
            )),
        }
    }

    /// Runs a command until it gets an answer that is not a retryable
    /// error, reconnecting and retrying up to [`RETRIES`] times.
    async fn call_retrying(&mut self, args: &[&[u8]]) -> Result<Frame, String> {
        let mut last = String::new();
        for _ in 0..=RETRIES {
            match self.call(args).await {
                Ok(Frame::Error(e)) if retryable(&e) => last = e,
                Ok(f) => return Ok(f),
                Err(e) => last = e,
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        Err(last)
    }
}

/// Prints the step header.
fn step(n: usize, text: &str) {
    println!("[{n}/7] {text}");
}

fn progress(len: u64, prefix: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_prefix(prefix);
    if let Ok(style) = ProgressStyle::with_template(
        "      {prefix:<4} [{wide_bar:.cyan/blue}] {pos:>7}/{len:<7} {elapsed:>4}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Adds the end of every node's log to an error message.
fn with_logs(cluster: &LocalCluster, what: String) -> String {
    let mut s = what;
    for n in cluster.nodes() {
        s.push_str(&format!(
            "\n  the end of {}'s log ({}):\n{}",
            n.info().id,
            n.info().log.display(),
            crate::local::log_tail(&n.info().log, 8)
        ));
    }
    s
}

/// Waits until one of `among` is the leader and every other one of them
/// knows it; returns its index and what it reported.
async fn wait_for_leader(
    cluster: &LocalCluster,
    conns: &mut [Conn],
    among: &[usize],
    timeout: Duration,
) -> Result<(usize, RaftInfo), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    loop {
        let mut infos = Vec::new();
        for &i in among {
            match conns[i].raft_info().await {
                Ok(info) => infos.push((i, info)),
                Err(e) => last = e,
            }
        }
        if infos.len() == among.len() {
            if let Some((i, leader)) = infos.iter().find(|(_, info)| info.is_leader()) {
                if infos.iter().all(|(_, info)| info.leader_id == leader.id) {
                    return Ok((*i, leader.clone()));
                }
            }
            last = infos
                .iter()
                .map(|(i, info)| {
                    format!(
                        "{} is {} in term {} (leader: {})",
                        cluster.node(*i).info().id,
                        info.role,
                        info.term,
                        if info.leader_id.is_empty() {
                            "none"
                        } else {
                            &info.leader_id
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
        }
        if Instant::now() >= deadline {
            return Err(format!("no leader within {timeout:?}; last: {last}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What one client's share of a write or read phase gave.
#[derive(Default)]
struct Share {
    latencies: Vec<Duration>,
    acknowledged: Vec<u64>,
    failed: usize,
    wrong: usize,
    first_problem: Option<String>,
}

/// Writes (or, with `read`, reads back and checks) keys `0..keys` with
/// `clients` concurrent clients spread over the nodes.
async fn run_phase(
    addrs: &[String],
    keys: &[u64],
    clients: u64,
    read: bool,
    bar: &ProgressBar,
) -> Share {
    let keys = Arc::new(keys.to_vec());
    let mut tasks = JoinSet::new();
    for c in 0..clients {
        let addr = addrs[c as usize % addrs.len()].clone();
        let (keys, bar) = (keys.clone(), bar.clone());
        tasks.spawn(async move {
            let mut conn = Conn::new(&addr, Duration::from_secs(5));
            let mut share = Share::default();
            for &i in keys.iter().skip(c as usize).step_by(clients as usize) {
                let (k, v) = (key(i), value(i));
                let started = Instant::now();
                let reply = if read {
                    conn.call_retrying(&[b"GET", k.as_bytes()]).await
                } else {
                    conn.call_retrying(&[b"SET", k.as_bytes(), v.as_bytes()])
                        .await
                };
                let elapsed = started.elapsed();
                bar.inc(1);
                let problem = match reply {
                    Ok(Frame::Simple(ok)) if !read && ok == "OK" => None,
                    Ok(Frame::Bulk(b)) if read && b == v.as_bytes() => None,
                    Ok(Frame::Bulk(b)) if read => {
                        share.wrong += 1;
                        Some(format!(
                            "GET {k} returned '{}', not '{v}'",
                            String::from_utf8_lossy(&b)
                        ))
                    }
                    Ok(Frame::Null) if read => {
                        share.wrong += 1;
                        Some(format!("GET {k} found no value, expected '{v}'"))
                    }
                    Ok(other) => {
                        share.failed += 1;
                        Some(format!("{k}: unexpected reply {other:?} from {addr}"))
                    }
                    Err(e) => {
                        share.failed += 1;
                        Some(format!("{k}: {e}"))
                    }
                };
                match problem {
                    None => {
                        share.latencies.push(elapsed);
                        share.acknowledged.push(i);
                    }
                    Some(p) => {
                        share.first_problem.get_or_insert(p);
                    }
                }
            }
            share
        });
    }
    let mut all = Share::default();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(s) => {
                all.latencies.extend(s.latencies);
                all.acknowledged.extend(s.acknowledged);
                all.failed += s.failed;
                all.wrong += s.wrong;
                if all.first_problem.is_none() {
                    all.first_problem = s.first_problem;
                }
            }
            Err(e) => {
                all.failed += 1;
                all.first_problem
                    .get_or_insert(format!("a client task failed: {e}"));
            }
        }
    }
    all
}

/// What checking a node's copy of the acknowledged writes found.
struct Verified {
    checked: usize,
    missing: usize,
    wrong: usize,
    first_problem: Option<String>,
}

impl Verified {
    fn ok(&self) -> bool {
        self.missing == 0 && self.wrong == 0 && self.first_problem.is_none()
    }

    fn detail(&self) -> String {
        let mut d = format!(
            "{} of {} keys as written",
            self.checked - self.missing - self.wrong,
            self.checked
        );
        if self.missing > 0 {
            d.push_str(&format!(", {} missing", self.missing));
        }
        if self.wrong > 0 {
            d.push_str(&format!(", {} with another value", self.wrong));
        }
        if let Some(p) = &self.first_problem {
            d.push_str(&format!("; {p}"));
        }
        d
    }
}

/// Checks with MGET (in chunks, pipelined) that the node at `conn` holds
/// every acknowledged write.
async fn verify(conn: &mut Conn, acknowledged: &BTreeMap<String, String>) -> Verified {
    let entries: Vec<(&String, &String)> = acknowledged.iter().collect();
    let mut v = Verified {
        checked: entries.len(),
        missing: 0,
        wrong: 0,
        first_problem: None,
    };
    for batch in entries.chunks(MGET_CHUNK * 8) {
        let chunks: Vec<&[(&String, &String)]> = batch.chunks(MGET_CHUNK).collect();
        let commands: Vec<Vec<Bytes>> = chunks
            .iter()
            .map(|chunk| {
                std::iter::once(Bytes::from_static(b"MGET"))
                    .chain(chunk.iter().map(|(k, _)| Bytes::from(k.to_string())))
                    .collect()
            })
            .collect();
        let mut replies = None;
        let mut last = String::new();
        for _ in 0..=RETRIES {
            match conn.pipeline(&commands).await {
                Ok(r) => match r.iter().find_map(|f| match f {
                    Frame::Error(e) => Some(e.clone()),
                    _ => None,
                }) {
                    Some(e) if retryable(&e) => last = e,
                    Some(e) => {
                        last = e;
                        break;
                    }
                    None => {
                        replies = Some(r);
                        break;
                    }
                },
                Err(e) => last = e,
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        let Some(replies) = replies else {
            v.missing += batch.len();
            v.first_problem
                .get_or_insert(format!("MGET failed: {last}"));
            continue;
        };
        for (chunk, reply) in chunks.iter().zip(replies) {
            let values = match reply {
                Frame::Array(values) if values.len() == chunk.len() => values,
                other => {
                    v.missing += chunk.len();
                    v.first_problem
                        .get_or_insert(format!("MGET: unexpected reply {other:?}"));
                    continue;
                }
            };
            for ((k, want), got) in chunk.iter().zip(values) {
                match got {
                    Frame::Bulk(b) if b == want.as_bytes() => {}
                    Frame::Null => {
                        v.missing += 1;
                        v.first_problem.get_or_insert(format!("{k} is missing"));
                    }
                    other => {
                        v.wrong += 1;
                        v.first_problem
                            .get_or_insert(format!("{k} is {other:?}, not '{want}'"));
                    }
                }
            }
        }
    }
    v
}

/// The demo itself: the steps in order. An `Err` is a failure that stops
/// it (a node that did not start, no leader); checks that fail are in the
/// report.
async fn demo(args: &DemoArgs, binary: PathBuf, dir: &Path) -> Result<Report, String> {
    let started = Instant::now();
    println!(
        "raft-kv demo: a {NODES}-node Raft cluster on this machine, each node its own process"
    );
    println!(
        "  (file persistence, mutual TLS between nodes, Redis protocol for clients; files in {})",
        dir.display()
    );
    println!();
    let mut demo = Demo::start(args, binary, dir).await?;
    demo.first_leader().await?;
    demo.write().await;
    demo.read_back().await;
    let (killed, new_leader) = demo.kill_the_leader().await?;
    demo.check_survivors(killed).await;
    demo.write_more(new_leader).await;
    demo.restart(killed, new_leader).await?;
    demo.stop().await;
    demo.report.total = started.elapsed();
    Ok(demo.report)
}

/// The demo's cluster and what it has written, measured and checked.
struct Demo {
    args: DemoArgs,
    cluster: LocalCluster,
    /// The nodes' client addresses.
    addrs: Vec<String>,
    /// A connection to each node for `INFO raft`.
    conns: Vec<Conn>,
    /// Every acknowledged write: these must never be lost.
    acknowledged: BTreeMap<String, String>,
    report: Report,
}

impl Demo {
    /// Step 1: starts the nodes.
    async fn start(args: &DemoArgs, binary: PathBuf, dir: &Path) -> Result<Demo, String> {
        step(1, &format!("starting {NODES} nodes"));
        let spec = ClusterSpec {
            binary,
            dir: dir.to_path_buf(),
            name: "raft-kv-demo".into(),
            nodes: NODES,
            ports: Ports::Free { admin: false },
            requirepass: None,
            extra_args: [
                "--heartbeat-ms",
                "50",
                "--election-timeout-min-ms",
                "150",
                "--election-timeout-max-ms",
                "300",
            ]
            .map(String::from)
            .to_vec(),
            tls: true,
            start_timeout: Duration::from_secs(15),
        };
        let cluster = LocalCluster::start(&spec)
            .await
            .map_err(|e| format!("the cluster did not start: {e}"))?;
        println!(
            "      between nodes: mutual TLS (a throwaway CA and certificates in {})",
            dir.display()
        );
        for n in cluster.nodes() {
            println!(
                "      {}  clients on {}  peers on {}  pid {}",
                n.info().id,
                n.info().client_addr,
                n.info().peer_addr,
                n.pid().map(|p| p.to_string()).unwrap_or_else(|| "?".into())
            );
        }
        let addrs: Vec<String> = cluster
            .nodes()
            .iter()
            .map(|n| n.info().client_addr.clone())
            .collect();
        let conns = addrs
            .iter()
            .map(|a| Conn::new(a, Duration::from_millis(500)))
            .collect();
        Ok(Demo {
            args: args.clone(),
            cluster,
            addrs,
            conns,
            acknowledged: BTreeMap::new(),
            report: Report {
                nodes: NODES,
                clients: args.clients,
                ..Report::default()
            },
        })
    }

    fn id(&self, i: usize) -> String {
        self.cluster.node(i).info().id.clone()
    }

    /// Step 2: waits for the first leader.
    async fn first_leader(&mut self) -> Result<(), String> {
        step(2, "waiting for the nodes to elect a leader");
        let t = Instant::now();
        let all: Vec<usize> = (0..NODES).collect();
        let (leader, info) = wait_for_leader(&self.cluster, &mut self.conns, &all, PHASE_TIMEOUT)
            .await
            .map_err(|e| with_logs(&self.cluster, format!("waiting for the first leader: {e}")))?;
        println!(
            "      {} is the leader (term {}), elected {} after the nodes listened",
            self.id(leader),
            info.term,
            fmt_ms(t.elapsed())
        );
        self.report.check("a leader is elected", true, "");
        Ok(())
    }

    /// Step 3: writes the keys with concurrent clients.
    async fn write(&mut self) {
        let (keys, clients) = (self.args.keys, self.args.clients);
        step(
            3,
            &format!(
                "writing {keys} keys with {clients} clients spread over all nodes (followers forward writes to the leader)"
            ),
        );
        let bar = progress(keys, "SET");
        let t = Instant::now();
        let all: Vec<u64> = (0..keys).collect();
        let written = run_phase(&self.addrs, &all, clients, false, &bar).await;
        self.report.write_time = t.elapsed();
        bar.finish_and_clear();
        self.acknowledged
            .extend(written.acknowledged.iter().map(|&i| (key(i), value(i))));
        self.report.writes = written.acknowledged.len();
        self.report.set_latency = written.latencies;
        println!(
            "      {} SETs acknowledged in {:.2} s",
            self.report.writes,
            self.report.write_time.as_secs_f64()
        );
        self.report.check(
            format!("every SET is acknowledged ({keys} keys)"),
            written.failed == 0,
            match &written.first_problem {
                Some(p) => format!("{} failed; first: {p}", written.failed),
                None => String::new(),
            },
        );
    }

    /// Step 4: reads every acknowledged key back and compares.
    async fn read_back(&mut self) {
        let keys: Vec<u64> = (0..self.args.keys)
            .filter(|&i| self.acknowledged.contains_key(&key(i)))
            .collect();
        step(
            4,
            &format!(
                "reading the {} keys back with GET (linearizable reads, from every node)",
                keys.len()
            ),
        );
        let bar = progress(keys.len() as u64, "GET");
        let t = Instant::now();
        let read = run_phase(&self.addrs, &keys, self.args.clients, true, &bar).await;
        self.report.read_time = t.elapsed();
        bar.finish_and_clear();
        self.report.reads = read.acknowledged.len() + read.wrong;
        self.report.get_latency = read.latencies;
        println!(
            "      {} GETs in {:.2} s",
            self.report.reads,
            self.report.read_time.as_secs_f64()
        );
        self.report.check(
            "every GET returns the value written",
            read.failed == 0 && read.wrong == 0,
            match &read.first_problem {
                Some(p) => format!("{} wrong, {} failed; first: {p}", read.wrong, read.failed),
                None => String::new(),
            },
        );
    }

    /// Step 5: kills the leader with SIGKILL and measures the time until a
    /// survivor knows a new leader and a write through it succeeds.
    /// Returns the indexes of the killed node and of the new leader.
    async fn kill_the_leader(&mut self) -> Result<(usize, usize), String> {
        let all: Vec<usize> = (0..NODES).collect();
        let (leader, info) = wait_for_leader(&self.cluster, &mut self.conns, &all, PHASE_TIMEOUT)
            .await
            .map_err(|e| with_logs(&self.cluster, format!("finding the leader to kill: {e}")))?;
        let killed = self.id(leader);
        self.report.killed = killed.clone();
        step(
            5,
            &format!(
                "killing the leader {killed} (SIGKILL, term {}, commit index {}); waiting for a new leader",
                info.term, info.commit_index
            ),
        );
        let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
        let killed_at = Instant::now();
        self.cluster
            .kill(leader)
            .await
            .map_err(|e| format!("killing {killed}: {e}"))?;
        let probe_key = "demo:failover".to_string();
        let probe_value = format!("written through the new leader after {killed} was killed");
        let mut last = String::from("no survivor answered");
        while killed_at.elapsed() < PHASE_TIMEOUT {
            for &i in &survivors {
                let info = match self.conns[i].raft_info().await {
                    Ok(info) => info,
                    Err(e) => {
                        last = e;
                        continue;
                    }
                };
                let new_leader = match self.cluster.index_of(&info.leader_id) {
                    Some(l) if l != leader => l,
                    _ => {
                        last = format!(
                            "{} is {} in term {}, leader {}",
                            info.id,
                            info.role,
                            info.term,
                            if info.leader_id.is_empty() {
                                "unknown"
                            } else {
                                &info.leader_id
                            }
                        );
                        continue;
                    }
                };
                // A new leader is known: a write through it must succeed.
                match self.conns[new_leader]
                    .call(&[b"SET", probe_key.as_bytes(), probe_value.as_bytes()])
                    .await
                {
                    Ok(Frame::Simple(ok)) if ok == "OK" => {
                        let downtime = killed_at.elapsed();
                        self.acknowledged.insert(probe_key, probe_value);
                        self.report.writes += 1;
                        self.report.failover = Some(downtime);
                        self.report.new_leader = info.leader_id.clone();
                        println!(
                            "      {} took over in term {}: the cluster had no leader for {}",
                            info.leader_id,
                            info.term,
                            fmt_ms(downtime)
                        );
                        self.report.check(
                            format!("a new leader takes writes after {killed} is killed"),
                            true,
                            "",
                        );
                        return Ok((leader, new_leader));
                    }
                    Ok(other) => last = format!("SET through {}: {other:?}", info.leader_id),
                    Err(e) => last = e,
                }
            }
            tokio::time::sleep(POLL).await;
        }
        Err(with_logs(
            &self.cluster,
            format!(
                "no new leader took a write within {PHASE_TIMEOUT:?} of killing {killed}; last: {last}"
            ),
        ))
    }

    /// Step 6, first part: every survivor has every acknowledged write.
    async fn check_survivors(&mut self, killed: usize) {
        step(
            6,
            &format!(
                "checking every acknowledged write on the survivors, then writing {KEYS_AFTER_FAILOVER} more keys"
            ),
        );
        for i in (0..NODES).filter(|&i| i != killed) {
            let mut conn = Conn::new(&self.addrs[i], Duration::from_secs(5));
            let v = verify(&mut conn, &self.acknowledged).await;
            self.report.verified_reads += v.checked;
            self.report.check(
                format!(
                    "{} has every acknowledged write ({} keys, linearizable MGET)",
                    self.id(i),
                    v.checked
                ),
                v.ok(),
                v.detail(),
            );
        }
    }

    /// Step 6, second part: more writes through the new leader.
    async fn write_more(&mut self, leader: usize) {
        let first = self.args.keys;
        let more: Vec<u64> = (first..first + KEYS_AFTER_FAILOVER).collect();
        let t = Instant::now();
        let after = run_phase(
            &self.addrs[leader..=leader],
            &more,
            4,
            false,
            &ProgressBar::hidden(),
        )
        .await;
        let elapsed = t.elapsed();
        self.report.writes += after.acknowledged.len();
        self.report.write_time += elapsed;
        self.report.set_latency.extend(after.latencies);
        self.acknowledged
            .extend(after.acknowledged.iter().map(|&i| (key(i), value(i))));
        println!(
            "      {} more SETs acknowledged in {:.2} s",
            after.acknowledged.len(),
            elapsed.as_secs_f64()
        );
        self.report.check(
            format!("the {KEYS_AFTER_FAILOVER} SETs after the failover are acknowledged"),
            after.failed == 0,
            after.first_problem.unwrap_or_default(),
        );
    }

    /// Step 7: restarts the killed node, waits until it has applied what
    /// the leader has committed, and checks its own copy (READONLY).
    async fn restart(&mut self, node: usize, leader: usize) -> Result<(), String> {
        let id = self.id(node);
        step(
            7,
            &format!("restarting {id} from its data directory and waiting for it to catch up"),
        );
        let restarted_at = Instant::now();
        self.cluster
            .restart(node)
            .await
            .map_err(|e| format!("restarting {id}: {e}"))?;
        let listening_after = restarted_at.elapsed();
        // The old connection went with the killed process.
        self.conns[node].client = None;
        let mut caught_up = None;
        let mut last = String::from("no answer yet");
        while restarted_at.elapsed() < PHASE_TIMEOUT {
            let leader_info = self.conns[leader].raft_info().await;
            let node_info = self.conns[node].raft_info().await;
            match (leader_info, node_info) {
                (Ok(li), Ok(ni)) => {
                    if ni.applied_index >= li.commit_index && li.commit_index > 0 {
                        caught_up = Some((restarted_at.elapsed(), ni.applied_index));
                        break;
                    }
                    last = format!(
                        "{id} applied {} of the leader's {} committed entries",
                        ni.applied_index, li.commit_index
                    );
                }
                (Err(e), _) | (_, Err(e)) => last = e,
            }
            tokio::time::sleep(POLL).await;
        }
        let name = format!("{id} catches up after its restart");
        match caught_up {
            Some((d, index)) => {
                self.report.catch_up = Some(d);
                self.report.caught_up_index = index;
                println!(
                    "      {id} listened again after {} and had applied every committed entry (index {index}) after {}",
                    fmt_ms(listening_after),
                    fmt_ms(d)
                );
                self.report.check(name, true, "");
            }
            None => self
                .report
                .check(name, false, format!("not within {PHASE_TIMEOUT:?}: {last}")),
        }
        let mut local = Conn::new(&self.addrs[node], Duration::from_secs(5));
        local.readonly = true;
        let v = verify(&mut local, &self.acknowledged).await;
        self.report.verified_reads += v.checked;
        self.report.check(
            format!(
                "{id} has every acknowledged write ({} keys, READONLY: its own copy)",
                v.checked
            ),
            v.ok(),
            v.detail(),
        );
        Ok(())
    }

    /// Stops every node with SIGTERM and checks that each exits cleanly.
    async fn stop(&mut self) {
        println!("      stopping the nodes with SIGTERM");
        self.conns.clear();
        let stopped = self.cluster.stop(Duration::from_secs(10)).await;
        let unclean: Vec<String> = stopped
            .iter()
            .filter_map(|(id, r)| match r {
                Ok(Some(s)) if s.success() => None,
                Ok(Some(s)) => Some(format!("{id} exited with {s}")),
                Ok(None) => Some(format!("{id} had to be killed")),
                Err(e) => Some(e.to_string()),
            })
            .collect();
        self.report.check(
            "every node stops cleanly on SIGTERM",
            unclean.is_empty(),
            unclean.join("; "),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&s, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&s, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&s, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(
            quantile(&[Duration::from_millis(7)], 0.9),
            Some(Duration::from_millis(7))
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_ms(Duration::from_micros(1234)), "1.23 ms");
        assert_eq!(fmt_ms(Duration::from_micros(45_600)), "45.6 ms");
        assert_eq!(fmt_ms(Duration::from_millis(789)), "789 ms");
    }

    #[test]
    fn election_errors_are_retried() {
        assert!(retryable("TRYAGAIN not the leader"));
        assert!(retryable("CLUSTERDOWN no leader"));
        assert!(!retryable("ERR wrong number of arguments"));
        assert!(retryable("LOADING"));
        assert!(!retryable("BUSYKEY Target key name already exists."));
    }
}
