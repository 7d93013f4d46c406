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
/// ptrace or `/proc/<pid>/mem` access by other same-user processes
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

/// A pidfd for `pid` (readable once the process has exited), so a run can
/// wait for its child in `poll` without a process-wide SIGCHLD handler.
pub fn pidfd_open(pid: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("pidfd_open({pid}): {e}")));
    }
    // SAFETY: the kernel just returned this fd to us, and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// A pipe (close-on-exec) whose two ends are numbered 10 or above, so that
/// neither can be one of the low numbers a child's fds are moved to.
pub fn high_pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use nix::fcntl::{fcntl, FcntlArg};
    use std::os::fd::{AsRawFd, FromRawFd};
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| io::Error::other(format!("pipe2(O_CLOEXEC): {e}")))?;
    let raise = |fd: std::os::fd::OwnedFd| -> io::Result<std::os::fd::OwnedFd> {
        let high = fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(10))
            .map_err(|e| io::Error::other(format!("fcntl(F_DUPFD_CLOEXEC, 10): {e}")))?;
        // SAFETY: fcntl just returned this new fd, owned by nothing else.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(high) })
    };
    Ok((raise(read)?, raise(write)?))
}

/// In a forked child before exec: lets `fd` survive the exec (clears its
/// close-on-exec flag). Async-signal-safe (fcntl only).
pub fn keep_across_exec(fd: std::os::fd::RawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
        .map(drop)
        .map_err(io::Error::from)
}

/// Reads the inherited fd `fd` to its end and closes it. For secret
/// material: the bytes are returned zeroizing.
pub fn read_inherited_fd(fd: std::os::fd::RawFd) -> io::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
        return Err(io::Error::other(format!("fd {fd} is not open")));
    }
    // SAFETY: the fd is open (checked above) and was handed to this process
    // for it alone; the File closes it when dropped.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("read fd {fd}: {e}")))?;
    Ok(bytes)
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

// ---- isolation (run by `shroud __sandbox-init`, see `apply.rs`) ----

fn call<T>(what: impl FnOnce() -> String, result: nix::Result<T>) -> io::Result<T> {
    result.map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", what())))
}

/// Which namespaces to create.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Namespaces {
    pub user: bool,
    pub mount: bool,
    pub pid: bool,
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
}

/// unshare(2) with the requested namespaces.
pub fn unshare_namespaces(ns: Namespaces) -> io::Result<()> {
    use nix::sched::CloneFlags;
    let mut flags = CloneFlags::empty();
    for (on, flag) in [
        (ns.user, CloneFlags::CLONE_NEWUSER),
        (ns.mount, CloneFlags::CLONE_NEWNS),
        (ns.pid, CloneFlags::CLONE_NEWPID),
        (ns.net, CloneFlags::CLONE_NEWNET),
        (ns.ipc, CloneFlags::CLONE_NEWIPC),
        (ns.uts, CloneFlags::CLONE_NEWUTS),
    ] {
        if on {
            flags |= flag;
        }
    }
    call(|| format!("unshare({flags:?})"), nix::sched::unshare(flags))
}

/// Drops every privilege to `uid`/`gid` (needs root): no supplementary groups.
pub fn become_user(uid: u32, gid: u32) -> io::Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    call(|| "setgroups([])".to_owned(), setgroups(&[]))?;
    let (g, u) = (Gid::from_raw(gid), Uid::from_raw(uid));
    call(|| format!("setresgid({gid})"), setresgid(g, g, g))?;
    call(|| format!("setresuid({uid})"), setresuid(u, u, u))
}

/// The real uid and gid of this process.
pub fn ids() -> (u32, u32) {
    (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    )
}

/// Maps root inside a new user namespace to `uid`/`gid` outside.
pub fn map_root_to(uid: u32, gid: u32) -> io::Result<()> {
    // Writing the maps needs a dumpable process; shroud made itself
    // undumpable at start (RLIMIT_CORE stays 0, so still no core files).
    call(
        || "prctl(PR_SET_DUMPABLE, 1)".to_owned(),
        nix::sys::prctl::set_dumpable(true),
    )?;
    let write = |file: &str, text: String| {
        std::fs::write(file, &text)
            .map_err(|e| io::Error::new(e.kind(), format!("write {file} ({text:?}): {e}")))
    };
    write("/proc/self/setgroups", "deny".to_owned())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))
}

/// fork(2). Only called from the single-threaded `__sandbox-init` process.
pub fn fork_process() -> io::Result<Option<u32>> {
    // SAFETY: `__sandbox-init` runs no other thread, so the child may run
    // ordinary code after the fork.
    match call(|| "fork()".to_owned(), unsafe { nix::unistd::fork() })? {
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child.as_raw() as u32)),
        nix::unistd::ForkResult::Child => Ok(None),
    }
}

