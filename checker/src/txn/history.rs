//! Transactions as typed data: `:f :txn` ops whose value is a list of micro-ops, read from history
//! records one at a time.
//!
//! The builder pairs invocations with completions itself (the rules are those of `pairing.rs`)
//! instead of going through `pairing::pair`, because it converts each record into interned micro-ops
//! as it arrives: a million transactions kept as `serde_json::Value`s, twice (invocation and
//! completion), would not fit the checker's memory budget.

use hashbrown::HashMap;
use serde::Serialize;
use serde_json::Value;
use std::fmt::{self, Write};

use crate::error::InputError;
use crate::history::{LineRecord, OpType, Record};

/// The two transactional workloads, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxnModel {
    /// Each key is a list; `[append k v]` appends, `[r k [v…]]` reads the whole list.
    ListAppend,
    /// Each key is a register; `[w k v]` writes, `[r k v]` reads.
    RwRegister,
}

impl TxnModel {
    pub const NAMES: &'static [&'static str] = &["list-append", "rw-register"];

    pub fn from_name(name: &str) -> Option<TxnModel> {
        match name {
            "list-append" | "append" => Some(TxnModel::ListAppend),
            "rw-register" => Some(TxnModel::RwRegister),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TxnModel::ListAppend => "list-append",
            TxnModel::RwRegister => "rw-register",
        }
    }
}

/// A key or a value: an integer or a string (what Jepsen's generators and ours write).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scalar {
    Int(i64),
    Str(Box<str>),
}

impl Scalar {
    fn from_json(value: &Value) -> Option<Scalar> {
        match value {
            Value::Number(n) => n.as_i64().map(Scalar::Int),
            Value::String(s) => Some(Scalar::Str(s.as_str().into())),
            _ => None,
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Str(s) => write!(f, "{s:?}"),
        }
    }
}

pub type KeyId = u32;
pub type ValueId = u32;
/// A transaction's index in `TxnHistory::txns` (and its node in the dependency graph).
pub type TxnId = u32;

#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<Scalar, u32>,
    items: Vec<Scalar>,
}

impl Interner {
    fn intern(&mut self, scalar: Scalar) -> u32 {
        if let Some(&id) = self.ids.get(&scalar) {
            return id;
        }
        let id = self.items.len() as u32;
        self.items.push(scalar.clone());
        self.ids.insert(scalar, id);
        id
    }
}

/// What a read saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Not known: the read of an invocation, an aborted or an indeterminate transaction.
    Unknown,
    /// A list-append read: the whole list (an `ok` `nil` is the empty list).
    List(Vec<ValueId>),
    /// A register read: the value, `None` when never written.
    Register(Option<ValueId>),
}

/// One micro-op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mop {
    Append { key: KeyId, value: ValueId },
    Write { key: KeyId, value: ValueId },
    Read { key: KeyId, observed: Observed },
}

impl Mop {
    pub fn key(&self) -> KeyId {
        match self {
            Mop::Append { key, .. } | Mop::Write { key, .. } | Mop::Read { key, .. } => *key,
        }
    }
}

/// What became of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TxnStatus {
    /// `ok`: it committed, with the reads' results.
    Committed,
    /// `fail`: it surely did not commit.
    Aborted,
    /// `info` or never completed: it may have committed; its reads are not known.
    Indeterminate,
}

#[derive(Debug, Clone)]
pub struct Txn {
    pub process: u64,
    pub status: TxnStatus,
    pub mops: Vec<Mop>,
    /// Position of the invocation among the history's records (real-time order).
    pub call_position: u64,
    pub call_time: u64,
    pub call_line: usize,
    /// The completion's position, time and line, for `ok` and `fail` (an `info` never returns).
    pub return_position: Option<u64>,
    pub return_time: Option<u64>,
    pub return_line: Option<usize>,
}

impl Txn {
    /// Whether the transaction's writes may be in the database (committed, or maybe).
    pub fn may_have_committed(&self) -> bool {
        self.status != TxnStatus::Aborted
    }
}

/// A whole transactional history, interned.
#[derive(Debug, Clone)]
pub struct TxnHistory {
    pub model: TxnModel,
    /// Names the source in messages.
    pub file: String,
    pub txns: Vec<Txn>,
    pub keys: Vec<Scalar>,
    pub values: Vec<Scalar>,
    /// Fault records seen (they do not take part in the check).
    pub faults: usize,
    /// Records read.
    pub events: usize,
}

impl TxnHistory {
    pub fn key(&self, key: KeyId) -> &Scalar {
        &self.keys[key as usize]
    }

