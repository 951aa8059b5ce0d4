//! Inferring dependencies between transactions (Adya's ww, wr and rw, plus process and real-time
//! order) and the anomalies that need no cycle (aborted and intermediate reads, internal
//! inconsistency, duplicated elements, incompatible version orders, reads of values nobody wrote).
//!
//! List-append: every committed read of a key is a prefix of that key's one version order, so the
//! longest read *is* the order, as far as anyone observed it; a read that is not a prefix of it is
//! an incompatible order. Appends no read saw come after every observed one (lists only grow).
//! rw-register: versions are not ordered by reads; the order known is "never written" before every
//! write, and what a transaction read before what it then wrote to the same key (its read value had
//! committed before it read, its write commits later).

use hashbrown::{HashMap, HashSet};
use serde::Serialize;

use super::history::{KeyId, Mop, Observed, TxnHistory, TxnId, TxnModel, TxnStatus, ValueId};

/// The kinds of dependency edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    /// Write-write: the target overwrote (or appended after) the source's version.
    Ww,
    /// Write-read: the target read the source's version.
    Wr,
    /// Read-write (anti-dependency): the source read a version the target then overwrote.
    Rw,
    /// The source completed before the target was invoked, on the same process.
    Process,
    /// The source completed before the target was invoked.
    Realtime,
}

impl EdgeKind {
    pub const fn bit(self) -> u8 {
        1 << (self as u8)
    }

    pub fn name(self) -> &'static str {
        match self {
            EdgeKind::Ww => "ww",
            EdgeKind::Wr => "wr",
            EdgeKind::Rw => "rw",
            EdgeKind::Process => "process",
            EdgeKind::Realtime => "realtime",
        }
    }
}

/// Why an edge is there: enough to explain it to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The key's version order has `to_value` after `from_value`: right after it as observed, or
    /// (a list-append value no read saw) somewhere after the last version any read saw.
    WriteWrite {
        key: KeyId,
        from_value: ValueId,
        to_value: ValueId,
    },
    /// The target's read of `key` saw `value`, written by the source.
    WriteRead {
        key: KeyId,
        value: ValueId,
    },
    /// The source read `key` as `read_last` (the last element, or the register value; `None`:
    /// empty or never written), and the target wrote `next_value`, a later version.
    ReadWrite {
        key: KeyId,
        read_last: Option<ValueId>,
        next_value: ValueId,
    },
    Process,
    Realtime,
}

