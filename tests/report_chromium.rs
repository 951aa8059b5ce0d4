//! The report in a real browser: headless Chromium (Debian's `chromium`) opens index.html,
//! timeline.html and the two plots of a synthetic invalid run through scripts/screenshot-report.sh;
//! the screenshots must show the verdict, the op bars and the plotted points, and no page may log
//! a script error. Without chromium the test says so and passes, unless
//! FAULTLINE_REQUIRE_CHROMIUM=1 (CI sets it after `apt-get install -y chromium`).

mod report_support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use report_support::{fresh_dir, write_run, write_run_with_faults};

/// A decoded screenshot: width, height and RGB pixels.
struct Image {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

fn decode(path: &Path) -> Image {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let bytes = &buffer[..info.buffer_size()];
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let rgb = bytes.chunks_exact(channels).map(|p| [p[0], p[1], p[2]]).collect();
    Image { width: info.width, height: info.height, rgb }
}

impl Image {
    fn distinct_colours(&self) -> usize {
        self.rgb.iter().collect::<HashSet<_>>().len()
    }

    fn fraction_not_white(&self) -> f64 {
        self.rgb.iter().filter(|p| p.iter().any(|c| *c < 240)).count() as f64 / self.rgb.len() as f64
    }

    /// Pixels within `tolerance` of `colour` on every channel.
    fn pixels_near(&self, colour: (u8, u8, u8), tolerance: u8) -> usize {
        let near = |a: u8, b: u8| a.abs_diff(b) <= tolerance;
        self.rgb.iter().filter(|p| near(p[0], colour.0) && near(p[1], colour.1) && near(p[2], colour.2)).count()
    }
}

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|name| Command::new(name).arg("--version").output().map(|o| o.status.success()).unwrap_or(false))
        .map(str::to_string)
}

const OK_GREEN: (u8, u8, u8) = (46, 160, 67);
const FAIL_RED: (u8, u8, u8) = (207, 34, 46);

#[test]
fn chromium_draws_the_report_without_script_errors() {
    if chromium().is_none() {
        assert!(
            std::env::var("FAULTLINE_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "FAULTLINE_REQUIRE_CHROMIUM=1 but chromium is not installed"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install -y chromium); the report was not opened");
        return;
    }
    let dir = fresh_dir("report-chromium");
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    write_run(&run_dir, 2000, true);
    let render = Command::new(env!("CARGO_BIN_EXE_faultline")).arg("report").arg(&run_dir).output().unwrap();
    assert!(render.status.success(), "{}", String::from_utf8_lossy(&render.stderr));

    let shots = dir.join("shots");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/screenshot-report.sh");
    let output = Command::new("bash").arg(&script).arg(&run_dir).arg(&shots).output().unwrap();
    let console = std::fs::read_to_string(shots.join("console.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "screenshot-report.sh failed ({:?}):\n{}\nconsole:\n{console}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let dom = std::fs::read_to_string(shots.join("timeline.dom.html")).unwrap();
    assert!(dom.contains("data-timeline-ready=\"yes\""), "the timeline's script ran to its end");
    assert!(dom.contains("class=\"tick\""), "the script drew the time axis");

    let index = decode(&shots.join("index.png"));
    assert_eq!((index.width, index.height), (1400, 900));
    assert!(index.distinct_colours() > 20, "index.png looks blank: {} colours", index.distinct_colours());
    assert!(index.pixels_near(FAIL_RED, 12) > 200, "the INVALID badge is drawn");

    let timeline = decode(&shots.join("timeline.png"));
    assert!(timeline.fraction_not_white() > 0.05, "timeline.png is mostly blank: {}", timeline.fraction_not_white());
    assert!(timeline.pixels_near(OK_GREEN, 12) > 200, "ok bars are drawn");

    for plot in ["latency", "rate"] {
        let image = decode(&shots.join(format!("{plot}.png")));
        assert!(image.distinct_colours() > 20, "{plot}.png looks blank");
        assert!(image.pixels_near(OK_GREEN, 12) > 50, "{plot}: the ok series is drawn");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Fault windows that start a few milliseconds apart get their labels in rows of their own under
/// the time axis, laid out by the timeline's script at the zoom the page opens with.
#[test]
fn labels_of_close_fault_windows_do_not_overlap_in_chromium() {
    if chromium().is_none() {
        assert!(
            std::env::var("FAULTLINE_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "FAULTLINE_REQUIRE_CHROMIUM=1 but chromium is not installed"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install -y chromium); the report was not opened");
        return;
    }
    let dir = fresh_dir("report-close-faults");
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    // The partition starts at 250 of 1000; these three start within 1.5% of it.
    let close = [("pause", 255, 400, "n3"), ("clock-skew", 260, 270, "n1"), ("kill", 265, 300, "n4")];
    write_run_with_faults(&run_dir, 400, false, &close);
    let render = Command::new(env!("CARGO_BIN_EXE_faultline")).arg("report").arg(&run_dir).output().unwrap();
    assert!(render.status.success(), "{}", String::from_utf8_lossy(&render.stderr));
    let shots = dir.join("shots");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/screenshot-report.sh");
    let output = Command::new("bash").arg(&script).arg(&run_dir).arg(&shots).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let dom = std::fs::read_to_string(shots.join("timeline.dom.html")).unwrap();
    // Each label's row, by its text.
    let row_of = |text: &str| -> u32 {
        let at = dom.find(&format!(">{text}</span>")).unwrap_or_else(|| panic!("no label {text:?}"));
        let tag_start = dom[..at].rfind("<span").unwrap();
        let tag = &dom[tag_start..at];
        let row = tag.split("data-row=\"").nth(1).unwrap_or_else(|| panic!("{text:?} has no row: {tag}"));
        row.split('"').next().unwrap().parse().unwrap()
    };
    let rows: Vec<u32> =
        ["partition n1,n2,n3,n4,n5 (halves)", "pause n3", "clock-skew n1", "kill n4"].map(row_of).to_vec();
    let mut distinct = rows.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "four labels of close windows share rows: {rows:?}");
    // The kill of n2 starts long after the partition's label ends: it goes back to the first row.
    assert_eq!(row_of("kill n2"), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