    pub fn value(&self, value: ValueId) -> &Scalar {
        &self.values[value as usize]
    }

    /// A micro-op as Jepsen writes it: `[:append x 3]`, `[:r x [1 2 3]]`, `[:w x 1]`, `[:r x nil]`.
    pub fn describe_mop(&self, mop: &Mop) -> String {
        match mop {
            Mop::Append { key, value } => format!("[:append {} {}]", self.key(*key), self.value(*value)),
            Mop::Write { key, value } => format!("[:w {} {}]", self.key(*key), self.value(*value)),
            Mop::Read { key, observed } => format!("[:r {} {}]", self.key(*key), self.describe_observed(observed)),
        }
    }

    pub fn describe_observed(&self, observed: &Observed) -> String {
        match observed {
            Observed::Unknown | Observed::Register(None) => "nil".to_string(),
            Observed::Register(Some(v)) => self.value(*v).to_string(),
            Observed::List(list) => self.describe_list(list),
        }
    }

    pub fn describe_list(&self, list: &[ValueId]) -> String {
        let mut text = String::from("[");
        for (i, v) in list.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            let _ = write!(text, "{}", self.value(*v));
        }
        text.push(']');
        text
    }

    /// The whole transaction: `[[:append x 1] [:r y [2]]]`.
    pub fn describe_txn(&self, txn: TxnId) -> String {
        let mops: Vec<String> = self.txns[txn as usize].mops.iter().map(|m| self.describe_mop(m)).collect();
        format!("[{}]", mops.join(" "))
    }

    /// "T3 (process 1, lines 5–9)".
    pub fn name_txn(&self, txn: TxnId) -> String {
        let t = &self.txns[txn as usize];
        match t.return_line {
            Some(line) => format!("T{txn} (process {}, lines {}–{})", t.process, t.call_line, line),
            None => format!("T{txn} (process {}, line {}, no completion)", t.process, t.call_line),
        }
    }
}

/// The part of an op record the builder needs besides its value.
struct OpHead {
    op_type: OpType,
    process: u64,
    time: u64,
    line: usize,
}

/// A transaction's micro-ops as they came: a JSON value (any importer) or read straight off a line.
enum MopsIn<'a> {
    Json(&'a Value),
    Wire(Vec<wire::Mop<'a>>),
}

/// A micro-op's third element.
enum Arg {
    Null,
    Scalar(Scalar),
    List(Vec<Scalar>),
}

/// Borrowed serde shapes of a transaction line, for `push_json_line`. Anything they do not accept
/// falls back to the general parser.
mod wire {
    use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
    use serde::Deserialize;
    use std::borrow::Cow;
    use std::fmt;
    use std::marker::PhantomData;

    #[derive(Deserialize)]
    pub struct Line<'a> {
        #[serde(rename = "type", borrow)]
        pub kind: Cow<'a, str>,
        #[serde(default)]
        pub process: Option<u64>,
        #[serde(default)]
        pub time: u64,
        #[serde(default, borrow)]
        pub f: Option<Cow<'a, str>>,
        #[serde(default)]
        pub key: Option<IgnoredAny>,
        #[serde(default, borrow)]
        pub value: Option<Vec<Mop<'a>>>,
    }

    pub enum Scalar<'a> {
        Int(i64),
        Str(Cow<'a, str>),
    }

    impl From<Scalar<'_>> for super::Scalar {
        fn from(scalar: Scalar<'_>) -> super::Scalar {
            match scalar {
                Scalar::Int(i) => super::Scalar::Int(i),
                Scalar::Str(s) => super::Scalar::Str(s.as_ref().into()),
            }
        }
    }

    pub enum Arg<'a> {
        Null,
        Scalar(Scalar<'a>),
        List(Vec<Scalar<'a>>),
    }

    pub struct Mop<'a> {
        pub kind: Cow<'a, str>,
        pub key: Scalar<'a>,
        pub arg: Arg<'a>,
    }

    struct ScalarVisitor<'a>(PhantomData<&'a ()>);

    impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
        type Value = Scalar<'a>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer or a string")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Scalar::Int(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v).map(Scalar::Int).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Scalar::Str(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Scalar::Str(Cow::Owned(v.to_string())))
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(ScalarVisitor(PhantomData))
        }
    }

    struct ArgVisitor<'a>(PhantomData<&'a ()>);

    impl<'de: 'a, 'a> Visitor<'de> for ArgVisitor<'a> {
        type Value = Arg<'a>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("null, an integer, a string or a list of them")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Arg::Null)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Arg::Null)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            ScalarVisitor(PhantomData).visit_i64(v).map(Arg::Scalar)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            ScalarVisitor(PhantomData).visit_u64(v).map(Arg::Scalar)
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Arg::Scalar(Scalar::Str(Cow::Borrowed(v))))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Arg::Scalar(Scalar::Str(Cow::Owned(v.to_string()))))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(item) = seq.next_element::<Scalar<'a>>()? {
                list.push(item);
            }
            Ok(Arg::List(list))
        }
    }

    struct MopVisitor<'a>(PhantomData<&'a ()>);

    impl<'de: 'a, 'a> Visitor<'de> for MopVisitor<'a> {
        type Value = Mop<'a>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("[kind key value]")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let kind: Cow<'a, str> = match seq.next_element::<&'de str>() {
                Ok(Some(kind)) => Cow::Borrowed(kind),
                _ => return Err(de::Error::custom("a micro-op's kind is a plain name")),
            };
            let key: Scalar<'a> = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
            let arg = seq.next_element_seed(ArgSeed(PhantomData))?.unwrap_or(Arg::Null);
            if seq.next_element::<IgnoredAny>()?.is_some() {
                return Err(de::Error::invalid_length(4, &self));
            }
            Ok(Mop { kind, key, arg })
        }
    }

    struct ArgSeed<'a>(PhantomData<&'a ()>);

    impl<'de: 'a, 'a> de::DeserializeSeed<'de> for ArgSeed<'a> {
        type Value = Arg<'a>;
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_any(ArgVisitor(PhantomData))
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Mop<'a> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_seq(MopVisitor(PhantomData))
        }
    }
}

