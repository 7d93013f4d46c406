//! File descriptors: pipes, non-blocking reads and writes, and what a child
//! inherits.
//!
//! A child gets exactly its stdio, and whatever a caller hands it on
//! purpose (the sandbox init's environment pipe): [`cloexec_all_but`] runs
//! between fork and exec and marks every other descriptor close-on-exec,
//! those shroud inherited from its own caller included (a CI runner's, a
//! shell's `exec 3<dir`, a server's sockets). A process that execs without
//! std's `Command` (the sandbox init) calls [`close_from`] instead.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::call;

/// A pipe with both ends non-blocking and close-on-exec.
pub fn nonblocking_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::OFlag;
    call(
        || "pipe2(O_NONBLOCK | O_CLOEXEC)".to_owned(),
        nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC),
    )
}

/// A pipe (close-on-exec, blocking).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    call(
        || "pipe2(O_CLOEXEC)".to_owned(),
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC),
    )
}

/// The most descriptors a child may be handed beside its stdio (as fds
/// 3, 4, ...: listening sockets). Everything the supervisor keeps open
/// across the fork sits above `3 + MAX_PASSED_FDS`, so moving them into
/// place never overwrites one.
pub const MAX_PASSED_FDS: usize = 32;

/// Where [`high_pipe`] and [`high_copy`] put their descriptors, at least.
const HIGH_FD: RawFd = 3 + MAX_PASSED_FDS as RawFd + 16;

/// A pipe (close-on-exec) whose two ends are numbered above every number a
/// child's fds are moved to.
pub fn high_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = pipe()?;
    Ok((raise(read)?, raise(write)?))
}

/// A close-on-exec copy of `fd` numbered above every number a child's fds
/// are moved to (see [`MAX_PASSED_FDS`]).
pub fn high_copy(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg};
    let high = call(
        || format!("fcntl({}, F_DUPFD_CLOEXEC, {HIGH_FD})", fd.as_raw_fd()),
        fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(HIGH_FD)),
    )?;
    // SAFETY: fcntl just returned this new fd, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

/// A high copy of `fd` (see [`high_copy`]); `fd` is closed.
fn raise(fd: OwnedFd) -> io::Result<OwnedFd> {
    high_copy(fd.as_fd())
}

/// In a forked child before exec: puts `fd` at number `target` without
/// close-on-exec, so it survives the exec there. Async-signal-safe (dup2
/// and fcntl only).
pub fn place_for_exec(fd: RawFd, target: RawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    if fd == target {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
    } else {
        // dup2 clears close-on-exec on the new number.
        // SAFETY: dup2 takes two descriptor numbers and returns one.
        if unsafe { nix::libc::dup2(fd, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// In a forked child before exec (or in a process about to exec): closes
/// every descriptor numbered `first` or above, so a child holds nothing its
/// parent had open (a database, a socket, a directory that would lead past
/// every mount). Async-signal-safe: one `close_range(2)`, or on a kernel
/// without it, `close` over the numbers up to the descriptor limit.
pub fn close_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range takes two numbers and flags; it only closes fds.
    let done = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            first as nix::libc::c_uint,
            nix::libc::c_uint::MAX,
            0 as nix::libc::c_uint,
        )
    };
    if done == 0 {
        return Ok(());
    }
    // SAFETY: sysconf has no memory effects.
    let max = unsafe { nix::libc::sysconf(nix::libc::_SC_OPEN_MAX) };
    let max = if max <= 0 {
        65_536
    } else {
        max.min(1 << 20) as RawFd
    };
    for fd in first..max {
        // SAFETY: closing a number that is not open is EBADF, nothing else.
        unsafe { nix::libc::close(fd) };
    }
    Ok(())
}

/// In a forked child before exec: marks every descriptor from 3 up
/// close-on-exec except `keep`, so the program starts with its stdio (and
/// `keep`) only. Marking rather than closing leaves std's own exec-error
/// pipe working until the exec. Async-signal-safe: `close_range(2)` with
/// CLOSE_RANGE_CLOEXEC (Linux 5.11), else `fcntl` over every number up to
/// the descriptor limit.
pub fn cloexec_all_but(keep: Option<RawFd>) -> io::Result<()> {
    cloexec_from(3, keep)
}

/// [`cloexec_all_but`] from `first` up (the numbers below it are the
/// descriptors the child is handed).
pub fn cloexec_from(first: RawFd, keep: Option<RawFd>) -> io::Result<()> {
    let ranges = match keep {
        Some(fd) if fd >= first => [(first, fd - 1), (fd + 1, RawFd::MAX)],
        _ => [(first, RawFd::MAX), (0, -1)],
    };
    for (first, last) in ranges {
        if first > last {
            continue;
        }
        // SAFETY: close_range takes two numbers and flags; with
        // CLOSE_RANGE_CLOEXEC it only sets descriptor flags.
        let done = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_close_range,
                first as nix::libc::c_uint,
                last as nix::libc::c_uint,
                nix::libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if done != 0 {
            // SAFETY: sysconf has no memory effects.
            let max = unsafe { nix::libc::sysconf(nix::libc::_SC_OPEN_MAX) };
            let max = if max <= 0 {
                65_536
            } else {
                max.min(1 << 20) as RawFd
            };
            for fd in first..last.min(max - 1).saturating_add(1) {
                // SAFETY: F_SETFD on a number that is not open is EBADF.
                unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC) };
            }
        }
    }
    Ok(())
}

