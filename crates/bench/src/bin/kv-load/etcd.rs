//! etcd v3 through its HTTP/JSON gateway: `POST /v3/kv/put` and
//! `POST /v3/kv/range` (linearizable unless asked otherwise) over a
//! keep-alive HTTP/1.1 connection. Requests are written by hand; responses
//! must carry a Content-Length. Keys and values travel in base64.

/// The longest response head accepted before the response is declared
/// malformed.
const MAX_HEAD: usize = 64 * 1024;

/// The longest response body accepted.
const MAX_BODY: usize = 1 << 20;

/// Appends a put of `key` = `value`.
pub fn encode_put(out: &mut Vec<u8>, host: &str, key: &[u8], value: &[u8]) {
    let mut body = Vec::with_capacity(32 + 2 * (key.len() + value.len()));
    body.extend_from_slice(b"{\"key\":\"");
    base64(&mut body, key);
    body.extend_from_slice(b"\",\"value\":\"");
    base64(&mut body, value);
    body.extend_from_slice(b"\"}");
    request(out, host, "/v3/kv/put", &body);
}

/// Appends a (linearizable) range read of `key`.
pub fn encode_range(out: &mut Vec<u8>, host: &str, key: &[u8]) {
    let mut body = Vec::with_capacity(16 + 2 * key.len());
    body.extend_from_slice(b"{\"key\":\"");
    base64(&mut body, key);
    body.extend_from_slice(b"\"}");
    request(out, host, "/v3/kv/range", &body);
}

fn request(out: &mut Vec<u8>, host: &str, path: &str, body: &[u8]) {
    out.extend_from_slice(
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
}

/// Appends the standard base64 encoding (with padding) of `data`.
pub fn base64(out: &mut Vec<u8>, data: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

/// One HTTP response: its status and where its body lies in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body's range in the buffer.
    pub body: std::ops::Range<usize>,
    /// Bytes the whole response took.
    pub len: usize,
}

/// Parses the response at the start of `buf`: `Ok(None)` if it is not all
/// there yet. A response without a Content-Length (chunked, or closed by
/// the server) is an error.
pub fn parse(buf: &[u8]) -> Result<Option<Response>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err("an HTTP response head without an end".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| "an HTTP response head that is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP/1.1 response: {status_line:?}"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("a malformed HTTP header {line:?}"));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .ok()
                    .filter(|&l| l <= MAX_BODY)
                    .ok_or_else(|| format!("a bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!("Transfer-Encoding {value:?} is not supported"));
        }
    }
    let length = length.ok_or_else(|| format!("HTTP {status} without a Content-Length"))?;
    let start = head_end + 4;
    if buf.len() < start + length {
        return Ok(None);
    }
    Ok(Some(Response {
        status,
        body: start..start + length,
        len: start + length,
    }))
}

/// Checks the response to a put.
pub fn check_put(status: u16, body: &[u8]) -> Result<(), String> {
    check_ok("put", status, body)
}

/// Checks the response to a range read of a key that holds the value
/// whose base64 encoding is `expected`.
pub fn check_range(status: u16, body: &[u8], expected: &[u8]) -> Result<(), String> {
    check_ok("range", status, body)?;
    let Some(at) = find(body, b"\"value\":\"") else {
        return Err("range: key not found".into());
    };
    let value = &body[at + 9..];
    let end = value
        .iter()
        .position(|&b| b == b'"')
        .ok_or_else(|| format!("range: malformed body {}", crate::resp::show(body)))?;
    if &value[..end] != expected {
        return Err(format!(
            "range: wrong value {}",
            crate::resp::show(&value[..end])
        ));
    }
    Ok(())
}

/// A successful response is a 200 whose JSON body has a header and no
/// error.
fn check_ok(what: &str, status: u16, body: &[u8]) -> Result<(), String> {
    if status != 200 {
        return Err(format!("{what}: HTTP {status} {}", crate::resp::show(body)));
    }
    if !body.starts_with(b"{\"header\":") || find(body, b"\"error\"").is_some() {
        return Err(format!(
            "{what}: unexpected body {}",
            crate::resp::show(body)
        ));
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(data: &[u8]) -> String {
        let mut out = Vec::new();
        base64(&mut out, data);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        for (plain, code) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encoded(plain.as_bytes()), code, "{plain:?}");
        }
        assert_eq!(encoded(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn a_put_is_a_post_with_a_json_body_of_its_exact_length() {
        let mut out = Vec::new();
        encode_put(&mut out, "127.0.0.1:2379", b"foo", b"bar");
        let text = String::from_utf8(out).unwrap();
        let body = r#"{"key":"Zm9v","value":"YmFy"}"#;
        assert_eq!(
            text,
            format!(
                "POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1:2379\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        );
        let mut out = Vec::new();
        encode_range(&mut out, "h", b"foo");
        assert!(out.ends_with(b"Content-Length: 14\r\n\r\n{\"key\":\"Zm9v\"}"));
    }

    const PUT_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 25\r\n\r\n{\"header\":{\"revision\":2}}";

    #[test]
    fn a_response_cut_anywhere_is_incomplete_until_its_last_byte() {
        for cut in 0..PUT_OK.len() {
            assert_eq!(parse(&PUT_OK[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = PUT_OK.to_vec();
        two.extend_from_slice(PUT_OK);
        let r = parse(&two).unwrap().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.len, PUT_OK.len());
        assert_eq!(&two[r.body.clone()], b"{\"header\":{\"revision\":2}}");
        assert_eq!(check_put(r.status, &two[r.body]), Ok(()));
    }

    #[test]
    fn responses_without_a_length_or_not_http_are_errors() {
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse(b"+OK\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n").is_err());
        assert!(parse(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn error_statuses_and_error_bodies_fail_a_put() {
        let err = check_put(400, br#"{"error":"bad key","code":3}"#).unwrap_err();
        assert!(err.contains("400") && err.contains("bad key"), "{err}");
        assert!(check_put(200, br#"{"error":"etcdserver: too many requests"}"#).is_err());
        assert!(check_put(200, b"").is_err());
    }

    #[test]
    fn a_range_succeeds_only_with_the_value_written() {
        let found = br#"{"header":{"revision":"9"},"kvs":[{"key":"Zm9v","create_revision":"2","value":"YmFy"}],"count":"1"}"#;
        assert_eq!(check_range(200, found, b"YmFy"), Ok(()));
        assert!(check_range(200, found, b"YmF6")
            .unwrap_err()
            .contains("wrong value"));
        let missing = br#"{"header":{"revision":"9"}}"#;
        assert!(check_range(200, missing, b"YmFy")
            .unwrap_err()
            .contains("not found"));
        assert!(check_range(503, found, b"YmFy").is_err());
    }
}
