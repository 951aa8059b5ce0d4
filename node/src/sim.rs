//! Seeded deterministic simulation of a cluster of [`Replica`]s.
//!
//! One seed fixes everything: message delays, loss, duplication and reordering,
//! partitions, crashes (which lose whatever was not persisted), client
//! operations and retries. After every step the Raft safety properties are
//! checked (election safety, log matching, leader completeness, state machine
//! safety, Raft Figure 3); after the faults heal the cluster must elect a leader
//! and finish every client operation. Client operations are recorded as a
//! Jepsen-style history for a linearizability checker.
//!
//! **Invariant:** no clock, no thread, no IO: `run(&config)` twice gives the same outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use serde_json::{json, Value};

use crate::bugs::{Bug, Bugs};
use crate::raft::rng::SplitMix64;
use crate::raft::{Entry, EntryPayload, HardState, Membership, Message, NodeId, Persisted, Role, Snapshot};
use crate::replica::{ClientRequest, MembershipChange, Replica, ReplicaConfig, ReplyError, Token};
use crate::store::{Op, OpError};
use crate::wal::Wal;

/// The knobs of one simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub n_nodes: u64,
    pub bugs: Bugs,
    /// Ticks with faults, then ticks with the network healed and every node up.
    pub fault_ticks: u64,
    pub heal_ticks: u64,
    pub n_clients: usize,
    pub n_keys: usize,
    /// Event streams, checked with the stream model (0: none).
    pub n_streams: usize,
    /// Appends that carry the expected version the client last saw.
    pub optimistic_append_percent: u64,
    /// Also write every persist to a real [`Wal`] under this directory (without
    /// fsync), tear its tail at crashes, and check that recovery gives back
    /// exactly what was persisted.
    pub wal_dir: Option<std::path::PathBuf>,
    pub loss_percent: u64,
    pub duplicate_percent: u64,
    pub max_delay_ticks: u64,
    /// Per tick, per mille.
    pub crash_per_mille: u64,
    pub partition_per_mille: u64,
    pub snapshot_every_entries: u64,
    pub request_timeout_ticks: u64,
    /// Serve leader reads from the lease (`--lease-reads`).
    pub lease_reads: bool,
    /// Nodes 1..=initial_voters start as voters; the rest start outside the cluster.
    pub initial_voters: u64,
    /// Per mille per tick: the leader starts a membership change or a leadership transfer.
    pub admin_per_mille: u64,
}

impl SimConfig {
    pub fn new(seed: u64, n_nodes: u64) -> SimConfig {
        SimConfig {
            seed,
            n_nodes,
            bugs: Bugs::none(),
            fault_ticks: 400,
            heal_ticks: 300,
            n_clients: 4,
            n_keys: 3,
            n_streams: 1,
            optimistic_append_percent: 90,
            wal_dir: None,
            loss_percent: 5,
            duplicate_percent: 3,
            max_delay_ticks: 3,
            crash_per_mille: 15,
            partition_per_mille: 20,
            snapshot_every_entries: 30,
            request_timeout_ticks: 30,
            lease_reads: false,
            initial_voters: n_nodes,
            admin_per_mille: 0,
        }
    }
}

/// One line of the history, with Jepsen's field names.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryEvent {
    pub index: u64,
    pub time_ns: u64,
    pub process: u64,
    /// "invoke", "ok", "fail" or "info".
    pub kind: &'static str,
    /// "read", "write" or "cas".
    pub f: &'static str,
    pub key: Value,
    pub value: Value,
    pub error: Option<String>,
}

/// Counts that show the run was not vacuous.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    pub crashes: u64,
    pub partitions: u64,
    pub messages_delivered: u64,
    pub messages_lost: u64,
    pub ops_ok: u64,
    pub ops_fail: u64,
    pub ops_info: u64,
    pub max_term: u64,
    pub snapshots_installed: u64,
    /// Terms in which more than one node campaigned.
    pub split_elections: u64,
    pub leaders_elected: u64,
    pub membership_changes: u64,
    pub leadership_transfers: u64,
}

/// What a run found.
#[derive(Debug)]
pub struct SimOutcome {
    pub history: Vec<HistoryEvent>,
    pub stats: SimStats,
    /// Safety or liveness violations, empty when the run passed.
    pub violations: Vec<String>,
}

#[derive(Default, Clone)]
struct Disk {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

struct SimNode {
    replica: Option<Replica>,
    disk: Disk,
    /// With `SimConfig::wal_dir`, a real write-ahead log kept beside the model disk.
    wal: Option<Wal>,
    restarts: u64,
    down_until: u64,
    /// With the planted bug no-fsync: what the operating system has written back of
    /// `disk` (at random ticks); a crash is a power loss that keeps only this.
    flushed: Option<Disk>,
    was_leader_in_term: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum OpKind {
    Read,
    Write,
    Cas,
    Append,
    ReadStream,
}

impl OpKind {
    fn is_read(self) -> bool {
        matches!(self, OpKind::Read | OpKind::ReadStream)
    }

