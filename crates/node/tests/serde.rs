//! With the `serde` feature, what a custom transport or store carries
//! (envelopes with every kind of request and reply, changes, loaded
//! states) goes through a serde format and back unchanged.

use raft_node::persistence::Change;
use raft_node::testkit::persistence::random_changes;
use raft_node::testkit::transport::sample_envelopes;
use raft_node::transport::{ErrorCode, Reply};
use raft_node::{Envelope, State};

fn round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let json = serde_json::to_string(value).expect("serialize");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("deserialize {json}: {e}"))
}

#[test]
fn every_envelope_kind_survives_a_serde_round_trip() {
    let envelopes: Vec<Envelope> = sample_envelopes();
    assert!(envelopes.len() > 5, "too few samples to mean anything");
    for envelope in &envelopes {
        assert_eq!(&round_trip(envelope), envelope);
    }
}

#[test]
fn every_reply_kind_survives_a_serde_round_trip() {
    let replies = [
        Reply::Ack,
        Reply::Output(bytes::Bytes::from_static(b"\x00\xffout")),
        Reply::Hello {
            id: "n1".into(),
            cluster: "c".into(),
            empty: true,
            client_address: "127.0.0.1:1".into(),
        },
        Reply::Error("no".into()),
        Reply::Failed {
            code: ErrorCode::NotLeader,
            message: "ask n2".into(),
        },
        Reply::NotMember("n9".into()),
    ];
    for reply in &replies {
        assert_eq!(&round_trip(reply), reply);
    }
}

#[test]
fn random_changes_and_the_states_they_build_survive_a_serde_round_trip() {
    let changes: Vec<Change> = random_changes(7, 300);
    let mut snapshots = 0;
    for change in &changes {
        snapshots += usize::from(change.snapshot.is_some());
        assert_eq!(&round_trip(change), change);
    }
    assert!(snapshots > 0, "the random changes hold no snapshot");
    let mut generator = raft_node::testkit::persistence::ChangeGenerator::new(7);
    for _ in 0..300 {
        generator.next_change();
    }
    let state: State = generator
        .model()
        .state()
        .expect("a state after 300 changes");
    assert_eq!(round_trip(&state), state);
}
