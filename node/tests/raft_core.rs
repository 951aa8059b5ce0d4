//! Unit tests of the pure Raft core, named after the sections of the Raft paper
//! (Ongaro & Ousterhout 2014) and Ongaro's dissertation they check.

use faultline_node::raft::{
    Config, Entry, EntryPayload, HardState, Membership, Message, MessageBody, NodeId, Persisted, Raft, Ready, Role,
};

fn config(id: NodeId) -> Config {
    let mut c = Config::new(id);
    c.election_timeout_ticks = 10;
    c.heartbeat_interval_ticks = 2;
    c
}

fn fresh(id: NodeId, n: u64) -> Raft {
    Raft::new(config(id), Persisted { initial_membership: Membership::with_voters(1..=n), ..Persisted::default() }, 7)
}

fn with_log(id: NodeId, n: u64, term: u64, terms: &[u64]) -> Raft {
    let entries = terms
        .iter()
        .enumerate()
        .map(|(i, t)| Entry { term: *t, index: i as u64 + 1, payload: EntryPayload::Noop })
        .collect();
    let persisted = Persisted {
        hard_state: HardState { term, vote: None, commit: 0 },
        snapshot: None,
        initial_membership: Membership::with_voters(1..=n),
        entries,
    };
    Raft::new(config(id), persisted, 7)
}

/// Does the shell's work for a ready: reports everything persisted, returns the messages.
fn drain(r: &mut Raft) -> (Ready, Vec<Message>) {
    let mut ready = r.ready();
    if let Some(last) = ready.entries.last() {
        r.on_persisted(last.index, last.term);
    }
    let messages = std::mem::take(&mut ready.messages);
    (ready, messages)
}

fn msg(from: NodeId, to: NodeId, term: u64, body: MessageBody) -> Message {
    Message { from, to, term, body }
}

/// Delivers messages among `nodes` until quiet (no loss), processing readies.
fn settle(nodes: &mut [Raft]) {
    for _ in 0..100 {
        let mut all = Vec::new();
        for n in nodes.iter_mut() {
            let (_, m) = drain(n);
            all.extend(m);
        }
        if all.is_empty() {
            return;
        }
        for m in all {
            let to = m.to as usize - 1;
            nodes[to].step(m);
        }
    }
    panic!("did not settle");
}

fn elect(nodes: &mut [Raft], leader: usize) {
    for _ in 0..40 {
        nodes[leader].tick();
        if nodes[leader].role() != Role::Follower {
            break;
        }
    }
    settle(nodes);
    assert!(nodes[leader].is_leader(), "node {} not elected: {:?}", leader + 1, nodes[leader]);
}

#[test]
fn raft_5_2_a_single_node_elects_itself_and_commits_its_noop() {
    let mut r = fresh(1, 1);
    for _ in 0..20 {
        r.tick();
    }
    assert!(r.is_leader());
    let (ready, _) = drain(&mut r);
    assert_eq!(
        ready.hard_state.map(|h| (h.term, h.vote)),
        Some((1, Some(1))),
        "term and vote are persisted with the campaign"
    );
    assert_eq!(r.commit_index(), 1, "the no-op commits once persisted");
}

#[test]
fn raft_5_2_three_nodes_elect_one_leader_and_replicate() {
    let mut nodes: Vec<Raft> = (1..=3).map(|id| fresh(id, 3)).collect();
    elect(&mut nodes, 0);
    let (index, _) = nodes[0].propose(b"x".to_vec()).unwrap();
    settle(&mut nodes);
    assert_eq!(nodes[0].commit_index(), index);
    for n in &nodes[1..] {
        assert_eq!(n.role(), Role::Follower);
        assert_eq!(n.leader_id(), Some(1));
        assert_eq!(n.entry(index).map(|e| e.payload.clone()), Some(EntryPayload::Command(b"x".to_vec())));
    }
}

#[test]
fn raft_5_2_a_node_votes_at_most_once_per_term() {
    let mut r = fresh(3, 3);
    r.step(msg(1, 3, 1, MessageBody::RequestVote { last_log_index: 0, last_log_term: 0, transfer: false }));
    r.step(msg(2, 3, 1, MessageBody::RequestVote { last_log_index: 0, last_log_term: 0, transfer: false }));
    let (_, out) = drain(&mut r);
    let grants: Vec<(NodeId, bool)> = out
        .iter()
        .filter_map(|m| match m.body {
            MessageBody::RequestVoteResponse { granted } => Some((m.to, granted)),
            _ => None,
        })
        .collect();
    assert_eq!(grants, vec![(1, true), (2, false)]);
    assert_eq!(r.vote(), Some(1));
}