    fn is_stream(self) -> bool {
        matches!(self, OpKind::Append | OpKind::ReadStream)
    }
}

struct PendingOp {
    kind: OpKind,
    key: usize,
    value: Value,
    seq: u64,
    token: Token,
    node: NodeId,
    deadline: u64,
    attempts: u32,
    any_indefinite: bool,
    started: u64,
}

struct SimClient {
    process: u64,
    client_id: u64,
    seq: u64,
    leader_guess: Option<NodeId>,
    pending: Option<PendingOp>,
}

struct InFlight {
    deliver_at: u64,
    message: Message,
}

const MAX_ATTEMPTS: u32 = 10;

struct Sim {
    config: SimConfig,
    rng: SplitMix64,
    now: u64,
    step_in_tick: u64,
    nodes: Vec<SimNode>,
    network: Vec<InFlight>,
    /// Directed pairs (from, to) whose messages are dropped.
    grudge: BTreeSet<(NodeId, NodeId)>,
    partition_until: u64,
    /// A partition aimed at an admin action: (tick to start it, node to cut off,
    /// whether only the messages to it are dropped).
    aimed_cut: Option<(u64, NodeId, bool)>,
    clients: Vec<SimClient>,
    next_token: Token,
    next_process: u64,
    next_value: u64,
    history: Vec<HistoryEvent>,
    stats: SimStats,
    violations: Vec<String>,
    leaders_by_term: BTreeMap<u64, NodeId>,
    candidates_by_term: BTreeMap<u64, BTreeSet<NodeId>>,
    /// (index, term) -> (payload hash, previous entry's term).
    log_entries: BTreeMap<(u64, u64), (u64, Option<u64>)>,
    /// index -> (term, payload hash) of every applied entry.
    applied: BTreeMap<u64, (u64, u64)>,
    /// index -> term of every entry some node has counted as committed.
    committed: BTreeMap<u64, u64>,
    /// Per node (index id - 1): the highest commit index already recorded in `committed`.
    committed_recorded: Vec<u64>,
    faults_on: bool,
    /// The highest version of each stream any client saw, to aim expected versions.
    stream_versions: Vec<u64>,
}

fn payload_hash(entry: &Entry) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match &entry.payload {
        EntryPayload::Noop => 0u8.hash(&mut h),
        EntryPayload::Command(data) => {
            1u8.hash(&mut h);
            data.hash(&mut h);
        }
        EntryPayload::Membership(m) => {
            2u8.hash(&mut h);
            format!("{m:?}").hash(&mut h);
        }
    }
    h.finish()
}

/// Runs one seeded simulation to the end.
pub fn run(config: &SimConfig) -> SimOutcome {
    let mut sim = Sim::new(config.clone());
    let total = config.fault_ticks + config.heal_ticks;
    while sim.now < total && sim.violations.is_empty() {
        if sim.now == config.fault_ticks {
            sim.heal_everything();
        }
        sim.run_tick();
        sim.now += 1;
        sim.step_in_tick = 0;
    }
    if sim.violations.is_empty() {
        sim.check_liveness();
    }
    sim.finish_pending_ops();
    SimOutcome { history: sim.history, stats: sim.stats, violations: sim.violations }
}

impl Sim {
    fn new(config: SimConfig) -> Sim {
        let mut rng = SplitMix64::new(config.seed);
        let n_streams = config.n_streams;
        let n_nodes = config.n_nodes as usize;
        let members = Membership::with_voters(1..=config.initial_voters);
        let nodes = (1..=config.n_nodes)
            .map(|id| {
                let disk = Disk::default();
                let replica =
                    Replica::new(Self::replica_config(&config, id), Self::persisted(&disk, &members), config.seed)
                        .expect("fresh replica");
                let wal = config.wal_dir.as_ref().map(|dir| {
                    let dir = dir.join(format!("n{id}"));
                    let _ = std::fs::remove_dir_all(&dir);
                    let (mut wal, _) = Wal::open(&dir).expect("open a fresh log");
                    wal.fsync = false;
                    wal
                });
                let flushed = config.bugs.has(Bug::NoFsync).then(Disk::default);
                SimNode {
                    replica: Some(replica),
                    disk,
                    wal,
                    restarts: 0,
                    down_until: 0,
                    flushed,
                    was_leader_in_term: None,
                }
            })
            .collect();
        let clients = (0..config.n_clients)
            .map(|i| SimClient {
                process: i as u64,
                client_id: 1000 + i as u64,
                seq: 0,
                leader_guess: None,
                pending: None,
            })
            .collect();
        let _ = rng.next_u64();
        Sim {
            next_process: config.n_clients as u64,
            config,
            rng,
            now: 0,
            step_in_tick: 0,
            nodes,
            network: Vec::new(),
            grudge: BTreeSet::new(),
            partition_until: 0,
            aimed_cut: None,
            clients,
            next_token: 1,
            next_value: 1,
            history: Vec::new(),
            stats: SimStats::default(),
            violations: Vec::new(),
            leaders_by_term: BTreeMap::new(),
            candidates_by_term: BTreeMap::new(),
            log_entries: BTreeMap::new(),
            applied: BTreeMap::new(),
            committed: BTreeMap::new(),
            committed_recorded: vec![0; n_nodes],
            faults_on: true,
            stream_versions: vec![0; n_streams],
        }
    }

