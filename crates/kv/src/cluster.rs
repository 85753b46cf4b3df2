//! `raft-kv cluster`: N local nodes in the foreground, to try raft-kv with
//! redis-cli or any Redis client. Node `i` (from 1) listens for clients on
//! `--port + i - 1`, for peers on `--peer-port + i - 1` and serves its admin
//! endpoint on `--admin-port + i - 1`; all are founded together with a
//! static membership. Ctrl-C or SIGTERM stops every node gracefully.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::local::{ClusterSpec, LocalCluster, Ports, Signals};

/// The cluster command's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// How many nodes to start
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=99))]
    pub nodes: u64,
    /// The client (Redis protocol) port of node 1; node i listens on
    /// port + i - 1
    #[arg(long, default_value_t = 6379)]
    pub port: u16,
    /// The peer (Raft) port of node 1; node i uses peer-port + i - 1
    #[arg(long, default_value_t = 7001)]
    pub peer_port: u16,
    /// The admin HTTP port of node 1 (GET /status, /metrics); node i uses
    /// admin-port + i - 1
    #[arg(long, default_value_t = 8001)]
    pub admin_port: u16,
    /// Where the nodes keep their data and logs; kept at exit, so that the
    /// next start with the same flags finds the data again [default: a
    /// temporary directory, removed at exit]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The default user's password of the new cluster (not empty; then
    /// change users with ACL SETUSER) [default: none, no password needed]
    #[arg(long, env = "RAFT_KV_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// The cluster's name
    #[arg(long, default_value = "raft-kv-local")]
    pub cluster: String,
    /// The nodes' log filter (error, warn, info, debug, trace)
    /// [default: RUST_LOG, else info]
    #[arg(long)]
    pub log_level: Option<String>,
    /// The raft-kv executable to run as nodes [default: this one]
    #[arg(long, value_name = "PATH", hide = true)]
    pub binary: Option<PathBuf>,
}

impl Default for ClusterArgs {
    fn default() -> ClusterArgs {
        ClusterArgs {
            nodes: 3,
            port: 6379,
            peer_port: 7001,
            admin_port: 8001,
            data_dir: None,
            requirepass: None,
            cluster: "raft-kv-local".into(),
            log_level: None,
            binary: None,
        }
    }
}

