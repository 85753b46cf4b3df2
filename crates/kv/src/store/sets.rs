//! The commands on sets: SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER,
//! SCARD, SPOP, SRANDMEMBER, SINTER, SUNION, SDIFF and their STORE forms,
//! SSCAN. Their arguments come as sent ([`TypedCmd`]) and are checked
//! here, in Redis's order.

use bytes::{Bytes, BytesMut};

use super::access::Set;
use super::args::{pop_count, random_count, SYNTAX};
use super::reply::Out;
use super::typed::TypedCmd;
use super::value::{Coll, Value};
use super::KvStore;

impl KvStore {
    /// Answers a read-only command on sets.
    pub(super) fn answer_sets(&self, cmd: TypedCmd, a: &[&[u8]], out: &mut impl Out) {
        use TypedCmd::*;
        let key = a[0];
        match cmd {
            SMembers => self.answer_as(
                key,
                out,
                |o| o.array(0),
                |s: &Set, o| {
                    o.array(s.len());
                    for (m, _) in s.iter() {
                        o.bulk(m);
                    }
                },
            ),
            SIsMember => self.answer_as(
                key,
                out,
                |o| o.int(0),
                |s: &Set, o| o.int(i64::from(s.get(a[1]).is_some())),
            ),
            SMIsMember => {
                let s = match self.get_as::<Set>(key) {
                    Ok(s) => s,
                    Err(e) => return out.error(e),
                };
                out.array(a.len() - 1);
                for m in &a[1..] {
                    out.int(i64::from(s.is_some_and(|s| s.get(m).is_some())));
                }
            }
            SCard => self.answer_as(key, out, |o| o.int(0), |s: &Set, o| o.int(s.len() as i64)),
            SScan => self.answer_scan(a, out, 1, |m, _: &(), o| o.bulk(m)),
            SInter | SUnion | SDiff => match self.combine(cmd, a) {
                Ok(members) => {
                    out.array(members.len());
                    for m in members {
                        out.bulk(m);
                    }
                }
                Err(e) => out.error(e),
            },
            _ => out.error(&format!("ERR '{}' is not answered by a query", cmd.name())),
        }
    }

    /// Applies a write on sets, adding to `changed` the keys it changes.
    pub(super) fn write_sets<'a>(
        &mut self,
        cmd: TypedCmd,
        a: &[&'a [u8]],
        out: &mut BytesMut,
        changed: &mut Vec<&'a [u8]>,
    ) {
        use TypedCmd::*;
        let key = a[0];
        match cmd {
            SAdd => self.change_or_make(key, out, changed, |s: &mut Set, out| {
                let n: i64 = a[1..]
                    .iter()
                    .map(|m| i64::from(s.insert(Bytes::copy_from_slice(m), ())))
                    .sum();
                out.int(n);
                n > 0
            }),
            SRem => self.change_as(
                key,
                out,
                changed,
                |o| o.int(0),
                |s: &mut Set, out| {
                    let n = a[1..].iter().filter(|m| s.remove(m).is_some()).count();
                    out.int(n as i64);
                    n > 0
                },
            ),
            SPop => {
                if self.spop(a, out) {
                    changed.push(key);
                }
            }
            SRandMember => self.srandmember(a, out),
            SInterStore | SUnionStore | SDiffStore => {
                let members: Vec<Bytes> = match self.combine(cmd, &a[1..]) {
                    Ok(m) => m.into_iter().cloned().collect(),
                    Err(e) => return out.error(e),
                };
                // The destination is replaced whatever it held, and loses
                // its time to live; it changes unless it was and stays
                // absent.
                if self.remove_key(key) || !members.is_empty() {
                    changed.push(key);
                }
                out.int(members.len() as i64);
                if members.is_empty() {
                    return;
                }
                let mut s = Coll::default();
                for m in members {
                    s.insert(m, ());
                }
                self.insert_new(key, Value::Set(Box::new(s)));
            }
            _ => out.error(&format!("ERR '{}' is not a write", cmd.name())),
        }
    }

