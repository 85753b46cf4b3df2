//! Expiry commands: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, TTL, PTTL,
//! EXPIRETIME, PEXPIRETIME, PERSIST.

use bytes::Bytes;

use super::Command;

/// Parses an expiry command; `name` is lower case, `args` follow it.
pub fn parse(_name: &[u8], _args: &[Bytes]) -> Option<Command> {
    None
}
