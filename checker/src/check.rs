//! Checking a whole history: convert ops for the model, split by key (P-compositionality), search
//! partitions in parallel, and explain the invalid ones.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{CheckError, InputError};
use crate::history::LineRecord;
use crate::import::NilReads;
use crate::ladder::{self, Ladder, Rung, SeqOp, Staleness, TimedOp};
use crate::model::{Converted, Interner, Keyed, Model, OpInput, Outcome, Register, Set, Stream, StringKv};
use crate::pairing::{pair, Paired, PairedOp};
use crate::search::{search, Budget, Observe, SearchOp, SearchVerdict, CONFIGURATION_BUDGET};

/// The verdict of a check: three outcomes, all the way through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Invalid,
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Unknown => "unknown",
        }
    }

    /// Combines partition verdicts: any invalid wins, then any unknown.
    pub fn combine(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Invalid, _) | (_, Verdict::Invalid) => Verdict::Invalid,
            (Verdict::Unknown, _) | (_, Verdict::Unknown) => Verdict::Unknown,
            _ => Verdict::Valid,
        }
    }
}

/// The models, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// One read/write register per key.
    Register,
    /// One compare-and-set register per key.
    CasRegister,
    /// Many keys, each a compare-and-set register (the same ops as cas-register; the name says the
    /// history is multi-key).
    Kv,
    /// porcupine's get/put/append string store, per key.
    StringKv,
    /// A grow-only set per key: add, read.
    Set,
    /// An append-only event stream per key: append (with optional expected version), read.
    Stream,
}

impl ModelKind {
    pub const NAMES: &'static [&'static str] = &["register", "cas-register", "kv", "string-kv", "set", "stream"];

    pub fn from_name(name: &str) -> Option<ModelKind> {
        match name {
            "register" => Some(ModelKind::Register),
            "cas-register" => Some(ModelKind::CasRegister),
            "kv" => Some(ModelKind::Kv),
            "string-kv" => Some(ModelKind::StringKv),
            "set" => Some(ModelKind::Set),
            "stream" => Some(ModelKind::Stream),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::CasRegister => "cas-register",
            ModelKind::Kv => "kv",
            ModelKind::StringKv => "string-kv",
            ModelKind::Set => "set",
            ModelKind::Stream => "stream",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub model: ModelKind,
    /// Every key's initial value (`null`: never written).
    pub initial_value: Value,
    /// Time budget for the whole check; past it, undecided partitions are `unknown`.
    pub timeout: Option<Duration>,
    /// Memory budget per partition search.
    pub memory_limit_bytes: u64,
    /// Split by key (P-compositionality). Off: one search over the product of all keys.
    pub partition: bool,
    /// Worker threads for partitions; 0 = one per core.
    pub threads: usize,
    /// Skip bad records (counted) instead of failing on the first.
    pub lenient: bool,
    /// Work out explanations for invalid partitions.
    pub explain: bool,
    /// Keep checking other partitions after one is invalid (to explain every anomaly). Off: the
    /// rest are stopped, as porcupine does, and reported as not decided.
    pub all_partitions: bool,
    /// Names the history in error messages.
    pub source_name: String,
    /// What an `ok` read of `null` means for registers: never written (ours), or unknown (Jepsen).
    pub nil_reads: NilReads,
    /// When the history is not linearizable, climb down the ladder: sequential consistency and
    /// read staleness (see `ladder.rs`).
    pub ladder: bool,
    /// Whether `time` fields are real nanoseconds (not positions), for staleness in ms.
    pub times_known: bool,
    /// Time budget of the ladder's searches (past it, unknown), so that a history whose
    /// linearizability was quick to refute never hangs on the rung below.
    pub ladder_timeout: Duration,
}

/// The ladder's time budget unless the caller gives one (`faultline check` gives its `--timeout`).
pub const LADDER_DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            model: ModelKind::Kv,
            initial_value: Value::Null,
            timeout: None,
            memory_limit_bytes: 2 << 30,
            partition: true,
            threads: 0,
            lenient: false,
            explain: true,
            all_partitions: false,
            source_name: "history".into(),
            nil_reads: NilReads::Strict,
            ladder: true,
            times_known: true,
            ladder_timeout: LADDER_DEFAULT_TIMEOUT,
        }
    }
}

