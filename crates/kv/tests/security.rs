//! raft-kv's security on real processes: TLS between nodes (or an explicit
//! `--insecure`) is required; a stranger on a peer port (a raw socket
//! speaking the peer protocol, a `raft-kv serve` with its own CA) can
//! neither read, write, join, remove nor change any node's term; a replayed
//! connection does nothing; a node's certificate serves only that node;
//! certificates rotate with SIGHUP while the cluster keeps serving;
//! clients speak TLS on `--tls-port` (redis-cli --tls too); the admin
//! endpoint serves HTTPS.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use raft_node::tls::{CertificateAuthority, Validity};
use raft_node::transport::tcp::frame::{self, Hello, VERSION};
use raft_node::transport::{Envelope, Request};
use redis::Value;

fn members(con: &mut redis::Connection) -> Vec<String> {
    let status = text(&q(con, &["RAFT.STATUS"]));
    let json: serde_json::Value = serde_json::from_str(&status).expect("RAFT.STATUS is JSON");
    let mut ids: Vec<String> = json["peers"]
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .filter_map(|p| p["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.push(json["id"].as_str().unwrap_or_default().to_string());
    ids.sort();
    ids
}

fn term(node: &Node) -> u64 {
    raft_info(node, None)
        .and_then(|i| field(&i, "raft_term"))
        .and_then(|t| t.parse().ok())
        .expect("a term")
}

fn serve_output(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("RAFT_KV_REQUIREPASS")
        .stdin(Stdio::null())
        .output()
        .expect("run raft-kv");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tls_between_nodes_is_required_unless_insecure_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, stderr) = serve_output(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--client-addr",
        "127.0.0.1:0",
        "--peer-addr",
        "127.0.0.1:0",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("no TLS between nodes") && stderr.contains("--insecure"),
        "{stderr}"
    );
    assert!(!data.exists(), "a refused start left {data:?} behind");

    let mut c = Cluster::single(&["--insecure"]);
    let log = std::fs::read_to_string(c.node(0).log_path()).unwrap();
    assert!(log.contains("RUNNING WITHOUT TLS BETWEEN NODES"), "{log}");
    assert_eq!(
        field(&info(c.node(0), "tls").unwrap(), "tls_peers").as_deref(),
        Some("off")
    );
    c.node_mut(0).terminate();

    let c = Cluster::single(&[]);
    assert_eq!(
        field(&info(c.node(0), "tls").unwrap(), "tls_peers").as_deref(),
        Some("mutual")
    );
}

/// What a stranger sends: the peer protocol's handshake with the right
/// cluster name, then a vote with the highest term, a leave, a join and a
/// write, as a node would.
fn stranger_bytes(cluster: &str) -> Vec<u8> {
    let cluster_number = raft_node::cluster_number(cluster);
    let hello = Hello {
        version: VERSION,
        max_frame: 1 << 20,
        max_in_flight: 16,
        cluster: cluster.into(),
        node: "evil".into(),
        address: String::new(),
    };
    let envelope = |request| Envelope {
        cluster: cluster_number,
        from: Arc::from("127.0.0.1:1"),
        request,
    };
    let vote = raft_core::Message {
        cluster: cluster_number,
        from: raft_node::node_number("evil"),
        to: raft_node::node_number("n1"),
        term: u64::MAX,
        body: raft_core::Body::Vote(raft_core::VoteRequest {
            pre: false,
            last_index: u64::MAX,
            last_term: u64::MAX,
            transfer: true,
        }),
    };
    let write = raft_kv::store::encode_writes(&[raft_kv::store::Write::Set {
        key: Bytes::from_static(b"k"),
        value: Bytes::from_static(b"stranger"),
        condition: raft_kv::store::SetCondition::Always,
        get: false,
        ttl: Default::default(),
    }]);
    let mut bytes = hello.frame().to_vec();
    for (id, request) in [
        Request::Raft(vote),
        Request::Leave { id: "n2".into() },
        Request::Join {
            address: "127.0.0.1:1".into(),
        },
        Request::Command(write),
        Request::Read(raft_kv::store::encode_reads(&[raft_kv::store::Read::Get {
            key: Bytes::from_static(b"k"),
        }])),
        Request::Hello,
    ]
    .into_iter()
    .enumerate()
    {
        bytes.extend_from_slice(&frame::request_frame(id as u64 + 1, &envelope(request)).0);
    }
    bytes
}

/// Sends `bytes` to `addr` and reads what comes back until it closes.
fn poke(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(bytes);
    let mut back = Vec::new();
    let _ = s.read_to_end(&mut back);
    back
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_stranger_on_a_peer_port_can_do_nothing() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader();
    let mut con = c.conn(leader);
    assert_eq!(q(&mut con, &["SET", "k", "mine"]), Value::Okay);
    let before: Vec<u64> = (0..3).map(|i| term(c.node(i))).collect();
    let cluster = c.name.clone();
    for i in 0..3 {
        let back = poke(&c.node(i).peer_addr, &stranger_bytes(&cluster));
        assert!(
            !contains(&back, &cluster),
            "node {i} told its cluster's name"
        );
        assert!(!contains(&back, &c.node(i).id), "node {i} told its id");
        assert!(back.len() < 64, "node {i} answered {} bytes", back.len());
    }
    thread::sleep(Duration::from_millis(500));
    let after: Vec<u64> = (0..3).map(|i| term(c.node(i))).collect();
    assert_eq!(before, after, "a term changed");
    assert_eq!(members(&mut con), ["n1", "n2", "n3"]);
    for i in 0..3 {
        let mut con = c.conn(i);
        assert_eq!(q(&mut con, &["GET", "k"]), bulk("mine"));
        assert!(info_number(c.node(i), "tls", "tls_peer_handshake_failures") >= 1);
    }
    assert_eq!(q(&mut con, &["SET", "k", "still mine"]), Value::Okay);
}

#[test]
fn a_node_with_its_own_ca_can_neither_join_nor_be_added() {
    let mut c = Cluster::start(3, &["--command-timeout-ms", "1500"]);
    let leader = c.wait_leader();
    let mut lcon = c.conn(leader);
    assert_eq!(q(&mut lcon, &["SET", "k", "mine"]), Value::Okay);
    // A stranger with everything but a certificate from the cluster's CA:
    // the cluster's name, an id, and a CA and certificate of its own.
    let ours = std::mem::replace(&mut c.ca, new_ca());
    let via = c.node(leader).peer_addr.clone();
    let evil = c.start_joining("evil", &via);
    c.ca = ours;
    let evil_addr = c.node(evil).peer_addr.clone();
    let err = expect_err(&mut lcon, &cmd(&["RAFT.JOIN", "evil", &evil_addr]));
    assert!(err.contains("TLS handshake failed"), "{err}");
    thread::sleep(Duration::from_millis(500));
    assert_eq!(members(&mut lcon), ["n1", "n2", "n3"]);
    let log = std::fs::read_to_string(c.node(evil).log_path()).unwrap();
    assert!(log.contains("not signed by a trusted CA"), "{log}");
    // It never learns the cluster's users, so it serves nothing.
    let mut econ = c.conn(evil);
    let err = expect_err(&mut econ, &cmd(&["SET", "k", "theirs"]));
    assert!(
        err.starts_with("LOADING") || err.starts_with("CLUSTERDOWN") || err.starts_with("TIMEOUT"),
        "{err}"
    );
    for i in 0..3 {
        let mut con = c.conn(i);
        assert_eq!(q(&mut con, &["GET", "k"]), bulk("mine"));
    }
    assert!(info_number(c.node(leader), "tls", "tls_peer_handshake_failures") >= 1);
}

#[test]
fn a_nodes_certificate_serves_no_other_id() {
    let c = Cluster::single(&[]);
    let certs = c.certs_dir("n1");
    let dir = tempfile::tempdir().unwrap();
    let start_as = |id: &str, cluster: &str| {
        let data = dir.path().join(format!("{id}-{cluster}"));
        serve_output(&[
            "serve",
            "--id",
            id,
            "--cluster",
            cluster,
            "--certs-dir",
            certs.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--client-addr",
            "127.0.0.1:0",
            "--peer-addr",
            "127.0.0.1:0",
        ])
    };
    let (ok, stderr) = start_as("n5", &c.name);
    assert!(!ok);
    assert!(
        stderr.contains("is not this node's: it does not name node \"n5\""),
        "{stderr}"
    );
    // Another cluster's name with n1's certificate: refused too.
    let (ok, stderr) = start_as("n1", "elsewhere");
    assert!(!ok);
    assert!(stderr.contains("of cluster \"elsewhere\""), "{stderr}");
}

/// Relays every connection to `target`, keeping what clients sent (one
/// buffer per connection).
fn recording_proxy(target: String) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let keep = recorded.clone();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            let slot = {
                let mut all = keep.lock().unwrap();
                all.push(Vec::new());
                all.len() - 1
            };
            let (mut cr, mut sw) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut sr, mut cw) = (server, client);
            let keep = keep.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = cr.read(&mut buf) {
                    if n == 0 || sw.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    keep.lock().unwrap()[slot].extend_from_slice(&buf[..n]);
                }
                let _ = sw.shutdown(std::net::Shutdown::Write);
            });
            thread::spawn(move || {
                let _ = std::io::copy(&mut sr, &mut cw);
                let _ = cw.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (address, recorded)
}

#[test]
fn a_replayed_join_does_nothing() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader();
    let mut lcon = c.conn(leader);
    // n4 joins through a proxy that records what it sends (the proxy is on
    // 127.0.0.1 too, so the leader's certificate fits the address).
    let (proxy, recorded) = recording_proxy(c.node(leader).peer_addr.clone());
    let n4 = c.start_joining("n4", &proxy);
    eventually(EVENTUALLY, "n4 joins", || {
        members(&mut lcon).contains(&"n4".to_string()).then_some(())
    });
    assert_eq!(q(&mut lcon, &["RAFT.LEAVE", "n4"]), Value::Okay);
    eventually(EVENTUALLY, "n4 leaves", || {
        (!members(&mut lcon).contains(&"n4".to_string())).then_some(())
    });
    c.node_mut(n4).kill();
    let captured: Vec<Vec<u8>> = recorded.lock().unwrap().clone();
    assert!(!captured.is_empty() && captured.iter().any(|b| b.len() > 200));
    for bytes in &captured {
        assert!(
            !contains(bytes, &c.name),
            "the cluster's name went in clear"
        );
    }
    let failures = info_number(c.node(leader), "tls", "tls_peer_handshake_failures");
    for _ in 0..5 {
        for bytes in &captured {
            poke(&c.node(leader).peer_addr, bytes);
        }
    }
    thread::sleep(Duration::from_millis(500));
    assert_eq!(members(&mut lcon), ["n1", "n2", "n3"]);
    assert!(
        info_number(c.node(leader), "tls", "tls_peer_handshake_failures")
            >= failures + 5 * captured.len() as u64
    );
    assert_eq!(q(&mut lcon, &["SET", "after", "replay"]), Value::Okay);
}