/// How a waited-for process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// Waits for `pid` (or any child with `None`), reaping; `None` when there are no children.
pub fn wait_for(pid: Option<u32>) -> io::Result<Option<(u32, Ended)>> {
    use nix::sys::wait::{waitpid, WaitStatus};
    let target = pid.map(|p| nix::unistd::Pid::from_raw(p as i32));
    loop {
        match waitpid(target, None) {
            Ok(WaitStatus::Exited(p, code)) => {
                return Ok(Some((p.as_raw() as u32, Ended::Exited(code))))
            }
            Ok(WaitStatus::Signaled(p, sig, _)) => {
                return Ok(Some((p.as_raw() as u32, Ended::Signaled(sig as i32))))
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::ECHILD) => return Ok(None),
            Err(e) => return Err(io::Error::other(format!("waitpid: {e}"))),
        }
    }
}

/// Sets a signal's disposition to ignore (`true`) or default (`false`).
pub fn ignore_signal(signal: nix::sys::signal::Signal, ignore: bool) -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let handler = if ignore {
        SigHandler::SigIgn
    } else {
        SigHandler::SigDfl
    };
    // SAFETY: installing SIG_IGN or SIG_DFL runs no code in signal context.
    call(|| format!("sigaction({signal}, {handler:?})"), unsafe {
        sigaction(
            signal,
            &SigAction::new(handler, SaFlags::empty(), SigSet::empty()),
        )
    })
    .map(drop)
}

/// Ends this process the way `signal` would, so its parent sees it.
pub fn die_by_signal(signal: i32) -> ! {
    if let Ok(sig) = nix::sys::signal::Signal::try_from(signal) {
        let _ = ignore_signal(sig, false);
        let _ = nix::sys::signal::raise(sig);
    }
    std::process::exit(128 + signal)
}

/// Makes every mount private to this mount namespace.
pub fn make_mounts_private() -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    call(
        || "mount(/, MS_REC | MS_PRIVATE)".to_owned(),
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ),
    )
}

/// Mounts a tmpfs at `target` with `options` (e.g. "mode=1777").
pub fn mount_tmpfs(target: &std::path::Path, options: &str) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    call(
        || format!("mount(tmpfs, {}, {options})", target.display()),
        mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options),
        ),
    )
}

/// Bind-mounts `source` at `target`.
pub fn bind_mount(source: &std::path::Path, target: &std::path::Path) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    call(
        || {
            format!(
                "mount({}, {}, MS_BIND | MS_REC)",
                source.display(),
                target.display()
            )
        },
        mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
    )
}

/// Remounts the mount at `target` read-only, keeping its locked flags.
pub fn remount_read_only(target: &std::path::Path, bind: bool) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    use nix::sys::statvfs::{statvfs, FsFlags};
    let current = call(|| format!("statvfs({})", target.display()), statvfs(target))?.flags();
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    if bind {
        flags |= MsFlags::MS_BIND;
    }
    for (have, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(have) {
            flags |= keep;
        }
    }
    call(
        || format!("mount({}, {flags:?})", target.display()),
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>),
    )
}

/// Mounts a fresh procfs at /proc (for a new pid namespace).
pub fn mount_proc() -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    call(
        || "mount(proc, /proc)".to_owned(),
        mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        ),
    )
}

