//! latency.svg and rate.svg, drawn with plotters' SVG backend: text is left to the browser's
//! sans-serif, so no font file or system library is needed.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::data::{FaultWindow, Outcome, RunData};

pub const WIDTH_PX: u32 = 1200;
pub const HEIGHT_PX: u32 = 520;
/// Past this many points the latency plot keeps every n-th ok op (fail and info ops are all kept),
/// so that the SVG stays small enough for a browser.
pub const MAX_LATENCY_POINTS: usize = 20_000;

/// Colours of fault families, in the order families first appear.
const FAULT_COLOURS: [RGBColor; 6] = [
    RGBColor(31, 111, 235),
    RGBColor(191, 57, 137),
    RGBColor(110, 118, 129),
    RGBColor(26, 127, 125),
    RGBColor(154, 103, 0),
    RGBColor(130, 80, 223),
];

/// Each fault family's colour, shared by every page of the report.
pub fn fault_colours(faults: &[FaultWindow]) -> BTreeMap<String, RGBColor> {
    let mut colours = BTreeMap::new();
    for window in faults {
        let next = colours.len() % FAULT_COLOURS.len();
        colours.entry(window.f.clone()).or_insert(FAULT_COLOURS[next]);
    }
    colours
}

pub fn css_colour(colour: &RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", colour.0, colour.1, colour.2)
}

fn outcome_colour(outcome: Outcome) -> RGBColor {
    let (r, g, b) = outcome.rgb();
    RGBColor(r, g, b)
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot: {e:?}")
}

/// The legend of every plot: top right, on a translucent white box.
fn draw_legend<'a, DB: DrawingBackend + 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// Shades each fault window over the whole height, with one legend entry per family.
fn shade_faults<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    data: &RunData,
    y_low: f64,
    y_high: f64,
) -> Result<()> {
    let colours = fault_colours(&data.faults);
    for (family, colour) in &colours {
        let windows: Vec<_> = data.faults.iter().filter(|w| &w.f == family).collect();
        let colour = *colour;
        chart
            .draw_series(windows.iter().map(|w| {
                Rectangle::new(
                    [(seconds(w.start_ns), y_low), (seconds(w.end_ns(data.end_ns)), y_high)],
                    colour.mix(0.13).filled(),
                )
            }))
            .map_err(plot_error)?
            .label(format!("fault: {family}"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.mix(0.35).filled()));
    }
    Ok(())
}

