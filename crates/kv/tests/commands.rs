//! Every command of raft-kv, end to end: a real `raft-kv serve` process (a
//! cluster of one unless noted) and the `redis` crate as the client. The
//! replies are checked against what Redis 7 answers.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::*;
use redis::Value;

/// A cluster of one with `extra` flags, its leader elected, and a
/// connection to it.
fn single(extra: &[&str]) -> (Cluster, redis::Connection) {
    let mut c = Cluster::single(extra);
    c.wait_leader();
    let con = c.conn(0);
    (c, con)
}

/// Runs a command that must fail; the error as sent (`CODE detail`).
fn e(con: &mut redis::Connection, args: &[&str]) -> String {
    expect_err(con, &cmd(args))
}

fn simple(s: &str) -> Value {
    Value::SimpleString(s.to_string())
}

fn int(n: i64) -> Value {
    Value::Int(n)
}

fn arr(items: Vec<Value>) -> Value {
    Value::Array(items)
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(text).collect(),
        other => panic!("not an array: {other:?}"),
    }
}

fn sorted(v: &Value) -> Vec<String> {
    let mut s = strings(v);
    s.sort();
    s
}

fn arity(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

const NOT_INTEGER: &str = "ERR value is not an integer or out of range";

#[test]
fn ping_and_echo() {
    let (_c, mut con) = single(&[]);
    assert_eq!(q(&mut con, &["PING"]), simple("PONG"));
    assert_eq!(q(&mut con, &["ping"]), simple("PONG"));
    assert_eq!(q(&mut con, &["PING", "hello world"]), bulk("hello world"));
    assert_eq!(e(&mut con, &["PING", "a", "b"]), arity("ping"));
    assert_eq!(q(&mut con, &["ECHO", "hi there"]), bulk("hi there"));
    assert_eq!(q(&mut con, &["echo", ""]), bulk(""));
    assert_eq!(e(&mut con, &["ECHO"]), arity("echo"));
    assert_eq!(e(&mut con, &["ECHO", "a", "b"]), arity("echo"));
}

#[test]
fn get_and_set_with_their_options() {
    let (_c, mut con) = single(&[]);
    assert_eq!(q(&mut con, &["GET", "k"]), Value::Nil);
    assert_eq!(q(&mut con, &["SET", "k", "v1"]), Value::Okay);
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("v1"));
    assert_eq!(q(&mut con, &["set", "k", "v2"]), Value::Okay, "overwrite");
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("v2"));

    // NX: only if absent.
    assert_eq!(q(&mut con, &["SET", "k", "nx", "NX"]), Value::Nil);
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("v2"));
    assert_eq!(q(&mut con, &["SET", "fresh", "nx", "nx"]), Value::Okay);
    assert_eq!(q(&mut con, &["GET", "fresh"]), bulk("nx"));

    // XX: only if present.
    assert_eq!(q(&mut con, &["SET", "absent", "xx", "XX"]), Value::Nil);
    assert_eq!(q(&mut con, &["EXISTS", "absent"]), int(0));
    assert_eq!(q(&mut con, &["SET", "k", "xx", "XX"]), Value::Okay);
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("xx"));

    // GET: the old value (or nil), and the set happens.
    assert_eq!(q(&mut con, &["SET", "k", "g", "GET"]), bulk("xx"));
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("g"));
    assert_eq!(q(&mut con, &["SET", "g1", "new", "GET"]), Value::Nil);
    assert_eq!(q(&mut con, &["GET", "g1"]), bulk("new"));

    // NX GET (allowed since Redis 7.0): the old value, and no set.
    assert_eq!(q(&mut con, &["SET", "k", "nxget", "NX", "GET"]), bulk("g"));
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("g"));
    assert_eq!(q(&mut con, &["SET", "g2", "v", "GET", "NX"]), Value::Nil);
    assert_eq!(q(&mut con, &["GET", "g2"]), bulk("v"));

    // XX GET: the old value and the set; nil and no set when absent.
    assert_eq!(q(&mut con, &["SET", "k", "xxget", "XX", "GET"]), bulk("g"));
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("xxget"));
    assert_eq!(q(&mut con, &["SET", "g3", "v", "XX", "GET"]), Value::Nil);
    assert_eq!(q(&mut con, &["EXISTS", "g3"]), int(0));

    // KEEPTTL keeps a time to live, a plain SET clears it.
    assert_eq!(q(&mut con, &["SET", "k", "kt", "EX", "100"]), Value::Okay);
    assert_eq!(q(&mut con, &["SET", "k", "kt", "KEEPTTL"]), Value::Okay);
    assert!(matches!(q(&mut con, &["TTL", "k"]), Value::Int(99..=100)));
    assert_eq!(q(&mut con, &["SET", "k", "kt"]), Value::Okay);
    assert_eq!(q(&mut con, &["TTL", "k"]), int(-1));
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("kt"));

    // Bad combinations and options.
    assert_eq!(
        e(&mut con, &["SET", "k", "v", "NX", "XX"]),
        "ERR syntax error"
    );
    assert_eq!(
        e(&mut con, &["SET", "k", "v", "XX", "NX"]),
        "ERR syntax error"
    );
    assert_eq!(e(&mut con, &["SET", "k", "v", "FOO"]), "ERR syntax error");
    assert_eq!(e(&mut con, &["SET", "k"]), arity("set"));
    assert_eq!(e(&mut con, &["SET"]), arity("set"));
    assert_eq!(e(&mut con, &["GET"]), arity("get"));
    assert_eq!(e(&mut con, &["GET", "a", "b"]), arity("get"));

    // Times to live: set, read, refused when out of range (the key
    // untouched), and a time already passed removes the key.
    for opt in [
        &["EX", "10"][..],
        &["PX", "10000"],
        &["EXAT", "99999999999"],
        &["PXAT", "99999999999999"],
    ] {
        let mut args = vec!["SET", "t", "expiring"];
        args.extend_from_slice(opt);
        assert_eq!(q(&mut con, &args), Value::Okay, "SET ... {opt:?}");
        assert!(
            matches!(q(&mut con, &["PTTL", "t"]), Value::Int(1..)),
            "SET ... {opt:?}"
        );
    }
    for (opt, time) in [("EX", "0"), ("PX", "-1"), ("EXAT", "9223372036854776")] {
        assert_eq!(
            e(&mut con, &["SET", "k", "v", opt, time]),
            "ERR invalid expire time in 'set' command"
        );
    }
    assert_eq!(
        e(&mut con, &["SET", "k", "v", "EX", "1", "KEEPTTL"]),
        "ERR syntax error"
    );
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("kt"));
    assert_eq!(q(&mut con, &["PEXPIREAT", "t", "1"]), int(1));
    assert_eq!(q(&mut con, &["EXISTS", "t"]), int(0));
    assert_eq!(q(&mut con, &["TTL", "t"]), int(-2));

    // Values are binary safe; the empty value is a value.
    let binary: Vec<u8> = vec![0, 255, b'\r', b'\n', b'$', 1, 2, 3];
    let ok: Value = redis::cmd("SET")
        .arg("bin")
        .arg(&binary[..])
        .query(&mut con)
        .expect("SET binary");
    assert_eq!(ok, Value::Okay);
    assert_eq!(q(&mut con, &["GET", "bin"]), Value::BulkString(binary));
    assert_eq!(q(&mut con, &["SET", "empty", ""]), Value::Okay);
    assert_eq!(q(&mut con, &["GET", "empty"]), bulk(""));
    assert_eq!(q(&mut con, &["EXISTS", "empty"]), int(1));
    assert_eq!(q(&mut con, &["STRLEN", "empty"]), int(0));
}

