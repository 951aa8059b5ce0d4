//! faultline's history format: JSON Lines, one record per event (see docs/history-format.md).
//!
//! Client operations use Jepsen's field names (`index`, `time`, `process`, `type`, `f`, `value`,
//! `key`, `error`). Faults injected by the nemesis are records of their own kind (`"type":"fault"`),
//! so that no tool mistakes them for client operations.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};

use crate::error::InputError;

/// The outcome kind of an operation event, as in Jepsen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// The client is about to send the operation.
    Invoke,
    /// The operation surely happened, with the result in `value`.
    Ok,
    /// The operation surely did not happen (a definite error).
    Fail,
    /// The operation may or may not have happened (an indefinite error or a timeout).
    Info,
}

impl OpType {
    /// The type named as in Jepsen (`invoke`, `ok`, `fail`, `info`), for the importers.
    pub fn from_name(name: &str) -> Option<OpType> {
        match name {
            "invoke" => Some(OpType::Invoke),
            "ok" => Some(OpType::Ok),
            "fail" => Some(OpType::Fail),
            "info" => Some(OpType::Info),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        }
    }
}

/// One client operation event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub index: u64,
    /// Nanoseconds since the start of the run.
    pub time: u64,
    pub process: u64,
    #[serde(rename = "type")]
    pub op_type: OpType,
    pub f: String,
    #[serde(default)]
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a fault record opens or closes a fault window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultPhase {
    Start,
    Stop,
}

/// A fault injected (or healed) by the nemesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub index: u64,
    pub time: u64,
    /// The fault family: `partition`, `kill`, `pause`, `loss`, ...
    pub f: String,
    pub phase: FaultPhase,
    /// The nodes the fault acts on.
    #[serde(default)]
    pub targets: Vec<String>,
    /// For partitions: node -> the nodes it drops traffic from and to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grudge: Option<BTreeMap<String, Vec<String>>>,
    /// Anything else the nemesis wants to record (loss probability, shape name, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

/// One line of a history file.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Op(Op),
    Fault(Fault),
}

impl Record {
    pub fn index(&self) -> u64 {
        match self {
            Record::Op(op) => op.index,
            Record::Fault(fault) => fault.index,
        }
    }

    pub fn time(&self) -> u64 {
        match self {
            Record::Op(op) => op.time,
            Record::Fault(fault) => fault.time,
        }
    }

    pub fn as_op(&self) -> Option<&Op> {
        match self {
            Record::Op(op) => Some(op),
            Record::Fault(_) => None,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum RecordRef<'a> {
    Op(&'a Op),
    Fault(FaultWire<'a>),
}

#[derive(Serialize)]
struct FaultWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    fault: &'a Fault,
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Record::Op(op) => RecordRef::Op(op).serialize(serializer),
            Record::Fault(fault) => RecordRef::Fault(FaultWire { kind: "fault", fault }).serialize(serializer),
        }
    }
}

/// Parses one JSON line into a record. The error is a plain message; the reader adds file and line.
pub fn parse_record_line(line: &str) -> Result<Record, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let kind = value.get("type").and_then(Value::as_str).ok_or("missing string field \"type\"")?;
    if kind == "fault" {
        let fault: Fault = serde_json::from_value(value).map_err(|e| format!("bad fault record: {e}"))?;
        Ok(Record::Fault(fault))
    } else {
        let op: Op = serde_json::from_value(value).map_err(|e| format!("bad op record: {e}"))?;
        Ok(Record::Op(op))
    }
}

/// A record with the 1-based line of the file it came from, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct LineRecord {
    pub line: usize,
    pub record: Record,
}

/// Streams records out of a JSON Lines reader. Blank lines are skipped.
pub struct HistoryReader<R> {
    reader: R,
    file: String,
    line_no: usize,
    buffer: String,
    /// Set after an error that leaves the reader in the middle of a line.
    stopped: bool,
}

impl<R: BufRead> HistoryReader<R> {
    /// `file` names the source in error messages.
    pub fn new(reader: R, file: impl Into<String>) -> Self {
        HistoryReader { reader, file: file.into(), line_no: 0, buffer: String::new(), stopped: false }
    }
}

