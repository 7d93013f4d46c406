//! Signals the supervisor reacts to, turned into flags and a wake-up pipe.
//!
//! SIGINT, SIGTERM and SIGHUP (to forward to the child's group), SIGWINCH
//! (to resize the child's terminal) and SIGCHLD (the child may have exited)
//! each set a flag and write a byte to a non-blocking pipe, whose read end the
//! supervisor polls beside the child's output. Handlers are removed on drop,
//! restoring the default behaviour.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::Signal;
use signal_hook::SigId;

/// The signals watched, in a fixed order.
pub const WATCHED: [Signal; 5] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
];

/// Flags set by the watched signals, and the pipe that wakes the poll loop.
pub struct SignalWatch {
    flags: Vec<(Signal, Arc<AtomicBool>)>,
    wake: OwnedFd,
    ids: Vec<SigId>,
}

impl SignalWatch {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Self> {
        let (read, write) = crate::sandbox::sys::nonblocking_pipe()?;
        let mut flags = Vec::new();
        let mut ids = Vec::new();
        for signal in WATCHED {
            let flag = Arc::new(AtomicBool::new(false));
            ids.push(signal_hook::flag::register(
                signal as i32,
                Arc::clone(&flag),
            )?);
            ids.push(signal_hook::low_level::pipe::register(
                signal as i32,
                write.try_clone()?,
            )?);
            flags.push((signal, flag));
        }
        Ok(SignalWatch {
            flags,
            wake: read,
            ids,
        })
    }

    /// The fd to poll for readability.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Empties the wake pipe and returns the signals that arrived since the
    /// last call (each at most once, in `WATCHED` order).
    pub fn take(&self) -> Vec<Signal> {
        crate::sandbox::sys::drain(self.wake.as_fd());
        self.flags
            .iter()
            .filter(|(_, flag)| flag.swap(false, Ordering::SeqCst))
            .map(|(signal, _)| *signal)
            .collect()
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
