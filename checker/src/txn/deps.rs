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
    WriteWrite { key: KeyId, from_value: ValueId, to_value: ValueId },
    /// The target's read of `key` saw `value`, written by the source.
    WriteRead { key: KeyId, value: ValueId },
    /// The source read `key` as `read_last` (the last element, or the register value; `None`:
    /// empty or never written), and the target wrote `next_value`, a later version.
    ReadWrite { key: KeyId, read_last: Option<ValueId>, next_value: ValueId },
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
    // key -> (what is known of the value, appended since); reused across transactions
    let mut state: Vec<(KeyId, Option<Observed>, Vec<ValueId>)> = Vec::new();
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
                Mop::Write { value, .. } => *known = Some(Observed::Register(Some(*value))),
                Mop::Read { observed, .. } => {
                    let expected: Option<Observed> = match (&*known, observed) {
                        (Some(Observed::List(before)), Observed::List(_)) => {
                            let mut list = before.clone();
                            list.extend_from_slice(appended);
                            Some(Observed::List(list))
                        }
                        (Some(k), _) => Some(k.clone()),
                        (None, _) => None,
                    };
                    let consistent = match (&expected, observed) {
                        (Some(e), o) => e == o,
                        // First read after own appends: the list must end with them.
                        (None, Observed::List(list)) => list.ends_with(appended),
                        (None, _) => true,
                    };
                    if !consistent {
                        let expected = match &expected {
                            Some(e) => history.describe_observed(e),
                            None => format!("a list ending with {}", history.describe_list(appended)),
                        };
                        facts.push(Fact::Internal { txn: t as TxnId, mop: i, key, expected });
                    }
                    *known = Some(observed.clone());
                    appended.clear();
                }
            }
        }
    }
}

