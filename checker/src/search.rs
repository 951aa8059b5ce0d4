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
/// so they block no call (subsumption; see the module doc for why pruning by it stays complete). So the
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
    /// The scan phase the choice was made in (see `Search::optional_phase`).
    optional_phase: bool,
    /// Taken because it could not hurt (see `Search::arrive`): no alternatives to try.
    forced: bool,
    /// The footprint whose ops the configuration the choice was made in branches on.
    branch_footprint: u32,
}

/// What the search knows of its ops before it starts: fixed for the whole search, computed once
/// from the ops and the model.
struct OpFacts<'o, M: Model> {
    ops: &'o [SearchOp<M::Op>],
    /// Per op, its Zobrist key. Optional ops do not enter the hash (0): configurations that
    /// differ only in them must meet in the visited set's lookup (see `Visited`).
    zobrist: Vec<u64>,
    /// Per op: required and read-only (a read, an observed compare failure).
    read_only: Vec<bool>,
    /// Per op: it may replace the state rather than only grow it (growth pruning).
    overwriter: Vec<bool>,
    /// Per op: `Model::overwrites` (not tried right after an optional op of its footprint).
    overwrites: Vec<bool>,
    /// Per op: `Model::footprint`.
    footprint: Vec<u32>,
    n_footprints: usize,
    /// Identical optional ops (same model op, both open forever) are interchangeable once both
    /// are callable: linearise them in invocation order only. Per optional op, its previous twin.
    same_optional_before: Vec<Option<usize>>,
    /// Whether some op only grows the state, so that growth pruning can apply.
    growth_pruning: bool,
    /// How far growth pruning looks ahead, in entries and in reads past the callable ones.
    lookahead_entries: usize,
    lookahead_reads: usize,
}

impl<'o, M: Model> OpFacts<'o, M> {
    fn new(model: &M, ops: &'o [SearchOp<M::Op>]) -> Self {
        let n = ops.len();
        let zobrist =
            (0..n).map(|i| if ops[i].required { splitmix64(i as u64 ^ 0x5EED_0000_0000) } else { 0 }).collect();
        let mut same_optional_before: Vec<Option<usize>> = vec![None; n];
        let mut last: HashMap<&M::Op, usize> = HashMap::new();
        let mut by_call: Vec<usize> = (0..n).filter(|&i| !ops[i].required).collect();
        by_call.sort_by_key(|&i| (ops[i].call, i));
        for i in by_call {
            same_optional_before[i] = last.insert(&ops[i].op, i);
        }
        let footprint: Vec<u32> = ops.iter().map(|o| model.footprint(&o.op)).collect();
        let n_footprints = footprint.iter().max().map_or(0, |&f| f as usize + 1);
        // With several independent footprints (keys) interleaved, look further to reach each
        // one's reads.
        let footprints_scale = n_footprints.clamp(1, 16);
        OpFacts {
            ops,
            zobrist,
            read_only: ops.iter().map(|o| o.required && model.is_read_only(&o.op)).collect(),
            overwriter: ops.iter().map(|o| !model.is_read_only(&o.op) && !model.only_grows(&o.op)).collect(),
            overwrites: ops.iter().map(|o| model.overwrites(&o.op)).collect(),
            footprint,
            n_footprints,
            same_optional_before,
            growth_pruning: ops.iter().any(|o| model.only_grows(&o.op)),
            lookahead_entries: GROWTH_LOOKAHEAD_ENTRIES * footprints_scale,
            lookahead_reads: GROWTH_LOOKAHEAD_READS * footprints_scale,
        }
    }

    /// The bits of the required ops, per word of a linearised-ops bit set.
    fn required_mask(&self) -> Vec<u64> {
        let mut mask = vec![0u64; self.ops.len().div_ceil(64)];
        for i in (0..self.ops.len()).filter(|&i| self.ops[i].required) {
            mask[i / 64] |= 1u64 << (i % 64);
        }
        mask
    }
}

