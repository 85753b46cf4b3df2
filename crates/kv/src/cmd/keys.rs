//! Key-space commands: DEL (UNLINK), EXISTS, KEYS, SCAN, DBSIZE, FLUSHDB
//! (FLUSHALL: there is one database), TYPE, RENAME, RENAMENX, COPY. They
//! work on keys of every type.

use bytes::Bytes;

use super::{arity_error, not_integer, parse_i64, syntax_error, Command};
use crate::store::{Read, TypedCmd, Write};

/// The most keys one SCAN call may ask to examine.
const MAX_SCAN_COUNT: i64 = 1 << 20;

/// Parses a key-space command; `name` is lower case, `args` follow it.
pub fn parse(name: &[u8], args: &[Bytes]) -> Option<Command> {
    // The table checked the number of arguments but for FLUSHDB's one
    // option.
    if matches!(name, b"flushdb" | b"flushall") && args.len() > 1 {
        return Some(Command::Refused(arity_error(
            std::str::from_utf8(name).unwrap_or("?"),
        )));
    }
    let c = match name {
        b"del" | b"unlink" => Command::Write(Write::Del {
            keys: args.to_vec(),
        }),
        b"exists" => Command::Read(Read::Exists {
            keys: args.to_vec(),
        }),
        b"keys" => Command::Read(Read::Keys {
            pattern: args[0].clone(),
        }),
        b"dbsize" => Command::Read(Read::DbSize),
        b"flushdb" | b"flushall" => {
            if let Some(mode) = args.first() {
                let m = mode.to_ascii_uppercase();
                if m != b"ASYNC" && m != b"SYNC" {
                    return Some(Command::Invalid(syntax_error()));
                }
            }
            Command::Write(Write::FlushDb)
        }
        b"scan" => parse_scan(args),
        b"type" | b"rename" | b"renamenx" | b"copy" => return super::typed(name, args),
        _ => return None,
    };
    Some(c)
}

fn parse_scan(args: &[Bytes]) -> Command {
    let cursor = match std::str::from_utf8(&args[0])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(c) => c,
        None => return Command::Invalid("ERR invalid cursor".into()),
    };
    let mut pattern = None;
    let mut count = 10usize;
    let mut kind = false;
    let mut i = 1;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        let Some(value) = args.get(i + 1) else {
            return Command::Invalid(syntax_error());
        };
        match opt.as_slice() {
            b"MATCH" => pattern = Some(value.clone()),
            b"COUNT" => match parse_i64(value) {
                Some(c) if (1..=MAX_SCAN_COUNT).contains(&c) => count = c as usize,
                Some(_) => return Command::Invalid(syntax_error()),
                None => return Command::Invalid(not_integer()),
            },
            // Filtered by the store, which knows the types.
            b"TYPE" => kind = true,
            _ => return Command::Invalid(syntax_error()),
        }
        i += 2;
    }
    if kind {
        return Command::Read(Read::Typed {
            cmd: TypedCmd::ScanType,
            args: args.to_vec(),
        });
    }
    Command::Read(Read::Scan {
        cursor,
        pattern,
        count,
    })
}