/// An operation, summarised for reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpSummary {
    /// Index of the op among the paired client ops (also its row in the HTML page).
    pub id: usize,
    pub process: u64,
    pub key: Option<Value>,
    pub f: String,
    pub description: String,
    /// ok | fail | info | pending
    pub outcome: String,
    pub call_index: u64,
    pub call_time: u64,
    pub call_line: usize,
    pub return_index: Option<u64>,
    pub return_time: Option<u64>,
}

/// Why a partition is not linearizable, for a person.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Explanation {
    pub key: Option<Value>,
    /// The first op (by completion) that cannot be linearised: the history up to its completion is
    /// not linearizable, the history just before it is.
    pub failing_op: OpSummary,
    /// The ops around the failure: the failing op, every op concurrent with it, and the last few
    /// ops of the longest linearisation that completed before it was invoked.
    pub window: Vec<OpSummary>,
    /// The longest linearisable prefix the search found, in linearisation order.
    pub longest_prefix: Vec<OpSummary>,
    /// The model state after that prefix.
    pub state_after_prefix: String,
    /// The states the object could be in when the failing op had to take effect.
    pub states_at_failure: Vec<String>,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionResult {
    pub key: Option<Value>,
    pub ops: usize,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub configurations: u64,
    pub elapsed_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    pub verdict: Verdict,
    pub model: ModelKind,
    pub partitioned: bool,
    /// Records read (ops and faults).
    pub events: usize,
    /// Client ops (paired).
    pub ops: usize,
    /// Client ops the search had to consider after reductions.
    pub searched_ops: usize,
    pub faults: usize,
    pub skipped_lines: usize,
    /// Why the verdict is unknown, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Time spent checking, parsing excluded.
    pub check_ms: f64,
    pub partitions: Vec<PartitionResult>,
    pub anomalies: Vec<Explanation>,
    /// What an `ok` read of `null` was taken to mean.
    #[serde(default)]
    pub nil_reads: NilReads,
    /// `ok` reads of `null` that constrained nothing (with `nil_reads: unknown`).
    #[serde(default)]
    pub nil_reads_unconstrained: usize,
    /// When not linearizable: how far from it (sequential consistency, stale reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ladder: Option<Ladder>,
    /// Every paired op, for the HTML page (not serialised into results.json).
    #[serde(skip)]
    pub all_ops: Vec<OpSummary>,
    #[serde(skip)]
    pub fault_records: Vec<crate::history::Fault>,
}

impl CheckResult {
    pub fn model_name(&self) -> &'static str {
        self.model.name()
    }
}

/// Checks records (already parsed) against the options' model.
pub fn check_records(records: &[LineRecord], options: &CheckOptions) -> Result<CheckResult, CheckError> {
    let paired = pair(records, &options.source_name, options.lenient)?;
    check_paired(paired, options)
}

/// Checks plain records, numbering lines from 1 (for histories built in memory).
pub fn check_plain_records(
    records: &[crate::history::Record],
    options: &CheckOptions,
) -> Result<CheckResult, CheckError> {
    let lines: Vec<LineRecord> =
        records.iter().enumerate().map(|(i, r)| LineRecord { line: i + 1, record: r.clone() }).collect();
    check_records(&lines, options)
}

