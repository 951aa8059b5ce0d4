//! `faultline serve [store]`: a small local web page listing the runs in a store (test, time,
//! verdict, duration, seed), newest first, each linking to its report. Loopback only unless
//! `--bind` says otherwise. HTTP/1.1 is hyper's (on a one-thread tokio runtime); what a request
//! gets is `reply`, a plain function of the method, the path and the store. Bounded: at most
//! `MAX_CONNECTIONS` connections at once (more get a 503), a request head of at most
//! `MAX_REQUEST_HEAD_BYTES` read within `IO_TIMEOUT`, each connection closed after one request
//! and `CONNECTION_TIMEOUT`.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;

use crate::report;
use crate::report::html::escape;

/// Connections served at once; more get a 503.
const MAX_CONNECTIONS: usize = 32;
/// The longest request head we read (hyper's smallest read buffer is 8 KiB).
const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
/// The longest wait for a request head.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection is kept, rendering its report included.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Runs listed on the page, newest first.
const MAX_LISTED_RUNS: usize = 1000;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The store directory holding the runs.
    #[arg(default_value = "store")]
    pub store: PathBuf,
    /// Address to listen on. Loopback by default: the reports show a lot about this machine.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

pub fn run(args: ServeArgs) -> crate::exit::Exit {
    match serve(&args) {
        Ok(()) => crate::exit::Exit::Valid,
        Err(e) => {
            eprintln!("faultline serve: {e:#}");
            crate::exit::Exit::HarnessFailure
        }
    }
}

fn serve(args: &ServeArgs) -> Result<()> {
    let store = args.store.canonicalize().with_context(|| format!("opening the store {}", args.store.display()))?;
    let listener = std::net::TcpListener::bind(SocketAddr::new(args.bind, args.port))
        .with_context(|| format!("listening on {}:{}", args.bind, args.port))?;
    let address = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    println!("faultline serve: http://{address}/ (store {})", store.display());
    let _ = std::io::stdout().flush();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(accept_loop(listener, Arc::new(store)))
}

async fn accept_loop(listener: std::net::TcpListener, store: Arc<PathBuf>) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let permit = permits.clone().try_acquire_owned().ok();
        let store = store.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let store = store.clone();
                let busy = permit.is_none();
                async move {
                    let reply = if busy {
                        Reply::text(503, "busy\n")
                    } else {
                        let (method, path) = (request.method().to_string(), request.uri().path().to_string());
                        tokio::task::spawn_blocking(move || reply(&method, &path, &store))
                            .await
                            .unwrap_or_else(|_| Reply::text(500, "the handler panicked\n"))
                    };
                    Ok::<_, std::convert::Infallible>(reply.into_response())
                }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(IO_TIMEOUT)
                .max_buf_size(MAX_REQUEST_HEAD_BYTES)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
        });
    }
}

/// What a request gets: status, content type and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    fn text(status: u16, text: &str) -> Reply {
        Reply { status, content_type: "text/plain", body: text.as_bytes().to_vec() }
    }

    fn into_response(self) -> hyper::Response<Full<Bytes>> {
        hyper::Response::builder()
            .status(self.status)
            .header("Content-Type", self.content_type)
            .header("Cache-Control", "no-cache")
            .header("X-Content-Type-Options", "nosniff")
            .body(Full::new(Bytes::from(self.body)))
            .expect("a status and plain headers make a response")
    }
}

/// The reply to `method path` (the request target's path, without query or fragment): the runs
/// page, or a file of a run directory, whose report is rendered first when it is stale.
pub fn reply(method: &str, path: &str, store: &Path) -> Reply {
    if method != "GET" && method != "HEAD" {
        return Reply::text(405, "only GET\n");
    }
    if path == "/" || path == "/index.html" {
        return Reply { status: 200, content_type: "text/html; charset=utf-8", body: runs_page(store).into_bytes() };
    }
    let Some(relative) = path.strip_prefix("/runs/") else {
        return Reply::text(404, "not found\n");
    };
    // Run directories and report files have plain names; anything else is refused outright.
    let plain = relative.split('/').all(|part| {
        part != ".." && part != "." && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    });
    if !plain {
        return Reply::text(400, "bad path\n");
    }
    let mut file = store.join(relative.trim_end_matches('/'));
    if file.is_dir() {
        if report_is_stale(&file) {
            if let Err(e) = report::render_run(&file) {
                return Reply::text(500, &format!("rendering the report: {e:#}\n"));
            }
        }
        file = file.join("index.html");
    }
    match file.canonicalize() {
        Ok(real) if real.starts_with(store) => match std::fs::read(&real) {
            Ok(body) => Reply { status: 200, content_type: content_type(&real), body },
            Err(_) => Reply::text(404, "not found\n"),
        },
        _ => Reply::text(404, "not found\n"),
    }
}

/// A run needs (re)rendering when it has a history and no index.html, or an index.html older
/// than its history or results (the run went on, or was re-checked, after the last rendering).
fn report_is_stale(run_dir: &Path) -> bool {
    let modified = |name: &str| std::fs::metadata(run_dir.join(name)).and_then(|m| m.modified()).ok();
    let Some(history) = modified("history.jsonl") else {
        return false;
    };
    match modified("index.html") {
        None => true,
        Some(index) => index < history || modified("results.json").is_some_and(|results| index < results),
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    }
}

/// One run of the store, as listed.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// `<test>/<timestamp>`, relative to the store.
    pub relative: String,
    pub test: String,
    pub stamp: String,
    pub verdict: String,
    pub vacuous: bool,
    pub duration_s: Option<f64>,
    pub seed: Option<u64>,
    pub workload: Option<String>,
}

