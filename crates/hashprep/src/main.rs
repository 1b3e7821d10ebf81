//! The `hashprep` command line. Results go to stdout (`--json` for scripts), progress to stderr.
//! Exit codes: 0 success (also when stdout is closed early), 2 bad input or usage (the message
//! names the file, line or option), 1 internal failure.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (mimalloc.h; libmimalloc-sys names the options on either
/// side of it, `mi_option_eager_commit_delay` = 14 and `mi_option_use_numa_nodes` = 16).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory for reuse instead of returning it to the OS. A run frees and allocates its
/// large buffers (blocks of lines, Arrow batches) many times a second; returned memory made each
/// new buffer fault in and zero fresh pages (Reddit, 1 GB of dumps: 48k page faults and 0.7 s
/// of kernel time). The process then stays at its peak memory, which the run needed anyway.
fn keep_freed_memory() {
    #[allow(unsafe_code)]
    // SAFETY: sets an option by its id; mimalloc reads options when it uses them and allows
    // setting them at any time.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    let outcome = cli::run(cli::Cli::parse());
    hashprep::exit::exit("hashprep", &cli::Cli::command(), outcome, |err| {
        err.downcast_ref::<hashprep::Error>()
            .is_some_and(hashprep::Error::is_bad_input)
    })
}
