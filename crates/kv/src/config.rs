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
    /// unique name per cluster. Kept in the data directory: a restart may
    /// leave it out [default: the stored name, or raft-kv]
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
    /// The most client connections at once; more are refused with an error.
    /// Lowered, with a warning, to what the descriptor limit leaves once 64
    /// descriptors are kept for the node itself (and 128 more for the admin
    /// endpoint) [default: 10000]
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Close a client connection idle for this many seconds (0: never)
    /// [default: 0]
    #[arg(long)]
    pub timeout: Option<u64>,
    /// How long a request may take to arrive once the server waits for it
    /// (from its first byte, or from when the server reads again), in
    /// milliseconds; a client slower than that is sent an error and closed
    /// [default: 30000]
    #[arg(long)]
    pub request_read_timeout_ms: Option<u64>,
    /// The largest request (one command with its arguments), in bytes; at
    /// most the largest log entry the peers carry (16777046 bytes: 16 MiB
    /// frames less an append's headers) [default: 8388608]
    #[arg(long)]
    pub max_request_bytes: Option<usize>,
    /// Bounds on a client's unsent replies, as Redis's
    /// client-output-buffer-limit: "HARD SOFT SECONDS" (bytes, bytes,
    /// seconds). A read whose reply would exceed HARD gets an error instead;
    /// past SOFT unsent bytes the server stops reading the client until it
    /// drains, and closes it if it stays past SOFT for SECONDS
    /// [default: "67108864 16777216 60"]
    #[arg(long)]
    pub client_output_buffer_limit: Option<String>,
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
    /// A follower answers writes with `-MOVED 0 <leader's client
    /// address>` instead of forwarding them to the leader (for clients
    /// that follow redirects, such as redis-cli -c). Reads are served
    /// where they are asked either way
    #[arg(long)]
    #[serde(default)]
    pub redirect: bool,
    /// Threads that run the node and its clients (0: one per core; 1:
    /// everything on the main thread, a current-thread runtime)
    /// [default: 0]
    #[arg(long)]
    pub threads: Option<usize>,
    /// This node's certificates directory: ca.crt (the cluster's CA),
    /// node.crt and node.key (this node's certificate, from `raft-kv cert
    /// create-node`). Traffic between nodes is then mutual TLS: only nodes
    /// with a certificate from that CA naming their own id are heard. Read
    /// again on SIGHUP [default: none; required unless --insecure]
    #[arg(long)]
    pub certs_dir: Option<PathBuf>,
    /// Run without TLS between nodes. Anyone who can reach --peer-addr can
    /// then read and write every key and add or remove members: only for a
    /// network nothing else can reach
    #[arg(long)]
    #[serde(default)]
    pub insecure: bool,
    /// Also serve RESP clients over TLS on this port, on the host of
    /// --client-addr (redis-cli --tls) [default: none]
    #[arg(long)]
    pub tls_port: Option<u16>,
    /// Serve RESP clients over TLS at this address instead (host:port; for
    /// a TLS port on another host than --client-addr, which can then stay
    /// on loopback) [default: none]
    #[arg(long, conflicts_with = "tls_port")]
    pub tls_addr: Option<String>,
    /// The certificate the TLS port (and the admin endpoint with
    /// --admin-tls) shows [default: node.crt of --certs-dir]
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// The key of --tls-cert-file [default: node.key of --certs-dir]
    #[arg(long)]
    pub tls_key_file: Option<PathBuf>,
    /// The CA certificate(s) TLS clients' certificates must chain to
    /// [default: ca.crt of --certs-dir]
    #[arg(long)]
    pub tls_ca_cert_file: Option<PathBuf>,
    /// Whether TLS clients must show a certificate: yes, no or optional
    /// [default: yes]
    #[arg(long)]
    pub tls_auth_clients: Option<String>,
    /// Serve the admin endpoint over HTTPS, with the TLS port's certificate
    /// and client-certificate rule. Needed for an --admin-addr that is not
    /// a loopback address, unless --insecure
    #[arg(long)]
    #[serde(default)]
    pub admin_tls: bool,
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
    /// The cluster's name, if given (else the one kept in the data
    /// directory, or [`DEFAULT_CLUSTER`] for a new node).
    pub cluster: Option<String>,
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
    /// Whether `--max-connections` was given (else it is the default).
    pub max_connections_given: bool,
    /// How long a client connection may be idle (`--timeout`; `None`:
    /// forever).
    pub idle_timeout: Option<Duration>,
    /// How long a request may take to arrive once its first byte has.
    pub request_read_timeout: Duration,
    /// The largest request in bytes.
    pub max_request_bytes: usize,
    /// Bounds on a client's unsent replies.
    pub output_limit: OutputLimit,
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
    /// A follower redirects writes to the leader (`-MOVED`) instead of
    /// forwarding them.
    pub redirect: bool,
    /// Runtime threads (0: one per core; 1: a current-thread runtime).
    pub threads: usize,
    /// The certificates directory for mutual TLS between nodes; `None`
    /// only with `insecure`.
    pub certs_dir: Option<PathBuf>,
    /// No TLS between nodes (and a plain admin endpoint is allowed on any
    /// address).
    pub insecure: bool,
    /// The RESP TLS address (host:port) and its certificate.
    pub client_tls: Option<(String, crate::tls::ServerTlsFiles)>,
    /// HTTPS for the admin endpoint.
    pub admin_tls: Option<crate::tls::ServerTlsFiles>,
}