/// Every run in the store, newest first (timestamps sort as text), at most MAX_LISTED_RUNS.
pub fn list_runs(store: &Path) -> Vec<RunSummary> {
    let read_json = |path: PathBuf| -> Value {
        std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null)
    };
    let mut runs = Vec::new();
    let Ok(tests) = std::fs::read_dir(store) else {
        return runs;
    };
    for test in tests.filter_map(|e| e.ok()) {
        // `latest` is a symlink to a run; list runs once, under their test.
        if test.file_type().map(|t| !t.is_dir()).unwrap_or(true) {
            continue;
        }
        let Ok(stamps) = std::fs::read_dir(test.path()) else {
            continue;
        };
        let test_name = test.file_name().to_string_lossy().to_string();
        for stamp in stamps.filter_map(|e| e.ok()) {
            let dir = stamp.path();
            if !dir.join("test.json").exists() && !dir.join("history.jsonl").exists() {
                continue;
            }
            let test_json = read_json(dir.join("test.json"));
            let results = read_json(dir.join("results.json"));
            let stamp_name = stamp.file_name().to_string_lossy().to_string();
            runs.push(RunSummary {
                relative: format!("{test_name}/{stamp_name}"),
                test: test_name.clone(),
                stamp: stamp_name,
                verdict: results.get("verdict").and_then(Value::as_str).unwrap_or("none").to_string(),
                vacuous: results.get("vacuous").and_then(Value::as_bool).unwrap_or(false),
                duration_s: results.get("duration_s").and_then(Value::as_f64),
                seed: test_json.get("seed").and_then(Value::as_u64),
                workload: test_json.pointer("/options/workload").and_then(Value::as_str).map(str::to_string),
            });
        }
    }
    runs.sort_by(|a, b| b.stamp.cmp(&a.stamp).then_with(|| a.test.cmp(&b.test)));
    runs.truncate(MAX_LISTED_RUNS);
    runs
}

/// `20261123T011500.123Z` as `2026-11-23 01:15:00 UTC`.
fn readable_stamp(stamp: &str) -> String {
    let b = stamp.as_bytes();
    if b.len() >= 15 && b[8] == b'T' {
        format!(
            "{}-{}-{} {}:{}:{} UTC",
            &stamp[0..4],
            &stamp[4..6],
            &stamp[6..8],
            &stamp[9..11],
            &stamp[11..13],
            &stamp[13..15]
        )
    } else {
        stamp.to_string()
    }
}

pub fn runs_page(store: &Path) -> String {
    let runs = list_runs(store);
    let mut page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>faultline runs</title><style>\
         body {{ font-family: system-ui, sans-serif; margin: 24px; color: #1f2328; }} \
         table {{ border-collapse: collapse; font-size: 14px; }} td, th {{ border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; }} \
         th {{ background: #f6f8fa; }} .valid {{ color: #1a7f37; font-weight: 700; }} .invalid {{ color: #cf222e; font-weight: 700; }} \
         .unknown, .vacuous {{ color: #9a6700; font-weight: 700; }} .none {{ color: #6e7781; }} td.n {{ text-align: right; }}\
         </style></head><body><h1>faultline runs</h1><p>{} runs in <code>{}</code>, newest first.</p>\
         <table><tr><th>test</th><th>started (UTC)</th><th>verdict</th><th>duration (s)</th><th>seed</th><th>workload</th><th></th></tr>",
        runs.len(),
        escape(&store.display().to_string())
    );
    for run in &runs {
        let (class, verdict) = match (run.verdict.as_str(), run.vacuous) {
            ("valid", true) => ("vacuous", "vacuous".to_string()),
            ("none", _) => ("none", "no verdict".to_string()),
            (v, _) => (v, v.to_string()),
        };
        page.push_str(&format!(
            "<tr><td><a href=\"/runs/{0}/\">{1}</a></td><td>{2}</td><td class=\"{3}\">{4}</td><td class=\"n\">{5}</td>\
             <td>{6}</td><td>{7}</td><td><a href=\"/runs/{0}/timeline.html\">timeline</a></td></tr>",
            escape(&run.relative),
            escape(&run.test),
            escape(&readable_stamp(&run.stamp)),
            class,
            escape(&verdict),
            run.duration_s.map(|d| format!("{d:.1}")).unwrap_or_default(),
            run.seed.map(|s| s.to_string()).unwrap_or_default(),
            escape(run.workload.as_deref().unwrap_or("")),
        ));
    }
    page.push_str("</table></body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gets_of_plain_paths_inside_the_store_are_served() {
        let store = std::env::temp_dir().join(format!("faultline-serve-{}", std::process::id()));
        std::fs::create_dir_all(store.join("register/20261123T010000.000Z")).unwrap();
        std::fs::write(store.join("register/20261123T010000.000Z/latency.svg"), "<svg/>").unwrap();
        let store = store.canonicalize().unwrap();
        assert_eq!(reply("POST", "/", &store).status, 405);
        assert_eq!(reply("GET", "/elsewhere", &store).status, 404);
        assert_eq!(reply("GET", "/runs/../../etc/passwd", &store).status, 400);
        assert_eq!(reply("GET", "/runs/register/nothing-here.svg", &store).status, 404);
        let svg = reply("GET", "/runs/register/20261123T010000.000Z/latency.svg", &store);
        assert_eq!((svg.status, svg.content_type, svg.body.as_slice()), (200, "image/svg+xml", &b"<svg/>"[..]));
        let page = reply("HEAD", "/", &store);
        assert_eq!((page.status, page.content_type), (200, "text/html; charset=utf-8"));
        // A directory without test.json or history.jsonl is no run.
        assert!(String::from_utf8(page.body).unwrap().contains("<p>0 runs in"));
        std::fs::remove_dir_all(&store).unwrap();
    }
}
