//! The run's record on disk: `store/<test-name>/<timestamp>/` with test.json, history.jsonl (written
//! as the run goes, one flushed line per record), results.json, faultline.log and the nodes' logs;
//! `store/latest` points at the newest run.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use faultline_checker::history::{Fault, FaultPhase, HistoryWriter, Op, OpType, Record};
use serde_json::Value;

/// Creates `store/<test_name>/<timestamp>/` and points `store/latest` at it.
pub fn create_run_dir(store: &Path, test_name: &str) -> Result<PathBuf> {
    let test_dir = store.join(test_name);
    std::fs::create_dir_all(&test_dir).with_context(|| format!("creating {}", test_dir.display()))?;
    let mut stamp = utc_timestamp(SystemTime::now());
    let mut run_dir = test_dir.join(&stamp);
    // Two runs started in the same millisecond get distinct directories.
    let mut suffix = 1;
    while run_dir.exists() {
        stamp = format!("{}-{suffix}", utc_timestamp(SystemTime::now()));
        run_dir = test_dir.join(&stamp);
        suffix += 1;
    }
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let latest = store.join("latest");
    let _ = std::fs::remove_file(&latest);
    let target = Path::new(test_name).join(&stamp);
    std::os::unix::fs::symlink(&target, &latest)
        .with_context(|| format!("linking {} -> {}", latest.display(), target.display()))?;
    Ok(run_dir)
}