/// Redis 7 accepts an option given twice (`NX NX`, `GET GET`, `XX XX`):
/// its parser only refuses conflicting ones.
#[test]
fn set_accepts_a_repeated_option_like_redis_7() {
    let (_c, mut con) = single(&[]);
    assert_eq!(q(&mut con, &["SET", "k", "1", "NX", "NX"]), Value::Okay);
    assert_eq!(q(&mut con, &["SET", "k", "2", "XX", "XX"]), Value::Okay);
    assert_eq!(q(&mut con, &["SET", "k", "3", "GET", "GET"]), bulk("2"));
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("3"));
}

#[test]
fn del_and_exists_with_several_and_repeated_keys() {
    let (_c, mut con) = single(&[]);
    assert_eq!(
        q(&mut con, &["MSET", "a", "1", "b", "2", "c", "3"]),
        Value::Okay
    );
    assert_eq!(q(&mut con, &["EXISTS", "a"]), int(1));
    assert_eq!(q(&mut con, &["EXISTS", "missing"]), int(0));
    // EXISTS counts a key named twice twice.
    assert_eq!(
        q(&mut con, &["EXISTS", "a", "b", "c", "c", "missing"]),
        int(4)
    );
    assert_eq!(q(&mut con, &["EXISTS", "a", "a", "a"]), int(3));
    // DEL removes, and counts, a key named twice once.
    assert_eq!(q(&mut con, &["DEL", "a", "a", "b", "missing"]), int(2));
    assert_eq!(q(&mut con, &["EXISTS", "a", "b", "c"]), int(1));
    assert_eq!(q(&mut con, &["DEL", "a"]), int(0));
    assert_eq!(q(&mut con, &["UNLINK", "c", "c"]), int(1));
    assert_eq!(q(&mut con, &["DBSIZE"]), int(0));
    assert_eq!(e(&mut con, &["DEL"]), arity("del"));
    assert_eq!(e(&mut con, &["EXISTS"]), arity("exists"));
}

#[test]
fn incr_decr_and_their_errors() {
    let (_c, mut con) = single(&[]);
    assert_eq!(q(&mut con, &["INCR", "n"]), int(1));
    assert_eq!(q(&mut con, &["GET", "n"]), bulk("1"));
    assert_eq!(q(&mut con, &["INCRBY", "n", "10"]), int(11));
    assert_eq!(q(&mut con, &["DECR", "n"]), int(10));
    assert_eq!(q(&mut con, &["DECRBY", "n", "3"]), int(7));
    assert_eq!(q(&mut con, &["INCRBY", "n", "-7"]), int(0));
    assert_eq!(q(&mut con, &["DECRBY", "n", "-5"]), int(5));
    assert_eq!(q(&mut con, &["INCRBY", "n", "0"]), int(5));
    assert_eq!(q(&mut con, &["DECR", "down"]), int(-1));
    assert_eq!(q(&mut con, &["DECRBY", "down2", "5"]), int(-5));
    assert_eq!(q(&mut con, &["GET", "down2"]), bulk("-5"));
    assert_eq!(q(&mut con, &["INCRBY", "up", "42"]), int(42));
    // A value set as a string that is an integer counts.
    assert_eq!(q(&mut con, &["SET", "s", "-12"]), Value::Okay);
    assert_eq!(q(&mut con, &["INCR", "s"]), int(-11));

    // Values that are not (strict) integers.
    for bad in [
        "abc",
        "1.5",
        " 1",
        "1 ",
        "01",
        "+1",
        "",
        "-0",
        "9223372036854775808",
    ] {
        assert_eq!(q(&mut con, &["SET", "bad", bad]), Value::Okay);
        assert_eq!(
            e(&mut con, &["INCR", "bad"]),
            NOT_INTEGER,
            "INCR on {bad:?}"
        );
        assert_eq!(e(&mut con, &["DECRBY", "bad", "2"]), NOT_INTEGER);
        assert_eq!(q(&mut con, &["GET", "bad"]), bulk(bad), "unchanged");
    }
    // Increments that are not integers.
    for bad in ["abc", "1.5", "+1", "", "9223372036854775808"] {
        assert_eq!(
            e(&mut con, &["INCRBY", "n", bad]),
            NOT_INTEGER,
            "INCRBY {bad:?}"
        );
        assert_eq!(
            e(&mut con, &["DECRBY", "n", bad]),
            NOT_INTEGER,
            "DECRBY {bad:?}"
        );
    }
    assert_eq!(q(&mut con, &["GET", "n"]), bulk("5"));

    // Overflow, both ways; the value is unchanged.
    assert_eq!(
        q(&mut con, &["SET", "max", "9223372036854775807"]),
        Value::Okay
    );
    let overflow = "ERR increment or decrement would overflow";
    assert_eq!(e(&mut con, &["INCR", "max"]), overflow);
    assert_eq!(e(&mut con, &["INCRBY", "max", "1"]), overflow);
    assert_eq!(e(&mut con, &["DECRBY", "max", "-1"]), overflow);
    assert_eq!(q(&mut con, &["GET", "max"]), bulk("9223372036854775807"));
    assert_eq!(q(&mut con, &["DECR", "max"]), int(9223372036854775806));
    assert_eq!(
        q(&mut con, &["SET", "min", "-9223372036854775808"]),
        Value::Okay
    );
    assert_eq!(e(&mut con, &["DECR", "min"]), overflow);
    assert_eq!(e(&mut con, &["INCRBY", "min", "-1"]), overflow);
    assert_eq!(q(&mut con, &["GET", "min"]), bulk("-9223372036854775808"));
    assert_eq!(
        e(&mut con, &["DECRBY", "n", "-9223372036854775808"]),
        "ERR decrement would overflow"
    );

    assert_eq!(e(&mut con, &["INCR"]), arity("incr"));
    assert_eq!(e(&mut con, &["INCR", "a", "b"]), arity("incr"));
    assert_eq!(e(&mut con, &["INCRBY", "a"]), arity("incrby"));
    assert_eq!(e(&mut con, &["DECR"]), arity("decr"));
    assert_eq!(e(&mut con, &["DECRBY", "a"]), arity("decrby"));
}

