//! The IO shell around a [`Replica`]: TCP for peers and clients, the write-ahead
//! log, the clock.
//!
//! One event loop, on its own thread, owns the replica and the log and handles a
//! closed set of [`Event`]s. Per batch it does the IO in the fixed order persist
//! (fsync) → send → apply → reply. Events that arrive during an fsync are
//! handled together afterwards, so one fsync covers many client writes (group
//! commit). Network tasks run on tokio and only move frames.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::bugs::Bugs;
use crate::protocol::{
    self, ErrorName, FrameError, OpKind, PeerHello, Replication, Request, RequestBody, Response, ResponseResult,
};
use crate::raft::{HardState, Membership, Message, NodeId, Persisted, Role};
use crate::replica::{AdminError, ClientRequest, MembershipChange, Replica, ReplicaConfig, ReplyError, Token};
use crate::wal::Wal;

/// Everything `faultline-node` is started with.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub id: NodeId,
    pub listen: SocketAddr,
    /// The address clients should use for this node in leader hints (default: `listen`).
    pub advertise: String,
    /// Every other node: id -> address (clients and peers share the port).
    pub peers: BTreeMap<NodeId, String>,
    /// The initial voters; `None`: this node and every peer.
    pub voters: Option<Vec<NodeId>>,
    pub data_dir: PathBuf,
    pub bugs: Bugs,
    pub lease_reads: bool,
    pub tick: Duration,
    pub election_timeout_ticks: u64,
    pub heartbeat_interval_ticks: u64,
    /// How long a client request may wait inside the node before a `timeout` reply.
    pub request_timeout: Duration,
    pub snapshot_every_entries: u64,
    /// How the cluster replicates (`--replication`): Raft, or the primary-copy baseline.
    pub replication: Replication,
}

impl NodeOptions {
    pub fn new(id: NodeId, listen: SocketAddr, peers: BTreeMap<NodeId, String>, data_dir: PathBuf) -> NodeOptions {
        NodeOptions {
            id,
            listen,
            advertise: listen.to_string(),
            peers,
            voters: None,
            data_dir,
            bugs: Bugs::none(),
            lease_reads: false,
            tick: Duration::from_millis(10),
            election_timeout_ticks: 30,
            heartbeat_interval_ticks: 5,
            request_timeout: Duration::from_secs(5),
            snapshot_every_entries: 50_000,
            replication: Replication::Raft,
        }
    }
}

/// The closed set of things the event loop reacts to; `M` is the peer protocol's message (Raft's
/// [`Message`], or primary-copy's).
pub(crate) enum Event<M> {
    Peer(M),
    Client { request: Request, reply: mpsc::UnboundedSender<Response> },
    Shutdown,
}

/// Bound on events queued for the loop; past it, peer messages are dropped and clients told `overloaded`.
pub(crate) const MAX_QUEUED_EVENTS: usize = 65_536;
/// Bound on messages queued for one peer; past it, messages are dropped (Raft retries).
pub(crate) const MAX_QUEUED_PEER_MESSAGES: usize = 16_384;
pub(crate) const PEER_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const PEER_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const PEER_UNACKED_TIMEOUT: Duration = Duration::from_millis(1500);
const PEER_SILENCE_REDIAL: Duration = Duration::from_secs(1);
const PEER_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Kept short so that a healed partition reconnects within a fraction of an election timeout.
const PEER_BACKOFF_MAX: Duration = Duration::from_millis(200);

