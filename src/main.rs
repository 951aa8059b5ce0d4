//! `faultline`: the control binary. Subcommands live in their own modules; `main` only parses the
//! command line and maps each subcommand's outcome to the process exit code.

mod check_cmd;

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
}

fn main() {
    let cli = Cli::parse();
    let exit_code = match cli.command {
        Command::Check(args) => check_cmd::run(args),
    };
    std::process::exit(exit_code);
}
