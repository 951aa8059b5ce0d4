//! A run directory's typed artifacts: `test.json` (`RunManifest`: what was run) and
//! `results.json` (`RunResults`: what was found), each with a format version. The harness writes
//! them, and everything that reads a run directory (the report, `serve`, `torture`, `check`,
//! `--replay`) reads them through these types, never by string keys. They live in the checker
//! crate because the report depends on the checker only.
//!
//! **Invariant:** `faultline test` and `faultline check <run-dir>` write one and the same
//! `RunResults` layout; the checker's own result is always under `checker`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::check::{CheckResult, Verdict};

/// The format of test.json and results.json written by this version. Version 0 is what faultline
/// wrote before the field existed (same layout, read the same way).
pub const RUN_FORMAT_VERSION: u32 = 1;

/// One direct check's result (a workload's checker such as `set-full` or `append`, or a check of
/// the cluster such as `convergence`), uniform for results.json and the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckerReport {
    /// The checker's name (`set-full`, `append`, `convergence`, `node-crashes`).
    pub checker: String,
    pub verdict: Verdict,
    /// One line for a person.
    pub summary: String,
    /// The checker's typed result, serialised.
    #[serde(default)]
    pub details: Value,
}

/// What checking the history while it grew found (results.json `online`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OnlineReport {
    /// Checks of the history so far that were run.
    pub checks: u64,
    /// Seconds into the load at which a prefix was first found not linearizable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_at_s: Option<f64>,
    /// The key of that finding, if the history has keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_key: Option<Value>,
    /// Records in the prefix that was found not linearizable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_prefix_records: Option<usize>,
    /// Whether the load was ended early because of the finding (`--stop-on-invalid`).
    #[serde(default)]
    pub stopped_early: bool,
}

/// test.json: what was run, written before the run starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    #[serde(default)]
    pub format_version: u32,
    pub name: String,
    pub run_id: String,
    pub seed: u64,
    /// The checker model of the workload (`faultline check <run-dir>` uses it).
    pub model: String,
    /// The options of `faultline test`, as the harness's option type serialises them; `--replay`
    /// deserialises them back into that type.
    pub options: serde_json::Map<String, Value>,
    pub concurrency: usize,
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default)]
    pub git_revision: Option<String>,
    #[serde(default)]
    pub versions: Versions,
    #[serde(default)]
    pub started_at: Option<String>,
    /// The nemesis's summary of its planned faults (for people).
    #[serde(default)]
    pub planned_faults: Value,
    /// The nemesis's planned schedule, in the nemesis's own format (read back by `--replay`).
    #[serde(default)]
    pub planned_schedule: Value,
    #[serde(default)]
    pub replay_of: Option<String>,
}

impl RunManifest {
    /// The workload's name, from the options.
    pub fn workload(&self) -> Option<&str> {
        self.options.get("workload").and_then(Value::as_str)
    }

    /// An option's value as text, for people (None when absent or null).
    pub fn option_text(&self, name: &str) -> Option<String> {
        match self.options.get(name)? {
            Value::Null => None,
            Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    #[serde(default)]
    pub faultline: String,
    /// What exactly was under test, as the system describes itself (binary, planted bug, ...).
    #[serde(default)]
    pub db: Value,
}

/// Client operations by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    pub invoked: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

/// The history checker's part of results.json: its result, or why there is none.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CheckerSection {
    Checked {
        #[serde(flatten)]
        result: Box<CheckResult>,
        /// check.html, written when the history is invalid.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        html: Option<PathBuf>,
    },
    /// The checker could not run (unreadable history, bad input): the verdict is unknown.
    Failed { error: String },
}

impl CheckerSection {
    pub fn result(&self) -> Option<&CheckResult> {
        match self {
            CheckerSection::Checked { result, .. } => Some(result),
            CheckerSection::Failed { .. } => None,
        }
    }

    pub fn verdict(&self) -> Verdict {
        match self {
            CheckerSection::Checked { result, .. } => result.verdict,
            CheckerSection::Failed { .. } => Verdict::Unknown,
        }
    }

    pub fn html(&self) -> Option<&Path> {
        match self {
            CheckerSection::Checked { html, .. } => html.as_deref(),
            CheckerSection::Failed { .. } => None,
        }
    }
}

/// results.json: what a run (or a re-check of one, or a check of a foreign history) found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResults {
    #[serde(default)]
    pub format_version: u32,
    /// The combined verdict: the history checker's and every direct check's (any invalid wins,
    /// then any unknown).
    pub verdict: Verdict,
    /// Valid but nothing was really tested (no fault fired, almost no op succeeded).
    #[serde(default)]
    pub vacuous: bool,
    #[serde(default)]
    pub vacuous_reasons: Vec<String>,
    /// Client ops by outcome (a run of the harness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<OpCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults_started: Option<u64>,
    #[serde(default)]
    pub unexpected_node_exits: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    pub checker: CheckerSection,
    /// The workload's name, when the history is a run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Direct checks: the workload's checkers and the cluster's own.
    #[serde(default)]
    pub workload_checks: Vec<CheckerReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<OnlineReport>,
    /// The history file checked (`faultline check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// Input lines skipped and warnings (`faultline check --lenient`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Why a run directory's artifact could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}: not a faultline {what} this version can read (written by an older or newer faultline?): {source}"
    )]
    Format { path: PathBuf, what: &'static str, source: serde_json::Error },
    #[error("{path}: format version {found} is newer than this faultline reads ({RUN_FORMAT_VERSION})")]
    TooNew { path: PathBuf, found: u32 },
}

fn read_artifact<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
    version: impl Fn(&T) -> u32,
) -> Result<T, ArtifactError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ArtifactError::Io { path: path.to_path_buf(), source })?;
    let value: T = serde_json::from_str(&text).map_err(|source| ArtifactError::Format {
        path: path.to_path_buf(),
        what,
        source,
    })?;
    let found = version(&value);
    if found > RUN_FORMAT_VERSION {
        return Err(ArtifactError::TooNew { path: path.to_path_buf(), found });
    }
    Ok(value)
}

impl RunManifest {
    /// Reads `<run_dir>/test.json`.
    pub fn read(run_dir: &Path) -> Result<RunManifest, ArtifactError> {
        read_artifact(&run_dir.join("test.json"), "test.json", |m: &RunManifest| m.format_version)
    }
}

impl RunResults {
    /// Reads `<run_dir>/results.json` (or any results.json `path` names a directory of).
    pub fn read(run_dir: &Path) -> Result<RunResults, ArtifactError> {
        read_artifact(&run_dir.join("results.json"), "results.json", |r: &RunResults| r.format_version)
    }
}

/// Writes a typed artifact as pretty JSON with a trailing newline.
pub fn write_artifact<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}
