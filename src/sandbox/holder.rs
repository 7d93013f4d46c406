//! The process that holds a sandbox's network namespace between its
//! commands, so that a server one command runs (a background command, or
//! an exec still running) is reachable on the loopback by the sandbox's
//! other commands while it lives. (A process a command leaves behind ends
//! with it, in its pid namespace: a server outlives its request only as a
//! background command.)
//!
//! With the network off, each command would otherwise get a network
//! namespace of its own. Instead, the first command of a sandbox starts its
//! holder: `shroud __netns-holder DIR`, a fresh image (none of the
//! command's environment in its memory) in a session of its own, with only
//! a listening socket. It unshares a network namespace (run as a user, a
//! user namespace first, root inside mapped to that user, which then owns
//! the network one), brings its loopback up and answers each connection on
//! `<sandbox>/netns.sock` with descriptors of those namespaces
//! (SCM_RIGHTS), to peers of its own uid only. Each command's outer
//! process receives them and `setns`es into them before it unshares the
//! rest. Root or not, it is the same mechanism; nothing is mounted on the
//! host. The socket and the lock sit beside the sandbox's directory
//! (`sandboxes/<id>.netns.sock`, `.netns.lock`), not in it: a bound socket
//! would keep the sandbox's own disk, mounted there, busy.
//!
//! Everything runs under the lock: two commands starting at once make one
//! holder, and the removal of the sandbox, which holds the lock while it
//! takes the sandbox apart, tells the holder to go, so no command joins the
//! namespace of a sandbox that is gone. A holder whose socket or sandbox
//! directory disappears without a removal (its home deleted) exits by
//! itself within seconds. One that is killed is replaced by the next
//! command (servers started before then are out of that command's reach).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ns::{self, Namespaces, SharedNamespace};
use crate::sys::{fd, proc};

/// The descriptor number the holder finds its listening socket at.
const LISTENER_FD: RawFd = 3;
/// The holder's answer: the namespaces follow.
const TAG_JOIN: u8 = b'J';
/// The holder's answer: it could not make them; the reason follows.
const TAG_FAILED: u8 = b'E';
/// A client's request to the holder to end.
const TAG_QUIT: u8 = b'Q';

/// The sandbox's namespaces, as descriptors: the user namespace first
/// when there is one, the network namespace last.
pub struct Held(Vec<OwnedFd>);

/// Makes the namespaces a sandbox's commands share: a network namespace
/// with its loopback up, and with `user`, the user namespace that owns it
/// (root inside mapped to this process's uid and gid). This process is in
/// them afterwards.
pub fn make_namespaces(user: bool) -> io::Result<Held> {
    let (uid, gid) = proc::ids();
    ns::unshare_namespaces(Namespaces {
        user,
        net: true,
        ..Namespaces::default()
    })?;
    let mut held = Vec::new();
    if user {
        ns::map_root_to(uid, gid)?;
        proc::set_undumpable()?;
        held.push(ns::open_own_namespace(SharedNamespace::User)?);
    }
    ns::bring_up_loopback()?;
    held.push(ns::open_own_namespace(SharedNamespace::Network)?);
    Ok(Held(held))
}

/// Enters the namespaces `held` (the user namespace first).
pub fn enter(held: &Held) -> io::Result<()> {
    let kinds = match held.0.len() {
        1 => &[SharedNamespace::Network][..],
        2 => &[SharedNamespace::User, SharedNamespace::Network][..],
        n => return Err(io::Error::other(format!("{n} namespaces held"))),
    };
    for (fd, kind) in held.0.iter().zip(kinds) {
        ns::join_namespace(fd.as_fd(), *kind)?;
    }
    Ok(())
}

/// Sends `held` over `socket`.
pub fn send(socket: &UnixStream, held: &Held) -> io::Result<()> {
    let fds: Vec<RawFd> = held.0.iter().map(AsRawFd::as_raw_fd).collect();
    fd::send_fds(socket.as_fd(), TAG_JOIN, &fds)
}

/// Receives what the holder at the other end of `socket` sends.
pub fn receive(socket: &UnixStream) -> io::Result<Held> {
    match fd::receive_fds(socket.as_fd(), 2)? {
        Some((TAG_JOIN, fds)) if !fds.is_empty() => Ok(Held(fds)),
        Some((TAG_FAILED, _)) => {
            let mut reason = String::new();
            let _ = socket.take(4096).read_to_string(&mut reason);
            Err(io::Error::other(format!(
                "the sandbox's network namespace could not be made: {reason}"
            )))
        }
        Some(_) => Err(io::Error::other(
            "the sandbox's network namespace holder sent something unexpected",
        )),
        None => Err(io::Error::other(
            "the sandbox's network namespace holder ended without an answer",
        )),
    }
}

