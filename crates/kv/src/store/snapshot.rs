//! The snapshot format of the store: what [`super::KvStore`] writes and
//! reads back.

use bytes::Bytes;

use super::{crc32c, key_hash, Map, Reader, Slot};
use crate::acl::{self, Users};

// The snapshot: "RKVS", version 2, the number of keys (u64 LE), then each
// key and value as a u32-LE length and the bytes, then the user table
// (acl::codec) as a u32-LE length and the bytes, then the CRC-32C of all
// that (u32 LE). Version 1 (no user table) reads as "no users yet".
pub(super) const SNAP_MAGIC: &[u8; 4] = b"RKVS";
pub(super) const SNAP_VERSION: u8 = 2;
pub(super) const SNAP_VERSION_WITHOUT_USERS: u8 = 1;
pub(super) const SNAP_HEADER: usize = 4 + 1 + 8;

/// Decodes a snapshot; keys and values are slices of `s` (no copy).
pub(super) fn decode_snapshot(s: &Bytes) -> Result<(Map, usize, Users), String> {
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
    if s[4] != SNAP_VERSION && s[4] != SNAP_VERSION_WITHOUT_USERS {
        return Err(format!(
            "raft-kv snapshot version {} is not supported (only {SNAP_VERSION_WITHOUT_USERS} and {SNAP_VERSION})",
            s[4]
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
        let v = slice(&mut rd)
            .ok_or_else(|| format!("the snapshot is cut off in the value of key {i} of {count}"))?;
        pairs.push((key_hash(&k), k, v));
    }
    let users = if s[4] == SNAP_VERSION_WITHOUT_USERS {
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
    Ok((slots.into_iter().collect(), count as usize, users))
}