/// True when `fd` is a pipe: input a sandboxed command may be given as it
/// is. Anything else is relayed through a pipe instead, so the command never
/// holds the caller's object: a terminal (TIOCSTI, its modes, the user's
/// next keystrokes), a socket, a directory (a way past every mount), and
/// even a regular file open only for reading (reopened through
/// `/proc/self/fd/0`, it would be writable wherever its permissions allow).
pub fn is_pipe(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::stat::{fstat, SFlag};
    fstat(fd.as_raw_fd())
        .is_ok_and(|stat| SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO)
}

/// The descriptors this process has open, by number (from /proc/self/fd).
pub fn open_descriptors() -> Vec<RawFd> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut fds: Vec<RawFd> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

/// Reads the inherited fd `fd` to its end and closes it. For secret
/// material: the bytes are returned zeroizing.
pub fn read_inherited_fd(fd: RawFd) -> io::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read;
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

/// Grows the kernel buffer of `fd` to `bytes` if it is a pipe (F_SETPIPE_SZ),
/// so a fast reader or writer makes fewer, larger transfers. Anything that is
/// not a pipe, or a size the system refuses, is left as it is.
pub fn enlarge_pipe(fd: BorrowedFd<'_>, bytes: usize) {
    use nix::fcntl::{fcntl, FcntlArg};
    use nix::sys::stat::{fstat, SFlag};
    let is_pipe = fstat(fd.as_raw_fd())
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO)
        .unwrap_or(false);
    if is_pipe {
        if let Err(e) = fcntl(fd.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(bytes as i32)) {
            tracing::debug!(error = %e, bytes, "fcntl(F_SETPIPE_SZ) refused");
        }
    }
}

/// Reads and discards whatever a non-blocking fd has ready.
pub fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 256];
    while matches!(nix::unistd::read(fd.as_raw_fd(), &mut buf), Ok(n) if n > 0) {}
}

/// Sets close-on-exec on `fd` (an inherited one: an fd that is not open is
/// an error).
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    call(
        || format!("fcntl({fd}, F_SETFD, FD_CLOEXEC)"),
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)),
    )
    .map(drop)
}

/// Sets O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = call(|| "fcntl(F_GETFL)".to_owned(), fcntl(fd, FcntlArg::F_GETFL))?;
    call(
        || "fcntl(F_SETFL, O_NONBLOCK)".to_owned(),
        fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        ),
    )
    .map(drop)
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
pub fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<ReadOutcome> {
    use nix::errno::Errno;
    match nix::unistd::read(fd.as_raw_fd(), buf) {
        Ok(0) => Ok(ReadOutcome::Closed),
        Ok(n) => Ok(ReadOutcome::Data(n)),
        Err(Errno::EAGAIN | Errno::EINTR) => Ok(ReadOutcome::WouldBlock),
        Err(Errno::EIO) => Ok(ReadOutcome::Closed),
        Err(e) => Err(io::Error::other(format!(
            "read(fd {}): {e}",
            fd.as_raw_fd()
        ))),
    }
}

/// Writes all of `bytes` to a possibly non-blocking fd, waiting while full.
pub fn write_all_fd(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    use nix::errno::Errno;
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EAGAIN) => {
                let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("write(fd {}): {e}", fd.as_raw_fd()),
                ))
            }
        }
    }
    Ok(())
}

/// Writes as much of `bytes` as a non-blocking fd takes now; returns how
/// many bytes it took (0 when full).
pub fn write_some(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    use nix::errno::Errno;
    match nix::unistd::write(fd, bytes) {
        Ok(n) => Ok(n),
        Err(Errno::EAGAIN | Errno::EINTR) => Ok(0),
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("write(fd {}): {e}", fd.as_raw_fd()),
        )),
    }
}

/// An exclusive `flock` on a file, held until dropped (a process that dies
/// releases it).
pub struct FileLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Opens (creates 0600) the file a lock is taken on.
fn open_lock_file(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))
}

/// Takes an exclusive lock on `path` (created 0600 if missing), waiting
/// while another process holds it.
pub fn lock_exclusive(path: &std::path::Path) -> io::Result<FileLock> {
    flock_exclusive(open_lock_file(path)?, path)
}

/// `flock(file, LOCK_EX)`, waiting while another process holds it.
fn flock_exclusive(file: std::fs::File, path: &std::path::Path) -> io::Result<FileLock> {
    let lock =
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("flock({}, LOCK_EX): {e}", path.display()),
            )
        })?;
    Ok(FileLock { _lock: lock })
}

