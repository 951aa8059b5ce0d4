//! Tests of [`Replica`] (core + store + waiting requests) driven by hand-built
//! messages, named after the dissertation sections they check.

use faultline_node::raft::{Entry, EntryPayload, Membership, Message, MessageBody, NodeId, Persisted};
use faultline_node::replica::{ClientRequest, Replica, ReplicaConfig, Reply};
use faultline_node::store::{Command, Op};
use serde_json::json;

fn msg(from: NodeId, to: NodeId, term: u64, body: MessageBody) -> Message {
    Message { from, to, term, body }
}

/// Does the shell's work: persists (nothing to do here), sends (returned), applies.
fn process(r: &mut Replica) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(mut ready) = r.ready() {
        out.extend(std::mem::take(&mut ready.messages));
        let _ = r.advance(ready);
    }
    out
}

fn write_entry(index: u64, term: u64, client_id: u64, value: u64) -> Entry {
    let command = Command { client_id, seq: 1, op: Op::Write { key: "k".into(), value: json!(value) } };
    Entry { index, term, payload: EntryPayload::Command(serde_json::to_vec(&command).unwrap()) }
}

fn read_k(client_id: u64) -> ClientRequest {
    ClientRequest { client_id, seq: 0, op: Op::Read { key: "k".into() } }
}

fn read_index_request_id(out: &[Message]) -> u64 {
    let ids: Vec<u64> = out
        .iter()
        .filter_map(|m| match m.body {
            MessageBody::ReadIndexRequest { id } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 1, "one read forwarded to the leader: {out:?}");
    ids[0]
}

/// Dissertation §6.4: a follower's read is served once the leader confirms an
/// index. An answer to a read the follower forwarded before it restarted, delayed
/// in the network, must not satisfy a read forwarded after the restart: in between
/// the leader may have committed (and acknowledged) writes the old index misses
/// (issue 19, item 4).
#[test]
fn dissertation_6_4_a_read_index_answer_from_before_a_restart_does_not_serve_a_new_read() {
    let members = Membership::with_voters(1..=3);
    let config = ReplicaConfig::new(2);
    let mut r =
        Replica::new(config.clone(), Persisted { initial_membership: members.clone(), ..Persisted::default() }, 7)
            .unwrap();
    let entries = vec![Entry { index: 1, term: 1, payload: EntryPayload::Noop }, write_entry(2, 1, 50, 1)];
    r.step(msg(
        1,
        2,
        1,
        MessageBody::AppendEntries { prev_log_index: 0, prev_log_term: 0, entries: entries.clone(), leader_commit: 2 },
    ));
    let _ = process(&mut r);
    assert_eq!(r.applied_index(), 2);
    r.client_request(10, read_k(60));
    let old_id = read_index_request_id(&process(&mut r));
    // The leader's answer (index 2) is delayed in the network; the follower crashes.
    let stale_answer = msg(1, 2, 1, MessageBody::ReadIndexResponse { id: old_id, index: Some(2) });
    let persisted =
        Persisted { hard_state: r.raft().hard_state(), snapshot: None, initial_membership: members, entries };
    let mut r = Replica::new(config, persisted, 8).unwrap();
    let _ = process(&mut r);
    // Meanwhile the leader commits k = 2 at index 3 and acknowledges it; the
    // restarted follower hears a heartbeat and forwards a new read.
    r.step(msg(1, 2, 1, MessageBody::Heartbeat { leader_commit: 2, read_round: 5 }));
    let _ = process(&mut r);
    r.client_request(20, read_k(61));
    let _new_id = read_index_request_id(&process(&mut r));
    r.step(stale_answer);
    let _ = process(&mut r);
    let replies: Vec<(u64, Reply)> = r.take_replies();
    assert!(
        replies.iter().all(|(token, _)| *token != 20),
        "the new read was answered from the pre-restart read index: {replies:?}"
    );
}
