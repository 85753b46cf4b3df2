//! Snapshots and log compaction: taking a snapshot of applied state,
//! sending it in bounded chunks to followers that need compacted entries,
//! and installing one received from the leader.
//!
//! Rules kept here:
//! - only applied (hence committed) state is ever snapshotted;
//! - a follower installs a snapshot only if it goes beyond its commit index;
//!   if it already holds the snapshot's last entry it keeps the entries after
//!   it (Raft paper Figure 13, rule 6): what it acknowledged is never dropped
//!   (openraft #511);
//! - a leader finishes sending the snapshot it started with, and keeps the
//!   log entries after it until the follower has it, so that the follower
//!   can always continue from the log (hashicorp/raft #697).

use bytes::{Bytes, BytesMut};

use crate::bugs::Bug;
use crate::message::{Body, SnapshotChunk, SnapshotResponse};
use crate::progress::ReplicationState;
use crate::raft::Raft;
use crate::types::{LogIndex, NodeId, Role, Snapshot, SnapshotMeta};

/// Why a snapshot could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    /// The index is not applied yet.
    #[error("index {index} is not applied yet (applied: {applied})")]
    NotApplied {
        /// The requested index.
        index: LogIndex,
        /// The applied index.
        applied: LogIndex,
    },
    /// A snapshot at or beyond that index exists.
    #[error("a snapshot already covers index {0}")]
    AlreadyCovered(LogIndex),
}

/// A snapshot being received, chunk by chunk, in order.
///
/// Invariant: `received` bytes have been accepted; without streaming they
/// are in `data` (`data.len() == received`), with streaming they were handed
/// out in `Ready::snapshot_chunks` and `data` stays empty.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    meta: SnapshotMeta,
    total_bytes: u64,
    received: u64,
    data: BytesMut,
}