/// Runs a node until `shutdown` resolves (SIGTERM in the binary), then stops cleanly.
pub async fn run(options: NodeOptions, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    if options.replication == Replication::PrimaryCopy {
        return crate::primary_copy::shell::run(options, shutdown).await;
    }
    let (wal, recovered) =
        Wal::open(&options.data_dir).with_context(|| format!("opening the log in {}", options.data_dir.display()))?;
    if recovered.torn_tail_bytes > 0 {
        warn!(bytes = recovered.torn_tail_bytes, "cut a torn tail off the write-ahead log");
    }
    let voters: Vec<NodeId> = match &options.voters {
        Some(v) => v.clone(),
        None => options.peers.keys().copied().chain([options.id]).collect(),
    };
    let persisted = Persisted {
        hard_state: recovered.hard_state,
        snapshot: recovered.snapshot,
        initial_membership: Membership::with_voters(voters),
        entries: recovered.entries,
    };
    info!(
        id = options.id,
        term = persisted.hard_state.term,
        entries = persisted.entries.len(),
        snapshot = persisted.snapshot.as_ref().map_or(0, |s| s.index),
        "recovered"
    );
    let mut config = ReplicaConfig::new(options.id).with_bugs(options.bugs.clone());
    config.raft.election_timeout_ticks = options.election_timeout_ticks;
    config.raft.heartbeat_interval_ticks = options.heartbeat_interval_ticks;
    config.raft.lease_reads = options.lease_reads;
    config.snapshot_every_entries = options.snapshot_every_entries;
    let seed = rand::random::<u64>();
    let replica = Replica::new(config, persisted, seed).context("restoring the state machine from the snapshot")?;

    let listener = TcpListener::bind(options.listen).await.with_context(|| format!("binding {}", options.listen))?;
    info!(id = options.id, listen = %options.listen, bugs = ?options.bugs, "listening");
    let (events_tx, events_rx) = std::sync::mpsc::sync_channel::<Event<Message>>(MAX_QUEUED_EVENTS);

    let mut peer_senders = BTreeMap::new();
    let mut redials = BTreeMap::new();
    for (&peer, addr) in &options.peers {
        let (tx, rx) = mpsc::channel(MAX_QUEUED_PEER_MESSAGES);
        let redial = Arc::new(AtomicU64::new(0));
        tokio::spawn(peer_sender(options.id, peer, addr.clone(), rx, redial.clone()));
        redials.insert(peer, redial);
        peer_senders.insert(peer, tx);
    }
    let accept_events = events_tx.clone();
    let acceptor = tokio::spawn(accept_loop(listener, accept_events));

    let mut event_loop = EventLoop {
        replica,
        wal,
        options: options.clone(),
        peers: peer_senders,
        waiting: HashMap::new(),
        deadlines: BTreeSet::new(),
        next_token: 1,
        persisted_hard_state: recovered.hard_state,
        redials,
        last_heard: BTreeMap::new(),
        logged_view: (Role::Follower, 0, None),
        started_at: (Instant::now(), std::time::SystemTime::now()),
    };
    // Planted bug no-fsync: write, never make durable (what fsync costs can be measured with it too).
    event_loop.wal.fsync = !options.bugs.has(crate::bugs::Bug::NoFsync);
    run_loop_until_shutdown("raft-loop", move || event_loop.run(events_rx), events_tx, shutdown, acceptor).await
}

/// Runs a node's event loop on its own thread until `shutdown`, then tells it to stop, waits for
/// it and stops accepting connections: the one lifecycle of every replication mode's shell.
pub(crate) async fn run_loop_until_shutdown<M: Send + 'static>(
    thread_name: &str,
    event_loop: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
    events_tx: SyncSender<Event<M>>,
    shutdown: impl std::future::Future<Output = ()>,
    acceptor: tokio::task::JoinHandle<()>,
) -> anyhow::Result<()> {
    let loop_thread = std::thread::Builder::new()
        .name(thread_name.into())
        .spawn(event_loop)
        .context("spawning the event loop thread")?;
    shutdown.await;
    info!("shutting down");
    let _ = events_tx.send(Event::Shutdown);
    let result = tokio::task::spawn_blocking(move || loop_thread.join()).await.context("joining the event loop")?;
    acceptor.abort();
    match result {
        Ok(outcome) => outcome,
        Err(_) => anyhow::bail!("the event loop panicked"),
    }
}

struct Waiting {
    reply: mpsc::UnboundedSender<Response>,
    request_id: u64,
    is_read: bool,
    deadline: Instant,
}

impl Waiting {
    fn kind(&self) -> OpKind {
        if self.is_read {
            OpKind::Read
        } else {
            OpKind::Write
        }
    }
}

