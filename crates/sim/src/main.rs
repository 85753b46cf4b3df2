//! `raft-sim`: runs seeded simulations of the Raft core and checks them.
//!
//! ```text
//! raft-sim --seeds N [--start S] [--threads T]   run N seeds
//! raft-sim --seed S [--trace]                     replay one seed, event for event
//! raft-sim --inject BUG [--seeds N]               run with a known bug: must be caught
//! raft-sim --inject all [--seeds N]               every known bug, one after the other
//! raft-sim election [--trials N]                  the Raft paper's section 9.3 measurement
//! raft-sim scenario NAME|all                      the named scenarios
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use raft_core::bugs::{Bug, BugSet};
use raft_sim::run::{run_seed, RunReport};

struct Args {
    seeds: u64,
    start: u64,
    seed: Option<u64>,
    inject: Option<String>,
    trace: bool,
    threads: usize,
    command: Option<String>,
    rest: Vec<String>,
}

const USAGE: &str = "usage: raft-sim [--seeds N] [--start S] [--threads T] [--seed S [--trace]] [--inject BUG|all] [election [--trials N] | scenario NAME|all | list]";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seeds: 100,
        start: 0,
        seed: None,
        inject: None,
        trace: false,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        command: None,
        rest: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>, flag: &str| -> Result<u64, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a number"))?;
        v.parse()
            .map_err(|_| format!("{flag}: '{v}' is not a number"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seeds" => a.seeds = num(it.next(), "--seeds")?,
            "--start" => a.start = num(it.next(), "--start")?,
            "--seed" => a.seed = Some(num(it.next(), "--seed")?),
            "--threads" => a.threads = num(it.next(), "--threads")?.max(1) as usize,
            "--inject" => a.inject = Some(it.next().ok_or("--inject needs a bug name or 'all'")?),
            "--trace" => a.trace = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ if a.command.is_none() && !arg.starts_with('-') => a.command = Some(arg),
            _ if a.command.is_some() => a.rest.push(arg),
            other => return Err(format!("unknown option '{other}'\n{USAGE}")),
        }
    }
    Ok(a)
}

