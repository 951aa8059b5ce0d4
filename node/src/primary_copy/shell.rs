//! The IO shell of primary-copy mode: the same transport as Raft's shell (`crate::server`: one
//! port, length-prefixed frames, a JSON hello then bincode peer messages), the same write-ahead
//! log, and one event loop on its own thread over the closed `Event` set. Per batch: persist
//! (fsync) → send → reply, so a write is acknowledged only once it is on the primary's disk — and
//! on no other.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{PcConfig, PcEntry, PcMessage, PcPersisted, PcRole, PrimaryCopy};
use crate::protocol::{self, ErrorName, OpKind, Request, RequestBody, Response, ResponseResult};
use crate::raft::{Entry, EntryPayload, HardState, Membership, NodeId, Snapshot};
use crate::replica::{ClientRequest, Token};
use crate::server::{accept_loop, peer_sender, Event, NodeOptions, MAX_QUEUED_EVENTS, MAX_QUEUED_PEER_MESSAGES};
use crate::store::SessionLimits;
use crate::wal::Wal;

/// Runs a primary-copy node until `shutdown` resolves.
pub async fn run(options: NodeOptions, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let (wal, recovered) =
        Wal::open(&options.data_dir).with_context(|| format!("opening the log in {}", options.data_dir.display()))?;
    let persisted = PcPersisted {
        history: recovered.hard_state.term,
        state: recovered.snapshot.map(|s| (s.index, s.data)),
        entries: recovered
            .entries
            .into_iter()
            .filter_map(|e| match e.payload {
                EntryPayload::Command(data) => Some(PcEntry { index: e.index, data }),
                _ => None,
            })
            .collect(),
    };
    let nodes: Vec<NodeId> = options.peers.keys().copied().chain([options.id]).collect();
    let config = PcConfig {
        id: options.id,
        nodes,
        election_timeout_ticks: options.election_timeout_ticks,
        heartbeat_interval_ticks: options.heartbeat_interval_ticks,
        session_limits: SessionLimits::default(),
    };
    let core = PrimaryCopy::new(config, persisted, rand::random()).context("restoring the saved state")?;
    info!(id = options.id, last_index = core.last_index(), "recovered (primary-copy)");

    let listener = TcpListener::bind(options.listen).await.with_context(|| format!("binding {}", options.listen))?;
    info!(id = options.id, listen = %options.listen, "listening (primary-copy: a baseline that loses writes)");
    let (events_tx, events_rx) = std::sync::mpsc::sync_channel::<Event<PcMessage>>(MAX_QUEUED_EVENTS);
    let mut peers = BTreeMap::new();
    for (&peer, addr) in &options.peers {
        let (tx, rx) = mpsc::channel(MAX_QUEUED_PEER_MESSAGES);
        tokio::spawn(peer_sender(options.id, peer, addr.clone(), rx, Arc::new(AtomicU64::new(0))));
        peers.insert(peer, tx);
    }
    let acceptor = tokio::spawn(accept_loop(listener, events_tx.clone()));
    let mut event_loop = PcLoop {
        core,
        wal,
        options: options.clone(),
        peers,
        waiting: HashMap::new(),
        next_token: 1,
        since_snapshot: 0,
        logged_view: (PcRole::Backup, None, 0),
    };
    event_loop.wal.fsync = !options.bugs.has(crate::bugs::Bug::NoFsync);
    crate::server::run_loop_until_shutdown(
        "primary-copy-loop",
        move || event_loop.run(events_rx),
        events_tx,
        shutdown,
        acceptor,
    )
    .await
}

struct PcLoop {
    core: PrimaryCopy,
    wal: Wal,
    options: NodeOptions,
    peers: BTreeMap<NodeId, mpsc::Sender<PcMessage>>,
    /// Replies are produced in the batch that took the request; this only bridges to the persist.
    waiting: HashMap<Token, (mpsc::UnboundedSender<Response>, u64, OpKind)>,
    next_token: Token,
    since_snapshot: u64,
    logged_view: (PcRole, Option<NodeId>, u64),
}

impl PcLoop {
    fn run(&mut self, events: Receiver<Event<PcMessage>>) -> anyhow::Result<()> {
        let mut next_tick = Instant::now() + self.options.tick;
        loop {
            let first = events.recv_timeout(next_tick.saturating_duration_since(Instant::now()));
            let now = Instant::now();
            // Ticks missed while stalled (SIGSTOP, a long fsync) are caught up, bounded.
            for _ in 0..1000 {
                if now < next_tick {
                    break;
                }
                self.core.tick();
                next_tick += self.options.tick;
            }
            if now >= next_tick {
                next_tick = now + self.options.tick;
            }
            let mut shutting_down = false;
            match first {
                Ok(event) => shutting_down |= self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => shutting_down = true,
            }
            for _ in 0..MAX_QUEUED_EVENTS {
                match events.try_recv() {
                    Ok(event) => shutting_down |= self.handle(event),
                    Err(_) => break,
                }
            }
            self.process_ready()?;
            let view = (self.core.role(), self.core.primary(), self.core.history());
            if view != self.logged_view {
                info!(role = ?view.0, primary = ?view.1, history = format!("{:016x}", view.2), last_index = self.core.last_index(), "view changed");
                self.logged_view = view;
            }
            if shutting_down {
                info!("event loop stopped");
                return Ok(());
            }
        }
    }

