//! The linearizability search: Wing & Gong's algorithm with Lowe's memoisation, as in porcupine,
//! over one partition.
//!
//! Calls and returns sit in a doubly linked list in real-time order. The search walks it: at a call
//! it tries to linearise that op now (if the model allows it and the configuration (set of
//! linearised ops, state) is new), lifting its call and return out of the list; at the return of an
//! op not yet linearised it backtracks. Ops that may never have happened (`info`, never completed)
//! have their return at the very end, so they may linearise anywhere after their call, and the
//! search succeeds as soon as every required op is linearised, with or without them.
//!
//! Speed comes from three things porcupine does not do: states are interned to `u32` so the visited
//! set compares integers and bit sets only; model transitions are memoised per (state, op); and the
//! bit set's hash is kept incrementally (Zobrist hashing), so a visit costs O(1) plus one compare of
//! the bit set on a hash hit.
//!
//! Why pruning never loses a linearisation (so `invalid` is never false). Call a configuration
//! good if some completion (a sequence of its unlinearised ops, respecting real time and the
//! model, that linearises every required op) exists, and let d(C) be the length of C's shortest
//! completion. Suppose the search ends `invalid` although the root is good: every configuration
//! it visited was expanded, so take the visited good C with the least d(C), and among those the
//! fewest linearised ops. Its first step towards a shortest completion leads to a child C1 with
//! d(C1) = d(C) - 1 that was not visited, so a rule pruned it, and each rule names a visited good
//! configuration that is smaller in (d, ops linearised), or another first step of a shortest
//! completion of C that is tried instead — a contradiction either way:
//! - seen already (`Visited`): C1 is covered by a visited configuration with the same state and
//!   required ops and fewer optional ops, which has every completion C1 has, so d is at most d(C1);
//! - a forced read: moving that read to the front of any completion of C keeps it a completion of
//!   the same length, so the forced child is a first step of a shortest one;
//! - growth pruning: the pruned configuration has no completion at all;
//! - an optional op that changes nothing: the completions after it are completions of C, shorter;
//! - identical optional ops: swapping the two in a completion gives one that uses the earlier
//!   first, of the same length (it is callable wherever the later one is);
//! - an overwrite right after an optional op of the same footprint: C's parent, which linearised
//!   that optional op, reaches C1's state with the overwrite alone, so d(parent) <= d(C) with
//!   fewer ops linearised;
//! - an op of another footprint than the first pending return's (one footprint at a time, below):
//!   C has a shortest completion whose first step is an op of that footprint, tried instead.
//!
//! One footprint at a time (a partial-order reduction, for models whose state is a product of
//! independent parts, like [`crate::model::Keyed`]'s keys; one footprint: no effect). Let x be the
//! unlinearised op whose return comes first, and f its footprint. A configuration branches on
//! ops of footprint f only: the walk skips the others' calls. Complete: x is required, so every
//! completion of C holds an op of f; let y be the first one. y was called before x returned
//! (else real time would put x before y), so it is callable now; and every op before y in the
//! completion is of another footprint and returns no earlier than x, so after y was called:
//! moving y to the front keeps real time, and keeps the model too, since ops of different
//! footprints neither see nor change each other's part. The result is a completion of the same
//! length. This is what lets a product of keys be searched like its keys one by one: every
//! branching is a choice the key that must move next would make in its own search (the same
//! callable ops: f's first return is x), instead of every interleaving with the other keys'
//! choices, and with backjumping (see `Conflicts`) a key found dead stops the search.

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::model::{Model, Step};

/// One operation of a partition, ready for the search.
#[derive(Debug, Clone)]
pub struct SearchOp<O> {
    pub op: O,
    /// Position of the invocation in the history (any increasing measure of real time).
    pub call: u64,
    /// Position of the completion; `None` for ops that may never have happened (open forever).
    pub ret: Option<u64>,
    /// Whether the op surely happened and must be linearised.
    pub required: bool,
}

/// Limits that turn an undecided search into `unknown`.
#[derive(Debug, Clone, Copy)]
pub struct Budget<'a> {
    pub deadline: Option<Instant>,
    pub memory_limit_bytes: u64,
    /// Set by someone else to stop the search (e.g. Ctrl-C, or the overall deadline).
    pub cancel: Option<&'a AtomicBool>,
    /// Give up (unknown, reason [`CONFIGURATION_BUDGET`]) after this many configurations, so a
    /// caller can interleave partitions with growing budgets.
    pub max_configurations: Option<u64>,
}

/// The reason given when `max_configurations` runs out.
pub const CONFIGURATION_BUDGET: &str = "configuration budget exhausted";

