//! Pairs each invocation with its completion, enforcing the rules of histories.

use serde_json::Value;

use crate::error::InputError;
use crate::history::{Fault, LineRecord, OpType, Record};
use crate::model::Outcome;

/// A client operation: its invocation and, if any, its completion.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedOp {
    pub process: u64,
    pub f: String,
    pub key: Option<Value>,
    pub invoke_value: Value,
    /// Position of the invocation among all records of the history (real-time order).
    pub call_position: u64,
    pub call_time: u64,
    pub call_index: u64,
    pub call_line: usize,
    pub completion: Option<Completion>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub op_type: OpType,
    pub value: Value,
    pub error: Option<String>,
    pub position: u64,
    pub time: u64,
    pub index: u64,
    pub line: usize,
}

impl PairedOp {
    pub fn outcome(&self) -> Outcome {
        match self.completion.as_ref().map(|c| c.op_type) {
            Some(OpType::Ok) => Outcome::Ok,
            Some(OpType::Fail) => Outcome::Fail,
            _ => Outcome::Unknown,
        }
    }

    pub fn result_value(&self) -> &Value {
        self.completion.as_ref().map(|c| &c.value).unwrap_or(&Value::Null)
    }

    pub fn error(&self) -> Option<&str> {
        self.completion.as_ref().and_then(|c| c.error.as_deref())
    }

    /// The completion's position, or `None` when the op is open forever (info or no completion).
    pub fn definite_return(&self) -> Option<u64> {
        match &self.completion {
            Some(c) if c.op_type != OpType::Info => Some(c.position),
            _ => None,
        }
    }
}

/// A history split into paired client ops and fault records.
#[derive(Debug, Clone, Default)]
pub struct Paired {
    pub ops: Vec<PairedOp>,
    pub faults: Vec<Fault>,
    /// Number of records (events) read.
    pub events: usize,
    /// Records skipped as bad (lenient mode only).
    pub skipped: Vec<InputError>,
}

/// Pairs records. Strict: the first broken rule is an error naming file and line. Lenient: the
/// offending record is skipped and counted.
pub fn pair(records: &[LineRecord], file: &str, lenient: bool) -> Result<Paired, InputError> {
    let mut paired = Paired { events: records.len(), ..Paired::default() };
    // process -> index into paired.ops of its outstanding op
    let mut outstanding: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for (position, LineRecord { line, record }) in records.iter().enumerate() {
        let op = match record {
            Record::Fault(fault) => {
                paired.faults.push(fault.clone());
                continue;
            }
            Record::Op(op) => op,
        };
        let problem = match op.op_type {
            OpType::Invoke => match outstanding.get(&op.process) {
                Some(&open) => Some(format!(
                    "process {} invokes {} while its {} from line {} is still outstanding",
                    op.process, op.f, paired.ops[open].f, paired.ops[open].call_line
                )),
                None => {
                    outstanding.insert(op.process, paired.ops.len());
                    paired.ops.push(PairedOp {
                        process: op.process,
                        f: op.f.clone(),
                        key: op.key.clone(),
                        invoke_value: op.value.clone(),
                        call_position: position as u64,
                        call_time: op.time,
                        call_index: op.index,
                        call_line: *line,
                        completion: None,
                    });
                    None
                }
            },
            completion_type => match outstanding.get(&op.process).copied() {
                None => {
                    Some(format!("{} of {} on process {} without an invocation", op.op_type.as_str(), op.f, op.process))
                }
                Some(open) if paired.ops[open].f != op.f => Some(format!(
                    "process {} completes {} but invoked {} at line {}",
                    op.process, op.f, paired.ops[open].f, paired.ops[open].call_line
                )),
                Some(open) if paired.ops[open].key != op.key && op.key.is_some() => Some(format!(
                    "process {} completes key {} but invoked key {} at line {}",
                    op.process,
                    op.key.as_ref().unwrap_or(&Value::Null),
                    paired.ops[open].key.as_ref().unwrap_or(&Value::Null),
                    paired.ops[open].call_line
                )),
                Some(open) => {
                    outstanding.remove(&op.process);
                    paired.ops[open].completion = Some(Completion {
                        op_type: completion_type,
                        value: op.value.clone(),
                        error: op.error.clone(),
                        position: position as u64,
                        time: op.time,
                        index: op.index,
                        line: *line,
                    });
                    None
                }
            },
        };
        if let Some(message) = problem {
            let error = InputError::at(file, *line, message);
            if lenient {
                paired.skipped.push(error);
            } else {
                return Err(error);
            }
        }
    }
    Ok(paired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;
    use serde_json::json;

    fn rec(line: usize, process: u64, op_type: OpType, f: &str) -> LineRecord {
        LineRecord {
            line,
            record: Record::Op(Op {
                index: line as u64,
                time: 0,
                process,
                op_type,
                f: f.into(),
                value: json!(null),
                key: None,
                error: None,
            }),
        }
    }

    #[test]
    fn a_completion_without_invocation_names_its_line() {
        let err = pair(&[rec(1, 0, OpType::Invoke, "read"), rec(2, 1, OpType::Ok, "read")], "h", false).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("without an invocation"), "{err}");
    }

    #[test]
    fn two_outstanding_ops_on_one_process_are_refused() {
        let err =
            pair(&[rec(1, 0, OpType::Invoke, "read"), rec(2, 0, OpType::Invoke, "write")], "h", false).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("still outstanding"), "{err}");
    }

    #[test]
    fn lenient_pairing_skips_and_counts() {
        let records = [rec(1, 0, OpType::Invoke, "read"), rec(2, 1, OpType::Ok, "read"), rec(3, 0, OpType::Ok, "read")];
        let paired = pair(&records, "h", true).unwrap();
        assert_eq!(paired.skipped.len(), 1);
        assert_eq!(paired.ops.len(), 1);
        assert!(paired.ops[0].completion.is_some());
    }
}
