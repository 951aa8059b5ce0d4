//! The nemesis: a seeded schedule of fault windows (pure, see `plan`), and an executor that applies
//! them to a cluster and records each start and stop in the history.
//!
//! **Invariant:** a fault's targets are recorded before the fault is applied, and its stop is
//! recorded only after it is fully healed, so the history's fault windows cover the real ones.
//! Every action is idempotent (healing twice, killing a dead node, resuming a running one).

pub mod figure8;
pub mod grudge;
pub mod restart_voter;
pub mod script;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use faultline_checker::history::FaultPhase;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::cluster::{node_name, Cluster, NodeId};
use crate::run_store::{HistoryLog, RunLog};
use crate::systems::Db;
use grudge::{Grudge, Loss, Shape};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Partition,
    Kill,
    Pause,
    Loss,
    /// Isolate the leader and pause it; resume it while still isolated, then heal. The old
    /// leader's timers were frozen, so after the resume it still believes it leads for up to an
    /// election timeout, while a new leader has committed writes: stale reads show up.
    IsolatedPause,
    /// Kill the targets and start them again at once (after a random downtime of at most
    /// `CRASH_MAX_DOWNTIME`): a crash-restart, as a power cut or an OOM kill followed by a
    /// supervisor restart. Unlike `kill`, which keeps nodes down for a whole window, crashes are
    /// instants, so they can land inside an election or between a write's commit and its reply.
    Crash,
    /// Raft paper Figure 8 as partitions timed by watching the cluster (see `figure8.rs`):
    /// exposes a leader that commits an earlier term's entry by counting replicas.
    Figure8,
    /// A scripted double vote (see `restart_voter.rs`): exposes a node that forgets its vote when
    /// it restarts. Needs 5 nodes.
    RestartVoter,
}

/// The longest a crashed node stays down before it is started again.
const CRASH_MAX_DOWNTIME: Duration = Duration::from_millis(200);

/// How long an isolated-pause victim runs resumed but still isolated before the heal.
const ISOLATED_RESUME_LINGER: Duration = Duration::from_secs(1);

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Partition => "partition",
            Family::Kill => "kill",
            Family::Pause => "pause",
            Family::Loss => "loss",
            Family::IsolatedPause => "isolated-pause",
            Family::Crash => "crash",
            Family::Figure8 => "figure-8",
            Family::RestartVoter => "restart-voter",
        }
    }

    pub fn parse(text: &str) -> Option<Family> {
        [
            Family::Partition,
            Family::Kill,
            Family::Pause,
            Family::Loss,
            Family::IsolatedPause,
            Family::Crash,
            Family::Figure8,
            Family::RestartVoter,
        ]
        .into_iter()
        .find(|f| f.name() == text)
    }
}

/// Which nodes a kill, pause or loss acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetSpec {
    One,
    Minority,
    Majority,
    All,
    Leader,
}

impl TargetSpec {
    pub fn name(self) -> &'static str {
        match self {
            TargetSpec::One => "one",
            TargetSpec::Minority => "minority",
            TargetSpec::Majority => "majority",
            TargetSpec::All => "all",
            TargetSpec::Leader => "leader",
        }
    }

    pub fn parse(text: &str) -> Option<TargetSpec> {
        [TargetSpec::One, TargetSpec::Minority, TargetSpec::Majority, TargetSpec::All, TargetSpec::Leader]
            .into_iter()
            .find(|t| t.name() == text)
    }
}

/// Resolves a target spec to concrete nodes. Pure: `leader` is looked up by the caller.
pub fn resolve_targets(spec: TargetSpec, nodes: &[NodeId], leader: Option<NodeId>, rng: &mut impl Rng) -> Vec<NodeId> {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let n = nodes.len();
    let count = match spec {
        TargetSpec::One => 1,
        // A random non-empty subset smaller than a majority (at least one node even for n <= 2).
        TargetSpec::Minority => rng.gen_range(1..=((n - 1) / 2).max(1)),
        TargetSpec::Majority => n / 2 + 1,
        TargetSpec::All => n,
        TargetSpec::Leader => {
            return vec![leader.unwrap_or(shuffled[0])];
        }
    };
    let mut targets: Vec<NodeId> = shuffled.into_iter().take(count.min(n)).collect();
    targets.sort();
    targets
}