impl Default for Budget<'_> {
    fn default() -> Self {
        Budget { deadline: None, memory_limit_bytes: 2 << 30, cancel: None, max_configurations: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchVerdict {
    Valid,
    Invalid,
    Unknown(String),
}

/// The deepest point the search reached before it had to backtrack: the longest linearisable
/// prefix it found.
#[derive(Debug, Clone)]
pub struct Deepest<S> {
    /// Op indices in linearisation order.
    pub order: Vec<usize>,
    /// The model state after `order`.
    pub state: S,
    /// The op whose return was reached before it could be linearised.
    pub stuck_op: usize,
}

#[derive(Debug, Clone)]
pub struct SearchReport<S> {
    pub verdict: SearchVerdict,
    /// Distinct (linearised set, state) configurations visited.
    pub configurations: u64,
    /// Distinct model states seen.
    pub states: u64,
    pub deepest: Option<Deepest<S>>,
    /// With `watch`: the distinct states in which the search was stuck at that op's return.
    pub stuck_states: Vec<S>,
    /// A linearisation, when valid and asked for.
    pub linearization: Option<Vec<usize>>,
    /// When invalid and the failure was traced to one footprint (see `Conflicts`): that
    /// footprint, whose ops alone have no linearisation either.
    pub dead_footprint: Option<u32>,
}

/// Extra observations for explanations; all off for plain checking.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observe {
    /// Record the states in which the search got stuck at this op's return.
    pub watch: Option<usize>,
    /// Keep the linearisation order of a valid result.
    pub linearization: bool,
}

const NO_STATE: u32 = u32::MAX;
const MAX_STUCK_STATES: usize = 32;
/// How far down the list growth pruning looks for reads that the current state must grow into.
const GROWTH_LOOKAHEAD_ENTRIES: usize = 256;
/// ... and at most this many reads past the callable ones (the nearest constrain the most).
const GROWTH_LOOKAHEAD_READS: usize = 4;

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Interned model states and memoised transitions.
struct States<'m, M: Model> {
    model: &'m M,
    states: Vec<M::State>,
    index: HashTable<u32>,
    transitions: HashMap<u64, u32>,
    /// Memoised `restrict`: (state, footprint) -> the state's part.
    restrictions: HashMap<u64, u32>,
    hasher: DefaultHashBuilder,
    /// The states' own heap (see `Model::heap_bytes`), summed as they are interned.
    heap_bytes: u64,
}

/// Bytes of a hashbrown table that can hold `capacity` entries of `slot` bytes: a control byte
/// per bucket, and at most 7/8 of the buckets full.
fn table_bytes(capacity: usize, slot: usize) -> u64 {
    (capacity as u64 * (slot as u64 + 1)).div_ceil(7) * 8
}

impl<'m, M: Model> States<'m, M> {
    fn new(model: &'m M, expected_ops: usize) -> Self {
        States {
            model,
            states: Vec::new(),
            index: HashTable::new(),
            transitions: HashMap::with_capacity(expected_ops * 4),
            restrictions: HashMap::new(),
            hasher: DefaultHashBuilder::default(),
            heap_bytes: 0,
        }
    }

    /// The id of `state`, interned if new. `base`: a state it was derived from (see
    /// `Model::heap_bytes`).
    fn intern(&mut self, state: M::State, base: Option<u32>) -> u32 {
        let hash = self.hasher.hash_one(&state);
        let states = &self.states;
        if let Some(&id) = self.index.find(hash, |&id| states[id as usize] == state) {
            return id;
        }
        let id = self.states.len() as u32;
        assert!(id < NO_STATE, "more than 2^32 states");
        let base = base.map(|b| &self.states[b as usize]);
        self.heap_bytes += self.model.heap_bytes(&state, base);
        self.states.push(state);
        let (states, hasher) = (&self.states, &self.hasher);
        self.index.insert_unique(hash, id, |&i| hasher.hash_one(&states[i as usize]));
        id
    }

    /// The state's part of `footprint`, as a state of its own (see `Model::restrict`).
    fn restrict(&mut self, state: u32, footprint: u32) -> u32 {
        let key = ((state as u64) << 32) | footprint as u64;
        if let Some(&part) = self.restrictions.get(&key) {
            return part;
        }
        let part = self.model.restrict(&self.states[state as usize], footprint);
        let part = self.intern(part, Some(state));
        self.restrictions.insert(key, part);
        part
    }

    fn step(&mut self, state: u32, op_index: usize, op: &M::Op) -> Option<u32> {
        let key = ((state as u64) << 32) | op_index as u64;
        if let Some(&next) = self.transitions.get(&key) {
            return (next != NO_STATE).then_some(next);
        }
        let next = match self.model.step(&self.states[state as usize], op) {
            Step::Illegal => NO_STATE,
            Step::Unchanged => state,
            Step::To(s) => self.intern(s, Some(state)),
        };
        self.transitions.insert(key, next);
        (next != NO_STATE).then_some(next)
    }

    /// What the interned states and the memoised transitions hold: the states' vector, their
    /// heap, the index, and the two memo tables (a u64 key and a u32 value, padded to 16 bytes).
    fn approx_bytes(&self) -> u64 {
        (self.states.capacity() * std::mem::size_of::<M::State>()) as u64
            + self.heap_bytes
            + table_bytes(self.index.capacity(), 4)
            + table_bytes(self.transitions.capacity(), 16)
            + table_bytes(self.restrictions.capacity(), 16)
    }
}

/// The visited configurations: (bit set of linearised ops, state), stored flat.
///
/// A configuration is also covered by a visited one that has the same state and the same required
/// ops linearised but used only a subset of its optional ops: every completion of the first is a
/// completion of the second, since the optional ops the second has not used yet have no return,
/// so they block no call (subsumption; see `search` for why pruning by it stays complete). So the
/// hash covers the required ops and the state only, and a lookup looks for a stored subset.
struct Visited {
    words: usize,
    /// Per word, the bits of required ops.
    required_mask: Vec<u64>,
    bits: Vec<u64>,
    states: Vec<u32>,
    hashes: Vec<u64>,
    table: HashTable<u32>,
}

impl Visited {
    fn new(required_mask: Vec<u64>) -> Self {
        Visited {
            words: required_mask.len(),
            required_mask,
            bits: Vec::new(),
            states: Vec::new(),
            hashes: Vec::new(),
            table: HashTable::new(),
        }
    }

