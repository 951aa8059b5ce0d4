//! The `stdio` client adapter: any program, one per worker, started in the client namespace,
//! speaking JSON Lines (docs/systems.md): one `Request` line per op on its stdin, one `Answer`
//! line on its stdout. The program lives across ops; its stderr goes to
//! `<run>/clients/client-N.stderr`. The worker's own thread writes the request and waits for the
//! answer (`poll` with a deadline, lines of at most `MAX_ANSWER_BYTES`), so an op costs no thread
//! hand-off besides the program's.
//!
//! What can go wrong, and what the op becomes: the program died before answering → `info` (it
//! may have acted), and it is started again for the next op; an answer that is not a JSON
//! `Answer` → `info` with the text in the error; no answer within twice the op timeout (plus a
//! second) → `info`, and the program is killed and started again. A program that dies or answers
//! garbage `MAX_CONSECUTIVE_FAILURES` times in a row stops the run as a harness failure with its
//! stderr's tail (`Completion::Abort`).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use anyhow::{Context, Result};
use faultline_sysfile::{Facts, SystemFile};
use faultline_workloads::WorkloadKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cluster::{node_name, Cluster, NodeId};
use crate::systems::{Client, Completion, Invocation};

/// Deaths and garbage answers in a row before the run is stopped as a harness failure.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 5;

/// The longest answer line read; a longer one is garbage.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// How long a killed client program may take to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);

/// A node as a request names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRef {
    pub name: String,
    pub index: usize,
    pub address: String,
}

/// One operation, as the client program reads it (one line).
#[derive(Debug, Serialize, PartialEq)]
pub struct Request<'a> {
    pub f: &'a str,
    pub key: &'a Option<Value>,
    pub value: &'a Value,
    /// The workload's name (`register`, `cas-register`, `set`, `append`).
    pub workload: &'a str,
    /// The worker's home node.
    pub node: &'a NodeRef,
    pub nodes: &'a [NodeRef],
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AnswerType {
    Ok,
    Fail,
    Info,
}

/// The program's answer to one request (one line).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Answer {
    #[serde(rename = "type")]
    pub answer_type: AnswerType,
    /// A read's value; ignored for other ops (their value is the invocation's).
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub error: Option<String>,
}

