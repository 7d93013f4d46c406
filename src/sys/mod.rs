//! The OS layer: every process-level syscall shroud makes outside the
//! sandbox's own isolation calls (which live in `sandbox::ns`).
//!
//! Split by concern, as hakoniwa splits its runtime: [`beneath`] (files
//! beneath a directory, resolved by the kernel), [`fd`] (pipes, reads
//! and writes on non-blocking descriptors, descriptors handed to children),
//! [`poll`], [`term`] (terminals: modes, sizes, the foreground job), [`pty`],
//! [`signal`] (process groups, dispositions, the supervisor's signal watch),
//! [`proc`] (process hardening, fork, wait, exec). Every error names the call
//! that failed and its arguments, so a failure on an unusual host says what
//! the kernel refused. Nothing here decides policy: callers say what to
//! apply. No nix type appears in a public signature: descriptors are std's
//! `OwnedFd`/`BorrowedFd`, and signals and window sizes are types of ours.

pub mod beneath;
pub mod fd;
pub mod panic;
pub mod poll;
pub mod proc;
pub mod pty;
pub mod signal;
pub mod term;

use std::io;

/// Turns a nix result into an `io::Error` whose message names the call.
pub(crate) fn call<T>(what: impl FnOnce() -> String, result: nix::Result<T>) -> io::Result<T> {
    result.map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", what())))
}
