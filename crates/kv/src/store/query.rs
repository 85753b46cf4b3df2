//! Queries: a batch of reads answered from one state, plain
//! ([`super::encode_reads`]) or bounded ([`super::encode_bounded_reads`]:
//! every reply sized before any is built, and only those that fit are),
//! each read sent to its family's file.

use bytes::{BufMut, Bytes, BytesMut};

use super::batch::{array_len, batch_error, bulk_len, decimal_len, decode_query, len32, ReplyRoom};
use super::expiry::TtlKind;
use super::reply::{bulk, Answer};
use super::value::{Value, WRONGTYPE};
use super::{KvStore, Read};
use crate::frame::{put_error, put_int};

impl KvStore {
    /// Answers a query, plain ([`super::encode_reads`]) or bounded
    /// ([`super::encode_bounded_reads`]), into `out`.
    pub(super) fn answer(&self, query: &[u8], out: &mut Answer) {
        match decode_query(query) {
            Err(why) => out.chunk.extend_from_slice(&batch_error("query", &why)),
            Ok((None, reads)) => reads.into_iter().for_each(|op| self.read(op, out)),
            Ok((Some(room), reads)) => self.bounded_query(room, reads, out),
        }
    }

    /// Answers a bounded query into `out`: see
    /// [`super::encode_bounded_reads`]. The counts are written first, so
    /// that they begin the first part.
    fn bounded_query(&self, room: ReplyRoom, reads: Vec<Read<&[u8]>>, out: &mut Answer) {
        let ReplyRoom { soft, hard, limit } = room;
        // First the sizes: which reads are answered, which refused, and the
        // answer's length; then the answer, allocated once (in one buffer;
        // in parts, its framing and short values).
        let mut refusals: Vec<Option<Bytes>> = Vec::new();
        let mut total = 0usize;
        for op in &reads {
            let n = self.reply_size(op);
            let (n, refusal) = if n > limit {
                let mut e = BytesMut::new();
                put_error(
                    &mut e,
                    &format!(
                        "ERR the reply would be {n} bytes, more than the client output buffer limit of {limit} bytes (--client-output-buffer-limit)"
                    ),
                );
                (e.len(), Some(e.freeze()))
            } else {
                (n, None)
            };
            let room = if refusals.is_empty() { hard } else { soft };
            if total.saturating_add(n) > room {
                break;
            }
            total += n;
            refusals.push(refusal);
        }
        let answered = len32(refusals.len());
        let refused = len32(refusals.iter().filter(|e| e.is_some()).count());
        // The slack keeps the replies' own reservations from growing it.
        out.reserve(8 + total + 64);
        out.chunk.put_u32_le(answered);
        out.chunk.put_u32_le(refused);
        for (refusal, op) in refusals.into_iter().zip(reads) {
            match refusal {
                Some(e) => out.chunk.extend_from_slice(&e),
                None => self.read(op, out),
            }
        }
    }

    /// The length of the reply [`KvStore::read`] would write for `op`, found
    /// without building it.
    pub(super) fn reply_size(&self, op: &Read<&[u8]>) -> usize {
        let value = |k: &[u8]| match self.get(k) {
            Some(Value::Str(v)) => bulk_len(v.len()),
            Some(_) => WRONGTYPE.len() + 3,
            None => 5,
        };
        match *op {
            Read::Get { key } => value(key),
            // MGET answers null for a key of another type.
            Read::MGet { ref keys } => {
                array_len(keys.len())
                    + keys
                        .iter()
                        .map(|k| {
                            self.get_str(k)
                                .ok()
                                .flatten()
                                .map_or(5, |v| bulk_len(v.len()))
                        })
                        .fold(0, usize::saturating_add)
            }
            Read::Typed { cmd, ref args } => self.typed_reply_size(cmd, args),
            Read::Strlen { key } if self.get_str(key).is_err() => WRONGTYPE.len() + 3,
            // An integer: at most ":-9223372036854775808\r\n".
            Read::Exists { .. }
            | Read::Strlen { .. }
            | Read::Ttl { .. }
            | Read::DbSize
            | Read::VolatileLen => 24,
            Read::GetRange { key, start, end } => match self.getrange(key, start, end) {
                Ok(v) => bulk_len(v.len()),
                Err(e) => e.len() + 3,
            },
            Read::Versions { ref keys } => {
                array_len(keys.len())
                    + keys
                        .iter()
                        .map(|k| 3 + decimal_len(self.versions.get(k)))
                        .sum::<usize>()
            }
            Read::Keys { pattern } => self.keys_reply_size(pattern),
            Read::Scan {
                cursor,
                pattern,
                count,
            } => self.scan_reply_size(cursor, pattern, count),
        }
    }

