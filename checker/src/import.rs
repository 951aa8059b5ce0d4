//! Reading histories: faultline's JSON Lines, and foreign formats converted into the same records.
//!
//! Foreign formats:
//! - `jepsen-edn`: a Jepsen `history.edn` (one op map per line, or one vector of maps; tagged
//!   `#jepsen.history.Op{...}` records too). `jepsen.independent` values `[key value]` are split
//!   into `key` and `value` when every client op carries such a tuple.
//! - `porcupine-kv`: porcupine's EDN kv files (`{:process 0, :type :invoke, :f :get, :key "1", ...}`);
//!   read by the same EDN importer.
//! - `jepsen-log`: the Jepsen log lines of porcupine's etcd corpus
//!   (`INFO  jepsen.util - <process> :<type> :<f> <value>`). Every failed cas in these logs is an
//!   observed compare failure, so it is imported with `error: "cas-mismatch"`; a `:timed-out` value
//!   becomes `error: "timed-out"` with a null value.

use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::bounded::{read_to_string_bounded, MAX_LINE_BYTES};
use crate::edn::{self, Edn};
use crate::error::{CheckError, InputError};
use crate::history::{parse_record_line, Fault, FaultPhase, LineRecord, Op, OpType, Record};

/// The error string, in our format, that marks a failed compare-and-set (or expected-version
/// append) as an observation: the compared value was not the expected one.
pub const CAS_MISMATCH: &str = "cas-mismatch";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    JepsenEdn,
    PorcupineKv,
    JepsenLog,
}

impl Format {
    pub const NAMES: &'static [&'static str] = &["jsonl", "jepsen-edn", "porcupine-kv", "jepsen-log"];

    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::JepsenEdn => "jepsen-edn",
            Format::PorcupineKv => "porcupine-kv",
            Format::JepsenLog => "jepsen-log",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "jsonl" | "json" => Some(Format::Jsonl),
            "jepsen-edn" | "edn" => Some(Format::JepsenEdn),
            "porcupine-kv" => Some(Format::PorcupineKv),
            "jepsen-log" | "porcupine-etcd" => Some(Format::JepsenLog),
            _ => None,
        }
    }
}

/// Guesses the format from the first meaningful line (blank lines and `;` comments skipped).
pub fn detect_format(text: &str) -> Option<Format> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with(';'));
    let line = lines.next()?.trim_start_matches('\u{feff}');
    if line.contains("jepsen.util - ") {
        return Some(Format::JepsenLog);
    }
    if line.starts_with("{\"") || line.starts_with("{ \"") {
        return Some(Format::Jsonl);
    }
    if line.starts_with(['{', '[', '(', '#']) {
        // porcupine's kv files name the key in every map; a history opening with a lone `[` or
        // `(` shows its first map on a later line, so look a little further.
        let head: String = std::iter::once(line).chain(lines.take(4)).collect::<Vec<_>>().join(" ");
        if head.contains(":key ") {
            return Some(Format::PorcupineKv);
        }
        return Some(Format::JepsenEdn);
    }
    None
}

/// What an `:ok` read whose value is nil (JSON `null`) means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NilReads {
    /// The key was never written: the read observed the initial (null) value. faultline's own
    /// histories mean this, and so do porcupine's etcd logs.
    #[default]
    Strict,
    /// Nothing is known of what the read returned, so it constrains nothing: Jepsen's and
    /// knossos' meaning (`Register` and `CASRegister` accept a read of nil in any state).
    Unknown,
}

impl NilReads {
    pub const NAMES: &'static [&'static str] = &["strict", "unknown"];

    pub fn from_name(name: &str) -> Option<NilReads> {
        match name {
            "strict" => Some(NilReads::Strict),
            "unknown" | "jepsen" | "knossos" => Some(NilReads::Unknown),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NilReads::Strict => "strict",
            NilReads::Unknown => "unknown",
        }
    }
}

