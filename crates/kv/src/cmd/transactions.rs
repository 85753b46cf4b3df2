//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! A connection in MULTI queues its commands (`+QUEUED`); EXEC sends them
//! as one write, one log entry, which every node applies at once (see the
//! store's `tx`). A command refused when queued (unknown, wrong number of
//! arguments, not permitted, not allowed in a transaction) makes EXEC
//! fail with `-EXECABORT`, as in Redis 7; one that fails when it runs
//! (a bad option or value, a wrong kind of value) gets its error in EXEC's
//! array and the others still run.
//!
//! WATCH reads the keys' versions linearizably (as GET reads, from any
//! node; through the log's read path even on a READONLY connection) and
//! keeps them in the connection; EXEC carries them, and the store runs
//! the transaction only if every watched key still has its version there.
//! EXEC, DISCARD and the connection's end forget them.

use bytes::{Bytes, BytesMut};

use super::{Command, Local, Session};
use crate::config::Settings;
use crate::context::Context;
use crate::frame::{put_error, put_simple, Frame, Limits};
use crate::store::{encode_reads, encoded_write_len, Read, TxOp, Write};

/// A transaction command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxCommand {
    /// `MULTI`
    Multi,
    /// `EXEC`
    Exec,
    /// `DISCARD`
    Discard,
    /// `WATCH key...`
    Watch(Vec<Bytes>),
    /// `UNWATCH`
    Unwatch,
}

/// Parses a transaction command; `name` is lower case, `args` follow it.
pub fn parse(name: &[u8], args: &[Bytes]) -> Option<Command> {
    let c = match name {
        b"multi" => TxCommand::Multi,
        b"exec" => TxCommand::Exec,
        b"discard" => TxCommand::Discard,
        b"watch" => TxCommand::Watch(args.to_vec()),
        b"unwatch" => TxCommand::Unwatch,
        _ => return None,
    };
    Some(Command::Local(Local::Tx(c)))
}

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
const NOT_IN_MULTI: &str = "ERR Command not allowed inside a transaction";

/// A connection's transaction state.
#[derive(Debug, Default)]
pub struct TxState {
    /// The commands queued since MULTI; `None` outside MULTI.
    queue: Option<Queue>,
    /// The watched keys and the versions WATCH read, in order.
    watches: Vec<(Bytes, u64)>,
}

#[derive(Debug, Default)]
struct Queue {
    ops: Vec<TxOp>,
    /// The bytes the EXEC's write would take so far.
    bytes: usize,
    /// A command was refused while queueing: EXEC aborts.
    dirty: bool,
}

impl TxState {
    /// Whether the connection is between MULTI and EXEC or DISCARD.
    pub fn in_multi(&self) -> bool {
        self.queue.is_some()
    }

    /// Marks the transaction as failed (a command refused while queued).
    pub fn flag(&mut self) {
        if let Some(q) = &mut self.queue {
            q.dirty = true;
        }
    }

    /// The keys watched.
    pub fn watched(&self) -> usize {
        self.watches.len()
    }

    /// Queues a command given inside MULTI and writes its reply
    /// (`+QUEUED`, or the error that fails the transaction). Gives back
    /// the commands that are not queued: the transaction commands and
    /// QUIT, which run at once. `max_bytes` is the largest entry.
    pub fn queue(
        &mut self,
        command: Command,
        max_bytes: usize,
        out: &mut BytesMut,
    ) -> Option<Command> {
        let Some(queue) = &mut self.queue else {
            return Some(command);
        };
        let reply = |f: Frame| TxOp::Reply(f.to_bytes());
        let op = match command {
            Command::Local(Local::Tx(TxCommand::Unwatch)) => reply(Frame::Simple("OK".into())),
            Command::Local(Local::Tx(_) | Local::Quit) => return Some(command),
            Command::Write(w) => TxOp::Write(w),
            Command::Read(r) => TxOp::Read(r),
            Command::Answer(f) => reply(f),
            Command::Invalid(e) => reply(Frame::Error(e)),
            Command::Local(Local::Ping(None)) => reply(Frame::Simple("PONG".into())),
            Command::Local(Local::Ping(Some(m)) | Local::Echo(m)) => reply(Frame::Bulk(m)),
            Command::Refused(e) => {
                queue.dirty = true;
                put_error(out, &e);
                return None;
            }
            Command::Local(_) => {
                queue.dirty = true;
                put_error(out, NOT_IN_MULTI);
                return None;
            }
        };
        let size = match &op {
            TxOp::Write(w) => encoded_write_len(w),
            TxOp::Read(r) => encode_reads(std::slice::from_ref(r)).len(),
            TxOp::Reply(b) => b.len() + 4,
        } + 1;
        queue.bytes += size;
        if queue.bytes > max_bytes {
            queue.dirty = true;
            queue.ops.clear();
            put_error(
                out,
                &format!(
                    "ERR the transaction is larger than the largest log entry ({max_bytes} bytes)"
                ),
            );
            return None;
        }
        queue.ops.push(op);
        put_simple(out, "QUEUED");
        None
    }
}