    /// A stored configuration that covers this one (equal, or the same but with fewer optional
    /// ops). `zobrist` must hash the required ops of `bits` only.
    fn find_cover(&self, zobrist: u64, state: u32, bits: &[u64]) -> Option<u32> {
        let hash = zobrist ^ splitmix64(state as u64);
        let words = self.words;
        let (stored_bits, stored_states, required_mask) = (&self.bits, &self.states, &self.required_mask);
        self.table
            .find(hash, |&i| {
                let i = i as usize;
                stored_states[i] == state
                    && stored_bits[i * words..(i + 1) * words].iter().zip(bits).zip(required_mask).all(
                        |((&stored, &current), &required)| {
                            // Same required ops, and the stored optional ops a subset of the current.
                            (stored ^ current) & required == 0 && stored & !current == 0
                        },
                    )
            })
            .copied()
    }

    /// Inserts the configuration and returns its id, or the id of the stored one that covers it.
    fn insert(&mut self, zobrist: u64, state: u32, bits: &[u64]) -> Result<u32, u32> {
        if let Some(cover) = self.find_cover(zobrist, state, bits) {
            return Err(cover);
        }
        let hash = zobrist ^ splitmix64(state as u64);
        let id = self.states.len() as u32;
        self.states.push(state);
        self.hashes.push(hash);
        self.bits.extend_from_slice(bits);
        let hashes = &self.hashes;
        self.table.insert_unique(hash, id, |&i| hashes[i as usize]);
        Ok(id)
    }

    fn len(&self) -> usize {
        self.states.len()
    }

    fn approx_bytes(&self) -> u64 {
        // Bit sets, state ids, hashes, and the table of ids.
        (self.bits.capacity() * 8 + self.states.capacity() * 4 + self.hashes.capacity() * 8) as u64
            + table_bytes(self.table.capacity(), 4)
    }
}

/// A failure's conflict (see `Conflicts`): one footprint, or this for "the whole configuration",
/// which claims nothing beyond it (a configuration still on the path, or one abandoned by a rule
/// that relies on another configuration being tried instead).
const WHOLE: u32 = u32::MAX;

/// Conflict-directed backjumping over independent footprints (the keys of [`crate::model::Keyed`]).
///
/// The model's state is a product of one part per footprint, and an op reads and changes its
/// footprint's part only. The f-subproblem of a configuration keeps only f's ops (linearised or
/// not) and f's part of the state. Any completion of the configuration, restricted to f's ops, is
/// a completion of its f-subproblem (real time among f's ops is kept, and other ops do not touch
/// f's part). So when a configuration's f-subproblem has no completion, neither has the
/// configuration, nor any other one with the same f-subproblem, whatever other footprints did.
/// A failed configuration's conflict is such an f, when the way it failed shows one:
/// - stuck at the return of op x of footprint f, every callable op of f tried (the search
///   branches on f's ops only there): f, unless a child failed with the whole configuration as
///   its conflict. x's return is still the first one not linearised among f's ops, so the
///   f-subproblem's callable ops are exactly the callable ops of f, and each of them failed with
///   conflict f;
/// - a child of footprint g failed with conflict f != g: the child's f-subproblem is the
///   configuration's own, so the configuration fails with f too, and so on up the path until a
///   step of footprint f (the backjump: the steps in between, of other footprints, are not
///   retried — they cannot change that f-subproblem);
/// - a forced read failed: its conflict (the read goes first in any completion of the
///   f-subproblem too); growth pruning of a read of footprint f: f (it looks at f's ops and part
///   only); covered by a failed visited configuration or dead part: that one's conflict (covering
///   survives restriction); an illegal op, an optional op that changes nothing or a later
///   identical optional op: nothing (the same reasons make them no first step of a shortest
///   completion of the f-subproblem); a cover still on the path: the whole configuration; an
///   overwrite of footprint f skipped after an optional op: f if a failed visited configuration
///   or a dead part with conflict f covers the child it would have made (the child the parent
///   made with the overwrite alone, tried before it when the overwrite is required, usually
///   does), since that child's f-subproblem is then covered by a dead one; else the whole
///   configuration.
///
/// By induction every conflict is one footprint or the whole configuration. A failure with
/// conflict f also enters `dead_parts[f]`, so that a later configuration with the same linearised
/// ops of f and the same part of f fails at once.
struct Conflicts {
    enabled: bool,
    /// Per visited configuration (by id): its conflict once it failed; `WHOLE` until then.
    of_visited: Vec<u32>,
    /// The footprints of the children, of configurations on the path, that failed with `WHOLE`.
    whole_children: Vec<u32>,
    /// Per configuration on the path, root first: where its children start in `whole_children`.
    starts: Vec<u32>,
    /// Per footprint: parts known to have no completion (its linearised ops, by local index, and
    /// its part of the state), covering like the visited set.
    dead_parts: Vec<Visited>,
    /// Per op: its index among the ops of its footprint.
    local_index: Vec<u32>,
    /// Per footprint: its linearised ops, by local index.
    local_bits: Vec<Vec<u64>>,
    /// Per footprint: the Zobrist hash of its linearised required ops.
    local_hash: Vec<u64>,
}

impl Conflicts {
    fn new<O>(ops: &[SearchOp<O>], footprint: &[u32], n_footprints: usize) -> Self {
        let enabled = n_footprints >= 2;
        let mut conflicts = Conflicts {
            enabled,
            of_visited: Vec::new(),
            whole_children: Vec::new(),
            starts: Vec::new(),
            dead_parts: Vec::new(),
            local_index: Vec::new(),
            local_bits: Vec::new(),
            local_hash: vec![0; if enabled { n_footprints } else { 0 }],
        };
        if !enabled {
            return conflicts;
        }
        let mut counts = vec![0usize; n_footprints];
        let mut required_masks: Vec<Vec<u64>> = vec![Vec::new(); n_footprints];
        for (i, op) in ops.iter().enumerate() {
            let f = footprint[i] as usize;
            let local = counts[f];
            counts[f] += 1;
            conflicts.local_index.push(local as u32);
            if local.is_multiple_of(64) {
                required_masks[f].push(0);
            }
            if op.required {
                required_masks[f][local / 64] |= 1u64 << (local % 64);
            }
        }
        for (f, mask) in required_masks.into_iter().enumerate() {
            conflicts.local_bits.push(vec![0; counts[f].div_ceil(64)]);
            conflicts.dead_parts.push(Visited::new(mask));
        }
        conflicts
    }