impl<R: BufRead> Iterator for HistoryReader<R> {
    type Item = Result<LineRecord, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.stopped {
                return None;
            }
            self.buffer.clear();
            // At most one byte past the bound, so a huge line costs the bound, not its length.
            let limit = crate::bounded::MAX_LINE_BYTES as u64 + 2;
            match (&mut self.reader).take(limit).read_line(&mut self.buffer) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    // After a bad byte the reader's position within the line is unknown: stop.
                    self.stopped = true;
                    return Some(Err(InputError::at(&self.file, self.line_no + 1, format!("read error: {e}"))));
                }
            }
            self.line_no += 1;
            if self.buffer.trim_end_matches(['\n', '\r']).len() > crate::bounded::MAX_LINE_BYTES {
                self.stopped = true;
                let message = format!("line longer than {} MiB", crate::bounded::MAX_LINE_BYTES >> 20);
                return Some(Err(InputError::at(&self.file, self.line_no, message)));
            }
            let trimmed = self.buffer.trim();
            if trimmed.is_empty() {
                continue;
            }
            return Some(
                parse_record_line(trimmed)
                    .map(|record| LineRecord { line: self.line_no, record })
                    .map_err(|message| InputError::at(&self.file, self.line_no, message)),
            );
        }
    }
}

/// Writes records as JSON Lines, flushing after each so that a crash loses at most the record being
/// written.
pub struct HistoryWriter<W: Write> {
    writer: W,
    next_index: u64,
}

impl<W: Write> HistoryWriter<W> {
    pub fn new(writer: W) -> Self {
        HistoryWriter { writer, next_index: 0 }
    }

    /// Writes a record as it is (its `index` is kept).
    pub fn write(&mut self, record: &Record) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.writer, record)?;
        self.writer.write_all(b"\n")?;
        self.writer.flush()?;
        self.next_index = self.next_index.max(record.index() + 1);
        Ok(())
    }

    /// The index the next record should carry if the caller numbers records through this writer.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    pub fn into_inner(self) -> W {
        self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ops_and_faults_round_trip_through_the_writer_and_reader() {
        let records = vec![
            Record::Op(Op {
                index: 0,
                time: 10,
                process: 3,
                op_type: OpType::Invoke,
                f: "cas".into(),
                value: json!([1, 2]),
                key: Some(json!("k1")),
                error: None,
            }),
            Record::Fault(Fault {
                index: 1,
                time: 20,
                f: "partition".into(),
                phase: FaultPhase::Start,
                targets: vec!["n1".into(), "n2".into()],
                grudge: Some(BTreeMap::from([("n1".to_string(), vec!["n2".to_string()])])),
                detail: None,
            }),
            Record::Op(Op {
                index: 2,
                time: 30,
                process: 3,
                op_type: OpType::Fail,
                f: "cas".into(),
                value: json!([1, 2]),
                key: Some(json!("k1")),
                error: Some("cas-mismatch".into()),
            }),
        ];
        let mut writer = HistoryWriter::new(Vec::new());
        for record in &records {
            writer.write(record).unwrap();
        }
        assert_eq!(writer.next_index(), 3);
        let bytes = writer.into_inner();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.lines().nth(1).unwrap().contains("\"type\":\"fault\""));
        let read: Vec<Record> = HistoryReader::new(&bytes[..], "mem").map(|r| r.unwrap().record).collect();
        assert_eq!(read, records);
    }

    #[test]
    fn a_bad_line_names_file_and_line() {
        let text =
            "{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"read\",\"value\":null}\n\n{oops\n";
        let results: Vec<_> = HistoryReader::new(text.as_bytes(), "h.jsonl").collect();
        assert!(results[0].is_ok());
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.starts_with("h.jsonl:3:"), "{err}");
    }

    #[test]
    fn an_unknown_type_is_an_error_not_a_panic() {
        let err =
            parse_record_line("{\"index\":0,\"time\":0,\"process\":0,\"type\":\"maybe\",\"f\":\"read\"}").unwrap_err();
        assert!(err.contains("bad op record"), "{err}");
    }
}
