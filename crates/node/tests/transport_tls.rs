//! The TCP transport with mutual TLS: the conformance kits (both the
//! transport kit and the authentication kit), what a stranger learns and
//! can do on the wire, a valid certificate used under another node's id, a
//! certificate for another host, a replayed connection, and reloads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use raft_core::{Body, Message};
use raft_node::testkit::authentication::AuthKit;
use raft_node::testkit::transport::Kit;
use raft_node::tls::{CertificateAuthority, TlsConfig, Validity};
use raft_node::transport::tcp::frame::{self, FrameDecoder, FrameKind, Hello, VERSION};
use raft_node::transport::{Envelope, Handler, Reply, Request, Transport, TransportError};
use raft_node::{node_number, TcpOptions, TcpTransport};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CLUSTER: &str = "cluster-bravo-tls";
const HOSTS: &[&str] = &["127.0.0.1", "localhost"];

fn hosts() -> Vec<String> {
    HOSTS.iter().map(|h| h.to_string()).collect()
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let address = listener.local_addr().expect("local address").to_string();
    drop(listener);
    address
}

fn new_ca() -> CertificateAuthority {
    CertificateAuthority::generate(Validity::days(2)).expect("a CA")
}

/// TLS for node `id` of `cluster`, its certificate from `ca`, trusting
/// `trusted` (PEM of one or more CA certificates).
fn tls_for(ca: &CertificateAuthority, trusted: &str, cluster: &str, id: &str) -> TlsConfig {
    let issued = ca
        .issue_node(cluster, id, &hosts(), Validity::days(1))
        .expect("a node certificate");
    TlsConfig::from_pem(
        trusted.as_bytes(),
        issued.certificate_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .expect("valid TLS material")
}

fn member(ca: &CertificateAuthority, id: &str) -> Arc<TcpTransport> {
    transport(id, tls_for(ca, ca.certificate_pem(), CLUSTER, id))
}

fn transport(id: &str, tls: TlsConfig) -> Arc<TcpTransport> {
    let mut options = TcpOptions::new(id, CLUSTER).with_tls(tls);
    options.request_timeout = Duration::from_secs(2);
    options.connect_timeout = Duration::from_secs(1);
    options.reconnect_backoff_max = Duration::from_millis(100);
    Arc::new(TcpTransport::new(options).expect("valid options"))
}

/// Records every request; answers reads with their payload.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Envelope>>,
    calls: AtomicUsize,
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, envelope: Envelope) -> Reply {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(envelope.clone());
        match envelope.request {
            Request::Read(payload) | Request::Command(payload) => Reply::Output(payload),
            Request::Hello => Reply::Hello {
                id: "server".into(),
                cluster: CLUSTER.into(),
                empty: false,
                client_address: String::new(),
            },
            _ => Reply::Ack,
        }
    }
}

async fn serve(t: &Arc<TcpTransport>) -> (String, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let address = t
        .listen("127.0.0.1:0", recorder.clone())
        .await
        .expect("listen");
    (address, recorder)
}

fn read(payload: &str) -> Envelope {
    Envelope {
        cluster: raft_node::cluster_number(CLUSTER),
        from: Arc::from(""),
        request: Request::Read(Bytes::from(payload.to_owned())),
    }
}

fn raft_from(id: &str, to: &str) -> Envelope {
    Envelope {
        cluster: raft_node::cluster_number(CLUSTER),
        from: Arc::from(""),
        request: Request::Raft(Message {
            cluster: raft_node::cluster_number(CLUSTER),
            from: node_number(id),
            to: node_number(to),
            term: u64::MAX,
            body: Body::TimeoutNow,
        }),
    }
}

// --- the kits ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_kit_over_tls() {
    let ca = Arc::new(new_ca());
    Kit::new(move |setup| {
        let ca = ca.clone();
        async move {
            let address = free_address();
            let tls = tls_for(&ca, ca.certificate_pem(), "kit", &setup.node_id);
            let mut options = TcpOptions::new(setup.node_id.clone(), "kit").with_tls(tls);
            options.request_timeout = setup.request_timeout;
            options.advertise = Some(address.clone());
            let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new(options).unwrap());
            (transport, address)
        }
    })
    .run_all()
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_kit() {
    AuthKit::new(|setup| async move {
        let mut options = TcpOptions::new(setup.node_id.clone(), setup.cluster.clone());
        options.request_timeout = setup.request_timeout;
        options.connect_timeout = Duration::from_millis(500);
        match &setup.credentials {
            Some(c) => {
                let tls = TlsConfig::from_pem(
                    c.ca_pem.as_bytes(),
                    c.certificate_pem.as_bytes(),
                    c.key_pem.as_bytes(),
                )
                .map_err(|e| TransportError::Other(e.to_string()))?;
                options = options.with_tls(tls);
            }
            None => options = options.insecure(),
        }
        let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new(options)?);
        Ok((transport, "127.0.0.1:0".to_string()))
    })
    .run_all()
    .await;
}

