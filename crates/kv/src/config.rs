//! `raft-kv serve`'s settings: flags, an optional TOML file with the same
//! keys, and defaults, merged in that order of precedence and checked with
//! errors that name the flag or key at fault.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The flags of `raft-kv serve`; every one may also be a key of the TOML
/// file given by `--config` (same name, with dashes). Flags win over the
/// file.
#[derive(clap::Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// The node's id, unique in the cluster. Kept in the data directory: a
    /// restart may leave it out [default: the stored id, or a new cuid2]
    #[arg(long)]
    pub id: Option<String>,
    /// The cluster's name. Nodes refuse peers of another cluster; set a
    /// unique name per cluster [default: raft-kv]
    #[arg(long)]
    pub cluster: Option<String>,
    /// The TCP address for Raft traffic between nodes. Other nodes reach
    /// this node there, so it must be an address they can connect to (not
    /// 0.0.0.0) [default: 127.0.0.1:7001]
    #[arg(long)]
    pub peer_addr: Option<String>,
    /// The TCP address clients connect to (RESP2, the Redis protocol)
    /// [default: 127.0.0.1:6379]
    #[arg(long)]
    pub client_addr: Option<String>,
    /// The admin HTTP address: GET /status (JSON) and GET /metrics
    /// (Prometheus) [default: none]
    #[arg(long)]
    pub admin_addr: Option<String>,
    /// Where the node keeps its log, snapshots and id [default: ./raft-kv-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The initial members of a new cluster, this node included, as
    /// id=peer-address pairs separated by commas. Give every initial node
    /// the same list. Without --members and --join, a new node starts a
    /// cluster of one [default: none]
    #[arg(long, value_delimiter = ',')]
    pub members: Option<Vec<String>>,
    /// The peer address of a member of the cluster to join; the new node
    /// starts empty and asks that member to add it [default: none]
    #[arg(long)]
    pub join: Option<String>,
    /// The default user's password when this node creates the cluster (it
    /// is replicated as a hash; afterwards users are changed with ACL
    /// SETUSER, and this flag only guards the node until it has the
    /// cluster's users). Not empty [default: none, the default user needs
    /// no password; also read from the RAFT_KV_REQUIREPASS environment
    /// variable]
    #[arg(long, env = "RAFT_KV_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// Log filter: error, warn, info, debug, trace or a tracing directive
    /// such as raft_node=debug [default: RUST_LOG, else info]
    #[arg(long)]
    pub log_level: Option<String>,
    /// The most client connections at once; more are refused with an error
    /// [default: 10000]
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// The largest request (one command with its arguments), in bytes
    /// [default: 8388608]
    #[arg(long)]
    pub max_request_bytes: Option<usize>,
    /// The most commands of one connection handled in one round (pipeline
    /// depth); the rest wait in the socket [default: 1024]
    #[arg(long)]
    pub max_pipeline: Option<usize>,
    /// The leader's heartbeat interval in milliseconds [default: 50]
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// The shortest election timeout in milliseconds [default: 150]
    #[arg(long)]
    pub election_timeout_min_ms: Option<u64>,
    /// The longest election timeout in milliseconds [default: 300]
    #[arg(long)]
    pub election_timeout_max_ms: Option<u64>,
    /// How long a command or read may wait for the cluster, in milliseconds
    /// [default: 5000]
    #[arg(long)]
    pub command_timeout_ms: Option<u64>,
    /// Take a snapshot and compact the log after this many entries (0:
    /// never) [default: 10000]
    #[arg(long)]
    pub snapshot_threshold: Option<u64>,
    /// How reads are made linearizable: read-index (a heartbeat round) or
    /// lease (the leader's lease; relies on bounded clock drift)
    /// [default: read-index]
    #[arg(long)]
    pub read_mode: Option<String>,
    /// Threads that run the node and its clients (0: one per core)
    /// [default: 0]
    #[arg(long)]
    pub threads: Option<usize>,
    /// A TOML file with any of these settings (keys as the flags, without
    /// the dashes in front); flags override it
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

/// How a node starts when its data directory is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A new cluster of one.
    Single,
    /// A new cluster of these `(id, peer address)` members.
    Members(Vec<(String, String)>),
    /// Join the cluster through the member at this peer address.
    Join(String),
}

