//! List commands: LPUSH RPUSH LPOP RPOP LLEN LRANGE LINDEX LSET LREM LTRIM
//! LPOS LMOVE LMPOP, and the blocking pops BLPOP BRPOP BLMOVE BRPOPLPUSH
//! BLMPOP. Their
//! arguments go to the store as sent and are checked there, where Redis
//! checks them (LSET finds its key before it reads its index, LRANGE reads
//! its indexes first...). A blocking pop's timeout (and BLMOVE's sides) are
//! checked here too, before any key is read, as Redis does: the connection
//! needs the timeout to wait (`crate::blocking`).

use bytes::Bytes;

use super::Command;
use crate::store::{blocking_timeout_ms, TypedCmd};

/// Parses a list command; `name` is lower case, `args` follow it.
pub fn parse(name: &[u8], args: &[Bytes]) -> Option<Command> {
    if let Some(Err(e)) = TypedCmd::from_name(name).and_then(|c| blocking_timeout_ms(c, args)) {
        return Some(Command::Invalid(e.into()));
    }
    super::typed(name, args)
}

#[cfg(test)]
mod tests {
    use crate::cmd::tests::p;
    use crate::cmd::{arity_error, syntax_error, Command};
    use crate::store::{blocking_timeout_ms, Read, TypedCmd, Write};

    #[test]
    fn list_commands_carry_their_arguments() {
        assert!(matches!(
            p("RPUSH l a b"),
            Command::Write(Write::Typed { cmd: TypedCmd::RPush, args }) if args.len() == 3
        ));
        assert_eq!(p("LPUSH l"), Command::Refused(arity_error("lpush")));
        assert!(matches!(
            p("LRANGE l 0 -1"),
            Command::Read(Read::Typed {
                cmd: TypedCmd::LRange,
                ..
            })
        ));
        assert!(matches!(
            p("LMOVE a b LEFT RIGHT"),
            Command::Write(Write::Typed {
                cmd: TypedCmd::LMove,
                ..
            })
        ));
    }

    #[test]
    fn blocking_pops_check_their_timeout_like_redis() {
        assert!(matches!(
            p("BLPOP a b 0.5"),
            Command::Write(Write::Typed { cmd: TypedCmd::BLPop, args }) if args.len() == 3
        ));
        assert!(matches!(
            p("brpop a 0"),
            Command::Write(Write::Typed {
                cmd: TypedCmd::BRPop,
                ..
            })
        ));
        assert!(matches!(
            p("BLMOVE a b LEFT right 1"),
            Command::Write(Write::Typed {
                cmd: TypedCmd::BLMove,
                ..
            })
        ));
        assert!(matches!(
            p("BRPOPLPUSH a b 1"),
            Command::Write(Write::Typed {
                cmd: TypedCmd::BRPopLPush,
                ..
            })
        ));
        assert_eq!(p("BLPOP a"), Command::Refused(arity_error("blpop")));
        assert_eq!(p("BRPOP"), Command::Refused(arity_error("brpop")));
        assert_eq!(
            p("BLMOVE a b LEFT 0"),
            Command::Refused(arity_error("blmove"))
        );
        assert_eq!(
            p("BRPOPLPUSH a b"),
            Command::Refused(arity_error("brpoplpush"))
        );
        let not_float = Command::Invalid("ERR timeout is not a float or out of range".into());
        let negative = Command::Invalid("ERR timeout is negative".into());
        assert_eq!(p("BLPOP a b x"), not_float);
        assert_eq!(p("BLPOP a nan"), not_float);
        assert_eq!(p("BLPOP a 1x"), not_float);
        assert_eq!(p("BRPOP a -1"), negative);
        assert_eq!(p("BRPOPLPUSH a b -0.5"), negative);
        // Past a 64-bit number of milliseconds: negative, as Redis 7 on
        // x86-64 reads it.
        assert_eq!(p("BLPOP a inf"), negative);
        assert_eq!(p("BLPOP a 1e30"), negative);
        // BLMOVE reads its sides before its timeout.
        assert_eq!(p("BLMOVE a b UP LEFT -1"), Command::Invalid(syntax_error()));
        assert_eq!(p("BLMOVE a b LEFT LEFT -1"), negative);
        // Seconds as a float, rounded up to whole milliseconds; 0 for ever.
        let ms = |cmd, args: &[&str]| blocking_timeout_ms(cmd, args).unwrap();
        assert_eq!(ms(TypedCmd::BLPop, &["k", "0"]), Ok(0));
        assert_eq!(ms(TypedCmd::BLPop, &["k", "0.2"]), Ok(200));
        assert_eq!(ms(TypedCmd::BLPop, &["k", "0.0001"]), Ok(1));
        assert_eq!(ms(TypedCmd::BLPop, &["k", "-0.0001"]), Ok(0));
        assert_eq!(ms(TypedCmd::BRPop, &["k", "1e3"]), Ok(1_000_000));
        assert_eq!(
            ms(TypedCmd::BRPop, &["k", "1e15"]),
            Ok(1_000_000_000_000_000_000)
        );
        assert_eq!(
            ms(TypedCmd::BLMove, &["a", "b", "left", "left", "2"]),
            Ok(2000)
        );
        assert_eq!(blocking_timeout_ms(TypedCmd::LPop, &["k"]), None);
    }
}