// --- what a stranger learns and can do ---

/// Reads everything the server sends until it closes (or 2 s pass).
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_speaking_the_plain_protocol_learns_nothing_and_reaches_nothing() {
    let ca = new_ca();
    let server = member(&ca, "node-alpha-7");
    let (address, recorder) = serve(&server).await;
    // The peer protocol's handshake, with the right cluster name, then a
    // Raft message with a huge term: what took a plaintext cluster down.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let hello = Hello {
        version: VERSION,
        max_frame: 1 << 20,
        max_in_flight: 16,
        cluster: CLUSTER.into(),
        node: "evil".into(),
        address: String::new(),
    };
    let mut bytes = hello.frame().to_vec();
    bytes.extend_from_slice(&frame::request_frame(1, &raft_from("evil", "node-alpha-7")).0);
    let _ = stream.write_all(&bytes).await;
    let answer = read_until_closed(&mut stream).await;
    assert!(!contains(&answer, CLUSTER), "the cluster's name leaked");
    assert!(!contains(&answer, "node-alpha-7"), "the node id leaked");
    assert!(
        answer.len() < 64,
        "a plain client got {} bytes back (a TLS alert at most)",
        answer.len()
    );
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 0);
    // The listener counts the failed handshake after closing the
    // connection: the client may see the close first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while server.stats().tls_handshake_failures == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(server.stats().tls_handshake_failures, 1);
    assert_eq!(server.stats().requests_received, 0);
}

/// A verifier that trusts anything and keeps what it was shown.
#[derive(Debug, Default)]
struct Gullible {
    shown: Mutex<Vec<CertificateDer<'static>>>,
}