#[test]
fn append_and_strlen() {
    let (_c, mut con) = single(&[]);
    assert_eq!(q(&mut con, &["STRLEN", "a"]), int(0));
    assert_eq!(q(&mut con, &["APPEND", "a", "Hello"]), int(5));
    assert_eq!(q(&mut con, &["APPEND", "a", " World"]), int(11));
    assert_eq!(q(&mut con, &["GET", "a"]), bulk("Hello World"));
    assert_eq!(q(&mut con, &["STRLEN", "a"]), int(11));
    assert_eq!(q(&mut con, &["APPEND", "a", ""]), int(11));
    // A counter is a string like any other.
    assert_eq!(q(&mut con, &["INCR", "c"]), int(1));
    assert_eq!(q(&mut con, &["APPEND", "c", "0"]), int(2));
    assert_eq!(q(&mut con, &["INCR", "c"]), int(11));
    assert_eq!(q(&mut con, &["STRLEN", "c"]), int(2));
    assert_eq!(e(&mut con, &["APPEND", "a"]), arity("append"));
    assert_eq!(e(&mut con, &["STRLEN"]), arity("strlen"));
    assert_eq!(e(&mut con, &["STRLEN", "a", "b"]), arity("strlen"));
}

#[test]
fn mget_mset_and_getset() {
    let (_c, mut con) = single(&[]);
    assert_eq!(
        q(&mut con, &["MSET", "a", "1", "b", "2", "c", "3"]),
        Value::Okay
    );
    assert_eq!(
        q(&mut con, &["MGET", "a", "missing", "b", "c", "a"]),
        arr(vec![bulk("1"), Value::Nil, bulk("2"), bulk("3"), bulk("1")])
    );
    assert_eq!(q(&mut con, &["MGET", "missing"]), arr(vec![Value::Nil]));
    // The last of a repeated key wins.
    assert_eq!(q(&mut con, &["MSET", "a", "x", "a", "y"]), Value::Okay);
    assert_eq!(q(&mut con, &["GET", "a"]), bulk("y"));
    // An odd number of arguments sets nothing.
    assert_eq!(e(&mut con, &["MSET", "a", "1", "b"]), arity("mset"));
    assert_eq!(e(&mut con, &["MSET", "z"]), arity("mset"));
    assert_eq!(e(&mut con, &["MSET"]), arity("mset"));
    assert_eq!(q(&mut con, &["GET", "a"]), bulk("y"));
    assert_eq!(q(&mut con, &["EXISTS", "z"]), int(0));
    assert_eq!(e(&mut con, &["MGET"]), arity("mget"));

    assert_eq!(q(&mut con, &["GETSET", "a", "z"]), bulk("y"));
    assert_eq!(q(&mut con, &["GET", "a"]), bulk("z"));
    assert_eq!(q(&mut con, &["GETSET", "new", "v"]), Value::Nil);
    assert_eq!(q(&mut con, &["GET", "new"]), bulk("v"));
    assert_eq!(e(&mut con, &["GETSET", "a"]), arity("getset"));
    assert_eq!(q(&mut con, &["DBSIZE"]), int(4));
}

#[test]
fn dbsize_keys_patterns_and_flushdb() {
    let (_c, mut con) = single(&[]);
    assert_eq!(q(&mut con, &["DBSIZE"]), int(0));
    assert_eq!(q(&mut con, &["KEYS", "*"]), arr(vec![]));
    assert_eq!(q(&mut con, &["FLUSHDB"]), Value::Okay, "on an empty store");
    let keys = [
        "hello", "hallo", "hxllo", "hllo", "heeeello", "h*llo", "foo", "foo:bar", "x",
    ];
    for k in keys {
        assert_eq!(q(&mut con, &["SET", k, "v"]), Value::Okay);
    }
    assert_eq!(q(&mut con, &["DBSIZE"]), int(keys.len() as i64));
    let mut all: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
    all.sort();
    assert_eq!(sorted(&q(&mut con, &["KEYS", "*"])), all);
    let cases: &[(&str, &[&str])] = &[
        ("h?llo", &["h*llo", "hallo", "hello", "hxllo"]),
        (
            "h*llo",
            &["h*llo", "hallo", "heeeello", "hello", "hllo", "hxllo"],
        ),
        ("h[ae]llo", &["hallo", "hello"]),
        ("h[^e]llo", &["h*llo", "hallo", "hxllo"]),
        ("h[a-b]llo", &["hallo"]),
        ("h[b-a]llo", &["hallo"]),
        ("h\\*llo", &["h*llo"]),
        ("foo*", &["foo", "foo:bar"]),
        ("foo:*", &["foo:bar"]),
        ("*:*", &["foo:bar"]),
        ("?", &["x"]),
        ("nomatch*", &[]),
        ("HELLO", &[]),
    ];
    for (pattern, expected) in cases {
        assert_eq!(
            sorted(&q(&mut con, &["KEYS", pattern])),
            expected.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "KEYS {pattern}"
        );
    }
    assert_eq!(e(&mut con, &["KEYS"]), arity("keys"));
    assert_eq!(e(&mut con, &["KEYS", "a", "b"]), arity("keys"));
    assert_eq!(e(&mut con, &["DBSIZE", "x"]), arity("dbsize"));

    assert_eq!(q(&mut con, &["FLUSHDB"]), Value::Okay);
    assert_eq!(q(&mut con, &["DBSIZE"]), int(0));
    assert_eq!(q(&mut con, &["KEYS", "*"]), arr(vec![]));
    assert_eq!(q(&mut con, &["GET", "hello"]), Value::Nil);
    assert_eq!(q(&mut con, &["SET", "again", "1"]), Value::Okay);
    assert_eq!(q(&mut con, &["FLUSHDB", "ASYNC"]), Value::Okay);
    assert_eq!(q(&mut con, &["DBSIZE"]), int(0));
    assert_eq!(q(&mut con, &["SET", "again", "1"]), Value::Okay);
    assert_eq!(q(&mut con, &["FLUSHALL", "sync"]), Value::Okay);
    assert_eq!(q(&mut con, &["DBSIZE"]), int(0));
    assert_eq!(e(&mut con, &["FLUSHDB", "LATER"]), "ERR syntax error");
}

