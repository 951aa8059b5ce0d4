//! `faultline`: the control binary. Subcommands live in their own modules; `main` only parses the
//! command line and maps each subcommand's outcome to the process exit code.

mod check_cmd;
mod check_txn;
// Harness (issue 4): `faultline test` and `faultline cleanup`.
mod cleanup_cmd;
mod cluster;
mod convergence;
// Faults below the network (issue 15): faultfs mounts and libfaketime under the nodes.
mod clock;
mod disk;
mod exit;
mod generator;
mod interpreter;
mod judge;
mod lifecycle;
mod member;
mod nemesis;
mod netns;
mod online;
mod run_store;
mod systems;
mod test_cmd;
mod workload_glue;
// Report (issue 5): `faultline report`, `faultline serve`, `faultline workloads`.
mod report;
mod serve_cmd;
// etcd and the side-by-side benchmark (issue 6): `--db etcd`, `faultline bench`.
mod bench_cmd;
// `faultline systems`: the system folders described by files (issue 14).
mod systems_cmd;
// Torture matrices, replays and scenarios (issue 7): `faultline torture`; shards and merge (issue 18).
mod torture;
mod torture_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "faultline", version, about = "Jepsen-style fault injection for systems on one Linux box")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check recorded histories (ours, Jepsen EDN, porcupine logs) for linearizability.
    Check(check_cmd::CheckArgs),
    /// Torture-test a cluster in network namespaces with a nemesis, then check the history.
    Test(Box<test_cmd::TestArgs>),
    /// Remove namespaces, processes and state left behind by killed `faultline test` runs.
    Cleanup(cleanup_cmd::CleanupArgs),
    /// (Re)render a run directory's report: index.html, timeline.html, latency.svg, rate.svg.
    Report(report::ReportArgs),
    /// Serve a local page listing the runs in a store, each linking to its report.
    Serve(serve_cmd::ServeArgs),
    /// List the workloads, the model each is checked with, and the nemeses that suit it.
    Workloads,
    /// Closed-loop load against a healthy cluster (faultline-node or etcd): ops/s and latencies.
    Bench(Box<bench_cmd::BenchArgs>),
    /// List the system folders (systems/): what each supports and whether its packages are installed.
    Systems(systems_cmd::SystemsArgs),
    /// Run a matrix of tests (workloads x nemesis mixes x seeds, plus saved scenarios) within a time
    /// budget; summarise as torture.json, junit.xml and index.html. Also --save-scenario.
    Torture(Box<torture_cmd::TortureArgs>),
}

/// A clap `Args` struct with every option at its default (what an empty command line gives):
/// the `Default` of the option types, so a stored run's options missing a newer field read back.
pub fn clap_defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults").no_binary_name(true));
    let matches = command.try_get_matches_from(Vec::<String>::new()).expect("the defaults of an option struct parse");
    T::from_arg_matches(&matches).expect("the defaults of an option struct are valid")
}

fn main() {
    // Harness events outside a run's own faultline.log (see `run_store::RunLog`) go to stderr,
    // filtered by RUST_LOG (default: warnings and errors).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let exit = match cli.command {
        Command::Check(args) => check_cmd::run(args),
        Command::Test(args) => test_cmd::run(*args),
        Command::Cleanup(args) => cleanup_cmd::run(args),
        Command::Report(args) => report::run(args),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(*args),
        Command::Torture(args) => torture_cmd::run(*args),
        Command::Systems(args) => systems_cmd::run(args),
        Command::Workloads => {
            print!("{}", faultline_workloads::describe_all());
            exit::Exit::Valid
        }
    };
    // The one place an outcome becomes a process exit code (src/exit.rs).
    std::process::exit(exit.code());
}
