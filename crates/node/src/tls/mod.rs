//! Mutual TLS between nodes (TLS 1.3, rustls): every node proves who it is
//! with a certificate signed by the cluster's certificate authority that
//! names its node id, and everything between nodes is encrypted.
//!
//! A [`TlsConfig`] holds the CA certificate(s) a node trusts and the node's
//! own certificate and key, from PEM files ([`TlsConfig::from_pem_files`])
//! or PEM in memory ([`TlsConfig::from_pem`]). Given to the TCP transport
//! ([`crate::TcpOptions::tls`]), it makes every connection between nodes
//! check, before a single Raft message is read:
//!
//! - that the other side's certificate chains to a trusted CA and is within
//!   its validity period (both sides: the listener asks for a client
//!   certificate and refuses a connection without one);
//! - that the certificate of a node one connects to is valid for the host
//!   one dialed (as an HTTPS client checks a server);
//! - that the certificate names the node id the other side claims, in this
//!   cluster (see [`node_identity`]), and, afterwards, that every Raft
//!   message on the connection comes from that node.
//!
//! A peer without such a certificate learns nothing: the TLS handshake
//! fails before any of raft-node's own bytes are exchanged, and no
//! certificate shows the cluster's name or a node's id in clear.
//! [`CertificateAuthority`] makes the certificates.

mod certs;
mod identity;
mod stream;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use certs::{
    CertificateAuthority, IssuedCertificate, Validity, CA_COMMON_NAME, NODE_COMMON_NAME,
};
pub use identity::{node_identity, CertificateInfo, CertificateKind, NODE_IDENTITY_PREFIX};
pub use stream::TcpOrTls;

/// The ALPN protocol name of raft-node's peer protocol: a TLS client of
/// another protocol is refused in the handshake.
pub const ALPN_PROTOCOL: &[u8] = b"raft-node/1";

/// Why TLS material could not be read, checked or made. The text names the
/// file (or the PEM given) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// No certificate where one was expected.
    #[error("{what}: no PEM certificate in it (expected a \"-----BEGIN CERTIFICATE-----\" block)")]
    NoCertificate {
        /// What was read.
        what: String,
    },
    /// A certificate could not be used.
    #[error("{what}: {reason}")]
    BadCertificate {
        /// What was read.
        what: String,
        /// Why.
        reason: String,
    },
    /// A private key could not be read.
    #[error("{what}: not a usable private key: {reason}")]
    BadKey {
        /// What was read.
        what: String,
        /// Why.
        reason: String,
    },
    /// A private key is not the key of its certificate.
    #[error("{what} does not belong to its certificate")]
    KeyMismatch {
        /// Which key.
        what: String,
    },
    /// The certificate names another node (or another cluster).
    #[error("the certificate is not for node {id:?} of cluster {cluster:?} (it was made for another node or cluster)")]
    NotForNode {
        /// The cluster expected.
        cluster: String,
        /// The node id expected.
        id: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// A certificate could not be made.
    #[error("cannot make a certificate: {0}")]
    Generate(String),
}

/// The first certificate of a PEM text, as DER.
pub(crate) fn first_certificate(
    pem: &[u8],
    what: &str,
) -> Result<CertificateDer<'static>, TlsError> {
    read_certificates(pem, what)?
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::NoCertificate {
            what: what.to_owned(),
        })
}

/// Every certificate of a PEM text (at least one); `what` names the text in
/// errors.
pub fn read_certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate {
            what: what.to_owned(),
            reason: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM text (PKCS#8, PKCS#1 or SEC1); `what` names the
/// text in errors.
pub fn read_private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::BadKey {
        what: what.to_owned(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no \"-----BEGIN PRIVATE KEY-----\" block in it".to_owned()
            }
            other => other.to_string(),
        },
    })
}