/// Brings the loopback interface up in this process's network namespace
/// (a new one starts with `lo` down): programs that talk to themselves over
/// 127.0.0.1 work, and nothing outside is reachable (the namespace has no
/// other interface). Needs CAP_NET_ADMIN over the namespace.
pub fn bring_up_loopback() -> io::Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let what = |call: &str, e: io::Error| io::Error::new(e.kind(), format!("{call} lo: {e}"));
    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let fd = unsafe {
        nix::libc::socket(
            nix::libc::AF_INET,
            nix::libc::SOCK_DGRAM | nix::libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(what("socket(AF_INET) for", io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: nix::libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as nix::libc::c_char;
    }
    let raw = std::os::fd::AsRawFd::as_raw_fd(&socket);
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq passed,
    // which lives for both calls.
    unsafe {
        if nix::libc::ioctl(raw, nix::libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(what("ioctl(SIOCGIFFLAGS)", io::Error::last_os_error()));
        }
        request.ifr_ifru.ifru_flags |=
            (nix::libc::IFF_UP | nix::libc::IFF_RUNNING) as nix::libc::c_short;
        if nix::libc::ioctl(raw, nix::libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(what("ioctl(SIOCSIFFLAGS)", io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// sethostname(2).
pub fn set_hostname(name: &str) -> io::Result<()> {
    call(
        || format!("sethostname({name})"),
        nix::unistd::sethostname(name),
    )
}

/// Opens a directory as an O_PATH handle (survives the path being covered).
pub fn open_dir_handle(path: &std::path::Path) -> io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{open, OFlag};
    let fd = call(
        || format!("open({}, O_PATH | O_DIRECTORY)", path.display()),
        open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ),
    )?;
    // SAFETY: `open` returned a new fd that nothing else owns.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// A resource limit for the command (soft = hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rlimit {
    CpuSeconds,
    AddressSpaceBytes,
    OpenFiles,
    Processes,
    FileSizeBytes,
    CoreBytes,
}

/// setrlimit(2), soft and hard.
pub fn set_rlimit(which: Rlimit, value: u64) -> io::Result<()> {
    let resource = match which {
        Rlimit::CpuSeconds => Resource::RLIMIT_CPU,
        Rlimit::AddressSpaceBytes => Resource::RLIMIT_AS,
        Rlimit::OpenFiles => Resource::RLIMIT_NOFILE,
        Rlimit::Processes => Resource::RLIMIT_NPROC,
        Rlimit::FileSizeBytes => Resource::RLIMIT_FSIZE,
        Rlimit::CoreBytes => Resource::RLIMIT_CORE,
    };
    call(
        || format!("setrlimit({resource:?}, {value})"),
        setrlimit(resource, value, value),
    )
}

/// prctl(PR_SET_NO_NEW_PRIVS, 1).
pub fn set_no_new_privs() -> io::Result<()> {
    call(
        || "prctl(PR_SET_NO_NEW_PRIVS, 1)".to_owned(),
        nix::sys::prctl::set_no_new_privs(),
    )
}

/// Finds `program` on `path` the way `execvp` would: the first executable
/// regular file, else the first match (so exec reports why it fails).
/// `None` for a program with a `/` (used as it is) or when nothing matches.
/// Directories that cannot be searched are skipped, so a missing program is
/// "not found", never "permission denied".
pub fn find_program(
    program: &std::ffi::OsStr,
    path: Option<&std::ffi::OsStr>,
) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.as_encoded_bytes().contains(&b'/') || program.is_empty() {
        return None;
    }
    let mut first_match = None;
    for dir in std::env::split_paths(path?) {
        let dir = if dir.as_os_str().is_empty() {
            ".".into()
        } else {
            dir
        };
        let candidate = dir.join(program);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Some(candidate);
            }
            first_match.get_or_insert(candidate);
        }
    }
    first_match
}

/// execve(2) of `program` (looked up on the `PATH` of `env` when it has no
/// `/`) with `argv` and exactly the environment `env` (`NAME=VALUE`
/// entries); returns only the error (NotFound when nothing was found).
pub fn exec_program(argv: &[std::ffi::OsString], env: &[&[u8]]) -> io::Error {
    use std::os::unix::ffi::OsStrExt;
    let Some(program) = argv.first() else {
        return io::Error::new(io::ErrorKind::InvalidInput, "empty command");
    };
    let path_var = env
        .iter()
        .find_map(|entry| entry.strip_prefix(b"PATH="))
        .map(std::ffi::OsStr::from_bytes);
    let path = match find_program(program, path_var) {
        Some(found) => found,
        None if program.as_encoded_bytes().contains(&b'/') => std::path::PathBuf::from(program),
        None => return io::Error::new(io::ErrorKind::NotFound, "not found on PATH"),
    };
    let args: Result<Vec<std::ffi::CString>, _> = argv
        .iter()
        .map(|a| std::ffi::CString::new(a.as_bytes()))
        .collect();
    let file = std::ffi::CString::new(path.as_os_str().as_bytes());
    let env: Result<Vec<std::ffi::CString>, _> = env
        .iter()
        .map(|entry| std::ffi::CString::new(*entry))
        .collect();
    match (file, args, env) {
        (Ok(file), Ok(args), Ok(env)) => {
            let result = nix::unistd::execve(&file, &args, &env);
            // Only reached when execve failed: wipe the copies of values.
            for entry in env {
                zeroize::Zeroize::zeroize(&mut entry.into_bytes());
            }
            match result {
                Err(e) => io::Error::from(e),
                Ok(never) => match never {},
            }
        }
        _ => io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in an argument"),
    }
}

/// Hands the terminal on `fd` to process group `pgid` (as a shell does for a
/// foreground job) when this process's group holds it now. The returned guard
/// takes it back. `None` when `fd` is not our controlling terminal's
/// foreground, so nothing needs restoring.
pub fn give_terminal_to(fd: std::os::fd::BorrowedFd<'_>, pgid: u32) -> Option<TerminalHandback> {
    use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp, Pid};
    let ours = getpgrp();
    if tcgetpgrp(fd).ok()? != ours {
        return None;
    }
    tcsetpgrp(fd, Pid::from_raw(pgid as i32)).ok()?;
    // The child may have read the terminal before it was handed over and
    // been stopped by SIGTTIN: continue it, as a shell does for a job.
    let _ = signal_group(pgid, nix::sys::signal::Signal::SIGCONT);
    Some(TerminalHandback {
        fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
        pgid: ours,
    })
}

/// Gives the terminal back to shroud's process group when dropped.
pub struct TerminalHandback {
    fd: std::os::fd::RawFd,
    pgid: nix::unistd::Pid,
}

impl Drop for TerminalHandback {
    fn drop(&mut self) {
        // A background group changing the foreground gets SIGTTOU: ignore it
        // for the call.
        let _ = ignore_signal(nix::sys::signal::Signal::SIGTTOU, true);
        // SAFETY: the fd is the process's stdin, open for the process's life.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
        let _ = nix::unistd::tcsetpgrp(fd, self.pgid);
        let _ = ignore_signal(nix::sys::signal::Signal::SIGTTOU, false);
    }
}