pub fn check_paired(paired: Paired, options: &CheckOptions) -> Result<CheckResult, CheckError> {
    let mut values = Interner::default();
    let init = &options.initial_value;
    let map_err =
        |m: String| CheckError::Input(InputError::at(&options.source_name, 0, format!("--initial-value: {m}")));
    match options.model {
        ModelKind::Register => {
            run(Register { initial: values.intern(init), allow_cas: false }, values, paired, options)
        }
        ModelKind::CasRegister | ModelKind::Kv => {
            run(Register { initial: values.intern(init), allow_cas: true }, values, paired, options)
        }
        ModelKind::StringKv => {
            let initial = match init {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            run(StringKv { initial }, values, paired, options)
        }
        ModelKind::Set => {
            let model = Set::with_initial(init, &mut values).map_err(map_err)?;
            run(model, values, paired, options)
        }
        ModelKind::Stream => {
            let model = Stream::with_initial(init, &mut values).map_err(map_err)?;
            run(model, values, paired, options)
        }
    }
}

/// One converted op: its index among the paired ops, its key's partition, and the search op.
struct Converted1<O> {
    paired_index: usize,
    key_index: u32,
    /// The op's process (program order, for the sequential rung of the ladder).
    process: u64,
    search: SearchOp<O>,
}

fn outcome_name(op: &PairedOp) -> &'static str {
    match &op.completion {
        None => "pending",
        Some(c) => c.op_type.as_str(),
    }
}

fn summarize<M: Model>(model: &M, values: &Interner, paired: &PairedOp, id: usize, op: Option<&M::Op>) -> OpSummary {
    let description = match op {
        Some(op) => model.describe_op(op, values),
        None => {
            let v = if paired.outcome() == Outcome::Ok { paired.result_value() } else { &paired.invoke_value };
            format!("{} {}", paired.f, v)
        }
    };
    OpSummary {
        id,
        process: paired.process,
        key: paired.key.clone(),
        f: paired.f.clone(),
        description,
        outcome: outcome_name(paired).to_string(),
        call_index: paired.call_index,
        call_time: paired.call_time,
        call_line: paired.call_line,
        return_index: paired.completion.as_ref().map(|c| c.index),
        return_time: paired.completion.as_ref().map(|c| c.time),
    }
}