fn bug_names() -> String {
    Bug::ALL
        .iter()
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_violation(r: &RunReport, bug: Option<Bug>) {
    let v = r.violation.as_ref().expect("called on a violation");
    println!("VIOLATION at seed {} ({})", r.seed, r.shape);
    if let Some(b) = bug {
        println!("  injected bug: {}", b.name());
    }
    println!("  invariant: {}", v.invariant);
    println!("  at {:.3} ms: {}", v.time_us as f64 / 1000.0, v.detail);
    println!(
        "  replay: raft-sim --seed {}{} --trace",
        r.seed,
        bug.map_or(String::new(), |b| format!(" --inject {}", b.name()))
    );
    println!("  last events:");
    print!("{}", r.trace);
}

/// Runs seeds `start..start+count` on `threads` threads; stops at the first
/// violation (reporting the lowest failing seed among those run).
fn run_many(
    start: u64,
    count: u64,
    threads: usize,
    bug: Option<Bug>,
    quiet: bool,
) -> (u64, Option<RunReport>, Vec<(u64, u64)>) {
    let next = AtomicU64::new(start);
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let max_events = AtomicU64::new(0);
    let failure: Mutex<Option<RunReport>> = Mutex::new(None);
    let recoveries: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());
    let bugs = bug.map_or(BugSet::default(), BugSet::only);
    let began = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= start + count {
                    return;
                }
                let r = run_seed(seed, bugs, bug, false);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                max_events.fetch_max(r.events, Ordering::Relaxed);
                if let Some(t) = r.recovery_us {
                    recoveries
                        .lock()
                        .expect("no panics while held")
                        .push((t, seed));
                }
                if r.violation.is_some() {
                    stop.store(true, Ordering::Relaxed);
                    let mut f = failure.lock().expect("no panics while held");
                    if f.as_ref().is_none_or(|old| r.seed < old.seed) {
                        *f = Some(r);
                    }
                } else if !quiet && n.is_multiple_of(500) {
                    eprintln!("  {n} seeds passed ({:.0}s)", began.elapsed().as_secs_f64());
                }
            });
        }
    });
    if !quiet {
        println!("largest run: {} events", max_events.load(Ordering::Relaxed));
    }
    let failure = failure.into_inner().expect("threads joined");
    let mut rec = recoveries.into_inner().expect("threads joined");
    rec.sort_unstable();
    (done.load(Ordering::Relaxed), failure, rec)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match args.command.as_deref() {
        Some("election") => return raft_sim::election::main(&args.rest),
        Some("scenario") => return raft_sim::scenarios::main(&args.rest),
        Some("list") => {
            println!("bugs: {}", bug_names());
            return raft_sim::scenarios::main(&["list".to_string()]);
        }
        Some(other) => {
            eprintln!("unknown command '{other}'\n{USAGE}");
            return ExitCode::from(2);
        }
        None => {}
    }
    let bug = match args.inject.as_deref() {
        None => None,
        Some("all") => return inject_all(&args),
        Some(name) => match Bug::from_name(name) {
            Some(b) => Some(b),
            None => {
                eprintln!("unknown bug '{name}'; known bugs: {}", bug_names());
                return ExitCode::from(2);
            }
        },
    };
    if let Some(seed) = args.seed {
        let bugs = bug.map_or(BugSet::default(), BugSet::only);
        let r = run_seed(seed, bugs, bug, args.trace);
        println!("seed {seed}: {}", r.shape);
        println!(
            "  {} events, {} leaders elected, {} ops completed, {} timed out, {} snapshots installed, {} handovers after a disk stall, recovery {}",
            r.events,
            r.elections,
            r.ops_completed,
            r.ops_timed_out,
            r.snapshots_installed,
            r.disk_stall_handovers,
            r.recovery_us.map_or("-".to_string(), |t| format!("{:.1} ms", t as f64 / 1000.0))
        );
        if r.violation.is_some() {
            print_violation(&r, bug);
            return ExitCode::from(1);
        }
        println!("1 seeds, 0 violations");
        return ExitCode::SUCCESS;
    }
    let began = Instant::now();
    let (done, failure, rec) = run_many(args.start, args.seeds, args.threads, bug, false);
    if let Some(r) = failure {
        print_violation(&r, bug);
        println!("{done} seeds, 1 violations");
        return ExitCode::from(1);
    }
    if !rec.is_empty() {
        let mean = rec.iter().map(|r| r.0).sum::<u64>() as f64 / rec.len() as f64;
        let p99 = rec[(rec.len() * 99 / 100).min(rec.len() - 1)].0;
        let (max, max_seed) = *rec.last().expect("non-empty");
        println!(
            "liveness: after healing, a write completed in mean {:.1} ms, p99 {:.1} ms, max {:.1} ms (seed {max_seed})",
            mean / 1000.0,
            p99 as f64 / 1000.0,
            max as f64 / 1000.0
        );
    }
    println!(
        "time: {:.1}s on {} threads",
        began.elapsed().as_secs_f64(),
        args.threads
    );
    println!("{done} seeds, 0 violations");
    ExitCode::SUCCESS
}

/// Runs every known bug; each must be caught within the seed budget.
fn inject_all(args: &Args) -> ExitCode {
    let mut missed = Vec::new();
    for bug in Bug::ALL {
        let began = Instant::now();
        let (done, failure, _) = run_many(args.start, args.seeds, args.threads, Some(bug), true);
        match failure {
            Some(r) => {
                let v = r.violation.as_ref().expect("a failure has a violation");
                println!(
                    "{:<34} caught at seed {:>5} by {:<28} ({} seeds, {:.1}s)",
                    bug.name(),
                    r.seed,
                    v.invariant,
                    done,
                    began.elapsed().as_secs_f64()
                );
            }
            None => {
                println!("{:<34} NOT CAUGHT in {} seeds", bug.name(), done);
                missed.push(bug.name());
            }
        }
    }
    if missed.is_empty() {
        println!(
            "{} bugs injected, {} caught",
            Bug::ALL.len(),
            Bug::ALL.len()
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "{} bugs injected, {} NOT caught: {}",
            Bug::ALL.len(),
            missed.len(),
            missed.join(", ")
        );
        ExitCode::from(1)
    }
}
