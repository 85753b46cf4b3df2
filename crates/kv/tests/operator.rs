//! raft-kv as an operator meets it: flags that are wrong or no longer do
//! anything, a data directory that is not one, a start that fails, logs in
//! a file, errors that name nodes, a node that was removed, and which
//! peers a follower sees up. Real `raft-kv serve` processes.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use raft_kv::serve::{Listener, StartErrorKind};
use redis::Value;

/// Runs `raft-kv` with `args` until it exits (it must, within 20 s);
/// its exit code and stderr.
fn run_to_exit(args: &[String]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().expect("piped").read_to_string(&mut err);
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("raft-kv {args:?} did not exit within 20 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The exit code of `raft-kv serve` for a start that failed so.
fn exit(kind: StartErrorKind) -> i32 {
    i32::from(kind.exit_code())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `args` with the flag `name` and its value taken out.
fn without(args: &[String], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if a == name {
            skip = true;
        } else {
            out.push(a.clone());
        }
    }
    out
}

/// `args` with the value of the flag `name` replaced (or the flag added).
fn with(args: &[String], name: &str, value: &str) -> Vec<String> {
    let mut out = without(args, name);
    out.push(name.into());
    out.push(value.into());
    out
}

/// The names in a directory, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn raft_status(node: &Node) -> serde_json::Value {
    let mut con = node.conn();
    let v = q(&mut con, &["RAFT.STATUS"]);
    serde_json::from_str(&text(&v)).expect("RAFT.STATUS is JSON")
}

#[test]
fn wrong_flags_are_refused_with_the_entry_or_flag_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let serve = |extra: &[&str]| {
        let mut args = strings(&["serve", "--insecure", "--data-dir", &data]);
        args.extend(strings(extra));
        run_to_exit(&args)
    };
    let (code, err) = serve(&[
        "--id",
        "n1",
        "--peer-addr",
        "127.0.0.1:7001",
        "--members",
        "n1=127.0.0.1:7001, n2=127.0.0.1:7002",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("\" n2=127.0.0.1:7002\"") && err.contains("whitespace"),
        "{err}"
    );
    let (code, err) = serve(&[
        "--id",
        "n1",
        "--peer-addr",
        "127.0.0.1:7001",
        "--members",
        "n1=127.0.0.1:7001,n2=127.0.0.1:7001",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("'n1' and 'n2' have the same address 127.0.0.1:7001"),
        "{err}"
    );
    let (code, err) = serve(&["--heartbeat-ms", "200"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim(),
        "raft-kv serve: --heartbeat-ms 200 must be shorter than --election-timeout-min-ms (150, the default)"
    );
    assert!(!Path::new(&data).exists(), "a refused start made {data}");
}

#[test]
fn a_data_dir_that_is_a_file_is_named_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let shown = file.display().to_string();
    let ports = free_ports(2);
    let (code, err) = run_to_exit(&strings(&[
        "serve",
        "--insecure",
        "--data-dir",
        &shown,
        "--peer-addr",
        &format!("127.0.0.1:{}", ports[0]),
        "--client-addr",
        &format!("127.0.0.1:{}", ports[1]),
    ]));
    assert_eq!(code, Some(exit(StartErrorKind::DataDirUnusable)), "{err}");
    assert!(
        err.contains(&format!("--data-dir {shown} is a file, not a directory")),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");
    let below = file.join("data").display().to_string();
    let (_, err) = run_to_exit(&strings(&[
        "serve",
        "--insecure",
        "--data-dir",
        &below,
        "--client-addr",
        &format!("127.0.0.1:{}", ports[1]),
    ]));
    assert!(
        err.contains(&format!(
            "--data-dir {below}: {shown} is a file, not a directory"
        )),
        "{err}"
    );
}

#[test]
fn a_failed_first_start_leaves_nothing_behind_and_an_existing_store_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    // Ports taken by this test: one for the clients, one for the peers.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let ports = free_ports(2);
    let peer = format!("127.0.0.1:{}", ports[0]);
    let client = format!("127.0.0.1:{}", ports[1]);
    let args = |data: &Path, peer: &str, client: &str| {
        strings(&[
            "serve",
            "--insecure",
            "--id",
            "n1",
            "--data-dir",
            &data.display().to_string(),
            "--peer-addr",
            peer,
            "--client-addr",
            client,
        ])
    };

    // A data directory that did not exist: its client port is taken.
    let fresh = dir.path().join("new").join("data");
    let (code, err) = run_to_exit(&args(&fresh, &peer, &taken_addr));
    assert_eq!(code, Some(exit(StartErrorKind::AddressInUse)), "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen for clients on {taken_addr} (--client-addr): "
        )) && err.contains("in use"),
        "{err}"
    );
    assert!(
        !dir.path().join("new").exists(),
        "left behind: {:?}",
        entries(&fresh)
    );

    // An empty data directory: its peer port is taken (the store is open
    // by then).
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, err) = run_to_exit(&args(&empty, &taken_addr, &client));
    assert_eq!(code, Some(exit(StartErrorKind::AddressInUse)), "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen for peers on {taken_addr} (--peer-addr): address in use"
        )),
        "{err}"
    );
    assert_eq!(entries(&empty), Vec::<String>::new(), "left behind");

    // A store that exists is never removed when a start fails.
    let mut node = Cluster::single(&["--insecure"]);
    let mut con = node.conn(0);
    // A new node answers LOADING until it has founded the cluster's users.
    eventually(EVENTUALLY, "the first write", || {
        cmd(&["SET", "k", "v"]).query::<Value>(&mut con).ok()
    });
    drop(con);
    node.nodes[0].terminate();
    let data = node.nodes[0].data_dir.clone();
    let before = entries(&data);
    let restart = with(&node.nodes[0].args, "--client-addr", &taken_addr);
    let (code, err) = run_to_exit(&restart);
    assert_eq!(code, Some(exit(StartErrorKind::AddressInUse)), "{err}");
    assert_eq!(entries(&data), before);
    node.nodes[0].start();
    let mut con = node.conn(0);
    let got = eventually(EVENTUALLY, "the read after the restart", || {
        cmd(&["GET", "k"]).query::<Value>(&mut con).ok()
    });
    assert_eq!(got, bulk("v"));
    drop(taken);
}

