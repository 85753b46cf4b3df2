//! TLS for raft-kv: between nodes (mutual TLS from a certificates
//! directory, through raft-node's TCP transport), for RESP clients on
//! `--tls-port` (Redis's flags), and for the admin endpoint. Everything is
//! read from files, and read again on SIGHUP: a renewed certificate or a new
//! CA bundle takes effect without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use raft_node::tls::{self as node_tls, CertificateInfo, TlsConfig, TlsError};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The CA certificate in a certificates directory.
pub const CA_CERT: &str = "ca.crt";
/// The CA key, when it is kept in the certificates directory.
pub const CA_KEY: &str = "ca.key";
/// A node's certificate in its certificates directory.
pub const NODE_CERT: &str = "node.crt";
/// A node's key in its certificates directory.
pub const NODE_KEY: &str = "node.key";

/// Reads a node's TLS material from its certificates directory: `ca.crt`
/// (the CA certificate, or a bundle of several during a rotation),
/// `node.crt` and `node.key`.
pub fn peer_tls(certs_dir: &Path) -> Result<TlsConfig, TlsError> {
    TlsConfig::from_pem_files(
        certs_dir.join(CA_CERT),
        certs_dir.join(NODE_CERT),
        certs_dir.join(NODE_KEY),
    )
}

/// Whether clients on a TLS port must show a certificate (Redis's
/// `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClients {
    /// A client must show a certificate signed by the CA (the default).
    Yes,
    /// A client may show one; if it does, it is checked.
    Optional,
    /// Clients show none.
    No,
}

impl AuthClients {
    /// Parses `yes`, `no` or `optional`.
    pub fn parse(s: &str) -> Option<AuthClients> {
        match s {
            "yes" => Some(AuthClients::Yes),
            "optional" => Some(AuthClients::Optional),
            "no" => Some(AuthClients::No),
            _ => None,
        }
    }
}

/// Where a TLS listener (the RESP TLS port, the admin endpoint) takes its
/// certificate from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The server's certificate (chain).
    pub cert_file: PathBuf,
    /// Its key.
    pub key_file: PathBuf,
    /// The CA certificate(s) client certificates must chain to.
    pub ca_file: Option<PathBuf>,
    /// Whether clients must show a certificate.
    pub auth_clients: AuthClients,
}

impl ServerTlsFiles {
    /// Reads the files into a server configuration (TLS 1.2 and 1.3, as
    /// redis-cli and Redis client libraries speak).
    pub fn load(&self) -> Result<(Arc<ServerConfig>, CertificateInfo), TlsError> {
        let cert_name = self.cert_file.display().to_string();
        let chain =
            node_tls::read_certificates(&node_tls::read_file(&self.cert_file)?, &cert_name)?;
        let key = node_tls::read_private_key(
            &node_tls::read_file(&self.key_file)?,
            &self.key_file.display().to_string(),
        )?;
        let info = CertificateInfo::from_der(&chain[0], &cert_name)?;
        let provider = node_tls::provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match (self.auth_clients, &self.ca_file) {
            (AuthClients::No, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(TlsError::Config(
                    "client certificates are asked for (--tls-auth-clients yes or optional) but no CA is given to check them (--tls-ca-cert-file, or --certs-dir)".into(),
                ))
            }
            (mode, Some(ca_file)) => {
                let ca_name = ca_file.display().to_string();
                let ca = node_tls::read_certificates(&node_tls::read_file(ca_file)?, &ca_name)?;
                let (roots, _) = node_tls::root_store(&ca, &ca_name)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = match mode {
                    AuthClients::Optional => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                what: self.key_file.display().to_string(),
            },
            other => TlsError::BadKey {
                what: self.key_file.display().to_string(),
                reason: other.to_string(),
            },
        })?;
        Ok((Arc::new(config), info))
    }
}

/// A TLS listener's configuration, replaced on reload: connections
/// accepted after a reload use the new one.
#[derive(Clone)]
pub struct ReloadableAcceptor {
    files: ServerTlsFiles,
    current: Arc<RwLock<(TlsAcceptor, CertificateInfo)>>,
}

impl std::fmt::Debug for ReloadableAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableAcceptor")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadableAcceptor {
    /// Reads `files` (an error names the file at fault).
    pub fn new(files: ServerTlsFiles) -> Result<ReloadableAcceptor, TlsError> {
        let (config, info) = files.load()?;
        Ok(ReloadableAcceptor {
            files,
            current: Arc::new(RwLock::new((TlsAcceptor::from(config), info))),
        })
    }

    /// The acceptor in force.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    /// What the certificate in force says.
    pub fn certificate(&self) -> CertificateInfo {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    /// Reads the files again; on an error the old configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let (config, info) = self.files.load()?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            (TlsAcceptor::from(config), info);
        Ok(())
    }
}
