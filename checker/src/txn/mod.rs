//! The transactional checker: list-append and rw-register histories of `:f :txn` operations,
//! judged against read committed, snapshot isolation, serializability and strict serializability
//! by the anomalies each forbids (Adya's G0, G1a–c, G-single, G2-item and their process and
//! real-time variants, found as cycles in a dependency graph, as Elle does).
//!
//! Phases, each a pure function on typed data: `history` (records → interned transactions),
//! `deps::infer` (→ ww/wr/rw edges and the anomalies that need no cycle), `deps::order_edges`
//! (process and real-time edges, for strict serializability only), `cycles::find_cycles` (→ named
//! witness cycles), then `check_history` judges each model and `explain` words every anomaly.
//!
//! **Invariant:** `valid` only when every search that bears on the model ran to its end; a budget
//! that runs out gives `unknown`.

pub mod consistency;
pub mod cycles;
pub mod deps;
pub mod explain;
pub mod history;
pub mod html;

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::check::Verdict;
use crate::error::CheckError;
use crate::history::LineRecord;

pub use consistency::{AnomalyKind, Consistency};
pub use cycles::{CycleClass, Variant};
pub use deps::EdgeKind;
pub use explain::{AnomalyReport, StepReport, TxnSummary};
pub use history::{history_from_records, TxnHistory, TxnHistoryBuilder, TxnModel, TxnStatus};

#[derive(Debug, Clone)]
pub struct TxnOptions {
    pub model: TxnModel,
    pub consistency: Consistency,
    /// Past it, what is not yet decided is `unknown`.
    pub timeout: Option<Duration>,
    /// A rough bound on the graph's memory; past it the verdict is `unknown`.
    pub memory_limit_bytes: u64,
    /// Nodes the G-single searches may visit in total; past it, snapshot isolation may be `unknown`.
    pub max_search_visits: u64,
    /// Anomalies reported in full per kind (all are counted).
    pub max_reported_per_kind: usize,
    /// Names the history in messages.
    pub source_name: String,
}

impl Default for TxnOptions {
    fn default() -> Self {
        TxnOptions {
            model: TxnModel::ListAppend,
            consistency: Consistency::Serializable,
            timeout: None,
            memory_limit_bytes: 2 << 30,
            max_search_visits: 50_000_000,
            max_reported_per_kind: 8,
            source_name: "history".into(),
        }
    }
}

/// One consistency model's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct ModelVerdict {
    pub model: Consistency,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The result of a transactional check (the `results.json` of `faultline check --model
/// list-append|rw-register`).
#[derive(Debug, Clone, Serialize)]
pub struct TxnCheckResult {
    /// The verdict for `consistency`.
    pub verdict: Verdict,
    pub model: TxnModel,
    pub consistency: Consistency,
    /// The requested model and every weaker one, weakest first.
    pub models: Vec<ModelVerdict>,
    /// The weaker models the history still satisfies.
    pub weaker_models_holding: Vec<Consistency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub events: usize,
    pub faults: usize,
    pub txns: usize,
    pub committed: usize,
    pub aborted: usize,
    pub indeterminate: usize,
    /// Edges inferred, by kind.
    pub edges: BTreeMap<&'static str, usize>,
    /// Nontrivial strongly connected components of the dependency graph.
    pub components: usize,
    /// Every anomaly found, counted by name.
    pub anomaly_counts: BTreeMap<&'static str, usize>,
    /// The first few of each kind, explained.
    pub anomalies: Vec<AnomalyReport>,
    pub check_ms: f64,
}

/// Reads records (already imported) and checks them.
pub fn check_records(records: &[LineRecord], options: &TxnOptions) -> Result<TxnCheckResult, CheckError> {
    let history = history_from_records(records, options.model, &options.source_name)?;
    Ok(check_history(&history, options))
}

/// An anomaly found, before it is explained.
pub(crate) enum Found<'a> {
    Fact(&'a deps::Fact),
    Cycle(&'a cycles::Cycle),
}

impl Found<'_> {
    fn kind(&self) -> AnomalyKind {
        match self {
            Found::Cycle(cycle) => AnomalyKind::Cycle(cycle.class, cycle.variant),
            Found::Fact(fact) => match fact {
                deps::Fact::AbortedRead { .. } => AnomalyKind::G1a,
                deps::Fact::IntermediateRead { .. } => AnomalyKind::G1b,
                deps::Fact::Internal { .. } => AnomalyKind::Internal,
                deps::Fact::DuplicateElements { .. } => AnomalyKind::DuplicateAppends,
                deps::Fact::IncompatibleOrder { .. } => AnomalyKind::IncompatibleOrder,
                deps::Fact::GarbageRead { .. } => AnomalyKind::GarbageRead,
            },
        }
    }
}

