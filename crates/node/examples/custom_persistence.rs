//! A custom Persistence: an append-only journal of every change in memory,
//! replayed on `load`. Any implementation is checked by the conformance kit
//! (`raft_node::testkit::persistence::run_all`), as this example does first.
//!
//! `cargo run -p raft-node --example custom_persistence`

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use raft_node::example::{kv_get, KvCommand};
use raft_node::persistence::{
    Change, IdentityMismatch, InvalidChange, Persistence, PersistenceError, State,
};
use raft_node::{Node, Options};

/// Keeps every change, in order; `load` replays them.
#[derive(Clone, Default)]
struct Journal {
    changes: Arc<Mutex<Vec<Change>>>,
}

#[async_trait]
impl Persistence for Journal {
    async fn save(&self, change: Change) -> Result<(), PersistenceError> {
        let mut changes = self.changes.lock().expect("not poisoned");
        // Refuse a gap, as every store must.
        let mut state = replay(&changes)?;
        apply(&mut state, change.clone())?;
        changes.push(change);
        Ok(())
    }

    async fn load(&self) -> Result<Option<State>, PersistenceError> {
        replay(&self.changes.lock().expect("not poisoned"))
    }
}

fn replay(changes: &[Change]) -> Result<Option<State>, PersistenceError> {
    let mut state = None;
    for c in changes {
        apply(&mut state, c.clone())?;
    }
    Ok(state)
}

fn apply(state: &mut Option<State>, c: Change) -> Result<(), PersistenceError> {
    let empty = c.is_empty();
    if let Some(identity) = c.identity {
        match state {
            Some(s) if s.identity != identity => {
                return Err(PersistenceError::identity(IdentityMismatch::Differs {
                    stored: (&s.identity).into(),
                    given: (&identity).into(),
                }))
            }
            Some(_) => {}
            None => {
                *state = Some(State {
                    identity,
                    hard_state: Default::default(),
                    snapshot: None,
                    entries: Vec::new(),
                })
            }
        }
    }
    let Some(s) = state else {
        return if empty {
            Ok(())
        } else {
            Err(PersistenceError::Invalid(InvalidChange::MissingIdentity))
        };
    };
    if let Some(snap) = c.snapshot {
        if let Some(old) = s
            .snapshot
            .as_ref()
            .filter(|old| old.meta.index > snap.meta.index)
        {
            return Err(PersistenceError::Invalid(InvalidChange::SnapshotOlder {
                index: snap.meta.index,
                stored: old.meta.index,
            }));
        }
        s.entries.retain(|e| e.index > snap.meta.index);
        s.snapshot = Some(snap);
    }
    if let Some(t) = c.truncate_from {
        if let Some(snap) = s.snapshot.as_ref().filter(|snap| t <= snap.meta.index) {
            return Err(PersistenceError::Invalid(
                InvalidChange::TruncationIntoSnapshot {
                    from: t,
                    snapshot: snap.meta.index,
                },
            ));
        }
        s.entries.retain(|e| e.index < t);
    }
    for e in c.entries {
        let next = match s.entries.last() {
            Some(last) => last.index + 1,
            None => s.snapshot.as_ref().map_or(1, |snap| snap.meta.index + 1),
        };
        if e.index != next {
            return Err(PersistenceError::Invalid(InvalidChange::EntryNotNext {
                index: e.index,
                last: next - 1,
            }));
        }
        s.entries.push(e);
    }
    if let Some(hs) = c.hard_state {
        s.hard_state = hs;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), raft_node::NodeError> {
    // The conformance kit, on a fresh journal each time.
    raft_node::testkit::persistence::run_all(|| {
        let journal = Journal::default();
        move || {
            let j = journal.clone();
            async move { j }
        }
    })
    .await;
    println!("the journal passes the persistence conformance kit");

    let journal = Journal::default();
    let options = Options {
        id: Some("solo".into()),
        persistence: Some(Arc::new(journal.clone())),
        ..Options::default()
    };
    let node = Node::new(options).await?;
    let set = KvCommand::Set {
        key: "k".into(),
        value: "v".into(),
    };
    node.command(set.encode()).await?;
    node.shutdown().await?;
    // Restart from the journal: the data is still there.
    let options = Options {
        persistence: Some(Arc::new(journal.clone())),
        ..Options::default()
    };
    let node = Node::new(options).await?;
    let value = node.read(kv_get(b"k")).await?;
    let saved = journal.changes.lock().expect("not poisoned").len();
    println!(
        "restarted as {} with {saved} saved changes; k = {:?}",
        node.id(),
        raft_node::example::KvOutput::decode(&value)
    );
    node.shutdown().await
}