#[test]
fn raft_5_4_1_vote_only_for_up_to_date_log() {
    // Our log ends in term 2; a candidate whose log ends in term 1 is refused even if longer.
    let mut r = with_log(3, 3, 2, &[1, 2]);
    r.step(msg(1, 3, 3, MessageBody::RequestVote { last_log_index: 5, last_log_term: 1, transfer: false }));
    r.step(msg(2, 3, 3, MessageBody::RequestVote { last_log_index: 2, last_log_term: 2, transfer: false }));
    let (_, out) = drain(&mut r);
    let grants: Vec<(NodeId, bool)> = out
        .iter()
        .filter_map(|m| match m.body {
            MessageBody::RequestVoteResponse { granted } => Some((m.to, granted)),
            _ => None,
        })
        .collect();
    assert_eq!(grants, vec![(1, false), (2, true)]);
}

#[test]
fn dissertation_9_6_prevote_does_not_disturb_the_term() {
    let mut nodes: Vec<Raft> = (1..=3).map(|id| fresh(id, 3)).collect();
    elect(&mut nodes, 0);
    let term = nodes[0].term();
    // Node 3 is cut off and times out repeatedly: with PreVote its term stays put.
    for _ in 0..100 {
        nodes[2].tick();
        let _ = drain(&mut nodes[2]);
    }
    assert_eq!(nodes[2].term(), term, "pre-candidates do not bump their term");
    settle(&mut nodes);
    assert!(nodes[0].is_leader(), "the leader survives the rejoin");
}

#[test]
fn dissertation_6_2_check_quorum_leader_steps_down_when_cut_off() {
    let mut nodes: Vec<Raft> = (1..=3).map(|id| fresh(id, 3)).collect();
    elect(&mut nodes, 0);
    for _ in 0..30 {
        nodes[0].tick();
        let _ = drain(&mut nodes[0]); // every message is lost
    }
    assert_eq!(nodes[0].role(), Role::Follower);
}

#[test]
fn dissertation_4_2_3_followers_in_lease_ignore_disruptive_votes() {
    let mut nodes: Vec<Raft> = (1..=3).map(|id| fresh(id, 3)).collect();
    elect(&mut nodes, 0);
    let term = nodes[1].term();
    nodes[1].step(msg(
        3,
        2,
        term + 5,
        MessageBody::RequestVote { last_log_index: 99, last_log_term: 99, transfer: false },
    ));
    assert_eq!(nodes[1].term(), term, "a follower that hears from its leader ignores the vote");
    assert_eq!(nodes[1].leader_id(), Some(1));
}

#[test]
fn raft_5_3_truncate_only_at_first_conflict_and_never_on_stale_messages() {
    let mut r = with_log(2, 3, 3, &[1, 1, 2, 2]);
    // A stale AppendEntries that matches a prefix must not shorten the log.
    r.step(msg(
        1,
        2,
        3,
        MessageBody::AppendEntries {
            prev_log_index: 1,
            prev_log_term: 1,
            entries: vec![Entry { term: 1, index: 2, payload: EntryPayload::Noop }],
            leader_commit: 0,
        },
    ));
    assert_eq!(r.last_index(), 4);
    // A conflicting entry at index 3 truncates from there.
    r.step(msg(
        1,
        2,
        3,
        MessageBody::AppendEntries {
            prev_log_index: 2,
            prev_log_term: 1,
            entries: vec![Entry { term: 3, index: 3, payload: EntryPayload::Noop }],
            leader_commit: 0,
        },
    ));
    assert_eq!((r.last_index(), r.last_term()), (3, 3));
}

