//! Words for anomalies: each cycle as its transactions and every edge's reason (which read saw
//! which write), each non-cycle anomaly as the reads and writes that make it.

use serde::Serialize;

use super::consistency::{AnomalyKind, Consistency};
use super::deps::{Edge, EdgeKind, Fact, Why};
use super::history::{KeyId, TxnHistory, TxnId, TxnModel, TxnStatus, ValueId};
use super::Found;

/// A transaction, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct TxnSummary {
    pub id: TxnId,
    pub process: u64,
    pub status: TxnStatus,
    pub call_line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_line: Option<usize>,
    pub call_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_time: Option<u64>,
    /// The micro-ops as Jepsen writes them, with what the reads saw.
    pub mops: String,
}

/// One edge of a cycle.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub from: TxnId,
    pub to: TxnId,
    pub edge: EdgeKind,
    pub explanation: String,
}

/// One anomaly, explained.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyReport {
    pub kind: AnomalyKind,
    pub forbidden_by: Vec<Consistency>,
    pub txns: Vec<TxnSummary>,
    /// The cycle's edges in order (empty for non-cycle anomalies).
    pub steps: Vec<StepReport>,
    pub summary: String,
    pub text: String,
}

fn summarize(history: &TxnHistory, id: TxnId) -> TxnSummary {
    let txn = &history.txns[id as usize];
    TxnSummary {
        id,
        process: txn.process,
        status: txn.status,
        call_line: txn.call_line,
        return_line: txn.return_line,
        call_time: txn.call_time,
        return_time: txn.return_time,
        mops: history.describe_txn(id),
    }
}

fn verb(history: &TxnHistory) -> &'static str {
    match history.model {
        TxnModel::ListAppend => "appended",
        TxnModel::RwRegister => "wrote",
    }
}

fn key(history: &TxnHistory, key: KeyId) -> String {
    history.key(key).to_string()
}

fn value(history: &TxnHistory, value: ValueId) -> String {
    history.value(value).to_string()
}

/// Why an edge holds, in one sentence.
pub fn explain_edge(history: &TxnHistory, edge: &Edge) -> String {
    let (a, b) = (edge.from, edge.to);
    match edge.why {
        Why::WriteWrite { key: k, from_value, to_value } => format!(
            "T{a} {} {} to key {}, and T{b} {} {} after it in {}'s version order",
            verb(history),
            value(history, from_value),
            key(history, k),
            verb(history),
            value(history, to_value),
            key(history, k)
        ),
        Why::WriteRead { key: k, value: v } => {
            format!("T{b} read key {} and saw {}, which T{a} {}", key(history, k), value(history, v), verb(history))
        }
        Why::ReadWrite { key: k, read_last, next_value } => {
            let seen = match (history.model, read_last) {
                (TxnModel::ListAppend, None) => "empty".to_string(),
                (TxnModel::ListAppend, Some(v)) => format!("ending in {}", value(history, v)),
                (TxnModel::RwRegister, None) => "nil (never written)".to_string(),
                (TxnModel::RwRegister, Some(v)) => format!("= {}", value(history, v)),
            };
            format!(
                "T{a} read key {} {seen}, a version before T{b}'s {} of {} (T{b} overwrote what T{a} read)",
                key(history, k),
                match history.model {
                    TxnModel::ListAppend => "append",
                    TxnModel::RwRegister => "write",
                },
                value(history, next_value)
            )
        }
        Why::Process => format!(
            "T{a} completed (line {}) before T{b} was invoked (line {}), both on process {}",
            history.txns[a as usize].return_line.unwrap_or(0),
            history.txns[b as usize].call_line,
            history.txns[a as usize].process
        ),
        Why::Realtime => format!(
            "T{a} completed (line {}, time {}) before T{b} was invoked (line {}, time {})",
            history.txns[a as usize].return_line.unwrap_or(0),
            history.txns[a as usize].return_time.unwrap_or(0),
            history.txns[b as usize].call_line,
            history.txns[b as usize].call_time
        ),
    }
}

fn mop_text(history: &TxnHistory, txn: TxnId, mop: usize) -> String {
    history.describe_mop(&history.txns[txn as usize].mops[mop])
}

