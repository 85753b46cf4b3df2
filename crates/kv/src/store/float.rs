//! INCRBYFLOAT's numbers: Redis computes them as C `long double`, which on
//! x86-64 is the x87 80-bit format (a 64-bit significand), reads them with
//! `strtold` and writes them with `"%.17Lf"` less trailing zeros. raft-kv
//! does the same in software, exactly (big integers, round to nearest,
//! ties to even), so that every node, whatever its processor, computes the
//! same bytes, and those of a Redis server on x86-64.

use std::cmp::Ordering;

/// The longest text Redis reads as a long double (`MAX_LONG_DOUBLE_CHARS`).
const MAX_CHARS: usize = 5 * 1024;

/// The exponent of the smallest denormal (2^-16445) as `mant * 2^exp`.
const MIN_EXP: i64 = -16445;
/// The largest exponent of a finite value as `mant * 2^exp`, `mant < 2^64`.
const MAX_EXP: i64 = 16320;

/// An x87 extended value: `(-1)^neg * mant * 2^exp`, or an infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ext {
    neg: bool,
    mant: u64,
    exp: i64,
    inf: bool,
}

impl Ext {
    /// Zero.
    pub(super) const ZERO: Ext = Ext {
        neg: false,
        mant: 0,
        exp: 0,
        inf: false,
    };

    /// The sum, rounded; `None` if it is infinite.
    pub(super) fn add(self, other: Ext) -> Option<Ext> {
        if self.inf || other.inf {
            return None;
        }
        let e = self.exp.min(other.exp);
        let a = Big::from(self.mant).shl((self.exp - e) as usize);
        let b = Big::from(other.mant).shl((other.exp - e) as usize);
        let (neg, sum) = if self.neg == other.neg {
            (self.neg, a.add(&b))
        } else {
            match a.cmp(&b) {
                Ordering::Less => (other.neg, b.sub(&a)),
                Ordering::Greater => (self.neg, a.sub(&b)),
                // x + -x is +0 when rounding to nearest.
                Ordering::Equal => return Some(Ext::ZERO),
            }
        };
        round(neg, &sum, &Big::from(1), e).ok()
    }

    /// `"%.17Lf"` less trailing zeros (and the point), "-0" as "0": what
    /// Redis's `ld2string` writes in its human mode.
    pub(super) fn to_human(self) -> String {
        let ten17 = Big::from(100_000_000_000_000_000u64);
        let x = Big::from(self.mant).mul(&ten17);
        let r = if self.exp >= 0 {
            x.shl(self.exp as usize)
        } else {
            x.shr_round_even((-self.exp) as usize)
        };
        let digits = r.to_decimal();
        let (int, frac) = if digits.len() > 17 {
            digits.split_at(digits.len() - 17)
        } else {
            ("", digits.as_str())
        };
        let int = if int.is_empty() { "0" } else { int };
        let frac = format!("{frac:0>17}");
        let frac = frac.trim_end_matches('0');
        let mut s = String::new();
        if self.neg {
            s.push('-');
        }
        s.push_str(int);
        if !frac.is_empty() {
            s.push('.');
            s.push_str(frac);
        }
        if s == "-0" {
            s = "0".into();
        }
        s
    }
}

/// Reads a value as Redis's `string2ld` does: all of it `strtold` syntax
/// (decimal, hexadecimal, "inf", "infinity"), no leading space, not NaN,
/// neither overflowing nor underflowing to zero.
pub(super) fn parse(s: &[u8]) -> Option<Ext> {
    if s.is_empty() || s.len() >= MAX_CHARS {
        return None;
    }
    let (neg, body) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    if lower == b"inf" || lower == b"infinity" {
        return Some(Ext {
            neg,
            mant: 0,
            exp: 0,
            inf: true,
        });
    }
    let value = if lower.starts_with(b"0x") {
        parse_hex(neg, &lower[2..])?
    } else {
        parse_decimal(neg, body)?
    };
    Some(value)
}

