//! Sequential models: typed operations and a pure `step`.
//!
//! Every model here describes ONE object (a register, a string, a set, a stream). Histories of many
//! keys are checked per key (P-compositionality) or, with `--no-partition`, with [`Keyed`], the
//! product of one object per key.
//!
//! Converting a completed operation into a model op is where the reductions happen:
//! - a `fail` had no effect and tells nothing: dropped — unless its error says the compare failed
//!   (`cas-mismatch`), which is an observation that the value was not the expected one;
//! - an `info` (or never-completed) read constrains nothing: dropped;
//! - an `info` mutation may have happened: kept, but optional (it may linearise anywhere after its
//!   invocation, or never).

use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

use crate::import::CAS_MISMATCH;
use crate::ladder::RegisterView;

/// Errors of an expected-version append that say the version did not match, like `cas-mismatch`.
pub const VERSION_MISMATCH: &str = "version-mismatch";

/// A sequential specification of one object.
pub trait Model: Sync {
    type State: Clone + Eq + Hash + Debug + Send + Sync;
    type Op: Clone + Debug + Send + Sync + Eq + Hash;

    fn init(&self) -> Self::State;

    /// What `op` (with the result it observed) does in `state`. Pure: no IO, no hidden state.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Step<Self::State>;

    /// True if `op` never changes any state it is legal in (a read, an observed compare failure).
    /// The search linearises such ops as soon as they are legal, without trying alternatives.
    /// A write that happens to leave the current value as it is does not qualify.
    fn is_read_only(&self, _op: &Self::Op) -> bool {
        false
    }

    /// True if `op` only ever grows the state (an append, a set add): then in a partition whose
    /// ops all grow or read, every later state extends the current one.
    fn only_grows(&self, _op: &Self::Op) -> bool {
        false
    }

    /// True if `op` is legal in every state and sets its footprint's state to a value that does not
    /// depend on the state before (a blind write, a put). Lets the search skip linearising it
    /// right after an optional op of the same footprint, whose effect it would erase.
    fn overwrites(&self, _op: &Self::Op) -> bool {
        false
    }

    /// For a read-only `op`: could a state that extends `state` make it legal? `false` lets the
    /// search drop a configuration whose state a pending read can never see again (in a
    /// partition where every op grows or reads). The default never prunes.
    fn may_grow_into(&self, _state: &Self::State, _op: &Self::Op) -> bool {
        true
    }

    /// Rewrites a history's ops (all of them, before the search) into equivalent ones that are
    /// cheaper to search, returning the model to search them with, or `None` if nothing changed.
    /// Must keep every op's legality in every reachable state (see `Register`'s).
    fn canonicalize(&self, _ops: &mut [Self::Op]) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// Which independent part of the state `op` touches (the key, for [`Keyed`]). The state must
    /// be a product of one part per footprint, and an op's legality and effect must depend on and
    /// change its footprint's part only. One object: always 0. The search uses it to sharpen
    /// growth pruning (an overwrite of another key cannot undo this key's growth) and for
    /// conflict-directed backjumping (a key that cannot go on fails whatever the others did).
    fn footprint(&self, _op: &Self::Op) -> u32 {
        0
    }

    /// The part of `state` that ops of `footprint` see, as a state: two states restrict to equal
    /// states exactly when they agree on that part (e.g. every other part set to its initial
    /// value). One object: the state itself.
    fn restrict(&self, state: &Self::State, _footprint: u32) -> Self::State {
        state.clone()
    }

    /// Heap bytes `state` holds beyond its own `size_of`, for the search's memory budget (which
    /// must count what the search really keeps, or a search of big states runs far past it). Data
    /// `state` shares with `base` (an `Arc` both point to) is not counted: the search counts each
    /// state it keeps once, and `base` is one it keeps, which counted that data already. `None`:
    /// count everything. Plain-data states (a register): 0.
    fn heap_bytes(&self, _state: &Self::State, _base: Option<&Self::State>) -> u64 {
        0
    }