impl Why {
    pub fn kind(&self) -> EdgeKind {
        match self {
            Why::WriteWrite { .. } => EdgeKind::Ww,
            Why::WriteRead { .. } => EdgeKind::Wr,
            Why::ReadWrite { .. } => EdgeKind::Rw,
            Why::Process => EdgeKind::Process,
            Why::Realtime => EdgeKind::Realtime,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub from: TxnId,
    pub to: TxnId,
    pub why: Why,
}

/// Anomalies found without looking for cycles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// G1a: a committed read saw a value written by an aborted transaction.
    AbortedRead { reader: TxnId, mop: usize, key: KeyId, value: ValueId, writer: TxnId },
    /// G1b: a committed read saw a version its writer later overwrote within the same transaction.
    IntermediateRead { reader: TxnId, mop: usize, key: KeyId, value: ValueId, writer: TxnId },
    /// A read disagrees with what the transaction itself read or wrote before.
    Internal { txn: TxnId, mop: usize, key: KeyId, expected: String },
    /// A list read holds one appended value more than once.
    DuplicateElements { reader: TxnId, mop: usize, key: KeyId, value: ValueId },
    /// Two reads of one key that are not prefixes of one another: no single version order.
    IncompatibleOrder { key: KeyId, first: (TxnId, usize), second: (TxnId, usize) },
    /// A read saw a value no transaction wrote.
    GarbageRead { reader: TxnId, mop: usize, key: KeyId, value: ValueId },
}

/// What inference produced.
#[derive(Debug, Default)]
pub struct Inferred {
    pub edges: Vec<Edge>,
    pub facts: Vec<Fact>,
}

/// Who wrote a version: the transaction and the micro-op.
#[derive(Debug, Clone, Copy)]
struct Writer {
    txn: TxnId,
    /// Not the transaction's last write to the key.
    intermediate: bool,
}

fn writers(history: &TxnHistory) -> HashMap<(KeyId, ValueId), Writer> {
    let mut writers = HashMap::new();
    for (t, txn) in history.txns.iter().enumerate() {
        for (i, mop) in txn.mops.iter().enumerate() {
            if let Mop::Append { key, value } | Mop::Write { key, value } = mop {
                let later = txn.mops[i + 1..]
                    .iter()
                    .any(|m| matches!(m, Mop::Append { key: k, .. } | Mop::Write { key: k, .. } if k == key));
                writers.insert((*key, *value), Writer { txn: t as TxnId, intermediate: later });
            }
        }
    }
    writers
}

/// Infers the data dependencies (ww, wr, rw) and the non-cycle anomalies.
pub fn infer(history: &TxnHistory) -> Inferred {
    let writers = writers(history);
    let mut inferred = Inferred::default();
    internal_consistency(history, &mut inferred.facts);
    match history.model {
        TxnModel::ListAppend => list_append(history, &writers, &mut inferred),
        TxnModel::RwRegister => rw_register(history, &writers, &mut inferred),
    }
    inferred
}

/// Within one committed transaction, each read must show what the transaction read before, with
/// its own appends (or its last write) since.
fn internal_consistency(history: &TxnHistory, facts: &mut Vec<Fact>) {
    // key -> (the last read or written value, appended since); reused across transactions
    let mut state: Vec<(KeyId, Option<Known>, Vec<ValueId>)> = Vec::new();
    for (t, txn) in history.txns.iter().enumerate() {
        if txn.status != TxnStatus::Committed {
            continue;
        }
        state.clear();
        for (i, mop) in txn.mops.iter().enumerate() {
            let key = mop.key();
            let slot = match state.iter().position(|(k, _, _)| *k == key) {
                Some(slot) => slot,
                None => {
                    state.push((key, None, Vec::new()));
                    state.len() - 1
                }
            };
            let (_, known, appended) = &mut state[slot];
            match mop {
                Mop::Append { value, .. } => appended.push(*value),
                Mop::Write { value, .. } => *known = Some(Known::Written(*value)),
                Mop::Read { observed, .. } => {
                    let consistent = match (&*known, observed) {
                        (Some(Known::Read(Observed::List(before))), Observed::List(list)) => {
                            list.len() == before.len() + appended.len()
                                && list.starts_with(before)
                                && list.ends_with(appended)
                        }
                        (Some(Known::Read(before)), o) => *before == o,
                        (Some(Known::Written(v)), Observed::Register(o)) => *o == Some(*v),
                        (Some(Known::Written(_)), _) => false,
                        // First read after own appends: the list must end with them.
                        (None, Observed::List(list)) => list.ends_with(appended),
                        (None, _) => true,
                    };
                    if !consistent {
                        let expected = match &*known {
                            Some(Known::Read(Observed::List(before))) => {
                                let mut list = before.to_vec();
                                list.extend_from_slice(appended);
                                history.describe_list(&list)
                            }
                            Some(Known::Read(before)) => history.describe_observed(before),
                            Some(Known::Written(v)) => history.value(*v).to_string(),
                            None => format!("a list ending with {}", history.describe_list(appended)),
                        };
                        facts.push(Fact::Internal { txn: t as TxnId, mop: i, key, expected });
                    }
                    *known = Some(Known::Read(observed));
                    appended.clear();
                }
            }
        }
    }
}

/// What a transaction knows of a key from its own earlier micro-ops.
enum Known<'a> {
    Read(&'a Observed),
    Written(ValueId),
}

/// One key's version order as observed: its longest committed read, with each position's writer.
struct KeyOrder<'a> {
    read: (TxnId, usize),
    order: &'a [ValueId],
    /// Writer of each position (`None`: nobody appended it).
    writers: Vec<Option<Writer>>,
    /// Positions a read must not reach: garbage, aborted writes, the second copy of a duplicate.
    bad: Vec<(usize, Bad)>,
    /// Whether the order itself holds a value twice (then no edges come from this key).
    duplicated: bool,
}

#[derive(Clone, Copy)]
enum Bad {
    Garbage,
    Aborted(TxnId),
    Duplicate,
}

