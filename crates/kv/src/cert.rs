//! `raft-kv cert`: the certificates of a cluster, without pain.
//!
//! ```text
//! raft-kv cert create-ca     --certs-dir certs --ca-key safe/ca.key
//! raft-kv cert create-node   --certs-dir certs --ca-key safe/ca.key --id n1 --cluster shop-prod --host 10.0.0.1
//! raft-kv cert create-client --certs-dir certs --ca-key safe/ca.key --name alice
//! raft-kv cert list          --certs-dir certs
//! ```
//!
//! A node's certificates directory holds `ca.crt` (the CA certificate it
//! trusts, or a bundle of several during a rotation), `node.crt` and
//! `node.key`: `raft-kv serve --certs-dir` reads exactly these. Keys are
//! written readable by their owner only (mode 0600) and never overwritten
//! unless `--overwrite` is given. A node certificate names its node by a
//! digest (see `raft_node::tls::node_identity`): the file carries the node
//! id and cluster in clear text above the certificate, for people and for
//! `cert list`, which checks them against the digest.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use raft_node::tls::{
    self as node_tls, CertificateAuthority, CertificateInfo, CertificateKind, IssuedCertificate,
    Validity,
};

use crate::tls::{CA_CERT, CA_KEY, NODE_CERT, NODE_KEY};

/// The flags of `raft-kv cert`.
#[derive(clap::Args, Debug)]
pub struct CertArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CertCommand,
}

/// The `raft-kv cert` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum CertCommand {
    /// Make a certificate authority for a cluster: ca.crt in --certs-dir
    /// (give it to every node and client), its key in --ca-key (keep it off
    /// the nodes)
    CreateCa {
        /// Where ca.crt goes
        #[arg(long)]
        certs_dir: PathBuf,
        /// Where the CA's key goes [default: ca.key in --certs-dir]
        #[arg(long)]
        ca_key: Option<PathBuf>,
        /// How many days the CA is valid
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Replace existing files
        #[arg(long)]
        overwrite: bool,
    },
    /// Make a node's certificate and key (node.crt, node.key in
    /// --certs-dir), signed by the CA, naming the node's id and cluster and
    /// valid for the hosts peers dial it at
    CreateNode {
        /// Where node.crt and node.key go (and ca.crt, if not there yet)
        #[arg(long)]
        certs_dir: PathBuf,
        /// The node's id (`raft-kv serve --id`)
        #[arg(long)]
        id: String,
        /// The cluster's name (`raft-kv serve --cluster`)
        #[arg(long, default_value = "raft-kv")]
        cluster: String,
        /// A host name or IP address peers dial the node at (the host of its
        /// --peer-addr); repeat for several
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// The CA, the validity and whether to overwrite.
        #[command(flatten)]
        signing: Signing,
    },
    /// Make a client's certificate and key (client.NAME.crt and
    /// client.NAME.key in --certs-dir), for `--tls-auth-clients yes`
    CreateClient {
        /// Where the files go
        #[arg(long)]
        certs_dir: PathBuf,
        /// The client's name (the certificate's common name)
        #[arg(long)]
        name: String,
        /// The CA, the validity and whether to overwrite.
        #[command(flatten)]
        signing: Signing,
    },
    /// Show every certificate in --certs-dir: what it is for, whom it
    /// names, its hosts, whether the directory's CA signed it, and when it
    /// expires
    List {
        /// The directory to look in
        #[arg(long)]
        certs_dir: PathBuf,
    },
}

/// How a certificate is signed: by which CA, for how long, and whether it
/// may replace existing files.
#[derive(clap::Args, Debug, Clone)]
pub struct Signing {
    /// The CA certificate [default: ca.crt in --certs-dir]
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// The CA's key [default: ca.key in --certs-dir]
    #[arg(long)]
    pub ca_key: Option<PathBuf>,
    /// How many days the certificate is valid
    #[arg(long, default_value_t = 730)]
    pub days: u32,
    /// Replace existing files
    #[arg(long)]
    pub overwrite: bool,
}

/// Why a `cert` command failed; the text says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CertError(pub String);

impl From<node_tls::TlsError> for CertError {
    fn from(e: node_tls::TlsError) -> CertError {
        CertError(e.to_string())
    }
}

