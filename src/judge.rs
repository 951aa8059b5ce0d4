//! The one check path of a run, pure: the history against the workload's model, the workload's
//! direct checkers (set-full, append), the cluster's own checks (convergence, node crashes), the
//! online finding and vacuity, combined into one verdict (any invalid wins, then any unknown) and
//! one `RunResults`. `faultline test` calls it after a run and `faultline check <run-dir>` on a
//! stored run, so both write the same results.json. Writing files (results.json, check.html) is
//! the caller's, after judging.

use std::time::Duration;

use faultline_checker::history::{OpType, Record};
use faultline_checker::run::{CheckerReport, CheckerSection, OnlineReport, OpCounts, RunResults, RUN_FORMAT_VERSION};
use faultline_checker::{CheckError, CheckOptions, CheckResult, Verdict};
use faultline_workloads::WorkloadKind;

/// The longest the end-of-run check of `faultline test` may search before the verdict is `unknown`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// What a run's judgement needs besides the history and its check options.
#[derive(Debug, Default)]
pub struct Evidence {
    /// The run's workload, whose direct checkers run too (None for a foreign history).
    pub workload: Option<WorkloadKind>,
    /// Checks of the cluster itself, made by the harness during or after the run.
    pub cluster_checks: Vec<CheckerReport>,
    /// What the online check found while the run went on.
    pub online: Option<OnlineReport>,
    /// Faults the nemesis started (None: not a run of the harness, vacuity is not judged).
    pub faults_started: Option<u64>,
}

/// The history checker's options for a run of `workload` (ours: strict nil reads, explanations
/// and the ladder on).
pub fn run_check_options(workload: WorkloadKind, timeout: Option<Duration>, source_name: &str) -> CheckOptions {
    CheckOptions { model: workload.model(), timeout, source_name: source_name.to_string(), ..CheckOptions::default() }
}

/// Whether the model check of a run of `workload` sees `record`: a mixed workload's main check
/// sees its register keys (its direct checks judge the streams); every other history is checked
/// whole. The one rule for `test` and `check <run-dir>`.
pub fn in_main_check(workload: Option<WorkloadKind>, record: &Record) -> bool {
    workload.is_none_or(|w| w.in_main_model_check(record))
}

/// Checks the harness's own history (records built in memory, lines numbered from 1) and judges
/// it with the evidence.
pub fn judge_records(records: &[Record], options: &CheckOptions, evidence: Evidence) -> RunResults {
    let main: Vec<Record> = records.iter().filter(|r| in_main_check(evidence.workload, r)).cloned().collect();
    let checked = faultline_checker::check_plain_records(&main, options);
    judge(records, checked, evidence)
}

/// Judges a history already checked: combines the checker's verdict with the direct checks, the
/// online finding and vacuity.
pub fn judge(records: &[Record], checked: Result<CheckResult, CheckError>, evidence: Evidence) -> RunResults {
    let checker = match checked {
        Ok(result) => CheckerSection::Checked { result: Box::new(result), html: None },
        // A checker error is an unknown verdict with the reason, never valid.
        Err(e) => CheckerSection::Failed { error: e.to_string() },
    };
    let mut workload_checks = evidence.workload.map(|w| w.check_extra(records)).unwrap_or_default();
    workload_checks.extend(evidence.cluster_checks);
    let mut verdict = workload_checks.iter().fold(checker.verdict(), |verdict, check| verdict.combine(check.verdict));
    if evidence.online.as_ref().is_some_and(|o| o.invalid_at_s.is_some()) {
        // A prefix that is not linearizable makes the whole history so (monotonicity), so an
        // end-of-run check that says otherwise can only have run out of budget; the finding stands.
        verdict = Verdict::Invalid;
    }
    let ops = evidence.faults_started.map(|_| count_ops(records));
    let vacuous_reasons = match (ops, evidence.faults_started) {
        (Some(ops), Some(faults_started)) => vacuity(&ops, faults_started),
        _ => Vec::new(),
    };
    RunResults {
        format_version: RUN_FORMAT_VERSION,
        verdict,
        vacuous: verdict == Verdict::Valid && !vacuous_reasons.is_empty(),
        vacuous_reasons,
        ops,
        faults_started: evidence.faults_started,
        unexpected_node_exits: Vec::new(),
        setup_ms: None,
        duration_s: None,
        checker,
        workload: evidence.workload.map(|w| w.name().to_string()),
        workload_checks,
        online: evidence.online,
        history: None,
        skipped: Vec::new(),
        warnings: Vec::new(),
    }
}

/// Why a run tested nothing, if it did not: no fault fired, or almost no op succeeded.
pub fn vacuity(ops: &OpCounts, faults_started: u64) -> Vec<String> {
    let mut reasons = Vec::new();
    if faults_started == 0 {
        reasons.push("no fault fired".to_string());
    }
    if ops.ok < 20 || ops.ok * 20 < ops.invoked {
        reasons.push(format!("only {} of {} ops succeeded", ops.ok, ops.invoked));
    }
    reasons
}

