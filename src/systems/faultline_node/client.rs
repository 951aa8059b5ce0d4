//! A blocking client for faultline-node's client protocol (docs/node-protocol.md). The wire types,
//! the framing and what each error means (definite or not, final or not: `OpAttempts`) come from
//! `faultline-node-proto`, the one definition the node and its own client use too.
//!
//! The harness links only that small tokio-free crate, not the node's tokio client, so the
//! runner's worker threads stay plain threads and the runner does not depend on the system under
//! test's crate.
//!
//! **Invariant:** a write is `fail` only when every attempt surely did not take effect, or the
//! state machine answered for its (client_id, seq) (`cas-mismatch`); if any attempt is in doubt
//! (lost connection, timeout, `definite: false`) and no final answer came, it is `info`. Retries
//! reuse the write's `seq`, so the node's exactly-once sessions make them safe; all attempts fit in
//! one operation deadline. Reads change nothing, so a read that never succeeded is `fail`.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use faultline_node_proto::{
    classify, encode_frame, read_frame_blocking, ErrorName, FrameError, OpAttempts, OpKind, Request, RequestBody,
    Response, ResponseResult, Settled, MAX_RESPONSE_FRAME_BYTES,
};
use faultline_workloads::WorkloadKind;
use serde_json::Value;

use super::NODE_PORT;
use crate::cluster::{Cluster, NodeId};
use crate::systems::net::connect;
use crate::systems::{Client, Completion, Invocation};

/// How many attempts one operation may make (redirects, other nodes, retries with the same seq),
/// all within its deadline. Enough, with the backoffs below, to outlive an election (0.3-0.6 s with
/// faultline-node's defaults) within a 1 s deadline: a write in doubt when its leader dies should be
/// retried on the next leader, which is what exactly-once sessions are for.
const MAX_ATTEMPTS: usize = 40;
/// The longest one connection attempt may take: a node behind a partition drops the SYN, and
/// waiting for it until the op's deadline would leave no time for the other nodes.
const MAX_CONNECT_WAIT: Duration = Duration::from_millis(250);
/// The pause before retrying after an error that names no leader.
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

pub struct NodeClient {
    addresses: Vec<SocketAddr>,
    op_timeout: Duration,
    /// The node we are (or will be) connected to, 1-based.
    node: NodeId,
    /// The node this client belongs to: every operation that starts without a live connection
    /// starts here, so each node keeps getting its share of requests (a leader that wrongly
    /// believes it still leads keeps being asked).
    home: NodeId,
    connection: Option<TcpStream>,
    client_id: u64,
    next_seq: u64,
    next_request_id: u64,
    /// The run's workload: it says whether a read is of a stream (`read_stream`) or a register
    /// (`reads_stream`).
    workload: WorkloadKind,
}

impl NodeClient {
    pub fn new(cluster: &Cluster, op_timeout: Duration) -> NodeClient {
        NodeClient::with_addresses(node_addresses(cluster), op_timeout)
    }

    /// A client for nodes at `addresses` (node id = index + 1).
    pub fn with_addresses(addresses: Vec<SocketAddr>, op_timeout: Duration) -> NodeClient {
        NodeClient {
            addresses,
            op_timeout,
            node: 1,
            home: 1,
            connection: None,
            client_id: 0,
            next_seq: 1,
            next_request_id: 1,
            workload: WorkloadKind::CasRegister,
        }
    }

    fn ensure_connected(&mut self, deadline: Instant) -> std::io::Result<()> {
        if self.connection.is_none() {
            let timeout = remaining(deadline).max(Duration::from_millis(1));
            let stream = connect(self.addresses[self.node - 1], timeout.min(self.op_timeout).min(MAX_CONNECT_WAIT))?;
            self.connection = Some(stream);
        }
        Ok(())
    }

    fn move_to(&mut self, node: NodeId) {
        if node != self.node || self.connection.is_none() {
            self.connection = None;
            self.node = node;
        }
    }

    fn next_node(&mut self) {
        let next = self.node % self.addresses.len() + 1;
        self.connection = None;
        self.node = next;
    }
}

