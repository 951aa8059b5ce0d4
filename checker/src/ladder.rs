//! How wrong a history is, when it is not linearizable: the rungs below linearizability for single
//! objects.
//!
//! - **Sequential consistency** (Lamport): some total order of the operations keeps each
//!   process's own order and the model, with real time ignored between processes. ZooKeeper
//!   promises this for reads served by followers; a history that is sequential but not
//!   linearizable has stale reads, not lost or invented writes. Checked by [`sequential`], a
//!   depth-first search over the processes' positions with memoisation, under the same budgets as
//!   the linearizability search (time, memory, cancellation: unknown when they run out).
//!   Sequential consistency is not compositional: per key, it says each object alone has such an
//!   order, which is what Jepsen's independent checker reports too.
//! - **Read staleness** (registers): a read of `v` that real time alone proves stale — some
//!   acknowledged write of another value began after every write of `v` had completed and
//!   completed before the read began, so no linearisation lets the read see `v`. For each such
//!   read: how long the value had surely been overwritten when the read began (ms), and how many
//!   such writes it missed (versions, a lower bound). [`staleness`] is pure and linear in the
//!   reads times the writes of one key.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Instant;

use crate::check::{OpSummary, Verdict};
use crate::model::{Model, Step};
use crate::search::{Budget, SearchVerdict};

/// What a register op does, for staleness: it sets the value, or it observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterView {
    Sets(u32),
    Observes(u32),
}

/// One op as the sequential-consistency search sees it, in the order of invocation.
#[derive(Debug, Clone)]
pub struct SeqOp<O> {
    pub op: O,
    pub process: u64,
    /// Surely happened (`ok`, or an observed compare failure); otherwise it may be left out.
    pub required: bool,
}

/// How often (in steps) the search looks at the clock and its memory.
const BUDGET_CHECK_STEPS: u64 = 4096;

/// Is there a total order of `ops` that keeps each process's order (the order of `ops`) and is
/// legal for `model` from `init`, leaving out only ops that are not required?
pub fn sequential<M: Model>(model: &M, init: M::State, ops: &[SeqOp<M::Op>], budget: &Budget<'_>) -> SearchVerdict {
    let mut process_ids: HashMap<u64, usize> = HashMap::new();
    let mut processes: Vec<Vec<u32>> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let next = processes.len();
        let p = *process_ids.entry(op.process).or_insert(next);
        if p == processes.len() {
            processes.push(Vec::new());
        }
        processes[p].push(i as u32);
    }
    // A process is done once every required op of it is placed.
    let required_end: Vec<u32> = processes
        .iter()
        .map(|list| list.iter().rposition(|&i| ops[i as usize].required).map_or(0, |at| at as u32 + 1))
        .collect();
    // Processes of one op each, with equal ops, are interchangeable (Jepsen retires a process
    // after each indefinite op, so histories have many): any order placing one of them can place
    // the first unplaced one of its class instead. So one may be placed only after the one before
    // it in its class, which keeps the placed ones a prefix of the class.
    let mut classes: HashMap<(&M::Op, bool), usize> = HashMap::new();
    let mut previous_in_class: Vec<Option<usize>> = vec![None; processes.len()];
    for (p, list) in processes.iter().enumerate() {
        if let [only] = list.as_slice() {
            let op = &ops[*only as usize];
            if let Some(before) = classes.insert((&op.op, op.required), p) {
                previous_in_class[p] = Some(before);
            }
        }
    }
    let mut search = SeqSearch {
        model,
        ops,
        processes: &processes,
        required_end: &required_end,
        states: Vec::new(),
        state_ids: HashMap::new(),
        transitions: hashbrown::HashMap::new(),
        visited: hashbrown::HashSet::new(),
        state_heap_bytes: 0,
        writable: hashbrown::HashSet::new(),
        wanted: Vec::new(),
    };
    let root_state = search.intern(init);
    let root = Frame { positions: vec![0u32; processes.len()].into_boxed_slice(), state: root_state, next_choice: 0 };
    let root = match search.settle(root) {
        Settled::Done => return SearchVerdict::Valid,
        Settled::Open(frame) => frame,
        // The root is the first configuration, so "seen" means dead.
        Settled::Seen => return SearchVerdict::Invalid,
    };
    let mut stack = vec![root];
    let mut steps = 0u64;
    loop {
        steps += 1;
        if steps.is_multiple_of(BUDGET_CHECK_STEPS) {
            if let Some(reason) = search.over_budget(budget, stack.len()) {
                return SearchVerdict::Unknown(reason);
            }
        }
        let Some(frame) = stack.last_mut() else {
            break;
        };
        // Each process offers two choices: place its next op, or (when it is optional) leave it out.
        let n_choices = 2 * processes.len();
        let mut child = None;
        while frame.next_choice < n_choices && child.is_none() {
            let choice = frame.next_choice;
            frame.next_choice += 1;
            let p = choice / 2;
            let position = frame.positions[p] as usize;
            let Some(&op_index) = processes[p].get(position) else {
                continue;
            };
            if previous_in_class[p].is_some_and(|before| frame.positions[before] == 0) {
                continue;
            }
            // Leaving out an optional op with nothing after it in its process is what the end of
            // the search does anyway (only required ops must be placed): no choice needed.
            let has_successor = position + 1 < processes[p].len();
            let next_state = if choice % 2 == 0 {
                search.step(frame.state, op_index)
            } else if has_successor
                && !ops[op_index as usize].required
                && search.step(frame.state, op_index) != Some(frame.state)
            {
                Some(frame.state)
            } else {
                // Leaving out a required op is not allowed; leaving out one that changes nothing
                // is the same as placing it, which the other choice did.
                None
            };
            if let Some(state) = next_state {
                let mut positions = frame.positions.clone();
                positions[p] += 1;
                child = Some(Frame { positions, state, next_choice: 0 });
            }
        }
        match child {
            None => {
                stack.pop();
            }
            Some(child) => match search.settle(child) {
                Settled::Done => return SearchVerdict::Valid,
                Settled::Open(frame) => stack.push(frame),
                Settled::Seen => {}
            },
        }
    }
    SearchVerdict::Invalid
}

