//! Workloads: what faultline's clients do, which model checks it, which nemeses make sense for it,
//! and the direct checks that hold even when a linearizability search would be slow.
//!
//! A workload's generator is a pure, seeded source of client operations ([`OpGenerator`]): it reads
//! no clock, starts no thread and does no IO, so its schedules are unit-tested without a cluster.
//! The harness wraps it in its own time-aware generators (rate, time limit) and its interpreter.
//!
//! **Invariant:** nothing here knows about processes, sockets or the clock; the direct checkers
//! read history records only, so they re-check any stored history offline.

pub mod append_check;
pub mod generators;
pub mod mixed;
pub mod set_full;

use faultline_checker::history::Record;
use faultline_checker::ModelKind;
use serde::Serialize;
use serde_json::Value;

pub use faultline_checker::run::CheckerReport;
pub use generators::{AppendGenerator, CasRegisterGenerator, RegisterGenerator, SetGenerator};
pub use mixed::{KeyKind, MixedGenerator};

/// One client operation as the history records its invocation (`f`, `key`, `value`; see
/// docs/history-format.md). The harness turns it into its own `Invocation`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadOp {
    pub f: String,
    pub key: Option<Value>,
    pub value: Value,
}

impl WorkloadOp {
    pub fn new(f: &str, key: Option<Value>, value: Value) -> WorkloadOp {
        WorkloadOp { f: f.to_string(), key, value }
    }
}

/// A pure, seeded, endless source of client operations.
pub trait OpGenerator: Send {
    /// The next operation to invoke. Never runs out: the harness bounds the run by time.
    fn next_op(&mut self) -> WorkloadOp;
    /// The reads to do after the final heal and recovery: enough to see every key or stream this
    /// generator has written so far (bounded by [`MAX_FINAL_READS`]).
    fn final_reads(&self) -> Vec<WorkloadOp>;
}

/// The most final reads a generator asks for; past it, the most recently used keys are read.
pub const MAX_FINAL_READS: usize = 1000;

/// The workloads, as named on the command line (`--workload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    Register,
    CasRegister,
    Append,
    Set,
    Mixed,
}

/// Knobs a workload's generator takes from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadOptions {
    /// Client workers over all keys.
    pub concurrency: usize,
    /// Workers per key at a time (Jepsen's independent keys); active keys = concurrency / this.
    pub workers_per_key: usize,
    /// Operations on one key (or stream, or set) before it is retired for a fresh one, so that
    /// every key's history stays small enough to check fast.
    pub ops_per_key: u64,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions { concurrency: 10, workers_per_key: 2, ops_per_key: 200 }
    }
}

