//! The snapshot format of the store: what [`super::KvStore`] writes and
//! reads back.

use bytes::Bytes;

use super::value::Value;
use super::{key_hash, lookup, Deadlines, Map, Reader, Slot};
use crate::acl::{self, Users};

/// CRC-32C (Castagnoli), the checksum of the file store too.
pub(super) fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

// The snapshot: "RKVS", version 5, the number of keys (u64 LE), then each
// key as a u32-LE length and the bytes and its value (`Value::put_snapshot`:
// a type code, then a string, or a count and the fields and values,
// members or elements), then the user table (acl::codec) as a u32-LE
// length and the bytes, then the log's time (u64 LE, ms since the epoch),
// the number of keys with a deadline (u64 LE) and each such key (u32-LE
// length, bytes) with its deadline (u64 LE), earliest first; then the key
// versions (`tx`: the floor, u64 LE, the number of keys, u64 LE, each key
// with its version, u64 LE, oldest first); then the CRC-32C of all that
// (u32 LE).
//
// Older versions still load. Version 4 is version 5 with every value a
// string, as a u32-LE length and the bytes; version 3 has no key versions
// either (it reads as "floor 0, no versions"); version 2 no times either
// ("time 0, no deadlines"); version 1 no user table either ("no users
// yet"). Typed values were once written as a version 4 without key
// versions, never by a released build: such a snapshot does not load (it
// is read as strings with key versions and fails its checks).
pub(super) const SNAP_MAGIC: &[u8; 4] = b"RKVS";
pub(super) const SNAP_VERSION: u8 = 5;
pub(super) const SNAP_VERSION_WITH_STRINGS_ONLY: u8 = 4;
pub(super) const SNAP_VERSION_WITHOUT_VERSIONS: u8 = 3;
pub(super) const SNAP_VERSION_WITHOUT_TIMES: u8 = 2;
pub(super) const SNAP_VERSION_WITHOUT_USERS: u8 = 1;
pub(super) const SNAP_HEADER: usize = 4 + 1 + 8;

/// What a snapshot holds.
pub(super) struct Restored {
    pub(super) map: Map,
    pub(super) len: usize,
    pub(super) users: Users,
    pub(super) now_ms: u64,
    pub(super) deadlines: Deadlines,
    pub(super) versions: super::tx::Versions,
}

