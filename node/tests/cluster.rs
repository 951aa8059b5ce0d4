//! Real 3-node clusters of the `faultline-node` binary on loopback.
//!
//! Every process is killed when the test ends, pass or panic ([`Cluster`]'s Drop).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faultline_node::client::{Client, ClientOptions, Outcome};
use faultline_node::protocol::{
    self, classify, ErrorName, OpAttempts, OpKind, Request, RequestBody, Response, ResponseResult,
};
use faultline_node::store::Op;
use serde_json::{json, Value};

struct Cluster {
    addrs: Vec<String>,
    /// The addresses the nodes dial each other at (proxies in partition tests).
    peer_addrs: Vec<String>,
    dirs: Vec<PathBuf>,
    children: Vec<Option<Child>>,
    root: PathBuf,
}

/// A port for a node or proxy to listen on. Not from port 0: the kernel hands those out of the
/// ephemeral range, which every outgoing connection also draws from, so between our probe and the
/// node's bind another test's connection could take it ("Address already in use" made a node of
/// a parallel test miss its cluster). Ports below the ephemeral range (32768+ here) are only ever
/// taken by a bind; the counter keeps this process's tests apart.
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    loop {
        let offset = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + (std::process::id() as u16 % 64) * 150 + offset % 150;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
        assert!(offset < 10_000, "no free port below the ephemeral range");
    }
}