/// Reads a whole file for TLS material.
pub fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The crypto provider of every TLS configuration here (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(e: impl fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// A trust store of the CA certificates in `ca`.
pub fn root_store(
    ca: &[CertificateDer<'static>],
    what: &str,
) -> Result<(Arc<RootCertStore>, Vec<CertificateInfo>), TlsError> {
    let mut roots = RootCertStore::empty();
    let mut infos = Vec::new();
    for der in ca {
        let info = CertificateInfo::from_der(der, what)?;
        if info.kind != CertificateKind::Authority {
            return Err(TlsError::BadCertificate {
                what: what.to_owned(),
                reason: format!(
                    "{} is not a certificate authority (a CA file holds the CA's certificate, not a node's)",
                    info.subject
                ),
            });
        }
        roots
            .add(der.clone())
            .map_err(|e| TlsError::BadCertificate {
                what: what.to_owned(),
                reason: e.to_string(),
            })?;
        infos.push(info);
    }
    Ok((Arc::new(roots), infos))
}

/// Checks that `chain` (a certificate, then any intermediates) chains to one
/// of the CA certificates `ca` and is valid now, as a TLS client
/// certificate (node and client certificates both are); why not.
pub fn verify_chain(
    ca: &[CertificateDer<'static>],
    chain: &[CertificateDer<'static>],
) -> Result<(), String> {
    let (roots, _) = root_store(ca, "the CA certificate").map_err(|e| e.to_string())?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| e.to_string())?;
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Err("no certificate".into());
    };
    verifier
        .verify_client_cert(end_entity, intermediates, UnixTime::now())
        .map(|_| ())
        .map_err(|e| describe_rustls_error(&e))
}

/// A node's TLS material, checked and ready for the TCP transport: the CA
/// certificates it trusts and its own certificate and key. Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<Inner>,
}

struct Inner {
    authorities: Vec<CertificateInfo>,
    certificate: CertificateInfo,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    server_verifier: Arc<WebPkiServerVerifier>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("certificate", &self.inner.certificate.serial)
            .field("not_after", &self.inner.certificate.not_after)
            .field("authorities", &self.inner.authorities.len())
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// From PEM files: `ca` (one or more CA certificates: a bundle of an old
    /// and a new CA during a rotation), `certificate` (the node's
    /// certificate, then any intermediates) and `key` (its private key).
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        certificate: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig, TlsError> {
        let (ca, certificate, key) = (ca.as_ref(), certificate.as_ref(), key.as_ref());
        TlsConfig::from_pem_named(
            (&read_file(ca)?, &ca.display().to_string()),
            (&read_file(certificate)?, &certificate.display().to_string()),
            (&read_file(key)?, &key.display().to_string()),
        )
    }

    /// From PEM text in memory (see [`TlsConfig::from_pem_files`]).
    pub fn from_pem(ca: &[u8], certificate: &[u8], key: &[u8]) -> Result<TlsConfig, TlsError> {
        TlsConfig::from_pem_named(
            (ca, "the CA certificate"),
            (certificate, "the node certificate"),
            (key, "the node key"),
        )
    }

    fn from_pem_named(
        (ca, ca_name): (&[u8], &str),
        (certificate, certificate_name): (&[u8], &str),
        (key, key_name): (&[u8], &str),
    ) -> Result<TlsConfig, TlsError> {
        let ca = read_certificates(ca, ca_name)?;
        let chain = read_certificates(certificate, certificate_name)?;
        let key = read_private_key(key, key_name)?;
        TlsConfig::from_der(&ca, chain, key, (ca_name, certificate_name, key_name))
    }

    /// From DER: the CA certificates, the node's chain (its certificate
    /// first) and its key; `names` say what each is in errors.
    fn from_der(
        ca: &[CertificateDer<'static>],
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        (ca_name, certificate_name, key_name): (&str, &str, &str),
    ) -> Result<TlsConfig, TlsError> {
        let (roots, authorities) = root_store(ca, ca_name)?;
        let certificate = CertificateInfo::from_der(&chain[0], certificate_name)?;
        if certificate.node_identities.is_empty() {
            return Err(TlsError::BadCertificate {
                what: certificate_name.to_owned(),
                reason: format!(
                    "{} names no node (no {NODE_IDENTITY_PREFIX}... URI): make node certificates with `raft-kv cert create-node` or CertificateAuthority::issue_node",
                    certificate.subject
                ),
            });
        }
        let provider = provider();
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(config_error)?;
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(config_error)?;
        // The node's own certificate must chain to a CA it trusts: a node
        // whose peers would refuse it is refused at once, with the reason.
        let now = UnixTime::now();
        client_verifier
            .verify_client_cert(&chain[0], &chain[1..], now)
            .map_err(|e| TlsError::BadCertificate {
                what: certificate_name.to_owned(),
                reason: format!(
                    "not accepted under the CA certificates of {ca_name}: {}",
                    describe_rustls_error(&e)
                ),
            })?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_client_cert_verifier(client_verifier.clone())
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| key_error(e, key_name))?;
        server.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
        // No resumption: every connection shows its certificate, checked
        // against the trust of the moment (a reload may have changed it).
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_webpki_verifier(server_verifier.clone())
            .with_client_auth_cert(chain, key)
            .map_err(|e| key_error(e, key_name))?;
        client.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
        client.resumption = rustls::client::Resumption::disabled();
        Ok(TlsConfig {
            inner: Arc::new(Inner {
                authorities,
                certificate,
                server: Arc::new(server),
                client: Arc::new(client),
                client_verifier,
                server_verifier,
            }),
        })
    }

    /// What the node's own certificate says (its expiry, for one).
    pub fn certificate(&self) -> &CertificateInfo {
        &self.inner.certificate
    }

    /// What the trusted CA certificates say.
    pub fn authorities(&self) -> &[CertificateInfo] {
        &self.inner.authorities
    }

    /// True if the node's certificate names node `id` of cluster `cluster`.
    pub fn is_for_node(&self, cluster: &str, id: &str) -> bool {
        self.inner.certificate.is_for_node(cluster, id)
    }

    /// Fails unless the node's certificate names node `id` of `cluster`.
    pub fn check_node(&self, cluster: &str, id: &str) -> Result<(), TlsError> {
        if self.is_for_node(cluster, id) {
            Ok(())
        } else {
            Err(TlsError::NotForNode {
                cluster: cluster.to_owned(),
                id: id.to_owned(),
            })
        }
    }

    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        self.inner.server.clone()
    }

    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        self.inner.client.clone()
    }

    /// Checks a peer's certificate chain again under this configuration's
    /// trust (after a reload): as a client certificate for connections that
    /// were accepted, as a server certificate for `server_name` for those
    /// that were dialed.
    pub(crate) fn verify_peer(
        &self,
        chain: &[CertificateDer<'static>],
        server_name: Option<&ServerName<'static>>,
    ) -> Result<(), String> {
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return Err("the peer showed no certificate".into());
        };
        let now = UnixTime::now();
        let result = match server_name {
            None => self
                .inner
                .client_verifier
                .verify_client_cert(end_entity, intermediates, now)
                .map(|_| ()),
            Some(name) => self
                .inner
                .server_verifier
                .verify_server_cert(end_entity, intermediates, name, &[], now)
                .map(|_| ()),
        };
        result.map_err(|e| describe_rustls_error(&e))
    }
}

