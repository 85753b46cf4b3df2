//! The authentication kit: checks that a transport which authenticates
//! nodes with certificates (mutual TLS, as [`crate::TcpTransport`] does
//! with [`crate::tls::TlsConfig`]) lets members talk and refuses everyone
//! else **before any of their requests reaches the handler**: a peer with
//! no certificate, with one from another CA, an expired one, one not yet
//! valid, one made for another node or another cluster, a client's
//! certificate; a member that sends a Raft message in another node's name;
//! and a listener whose certificate the connecting side does not trust.
//!
//! ```no_run
//! use std::sync::Arc;
//! use raft_node::testkit::authentication::AuthKit;
//! use raft_node::tls::TlsConfig;
//! use raft_node::transport::{Transport, TransportError};
//! use raft_node::{TcpOptions, TcpTransport};
//!
//! # async fn run() {
//! AuthKit::new(|setup| async move {
//!     let mut options = TcpOptions::new(setup.node_id.clone(), setup.cluster.clone());
//!     options.request_timeout = setup.request_timeout;
//!     match &setup.credentials {
//!         Some(c) => {
//!             let tls = TlsConfig::from_pem(
//!                 c.ca_pem.as_bytes(),
//!                 c.certificate_pem.as_bytes(),
//!                 c.key_pem.as_bytes(),
//!             )
//!             .map_err(|e| TransportError::Other(e.to_string()))?;
//!             options = options.with_tls(tls);
//!         }
//!         None => options = options.insecure(),
//!     }
//!     let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new(options)?);
//!     Ok((transport, "127.0.0.1:0".to_string()))
//! })
//! .run_all()
//! .await;
//! # }
//! ```
//!
//! The factory receives an [`AuthSetup`]: the node id and cluster the
//! transport is to claim and the credentials it is to show (`None`: none at
//! all, a plain connection). It returns a transport that does not listen
//! yet and the address to listen at, or an error if the transport refuses
//! those credentials (that counts as refusing the peer). The certificates
//! the kit makes name the hosts 127.0.0.1, ::1 and localhost: listen there.
//! Each check panics with what went wrong; [`AuthKit::run_all`] runs them
//! all in well under ten seconds.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use raft_core::{Body, Message};

use super::transport::{describe, reply_to, Recorder};
use crate::ids::node_number;
use crate::tls::{CertificateAuthority, IssuedCertificate, Validity};
use crate::transport::{Connection, Envelope, Reply, Request, Transport, TransportError};

/// The cluster every node of the kit claims.
pub const AUTH_KIT_CLUSTER: &str = "auth-kit-cluster";

/// The hosts the kit's node certificates are valid for.
pub const AUTH_KIT_HOSTS: &[&str] = &["127.0.0.1", "::1", "localhost"];

/// A CA certificate to trust and a certificate and key to show, in PEM.
#[derive(Clone)]
pub struct Credentials {
    /// The CA certificate(s) to trust.
    pub ca_pem: String,
    /// The certificate to show.
    pub certificate_pem: String,
    /// Its key.
    pub key_pem: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

/// What the kit asks of a transport the factory makes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthSetup {
    /// A number the kit never passes twice.
    pub index: usize,
    /// The node id the transport claims.
    pub node_id: String,
    /// The cluster it claims.
    pub cluster: String,
    /// What it shows (`None`: no certificate, a plain connection).
    pub credentials: Option<Credentials>,
    /// How long `invoke` waits for a reply.
    pub request_timeout: Duration,
}

/// The authentication kit. See the [module documentation](self).
pub struct AuthKit<F> {
    factory: F,
    ca: CertificateAuthority,
    other_ca: CertificateAuthority,
    next_index: AtomicUsize,
    request_timeout: Duration,
    slack: Duration,
}

impl<F> std::fmt::Debug for AuthKit<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthKit")
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// What a peer shows, for a check.
enum Shows {
    /// Nothing.
    Nothing,
    /// A certificate from the kit's CA for this cluster and node id.
    Node {
        cluster: String,
        id: String,
        validity: Validity,
    },
    /// A certificate from another CA (which it trusts) for its own id.
    OtherAuthority,
    /// A client certificate (no node identity) from the kit's CA.
    ClientCertificate,
}

