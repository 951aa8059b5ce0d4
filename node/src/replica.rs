//! A deterministic node: the Raft core, the store, and the bookkeeping of client
//! requests waiting for commit or for a read index. No IO: the tokio shell and
//! the simulation both drive it the same way:
//!
//! 1. feed inputs: [`Replica::tick`], [`Replica::step`], [`Replica::client_request`];
//! 2. `if let Some(ready) = replica.ready()`: persist `ready.hard_state`,
//!    `ready.entries` and `ready.snapshot` durably, then send `ready.messages`;
//! 3. [`Replica::advance`] with that ready: applies entries, answers reads,
//!    and may hand back a new snapshot to persist;
//! 4. deliver [`Replica::take_replies`] to the clients.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::bugs::{Bug, Bugs};
use crate::protocol::{classify, ErrorName, OpKind};
use crate::raft::{
    Config, Entry, EntryPayload, Membership, Message, NodeId, NotLeader, Persisted, Raft, Ready, Snapshot,
};
use crate::store::{Command, Op, OpError, SessionLimits, Store};

/// The shell's handle for a client request waiting for its reply.
pub type Token = u64;

/// A client request: `seq` increases by one per write of that client; at most one
/// write per client may be outstanding.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientRequest {
    pub client_id: u64,
    pub seq: u64,
    pub op: Op,
}

/// Why a request did not succeed, and whether it may still have taken effect.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ReplyError {
    /// Definite: this node did not take the request.
    #[error("not the leader")]
    NotLeader { leader_hint: Option<NodeId> },
    /// The state machine refused the operation: definite (e.g. cas-mismatch), except
    /// `stale-seq`, which cannot tell whether an earlier entry of the same seq applied.
    #[error("{0}")]
    Op(OpError),
    /// Indefinite: the write was proposed but this node lost leadership before it committed.
    #[error("leadership lost before the write committed")]
    LeadershipLost,
    /// Definite: the proposed entry was overwritten by another leader's entry.
    #[error("the proposal was overwritten by a new leader")]
    ProposalDropped,
    /// Definite: the leader could not confirm a read; nothing was changed.
    #[error("the read could not be confirmed by a quorum")]
    ReadNotConfirmed,
    /// Definite: too many requests waiting.
    #[error("too many requests in flight")]
    Overloaded,
}

impl ReplyError {
    /// True if a write that got this answer surely did not take effect (the one table,
    /// `faultline_node_proto::classify`; every error of a read is definite).
    pub fn is_definite(&self) -> bool {
        classify(self.error_name(), OpKind::Write).is_definite()
    }

    /// The name on the wire.
    pub fn error_name(&self) -> ErrorName {
        match self {
            ReplyError::NotLeader { .. } => ErrorName::NotLeader,
            ReplyError::Op(e) => e.error_name(),
            ReplyError::LeadershipLost => ErrorName::LeadershipLost,
            ReplyError::ProposalDropped => ErrorName::ProposalDropped,
            ReplyError::ReadNotConfirmed => ErrorName::ReadNotConfirmed,
            ReplyError::Overloaded => ErrorName::Overloaded,
        }
    }

    pub fn name(&self) -> &'static str {
        self.error_name().as_str()
    }
}

pub type Reply = Result<Value, ReplyError>;

/// Everything a node needs besides its persisted state.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub raft: Config,
    pub bugs: Bugs,
    pub session_limits: SessionLimits,
    /// Take a snapshot and compact the log once this many entries are applied past the last one.
    pub snapshot_every_entries: u64,
    pub max_pending_requests: usize,
}

impl ReplicaConfig {
    pub fn new(id: NodeId) -> ReplicaConfig {
        ReplicaConfig {
            raft: Config::new(id),
            bugs: Bugs::none(),
            session_limits: SessionLimits::default(),
            snapshot_every_entries: 10_000,
            max_pending_requests: 100_000,
        }
    }

    pub fn with_bugs(mut self, bugs: Bugs) -> ReplicaConfig {
        self.raft.bug_commit_old_term = bugs.has(Bug::CommitOldTerm);
        // A leader that reads locally and never checks that it still leads: with
        // CheckQuorum it would step down within an election timeout of being cut
        // off, which hides the stale reads from all but the luckiest schedules.
        if bugs.has(Bug::StaleRead) {
            self.raft.check_quorum = false;
        }
        self.bugs = bugs;
        self
    }
}

#[derive(Debug)]
struct PendingWrite {
    token: Token,
    term: u64,
    op_acked_early: bool,
    is_plain_write: bool,
}

/// One step of a configuration change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    AddLearner(NodeId),
    /// Learner to voter, through a joint configuration.
    Promote(NodeId),
    /// Learner or voter out, through a joint configuration for a voter.
    Remove(NodeId),
}

