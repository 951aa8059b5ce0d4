//! Times the checker on porcupine's corpus and on a generated 1,000,000-event kv history.
//! Parse time is excluded; checking is single-threaded unless --threads says otherwise.
//! Run with `scripts/bench-checker.sh` (release build).

use faultline_checker::history::{Op, OpType, Record};
use faultline_checker::pairing::pair;
use faultline_checker::{check_paired, read_path, CheckOptions, LineRecord, ModelKind, Verdict};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine")
}

/// CPU time of this process: with one checking thread it is the checking time, and unlike wall
/// time it does not grow when other programs share the cores.
fn cpu_time() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID).expect("process CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// The verdict (with the reason when it is `unknown`) and the checking time.
fn time_check(records: &[LineRecord], options: &CheckOptions) -> (String, Duration) {
    let paired = pair(records, "bench", false).unwrap();
    let (started, cpu_started) = (Instant::now(), cpu_time());
    let result = check_paired(paired, options).unwrap();
    let elapsed = if options.threads == 1 { cpu_time() - cpu_started } else { started.elapsed() };
    let verdict = match (result.verdict, result.reason) {
        (Verdict::Unknown, Some(reason)) => format!("unknown ({reason})"),
        (verdict, _) => verdict.as_str().to_string(),
    };
    (verdict, elapsed)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let only = args.iter().position(|a| a == "--only").map(|i| args[i + 1].clone());
    let threads: usize = args.iter().position(|a| a == "--threads").map(|i| args[i + 1].parse().unwrap()).unwrap_or(1);
    // The memory budget per partition search (default 2 GiB), to see that a search stops near it.
    let memory_limit_bytes: u64 = args
        .iter()
        .position(|a| a == "--memory-mib")
        .map(|i| args[i + 1].parse::<u64>().unwrap() << 20)
        .unwrap_or(CheckOptions::default().memory_limit_bytes);
    if let Some(i) = args.iter().position(|a| a == "--dump") {
        let model = ModelKind::from_name(&args[i + 2]).unwrap();
        dump(&args[i + 1], model, !args.iter().any(|a| a == "--no-partition"));
        return;
    }
    let runs = 5;
    let want = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    // Linearizability alone: the ladder below it (sequential consistency, staleness) is timed by
    // `--only ladder`, so these numbers stay comparable with earlier ones.
    let base = CheckOptions {
        threads,
        explain: false,
        ladder: false,
        timeout: Some(Duration::from_secs(60)),
        memory_limit_bytes,
        ..CheckOptions::default()
    };

    if want("etcd") {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(corpus().join("jepsen")).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let histories: Vec<Vec<LineRecord>> =
            files.iter().map(|f| read_path(f, None, false).unwrap().records).collect();
        let options = CheckOptions { model: ModelKind::CasRegister, ..base.clone() };
        let mut totals = Vec::new();
        let mut slowest = (Duration::ZERO, PathBuf::new());
        for _ in 0..runs {
            let mut total = Duration::ZERO;
            for (file, records) in files.iter().zip(&histories) {
                let (_, elapsed) = time_check(records, &options);
                total += elapsed;
                if elapsed > slowest.0 {
                    slowest = (elapsed, file.clone());
                }
            }
            totals.push(total);
        }
        println!(
            "etcd: {} histories, cas-register: {:.1} ms total (median of {runs}); slowest single file {} {:.2} ms",
            files.len(),
            median(totals).as_secs_f64() * 1e3,
            slowest.1.file_name().unwrap().to_string_lossy(),
            slowest.0.as_secs_f64() * 1e3
        );
    }

    for name in ["c01-ok", "c01-bad", "c10-ok", "c10-bad", "c50-ok", "c50-bad"] {
        let records = read_path(&corpus().join(format!("kv/{name}.txt")), None, false).unwrap().records;
        for partition in [true, false] {
            let label = format!("kv {name} {}", if partition { "partitioned" } else { "unpartitioned" });
            if !want(&label) {
                continue;
            }
            let options = CheckOptions { model: ModelKind::StringKv, partition, ..base.clone() };
            let mut samples = Vec::new();
            let mut verdict = String::new();
            let n = if partition || name.starts_with("c01") { runs } else { 1 };
            for _ in 0..n {
                let (v, elapsed) = time_check(&records, &options);
                verdict = v;
                samples.push(elapsed);
            }
            println!("{label}: {verdict} in {:.1} ms (median of {n})", median(samples).as_secs_f64() * 1e3);
        }
    }

    if only.as_deref() == Some("ladder") {
        ladder_bench(threads, memory_limit_bytes);
        return;
    }

    if want("hard") {
        // A real history that is still hard (see tests/data/faultline/README.md).
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/faultline/register-isolated-pause-hard.jsonl");
        let records = read_path(&path, None, false).unwrap().records;
        let options = CheckOptions { model: ModelKind::CasRegister, ..base.clone() };
        let (verdict, elapsed) = time_check(&records, &options);
        println!(
            "hard register history ({} events): {} in {:.1} ms",
            records.len(),
            verdict,
            elapsed.as_secs_f64() * 1e3
        );
    }

    if want("million") {
        let records = million_event_history(1_000_000, 1_000, 10);
        let options = CheckOptions {
            model: ModelKind::Kv,
            initial_value: json!(0),
            timeout: Some(Duration::from_secs(120)),
            ..base.clone()
        };
        let (verdict, elapsed) = time_check(&records, &options);
        println!(
            "generated kv: {} events, 1000 keys, {} in {:.2} s (peak RSS {} MiB)",
            records.len(),
            verdict,
            elapsed.as_secs_f64(),
            peak_rss_mib()
        );
    }
}

/// A linearizable kv history: `processes` clients doing read/write/cas on `keys` registers, with
/// real overlap. Each op takes effect at a point inside its interval, so the history is valid by
/// construction; a few ops time out (info) and some cas fail with cas-mismatch.
fn million_event_history(events: usize, keys: u64, processes_per_key: u64) -> Vec<LineRecord> {
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut values = vec![0u64; keys as usize];
    let mut records = Vec::with_capacity(events);
    let mut index = 0u64;
    let mut push = |records: &mut Vec<LineRecord>,
                    process: u64,
                    op_type: OpType,
                    f: &str,
                    key: u64,
                    value: serde_json::Value,
                    error: Option<&str>| {
        records.push(LineRecord {
            line: index as usize + 1,
            record: Record::Op(Op {
                index,
                time: index,
                process,
                op_type,
                f: f.into(),
                value,
                key: Some(json!(key)),
                error: error.map(str::to_string),
            }),
        });
        index += 1;
    };
    // Rounds: in each, every process of a key invokes, then they take effect in a random order,
    // then complete in another random order; reads return the value at their effect point.
    let mut process_base = 0u64;
    while records.len() < events {
        for key in 0..keys {
            let k = key as usize;
            let n = processes_per_key.min(((events - records.len()) / 2) as u64);
            if n == 0 {
                break;
            }
            let mut ops = Vec::new();
            for p in 0..n {
                let kind = next() % 3;
                let (f, value) = match kind {
                    0 => ("read", serde_json::Value::Null),
                    1 => ("write", json!(next() % 5)),
                    _ => ("cas", json!([next() % 5, next() % 5])),
                };
                let process = process_base + key * processes_per_key + p;
                push(&mut records, process, OpType::Invoke, f, key, value.clone(), None);
                ops.push((process, f, value));
            }
            let mut effect: Vec<usize> = (0..ops.len()).collect();
            for i in (1..effect.len()).rev() {
                effect.swap(i, (next() % (i as u64 + 1)) as usize);
            }
            let mut completions = Vec::new();
            for &i in &effect {
                let (process, f, value) = &ops[i];
                let (op_type, out, error) = match *f {
                    "read" => (OpType::Ok, json!(values[k]), None),
                    "write" => {
                        values[k] = value.as_u64().unwrap();
                        (OpType::Ok, value.clone(), None)
                    }
                    _ => {
                        let (from, to) = (value[0].as_u64().unwrap(), value[1].as_u64().unwrap());
                        if values[k] == from {
                            values[k] = to;
                            (OpType::Ok, value.clone(), None)
                        } else {
                            (OpType::Fail, value.clone(), Some("cas-mismatch"))
                        }
                    }
                };
                let op_type = if next() % 50 == 0 && *f != "read" { OpType::Info } else { op_type };
                completions.push((*process, *f, out, op_type, error));
            }
            for i in (1..completions.len()).rev() {
                completions.swap(i, (next() % (i as u64 + 1)) as usize);
            }
            for (process, f, out, op_type, error) in completions {
                let error = if op_type == OpType::Info { Some("timeout") } else { error };
                push(&mut records, process, op_type, f, key, out, error);
            }
        }
        process_base += keys * processes_per_key;
    }
    records
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0))
        })
        .unwrap_or(0)
        / 1024
}

