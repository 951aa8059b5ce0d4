//! The one place that owns time and threads for client operations: it asks a generator for
//! operations, hands them to idle worker threads, and writes invoke and completion records.
//!
//! Each worker thread lives in the client namespace with its own `Client`, bound to one node. A
//! worker whose operation ended `info` continues under a new process id (old + concurrency), as in
//! Jepsen: the old process may still have an operation in flight as far as the checker knows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::Scope;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use faultline_checker::history::OpType;
use faultline_workloads::WorkloadKind;

use crate::cluster::{Cluster, NodeId};
use crate::generator::{Context, Generator, Step};
use crate::run_store::HistoryLog;
use crate::systems::{Client, Completion, Db, Invocation};

/// How long to wait for workers to enter the namespace and connect.
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the interpreter sleeps between looks at the generator.
const MAX_POLL: Duration = Duration::from_millis(50);

struct Task {
    invocation: Invocation,
}

struct Finished {
    worker: usize,
    time_ns: u64,
    completion: Completion,
}

pub struct Interpreter<'h> {
    history: &'h HistoryLog,
    to_workers: Vec<SyncSender<Task>>,
    finished: Receiver<Finished>,
    /// The current process id of each worker.
    process_of: Vec<u64>,
    /// The op each busy worker is running, and when it must be done by.
    running: Vec<Option<(Invocation, Instant)>>,
    /// Workers we gave up waiting for; never used again.
    lost: Vec<bool>,
    /// The worker that got the latest op.
    last_worker: usize,
    /// The longest a single operation may take before we stop waiting for it.
    pub op_deadline: Duration,
}

/// Prepares worker `w`'s thread and returns its client and home node; runs on that thread.
pub type OpenWorker<'env> = dyn Fn(usize) -> Result<(Box<dyn Client>, NodeId)> + Sync + 'env;

/// Worker w's thread enters the client namespace and gets a client of `db` for node (w mod n) + 1,
/// told which workload it serves.
pub fn cluster_workers<'env>(
    cluster: &'env Cluster,
    db: &'env dyn Db,
    workload: WorkloadKind,
) -> impl Fn(usize) -> Result<(Box<dyn Client>, NodeId)> + Sync + 'env {
    move |worker| {
        cluster.enter_client_namespace()?;
        let mut client = db.new_client(cluster);
        client.set_workload(workload);
        Ok((client, worker % cluster.n_nodes + 1))
    }
}

