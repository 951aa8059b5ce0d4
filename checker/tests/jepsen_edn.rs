//! Hand-made Jepsen histories (checker/tests/data/jepsen-edn, verdicts derived by hand in its
//! README): the format is detected with no `--format`, an `:ok` read of nil means what it means
//! in Jepsen unless asked otherwise, and the ladder says how far from linearizable each is.

use faultline_checker::import::NilReads;
use faultline_checker::{check_records, read_path, CheckOptions, Format, ModelKind, Verdict};
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/jepsen-edn")
}

fn verdict(name: &str) -> Option<Verdict> {
    match name {
        "valid" => Some(Verdict::Valid),
        "invalid" => Some(Verdict::Invalid),
        "-" => None,
        other => panic!("unknown verdict {other}"),
    }
}

struct Row {
    file: String,
    model: ModelKind,
    unknown: Verdict,
    strict: Verdict,
    sequential_unknown: Option<Verdict>,
    sequential_strict: Option<Verdict>,
}

fn rows() -> Vec<Row> {
    let table = std::fs::read_to_string(corpus().join("EXPECTED.tsv")).unwrap();
    table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            Row {
                file: cols[0].to_string(),
                model: ModelKind::from_name(cols[1]).unwrap(),
                unknown: verdict(cols[2]).unwrap(),
                strict: verdict(cols[3]).unwrap(),
                sequential_unknown: verdict(cols[4]),
                sequential_strict: verdict(cols[5]),
            }
        })
        .collect()
}

fn check(file: &str, model: ModelKind, nil_reads: Option<NilReads>) -> faultline_checker::CheckResult {
    let path = corpus().join(file);
    let imported = read_path(&path, None, false).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(imported.format, Format::JepsenEdn, "{file}: detected as {:?}", imported.format);
    let options = CheckOptions {
        model,
        nil_reads: nil_reads.unwrap_or(imported.format.nil_reads()),
        times_known: imported.has_times,
        source_name: file.to_string(),
        ..CheckOptions::default()
    };
    check_records(&imported.records, &options).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn every_hand_made_history_gets_its_hand_derived_verdict_under_both_meanings_of_nil() {
    let rows = rows();
    assert!(rows.len() >= 14, "the corpus lost rows: {}", rows.len());
    for row in rows {
        for (meaning, lin, seq) in
            [(None, row.unknown, row.sequential_unknown), (Some(NilReads::Strict), row.strict, row.sequential_strict)]
        {
            let result = check(&row.file, row.model, meaning);
            let what = format!("{} with nil reads {:?}", row.file, meaning.unwrap_or(NilReads::Unknown));
            assert_eq!(result.verdict, lin, "{what}: {:?}", result.reason);
            let ladder = result.ladder.as_ref().map(|l| l.sequential.verdict);
            assert_eq!(ladder, seq, "{what}: the ladder's sequential rung");
        }
    }
}

#[test]
fn jepsen_nil_reads_are_the_default_for_edn_and_are_counted() {
    let result = check("nil-read-after-write.edn", ModelKind::Register, None);
    assert_eq!(result.nil_reads, NilReads::Unknown);
    assert_eq!(result.nil_reads_unconstrained, 1);
    let strict = check("nil-read-after-write.edn", ModelKind::Register, Some(NilReads::Strict));
    assert_eq!(strict.nil_reads_unconstrained, 0);
    // Reads of nil that happened before any write are fine either way, and still unconstrained.
    assert_eq!(check("nil-read-at-start.edn", ModelKind::Register, None).nil_reads_unconstrained, 1);
}

#[test]
fn nemesis_ops_become_fault_records() {
    let result = check("nemesis-ops.edn", ModelKind::Register, None);
    assert_eq!(result.faults, 4);
    assert_eq!(result.ops, 2);
}

#[test]
fn staleness_is_measured_in_ms_and_versions_when_the_history_has_times() {
    let result = check("split-records.edn", ModelKind::Register, None);
    let staleness = result.ladder.as_ref().and_then(|l| l.staleness.clone()).expect("a register has staleness");
    assert_eq!((staleness.reads, staleness.stale_reads), (1, 1));
    assert!(staleness.times_known);
    assert!((staleness.worst_ms - 1500.0).abs() < 1e-6, "{}", staleness.worst_ms);
    assert_eq!(staleness.worst_versions, 1);
    let summary = &result.ladder.as_ref().unwrap().summary;
    assert!(summary.contains("sequentially consistent") && summary.contains("1.5 s"), "{summary}");

    // Without :time the order is known but not the durations.
    let untimed = check("stale-read.edn", ModelKind::Register, None);
    let s = untimed.ladder.unwrap().staleness.unwrap();
    assert_eq!((s.stale_reads, s.worst_versions), (1, 1));
}

#[test]
fn a_strict_nil_read_after_a_write_is_a_stale_read_of_the_initial_value() {
    let result = check("nil-read-after-write.edn", ModelKind::Register, Some(NilReads::Strict));
    let s = result.ladder.unwrap().staleness.unwrap();
    assert_eq!((s.reads, s.stale_reads, s.worst_versions), (1, 1, 1));
}