/// `<sandboxes>/<id><suffix>`: a file beside the sandbox's directory.
fn beside(sandbox_dir: &Path, suffix: &str) -> io::Result<(PathBuf, String)> {
    match (sandbox_dir.parent(), sandbox_dir.file_name()) {
        (Some(parent), Some(name)) => Ok((
            parent.to_owned(),
            format!("{}{suffix}", name.to_string_lossy()),
        )),
        _ => Err(io::Error::other(format!(
            "{} is not a sandbox's directory",
            sandbox_dir.display()
        ))),
    }
}

/// Takes the lock that a sandbox's commands start under and its removal
/// holds (see the module docs).
pub fn lock(sandbox_dir: &Path) -> io::Result<fd::FileLock> {
    let (parent, name) = beside(sandbox_dir, ".netns.lock")?;
    fd::lock_exclusive(&parent.join(name))
}

/// Removes the lock file of a removed sandbox (its remover or a command
/// that found it gone holds the lock: anyone waiting on the same file
/// finds the sandbox gone too).
fn remove_lock_file(sandbox_dir: &Path) {
    if let Ok((parent, name)) = beside(sandbox_dir, ".netns.lock") {
        let _ = std::fs::remove_file(parent.join(name));
    }
}

/// A way to name `<sandboxes>/<id>.netns.sock` that fits a socket address
/// (108 bytes at most) however deep the home is: through a descriptor of
/// its directory, held as long as the path is used.
struct SocketPath {
    _dir: OwnedFd,
    path: PathBuf,
}

impl SocketPath {
    fn of(sandbox_dir: &Path) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let (parent, name) = beside(sandbox_dir, ".netns.sock")?;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_PATH | nix::libc::O_DIRECTORY)
            .open(&parent)
            .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", parent.display())))?;
        let dir = OwnedFd::from(dir);
        let path = PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()));
        Ok(Self { _dir: dir, path })
    }

    /// The holder listening there, or `None` when there is none (no
    /// socket, one whose holder is gone, or anything but a socket of this
    /// uid at the path: a link is never followed to another sandbox's).
    fn connect(&self) -> io::Result<Option<UnixStream>> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        match std::fs::symlink_metadata(&self.path) {
            Ok(found)
                if found.file_type().is_socket()
                    && found.uid() == nix::unistd::geteuid().as_raw() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        match UnixStream::connect(&self.path) {
            Ok(stream) => {
                stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                stream.set_write_timeout(Some(Duration::from_secs(10)))?;
                Ok(Some(stream))
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::ConnectionRefused =>
            {
                Ok(None)
            }
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("connect to the sandbox's network namespace holder: {e}"),
            )),
        }
    }
}

/// In a command's outer process (single-threaded, before it unshares the
/// rest): enters the sandbox's shared namespaces, starting their holder if
/// it is not running. `user`: run as a user (the holder's user namespace
/// is joined too, and owns the network one).
pub fn join(sandbox_dir: &Path, user: bool) -> io::Result<()> {
    let _locked = lock(sandbox_dir)?;
    // Removed while this command was starting (the removal holds the lock
    // while it takes the sandbox apart): nothing to join, nothing to make.
    if !sandbox_dir.join("work").is_dir() {
        remove_lock_file(sandbox_dir);
        return Err(io::Error::other("the sandbox was removed"));
    }
    let socket = SocketPath::of(sandbox_dir)?;
    let answer = match socket.connect()? {
        Some(stream) => receive(&stream),
        None => Err(io::Error::other("no holder")),
    };
    // None running, or one that does not answer (killed as it was asked,
    // stopped): a fresh one, once.
    let held = match answer {
        Ok(held) => held,
        Err(_) => {
            start(&socket, sandbox_dir, user)?;
            let stream = socket.connect()?.ok_or_else(|| {
                io::Error::other("the sandbox's network namespace holder did not start")
            })?;
            receive(&stream)?
        }
    };
    if held.0.len() != 1 + usize::from(user) {
        return Err(io::Error::other(
            "the sandbox's network namespace holder was started by another user",
        ));
    }
    enter(&held)
}

/// Starts the holder listening at `socket` (any stale socket replaced);
/// returns once it is listening (it may still be making the namespaces:
/// a connection waits for them).
fn start(socket: &SocketPath, sandbox_dir: &Path, user: bool) -> io::Result<()> {
    match std::fs::remove_file(&socket.path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot replace {}.netns.sock: {e}", sandbox_dir.display()),
            ))
        }
        _ => {}
    }
    let listener = UnixListener::bind(&socket.path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("listen at {}.netns.sock: {e}", sandbox_dir.display()),
        )
    })?;
    // Its owner only (the holder checks each peer's uid as well).
    std::fs::set_permissions(
        &socket.path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    match proc::fork_process()? {
        None => {
            // In a session of its own (no terminal's signals, not in the
            // command's process group), reparented once this child exits.
            let _ = nix::unistd::setsid();
            if let Ok(None) = proc::fork_process() {
                // Only on failure; the command then finds no holder.
                let _ = exec_holder(&listener, sandbox_dir, user);
                std::process::exit(125);
            }
            std::process::exit(0)
        }
        Some(pid) => {
            drop(listener);
            proc::wait_for(Some(pid))?;
            Ok(())
        }
    }
}