#[test]
fn scan_with_match_and_count_returns_every_key() {
    let (_c, mut con) = single(&[]);
    let keys: Vec<String> = (0..500).map(|i| format!("key:{i}")).collect();
    for chunk in keys.chunks(100) {
        let mut c = redis::cmd("MSET");
        for k in chunk {
            c.arg(k).arg(format!("v-{k}"));
        }
        assert_eq!(c.query::<Value>(&mut con).unwrap(), Value::Okay);
    }
    let mut c = redis::cmd("MSET");
    for i in 0..50 {
        c.arg(format!("other:{i}")).arg("o");
    }
    assert_eq!(c.query::<Value>(&mut con).unwrap(), Value::Okay);
    assert_eq!(q(&mut con, &["DBSIZE"]), int(550));

    let scan_all = |con: &mut redis::Connection, pattern: Option<&str>| {
        let mut cursor = "0".to_string();
        let mut found = BTreeSet::new();
        let mut calls = 0;
        loop {
            let mut c = redis::cmd("SCAN");
            c.arg(&cursor);
            if let Some(p) = pattern {
                c.arg("MATCH").arg(p);
            }
            c.arg("COUNT").arg(10);
            let reply = c.query::<Value>(con).expect("SCAN");
            let Value::Array(parts) = reply else {
                panic!("SCAN replied {reply:?}")
            };
            assert_eq!(parts.len(), 2, "SCAN replies [cursor, keys]");
            cursor = text(&parts[0]);
            let batch = strings(&parts[1]);
            assert!(batch.len() <= 40, "COUNT 10 returned {} keys", batch.len());
            found.extend(batch);
            calls += 1;
            assert!(calls < 10_000, "SCAN does not end");
            if cursor == "0" {
                return (found, calls);
            }
        }
    };
    let (found, calls) = scan_all(&mut con, Some("key:*"));
    let expected: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(found, expected, "SCAN MATCH key:* COUNT 10");
    assert!(
        calls >= 20,
        "COUNT 10 over 550 keys took only {calls} calls"
    );
    let (found, _) = scan_all(&mut con, None);
    assert_eq!(found.len(), 550, "SCAN COUNT 10 without MATCH");
    let (found, _) = scan_all(&mut con, Some("key:1?"));
    assert_eq!(found.len(), 10);

    // One call with a large COUNT gets everything.
    let reply = q(&mut con, &["SCAN", "0", "COUNT", "100000"]);
    let Value::Array(parts) = reply else { panic!() };
    assert_eq!(text(&parts[0]), "0");
    assert_eq!(strings(&parts[1]).len(), 550);
    // Every key here holds a string: TYPE string filters nothing, TYPE
    // hash leaves nothing (until a hash is made).
    let reply = q(
        &mut con,
        &["SCAN", "0", "TYPE", "string", "COUNT", "100000"],
    );
    let Value::Array(parts) = reply else { panic!() };
    assert_eq!(strings(&parts[1]).len(), 550);
    assert_eq!(
        q(&mut con, &["SCAN", "0", "TYPE", "hash", "COUNT", "100000"]),
        arr(vec![bulk("0"), arr(vec![])])
    );
    assert_eq!(q(&mut con, &["HSET", "a-hash", "f", "v"]), Value::Int(1));
    assert_eq!(
        q(&mut con, &["SCAN", "0", "TYPE", "hash", "COUNT", "100000"]),
        arr(vec![bulk("0"), arr(vec![bulk("a-hash")])])
    );
    assert_eq!(q(&mut con, &["DEL", "a-hash"]), Value::Int(1));
    assert_eq!(e(&mut con, &["SCAN", "abc"]), "ERR invalid cursor");
    assert_eq!(
        e(&mut con, &["SCAN", "0", "COUNT", "0"]),
        "ERR syntax error"
    );
    assert_eq!(e(&mut con, &["SCAN", "0", "COUNT", "x"]), NOT_INTEGER);
    assert_eq!(e(&mut con, &["SCAN", "0", "MATCH"]), "ERR syntax error");
    assert_eq!(e(&mut con, &["SCAN", "0", "FOO", "1"]), "ERR syntax error");
    assert_eq!(e(&mut con, &["SCAN"]), arity("scan"));
}

#[test]
fn cas_sets_only_on_a_match() {
    let (_c, mut con) = single(&[]);
    assert_eq!(q(&mut con, &["CAS", "k", "a", "b"]), int(0), "absent key");
    assert_eq!(q(&mut con, &["EXISTS", "k"]), int(0));
    assert_eq!(q(&mut con, &["SET", "k", "a"]), Value::Okay);
    assert_eq!(q(&mut con, &["CAS", "k", "a", "b"]), int(1));
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("b"));
    assert_eq!(q(&mut con, &["CAS", "k", "a", "c"]), int(0));
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("b"));
    assert_eq!(q(&mut con, &["CAS", "k", "b", "b"]), int(1), "same value");
    assert_eq!(q(&mut con, &["CAS", "k", "B", "x"]), int(0), "case matters");
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("b"));
    assert_eq!(e(&mut con, &["CAS", "k", "a"]), arity("cas"));
    assert_eq!(e(&mut con, &["CAS", "k", "a", "b", "c"]), arity("cas"));
}