/// Runs a transaction command and writes its reply.
pub async fn run(
    command: TxCommand,
    session: &mut Session,
    ctx: &Context,
    settings: &Settings,
    out: &mut BytesMut,
) {
    let tx = &mut session.tx;
    match command {
        TxCommand::Multi => {
            if tx.in_multi() {
                return put_error(out, "ERR MULTI calls can not be nested");
            }
            tx.queue = Some(Queue::default());
            put_simple(out, "OK");
        }
        TxCommand::Discard => {
            if tx.queue.take().is_none() {
                return put_error(out, "ERR DISCARD without MULTI");
            }
            tx.watches.clear();
            put_simple(out, "OK");
        }
        TxCommand::Unwatch => {
            // Inside MULTI, UNWATCH is queued (`TxState::queue`): its
            // reply is +OK in EXEC's array.
            tx.watches.clear();
            put_simple(out, "OK");
        }
        TxCommand::Watch(keys) => {
            if tx.in_multi() {
                return put_error(out, "ERR WATCH inside MULTI is not allowed");
            }
            let max = ctx.node.max_entry_bytes().unwrap_or(usize::MAX);
            let keys = match new_watches(&tx.watches, keys, max) {
                Ok(keys) => keys,
                Err(e) => return put_error(out, &e),
            };
            if keys.is_empty() {
                return put_simple(out, "OK");
            }
            match read_versions(&keys, ctx).await {
                Ok(versions) => {
                    tx.watches.extend(keys.into_iter().zip(versions));
                    put_simple(out, "OK");
                }
                Err(e) => put_error(out, &e),
            }
        }
        TxCommand::Exec => {
            let Some(queue) = tx.queue.take() else {
                return put_error(out, "ERR EXEC without MULTI");
            };
            let watches = std::mem::take(&mut tx.watches);
            if queue.dirty {
                return put_error(out, EXECABORT);
            }
            let write = Write::Exec {
                watches,
                ops: queue.ops,
            };
            let bytes = encoded_write_len(&write);
            let limits = crate::proposer::Limits {
                bytes: ctx.node.max_entry_bytes().unwrap_or(usize::MAX),
                writes: settings.max_pipeline,
            };
            match ctx
                .writes
                .propose(&ctx.node, &ctx.metrics, vec![write], bytes, limits)
                .await
            {
                Ok(reply) => out.extend_from_slice(&reply),
                Err(e) => put_error(
                    out,
                    &crate::server::error_reply(&e, ctx.node.leader().as_ref()),
                ),
            }
        }
    }
}

/// The keys' versions, read linearizably.
/// The bytes one watched key takes in EXEC's entry: the key and its
/// version (and a length).
fn watch_bytes(key: &[u8]) -> usize {
    key.len() + 16
}

/// The keys of a WATCH that are not watched yet, each once; an error if
/// all the watched keys would then take more than `max` bytes, the most
/// EXEC's entry can carry (so a connection's watches stay bounded, and a
/// WATCH that could never be sent with EXEC is refused at once).
fn new_watches(
    watches: &[(Bytes, u64)],
    keys: Vec<Bytes>,
    max: usize,
) -> Result<Vec<Bytes>, String> {
    let mut seen: std::collections::HashSet<&[u8]> =
        watches.iter().map(|(k, _)| k.as_ref()).collect();
    let mut bytes: usize = watches.iter().map(|(k, _)| watch_bytes(k)).sum();
    let mut fresh = Vec::new();
    for key in &keys {
        if seen.insert(key.as_ref()) {
            bytes += watch_bytes(key);
            fresh.push(key.clone());
        }
    }
    if bytes > max {
        return Err(format!(
            "ERR WATCH: the watched keys would take {bytes} bytes, more than a transaction can carry ({max} bytes)"
        ));
    }
    Ok(fresh)
}

async fn read_versions(keys: &[Bytes], ctx: &Context) -> Result<Vec<u64>, String> {
    let query = encode_reads(&[Read::Versions {
        keys: keys.to_vec(),
    }]);
    let leader = || ctx.node.leader();
    let answer = match crate::server::barrier(ctx).await {
        Ok(()) => ctx.node.read(query).await,
        Err(e) => Err(e),
    }
    .map_err(|e| crate::server::error_reply(&e, leader().as_ref()))?;
    let limits = Limits {
        max_elements: keys.len().max(1),
        ..Limits::default()
    };
    match Frame::parse(&answer, &limits) {
        Ok((Frame::Array(items), _)) if items.len() == keys.len() => items
            .into_iter()
            .map(|f| match f {
                Frame::Integer(v) => Ok(v as u64),
                other => Err(format!("ERR the store answered WATCH with {other:?}")),
            })
            .collect(),
        Ok((Frame::Error(e), _)) => Err(e),
        other => Err(format!("ERR the store answered WATCH with {other:?}")),
    }
}