impl Format {
    /// What a read of nil means in histories of this format.
    pub fn nil_reads(self) -> NilReads {
        match self {
            Format::JepsenEdn => NilReads::Unknown,
            Format::Jsonl | Format::PorcupineKv | Format::JepsenLog => NilReads::Strict,
        }
    }
}

/// What an import produced.
#[derive(Debug, Clone)]
pub struct Imported {
    pub format: Format,
    pub records: Vec<LineRecord>,
    /// Lines skipped as bad (only when lenient; a strict import fails on the first).
    pub skipped: Vec<InputError>,
    /// Accepted with a warning (only when lenient): records whose `time` goes backwards.
    pub warnings: Vec<InputError>,
    /// Whether the records carry real times (nanoseconds). Jepsen log lines and EDN histories
    /// without `:time` get their positions instead, which order but do not measure.
    pub has_times: bool,
}

/// Imports a whole text. `file` names the source in errors.
pub fn import_text(text: &str, file: &str, format: Option<Format>, lenient: bool) -> Result<Imported, InputError> {
    let format = match format.or_else(|| detect_format(text)) {
        Some(f) => f,
        None if text.trim().is_empty() => Format::Jsonl,
        None => return Err(InputError::at(file, 1, "cannot tell the history format; name it with --format")),
    };
    let mut skipped = Vec::new();
    let (records, has_times) = match format {
        Format::Jsonl => (import_jsonl(text, file, lenient, &mut skipped)?, true),
        Format::JepsenEdn | Format::PorcupineKv => import_edn(text, file, lenient, &mut skipped)?,
        Format::JepsenLog => (import_jepsen_log(text, file, lenient, &mut skipped)?, false),
    };
    let warnings = check_time_order(&records, file, lenient)?;
    Ok(Imported { format, records, skipped, warnings, has_times })
}

/// Real-time order is the order of the records; a `time` that goes backwards says the file and
/// its times disagree about it. An error, or with `lenient` a warning per record.
fn check_time_order(records: &[LineRecord], file: &str, lenient: bool) -> Result<Vec<InputError>, InputError> {
    let mut warnings = Vec::new();
    let mut latest: Option<(u64, usize)> = None;
    for record in records {
        let time = record.record.time();
        match latest {
            Some((before, before_line)) if time < before => {
                let error = InputError::at(
                    file,
                    record.line,
                    format!(
                        "time goes backwards: {time} after {before} (line {before_line}); records must be in \
                         real-time order (--lenient accepts this with a warning)"
                    ),
                );
                if !lenient {
                    return Err(error);
                }
                warnings.push(error);
            }
            _ => latest = Some((time, record.line)),
        }
    }
    Ok(warnings)
}

/// Resolves a path given on the command line: a run directory means its `history.jsonl`.
pub fn history_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("history.jsonl")
    } else {
        path.to_path_buf()
    }
}

/// Reads and imports a file (or a run directory's history). Lines longer than
/// [`MAX_LINE_BYTES`] and bytes that are not UTF-8 are refused with their line number.
pub fn read_path(path: &Path, format: Option<Format>, lenient: bool) -> Result<Imported, CheckError> {
    let file = history_path(path);
    let text = read_to_string_bounded(&file, MAX_LINE_BYTES)?;
    Ok(import_text(&text, &file.display().to_string(), format, lenient)?)
}

fn keep_or_fail(
    result: Result<LineRecord, InputError>,
    lenient: bool,
    skipped: &mut Vec<InputError>,
    out: &mut Vec<LineRecord>,
) -> Result<(), InputError> {
    match result {
        Ok(record) => out.push(record),
        Err(error) if lenient => skipped.push(error),
        Err(error) => return Err(error),
    }
    Ok(())
}

