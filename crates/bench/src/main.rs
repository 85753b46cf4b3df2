//! `raft-bench`: write throughput of raft-node against openraft, in the shape
//! of openraft's `benchmarks/minimal`: three nodes in one process, in-memory
//! network and storage, empty commands, N concurrent clients each writing to
//! the leader in a loop. Both systems run on the same kind of tokio runtime
//! (multi-thread, 2 workers), one after the other, on a fresh cluster for
//! every point.
//!
//! ```text
//! cargo run --release -p raft-bench -- [--seconds S] [--warmup S]
//!     [--clients 1,64,256,4096] [--only openraft|raft-node] [--runs N]
//!     [--raft-node-snapshot-threshold N] [--raft-node-snapshot-trailing N]
//! ```
//!
//! writes/s counts the writes that completed inside the measured window
//! (after the warm-up), divided by the window's length. Results vary a lot
//! from run to run on a two-core machine (the scheduler decides how the
//! tasks share the two workers): `--runs N` repeats every point, the two
//! systems taking turns, and shows the median run with the range.
//!
//! For `perf`: `--only raft-node --clients 4096 --seconds 10`.

mod alloc_count;
mod openraft_cluster;
mod raft_node_cluster;

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The openraft release this crate is pinned to (see Cargo.toml).
const OPENRAFT_VERSION: &str = "0.10.0-alpha.37";

/// Tokio worker threads for both systems (the machine has two cores).
const WORKERS: usize = 2;

/// One way to write to a cluster's leader.
pub trait Client: Clone + Send + Sync + 'static {
    /// Writes one empty command and waits until it is applied.
    fn write(&self) -> impl Future<Output = Result<(), String>> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Openraft,
    RaftNode,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Openraft => "openraft",
            System::RaftNode => "raft-node",
        }
    }
}

struct Args {
    seconds: f64,
    warmup: f64,
    clients: Vec<usize>,
    systems: Vec<System>,
    runs: usize,
    tuning: raft_node_cluster::Tuning,
}