/// Calls and returns in real-time order, as a doubly linked list from which an op's two entries
/// are lifted when it is linearised and put back when that is undone (dancing links). Entry 2i is
/// op i's call, 2i+1 its return; `head` and `tail` are sentinels.
struct Entries {
    next: Vec<u32>,
    prev: Vec<u32>,
    head: usize,
    tail: usize,
}

impl Entries {
    fn new<O>(ops: &[SearchOp<O>]) -> Self {
        let n = ops.len();
        let (head, tail) = (2 * n, 2 * n + 1);
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
        Entries { next, prev, head, tail }
    }

    fn first(&self) -> usize {
        self.next[self.head] as usize
    }

    fn after(&self, e: usize) -> usize {
        self.next[e] as usize
    }

    /// Takes call entry `e` and its return out of the list.
    fn lift(&mut self, e: usize) {
        let (next, prev) = (&mut self.next, &mut self.prev);
        let r = e + 1;
        let (p, nx) = (prev[e] as usize, next[e] as usize);
        next[p] = nx as u32;
        prev[nx] = p as u32;
        let (p, nx) = (prev[r] as usize, next[r] as usize);
        next[p] = nx as u32;
        prev[nx] = p as u32;
    }

    /// Puts call entry `e` and its return back where `lift` took them from.
    fn unlift(&mut self, e: usize) {
        let (next, prev) = (&mut self.next, &mut self.prev);
        let r = e + 1;
        let (p, nx) = (prev[r] as usize, next[r] as usize);
        next[p] = r as u32;
        prev[nx] = r as u32;
        let (p, nx) = (prev[e] as usize, next[e] as usize);
        next[p] = e as u32;
        prev[nx] = e as u32;
    }
}

/// How a configuration turned out dead.
struct DeadEnd {
    /// The op that could not go, when one is to blame.
    stuck: Option<usize>,
    /// Why it failed (see `Conflicts`).
    conflict: u32,
}

/// What arriving at a new configuration led to (see `Search::arrive`).
enum Arrival {
    /// A forced read was linearised: the walk is at a new configuration again.
    Forced,
    Dead(DeadEnd),
    /// Nothing forced: walk the callable ops, branching on `Search::branch_footprint`'s.
    Branch,
}

/// What the look ahead from a new configuration found (see `Search::scan_ahead`).
struct Scan {
    /// A read that no extension of the current state satisfies, with no overwrite before it.
    doomed: Option<usize>,
    /// The call entry of a callable required read-only op that is legal now.
    forced_entry: Option<usize>,
    /// The footprint of the first pending return, when the scan reached it.
    first_return_footprint: Option<u32>,
}

/// The search in progress: the current configuration (linearised ops, state, the path of choices
/// that led to it) and the walk's position among its callable ops.
struct Search<'o, 'm, M: Model> {
    model: &'m M,
    facts: OpFacts<'o, M>,
    entries: Entries,
    states: States<'m, M>,
    visited: Visited,
    conflicts: Conflicts,
    /// The linearised ops, and the Zobrist hash of the required ones.
    bits: Vec<u64>,
    hash: u64,
    state: u32,
    stack: Vec<Frame>,
    root_id: u32,
    /// Per footprint: the calls of its unlinearised overwriters, for growth pruning (is there
    /// an op that could overwrite the state before a read?).
    overwriter_calls: Vec<BTreeSet<(u64, usize)>>,
    required_left: usize,
    optional_left: usize,
    /// The entry the walk is at.
    entry: usize,
    /// True when the walk has just arrived at a configuration it has not seen before.
    fresh: bool,
    /// Each configuration's callable ops are tried required ones first, then (in a second pass,
    /// this phase) optional ones, so that an indefinite op is only linearised when no required
    /// op can go, which is when something may need it. The order does not change what is
    /// explored.
    optional_phase: bool,
    /// The footprint of the current configuration's first pending return, whose ops it branches on.
    branch_footprint: u32,
}

