//! Plain data exchanged between the Raft core and its shell.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A node's identity in the cluster. Never 0: 0 would be mistaken for "nobody".
pub type NodeId = u64;

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryPayload {
    /// Appended by every new leader at the start of its term, so that it can commit
    /// (and learn the commit index of) the entries of earlier terms (Raft §5.4.2, §8).
    Noop,
    /// An opaque state-machine command.
    Command(Vec<u8>),
    /// A new cluster configuration; takes effect as soon as it is in the log (Raft §6).
    Membership(Membership),
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub payload: EntryPayload,
}

/// The state that must be on disk before the node answers a vote or sends anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: u64,
    pub vote: Option<NodeId>,
    /// Only a hint: losing it is safe, since committed entries are durable on a quorum.
    pub commit: u64,
}

/// A cluster configuration. `voters_outgoing` is non-empty only during a joint
/// consensus transition, when decisions need a majority of both sets (Raft §6).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub voters_outgoing: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership { voters: voters.into_iter().collect(), voters_outgoing: BTreeSet::new(), learners: BTreeSet::new() }
    }

    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// Every node that receives the log: voters of both halves and learners.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(self.voters_outgoing.iter().copied());
        all.extend(self.learners.iter().copied());
        all
    }

    /// Whether `granted` holds a majority of every voter set in force.
    pub fn has_quorum(&self, granted: &dyn Fn(NodeId) -> bool) -> bool {
        majority_of(&self.voters, granted)
            && (self.voters_outgoing.is_empty() || majority_of(&self.voters_outgoing, granted))
    }

    /// The largest index that a majority of every voter set has reached.
    pub fn quorum_index(&self, match_index: &dyn Fn(NodeId) -> u64) -> u64 {
        let incoming = majority_index(&self.voters, match_index);
        if self.voters_outgoing.is_empty() {
            incoming
        } else {
            incoming.min(majority_index(&self.voters_outgoing, match_index))
        }
    }
}

fn majority_of(voters: &BTreeSet<NodeId>, granted: &dyn Fn(NodeId) -> bool) -> bool {
    let yes = voters.iter().filter(|id| granted(**id)).count();
    yes > voters.len() / 2
}

fn majority_index(voters: &BTreeSet<NodeId>, match_index: &dyn Fn(NodeId) -> u64) -> u64 {
    if voters.is_empty() {
        return 0;
    }
    let mut indexes: Vec<u64> = voters.iter().map(|id| match_index(*id)).collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    indexes[voters.len() / 2]
}

/// Identifies one linearizable read: the node that asked and its own request id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReadContext {
    pub origin: NodeId,
    pub id: u64,
}

/// The answer to a read request: once the local state machine has applied
/// `index`, a read served from it is linearizable. `None` means the read could
/// not be confirmed (leadership lost) and should be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub id: u64,
    pub index: Option<u64>,
}

/// A snapshot of the state machine up to and including `index`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    pub membership: Membership,
    pub data: Vec<u8>,
}

/// A message between two Raft nodes. `term` is the sender's term, except in
/// PreVote and its granted responses, where it is the term the sender would campaign for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: u64,
    pub body: MessageBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    PreVote {
        last_log_index: u64,
        last_log_term: u64,
    },
    PreVoteResponse {
        granted: bool,
    },
    RequestVote {
        last_log_index: u64,
        last_log_term: u64,
        /// Set by a leadership transfer: the voter ignores its leader lease.
        transfer: bool,
    },
    RequestVoteResponse {
        granted: bool,
    },
    AppendEntries {
        prev_log_index: u64,
        prev_log_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
    },
    AppendEntriesResponse {
        success: bool,
        /// On success the follower's match index; on failure the `prev_log_index` it rejected.
        index: u64,
        /// Fast backtracking hints (dissertation §5.3): the term of the follower's
        /// entry at the rejected index, and the first index it holds of that term.
        conflict_term: Option<u64>,
        conflict_index: u64,
    },
    Heartbeat {
        leader_commit: u64,
        read_round: u64,
    },
    HeartbeatResponse {
        read_round: u64,
    },
    /// A follower asks the leader for a read index on behalf of one of its clients.
    ReadIndexRequest {
        id: u64,
    },
    ReadIndexResponse {
        id: u64,
        index: Option<u64>,
    },
    InstallSnapshot {
        snapshot: Snapshot,
    },
    InstallSnapshotResponse {
        last_index: u64,
    },
    /// Leadership transfer: the target campaigns at once (dissertation §3.10).
    TimeoutNow,
}

impl MessageBody {
    /// Messages only a leader sends, so the receiver learns who leads.
    pub fn is_from_leader(&self) -> bool {
        matches!(
            self,
            MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. }
                | MessageBody::TimeoutNow
        )
    }
}
