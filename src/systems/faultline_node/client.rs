//! A blocking client for faultline-node's client protocol (docs/node-protocol.md): JSON requests and
//! responses in `[u32 big-endian length][payload]` frames over TCP; requests carry `id`,
//! `client_id`, `seq` and an `op`; responses are `{"status":"ok","value":..}` or
//! `{"status":"error","error":name,"definite":bool,"leader_id":..}`.
//!
//! The harness speaks the wire format itself (a few dozen lines) instead of linking the node's
//! tokio client, so the runner's worker threads stay plain threads and the runner does not depend
//! on the system under test's crate.
//!
//! **Invariant:** a write is `fail` only when every attempt surely did not take effect, or the
//! state machine answered for its (client_id, seq) (`cas-mismatch`); if any attempt is in doubt
//! (lost connection, timeout, `definite: false`) and no final answer came, it is `info`. Retries
//! reuse the write's `seq`, so the node's exactly-once sessions make them safe; all attempts fit in
//! one operation deadline. Reads change nothing, so a read that never succeeded is `fail`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use faultline_workloads::WorkloadKind;
use serde_json::{json, Value};

use super::NODE_PORT;
use crate::cluster::{Cluster, NodeId};
use crate::systems::net::connect;
use crate::systems::{Client, Completion, Invocation};

/// Frames larger than this from a node are a protocol error (the node's own limit is 1 MiB).
const MAX_FRAME_BYTES: u32 = 4 << 20;
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
/// Errors that are the state machine's answer for this request: retrying cannot change them.
const FINAL_ERRORS: [&str; 4] = ["cas-mismatch", "version-mismatch", "bad-request", "stale-seq"];

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
    /// Reads are of streams (`read_stream`), not of registers: the `append` and `set` workloads.
    reads_streams: bool,
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
            reads_streams: false,
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
fn round_trip(stream: &mut TcpStream, request: &Value, request_id: u64, deadline: Instant) -> std::io::Result<Value> {
    let payload = serde_json::to_vec(request).expect("a JSON value serialises");
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    stream.write_all(&frame)?;
    loop {
        let timeout = remaining(deadline);
        if timeout.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "operation deadline"));
        }
        stream.set_read_timeout(Some(timeout))?;
        let mut length = [0u8; 4];
        stream.read_exact(&mut length)?;
        let length = u32::from_be_bytes(length);
        if length > MAX_FRAME_BYTES {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("frame of {length} bytes")));
        }
        let mut body = vec![0u8; length as usize];
        stream.read_exact(&mut body)?;
        let response: Value =
            serde_json::from_slice(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        // An answer to an earlier request on this connection is skipped.
        if response["id"].as_u64() == Some(request_id) {
            return Ok(response);
        }
    }
}