impl<'o, 'm, M: Model> Search<'o, 'm, M> {
    fn new(model: &'m M, init: M::State, ops: &'o [SearchOp<M::Op>]) -> Self {
        let facts = OpFacts::new(model, ops);
        let n = ops.len();
        let mut states = States::new(model, n);
        let state = states.intern(init, None);
        let bits = vec![0u64; n.div_ceil(64)];
        let mut visited = Visited::new(facts.required_mask());
        let root_id = visited.insert(0, state, &bits).expect("the first configuration is new");
        let mut overwriter_calls: Vec<BTreeSet<(u64, usize)>> = vec![BTreeSet::new(); facts.n_footprints];
        for i in (0..n).filter(|&i| facts.growth_pruning && facts.overwriter[i]) {
            overwriter_calls[facts.footprint[i] as usize].insert((ops[i].call, i));
        }
        let mut conflicts = Conflicts::new(ops, &facts.footprint, facts.n_footprints);
        conflicts.enter();
        let entries = Entries::new(ops);
        Search {
            model,
            entry: entries.first(),
            entries,
            states,
            visited,
            conflicts,
            bits,
            hash: 0,
            state,
            stack: Vec::with_capacity(n),
            root_id,
            overwriter_calls,
            required_left: ops.iter().filter(|o| o.required).count(),
            optional_left: ops.iter().filter(|o| !o.required).count(),
            fresh: true,
            optional_phase: false,
            branch_footprint: 0,
            facts,
        }
    }

    /// Without backjumping (one footprint), every failure is the whole configuration's.
    fn conflict_of_footprint(&self, i: usize) -> u32 {
        if self.conflicts.enabled {
            self.facts.footprint[i]
        } else {
            WHOLE
        }
    }

    /// Adds op `i` to the linearised ops (bits, hash, its footprint's part).
    fn mark(&mut self, i: usize) {
        self.bits[i / 64] |= 1u64 << (i % 64);
        self.hash ^= self.facts.zobrist[i];
        self.conflicts.linearised(i, self.facts.footprint[i], self.facts.zobrist[i]);
    }

    /// Undoes `mark(i)`.
    fn unmark(&mut self, i: usize) {
        self.bits[i / 64] &= !(1u64 << (i % 64));
        self.hash ^= self.facts.zobrist[i];
        self.conflicts.undone(i, self.facts.footprint[i], self.facts.zobrist[i]);
    }

    /// With op `i` marked and `next_state` its state: the visited id of that new configuration,
    /// or, when a dead part or a visited configuration covers it, the conflict it fails with.
    fn visit(&mut self, i: usize, next_state: u32) -> Result<u32, u32> {
        if self.conflicts.dead_part(&mut self.states, next_state, self.facts.footprint[i]) {
            Err(self.conflict_of_footprint(i))
        } else {
            let (visited, conflicts) = (&mut self.visited, &self.conflicts);
            visited.insert(self.hash, next_state, &self.bits).map_err(|cover| conflicts.of(cover))
        }
    }

    /// Linearises op `i` (marked, visited as `visited_id`), leading to `next_state`.
    fn take(&mut self, i: usize, visited_id: u32, next_state: u32, forced: bool) {
        let call_entry = 2 * i;
        self.stack.push(Frame {
            call_entry: call_entry as u32,
            visited_id,
            state: self.state,
            optional_phase: if forced { false } else { self.optional_phase },
            forced,
            branch_footprint: self.branch_footprint,
        });
        self.conflicts.enter();
        self.state = next_state;
        self.entries.lift(call_entry);
        if self.facts.growth_pruning && self.facts.overwriter[i] {
            self.overwriter_calls[self.facts.footprint[i] as usize].remove(&(self.facts.ops[i].call, i));
        }
        if self.facts.ops[i].required {
            self.required_left -= 1;
        } else {
            self.optional_left -= 1;
        }
        self.fresh = true;
    }

    /// One move of the walk: arriving at a new configuration, or one entry of the current one.
    /// `Some` when the configuration is dead.
    fn walk_one(&mut self) -> Option<DeadEnd> {
        if self.fresh {
            self.fresh = false;
            match self.arrive() {
                Arrival::Forced => return None,
                Arrival::Dead(dead_end) => return Some(dead_end),
                Arrival::Branch => {}
            }
        }
        self.advance()
    }

