//! The bridge from a run's history to `faultline_checker`: the register workload is checked with
//! the multi-key compare-and-set model, split by key.

use std::path::Path;
use std::time::Duration;

use faultline_checker::history::Record;
use faultline_checker::{check_plain_records, CheckOptions, ModelKind};
use serde_json::{json, Value};

use crate::test_cmd::Verdict;

/// The register workload's model: many keys, each a compare-and-set register.
pub const MODEL: ModelKind = ModelKind::Kv;

/// The longest the checker may search before the verdict is `unknown`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Checks the history; a checker error is an `unknown` verdict with the reason, never `valid`.
/// An invalid history also gets the checker's self-contained HTML timeline, `check.html`, in
/// `run_dir`.
pub fn check(records: &[Record], run_dir: &Path) -> (Verdict, Value) {
    let options = CheckOptions {
        model: MODEL,
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