fn run<M: Model>(
    model: M,
    mut values: Interner,
    paired: Paired,
    options: &CheckOptions,
) -> Result<CheckResult, CheckError> {
    let started = Instant::now();
    let mut skipped = paired.skipped.len();
    let mut key_ids: HashMap<String, u32> = HashMap::new();
    let mut keys: Vec<Option<Value>> = Vec::new();
    let mut converted: Vec<Converted1<M::Op>> = Vec::new();
    let mut typed: Vec<Option<M::Op>> = vec![None; paired.ops.len()];
    let register_like = matches!(options.model, ModelKind::Register | ModelKind::CasRegister | ModelKind::Kv);
    let mut nil_reads_unconstrained = 0;
    for (index, op) in paired.ops.iter().enumerate() {
        // Jepsen's meaning: an ok read of nil says nothing of the value (knossos' models accept it
        // in any state), so it constrains nothing, like an indefinite read.
        if options.nil_reads == NilReads::Unknown
            && register_like
            && op.f == "read"
            && op.outcome() == Outcome::Ok
            && op.result_value().is_null()
        {
            nil_reads_unconstrained += 1;
            continue;
        }
        let input = OpInput {
            f: &op.f,
            invoke_value: &op.invoke_value,
            outcome: op.outcome(),
            result_value: op.result_value(),
            error: op.error(),
        };
        match model.convert(&input, &mut values) {
            Ok(Converted::Drop) => {}
            Ok(Converted::Keep { op: model_op, required }) => {
                let key_text = op.key.as_ref().map(Value::to_string).unwrap_or_default();
                let next_id = keys.len() as u32;
                let key_index = *key_ids.entry(key_text).or_insert_with(|| {
                    keys.push(op.key.clone());
                    next_id
                });
                typed[index] = Some(model_op.clone());
                let ret = if required { op.definite_return() } else { None };
                converted.push(Converted1 {
                    paired_index: index,
                    key_index,
                    process: op.process,
                    search: SearchOp { op: model_op, call: op.call_position, ret, required: required && ret.is_some() },
                });
            }
            Err(message) => {
                let line = op.completion.as_ref().map(|c| c.line).unwrap_or(op.call_line);
                let error = InputError::at(&options.source_name, line, message);
                if options.lenient {
                    skipped += 1;
                } else {
                    return Err(error.into());
                }
            }
        }
    }

    let all_ops: Vec<OpSummary> =
        paired.ops.iter().enumerate().map(|(i, op)| summarize(&model, &values, op, i, typed[i].as_ref())).collect();
    // Equivalent, cheaper ops for the search (descriptions above keep the originals).
    let mut canonical_ops: Vec<M::Op> = converted.iter().map(|c| c.search.op.clone()).collect();
    let canonical_model = model.canonicalize(&mut canonical_ops);
    for (c, op) in converted.iter_mut().zip(canonical_ops) {
        c.search.op = op;
    }
    // Staleness is measured on the ops as recorded (`typed`), against the model's own initial
    // value, which canonicalisation may rewrite.
    let initial_for_staleness = model.register_initial();
    let model = canonical_model.unwrap_or(model);
    let deadline = options.timeout.map(|t| started + t);
    let mut result = CheckResult {
        verdict: Verdict::Valid,
        model: options.model,
        partitioned: options.partition,
        events: paired.events,
        ops: paired.ops.len(),
        searched_ops: converted.len(),
        faults: paired.faults.len(),
        skipped_lines: skipped,
        reason: None,
        check_ms: 0.0,
        partitions: Vec::new(),
        anomalies: Vec::new(),
        nil_reads: options.nil_reads,
        nil_reads_unconstrained,
        ladder: None,
        all_ops,
        fault_records: paired.faults,
    };
    if paired.ops.is_empty() {
        result.verdict = Verdict::Unknown;
        result.reason = Some("no operations".into());
        result.check_ms = started.elapsed().as_secs_f64() * 1e3;
        return Ok(result);
    }

    let context =
        Context { found_invalid: AtomicBool::new(false), values: &values, all_ops: &result.all_ops, options, deadline };
    // The ladder is climbed after the linearizability check, whose time check_ms stays.
    let mut ladder: Option<Ladder> = None;
    let check_elapsed;
    if options.partition {
        let mut groups: Vec<Vec<Converted1<M::Op>>> = (0..keys.len()).map(|_| Vec::new()).collect();
        for c in converted {
            groups[c.key_index as usize].push(c);
        }
        let outcomes = check_partitions_parallel(&model, &groups, &keys, &context);
        check_elapsed = started.elapsed();
        let not_shown_linearizable: Vec<&[Converted1<M::Op>]> = groups
            .iter()
            .zip(&outcomes)
            .filter(|(_, (partition, _))| partition.verdict != Verdict::Valid)
            .map(|(group, _)| group.as_slice())
            .collect();
        let found_invalid = outcomes.iter().any(|(partition, _)| partition.verdict == Verdict::Invalid);
        if found_invalid && options.ladder {
            let sequential = sequential_rung(&model, &not_shown_linearizable, options, "each key alone");
            let staleness = initial_for_staleness.map(|initial| {
                let ops = groups.iter().flatten().map(|c| (c.key_index, c.paired_index, &c.search));
                measure_staleness(&model, initial, ops, &typed, &paired.ops, options.times_known, &result.all_ops)
            });
            ladder = Some(Ladder::new(sequential, staleness));
        }
        for (partition, explanation) in outcomes {
            result.verdict = result.verdict.combine(partition.verdict);
            if result.reason.is_none() {
                result.reason.clone_from(&partition.reason);
            }
            result.partitions.push(partition);
            result.anomalies.extend(explanation);
        }
    } else {
        let keyed = Keyed { inner: model, n_keys: keys.len().max(1) };
        let group: Vec<Converted1<(u32, M::Op)>> = converted
            .into_iter()
            .map(|c| Converted1 {
                paired_index: c.paired_index,
                key_index: 0,
                process: c.process,
                search: SearchOp {
                    op: (c.key_index, c.search.op),
                    call: c.search.call,
                    ret: c.search.ret,
                    required: c.search.required,
                },
            })
            .collect();
        let (partition, explanation) =
            check_partition(&keyed, &group, None, &context, None).expect("no configuration budget, so a verdict");
        check_elapsed = started.elapsed();
        if partition.verdict == Verdict::Invalid && options.ladder {
            let sequential = sequential_rung(&keyed, &[group.as_slice()], options, "the whole history");
            let staleness = initial_for_staleness.map(|initial| {
                let ops = group.iter().map(|c| (c.search.op.0, c.paired_index, &c.search));
                let (inner, all_ops) = (&keyed.inner, &result.all_ops);
                measure_staleness(inner, initial, ops, &typed, &paired.ops, options.times_known, all_ops)
            });
            ladder = Some(Ladder::new(sequential, staleness));
        }
        result.verdict = partition.verdict;
        result.reason.clone_from(&partition.reason);
        result.partitions.push(partition);
        result.anomalies.extend(explanation);
    }
    if result.verdict != Verdict::Unknown {
        result.reason = None;
    }
    result.check_ms = check_elapsed.as_secs_f64() * 1e3;
    result.ladder = ladder;
    Ok(result)
}