/// One planned edge of a fault window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedEvent {
    pub at: Duration,
    pub family: Family,
    pub phase: FaultPhase,
}

/// A seeded schedule: each family runs its own cycle of `wait, fault, wait, ...`, every wait and
/// every fault lasting a random 0.5..1.5 x `interval`; so families overlap and mix. A crash is an
/// instant, not a window: its stop is planned 1 ms after its start (the executor restarts the node
/// within the start), so crashes come once per 0.5..1.5 x `interval`. Every window closes before
/// `duration`. Pure.
pub fn plan(seed: u64, families: &[Family], interval: Duration, duration: Duration) -> Vec<PlannedEvent> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events = Vec::new();
    let interval_ms = interval.as_millis().max(1) as u64;
    let duration_ms = duration.as_millis() as u64;
    let draw = |rng: &mut StdRng| rng.gen_range(interval_ms / 2..=interval_ms * 3 / 2).max(1);
    for family in families {
        let mut t = draw(&mut rng) / 2;
        loop {
            let start = t;
            let stop = if *family == Family::Crash { start + 1 } else { start + draw(&mut rng) };
            if stop >= duration_ms {
                break;
            }
            events.push(PlannedEvent { at: Duration::from_millis(start), family: *family, phase: FaultPhase::Start });
            events.push(PlannedEvent { at: Duration::from_millis(stop), family: *family, phase: FaultPhase::Stop });
            t = stop + draw(&mut rng);
        }
    }
    events.sort_by_key(|e| (e.at, e.family, e.phase == FaultPhase::Start));
    events
}

/// The families of the default nemesis (`--nemesis default`), one at a time in a seeded rotation
/// ([`plan_rotating`]): every partition shape (by `--partition-shapes`), kill, pause, crash,
/// isolated-pause, and the scripted Raft nemeses when the system reports its Raft state. No
/// per-bug tuning: together they found every planted bug of faultline-node in the tailored rows
/// of the bug matrix.
pub fn default_families(scripted: bool) -> Vec<Family> {
    let mut families = vec![Family::Partition, Family::IsolatedPause, Family::Kill, Family::Crash, Family::Pause];
    if scripted {
        families.extend([Family::Figure8, Family::RestartVoter]);
    }
    families
}

/// The default schedule: one fault window at a time, the families taken in a seeded random order
/// that is reshuffled after each round, so every family comes back every few windows and none
/// disturbs another's (a scripted nemesis needs the cluster otherwise healthy). A window lasts
/// `interval` on average (crashes are instants); the gap after it half that.
pub fn plan_rotating(seed: u64, families: &[Family], interval: Duration, duration: Duration) -> Vec<PlannedEvent> {
    use rand::seq::SliceRandom;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events = Vec::new();
    if families.is_empty() {
        return events;
    }
    let interval_ms = interval.as_millis().max(2) as u64;
    let duration_ms = duration.as_millis() as u64;
    let mut round: Vec<Family> = Vec::new();
    let mut t = rng.gen_range(interval_ms / 4..=interval_ms / 2);
    loop {
        if round.is_empty() {
            round = families.to_vec();
            round.shuffle(&mut rng);
        }
        let family = round.pop().expect("refilled above");
        let length = if family == Family::Crash { 1 } else { rng.gen_range(interval_ms / 2..=interval_ms * 3 / 2) };
        let (start, stop) = (t, t + length);
        if stop >= duration_ms {
            break;
        }
        events.push(PlannedEvent { at: Duration::from_millis(start), family, phase: FaultPhase::Start });
        events.push(PlannedEvent { at: Duration::from_millis(stop), family, phase: FaultPhase::Stop });
        t = stop + rng.gen_range(interval_ms / 4..=interval_ms * 3 / 4);
    }
    events
}

#[derive(Debug, Clone)]
pub struct NemesisOptions {
    pub targets: Vec<TargetSpec>,
    pub shapes: Vec<Shape>,
}

