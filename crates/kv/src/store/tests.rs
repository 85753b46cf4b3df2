//! Tests of the store as a whole: the entry and query formats (every write
//! and read round trips with its exact size), undecodable and fuzzed input,
//! batches applied in order, replicas agreeing. Each command family's own
//! tests are beside it.

use super::testing::*;
use super::*;
use crate::frame::Frame;
use raft_node::example::KvCommand;
use raft_node::StateMachine;

#[test]
fn a_batch_applies_in_order() {
    let mut s = KvStore::new();
    let out = w(
        &mut s,
        &[
            set("n", "10"),
            incr("n", 5),
            Write::Append {
                key: b("n"),
                value: b("0"),
            },
            incr("n", 1),
            set("n", "x"),
            incr("n", 1),
            Write::Del { keys: vec![b("n")] },
            incr("n", 1),
        ],
    );
    let not_int = err("ERR value is not an integer or out of range");
    assert_eq!(
        out,
        vec![
            ok(),
            Frame::Integer(15),
            Frame::Integer(3),
            Frame::Integer(151),
            ok(),
            not_int,
            Frame::Integer(1),
            Frame::Integer(1)
        ]
    );
    // A later query sees it all; several reads answer in order.
    let reads = r(
        &s,
        &[
            Read::Get { key: b("n") },
            Read::DbSize,
            Read::Strlen { key: b("n") },
        ],
    );
    assert_eq!(
        reads,
        vec![bulk_f("1"), Frame::Integer(1), Frame::Integer(1)]
    );
    // An empty batch has no replies.
    assert!(s.apply(2, &encode_writes(&[])).is_empty());
    assert!(s.query(&encode_reads(&[])).is_empty());
}