#[test]
fn each_listener_whose_address_is_in_use_exits_with_that_code() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs_args(&new_ca(), "busy", "n1", dir.path(), &[]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    for (i, listener) in [
        Listener::Client,
        Listener::Tls,
        Listener::Admin,
        Listener::Peer,
    ]
    .into_iter()
    .enumerate()
    {
        let data = dir.path().join(format!("data-{i}"));
        let ports: Vec<String> = free_ports(4)
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut args = strings(&[
            "serve",
            "--id",
            "n1",
            "--cluster",
            "busy",
            "--data-dir",
            &data.display().to_string(),
            "--peer-addr",
            &ports[0],
            "--client-addr",
            &ports[1],
            "--tls-addr",
            &ports[2],
            "--admin-addr",
            &ports[3],
        ]);
        args.extend(certs.iter().cloned());
        let flag = match listener {
            Listener::Client => "--client-addr",
            Listener::Tls => "--tls-addr",
            Listener::Admin => "--admin-addr",
            Listener::Peer => "--peer-addr",
        };
        let (code, err) = run_to_exit(&with(&args, flag, &taken_addr));
        assert_eq!(
            code,
            Some(exit(StartErrorKind::AddressInUse)),
            "{listener:?}: {err}"
        );
        let said = format!(
            "raft-kv serve: cannot listen for {} on {taken_addr} ({}): ",
            listener.what(),
            listener.flag()
        );
        assert!(err.contains(&said), "{listener:?}: {said:?} in {err}");
        assert!(!data.exists(), "{listener:?}: a failed start left {data:?}");
    }
    drop(taken);
}