/// Runs `raft-kv cert ...`.
pub fn run(args: CertArgs) -> ExitCode {
    match execute(args.command) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("raft-kv cert: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand; what it prints.
pub fn execute(command: CertCommand) -> Result<String, CertError> {
    match command {
        CertCommand::CreateCa {
            certs_dir,
            ca_key,
            days,
            overwrite,
        } => {
            let ca = CertificateAuthority::generate(Validity::days(days))?;
            let key = ca_key.unwrap_or_else(|| certs_dir.join(CA_KEY));
            write_authority(&ca, &certs_dir, &key, overwrite)?;
            Ok(format!(
                "wrote {} (give it to every node and client) and {} (keep it secret, off the nodes); valid until {}\n",
                certs_dir.join(CA_CERT).display(),
                key.display(),
                date(ca.info().not_after)
            ))
        }
        CertCommand::CreateNode {
            certs_dir,
            id,
            cluster,
            hosts,
            signing,
        } => {
            let ca = signing.authority(&certs_dir)?;
            let issued = ca.issue_node(&cluster, &id, &hosts, Validity::days(signing.days))?;
            write_node(&ca, &issued, &cluster, &id, &certs_dir, signing.overwrite)?;
            let mut report = format!(
                "wrote {} and {}: node {id:?} of cluster {cluster:?}, hosts {}, valid until {}\n",
                certs_dir.join(NODE_CERT).display(),
                certs_dir.join(NODE_KEY).display(),
                hosts.join(", "),
                date(issued.info()?.not_after)
            );
            // The directory is what `serve --certs-dir` reads: say so if it
            // would refuse it (a ca.crt kept from another CA).
            if let Err(e) = crate::tls::peer_tls(&certs_dir) {
                report.push_str(&format!(
                    "warning: `raft-kv serve --certs-dir {}` would refuse this directory: {e} (the {CA_CERT} there is kept; add this CA's certificate to it, or replace it)\n",
                    certs_dir.display()
                ));
            }
            Ok(report)
        }
        CertCommand::CreateClient {
            certs_dir,
            name,
            signing,
        } => {
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(CertError(format!(
                    "--name {name:?}: a client name is non-empty, without '/' and not starting with '.'"
                )));
            }
            let ca = signing.authority(&certs_dir)?;
            let issued = ca.issue_client(&name, Validity::days(signing.days))?;
            let (cert, key) = client_files(&certs_dir, &name);
            std::fs::create_dir_all(&certs_dir).map_err(|e| io_error(&certs_dir, e))?;
            write_file(
                &cert,
                issued.certificate_pem.as_bytes(),
                false,
                signing.overwrite,
            )?;
            write_file(&key, issued.key_pem.as_bytes(), true, signing.overwrite)?;
            Ok(format!(
                "wrote {} and {}: client {name:?}, valid until {}\n",
                cert.display(),
                key.display(),
                date(issued.info()?.not_after)
            ))
        }
        CertCommand::List { certs_dir } => list(&certs_dir),
    }
}

impl Signing {
    /// The CA these flags name (defaults in `certs_dir`).
    fn authority(&self, certs_dir: &Path) -> Result<CertificateAuthority, CertError> {
        load_authority(certs_dir, self.ca_cert.as_deref(), self.ca_key.as_deref())
    }
}

/// The files of client `name` in `dir`.
pub fn client_files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("client.{name}.crt")),
        dir.join(format!("client.{name}.key")),
    )
}

fn io_error(path: &Path, e: std::io::Error) -> CertError {
    CertError(format!("{}: {e}", path.display()))
}

/// Writes `contents` to `path`; a secret with mode 0600. An existing file
/// is an error unless `overwrite`.
pub fn write_file(
    path: &Path,
    contents: &[u8],
    secret: bool,
    overwrite: bool,
) -> Result<(), CertError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CertError(format!(
                "{} exists already: give --overwrite to replace it",
                path.display()
            ))
        } else {
            io_error(path, e)
        }
    })?;
    #[cfg(unix)]
    if secret {
        // A file that existed keeps its mode on open: make it private.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_error(path, e))?;
    }
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, e))
}