    /// A configuration was entered (its visited id is the next one).
    fn enter(&mut self) {
        if self.enabled {
            self.of_visited.push(WHOLE);
            self.starts.push(self.whole_children.len() as u32);
        }
    }

    fn of(&self, visited_id: u32) -> u32 {
        self.of_visited.get(visited_id as usize).copied().unwrap_or(WHOLE)
    }

    /// A child of the current configuration, an op of `footprint`, failed with `conflict`.
    fn child_failed(&mut self, footprint: u32, conflict: u32) {
        if self.enabled && conflict == WHOLE {
            self.whole_children.push(footprint);
        }
    }

    /// The conflict of the current configuration, stuck at the return of an op of `footprint`.
    fn stuck(&self, footprint: u32) -> u32 {
        if !self.enabled {
            return WHOLE;
        }
        let start = *self.starts.last().expect("a configuration on the path") as usize;
        if self.whole_children[start..].contains(&footprint) {
            WHOLE
        } else {
            footprint
        }
    }

    fn linearised(&mut self, i: usize, footprint: u32, zobrist: u64) {
        if self.enabled {
            let (f, local) = (footprint as usize, self.local_index[i] as usize);
            self.local_bits[f][local / 64] |= 1u64 << (local % 64);
            self.local_hash[f] ^= zobrist;
        }
    }

    fn undone(&mut self, i: usize, footprint: u32, zobrist: u64) {
        if self.enabled {
            let (f, local) = (footprint as usize, self.local_index[i] as usize);
            self.local_bits[f][local / 64] &= !(1u64 << (local % 64));
            self.local_hash[f] ^= zobrist;
        }
    }

    /// Is the current part of `footprint` (with `state` the current state) known dead?
    fn dead_part<M: Model>(&self, states: &mut States<'_, M>, state: u32, footprint: u32) -> bool {
        if !self.enabled {
            return false;
        }
        let f = footprint as usize;
        let part = states.restrict(state, footprint);
        self.dead_parts[f].find_cover(self.local_hash[f], part, &self.local_bits[f]).is_some()
    }

    /// The current configuration (visited id `id`, state `state`) failed with `conflict`: keep
    /// that, and leave it.
    fn failed<M: Model>(&mut self, id: u32, conflict: u32, states: &mut States<'_, M>, state: u32) {
        if !self.enabled {
            return;
        }
        self.of_visited[id as usize] = conflict;
        let start = self.starts.pop().expect("a configuration on the path");
        self.whole_children.truncate(start as usize);
        if conflict != WHOLE {
            let part = states.restrict(state, conflict);
            let f = conflict as usize;
            let _ = self.dead_parts[f].insert(self.local_hash[f], part, &self.local_bits[f]);
        }
    }

    fn approx_bytes(&self) -> u64 {
        self.dead_parts.iter().map(Visited::approx_bytes).sum::<u64>()
            + (self.of_visited.capacity() * 4 + self.whole_children.capacity() * 4) as u64
    }
}

/// A choice on the search path: the call entry lifted and the state before it.
struct Frame {
    call_entry: u32,
    /// The visited id of the configuration the choice led to.
    visited_id: u32,
    state: u32,
    /// The scan phase the choice was made in (see `optional_phase` in `search`).
    optional_phase: bool,
    /// Taken because it could not hurt (see the forced steps in `search`): no alternatives to try.
    forced: bool,
    /// The footprint whose ops the configuration the choice was made in branches on.
    branch_footprint: u32,
}