impl rustls::client::danger::ServerCertVerifier for Gullible {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let mut shown = self.shown.lock().unwrap();
        shown.push(end_entity.clone().into_owned());
        shown.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        raft_node::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_without_a_certificate_sees_no_names_and_is_refused() {
    let ca = new_ca();
    let server = member(&ca, "node-alpha-7");
    let (address, recorder) = serve(&server).await;
    let gullible = Arc::new(Gullible::default());
    let config = rustls::ClientConfig::builder_with_provider(raft_node::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(gullible.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(&address).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    // TLS 1.3: the client learns it was refused on its first read.
    let outcome = async {
        let mut tls = connector.connect(name, tcp).await?;
        let hello = Hello {
            version: VERSION,
            max_frame: 1 << 20,
            max_in_flight: 16,
            cluster: CLUSTER.into(),
            node: "evil".into(),
            address: String::new(),
        };
        tls.write_all(&hello.frame()).await?;
        tls.flush().await?;
        let mut buf = vec![0u8; 1024];
        let n = tls.read(&mut buf).await?;
        Ok::<_, std::io::Error>(buf[..n].to_vec())
    };
    let result = tokio::time::timeout(Duration::from_secs(3), outcome)
        .await
        .expect("the server answers or closes");
    match &result {
        Ok(bytes) => assert!(bytes.is_empty(), "the server answered: {bytes:?}"),
        Err(e) => assert!(
            e.to_string().contains("CertificateRequired") || e.kind() != std::io::ErrorKind::Other,
            "{e}"
        ),
    }
    // What it saw of the server's certificate names neither the cluster nor
    // the node.
    let shown = gullible.shown.lock().unwrap().clone();
    assert!(!shown.is_empty(), "the server showed its certificate");
    for cert in &shown {
        assert!(!contains(cert.as_ref(), CLUSTER));
        assert!(!contains(cert.as_ref(), "node-alpha-7"));
    }
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 0);
    assert_eq!(server.stats().requests_received, 0);
}

/// A TLS client with `tls`'s material that claims to be `claimed` in its
/// handshake: what the listener answers (the frames until it closes).
async fn claim(address: &str, ca: &CertificateAuthority, cert_for: &str, claimed: &str) -> String {
    let issued = ca
        .issue_node(CLUSTER, cert_for, &hosts(), Validity::days(1))
        .unwrap();
    let roots = raft_node::tls::root_store(
        &raft_node::tls::read_certificates(ca.certificate_pem().as_bytes(), "ca").unwrap(),
        "ca",
    )
    .unwrap()
    .0;
    let mut config = rustls::ClientConfig::builder_with_provider(raft_node::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            raft_node::tls::read_certificates(issued.certificate_pem.as_bytes(), "cert").unwrap(),
            raft_node::tls::read_private_key(issued.key_pem.as_bytes(), "key").unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![raft_node::tls::ALPN_PROTOCOL.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(address).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("a valid certificate passes the TLS handshake");
    let hello = Hello {
        version: VERSION,
        max_frame: 1 << 20,
        max_in_flight: 16,
        cluster: CLUSTER.into(),
        node: claimed.into(),
        address: String::new(),
    };
    let mut bytes = hello.frame().to_vec();
    bytes.extend_from_slice(&frame::request_frame(1, &raft_from(claimed, "server")).0);
    tls.write_all(&bytes).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = BytesMut::new();
    let decoder = FrameDecoder::new(1 << 20);
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        while let Ok(Some(f)) = decoder.decode(&mut buf) {
            frames.push(match f.kind {
                FrameKind::Close => format!("close: {}", frame::decode_close(&f.payload)),
                other => format!("{other:?}"),
            });
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, tls.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    frames.join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_certificate_used_under_another_id_is_refused() {
    let ca = new_ca();
    let server = member(&ca, "server");
    let (address, recorder) = serve(&server).await;
    let answer = claim(&address, &ca, "n2", "n5").await;
    assert!(
        answer.starts_with("close: your certificate does not name node \"n5\""),
        "{answer}"
    );
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 0);
    assert_eq!(server.stats().identity_mismatches, 1);
    // The same certificate under its own id is a member.
    let answer = claim(&address, &ca, "n2", "n2").await;
    assert!(answer.starts_with("Hello"), "{answer}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_speaks_only_for_itself() {
    let ca = new_ca();
    let server = member(&ca, "server");
    let (address, recorder) = serve(&server).await;
    let client = member(&ca, "n2");
    let connection = client.connect(&address).await.unwrap();
    assert_eq!(
        connection.invoke(raft_from("n2", "server")).await,
        Ok(Reply::Ack)
    );
    let forged = connection.invoke(raft_from("n3", "server")).await;
    assert!(forged.is_err(), "{forged:?}");
    assert_eq!(server.stats().sender_mismatches, 1);
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    // The connection comes back for honest messages.
    let again = connection.invoke(raft_from("n2", "server")).await;
    assert_eq!(again, Ok(Reply::Ack));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_is_refused_by_the_dialer() {
    let ca = new_ca();
    let issued = ca
        .issue_node(CLUSTER, "server", &["10.9.9.9".into()], Validity::days(1))
        .unwrap();
    let tls = TlsConfig::from_pem(
        ca.certificate_pem().as_bytes(),
        issued.certificate_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .unwrap();
    let server = transport("server", tls);
    let (address, recorder) = serve(&server).await;
    let client = member(&ca, "n2");
    let error = client.connect(&address).await.err().expect("refused");
    assert!(
        error
            .to_string()
            .contains("not valid for the address dialed"),
        "{error}"
    );
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 0);
    assert_eq!(client.stats().tls_handshake_failures, 1);
}

#[test]
fn a_transport_refuses_a_certificate_that_names_another_node() {
    let ca = new_ca();
    let tls = tls_for(&ca, ca.certificate_pem(), CLUSTER, "n1");
    let e = TcpTransport::new(TcpOptions::new("n2", CLUSTER).with_tls(tls.clone())).unwrap_err();
    assert!(
        e.to_string().contains("not for node \"n2\" of cluster"),
        "{e}"
    );
    let e = TcpTransport::new(TcpOptions::new("n1", "other").with_tls(tls)).unwrap_err();
    assert!(e.to_string().contains("not for node"), "{e}");
}

// --- replay ---

/// Relays one connection to `target`, keeping what the client sent.
async fn recording_proxy(target: String) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let keep = recorded.clone();
    tokio::spawn(async move {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let server = TcpStream::connect(&target).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let up = async move {
            let mut buf = [0u8; 16384];
            while let Ok(n) = cr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                keep.lock().unwrap().extend_from_slice(&buf[..n]);
                if sw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        };
        let down = async move {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
        };
        tokio::join!(up, down);
    });
    (address, recorded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_connection_does_nothing() {
    let ca = new_ca();
    let server = member(&ca, "server");
    let (address, recorder) = serve(&server).await;
    let (proxy, recorded) = recording_proxy(address.clone()).await;
    // The proxy's address is 127.0.0.1 too: the certificate's host matches.
    let client = member(&ca, "n2");
    let connection = client.connect(&proxy).await.unwrap();
    let reply = connection.invoke(read("INCR counter")).await.unwrap();
    assert_eq!(reply, Reply::Output(Bytes::from_static(b"INCR counter")));
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 1);
    connection.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let captured = recorded.lock().unwrap().clone();
    assert!(captured.len() > 100, "captured {} bytes", captured.len());
    assert!(
        !contains(&captured, "INCR counter"),
        "the request went in clear"
    );
    for _ in 0..5 {
        let mut replay = TcpStream::connect(&address).await.unwrap();
        let _ = replay.write_all(&captured).await;
        let _ = read_until_closed(&mut replay).await;
    }
    assert_eq!(
        recorder.calls.load(Ordering::SeqCst),
        1,
        "a replay reached the handler"
    );
    assert!(server.stats().tls_handshake_failures >= 5);
}

// --- reloads ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rotates_the_ca_and_cuts_off_what_it_no_longer_trusts() {
    let old = new_ca();
    let new = new_ca();
    let bundle = format!("{}{}", old.certificate_pem(), new.certificate_pem());
    let server = member(&old, "server");
    let (address, recorder) = serve(&server).await;
    let veteran = member(&old, "n2");
    let connection = veteran.connect(&address).await.unwrap();
    assert!(connection.invoke(read("before")).await.is_ok());

    // Step 1: trust both CAs, keep the old certificate: nothing is cut.
    let both = tls_for(&old, &bundle, CLUSTER, "server");
    assert_eq!(server.reload_tls(both).unwrap(), 0);
    assert!(connection.invoke(read("during")).await.is_ok());
    // A node with a certificate from the new CA (trusting both) joins in.
    let newcomer = transport("n3", tls_for(&new, &bundle, CLUSTER, "n3"));
    let fresh = newcomer.connect(&address).await.unwrap();
    assert!(fresh.invoke(read("newcomer")).await.is_ok());

    // Step 2: the server moves to a new certificate and trusts only the
    // new CA: the veteran's connection (old certificate) is closed.
    let only_new = tls_for(&new, new.certificate_pem(), CLUSTER, "server");
    assert_eq!(server.reload_tls(only_new).unwrap(), 1);
    assert_eq!(server.stats().closed_by_reload, 1);
    assert!(connection.invoke(read("after")).await.is_err());
    // Its reconnection is refused; the newcomer goes on.
    assert!(connection.invoke(read("after, again")).await.is_err());
    assert!(fresh.invoke(read("newcomer after")).await.is_ok());
    let seen: Vec<String> = recorder
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| match &e.request {
            Request::Read(p) => String::from_utf8_lossy(p).into_owned(),
            _ => String::new(),
        })
        .collect();
    assert_eq!(seen, ["before", "during", "newcomer", "newcomer after"]);

    // A reload for another node's certificate is refused and changes
    // nothing.
    let wrong = tls_for(&new, new.certificate_pem(), CLUSTER, "n9");
    let e = server.reload_tls(wrong).unwrap_err();
    assert!(e.to_string().contains("not for node \"server\""), "{e}");
    assert!(fresh.invoke(read("still")).await.is_ok());
    assert_eq!(server.stats().tls_reloads, 2);
}

#[test]
fn an_insecure_transport_cannot_be_reloaded_into_tls() {
    let ca = new_ca();
    let t = TcpTransport::new(TcpOptions::new("n1", CLUSTER).insecure()).unwrap();
    let e = t
        .reload_tls(tls_for(&ca, ca.certificate_pem(), CLUSTER, "n1"))
        .unwrap_err();
    assert!(e.to_string().contains("without TLS"), "{e}");
    let _ = SystemTime::now();
}

// --- bounds before authentication ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_their_handshake_cost_bounded_resources() {
    let ca = new_ca();
    let mut options = TcpOptions::new("server", CLUSTER).with_tls(tls_for(
        &ca,
        ca.certificate_pem(),
        CLUSTER,
        "server",
    ));
    options.connect_timeout = Duration::from_millis(500);
    options.max_pending_handshakes = 8;
    let server = Arc::new(TcpTransport::new(options).unwrap());
    let (address, recorder) = serve(&server).await;
    // 50 connections that say nothing: 8 wait for their handshake, the
    // rest are closed at once.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(&address).await.unwrap());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while server.stats().handshakes_shed < 42 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            server.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.stats().handshakes_shed, 42);
    // Once the idle ones time out, a member gets in.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let member = member(&ca, "n2");
    let connection = member.connect(&address).await.unwrap();
    assert!(connection.invoke(read("after the flood")).await.is_ok());
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 1);
    drop(idle);
}
