//! Redis's glob-style patterns (KEYS, SCAN MATCH, ACL key patterns).

/// Redis's glob-style matching (`stringmatchlen` of Redis 7, case
/// sensitive): `*` any run of bytes, `?` any one byte, `[abc]` a set,
/// `[^abc]` its complement, `[a-z]` a range (either way round), `\x` the
/// byte `x` literally (also inside a set).
///
/// It keeps Redis's corners: an unclosed `[` runs to the end of the
/// pattern, and the empty string matches no pattern but the empty one (not
/// even `*`: Redis's `KEYS *` and `SCAN` take a lone `*` as "all keys"
/// without calling the matcher, and so do [`super::Read::Keys`] and
/// [`super::Read::Scan`]). Bytes compare as unsigned (Redis compares C `char`s,
/// which are signed on x86: ranges with bytes above 0x7f may differ there).
pub fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    let mut skip_longer = false;
    glob(pattern, s, &mut skip_longer, 0)
}

fn glob(p: &[u8], s: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    // Protection against abusive patterns, as in Redis.
    if nesting > 1000 {
        return false;
    }
    // Redis's patterns are NUL-terminated: reading past the end gives 0.
    let at = |i: usize| p.get(i).copied().unwrap_or(0);
    let (mut pi, mut si) = (0, 0);
    while pi < p.len() && si < s.len() {
        match p[pi] {
            b'*' => {
                while pi < p.len() && at(pi + 1) == b'*' {
                    pi += 1;
                }
                if p.len() - pi == 1 {
                    return true;
                }
                while si < s.len() {
                    if glob(&p[pi + 1..], &s[si..], skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    si += 1;
                }
                // No match for the rest of the pattern from anywhere in the
                // string: earlier stars cannot help by matching more.
                *skip_longer = true;
                return false;
            }
            b'?' => si += 1,
            b'[' => {
                pi += 1;
                let not = at(pi) == b'^';
                if not {
                    pi += 1;
                }
                let c = s[si];
                let mut matched = false;
                loop {
                    let left = p.len() - pi;
                    if at(pi) == b'\\' && left >= 2 {
                        pi += 1;
                        if p[pi] == c {
                            matched = true;
                        }
                    } else if at(pi) == b']' {
                        break;
                    } else if left == 0 {
                        // Unclosed: step back so that the step below ends
                        // the pattern.
                        pi -= 1;
                        break;
                    } else if left >= 3 && p[pi + 1] == b'-' {
                        let (mut lo, mut hi) = (p[pi], p[pi + 2]);
                        if lo > hi {
                            std::mem::swap(&mut lo, &mut hi);
                        }
                        pi += 2;
                        if (lo..=hi).contains(&c) {
                            matched = true;
                        }
                    } else if p[pi] == c {
                        matched = true;
                    }
                    pi += 1;
                }
                if matched == not {
                    return false;
                }
                si += 1;
            }
            b => {
                let b = if b == b'\\' && p.len() - pi >= 2 {
                    pi += 1;
                    p[pi]
                } else {
                    b
                };
                if b != s[si] {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
        if si == s.len() {
            while at(pi) == b'*' {
                pi += 1;
            }
            break;
        }
    }
    pi == p.len() && si == s.len()
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_matching_like_redis() {
        let yes = |p: &str, s: &str| assert!(glob_match(p.as_bytes(), s.as_bytes()), "{p} ~ {s}");
        let no = |p: &str, s: &str| assert!(!glob_match(p.as_bytes(), s.as_bytes()), "{p} !~ {s}");
        // The examples of Redis's KEYS documentation.
        for s in ["hello", "hallo", "hxllo"] {
            yes("h?llo", s);
        }
        for s in ["hllo", "heeeello", "hello"] {
            yes("h*llo", s);
        }
        yes("h[ae]llo", "hello");
        yes("h[ae]llo", "hallo");
        no("h[ae]llo", "hillo");
        yes("h[^e]llo", "hallo");
        yes("h[^e]llo", "hbllo");
        no("h[^e]llo", "hello");
        yes("h[a-b]llo", "hallo");
        yes("h[a-b]llo", "hbllo");
        no("h[a-b]llo", "hcllo");
        no("h?llo", "hllo");
        no("h*llo", "hellx");
        // `*` alone, and stars anywhere.
        yes("*", "anything");
        yes("*", "x");
        no("*", ""); // as stringmatchlen; KEYS and SCAN special-case "*"
        yes("", "");
        no("", "a");
        yes("**", "ab");
        yes("a*", "a");
        yes("a*b*c", "aXXbYYc");
        yes("*c", "abc");
        no("*c", "abd");
        yes("*a*b*", "xxaxxbxx");
        no("a*b", "acbd");
        // Escapes.
        yes("h\\*llo", "h*llo");
        no("h\\*llo", "hello");
        yes("\\?", "?");
        no("\\?", "a");
        yes("a\\", "a\\"); // a trailing backslash is itself
        yes("[\\]]", "]");
        yes("[\\-a]", "-");
        no("[\\-a]", "b");
        // Ranges either way round; a lone `-`; `[^...]` with ranges.
        yes("[z-a]", "m");
        yes("[a-]", "]"); // Redis takes "a-]" as a range from 'a' to ']'
        yes("[^0-9]x", "ax");
        no("[^0-9]x", "5x");
        // An unclosed set runs to the end of the pattern.
        yes("[abc", "a");
        no("[abc", "d");
        no("a[", "a\0"); // an empty unclosed set matches nothing, not even NUL
        no("ab[", "ab");
        // Binary bytes.
        assert!(glob_match(b"\xff*\x00", b"\xff\x01\x00"));
        assert!(glob_match(b"[\x80-\xff]", b"\x90"));
        // Abusive patterns end quickly.
        let long = "a".repeat(60);
        no(&format!("{}b", "*a".repeat(30)), &long);
        no(&"*".repeat(3000).replace("**", "*a"), &long);
    }
}
