//! How the project's command-line programs end (feature `cli`): one error report and exit code
//! for `hashprep` and `hashtrain` alike.

use std::io::Write;
use std::process::ExitCode;

/// The exit of `program` after `outcome`: 0 on success and when its output was closed early
/// (`| head`); otherwise the error and its causes on stderr, with the settings it names written
/// as `command`'s flags, and 2 when `bad_input` says the user can fix it, else 1.
pub fn exit(
    program: &str,
    command: &clap::Command,
    outcome: anyhow::Result<()>,
    bad_input: impl Fn(&anyhow::Error) -> bool,
) -> ExitCode {
    let Err(err) = outcome else {
        return ExitCode::SUCCESS;
    };
    if is_broken_pipe(&err) {
        return ExitCode::SUCCESS;
    }
    let _ = writeln!(
        std::io::stderr(),
        "{program}: error: {}",
        message(command, &err)
    );
    ExitCode::from(if bad_input(&err) { 2 } else { 1 })
}

/// The error and its causes, with the settings it names written as `command`'s flags.
fn message(command: &clap::Command, err: &anyhow::Error) -> String {
    let flags = long_flags(command);
    crate::util::settings_as_flags(&crate::error_message(err.as_ref()), |flag| {
        flags.iter().any(|f| f == flag)
    })
}

/// Every long option of `command` and its subcommands.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> clap::Command {
        clap::Command::new("prog").subcommand(
            clap::Command::new("build")
                .arg(clap::Arg::new("experts").long("experts"))
                .arg(clap::Arg::new("seq-len").long("seq-len")),
        )
    }

    #[test]
    fn settings_are_said_as_the_flags_of_any_subcommand() {
        let err = anyhow::Error::new(crate::Error::setting("experts", "must be at least 1"));
        assert_eq!(message(&command(), &err), "--experts must be at least 1");
        let err = anyhow::Error::new(crate::Error::setting("hashes", "must be at least 1"));
        assert_eq!(message(&command(), &err), "`hashes` must be at least 1");
    }

    #[test]
    fn a_closed_stdout_is_success_and_bad_input_exits_2() {
        let closed = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let wrapped = Err(anyhow::Error::new(closed).context("writing batches"));
        assert_eq!(
            exit("prog", &command(), wrapped, |_| true),
            ExitCode::SUCCESS
        );
        let bad = Err(anyhow::Error::new(crate::Error::setting("experts", "is 0")));
        assert_eq!(exit("prog", &command(), bad, |_| true), ExitCode::from(2));
        let ours = Err(anyhow::anyhow!("a bug"));
        assert_eq!(exit("prog", &command(), ours, |_| false), ExitCode::from(1));
    }
}