/// Reads records one at a time into a `TxnHistory`.
pub struct TxnHistoryBuilder {
    model: TxnModel,
    file: String,
    keys: Interner,
    values: Interner,
    txns: Vec<Txn>,
    /// process -> its outstanding transaction
    open: HashMap<u64, usize>,
    /// Per key, the last list read of it, interned (see `intern_list`).
    last_list: Vec<Vec<(Scalar, ValueId)>>,
    faults: usize,
    events: usize,
}

impl TxnHistoryBuilder {
    /// `file` names the source in errors.
    pub fn new(model: TxnModel, file: impl Into<String>) -> Self {
        TxnHistoryBuilder {
            model,
            file: file.into(),
            keys: Interner::default(),
            values: Interner::default(),
            txns: Vec::new(),
            open: HashMap::new(),
            last_list: Vec::new(),
            faults: 0,
            events: 0,
        }
    }

    fn error(&self, line: usize, message: impl Into<String>) -> InputError {
        InputError::at(&self.file, line, message)
    }

    /// Takes one record. Errors name the file and line; nothing here panics on bad input.
    pub fn push(&mut self, record: &LineRecord) -> Result<(), InputError> {
        match &record.record {
            Record::Fault(_) => {
                self.events += 1;
                self.faults += 1;
                Ok(())
            }
            Record::Op(op) => {
                let head = OpHead { op_type: op.op_type, process: op.process, time: op.time, line: record.line };
                self.push_op(head, &op.f, op.key.is_some(), MopsIn::Json(&op.value))
            }
        }
    }

    /// Takes one line of our JSON Lines. Transaction lines are read straight into micro-ops,
    /// without building `serde_json::Value`s (most of the time of reading a large history); any
    /// line that does not fit that shape goes through the general record parser, so errors read
    /// the same either way.
    pub fn push_json_line(&mut self, text: &str, line: usize) -> Result<(), InputError> {
        if let Ok(wire) = serde_json::from_str::<wire::Line>(text) {
            match (&*wire.kind, wire.process, wire.f.as_deref(), wire.value) {
                ("fault", ..) => {
                    self.events += 1;
                    self.faults += 1;
                    return Ok(());
                }
                (kind, Some(process), Some(f), Some(mops)) => {
                    if let Some(op_type) = OpType::from_name(kind) {
                        let head = OpHead { op_type, process, time: wire.time, line };
                        return self.push_op(head, f, wire.key.is_some(), MopsIn::Wire(mops));
                    }
                }
                _ => {}
            }
        }
        let record = crate::history::parse_record_line(text).map_err(|m| self.error(line, m))?;
        self.push(&LineRecord { line, record })
    }

