//! The driver loop: each core's `Ready` goes through the same pipeline as
//! in the runtime (`raft_core::pipeline`): what may leave at once is sent,
//! the rest waits behind the disk, and committed entries are applied and
//! reads served only once the pipeline releases their batch. A crash loses
//! whatever is still in the pipeline.

use bytes::Bytes;
use raft_core::{Entry, EntryPayload, ReadState, Role};
use rand::Rng;

use crate::cluster::{id_of, Ev, Sim, MAX_READY_ROUNDS};
use crate::kv::{payload_hash, Command, Kv};
use crate::trace::Event;
use raft_core::pipeline::Batch;

impl Sim {
    /// Runs node `n`'s output loop until it has nothing more to say.
    pub(crate) fn drive(&mut self, n: usize) {
        for round in 0.. {
            if round == MAX_READY_ROUNDS {
                let detail = format!(
                    "n{} still has output after {round} batches in one step",
                    id_of(n)
                );
                self.fail("bounded work", detail);
                return;
            }
            if self.violation.is_some() {
                return;
            }
            let Some(raft) = self.nodes[n].raft.as_mut() else {
                return;
            };
            if !raft.has_ready() {
                break;
            }
            let rd = raft.ready();
            self.on_ready(n, rd);
        }
        self.check_node(n);
    }

    fn on_ready(&mut self, n: usize, rd: raft_core::Ready) {
        let id = id_of(n);
        if let Some(ss) = rd.soft_state {
            self.trace.record(
                self.now,
                Event::Role {
                    node: id,
                    role: ss.role,
                    term: ss.term,
                    leader: ss.leader,
                },
            );
            if ss.role == Role::Leader {
                self.stats.elections_won += 1;
            }
        }
        let raft = self.nodes[n].raft.as_ref().expect("driving a live node");
        if let Some(t) = rd.truncate_from {
            if let Some((term, _)) = self.nodes[n].leading {
                if raft.role() == Role::Leader && raft.term() == term {
                    let detail = format!("leader n{id} of term {term} truncates its log from {t}");
                    self.fail("leader append-only", detail);
                    return;
                }
            }
        }
        // A leader whose term is not durable yet (a lone voter wins at
        // once) holds its entries in memory only: nothing it sends leaves
        // before its term is durable, and a crash before then erases them
        // (it may then win the same term again and append others). Its
        // entries count once its term is durable (followers record them as
        // they append them).
        let durable = raft.role() != Role::Leader || raft.durable_term() == raft.term();
        if let Some(first) = rd.entries.first().filter(|_| durable) {
            let prev = raft.entry_term(first.index - 1).or_else(|| {
                rd.snapshot
                    .as_ref()
                    .filter(|s| s.meta.index + 1 == first.index)
                    .map(|s| s.meta.term)
            });
            let r = self.checker.appended(id, &rd.entries, prev);
            self.check(r);
        }
        let mut released = std::mem::take(&mut self.released);
        let send = self.nodes[n].pipeline.push(rd, false, &mut released);
        for m in send {
            self.net_send(m);
        }
        for batch in released.drain(..) {
            self.complete(n, batch);
        }
        self.released = released;
        self.start_flush(n);
    }

    /// Starts writing what waits for node `n`'s disk, unless a write is
    /// under way: everything waiting goes in one write (group commit, as
    /// the runtime does).
    fn start_flush(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if !node.is_up() || node.flushing.is_some() || !node.pipeline.has_save() {
            return;
        }
        let mut released = std::mem::take(&mut self.released);
        let job = node.pipeline.next_save(usize::MAX, &mut released);
        let life = node.life;
        if let Some(job) = job {
            node.flushing = Some(job);
            let d = self.disk_delay();
            self.schedule(d, Ev::DiskDone(n, life));
        }
        for batch in released.drain(..) {
            self.complete(n, batch);
        }
        self.released = released;
    }

    fn disk_delay(&mut self) -> u64 {
        if let Some((per_mille, (a, b))) = self.cfg.disk_stalls {
            if self.rng.random_range(0..1000) < per_mille {
                return self.rng.random_range(a..=b);
            }
        }
        let (a, b) = self.cfg.disk_delay_us;
        self.rng.random_range(a..=b)
    }