/// Why an admin command was refused. All definite.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AdminError {
    #[error("not the leader")]
    NotLeader { leader_hint: Option<NodeId> },
    #[error("a configuration change is already under way")]
    ChangeInProgress,
    #[error("{0}")]
    Invalid(String),
}

/// What [`Replica::advance`] asks the shell to do besides replying.
#[derive(Debug, Default)]
pub struct Advanced {
    /// A snapshot of the state machine to persist; the log up to its index may then be dropped.
    pub new_snapshot: Option<Snapshot>,
}

pub struct Replica {
    raft: Raft,
    store: Store,
    bugs: Bugs,
    snapshot_every_entries: u64,
    max_pending_requests: usize,
    writes: BTreeMap<u64, PendingWrite>,
    reads: BTreeMap<u64, (Token, Op)>,
    reads_waiting_apply: BTreeMap<(u64, u64), (Token, Op)>,
    /// Read ids start at a point drawn from the seed (the shell gives each start
    /// its own), so that a leader's delayed answer to a read forwarded before a
    /// restart cannot satisfy a read forwarded after it under the same id.
    next_read_id: u64,
    replies: Vec<(Token, Reply)>,
    applied_index: u64,
    /// A checksum of each applied entry (term and payload), the last `APPLIED_HASHES_KEPT` of them,
    /// oldest first; the first is of entry `applied_hashes_first`. Two replicas must have applied
    /// the same entry at every index (state-machine safety), so a harness can compare these even
    /// while one replica lags.
    applied_hashes: std::collections::VecDeque<u32>,
    applied_hashes_first: u64,
    applied_membership: Membership,
    was_leader: bool,
}

