//! The transactional corpus (tests/data/txn, README there): one known anomaly per history, each
//! checked under all four consistency models against verdicts derived by hand.

use faultline_checker::import::read_path;
use faultline_checker::txn::{check_records, Consistency, TxnModel, TxnOptions};
use faultline_checker::{CheckError, Verdict};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/txn").join(name)
}

fn check(
    name: &str,
    model: TxnModel,
    consistency: Consistency,
) -> Result<faultline_checker::txn::TxnCheckResult, CheckError> {
    let imported = read_path(&data(name), None, false)?;
    let options = TxnOptions { model, consistency, source_name: name.to_string(), ..TxnOptions::default() };
    check_records(&imported.records, &options)
}

/// (file, model, verdicts under read-committed, snapshot-isolation, serializable,
/// strict-serializable as V/I, the anomaly the file was made for)
const CORPUS: &[(&str, TxnModel, &str, &str)] = &[
    ("g0.jsonl", TxnModel::ListAppend, "IIII", "G0"),
    ("g1a.jsonl", TxnModel::ListAppend, "IIII", "G1a"),
    ("g1b.jsonl", TxnModel::ListAppend, "IIII", "G1b"),
    ("g1c.jsonl", TxnModel::ListAppend, "IIII", "G1c"),
    ("g-single.jsonl", TxnModel::ListAppend, "VIII", "G-single"),
    ("g-single.edn", TxnModel::ListAppend, "VIII", "G-single"),
    ("g2-item.jsonl", TxnModel::ListAppend, "VVII", "G2-item"),
    ("g-single-realtime.jsonl", TxnModel::ListAppend, "VVVI", "G-single-realtime"),
    ("g-single-process.jsonl", TxnModel::ListAppend, "VVVI", "G-single-process"),
    ("internal.jsonl", TxnModel::ListAppend, "IIII", "internal"),
    ("duplicate-appends.jsonl", TxnModel::ListAppend, "IIII", "duplicate-appends"),
    ("incompatible-order.jsonl", TxnModel::ListAppend, "IIII", "incompatible-order"),
    ("garbage-read.jsonl", TxnModel::ListAppend, "IIII", "garbage-read"),
    ("valid-serial.jsonl", TxnModel::ListAppend, "VVVV", ""),
    ("rw-g-single.jsonl", TxnModel::RwRegister, "VIII", "G-single"),
    ("rw-g2-item.jsonl", TxnModel::RwRegister, "VVII", "G2-item"),
    ("rw-g1a.jsonl", TxnModel::RwRegister, "IIII", "G1a"),
    ("rw-internal.jsonl", TxnModel::RwRegister, "IIII", "internal"),
    ("rw-valid.jsonl", TxnModel::RwRegister, "VVVV", ""),
];

#[test]
fn each_corpus_history_gets_its_hand_derived_verdict_under_every_model() {
    for &(name, model, verdicts, anomaly) in CORPUS {
        for (consistency, expected) in Consistency::ALL.into_iter().zip(verdicts.chars()) {
            let result = check(name, model, consistency).unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected = if expected == 'V' { Verdict::Valid } else { Verdict::Invalid };
            assert_eq!(result.verdict, expected, "{name} under {}:\n{}", consistency.name(), result.text());
            // The verdicts of the weaker models agree with checking them directly.
            let weaker: Vec<Consistency> = result.weaker_models_holding.clone();
            for (c, v) in Consistency::ALL.into_iter().zip(verdicts.chars()) {
                if c < consistency {
                    assert_eq!(weaker.contains(&c), v == 'V', "{name}: {} under {}", c.name(), consistency.name());
                }
            }
            if expected == Verdict::Invalid {
                assert!(
                    result.anomaly_counts.contains_key(anomaly),
                    "{name} under {}: {anomaly} not among {:?}",
                    consistency.name(),
                    result.anomaly_counts
                );
                assert!(!result.anomalies.is_empty());
            }
        }
    }
}

#[test]
fn a_cycle_is_explained_edge_by_edge_with_the_reads_that_make_it() {
    let result = check("g-single.jsonl", TxnModel::ListAppend, Consistency::Serializable).unwrap();
    let anomaly = result.anomalies.iter().find(|a| a.kind.name() == "G-single").unwrap();
    assert_eq!(anomaly.steps.len(), 2);
    let text = &anomaly.text;
    assert!(text.contains("T1 read key \"x\" empty, a version before T0's append of 1"), "{text}");
    assert!(text.contains("T1 read key \"y\" and saw 1, which T0 appended"), "{text}");
    assert!(text.contains("lines 1–3"), "{text}");
    let json = serde_json::to_value(&result).unwrap();
    assert_eq!(json["anomalies"][0]["kind"], "G-single");
    assert_eq!(json["anomalies"][0]["steps"][0]["edge"], "rw");
    assert_eq!(json["weaker_models_holding"], serde_json::json!(["read-committed"]));
    let page = faultline_checker::txn::html::render(&result, "g-single.jsonl");
    assert!(page.contains("<svg") && page.contains("G-single"));
}

#[test]
fn an_unknown_micro_op_kind_is_an_error_with_its_line() {
    let error = check("bad-unknown-mop.jsonl", TxnModel::ListAppend, Consistency::Serializable).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("bad-unknown-mop.jsonl:3:") && message.contains("unknown micro-op kind :inc"),
        "{message}"
    );
}

#[test]
fn a_value_appended_twice_is_an_error_naming_both_lines() {
    let error = check("bad-appended-twice.jsonl", TxnModel::ListAppend, Consistency::Serializable).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(":3:") && message.contains("line 1") && message.contains("appended twice"), "{message}");
}