fn owned_write(op: WriteOp<'_>) -> Write {
    let c = Bytes::copy_from_slice;
    match op {
        WriteOp::Set {
            key,
            value,
            condition,
            get,
            ttl,
        } => Write::Set {
            key: c(key),
            value: c(value),
            condition,
            get,
            ttl,
        },
        WriteOp::Del(keys) => Write::Del {
            keys: keys.map(c).collect(),
        },
        WriteOp::IncrBy { key, by } => Write::IncrBy { key: c(key), by },
        WriteOp::Append { key, value } => Write::Append {
            key: c(key),
            value: c(value),
        },
        WriteOp::MSet(items) => {
            let flat: Vec<Bytes> = items.map(c).collect();
            Write::MSet {
                pairs: flat
                    .chunks(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect(),
            }
        }
        WriteOp::GetSet { key, value } => Write::GetSet {
            key: c(key),
            value: c(value),
        },
        WriteOp::FlushDb => Write::FlushDb,
        WriteOp::Cas { key, expected, new } => Write::Cas {
            key: c(key),
            expected: expected.map(c),
            new: c(new),
        },
        WriteOp::AclSetUser { name, rules } => Write::AclSetUser {
            name: c(name),
            rules: rules
                .map(|r| acl::Rule::parse(r).expect("a rule written by encode_writes"))
                .collect(),
        },
        WriteOp::AclDelUser(names) => Write::AclDelUser {
            names: names.map(c).collect(),
        },
        WriteOp::AclInit(password) => Write::AclInit { password },
        WriteOp::Expire {
            key,
            when_ms,
            command,
            condition,
        } => Write::Expire {
            key: c(key),
            when_ms,
            command,
            condition,
        },
        WriteOp::Persist(key) => Write::Persist { key: c(key) },
        WriteOp::GetEx { key, op } => Write::GetEx {
            key: c(key),
            ttl: match op.mode {
                1 => GetExTtl::Persist,
                m => GetExTtl::Set(GetExTime {
                    seconds: m % 2 == 0,
                    absolute: m >= 4,
                    time: c(op.time),
                }),
            },
        },
        WriteOp::Typed(cmd, args) => Write::Typed {
            cmd,
            args: args.map(c).collect(),
        },
        WriteOp::GetDel(key) => Write::GetDel { key: c(key) },
        WriteOp::SetRange { key, offset, value } => Write::SetRange {
            key: c(key),
            offset,
            value: c(value),
        },
        WriteOp::MSetNx(items) => {
            let flat: Vec<Bytes> = items.map(c).collect();
            Write::MSetNx {
                pairs: flat
                    .chunks(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect(),
            }
        }
        WriteOp::IncrByFloat { key, by } => Write::IncrByFloat {
            key: c(key),
            by: c(by),
        },
        WriteOp::Exec(e) => tx::owned_exec(e, owned_write, owned_read),
    }
}

fn owned_read(op: ReadOp<'_>) -> Read {
    let c = Bytes::copy_from_slice;
    match op {
        ReadOp::Get(key) => Read::Get { key: c(key) },
        ReadOp::MGet(keys) => Read::MGet {
            keys: keys.map(c).collect(),
        },
        ReadOp::Exists(keys) => Read::Exists {
            keys: keys.map(c).collect(),
        },
        ReadOp::Strlen(key) => Read::Strlen { key: c(key) },
        ReadOp::Ttl(key, kind) => Read::Ttl { key: c(key), kind },
        ReadOp::DbSize => Read::DbSize,
        ReadOp::VolatileLen => Read::VolatileLen,
        ReadOp::Keys(p) => Read::Keys { pattern: c(p) },
        ReadOp::Typed(cmd, args) => Read::Typed {
            cmd,
            args: args.map(c).collect(),
        },
        ReadOp::Scan {
            cursor,
            pattern,
            count,
        } => Read::Scan {
            cursor,
            pattern: pattern.map(c),
            count,
        },
        ReadOp::GetRange(key, start, end) => Read::GetRange {
            key: c(key),
            start,
            end,
        },
        ReadOp::Versions(keys) => Read::Versions {
            keys: keys.map(c).collect(),
        },
    }
}

#[test]
fn encodings_round_trip_with_exact_sizes() {
    let writes = every_write();
    let e = encode_writes(&writes);
    assert_eq!(e.len(), 1 + writes.iter().map(write_size).sum::<usize>());
    let (body, n) = check_batch(&e, WRITES_FORMAT, parse_write).unwrap();
    assert_eq!(n, writes.len());
    let mut rd = Reader { buf: body };
    let back: Vec<Write> = (0..n)
        .map(|_| owned_write(parse_write(&mut rd).unwrap()))
        .collect();
    assert_eq!(back, writes);

    let reads = every_read();
    let e = encode_reads(&reads);
    assert_eq!(e.len(), 1 + reads.iter().map(read_size).sum::<usize>());
    let (body, n) = check_batch(&e, READS_FORMAT, parse_read).unwrap();
    let mut rd = Reader { buf: body };
    let back: Vec<Read> = (0..n)
        .map(|_| owned_read(parse_read(&mut rd).unwrap()))
        .collect();
    assert_eq!(back, reads);
}

fn one_error(out: &[u8]) -> String {
    match &frames(out)[..] {
        [Frame::Error(e)] if e.starts_with("ERR not a raft-kv ") => e.clone(),
        other => panic!("expected one error, got {other:?}"),
    }
}

#[test]
fn undecodable_entries_and_queries_get_one_error() {
    let mut s = KvStore::new();
    w1(&mut s, set("k", "v"));
    let before = s.clone();
    let writes = encode_writes(&every_write());
    let reads = encode_reads(&every_read());
    let mut bad: Vec<Vec<u8>> = vec![
        vec![],
        b"SET k v".to_vec(),
        vec![0xD7, 99],
        vec![0xD7, W_SET, 0x80, 0, 0, 0, 0, 0, 0, 0, 0], // unknown flag
        vec![0xD7, W_SET, 0x60, 0, 0, 0, 0, 0, 0, 0, 0], // unknown command
        vec![0xD7, W_SET, 0x28, 0, 0, 0, 0, 0, 0, 0, 0], // SETEX without a time
        vec![0xD7, W_SET, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2], // a time cut off
        vec![0xD7, W_EXPIRE, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // bad command
        vec![0xD7, W_EXPIRE, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // bad condition
        vec![0xD7, W_GETEX, 6, 0, 0, 0, 0],              // bad mode
        vec![0xD7, W_GETEX, 0, 0, 0, 0, 0],              // bad mode
        vec![0xD7, W_SET, 3, 0, 0, 0, 0, 0, 0, 0, 0],    // NX and XX
        vec![0xD7, W_DEL, 0xff, 0xff, 0xff, 0xff],       // a huge count
        vec![0xD7, W_MSET, 0xff, 0xff, 0xff, 0x7f],
        vec![0xD7, W_CAS, 0, 0, 0, 0, 2, 0, 0, 0, 0], // bad flag
        reads.to_vec(),                               // a query is no entry
        KvCommand::Set {
            key: b("k"),
            value: b("v"),
        }
        .encode()
        .to_vec(),
    ];
    // Every proper prefix of a valid batch that cuts a command.
    for cut in 1..writes.len() {
        let mut r = Reader {
            buf: &writes[1..cut],
        };
        let mut whole = true;
        while !r.is_empty() {
            whole = parse_write(&mut r).is_ok();
        }
        if !whole {
            bad.push(writes[..cut].to_vec());
        }
    }
    for entry in &bad {
        let e = one_error(&s.apply(5, entry));
        assert!(e.contains("command batch"), "{e}");
        assert_eq!(s, before, "a bad entry changes nothing: {entry:?}");
    }
    let mut bad_queries: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xD2, 0],
        vec![0xD2, R_SCAN, 0, 0],
        vec![0xD2, R_TTL, 4, 0, 0, 0, 0],
        vec![
            0xD2, R_SCAN, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9,
        ],
        writes.to_vec(),
    ];
    for cut in 2..reads.len() - 1 {
        bad_queries.push(reads[..cut].to_vec());
    }
    let mut cut_somewhere = 0;
    for q in &bad_queries {
        let out = s.query(q);
        // Some prefixes end between two commands: those are valid.
        if frames(&out).iter().all(|f| !is_error(f)) {
            continue;
        }
        cut_somewhere += 1;
        assert!(one_error(&out).contains("query batch"));
    }
    assert!(cut_somewhere > reads.len() / 2);
    // The error names the problem.
    assert!(one_error(&s.apply(1, &[])).contains("empty"));
    assert!(one_error(&s.apply(1, b"x")).contains("format byte 0x78"));
    assert!(one_error(&s.apply(1, &[0xD7, 7, 42])).contains("command 2: unknown command"));
    assert!(one_error(&s.apply(1, &[0xD7, 1, 0, 9])).contains("command 1: cut off"));
}

#[test]
fn fuzzed_input_never_panics() {
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut s = KvStore::new();
    let valid_w = encode_writes(&every_write());
    let valid_r = encode_reads(&every_read());
    let snap = {
        let mut t = KvStore::new();
        w(&mut t, &every_write()[..5]);
        t.snapshot()
    };
    for i in 0..6000 {
        // Random bytes, and random damage to valid bytes.
        let input: Vec<u8> = match i % 4 {
            0 => rng.bytes(64),
            1 => {
                let mut v = rng.bytes(48);
                v.insert(
                    0,
                    if rng.below(2) == 0 {
                        WRITES_FORMAT
                    } else {
                        READS_FORMAT
                    },
                );
                v
            }
            2 => {
                let base = [&valid_w, &valid_r, &snap][rng.below(3) as usize];
                let mut v = base.to_vec();
                for _ in 0..=rng.below(3) {
                    let at = rng.below(v.len() as u64) as usize;
                    v[at] = rng.next() as u8;
                }
                v
            }
            _ => {
                let base = [&valid_w, &valid_r, &snap][rng.below(3) as usize];
                base[..rng.below(base.len() as u64 + 1) as usize].to_vec()
            }
        };
        let out = s.apply(i, &input);
        frames(&out);
        frames(&s.query(&input));
        let kept = s.clone();
        if s.restore(Bytes::from(input)).is_err() {
            assert_eq!(s, kept, "a failed restore changes nothing");
        }
        if s.len() > 1000 {
            s = KvStore::new();
        }
    }
}

#[test]
fn replicas_applying_the_same_entries_agree() {
    let mut rng = Xorshift(2024);
    let mut entries = Vec::new();
    for _ in 0..400 {
        let mut batch = Vec::new();
        for _ in 0..=rng.below(4) {
            let k = format!("k{}", rng.below(50));
            let v = format!("{}", rng.below(1000));
            batch.push(match rng.below(9) {
                0 => set(&k, &v),
                1 => set_with(&k, &v, SetCondition::IfAbsent, rng.below(2) == 0),
                2 => Write::Del {
                    keys: vec![b(&k), b(&format!("k{}", rng.below(50)))],
                },
                3 => incr(&k, rng.below(100) as i64 - 50),
                4 => Write::Append {
                    key: b(&k),
                    value: b(&v),
                },
                5 => Write::MSet {
                    pairs: vec![(b(&k), b(&v)), (b("k0"), b(&v))],
                },
                6 => Write::GetSet {
                    key: b(&k),
                    value: b(&v),
                },
                7 if rng.below(30) == 0 => Write::FlushDb,
                _ => Write::Cas {
                    key: b(&k),
                    expected: (rng.below(2) == 0).then(|| b(&v)),
                    new: b(&v),
                },
            });
        }
        entries.push(encode_writes(&batch));
    }
    let mut a = KvStore::new();
    let mut b_ = KvStore::new();
    let mut outs_a = Vec::new();
    let mut outs_b = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        outs_a.push(a.apply(i as u64 + 1, e));
        // The second replica restarts from a snapshot halfway.
        if i == 200 {
            let snap = b_.snapshot();
            b_ = KvStore::new();
            b_.restore(snap).unwrap();
        }
        outs_b.push(b_.apply(i as u64 + 1, e));
    }
    assert_eq!(outs_a, outs_b);
    assert_eq!(a.snapshot(), b_.snapshot());
    assert_eq!(a, b_);
    assert_eq!(a.len(), a.iter().count());
    let q = encode_reads(&every_read());
    assert_eq!(a.query(&q), b_.query(&q));
}
