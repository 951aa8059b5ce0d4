//! `faultline report` renders index.html, timeline.html, latency.svg and rate.svg from a run
//! directory, self-contained and bounded; `faultline serve` lists runs; `faultline workloads`
//! lists the workloads.

mod report_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use report_support::{fresh_dir, write_run};

fn faultline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
}

fn render(dir: &std::path::Path) -> String {
    let output = faultline().arg("report").arg(dir).output().unwrap();
    assert!(output.status.success(), "faultline report failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn read(dir: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// No page may reach outside the run directory: no remote script, stylesheet, font or image.
fn assert_self_contained(name: &str, text: &str) {
    let without_svg_namespace =
        text.replace("http://www.w3.org/2000/svg", "").replace("http://www.w3.org/1999/xlink", "");
    for needle in ["http://", "https://", "<script src", "@import", "@font-face", "<link"] {
        assert!(!without_svg_namespace.contains(needle), "{name} refers to something outside: {needle}");
    }
}

#[test]
fn an_invalid_run_gets_every_page_with_the_failing_op_highlighted() {
    let dir = fresh_dir("report-invalid");
    let run = write_run(&dir, 2000, true);
    let stdout = render(&dir);
    assert!(stdout.contains("index.html"), "{stdout}");

    let index = read(&dir, "index.html");
    assert!(index.contains("INVALID"));
    assert!(index.contains("seed") && index.contains("42"));
    for link in ["timeline.html", "latency.svg", "rate.svg", "history.jsonl", "results.json", "test.json"] {
        assert!(index.contains(&format!("href=\"{link}\"")), "index does not link {link}");
    }
    assert!(index.contains("partition") && index.contains("kill"), "faults fired are listed");
    assert!(index.contains("set-full"), "direct checkers are listed");
    // Measured numbers are printed for people (results.json has check_ms 4.981071999999999).
    assert!(index.contains("checked in 5.0 ms") && !index.contains("4.98107"), "check time as people read it");
    assert!(index.contains(&format!("timeline.html#op-{}", run.failing_call_index.unwrap())));

    let timeline = read(&dir, "timeline.html");
    let bars = timeline.matches("class=\"op ").count();
    assert_eq!(bars, run.n_ops, "one bar per op");
    let failing_bar = format!("id=\"op-{}\" class=\"op ", run.failing_call_index.unwrap());
    let failing_class = timeline.split(&failing_bar).nth(1).and_then(|rest| rest.split('"').next()).unwrap();
    assert!(failing_class.ends_with(" failing"), "the failing op is highlighted: {failing_class}");
    assert!(timeline.matches(" window\"").count() >= 5, "the ops of the failing window are highlighted");
    assert_eq!(timeline.matches("class=\"fault\"").count(), 2, "both fault windows are shaded");
    assert!(!timeline.contains("Bounded"), "2000 ops are all shown");

    let latency = read(&dir, "latency.svg");
    assert!(latency.starts_with("<svg"), "latency.svg is an SVG");
    assert!(latency.matches("<circle").count() + latency.matches("<polygon").count() > 1000, "the ops are drawn");
    assert!(latency.contains("latency (ms, log scale)"));
    let rate = read(&dir, "rate.svg");
    assert!(rate.starts_with("<svg"));
    assert!(rate.contains("<polyline") || rate.contains("<path"), "the rate lines are drawn");
    assert!(rate.contains("fault: partition"), "fault windows are in the legend");
    for name in ["index.html", "timeline.html", "latency.svg", "rate.svg"] {
        assert_self_contained(name, &read(&dir, name));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_valid_run_renders_without_anomalies_and_rendering_twice_is_the_same() {
    let dir = fresh_dir("report-valid");
    write_run(&dir, 300, false);
    render(&dir);
    let first = read(&dir, "timeline.html");
    assert!(read(&dir, "index.html").contains(">VALID<"));
    assert!(!first.contains(" failing\""));
    render(&dir);
    assert_eq!(first, read(&dir, "timeline.html"), "rendering is deterministic");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_large_timeline_shows_the_window_around_the_anomaly_and_says_what_it_left_out() {
    let dir = fresh_dir("report-large");
    let run = write_run(&dir, 30_000, true);
    let started = Instant::now();
    render(&dir);
    let elapsed = started.elapsed();
    eprintln!("rendered 30,000 ops in {elapsed:?}");
    let timeline = read(&dir, "timeline.html");
    assert_eq!(timeline.matches("class=\"op ").count(), 10_000);
    assert!(timeline.contains("Bounded: showing ops"), "the page says it left ops out");
    assert!(timeline.contains(&format!("id=\"op-{}\"", run.failing_call_index.unwrap())), "the failing op is shown");
    assert!(timeline.len() < 6_000_000, "timeline.html is {} bytes", timeline.len());
    assert!(read(&dir, "latency.svg").len() < 6_000_000);
    assert!(elapsed < Duration::from_secs(30), "rendering took {elapsed:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_without_results_still_gets_a_report() {
    let dir = fresh_dir("report-unfinished");
    write_run(&dir, 100, false);
    std::fs::remove_file(dir.join("results.json")).unwrap();
    render(&dir);
    assert!(read(&dir, "index.html").contains("NO VERDICT"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_run_directory_is_a_harness_error() {
    let output = faultline().args(["report", "/nonexistent/faultline/run"]).output().unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&output.stderr).contains("history.jsonl"));
}

fn http_get(address: &str, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.to_string(), body.to_string())
}

/// Kills the child (by its own handle) when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_lists_runs_newest_first_on_loopback_and_renders_reports_on_demand() {
    let store = fresh_dir("serve-store");
    for (stamp, invalid) in [("20261123T010000.000Z", false), ("20261123T020000.000Z", true)] {
        let dir = store.join("register").join(stamp);
        std::fs::create_dir_all(&dir).unwrap();
        write_run(&dir, 200, invalid);
    }
    std::os::unix::fs::symlink("register/20261123T020000.000Z", store.join("latest")).unwrap();
    let child = faultline()
        .arg("serve")
        .arg(&store)
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut first_line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut first_line).unwrap();
    let address = first_line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {first_line:?}"))
        .to_string();
    assert!(address.starts_with("127.0.0.1:"), "serve binds loopback by default: {address}");

    let (head, page) = http_get(&address, "/");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let newer = page.find("/runs/register/20261123T020000.000Z/").expect("newer run listed");
    let older = page.find("/runs/register/20261123T010000.000Z/").expect("older run listed");
    assert!(newer < older, "newest first");
    assert!(page.contains("invalid") && page.contains("valid"));
    assert!(page.contains("2026-11-23 02:00:00 UTC"));
    assert_eq!(page.matches("/runs/register/").count(), 4, "each run once (latest is not listed twice)");

    let (head, index) = http_get(&address, "/runs/register/20261123T020000.000Z/");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(index.contains("INVALID"), "the report was rendered on demand");
    // Re-checked after the report was rendered: the next visit renders it again.
    std::thread::sleep(Duration::from_millis(20));
    let results_path = store.join("register/20261123T020000.000Z/results.json");
    let results = std::fs::read_to_string(&results_path).unwrap().replace("\"invalid\"", "\"valid\"");
    std::fs::write(&results_path, results).unwrap();
    let (_, index) = http_get(&address, "/runs/register/20261123T020000.000Z/");
    assert!(index.contains(">VALID<"), "a stale report is rendered again");
    let (head, _) = http_get(&address, "/runs/register/20261123T020000.000Z/latency.svg");
    assert!(head.contains("image/svg+xml"), "{head}");
    let (head, _) = http_get(&address, "/runs/../../etc/passwd");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    drop(child);
    std::fs::remove_dir_all(&store).unwrap();
}

#[test]
fn workloads_lists_every_workload_with_its_model_and_nemeses() {
    let output = faultline().arg("workloads").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for (workload, model) in
        [("mixed", "kv"), ("register", "cas-register"), ("cas-register", "kv"), ("append", "stream"), ("set", "set")]
    {
        assert!(text.contains(&format!("\n{workload}")) || text.starts_with(workload), "{workload} missing:\n{text}");
        assert!(text.contains(&format!("model:    {model}")), "{model} missing:\n{text}");
    }
    // The default where the system runs streams (faultline-node); cas-register elsewhere.
    assert!(text.contains("mixed (default)"));
    assert!(text.contains("nemeses:  partition, kill, pause"));
    assert!(text.contains("checkers: set-full"));
}

#[test]
fn the_results_of_faultline_check_are_read_too() {
    // The synthetic reads return random values: the real checker finds the history invalid and
    // writes results.json in the harness's own layout, which the report reads.
    let dir = fresh_dir("report-check-cmd");
    write_run(&dir, 300, false);
    std::fs::remove_file(dir.join("results.json")).unwrap();
    let check =
        faultline().args(["check", "-m", "kv", "--out"]).arg(&dir).arg(dir.join("history.jsonl")).output().unwrap();
    assert_eq!(check.status.code(), Some(1), "{}", String::from_utf8_lossy(&check.stdout));
    render(&dir);
    assert!(read(&dir, "index.html").contains("INVALID"));
    assert!(read(&dir, "timeline.html").contains(" failing\""), "the checker's failing op is highlighted");
    assert!(read(&dir, "index.html").contains("href=\"check.html\""), "the checker's own page is linked");
    std::fs::remove_dir_all(&dir).unwrap();
}
