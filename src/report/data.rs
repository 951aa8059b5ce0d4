//! A run directory read back for the report: test.json, results.json and history.jsonl, with the
//! client ops paired into bars and the fault records paired into windows.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result};
use faultline_checker::history::{FaultPhase, HistoryReader, OpType, Record};
use serde_json::Value;

/// How an op ended, as the report colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    Fail,
    Info,
    /// No completion before the history ends.
    Pending,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Ok, Outcome::Fail, Outcome::Info, Outcome::Pending];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
            Outcome::Pending => "pending",
        }
    }

    /// Colours as RGB, shared by the HTML pages and the plots.
    pub fn rgb(self) -> (u8, u8, u8) {
        match self {
            Outcome::Ok => (46, 160, 67),
            Outcome::Fail => (207, 34, 46),
            Outcome::Info => (219, 154, 4),
            Outcome::Pending => (130, 80, 223),
        }
    }

    pub fn css(self) -> String {
        let (r, g, b) = self.rgb();
        format!("#{r:02x}{g:02x}{b:02x}")
    }
}

/// One client op: invocation and completion.
#[derive(Debug, Clone)]
pub struct OpBar {
    pub process: u64,
    pub f: String,
    pub key: Option<Value>,
    pub invoke_value: Value,
    pub result_value: Value,
    pub error: Option<String>,
    pub outcome: Outcome,
    pub call_index: u64,
    pub call_time_ns: u64,
    pub return_index: Option<u64>,
    /// `None` while pending: the bar runs to the end of the history.
    pub return_time_ns: Option<u64>,
}

impl OpBar {
    pub fn end_ns(&self, history_end_ns: u64) -> u64 {
        self.return_time_ns.unwrap_or(history_end_ns).max(self.call_time_ns)
    }

    pub fn latency_ns(&self) -> Option<u64> {
        self.return_time_ns.map(|r| r.saturating_sub(self.call_time_ns))
    }

    /// One line for a tooltip or a table cell.
    pub fn describe(&self) -> String {
        let key = self.key.as_ref().map(|k| format!(" {k}")).unwrap_or_default();
        let value = if self.outcome == Outcome::Ok { &self.result_value } else { &self.invoke_value };
        let mut text = format!("{}{key} {}", self.f, short_json(value, 120));
        if let Some(error) = &self.error {
            text.push_str(&format!(" ({error})"));
        }
        text
    }
}

/// A JSON value as text, cut to `max_chars`.
pub fn short_json(value: &Value, max_chars: usize) -> String {
    let text = value.to_string();
    if text.chars().count() <= max_chars {
        text
    } else {
        let cut: String = text.chars().take(max_chars).collect();
        format!("{cut}…")
    }
}

/// A fault from its start record to its stop record (or to the end of the history).
#[derive(Debug, Clone)]
pub struct FaultWindow {
    pub f: String,
    pub targets: Vec<String>,
    pub detail: Option<Value>,
    pub start_index: u64,
    pub start_ns: u64,
    pub stop_ns: Option<u64>,
}

impl FaultWindow {
    pub fn end_ns(&self, history_end_ns: u64) -> u64 {
        self.stop_ns.unwrap_or(history_end_ns).max(self.start_ns)
    }

    pub fn describe(&self) -> String {
        let mut text = format!("{} {}", self.f, self.targets.join(","));
        if let Some(shape) = self.detail.as_ref().and_then(|d| d.get("shape")).and_then(Value::as_str) {
            text.push_str(&format!(" ({shape})"));
        }
        text
    }
}

/// A non-linearizable window named by the checker: the failing op and the ops around it, by the
/// history index of their invocations.
#[derive(Debug, Clone)]
pub struct Anomaly {
    pub key: Option<Value>,
    pub failing_call_index: u64,
    pub window_call_indexes: Vec<u64>,
    pub text: String,
}

/// Everything the report is drawn from.
pub struct RunData {
    pub test: Value,
    pub results: Value,
    pub ops: Vec<OpBar>,
    pub faults: Vec<FaultWindow>,
    pub anomalies: Vec<Anomaly>,
    /// The time of the last record.
    pub end_ns: u64,
    /// History lines that could not be read (the report still shows the rest).
    pub bad_lines: Vec<String>,
}

fn read_json(path: &Path) -> Value {
    std::fs::read_to_string(path).ok().and_then(|text| serde_json::from_str(&text).ok()).unwrap_or(Value::Null)
}

impl RunData {
    pub fn load(dir: &Path) -> Result<RunData> {
        let history_path = dir.join("history.jsonl");
        let file = File::open(&history_path).with_context(|| format!("opening {}", history_path.display()))?;
        let mut records = Vec::new();
        let mut bad_lines = Vec::new();
        for line in HistoryReader::new(BufReader::new(file), history_path.display().to_string()) {
            match line {
                Ok(line) => records.push(line.record),
                // A history cut by a crash still deserves a report of what it holds.
                Err(e) => bad_lines.push(e.to_string()),
            }
        }
        let test = read_json(&dir.join("test.json"));
        let results = read_json(&dir.join("results.json"));
        let (ops, faults, end_ns) = pair(&records);
        let anomalies = anomalies_of(&results);
        Ok(RunData { test, results, ops, faults, anomalies, end_ns, bad_lines })
    }