#[test]
fn serve_help_and_the_readme_list_the_exit_codes() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .expect("run raft-kv serve --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let table = raft_kv::serve::exit_codes_help();
    assert!(help.contains(&table), "{table}\nnot in\n{help}");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("read the README");
    for line in table.lines().skip(1) {
        let (code, meaning) = line.trim().split_once("  ").expect("code  meaning");
        let row = format!("| {code} | {meaning} |");
        assert!(readme.contains(&row), "the README has no row {row:?}");
    }
}

#[test]
fn logs_written_to_a_file_have_no_colour_codes() {
    let mut c = Cluster::single(&["--insecure"]);
    let info_args = with(&c.nodes[0].args, "--log-level", "info");
    c.nodes[0].terminate();
    c.nodes[0].args = info_args;
    c.nodes[0].start();
    eventually(EVENTUALLY, "the serving line in the log", || {
        let log = std::fs::read_to_string(c.nodes[0].log_path()).unwrap_or_default();
        log.contains("serving").then_some(())
    });
    let log = std::fs::read(c.nodes[0].log_path()).unwrap();
    assert!(
        !log.contains(&0x1b),
        "ANSI escape codes in a log file:\n{}",
        String::from_utf8_lossy(&log)
    );
}

#[test]
fn the_cluster_name_is_kept_and_member_flags_are_checked_against_the_stored_state() {
    let mut c = Cluster::start(3, &[]);
    c.wait_leader();
    let name = c.name.clone();
    for node in &mut c.nodes {
        node.terminate();
    }
    let n1 = &mut c.nodes[0];
    let founded = n1.args.clone();

    // Another cluster name than the one kept: refused, naming both.
    let (code, err) = run_to_exit(&with(&founded, "--cluster", "other"));
    assert_eq!(code, Some(exit(StartErrorKind::DataDirMismatch)), "{err}");
    assert!(
        err.contains(&format!(
            "--cluster other does not match the cluster {name} kept in"
        )),
        "{err}"
    );
    // Another member list: refused, saying what the node holds.
    let members = format!("n1={},n2=127.0.0.1:1,n9=127.0.0.1:2", n1.peer_addr.clone());
    let (code, err) = run_to_exit(&with(&founded, "--members", &members));
    assert_eq!(code, Some(exit(StartErrorKind::DataDirMismatch)), "{err}");
    assert!(
        err.contains("does not match this node's state")
            && err.contains(&format!("holds node n1 of cluster {name}"))
            && err.contains("founded with n1="),
        "{err}"
    );
    // --join on a node that holds state: a warning that says so.
    let joining = with(&without(&founded, "--members"), "--join", "127.0.0.1:1");
    n1.args = without(&joining, "--cluster");
    n1.start();
    let log = std::fs::read_to_string(n1.log_path()).unwrap();
    assert!(
        log.contains("--join 127.0.0.1:1 is ignored"),
        "no word on --join:\n{log}"
    );
    n1.terminate();
    // A restart without --cluster: the kept name (its certificate names it).
    n1.args = without(&founded, "--cluster");
    n1.start();
    for i in 1..3 {
        c.nodes[i].start();
    }
    c.wait_leader();
    let status = raft_status(&c.nodes[0]);
    assert_eq!(status["cluster"], name.as_str());
    let mut con = c.conn(0);
    assert_eq!(q(&mut con, &["SET", "after", "restart"]), Value::Okay);
}

#[test]
fn errors_name_nodes_by_their_ids() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader();
    let mut con = c.conn(leader);
    let err = expect_err(&mut con, &cmd(&["RAFT.TRANSFER", "n9"]));
    assert_eq!(
        err,
        "ERR leadership transfer refused: n9 is not a voter of the current configuration"
    );
    let err = expect_err(&mut con, &cmd(&["RAFT.LEAVE", "n9"]));
    assert_eq!(
        err,
        "ERR membership change refused: node n9 is not a member"
    );
    let number = raft_node::node_number("n9").to_string();
    assert!(!err.contains(&number));
}