/// Checks a history: the pure core.
pub fn check_history(history: &TxnHistory, options: &TxnOptions) -> TxnCheckResult {
    let started = Instant::now();
    let deadline = options.timeout.map(|t| started + t);
    let past_deadline = || deadline.is_some_and(|d| Instant::now() > d);
    let mut inferred = deps::infer(history);
    let strict = options.consistency == Consistency::StrictSerializable;
    if strict {
        deps::order_edges(history, true, &mut inferred.edges);
    }
    let edge_bytes = std::mem::size_of::<deps::Edge>() as u64 + 24;
    let estimated_bytes = inferred.edges.len() as u64 * edge_bytes + history.txns.len() as u64 * 64;
    let mut unknown_reason = None;
    let search = if estimated_bytes > options.memory_limit_bytes {
        unknown_reason = Some(format!(
            "memory budget: the dependency graph would take about {} MiB, over the {} MiB allowed",
            estimated_bytes >> 20,
            options.memory_limit_bytes >> 20
        ));
        cycles::CycleSearch::default()
    } else if past_deadline() {
        unknown_reason = Some("time budget ran out before the cycle search".to_string());
        cycles::CycleSearch::default()
    } else {
        let budget = cycles::SearchBudget { deadline, max_visits: options.max_search_visits };
        cycles::find_cycles(history.txns.len(), &inferred.edges, budget)
    };
    if search.timed_out {
        unknown_reason = Some("time budget ran out during the cycle search".to_string());
    }

    let found: Vec<Found> =
        inferred.facts.iter().map(Found::Fact).chain(search.cycles.iter().map(Found::Cycle)).collect();
    let mut anomaly_counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut kinds_found: Vec<AnomalyKind> = Vec::new();
    let mut anomalies = Vec::new();
    for item in &found {
        let kind = item.kind();
        let count = anomaly_counts.entry(kind.name()).or_insert(0);
        *count += 1;
        if *count <= options.max_reported_per_kind {
            anomalies.push(explain::report(history, item));
        }
        if !kinds_found.contains(&kind) {
            kinds_found.push(kind);
        }
    }

    let models: Vec<ModelVerdict> = options
        .consistency
        .and_weaker()
        .map(|model| {
            let forbidden: Vec<&str> = kinds_found.iter().filter(|k| model.forbids(**k)).map(|k| k.name()).collect();
            if !forbidden.is_empty() {
                return ModelVerdict { model, verdict: Verdict::Invalid, reason: Some(forbidden.join(", ")) };
            }
            if let Some(reason) = &unknown_reason {
                return ModelVerdict { model, verdict: Verdict::Unknown, reason: Some(reason.clone()) };
            }
            if model == Consistency::SnapshotIsolation && search.g_single_unsettled {
                let reason =
                    "search budget ran out before deciding whether a cycle with rw edges has exactly one (G-single)";
                return ModelVerdict { model, verdict: Verdict::Unknown, reason: Some(reason.to_string()) };
            }
            ModelVerdict { model, verdict: Verdict::Valid, reason: None }
        })
        .collect();
    let target = models.last().expect("and_weaker includes the model itself");
    let weaker_models_holding = models
        .iter()
        .filter(|m| m.model < options.consistency && m.verdict == Verdict::Valid)
        .map(|m| m.model)
        .collect();

    let mut edges: BTreeMap<&'static str, usize> = BTreeMap::new();
    for edge in &inferred.edges {
        *edges.entry(edge.why.kind().name()).or_insert(0) += 1;
    }
    let count_status = |s: TxnStatus| history.txns.iter().filter(|t| t.status == s).count();
    TxnCheckResult {
        verdict: target.verdict,
        model: history.model,
        consistency: options.consistency,
        reason: target.reason.clone(),
        models: models.clone(),
        weaker_models_holding,
        events: history.events,
        faults: history.faults,
        txns: history.txns.len(),
        committed: count_status(TxnStatus::Committed),
        aborted: count_status(TxnStatus::Aborted),
        indeterminate: count_status(TxnStatus::Indeterminate),
        edges,
        components: search.components,
        anomaly_counts,
        anomalies,
        check_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

impl TxnCheckResult {
    /// The verdicts and every reported anomaly, for a terminal.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for m in &self.models {
            text.push_str(&format!(
                "  {:<20} {}{}\n",
                m.model.name(),
                m.verdict.as_str(),
                m.reason.as_ref().map(|r| format!("  ({r})")).unwrap_or_default()
            ));
        }
        if !self.anomaly_counts.is_empty() {
            let counts: Vec<String> = self.anomaly_counts.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
            text.push_str(&format!("  anomalies: {}\n", counts.join(", ")));
        }
        for anomaly in &self.anomalies {
            text.push('\n');
            text.push_str(&anomaly.text);
        }
        text
    }
}