/// Digits with an optional point, then an optional exponent (`e` or `p`)
/// of decimal digits: the digits (as one integer), how many were after
/// the point, and the exponent.
fn split_number(body: &[u8], radix: u32, exp_char: u8) -> Option<(Big, i64, i64)> {
    let mut n = Big::from(0);
    let mut any = false;
    let mut after_point: i64 = 0;
    let mut seen_point = false;
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c == b'.' && !seen_point {
            seen_point = true;
        } else if let Some(d) = (c as char).to_digit(radix) {
            any = true;
            n = n.mul_small(radix).add(&Big::from(u64::from(d)));
            if seen_point {
                after_point += 1;
            }
        } else {
            break;
        }
        i += 1;
    }
    if !any {
        return None;
    }
    let mut exp: i64 = 0;
    if i < body.len() {
        if body[i].to_ascii_lowercase() != exp_char {
            return None;
        }
        i += 1;
        let (eneg, rest) = match body.get(i) {
            Some(b'-') => (true, &body[i + 1..]),
            Some(b'+') => (false, &body[i + 1..]),
            _ => (false, &body[i..]),
        };
        if rest.is_empty() || !rest.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for &d in rest {
            // Past this every nonzero value over- or underflows.
            exp = (exp * 10 + i64::from(d - b'0')).min(1 << 40);
        }
        if eneg {
            exp = -exp;
        }
    }
    Some((n, after_point, exp))
}

fn parse_decimal(neg: bool, body: &[u8]) -> Option<Ext> {
    let (n, after_point, exp) = split_number(body, 10, b'e')?;
    if n.is_zero() {
        return Some(Ext { neg, ..Ext::ZERO });
    }
    let k = exp - after_point;
    // The number of digits, within one.
    let digits = n.bits() as i64 * 30103 / 100_000 + 1;
    // 1.19e4932 is the largest value, 3.6e-4951 the smallest.
    if digits + k > 4934 || digits + k < -4952 {
        return None;
    }
    let (num, den) = if k >= 0 {
        (n.mul(&Big::pow5(k as u32)), Big::from(1))
    } else {
        (n, Big::pow5((-k) as u32))
    };
    round(neg, &num, &den, k).ok().filter(|v| v.mant != 0)
}

fn parse_hex(neg: bool, body: &[u8]) -> Option<Ext> {
    let (n, after_point, exp) = split_number(body, 16, b'p')?;
    if n.is_zero() {
        return Some(Ext { neg, ..Ext::ZERO });
    }
    let e = exp - 4 * after_point;
    let bits = n.bits() as i64;
    if bits + e > 16400 || bits + e < -16500 {
        return None;
    }
    round(neg, &n, &Big::from(1), e)
        .ok()
        .filter(|v| v.mant != 0)
}

/// `num / den * 2^e` rounded to the nearest extended value (ties to even);
/// `Err` if it is too large.
fn round(neg: bool, num: &Big, den: &Big, e: i64) -> Result<Ext, ()> {
    if num.is_zero() {
        return Ok(Ext { neg, ..Ext::ZERO });
    }
    // q = floor(num * 2^s / den) has 66 or 67 bits.
    let s = den.bits() as i64 - num.bits() as i64 + 66;
    let mut sticky;
    let scaled = if s >= 0 {
        sticky = false;
        num.shl(s as usize)
    } else {
        sticky = num.low_bits_nonzero((-s) as usize);
        num.shr((-s) as usize)
    };
    let (q, rest_nonzero) = scaled.div_small_quotient(den);
    sticky |= rest_nonzero;
    let mut q = q;
    let mut exp = e - s;
    while q >> 65 != 0 {
        sticky |= q & 1 != 0;
        q >>= 1;
        exp += 1;
    }
    // q: 64 bits of significand and a rounding bit.
    exp += 1;
    if exp < MIN_EXP {
        let shift = (MIN_EXP - exp) as u32;
        if shift >= 66 {
            sticky |= q != 0;
            q = 0;
        } else {
            sticky |= q & ((1u128 << shift) - 1) != 0;
            q >>= shift;
        }
        exp = MIN_EXP;
    }
    let half = q & 1 != 0;
    let mut mant = q >> 1;
    if half && (sticky || mant & 1 != 0) {
        mant += 1;
        if mant >> 64 != 0 {
            mant >>= 1;
            exp += 1;
        }
    }
    if exp > MAX_EXP {
        return Err(());
    }
    Ok(Ext {
        neg,
        mant: mant as u64,
        exp,
        inf: false,
    })
}

/// A non-negative big integer, 32-bit limbs, least significant first, no
/// high zero limbs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Big(Vec<u32>);