struct Frame {
    /// Per process, how many of its ops are placed or left out.
    positions: Box<[u32]>,
    state: u32,
    next_choice: usize,
}

enum Settled {
    /// Every required op is placed: a sequential order exists.
    Done,
    /// Seen before: nothing new below it.
    Seen,
    Open(Frame),
}

struct SeqSearch<'a, M: Model> {
    model: &'a M,
    ops: &'a [SeqOp<M::Op>],
    processes: &'a [Vec<u32>],
    required_end: &'a [u32],
    states: Vec<M::State>,
    state_ids: HashMap<M::State, u32>,
    /// (state, op) -> next state, `u32::MAX` when illegal.
    transitions: hashbrown::HashMap<(u32, u32), u32>,
    visited: hashbrown::HashSet<(u32, Box<[u32]>)>,
    state_heap_bytes: u64,
    /// Scratch: values some unplaced op may still write.
    writable: hashbrown::HashSet<u32>,
    /// Scratch: the unplaced required read-only ops.
    wanted: Vec<u32>,
}

impl<M: Model> SeqSearch<'_, M> {
    fn intern(&mut self, state: M::State) -> u32 {
        if let Some(&id) = self.state_ids.get(&state) {
            return id;
        }
        let id = self.states.len() as u32;
        self.state_heap_bytes += 2 * self.model.heap_bytes(&state, None);
        self.state_ids.insert(state.clone(), id);
        self.states.push(state);
        id
    }

    fn step(&mut self, state: u32, op: u32) -> Option<u32> {
        if let Some(&next) = self.transitions.get(&(state, op)) {
            return (next != u32::MAX).then_some(next);
        }
        let current = &self.states[state as usize];
        let next = match self.model.step(current, &self.ops[op as usize].op) {
            Step::Illegal => None,
            Step::Unchanged => Some(state),
            Step::To(next) => Some(self.intern(next)),
        };
        self.transitions.insert((state, op), next.unwrap_or(u32::MAX));
        next
    }

    /// Places every read-only op that is legal at the head of its process (it can be moved to this
    /// point of any order that places it later: nothing of its process comes before it and it
    /// changes no state), then says whether the configuration is finished, seen, or open.
    fn settle(&mut self, mut frame: Frame) -> Settled {
        loop {
            let mut moved = false;
            for p in 0..self.processes.len() {
                while let Some(&op) = self.processes[p].get(frame.positions[p] as usize) {
                    if !self.model.is_read_only(&self.ops[op as usize].op) || self.step(frame.state, op).is_none() {
                        break;
                    }
                    frame.positions[p] += 1;
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        if frame.positions.iter().zip(self.required_end).all(|(at, end)| at >= end) {
            return Settled::Done;
        }
        if self.a_read_can_never_be_satisfied(&frame) {
            return Settled::Seen;
        }
        if !self.visited.insert((frame.state, frame.positions.clone())) {
            return Settled::Seen;
        }
        Settled::Open(frame)
    }

    /// Is the configuration dead because some unplaced required read can never be satisfied?
    /// - registers: the read observes a value the register does not hold and no unplaced op
    ///   writes that value any more;
    /// - when every unplaced op only grows the state or reads (sets, streams): the current state
    ///   cannot grow into what the read saw (`Model::may_grow_into`).
    ///
    /// No order of the rest satisfies such a read. A linear scan of the unplaced ops, much
    /// cheaper than the subtree below it.
    fn a_read_can_never_be_satisfied(&mut self, frame: &Frame) -> bool {
        self.writable.clear();
        // Scratch kept between calls: this runs once per configuration.
        let mut wanted = std::mem::take(&mut self.wanted);
        wanted.clear();
        let mut all_grow = true;
        for (p, list) in self.processes.iter().enumerate() {
            for &op in &list[frame.positions[p] as usize..] {
                let seq_op = &self.ops[op as usize];
                let read_only = self.model.is_read_only(&seq_op.op);
                all_grow &= read_only || self.model.only_grows(&seq_op.op);
                if read_only && seq_op.required {
                    wanted.push(op);
                }
                if let Some(RegisterView::Sets(v)) = self.model.register_view(&seq_op.op) {
                    self.writable.insert(v);
                }
            }
        }
        let state = frame.state;
        let dead = wanted.iter().any(|&op| {
            let never_written = match self.model.register_view(&self.ops[op as usize].op) {
                Some(RegisterView::Observes(v)) => !self.writable.contains(&v),
                _ => false,
            };
            let cannot_grow =
                all_grow && !self.model.may_grow_into(&self.states[state as usize], &self.ops[op as usize].op);
            (never_written || cannot_grow) && self.step(state, op).is_none()
        });
        self.wanted = wanted;
        dead
    }

    fn over_budget(&self, budget: &Budget<'_>, depth: usize) -> Option<String> {
        if budget.cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
            return Some("cancelled".into());
        }
        if budget.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some("time budget exhausted".into());
        }
        let per_positions = 4 * self.processes.len() as u64;
        let bytes = self.visited.capacity() as u64 * (per_positions + 32)
            + self.transitions.capacity() as u64 * 16
            + self.states.capacity() as u64 * (std::mem::size_of::<M::State>() as u64 * 2 + 16)
            + self.state_heap_bytes
            + depth as u64 * (per_positions + 32);
        (bytes > budget.memory_limit_bytes).then(|| "memory budget exhausted".into())
    }
}

