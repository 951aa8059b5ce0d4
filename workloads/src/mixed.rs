//! The `mixed` workload: contended and independent cas-register keys and append streams in one
//! run, so that one untailored run exposes what each kind shows best (stale reads on a contended
//! register, lost or reordered writes on independent keys, a retried append applied twice on a
//! stream: appends are not idempotent, register writes of unique values mostly are).
//!
//! The key kinds live in disjoint key spaces, told apart by the key's prefix alone
//! ([`KeyKind::of`], the one definition of which key is which kind): `c…` contended registers,
//! `k…` independent registers, `s…` streams. Linearizability is local (a history is linearizable
//! iff each object's is), so each kind's ops are judged apart, by its own model and direct
//! checkers ([`KeyKind::records`] splits a history; fault records go to every part).

use std::time::Duration;

use faultline_checker::history::Record;
use faultline_checker::run::CheckerReport;
use faultline_checker::{CheckOptions, ModelKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::generators::{AppendGenerator, RegisterOps, RotatingKeys};
use crate::{append_check, OpGenerator, WorkloadOp, WorkloadOptions, MAX_FINAL_READS};

/// Prefix of independent register keys (also `cas-register`'s keys).
pub const REGISTER_PREFIX: &str = "k";
/// Prefix of contended register keys: one key at a time shared by all its workers.
pub const CONTENDED_PREFIX: &str = "c";
/// Prefix of stream keys (also `append`'s streams).
pub const STREAM_PREFIX: &str = "s";
/// The name of the stream part's linearizability check in results.json.
pub const STREAM_CHECK_NAME: &str = "stream-linearizability";
/// The time budget of the stream part's search at the end of a run; past it, `unknown`.
pub const STREAM_CHECK_TIMEOUT: Duration = Duration::from_secs(120);
/// Register values start here, so that no register value equals a stream event: everything
/// written in a run is unique.
const FIRST_REGISTER_VALUE: u64 = 1 << 40;

/// The kinds of key a `mixed` run holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `c…` and `k…`: read, write, cas; model `kv`.
    Register,
    /// `s…`: append, read the whole stream; model `stream`, plus the append checks.
    Stream,
}

impl KeyKind {
    pub const ALL: [KeyKind; 2] = [KeyKind::Register, KeyKind::Stream];

    /// The kind of a key: a stream iff it is a string starting with [`STREAM_PREFIX`].
    pub fn of(key: Option<&Value>) -> KeyKind {
        match key {
            Some(Value::String(key)) if key.starts_with(STREAM_PREFIX) => KeyKind::Stream,
            _ => KeyKind::Register,
        }
    }

    /// The model that judges this kind's keys.
    pub fn model(self) -> ModelKind {
        match self {
            KeyKind::Register => ModelKind::Kv,
            KeyKind::Stream => ModelKind::Stream,
        }
    }

    /// Whether `record` belongs to this kind's part of a history: its ops, and every fault.
    pub fn keeps(self, record: &Record) -> bool {
        match record.as_op() {
            Some(op) => KeyKind::of(op.key.as_ref()) == self,
            None => true,
        }
    }

    /// This kind's part of a history (records in their order).
    pub fn records(self, records: &[Record]) -> Vec<Record> {
        records.iter().filter(|record| self.keeps(record)).cloned().collect()
    }
}

/// The direct checks of a mixed history: the stream part searched with the stream model (the
/// register part is the run's main model check), and the append checks on the stream part.
pub fn check_extra(records: &[Record]) -> Vec<CheckerReport> {
    let streams = KeyKind::Stream.records(records);
    let options = CheckOptions {
        model: ModelKind::Stream,
        timeout: Some(STREAM_CHECK_TIMEOUT),
        source_name: "history.jsonl (stream keys)".into(),
        ..CheckOptions::default()
    };
    let search = match faultline_checker::check_plain_records(&streams, &options) {
        Ok(result) => CheckerReport {
            checker: STREAM_CHECK_NAME.into(),
            verdict: result.verdict,
            summary: format!(
                "{} stream ops in {} streams: {}",
                result.ops,
                result.partitions.len(),
                result.reason.clone().unwrap_or_else(|| result.verdict.as_str().to_string())
            ),
            details: serde_json::to_value(&result).unwrap_or(Value::Null),
        },
        // A checker error is unknown with its reason, never valid.
        Err(e) => CheckerReport {
            checker: STREAM_CHECK_NAME.into(),
            verdict: faultline_checker::Verdict::Unknown,
            summary: e.to_string(),
            details: Value::Null,
        },
    };
    vec![search, append_check::check(&streams).report()]
}

/// `mixed`'s generator: a quarter of the ops on one contended register key at a time (all the
/// key's workers on it), a quarter on independent register keys, half on streams (appends are
/// what a duplicated retry shows on). Keys rotate after `ops_per_key` ops, as elsewhere.
pub struct MixedGenerator {
    rng: StdRng,
    contended: RotatingKeys,
    independent: RotatingKeys,
    registers: RegisterOps,
    streams: AppendGenerator,
}