#[test]
fn a_micro_op_of_the_other_model_is_an_error() {
    let error = check("g-single.jsonl", TxnModel::RwRegister, Consistency::Serializable).unwrap_err();
    assert!(error.to_string().contains(":append is not part of rw-register"), "{error}");
}

#[test]
fn reads_that_contradict_each_other_name_both_reads_and_their_lines() {
    let result = check("incompatible-order.jsonl", TxnModel::ListAppend, Consistency::ReadCommitted).unwrap();
    let anomaly = result.anomalies.iter().find(|a| a.kind.name() == "incompatible-order").unwrap();
    assert!(anomaly.text.contains("[:r \"x\" [1 2]]") && anomaly.text.contains("[:r \"x\" [2 1]]"), "{}", anomaly.text);
    assert!(anomaly.text.contains("lines 5–6") && anomaly.text.contains("lines 7–8"), "{}", anomaly.text);
}

#[test]
fn a_budget_that_runs_out_gives_unknown_never_valid() {
    let imported = read_path(&data("g2-item.jsonl"), None, false).unwrap();
    let base = TxnOptions { model: TxnModel::ListAppend, ..TxnOptions::default() };
    let timed_out = TxnOptions { timeout: Some(std::time::Duration::ZERO), ..base.clone() };
    let result = check_records(&imported.records, &timed_out).unwrap();
    assert_eq!(result.verdict, Verdict::Unknown, "{}", result.text());
    assert!(result.weaker_models_holding.is_empty());
    let no_memory = TxnOptions { memory_limit_bytes: 1, ..base.clone() };
    assert_eq!(check_records(&imported.records, &no_memory).unwrap().verdict, Verdict::Unknown);
    // Deciding G-single needs a search here (the rw edges' ends are not ww/wr-connected): with no
    // search budget, snapshot isolation is unknown, while serializability is still invalid.
    let no_search = TxnOptions { max_search_visits: 0, consistency: Consistency::Serializable, ..base.clone() };
    let result = check_records(&imported.records, &no_search).unwrap();
    assert_eq!(result.verdict, Verdict::Invalid);
    let si = result.models.iter().find(|m| m.model == Consistency::SnapshotIsolation).unwrap();
    assert_eq!(si.verdict, Verdict::Unknown, "{}", result.text());
    // An anomaly every model forbids is invalid even when time ran out.
    let imported = read_path(&data("g1a.jsonl"), None, false).unwrap();
    assert_eq!(check_records(&imported.records, &timed_out).unwrap().verdict, Verdict::Invalid);
}

#[test]
fn malformed_transactions_are_errors_with_their_line_never_panics() {
    use faultline_checker::history::{Op, OpType, Record};
    use faultline_checker::LineRecord;
    use serde_json::json;
    let bad_values = [
        json!(null),
        json!(7),
        json!({"append": 1}),
        json!([["append"]]),
        json!([["append", "x"]]),
        json!([["append", 1.5, 2]]),
        json!([["append", "x", [1]]]),
        json!([["append", "x", null]]),
        json!([[3, "x", 1]]),
        json!([["r", {"k": 1}, null]]),
        json!([["append", "x", 1, 2]]),
    ];
    for value in bad_values {
        let records = vec![LineRecord {
            line: 7,
            record: Record::Op(Op {
                index: 0,
                time: 0,
                process: 0,
                op_type: OpType::Invoke,
                f: "txn".into(),
                value: value.clone(),
                key: None,
                error: None,
            }),
        }];
        let error = check_records(&records, &TxnOptions::default()).unwrap_err().to_string();
        assert!(error.contains(":7:"), "{value}: {error}");
    }
    // A completion whose micro-ops are not the invoked ones, and a read of the wrong shape.
    let invoke = json!([["append", "x", 1], ["r", "x", null]]);
    for completion in [json!([["append", "x", 2], ["r", "x", [2]]]), json!([["append", "x", 1], ["r", "x", 5]])] {
        let records: Vec<LineRecord> = [(OpType::Invoke, invoke.clone()), (OpType::Ok, completion.clone())]
            .into_iter()
            .enumerate()
            .map(|(i, (op_type, value))| LineRecord {
                line: i + 1,
                record: Record::Op(Op {
                    index: i as u64,
                    time: 0,
                    process: 0,
                    op_type,
                    f: "txn".into(),
                    value,
                    key: None,
                    error: None,
                }),
            })
            .collect();
        let error = check_records(&records, &TxnOptions::default()).unwrap_err().to_string();
        assert!(error.contains(":2:"), "{completion}: {error}");
    }
}

#[test]
fn reading_lines_directly_gives_the_same_history_and_errors_as_reading_records() {
    use faultline_checker::txn::TxnHistoryBuilder;
    for entry in std::fs::read_dir(data("")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let model = if path.to_string_lossy().contains("/rw-") { TxnModel::RwRegister } else { TxnModel::ListAppend };
        let mut by_line = TxnHistoryBuilder::new(model, "h");
        let lines: Result<(), _> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .try_for_each(|(i, l)| by_line.push_json_line(l.trim(), i + 1));
        let by_line = lines.and_then(|_| by_line.finish()).map(|h| format!("{:?} {:?} {:?}", h.txns, h.keys, h.values));
        let records = faultline_checker::import::import_text(&text, "h", None, false).unwrap().records;
        let by_record = faultline_checker::txn::history_from_records(&records, model, "h")
            .map(|h| format!("{:?} {:?} {:?}", h.txns, h.keys, h.values));
        assert_eq!(by_line, by_record, "{}", path.display());
    }
}
