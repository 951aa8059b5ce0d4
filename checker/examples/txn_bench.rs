//! Times the transactional checker on a generated list-append history: by default 1,000,000
//! transactions of 4 micro-ops (half appends, half reads) over 1,000 keys in use at a time, each
//! key retired after 32 appends as Elle's generator does (so that read lists stay short), run by 10
//! processes as a serial execution (each transaction takes effect at one instant between its
//! invocation and its completion), so the history is valid under every model.
//!
//! Usage: txn_bench [--txns N] [--keys N] [--consistency NAME] [--stale-permille N] [--write FILE]
//! `--write` also writes the history as JSON Lines (for timing `faultline check` end to end).
//! Run with `scripts/bench-txn.sh` (release build, peak RSS from /usr/bin/time -v).

use faultline_checker::history::{Op, OpType, Record};
use faultline_checker::txn::{check_history, Consistency, TxnHistoryBuilder, TxnModel, TxnOptions};
use faultline_checker::LineRecord;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

fn cpu_time() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID).expect("process CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

struct Keys {
    active: Vec<(u64, u32)>,
    next_key: u64,
}

const MAX_WRITES_PER_KEY: u32 = 32;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let n_txns: usize = arg("--txns").map(|v| v.parse().expect("--txns N")).unwrap_or(1_000_000);
    let n_keys: u64 = arg("--keys").map(|v| v.parse().expect("--keys N")).unwrap_or(1_000);
    let consistency = arg("--consistency")
        .map(|c| Consistency::from_name(&c).expect("a consistency model"))
        .unwrap_or(Consistency::Serializable);
    let mut out = arg("--write").map(|p| std::io::BufWriter::new(std::fs::File::create(p).expect("--write FILE")));
    // Reads that miss the latest append, per thousand: a history full of anomalies, to time the
    // cycle search and the explanations.
    let stale_permille: u32 = arg("--stale-permille").map(|v| v.parse().expect("--stale-permille N")).unwrap_or(0);
    let n_processes = 10u64;

    let (started, cpu_started) = (Instant::now(), cpu_time());
    let mut rng = StdRng::seed_from_u64(16);
    let mut keys = Keys { active: (0..n_keys).map(|k| (k, 0)).collect(), next_key: n_keys };
    let mut state: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut builder = TxnHistoryBuilder::new(TxnModel::ListAppend, "generated");
    let mut next_value = 0u64;
    // Per process: the micro-ops of its open transaction, and its completed value once applied.
    let mut open: Vec<Option<(Value, Option<Value>)>> = vec![None; n_processes as usize];
    let (mut invoked, mut position) = (0usize, 0usize);
    let mut emit = |process: u64, op_type: OpType, value: Value, builder: &mut TxnHistoryBuilder| {
        let op = Op {
            index: position as u64,
            time: position as u64 * 1000,
            process,
            op_type,
            f: "txn".into(),
            value,
            key: None,
            error: None,
        };
        let record = LineRecord { line: position + 1, record: Record::Op(op) };
        if let Some(out) = out.as_mut() {
            serde_json::to_writer(&mut *out, &record.record).unwrap();
            out.write_all(b"\n").unwrap();
        }
        builder.push(&record).expect("generated records are well formed");
        position += 1;
    };
    while invoked < n_txns || open.iter().any(Option::is_some) {
        let p = rng.gen_range(0..n_processes);
        match open[p as usize].take() {
            None if invoked < n_txns => {
                invoked += 1;
                let mut mops = Vec::with_capacity(4);
                for _ in 0..4 {
                    let slot = rng.gen_range(0..keys.active.len());
                    if rng.gen_bool(0.5) {
                        next_value += 1;
                        let (key, writes) = &mut keys.active[slot];
                        mops.push(json!(["append", *key, next_value]));
                        *writes += 1;
                        if *writes == MAX_WRITES_PER_KEY {
                            keys.active[slot] = (keys.next_key, 0);
                            keys.next_key += 1;
                        }
                    } else {
                        mops.push(json!(["r", keys.active[slot].0, null]));
                    }
                }
                let value = Value::Array(mops);
                emit(p, OpType::Invoke, value.clone(), &mut builder);
                open[p as usize] = Some((value, None));
            }
            None => {}
            Some((invoked_value, None)) => {
                // Take effect now.
                let mut done = Vec::with_capacity(4);
                for mop in invoked_value.as_array().unwrap() {
                    let key = mop[1].as_u64().unwrap();
                    if mop[0] == "append" {
                        state.entry(key).or_default().push(mop[2].as_u64().unwrap());
                        done.push(mop.clone());
                    } else {
                        let mut list = state.get(&key).cloned().unwrap_or_default();
                        if stale_permille > 0 && rng.gen_range(0..1000) < stale_permille {
                            list.pop();
                        }
                        done.push(json!(["r", key, list]));
                    }
                }
                open[p as usize] = Some((invoked_value, Some(Value::Array(done))));
            }
            Some((_, Some(done))) => emit(p, OpType::Ok, done, &mut builder),
        }
    }
    if let Some(mut out) = out {
        out.flush().unwrap();
    }
    let history = builder.finish().expect("unique values");
    let (generated, generated_cpu) = (started.elapsed(), cpu_time() - cpu_started);
    println!(
        "generated and read {} txns ({} events, {} keys in all): {:.2} s wall, {:.2} s CPU",
        history.txns.len(),
        history.events,
        history.keys.len(),
        generated.as_secs_f64(),
        generated_cpu.as_secs_f64()
    );

    let (started, cpu_started) = (Instant::now(), cpu_time());
    let options = TxnOptions { model: TxnModel::ListAppend, consistency, ..TxnOptions::default() };
    let result = check_history(&history, &options);
    let (checked, checked_cpu) = (started.elapsed(), cpu_time() - cpu_started);
    println!(
        "checked for {}: {} ({:?}) edges {:?}: {:.2} s wall, {:.2} s CPU ({:.0} txns/s)",
        consistency.name(),
        result.verdict.as_str(),
        result.anomaly_counts,
        result.edges,
        checked.as_secs_f64(),
        checked_cpu.as_secs_f64(),
        history.txns.len() as f64 / checked.as_secs_f64()
    );
}
