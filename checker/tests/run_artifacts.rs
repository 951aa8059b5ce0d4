//! The run directory's typed artifacts: runs written before the format version still open, and
//! what cannot be read is an error that says so, never a panic.

use std::path::{Path, PathBuf};

use faultline_checker::run::{ArtifactError, RunManifest, RunResults, RUN_FORMAT_VERSION};
use faultline_checker::Verdict;

fn v0() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-v0")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faultline-artifacts-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_run_written_before_the_format_version_still_opens() {
    let manifest = RunManifest::read(&v0()).unwrap();
    assert_eq!(manifest.format_version, 0);
    assert_eq!(manifest.seed, 1);
    assert_eq!(manifest.workload(), Some("cas-register"));
    assert_eq!(manifest.option_text("bug").as_deref(), Some("no-fsync"));
    let results = RunResults::read(&v0()).unwrap();
    assert_eq!(results.verdict, Verdict::Invalid);
    let checked = results.checker.result().expect("the checker ran");
    assert!(!checked.anomalies.is_empty(), "the anomalies are read back typed");
    assert!(results.checker.html().is_some());
    assert_eq!(
        results.ops.unwrap().invoked,
        results.ops.unwrap().ok + results.ops.unwrap().fail + results.ops.unwrap().info
    );
}

#[test]
fn what_is_written_reads_back_the_same() {
    let dir = scratch("round-trip");
    let results = RunResults::read(&v0()).unwrap();
    faultline_checker::run::write_artifact(&dir.join("results.json"), &results).unwrap();
    let back = RunResults::read(&dir).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&results).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_that_is_not_a_results_json_is_a_clear_error() {
    let dir = scratch("garbage");
    std::fs::write(dir.join("results.json"), r#"{"verdict": "sometimes"}"#).unwrap();
    let error = RunResults::read(&dir).unwrap_err();
    assert!(matches!(error, ArtifactError::Format { .. }), "{error}");
    assert!(error.to_string().contains("results.json"), "{error}");
    assert!(matches!(RunManifest::read(&dir).unwrap_err(), ArtifactError::Io { .. }));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_newer_format_is_refused_by_name() {
    let dir = scratch("newer");
    let mut manifest = RunManifest::read(&v0()).unwrap();
    manifest.format_version = RUN_FORMAT_VERSION + 1;
    faultline_checker::run::write_artifact(&dir.join("test.json"), &manifest).unwrap();
    let error = RunManifest::read(&dir).unwrap_err();
    assert!(matches!(error, ArtifactError::TooNew { .. }), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
