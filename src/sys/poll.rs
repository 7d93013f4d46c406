//! Waiting on several descriptors at once (`poll(2)`), the heart of the
//! supervisor's single-threaded event loop.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// What to wait for on one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Data to read, or the other end gone.
    Read,
    /// Room to write, or the other end gone.
    Write,
}

/// Waits until one of `fds` is readable (or hung up), or `timeout` passes
/// (`None`: no limit). Returns one flag per fd.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let interests: Vec<(BorrowedFd<'_>, Interest)> =
        fds.iter().map(|fd| (*fd, Interest::Read)).collect();
    wait(&interests, timeout)
}

/// Waits until one of `fds` is ready for what it is paired with, or
/// `timeout` passes (`None`: no limit). Returns one flag per fd.
pub fn wait(
    fds: &[(BorrowedFd<'_>, Interest)],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|(fd, interest)| {
            let flags = match interest {
                Interest::Read => PollFlags::POLLIN,
                Interest::Write => PollFlags::POLLOUT,
            };
            PollFd::new(*fd, flags)
        })
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
    let ready = PollFlags::POLLIN | PollFlags::POLLOUT | PollFlags::POLLHUP | PollFlags::POLLERR;
    Ok(polled
        .iter()
        .map(|p| p.revents().is_some_and(|r| r.intersects(ready)))
        .collect())
}

/// True when nobody holds the reading end of the pipe whose writing end is
/// `fd` any more (poll reports POLLERR on it): how a process learns, without
/// writing, that the process it reports to is gone.
pub fn reader_gone(fd: BorrowedFd<'_>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut polled = [PollFd::new(fd, PollFlags::POLLOUT)];
    nix::poll::poll(&mut polled, PollTimeout::ZERO).is_ok()
        && polled[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}