    /// The members of SINTER, SUNION or SDIFF of the sets at `keys`
    /// (missing keys are empty sets), in the first set's order (SINTER,
    /// SDIFF) or the order found; WRONGTYPE if any key holds another type.
    fn combine<'s>(
        &'s self,
        cmd: TypedCmd,
        keys: &[&[u8]],
    ) -> Result<Vec<&'s Bytes>, &'static str> {
        let mut sets = Vec::with_capacity(keys.len());
        for k in keys {
            sets.push(self.get_as::<Set>(k)?);
        }
        let Some(first) = sets[0] else {
            return Ok(match cmd {
                TypedCmd::SUnion | TypedCmd::SUnionStore => union(&sets),
                _ => Vec::new(),
            });
        };
        Ok(match cmd {
            TypedCmd::SInter | TypedCmd::SInterStore => {
                if sets.iter().any(Option::is_none) {
                    return Ok(Vec::new());
                }
                first
                    .iter()
                    .map(|(m, _)| m)
                    .filter(|m| sets[1..].iter().flatten().all(|s| s.get(m).is_some()))
                    .collect()
            }
            TypedCmd::SDiff | TypedCmd::SDiffStore => first
                .iter()
                .map(|(m, _)| m)
                .filter(|m| !sets[1..].iter().flatten().any(|s| s.get(m).is_some()))
                .collect(),
            _ => union(&sets),
        })
    }

    /// `SRANDMEMBER key [count]`: members picked by the log's seed (a
    /// write, so that every node picks the same).
    fn srandmember(&mut self, a: &[&[u8]], out: &mut BytesMut) {
        let mut rng = self.seed.rng();
        let key = a[0];
        if a.len() > 2 {
            return out.error(SYNTAX);
        }
        let Some(count) = a.get(1) else {
            return self.answer_as(
                key,
                out,
                |o| o.null(),
                |s: &Set, o| match s.pick_distinct(1, &mut rng).first() {
                    Some((m, _)) => o.bulk(m),
                    None => o.null(),
                },
            );
        };
        let count = match random_count(count) {
            Ok(c) => c,
            Err(e) => return out.error(&e),
        };
        self.answer_as(
            key,
            out,
            |o| o.array(0),
            |s: &Set, o| {
                let n = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
                let picks = if count >= 0 {
                    s.pick_distinct(n, &mut rng)
                } else {
                    s.pick_repeating(n, &mut rng)
                };
                o.array(picks.len());
                for (m, _) in picks {
                    o.bulk(m);
                }
            },
        );
    }

    /// `SPOP key [count]`: members picked by the log's seed, removed.
    /// True if it removed a member.
    fn spop(&mut self, a: &[&[u8]], out: &mut BytesMut) -> bool {
        let mut rng = self.seed.rng();
        let key = a[0];
        if a.len() > 2 {
            out.error(SYNTAX);
            return false;
        }
        let count = match pop_count(a.get(1)) {
            Ok(c) => c,
            Err(e) => {
                out.error(e);
                return false;
            }
        };
        let picked: Vec<Bytes> = match self.get_as::<Set>(key) {
            Ok(Some(s)) => {
                let n = count.map_or(1, |c| usize::try_from(c).unwrap_or(usize::MAX));
                s.pick_distinct(n, &mut rng)
                    .into_iter()
                    .map(|(m, _)| m.clone())
                    .collect()
            }
            Ok(None) => Vec::new(),
            Err(e) => {
                out.error(e);
                return false;
            }
        };
        if let Some(Value::Set(s)) = self.get_mut(key) {
            for m in &picked {
                s.remove(m);
            }
        }
        self.drop_if_empty(key);
        match count {
            None => match picked.first() {
                Some(m) => out.bulk(m),
                None => out.null(),
            },
            Some(_) => {
                out.array(picked.len());
                for m in &picked {
                    out.bulk(m);
                }
            }
        }
        !picked.is_empty()
    }
}

/// The members of any of the sets, each once, in the order found.
fn union<'s>(sets: &[Option<&'s Set>]) -> Vec<&'s Bytes> {
    let mut seen: Set = Coll::default();
    let mut members = Vec::new();
    for s in sets.iter().flatten() {
        for (m, _) in s.iter() {
            if seen.insert(m.clone(), ()) {
                members.push(m);
            }
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::KvStore;
    use crate::frame::Frame;

    #[test]
    fn sets_like_redis() {
        let mut s = KvStore::new();
        assert_eq!(run(&mut s, "SADD s a b c a"), int(3));
        assert_eq!(run(&mut s, "SADD s c d"), int(1));
        assert_eq!(run(&mut s, "SCARD s"), int(4));
        assert_eq!(run(&mut s, "SISMEMBER s a"), int(1));
        assert_eq!(run(&mut s, "SISMEMBER s z"), int(0));
        assert_eq!(
            run(&mut s, "SMISMEMBER s a z d"),
            Frame::Array(vec![int(1), int(0), int(1)])
        );
        assert_eq!(
            items(run(&mut s, "SMEMBERS s")),
            strs(&["a", "b", "c", "d"])
        );
        run(&mut s, "SADD t c d e");
        assert_eq!(items(run(&mut s, "SINTER s t")), strs(&["c", "d"]));
        assert_eq!(
            items(run(&mut s, "SUNION s t nokey")),
            strs(&["a", "b", "c", "d", "e"])
        );
        assert_eq!(items(run(&mut s, "SDIFF s t")), strs(&["a", "b"]));
        assert_eq!(items(run(&mut s, "SINTER s nokey")), strs(&[]));
        assert_eq!(items(run(&mut s, "SDIFF nokey s")), strs(&[]));
        assert_eq!(
            items(run(&mut s, "SUNION nokey s")),
            strs(&["a", "b", "c", "d"])
        );
        run(&mut s, "SET str v");
        assert_eq!(run(&mut s, "SINTER nokey str"), wrong());
        assert_eq!(run(&mut s, "SUNION s str"), wrong());
        // Stores replace the destination, whatever its type.
        assert_eq!(run(&mut s, "SINTERSTORE str s t"), int(2));
        assert_eq!(run(&mut s, "TYPE str"), Frame::Simple("set".into()));
        assert_eq!(run(&mut s, "SDIFFSTORE d s t"), int(2));
        assert_eq!(run(&mut s, "SUNIONSTORE u s t"), int(5));
        assert_eq!(run(&mut s, "SINTERSTORE d s nokey"), int(0));
        assert_eq!(run(&mut s, "EXISTS d"), int(0));
        assert_eq!(run(&mut s, "SREM s a b z"), int(2));
        assert_eq!(run(&mut s, "SREM s c d"), int(2));
        assert_eq!(run(&mut s, "EXISTS s"), int(0));
        assert_eq!(run(&mut s, "SREM s c"), int(0));
    }
}