/// Sequential consistency of `groups` (each one object, or one product), each within the check's
/// `ladder_timeout`.
fn sequential_rung<M: Model>(model: &M, groups: &[&[Converted1<M::Op>]], options: &CheckOptions, scope: &str) -> Rung {
    let started = Instant::now();
    let deadline = started + options.ladder_timeout;
    let budget =
        Budget { deadline: Some(deadline), memory_limit_bytes: options.memory_limit_bytes, ..Budget::default() };
    let mut verdict = Verdict::Valid;
    let mut reason = None;
    for group in groups {
        let ops: Vec<SeqOp<M::Op>> = group
            .iter()
            .map(|c| SeqOp { op: c.search.op.clone(), process: c.process, required: c.search.required })
            .collect();
        match ladder::sequential(model, model.init(), &ops, &budget) {
            SearchVerdict::Valid => {}
            SearchVerdict::Invalid => {
                verdict = Verdict::Invalid;
                reason = None;
                break;
            }
            SearchVerdict::Unknown(why) => {
                verdict = Verdict::Unknown;
                reason = Some(why);
            }
        }
    }
    Rung {
        verdict,
        scope: scope.to_string(),
        partitions_checked: groups.len(),
        reason,
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
    }
}

/// The stale reads among register ops, given per op what the search kept (key, index among the
/// paired ops, real-time positions) and the op as recorded (`typed`), with times from `paired`.
fn measure_staleness<'a, M: Model, O: 'a>(
    model: &M,
    initial: u32,
    ops: impl Iterator<Item = (u32, usize, &'a SearchOp<O>)>,
    typed: &[Option<M::Op>],
    paired: &[PairedOp],
    times_known: bool,
    all_ops: &[OpSummary],
) -> Staleness {
    let mut by_key: HashMap<u32, Vec<TimedOp>> = HashMap::new();
    for (key, paired_index, search) in ops {
        let Some(view) = typed[paired_index].as_ref().and_then(|op| model.register_view(op)) else {
            continue;
        };
        let op = &paired[paired_index];
        by_key.entry(key).or_default().push(TimedOp {
            view,
            id: paired_index,
            call_position: search.call,
            return_position: search.ret,
            call_time: op.call_time,
            return_time: search.ret.and(op.completion.as_ref().map(|done| done.time)),
            required: search.required,
        });
    }
    let (mut reads, mut stale) = (0, Vec::new());
    for ops in by_key.values() {
        let (n, found) = ladder::staleness(initial, ops);
        reads += n;
        stale.extend(found);
    }
    Staleness::summarize(reads, &stale, times_known, all_ops)
}

/// A decided partition and, if it is invalid, its explanation.
type PartitionOutcome = (PartitionResult, Option<Explanation>);

struct Context<'a> {
    /// Set once a partition is invalid, to stop the others (unless all_partitions).
    found_invalid: AtomicBool,
    values: &'a Interner,
    /// Every op as recorded, summarised, by paired index.
    all_ops: &'a [OpSummary],
    options: &'a CheckOptions,
    deadline: Option<Instant>,
}

