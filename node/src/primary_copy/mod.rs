//! Primary-copy replication (`--replication primary-copy`): a **baseline that loses acknowledged
//! writes**, there so that faultline can show, on the same store and the same harness, what Raft's
//! quorums and terms buy. Never a mode to run data on. docs/replication.md describes it and the
//! faults that break it.
//!
//! One primary applies a write, makes it durable on its own disk and acknowledges it; it ships
//! the entries to the backups asynchronously, once per heartbeat interval (log shipping: each
//! heartbeat carries the primary's position, a backup behind it answers with its own, and the
//! primary sends what follows). Backups follow the primary whose
//! heartbeats they hear. A backup that has not heard its primary for an election timeout probes
//! every node it can reach; if no reachable node has a live primary or a longer log (ties: the
//! higher id), it becomes primary itself. No quorum, no terms: a partitioned minority elects its
//! own primary, and when two primaries meet the one with the shorter log (ties: the lower id)
//! steps down and copies the other's whole state, dropping the writes only it had.
//!
//! Each stretch of leadership has a random history id; a backup copies entries only from a
//! primary of the history it holds and asks for the whole state otherwise, so replicas that
//! follow one primary always hold a prefix of its log.
//!
//! **Invariant:** like the Raft core, this module does no IO, reads no clock and spawns no
//! thread; time is ticks and randomness comes from the seed. The shell (`shell.rs`) persists
//! `Ready::entries` (fsync) before it sends `Ready::messages` and delivers `Ready::replies`.

pub mod shell;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::raft::rng::SplitMix64;
use crate::raft::NodeId;
use crate::replica::{ClientRequest, Reply, ReplyError, Token};
use crate::store::{Command, SessionLimits, Store};

/// How many entries a primary keeps in memory to catch backups up; one further behind gets the
/// whole state.
pub const MAX_CATCH_UP_ENTRIES: usize = 100_000;
/// The most entries in one `Append` message.
pub const MAX_ENTRIES_PER_MESSAGE: usize = 1_000;

