//! Expiry commands: SETEX PSETEX GETEX EXPIRE PEXPIRE EXPIREAT PEXPIREAT
//! TTL PTTL EXPIRETIME PEXPIRETIME PERSIST, and the options SET shares
//! with GETEX (EX PX EXAT PXAT KEEPTTL PERSIST).
//!
//! Times are checked here as far as they can be without the store: a
//! relative time is added to the log's time when the entry is applied
//! (never to this node's clock), so the overflow of that sum, and GETEX's
//! checks (Redis makes them only once it found the key), are the store's
//! (`crate::store::KvStore`, `store/expiry.rs`).

use bytes::Bytes;

use super::{not_integer, parse_i64, syntax_error, Command};
use crate::store::{
    invalid_expire_time, ExpireCommand, ExpireCondition, GetExTime, GetExTtl, Read, SetCondition,
    SetName, SetTtl, TtlKind, Write,
};

/// A time option: EX, PX, EXAT or PXAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeFlag {
    Ex,
    Px,
    ExAt,
    PxAt,
}

impl TimeFlag {
    fn of(opt: &[u8]) -> Option<TimeFlag> {
        [
            (&b"EX"[..], TimeFlag::Ex),
            (b"PX", TimeFlag::Px),
            (b"EXAT", TimeFlag::ExAt),
            (b"PXAT", TimeFlag::PxAt),
        ]
        .into_iter()
        .find(|(name, _)| opt.eq_ignore_ascii_case(name))
        .map(|(_, f)| f)
    }

    fn seconds(self) -> bool {
        matches!(self, TimeFlag::Ex | TimeFlag::ExAt)
    }

    fn absolute(self) -> bool {
        matches!(self, TimeFlag::ExAt | TimeFlag::PxAt)
    }
}

/// The options of SET (after the key and value) or of GETEX (after the
/// key), parsed as Redis 7 parses them: NX, XX and GET for SET only,
/// KEEPTTL for SET only, PERSIST for GETEX only; one time option (the same
/// one may repeat, the last wins), which excludes KEEPTTL and PERSIST.
#[derive(Debug, Default)]
pub(super) struct Options {
    pub(super) condition: SetCondition,
    pub(super) get: bool,
    pub(super) keep_ttl: bool,
    persist: bool,
    time: Option<(TimeFlag, Bytes)>,
}

/// Parses SET's (`for_set`) or GETEX's options; the error is Redis's.
pub(super) fn parse_options(opts: &[Bytes], for_set: bool) -> Result<Options, String> {
    let mut o = Options::default();
    let mut j = 0;
    while j < opts.len() {
        let opt = &opts[j];
        let is = |name: &[u8]| opt.eq_ignore_ascii_case(name);
        let timed = o.time.as_ref().map(|(f, _)| *f);
        let flag = TimeFlag::of(opt);
        if for_set && is(b"NX") && o.condition != SetCondition::IfPresent {
            o.condition = SetCondition::IfAbsent;
        } else if for_set && is(b"XX") && o.condition != SetCondition::IfAbsent {
            o.condition = SetCondition::IfPresent;
        } else if for_set && is(b"GET") {
            o.get = true;
        } else if for_set && is(b"KEEPTTL") && timed.is_none() {
            o.keep_ttl = true;
        } else if !for_set && is(b"PERSIST") && timed.is_none() {
            o.persist = true;
        } else if let (Some(f), Some(next)) = (flag, opts.get(j + 1)) {
            if o.keep_ttl || o.persist || timed.is_some_and(|t| t != f) {
                return Err(syntax_error());
            }
            o.time = Some((f, next.clone()));
            j += 1;
        } else {
            return Err(syntax_error());
        }
        j += 1;
    }
    Ok(o)
}

/// SET's time to live from its options (`name` for the error): checked as
/// Redis checks it before it looks at the key.
pub(super) fn set_ttl(o: &Options, name: SetName) -> Result<SetTtl, String> {
    match &o.time {
        None if o.keep_ttl => Ok(SetTtl::Keep),
        None => Ok(SetTtl::Clear),
        Some((flag, time)) => timed_set_ttl(*flag, time, name),
    }
}