/// Writes `PONG`'s or `ECHO`'s reply (for tests of the queue).
#[cfg(test)]
fn ping_reply(m: Option<&[u8]>) -> Bytes {
    use crate::frame::put_bulk;
    let mut b = BytesMut::new();
    match m {
        Some(m) => put_bulk(&mut b, m),
        None => put_simple(&mut b, "PONG"),
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::tests::p;

    fn queued(tx: &mut TxState, line: &str) -> String {
        let mut out = BytesMut::new();
        let back = tx.queue(p(line), 1 << 20, &mut out);
        assert!(back.is_none(), "{line} was queued");
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn commands_queue_and_refusals_fail_the_transaction() {
        let mut tx = TxState {
            queue: Some(Queue::default()),
            ..TxState::default()
        };
        assert_eq!(queued(&mut tx, "SET k v"), "+QUEUED\r\n");
        assert_eq!(queued(&mut tx, "GET k"), "+QUEUED\r\n");
        // A bad option is a runtime error: queued, answered in EXEC.
        assert_eq!(queued(&mut tx, "SET k v NX XX"), "+QUEUED\r\n");
        assert_eq!(queued(&mut tx, "PING"), "+QUEUED\r\n");
        assert_eq!(queued(&mut tx, "ECHO hi"), "+QUEUED\r\n");
        assert_eq!(queued(&mut tx, "UNWATCH"), "+QUEUED\r\n");
        let q = tx.queue.as_ref().unwrap();
        assert!(!q.dirty);
        assert_eq!(q.ops.len(), 6);
        assert_eq!(
            q.ops[2],
            TxOp::Reply(Frame::Error("ERR syntax error".into()).to_bytes())
        );
        assert_eq!(q.ops[3], TxOp::Reply(ping_reply(None)));
        assert_eq!(q.ops[4], TxOp::Reply(ping_reply(Some(b"hi"))));
        // Not queued: the transaction commands and QUIT.
        let mut out = BytesMut::new();
        for line in ["EXEC", "DISCARD", "MULTI", "WATCH k", "QUIT"] {
            assert!(tx.queue(p(line), 1 << 20, &mut out).is_some(), "{line}");
        }
        assert!(out.is_empty());
        assert_eq!(
            queued(&mut tx, "GET"),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert!(tx.queue.as_ref().unwrap().dirty);
        assert_eq!(queued(&mut tx, "INFO"), format!("-{NOT_IN_MULTI}\r\n"));
    }

    #[test]
    fn watches_are_kept_once_and_bounded_by_what_an_entry_carries() {
        let keys = |names: &[&str]| -> Vec<Bytes> {
            names
                .iter()
                .map(|n| Bytes::copy_from_slice(n.as_bytes()))
                .collect()
        };
        let watched = vec![(Bytes::from_static(b"a"), 7)];
        // Already watched, or twice in one WATCH: once.
        assert_eq!(
            new_watches(&watched, keys(&["a", "b", "b"]), 1000).unwrap(),
            keys(&["b"])
        );
        // "a" and "b" take 17 bytes each: 34 fit in 34, not in 33.
        assert!(new_watches(&watched, keys(&["b"]), 34).is_ok());
        let e = new_watches(&watched, keys(&["b"]), 33).unwrap_err();
        assert!(e.contains("34 bytes") && e.contains("(33 bytes)"), "{e}");
        // Keys already watched cost nothing more.
        assert!(new_watches(&watched, keys(&["a"]), 17).unwrap().is_empty());
    }

    #[test]
    fn a_transaction_larger_than_an_entry_fails() {
        let mut tx = TxState {
            queue: Some(Queue::default()),
            ..TxState::default()
        };
        let mut out = BytesMut::new();
        // Each takes 18 bytes: 1 for its kind, 17 for the write.
        tx.queue(p("SET k 0123456789"), 30, &mut out);
        assert_eq!(&out[..], b"+QUEUED\r\n");
        out.clear();
        tx.queue(p("SET k 0123456789"), 30, &mut out);
        assert!(out.starts_with(b"-ERR the transaction is larger"));
        assert!(tx.queue.as_ref().unwrap().dirty);
        assert!(tx.queue.as_ref().unwrap().ops.is_empty());
    }
}
