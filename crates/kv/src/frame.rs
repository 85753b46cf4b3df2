//! RESP2 frames: parsing with a clear difference between "not all here yet"
//! ([`FrameError::Incomplete`]) and "this is not RESP" ([`FrameError::Invalid`]),
//! and encoding, both as [`Frame`] values and as direct writes into a buffer
//! (the state machine writes its replies with the `put_*` functions).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc`
    Bulk(Bytes),
    /// `$-1`
    Null,
    /// `*2\r\n...`
    Array(Vec<Frame>),
    /// `*-1`
    NullArray,
}

/// Why no frame could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes are needed.
    Incomplete,
    /// The bytes are not a valid request; the text says what is wrong.
    Invalid(String),
}

/// Limits on what a peer may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest bulk string.
    pub max_bulk: usize,
    /// The most elements in one array.
    pub max_elements: usize,
    /// The deepest nesting of arrays.
    pub max_depth: usize,
    /// The longest inline command or header line.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk: 8 << 20,
            max_elements: 1 << 20,
            max_depth: 8,
            max_line: 64 << 10,
        }
    }
}

fn invalid(what: impl Into<String>) -> FrameError {
    FrameError::Invalid(what.into())
}

/// Finds the end of the line starting at `from`; returns the index of `\r`.
fn line_end(buf: &[u8], from: usize, limits: &Limits) -> Result<usize, FrameError> {
    let window = &buf[from..];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i > limits.max_line => Err(invalid(format!(
            "line longer than {} bytes",
            limits.max_line
        ))),
        Some(i) => Ok(from + i),
        None if window.len() > limits.max_line + 1 => Err(invalid(format!(
            "line longer than {} bytes",
            limits.max_line
        ))),
        None => Err(FrameError::Incomplete),
    }
}

fn parse_int(line: &[u8], what: &str) -> Result<i64, FrameError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            invalid(format!(
                "invalid {what} '{}'",
                String::from_utf8_lossy(&line[..line.len().min(32)])
            ))
        })
}

/// Where one request's arguments lie in a buffer: what clients send on the
/// hot path (an array of bulk strings) is located without copying, and the
/// arguments are then sliced out of the buffer they arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// An array of bulk strings: the ranges of its elements.
    Ranges(Vec<std::ops::Range<usize>>),
    /// Any other form (inline, or an array holding other kinds): copied.
    Args(Vec<Bytes>),
}

/// Locates one request at the start of `buf` (see [`Frame::parse_request`]
/// for the forms accepted); returns where its arguments are and its length.
pub fn locate_request(buf: &[u8], limits: &Limits) -> Result<(Located, usize), FrameError> {
    if buf.first() != Some(&b'*') {
        let (args, n) = Frame::parse_request(buf, limits)?;
        return Ok((Located::Args(args), n));
    }
    let end = line_end(buf, 1, limits)?;
    let n = parse_int(&buf[1..end], "multibulk length")?;
    if !(0..=limits.max_elements as i64).contains(&n) {
        // Let the general parser word the error (or take `*-1`).
        let (args, used) = Frame::parse_request(buf, limits)?;
        return Ok((Located::Args(args), used));
    }
    let mut at = end + 2;
    let mut ranges = Vec::with_capacity((n as usize).min(1024));
    for _ in 0..n {
        if at >= buf.len() {
            return Err(FrameError::Incomplete);
        }
        if buf[at] != b'$' {
            let (args, used) = Frame::parse_request(buf, limits)?;
            return Ok((Located::Args(args), used));
        }
        let end = line_end(buf, at + 1, limits)?;
        let len = parse_int(&buf[at + 1..end], "bulk length")?;
        if len < 0 || len as u64 > limits.max_bulk as u64 {
            let (args, used) = Frame::parse_request(buf, limits)?;
            return Ok((Located::Args(args), used));
        }
        let start = end + 2;
        let stop = start + len as usize;
        if buf.len() < stop + 2 {
            return Err(FrameError::Incomplete);
        }
        if &buf[stop..stop + 2] != b"\r\n" {
            return Err(invalid("bulk string not followed by CRLF"));
        }
        ranges.push(start..stop);
        at = stop + 2;
    }
    Ok((Located::Ranges(ranges), at))
}