fn list_append(history: &TxnHistory, writers: &HashMap<(KeyId, ValueId), Writer>, inferred: &mut Inferred) {
    // Per key: the longest committed read (the version order as observed), as (txn, mop).
    let mut longest: HashMap<KeyId, (TxnId, usize)> = HashMap::new();
    let list_of = |(t, m): (TxnId, usize)| -> &[ValueId] {
        match &history.txns[t as usize].mops[m] {
            Mop::Read { observed: Observed::List(list), .. } => list,
            _ => &[],
        }
    };
    let mut duplicate_free = HashSet::new();
    let mut seen_in_read: HashSet<ValueId> = HashSet::new();
    for (t, txn) in history.txns.iter().enumerate() {
        if txn.status != TxnStatus::Committed {
            continue;
        }
        let t = t as TxnId;
        for (i, mop) in txn.mops.iter().enumerate() {
            let Mop::Read { key, observed: Observed::List(list) } = mop else {
                continue;
            };
            let key = *key;
            seen_in_read.clear();
            let mut duplicated = false;
            for &value in list {
                if !seen_in_read.insert(value) {
                    inferred.facts.push(Fact::DuplicateElements { reader: t, mop: i, key, value });
                    duplicated = true;
                    break;
                }
                match writers.get(&(key, value)) {
                    None => inferred.facts.push(Fact::GarbageRead { reader: t, mop: i, key, value }),
                    Some(w) if history.txns[w.txn as usize].status == TxnStatus::Aborted => {
                        inferred.facts.push(Fact::AbortedRead { reader: t, mop: i, key, value, writer: w.txn })
                    }
                    _ => {}
                }
            }
            // G1b: the last element of a read is the version the reader saw; if its writer
            // appended again to this key, the reader saw an intermediate state.
            if let Some(&last) = list.last() {
                if let Some(w) = writers.get(&(key, last)) {
                    if w.intermediate && w.txn != t {
                        inferred.facts.push(Fact::IntermediateRead { reader: t, mop: i, key, value: last, writer: w.txn });
                    }
                }
            }
            if duplicated {
                continue;
            }
            duplicate_free.insert((t, i));
            let entry = longest.entry(key).or_insert((t, i));
            if list.len() > list_of(*entry).len() {
                *entry = (t, i);
            }
        }
    }

    // Positions of the observed versions, and incompatible reads.
    let mut position: HashMap<(KeyId, ValueId), u32> = HashMap::new();
    for (&key, &read) in &longest {
        for (p, &v) in list_of(read).iter().enumerate() {
            position.insert((key, v), p as u32);
        }
    }
    // Per key, appenders (committed) no read saw: they come after every observed version.
    let mut unobserved: HashMap<KeyId, Vec<(TxnId, ValueId)>> = HashMap::new();
    for (t, txn) in history.txns.iter().enumerate() {
        if txn.status != TxnStatus::Committed {
            continue;
        }
        for mop in &txn.mops {
            if let Mop::Append { key, value } = mop {
                if !position.contains_key(&(*key, *value)) {
                    unobserved.entry(*key).or_default().push((t as TxnId, *value));
                }
            }
        }
    }

    let node = |w: &Writer| history.txns[w.txn as usize].may_have_committed();
    // ww: consecutive observed versions, then the last observed before each unobserved append.
    for (&key, &read) in &longest {
        let order = list_of(read);
        for pair in order.windows(2) {
            let (Some(a), Some(b)) = (writers.get(&(key, pair[0])), writers.get(&(key, pair[1]))) else {
                continue;
            };
            if a.txn != b.txn && node(a) && node(b) {
                let why = Why::WriteWrite { key, from_value: pair[0], to_value: pair[1] };
                inferred.edges.push(Edge { from: a.txn, to: b.txn, why });
            }
        }
        if let (Some(&last), Some(later)) = (order.last(), unobserved.get(&key)) {
            if let Some(a) = writers.get(&(key, last)).filter(|a| node(a)) {
                for &(b, value) in later {
                    if b != a.txn {
                        let why = Why::WriteWrite { key, from_value: last, to_value: value };
                        inferred.edges.push(Edge { from: a.txn, to: b, why });
                    }
                }
            }
        }
    }

    // wr and rw from every committed, duplicate-free read.
    for (t, txn) in history.txns.iter().enumerate() {
        if txn.status != TxnStatus::Committed {
            continue;
        }
        let t = t as TxnId;
        for (i, mop) in txn.mops.iter().enumerate() {
            let Mop::Read { key, observed: Observed::List(list) } = mop else {
                continue;
            };
            if !duplicate_free.contains(&(t, i)) {
                continue;
            }
            let key = *key;
            let own_before = txn.mops[..i].iter().any(|m| matches!(m, Mop::Append { key: k, .. } if *k == key));
            // wr: the last element not appended by the reader itself.
            let foreign_last = list.iter().rev().find(|v| writers.get(&(key, **v)).is_none_or(|w| w.txn != t));
            if let Some(&value) = foreign_last {
                if let Some(w) = writers.get(&(key, value)).filter(|w| node(w)) {
                    inferred.edges.push(Edge { from: w.txn, to: t, why: Why::WriteRead { key, value } });
                }
            }
            let Some(&read) = longest.get(&key) else {
                continue;
            };
            let order = list_of(read);
            if !order.starts_with(list) {
                inferred.facts.push(Fact::IncompatibleOrder { key, first: read, second: (t, i) });
                continue;
            }
            // rw: the reader saw the key before the next version (external reads only: after its
            // own append, the reader's ww edge says the same).
            if own_before {
                continue;
            }
            let read_last = list.last().copied();
            if let Some(&next) = order.get(list.len()) {
                if let Some(w) = writers.get(&(key, next)).filter(|w| node(w) && w.txn != t) {
                    let why = Why::ReadWrite { key, read_last, next_value: next };
                    inferred.edges.push(Edge { from: t, to: w.txn, why });
                }
            } else if let Some(later) = unobserved.get(&key) {
                for &(b, value) in later {
                    if b != t {
                        let why = Why::ReadWrite { key, read_last, next_value: value };
                        inferred.edges.push(Edge { from: t, to: b, why });
                    }
                }
            }
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
                                inferred.facts.push(Fact::IntermediateRead { reader: t, mop: i, key, value, writer: w.txn });
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