/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the nodes, prints where they listen, runs until Ctrl-C or
/// SIGTERM, then stops them. Exits with 0 after a clean stop.
pub fn run(args: ClusterArgs) -> ExitCode {
    if args.requirepass.as_deref() == Some("") {
        eprintln!(
            "raft-kv cluster: --requirepass must not be empty: leave it out to create the cluster with a default user who needs no password"
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("raft-kv cluster: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The temporary directory (if any) lives until the nodes are gone.
    let (dir, _temp) = match &args.data_dir {
        Some(d) => (d.clone(), None),
        None => match tempfile::Builder::new()
            .prefix("raft-kv-cluster-")
            .tempdir()
        {
            Ok(t) => (t.path().to_path_buf(), Some(t)),
            Err(e) => {
                eprintln!(
                    "raft-kv cluster: cannot create a temporary directory in {}: {e}",
                    std::env::temp_dir().display()
                );
                return ExitCode::FAILURE;
            }
        },
    };
    let code = runtime.block_on(run_cluster(&args, dir));
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

async fn run_cluster(args: &ClusterArgs, dir: PathBuf) -> ExitCode {
    // Listen for signals first: a SIGTERM during the start stops the nodes
    // too instead of leaving them behind.
    let mut signals = Signals::new();
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => match std::env::current_exe() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("raft-kv cluster: cannot find the raft-kv executable: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut extra_args = Vec::new();
    if let Some(l) = &args.log_level {
        extra_args.extend(["--log-level".to_string(), l.clone()]);
    }
    let spec = ClusterSpec {
        binary,
        dir: dir.clone(),
        name: args.cluster.clone(),
        nodes: args.nodes as usize,
        ports: Ports::From {
            client: args.port,
            peer: args.peer_port,
            admin: Some(args.admin_port),
        },
        requirepass: args.requirepass.clone(),
        extra_args,
        tls: true,
        start_timeout: Duration::from_secs(30),
    };
    let kept = args.data_dir.is_some();
    println!(
        "raft-kv cluster: starting {} node{} of cluster {}; data and logs in {}{}",
        args.nodes,
        if args.nodes == 1 { "" } else { "s" },
        args.cluster,
        dir.display(),
        if kept {
            " (kept)"
        } else {
            " (removed at exit; --data-dir keeps them)"
        }
    );
    let started = tokio::select! {
        r = LocalCluster::start(&spec) => r,
        why = signals.recv() => {
            // The nodes started so far are killed as the start is dropped.
            eprintln!("raft-kv cluster: {why} while starting; stopped");
            return ExitCode::FAILURE;
        }
    };
    let mut cluster = match started {
        Ok(c) => c,
        Err(e) => {
            eprintln!("raft-kv cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "  Between nodes: mutual TLS; the cluster's CA is {} (its key beside it: `raft-kv cert create-client --certs-dir {} --name you` makes a client certificate).",
        crate::local::ca_dir(&spec).join(crate::tls::CA_CERT).display(),
        crate::local::ca_dir(&spec).display(),
    );
    for n in cluster.nodes() {
        let i = n.info();
        println!(
            "  {:<4} clients on {}   admin on http://{}   peers on {}   pid {}   log {}",
            i.id,
            i.client_addr,
            i.admin_addr.as_deref().unwrap_or("-"),
            i.peer_addr,
            n.pid().map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            i.log.display()
        );
    }
    let addrs: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| n.info().client_addr.clone())
        .collect();
    match wait_for_leader(&addrs, spec.requirepass.as_deref(), Duration::from_secs(10)).await {
        Some(leader) => println!("The nodes elected {leader} as their leader."),
        None => println!(
            "No leader was elected within 10 s; the nodes' logs may say why (the nodes keep running)."
        ),
    }
    let auth = if spec.requirepass.is_some() {
        " --askpass"
    } else {
        ""
    };
    let last_port = args.port as u64 + args.nodes - 1;
    println!("Try:  redis-cli -p {}{auth} set hello world", args.port);
    println!(
        "      redis-cli -p {last_port}{auth} get hello     (any node answers; writes go through the leader)"
    );
    println!("      redis-cli -p {}{auth} info raft", args.port);
    println!("Press Ctrl-C to stop the cluster.");

    let (why, signalled) = wait_for_signal(&mut cluster, &mut signals).await;
    println!("\nraft-kv cluster: {why}; stopping the nodes");
    let mut clean = signalled;
    for (id, r) in cluster.stop(STOP_TIMEOUT).await {
        match r {
            Ok(Some(s)) if s.success() => println!("  {id} stopped"),
            Ok(Some(s)) => {
                clean = false;
                println!("  {id} exited with {s}")
            }
            Ok(None) => {
                // Not running (it exited earlier) or killed after the timeout.
                println!("  {id} is gone")
            }
            Err(e) => {
                clean = false;
                eprintln!("  {e}")
            }
        }
    }
    if kept {
        println!("The data is kept in {}.", dir.display());
    }
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Polls `INFO raft` (after AUTH with `password`, if any) until a node
/// is leader; returns its id.
async fn wait_for_leader(
    addrs: &[String],
    password: Option<&str>,
    timeout: Duration,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for a in addrs {
            let Ok(mut c) = Client::connect(a.as_str()).await else {
                continue;
            };
            c.set_timeout(Duration::from_millis(500));
            if let Some(p) = password {
                if c.call(&[b"AUTH", p.as_bytes()]).await.is_err() {
                    continue;
                }
            }
            if let Ok(info) = c.raft_info().await {
                if info.is_leader() {
                    return Some(info.id);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Waits for Ctrl-C or SIGTERM, reporting nodes that exit on their own
/// meanwhile; returns what ended the wait, and whether it was a signal.
async fn wait_for_signal(
    cluster: &mut LocalCluster,
    signals: &mut Signals,
) -> (&'static str, bool) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            what = signals.recv() => return (what, true),
            _ = tick.tick() => {}
        }
        for (id, status) in cluster.exited() {
            let log = cluster
                .index_of(&id)
                .map(|i| cluster.node(i).log_tail())
                .unwrap_or_default();
            eprintln!(
                "raft-kv cluster: node {id} exited on its own ({status}); the end of its log:\n{log}"
            );
        }
        if (0..cluster.nodes().len()).all(|i| !cluster.node_mut(i).is_running()) {
            return ("every node exited", false);
        }
    }
}