struct EventLoop {
    replica: Replica,
    wal: Wal,
    options: NodeOptions,
    peers: BTreeMap<NodeId, mpsc::Sender<Message>>,
    waiting: HashMap<Token, Waiting>,
    deadlines: BTreeSet<(Instant, Token)>,
    next_token: Token,
    persisted_hard_state: HardState,
    /// Bumped to make a peer's sender drop its connection and dial again.
    redials: BTreeMap<NodeId, Arc<AtomicU64>>,
    /// When we last heard from each peer, and when we last asked for a redial.
    last_heard: BTreeMap<NodeId, (Instant, Instant)>,
    /// Role, term and leader last logged, to log changes only.
    logged_view: (Role, u64, Option<NodeId>),
    /// When the loop started, by both clocks (for the planted bug `lease-trusts-clock`).
    started_at: (Instant, std::time::SystemTime),
}

impl EventLoop {
    fn run(&mut self, events: Receiver<Event<Message>>) -> anyhow::Result<()> {
        let mut next_tick = Instant::now() + self.options.tick;
        loop {
            let wait = next_tick.saturating_duration_since(self.tick_clock(Instant::now()));
            let first = events.recv_timeout(wait);
            // Time first: requests that waited while this thread was stalled (a
            // long fsync, SIGSTOP) are judged with the clock caught up.
            self.catch_up_ticks(&mut next_tick);
            let mut shutting_down = false;
            match first {
                Ok(event) => shutting_down |= self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => shutting_down = true,
            }
            // Take everything that queued up meanwhile: one persist for all of it.
            for _ in 0..MAX_QUEUED_EVENTS {
                match events.try_recv() {
                    Ok(event) => shutting_down |= self.handle(event),
                    Err(_) => break,
                }
            }
            self.process_ready()?;
            self.log_view_change();
            if shutting_down {
                self.fail_all_waiting(ErrorName::ShuttingDown, "the node is shutting down");
                info!("event loop stopped");
                return Ok(());
            }
        }
    }

    fn log_view_change(&mut self) {
        let raft = self.replica.raft();
        let view = (raft.role(), raft.term(), raft.leader_id());
        if view != self.logged_view {
            info!(role = ?view.0, term = view.1, leader = ?view.2, commit = raft.commit_index(), "raft state changed");
            self.logged_view = view;
        }
    }

    /// The clock ticks are counted by: the monotonic one, or with the planted bug
    /// `lease-trusts-clock` the wall clock (as an instant: how far it moved since the start,
    /// never before the start), which a clock step moves back and forth.
    fn tick_clock(&self, monotonic_now: Instant) -> Instant {
        if !self.options.bugs.has(crate::bugs::Bug::LeaseTrustsClock) {
            return monotonic_now;
        }
        let (started, started_wall) = self.started_at;
        started + std::time::SystemTime::now().duration_since(started_wall).unwrap_or_default()
    }

    /// Delivers every tick that elapsed: a leader whose clock lagged real time
    /// would overestimate its lease.
    fn catch_up_ticks(&mut self, next_tick: &mut Instant) {
        let real_now = Instant::now();
        let now = self.tick_clock(real_now);
        if now < *next_tick {
            return;
        }
        let mut delivered = 0;
        // Past a few election timeouts every timer and lease has expired anyway;
        // more ticks after a long stop (SIGSTOP) would only flood peers with votes.
        let mut max_ticks = 3 * self.options.election_timeout_ticks;
        // Planted bug lease-trusts-clock: a timer by the wall clock that, after the clock jumped
        // ahead, fires once instead of catching up (the ticks a step back froze stay lost).
        let jumped = now.saturating_duration_since(*next_tick) > self.options.tick * max_ticks as u32 / 3;
        if jumped && self.options.bugs.has(crate::bugs::Bug::LeaseTrustsClock) {
            max_ticks = 1;
        }
        while now >= *next_tick && delivered < max_ticks {
            self.replica.tick();
            *next_tick += self.options.tick;
            delivered += 1;
        }
        if now >= *next_tick {
            *next_tick = now + self.options.tick;
        }
        self.expire(real_now);
        self.redial_silent_peers(real_now);
    }

