//! Seeded simulation of primary-copy clusters (the style of `crate::sim`): cores stepped by a
//! deterministic network that delays and reorders, partitions that isolate the primary, and
//! clients appending unique events. It checks what the mode promises (without faults every
//! acknowledged append reaches every replica, and replicas converge) and what it does not (a
//! partition makes it lose acknowledged appends, which is why it is only a baseline).

use std::collections::BTreeSet;

use serde_json::json;

use super::*;
use crate::raft::rng::SplitMix64;
use crate::store::Op;

struct Sim {
    nodes: Vec<PrimaryCopy>,
    rng: SplitMix64,
    /// (deliver at tick, message)
    in_flight: Vec<(u64, PcMessage)>,
    /// Nodes cut off from every other node.
    isolated: BTreeSet<NodeId>,
    now: u64,
    acked: Vec<u64>,
    next_event: u64,
    /// What each node has on disk (what the shell would have persisted from its `Ready`s).
    disks: Vec<PcPersisted>,
    /// Crashed nodes: no ticks, messages to them are lost.
    down: BTreeSet<NodeId>,
    seed: u64,
}

impl Sim {
    fn new(n: u64, seed: u64) -> Sim {
        let ids: Vec<NodeId> = (1..=n).collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                let config = PcConfig {
                    id,
                    nodes: ids.clone(),
                    election_timeout_ticks: 30,
                    heartbeat_interval_ticks: 5,
                    session_limits: SessionLimits::default(),
                };
                PrimaryCopy::new(config, PcPersisted::default(), seed.wrapping_mul(31).wrapping_add(id)).unwrap()
            })
            .collect();
        Sim {
            nodes,
            rng: SplitMix64::new(seed),
            in_flight: Vec::new(),
            isolated: BTreeSet::new(),
            now: 0,
            acked: Vec::new(),
            next_event: 1,
            disks: vec![PcPersisted::default(); n as usize],
            down: BTreeSet::new(),
            seed,
        }
    }

    /// SIGKILL: the node loses everything but its disk.
    fn crash(&mut self, i: usize) {
        self.down.insert(i as u64 + 1);
    }

    fn restart(&mut self, i: usize) {
        let id = i as u64 + 1;
        self.down.remove(&id);
        let ids: Vec<NodeId> = (1..=self.nodes.len() as u64).collect();
        let config = PcConfig {
            id,
            nodes: ids,
            election_timeout_ticks: 30,
            heartbeat_interval_ticks: 5,
            session_limits: SessionLimits::default(),
        };
        let seed = self.seed.wrapping_mul(977).wrapping_add(self.now);
        self.nodes[i] = PrimaryCopy::new(config, self.disks[i].clone(), seed).unwrap();
    }

    fn cut(&self, a: NodeId, b: NodeId) -> bool {
        self.isolated.contains(&a) != self.isolated.contains(&b)
    }

    fn collect(&mut self, i: usize) {
        let ready = self.nodes[i].take_ready();
        let disk = &mut self.disks[i];
        if let Some((index, history, data)) = &ready.install {
            *disk = PcPersisted { history: *history, state: Some((*index, data.clone())), entries: Vec::new() };
        }
        let saved = disk.state.as_ref().map_or(0, |(index, _)| *index);
        disk.entries.extend(ready.entries.iter().filter(|e| e.index > saved).cloned());
        disk.history = ready.history;
        for message in ready.messages {
            let delay = 1 + self.rng.below(3);
            self.in_flight.push((self.now + delay, message));
        }
        for (token, reply) in ready.replies {
            if reply.is_ok() {
                self.acked.push(token);
            }
        }
    }

    /// One tick: deliver what is due, tick every node, and let the primary (if the client can
    /// reach one) take an append.
    fn step(&mut self) {
        self.now += 1;
        let due: Vec<PcMessage> = {
            let (due, later): (Vec<_>, Vec<_>) = self.in_flight.drain(..).partition(|(at, _)| *at <= self.now);
            self.in_flight = later;
            due.into_iter().map(|(_, m)| m).collect()
        };
        for message in due {
            if self.cut(message.from, message.to) || self.down.contains(&message.to) {
                continue;
            }
            let to = (message.to - 1) as usize;
            self.nodes[to].step(message);
            self.collect(to);
        }
        for i in 0..self.nodes.len() {
            if !self.down.contains(&(i as u64 + 1)) {
                self.nodes[i].tick();
                self.collect(i);
            }
        }
        // The client reaches every node (a partition between nodes, not from clients).
        let primaries: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].role() == PcRole::Primary && !self.down.contains(&(i as u64 + 1)))
            .collect();
        if let Some(&i) = primaries.get(self.rng.below(primaries.len().max(1) as u64) as usize) {
            let event = self.next_event;
            self.next_event += 1;
            let op = Op::Append { stream: "s".into(), event: json!(event), expected_version: None };
            self.nodes[i].client_request(event, ClientRequest { client_id: event, seq: 1, op });
            self.collect(i);
        }
    }

    fn stream(&self, i: usize) -> Vec<u64> {
        let read = Op::ReadStream { stream: "s".into(), from_version: 0 };
        let value = self.nodes[i].store().read(&read).unwrap();
        value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
    }

    /// A live primary, if any.
    fn primary(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.nodes[i].role() == PcRole::Primary && !self.down.contains(&(i as u64 + 1)))
    }

    /// Acknowledged appends missing from the final primary's stream.
    fn lost(&self) -> Vec<u64> {
        let Some(p) = self.primary() else { return self.acked.clone() };
        let have: BTreeSet<u64> = self.stream(p).into_iter().collect();
        self.acked.iter().copied().filter(|e| !have.contains(e)).collect()
    }

    fn settle(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.step();
        }
        // Stop the load and let replication finish.
        for _ in 0..200 {
            self.now += 1;
            let due: Vec<PcMessage> = {
                let (due, later): (Vec<_>, Vec<_>) = self.in_flight.drain(..).partition(|(at, _)| *at <= self.now);
                self.in_flight = later;
                due.into_iter().map(|(_, m)| m).collect()
            };
            for message in due {
                let to = (message.to - 1) as usize;
                self.nodes[to].step(message);
                self.collect(to);
            }
            for i in 0..self.nodes.len() {
                self.nodes[i].tick();
                self.collect(i);
            }
        }
    }
}

