//! The faultline checker: the history format, importers for foreign histories, sequential models
//! and a linearizability checker.
//!
//! **Invariant:** nothing here knows about the runner, processes or the network, so any stored or
//! foreign history can be re-checked offline.

pub mod bounded;
pub mod check;
pub mod edn;
pub mod error;
pub mod history;
pub mod html;
pub mod import;
pub mod ladder;
pub mod model;
pub mod online;
pub mod pairing;
pub mod run;
pub mod search;
pub mod txn;

pub use check::{
    check_paired, check_plain_records, check_records, CheckOptions, CheckResult, Explanation, ModelKind, OpSummary,
    PartitionResult, Verdict,
};
pub use error::{CheckError, InputError};
pub use history::{Fault, FaultPhase, HistoryReader, HistoryWriter, LineRecord, Op, OpType, Record};
pub use import::{import_text, read_path, Format, Imported, NilReads, CAS_MISMATCH};