/// Checks one partition: can `ops` be linearised against `model` starting in `init`?
pub fn search<M: Model>(
    model: &M,
    init: M::State,
    ops: &[SearchOp<M::Op>],
    budget: &Budget<'_>,
    observe: Observe,
) -> SearchReport<M::State> {
    let n = ops.len();
    let mut report = SearchReport {
        verdict: SearchVerdict::Valid,
        configurations: 0,
        states: 0,
        deepest: None,
        stuck_states: Vec::new(),
        linearization: None,
        dead_footprint: None,
    };
    let mut required_left = ops.iter().filter(|o| o.required).count();
    if required_left == 0 {
        report.linearization = observe.linearization.then(Vec::new);
        return report;
    }
    assert!(n < (u32::MAX as usize) / 2 - 2, "partition too large");

    // Entries: 2i is op i's call, 2i+1 its return; HEAD and TAIL are sentinels.
    let head = 2 * n;
    let tail = 2 * n + 1;
    let mut order: Vec<u32> = (0..2 * n as u32).collect();
    let position = |e: u32| -> (u64, u32) {
        let op = &ops[(e / 2) as usize];
        if e.is_multiple_of(2) {
            (op.call, e)
        } else {
            debug_assert!(op.required || op.ret.is_none(), "optional ops are open forever");
            (op.ret.unwrap_or(u64::MAX), e)
        }
    };
    order.sort_unstable_by_key(|&e| position(e));
    let mut next = vec![0u32; 2 * n + 2];
    let mut prev = vec![0u32; 2 * n + 2];
    let mut last = head as u32;
    for &e in &order {
        next[last as usize] = e;
        prev[e as usize] = last;
        last = e;
    }
    next[last as usize] = tail as u32;
    prev[tail] = last;

    let words = n.div_ceil(64);
    // Optional ops do not enter the hash: configurations that differ only in them must meet in
    // the visited set's lookup (see `Visited`).
    let zobrist: Vec<u64> =
        (0..n).map(|i| if ops[i].required { splitmix64(i as u64 ^ 0x5EED_0000_0000) } else { 0 }).collect();
    let mut required_mask = vec![0u64; words];
    for i in (0..n).filter(|&i| ops[i].required) {
        required_mask[i / 64] |= 1u64 << (i % 64);
    }
    let mut bits = vec![0u64; words];
    // Zobrist hash of the ops linearised so far.
    let mut hash = 0u64;
    let mut states = States::new(model, n);
    let mut state = states.intern(init, None);
    let mut visited = Visited::new(required_mask);
    let root_id = visited.insert(hash, state, &bits).expect("the first configuration is new");
    let mut stack: Vec<Frame> = Vec::with_capacity(n);
    // Identical optional ops (same model op, both open forever) are interchangeable once both are
    // callable: linearise them in invocation order only. Each optional op's previous twin:
    let mut same_optional_before: Vec<Option<usize>> = vec![None; n];
    {
        let mut last: HashMap<&M::Op, usize> = HashMap::new();
        let mut by_call: Vec<usize> = (0..n).filter(|&i| !ops[i].required).collect();
        by_call.sort_by_key(|&i| (ops[i].call, i));
        for i in by_call {
            same_optional_before[i] = last.insert(&ops[i].op, i);
        }
    }
    let read_only: Vec<bool> = ops.iter().map(|o| o.required && model.is_read_only(&o.op)).collect();
    // Growth pruning (see the forced steps below) needs to know, for a read, whether an op that
    // overwrites the state could still come before it: the calls of unlinearised overwriters.
    let growth_pruning = ops.iter().any(|o| model.only_grows(&o.op));
    let overwriter: Vec<bool> = ops.iter().map(|o| !model.is_read_only(&o.op) && !model.only_grows(&o.op)).collect();
    let footprint: Vec<u32> = ops.iter().map(|o| model.footprint(&o.op)).collect();
    let overwrites: Vec<bool> = ops.iter().map(|o| model.overwrites(&o.op)).collect();
    let n_footprints = footprint.iter().max().map_or(0, |&f| f as usize + 1);
    // Per footprint: the calls of its unlinearised overwriters.
    let mut overwriter_calls: Vec<BTreeSet<(u64, usize)>> = vec![BTreeSet::new(); n_footprints];
    // With several independent footprints (keys) interleaved, look further to reach each one's reads.
    let footprints_scale = n_footprints.clamp(1, 16);
    let (lookahead_entries, lookahead_reads) =
        (GROWTH_LOOKAHEAD_ENTRIES * footprints_scale, GROWTH_LOOKAHEAD_READS * footprints_scale);
    for i in (0..n).filter(|&i| growth_pruning && overwriter[i]) {
        overwriter_calls[footprint[i] as usize].insert((ops[i].call, i));
    }
    let mut conflicts = Conflicts::new(ops, &footprint, n_footprints);
    // Without backjumping, every failure is the whole configuration's.
    let backjumping = conflicts.enabled;
    let conflict_of_footprint = |i: usize| if backjumping { footprint[i] } else { WHOLE };
    // The conflict of an overwrite skipped right after an optional op (see `Conflicts`): when a
    // failed configuration or dead part covers the child it would have made (usually the one the
    // parent reached with the overwrite alone, tried before when the overwrite is required), the
    // child fails for that one's reason, if it is the overwrite's footprint; else the whole
    // configuration's.
    let skipped_overwrite_conflict = |i: usize,
                                      state: u32,
                                      bits: &mut [u64],
                                      hash: &mut u64,
                                      states: &mut States<'_, M>,
                                      conflicts: &mut Conflicts,
                                      visited: &Visited| {
        let Some(next_state) = states.step(state, i, &ops[i].op) else { return WHOLE };
        bits[i / 64] |= 1u64 << (i % 64);
        *hash ^= zobrist[i];
        conflicts.linearised(i, footprint[i], zobrist[i]);
        let conflict = if conflicts.dead_part(states, next_state, footprint[i]) {
            footprint[i]
        } else {
            visited.find_cover(*hash, next_state, bits).map_or(WHOLE, |cover| conflicts.of(cover))
        };
        bits[i / 64] &= !(1u64 << (i % 64));
        *hash ^= zobrist[i];
        conflicts.undone(i, footprint[i], zobrist[i]);
        if conflict == footprint[i] {
            conflict
        } else {
            WHOLE
        }
    };
    conflicts.enter();
    let mut entry = next[head] as usize;
    let mut iterations: u64 = 0;
    // The footprint of the current configuration's first pending return, whose ops it branches on.
    let mut branch_footprint: u32 = 0;

    let lift = |next: &mut Vec<u32>, prev: &mut Vec<u32>, e: usize| {
        let r = e + 1;
        let (p, nx) = (prev[e] as usize, next[e] as usize);
        next[p] = nx as u32;
        prev[nx] = p as u32;
        let (p, nx) = (prev[r] as usize, next[r] as usize);
        next[p] = nx as u32;
        prev[nx] = p as u32;
    };
    let unlift = |next: &mut Vec<u32>, prev: &mut Vec<u32>, e: usize| {
        let r = e + 1;
        let (p, nx) = (prev[r] as usize, next[r] as usize);
        next[p] = r as u32;
        prev[nx] = r as u32;
        let (p, nx) = (prev[e] as usize, next[e] as usize);
        next[p] = e as u32;
        prev[nx] = e as u32;
    };

    // True when the walk has just arrived at a configuration it has not seen before.
    let mut fresh = true;
    // Each configuration's callable ops are tried required ones first, then (in a second pass,
    // this phase) optional ones, so that an indefinite op is only linearised when no required op
    // can go, which is when something may need it. The order does not change what is explored.
    let mut optional_phase = false;
    let mut optional_left = ops.iter().filter(|o| !o.required).count();
    loop {
        if required_left == 0 {
            report.verdict = SearchVerdict::Valid;
            if observe.linearization {
                report.linearization = Some(stack.iter().map(|f| f.call_entry as usize / 2).collect());
            }
            break;
        }
        iterations += 1;
        if iterations & 0xFFF == 0 {
            if budget.max_configurations.is_some_and(|max| visited.len() as u64 > max) {
                report.verdict = SearchVerdict::Unknown(CONFIGURATION_BUDGET.into());
                break;
            }
            let bytes = states.approx_bytes() + visited.approx_bytes() + conflicts.approx_bytes();
            if let Some(reason) = over_budget(budget, bytes) {
                report.verdict = SearchVerdict::Unknown(reason);
                break;
            }
        }
        let mut dead_end = false;
        // The op that could not go, when this configuration turns out dead because of one.
        let mut stuck: Option<usize> = None;
        // Why this configuration failed, when it does (see `Conflicts`).
        let mut conflict = WHOLE;
        if fresh {
            fresh = false;
            // A required read-only op (a read, an observed compare failure) that is legal now goes
            // now, with no alternatives: any linearisation from here that puts it later can put it
            // here instead, since it is callable (no unlinearised op returned before its call) and
            // it changes nothing for the ops it would jump over. If that configuration was seen
            // already it failed (it cannot be on the current path, which has fewer ops), so this
            // one fails too.
            //
            // Growth pruning: a required read not linearised yet will be, later, in a state that
            // extends the current one if no op that overwrites the state (a put, a write) can come
            // before it (none still unlinearised was invoked before the read returned): every op
            // in between only grows the state. If no extension of the current state satisfies the
            // read, this configuration is dead. That holds for reads further down the list too, not
            // only callable ones, so the walk looks ahead a bounded number of entries.
            let mut e = next[head] as usize;
            let mut doomed = None;
            let mut forced_entry = None;
            let mut in_callable_region = true;
            let mut first_return_footprint = None;
            let (mut walked, mut reads_ahead) = (0, 0);
            while e != tail
                && walked < lookahead_entries
                && reads_ahead < lookahead_reads
                && (in_callable_region || growth_pruning)
            {
                walked += 1;
                let i = e / 2;
                if e % 2 == 1 {
                    if in_callable_region {
                        first_return_footprint = Some(footprint[i]);
                    }
                    in_callable_region = false;
                } else if read_only[i] {
                    if !in_callable_region {
                        reads_ahead += 1;
                    }
                    if growth_pruning {
                        let first_overwriter_call =
                            overwriter_calls[footprint[i] as usize].first().map_or(u64::MAX, |&(call, _)| call);
                        let no_overwrite_before = ops[i].ret.is_some_and(|r| r < first_overwriter_call);
                        if no_overwrite_before && !model.may_grow_into(&states.states[state as usize], &ops[i].op) {
                            doomed = Some(i);
                            break;
                        }
                    }
                    if in_callable_region && forced_entry.is_none() && states.step(state, i, &ops[i].op) == Some(state)
                    {
                        forced_entry = Some(e);
                        if !growth_pruning {
                            break;
                        }
                    }
                }
                e = next[e] as usize;
            }
            if let Some(i) = doomed {
                dead_end = true;
                stuck = doomed;
                conflict = conflict_of_footprint(i);
            } else if let Some(e) = forced_entry {
                let i = e / 2;
                bits[i / 64] |= 1u64 << (i % 64);
                hash ^= zobrist[i];
                conflicts.linearised(i, footprint[i], zobrist[i]);
                let seen = if conflicts.dead_part(&mut states, state, footprint[i]) {
                    Err(conflict_of_footprint(i))
                } else {
                    visited.insert(hash, state, &bits).map_err(|cover| conflicts.of(cover))
                };
                match seen {
                    Ok(visited_id) => {
                        stack.push(Frame {
                            call_entry: e as u32,
                            visited_id,
                            state,
                            optional_phase: false,
                            forced: true,
                            branch_footprint,
                        });
                        conflicts.enter();
                        lift(&mut next, &mut prev, e);
                        required_left -= 1;
                        fresh = true;
                        continue;
                    }
                    Err(cover_conflict) => {
                        bits[i / 64] &= !(1u64 << (i % 64));
                        hash ^= zobrist[i];
                        conflicts.undone(i, footprint[i], zobrist[i]);
                        dead_end = true;
                        conflict = cover_conflict;
                    }
                }
            } else {
                entry = next[head] as usize;
                optional_phase = false;
                // Branch on the ops of the first pending return's footprint only (see "One
                // footprint at a time" above).
                branch_footprint = match first_return_footprint {
                    _ if n_footprints < 2 => 0,
                    Some(f) => f,
                    None => {
                        let mut e = entry;
                        while e.is_multiple_of(2) {
                            e = next[e] as usize;
                        }
                        footprint[e / 2]
                    }
                };
            }
        }
        if !dead_end {
            debug_assert!(entry != tail, "the list ends in a return, so the walk backtracks before the tail");
            let op_index = entry / 2;
            if entry.is_multiple_of(2) && ops[op_index].required == optional_phase {
                // Not this phase's kind of op.
                entry = next[entry] as usize;
                continue;
            }
            if entry.is_multiple_of(2) && footprint[op_index] != branch_footprint {
                // Another footprint's op: tried once this footprint's first return is linearised.
                entry = next[entry] as usize;
                continue;
            }
            if entry.is_multiple_of(2)
                && same_optional_before[op_index].is_some_and(|j| bits[j / 64] & (1u64 << (j % 64)) == 0)
            {
                // An identical optional op invoked earlier is callable too and still unused:
                // the two are interchangeable, so only the earlier one is tried first.
                entry = next[entry] as usize;
                continue;
            }
            if entry.is_multiple_of(2)
                && overwrites[op_index]
                && stack.last().is_some_and(|f| {
                    let before = f.call_entry as usize / 2;
                    !ops[before].required && footprint[before] == footprint[op_index]
                })
            {
                // The last step was an optional op of this footprint: this overwrite would erase it,
                // and linearising it one step earlier, without that optional op, reaches the same
                // state having used less. That configuration was tried from the step before.
                let conflict = if backjumping {
                    skipped_overwrite_conflict(
                        op_index,
                        state,
                        &mut bits,
                        &mut hash,
                        &mut states,
                        &mut conflicts,
                        &visited,
                    )
                } else {
                    WHOLE
                };
                conflicts.child_failed(footprint[op_index], conflict);
                entry = next[entry] as usize;
                continue;
            }
            if entry.is_multiple_of(2) {
                // A call: try to linearise the op here.
                let step = states.step(state, op_index, &ops[op_index].op);
                // An optional op that leaves the state as it is gains nothing: the configuration
                // without it (the current one) has every future this one would have.
                if let Some(next_state) = step.filter(|&s| ops[op_index].required || s != state) {
                    let (word, bit) = (op_index / 64, 1u64 << (op_index % 64));
                    bits[word] |= bit;
                    hash ^= zobrist[op_index];
                    conflicts.linearised(op_index, footprint[op_index], zobrist[op_index]);
                    let seen = if conflicts.dead_part(&mut states, next_state, footprint[op_index]) {
                        Err(conflict_of_footprint(op_index))
                    } else {
                        visited.insert(hash, next_state, &bits).map_err(|cover| conflicts.of(cover))
                    };
                    if let Ok(visited_id) = seen {
                        stack.push(Frame {
                            call_entry: entry as u32,
                            visited_id,
                            state,
                            optional_phase,
                            forced: false,
                            branch_footprint,
                        });
                        conflicts.enter();
                        state = next_state;
                        lift(&mut next, &mut prev, entry);
                        if growth_pruning && overwriter[op_index] {
                            overwriter_calls[footprint[op_index] as usize].remove(&(ops[op_index].call, op_index));
                        }
                        if ops[op_index].required {
                            required_left -= 1;
                        } else {
                            optional_left -= 1;
                        }
                        fresh = true;
                        continue;
                    }
                    bits[word] &= !bit;
                    hash ^= zobrist[op_index];
                    conflicts.undone(op_index, footprint[op_index], zobrist[op_index]);
                    conflicts.child_failed(footprint[op_index], seen.unwrap_err());
                }
                entry = next[entry] as usize;
                continue;
            }
            // The return of an op not linearised yet: the end of the callable ops.
            debug_assert!(ops[op_index].required, "only required ops have returns before the end");
            if !optional_phase && optional_left > 0 {
                optional_phase = true;
                entry = next[head] as usize;
                continue;
            }
            // Nothing callable can go: this path is dead.
            stuck = Some(op_index);
            conflict = conflicts.stuck(footprint[op_index]);
        }
        if let Some(stuck_op) = stuck {
            if report.deepest.as_ref().is_none_or(|d| stack.len() > d.order.len()) {
                report.deepest = Some(Deepest {
                    order: stack.iter().map(|f| f.call_entry as usize / 2).collect(),
                    state: states.states[state as usize].clone(),
                    stuck_op,
                });
            }
            if observe.watch == Some(stuck_op) && report.stuck_states.len() < MAX_STUCK_STATES {
                let s = &states.states[state as usize];
                if !report.stuck_states.contains(s) {
                    report.stuck_states.push(s.clone());
                }
            }
        }
        // Backtrack: undo the last choice; undo forced steps too, since their configurations
        // fail exactly when the one before them does, and steps of footprints outside the
        // conflict (backjumping, see `Conflicts`).
        let mut resumed = false;
        loop {
            let current_id = stack.last().map_or(root_id, |f| f.visited_id);
            conflicts.failed(current_id, conflict, &mut states, state);
            let Some(frame) = stack.pop() else { break };
            let call_entry = frame.call_entry as usize;
            let undone = call_entry / 2;
            bits[undone / 64] &= !(1u64 << (undone % 64));
            hash ^= zobrist[undone];
            conflicts.undone(undone, footprint[undone], zobrist[undone]);
            state = frame.state;
            unlift(&mut next, &mut prev, call_entry);
            if growth_pruning && overwriter[undone] {
                overwriter_calls[footprint[undone] as usize].insert((ops[undone].call, undone));
            }
            if ops[undone].required {
                required_left += 1;
            } else {
                optional_left += 1;
            }
            if !frame.forced && (conflict == WHOLE || conflict == footprint[undone]) {
                conflicts.child_failed(footprint[undone], conflict);
                entry = next[call_entry] as usize;
                optional_phase = frame.optional_phase;
                branch_footprint = frame.branch_footprint;
                resumed = true;
                break;
            }
        }
        if !resumed {
            report.verdict = SearchVerdict::Invalid;
            // The root failed with this conflict: its f-subproblem, f's ops from the initial
            // state, has no completion.
            report.dead_footprint = (conflict != WHOLE).then_some(conflict);
            break;
        }
    }
    report.configurations = visited.len() as u64;
    report.states = states.states.len() as u64;
    report
}

