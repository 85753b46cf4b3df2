//! Set commands: SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP
//! SRANDMEMBER SINTER SUNION SDIFF SINTERSTORE SUNIONSTORE SDIFFSTORE SSCAN.
//! Their arguments go to the store as sent and are checked there, where
//! Redis checks them. SPOP and SRANDMEMBER go through the log: their picks
//! are seeded by the entry.

use bytes::Bytes;

use super::Command;

/// Parses a set command; `name` is lower case, `args` follow it.
pub fn parse(name: &[u8], args: &[Bytes]) -> Option<Command> {
    super::typed(name, args)
}

#[cfg(test)]
mod tests {
    use crate::cmd::tests::p;
    use crate::cmd::{arity_error, Command};
    use crate::store::{Read, TypedCmd, Write};

    #[test]
    fn set_commands_carry_their_arguments() {
        assert!(matches!(
            p("SADD s a b"),
            Command::Write(Write::Typed { cmd: TypedCmd::SAdd, args }) if args.len() == 3
        ));
        assert_eq!(p("SADD s"), Command::Refused(arity_error("sadd")));
        assert!(matches!(
            p("SINTER a b"),
            Command::Read(Read::Typed {
                cmd: TypedCmd::SInter,
                ..
            })
        ));
        assert!(matches!(
            p("SRANDMEMBER s"),
            Command::Write(Write::Typed {
                cmd: TypedCmd::SRandMember,
                ..
            })
        ));
    }
}
