//! `faultline`: the control binary. Subcommands live in their own modules; `main` only parses the
//! command line and maps each subcommand's outcome to the process exit code.

mod check_cmd;
// Harness (issue 4): `faultline test` and `faultline cleanup`.
mod checking;
mod cleanup_cmd;
mod cluster;
mod db;
mod generator;
mod interpreter;
mod nemesis;
mod netns;
mod node_client;
mod run_store;
mod test_cmd;

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
}

fn main() {
    let cli = Cli::parse();
    let exit_code = match cli.command {
        Command::Check(args) => check_cmd::run(args),
        Command::Test(args) => test_cmd::run(*args),
        Command::Cleanup(args) => cleanup_cmd::run(args),
    };
    std::process::exit(exit_code);
}