#[test]
fn raft_5_3_fast_backtracking_hints_skip_a_whole_term() {
    let mut r = with_log(2, 3, 5, &[1, 4, 4, 4, 4]);
    r.step(msg(
        1,
        2,
        5,
        MessageBody::AppendEntries { prev_log_index: 5, prev_log_term: 5, entries: vec![], leader_commit: 0 },
    ));
    let (_, out) = drain(&mut r);
    match &out[0].body {
        MessageBody::AppendEntriesResponse { success: false, index: 5, conflict_term: Some(4), conflict_index: 2 } => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn raft_5_4_2_never_commit_a_previous_term_entry_by_counting_replicas() {
    // Node 1 leads term 3 with an entry of term 2 at index 2 that node 2 also holds.
    let mut leader = with_log(1, 3, 2, &[1, 2]);
    for _ in 0..40 {
        leader.tick();
        let (_, out) = drain(&mut leader);
        for m in out {
            if let MessageBody::PreVote { .. } = m.body {
                leader.step(msg(m.to, 1, m.term, MessageBody::PreVoteResponse { granted: true }));
            }
            if let MessageBody::RequestVote { .. } = m.body {
                leader.step(msg(m.to, 1, m.term, MessageBody::RequestVoteResponse { granted: true }));
            }
        }
        if leader.is_leader() {
            break;
        }
    }
    assert!(leader.is_leader());
    let term = leader.term();
    let _ = drain(&mut leader);
    // Node 2 acknowledges index 2 only (not the new term's no-op at 3).
    leader.step(msg(
        2,
        1,
        term,
        MessageBody::AppendEntriesResponse { success: true, index: 2, conflict_term: None, conflict_index: 0 },
    ));
    assert_eq!(leader.commit_index(), 0, "index 2 is from term 2: counting replicas must not commit it");
    leader.step(msg(
        2,
        1,
        term,
        MessageBody::AppendEntriesResponse { success: true, index: 3, conflict_term: None, conflict_index: 0 },
    ));
    assert_eq!(leader.commit_index(), 3, "the no-op of the current term commits everything before it");
}

#[test]
fn dissertation_10_2_1_leader_counts_itself_only_after_its_own_persist() {
    let mut r = fresh(1, 1);
    for _ in 0..20 {
        r.tick();
    }
    assert!(r.is_leader());
    let ready = r.ready();
    assert_eq!(r.commit_index(), 0, "nothing is committed before the leader's fsync");
    let last = ready.entries.last().unwrap();
    r.on_persisted(last.index, last.term);
    assert_eq!(r.commit_index(), 1);
}

#[test]
fn dissertation_6_4_read_index_waits_for_a_quorum_heartbeat_round() {
    let mut nodes: Vec<Raft> = (1..=3).map(|id| fresh(id, 3)).collect();
    elect(&mut nodes, 0);
    nodes[0].read_index(42).unwrap();
    let (ready, out) = drain(&mut nodes[0]);
    assert!(ready.read_states.is_empty(), "no answer before the quorum round");
    let rounds: Vec<&Message> = out.iter().filter(|m| matches!(m.body, MessageBody::Heartbeat { .. })).collect();
    assert_eq!(rounds.len(), 2);
    let reply = {
        let m = rounds[0];
        let MessageBody::Heartbeat { read_round, .. } = m.body else { unreachable!() };
        msg(m.to, 1, m.term, MessageBody::HeartbeatResponse { read_round })
    };
    nodes[0].step(reply);
    let (ready, _) = drain(&mut nodes[0]);
    assert_eq!(ready.read_states.len(), 1);
    assert_eq!(ready.read_states[0].id, 42);
    assert_eq!(ready.read_states[0].index, Some(nodes[0].commit_index()));
}

#[test]
fn dissertation_6_4_followers_forward_read_index_to_the_leader() {
    let mut nodes: Vec<Raft> = (1..=3).map(|id| fresh(id, 3)).collect();
    elect(&mut nodes, 0);
    nodes[1].read_index(7).unwrap();
    let (_, out) = drain(&mut nodes[1]);
    assert!(out.iter().any(|m| m.to == 1 && matches!(m.body, MessageBody::ReadIndexRequest { id: 7 })));
    nodes[0].step(out.into_iter().find(|m| m.to == 1).unwrap());
    // Deliver everything; the follower's ReadState appears in one of its readies.
    let mut found = None;
    for _ in 0..20 {
        let mut all = Vec::new();
        for (i, n) in nodes.iter_mut().enumerate() {
            let (ready, m) = drain(n);
            if i == 1 && !ready.read_states.is_empty() {
                found = Some(ready.read_states[0]);
            }
            all.extend(m);
        }
        for m in all {
            let to = m.to as usize - 1;
            nodes[to].step(m);
        }
    }
    let state = found.expect("the follower got a read index");
    assert_eq!(state.id, 7);
    assert!(state.index.is_some());
}

#[test]
fn raft_5_2_restarted_node_remembers_its_vote() {
    let mut r = fresh(3, 3);
    r.step(msg(1, 3, 1, MessageBody::RequestVote { last_log_index: 0, last_log_term: 0, transfer: false }));
    let (ready, _) = drain(&mut r);
    let hs = ready.hard_state.unwrap();
    let mut restarted = Raft::new(
        config(3),
        Persisted { hard_state: hs, initial_membership: Membership::with_voters(1..=3), ..Persisted::default() },
        8,
    );
    restarted.step(msg(2, 3, 1, MessageBody::RequestVote { last_log_index: 0, last_log_term: 0, transfer: false }));
    let (_, out) = drain(&mut restarted);
    assert!(matches!(out[0].body, MessageBody::RequestVoteResponse { granted: false }));
}

#[test]
fn dissertation_3_10_leadership_transfer() {
    let mut nodes: Vec<Raft> = (1..=3).map(|id| fresh(id, 3)).collect();
    elect(&mut nodes, 0);
    nodes[0].transfer_leadership(2).unwrap();
    settle(&mut nodes);
    assert!(nodes[1].is_leader(), "{:?}", nodes[1]);
    assert!(!nodes[0].is_leader());
}

#[test]
fn raft_6_joint_consensus_adds_a_learner_then_a_voter() {
    let mut nodes: Vec<Raft> = (1..=3).map(|id| fresh(id, 3)).collect();
    nodes.push(Raft::new(
        config(4),
        Persisted { initial_membership: Membership::default(), ..Persisted::default() },
        7,
    ));
    elect(&mut nodes[..3], 0);
    // Add node 4 as a learner, then promote it through a joint configuration.
    let mut learner = nodes[0].membership().clone();
    learner.learners.insert(4);
    nodes[0].propose_membership(learner).unwrap();
    settle(&mut nodes);
    assert_eq!(nodes[3].commit_index(), nodes[0].commit_index(), "the learner caught up");
    let mut joint = nodes[0].membership().clone();
    joint.voters_outgoing = joint.voters.clone();
    joint.voters.insert(4);
    joint.learners.remove(&4);
    nodes[0].propose_membership(joint).unwrap();
    settle(&mut nodes);
    let m = nodes[0].membership().clone();
    assert!(!m.is_joint(), "the leader left the joint configuration: {m:?}");
    assert_eq!(m.voters.len(), 4);
    assert_eq!(nodes[3].membership(), &m);
}

#[test]
fn dissertation_6_4_1_lease_reads_skip_the_round_only_while_the_lease_holds() {
    let mut nodes: Vec<Raft> = (1..=3)
        .map(|id| {
            let mut c = config(id);
            c.lease_reads = true;
            Raft::new(c, Persisted { initial_membership: Membership::with_voters(1..=3), ..Persisted::default() }, 7)
        })
        .collect();
    // With lease reads a starting node waits out one election timeout before voting.
    for n in nodes.iter_mut().skip(1) {
        for _ in 0..10 {
            n.tick();
        }
    }
    elect(&mut nodes, 0);
    // One heartbeat round acknowledged by everyone gives the leader its lease.
    for _ in 0..2 {
        nodes[0].tick();
    }
    settle(&mut nodes);
    nodes[0].read_index(1).unwrap();
    let (ready, _) = drain(&mut nodes[0]);
    assert_eq!(ready.read_states.len(), 1, "answered from the lease, without a round");
    // Cut off (every message lost) for most of an election timeout: the lease lapses.
    for _ in 0..9 {
        nodes[0].tick();
        let _ = drain(&mut nodes[0]);
    }
    nodes[0].read_index(2).unwrap();
    let (ready, _) = drain(&mut nodes[0]);
    assert!(ready.read_states.is_empty(), "an expired lease needs a quorum round");
}

// ---- configurations, snapshots, transfers and lease reads (issue 19) -----

fn append(from: NodeId, to: NodeId, term: u64, prev: (u64, u64), entries: Vec<Entry>, commit: u64) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::AppendEntries { prev_log_index: prev.0, prev_log_term: prev.1, entries, leader_commit: commit },
    )
}

