//! Making certificates: a cluster's certificate authority, and the node and
//! client certificates it signs (ECDSA P-256 keys, with `rcgen`). This is
//! what `raft-kv cert` runs, what the conformance kit uses, and what a test
//! or a local cluster uses to run with TLS at no cost.
//!
//! ```
//! use raft_node::tls::{CertificateAuthority, TlsConfig, Validity};
//!
//! let ca = CertificateAuthority::generate(Validity::days(3650))?;
//! let n1 = ca.issue_node("shop-prod", "n1", &["10.0.0.1".into()], Validity::days(730))?;
//! let tls = TlsConfig::from_pem(
//!     ca.certificate_pem().as_bytes(),
//!     n1.certificate_pem.as_bytes(),
//!     n1.key_pem.as_bytes(),
//! )?;
//! assert!(tls.is_for_node("shop-prod", "n1"));
//! # Ok::<(), raft_node::tls::TlsError>(())
//! ```

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use super::identity::{node_identity, CertificateInfo, CertificateKind};
use super::{first_certificate, TlsError};

/// The common name of every certificate authority this module makes. It
/// names no cluster: a CA's name is shown to anyone who connects.
pub const CA_COMMON_NAME: &str = "raft-node cluster CA";

/// The common name of every node certificate (the node's identity is in a
/// URI, as a digest: see [`super::node_identity`]).
pub const NODE_COMMON_NAME: &str = "raft-node node";

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// From.
    pub not_before: SystemTime,
    /// Until.
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour ago (clocks of a cluster drift) to `days` days from now.
    pub fn days(days: u32) -> Validity {
        let now = SystemTime::now();
        Validity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(u64::from(days) * 24 * 3600),
        }
    }

    /// Exactly this period (tests use it for expired certificates).
    pub fn between(not_before: SystemTime, not_after: SystemTime) -> Validity {
        Validity {
            not_before,
            not_after,
        }
    }
}

fn offset(t: SystemTime) -> Result<OffsetDateTime, TlsError> {
    let seconds = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|e| TlsError::Generate(format!("a date out of range: {e}")))
}

fn generate_error(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// A random positive serial number (RFC 5280: at most 20 octets).
fn serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    super::provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| TlsError::Generate("the system's random source failed".into()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn base_params(validity: Validity, common_name: &str) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = offset(validity.not_before)?;
    params.not_after = offset(validity.not_after)?;
    params.serial_number = Some(serial()?);
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// A certificate and its private key, in PEM.
#[derive(Clone)]
pub struct IssuedCertificate {
    /// The certificate (PEM).
    pub certificate_pem: String,
    /// Its private key (PKCS#8 PEM). Keep it secret: written to disk, it
    /// belongs in a file only its owner can read (mode 0600).
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("certificate_pem", &self.certificate_pem)
            .field("key_pem", &"<secret>")
            .finish()
    }
}

impl IssuedCertificate {
    /// What the certificate says.
    pub fn info(&self) -> Result<CertificateInfo, TlsError> {
        let der = first_certificate(self.certificate_pem.as_bytes(), "the certificate")?;
        CertificateInfo::from_der(&der, "the certificate")
    }
}

/// A certificate authority: signs the certificates of a cluster's nodes
/// and clients. Every node trusts its certificate (`ca.crt`); its key
/// (`ca.key`) belongs on the machine that makes certificates, not on nodes.
pub struct CertificateAuthority {
    certificate_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
    info: CertificateInfo,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new authority with a fresh key, valid for `validity`.
    pub fn generate(validity: Validity) -> Result<CertificateAuthority, TlsError> {
        let key = KeyPair::generate().map_err(generate_error)?;
        let mut params = base_params(validity, CA_COMMON_NAME)?;
        // A name of its own, so that two authorities (an old and a new one
        // in a bundle, during a rotation) never share a subject.
        let mut tag = [0u8; 6];
        super::provider()
            .secure_random
            .fill(&mut tag)
            .map_err(|_| TlsError::Generate("the system's random source failed".into()))?;
        let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, format!("authority {tag}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(generate_error)?;
        let certificate_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let info = CertificateInfo::from_der(cert.der(), "the new CA certificate")?;
        Ok(CertificateAuthority {
            certificate_pem,
            key_pem,
            issuer: Issuer::new(params, key),
            info,
        })
    }

    /// An existing authority, from its certificate and key (PEM).
    pub fn from_pem(
        certificate_pem: &str,
        key_pem: &str,
    ) -> Result<CertificateAuthority, TlsError> {
        let der = first_certificate(certificate_pem.as_bytes(), "the CA certificate")?;
        let info = CertificateInfo::from_der(&der, "the CA certificate")?;
        if info.kind != CertificateKind::Authority {
            return Err(TlsError::BadCertificate {
                what: "the CA certificate".into(),
                reason: format!("{} is not a certificate authority", info.subject),
            });
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| TlsError::BadKey {
            what: "the CA key".into(),
            reason: e.to_string(),
        })?;
        if !public_keys_match(&der, &key) {
            return Err(TlsError::KeyMismatch {
                what: "the CA key".into(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|e| TlsError::BadCertificate {
            what: "the CA certificate".into(),
            reason: e.to_string(),
        })?;
        Ok(CertificateAuthority {
            certificate_pem: certificate_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer,
            info,
        })
    }

    /// The authority's certificate (PEM): what every node and client trusts.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The authority's private key (PEM).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// What the authority's certificate says.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// A certificate for node `id` of cluster `cluster`, valid for the
    /// `hosts` it is reached at (IP addresses or DNS names: a node that
    /// connects checks the address it dialed against them).
    pub fn issue_node(
        &self,
        cluster: &str,
        id: &str,
        hosts: &[String],
        validity: Validity,
    ) -> Result<IssuedCertificate, TlsError> {
        if id.is_empty() || cluster.is_empty() {
            return Err(TlsError::Generate(
                "a node certificate needs a cluster and a node id".into(),
            ));
        }
        if hosts.is_empty() {
            return Err(TlsError::Generate(
                "a node certificate needs at least one host (an IP address or DNS name peers dial)"
                    .into(),
            ));
        }
        let mut params = base_params(validity, NODE_COMMON_NAME)?;
        params.subject_alt_names = host_names(hosts)?;
        params.subject_alt_names.push(SanType::URI(
            node_identity(cluster, id)
                .try_into()
                .map_err(generate_error)?,
        ));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params)
    }

    /// A certificate for a client named `name` (TLS client use only; it
    /// cannot act as a node).
    pub fn issue_client(
        &self,
        name: &str,
        validity: Validity,
    ) -> Result<IssuedCertificate, TlsError> {
        if name.is_empty() {
            return Err(TlsError::Generate(
                "a client certificate needs a name".into(),
            ));
        }
        let mut params = base_params(validity, name)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<IssuedCertificate, TlsError> {
        let key = KeyPair::generate().map_err(generate_error)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_error)?;
        Ok(IssuedCertificate {
            certificate_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Hosts as subject alternative names: IP addresses, else DNS names.
fn host_names(hosts: &[String]) -> Result<Vec<SanType>, TlsError> {
    hosts
        .iter()
        .map(|h| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            match h.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => h.to_owned().try_into().map(SanType::DnsName).map_err(|e| {
                    TlsError::Generate(format!(
                        "{h:?} is neither an IP address nor a DNS name: {e}"
                    ))
                }),
            }
        })
        .collect()
}

/// Whether `key` is the key of the certificate `der`.
fn public_keys_match(der: &[u8], key: &KeyPair) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw(),
        Err(_) => false,
    }
}
