//! The workloads' generators: pure, seeded, endless sources of client ops. Written values,
//! events and elements are unique over a run, so that every read names the write it saw and the
//! checkers' searches stay narrow.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::{OpGenerator, WorkloadOp, WorkloadOptions, MAX_FINAL_READS};

/// How many recently written values a cas may compare against.
const RECENT_VALUES: usize = 3;

/// Keys in use at a time, each with its remaining budget of ops; a key whose budget is spent is
/// retired and replaced by a fresh one (Jepsen's independent keys). Ops go to the active keys in
/// turn, so with `workers_per_key` x `active` workers about `workers_per_key` work on each key.
#[derive(Debug, Clone)]
pub(crate) struct RotatingKeys {
    prefix: &'static str,
    ops_per_key: u64,
    /// (key number, ops left) for each active slot.
    active: Vec<(u64, u64)>,
    next_key: u64,
    next_slot: usize,
    /// Every key handed out, oldest first (for the final reads).
    used: Vec<u64>,
}

impl RotatingKeys {
    pub(crate) fn new(prefix: &'static str, n_active: usize, ops_per_key: u64) -> RotatingKeys {
        assert!(n_active > 0 && ops_per_key > 0);
        let active: Vec<(u64, u64)> = (0..n_active as u64).map(|k| (k, ops_per_key)).collect();
        RotatingKeys {
            prefix,
            ops_per_key,
            used: (0..n_active as u64).collect(),
            next_key: n_active as u64,
            active,
            next_slot: 0,
        }
    }

    /// The key number of the next op.
    pub(crate) fn next(&mut self) -> u64 {
        let slot = self.next_slot;
        self.next_slot = (self.next_slot + 1) % self.active.len();
        if self.active[slot].1 == 0 {
            self.active[slot] = (self.next_key, self.ops_per_key);
            self.used.push(self.next_key);
            self.next_key += 1;
        }
        self.active[slot].1 -= 1;
        self.active[slot].0
    }

    pub(crate) fn name(&self, key: u64) -> Value {
        json!(format!("{}{key}", self.prefix))
    }

    /// The most recently used keys, at most MAX_FINAL_READS, oldest first.
    pub(crate) fn final_keys(&self) -> Vec<Value> {
        let skip = self.used.len().saturating_sub(MAX_FINAL_READS);
        self.used[skip..].iter().map(|k| self.name(*k)).collect()
    }
}

/// Register ops over one key's recent values: reads, writes of fresh unique values, and cas from
/// a recently written value (so that cas succeeds often) to a fresh one.
#[derive(Debug, Clone)]
pub(crate) struct RegisterOps {
    recent: std::collections::HashMap<u64, VecDeque<u64>>,
    pub(crate) next_value: u64,
}

impl RegisterOps {
    pub(crate) fn new() -> RegisterOps {
        RegisterOps { recent: Default::default(), next_value: 1 }
    }

    pub(crate) fn op(&mut self, rng: &mut StdRng, key_number: u64, key: Value) -> WorkloadOp {
        let roll = rng.gen_range(0..10);
        if roll < 4 {
            return WorkloadOp::new("read", Some(key), Value::Null);
        }
        let value = self.next_value;
        self.next_value += 1;
        let recent = self.recent.entry(key_number).or_default();
        let op = if roll < 7 || recent.is_empty() {
            WorkloadOp::new("write", Some(key), json!(value))
        } else {
            let from = recent[rng.gen_range(0..recent.len())];
            WorkloadOp::new("cas", Some(key), json!([from, value]))
        };
        recent.push_back(value);
        if recent.len() > RECENT_VALUES {
            recent.pop_front();
        }
        op
    }
}

/// `register`: one key, read / write / cas, unique written values.
pub struct RegisterGenerator {
    rng: StdRng,
    ops: RegisterOps,
}

impl RegisterGenerator {
    pub const KEY: &'static str = "r";

    pub fn new(seed: u64) -> RegisterGenerator {
        RegisterGenerator { rng: StdRng::seed_from_u64(seed), ops: RegisterOps::new() }
    }
}