    fn replica_config(config: &SimConfig, id: NodeId) -> ReplicaConfig {
        let mut rc = ReplicaConfig::new(id).with_bugs(config.bugs.clone());
        rc.raft.election_timeout_ticks = 10;
        rc.raft.heartbeat_interval_ticks = 2;
        rc.raft.max_entries_per_append = 8;
        rc.raft.max_inflight_appends = 4;
        rc.snapshot_every_entries = config.snapshot_every_entries;
        rc.raft.lease_reads = config.lease_reads;
        rc
    }

    fn persisted(disk: &Disk, members: &Membership) -> Persisted {
        Persisted {
            hard_state: disk.hard_state,
            snapshot: disk.snapshot.clone(),
            initial_membership: members.clone(),
            entries: disk.entries.clone(),
        }
    }

    fn node_ids(&self) -> impl Iterator<Item = NodeId> {
        1..=self.config.n_nodes
    }

    fn node(&mut self, id: NodeId) -> &mut SimNode {
        &mut self.nodes[(id - 1) as usize]
    }

    fn heal_everything(&mut self) {
        self.faults_on = false;
        self.grudge.clear();
        for id in self.node_ids().collect::<Vec<_>>() {
            if self.node(id).replica.is_none() {
                self.restart(id);
            }
        }
    }

    fn run_tick(&mut self) {
        if self.faults_on {
            self.inject_faults();
            self.maybe_admin();
        }
        if self.config.bugs.has(Bug::NoFsync) {
            self.write_back_page_cache();
        }
        for id in self.node_ids().collect::<Vec<_>>() {
            if let Some(r) = self.node(id).replica.as_mut() {
                r.tick();
            }
            if self.rng.chance(1, 2) {
                self.process_ready(id);
            }
        }
        self.deliver_messages();
        self.run_clients();
        for id in self.node_ids().collect::<Vec<_>>() {
            self.process_ready(id);
        }
        self.check_safety();
    }

    fn inject_faults(&mut self) {
        let n = self.config.n_nodes;
        if self.rng.chance(self.config.crash_per_mille, 1000) {
            let id = 1 + self.rng.below(n);
            // Short crashes land inside an election; long ones outlast it.
            let down_ticks = if self.rng.chance(1, 2) { 1 + self.rng.below(3) } else { 5 + self.rng.below(40) };
            self.crash(id, down_ticks);
        }
        for id in self.node_ids().collect::<Vec<_>>() {
            let node = self.node(id);
            if node.replica.is_none() && node.down_until <= self.now {
                self.restart(id);
            }
        }
        if !self.grudge.is_empty() && self.now >= self.partition_until {
            self.grudge.clear();
        }
        if let Some((at, id, inbound_only)) = self.aimed_cut {
            if self.now >= at && self.grudge.is_empty() {
                self.aimed_cut = None;
                self.stats.partitions += 1;
                for other in self.node_ids().filter(|o| *o != id).collect::<Vec<_>>() {
                    self.grudge.insert((other, id));
                    if !inbound_only {
                        self.grudge.insert((id, other));
                    }
                }
                self.partition_until = self.now + 10 + self.rng.below(40);
            }
        }
        if self.grudge.is_empty() && self.rng.chance(self.config.partition_per_mille, 1000) {
            self.stats.partitions += 1;
            let mut ids: Vec<NodeId> = self.node_ids().collect();
            for i in (1..ids.len()).rev() {
                let j = self.rng.below(i as u64 + 1) as usize;
                ids.swap(i, j);
            }
            let cut = 1 + self.rng.below(n / 2 + 1) as usize;
            let (side_a, side_b) = ids.split_at(cut.min(ids.len() - 1));
            for a in side_a {
                for b in side_b {
                    self.grudge.insert((*a, *b));
                    self.grudge.insert((*b, *a));
                }
            }
            self.partition_until = self.now + 10 + self.rng.below(60);
        }
    }

