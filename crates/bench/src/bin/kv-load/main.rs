//! `kv-load`: a closed-loop load generator for key-value servers, the same
//! one for raft-kv, redis-server (RESP: SET and GET) and etcd (its v3
//! HTTP/JSON gateway: put and linearizable range), so that they are
//! measured alike.
//!
//! ```text
//! kv-load --addr HOST:PORT --protocol resp|etcd --op write|read|fill
//!     [--clients N] [--seconds S] [--warmup S] [--keyspace N] [--value-size B]
//!     [--timeout S] [--threads N] [--pids PID,PID,...]
//! kv-load table RESULTS
//! ```
//!
//! Each of the N connections sends one request, waits for the answer,
//! checks it, and sends the next (a closed loop), on keys drawn uniformly
//! from `k0` .. `k{keyspace-1}`; the value of a key is its name padded to
//! `--value-size` bytes, so a read checks that it got its own key's value.
//! `--op fill` writes every key once (a read of a missing key is a
//! failure). Requests answered during the `--seconds` after the `--warmup`
//! are counted. A run prints one line:
//!
//! ```text
//! ops=N seconds=S ops_per_sec=X p50_ms=A p99_ms=B errors=E cpu_s=C
//! ```
//!
//! `errors` counts failed requests (refused connections, timeouts, error
//! replies, wrong values, malformed answers) over the whole run, and the
//! first one is printed on stderr; `cpu_s` is the user plus system time the
//! processes of `--pids` used during the measured window (`-` without
//! `--pids`). The exit status is 1 if no request succeeded in the window.
//! `kv-load table` turns a file of such lines (each prefixed with
//! `system=... op=... clients=...`) into the markdown table of
//! `side-by-side.sh`.

mod cpu;
mod etcd;
mod load;
mod resp;
mod table;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use load::{Op, Protocol, Target};

const USAGE: &str = "usage: kv-load --addr HOST:PORT --protocol resp|etcd --op write|read|fill
    [--clients N] [--seconds S] [--warmup S] [--keyspace N] [--value-size B]
    [--timeout S] [--threads N] [--pids PID,PID,...]
       kv-load table RESULTS";

/// What `--op` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Load(Op),
    Fill,
}

