//! The workloads' generators driven against a simulated linearizable store (each op takes effect
//! at a random point between its invocation and completion): the direct checkers and the
//! linearizability checker find the histories valid, and find them invalid once an acknowledged
//! write is dropped from later reads.

use std::collections::{BTreeSet, HashMap};

use faultline_checker::history::{Op, OpType, Record};
use faultline_checker::{check_plain_records, CheckOptions, Verdict};
use faultline_workloads::{append_check, set_full, OpGenerator, WorkloadKind, WorkloadOp, WorkloadOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

struct Timed {
    process: u64,
    op: WorkloadOp,
    invoke: u64,
    effect: u64,
    complete: u64,
    outcome: OpType,
    result: Value,
    error: Option<String>,
}

/// Runs `n_ops` ops of `generator`, then its final reads, on `n_processes` clients of a
/// single-copy store. `lose` is called on each read result with the effect time, to plant bugs.
fn simulate(
    generator: &mut dyn OpGenerator,
    n_ops: usize,
    n_processes: u64,
    seed: u64,
    lose: &dyn Fn(&WorkloadOp, u64, &mut Vec<Value>),
) -> Vec<Record> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut free_at: Vec<u64> = (0..n_processes).map(|_| rng.gen_range(0..10)).collect();
    let mut ops: Vec<Timed> = Vec::new();
    let mut schedule = |op: WorkloadOp, free_at: &mut Vec<u64>, rng: &mut StdRng| {
        let process = (0..n_processes).min_by_key(|p| free_at[*p as usize]).unwrap();
        let invoke = free_at[process as usize] + rng.gen_range(0..5);
        let effect = invoke + rng.gen_range(1..20);
        let complete = effect + rng.gen_range(1..20);
        free_at[process as usize] = complete + 1;
        ops.push(Timed {
            process,
            op,
            invoke,
            effect,
            complete,
            outcome: OpType::Ok,
            result: Value::Null,
            error: None,
        });
    };
    for _ in 0..n_ops {
        schedule(generator.next_op(), &mut free_at, &mut rng);
    }
    // The final reads begin after every op completed, as the harness's do after recovery.
    let end = free_at.iter().copied().max().unwrap_or(0) + 100;
    free_at.iter_mut().for_each(|t| *t = end);
    for op in generator.final_reads() {
        schedule(op, &mut free_at, &mut rng);
    }
    // Apply in effect order; effect times are made distinct by the index.
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|i| (ops[*i].effect, *i));
    let mut streams: HashMap<String, Vec<Value>> = HashMap::new();
    let mut sets: HashMap<String, BTreeSet<u64>> = HashMap::new();
    for i in order {
        let timed = &mut ops[i];
        let key = timed.op.key.as_ref().unwrap().as_str().unwrap().to_string();
        match timed.op.f.as_str() {
            "append" => {
                let stream = streams.entry(key).or_default();
                let expected = timed.op.value.get("expected_version").and_then(Value::as_u64);
                if expected.is_some_and(|v| v != stream.len() as u64) {
                    timed.outcome = OpType::Fail;
                    timed.error = Some("version-mismatch".into());
                } else {
                    stream.push(timed.op.value["event"].clone());
                }
                timed.result = timed.op.value.clone();
            }
            "add" => {
                sets.entry(key).or_default().insert(timed.op.value.as_u64().unwrap());
                timed.result = timed.op.value.clone();
            }
            "read" => {
                let mut result: Vec<Value> = if key.starts_with("set") {
                    sets.get(&key).map(|s| s.iter().map(|e| json!(e)).collect()).unwrap_or_default()
                } else {
                    streams.get(&key).cloned().unwrap_or_default()
                };
                lose(&timed.op, timed.effect, &mut result);
                timed.result = json!(result);
            }
            other => panic!("unexpected f {other}"),
        }
    }
    let mut events: Vec<(u64, usize, bool)> = Vec::new();
    for (i, timed) in ops.iter().enumerate() {
        events.push((timed.invoke, i, false));
        events.push((timed.complete, i, true));
    }
    events.sort();
    events
        .iter()
        .enumerate()
        .map(|(index, (time, i, completion))| {
            let timed = &ops[*i];
            Record::Op(Op {
                index: index as u64,
                time: *time * 1_000_000,
                process: timed.process,
                op_type: if *completion { timed.outcome } else { OpType::Invoke },
                f: timed.op.f.clone(),
                value: if *completion { timed.result.clone() } else { timed.op.value.clone() },
                key: timed.op.key.clone(),
                error: if *completion { timed.error.clone() } else { None },
            })
        })
        .collect()
}