    /// Membership changes and leadership transfers, started at the current leader.
    fn maybe_admin(&mut self) {
        if !self.rng.chance(self.config.admin_per_mille, 1000) {
            return;
        }
        let leader = self.nodes.iter().position(|n| n.replica.as_ref().is_some_and(|r| r.raft().is_leader()));
        let Some(leader) = leader else { return };
        let leader_id = leader as u64 + 1;
        let n = self.config.n_nodes;
        let action = self.rng.below(4);
        let target = 1 + self.rng.below(n);
        let replica = self.nodes[leader].replica.as_mut().expect("alive");
        let m = replica.raft().membership().clone();
        let voters = m.voters.len();
        let result = match action {
            0 if m.voters.contains(&target) && target != leader_id => {
                if replica.transfer_leadership(target).is_ok() {
                    self.stats.leadership_transfers += 1;
                    if self.rng.chance(1, 2) {
                        // Cut the old leader off from hearing anyone, soon after its
                        // TimeoutNow: it must not go on serving reads from its lease
                        // while the target leads (dissertation §6.4.1).
                        self.aimed_cut = Some((self.now + self.rng.below(3), leader_id, true));
                    }
                }
                return;
            }
            1 if !m.members().contains(&target) => replica.change_membership(MembershipChange::AddLearner(target)),
            2 if m.learners.contains(&target) => replica.change_membership(MembershipChange::Promote(target)),
            3 if m.learners.contains(&target) || (m.voters.contains(&target) && voters > 3) => {
                replica.change_membership(MembershipChange::Remove(target))
            }
            _ => return,
        };
        if result.is_ok() {
            self.stats.membership_changes += 1;
            if self.rng.chance(1, 2) {
                // Isolate the leader once its configuration entry reached some
                // followers, before it commits: a new leader will overwrite it (Raft §6).
                self.aimed_cut = Some((self.now + 1 + self.rng.below(3), leader_id, false));
            }
        }
    }