#[test]
fn auth_with_requirepass() {
    let c = Cluster::single(&["--requirepass", "s3cret"]);
    let node = c.node(0);
    let mut con = node.conn();
    let noauth = "NOAUTH Authentication required.";
    assert_eq!(e(&mut con, &["GET", "k"]), noauth);
    assert_eq!(e(&mut con, &["SET", "k", "v"]), noauth);
    assert_eq!(e(&mut con, &["PING"]), noauth);
    assert_eq!(e(&mut con, &["INFO"]), noauth);
    assert_eq!(e(&mut con, &["RAFT.STATUS"]), noauth);
    assert!(e(&mut con, &["HELLO", "2"]).starts_with("NOAUTH"));
    for bad in [
        &["AUTH", "wrong"][..],
        &["AUTH", "default", "wrong"],
        &["AUTH", "someone", "s3cret"],
        &["AUTH", ""],
    ] {
        let err = e(&mut con, bad);
        assert!(
            err.starts_with("WRONGPASS invalid username-password pair"),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(
        e(&mut con, &["GET", "k"]),
        noauth,
        "still not authenticated"
    );
    assert_eq!(q(&mut con, &["AUTH", "s3cret"]), Value::Okay);
    assert_eq!(q(&mut con, &["SET", "k", "v"]), Value::Okay);
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("v"));
    assert_eq!(q(&mut con, &["PING"]), simple("PONG"));

    // AUTH with the user name.
    let mut con2 = node.conn();
    assert_eq!(q(&mut con2, &["AUTH", "default", "s3cret"]), Value::Okay);
    assert_eq!(q(&mut con2, &["GET", "k"]), bulk("v"));

    // HELLO with AUTH authenticates.
    let mut con3 = node.conn();
    let hello = q(&mut con3, &["HELLO", "2", "AUTH", "default", "s3cret"]);
    assert!(matches!(hello, Value::Array(_)), "{hello:?}");
    assert_eq!(q(&mut con3, &["GET", "k"]), bulk("v"));
    let mut con4 = node.conn();
    assert!(e(&mut con4, &["HELLO", "2", "AUTH", "default", "nope"]).starts_with("WRONGPASS"));

    // The password in the URL.
    let mut con5 = node.conn_with(Some("s3cret"));
    assert_eq!(q(&mut con5, &["GET", "k"]), bulk("v"));
    assert_eq!(q(&mut con5, &["INCR", "n"]), int(1));
    match node.try_conn(Some("wrong")) {
        Err(_) => {}
        Ok(mut con6) => {
            // Some client versions only fail on the first command.
            assert!(cmd(&["GET", "k"]).query::<Value>(&mut con6).is_err());
        }
    }
}

#[test]
fn auth_without_requirepass_is_an_error() {
    let (_c, mut con) = single(&[]);
    let err = e(&mut con, &["AUTH", "anything"]);
    assert!(
        err.starts_with("ERR AUTH <password> called without any password configured"),
        "{err}"
    );
    let err = e(&mut con, &["AUTH", "default", "anything"]);
    assert!(err.contains("without any password configured"), "{err}");
    assert_eq!(e(&mut con, &["AUTH"]), arity("auth"));
    assert_eq!(q(&mut con, &["PING"]), simple("PONG"));
}

fn hello_map(v: &Value) -> HashMap<String, Value> {
    let Value::Array(items) = v else {
        panic!("HELLO 2 should reply with a flat array, got {v:?}")
    };
    assert_eq!(items.len() % 2, 0, "name/value pairs: {items:?}");
    items
        .chunks(2)
        .map(|p| (text(&p[0]), p[1].clone()))
        .collect()
}

#[test]
fn hello_2_and_3() {
    let (_c, mut con) = single(&[]);
    let m = hello_map(&q(&mut con, &["HELLO", "2"]));
    assert_eq!(m.get("server").map(text).as_deref(), Some("raft-kv"));
    assert_eq!(m.get("proto"), Some(&int(2)));
    assert!(m.contains_key("version"), "{m:?}");
    let id = redis::cmd("CLIENT")
        .arg("ID")
        .query::<i64>(&mut con)
        .unwrap();
    assert_eq!(m.get("id"), Some(&int(id)));
    let m = hello_map(&q(&mut con, &["HELLO"]));
    assert_eq!(m.get("proto"), Some(&int(2)));
    let err = e(&mut con, &["HELLO", "3"]);
    assert!(err.starts_with("NOPROTO"), "{err}");
    assert!(e(&mut con, &["HELLO", "1"]).starts_with("NOPROTO"));
    assert_eq!(
        e(&mut con, &["HELLO", "abc"]),
        "ERR Protocol version is not an integer or out of range"
    );
    assert!(e(&mut con, &["HELLO", "2", "FOO"]).starts_with("ERR Syntax error in HELLO option"));
    hello_map(&q(&mut con, &["HELLO", "2", "SETNAME", "me"]));
    assert_eq!(q(&mut con, &["CLIENT", "GETNAME"]), bulk("me"));
    // The connection still speaks RESP2.
    assert_eq!(q(&mut con, &["SET", "k", "v"]), Value::Okay);
    // HELLO's SETNAME checks the name as CLIENT SETNAME does.
    let err = e(&mut con, &["HELLO", "2", "SETNAME", "a b"]);
    assert!(
        err.starts_with("ERR Client names cannot contain spaces"),
        "{err}"
    );
    assert_eq!(q(&mut con, &["CLIENT", "GETNAME"]), bulk("me"));
}

#[test]
fn info_sections() {
    let (_c, mut con) = single(&[]);
    let info = |con: &mut redis::Connection, args: &[&str]| -> String {
        let v = q(con, args);
        assert!(matches!(v, Value::BulkString(_)), "INFO is a bulk string");
        text(&v)
    };
    let all = info(&mut con, &["INFO"]);
    for section in ["# Server", "# Replication", "# Raft", "# Keyspace"] {
        assert!(all.contains(section), "INFO lacks {section}:\n{all}");
    }
    let server = info(&mut con, &["INFO", "server"]);
    assert!(field(&server, "redis_version").is_some(), "{server}");
    assert!(!server.contains("# Raft"), "INFO server only:\n{server}");
    let repl = info(&mut con, &["INFO", "replication"]);
    assert_eq!(field(&repl, "role").as_deref(), Some("master"), "{repl}");
    let raft = info(&mut con, &["INFO", "raft"]);
    assert!(raft.contains("# Raft"), "{raft}");
    assert!(!raft.contains("# Server"), "{raft}");
    assert_eq!(field(&raft, "raft_role").as_deref(), Some("leader"));
    assert_eq!(field(&raft, "raft_leader_id").as_deref(), Some("n1"));
    let term: u64 = field(&raft, "raft_term").unwrap().parse().unwrap();
    assert!(term >= 1, "{raft}");
    let commit: u64 = field(&raft, "raft_commit_index").unwrap().parse().unwrap();
    assert_eq!(q(&mut con, &["SET", "a", "1"]), Value::Okay);
    // Positions are published once per tick: the new index shows soon.
    eventually(EVENTUALLY, "raft_commit_index to pass the write", || {
        let raft = info(&mut con, &["INFO", "RAFT"]);
        let commit2: u64 = field(&raft, "raft_commit_index")?.parse().ok()?;
        (commit2 > commit).then_some(())
    });

    let ks = info(&mut con, &["INFO", "keyspace"]);
    assert!(ks.contains("# Keyspace"), "{ks}");
    assert!(ks.contains("db0:keys=1,"), "{ks}");
    assert_eq!(q(&mut con, &["MSET", "b", "2", "c", "3"]), Value::Okay);
    let ks = info(&mut con, &["INFO", "keyspace"]);
    assert!(ks.contains("db0:keys=3,expires=0,"), "{ks}");
    assert_eq!(q(&mut con, &["EXPIRE", "c", "100"]), int(1));
    let ks = info(&mut con, &["INFO", "keyspace"]);
    assert!(ks.contains("db0:keys=3,expires=1,"), "{ks}");
    assert_eq!(q(&mut con, &["FLUSHDB"]), Value::Okay);
    let ks = info(&mut con, &["INFO", "keyspace"]);
    assert!(
        !ks.contains("db0:"),
        "no db0 line when empty, as Redis: {ks}"
    );
    // Several sections at once.
    let two = info(&mut con, &["INFO", "server", "raft"]);
    assert!(two.contains("# Server") && two.contains("# Raft"), "{two}");
}

#[test]
fn command_introspection() {
    let (_c, mut con) = single(&[]);
    let count = match q(&mut con, &["COMMAND", "COUNT"]) {
        Value::Int(n) => n,
        other => panic!("COMMAND COUNT: {other:?}"),
    };
    assert!(count >= 20, "{count}");
    let Value::Array(all) = q(&mut con, &["COMMAND"]) else {
        panic!("COMMAND is an array")
    };
    assert_eq!(all.len() as i64, count);
    let names: BTreeSet<String> = all
        .iter()
        .map(|c| match c {
            Value::Array(parts) => text(&parts[0]),
            other => panic!("a COMMAND entry is an array: {other:?}"),
        })
        .collect();
    for n in [
        "get",
        "set",
        "incr",
        "mset",
        "scan",
        "ping",
        "cas",
        "raft.status",
    ] {
        assert!(names.contains(n), "COMMAND lacks {n}: {names:?}");
    }
    let Value::Array(info) = q(&mut con, &["COMMAND", "INFO", "get"]) else {
        panic!()
    };
    assert_eq!(info.len(), 1);
    let Value::Array(get) = &info[0] else {
        panic!("{info:?}")
    };
    assert_eq!(text(&get[0]), "get");
    assert_eq!(get[1], int(2), "GET's arity");
    let Value::Array(info) = q(&mut con, &["COMMAND", "INFO", "SET", "nosuch"]) else {
        panic!()
    };
    assert_eq!(info.len(), 2);
    let Value::Array(set) = &info[0] else {
        panic!("{info:?}")
    };
    assert_eq!(set[1], int(-3), "SET's arity");
    assert_eq!(info[1], Value::Nil, "an unknown command's entry is nil");
    // DOCS answers (with no documentation), so that redis-cli works.
    assert!(matches!(q(&mut con, &["COMMAND", "DOCS"]), Value::Array(_)));
    assert!(matches!(
        q(&mut con, &["COMMAND", "DOCS", "get"]),
        Value::Array(_)
    ));
    assert!(e(&mut con, &["COMMAND", "FOO"]).starts_with("ERR unknown subcommand"));
    assert_eq!(q(&mut con, &["PING"]), simple("PONG"));
}

#[test]
fn config_get() {
    let (c, mut con) = single(&["--max-connections", "77"]);
    let pairs = |v: Value| -> Vec<(String, String)> {
        let s = strings(&v);
        assert_eq!(s.len() % 2, 0, "CONFIG GET gives pairs: {s:?}");
        s.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect()
    };
    let save = pairs(q(&mut con, &["CONFIG", "GET", "save"]));
    assert_eq!(save.len(), 1);
    assert_eq!(save[0].0, "save");
    assert_eq!(
        pairs(q(&mut con, &["CONFIG", "GET", "appendonly"])),
        vec![("appendonly".to_string(), "no".to_string())]
    );
    assert_eq!(
        pairs(q(&mut con, &["CONFIG", "GET", "maxclients"])),
        vec![("maxclients".to_string(), "77".to_string())]
    );
    assert_eq!(
        pairs(q(&mut con, &["config", "get", "MAXCLIENTS"])),
        vec![("maxclients".to_string(), "77".to_string())]
    );
    let both = pairs(q(&mut con, &["CONFIG", "GET", "save", "appendonly"]));
    assert_eq!(both.len(), 2, "{both:?}");
    let all = pairs(q(&mut con, &["CONFIG", "GET", "*"]));
    let names: BTreeSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), all.len(), "no name twice: {all:?}");
    for n in ["save", "appendonly", "maxclients"] {
        assert!(names.contains(n), "CONFIG GET * lacks {n}: {all:?}");
    }
    let max = pairs(q(&mut con, &["CONFIG", "GET", "max*"]));
    assert!(max.iter().any(|(n, _)| n == "maxclients"), "{max:?}");
    assert_eq!(q(&mut con, &["CONFIG", "GET", "nosuch"]), arr(vec![]));
    assert_eq!(
        e(&mut con, &["CONFIG", "GET"]),
        "ERR wrong number of arguments for 'config|get' command"
    );
    assert!(e(&mut con, &["CONFIG", "SET", "maxclients", "5"]).starts_with("ERR"));
    assert_eq!(e(&mut con, &["CONFIG"]), arity("config"));
    // RESETSTAT: INFO's counters start again from zero.
    let stat = |con: &mut redis::Connection, name: &str| -> u64 {
        let Value::BulkString(info) = q(con, &["INFO", "stats"]) else {
            panic!("INFO is a bulk string");
        };
        let info = String::from_utf8(info).unwrap();
        let line = info.lines().find(|l| l.starts_with(&format!("{name}:")));
        line.and_then(|l| l.split(':').nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {info}"))
    };
    let _second = c.nodes[0].conn();
    assert!(stat(&mut con, "total_connections_received") >= 2);
    assert_eq!(q(&mut con, &["CONFIG", "RESETSTAT"]), Value::Okay);
    assert_eq!(stat(&mut con, "total_connections_received"), 0);
    let _third = c.nodes[0].conn();
    assert_eq!(stat(&mut con, "total_connections_received"), 1);
}