fn list_append(history: &TxnHistory, writers: &HashMap<(KeyId, ValueId), Writer>, inferred: &mut Inferred) {
    let committed_reads = || {
        history.txns.iter().enumerate().filter(|(_, txn)| txn.status == TxnStatus::Committed).flat_map(|(t, txn)| {
            txn.mops.iter().enumerate().filter_map(move |(i, mop)| match mop {
                Mop::Read { key, observed: Observed::List(list) } => Some((t as TxnId, i, *key, list.as_slice())),
                _ => None,
            })
        })
    };
    // The longest committed read of each key is its version order as far as anyone saw it.
    let mut longest: Vec<Option<(TxnId, usize, &[ValueId])>> = vec![None; history.keys.len()];
    for (t, i, key, list) in committed_reads() {
        let slot = &mut longest[key as usize];
        if slot.is_none_or(|(_, _, l)| list.len() > l.len()) {
            *slot = Some((t, i, list));
        }
    }
    let mut observed: HashSet<(KeyId, ValueId)> = HashSet::new();
    let mut orders: Vec<Option<KeyOrder>> = Vec::with_capacity(history.keys.len());
    let mut seen: HashSet<ValueId> = HashSet::new();
    for (key, slot) in longest.iter().enumerate() {
        let Some((t, i, order)) = *slot else {
            orders.push(None);
            continue;
        };
        let key = key as KeyId;
        let mut key_order = KeyOrder {
            read: (t, i),
            order,
            writers: Vec::with_capacity(order.len()),
            bad: Vec::new(),
            duplicated: false,
        };
        seen.clear();
        for (p, &value) in order.iter().enumerate() {
            observed.insert((key, value));
            if !seen.insert(value) {
                key_order.bad.push((p, Bad::Duplicate));
                key_order.duplicated = true;
            }
            let writer = writers.get(&(key, value)).copied();
            match writer {
                None => key_order.bad.push((p, Bad::Garbage)),
                Some(w) if history.txns[w.txn as usize].status == TxnStatus::Aborted => {
                    key_order.bad.push((p, Bad::Aborted(w.txn)))
                }
                Some(_) => {}
            }
            key_order.writers.push(writer);
        }
        orders.push(Some(key_order));
    }
    // Per key, appenders (committed) no read saw: they come after every observed version.
    let mut unobserved: Vec<Vec<(TxnId, ValueId)>> = vec![Vec::new(); history.keys.len()];
    for (&(key, value), w) in writers {
        if history.txns[w.txn as usize].status == TxnStatus::Committed && !observed.contains(&(key, value)) {
            unobserved[key as usize].push((w.txn, value));
        }
    }
    for list in &mut unobserved {
        list.sort_unstable();
    }
    drop(observed);

    let node = |w: &Writer| history.txns[w.txn as usize].may_have_committed();
    // ww: consecutive observed versions, then the last observed before each unobserved append.
    for (key, key_order) in orders.iter().enumerate() {
        let Some(key_order) = key_order.as_ref().filter(|o| !o.duplicated) else {
            continue;
        };
        let key = key as KeyId;
        for p in 1..key_order.order.len() {
            let (Some(a), Some(b)) = (key_order.writers[p - 1], key_order.writers[p]) else {
                continue;
            };
            if a.txn != b.txn && node(&a) && node(&b) {
                let why = Why::WriteWrite { key, from_value: key_order.order[p - 1], to_value: key_order.order[p] };
                inferred.edges.push(Edge { from: a.txn, to: b.txn, why });
            }
        }
        if let (Some(&last), Some(Some(a))) = (key_order.order.last(), key_order.writers.last()) {
            if node(a) {
                for &(b, value) in &unobserved[key as usize] {
                    if b != a.txn {
                        let why = Why::WriteWrite { key, from_value: last, to_value: value };
                        inferred.edges.push(Edge { from: a.txn, to: b, why });
                    }
                }
            }
        }
    }

    // Each committed read: the anomalies it shows, its wr edge and its rw edges.
    for (t, i, key, list) in committed_reads() {
        let Some(key_order) = &orders[key as usize] else {
            continue;
        };
        let txn = &history.txns[t as usize];
        if !key_order.order.starts_with(list) {
            inferred.facts.push(Fact::IncompatibleOrder { key, first: key_order.read, second: (t, i) });
            incompatible_read(history, writers, (t, i, key, list), inferred);
            continue;
        }
        for &(p, bad) in key_order.bad.iter().take_while(|(p, _)| *p < list.len()) {
            let value = list[p];
            inferred.facts.push(match bad {
                Bad::Garbage => Fact::GarbageRead { reader: t, mop: i, key, value },
                Bad::Aborted(writer) => Fact::AbortedRead { reader: t, mop: i, key, value, writer },
                Bad::Duplicate => Fact::DuplicateElements { reader: t, mop: i, key, value },
            });
        }
        if key_order.duplicated {
            continue;
        }
        // G1b: the last element of a read is the version the reader saw; if its writer
        // appended again to this key, the reader saw an intermediate state.
        if let Some(Some(w)) = list.len().checked_sub(1).map(|p| key_order.writers[p]) {
            if w.intermediate && w.txn != t {
                inferred.facts.push(Fact::IntermediateRead {
                    reader: t,
                    mop: i,
                    key,
                    value: list[list.len() - 1],
                    writer: w.txn,
                });
            }
        }
        // wr: the last element not appended by the reader itself.
        let foreign = (0..list.len()).rev().find(|p| key_order.writers[*p].is_none_or(|w| w.txn != t));
        if let Some(Some(w)) = foreign.map(|p| key_order.writers[p]) {
            if node(&w) {
                let value = list[foreign.unwrap_or(0)];
                inferred.edges.push(Edge { from: w.txn, to: t, why: Why::WriteRead { key, value } });
            }
        }
        // rw: the reader saw the key before the next version (external reads only: after its own
        // append, the reader's ww edge says the same).
        if txn.mops[..i].iter().any(|m| matches!(m, Mop::Append { key: k, .. } if *k == key)) {
            continue;
        }
        let read_last = list.last().copied();
        if let Some(next) = key_order.writers.get(list.len()) {
            if let Some(w) = next.filter(|w| node(w) && w.txn != t) {
                let why = Why::ReadWrite { key, read_last, next_value: key_order.order[list.len()] };
                inferred.edges.push(Edge { from: t, to: w.txn, why });
            }
        } else {
            for &(b, value) in &unobserved[key as usize] {
                if b != t {
                    let why = Why::ReadWrite { key, read_last, next_value: value };
                    inferred.edges.push(Edge { from: t, to: b, why });
                }
            }
        }
    }
}