/// A setting that is wrong; the text names it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Bounds on a client's unsent replies (`--client-output-buffer-limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimit {
    /// The most unsent reply bytes a connection holds: a read whose reply
    /// would be larger is refused with an error.
    pub hard: usize,
    /// Past this many unsent bytes, the server stops reading the client
    /// until they are sent (back-pressure).
    pub soft: usize,
    /// A client whose unsent bytes stay past `soft` this long is closed.
    pub soft_time: Duration,
}

impl Default for OutputLimit {
    fn default() -> OutputLimit {
        OutputLimit {
            hard: 64 << 20,
            soft: 16 << 20,
            soft_time: Duration::from_secs(60),
        }
    }
}

impl OutputLimit {
    /// Parses "HARD SOFT SECONDS".
    pub fn parse(text: &str) -> Result<OutputLimit, String> {
        let numbers: Vec<&str> = text.split_whitespace().collect();
        let [hard, soft, seconds] = numbers[..] else {
            return Err(format!(
                "{text:?} is not \"HARD SOFT SECONDS\" (bytes, bytes, seconds)"
            ));
        };
        let number = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("{s:?} is not a whole number"))
        };
        let (hard, soft, seconds) = (number(hard)?, number(soft)?, number(seconds)?);
        if hard < 1024 {
            return Err("HARD must be at least 1024 bytes".into());
        }
        if soft == 0 || soft > hard {
            return Err("SOFT must be at least 1 byte and at most HARD".into());
        }
        if seconds == 0 {
            return Err("SECONDS must be at least 1".into());
        }
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(OutputLimit {
            hard: size(hard),
            soft: size(soft),
            soft_time: Duration::from_secs(seconds),
        })
    }
}

impl std::fmt::Display for OutputLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.hard,
            self.soft,
            self.soft_time.as_secs()
        )
    }
}

/// The cluster name of a new node started without `--cluster`.
pub const DEFAULT_CLUSTER: &str = "raft-kv";

fn bad(flag: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("invalid --{flag}: {why}"))
}

/// Refuses a `--max-request-bytes` whose command could make a log entry
/// larger than the peers can carry: a write's entry is never larger than its
/// request (RESP spends at least 6 bytes around each argument, the entry 4),
/// so requests up to the transport's largest entry always replicate.
fn check_entry_size(max_request_bytes: usize) -> Result<(), ConfigError> {
    use raft_node::transport::tcp::{DEFAULT_MAX_ENTRY_BYTES, DEFAULT_MAX_FRAME_SIZE};
    if max_request_bytes > DEFAULT_MAX_ENTRY_BYTES {
        return Err(ConfigError(format!(
            "--max-request-bytes {max_request_bytes} is larger than the largest entry the peers can carry ({} MiB frames less the append's overhead: {DEFAULT_MAX_ENTRY_BYTES} bytes)",
            DEFAULT_MAX_FRAME_SIZE >> 20
        )));
    }
    Ok(())
}