const USAGE: &str = "usage: raft-bench [--seconds S] [--warmup S] [--clients 1,64,256,4096] [--only openraft|raft-node] [--runs N]
    [--raft-node-snapshot-threshold N] [--raft-node-snapshot-trailing N]  (raft-node options; default: Options::default())
    [--raft-node-without-sessions]  (raft-node writes with command_without_session: no exactly-once deduplication)
    [--raft-node-apply-inline]  (raft-node applies on the task that drives the core: ApplyMode::Inline)";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 3.0,
        warmup: 0.5,
        clients: vec![1, 64, 256, 4096],
        systems: vec![System::Openraft, System::RaftNode],
        runs: 1,
        tuning: Default::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--seconds" => args.seconds = parse_seconds(&value()?)?,
            "--warmup" => args.warmup = parse_seconds(&value()?)?,
            "--clients" => {
                args.clients = value()?
                    .split(',')
                    .map(|c| match c.trim().parse::<usize>() {
                        Ok(n) if n > 0 => Ok(n),
                        _ => Err(format!("bad client count {c:?}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--only" => {
                args.systems = match value()?.as_str() {
                    "openraft" => vec![System::Openraft],
                    "raft-node" => vec![System::RaftNode],
                    other => {
                        return Err(format!("--only takes openraft or raft-node, not {other:?}"))
                    }
                }
            }
            "--runs" => {
                args.runs = match value()?.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err("--runs takes a positive count".into()),
                }
            }
            "--raft-node-snapshot-threshold" => {
                args.tuning.snapshot_threshold = Some(parse_count(&value()?)?);
            }
            "--raft-node-snapshot-trailing" => {
                args.tuning.snapshot_trailing = Some(parse_count(&value()?)?);
            }
            "--raft-node-without-sessions" => args.tuning.without_sessions = true,
            "--raft-node-apply-inline" => args.tuning.apply_inline = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.seconds <= 0.0 {
        return Err("--seconds must be positive".into());
    }
    Ok(args)
}

fn parse_count(s: &str) -> Result<u64, String> {
    s.parse::<u64>().map_err(|_| format!("bad count {s:?}"))
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("bad number of seconds {s:?}")),
    }
}

/// What one system did at one client count.
struct Point {
    writes: u64,
    window: Duration,
    errors: u64,
    first_error: Option<String>,
    /// Latencies in nanoseconds.
    latency: Histogram<u64>,
    elections: u64,
    /// Counters worth a look, if the system has them.
    diagnostics: Option<String>,
    /// The share of the machine's CPU time that other processes took
    /// during the run (Linux only).
    others: Option<f64>,
    /// Heap allocations made by the whole process during the window.
    allocs: alloc_count::Counts,
}

impl Point {
    fn rate(&self) -> f64 {
        self.writes as f64 / self.window.as_secs_f64()
    }

    /// Allocations and allocated bytes per completed write, in the window.
    fn allocs_per_write(&self) -> String {
        if self.writes == 0 {
            return "-".into();
        }
        let w = self.writes as f64;
        format!(
            "{:.1}/{:.0}B",
            self.allocs.allocations as f64 / w,
            self.allocs.bytes as f64 / w
        )
    }

    fn latency(&self) -> String {
        if self.latency.is_empty() {
            return "-".into();
        }
        format!(
            "{}/{}",
            duration(self.latency.value_at_quantile(0.5)),
            duration(self.latency.value_at_quantile(0.99))
        )
    }
}

fn duration(nanos: u64) -> String {
    if nanos < 1_000_000 {
        format!("{:.0}us", nanos as f64 / 1e3)
    } else {
        format!("{:.2}ms", nanos as f64 / 1e6)
    }
}

/// What one client task reports.
#[derive(Default)]
struct ClientReport {
    /// Latency (ns, saturated) of every write completed in the window.
    samples: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

/// Runs `clients` tasks writing through `client` in a loop; counts the
/// writes completed between `warmup` and `warmup + window` from now.
async fn load<C: Client>(client: C, clients: usize, warmup: Duration, window: Duration) -> Point {
    let begin = Instant::now();
    let from = begin + warmup;
    let until = from + window;
    // Reads the allocation counters at both ends of the window.
    let counter = tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        let start = alloc_count::now();
        tokio::time::sleep_until(until.into()).await;
        alloc_count::now().since(start)
    });
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut report = ClientReport::default();
            loop {
                let t0 = Instant::now();
                let result = client.write().await;
                let t1 = Instant::now();
                match result {
                    Ok(()) => {
                        if t1 >= from && t1 < until {
                            let nanos = (t1 - t0).as_nanos();
                            report
                                .samples
                                .push(u32::try_from(nanos).unwrap_or(u32::MAX));
                        }
                    }
                    Err(e) => {
                        report.errors += 1;
                        report.first_error.get_or_insert(e);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                if t1 >= until {
                    return report;
                }
            }
        }));
    }
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
    let mut point = Point {
        writes: 0,
        window,
        errors: 0,
        first_error: None,
        latency: Histogram::new(1).expect("valid"),
        elections: 0,
        diagnostics: None,
        others: None,
        allocs: alloc_count::Counts::default(),
    };
    for task in tasks {
        let report = task.await.expect("a client task panicked");
        point.writes += report.samples.len() as u64;
        for s in report.samples {
            latency.saturating_record(u64::from(s));
        }
        point.errors += report.errors;
        if point.first_error.is_none() {
            point.first_error = report.first_error;
        }
    }
    point.latency = latency;
    point.allocs = counter.await.expect("the counter task panicked");
    point
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Starts a fresh cluster of `system` on a fresh runtime, loads it, stops it.
fn run(system: System, clients: usize, args: &Args) -> Result<Point, String> {
    let warmup = Duration::from_secs_f64(args.warmup);
    let window = Duration::from_secs_f64(args.seconds);
    let before = cpu_ticks();
    let rt = runtime();
    let point = rt.block_on(async {
        match system {
            System::Openraft => {
                let cluster = openraft_cluster::Cluster::start().await?;
                let term = cluster.leader_term();
                let mut point = load(cluster.client(), clients, warmup, window).await;
                point.elections = cluster.leader_term() - term;
                cluster.shutdown().await;
                Ok::<Point, String>(point)
            }
            System::RaftNode => {
                let cluster = raft_node_cluster::Cluster::start(&args.tuning).await?;
                let term = cluster.leader_term();
                let mut point = load(cluster.client(), clients, warmup, window).await;
                point.elections = cluster.leader_term() - term;
                point.diagnostics = Some(cluster.diagnostics());
                cluster.shutdown().await;
                Ok(point)
            }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    let mut point = point?;
    if let (Some((all0, busy0, own0)), Some((all1, busy1, own1))) = (before, cpu_ticks()) {
        let others = (busy1 - busy0).saturating_sub(own1 - own0);
        point.others = Some(others as f64 / (all1 - all0).max(1) as f64);
    }
    Ok(point)
}

/// Other processes took more than this share of the CPUs: the run is noisy.
const NOISY: f64 = 0.05;

/// CPU ticks of the machine (all, busy) and of this process, from /proc.
fn cpu_ticks() -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    if fields.len() < 8 {
        return None;
    }
    let all: u64 = fields.iter().sum();
    let idle = fields[3] + fields[4];
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (which may hold spaces).
    let rest = &own[own.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let own = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((all, all - idle, own))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "3 nodes in one process, in-memory network and storage, empty commands; \
         tokio multi-thread runtime, {WORKERS} workers; {:.1} s measured after {:.1} s warm-up per point, \
         {} run(s) per point (median shown); openraft {OPENRAFT_VERSION}",
        args.seconds, args.warmup, args.runs
    );
    if args.tuning.snapshot_threshold.is_some() || args.tuning.snapshot_trailing.is_some() {
        println!("raft-node options changed: {:?}", args.tuning);
    }
    let mut rows = Vec::new();
    for &clients in &args.clients {
        let mut points: [Vec<Point>; 2] = [Vec::new(), Vec::new()];
        // Alternate the systems run by run, so that drift on the machine
        // touches both alike.
        for _ in 0..args.runs {
            for (slot, system) in [System::Openraft, System::RaftNode].into_iter().enumerate() {
                if !args.systems.contains(&system) {
                    continue;
                }
                eprint!("{} with {clients} clients... ", system.name());
                match run(system, clients, &args) {
                    Ok(p) => {
                        report(&p);
                        points[slot].push(p);
                    }
                    Err(e) => {
                        eprintln!("failed: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
        let [o, r] = points;
        rows.push((clients, [Summary::of(o), Summary::of(r)]));
    }
    print_table(&rows);
    ExitCode::SUCCESS
}

/// One run, on stderr.
fn report(p: &Point) {
    eprintln!(
        "{:.0} writes/s, p50/p99 {}, allocations/bytes per write {}",
        p.rate(),
        p.latency(),
        p.allocs_per_write()
    );
    if p.errors > 0 {
        eprintln!(
            "  {} errors, the first: {}",
            p.errors,
            p.first_error.as_deref().unwrap_or("?")
        );
    }
    if let Some(d) = &p.diagnostics {
        eprintln!("  {d}");
    }
    if p.elections > 0 {
        eprintln!(
            "  the leader's term moved by {} during the run",
            p.elections
        );
    }
    if let Some(o) = p.others.filter(|&o| o > NOISY) {
        eprintln!(
            "  noisy: other processes took {:.0}% of the CPUs during this run",
            o * 100.0
        );
    }
}

/// The runs of one system at one client count.
struct Summary {
    /// The run with the median rate.
    median: Point,
    min: f64,
    max: f64,
    runs: usize,
    errors: u64,
    /// Runs during which other processes took more than [`NOISY`].
    noisy: usize,
}

impl Summary {
    fn of(mut points: Vec<Point>) -> Option<Summary> {
        if points.is_empty() {
            return None;
        }
        points.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        let runs = points.len();
        let (min, max) = (points[0].rate(), points[runs - 1].rate());
        let errors = points.iter().map(|p| p.errors).sum();
        let noisy = points
            .iter()
            .filter(|p| p.others.is_some_and(|o| o > NOISY))
            .count();
        let median = points.swap_remove(runs / 2);
        Some(Summary {
            median,
            min,
            max,
            runs,
            errors,
            noisy,
        })
    }

    fn rate(&self) -> String {
        let mark = if self.noisy > 0 { "*" } else { "" };
        if self.runs == 1 {
            format!("{:.0}{mark}", self.median.rate())
        } else {
            format!(
                "{:.0} ({:.0}-{:.0}){mark}",
                self.median.rate(),
                self.min,
                self.max
            )
        }
    }
}

fn print_table(rows: &[(usize, [Option<Summary>; 2])]) {
    let header = [
        "clients",
        "openraft writes/s",
        "raft-node writes/s",
        "ratio (raft-node/openraft)",
        "openraft p50/p99",
        "raft-node p50/p99",
        "openraft allocs/B per write",
        "raft-node allocs/B per write",
        "errors (or/rn)",
    ];
    let mut lines = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for (clients, [o, r]) in rows {
        let rate = |s: &Option<Summary>| s.as_ref().map_or("-".into(), Summary::rate);
        let lat = |s: &Option<Summary>| s.as_ref().map_or("-".into(), |s| s.median.latency());
        let errors = |s: &Option<Summary>| s.as_ref().map_or("-".into(), |s| s.errors.to_string());
        let allocs = |s: &Option<Summary>| {
            s.as_ref()
                .map_or("-".into(), |s| s.median.allocs_per_write())
        };
        let ratio = match (o, r) {
            (Some(o), Some(r)) if o.median.rate() > 0.0 => {
                format!("{:.2}x", r.median.rate() / o.median.rate())
            }
            _ => "-".into(),
        };
        lines.push(vec![
            clients.to_string(),
            rate(o),
            rate(r),
            ratio,
            lat(o),
            lat(r),
            allocs(o),
            allocs(r),
            format!("{}/{}", errors(o), errors(r)),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    for (n, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        println!("| {} |", cells.join(" | "));
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            println!("|-{}-|", rule.join("-|-"));
        }
    }
    if rows
        .iter()
        .flat_map(|(_, s)| s.iter().flatten())
        .any(|s| s.noisy > 0)
    {
        println!(
            "* other processes took more than {:.0}% of the CPUs during at least one of these runs",
            NOISY * 100.0
        );
    }
}