    /// Turns one completed operation into a model op, dropping those that constrain nothing.
    fn convert(&self, input: &OpInput<'_>, values: &mut Interner) -> Result<Converted<Self::Op>, String>;

    /// For registers: what the op does to the value or saw of it, so stale reads can be measured
    /// (`ladder::staleness`). `None` for ops and models that are not register-like.
    fn register_view(&self, _op: &Self::Op) -> Option<RegisterView> {
        None
    }

    /// For registers: the initial value, as `register_view` names values.
    fn register_initial(&self) -> Option<u32> {
        None
    }

    fn describe_op(&self, op: &Self::Op, values: &Interner) -> String;
    fn describe_state(&self, state: &Self::State, values: &Interner) -> String;

    /// For an explanation: why `op` is illegal in `state`, when the whole state and the whole
    /// result are too long to compare by eye (e.g. which elements a set read lacks).
    fn describe_mismatch(&self, _state: &Self::State, _op: &Self::Op, _values: &Interner) -> Option<String> {
        None
    }
}

/// The result of applying an op to a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<S> {
    /// The op is impossible in this state (e.g. a read of another value).
    Illegal,
    /// The op is possible and leaves the state as it is (reads): no new state to build or hash.
    Unchanged,
    /// The op is possible and leads to this state.
    To(S),
}

impl<S: Clone> Step<S> {
    /// The state after the step, `None` if illegal.
    pub fn apply(self, state: &S) -> Option<S> {
        match self {
            Step::Illegal => None,
            Step::Unchanged => Some(state.clone()),
            Step::To(next) => Some(next),
        }
    }
}

/// What the allocator spends on an allocation of `payload` bytes: glibc's malloc keeps an 8-byte
/// header and rounds chunks to 16 bytes, 32 at least. An estimate for [`Model::heap_bytes`].
pub fn allocation_bytes(payload: usize) -> u64 {
    if payload == 0 {
        return 0;
    }
    (payload + 8).next_multiple_of(16).max(32) as u64
}

fn allowed<S>(possible: bool) -> Step<S> {
    if possible {
        Step::Unchanged
    } else {
        Step::Illegal
    }
}

/// How an operation ended, as the checker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail,
    /// `info`, or no completion before the end of the history.
    Unknown,
}

/// One operation, paired (invocation and completion), as the models see it.
#[derive(Debug, Clone, Copy)]
pub struct OpInput<'a> {
    pub f: &'a str,
    pub invoke_value: &'a Value,
    pub outcome: Outcome,
    /// The completion's value (`null` when there is no completion).
    pub result_value: &'a Value,
    pub error: Option<&'a str>,
}