    /// The disk finished the write under way: it is durable, and what
    /// waited for it is released.
    pub(crate) fn disk_done(&mut self, n: usize, life: u32) {
        let node = &mut self.nodes[n];
        if node.life != life || !node.is_up() {
            return;
        }
        let Some(mut job) = node.flushing.take() else {
            return;
        };
        // Streamed snapshot chunks go to the temporary file first; a
        // streamed snapshot's data is that file, checked for completeness.
        for c in job
            .batches
            .iter_mut()
            .flat_map(|b| std::mem::take(&mut b.chunks))
        {
            if c.offset == 0 {
                node.receiving = Some((c.meta.clone(), c.total_bytes, Vec::new()));
            }
            match &mut node.receiving {
                Some((meta, total, buf))
                    if *meta == c.meta
                        && *total == c.total_bytes
                        && buf.len() as u64 == c.offset =>
                {
                    buf.extend_from_slice(&c.data);
                }
                _ => {
                    let detail = format!(
                        "n{} got snapshot chunk at {} of snapshot {} out of order",
                        id_of(n),
                        c.offset,
                        c.meta.index
                    );
                    self.fail("snapshot chunks in order", detail);
                    return;
                }
            }
        }
        let streamed = job.batches.iter().any(|b| b.streamed);
        if streamed {
            let Some(s) = job.save.snapshot.as_ref() else {
                self.fail("snapshot", "streamed without a snapshot".into());
                return;
            };
            match node.receiving.take() {
                Some((meta, total, buf)) if meta == s.meta && buf.len() as u64 == total => {
                    job.set_snapshot_data(Bytes::from(buf));
                }
                _ => {
                    let detail = format!(
                        "n{} installs streamed snapshot {} without all of its chunks",
                        id_of(n),
                        s.meta.index
                    );
                    self.fail("snapshot chunks complete", detail);
                    return;
                }
            }
        }
        let w = &job.save;
        let event = Event::Persisted {
            node: id_of(n),
            hard: w.hard_state.map(|h| (h.term, h.vote, h.commit)),
            entries: w
                .entries
                .first()
                .map(|f| (f.index, w.entries.last().map_or(f.index, |l| l.index))),
            truncate: w.truncate_from,
            snapshot: w.snapshot.as_ref().map(|s| s.meta.index),
        };
        let durable_commit = node.disk.hard.commit;
        if let Err(e) = node.disk.write(&mut job.save) {
            self.fail("storage", format!("n{}: {e}", id_of(n)));
            return;
        }
        if node.disk.hard.commit < durable_commit {
            let detail = format!(
                "n{}'s durable commit index went from {durable_commit} to {}",
                id_of(n),
                node.disk.hard.commit
            );
            self.fail("commit never goes backwards", detail);
            return;
        }
        self.trace.record(self.now, event);
        if streamed {
            if let (Some(s), Some(raft)) = (&job.save.snapshot, self.nodes[n].raft.as_mut()) {
                raft.set_snapshot_data(s.meta.index, s.data.clone());
            }
        }
        let mut released = std::mem::take(&mut self.released);
        self.nodes[n].pipeline.saved(job, &mut released);
        for batch in released.drain(..) {
            self.complete(n, batch);
            if self.violation.is_some() || self.nodes[n].life != life {
                return;
            }
        }
        self.released = released;
        self.drive(n);
        if self.nodes[n].life == life {
            self.start_flush(n);
        }
    }

    /// A batch is durable (or needed no disk): release what waited for it.
    fn complete(&mut self, n: usize, w: Batch) {
        for m in w.after {
            self.net_send(m);
        }
        if let Some((index, term)) = w.marker {
            if let Some(raft) = self.nodes[n].raft.as_mut() {
                raft.on_persisted(index, term);
            }
        }
        if let Some(snapshot) = &w.restore {
            self.restore(n, snapshot.meta.index, &snapshot.data);
        }
        for e in &w.committed {
            self.apply(n, e);
        }
        for r in w.reads {
            self.serve_read(n, r);
        }
        for id in w.aborted {
            self.read_aborted(n, id);
        }
        self.maybe_snapshot(n);
    }

    fn restore(&mut self, n: usize, index: u64, data: &Bytes) {
        let id = id_of(n);
        let Some(kv) = Kv::restore(data) else {
            self.fail(
                "snapshot",
                format!("n{id} received a snapshot it cannot decode"),
            );
            return;
        };
        self.stats.snapshots_installed += 1;
        let node = &mut self.nodes[n];
        if index <= node.kv.applied {
            let detail = format!(
                "n{id} restores a snapshot at {index} after applying {}",
                node.kv.applied
            );
            self.fail("applied never goes backwards", detail);
            return;
        }
        node.kv = kv;
        node.kv.applied = index;
        node.snapshot_index = index;
        let stale: Vec<u64> = node.proposals.range(..=index).map(|(&i, _)| i).collect();
        for i in stale {
            node.proposals.remove(&i);
        }
        let h = node.kv.state_hash();
        let r = self.checker.applied(id, index, h);
        self.check(r);
    }

    fn apply(&mut self, n: usize, e: &Entry) {
        let id = id_of(n);
        let node = &mut self.nodes[n];
        if e.index != node.kv.applied + 1 {
            let detail = format!(
                "n{id} applies entry {} right after {}",
                e.index, node.kv.applied
            );
            self.fail("applied in order", detail);
            return;
        }
        let command = match &e.payload {
            EntryPayload::Command(data) => Command::decode(data),
            _ => None,
        };
        let outcome = node.kv.apply(e.index, command.as_ref());
        let state = node.kv.state_hash();
        let proposal = node.proposals.remove(&e.index);
        let r = self
            .checker
            .committed(id, e.index, e.term, payload_hash(&e.payload));
        self.check(r);
        let r = self.checker.applied(id, e.index, state);
        self.check(r);
        if let Some((term, op)) = proposal {
            if term == e.term {
                if let Some(outcome) = outcome {
                    self.op_applied(op, outcome, e.index, e.term);
                }
            } else {
                self.op_lost(op);
            }
        }
    }

    fn serve_read(&mut self, n: usize, r: ReadState) {
        let node = &mut self.nodes[n];
        let Some(op) = node.reads.remove(&r.id) else {
            return;
        };
        if node.kv.applied < r.index {
            let detail = format!(
                "n{} serves a read at index {} having applied only {}",
                id_of(n),
                r.index,
                node.kv.applied
            );
            self.fail("reads wait for their index", detail);
            return;
        }
        let key = self.workload.key_of(op);
        let value = self.nodes[n].kv.get(key);
        self.op_read(op, value);
    }

    fn read_aborted(&mut self, n: usize, id: u64) {
        if let Some(op) = self.nodes[n].reads.remove(&id) {
            self.op_retry(op);
        }
    }

    fn maybe_snapshot(&mut self, n: usize) {
        let every = self.cfg.snapshot_every;
        let node = &mut self.nodes[n];
        if every == 0 || node.kv.applied < node.snapshot_index + every {
            return;
        }
        let Some(raft) = node.raft.as_mut() else {
            return;
        };
        let index = node.kv.applied;
        if raft.compact(index, node.kv.snapshot()).is_ok() {
            node.snapshot_index = index;
            self.stats.snapshots_taken += 1;
        }
    }
}