    /// Returns true on shutdown.
    fn handle(&mut self, event: Event<Message>) -> bool {
        match event {
            Event::Peer(message) => {
                let now = Instant::now();
                self.last_heard.entry(message.from).and_modify(|(heard, _)| *heard = now).or_insert((now, now));
                if message.to == self.options.id {
                    self.replica.step(message);
                }
            }
            Event::Client { request, reply } => self.client(request, reply),
            Event::Shutdown => return true,
        }
        false
    }

    fn client(&mut self, request: Request, reply: mpsc::UnboundedSender<Response>) {
        let id = request.id;
        match request.body {
            RequestBody::Status => {
                let raft = self.replica.raft();
                let role = match raft.role() {
                    Role::Leader => "leader",
                    Role::Candidate => "candidate",
                    Role::PreCandidate => "pre-candidate",
                    Role::Follower => "follower",
                };
                let leader = raft.leader_id();
                let value = json!({
                    "id": self.options.id,
                    "role": role,
                    "term": raft.term(),
                    "leader_id": leader,
                    "leader_hint": leader.and_then(|l| self.address_of(l)),
                    "commit_index": raft.commit_index(),
                    "applied_index": self.replica.applied_index(),
                    "last_index": raft.last_index(),
                    "snapshot_index": raft.snapshot_index(),
                    "voters": raft.membership().voters,
                    "bugs": self.options.bugs.iter().map(|b| b.name()).collect::<Vec<_>>(),
                    "wal_syncs": self.wal.syncs,
                    "election_elapsed_ticks": raft.election_timer().0,
                    "election_timeout_ticks": raft.election_timer().1,
                });
                let _ = reply.send(Response { id, result: ResponseResult::Ok { value } });
            }
            RequestBody::Digest => {
                let (first, hashes) = self.replica.applied_hashes();
                let value = json!({
                    "applied_index": self.replica.applied_index(),
                    "digest": format!("{:08x}", self.replica.store().data_digest()),
                    "applied_hashes_first": first,
                    "applied_hashes": hashes,
                });
                let _ = reply.send(Response { id, result: ResponseResult::Ok { value } });
            }
            RequestBody::AddLearner { node_id } => self.membership(id, MembershipChange::AddLearner(node_id), reply),
            RequestBody::Promote { node_id } => self.membership(id, MembershipChange::Promote(node_id), reply),
            RequestBody::RemoveNode { node_id } => self.membership(id, MembershipChange::Remove(node_id), reply),
            RequestBody::TransferLeader { node_id } => {
                let result = match self.replica.transfer_leadership(node_id) {
                    Ok(()) => ResponseResult::Ok { value: Value::Null },
                    Err(_) => {
                        let leader_hint = self.replica.raft().leader_id();
                        self.error_result(&ReplyError::NotLeader { leader_hint }, OpKind::Write)
                    }
                };
                let _ = reply.send(Response { id, result });
            }
            body => {
                let op = protocol::request_op(body).expect("data operations convert");
                let is_read = op.is_read();
                if !is_read && (request.client_id == 0 || request.seq == 0) {
                    let result = ResponseResult::error(
                        ErrorName::BadRequest,
                        OpKind::Write,
                        "writes need a non-zero client_id and seq",
                    );
                    let _ = reply.send(Response { id, result });
                    return;
                }
                let token = self.next_token;
                self.next_token += 1;
                let deadline = Instant::now() + self.options.request_timeout;
                self.waiting.insert(token, Waiting { reply, request_id: id, is_read, deadline });
                self.deadlines.insert((deadline, token));
                self.replica
                    .client_request(token, ClientRequest { client_id: request.client_id, seq: request.seq, op });
                self.deliver_replies();
            }
        }
    }