#[test]
fn select_client_readonly_readwrite() {
    let (c, mut con) = single(&[]);
    assert_eq!(q(&mut con, &["SELECT", "0"]), Value::Okay);
    assert_eq!(
        e(&mut con, &["SELECT", "1"]),
        "ERR DB index is out of range"
    );
    assert_eq!(
        e(&mut con, &["SELECT", "-1"]),
        "ERR DB index is out of range"
    );
    assert_eq!(e(&mut con, &["SELECT", "abc"]), NOT_INTEGER);
    assert_eq!(e(&mut con, &["SELECT"]), arity("select"));

    let id = match q(&mut con, &["CLIENT", "ID"]) {
        Value::Int(n) => n,
        other => panic!("CLIENT ID: {other:?}"),
    };
    assert!(id > 0);
    let mut other = c.conn(0);
    let id2 = match q(&mut other, &["CLIENT", "ID"]) {
        Value::Int(n) => n,
        v => panic!("{v:?}"),
    };
    assert_ne!(id, id2, "each connection has its own id");
    assert_eq!(q(&mut con, &["CLIENT", "GETNAME"]), Value::Nil);
    assert_eq!(q(&mut con, &["CLIENT", "SETNAME", "worker-1"]), Value::Okay);
    assert_eq!(q(&mut con, &["CLIENT", "GETNAME"]), bulk("worker-1"));
    assert_eq!(q(&mut other, &["CLIENT", "GETNAME"]), Value::Nil);
    assert!(e(&mut con, &["CLIENT", "SETNAME", "a b"])
        .starts_with("ERR Client names cannot contain spaces"));
    assert_eq!(q(&mut con, &["CLIENT", "GETNAME"]), bulk("worker-1"));
    assert_eq!(q(&mut con, &["CLIENT", "SETNAME", ""]), Value::Okay);
    assert_eq!(q(&mut con, &["CLIENT", "GETNAME"]), Value::Nil);
    assert!(e(&mut con, &["CLIENT", "FOO"]).starts_with("ERR unknown subcommand"));
    assert_eq!(e(&mut con, &["CLIENT"]), arity("client"));

    assert_eq!(q(&mut con, &["SET", "k", "v"]), Value::Okay);
    assert_eq!(q(&mut con, &["READONLY"]), Value::Okay);
    let clients = text(&q(&mut con, &["INFO", "clients"]));
    assert_eq!(
        field(&clients, "this_client_reads").as_deref(),
        Some("local"),
        "{clients}"
    );
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("v"));
    assert_eq!(
        q(&mut con, &["SET", "k", "w"]),
        Value::Okay,
        "writes still work"
    );
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("w"));
    assert_eq!(q(&mut con, &["READWRITE"]), Value::Okay);
    let clients = text(&q(&mut con, &["INFO", "clients"]));
    assert_eq!(
        field(&clients, "this_client_reads").as_deref(),
        Some("linearizable")
    );
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("w"));
    assert_eq!(e(&mut con, &["READONLY", "x"]), arity("readonly"));
}