fn entry(index: u64, term: u64, payload: EntryPayload) -> Entry {
    Entry { index, term, payload }
}

/// Voters 1-3 with node 4 as a learner.
fn with_learner_4() -> Membership {
    let mut m = Membership::with_voters(1..=3);
    m.learners.insert(4);
    m
}

/// Node 4 promoted: the joint configuration {1,2,3,4} / {1,2,3}.
fn promoting_4() -> Membership {
    let mut m = Membership::with_voters(1..=4);
    m.voters_outgoing = (1..=3).collect();
    m
}

/// Delivers messages among `nodes` until quiet, dropping every message to or from a node in `cut`.
fn settle_without(nodes: &mut [Raft], cut: &[NodeId]) {
    for _ in 0..100 {
        let mut all = Vec::new();
        for n in nodes.iter_mut() {
            let (_, m) = drain(n);
            all.extend(m);
        }
        all.retain(|m| !cut.contains(&m.from) && !cut.contains(&m.to));
        if all.is_empty() {
            return;
        }
        for m in all {
            let to = m.to as usize - 1;
            nodes[to].step(m);
        }
    }
    panic!("did not settle");
}

/// Raft §6 with §7: a follower snapshots at 2 (configuration C, committed) while an
/// uncommitted configuration sits at 4; a new leader's entries then cut its log back
/// to 3. The latest configuration left is the snapshot's, C, not the one the node
/// started with (issue 19, item 1).
#[test]
fn raft_6_a_truncated_configuration_falls_back_to_the_snapshots_not_an_older_one() {
    let mut r = fresh(2, 3);
    let c = with_learner_4();
    let entries = vec![
        entry(1, 1, EntryPayload::Noop),
        entry(2, 1, EntryPayload::Membership(c.clone())),
        entry(3, 1, EntryPayload::Noop),
        entry(4, 1, EntryPayload::Membership(promoting_4())),
    ];
    r.step(append(1, 2, 1, (0, 0), entries, 2));
    let (ready, _) = drain(&mut r);
    assert_eq!(ready.committed_entries.len(), 2, "entries 1 and 2 applied");
    assert_eq!(r.membership(), &promoting_4(), "the latest configuration is in force, committed or not");
    r.compact(faultline_node::raft::Snapshot { index: 2, term: 1, membership: c.clone(), data: Vec::new() });
    // Node 3, elected in term 2 without entries 3 and 4, overwrites them.
    r.step(append(3, 2, 2, (2, 1), vec![entry(3, 2, EntryPayload::Noop)], 2));
    let _ = drain(&mut r);
    assert_eq!(r.last_index(), 3);
    assert_eq!(r.membership(), &c, "the snapshot's configuration is the latest left");
}

