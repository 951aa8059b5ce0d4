//! Property tests of the consistency ladder: a register read through a lagging replica gives
//! histories that are sequentially consistent by construction (a sequential execution is their
//! witness), often not linearizable; the checker must call every one of them sequentially
//! consistent, and must refuse the same histories once one read returns a value nobody wrote.
//!
//! Seeds are printed on failure; FAULTLINE_PROPTEST_CASES raises the number of cases.

use faultline_checker::{check_plain_records, CheckOptions, ModelKind, Op, OpType, Record, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

fn cases(default: u64) -> u64 {
    std::env::var("FAULTLINE_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Event {
    time: u64,
    process: u64,
    op_type: OpType,
    f: &'static str,
    value: Value,
}

/// A sequential execution of a register (writes of unique values, reads of the current value),
/// each op on a random process; then real time: a write takes effect when it is serialised, a
/// read is served by a replica up to `max_lag` late. Each process's ops keep their order in time.
/// A crashed write (info) took effect or not, and its process is retired.
fn lagging_replica_history(rng: &mut StdRng, n_processes: u64, n_ops: usize, max_lag: u64) -> Vec<Event> {
    let mut process_ids: Vec<u64> = (0..n_processes).collect();
    let mut next_process = n_processes;
    let mut free_at: Vec<u64> = vec![0; n_processes as usize];
    let mut value: Value = Value::Null;
    let mut next_value = 1;
    let mut events = Vec::new();
    for i in 0..n_ops as u64 {
        let serialised = i * 100;
        let slot = rng.gen_range(0..n_processes as usize);
        let process = process_ids[slot];
        if rng.gen_bool(0.5) {
            let written = json!(next_value);
            next_value += 1;
            let crashed = rng.gen_bool(0.1);
            if !crashed || rng.gen_bool(0.5) {
                value = written.clone();
            }
            let call = (serialised.saturating_sub(rng.gen_range(1..10))).max(free_at[slot]);
            let ret = call.max(serialised) + rng.gen_range(1..10);
            events.push(Event { time: call, process, op_type: OpType::Invoke, f: "write", value: written.clone() });
            let outcome = if crashed { OpType::Info } else { OpType::Ok };
            events.push(Event { time: ret, process, op_type: outcome, f: "write", value: written });
            free_at[slot] = ret + 1;
            if crashed {
                process_ids[slot] = next_process;
                next_process += 1;
            }
        } else {
            let call = (serialised + rng.gen_range(0..=max_lag)).max(free_at[slot]);
            let ret = call + rng.gen_range(1..10);
            events.push(Event { time: call, process, op_type: OpType::Invoke, f: "read", value: Value::Null });
            events.push(Event { time: ret, process, op_type: OpType::Ok, f: "read", value: value.clone() });
            free_at[slot] = ret + 1;
        }
    }
    // Invocations before completions at the same instant, then by process: a stable real-time order.
    events.sort_by_key(|e| (e.time, e.op_type != OpType::Invoke, e.process));
    events
}

fn records(events: &[Event]) -> Vec<Record> {
    events
        .iter()
        .enumerate()
        .map(|(index, e)| {
            Record::Op(Op {
                index: index as u64,
                time: e.time * 1_000_000,
                process: e.process,
                op_type: e.op_type,
                f: e.f.to_string(),
                value: e.value.clone(),
                key: None,
                error: None,
            })
        })
        .collect()
}

fn check(records: &[Record]) -> faultline_checker::CheckResult {
    let options = CheckOptions { model: ModelKind::Register, ..CheckOptions::default() };
    check_plain_records(records, &options).unwrap()
}

#[test]
fn a_register_read_through_a_lagging_replica_is_sequentially_consistent() {
    let mut not_linearizable = 0;
    let n = cases(300);
    for seed in 0..n {
        let mut rng = StdRng::seed_from_u64(seed);
        let events = lagging_replica_history(&mut rng, 4, 40, 400);
        let result = check(&records(&events));
        if result.verdict == Verdict::Invalid {
            not_linearizable += 1;
            let ladder = result.ladder.as_ref().unwrap_or_else(|| panic!("seed {seed}: no ladder"));
            assert_eq!(ladder.sequential.verdict, Verdict::Valid, "seed {seed}: {}", ladder.summary);
            let staleness = ladder.staleness.as_ref().expect("registers measure staleness");
            assert!(staleness.stale_reads <= staleness.reads);
        } else {
            assert_eq!(result.verdict, Verdict::Valid, "seed {seed}: {:?}", result.reason);
            assert!(result.ladder.is_none(), "seed {seed}: a ladder for a linearizable history");
        }
    }
    // The generator must exercise the ladder: most lagging histories are not linearizable.
    assert!(not_linearizable * 3 > n, "only {not_linearizable} of {n} histories were not linearizable");
}

#[test]
fn one_read_of_a_value_nobody_wrote_is_not_sequentially_consistent() {
    for seed in 0..cases(200) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut events = lagging_replica_history(&mut rng, 4, 40, 400);
        let reads: Vec<usize> =
            (0..events.len()).filter(|&i| events[i].f == "read" && events[i].op_type == OpType::Ok).collect();
        if reads.is_empty() {
            continue;
        }
        let victim = reads[rng.gen_range(0..reads.len())];
        events[victim].value = json!(-1);
        let result = check(&records(&events));
        assert_eq!(result.verdict, Verdict::Invalid, "seed {seed}");
        let ladder = result.ladder.as_ref().unwrap_or_else(|| panic!("seed {seed}: no ladder"));
        assert_eq!(ladder.sequential.verdict, Verdict::Invalid, "seed {seed}: {}", ladder.summary);
    }
}

#[test]
fn with_no_lag_the_same_generator_is_linearizable() {
    // The witness order is then also a real-time order: a check that the generator is what it
    // says, so the first property's invalid histories come from the lag alone.
    for seed in 0..cases(100) {
        let mut rng = StdRng::seed_from_u64(seed);
        let events = lagging_replica_history(&mut rng, 4, 40, 0);
        let result = check(&records(&events));
        assert_eq!(result.verdict, Verdict::Valid, "seed {seed}: {:?}", result.reason);
    }
}