/// What one answer line means for the op (pure).
pub fn completion_of(invocation: &Invocation, line: &str) -> Result<Completion, String> {
    let answer: Answer = serde_json::from_str(line.trim_end()).map_err(|e| format!("{e}"))?;
    Ok(match answer.answer_type {
        AnswerType::Ok if invocation.f == "read" => Completion::Ok(answer.value),
        AnswerType::Ok => Completion::Ok(invocation.value.clone()),
        AnswerType::Fail => Completion::Fail(answer.error.unwrap_or_else(|| "fail".to_string())),
        AnswerType::Info => Completion::Info(answer.error.unwrap_or_else(|| "info".to_string())),
    })
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// How waiting for one answer line ended.
enum LineRead {
    Line(String),
    /// The program closed its stdout (it exited).
    Eof,
    TimedOut,
    TooLong,
}

/// Reads one line, waiting at most until `deadline` for the program to write it.
fn read_line_until(reader: &mut BufReader<ChildStdout>, deadline: Instant) -> std::io::Result<LineRead> {
    let mut line = Vec::new();
    loop {
        let available = reader.buffer();
        if let Some(end) = available.iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&available[..=end]);
            reader.consume(end + 1);
            return Ok(LineRead::Line(String::from_utf8_lossy(&line).into_owned()));
        }
        line.extend_from_slice(available);
        let taken = available.len();
        reader.consume(taken);
        if line.len() > MAX_ANSWER_BYTES {
            return Ok(LineRead::TooLong);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Ok(LineRead::TimedOut);
        }
        let timeout = PollTimeout::try_from(remaining.as_millis().clamp(1, 60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(reader.get_ref().as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if reader.fill_buf()?.is_empty() {
            return Ok(LineRead::Eof);
        }
    }
}

pub struct StdioClient {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    namespace: String,
    stderr_path: PathBuf,
    nodes: Vec<NodeRef>,
    home: NodeRef,
    workload: &'static str,
    answer_timeout: Duration,
    running: Option<Running>,
    consecutive_failures: u32,
    /// Why the client cannot go on, once it cannot.
    broken: Option<String>,
    line: Vec<u8>,
    file: SystemFile,
    facts: Facts,
}

impl StdioClient {
    pub fn new(cluster: &Cluster, file: &SystemFile, facts: Facts, number: usize, op_timeout: Duration) -> StdioClient {
        let nodes: Vec<NodeRef> = cluster
            .node_ids()
            .into_iter()
            .map(|n| NodeRef { name: node_name(n), index: n, address: cluster.node_address(n).to_string() })
            .collect();
        StdioClient {
            argv: Vec::new(),
            env: Vec::new(),
            namespace: cluster.bridge_namespace(),
            stderr_path: cluster.run_dir.join("clients").join(format!("client-{number}.stderr")),
            home: nodes[0].clone(),
            nodes,
            workload: WorkloadKind::CasRegister.name(),
            answer_timeout: op_timeout * 2 + Duration::from_secs(1),
            running: None,
            consecutive_failures: 0,
            broken: None,
            line: Vec::with_capacity(256),
            file: file.clone(),
            facts,
        }
    }

    /// Renders the command for the home node and starts the program.
    fn spawn(&mut self) -> Result<()> {
        if self.argv.is_empty() {
            let context = self.file.node_context(&self.facts, self.home.index, false).map_err(anyhow::Error::msg)?;
            let client = &self.file.client;
            self.argv = SystemFile::render_command(client.command.as_ref().context("no client.command")?, &context)?;
            self.env = client
                .env
                .iter()
                .map(|(k, v)| Ok((k.clone(), SystemFile::render(v, &context)?)))
                .collect::<Result<_>>()?;
        }
        if let Some(parent) = self.stderr_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&self.stderr_path)?;
        let program = super::find_program(&self.argv[0]).unwrap_or_else(|| PathBuf::from(&self.argv[0]));
        let mut command = Command::new(program);
        command.args(&self.argv[1..]).envs(self.env.iter().map(|(k, v)| (k, v)));
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr);
        crate::netns::NamespaceHandle::open(&self.namespace)?.configure_command(&mut command)?;
        let mut child = command.spawn().with_context(|| format!("starting the stdio client {:?}", self.argv))?;
        let stdin = child.stdin.take().context("stdin was piped")?;
        let stdout = child.stdout.take().context("stdout was piped")?;
        self.running = Some(Running { child, stdin, stdout: BufReader::with_capacity(64 * 1024, stdout) });
        Ok(())
    }

    fn kill(&mut self) -> Option<String> {
        let mut running = self.running.take()?;
        let _ = running.child.kill();
        let status = crate::netns::wait_with_timeout(&mut running.child, REAP_TIMEOUT).ok().flatten();
        Some(status.map(|s| s.to_string()).unwrap_or_else(|| "not reaped".to_string()))
    }

    /// Counts a death or a garbage answer; past the limit the client is broken for good.
    fn failed(&mut self, what: String) -> Completion {
        self.consecutive_failures += 1;
        if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
            let message = format!(
                "the stdio client {:?} failed {} times in a row (last: {what}); its stderr ends with:\n{}",
                self.argv,
                self.consecutive_failures,
                super::log_tail(&self.stderr_path, 15)
            );
            self.broken = Some(message.clone());
            return Completion::Abort(message);
        }
        Completion::Info(what)
    }
}

impl Client for StdioClient {
    fn open(&mut self, node: NodeId) -> Result<()> {
        if let Some(home) = self.nodes.get(node - 1) {
            if home.index != self.home.index {
                self.home = home.clone();
                self.argv.clear();
            }
        }
        Ok(())
    }