/// One op of one key, for staleness.
#[derive(Debug, Clone, Copy)]
pub struct TimedOp {
    pub view: RegisterView,
    /// Its index among the paired ops (for reports).
    pub id: usize,
    pub call_position: u64,
    /// `None`: may never have happened, or not yet (info, pending).
    pub return_position: Option<u64>,
    pub call_time: u64,
    pub return_time: Option<u64>,
    /// Surely happened.
    pub required: bool,
}

/// A read that real time proves stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleRead {
    pub id: usize,
    /// How long its value had surely been overwritten when the read began, in nanoseconds (in
    /// the history's time unit).
    pub behind: u64,
    /// How many acknowledged writes of other values surely came between its value and the read.
    pub versions: usize,
}

/// The stale reads among `ops` (one key's ops), with `initial` the register's initial value.
pub fn staleness(initial: u32, ops: &[TimedOp]) -> (usize, Vec<StaleRead>) {
    // For each value: after which position every write of it had surely completed (`Before`
    // for the initial value, there before everything); `Unbounded` when some write of it may
    // still be running or never completed, so nothing is surely after it.
    #[derive(Clone, Copy)]
    enum Settled {
        BeforeEverything,
        At(u64),
        Unbounded,
    }
    let mut sources: HashMap<u32, Settled> = HashMap::new();
    for op in ops {
        if let RegisterView::Sets(v) = op.view {
            let entry = sources.entry(v).or_insert(Settled::BeforeEverything);
            *entry = match (*entry, op.return_position) {
                (Settled::BeforeEverything, Some(b)) => Settled::At(b),
                (Settled::At(a), Some(b)) => Settled::At(a.max(b)),
                _ => Settled::Unbounded,
            };
        }
    }
    let acknowledged: Vec<&TimedOp> =
        ops.iter().filter(|op| op.required && matches!(op.view, RegisterView::Sets(_))).collect();
    let mut reads = 0;
    let mut stale = Vec::new();
    for read in ops {
        let RegisterView::Observes(v) = read.view else {
            continue;
        };
        if !read.required {
            continue;
        }
        reads += 1;
        let settled = match sources.get(&v) {
            Some(&settled) => settled,
            None if v == initial => Settled::BeforeEverything,
            // A value nobody wrote: not staleness, some other anomaly.
            None => Settled::Unbounded,
        };
        let surely_after_every_source = |call: u64| match settled {
            Settled::BeforeEverything => true,
            Settled::At(at) => call > at,
            Settled::Unbounded => false,
        };
        let mut earliest_overwrite: Option<u64> = None;
        let mut versions = std::collections::HashSet::new();
        for write in &acknowledged {
            let (RegisterView::Sets(u), Some(ret)) = (write.view, write.return_position) else {
                continue;
            };
            if u != v && surely_after_every_source(write.call_position) && ret < read.call_position {
                versions.insert(u);
                let t = write.return_time.unwrap_or(write.call_time);
                earliest_overwrite = Some(earliest_overwrite.map_or(t, |e| e.min(t)));
            }
        }
        if let Some(t) = earliest_overwrite {
            stale.push(StaleRead { id: read.id, behind: read.call_time.saturating_sub(t), versions: versions.len() });
        }
    }
    (reads, stale)
}