impl<F, Fut> AuthKit<F>
where
    F: Fn(AuthSetup) -> Fut,
    Fut: Future<Output = Result<(Arc<dyn Transport>, String), TransportError>>,
{
    /// A kit whose transports come from `factory` (see the [module
    /// documentation](self)).
    pub fn new(factory: F) -> AuthKit<F> {
        let ca = CertificateAuthority::generate(Validity::days(2))
            .expect("the kit makes a certificate authority");
        let other_ca = CertificateAuthority::generate(Validity::days(2))
            .expect("the kit makes a second certificate authority");
        AuthKit {
            factory,
            ca,
            other_ca,
            next_index: AtomicUsize::new(0),
            request_timeout: Duration::from_millis(500),
            slack: Duration::from_millis(1500),
        }
    }

    /// Runs every check, one after the other.
    pub async fn run_all(&self) {
        self.members_talk().await;
        self.no_certificate().await;
        self.other_authority().await;
        self.expired_certificate().await;
        self.certificate_not_yet_valid().await;
        self.certificate_of_another_node().await;
        self.certificate_of_another_cluster().await;
        self.client_certificate().await;
        self.forged_sender().await;
        self.untrusted_listener().await;
    }

    /// Two members (certificates from the cluster's CA naming them) talk:
    /// requests and replies pass, and a Raft message from the sender's own
    /// node arrives unchanged.
    pub async fn members_talk(&self) {
        const CHECK: &str = "members_talk";
        let (server, address, recorder, _) = self.member(CHECK, "server").await;
        let (client, _, client_id) = self.make_member(CHECK).await;
        let connection = self.connect(CHECK, &client, &address).await;
        let message = raft_from(&client_id);
        let reply = self.call(&connection, message.clone()).await;
        assert!(
            matches!(reply, Ok(Reply::Ack)),
            "auth kit, {CHECK}: a member's Raft message was not accepted: {reply:?}"
        );
        let read = Envelope {
            cluster: 1,
            from: Arc::from(""),
            request: Request::Read(Bytes::from_static(b"who")),
        };
        let reply = self.call(&connection, read.clone()).await;
        assert_eq!(
            reply.ok(),
            reply_to("server", &read.request),
            "auth kit, {CHECK}: a member's read was not answered"
        );
        let seen = recorder.seen();
        assert_eq!(
            seen.len(),
            2,
            "auth kit, {CHECK}: the listener saw {seen:?}"
        );
        assert!(
            seen[0] == message,
            "auth kit, {CHECK}: the Raft message arrived changed: {}",
            describe(&seen[0])
        );
        self.finish(&[&server, &client], &[&connection]).await;
    }

    /// A peer that shows no certificate is refused.
    pub async fn no_certificate(&self) {
        self.refused("no_certificate", Shows::Nothing).await;
    }

    /// A peer whose certificate comes from another CA is refused.
    pub async fn other_authority(&self) {
        self.refused("other_authority", Shows::OtherAuthority).await;
    }

    /// A peer whose certificate has expired is refused.
    pub async fn expired_certificate(&self) {
        let past = SystemTime::now() - Duration::from_secs(3600);
        let validity = Validity::between(past - Duration::from_secs(86400), past);
        self.refused(
            "expired_certificate",
            Shows::Node {
                cluster: AUTH_KIT_CLUSTER.into(),
                id: String::new(),
                validity,
            },
        )
        .await;
    }

    /// A peer whose certificate is not valid yet is refused.
    pub async fn certificate_not_yet_valid(&self) {
        let future = SystemTime::now() + Duration::from_secs(86400);
        let validity = Validity::between(future, future + Duration::from_secs(86400));
        self.refused(
            "certificate_not_yet_valid",
            Shows::Node {
                cluster: AUTH_KIT_CLUSTER.into(),
                id: String::new(),
                validity,
            },
        )
        .await;
    }

    /// A peer that claims one node id and shows a (valid) certificate made
    /// for another is refused.
    pub async fn certificate_of_another_node(&self) {
        self.refused(
            "certificate_of_another_node",
            Shows::Node {
                cluster: AUTH_KIT_CLUSTER.into(),
                id: "kit-member-somebody-else".into(),
                validity: Validity::days(1),
            },
        )
        .await;
    }

    /// A peer whose certificate (from the same CA) names its id in another
    /// cluster is refused.
    pub async fn certificate_of_another_cluster(&self) {
        self.refused(
            "certificate_of_another_cluster",
            Shows::Node {
                cluster: "another-cluster".into(),
                id: String::new(),
                validity: Validity::days(1),
            },
        )
        .await;
    }

    /// A peer that shows a client certificate (valid, from the cluster's
    /// CA, but naming no node) is refused.
    pub async fn client_certificate(&self) {
        self.refused("client_certificate", Shows::ClientCertificate)
            .await;
    }

    /// A member that sends a Raft message in another node's name: the
    /// message never reaches the handler.
    pub async fn forged_sender(&self) {
        const CHECK: &str = "forged_sender";
        let (server, address, recorder, _) = self.member(CHECK, "server").await;
        let (client, _, _) = self.make_member(CHECK).await;
        let connection = self.connect(CHECK, &client, &address).await;
        let forged = raft_from("kit-member-the-leader");
        let reply = self.call(&connection, forged).await;
        assert!(
            matches!(reply, Err(_) | Ok(Reply::Error(_))),
            "auth kit, {CHECK}: a Raft message in another node's name was accepted: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let seen = recorder.seen();
        assert!(
            seen.is_empty(),
            "auth kit, {CHECK}: the handler saw a forged message: {}",
            seen.iter().map(describe).collect::<Vec<_>>().join("; ")
        );
        self.close_quietly(&connection).await;
        self.finish(&[&server, &client], &[]).await;
    }

    /// A member that connects to a listener whose certificate comes from a
    /// CA it does not trust refuses it: the listener learns nothing of the
    /// member's requests.
    pub async fn untrusted_listener(&self) {
        const CHECK: &str = "untrusted_listener";
        let index = self.next_index();
        let id = format!("kit-member-{index}");
        let impostor = self
            .other_ca
            .issue_node(AUTH_KIT_CLUSTER, &id, &hosts(), Validity::days(1));
        let impostor = impostor.expect("the kit makes a certificate");
        let setup = self.setup(index, &id, Some(credentials(&self.other_ca, &impostor)));
        let (server, address) = (self.factory)(setup)
            .await
            .unwrap_or_else(|e| panic!("auth kit, {CHECK}: the factory failed: {e}"));
        let recorder = Recorder::new("impostor");
        self.within(server.listen(&address, recorder.clone()))
            .await
            .unwrap_or_else(|e| panic!("auth kit, {CHECK}: listen at {address} failed: {e}"));
        let (client, _, client_id) = self.make_member(CHECK).await;
        if let Ok(Ok(connection)) =
            tokio::time::timeout(self.limit(), client.connect(&address)).await
        {
            for envelope in probes(&client_id) {
                let reply = self.call(&connection, envelope.clone()).await;
                assert!(
                    reply.is_err(),
                    "auth kit, {CHECK}: a member's {} reached a listener it cannot trust and was answered: {reply:?}",
                    envelope.request.kind()
                );
            }
            self.close_quietly(&connection).await;
        }
        let seen = recorder.seen();
        assert!(
            seen.is_empty(),
            "auth kit, {CHECK}: an untrusted listener received {}",
            seen.iter().map(describe).collect::<Vec<_>>().join("; ")
        );
        self.finish(&[&server, &client], &[]).await;
    }

    // --- helpers ---

    fn next_index(&self) -> usize {
        self.next_index.fetch_add(1, Ordering::Relaxed)
    }

    fn limit(&self) -> Duration {
        self.request_timeout.saturating_add(self.slack)
    }

    fn setup(&self, index: usize, id: &str, credentials: Option<Credentials>) -> AuthSetup {
        AuthSetup {
            index,
            node_id: id.to_owned(),
            cluster: AUTH_KIT_CLUSTER.to_owned(),
            credentials,
            request_timeout: self.request_timeout,
        }
    }

    async fn within<T>(&self, future: impl Future<Output = T>) -> T {
        tokio::time::timeout(self.limit(), future)
            .await
            .unwrap_or_else(|_| panic!("auth kit: an operation hung for {:?}", self.limit()))
    }

    /// A member with valid credentials, not listening.
    async fn make_member(&self, check: &str) -> (Arc<dyn Transport>, String, String) {
        let index = self.next_index();
        let id = format!("kit-member-{index}");
        let issued = self
            .ca
            .issue_node(AUTH_KIT_CLUSTER, &id, &hosts(), Validity::days(1))
            .expect("the kit makes a certificate");
        let setup = self.setup(index, &id, Some(credentials(&self.ca, &issued)));
        let (transport, address) = (self.factory)(setup).await.unwrap_or_else(|e| {
            panic!("auth kit, {check}: the factory refused a member's valid credentials: {e}")
        });
        (transport, address, id)
    }

    /// A listening member whose handler records what reaches it.
    async fn member(
        &self,
        check: &str,
        name: &str,
    ) -> (Arc<dyn Transport>, String, Arc<Recorder>, String) {
        let (transport, address, id) = self.make_member(check).await;
        let recorder = Recorder::new(name);
        let bound = self
            .within(transport.listen(&address, recorder.clone()))
            .await
            .unwrap_or_else(|e| panic!("auth kit, {check}: listen at {address} failed: {e}"));
        (transport, bound, recorder, id)
    }

    async fn connect(
        &self,
        check: &str,
        transport: &Arc<dyn Transport>,
        address: &str,
    ) -> Arc<dyn Connection> {
        self.within(transport.connect(address))
            .await
            .unwrap_or_else(|e| panic!("auth kit, {check}: a member could not connect: {e}"))
    }

    async fn call(
        &self,
        connection: &Arc<dyn Connection>,
        envelope: Envelope,
    ) -> Result<Reply, TransportError> {
        self.within(connection.invoke(envelope)).await
    }

    async fn close_quietly(&self, connection: &Arc<dyn Connection>) {
        let _ = tokio::time::timeout(self.limit(), connection.close()).await;
    }

    async fn finish(
        &self,
        transports: &[&Arc<dyn Transport>],
        connections: &[&Arc<dyn Connection>],
    ) {
        for connection in connections {
            self.close_quietly(connection).await;
        }
        for transport in transports {
            let _ = tokio::time::timeout(self.limit(), transport.shutdown()).await;
        }
    }

    /// A member listens; a peer showing `shows` tries every request type
    /// on it: none may reach the handler.
    async fn refused(&self, check: &str, shows: Shows) {
        let (server, address, recorder, _) = self.member(check, "server").await;
        let index = self.next_index();
        let id = format!("kit-stranger-{index}");
        let credentials = match shows {
            Shows::Nothing => None,
            Shows::OtherAuthority => {
                let issued = self
                    .other_ca
                    .issue_node(AUTH_KIT_CLUSTER, &id, &hosts(), Validity::days(1))
                    .expect("the kit makes a certificate");
                Some(credentials(&self.other_ca, &issued))
            }
            Shows::ClientCertificate => {
                let issued = self
                    .ca
                    .issue_client(&id, Validity::days(1))
                    .expect("the kit makes a certificate");
                Some(credentials(&self.ca, &issued))
            }
            Shows::Node {
                cluster,
                id: named,
                validity,
            } => {
                let named = if named.is_empty() { id.clone() } else { named };
                let issued = self
                    .ca
                    .issue_node(&cluster, &named, &hosts(), validity)
                    .expect("the kit makes a certificate");
                Some(credentials(&self.ca, &issued))
            }
        };
        let setup = self.setup(index, &id, credentials);
        let stranger = match (self.factory)(setup).await {
            Ok((transport, _)) => transport,
            Err(e) => {
                tracing::debug!(check, error = %e, "the transport refused the credentials");
                assert!(recorder.seen().is_empty());
                self.finish(&[&server], &[]).await;
                return;
            }
        };
        let connected = tokio::time::timeout(self.limit(), stranger.connect(&address)).await;
        if let Ok(Ok(connection)) = connected {
            for envelope in probes(&id) {
                let reply = self.call(&connection, envelope.clone()).await;
                assert!(
                    matches!(reply, Err(_) | Ok(Reply::Error(_))),
                    "auth kit, {check}: a stranger's {} was answered: {reply:?}",
                    envelope.request.kind()
                );
            }
            self.close_quietly(&connection).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let seen = recorder.seen();
        assert!(
            seen.is_empty(),
            "auth kit, {check}: requests of a peer that is not a member reached the handler: {}",
            seen.iter().map(describe).collect::<Vec<_>>().join("; ")
        );
        self.finish(&[&server, &stranger], &[]).await;
    }
}

fn hosts() -> Vec<String> {
    AUTH_KIT_HOSTS.iter().map(|h| h.to_string()).collect()
}

fn credentials(ca: &CertificateAuthority, issued: &IssuedCertificate) -> Credentials {
    Credentials {
        ca_pem: ca.certificate_pem().to_owned(),
        certificate_pem: issued.certificate_pem.clone(),
        key_pem: issued.key_pem.clone(),
    }
}

/// A Raft message (a vote request with a high term: what an attacker
/// sends) from node `id`.
fn raft_from(id: &str) -> Envelope {
    let message = Message {
        cluster: crate::ids::cluster_number(AUTH_KIT_CLUSTER),
        from: node_number(id),
        to: node_number("server"),
        term: 1 << 40,
        body: Body::Vote(raft_core::VoteRequest {
            pre: false,
            last_index: 1 << 40,
            last_term: 1 << 40,
            transfer: true,
        }),
    };
    Envelope {
        cluster: message.cluster,
        from: Arc::from("127.0.0.1:1"),
        request: Request::Raft(message),
    }
}

/// Every request type, as a peer claiming `id` would send it.
fn probes(id: &str) -> Vec<Envelope> {
    let cluster = crate::ids::cluster_number(AUTH_KIT_CLUSTER);
    let envelope = |request| Envelope {
        cluster,
        from: Arc::from("127.0.0.1:1"),
        request,
    };
    vec![
        envelope(Request::Hello),
        raft_from(id),
        envelope(Request::Command(Bytes::from_static(b"SET k stranger"))),
        envelope(Request::Read(Bytes::from_static(b"GET k"))),
        envelope(Request::Join {
            address: "127.0.0.1:1".into(),
        }),
        envelope(Request::Leave {
            id: "server".into(),
        }),
    ]
}
