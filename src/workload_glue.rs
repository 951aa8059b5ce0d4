//! The workload of a `faultline test` run (`--workload`, docs/report.md): its command-line
//! options, the generators the interpreter drives during the load and for the final reads, and
//! which systems can run it. The workloads themselves (generators, models, direct checkers) live
//! in `faultline-workloads`; this module only plugs them into the harness.

use anyhow::{bail, Result};
use faultline_workloads::{describe_all, WorkloadKind, WorkloadOptions};
use serde::Serialize;

use crate::generator::{self, EachOnce, WorkloadGenerator};

#[derive(clap::Args, Debug, Clone, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct WorkloadArgs {
    /// What the clients do and how it is checked: mixed, cas-register, register, append, set
    /// (`faultline workloads` lists them with their models and nemeses). Default: mixed where the
    /// system runs it (faultline-node), else cas-register (etcd, the toy store). None until
    /// `resolve`; test.json stores the resolved one.
    #[arg(long, value_parser = parse_workload, long_help = long_help())]
    pub workload: Option<WorkloadKind>,
    /// Client workers per key, stream or set at a time (Jepsen's independent keys): the active
    /// keys are concurrency / this. Not used by `register` (one key).
    #[arg(long, default_value_t = 2)]
    pub workers_per_key: usize,
    /// Keys (streams, sets) in use at a time; overrides --workers-per-key (default: concurrency /
    /// workers-per-key). Few keys and many workers make contention, and stale reads, frequent.
    #[arg(long)]
    pub keys: Option<usize>,
    /// Operations on one key (stream, set) before it is retired for a fresh one, so that every
    /// key's history stays small enough to check fast (sets live twice as long).
    #[arg(long, default_value_t = 200)]
    pub ops_per_key: u64,
}

impl Default for WorkloadArgs {
    fn default() -> Self {
        crate::clap_defaults()
    }
}

fn parse_workload(name: &str) -> std::result::Result<WorkloadKind, String> {
    WorkloadKind::from_name(name)
        .ok_or_else(|| format!("unknown workload `{name}`; known: {}", WorkloadKind::names().join(", ")))
}

fn long_help() -> String {
    format!("What the clients do and how it is checked.\n\n{}", describe_all().trim_end())
}

impl WorkloadArgs {
    /// Refuses combinations that cannot run, before anything is created.
    pub fn validate(&self) -> Result<()> {
        if self.workers_per_key == 0 || self.ops_per_key == 0 || self.keys == Some(0) {
            bail!("--workers-per-key, --ops-per-key and --keys must be positive");
        }
        Ok(())
    }

    /// Settles the default workload for a system that runs the workloads `supports` accepts
    /// (an explicit `--workload` stays, and is refused later if the system cannot run it).
    pub fn resolve(&mut self, supports: impl Fn(WorkloadKind) -> bool) -> Result<WorkloadKind> {
        let Some(workload) = self.workload.or_else(|| WorkloadKind::default_for(supports)) else {
            bail!(
                "the system runs none of the default workloads ({})",
                WorkloadKind::DEFAULTS.map(|w| w.name()).join(", ")
            );
        };
        self.workload = Some(workload);
        Ok(workload)
    }

    /// The workload of this run: the one given or resolved, else the default of systems that
    /// run everything.
    pub fn kind(&self) -> WorkloadKind {
        self.workload.unwrap_or(WorkloadKind::DEFAULT)
    }

    /// The load's op source, seeded.
    pub fn generator(&self, concurrency: usize, seed: u64) -> WorkloadGenerator {
        let options = match self.keys {
            // The generators only use concurrency / workers_per_key (the active keys).
            Some(keys) => WorkloadOptions { concurrency: keys, workers_per_key: 1, ops_per_key: self.ops_per_key },
            None => {
                WorkloadOptions { concurrency, workers_per_key: self.workers_per_key, ops_per_key: self.ops_per_key }
            }
        };
        WorkloadGenerator(self.kind().generator(&options, seed))
    }
}

/// The reads after the final heal and recovery: every key, stream or set the load used, twice (by
/// different workers, so through different nodes).
pub fn final_reads(load: &WorkloadGenerator) -> EachOnce {
    let reads: Vec<_> = load.0.final_reads().into_iter().map(generator::invocation).collect();
    EachOnce::new(reads.iter().chain(reads.iter()).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{Context, Generator, Step};

    fn args(workload: &str) -> WorkloadArgs {
        WorkloadArgs {
            workload: Some(parse_workload(workload).unwrap()),
            workers_per_key: 2,
            keys: None,
            ops_per_key: 10,
        }
    }

    #[test]
    fn the_default_is_mixed_where_the_system_runs_it_and_cas_register_elsewhere() {
        let mut everything = WorkloadArgs::default();
        assert_eq!(everything.workload, None);
        assert_eq!(everything.resolve(|_| true).unwrap(), WorkloadKind::Mixed);
        let registers_only = |w| matches!(w, WorkloadKind::Register | WorkloadKind::CasRegister);
        let mut toy = WorkloadArgs::default();
        assert_eq!(toy.resolve(registers_only).unwrap(), WorkloadKind::CasRegister);
        assert_eq!(toy.kind(), WorkloadKind::CasRegister);
        // An explicit choice is kept (and refused by the system later if it cannot run it).
        let mut explicit = args("mixed");
        assert_eq!(explicit.resolve(registers_only).unwrap(), WorkloadKind::Mixed);
        assert!(WorkloadArgs::default().resolve(|_| false).is_err());
    }

    #[test]
    fn workload_names_parse_and_unknown_ones_say_what_is_known() {
        for name in WorkloadKind::names() {
            assert_eq!(parse_workload(name).unwrap().name(), name);
        }
        let error = parse_workload("bank").unwrap_err();
        assert!(error.contains("cas-register") && error.contains("set"), "{error}");
    }

    #[test]
    fn zero_sizes_are_refused() {
        assert!(args("cas-register").validate().is_ok());
        let mut zero = args("set");
        zero.ops_per_key = 0;
        assert!(zero.validate().is_err());
    }

    #[test]
    fn keys_sets_how_many_keys_are_in_use_at_a_time() {
        let context = Context { time_ns: 0, free_workers: 1, in_flight: 0 };
        let keys_in_use = |args: &WorkloadArgs| {
            let mut load = args.generator(15, 2);
            let keys: std::collections::BTreeSet<String> = (0..20)
                .map(|_| match load.next(&context) {
                    Step::Op(op) => op.key.unwrap().to_string(),
                    _ => panic!("a workload never pends"),
                })
                .collect();
            keys.len()
        };
        let mut few = args("cas-register");
        few.ops_per_key = 100;
        assert_eq!(keys_in_use(&few), 15 / 2);
        few.keys = Some(2);
        assert_eq!(keys_in_use(&few), 2);
    }

    #[test]
    fn final_reads_read_every_set_the_load_used_twice() {
        let mut load = args("set").generator(10, 1);
        let context = Context { time_ns: 0, free_workers: 1, in_flight: 0 };
        let mut used = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let Step::Op(op) = load.next(&context) else { panic!("a workload never pends") };
            used.insert(op.key.unwrap().to_string());
        }
        let mut reads = final_reads(&load);
        let mut read = std::collections::BTreeMap::<String, usize>::new();
        while let Step::Op(op) = reads.next(&context) {
            assert_eq!(op.f, "read");
            *read.entry(op.key.unwrap().to_string()).or_default() += 1;
        }
        assert!(used.iter().all(|key| read.get(key) == Some(&2)), "{used:?} {read:?}");
    }
}