impl<'h> Interpreter<'h> {
    /// Starts `concurrency` worker threads on `scope`, each set up by `open_worker`.
    pub fn start<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        open_worker: &'env OpenWorker<'env>,
        history: &'h HistoryLog,
        concurrency: usize,
        op_deadline: Duration,
    ) -> Result<Interpreter<'h>> {
        if concurrency == 0 {
            bail!("concurrency must be at least 1");
        }
        let (finished_tx, finished_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let mut to_workers = Vec::new();
        let history_start = Instant::now() - Duration::from_nanos(history.now_ns());
        for worker in 0..concurrency {
            let (task_tx, task_rx) = mpsc::sync_channel::<Task>(1);
            to_workers.push(task_tx);
            let finished_tx = finished_tx.clone();
            let ready_tx = ready_tx.clone();
            std::thread::Builder::new()
                .name(format!("worker-{worker}"))
                .spawn_scoped(scope, move || {
                    run_worker(worker, open_worker, history_start, task_rx, finished_tx, ready_tx)
                })
                .context("spawning a worker thread")?;
        }
        drop(ready_tx);
        for _ in 0..concurrency {
            match ready_rx.recv_timeout(WORKER_START_TIMEOUT) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.context("starting a client worker")),
                Err(_) => bail!("client workers did not start within {WORKER_START_TIMEOUT:?}"),
            }
        }
        Ok(Interpreter {
            history,
            to_workers,
            finished: finished_rx,
            process_of: (0..concurrency as u64).collect(),
            running: vec![None; concurrency],
            lost: vec![false; concurrency],
            last_worker: concurrency - 1,
            op_deadline,
        })
    }

    fn concurrency(&self) -> usize {
        self.to_workers.len()
    }

    fn in_flight(&self) -> usize {
        self.running.iter().filter(|r| r.is_some()).count()
    }

    /// The next idle worker after the one used last (round robin), so that load spreads over
    /// every worker and so over every worker's home node, instead of piling on worker 0.
    fn free_worker(&self) -> Option<usize> {
        let n = self.concurrency();
        (1..=n).map(|offset| (self.last_worker + offset) % n).find(|w| self.running[*w].is_none() && !self.lost[*w])
    }

    /// Runs `generator` until it is done (or `stop` is set) and every op it started completed or
    /// was given up on (recorded `info`).
    pub fn run(&mut self, generator: &mut dyn Generator, stop: &AtomicBool) -> Result<()> {
        let mut generator_done = false;
        loop {
            self.give_up_on_overdue()?;
            if stop.load(Ordering::SeqCst) {
                generator_done = true;
            }
            let mut wait = MAX_POLL;
            if !generator_done {
                if let Some(worker) = self.free_worker() {
                    let context = Context {
                        time_ns: self.history.now_ns(),
                        free_workers: self.concurrency() - self.in_flight(),
                        in_flight: self.in_flight(),
                    };
                    match generator.next(&context) {
                        Step::Op(invocation) => {
                            self.last_worker = worker;
                            self.invoke(worker, invocation)?;
                            continue;
                        }
                        Step::Pending { wake_at_ns } => {
                            if let Some(wake_at_ns) = wake_at_ns {
                                let until = wake_at_ns.saturating_sub(self.history.now_ns());
                                wait = wait.min(Duration::from_nanos(until));
                            }
                        }
                        Step::Done => generator_done = true,
                    }
                }
            }
            if generator_done && self.in_flight() == 0 {
                return Ok(());
            }
            if self.in_flight() == 0 && self.free_worker().is_none() {
                bail!("every client worker was given up on (stuck in an operation past its deadline)");
            }
            if let Some(earliest) = self.running.iter().flatten().map(|(_, deadline)| *deadline).min() {
                wait = wait.min(earliest.saturating_duration_since(Instant::now()));
            }
            match self.finished.recv_timeout(wait) {
                Ok(finished) => self.complete(finished)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => bail!("every client worker died"),
            }
        }
    }

    fn invoke(&mut self, worker: usize, invocation: Invocation) -> Result<()> {
        self.history.op(
            self.history.now_ns(),
            self.process_of[worker],
            OpType::Invoke,
            &invocation.f,
            invocation.key.clone(),
            invocation.value.clone(),
            None,
        )?;
        self.running[worker] = Some((invocation.clone(), Instant::now() + self.op_deadline));
        if self.to_workers[worker].send(Task { invocation }).is_err() {
            bail!("client worker {worker} died");
        }
        Ok(())
    }

    fn complete(&mut self, finished: Finished) -> Result<()> {
        let worker = finished.worker;
        let Some((invocation, _)) = self.running[worker].take() else {
            // A late answer from a worker we gave up on: its info record is already written.
            return Ok(());
        };
        let process = self.process_of[worker];
        let (op_type, value, error) = match finished.completion {
            Completion::Ok(value) => (OpType::Ok, value, None),
            Completion::Fail(error) => (OpType::Fail, invocation.value.clone(), Some(error)),
            Completion::Info(error) => (OpType::Info, invocation.value.clone(), Some(error)),
            Completion::Abort(error) => {
                let value = invocation.value.clone();
                self.history.op(
                    finished.time_ns,
                    process,
                    OpType::Info,
                    &invocation.f,
                    invocation.key,
                    value,
                    Some(error.clone()),
                )?;
                bail!("a client cannot go on: {error}");
            }
        };
        if op_type == OpType::Info {
            self.process_of[worker] += self.concurrency() as u64;
        }
        self.history.op(finished.time_ns, process, op_type, &invocation.f, invocation.key, value, error)
    }

    /// Records every op past its deadline as `info` and retires its worker (a client that ignores
    /// its own timeouts must not stall the run).
    fn give_up_on_overdue(&mut self) -> Result<()> {
        let now = Instant::now();
        for worker in 0..self.concurrency() {
            if self.running[worker].as_ref().is_some_and(|(_, deadline)| *deadline <= now) {
                let (invocation, _) = self.running[worker].take().expect("checked above");
                self.lost[worker] = true;
                self.history.op(
                    self.history.now_ns(),
                    self.process_of[worker],
                    OpType::Info,
                    &invocation.f,
                    invocation.key,
                    invocation.value,
                    Some("harness gave up waiting".to_string()),
                )?;
            }
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn run_worker(
    worker: usize,
    open_worker: &OpenWorker,
    history_start: Instant,
    tasks: Receiver<Task>,
    finished: Sender<Finished>,
    ready: Sender<Result<()>>,
) {
    let (mut client, node) = match open_worker(worker) {
        Ok(opened) => opened,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // A node that is down at start is not a harness failure: the client retries on each op.
    let mut opened = client.open(node).is_ok();
    let _ = ready.send(Ok(()));
    while let Ok(task) = tasks.recv() {
        if !opened {
            opened = client.open(node).is_ok();
        }
        let completion = if opened {
            client.invoke(&task.invocation)
        } else {
            Completion::Fail(format!("could not connect to n{node}"))
        };
        let time_ns = history_start.elapsed().as_nanos() as u64;
        if let Completion::Info(_) | Completion::Abort(_) = completion {
            // The next op belongs to a new process: start it on a fresh connection.
            client.close();
            opened = client.open(node).is_ok();
        }
        if finished.send(Finished { worker, time_ns, completion }).is_err() {
            break;
        }
    }
    client.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::EachOnce;
    use faultline_checker::history::Record;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;

    /// Answers every third op of its own with `info`, the others `ok`.
    struct FlakyClient {
        ops: u64,
    }

    impl Client for FlakyClient {
        fn open(&mut self, _node: NodeId) -> Result<()> {
            Ok(())
        }

        fn invoke(&mut self, _invocation: &Invocation) -> Completion {
            self.ops += 1;
            if self.ops.is_multiple_of(3) {
                Completion::Info("timeout".into())
            } else {
                Completion::Ok(json!(1))
            }
        }

        fn close(&mut self) {}
    }

    /// One read of each key.
    fn reads(keys: Vec<Value>) -> EachOnce {
        EachOnce::new(
            keys.into_iter().map(|key| Invocation { f: "read".into(), key: Some(key), value: Value::Null }).collect(),
        )
    }

    fn temp_history(name: &str) -> (std::path::PathBuf, HistoryLog) {
        let path = std::env::temp_dir().join(format!("faultline-interp-{name}-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let history = HistoryLog::create(&path, Instant::now()).unwrap();
        (path, history)
    }

    #[test]
    fn a_process_whose_op_ended_info_never_invokes_again_and_its_worker_gets_a_new_id() {
        let (path, history) = temp_history("info");
        let concurrency = 3;
        let open_worker =
            |worker: usize| -> Result<(Box<dyn Client>, NodeId)> { Ok((Box::new(FlakyClient { ops: 0 }), worker + 1)) };
        let keys: Vec<Value> = (0..60).map(|i| json!(format!("k{i}"))).collect();
        std::thread::scope(|scope| {
            let mut interpreter =
                Interpreter::start(scope, &open_worker, &history, concurrency, Duration::from_secs(5)).unwrap();
            interpreter.run(&mut reads(keys), &AtomicBool::new(false)).unwrap();
        });
        let ops: Vec<_> = history
            .records()
            .into_iter()
            .filter_map(|r| if let Record::Op(op) = r { Some(op) } else { None })
            .collect();
        assert_eq!(ops.iter().filter(|op| op.op_type == OpType::Invoke).count(), 60);
        assert_eq!(ops.iter().filter(|op| op.op_type != OpType::Invoke).count(), 60);
        // Per process: strictly alternating invoke/completion, and nothing after an info.
        let mut by_process: BTreeMap<u64, Vec<OpType>> = BTreeMap::new();
        for op in &ops {
            by_process.entry(op.process).or_default().push(op.op_type);
        }
        for (process, types) in &by_process {
            for (i, op_type) in types.iter().enumerate() {
                assert_eq!(*op_type == OpType::Invoke, i % 2 == 0, "process {process}: {types:?}");
                if *op_type == OpType::Info {
                    assert_eq!(i, types.len() - 1, "process {process} went on after info: {types:?}");
                }
            }
        }
        // New ids are old + concurrency, so worker w always has ids congruent to w.
        let infos = ops.iter().filter(|op| op.op_type == OpType::Info).count();
        assert!(infos >= 15, "{infos} infos");
        // Every info retired its process; each retired process was followed by a fresh one (which
        // never shows up when the info was its worker's last op of the run).
        assert!(by_process.len() >= infos && by_process.len() <= concurrency + infos);
        // Worker w's processes are w, w + concurrency, w + 2 x concurrency, ... with no gap (how
        // many each worker gets depends on how the ops fell to workers).
        for worker in 0..concurrency as u64 {
            let ids: Vec<u64> = by_process.keys().copied().filter(|p| p % concurrency as u64 == worker).collect();
            let expected: Vec<u64> = (0..ids.len() as u64).map(|i| worker + i * concurrency as u64).collect();
            assert_eq!(ids, expected, "worker {worker}");
        }
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn an_op_that_outlives_the_deadline_is_recorded_info_and_the_run_ends() {
        struct StuckClient;
        impl Client for StuckClient {
            fn open(&mut self, _node: NodeId) -> Result<()> {
                Ok(())
            }
            fn invoke(&mut self, _invocation: &Invocation) -> Completion {
                std::thread::sleep(Duration::from_millis(500));
                Completion::Ok(json!(1))
            }
            fn close(&mut self) {}
        }
        let (path, history) = temp_history("stuck");
        // Worker 0's client hangs far past the op deadline; worker 1's answers.
        let open_worker = |worker: usize| -> Result<(Box<dyn Client>, NodeId)> {
            if worker == 0 {
                Ok((Box::new(StuckClient), 1))
            } else {
                Ok((Box::new(FlakyClient { ops: 0 }), 1))
            }
        };
        let started = Instant::now();
        std::thread::scope(|scope| {
            let mut interpreter =
                Interpreter::start(scope, &open_worker, &history, 2, Duration::from_millis(100)).unwrap();
            let keys = vec![json!("a"), json!("b"), json!("c")];
            interpreter.run(&mut reads(keys), &AtomicBool::new(false)).unwrap();
            // The run ended well before the stuck op would have.
            assert!(started.elapsed() < Duration::from_millis(400), "{:?}", started.elapsed());
        });
        let records = history.records();
        let given_up: Vec<_> = records
            .iter()
            .filter_map(Record::as_op)
            .filter(|op| op.error.as_deref() == Some("harness gave up waiting"))
            .collect();
        assert_eq!(given_up.len(), 1);
        assert_eq!(given_up[0].op_type, OpType::Info);
        assert_eq!(given_up[0].process, 0);
        // The other ops all went to the healthy worker.
        let invokes = records.iter().filter_map(Record::as_op).filter(|op| op.op_type == OpType::Invoke).count();
        assert_eq!(invokes, 3);
        let _ = std::fs::remove_file(path);
    }
}
