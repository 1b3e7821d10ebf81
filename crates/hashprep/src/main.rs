//! The `hashprep` command line. Results go to stdout (`--json` for scripts), progress to stderr.
//! Exit codes: 0 success (also when stdout is closed early), 2 bad input or usage (the message
//! names the file, line or option), 1 internal failure.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let flags = long_flags(&cli::Cli::command());
            let message =
                hashprep::util::settings_as_flags(&hashprep::error_message(err.as_ref()), |flag| {
                    flags.iter().any(|f| f == flag)
                });
            let _ = writeln!(std::io::stderr(), "hashprep: error: {message}");
            let bad_input = err
                .downcast_ref::<hashprep::Error>()
                .is_some_and(hashprep::Error::is_bad_input);
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

/// Every long option of `command` and its subcommands: library errors name settings, the
/// command line prints them as these flags.
fn long_flags(command: &clap::Command) -> Vec<String> {
    let mut flags: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    for sub in command.get_subcommands() {
        flags.extend(long_flags(sub));
    }
    flags
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
