//! Jepsen's set-full checker: every element whose add was acknowledged (or that some read saw)
//! must be in every read that began after that, and in the final read. Each element is one of:
//! stable (present in every later read), stale (missing from some later read, present again in the
//! final one), lost (missing from the final read), or never read (no read began after it was
//! known). A read that holds an element never added, or one whose add failed, is unexpected.
//! For stable elements we also say how long after its add each became visible for good.

use std::collections::{BTreeMap, HashMap, HashSet};

use faultline_checker::history::{OpType, Record};
use faultline_checker::Verdict;
use serde::Serialize;
use serde_json::Value;

use crate::{key_text, pair_records, CheckerReport, QuantilesMs};

pub const NAME: &str = "set-full";
/// Elements listed by name per category; past it only counted.
const MAX_LISTED: usize = 100;
/// Per-element visibility entries kept in the result.
const MAX_VISIBILITY_ENTRIES: usize = 10_000;

/// One element named in a result, with where and when it was added.
#[derive(Debug, Clone, Serialize)]
pub struct ElementReport {
    pub key: Option<Value>,
    pub element: Value,
    /// `ok`, `info`, `fail` or `pending`: how the add ended; `none` when it was never added.
    pub add_outcome: String,
    /// History index of the add's invocation.
    pub add_index: Option<u64>,
    /// Nanoseconds: when it was known to exist (the add's ok, or the end of the first read that
    /// saw it).
    pub known_time: Option<u64>,
    /// The history index of the last read (by invocation) that should have held it and did not.
    pub missing_from_read_index: Option<u64>,
}

/// When an element became visible for good.
#[derive(Debug, Clone, Serialize)]
pub struct Visibility {
    pub key: Option<Value>,
    pub element: Value,
    pub add_time: u64,
    /// Nanoseconds from the add's invocation until every read that began later held it.
    pub visible_after_ns: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetFullResult {
    pub verdict: Verdict,
    pub sets: usize,
    pub attempted_adds: usize,
    pub acknowledged_adds: usize,
    pub reads: usize,
    pub stable_count: usize,
    pub lost_count: usize,
    pub stale_count: usize,
    pub never_read_count: usize,
    pub unexpected_count: usize,
    pub duplicated_count: usize,
    pub lost: Vec<ElementReport>,
    pub stale: Vec<ElementReport>,
    pub never_read: Vec<ElementReport>,
    pub unexpected: Vec<ElementReport>,
    pub duplicated: Vec<ElementReport>,
    /// How long adds took to become visible for good, over stable and stale elements.
    pub visibility_latency: QuantilesMs,
    pub visibility: Vec<Visibility>,
}

impl SetFullResult {
    pub fn summary(&self) -> String {
        format!(
            "{}: {} adds ({} acknowledged), {} reads; {} stable, {} lost, {} stale, {} never read, {} unexpected, \
             {} duplicated; visible after p50 {:.1} ms, max {:.1} ms",
            self.verdict.as_str(),
            self.attempted_adds,
            self.acknowledged_adds,
            self.reads,
            self.stable_count,
            self.lost_count,
            self.stale_count,
            self.never_read_count,
            self.unexpected_count,
            self.duplicated_count,
            self.visibility_latency.p50,
            self.visibility_latency.max,
        )
    }

    pub fn report(&self) -> CheckerReport {
        CheckerReport {
            checker: NAME.to_string(),
            verdict: self.verdict,
            summary: self.summary(),
            details: serde_json::to_value(self).unwrap_or(Value::Null),
        }
    }
}

struct Add {
    element: Value,
    outcome: &'static str,
    invoke_index: u64,
    invoke_time: u64,
    ok_time: Option<u64>,
}

struct Read {
    index: u64,
    invoke_time: u64,
    complete_time: u64,
    elements: HashSet<String>,
}

#[derive(Default)]
struct SetHistory {
    key: Option<Value>,
    adds: BTreeMap<String, Add>,
    reads: Vec<Read>,
}

fn outcome_name(op_type: Option<OpType>) -> &'static str {
    op_type.map_or("pending", OpType::as_str)
}