impl Raft {
    /// The state machine's state at `index` (which must be applied) is
    /// `data`: record it as the latest snapshot and drop the log entries it
    /// covers, except `snapshot_trailing_entries` and what followers being
    /// sent a snapshot still need.
    pub fn compact(&mut self, index: LogIndex, data: Bytes) -> Result<(), CompactError> {
        if index > self.log.applied {
            return Err(CompactError::NotApplied {
                index,
                applied: self.log.applied,
            });
        }
        let covered = self
            .snapshot
            .as_ref()
            .map_or(self.log.offset().0, |s| s.meta.index);
        if index <= covered {
            return Err(CompactError::AlreadyCovered(covered));
        }
        let term = self
            .log
            .term(index)
            .expect("applied entries above the snapshot are held");
        let membership = self
            .conf
            .at(index)
            .expect("configuration history reaches back to the last snapshot")
            .clone();
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                membership,
            },
            data,
        };
        self.metrics.snapshots_taken += 1;
        self.snapshot = Some(snapshot.clone());
        self.snapshot_data_ready = true;
        self.out.snapshot = Some(snapshot);
        self.out.restore_snapshot = false;
        let mut keep_from = index.saturating_sub(self.cfg.snapshot_trailing_entries);
        for p in self.progress.values() {
            if let ReplicationState::Snapshot(s) = &p.state {
                keep_from = keep_from.min(s.snapshot.meta.index);
            }
        }
        self.log.compact_to(keep_from);
        self.conf.prune_to(index);
        Ok(())
    }

    /// Leader: `to` needs entries that were compacted; start sending the
    /// snapshot. Returns false if there is none to send (entries are only
    /// compacted under a snapshot, so that means `to` claimed an impossible
    /// position; it is left in probe).
    pub(crate) fn start_snapshot(&mut self, to: NodeId) -> bool {
        let Some(snapshot) = self.snapshot.clone() else {
            return false;
        };
        if !self.snapshot_data_ready {
            // A streamed snapshot whose file the driver has not handed back
            // yet: the follower is probed again at the next heartbeat.
            return false;
        }
        let Some(pr) = self.progress.get_mut(&to) else {
            return false;
        };
        self.metrics.snapshots_sent += 1;
        pr.become_snapshot(snapshot);
        true
    }

    /// Leader: sends the next chunks of the snapshot `to` is receiving, up to
    /// the chunk window.
    pub(crate) fn send_snapshot_chunks(&mut self, to: NodeId) {
        let chunk = self.cfg.snapshot_chunk_bytes as u64;
        let window = self.cfg.max_inflight_snapshot_chunks as u64 * chunk;
        let round = self.reads.round;
        loop {
            let Some(pr) = self.progress.get_mut(&to) else {
                return;
            };
            let ReplicationState::Snapshot(s) = &mut pr.state else {
                return;
            };
            let total = s.snapshot.data.len() as u64;
            let done_sending = s.sent_bytes > 0 && s.sent_bytes >= total;
            if done_sending || s.sent_bytes >= s.acked_bytes + window {
                return;
            }
            let start = s.sent_bytes;
            let end = (start + chunk).min(total);
            let data = s.snapshot.data.slice(start as usize..end as usize);
            let meta = s.snapshot.meta.clone();
            // An empty snapshot still needs one (empty) chunk.
            s.sent_bytes = end.max(1);
            let body = Body::Snapshot(Box::new(SnapshotChunk {
                meta,
                total_bytes: total,
                offset: start,
                data,
                round,
            }));
            self.send(to, body);
        }
    }

    /// Follower: one chunk of a snapshot from the leader.
    pub(crate) fn handle_snapshot_chunk(&mut self, from: NodeId, chunk: SnapshotChunk) {
        let index = chunk.meta.index;
        let round = chunk.round;
        let reply = |next_offset: u64, done: bool| {
            Body::SnapshotResponse(SnapshotResponse {
                snapshot_index: index,
                next_offset,
                done,
                round,
            })
        };
        if index <= self.log.commit && !self.bug(Bug::SnapshotDropsUncommitted) {
            // We already hold (and committed) everything it covers.
            self.incoming = None;
            self.send(from, reply(chunk.total_bytes, true));
            return;
        }
        let same = self
            .incoming
            .as_ref()
            .is_some_and(|i| i.meta == chunk.meta && i.total_bytes == chunk.total_bytes);
        if !same {
            if chunk.offset != 0 {
                self.send(from, reply(0, false));
                return;
            }
            let capacity = if self.cfg.stream_snapshots {
                0
            } else {
                chunk.total_bytes.min(1 << 26) as usize
            };
            self.incoming = Some(Incoming {
                meta: chunk.meta.clone(),
                total_bytes: chunk.total_bytes,
                received: 0,
                data: BytesMut::with_capacity(capacity),
            });
        }
        let stream = self.cfg.stream_snapshots;
        let incoming = self.incoming.as_mut().expect("set above");
        let received = incoming.received;
        if chunk.offset != received || received + chunk.data.len() as u64 > incoming.total_bytes {
            self.send(from, reply(received, false));
            return;
        }
        incoming.received += chunk.data.len() as u64;
        let received = incoming.received;
        let total = incoming.total_bytes;
        if stream {
            self.out.snapshot_chunks.push(crate::ready::IncomingChunk {
                meta: chunk.meta,
                total_bytes: chunk.total_bytes,
                offset: chunk.offset,
                data: chunk.data,
            });
        } else {
            incoming.data.extend_from_slice(&chunk.data);
        }
        if received < total {
            self.send(from, reply(received, false));
            return;
        }
        let incoming = self.incoming.take().expect("set above");
        let snapshot = Snapshot {
            meta: incoming.meta,
            data: incoming.data.freeze(),
        };
        self.install_snapshot(snapshot, stream);
        self.send(from, reply(total, true));
    }

    /// The driver can read the latest snapshot's data again (a streamed one
    /// was written to a file it now maps), or has a cheaper copy of it (a
    /// file instead of memory): later transfers to followers use `data`.
    /// Ignored unless `index` is the latest snapshot's.
    pub fn set_snapshot_data(&mut self, index: LogIndex, data: Bytes) {
        if let Some(s) = &mut self.snapshot {
            if s.meta.index == index {
                s.data = data;
                self.snapshot_data_ready = true;
            }
        }
    }

    /// Follower: a complete snapshot beyond our commit index (its data in
    /// `snapshot`, or, when `streamed`, in the chunks handed out).
    fn install_snapshot(&mut self, snapshot: Snapshot, streamed: bool) {
        let SnapshotMeta { index, term, .. } = snapshot.meta;
        if self.log.term(index) == Some(term) && !self.bug(Bug::SnapshotDropsUncommitted) {
            // We hold its last entry: it is committed, and so is everything
            // before it; keep the entries after it and apply them as usual.
            // (A streamed file is simply not used: the driver drops it when
            // the next transfer starts or the node restarts.)
            self.commit_to(index);
            return;
        }
        self.metrics.snapshots_installed += 1;
        self.log.reset_to(index, term);
        self.conf.reset(index, snapshot.meta.membership.clone());
        self.snapshot = Some(snapshot.clone());
        self.snapshot_data_ready = !streamed;
        self.out.snapshot = Some(snapshot);
        self.out.restore_snapshot = true;
        self.out.snapshot_streamed = streamed;
    }

    /// Leader: progress of a snapshot transfer.
    pub(crate) fn handle_snapshot_response(&mut self, from: NodeId, resp: SnapshotResponse) {
        if self.role != Role::Leader {
            return;
        }
        let ticks = self.ticks;
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.last_contact_tick = ticks;
        pr.acked_round = pr.acked_round.max(resp.round);
        if resp.done {
            if resp.snapshot_index > self.log.last_index() {
                return;
            }
            let advanced = pr.acknowledge(resp.snapshot_index);
            if let ReplicationState::Snapshot(_) = pr.state {
                let next = pr.match_index + 1;
                pr.become_probe(next);
            }
            if advanced {
                self.maybe_commit();
            }
        } else if let ReplicationState::Snapshot(s) = &mut pr.state {
            let total = s.snapshot.data.len() as u64;
            if s.snapshot.meta.index == resp.snapshot_index && resp.next_offset <= total {
                if resp.next_offset < s.acked_bytes || resp.next_offset > s.sent_bytes {
                    // The follower lost track (restart, reordering): resend from
                    // where it is.
                    s.sent_bytes = resp.next_offset;
                }
                s.acked_bytes = resp.next_offset;
            }
        }
        self.check_read_quorum();
        if self.role == Role::Leader {
            self.send_append(from);
        }
    }
}
