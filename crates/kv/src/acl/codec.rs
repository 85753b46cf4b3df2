//! The binary form of the user table, as it goes into a snapshot.
//!
//! ```text
//! users = initialized:u8 next_serial:u64-LE count:u32-LE user*      (names in order)
//! user  = name:str serial:u64-LE flags:u8 passwords:u32-LE (32 bytes)*
//!         keys:list channels:list rules:list                        (rules as text: "+get", "-@admin")
//! str   = u32-LE length, bytes       list = u32-LE count, str*
//! flags = bit 0 on, 1 nopass, 2 allkeys, 3 allchannels, 4 +@all base
//! ```
//!
//! Decoding rebuilds every user through its rules, so a table read back
//! keeps every invariant a table built by `ACL SETUSER` has.

use bytes::{BufMut, Bytes};

use super::password::PasswordHash;
use super::rules::{Rule, MAX_ITEMS_PER_USER};
use super::user::User;
use super::{Users, MAX_USERS};

const ON: u8 = 1;
const NOPASS: u8 = 2;
const ALL_KEYS: u8 = 4;
const ALL_CHANNELS: u8 = 8;
const ALL_COMMANDS: u8 = 16;

fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("the user table's counts and lengths are far below 4 GiB")
}

fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    b.put_u32_le(len32(s.len()));
    b.put_slice(s);
}

fn put_list<'a>(b: &mut Vec<u8>, items: impl ExactSizeIterator<Item = &'a [u8]>) {
    b.put_u32_le(len32(items.len()));
    for s in items {
        put_str(b, s);
    }
}

/// Appends the table's binary form to `out`.
pub fn encode(users: &Users, out: &mut Vec<u8>) {
    out.put_u8(u8::from(users.initialized));
    out.put_u64_le(users.next_serial);
    out.put_u32_le(len32(users.users.len()));
    for u in users.users.values() {
        put_str(out, &u.name);
        out.put_u64_le(u.serial);
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        out.put_u8(
            flag(u.enabled, ON)
                | flag(u.nopass, NOPASS)
                | flag(u.all_keys, ALL_KEYS)
                | flag(u.all_channels, ALL_CHANNELS)
                | flag(u.all_commands, ALL_COMMANDS),
        );
        out.put_u32_le(len32(u.passwords.len()));
        for h in &u.passwords {
            out.put_slice(&h.0);
        }
        put_list(out, u.key_patterns.iter().map(|p| &p[..]));
        put_list(out, u.channel_patterns.iter().map(|p| &p[..]));
        let rules: Vec<Bytes> = u
            .command_rules
            .iter()
            .map(|r| Rule::Commands(*r).text())
            .collect();
        put_list(out, rules.iter().map(|r| &r[..]));
    }
}

/// Reads an untrusted buffer; every length is checked against what is left.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err("the user table is cut off".into());
        }
        let (a, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<usize, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn str(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()?;
        self.take(n)
    }

    /// A count, checked against a limit and against the bytes left.
    fn count(&mut self, max: usize, each_bytes_min: usize, what: &str) -> Result<usize, String> {
        let n = self.u32()?;
        if n > max || n.saturating_mul(each_bytes_min) > self.buf.len() {
            return Err(format!("the user table claims {n} {what}"));
        }
        Ok(n)
    }
}

