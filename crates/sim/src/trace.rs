//! A ring buffer of the last events, printed when an invariant fails. Events
//! are stored as small values and only formatted when shown.

use std::fmt;

use raft_core::{Body, Message, Role};

/// How many events a violation report shows.
pub const TRACE_SHOWN: usize = 80;

/// One thing that happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message reached its destination.
    Deliver {
        /// Sender (1-based node id).
        from: u64,
        /// Receiver.
        to: u64,
        /// The sender's term.
        term: u64,
        /// What it said.
        summary: Summary,
    },
    /// A node's role, leader or term changed.
    Role {
        /// The node.
        node: u64,
        /// Its role.
        role: Role,
        /// Its term.
        term: u64,
        /// The leader it knows.
        leader: u64,
    },
    /// A node made a batch durable.
    Persisted {
        /// The node.
        node: u64,
        /// Term and vote written, if any.
        hard: Option<(u64, u64, u64)>,
        /// First and last index of the entries written, if any.
        entries: Option<(u64, u64)>,
        /// Truncation point, if any.
        truncate: Option<u64>,
        /// Snapshot index, if any.
        snapshot: Option<u64>,
    },
    /// Anything rarer (faults, client operations), already formatted.
    Note(String),
}

/// The interesting fields of a message.
#[derive(Debug, Clone)]
pub struct Summary {
    kind: &'static str,
    detail: [u64; 4],
}

impl Summary {
    /// Summarizes `m`.
    pub fn of(m: &Message) -> Summary {
        let detail = match &m.body {
            Body::Append(a) => [a.prev_index, a.prev_term, a.entries.len() as u64, a.commit],
            Body::AppendResponse(r) => match r.outcome {
                raft_core::AppendOutcome::Accepted { match_index } => [1, match_index, 0, 0],
                raft_core::AppendOutcome::Rejected {
                    prev_index,
                    last_index,
                    conflict,
                } => {
                    let (t, i) = conflict.unwrap_or((0, 0));
                    [0, prev_index, last_index, t * 1_000_000 + i]
                }
            },
            Body::Heartbeat { commit, round } => [*commit, *round, 0, 0],
            Body::Commit { commit } => [*commit, 0, 0, 0],
            Body::HeartbeatResponse { round } => [*round, 0, 0, 0],
            Body::Vote(v) => [v.last_index, v.last_term, v.transfer as u64, 0],
            Body::VoteResponse { granted, .. } => [*granted as u64, 0, 0, 0],
            Body::Snapshot(c) => [c.meta.index, c.offset, c.data.len() as u64, c.total_bytes],
            Body::SnapshotResponse(r) => [r.snapshot_index, r.next_offset, r.done as u64, 0],
            Body::TimeoutNow => [0; 4],
            Body::ReadIndex { id } => [*id, 0, 0, 0],
            Body::ReadIndexResponse { id, index } => [*id, index.unwrap_or(u64::MAX), 0, 0],
        };
        Summary {
            kind: m.body.kind(),
            detail,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.detail;
        match self.kind {
            "append" => write!(
                f,
                "append prev={}/{} n={} commit={}",
                d[0], d[1], d[2], d[3]
            ),
            "append-response" if d[0] == 1 => write!(f, "append-ok match={}", d[1]),
            "append-response" => write!(
                f,
                "append-reject prev={} last={} hint={}/{}",
                d[1],
                d[2],
                d[3] / 1_000_000,
                d[3] % 1_000_000
            ),
            "heartbeat" => write!(f, "heartbeat commit={} round={}", d[0], d[1]),
            "heartbeat-response" => write!(f, "heartbeat-ok round={}", d[0]),
            "commit" => write!(f, "commit {}", d[0]),
            "vote" | "pre-vote" => write!(
                f,
                "{} last={}/{}{}",
                self.kind,
                d[0],
                d[1],
                if d[2] == 1 { " transfer" } else { "" }
            ),
            "vote-response" | "pre-vote-response" => {
                write!(f, "{} granted={}", self.kind, d[0] == 1)
            }
            "snapshot" => write!(
                f,
                "snapshot@{} off={} len={} total={}",
                d[0], d[1], d[2], d[3]
            ),
            "snapshot-response" => write!(f, "snapshot-ack@{} next={} done={}", d[0], d[1], d[2]),
            "read-index" => write!(f, "read-index id={}", d[0]),
            "read-index-response" => write!(f, "read-index-resp id={} index={}", d[0], d[1] as i64),
            other => f.write_str(other),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Deliver {
                from,
                to,
                term,
                summary,
            } => write!(f, "n{to} <- n{from} t{term} {summary}"),
            Event::Role {
                node,
                role,
                term,
                leader,
            } => write!(f, "n{node} is {role} in term {term} (leader {leader})"),
            Event::Persisted {
                node,
                hard,
                entries,
                truncate,
                snapshot,
            } => {
                write!(f, "n{node} persisted")?;
                if let Some(s) = snapshot {
                    write!(f, " snapshot@{s}")?;
                }
                if let Some(t) = truncate {
                    write!(f, " truncate>={t}")?;
                }
                if let Some((a, b)) = entries {
                    write!(f, " entries {a}..={b}")?;
                }
                if let Some((t, v, c)) = hard {
                    write!(f, " term={t} vote={v} commit={c}")?;
                }
                Ok(())
            }
            Event::Note(s) => f.write_str(s),
        }
    }
}

/// The recent history of a run.
#[derive(Debug)]
pub struct Trace {
    /// A ring: once full, the oldest event (at `head`) is overwritten in
    /// place.
    events: Vec<(u64, Event)>,
    head: usize,
    capacity: usize,
    /// Print every event as it happens (replay with `--trace`).
    pub echo: bool,
}

impl Trace {
    /// A trace keeping the last `capacity` events (at least one).
    pub fn new(capacity: usize) -> Trace {
        let capacity = capacity.max(1);
        Trace {
            events: Vec::with_capacity(capacity),
            head: 0,
            capacity,
            echo: false,
        }
    }

    /// Records an event at `time_us`.
    pub fn record(&mut self, time_us: u64, event: Event) {
        if self.echo {
            use std::io::Write;
            // A closed pipe (`| head`) is not an error worth dying for.
            let _ = writeln!(std::io::stdout().lock(), "{}", Line(time_us, &event));
        }
        if self.events.len() < self.capacity {
            self.events.push((time_us, event));
        } else {
            self.events[self.head] = (time_us, event);
            self.head = (self.head + 1) % self.capacity;
        }
    }

    /// The last `n` events, one per line.
    pub fn render(&self, n: usize) -> String {
        let (newer, older) = self.events.split_at(self.head);
        let all = older.iter().chain(newer);
        all.skip(self.events.len().saturating_sub(n))
            .map(|(t, e)| format!("{}\n", Line(*t, e)))
            .collect()
    }
}

struct Line<'a>(u64, &'a Event);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>7}.{:03}ms  {}", self.0 / 1000, self.0 % 1000, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_keeps_the_last_events_oldest_first() {
        let mut t = Trace::new(3);
        for i in 1..=7u64 {
            t.record(i * 1000, Event::Note(format!("e{i}")));
        }
        let lines: Vec<String> = t
            .render(10)
            .lines()
            .map(|l| l.split_whitespace().last().unwrap_or("").to_string())
            .collect();
        assert_eq!(lines, ["e5", "e6", "e7"]);
        assert_eq!(t.render(2).lines().count(), 2);
        assert!(t.render(2).ends_with("e7\n"));
    }
}
