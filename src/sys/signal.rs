//! Signals: sending them to process groups, their dispositions, and the
//! supervisor's [`SignalWatch`].
//!
//! The watch turns SIGINT, SIGTERM and SIGHUP (to forward to the child's
//! group), SIGWINCH (to resize the child's terminal) and SIGCHLD (the child
//! may have exited) into flags and a byte on a non-blocking pipe, whose read
//! end the supervisor polls beside the child's output. Handlers are removed
//! on drop, restoring the default behaviour.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::libc;
use signal_hook::SigId;

use super::call;

/// A signal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

impl Signal {
    pub const INTERRUPT: Signal = Signal(libc::SIGINT);
    pub const TERMINATE: Signal = Signal(libc::SIGTERM);
    pub const HANGUP: Signal = Signal(libc::SIGHUP);
    pub const KILL: Signal = Signal(libc::SIGKILL);
    pub const CONTINUE: Signal = Signal(libc::SIGCONT);
    pub const WINDOW_CHANGE: Signal = Signal(libc::SIGWINCH);
    pub const CHILD: Signal = Signal(libc::SIGCHLD);
    pub const TERMINAL_OUTPUT: Signal = Signal(libc::SIGTTOU);
    pub const PIPE: Signal = Signal(libc::SIGPIPE);

    /// The signal numbered `number`.
    pub fn from_number(number: i32) -> Signal {
        Signal(number)
    }

    /// Its number.
    pub fn number(self) -> i32 {
        self.0
    }

    fn to_nix(self) -> Option<nix::sys::signal::Signal> {
        nix::sys::signal::Signal::try_from(self.0).ok()
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_nix() {
            Some(signal) => f.write_str(signal.as_str()),
            None => write!(f, "signal {}", self.0),
        }
    }
}

/// Sends `signal` to every process in group `pgid`; a group that is already
/// gone is not an error.
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    // SAFETY: kill(2) with a negative pid signals a process group.
    let sent = unsafe { libc::kill(-(pgid as libc::pid_t), signal.0) };
    if sent == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ESRCH) => Ok(()),
        _ => Err(io::Error::new(
            e.kind(),
            format!("killpg({pgid}, {signal}): {e}"),
        )),
    }
}

/// Sets a signal's disposition to ignore (`true`) or default (`false`).
pub fn ignore_signal(signal: Signal, ignore: bool) -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let Some(nix_signal) = signal.to_nix() else {
        return Err(io::Error::other(format!("no such signal: {}", signal.0)));
    };
    let handler = if ignore {
        SigHandler::SigIgn
    } else {
        SigHandler::SigDfl
    };
    // SAFETY: installing SIG_IGN or SIG_DFL runs no code in signal context.
    call(|| format!("sigaction({signal}, {handler:?})"), unsafe {
        sigaction(
            nix_signal,
            &SigAction::new(handler, SaFlags::empty(), SigSet::empty()),
        )
    })
    .map(drop)
}

/// Ends this process the way `signal` would, so its parent sees it.
pub fn die_by_signal(signal: i32) -> ! {
    let signal = Signal(signal);
    if let Some(nix_signal) = signal.to_nix() {
        let _ = ignore_signal(signal, false);
        let _ = nix::sys::signal::raise(nix_signal);
    }
    std::process::exit(128 + signal.0)
}

/// The signals a [`SignalWatch`] watches, in a fixed order.
pub const WATCHED: [Signal; 5] = [
    Signal::INTERRUPT,
    Signal::TERMINATE,
    Signal::HANGUP,
    Signal::WINDOW_CHANGE,
    Signal::CHILD,
];

/// Flags set by the watched signals, and the pipe that wakes the poll loop.
pub struct SignalWatch {
    flags: Vec<(Signal, Arc<AtomicBool>)>,
    wake: OwnedFd,
    ids: Vec<SigId>,
}

impl SignalWatch {
    /// Installs the handlers.
    pub fn install() -> io::Result<Self> {
        let (read, write) = super::fd::nonblocking_pipe()?;
        let mut flags = Vec::new();
        let mut ids = Vec::new();
        for signal in WATCHED {
            let flag = Arc::new(AtomicBool::new(false));
            ids.push(signal_hook::flag::register(signal.0, Arc::clone(&flag))?);
            ids.push(signal_hook::low_level::pipe::register(
                signal.0,
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
        super::fd::drain(self.wake.as_fd());
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
