//! The one place shroud makes process-level syscalls (through nix).
//!
//! Every function here names the call it makes in its error, so a failure on
//! an unusual host says what the kernel refused. Nothing here decides policy:
//! callers say what to apply.

use std::io::{self, BufRead};
use std::os::fd::AsFd;

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::termios::{self, LocalFlags, SetArg};
use zeroize::Zeroizing;

/// Makes this process undumpable: no core file (RLIMIT_CORE = 0) and no
/// ptrace or /proc/<pid>/mem access by other same-user processes
/// (PR_SET_DUMPABLE = 0), so decrypted values in memory never reach a disk.
pub fn disable_core_dumps() -> io::Result<()> {
    setrlimit(Resource::RLIMIT_CORE, 0, 0)
        .map_err(|e| io::Error::other(format!("setrlimit(RLIMIT_CORE, 0, 0): {e}")))?;
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| io::Error::other(format!("prctl(PR_SET_DUMPABLE, 0): {e}")))
}

/// True when standard input is a terminal.
pub fn stdin_is_terminal() -> bool {
    use std::io::IsTerminal;
    io::stdin().is_terminal()
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

/// Grows the kernel buffer of `fd` to `bytes` if it is a pipe (F_SETPIPE_SZ),
/// so a fast reader or writer makes fewer, larger transfers. Anything that is
/// not a pipe, or a size the system refuses, is left as it is.
pub fn enlarge_pipe(fd: std::os::fd::BorrowedFd<'_>, bytes: usize) {
    use nix::fcntl::{fcntl, FcntlArg};
    use nix::sys::stat::{fstat, SFlag};
    let is_pipe = fstat(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO)
        .unwrap_or(false);
    if is_pipe {
        if let Err(e) = fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            FcntlArg::F_SETPIPE_SZ(bytes as i32),
        ) {
            tracing::debug!(error = %e, bytes, "fcntl(F_SETPIPE_SZ) refused");
        }
    }
}

/// A pipe with both ends non-blocking and close-on-exec.
pub fn nonblocking_pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use nix::fcntl::OFlag;
    nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
        .map_err(|e| io::Error::other(format!("pipe2(O_NONBLOCK | O_CLOEXEC): {e}")))
}

/// Reads and discards whatever a non-blocking fd has ready.
pub fn drain(fd: std::os::fd::BorrowedFd<'_>) {
    let mut buf = [0u8; 256];
    while matches!(nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf), Ok(n) if n > 0)
    {
    }
}

/// Sends `signal` to every process in group `pgid`; a group that is already
/// gone is not an error.
pub fn signal_group(pgid: u32, signal: nix::sys::signal::Signal) -> io::Result<()> {
    match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::other(format!("killpg({pgid}, {signal}): {e}"))),
    }
}

/// True when `fd` is a terminal.
pub fn is_terminal(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    nix::unistd::isatty(std::os::fd::AsRawFd::as_raw_fd(&fd)).unwrap_or(false)
}

/// The window size of the terminal on `fd`, if it is one.
pub fn window_size(fd: std::os::fd::BorrowedFd<'_>) -> Option<nix::pty::Winsize> {
    nix::ioctl_read_bad!(get_winsize, nix::libc::TIOCGWINSZ, nix::pty::Winsize);
    let mut size = nix::pty::Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointer we pass.
    let ok = unsafe { get_winsize(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut size) }.is_ok();
    (ok && size.ws_row > 0).then_some(size)
}

/// Sets the window size of the terminal on `fd` (the child gets SIGWINCH).
pub fn set_window_size(
    fd: std::os::fd::BorrowedFd<'_>,
    size: &nix::pty::Winsize,
) -> io::Result<()> {
    nix::ioctl_write_ptr_bad!(put_winsize, nix::libc::TIOCSWINSZ, nix::pty::Winsize);
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer we pass.
    unsafe { put_winsize(std::os::fd::AsRawFd::as_raw_fd(&fd), size) }
        .map(drop)
        .map_err(|e| io::Error::other(format!("ioctl(TIOCSWINSZ): {e}")))
}

