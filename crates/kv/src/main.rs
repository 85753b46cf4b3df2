//! The raft-kv command line: `serve` one node, run the `demo`, or start a
//! local `cluster` to try things out.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use raft_kv::serve::StartErrorKind;

/// raft-kv: a replicated key-value store on Raft that speaks the Redis
/// protocol (use redis-cli, redis-benchmark or any Redis client).
#[derive(Parser, Debug)]
#[command(name = "raft-kv", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand, Debug)]
enum Commands {
    /// Run one node: its Raft peer port, its client (RESP) port, its data
    /// directory, and optionally an admin HTTP endpoint
    #[command(after_help = raft_kv::serve::exit_codes_help())]
    Serve(Box<raft_kv::config::ServeArgs>),
    /// Start a 3-node cluster on this machine, write and read, kill the
    /// leader, check that nothing acknowledged was lost, and print a summary
    Demo(raft_kv::demo::DemoArgs),
    /// Start N local nodes in the foreground, print their client
    /// addresses, stop them all on Ctrl-C
    Cluster(raft_kv::cluster::ClusterArgs),
    /// Make and list the certificates of a cluster: its CA, its nodes'
    /// certificates (mutual TLS between nodes) and clients' certificates
    Cert(raft_kv::cert::CertArgs),
}

/// The runtime that runs a node: `threads` worker threads (0: one per
/// core), or with 1, every task on the main thread (a current-thread
/// runtime: no work stealing, no wake-ups of other workers, which a single
/// worker thread would still pay against the main thread).
fn runtime(threads: usize) -> tokio::runtime::Runtime {
    let mut b = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 0 {
            b.worker_threads(threads);
        }
        b
    };
    b.enable_all().build().expect("the tokio runtime starts")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Commands::Serve(args) => {
            // The exit codes are documented: `exit_codes_help`.
            let settings = match (*args).resolve() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("raft-kv serve: {e}");
                    return ExitCode::from(StartErrorKind::Setting.exit_code());
                }
            };
            raft_kv::serve::init_logging(settings.log_level.as_deref());
            match runtime(settings.threads).block_on(raft_kv::serve::run(settings)) {
                Ok(()) => ExitCode::from(raft_kv::serve::error::EXIT_STOPPED),
                Err(e) => {
                    eprintln!("raft-kv serve: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Commands::Demo(args) => raft_kv::demo::run(args),
        Commands::Cluster(args) => raft_kv::cluster::run(args),
        Commands::Cert(args) => raft_kv::cert::run(args),
    }
}