#[test]
fn a_removed_node_says_so_and_writes_nothing() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader();
    let gone = c.followers(leader)[0];
    let gone_id = c.node(gone).id.clone();
    let mut gcon = c.conn(gone);
    assert_eq!(q(&mut gcon, &["SET", "before", "1"]), Value::Okay);
    let mut lcon = c.conn(leader);
    assert_eq!(q(&mut lcon, &["RAFT.LEAVE", &gone_id]), Value::Okay);

    let err = expect_err(&mut gcon, &cmd(&["SET", "after", "x"]));
    assert!(
        err.starts_with("ERR this node was removed from the cluster")
            && err.ends_with("; stop it, or add it again as a new, empty node"),
        "{err}"
    );
    let info = eventually(EVENTUALLY, "the removal index in INFO", || {
        let info = text(&q(&mut gcon, &["INFO", "raft"]));
        field(&info, "raft_removed_index")
            .is_some_and(|i| !i.is_empty())
            .then_some(info)
    });
    assert_eq!(field(&info, "raft_removed").as_deref(), Some("1"), "{info}");
    let index = field(&info, "raft_removed_index").unwrap();
    let err = expect_err(&mut gcon, &cmd(&["SET", "after", "x"]));
    assert_eq!(
        err,
        format!(
            "ERR this node was removed from the cluster at index {index}; stop it, or add it again as a new, empty node"
        )
    );
    let err = expect_err(&mut gcon, &cmd(&["GET", "before"]));
    assert!(err.contains("removed from the cluster"), "{err}");
    let status = raft_status(c.node(gone));
    assert_eq!(status["removed"], true);
    assert_eq!(status["removed_index"].to_string(), index);
    let log = std::fs::read_to_string(c.node(gone).log_path()).unwrap();
    assert!(
        log.contains("this node was removed from the cluster"),
        "not in its log:\n{log}"
    );
    // The write it refused is nowhere; the others serve on.
    for i in c.running() {
        if i == gone {
            continue;
        }
        let mut con = c.conn(i);
        assert_eq!(q(&mut con, &["GET", "after"]), Value::Nil);
        assert_eq!(q(&mut con, &["GET", "before"]), bulk("1"));
        let info = text(&q(&mut con, &["INFO", "raft"]));
        assert_eq!(field(&info, "raft_removed").as_deref(), Some("0"));
    }
    assert_eq!(q(&mut lcon, &["SET", "later", "1"]), Value::Okay);
}

#[test]
fn a_follower_sees_a_killed_peer_disconnected_within_an_election_timeout() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader();
    let followers = c.followers(leader);
    let (watcher, dying) = (followers[0], followers[1]);
    let dying_id = c.node(dying).id.clone();
    let connected = |c: &Cluster| {
        raft_status(c.node(watcher))["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .find(|p| p["id"] == dying_id.as_str())
            .map(|p| p["connected"] == true)
    };
    eventually(EVENTUALLY, "the other follower shown connected", || {
        (connected(&c) == Some(true)).then_some(())
    });
    c.nodes[dying].kill();
    let killed = Instant::now();
    eventually(EVENTUALLY, "the killed follower shown disconnected", || {
        (connected(&c) == Some(false)).then_some(())
    });
    // The tests' election timeout is 100-200 ms; a status round trip and
    // a loaded machine get some slack.
    assert!(
        killed.elapsed() < Duration::from_millis(1000),
        "shown connected for {:?} after it was killed",
        killed.elapsed()
    );
}

