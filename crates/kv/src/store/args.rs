//! Arguments read as Redis reads them, and the errors worded as Redis
//! words them, for every command family.

/// `ERR value is not an integer or out of range`.
pub(super) const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
/// `ERR syntax error`.
pub(super) const SYNTAX: &str = "ERR syntax error";
/// `ERR value is not a valid float`.
pub(super) const NOT_FLOAT: &str = "ERR value is not a valid float";
/// A count that must not be negative (LPOP, SPOP...).
pub(super) const MUST_BE_POSITIVE: &str = "ERR value is out of range, must be positive";
/// A string that would pass Redis's 512 MiB limit.
pub(super) const TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
/// An addition that would leave an i64.
pub(super) const OVERFLOW: &str = "ERR increment or decrement would overflow";

/// Parses an i64 the way Redis's `string2ll` does: an optional `-`, no `+`,
/// no spaces, no leading zeros (except "0" itself), at most 20 characters.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        if v > i64::MIN.unsigned_abs() {
            None
        } else {
            Some(0i64.wrapping_sub_unsigned(v))
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// A count of HRANDFIELD or SRANDMEMBER: any i64 but the smallest.
pub(super) fn random_count(a: &[u8]) -> Result<i64, String> {
    match parse_i64(a) {
        None => Err(NOT_INTEGER.into()),
        Some(i64::MIN) => Err(format!(
            "ERR value is out of range, value must between -{m} and {m}",
            m = i64::MAX
        )),
        Some(n) => Ok(n),
    }
}

/// The optional count of LPOP, RPOP and SPOP: `None` without one, an error
/// for anything but a non-negative integer.
pub(super) fn pop_count(a: Option<&&[u8]>) -> Result<Option<i64>, &'static str> {
    match a {
        None => Ok(None),
        Some(c) => match parse_i64(c) {
            Some(n) if n >= 0 => Ok(Some(n)),
            _ => Err(MUST_BE_POSITIVE),
        },
    }
}

/// A float argument as Redis reads one (`strtold`): no leading space, no
/// trailing bytes, not NaN. raft-kv computes in f64 (Redis in long double).
pub(super) fn parse_float(a: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(a).ok()?;
    if s.is_empty() || s.len() > 5 * 1024 || s.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    (!f.is_nan()).then_some(f)
}

/// `ERR timeout is not a float or out of range`.
pub const TIMEOUT_NOT_FLOAT: &str = "ERR timeout is not a float or out of range";

/// `ERR timeout is negative`.
pub const TIMEOUT_NEGATIVE: &str = "ERR timeout is negative";

/// The timeout of a blocking command (BLPOP, BLMOVE...) as Redis 7 reads
/// it: seconds as a float, rounded up to whole milliseconds; 0 (or a
/// value that rounds up to 0, such as -0.0001) blocks for ever. As Redis
/// on x86-64, a number of milliseconds beyond a 64-bit integer (`inf`,
/// `1e30`) reads as negative.
pub fn parse_timeout_ms(a: &[u8]) -> Result<u64, &'static str> {
    let seconds = parse_float(a).ok_or(TIMEOUT_NOT_FLOAT)?;
    let ms = (seconds * 1000.0).ceil();
    // 2^63: the first value past i64::MAX.
    if !(0.0..9_223_372_036_854_775_808.0).contains(&ms) {
        return Err(TIMEOUT_NEGATIVE);
    }
    // Within 0..2^63: the cast is exact.
    Ok(ms as u64)
}

/// The cursor of HSCAN, SSCAN or SCAN, read as Redis reads it (`strtoul`):
/// an optional sign (a negative one wraps around), decimal digits, nothing
/// else; empty is 0.
pub(super) fn parse_cursor(a: &[u8]) -> Option<u64> {
    let (negative, digits) = match a.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, a),
    };
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative { n.wrapping_neg() } else { n })
}

/// The options of a scan: MATCH, COUNT and (SCAN only) TYPE.
pub(super) struct ScanOptions<'a> {
    /// MATCH's pattern (none for `*`).
    pub(super) pattern: Option<&'a [u8]>,
    /// COUNT (10 without it).
    pub(super) count: usize,
    /// TYPE's type name.
    pub(super) kind: Option<&'a [u8]>,
}

/// Reads the options of a scan, after its cursor; TYPE only `with_type`.
pub(super) fn scan_options<'a>(
    args: &[&'a [u8]],
    with_type: bool,
) -> Result<ScanOptions<'a>, &'static str> {
    let mut o = ScanOptions {
        pattern: None,
        count: 10,
        kind: None,
    };
    let mut i = 0;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return Err(SYNTAX);
        };
        let opt = args[i];
        if opt.eq_ignore_ascii_case(b"count") {
            match parse_i64(value) {
                None => return Err(NOT_INTEGER),
                Some(c) if c < 1 => return Err(SYNTAX),
                Some(c) => o.count = usize::try_from(c).unwrap_or(usize::MAX).min(1 << 20),
            }
        } else if opt.eq_ignore_ascii_case(b"match") {
            o.pattern = Some(*value).filter(|p| *p != b"*");
        } else if with_type && opt.eq_ignore_ascii_case(b"type") {
            o.kind = Some(value);
        } else {
            return Err(SYNTAX);
        }
        i += 2;
    }
    Ok(o)
}
