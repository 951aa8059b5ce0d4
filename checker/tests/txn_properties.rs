//! Property tests of the transactional checker, on simulated executions:
//! - serial executions (each transaction takes effect atomically between its invocation and its
//!   completion) are valid under every model, strict serializability included;
//! - snapshot-isolated executions (reads from a snapshot taken at invocation, first committer
//!   wins) are valid under read committed and snapshot isolation;
//! - one injected anomaly (a stale read, a read of an aborted write, an element read twice) is
//!   always found.
//!
//! Seeds are printed on failure; FAULTLINE_PROPTEST_CASES raises the number of cases.

use faultline_checker::history::{Op, OpType, Record};
use faultline_checker::txn::{check_records, Consistency, TxnCheckResult, TxnModel, TxnOptions};
use faultline_checker::{LineRecord, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;

fn cases(default: u64) -> u64 {
    std::env::var("FAULTLINE_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq)]
enum Isolation {
    Serial,
    Snapshot,
}

/// Each key's list of values (for a register, its writes; the value is the last).
type State = HashMap<i64, Vec<i64>>;

enum Phase {
    Idle,
    /// Invoked; for snapshot isolation, `results` were computed at invocation from the snapshot.
    Invoked {
        mops: Vec<(bool, i64, i64)>,
        snapshot_seq: u64,
        results: Option<Value>,
    },
    /// Took effect (or aborted); the completion is still to be written.
    Done {
        outcome: OpType,
        value: Value,
    },
}

struct Sim {
    rng: StdRng,
    model: TxnModel,
    isolation: Isolation,
    n_keys: i64,
    state: State,
    /// Commit sequence number, and per key the sequence of its last commit.
    seq: u64,
    last_commit: HashMap<i64, u64>,
    next_value: i64,
    records: Vec<LineRecord>,
}

impl Sim {
    fn record(&mut self, process: u64, op_type: OpType, value: Value) {
        let index = self.records.len() as u64;
        let op = Op { index, time: index * 1000, process, op_type, f: "txn".into(), value, key: None, error: None };
        self.records.push(LineRecord { line: index as usize + 1, record: Record::Op(op) });
    }

    fn gen_mops(&mut self) -> Vec<(bool, i64, i64)> {
        let n = self.rng.gen_range(1..=4);
        (0..n)
            .map(|_| {
                let key = self.rng.gen_range(0..self.n_keys);
                let write = self.rng.gen_bool(0.5);
                self.next_value += 1;
                (write, key, self.next_value)
            })
            .collect()
    }

    fn invoke_json(&self, mops: &[(bool, i64, i64)]) -> Value {
        Value::Array(
            mops.iter()
                .map(|&(write, key, value)| match (write, self.model) {
                    (true, TxnModel::ListAppend) => json!(["append", key, value]),
                    (true, TxnModel::RwRegister) => json!(["w", key, value]),
                    (false, _) => json!(["r", key, null]),
                })
                .collect(),
        )
    }

    /// Runs the micro-ops against `view` (plus the transaction's own writes); returns the
    /// completed value and the writes.
    fn execute(&self, mops: &[(bool, i64, i64)], view: &State) -> (Value, Vec<(i64, i64)>) {
        let mut own: HashMap<i64, Vec<i64>> = HashMap::new();
        let mut writes = Vec::new();
        let mut out = Vec::new();
        for &(write, key, value) in mops {
            if write {
                own.entry(key).or_default().push(value);
                writes.push((key, value));
                out.push(match self.model {
                    TxnModel::ListAppend => json!(["append", key, value]),
                    TxnModel::RwRegister => json!(["w", key, value]),
                });
            } else {
                let mut list = view.get(&key).cloned().unwrap_or_default();
                list.extend(own.get(&key).into_iter().flatten());
                out.push(match self.model {
                    TxnModel::ListAppend => json!(["r", key, list]),
                    TxnModel::RwRegister => json!(["r", key, list.last()]),
                });
            }
        }
        (Value::Array(out), writes)
    }

    fn apply(&mut self, writes: &[(i64, i64)]) {
        self.seq += 1;
        for &(key, value) in writes {
            self.state.entry(key).or_default().push(value);
            self.last_commit.insert(key, self.seq);
        }
    }

    fn run(&mut self, n_processes: u64, n_txns: usize) {
        let mut phases: Vec<Phase> = (0..n_processes).map(|_| Phase::Idle).collect();
        let mut invoked = 0;
        while invoked < n_txns || phases.iter().any(|p| !matches!(p, Phase::Idle)) {
            let p = self.rng.gen_range(0..n_processes) as usize;
            match std::mem::replace(&mut phases[p], Phase::Idle) {
                Phase::Idle if invoked < n_txns => {
                    invoked += 1;
                    let mops = self.gen_mops();
                    let value = self.invoke_json(&mops);
                    self.record(p as u64, OpType::Invoke, value);
                    let results = (self.isolation == Isolation::Snapshot).then(|| self.execute(&mops, &self.state).0);
                    phases[p] = Phase::Invoked { mops, snapshot_seq: self.seq, results };
                }
                Phase::Idle => {}
                Phase::Invoked { mops, snapshot_seq, results } => {
                    let invoke_value = self.invoke_json(&mops);
                    let roll: f64 = self.rng.gen();
                    if roll < 0.05 {
                        // Crashed before taking effect: info, never applied.
                        phases[p] = Phase::Done { outcome: OpType::Info, value: invoke_value };
                        continue;
                    }
                    let (value, writes) = match results {
                        Some(value) => {
                            let writes: Vec<(i64, i64)> =
                                mops.iter().filter(|m| m.0).map(|&(_, k, v)| (k, v)).collect();
                            (value, writes)
                        }
                        None => self.execute(&mops, &self.state),
                    };
                    let conflict =
                        writes.iter().any(|(k, _)| self.last_commit.get(k).is_some_and(|s| *s > snapshot_seq));
                    if self.isolation == Isolation::Snapshot && conflict {
                        phases[p] = Phase::Done { outcome: OpType::Fail, value: invoke_value };
                        continue;
                    }
                    self.apply(&writes);
                    let outcome = if roll < 0.10 { OpType::Info } else { OpType::Ok };
                    let value = if outcome == OpType::Info { invoke_value } else { value };
                    phases[p] = Phase::Done { outcome, value };
                }
                Phase::Done { outcome, value } => self.record(p as u64, outcome, value),
            }
        }
    }
}

fn simulate(seed: u64, model: TxnModel, isolation: Isolation, n_txns: usize) -> Vec<LineRecord> {
    let mut sim = Sim {
        rng: StdRng::seed_from_u64(seed),
        model,
        isolation,
        n_keys: 3,
        state: State::new(),
        seq: 0,
        last_commit: HashMap::new(),
        next_value: 0,
        records: Vec::new(),
    };
    let n_processes = 2 + seed % 4;
    sim.run(n_processes, n_txns);
    sim.records
}

fn check(records: &[LineRecord], model: TxnModel, consistency: Consistency) -> TxnCheckResult {
    let options = TxnOptions { model, consistency, ..TxnOptions::default() };
    check_records(records, &options).expect("generated histories are well formed")
}

fn dump(records: &[LineRecord]) -> String {
    records.iter().map(|r| serde_json::to_string(&r.record).unwrap() + "\n").collect()
}

#[test]
fn serial_executions_are_valid_under_every_model() {
    for model in [TxnModel::ListAppend, TxnModel::RwRegister] {
        for seed in 0..cases(150) {
            let records = simulate(seed, model, Isolation::Serial, 40);
            let result = check(&records, model, Consistency::StrictSerializable);
            assert_eq!(
                result.verdict,
                Verdict::Valid,
                "seed {seed} {}:\n{}\n{}",
                model.name(),
                result.text(),
                dump(&records)
            );
            assert_eq!(result.weaker_models_holding.len(), 3);
        }
    }
}

#[test]
fn snapshot_isolated_executions_are_valid_under_snapshot_isolation() {
    let mut write_skews = 0;
    for model in [TxnModel::ListAppend, TxnModel::RwRegister] {
        for seed in 0..cases(150) {
            let records = simulate(10_000 + seed, model, Isolation::Snapshot, 40);
            let result = check(&records, model, Consistency::SnapshotIsolation);
            assert_eq!(
                result.verdict,
                Verdict::Valid,
                "seed {} {}:\n{}\n{}",
                10_000 + seed,
                model.name(),
                result.text(),
                dump(&records)
            );
            if check(&records, model, Consistency::Serializable).verdict == Verdict::Invalid {
                write_skews += 1;
            }
        }
    }
    // Guard against a vacuous simulation: snapshot isolation must produce some G2-item.
    assert!(write_skews > 0, "no snapshot-isolated history was non-serializable");
}

/// The index of an ok completion whose list-append read of `key` is non-empty, with its position.
fn ok_reads(records: &[LineRecord]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let Record::Op(op) = &r.record else { continue };
        if op.op_type != OpType::Ok {
            continue;
        }
        for (m, mop) in op.value.as_array().unwrap().iter().enumerate() {
            if mop[0] == "r" && mop[2].as_array().is_some_and(|l| !l.is_empty()) {
                found.push((i, m));
            }
        }
    }
    found
}

fn value_mut(records: &mut [LineRecord], at: usize) -> &mut Op {
    match &mut records[at].record {
        Record::Op(op) => op,
        Record::Fault(_) => unreachable!(),
    }
}

/// Whether the last element of the read (completion `at`, micro-op `mop`) was appended by an ok
/// transaction that completed before the reader was invoked.
fn last_written_before_invocation(records: &[LineRecord], at: usize, mop: usize) -> bool {
    let reader = records[at].record.as_op().unwrap();
    let read = &reader.value[mop];
    let (key, element) = (&read[1], read[2].as_array().unwrap().last().unwrap());
    let invoked = records[..at]
        .iter()
        .rposition(|r| r.record.as_op().is_some_and(|op| op.process == reader.process && op.op_type == OpType::Invoke))
        .unwrap();
    records[..invoked].iter().any(|r| {
        r.record.as_op().is_some_and(|op| {
            op.op_type == OpType::Ok
                && op.value.as_array().unwrap().iter().any(|m| m[0] == "append" && m[1] == *key && m[2] == *element)
        })
    })
}

#[test]
fn one_injected_anomaly_is_always_found() {
    let mut stale_reads = 0;
    for seed in 0..cases(150) {
        let records = simulate(20_000 + seed, TxnModel::ListAppend, Isolation::Serial, 40);
        let reads = ok_reads(&records);
        if reads.is_empty() {
            continue;
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let (at, mop) = reads[rng.gen_range(0..reads.len())];

        // A stale read: the last element dropped, where its appender completed before the reader
        // was invoked. No strictly serializable order lets the reader miss it.
        let stale_candidates: Vec<(usize, usize)> =
            reads.iter().copied().filter(|&(r, m)| last_written_before_invocation(&records, r, m)).collect();
        if let Some(&(r, m)) = stale_candidates.get(rng.gen_range(0..stale_candidates.len().max(1))) {
            let mut stale = records.clone();
            value_mut(&mut stale, r).value[m][2].as_array_mut().unwrap().pop();
            let result = check(&stale, TxnModel::ListAppend, Consistency::StrictSerializable);
            assert_eq!(result.verdict, Verdict::Invalid, "stale read, seed {seed}:\n{}", dump(&stale));
            stale_reads += 1;
        }

        // An element read twice.
        let mut doubled = records.clone();
        let list = value_mut(&mut doubled, at).value[mop][2].as_array_mut().unwrap();
        let first = list[0].clone();
        list.push(first);
        let result = check(&doubled, TxnModel::ListAppend, Consistency::ReadCommitted);
        assert!(result.anomaly_counts.contains_key("duplicate-appends"), "seed {seed}: {:?}", result.anomaly_counts);

        // A read of an aborted write: the appender of the read's first element now fails.
        let mut aborted = records.clone();
        let element = aborted[at].record.as_op().unwrap().value[mop][2][0].clone();
        let key = aborted[at].record.as_op().unwrap().value[mop][1].clone();
        let writer = aborted
            .iter()
            .position(|r| {
                r.record.as_op().is_some_and(|op| {
                    op.op_type != OpType::Invoke
                        && op
                            .value
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|m| m[0] == "append" && m[1] == key && m[2] == element)
                })
            })
            .unwrap();
        if writer == at {
            continue; // the reader appended it itself
        }
        value_mut(&mut aborted, writer).op_type = OpType::Fail;
        let result = check(&aborted, TxnModel::ListAppend, Consistency::ReadCommitted);
        assert!(
            result.anomaly_counts.contains_key("G1a"),
            "seed {seed}: {:?}\n{}",
            result.anomaly_counts,
            dump(&aborted)
        );
    }
    assert!(stale_reads > 0, "no stale read was injected");
}