/// The settings of one server, resolved and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The node's id, if given.
    pub id: Option<String>,
    /// The cluster's name.
    pub cluster: String,
    /// Where peers' Raft traffic arrives.
    pub peer_addr: String,
    /// Where clients connect.
    pub client_addr: String,
    /// The admin HTTP address.
    pub admin_addr: Option<String>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// How a new node starts.
    pub start: Start,
    /// The default user's password if this node founds the cluster's
    /// users; never empty.
    pub requirepass: Option<String>,
    /// The log filter.
    pub log_level: Option<String>,
    /// The most client connections.
    pub max_connections: usize,
    /// The largest request in bytes.
    pub max_request_bytes: usize,
    /// The pipeline depth per round.
    pub max_pipeline: usize,
    /// The heartbeat interval.
    pub heartbeat: Duration,
    /// The shortest election timeout.
    pub election_timeout_min: Duration,
    /// The longest election timeout.
    pub election_timeout_max: Duration,
    /// How long commands and reads wait.
    pub command_timeout: Duration,
    /// Entries between snapshots.
    pub snapshot_threshold: u64,
    /// Lease reads instead of ReadIndex.
    pub lease_reads: bool,
    /// Runtime threads (0: one per core).
    pub threads: usize,
}

/// A setting that is wrong; the text names it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(flag: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("invalid --{flag}: {why}"))
}

fn check_addr(flag: &str, addr: &str) -> Result<(), ConfigError> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(bad(flag, format!("'{addr}' is not host:port")));
    };
    if host.is_empty() {
        return Err(bad(flag, format!("'{addr}' has no host")));
    }
    port.parse::<u16>()
        .map_err(|_| bad(flag, format!("'{addr}': '{port}' is not a port number")))?;
    Ok(())
}

