//! The snapshot format of the store: what [`super::KvStore`] writes and
//! reads back.

use bytes::Bytes;

use super::value::Value;
use super::{crc32c, key_hash, lookup, Deadlines, Map, Reader, Slot};
use crate::acl::{self, Users};

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
