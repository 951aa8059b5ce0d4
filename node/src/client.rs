//! A client for faultline-node's protocol (docs/node-protocol.md), for the
//! harness and the tests.
//!
//! [`Client::execute`] runs one operation to a three-way outcome: it follows
//! leader hints, reconnects, retries with the same `(client_id, seq)` (the
//! node's sessions make the retry exactly-once), and maps what it saw to
//! [`Outcome::Ok`], [`Outcome::Fail`] (surely not applied) or [`Outcome::Info`]
//! (may have been applied). Every wait has a timeout.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::protocol::{self, ErrorName, OpAttempts, OpKind, Request, RequestBody, Response, ResponseResult, Settled};
use crate::store::Op;

/// The outcome of one operation, as a Jepsen history records it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It happened; for reads, the value read; for writes, the node's result (null, or a stream version).
    Ok(Value),
    /// It surely did not happen; the string is the error name (e.g. `cas-mismatch`).
    Fail(String),
    /// It may or may not have happened; the string says why we do not know.
    Info(String),
}

impl Outcome {
    /// The Jepsen history type: `ok`, `fail` or `info`.
    pub fn history_type(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Fail(_) => "fail",
            Outcome::Info(_) => "info",
        }
    }

    /// The error to record, if any (e.g. `cas-mismatch`).
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Ok(_) => None,
            Outcome::Fail(e) | Outcome::Info(e) => Some(e),
        }
    }
}

