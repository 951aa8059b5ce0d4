//! Online checking during a run: every second, the history so far is checked with the
//! workload's model (`faultline_checker::online::check_prefix`), each part of a mixed workload
//! (register keys, stream keys) with its own (`WorkloadKind::model_parts`). A prefix that is not
//! linearizable is a certain finding; with `--stop-on-invalid` it ends the load at once, and the
//! run then heals, recovers, reads and checks everything as usual.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use faultline_checker::history::Record;
use faultline_checker::online::{check_prefix, PrefixVerdict};
use faultline_workloads::WorkloadKind;

use crate::run_store::HistoryLog;

/// How often the history so far is checked.
pub const ONLINE_CHECK_PERIOD: Duration = Duration::from_secs(1);
/// The time budget of one check of the history so far; past it that check says nothing.
pub const ONLINE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub use faultline_checker::run::OnlineReport;

/// Checks the growing history until `done` is set or a prefix is found invalid; then, if
/// `stop_on_invalid`, sets `stop_load`. Bounded: each check has [`ONLINE_CHECK_TIMEOUT`], and
/// the wait between checks looks at `done` every 50 ms.
pub fn watch(
    history: &HistoryLog,
    workload: WorkloadKind,
    load_start: Instant,
    done: &AtomicBool,
    stop_on_invalid: bool,
    stop_load: &AtomicBool,
) -> OnlineReport {
    let mut report = OnlineReport::default();
    let mut next = Instant::now() + ONLINE_CHECK_PERIOD;
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + ONLINE_CHECK_PERIOD;
        let records = history.records();
        report.checks += 1;
        if let Some(key) = first_invalid_part(&records, workload) {
            report.invalid_at_s = Some(load_start.elapsed().as_secs_f64());
            report.invalid_key = key;
            report.invalid_prefix_records = Some(records.len());
            if stop_on_invalid {
                report.stopped_early = true;
                stop_load.store(true, Ordering::SeqCst);
            }
            break;
        }
    }
    report
}

/// The key found invalid in the first part of the history so far (of `workload.model_parts`)
/// whose prefix is certainly not linearizable; `Some(None)` for a history without keys. A part's
/// prefix is a prefix of that part's history, and a history is linearizable only if each part
/// is (locality), so an invalid part is as certain as an invalid whole.
fn first_invalid_part(records: &[Record], workload: WorkloadKind) -> Option<Option<serde_json::Value>> {
    workload.model_parts(records).into_iter().find_map(|(model, part)| {
        // A history the checker refuses is judged at the end of the run, with its error.
        match check_prefix(&part, model, ONLINE_CHECK_TIMEOUT) {
            Ok(PrefixVerdict::Invalid { key }) => Some(key),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checker::history::{Op, OpType};
    use serde_json::{json, Value};

    fn op(index: u64, process: u64, op_type: OpType, f: &str, key: &str, value: Value) -> Record {
        Record::Op(Op { index, time: index, process, op_type, f: f.into(), value, key: Some(json!(key)), error: None })
    }

    #[test]
    fn a_mixed_prefix_is_checked_per_key_kind_and_a_doubled_append_is_found() {
        let mut records = vec![
            op(0, 0, OpType::Invoke, "write", "k0", json!(1)),
            op(1, 0, OpType::Ok, "write", "k0", json!(1)),
            op(2, 1, OpType::Invoke, "append", "s0", json!({"event": 7})),
            op(3, 1, OpType::Ok, "append", "s0", json!({"event": 7})),
            op(4, 1, OpType::Invoke, "read", "s0", Value::Null),
            op(5, 1, OpType::Ok, "read", "s0", json!([7])),
            op(6, 0, OpType::Invoke, "read", "k0", Value::Null),
        ];
        // Both kinds in one prefix, each under its model: valid so far (the kv model alone would
        // refuse the appends).
        assert_eq!(first_invalid_part(&records, WorkloadKind::Mixed), None);
        records.push(op(7, 2, OpType::Invoke, "read", "s0", Value::Null));
        records.push(op(8, 2, OpType::Ok, "read", "s0", json!([7, 7])));
        assert_eq!(first_invalid_part(&records, WorkloadKind::Mixed), Some(Some(json!("s0"))));
        // The register part alone is still fine.
        assert_eq!(first_invalid_part(&records[..2], WorkloadKind::Mixed), None);
    }
}
