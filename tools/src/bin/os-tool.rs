//! `os-tool`: the operator's CLI for an ostore data directory (see docs/CLI.md).

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A panic is a bug, but scripts still get the one-line form they parse.
    std::panic::set_hook(Box::new(|info| {
        // Not eprintln!: a panic while reporting a panic would abort.
        let _ = writeln!(
            std::io::stderr(),
            "os-tool: EIO: internal error (a bug in os-tool): {}",
            info.to_string().replace('\n', " ")
        );
    }));
    let args = std::env::args_os().collect();
    let code = ostore_tools::run(args, &mut std::io::stdout().lock(), &mut std::io::stderr());
    ExitCode::from(code)
}