impl OpGenerator for RegisterGenerator {
    fn next_op(&mut self) -> WorkloadOp {
        self.ops.op(&mut self.rng, 0, json!(RegisterGenerator::KEY))
    }

    fn final_reads(&self) -> Vec<WorkloadOp> {
        vec![WorkloadOp::new("read", Some(json!(RegisterGenerator::KEY)), Value::Null)]
    }
}

/// `cas-register`: many independent keys, a few workers per key, keys rotating.
pub struct CasRegisterGenerator {
    rng: StdRng,
    keys: RotatingKeys,
    ops: RegisterOps,
}

impl CasRegisterGenerator {
    pub fn new(options: &WorkloadOptions, seed: u64) -> CasRegisterGenerator {
        CasRegisterGenerator {
            rng: StdRng::seed_from_u64(seed),
            keys: RotatingKeys::new(crate::mixed::REGISTER_PREFIX, options.active_keys(), options.ops_per_key.max(1)),
            ops: RegisterOps::new(),
        }
    }
}

impl OpGenerator for CasRegisterGenerator {
    fn next_op(&mut self) -> WorkloadOp {
        let key_number = self.keys.next();
        let key = self.keys.name(key_number);
        self.ops.op(&mut self.rng, key_number, key)
    }

    fn final_reads(&self) -> Vec<WorkloadOp> {
        self.keys.final_keys().into_iter().map(|key| WorkloadOp::new("read", Some(key), Value::Null)).collect()
    }
}

/// `append`: event streams. Half the ops append a unique event (half of those with an expected
/// version: the number of appends issued to the stream so far, sometimes one less, so that both
/// matches and mismatches happen), half read the whole stream.
pub struct AppendGenerator {
    rng: StdRng,
    streams: RotatingKeys,
    appends_issued: std::collections::HashMap<u64, u64>,
    next_event: u64,
}

impl AppendGenerator {
    pub fn new(options: &WorkloadOptions, seed: u64) -> AppendGenerator {
        AppendGenerator {
            rng: StdRng::seed_from_u64(seed),
            streams: RotatingKeys::new(crate::mixed::STREAM_PREFIX, options.active_keys(), options.ops_per_key.max(1)),
            appends_issued: Default::default(),
            next_event: 1,
        }
    }
}

impl OpGenerator for AppendGenerator {
    fn next_op(&mut self) -> WorkloadOp {
        let stream_number = self.streams.next();
        let stream = self.streams.name(stream_number);
        let roll = self.rng.gen_range(0..4);
        if roll == 0 || roll == 1 && self.next_event == 1 {
            return WorkloadOp::new("read", Some(stream), Value::Null);
        }
        let event = self.next_event;
        self.next_event += 1;
        let issued = self.appends_issued.entry(stream_number).or_insert(0);
        let value = if roll == 1 {
            let expected_version = issued.saturating_sub(self.rng.gen_range(0..2));
            json!({"event": event, "expected_version": expected_version})
        } else {
            json!({"event": event})
        };
        *issued += 1;
        WorkloadOp::new("append", Some(stream), value)
    }

    fn final_reads(&self) -> Vec<WorkloadOp> {
        self.streams.final_keys().into_iter().map(|key| WorkloadOp::new("read", Some(key), Value::Null)).collect()
    }
}

/// `set`: adds of unique elements (4 in 5 ops) and reads of the whole set, on rotating sets.
pub struct SetGenerator {
    rng: StdRng,
    sets: RotatingKeys,
    next_element: u64,
}

impl SetGenerator {
    pub fn new(options: &WorkloadOptions, seed: u64) -> SetGenerator {
        SetGenerator {
            rng: StdRng::seed_from_u64(seed),
            // A set's reads grow with its size; a set lives for more ops than a register since
            // set-full needs many reads of each element to say when it became visible.
            sets: RotatingKeys::new("set", options.active_keys().div_ceil(2), options.ops_per_key.max(1) * 2),
            next_element: 1,
        }
    }
}