    fn push_op(&mut self, head: OpHead, f: &str, has_key: bool, mops: MopsIn) -> Result<(), InputError> {
        let OpHead { op_type, process, time, line } = head;
        let position = self.events as u64;
        self.events += 1;
        if f != "txn" {
            return Err(self.error(
                line,
                format!("op :{f} is not a transaction; the {} checker reads :txn ops only", self.model.name()),
            ));
        }
        if has_key {
            return Err(self.error(line, "a :txn op carries its keys in its micro-ops, not in \"key\""));
        }
        match op_type {
            OpType::Invoke => {
                if let Some(&open) = self.open.get(&process) {
                    return Err(self.error(
                        line,
                        format!(
                            "process {process} invokes a txn while its txn from line {} is still outstanding",
                            self.txns[open].call_line
                        ),
                    ));
                }
                let mops = self.parse_mops(mops, false, line)?;
                self.open.insert(process, self.txns.len());
                self.txns.push(Txn {
                    process,
                    status: TxnStatus::Indeterminate,
                    mops,
                    call_position: position,
                    call_time: time,
                    call_line: line,
                    return_position: None,
                    return_time: None,
                    return_line: None,
                });
            }
            completion => {
                let Some(open) = self.open.remove(&process) else {
                    return Err(self.error(
                        line,
                        format!("{} of a txn on process {process} without an invocation", completion.as_str()),
                    ));
                };
                if completion == OpType::Ok {
                    let mops = self.parse_mops(mops, true, line)?;
                    self.check_same_shape(open, &mops, line)?;
                    self.txns[open].mops = mops;
                }
                let txn = &mut self.txns[open];
                txn.status = match completion {
                    OpType::Ok => TxnStatus::Committed,
                    OpType::Fail => TxnStatus::Aborted,
                    _ => TxnStatus::Indeterminate,
                };
                if completion != OpType::Info {
                    txn.return_position = Some(position);
                    txn.return_time = Some(time);
                    txn.return_line = Some(line);
                }
            }
        }
        Ok(())
    }

    /// An `ok` completion must carry the invocation's micro-ops, with the reads filled in.
    fn check_same_shape(&self, open: usize, completed: &[Mop], line: usize) -> Result<(), InputError> {
        let invoked = &self.txns[open].mops;
        let same = invoked.len() == completed.len()
            && invoked.iter().zip(completed).all(|(a, b)| match (a, b) {
                (Mop::Read { key: k1, .. }, Mop::Read { key: k2, .. }) => k1 == k2,
                _ => a == b,
            });
        if same {
            Ok(())
        } else {
            Err(self.error(
                line,
                format!(
                    "the completion's micro-ops are not those invoked at line {} (same kinds, keys and written values, in order)",
                    self.txns[open].call_line
                ),
            ))
        }
    }