fn sighup(node: &Node) {
    let pid = node.pid().expect("running");
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -HUP {pid}");
}

/// SIGHUPs every running node and waits until each has reloaded `n` times.
fn reload_all(c: &Cluster, n: u64) {
    for node in &c.nodes {
        if node.pid().is_some() {
            sighup(node);
        }
    }
    for node in &c.nodes {
        if node.pid().is_some() {
            eventually(EVENTUALLY, "every node reloads its certificates", || {
                (info_number(node, "tls", "tls_peer_reloads") >= n).then_some(())
            });
        }
    }
}

#[test]
fn certificates_rotate_with_sighup_while_the_cluster_serves() {
    let mut c = Cluster::start(3, &["--command-timeout-ms", "2000"]);
    c.wait_leader();
    let old_pem = c.ca.certificate_pem().to_string();
    let new = CertificateAuthority::generate(Validity::days(30)).unwrap();
    let bundle = format!("{old_pem}{}", new.certificate_pem());

    // A writer that keeps writing through every node in turn.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.url(None)).collect();
    let writer = {
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        thread::spawn(move || {
            let mut longest = Duration::ZERO;
            let mut last = Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let url = &addrs[(i % addrs.len() as u64) as usize];
                let done = redis::Client::open(url.as_str())
                    .and_then(|cl| cl.get_connection_with_timeout(Duration::from_secs(1)))
                    .and_then(|mut con| {
                        con.set_read_timeout(Some(Duration::from_secs(3)))?;
                        redis::cmd("INCR").arg("counter").query::<i64>(&mut con)
                    });
                if done.is_ok() {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                } else {
                    thread::sleep(Duration::from_millis(20));
                }
                i += 1;
            }
            longest.max(last.elapsed())
        })
    };
    let progress = |what: &str| {
        let seen = acknowledged.load(Ordering::Relaxed);
        eventually(EVENTUALLY, what, || {
            (acknowledged.load(Ordering::Relaxed) >= seen + 20).then_some(())
        });
    };
    progress("writes before the rotation");

    // 1. Every node trusts the old and the new CA.
    for node in &c.nodes {
        write_file(&c.certs_dir(&node.id).join("ca.crt"), &bundle);
    }
    reload_all(&c, 1);
    progress("writes after trusting both CAs");
    // 2. Every node gets a certificate from the new CA (the bundle stays).
    for node in &c.nodes {
        raft_kv::cert::make_node_dir(
            &new,
            &c.name,
            &node.id,
            &["127.0.0.1".into()],
            60,
            &c.certs_dir(&node.id),
        )
        .unwrap();
    }
    let before = info_number(c.node(0), "tls", "tls_peer_cert_not_after");
    reload_all(&c, 2);
    let after = info_number(c.node(0), "tls", "tls_peer_cert_not_after");
    assert!(after > before + 20 * 86400, "the new certificate is in use");
    progress("writes after the new certificates");
    // 3. The old CA is no longer trusted: connections made with old
    // certificates are cut, and made again with the new ones.
    for node in &c.nodes {
        write_file(&c.certs_dir(&node.id).join("ca.crt"), new.certificate_pem());
    }
    reload_all(&c, 3);
    let cut: u64 = c
        .nodes
        .iter()
        .map(|n| info_number(n, "tls", "tls_peer_closed_by_reload"))
        .sum();
    assert!(
        cut >= 1,
        "no connection made with an old certificate was cut"
    );
    progress("writes after dropping the old CA");
    // 4. A node restarted from scratch connects with its new certificate.
    let leader = c.wait_leader();
    let follower = c.followers(leader)[0];
    c.node_mut(follower).kill();
    c.node_mut(follower).start();
    progress("writes after a restart");
    stop.store(true, Ordering::Relaxed);
    let longest = writer.join().unwrap();
    assert!(
        longest < Duration::from_secs(5),
        "writes stopped for {longest:?} during the rotation"
    );
    let total = acknowledged.load(Ordering::Relaxed);
    let restarted = c.node(follower);
    eventually(EVENTUALLY, "the restarted node catches up", || {
        let mut con = restarted.try_conn(None).ok()?;
        let v: i64 = redis::cmd("GET").arg("counter").query(&mut con).ok()?;
        (v as u64 >= total).then_some(())
    });
    for node in &c.nodes {
        assert_eq!(info_number(node, "tls", "tls_peer_identity_mismatches"), 0);
    }
    // A node with a certificate from the old CA (the harness's CA) is a
    // stranger now.
    let via = c.node(leader).peer_addr.clone();
    let late = c.start_joining("late", &via);
    thread::sleep(Duration::from_secs(1));
    let mut lcon = c.conn(leader);
    assert!(!members(&mut lcon).contains(&"late".to_string()));
    c.node_mut(late).kill();
    drop(old_pem);
}