    fn membership(&mut self, id: u64, change: MembershipChange, reply: mpsc::UnboundedSender<Response>) {
        let result = match self.replica.change_membership(change) {
            Ok(index) => ResponseResult::Ok { value: json!({ "index": index }) },
            Err(AdminError::NotLeader { leader_hint }) => {
                self.error_result(&ReplyError::NotLeader { leader_hint }, OpKind::Write)
            }
            Err(e @ AdminError::ChangeInProgress) => {
                ResponseResult::error(ErrorName::ChangeInProgress, OpKind::Write, e.to_string())
            }
            Err(e @ AdminError::Invalid(_)) => {
                ResponseResult::error(ErrorName::BadRequest, OpKind::Write, e.to_string())
            }
        };
        let _ = reply.send(Response { id, result });
    }

    /// A connection that a partition left half-open can swallow messages for
    /// minutes while TCP backs off. Silence from a peer for PEER_SILENCE_REDIAL
    /// makes us redial it, so traffic resumes soon after a partition heals.
    fn redial_silent_peers(&mut self, now: Instant) {
        for (peer, redial) in &self.redials {
            let (heard, asked) = self.last_heard.entry(*peer).or_insert((now, now));
            if now.duration_since(*heard) > PEER_SILENCE_REDIAL && now.duration_since(*asked) > PEER_SILENCE_REDIAL {
                *asked = now;
                redial.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn address_of(&self, node: NodeId) -> Option<String> {
        if node == self.options.id {
            return Some(self.options.advertise.clone());
        }
        self.options.peers.get(&node).cloned()
    }

    fn error_result(&self, error: &ReplyError, kind: OpKind) -> ResponseResult {
        let leader_id = match error {
            ReplyError::NotLeader { leader_hint } => *leader_hint,
            _ => None,
        };
        ResponseResult::Error {
            error: error.error_name(),
            definite: protocol::classify(error.error_name(), kind).is_definite(),
            message: error.to_string(),
            leader_hint: leader_id.and_then(|l| self.address_of(l)),
            leader_id,
        }
    }

    fn deliver_replies(&mut self) {
        for (token, reply) in self.replica.take_replies() {
            let Some(waiting) = self.waiting.remove(&token) else {
                continue;
            };
            self.deadlines.remove(&(waiting.deadline, token));
            let result = match reply {
                Ok(value) => ResponseResult::Ok { value },
                Err(error) => self.error_result(&error, waiting.kind()),
            };
            let _ = waiting.reply.send(Response { id: waiting.request_id, result });
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, token)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            self.replica.cancel(token);
            if let Some(waiting) = self.waiting.remove(&token) {
                let result = ResponseResult::error(
                    ErrorName::Timeout,
                    waiting.kind(),
                    "no answer within the node's request timeout",
                );
                let _ = waiting.reply.send(Response { id: waiting.request_id, result });
            }
        }
    }

    fn fail_all_waiting(&mut self, error: ErrorName, message: &str) {
        for (_, waiting) in self.waiting.drain() {
            let result = ResponseResult::error(error, waiting.kind(), message);
            let _ = waiting.reply.send(Response { id: waiting.request_id, result });
        }
        self.deadlines.clear();
    }

    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            let Some(tx) = self.peers.get(&message.to) else {
                debug!(to = message.to, "message to an unknown peer dropped");
                continue;
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(message) {
                debug!("peer queue full; message dropped");
            }
        }
    }

    /// Persist (fsync) → send → apply → reply, for every pending batch. A
    /// leader whose term and vote are durable sends first (`send_before_persist`).
    fn process_ready(&mut self) -> anyhow::Result<()> {
        for _ in 0..64 {
            let Some(mut ready) = self.replica.ready() else { break };
            if ready.send_before_persist {
                self.send(std::mem::take(&mut ready.messages));
            }
            if let Some(snapshot) = &ready.snapshot {
                let hs = ready.hard_state.unwrap_or(self.persisted_hard_state);
                self.wal.save_snapshot(snapshot, &hs, &[]).context("installing a snapshot from the leader")?;
            }
            let vote_changed = ready
                .hard_state
                .is_some_and(|h| h.term != self.persisted_hard_state.term || h.vote != self.persisted_hard_state.vote);
            let must_sync = vote_changed || !ready.entries.is_empty();
            self.wal
                .append(ready.hard_state.as_ref(), &ready.entries, must_sync)
                .context("appending to the write-ahead log")?;
            if let Some(hs) = ready.hard_state {
                self.persisted_hard_state = hs;
            }
            self.send(std::mem::take(&mut ready.messages));
            let advanced = self.replica.advance(ready);
            if let Some(snapshot) = advanced.new_snapshot {
                // Only what is already durable: an entry proposed during advance
                // goes to the log with the next ready.
                let raft = self.replica.raft();
                let after: Vec<_> = raft
                    .entries_from(snapshot.index + 1)
                    .iter()
                    .take_while(|e| e.index <= raft.persisted_index())
                    .cloned()
                    .collect();
                self.wal.save_snapshot(&snapshot, &self.persisted_hard_state, &after).context("saving a snapshot")?;
                debug!(index = snapshot.index, "snapshot saved, log compacted");
            }
            self.deliver_replies();
        }
        Ok(())
    }
}

pub(crate) async fn accept_loop<M: DeserializeOwned + Send + 'static>(
    listener: TcpListener,
    events: SyncSender<Event<M>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer_addr)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, peer_addr, events.clone()));
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Tells peers from clients by the first frame, then serves either.
async fn connection<M: DeserializeOwned + Send + 'static>(
    stream: TcpStream,
    remote: SocketAddr,
    events: SyncSender<Event<M>>,
) {
    let (mut reader, writer) = stream.into_split();
    let first = match protocol::read_frame(&mut reader, protocol::MAX_CLIENT_FRAME_BYTES).await {
        Ok(frame) => frame,
        Err(e) => {
            debug!(%remote, error = %e, "connection closed before its first frame");
            return close_with_error(writer, 0, &e.to_string()).await;
        }
    };
    if let Ok(hello) = serde_json::from_slice::<PeerHello>(&first) {
        debug!(%remote, peer = hello.peer_hello, "peer connected");
        return peer_receiver(reader, events).await;
    }
    let (reply_tx, reply_rx) = mpsc::unbounded_channel::<Response>();
    let writer_task = tokio::spawn(client_writer(writer, reply_rx));
    let mut frame = first;
    loop {
        let request: Request = match serde_json::from_slice(&frame) {
            Ok(r) => r,
            Err(e) => {
                debug!(%remote, error = %e, "malformed client frame; closing");
                let _ = reply_tx.send(bad_request(0, &format!("malformed request: {e}")));
                break;
            }
        };
        let id = request.id;
        let request_kind = request.body.kind();
        match events.try_send(Event::Client { request, reply: reply_tx.clone() }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let result = ResponseResult::error(ErrorName::Overloaded, request_kind, "the node's queue is full");
                let _ = reply_tx.send(Response { id, result });
            }
            Err(TrySendError::Disconnected(_)) => break,
        }
        frame = match protocol::read_frame(&mut reader, protocol::MAX_CLIENT_FRAME_BYTES).await {
            Ok(f) => f,
            Err(FrameError::Closed) => break,
            Err(e) => {
                debug!(%remote, error = %e, "bad client frame; closing");
                let _ = reply_tx.send(bad_request(0, &e.to_string()));
                break;
            }
        };
    }
    drop(reply_tx);
    // Let the writer flush what is queued (including the final error), bounded in time.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer_task).await;
}