fn decode_user(rd: &mut Reader<'_>) -> Result<User, String> {
    let name = Bytes::copy_from_slice(rd.str()?);
    let shown = String::from_utf8_lossy(&name).into_owned();
    let bad = |why: String| format!("user {shown:?} in the user table: {why}");
    let serial = rd.u64()?;
    let flags = rd.u8()?;
    if flags & !(ON | NOPASS | ALL_KEYS | ALL_CHANNELS | ALL_COMMANDS) != 0 {
        return Err(bad(format!("unknown flags {flags:#04x}")));
    }
    let mut rules = Vec::new();
    rules.push(if flags & ON != 0 { Rule::On } else { Rule::Off });
    for _ in 0..rd.count(MAX_ITEMS_PER_USER, 32, "passwords")? {
        let mut h = [0u8; 32];
        h.copy_from_slice(rd.take(32)?);
        rules.push(Rule::AddPassword(PasswordHash(h)));
    }
    if flags & NOPASS != 0 {
        if rules.len() > 1 {
            return Err(bad("nopass with passwords".into()));
        }
        rules.push(Rule::NoPass);
    }
    if flags & ALL_KEYS != 0 {
        rules.push(Rule::AllKeys);
    }
    for _ in 0..rd.count(MAX_ITEMS_PER_USER, 4, "key patterns")? {
        rules.push(Rule::KeyPattern(Bytes::copy_from_slice(rd.str()?)));
    }
    if flags & ALL_CHANNELS != 0 {
        rules.push(Rule::AllChannels);
    }
    for _ in 0..rd.count(MAX_ITEMS_PER_USER, 4, "channel patterns")? {
        rules.push(Rule::ChannelPattern(Bytes::copy_from_slice(rd.str()?)));
    }
    if flags & ALL_COMMANDS != 0 {
        rules.push(Rule::AllCommands);
    }
    for _ in 0..rd.count(MAX_ITEMS_PER_USER, 4, "command rules")? {
        let text = rd.str()?;
        match Rule::parse(text) {
            Ok(r @ Rule::Commands(_)) => rules.push(r),
            _ => {
                return Err(bad(format!(
                    "{:?} is not a command rule of this version",
                    String::from_utf8_lossy(text)
                )))
            }
        }
    }
    let mut user = User::new(name, serial);
    for r in &rules {
        user.apply(r).map_err(|e| bad(e.to_string()))?;
    }
    Ok(user)
}

/// Reads a table written by [`encode`] from the start of `buf`; returns it
/// and the bytes after it.
pub fn decode(buf: &[u8]) -> Result<(Users, &[u8]), String> {
    let mut rd = Reader { buf };
    let initialized = match rd.u8()? {
        0 => false,
        1 => true,
        other => return Err(format!("the user table's initialized flag is {other}")),
    };
    let next_serial = rd.u64()?;
    let count = rd.count(MAX_USERS, 4 + 8 + 1 + 16, "users")?;
    let mut users = Users {
        initialized,
        next_serial,
        users: Default::default(),
    };
    for _ in 0..count {
        let user = decode_user(&mut rd)?;
        if user.serial >= next_serial {
            return Err(format!(
                "user {:?} has serial {} but the next serial is {next_serial}",
                String::from_utf8_lossy(&user.name),
                user.serial
            ));
        }
        if let Some((last, _)) = users.users.last_key_value() {
            if *last >= user.name {
                return Err("the user table's names are not in order".into());
            }
        }
        users.users.insert(user.name.clone(), user);
    }
    if initialized != users.users.contains_key(super::DEFAULT_USER) {
        return Err("the user table's default user and initialized flag disagree".into());
    }
    Ok((users, rd.buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Users {
        let mut u = Users::default();
        u.init(Some(PasswordHash::of(b"pw")));
        let r =
            |s: &'static str| -> Vec<&'static [u8]> { s.split(' ').map(str::as_bytes).collect() };
        u.set_user(
            b"alice",
            r("on >a >b ~app:* ~x &news +@all -@admin +raft.status"),
        )
        .unwrap();
        u.set_user(b"bob", r("nopass allkeys")).unwrap();
        u.set_user(b"gone", r("on")).unwrap();
        u.del_users([&b"gone"[..]]).unwrap();
        u
    }

    #[test]
    fn tables_round_trip() {
        for users in [Users::default(), sample()] {
            let mut b = Vec::new();
            encode(&users, &mut b);
            b.extend_from_slice(b"after");
            let (back, rest) = decode(&b).unwrap();
            assert_eq!(back, users);
            assert_eq!(rest, b"after");
        }
    }

    #[test]
    fn no_plaintext_in_the_encoding() {
        let mut u = Users::default();
        u.init(Some(PasswordHash::of(b"hunter2-secret")));
        u.set_user(b"alice", [&b">alice-plaintext"[..]]).unwrap();
        let mut b = Vec::new();
        encode(&u, &mut b);
        for secret in [&b"hunter2-secret"[..], b"alice-plaintext"] {
            assert!(!b.windows(secret.len()).any(|w| w == secret));
        }
    }

    #[test]
    fn damage_is_an_error_never_a_panic() {
        let mut b = Vec::new();
        encode(&sample(), &mut b);
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..b.len() {
            for bit in [0x01, 0x80] {
                let mut v = b.clone();
                v[at] ^= bit;
                let _ = decode(&v);
            }
        }
        let mut v = b.clone();
        v[0] = 0;
        assert!(decode(&v).unwrap_err().contains("disagree"));
    }
}
