//! Fast deterministic hashing for the checkers: the fingerprints that
//! compare entries and states across nodes, and the hasher of the
//! checker's maps. The standard library's SipHash resists keys chosen by an
//! attacker, which a simulation does not have, at several times the cost;
//! the checkers hash every entry a node appends, commits or applies.

use std::hash::{BuildHasherDefault, Hasher};

/// Mixes `x` so that every bit of the input moves every bit of the output
/// (the finalizer of MurmurHash3, a bijection).
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A hasher that folds 64-bit words into its state one at a time (each
/// step a bijection of the state, so two inputs that differ in one word
/// never meet) and mixes the state once at the end.
#[derive(Debug, Default, Clone, Copy)]
pub struct WordHasher(u64);

impl WordHasher {
    /// Folds in one word.
    #[inline]
    pub fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(last));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.word(i as u64);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.word(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.word(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        mix(self.0)
    }
}

/// Builds [`WordHasher`]s, for `HashMap`s of the checker.
pub type BuildWordHasher = BuildHasherDefault<WordHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_hash(b: &[u8]) -> u64 {
        let mut h = WordHasher::default();
        h.write(b);
        h.finish()
    }

    #[test]
    fn byte_strings_that_differ_in_one_byte_or_length_hash_apart() {
        let base = bytes_hash(b"0123456789abcdefXYZ");
        assert_ne!(base, bytes_hash(b"0123456789abcdefXYz"));
        assert_ne!(base, bytes_hash(b"0123456789abcdefXY"));
        assert_ne!(bytes_hash(b"ab"), bytes_hash(b"ab\0"));
        assert_eq!(base, bytes_hash(b"0123456789abcdefXYZ"));
    }
}
