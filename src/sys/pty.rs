//! Pseudo-terminals: a pair for a child, and the child's side of making it
//! its controlling terminal.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::term::WindowSize;

/// A pseudo-terminal pair (master, slave), both close-on-exec, sized like
/// `size` when given.
pub fn open_pty(size: Option<WindowSize>) -> io::Result<(OwnedFd, OwnedFd)> {
    let size = size.map(WindowSize::to_winsize);
    let pty = nix::pty::openpty(size.as_ref(), None)
        .map_err(|e| io::Error::other(format!("openpty: {e}")))?;
    for fd in [&pty.master, &pty.slave] {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(|e| io::Error::other(format!("fcntl(F_SETFD, FD_CLOEXEC): {e}")))?;
    }
    Ok((pty.master, pty.slave))
}

/// Runs in the child between fork and exec: a new session with `tty` as its
/// controlling terminal (so the child has job control and gets SIGWINCH).
/// Only async-signal-safe calls.
pub fn become_session_leader_on(tty: RawFd) -> io::Result<()> {
    nix::unistd::setsid().map_err(io::Error::from)?;
    nix::ioctl_write_int_bad!(set_controlling_tty, nix::libc::TIOCSCTTY);
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal).
    unsafe { set_controlling_tty(tty, 0) }.map_err(io::Error::from)?;
    Ok(())
}

/// Runs in the child between fork and exec: a new session with no
/// controlling terminal at all (so the caller's terminal is out of reach:
/// no `/dev/tty`, no job-control signals from it, and TIOCSTI on a
/// terminal that is not one's own is refused by the kernel). The session's
/// id is the child's pid, so it also leads a process group of that id.
/// Async-signal-safe.
pub fn become_session_leader() -> io::Result<()> {
    nix::unistd::setsid().map(drop).map_err(io::Error::from)
}