    /// Planted bug no-fsync: now and then the operating system writes a node's dirty
    /// pages back; only then is what it wrote durable.
    fn write_back_page_cache(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].replica.is_some() && self.rng.chance(1, 10) {
                self.nodes[i].flushed = Some(self.nodes[i].disk.clone());
            }
        }
    }

    fn crash(&mut self, id: NodeId, down_ticks: u64) {
        let until = self.now + down_ticks;
        let node = self.node(id);
        if node.replica.is_some() {
            node.replica = None;
            if let Some(flushed) = &node.flushed {
                node.disk = flushed.clone();
            }
            node.down_until = until;
            let had_wal = node.wal.take().is_some();
            self.stats.crashes += 1;
            if had_wal {
                self.tear_wal_tail(id);
            }
        }
    }

    /// A crash in the middle of a write leaves part of an unacknowledged record.
    fn tear_wal_tail(&mut self, id: NodeId) {
        let Some(dir) = self.config.wal_dir.as_ref().map(|d| d.join(format!("n{id}"))) else { return };
        if !self.rng.chance(1, 2) {
            return;
        }
        let mut torn: Vec<u8> = Vec::new();
        let claimed_len = 16 + self.rng.below(200) as u32;
        torn.extend_from_slice(&claimed_len.to_be_bytes());
        for _ in 0..self.rng.below(claimed_len as u64) {
            torn.push(self.rng.next_u64() as u8);
        }
        let cut = self.rng.below(torn.len() as u64 + 1) as usize;
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(dir.join("wal.log")).expect("wal.log exists");
        file.write_all(&torn[..cut.max(1)]).expect("tear the tail");
    }

    fn restart(&mut self, id: NodeId) {
        let members = Membership::with_voters(1..=self.config.initial_voters);
        let config = Self::replica_config(&self.config, id);
        let node = &mut self.nodes[(id - 1) as usize];
        node.restarts += 1;
        let seed = self.config.seed ^ (node.restarts << 32);
        if let Some(dir) = self.config.wal_dir.as_ref().map(|d| d.join(format!("n{id}"))) {
            let (mut wal, recovered) = Wal::open(&dir).expect("the log reopens");
            wal.fsync = false;
            let same = recovered.hard_state.term == node.disk.hard_state.term
                && recovered.hard_state.vote == node.disk.hard_state.vote
                && recovered.snapshot == node.disk.snapshot
                && recovered.entries == node.disk.entries;
            if !same {
                self.violations.push(format!(
                    "write-ahead log: node {id} recovered term {} vote {:?} {} entries (snapshot {:?}), but term {} vote {:?} {} entries (snapshot {:?}) were persisted",
                    recovered.hard_state.term,
                    recovered.hard_state.vote,
                    recovered.entries.len(),
                    recovered.snapshot.as_ref().map(|s| s.index),
                    node.disk.hard_state.term,
                    node.disk.hard_state.vote,
                    node.disk.entries.len(),
                    node.disk.snapshot.as_ref().map(|s| s.index)
                ));
            }
            node.wal = Some(wal);
        }
        let replica = Replica::new(config, Self::persisted(&node.disk, &members), seed).expect("restart from disk");
        node.replica = Some(replica);
        node.was_leader_in_term = None;
    }

    fn send(&mut self, message: Message) {
        if self.faults_on && self.rng.chance(self.config.loss_percent, 100) {
            self.stats.messages_lost += 1;
            return;
        }
        let copies = if self.faults_on && self.rng.chance(self.config.duplicate_percent, 100) { 2 } else { 1 };
        for _ in 0..copies {
            let deliver_at = self.now + 1 + self.rng.below(self.config.max_delay_ticks);
            self.network.push(InFlight { deliver_at, message: message.clone() });
        }
    }

    fn deliver_messages(&mut self) {
        let (mut due, later): (Vec<InFlight>, Vec<InFlight>) =
            std::mem::take(&mut self.network).into_iter().partition(|m| m.deliver_at <= self.now);
        self.network = later;
        for i in (1..due.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            due.swap(i, j);
        }
        for inflight in due {
            let m = inflight.message;
            if self.grudge.contains(&(m.from, m.to)) {
                self.stats.messages_lost += 1;
                continue;
            }
            let to = m.to;
            let Some(replica) = self.node(to).replica.as_mut() else {
                continue;
            };
            replica.step(m);
            self.stats.messages_delivered += 1;
            self.step_in_tick += 1;
            if self.rng.chance(1, 2) {
                self.process_ready(to);
                if self.faults_on && self.rng.chance(self.config.crash_per_mille, 4000) {
                    // Crash right after a persist and send: the window in which a
                    // lost vote or an unacknowledged write matters most.
                    let down_ticks = 1 + self.rng.below(3);
                    self.crash(to, down_ticks);
                }
            }
            self.check_safety();
            if !self.violations.is_empty() {
                return;
            }
        }
    }

    /// Persist, send, apply: exactly the shell's order.
    fn process_ready(&mut self, id: NodeId) {
        for _ in 0..16 {
            let Some(replica) = self.nodes[(id - 1) as usize].replica.as_mut() else {
                return;
            };
            let Some(ready) = replica.ready() else { return };
            // Log matching is checked on every entry as it enters a log.
            let prev_term_of_first = ready.entries.first().and_then(|e| replica.raft().log_term(e.index - 1));
            let mut prev_term = prev_term_of_first;
            for entry in &ready.entries {
                let key = (entry.index, entry.term);
                let value = (payload_hash(entry), prev_term);
                match self.log_entries.get(&key) {
                    None => {
                        self.log_entries.insert(key, value);
                    }
                    Some(existing) => {
                        let same_payload = existing.0 == value.0;
                        let same_prev = existing.1.is_none() || value.1.is_none() || existing.1 == value.1;
                        if !same_payload || !same_prev {
                            self.violations.push(format!(
                                "log matching (Raft §5.3): node {id} has entry index {} term {} that differs from another node's",
                                entry.index, entry.term
                            ));
                        }
                    }
                }
                prev_term = Some(entry.term);
            }
            let mut ready = ready;
            if ready.send_before_persist {
                for m in std::mem::take(&mut ready.messages) {
                    self.send(m);
                }
                if self.faults_on && self.rng.chance(self.config.crash_per_mille, 2000) {
                    // The leader's entries went out but never reached its own disk.
                    let down_ticks = 1 + self.rng.below(3);
                    self.crash(id, down_ticks);
                    return;
                }
            }
            let node = &mut self.nodes[(id - 1) as usize];
            if let Some(hs) = ready.hard_state {
                node.disk.hard_state = hs;
            }
            if let Some(snapshot) = &ready.snapshot {
                node.disk.snapshot = Some(snapshot.clone());
                node.disk.entries.clear();
                self.stats.snapshots_installed += 1;
            }
            if let Some(first) = ready.entries.first() {
                let base = node.disk.snapshot.as_ref().map_or(0, |s| s.index);
                node.disk.entries.truncate((first.index - base - 1) as usize);
                node.disk.entries.extend(ready.entries.iter().cloned());
            }
            if let Some(wal) = node.wal.as_mut() {
                if let Some(snapshot) = &ready.snapshot {
                    wal.save_snapshot(snapshot, &node.disk.hard_state, &[]).expect("save a snapshot");
                }
                wal.append(ready.hard_state.as_ref(), &ready.entries, false).expect("append to the log");
            }
            for entry in &ready.committed_entries {
                let value = (entry.term, payload_hash(entry));
                match self.applied.get(&entry.index) {
                    None => {
                        self.applied.insert(entry.index, value);
                    }
                    Some(existing) if *existing != value => {
                        self.violations.push(format!(
                            "state machine safety (Raft §5.4.3): node {id} applied index {} term {} but another node applied term {} there",
                            entry.index, entry.term, existing.0
                        ));
                    }
                    Some(_) => {}
                }
            }
            let outgoing = std::mem::take(&mut ready.messages);
            for m in outgoing {
                self.send(m);
            }
            let replica = self.nodes[(id - 1) as usize].replica.as_mut().expect("alive");
            let advanced = replica.advance(ready);
            let replies = replica.take_replies();
            if let Some(snapshot) = advanced.new_snapshot {
                let node = &mut self.nodes[(id - 1) as usize];
                node.disk.entries.retain(|e| e.index > snapshot.index);
                if let Some(wal) = node.wal.as_mut() {
                    wal.save_snapshot(&snapshot, &node.disk.hard_state, &node.disk.entries).expect("save a snapshot");
                }
                node.disk.snapshot = Some(snapshot);
            }
            for (token, reply) in replies {
                self.on_reply(token, reply);
            }
        }
    }

    /// Raft's safety properties (Figure 3) and the configuration rule (§6), checked
    /// after every step.
    fn check_safety(&mut self) {
        for id in self.node_ids().collect::<Vec<_>>() {
            if self.nodes[(id - 1) as usize].replica.is_none() {
                continue;
            }
            self.record_committed(id);
            self.check_configuration(id);
            if !self.violations.is_empty() {
                return;
            }
            let raft = self.nodes[(id - 1) as usize].replica.as_ref().expect("alive").raft();
            self.stats.max_term = self.stats.max_term.max(raft.term());
            if raft.role() == Role::Candidate {
                let set = self.candidates_by_term.entry(raft.term()).or_default();
                if set.insert(id) && set.len() == 2 {
                    self.stats.split_elections += 1;
                }
            }
            if raft.role() != Role::Leader {
                continue;
            }
            let term = raft.term();
            match self.leaders_by_term.get(&term) {
                Some(other) if *other != id => {
                    self.violations
                        .push(format!("election safety (Raft §5.2): nodes {other} and {id} both lead term {term}"));
                    return;
                }
                Some(_) => {}
                None => {
                    self.stats.leaders_elected += 1;
                    self.leaders_by_term.insert(term, id);
                }
            }
            if self.nodes[(id - 1) as usize].was_leader_in_term != Some(term) {
                // Leader completeness (Raft §5.4): a new leader holds every entry any
                // node has counted as committed.
                let from = raft.snapshot_index() + 1;
                for (&index, &entry_term) in self.committed.range(from..) {
                    if raft.log_term(index) != Some(entry_term) {
                        self.violations.push(format!(
                            "leader completeness (Raft §5.4.1): node {id}, leader of term {term}, lacks committed index {index} term {entry_term}"
                        ));
                        return;
                    }
                }
                self.nodes[(id - 1) as usize].was_leader_in_term = Some(term);
            }
        }
    }

    /// Records the entries node `id` counts as committed; two nodes that commit
    /// different entries at one index break state machine safety (Raft §5.4.3).
    fn record_committed(&mut self, id: NodeId) {
        let raft = self.nodes[(id - 1) as usize].replica.as_ref().expect("alive").raft();
        let recorded = &mut self.committed_recorded[(id - 1) as usize];
        let from = (*recorded).max(raft.snapshot_index()) + 1;
        let to = raft.commit_index();
        for index in from..=to {
            let term = raft.log_term(index).expect("committed entries above the snapshot are in the log");
            match self.committed.get(&index) {
                None => {
                    self.committed.insert(index, term);
                }
                Some(&other) if other != term => {
                    self.violations.push(format!(
                        "state machine safety (Raft §5.4.3): node {id} committed index {index} term {term} but another node committed term {other} there"
                    ));
                    return;
                }
                Some(_) => {}
            }
        }
        *recorded = (*recorded).max(to);
    }

    /// Raft §6: a node's configuration is the latest configuration entry in its log,
    /// committed or not, or its snapshot's when none lies above it (or the initial
    /// one when it has neither).
    fn check_configuration(&mut self, id: NodeId) {
        let raft = self.nodes[(id - 1) as usize].replica.as_ref().expect("alive").raft();
        let snapshot_index = raft.snapshot().map_or(0, |s| s.index);
        if snapshot_index != raft.snapshot_index() {
            self.violations.push(format!(
                "node {id}'s log starts after index {} but its snapshot is at {snapshot_index}",
                raft.snapshot_index()
            ));
            return;
        }
        let in_log = raft.entries_from(snapshot_index + 1).iter().rev().find_map(|e| match &e.payload {
            EntryPayload::Membership(m) => Some((e.index, m)),
            _ => None,
        });
        let initial = Membership::with_voters(1..=self.config.initial_voters);
        let (source, expected) = match (in_log, raft.snapshot()) {
            (Some((index, m)), _) => (format!("its log's entry {index}"), m),
            (None, Some(snapshot)) => (format!("its snapshot at {}", snapshot.index), &snapshot.membership),
            (None, None) => ("the initial one".to_string(), &initial),
        };
        if raft.membership() != expected {
            self.violations.push(format!(
                "configuration (Raft §6): node {id} uses {:?}, but the latest configuration is {source}, {expected:?}",
                raft.membership()
            ));
        }
    }

    fn check_liveness(&mut self) {
        let leaders: Vec<(NodeId, u64)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                n.replica.as_ref().filter(|r| r.raft().is_leader()).map(|r| (i as u64 + 1, r.raft().term()))
            })
            .collect();
        let Some(&(leader, _)) = leaders.iter().max_by_key(|(_, t)| *t) else {
            self.violations.push(format!("liveness: no leader {} ticks after healing", self.config.heal_ticks));
            return;
        };
        let leader_raft = self.nodes[(leader - 1) as usize].replica.as_ref().expect("alive").raft();
        let (last, commit) = (leader_raft.last_index(), leader_raft.commit_index());
        if commit != last {
            self.violations
                .push(format!("liveness: leader {leader} has committed {commit} of {last} entries after healing"));
        }
        if leader_raft.membership().is_joint() {
            // Raft §6: the leader leaves a committed joint configuration by itself.
            self.violations.push(format!(
                "liveness: leader {leader} is still in the joint configuration {:?} after healing",
                leader_raft.membership()
            ));
        }
        let leader_view = format!("{:?}", leader_raft);
        let members = leader_raft.membership().members();
        for (i, node) in self.nodes.iter().enumerate() {
            if !members.contains(&(i as u64 + 1)) {
                continue; // removed or never added: it need not follow
            }
            let applied = node.replica.as_ref().map_or(0, |r| r.applied_index());
            if applied != commit {
                let state = node.replica.as_ref().map(|r| format!("{:?}", r.raft())).unwrap_or_default();
                self.violations.push(format!("liveness: node {} applied {applied}, leader committed {commit}; node: {state}; leader: {leader_view}", i + 1));
            }
        }
        for client in &self.clients {
            if let Some(op) = &client.pending {
                if self.now - op.started > 4 * self.config.request_timeout_ticks * MAX_ATTEMPTS as u64 {
                    self.violations.push(format!(
                        "liveness: client {} has an op pending since tick {}",
                        client.process, op.started
                    ));
                }
            }
        }
    }

    // ---- clients ---------------------------------------------------------

    fn record(&mut self, process: u64, kind: &'static str, f: OpKind, key: usize, value: Value, error: Option<String>) {
        self.step_in_tick += 1;
        let key = if f.is_stream() { format!("s{key}") } else { format!("k{key}") };
        let f = match f {
            OpKind::Read | OpKind::ReadStream => "read",
            OpKind::Write => "write",
            OpKind::Cas => "cas",
            OpKind::Append => "append",
        };
        let index = self.history.len() as u64;
        self.history.push(HistoryEvent {
            index,
            time_ns: self.now * 1_000_000 + self.step_in_tick,
            process,
            kind,
            f,
            key: json!(key),
            value,
            error,
        });
    }

    fn run_clients(&mut self) {
        let generating = self.now + 100 < self.config.fault_ticks + self.config.heal_ticks;
        for c in 0..self.clients.len() {
            match &self.clients[c].pending {
                None if generating && self.rng.chance(1, 3) => self.invoke(c),
                None => {}
                Some(op) if op.deadline <= self.now && op.token == 0 => self.retry(c),
                Some(op) if op.deadline <= self.now => {
                    let (node, token, kind) = (op.node, op.token, op.kind);
                    if let Some(r) = self.node(node).replica.as_mut() {
                        r.cancel(token);
                    }
                    let op = self.clients[c].pending.as_mut().expect("pending");
                    if !kind.is_read() {
                        op.any_indefinite = true;
                    }
                    self.clients[c].leader_guess = None;
                    self.retry(c);
                }
                Some(_) => {}
            }
        }
    }

    fn invoke(&mut self, c: usize) {
        let kind = match self.rng.below(20) {
            0..=5 => OpKind::Read,
            6..=9 => OpKind::Write,
            10..=13 => OpKind::Cas,
            _ if self.config.n_streams == 0 => OpKind::Read,
            14..=17 => OpKind::Append,
            _ => OpKind::ReadStream,
        };
        let key = if kind.is_stream() {
            self.rng.below(self.config.n_streams as u64) as usize
        } else {
            self.rng.below(self.config.n_keys as u64) as usize
        };
        let value = match kind {
            OpKind::Read | OpKind::ReadStream => Value::Null,
            OpKind::Append => {
                self.next_value += 1;
                // Most appends are optimistic (they expect the last version seen): an
                // indefinite plain append may land anywhere, which makes the
                // linearizability search explode; one with a version has one place.
                let optimistic = self.rng.chance(self.config.optimistic_append_percent, 100);
                let expected = optimistic.then(|| self.stream_versions[key]);
                json!({"event": self.next_value, "expected_version": expected})
            }
            OpKind::Write => {
                self.next_value += 1;
                json!(self.next_value)
            }
            OpKind::Cas => {
                self.next_value += 1;
                // Compare against a recent value, so that some cas ops succeed.
                let from = self.next_value.saturating_sub(1 + self.rng.below(4));
                json!([from, self.next_value])
            }
        };
        let client = &mut self.clients[c];
        if !kind.is_read() {
            client.seq += 1;
        }
        let process = client.process;
        client.pending = Some(PendingOp {
            kind,
            key,
            value: value.clone(),
            seq: client.seq,
            token: 0,
            node: 0,
            deadline: 0,
            attempts: 0,
            any_indefinite: false,
            started: self.now,
        });
        self.record(process, "invoke", kind, key, value, None);
        self.attempt(c);
    }

    fn attempt(&mut self, c: usize) {
        let n = self.config.n_nodes;
        let node = match self.clients[c].leader_guess {
            Some(id) => id,
            None => 1 + self.rng.below(n),
        };
        let token = self.next_token;
        self.next_token += 1;
        let now = self.now;
        let timeout = self.config.request_timeout_ticks;
        let client = &mut self.clients[c];
        let op = client.pending.as_mut().expect("pending");
        op.attempts += 1;
        op.token = token;
        op.node = node;
        op.deadline = now + timeout;
        let key = format!("k{}", op.key);
        let stream = format!("s{}", op.key);
        let request = ClientRequest {
            client_id: client.client_id,
            seq: op.seq,
            op: match op.kind {
                OpKind::Read => Op::Read { key },
                OpKind::ReadStream => Op::ReadStream { stream, from_version: 0 },
                OpKind::Append => Op::Append {
                    stream,
                    event: op.value["event"].clone(),
                    expected_version: op.value["expected_version"].as_u64(),
                },
                OpKind::Write => Op::Write { key, value: op.value.clone() },
                OpKind::Cas => Op::Cas { key, from: op.value[0].clone(), to: op.value[1].clone() },
            },
        };
        let lost = self.faults_on && self.rng.chance(self.config.loss_percent, 100);
        if lost {
            return;
        }
        if let Some(replica) = self.nodes[(node - 1) as usize].replica.as_mut() {
            replica.client_request(token, request);
            let replies = replica.take_replies();
            for (token, reply) in replies {
                self.on_reply(token, reply);
            }
        }
    }

    fn retry(&mut self, c: usize) {
        let op = self.clients[c].pending.as_ref().expect("pending");
        if op.attempts >= MAX_ATTEMPTS
            || (!self.faults_on
                && self.now + self.config.request_timeout_ticks >= self.config.fault_ticks + self.config.heal_ticks)
        {
            self.give_up(c);
        } else {
            self.attempt(c);
        }
    }

    fn give_up(&mut self, c: usize) {
        let op = self.clients[c].pending.take().expect("pending");
        let process = self.clients[c].process;
        if !op.kind.is_read() && op.any_indefinite {
            self.stats.ops_info += 1;
            self.record(process, "info", op.kind, op.key, op.value, Some("timeout".into()));
            // The op may still be in flight: Jepsen gives the client a new process.
            self.clients[c].process = self.next_process;
            self.next_process += 1;
        } else {
            self.stats.ops_fail += 1;
            self.record(process, "fail", op.kind, op.key, op.value, Some("gave-up".into()));
        }
    }

    fn on_reply(&mut self, token: Token, reply: Result<Value, ReplyError>) {
        let Some(c) = self.clients.iter().position(|cl| cl.pending.as_ref().is_some_and(|op| op.token == token)) else {
            return;
        };
        if self.faults_on && self.rng.chance(self.config.loss_percent, 100) {
            return; // the reply is lost; the client times out
        }
        let process = self.clients[c].process;
        match reply {
            Ok(value) => {
                let op = self.clients[c].pending.take().expect("pending");
                self.clients[c].leader_guess = Some(op.node);
                match op.kind {
                    OpKind::Append => {
                        let version = value.as_u64().unwrap_or(0);
                        self.stream_versions[op.key] = self.stream_versions[op.key].max(version);
                    }
                    OpKind::ReadStream => {
                        let len = value.as_array().map_or(0, |a| a.len() as u64);
                        self.stream_versions[op.key] = self.stream_versions[op.key].max(len);
                    }
                    _ => {}
                }
                let value = if op.kind.is_read() { value } else { op.value };
                self.stats.ops_ok += 1;
                self.record(process, "ok", op.kind, op.key, value, None);
            }
            Err(ReplyError::Op(e @ (OpError::CasMismatch { .. } | OpError::WrongExpectedVersion { .. }))) => {
                let op = self.clients[c].pending.take().expect("pending");
                self.stats.ops_fail += 1;
                if let OpError::WrongExpectedVersion { current } = e {
                    self.stream_versions[op.key] = self.stream_versions[op.key].max(current);
                }
                self.record(process, "fail", op.kind, op.key, op.value, Some(e.name().into()));
            }
            Err(ReplyError::Op(other)) => {
                let op = self.clients[c].pending.take().expect("pending");
                self.stats.ops_info += 1;
                self.record(process, "info", op.kind, op.key, op.value, Some(other.name().into()));
                self.clients[c].process = self.next_process;
                self.next_process += 1;
            }
            Err(error) => {
                let op = self.clients[c].pending.as_mut().expect("pending");
                if !error.is_definite() {
                    op.any_indefinite = true;
                }
                let hint = match error {
                    ReplyError::NotLeader { leader_hint } => leader_hint.filter(|h| *h != op.node),
                    _ => None,
                };
                if hint.is_none() {
                    // Back off a little: an election is probably under way.
                    op.token = 0;
                    op.deadline = self.now + 3;
                }
                self.clients[c].leader_guess = hint;
                if hint.is_some() {
                    self.retry(c);
                }
            }
        }
    }

    fn finish_pending_ops(&mut self) {
        for c in 0..self.clients.len() {
            if self.clients[c].pending.is_some() {
                let op = self.clients[c].pending.as_mut().expect("pending");
                if !op.kind.is_read() {
                    op.any_indefinite = true;
                }
                self.give_up(c);
            }
        }
    }
}