fn fact_text(history: &TxnHistory, fact: &Fact) -> (Vec<TxnId>, String) {
    match fact {
        Fact::AbortedRead { reader, mop, key: k, value: v, writer } => (
            vec![*reader, *writer],
            format!(
                "T{reader}'s {} saw {}, which T{writer} {} to key {}, but T{writer} aborted (fail at line {})",
                mop_text(history, *reader, *mop),
                value(history, *v),
                verb(history),
                key(history, *k),
                history.txns[*writer as usize].return_line.unwrap_or(0)
            ),
        ),
        Fact::IntermediateRead { reader, mop, key: k, value: v, writer } => (
            vec![*reader, *writer],
            format!(
                "T{reader}'s {} saw {} as key {}'s latest version, but T{writer} {} to key {} again after {}: an intermediate state",
                mop_text(history, *reader, *mop),
                value(history, *v),
                key(history, *k),
                verb(history),
                key(history, *k),
                value(history, *v)
            ),
        ),
        Fact::Internal { txn, mop, key: k, expected } => (
            vec![*txn],
            format!(
                "T{txn}'s {} disagrees with its own earlier reads and writes of key {}: expected {expected}",
                mop_text(history, *txn, *mop),
                key(history, *k)
            ),
        ),
        Fact::DuplicateElements { reader, mop, key: k, value: v } => (
            vec![*reader],
            format!(
                "T{reader}'s {} shows {} more than once, but it was appended to key {} once",
                mop_text(history, *reader, *mop),
                value(history, *v),
                key(history, *k)
            ),
        ),
        Fact::IncompatibleOrder { key: k, first, second } => (
            vec![first.0, second.0],
            format!(
                "key {}: T{}'s {} and T{}'s {} are not prefixes of one another, so no single order of appends explains both",
                key(history, *k),
                first.0,
                mop_text(history, first.0, first.1),
                second.0,
                mop_text(history, second.0, second.1)
            ),
        ),
        Fact::GarbageRead { reader, mop, key: k, value: v } => (
            vec![*reader],
            format!(
                "T{reader}'s {} saw {} in key {}, which no transaction {}",
                mop_text(history, *reader, *mop),
                value(history, *v),
                key(history, *k),
                verb(history)
            ),
        ),
    }
}

fn cycle_summary(kind: AnomalyKind) -> &'static str {
    use super::cycles::CycleClass::*;
    match kind {
        AnomalyKind::Cycle(G0, _) => "a cycle of write-write dependencies",
        AnomalyKind::Cycle(G1c, _) => "a cycle of write-write and write-read dependencies (circular information flow)",
        AnomalyKind::Cycle(GSingle, _) => "a cycle with exactly one read-write anti-dependency",
        AnomalyKind::Cycle(G2Item, _) => "a cycle with two or more read-write anti-dependencies",
        _ => "",
    }
}

pub(crate) fn report(history: &TxnHistory, found: &Found) -> AnomalyReport {
    let kind = found.kind();
    let forbidden_by = kind.forbidden_by();
    let (txn_ids, steps, summary) = match found {
        Found::Fact(fact) => {
            let (ids, sentence) = fact_text(history, fact);
            (ids, Vec::new(), sentence)
        }
        Found::Cycle(cycle) => {
            let ids: Vec<TxnId> = cycle.steps.iter().map(|e| e.from).collect();
            let steps: Vec<StepReport> = cycle
                .steps
                .iter()
                .map(|e| StepReport {
                    from: e.from,
                    to: e.to,
                    edge: e.why.kind(),
                    explanation: explain_edge(history, e),
                })
                .collect();
            let mut summary = cycle_summary(kind).to_string();
            match cycle.variant {
                super::cycles::Variant::Process => summary.push_str(", closed by process order"),
                super::cycles::Variant::Realtime => summary.push_str(", closed by real-time order"),
                super::cycles::Variant::Plain => {}
            }
            (ids, steps, summary)
        }
    };
    let mut ids = Vec::new();
    for id in txn_ids {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let txns: Vec<TxnSummary> = ids.iter().map(|id| summarize(history, *id)).collect();
    let forbidders: Vec<&str> = forbidden_by.iter().map(|c| c.name()).collect();
    let mut text = format!("{} (forbidden by {}): {summary}\n", kind.name(), forbidders.join(", "));
    for t in &txns {
        text.push_str(&format!("  {}: {}\n", history.name_txn(t.id), t.mops));
    }
    for step in &steps {
        text.push_str(&format!("  T{} -{}-> T{}: {}\n", step.from, step.edge.name(), step.to, step.explanation));
    }
    AnomalyReport { kind, forbidden_by, txns, steps, summary, text }
}
