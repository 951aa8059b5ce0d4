//! The built-in `redis` client adapter (RESP through the `redis` crate). With Sentinel
//! (`client.sentinel_port` and `client.master_name`) it asks its home node's sentinel which
//! node is the primary (`SENTINEL get-master-addr-by-name`), again at least every
//! `PRIMARY_REFRESH` and after any error, as clients that follow `+switch-master` do; without
//! it, it talks to its home node.
//!
//! Ops: `register`/`cas-register`: `read` = GET, `write` = SET, `cas [from, to]` = a Lua script
//! (compare the stored JSON text, then SET, atomically); `set`: `add` = SADD, `read` = SMEMBERS.
//! Values are stored as their JSON text, so values compare as JSON values.
//!
//! Outcomes: nothing sent (no primary known, connect refused) → `fail`; an error reply (READONLY,
//! NOREPLICAS, ...) → `fail` (Redis refused the command); a timeout or lost connection after
//! sending → `info`; every read error → `fail` (a read changes nothing).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use faultline_sysfile::ClientSpec;
use faultline_workloads::WorkloadKind;
use redis::{Connection, RedisError, Value as RespValue};
use serde_json::Value;

use crate::cluster::{Cluster, NodeId};
use crate::systems::{Client, Completion, Invocation};

/// How long a primary learnt from a sentinel is trusted before asking again.
pub const PRIMARY_REFRESH: Duration = Duration::from_millis(500);

/// Compare-and-set on the JSON text: ARGV[1] is "1" when the expected value is not null, ARGV[2]
/// the expected text, ARGV[3] the new text. Returns 1 when it set.
const CAS_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if (ARGV[1] == '0' and current == false) or (ARGV[1] == '1' and current == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[3])
  return 1
end
return 0
"#;

pub struct RedisClient {
    /// Every node's client port address, node i at i - 1.
    servers: Vec<SocketAddr>,
    /// Every node's sentinel, when the system has them.
    sentinels: Option<(Vec<SocketAddr>, String)>,
    op_timeout: Duration,
    home: NodeId,
    workload: WorkloadKind,
    primary: Option<(SocketAddr, Instant)>,
    connection: Option<(SocketAddr, Connection)>,
    cas: redis::Script,
}

impl RedisClient {
    pub fn new(cluster: &Cluster, spec: &ClientSpec, op_timeout: Duration) -> RedisClient {
        let port = spec.port.unwrap_or(6379);
        let address = |node: NodeId, port: u16| SocketAddr::from((cluster.node_address(node), port));
        let servers = cluster.node_ids().into_iter().map(|n| address(n, port)).collect();
        let sentinels = spec.sentinel_port.zip(spec.master_name.clone()).map(|(sentinel_port, name)| {
            (cluster.node_ids().into_iter().map(|n| address(n, sentinel_port)).collect(), name)
        });
        RedisClient {
            servers,
            sentinels,
            op_timeout,
            home: 1,
            workload: WorkloadKind::CasRegister,
            primary: None,
            connection: None,
            cas: redis::Script::new(CAS_SCRIPT),
        }
    }

    fn connect(&self, address: SocketAddr) -> Result<Connection, RedisError> {
        let client = redis::Client::open(format!("redis://{address}/"))?;
        let connection = client.get_connection_with_timeout(self.op_timeout)?;
        connection.set_read_timeout(Some(self.op_timeout))?;
        connection.set_write_timeout(Some(self.op_timeout))?;
        Ok(connection)
    }

    /// The server to send the op to: the primary the home sentinel names, or the home node.
    fn target(&mut self) -> Result<SocketAddr, String> {
        let Some((sentinels, name)) = &self.sentinels else {
            return Ok(self.servers[self.home - 1]);
        };
        if let Some((primary, learnt)) = self.primary {
            if learnt.elapsed() < PRIMARY_REFRESH {
                return Ok(primary);
            }
        }
        let sentinel = sentinels[self.home - 1];
        let name = name.clone();
        let mut connection = self.connect(sentinel).map_err(|e| format!("sentinel {sentinel}: {e}"))?;
        let answer: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&name)
            .query(&mut connection)
            .map_err(|e| format!("sentinel {sentinel}: {e}"))?;
        let (host, port) = answer.ok_or_else(|| format!("sentinel {sentinel} knows no primary `{name}`"))?;
        let primary: SocketAddr =
            format!("{host}:{port}").parse().map_err(|e| format!("sentinel {sentinel} named `{host}`: {e}"))?;
        self.primary = Some((primary, Instant::now()));
        Ok(primary)
    }

    fn connection(&mut self, address: SocketAddr) -> Result<&mut Connection, RedisError> {
        if self.connection.as_ref().is_none_or(|(connected, _)| *connected != address) {
            self.connection = None;
            let connection = self.connect(address)?;
            self.connection = Some((address, connection));
        }
        Ok(&mut self.connection.as_mut().expect("connected above").1)
    }

    fn forget(&mut self) {
        self.connection = None;
        self.primary = None;
    }
}

