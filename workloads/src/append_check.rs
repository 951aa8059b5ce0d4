//! Direct checks of event streams that hold even when the linearizability search would be slow:
//!
//! - **lost**: an acknowledged append missing from the stream's final read (the last read that
//!   began after the append was acknowledged);
//! - **stale**: a read that began after an append was acknowledged and does not hold it;
//! - **duplicated**: an event twice in one read;
//! - **unexpected**: an event in a read that was never appended, or whose append failed;
//! - **diverged**: a read that is not a prefix of the stream's longest read (events out of order,
//!   or a gap compared with another read: streams only grow at the end);
//! - **went back**: a read shorter than a read that completed before it began;
//! - **misplaced**: an acknowledged append with an expected version `n` not at position `n`.

use std::collections::{BTreeMap, HashMap, HashSet};

use faultline_checker::history::{OpType, Record};
use faultline_checker::Verdict;
use serde::Serialize;
use serde_json::Value;

use crate::{key_text, pair_records, CheckerReport};

pub const NAME: &str = "append";
/// Problems listed per category; past it only counted.
const MAX_LISTED: usize = 100;

/// One problem found in one stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamProblem {
    pub stream: Option<Value>,
    /// `lost`, `stale`, `duplicated`, `unexpected`, `diverged`, `went-back`, `misplaced`.
    pub kind: &'static str,
    pub event: Option<Value>,
    /// History index of the read (its completion) that shows the problem.
    pub read_index: Option<u64>,
    /// History index of the append's invocation, when one event is at stake.
    pub append_index: Option<u64>,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProblemCounts {
    pub lost: usize,
    pub stale: usize,
    pub duplicated: usize,
    pub unexpected: usize,
    pub diverged: usize,
    pub went_back: usize,
    pub misplaced: usize,
}

impl ProblemCounts {
    fn total(&self) -> usize {
        self.lost + self.stale + self.duplicated + self.unexpected + self.diverged + self.went_back + self.misplaced
    }