/// Client operations by outcome.
pub fn count_ops(records: &[Record]) -> OpCounts {
    let mut counts = OpCounts::default();
    for op in records.iter().filter_map(Record::as_op) {
        match op.op_type {
            OpType::Invoke => counts.invoked += 1,
            OpType::Ok => counts.ok += 1,
            OpType::Fail => counts.fail += 1,
            OpType::Info => counts.info += 1,
        }
    }
    counts
}

/// Writes check.html next to results.json when the history is invalid, and records its path.
pub fn write_check_html(results: &mut RunResults, out_dir: &std::path::Path, history_name: &str) -> anyhow::Result<()> {
    if let CheckerSection::Checked { result, html } = &mut results.checker {
        if result.verdict == Verdict::Invalid {
            let path = out_dir.join("check.html");
            std::fs::write(&path, faultline_checker::html::render(result, history_name))?;
            *html = Some(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checker::history::Op;
    use serde_json::json;

    fn op(index: u64, process: u64, op_type: OpType, f: &str, value: serde_json::Value) -> Record {
        Record::Op(Op {
            index,
            time: index,
            process,
            op_type,
            f: f.to_string(),
            value,
            key: Some(json!("k")),
            error: None,
        })
    }

    fn stale_read() -> Vec<Record> {
        vec![
            op(0, 0, OpType::Invoke, "write", json!(1)),
            op(1, 0, OpType::Ok, "write", json!(1)),
            op(2, 1, OpType::Invoke, "read", json!(null)),
            op(3, 1, OpType::Ok, "read", json!(null)),
        ]
    }

    #[test]
    fn a_direct_check_that_is_invalid_makes_a_linearizable_history_invalid() {
        let records = &stale_read()[..2];
        let options = run_check_options(WorkloadKind::Register, None, "h");
        let invalid = CheckerReport {
            checker: "convergence".into(),
            verdict: Verdict::Invalid,
            summary: "diverged".into(),
            details: json!(null),
        };
        let results =
            judge_records(records, &options, Evidence { cluster_checks: vec![invalid], ..Evidence::default() });
        assert_eq!(results.checker.verdict(), Verdict::Valid);
        assert_eq!(results.verdict, Verdict::Invalid);
    }

    #[test]
    fn an_online_finding_stands_even_when_the_end_of_run_check_says_otherwise() {
        let options = run_check_options(WorkloadKind::Register, None, "h");
        let online = OnlineReport { checks: 3, invalid_at_s: Some(1.5), ..OnlineReport::default() };
        let results =
            judge_records(&stale_read()[..2], &options, Evidence { online: Some(online), ..Evidence::default() });
        assert_eq!(results.verdict, Verdict::Invalid);
    }

    #[test]
    fn a_stale_read_is_invalid_and_results_round_trip_through_their_type() {
        let options = run_check_options(WorkloadKind::Register, None, "h");
        let results =
            judge_records(&stale_read(), &options, Evidence { faults_started: Some(1), ..Evidence::default() });
        assert_eq!(results.verdict, Verdict::Invalid);
        assert!(!results.vacuous, "an invalid run is never vacuous");
        assert_eq!(results.ops.unwrap().invoked, 2);
        let text = serde_json::to_string(&results).unwrap();
        let back: RunResults = serde_json::from_str(&text).unwrap();
        assert_eq!(back.verdict, Verdict::Invalid);
        assert_eq!(back.checker.result().unwrap().anomalies.len(), 1);
    }

    #[test]
    fn a_mixed_history_is_judged_per_key_kind() {
        let at = |index: u64, op_type: OpType, f: &str, key: &str, value: serde_json::Value| {
            let Record::Op(mut op) = op(index, index / 2, op_type, f, value) else { unreachable!() };
            op.key = Some(json!(key));
            Record::Op(op)
        };
        let mut records = vec![
            at(0, OpType::Invoke, "write", "k0", json!(1)),
            at(1, OpType::Ok, "write", "k0", json!(1)),
            at(2, OpType::Invoke, "append", "s0", json!({"event": 2})),
            at(3, OpType::Ok, "append", "s0", json!({"event": 2})),
            at(4, OpType::Invoke, "read", "s0", json!(null)),
            at(5, OpType::Ok, "read", "s0", json!([2])),
        ];
        let options = run_check_options(WorkloadKind::Mixed, None, "h");
        let evidence = || Evidence { workload: Some(WorkloadKind::Mixed), ..Evidence::default() };
        let results = judge_records(&records, &options, evidence());
        assert_eq!(results.verdict, Verdict::Valid, "{:?}", results.workload_checks);
        assert_eq!(results.checker.result().unwrap().ops, 1, "the main check sees the register keys only");
        // A retried append applied twice: the stream part is invalid, the register part is not.
        records[5] = at(5, OpType::Ok, "read", "s0", json!([2, 2]));
        let results = judge_records(&records, &options, evidence());
        assert_eq!(results.verdict, Verdict::Invalid);
        assert_eq!(results.checker.verdict(), Verdict::Valid);
    }

    #[test]
    fn a_run_without_faults_or_successes_is_vacuous() {
        let quiet = OpCounts { invoked: 100, ok: 3, fail: 97, info: 0 };
        let reasons = vacuity(&quiet, 0);
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(vacuity(&OpCounts { invoked: 100, ok: 100, fail: 0, info: 0 }, 1).is_empty());
    }
}