/// The rungs below linearizability, as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ladder {
    /// The ladder in one line, for people ([`Ladder::text`]).
    pub summary: String,
    /// Sequential consistency of the keys that are not linearizable (or not decided).
    pub sequential: Rung,
    /// Stale reads; `None` when the model has no reads to measure (only registers are measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness: Option<Staleness>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rung {
    pub verdict: Verdict,
    /// "each key alone" or "the whole history" (`--no-partition`).
    pub scope: String,
    /// Keys (partitions) checked: those not shown linearizable.
    pub partitions_checked: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub elapsed_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Staleness {
    /// Acknowledged reads looked at.
    pub reads: usize,
    /// Reads that real time proves stale.
    pub stale_reads: usize,
    /// Whether the history's times are real (nanoseconds); when not, the `_ms` fields are 0.
    pub times_known: bool,
    pub worst_ms: f64,
    pub median_ms: f64,
    pub worst_versions: usize,
    pub median_versions: usize,
    /// The read that was furthest behind in time (in versions when times are not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_read: Option<OpSummary>,
}

impl Staleness {
    pub fn summarize(reads: usize, stale: &[StaleRead], times_known: bool, all_ops: &[OpSummary]) -> Staleness {
        let median = |mut values: Vec<u64>| -> u64 {
            values.sort_unstable();
            values.get(values.len().saturating_sub(1) / 2).copied().unwrap_or(0)
        };
        let ms = |ns: u64| if times_known { ns as f64 / 1e6 } else { 0.0 };
        let worst = if times_known {
            stale.iter().max_by_key(|s| (s.behind, s.versions))
        } else {
            stale.iter().max_by_key(|s| s.versions)
        };
        Staleness {
            reads,
            stale_reads: stale.len(),
            times_known,
            worst_ms: ms(stale.iter().map(|s| s.behind).max().unwrap_or(0)),
            median_ms: ms(median(stale.iter().map(|s| s.behind).collect())),
            worst_versions: stale.iter().map(|s| s.versions).max().unwrap_or(0),
            median_versions: median(stale.iter().map(|s| s.versions as u64).collect()) as usize,
            worst_read: worst.and_then(|s| all_ops.get(s.id).cloned()),
        }
    }
}

impl Ladder {
    pub fn new(sequential: Rung, staleness: Option<Staleness>) -> Ladder {
        let mut ladder = Ladder { summary: String::new(), sequential, staleness };
        ladder.summary = ladder.text();
        ladder
    }