impl Frame {
    /// Parses one request at the start of `buf`: a RESP array of bulk
    /// strings (what clients send) or an inline command (`PING\r\n`, what a
    /// person types into telnet). Returns the command's arguments and how
    /// many bytes it took. An empty inline line gives an empty argument list.
    pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<(Vec<Bytes>, usize), FrameError> {
        if buf.is_empty() {
            return Err(FrameError::Incomplete);
        }
        if buf[0] != b'*' {
            let end = line_end(buf, 0, limits)?;
            let args = split_inline(&buf[..end])?;
            return Ok((args, end + 2));
        }
        let (frame, used) = Frame::parse(buf, limits)?;
        let Frame::Array(items) = frame else {
            return Err(invalid("expected an array of bulk strings"));
        };
        let mut args = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Frame::Bulk(b) => args.push(b),
                Frame::Simple(s) => args.push(Bytes::from(s)),
                Frame::Integer(n) => args.push(Bytes::from(n.to_string())),
                _ => return Err(invalid("expected an array of bulk strings")),
            }
        }
        Ok((args, used))
    }

    /// Parses one frame at the start of `buf`; returns it and its length.
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<(Frame, usize), FrameError> {
        let mut at = 0;
        let f = parse_at(buf, &mut at, limits, 0)?;
        Ok((f, at))
    }

    /// Appends the frame's encoding to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Simple(s) => put_simple(out, s),
            Frame::Error(e) => put_error(out, e),
            Frame::Integer(n) => put_int(out, *n),
            Frame::Bulk(b) => put_bulk(out, b),
            Frame::Null => put_null(out),
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
            Frame::Array(items) => {
                put_array(out, items.len());
                for i in items {
                    i.encode(out);
                }
            }
        }
    }

    /// The frame's encoding.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }
}

fn parse_at(
    buf: &[u8],
    at: &mut usize,
    limits: &Limits,
    depth: usize,
) -> Result<Frame, FrameError> {
    if *at >= buf.len() {
        return Err(FrameError::Incomplete);
    }
    let kind = buf[*at];
    let end = line_end(buf, *at + 1, limits)?;
    let line = &buf[*at + 1..end];
    let next = end + 2;
    match kind {
        b'+' => {
            *at = next;
            Ok(Frame::Simple(String::from_utf8_lossy(line).into_owned()))
        }
        b'-' => {
            *at = next;
            Ok(Frame::Error(String::from_utf8_lossy(line).into_owned()))
        }
        b':' => {
            let n = parse_int(line, "integer")?;
            *at = next;
            Ok(Frame::Integer(n))
        }
        b'$' => {
            let n = parse_int(line, "bulk length")?;
            if n == -1 {
                *at = next;
                return Ok(Frame::Null);
            }
            if n < 0 {
                return Err(invalid(format!("invalid bulk length {n}")));
            }
            let n = n as usize;
            if n > limits.max_bulk {
                return Err(invalid(format!(
                    "bulk string of {n} bytes is longer than the limit of {} bytes",
                    limits.max_bulk
                )));
            }
            if buf.len() < next + n + 2 {
                return Err(FrameError::Incomplete);
            }
            if &buf[next + n..next + n + 2] != b"\r\n" {
                return Err(invalid("bulk string not followed by CRLF"));
            }
            *at = next + n + 2;
            Ok(Frame::Bulk(Bytes::copy_from_slice(&buf[next..next + n])))
        }
        b'*' => {
            let n = parse_int(line, "multibulk length")?;
            if n == -1 {
                *at = next;
                return Ok(Frame::NullArray);
            }
            if n < 0 {
                return Err(invalid(format!("invalid multibulk length {n}")));
            }
            let n = n as usize;
            if n > limits.max_elements {
                return Err(invalid(format!(
                    "array of {n} elements is longer than the limit of {}",
                    limits.max_elements
                )));
            }
            if depth >= limits.max_depth {
                return Err(invalid("arrays nested too deep"));
            }
            *at = next;
            // Do not trust `n` for the allocation: grow as elements arrive.
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                items.push(parse_at(buf, at, limits, depth + 1)?);
            }
            Ok(Frame::Array(items))
        }
        other => Err(invalid(format!(
            "expected '*', '$', '+', '-' or ':', got {:?}",
            other as char
        ))),
    }
}

