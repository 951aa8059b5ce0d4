//! The register workload over etcd's v3 JSON gateway: `read` is a range of one key, `write` a put,
//! `cas` a txn comparing the value (or `create_revision == 0` for `null`) and putting on success.
//! Keys are the key's string; values are the JSON text of the value (`3`, `"abc"`), so values
//! compare as JSON values do, as in faultline-node.
//!
//! **Invariant:** a mutation is `fail` only when nothing was sent (connect failed) or etcd answered
//! that the compare failed (`cas-mismatch`); any error after sending is `info`. Reads change
//! nothing, so a read without an answer is `fail`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::http::{base64_decode, base64_encode, HttpConnection, HttpError};
use super::ReadConsistency;
use crate::cluster::NodeId;
use crate::systems::{Client, Completion, Invocation};

pub struct EtcdClient {
    /// One connection per member, index = node id - 1.
    connections: Vec<HttpConnection>,
    /// Every operation starts at this member; with serializable reads a client keeps reading from
    /// the member it belongs to, which is what exposes a partitioned member's stale reads.
    home: NodeId,
    op_timeout: Duration,
    read_consistency: ReadConsistency,
}

impl EtcdClient {
    pub fn new(addresses: Vec<SocketAddr>, op_timeout: Duration, read_consistency: ReadConsistency) -> EtcdClient {
        EtcdClient {
            connections: addresses.into_iter().map(HttpConnection::new).collect(),
            home: 1,
            op_timeout,
            read_consistency,
        }
    }