fn check_partitions_parallel<M: Model>(
    model: &M,
    groups: &[Vec<Converted1<M::Op>>],
    keys: &[Option<Value>],
    context: &Context<'_>,
) -> Vec<(PartitionResult, Option<Explanation>)> {
    let threads = match context.options.threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    }
    .min(groups.len().max(1));
    // Every partition first gets a small configuration budget, and those not decided go to the
    // back of the queue with a budget eight times larger. One hard key then cannot hold up the easy
    // ones (which may already show the history invalid), whatever the number of threads; the
    // repeated work is at most a seventh of the final attempt's.
    let queue: Mutex<std::collections::VecDeque<(usize, u32)>> =
        Mutex::new((0..groups.len()).map(|g| (g, 0)).collect());
    let results: Mutex<Vec<Option<PartitionOutcome>>> = Mutex::new((0..groups.len()).map(|_| None).collect());
    let undecided = AtomicUsize::new(groups.len());
    let work = || {
        while undecided.load(Ordering::Acquire) > 0 {
            let item = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            let Some((group, level)) = item else {
                // Another worker holds the last partitions and may requeue one.
                std::thread::sleep(Duration::from_micros(200));
                continue;
            };
            let max_configurations = (level < LAST_BUDGET_LEVEL).then(|| FIRST_BUDGET_CONFIGURATIONS << (3 * level));
            match check_partition(model, &groups[group], keys[group].clone(), context, max_configurations) {
                Some(outcome) => {
                    results.lock().unwrap_or_else(|e| e.into_inner())[group] = Some(outcome);
                    undecided.fetch_sub(1, Ordering::Release);
                }
                None => queue.lock().unwrap_or_else(|e| e.into_inner()).push_back((group, level + 1)),
            }
        }
    };
    if threads <= 1 {
        work();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(work);
            }
        });
    }
    results.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().flatten().collect()
}

const FIRST_BUDGET_CONFIGURATIONS: u64 = 20_000;
/// From this level on, no configuration budget (20k, 160k, 1.3M, 10M, then unlimited).
const LAST_BUDGET_LEVEL: u32 = 4;