/// A read that is not a prefix of its key's order: its own anomalies and its wr edge, no rw edge
/// (where it stands in the order is not known).
fn incompatible_read(
    history: &TxnHistory,
    writers: &HashMap<(KeyId, ValueId), Writer>,
    (t, i, key, list): (TxnId, usize, KeyId, &[ValueId]),
    inferred: &mut Inferred,
) {
    let mut seen = HashSet::new();
    for &value in list {
        if !seen.insert(value) {
            inferred.facts.push(Fact::DuplicateElements { reader: t, mop: i, key, value });
            return;
        }
        match writers.get(&(key, value)) {
            None => inferred.facts.push(Fact::GarbageRead { reader: t, mop: i, key, value }),
            Some(w) if history.txns[w.txn as usize].status == TxnStatus::Aborted => {
                inferred.facts.push(Fact::AbortedRead { reader: t, mop: i, key, value, writer: w.txn })
            }
            _ => {}
        }
    }
    let foreign_last = list.iter().rev().find(|v| writers.get(&(key, **v)).is_none_or(|w| w.txn != t));
    if let Some(&value) = foreign_last {
        if let Some(w) = writers.get(&(key, value)).filter(|w| history.txns[w.txn as usize].may_have_committed()) {
            inferred.edges.push(Edge { from: w.txn, to: t, why: Why::WriteRead { key, value } });
        }
    }
}