    /// The worker count, when test.json says; rows of the timeline are workers (process mod it).
    pub fn concurrency(&self) -> Option<u64> {
        self.test.get("concurrency").and_then(Value::as_u64).filter(|c| *c > 0)
    }

    /// valid | invalid | unknown | none (no results.json yet: a run that did not finish).
    pub fn verdict(&self) -> String {
        let verdict = self.results.get("verdict").and_then(Value::as_str).unwrap_or("none");
        verdict.to_string()
    }

    pub fn vacuous(&self) -> bool {
        self.results.get("vacuous").and_then(Value::as_bool).unwrap_or(false)
    }

    pub fn counts_by_outcome(&self) -> BTreeMap<Outcome, usize> {
        let mut counts = BTreeMap::new();
        for op in &self.ops {
            *counts.entry(op.outcome).or_default() += 1;
        }
        counts
    }

    /// (f, outcome) -> count.
    pub fn counts_by_f(&self) -> BTreeMap<String, BTreeMap<Outcome, usize>> {
        let mut counts: BTreeMap<String, BTreeMap<Outcome, usize>> = BTreeMap::new();
        for op in &self.ops {
            *counts.entry(op.f.clone()).or_default().entry(op.outcome).or_default() += 1;
        }
        counts
    }
}

/// Pairs invocations with completions per process, and fault starts with stops per family.
fn pair(records: &[Record]) -> (Vec<OpBar>, Vec<FaultWindow>, u64) {
    let mut ops: Vec<OpBar> = Vec::new();
    let mut open_ops: HashMap<u64, usize> = HashMap::new();
    let mut faults: Vec<FaultWindow> = Vec::new();
    let mut open_faults: HashMap<String, Vec<usize>> = HashMap::new();
    let mut end_ns = 0;
    for record in records {
        end_ns = end_ns.max(record.time());
        match record {
            Record::Op(op) if op.op_type == OpType::Invoke => {
                open_ops.insert(op.process, ops.len());
                ops.push(OpBar {
                    process: op.process,
                    f: op.f.clone(),
                    key: op.key.clone(),
                    invoke_value: op.value.clone(),
                    result_value: Value::Null,
                    error: None,
                    outcome: Outcome::Pending,
                    call_index: op.index,
                    call_time_ns: op.time,
                    return_index: None,
                    return_time_ns: None,
                });
            }
            Record::Op(op) => {
                let Some(open) = open_ops.remove(&op.process) else {
                    continue;
                };
                let bar = &mut ops[open];
                bar.outcome = match op.op_type {
                    OpType::Ok => Outcome::Ok,
                    OpType::Fail => Outcome::Fail,
                    _ => Outcome::Info,
                };
                bar.result_value = op.value.clone();
                bar.error = op.error.clone();
                bar.return_index = Some(op.index);
                bar.return_time_ns = Some(op.time);
            }
            Record::Fault(fault) => match fault.phase {
                FaultPhase::Start => {
                    open_faults.entry(fault.f.clone()).or_default().push(faults.len());
                    faults.push(FaultWindow {
                        f: fault.f.clone(),
                        targets: fault.targets.clone(),
                        detail: fault.detail.clone(),
                        start_index: fault.index,
                        start_ns: fault.time,
                        stop_ns: None,
                    });
                }
                FaultPhase::Stop => {
                    // A stop heals every open window of its family.
                    for open in open_faults.remove(&fault.f).unwrap_or_default() {
                        faults[open].stop_ns = Some(fault.time);
                    }
                }
            },
        }
    }
    (ops, faults, end_ns)
}

/// The anomalies of results.json: the harness nests the checker's result under `checker`;
/// `faultline check` writes it at the top level.
fn anomalies_of(results: &Value) -> Vec<Anomaly> {
    let list = results
        .get("checker")
        .and_then(|c| c.get("anomalies"))
        .or_else(|| results.get("anomalies"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter_map(|anomaly| {
            let failing_call_index = anomaly.get("failing_op")?.get("call_index")?.as_u64()?;
            let window_call_indexes = anomaly
                .get("window")
                .and_then(Value::as_array)
                .map(|w| w.iter().filter_map(|op| op.get("call_index").and_then(Value::as_u64)).collect())
                .unwrap_or_default();
            Some(Anomaly {
                key: anomaly.get("key").cloned().filter(|k| !k.is_null()),
                failing_call_index,
                window_call_indexes,
                text: anomaly.get("text").and_then(Value::as_str).unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// The direct checkers' reports in results.json (`workload_checks`: a list of
/// `{checker, verdict, summary, details}`), if the harness recorded them.
pub fn workload_checks(results: &Value) -> Vec<Value> {
    results.get("workload_checks").and_then(Value::as_array).cloned().unwrap_or_default()
}