/// Whether log lines get ANSI colours: only on a terminal, and never with
/// `NO_COLOR` set to anything but the empty string (no-color.org).
pub fn log_colors(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Whether `addr` (`host:port`) is a loopback address (127.0.0.0/8, ::1,
/// localhost).
pub fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What is wrong with `addr` as `host:port`, if anything.
fn addr_problem(addr: &str) -> Option<String> {
    if addr.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "{addr:?} contains whitespace or a control character"
        ));
    }
    if addr.contains(['=', ',']) {
        return Some(format!("'{addr}' contains '=' or ','"));
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Some(format!("'{addr}' is not host:port"));
    };
    if host.is_empty() {
        return Some(format!("'{addr}' has no host"));
    }
    if port.parse::<u16>().is_err() {
        return Some(format!("'{addr}': '{port}' is not a port number"));
    }
    None
}

fn check_addr(flag: &str, addr: &str) -> Result<(), ConfigError> {
    match addr_problem(addr) {
        Some(why) => Err(bad(flag, why)),
        None => Ok(()),
    }
}

/// What makes `id` unusable as a node id, if anything. Ids travel in
/// `--members` lists (`id=address,...`), in logs and in certificates.
pub fn id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("is empty")
    } else if id.chars().any(char::is_whitespace) {
        Some("contains whitespace")
    } else if id.chars().any(char::is_control) {
        Some("contains a control character")
    } else if id.contains(['=', ',']) {
        Some("contains '=' or ','")
    } else {
        None
    }
}

/// The rule [`id_problem`] checks, for error messages.
const ID_RULE: &str = "an id is not empty and has no whitespace, control characters, '=' or ','";

/// Parses `--members` entries (`id=peer-address`): every id valid and
/// listed once, every address valid and listed once. Nothing is trimmed:
/// an entry with a space is refused, with the entry in the message.
pub fn parse_members(entries: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    let mut list: Vec<(String, String)> = Vec::new();
    for m in entries {
        // Entries split at commas: a space after a comma starts the next one.
        let spaced = if m.trim() != m {
            "; separate the entries with commas alone, no spaces"
        } else {
            ""
        };
        let Some((id, addr)) = m.split_once('=') else {
            return Err(bad(
                "members",
                format!("the entry {m:?} is not id=peer-address{spaced}"),
            ));
        };
        if let Some(why) = id_problem(id) {
            return Err(bad(
                "members",
                format!("the entry {m:?}: its id {id:?} {why} ({ID_RULE}){spaced}"),
            ));
        }
        if let Some(why) = addr_problem(addr) {
            return Err(bad(
                "members",
                format!("the entry {m:?}: its address {why}{spaced}"),
            ));
        }
        if list.iter().any(|(i, _)| i == id) {
            return Err(bad("members", format!("the id '{id}' is listed twice")));
        }
        if let Some((other, _)) = list.iter().find(|(_, a)| a == addr) {
            return Err(bad(
                "members",
                format!(
                    "'{other}' and '{id}' have the same address {addr}: every member listens at its own address"
                ),
            ));
        }
        list.push((id.to_string(), addr.to_string()));
    }
    if list.is_empty() {
        return Err(bad("members", "the list is empty"));
    }
    Ok(list)
}