/// What is currently broken.
#[derive(Debug, Default)]
struct Active {
    partition: Option<(Shape, Grudge)>,
    loss: Option<Loss>,
    killed: BTreeSet<NodeId>,
    paused: BTreeSet<NodeId>,
    isolated_pause: Option<(NodeId, Grudge)>,
    /// Crashed and already restarted; kept until the crash's stop is recorded.
    crashed: BTreeSet<NodeId>,
    /// Each running script's current cut, and what its steps came to.
    scripts: BTreeMap<Family, (Grudge, Value)>,
}

pub struct Nemesis<'a> {
    cluster: &'a Cluster,
    db: &'a dyn Db,
    history: &'a HistoryLog,
    log: &'a RunLog,
    options: NemesisOptions,
    rng: Mutex<StdRng>,
    active: Mutex<Active>,
    unexpected_exits: Mutex<Vec<String>>,
    /// The rules last applied to each node, so that a change rewrites only the nodes it changes
    /// (a scripted step must take effect in milliseconds, and iptables-restore is slow).
    applied_rules: Mutex<BTreeMap<NodeId, Vec<String>>>,
}

/// How often the nemesis looks for nodes that died on their own.
const CRASH_CHECK_PERIOD: Duration = Duration::from_secs(1);

impl<'a> Nemesis<'a> {
    pub fn new(
        cluster: &'a Cluster,
        db: &'a dyn Db,
        history: &'a HistoryLog,
        log: &'a RunLog,
        options: NemesisOptions,
        seed: u64,
    ) -> Nemesis<'a> {
        Nemesis {
            cluster,
            db,
            history,
            log,
            options,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            active: Mutex::new(Active::default()),
            unexpected_exits: Mutex::new(Vec::new()),
            applied_rules: Mutex::new(BTreeMap::new()),
        }
    }

    /// A short description of the faults in force, for the progress line.
    pub fn describe_active(&self) -> String {
        let active = self.active.lock().unwrap();
        let mut parts = Vec::new();
        if let Some((shape, _)) = &active.partition {
            parts.push(format!("partition({})", shape.name()));
        }
        if active.loss.is_some() {
            parts.push("loss".to_string());
        }
        if let Some((node, _)) = &active.isolated_pause {
            parts.push(format!("isolated-pause({})", node_name(*node)));
        }
        if !active.killed.is_empty() {
            parts.push(format!("kill{:?}", active.killed));
        }
        if !active.paused.is_empty() {
            parts.push(format!("pause{:?}", active.paused));
        }
        for family in active.scripts.keys() {
            parts.push(family.name().to_string());
        }
        if !active.crashed.is_empty() {
            parts.push(format!("crash{:?}", active.crashed));
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(" ")
        }
    }

    /// Runs the plan from `run_start` until it ends or `stop` is set; then heals everything.
    /// Must be called on a thread inside the client namespace (for leader discovery).
    pub fn run(&self, events: &[PlannedEvent], run_start: Instant, stop: &AtomicBool) -> Result<()> {
        let result = self.run_events(events, run_start, stop);
        let healed = self.heal_all();
        result.and(healed)
    }

    fn run_events(&self, events: &[PlannedEvent], run_start: Instant, stop: &AtomicBool) -> Result<()> {
        let mut next_crash_check = Instant::now();
        let mut events = events.iter().peekable();
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            if Instant::now() >= next_crash_check {
                self.note_unexpected_exits();
                next_crash_check += CRASH_CHECK_PERIOD;
            }
            let now = run_start.elapsed();
            match events.peek() {
                Some(event) if now >= event.at => {
                    match event.phase {
                        FaultPhase::Start => self.start(event.family)?,
                        FaultPhase::Stop => self.stop(event.family)?,
                    }
                    events.next();
                }
                Some(event) => std::thread::sleep((event.at - now).min(Duration::from_millis(50))),
                // The plan is over; keep watching for crashes until the load ends.
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Logs nodes that died on their own; they stay down until the next restart or the final heal.
    fn note_unexpected_exits(&self) {
        for (node, status) in self.cluster.take_unexpected_exits() {
            self.log.log(format!("{} exited on its own: {status}", node_name(node)));
            self.unexpected_exits.lock().unwrap().push(format!("{}: {status}", node_name(node)));
        }
    }

    /// Every node exit the nemesis did not cause, as "nN: exit status".
    pub fn unexpected_exits(&self) -> Vec<String> {
        self.unexpected_exits.lock().unwrap().clone()
    }

    fn pick_targets(&self) -> (TargetSpec, Vec<NodeId>) {
        let spec = *self.options.targets.choose(&mut *self.rng.lock().unwrap()).unwrap_or(&TargetSpec::One);
        let leader = if spec == TargetSpec::Leader { self.db.leader(self.cluster) } else { None };
        let targets = resolve_targets(spec, &self.cluster.node_ids(), leader, &mut *self.rng.lock().unwrap());
        (spec, targets)
    }

    pub fn start(&self, family: Family) -> Result<()> {
        let nodes = self.cluster.node_ids();
        match family {
            Family::Partition => {
                let shape = *self.options.shapes.choose(&mut *self.rng.lock().unwrap()).unwrap_or(&Shape::RandomHalves);
                let leader = if shape == Shape::IsolateLeader { self.db.leader(self.cluster) } else { None };
                let grudge = grudge::build(shape, &nodes, leader, &mut *self.rng.lock().unwrap());
                let targets = names(grudge::grudge_nodes(&grudge));
                self.history.fault(
                    family.name(),
                    FaultPhase::Start,
                    targets,
                    Some(grudge::named_grudge(&grudge)),
                    Some(json!({"shape": shape.name(), "leader": leader.map(node_name)})),
                )?;
                self.log.log(format!("partition {} {:?}", shape.name(), grudge));
                self.active.lock().unwrap().partition = Some((shape, grudge));
                self.apply_rules()?;
            }
            Family::Loss => {
                let (spec, targets) = self.pick_targets();
                let rest: Vec<NodeId> = nodes.iter().copied().filter(|n| !targets.contains(n)).collect();
                // With every node targeted, lose packets among them all.
                let others = if rest.is_empty() { targets.clone() } else { rest };
                let probability = [0.1, 0.2, 0.3, 0.5][self.rng.lock().unwrap().gen_range(0..4)];
                let loss = grudge::loss_between(&targets, &others, probability);
                let detail = json!({"probability": probability, "peers": names(others.iter().copied())});
                self.record_targeted_start(family, spec, &targets, detail)?;
                self.active.lock().unwrap().loss = Some(loss);
                self.apply_rules()?;
            }
            Family::Kill => {
                let (spec, targets) = self.pick_targets();
                self.record_targeted_start(family, spec, &targets, json!({}))?;
                for node in &targets {
                    self.active.lock().unwrap().killed.insert(*node);
                    self.kill(*node)?;
                }
            }
            Family::Pause => {
                let (spec, targets) = self.pick_targets();
                self.record_targeted_start(family, spec, &targets, json!({}))?;
                for node in &targets {
                    self.active.lock().unwrap().paused.insert(*node);
                    self.db.pause(self.cluster, *node).with_context(|| format!("pausing {}", node_name(*node)))?;
                }
            }
            Family::Crash => {
                let (spec, targets) = self.pick_targets();
                let downtime = Duration::from_millis(
                    self.rng.lock().unwrap().gen_range(0..=CRASH_MAX_DOWNTIME.as_millis() as u64),
                );
                self.record_targeted_start(
                    family,
                    spec,
                    &targets,
                    json!({"downtime_ms": downtime.as_millis() as u64}),
                )?;
                for node in &targets {
                    self.kill(*node)?;
                }
                self.active.lock().unwrap().crashed.extend(targets.iter().copied());
                std::thread::sleep(downtime);
                for node in &targets {
                    self.restart(*node)?;
                }
            }
            Family::Figure8 | Family::RestartVoter => {
                self.history.fault(family.name(), FaultPhase::Start, names(nodes.iter().copied()), None, None)?;
                self.log.log(format!("{} started", family.name()));
                self.active.lock().unwrap().scripts.insert(family, (Grudge::new(), Value::Null));
                let script = Script { nemesis: self, family };
                let outcome = match family {
                    Family::Figure8 => figure8::run(&script)?,
                    _ => restart_voter::run(&script)?,
                };
                self.log.log(format!("{}: {outcome}", family.name()));
                if let Some((_, detail)) = self.active.lock().unwrap().scripts.get_mut(&family) {
                    *detail = outcome;
                }
            }
            Family::IsolatedPause => {
                let nodes = self.cluster.node_ids();
                let known_leader = self.db.leader(self.cluster);
                let leader = known_leader
                    .unwrap_or_else(|| *nodes.choose(&mut *self.rng.lock().unwrap()).expect("a cluster has nodes"));
                let cut = grudge::isolate(&nodes, leader);
                self.history.fault(
                    family.name(),
                    FaultPhase::Start,
                    vec![node_name(leader)],
                    Some(grudge::named_grudge(&cut)),
                    Some(json!({"shape": "isolate-leader", "paused": node_name(leader),
                                "leader_known": known_leader.is_some()})),
                )?;
                self.log.log(format!("isolated-pause {}", node_name(leader)));
                self.active.lock().unwrap().isolated_pause = Some((leader, cut));
                self.apply_rules()?;
                self.db.pause(self.cluster, leader).with_context(|| format!("pausing {}", node_name(leader)))?;
            }
        }
        Ok(())
    }

    pub fn stop(&self, family: Family) -> Result<()> {
        match family {
            Family::Figure8 | Family::RestartVoter => {
                let Some((_, detail)) = self.active.lock().unwrap().scripts.remove(&family) else {
                    return Ok(());
                };
                // Scripts thaw what they froze before they return (restart_voter::run), so
                // nothing is resumed here: that would also end a `pause` window early.
                self.apply_rules()?;
                let nodes = names(self.cluster.node_ids());
                self.history.fault(family.name(), FaultPhase::Stop, nodes, None, Some(detail))?;
                self.log.log(format!("{} healed", family.name()));
            }
            Family::Crash => {
                let crashed = std::mem::take(&mut self.active.lock().unwrap().crashed);
                if crashed.is_empty() {
                    return Ok(());
                }
                for node in &crashed {
                    self.restart(*node)?;
                }
                self.history.fault(family.name(), FaultPhase::Stop, names(crashed.iter().copied()), None, None)?;
            }
            Family::IsolatedPause => {
                let Some((node, _)) = self.active.lock().unwrap().isolated_pause.clone() else {
                    return Ok(());
                };
                self.db.resume(self.cluster, node).with_context(|| format!("resuming {}", node_name(node)))?;
                std::thread::sleep(ISOLATED_RESUME_LINGER);
                self.active.lock().unwrap().isolated_pause = None;
                self.apply_rules()?;
                self.history.fault(family.name(), FaultPhase::Stop, vec![node_name(node)], None, None)?;
                self.log.log(format!("isolated-pause of {} healed", node_name(node)));
            }
            Family::Partition => {
                let Some((_, grudge)) = self.active.lock().unwrap().partition.take() else {
                    return Ok(());
                };
                self.apply_rules()?;
                self.history.fault(
                    family.name(),
                    FaultPhase::Stop,
                    names(grudge::grudge_nodes(&grudge)),
                    None,
                    None,
                )?;
                self.log.log("partition healed");
            }
            Family::Loss => {
                let Some(loss) = self.active.lock().unwrap().loss.take() else {
                    return Ok(());
                };
                self.apply_rules()?;
                self.history.fault(family.name(), FaultPhase::Stop, names(loss.keys().copied()), None, None)?;
                self.log.log("loss healed");
            }
            Family::Kill => {
                let killed = std::mem::take(&mut self.active.lock().unwrap().killed);
                if killed.is_empty() {
                    return Ok(());
                }
                for node in &killed {
                    self.restart(*node)?;
                }
                self.history.fault(family.name(), FaultPhase::Stop, names(killed.iter().copied()), None, None)?;
                self.log.log(format!("restarted {killed:?}"));
            }
            Family::Pause => {
                let paused = std::mem::take(&mut self.active.lock().unwrap().paused);
                if paused.is_empty() {
                    return Ok(());
                }
                for node in &paused {
                    self.db.resume(self.cluster, *node).with_context(|| format!("resuming {}", node_name(*node)))?;
                }
                self.history.fault(family.name(), FaultPhase::Stop, names(paused.iter().copied()), None, None)?;
                self.log.log(format!("resumed {paused:?}"));
            }
        }
        Ok(())
    }

    /// Records the start of a fault on picked targets (before it acts on them), with `detail`
    /// (a JSON object) plus the target spec, and logs it.
    fn record_targeted_start(
        &self,
        family: Family,
        spec: TargetSpec,
        targets: &[NodeId],
        mut detail: Value,
    ) -> Result<()> {
        detail["targets"] = json!(spec.name());
        self.log.log(format!("{} {targets:?} {detail}", family.name()));
        self.history.fault(family.name(), FaultPhase::Start, names(targets.iter().copied()), None, Some(detail))
    }

    fn kill(&self, node: NodeId) -> Result<()> {
        self.db.kill(self.cluster, node).with_context(|| format!("killing {}", node_name(node)))
    }

    fn restart(&self, node: NodeId) -> Result<()> {
        if !self.cluster.node_running(node) {
            self.db.start(self.cluster, node).with_context(|| format!("restarting {}", node_name(node)))?;
        }
        Ok(())
    }

    /// Heals every fault: flushes every node's rules, resumes and restarts every node. Safe to
    /// call at any time and more than once.
    pub fn heal_all(&self) -> Result<()> {
        self.note_unexpected_exits();
        for family in [
            Family::RestartVoter,
            Family::Figure8,
            Family::IsolatedPause,
            Family::Partition,
            Family::Loss,
            Family::Pause,
            Family::Kill,
            Family::Crash,
        ] {
            self.stop(family)?;
        }
        // Belt and braces: whatever the bookkeeping says, leave no rule, no stopped or dead node.
        for node in self.cluster.node_ids() {
            self.cluster.set_fault_rules(node, &[])?;
            self.applied_rules.lock().unwrap().insert(node, Vec::new());
            self.db.resume(self.cluster, node)?;
            self.restart(node)?;
        }
        Ok(())
    }

    /// Rewrites every node's FAULTLINE chain from the active partition and loss.
    fn apply_rules(&self) -> Result<()> {
        let (grudge, loss) = {
            let active = self.active.lock().unwrap();
            let mut grudge = active.partition.as_ref().map(|(_, g)| g.clone()).unwrap_or_default();
            // Two partitions at once (a partition and an isolated pause) drop the union.
            let cuts =
                active.isolated_pause.iter().map(|(_, cut)| cut).chain(active.scripts.values().map(|(cut, _)| cut));
            for cut in cuts {
                for (node, dropped) in cut {
                    grudge.entry(*node).or_default().extend(dropped.iter().copied());
                }
            }
            (grudge, active.loss.clone().unwrap_or_default())
        };
        let cluster = self.cluster;
        let address = |n| if n == grudge::CLIENTS { cluster.client_address() } else { cluster.node_address(n) };
        let mut applied = self.applied_rules.lock().unwrap();
        let changed: Vec<(NodeId, Vec<String>)> = cluster
            .node_ids()
            .into_iter()
            .map(|node| (node, grudge::rules_for_node(node, &grudge, &loss, address)))
            .filter(|(node, rules)| applied.get(node) != Some(rules))
            .collect();
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = changed
                .iter()
                .map(|(node, rules)| scope.spawn(move || cluster.set_fault_rules(*node, rules)))
                .collect();
            for handle in handles {
                match handle.join() {
                    Ok(result) => result?,
                    Err(_) => bail!("a rule-setting thread panicked"),
                }
            }
            Ok(())
        })?;
        applied.extend(changed);
        Ok(())
    }
}