/// The request body for an invocation, or None for an f the node does not know. With
/// `reads_streams` (the `append` and `set` workloads), a read is a `read_stream` of the stream named
/// by the key; a set is a stream of its added elements.
fn request_body(invocation: &Invocation, reads_streams: bool) -> Option<Value> {
    let key = invocation.key.as_ref()?.as_str()?.to_string();
    Some(match invocation.f.as_str() {
        "read" if reads_streams => json!({"op": "read_stream", "stream": key}),
        "read" => json!({"op": "read", "key": key}),
        "write" => json!({"op": "write", "key": key, "value": invocation.value}),
        "cas" => {
            let pair = invocation.value.as_array()?;
            json!({"op": "cas", "key": key, "from": pair.first()?, "to": pair.get(1)?})
        }
        // `{"event": E, "expected_version": n}` (the version optional), as the stream model reads it.
        "append" => {
            let mut body = json!({"op": "append", "stream": key, "event": invocation.value.get("event")?});
            if let Some(expected_version) = invocation.value.get("expected_version") {
                body["expected_version"] = json!(expected_version.as_u64()?);
            }
            body
        }
        "add" => json!({"op": "append", "stream": key, "event": invocation.value}),
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
        let Some(mut body) = request_body(invocation, self.reads_streams) else {
            return Completion::Fail(format!("unsupported operation {}", invocation.f));
        };
        let is_write = invocation.f != "read";
        let seq = if is_write { self.next_seq } else { 0 };
        if is_write {
            self.next_seq += 1;
        }
        body["client_id"] = json!(self.client_id);
        body["seq"] = json!(seq);
        if self.connection.is_none() {
            self.node = self.home;
        }
        let deadline = Instant::now() + self.op_timeout;
        // The first reason this write may have taken effect; once set, the outcome can no longer be
        // `fail` unless the node gives a final answer for this (client_id, seq).
        let mut in_doubt: Option<String> = None;
        let mut last_error = String::from("no node answered");
        for _ in 0..MAX_ATTEMPTS {
            if remaining(deadline).is_zero() {
                break;
            }
            if let Err(e) = self.ensure_connected(deadline) {
                // Nothing was sent: try another node, after a pause (a dead node refuses at
                // once, and a tight loop over dead nodes would burn every attempt).
                last_error = format!("connect n{}: {}", self.node, e.kind());
                self.next_node();
                std::thread::sleep(RETRY_BACKOFF.min(remaining(deadline)));
                continue;
            }
            let request_id = self.next_request_id;
            self.next_request_id += 1;
            body["id"] = json!(request_id);
            let stream = self.connection.as_mut().expect("connected above");
            let response = match round_trip(stream, &body, request_id, deadline) {
                Ok(response) => response,
                Err(e) => {
                    // The request may have reached the node. Retrying with the same seq is safe
                    // (the node applies a (client_id, seq) at most once) and may settle it.
                    self.connection = None;
                    let what = if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                        "timeout".to_string()
                    } else {
                        format!("connection lost: {}", e.kind())
                    };
                    in_doubt.get_or_insert(what.clone());
                    last_error = what;
                    self.next_node();
                    continue;
                }
            };
            match response["status"].as_str() {
                Some("ok") => {
                    return if invocation.f == "read" {
                        Completion::Ok(response["value"].clone())
                    } else {
                        Completion::Ok(invocation.value.clone())
                    };
                }
                Some("error") => {
                    let error = response["error"].as_str().unwrap_or("error").to_string();
                    let definite = response["definite"].as_bool().unwrap_or(false);
                    if FINAL_ERRORS.contains(&error.as_str()) {
                        // The state machine's own answer for this (client_id, seq): final.
                        return Completion::Fail(error);
                    }
                    if !definite {
                        in_doubt.get_or_insert(error.clone());
                    }
                    let hint = response["leader_id"].as_u64().map(|l| l as usize);
                    match hint {
                        Some(leader) if leader >= 1 && leader <= self.addresses.len() && leader != self.node => {
                            self.move_to(leader)
                        }
                        // No (new) leader known: an election is probably running; back off a
                        // little, then try elsewhere.
                        _ => {
                            std::thread::sleep(RETRY_BACKOFF.min(remaining(deadline)));
                            if error == "not-leader" || !definite {
                                self.next_node();
                            }
                        }
                    }
                    last_error = error;
                }
                _ => {
                    self.connection = None;
                    let what = format!("unexpected response: {response}");
                    in_doubt.get_or_insert(what.clone());
                    last_error = what;
                }
            }
        }
        match in_doubt {
            // A write that may have been applied by some attempt.
            Some(reason) if is_write => Completion::Info(reason),
            // Every attempt failed definitely, or it was a read (reads change nothing).
            _ => Completion::Fail(last_error),
        }
    }

    fn close(&mut self) {
        self.connection = None;
    }

    fn set_workload(&mut self, workload: WorkloadKind) {
        // The set workload keeps each set as a stream of its added elements.
        self.reads_streams = matches!(workload, WorkloadKind::Append | WorkloadKind::Set);
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
    one_request(None, address, "status", timeout)
}

/// One `status` request from a given local address (the cluster's control address, which
/// faults that cut the clients off leave alone).
pub fn node_status_from(local: std::net::IpAddr, address: SocketAddr, timeout: Duration) -> Result<Value> {
    one_request(Some(local), address, "status", timeout)
}

/// One `digest` request to one node: its applied index, the digest of its data and the
/// checksums of the entries it applied last.
pub fn node_digest(address: SocketAddr, timeout: Duration) -> Result<crate::convergence::ReplicaState> {
    let value = one_request(None, address, "digest", timeout)?;
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

/// A request with no arguments (`status`, `digest`) on a connection of its own.
fn one_request(local: Option<std::net::IpAddr>, address: SocketAddr, op: &str, timeout: Duration) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    let connected = match local {
        Some(local) => crate::systems::net::connect_from(local, address, timeout),
        None => connect(address, timeout),
    };
    let mut stream = connected.with_context(|| format!("connecting to {address}"))?;
    let response = round_trip(&mut stream, &json!({"id": 1, "op": op}), 1, deadline)
        .with_context(|| format!("{op} of {address}"))?;
    if response["status"].as_str() != Some("ok") {
        bail!("{op} of {address}: {response}");
    }
    Ok(response["value"].clone())
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn invocations_map_to_the_node_protocol() {
        let cas = Invocation { f: "cas".into(), key: Some(json!("k1")), value: json!([1, 2]) };
        assert_eq!(request_body(&cas, false), Some(json!({"op": "cas", "key": "k1", "from": 1, "to": 2})));
        let read = Invocation { f: "read".into(), key: Some(json!("k0")), value: Value::Null };
        assert_eq!(request_body(&read, false), Some(json!({"op": "read", "key": "k0"})));
        assert_eq!(request_body(&read, true), Some(json!({"op": "read_stream", "stream": "k0"})));
        let append = Invocation { f: "append".into(), key: Some(json!("s1")), value: json!({"event": 7}) };
        assert_eq!(request_body(&append, true), Some(json!({"op": "append", "stream": "s1", "event": 7})));
        let expecting = Invocation {
            f: "append".into(),
            key: Some(json!("s1")),
            value: json!({"event": 8, "expected_version": 3}),
        };
        assert_eq!(
            request_body(&expecting, true),
            Some(json!({"op": "append", "stream": "s1", "event": 8, "expected_version": 3}))
        );
        let add = Invocation { f: "add".into(), key: Some(json!("set0")), value: json!(9) };
        assert_eq!(request_body(&add, true), Some(json!({"op": "append", "stream": "set0", "event": 9})));
        let unknown = Invocation { f: "delete".into(), key: Some(json!("k0")), value: Value::Null };
        assert_eq!(request_body(&unknown, false), None);
        let bare_append = Invocation { f: "append".into(), key: Some(json!("s1")), value: json!(7) };
        assert_eq!(request_body(&bare_append, true), None, "the harness always sends events in an object");
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
}