/// Decodes a snapshot; keys and values are slices of `s` (no copy).
pub(super) fn decode_snapshot(s: &Bytes) -> Result<Restored, String> {
    if s.len() < SNAP_HEADER + 4 {
        return Err(format!(
            "a raft-kv snapshot has at least {} bytes, this one has {}",
            SNAP_HEADER + 4,
            s.len()
        ));
    }
    if &s[..4] != SNAP_MAGIC {
        return Err(format!(
            "not a raft-kv snapshot (it starts with {:02x?}, not \"RKVS\")",
            &s[..4]
        ));
    }
    let version = s[4];
    if !(SNAP_VERSION_WITHOUT_USERS..=SNAP_VERSION).contains(&version) {
        return Err(format!(
            "raft-kv snapshot version {version} is not supported (only {SNAP_VERSION_WITHOUT_USERS} to {SNAP_VERSION})"
        ));
    }
    let end = s.len() - 4;
    let stored = u32::from_le_bytes([s[end], s[end + 1], s[end + 2], s[end + 3]]);
    let computed = crc32c(&s[..end]);
    if stored != computed {
        return Err(format!(
            "the snapshot is corrupt: its checksum is {stored:#010x} but its \
             bytes give {computed:#010x}"
        ));
    }
    let mut rd = Reader {
        buf: &s[SNAP_HEADER - 8..end],
    };
    let count = rd.u64().unwrap_or(0);
    // Every pair takes at least its two 4-byte lengths.
    if count > (rd.buf.len() / 8) as u64 {
        return Err(format!(
            "the snapshot claims {count} keys but has only {} bytes of data",
            rd.buf.len()
        ));
    }
    let base = s.as_ptr() as usize;
    let slice = |rd: &mut Reader<'_>| {
        rd.str().map(|b| {
            let at = b.as_ptr() as usize - base;
            s.slice(at..at + b.len())
        })
    };
    let mut pairs = Vec::with_capacity(count as usize);
    for i in 1..=count {
        let k = slice(&mut rd)
            .ok_or_else(|| format!("the snapshot is cut off in key {i} of {count}"))?;
        let v = if version <= SNAP_VERSION_WITH_STRINGS_ONLY {
            Value::Str(slice(&mut rd).ok_or_else(|| {
                format!("the snapshot is cut off in the value of key {i} of {count}")
            })?)
        } else {
            let whole = |b: &[u8]| {
                let at = b.as_ptr() as usize - base;
                s.slice(at..at + b.len())
            };
            Value::read_snapshot(&mut rd, &whole).map_err(|e| {
                let shown = String::from_utf8_lossy(&k[..k.len().min(64)]).into_owned();
                format!("the snapshot's value of key {i} of {count} ({shown:?}) is bad: {e}")
            })?
        };
        pairs.push((key_hash(&k), k, v));
    }
    let users = if version == SNAP_VERSION_WITHOUT_USERS {
        Users::default()
    } else {
        let blob = rd
            .str()
            .ok_or("the snapshot is cut off in its user table")?;
        match acl::codec::decode(blob)? {
            (users, []) => users,
            (_, rest) => return Err(format!("{} stray bytes after the user table", rest.len())),
        }
    };
    let mut timed = Vec::new();
    let mut now_ms = 0;
    if version > SNAP_VERSION_WITHOUT_TIMES {
        let (Some(now), Some(n)) = (rd.u64(), rd.u64()) else {
            return Err("the snapshot is cut off in its time".into());
        };
        now_ms = now;
        // Every deadline takes at least 12 bytes.
        if n > (rd.buf.len() / 12) as u64 {
            return Err(format!(
                "the snapshot claims {n} deadlines but has only {} bytes left",
                rd.buf.len()
            ));
        }
        for i in 1..=n {
            let (Some(k), Some(at)) = (rd.str(), rd.u64()) else {
                return Err(format!("the snapshot is cut off in deadline {i} of {n}"));
            };
            if at <= now_ms {
                return Err(format!(
                    "the snapshot's deadline {i} ({at} ms) is not after its time ({now_ms} ms)"
                ));
            }
            timed.push((k, at));
        }
    }
    let versions = if version > SNAP_VERSION_WITHOUT_VERSIONS {
        super::tx::Versions::decode(&mut rd)?
    } else {
        super::tx::Versions::default()
    };
    if !rd.is_empty() {
        return Err(format!(
            "{} stray bytes after the {count} keys of the snapshot",
            rd.buf.len()
        ));
    }
    // Snapshots are written in this order: sorting is then a linear check.
    pairs.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut slots: Vec<(u64, Slot)> = Vec::with_capacity(pairs.len());
    for (h, k, v) in pairs {
        match slots.last_mut() {
            Some((last, slot)) if *last == h => {
                let shown = String::from_utf8_lossy(&k[..k.len().min(64)]).into_owned();
                if !slot.add(k, v) {
                    return Err(format!("the snapshot holds the key {shown:?} twice"));
                }
            }
            _ => slots.push((h, Slot::One(k, v))),
        }
    }
    let map: Map = slots.into_iter().collect();
    let mut deadlines = Deadlines::default();
    for (k, at) in timed {
        let shown = String::from_utf8_lossy(&k[..k.len().min(64)]).into_owned();
        if lookup(&map, key_hash(k), k).is_none() {
            return Err(format!(
                "the snapshot has a deadline for {shown:?}, which it does not hold"
            ));
        }
        if deadlines.get(k).is_some() {
            return Err(format!("the snapshot has two deadlines for {shown:?}"));
        }
        deadlines.set(k, at);
    }
    Ok(Restored {
        map,
        len: count as usize,
        users,
        now_ms,
        deadlines,
        versions,
    })
}

impl super::KvStore {
    /// The store in the version 3 format, every value a string and no key
    /// versions (for tests of old snapshots).
    #[cfg(test)]
    pub(super) fn snapshot_v3(&self) -> Vec<u8> {
        self.snapshot_of_strings(SNAP_VERSION_WITHOUT_VERSIONS)
    }

    /// The store in the version 4 format, every value a string, with key
    /// versions (for tests of old snapshots).
    #[cfg(test)]
    pub(super) fn snapshot_v4(&self) -> Vec<u8> {
        self.snapshot_of_strings(SNAP_VERSION_WITH_STRINGS_ONLY)
    }

