//! The direct checkers on handmade histories: each catches a lost acknowledged write and passes
//! a correct history.

use faultline_checker::history::{Op, OpType, Record};
use faultline_checker::Verdict;
use faultline_workloads::{append_check, set_full, WorkloadKind};
use serde_json::{json, Value};

/// Builds a history one record at a time; `time` is the record's index in milliseconds.
#[derive(Default)]
struct History(Vec<Record>);

impl History {
    fn push(&mut self, process: u64, op_type: OpType, f: &str, key: &str, value: Value) -> &mut Self {
        let index = self.0.len() as u64;
        let error = (op_type == OpType::Fail).then(|| "not-leader".to_string());
        self.0.push(Record::Op(Op {
            index,
            time: index * 1_000_000,
            process,
            op_type,
            f: f.to_string(),
            value,
            key: Some(json!(key)),
            error,
        }));
        self
    }

    /// An op that completes right after it is invoked, with `result` as the completion's value.
    fn op(&mut self, process: u64, outcome: OpType, f: &str, key: &str, value: Value, result: Value) -> &mut Self {
        self.push(process, OpType::Invoke, f, key, value).push(process, outcome, f, key, result)
    }
}

fn set_history(final_read: Value) -> Vec<Record> {
    let mut h = History::default();
    h.op(0, OpType::Ok, "add", "set0", json!(1), json!(1))
        .op(1, OpType::Ok, "add", "set0", json!(2), json!(2))
        .op(0, OpType::Ok, "read", "set0", Value::Null, json!([1, 2]))
        // An indefinite add that took effect, and a failed one that did not.
        .op(1, OpType::Info, "add", "set0", json!(3), Value::Null)
        .op(2, OpType::Fail, "add", "set0", json!(4), Value::Null)
        .op(3, OpType::Ok, "add", "set0", json!(5), json!(5))
        .op(0, OpType::Ok, "read", "set0", Value::Null, final_read);
    h.0
}

#[test]
fn set_full_passes_a_correct_history() {
    let result = set_full::check(&set_history(json!([1, 2, 3, 5])));
    assert_eq!(result.verdict, Verdict::Valid, "{}", result.summary());
    assert_eq!(result.acknowledged_adds, 3);
    assert_eq!(result.stable_count, 3, "1, 2 and 5 acknowledged and read back");
    // 3's add was indefinite and only the last read saw it: no read began after it was known.
    assert_eq!(result.never_read_count, 1);
    assert_eq!(result.lost_count + result.stale_count + result.unexpected_count, 0);
    assert_eq!(result.visibility_latency.count, 3);
}

#[test]
fn set_full_catches_a_lost_acknowledged_add() {
    let result = set_full::check(&set_history(json!([1, 3, 5])));
    assert_eq!(result.verdict, Verdict::Invalid);
    assert_eq!(result.lost_count, 1);
    assert_eq!(result.lost[0].element, json!(2));
    assert_eq!(result.lost[0].add_outcome, "ok");
}

#[test]
fn set_full_counts_stale_never_read_and_unexpected_elements() {
    let mut h = History::default();
    h.op(0, OpType::Ok, "add", "s", json!(1), json!(1))
        .op(0, OpType::Ok, "read", "s", Value::Null, json!([]))
        .op(0, OpType::Ok, "read", "s", Value::Null, json!([1, 9]))
        .op(1, OpType::Ok, "add", "s", json!(2), json!(2));
    let result = set_full::check(&h.0);
    assert_eq!(result.verdict, Verdict::Invalid);
    assert_eq!(result.stale_count, 1, "1 was missing from a read begun after its ack");
    assert_eq!(result.never_read_count, 1, "no read began after 2 was acknowledged");
    assert_eq!(result.unexpected_count, 1, "9 was never added");
}

