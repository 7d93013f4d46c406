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