// --- clients over TLS ---

/// A rustls client configuration trusting `ca_pem`, with a client
/// certificate if given.
fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let ca = raft_node::tls::read_certificates(ca_pem.as_bytes(), "ca").unwrap();
    let (roots, _) = raft_node::tls::root_store(&ca, "ca").unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(raft_node::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                raft_node::tls::read_certificates(cert.as_bytes(), "cert").unwrap(),
                raft_node::tls::read_private_key(key.as_bytes(), "key").unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// Sends `request` over TLS to `port` and reads until `want` bytes came or
/// the server closed; the reply, or why it failed.
fn tls_exchange(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    request: &[u8],
    want: usize,
) -> Result<Vec<u8>, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request).map_err(|e| e.to_string())?;
    tls.flush().map_err(|e| e.to_string())?;
    let mut back = Vec::new();
    let mut buf = [0u8; 4096];
    while back.len() < want {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) if back.is_empty() => return Err(e.to_string()),
            Err(_) => break,
        }
    }
    Ok(back)
}

fn tools_present() -> bool {
    let present = Command::new("redis-cli")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !present && std::env::var("RAFT_KV_REDIS_TOOLS").as_deref() == Ok("required") {
        panic!("redis-cli not found on PATH, and RAFT_KV_REDIS_TOOLS=required");
    }
    present
}