/// Splits an inline command line into arguments, with Redis's quoting
/// rules for double quotes (`\n`, `\"`, `\xHH`) and single quotes.
fn split_inline(line: &[u8]) -> Result<Vec<Bytes>, FrameError> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let mut arg = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    if i >= line.len() {
                        return Err(invalid("unbalanced quotes in request"));
                    }
                    match line[i] {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\\' if i + 1 < line.len() => {
                            let c = line[i + 1];
                            i += 2;
                            match c {
                                b'n' => arg.push(b'\n'),
                                b'r' => arg.push(b'\r'),
                                b't' => arg.push(b'\t'),
                                b'x' if i + 1 < line.len() => {
                                    let hex = std::str::from_utf8(&line[i..i + 2])
                                        .ok()
                                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                                    match hex {
                                        Some(b) => {
                                            arg.push(b);
                                            i += 2;
                                        }
                                        None => arg.push(b'x'),
                                    }
                                }
                                c => arg.push(c),
                            }
                        }
                        c => {
                            arg.push(c);
                            i += 1;
                        }
                    }
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    if i >= line.len() {
                        return Err(invalid("unbalanced quotes in request"));
                    }
                    match line[i] {
                        b'\'' => {
                            i += 1;
                            break;
                        }
                        b'\\' if i + 1 < line.len() && line[i + 1] == b'\'' => {
                            arg.push(b'\'');
                            i += 2;
                        }
                        c => {
                            arg.push(c);
                            i += 1;
                        }
                    }
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    arg.push(line[i]);
                    i += 1;
                }
            }
        }
        if i < line.len() && !line[i].is_ascii_whitespace() {
            return Err(invalid("closing quote must be followed by a space"));
        }
        args.push(Bytes::from(arg));
    }
    Ok(args)
}

/// Writes `+s\r\n`.
pub fn put_simple(out: &mut BytesMut, s: &str) {
    out.put_u8(b'+');
    out.put_slice(s.as_bytes());
    out.put_slice(b"\r\n");
}

