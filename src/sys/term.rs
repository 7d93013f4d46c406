//! Terminals: whether a descriptor is one, its size, its modes, and which
//! process group is its foreground job.

use std::io::{self, BufRead};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::sys::termios::{self, LocalFlags, SetArg};
use zeroize::Zeroizing;

use super::signal::{self, Signal};

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

impl WindowSize {
    /// The size used when there is no terminal to copy: 24 × 80.
    pub const DEFAULT: WindowSize = WindowSize { rows: 24, cols: 80 };

    pub(crate) fn to_winsize(self) -> nix::pty::Winsize {
        nix::pty::Winsize {
            ws_row: self.rows,
            ws_col: self.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }
}

/// True when standard input is a terminal.
pub fn stdin_is_terminal() -> bool {
    use std::io::IsTerminal;
    io::stdin().is_terminal()
}

/// True when `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false)
}

/// Reads one line from the terminal on stdin with echo turned off, restoring
/// the terminal afterwards (also when reading fails). The newline is dropped.
pub fn read_line_without_echo() -> io::Result<Zeroizing<Vec<u8>>> {
    let stdin = io::stdin();
    let fd = stdin.as_fd();
    let original =
        termios::tcgetattr(fd).map_err(|e| io::Error::other(format!("tcgetattr(stdin): {e}")))?;
    let mut silent = original.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    silent.local_flags.insert(LocalFlags::ECHONL);
    termios::tcsetattr(fd, SetArg::TCSAFLUSH, &silent)
        .map_err(|e| io::Error::other(format!("tcsetattr(stdin, no echo): {e}")))?;
    let mut line = Zeroizing::new(Vec::new());
    let read = stdin.lock().read_until(b'\n', &mut line);
    let restored = termios::tcsetattr(fd, SetArg::TCSAFLUSH, &original)
        .map_err(|e| io::Error::other(format!("tcsetattr(stdin, restore): {e}")));
    read?;
    restored?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(line)
}

/// The window size of the terminal on `fd`, if it is one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<WindowSize> {
    nix::ioctl_read_bad!(get_winsize, nix::libc::TIOCGWINSZ, nix::pty::Winsize);
    let mut size = WindowSize { rows: 0, cols: 0 }.to_winsize();
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointer we pass.
    let ok = unsafe { get_winsize(fd.as_raw_fd(), &mut size) }.is_ok();
    (ok && size.ws_row > 0).then_some(WindowSize {
        rows: size.ws_row,
        cols: size.ws_col,
    })
}

/// Sets the window size of the terminal on `fd` (the child gets SIGWINCH).
pub fn set_window_size(fd: BorrowedFd<'_>, size: WindowSize) -> io::Result<()> {
    nix::ioctl_write_ptr_bad!(put_winsize, nix::libc::TIOCSWINSZ, nix::pty::Winsize);
    let size = size.to_winsize();
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer we pass.
    unsafe { put_winsize(fd.as_raw_fd(), &size) }
        .map(drop)
        .map_err(|e| io::Error::other(format!("ioctl(TIOCSWINSZ): {e}")))
}

/// Puts the terminal on `fd` in raw mode; the returned guard restores it.
pub fn raw_mode(fd: BorrowedFd<'_>) -> io::Result<RawModeGuard> {
    let original =
        termios::tcgetattr(fd).map_err(|e| io::Error::other(format!("tcgetattr: {e}")))?;
    let mut raw = original.clone();
    termios::cfmakeraw(&mut raw);
    termios::tcsetattr(fd, SetArg::TCSANOW, &raw)
        .map_err(|e| io::Error::other(format!("tcsetattr(raw): {e}")))?;
    Ok(RawModeGuard {
        fd: fd.as_raw_fd(),
        original,
    })
}

/// Restores a terminal's settings when dropped.
pub struct RawModeGuard {
    fd: RawFd,
    original: termios::Termios,
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        // SAFETY: the fd is the process's stdin, open for the process's life.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &self.original);
    }
}

/// Hands the terminal on `fd` to process group `pgid` (as a shell does for a
/// foreground job) when this process's group holds it now. The returned guard
/// takes it back. `None` when `fd` is not our controlling terminal's
/// foreground, so nothing needs restoring.
pub fn give_terminal_to(fd: BorrowedFd<'_>, pgid: u32) -> Option<TerminalHandback> {
    use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp, Pid};
    let ours = getpgrp();
    if tcgetpgrp(fd).ok()? != ours {
        return None;
    }
    tcsetpgrp(fd, Pid::from_raw(pgid as i32)).ok()?;
    // The child may have read the terminal before it was handed over and
    // been stopped by SIGTTIN: continue it, as a shell does for a job.
    let _ = signal::signal_group(pgid, Signal::CONTINUE);
    Some(TerminalHandback {
        fd: fd.as_raw_fd(),
        pgid: ours,
    })
}

/// Gives the terminal back to shroud's process group when dropped.
pub struct TerminalHandback {
    fd: RawFd,
    pgid: nix::unistd::Pid,
}

impl Drop for TerminalHandback {
    fn drop(&mut self) {
        // A background group changing the foreground gets SIGTTOU: ignore it
        // for the call.
        let _ = signal::ignore_signal(Signal::TERMINAL_OUTPUT, true);
        // SAFETY: the fd is the process's stdin, open for the process's life.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = nix::unistd::tcsetpgrp(fd, self.pgid);
        let _ = signal::ignore_signal(Signal::TERMINAL_OUTPUT, false);
    }
}
