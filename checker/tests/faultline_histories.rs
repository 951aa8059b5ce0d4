//! Histories faultline itself recorded that were once too hard for the checker
//! (tests/data/faultline/README.md says where each comes from). Each must get its verdict within a
//! budget far below the default one, so that a regression shows up as a failure, not a slow test.

use faultline_checker::{check_records, read_path, CheckOptions, ModelKind, Verdict};
use std::path::Path;
use std::time::Duration;

/// A correct node, one key, after an isolated pause: dozens of ops pending through the pause,
/// many of them indefinite (`info`), complete together. It was `unknown` (2 GiB of configurations)
/// until the search learned subsumption by fewer optional ops and to skip an overwrite right after
/// an optional op.
#[test]
fn register_isolated_pause_hard_is_valid_within_a_small_budget() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/faultline/register-isolated-pause-hard.jsonl");
    let imported = read_path(&path, None, false).unwrap();
    let options = CheckOptions {
        model: ModelKind::CasRegister,
        timeout: Some(Duration::from_secs(10)),
        memory_limit_bytes: 64 << 20,
        source_name: path.display().to_string(),
        ..CheckOptions::default()
    };
    let result = check_records(&imported.records, &options).unwrap();
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.reason);
    assert_eq!(result.partitions.len(), 1);
    // Decided in about a thousand configurations; far more means a pruning rule stopped working.
    let configurations = result.partitions[0].configurations;
    assert!(configurations < 20_000, "{configurations} configurations");
}
