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
//! Both are read by `shroud::sandbox::run_internal`, as in `shroud`.

use std::process::ExitCode;

/// Exit code of a panic, as `shroud` gives it.
const EXIT_INTERNAL: u8 = 125;

fn main() -> ExitCode {
    // Before the environment (which holds secret values) is read.
    let _ = shroud::sys::proc::disable_core_dumps();
    shroud::sys::panic::install_hook(EXIT_INTERNAL);
    ExitCode::from(shroud::sandbox::run_internal(std::env::args_os().skip(1)))
}