impl ServeArgs {
    /// Reads the `--config` file (if any) under these flags.
    pub fn with_file(self) -> Result<ServeArgs, ConfigError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError(format!("cannot read --config {}: {e}", path.display())))?;
        let file: ServeArgs = toml::from_str(&text)
            .map_err(|e| ConfigError(format!("in config file {}: {e}", path.display())))?;
        Ok(self.over(file))
    }

    /// These settings, with `other`'s where these have none.
    pub fn over(self, other: ServeArgs) -> ServeArgs {
        ServeArgs {
            id: self.id.or(other.id),
            cluster: self.cluster.or(other.cluster),
            peer_addr: self.peer_addr.or(other.peer_addr),
            client_addr: self.client_addr.or(other.client_addr),
            admin_addr: self.admin_addr.or(other.admin_addr),
            data_dir: self.data_dir.or(other.data_dir),
            members: self.members.or(other.members),
            join: self.join.or(other.join),
            requirepass: self.requirepass.or(other.requirepass),
            log_level: self.log_level.or(other.log_level),
            max_connections: self.max_connections.or(other.max_connections),
            max_request_bytes: self.max_request_bytes.or(other.max_request_bytes),
            max_pipeline: self.max_pipeline.or(other.max_pipeline),
            heartbeat_ms: self.heartbeat_ms.or(other.heartbeat_ms),
            election_timeout_min_ms: self
                .election_timeout_min_ms
                .or(other.election_timeout_min_ms),
            election_timeout_max_ms: self
                .election_timeout_max_ms
                .or(other.election_timeout_max_ms),
            command_timeout_ms: self.command_timeout_ms.or(other.command_timeout_ms),
            snapshot_threshold: self.snapshot_threshold.or(other.snapshot_threshold),
            read_mode: self.read_mode.or(other.read_mode),
            threads: self.threads.or(other.threads),
            config: self.config.or(other.config),
        }
    }

    /// Resolves defaults and checks every value.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let a = self.with_file()?;
        let peer_addr = a.peer_addr.unwrap_or_else(|| "127.0.0.1:7001".into());
        check_addr("peer-addr", &peer_addr)?;
        if peer_addr.starts_with("0.0.0.0:") || peer_addr.starts_with("[::]:") {
            return Err(bad(
                "peer-addr",
                format!("'{peer_addr}' is a wildcard: give the address other nodes connect to"),
            ));
        }
        let client_addr = a.client_addr.unwrap_or_else(|| "127.0.0.1:6379".into());
        check_addr("client-addr", &client_addr)?;
        if let Some(admin) = &a.admin_addr {
            check_addr("admin-addr", admin)?;
        }
        if let Some(id) = &a.id {
            if id.is_empty()
                || id
                    .chars()
                    .any(|c| c.is_whitespace() || c == '=' || c == ',')
            {
                return Err(bad(
                    "id",
                    format!("'{id}' must be non-empty, without spaces, '=' or ','"),
                ));
            }
        }
        let cluster = a.cluster.unwrap_or_else(|| "raft-kv".into());
        if cluster.is_empty() {
            return Err(bad("cluster", "must not be empty"));
        }
        let start = match (a.members, a.join) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "--members and --join exclude each other: a node either founds a cluster or joins one".into(),
                ))
            }
            (Some(members), None) => {
                let mut list = Vec::new();
                for m in members {
                    let Some((id, addr)) = m.split_once('=') else {
                        return Err(bad("members", format!("'{m}' is not id=peer-address")));
                    };
                    if id.is_empty() {
                        return Err(bad("members", format!("'{m}' has an empty id")));
                    }
                    check_addr("members", addr)?;
                    if list.iter().any(|(i, _): &(String, String)| i == id) {
                        return Err(bad("members", format!("the id '{id}' is listed twice")));
                    }
                    list.push((id.to_string(), addr.to_string()));
                }
                if list.is_empty() {
                    return Err(bad("members", "the list is empty"));
                }
                let Some(id) = &a.id else {
                    return Err(bad(
                        "members",
                        "a node started with --members needs --id (its entry in the list)",
                    ));
                };
                match list.iter().find(|(i, _)| i == id) {
                    None => {
                        return Err(bad(
                            "members",
                            format!("this node's id '{id}' is not in the list"),
                        ))
                    }
                    Some((_, addr)) if *addr != peer_addr => {
                        return Err(bad(
                            "members",
                            format!(
                                "this node is listed at {addr}, but its peer address is {peer_addr}"
                            ),
                        ))
                    }
                    Some(_) => {}
                }
                Start::Members(list)
            }
            (None, Some(join)) => {
                check_addr("join", &join)?;
                if join == peer_addr {
                    return Err(bad("join", "a node cannot join through itself"));
                }
                Start::Join(join)
            }
            (None, None) => Start::Single,
        };
        let positive = |flag: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(bad(flag, "must be at least 1")),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let max_connections = positive("max-connections", a.max_connections, 10_000)?;
        let max_request_bytes = positive("max-request-bytes", a.max_request_bytes, 8 << 20)?;
        if !(1024..=1 << 30).contains(&max_request_bytes) {
            return Err(bad(
                "max-request-bytes",
                "must be between 1024 and 1073741824 (1 GiB)",
            ));
        }
        let max_pipeline = positive("max-pipeline", a.max_pipeline, 1024)?;
        let ms = |flag: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(bad(flag, "must be at least 1 ms")),
            Some(v) => Ok(Duration::from_millis(v)),
            None => Ok(Duration::from_millis(default)),
        };
        let heartbeat = ms("heartbeat-ms", a.heartbeat_ms, 50)?;
        let election_timeout_min = ms("election-timeout-min-ms", a.election_timeout_min_ms, 150)?;
        let election_timeout_max = ms("election-timeout-max-ms", a.election_timeout_max_ms, 300)?;
        if election_timeout_min <= heartbeat {
            return Err(bad(
                "election-timeout-min-ms",
                "must be longer than --heartbeat-ms",
            ));
        }
        if election_timeout_max <= election_timeout_min {
            return Err(bad(
                "election-timeout-max-ms",
                "must be longer than --election-timeout-min-ms",
            ));
        }
        let command_timeout = ms("command-timeout-ms", a.command_timeout_ms, 5000)?;
        if a.requirepass.as_deref() == Some("") {
            return Err(ConfigError(
                "--requirepass must not be empty: leave it out to create the cluster with a default user who needs no password".into(),
            ));
        }
        let lease_reads = match a.read_mode.as_deref() {
            None | Some("read-index") => false,
            Some("lease") => true,
            Some(other) => {
                return Err(bad(
                    "read-mode",
                    format!("'{other}' is neither read-index nor lease"),
                ))
            }
        };
        Ok(Settings {
            id: a.id,
            cluster,
            peer_addr,
            client_addr,
            admin_addr: a.admin_addr,
            data_dir: a.data_dir.unwrap_or_else(|| PathBuf::from("raft-kv-data")),
            start,
            requirepass: a.requirepass,
            log_level: a.log_level,
            max_connections,
            max_request_bytes,
            max_pipeline,
            heartbeat,
            election_timeout_min,
            election_timeout_max,
            command_timeout,
            snapshot_threshold: a.snapshot_threshold.unwrap_or(10_000),
            lease_reads,
            threads: a.threads.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(a: ServeArgs) -> Result<Settings, String> {
        a.resolve().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_resolve() {
        let s = resolve(ServeArgs::default()).unwrap();
        assert_eq!(s.client_addr, "127.0.0.1:6379");
        assert_eq!(s.peer_addr, "127.0.0.1:7001");
        assert_eq!(s.cluster, "raft-kv");
        assert_eq!(s.start, Start::Single);
        assert_eq!(s.max_pipeline, 1024);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let cases: Vec<(ServeArgs, &str)> = vec![
            (
                ServeArgs {
                    client_addr: Some("nowhere".into()),
                    ..Default::default()
                },
                "--client-addr",
            ),
            (
                ServeArgs {
                    peer_addr: Some("127.0.0.1:99999".into()),
                    ..Default::default()
                },
                "--peer-addr",
            ),
            (
                ServeArgs {
                    members: Some(vec!["a=127.0.0.1:1".into(), "b".into()]),
                    id: Some("a".into()),
                    ..Default::default()
                },
                "'b' is not id=peer-address",
            ),
            (
                ServeArgs {
                    members: Some(vec!["a=127.0.0.1:7001".into()]),
                    ..Default::default()
                },
                "needs --id",
            ),
            (
                ServeArgs {
                    members: Some(vec!["a=127.0.0.1:7001".into()]),
                    id: Some("b".into()),
                    ..Default::default()
                },
                "'b' is not in the list",
            ),
            (
                ServeArgs {
                    members: Some(vec!["a=127.0.0.1:7001".into()]),
                    join: Some("127.0.0.1:7002".into()),
                    ..Default::default()
                },
                "exclude each other",
            ),
            (
                ServeArgs {
                    max_request_bytes: Some(5 << 30),
                    ..Default::default()
                },
                "--max-request-bytes",
            ),
            (
                ServeArgs {
                    max_pipeline: Some(0),
                    ..Default::default()
                },
                "--max-pipeline",
            ),
            (
                ServeArgs {
                    election_timeout_min_ms: Some(40),
                    ..Default::default()
                },
                "--election-timeout-min-ms",
            ),
            (
                ServeArgs {
                    read_mode: Some("fast".into()),
                    ..Default::default()
                },
                "--read-mode",
            ),
            (
                ServeArgs {
                    requirepass: Some(String::new()),
                    ..Default::default()
                },
                "--requirepass must not be empty",
            ),
        ];
        for (args, says) in cases {
            let e = resolve(args).unwrap_err();
            assert!(e.contains(says), "{e} should mention {says}");
        }
    }

    #[test]
    fn the_file_fills_what_the_flags_leave_out_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.toml");
        std::fs::write(
            &path,
            "id = \"n1\"\nclient-addr = \"127.0.0.1:7379\"\nmembers = [\"n1=127.0.0.1:7001\"]\nmax-pipeline = 7\n",
        )
        .unwrap();
        let s = resolve(ServeArgs {
            config: Some(path.clone()),
            max_pipeline: Some(9),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.id.as_deref(), Some("n1"));
        assert_eq!(s.client_addr, "127.0.0.1:7379");
        assert_eq!(s.max_pipeline, 9, "the flag wins");
        assert_eq!(
            s.start,
            Start::Members(vec![("n1".into(), "127.0.0.1:7001".into())])
        );
        std::fs::write(&path, "client-adr = \"x\"\n").unwrap();
        let e = resolve(ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("client-adr"), "{e}");
        std::fs::write(&path, "max-pipeline = \"many\"\n").unwrap();
        let e = resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("max-pipeline"), "{e}");
    }
}