/// One applied command: its position in the history and its serialised [`Command`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcEntry {
    pub index: u64,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcMessage {
    pub from: NodeId,
    pub to: NodeId,
    pub body: PcBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PcBody {
    /// Primary → every node, every heartbeat interval.
    Heartbeat {
        history: u64,
        last_index: u64,
    },
    /// Primary → backup: entries of `history` to apply in order.
    Append {
        history: u64,
        entries: Vec<PcEntry>,
    },
    /// Backup → primary: how far it has applied `history` (the primary sends from there).
    Ack {
        history: u64,
        last_index: u64,
    },
    /// Backup → primary: send me your whole state (my history is not yours).
    NeedState,
    /// Primary → backup: the whole state at `index` of `history`.
    State {
        history: u64,
        index: u64,
        data: Vec<u8>,
    },
    /// A backup whose primary fell silent asks who is there.
    Probe,
    ProbeReply {
        last_index: u64,
        live_primary: Option<NodeId>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcRole {
    Primary,
    Backup,
    /// Probing before it takes over.
    Candidate,
}

#[derive(Clone, Debug)]
pub struct PcConfig {
    pub id: NodeId,
    pub nodes: Vec<NodeId>,
    pub election_timeout_ticks: u64,
    pub heartbeat_interval_ticks: u64,
    pub session_limits: SessionLimits,
}

/// What the shell must do: persist (fsync) `entries` (or `install` a whole state first), then
/// send `messages`, then deliver `replies`.
#[derive(Debug, Default)]
pub struct Ready {
    /// A whole state copied from a primary: replaces the log (index, history, store data).
    pub install: Option<(u64, u64, Vec<u8>)>,
    pub entries: Vec<PcEntry>,
    /// The history id the entries belong to (persisted with them).
    pub history: u64,
    pub messages: Vec<PcMessage>,
    pub replies: Vec<(Token, Reply)>,
}

/// What a node restarts from.
#[derive(Clone, Debug, Default)]
pub struct PcPersisted {
    pub history: u64,
    /// A state copied or saved at `index`, if any.
    pub state: Option<(u64, Vec<u8>)>,
    /// Entries after it, in order.
    pub entries: Vec<PcEntry>,
}

pub struct PrimaryCopy {
    config: PcConfig,
    rng: SplitMix64,
    role: PcRole,
    /// The primary this node follows (itself when primary).
    primary: Option<NodeId>,
    history: u64,
    store: Store,
    last_index: u64,
    /// The newest entries, for catching backups up.
    recent: std::collections::VecDeque<PcEntry>,
    /// Primary: how far each backup has acknowledged, in this history.
    acked: BTreeMap<NodeId, u64>,
    ticks_since_primary: u64,
    election_timeout: u64,
    heartbeat_elapsed: u64,
    /// Candidate: replies so far and ticks left to wait.
    probe_replies: BTreeMap<NodeId, (u64, Option<NodeId>)>,
    probe_ticks_left: u64,
    applied_hashes: std::collections::VecDeque<u32>,
    applied_hashes_first: u64,
    ready: Ready,
}

impl PrimaryCopy {
    pub fn new(config: PcConfig, persisted: PcPersisted, seed: u64) -> Result<PrimaryCopy, serde_json::Error> {
        let (mut store, mut last_index) = match &persisted.state {
            Some((index, data)) => (Store::from_snapshot(data, false)?, *index),
            None => (Store::new(config.session_limits, false), 0),
        };
        let mut node = PrimaryCopy {
            rng: SplitMix64::new(seed),
            role: PcRole::Backup,
            primary: None,
            history: persisted.history,
            store: Store::default(),
            last_index: 0,
            recent: Default::default(),
            acked: BTreeMap::new(),
            ticks_since_primary: 0,
            election_timeout: config.election_timeout_ticks,
            heartbeat_elapsed: 0,
            probe_replies: BTreeMap::new(),
            probe_ticks_left: 0,
            applied_hashes: Default::default(),
            applied_hashes_first: last_index + 1,
            ready: Ready::default(),
            config,
        };
        for entry in persisted.entries {
            if entry.index <= last_index {
                continue;
            }
            assert_eq!(entry.index, last_index + 1, "persisted entries follow the state");
            let command: Command = serde_json::from_slice(&entry.data).expect("persisted command decodes");
            let _ = store.apply(entry.index, &command);
            last_index = entry.index;
            node.remember(entry);
        }
        node.store = store;
        node.last_index = last_index;
        node.reset_election_timer();
        Ok(node)
    }

    pub fn role(&self) -> PcRole {
        self.role
    }

    pub fn primary(&self) -> Option<NodeId> {
        self.primary
    }

    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    pub fn history(&self) -> u64 {
        self.history
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// (index of the first, checksums) of the entries this node applied one by one.
    pub fn applied_hashes(&self) -> (u64, Vec<u32>) {
        (self.applied_hashes_first, self.applied_hashes.iter().copied().collect())
    }

    pub fn take_ready(&mut self) -> Ready {
        let history = self.history;
        let mut ready = std::mem::take(&mut self.ready);
        ready.history = history;
        ready
    }

    fn reset_election_timer(&mut self) {
        let base = self.config.election_timeout_ticks.max(1);
        self.election_timeout = base + self.rng.below(base);
        self.ticks_since_primary = 0;
    }

    fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.config.id;
        self.config.nodes.iter().copied().filter(move |n| *n != me)
    }

    fn send(&mut self, to: NodeId, body: PcBody) {
        self.ready.messages.push(PcMessage { from: self.config.id, to, body });
    }

    fn remember(&mut self, entry: PcEntry) {
        self.applied_hashes.push_back(crc32fast::hash(&entry.data));
        if self.applied_hashes.len() > crate::replica::APPLIED_HASHES_KEPT {
            self.applied_hashes.pop_front();
            self.applied_hashes_first += 1;
        }
        self.recent.push_back(entry);
        if self.recent.len() > MAX_CATCH_UP_ENTRIES {
            self.recent.pop_front();
        }
    }

    /// Applies one entry of the current history and queues it for persisting.
    fn apply(&mut self, entry: PcEntry) -> crate::store::OpResult {
        assert_eq!(entry.index, self.last_index + 1, "entries are applied in order, once");
        let command: Command = serde_json::from_slice(&entry.data).expect("command decodes");
        let result = self.store.apply(entry.index, &command);
        self.last_index = entry.index;
        self.ready.entries.push(entry.clone());
        self.remember(entry);
        result
    }

    pub fn tick(&mut self) {
        match self.role {
            PcRole::Primary => {
                self.heartbeat_elapsed += 1;
                if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
                    self.heartbeat_elapsed = 0;
                    self.broadcast_heartbeat();
                    let positions: Vec<(NodeId, u64)> = self.acked.iter().map(|(&n, &i)| (n, i)).collect();
                    for (backup, acked) in positions {
                        self.catch_up(backup, acked);
                    }
                }
            }
            PcRole::Backup => {
                self.ticks_since_primary += 1;
                if self.ticks_since_primary >= self.election_timeout {
                    self.start_probe();
                }
            }
            PcRole::Candidate => {
                self.probe_ticks_left = self.probe_ticks_left.saturating_sub(1);
                if self.probe_ticks_left == 0 {
                    self.finish_probe();
                }
            }
        }
    }

    fn broadcast_heartbeat(&mut self) {
        let (history, last_index) = (self.history, self.last_index);
        let peers: Vec<NodeId> = self.peers().collect();
        for peer in peers {
            self.send(peer, PcBody::Heartbeat { history, last_index });
        }
    }

    fn start_probe(&mut self) {
        self.role = PcRole::Candidate;
        self.primary = None;
        self.probe_replies.clear();
        self.probe_ticks_left = 2 * self.config.heartbeat_interval_ticks.max(1);
        let peers: Vec<NodeId> = self.peers().collect();
        for peer in peers {
            self.send(peer, PcBody::Probe);
        }
    }

    fn finish_probe(&mut self) {
        let me = (self.last_index, self.config.id);
        if self.probe_replies.values().any(|(_, live)| live.is_some()) {
            // Someone still hears a primary: wait for its heartbeats.
            self.become_backup(None);
            return;
        }
        let better = self.probe_replies.iter().any(|(&node, &(last_index, _))| (last_index, node) > me);
        if better {
            self.become_backup(None);
        } else {
            self.become_primary();
        }
    }

    fn become_backup(&mut self, primary: Option<NodeId>) {
        self.role = PcRole::Backup;
        self.primary = primary;
        self.acked.clear();
        self.reset_election_timer();
    }

    fn become_primary(&mut self) {
        self.role = PcRole::Primary;
        self.primary = Some(self.config.id);
        // A new history: backups of this node's earlier stretches must copy its whole state.
        self.history = self.rng.next_u64() | 1;
        // Entries persisted from here on belong to the new history; the shell saves the state so a
        // restart reports the new history id.
        self.ready.install = Some((self.last_index, self.history, self.store.to_snapshot()));
        self.acked.clear();
        self.heartbeat_elapsed = 0;
        self.broadcast_heartbeat();
    }

    pub fn client_request(&mut self, token: Token, request: ClientRequest) {
        if self.role != PcRole::Primary {
            let hint = self.primary.filter(|p| *p != self.config.id);
            self.ready.replies.push((token, Err(ReplyError::NotLeader { leader_hint: hint })));
            return;
        }
        if request.op.is_read() {
            let result = self.store.read(&request.op).map_err(ReplyError::Op);
            self.ready.replies.push((token, result));
            return;
        }
        if let Some(result) = self.store.cached_result(request.client_id, request.seq) {
            self.ready.replies.push((token, result.map_err(ReplyError::Op)));
            return;
        }
        let command = Command { client_id: request.client_id, seq: request.seq, op: request.op };
        let data = serde_json::to_vec(&command).expect("command serialises");
        let index = self.last_index + 1;
        let result = self.apply(PcEntry { index, data: data.clone() });
        // Acknowledged once the shell has persisted this ready's entries: no backup is waited
        // for. Backups get it with the next heartbeat round (log shipping every heartbeat
        // interval): a backup that is behind answers the heartbeat with its position, and the
        // primary sends what follows.
        self.ready.replies.push((token, result.map_err(ReplyError::Op)));
    }

    pub fn step(&mut self, message: PcMessage) {
        let from = message.from;
        match message.body {
            PcBody::Heartbeat { history, last_index } => self.on_heartbeat(from, history, last_index),
            PcBody::Append { history, entries } => {
                if self.role == PcRole::Backup && self.primary == Some(from) {
                    self.ticks_since_primary = 0;
                    if history != self.history {
                        self.send(from, PcBody::NeedState);
                        return;
                    }
                    for entry in entries {
                        if entry.index == self.last_index + 1 {
                            let _ = self.apply(entry);
                        }
                    }
                    let last_index = self.last_index;
                    self.send(from, PcBody::Ack { history, last_index });
                }
            }
            PcBody::Ack { history, last_index } => {
                // Recorded only: entries go out with the next heartbeat round.
                if self.role == PcRole::Primary && history == self.history {
                    if last_index > self.last_index {
                        // A backup ahead of its primary in one history cannot happen: the primary
                        // wrote every entry of its history first.
                        self.send(from, PcBody::NeedState);
                    } else {
                        self.acked.insert(from, last_index);
                    }
                }
            }
            PcBody::NeedState => {
                if self.role == PcRole::Primary {
                    let body =
                        PcBody::State { history: self.history, index: self.last_index, data: self.store.to_snapshot() };
                    self.acked.insert(from, self.last_index);
                    self.send(from, body);
                }
            }
            PcBody::State { history, index, data } => {
                if self.role == PcRole::Backup && self.primary == Some(from) {
                    self.install(history, index, data);
                    self.send(from, PcBody::Ack { history, last_index: index });
                }
            }
            PcBody::Probe => {
                let live_primary = match self.role {
                    PcRole::Primary => Some(self.config.id),
                    PcRole::Backup => self.primary,
                    PcRole::Candidate => None,
                };
                let last_index = self.last_index;
                self.send(from, PcBody::ProbeReply { last_index, live_primary });
            }
            PcBody::ProbeReply { last_index, live_primary } => {
                if self.role == PcRole::Candidate {
                    self.probe_replies.insert(from, (last_index, live_primary));
                }
            }
        }
    }

    fn on_heartbeat(&mut self, from: NodeId, history: u64, last_index: u64) {
        match self.role {
            PcRole::Primary => {
                // Two primaries: the one with the shorter log (ties: the lower id) gives way and
                // copies the other's state. Whatever only it had is gone: the baseline's flaw.
                if (last_index, from) > (self.last_index, self.config.id) {
                    self.become_backup(Some(from));
                    self.send(from, PcBody::NeedState);
                }
            }
            PcRole::Candidate | PcRole::Backup => {
                if self.primary != Some(from) {
                    self.become_backup(Some(from));
                }
                self.ticks_since_primary = 0;
                if history != self.history {
                    self.send(from, PcBody::NeedState);
                } else if last_index != self.last_index {
                    let own = self.last_index;
                    self.send(from, PcBody::Ack { history, last_index: own });
                }
            }
        }
    }

    fn catch_up(&mut self, backup: NodeId, acked: u64) {
        if acked >= self.last_index {
            return;
        }
        let first_kept = self.recent.front().map_or(self.last_index + 1, |e| e.index);
        if acked + 1 < first_kept {
            let body = PcBody::State { history: self.history, index: self.last_index, data: self.store.to_snapshot() };
            self.acked.insert(backup, self.last_index);
            self.send(backup, body);
            return;
        }
        let skip = (acked + 1 - first_kept) as usize;
        let entries: Vec<PcEntry> = self.recent.iter().skip(skip).take(MAX_ENTRIES_PER_MESSAGE).cloned().collect();
        let sent_to = entries.last().map_or(acked, |e| e.index);
        self.acked.insert(backup, sent_to);
        let history = self.history;
        self.send(backup, PcBody::Append { history, entries });
    }

    fn install(&mut self, history: u64, index: u64, data: Vec<u8>) {
        self.store = Store::from_snapshot(&data, false).expect("a primary's state decodes");
        self.history = history;
        self.last_index = index;
        self.recent.clear();
        self.applied_hashes.clear();
        self.applied_hashes_first = index + 1;
        self.ready.entries.clear();
        self.ready.install = Some((index, history, data));
    }

    /// Reads the value of `key` (for tests).
    pub fn read_key(&self, key: &str) -> Value {
        self.store.read(&crate::store::Op::Read { key: key.into() }).expect("reads succeed")
    }
}

#[cfg(test)]
mod sim;
