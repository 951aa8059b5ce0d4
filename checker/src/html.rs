//! A self-contained HTML page (no external assets) that draws a checked history: each process's
//! operations as bars on one time axis, coloured by outcome, with the ops of each anomaly's window
//! outlined and the op that cannot be linearised highlighted, as porcupine's visualisation does.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use crate::check::{CheckResult, OpSummary};
use crate::history::FaultPhase;

/// Past this many ops, only the ops around the anomalies (or the start) are drawn.
pub const MAX_DRAWN_OPS: usize = 10_000;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders the page. `title` names the history.
pub fn render(result: &CheckResult, title: &str) -> String {
    let ops = &result.all_ops;
    let end_time = ops
        .iter()
        .map(|o| o.return_time.unwrap_or(o.call_time))
        .chain(ops.iter().map(|o| o.call_time))
        .max()
        .unwrap_or(0);
    let window_ids: HashSet<usize> = result.anomalies.iter().flat_map(|a| a.window.iter().map(|o| o.id)).collect();
    let failing_ids: HashSet<usize> = result.anomalies.iter().map(|a| a.failing_op.id).collect();
    // Position of each op in the first anomaly's longest linearisable prefix, drawn on its bar as
    // porcupine does, so a person can follow the order the search found.
    let prefix_position: std::collections::HashMap<usize, usize> = result
        .anomalies
        .first()
        .map(|a| a.longest_prefix.iter().enumerate().map(|(k, o)| (o.id, k + 1)).collect())
        .unwrap_or_default();

    // Which ops to draw: all of them when few; otherwise those in the time span of the anomaly
    // windows (widened), or the first MAX_DRAWN_OPS.
    let (drawn, omitted_note): (Vec<&OpSummary>, Option<String>) = if ops.len() <= MAX_DRAWN_OPS {
        (ops.iter().collect(), None)
    } else {
        let spans: Vec<(u64, u64)> = result
            .anomalies
            .iter()
            .map(|a| {
                let lo = a.window.iter().map(|o| o.call_time).min().unwrap_or(0);
                let hi = a.window.iter().map(|o| o.return_time.unwrap_or(end_time)).max().unwrap_or(end_time);
                let margin = (hi - lo).max(1);
                (lo.saturating_sub(margin), hi + margin)
            })
            .collect();
        let mut chosen: Vec<&OpSummary> = if spans.is_empty() {
            ops.iter().take(MAX_DRAWN_OPS).collect()
        } else {
            ops.iter()
                .filter(|o| {
                    let (a, b) = (o.call_time, o.return_time.unwrap_or(end_time));
                    spans.iter().any(|&(lo, hi)| a <= hi && b >= lo)
                })
                .collect()
        };
        chosen.truncate(MAX_DRAWN_OPS);
        let note = format!(
            "{} of {} operations drawn (the time around the anomalies{}); the rest are left out to keep this page light.",
            chosen.len(),
            ops.len(),
            if spans.is_empty() { ", or the start of the history" } else { "" }
        );
        (chosen, Some(note))
    };
    let t0 = drawn.iter().map(|o| o.call_time).min().unwrap_or(0);
    let t1 = drawn.iter().map(|o| o.return_time.unwrap_or(end_time)).max().unwrap_or(t0 + 1).max(t0 + 1);

    // Rows: one per process, in process order.
    let mut rows: BTreeMap<u64, Vec<&OpSummary>> = BTreeMap::new();
    for op in &drawn {
        rows.entry(op.process).or_default().push(op);
    }
    let (label_width, plot_width, row_height) = (70.0, 1400.0, 22.0);
    let height = rows.len() as f64 * row_height + 40.0;
    let x = |t: u64| label_width + (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * plot_width;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="monospace" font-size="11">"#,
        label_width + plot_width + 20.0
    );
    // Fault windows, shaded.
    let mut open_faults: BTreeMap<String, u64> = BTreeMap::new();
    for fault in &result.fault_records {
        let name = format!("{} {}", fault.f, fault.targets.join(","));
        match fault.phase {
            FaultPhase::Start => {
                open_faults.insert(name, fault.time);
            }
            FaultPhase::Stop => {
                let start = open_faults.remove(&name).or_else(|| {
                    let key = open_faults.keys().find(|k| k.starts_with(&fault.f)).cloned()?;
                    open_faults.remove(&key)
                });
                if let Some(start) = start {
                    shade(&mut svg, x(start), x(fault.time), height, &name);
                }
            }
        }
    }
    for (name, start) in open_faults {
        shade(&mut svg, x(start), x(t1), height, &name);
    }
    for (row, (process, row_ops)) in rows.iter().enumerate() {
        let y = 20.0 + row as f64 * row_height;
        let _ = write!(svg, r#"<text x="4" y="{}">p{process}</text>"#, y + 14.0);
        for op in row_ops {
            let (a, b) = (x(op.call_time), x(op.return_time.unwrap_or(t1)));
            let width = (b - a).max(2.0);
            let class = if failing_ids.contains(&op.id) {
                "op failing"
            } else if window_ids.contains(&op.id) {
                "op window"
            } else {
                "op"
            };
            let _ = write!(
                svg,
                r#"<rect class="{class} {}" x="{a:.1}" y="{y:.1}" width="{width:.1}" height="{}" rx="2"><title>p{} {}{} [{}] index {}..{} line {}</title></rect>"#,
                escape(&op.outcome),
                row_height - 6.0,
                op.process,
                op.key.as_ref().map(|k| format!("key {k} ")).unwrap_or_default(),
                escape(&op.description),
                escape(&op.outcome),
                op.call_index,
                op.return_index.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                op.call_line
            );
            if let Some(k) = prefix_position.get(&op.id) {
                let _ = write!(svg, r#"<text x="{:.1}" y="{:.1}" class="order">{k}</text>"#, a, y - 1.0);
            }
            if width > 60.0 {
                let _ = write!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" class="label">{}</text>"#,
                    a + 3.0,
                    y + 11.0,
                    escape(&truncate(&op.description, (width / 7.0) as usize))
                );
            }
        }
    }
    svg.push_str("</svg>");

    let mut anomalies = String::new();
    for (i, anomaly) in result.anomalies.iter().enumerate() {
        let _ = write!(anomalies, "<h2 id=\"anomaly-{i}\">Anomaly {}</h2><pre>{}</pre>", i + 1, escape(&anomaly.text));
    }
    let verdict = result.verdict.as_str();
    let summary = format!(
        "model {}, {} events, {} client ops ({} searched), {} faults, {} partitions{}, checked in {:.1} ms",
        result.model_name(),
        result.events,
        result.ops,
        result.searched_ops,
        result.faults,
        result.partitions.len(),
        if result.partitioned { " (by key)" } else { " (not split by key)" },
        result.check_ms
    );
    let mut reason = result.reason.as_ref().map(|r| format!("<p>Why unknown: {}</p>", escape(r))).unwrap_or_default();
    if let Some(ladder) = &result.ladder {
        let _ = write!(reason, "<p class=\"ladder\"><b>How far from linearizable:</b> {}</p>", escape(&ladder.summary));
    }
    if result.nil_reads_unconstrained > 0 {
        let _ = write!(
            reason,
            "<p class=\"note\">{} ok reads of nil constrained nothing (Jepsen's meaning of a read of nil).</p>",
            result.nil_reads_unconstrained
        );
    }
    let omitted = omitted_note.map(|n| format!("<p class=\"note\">{}</p>", escape(&n))).unwrap_or_default();
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} — {verdict}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
.verdict {{ font-size: 1.6em; font-weight: bold; }}
.valid {{ color: #1a7f37; }} .invalid {{ color: #cf222e; }} .unknown {{ color: #9a6700; }}
pre {{ background: #f6f8fa; padding: 0.8em; overflow-x: auto; }}
.timeline {{ overflow-x: auto; border: 1px solid #ddd; }}
rect.op {{ stroke: #555; stroke-width: 0.5; }}
rect.ok {{ fill: #8fd19e; }} rect.fail {{ fill: #f4a6a6; }} rect.info, rect.pending {{ fill: #f5d76e; }}
rect.window {{ stroke: #0550ae; stroke-width: 2; }}
rect.failing {{ fill: #cf222e; stroke: #000; stroke-width: 2; }}
rect.fault {{ fill: #8250df; opacity: 0.12; }}
text.label {{ pointer-events: none; fill: #111; }}
text.order {{ pointer-events: none; fill: #0550ae; font-size: 9px; }}
.note {{ color: #666; }}
.legend span {{ display: inline-block; padding: 0 0.6em; margin-right: 0.4em; border: 1px solid #555; }}
</style></head><body>
<h1>{title}</h1>
<p class="verdict {verdict}">{verdict}</p>
<p>{summary}</p>
{reason}
{anomalies}
<h2>Timeline</h2>
<p class="legend"><span style="background:#8fd19e">ok</span><span style="background:#f4a6a6">fail</span><span style="background:#f5d76e">info / pending</span><span style="background:#cf222e;color:#fff">cannot be linearised</span><span style="border:2px solid #0550ae">in the anomaly's window</span><span style="background:#e8dff8">fault active</span> Blue numbers: the order of the longest linearisable prefix found. Hover a bar for the op.</p>
{omitted}
<div class="timeline">{svg}</div>
</body></html>
"#,
        title = escape(title)
    )
}

fn shade(svg: &mut String, a: f64, b: f64, height: f64, name: &str) {
    let _ = write!(
        svg,
        r#"<rect class="fault" x="{a:.1}" y="0" width="{:.1}" height="{height}"><title>{}</title></rect>"#,
        (b - a).max(1.0),
        escape(name)
    );
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