/// An exclusive lock on the file at `path` if it exists (never created:
/// `None` when there is no such file), waiting while another holds it.
pub fn lock_existing(path: &std::path::Path) -> io::Result<Option<FileLock>> {
    let file = match std::fs::OpenOptions::new().read(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("open {}: {e}", path.display()),
            ))
        }
    };
    flock_exclusive(file, path).map(Some)
}

/// An exclusive `flock` on a directory itself if no other process holds
/// one (`None` when one does): a lock that deleting or replacing a file
/// cannot take away.
pub fn try_lock_directory(path: &std::path::Path) -> io::Result<Option<FileLock>> {
    let dir = std::fs::File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
    match nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(FileLock { _lock: lock })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("flock({}, LOCK_EX|LOCK_NB): {e}", path.display()),
        )),
    }
}

/// Opens any file as an O_PATH handle (survives the path being covered).
pub fn open_path(path: &std::path::Path) -> io::Result<OwnedFd> {
    use nix::fcntl::{open, OFlag};
    let fd = call(
        || format!("open({}, O_PATH)", path.display()),
        open(
            path,
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ),
    )?;
    // SAFETY: `open` returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a directory as an O_PATH handle (survives the path being covered).
pub fn open_dir_handle(path: &std::path::Path) -> io::Result<OwnedFd> {
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
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the directory `name` beneath `dir` without following a symlink
/// there (ELOOP/ENOTDIR if it is one), creating it (mode 0755) if missing:
/// for a directory someone else (a sandbox) can write to, whose entries
/// may be swapped for links at any moment.
pub fn open_or_make_dir_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{mkdirat, Mode};
    match mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => {
            return Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("mkdirat({name}): {e}"),
            ))
        }
    }
    let fd = call(
        || format!("openat({name}, O_DIRECTORY | O_NOFOLLOW)"),
        openat(
            Some(dir.as_raw_fd()),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ),
    )?;
    // SAFETY: `openat` returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a directory to work beneath it (`*at` calls), not following a
/// symlink at its last component.
pub fn open_dir_nofollow(path: &std::path::Path) -> io::Result<OwnedFd> {
    use nix::fcntl::{open, OFlag};
    let fd = call(
        || format!("open({}, O_DIRECTORY | O_NOFOLLOW)", path.display()),
        open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ),
    )?;
    // SAFETY: `open` returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// fchown of an open file or directory (never a path that could be a link).
pub fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    call(
        || format!("fchown({}, {uid}, {gid})", fd.as_raw_fd()),
        nix::unistd::fchown(
            fd.as_raw_fd(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        ),
    )
}

/// Changes the owner of the entry `name` of `dir` itself (a link is not
/// followed).
pub fn chown_at(dir: BorrowedFd<'_>, name: &str, uid: u32, gid: u32) -> io::Result<()> {
    call(
        || format!("fchownat({name}, {uid}, {gid}, AT_SYMLINK_NOFOLLOW)"),
        nix::unistd::fchownat(
            Some(dir.as_raw_fd()),
            name,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ),
    )
}

/// Removes the entry `name` of `dir` (never what a link points to).
pub fn unlink_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    call(
        || format!("unlinkat({name})"),
        nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        ),
    )
}

/// A path that names the directory `dir` is open on, whatever happens to
/// its path meanwhile (`/proc/self/fd/N`): for calls that take only a path
/// (`bind` of a Unix socket).
pub fn path_of(dir: BorrowedFd<'_>) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
}

/// Sends `fds` with one byte `tag` over the connected unix socket `socket`
/// (SCM_RIGHTS): the peer receives its own copies.
pub fn send_fds(socket: BorrowedFd<'_>, tag: u8, fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let data = [tag];
    let iov = [io::IoSlice::new(&data)];
    let rights = [ControlMessage::ScmRights(fds)];
    crate::sys::call(
        || format!("sendmsg(SCM_RIGHTS, {} fds)", fds.len()),
        sendmsg::<()>(
            socket.as_raw_fd(),
            &iov,
            &rights,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ),
    )
    .map(|_| ())
}

/// Receives one byte and up to `most` descriptors sent by [`send_fds`]
/// (close-on-exec here). `None` when the peer closed without sending.
pub fn receive_fds(socket: BorrowedFd<'_>, most: usize) -> io::Result<Option<(u8, Vec<OwnedFd>)>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut data = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let message = loop {
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break crate::sys::call(|| "recvmsg(SCM_RIGHTS)".to_owned(), other)?,
        }
    };
    let mut received = Vec::new();
    for cmsg in message.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just installed these descriptors in this
            // process for us; nothing else owns them.
            received.extend(
                fds.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let bytes = message.bytes;
    if bytes == 0 {
        return Ok(None);
    }
    if received.len() > most {
        return Err(io::Error::other(format!(
            "sent {} descriptors, {most} at most were expected",
            received.len()
        )));
    }
    Ok(Some((data[0], received)))
}
