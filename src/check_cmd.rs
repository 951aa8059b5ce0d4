//! `faultline check`: offline linearizability checking.
use clap::Args;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// History files or run directories.
    pub paths: Vec<std::path::PathBuf>,
}

pub fn run(_args: CheckArgs) -> i32 {
    3
}