/// The latency of every completed op over time (by its invocation), by f and outcome, log scale.
pub fn latency_svg(data: &RunData) -> Result<String> {
    let mut points: Vec<(f64, f64, &str, Outcome)> = data
        .ops
        .iter()
        .filter_map(|op| {
            op.latency_ns().map(|l| (seconds(op.call_time_ns), (l as f64 / 1e6).max(0.001), op.f.as_str(), op.outcome))
        })
        .collect();
    let total_points = points.len();
    if total_points > MAX_LATENCY_POINTS {
        let keep_every = total_points.div_ceil(MAX_LATENCY_POINTS);
        let mut ok_seen = 0usize;
        points.retain(|p| {
            if p.3 != Outcome::Ok {
                return true;
            }
            ok_seen += 1;
            ok_seen.is_multiple_of(keep_every)
        });
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        draw_latency(&root, data, &points, total_points)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn draw_latency<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &RunData,
    points: &[(f64, f64, &str, Outcome)],
    total_points: usize,
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let x_max = seconds(data.end_ns).max(1.0);
    let y_low = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min).clamp(0.001, 1.0) / 2.0;
    let y_high = points.iter().map(|p| p.1).fold(1.0, f64::max) * 2.0;
    let caption = if points.len() < total_points {
        format!("Latency of each op by invocation time ({} of {total_points} ops: every fail and info op, a sample of ok ops)", points.len())
    } else {
        format!("Latency of each op by invocation time ({total_points} ops)")
    };
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (y_low..y_high).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("time since the start of the run (s)")
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|v| if *v >= 1.0 { format!("{v:.0}") } else { format!("{v:.3}") })
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_error)?;
    shade_faults(&mut chart, data, y_low, y_high)?;
    // Where the checker found each anomaly: the failing op's invocation.
    let anomaly_times: Vec<f64> = data
        .anomalies
        .iter()
        .filter_map(|a| data.ops.iter().find(|op| op.call_index == a.failing_call_index))
        .map(|op| seconds(op.call_time_ns))
        .collect();
    if !anomaly_times.is_empty() {
        let red = RGBColor(207, 34, 46);
        chart
            .draw_series(
                anomaly_times.iter().map(|t| PathElement::new(vec![(*t, y_low), (*t, y_high)], red.stroke_width(2))),
            )
            .map_err(plot_error)?
            .label("anomaly (failing op)")
            .legend(move |(x, y)| PathElement::new(vec![(x + 6, y - 6), (x + 6, y + 6)], red.stroke_width(2)));
    }
    let mut fs: Vec<&str> = points.iter().map(|p| p.2).collect();
    fs.sort_unstable();
    fs.dedup();
    for (f_number, f) in fs.iter().enumerate() {
        for outcome in Outcome::ALL {
            let series: Vec<(f64, f64)> =
                points.iter().filter(|p| p.2 == *f && p.3 == outcome).map(|p| (p.0, p.1)).collect();
            if series.is_empty() {
                continue;
            }
            let colour = outcome_colour(outcome);
            let label = format!("{f} {}", outcome.name());
            // The shape says which op, the colour how it ended.
            let drawn = match f_number % 3 {
                0 => chart.draw_series(series.iter().map(|p| Circle::new(*p, 2, colour.mix(0.8).filled()))),
                1 => chart.draw_series(series.iter().map(|p| TriangleMarker::new(*p, 3, colour.mix(0.8).filled()))),
                _ => chart.draw_series(series.iter().map(|p| Cross::new(*p, 3, colour.mix(0.8)))),
            }
            .map_err(plot_error)?;
            match f_number % 3 {
                0 => drawn.label(label).legend(move |(x, y)| Circle::new((x + 6, y), 3, colour.filled())),
                1 => drawn.label(label).legend(move |(x, y)| TriangleMarker::new((x + 6, y), 4, colour.filled())),
                _ => drawn.label(label).legend(move |(x, y)| Cross::new((x + 6, y), 4, colour)),
            };
        }
    }
    draw_legend(&mut chart)
}

/// The width of a rate bucket: one second, or wider for long runs (about 300 buckets at most).
pub fn rate_bucket_s(duration_s: f64) -> f64 {
    (duration_s / 300.0).ceil().max(1.0)
}

/// Completed ops per second over time (by completion time), one line per outcome.
pub fn rate_svg(data: &RunData) -> Result<String> {
    let duration_s = seconds(data.end_ns).max(1.0);
    let bucket_s = rate_bucket_s(duration_s);
    let n_buckets = (duration_s / bucket_s).ceil() as usize + 1;
    let mut rates: BTreeMap<Outcome, Vec<f64>> = BTreeMap::new();
    for op in &data.ops {
        let Some(return_ns) = op.return_time_ns else {
            continue;
        };
        let bucket = ((seconds(return_ns) / bucket_s) as usize).min(n_buckets - 1);
        rates.entry(op.outcome).or_insert_with(|| vec![0.0; n_buckets])[bucket] += 1.0 / bucket_s;
    }
    let y_high = rates.values().flatten().fold(1.0f64, |a, b| a.max(*b)) * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Completed ops per second, by outcome ({bucket_s:.0} s buckets)"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..duration_s, 0f64..y_high)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("time since the start of the run (s)")
            .y_desc("ops/s")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_error)?;
        shade_faults(&mut chart, data, 0.0, y_high)?;
        for (outcome, buckets) in &rates {
            let colour = outcome_colour(*outcome);
            let line = buckets.iter().enumerate().map(|(i, rate)| ((i as f64 + 0.5) * bucket_s, *rate));
            chart
                .draw_series(LineSeries::new(line, colour.stroke_width(2)))
                .map_err(plot_error)?
                .label(outcome.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(2)));
        }
        draw_legend(&mut chart)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}
