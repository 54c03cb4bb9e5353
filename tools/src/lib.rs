//! The operator tools' library: everything `os-tool` does, kept out of the binary so
//! tests and later tools (os-bench) share store opening, argument parsing and the
//! one-line error convention.
//!
//! - [`open`]: which backends exist and how a data directory is opened (the only place
//!   that names backend types).
//! - [`cli`]: the command line (clap), including the ceph-objectstore-tool style `--op`.
//! - [`commands`]: what each command reads or writes.
//! - [`output`]: JSON documents, `list` lines, progress bars and the one-line error form.
//! - [`journal_cmd`]: the journal dump.

pub mod bench;
pub mod cli;
pub mod commands;
pub mod journal_cmd;
pub mod open;
pub mod output;

use std::ffi::OsString;
use std::io::Write;

/// Runs `os-tool` with `args` (including the program name) and returns the exit code:
/// 0, or the errno value of the error that was reported on `err` as one line.
pub fn run(args: Vec<OsString>, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let cli = match cli::parse(args) {
        Ok(c) => c,
        Err(cli::ParseExit::Info(text)) => {
            // --help and --version are answers, not errors.
            let _ = out.write_all(text.as_bytes());
            return 0;
        }
        Err(cli::ParseExit::Usage(e)) => return output::report(err, &e),
    };
    if cli.debug {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
        // A second init (tests run several commands in one process) is harmless.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    match commands::run(&cli, out) {
        Ok(()) => 0,
        Err(e) if output::is_broken_pipe(&e) => 0,
        Err(e) => output::report(err, &e),
    }
}
