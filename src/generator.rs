//! Generators are pure values (Jepsen's second-generation generators): given a context (the time
//! and how many workers are free or busy) they yield an operation, "pending" (maybe with a time to
//! wake up at), or "done". They read no clock, start no thread and do no IO; all randomness comes
//! from a seeded RNG they own. `crate::interpreter` is the only thing that owns time and threads.

use faultline_workloads::{OpGenerator, WorkloadOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::systems::Invocation;

/// What a generator sees when asked for its next operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Nanoseconds since the interpreter started.
    pub time_ns: u64,
    /// Workers idle right now (the interpreter only asks when at least one is).
    pub free_workers: usize,
    /// Operations invoked and not yet completed.
    pub in_flight: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Op(Invocation),
    /// Nothing to do yet; ask again by `wake_at_ns` at the latest (or when an op completes).
    Pending {
        wake_at_ns: Option<u64>,
    },
    /// This generator will never yield again.
    Done,
}

pub trait Generator: Send {
    fn next(&mut self, context: &Context) -> Step;
}

/// A workload's op source (`faultline_workloads::OpGenerator`: pure, seeded, endless) as a
/// generator; the harness bounds it with `Rate` and `TimeLimit`.
pub struct WorkloadGenerator(pub Box<dyn OpGenerator>);

impl Generator for WorkloadGenerator {
    fn next(&mut self, _context: &Context) -> Step {
        Step::Op(invocation(self.0.next_op()))
    }
}

/// A workload's op as the harness invokes it.
pub fn invocation(op: WorkloadOp) -> Invocation {
    Invocation { f: op.f, key: op.key, value: op.value }
}

/// Each of a fixed list of ops once, in order, then done: the final reads after recovery.
pub struct EachOnce {
    ops: std::vec::IntoIter<Invocation>,
}

impl EachOnce {
    pub fn new(ops: Vec<Invocation>) -> EachOnce {
        EachOnce { ops: ops.into_iter() }
    }
}

impl Generator for EachOnce {
    fn next(&mut self, _context: &Context) -> Step {
        match self.ops.next() {
            Some(op) => Step::Op(op),
            None => Step::Done,
        }
    }
}

/// Ends the inner generator at `limit_ns` after the first time it is asked.
/// Ends (`Done`) once `flag` is set, e.g. when the online check found the history invalid.
/// The one generator that looks at shared state: the decision to stop is the harness's.
pub struct UntilSet<'a, G> {
    flag: &'a std::sync::atomic::AtomicBool,
    inner: G,
}

impl<'a, G: Generator> UntilSet<'a, G> {
    pub fn new(flag: &'a std::sync::atomic::AtomicBool, inner: G) -> UntilSet<'a, G> {
        UntilSet { flag, inner }
    }

    pub fn into_inner(self) -> G {
        self.inner
    }
}

impl<G: Generator> Generator for UntilSet<'_, G> {
    fn next(&mut self, context: &Context) -> Step {
        if self.flag.load(std::sync::atomic::Ordering::SeqCst) {
            return Step::Done;
        }
        self.inner.next(context)
    }
}

pub struct TimeLimit<G> {
    inner: G,
    limit_ns: u64,
    deadline_ns: Option<u64>,
}

impl<G: Generator> TimeLimit<G> {
    pub fn new(limit_ns: u64, inner: G) -> TimeLimit<G> {
        TimeLimit { inner, limit_ns, deadline_ns: None }
    }

    /// The wrapped generator (e.g. to ask a workload for its final reads after the load).
    pub fn into_inner(self) -> G {
        self.inner
    }
}

impl<G: Generator> Generator for TimeLimit<G> {
    fn next(&mut self, context: &Context) -> Step {
        let deadline = *self.deadline_ns.get_or_insert(context.time_ns + self.limit_ns);
        if context.time_ns >= deadline {
            return Step::Done;
        }
        match self.inner.next(context) {
            Step::Pending { wake_at_ns } => {
                Step::Pending { wake_at_ns: Some(wake_at_ns.map_or(deadline, |t| t.min(deadline))) }
            }
            step => step,
        }
    }
}

/// Limits the inner generator to about `ops_per_second` over all workers: each op is due a random
/// 0..2 mean intervals after the previous one (Jepsen's stagger), so bursts and gaps both happen.
pub struct Rate<G> {
    inner: G,
    mean_interval_ns: u64,
    next_due_ns: Option<u64>,
    rng: StdRng,
}