impl OpGenerator for SetGenerator {
    fn next_op(&mut self) -> WorkloadOp {
        let set_number = self.sets.next();
        let set = self.sets.name(set_number);
        if self.rng.gen_range(0..5) == 0 {
            return WorkloadOp::new("read", Some(set), Value::Null);
        }
        let element = self.next_element;
        self.next_element += 1;
        WorkloadOp::new("add", Some(set), json!(element))
    }

    fn final_reads(&self) -> Vec<WorkloadOp> {
        self.sets.final_keys().into_iter().map(|key| WorkloadOp::new("read", Some(key), Value::Null)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkloadKind;
    use std::collections::{HashMap, HashSet};

    fn take(generator: &mut dyn OpGenerator, n: usize) -> Vec<WorkloadOp> {
        (0..n).map(|_| generator.next_op()).collect()
    }

    #[test]
    fn every_workload_is_seeded() {
        let options = WorkloadOptions::default();
        for workload in WorkloadKind::ALL {
            let a = take(workload.generator(&options, 7).as_mut(), 500);
            let b = take(workload.generator(&options, 7).as_mut(), 500);
            let c = take(workload.generator(&options, 8).as_mut(), 500);
            assert_eq!(a, b, "{}", workload.name());
            assert_ne!(a, c, "{}", workload.name());
        }
    }

    #[test]
    fn written_values_events_and_elements_are_unique() {
        let options = WorkloadOptions::default();
        for workload in WorkloadKind::ALL {
            let ops = take(workload.generator(&options, 1).as_mut(), 5000);
            let mut written = HashSet::new();
            for op in &ops {
                let fresh = match op.f.as_str() {
                    "write" | "add" => op.value.clone(),
                    "cas" => op.value[1].clone(),
                    "append" => op.value["event"].clone(),
                    _ => continue,
                };
                assert!(written.insert(fresh.to_string()), "{} repeats {fresh}", workload.name());
            }
            assert!(written.len() > 1000, "{} wrote only {}", workload.name(), written.len());
        }
    }

    #[test]
    fn the_register_workload_uses_one_key_and_every_f() {
        let ops = take(&mut RegisterGenerator::new(3), 300);
        assert!(ops.iter().all(|op| op.key == Some(json!("r"))));
        for f in ["read", "write", "cas"] {
            assert!(ops.iter().any(|op| op.f == f), "no {f}");
        }
    }

    #[test]
    fn independent_keys_rotate_and_each_key_history_stays_small() {
        let options = WorkloadOptions { concurrency: 10, workers_per_key: 2, ops_per_key: 50 };
        let mut generator = CasRegisterGenerator::new(&options, 5);
        let ops = take(&mut generator, 2000);
        let mut per_key: HashMap<String, usize> = HashMap::new();
        for op in &ops {
            *per_key.entry(op.key.as_ref().unwrap().to_string()).or_default() += 1;
        }
        assert_eq!(per_key.len(), 2000 / 50, "{per_key:?}");
        assert!(per_key.values().all(|n| *n == 50));
        // Five keys are active at a time: any 5 consecutive ops touch 5 distinct keys.
        let window: HashSet<_> = ops[100..105].iter().map(|op| op.key.clone()).collect();
        assert_eq!(window.len(), 5);
        assert_eq!(generator.final_reads().len(), 40);
        assert!(generator.final_reads().iter().all(|op| op.f == "read"));
    }

    #[test]
    fn appends_come_with_and_without_expected_versions_and_reads() {
        let ops = take(&mut AppendGenerator::new(&WorkloadOptions::default(), 9), 1000);
        let with_version = ops.iter().filter(|op| op.f == "append" && op.value.get("expected_version").is_some());
        let without = ops.iter().filter(|op| op.f == "append" && op.value.get("expected_version").is_none());
        let reads = ops.iter().filter(|op| op.f == "read");
        assert!(with_version.count() > 100);
        assert!(without.count() > 300);
        assert!(reads.count() > 150);
    }
}