fn import_jsonl(
    text: &str,
    file: &str,
    lenient: bool,
    skipped: &mut Vec<InputError>,
) -> Result<Vec<LineRecord>, InputError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let result = parse_record_line(trimmed)
            .map(|record| LineRecord { line: i + 1, record })
            .map_err(|m| InputError::at(file, i + 1, m));
        keep_or_fail(result, lenient, skipped, &mut out)?;
    }
    Ok(out)
}

fn keyword_name(edn: &Edn) -> Option<&str> {
    match edn.untagged() {
        Edn::Keyword(s) | Edn::Symbol(s) | Edn::Str(s) => Some(s),
        _ => None,
    }
}

fn error_string(edn: &Edn) -> String {
    match edn.to_json() {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// One EDN op map, before `jepsen.independent` tuples are split.
struct EdnOp {
    line: usize,
    map: Edn,
}

/// Returns the records and whether any op map had a `:time`.
fn import_edn(
    text: &str,
    file: &str,
    lenient: bool,
    skipped: &mut Vec<InputError>,
) -> Result<(Vec<LineRecord>, bool), InputError> {
    let mut ops = Vec::new();
    let mut parser = edn::Parser::new(text);
    loop {
        match parser.next_value() {
            Ok(None) => break,
            Ok(Some(located)) => match located.value.untagged() {
                Edn::Vector(items) | Edn::List(items) if items.iter().all(|i| matches!(i.untagged(), Edn::Map(_))) => {
                    // A whole history written as one vector: its maps carry the vector's line.
                    ops.extend(items.iter().map(|m| EdnOp { line: located.line, map: m.clone() }));
                }
                Edn::Map(_) => ops.push(EdnOp { line: located.line, map: located.value }),
                _ => {
                    let error = InputError::at(file, located.line, "expected an op map {:type .. :f .. :process ..}");
                    if lenient {
                        skipped.push(error);
                    } else {
                        return Err(error);
                    }
                }
            },
            Err((line, message)) => {
                // A syntax error leaves the parser nowhere sensible: lenient or not, stop here.
                let error = InputError::at(file, line, format!("EDN syntax error: {message}"));
                if lenient {
                    skipped.push(error);
                    break;
                }
                return Err(error);
            }
        }
    }

    let is_client = |op: &EdnOp| matches!(op.map.get("process").map(Edn::untagged), Some(Edn::Int(_)));
    // jepsen.independent: every client op's value is a [key value] tuple, and no op has :key.
    let independent = ops.iter().filter(|op| is_client(op)).all(|op| {
        op.map.get("key").is_none()
            && match op.map.get("value").map(Edn::untagged) {
                Some(Edn::Vector(tuple)) if tuple.len() == 2 => {
                    let f = op.map.get("f").and_then(keyword_name).unwrap_or("");
                    // A txn of two micro-ops is a pair too, but never a [key value] tuple.
                    f != "txn" && (f != "cas" || matches!(tuple[1].untagged(), Edn::Vector(_) | Edn::Nil))
                }
                _ => false,
            }
    }) && ops.iter().any(is_client);

    let has_times = ops.iter().any(|op| op.map.get("time").is_some());
    let mut out = Vec::new();
    // Without :time anywhere, positions stand in for times; an op map without :time in a history
    // that has them takes the time of the record before it.
    let mut last_time = 0u64;
    for (position, op) in ops.iter().enumerate() {
        let fallback_time = if has_times { last_time } else { position as u64 };
        let result = edn_op_to_record(op, position as u64, fallback_time, independent)
            .map_err(|m| InputError::at(file, op.line, m));
        if let Ok(record) = &result {
            last_time = record.time();
        }
        keep_or_fail(result.map(|record| LineRecord { line: op.line, record }), lenient, skipped, &mut out)?;
    }
    Ok((out, has_times))
}

fn edn_op_to_record(op: &EdnOp, position: u64, fallback_time: u64, independent: bool) -> Result<Record, String> {
    let map = &op.map;
    let index = match map.get("index").map(Edn::untagged) {
        Some(Edn::Int(i)) if *i >= 0 => *i as u64,
        _ => position,
    };
    let time = match map.get("time").map(Edn::untagged) {
        Some(Edn::Int(t)) if *t >= 0 => *t as u64,
        Some(Edn::Int(t)) => return Err(format!("negative :time {t}")),
        Some(_) => return Err(":time is not an integer".to_string()),
        None => fallback_time,
    };
    let f = map.get("f").and_then(keyword_name).ok_or("op map without :f")?.to_string();
    let type_name = map.get("type").and_then(keyword_name).ok_or("op map without :type")?;
    let value = map.get("value").cloned().unwrap_or(Edn::Nil);
    match map.get("process").map(Edn::untagged) {
        Some(Edn::Int(process)) if *process >= 0 => {
            let op_type = OpType::from_name(type_name).ok_or_else(|| format!("unknown :type :{type_name}"))?;
            let (key, value) = match (independent, value.untagged()) {
                (true, Edn::Vector(tuple)) if tuple.len() == 2 => (Some(tuple[0].to_json()), tuple[1].to_json()),
                _ => (map.get("key").map(Edn::to_json), value.to_json()),
            };
            Ok(Record::Op(Op {
                index,
                time,
                process: *process as u64,
                op_type,
                f,
                value,
                key,
                error: map.get("error").map(error_string),
            }))
        }
        Some(Edn::Int(process)) => Err(format!("negative process {process}")),
        Some(_) => {
            // Jepsen's nemesis (process :nemesis) becomes a fault record.
            let phase = if ["stop", "heal", "resume", "recover"].iter().any(|w| f.contains(w)) {
                FaultPhase::Stop
            } else {
                FaultPhase::Start
            };
            let family = f
                .trim_start_matches("start-")
                .trim_start_matches("stop-")
                .trim_start_matches("start")
                .trim_start_matches("stop");
            Ok(Record::Fault(Fault {
                index,
                time,
                f: if family.is_empty() { "nemesis".to_string() } else { family.to_string() },
                phase,
                targets: Vec::new(),
                grudge: None,
                detail: Some(value.to_json()),
            }))
        }
        None => Err("op map without :process".to_string()),
    }
}

fn import_jepsen_log(
    text: &str,
    file: &str,
    lenient: bool,
    skipped: &mut Vec<InputError>,
) -> Result<Vec<LineRecord>, InputError> {
    const MARKER: &str = "jepsen.util - ";
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(at) = line.find(MARKER) else {
            continue;
        };
        let rest = &line[at + MARKER.len()..];
        let mut fields = rest.split_whitespace();
        let (Some(process), Some(kind), Some(f)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        // Lines of other shapes (nemesis messages, blank fields) are not operations.
        let Ok(process) = process.parse::<u64>() else {
            continue;
        };
        let Some(op_type) = kind.strip_prefix(':').and_then(OpType::from_name) else {
            continue;
        };
        let Some(f) = f.strip_prefix(':') else {
            continue;
        };
        // The value is whatever follows the third field, possibly with spaces ("[1 2]").
        let value_text = after_fields(rest, 3);
        let value_text = if value_text.is_empty() { "nil" } else { value_text };
        let result = match edn::parse_all(value_text) {
            Ok(values) if values.len() == 1 => {
                let value = &values[0].value;
                let mut error = None;
                let mut json = value.to_json();
                if let Edn::Keyword(k) = value {
                    // :timed-out and friends: an indefinite outcome, not a value.
                    error = Some(k.clone());
                    json = Value::Null;
                }
                if op_type == OpType::Fail && f == "cas" && error.is_none() {
                    error = Some(CAS_MISMATCH.to_string());
                }
                Ok(LineRecord {
                    line: i + 1,
                    record: Record::Op(Op {
                        index: out.len() as u64,
                        time: out.len() as u64,
                        process,
                        op_type,
                        f: f.to_string(),
                        value: json,
                        key: None,
                        error,
                    }),
                })
            }
            _ => Err(InputError::at(file, i + 1, format!("cannot read the value {value_text:?}"))),
        };
        keep_or_fail(result, lenient, skipped, &mut out)?;
    }
    Ok(out)
}

/// What follows the first `n` whitespace-separated fields of `text`, trimmed.
fn after_fields(text: &str, n: usize) -> &str {
    let mut rest = text.trim_start();
    for _ in 0..n {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest[end..].trim_start();
    }
    rest.trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(imported: &Imported) -> Vec<&Op> {
        imported.records.iter().filter_map(|r| r.record.as_op()).collect()
    }

    #[test]
    fn jepsen_log_lines_become_ops_with_porcupine_semantics() {
        let text = "INFO  jepsen.util - 2\t:invoke\t:cas\t[3 0]\n\
                    something else entirely\n\
                    INFO  jepsen.util - 2   :fail  :cas    [3 0]\n\
                    INFO  jepsen.util - 1\t:info\t:write\t:timed-out\n";
        let imported = import_text(text, "etcd.log", None, false).unwrap();
        assert_eq!(imported.format, Format::JepsenLog);
        let ops = ops(&imported);
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].value, json!([3, 0]));
        assert_eq!(ops[1].error.as_deref(), Some(CAS_MISMATCH));
        assert_eq!(ops[2].op_type, OpType::Info);
        assert_eq!(ops[2].value, Value::Null);
        assert_eq!(ops[2].error.as_deref(), Some("timed-out"));
        assert_eq!(imported.records[1].line, 3);
    }

    #[test]
    fn independent_tuples_are_split_into_key_and_value() {
        let text = "{:type :invoke, :f :cas, :value [7 [1 2]], :process 0, :time 5, :index 0}\n\
                    {:type :info, :f :start, :value nil, :process :nemesis, :time 6, :index 1}\n\
                    {:type :ok, :f :cas, :value [7 [1 2]], :process 0, :time 9, :index 2}\n\
                    {:type :invoke, :f :read, :value [8 nil], :process 1, :time 10, :index 3}\n";
        let imported = import_text(text, "history.edn", None, false).unwrap();
        assert_eq!(imported.format, Format::JepsenEdn);
        let ops = ops(&imported);
        assert_eq!(ops[0].key, Some(json!(7)));
        assert_eq!(ops[0].value, json!([1, 2]));
        assert_eq!(ops[2].key, Some(json!(8)));
        assert_eq!(ops[2].value, Value::Null);
        assert!(matches!(imported.records[1].record, Record::Fault(ref f) if f.phase == FaultPhase::Start));
    }

    #[test]
    fn plain_register_histories_are_not_mistaken_for_independent_ones() {
        let text =
            "[{:type :invoke, :f :cas, :value [1 2], :process 0}\n {:type :invoke, :f :read, :value nil, :process 1}]";
        let imported = import_text(text, "h.edn", Some(Format::JepsenEdn), false).unwrap();
        let ops = ops(&imported);
        assert_eq!(ops[0].key, None);
        assert_eq!(ops[0].value, json!([1, 2]));
    }

    #[test]
    fn porcupine_kv_maps_carry_their_key() {
        let text = "{:process 0, :type :invoke, :f :append, :key \"0\", :value \"x 0 0 y\"}\n";
        let imported = import_text(text, "c01.txt", None, false).unwrap();
        assert_eq!(imported.format, Format::PorcupineKv);
        assert_eq!(ops(&imported)[0].key, Some(json!("0")));
    }

    #[test]
    fn lenient_import_skips_and_counts_bad_lines() {
        let text =
            "{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"read\",\"value\":null}\nnot json\n";
        assert!(import_text(text, "h", None, false).is_err());
        let imported = import_text(text, "h", None, true).unwrap();
        assert_eq!(imported.records.len(), 1);
        assert_eq!(imported.skipped.len(), 1);
        assert_eq!(imported.skipped[0].line, 2);
    }
}