/// The consistency ladder on every history of the corpus that is not linearizable: how long
/// sequential consistency takes and how many are decided within the ladder's 10 s budget.
fn ladder_bench(threads: usize, memory_limit_bytes: u64) {
    let mut files: Vec<(PathBuf, ModelKind, bool)> = Vec::new();
    let mut etcd: Vec<PathBuf> =
        std::fs::read_dir(corpus().join("jepsen")).unwrap().map(|e| e.unwrap().path()).collect();
    etcd.sort();
    files.extend(etcd.into_iter().map(|f| (f, ModelKind::CasRegister, true)));
    for name in ["c01-bad", "c10-bad", "c50-bad"] {
        for partition in [true, false] {
            files.push((corpus().join(format!("kv/{name}.txt")), ModelKind::StringKv, partition));
        }
    }
    let mut times = Vec::new();
    let (mut valid, mut invalid, mut unknown) = (0, 0, 0);
    let mut slowest = (0.0f64, String::new());
    for (file, model, partition) in &files {
        let records = read_path(file, None, false).unwrap().records;
        let options = CheckOptions {
            model: *model,
            partition: *partition,
            threads,
            explain: false,
            memory_limit_bytes,
            timeout: Some(Duration::from_secs(60)),
            ladder_timeout: Duration::from_secs(10),
            ..CheckOptions::default()
        };
        let result = check_paired(pair(&records, "bench", false).unwrap(), &options).unwrap();
        let Some(ladder) = result.ladder else {
            continue;
        };
        let ms = ladder.sequential.elapsed_ms;
        let name = format!(
            "{}{}",
            file.file_name().unwrap().to_string_lossy(),
            if *partition { "" } else { " (one partition)" }
        );
        match ladder.sequential.verdict {
            Verdict::Valid => valid += 1,
            Verdict::Invalid => invalid += 1,
            Verdict::Unknown => unknown += 1,
        }
        if ms > slowest.0 {
            slowest = (ms, name.clone());
        }
        times.push(Duration::from_secs_f64(ms / 1e3));
        if !file.to_string_lossy().contains("jepsen") {
            println!("  {name}: {}", ladder.summary);
        }
    }
    let n = times.len();
    let total: Duration = times.iter().sum();
    println!(
        "ladder: {n} non-linearizable histories; sequentially consistent {valid}, not {invalid}, undecided in 10 s \
         {unknown}; median {:.1} ms, total {:.1} s, slowest {} {:.0} ms",
        median(times).as_secs_f64() * 1e3,
        total.as_secs_f64(),
        slowest.1,
        slowest.0
    );
}

#[allow(dead_code)]
pub fn dump(path: &str, model: ModelKind, partition: bool) {
    let records = read_path(Path::new(path), None, false).unwrap().records;
    let options = CheckOptions {
        model,
        partition,
        threads: 10,
        explain: false,
        timeout: Some(Duration::from_secs(20)),
        ..CheckOptions::default()
    };
    let result = faultline_checker::check_records(&records, &options).unwrap();
    for p in &result.partitions {
        println!("{:?} ops={} {:?} configs={} {:.1}ms", p.key, p.ops, p.verdict, p.configurations, p.elapsed_ms);
    }
}