impl WorkloadOptions {
    /// How many keys are in use at any time.
    pub fn active_keys(&self) -> usize {
        (self.concurrency / self.workers_per_key.max(1)).max(1)
    }
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 5] = [
        WorkloadKind::Mixed,
        WorkloadKind::CasRegister,
        WorkloadKind::Register,
        WorkloadKind::Append,
        WorkloadKind::Set,
    ];
    /// The default workload, best first: the first one the system under test supports.
    pub const DEFAULTS: [WorkloadKind; 2] = [WorkloadKind::Mixed, WorkloadKind::CasRegister];
    pub const DEFAULT: WorkloadKind = WorkloadKind::DEFAULTS[0];

    /// The default workload for a system that runs the workloads `supports` accepts.
    pub fn default_for(supports: impl Fn(WorkloadKind) -> bool) -> Option<WorkloadKind> {
        WorkloadKind::DEFAULTS.into_iter().find(|w| supports(*w))
    }

    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Register => "register",
            WorkloadKind::CasRegister => "cas-register",
            WorkloadKind::Append => "append",
            WorkloadKind::Set => "set",
            WorkloadKind::Mixed => "mixed",
        }
    }

    pub fn from_name(name: &str) -> Option<WorkloadKind> {
        WorkloadKind::ALL.into_iter().find(|w| w.name() == name)
    }

    pub fn names() -> Vec<&'static str> {
        WorkloadKind::ALL.iter().map(|w| w.name()).collect()
    }

    pub fn description(self) -> &'static str {
        match self {
            WorkloadKind::Register => {
                "one key; read, write and cas with unique written values; every op contends on one register, and \
                 the whole history is one search, so keep runs short (about 30 s at 100 ops/s)"
            }
            WorkloadKind::CasRegister => {
                "many independent keys, a few workers per key, keys rotating as the run goes so each key's \
                 history stays small; read, write and cas with unique written values"
            }
            WorkloadKind::Append => {
                "event streams: append unique events with and without an expected version, read whole streams; \
                 direct checks for lost acknowledged appends, duplicates, reorders and gaps"
            }
            WorkloadKind::Set => {
                "add unique elements, read the whole set (Jepsen's set-full): lost, stale and never-read \
                 elements, and how long each add took to become visible"
            }
            WorkloadKind::Mixed => {
                "cas-register keys (one contended key at a time and independent keys) and append streams in \
                 one run, in disjoint key spaces (c…, k…, s…); each kind judged by its own model (kv for \
                 registers, stream for streams) and the append checks; the default where the system runs \
                 streams (cas-register elsewhere)"
            }
        }
    }

    /// The model the linearizability checker uses for this workload's history.
    pub fn model(self) -> ModelKind {
        match self {
            WorkloadKind::Register => ModelKind::CasRegister,
            WorkloadKind::CasRegister => ModelKind::Kv,
            WorkloadKind::Append => ModelKind::Stream,
            WorkloadKind::Set => ModelKind::Set,
            // The register keys' model; the stream keys are searched with the stream model as a
            // direct check (`mixed::check_extra`).
            WorkloadKind::Mixed => KeyKind::Register.model(),
        }
    }

    /// The nemesis families that make sense for this workload (names as `--nemesis` takes them).
    /// Every workload is about replication under partitions, crashes and pauses; `isolated-pause`
    /// is what exposes stale reads, so it is listed where reads are checked against writes.
    pub fn nemeses(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Register | WorkloadKind::CasRegister | WorkloadKind::Mixed => {
                &["partition", "kill", "pause", "loss", "isolated-pause"]
            }
            // Lost appends and lost adds come from acknowledged-but-uncommitted entries, which
            // leader kills and leader isolation expose.
            WorkloadKind::Append | WorkloadKind::Set => &["partition", "kill", "pause", "isolated-pause"],
        }
    }

    /// The direct checkers run besides the linearizability search.
    pub fn extra_checkers(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Register | WorkloadKind::CasRegister => &[],
            WorkloadKind::Append => &[append_check::NAME],
            WorkloadKind::Set => &[set_full::NAME],
            WorkloadKind::Mixed => &[mixed::STREAM_CHECK_NAME, append_check::NAME],
        }
    }

    /// A fresh generator for this workload.
    pub fn generator(self, options: &WorkloadOptions, seed: u64) -> Box<dyn OpGenerator> {
        match self {
            WorkloadKind::Register => Box::new(RegisterGenerator::new(seed)),
            WorkloadKind::CasRegister => Box::new(CasRegisterGenerator::new(options, seed)),
            WorkloadKind::Append => Box::new(AppendGenerator::new(options, seed)),
            WorkloadKind::Set => Box::new(SetGenerator::new(options, seed)),
            WorkloadKind::Mixed => Box::new(MixedGenerator::new(options, seed)),
        }
    }

    /// Runs this workload's direct checkers over a history.
    pub fn check_extra(self, records: &[Record]) -> Vec<CheckerReport> {
        match self {
            WorkloadKind::Register | WorkloadKind::CasRegister => Vec::new(),
            WorkloadKind::Append => vec![append_check::check(records).report()],
            WorkloadKind::Set => vec![set_full::check(records).report()],
            WorkloadKind::Mixed => mixed::check_extra(records),
        }
    }

    /// The parts of a history the linearizability checker searches, each with its model: the
    /// whole history for every workload but `mixed`, whose register and stream keys are checked
    /// apart (linearizability is local). The first part is the run's main model check.
    pub fn model_parts(self, records: &[Record]) -> Vec<(ModelKind, Vec<Record>)> {
        match self {
            WorkloadKind::Mixed => KeyKind::ALL.into_iter().map(|kind| (kind.model(), kind.records(records))).collect(),
            _ => vec![(self.model(), records.to_vec())],
        }
    }

    /// Whether `record` belongs to the main model check's part of this workload's history.
    pub fn in_main_model_check(self, record: &Record) -> bool {
        match self {
            WorkloadKind::Mixed => KeyKind::Register.keeps(record),
            _ => true,
        }
    }
}

/// What `faultline workloads` prints: one block per workload.
pub fn describe_all() -> String {
    let mut text = String::new();
    for workload in WorkloadKind::ALL {
        let default = if workload == WorkloadKind::DEFAULT { " (default)" } else { "" };
        text.push_str(&format!("{}{default}\n", workload.name()));
        text.push_str(&format!("  {}\n", workload.description()));
        text.push_str(&format!("  model:    {}\n", workload.model().name()));
        text.push_str(&format!("  nemeses:  {}\n", workload.nemeses().join(", ")));
        let extra = workload.extra_checkers();
        if !extra.is_empty() {
            text.push_str(&format!("  checkers: {}\n", extra.join(", ")));
        }
    }
    text
}

/// Quantiles of a list of nanosecond durations, in milliseconds, for reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QuantilesMs {
    pub count: usize,
    pub min: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl QuantilesMs {
    pub fn of(mut durations_ns: Vec<u64>) -> QuantilesMs {
        if durations_ns.is_empty() {
            return QuantilesMs::default();
        }
        durations_ns.sort_unstable();
        let at = |q: f64| {
            let i = ((durations_ns.len() - 1) as f64 * q).round() as usize;
            durations_ns[i] as f64 / 1e6
        };
        QuantilesMs {
            count: durations_ns.len(),
            min: at(0.0),
            p50: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Pairs a history's client ops leniently (a bad record is skipped, not fatal: these checkers
/// report what they can).
pub(crate) fn pair_records(records: &[Record]) -> faultline_checker::pairing::Paired {
    let lines: Vec<faultline_checker::LineRecord> = records
        .iter()
        .enumerate()
        .map(|(i, record)| faultline_checker::LineRecord { line: i + 1, record: record.clone() })
        .collect();
    faultline_checker::pairing::pair(&lines, "history", true).unwrap_or_default()
}

/// A key as text, for maps keyed by it.
pub(crate) fn key_text(key: &Option<Value>) -> String {
    match key {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}