fn bad_request(id: u64, message: &str) -> Response {
    Response { id, result: ResponseResult::error(ErrorName::BadRequest, OpKind::Write, message) }
}

async fn close_with_error(mut writer: tokio::net::tcp::OwnedWriteHalf, id: u64, message: &str) {
    if let Ok(payload) = serde_json::to_vec(&bad_request(id, message)) {
        let _ = tokio::time::timeout(Duration::from_secs(1), protocol::write_frame(&mut writer, &payload)).await;
    }
    let _ = writer.shutdown().await;
}

/// Writes responses as they come, flushing when the queue is momentarily empty.
/// The task ends once every sender is gone, or the client stops reading for too long.
async fn client_writer(writer: tokio::net::tcp::OwnedWriteHalf, mut replies: mpsc::UnboundedReceiver<Response>) {
    let mut writer = BufWriter::new(writer);
    while let Some(response) = replies.recv().await {
        let mut batch = vec![response];
        while let Ok(more) = replies.try_recv() {
            batch.push(more);
            if batch.len() >= 1024 {
                break;
            }
        }
        let write = async {
            for response in &batch {
                let payload = serde_json::to_vec(response).expect("responses serialise");
                protocol::write_frame(&mut writer, &payload).await?;
            }
            writer.flush().await
        };
        match tokio::time::timeout(Duration::from_secs(10), write).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
    let _ = writer.shutdown().await;
}

async fn peer_receiver<M: DeserializeOwned>(mut reader: tokio::net::tcp::OwnedReadHalf, events: SyncSender<Event<M>>) {
    loop {
        let frame = match tokio::time::timeout(
            PEER_IDLE_TIMEOUT,
            protocol::read_frame(&mut reader, protocol::MAX_PEER_FRAME_BYTES),
        )
        .await
        {
            Ok(Ok(frame)) => frame,
            Ok(Err(e)) => {
                debug!(error = %e, "peer connection closed");
                return;
            }
            Err(_) => {
                debug!("peer connection idle; closing");
                return;
            }
        };
        let message: M = match bincode::deserialize(&frame) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "undecodable peer message; closing the connection");
                return;
            }
        };
        match events.try_send(Event::Peer(message)) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Owns the outbound connection to one peer: connects with bounded exponential
