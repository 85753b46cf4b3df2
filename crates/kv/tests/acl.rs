//! ACL users end to end: real `raft-kv serve` processes, users made with
//! ACL SETUSER and enforced on every node (one that joins later and has no
//! `--requirepass` included, and after restarts), passwords kept only as
//! hashes (in replies, the log and snapshots), Redis 7's errors.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use redis::Value;

const ADMIN_PASSWORD: &str = "admin-pw-1f3c";

/// Runs a command that must fail; the error as sent (`CODE detail`).
fn e(con: &mut redis::Connection, args: &[&str]) -> String {
    expect_err(con, &cmd(args))
}

/// A cluster of `n` with the default user's password, its leader elected
/// (and so its users founded); the leader's index.
fn cluster(n: usize, extra: &[&str]) -> (Cluster, usize) {
    let mut args = vec!["--requirepass", ADMIN_PASSWORD];
    args.extend_from_slice(extra);
    let mut c = Cluster::start(n, &args);
    let leader = c.wait_leader_among(&[], Some(ADMIN_PASSWORD));
    // Until the leader's init entry is applied, the nodes go by their own
    // --requirepass and ACL changes answer LOADING.
    let mut admin = c.node(leader).conn_with(Some(ADMIN_PASSWORD));
    eventually(EVENTUALLY, "the cluster's users to be founded", || {
        let reply = cmd(&["ACL", "DELUSER", "no-such-user"]).query::<Value>(&mut admin);
        (reply.ok()? == Value::Int(0)).then_some(())
    });
    (c, leader)
}

/// A connection authenticated as `user`.
fn login(node: &Node, user: &str, password: &str) -> redis::Connection {
    let mut con = node.conn();
    assert_eq!(q(&mut con, &["AUTH", user, password]), Value::Okay);
    con
}