/// A scripted nemesis's view of the nemesis: its own cut slot, and the db's signals.
struct Script<'n, 'a> {
    nemesis: &'n Nemesis<'a>,
    family: Family,
}

impl script::Stage for Script<'_, '_> {
    fn cluster(&self) -> &Cluster {
        self.nemesis.cluster
    }
    fn db(&self) -> &dyn Db {
        self.nemesis.db
    }
    fn set_cut(&self, cut: Option<Grudge>) -> Result<()> {
        if let Some((current, _)) = self.nemesis.active.lock().unwrap().scripts.get_mut(&self.family) {
            *current = cut.unwrap_or_default();
        }
        self.nemesis.apply_rules()
    }
    fn note(&self, line: String) {
        self.nemesis.log.log(line);
    }
    fn freeze(&self, node: NodeId) -> Result<()> {
        self.nemesis.db.pause(self.nemesis.cluster, node).with_context(|| format!("pausing {}", node_name(node)))
    }
    fn thaw(&self, node: NodeId) -> Result<()> {
        self.nemesis.db.resume(self.nemesis.cluster, node).with_context(|| format!("resuming {}", node_name(node)))
    }
    fn crash_restart(&self, node: NodeId) -> Result<()> {
        self.nemesis.kill(node)?;
        self.nemesis.restart(node)
    }
}