    fn parse_mops(&mut self, mops: MopsIn, completed: bool, line: usize) -> Result<Vec<Mop>, InputError> {
        let parsed: Result<Vec<Mop>, (usize, String)> = match mops {
            MopsIn::Json(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.parse_json_mop(item, completed).map_err(|m| (i, m)))
                .collect(),
            MopsIn::Json(value) => {
                return Err(self.error(line, format!("a txn's value is a list of micro-ops, not {value}")))
            }
            MopsIn::Wire(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let arg = match item.arg {
                        wire::Arg::Null => Arg::Null,
                        wire::Arg::Scalar(s) => Arg::Scalar(s.into()),
                        wire::Arg::List(list) => Arg::List(list.into_iter().map(Scalar::from).collect()),
                    };
                    self.make_mop(&item.kind, item.key.into(), arg, completed).map_err(|m| (i, m))
                })
                .collect(),
        };
        parsed.map_err(|(i, m)| self.error(line, format!("micro-op {i}: {m}")))
    }

    fn parse_json_mop(&mut self, item: &Value, completed: bool) -> Result<Mop, String> {
        let parts = match item {
            Value::Array(parts) if parts.len() == 3 || parts.len() == 2 => parts,
            other => return Err(format!("expected [kind key value], got {other}")),
        };
        let kind = parts[0].as_str().ok_or_else(|| format!("the kind {} is not a name", parts[0]))?;
        let key =
            Scalar::from_json(&parts[1]).ok_or_else(|| format!("the key {} is not an integer or string", parts[1]))?;
        let arg = match parts.get(2).unwrap_or(&Value::Null) {
            Value::Null => Arg::Null,
            Value::Array(list) => Arg::List(
                list.iter()
                    .map(|v| Scalar::from_json(v).ok_or_else(|| format!("the value {v} is not an integer or string")))
                    .collect::<Result<_, _>>()?,
            ),
            v => Arg::Scalar(Scalar::from_json(v).ok_or_else(|| format!("the value {v} is not an integer or string"))?),
        };
        self.make_mop(kind, key, arg, completed)
    }

    /// Interns a list read. Reads of a key are mostly prefixes of one another, so the last list
    /// read of each key is remembered and the elements it shares with the new one are not looked
    /// up again (the lookups, into a table of every value, were most of the reading time).
    fn intern_list(&mut self, key: KeyId, list: Vec<Scalar>) -> Vec<ValueId> {
        if self.last_list.len() <= key as usize {
            self.last_list.resize_with(key as usize + 1, Vec::new);
        }
        let cache = &mut self.last_list[key as usize];
        let mut ids = Vec::with_capacity(list.len());
        for (i, value) in list.into_iter().enumerate() {
            match cache.get(i) {
                Some((known, id)) if *known == value => ids.push(*id),
                _ => {
                    let id = self.values.intern(value.clone());
                    cache.truncate(i);
                    cache.push((value, id));
                    ids.push(id);
                }
            }
        }
        ids
    }

    fn make_mop(&mut self, kind: &str, key: Scalar, arg: Arg, completed: bool) -> Result<Mop, String> {
        let model = self.model;
        let scalar = |arg: Arg| match arg {
            Arg::Scalar(s) => Ok(s),
            Arg::Null => Err("the value null is not an integer or string".to_string()),
            Arg::List(_) => Err("the value is a list, not an integer or string".to_string()),
        };
        match (kind, model) {
            ("append", TxnModel::ListAppend) => {
                let value = scalar(arg)?;
                Ok(Mop::Append { key: self.keys.intern(key), value: self.values.intern(value) })
            }
            ("w" | "write", TxnModel::RwRegister) => {
                let value = scalar(arg)?;
                Ok(Mop::Write { key: self.keys.intern(key), value: self.values.intern(value) })
            }
            ("r" | "read", _) => {
                let observed = if !completed {
                    Observed::Unknown
                } else {
                    match (model, arg) {
                        (TxnModel::ListAppend, Arg::Null) => Observed::List(Vec::new()),
                        (TxnModel::ListAppend, Arg::List(list)) => {
                            let key = self.keys.intern(key);
                            return Ok(Mop::Read { key, observed: Observed::List(self.intern_list(key, list)) });
                        }
                        (TxnModel::ListAppend, Arg::Scalar(s)) => {
                            return Err(format!("a list-append read returns a list, not {s}"))
                        }
                        (TxnModel::RwRegister, Arg::Null) => Observed::Register(None),
                        (TxnModel::RwRegister, Arg::Scalar(v)) => Observed::Register(Some(self.values.intern(v))),
                        (TxnModel::RwRegister, Arg::List(_)) => {
                            return Err("an rw-register read returns one value, not a list".to_string())
                        }
                    }
                };
                Ok(Mop::Read { key: self.keys.intern(key), observed })
            }
            ("append" | "w" | "write", _) => Err(format!("the micro-op kind :{kind} is not part of {}", model.name())),
            _ => Err(format!(
                "unknown micro-op kind :{kind} (one of :append, :r for list-append; :w, :r for rw-register)"
            )),
        }
    }

    /// The history. Transactions still open stay indeterminate (they may have committed).
    /// A value appended (or written) twice to one key is an error naming both lines: the checker
    /// tells versions apart by their values, as Elle does.
    pub fn finish(self) -> Result<TxnHistory, InputError> {
        let mut seen: HashMap<(KeyId, ValueId), usize> = HashMap::new();
        for (t, txn) in self.txns.iter().enumerate() {
            for mop in &txn.mops {
                if let Mop::Append { key, value } | Mop::Write { key, value } = mop {
                    if let Some(&first) = seen.get(&(*key, *value)) {
                        let verb = if matches!(mop, Mop::Append { .. }) { "appended" } else { "written" };
                        return Err(InputError::at(
                            &self.file,
                            txn.call_line,
                            format!(
                                "the value {} is {verb} twice to key {} (also by the txn invoked at line {}); \
                                 values must be unique per key",
                                self.values.items[*value as usize],
                                self.keys.items[*key as usize],
                                self.txns[first].call_line
                            ),
                        ));
                    }
                    seen.insert((*key, *value), t);
                }
            }
        }
        Ok(TxnHistory {
            model: self.model,
            file: self.file,
            txns: self.txns,
            keys: self.keys.items,
            values: self.values.items,
            faults: self.faults,
            events: self.events,
        })
    }
}

/// Builds a history from records already in memory.
pub fn history_from_records(records: &[LineRecord], model: TxnModel, file: &str) -> Result<TxnHistory, InputError> {
    let mut builder = TxnHistoryBuilder::new(model, file);
    for record in records {
        builder.push(record)?;
    }
    builder.finish()
}
