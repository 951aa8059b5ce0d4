//! Clock faults, through the libfaketime files of `src/clock.rs`: `clock-offset` sets each
//! target's wall clock ahead or behind by up to `MAX_OFFSET_MS` for the window; `clock-strobe`
//! makes it jump back and forth between true time and an offset every `period` for the window.
//! Every window ends with a reset to true time (the stop record says so).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use faultline_checker::history::FaultPhase;
use rand::Rng;
use serde_json::json;

use super::{names, Family, Nemesis};
use crate::cluster::{node_name, NodeId};

/// The families that need libfaketime under every node.
pub const CLOCK_FAMILIES: [Family; 2] = [Family::ClockOffset, Family::ClockStrobe];

/// The largest offset a `clock-offset` window sets, either way.
const MAX_OFFSET_MS: i64 = 30_000;
/// A strobe's offset is drawn from this range (either sign), its period from the next.
const STROBE_DELTA_MS: std::ops::RangeInclusive<i64> = 1_000..=5_000;
const STROBE_PERIOD_MS: std::ops::RangeInclusive<u64> = 500..=3_000;
/// How often a strobe thread looks at its stop flag.
const STROBE_POLL: Duration = Duration::from_millis(20);

/// Whether any of `families` needs the clock layer.
pub fn needs_clock(families: &[Family]) -> bool {
    families.iter().any(|f| CLOCK_FAMILIES.contains(f))
}

/// A running clock window: its targets and, for a strobe, the thread that flips their clocks.
pub(super) struct ClockWindow {
    targets: BTreeSet<NodeId>,
    strobe: Option<Strobe>,
}

pub(super) struct Strobe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    /// The first error of the thread (a clock file it could not write).
    error: Arc<Mutex<Option<String>>>,
}

/// Flips the clocks in `files` between true time and `delta_ms` every `period` until `stop`.
fn strobe_loop(files: Vec<PathBuf>, delta_ms: i64, period: Duration, stop: &AtomicBool) -> Result<()> {
    let mut shifted = false;
    while !stop.load(Ordering::SeqCst) {
        shifted = !shifted;
        for file in &files {
            crate::clock::write_offset(file, if shifted { delta_ms } else { 0 })?;
        }
        let flip_at = Instant::now() + period;
        while Instant::now() < flip_at && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(STROBE_POLL.min(flip_at.saturating_duration_since(Instant::now())));
        }
    }
    Ok(())
}

impl Nemesis<'_> {
    pub(super) fn start_clock(&self, family: Family) -> Result<()> {
        let clock = self.clock.with_context(|| format!("{} needs libfaketime under the nodes", family.name()))?;
        let (spec, targets) = self.pick_targets();
        let mut window = ClockWindow { targets: targets.iter().copied().collect(), strobe: None };
        match family {
            Family::ClockStrobe => {
                let (delta_ms, period_ms) = {
                    let mut rng = self.rng.lock().unwrap();
                    let sign = if rng.gen_bool(0.5) { 1 } else { -1 };
                    (sign * rng.gen_range(STROBE_DELTA_MS), rng.gen_range(STROBE_PERIOD_MS))
                };
                self.record_targeted_start(
                    family,
                    spec,
                    &targets,
                    json!({"delta_ms": delta_ms, "period_ms": period_ms}),
                )?;
                let all = clock.files();
                let files: Vec<PathBuf> = targets.iter().filter_map(|n| all.get(n).cloned()).collect();
                let stop = Arc::new(AtomicBool::new(false));
                let error = Arc::new(Mutex::new(None));
                let (stop_seen, error_out) = (stop.clone(), error.clone());
                let thread = std::thread::Builder::new()
                    .name("clock-strobe".to_string())
                    .spawn(move || {
                        if let Err(e) = strobe_loop(files, delta_ms, Duration::from_millis(period_ms), &stop_seen) {
                            *error_out.lock().unwrap() = Some(format!("{e:#}"));
                        }
                    })
                    .context("spawning the clock strobe")?;
                window.strobe = Some(Strobe { stop, thread, error });
            }
            _ => {
                let offsets: BTreeMap<NodeId, i64> = {
                    let mut rng = self.rng.lock().unwrap();
                    targets.iter().map(|n| (*n, rng.gen_range(-MAX_OFFSET_MS..=MAX_OFFSET_MS))).collect()
                };
                let named: BTreeMap<String, i64> = offsets.iter().map(|(n, o)| (node_name(*n), *o)).collect();
                self.record_targeted_start(family, spec, &targets, json!({"offsets_ms": named}))?;
                for (node, offset_ms) in offsets {
                    clock.set_offset(node, offset_ms)?;
                }
            }
        }
        self.clock_windows.lock().unwrap().insert(family, window);
        Ok(())
    }

    /// Ends a clock window: stops its strobe, resets its targets to true time, records the stop.
    pub(super) fn stop_clock(&self, family: Family) -> Result<()> {
        let Some(window) = self.clock_windows.lock().unwrap().remove(&family) else {
            return Ok(());
        };
        let mut strobe_error = None;
        if let Some(strobe) = window.strobe {
            strobe.stop.store(true, Ordering::SeqCst);
            if strobe.thread.join().is_err() {
                strobe_error = Some("the clock strobe thread panicked".to_string());
            }
            strobe_error = strobe_error.or(strobe.error.lock().unwrap().take());
        }
        let clock = self.clock.context("a clock window without a clock layer")?;
        for node in &window.targets {
            clock.set_offset(*node, 0)?;
        }
        if let Some(error) = strobe_error {
            return Err(anyhow!("{}: {error}", family.name()));
        }
        self.history.fault(
            family.name(),
            FaultPhase::Stop,
            names(window.targets.iter().copied()),
            None,
            Some(json!({"reset": true})),
        )?;
        self.log.log(format!("{}: clocks of {:?} reset", family.name(), window.targets));
        Ok(())
    }

    /// The nodes whose clocks are off, for the progress line.
    pub(super) fn clocks_off(&self) -> BTreeSet<NodeId> {
        self.clock_windows.lock().unwrap().values().flat_map(|w| w.targets.iter().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strobe_flips_the_clock_file_and_stops_when_told() {
        let dir = std::env::temp_dir().join(format!("faultline-strobe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("n1.faketime");
        let stop = Arc::new(AtomicBool::new(false));
        let stop_seen = stop.clone();
        let files = vec![file.clone()];
        let thread =
            std::thread::spawn(move || strobe_loop(files, -1500, Duration::from_millis(30), &stop_seen).unwrap());
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.len() < 2 && Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(&file) {
                seen.insert(text);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        assert_eq!(seen, BTreeSet::from(["+0.000\n".to_string(), "-1.500\n".to_string()]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_the_clock_families_need_libfaketime() {
        assert!(needs_clock(&[Family::ClockOffset]));
        assert!(needs_clock(&[Family::Kill, Family::ClockStrobe]));
        assert!(!needs_clock(&super::super::default_families(true)));
    }
}
