//! Processes: hardening shroud itself, fork, wait, and exec with an exact
//! environment.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::sys::resource::{setrlimit, Resource};

use super::call;

/// Makes this process undumpable: no core file (RLIMIT_CORE = 0) and no
/// ptrace or `/proc/<pid>/mem` access by other same-user processes
/// (PR_SET_DUMPABLE = 0), so decrypted values in memory never reach a disk.
pub fn disable_core_dumps() -> io::Result<()> {
    call(
        || "setrlimit(RLIMIT_CORE, 0, 0)".to_owned(),
        setrlimit(Resource::RLIMIT_CORE, 0, 0),
    )?;
    call(
        || "prctl(PR_SET_DUMPABLE, 0)".to_owned(),
        nix::sys::prctl::set_dumpable(false),
    )
}

/// Makes this process undumpable (again): no ptrace or `/proc/<pid>`
/// access by same-user processes that lack a capability over it.
pub fn set_undumpable() -> io::Result<()> {
    call(
        || "prctl(PR_SET_DUMPABLE, 0)".to_owned(),
        nix::sys::prctl::set_dumpable(false),
    )
}

/// Makes this process dumpable again (writing one's own uid and gid maps
/// needs it); RLIMIT_CORE stays 0, so there are still no core files.
pub fn set_dumpable() -> io::Result<()> {
    call(
        || "prctl(PR_SET_DUMPABLE, 1)".to_owned(),
        nix::sys::prctl::set_dumpable(true),
    )
}

/// A pidfd for `pid` (readable once the process has exited), so a run can
/// wait for its child in `poll` without a process-wide SIGCHLD handler.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("pidfd_open({pid}): {e}")));
    }
    // SAFETY: the kernel just returned this fd to us, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The real uid and gid of this process.
pub fn ids() -> (u32, u32) {
    (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    )
}

/// The supplementary groups of this process.
pub fn supplementary_groups() -> Vec<u32> {
    nix::unistd::getgroups()
        .map(|groups| groups.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default()
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

/// Finds `program` on `path` the way `execvp` would: the first executable
/// regular file, else the first match (so exec reports why it fails).
/// `None` for a program with a `/` (used as it is) or when nothing matches.
/// Directories that cannot be searched are skipped, so a missing program is
/// "not found", never "permission denied".
pub fn find_program(program: &OsStr, path: Option<&OsStr>) -> Option<PathBuf> {
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
pub fn exec_program(argv: &[OsString], env: &[&[u8]]) -> io::Error {
    let Some(program) = argv.first() else {
        return io::Error::new(io::ErrorKind::InvalidInput, "empty command");
    };
    let path_var = env
        .iter()
        .find_map(|entry| entry.strip_prefix(b"PATH="))
        .map(OsStr::from_bytes);
    let path = match find_program(program, path_var) {
        Some(found) => found,
        None if program.as_encoded_bytes().contains(&b'/') => PathBuf::from(program),
        None => return io::Error::new(io::ErrorKind::NotFound, "not found on PATH"),
    };
    let args: Result<Vec<CString>, _> = argv.iter().map(|a| CString::new(a.as_bytes())).collect();
    let file = CString::new(path.as_os_str().as_bytes());
    let env: Result<Vec<CString>, _> = env.iter().map(|entry| CString::new(*entry)).collect();
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

/// Sets the umask to 077 until the guard is dropped (files and sockets
/// created meanwhile are the user's alone).
pub fn restrictive_umask() -> UmaskGuard {
    let before = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    UmaskGuard(before)
}

/// Puts the umask back when dropped.
pub struct UmaskGuard(nix::sys::stat::Mode);

impl Drop for UmaskGuard {
    fn drop(&mut self) {
        nix::sys::stat::umask(self.0);
    }
}

/// In a forked child before exec: killed (SIGKILL) when the thread that
/// forked it ends, and gone at once if that parent, `parent`, is gone
/// already. Async-signal-safe (prctl, getppid, _exit).
pub fn die_with_parent_in_child(parent: u32) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| io::Error::other(format!("prctl(PR_SET_PDEATHSIG): {e}")))?;
    if nix::unistd::getppid().as_raw() as u32 != parent {
        // SAFETY: _exit ends the process at once, running nothing else.
        unsafe { nix::libc::_exit(125) };
    }
    Ok(())
}