    /// At a configuration not seen before: a required read-only op (a read, an observed compare
    /// failure) that is legal now goes now, with no alternatives: any linearisation from here
    /// that puts it later can put it here instead, since it is callable (no unlinearised op
    /// returned before its call) and it changes nothing for the ops it would jump over. If that
    /// configuration was seen already it failed (it cannot be on the current path, which has
    /// fewer ops), so this one fails too.
    ///
    /// Growth pruning: a required read not linearised yet will be, later, in a state that
    /// extends the current one if no op that overwrites the state (a put, a write) can come
    /// before it (none still unlinearised was invoked before the read returned): every op in
    /// between only grows the state. If no extension of the current state satisfies the read,
    /// this configuration is dead. That holds for reads further down the list too, not only
    /// callable ones, so the walk looks ahead a bounded number of entries.
    fn arrive(&mut self) -> Arrival {
        let scan = self.scan_ahead();
        if let Some(i) = scan.doomed {
            return Arrival::Dead(DeadEnd { stuck: Some(i), conflict: self.conflict_of_footprint(i) });
        }
        if let Some(e) = scan.forced_entry {
            let i = e / 2;
            self.mark(i);
            return match self.visit(i, self.state) {
                Ok(visited_id) => {
                    self.take(i, visited_id, self.state, true);
                    Arrival::Forced
                }
                Err(conflict) => {
                    self.unmark(i);
                    Arrival::Dead(DeadEnd { stuck: None, conflict })
                }
            };
        }
        self.entry = self.entries.first();
        self.optional_phase = false;
        // Branch on the ops of the first pending return's footprint only (see "One footprint at
        // a time" above).
        self.branch_footprint = match scan.first_return_footprint {
            _ if self.facts.n_footprints < 2 => 0,
            Some(f) => f,
            None => {
                let mut e = self.entry;
                while e.is_multiple_of(2) {
                    e = self.entries.after(e);
                }
                self.facts.footprint[e / 2]
            }
        };
        Arrival::Branch
    }

    /// The look ahead of `arrive`: through the callable ops for a forced read, and (with growth
    /// pruning) a bounded way further for a doomed one.
    fn scan_ahead(&mut self) -> Scan {
        let facts = &self.facts;
        let mut scan = Scan { doomed: None, forced_entry: None, first_return_footprint: None };
        let mut e = self.entries.first();
        let mut in_callable_region = true;
        let (mut walked, mut reads_ahead) = (0, 0);
        while e != self.entries.tail
            && walked < facts.lookahead_entries
            && reads_ahead < facts.lookahead_reads
            && (in_callable_region || facts.growth_pruning)
        {
            walked += 1;
            let i = e / 2;
            if e % 2 == 1 {
                if in_callable_region {
                    scan.first_return_footprint = Some(facts.footprint[i]);
                }
                in_callable_region = false;
            } else if facts.read_only[i] {
                if !in_callable_region {
                    reads_ahead += 1;
                }
                if facts.growth_pruning {
                    let first_overwriter_call =
                        self.overwriter_calls[facts.footprint[i] as usize].first().map_or(u64::MAX, |&(call, _)| call);
                    let no_overwrite_before = facts.ops[i].ret.is_some_and(|r| r < first_overwriter_call);
                    if no_overwrite_before
                        && !self.model.may_grow_into(&self.states.states[self.state as usize], &facts.ops[i].op)
                    {
                        scan.doomed = Some(i);
                        break;
                    }
                }
                if in_callable_region
                    && scan.forced_entry.is_none()
                    && self.states.step(self.state, i, &facts.ops[i].op) == Some(self.state)
                {
                    scan.forced_entry = Some(e);
                    if !facts.growth_pruning {
                        break;
                    }
                }
            }
            e = self.entries.after(e);
        }
        scan
    }