fn key_error(e: rustls::Error, key_name: &str) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            what: key_name.to_owned(),
        },
        other => TlsError::BadKey {
            what: key_name.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// A rustls error in words an operator acts on.
pub fn describe_rustls_error(e: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    match e {
        Error::InvalidCertificate(CertificateError::Expired) => {
            "the certificate has expired".into()
        }
        Error::InvalidCertificate(CertificateError::ExpiredContext { time, not_after }) => {
            format!(
                "the certificate expired {} s ago",
                time.as_secs().saturating_sub(not_after.as_secs())
            )
        }
        Error::InvalidCertificate(CertificateError::NotValidYet)
        | Error::InvalidCertificate(CertificateError::NotValidYetContext { .. }) => {
            "the certificate is not valid yet (check the clocks)".into()
        }
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the certificate is not signed by a trusted CA".into()
        }
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the certificate is not valid for the address dialed (its hosts do not include it)"
                .into()
        }
        Error::InvalidCertificate(CertificateError::BadSignature) => {
            "the certificate's signature is bad".into()
        }
        Error::NoCertificatesPresented => "no certificate was shown".into(),
        other => other.to_string(),
    }
}

/// The server name to check a dialed node's certificate against: the host
/// part of `address` (`host:port`, `[v6]:port`).
pub(crate) fn server_name(address: &str) -> Result<ServerName<'static>, String> {
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => address,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?} is not a host name or IP address: {e}"))
}