fn redis_cli(args: &[&str]) -> (bool, String) {
    let out = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("Error"), text)
}

#[test]
fn clients_speak_tls_on_the_tls_port() {
    let port = free_ports(1)[0];
    let c = Cluster::single(&["--tls-port", &port.to_string()]);
    let node = c.node(0);
    // Once it knows the cluster's users (INFO waits out LOADING).
    assert!(info(node, "server").is_some());
    let dir = c.path().join("client");
    std::fs::create_dir_all(&dir).unwrap();
    let alice = c.ca.issue_client("alice", Validity::days(1)).unwrap();
    let (cert, key, ca) = (
        dir.join("alice.crt"),
        dir.join("alice.key"),
        dir.join("ca.crt"),
    );
    write_file(&cert, &alice.certificate_pem);
    write_file(&key, &alice.key_pem);
    write_file(&ca, c.ca.certificate_pem());
    let ca_pem = c.ca.certificate_pem().to_string();

    // With a client certificate: RESP as usual.
    let config = client_config(&ca_pem, Some((&alice.certificate_pem, &alice.key_pem)));
    let request = b"SET tls yes\r\nGET tls\r\nPING\r\n";
    let want = "+OK\r\n$3\r\nyes\r\n+PONG\r\n";
    let back = tls_exchange(port, config, request, want.len()).unwrap();
    assert_eq!(String::from_utf8_lossy(&back), want);
    // Without one (--tls-auth-clients yes, the default): refused.
    let bare = client_config(&ca_pem, None);
    let refused = tls_exchange(port, bare, b"PING\r\n", 7);
    assert!(
        refused.as_ref().map_or(true, |b| b.is_empty()),
        "{refused:?}"
    );
    // Plain RESP on the TLS port gets nothing.
    let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(b"PING\r\n").unwrap();
    let mut back = Vec::new();
    let _ = raw.read_to_end(&mut back);
    assert!(!contains(&back, "PONG"), "{back:?}");
    assert!(info_number(node, "tls", "tls_client_handshake_failures") >= 2);
    assert_eq!(
        field(&info(node, "tls").unwrap(), "tls_clients").as_deref(),
        Some("on")
    );
    // The plaintext port still serves (on loopback).
    let mut con = node.conn();
    assert_eq!(q(&mut con, &["GET", "tls"]), bulk("yes"));
    // A reply holding stored values as parts of its own (shared, not
    // copied) is written over TLS like any other.
    let big = "b".repeat(100_000);
    assert_eq!(q(&mut con, &["SET", "big", &big]), redis::Value::Okay);
    let want = format!("*3\r\n$100000\r\n{big}\r\n$3\r\nyes\r\n$100000\r\n{big}\r\n");
    let config = client_config(&ca_pem, Some((&alice.certificate_pem, &alice.key_pem)));
    let back = tls_exchange(port, config, b"MGET big tls big\r\n", want.len()).unwrap();
    assert!(back == want.as_bytes(), "{} bytes back", back.len());

    if !tools_present() {
        eprintln!("skipped the redis-cli part: redis-cli is not installed");
        return;
    }
    let p = port.to_string();
    let (cert, key, ca) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        ca.to_str().unwrap(),
    );
    let tls_args = [
        "-h",
        "127.0.0.1",
        "-p",
        &p,
        "--tls",
        "--cacert",
        ca,
        "--cert",
        cert,
        "--key",
        key,
    ];
    let (ok, out) = redis_cli(&[&tls_args[..], &["GET", "tls"]].concat());
    assert!(ok && out.trim() == "yes", "{out}");
    let (ok, out) = redis_cli(&["-h", "127.0.0.1", "-p", &p, "PING"]);
    assert!(!(ok && out.contains("PONG")), "plain redis-cli got {out}");
    let (ok, out) = redis_cli(&["-h", "127.0.0.1", "-p", &p, "--tls", "--cacert", ca, "PING"]);
    assert!(
        !(ok && out.contains("PONG")),
        "redis-cli without a certificate got {out}"
    );
    let out = Command::new("redis-benchmark")
        .args(&tls_args[..])
        .args(["-t", "set,get", "-n", "2000", "-c", "10", "-q"])
        .output()
        .expect("run redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SET:") && text.contains("GET:"), "{text}");
}