    fn invoke(&mut self, invocation: &Invocation) -> Completion {
        if let Some(message) = &self.broken {
            return Completion::Abort(message.clone());
        }
        if self.running.is_none() {
            if let Err(e) = self.spawn() {
                // Nothing was sent: the op surely did not happen, but the harness cannot go on.
                let message = format!("{e:#}");
                self.broken = Some(message.clone());
                return Completion::Abort(message);
            }
        }
        let request = Request {
            f: &invocation.f,
            key: &invocation.key,
            value: &invocation.value,
            workload: self.workload,
            node: &self.home,
            nodes: &self.nodes,
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, &request).expect("a request serialises");
        self.line.push(b'\n');
        let running = self.running.as_mut().expect("spawned above");
        if let Err(e) = running.stdin.write_all(&self.line) {
            // The program is gone; it may have read part of the request, so the op is uncertain.
            let status = self.kill().unwrap_or_default();
            return self.failed(format!("stdio client gone ({e}; exit {status})"));
        }
        match read_line_until(&mut running.stdout, Instant::now() + self.answer_timeout) {
            Ok(LineRead::Line(line)) => match completion_of(invocation, &line) {
                Ok(completion) => {
                    self.consecutive_failures = 0;
                    completion
                }
                Err(e) => {
                    let text: String = line.trim_end().chars().take(200).collect();
                    self.failed(format!("not a stdio answer ({e}): {text}"))
                }
            },
            Ok(LineRead::TimedOut) => {
                self.kill();
                Completion::Info(format!("stdio client did not answer within {:?}", self.answer_timeout))
            }
            Ok(LineRead::TooLong) => {
                self.kill();
                self.failed(format!("stdio answer longer than {MAX_ANSWER_BYTES} bytes"))
            }
            Ok(LineRead::Eof) | Err(_) => {
                let status = self.kill().unwrap_or_default();
                self.failed(format!("stdio client exited before answering ({status})"))
            }
        }
    }

    /// The program keeps its own connections: a new logical process (after an `info`) does not
    /// need a new program, so nothing happens here; the program is stopped when the client is
    /// dropped.
    fn close(&mut self) {}

    fn set_workload(&mut self, workload: WorkloadKind) {
        self.workload = workload.name();
    }
}

impl Drop for StdioClient {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invocation(f: &str, value: Value) -> Invocation {
        Invocation { f: f.to_string(), key: Some(json!(1)), value }
    }

    #[test]
    fn answers_map_to_completions() {
        let read = invocation("read", Value::Null);
        assert_eq!(completion_of(&read, r#"{"type":"ok","value":3}"#).unwrap(), Completion::Ok(json!(3)));
        assert_eq!(completion_of(&read, r#"{"type":"ok"}"#).unwrap(), Completion::Ok(Value::Null));
        let write = invocation("write", json!(5));
        assert_eq!(completion_of(&write, "{\"type\":\"ok\",\"value\":9}\n").unwrap(), Completion::Ok(json!(5)));
        assert_eq!(
            completion_of(&write, r#"{"type":"fail","error":"cas-mismatch"}"#).unwrap(),
            Completion::Fail("cas-mismatch".into())
        );
        assert_eq!(completion_of(&write, r#"{"type":"info"}"#).unwrap(), Completion::Info("info".into()));
    }

    #[test]
    fn an_answer_that_is_not_one_is_an_error() {
        let write = invocation("write", json!(5));
        assert!(completion_of(&write, "ok").is_err());
        assert!(completion_of(&write, r#"{"type":"maybe"}"#).is_err());
        assert!(completion_of(&write, r#"{"value":1}"#).is_err());
    }

    #[test]
    fn a_request_is_one_json_line_with_the_nodes() {
        let node = NodeRef { name: "n1".into(), index: 1, address: "10.77.1.1".into() };
        let key = Some(json!("k"));
        let value = json!([1, 2]);
        let request = Request {
            f: "cas",
            key: &key,
            value: &value,
            workload: "cas-register",
            node: &node,
            nodes: std::slice::from_ref(&node),
        };
        let text = serde_json::to_string(&request).unwrap();
        assert!(!text.contains('\n'));
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["nodes"][0]["address"], "10.77.1.1");
        assert_eq!(back["value"], json!([1, 2]));
    }
}