/// Raft §6: a server uses the latest configuration in its log, committed or not. A
/// learner receives an uncommitted joint entry promoting it; a new leader replaces
/// that entry with one of its own (no configuration among them, the log no shorter).
/// The learner must go back to being a learner and never campaign (issue 19, item 2).
#[test]
fn raft_6_an_overwritten_configuration_entry_stops_being_in_force() {
    let mut r =
        Raft::new(config(4), Persisted { initial_membership: Membership::default(), ..Persisted::default() }, 7);
    let entries = vec![
        entry(1, 1, EntryPayload::Noop),
        entry(2, 1, EntryPayload::Membership(with_learner_4())),
        entry(3, 1, EntryPayload::Membership(promoting_4())),
    ];
    r.step(append(1, 4, 1, (0, 0), entries, 2));
    let _ = drain(&mut r);
    assert!(r.membership().is_voter(4));
    r.step(append(2, 4, 2, (2, 1), vec![entry(3, 2, EntryPayload::Noop)], 2));
    let _ = drain(&mut r);
    assert_eq!(r.log_term(3), Some(2), "entry 3 was replaced");
    assert_eq!(r.membership(), &with_learner_4(), "the overwritten promotion is not in force");
    for _ in 0..40 {
        r.tick();
        let _ = drain(&mut r);
    }
    assert_eq!(r.role(), Role::Follower, "a learner never campaigns: {r:?}");
}

