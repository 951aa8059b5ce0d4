//! `faultline check` end to end: exit codes, outputs, bad input, several files, run directories.

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("checker/tests/data/porcupine").join(file)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faultline-check-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn check(args: &[&str], out: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("check")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("runs faultline");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn a_valid_history_exits_0_and_writes_results_json() {
    let out = scratch("valid");
    let (code, text) = check(&[corpus("jepsen/etcd_002.log").to_str().unwrap()], &out);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("valid"), "{text}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["verdict"], "valid");
    assert_eq!(results["checker"]["model"], "cas-register");
    assert!(!out.join("check.html").exists(), "the page is only written for invalid histories");
}

#[test]
fn an_invalid_history_exits_1_with_an_explanation_and_a_self_contained_page() {
    let out = scratch("invalid");
    let (code, text) = check(&[corpus("jepsen/etcd_000.log").to_str().unwrap()], &out);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("first op that cannot be linearised"), "{text}");
    assert!(text.contains("longest linearisable prefix"), "{text}");
    let html = std::fs::read_to_string(out.join("check.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("class=\"op failing"), "the failing op is drawn highlighted");
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "no external assets");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    // One layout for `check` and `test`: the checker's own result is under `checker`.
    assert_eq!(results["checker"]["anomalies"].as_array().unwrap().len(), 1);
    assert!(results["checker"]["anomalies"][0]["window"].as_array().unwrap().len() >= 2);
    assert_eq!(results["verdict"], "invalid");
    assert_eq!(results["format_version"], 1);
}

#[test]
fn an_empty_history_is_unknown_with_no_operations() {
    let out = scratch("empty");
    let (code, text) = check(&[corpus("jepsen/etcd_095.log").to_str().unwrap()], &out);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no operations"), "{text}");
}

#[test]
fn several_files_give_one_line_each_and_a_summary() {
    let out = scratch("several");
    let files = [corpus("jepsen/etcd_002.log"), corpus("jepsen/etcd_000.log"), corpus("kv/c10-ok.txt")];
    let args: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let (code, text) = check(&args, &out);
    assert_eq!(code, 1, "{text}");
    assert_eq!(text.lines().filter(|l| l.contains(" events ")).count(), 3, "{text}");
    assert!(text.contains("3 histories: 2 valid, 1 invalid, 0 unknown, 0 errors"), "{text}");

    let mut json_args = args.clone();
    json_args.push("--json");
    let (_, text) = check(&json_args, &out);
    let document: serde_json::Value = serde_json::from_str(&text).expect("--json prints JSON");
    assert_eq!(document["summary"]["invalid"], 1);
    assert_eq!(document["files"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_input_names_file_and_line_and_exits_3_unless_lenient() {
    let out = scratch("bad");
    let history = out.join("bad.jsonl");
    std::fs::write(
        &history,
        concat!(
            "{\"index\":0,\"time\":1,\"process\":0,\"type\":\"invoke\",\"f\":\"write\",\"value\":1}\n",
            "{\"index\":1,\"time\":2,\"process\":0,\"type\":\"ok\",\"f\":\"write\",\"value\":1}\n",
            "{\"index\":2,\"time\":3,\"process\":7,\"type\":\"ok\",\"f\":\"read\",\"value\":1}\n",
            "{\"index\":3,\"time\":4,\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"value\":null}\n",
            "{\"index\":4,\"time\":5,\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"value\":1}\n",
        ),
    )
    .unwrap();
    let path = history.to_str().unwrap();
    let (code, text) = check(&[path, "--model", "register"], &out);
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("bad.jsonl:3:") && text.contains("without an invocation"), "{text}");

    let (code, text) = check(&[path, "--model", "register", "--lenient"], &out);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1 bad lines skipped"), "{text}");

    let clean = out.join("clean.jsonl");
    let text = std::fs::read_to_string(&history).unwrap();
    let first_two: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(&clean, first_two.join("\n") + "\n").unwrap();
    let (code, text) = check(&[clean.to_str().unwrap(), "--model", "set"], &out);
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("unknown op :write for set"), "{text}");
}

#[test]
fn a_run_directory_is_checked_with_its_own_model() {
    let run = scratch("rundir");
    std::fs::write(
        run.join("test.json"),
        r#"{"name": "r", "run_id": "abc123", "seed": 1, "concurrency": 2, "model": "cas-register", "options": {}}"#,
    )
    .unwrap();
    std::fs::copy(corpus("jepsen/etcd_000.log"), run.join("history.jsonl")).unwrap();
    // The run's history here is a Jepsen log: detection does not care about the file name.
    let output = Command::new(env!("CARGO_BIN_EXE_faultline")).arg("check").arg(&run).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let recheck = run.join("recheck");
    assert!(recheck.join("results.json").exists() && recheck.join("check.html").exists());
    assert!(!run.join("results.json").exists(), "the harness's own results.json is never overwritten");
}

#[test]
fn a_run_directory_whose_test_json_cannot_be_read_is_an_error_not_a_guess() {
    let run = scratch("bad-manifest");
    std::fs::write(run.join("test.json"), r#"{"model": "cas-register"}"#).unwrap();
    std::fs::copy(corpus("jepsen/etcd_000.log"), run.join("history.jsonl")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_faultline")).arg("check").arg(&run).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(5), "{text}");
    assert!(text.contains("test.json"), "{text}");
}

#[test]
fn a_run_directory_is_rechecked_with_its_workloads_direct_checkers_too() {
    let run = scratch("setrun");
    std::fs::write(
        run.join("test.json"),
        r#"{"name": "set", "run_id": "abc123", "seed": 7, "concurrency": 2, "model": "set", "options": {"workload": "set"}}"#,
    )
    .unwrap();
    // Adds 1 and 2 are acknowledged; the final read has lost 2.
    let lines = [
        r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"add","key":"s","value":1}"#,
        r#"{"index":1,"time":2,"process":0,"type":"ok","f":"add","key":"s","value":1}"#,
        r#"{"index":2,"time":3,"process":1,"type":"invoke","f":"add","key":"s","value":2}"#,
        r#"{"index":3,"time":4,"process":1,"type":"ok","f":"add","key":"s","value":2}"#,
        r#"{"index":4,"time":5,"process":2,"type":"invoke","f":"read","key":"s","value":null}"#,
        r#"{"index":5,"time":6,"process":2,"type":"ok","f":"read","key":"s","value":[1]}"#,
    ];
    std::fs::write(run.join("history.jsonl"), lines.join("\n") + "\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_faultline")).arg("check").arg(&run).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("set-full (invalid)"), "{text}");
    assert!(text.contains("the read lacks 1 element(s) the set holds: [2]"), "{text}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("recheck/results.json")).unwrap()).unwrap();
    assert_eq!(results["workload_checks"][0]["verdict"], "invalid");
}

fn jepsen(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("checker/tests/data/jepsen-edn").join(file).display().to_string()
}

#[test]
fn jepsen_reads_of_nil_constrain_nothing_unless_asked_and_the_output_says_so() {
    let out = scratch("nil-reads");
    let file = jepsen("nil-read-after-write.edn");
    let (code, text) = check(&[&file, "--model", "register"], &out);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1 ok reads of nil constrain nothing"), "{text}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["checker"]["nil_reads"], "unknown");
    assert_eq!(results["checker"]["nil_reads_unconstrained"], 1);

    let (code, text) = check(&[&file, "--model", "register", "--nil-reads", "strict"], &out);
    assert_eq!(code, 1, "{text}");
    let (code, text) = check(&[&file, "--model", "register", "--nil-reads", "sometimes"], &out);
    assert_eq!(code, 5, "{text}");
}

