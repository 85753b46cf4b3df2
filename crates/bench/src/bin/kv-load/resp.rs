//! The Redis protocol (RESP2), as far as SET and GET need it: the two
//! requests, and a parser for the replies they can get.

/// The longest reply line (or bulk string) accepted before the reply is
/// declared malformed.
const MAX_REPLY: usize = 1 << 20;

/// One reply, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `+OK`.
    Simple(&'a [u8]),
    /// `-ERR ...`.
    Error(&'a [u8]),
    /// `:42`.
    Integer(i64),
    /// `$3 abc`, or `$-1` (`None`).
    Bulk(Option<&'a [u8]>),
}

/// Appends `SET key value`.
pub fn encode_set(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
    bulk(out, key);
    bulk(out, value);
}

/// Appends `GET key`.
pub fn encode_get(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
    bulk(out, key);
}

fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(data.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Parses the reply at the start of `buf`: `Ok(None)` if it is not all
/// there yet, else the reply and the number of bytes it took. Arrays and
/// anything that is not RESP are errors.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, String> {
    let Some(end) = line_end(buf)? else {
        return Ok(None);
    };
    let line = &buf[1..end];
    let after = end + 2;
    match buf[0] {
        b'+' => Ok(Some((Reply::Simple(line), after))),
        b'-' => Ok(Some((Reply::Error(line), after))),
        b':' => Ok(Some((Reply::Integer(number(line)?), after))),
        b'$' => {
            let len = number(line)?;
            if len == -1 {
                return Ok(Some((Reply::Bulk(None), after)));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= MAX_REPLY)
                .ok_or_else(|| format!("bad bulk length {len}"))?;
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            if &buf[after + len..after + len + 2] != b"\r\n" {
                return Err("a bulk string not followed by CRLF".into());
            }
            Ok(Some((
                Reply::Bulk(Some(&buf[after..after + len])),
                after + len + 2,
            )))
        }
        b'*' => Err(format!("unexpected array reply {}", show(&buf[..after]))),
        _ => Err(format!("not a RESP reply: {}", show(&buf[..after]))),
    }
}

/// Where the first line of `buf` ends (the index of its CR), if it is all
/// there.
fn line_end(buf: &[u8]) -> Result<Option<usize>, String> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(0) => Err("an empty RESP line".into()),
        Some(end) => Ok(Some(end)),
        None if buf.len() > MAX_REPLY => Err("a RESP line without an end".into()),
        None => Ok(None),
    }
}

fn number(line: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad number {}", show(line)))
}

/// Checks the reply to a SET.
pub fn check_set(reply: &Reply<'_>) -> Result<(), String> {
    match reply {
        Reply::Simple(b"OK") => Ok(()),
        other => Err(format!("SET: {}", describe(other))),
    }
}

/// Checks the reply to a GET of a key that holds `expected`.
pub fn check_get(reply: &Reply<'_>, expected: &[u8]) -> Result<(), String> {
    match reply {
        Reply::Bulk(Some(v)) if *v == expected => Ok(()),
        Reply::Bulk(Some(v)) => Err(format!("GET: wrong value {}", show(v))),
        Reply::Bulk(None) => Err("GET: key not found".into()),
        other => Err(format!("GET: {}", describe(other))),
    }
}

fn describe(reply: &Reply<'_>) -> String {
    match reply {
        Reply::Simple(s) => format!("unexpected reply +{}", show(s)),
        Reply::Error(e) => format!("error reply -{}", show(e)),
        Reply::Integer(n) => format!("unexpected reply :{n}"),
        Reply::Bulk(Some(v)) => format!("unexpected bulk reply {}", show(v)),
        Reply::Bulk(None) => "unexpected nil reply".into(),
    }
}

/// Bytes from the wire, readable and short, for an error message.
pub fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]);
    let more = if bytes.len() > 120 { "..." } else { "" };
    format!("{:?}{more}", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_get_are_encoded_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_set(&mut out, b"k1", b"abc");
        encode_get(&mut out, b"k1");
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$3\r\nabc\r\n*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n"
        );
    }

    #[test]
    fn a_reply_cut_anywhere_is_incomplete_until_its_last_byte() {
        let reply = b"$5\r\nhello\r\n";
        for cut in 0..reply.len() {
            assert_eq!(parse(&reply[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            parse(reply),
            Ok(Some((Reply::Bulk(Some(b"hello")), reply.len())))
        );
    }

    #[test]
    fn replies_are_parsed_with_their_length() {
        assert_eq!(
            parse(b"+OK\r\n+OK\r\n"),
            Ok(Some((Reply::Simple(b"OK"), 5)))
        );
        assert_eq!(
            parse(b"-ERR no\r\n"),
            Ok(Some((Reply::Error(b"ERR no"), 9)))
        );
        assert_eq!(parse(b":-7\r\n"), Ok(Some((Reply::Integer(-7), 5))));
        assert_eq!(parse(b"$-1\r\n"), Ok(Some((Reply::Bulk(None), 5))));
        assert_eq!(parse(b"$0\r\n\r\n"), Ok(Some((Reply::Bulk(Some(b"")), 6))));
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse(b"$abc\r\n").is_err());
        assert!(parse(b"$-2\r\n").is_err());
        assert!(parse(b"$2\r\nabcd\r\n").is_err());
        assert!(parse(b"*1\r\n+OK\r\n").is_err());
        assert!(parse(b"\r\n").is_err());
        assert!(parse(&vec![b'+'; MAX_REPLY + 1]).is_err());
    }

    #[test]
    fn a_set_succeeds_only_on_ok() {
        assert_eq!(check_set(&Reply::Simple(b"OK")), Ok(()));
        let err = check_set(&Reply::Error(b"NOTLEADER n2")).unwrap_err();
        assert!(err.contains("NOTLEADER n2"), "{err}");
        assert!(check_set(&Reply::Simple(b"QUEUED")).is_err());
        assert!(check_set(&Reply::Bulk(None)).is_err());
    }

    #[test]
    fn a_get_succeeds_only_with_the_value_written() {
        assert_eq!(check_get(&Reply::Bulk(Some(b"v1")), b"v1"), Ok(()));
        assert!(check_get(&Reply::Bulk(Some(b"v2")), b"v1").is_err());
        assert!(check_get(&Reply::Bulk(None), b"v1")
            .unwrap_err()
            .contains("not found"));
        assert!(check_get(&Reply::Error(b"ERR"), b"v1").is_err());
        assert!(check_get(&Reply::Simple(b"v1"), b"v1").is_err());
    }
}