/// The node addresses of a cluster, index = node id - 1.
fn node_addresses(cluster: &Cluster) -> Vec<SocketAddr> {
    cluster.node_ids().into_iter().map(|node| SocketAddr::from((cluster.node_address(node), NODE_PORT))).collect()
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Sends one frame and reads frames until the response with `request_id` arrives.
fn round_trip(stream: &mut TcpStream, request: &Request, deadline: Instant) -> std::io::Result<ResponseResult> {
    let payload = serde_json::to_vec(request).expect("a request serialises");
    stream.write_all(&encode_frame(&payload))?;
    loop {
        let timeout = remaining(deadline);
        if timeout.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "operation deadline"));
        }
        stream.set_read_timeout(Some(timeout))?;
        let body = read_frame_blocking(stream, MAX_RESPONSE_FRAME_BYTES).map_err(|e| match e {
            FrameError::Io(e) => e,
            FrameError::Closed => std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            e @ FrameError::TooLarge { .. } => std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let response: Response =
            serde_json::from_slice(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        // An answer to an earlier request on this connection is skipped.
        if response.id == request.id {
            return Ok(response.result);
        }
    }
}

fn completion(settled: Settled) -> Completion {
    match settled {
        Settled::Fail(error) => Completion::Fail(error),
        Settled::Info(why) => Completion::Info(why),
    }
}

/// Whether a read of `key` under `workload` reads a stream: every key of `append` and `set` (a set
/// is kept as a stream of its added elements), the stream keys of `mixed`.
fn reads_stream(workload: WorkloadKind, key: Option<&Value>) -> bool {
    match workload {
        WorkloadKind::Append | WorkloadKind::Set => true,
        WorkloadKind::Mixed => faultline_workloads::KeyKind::of(key) == faultline_workloads::KeyKind::Stream,
        WorkloadKind::Register | WorkloadKind::CasRegister => false,
    }
}

/// The request body for an invocation, or None for an f the node does not know. A read is a
/// `read_stream` of the stream named by the key when `reads_stream` says so.
fn request_body(invocation: &Invocation, workload: WorkloadKind) -> Option<RequestBody> {
    let key = invocation.key.as_ref()?.as_str()?.to_string();
    Some(match invocation.f.as_str() {
        "read" if reads_stream(workload, invocation.key.as_ref()) => {
            RequestBody::ReadStream { stream: key, from_version: 0 }
        }
        "read" => RequestBody::Read { key },
        "write" => RequestBody::Write { key, value: invocation.value.clone() },
        "cas" => {
            let pair = invocation.value.as_array()?;
            RequestBody::Cas { key, from: pair.first()?.clone(), to: pair.get(1)?.clone() }
        }
        // `{"event": E, "expected_version": n}` (the version optional), as the stream model reads it.
        "append" => {
            let expected_version = match invocation.value.get("expected_version") {
                Some(version) => Some(version.as_u64()?),
                None => None,
            };
            RequestBody::Append { stream: key, event: invocation.value.get("event")?.clone(), expected_version }
        }
        "add" => RequestBody::Append { stream: key, event: invocation.value.clone(), expected_version: None },
        _ => return None,
    })
}

impl Client for NodeClient {
    fn open(&mut self, node: NodeId) -> Result<()> {
        if node == 0 || node > self.addresses.len() {
            bail!("no node n{node}");
        }
        // A fresh session per (Jepsen) process: a write left in doubt by the previous process
        // must not be deduplicated against this one's.
        self.client_id = (rand::random::<u64>() >> 1) | 1;
        self.next_seq = 1;
        self.node = node;
        self.home = node;
        self.connection = None;
        let deadline = Instant::now() + self.op_timeout;
        // Connecting now is only a hint of health; a failure here is retried on the first op.
        let _ = self.ensure_connected(deadline);
        Ok(())
    }

    fn invoke(&mut self, invocation: &Invocation) -> Completion {
        let Some(body) = request_body(invocation, self.workload) else {
            return Completion::Fail(format!("unsupported operation {}", invocation.f));
        };
        let kind = body.kind();
        let seq = if kind == OpKind::Write { self.next_seq } else { 0 };
        if kind == OpKind::Write {
            self.next_seq += 1;
        }
        let mut request = Request { id: 0, client_id: self.client_id, seq, body };
        if self.connection.is_none() {
            self.node = self.home;
        }
        let deadline = Instant::now() + self.op_timeout;
        // What the attempts so far settle: once one may have taken effect, the outcome can no
        // longer be `fail` unless the node gives a final answer for this (client_id, seq).
        let mut attempts = OpAttempts::new(kind);
        for _ in 0..MAX_ATTEMPTS {
            if remaining(deadline).is_zero() {
                break;
            }
            if let Err(e) = self.ensure_connected(deadline) {
                // Nothing was sent: try another node, after a pause (a dead node refuses at
                // once, and a tight loop over dead nodes would burn every attempt).
                attempts.not_sent(format!("connect n{}: {}", self.node, e.kind()));
                self.next_node();
                std::thread::sleep(RETRY_BACKOFF.min(remaining(deadline)));
                continue;
            }
            request.id = self.next_request_id;
            self.next_request_id += 1;
            let stream = self.connection.as_mut().expect("connected above");
            let result = match round_trip(stream, &request, deadline) {
                Ok(result) => result,
                Err(e) => {
                    // The request may have reached the node. Retrying with the same seq is safe
                    // (the node applies a (client_id, seq) at most once) and may settle it.
                    self.connection = None;
                    let what = if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                        "timeout".to_string()
                    } else {
                        format!("connection lost: {}", e.kind())
                    };
                    attempts.lost(what);
                    self.next_node();
                    continue;
                }
            };
            match result {
                ResponseResult::Ok { value } => {
                    return if kind == OpKind::Read {
                        Completion::Ok(value)
                    } else {
                        Completion::Ok(invocation.value.clone())
                    };
                }
                ResponseResult::Error { error, leader_id, .. } => {
                    if let Some(settled) = attempts.answered(error) {
                        return completion(settled);
                    }
                    let hint = leader_id.map(|l| l as usize);
                    match hint {
                        Some(leader) if leader >= 1 && leader <= self.addresses.len() && leader != self.node => {
                            self.move_to(leader)
                        }
                        // No (new) leader known: an election is probably running; back off a
                        // little, then try elsewhere.
                        _ => {
                            std::thread::sleep(RETRY_BACKOFF.min(remaining(deadline)));
                            if error == ErrorName::NotLeader || !classify(error, kind).is_definite() {
                                self.next_node();
                            }
                        }
                    }
                }
            }
        }
        completion(attempts.give_up())
    }

    fn close(&mut self) {
        self.connection = None;
    }

    fn set_workload(&mut self, workload: WorkloadKind) {
        self.workload = workload;
    }
}