impl MixedGenerator {
    pub fn new(options: &WorkloadOptions, seed: u64) -> MixedGenerator {
        let ops_per_key = options.ops_per_key.max(1);
        let mut registers = RegisterOps::new();
        registers.next_value = FIRST_REGISTER_VALUE;
        MixedGenerator {
            rng: StdRng::seed_from_u64(seed),
            contended: RotatingKeys::new(CONTENDED_PREFIX, 1, ops_per_key),
            independent: RotatingKeys::new(REGISTER_PREFIX, options.active_keys(), ops_per_key),
            registers,
            streams: AppendGenerator::new(options, seed ^ 0x73747265616d),
        }
    }
}

impl OpGenerator for MixedGenerator {
    fn next_op(&mut self) -> WorkloadOp {
        // Register key numbers of both spaces share one RegisterOps: contended keys count from
        // the top so they never meet an independent key's recent values.
        match self.rng.gen_range(0..4) {
            0 => {
                let number = self.contended.next();
                let key = self.contended.name(number);
                self.registers.op(&mut self.rng, u64::MAX - number, key)
            }
            1 => {
                let number = self.independent.next();
                let key = self.independent.name(number);
                self.registers.op(&mut self.rng, number, key)
            }
            _ => self.streams.next_op(),
        }
    }

    fn final_reads(&self) -> Vec<WorkloadOp> {
        let read = |key: Value| WorkloadOp::new("read", Some(key), Value::Null);
        let mut reads: Vec<WorkloadOp> = self.contended.final_keys().into_iter().map(read).collect();
        reads.extend(self.independent.final_keys().into_iter().map(read));
        reads.extend(self.streams.final_reads());
        // The most recent keys of each kind are the likeliest to be interesting; keep the bound.
        let skip = reads.len().saturating_sub(MAX_FINAL_READS);
        reads.drain(..skip.min(reads.len()));
        reads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checker::history::{Op, OpType};
    use serde_json::json;
    use std::collections::HashSet;

    #[test]
    fn every_key_of_a_mixed_run_has_the_kind_its_ops_need() {
        let mut generator = MixedGenerator::new(&WorkloadOptions::default(), 4);
        let ops: Vec<WorkloadOp> = (0..4000).map(|_| generator.next_op()).collect();
        let mut kinds = HashSet::new();
        for op in &ops {
            let kind = KeyKind::of(op.key.as_ref());
            match op.f.as_str() {
                "append" => assert_eq!(kind, KeyKind::Stream, "{op:?}"),
                "write" | "cas" => assert_eq!(kind, KeyKind::Register, "{op:?}"),
                _ => {}
            }
            let key = op.key.as_ref().unwrap().as_str().unwrap();
            kinds.insert(&key[..1]);
        }
        assert_eq!(kinds, HashSet::from(["c", "k", "s"]));
        // The contended key space has one key at a time: its keys are few.
        let contended: HashSet<_> = ops
            .iter()
            .filter(|op| op.key.as_ref().unwrap().as_str().unwrap().starts_with('c'))
            .map(|op| op.key.clone())
            .collect();
        assert!(contended.len() <= 1000 / 200 + 1, "{}", contended.len());
        assert!(generator.final_reads().iter().any(|op| KeyKind::of(op.key.as_ref()) == KeyKind::Stream));
    }

    fn op(index: u64, process: u64, op_type: OpType, f: &str, key: &str, value: Value) -> Record {
        Record::Op(Op { index, time: index, process, op_type, f: f.into(), value, key: Some(json!(key)), error: None })
    }

    #[test]
    fn a_duplicated_append_is_found_on_the_stream_part_and_registers_stay_apart() {
        let records = vec![
            op(0, 0, OpType::Invoke, "write", "k0", json!(1)),
            op(1, 0, OpType::Ok, "write", "k0", json!(1)),
            op(2, 1, OpType::Invoke, "append", "s0", json!({"event": 1})),
            op(3, 1, OpType::Ok, "append", "s0", json!({"event": 1})),
            op(4, 1, OpType::Invoke, "read", "s0", Value::Null),
            op(5, 1, OpType::Ok, "read", "s0", json!([1, 1])),
            op(6, 0, OpType::Invoke, "read", "k0", Value::Null),
            op(7, 0, OpType::Ok, "read", "k0", json!(1)),
        ];
        assert_eq!(KeyKind::Register.records(&records).len(), 4);
        assert_eq!(KeyKind::Stream.records(&records).len(), 4);
        let reports = check_extra(&records);
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].checker, STREAM_CHECK_NAME);
        assert!(reports.iter().all(|r| r.verdict == faultline_checker::Verdict::Invalid), "{reports:?}");
        // Without the duplicate, both checks pass.
        let mut fine = records.clone();
        fine[5] = op(5, 1, OpType::Ok, "read", "s0", json!([1]));
        assert!(check_extra(&fine).iter().all(|r| r.verdict == faultline_checker::Verdict::Valid));
    }
}