/// Writes `-e\r\n` (line breaks in `e` become spaces: an error is one line).
pub fn put_error(out: &mut BytesMut, e: &str) {
    out.put_u8(b'-');
    for b in e.bytes() {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

/// Writes `:n\r\n`.
pub fn put_int(out: &mut BytesMut, n: i64) {
    out.put_u8(b':');
    put_decimal(out, n);
    out.put_slice(b"\r\n");
}

/// Writes `$len\r\nb\r\n`.
pub fn put_bulk(out: &mut BytesMut, b: &[u8]) {
    out.put_u8(b'$');
    put_decimal(out, b.len() as i64);
    out.put_slice(b"\r\n");
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

/// Writes the null bulk string `$-1\r\n`.
pub fn put_null(out: &mut BytesMut) {
    out.put_slice(b"$-1\r\n");
}

/// Writes an array header `*n\r\n`; the caller writes the `n` elements.
pub fn put_array(out: &mut BytesMut, n: usize) {
    out.put_u8(b'*');
    put_decimal(out, n as i64);
    out.put_slice(b"\r\n");
}

fn put_decimal(out: &mut BytesMut, n: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        out.put_u8(b'-');
    }
    out.put_slice(&buf[i..]);
}

/// Counts the complete replies at the start of `buf` (used by clients to
/// know how many answers a batch holds); stops at the first incomplete one.
pub fn count_frames(mut buf: &[u8], limits: &Limits) -> Result<usize, FrameError> {
    let mut n = 0;
    while !buf.is_empty() {
        match Frame::parse(buf, limits) {
            Ok((_, used)) => {
                n += 1;
                buf.advance(used);
            }
            Err(FrameError::Incomplete) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &[u8]) -> Result<(Vec<Bytes>, usize), FrameError> {
        Frame::parse_request(s, &Limits::default())
    }

    #[test]
    fn arrays_of_bulk_strings_are_requests() {
        let (args, used) = req(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nrest").unwrap();
        assert_eq!(args, vec![Bytes::from("GET"), Bytes::from("k")]);
        assert_eq!(used, 20);
    }

    #[test]
    fn locating_agrees_with_parsing() {
        let l = Limits::default();
        for input in [
            &b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"[..],
            b"*0\r\n",
            b"PING x\r\n",
            b"*2\r\n:1\r\n$1\r\na\r\n",
            b"*1\r\n$3\r\nabcd\r\n",
            b"*2\r\n$1\r\na\r\n",
            b"*1\r\n$-1\r\n",
            b"*-1\r\n",
        ] {
            let located = locate_request(input, &l).map(|(loc, n)| {
                let args = match loc {
                    Located::Ranges(r) => r
                        .into_iter()
                        .map(|r| Bytes::copy_from_slice(&input[r]))
                        .collect(),
                    Located::Args(a) => a,
                };
                (args, n)
            });
            assert_eq!(located, Frame::parse_request(input, &l), "{input:?}");
        }
    }

    #[test]
    fn every_prefix_is_incomplete_not_invalid() {
        let full = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
        for i in 0..full.len() {
            assert_eq!(req(&full[..i]), Err(FrameError::Incomplete), "prefix {i}");
        }
        assert!(req(full).is_ok());
    }

    #[test]
    fn inline_commands_with_quotes() {
        let (args, used) = req(b"SET k \"a b\\n\" 'c d'\r\nPING\r\n").unwrap();
        assert_eq!(args, vec!["SET", "k", "a b\n", "c d"]);
        assert_eq!(used, 21);
        assert!(matches!(req(b"SET \"k\r\n"), Err(FrameError::Invalid(_))));
        assert_eq!(req(b"\r\n").unwrap().0, Vec::<Bytes>::new());
    }

    #[test]
    fn malformed_input_is_named() {
        for (input, says) in [
            (&b"*x\r\n"[..], "invalid multibulk length"),
            (b"*1\r\n$-5\r\n", "invalid bulk length"),
            (b"*1\r\n$3\r\nabcd\r\n", "not followed by CRLF"),
            (b"*1\r\n*1\r\n:1\r\n", "array of bulk strings"),
            (b"*1\r\n!3\r\n", "expected '*'"),
        ] {
            match req(input) {
                Err(FrameError::Invalid(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn limits_are_enforced_before_the_data_arrives() {
        let l = Limits {
            max_bulk: 10,
            max_elements: 3,
            max_depth: 2,
            max_line: 16,
        };
        let e = Frame::parse_request(b"*1\r\n$11\r\n", &l).unwrap_err();
        assert!(matches!(e, FrameError::Invalid(m) if m.contains("longer than the limit")));
        let e = Frame::parse_request(b"*4\r\n", &l).unwrap_err();
        assert!(matches!(e, FrameError::Invalid(m) if m.contains("4 elements")));
        let e = Frame::parse_request(&[b'a'; 40], &l).unwrap_err();
        assert!(matches!(e, FrameError::Invalid(m) if m.contains("line longer")));
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let f = Frame::Array(vec![
            Frame::Simple("OK".into()),
            Frame::Error("ERR x".into()),
            Frame::Integer(-42),
            Frame::Integer(i64::MIN),
            Frame::Bulk(Bytes::from_static(b"a\r\nb")),
            Frame::Null,
            Frame::NullArray,
            Frame::Array(vec![]),
        ]);
        let b = f.to_bytes();
        assert_eq!(Frame::parse(&b, &Limits::default()).unwrap(), (f, b.len()));
        assert_eq!(count_frames(&b, &Limits::default()).unwrap(), 1);
        let mut two = BytesMut::from(&b[..]);
        two.extend_from_slice(&b[..b.len() - 1]);
        assert_eq!(count_frames(&two, &Limits::default()).unwrap(), 1);
    }
}
