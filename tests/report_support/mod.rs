//! Synthetic run directories for the report tests: a history.jsonl, test.json and results.json
//! shaped like the harness's, without a cluster.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// A small deterministic random number generator (xorshift64*), so the tests need no seed crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A fresh empty directory under the system's temp dir.
pub fn fresh_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("faultline-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct SyntheticRun {
    pub dir: PathBuf,
    pub n_ops: usize,
    /// History index of the invocation the anomaly names, when the run is invalid.
    pub failing_call_index: Option<u64>,
}

const WORKERS: u64 = 10;
const MS: u64 = 1_000_000;

/// Writes a run of about `n_ops` register ops by 10 workers, with a partition and a kill, into
/// `dir`; `invalid` adds an anomaly to results.json naming an op in the middle of the run.
pub fn write_run(dir: &Path, n_ops: usize, invalid: bool) -> SyntheticRun {
    write_run_with_faults(dir, n_ops, invalid, &[])
}

/// `write_run` with more fault windows: (f, start and stop in thousandths of the run, target).
pub fn write_run_with_faults(
    dir: &Path,
    n_ops: usize,
    invalid: bool,
    extra_faults: &[(&str, u64, u64, &str)],
) -> SyntheticRun {
    let mut rng = Rng::new(n_ops as u64 + 7);
    // Per worker: (process, the time it is free again).
    let mut workers: Vec<(u64, u64)> = (0..WORKERS).map(|w| (w, rng.below(50) * MS)).collect();
    // Events: (time, record without index); sorted by time at the end.
    let mut events: Vec<(u64, Value)> = Vec::new();
    let duration_ns = (n_ops as u64 / WORKERS).max(1) * 30 * MS;
    let partition = (duration_ns / 4, duration_ns / 2);
    let kill = (duration_ns * 3 / 5, duration_ns * 7 / 10);
    let mut invocations = Vec::new();
    for op_number in 0..n_ops {
        let worker = op_number % WORKERS as usize;
        let (process, free_at) = workers[worker];
        let start = free_at + rng.below(10) * MS;
        let in_fault = (partition.0..partition.1).contains(&start) || (kill.0..kill.1).contains(&start);
        let key = json!(format!("k{}", rng.below(5)));
        let (f, value) = match rng.below(3) {
            0 => ("read", Value::Null),
            1 => ("write", json!(op_number)),
            _ => ("cas", json!([rng.below(5), op_number])),
        };
        let roll = rng.below(100);
        let (op_type, latency, result, error) = if in_fault && roll < 30 {
            ("info", 1000 * MS, value.clone(), Some("timeout"))
        } else if roll < 8 {
            ("fail", (1 + rng.below(5)) * MS, value.clone(), Some("cas-mismatch"))
        } else {
            let result = if f == "read" { json!(rng.below(50)) } else { value.clone() };
            ("ok", (1 + rng.below(20)) * MS + rng.below(MS), result, None)
        };
        let invoke = json!({"time": start, "process": process, "type": "invoke", "f": f, "key": key, "value": value});
        invocations.push(events.len());
        events.push((start, invoke));
        let mut completion =
            json!({"time": start + latency, "process": process, "type": op_type, "f": f, "key": key, "value": result});
        if let Some(error) = error {
            completion["error"] = json!(error);
        }
        events.push((start + latency, completion));
        let next_process = if op_type == "info" { process + WORKERS } else { process };
        workers[worker] = (next_process, start + latency);
    }
    let mut faults = vec![
        ("partition", partition, json!(["n1", "n2", "n3", "n4", "n5"]), json!({"shape": "halves"})),
        ("kill", kill, json!(["n2"]), Value::Null),
    ];
    for &(f, start, stop, target) in extra_faults {
        faults.push((f, (duration_ns * start / 1000, duration_ns * stop / 1000), json!([target]), Value::Null));
    }
    for (f, (start, stop), targets, detail) in faults {
        let mut record = json!({"type": "fault", "time": start, "f": f, "phase": "start", "targets": targets});
        if !detail.is_null() {
            record["detail"] = detail;
        }
        events.push((start, record));
        events.push((stop, json!({"type": "fault", "time": stop, "f": f, "phase": "stop", "targets": targets})));
    }
    // Stable sort by time keeps each invoke before its completion.
    let failing_event = invocations[invocations.len() / 2];
    let failing_marker = events[failing_event].1.clone();
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|i| events[*i].0);
    let mut lines = String::new();
    let mut failing_call_index = None;
    let mut window = Vec::new();
    for (index, event_number) in order.iter().enumerate() {
        let mut record = events[*event_number].1.clone();
        if *event_number == failing_event {
            failing_call_index = Some(index as u64);
        }
        record["index"] = json!(index);
        lines.push_str(&serde_json::to_string(&record).unwrap());
        lines.push('\n');
    }
    let failing_call_index = failing_call_index.unwrap();
    // The window: the failing op and a few invocations around it.
    for (index, event_number) in order.iter().enumerate() {
        let record = &events[*event_number].1;
        if record["type"] == "invoke" && (index as i64 - failing_call_index as i64).abs() < 12 {
            window.push(json!({"call_index": index, "process": record["process"], "f": record["f"]}));
        }
    }
    std::fs::write(dir.join("history.jsonl"), lines).unwrap();
    let test = json!({
        "name": "register",
        "run_id": "abc123",
        "seed": 42,
        "concurrency": WORKERS,
        "started_at": "20261123T011500.123Z",
        "argv": ["faultline", "test", "--seed", "42"],
        "options": {"name": "register", "db": "faultline-node", "nodes": 5, "nemesis": "partition,kill", "time_limit": 20, "rate": 100.0, "workload": "cas-register"},
    });
    std::fs::write(dir.join("test.json"), serde_json::to_string_pretty(&test).unwrap()).unwrap();
    let anomalies = if invalid {
        json!([{
            "key": failing_marker["key"],
            "failing_op": {"call_index": failing_call_index, "process": failing_marker["process"], "f": failing_marker["f"]},
            "window": window,
            "text": "read k3 -> 7 cannot be linearised: no write of 7 precedes it\nmore lines",
        }])
    } else {
        json!([])
    };
    let results = json!({
        "verdict": if invalid { "invalid" } else { "valid" },
        "vacuous": false,
        "ops": {"invoked": n_ops},
        "faults_started": 2,
        "duration_s": duration_ns as f64 / 1e9,
        "checker": {"verdict": if invalid { "invalid" } else { "valid" }, "model": "kv", "ops": n_ops, "check_ms": 4.981071999999999, "partitions": [], "anomalies": anomalies},
        "workload_checks": [{"checker": "set-full", "verdict": "valid", "summary": "valid: synthetic", "details": {}}],
    });
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&results).unwrap()).unwrap();
    SyntheticRun { dir: dir.to_path_buf(), n_ops, failing_call_index: invalid.then_some(failing_call_index) }
}