/// Seconds until `t` (negative once past).
pub fn seconds_until(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ca() -> CertificateAuthority {
        CertificateAuthority::generate(Validity::days(10)).unwrap()
    }

    #[test]
    fn a_node_certificate_round_trips_into_a_config() {
        let ca = ca();
        let n1 = ca
            .issue_node(
                "c",
                "n1",
                &["127.0.0.1".into(), "localhost".into()],
                Validity::days(1),
            )
            .unwrap();
        let tls = TlsConfig::from_pem(
            ca.certificate_pem().as_bytes(),
            n1.certificate_pem.as_bytes(),
            n1.key_pem.as_bytes(),
        )
        .unwrap();
        assert!(tls.is_for_node("c", "n1"));
        assert!(!tls.is_for_node("c", "n2"));
        assert!(!tls.is_for_node("d", "n1"));
        assert!(tls.check_node("c", "n2").is_err());
        let info = tls.certificate();
        assert_eq!(info.kind, CertificateKind::Node);
        assert_eq!(
            info.hosts,
            vec!["127.0.0.1".to_string(), "localhost".to_string()]
        );
        assert!(info.server_auth && info.client_auth);
        assert_eq!(tls.authorities()[0].kind, CertificateKind::Authority);
    }

    #[test]
    fn certificates_name_neither_the_cluster_nor_the_node_in_clear() {
        let ca = ca();
        let node = ca
            .issue_node(
                "cluster-bravo",
                "node-alpha-7",
                &["127.0.0.1".into()],
                Validity::days(1),
            )
            .unwrap();
        for pem in [ca.certificate_pem(), &node.certificate_pem] {
            let der = first_certificate(pem.as_bytes(), "x").unwrap();
            for name in [&b"cluster-bravo"[..], b"node-alpha-7"] {
                assert!(!der.as_ref().windows(name.len()).any(|w| w == name));
            }
        }
    }

    #[test]
    fn bad_material_is_refused_with_what_is_wrong() {
        let ca = ca();
        let other = CertificateAuthority::generate(Validity::days(10)).unwrap();
        let n1 = ca
            .issue_node("c", "n1", &["127.0.0.1".into()], Validity::days(1))
            .unwrap();
        let n2 = ca
            .issue_node("c", "n2", &["127.0.0.1".into()], Validity::days(1))
            .unwrap();
        let client = ca.issue_client("alice", Validity::days(1)).unwrap();
        let err = |ca: &str, cert: &str, key: &str| {
            TlsConfig::from_pem(ca.as_bytes(), cert.as_bytes(), key.as_bytes())
                .unwrap_err()
                .to_string()
        };
        let e = err(ca.certificate_pem(), &n1.certificate_pem, &n2.key_pem);
        assert!(e.contains("does not belong"), "{e}");
        let e = err(other.certificate_pem(), &n1.certificate_pem, &n1.key_pem);
        assert!(e.contains("not signed by a trusted CA"), "{e}");
        let e = err(&n1.certificate_pem, &n1.certificate_pem, &n1.key_pem);
        assert!(e.contains("not a certificate authority"), "{e}");
        let e = err(
            ca.certificate_pem(),
            &client.certificate_pem,
            &client.key_pem,
        );
        assert!(e.contains("names no node"), "{e}");
        let e = err(ca.certificate_pem(), "", &n1.key_pem);
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = err(ca.certificate_pem(), &n1.certificate_pem, "junk");
        assert!(e.contains("not a usable private key"), "{e}");
        let past = SystemTime::now() - Duration::from_secs(86400);
        let expired = ca
            .issue_node(
                "c",
                "n1",
                &["127.0.0.1".into()],
                Validity::between(past - Duration::from_secs(3600), past),
            )
            .unwrap();
        let e = err(
            ca.certificate_pem(),
            &expired.certificate_pem,
            &expired.key_pem,
        );
        assert!(e.contains("expired"), "{e}");
    }

    #[test]
    fn an_authority_reloads_from_its_pem_and_keeps_signing() {
        let ca = ca();
        let again = CertificateAuthority::from_pem(ca.certificate_pem(), ca.key_pem()).unwrap();
        let n1 = again
            .issue_node("c", "n1", &["10.0.0.1".into()], Validity::days(1))
            .unwrap();
        TlsConfig::from_pem(
            ca.certificate_pem().as_bytes(),
            n1.certificate_pem.as_bytes(),
            n1.key_pem.as_bytes(),
        )
        .unwrap();
        let other = CertificateAuthority::generate(Validity::days(1)).unwrap();
        let e = CertificateAuthority::from_pem(ca.certificate_pem(), other.key_pem()).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
    }

    #[test]
    fn server_names_come_from_addresses() {
        assert_eq!(
            server_name("10.0.0.1:7001").unwrap(),
            ServerName::try_from("10.0.0.1").unwrap()
        );
        assert_eq!(
            server_name("[::1]:7001").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name("node1.example:7001").unwrap(),
            ServerName::try_from("node1.example").unwrap()
        );
    }
}