fn names(nodes: impl IntoIterator<Item = NodeId>) -> Vec<String> {
    nodes.into_iter().map(node_name).collect()
}

/// Parses a comma-separated list with `parse`, naming the bad item and the valid ones.
pub fn parse_list<T>(text: &str, what: &str, valid: &[&str], parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
    let mut items = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match parse(item) {
            Some(value) => items.push(value),
            None => bail!("unknown {what} `{item}`; known: {}", valid.join(", ")),
        }
    }
    Ok(items)
}

/// The full schedule as data for test.json (`planned_schedule`), so `faultline test --replay` can
/// run the same fault edges at the same offsets.
pub fn schedule_to_json(events: &[PlannedEvent]) -> serde_json::Value {
    let edges: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            let phase = if e.phase == FaultPhase::Start { "start" } else { "stop" };
            serde_json::json!({"at_ms": e.at.as_millis() as u64, "family": e.family.name(), "phase": phase})
        })
        .collect();
    serde_json::Value::Array(edges)
}

/// Reads back what `schedule_to_json` wrote; None when any edge is malformed.
pub fn schedule_from_json(value: &serde_json::Value) -> Option<Vec<PlannedEvent>> {
    let mut events = Vec::new();
    for edge in value.as_array()? {
        let at = Duration::from_millis(edge.get("at_ms")?.as_u64()?);
        let family = Family::parse(edge.get("family")?.as_str()?)?;
        let phase = match edge.get("phase")?.as_str()? {
            "start" => FaultPhase::Start,
            "stop" => FaultPhase::Stop,
            _ => return None,
        };
        events.push(PlannedEvent { at, family, phase });
    }
    Some(events)
}