struct Args {
    target: Target,
    task: Task,
    clients: u64,
    seconds: f64,
    warmup: f64,
    threads: usize,
    pids: Vec<u32>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut addr = None;
    let mut protocol = None;
    let mut task = None;
    let mut parsed = Args {
        target: Target {
            addr: String::new(),
            protocol: Protocol::Resp,
            keyspace: 10_000,
            value_size: 100,
            timeout: Duration::from_secs(5),
        },
        task: Task::Fill,
        clients: 1,
        seconds: 5.0,
        warmup: 1.0,
        threads: 1,
        pids: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--addr" => addr = Some(value()?.to_string()),
            "--protocol" => {
                protocol = Some(match value()? {
                    "resp" => Protocol::Resp,
                    "etcd" => Protocol::Etcd,
                    other => return Err(format!("--protocol takes resp or etcd, not {other:?}")),
                })
            }
            "--op" => {
                task = Some(match value()? {
                    "write" => Task::Load(Op::Write),
                    "read" => Task::Load(Op::Read),
                    "fill" => Task::Fill,
                    other => return Err(format!("--op takes write, read or fill, not {other:?}")),
                })
            }
            "--clients" => parsed.clients = positive(value()?)?,
            "--seconds" => parsed.seconds = seconds(value()?)?,
            "--warmup" => parsed.warmup = seconds(value()?)?,
            "--keyspace" => parsed.target.keyspace = positive(value()?)?,
            "--value-size" => parsed.target.value_size = positive(value()?)? as usize,
            "--timeout" => parsed.target.timeout = Duration::from_secs_f64(seconds(value()?)?),
            "--threads" => parsed.threads = positive(value()?)? as usize,
            "--pids" => {
                parsed.pids = value()?
                    .split(',')
                    .map(|p| {
                        p.trim()
                            .parse::<u32>()
                            .map_err(|_| format!("bad pid {p:?}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    parsed.target.addr = addr.ok_or_else(|| format!("--addr is required\n{USAGE}"))?;
    parsed.target.protocol = protocol.ok_or_else(|| format!("--protocol is required\n{USAGE}"))?;
    parsed.task = task.ok_or_else(|| format!("--op is required\n{USAGE}"))?;
    if parsed.seconds <= 0.0 || parsed.target.timeout.is_zero() {
        return Err("--seconds and --timeout must be positive".into());
    }
    Ok(parsed)
}

fn positive(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive count")),
    }
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("bad number of seconds {s:?}")),
    }
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Samples the CPU time of `pids` at `from` and at `until`, on a thread of
/// its own (the generator's tasks cannot delay it): seconds used between.
fn cpu_window(
    pids: Vec<u32>,
    from: Instant,
    until: Instant,
) -> std::thread::JoinHandle<Result<f64, String>> {
    std::thread::spawn(move || {
        let per_second = cpu::ticks_per_second();
        std::thread::sleep(from.saturating_duration_since(Instant::now()));
        let before = cpu::ticks(&pids)?;
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        let after = cpu::ticks(&pids)?;
        Ok(after.saturating_sub(before) as f64 / per_second)
    })
}

/// Runs the closed loop and prints its line.
fn run_load(args: Args, op: Op) -> Result<ExitCode, String> {
    let rt = runtime(args.threads).map_err(|e| format!("tokio runtime: {e}"))?;
    let target = Arc::new(args.target);
    let window = Duration::from_secs_f64(args.seconds);
    let from = Instant::now() + Duration::from_secs_f64(args.warmup);
    let until = from + window;
    let cpu = (!args.pids.is_empty()).then(|| cpu_window(args.pids.clone(), from, until));
    let reports = rt.block_on(async {
        let tasks: Vec<_> = (0..args.clients)
            .map(|i| tokio::spawn(load::client(target.clone(), op, i, from, until)))
            .collect();
        let mut reports = Vec::with_capacity(tasks.len());
        for task in tasks {
            reports.push(
                task.await
                    .map_err(|e| format!("a client task failed: {e}"))?,
            );
        }
        Ok::<_, String>(reports)
    })?;
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
    let (mut ops, mut errors, mut first_error) = (0u64, 0u64, None);
    for r in reports {
        ops += r.samples.len() as u64;
        for s in r.samples {
            latency.saturating_record(u64::from(s));
        }
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    let cpu = match cpu.map(|t| t.join()) {
        None => "-".to_string(),
        Some(Ok(Ok(seconds))) => format!("{seconds:.3}"),
        Some(Ok(Err(e))) => {
            eprintln!("kv-load: server CPU time: {e}");
            "-".to_string()
        }
        Some(Err(_)) => return Err("the CPU sampling thread panicked".into()),
    };
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1e6;
    println!(
        "ops={ops} seconds={:.3} ops_per_sec={:.1} p50_ms={:.3} p99_ms={:.3} errors={errors} cpu_s={cpu}",
        window.as_secs_f64(),
        ops as f64 / window.as_secs_f64(),
        ms(0.5),
        ms(0.99),
    );
    if let Some(e) = &first_error {
        eprintln!(
            "kv-load: {errors} failed request(s) at {}; the first: {e}",
            target.addr
        );
    }
    Ok(if ops == 0 {
        eprintln!("kv-load: no request succeeded at {}", target.addr);
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes every key once and prints how long it took.
fn run_fill(args: Args) -> Result<ExitCode, String> {
    let rt = runtime(args.threads).map_err(|e| format!("tokio runtime: {e}"))?;
    let keyspace = args.target.keyspace;
    let start = Instant::now();
    rt.block_on(load::fill(Arc::new(args.target), args.clients))?;
    println!(
        "filled={keyspace} seconds={:.3}",
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_table(path: &str) -> Result<ExitCode, String> {
    let results = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    print!("{}", table::render(&results)?);
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("table") => match &argv[1..] {
            [path] => run_table(path),
            _ => Err(USAGE.into()),
        },
        _ => parse_args(&argv).and_then(|args| match args.task {
            Task::Load(op) => run_load(args, op),
            Task::Fill => run_fill(args),
        }),
    };
    result.unwrap_or_else(|e| {
        eprintln!("kv-load: {e}");
        ExitCode::from(2)
    })
}