#[test]
fn without_faults_every_acknowledged_append_reaches_every_replica() {
    for seed in 0..20 {
        let mut sim = Sim::new(3, seed);
        sim.settle(400);
        let primaries = (0..3).filter(|&i| sim.nodes[i].role() == PcRole::Primary).count();
        assert_eq!(primaries, 1, "seed {seed}: one primary");
        assert!(sim.acked.len() > 100, "seed {seed}: the load ran ({} acked)", sim.acked.len());
        assert_eq!(sim.lost(), Vec::<u64>::new(), "seed {seed}");
        let first = sim.stream(0);
        for i in 1..3 {
            assert_eq!(sim.stream(i), first, "seed {seed}: replica n{} converged", i + 1);
        }
    }
}

/// The point of the baseline: isolate the primary, let the others elect their own and both take
/// writes, heal. The primary with the shorter log gives way and its acknowledged appends are gone.
#[test]
fn isolating_the_primary_loses_acknowledged_appends() {
    let mut seeds_with_loss = 0;
    for seed in 0..10 {
        let mut sim = Sim::new(3, seed);
        sim.settle(0);
        for _ in 0..100 {
            sim.step();
        }
        let old = sim.primary().expect("a primary after start") as u64 + 1;
        sim.isolated.insert(old);
        for _ in 0..150 {
            sim.step();
        }
        let primaries = (0..3).filter(|&i| sim.nodes[i].role() == PcRole::Primary).count();
        assert_eq!(primaries, 2, "seed {seed}: the isolated primary and a new one both accept writes");
        sim.isolated.clear();
        sim.settle(50);
        let lost = sim.lost();
        if !lost.is_empty() {
            seeds_with_loss += 1;
        }
        let first = sim.stream(0);
        for i in 1..3 {
            assert_eq!(sim.stream(i), first, "seed {seed}: replicas converge after the heal, loss and all");
        }
    }
    assert_eq!(seeds_with_loss, 10, "every seed loses acknowledged appends");
}

/// Mechanism 1 of docs/replication.md: what the primary acknowledged in its last heartbeat
/// interval is on its disk only. Kill it, let a backup take over and take writes, restart it: it
/// copies the new primary's state, and those acknowledged appends are gone everywhere.
#[test]
fn killing_the_primary_loses_what_it_had_not_shipped() {
    for seed in 0..10 {
        let mut sim = Sim::new(3, seed);
        for _ in 0..(100 + seed) {
            sim.step();
        }
        let old = sim.primary().expect("a primary after start");
        let on_its_disk = sim.disks[old].entries.len();
        sim.crash(old);
        // Until a backup has taken over and taken writes of its own (bounded).
        let mut ticks = 0;
        while sim.primary().is_none_or(|p| p == old) {
            sim.step();
            ticks += 1;
            assert!(ticks < 1_000, "seed {seed}: no backup took over within 1000 ticks");
        }
        for _ in 0..20 {
            sim.step();
        }
        sim.restart(old);
        sim.settle(50);
        let lost = sim.lost();
        assert!(!lost.is_empty(), "seed {seed}: the unshipped appends ({on_its_disk} entries on disk) were lost");
        let first = sim.stream(0);
        for i in 1..3 {
            assert_eq!(sim.stream(i), first, "seed {seed}: replicas converge");
        }
    }
}
