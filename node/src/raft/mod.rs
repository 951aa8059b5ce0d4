//! The pure Raft core.
//!
//! **Invariant:** this module does no IO, reads no clock, spawns no thread and
//! draws randomness only from the seeded [`rng::SplitMix64`] it is given. Inputs
//! are [`Raft::tick`], [`Raft::step`], [`Raft::propose`] and [`Raft::read_index`];
//! the output is a [`Ready`] batch that the shell must carry out in this order:
//! persist `hard_state` and `entries` (fsync), send `messages`, then apply
//! `committed_entries` and answer `read_states`, and finally report
//! [`Raft::on_persisted`].

pub mod log;
pub mod rng;
pub mod types;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use self::log::RaftLog;
use self::rng::SplitMix64;
pub use self::types::*;

/// Tunables of one node. Times are in ticks; the shell decides how long a tick is.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// The election timeout is drawn uniformly from `[election_timeout_ticks, 2 * election_timeout_ticks)`.
    pub election_timeout_ticks: u64,
    pub heartbeat_interval_ticks: u64,
    pub max_entries_per_append: usize,
    /// How many AppendEntries may be unacknowledged per follower in the pipeline.
    pub max_inflight_appends: usize,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Serve leader reads without a quorum round while the leader lease holds.
    pub lease_reads: bool,
    /// Planted bug `commit-old-term`: count replicas of entries from earlier terms.
    pub bug_commit_old_term: bool,
}

impl Config {
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 2,
            max_entries_per_append: 256,
            max_inflight_appends: 16,
            pre_vote: true,
            check_quorum: true,
            lease_reads: false,
            bug_commit_old_term: false,
        }
    }
}

/// What a (re)starting node finds on its disk.
#[derive(Clone, Debug, Default)]
pub struct Persisted {
    pub hard_state: HardState,
    /// The latest snapshot, or `None` for a log that starts at index 1.
    pub snapshot: Option<Snapshot>,
    /// The configuration to use when neither the snapshot nor the log holds one.
    pub initial_membership: Membership,
    pub entries: Vec<Entry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Proposals and reads are refused by a node that does not lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotLeader {
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader { leader_hint: Option<NodeId> },
}

/// The batch of work the shell must do, in field order.
#[derive(Debug, Default)]
pub struct Ready {
    /// Persist (with the entries, one fsync) when `Some`.
    pub hard_state: Option<HardState>,
    /// Persist after dropping any stored entry with index >= `entries[0].index`.
    pub entries: Vec<Entry>,
    /// Install atomically before applying anything; replaces the whole log.
    pub snapshot: Option<Snapshot>,
    /// Send only after the persist above is durable.
    pub messages: Vec<Message>,
    /// Apply in order.
    pub committed_entries: Vec<Entry>,
    pub read_states: Vec<ReadState>,
    /// The messages may be sent before the persist (dissertation §10.2.1): a
    /// leader whose term and vote are already durable replicates in parallel
    /// with its own fsync, since it counts itself only after [`Raft::on_persisted`].
    pub send_before_persist: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProgressState {
    /// Finding where the follower's log matches: one AppendEntries at a time.
    Probe,
    /// Streaming: up to `max_inflight_appends` AppendEntries in flight.
    Replicate,
    /// An InstallSnapshot is in flight.
    Snapshot,
}

#[derive(Clone, Debug)]
struct Progress {
    match_index: u64,
    next_index: u64,
    state: ProgressState,
    probe_sent: bool,
    /// Last index of each AppendEntries in flight, oldest first.
    inflight: VecDeque<u64>,
    recent_active: bool,
    /// Heartbeat responses in a row that saw no progress while the follower lagged.
    stalled_heartbeats: u32,
    match_at_last_heartbeat: u64,
    /// Send time (leader ticks) of the latest heartbeat round this follower acknowledged.
    acked_round_sent_at: Option<u64>,
}

impl Progress {
    fn new(next_index: u64) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: true,
            stalled_heartbeats: 0,
            match_at_last_heartbeat: 0,
            acked_round_sent_at: None,
        }
    }

    fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= max_inflight,
            ProgressState::Snapshot => true,
        }
    }

    fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        self.next_index = self.next_index.max(self.match_index + 1);
    }
}

#[derive(Debug)]
struct PendingRead {
    context: ReadContext,
    index: u64,
    round: u64,
    acks: BTreeSet<NodeId>,
}

/// A follower that lags without progress for this many heartbeat responses is probed afresh.
const STALLED_HEARTBEATS_BEFORE_PROBE: u32 = 3;

/// How many heartbeat rounds' send times the leader remembers.
const MAX_TRACKED_ROUNDS: usize = 256;

/// Bound on reads waiting for confirmation at the leader; more are refused.
const MAX_PENDING_READS: usize = 65_536;