impl<G: Generator> Rate<G> {
    pub fn new(ops_per_second: f64, seed: u64, inner: G) -> Rate<G> {
        assert!(ops_per_second > 0.0);
        Rate {
            inner,
            mean_interval_ns: (1e9 / ops_per_second) as u64,
            next_due_ns: None,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn into_inner(self) -> G {
        self.inner
    }
}

impl<G: Generator> Generator for Rate<G> {
    fn next(&mut self, context: &Context) -> Step {
        let due = *self.next_due_ns.get_or_insert(context.time_ns);
        if context.time_ns < due {
            return Step::Pending { wake_at_ns: Some(due) };
        }
        let step = self.inner.next(context);
        if let Step::Op(_) = step {
            let gap = self.rng.gen_range(0..=2 * self.mean_interval_ns);
            // Never schedule from a time far in the past: a slow interpreter must not burst.
            self.next_due_ns = Some(due.max(context.time_ns.saturating_sub(self.mean_interval_ns)) + gap);
        }
        step
    }
}

impl Generator for Box<dyn Generator> {
    fn next(&mut self, context: &Context) -> Step {
        (**self).next(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_workloads::{WorkloadKind, WorkloadOptions};

    /// Yields at most `n` operations of the inner generator.
    pub struct Limit<G> {
        inner: G,
        remaining: u64,
    }

    impl<G: Generator> Limit<G> {
        pub fn new(n: u64, inner: G) -> Limit<G> {
            Limit { inner, remaining: n }
        }
    }

    impl<G: Generator> Generator for Limit<G> {
        fn next(&mut self, context: &Context) -> Step {
            if self.remaining == 0 {
                return Step::Done;
            }
            let step = self.inner.next(context);
            if let Step::Op(_) = step {
                self.remaining -= 1;
            }
            step
        }
    }

    fn context(time_ns: u64) -> Context {
        Context { time_ns, free_workers: 1, in_flight: 0 }
    }

    /// Drives a generator like the interpreter would, with instant ops and a fake clock that jumps
    /// to each wake-up time; returns the times at which ops were issued.
    fn simulate(generator: &mut dyn Generator, max_steps: usize) -> Vec<(u64, Invocation)> {
        let mut now = 0;
        let mut issued = Vec::new();
        for _ in 0..max_steps {
            match generator.next(&context(now)) {
                Step::Op(op) => issued.push((now, op)),
                Step::Pending { wake_at_ns } => now = wake_at_ns.expect("a timed wake-up"),
                Step::Done => return issued,
            }
        }
        panic!("generator did not finish within {max_steps} steps");
    }

    fn workload(kind: WorkloadKind, seed: u64) -> WorkloadGenerator {
        WorkloadGenerator(kind.generator(&WorkloadOptions::default(), seed))
    }

    #[test]
    fn until_set_ends_the_load_once_its_flag_is_set() {
        let flag = std::sync::atomic::AtomicBool::new(false);
        let mut load = UntilSet::new(&flag, workload(WorkloadKind::Register, 1));
        assert!(matches!(load.next(&context(0)), Step::Op(_)));
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(load.next(&context(1)), Step::Done));
    }

    #[test]
    fn a_workload_generator_yields_the_workload_ops_and_its_final_reads_after_the_load() {
        let mut a = Limit::new(200, workload(WorkloadKind::Append, 42));
        let mut b = Limit::new(200, workload(WorkloadKind::Append, 42));
        let ops_a = simulate(&mut a, 1000);
        assert_eq!(ops_a, simulate(&mut b, 1000));
        assert_eq!(ops_a.len(), 200);
        for f in ["read", "append"] {
            assert!(ops_a.iter().any(|(_, op)| op.f == f), "no {f}");
        }
        // The load's wrappers give the workload back for its final reads.
        let mut load = TimeLimit::new(1_000_000_000, Rate::new(100.0, 1, workload(WorkloadKind::Set, 3)));
        let issued = simulate(&mut load, 10_000);
        let final_reads = load.into_inner().into_inner().0.final_reads();
        let read_sets: std::collections::HashSet<_> = final_reads.iter().map(|op| op.key.clone()).collect();
        assert!(issued.iter().all(|(_, op)| read_sets.contains(&op.key)), "every set used is read at the end");
        let mut reads = EachOnce::new(final_reads.into_iter().map(invocation).collect());
        assert_eq!(simulate(&mut reads, 100).len(), read_sets.len());
    }

    #[test]
    fn rate_and_time_limit_give_about_rate_times_limit_ops() {
        // 100 ops/s for 10 s of fake time.
        let mut generator = TimeLimit::new(10_000_000_000, Rate::new(100.0, 1, workload(WorkloadKind::CasRegister, 1)));
        let ops = simulate(&mut generator, 100_000);
        assert!((800..=1200).contains(&ops.len()), "{} ops", ops.len());
        assert!(ops.iter().all(|(t, _)| *t < 10_000_000_000));
        assert!(ops.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn time_limit_counts_from_its_first_use() {
        let mut generator = TimeLimit::new(5, Limit::new(100, workload(WorkloadKind::Register, 1)));
        assert!(matches!(generator.next(&context(1_000)), Step::Op(_)));
        assert!(matches!(generator.next(&context(1_004)), Step::Op(_)));
        assert_eq!(generator.next(&context(1_005)), Step::Done);
    }
}