/// Writes a CA's certificate to `certs_dir/ca.crt` and its key to `key`.
pub fn write_authority(
    ca: &CertificateAuthority,
    certs_dir: &Path,
    key: &Path,
    overwrite: bool,
) -> Result<(), CertError> {
    std::fs::create_dir_all(certs_dir).map_err(|e| io_error(certs_dir, e))?;
    if let Some(parent) = key.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    write_file(
        &certs_dir.join(CA_CERT),
        ca.certificate_pem().as_bytes(),
        false,
        overwrite,
    )?;
    write_file(key, ca.key_pem().as_bytes(), true, overwrite)
}

/// Reads a CA from its certificate and key (defaults: `ca.crt` and
/// `ca.key` in `certs_dir`).
pub fn load_authority(
    certs_dir: &Path,
    ca_cert: Option<&Path>,
    ca_key: Option<&Path>,
) -> Result<CertificateAuthority, CertError> {
    let cert_path = ca_cert.map_or_else(|| certs_dir.join(CA_CERT), Path::to_path_buf);
    let key_path = ca_key.map_or_else(|| certs_dir.join(CA_KEY), Path::to_path_buf);
    let read = |path: &Path, what: &str| {
        std::fs::read_to_string(path).map_err(|e| {
            CertError(format!(
                "cannot read the CA {what} {}: {e} (make a CA with `raft-kv cert create-ca`, or give --ca-cert and --ca-key)",
                path.display()
            ))
        })
    };
    let cert = read(&cert_path, "certificate")?;
    let key = read(&key_path, "key")?;
    CertificateAuthority::from_pem(&cert, &key).map_err(|e| {
        CertError(format!(
            "{} / {}: {e}",
            cert_path.display(),
            key_path.display()
        ))
    })
}

/// The line above a node certificate that names its node in clear text.
fn node_header(cluster: &str, id: &str, info: &CertificateInfo) -> String {
    format!(
        "raft-kv node certificate: node {id:?} of cluster {cluster:?}; hosts {}; valid until {}\n",
        info.hosts.join(", "),
        date(info.not_after)
    )
}

/// Writes node `id`'s certificate and key into `certs_dir` (`node.crt`,
/// `node.key`), and the CA certificate as `ca.crt` unless one is there.
pub fn write_node(
    ca: &CertificateAuthority,
    issued: &IssuedCertificate,
    cluster: &str,
    id: &str,
    certs_dir: &Path,
    overwrite: bool,
) -> Result<(), CertError> {
    std::fs::create_dir_all(certs_dir).map_err(|e| io_error(certs_dir, e))?;
    let ca_path = certs_dir.join(CA_CERT);
    if !ca_path.exists() {
        write_file(&ca_path, ca.certificate_pem().as_bytes(), false, false)?;
    }
    let mut cert = node_header(cluster, id, &issued.info()?);
    cert.push_str(&issued.certificate_pem);
    write_file(
        &certs_dir.join(NODE_CERT),
        cert.as_bytes(),
        false,
        overwrite,
    )?;
    write_file(
        &certs_dir.join(NODE_KEY),
        issued.key_pem.as_bytes(),
        true,
        overwrite,
    )
}

/// Makes and writes a certificates directory for node `id` (a local
/// cluster, a test): `ca.crt`, `node.crt`, `node.key`.
pub fn make_node_dir(
    ca: &CertificateAuthority,
    cluster: &str,
    id: &str,
    hosts: &[String],
    days: u32,
    certs_dir: &Path,
) -> Result<(), CertError> {
    let issued = ca.issue_node(cluster, id, hosts, Validity::days(days))?;
    write_node(ca, &issued, cluster, id, certs_dir, true)
}

/// `YYYY-MM-DD` of `t` (UTC).
pub fn date(t: SystemTime) -> String {
    time::OffsetDateTime::from(t).date().to_string()
}

/// The node and cluster a certificate file's header names, if it has one.
fn header_names(text: &str) -> Option<(String, String)> {
    let line = text
        .lines()
        .find(|l| l.starts_with("raft-kv node certificate: node "))?;
    let rest = line.strip_prefix("raft-kv node certificate: node ")?;
    let (id, rest) = parse_quoted(rest)?;
    let rest = rest.strip_prefix(" of cluster ")?;
    let (cluster, _) = parse_quoted(rest)?;
    Some((id, cluster))
}

/// A Rust-debug-quoted string at the start of `s`, and what follows.
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in chars {
        match (escaped, c) {
            (true, c) => {
                out.push(c);
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, '"') => return Some((out, &s[i + 1..])),
            (false, c) => out.push(c),
        }
    }
    None
}

