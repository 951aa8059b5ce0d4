//! A self-contained HTML page (no external assets) for a transactional check: the verdict of each
//! consistency model, and each anomaly as its transactions, a drawing of its cycle (inline SVG)
//! and every edge's reason.

use std::fmt::Write;

use super::TxnCheckResult;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The cycle drawn as its transactions on a circle, each edge an arrow labelled with its kind.
fn cycle_svg(anomaly: &super::AnomalyReport, number: usize) -> String {
    let n = anomaly.txns.len().max(1);
    let (size, radius) = (320.0_f64, 110.0_f64);
    let centre = size / 2.0;
    let position = |id: u32| -> (f64, f64) {
        let i = anomaly.txns.iter().position(|t| t.id == id).unwrap_or(0) as f64;
        let angle = std::f64::consts::TAU * i / n as f64 - std::f64::consts::FRAC_PI_2;
        (centre + radius * angle.cos(), centre + radius * angle.sin())
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" viewBox=\"0 0 {size} {size}\">\
         <defs><marker id=\"arrow{number}\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#444\"/></marker></defs>"
    );
    for step in &anomaly.steps {
        let ((x1, y1), (x2, y2)) = (position(step.from), position(step.to));
        let (dx, dy) = (x2 - x1, y2 - y1);
        let length = (dx * dx + dy * dy).sqrt().max(1.0);
        let (ux, uy) = (dx / length, dy / length);
        let (sx, sy, ex, ey) = (x1 + ux * 24.0, y1 + uy * 24.0, x2 - ux * 24.0, y2 - uy * 24.0);
        // Bend each arrow to its left so that a pair of opposite edges does not overlap.
        let (mx, my) = ((sx + ex) / 2.0 - uy * 18.0, (sy + ey) / 2.0 + ux * 18.0);
        let colour = match step.edge.name() {
            "rw" => "#c0392b",
            "wr" => "#2874a6",
            "ww" => "#1e8449",
            _ => "#7d3c98",
        };
        let _ = write!(
            svg,
            "<path d=\"M{sx:.1},{sy:.1} Q{mx:.1},{my:.1} {ex:.1},{ey:.1}\" stroke=\"{colour}\" stroke-width=\"2\" fill=\"none\" marker-end=\"url(#arrow{number})\"/>\
             <text x=\"{mx:.1}\" y=\"{my:.1}\" font-size=\"12\" fill=\"{colour}\" text-anchor=\"middle\">{}</text>",
            step.edge.name()
        );
    }
    for txn in &anomaly.txns {
        let (x, y) = position(txn.id);
        let _ = write!(
            svg,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"20\" fill=\"#fdfefe\" stroke=\"#333\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"13\" text-anchor=\"middle\">T{}</text>",
            y + 4.0,
            txn.id
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Renders the page. `title` names the history.
pub fn render(result: &TxnCheckResult, title: &str) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>faultline check: {}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px}}\
         .valid{{color:#1e8449}}.invalid{{color:#c0392b}}.unknown{{color:#b7950b}}\
         code{{font-size:13px}}section{{border-top:1px solid #ddd;margin-top:1.5em}}</style></head><body>",
        escape(title)
    );
    let _ = write!(
        page,
        "<h1>{}</h1><p>{} history, checked for <b>{}</b>: <b class=\"{v}\">{v}</b>. {} transactions ({} committed, \
         {} aborted, {} indeterminate), {:.1} ms.</p>",
        escape(title),
        result.model.name(),
        result.consistency.name(),
        result.txns,
        result.committed,
        result.aborted,
        result.indeterminate,
        result.check_ms,
        v = result.verdict.as_str()
    );
    page.push_str("<table><tr><th>model</th><th>verdict</th><th>why</th></tr>");
    for m in &result.models {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"{v}\">{v}</td><td>{}</td></tr>",
            m.model.name(),
            escape(m.reason.as_deref().unwrap_or("")),
            v = m.verdict.as_str()
        );
    }
    page.push_str("</table>");
    if !result.anomaly_counts.is_empty() {
        let counts: Vec<String> = result.anomaly_counts.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        let _ = write!(page, "<p>Anomalies found: {}.</p>", escape(&counts.join(", ")));
    }
    for (number, anomaly) in result.anomalies.iter().enumerate() {
        let forbidders: Vec<&str> = anomaly.forbidden_by.iter().map(|c| c.name()).collect();
        let _ = write!(
            page,
            "<section><h2>{}</h2><p>{} (forbidden by {}).</p><table><tr><th>txn</th><th>process</th><th>status</th>\
             <th>lines</th><th>micro-ops</th></tr>",
            anomaly.kind.name(),
            escape(&anomaly.summary),
            forbidders.join(", ")
        );
        for t in &anomaly.txns {
            let lines = match t.return_line {
                Some(r) => format!("{}–{}", t.call_line, r),
                None => t.call_line.to_string(),
            };
            let _ = write!(
                page,
                "<tr><td>T{}</td><td>{}</td><td>{:?}</td><td>{lines}</td><td><code>{}</code></td></tr>",
                t.id,
                t.process,
                t.status,
                escape(&t.mops)
            );
        }
        page.push_str("</table>");
        if !anomaly.steps.is_empty() {
            page.push_str(&cycle_svg(anomaly, number));
            page.push_str("<ol>");
            for step in &anomaly.steps {
                let _ = write!(
                    page,
                    "<li>T{} <b>{}</b> T{}: {}</li>",
                    step.from,
                    step.edge.name(),
                    step.to,
                    escape(&step.explanation)
                );
            }
            page.push_str("</ol>");
        }
        page.push_str("</section>");
    }
    page.push_str("</body></html>\n");
    page
}
