//! raft-kv's own cluster commands: RAFT.STATUS, RAFT.JOIN id address,
//! RAFT.LEAVE id, RAFT.TRANSFER id.

use bytes::{Bytes, BytesMut};

use super::{arity_error, Command, Local};
use crate::context::Context;
use crate::frame::{put_bulk, put_error, put_simple};

/// Parses a RAFT.* command; `name` is lower case.
pub fn parse(name: &[u8], args: &[Bytes]) -> Option<Command> {
    let name_str = std::str::from_utf8(name).unwrap_or("?");
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let c = match (name, args.len()) {
        (b"raft.status", 0) => Local::RaftStatus,
        (b"raft.join", 2) => Local::RaftJoin {
            id: text(&args[0]),
            address: text(&args[1]),
        },
        (b"raft.leave", 1) => Local::RaftLeave(text(&args[0])),
        (b"raft.transfer", 1) => Local::RaftTransfer(text(&args[0])),
        (b"raft.status" | b"raft.join" | b"raft.leave" | b"raft.transfer", _) => {
            return Some(Command::Refused(arity_error(name_str)))
        }
        _ => return None,
    };
    Some(Command::Local(c))
}

fn node_error(out: &mut BytesMut, e: raft_node::NodeError) {
    put_error(out, &format!("ERR {e}"));
}

/// Runs a RAFT.* command and writes its reply.
pub async fn run(local: Local, ctx: &Context, out: &mut BytesMut) {
    let node = &ctx.node;
    match local {
        Local::RaftStatus => {
            let status = crate::admin::node_status(ctx).await;
            let json = serde_json::to_string_pretty(&status).unwrap_or_default();
            put_bulk(out, json.as_bytes());
        }
        Local::RaftJoin { id, address } => {
            // The node at `address` says who it is during the join; check
            // that it is the one the operator meant before adding it.
            match node.join(&address).await {
                Err(e) => node_error(out, e),
                Ok(()) => match node.peers().await {
                    Ok(peers) => match peers.iter().find(|p| p.address == address) {
                        Some(p) if p.id == id => put_simple(out, "OK"),
                        Some(p) => put_error(
                            out,
                            &format!(
                                "ERR the node at {address} joined, but its id is {}, not {id}: remove it with RAFT.LEAVE {} if it is the wrong node",
                                p.id, p.id
                            ),
                        ),
                        None => put_simple(out, "OK"),
                    },
                    Err(e) => node_error(out, e),
                },
            }
        }
        Local::RaftLeave(id) => match node.leave(&id).await {
            Ok(()) => put_simple(out, "OK"),
            Err(e) => node_error(out, e),
        },
        Local::RaftTransfer(id) => match node.transfer_leadership(&id).await {
            Ok(()) => put_simple(out, "OK"),
            Err(e) => node_error(out, e),
        },
        _ => put_error(out, "ERR not a RAFT command"),
    }
}
