//! Sandboxing: the policy a process runs under and the syscalls that apply it.
//!
//! [`template`] turns `sandbox-templates/*.toml` into plain data (the
//! environment, limits, network and isolation a sandbox asks for);
//! [`apply`] is the `__sandbox-init` process that applies it, through
//! [`ns`], the one file that makes isolation syscalls (namespaces, mounts,
//! rlimits, privileges). [`disk`] gives a sandbox a size-limited file
//! system of its own where the host allows it. [`holder`] keeps the
//! network namespace a sandbox's commands share.

pub mod apply;
pub mod disk;
pub mod holder;
pub mod ns;
pub mod template;

use std::ffi::OsString;
use std::io::Write;

use apply::{InitFailure, InitRequest};

/// Exit code of a bad internal command line.
const EXIT_USAGE: u8 = 2;
/// Exit code of an init that could not start.
const EXIT_INTERNAL: u8 = 125;

/// The internal entry points, from the arguments after the program's name,
/// read by hand (the small init binary links no argument parser), for both
/// binaries: `__netns-holder [--user] DIR` (the holder), or `[__sandbox-init]
/// --policy JSON [--probe] [-- COMMAND...]` (the init). The holder and the
/// init proper never return; a probe or an error returns its exit code, the
/// error printed as one `error:` line.
pub fn run_internal(args: impl Iterator<Item = OsString>) -> u8 {
    let mut args = args.peekable();
    if args.peek().is_some_and(|arg| arg == "__netns-holder") {
        args.next();
        let user = args.peek().is_some_and(|arg| arg == "--user");
        if user {
            args.next();
        }
        if let (Some(dir), None) = (args.next(), args.next()) {
            holder::run(std::path::Path::new(&dir), user)
        }
        let _ = writeln!(
            std::io::stderr(),
            "error: usage: __netns-holder [--user] DIR"
        );
        return EXIT_USAGE;
    }
    if args.peek().is_some_and(|arg| arg == "__sandbox-init") {
        args.next();
    }
    let result = InitRequest::parse(args)
        .map_err(InitFailure::Usage)
        .and_then(InitRequest::run);
    match result {
        Ok(code) => code,
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "error: {failure}");
            match failure {
                InitFailure::Usage(_) => EXIT_USAGE,
                InitFailure::Environment(_) => EXIT_INTERNAL,
            }
        }
    }
}
