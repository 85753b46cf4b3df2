//! How a certificate names a node, and what the TLS layer reads off a
//! certificate.
//!
//! A node certificate names its node with one URI subject alternative name,
//! `raft-node:node:v1:<hex>`, where `<hex>` is the SHA-256 of the cluster id
//! and the node id (each prefixed with its length, after a fixed domain
//! label). The digest, not the names themselves, goes into the certificate:
//! in a TLS handshake the listener's certificate reaches whoever connects,
//! before that side has shown a certificate of its own, and a stranger must
//! learn neither the cluster's name nor the node's id from it. A peer that
//! knows both (it claims an id in its handshake, and is of the same cluster)
//! checks the digest; `raft-kv cert list` recomputes it from the names
//! written beside the certificate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::TlsError;

/// What every node identity URI starts with.
pub const NODE_IDENTITY_PREFIX: &str = "raft-node:node:v1:";

/// The URI subject alternative name that makes a certificate the one of node
/// `id` of cluster `cluster` (see the [module documentation](crate::tls)).
pub fn node_identity(cluster: &str, id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"raft-node node identity v1\0");
    for part in [cluster, id] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut uri = String::with_capacity(NODE_IDENTITY_PREFIX.len() + 64);
    uri.push_str(NODE_IDENTITY_PREFIX);
    for b in digest.iter() {
        uri.push_str(&format!("{b:02x}"));
    }
    uri
}

/// What a certificate is for, as far as raft-node is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateKind {
    /// A certificate authority (basic constraints CA:true).
    Authority,
    /// A node's certificate: it names a node (a node identity URI) and may
    /// serve and connect (TLS server and client use).
    Node,
    /// A client's certificate: TLS client use only, no node identity.
    Client,
    /// Anything else.
    Other,
}

/// What raft-node reads off one X.509 certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject's common name, if it has one.
    pub common_name: Option<String>,
    /// The subject, as text.
    pub subject: String,
    /// The issuer, as text.
    pub issuer: String,
    /// The serial number, hex with colons.
    pub serial: String,
    /// Valid from.
    pub not_before: SystemTime,
    /// Valid until.
    pub not_after: SystemTime,
    /// What it is for.
    pub kind: CertificateKind,
    /// Its host names and IP addresses (subject alternative names).
    pub hosts: Vec<String>,
    /// Its node identity URIs (normally one).
    pub node_identities: Vec<String>,
    /// Whether it may authenticate a TLS server (extended key usage).
    pub server_auth: bool,
    /// Whether it may authenticate a TLS client (extended key usage).
    pub client_auth: bool,
}

fn system_time(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}

impl CertificateInfo {
    /// Reads a DER-encoded certificate; `what` names it in the error.
    pub fn from_der(der: &[u8], what: &str) -> Result<CertificateInfo, TlsError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| TlsError::BadCertificate {
            what: what.to_owned(),
            reason: format!("not an X.509 certificate: {e}"),
        })?;
        let bad = |reason: String| TlsError::BadCertificate {
            what: what.to_owned(),
            reason,
        };
        let mut hosts = Vec::new();
        let mut node_identities = Vec::new();
        let sans = cert
            .subject_alternative_name()
            .map_err(|e| bad(format!("bad subject alternative names: {e}")))?;
        if let Some(sans) = sans {
            for name in &sans.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => hosts.push((*dns).to_owned()),
                    GeneralName::IPAddress(ip) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*ip) {
                            hosts.push(std::net::Ipv4Addr::from(v4).to_string());
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*ip) {
                            hosts.push(std::net::Ipv6Addr::from(v6).to_string());
                        }
                    }
                    GeneralName::URI(uri) if uri.starts_with(NODE_IDENTITY_PREFIX) => {
                        node_identities.push((*uri).to_owned())
                    }
                    _ => {}
                }
            }
        }
        let (server_auth, client_auth) = match cert
            .extended_key_usage()
            .map_err(|e| bad(format!("bad extended key usage: {e}")))?
        {
            Some(eku) => (
                eku.value.server_auth || eku.value.any,
                eku.value.client_auth || eku.value.any,
            ),
            None => (true, true),
        };
        let kind = if cert.is_ca() {
            CertificateKind::Authority
        } else if !node_identities.is_empty() {
            CertificateKind::Node
        } else if client_auth && !server_auth {
            CertificateKind::Client
        } else {
            CertificateKind::Other
        };
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        Ok(CertificateInfo {
            common_name,
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            not_before: system_time(cert.validity().not_before.timestamp()),
            not_after: system_time(cert.validity().not_after.timestamp()),
            kind,
            hosts,
            node_identities,
            server_auth,
            client_auth,
        })
    }

    /// True if this certificate names node `id` of cluster `cluster`.
    pub fn is_for_node(&self, cluster: &str, id: &str) -> bool {
        let expected = node_identity(cluster, id);
        self.node_identities.contains(&expected)
    }

    /// True if `at` lies within the validity period.
    pub fn is_valid_at(&self, at: SystemTime) -> bool {
        self.not_before <= at && at <= self.not_after
    }

    /// How long until it expires (zero if it has).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_depend_on_both_names_and_hide_them() {
        let a = node_identity("shop-prod", "n1");
        assert!(a.starts_with(NODE_IDENTITY_PREFIX));
        assert_eq!(a.len(), NODE_IDENTITY_PREFIX.len() + 64);
        assert!(!a.contains("shop"));
        assert_eq!(a, node_identity("shop-prod", "n1"), "stable");
        assert_ne!(a, node_identity("shop-prod", "n2"));
        assert_ne!(a, node_identity("shop-test", "n1"));
        // The lengths keep the two names apart.
        assert_ne!(node_identity("ab", "c"), node_identity("a", "bc"));
    }
}