/// Counts of planned fault windows per family, for test.json and the summary.
pub fn plan_summary(events: &[PlannedEvent]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for event in events.iter().filter(|e| e.phase == FaultPhase::Start) {
        *counts.entry(event.family.name()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rotating_schedule_has_one_window_at_a_time_and_every_family_in_each_round() {
        let families = default_families(true);
        let events = plan_rotating(7, &families, Duration::from_secs(3), Duration::from_secs(60));
        assert_eq!(events, plan_rotating(7, &families, Duration::from_secs(3), Duration::from_secs(60)));
        // Windows never overlap: starts and stops alternate, in time order.
        for pair in events.chunks(2) {
            assert_eq!((pair[0].phase, pair[1].phase), (FaultPhase::Start, FaultPhase::Stop));
            assert_eq!(pair[0].family, pair[1].family);
        }
        assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(events.last().unwrap().at < Duration::from_secs(60));
        // Each full round of seven windows holds every family once.
        let starts: Vec<Family> = events.iter().step_by(2).map(|e| e.family).collect();
        assert!(starts.len() >= 14, "{} windows in 60 s", starts.len());
        for round in starts.chunks(families.len()).filter(|r| r.len() == families.len()) {
            let mut sorted = round.to_vec();
            sorted.sort();
            let mut all = families.clone();
            all.sort();
            assert_eq!(sorted, all);
        }
        assert!(!default_families(false).contains(&Family::Figure8));
    }

    #[test]
    fn a_schedule_survives_its_json_form() {
        let events = plan(
            9,
            &[Family::Partition, Family::IsolatedPause, Family::Kill],
            Duration::from_secs(2),
            Duration::from_secs(30),
        );
        assert!(!events.is_empty());
        assert_eq!(schedule_from_json(&schedule_to_json(&events)), Some(events));
    }

    #[test]
    fn the_plan_is_seeded_balanced_and_ends_in_time() {
        let families = [Family::Partition, Family::Kill, Family::Pause];
        let a = plan(9, &families, Duration::from_secs(10), Duration::from_secs(120));
        let b = plan(9, &families, Duration::from_secs(10), Duration::from_secs(120));
        assert_eq!(a, b);
        assert_ne!(a, plan(10, &families, Duration::from_secs(10), Duration::from_secs(120)));
        for family in families {
            let mine: Vec<&PlannedEvent> = a.iter().filter(|e| e.family == family).collect();
            assert!(mine.len() >= 4, "{family:?} fired only {} edges", mine.len());
            // Strictly alternating start/stop, each window closed before the end.
            for (i, event) in mine.iter().enumerate() {
                let expected = if i % 2 == 0 { FaultPhase::Start } else { FaultPhase::Stop };
                assert_eq!(event.phase, expected);
                assert!(event.at < Duration::from_secs(120));
            }
            assert_eq!(mine.len() % 2, 0);
        }
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn a_crash_is_an_instant_and_comes_about_once_per_interval() {
        let events = plan(3, &[Family::Crash, Family::Partition], Duration::from_secs(1), Duration::from_secs(60));
        let crashes: Vec<&PlannedEvent> = events.iter().filter(|e| e.family == Family::Crash).collect();
        for pair in crashes.chunks(2) {
            assert_eq!(pair[0].phase, FaultPhase::Start);
            assert_eq!(pair[1].phase, FaultPhase::Stop);
            assert_eq!(pair[1].at - pair[0].at, Duration::from_millis(1));
        }
        // A crash, then a wait of 0.5-1.5 s: 40-120 crashes in 60 s.
        let starts = crashes.len() / 2;
        assert!((40..=120).contains(&starts), "{starts} crashes");
        let partitions = plan_summary(&events)["partition"];
        assert!(partitions < starts, "partitions are windows, {partitions} of them");
    }

    #[test]
    fn a_short_run_gets_at_least_one_fault_with_a_short_interval() {
        let events = plan(1, &[Family::Kill], Duration::from_secs(2), Duration::from_secs(20));
        assert!(plan_summary(&events)["kill"] >= 2);
    }

    #[test]
    fn targets_have_the_promised_sizes() {
        let nodes = [1, 2, 3, 4, 5];
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..100 {
            assert_eq!(resolve_targets(TargetSpec::One, &nodes, None, &mut rng).len(), 1);
            let minority = resolve_targets(TargetSpec::Minority, &nodes, None, &mut rng);
            assert!((1..=2).contains(&minority.len()));
            assert_eq!(resolve_targets(TargetSpec::Majority, &nodes, None, &mut rng).len(), 3);
            assert_eq!(resolve_targets(TargetSpec::All, &nodes, None, &mut rng), nodes.to_vec());
            assert_eq!(resolve_targets(TargetSpec::Leader, &nodes, Some(4), &mut rng), vec![4]);
        }
    }

    #[test]
    fn lists_parse_and_reject_unknown_names() {
        let families = parse_list("partition, kill,pause", "nemesis", &[], Family::parse).unwrap();
        assert_eq!(families, vec![Family::Partition, Family::Kill, Family::Pause]);
        let error = parse_list("partition,flood", "nemesis", &["partition"], Family::parse).unwrap_err();
        assert!(error.to_string().contains("flood"));
    }
}