/// One Raft node's consensus state.
pub struct Raft {
    config: Config,
    rng: SplitMix64,
    term: u64,
    vote: Option<NodeId>,
    role: Role,
    leader_id: Option<NodeId>,
    log: RaftLog,
    membership: Membership,
    /// Index of the entry that set `membership`, 0 if it came from a snapshot or the start.
    membership_index: u64,
    /// The configuration at the snapshot (or the initial one), to fall back on after truncation.
    base_membership: Membership,
    election_elapsed: u64,
    randomized_election_timeout: u64,
    heartbeat_elapsed: u64,
    votes: BTreeMap<NodeId, bool>,
    /// The current campaign was started by TimeoutNow: its vote requests, resent
    /// too, ask voters to ignore their lease (dissertation §3.10).
    campaign_is_transfer: bool,
    progress: BTreeMap<NodeId, Progress>,
    leader_transferee: Option<NodeId>,
    transfer_elapsed: u64,
    /// This leader sent TimeoutNow in its term: voters ignore their lease for the
    /// target's campaign, so this leader's lease no longer holds (dissertation §6.4.1).
    timeout_now_sent: bool,
    /// The newest snapshot the shell gave us, sent to followers that fell behind it.
    snapshot: Option<Snapshot>,
    /// Every heartbeat broadcast gets the next round number; a response to round
    /// `r` proves the follower still followed us when round `r` was sent.
    read_round: u64,
    read_round_requested: bool,
    /// When (in our ticks) each recent round was sent, for leader leases.
    round_sent_at: VecDeque<(u64, u64)>,
    /// Ticks since this node started.
    ticks: u64,
    pending_reads: VecDeque<PendingRead>,
    reads_waiting_for_commit: Vec<ReadContext>,
    append_requested: bool,
    messages: Vec<Message>,
    read_states: Vec<ReadState>,
    handed_hard_state: HardState,
}

impl std::fmt::Debug for Raft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {} {:?} term {} vote {:?} leader {:?} snapshot {} commit {} applied {} persisted {} last {}/{} progress {:?}",
            self.id(),
            self.role,
            self.term,
            self.vote,
            self.leader_id,
            self.log.snapshot_index(),
            self.log.commit(),
            self.log.applied(),
            self.log.persisted(),
            self.log.last_index(),
            self.log.last_term(),
            self.progress
        )
    }
}

impl Raft {
    pub fn new(config: Config, persisted: Persisted, seed: u64) -> Raft {
        assert!(config.id != 0, "node id 0 is reserved");
        assert!(config.heartbeat_interval_ticks < config.election_timeout_ticks);
        let (snapshot_index, snapshot_term, base_membership) = match &persisted.snapshot {
            Some(s) => (s.index, s.term, s.membership.clone()),
            None => (0, 0, persisted.initial_membership.clone()),
        };
        let log = RaftLog::restore(snapshot_index, snapshot_term, persisted.entries, persisted.hard_state.commit);
        let mut raft = Raft {
            rng: SplitMix64::new(seed ^ config.id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            config,
            term: persisted.hard_state.term,
            vote: persisted.hard_state.vote,
            role: Role::Follower,
            leader_id: None,
            log,
            membership: base_membership.clone(),
            membership_index: 0,
            base_membership,
            election_elapsed: 0,
            randomized_election_timeout: 0,
            heartbeat_elapsed: 0,
            votes: BTreeMap::new(),
            campaign_is_transfer: false,
            progress: BTreeMap::new(),
            leader_transferee: None,
            transfer_elapsed: 0,
            timeout_now_sent: false,
            snapshot: persisted.snapshot,
            read_round: 0,
            read_round_requested: false,
            round_sent_at: VecDeque::new(),
            ticks: 0,
            pending_reads: VecDeque::new(),
            reads_waiting_for_commit: Vec::new(),
            append_requested: false,
            messages: Vec::new(),
            read_states: Vec::new(),
            handed_hard_state: persisted.hard_state,
        };
        raft.handed_hard_state.commit = raft.log.commit();
        raft.recompute_membership();
        raft.reset_election_timer();
        raft
    }

    // ---- accessors -------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.config.id
    }
    /// Ticks since the election timer was last reset, and the (randomised) timeout it runs to.
    pub fn election_timer(&self) -> (u64, u64) {
        (self.election_elapsed, self.randomized_election_timeout)
    }

