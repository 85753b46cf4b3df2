//! String commands: GET SET INCR INCRBY DECR DECRBY APPEND STRLEN MGET MSET
//! GETSET, and CAS (compare-and-set, raft-kv's own).

use bytes::Bytes;

use super::{arity_error, not_integer, parse_i64, syntax_error, Command};
use crate::store::{Read, SetCondition, Write};

fn invalid(e: String) -> Option<Command> {
    Some(Command::Invalid(e))
}

/// Parses a string command; `name` is lower case, `args` follow it.
pub fn parse(name: &[u8], args: &[Bytes]) -> Option<Command> {
    // The table checked the number of arguments but for MSET's pairs.
    if name == b"mset" && args.len() % 2 != 0 {
        return Some(Command::Refused(arity_error("mset")));
    }
    let key = || args[0].clone();
    let c = match name {
        b"get" => Command::Read(Read::Get { key: key() }),
        b"strlen" => Command::Read(Read::Strlen { key: key() }),
        b"mget" => Command::Read(Read::MGet {
            keys: args.to_vec(),
        }),
        b"incr" => Command::Write(Write::IncrBy { key: key(), by: 1 }),
        b"decr" => Command::Write(Write::IncrBy { key: key(), by: -1 }),
        b"incrby" | b"decrby" => {
            let Some(by) = parse_i64(&args[1]) else {
                return invalid(not_integer());
            };
            let by = if name == b"decrby" {
                match by.checked_neg() {
                    Some(b) => b,
                    None => return invalid("ERR decrement would overflow".into()),
                }
            } else {
                by
            };
            Command::Write(Write::IncrBy { key: key(), by })
        }
        b"append" => Command::Write(Write::Append {
            key: key(),
            value: args[1].clone(),
        }),
        b"getset" => Command::Write(Write::GetSet {
            key: key(),
            value: args[1].clone(),
        }),
        b"mset" => Command::Write(Write::MSet {
            pairs: args
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
        }),
        b"cas" => Command::Write(Write::Cas {
            key: key(),
            expected: Some(args[1].clone()),
            new: args[2].clone(),
        }),
        b"set" => return Some(parse_set(args)),
        _ => return None,
    };
    Some(c)
}

fn parse_set(args: &[Bytes]) -> Command {
    let mut condition = SetCondition::Always;
    let mut get = false;
    let mut i = 2;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        match opt.as_slice() {
            // As in Redis 7, an option may be repeated; NX and XX exclude
            // each other.
            b"NX" if condition != SetCondition::IfPresent => condition = SetCondition::IfAbsent,
            b"XX" if condition != SetCondition::IfAbsent => condition = SetCondition::IfPresent,
            b"GET" => get = true,
            // No expiry is kept, so there is no time to live to keep.
            b"KEEPTTL" => {}
            b"EX" | b"PX" | b"EXAT" | b"PXAT" => return Command::Invalid(
                "ERR raft-kv keeps no expiry times: SET's EX, PX, EXAT and PXAT are not supported"
                    .into(),
            ),
            _ => return Command::Invalid(syntax_error()),
        }
        i += 1;
    }
    Command::Write(Write::Set {
        key: args[0].clone(),
        value: args[1].clone(),
        condition,
        get,
    })
}
