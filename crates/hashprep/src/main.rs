//! The `hashprep` command line. Results go to stdout (`--json` for scripts), progress to stderr.
//! Exit codes: 0 success, 2 bad input or usage (the message names the file, line or option),
//! 1 internal failure.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(
                std::io::stderr(),
                "hashprep: error: {}",
                hashprep::error_message(err.as_ref())
            );
            let bad_input = err
                .downcast_ref::<hashprep::Error>()
                .is_some_and(hashprep::Error::is_bad_input);
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