/// The heartbeat interval and the election timeouts from their flags
/// (`None`: not given), checked against each other. An error blames the
/// flag that was given, and shows a default as one.
pub fn timing(
    heartbeat_ms: Option<u64>,
    election_timeout_min_ms: Option<u64>,
    election_timeout_max_ms: Option<u64>,
) -> Result<(Duration, Duration, Duration), ConfigError> {
    /// A flag's value as given, or its default.
    struct Value {
        flag: &'static str,
        ms: u64,
        given: bool,
    }
    impl std::fmt::Display for Value {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            if self.given {
                write!(f, "--{} {}", self.flag, self.ms)
            } else {
                write!(f, "--{} ({}, the default)", self.flag, self.ms)
            }
        }
    }
    let value = |flag: &'static str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(bad(flag, "must be at least 1 ms")),
        Some(ms) => Ok(Value {
            flag,
            ms,
            given: true,
        }),
        None => Ok(Value {
            flag,
            ms: default,
            given: false,
        }),
    };
    let heartbeat = value("heartbeat-ms", heartbeat_ms, 50)?;
    let min = value("election-timeout-min-ms", election_timeout_min_ms, 150)?;
    let max = value("election-timeout-max-ms", election_timeout_max_ms, 300)?;
    // Each pair in order: the shorter must be shorter. The one given is
    // at fault (the later one if both were).
    for (shorter, longer) in [(&heartbeat, &min), (&min, &max)] {
        if shorter.ms < longer.ms {
            continue;
        }
        let why = if longer.given {
            format!("{longer} must be longer than {shorter}")
        } else {
            format!("{shorter} must be shorter than {longer}")
        };
        return Err(ConfigError(why));
    }
    Ok((
        Duration::from_millis(heartbeat.ms),
        Duration::from_millis(min.ms),
        Duration::from_millis(max.ms),
    ))
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
            timeout: self.timeout.or(other.timeout),
            request_read_timeout_ms: self
                .request_read_timeout_ms
                .or(other.request_read_timeout_ms),
            max_request_bytes: self.max_request_bytes.or(other.max_request_bytes),
            client_output_buffer_limit: self
                .client_output_buffer_limit
                .or(other.client_output_buffer_limit),
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
            redirect: self.redirect || other.redirect,
            threads: self.threads.or(other.threads),
            certs_dir: self.certs_dir.or(other.certs_dir),
            insecure: self.insecure || other.insecure,
            tls_port: self.tls_port.or(other.tls_port),
            tls_addr: self.tls_addr.or(other.tls_addr),
            tls_cert_file: self.tls_cert_file.or(other.tls_cert_file),
            tls_key_file: self.tls_key_file.or(other.tls_key_file),
            tls_ca_cert_file: self.tls_ca_cert_file.or(other.tls_ca_cert_file),
            tls_auth_clients: self.tls_auth_clients.or(other.tls_auth_clients),
            admin_tls: self.admin_tls || other.admin_tls,
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
        // A bare port is a port on loopback.
        let admin_addr = a.admin_addr.map(|admin| {
            if admin.parse::<u16>().is_ok() {
                format!("127.0.0.1:{admin}")
            } else {
                admin
            }
        });
        if let Some(admin) = &admin_addr {
            check_addr("admin-addr", admin)?;
        }
        if let Some(id) = &a.id {
            if let Some(why) = id_problem(id) {
                return Err(bad("id", format!("{id:?} {why} ({ID_RULE})")));
            }
        }
        if let Some(cluster) = &a.cluster {
            if cluster.is_empty() {
                return Err(bad("cluster", "must not be empty"));
            }
        }
        let start = match (a.members, a.join) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "--members and --join exclude each other: a node either founds a cluster or joins one".into(),
                ))
            }
            (Some(members), None) => {
                let list = parse_members(&members)?;
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
        let idle_timeout = match a.timeout {
            None | Some(0) => None,
            Some(seconds) => Some(Duration::from_secs(seconds)),
        };
        let max_request_bytes = positive("max-request-bytes", a.max_request_bytes, 8 << 20)?;
        if max_request_bytes < 1024 {
            return Err(bad("max-request-bytes", "must be at least 1024"));
        }
        check_entry_size(max_request_bytes)?;
        let output_limit = match a.client_output_buffer_limit.as_deref() {
            None => OutputLimit::default(),
            Some(text) => {
                OutputLimit::parse(text).map_err(|why| bad("client-output-buffer-limit", why))?
            }
        };
        let max_pipeline = positive("max-pipeline", a.max_pipeline, 1024)?;
        let ms = |flag: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(bad(flag, "must be at least 1 ms")),
            Some(v) => Ok(Duration::from_millis(v)),
            None => Ok(Duration::from_millis(default)),
        };
        let (heartbeat, election_timeout_min, election_timeout_max) = timing(
            a.heartbeat_ms,
            a.election_timeout_min_ms,
            a.election_timeout_max_ms,
        )?;
        let command_timeout = ms("command-timeout-ms", a.command_timeout_ms, 5000)?;
        let request_read_timeout =
            ms("request-read-timeout-ms", a.request_read_timeout_ms, 30_000)?;
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
        let certs_dir = match (a.certs_dir, a.insecure) {
            (Some(_), true) => {
                return Err(ConfigError(
                    "--certs-dir and --insecure exclude each other: TLS between nodes is either on or off".into(),
                ))
            }
            (None, false) => {
                return Err(ConfigError(
                    "no TLS between nodes: give --certs-dir DIR (ca.crt, node.crt and node.key; make them with `raft-kv cert create-ca` and `raft-kv cert create-node`), or --insecure to run without TLS (then anyone who can reach --peer-addr can read and write every key and change the members)".into(),
                ))
            }
            (dir, _) => dir,
        };
        let server_files = |what: &str| -> Result<crate::tls::ServerTlsFiles, ConfigError> {
            let from_dir = |name: &str| certs_dir.as_ref().map(|d| d.join(name));
            let cert_file = a
                .tls_cert_file
                .clone()
                .or_else(|| from_dir(crate::tls::NODE_CERT));
            let key_file = a
                .tls_key_file
                .clone()
                .or_else(|| from_dir(crate::tls::NODE_KEY));
            let (Some(cert_file), Some(key_file)) = (cert_file, key_file) else {
                return Err(ConfigError(format!(
                    "{what} needs a certificate: give --tls-cert-file and --tls-key-file (or --certs-dir)"
                )));
            };
            let auth_clients = match a.tls_auth_clients.as_deref() {
                None => crate::tls::AuthClients::Yes,
                Some(v) => crate::tls::AuthClients::parse(v).ok_or_else(|| {
                    bad(
                        "tls-auth-clients",
                        format!("'{v}' is none of yes, no, optional"),
                    )
                })?,
            };
            Ok(crate::tls::ServerTlsFiles {
                cert_file,
                key_file,
                ca_file: a
                    .tls_ca_cert_file
                    .clone()
                    .or_else(|| from_dir(crate::tls::CA_CERT)),
                auth_clients,
            })
        };
        let tls_addr = match (a.tls_port, &a.tls_addr) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "--tls-port and --tls-addr exclude each other: give the port (on the host of --client-addr) or the whole address".into(),
                ))
            }
            (Some(0), None) => return Err(bad("tls-port", "must be a port number, not 0")),
            (Some(port), None) => {
                let host = client_addr.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
                Some(("tls-port", format!("{host}:{port}")))
            }
            (None, Some(addr)) => {
                check_addr("tls-addr", addr)?;
                Some(("tls-addr", addr.clone()))
            }
            (None, None) => None,
        };
        let client_tls = match tls_addr {
            None => None,
            Some((flag, addr)) => {
                if addr == client_addr {
                    return Err(bad(flag, format!("{addr} is --client-addr too")));
                }
                let files = server_files(&format!("--{flag}"))?;
                Some((addr, files))
            }
        };
        let admin_tls = if a.admin_tls {
            if admin_addr.is_none() {
                return Err(bad("admin-tls", "there is no --admin-addr"));
            }
            Some(server_files("--admin-tls")?)
        } else {
            None
        };
        if let Some(admin) = &admin_addr {
            if admin_tls.is_none() && !a.insecure && !is_loopback(admin) {
                return Err(bad(
                    "admin-addr",
                    format!(
                        "{admin} is not a loopback address: the admin endpoint shows the cluster's state, so there it needs --admin-tls (or --insecure)"
                    ),
                ));
            }
        }
        Ok(Settings {
            certs_dir,
            insecure: a.insecure,
            client_tls,
            admin_tls,
            id: a.id,
            cluster: a.cluster,
            peer_addr,
            client_addr,
            admin_addr,
            data_dir: a.data_dir.unwrap_or_else(|| PathBuf::from("raft-kv-data")),
            start,
            requirepass: a.requirepass,
            log_level: a.log_level,
            max_connections,
            max_connections_given: a.max_connections.is_some(),
            idle_timeout,
            request_read_timeout,
            max_request_bytes,
            output_limit,
            max_pipeline,
            heartbeat,
            election_timeout_min,
            election_timeout_max,
            command_timeout,
            snapshot_threshold: a.snapshot_threshold.unwrap_or(10_000),
            lease_reads,
            redirect: a.redirect,
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

    /// The defaults, without TLS between nodes (which has no default).
    fn insecure() -> ServeArgs {
        ServeArgs {
            insecure: true,
            ..Default::default()
        }
    }

    #[test]
    fn tls_between_nodes_or_insecure_must_be_chosen() {
        let e = resolve(ServeArgs::default()).unwrap_err();
        assert!(
            e.contains("give --certs-dir DIR") && e.contains("--insecure"),
            "{e}"
        );
        let e = resolve(ServeArgs {
            certs_dir: Some("certs".into()),
            ..insecure()
        })
        .unwrap_err();
        assert!(e.contains("exclude each other"), "{e}");
        let s = resolve(ServeArgs {
            certs_dir: Some("certs".into()),
            tls_port: Some(6380),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.certs_dir, Some(PathBuf::from("certs")));
        let (addr, files) = s.client_tls.unwrap();
        assert_eq!(addr, "127.0.0.1:6380");
        assert_eq!(files.cert_file, PathBuf::from("certs/node.crt"));
        assert_eq!(files.ca_file, Some(PathBuf::from("certs/ca.crt")));
        assert_eq!(files.auth_clients, crate::tls::AuthClients::Yes);
    }

    #[test]
    fn the_admin_endpoint_is_loopback_unless_it_has_tls() {
        let s = resolve(ServeArgs {
            admin_addr: Some("8001".into()),
            certs_dir: Some("certs".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.admin_addr.as_deref(), Some("127.0.0.1:8001"));
        let open = ServeArgs {
            admin_addr: Some("10.0.0.1:8001".into()),
            certs_dir: Some("certs".into()),
            ..Default::default()
        };
        let e = resolve(open.clone()).unwrap_err();
        assert!(
            e.contains("--admin-addr") && e.contains("--admin-tls"),
            "{e}"
        );
        let s = resolve(ServeArgs {
            admin_tls: true,
            ..open
        })
        .unwrap();
        assert_eq!(
            s.admin_tls.unwrap().key_file,
            PathBuf::from("certs/node.key")
        );
        let e = resolve(ServeArgs {
            tls_port: Some(6380),
            ..insecure()
        })
        .unwrap_err();
        assert!(e.contains("--tls-cert-file"), "{e}");
        let e = resolve(ServeArgs {
            tls_port: Some(6379),
            certs_dir: Some("c".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("--tls-port"), "{e}");
        let s = resolve(ServeArgs {
            tls_addr: Some("10.0.0.1:6380".into()),
            certs_dir: Some("c".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.client_tls.unwrap().0, "10.0.0.1:6380");
        let e = resolve(ServeArgs {
            tls_port: Some(6380),
            certs_dir: Some("c".into()),
            tls_auth_clients: Some("maybe".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("--tls-auth-clients"), "{e}");
        assert!(is_loopback("127.0.0.2:1") && is_loopback("[::1]:1") && is_loopback("localhost:1"));
        assert!(!is_loopback("10.0.0.1:1") && !is_loopback("0.0.0.0:1") && !is_loopback("db:1"));
    }

    #[test]
    fn a_request_larger_than_the_peers_carry_is_refused_naming_both_sizes() {
        let largest = raft_node::transport::tcp::DEFAULT_MAX_ENTRY_BYTES;
        let e = resolve(ServeArgs {
            max_request_bytes: Some(33554432),
            ..insecure()
        })
        .unwrap_err();
        assert_eq!(
            e,
            format!("--max-request-bytes 33554432 is larger than the largest entry the peers can carry (16 MiB frames less the append's overhead: {largest} bytes)")
        );
        let s = resolve(ServeArgs {
            max_request_bytes: Some(largest),
            ..insecure()
        })
        .unwrap();
        assert_eq!(s.max_request_bytes, largest);
        assert!(resolve(ServeArgs {
            max_request_bytes: Some(largest + 1),
            ..insecure()
        })
        .is_err());
    }

    #[test]
    fn output_limits_parse_and_are_checked() {
        assert_eq!(
            resolve(insecure()).unwrap().output_limit,
            OutputLimit::default()
        );
        let s = resolve(ServeArgs {
            client_output_buffer_limit: Some("4096 2048 3".into()),
            ..insecure()
        })
        .unwrap();
        assert_eq!(
            s.output_limit,
            OutputLimit {
                hard: 4096,
                soft: 2048,
                soft_time: Duration::from_secs(3)
            }
        );
        assert_eq!(s.output_limit.to_string(), "4096 2048 3");
        for wrong in [
            "",
            "1 2",
            "4096 8192 1",
            "4096 0 1",
            "4096 1 0",
            "100 10 1",
            "x 1 1",
        ] {
            let e = resolve(ServeArgs {
                client_output_buffer_limit: Some(wrong.into()),
                ..insecure()
            })
            .unwrap_err();
            assert!(
                e.starts_with("invalid --client-output-buffer-limit: "),
                "{e}"
            );
        }
    }

    #[test]
    fn defaults_resolve() {
        let s = resolve(insecure()).unwrap();
        assert_eq!(s.client_addr, "127.0.0.1:6379");
        assert_eq!(s.peer_addr, "127.0.0.1:7001");
        assert_eq!(
            s.cluster, None,
            "the stored name, or raft-kv: known once the data directory is read"
        );
        assert_eq!(s.start, Start::Single);
        assert_eq!(s.max_pipeline, 1024);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let cases: Vec<(ServeArgs, &str)> = vec![
            (
                ServeArgs {
                    client_addr: Some("nowhere".into()),
                    ..insecure()
                },
                "--client-addr",
            ),
            (
                ServeArgs {
                    peer_addr: Some("127.0.0.1:99999".into()),
                    ..insecure()
                },
                "--peer-addr",
            ),
            (
                ServeArgs {
                    members: Some(vec!["a=127.0.0.1:1".into(), "b".into()]),
                    id: Some("a".into()),
                    ..insecure()
                },
                "the entry \"b\" is not id=peer-address",
            ),
            (
                ServeArgs {
                    members: Some(vec!["a=127.0.0.1:7001".into()]),
                    ..insecure()
                },
                "needs --id",
            ),
            (
                ServeArgs {
                    members: Some(vec!["a=127.0.0.1:7001".into()]),
                    id: Some("b".into()),
                    ..insecure()
                },
                "'b' is not in the list",
            ),
            (
                ServeArgs {
                    members: Some(vec!["a=127.0.0.1:7001".into()]),
                    join: Some("127.0.0.1:7002".into()),
                    ..insecure()
                },
                "exclude each other",
            ),
            (
                ServeArgs {
                    max_request_bytes: Some(5 << 30),
                    ..insecure()
                },
                "--max-request-bytes",
            ),
            (
                ServeArgs {
                    max_pipeline: Some(0),
                    ..insecure()
                },
                "--max-pipeline",
            ),
            (
                ServeArgs {
                    election_timeout_min_ms: Some(40),
                    ..insecure()
                },
                "--election-timeout-min-ms",
            ),
            (
                ServeArgs {
                    read_mode: Some("fast".into()),
                    ..insecure()
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

    fn members(list: &str) -> Result<Vec<(String, String)>, String> {
        let entries: Vec<String> = list.split(',').map(str::to_string).collect();
        parse_members(&entries).map_err(|e| e.to_string())
    }

    #[test]
    fn member_entries_are_checked_as_given_never_trimmed() {
        assert_eq!(
            members("n1=a:1,n2=b:2").unwrap(),
            vec![("n1".into(), "a:1".into()), ("n2".into(), "b:2".into())]
        );
        // A space after a comma: the id would be " n2".
        let e = members("n1=a:1, n2=b:2").unwrap_err();
        assert!(
            e.contains("\" n2=b:2\"") && e.contains("whitespace") && e.contains("commas alone"),
            "{e}"
        );
        let e = members("n1=a:1,n2= b:2").unwrap_err();
        assert!(e.contains("\"n2= b:2\"") && e.contains("whitespace"), "{e}");
        let e = members("n1=a:1,n\u{7}2=b:2").unwrap_err();
        assert!(e.contains("control character"), "{e}");
        let e = members("n1=a:1,=b:2").unwrap_err();
        assert!(e.contains("its id \"\" is empty"), "{e}");
        let e = members("n1=a:1,n2=x=b:2").unwrap_err();
        assert!(e.contains("\"n2=x=b:2\""), "{e}");
        let e = members("n1=a:1,n1=b:2").unwrap_err();
        assert!(e.contains("'n1' is listed twice"), "{e}");
        let e = members("n1=a:1,n2=a:1").unwrap_err();
        assert!(e.contains("'n1' and 'n2' have the same address a:1"), "{e}");
        let e = members("n1=a:1,").unwrap_err();
        assert!(e.contains("the entry \"\" is not id=peer-address"), "{e}");
        for bad_id in ["n 1", "n=1", "n,1", "", "n\t1"] {
            let e = resolve(ServeArgs {
                id: Some(bad_id.into()),
                ..insecure()
            })
            .unwrap_err();
            assert!(e.starts_with("invalid --id"), "{bad_id:?}: {e}");
        }
    }

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(log_colors(true, None));
        assert!(log_colors(true, Some(OsStr::new(""))));
        assert!(!log_colors(true, Some(OsStr::new("1"))));
        assert!(
            !log_colors(false, None),
            "a file or a pipe gets no colour codes"
        );
    }

    fn timing_error(h: Option<u64>, min: Option<u64>, max: Option<u64>) -> String {
        timing(h, min, max).unwrap_err().to_string()
    }

    #[test]
    fn timing_errors_blame_the_flag_given_and_show_defaults_as_such() {
        assert_eq!(
            timing_error(Some(200), None, None),
            "--heartbeat-ms 200 must be shorter than --election-timeout-min-ms (150, the default)"
        );
        assert_eq!(
            timing_error(None, Some(40), None),
            "--election-timeout-min-ms 40 must be longer than --heartbeat-ms (50, the default)"
        );
        assert_eq!(
            timing_error(Some(100), Some(100), None),
            "--election-timeout-min-ms 100 must be longer than --heartbeat-ms 100"
        );
        assert_eq!(
            timing_error(None, Some(400), None),
            "--election-timeout-min-ms 400 must be shorter than --election-timeout-max-ms (300, the default)"
        );
        assert_eq!(
            timing_error(None, None, Some(120)),
            "--election-timeout-max-ms 120 must be longer than --election-timeout-min-ms (150, the default)"
        );
        assert_eq!(
            timing_error(Some(10), Some(100), Some(90)),
            "--election-timeout-max-ms 90 must be longer than --election-timeout-min-ms 100"
        );
        assert_eq!(
            timing_error(Some(0), None, None),
            "invalid --heartbeat-ms: must be at least 1 ms"
        );
        let (h, min, max) = timing(Some(20), Some(100), Some(200)).unwrap();
        assert_eq!(
            (h.as_millis(), min.as_millis(), max.as_millis()),
            (20, 100, 200)
        );
        let (h, min, max) = timing(None, None, None).unwrap();
        assert_eq!(
            (h.as_millis(), min.as_millis(), max.as_millis()),
            (50, 150, 300)
        );
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
            ..insecure()
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