    /// Writes the reply to `op`: stored values and keys through
    /// [`Answer::bulk`] (copied, or shared in an answer in parts), the rest
    /// into its current chunk.
    pub(super) fn read(&self, op: Read<&[u8]>, answer: &mut Answer) {
        // Room for a short reply (a bulk reply reserves its own): the
        // output starts empty so that one GET allocates once.
        if !matches!(op, Read::Get { .. }) {
            answer.chunk.reserve(24);
        }
        match op {
            Read::Get { key } => self.read_get(key, answer),
            Read::MGet { keys } => self.read_mget(&keys, answer),
            Read::Exists { keys } => self.read_exists(&keys, &mut answer.chunk),
            Read::Strlen { key } => self.read_strlen(key, &mut answer.chunk),
            Read::Typed { cmd, args } => self.read_typed(cmd, &args, answer),
            Read::Ttl { key, kind } => {
                let wall_ms = match kind {
                    TtlKind::Ttl | TtlKind::PTtl => self.wall_clock.now_ms(),
                    TtlKind::ExpireTime | TtlKind::PExpireTime => 0,
                };
                self.read_ttl(key, kind, wall_ms, &mut answer.chunk)
            }
            Read::DbSize => put_int(&mut answer.chunk, self.len as i64),
            Read::VolatileLen => put_int(&mut answer.chunk, self.deadlines.len() as i64),
            Read::Keys { pattern } => self.read_keys(pattern, answer),
            Read::Scan {
                cursor,
                pattern,
                count,
            } => self.read_scan(cursor, pattern, count, answer),
            Read::GetRange { key, start, end } => match self.getrange(key, start, end) {
                Ok(v) => bulk(&mut answer.chunk, v),
                Err(e) => put_error(&mut answer.chunk, e),
            },
            Read::Versions { keys } => self.read_versions(&keys, &mut answer.chunk),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use raft_node::StateMachine;

    #[test]
    fn reply_sizes_are_found_before_the_replies_are_built() {
        let mut s = KvStore::new();
        w(
            &mut s,
            &[
                set("k", "value"),
                set("a", ""),
                set("big", &"x".repeat(12_345)),
            ],
        );
        for i in 0..50 {
            w(&mut s, &[set(&format!("a{i}"), "1")]);
        }
        let mut reads = every_read();
        reads.push(Read::MGet {
            keys: vec![b("big"), b("nope"), b("k")],
        });
        reads.push(Read::Keys { pattern: b("a1*") });
        for read in reads {
            let q = encode_reads(std::slice::from_ref(&read));
            let (_, ops) = decode_query(&q).unwrap();
            let size = s.reply_size(&ops[0]);
            let built = s.query(&q).len();
            match read {
                Read::Exists { .. }
                | Read::Strlen { .. }
                | Read::Ttl { .. }
                | Read::DbSize
                | Read::VolatileLen => {
                    assert!(built <= size, "{read:?}: {built} > {size}")
                }
                _ => assert_eq!(built, size, "{read:?}"),
            }
        }
    }

    #[test]
    fn a_bounded_query_answers_what_fits_in_order_and_refuses_what_never_fits() {
        let mut s = KvStore::new();
        w(&mut s, &[set("v", &"x".repeat(1000)), set("k", "1")]);
        let get = |k: &str| Read::Get { key: b(k) };
        let v = bulk_len(1000);
        let answer = |reads: &[Read], soft, hard, limit| {
            let a = s.query(&encode_bounded_reads(
                reads,
                ReplyRoom { soft, hard, limit },
            ));
            let a = split_bounded_answer(std::slice::from_ref(&a)).unwrap();
            let replies = a.replies.concat();
            assert_eq!(
                a.refused,
                frames(&replies).iter().filter(|f| is_error(f)).count()
            );
            (a.answered, frames(&replies))
        };
        // Three of five fit the soft room.
        let (n, f) = answer(
            &[get("v"), get("v"), get("v"), get("v"), get("k")],
            3 * v,
            v,
            1 << 20,
        );
        assert_eq!((n, f.len()), (3, 3));
        // The first must fit the hard room, or nothing is answered.
        let (n, f) = answer(&[get("v"), get("k")], 1 << 20, v - 1, 1 << 20);
        assert_eq!((n, f.len()), (0, 0));
        // Over the limit: an error naming it, and the next reads go on.
        let mget = Read::MGet {
            keys: vec![b("v"); 1000],
        };
        let (n, f) = answer(&[mget, get("k")], 1 << 20, 1 << 20, 64 << 10);
        assert_eq!(n, 2);
        assert_eq!(
            f[0],
            err(&format!(
                "ERR the reply would be {} bytes, more than the client output buffer limit of 65536 bytes (--client-output-buffer-limit)",
                array_len(1000) + 1000 * v
            ))
        );
        assert_eq!(f[1], bulk_f("1"));
        // Garbage is an error, not a panic.
        let e = s.query(&[BOUNDED_READS_FORMAT, 1, 2]);
        assert!(frames(&e).iter().all(is_error));
    }

    #[test]
    fn an_answer_in_parts_is_the_whole_answer_with_long_values_shared() {
        let mut s = KvStore::new();
        let long_key = "K".repeat(SHARED_VALUE_BYTES + 10);
        w(
            &mut s,
            &[
                set("long", &"L".repeat(SHARED_VALUE_BYTES)),
                set("short", &"s".repeat(SHARED_VALUE_BYTES - 1)),
                set("big", &"x".repeat(100_000)),
                set("empty", ""),
                set(&long_key, "v"),
            ],
        );
        for i in 0..20 {
            w(&mut s, &[set(&format!("a{i}"), &i.to_string())]);
        }
        let mut reads = every_read();
        reads.extend([
            Read::Get { key: b("long") },
            Read::Get { key: b("short") },
            Read::Get { key: b("big") },
            Read::Get { key: b("empty") },
            Read::MGet {
                keys: vec![
                    b("long"),
                    b("nope"),
                    b("short"),
                    b("big"),
                    b("long"),
                    b("empty"),
                ],
            },
            Read::Keys { pattern: b("*") },
            Read::Keys { pattern: b("K*") },
            Read::Scan {
                cursor: 0,
                pattern: None,
                count: 1000,
            },
            Read::Strlen { key: b("big") },
            Read::Exists {
                keys: vec![b("big"), b("nope")],
            },
        ]);
        // Each read alone, then all of them in one query.
        for read in &reads {
            let q = encode_reads(std::slice::from_ref(read));
            assert_eq!(s.query_parts(&q).concat(), s.query(&q), "{read:?}");
        }
        let q = encode_reads(&reads);
        let parts = s.query_parts(&q);
        assert_eq!(parts.concat(), s.query(&q));
        // Values and keys of SHARED_VALUE_BYTES or more are the stored
        // bytes themselves; shorter ones are copied.
        let stored = |k: &str| {
            let (key, v) = s.iter().find(|(key, _)| key[..] == *k.as_bytes()).unwrap();
            (key, v.as_str().unwrap())
        };
        let is_part = |v: &Bytes| {
            parts
                .iter()
                .any(|p| p.as_ptr() == v.as_ptr() && p.len() == v.len())
        };
        assert!(is_part(stored("long").1));
        assert!(is_part(stored("big").1));
        assert!(is_part(stored(&long_key).0));
        assert!(!is_part(stored("short").1));
        let stored_at: Vec<*const u8> = s
            .iter()
            .flat_map(|(k, v)| [k.as_ptr(), v.as_str().unwrap().as_ptr()])
            .collect();
        let ours = encode_reads(&reads[every_read().len()..]);
        let shared = s
            .query_parts(&ours)
            .iter()
            .filter(|p| stored_at.contains(&p.as_ptr()))
            .count();
        // GET long, GET big, MGET's three, KEYS * and KEYS K*, SCAN.
        assert_eq!(shared, 2 + 3 + 1 + 1 + 1);
        // Bounded queries too: their counts begin the first part.
        let rooms = [
            (usize::MAX, usize::MAX, usize::MAX),
            (150_000, 200_000, 150_000),
            (0, 100_000, 100_000),
            (0, 10, 10),
        ];
        for (soft, hard, limit) in rooms {
            let q = encode_bounded_reads(&reads, ReplyRoom { soft, hard, limit });
            let (parts, whole) = (s.query_parts(&q), s.query(&q));
            assert_eq!(parts.concat(), whole);
            let a = split_bounded_answer(&parts).unwrap();
            let b_ = split_bounded_answer(std::slice::from_ref(&whole)).unwrap();
            assert_eq!((a.answered, a.refused), (b_.answered, b_.refused));
            assert_eq!(a.replies.concat(), b_.replies.concat());
        }
        // Errors, and an empty query.
        for q in [&[READS_FORMAT, 99][..], &[BOUNDED_READS_FORMAT, 1, 2], &[7]] {
            assert_eq!(s.query_parts(q).concat(), s.query(q));
        }
        assert!(s.query_parts(&encode_reads(&[])).is_empty());
        assert!(s.query(&encode_reads(&[])).is_empty());
    }
}
