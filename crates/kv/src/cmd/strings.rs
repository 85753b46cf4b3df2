//! String commands: GET SET INCR INCRBY DECR DECRBY INCRBYFLOAT APPEND
//! STRLEN MGET MSET MSETNX GETSET GETDEL GETRANGE SETRANGE, and CAS
//! (compare-and-set, raft-kv's own). SET's time options
//! are parsed with GETEX's, in `expiry`.

use bytes::Bytes;

use super::{arity_error, not_integer, parse_i64, Command};
use crate::store::{Read, SetName, Write};

fn invalid(e: String) -> Option<Command> {
    Some(Command::Invalid(e))
}

/// Parses a string command; `name` is lower case, `args` follow it.
pub fn parse(name: &[u8], args: &[Bytes]) -> Option<Command> {
    // The table checked the number of arguments but for MSET's pairs.
    if (name == b"mset" || name == b"msetnx") && !args.len().is_multiple_of(2) {
        return Some(Command::Refused(arity_error(
            std::str::from_utf8(name).unwrap_or("mset"),
        )));
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
        b"msetnx" => Command::Write(Write::MSetNx {
            pairs: args
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
        }),
        b"incrbyfloat" => Command::Write(Write::IncrByFloat {
            key: key(),
            by: args[1].clone(),
        }),
        b"getdel" => Command::Write(Write::GetDel { key: key() }),
        b"getrange" => {
            let (Some(start), Some(end)) = (parse_i64(&args[1]), parse_i64(&args[2])) else {
                return invalid(not_integer());
            };
            Command::Read(Read::GetRange {
                key: key(),
                start,
                end,
            })
        }
        b"setrange" => match parse_i64(&args[1]) {
            None => return invalid(not_integer()),
            Some(o) if o < 0 => return invalid("ERR offset is out of range".into()),
            Some(offset) => Command::Write(Write::SetRange {
                key: key(),
                offset: offset as u64,
                value: args[2].clone(),
            }),
        },
        b"set" => return Some(parse_set(args)),
        _ => return None,
    };
    Some(c)
}

fn parse_set(args: &[Bytes]) -> Command {
    let parsed = super::expiry::parse_options(&args[2..], true)
        .and_then(|o| Ok((super::expiry::set_ttl(&o, SetName::Set)?, o)));
    match parsed {
        Ok((ttl, o)) => Command::Write(Write::Set {
            key: args[0].clone(),
            value: args[1].clone(),
            condition: o.condition,
            get: o.get,
            ttl,
        }),
        Err(e) => Command::Invalid(e),
    }
}