    /// One line for people: "sequentially consistent (each key alone); 12 of 340 reads stale, ...".
    pub fn text(&self) -> String {
        let rung = &self.sequential;
        let mut text = match rung.verdict {
            Verdict::Valid => format!("not linearizable, but sequentially consistent ({})", rung.scope),
            Verdict::Invalid => format!("not even sequentially consistent ({})", rung.scope),
            Verdict::Unknown => format!(
                "sequential consistency not decided ({}: {})",
                rung.scope,
                rung.reason.as_deref().unwrap_or("budget exhausted")
            ),
        };
        if let Some(s) = &self.staleness {
            if s.stale_reads == 0 {
                text.push_str(&format!("; none of {} reads provably stale", s.reads));
            } else if s.times_known {
                text.push_str(&format!(
                    "; {} of {} reads stale, up to {} / {} behind (median {} / {})",
                    s.stale_reads,
                    s.reads,
                    human_ms(s.worst_ms),
                    versions(s.worst_versions),
                    human_ms(s.median_ms),
                    s.median_versions
                ));
            } else {
                text.push_str(&format!(
                    "; {} of {} reads stale, up to {} behind (median {}; the history has no times)",
                    s.stale_reads,
                    s.reads,
                    versions(s.worst_versions),
                    s.median_versions
                ));
            }
        }
        text
    }
}

fn versions(n: usize) -> String {
    if n == 1 {
        "1 version".to_string()
    } else {
        format!("{n} versions")
    }
}

fn human_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Register, RegisterOp};

    fn seq(ops: &[(u64, RegisterOp, bool)]) -> SearchVerdict {
        let model = Register { initial: 0, allow_cas: true };
        let ops: Vec<SeqOp<RegisterOp>> =
            ops.iter().map(|&(process, op, required)| SeqOp { op, process, required }).collect();
        sequential(&model, 0, &ops, &Budget::default())
    }

    use RegisterOp::{Read, Write};

    #[test]
    fn a_stale_read_is_sequential_when_its_process_allows_it() {
        // p1 writes 1 then 2; p2 reads 2 then 1: no order keeps p2's reads in order.
        assert_eq!(
            seq(&[(1, Write(1), true), (1, Write(2), true), (2, Read(2), true), (2, Read(1), true)]),
            SearchVerdict::Invalid
        );
        // p2 reads 1 then 2: fine, whatever real time said.
        assert_eq!(
            seq(&[(1, Write(1), true), (1, Write(2), true), (2, Read(1), true), (2, Read(2), true)]),
            SearchVerdict::Valid
        );
    }

    #[test]
    fn a_process_reads_its_own_writes() {
        // p1 writes 1 and then reads the initial value: its own order forbids that.
        assert_eq!(seq(&[(1, Write(1), true), (1, Read(0), true)]), SearchVerdict::Invalid);
    }

    #[test]
    fn optional_writes_may_be_left_out_or_placed() {
        assert_eq!(seq(&[(1, Write(5), false), (2, Read(0), true)]), SearchVerdict::Valid);
        assert_eq!(seq(&[(1, Write(5), false), (2, Read(5), true)]), SearchVerdict::Valid);
        assert_eq!(seq(&[(1, Write(5), true), (2, Read(0), true), (2, Read(5), true)]), SearchVerdict::Valid);
        assert_eq!(seq(&[(2, Read(6), true), (1, Write(5), false)]), SearchVerdict::Invalid);
    }

    fn timed(view: RegisterView, id: usize, call: u64, ret: Option<u64>) -> TimedOp {
        TimedOp {
            view,
            id,
            call_position: call,
            return_position: ret,
            call_time: call * 1_000_000,
            return_time: ret.map(|r| r * 1_000_000),
            required: ret.is_some(),
        }
    }

    use RegisterView::{Observes, Sets};

    #[test]
    fn a_read_after_two_completed_overwrites_is_two_versions_behind() {
        let ops = [
            timed(Sets(1), 0, 1, Some(2)),
            timed(Sets(2), 1, 3, Some(4)),
            timed(Sets(3), 2, 5, Some(6)),
            timed(Observes(1), 3, 10, Some(11)),
            // Concurrent with the write of 3: not provably stale.
            timed(Observes(2), 4, 5, Some(12)),
        ];
        let (reads, stale) = staleness(0, &ops);
        assert_eq!(reads, 2);
        assert_eq!(stale, vec![StaleRead { id: 3, behind: 6_000_000, versions: 2 }]);
    }

    #[test]
    fn nothing_is_stale_when_some_write_of_the_value_may_still_land() {
        let ops = [
            timed(Sets(1), 0, 1, None),
            timed(Sets(2), 1, 3, Some(4)),
            timed(Observes(1), 2, 10, Some(11)),
            // The initial value read after a completed write is stale.
            timed(Observes(0), 3, 12, Some(13)),
        ];
        let (_, stale) = staleness(0, &ops);
        assert_eq!(stale, vec![StaleRead { id: 3, behind: 8_000_000, versions: 1 }]);
    }
}