fn days_left(t: SystemTime) -> String {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => format!("in {} days", d.as_secs() / 86400),
        Err(_) => "EXPIRED".into(),
    }
}

/// The report of `cert list`.
pub fn list(certs_dir: &Path) -> Result<String, CertError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(certs_dir)
        .map_err(|e| io_error(certs_dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "crt" || e == "pem"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CertError(format!(
            "no certificates (*.crt) in {}",
            certs_dir.display()
        )));
    }
    let authorities = std::fs::read(certs_dir.join(CA_CERT))
        .ok()
        .and_then(|pem| node_tls::read_certificates(&pem, CA_CERT).ok());
    let mut rows = vec![[
        "FILE".to_string(),
        "KIND".into(),
        "NAMES".into(),
        "HOSTS".into(),
        "SIGNED BY ca.crt".into(),
        "EXPIRES".into(),
    ]];
    for path in &files {
        let file = path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
        let chain = match node_tls::read_certificates(text.as_bytes(), &file) {
            Ok(chain) => chain,
            Err(e) => {
                rows.push([
                    file,
                    "?".into(),
                    e.to_string(),
                    "".into(),
                    "".into(),
                    "".into(),
                ]);
                continue;
            }
        };
        for (i, der) in chain.iter().enumerate() {
            let info = CertificateInfo::from_der(der, &file)?;
            let (kind, names) = match info.kind {
                CertificateKind::Authority => (
                    "CA",
                    info.subject.clone(),
                ),
                CertificateKind::Node => match header_names(&text) {
                    Some((id, cluster)) if info.is_for_node(&cluster, &id) => {
                        ("node", format!("node {id:?} of cluster {cluster:?}"))
                    }
                    Some((id, cluster)) => (
                        "node",
                        format!("MISMATCH: the header says node {id:?} of cluster {cluster:?}, the certificate names another"),
                    ),
                    None => ("node", "a node (its id is not written in the file)".into()),
                },
                CertificateKind::Client => (
                    "client",
                    info.common_name.clone().unwrap_or_else(|| info.subject.clone()),
                ),
                CertificateKind::Other => ("other", info.subject.clone()),
            };
            let signed = match &authorities {
                None => "no ca.crt here".to_string(),
                Some(ca) if info.kind == CertificateKind::Authority => {
                    if ca.iter().any(|c| c.as_ref() == der.as_ref()) {
                        "is in it".into()
                    } else {
                        "-".into()
                    }
                }
                Some(ca) => match node_tls::verify_chain(ca, &chain[i..]) {
                    Ok(()) => "yes".into(),
                    Err(why) => format!("NO: {why}"),
                },
            };
            rows.push([
                if i == 0 {
                    file.clone()
                } else {
                    format!("{file} [{i}]")
                },
                kind.into(),
                names,
                if info.hosts.is_empty() {
                    "-".into()
                } else {
                    info.hosts.join(",")
                },
                signed,
                format!("{} ({})", date(info.not_after), days_left(info.not_after)),
            ]);
        }
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (w, cell)) in widths.iter().zip(row).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = *w));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_ca(dir: &Path) {
        execute(CertCommand::CreateCa {
            certs_dir: dir.to_path_buf(),
            ca_key: None,
            days: 30,
            overwrite: false,
        })
        .unwrap();
    }

    fn create_node(dir: &Path, id: &str) -> Result<String, CertError> {
        execute(CertCommand::CreateNode {
            certs_dir: dir.to_path_buf(),
            id: id.into(),
            cluster: "shop-prod".into(),
            hosts: vec!["10.0.0.1".into(), "n1.internal".into()],
            signing: Signing {
                ca_cert: None,
                ca_key: None,
                days: 10,
                overwrite: false,
            },
        })
    }

    #[test]
    fn a_node_directory_is_what_serve_reads() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path());
        let said = create_node(dir.path(), "n1").unwrap();
        assert!(
            said.contains("node \"n1\" of cluster \"shop-prod\""),
            "{said}"
        );
        let tls = crate::tls::peer_tls(dir.path()).unwrap();
        assert!(tls.is_for_node("shop-prod", "n1"));
        assert_eq!(tls.certificate().hosts, ["10.0.0.1", "n1.internal"]);
        // The key is private, the certificate readable.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |f: &str| {
                std::fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(mode(NODE_KEY), 0o600);
            assert_eq!(mode(CA_KEY), 0o600);
            assert_eq!(mode(NODE_CERT), 0o644);
        }
        // Nothing is overwritten without --overwrite.
        let e = create_node(dir.path(), "n2").unwrap_err().to_string();
        assert!(
            e.contains("exists already") && e.contains("--overwrite"),
            "{e}"
        );
        let e = execute(CertCommand::CreateCa {
            certs_dir: dir.path().to_path_buf(),
            ca_key: None,
            days: 30,
            overwrite: false,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("exists already"), "{e}");
    }

    #[test]
    fn list_shows_names_hosts_signers_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path());
        create_node(dir.path(), "n1").unwrap();
        execute(CertCommand::CreateClient {
            certs_dir: dir.path().to_path_buf(),
            name: "alice".into(),
            signing: Signing {
                ca_cert: None,
                ca_key: None,
                days: 5,
                overwrite: false,
            },
        })
        .unwrap();
        // A certificate from another CA, dropped into the directory.
        let other = CertificateAuthority::generate(Validity::days(1)).unwrap();
        let stray = other.issue_client("mallory", Validity::days(1)).unwrap();
        std::fs::write(dir.path().join("stray.crt"), &stray.certificate_pem).unwrap();
        let out = list(dir.path()).unwrap();
        let line = |file: &str| {
            out.lines()
                .find(|l| l.starts_with(file))
                .unwrap_or_else(|| panic!("no {file} in\n{out}"))
                .to_string()
        };
        assert!(line("ca.crt").contains("CA"), "{out}");
        let node = line("node.crt");
        assert!(
            node.contains("node \"n1\" of cluster \"shop-prod\""),
            "{out}"
        );
        assert!(node.contains("10.0.0.1,n1.internal"), "{out}");
        assert!(node.contains(" yes "), "{out}");
        assert!(
            node.contains("(in 9 days)") || node.contains("(in 10 days)"),
            "{out}"
        );
        let alice = line("client.alice.crt");
        assert!(alice.contains("client") && alice.contains("alice"), "{out}");
        assert!(line("stray.crt").contains("NO: "), "{out}");
        // A header that lies is called out.
        let text = std::fs::read_to_string(dir.path().join(NODE_CERT)).unwrap();
        std::fs::write(
            dir.path().join("forged.crt"),
            text.replace("node \"n1\"", "node \"n9\""),
        )
        .unwrap();
        assert!(list(dir.path()).unwrap().contains("MISMATCH"));
    }

    #[test]
    fn a_directory_with_another_cas_certificate_is_called_out() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path());
        let node_dir = dir.path().join("node");
        std::fs::create_dir_all(&node_dir).unwrap();
        let other = CertificateAuthority::generate(Validity::days(1)).unwrap();
        std::fs::write(node_dir.join(CA_CERT), other.certificate_pem()).unwrap();
        let said = execute(CertCommand::CreateNode {
            certs_dir: node_dir,
            id: "n1".into(),
            cluster: "c".into(),
            hosts: vec!["127.0.0.1".into()],
            signing: Signing {
                ca_cert: Some(dir.path().join(CA_CERT)),
                ca_key: Some(dir.path().join(CA_KEY)),
                days: 1,
                overwrite: false,
            },
        })
        .unwrap();
        assert!(
            said.contains("warning: `raft-kv serve --certs-dir"),
            "{said}"
        );
        assert!(said.contains("not signed by a trusted CA"), "{said}");
    }

    #[test]
    fn a_missing_ca_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let e = create_node(dir.path(), "n1").unwrap_err().to_string();
        assert!(e.contains("raft-kv cert create-ca"), "{e}");
    }

    #[test]
    fn headers_round_trip_odd_names() {
        let info = CertificateAuthority::generate(Validity::days(1))
            .unwrap()
            .issue_node("c \"q\"", "n\\1", &["h".into()], Validity::days(1))
            .unwrap()
            .info()
            .unwrap();
        let header = node_header("c \"q\"", "n\\1", &info);
        assert_eq!(
            header_names(&header),
            Some(("n\\1".to_string(), "c \"q\"".to_string()))
        );
    }
}
