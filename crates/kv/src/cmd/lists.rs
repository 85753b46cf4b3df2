//! List commands: LPUSH RPUSH LPOP RPOP LLEN LRANGE LINDEX LSET LREM LTRIM
//! LPOS LMOVE. Their arguments go to the store as sent and are checked
//! there, where Redis checks them (LSET finds its key before it reads its
//! index, LRANGE reads its indexes first...).

use bytes::Bytes;

use super::Command;

/// Parses a list command; `name` is lower case, `args` follow it.
pub fn parse(name: &[u8], args: &[Bytes]) -> Option<Command> {
    super::typed(name, args)
}

#[cfg(test)]
mod tests {
    use crate::cmd::tests::p;
    use crate::cmd::{arity_error, Command};
    use crate::store::{Read, TypedCmd, Write};

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
}