    /// Handles the entry the walk is at: a call is tried (or skipped by a rule), the return of an
    /// op not linearised yet ends this phase's callable ops. `Some` when the configuration is
    /// dead.
    fn advance(&mut self) -> Option<DeadEnd> {
        let entry = self.entry;
        debug_assert!(entry != self.entries.tail, "the list ends in a return, so the walk backtracks before the tail");
        let op_index = entry / 2;
        if entry.is_multiple_of(2) {
            self.try_call(op_index);
            self.entry = self.entries.after(entry);
            return None;
        }
        // The return of an op not linearised yet: the end of the callable ops.
        debug_assert!(self.facts.ops[op_index].required, "only required ops have returns before the end");
        if !self.optional_phase && self.optional_left > 0 {
            self.optional_phase = true;
            self.entry = self.entries.first();
            return None;
        }
        // Nothing callable can go: this path is dead.
        Some(DeadEnd { stuck: Some(op_index), conflict: self.conflicts.stuck(self.facts.footprint[op_index]) })
    }

    /// At the call of op `i`: skipped if a rule says it need not be tried here, else linearised
    /// if the model allows it and the configuration it leads to is new.
    fn try_call(&mut self, i: usize) {
        let facts = &self.facts;
        if facts.ops[i].required == self.optional_phase {
            // Not this phase's kind of op.
            return;
        }
        if facts.footprint[i] != self.branch_footprint {
            // Another footprint's op: tried once this footprint's first return is linearised.
            return;
        }
        if facts.same_optional_before[i].is_some_and(|j| self.bits[j / 64] & (1u64 << (j % 64)) == 0) {
            // An identical optional op invoked earlier is callable too and still unused: the two
            // are interchangeable, so only the earlier one is tried first.
            return;
        }
        if facts.overwrites[i]
            && self.stack.last().is_some_and(|f| {
                let before = f.call_entry as usize / 2;
                !facts.ops[before].required && facts.footprint[before] == facts.footprint[i]
            })
        {
            // The last step was an optional op of this footprint: this overwrite would erase it,
            // and linearising it one step earlier, without that optional op, reaches the same
            // state having used less. That configuration was tried from the step before.
            let conflict = if self.conflicts.enabled { self.skipped_overwrite_conflict(i) } else { WHOLE };
            self.conflicts.child_failed(self.facts.footprint[i], conflict);
            return;
        }
        let step = self.states.step(self.state, i, &self.facts.ops[i].op);
        // An optional op that leaves the state as it is gains nothing: the configuration without
        // it (the current one) has every future this one would have.
        let Some(next_state) = step.filter(|&s| self.facts.ops[i].required || s != self.state) else { return };
        self.mark(i);
        match self.visit(i, next_state) {
            Ok(visited_id) => self.take(i, visited_id, next_state, false),
            Err(conflict) => {
                self.unmark(i);
                self.conflicts.child_failed(self.facts.footprint[i], conflict);
            }
        }
    }

    /// The conflict of an overwrite `i` skipped right after an optional op (see `Conflicts`):
    /// when a failed configuration or dead part covers the child it would have made (usually the
    /// one the parent reached with the overwrite alone, tried before when the overwrite is
    /// required), the child fails for that one's reason, if it is the overwrite's footprint;
    /// else the whole configuration's.
    fn skipped_overwrite_conflict(&mut self, i: usize) -> u32 {
        let Some(next_state) = self.states.step(self.state, i, &self.facts.ops[i].op) else { return WHOLE };
        let footprint = self.facts.footprint[i];
        self.mark(i);
        let conflict = if self.conflicts.dead_part(&mut self.states, next_state, footprint) {
            footprint
        } else {
            self.visited.find_cover(self.hash, next_state, &self.bits).map_or(WHOLE, |cover| self.conflicts.of(cover))
        };
        self.unmark(i);
        if conflict == footprint {
            conflict
        } else {
            WHOLE
        }
    }

    /// Keeps what explanations want of a dead end at `stuck_op`: the deepest one, and the states
    /// stuck at the watched op.
    fn observe_stuck(&self, stuck_op: usize, observe: Observe, report: &mut SearchReport<M::State>) {
        if report.deepest.as_ref().is_none_or(|d| self.stack.len() > d.order.len()) {
            report.deepest = Some(Deepest {
                order: self.stack.iter().map(|f| f.call_entry as usize / 2).collect(),
                state: self.states.states[self.state as usize].clone(),
                stuck_op,
            });
        }
        if observe.watch == Some(stuck_op) && report.stuck_states.len() < MAX_STUCK_STATES {
            let s = &self.states.states[self.state as usize];
            if !report.stuck_states.contains(s) {
                report.stuck_states.push(s.clone());
            }
        }
    }

