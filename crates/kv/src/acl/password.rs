//! Passwords as Redis keeps them: the SHA-256 of the password, shown as 64
//! lower-case hex digits (`#<hex>` in `ACL LIST`). Only hashes are kept,
//! replicated or written to disk; they are compared in constant time.

use sha2::{Digest, Sha256};

/// The SHA-256 of a password.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct PasswordHash(pub [u8; 32]);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordHash({})", self.to_hex())
    }
}

impl PasswordHash {
    /// The hash of `password`.
    pub fn of(password: &[u8]) -> PasswordHash {
        PasswordHash(Sha256::digest(password).into())
    }

    /// Parses the form Redis accepts after `#` and `!`: exactly 64
    /// lower-case hexadecimal digits. `None` for anything else.
    pub fn from_hex(hex: &[u8]) -> Option<PasswordHash> {
        if hex.len() != 64 {
            return None;
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(PasswordHash(out))
    }

    /// The 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 15)]));
        }
        s
    }

    /// Whether this is the hash of the empty password (refused everywhere:
    /// a user without a password is made with `nopass`).
    pub fn is_of_empty_password(&self) -> bool {
        *self == PasswordHash::of(b"")
    }

    /// Compares in time independent of where the hashes differ.
    pub fn matches(&self, other: &PasswordHash) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // Keep the comparison from being short-circuited.
        std::hint::black_box(diff) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_in_lower_case_hex() {
        // sha256("foobar"), as Redis shows it for `>foobar`.
        let h = PasswordHash::of(b"foobar");
        assert_eq!(
            h.to_hex(),
            "c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2"
        );
        assert_eq!(PasswordHash::from_hex(h.to_hex().as_bytes()), Some(h));
        assert!(PasswordHash::of(b"").is_of_empty_password());
        assert!(!h.is_of_empty_password());
    }

    #[test]
    fn only_64_lower_case_hex_digits_parse() {
        let good = "c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2";
        assert!(PasswordHash::from_hex(good.as_bytes()).is_some());
        for bad in [
            "",
            &good[..63],
            &format!("{good}0"),
            &good.to_uppercase(),
            &good.replace('c', "g"),
        ] {
            assert_eq!(PasswordHash::from_hex(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn matching_compares_every_byte() {
        let a = PasswordHash::of(b"secret");
        assert!(a.matches(&PasswordHash::of(b"secret")));
        let mut b = a;
        b.0[31] ^= 1;
        assert!(!a.matches(&b));
        let mut c = a;
        c.0[0] ^= 0x80;
        assert!(!a.matches(&c));
    }
}