impl From<u64> for Big {
    fn from(n: u64) -> Big {
        Big(vec![n as u32, (n >> 32) as u32]).trimmed()
    }
}

impl Big {
    fn trimmed(mut self) -> Big {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
        self
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn bits(&self) -> usize {
        match self.0.last() {
            None => 0,
            Some(top) => 32 * self.0.len() - top.leading_zeros() as usize,
        }
    }

    fn pow5(k: u32) -> Big {
        let mut n = Big::from(1);
        let mut left = k;
        while left > 0 {
            let step = left.min(13); // 5^13 < 2^32
            n = n.mul_small(5u32.pow(step));
            left -= step;
        }
        n
    }

    fn mul_small(&self, m: u32) -> Big {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut carry = 0u64;
        for &l in &self.0 {
            let t = u64::from(l) * u64::from(m) + carry;
            out.push(t as u32);
            carry = t >> 32;
        }
        out.push(carry as u32);
        Big(out).trimmed()
    }

    fn mul(&self, other: &Big) -> Big {
        let mut out = vec![0u32; self.0.len() + other.0.len() + 1];
        for (i, &a) in self.0.iter().enumerate() {
            let mut carry = 0u64;
            for (j, &b) in other.0.iter().enumerate() {
                let t = u64::from(out[i + j]) + u64::from(a) * u64::from(b) + carry;
                out[i + j] = t as u32;
                carry = t >> 32;
            }
            let mut k = i + other.0.len();
            while carry != 0 {
                let t = u64::from(out[k]) + carry;
                out[k] = t as u32;
                carry = t >> 32;
                k += 1;
            }
        }
        Big(out).trimmed()
    }

    fn add(&self, other: &Big) -> Big {
        let n = self.0.len().max(other.0.len());
        let mut out = Vec::with_capacity(n + 1);
        let mut carry = 0u64;
        for i in 0..n {
            let t = u64::from(*self.0.get(i).unwrap_or(&0))
                + u64::from(*other.0.get(i).unwrap_or(&0))
                + carry;
            out.push(t as u32);
            carry = t >> 32;
        }
        out.push(carry as u32);
        Big(out).trimmed()
    }

    /// `self - other`, `self >= other`.
    fn sub(&self, other: &Big) -> Big {
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for (i, &l) in self.0.iter().enumerate() {
            let mut t = i64::from(l) - i64::from(*other.0.get(i).unwrap_or(&0)) - borrow;
            borrow = 0;
            if t < 0 {
                t += 1 << 32;
                borrow = 1;
            }
            out.push(t as u32);
        }
        Big(out).trimmed()
    }

    fn shl(&self, n: usize) -> Big {
        if self.is_zero() {
            return self.clone();
        }
        let (limbs, bits) = (n / 32, n % 32);
        let mut out = vec![0u32; limbs];
        let mut carry = 0u32;
        for &l in &self.0 {
            if bits == 0 {
                out.push(l);
            } else {
                out.push((l << bits) | carry);
                carry = l >> (32 - bits);
            }
        }
        out.push(carry);
        Big(out).trimmed()
    }

    fn shr(&self, n: usize) -> Big {
        let (limbs, bits) = (n / 32, n % 32);
        if limbs >= self.0.len() {
            return Big(Vec::new());
        }
        let src = &self.0[limbs..];
        let mut out = Vec::with_capacity(src.len());
        for (i, &l) in src.iter().enumerate() {
            let hi = if bits == 0 {
                0
            } else {
                src.get(i + 1).map_or(0, |h| h << (32 - bits))
            };
            out.push((l >> bits) | hi);
        }
        Big(out).trimmed()
    }

    /// Whether any of the low `n` bits is set.
    fn low_bits_nonzero(&self, n: usize) -> bool {
        let (limbs, bits) = (n / 32, n % 32);
        self.0.iter().take(limbs).any(|&l| l != 0)
            || (bits > 0
                && self
                    .0
                    .get(limbs)
                    .is_some_and(|l| l & ((1 << bits) - 1) != 0))
    }

    /// `self >> n` rounded to nearest, ties to even.
    fn shr_round_even(&self, n: usize) -> Big {
        let q = self.shr(n);
        if n == 0 {
            return q;
        }
        let half = self.shr(n - 1).0.first().is_some_and(|l| l & 1 != 0);
        let below = self.low_bits_nonzero(n - 1);
        let odd = q.0.first().is_some_and(|l| l & 1 != 0);
        if half && (below || odd) {
            q.add(&Big::from(1))
        } else {
            q
        }
    }

    /// The quotient `self / den` (known to be below 2^67) and whether there
    /// is a remainder.
    fn div_small_quotient(&self, den: &Big) -> (u128, bool) {
        let mut r = self.clone();
        let mut q: u128 = 0;
        for i in (0..68).rev() {
            let d = den.shl(i);
            if r.cmp(&d) != Ordering::Less {
                r = r.sub(&d);
                q |= 1u128 << i;
            }
        }
        (q, !r.is_zero())
    }

    fn cmp(&self, other: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }

    fn to_decimal(&self) -> String {
        if self.is_zero() {
            return "0".into();
        }
        let mut parts = Vec::new();
        let mut n = self.0.clone();
        while !n.is_empty() {
            let mut rem = 0u64;
            for l in n.iter_mut().rev() {
                let t = (rem << 32) | u64::from(*l);
                *l = (t / 1_000_000_000) as u32;
                rem = t % 1_000_000_000;
            }
            while n.last() == Some(&0) {
                n.pop();
            }
            parts.push(rem as u32);
        }
        let mut s = parts.pop().map(|p| p.to_string()).unwrap_or_default();
        for p in parts.iter().rev() {
            s.push_str(&format!("{p:09}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(a: &str, b: &str) -> Result<String, &'static str> {
        let a = parse(a.as_bytes()).ok_or("a")?;
        let b = parse(b.as_bytes()).ok_or("b")?;
        Ok(a.add(b).ok_or("inf")?.to_human())
    }

    /// Replies of Redis 7.0.15 on x86-64.
    #[test]
    fn sums_are_those_of_redis_on_x86_64() {
        assert_eq!(incr("10.50", "0.1").unwrap(), "10.6");
        assert_eq!(incr("10.6", "-5e3").unwrap(), "-4989.39999999999999991");
        assert_eq!(
            incr("-4989.39999999999999991", "3e20").unwrap(),
            "299999999999999995008"
        );
        assert_eq!(incr("0", "1.0").unwrap(), "1");
        assert_eq!(incr("0", "5.0e3").unwrap(), "5000");
        assert_eq!(incr("0", "0x10").unwrap(), "16");
        assert_eq!(incr("16", "1.5").unwrap(), "17.5");
        assert_eq!(incr("17.5", "1e-20").unwrap(), "17.5");
        assert_eq!(
            incr("0", "1.23456789012345678901").unwrap(),
            "1.23456789012345679"
        );
        assert_eq!(incr("0", "-0").unwrap(), "0");
        assert_eq!(incr("5.", "1").unwrap(), "6");
        assert_eq!(incr(".5", "1").unwrap(), "1.5");
        let big = incr("1", "1e308").unwrap();
        assert!(big.starts_with("99999999999999999996685879655845645660560099847415567207797047994921734868838061872100126921888539320446747225054013223152134749593960583597420814430196418767959100019603190778663109604507106667939153395788938914560543563061268364901618630217086589253444881623791300855757318142424510452728255046343928578048"), "{big}");
        assert!(incr("0", "1e400").unwrap().starts_with("10000000000000000000281880683947586514586453433629052038625910693539685534008629862039363994848324160522094053927317616200295822777259255734023828976593340661017797447434546173917862448116674971723778943824391593338047470675026246684401359237513603830343735485505244955964979021825038280091068414947402456898653040951017512658092615827588920183472511643316591362664138176309734806343732497430221946880"));
    }

    #[test]
    fn what_is_not_a_float() {
        for bad in [
            "",
            "abc",
            " 1",
            "1 ",
            "nan",
            "NaN",
            "1e",
            "1e+",
            "0x",
            "--1",
            "1..2",
            ".",
            "e5",
            "1e99999",
            "1e-99999",
            "0x1p99999",
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
        assert_eq!(incr("0", "inf"), Err("inf"));
        assert_eq!(incr("1e4932", "1e4932"), Err("inf"));
        assert!(parse(b"0e99999").is_some());
        assert_eq!(incr("0x1.8p1", "0").unwrap(), "3");
    }
}
