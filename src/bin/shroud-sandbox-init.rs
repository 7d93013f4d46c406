//! `shroud-sandbox-init`: the sandbox init (`shroud::sandbox::apply`) as a
//! binary of its own. It is what `shroud __sandbox-init` runs, without the
//! command line, the store or the server linked in: every sandboxed command
//! starts one, and a small binary maps, relocates and faults in a fraction
//! of what `shroud` does. `shroud` uses it when it is installed beside it.
//!
//! Arguments: `--policy JSON [--probe] [-- COMMAND...]`, with the
//! command's environment on the descriptor named by `SHROUD_ENV_FD`; or
//! `__netns-holder [--user] DIR`, the network namespace holder
//! (`shroud::sandbox::holder`), which the init starts as `/proc/self/exe`.

use std::io::Write;
use std::process::ExitCode;

use shroud::sandbox::apply::{InitFailure, InitRequest};

/// Exit codes, as `shroud` gives them.
const EXIT_USAGE: u8 = 2;
const EXIT_INTERNAL: u8 = 125;

fn main() -> ExitCode {
    // Before the environment (which holds secret values) is read.
    let _ = shroud::sys::proc::disable_core_dumps();
    shroud::sys::panic::install_hook(EXIT_INTERNAL);
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|arg| arg == "__netns-holder") {
        args.next();
        let user = args.peek().is_some_and(|arg| arg == "--user");
        if user {
            args.next();
        }
        match (args.next(), args.next()) {
            (Some(dir), None) => shroud::sandbox::holder::run(std::path::Path::new(&dir), user),
            _ => {
                let _ = writeln!(
                    std::io::stderr(),
                    "error: usage: __netns-holder [--user] DIR"
                );
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let result = InitRequest::parse(args)
        .map_err(InitFailure::Usage)
        .and_then(InitRequest::run);
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "error: {failure}");
            ExitCode::from(match failure {
                InitFailure::Usage(_) => EXIT_USAGE,
                InitFailure::Environment(_) => EXIT_INTERNAL,
            })
        }
    }
}