fn key_text(key: &Option<Value>) -> String {
    match key {
        Some(Value::String(text)) => format!("fl:{text}"),
        Some(other) => format!("fl:{other}"),
        None => "fl:".to_string(),
    }
}

/// A stored JSON text back to a value (a text that is not JSON is returned as a string).
fn parse_stored(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// What an error after sending means: an error reply is a refusal (`fail`), anything else (a
/// timeout, a lost connection) leaves the op uncertain (`info`); a read is always `fail`.
fn error_completion(invocation: &Invocation, error: &RedisError) -> Completion {
    let refused = error.code().is_some() && !error.is_io_error() && !error.is_timeout();
    if invocation.f == "read" || refused {
        Completion::Fail(error.to_string())
    } else {
        Completion::Info(error.to_string())
    }
}

impl Client for RedisClient {
    fn open(&mut self, node: NodeId) -> Result<()> {
        self.home = node.clamp(1, self.servers.len());
        Ok(())
    }

    fn invoke(&mut self, invocation: &Invocation) -> Completion {
        let target = match self.target() {
            Ok(target) => target,
            Err(e) => return Completion::Fail(format!("no primary: {e}")),
        };
        let key = key_text(&invocation.key);
        let workload = self.workload;
        let cas = self.cas.clone();
        let connection = match self.connection(target) {
            Ok(connection) => connection,
            Err(e) => {
                self.forget();
                return Completion::Fail(format!("connect {target}: {e}"));
            }
        };
        let result: Result<Completion, RedisError> = match (workload, invocation.f.as_str()) {
            (WorkloadKind::Set, "add") => redis::cmd("SADD")
                .arg(&key)
                .arg(invocation.value.to_string())
                .query::<i64>(connection)
                .map(|_| Completion::Ok(invocation.value.clone())),
            (WorkloadKind::Set, "read") => {
                redis::cmd("SMEMBERS").arg(&key).query::<Vec<String>>(connection).map(|members| {
                    let mut elements: Vec<Value> = members.iter().map(|m| parse_stored(m)).collect();
                    elements.sort_by_key(|e| e.to_string());
                    Completion::Ok(Value::Array(elements))
                })
            }
            (_, "read") => redis::cmd("GET")
                .arg(&key)
                .query::<Option<String>>(connection)
                .map(|text| Completion::Ok(text.as_deref().map(parse_stored).unwrap_or(Value::Null))),
            (_, "write") => redis::cmd("SET")
                .arg(&key)
                .arg(invocation.value.to_string())
                .query::<RespValue>(connection)
                .map(|_| Completion::Ok(invocation.value.clone())),
            (_, "cas") => {
                let from = &invocation.value[0];
                let to = &invocation.value[1];
                cas.key(&key)
                    .arg(if from.is_null() { "0" } else { "1" })
                    .arg(from.to_string())
                    .arg(to.to_string())
                    .invoke::<i64>(connection)
                    .map(|set| {
                        if set == 1 {
                            Completion::Ok(invocation.value.clone())
                        } else {
                            Completion::Fail("cas-mismatch".to_string())
                        }
                    })
            }
            (_, f) => Ok(Completion::Fail(format!("the redis client has no op `{f}` for {}", workload.name()))),
        };
        match result {
            Ok(completion) => completion,
            Err(e) => {
                self.forget();
                error_completion(invocation, &e)
            }
        }
    }

    fn close(&mut self) {
        self.forget();
    }

    fn set_workload(&mut self, workload: WorkloadKind) {
        self.workload = workload;
    }
}