/// Dissertation §6.4.1 with §3.10: the voters ignore their lease for a transfer's
/// campaign, so the old leader's lease ends when it sends TimeoutNow. Cut off right
/// after sending it, the old leader must not serve reads from its lease while the
/// target, elected by the others, commits new writes (issue 19, item 3).
#[test]
fn dissertation_6_4_1_no_lease_reads_after_timeout_now() {
    let mut nodes: Vec<Raft> = (1..=3)
        .map(|id| {
            let mut c = config(id);
            c.lease_reads = true;
            Raft::new(c, Persisted { initial_membership: Membership::with_voters(1..=3), ..Persisted::default() }, 7)
        })
        .collect();
    for n in nodes.iter_mut().skip(1) {
        for _ in 0..10 {
            n.tick();
        }
    }
    elect(&mut nodes, 0);
    for _ in 0..2 {
        nodes[0].tick();
    }
    settle(&mut nodes);
    let old_commit = nodes[0].commit_index();
    nodes[0].transfer_leadership(2).unwrap();
    let (_, out) = drain(&mut nodes[0]);
    let timeout_now: Vec<Message> = out.into_iter().filter(|m| m.body == MessageBody::TimeoutNow).collect();
    assert_eq!(timeout_now.len(), 1, "the target is current: TimeoutNow goes out at once");
    // Node 1 is cut off from here on: only its TimeoutNow gets through.
    nodes[1].step(timeout_now[0].clone());
    settle_without(&mut nodes, &[1]);
    assert!(nodes[1].is_leader(), "node 3 voted for the transfer target: {:?}", nodes[1]);
    nodes[1].propose(b"w".to_vec()).unwrap();
    settle_without(&mut nodes, &[1]);
    assert!(nodes[1].commit_index() > old_commit, "the new leader committed a write");
    assert!(nodes[0].is_leader(), "the old leader has not heard of it");
    nodes[0].read_index(9).unwrap();
    let (ready, _) = drain(&mut nodes[0]);
    assert!(
        ready.read_states.iter().all(|s| s.index.is_none()),
        "the old leader served a read at {old_commit} from its lease after TimeoutNow: {:?}",
        ready.read_states
    );
}

/// Raft §6: once the joint configuration commits, the leader proposes the final one.
/// A pending leadership transfer refuses that proposal; when the transfer is given up
/// the leader must still leave the joint configuration, with no client write to
/// trigger it (issue 19, item 4, liveness).
#[test]
fn raft_6_a_joint_configuration_is_left_after_an_abandoned_transfer() {
    let mut nodes: Vec<Raft> = (1..=3).map(|id| fresh(id, 3)).collect();
    nodes.push(Raft::new(
        config(4),
        Persisted { initial_membership: Membership::default(), ..Persisted::default() },
        7,
    ));
    elect(&mut nodes[..3], 0);
    nodes[0].propose_membership(with_learner_4()).unwrap();
    settle(&mut nodes);
    nodes[0].propose_membership(promoting_4()).unwrap();
    // Node 3 is cut off and lags, so the transfer to it waits for it to catch up.
    nodes[0].transfer_leadership(3).unwrap();
    settle_without(&mut nodes, &[3]);
    assert!(nodes[0].commit_index() >= nodes[0].last_index(), "the joint entry committed");
    for _ in 0..60 {
        for id in [0, 1, 3] {
            nodes[id].tick();
        }
        settle_without(&mut nodes, &[3]);
    }
    assert!(nodes[0].is_leader(), "{:?}", nodes[0]);
    assert!(!nodes[0].membership().is_joint(), "still joint: {:?}", nodes[0].membership());
}

/// Dissertation §3.10: a transfer's vote requests ignore the voters' lease; when the
/// first ones are lost, the ones resent must say so too, or voters in lease ignore them.
#[test]
fn dissertation_3_10_resent_vote_requests_keep_the_transfer_flag() {
    let mut nodes: Vec<Raft> = (1..=3).map(|id| fresh(id, 3)).collect();
    elect(&mut nodes, 0);
    let term = nodes[0].term();
    nodes[1].step(msg(1, 2, term, MessageBody::TimeoutNow));
    let (_, first) = drain(&mut nodes[1]);
    assert!(first.iter().all(|m| matches!(m.body, MessageBody::RequestVote { transfer: true, .. })));
    // Lost: tick until the candidate resends.
    let mut resent = Vec::new();
    for _ in 0..4 {
        nodes[1].tick();
        resent.extend(drain(&mut nodes[1]).1);
    }
    assert!(!resent.is_empty(), "vote requests are resent");
    for m in &resent {
        assert!(matches!(m.body, MessageBody::RequestVote { transfer: true, .. }), "resent without the flag: {m:?}");
    }
}