/// The SHA-256 of `password` in hex, as Redis shows it.
fn sha256_hex(password: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(password.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn noperm_set(user: &str) -> String {
    format!("NOPERM User {user} has no permissions to run the 'set' command")
}

/// `name:` of INFO stats on `con`.
fn stat(con: &mut redis::Connection, name: &str) -> u64 {
    let info = text(&q(con, &["INFO", "stats"]));
    field(&info, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

#[test]
fn a_read_only_user_can_get_but_not_set() {
    let (c, leader) = cluster(1, &[]);
    let node = c.node(leader);
    let mut admin = node.conn_with(Some(ADMIN_PASSWORD));
    assert_eq!(q(&mut admin, &["SET", "k", "v"]), Value::Okay);
    assert_eq!(
        q(
            &mut admin,
            &["ACL", "SETUSER", "reader", "on", ">read-pw", "+@read", "~*"]
        ),
        Value::Okay
    );
    let mut reader = login(node, "reader", "read-pw");
    assert_eq!(q(&mut reader, &["GET", "k"]), bulk("v"));
    assert_eq!(
        q(&mut reader, &["MGET", "k", "x"]),
        Value::Array(vec![bulk("v"), Value::Nil])
    );
    assert_eq!(e(&mut reader, &["SET", "k", "w"]), noperm_set("reader"));
    // NOPERM comes before the command's own errors.
    assert_eq!(
        e(&mut reader, &["SET", "k", "w", "NX", "XX"]),
        noperm_set("reader")
    );
    assert_eq!(
        e(&mut reader, &["ACL", "WHOAMI"]),
        "NOPERM User reader has no permissions to run the 'acl|whoami' command"
    );
    assert_eq!(
        q(&mut admin, &["GET", "k"]),
        bulk("v"),
        "nothing was written"
    );
    assert!(stat(&mut admin, "acl_access_denied_cmd") >= 3);

    // A bad password, and a user that does not exist.
    let mut other = node.conn();
    let wrongpass = "WRONGPASS invalid username-password pair or user is disabled.";
    assert_eq!(e(&mut other, &["AUTH", "reader", "nope"]), wrongpass);
    assert_eq!(e(&mut other, &["AUTH", "nobody", "read-pw"]), wrongpass);
    assert_eq!(
        e(&mut other, &["GET", "k"]),
        "NOAUTH Authentication required."
    );
    assert!(stat(&mut admin, "acl_access_denied_auth") >= 2);
    // HELLO 2 AUTH user pass.
    let hello = q(&mut other, &["HELLO", "2", "AUTH", "reader", "read-pw"]);
    assert!(matches!(hello, Value::Array(_)), "{hello:?}");
    assert_eq!(q(&mut other, &["GET", "k"]), bulk("v"));
}

#[test]
fn key_patterns_limit_every_key_argument() {
    let (c, leader) = cluster(1, &[]);
    let node = c.node(leader);
    let mut admin = node.conn_with(Some(ADMIN_PASSWORD));
    q(&mut admin, &["MSET", "app:1", "one", "other", "secret"]);
    q(
        &mut admin,
        &["ACL", "SETUSER", "app", "on", ">app-pw", "+@all", "~app:*"],
    );
    let mut app = login(node, "app", "app-pw");
    let denied = "NOPERM No permissions to access a key";
    assert_eq!(q(&mut app, &["GET", "app:1"]), bulk("one"));
    assert_eq!(e(&mut app, &["GET", "other"]), denied);
    assert_eq!(e(&mut app, &["MSET", "app:2", "x", "other", "y"]), denied);
    assert_eq!(e(&mut app, &["DEL", "app:1", "other"]), denied);
    assert_eq!(
        q(&mut app, &["MSET", "app:2", "other", "app:3", "y"]),
        Value::Okay
    );
    assert_eq!(q(&mut admin, &["GET", "other"]), bulk("secret"));
    // In a pipeline, a refused command between writes (or reads) that
    // batch together gets its error, in its place.
    let mut raw = Raw::connect(&node.client_addr());
    raw.send(
        b"AUTH app app-pw\r\nSET app:5 a\r\nSET other b\r\nSET app:6 c\r\nGET app:5\r\nGET other\r\nGET app:6\r\n",
    );
    assert_eq!(
        raw.read_lines(7),
        format!("+OK\r\n+OK\r\n-{denied}\r\n+OK\r\n$1\r\na\r\n-{denied}\r\n$1\r\nc\r\n")
    );
    assert_eq!(q(&mut admin, &["GET", "other"]), bulk("secret"));
    assert!(stat(&mut admin, "acl_access_denied_key") >= 5);
    // DRYRUN says why, naming the key.
    assert_eq!(
        q(&mut admin, &["ACL", "DRYRUN", "app", "GET", "other"]),
        bulk("No permissions to access the 'other' key")
    );
    assert_eq!(
        q(&mut admin, &["ACL", "DRYRUN", "app", "GET", "app:9"]),
        Value::Okay
    );
}

#[test]
fn a_user_without_admin_cannot_run_admin_commands() {
    let (c, leader) = cluster(1, &[]);
    let node = c.node(leader);
    let mut admin = node.conn_with(Some(ADMIN_PASSWORD));
    q(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "dev",
            "on",
            ">dev-pw",
            "~*",
            "+@all",
            "-@admin",
            "-@dangerous",
        ],
    );
    let mut dev = login(node, "dev", "dev-pw");
    for (args, name) in [
        (&["RAFT.LEAVE", "n1"][..], "raft.leave"),
        (&["RAFT.TRANSFER", "n1"], "raft.transfer"),
        (&["RAFT.STATUS"], "raft.status"),
        (&["FLUSHALL"], "flushall"),
        (&["FLUSHDB"], "flushdb"),
        (&["KEYS", "*"], "keys"),
        (&["CONFIG", "GET", "maxmemory"], "config|get"),
        (&["INFO"], "info"),
        (&["ACL", "SETUSER", "dev", "+@admin"], "acl|setuser"),
        (&["ACL", "LIST"], "acl|list"),
    ] {
        assert_eq!(
            e(&mut dev, args),
            format!("NOPERM User dev has no permissions to run the '{name}' command")
        );
    }
    assert_eq!(q(&mut dev, &["SET", "k", "v"]), Value::Okay);
    assert_eq!(q(&mut dev, &["ACL", "WHOAMI"]), bulk("dev"));
    assert_eq!(q(&mut admin, &["GET", "k"]), bulk("v"));
    assert_eq!(
        text(
            &q(&mut admin, &["ACL", "GETUSER", "dev"])
                .as_sequence()
                .unwrap()[5]
        ),
        "+@all -@admin -@dangerous"
    );
}

#[test]
fn disabled_and_deleted_users_lose_their_connections() {
    let (c, leader) = cluster(1, &[]);
    let node = c.node(leader);
    let mut admin = node.conn_with(Some(ADMIN_PASSWORD));
    for user in ["bob", "carol"] {
        q(
            &mut admin,
            &["ACL", "SETUSER", user, "on", ">pw", "~*", "+@all"],
        );
    }
    // Raw connections, to see the close.
    let mut bob = Raw::connect(&node.client_addr());
    bob.send(b"AUTH bob pw\r\nPING\r\n");
    assert_eq!(bob.read_lines(2), "+OK\r\n+PONG\r\n");
    let mut carol = Raw::connect(&node.client_addr());
    carol.send(b"AUTH carol pw\r\n");
    assert_eq!(carol.read_lines(1), "+OK\r\n");

    assert_eq!(
        q(&mut admin, &["ACL", "SETUSER", "bob", "off"]),
        Value::Okay
    );
    bob.send(b"PING\r\n");
    let (got, closed) = bob.read_to_close();
    assert!(
        closed && got.is_empty(),
        "bob's connection: {got:?}, closed {closed}"
    );
    let mut again = node.conn();
    assert_eq!(
        e(&mut again, &["AUTH", "bob", "pw"]),
        "WRONGPASS invalid username-password pair or user is disabled."
    );

    assert_eq!(
        q(&mut admin, &["ACL", "DELUSER", "carol", "nobody"]),
        Value::Int(1)
    );
    carol.send(b"GET k\r\n");
    let (got, closed) = carol.read_to_close();
    assert!(
        closed && got.is_empty(),
        "carol's connection: {got:?}, closed {closed}"
    );
    // Made again, carol is another user: an old connection would not be hers.
    assert_eq!(
        e(&mut admin, &["ACL", "DELUSER", "default"]),
        "ERR The 'default' user cannot be removed"
    );
    assert_eq!(
        q(&mut admin, &["ACL", "USERS"]),
        Value::Array(vec![bulk("bob"), bulk("default")])
    );
}

#[test]
fn acl_list_shows_hashes_and_errors_are_redis_7s() {
    let (c, leader) = cluster(1, &[]);
    let node = c.node(leader);
    let mut admin = node.conn_with(Some(ADMIN_PASSWORD));
    let plain = "plain-text-7d1e";
    q(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "alice",
            "on",
            &format!(">{plain}"),
            "~app:*",
            "+@read",
            "-keys",
        ],
    );
    let list = q(&mut admin, &["ACL", "LIST"]);
    let lines: Vec<String> = list.as_sequence().unwrap().iter().map(text).collect();
    let hex = sha256_hex(plain);
    assert_eq!(hex.len(), 64);
    assert_eq!(
        lines,
        [
            format!("user alice on #{hex} ~app:* resetchannels -@all +@read -keys"),
            format!(
                "user default on #{} ~* &* +@all",
                sha256_hex(ADMIN_PASSWORD)
            ),
        ]
    );
    assert!(!format!("{list:?}").contains(plain));
    let get = q(&mut admin, &["ACL", "GETUSER", "alice"]);
    let fields = get.as_sequence().unwrap();
    assert_eq!(text(&fields[0]), "flags");
    assert_eq!(
        fields[2..4],
        [bulk("passwords"), Value::Array(vec![bulk(&hex)])]
    );
    assert_eq!(fields[6..8], [bulk("keys"), bulk("~app:*")]);
    assert_eq!(q(&mut admin, &["ACL", "GETUSER", "nobody"]), Value::Nil);
    assert_eq!(q(&mut admin, &["ACL", "WHOAMI"]), bulk("default"));
    // A password removed by its hash; a hash added as such.
    let other = sha256_hex("other");
    q(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "alice",
            &format!("!{hex}"),
            &format!("#{other}"),
        ],
    );
    let mut con = node.conn();
    assert_eq!(q(&mut con, &["AUTH", "alice", "other"]), Value::Okay);
    assert!(e(&mut con, &["AUTH", "alice", plain]).starts_with("WRONGPASS"));

    for (rules, says) in [
        (&["foo"][..], "ERR Error in ACL SETUSER modifier 'foo': Syntax error"),
        (&["+nosuch"], "ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL"),
        (&["allkeys", "~x"], "ERR Error in ACL SETUSER modifier '~x': Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"),
        (&["#abc"], "ERR Error in ACL SETUSER modifier '#abc': The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"),
        (&[">"], "ERR Error in ACL SETUSER modifier '>': empty passwords are not allowed: use nopass for a user who needs no password"),
    ] {
        let mut args = vec!["ACL", "SETUSER", "bad"];
        args.extend_from_slice(rules);
        assert_eq!(e(&mut admin, &args), says);
    }
    assert!(e(&mut admin, &["ACL", "SETUSER", "alice", "<never-set"])
        .ends_with("The password you are trying to remove from the user does not exist"));
    assert_eq!(
        q(&mut admin, &["ACL", "GETUSER", "bad"]),
        Value::Nil,
        "no user half made"
    );
    assert_eq!(
        e(&mut admin, &["ACL", "CAT", "nosuch"]),
        "ERR Unknown category 'nosuch'"
    );
    let cats: Vec<String> = q(&mut admin, &["ACL", "CAT"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    for c in [
        "keyspace",
        "read",
        "write",
        "string",
        "admin",
        "dangerous",
        "fast",
        "slow",
        "connection",
    ] {
        assert!(cats.contains(&c.to_string()), "{cats:?}");
    }
    let admin_cmds: Vec<String> = q(&mut admin, &["ACL", "CAT", "admin"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    for c in ["raft.leave", "raft.status", "config|get", "acl|setuser"] {
        assert!(admin_cmds.contains(&c.to_string()), "{admin_cmds:?}");
    }
    assert!(!admin_cmds.contains(&"get".to_string()));
    // COMMAND INFO reads the same table.
    let info = q(&mut admin, &["COMMAND", "INFO", "get"]);
    let get = info.as_sequence().unwrap()[0].as_sequence().unwrap();
    assert_eq!(
        get[6],
        Value::Array(vec![
            Value::SimpleString("@read".into()),
            Value::SimpleString("@string".into()),
            Value::SimpleString("@fast".into())
        ])
    );
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn no_plaintext_password_reaches_the_disk() {
    let (c, leader) = cluster(3, &["--snapshot-threshold", "20"]);
    let mut admin = c.node(leader).conn_with(Some(ADMIN_PASSWORD));
    let plain = "never-on-disk-5b9a2e";
    q(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "alice",
            "on",
            &format!(">{plain}"),
            "+@all",
            "~*",
        ],
    );
    q(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "alice",
            &format!("<{plain}"),
            &format!(">{plain}-2"),
        ],
    );
    // Enough entries for snapshots on every node.
    for i in 0..60 {
        q(&mut admin, &["SET", &format!("k{i}"), "v"]);
    }
    for i in 0..3 {
        eventually(EVENTUALLY, "a snapshot on every node", || {
            let info = raft_info(c.node(i), Some(ADMIN_PASSWORD))?;
            let index: u64 = field(&info, "raft_snapshot_index")?.parse().ok()?;
            (index > 0).then_some(())
        });
    }
    // Alice's second password works on every node.
    for i in 0..3 {
        eventually(EVENTUALLY, "alice's password on every node", || {
            let mut con = c.node(i).conn();
            cmd(&["AUTH", "alice", &format!("{plain}-2")])
                .query::<Value>(&mut con)
                .ok()
        });
    }
    let mut checked = 0;
    for node in &c.nodes {
        let mut all = Vec::new();
        files(&node.data_dir, &mut all);
        for path in all {
            let bytes = std::fs::read(&path).unwrap_or_default();
            for secret in [plain, ADMIN_PASSWORD] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{} holds the password {secret:?}",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} files looked at");
}

#[test]
fn users_are_enforced_on_every_node_a_joiner_and_after_restarts() {
    let (mut c, leader) = cluster(3, &[]);
    let mut admin = c.node(leader).conn_with(Some(ADMIN_PASSWORD));
    q(&mut admin, &["SET", "k", "v"]);
    q(
        &mut admin,
        &["ACL", "SETUSER", "reader", "on", ">read-pw", "+@read", "~*"],
    );
    let check_node = |c: &Cluster, i: usize| {
        let node = c.node(i);
        let mut reader = eventually(EVENTUALLY, "the reader's password on a node", || {
            let mut con = node.conn();
            cmd(&["AUTH", "reader", "read-pw"])
                .query::<Value>(&mut con)
                .ok()?;
            Some(con)
        });
        assert_eq!(q(&mut reader, &["GET", "k"]), bulk("v"), "on {}", node.id);
        assert_eq!(
            e(&mut reader, &["SET", "k", "w"]),
            noperm_set("reader"),
            "on {}",
            node.id
        );
        let mut anonymous = node.conn();
        assert_eq!(
            e(&mut anonymous, &["GET", "k"]),
            "NOAUTH Authentication required."
        );
        // The cluster's password, from its creation, on every node.
        let mut admin = node.conn();
        assert_eq!(
            q(&mut admin, &["AUTH", ADMIN_PASSWORD]),
            Value::Okay,
            "on {}",
            node.id
        );
        assert_eq!(q(&mut admin, &["ACL", "WHOAMI"]), bulk("default"));
    };
    for i in 0..3 {
        check_node(&c, i);
    }

    // A fourth node joins with no --requirepass of its own.
    let via = c.node(leader).peer_addr.clone();
    let founders_flags = std::mem::take(&mut c.extra);
    let n4 = c.start_joining("n4", &via);
    c.extra = founders_flags;
    assert!(!c.node(n4).args.iter().any(|a| a == "--requirepass"));
    check_node(&c, n4);

    // Every node restarts (n4 again without the flag).
    for i in 0..c.nodes.len() {
        c.nodes[i].terminate();
    }
    for i in 0..c.nodes.len() {
        c.nodes[i].start();
    }
    c.wait_leader_among(&[], Some(ADMIN_PASSWORD));
    for i in 0..c.nodes.len() {
        check_node(&c, i);
    }
}

#[test]
fn a_node_that_does_not_know_the_users_serves_nothing() {
    // A node that asks to join a cluster that is not there never learns
    // the cluster's users.
    let nowhere = format!("127.0.0.1:{}", free_ports(1)[0]);
    let mut c = Cluster::start(1, &["--join", &nowhere]);
    let node = c.node(0);
    let mut con = node.conn();
    let loading = "LOADING this node has not yet received the cluster's users; retry in a moment";
    assert_eq!(q(&mut con, &["PING"]), Value::SimpleString("PONG".into()));
    for args in [
        &["GET", "k"][..],
        &["SET", "k", "v"],
        &["INFO"],
        &["AUTH", "pw"],
        &["ACL", "LIST"],
    ] {
        assert_eq!(e(&mut con, args), loading, "{args:?}");
    }
    assert!(e(&mut con, &["NOSUCH"]).starts_with("ERR unknown command"));
    drop(con);
    // With a --requirepass of its own, the node takes that until then.
    c.nodes[0].kill();
    c.nodes[0]
        .args
        .extend(["--requirepass".to_string(), "local-pw".to_string()]);
    c.nodes[0].start();
    let mut con = c.node(0).conn();
    assert_eq!(
        e(&mut con, &["GET", "k"]),
        "NOAUTH Authentication required."
    );
    assert!(e(&mut con, &["AUTH", "wrong"]).starts_with("WRONGPASS"));
    assert_eq!(q(&mut con, &["AUTH", "local-pw"]), Value::Okay);
    assert_eq!(q(&mut con, &["ACL", "WHOAMI"]), bulk("default"));
}

#[test]
fn an_empty_requirepass_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ports = free_ports(2);
    let out = Command::new(BIN)
        .args([
            "serve",
            "--peer-addr",
            &format!("127.0.0.1:{}", ports[0]),
            "--client-addr",
            &format!("127.0.0.1:{}", ports[1]),
            "--data-dir",
            &dir.path().display().to_string(),
            "--requirepass",
            "",
        ])
        .env_remove("RAFT_KV_REQUIREPASS")
        .output()
        .expect("run raft-kv serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--requirepass must not be empty: leave it out to create the cluster with a default user who needs no password"),
        "{stderr}"
    );
}

#[test]
fn without_requirepass_the_default_user_needs_no_password() {
    let mut c = Cluster::single(&[]);
    c.wait_leader();
    let mut con = c.conn(0);
    assert_eq!(q(&mut con, &["ACL", "WHOAMI"]), bulk("default"));
    let list = q(&mut con, &["ACL", "LIST"]);
    assert_eq!(
        list,
        Value::Array(vec![bulk("user default on nopass ~* &* +@all")])
    );
    // Giving the default user a password closes nothing, but new
    // connections must AUTH.
    q(&mut con, &["ACL", "SETUSER", "default", ">now-a-pw"]);
    assert_eq!(q(&mut con, &["PING"]), Value::SimpleString("PONG".into()));
    let mut fresh = c.conn(0);
    assert_eq!(
        e(&mut fresh, &["GET", "k"]),
        "NOAUTH Authentication required."
    );
    assert_eq!(q(&mut fresh, &["AUTH", "now-a-pw"]), Value::Okay);
}
