//! Hash commands: HSET HSETNX HGET HMGET HDEL HGETALL HLEN HEXISTS HINCRBY
//! HINCRBYFLOAT HKEYS HVALS HSTRLEN HSCAN HRANDFIELD. Their arguments go to
//! the store as sent and are checked there, where Redis checks them (a
//! syntax error after WRONGTYPE, a count after the key is found...).
//! HRANDFIELD goes through the log: its pick is seeded by the entry.

use bytes::Bytes;

use super::Command;

/// Parses a hash command; `name` is lower case, `args` follow it.
pub fn parse(name: &[u8], args: &[Bytes]) -> Option<Command> {
    super::typed(name, args)
}

#[cfg(test)]
mod tests {
    use crate::cmd::tests::p;
    use crate::cmd::{arity_error, Command};
    use crate::store::{Read, TypedCmd, Write};

    #[test]
    fn hash_commands_carry_their_arguments() {
        assert!(matches!(
            p("HSET h f v g w"),
            Command::Write(Write::Typed { cmd: TypedCmd::HSet, args }) if args.len() == 5
        ));
        assert_eq!(p("HSET h f v g"), Command::Refused(arity_error("hset")));
        assert_eq!(p("HSET h f"), Command::Refused(arity_error("hset")));
        assert!(matches!(
            p("hgetall h"),
            Command::Read(Read::Typed {
                cmd: TypedCmd::HGetAll,
                ..
            })
        ));
        // A random pick goes through the log.
        assert!(matches!(
            p("HRANDFIELD h 3"),
            Command::Write(Write::Typed {
                cmd: TypedCmd::HRandField,
                ..
            })
        ));
    }
}
