//! The memory budget is honest: a search that would need more stops with `unknown` and says so
//! (never `valid`), and a budget far below the default one still decides histories that need
//! little.

use faultline_checker::history::{Op, OpType, Record};
use faultline_checker::{check_plain_records, check_records, read_path, CheckOptions, ModelKind, Verdict};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const SMALL_BUDGET_BYTES: u64 = 64 << 20;

fn options(model: ModelKind, partition: bool) -> CheckOptions {
    CheckOptions {
        model,
        partition,
        timeout: Some(Duration::from_secs(60)),
        memory_limit_bytes: SMALL_BUDGET_BYTES,
        ..CheckOptions::default()
    }
}

/// Sixteen clients append distinct kilobytes to one key at once, and a get concurrent with them
/// all reads a value no order of appends builds; an indefinite put invoked first keeps the search
/// from pruning by growth. Every order of every subset of the appends is a state of its own (and
/// a big one), so deciding it means trying them all: more than 64 MiB.
fn hard_string_history() -> Vec<Record> {
    let mut records = Vec::new();
    let mut push = |process: u64, op_type: OpType, f: &str, value: serde_json::Value| {
        let index = records.len() as u64;
        records.push(Record::Op(Op {
            index,
            time: index,
            process,
            op_type,
            f: f.into(),
            value,
            key: Some(json!("k")),
            error: (op_type == OpType::Info).then(|| "timeout".to_string()),
        }));
    };
    push(100, OpType::Invoke, "put", json!("p"));
    push(101, OpType::Invoke, "get", json!(null));
    let appended = |p: u64| format!("{p:x}").repeat(512);
    for p in 0..16 {
        push(p, OpType::Invoke, "append", json!(appended(p)));
    }
    for p in 0..16 {
        push(p, OpType::Ok, "append", json!(appended(p)));
    }
    push(101, OpType::Ok, "get", json!("never"));
    push(100, OpType::Info, "put", json!("p"));
    records
}

#[test]
fn a_search_that_needs_more_than_its_memory_budget_is_unknown_with_the_reason() {
    for partition in [true, false] {
        let result = check_plain_records(&hard_string_history(), &options(ModelKind::StringKv, partition)).unwrap();
        assert_eq!(result.verdict, Verdict::Unknown, "partition={partition}");
        let reason = result.reason.unwrap_or_default();
        assert!(reason.starts_with("memory budget exhausted (64 MiB)"), "partition={partition}: {reason}");
    }
}

#[test]
fn a_small_memory_budget_still_decides_easy_histories() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine");
    for (file, expected) in [
        ("kv/c01-ok.txt", Verdict::Valid),
        ("kv/c01-bad.txt", Verdict::Invalid),
        ("kv/c10-ok.txt", Verdict::Valid),
        ("kv/c10-bad.txt", Verdict::Invalid),
        ("kv/c50-ok.txt", Verdict::Valid),
        ("jepsen/etcd_000.log", Verdict::Invalid),
        ("jepsen/etcd_002.log", Verdict::Valid),
    ] {
        let records = read_path(&corpus.join(file), None, false).unwrap().records;
        let model = if file.starts_with("kv/") { ModelKind::StringKv } else { ModelKind::CasRegister };
        // c50-ok as one partition (the product of ten keys) included: about 40 MB resident.
        for partition in [true, false] {
            let result = check_records(&records, &options(model, partition)).unwrap();
            assert_eq!(result.verdict, expected, "{file}, partition={partition}: {:?}", result.reason);
        }
    }
}