#[test]
fn raft_status_is_json() {
    let (_c, mut con) = single(&[]);
    let v = q(&mut con, &["RAFT.STATUS"]);
    let json: serde_json::Value =
        serde_json::from_str(&text(&v)).unwrap_or_else(|e| panic!("not JSON ({e}): {v:?}"));
    assert_eq!(json["role"], "leader", "{json}");
    assert_eq!(json["id"], "n1");
    assert_eq!(json["leader"]["id"], "n1");
    assert!(json["term"].as_u64().unwrap() >= 1);
    assert!(json["commit_index"].is_u64());
    assert_eq!(json["peers"].as_array().map(Vec::len), Some(0), "{json}");
    let lower = q(&mut con, &["raft.status"]);
    assert!(matches!(lower, Value::BulkString(_)));
    assert_eq!(e(&mut con, &["RAFT.STATUS", "x"]), arity("raft.status"));
    assert!(e(&mut con, &["RAFT.FOO"]).starts_with("ERR unknown command 'RAFT.FOO'"));
}

#[test]
fn errors_keep_the_connection_usable() {
    let (c, mut con) = single(&[]);
    let err = e(&mut con, &["FOO", "a", "b"]);
    assert!(
        err.starts_with("ERR unknown command 'FOO', with args beginning with: 'a' 'b'"),
        "{err}"
    );
    assert_eq!(q(&mut con, &["PING"]), simple("PONG"));
    let err = e(&mut con, &["foo"]);
    assert!(
        err.starts_with("ERR unknown command 'foo', with args beginning with:"),
        "{err}"
    );
    assert_eq!(q(&mut con, &["PING"]), simple("PONG"));
    assert_eq!(e(&mut con, &["GET"]), arity("get"));
    assert_eq!(q(&mut con, &["PING"]), simple("PONG"));
    assert_eq!(q(&mut con, &["SET", "s", "abc"]), Value::Okay);
    assert_eq!(e(&mut con, &["INCR", "s"]), NOT_INTEGER);
    assert_eq!(q(&mut con, &["PING"]), simple("PONG"));
    assert_eq!(e(&mut con, &["SET", "k", "v", "BAD"]), "ERR syntax error");
    assert_eq!(q(&mut con, &["GET", "s"]), bulk("abc"));

    // Errors in the middle of a pipeline keep the replies in order.
    let mut raw = Raw::connect(&c.node(0).client_addr());
    raw.send(
        b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$1\r\n1\r\n*2\r\n$3\r\nBAR\r\n$1\r\nz\r\n*2\r\n$4\r\nINCR\r\n$1\r\ns\r\n*2\r\n$3\r\nGET\r\n$1\r\nx\r\n",
    );
    let got = raw.read_lines(5);
    let lines: Vec<&str> = got.split("\r\n").collect();
    assert_eq!(lines[0], "+OK", "{got:?}");
    assert!(
        lines[1].starts_with("-ERR unknown command 'BAR', with args beginning with: 'z'"),
        "{got:?}"
    );
    assert_eq!(lines[2], format!("-{NOT_INTEGER}"), "{got:?}");
    assert_eq!(&lines[3..5], &["$1", "1"], "{got:?}");
}

#[test]
fn a_malformed_request_closes_only_its_connection() {
    let (c, mut con) = single(&[]);
    assert_eq!(q(&mut con, &["SET", "k", "v"]), Value::Okay);
    let addr = c.node(0).client_addr();
    for bad in [
        &b"*1\r\n$abc\r\n"[..],
        b"*2\r\n$3\r\nGET\r\n!!!\r\n",
        b"*1\r\n$3\r\nGETXX\r\n",
        b"SET \"unbalanced\r\n",
    ] {
        let mut raw = Raw::connect(&addr);
        raw.send(bad);
        let (reply, closed) = raw.read_to_close();
        assert!(
            reply.starts_with("-ERR Protocol error: ") && reply.ends_with("\r\n"),
            "{:?} got {reply:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(
            reply.matches("\r\n").count(),
            1,
            "one error line: {reply:?}"
        );
        assert!(closed, "the connection closes after {bad:?}");
        // The other connection, and new ones, still work.
        assert_eq!(q(&mut con, &["GET", "k"]), bulk("v"));
        let mut fresh = c.conn(0);
        assert_eq!(q(&mut fresh, &["PING"]), simple("PONG"));
    }
    assert_eq!(q(&mut con, &["SET", "k", "w"]), Value::Okay);
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("w"));
}

#[test]
fn an_oversized_value_is_refused_and_the_node_keeps_serving() {
    let (c, mut con) = single(&["--max-request-bytes", "4096"]);
    let big = "x".repeat(10_000);
    let err = cmd(&["SET", "big", &big])
        .query::<Value>(&mut con)
        .expect_err("a 10000-byte value over a 4096-byte limit");
    let text = err_text(&err);
    assert!(
        text.starts_with("ERR Protocol error") && text.contains("4096"),
        "the error should say the request is over the 4096-byte limit, got {text:?} ({err:?})"
    );
    let mut con = c.conn(0);
    assert_eq!(q(&mut con, &["PING"]), simple("PONG"));
    assert_eq!(q(&mut con, &["GET", "big"]), Value::Nil);
    let ok = "y".repeat(1000);
    assert_eq!(q(&mut con, &["SET", "ok", &ok]), Value::Okay);
    assert_eq!(q(&mut con, &["GET", "ok"]), bulk(&ok));
    // The limit is per request: a pipeline of many requests may be larger.
    let mut pipe = redis::pipe();
    for i in 0..10 {
        pipe.cmd("SET").arg(format!("p{i}")).arg(&ok);
    }
    let replies: Vec<Value> = pipe.query(&mut con).expect("a 10 KB pipeline");
    assert_eq!(replies, vec![Value::Okay; 10]);
}

/// `--max-request-bytes` limits a request, whatever the size of each of its
/// arguments: several arguments under the limit that together exceed it
/// must be refused too, and so must an inline command over the limit.
#[test]
fn an_oversized_request_of_small_arguments_is_refused() {
    let (c, mut con) = single(&["--max-request-bytes", "4096"]);
    let mut problems = Vec::new();
    let part = "z".repeat(3000);
    match cmd(&["MSET", "a", &part, "b", &part, "c", &part]).query::<Value>(&mut con) {
        Err(err) => {
            let text = err_text(&err);
            if !text.contains("4096") {
                problems.push(format!("the MSET error does not name the limit: {text:?}"));
            }
        }
        Ok(v) => problems.push(format!(
            "a 9 KB MSET (three 3000-byte values) was accepted with {v:?}"
        )),
    }
    let mut raw = Raw::connect(&c.node(0).client_addr());
    raw.send(format!("SET inline {}\r\n", "i".repeat(9000)).as_bytes());
    let reply = raw.read_lines(1);
    if !reply.starts_with("-ERR Protocol error") {
        problems.push(format!(
            "a 9 KB inline SET was answered {reply:?}, not a protocol error"
        ));
    }
    let mut con = c.conn(0);
    let left = q(&mut con, &["EXISTS", "a", "b", "c", "inline"]);
    assert!(
        problems.is_empty() && left == int(0),
        "over a 4096-byte --max-request-bytes: {problems:?}; EXISTS a b c inline = {left:?}"
    );
}

