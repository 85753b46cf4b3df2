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

#[test]
fn encodings_round_trip_with_exact_sizes() {
    let writes = every_write();
    let e = encode_writes(&writes);
    assert_eq!(e[0], WRITES_FORMAT);
    assert_eq!(
        e.len(),
        1 + writes.iter().map(encoded_write_len).sum::<usize>()
    );
    let back: Vec<Write> = decode_writes(&e).unwrap().iter().map(owned).collect();
    assert_eq!(back, writes);

    let reads = every_read();
    let e = encode_reads(&reads);
    let (room, back) = decode_query(&e).unwrap();
    assert_eq!(room, None);
    let back: Vec<Read> = back.iter().map(owned).collect();
    assert_eq!(back, reads);
    let room = ReplyRoom {
        soft: 1,
        hard: 1 << 40,
        limit: usize::MAX,
    };
    let bounded = encode_bounded_reads(&reads, room);
    let (got, back) = decode_query(&bounded).unwrap();
    assert_eq!(got, Some(room));
    assert_eq!(back.len(), reads.len());
}

/// An entry of an EXEC holding an EXEC holding... `depth` EXECs, the
/// innermost holding a FLUSHDB (written by hand: the encoder refuses
/// nothing).
fn nested_exec(depth: usize) -> Vec<u8> {
    let exec = postcard::to_stdvec(&Write::<Bytes>::Exec {
        watches: vec![],
        ops: vec![],
    })
    .unwrap();
    // The variant, no watches, then one op: a write...
    let (tag, rest) = exec.split_last().unwrap();
    assert_eq!(*tag, 0, "an empty list of ops");
    let mut entry = vec![WRITES_FORMAT];
    for _ in 0..depth {
        entry.extend_from_slice(rest);
        entry.extend_from_slice(&[1, 0]); // one op, `TxOp::Write`
    }
    entry.extend_from_slice(&postcard::to_stdvec(&Write::<Bytes>::FlushDb).unwrap());
    entry
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
        vec![WRITES_FORMAT, 99],                              // no such write
        vec![WRITES_FORMAT, 0, 1, b'k'],                      // a SET cut off
        vec![WRITES_FORMAT, 1, 0xff, 0xff, 0xff, 0xff, 0x0f], // a huge count
        reads.to_vec(),                                       // a query is no entry
        nested_exec(2),                                       // an EXEC inside an EXEC
        nested_exec(1_000_000),                               // deep enough to overflow a stack
        KvCommand::Set {
            key: b("k"),
            value: b("v"),
        }
        .encode()
        .to_vec(),
    ];
    // Every proper prefix of a valid batch that cuts a command.
    for cut in 2..writes.len() {
        if decode_writes(&writes[..cut]).is_err() {
            bad.push(writes[..cut].to_vec());
        }
    }
    assert!(bad.len() > writes.len() / 2);
    for entry in &bad {
        let e = one_error(&s.apply(5, entry));
        assert!(e.contains("command batch"), "{e}");
        assert_eq!(s, before, "a bad entry changes nothing: {entry:?}");
    }
    let mut bad_queries: Vec<Vec<u8>> = vec![
        vec![],
        vec![READS_FORMAT, 99],
        vec![READS_FORMAT, 0],
        vec![BOUNDED_READS_FORMAT, 0xff],
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
    let unknown = one_error(&s.apply(1, &[WRITES_FORMAT, 6, 42]));
    assert!(unknown.contains("command 2: "), "{unknown}");
    let cut = one_error(&s.apply(1, &[WRITES_FORMAT, 0, 9]));
    assert!(cut.contains("command 1: "), "{cut}");
    let nested = one_error(&s.apply(1, &nested_exec(2)));
    assert!(nested.contains("an EXEC inside an EXEC"), "{nested}");
}

#[test]
fn fuzzed_input_never_panics() {
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut s = KvStore::new();
    let valid_w = encode_writes(&every_write());
    let valid_r = encode_reads(&every_read());
    let legacy = Bytes::from_static(include_bytes!("legacy/every-write.bin"));
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
                let base = [&valid_w, &valid_r, &snap, &legacy][rng.below(4) as usize];
                let mut v = base.to_vec();
                for _ in 0..=rng.below(3) {
                    let at = rng.below(v.len() as u64) as usize;
                    v[at] = rng.next() as u8;
                }
                v
            }
            _ => {
                let base = [&valid_w, &valid_r, &snap, &legacy][rng.below(4) as usize];
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