/// Checks one partition. `None`: `max_configurations` ran out before a verdict.
fn check_partition<M: Model>(
    model: &M,
    group: &[Converted1<M::Op>],
    key: Option<Value>,
    context: &Context<'_>,
    max_configurations: Option<u64>,
) -> Option<(PartitionResult, Option<Explanation>)> {
    let started = Instant::now();
    let ops: Vec<SearchOp<M::Op>> = group.iter().map(|c| c.search.clone()).collect();
    let cancel = (!context.options.all_partitions).then_some(&context.found_invalid);
    let budget = Budget {
        deadline: context.deadline,
        memory_limit_bytes: context.options.memory_limit_bytes,
        cancel,
        max_configurations,
    };
    let report = search(model, model.init(), &ops, &budget, Observe::default());
    let (verdict, reason) = match report.verdict {
        SearchVerdict::Unknown(reason) if reason == CONFIGURATION_BUDGET => return None,
        SearchVerdict::Valid => (Verdict::Valid, None),
        SearchVerdict::Invalid => {
            context.found_invalid.store(true, Ordering::Relaxed);
            (Verdict::Invalid, None)
        }
        SearchVerdict::Unknown(reason) if reason == "cancelled" => {
            (Verdict::Unknown, Some("not decided: stopped once another key was found invalid".to_string()))
        }
        SearchVerdict::Unknown(reason) => (Verdict::Unknown, Some(reason)),
    };
    // The explanation's searches must not be cancelled by the flag this partition just set.
    let budget = Budget { cancel: None, max_configurations: None, ..budget };
    let explanation = (verdict == Verdict::Invalid && context.options.explain)
        .then(|| {
            // One key of a product found dead on its own: explain that key's ops alone (each
            // search of a prefix is then one key's, not the product's).
            let explained: Vec<usize> = match report.dead_footprint {
                Some(f) => (0..ops.len()).filter(|&i| model.footprint(&ops[i].op) == f).collect(),
                None => (0..ops.len()).collect(),
            };
            let paired: Vec<usize> = explained.iter().map(|&i| group[i].paired_index).collect();
            let ops: Vec<SearchOp<M::Op>> = explained.iter().map(|&i| ops[i].clone()).collect();
            let subject = report.dead_footprint.map(|f| format!("key #{f} (its ops alone)"));
            explain(model, &paired, &ops, key.clone(), subject, &budget, context)
        })
        .flatten();
    let partition = PartitionResult {
        key,
        ops: group.len(),
        verdict,
        reason,
        configurations: report.configurations,
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
    };
    Some((partition, explanation))
}

/// How many of the ops done before the failing op an explanation's window shows.
const WINDOW_CONTEXT_OPS: usize = 3;

