//! `raft-kv-chaos`: runs nemeses against real `raft-kv serve` processes and
//! exits non-zero if any run finds an anomaly, a lost write, a divergence or
//! a liveness miss.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use raft_kv_chaos::{Config, Length, Nemesis, NetChoice};

/// Faults (kills, pauses, partitions, flaky packets, clock skew, disk
/// faults, membership changes) injected into a raft-kv cluster of
/// real processes under a client workload whose history is checked for
/// linearizability.
#[derive(Parser, Debug)]
#[command(name = "raft-kv-chaos", version, about)]
struct Args {
    /// The raft-kv executable [default: `raft-kv` next to this one]
    #[arg(long)]
    bin: Option<PathBuf>,
    /// How many nodes
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// How many clients
    #[arg(long, default_value_t = 5)]
    clients: u64,
    /// How many keys
    #[arg(long, default_value_t = 3)]
    keys: u64,
    /// The seed of the fault schedules [default: from the clock]
    #[arg(long)]
    seed: Option<u64>,
    /// How long the whole run goes on, shared equally by the nemeses that
    /// run (the time to start and check each included): seconds, or a
    /// number with s, m or h (`90`, `90s`, `30m`, `1h`) [default: 10 s per
    /// nemesis]
    #[arg(long)]
    duration: Option<String>,
    /// Seconds a write may take to succeed after the last heal
    #[arg(long, default_value_t = 10.0)]
    liveness_bound: f64,
    /// The nemeses, comma-separated, or `all`: kill-random, kill-leader,
    /// kill-majority, pause-random, pause-leader, partition-halves,
    /// partition-one, partition-leader, partition-bridge, partition-ring,
    /// slow-packets, flaky-packets, delay, clock-skew, disk-full,
    /// fsync-fail, membership, combined, mixed; or `none` (no fault, a
    /// baseline)
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Where the nodes run: auto (namespaces if root and iproute2, else
    /// 127.0.0.1), netns, loopback
    #[arg(long, default_value = "auto")]
    net: String,
    /// Read with READONLY (local, possibly stale reads): a bug mode the
    /// check must catch under partitions
    #[arg(long)]
    readonly_reads: bool,
    /// A leader answers plain SETs once its own log holds them, before a
    /// majority does, its appends held back 100 ms (a test-only
    /// server fault): a bug mode the check must catch when leaders are
    /// killed, and only then
    #[arg(long)]
    early_ack: bool,
    /// EXEC ignores watched keys (a test-only server fault): a bug mode
    /// the check must catch without any fault, through the clients'
    /// WATCH/MULTI/EXEC CASes
    #[arg(long)]
    ignore_watch: bool,
    /// Put the relays of the `delay` nemesis on every link for every
    /// nemesis (passing bytes through untouched but for `delay` faults): to
    /// measure what they cost
    #[arg(long)]
    relays: bool,
    /// Mutual TLS between the nodes (certificates made for the run)
    #[arg(long)]
    tls: bool,
    /// The directory for the nodes' data and logs (kept for failed runs)
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep every nemesis's data, logs and history, passed or not (to
    /// look into a long unavailability, say)
    #[arg(long)]
    keep: bool,
    /// Draw each nemesis's latency and throughput over time into this
    /// directory (`<nemesis>-latency.png`, `<nemesis>-throughput.png`)
    #[arg(long)]
    plots: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let nemeses = if args.nemesis == "all" {
        Nemesis::ALL.to_vec()
    } else {
        let mut v = Vec::new();
        for name in args.nemesis.split(',') {
            match Nemesis::parse(name) {
                Some(n) => v.push(n),
                None => {
                    eprintln!("raft-kv-chaos: no nemesis {name:?}");
                    return ExitCode::from(2);
                }
            }
        }
        v
    };
    let duration = match &args.duration {
        None => Length::Each(Duration::from_secs(10)),
        Some(text) => match Length::parse_duration(text) {
            Ok(d) if d / nemeses.len().max(1) as u32 >= Length::MIN_EACH => Length::Total(d),
            Ok(d) => {
                eprintln!(
                    "raft-kv-chaos: --duration {text} is {:.1} s for each of {} nemeses; each needs at least {} s",
                    d.as_secs_f64() / nemeses.len() as f64,
                    nemeses.len(),
                    Length::MIN_EACH.as_secs()
                );
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("raft-kv-chaos: --duration {e}");
                return ExitCode::from(2);
            }
        },
    };
    let net = match args.net.as_str() {
        "auto" => NetChoice::Auto,
        "netns" => NetChoice::Namespaces,
        "loopback" => NetChoice::Loopback,
        other => {
            eprintln!("raft-kv-chaos: --net is auto, netns or loopback, not {other:?}");
            return ExitCode::from(2);
        }
    };
    let bin = args.bin.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("raft-kv")))
            .unwrap_or_else(|| PathBuf::from("raft-kv"))
    });
    if !bin.exists() {
        eprintln!(
            "raft-kv-chaos: no raft-kv at {} (build it with `cargo build --release -p raft-kv`, or give --bin)",
            bin.display()
        );
        return ExitCode::from(2);
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 % 1_000_000)
            .unwrap_or(1)
    });
    let config = Config {
        bin,
        nodes: args.nodes,
        clients: args.clients,
        keys: args.keys,
        seed,
        duration,
        liveness_bound: Duration::from_secs_f64(args.liveness_bound),
        readonly_reads: args.readonly_reads,
        early_ack: args.early_ack,
        ignore_watch: args.ignore_watch,
        relays: args.relays,
        tls: args.tls,
        net,
        nemeses,
        dir: args.dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "{}{}",
                raft_kv_chaos::DIR_PREFIX,
                std::process::id()
            ))
        }),
        plots: args.plots,
        keep: args.keep,
    };
    match raft_kv_chaos::run(&config) {
        Ok(reports) => {
            let failed: Vec<&str> = reports
                .iter()
                .filter(|r| !r.passed())
                .map(|r| r.nemesis.name())
                .collect();
            let _ = std::fs::remove_dir(&config.dir);
            if failed.is_empty() {
                println!("all {} nemeses passed (seed {seed})", reports.len());
                ExitCode::SUCCESS
            } else {
                println!(
                    "FAILED: {} (replay: --seed {seed} --nemesis {})",
                    failed.join(" "),
                    failed.join(",")
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("raft-kv-chaos: {e} (seed {seed})");
            ExitCode::FAILURE
        }
    }
}