impl OpInput<'_> {
    /// The value that describes the op: the completion's when it has one, else the invocation's.
    fn value(&self) -> &Value {
        if self.outcome == Outcome::Ok || !self.result_value.is_null() {
            self.result_value
        } else {
            self.invoke_value
        }
    }

    fn compare_failed(&self) -> bool {
        self.outcome == Outcome::Fail && matches!(self.error, Some(CAS_MISMATCH) | Some(VERSION_MISMATCH))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Converted<O> {
    /// The op constrains nothing (a failed write, an indefinite read).
    Drop,
    /// `required`: the op surely happened and must be linearised; otherwise it may be left out.
    Keep { op: O, required: bool },
}

/// Interns JSON values as small integers so states and ops compare and hash cheaply.
/// Id 0 is always `null`.
#[derive(Debug, Clone)]
pub struct Interner {
    ids: HashMap<String, u32>,
    texts: Vec<String>,
}

impl Default for Interner {
    fn default() -> Self {
        let mut interner = Interner { ids: HashMap::new(), texts: Vec::new() };
        interner.intern(&Value::Null);
        interner
    }
}

impl Interner {
    pub const NULL: u32 = 0;

    pub fn intern(&mut self, value: &Value) -> u32 {
        let text = value.to_string();
        if let Some(&id) = self.ids.get(&text) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.ids.insert(text.clone(), id);
        self.texts.push(text);
        id
    }

    pub fn text(&self, id: u32) -> &str {
        self.texts.get(id as usize).map(String::as_str).unwrap_or("?")
    }
}

fn pair(value: &Value, what: &str) -> Result<(Value, Value), String> {
    match value {
        Value::Array(items) if items.len() == 2 => Ok((items[0].clone(), items[1].clone())),
        other => Err(format!("{what} value must be [from, to], got {other}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Registers

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    Read(u32),
    Write(u32),
    Cas {
        from: u32,
        to: u32,
    },
    /// A cas whose compare was observed to fail: the value was not `from`.
    CasMismatch {
        from: u32,
    },
}

/// A read/write register, or (with `allow_cas`) a compare-and-set register.
#[derive(Debug, Clone)]
pub struct Register {
    pub initial: u32,
    pub allow_cas: bool,
}

impl Register {
    /// Stands for every value no op of the history observes (see `canonicalize`).
    pub const UNOBSERVED: u32 = u32::MAX - 1;
}

impl Model for Register {
    type State = u32;
    type Op = RegisterOp;

    fn init(&self) -> u32 {
        self.initial
    }

    fn step(&self, state: &u32, op: &RegisterOp) -> Step<u32> {
        match *op {
            RegisterOp::Read(v) => allowed(v == *state),
            RegisterOp::Write(v) => Step::To(v),
            RegisterOp::Cas { from, to } if from == *state => Step::To(to),
            RegisterOp::Cas { .. } => Step::Illegal,
            RegisterOp::CasMismatch { from } => allowed(from != *state),
        }
    }

    fn is_read_only(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Read(_) | RegisterOp::CasMismatch { .. })
    }

    fn overwrites(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Write(_))
    }

    /// Values no op observes (never read by an ok read, never the `from` of a cas) are
    /// indistinguishable: in a state holding one, every read and every cas is illegal and every
    /// observed compare failure legal. They all become [`Register::UNOBSERVED`]. With unique
    /// written values (Jepsen's register workload) that turns the indefinite writes nobody read
    /// into identical ops, which the search then tries once instead of in every subset.
    fn canonicalize(&self, ops: &mut [RegisterOp]) -> Option<Register> {
        let mut observed = std::collections::HashSet::new();
        for op in ops.iter() {
            match *op {
                RegisterOp::Read(v) => observed.insert(v),
                RegisterOp::Cas { from, .. } | RegisterOp::CasMismatch { from } => observed.insert(from),
                RegisterOp::Write(_) => false,
            };
        }
        let canonical = |v: u32| if observed.contains(&v) { v } else { Register::UNOBSERVED };
        let mut changed = canonical(self.initial) != self.initial;
        for op in ops.iter_mut() {
            let rewritten = match *op {
                RegisterOp::Write(v) => RegisterOp::Write(canonical(v)),
                RegisterOp::Cas { from, to } => RegisterOp::Cas { from, to: canonical(to) },
                other => other,
            };
            changed |= rewritten != *op;
            *op = rewritten;
        }
        changed.then(|| Register { initial: canonical(self.initial), allow_cas: self.allow_cas })
    }

    fn convert(&self, input: &OpInput<'_>, values: &mut Interner) -> Result<Converted<RegisterOp>, String> {
        let keep = |op, required| Ok(Converted::Keep { op, required });
        match (input.f, input.outcome) {
            ("read", Outcome::Ok) => keep(RegisterOp::Read(values.intern(input.result_value)), true),
            ("read", _) => Ok(Converted::Drop),
            ("write", Outcome::Fail) => Ok(Converted::Drop),
            ("write", outcome) => keep(RegisterOp::Write(values.intern(input.value())), outcome == Outcome::Ok),
            ("cas", _) if !self.allow_cas => Err("the register model has no cas; use cas-register".into()),
            ("cas", Outcome::Fail) if input.compare_failed() => {
                let (from, _) = pair(input.value(), "cas")?;
                keep(RegisterOp::CasMismatch { from: values.intern(&from) }, true)
            }
            ("cas", Outcome::Fail) => Ok(Converted::Drop),
            ("cas", outcome) => {
                let (from, to) = pair(input.value(), "cas")?;
                keep(RegisterOp::Cas { from: values.intern(&from), to: values.intern(&to) }, outcome == Outcome::Ok)
            }
            (f, _) => Err(format!(
                "unknown op :{f} for a register (read, write{})",
                if self.allow_cas { ", cas" } else { "" }
            )),
        }
    }

    fn register_view(&self, op: &RegisterOp) -> Option<RegisterView> {
        match *op {
            RegisterOp::Read(v) => Some(RegisterView::Observes(v)),
            RegisterOp::Write(v) | RegisterOp::Cas { to: v, .. } => Some(RegisterView::Sets(v)),
            RegisterOp::CasMismatch { .. } => None,
        }
    }

    fn register_initial(&self) -> Option<u32> {
        Some(self.initial)
    }

    fn describe_op(&self, op: &RegisterOp, values: &Interner) -> String {
        match *op {
            RegisterOp::Read(v) => format!("read -> {}", values.text(v)),
            RegisterOp::Write(v) => format!("write {}", values.text(v)),
            RegisterOp::Cas { from, to } => {
                format!("cas {} -> {}", values.text(from), values.text(to))
            }
            RegisterOp::CasMismatch { from } => {
                format!("cas from {} (compare failed)", values.text(from))
            }
        }
    }

    fn describe_state(&self, state: &u32, values: &Interner) -> String {
        if *state == Register::UNOBSERVED {
            return "(a value no op observed)".to_string();
        }
        values.text(*state).to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// porcupine's string key-value store: get / put / append on one string.

/// A string with a polynomial hash kept alongside, so that appending updates the hash in O(1)
/// from the two parts' hashes, and hashing a state (which the search does for every new state) does
/// not read the whole string. Equality still compares the text, unless both share it. The text is
/// shared, so that cloning a state (a product of many keys' strings, for `Keyed`) copies no text.
#[derive(Debug, Clone)]
pub struct HashedString {
    hash: u64,
    /// HASH_BASE to the power of the text's length (wrapping).
    power: u64,
    text: std::sync::Arc<str>,
}

const HASH_BASE: u64 = 0x100_0000_01B3;

impl HashedString {
    pub fn new(text: String) -> Self {
        let (mut hash, mut power) = (0u64, 1u64);
        for byte in text.bytes() {
            hash = hash.wrapping_mul(HASH_BASE).wrapping_add(byte as u64 + 1);
            power = power.wrapping_mul(HASH_BASE);
        }
        HashedString { hash, power, text: text.into() }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Heap bytes of the text (its `Arc`'s two counters too), unless `base` shares it.
    fn heap_bytes(&self, base: Option<&HashedString>) -> u64 {
        if base.is_some_and(|b| std::sync::Arc::ptr_eq(&self.text, &b.text)) {
            return 0;
        }
        allocation_bytes(self.text.len() + 16)
    }

    fn concat(&self, tail: &HashedString) -> HashedString {
        let mut text = String::with_capacity(self.text.len() + tail.text.len());
        text.push_str(&self.text);
        text.push_str(&tail.text);
        HashedString {
            hash: self.hash.wrapping_mul(tail.power).wrapping_add(tail.hash),
            power: self.power.wrapping_mul(tail.power),
            text: text.into(),
        }
    }
}

impl PartialEq for HashedString {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (std::sync::Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for HashedString {}

impl std::hash::Hash for HashedString {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StringOp {
    Get(HashedString),
    Put(HashedString),
    Append(HashedString),
}

#[derive(Debug, Clone)]
pub struct StringKv {
    pub initial: String,
}

fn as_text(value: &Value) -> HashedString {
    HashedString::new(match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

impl Model for StringKv {
    type State = HashedString;
    type Op = StringOp;

    fn init(&self) -> HashedString {
        HashedString::new(self.initial.clone())
    }

    fn step(&self, state: &HashedString, op: &StringOp) -> Step<HashedString> {
        match op {
            StringOp::Get(v) => allowed(v == state),
            StringOp::Put(v) => Step::To(v.clone()),
            StringOp::Append(v) => Step::To(state.concat(v)),
        }
    }

    fn is_read_only(&self, op: &StringOp) -> bool {
        matches!(op, StringOp::Get(_))
    }

    fn only_grows(&self, op: &StringOp) -> bool {
        matches!(op, StringOp::Append(_))
    }

    fn overwrites(&self, op: &StringOp) -> bool {
        matches!(op, StringOp::Put(_))
    }

    fn heap_bytes(&self, state: &HashedString, base: Option<&HashedString>) -> u64 {
        state.heap_bytes(base)
    }

    fn may_grow_into(&self, state: &HashedString, op: &StringOp) -> bool {
        match op {
            StringOp::Get(v) => v.as_str().starts_with(state.as_str()),
            _ => true,
        }
    }

    fn convert(&self, input: &OpInput<'_>, _values: &mut Interner) -> Result<Converted<StringOp>, String> {
        let required = input.outcome == Outcome::Ok;
        match (input.f, input.outcome) {
            ("get" | "read", Outcome::Ok) => {
                Ok(Converted::Keep { op: StringOp::Get(as_text(input.result_value)), required })
            }
            ("get" | "read", _) | (_, Outcome::Fail) => Ok(Converted::Drop),
            ("put" | "write", _) => Ok(Converted::Keep { op: StringOp::Put(as_text(input.value())), required }),
            ("append", _) => Ok(Converted::Keep { op: StringOp::Append(as_text(input.value())), required }),
            (f, _) => Err(format!("unknown op :{f} for string-kv (get, put, append)")),
        }
    }

    fn describe_op(&self, op: &StringOp, _values: &Interner) -> String {
        match op {
            StringOp::Get(v) => format!("get -> {:?}", v.as_str()),
            StringOp::Put(v) => format!("put {:?}", v.as_str()),
            StringOp::Append(v) => format!("append {:?}", v.as_str()),
        }
    }

    fn describe_state(&self, state: &HashedString, _values: &Interner) -> String {
        format!("{:?}", state.as_str())
    }

    fn describe_mismatch(&self, state: &HashedString, op: &StringOp, _values: &Interner) -> Option<String> {
        let StringOp::Get(read) = op else { return None };
        let (a, b) = (state.as_str(), read.as_str());
        let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        let tail = |t: &str| t.get(common..).unwrap_or("").chars().take(60).collect::<String>();
        Some(format!(
            "value and read agree on {common} bytes; then the value has {:?} and the read {:?}",
            tail(a),
            tail(b)
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// A grow-only set: add an element, read all elements.

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetOp {
    Add(u32),
    /// The elements read, sorted.
    Read(Vec<u32>),
}

#[derive(Debug, Clone)]
pub struct Set {
    pub initial: Vec<u32>,
}

fn sorted_ids(value: &Value, values: &mut Interner, what: &str) -> Result<Vec<u32>, String> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(format!("{what} must be a list, got {other}")),
    };
    let mut ids: Vec<u32> = items.iter().map(|v| values.intern(v)).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

impl Set {
    pub fn with_initial(initial: &Value, values: &mut Interner) -> Result<Set, String> {
        Ok(Set { initial: sorted_ids(initial, values, "the set's initial value")? })
    }
}

impl Model for Set {
    type State = Vec<u32>;
    type Op = SetOp;

    fn init(&self) -> Vec<u32> {
        self.initial.clone()
    }

    fn step(&self, state: &Vec<u32>, op: &SetOp) -> Step<Vec<u32>> {
        match op {
            SetOp::Add(v) => match state.binary_search(v) {
                Ok(_) => Step::Unchanged,
                Err(at) => {
                    let mut next = state.clone();
                    next.insert(at, *v);
                    Step::To(next)
                }
            },
            SetOp::Read(read) => allowed(read == state),
        }
    }

    fn is_read_only(&self, op: &SetOp) -> bool {
        matches!(op, SetOp::Read(_))
    }

    fn only_grows(&self, op: &SetOp) -> bool {
        matches!(op, SetOp::Add(_))
    }

    fn heap_bytes(&self, state: &Vec<u32>, _base: Option<&Vec<u32>>) -> u64 {
        allocation_bytes(state.capacity() * std::mem::size_of::<u32>())
    }

    fn may_grow_into(&self, state: &Vec<u32>, op: &SetOp) -> bool {
        match op {
            SetOp::Read(read) => state.iter().all(|v| read.binary_search(v).is_ok()),
            SetOp::Add(_) => true,
        }
    }

    fn convert(&self, input: &OpInput<'_>, values: &mut Interner) -> Result<Converted<SetOp>, String> {
        let required = input.outcome == Outcome::Ok;
        match (input.f, input.outcome) {
            ("read", Outcome::Ok) => {
                Ok(Converted::Keep { op: SetOp::Read(sorted_ids(input.result_value, values, "a set read")?), required })
            }
            ("read", _) | ("add", Outcome::Fail) => Ok(Converted::Drop),
            ("add", _) => Ok(Converted::Keep { op: SetOp::Add(values.intern(input.value())), required }),
            (f, _) => Err(format!("unknown op :{f} for set (add, read)")),
        }
    }

    fn describe_op(&self, op: &SetOp, values: &Interner) -> String {
        match op {
            SetOp::Add(v) => format!("add {}", values.text(*v)),
            SetOp::Read(items) => format!("read -> {}", describe_list(items, values)),
        }
    }

    fn describe_state(&self, state: &Vec<u32>, values: &Interner) -> String {
        describe_list(state, values)
    }

    fn describe_mismatch(&self, state: &Vec<u32>, op: &SetOp, values: &Interner) -> Option<String> {
        let SetOp::Read(read) = op else { return None };
        let missing: Vec<u32> = state.iter().filter(|v| read.binary_search(v).is_err()).copied().collect();
        let extra: Vec<u32> = read.iter().filter(|v| state.binary_search(v).is_err()).copied().collect();
        Some(format!(
            "the read lacks {} element(s) the set holds: {}; and has {} it does not hold: {}",
            missing.len(),
            describe_list(&missing, values),
            extra.len(),
            describe_list(&extra, values)
        ))
    }
}

fn describe_list(items: &[u32], values: &Interner) -> String {
    let shown: Vec<&str> = items.iter().take(20).map(|v| values.text(*v)).collect();
    let more = if items.len() > 20 { format!(" ... ({} in all)", items.len()) } else { String::new() };
    format!("[{}{}]", shown.join(" "), more)
}

// ---------------------------------------------------------------------------------------------
// An append-only event stream with optimistic concurrency.

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamOp {
    /// Append `event`; with `expected_version`, only if the stream has exactly that many events.
    Append { event: u32, expected_version: Option<u64> },
    /// An expected-version append observed to fail: the stream did not have that many events.
    AppendMismatch { expected_version: u64 },
    /// The whole stream, as read.
    Read(Vec<u32>),
}

#[derive(Debug, Clone)]
pub struct Stream {
    pub initial: Vec<u32>,
}

impl Stream {
    pub fn with_initial(initial: &Value, values: &mut Interner) -> Result<Stream, String> {
        Ok(Stream { initial: list_ids(initial, values, "the stream's initial value")? })
    }
}

fn list_ids(value: &Value, values: &mut Interner, what: &str) -> Result<Vec<u32>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => Ok(items.iter().map(|v| values.intern(v)).collect()),
        other => Err(format!("{what} must be a list, got {other}")),
    }
}

/// An append's value: `{"event": E, "expected_version": n}` (the version optional), or a bare event.
fn append_parts(value: &Value) -> Result<(Value, Option<u64>), String> {
    match value {
        Value::Object(map) if map.contains_key("event") => {
            let expected = match map.get("expected_version") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| format!("expected_version must be a whole number, got {v}"))?),
            };
            Ok((map["event"].clone(), expected))
        }
        other => Ok((other.clone(), None)),
    }
}

impl Model for Stream {
    type State = Vec<u32>;
    type Op = StreamOp;

    fn init(&self) -> Vec<u32> {
        self.initial.clone()
    }

    fn step(&self, state: &Vec<u32>, op: &StreamOp) -> Step<Vec<u32>> {
        match op {
            StreamOp::Append { event, expected_version } => {
                if expected_version.is_some_and(|v| v != state.len() as u64) {
                    return Step::Illegal;
                }
                let mut next = Vec::with_capacity(state.len() + 1);
                next.extend_from_slice(state);
                next.push(*event);
                Step::To(next)
            }
            StreamOp::AppendMismatch { expected_version } => allowed(*expected_version != state.len() as u64),
            StreamOp::Read(read) => allowed(read == state),
        }
    }

    fn is_read_only(&self, op: &StreamOp) -> bool {
        matches!(op, StreamOp::Read(_) | StreamOp::AppendMismatch { .. })
    }

    fn only_grows(&self, op: &StreamOp) -> bool {
        matches!(op, StreamOp::Append { .. })
    }

    fn heap_bytes(&self, state: &Vec<u32>, _base: Option<&Vec<u32>>) -> u64 {
        allocation_bytes(state.capacity() * std::mem::size_of::<u32>())
    }

    fn may_grow_into(&self, state: &Vec<u32>, op: &StreamOp) -> bool {
        match op {
            StreamOp::Read(read) => read.starts_with(state),
            _ => true,
        }
    }

    fn convert(&self, input: &OpInput<'_>, values: &mut Interner) -> Result<Converted<StreamOp>, String> {
        let required = input.outcome == Outcome::Ok;
        match (input.f, input.outcome) {
            ("read", Outcome::Ok) => Ok(Converted::Keep {
                op: StreamOp::Read(list_ids(input.result_value, values, "a stream read")?),
                required,
            }),
            ("read", _) => Ok(Converted::Drop),
            ("append", Outcome::Fail) if input.compare_failed() => match append_parts(input.value())? {
                (_, Some(expected_version)) => {
                    Ok(Converted::Keep { op: StreamOp::AppendMismatch { expected_version }, required: true })
                }
                (_, None) => Ok(Converted::Drop),
            },
            ("append", Outcome::Fail) => Ok(Converted::Drop),
            ("append", _) => {
                let (event, expected_version) = append_parts(input.value())?;
                Ok(Converted::Keep {
                    op: StreamOp::Append { event: values.intern(&event), expected_version },
                    required,
                })
            }
            (f, _) => Err(format!("unknown op :{f} for stream (append, read)")),
        }
    }

    fn describe_op(&self, op: &StreamOp, values: &Interner) -> String {
        match op {
            StreamOp::Append { event, expected_version: Some(v) } => {
                format!("append {} at version {v}", values.text(*event))
            }
            StreamOp::Append { event, expected_version: None } => format!("append {}", values.text(*event)),
            StreamOp::AppendMismatch { expected_version } => {
                format!("append at version {expected_version} (version mismatch)")
            }
            StreamOp::Read(items) => format!("read -> {}", describe_list(items, values)),
        }
    }

    fn describe_state(&self, state: &Vec<u32>, values: &Interner) -> String {
        describe_list(state, values)
    }

    fn describe_mismatch(&self, state: &Vec<u32>, op: &StreamOp, values: &Interner) -> Option<String> {
        let StreamOp::Read(read) = op else { return None };
        let common = state.iter().zip(read).take_while(|(a, b)| a == b).count();
        Some(format!(
            "stream and read agree on the first {common} events; then the stream has {} and the read has {}",
            describe_list(&state[common..], values),
            describe_list(&read[common..], values)
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// The product of one object per key, for checking many keys as one partition.

/// Many independent objects, one per key: the state is every key's state; an op acts on one key.
#[derive(Debug, Clone)]
pub struct Keyed<M> {
    pub inner: M,
    pub n_keys: usize,
}

impl<M: Model> Model for Keyed<M> {
    type State = Box<[M::State]>;
    type Op = (u32, M::Op);

    fn init(&self) -> Self::State {
        vec![self.inner.init(); self.n_keys].into_boxed_slice()
    }

    fn step(&self, state: &Self::State, (key, op): &Self::Op) -> Step<Self::State> {
        match self.inner.step(&state[*key as usize], op) {
            Step::Illegal => Step::Illegal,
            Step::Unchanged => Step::Unchanged,
            Step::To(next_key_state) => {
                let mut next = state.clone();
                next[*key as usize] = next_key_state;
                Step::To(next)
            }
        }
    }

    fn is_read_only(&self, (_, op): &Self::Op) -> bool {
        self.inner.is_read_only(op)
    }

    fn only_grows(&self, (_, op): &Self::Op) -> bool {
        self.inner.only_grows(op)
    }

    /// Overwrites its key's state only, which is what its footprint says.
    fn overwrites(&self, (_, op): &Self::Op) -> bool {
        self.inner.overwrites(op)
    }

    /// The boxed slice of every key's state, and each key's own heap that `base`'s same key does
    /// not share (a step changes one key, so a new state brings that key's heap only).
    fn heap_bytes(&self, state: &Self::State, base: Option<&Self::State>) -> u64 {
        allocation_bytes(std::mem::size_of_val::<[M::State]>(state))
            + state
                .iter()
                .enumerate()
                .map(|(key, part)| self.inner.heap_bytes(part, base.and_then(|b| b.get(key))))
                .sum::<u64>()
    }

    fn may_grow_into(&self, state: &Self::State, (key, op): &Self::Op) -> bool {
        self.inner.may_grow_into(&state[*key as usize], op)
    }

    /// The inner register's view, without the key: values of different keys then look alike,
    /// which only ever makes a value look writable when it is not (see `ladder.rs`).
    fn register_view(&self, (_, op): &Self::Op) -> Option<RegisterView> {
        self.inner.register_view(op)
    }

    fn footprint(&self, (key, _): &Self::Op) -> u32 {
        *key
    }

    fn restrict(&self, state: &Self::State, footprint: u32) -> Self::State {
        let key = footprint as usize;
        let mut part = self.init();
        part[key] = state[key].clone();
        part
    }

    fn convert(&self, _input: &OpInput<'_>, _values: &mut Interner) -> Result<Converted<Self::Op>, String> {
        Err("Keyed ops are built from the inner model's ops".into())
    }

    fn describe_op(&self, (key, op): &Self::Op, values: &Interner) -> String {
        format!("key #{key}: {}", self.inner.describe_op(op, values))
    }

    fn describe_state(&self, state: &Self::State, values: &Interner) -> String {
        let parts: Vec<String> = state.iter().map(|s| self.inner.describe_state(s, values)).collect();
        format!("{{{}}}", parts.join(", "))
    }

    fn describe_mismatch(&self, state: &Self::State, (key, op): &Self::Op, values: &Interner) -> Option<String> {
        self.inner.describe_mismatch(&state[*key as usize], op, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use std::hash::BuildHasher;

    fn after<M: Model>(model: &M, state: &M::State, op: &M::Op) -> Option<M::State> {
        model.step(state, op).apply(state)
    }

    fn input<'a>(
        f: &'a str,
        invoke: &'a Value,
        outcome: Outcome,
        result: &'a Value,
        error: Option<&'a str>,
    ) -> OpInput<'a> {
        OpInput { f, invoke_value: invoke, outcome, result_value: result, error }
    }

    #[test]
    fn a_failed_cas_tells_nothing_unless_the_compare_failed() {
        let model = Register { initial: Interner::NULL, allow_cas: true };
        let mut values = Interner::default();
        let v = json!([1, 2]);
        let plain = model.convert(&input("cas", &v, Outcome::Fail, &v, None), &mut values).unwrap();
        assert_eq!(plain, Converted::Drop);
        let mismatch = model.convert(&input("cas", &v, Outcome::Fail, &v, Some(CAS_MISMATCH)), &mut values).unwrap();
        let Converted::Keep { op, required: true } = mismatch else { panic!("kept as an observation") };
        let one = values.intern(&json!(1));
        assert_eq!(model.step(&one, &op), Step::Illegal, "a compare failure cannot happen when the value is `from`");
        assert_eq!(model.step(&Interner::NULL, &op), Step::Unchanged);
    }

    #[test]
    fn indefinite_reads_are_dropped_and_indefinite_writes_are_optional() {
        let model = Register { initial: Interner::NULL, allow_cas: false };
        let mut values = Interner::default();
        let v = json!(3);
        let null = Value::Null;
        assert_eq!(
            model.convert(&input("read", &null, Outcome::Unknown, &null, None), &mut values).unwrap(),
            Converted::Drop
        );
        let write =
            model.convert(&input("write", &v, Outcome::Unknown, &null, Some("timed-out")), &mut values).unwrap();
        assert!(matches!(write, Converted::Keep { op: RegisterOp::Write(_), required: false }));
        assert!(model.convert(&input("cas", &v, Outcome::Ok, &v, None), &mut values).is_err());
    }

    #[test]
    fn stream_appends_respect_expected_versions() {
        let mut values = Interner::default();
        let model = Stream::with_initial(&Value::Null, &mut values).unwrap();
        let a = json!({"event": "a", "expected_version": 0});
        let Converted::Keep { op, .. } =
            model.convert(&input("append", &a, Outcome::Ok, &a, None), &mut values).unwrap()
        else {
            panic!()
        };
        let after_one = after(&model, &model.init(), &op).unwrap();
        assert_eq!(after_one.len(), 1);
        assert_eq!(after(&model, &after_one, &op), None, "version 0 is gone once an event is in");
        let read = json!(["a"]);
        let null = Value::Null;
        let Converted::Keep { op: read_op, .. } =
            model.convert(&input("read", &null, Outcome::Ok, &read, None), &mut values).unwrap()
        else {
            panic!()
        };
        assert!(after(&model, &after_one, &read_op).is_some());
        assert!(after(&model, &model.init(), &read_op).is_none());
    }

    #[test]
    fn set_reads_compare_as_sets() {
        let mut values = Interner::default();
        let model = Set::with_initial(&Value::Null, &mut values).unwrap();
        let (two, one) = (json!(2), json!(1));
        let mut state = model.init();
        for v in [&two, &one] {
            let Converted::Keep { op, .. } =
                model.convert(&input("add", v, Outcome::Ok, v, None), &mut values).unwrap()
            else {
                panic!()
            };
            state = after(&model, &state, &op).unwrap();
        }
        let read = json!([1, 2]);
        let null = Value::Null;
        let Converted::Keep { op, .. } =
            model.convert(&input("read", &null, Outcome::Ok, &read, None), &mut values).unwrap()
        else {
            panic!()
        };
        assert!(after(&model, &state, &op).is_some());
    }

    #[test]
    fn string_kv_appends_concatenate() {
        let model = StringKv { initial: String::new() };
        let text = |t: &str| HashedString::new(t.to_string());
        let s = after(&model, &model.init(), &StringOp::Append(text("x 1 y"))).unwrap();
        let s = after(&model, &s, &StringOp::Append(text("x 2 y"))).unwrap();
        assert!(after(&model, &s, &StringOp::Get(text("x 1 yx 2 y"))).is_some());
        assert!(after(&model, &s, &StringOp::Get(text("x 2 yx 1 y"))).is_none());
        assert_eq!(s, text("x 1 yx 2 y"), "an appended string equals (and hashes like) the same text built at once");
        let builder = hashbrown::DefaultHashBuilder::default();
        let hash = |h: &HashedString| builder.hash_one(h);
        assert_eq!(hash(&s), hash(&text("x 1 yx 2 y")));
    }
}