/// backoff, drops queued messages while the peer is unreachable (Raft resends),
/// and batches writes.
pub(crate) async fn peer_sender<M: Serialize + Send + 'static>(
    me: NodeId,
    peer: NodeId,
    addr: String,
    mut outbox: mpsc::Receiver<M>,
    redial: Arc<AtomicU64>,
) {
    let mut backoff = PEER_BACKOFF_MIN;
    let hello = serde_json::to_vec(&PeerHello { peer_hello: me }).expect("hello serialises");
    loop {
        let stream = match tokio::time::timeout(PEER_CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
            Ok(Ok(stream)) => stream,
            _ => {
                while outbox.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(PEER_BACKOFF_MAX);
                if outbox.is_closed() {
                    return;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Without this, a partition leaves data unacknowledged in the socket and TCP
        // backs off for minutes; with it the kernel drops the connection after
        // PEER_UNACKED_TIMEOUT and we redial within PEER_BACKOFF_MAX of the heal.
        let _ = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(PEER_UNACKED_TIMEOUT));
        backoff = PEER_BACKOFF_MIN;
        let generation = redial.load(Ordering::Relaxed);
        debug!(peer, %addr, "connected to peer");
        let mut writer = BufWriter::with_capacity(256 << 10, stream);
        if protocol::write_frame(&mut writer, &hello).await.is_err() {
            continue;
        }
        loop {
            let Some(first) = outbox.recv().await else {
                return;
            };
            if redial.load(Ordering::Relaxed) != generation {
                debug!(peer, "peer silent; redialling");
                break;
            }
            let write = async {
                let payload = bincode::serialize(&first).expect("messages serialise");
                protocol::write_frame(&mut writer, &payload).await?;
                for _ in 0..1024 {
                    let Ok(more) = outbox.try_recv() else { break };
                    let payload = bincode::serialize(&more).expect("messages serialise");
                    protocol::write_frame(&mut writer, &payload).await?;
                }
                writer.flush().await
            };
            match tokio::time::timeout(PEER_WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(peer, error = %e, "peer write failed; reconnecting");
                    break;
                }
                Err(_) => {
                    debug!(peer, "peer write timed out; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Parses `--peers id=addr,id=addr`.
pub fn parse_peers(text: &str) -> anyhow::Result<BTreeMap<NodeId, String>> {
    let mut peers = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').with_context(|| format!("peer {part:?} is not id=addr"))?;
        let id: NodeId = id.trim().parse().with_context(|| format!("peer id {id:?} is not a number"))?;
        anyhow::ensure!(id != 0, "node id 0 is reserved");
        anyhow::ensure!(peers.insert(id, addr.trim().to_string()).is_none(), "peer {id} listed twice");
    }
    Ok(peers)
}