#[test]
fn the_admin_endpoint_serves_https_and_stays_on_loopback_without_it() {
    let port = free_ports(1)[0];
    let c = Cluster::single(&[
        "--admin-addr",
        &format!("127.0.0.1:{port}"),
        "--admin-tls",
        "--tls-auth-clients",
        "optional",
    ]);
    let config = client_config(c.ca.certificate_pem(), None);
    let back = tls_exchange(
        port,
        config,
        b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n",
        1 << 20,
    )
    .unwrap();
    let text = String::from_utf8_lossy(&back);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"role\""), "{text}");
    // Plain HTTP gets no status.
    let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut back = Vec::new();
    let _ = raw.read_to_end(&mut back);
    assert!(
        !contains(&back, "role"),
        "{}",
        String::from_utf8_lossy(&back)
    );
    // Off loopback, plain HTTP is refused at the start.
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = serve_output(&[
        "serve",
        "--certs-dir",
        "/nonexistent",
        "--admin-addr",
        "0.0.0.0:0",
        "--data-dir",
        dir.path().join("d").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("--admin-addr"), "{stderr}");
    let _ = Path::new("");
}

/// This machine's address on its way out (not loopback), if it has one.
fn outward_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn remote_clients_are_refused_while_the_default_user_has_no_password() {
    let Some(ip) = outward_address() else {
        eprintln!("skipped: this machine has no address but loopback");
        return;
    };
    let ports = free_ports(2);
    let (port, peer) = (ports[0], ports[1]);
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca();
    let mut args: Vec<String> = [
        "serve",
        "--id",
        "n1",
        "--client-addr",
        &format!("0.0.0.0:{port}"),
        "--peer-addr",
        &format!("127.0.0.1:{peer}"),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--log-level",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(certs_args(&ca, "raft-kv", "n1", dir.path(), &[]));
    let mut child = Command::new(BIN)
        .args(&args)
        .env_remove("RAFT_KV_REQUIREPASS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.contains("clients on"), "{line}");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    // Loopback clients are served (and see the default user as nopass).
    let local = || {
        let con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap();
        con.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        con
    };
    eventually(EVENTUALLY, "the users are founded", || {
        let mut con = local();
        redis::cmd("INFO")
            .arg("server")
            .query::<String>(&mut con)
            .ok()
    });
    let remote = format!("{ip}:{port}");
    let mut raw = TcpStream::connect(&remote).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = raw.write_all(b"SET k remote\r\n");
    let mut back = Vec::new();
    let _ = raw.read_to_end(&mut back);
    let text = String::from_utf8_lossy(&back);
    assert!(
        text.starts_with("-DENIED") && text.contains("protected mode"),
        "{text}"
    );
    // Once the default user has a password, remote clients may AUTH.
    let mut con = local();
    assert_eq!(
        q(&mut con, &["ACL", "SETUSER", "default", "on", ">s3cret"]),
        Value::Okay
    );
    let mut remote_con = redis::Client::open(format!("redis://:s3cret@{remote}/"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    assert_eq!(q(&mut remote_con, &["SET", "k", "remote"]), Value::Okay);
}