/// Asks every node for its status; returns the leader named by the answer with the highest term.
/// Must run on a thread inside the client namespace.
pub fn find_leader(cluster: &Cluster, timeout: Duration) -> Option<NodeId> {
    let addresses = node_addresses(cluster);
    let per_node_timeout = timeout.min(Duration::from_millis(300));
    let mut best: Option<(u64, NodeId)> = None;
    for (index, address) in addresses.iter().enumerate() {
        let Ok(status) = node_status(*address, per_node_timeout) else {
            continue;
        };
        let term = status["term"].as_u64().unwrap_or(0);
        let leader = if status["role"].as_str() == Some("leader") {
            Some(index + 1)
        } else {
            status["leader"].as_u64().or_else(|| status["leader_id"].as_u64()).map(|l| l as usize)
        };
        if let Some(leader) = leader.filter(|l| *l >= 1 && *l <= addresses.len()) {
            if best.is_none_or(|(best_term, _)| term > best_term) {
                best = Some((term, leader));
            }
        }
    }
    best.map(|(_, leader)| leader)
}

/// One `status` request to one node.
pub fn node_status(address: SocketAddr, timeout: Duration) -> Result<Value> {
    one_request(None, address, RequestBody::Status, timeout)
}

/// One `status` request from a given local address (the cluster's control address, which
/// faults that cut the clients off leave alone).
pub fn node_status_from(local: std::net::IpAddr, address: SocketAddr, timeout: Duration) -> Result<Value> {
    one_request(Some(local), address, RequestBody::Status, timeout)
}

