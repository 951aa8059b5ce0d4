//! Online checking during a run: every second, the history so far is checked with the
//! workload's model (`faultline_checker::online::check_prefix`). A prefix that is not
//! linearizable is a certain finding; with `--stop-on-invalid` it ends the load at once, and the
//! run then heals, recovers, reads and checks everything as usual.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use faultline_checker::online::{check_prefix, PrefixVerdict};
use faultline_checker::ModelKind;

use crate::run_store::HistoryLog;

/// How often the history so far is checked.
pub const ONLINE_CHECK_PERIOD: Duration = Duration::from_secs(1);
/// The time budget of one check of the history so far; past it that check says nothing.
pub const ONLINE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub use faultline_checker::run::OnlineReport;

/// Checks the growing history until `done` is set or a prefix is found invalid; then, if
/// `stop_on_invalid`, sets `stop_load`. Bounded: each check has [`ONLINE_CHECK_TIMEOUT`], and
/// the wait between checks looks at `done` every 50 ms.
pub fn watch(
    history: &HistoryLog,
    model: ModelKind,
    load_start: Instant,
    done: &AtomicBool,
    stop_on_invalid: bool,
    stop_load: &AtomicBool,
) -> OnlineReport {
    let mut report = OnlineReport::default();
    let mut next = Instant::now() + ONLINE_CHECK_PERIOD;
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + ONLINE_CHECK_PERIOD;
        let records = history.records();
        report.checks += 1;
        // A history the checker refuses is judged at the end of the run, with its error.
        if let Ok(PrefixVerdict::Invalid { key }) = check_prefix(&records, model, ONLINE_CHECK_TIMEOUT) {
            report.invalid_at_s = Some(load_start.elapsed().as_secs_f64());
            report.invalid_key = key;
            report.invalid_prefix_records = Some(records.len());
            if stop_on_invalid {
                report.stopped_early = true;
                stop_load.store(true, Ordering::SeqCst);
            }
            break;
        }
    }
    report
}