    fn count(&mut self, kind: &str) {
        match kind {
            "lost" => self.lost += 1,
            "stale" => self.stale += 1,
            "duplicated" => self.duplicated += 1,
            "unexpected" => self.unexpected += 1,
            "diverged" => self.diverged += 1,
            "went-back" => self.went_back += 1,
            "misplaced" => self.misplaced += 1,
            other => unreachable!("unknown problem kind {other}"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AppendResult {
    pub verdict: Verdict,
    pub streams: usize,
    pub attempted_appends: usize,
    pub acknowledged_appends: usize,
    /// Acknowledged appends that a read begun after the acknowledgement could confirm.
    pub confirmed_appends: usize,
    pub reads: usize,
    pub counts: ProblemCounts,
    pub problems: Vec<StreamProblem>,
}

impl AppendResult {
    pub fn summary(&self) -> String {
        let c = &self.counts;
        format!(
            "{}: {} appends ({} acknowledged, {} confirmed by a later read), {} reads over {} streams; {} lost, {} stale, \
             {} duplicated, {} unexpected, {} out of order or with a gap, {} went back, {} misplaced",
            self.verdict.as_str(),
            self.attempted_appends,
            self.acknowledged_appends,
            self.confirmed_appends,
            self.reads,
            self.streams,
            c.lost,
            c.stale,
            c.duplicated,
            c.unexpected,
            c.diverged,
            c.went_back,
            c.misplaced
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

struct Append {
    event: Value,
    expected_version: Option<u64>,
    failed: bool,
    invoke_index: u64,
    ok_time: Option<u64>,
}

struct Read {
    index: u64,
    invoke_time: u64,
    complete_time: u64,
    events: Vec<String>,
}

#[derive(Default)]
struct StreamHistory {
    key: Option<Value>,
    appends: HashMap<String, Append>,
    reads: Vec<Read>,
}

/// The event of an append's value: `{"event": E, ...}` or a bare `E`.
fn append_parts(value: &Value) -> (Value, Option<u64>) {
    match value {
        Value::Object(map) if map.contains_key("event") => {
            (map["event"].clone(), map.get("expected_version").and_then(Value::as_u64))
        }
        other => (other.clone(), None),
    }
}

/// Checks the `append`/`read` ops of a history, per stream (key).
pub fn check(records: &[Record]) -> AppendResult {
    let paired = pair_records(records);
    let mut streams: BTreeMap<String, StreamHistory> = BTreeMap::new();
    for op in &paired.ops {
        let stream = streams.entry(key_text(&op.key)).or_default();
        stream.key = op.key.clone();
        let op_type = op.completion.as_ref().map(|c| c.op_type);
        match op.f.as_str() {
            "append" => {
                let (event, expected_version) = append_parts(&op.invoke_value);
                stream.appends.insert(
                    event.to_string(),
                    Append {
                        event,
                        expected_version,
                        failed: op_type == Some(OpType::Fail),
                        invoke_index: op.call_index,
                        ok_time: op.completion.as_ref().filter(|c| c.op_type == OpType::Ok).map(|c| c.time),
                    },
                );
            }
            "read" if op_type == Some(OpType::Ok) => {
                let completion = op.completion.as_ref().expect("an ok read has a completion");
                let events = completion.value.as_array().map(|a| a.iter().map(Value::to_string).collect());
                stream.reads.push(Read {
                    index: completion.index,
                    invoke_time: op.call_time,
                    complete_time: completion.time,
                    events: events.unwrap_or_default(),
                });
            }
            _ => {}
        }
    }

    let mut result = AppendResult {
        verdict: Verdict::Valid,
        streams: streams.len(),
        attempted_appends: 0,
        acknowledged_appends: 0,
        confirmed_appends: 0,
        reads: 0,
        counts: ProblemCounts::default(),
        problems: Vec::new(),
    };
    let problem = |result: &mut AppendResult, p: StreamProblem| {
        result.counts.count(p.kind);
        if result.problems.len() < MAX_LISTED {
            result.problems.push(p);
        }
    };
    for stream in streams.values_mut() {
        stream.reads.sort_by_key(|r| r.invoke_time);
        result.attempted_appends += stream.appends.len();
        result.acknowledged_appends += stream.appends.values().filter(|a| a.ok_time.is_some()).count();
        result.reads += stream.reads.len();
        let key = stream.key.clone();
        let event_value = |text: &str| serde_json::from_str(text).unwrap_or(Value::Null);

        // Within each read: duplicates, unexpected events, misplaced versions.
        for read in &stream.reads {
            let mut seen = HashSet::new();
            for (position, event) in read.events.iter().enumerate() {
                let mk = |kind, detail: String, append_index| StreamProblem {
                    stream: key.clone(),
                    kind,
                    event: Some(event_value(event)),
                    read_index: Some(read.index),
                    append_index,
                    detail,
                };
                if !seen.insert(event.as_str()) {
                    problem(&mut result, mk("duplicated", format!("event {event} twice in one read"), None));
                }
                match stream.appends.get(event) {
                    None => problem(&mut result, mk("unexpected", format!("event {event} was never appended"), None)),
                    Some(append) if append.failed => problem(
                        &mut result,
                        mk(
                            "unexpected",
                            format!("event {event} was read but its append failed"),
                            Some(append.invoke_index),
                        ),
                    ),
                    Some(append) => {
                        if let (Some(version), Some(_)) = (append.expected_version, append.ok_time) {
                            if version != position as u64 {
                                problem(
                                    &mut result,
                                    mk(
                                        "misplaced",
                                        format!("appended at expected version {version}, read at position {position}"),
                                        Some(append.invoke_index),
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }

        // Every read is a prefix of the longest one: streams only grow at the end.
        if let Some(longest) = stream.reads.iter().max_by_key(|r| r.events.len()) {
            for read in &stream.reads {
                if let Some(position) = read.events.iter().zip(&longest.events).position(|(a, b)| a != b) {
                    problem(
                        &mut result,
                        StreamProblem {
                            stream: key.clone(),
                            kind: "diverged",
                            event: Some(event_value(&read.events[position])),
                            read_index: Some(read.index),
                            append_index: None,
                            detail: format!(
                                "at position {position} this read has {} where the read completed at index {} has {}",
                                read.events[position], longest.index, longest.events[position]
                            ),
                        },
                    );
                }
            }
        }

        // No read is shorter than a read that completed before it began.
        let mut by_completion: Vec<&Read> = stream.reads.iter().collect();
        by_completion.sort_by_key(|r| r.complete_time);
        let mut next_completed = 0;
        let mut longest_completed: Option<&Read> = None;
        for read in &stream.reads {
            while next_completed < by_completion.len() && by_completion[next_completed].complete_time < read.invoke_time
            {
                let done = by_completion[next_completed];
                if longest_completed.is_none_or(|l| done.events.len() > l.events.len()) {
                    longest_completed = Some(done);
                }
                next_completed += 1;
            }
            if let Some(earlier) = longest_completed.filter(|l| l.events.len() > read.events.len()) {
                problem(
                    &mut result,
                    StreamProblem {
                        stream: key.clone(),
                        kind: "went-back",
                        event: None,
                        read_index: Some(read.index),
                        append_index: None,
                        detail: format!(
                            "{} events, but the read completed at index {} had already seen {}",
                            read.events.len(),
                            earlier.index,
                            earlier.events.len()
                        ),
                    },
                );
            }
        }

        // Acknowledged appends: in every read that began after the acknowledgement.
        let read_sets: Vec<HashSet<&str>> =
            stream.reads.iter().map(|r| r.events.iter().map(String::as_str).collect()).collect();
        let mut acknowledged: Vec<(&String, &Append)> =
            stream.appends.iter().filter(|(_, a)| a.ok_time.is_some()).collect();
        acknowledged.sort_by_key(|(_, a)| a.invoke_index);
        for (text, append) in acknowledged {
            let ok_time = append.ok_time.expect("filtered on ok");
            // Reads are sorted by invocation: those begun after the acknowledgement are a suffix.
            let first_later = stream.reads.partition_point(|r| r.invoke_time <= ok_time);
            let later: Vec<usize> = (first_later..stream.reads.len()).collect();
            let Some(&last) = later.last() else {
                continue;
            };
            result.confirmed_appends += 1;
            let mk = |kind, read: &Read, detail: String| StreamProblem {
                stream: key.clone(),
                kind,
                event: Some(append.event.clone()),
                read_index: Some(read.index),
                append_index: Some(append.invoke_index),
                detail,
            };
            if !read_sets[last].contains(text.as_str()) {
                let read = &stream.reads[last];
                problem(&mut result, mk("lost", read, format!("acknowledged event {text} is not in the final read")));
            } else if let Some(&missing) = later.iter().find(|i| !read_sets[**i].contains(text.as_str())) {
                let read = &stream.reads[missing];
                problem(
                    &mut result,
                    mk("stale", read, format!("a read begun after event {text} was acknowledged does not hold it")),
                );
            }
        }
    }
    result.verdict = if result.counts.total() > 0 {
        Verdict::Invalid
    } else if result.acknowledged_appends > 0 && result.confirmed_appends == 0 {
        // No acknowledged append was ever read back: nothing about appends was tested.
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    result
}