impl Cluster {
    fn start(name: &str, n: usize, extra_args: &[&str]) -> Cluster {
        let root = std::env::temp_dir().join(format!("faultline-cluster-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let addrs: Vec<String> = (0..n).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        Cluster::start_with(name, addrs.clone(), addrs, extra_args)
    }

    fn start_with(name: &str, addrs: Vec<String>, peer_addrs: Vec<String>, extra_args: &[&str]) -> Cluster {
        let n = addrs.len();
        let root = std::env::temp_dir().join(format!("faultline-cluster-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dirs = (0..n).map(|i| root.join(format!("n{}", i + 1))).collect();
        let mut cluster = Cluster { addrs, peer_addrs, dirs, children: (0..n).map(|_| None).collect(), root };
        for i in 0..n {
            cluster.spawn(i, extra_args);
        }
        cluster
    }

    fn peers(&self) -> String {
        self.peer_addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect::<Vec<_>>().join(",")
    }

    fn spawn(&mut self, i: usize, extra_args: &[&str]) {
        std::fs::create_dir_all(&self.root).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("n{}.log", i + 1)))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_faultline-node"))
            .args(["--id", &(i + 1).to_string(), "--listen", &self.addrs[i], "--peers", &self.peers(), "--data-dir"])
            .arg(&self.dirs[i])
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn faultline-node");
        self.children[i] = Some(child);
    }

    /// SIGKILL: no chance to flush anything.
    fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn sigterm(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let mut child = self.children[i].take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// The index of the node every live node agrees leads, within `timeout`.
    async fn leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for (i, addr) in self.addrs.iter().enumerate() {
                if self.children[i].is_none() {
                    continue;
                }
                if let Ok(status) = Client::status(addr, Duration::from_millis(300)).await {
                    if status["role"] == "leader" {
                        return i;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader within {timeout:?}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        } else {
            eprintln!("node logs kept in {}", self.root.display());
        }
    }
}

fn client(cluster: &Cluster, client_id: u64) -> Client {
    let mut options = ClientOptions::new(cluster.addrs.clone(), client_id);
    options.op_timeout = Duration::from_secs(10);
    Client::new(options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_serve_kv_and_streams_with_redirects_and_follower_reads() {
    let cluster = Cluster::start("basic", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(15)).await;
    let mut c = client(&cluster, 1);
    assert_eq!(c.execute(Op::Read { key: "k".into() }).await, Outcome::Ok(Value::Null));
    assert_eq!(c.execute(Op::Write { key: "k".into(), value: json!(1) }).await, Outcome::Ok(Value::Null));
    assert_eq!(
        c.execute(Op::Cas { key: "k".into(), from: json!(2), to: json!(3) }).await,
        Outcome::Fail("cas-mismatch".into())
    );
    assert_eq!(c.execute(Op::Cas { key: "k".into(), from: json!(1), to: json!(3) }).await, Outcome::Ok(Value::Null));
    assert_eq!(
        c.execute(Op::Append { stream: "s".into(), event: json!("a"), expected_version: Some(0) }).await,
        Outcome::Ok(json!(1))
    );
    assert_eq!(
        c.execute(Op::Append { stream: "s".into(), event: json!("b"), expected_version: Some(0) }).await,
        Outcome::Fail("version-mismatch".into())
    );
    // A client that only knows a follower is redirected, and the follower serves a ReadIndex read.
    let follower = (leader + 1) % 3;
    let mut f = Client::new(ClientOptions::new(vec![cluster.addrs[follower].clone()], 2));
    assert_eq!(f.execute(Op::Read { key: "k".into() }).await, Outcome::Ok(json!(3)));
    assert_eq!(f.execute(Op::ReadStream { stream: "s".into(), from_version: 0 }).await, Outcome::Ok(json!(["a"])));
    assert_eq!(f.execute(Op::Delete { key: "k".into() }).await, Outcome::Ok(Value::Null));
    assert_eq!(c.execute(Op::Read { key: "k".into() }).await, Outcome::Ok(Value::Null));
}

fn raw_exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out); // the node closes the connection
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_close_the_connection_not_the_node() {
    let mut cluster = Cluster::start("frames", 1, &[]);
    cluster.leader(Duration::from_secs(15)).await;
    let addr = cluster.addrs[0].clone();
    let oversized = raw_exchange(&addr, &u32::MAX.to_be_bytes());
    assert!(String::from_utf8_lossy(&oversized).contains("bad-request"), "{oversized:?}");
    let mut garbage = 5u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(b"{nope");
    let malformed = raw_exchange(&addr, &garbage);
    assert!(String::from_utf8_lossy(&malformed).contains("bad-request"));
    let truncated = raw_exchange(&addr, &[0, 0]);
    assert!(truncated.is_empty() || String::from_utf8_lossy(&truncated).contains("bad-request"));
    let status = Client::status(&addr, Duration::from_secs(2)).await.expect("node still serves");
    assert_eq!(status["role"], "leader");
    // Graceful SIGTERM exits 0.
    let exit = cluster.sigterm(0).expect("exited after SIGTERM");
    assert!(exit.success(), "{exit:?}");
}

/// One request with a session, on a connection of its own.
async fn session_request(addr: &str, client_id: u64, seq: u64, body: RequestBody) -> ResponseResult {
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = Request { id: 1, client_id, seq, body };
        protocol::write_frame(&mut stream, &serde_json::to_vec(&request)?).await?;
        let frame = protocol::read_frame(&mut stream, protocol::MAX_RESPONSE_FRAME_BYTES).await?;
        anyhow::Ok(serde_json::from_slice::<Response>(&frame)?.result)
    };
    tokio::time::timeout(Duration::from_secs(5), work).await.expect("answered in time").expect("answered")
}

/// docs/node-protocol.md's table, node side: a write older than its session's latest seq is
/// answered `stale-seq` with `definite` as the one classification says (false: an earlier entry of
/// that seq may have applied), and the node's own client records it as `info`, as the harness does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_seq_is_sent_and_recorded_as_indefinite() {
    let cluster = Cluster::start("stale-seq", 1, &[]);
    cluster.leader(Duration::from_secs(15)).await;
    let addr = cluster.addrs[0].clone();
    let write = |value: i64| RequestBody::Write { key: "k".into(), value: json!(value) };
    assert_eq!(session_request(&addr, 77, 2, write(2)).await, ResponseResult::Ok { value: Value::Null });
    let ResponseResult::Error { error, definite, .. } = session_request(&addr, 77, 1, write(1)).await else {
        panic!("a stale seq must be refused");
    };
    assert_eq!(error, ErrorName::StaleSeq);
    assert_eq!(definite, classify(ErrorName::StaleSeq, OpKind::Write).is_definite());
    assert!(!definite, "stale-seq cannot promise the operation never applied");
    // A client that reuses session 77 from seq 1 is told so, and records the one classification.
    let mut reused = Client::new(ClientOptions::new(vec![addr.clone()], 77));
    let mut expected = OpAttempts::new(OpKind::Write);
    let expected = expected.answered(ErrorName::StaleSeq).expect("stale-seq is final");
    assert_eq!(reused.execute(Op::Write { key: "k".into(), value: json!(9) }).await, expected.into());
    assert_eq!(reused.execute(Op::Read { key: "k".into() }).await, Outcome::Ok(json!(2)), "nothing applied");
}

/// Raft §5.4 and §8 end to end: kill -9 the leader in the middle of a write load,
/// restart it, and check that every acknowledged append is in its stream, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leader_mid_load_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start("kill9", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(15)).await;
    let n_clients = 8u64;
    let acked: Arc<Mutex<BTreeMap<u64, Vec<u64>>>> = Arc::default();
    let maybe: Arc<Mutex<BTreeMap<u64, Vec<u64>>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for c in 1..=n_clients {
        let (acked, maybe) = (acked.clone(), maybe.clone());
        let mut client = client(&cluster, 100 + c);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < stop_at {
                n += 1;
                let op = Op::Append { stream: format!("s{c}"), event: json!(n), expected_version: None };
                match client.execute(op).await {
                    Outcome::Ok(_) => acked.lock().unwrap().entry(c).or_default().push(n),
                    Outcome::Info(_) => maybe.lock().unwrap().entry(c).or_default().push(n),
                    Outcome::Fail(why) => panic!("append failed definitely: {why}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.kill9(leader);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.spawn(leader, &[]);
    for t in tasks {
        t.await.expect("client task");
    }
    cluster.leader(Duration::from_secs(15)).await;
    let acked = acked.lock().unwrap().clone();
    let maybe = maybe.lock().unwrap().clone();
    let total: usize = acked.values().map(Vec::len).sum();
    assert!(total > 50, "too few writes acknowledged to mean anything: {total}");
    let mut reader = client(&cluster, 999);
    for c in 1..=n_clients {
        let Outcome::Ok(Value::Array(events)) =
            reader.execute(Op::ReadStream { stream: format!("s{c}"), from_version: 0 }).await
        else {
            panic!("could not read stream s{c}");
        };
        let events: Vec<u64> = events.iter().map(|v| v.as_u64().unwrap()).collect();
        let mut sorted = events.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), events.len(), "stream s{c} has a duplicate: exactly-once broken: {events:?}");
        for n in acked.get(&c).into_iter().flatten() {
            assert!(events.contains(n), "acknowledged append {n} lost from s{c}: {events:?}");
        }
        for n in &events {
            let known = acked.get(&c).is_some_and(|v| v.contains(n)) || maybe.get(&c).is_some_and(|v| v.contains(n));
            assert!(known, "s{c} holds {n}, which no client reported");
        }
        assert!(events.windows(2).all(|w| w[0] < w[1]), "s{c} out of order: {events:?}");
    }
    // The restarted node catches up with the others.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut applied = Vec::new();
        for addr in &cluster.addrs {
            applied.push(
                Client::status(addr, Duration::from_secs(1)).await.ok().and_then(|s| s["applied_index"].as_u64()),
            );
        }
        if applied.iter().all(|a| a.is_some() && *a == applied[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "nodes did not converge: {applied:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("acknowledged {total} appends across the leader crash");
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn admin(addr: &str, body: RequestBody) -> ResponseResult {
    Client::request_once(addr, body, Duration::from_secs(2)).await.expect("admin request answered")
}

/// Raft §6 end to end: a fourth node joins as a learner, is promoted through a
/// joint configuration, takes over leadership, and an original node is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_6_add_learner_promote_transfer_and_remove() {
    let mut cluster = Cluster::start("membership", 4, &["--voters", "1,2,3"]);
    let leader = cluster.leader(Duration::from_secs(15)).await;
    assert!(leader < 3, "node 4 is not a voter and must not lead");
    let mut c = client(&cluster, 1);
    assert_eq!(c.execute(Op::Write { key: "k".into(), value: json!("before") }).await, Outcome::Ok(Value::Null));
    let leader_addr = cluster.addrs[leader].clone();
    assert!(matches!(admin(&leader_addr, RequestBody::AddLearner { node_id: 4 }).await, ResponseResult::Ok { .. }));
    let node4 = cluster.addrs[3].clone();
    wait_for("the learner to catch up", Duration::from_secs(10), async || {
        let l = Client::status(&leader_addr, Duration::from_secs(1)).await.ok();
        let n = Client::status(&node4, Duration::from_secs(1)).await.ok();
        matches!((l, n), (Some(l), Some(n)) if l["commit_index"] == n["applied_index"])
    })
    .await;
    match admin(&leader_addr, RequestBody::Promote { node_id: 4 }).await {
        ResponseResult::Ok { .. } => {}
        other => panic!("promote refused: {other:?}"),
    }
    wait_for("node 4 to become a voter", Duration::from_secs(10), async || {
        Client::status(&leader_addr, Duration::from_secs(1)).await.is_ok_and(|s| s["voters"] == json!([1, 2, 3, 4]))
    })
    .await;
    assert!(matches!(admin(&leader_addr, RequestBody::TransferLeader { node_id: 4 }).await, ResponseResult::Ok { .. }));
    wait_for("node 4 to lead", Duration::from_secs(10), async || {
        Client::status(&node4, Duration::from_secs(1)).await.is_ok_and(|s| s["role"] == "leader")
    })
    .await;
    let old = leader as u64 + 1;
    // A new leader refuses changes until it has committed an entry of its term.
    wait_for("the removal to be accepted", Duration::from_secs(10), async || {
        match admin(&node4, RequestBody::RemoveNode { node_id: old }).await {
            ResponseResult::Ok { .. } => true,
            ResponseResult::Error { error: ErrorName::ChangeInProgress, .. } => false,
            other => panic!("remove refused: {other:?}"),
        }
    })
    .await;
    let expected: Vec<u64> = (1..=4).filter(|id| *id != old).collect();
    wait_for("the removal to commit", Duration::from_secs(10), async || {
        Client::status(&node4, Duration::from_secs(1)).await.is_ok_and(|s| s["voters"] == json!(expected))
    })
    .await;
    cluster.kill9(leader);
    assert_eq!(c.execute(Op::Read { key: "k".into() }).await, Outcome::Ok(json!("before")));
    assert_eq!(c.execute(Op::Write { key: "k".into(), value: json!("after") }).await, Outcome::Ok(Value::Null));
    assert_eq!(c.execute(Op::Read { key: "k".into() }).await, Outcome::Ok(json!("after")));
}

/// The write-ahead log end to end: a node killed with -9 whose log then gets a
/// torn tail restarts, cuts the tail, and catches up; a log damaged in the
/// middle makes the node refuse to start with exit code 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_cuts_a_torn_wal_tail_and_refuses_a_corrupt_middle() {
    let mut cluster = Cluster::start("wal", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(15)).await;
    let mut c = client(&cluster, 1);
    for n in 0..50 {
        assert_eq!(c.execute(Op::Write { key: format!("k{n}"), value: json!(n) }).await, Outcome::Ok(Value::Null));
    }
    let victim = (leader + 1) % 3;
    cluster.kill9(victim);
    let wal = cluster.dirs[victim].join("wal.log");
    let mut garbage = std::fs::OpenOptions::new().append(true).open(&wal).unwrap();
    garbage.write_all(&[0x00, 0x00, 0x10, 0x00, 0xde, 0xad]).unwrap(); // a record header cut short
    drop(garbage);
    cluster.spawn(victim, &[]);
    let victim_addr = cluster.addrs[victim].clone();
    let leader_addr = cluster.addrs[leader].clone();
    wait_for("the restarted node to catch up", Duration::from_secs(15), async || {
        let l = Client::status(&leader_addr, Duration::from_secs(1)).await.ok();
        let v = Client::status(&victim_addr, Duration::from_secs(1)).await.ok();
        matches!((l, v), (Some(l), Some(v)) if l["commit_index"] == v["applied_index"] && v["applied_index"].as_u64() > Some(50))
    })
    .await;
    let log = std::fs::read_to_string(cluster.root.join(format!("n{}.log", victim + 1))).unwrap_or_default();
    assert!(log.contains("torn tail"), "the node reports the cut tail:\n{log}");
    // Now damage a record in the middle of its log.
    cluster.kill9(victim);
    let mut data = std::fs::read(&wal).unwrap();
    assert!(data.len() > 64);
    data[20] ^= 0xFF;
    std::fs::write(&wal, &data).unwrap();
    cluster.spawn(victim, &[]);
    let mut child = cluster.children[victim].take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a node with a corrupt log kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(cluster.root.join(format!("n{}.log", victim + 1))).unwrap_or_default();
    assert!(log.contains("refusing to start"), "the node says why:\n{log}");
    // The other two still serve.
    assert_eq!(c.execute(Op::Read { key: "k7".into() }).await, Outcome::Ok(json!(7)));
}

/// A Jepsen-style history of reads, writes and cas on a real cluster whose leader
/// is killed with -9 and restarted mid-run, checked for linearizability.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leader_mid_load_kv_history_is_linearizable() {
    use faultline_checker::{check_plain_records, CheckOptions, ModelKind, Op as CheckerOp, OpType, Record, Verdict};
    let mut cluster = Cluster::start("kv-history", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(15)).await;
    let history: Arc<Mutex<Vec<Record>>> = Arc::default();
    let epoch = Instant::now();
    let record = {
        let history = history.clone();
        move |process: u64, op_type: OpType, f: &str, key: &str, value: Value, error: Option<String>| {
            let mut h = history.lock().unwrap();
            let index = h.len() as u64;
            let time = epoch.elapsed().as_nanos() as u64;
            h.push(Record::Op(CheckerOp {
                index,
                time,
                process,
                op_type,
                f: f.into(),
                value,
                key: Some(json!(key)),
                error,
            }));
        }
    };
    let stop_at = Instant::now() + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for c in 0..6u64 {
        let record = record.clone();
        let mut client = client(&cluster, 500 + c);
        tasks.push(tokio::spawn(async move {
            let mut process = c;
            let mut n = 0u64;
            while Instant::now() < stop_at {
                n += 1;
                let key = format!("k{}", n % 3);
                let value = json!(c * 1_000_000 + n);
                let (f, op, invoke_value) = match n % 3 {
                    0 => ("read", Op::Read { key: key.clone() }, Value::Null),
                    1 => ("write", Op::Write { key: key.clone(), value: value.clone() }, value.clone()),
                    _ => {
                        let from = json!((c + 1) % 6 * 1_000_000 + n - 1);
                        (
                            "cas",
                            Op::Cas { key: key.clone(), from: from.clone(), to: value.clone() },
                            json!([from, value]),
                        )
                    }
                };
                record(process, OpType::Invoke, f, &key, invoke_value.clone(), None);
                match client.execute(op).await {
                    Outcome::Ok(v) => {
                        record(process, OpType::Ok, f, &key, if f == "read" { v } else { invoke_value }, None)
                    }
                    Outcome::Fail(e) => record(process, OpType::Fail, f, &key, invoke_value, Some(e)),
                    Outcome::Info(e) => {
                        record(process, OpType::Info, f, &key, invoke_value, Some(e));
                        process += 100; // the op may still be in flight: a new process
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.kill9(leader);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.spawn(leader, &[]);
    for t in tasks {
        t.await.expect("client task");
    }
    let records = history.lock().unwrap().clone();
    let oks = records.iter().filter(|r| matches!(r, Record::Op(op) if op.op_type == OpType::Ok)).count();
    assert!(oks > 300, "too few ops completed to mean anything: {oks}");
    let options = CheckOptions {
        model: ModelKind::Kv,
        timeout: Some(Duration::from_secs(60)),
        threads: 1,
        ..CheckOptions::default()
    };
    let result = check_plain_records(&records, &options).expect("the checker takes the history");
    assert_eq!(
        result.verdict,
        Verdict::Valid,
        "{} ops; anomalies: {:?}",
        result.ops,
        result.anomalies.first().map(|a| &a.text)
    );
    eprintln!("{} ops checked, {oks} ok, verdict valid in {:.0} ms", result.ops, result.check_ms);
}

/// A TCP proxy in front of one node. Paused, it stops forwarding in both
/// directions and holds what it read, so the peers' TCP connections stall as
/// they do behind a firewall that drops packets.
struct StallProxy {
    addr: String,
    paused: Arc<std::sync::atomic::AtomicBool>,
}

impl StallProxy {
    async fn start(target: String) -> StallProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let p = paused.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(Ok(outbound)) =
                    tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(&target)).await
                else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(pump(ri, wo, p.clone()));
                tokio::spawn(pump(ro, wi, p.clone()));
            }
        });
        StallProxy { addr, paused }
    }

    fn pause(&self, on: bool) {
        self.paused.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    paused: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 << 10];
    loop {
        while paused.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while paused.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Dissertation §6.2 and §9.6 on real processes: the leader is cut off from its
/// peers (their traffic to it stalls); the others elect a new leader and keep
/// serving; after the heal the old leader follows, catches up, and every
/// acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_steps_down_and_rejoins_after_heal() {
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let mut proxies = Vec::new();
    for a in &addrs {
        proxies.push(StallProxy::start(a.clone()).await);
    }
    let cluster =
        Cluster::start_with("partition", addrs.clone(), proxies.iter().map(|p| p.addr.clone()).collect(), &[]);
    let leader = cluster.leader(Duration::from_secs(15)).await;
    let mut c = client(&cluster, 1);
    assert_eq!(c.execute(Op::Write { key: "k".into(), value: json!(1) }).await, Outcome::Ok(Value::Null));
    let term_before = Client::status(&addrs[leader], Duration::from_secs(1)).await.unwrap()["term"].as_u64().unwrap();
    proxies[leader].pause(true);
    // The other two elect a leader of a newer term and take writes.
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    wait_for("a new leader among the others", Duration::from_secs(10), async || {
        for &i in &others {
            if let Ok(s) = Client::status(&addrs[i], Duration::from_millis(500)).await {
                if s["role"] == "leader" && s["term"].as_u64() > Some(term_before) {
                    return true;
                }
            }
        }
        false
    })
    .await;
    let mut acked = Vec::new();
    let mut c2 = Client::new(ClientOptions::new(others.iter().map(|i| addrs[*i].clone()).collect(), 2));
    for n in 0..20 {
        if c2.execute(Op::Append { stream: "s".into(), event: json!(n), expected_version: None }).await
            == Outcome::Ok(json!(acked.len() + 1))
        {
            acked.push(n);
        }
    }
    assert_eq!(acked.len(), 20, "the majority side serves writes");
    wait_for("the cut-off leader to step down (CheckQuorum)", Duration::from_secs(10), async || {
        Client::status(&addrs[leader], Duration::from_millis(500)).await.is_ok_and(|s| s["role"] != "leader")
    })
    .await;
    proxies[leader].pause(false);
    let healed = Instant::now();
    wait_for("the old leader to catch up after the heal", Duration::from_secs(15), async || {
        let a = Client::status(&addrs[leader], Duration::from_millis(500)).await.ok();
        let b = Client::status(&addrs[others[0]], Duration::from_millis(500)).await.ok();
        matches!((a, b), (Some(a), Some(b)) if a["applied_index"] == b["commit_index"] && a["term"] == b["term"])
    })
    .await;
    eprintln!("caught up {:?} after the heal", healed.elapsed());
    let mut reader = Client::new(ClientOptions::new(vec![addrs[leader].clone()], 3));
    let expected: Vec<Value> = acked.iter().map(|n| json!(n)).collect();
    assert_eq!(
        reader.execute(Op::ReadStream { stream: "s".into(), from_version: 0 }).await,
        Outcome::Ok(Value::Array(expected))
    );
}

/// A leader stopped with SIGSTOP for longer than an election timeout: the others
/// elect a new leader; when it resumes it catches up its clock, steps down and
/// follows, and no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_resumes_as_a_follower() {
    let cluster = Cluster::start("pause", 3, &[]);
    let leader = cluster.leader(Duration::from_secs(15)).await;
    let pid = cluster.children[leader].as_ref().unwrap().id().to_string();
    let mut c = Client::new(ClientOptions::new(cluster.addrs.clone(), 1));
    assert_eq!(c.execute(Op::Write { key: "k".into(), value: json!(1) }).await, Outcome::Ok(Value::Null));
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let mut acked = 0;
    let others: Vec<String> = (0..3).filter(|i| *i != leader).map(|i| cluster.addrs[i].clone()).collect();
    let mut c2 = Client::new(ClientOptions::new(others, 2));
    for n in 0..10 {
        if c2.execute(Op::Write { key: "k".into(), value: json!(100 + n) }).await == Outcome::Ok(Value::Null) {
            acked = 100 + n;
        }
    }
    assert_eq!(acked, 109, "the others serve writes while the leader is stopped");
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let old = cluster.addrs[leader].clone();
    wait_for("the resumed node to follow and catch up", Duration::from_secs(10), async || {
        Client::status(&old, Duration::from_millis(500))
            .await
            .is_ok_and(|s| s["role"] == "follower" && s["applied_index"] == s["commit_index"])
    })
    .await;
    let mut reader = Client::new(ClientOptions::new(vec![old], 3));
    assert_eq!(reader.execute(Op::Read { key: "k".into() }).await, Outcome::Ok(json!(109)));
}