    #[cfg(test)]
    fn snapshot_of_strings(&self, version: u8) -> Vec<u8> {
        use bytes::BufMut;
        let mut b = bytes::BytesMut::new();
        b.put_slice(SNAP_MAGIC);
        b.put_u8(version);
        b.put_u64_le(self.len as u64);
        for (k, v) in self.iter() {
            super::put_str(&mut b, k);
            super::put_str(
                &mut b,
                v.as_str().expect("a version 3 or 4 snapshot holds strings"),
            );
        }
        let mut users = Vec::new();
        acl::codec::encode(&self.users, &mut users);
        super::put_str(&mut b, &users);
        super::expiry::put_snapshot_part(&mut b, self.now_ms, &self.deadlines);
        if version > SNAP_VERSION_WITHOUT_VERSIONS {
            self.versions.put_snapshot_part(&mut b);
        }
        let crc = crc32c(&b);
        b.put_u32_le(crc);
        b.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use crate::frame::Frame;
    use raft_node::StateMachine;

    #[test]
    fn snapshots_carry_every_type_and_old_ones_still_load() {
        let mut s = KvStore::new();
        run(&mut s, "SET str v");
        run(&mut s, "HSET h a 1 b 2");
        run(&mut s, "SADD s x y z");
        run(&mut s, "EXPIRE h 1000");
        for i in 0..100 {
            run(&mut s, &format!("HSET big f{i} {i}"));
        }
        let snap = s.snapshot();
        let mut t = KvStore::new();
        t.restore(snap.clone()).unwrap();
        assert_eq!(t, s);
        assert_eq!(t.snapshot(), snap);
        assert_eq!(run(&mut t, "HGET h b"), bulk("2"));
        assert_eq!(run(&mut t, "SCARD s"), int(3));
        assert_eq!(run(&mut t, "PEXPIRETIME h"), int(1_000_000));
        // A corrupt type code is named, and changes nothing.
        let mut bad = snap.to_vec();
        let at = bad.windows(3).position(|w| w == b"str").unwrap() + 3;
        assert_eq!(bad[at], 0, "the type code of a string");
        bad[at] = 9;
        let end = bad.len() - 4;
        let crc = super::super::crc32c(&bad[..end]).to_le_bytes();
        bad[end..].copy_from_slice(&crc);
        let e = t.restore(Bytes::from(bad)).unwrap_err().to_string();
        assert!(
            e.contains("type code 9 is unknown") && e.contains("\"str\""),
            "{e}"
        );
        assert_eq!(t, s);
        // Version 3: every value a string.
        let mut v3 = BytesMut::new();
        v3.extend_from_slice(b"RKVS");
        v3.put_u8(3);
        v3.put_u64_le(1);
        super::super::put_str(&mut v3, b"old");
        super::super::put_str(&mut v3, b"value");
        let mut users = Vec::new();
        crate::acl::codec::encode(&crate::acl::Users::default(), &mut users);
        super::super::put_str(&mut v3, &users);
        v3.put_u64_le(0);
        v3.put_u64_le(0);
        let crc = super::super::crc32c(&v3);
        v3.put_u32_le(crc);
        let mut o = KvStore::new();
        o.restore(v3.freeze()).unwrap();
        assert_eq!(run(&mut o, "GET old"), bulk("value"));
        assert_eq!(run(&mut o, "TYPE old"), Frame::Simple("string".into()));
    }

    #[test]
    fn snapshot_round_trip() {
        let mut s = KvStore::new();
        let mut rng = Xorshift(3);
        for i in 0..500 {
            let k = format!("key:{}", rng.below(300));
            match i % 5 {
                0 => w1(&mut s, Write::Del { keys: vec![b(&k)] }),
                1 => w1(&mut s, incr(&k, 3)),
                _ => w1(&mut s, set(&k, &"x".repeat(rng.below(40) as usize))),
            };
        }
        w1(&mut s, set("", ""));
        let snap = s.snapshot();
        let mut t = KvStore::new();
        w1(&mut t, set("gone", "1"));
        t.restore(snap.clone()).unwrap();
        assert_eq!(t, s);
        assert_eq!(t.len(), s.len());
        assert_eq!(t.snapshot(), snap);
        assert_eq!(get(&t, "gone"), Frame::Null);
        // The empty store too.
        let empty = KvStore::new().snapshot();
        t.restore(empty).unwrap();
        assert!(t.is_empty());
        assert_eq!(t, KvStore::new());
    }

    #[test]
    fn bad_snapshots_are_rejected_and_change_nothing() {
        let mut s = KvStore::new();
        w(&mut s, &[set("a", "1"), set("b", "22"), set("c", "333")]);
        // Older versions have no key versions: none here either (the
        // table is 16 bytes, the floor and the count).
        s.versions = tx::Versions::default();
        let snap = s.snapshot();
        let mut t = KvStore::new();
        w1(&mut t, set("mine", "x"));
        let before = t.clone();
        let mut check = |bytes: Vec<u8>, says: &str| {
            let e = t.restore(Bytes::from(bytes)).unwrap_err();
            assert!(e.to_string().contains(says), "{e:?} should say {says:?}");
            assert_eq!(t, before);
        };
        // Every truncation.
        for cut in 0..snap.len() {
            check(snap[..cut].to_vec(), "");
        }
        check(vec![], "at least");
        let mut v = snap.to_vec();
        v[0] = b'X';
        check(v, "not a raft-kv snapshot");
        let mut v = snap.to_vec();
        v[4] = 6;
        check(v, "version 6");
        // Any flipped bit breaks the checksum.
        for at in 5..snap.len() {
            let mut v = snap.to_vec();
            v[at] ^= 0x10;
            check(v, "checksum");
        }
        // Well-checksummed but inconsistent bodies.
        let reseal = |mut body: Vec<u8>| {
            let crc = crc32c(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        // The keys' part is checked on a version 1 body (no user table).
        let users_len = {
            let mut u = Vec::new();
            acl::codec::encode(&s.users, &mut u);
            4 + u.len()
        };
        // Version 3 (strings only), and version 2: the same without the
        // times (16 bytes: no deadlines).
        let v3 = s.snapshot_v3();
        let mut v3_store = KvStore::new();
        v3_store.restore(Bytes::from(v3.clone())).unwrap();
        assert_eq!(v3_store, s, "a version 3 snapshot reads as strings");
        // Version 4 (strings only, with key versions) reads as strings too.
        let v4 = s.snapshot_v4();
        let mut v4_store = KvStore::new();
        v4_store.restore(Bytes::from(v4)).unwrap();
        assert_eq!(v4_store, s, "a version 4 snapshot reads as strings");
        let mut v2_body = v3[..v3.len() - 4 - 16].to_vec();
        v2_body[4] = 2;
        let mut v2 = s.clone();
        v2.restore(Bytes::from(reseal(v2_body.clone()))).unwrap();
        assert_eq!(v2, s, "a version 2 snapshot reads with no deadlines");
        let mut body = v2_body[..v2_body.len() - users_len].to_vec();
        body[4] = 1;
        let mut v1 = s.clone();
        v1.restore(Bytes::from(reseal(body.clone()))).unwrap();
        assert_eq!(v1, s, "a version 1 snapshot reads with no users");
        let mut v = v2_body.clone();
        v.truncate(v.len() - 1);
        check(reseal(v), "cut off in its user table");
        v2_body.push(0);
        check(reseal(v2_body.clone()), "stray bytes");
        let last = v2_body.len() - 2;
        v2_body[last] = 9;
        check(reseal(v2_body), "user table");
        let mut v = body.to_vec();
        v[5..13].copy_from_slice(&4u64.to_le_bytes());
        check(reseal(v), "cut off in key 4 of 4");
        let mut v = body.to_vec();
        v[5..13].copy_from_slice(&u64::MAX.to_le_bytes());
        check(reseal(v), "claims");
        let mut v = body.to_vec();
        v[5..13].copy_from_slice(&2u64.to_le_bytes());
        check(reseal(v), "stray bytes");
        let mut v = body.to_vec();
        v.truncate(v.len() - 1);
        check(reseal(v), "cut off in the value of key 3");
        // A key twice.
        let mut v = b"RKVS\x01".to_vec();
        v.extend_from_slice(&2u64.to_le_bytes());
        for _ in 0..2 {
            v.extend_from_slice(&[1, 0, 0, 0, b'k', 0, 0, 0, 0]);
        }
        check(reseal(v), "twice");
    }
}
