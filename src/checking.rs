//! The bridge from a run's history to `faultline_checker`: the register workload is checked with
//! the multi-key compare-and-set model, split by key.

use std::time::Duration;

use faultline_checker::history::Record;
use faultline_checker::{check_plain_records, CheckOptions, ModelKind};
use serde_json::{json, Value};

use crate::test_cmd::Verdict;

/// The longest the checker may search before the verdict is `unknown`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Checks the history; a checker error is an `unknown` verdict with the reason, never `valid`.
pub fn check(records: &[Record]) -> (Verdict, Value) {
    let options = CheckOptions {
        model: ModelKind::Kv,
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
            let report = serde_json::to_value(&result).unwrap_or_else(|e| json!({"error": e.to_string()}));
            (verdict, report)
        }
        Err(e) => (Verdict::Unknown, json!({"error": e.to_string()})),
    }
}
