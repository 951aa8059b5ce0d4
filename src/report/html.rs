//! index.html and timeline.html: self-contained pages (inline CSS and a few lines of inline
//! script; no external script, font or stylesheet), readable straight from the disk.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::data::{short_json, workload_checks, Outcome, RunData};
use super::plots::{css_colour, fault_colours};

/// Past this many ops the timeline shows the ops around the first anomaly (or the first ones)
/// and says what it left out.
pub const MAX_TIMELINE_OPS: usize = 10_000;

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1f2328; background: #fff; }
h1 { font-size: 22px; margin: 0 0 8px 0; } h2 { font-size: 17px; margin: 22px 0 8px 0; }
table { border-collapse: collapse; font-size: 13px; } td, th { max-width: 640px; overflow-wrap: anywhere; border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 4px 12px; border-radius: 6px; color: #fff; font-weight: 700; font-size: 18px; letter-spacing: 0.04em; }
.valid { background: #2ea043; } .invalid { background: #cf222e; } .unknown { background: #9a6700; } .none { background: #6e7781; } .vacuous { background: #9a6700; }
pre { background: #f6f8fa; padding: 8px; font-size: 12px; overflow-x: auto; max-height: 420px; }
a { color: #0969da; } .muted { color: #656d76; font-size: 13px; }
img.plot { max-width: 100%; border: 1px solid #d0d7de; margin: 6px 0; }
.links a { margin-right: 14px; }
.cols { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; } .cols h2 { margin-top: 8px; }
"#;

fn verdict_badge(data: &RunData) -> String {
    let verdict = data.verdict();
    let (class, text) = match (verdict.as_str(), data.vacuous()) {
        ("valid", true) => ("vacuous", "VACUOUS".to_string()),
        ("none", _) => ("none", "NO VERDICT".to_string()),
        (v, _) => (v, v.to_uppercase()),
    };
    format!(r#"<span class="badge {class}">{}</span>"#, escape(&text))
}

fn test_field<'a>(data: &'a RunData, path: &[&str]) -> Option<&'a Value> {
    let mut value = &data.test;
    for part in path {
        value = value.get(part)?;
    }
    (!value.is_null()).then_some(value)
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => n.as_f64().map(number_for_people).unwrap_or_default(),
        other => short_json(other, 400),
    }
}

/// A measured number as people read it: three significant digits at most (`4.98`, `52.5`, `0.123`),
/// whole numbers as they are.
pub fn number_for_people(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{x:.0}");
    }
    let decimals = match x.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    format!("{x:.decimals$}")
}

/// A duration given in milliseconds, as people read it: `0.42 ms`, `5.0 ms`, `1.93 s`.
pub fn milliseconds_for_people(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

pub fn index_html(data: &RunData, files: &[String]) -> String {
    let name = test_field(data, &["name"]).map(plain).unwrap_or_else(|| "run".to_string());
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>faultline: {} {}</title><style>{STYLE}</style></head><body>",
        escape(&name),
        escape(&data.verdict())
    );
    let _ = write!(page, "<h1>faultline test <code>{}</code> {}</h1>", escape(&name), verdict_badge(data));
    if data.vacuous() {
        let reasons = data.results.get("vacuous_reasons").map(plain).unwrap_or_default();
        let _ = write!(page, "<p><b>Vacuous:</b> valid, but nothing was really tested: {}</p>", escape(&reasons));
    }
    page.push_str("<p class=\"links\">");
    for file in files {
        let _ = write!(page, r#"<a href="{0}">{0}</a>"#, escape(file));
    }
    page.push_str("</p>");

    // The run at a glance.
    page.push_str("<div class=\"cols\"><div><h2>Run</h2><table>");
    let mut row = |label: &str, value: String| {
        let _ = write!(page, "<tr><th>{}</th><td>{}</td></tr>", escape(label), escape(&value));
    };
    for (label, path) in [
        ("run id", &["run_id"][..]),
        ("seed", &["seed"]),
        ("started at (UTC)", &["started_at"]),
        ("workload", &["options", "workload"]),
        ("workload", &["workload"]),
        ("checker model", &["model"]),
        ("db", &["options", "db"]),
        ("planted bug", &["options", "bug"]),
        ("nodes", &["options", "nodes"]),
        ("workers", &["concurrency"]),
        ("nemesis", &["options", "nemesis"]),
        ("time limit (s)", &["options", "time_limit"]),
        ("rate (ops/s)", &["options", "rate"]),
        ("git revision", &["git_revision"]),
    ] {
        if let Some(value) = test_field(data, path) {
            row(label, plain(value));
        }
    }
    if let Some(duration) = data.results.get("duration_s").and_then(Value::as_f64) {
        row("duration (s)", format!("{duration:.1}"));
    }
    row(
        "history",
        format!("{} ops, {} fault windows, {:.1} s", data.ops.len(), data.faults.len(), seconds(data.end_ns)),
    );
    page.push_str("</table>");
    if !data.bad_lines.is_empty() {
        let _ = write!(
            page,
            "<p><b>{} history lines could not be read</b> (first: {})</p>",
            data.bad_lines.len(),
            escape(&data.bad_lines[0])
        );
    }

    // Ops by f and outcome.
    page.push_str("</div><div><h2>Operations</h2><table><tr><th>f</th>");
    for outcome in Outcome::ALL {
        let _ = write!(page, r#"<th style="color:{}">{}</th>"#, outcome.css(), outcome.name());
    }
    page.push_str("<th>total</th></tr>");
    let by_f = data.counts_by_f();
    let by_outcome = data.counts_by_outcome();
    let mut rows: Vec<(String, BTreeMap<Outcome, usize>)> = by_f.into_iter().collect();
    rows.push(("all".to_string(), by_outcome));
    for (f, counts) in rows {
        let _ = write!(page, "<tr><th>{}</th>", escape(&f));
        for outcome in Outcome::ALL {
            let _ = write!(page, r#"<td class="n">{}</td>"#, counts.get(&outcome).copied().unwrap_or(0));
        }
        let _ = write!(page, r#"<td class="n">{}</td></tr>"#, counts.values().sum::<usize>());
    }
    page.push_str("</table></div></div>");
    if let Some(argv) = test_field(data, &["argv"]).and_then(Value::as_array) {
        let argv: Vec<String> = argv.iter().map(plain).collect();
        let _ = write!(page, "<p class=\"muted\">command: <code>{}</code></p>", escape(&argv.join(" ")));
    }

    // Checkers.
    page.push_str("<h2>Checker</h2>");
    let checker = data.results.get("checker").unwrap_or(&data.results);
    let mut facts = Vec::new();
    for (field, label) in
        [("model", "model"), ("ops", "ops"), ("searched_ops", "ops searched"), ("reason", "reason"), ("error", "error")]
    {
        if let Some(value) = checker.get(field).filter(|v| !v.is_null()) {
            facts.push(format!("{label}: {}", plain(value)));
        }
    }
    if let Some(ms) = checker.get("check_ms").and_then(Value::as_f64) {
        facts.push(format!("checked in {}", milliseconds_for_people(ms)));
    }
    if let Some(partitions) = checker.get("partitions").and_then(Value::as_array) {
        facts.push(format!("keys checked: {}", partitions.len()));
    }
    let _ = write!(page, "<p>{}</p>", escape(&facts.join(" · ")));
    if let Some(at) = data.results.pointer("/online/invalid_at_s").and_then(Value::as_f64) {
        let stopped = data.results.pointer("/online/stopped_early").and_then(Value::as_bool).unwrap_or(false);
        let _ = write!(
            page,
            "<p><b>Found {at:.1} s into the run</b> by the online check (the history so far was already not \
             linearizable){}.</p>",
            if stopped {
                "; the run stopped early there (--stop-on-invalid), then healed and checked everything"
            } else {
                ""
            }
        );
    }
    if let Some(ladder) = checker.pointer("/ladder/summary").and_then(Value::as_str) {
        let _ = write!(page, "<p><b>How far from linearizable:</b> {}</p>", escape(ladder));
    }
    for (number, anomaly) in data.anomalies.iter().enumerate() {
        let _ = write!(
            page,
            r#"<p><b>Anomaly {}</b>{}: <a href="timeline.html#op-{}">see it on the timeline</a></p><pre>{}</pre>"#,
            number + 1,
            anomaly.key.as_ref().map(|k| format!(" on key {}", escape(&k.to_string()))).unwrap_or_default(),
            anomaly.failing_call_index,
            escape(&anomaly.text)
        );
    }
    for check in workload_checks(&data.results) {
        let verdict = check.get("verdict").and_then(Value::as_str).unwrap_or("unknown");
        let _ = write!(
            page,
            r#"<p><b>{}</b> <span class="badge {verdict}" style="font-size:12px;padding:1px 6px">{}</span> {}</p>"#,
            escape(&check.get("checker").map(plain).unwrap_or_default()),
            escape(verdict),
            escape(&check.get("summary").map(plain).unwrap_or_default())
        );
        if let Some(details) = check.get("details").filter(|d| !d.is_null()) {
            let mut text = serde_json::to_string_pretty(details).unwrap_or_default();
            if text.len() > 20_000 {
                let cut = (0..=20_000).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
                text.truncate(cut);
                text.push_str("\n… (the rest is in results.json)");
            }
            let _ = write!(page, "<details><summary>details</summary><pre>{}</pre></details>", escape(&text));
        }
    }

    page.push_str(
        r#"<h2>Plots</h2><p class="muted">Fault windows are shaded. <a href="timeline.html">Timeline of every op</a>.</p>
<img class="plot" src="latency.svg" alt="latency of each op over time"><br>
<img class="plot" src="rate.svg" alt="completed ops per second over time">"#,
    );
    // Faults.
    let colours = fault_colours(&data.faults);
    let _ = write!(page, "<h2>Faults fired: {}</h2>", data.faults.len());
    if !data.faults.is_empty() {
        page.push_str(
            "<table><tr><th>fault</th><th>targets</th><th>start (s)</th><th>stop (s)</th><th>detail</th></tr>",
        );
        for window in data.faults.iter().take(500) {
            let colour = colours.get(&window.f).map(css_colour).unwrap_or_default();
            let stop = window.stop_ns.map(|s| format!("{:.2}", seconds(s))).unwrap_or_else(|| "never healed".into());
            let detail = window.detail.as_ref().map(|d| short_json(d, 200)).unwrap_or_default();
            let _ = write!(
                page,
                r#"<tr><td><span style="color:{colour}">■</span> {}</td><td>{}</td><td class="n">{:.2}</td><td class="n">{}</td><td>{}</td></tr>"#,
                escape(&window.f),
                escape(&window.targets.join(", ")),
                seconds(window.start_ns),
                escape(&stop),
                escape(&detail)
            );
        }
        page.push_str("</table>");
        if data.faults.len() > 500 {
            let _ = write!(page, "<p class=\"muted\">{} more in history.jsonl</p>", data.faults.len() - 500);
        }
    }

    if let Some(options) = test_field(data, &["options"]).and_then(Value::as_object) {
        page.push_str("<h2>All options</h2><table>");
        for (key, value) in options {
            let _ = write!(page, "<tr><th>{}</th><td>{}</td></tr>", escape(key), escape(&plain(value)));
        }
        page.push_str("</table>");
    }
    page.push_str("</body></html>\n");
    page
}

/// The ops the timeline shows: all of them, or a window of MAX_TIMELINE_OPS around the first
/// anomaly's failing op (else the first ones). Returns (first, end) positions in `data.ops`.
pub fn timeline_range(data: &RunData) -> (usize, usize) {
    let n = data.ops.len();
    if n <= MAX_TIMELINE_OPS {
        return (0, n);
    }
    let center = data
        .anomalies
        .first()
        .and_then(|a| data.ops.iter().position(|op| op.call_index == a.failing_call_index))
        .unwrap_or(0);
    let first = center.saturating_sub(MAX_TIMELINE_OPS / 2).min(n - MAX_TIMELINE_OPS);
    (first, first + MAX_TIMELINE_OPS)
}

const TIMELINE_STYLE: &str = r#"
#bar { position: sticky; top: 0; background: #fff; padding: 6px 0; z-index: 5; border-bottom: 1px solid #d0d7de; }
#scroll { overflow: auto; border: 1px solid #d0d7de; max-height: calc(100vh - 230px); position: relative; }
#tl { position: relative; }
.lane { position: absolute; left: var(--sl, 0px); font-size: 10px; color: #656d76; white-space: nowrap; background: rgba(255,255,255,0.8); z-index: 6; padding: 0 2px; }
.op, .fault, .tick { position: absolute; left: calc(34px + var(--a) * var(--z) * 1px); }
.op { height: 11px; width: max(2px, calc(var(--d) * var(--z) * 1px)); border-radius: 2px; box-sizing: border-box; }
.op:hover { outline: 2px solid #1f2328; z-index: 3; }
.window { outline: 2px solid #fb8500; z-index: 2; }
.failing { outline: 3px solid #000; box-shadow: 0 0 0 6px rgba(207,34,46,0.45); z-index: 4; }
.fault { top: 0; bottom: 0; width: max(2px, calc(var(--d) * var(--z) * 1px)); }
.fault span { font-size: 10px; position: sticky; top: 12px; padding: 0 3px; white-space: nowrap; background: rgba(255,255,255,0.7); z-index: 1; }
.op, .lane { margin-top: var(--label-shift, 0px); }
.tick { top: 0; bottom: 0; border-left: 1px solid #eaeef2; font-size: 10px; color: #656d76; padding-left: 2px; }
.key { display: inline-block; width: 12px; height: 10px; margin: 0 4px 0 10px; border-radius: 2px; vertical-align: middle; }
"#;

pub fn timeline_html(data: &RunData) -> String {
    let (first, end) = timeline_range(data);
    let shown = &data.ops[first..end];
    let t0 = shown.iter().map(|op| op.call_time_ns).min().unwrap_or(0);
    let t1 = shown.iter().map(|op| op.end_ns(data.end_ns)).max().unwrap_or(t0).max(t0 + 1);
    let ms = |ns: u64| (ns.saturating_sub(t0)) as f64 / 1e6;
    let concurrency = data.concurrency();
    // Rows: a worker's successive processes share its row (a worker whose op ended info goes on
    // under process + concurrency).
    let mut lanes: Vec<u64> = shown.iter().map(|op| concurrency.map_or(op.process, |c| op.process % c)).collect();
    lanes.sort_unstable();
    lanes.dedup();
    let lane_of = |process: u64| {
        let lane = concurrency.map_or(process, |c| process % c);
        lanes.binary_search(&lane).unwrap_or(0)
    };
    let row_px = 15;
    let top_px = 18;
    let height_px = top_px + row_px * lanes.len() + 10;
    let failing: Option<u64> = data.anomalies.first().map(|a| a.failing_call_index);
    let window: std::collections::HashSet<u64> =
        data.anomalies.iter().flat_map(|a| a.window_call_indexes.iter().copied()).collect();

    let mut page = String::new();
    let name = test_field(data, &["name"]).map(plain).unwrap_or_else(|| "run".to_string());
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>faultline timeline: {}</title><style>{STYLE}{TIMELINE_STYLE}</style></head><body>",
        escape(&name)
    );
    let _ = write!(page, r#"<h1>Timeline of <code>{}</code> {}</h1>"#, escape(&name), verdict_badge(data));
    page.push_str(r#"<div id="bar"><a href="index.html">← report</a> &nbsp; zoom <button id="zoomout">−</button> <button id="zoomin">+</button> <button id="fit">fit</button>"#);
    if failing.is_some() {
        page.push_str(r#" <button id="tofail">go to the failing op</button>"#);
    }
    for outcome in Outcome::ALL {
        let _ = write!(page, r#"<span class="key" style="background:{}"></span>{}"#, outcome.css(), outcome.name());
    }
    let colours = fault_colours(&data.faults);
    for (family, colour) in &colours {
        let _ = write!(
            page,
            r#"<span class="key" style="background:{};opacity:0.35"></span>{}"#,
            css_colour(colour),
            escape(family)
        );
    }
    page.push_str("<br><span class=\"muted\">");
    let _ = write!(
        page,
        "{} ops on {} rows (one per worker), {:.2} s from {:.2} s. Hover a bar for the op.",
        shown.len(),
        lanes.len(),
        (t1 - t0) as f64 / 1e9,
        seconds(t0)
    );
    if shown.len() < data.ops.len() {
        let _ = write!(
            page,
            " <b>Bounded: showing ops {} to {} of {} ({} before and {} after left out{}); every op is in history.jsonl.</b>",
            first + 1,
            end,
            data.ops.len(),
            first,
            data.ops.len() - end,
            if failing.is_some() { ", centred on the failing op" } else { "" }
        );
    }
    page.push_str("</span>");
    for (number, anomaly) in data.anomalies.iter().enumerate() {
        let first_line = anomaly.text.lines().next().unwrap_or_default();
        let _ = write!(
            page,
            r##"<br><b>Anomaly {}:</b> <a href="#op-{}" class="jump" data-op="{}">{}</a> (failing op outlined in black, ops of its window in orange)"##,
            number + 1,
            anomaly.failing_call_index,
            anomaly.failing_call_index,
            escape(first_line)
        );
    }
    page.push_str("</div>");

    let _ = write!(
        page,
        r#"<div id="scroll"><div id="tl" style="--z:1;height:calc({height_px}px + var(--label-shift, 0px))" data-top-px="{top_px}" data-span-ms="{:.3}">"#,
        ms(t1)
    );
    for window in &data.faults {
        let start = window.start_ns.max(t0);
        let stop = window.end_ns(data.end_ns).min(t1);
        if stop < start {
            continue;
        }
        let colour = colours.get(&window.f).map(css_colour).unwrap_or_default();
        let _ = write!(
            page,
            r#"<div class="fault" style="--a:{:.3};--d:{:.3};background:{colour}26" title="{} from {:.2} s to {} (history index {})"><span style="color:{colour}">{}</span></div>"#,
            ms(start),
            ms(stop) - ms(start),
            escape(&window.describe()),
            seconds(window.start_ns),
            window.stop_ns.map(|s| format!("{:.2} s", seconds(s))).unwrap_or_else(|| "the end".into()),
            window.start_index,
            escape(&window.describe())
        );
    }
    for (lane_number, lane) in lanes.iter().enumerate() {
        let label = match concurrency {
            Some(_) => format!("w{lane}"),
            None => format!("p{lane}"),
        };
        let _ = write!(page, r#"<div class="lane" style="top:{}px">{label}</div>"#, top_px + row_px * lane_number);
    }
    for op in shown {
        let mut class = format!("op {}", op.outcome.name());
        if failing == Some(op.call_index) {
            class.push_str(" failing");
        } else if window.contains(&op.call_index) {
            class.push_str(" window");
        }
        let latency = op.latency_ns().map(|l| format!("{:.2} ms", l as f64 / 1e6)).unwrap_or_else(|| "pending".into());
        let _ = write!(
            page,
            r#"<div id="op-{}" class="{class}" style="--a:{:.3};--d:{:.3};top:{}px;background:{}" title="process {} · {} · {} · {latency} · invoked at {:.3} s (history index {})"></div>"#,
            op.call_index,
            ms(op.call_time_ns),
            ms(op.end_ns(data.end_ns)) - ms(op.call_time_ns),
            top_px + row_px * lane_of(op.process),
            op.outcome.css(),
            op.process,
            escape(&op.describe()),
            op.outcome.name(),
            seconds(op.call_time_ns),
            op.call_index
        );
    }
    page.push_str("</div></div>");
    let _ = writeln!(
        page,
        "<script>{}</script></body></html>",
        TIMELINE_SCRIPT.replace("T0_SECONDS", &format!("{:.6}", seconds(t0)))
    );
    page
}

/// Zoom (pixels per millisecond in the CSS variable --z), time ticks, and jumping to an op.
const TIMELINE_SCRIPT: &str = r#"
(function () {
  var tl = document.getElementById('tl');
  var scroll = document.getElementById('scroll');
  var spanMs = parseFloat(tl.dataset.spanMs) || 1;
  var labelPx = 34;
  var z = 1;
  function ticks() {
    var old = tl.querySelectorAll('.tick');
    for (var i = 0; i < old.length; i++) old[i].remove();
    var steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, 300000];
    var step = steps[steps.length - 1];
    for (var j = 0; j < steps.length; j++) { if (steps[j] * z >= 90) { step = steps[j]; break; } }
    var count = Math.min(2000, Math.floor(spanMs / step) + 1);
    for (var k = 0; k < count; k++) {
      var t = document.createElement('div');
      t.className = 'tick';
      t.style.setProperty('--a', (k * step).toString());
      t.textContent = (T0_SECONDS + k * step / 1000).toFixed(step < 1000 ? 3 : 1) + ' s';
      tl.insertBefore(t, tl.firstChild);
    }
  }
  // Fault labels in rows under the time axis, so that labels of close windows do not overlap:
  // each goes in the first row where it clears the one before it at this zoom; past
  // MAX_LABEL_ROWS rows a label is hidden (its window's tooltip still names it). The op rows
  // move down below the label rows (--label-shift).
  var MAX_LABEL_ROWS = 4, LABEL_ROW_PX = 12, LABEL_TOP_PX = 12;
  function layoutLabels() {
    var labels = [].slice.call(tl.querySelectorAll('.fault span'));
    var start = function (label) { return parseFloat(label.parentNode.style.getPropertyValue('--a')); };
    labels.sort(function (x, y) { return start(x) - start(y); });
    var rowEnds = [];
    for (var i = 0; i < labels.length; i++) {
      var label = labels[i];
      label.style.display = '';
      var left = start(label) * z;
      var row = 0;
      while (row < rowEnds.length && rowEnds[row] > left) row++;
      if (row >= MAX_LABEL_ROWS) { label.style.display = 'none'; continue; }
      rowEnds[row] = left + label.offsetWidth + 4;
      label.style.top = (LABEL_TOP_PX + row * LABEL_ROW_PX) + 'px';
      label.dataset.row = row.toString();
    }
    var topPx = parseFloat(tl.dataset.topPx) || 0;
    var shift = rowEnds.length ? Math.max(0, LABEL_TOP_PX + rowEnds.length * LABEL_ROW_PX + 2 - topPx) : 0;
    tl.style.setProperty('--label-shift', shift + 'px');
  }
  function setZoom(next) {
    z = Math.max(1e-4, Math.min(next, 1000));
    tl.style.setProperty('--z', z.toString());
    tl.style.width = (labelPx + spanMs * z + 40) + 'px';
    tl.style.paddingLeft = '0';
    ticks();
    layoutLabels();
  }
  function fit() { setZoom((scroll.clientWidth - labelPx - 40) / spanMs); }
  function extent(els) {
    var lo = Infinity, hi = -Infinity;
    for (var i = 0; i < els.length; i++) {
      var a = parseFloat(els[i].style.getPropertyValue('--a'));
      var d = parseFloat(els[i].style.getPropertyValue('--d')) || 0;
      lo = Math.min(lo, a); hi = Math.max(hi, a + d);
    }
    return [lo, hi];
  }
  function focusOp(id) {
    var el = document.getElementById('op-' + id);
    if (!el) return;
    // The failing op comes with its window: zoom so that the window fills most of the view.
    var els = el.classList.contains('failing') ? [el].concat([].slice.call(tl.querySelectorAll('.window'))) : [el];
    var span = extent(els);
    var own = extent([el]);
    // Long indefinite ops in the window would zoom out too far: at most 10 s around the op.
    var width = Math.min(Math.max(span[1] - span[0], 0.5), Math.max(own[1] - own[0], 10000));
    setZoom(Math.max(z, (scroll.clientWidth - labelPx) * 0.8 / width));
    scroll.scrollLeft = Math.max(0, labelPx + (own[0] + own[1]) / 2 * z - scroll.clientWidth / 2);
    scroll.scrollTop = Math.max(0, el.offsetTop - scroll.clientHeight / 2);
  }
  scroll.addEventListener('scroll', function () { tl.style.setProperty('--sl', scroll.scrollLeft + 'px'); });
  document.getElementById('zoomin').onclick = function () { setZoom(z * 2); };
  document.getElementById('zoomout').onclick = function () { setZoom(z / 2); };
  document.getElementById('fit').onclick = fit;
  var jumps = document.querySelectorAll('a.jump');
  for (var i = 0; i < jumps.length; i++) {
    jumps[i].onclick = function (e) { e.preventDefault(); focusOp(this.dataset.op); };
  }
  var failing = document.querySelector('.failing');
  var toFail = document.getElementById('tofail');
  if (toFail && failing) toFail.onclick = function () { focusOp(failing.id.slice(3)); };
  fit();
  var hash = location.hash.match(/^#op-(\d+)$/);
  if (hash) focusOp(hash[1]);
  else if (failing) focusOp(failing.id.slice(3));
  // Tells a headless browser test that the script ran to the end.
  document.body.setAttribute('data-timeline-ready', 'yes');
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_printed_for_people() {
        assert_eq!(number_for_people(4.981071999999999), "4.98");
        assert_eq!(number_for_people(52.5), "52.5");
        assert_eq!(number_for_people(6.0), "6");
        assert_eq!(number_for_people(0.1234567), "0.123");
        assert_eq!(number_for_people(1234.56), "1235");
        assert_eq!(milliseconds_for_people(4.981071999999999), "5.0 ms");
        assert_eq!(milliseconds_for_people(0.4213), "0.42 ms");
        assert_eq!(milliseconds_for_people(1934.0), "1.93 s");
        assert_eq!(plain(&serde_json::json!(100.0)), "100");
        assert_eq!(plain(&serde_json::json!(7)), "7");
    }
}