fn timed_set_ttl(flag: TimeFlag, time: &[u8], name: SetName) -> Result<SetTtl, String> {
    let t = parse_i64(time).ok_or_else(not_integer)?;
    if t <= 0 || (flag.seconds() && t > i64::MAX / 1000) {
        return Err(invalid_expire_time(name.name()));
    }
    let ms = if flag.seconds() { t * 1000 } else { t } as u64;
    Ok(if flag.absolute() {
        SetTtl::At(ms)
    } else {
        SetTtl::In { ms, name }
    })
}

/// Parses an expiry command; `name` is lower case, `args` follow it.
pub fn parse(name: &[u8], args: &[Bytes]) -> Option<Command> {
    let key = || args[0].clone();
    let ttl = |kind| Command::Read(Read::Ttl { key: key(), kind });
    let c = match name {
        b"setex" | b"psetex" => {
            let (flag, name) = if name == b"setex" {
                (TimeFlag::Ex, SetName::SetEx)
            } else {
                (TimeFlag::Px, SetName::PSetEx)
            };
            match timed_set_ttl(flag, &args[1], name) {
                Ok(ttl) => Command::Write(Write::Set {
                    key: key(),
                    value: args[2].clone(),
                    condition: SetCondition::Always,
                    get: false,
                    ttl,
                }),
                Err(e) => Command::Invalid(e),
            }
        }
        b"getex" => parse_getex(args),
        b"expire" => parse_expire(ExpireCommand::Expire, args),
        b"pexpire" => parse_expire(ExpireCommand::PExpire, args),
        b"expireat" => parse_expire(ExpireCommand::ExpireAt, args),
        b"pexpireat" => parse_expire(ExpireCommand::PExpireAt, args),
        b"ttl" => ttl(TtlKind::Ttl),
        b"pttl" => ttl(TtlKind::PTtl),
        b"expiretime" => ttl(TtlKind::ExpireTime),
        b"pexpiretime" => ttl(TtlKind::PExpireTime),
        b"persist" => Command::Write(Write::Persist { key: key() }),
        _ => return None,
    };
    Some(c)
}

fn parse_getex(args: &[Bytes]) -> Command {
    let o = match parse_options(&args[1..], false) {
        Ok(o) => o,
        Err(e) => return Command::Invalid(e),
    };
    let key = args[0].clone();
    let ttl = match o.time {
        Some((flag, time)) => GetExTtl::Set(GetExTime {
            seconds: flag.seconds(),
            absolute: flag.absolute(),
            time,
        }),
        None if o.persist => GetExTtl::Persist,
        // GETEX without options is GET.
        None => return Command::Read(Read::Get { key }),
    };
    Command::Write(Write::GetEx { key, ttl })
}

