//! The `hashprep` command line. Results go to stdout (`--json` for scripts), progress to stderr.
//! Exit codes: 0 success (also when stdout is closed early), 2 bad input or usage (the message
//! names the file, line or option), 1 internal failure.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let outcome = cli::run(cli::Cli::parse());
    hashprep::exit::exit("hashprep", &cli::Cli::command(), outcome, |err| {
        err.downcast_ref::<hashprep::Error>()
            .is_some_and(hashprep::Error::is_bad_input)
    })
}