fn no_loss(_: &WorkloadOp, _: u64, _: &mut Vec<Value>) {}

fn options() -> WorkloadOptions {
    WorkloadOptions { concurrency: 6, workers_per_key: 3, ops_per_key: 60 }
}

#[test]
fn appends_on_a_linearizable_store_are_valid_for_every_checker() {
    for seed in 0..20 {
        let mut generator = WorkloadKind::Append.generator(&options(), seed);
        let history = simulate(generator.as_mut(), 400, 6, seed, &no_loss);
        let direct = append_check::check(&history);
        assert_eq!(direct.verdict, Verdict::Valid, "seed {seed}: {}: {:?}", direct.summary(), direct.problems);
        assert!(direct.confirmed_appends > 50, "seed {seed}: {}", direct.summary());
        let model = CheckOptions { model: WorkloadKind::Append.model(), ..CheckOptions::default() };
        assert_eq!(check_plain_records(&history, &model).unwrap().verdict, Verdict::Valid, "seed {seed}");
    }
}

#[test]
fn sets_on_a_linearizable_store_are_valid_for_every_checker() {
    for seed in 0..20 {
        let mut generator = WorkloadKind::Set.generator(&options(), seed);
        let history = simulate(generator.as_mut(), 400, 6, seed, &no_loss);
        let direct = set_full::check(&history);
        assert_eq!(direct.verdict, Verdict::Valid, "seed {seed}: {}", direct.summary());
        assert!(direct.stable_count > 100, "seed {seed}: {}", direct.summary());
        assert_eq!(direct.lost_count + direct.stale_count, 0);
    }
}

/// Element or event 5 vanishes from every read that takes effect after time 150: an
/// acknowledged write lost, as with `--bug ack-before-commit` after a leader change.
fn lose_five(_: &WorkloadOp, effect: u64, result: &mut Vec<Value>) {
    if effect > 150 {
        result.retain(|v| v != &json!(5));
    }
}

#[test]
fn a_lost_acknowledged_append_is_caught_by_the_direct_check_and_the_model() {
    let mut generator = WorkloadKind::Append.generator(&options(), 3);
    let history = simulate(generator.as_mut(), 400, 6, 3, &lose_five);
    let direct = append_check::check(&history);
    assert_eq!(direct.verdict, Verdict::Invalid, "{}", direct.summary());
    assert!(direct.counts.lost + direct.counts.diverged + direct.counts.went_back > 0, "{}", direct.summary());
    let model = CheckOptions { model: WorkloadKind::Append.model(), ..CheckOptions::default() };
    assert_eq!(check_plain_records(&history, &model).unwrap().verdict, Verdict::Invalid);
}

#[test]
fn a_lost_acknowledged_add_is_caught_by_set_full() {
    let mut generator = WorkloadKind::Set.generator(&options(), 4);
    let history = simulate(generator.as_mut(), 400, 6, 4, &lose_five);
    let direct = set_full::check(&history);
    assert_eq!(direct.verdict, Verdict::Invalid, "{}", direct.summary());
    assert_eq!(direct.lost_count, 1, "{}", direct.summary());
    assert_eq!(direct.lost[0].element, json!(5));
}

#[test]
fn the_direct_checkers_are_fast_on_large_histories() {
    let big = WorkloadOptions { concurrency: 20, workers_per_key: 2, ops_per_key: 200 };
    for workload in [WorkloadKind::Append, WorkloadKind::Set] {
        let mut generator = workload.generator(&big, 1);
        let history = simulate(generator.as_mut(), 50_000, 20, 1, &no_loss);
        let started = std::time::Instant::now();
        let reports = workload.check_extra(&history);
        let elapsed = started.elapsed();
        eprintln!("{}: {} records checked in {elapsed:?}: {}", workload.name(), history.len(), reports[0].summary);
        assert_eq!(reports[0].verdict, Verdict::Valid, "{}", reports[0].summary);
        assert!(elapsed < std::time::Duration::from_secs(20), "{elapsed:?}");
    }
}