fn parse_expire(command: ExpireCommand, args: &[Bytes]) -> Command {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &args[2..] {
        let is = |name: &[u8]| opt.eq_ignore_ascii_case(name);
        if is(b"NX") {
            nx = true;
        } else if is(b"XX") {
            xx = true;
        } else if is(b"GT") {
            gt = true;
        } else if is(b"LT") {
            lt = true;
        } else {
            // Redis formats the option as a C string: cut at a NUL.
            let shown = &opt[..opt.iter().position(|&b| b == 0).unwrap_or(opt.len())];
            return Command::Invalid(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(shown)
            ));
        }
    }
    if nx && (xx || gt || lt) {
        return Command::Invalid(
            "ERR NX and XX, GT or LT options at the same time are not compatible".into(),
        );
    }
    if gt && lt {
        return Command::Invalid(
            "ERR GT and LT options at the same time are not compatible".into(),
        );
    }
    let condition = if nx {
        ExpireCondition::IfNone
    } else if gt {
        // GT and XX together: GT already refuses a key without a time.
        ExpireCondition::IfLater
    } else if lt && xx {
        ExpireCondition::IfSomeEarlier
    } else if lt {
        ExpireCondition::IfEarlier
    } else if xx {
        ExpireCondition::IfSome
    } else {
        ExpireCondition::Always
    };
    let Some(mut when_ms) = parse_i64(&args[1]) else {
        return Command::Invalid(not_integer());
    };
    if command.in_seconds() {
        match when_ms.checked_mul(1000) {
            Some(ms) => when_ms = ms,
            None => return Command::Invalid(invalid_expire_time(command.name())),
        }
    }
    Command::Write(Write::Expire {
        key: args[0].clone(),
        when_ms,
        command,
        condition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::tests::p;

    fn set(ttl: SetTtl) -> Command {
        Command::Write(Write::Set {
            key: "k".into(),
            value: "v".into(),
            condition: SetCondition::Always,
            get: false,
            ttl,
        })
    }

    fn invalid(e: &str) -> Command {
        Command::Invalid(e.into())
    }

    #[test]
    fn set_takes_one_time_option() {
        let set_in = |ms| SetTtl::In {
            ms,
            name: SetName::Set,
        };
        assert_eq!(p("SET k v EX 10"), set(set_in(10_000)));
        assert_eq!(p("SET k v px 10"), set(set_in(10)));
        assert_eq!(p("SET k v EXAT 10"), set(SetTtl::At(10_000)));
        assert_eq!(p("SET k v PXAT 10"), set(SetTtl::At(10)));
        assert_eq!(p("SET k v KEEPTTL"), set(SetTtl::Keep));
        assert_eq!(p("SET k v"), set(SetTtl::Clear));
        // The same option again: the last wins.
        assert_eq!(p("SET k v EX 1 EX 2"), set(set_in(2000)));
        assert_eq!(
            p("SET k v NX GET PX 5"),
            Command::Write(Write::Set {
                key: "k".into(),
                value: "v".into(),
                condition: SetCondition::IfAbsent,
                get: true,
                ttl: set_in(5),
            })
        );
        for bad in [
            "SET k v EX 1 PX 1",
            "SET k v EX 1 KEEPTTL",
            "SET k v KEEPTTL EX 1",
            "SET k v PXAT 1 EXAT 1",
            "SET k v EX",
            "SET k v PERSIST",
            "SET k v KEEPTTL PX",
        ] {
            assert_eq!(p(bad), Command::Invalid(syntax_error()), "{bad}");
        }
        assert_eq!(p("SET k v EX x"), Command::Invalid(not_integer()));
        let e = "ERR invalid expire time in 'set' command";
        for bad in ["0", "-1", "9223372036854776"] {
            assert_eq!(p(&format!("SET k v EX {bad}")), invalid(e), "{bad}");
        }
        assert_eq!(p("SET k v PX 0"), invalid(e));
        assert_eq!(
            p("SET k v PX 9223372036854775807"),
            set(set_in(i64::MAX as u64))
        );
        assert_eq!(
            p("SET k v EX 9223372036854775"),
            set(set_in(9_223_372_036_854_775_000))
        );
    }

    #[test]
    fn setex_psetex() {
        assert_eq!(
            p("SETEX k 3 v"),
            set(SetTtl::In {
                ms: 3000,
                name: SetName::SetEx
            })
        );
        assert_eq!(
            p("PSETEX k 3 v"),
            set(SetTtl::In {
                ms: 3,
                name: SetName::PSetEx
            })
        );
        assert_eq!(
            p("SETEX k 0 v"),
            invalid("ERR invalid expire time in 'setex' command")
        );
        assert_eq!(
            p("PSETEX k -5 v"),
            invalid("ERR invalid expire time in 'psetex' command")
        );
        assert_eq!(p("SETEX k 1.5 v"), Command::Invalid(not_integer()));
        assert_eq!(
            p("SETEX k 1"),
            Command::Refused("ERR wrong number of arguments for 'setex' command".into())
        );
    }

    #[test]
    fn getex_options() {
        assert_eq!(p("GETEX k"), Command::Read(Read::Get { key: "k".into() }));
        assert_eq!(
            p("GETEX k persist"),
            Command::Write(Write::GetEx {
                key: "k".into(),
                ttl: GetExTtl::Persist
            })
        );
        // The time is checked when applied (Redis checks it once it found
        // the key): a bad one passes here.
        assert_eq!(
            p("GETEX k EXAT x"),
            Command::Write(Write::GetEx {
                key: "k".into(),
                ttl: GetExTtl::Set(GetExTime {
                    seconds: true,
                    absolute: true,
                    time: "x".into()
                })
            })
        );
        for bad in [
            "GETEX k NX",
            "GETEX k GET",
            "GETEX k KEEPTTL",
            "GETEX k EX 1 PERSIST",
            "GETEX k PERSIST PX 1",
            "GETEX k EX",
            "GETEX k EX 1 PX 1",
        ] {
            assert_eq!(p(bad), Command::Invalid(syntax_error()), "{bad}");
        }
    }

    #[test]
    fn expire_flags_and_times() {
        let expire = |command, when_ms, condition| {
            Command::Write(Write::Expire {
                key: "k".into(),
                when_ms,
                command,
                condition,
            })
        };
        use ExpireCommand::*;
        use ExpireCondition::*;
        assert_eq!(p("EXPIRE k 10"), expire(Expire, 10_000, Always));
        assert_eq!(p("PEXPIRE k -10 nx"), expire(PExpire, -10, IfNone));
        assert_eq!(p("EXPIREAT k 10 XX"), expire(ExpireAt, 10_000, IfSome));
        assert_eq!(p("PEXPIREAT k 10 gt"), expire(PExpireAt, 10, IfLater));
        assert_eq!(p("PEXPIREAT k 10 gt xx"), expire(PExpireAt, 10, IfLater));
        assert_eq!(p("PEXPIREAT k 10 LT"), expire(PExpireAt, 10, IfEarlier));
        assert_eq!(
            p("PEXPIREAT k 10 LT XX"),
            expire(PExpireAt, 10, IfSomeEarlier)
        );
        assert_eq!(p("PEXPIRE k 10 NX NX"), expire(PExpire, 10, IfNone));
        let nx = "ERR NX and XX, GT or LT options at the same time are not compatible";
        for bad in ["NX XX", "GT NX", "nx lt"] {
            assert_eq!(p(&format!("EXPIRE k 1 {bad}")), invalid(nx), "{bad}");
        }
        assert_eq!(
            p("EXPIRE k 1 GT LT"),
            invalid("ERR GT and LT options at the same time are not compatible")
        );
        assert_eq!(p("EXPIRE k 1 frob"), invalid("ERR Unsupported option frob"));
        // The options are checked before the time.
        assert_eq!(p("EXPIRE k x frob"), invalid("ERR Unsupported option frob"));
        assert_eq!(p("EXPIRE k x"), Command::Invalid(not_integer()));
        assert_eq!(
            p("EXPIRE k 9223372036854776"),
            invalid("ERR invalid expire time in 'expire' command")
        );
        assert_eq!(
            p("EXPIREAT k -9223372036854776"),
            invalid("ERR invalid expire time in 'expireat' command")
        );
        assert_eq!(
            p("PEXPIRE k 9223372036854775807"),
            expire(PExpire, i64::MAX, Always)
        );
    }

    #[test]
    fn ttl_reads_and_persist() {
        let ttl = |kind| {
            Command::Read(Read::Ttl {
                key: "k".into(),
                kind,
            })
        };
        assert_eq!(p("TTL k"), ttl(TtlKind::Ttl));
        assert_eq!(p("pttl k"), ttl(TtlKind::PTtl));
        assert_eq!(p("EXPIRETIME k"), ttl(TtlKind::ExpireTime));
        assert_eq!(p("PEXPIRETIME k"), ttl(TtlKind::PExpireTime));
        assert_eq!(
            p("PERSIST k"),
            Command::Write(Write::Persist { key: "k".into() })
        );
        assert_eq!(
            p("TTL a b"),
            Command::Refused("ERR wrong number of arguments for 'ttl' command".into())
        );
    }
}
