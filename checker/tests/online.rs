//! Online checking must never give a verdict the end-of-run check would not: on every history of
//! the corpora, a prefix cut anywhere (as the harness sees the history while it grows: the ops
//! still running are open) is found invalid only if the whole history is invalid, and the whole
//! history as a "prefix" gets the end-of-run verdict.

use faultline_checker::online::{check_prefix, PrefixVerdict};
use faultline_checker::{check_records, read_path, CheckOptions, ModelKind, Record, Verdict};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn data(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(dir)
}

fn histories() -> Vec<(PathBuf, ModelKind)> {
    let mut files: Vec<(PathBuf, ModelKind)> = std::fs::read_dir(data("porcupine/jepsen"))
        .unwrap()
        .map(|e| (e.unwrap().path(), ModelKind::CasRegister))
        .collect();
    for name in ["c01-ok", "c01-bad", "c10-ok", "c10-bad", "c50-ok", "c50-bad"] {
        files.push((data("porcupine/kv").join(format!("{name}.txt")), ModelKind::StringKv));
    }
    files.push((data("faultline/register-isolated-pause-hard.jsonl"), ModelKind::CasRegister));
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

#[test]
fn a_prefix_is_invalid_only_when_the_whole_history_is_and_the_whole_gets_the_final_verdict() {
    let timeout = Duration::from_secs(30);
    let (mut invalid_prefixes, mut prefixes) = (0, 0);
    for (path, model) in histories() {
        let imported = read_path(&path, None, false).unwrap();
        let records: Vec<Record> = imported.records.iter().map(|r| r.record.clone()).collect();
        let options = CheckOptions { model, timeout: Some(timeout), ladder: false, ..CheckOptions::default() };
        let full = check_records(&imported.records, &options).unwrap().verdict;
        if full == Verdict::Unknown {
            continue;
        }
        for eighth in 1..=8 {
            let cut = records.len() * eighth / 8;
            let verdict = check_prefix(&records[..cut], model, timeout).unwrap();
            prefixes += 1;
            match verdict {
                PrefixVerdict::Invalid { .. } => {
                    invalid_prefixes += 1;
                    assert_eq!(full, Verdict::Invalid, "{} cut at {eighth}/8", path.display());
                }
                PrefixVerdict::ValidSoFar if eighth == 8 => {
                    assert_eq!(full, Verdict::Valid, "{} whole", path.display())
                }
                PrefixVerdict::Unknown(reason) if eighth == 8 => panic!("{}: {reason}", path.display()),
                _ => {}
            }
        }
    }
    // Not vacuous: many invalid histories are already invalid before their end.
    eprintln!("{invalid_prefixes} of {prefixes} prefixes invalid");
    assert!(invalid_prefixes * 4 > prefixes, "{invalid_prefixes} of {prefixes} prefixes invalid");
}