    pub fn term(&self) -> u64 {
        self.term
    }
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader_id
    }
    pub fn commit_index(&self) -> u64 {
        self.log.commit()
    }
    pub fn applied_index(&self) -> u64 {
        self.log.applied()
    }
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }
    pub fn last_term(&self) -> u64 {
        self.log.last_term()
    }
    pub fn persisted_index(&self) -> u64 {
        self.log.persisted()
    }
    pub fn snapshot_index(&self) -> u64 {
        self.log.snapshot_index()
    }
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
    /// The snapshot the log starts after, if any (its index is [`Raft::snapshot_index`]).
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        self.log.entry(index)
    }
    pub fn log_term(&self, index: u64) -> Option<u64> {
        self.log.term(index)
    }
    pub fn entries_from(&self, index: u64) -> &[Entry] {
        self.log.entries_from(index)
    }
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.log.commit() }
    }
    /// The match index the leader holds for `id`, for tests and metrics.
    pub fn match_index(&self, id: NodeId) -> Option<u64> {
        self.progress.get(&id).map(|p| p.match_index)
    }
    /// Whether the leader has committed an entry of its own term, so that its
    /// commit index is known to be current (Raft §8).
    pub fn committed_in_current_term(&self) -> bool {
        self.log.term(self.log.commit()) == Some(self.term)
    }

    // ---- inputs ----------------------------------------------------------

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => {
                self.election_elapsed += 1;
                if matches!(self.role, Role::PreCandidate | Role::Candidate)
                    && self.election_elapsed.is_multiple_of(self.config.heartbeat_interval_ticks)
                {
                    self.resend_vote_requests();
                }
                if self.election_elapsed >= self.randomized_election_timeout && self.membership.is_voter(self.id()) {
                    self.start_election(false);
                }
            }
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.leader_transferee.is_some() {
            self.transfer_elapsed += 1;
            if self.transfer_elapsed >= self.config.election_timeout_ticks {
                self.leader_transferee = None;
                // The transfer refused the proposal that leaves a committed joint
                // configuration; make it now, not at the next commit (which may never come).
                self.maybe_finish_joint();
                if self.role != Role::Leader {
                    return;
                }
            }
        }
        if self.election_elapsed >= self.config.election_timeout_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum {
                // CheckQuorum (dissertation §6.2): a leader that has not heard from a
                // quorum within an election timeout steps down, so that reads and
                // clients are not stranded behind a partition.
                let me = self.id();
                let progress = &self.progress;
                let active =
                    self.membership.has_quorum(&|id| id == me || progress.get(&id).is_some_and(|p| p.recent_active));
                if !active {
                    let term = self.term;
                    self.become_follower(term, None);
                    return;
                }
                for p in self.progress.values_mut() {
                    p.recent_active = false;
                }
            }
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// Appends a command to the leader's log. Returns its index; the command is
    /// committed only if the entry at that index is later applied with the same term.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(u64, u64), NotLeader> {
        self.propose_payload(EntryPayload::Command(data))
    }

    fn propose_payload(&mut self, payload: EntryPayload) -> Result<(u64, u64), NotLeader> {
        if self.role != Role::Leader || self.leader_transferee.is_some() {
            return Err(self.not_leader());
        }
        let index = self.log.last_index() + 1;
        let entry = Entry { term: self.term, index, payload };
        if let EntryPayload::Membership(m) = &entry.payload {
            self.membership = m.clone();
            self.membership_index = index;
            self.add_missing_progress();
        }
        self.log.append(entry);
        self.append_requested = true;
        Ok((index, self.term))
    }

    /// Starts a linearizable read (ReadIndex, dissertation §6.4). The answer
    /// arrives as a [`ReadState`] with the same `id` in a later [`Ready`].
    pub fn read_index(&mut self, id: u64) -> Result<(), NotLeader> {
        let context = ReadContext { origin: self.id(), id };
        match self.role {
            Role::Leader => {
                self.leader_read(context);
                Ok(())
            }
            _ => match self.leader_id {
                Some(leader) if leader != self.id() => {
                    self.send(leader, MessageBody::ReadIndexRequest { id });
                    Ok(())
                }
                _ => Err(self.not_leader()),
            },
        }
    }

    /// Proposes a configuration change. Only one change may be uncommitted at a time.
    pub fn propose_membership(&mut self, membership: Membership) -> Result<(u64, u64), NotLeader> {
        if self.membership_change_pending() {
            return Err(self.not_leader());
        }
        assert!(!membership.voters.is_empty(), "a configuration needs voters");
        self.propose_payload(EntryPayload::Membership(membership))
    }

    /// Whether a configuration change is still under way (uncommitted, or joint).
    pub fn membership_change_pending(&self) -> bool {
        self.membership_index > self.log.commit() || self.membership.is_joint()
    }

    /// Hands leadership to `target` once its log is current (dissertation §3.10).
    pub fn transfer_leadership(&mut self, target: NodeId) -> Result<(), NotLeader> {
        if self.role != Role::Leader || !self.membership.is_voter(target) || target == self.id() {
            return Err(self.not_leader());
        }
        self.leader_transferee = Some(target);
        self.transfer_elapsed = 0;
        if self.progress.get(&target).is_some_and(|p| p.match_index == self.log.last_index()) {
            self.send_timeout_now(target);
        } else {
            self.send_append(target, true);
        }
        Ok(())
    }

    fn send_timeout_now(&mut self, target: NodeId) {
        self.timeout_now_sent = true;
        self.send(target, MessageBody::TimeoutNow);
    }

    /// The shell has made the log durable up to `index`, whose entry has `term`.
    pub fn on_persisted(&mut self, index: u64, term: u64) {
        if self.log.mark_persisted(index, term) && self.role == Role::Leader {
            // The leader counts itself only now (dissertation §10.2.1).
            self.maybe_commit();
        }
    }

    /// The shell took a snapshot of the state machine at `snapshot.index`
    /// (which it has applied); entries up to it may be dropped.
    pub fn compact(&mut self, snapshot: Snapshot) {
        assert!(snapshot.index <= self.log.applied());
        assert_eq!(self.log.term(snapshot.index), Some(snapshot.term));
        assert_eq!(
            snapshot.membership,
            self.membership_at(snapshot.index),
            "a snapshot carries the configuration in force at its index"
        );
        self.log.compact(snapshot.index);
        // Always, even below an uncommitted configuration entry: if that entry is
        // later overwritten, the snapshot's configuration is the latest one left.
        self.base_membership = snapshot.membership.clone();
        self.snapshot = Some(snapshot);
    }

    fn not_leader(&self) -> NotLeader {
        NotLeader::NotLeader { leader_hint: self.leader_id.filter(|id| *id != self.id()) }
    }

    /// Handles one message from a peer.
    pub fn step(&mut self, m: Message) {
        assert_eq!(m.to, self.id(), "message delivered to the wrong node");
        if m.from == self.id() {
            return;
        }
        if m.term > self.term {
            match &m.body {
                MessageBody::PreVote { .. } => {}
                MessageBody::PreVoteResponse { granted: true } => {}
                MessageBody::RequestVote { transfer, .. } if !transfer && self.in_lease() => {
                    // Dissertation §4.2.3: a node that hears from a leader ignores
                    // disruptive votes from nodes that have been partitioned away.
                    return;
                }
                body => {
                    let leader = if body.is_from_leader() { Some(m.from) } else { None };
                    self.become_follower(m.term, leader);
                }
            }
        } else if m.term < self.term {
            match &m.body {
                MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } => {
                    // Tell the stale leader about the newer term so it steps down;
                    // with PreVote it could otherwise never learn of it.
                    self.send(
                        m.from,
                        MessageBody::AppendEntriesResponse {
                            success: false,
                            index: 0,
                            conflict_term: None,
                            conflict_index: 0,
                        },
                    );
                }
                MessageBody::PreVote { .. } => {
                    self.send(m.from, MessageBody::PreVoteResponse { granted: false });
                }
                MessageBody::ReadIndexRequest { id } => {
                    let id = *id;
                    self.send(m.from, MessageBody::ReadIndexResponse { id, index: None });
                }
                MessageBody::ReadIndexResponse { id, .. } => {
                    // From a leader of an older term: its answer may be stale; retry.
                    self.read_states.push(ReadState { id: *id, index: None });
                }
                _ => {}
            }
            return;
        }
        match m.body {
            MessageBody::PreVote { last_log_index, last_log_term } => {
                let granted =
                    m.term > self.term && !self.in_lease() && self.log.is_up_to_date(last_log_index, last_log_term);
                let term = if granted { m.term } else { self.term };
                self.messages.push(Message {
                    from: self.id(),
                    to: m.from,
                    term,
                    body: MessageBody::PreVoteResponse { granted },
                });
            }
            MessageBody::PreVoteResponse { granted } => {
                if self.role == Role::PreCandidate {
                    if !granted && m.term > self.term {
                        self.become_follower(m.term, None);
                        return;
                    }
                    if m.term == self.term + 1 {
                        self.record_vote(m.from, granted);
                    }
                }
            }
            MessageBody::RequestVote { last_log_index, last_log_term, .. } => {
                let can_vote = self.vote == Some(m.from) || (self.vote.is_none() && self.leader_id.is_none());
                let granted = can_vote && self.log.is_up_to_date(last_log_index, last_log_term);
                if granted {
                    self.vote = Some(m.from);
                    self.election_elapsed = 0;
                }
                self.send(m.from, MessageBody::RequestVoteResponse { granted });
            }
            MessageBody::RequestVoteResponse { granted } => {
                if self.role == Role::Candidate {
                    self.record_vote(m.from, granted);
                }
            }
            MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit } => {
                self.follow(m.from);
                self.handle_append(m.from, prev_log_index, prev_log_term, entries, leader_commit);
            }
            MessageBody::Heartbeat { leader_commit, read_round } => {
                self.follow(m.from);
                let commit = leader_commit.min(self.log.last_index());
                if commit > self.log.commit() {
                    self.log.commit_to(commit);
                }
                self.send(m.from, MessageBody::HeartbeatResponse { read_round });
            }
            MessageBody::InstallSnapshot { snapshot } => {
                self.follow(m.from);
                self.handle_snapshot(m.from, snapshot);
            }
            MessageBody::AppendEntriesResponse { success, index, conflict_term, conflict_index } => {
                if self.role == Role::Leader {
                    self.handle_append_response(m.from, success, index, conflict_term, conflict_index);
                }
            }
            MessageBody::HeartbeatResponse { read_round } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(m.from, read_round);
                }
            }
            MessageBody::InstallSnapshotResponse { last_index } => {
                if self.role == Role::Leader {
                    self.assert_acknowledged_within_log(m.from, last_index);
                    if let Some(p) = self.progress.get_mut(&m.from) {
                        p.recent_active = true;
                        p.match_index = p.match_index.max(last_index);
                        p.next_index = p.match_index + 1;
                        p.become_probe();
                    }
                    self.maybe_commit();
                    self.send_append(m.from, false);
                }
            }
            MessageBody::ReadIndexRequest { id } => {
                let context = ReadContext { origin: m.from, id };
                if self.role == Role::Leader {
                    self.leader_read(context);
                } else {
                    self.send(m.from, MessageBody::ReadIndexResponse { id, index: None });
                }
            }
            MessageBody::ReadIndexResponse { id, index } => {
                self.read_states.push(ReadState { id, index });
            }
            MessageBody::TimeoutNow => {
                if self.membership.is_voter(self.id()) {
                    self.start_election(true);
                }
            }
        }
    }

    // ---- outputs ---------------------------------------------------------

    pub fn has_ready(&self) -> bool {
        self.hard_state() != self.handed_hard_state
            || self.log.has_unstable()
            || self.log.has_pending_snapshot()
            || !self.messages.is_empty()
            || self.log.has_committed()
            || !self.read_states.is_empty()
            || (self.role == Role::Leader && (self.append_requested || self.read_round_requested))
    }

    /// Takes the pending batch of work. The shell must persist, then send, then apply.
    pub fn ready(&mut self) -> Ready {
        if self.role == Role::Leader {
            if self.append_requested {
                self.append_requested = false;
                let peers: Vec<NodeId> = self.progress.keys().copied().collect();
                for peer in peers {
                    self.send_append(peer, false);
                }
            }
            if self.read_round_requested {
                self.broadcast_heartbeat();
            }
        }
        let hard_state = self.hard_state();
        let changed = hard_state != self.handed_hard_state;
        let term_and_vote_durable =
            hard_state.term == self.handed_hard_state.term && hard_state.vote == self.handed_hard_state.vote;
        assert!(hard_state.term >= self.handed_hard_state.term, "term went back");
        assert!(hard_state.commit >= self.handed_hard_state.commit, "commit went back");
        self.handed_hard_state = hard_state;
        let snapshot = self.log.take_pending_snapshot();
        let snapshot_is_none = snapshot.is_none();
        Ready {
            hard_state: changed.then_some(hard_state),
            entries: self.log.take_unstable(),
            snapshot,
            messages: std::mem::take(&mut self.messages),
            committed_entries: self.log.take_committed(),
            read_states: std::mem::take(&mut self.read_states),
            send_before_persist: self.role == Role::Leader && term_and_vote_durable && snapshot_is_none,
        }
    }

    // ---- elections -------------------------------------------------------

    fn in_lease(&self) -> bool {
        // With lease reads, a node that just started may have promised a lease
        // before it crashed: it waits one election timeout before voting.
        let starting = self.config.lease_reads && self.ticks < self.config.election_timeout_ticks;
        let heard_from_leader = self.leader_id.is_some() && self.election_elapsed < self.config.election_timeout_ticks;
        starting || (self.config.check_quorum && heard_from_leader)
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let base = self.config.election_timeout_ticks;
        self.randomized_election_timeout = base + self.rng.below(base);
    }

    fn start_election(&mut self, transfer: bool) {
        if self.config.pre_vote && !transfer {
            self.role = Role::PreCandidate;
            self.leader_id = None;
            self.votes.clear();
            self.reset_election_timer();
            let term = self.term + 1;
            let body =
                MessageBody::PreVote { last_log_index: self.log.last_index(), last_log_term: self.log.last_term() };
            for peer in self.voter_peers() {
                self.messages.push(Message { from: self.id(), to: peer, term, body: body.clone() });
            }
            self.record_vote(self.id(), true);
            return;
        }
        self.campaign(transfer);
    }

    fn campaign(&mut self, transfer: bool) {
        self.fail_leader_reads();
        self.term += 1;
        self.vote = Some(self.id());
        self.role = Role::Candidate;
        self.leader_id = None;
        self.votes.clear();
        self.campaign_is_transfer = transfer;
        self.reset_election_timer();
        let body = MessageBody::RequestVote {
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            transfer,
        };
        for peer in self.voter_peers() {
            self.send(peer, body.clone());
        }
        self.record_vote(self.id(), true);
    }

    /// Raft §5.1: RPCs that get no answer are retried; a lost vote request
    /// would otherwise stall the election until the next timeout.
    fn resend_vote_requests(&mut self) {
        let (term, body) = if self.role == Role::PreCandidate {
            (
                self.term + 1,
                MessageBody::PreVote { last_log_index: self.log.last_index(), last_log_term: self.log.last_term() },
            )
        } else {
            (
                self.term,
                MessageBody::RequestVote {
                    last_log_index: self.log.last_index(),
                    last_log_term: self.log.last_term(),
                    transfer: self.campaign_is_transfer,
                },
            )
        };
        for peer in self.voter_peers() {
            if !self.votes.contains_key(&peer) {
                self.messages.push(Message { from: self.id(), to: peer, term, body: body.clone() });
            }
        }
    }

    fn record_vote(&mut self, from: NodeId, granted: bool) {
        self.votes.insert(from, granted);
        let votes = &self.votes;
        let won = self.membership.has_quorum(&|id| votes.get(&id) == Some(&true));
        let lost = self.membership.has_quorum(&|id| votes.get(&id) == Some(&false));
        if won {
            match self.role {
                Role::PreCandidate => self.campaign(false),
                Role::Candidate => self.become_leader(),
                _ => {}
            }
        } else if lost {
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        assert!(term >= self.term, "term went back from {} to {term}", self.term);
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.fail_leader_reads();
        self.role = Role::Follower;
        self.leader_id = leader;
        self.progress.clear();
        self.leader_transferee = None;
        self.append_requested = false;
        self.read_round_requested = false;
        self.reset_election_timer();
    }

    /// Learns the leader of the current term from an AppendEntries, heartbeat or snapshot.
    fn follow(&mut self, leader: NodeId) {
        assert!(
            self.role != Role::Leader,
            "election safety: two leaders ({} and {leader}) in term {}",
            self.id(),
            self.term
        );
        if self.role != Role::Follower || self.leader_id != Some(leader) {
            let term = self.term;
            self.become_follower(term, Some(leader));
        }
        self.election_elapsed = 0;
    }

    fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate);
        self.role = Role::Leader;
        self.leader_id = Some(self.id());
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        self.progress.clear();
        self.add_missing_progress();
        self.round_sent_at.clear();
        self.timeout_now_sent = false;
        // Raft §8: a no-op at the start of the term commits everything before it,
        // and tells the leader the commit index it must wait for before reads.
        // The planted bug skips it, which is what makes Figure 8 reachable.
        if !self.config.bug_commit_old_term {
            let entry = Entry { term: self.term, index: self.log.last_index() + 1, payload: EntryPayload::Noop };
            self.log.append(entry);
        }
        self.append_requested = true;
    }

    fn add_missing_progress(&mut self) {
        let next = self.log.last_index() + 1;
        for id in self.membership.members() {
            if id != self.id() {
                self.progress.entry(id).or_insert_with(|| Progress::new(next));
            }
        }
        let members = self.membership.members();
        self.progress.retain(|id, _| members.contains(id));
    }

    fn voter_peers(&self) -> Vec<NodeId> {
        let me = self.id();
        let mut v: BTreeSet<NodeId> = self.membership.voters.clone();
        v.extend(self.membership.voters_outgoing.iter().copied());
        v.into_iter().filter(|id| *id != me).collect()
    }

    // ---- replication -----------------------------------------------------

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.messages.push(Message { from: self.id(), to, term: self.term, body });
    }

    /// Sends entries to `peer` while its pipeline has room. With `force`, a
    /// probe goes out even if one is outstanding (used by heartbeats' catch-up).
    fn send_append(&mut self, peer: NodeId, force: bool) {
        loop {
            let max_inflight = self.config.max_inflight_appends;
            let Some(p) = self.progress.get_mut(&peer) else {
                return;
            };
            if force && p.state == ProgressState::Probe {
                p.probe_sent = false;
            }
            if p.is_paused(max_inflight) {
                return;
            }
            let prev_log_index = p.next_index - 1;
            let Some(prev_log_term) = self.log.term(prev_log_index) else {
                self.send_snapshot(peer);
                return;
            };
            let entries = self.log.slice(p.next_index, self.config.max_entries_per_append);
            let p = self.progress.get_mut(&peer).expect("progress exists");
            match p.state {
                ProgressState::Replicate => {
                    let Some(last) = entries.last() else { return };
                    p.next_index = last.index + 1;
                    p.inflight.push_back(last.index);
                }
                ProgressState::Probe => p.probe_sent = true,
                ProgressState::Snapshot => unreachable!("paused"),
            }
            let more = p.state == ProgressState::Replicate;
            let leader_commit = self.log.commit();
            self.send(peer, MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit });
            if !more {
                return;
            }
        }
    }

    fn send_snapshot(&mut self, peer: NodeId) {
        // Acknowledgements past our last index are refused where they arrive
        // (assert_acknowledged_within_log), so this can only be a compacted prefix.
        let Some(snapshot) = self.snapshot.clone() else {
            panic!(
                "log compacted to {} below {peer}'s next index, but no snapshot held to send",
                self.log.snapshot_index()
            );
        };
        if let Some(p) = self.progress.get_mut(&peer) {
            p.state = ProgressState::Snapshot;
            p.inflight.clear();
        }
        self.send(peer, MessageBody::InstallSnapshot { snapshot });
    }

    fn handle_append(
        &mut self,
        leader: NodeId,
        prev_log_index: u64,
        prev_log_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
    ) {
        assert_ne!(self.role, Role::Leader, "a leader never takes entries from another node");
        let commit = self.log.commit();
        if prev_log_index < commit {
            // Everything up to our commit index matches any current leader; skip it.
            let last_new = prev_log_index + entries.len() as u64;
            if last_new > commit {
                let rest: Vec<Entry> = entries.into_iter().filter(|e| e.index > commit).collect();
                return self.handle_append(leader, commit, self.log.term(commit).unwrap_or(0), rest, leader_commit);
            }
            self.send(
                leader,
                MessageBody::AppendEntriesResponse {
                    success: true,
                    index: commit,
                    conflict_term: None,
                    conflict_index: 0,
                },
            );
            return;
        }
        if self.log.term(prev_log_index) == Some(prev_log_term) {
            let last_new = prev_log_index + entries.len() as u64;
            if let Some(changed_from) = self.log.append_after_match(&entries) {
                self.recompute_membership_after_append(changed_from, &entries);
            }
            let commit_to = leader_commit.min(last_new);
            if commit_to > self.log.commit() {
                self.log.commit_to(commit_to);
            }
            self.send(
                leader,
                MessageBody::AppendEntriesResponse {
                    success: true,
                    index: last_new,
                    conflict_term: None,
                    conflict_index: 0,
                },
            );
        } else {
            let (conflict_term, conflict_index) = self.log.conflict_hint(prev_log_index);
            self.send(
                leader,
                MessageBody::AppendEntriesResponse {
                    success: false,
                    index: prev_log_index,
                    conflict_term,
                    conflict_index,
                },
            );
        }
    }

    fn handle_snapshot(&mut self, leader: NodeId, snapshot: Snapshot) {
        if snapshot.index <= self.log.commit() {
            let last_index = self.log.commit();
            self.send(leader, MessageBody::InstallSnapshotResponse { last_index });
            return;
        }
        if self.log.term(snapshot.index) == Some(snapshot.term) {
            self.log.commit_to(snapshot.index);
        } else {
            self.base_membership = snapshot.membership.clone();
            self.snapshot = Some(snapshot.clone());
            self.log.restore_snapshot(snapshot);
            self.recompute_membership();
        }
        let last_index = self.log.commit();
        self.send(leader, MessageBody::InstallSnapshotResponse { last_index });
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        success: bool,
        index: u64,
        conflict_term: Option<u64>,
        conflict_index: u64,
    ) {
        if success {
            self.assert_acknowledged_within_log(from, index);
        }
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        p.recent_active = true;
        if success {
            if index > p.match_index {
                p.match_index = index;
                p.next_index = p.next_index.max(index + 1);
                while p.inflight.front().is_some_and(|last| *last <= index) {
                    p.inflight.pop_front();
                }
                if p.state != ProgressState::Replicate {
                    p.state = ProgressState::Replicate;
                    p.inflight.clear();
                    p.next_index = index + 1;
                }
                self.maybe_commit();
                if self.leader_transferee == Some(from) && index == self.log.last_index() {
                    self.send_timeout_now(from);
                }
            } else if p.state == ProgressState::Probe {
                p.probe_sent = false;
            }
            self.send_append(from, false);
            return;
        }
        if index == 0 && conflict_index == 0 {
            return; // a stale-term rejection; the term check already handled it
        }
        // A rejection is stale if it is about an index we already know matches, or
        // (in probe) not about the probe we sent.
        let stale = index <= p.match_index || (p.state == ProgressState::Probe && index != p.next_index - 1);
        if stale {
            return;
        }
        let hinted = match conflict_term {
            Some(term) => match self.log.last_index_of_term(term, index) {
                Some(last_of_term) => last_of_term + 1,
                None => conflict_index,
            },
            None => conflict_index,
        };
        let p = self.progress.get_mut(&from).expect("progress exists");
        p.next_index = hinted.min(index).max(p.match_index + 1);
        p.become_probe();
        self.send_append(from, false);
    }

    /// A follower acknowledges at most what this leader sent it, or its own commit
    /// index; under leader completeness (Raft §5.4) that never passes the leader's
    /// last index. If it does, the follower committed entries this leader lacks.
    fn assert_acknowledged_within_log(&self, from: NodeId, index: u64) {
        assert!(
            index <= self.log.last_index(),
            "leader completeness (Raft §5.4) broken: node {from} acknowledged index {index} in term {}, \
             past leader {}'s last index {}: it committed entries this leader does not hold",
            self.term,
            self.id(),
            self.log.last_index()
        );
    }

    fn maybe_commit(&mut self) {
        let me = self.id();
        let persisted = self.log.persisted();
        let progress = &self.progress;
        let quorum_index = self.membership.quorum_index(&|id| {
            if id == me {
                persisted
            } else {
                progress.get(&id).map_or(0, |p| p.match_index)
            }
        });
        if quorum_index <= self.log.commit() {
            return;
        }
        // Raft §5.4.2: only entries of the current term are committed by counting
        // replicas; earlier ones commit with them (Figure 8).
        if self.log.term(quorum_index) != Some(self.term) && !self.config.bug_commit_old_term {
            return;
        }
        self.log.commit_to(quorum_index);
        self.append_requested = true; // spread the new commit index
        if self.committed_in_current_term() {
            for context in std::mem::take(&mut self.reads_waiting_for_commit) {
                self.leader_read(context);
            }
        }
        self.maybe_finish_joint();
    }

    /// Once a joint configuration commits, the leader proposes the new one alone (Raft §6).
    fn maybe_finish_joint(&mut self) {
        if self.membership.is_joint() && self.membership_index <= self.log.commit() {
            let next = Membership {
                voters: self.membership.voters.clone(),
                voters_outgoing: BTreeSet::new(),
                learners: self.membership.learners.clone(),
            };
            // Refused only while a leadership transfer is under way; retried at the next commit.
            let _ = self.propose_payload(EntryPayload::Membership(next));
        }
        if self.role == Role::Leader
            && !self.membership.is_voter(self.id())
            && self.membership_index <= self.log.commit()
        {
            // A leader removed from the configuration steps down once that is committed.
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    /// The log changed from `changed_from` on: the configuration in force changes if
    /// its entry was overwritten (even by a log no shorter, with no configuration in
    /// the new entries) or if a new configuration entry arrived.
    fn recompute_membership_after_append(&mut self, changed_from: u64, entries: &[Entry]) {
        let overwritten = self.membership_index >= changed_from;
        let arrived =
            entries.iter().any(|e| e.index >= changed_from && matches!(e.payload, EntryPayload::Membership(_)));
        if overwritten || arrived {
            self.recompute_membership();
        }
    }

    /// The latest configuration at or below `index` (which the log still holds), or the base one.
    fn membership_at(&self, index: u64) -> Membership {
        let from = self.log.snapshot_index() + 1;
        let upto = index.saturating_sub(self.log.snapshot_index()) as usize;
        let entries = self.log.entries_from(from);
        entries[..upto.min(entries.len())]
            .iter()
            .rev()
            .find_map(|e| match &e.payload {
                EntryPayload::Membership(m) => Some(m.clone()),
                _ => None,
            })
            .unwrap_or_else(|| self.base_membership.clone())
    }

    /// The configuration in force is the latest one in the log, committed or not (Raft §6).
    fn recompute_membership(&mut self) {
        let from = self.log.snapshot_index() + 1;
        let latest = self.log.entries_from(from).iter().rev().find_map(|e| match &e.payload {
            EntryPayload::Membership(m) => Some((e.index, m.clone())),
            _ => None,
        });
        match latest {
            Some((index, m)) => {
                self.membership = m;
                self.membership_index = index;
            }
            None => {
                self.membership = self.base_membership.clone();
                self.membership_index = 0;
            }
        }
    }

    fn broadcast_heartbeat(&mut self) {
        self.read_round += 1;
        self.read_round_requested = false;
        let round = self.read_round;
        self.round_sent_at.push_back((round, self.ticks));
        while self.round_sent_at.len() > MAX_TRACKED_ROUNDS {
            self.round_sent_at.pop_front();
        }
        let commit = self.log.commit();
        let peers: Vec<(NodeId, u64)> = self.progress.iter().map(|(id, p)| (*id, p.match_index)).collect();
        for (peer, match_index) in peers {
            self.send(peer, MessageBody::Heartbeat { leader_commit: commit.min(match_index), read_round: round });
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        let last = self.log.last_index();
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        p.recent_active = true;
        if p.match_index < last && p.match_index == p.match_at_last_heartbeat {
            p.stalled_heartbeats += 1;
        } else {
            p.stalled_heartbeats = 0;
        }
        p.match_at_last_heartbeat = p.match_index;
        if p.stalled_heartbeats >= STALLED_HEARTBEATS_BEFORE_PROBE && p.state != ProgressState::Probe {
            // AppendEntries or a snapshot were lost: without this the pipeline
            // would wait forever for acknowledgements that never come.
            p.stalled_heartbeats = 0;
            p.next_index = p.match_index + 1;
            p.become_probe();
        }
        if p.match_index < last {
            self.send_append(from, true);
        }
        if let Some(&(_, sent_at)) = self.round_sent_at.iter().find(|(r, _)| *r == round) {
            let p = self.progress.get_mut(&from).expect("progress exists");
            p.acked_round_sent_at = Some(p.acked_round_sent_at.map_or(sent_at, |t| t.max(sent_at)));
        }
        for read in self.pending_reads.iter_mut() {
            if read.round <= round {
                read.acks.insert(from);
            }
        }
        self.release_confirmed_reads();
    }

    // ---- reads -----------------------------------------------------------

    fn leader_read(&mut self, context: ReadContext) {
        if !self.committed_in_current_term() {
            if self.reads_waiting_for_commit.len() >= MAX_PENDING_READS {
                return self.answer_read(context, None);
            }
            self.reads_waiting_for_commit.push(context);
            return;
        }
        let index = self.log.commit();
        let me = self.id();
        if self.membership.has_quorum(&|id| id == me) || (self.config.lease_reads && self.lease_valid()) {
            return self.answer_read(context, Some(index));
        }
        if self.pending_reads.len() >= MAX_PENDING_READS {
            return self.answer_read(context, None);
        }
        self.pending_reads.push_back(PendingRead {
            context,
            index,
            round: self.read_round + 1,
            acks: BTreeSet::from([me]),
        });
        self.read_round_requested = true;
    }

    /// Leader lease (dissertation §6.4.1): a follower that acknowledged a heartbeat
    /// sent at tick `t` refuses votes until at least `t + election_timeout` (its
    /// in-lease rule, also right after a restart), so while a quorum has
    /// acknowledged heartbeats sent less than `election_timeout - margin` ticks
    /// ago, no other leader can exist. Assumes ticks run at the same rate
    /// everywhere; hence off unless `lease_reads`. Voters ignore the lease for a
    /// leadership transfer's campaign, so once this leader has sent TimeoutNow its
    /// lease is over for the rest of its term, even if the transfer is given up:
    /// the TimeoutNow may still be in flight.
    fn lease_valid(&self) -> bool {
        if self.timeout_now_sent {
            return false;
        }
        let me = self.id();
        let now = self.ticks;
        let margin = self.config.heartbeat_interval_ticks.max(2);
        let lease_ticks = self.config.election_timeout_ticks.saturating_sub(margin);
        let progress = &self.progress;
        let fresh = |id: NodeId| {
            id == me
                || progress.get(&id).and_then(|p| p.acked_round_sent_at).is_some_and(|sent| sent + lease_ticks > now)
        };
        self.config.check_quorum && self.membership.has_quorum(&fresh)
    }

    fn release_confirmed_reads(&mut self) {
        while let Some(read) = self.pending_reads.front() {
            let acks = &read.acks;
            if !self.membership.has_quorum(&|id| acks.contains(&id)) {
                break;
            }
            let read = self.pending_reads.pop_front().expect("front exists");
            self.answer_read(read.context, Some(read.index));
        }
    }

    fn answer_read(&mut self, context: ReadContext, index: Option<u64>) {
        if context.origin == self.id() {
            self.read_states.push(ReadState { id: context.id, index });
        } else {
            self.send(context.origin, MessageBody::ReadIndexResponse { id: context.id, index });
        }
    }

    fn fail_leader_reads(&mut self) {
        let pending: Vec<ReadContext> = self.pending_reads.drain(..).map(|r| r.context).collect();
        let waiting = std::mem::take(&mut self.reads_waiting_for_commit);
        for context in pending.into_iter().chain(waiting) {
            self.answer_read(context, None);
        }
    }
}