/// `20261123T011500.123Z`: sortable, no colons (safe in paths).
pub fn utc_timestamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (H. Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Counts of completed operations, for the progress line and the summary.
#[derive(Debug, Default)]
pub struct OpCounters {
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
    pub faults_started: AtomicU64,
}

/// The history of a run: every record is appended to history.jsonl and flushed before the call
/// returns, and kept in memory for the checker at the end.
pub struct HistoryLog {
    start: Instant,
    inner: Mutex<HistoryInner>,
    pub counters: OpCounters,
}

struct HistoryInner {
    writer: HistoryWriter<BufWriter<File>>,
    records: Vec<Record>,
}

impl HistoryLog {
    pub fn create(path: &Path, start: Instant) -> Result<HistoryLog> {
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(HistoryLog {
            start,
            inner: Mutex::new(HistoryInner { writer: HistoryWriter::new(BufWriter::new(file)), records: Vec::new() }),
            counters: OpCounters::default(),
        })
    }

    /// Nanoseconds since the run started: the `time` of records.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn append(&self, make: impl FnOnce(u64) -> Record) -> Result<()> {
        let mut inner = self.inner.lock().unwrap();
        let index = inner.records.len() as u64;
        let mut record = make(index);
        // Records are in real-time order and their times must agree (the checker refuses a time
        // that goes backwards). A completion's time is taken by its worker before the record is
        // written, so one written after a later-stamped invocation is moved up to it: that only
        // widens the op's interval, which never makes a history invalid.
        let latest = inner.records.last().map_or(0, Record::time);
        match &mut record {
            Record::Op(op) => op.time = op.time.max(latest),
            Record::Fault(fault) => fault.time = fault.time.max(latest),
        }
        inner.writer.write(&record).context("appending to history.jsonl")?;
        inner.records.push(record);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn op(
        &self,
        time_ns: u64,
        process: u64,
        op_type: OpType,
        f: &str,
        key: Option<Value>,
        value: Value,
        error: Option<String>,
    ) -> Result<()> {
        match op_type {
            OpType::Ok => self.counters.ok.fetch_add(1, Ordering::Relaxed),
            OpType::Fail => self.counters.fail.fetch_add(1, Ordering::Relaxed),
            OpType::Info => self.counters.info.fetch_add(1, Ordering::Relaxed),
            OpType::Invoke => 0,
        };
        self.append(|index| {
            Record::Op(Op { index, time: time_ns, process, op_type, f: f.to_string(), value, key, error })
        })
    }

    pub fn fault(
        &self,
        f: &str,
        phase: FaultPhase,
        targets: Vec<String>,
        grudge: Option<BTreeMap<String, Vec<String>>>,
        detail: Option<Value>,
    ) -> Result<()> {
        if phase == FaultPhase::Start {
            self.counters.faults_started.fetch_add(1, Ordering::Relaxed);
        }
        let time = self.now_ns();
        self.append(|index| Record::Fault(Fault { index, time, f: f.to_string(), phase, targets, grudge, detail }))
    }

    pub fn records(&self) -> Vec<Record> {
        self.inner.lock().unwrap().records.clone()
    }
}

/// faultline.log: timestamped lines about what the harness did, for post-mortems, written by
/// `tracing-subscriber`. Each run has its own subscriber (a `Dispatch` whose fmt layer writes the
/// run's file, times counted from the run's start), and `log` emits a `tracing` event into it, so
/// the events of two runs in one process (tests) never mix, whatever threads emit them.
pub struct RunLog {
    dispatch: tracing::Dispatch,
}

impl RunLog {
    pub fn create(path: &Path, start: Instant, echo_to_stderr: bool) -> Result<RunLog> {
        use tracing_subscriber::fmt::{self, time::Uptime};
        use tracing_subscriber::layer::SubscriberExt;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        let to_file = fmt::layer()
            .with_writer(Mutex::new(file))
            .with_ansi(false)
            .with_target(false)
            .with_timer(Uptime::from(start));
        let to_stderr = echo_to_stderr
            .then(|| fmt::layer().with_writer(std::io::stderr).with_target(false).with_timer(Uptime::from(start)));
        let subscriber = tracing_subscriber::registry().with(to_file).with(to_stderr);
        Ok(RunLog { dispatch: tracing::Dispatch::new(subscriber) })
    }

    /// One line of faultline.log, as an `info` event.
    pub fn log(&self, message: impl AsRef<str>) {
        tracing::dispatcher::with_default(&self.dispatch, || tracing::info!("{}", message.as_ref()));
    }
}

/// The git revision of the faultline source tree, when we run from one.
pub fn git_revision() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_run_log_is_written_by_tracing_with_times_from_the_run_start() {
        let dir = std::env::temp_dir().join(format!("faultline-runlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("faultline.log");
        let _ = std::fs::remove_file(&path);
        let start = Instant::now() - Duration::from_secs(5);
        let log = RunLog::create(&path, start, false).unwrap();
        log.log("nemesis: partition [n1] | [n2 n3]");
        // Another thread logs into the same run's file.
        std::thread::scope(|scope| {
            scope.spawn(|| log.log("worker 2: done"));
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with("INFO nemesis: partition [n1] | [n2 n3]"), "{text}");
        assert!(lines[1].ends_with("INFO worker 2: done"), "{text}");
        // Uptime: seconds since the run's start, at least the five seconds before it was created.
        let seconds: f64 = lines[0].trim_start().split('s').next().unwrap().parse().unwrap();
        assert!((5.0..60.0).contains(&seconds), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn timestamps_are_utc_and_sortable() {
        let time = UNIX_EPOCH + Duration::from_millis(1_795_396_500_123);
        assert_eq!(utc_timestamp(time), "20261123T011500.123Z");
        assert_eq!(utc_timestamp(UNIX_EPOCH), "19700101T000000.000Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_timestamp(leap_day), "20000229T000000.000Z");
    }

    #[test]
    fn a_completion_stamped_before_the_last_record_is_moved_up_to_it() {
        let dir = std::env::temp_dir().join(format!("faultline-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = HistoryLog::create(&path, Instant::now()).unwrap();
        log.op(5_000, 1, OpType::Invoke, "read", None, Value::Null, None).unwrap();
        log.op(9_000, 2, OpType::Invoke, "read", None, Value::Null, None).unwrap();
        // Process 1's worker took its completion time before process 2's invocation was written.
        log.op(7_000, 1, OpType::Ok, "read", None, Value::Null, None).unwrap();
        let times: Vec<u64> = log.records().iter().map(Record::time).collect();
        assert_eq!(times, vec![5_000, 9_000, 9_000]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(faultline_checker::import_text(&text, "h", None, false).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