    fn handle(&mut self, event: Event<PcMessage>) -> bool {
        match event {
            Event::Peer(message) => self.core.step(message),
            Event::Client { request, reply } => self.client(request, reply),
            Event::Shutdown => return true,
        }
        false
    }

    fn client(&mut self, request: Request, reply: mpsc::UnboundedSender<Response>) {
        let id = request.id;
        let result = match request.body {
            RequestBody::Status => ResponseResult::Ok { value: self.status() },
            RequestBody::Digest => {
                let (first, hashes) = self.core.applied_hashes();
                ResponseResult::Ok {
                    value: json!({
                        "applied_index": self.core.last_index(),
                        "digest": format!("{:08x}", self.core.store().data_digest()),
                        "applied_hashes_first": first,
                        "applied_hashes": hashes,
                    }),
                }
            }
            body => {
                let kind = body.kind();
                let Some(op) = protocol::request_op(body) else {
                    let message = "membership changes and leader transfer are Raft's; primary-copy has none";
                    let _ = reply
                        .send(Response { id, result: ResponseResult::error(ErrorName::BadRequest, kind, message) });
                    return;
                };
                if kind == OpKind::Write && (request.client_id == 0 || request.seq == 0) {
                    let message = "writes need a non-zero client_id and seq";
                    let _ = reply
                        .send(Response { id, result: ResponseResult::error(ErrorName::BadRequest, kind, message) });
                    return;
                }
                let token = self.next_token;
                self.next_token += 1;
                self.waiting.insert(token, (reply, id, kind));
                self.core.client_request(token, ClientRequest { client_id: request.client_id, seq: request.seq, op });
                return;
            }
        };
        let _ = reply.send(Response { id, result });
    }

    fn status(&self) -> Value {
        let role = match self.core.role() {
            PcRole::Primary => "leader",
            PcRole::Backup => "follower",
            PcRole::Candidate => "candidate",
        };
        let primary = self.core.primary();
        json!({
            "id": self.options.id,
            "replication": "primary-copy",
            "role": role,
            "term": 0,
            "leader_id": primary,
            "leader_hint": primary.and_then(|p| self.address_of(p)),
            "commit_index": self.core.last_index(),
            "applied_index": self.core.last_index(),
            "last_index": self.core.last_index(),
            "history": format!("{:016x}", self.core.history()),
            "wal_syncs": self.wal.syncs,
        })
    }

    fn address_of(&self, node: NodeId) -> Option<String> {
        if node == self.options.id {
            return Some(self.options.advertise.clone());
        }
        self.options.peers.get(&node).cloned()
    }

    /// Persist (fsync) → send → reply.
    fn process_ready(&mut self) -> anyhow::Result<()> {
        let ready = self.core.take_ready();
        let hard_state = HardState { term: ready.history, vote: None, commit: 0 };
        let mut saved_up_to = 0;
        if let Some((index, history, data)) = ready.install {
            let snapshot = Snapshot { index, term: history, membership: Membership::default(), data };
            let hs = HardState { term: history, vote: None, commit: 0 };
            self.wal.save_snapshot(&snapshot, &hs, &[]).context("saving a copied state")?;
            saved_up_to = index;
            self.since_snapshot = 0;
        }
        let entries: Vec<Entry> = ready
            .entries
            .into_iter()
            .filter(|e| e.index > saved_up_to)
            .map(|e| Entry { term: ready.history, index: e.index, payload: EntryPayload::Command(e.data) })
            .collect();
        if !entries.is_empty() {
            self.since_snapshot += entries.len() as u64;
            self.wal.append(Some(&hard_state), &entries, true).context("appending to the write-ahead log")?;
        }
        if self.since_snapshot >= self.options.snapshot_every_entries {
            let index = self.core.last_index();
            let snapshot = Snapshot {
                index,
                term: ready.history,
                membership: Membership::default(),
                data: self.core.store().to_snapshot(),
            };
            self.wal.save_snapshot(&snapshot, &hard_state, &[]).context("saving a snapshot")?;
            self.since_snapshot = 0;
        }
        for message in ready.messages {
            if let Some(tx) = self.peers.get(&message.to) {
                if tx.try_send(message).is_err() {
                    warn!("peer queue full or closed; message dropped");
                }
            }
        }
        for (token, reply) in ready.replies {
            let Some((sender, id, kind)) = self.waiting.remove(&token) else { continue };
            let result = match reply {
                Ok(value) => ResponseResult::Ok { value },
                Err(error) => {
                    let leader_id = match &error {
                        crate::replica::ReplyError::NotLeader { leader_hint } => *leader_hint,
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
            };
            let _ = sender.send(Response { id, result });
        }
        Ok(())
    }
}