#[test]
fn a_history_that_is_not_linearizable_says_how_far_from_it() {
    let out = scratch("ladder");
    let (code, text) = check(&[&jepsen("split-records.edn"), "--model", "register"], &out);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not linearizable, but sequentially consistent"), "{text}");
    assert!(text.contains("1 of 1 reads stale, up to 1.5 s / 1 version behind"), "{text}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["checker"]["ladder"]["sequential"]["verdict"], "valid");
    assert_eq!(results["checker"]["ladder"]["staleness"]["stale_reads"], 1);
    let html = std::fs::read_to_string(out.join("check.html")).unwrap();
    assert!(html.contains("How far from linearizable"), "the page shows the ladder");

    let (code, text) = check(&[&jepsen("not-sequential.edn"), "--model", "register"], &out);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not even sequentially consistent"), "{text}");
}

#[test]
fn a_huge_line_is_refused_with_its_number_without_reading_it_all() {
    let out = scratch("huge-line");
    let path = out.join("huge.jsonl");
    // 1 GiB of one line, as a sparse file: cheap to make, and reading it all would take seconds.
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(1 << 30).unwrap();
    let started = std::time::Instant::now();
    let (code, text) = check(&[path.to_str().unwrap(), "--model", "register"], &out.join("out"));
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("huge.jsonl:1: line longer than 16 MiB"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn time_going_backwards_is_an_error_or_with_lenient_a_warning() {
    let out = scratch("time-backwards");
    let path = out.join("back.jsonl");
    std::fs::write(
        &path,
        "{\"index\":0,\"time\":5,\"process\":0,\"type\":\"invoke\",\"f\":\"read\",\"value\":null}\n\
         {\"index\":1,\"time\":3,\"process\":0,\"type\":\"ok\",\"f\":\"read\",\"value\":null}\n",
    )
    .unwrap();
    let (code, text) = check(&[path.to_str().unwrap(), "--model", "register"], &out.join("strict"));
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("back.jsonl:2: time goes backwards"), "{text}");
    let (code, text) = check(&[path.to_str().unwrap(), "--model", "register", "--lenient"], &out.join("lenient"));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("warning:") && text.contains("time goes backwards"), "{text}");
}

#[test]
fn edn_lists_with_leading_comments_are_detected_without_format() {
    let out = scratch("edn-list");
    let (code, text) = check(&[&jepsen("list-with-comments.edn"), "--model", "register"], &out);
    assert_eq!(code, 0, "{text}");
}