/// Works out why an invalid partition is invalid: `ops` (by `paired`, their paired indices) are
/// the partition's, or the ops of one key of a product that alone are not linearizable, which
/// `subject` then says. `None` if the budget ran out meanwhile.
fn explain<M: Model>(
    model: &M,
    paired: &[usize],
    ops: &[SearchOp<M::Op>],
    key: Option<Value>,
    subject: Option<String>,
    budget: &Budget<'_>,
    context: &Context<'_>,
) -> Option<Explanation> {
    // The history cut after a completion: ops invoked later are left out, ops still running then
    // become optional. Linearizability of such prefixes is monotone (a later op cannot linearise
    // before an op that completed before it was invoked), so binary search finds the first failing
    // completion.
    let prefix = |end: u64| -> Vec<SearchOp<M::Op>> {
        ops.iter()
            .filter(|o| o.call < end)
            .map(|o| match o.ret {
                Some(r) if r <= end => o.clone(),
                _ => SearchOp { op: o.op.clone(), call: o.call, ret: None, required: false },
            })
            .collect()
    };
    let mut returns: Vec<u64> = ops.iter().filter_map(|o| o.ret).collect();
    returns.sort_unstable();
    let (mut lo, mut hi) = (0usize, returns.len().checked_sub(1)?);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match search(model, model.init(), &prefix(returns[mid]), budget, Observe::default()).verdict {
            SearchVerdict::Invalid => hi = mid,
            SearchVerdict::Valid => lo = mid + 1,
            SearchVerdict::Unknown(_) => return None,
        }
    }
    let end = returns[lo];
    let cut = prefix(end);
    // Indices in `cut` are indices in `ops` (the filter keeps a prefix of ops sorted by call? not
    // necessarily), so map through positions.
    let cut_indices: Vec<usize> = ops.iter().enumerate().filter(|(_, o)| o.call < end).map(|(i, _)| i).collect();
    let failing_in_cut = cut.iter().position(|o| o.ret == Some(end))?;
    let report =
        search(model, model.init(), &cut, budget, Observe { watch: Some(failing_in_cut), linearization: false });
    if report.verdict != SearchVerdict::Invalid {
        return None;
    }
    let failing = cut_indices[failing_in_cut];
    // Descriptions of the ops as recorded (the search's ops may be canonicalized).
    let summary = |i: usize| -> OpSummary { context.all_ops[paired[i]].clone() };

    let deepest = report.deepest.as_ref()?;
    // The window: the failing op, everything concurrent with it, and the last few ops of the
    // longest linearisation that completed before it was invoked (what the object had surely done).
    let failing_op = &ops[failing];
    let overlaps = |o: &SearchOp<M::Op>| o.call < end && o.ret.is_none_or(|r| r > failing_op.call);
    let mut window: Vec<usize> = (0..ops.len()).filter(|&i| overlaps(&ops[i])).collect();
    let done_before: Vec<usize> = deepest
        .order
        .iter()
        .map(|&i| cut_indices[i])
        .filter(|&i| ops[i].ret.is_some_and(|r| r < failing_op.call))
        .collect();
    window.extend(done_before.iter().rev().take(WINDOW_CONTEXT_OPS));
    window.sort_by_key(|&i| ops[i].call);
    window.dedup();

    let longest_prefix: Vec<OpSummary> = deepest.order.iter().map(|&i| summary(cut_indices[i])).collect();
    let state_after_prefix = model.describe_state(&deepest.state, context.values);
    let states_at_failure: Vec<String> =
        report.stuck_states.iter().map(|s| model.describe_state(s, context.values)).collect();
    let mismatches: Vec<String> = report
        .stuck_states
        .iter()
        .take(3)
        .filter_map(|s| model.describe_mismatch(s, &ops[failing].op, context.values))
        .collect();
    let failing_summary = summary(failing);
    let window: Vec<OpSummary> = window.into_iter().map(summary).collect();

    let (cut_text, have, they) =
        if subject.is_some() { ("its ops", "have", "they have") } else { ("the history", "has", "it has") };
    let key_text =
        subject.unwrap_or_else(|| key.as_ref().map(|k| format!("key {k}")).unwrap_or_else(|| "the history".into()));
    let mut text = format!(
        "{key_text} is not linearizable.\n  first op that cannot be linearised: process {} {} ({}; invoked at index {}, line {})\n",
        failing_summary.process,
        failing_summary.description,
        failing_summary.outcome,
        failing_summary.call_index,
        failing_summary.call_line
    );
    text.push_str(&format!(
        "  {cut_text} up to its completion (index {}) {have} no linearisation; up to just before it, {they}.\n",
        failing_summary.return_index.map(|i| i.to_string()).unwrap_or_default()
    ));
    if !states_at_failure.is_empty() {
        text.push_str(&format!(
            "  states the object could be in when it had to take effect: {}\n",
            states_at_failure.join(", ")
        ));
    }
    for mismatch in &mismatches {
        text.push_str(&format!("    {mismatch}\n"));
    }
    text.push_str(&format!(
        "  longest linearisable prefix found: {} ops, ending in state {state_after_prefix}\n",
        longest_prefix.len()
    ));
    for op in longest_prefix.iter().rev().take(8).collect::<Vec<_>>().into_iter().rev() {
        text.push_str(&format!("      p{:<4} {}\n", op.process, op.description));
    }
    text.push_str(&format!("  window ({} ops around the failure):\n", window.len()));
    for op in &window {
        let mark = if op.id == failing_summary.id { "=>" } else { "  " };
        text.push_str(&format!(
            "    {mark} p{:<4} {:<40} {:<7} index {}..{}\n",
            op.process,
            op.description,
            op.outcome,
            op.call_index,
            op.return_index.map(|i| i.to_string()).unwrap_or_else(|| "-".into())
        ));
    }
    Some(Explanation {
        key,
        failing_op: failing_summary,
        window,
        longest_prefix,
        state_after_prefix,
        states_at_failure,
        text,
    })
}
