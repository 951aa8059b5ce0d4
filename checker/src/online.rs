//! Checking a history while it grows.
//!
//! The records written so far are a prefix of the final history, and checking that prefix as a
//! history of its own is sound for one outcome: an op invoked but not yet completed is open (it
//! may take effect at any point after its invocation, or never), ops invoked later can only
//! linearise after the ops that completed before them, so a prefix that has no linearisation is
//! the beginning of a history that has none (prefix non-linearizability is monotone). `invalid`
//! on a prefix is therefore certain; `valid` is only provisional, since later ops may still make
//! the history invalid; `unknown` says nothing.
//!
//! Only the model's search is used: direct checkers (lost elements, final reads) judge the end
//! of a run and are not monotone in this way.

use std::time::Duration;

use crate::check::{check_plain_records, CheckOptions, ModelKind, Verdict};
use crate::error::CheckError;
use crate::history::Record;

/// What a check of a prefix says.
#[derive(Debug, Clone, PartialEq)]
pub enum PrefixVerdict {
    /// Certain: the whole history, however it goes on, is not linearizable.
    Invalid {
        /// The first key found invalid, if the history has keys.
        key: Option<serde_json::Value>,
    },
    /// Every key so far has a linearisation; later ops may still break it.
    ValidSoFar,
    /// Not decided within the budget.
    Unknown(String),
}

/// Checks `records`, a prefix of a growing history, against `model` within `timeout`, on one
/// thread (the run's nodes need the rest of the machine).
pub fn check_prefix(records: &[Record], model: ModelKind, timeout: Duration) -> Result<PrefixVerdict, CheckError> {
    let options = CheckOptions {
        model,
        timeout: Some(timeout),
        threads: 1,
        explain: false,
        ladder: false,
        source_name: "history.jsonl (so far)".into(),
        ..CheckOptions::default()
    };
    let result = check_plain_records(records, &options)?;
    Ok(match result.verdict {
        Verdict::Invalid => PrefixVerdict::Invalid {
            key: result.partitions.iter().find(|p| p.verdict == Verdict::Invalid).and_then(|p| p.key.clone()),
        },
        Verdict::Valid => PrefixVerdict::ValidSoFar,
        Verdict::Unknown => PrefixVerdict::Unknown(result.reason.unwrap_or_else(|| "not decided".into())),
    })
}