impl From<Settled> for Outcome {
    fn from(settled: Settled) -> Outcome {
        match settled {
            Settled::Fail(error) => Outcome::Fail(error),
            Settled::Info(why) => Outcome::Info(why),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Client addresses of the nodes (host:port).
    pub nodes: Vec<String>,
    /// Identifies this client's session; must be unique per client and non-zero.
    pub client_id: u64,
    pub connect_timeout: Duration,
    /// How long to wait for the answer to one attempt.
    pub attempt_timeout: Duration,
    /// How long one operation may take in total, retries included.
    pub op_timeout: Duration,
}

impl ClientOptions {
    pub fn new(nodes: Vec<String>, client_id: u64) -> ClientOptions {
        ClientOptions {
            nodes,
            client_id,
            connect_timeout: Duration::from_millis(500),
            attempt_timeout: Duration::from_secs(2),
            op_timeout: Duration::from_secs(10),
        }
    }
}

struct Connection {
    addr: String,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
}

enum AttemptError {
    /// The request never left: surely not applied.
    NotSent(String),
    /// The request may have arrived.
    Unknown(String),
}

/// One logical client: one session, at most one operation at a time.
pub struct Client {
    options: ClientOptions,
    seq: u64,
    next_request_id: u64,
    next_node: usize,
    leader_hint: Option<String>,
    connection: Option<Connection>,
}

impl Client {
    pub fn new(options: ClientOptions) -> Client {
        assert!(!options.nodes.is_empty(), "a client needs at least one node address");
        assert!(options.client_id != 0, "client_id 0 is reserved");
        let next_node = (options.client_id as usize) % options.nodes.len();
        Client { options, seq: 0, next_request_id: 1, next_node, leader_hint: None, connection: None }
    }

    pub fn client_id(&self) -> u64 {
        self.options.client_id
    }

    /// Runs one operation to its outcome, within `op_timeout`. What each answer means is the one
    /// classification of `faultline_node_proto` ([`OpAttempts`]), shared with faultline's harness.
    pub async fn execute(&mut self, op: Op) -> Outcome {
        let is_read = op.is_read();
        if !is_read {
            self.seq += 1;
        }
        let seq = self.seq;
        let body = protocol::op_request(op);
        let mut attempts = OpAttempts::new(if is_read { OpKind::Read } else { OpKind::Write });
        let deadline = Instant::now() + self.options.op_timeout;
        let mut backoff = Duration::from_millis(20);
        while Instant::now() < deadline {
            let addr = self.pick_node();
            match self.attempt(&addr, seq, body.clone(), deadline).await {
                Ok(ResponseResult::Ok { value }) => return Outcome::Ok(value),
                Ok(ResponseResult::Error { error, leader_hint, .. }) => {
                    if let Some(settled) = attempts.answered(error) {
                        return settled.into();
                    }
                    if error == ErrorName::NotLeader {
                        self.leader_hint = leader_hint.filter(|h| *h != addr);
                        if self.leader_hint.is_some() {
                            continue;
                        }
                    }
                    self.rotate();
                }
                Err(AttemptError::NotSent(why)) => {
                    attempts.not_sent(why);
                    self.rotate();
                }
                Err(AttemptError::Unknown(why)) => {
                    attempts.lost(why);
                    self.rotate();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(backoff.min(left)).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
        attempts.give_up().into()
    }

    /// Asks one node for its status (role, term, leader, indexes).
    pub async fn status(addr: &str, timeout: Duration) -> anyhow::Result<Value> {
        match Client::request_once(addr, RequestBody::Status, timeout).await? {
            ResponseResult::Ok { value } => Ok(value),
            ResponseResult::Error { message, .. } => anyhow::bail!("status failed: {message}"),
        }
    }

    /// Sends one request to one node, without retries (admin commands:
    /// `AddLearner`, `Promote`, `RemoveNode`, `TransferLeader`, `Status`).
    pub async fn request_once(addr: &str, body: RequestBody, timeout: Duration) -> anyhow::Result<ResponseResult> {
        let work = async {
            let mut stream = TcpStream::connect(addr).await?;
            let request = Request { id: 1, client_id: 0, seq: 0, body };
            protocol::write_frame(&mut stream, &serde_json::to_vec(&request)?).await?;
            let frame = protocol::read_frame(&mut stream, protocol::MAX_RESPONSE_FRAME_BYTES).await?;
            let response: Response = serde_json::from_slice(&frame)?;
            anyhow::Ok(response.result)
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| anyhow::anyhow!("request to {addr} timed out"))?
    }

    fn pick_node(&mut self) -> String {
        if let Some(hint) = self.leader_hint.take() {
            return hint;
        }
        if let Some(c) = &self.connection {
            return c.addr.clone();
        }
        self.options.nodes[self.next_node % self.options.nodes.len()].clone()
    }

    fn rotate(&mut self) {
        if let Some(c) = self.connection.take() {
            if let Some(i) = self.options.nodes.iter().position(|n| *n == c.addr) {
                self.next_node = i + 1;
                return;
            }
        }
        self.next_node += 1;
    }

    async fn attempt(
        &mut self,
        addr: &str,
        seq: u64,
        body: RequestBody,
        deadline: Instant,
    ) -> Result<ResponseResult, AttemptError> {
        if self.connection.as_ref().is_none_or(|c| c.addr != addr) {
            self.connection = None;
            let left = deadline.saturating_duration_since(Instant::now());
            let stream =
                match tokio::time::timeout(self.options.connect_timeout.min(left), TcpStream::connect(addr)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(AttemptError::NotSent(format!("connect {addr}: {e}"))),
                    Err(_) => return Err(AttemptError::NotSent(format!("connect {addr}: timed out"))),
                };
            let _ = stream.set_nodelay(true);
            let (reader, writer) = stream.into_split();
            self.connection = Some(Connection { addr: addr.to_string(), reader, writer });
        }
        let id = self.next_request_id;
        self.next_request_id += 1;
        let request = Request { id, client_id: self.options.client_id, seq, body };
        let payload = serde_json::to_vec(&request).expect("requests serialise");
        let conn = self.connection.as_mut().expect("connected");
        let left = deadline.saturating_duration_since(Instant::now());
        let write = async {
            protocol::write_frame(&mut conn.writer, &payload).await?;
            conn.writer.flush().await
        };
        match tokio::time::timeout(self.options.attempt_timeout.min(left), write).await {
            Ok(Ok(())) => {}
            // A partial write may still have reached the node.
            _ => {
                self.connection = None;
                return Err(AttemptError::Unknown("write failed".into()));
            }
        }
        let wait_until =
            Instant::now() + self.options.attempt_timeout.min(deadline.saturating_duration_since(Instant::now()));
        loop {
            let left = wait_until.saturating_duration_since(Instant::now());
            let conn = self.connection.as_mut().expect("connected");
            let frame = match tokio::time::timeout(
                left,
                protocol::read_frame(&mut conn.reader, protocol::MAX_RESPONSE_FRAME_BYTES),
            )
            .await
            {
                Ok(Ok(frame)) => frame,
                Ok(Err(e)) => {
                    self.connection = None;
                    return Err(AttemptError::Unknown(format!("connection lost: {e}")));
                }
                Err(_) => {
                    self.connection = None;
                    return Err(AttemptError::Unknown("timeout".into()));
                }
            };
            let response: Response = match serde_json::from_slice(&frame) {
                Ok(r) => r,
                Err(e) => {
                    self.connection = None;
                    return Err(AttemptError::Unknown(format!("malformed response: {e}")));
                }
            };
            if response.id == id {
                return Ok(response.result);
            }
            // An answer to an earlier attempt on this connection: skip it.
        }
    }
}