/// Before AUTH, every known command of the right arity gets NOAUTH, as in
/// Redis (which checks the options of a command only when it runs it).
#[test]
fn before_auth_even_bad_options_get_noauth() {
    let c = Cluster::single(&["--requirepass", "pw"]);
    let mut con = c.node(0).conn();
    let mut wrong = Vec::new();
    for args in [
        &["SET", "k", "v", "EX", "10"][..],
        &["SET", "k", "v", "NX", "XX"],
        &["INCRBY", "k", "abc"],
        &["SCAN", "abc"],
        &["FLUSHDB", "LATER"],
    ] {
        let err = e(&mut con, args);
        if err != "NOAUTH Authentication required." {
            wrong.push(format!("{args:?} -> {err:?}"));
        }
    }
    assert!(wrong.is_empty(), "before AUTH: {wrong:?}");
}

#[test]
fn the_connection_limit_refuses_extra_clients() {
    let (c, mut con1) = single(&["--max-connections", "2"]);
    assert_eq!(q(&mut con1, &["PING"]), simple("PONG"));
    // The connections of the leader check close asynchronously: retry.
    let con2 = eventually(EVENTUALLY, "a second connection", || {
        let mut con = c.node(0).try_conn(None).ok()?;
        cmd(&["PING"]).query::<Value>(&mut con).ok()?;
        Some(con)
    });
    let addr = c.node(0).client_addr();
    let mut third = Raw::connect(&addr);
    let (reply, closed) = third.read_to_close();
    assert_eq!(reply, "-ERR max number of clients reached\r\n");
    assert!(closed);
    // With the redis crate, the third connection fails too.
    let refused = match c.node(0).try_conn(None) {
        Err(_) => true,
        Ok(mut con3) => cmd(&["PING"]).query::<Value>(&mut con3).is_err(),
    };
    assert!(refused, "a third client was served");
    // The two still work; when one leaves, a new one is let in.
    assert_eq!(q(&mut con1, &["SET", "k", "v"]), Value::Okay);
    drop(con2);
    let mut con3 = eventually(EVENTUALLY, "a free connection slot", || {
        let mut con = c.node(0).try_conn(None).ok()?;
        let v = cmd(&["GET", "k"]).query::<Value>(&mut con).ok()?;
        assert_eq!(v, bulk("v"));
        Some(con)
    });
    assert_eq!(q(&mut con3, &["PING"]), simple("PONG"));
    let stats = text(&q(&mut con1, &["INFO", "stats"]));
    let rejected: u64 = field(&stats, "rejected_connections")
        .unwrap()
        .parse()
        .unwrap();
    assert!(rejected >= 2, "{stats}");
}

#[test]
fn a_pipeline_of_1000_commands_replies_in_order() {
    let (_c, mut con) = single(&[]);
    let mut pipe = redis::pipe();
    let mut expected = Vec::new();
    let mut counter = 0i64;
    let mut last = String::new();
    let mut total_len = 0i64;
    for i in 0..1000 {
        match i % 5 {
            0 => {
                pipe.cmd("INCR").arg("ctr");
                counter += 1;
                expected.push(int(counter));
            }
            1 => {
                pipe.cmd("GET").arg("ctr");
                expected.push(bulk(&counter.to_string()));
            }
            2 => {
                last = format!("value-{i}");
                pipe.cmd("SET").arg("s").arg(&last);
                expected.push(Value::Okay);
            }
            3 => {
                pipe.cmd("GET").arg("s");
                expected.push(bulk(&last));
            }
            _ => {
                pipe.cmd("APPEND").arg("log").arg("x");
                total_len += 1;
                expected.push(int(total_len));
            }
        }
    }
    let replies: Vec<Value> = pipe.query(&mut con).expect("the pipeline");
    assert_eq!(replies.len(), 1000);
    for (i, (got, want)) in replies.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "reply {i}");
    }
    assert_eq!(q(&mut con, &["GET", "ctr"]), bulk("200"));
    assert_eq!(q(&mut con, &["STRLEN", "log"]), int(200));

    // Twice the default pipeline depth in one go still works.
    let mut pipe = redis::pipe();
    for i in 0..2500 {
        pipe.cmd("INCR").arg("deep");
        if i % 500 == 0 {
            pipe.cmd("GET").arg("deep");
        }
    }
    let replies: Vec<Value> = pipe.query(&mut con).expect("a deep pipeline");
    assert_eq!(replies.len(), 2505);
    assert_eq!(replies[0], int(1));
    assert_eq!(replies[1], bulk("1"));
    assert_eq!(replies.last(), Some(&int(2500)));
    assert_eq!(q(&mut con, &["GET", "deep"]), bulk("2500"));
}

#[test]
fn inline_commands_over_raw_tcp() {
    let (c, _con) = single(&[]);
    let mut raw = Raw::connect(&c.node(0).client_addr());
    raw.send(b"PING\r\n");
    assert_eq!(raw.read_lines(1), "+PONG\r\n");
    raw.send(b"SET greeting \"hello world\"\r\nGET greeting\r\n");
    assert_eq!(raw.read_lines(3), "+OK\r\n$11\r\nhello world\r\n");
    raw.send(b"\r\nEXISTS greeting nope\r\n");
    assert_eq!(raw.read_lines(1), ":1\r\n", "an empty line is skipped");
    raw.send(b"ping\r\n");
    assert_eq!(raw.read_lines(1), "+PONG\r\n");
    raw.send(b"QUIT\r\n");
    let (reply, closed) = raw.read_to_close();
    assert_eq!(reply, "+OK\r\n");
    assert!(closed, "QUIT closes the connection");
}

#[test]
fn a_second_process_on_the_same_data_directory_is_refused() {
    let (c, mut con) = single(&[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_raft-kv"))
        .args([
            "serve",
            "--client-addr",
            "127.0.0.1:0",
            "--peer-addr",
            "127.0.0.1:0",
            "--insecure",
        ])
        .arg("--data-dir")
        .arg(&c.node(0).data_dir)
        .env_remove("RAFT_KV_REQUIREPASS")
        .output()
        .expect("run raft-kv serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second process started: {stderr}");
    assert_eq!(
        out.status.code(),
        Some(i32::from(
            raft_kv::serve::StartErrorKind::DataDirLocked.exit_code()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("is in use by another raft-kv process (pid "),
        "{stderr}"
    );
    // The first one is unharmed.
    assert_eq!(q(&mut con, &["SET", "still", "here"]), Value::Okay);
    assert_eq!(q(&mut con, &["GET", "still"]), bulk("here"));
}