    /// Sends the request to the home member; if it cannot even be connected to (nothing sent),
    /// tries the other members in turn within the deadline. Returns the member that answered too.
    fn send(&mut self, path: &str, body: &Value, deadline: Instant) -> Result<(u16, Value), HttpError> {
        let n = self.connections.len();
        let mut last = HttpError::NotSent("no member".to_string());
        for offset in 0..n {
            let node = (self.home - 1 + offset) % n;
            match self.connections[node].post_json(path, body, deadline) {
                Err(HttpError::NotSent(e)) => last = HttpError::NotSent(format!("n{}: {e}", node + 1)),
                other => return other,
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(last)
    }
}

/// What etcd's gateway said went wrong, for the history.
fn gateway_error(status: u16, body: &Value) -> String {
    let message = body["error"].as_str().or_else(|| body["message"].as_str()).unwrap_or("");
    format!("http {status}: {message}")
}

/// The JSON text of a value, as stored in etcd.
fn encode_value(value: &Value) -> String {
    base64_encode(value.to_string().as_bytes())
}

fn decode_value(base64: &str) -> Option<Value> {
    serde_json::from_slice(&base64_decode(base64)?).ok()
}

/// The request (path and body) for an invocation, or None for an f or value we do not map.
pub fn request_for(invocation: &Invocation, read_consistency: ReadConsistency) -> Option<(&'static str, Value)> {
    let key = match invocation.key.as_ref()? {
        Value::String(key) => key.clone(),
        other => other.to_string(),
    };
    let key = base64_encode(key.as_bytes());
    Some(match invocation.f.as_str() {
        "read" => {
            let mut body = json!({"key": key});
            if read_consistency == ReadConsistency::Serializable {
                body["serializable"] = json!(true);
            }
            ("/v3/kv/range", body)
        }
        "write" => ("/v3/kv/put", json!({"key": key, "value": encode_value(&invocation.value)})),
        "cas" => {
            let pair = invocation.value.as_array()?;
            let (from, to) = (pair.first()?, pair.get(1)?);
            let compare = if from.is_null() {
                json!({"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
            } else {
                json!({"key": key, "target": "VALUE", "result": "EQUAL", "value": encode_value(from)})
            };
            let put = json!({"request_put": {"key": key, "value": encode_value(to)}});
            ("/v3/kv/txn", json!({"compare": [compare], "success": [put]}))
        }
        _ => return None,
    })
}

/// Turns etcd's answer into a completion. Only called with an answer in hand.
pub fn completion_for(invocation: &Invocation, status: u16, body: &Value) -> Completion {
    let is_read = invocation.f == "read";
    if status != 200 {
        let error = gateway_error(status, body);
        // etcd may have proposed the mutation before failing to wait for it (timeouts, leader
        // changes): in doubt. A read that failed changed nothing.
        return if is_read { Completion::Fail(error) } else { Completion::Info(error) };
    }
    match invocation.f.as_str() {
        "read" => {
            // The gateway omits empty fields: no `kvs` means the key does not exist.
            match body["kvs"].as_array().and_then(|kvs| kvs.first()) {
                None => Completion::Ok(Value::Null),
                Some(kv) => match kv["value"].as_str().map(decode_value) {
                    Some(Some(value)) => Completion::Ok(value),
                    // An empty value is omitted too; we never write one.
                    None => Completion::Fail(format!("read an empty value: {kv}")),
                    Some(None) => Completion::Fail(format!("read a value that is not JSON: {kv}")),
                },
            }
        }
        "write" => Completion::Ok(invocation.value.clone()),
        _ => {
            if body["succeeded"].as_bool() == Some(true) {
                Completion::Ok(invocation.value.clone())
            } else {
                // The compare was evaluated and failed: the txn surely did not write.
                Completion::Fail("cas-mismatch".to_string())
            }
        }
    }
}

impl Client for EtcdClient {
    fn open(&mut self, node: NodeId) -> Result<()> {
        if node == 0 || node > self.connections.len() {
            bail!("no node n{node}");
        }
        self.home = node;
        self.close();
        Ok(())
    }

    fn invoke(&mut self, invocation: &Invocation) -> Completion {
        let Some((path, body)) = request_for(invocation, self.read_consistency) else {
            return Completion::Fail(format!("unsupported operation {}", invocation.f));
        };
        let deadline = Instant::now() + self.op_timeout;
        match self.send(path, &body, deadline) {
            Ok((status, answer)) => completion_for(invocation, status, &answer),
            Err(HttpError::NotSent(e)) => Completion::Fail(e),
            Err(HttpError::Sent(e)) if invocation.f == "read" => Completion::Fail(e),
            Err(HttpError::Sent(e)) => Completion::Info(e),
        }
    }

    fn close(&mut self) {
        for connection in &mut self.connections {
            connection.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(f: &str, value: Value) -> Invocation {
        Invocation { f: f.to_string(), key: Some(json!("k1")), value }
    }

    #[test]
    fn requests_use_base64_keys_json_values_and_the_read_consistency() {
        let (path, body) = request_for(&invocation("read", Value::Null), ReadConsistency::Linearizable).unwrap();
        assert_eq!((path, body), ("/v3/kv/range", json!({"key": "azE="})));
        let (_, body) = request_for(&invocation("read", Value::Null), ReadConsistency::Serializable).unwrap();
        assert_eq!(body["serializable"], json!(true));
        let (path, body) = request_for(&invocation("write", json!(3)), ReadConsistency::Linearizable).unwrap();
        assert_eq!((path, body), ("/v3/kv/put", json!({"key": "azE=", "value": "Mw=="})));
        let (path, body) = request_for(&invocation("cas", json!([1, 2])), ReadConsistency::Linearizable).unwrap();
        assert_eq!(path, "/v3/kv/txn");
        assert_eq!(body["compare"][0]["value"], json!("MQ=="));
        assert_eq!(body["success"][0]["request_put"]["value"], json!("Mg=="));
        let (_, body) = request_for(&invocation("cas", json!([null, 2])), ReadConsistency::Linearizable).unwrap();
        assert_eq!(body["compare"][0]["target"], json!("CREATE"));
    }

    #[test]
    fn answers_map_to_ok_fail_and_info() {
        let read = invocation("read", Value::Null);
        assert_eq!(completion_for(&read, 200, &json!({"header": {}})), Completion::Ok(Value::Null));
        assert_eq!(completion_for(&read, 200, &json!({"kvs": [{"value": "Mw=="}]})), Completion::Ok(json!(3)));
        assert!(matches!(completion_for(&read, 503, &json!({"error": "no leader"})), Completion::Fail(_)));
        let cas = invocation("cas", json!([1, 2]));
        assert_eq!(completion_for(&cas, 200, &json!({"succeeded": true})), Completion::Ok(json!([1, 2])));
        assert_eq!(completion_for(&cas, 200, &json!({"header": {}})), Completion::Fail("cas-mismatch".to_string()));
        assert!(matches!(completion_for(&cas, 503, &json!({"error": "request timed out"})), Completion::Info(_)));
        let write = invocation("write", json!(4));
        assert!(matches!(completion_for(&write, 500, &json!({})), Completion::Info(_)));
    }

    #[test]
    fn nothing_sent_is_fail_for_writes_too() {
        // Port 1 (tcpmux): nothing here listens on it, while a port freed by a dropped listener
        // could be taken by another test running in parallel (this test failed that way once).
        let unused: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(
            std::net::TcpStream::connect_timeout(&unused, Duration::from_millis(200)).is_err(),
            "port 1 must be closed"
        );
        let mut client =
            EtcdClient::new(vec![unused, unused], Duration::from_millis(500), ReadConsistency::Linearizable);
        client.open(2).unwrap();
        assert!(matches!(client.invoke(&invocation("write", json!(1))), Completion::Fail(_)));
    }
}