/// In the holder's forked process: the listener at fd 3, /dev/null as
/// stdio, nothing else open, an empty environment, then
/// `/proc/self/exe __netns-holder [--user] DIR`. Returns only on failure.
fn exec_holder(listener: &UnixListener, sandbox_dir: &Path, user: bool) -> io::Error {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let null = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        Ok(null) => null,
        Err(e) => return e,
    };
    for target in 0..3 {
        if let Err(e) = fd::place_for_exec(null.as_raw_fd(), target) {
            return e;
        }
    }
    if let Err(e) = fd::place_for_exec(listener.as_raw_fd(), LISTENER_FD) {
        return e;
    }
    if let Err(e) = fd::close_from(LISTENER_FD + 1) {
        return e;
    }
    let mut argv = vec![c"shroud".to_owned(), c"__netns-holder".to_owned()];
    if user {
        argv.push(c"--user".to_owned());
    }
    match CString::new(sandbox_dir.as_os_str().as_bytes()) {
        Ok(dir) => argv.push(dir),
        Err(e) => return io::Error::other(e),
    }
    let env: [CString; 0] = [];
    match nix::unistd::execve(c"/proc/self/exe", &argv, &env) {
        Err(e) => io::Error::from(e),
        Ok(never) => match never {},
    }
}

/// Tells the holder of the sandbox at `sandbox_dir`, if one is running, to
/// end, and waits (a second at most) until it has. The caller holds
/// [`lock`].
pub fn stop(sandbox_dir: &Path) -> io::Result<()> {
    let socket = match SocketPath::of(sandbox_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if let Some(mut stream) = socket.connect()? {
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        // Its answer (the descriptors are closed at once), then the request
        // to go, then its end of the connection closing as it exits.
        let _ = fd::receive_fds(stream.as_fd(), 2);
        stream.write_all(&[TAG_QUIT])?;
        let mut rest = [0u8; 64];
        while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
    }
    match std::fs::remove_file(&socket.path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// After the removal of the sandbox at `sandbox_dir`, under [`lock`]:
/// removes the lock's file.
pub fn forget(sandbox_dir: &Path) {
    remove_lock_file(sandbox_dir);
}

/// The holder process (`__netns-holder`): makes the namespaces, then
/// answers connections on fd 3 until it is told to end or its socket or
/// its sandbox's directory is gone. Never returns.
pub fn run(sandbox_dir: &Path, user: bool) -> ! {
    let socket = beside(sandbox_dir, ".netns.sock").map(|(parent, name)| parent.join(name));
    // SAFETY: the process that exec'd this one put its listening socket at
    // this number and nothing else owns it.
    let listener = unsafe { UnixListener::from_raw_fd(LISTENER_FD) };
    // Started by hand, with anything or nothing at fd 3: nothing to serve.
    let listening = nix::sys::socket::getsockopt(&listener, nix::sys::socket::sockopt::AcceptConn)
        .unwrap_or(false);
    if !listening {
        let _ = writeln!(
            io::stderr(),
            "error: __netns-holder: fd {LISTENER_FD} is not a listening socket"
        );
        std::process::exit(2);
    }
    let _ = nix::sys::socket::setsockopt(
        &listener,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(2, 0),
    );
    // Its own socket file: one replaced or removed (a holder started in
    // its place) ends this one too.
    let identity = |path: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    let mine = socket.as_deref().ok().and_then(identity);
    let made = make_namespaces(user);
    // Nothing more to do with privileges: the namespaces are made and
    // opened, and answering needs none.
    let _ = ns::drop_capabilities();
    let me = nix::unistd::getuid().as_raw();
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                let replaced = mine.is_none()
                    || socket.as_deref().ok().and_then(identity) != mine
                    || std::fs::symlink_metadata(sandbox_dir).is_err();
                if replaced {
                    std::process::exit(0);
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        // Only processes of its own uid (the shroud that made it; run as a
        // user, seen from inside its user namespace as root).
        let trusted =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .is_ok_and(|peer| peer.uid() == me);
        if !trusted {
            continue;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        match &made {
            Ok(held) => {
                let _ = send(&stream, held);
            }
            Err(e) => {
                let _ = fd::send_fds(stream.as_fd(), TAG_FAILED, &[]);
                let _ = (&stream).write_all(e.to_string().as_bytes());
                std::process::exit(1);
            }
        }
        let mut request = [0u8; 1];
        if matches!((&stream).read(&mut request), Ok(1)) && request[0] == TAG_QUIT {
            std::process::exit(0);
        }
    }
}
