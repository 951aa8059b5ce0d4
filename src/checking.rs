//! The bridge from a run's history to the checkers: the linearizability search with the workload's
//! model (split by key), then the workload's direct checkers (set-full, stream continuity), whose
//! verdicts combine with the search's (any invalid wins, then any unknown).

use std::path::Path;
use std::time::Duration;

use faultline_checker::history::Record;
use faultline_checker::{check_plain_records, CheckOptions};
use faultline_workloads::{CheckerReport, WorkloadKind};
use serde_json::{json, Value};

use crate::test_cmd::Verdict;

/// The longest the checker may search before the verdict is `unknown`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// What the checkers said about a run.
pub struct Checked {
    /// The search's and the direct checkers' verdicts combined.
    pub verdict: Verdict,
    /// The linearizability checker's report (results.json `checker`).
    pub checker: Value,
    /// The workload's direct checkers (results.json `workload_checks`).
    pub workload_checks: Vec<CheckerReport>,
}

/// Checks a run of `workload`: the search with the workload's model, then its direct checkers.
pub fn check_workload(records: &[Record], run_dir: &Path, workload: WorkloadKind) -> Checked {
    let (search_verdict, checker) = check(records, run_dir, workload);
    let workload_checks = workload.check_extra(records);
    let combined =
        workload_checks.iter().fold(checker_verdict(search_verdict), |verdict, report| verdict.combine(report.verdict));
    let verdict = match combined {
        faultline_checker::Verdict::Valid => Verdict::Valid,
        faultline_checker::Verdict::Invalid => Verdict::Invalid,
        faultline_checker::Verdict::Unknown => Verdict::Unknown,
    };
    Checked { verdict, checker, workload_checks }
}

impl Checked {
    /// Adds one more direct check; its verdict combines like the others' (invalid wins).
    pub fn add_check(&mut self, report: CheckerReport) {
        let combined = checker_verdict(self.verdict).combine(report.verdict);
        self.verdict = match combined {
            faultline_checker::Verdict::Valid => Verdict::Valid,
            faultline_checker::Verdict::Invalid => Verdict::Invalid,
            faultline_checker::Verdict::Unknown => Verdict::Unknown,
        };
        self.workload_checks.push(report);
    }
}

fn checker_verdict(verdict: Verdict) -> faultline_checker::Verdict {
    match verdict {
        Verdict::Valid => faultline_checker::Verdict::Valid,
        Verdict::Invalid => faultline_checker::Verdict::Invalid,
        Verdict::Unknown => faultline_checker::Verdict::Unknown,
    }
}

/// Checks the history; a checker error is an `unknown` verdict with the reason, never `valid`.
/// An invalid history also gets the checker's self-contained HTML timeline, `check.html`, in
/// `run_dir`.
pub fn check(records: &[Record], run_dir: &Path, workload: WorkloadKind) -> (Verdict, Value) {
    let options = CheckOptions {
        model: workload.model(),
        timeout: Some(CHECK_TIMEOUT),
        source_name: "history.jsonl".to_string(),
        ..CheckOptions::default()
    };
    match check_plain_records(records, &options) {
        Ok(result) => {
            let verdict = match result.verdict {
                faultline_checker::Verdict::Valid => Verdict::Valid,
                faultline_checker::Verdict::Invalid => Verdict::Invalid,
                faultline_checker::Verdict::Unknown => Verdict::Unknown,
            };
            let mut report = serde_json::to_value(&result).unwrap_or_else(|e| json!({"error": e.to_string()}));
            if verdict == Verdict::Invalid {
                let html_path = run_dir.join("check.html");
                let html =
                    faultline_checker::html::render(&result, &run_dir.join("history.jsonl").display().to_string());
                match std::fs::write(&html_path, html) {
                    Ok(()) => report["html"] = json!(html_path),
                    Err(e) => report["html_error"] = json!(e.to_string()),
                }
            }
            (verdict, report)
        }
        Err(e) => (Verdict::Unknown, json!({"error": e.to_string()})),
    }
}