/// A pseudo-terminal pair, sized like `size` when given.
pub fn open_pty(
    size: Option<&nix::pty::Winsize>,
) -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    let pty =
        nix::pty::openpty(size, None).map_err(|e| io::Error::other(format!("openpty: {e}")))?;
    for fd in [&pty.master, &pty.slave] {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        fcntl(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| io::Error::other(format!("fcntl(F_SETFD, FD_CLOEXEC): {e}")))?;
    }
    Ok((pty.master, pty.slave))
}

/// Runs in the child between fork and exec: a new session with `tty` as its
/// controlling terminal (so the child has job control and gets SIGWINCH).
/// Only async-signal-safe calls.
pub fn become_session_leader_on(tty: std::os::fd::RawFd) -> io::Result<()> {
    nix::unistd::setsid().map_err(io::Error::from)?;
    nix::ioctl_write_int_bad!(set_controlling_tty, nix::libc::TIOCSCTTY);
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal).
    unsafe { set_controlling_tty(tty, 0) }.map_err(io::Error::from)?;
    Ok(())
}

/// Puts the terminal on `fd` in raw mode; the returned guard restores it.
pub fn raw_mode(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<RawModeGuard> {
    let original =
        termios::tcgetattr(fd).map_err(|e| io::Error::other(format!("tcgetattr: {e}")))?;
    let mut raw = original.clone();
    termios::cfmakeraw(&mut raw);
    termios::tcsetattr(fd, SetArg::TCSANOW, &raw)
        .map_err(|e| io::Error::other(format!("tcsetattr(raw): {e}")))?;
    Ok(RawModeGuard {
        fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
        original,
    })
}

/// Restores a terminal's settings when dropped.
pub struct RawModeGuard {
    fd: std::os::fd::RawFd,
    original: termios::Termios,
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        // SAFETY: the fd is the process's stdin, open for the process's life.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &self.original);
    }
}

/// Sets O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: std::os::fd::RawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL)
        .map_err(|e| io::Error::other(format!("fcntl(F_GETFL): {e}")))?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map(drop)
    .map_err(|e| io::Error::other(format!("fcntl(F_SETFL, O_NONBLOCK): {e}")))
}

/// Outcome of a read on a non-blocking fd.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Data(usize),
    /// End of file (or EIO from a pty master whose slave side is closed).
    Closed,
    /// Nothing ready (EAGAIN, EINTR).
    WouldBlock,
}

/// Reads into `buf`.
pub fn read_some(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<ReadOutcome> {
    use nix::errno::Errno;
    match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&fd), buf) {
        Ok(0) => Ok(ReadOutcome::Closed),
        Ok(n) => Ok(ReadOutcome::Data(n)),
        Err(Errno::EAGAIN | Errno::EINTR) => Ok(ReadOutcome::WouldBlock),
        Err(Errno::EIO) => Ok(ReadOutcome::Closed),
        Err(e) => Err(io::Error::other(format!(
            "read(fd {}): {e}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))),
    }
}

/// Writes all of `bytes` to a possibly non-blocking fd, waiting while full.
pub fn write_all_fd(fd: std::os::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    use nix::errno::Errno;
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EAGAIN) => {
                let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(io::Error::other(format!("write: {e}"))),
        }
    }
    Ok(())
}

/// Waits until one of `fds` is readable (or hung up), or `timeout` passes
/// (`None`: no limit). Returns one flag per fd.
pub fn wait_readable(
    fds: &[std::os::fd::BorrowedFd<'_>],
    timeout: Option<std::time::Duration>,
) -> io::Result<Vec<bool>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(t) => PollTimeout::try_from(t.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX),
    };
    match nix::poll::poll(&mut polled, timeout) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(io::Error::other(format!("poll: {e}"))),
    }
    let ready = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
    Ok(polled
        .iter()
        .map(|p| p.revents().is_some_and(|r| r.intersects(ready)))
        .collect())
}