#[test]
fn a_follower_redirects_to_the_leaders_client_address() {
    let mut c = Cluster::start(3, &["--redirect"]);
    let leader = c.wait_leader();
    let follower = c.followers(leader)[0];
    let leader_client = c.node(leader).client_addr();
    let leader_peer = c.node(leader).peer_addr.clone();
    // The follower knows where the leader's clients connect.
    let info = eventually(
        EVENTUALLY,
        "the leader's client address on a follower",
        || {
            let info = raft_info(c.node(follower), None)?;
            (field(&info, "raft_leader_client_address")? == leader_client).then_some(info)
        },
    );
    assert_eq!(
        field(&info, "raft_leader_address").as_deref(),
        Some(leader_peer.as_str())
    );
    assert_eq!(
        raft_status(c.node(follower))["leader"]["client_address"],
        leader_client.as_str()
    );
    // A write on the follower: a redirect naming that address, never the
    // peer address.
    let mut raw = Raw::connect(&c.node(follower).client_addr());
    raw.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nmoved\r\n");
    assert_eq!(raw.read_lines(1), format!("-MOVED 0 {leader_client}\r\n"));
    // A read is served where it is asked.
    let mut fcon = c.conn(follower);
    assert_eq!(q(&mut fcon, &["GET", "k"]), Value::Nil);
    // redis-cli -c follows the redirect.
    let redirected = Command::new("redis-cli")
        .args(["-c", "-h", "127.0.0.1", "-p"])
        .arg(c.node(follower).client_port.to_string())
        .args(["SET", "k", "via-redis-cli"])
        .output();
    match redirected {
        Ok(out) => {
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                "OK",
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut lcon = c.conn(leader);
            assert_eq!(q(&mut lcon, &["GET", "k"]), bulk("via-redis-cli"));
        }
        Err(e) => eprintln!("redis-cli not run ({e}): the redirect was checked above"),
    }
}

#[test]
fn a_sigterm_right_after_the_ready_line_stops_the_node_cleanly() {
    // The signal handlers are installed before the node starts: a SIGTERM
    // sent the moment the ready line is printed ends the process with a
    // clean exit, never by the signal's default action.
    let mut c = Cluster::single(&["--insecure"]);
    for _ in 0..100 {
        c.nodes[0].terminate();
        c.nodes[0].start();
    }
    c.nodes[0].terminate();
}

/// An entry in the log format raft-kv wrote before its commands were
/// serde enums (format byte 0xD7): `SET legacy old-format`, then
/// `INCRBY counter 5`.
fn first_format_entry() -> Vec<u8> {
    let s = |b: &mut Vec<u8>, s: &[u8]| {
        b.extend_from_slice(&(s.len() as u32).to_le_bytes());
        b.extend_from_slice(s);
    };
    let mut e = vec![0xD7, 1, 0]; // SET, no flags
    s(&mut e, b"legacy");
    s(&mut e, b"old-format");
    e.push(3); // INCRBY
    s(&mut e, b"counter");
    e.extend_from_slice(&5i64.to_le_bytes());
    e
}

#[test]
fn an_entry_of_the_first_log_format_still_applies_after_an_upgrade() {
    let mut node = Cluster::single(&["--insecure"]);
    let mut con = node.conn(0);
    eventually(EVENTUALLY, "the first write", || {
        cmd(&["SET", "before", "1"]).query::<Value>(&mut con).ok()
    });
    drop(con);
    node.nodes[0].terminate();
    // Append the entry to the stopped node's log, as an older raft-kv
    // would have left it there, not yet applied.
    let store = node.nodes[0].data_dir.join("raft");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use raft_node::Persistence;
        let file = raft_node::FilePersistence::open(&store).await.unwrap();
        let state = file.load().await.unwrap().expect("a stored state");
        let last = state
            .entries
            .last()
            .map(|e| e.index)
            .into_iter()
            .chain(state.snapshot.as_ref().map(|s| s.meta.index))
            .max()
            .unwrap();
        let entry = raft_core::Entry {
            term: state.hard_state.term,
            index: last + 1,
            payload: raft_core::EntryPayload::Command(first_format_entry().into()),
        };
        file.save(raft_node::Change {
            entries: vec![entry],
            ..raft_node::Change::default()
        })
        .await
        .unwrap();
    });
    drop(rt);
    node.nodes[0].start();
    let mut con = node.conn(0);
    let got = eventually(EVENTUALLY, "the old entry applied", || {
        cmd(&["GET", "legacy"]).query::<Value>(&mut con).ok()
    });
    assert_eq!(got, bulk("old-format"));
    assert_eq!(
        cmd(&["GET", "counter"]).query::<Value>(&mut con).unwrap(),
        bulk("5")
    );
    assert_eq!(
        cmd(&["GET", "before"]).query::<Value>(&mut con).unwrap(),
        bulk("1")
    );
}