/// Checks the `add`/`read` ops of a history, per key.
pub fn check(records: &[Record]) -> SetFullResult {
    let paired = pair_records(records);
    let mut sets: BTreeMap<String, SetHistory> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut duplicated = Vec::new();
    for op in &paired.ops {
        let set = sets.entry(key_text(&op.key)).or_default();
        set.key = op.key.clone();
        let op_type = op.completion.as_ref().map(|c| c.op_type);
        match op.f.as_str() {
            "add" => {
                set.adds.insert(
                    op.invoke_value.to_string(),
                    Add {
                        element: op.invoke_value.clone(),
                        outcome: outcome_name(op_type),
                        invoke_index: op.call_index,
                        invoke_time: op.call_time,
                        ok_time: op.completion.as_ref().filter(|c| c.op_type == OpType::Ok).map(|c| c.time),
                    },
                );
            }
            "read" if op_type == Some(OpType::Ok) => {
                let completion = op.completion.as_ref().expect("an ok read has a completion");
                let listed = completion.value.as_array().cloned().unwrap_or_default();
                let mut elements = HashSet::new();
                for element in listed {
                    if !elements.insert(element.to_string()) {
                        duplicated.push(ElementReport {
                            key: op.key.clone(),
                            element,
                            add_outcome: String::new(),
                            add_index: None,
                            known_time: None,
                            missing_from_read_index: Some(completion.index),
                        });
                    }
                }
                set.reads.push(Read {
                    index: completion.index,
                    invoke_time: op.call_time,
                    complete_time: completion.time,
                    elements,
                });
            }
            _ => {}
        }
    }

    let mut result = SetFullResult {
        verdict: Verdict::Valid,
        sets: sets.len(),
        attempted_adds: 0,
        acknowledged_adds: 0,
        reads: 0,
        stable_count: 0,
        lost_count: 0,
        stale_count: 0,
        never_read_count: 0,
        unexpected_count: 0,
        duplicated_count: duplicated.len(),
        lost: Vec::new(),
        stale: Vec::new(),
        never_read: Vec::new(),
        unexpected: Vec::new(),
        duplicated: duplicated.into_iter().take(MAX_LISTED).collect(),
        visibility_latency: QuantilesMs::default(),
        visibility: Vec::new(),
    };
    let mut latencies = Vec::new();
    for set in sets.values_mut() {
        set.reads.sort_by_key(|r| r.invoke_time);
        result.attempted_adds += set.adds.len();
        result.acknowledged_adds += set.adds.values().filter(|a| a.ok_time.is_some()).count();
        result.reads += set.reads.len();
        // The end of the first read that saw each element.
        let mut first_seen: HashMap<&str, u64> = HashMap::new();
        for read in &set.reads {
            for element in &read.elements {
                let seen = first_seen.entry(element.as_str()).or_insert(read.complete_time);
                *seen = (*seen).min(read.complete_time);
                match set.adds.get(element) {
                    Some(add) if add.outcome != "fail" => {}
                    add => unexpected.push(ElementReport {
                        key: set.key.clone(),
                        element: serde_json::from_str(element).unwrap_or(Value::Null),
                        add_outcome: add.map_or("none", |a| a.outcome).to_string(),
                        add_index: add.map(|a| a.invoke_index),
                        known_time: None,
                        missing_from_read_index: None,
                    }),
                }
            }
        }
        for (text, add) in &set.adds {
            let known_time = match (add.ok_time, first_seen.get(text.as_str())) {
                (Some(ok), Some(seen)) => Some(ok.min(*seen)),
                (Some(ok), None) => Some(ok),
                (None, Some(seen)) => Some(*seen),
                (None, None) => None,
            };
            let Some(known_time) = known_time else {
                // A failed or indefinite add that no read saw tells nothing.
                continue;
            };
            let report = |missing: Option<u64>| ElementReport {
                key: set.key.clone(),
                element: add.element.clone(),
                add_outcome: add.outcome.to_string(),
                add_index: Some(add.invoke_index),
                known_time: Some(known_time),
                missing_from_read_index: missing,
            };
            // Reads are sorted by invocation: those begun after the element was known are a suffix.
            let later = &set.reads[set.reads.partition_point(|r| r.invoke_time <= known_time)..];
            let Some(last) = later.last() else {
                result.never_read_count += 1;
                if result.never_read.len() < MAX_LISTED {
                    result.never_read.push(report(None));
                }
                continue;
            };
            let last_missing = later.iter().rev().find(|r| !r.elements.contains(text)).map(|r| r.index);
            if !last.elements.contains(text) {
                result.lost_count += 1;
                if result.lost.len() < MAX_LISTED {
                    result.lost.push(report(last_missing));
                }
                continue;
            }
            if last_missing.is_some() {
                result.stale_count += 1;
                if result.stale.len() < MAX_LISTED {
                    result.stale.push(report(last_missing));
                }
            } else {
                result.stable_count += 1;
            }
            // Visible for good from the end of the last read (of any time) that missed it.
            let last_miss_end = set
                .reads
                .iter()
                .filter(|r| r.invoke_time >= add.invoke_time && !r.elements.contains(text))
                .map(|r| r.complete_time)
                .max()
                .unwrap_or(add.invoke_time);
            let visible_after_ns = last_miss_end.saturating_sub(add.invoke_time);
            latencies.push(visible_after_ns);
            if result.visibility.len() < MAX_VISIBILITY_ENTRIES {
                result.visibility.push(Visibility {
                    key: set.key.clone(),
                    element: add.element.clone(),
                    add_time: add.invoke_time,
                    visible_after_ns,
                });
            }
        }
    }
    result.unexpected_count = unexpected.len();
    result.unexpected = unexpected.into_iter().take(MAX_LISTED).collect();
    result.visibility_latency = QuantilesMs::of(latencies);
    result.verdict = if result.lost_count + result.stale_count + result.unexpected_count + result.duplicated_count > 0 {
        Verdict::Invalid
    } else if result.stable_count == 0 && result.acknowledged_adds > 0 {
        // Nothing acknowledged was ever read back: the run tested nothing about adds.
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    result
}