impl Replica {
    /// Restarts from what was persisted. A snapshot's data must be a [`Store::to_snapshot`].
    pub fn new(config: ReplicaConfig, persisted: Persisted, seed: u64) -> Result<Replica, serde_json::Error> {
        let no_dedup = config.bugs.has(Bug::NoDedup);
        let (store, applied_index, applied_membership) = match &persisted.snapshot {
            Some(s) => (Store::from_snapshot(&s.data, no_dedup)?, s.index, s.membership.clone()),
            None => (Store::new(config.session_limits, no_dedup), 0, persisted.initial_membership.clone()),
        };
        let raft = Raft::new(config.raft.clone(), persisted, seed);
        Ok(Replica {
            raft,
            store,
            bugs: config.bugs,
            snapshot_every_entries: config.snapshot_every_entries.max(1),
            max_pending_requests: config.max_pending_requests,
            writes: BTreeMap::new(),
            reads: BTreeMap::new(),
            reads_waiting_apply: BTreeMap::new(),
            next_read_id: first_read_id(seed),
            replies: Vec::new(),
            applied_index,
            applied_hashes: std::collections::VecDeque::new(),
            applied_hashes_first: applied_index + 1,
            applied_membership,
            was_leader: false,
        })
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn raft_mut(&mut self) -> &mut Raft {
        &mut self.raft
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The checksums of the applied entries this replica remembers: (index of the first, checksums).
    pub fn applied_hashes(&self) -> (u64, Vec<u32>) {
        (self.applied_hashes_first, self.applied_hashes.iter().copied().collect())
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn pending_requests(&self) -> usize {
        self.writes.len() + self.reads.len() + self.reads_waiting_apply.len()
    }

    pub fn tick(&mut self) {
        self.raft.tick();
        self.after_input();
    }

    pub fn step(&mut self, message: Message) {
        self.raft.step(message);
        self.after_input();
    }

    /// Takes a client request; its reply comes out of [`Replica::take_replies`]
    /// with the same token, now or later.
    pub fn client_request(&mut self, token: Token, request: ClientRequest) {
        if self.pending_requests() >= self.max_pending_requests {
            self.replies.push((token, Err(ReplyError::Overloaded)));
            return;
        }
        if request.op.is_read() {
            self.read(token, request.op);
        } else {
            self.write(token, request);
        }
        self.after_input();
    }

    fn read(&mut self, token: Token, op: Op) {
        let leader = self.raft.is_leader();
        if (leader && self.bugs.has(Bug::StaleRead)) || (!leader && self.bugs.has(Bug::FollowerStaleRead)) {
            let result = self.store.read(&op).map_err(ReplyError::Op);
            self.replies.push((token, result));
            return;
        }
        let id = self.next_read_id;
        self.next_read_id = self.next_read_id.wrapping_add(1);
        match self.raft.read_index(id) {
            Ok(()) => {
                self.reads.insert(id, (token, op));
            }
            Err(NotLeader::NotLeader { leader_hint }) => {
                self.replies.push((token, Err(ReplyError::NotLeader { leader_hint })))
            }
        }
    }

    fn write(&mut self, token: Token, request: ClientRequest) {
        if !self.raft.is_leader() {
            let leader_hint = self.raft.leader_id();
            self.replies.push((token, Err(ReplyError::NotLeader { leader_hint })));
            return;
        }
        if let Some(result) = self.store.cached_result(request.client_id, request.seq) {
            // Already applied (dissertation §6.3): answer from the session, no new entry.
            self.replies.push((token, result.map_err(ReplyError::Op)));
            return;
        }
        let is_plain_write =
            matches!(request.op, Op::Write { .. } | Op::Delete { .. } | Op::Append { expected_version: None, .. });
        let command = Command { client_id: request.client_id, seq: request.seq, op: request.op };
        let data = serde_json::to_vec(&command).expect("command serialises");
        match self.raft.propose(data) {
            Ok((index, term)) => {
                self.writes.insert(index, PendingWrite { token, term, op_acked_early: false, is_plain_write });
            }
            Err(NotLeader::NotLeader { leader_hint }) => {
                self.replies.push((token, Err(ReplyError::NotLeader { leader_hint })))
            }
        }
    }

    /// Forgets a request the shell gave up on (its client timed out).
    pub fn cancel(&mut self, token: Token) {
        self.writes.retain(|_, w| w.token != token);
        self.reads.retain(|_, (t, _)| *t != token);
        self.reads_waiting_apply.retain(|_, (t, _)| *t != token);
    }

    /// Starts a configuration change (Raft §6): a learner is added directly; a
    /// voter is added or removed through a joint configuration, which the leader
    /// leaves by itself once it commits. Returns the index of the new entry.
    pub fn change_membership(&mut self, change: MembershipChange) -> Result<u64, AdminError> {
        let raft = &self.raft;
        if !raft.is_leader() {
            return Err(AdminError::NotLeader { leader_hint: raft.leader_id() });
        }
        if raft.membership_change_pending() {
            return Err(AdminError::ChangeInProgress);
        }
        let mut next = raft.membership().clone();
        match change {
            MembershipChange::AddLearner(id) => {
                if next.is_voter(id) || !next.learners.insert(id) {
                    return Err(AdminError::Invalid(format!("node {id} is already a member")));
                }
            }
            MembershipChange::Promote(id) => {
                if !next.learners.remove(&id) {
                    return Err(AdminError::Invalid(format!("node {id} is not a learner")));
                }
                next.voters_outgoing = next.voters.clone();
                next.voters.insert(id);
            }
            MembershipChange::Remove(id) => {
                let was_learner = next.learners.remove(&id);
                if !was_learner {
                    if !next.voters.contains(&id) {
                        return Err(AdminError::Invalid(format!("node {id} is not a member")));
                    }
                    if next.voters.len() == 1 {
                        return Err(AdminError::Invalid("cannot remove the last voter".into()));
                    }
                    next.voters_outgoing = next.voters.clone();
                    next.voters.remove(&id);
                }
            }
        }
        let result =
            self.raft.propose_membership(next).map(|(index, _)| index).map_err(|_| AdminError::ChangeInProgress);
        self.after_input();
        result
    }

    pub fn transfer_leadership(&mut self, target: NodeId) -> Result<(), NotLeader> {
        let result = self.raft.transfer_leadership(target);
        self.after_input();
        result
    }

    fn after_input(&mut self) {
        let leader = self.raft.is_leader();
        if self.was_leader && !leader {
            // The entries may still commit under the next leader: indefinite.
            for (_, write) in std::mem::take(&mut self.writes) {
                if !write.op_acked_early {
                    self.replies.push((write.token, Err(ReplyError::LeadershipLost)));
                }
            }
        }
        self.was_leader = leader;
    }

    /// The next batch of work, if any. See the module docs for the order.
    pub fn ready(&mut self) -> Option<Ready> {
        if !self.raft.has_ready() {
            return None;
        }
        let mut ready = self.raft.ready();
        if self.bugs.has(Bug::NoVotePersist) {
            if let Some(hard_state) = ready.hard_state.as_mut() {
                hard_state.vote = None;
            }
        }
        Some(ready)
    }

    /// Call once `ready`'s persist is durable and its messages are sent.
    pub fn advance(&mut self, ready: Ready) -> Advanced {
        if let Some(last) = ready.entries.last() {
            self.raft.on_persisted(last.index, last.term);
        }
        if let Some(snapshot) = ready.snapshot {
            self.install_snapshot(&snapshot);
        }
        if self.bugs.has(Bug::AckBeforeCommit) && self.raft.is_leader() {
            let persisted = self.raft.persisted_index();
            for (_, write) in self.writes.range_mut(..=persisted) {
                if write.is_plain_write && !write.op_acked_early {
                    write.op_acked_early = true;
                    self.replies.push((write.token, Ok(Value::Null)));
                }
            }
        }
        for entry in &ready.committed_entries {
            self.apply(entry);
        }
        for read in ready.read_states {
            let Some((token, op)) = self.reads.remove(&read.id) else {
                continue;
            };
            match read.index {
                None => self.replies.push((token, Err(ReplyError::ReadNotConfirmed))),
                Some(index) => {
                    self.reads_waiting_apply.insert((index, read.id), (token, op));
                }
            }
        }
        self.answer_applied_reads();
        self.after_input();
        self.maybe_snapshot()
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) {
        self.store =
            Store::from_snapshot(&snapshot.data, self.bugs.has(Bug::NoDedup)).expect("snapshot from a peer decodes");
        self.applied_index = snapshot.index;
        self.applied_membership = snapshot.membership.clone();
        // The entries the snapshot covers were never applied here one by one.
        self.applied_hashes.clear();
        self.applied_hashes_first = snapshot.index + 1;
        let stale: Vec<u64> = self.writes.range(..=snapshot.index).map(|(i, _)| *i).collect();
        for index in stale {
            let write = self.writes.remove(&index).expect("present");
            if !write.op_acked_early {
                self.replies.push((write.token, Err(ReplyError::LeadershipLost)));
            }
        }
    }

    fn apply(&mut self, entry: &Entry) {
        assert_eq!(entry.index, self.applied_index + 1, "entries are applied in order, once");
        self.applied_index = entry.index;
        self.applied_hashes.push_back(entry_checksum(entry));
        if self.applied_hashes.len() > APPLIED_HASHES_KEPT {
            self.applied_hashes.pop_front();
            self.applied_hashes_first += 1;
        }
        let result = match &entry.payload {
            EntryPayload::Command(data) => {
                let command: Command = serde_json::from_slice(data).expect("committed command decodes");
                Some(self.store.apply(entry.index, &command))
            }
            EntryPayload::Membership(m) => {
                self.applied_membership = m.clone();
                None
            }
            EntryPayload::Noop => None,
        };
        if let Some(write) = self.writes.remove(&entry.index) {
            if write.op_acked_early {
                return;
            }
            let reply = match result {
                Some(result) if write.term == entry.term => result.map_err(ReplyError::Op),
                _ => Err(ReplyError::ProposalDropped),
            };
            self.replies.push((write.token, reply));
        }
    }

    fn answer_applied_reads(&mut self) {
        while let Some((&(index, id), _)) = self.reads_waiting_apply.first_key_value() {
            if index > self.applied_index {
                break;
            }
            let (token, op) = self.reads_waiting_apply.remove(&(index, id)).expect("present");
            let result = self.store.read(&op).map_err(ReplyError::Op);
            self.replies.push((token, result));
        }
    }

    fn maybe_snapshot(&mut self) -> Advanced {
        let since = self.applied_index - self.raft.snapshot_index();
        if since < self.snapshot_every_entries || self.applied_index > self.raft.applied_index() {
            return Advanced::default();
        }
        let index = self.applied_index;
        let term = self.raft.log_term(index).expect("applied entry in log");
        let snapshot =
            Snapshot { index, term, membership: self.applied_membership.clone(), data: self.store.to_snapshot() };
        self.raft.compact(snapshot.clone());
        Advanced { new_snapshot: Some(snapshot) }
    }

    pub fn take_replies(&mut self) -> Vec<(Token, Reply)> {
        std::mem::take(&mut self.replies)
    }
}

/// The first read id of a replica started with `seed`: 64 random bits, so two
/// starts of one node share an id only with negligible probability.
fn first_read_id(seed: u64) -> u64 {
    crate::raft::rng::SplitMix64::new(seed ^ 0x5245_4144_4944_5321).next_u64()
}

/// How many applied-entry checksums a replica keeps for the harness's convergence check.
pub const APPLIED_HASHES_KEPT: usize = 50_000;

/// A CRC-32 of an entry's term and payload.
fn entry_checksum(entry: &Entry) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&entry.term.to_le_bytes());
    match &entry.payload {
        EntryPayload::Noop => hasher.update(b"noop"),
        EntryPayload::Command(data) => {
            hasher.update(b"command");
            hasher.update(data);
        }
        EntryPayload::Membership(membership) => {
            hasher.update(b"membership");
            hasher.update(&serde_json::to_vec(membership).expect("a membership serialises"));
        }
    }
    hasher.finalize()
}