fn rw_register(history: &TxnHistory, writers: &HashMap<(KeyId, ValueId), Writer>, inferred: &mut Inferred) {
    let node = |w: &Writer| history.txns[w.txn as usize].may_have_committed();
    // External reads: (key, value or None) -> readers; version order pairs: (key, before) -> after.
    let mut readers: HashMap<(KeyId, Option<ValueId>), Vec<TxnId>> = HashMap::new();
    let mut successors: HashMap<(KeyId, Option<ValueId>), Vec<ValueId>> = HashMap::new();
    let mut has_predecessor: HashSet<(KeyId, ValueId)> = HashSet::new();
    for (t, txn) in history.txns.iter().enumerate() {
        let t = t as TxnId;
        for (i, mop) in txn.mops.iter().enumerate() {
            let earlier = &txn.mops[..i];
            match mop {
                Mop::Read { key, observed: Observed::Register(value) } if txn.status == TxnStatus::Committed => {
                    let key = *key;
                    if earlier.iter().any(|m| m.key() == key) {
                        continue; // not external: internal consistency covers it
                    }
                    readers.entry((key, *value)).or_default().push(t);
                    let Some(value) = *value else {
                        continue;
                    };
                    match writers.get(&(key, value)) {
                        None => inferred.facts.push(Fact::GarbageRead { reader: t, mop: i, key, value }),
                        Some(w) if history.txns[w.txn as usize].status == TxnStatus::Aborted => {
                            inferred.facts.push(Fact::AbortedRead { reader: t, mop: i, key, value, writer: w.txn })
                        }
                        Some(w) if w.txn != t => {
                            if w.intermediate {
                                inferred.facts.push(Fact::IntermediateRead {
                                    reader: t,
                                    mop: i,
                                    key,
                                    value,
                                    writer: w.txn,
                                });
                            }
                            inferred.edges.push(Edge { from: w.txn, to: t, why: Why::WriteRead { key, value } });
                        }
                        Some(_) => {}
                    }
                }
                Mop::Write { key, value } if txn.may_have_committed() => {
                    // The first write to a key after an external read of it follows the value read.
                    let key = *key;
                    if earlier.iter().any(|m| matches!(m, Mop::Write { key: k, .. } if *k == key)) {
                        continue;
                    }
                    let read = earlier.iter().find_map(|m| match m {
                        Mop::Read { key: k, observed: Observed::Register(v) } if *k == key => Some(*v),
                        _ => None,
                    });
                    match read {
                        Some(before) => {
                            successors.entry((key, before)).or_default().push(*value);
                            if before.is_some() {
                                has_predecessor.insert((key, *value));
                            }
                        }
                        None => successors.entry((key, None)).or_default().push(*value),
                    }
                }
                _ => {}
            }
        }
    }
    // Every version follows "never written"; a read of nil is directly before those with no other
    // known predecessor.
    for ((key, before), afters) in &successors {
        for &after in afters {
            if before.is_none() && has_predecessor.contains(&(*key, after)) {
                continue;
            }
            let Some(b) = writers.get(&(*key, after)).filter(|w| node(w)) else {
                continue;
            };
            if let Some(before_value) = before {
                if let Some(a) = writers.get(&(*key, *before_value)).filter(|w| node(w)) {
                    if a.txn != b.txn {
                        let why = Why::WriteWrite { key: *key, from_value: *before_value, to_value: after };
                        inferred.edges.push(Edge { from: a.txn, to: b.txn, why });
                    }
                }
            }
            for &reader in readers.get(&(*key, *before)).map(Vec::as_slice).unwrap_or(&[]) {
                if reader != b.txn {
                    let why = Why::ReadWrite { key: *key, read_last: *before, next_value: after };
                    inferred.edges.push(Edge { from: reader, to: b.txn, why });
                }
            }
        }
    }
}

/// Process edges (each committed transaction before the next of its process) and real-time edges
/// (each completed transaction before every transaction invoked after it), the latter transitively
/// reduced: a transaction that completed before another's invocation is dropped from the frontier
/// when that other one completes, since every later edge from it is implied through the other.
pub fn order_edges(history: &TxnHistory, realtime: bool, edges: &mut Vec<Edge>) {
    let mut last_of_process: HashMap<u64, TxnId> = HashMap::new();
    let mut by_call: Vec<TxnId> =
        (0..history.txns.len() as TxnId).filter(|t| history.txns[*t as usize].may_have_committed()).collect();
    by_call.sort_by_key(|t| history.txns[*t as usize].call_position);
    for &t in &by_call {
        let txn = &history.txns[t as usize];
        if let Some(previous) = last_of_process.insert(txn.process, t) {
            if history.txns[previous as usize].status == TxnStatus::Committed {
                edges.push(Edge { from: previous, to: t, why: Why::Process });
            }
        }
    }
    if !realtime {
        return;
    }
    // Events: (position, is completion, txn).
    let mut events: Vec<(u64, bool, TxnId)> = Vec::with_capacity(by_call.len() * 2);
    for &t in &by_call {
        let txn = &history.txns[t as usize];
        events.push((txn.call_position, false, t));
        if let (TxnStatus::Committed, Some(ret)) = (txn.status, txn.return_position) {
            events.push((ret, true, t));
        }
    }
    events.sort_unstable();
    let mut frontier: Vec<TxnId> = Vec::new();
    let mut frontier_at_call: HashMap<TxnId, Vec<TxnId>> = HashMap::new();
    for (_, is_completion, t) in events {
        if is_completion {
            let before = frontier_at_call.remove(&t).unwrap_or_default();
            frontier.retain(|f| !before.contains(f));
            frontier.push(t);
        } else {
            for &f in &frontier {
                edges.push(Edge { from: f, to: t, why: Why::Realtime });
            }
            if history.txns[t as usize].status == TxnStatus::Committed {
                frontier_at_call.insert(t, frontier.clone());
            }
        }
    }
}