fn over_budget(budget: &Budget<'_>, bytes: u64) -> Option<String> {
    if budget.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
        return Some("cancelled".into());
    }
    if budget.deadline.is_some_and(|d| Instant::now() >= d) {
        return Some("time budget exhausted".into());
    }
    if bytes > budget.memory_limit_bytes {
        return Some(format!("memory budget exhausted ({} MiB)", budget.memory_limit_bytes >> 20));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Register, RegisterOp};

    fn op(o: RegisterOp, call: u64, ret: Option<u64>) -> SearchOp<RegisterOp> {
        SearchOp { op: o, call, ret, required: ret.is_some() }
    }

    fn verdict(ops: &[SearchOp<RegisterOp>]) -> SearchVerdict {
        let model = Register { initial: 0, allow_cas: true };
        search(&model, 0, ops, &Budget::default(), Observe::default()).verdict
    }

    #[test]
    fn concurrent_write_and_read_may_go_either_way() {
        use RegisterOp::*;
        assert_eq!(verdict(&[op(Write(1), 0, Some(3)), op(Read(0), 1, Some(2))]), SearchVerdict::Valid);
        assert_eq!(verdict(&[op(Write(1), 0, Some(3)), op(Read(1), 1, Some(2))]), SearchVerdict::Valid);
    }

    #[test]
    fn a_read_after_a_completed_write_must_see_it() {
        use RegisterOp::*;
        assert_eq!(verdict(&[op(Write(1), 0, Some(1)), op(Read(0), 2, Some(3))]), SearchVerdict::Invalid);
    }

    #[test]
    fn an_open_write_may_take_effect_late_or_never() {
        use RegisterOp::*;
        // The write never completed; one read saw nothing, a later one saw it.
        let ops = [op(Write(1), 0, None), op(Read(0), 1, Some(2)), op(Read(1), 3, Some(4)), op(Read(1), 5, Some(6))];
        assert_eq!(verdict(&ops), SearchVerdict::Valid);
        // ... but once seen it cannot be unseen.
        let ops = [op(Write(1), 0, None), op(Read(1), 1, Some(2)), op(Read(0), 3, Some(4))];
        assert_eq!(verdict(&ops), SearchVerdict::Invalid);
        // ... and an open write cannot take effect before its invocation.
        let ops = [op(Read(1), 0, Some(1)), op(Write(1), 2, None)];
        assert_eq!(verdict(&ops), SearchVerdict::Invalid);
    }

    #[test]
    fn a_zero_time_budget_gives_unknown_never_valid() {
        use RegisterOp::*;
        // Many concurrent writes and a read nobody wrote: exhaustive search, cut short.
        let mut ops: Vec<_> = (0..40).map(|i| op(Write(i + 1), i as u64, Some(1000 + i as u64))).collect();
        ops.push(op(Read(999), 500, Some(2000)));
        let model = Register { initial: 0, allow_cas: true };
        let budget = Budget { deadline: Some(Instant::now()), ..Budget::default() };
        let report = search(&model, 0, &ops, &budget, Observe::default());
        assert!(matches!(report.verdict, SearchVerdict::Unknown(_)), "{:?}", report.verdict);
    }

    /// The budget counts the states' own heap: here every state but two holds at least one
    /// appended kilobyte, so the states the search kept must fit in the budget by that measure.
    /// (When it counted a state's `size_of` only, a search like this one held dozens of times its
    /// budget.)
    #[test]
    fn the_memory_budget_counts_what_states_hold_on_the_heap() {
        use crate::model::{HashedString, StringKv, StringOp};
        const APPEND_BYTES: usize = 1024;
        let text = |t: String| HashedString::new(t);
        let searched = |ret: Option<u64>, required: bool, op: StringOp, call: u64| SearchOp { op, call, ret, required };
        // Fourteen concurrent appends of distinct kilobytes, and a get that no order can satisfy,
        // which returns last: every order of every subset of the appends is a state of its own. An
        // indefinite put invoked first keeps growth pruning from cutting that short.
        let mut ops: Vec<SearchOp<StringOp>> = (0..14u64)
            .map(|i| {
                let append = StringOp::Append(text(format!("{i:x}").repeat(APPEND_BYTES / 2)));
                searched(Some(1000 + i), true, append, 10 + i)
            })
            .collect();
        ops.push(searched(None, false, StringOp::Put(text("p".into())), 0));
        ops.push(searched(Some(2000), true, StringOp::Get(text("never".into())), 1));
        let budget_bytes: u64 = 8 << 20;
        let budget = Budget {
            memory_limit_bytes: budget_bytes,
            deadline: Some(Instant::now() + std::time::Duration::from_secs(60)),
            ..Budget::default()
        };
        let model = StringKv { initial: String::new() };
        let report = search(&model, model.init(), &ops, &budget, Observe::default());
        let SearchVerdict::Unknown(reason) = &report.verdict else { panic!("{:?}", report.verdict) };
        assert!(reason.starts_with("memory budget exhausted"), "{reason}");
        let appended_bytes_held = report.states.saturating_sub(2) * APPEND_BYTES as u64;
        assert!(
            appended_bytes_held <= budget_bytes,
            "{} states hold at least {appended_bytes_held} bytes, over the {budget_bytes}-byte budget",
            report.states
        );
    }
}
