//! String writes and reads beyond the first ones: GETDEL, SETRANGE,
//! MSETNX, INCRBYFLOAT (see `float`), GETRANGE.

use bytes::{Bytes, BytesMut};

use super::batch::{Items, MAX_STRING};
use super::keyspace::{remove, spot, Spot};
use super::{bulk, key_hash, KvStore};
use crate::frame::{put_bulk, put_error, put_int, put_null};

const TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

impl KvStore {
    /// `GETDEL key`: the value (or null), and the key removed.
    pub(super) fn write_getdel(&mut self, key: &[u8], out: &mut BytesMut) {
        match remove(&mut self.map, key_hash(key), key) {
            Some(v) => {
                self.deadlines.clear(key);
                self.len -= 1;
                bulk(out, &v);
            }
            None => put_null(out),
        }
    }

    /// `SETRANGE key offset value`: the new length. Nothing is set for an
    /// empty value; the key keeps its time to live.
    pub(super) fn write_setrange(
        &mut self,
        key: &[u8],
        offset: u64,
        value: &[u8],
        out: &mut BytesMut,
    ) {
        let total = offset.saturating_add(value.len() as u64);
        match spot(&mut self.map, key_hash(key), key) {
            Spot::Present(v) => {
                if value.is_empty() {
                    return put_int(out, v.len() as i64);
                }
                if total > MAX_STRING as u64 {
                    return put_error(out, TOO_LONG);
                }
                let total = total as usize;
                let mut m = BytesMut::with_capacity(total.max(v.len()));
                m.extend_from_slice(v);
                if m.len() < total {
                    m.resize(total, 0);
                }
                let at = offset as usize;
                m[at..at + value.len()].copy_from_slice(value);
                *v = m.freeze();
                put_int(out, v.len() as i64);
            }
            Spot::Absent(a) => {
                if value.is_empty() {
                    return put_int(out, 0);
                }
                if total > MAX_STRING as u64 {
                    return put_error(out, TOO_LONG);
                }
                let mut m = BytesMut::zeroed(total as usize);
                m[offset as usize..].copy_from_slice(value);
                a.fill(Bytes::copy_from_slice(key), m.freeze());
                self.len += 1;
                put_int(out, total as i64);
            }
        }
    }

    /// `MSETNX key value...`: `:1` and every key set (without a time to
    /// live) if none exists, else `:0` and nothing set.
    pub(super) fn write_msetnx(&mut self, items: Items<'_>, out: &mut BytesMut) {
        if items.step_by(2).any(|k| self.get(k).is_some()) {
            return put_int(out, 0);
        }
        let mut items = items;
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            self.put(k, v);
            self.deadlines.clear(k);
        }
        put_int(out, 1);
    }

    /// `INCRBYFLOAT key by`: the new value, in long double arithmetic as
    /// Redis computes it; the key keeps its time to live.
    pub(super) fn write_incrbyfloat(&mut self, key: &[u8], by: &[u8], out: &mut BytesMut) {
        let current = self.get(key).cloned();
        let old = match &current {
            Some(v) => match super::float::parse(v) {
                Some(x) => x,
                None => return put_error(out, super::float::NOT_FLOAT),
            },
            None => super::float::Ext::ZERO,
        };
        let Some(by) = super::float::parse(by) else {
            return put_error(out, super::float::NOT_FLOAT);
        };
        let Some(sum) = old.add(by) else {
            return put_error(out, "ERR increment would produce NaN or Infinity");
        };
        let text = Bytes::from(sum.to_human());
        match spot(&mut self.map, key_hash(key), key) {
            Spot::Present(v) => *v = text.clone(),
            Spot::Absent(a) => {
                a.fill(Bytes::copy_from_slice(key), text.clone());
                self.len += 1;
            }
        }
        put_bulk(out, &text);
    }

    /// `GETRANGE key start end`: the bytes from `start` to `end`, both
    /// included, negative from the end, as Redis clamps them.
    pub(super) fn getrange(&self, key: &[u8], start: i64, end: i64) -> &[u8] {
        if start < 0 && end < 0 && start > end {
            return &[];
        }
        let Some(v) = self.get(key) else {
            return &[];
        };
        let n = v.len() as i64;
        let clamp = |i: i64| if i < 0 { (n + i).max(0) } else { i };
        let (start, mut end) = (clamp(start), clamp(end));
        if end >= n {
            end = n - 1;
        }
        if start > end || n == 0 {
            return &[];
        }
        &v[start as usize..=end as usize]
    }
}