/// One `digest` request to one node: its applied index, the digest of its data and the
/// checksums of the entries it applied last.
pub fn node_digest(address: SocketAddr, timeout: Duration) -> Result<crate::convergence::ReplicaState> {
    let value = one_request(None, address, RequestBody::Digest, timeout)?;
    let hashes: Option<Vec<u32>> = value["applied_hashes"]
        .as_array()
        .map(|items| items.iter().filter_map(|h| h.as_u64().and_then(|h| u32::try_from(h).ok())).collect());
    match (value["applied_index"].as_u64(), value["digest"].as_str()) {
        (Some(applied_index), Some(digest)) => Ok(crate::convergence::ReplicaState {
            applied_index,
            digest: digest.to_string(),
            applied_hashes_first: value["applied_hashes_first"].as_u64().unwrap_or(applied_index + 1),
            applied_hashes: hashes.unwrap_or_default(),
        }),
        _ => bail!("digest of {address}: unexpected answer {value}"),
    }
}

/// An admin command (`src/member.rs`) on a connection of its own: the whole response, whether
/// its status is ok or error.
pub fn admin_request(address: SocketAddr, request: &Value, timeout: Duration) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(address, timeout).with_context(|| format!("connecting to {address}"))?;
    let mut exchange = || -> std::io::Result<Value> {
        stream.write_all(&encode_frame(&serde_json::to_vec(request)?))?;
        stream.set_read_timeout(Some(remaining(deadline).max(Duration::from_millis(1))))?;
        let body = read_frame_blocking(&mut stream, MAX_RESPONSE_FRAME_BYTES).map_err(|e| match e {
            FrameError::Io(e) => e,
            FrameError::Closed => std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            e @ FrameError::TooLarge { .. } => std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        Ok(serde_json::from_slice(&body)?)
    };
    exchange().with_context(|| format!("{} of {address}", request["op"]))
}

/// A request with no arguments (`status`, `digest`) on a connection of its own.
fn one_request(
    local: Option<std::net::IpAddr>,
    address: SocketAddr,
    op: RequestBody,
    timeout: Duration,
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    let connected = match local {
        Some(local) => crate::systems::net::connect_from(local, address, timeout),
        None => connect(address, timeout),
    };
    let mut stream = connected.with_context(|| format!("connecting to {address}"))?;
    let request = Request { id: 1, client_id: 0, seq: 0, body: op.clone() };
    match round_trip(&mut stream, &request, deadline).with_context(|| format!("{op:?} of {address}"))? {
        ResponseResult::Ok { value } => Ok(value),
        ResponseResult::Error { error, message, .. } => bail!("{op:?} of {address}: {error}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Read;
    use std::net::TcpListener;

    /// A fake node on loopback: answers each request frame with `answer(request)`, or stays silent
    /// when it returns None. Serves connections one after another until the test ends.
    fn fake_node(answer: impl Fn(&Value) -> Option<Value> + Send + 'static) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                loop {
                    let mut length = [0u8; 4];
                    if stream.read_exact(&mut length).is_err() {
                        break;
                    }
                    let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
                    if stream.read_exact(&mut body).is_err() {
                        break;
                    }
                    let request: Value = serde_json::from_slice(&body).unwrap();
                    if let Some(mut response) = answer(&request) {
                        response["id"] = request["id"].clone();
                        let payload = serde_json::to_vec(&response).unwrap();
                        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
                        frame.extend_from_slice(&payload);
                        if stream.write_all(&frame).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        address
    }

    fn write(value: i64) -> Invocation {
        Invocation { f: "write".into(), key: Some(json!("k0")), value: json!(value) }
    }

    fn read() -> Invocation {
        Invocation { f: "read".into(), key: Some(json!("k0")), value: Value::Null }
    }

    fn error(name: &str, definite: bool) -> Value {
        json!({"status": "error", "error": name, "definite": definite, "message": name})
    }

    #[test]
    fn a_not_leader_answer_is_followed_to_the_leader_with_the_same_seq() {
        let leader = fake_node(|request| {
            assert_eq!(request["seq"], json!(1), "a redirect must keep the write's seq");
            assert_ne!(request["client_id"], json!(0));
            Some(json!({"status": "ok", "value": null}))
        });
        let follower = fake_node(|_| {
            let mut answer = error("not-leader", true);
            answer["leader_id"] = json!(2);
            Some(answer)
        });
        let mut client = NodeClient::with_addresses(vec![follower, leader], Duration::from_secs(2));
        client.open(1).unwrap();
        assert_eq!(client.invoke(&write(3)), Completion::Ok(json!(3)));
        assert_eq!(client.node, 2, "the client stays with the leader");
    }

    #[test]
    fn errors_map_to_fail_or_info_as_the_node_says() {
        let node = fake_node(|request| match request["value"].as_i64() {
            Some(1) => Some(error("cas-mismatch", true)),
            Some(2) => Some(error("leadership-lost", false)),
            Some(3) => None, // silence: the client times out
            _ => Some(json!({"status": "ok", "value": 7})),
        });
        let mut client = NodeClient::with_addresses(vec![node], Duration::from_millis(300));
        client.open(1).unwrap();
        assert_eq!(client.invoke(&write(1)), Completion::Fail("cas-mismatch".into()));
        assert_eq!(client.invoke(&write(2)), Completion::Info("leadership-lost".into()));
        assert_eq!(client.invoke(&write(3)), Completion::Info("timeout".into()));
        // After a timeout the connection is dropped; the next op reconnects.
        let read = Invocation { f: "read".into(), key: Some(json!("k0")), value: Value::Null };
        assert_eq!(client.invoke(&read), Completion::Ok(json!(7)));
    }

    #[test]
    fn a_write_in_doubt_is_retried_with_the_same_seq_and_is_info_at_the_deadline() {
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = attempts.clone();
        let node = fake_node(move |request| {
            assert_eq!(request["seq"], json!(1));
            match seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Some(error("leadership-lost", false)),
                1 => None, // the answer is lost: the client times out this attempt
                _ => Some(json!({"status": "ok", "value": null})),
            }
        });
        let mut client = NodeClient::with_addresses(vec![node], Duration::from_secs(1));
        client.open(1).unwrap();
        // The silent attempt eats the rest of the deadline, so that op ends in doubt.
        assert_eq!(client.invoke(&write(5)), Completion::Info("leadership-lost".into()));
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn a_settled_retry_is_ok_and_a_final_answer_after_doubt_is_final() {
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = attempts.clone();
        let node = fake_node(move |request| {
            let attempt = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match (request["value"].as_i64(), attempt % 2) {
                (_, 0) => Some(error("leadership-lost", false)),
                (Some(1), _) => Some(json!({"status": "ok", "value": null})),
                _ => Some(error("cas-mismatch", true)),
            }
        });
        let mut client = NodeClient::with_addresses(vec![node], Duration::from_secs(2));
        client.open(1).unwrap();
        assert_eq!(client.invoke(&write(1)), Completion::Ok(json!(1)));
        assert_eq!(client.invoke(&write(2)), Completion::Fail("cas-mismatch".into()));
    }

    #[test]
    fn an_unreachable_cluster_is_a_definite_failure() {
        // Port 1: nothing listens there (a dropped listener's port could be reused by a parallel test).
        let address: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut client = NodeClient::with_addresses(vec![address], Duration::from_millis(300));
        client.open(1).unwrap();
        assert!(matches!(client.invoke(&write(1)), Completion::Fail(_)));
    }

    /// The request as it goes on the wire (with the session fields a real invocation adds left out).
    fn wire(body: Option<RequestBody>) -> Option<Value> {
        body.map(|body| serde_json::to_value(body).unwrap())
    }

    #[test]
    fn invocations_map_to_the_node_protocol() {
        let cas = Invocation { f: "cas".into(), key: Some(json!("k1")), value: json!([1, 2]) };
        assert_eq!(
            wire(request_body(&cas, WorkloadKind::CasRegister)),
            Some(json!({"op": "cas", "key": "k1", "from": 1, "to": 2}))
        );
        let read = Invocation { f: "read".into(), key: Some(json!("k0")), value: Value::Null };
        assert_eq!(wire(request_body(&read, WorkloadKind::CasRegister)), Some(json!({"op": "read", "key": "k0"})));
        assert_eq!(wire(request_body(&read, WorkloadKind::Append)), Some(json!({"op": "read_stream", "stream": "k0"})));
        let append = Invocation { f: "append".into(), key: Some(json!("s1")), value: json!({"event": 7}) };
        assert_eq!(
            wire(request_body(&append, WorkloadKind::Append)),
            Some(json!({"op": "append", "stream": "s1", "event": 7}))
        );
        let expecting = Invocation {
            f: "append".into(),
            key: Some(json!("s1")),
            value: json!({"event": 8, "expected_version": 3}),
        };
        assert_eq!(
            wire(request_body(&expecting, WorkloadKind::Append)),
            Some(json!({"op": "append", "stream": "s1", "event": 8, "expected_version": 3}))
        );
        let add = Invocation { f: "add".into(), key: Some(json!("set0")), value: json!(9) };
        assert_eq!(
            wire(request_body(&add, WorkloadKind::Append)),
            Some(json!({"op": "append", "stream": "set0", "event": 9}))
        );
        let unknown = Invocation { f: "delete".into(), key: Some(json!("k0")), value: Value::Null };
        // A mixed run reads each key as its kind: registers by `read`, streams by `read_stream`.
        let stream_read = Invocation { f: "read".into(), key: Some(json!("s3")), value: Value::Null };
        assert_eq!(wire(request_body(&read, WorkloadKind::Mixed)), Some(json!({"op": "read", "key": "k0"})));
        assert_eq!(
            wire(request_body(&stream_read, WorkloadKind::Mixed)),
            Some(json!({"op": "read_stream", "stream": "s3"}))
        );
        assert_eq!(wire(request_body(&unknown, WorkloadKind::CasRegister)), None);
        let bare_append = Invocation { f: "append".into(), key: Some(json!("s1")), value: json!(7) };
        assert_eq!(
            wire(request_body(&bare_append, WorkloadKind::Append)),
            None,
            "the harness always sends events in an object"
        );
    }

    /// Stream and set ops: an ok append records what was invoked (not the node's version), a
    /// version mismatch is the node's final answer (a definite fail the checker uses as an
    /// observation), and a stream read's value is the list of events.
    #[test]
    fn stream_ops_record_the_invocation_and_version_mismatch_is_a_final_fail() {
        let node = fake_node(|request| match (request["op"].as_str(), request["expected_version"].as_u64()) {
            (Some("append"), Some(0)) => Some(error("version-mismatch", true)),
            (Some("append"), _) => Some(json!({"status": "ok", "value": 4})),
            (Some("read_stream"), _) => Some(json!({"status": "ok", "value": [1, 2, 3]})),
            _ => Some(error("bad-request", true)),
        });
        let mut client = NodeClient::with_addresses(vec![node], Duration::from_secs(1));
        client.set_workload(WorkloadKind::Append);
        client.open(1).unwrap();
        let append = Invocation { f: "append".into(), key: Some(json!("s0")), value: json!({"event": 4}) };
        assert_eq!(client.invoke(&append), Completion::Ok(json!({"event": 4})));
        let mismatch = Invocation {
            f: "append".into(),
            key: Some(json!("s0")),
            value: json!({"event": 5, "expected_version": 0}),
        };
        assert_eq!(client.invoke(&mismatch), Completion::Fail("version-mismatch".into()));
        let add = Invocation { f: "add".into(), key: Some(json!("set0")), value: json!(6) };
        assert_eq!(client.invoke(&add), Completion::Ok(json!(6)));
        let read = Invocation { f: "read".into(), key: Some(json!("s0")), value: Value::Null };
        assert_eq!(client.invoke(&read), Completion::Ok(json!([1, 2, 3])));
    }

    /// docs/node-protocol.md's table, harness side: whatever `definite` a node claims (here always
    /// `true`, as nodes before faultline-node-proto did for `stale-seq`), every error ends the
    /// operation as the one classification (`OpAttempts`, shared with the node's client) says.
    #[test]
    fn every_error_is_recorded_as_the_one_classification_says() {
        for name in ErrorName::ALL {
            let node = fake_node(move |_| Some(error(name.as_str(), true)));
            for (invocation, kind) in [(write(1), OpKind::Write), (read(), OpKind::Read)] {
                let mut client = NodeClient::with_addresses(vec![node], Duration::from_millis(150));
                client.open(1).unwrap();
                let mut attempts = OpAttempts::new(kind);
                let expected = attempts.answered(name).unwrap_or_else(|| attempts.give_up());
                assert_eq!(client.invoke(&invocation), completion(expected), "{name} for a {kind:?}");
            }
        }
    }

    #[test]
    fn stale_seq_is_info_for_a_write() {
        let node = fake_node(|_| Some(error("stale-seq", true)));
        let mut client = NodeClient::with_addresses(vec![node], Duration::from_secs(1));
        client.open(1).unwrap();
        assert_eq!(client.invoke(&write(1)), Completion::Info("stale-seq".into()));
    }
}