#[test]
fn set_full_with_nothing_read_back_is_unknown() {
    let mut h = History::default();
    h.op(0, OpType::Ok, "add", "s", json!(1), json!(1));
    assert_eq!(set_full::check(&h.0).verdict, Verdict::Unknown);
}

fn append(event: u64, expected_version: Option<u64>) -> Value {
    match expected_version {
        Some(v) => json!({"event": event, "expected_version": v}),
        None => json!({"event": event}),
    }
}

fn stream_history(final_read: Value) -> Vec<Record> {
    let mut h = History::default();
    h.op(0, OpType::Ok, "append", "s0", append(1, None), append(1, None))
        .op(1, OpType::Ok, "append", "s0", append(2, Some(1)), append(2, Some(1)))
        .op(2, OpType::Ok, "read", "s0", Value::Null, json!([1, 2]))
        .op(1, OpType::Fail, "append", "s0", append(3, Some(0)), append(3, Some(0)))
        .op(0, OpType::Info, "append", "s0", append(4, None), Value::Null)
        .op(1, OpType::Ok, "append", "s0", append(5, None), append(5, None))
        .op(2, OpType::Ok, "read", "s0", Value::Null, final_read);
    h.0
}

#[test]
fn append_check_passes_a_correct_history() {
    let result = append_check::check(&stream_history(json!([1, 2, 4, 5])));
    assert_eq!(result.verdict, Verdict::Valid, "{}", result.summary());
    assert_eq!(result.acknowledged_appends, 3);
    assert_eq!(result.confirmed_appends, 3);
}

#[test]
fn append_check_catches_a_lost_acknowledged_append() {
    let result = append_check::check(&stream_history(json!([1, 2, 4])));
    assert_eq!(result.verdict, Verdict::Invalid);
    assert_eq!(result.counts.lost, 1, "{:?}", result.problems);
    let lost = result.problems.iter().find(|p| p.kind == "lost").unwrap();
    assert_eq!(lost.event, Some(json!(5)));
}

#[test]
fn append_check_catches_duplicates_reorders_gaps_and_shrinking_reads() {
    for (read, kind) in [
        (json!([1, 2, 2, 5]), "duplicated"),
        (json!([2, 1, 5]), "diverged"),
        (json!([1, 2, 3, 5]), "unexpected"),
        (json!([1]), "went-back"),
    ] {
        let result = append_check::check(&stream_history(read.clone()));
        assert_eq!(result.verdict, Verdict::Invalid, "{read}");
        assert!(result.problems.iter().any(|p| p.kind == kind), "{read}: no {kind} in {:?}", result.problems);
    }
    // A gap: an earlier read saw [1, 2], a later one skips 2.
    let result = append_check::check(&stream_history(json!([1, 5])));
    assert!(result.problems.iter().any(|p| p.kind == "diverged"), "{:?}", result.problems);
}

#[test]
fn workloads_run_their_direct_checkers() {
    let reports = WorkloadKind::Set.check_extra(&set_history(json!([1, 3, 5])));
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].checker, "set-full");
    assert_eq!(reports[0].verdict, Verdict::Invalid);
    let json = serde_json::to_value(&reports).unwrap();
    assert_eq!(json[0]["verdict"], "invalid");
    assert_eq!(json[0]["details"]["lost_count"], 1);
    assert!(WorkloadKind::CasRegister.check_extra(&set_history(json!([]))).is_empty());
}

#[test]
fn the_linearizability_model_agrees_on_the_lost_append() {
    use faultline_checker::{check_plain_records, CheckOptions};
    let options = CheckOptions { model: WorkloadKind::Append.model(), ..CheckOptions::default() };
    let good = check_plain_records(&stream_history(json!([1, 2, 4, 5])), &options).unwrap();
    assert_eq!(good.verdict, Verdict::Valid);
    let lost = check_plain_records(&stream_history(json!([1, 2, 4])), &options).unwrap();
    assert_eq!(lost.verdict, Verdict::Invalid);
}