    /// Backtracks from a configuration that failed with `conflict`: undoes the last choice; undoes
    /// forced steps too, since their configurations fail exactly when the one before them does,
    /// and steps of footprints outside the conflict (backjumping, see `Conflicts`). `Err` with
    /// the root's conflict when nothing is left to try.
    fn backtrack(&mut self, conflict: u32) -> Result<(), u32> {
        loop {
            let current_id = self.stack.last().map_or(self.root_id, |f| f.visited_id);
            self.conflicts.failed(current_id, conflict, &mut self.states, self.state);
            let Some(frame) = self.stack.pop() else { return Err(conflict) };
            let call_entry = frame.call_entry as usize;
            let undone = call_entry / 2;
            self.unmark(undone);
            self.state = frame.state;
            self.entries.unlift(call_entry);
            let facts = &self.facts;
            if facts.growth_pruning && facts.overwriter[undone] {
                self.overwriter_calls[facts.footprint[undone] as usize].insert((facts.ops[undone].call, undone));
            }
            if facts.ops[undone].required {
                self.required_left += 1;
            } else {
                self.optional_left += 1;
            }
            if !frame.forced && (conflict == WHOLE || conflict == facts.footprint[undone]) {
                self.conflicts.child_failed(facts.footprint[undone], conflict);
                self.entry = self.entries.after(call_entry);
                self.optional_phase = frame.optional_phase;
                self.branch_footprint = frame.branch_footprint;
                return Ok(());
            }
        }
    }

    /// What the search holds, for the memory budget.
    fn approx_bytes(&self) -> u64 {
        self.states.approx_bytes() + self.visited.approx_bytes() + self.conflicts.approx_bytes()
    }
}

/// Checks one partition: can `ops` be linearised against `model` starting in `init`?
pub fn search<M: Model>(
    model: &M,
    init: M::State,
    ops: &[SearchOp<M::Op>],
    budget: &Budget<'_>,
    observe: Observe,
) -> SearchReport<M::State> {
    let mut report = SearchReport {
        verdict: SearchVerdict::Valid,
        configurations: 0,
        states: 0,
        deepest: None,
        stuck_states: Vec::new(),
        linearization: None,
        dead_footprint: None,
    };
    if ops.iter().all(|o| !o.required) {
        report.linearization = observe.linearization.then(Vec::new);
        return report;
    }
    assert!(ops.len() < (u32::MAX as usize) / 2 - 2, "partition too large");
    let mut search = Search::new(model, init, ops);
    let mut iterations: u64 = 0;
    loop {
        if search.required_left == 0 {
            report.verdict = SearchVerdict::Valid;
            if observe.linearization {
                report.linearization = Some(search.stack.iter().map(|f| f.call_entry as usize / 2).collect());
            }
            break;
        }
        iterations += 1;
        if iterations & 0xFFF == 0 {
            if budget.max_configurations.is_some_and(|max| search.visited.len() as u64 > max) {
                report.verdict = SearchVerdict::Unknown(CONFIGURATION_BUDGET.into());
                break;
            }
            if let Some(reason) = over_budget(budget, search.approx_bytes()) {
                report.verdict = SearchVerdict::Unknown(reason);
                break;
            }
        }
        let Some(dead_end) = search.walk_one() else { continue };
        if let Some(stuck_op) = dead_end.stuck {
            search.observe_stuck(stuck_op, observe, &mut report);
        }
        if let Err(root_conflict) = search.backtrack(dead_end.conflict) {
            report.verdict = SearchVerdict::Invalid;
            // The root failed with this conflict: its f-subproblem, f's ops from the initial
            // state, has no completion.
            report.dead_footprint = (root_conflict != WHOLE).then_some(root_conflict);
            break;
        }
    }
    report.configurations = search.visited.len() as u64;
    report.states = search.states.states.len() as u64;
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
