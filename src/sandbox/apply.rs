//! Applying a sandbox policy: the `shroud __sandbox-init` process.
//!
//! `sandbox exec` runs the command through this init, as three processes:
//!
//! 1. **outer** (the supervisor's child, in its process group): unshares the
//!    namespaces (as root: mount, pid, net, ipc, uts; as a user: a user
//!    namespace with those, root inside mapped to the user), forks, waits.
//!    A sandbox's command joins the network namespace its other commands
//!    share instead (and, as a user, the user namespace that owns it),
//!    from the sandbox's holder (see [`super::holder`]);
//! 2. **init** (PID 1 of the new pid namespace): makes mounts private, hides
//!    the shroud home under an empty read-only tmpfs with only the working
//!    directory bound back (through a handle opened inside the new mount
//!    namespace: the kernel refuses binds from another one), mounts a private
//!    /tmp, makes the root file system read-only and mounts a fresh /proc;
//!    forks the command and reaps. When it exits, the kernel kills whatever is
//!    left in the namespace, so no background process outlives a command;
//! 3. **command**: as root, drops to the sandbox's own unprivileged uid (so
//!    RLIMIT_NPROC applies: the kernel never enforces it for uid 0) and enters
//!    a user namespace of its own (root inside, that uid outside); then
//!    rlimits, no_new_privs, the working directory, exec.
//!
//! The command stays in the supervisor's process group, so the supervisor's
//! signals (forwarded SIGINT/SIGTERM/SIGHUP, timeouts) reach it directly.
//! How it ended travels back through a pipe so that "killed by signal N" is
//! reported as such, not as exit code 128 + N.
//!
//! [`probe`] tries each feature on this host, so `sandbox create` can report
//! what a template asks for but the host cannot give.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::holder;
use super::ns::{self, Namespaces, Rlimit};
use super::template::{Isolation, Limits};
use crate::sys::fd;
use crate::sys::proc::{self, Ended};
use crate::sys::signal::{self, Signal};

/// The one variable `__sandbox-init` starts with: the number of the fd on
/// which it receives the command's environment (see [`env_entries`] for the
/// framing). The init has nothing else in its environment, so nothing a
/// caller puts in the command's (`LD_PRELOAD`, `LD_LIBRARY_PATH`...) acts on
/// the init, which runs as root before it drops to the sandbox's uid; and
/// values never sit in argv.
///
/// The command process reads the environment only once the sandbox around
/// it is set up, just before its exec. So a supervisor may start the init
/// before it has read the secrets, and send them once the audit record of
/// their injection is committed: until the whole environment has arrived,
/// nothing of the caller's runs (an init whose pipe closes early exits 125).
pub const ENV_FD_VAR: &str = "SHROUD_ENV_FD";

/// Bytes of the length that opens an environment sent through
/// [`ENV_FD_VAR`].
pub const ENV_LENGTH_BYTES: usize = 8;

/// Splits an environment received through [`ENV_FD_VAR`] into its entries:
/// the length of what follows (8 bytes, little-endian), then `NAME=VALUE`
/// entries, each ended by a NUL byte. `None` if it is not whole (its sender
/// died while writing, or before): the command must not start with part of
/// its environment.
pub fn env_entries(blob: &[u8]) -> Option<Vec<&[u8]>> {
    let (length, entries) = blob.split_at_checked(ENV_LENGTH_BYTES)?;
    let length = u64::from_le_bytes(length.try_into().expect("8 bytes"));
    if length != entries.len() as u64 {
        return None;
    }
    Some(
        entries
            .split(|&b| b == 0)
            .filter(|e| !e.is_empty())
            .collect(),
    )
}

/// What `__sandbox-init` applies (plain data, passed as JSON in its argv;
/// it holds no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPolicy {
    /// The isolation to apply (what the template asked for and the host gives).
    pub isolation: Isolation,
    pub network: bool,
    pub limits: Limits,
    /// The sandbox's working directory (the command's cwd).
    pub workdir: PathBuf,
    /// The sandbox's own home directory (`$HOME` inside), bound back like
    /// the working directory.
    #[serde(default)]
    pub home_dir: Option<PathBuf>,
    /// Directories covered by an empty read-only tmpfs: the shroud home,
    /// the host's homes, its /run (see [`hidden_dirs`]).
    pub hide: Vec<PathBuf>,
    /// A `/dev` of its own (see `ns::mount_private_dev`): the host's
    /// terminals and other devices out of sight.
    #[serde(default = "yes")]
    pub private_devpts: bool,
    /// Started as root: run as this (uid, gid) instead.
    pub run_as: Option<(u32, u32)>,
    /// The process that starts the sandbox: every process of it is killed
    /// when that one ends, even by SIGKILL (a supervisor's instances never
    /// outlive it). Set for each run, never stored.
    #[serde(default)]
    pub die_with: Option<u32>,
    /// Descriptors handed to the command as fds 3, 4, ... (listening
    /// sockets); `LISTEN_PID` is then set to the command's own pid.
    #[serde(default)]
    pub passed_fds: u32,
    /// A folder of the working directory (relative, checked by the
    /// supervisor) the command starts in instead. Set for each run.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// With the network off: the sandbox's directory, whose namespace
    /// holder (see `sandbox::holder`) gives the command the network
    /// namespace of the sandbox's other commands (a server in the
    /// background is reachable on the loopback by later commands). Set for
    /// each run.
    #[serde(default)]
    pub shared_network: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

/// Directories made private (an empty, writable tmpfs of the command's
/// own) with `private_tmp`: whatever any user of the host can write there
/// (files, Unix sockets) stays out of reach. `/dev/shm` is private too, in
/// the sandbox's own `/dev`.
pub const PRIVATE_DIRS: [&str; 2] = ["/tmp", "/var/tmp"];

/// Mount options of a private tmpfs (`/tmp`, `/var/tmp`, `/dev/shm`):
/// memory is the host's, so each is bounded, by the sandbox's `disk_mb`
/// (1 GiB without one) and 65,536 files.
fn private_tmp_options(limits: &Limits) -> String {
    let mb = limits.disk_mb.unwrap_or(1024).min(1024);
    format!("mode=1777,size={mb}m,nr_inodes=65536")
}

/// What a sandbox never sees of the host, covered by an empty read-only
/// tmpfs: the shroud home (`shroud_home`: the vault and the other
/// sandboxes), every home directory (`/root`, `/home`, and `caller_home`,
/// the `$HOME` of whoever runs shroud), and `/run` and `/var/run`, where
/// the host's daemons keep their Unix sockets (which a network namespace
/// does not cover: a socket is a file). A sandbox's own working and home
/// directories are bound back into the cover when they lie under it.
pub fn hidden_dirs(shroud_home: &Path, caller_home: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = vec![shroud_home.to_owned()];
    dirs.extend(["/root", "/home", "/run", "/var/run"].map(PathBuf::from));
    dirs.extend(caller_home.map(Path::to_owned));
    dirs
}

/// The directories of `wanted` that need a cover of their own, by their
/// real paths (a home reached through a symlink, or `/home` pointing at
/// `/var/home`, is covered where it really is): existing directories not
/// inside one already covered or made private. Fails closed: a path that is
/// not absolute, or that exists but cannot be resolved, is an error, never
/// skipped.
fn covers(wanted: &[PathBuf], private: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut real = Vec::new();
    for dir in wanted {
        if !dir.is_absolute() {
            return Err(std::io::Error::other(format!(
                "cannot hide {}: not an absolute path",
                dir.display()
            )));
        }
        match std::fs::canonicalize(dir) {
            Ok(path) if path.is_dir() => real.push(path),
            Ok(_) => {} // a file: nothing beneath it to hide
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot hide {}: {e}", dir.display()),
                ))
            }
        }
    }
    real.sort_by_key(|p| p.components().count());
    let mut chosen: Vec<PathBuf> = Vec::new();
    for dir in real {
        let inside = chosen
            .iter()
            .chain(private)
            .any(|above| dir.starts_with(above));
        if !inside {
            chosen.push(dir);
        }
    }
    Ok(chosen)
}

impl SandboxPolicy {
    /// The same policy without a feature this host cannot give (by the
    /// feature's name in a probe report). Without a mount namespace, the
    /// features that need one go too.
    pub fn without(&mut self, feature: &str) {
        let iso = &mut self.isolation;
        match feature {
            "user_namespace" => iso.user_namespace = false,
            "mount_namespace" | "private_tmp" | "read_only_system" | "hidden_home" => {
                iso.mount_namespace = false;
                iso.private_tmp = false;
                iso.read_only_system = false;
                self.private_devpts = false;
            }
            "private_dev" => self.private_devpts = false,
            "pid_namespace" => iso.pid_namespace = false,
            "net_namespace" => self.network = true,
            "ipc_namespace" => iso.ipc_namespace = false,
            "uts_namespace" => iso.uts_namespace = false,
            "no_new_privs" => iso.no_new_privs = false,
            _ => {}
        }
    }

    /// The namespaces the outer process creates. As root the user namespace
    /// is the command's own (created after it drops to its uid).
    fn namespaces(&self) -> Namespaces {
        let iso = self.isolation;
        Namespaces {
            user: iso.user_namespace && self.run_as.is_none(),
            mount: iso.mount_namespace,
            pid: iso.pid_namespace,
            net: !self.network,
            ipc: iso.ipc_namespace,
            uts: iso.uts_namespace,
        }
    }
}

/// One feature and whether this host gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub available: bool,
    pub detail: String,
}

const MIB: u64 = 1024 * 1024;

/// The name of the sandbox init's own binary, installed beside `shroud`.
pub const INIT_BINARY: &str = "shroud-sandbox-init";

/// How to start the sandbox init: the small `shroud-sandbox-init` beside
/// `shroud` when it is there (it maps and relocates a fraction of what
/// `shroud` does, which is most of an init's start-up), else `shroud
/// __sandbox-init`. The program, and the arguments that go before the
/// init's own (`--policy JSON [--probe] [-- COMMAND...]`).
pub fn init_program(shroud: &Path) -> (PathBuf, Vec<OsString>) {
    let own = shroud.with_file_name(INIT_BINARY);
    if own.is_file() {
        (own, Vec::new())
    } else {
        (shroud.to_owned(), vec!["__sandbox-init".into()])
    }
}

/// What the init was asked to do, from its arguments.
#[derive(Debug, Default)]
pub struct InitRequest {
    /// The policy, as JSON.
    pub policy: String,
    /// Only try each feature and print what this host gives, as JSON.
    pub probe: bool,
    pub command: Vec<OsString>,
}

impl InitRequest {
    /// Reads `--policy JSON [--probe] [-- COMMAND...]` (the init binary's
    /// arguments; `shroud __sandbox-init` reads the same through clap).
    pub fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Self, String> {
        let mut request = InitRequest::default();
        let mut policy = None;
        while let Some(arg) = args.next() {
            match arg.to_str() {
                Some("--policy") => {
                    let value = args.next().ok_or("--policy needs a value")?;
                    let value = value.into_string().map_err(|_| "the policy is not UTF-8")?;
                    policy = Some(value);
                }
                Some("--probe") => request.probe = true,
                Some("--") => {
                    request.command = args.collect();
                    break;
                }
                _ => return Err("unexpected argument (expected --policy, --probe or --)".into()),
            }
        }
        request.policy = policy.ok_or("--policy is required")?;
        Ok(request)
    }

    /// Runs it: prints the probe's report and returns, or becomes the init
    /// (and never returns).
    pub fn run(self) -> Result<u8, InitFailure> {
        let policy: SandboxPolicy = serde_json::from_str(&self.policy)
            .map_err(|e| InitFailure::Usage(format!("invalid sandbox policy: {e}")))?;
        if self.probe {
            let features = probe(&policy);
            println!(
                "{}",
                serde_json::to_string(&features).expect("features serialize")
            );
            return Ok(0);
        }
        if self.command.is_empty() {
            return Err(InitFailure::Usage("no command".to_owned()));
        }
        let fd: i32 = std::env::var(ENV_FD_VAR)
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| InitFailure::Usage(format!("{ENV_FD_VAR} is not set")))?;
        // Read by the command process; closed at every exec (the network
        // holder this init may start, the command's own).
        fd::set_cloexec(fd).map_err(InitFailure::Environment)?;
        run_init(&policy, &self.command, fd)
    }
}

/// Why the init did not start.
#[derive(Debug)]
pub enum InitFailure {
    /// Bad arguments (exit 2).
    Usage(String),
    /// The command's environment could not be read from its descriptor
    /// (exit 125).
    Environment(std::io::Error),
}

impl std::fmt::Display for InitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitFailure::Usage(message) => f.write_str(message),
            InitFailure::Environment(e) => write!(f, "cannot read the command's environment: {e}"),
        }
    }
}

/// Runs the sandbox init (see the module docs); never returns.
pub fn run_init(policy: &SandboxPolicy, command: &[OsString], env_fd: RawFd) -> ! {
    match outer(policy, command, env_fd) {
        Ok(never) => match never {},
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: sandbox: {e}");
            std::process::exit(125)
        }
    }
}

enum Never {}

/// Unshares the policy's namespaces (the network one joined where it is
/// shared, with the user namespace that owns it when run as a user); in a
/// new user namespace, maps root inside to this process's uid and gid
/// outside.
fn enter_namespaces(policy: &SandboxPolicy) -> std::io::Result<()> {
    let (uid, gid) = proc::ids();
    let mut namespaces = policy.namespaces();
    if let (true, Some(dir)) = (namespaces.net, &policy.shared_network) {
        holder::join(dir, namespaces.user)?;
        namespaces.net = false;
        namespaces.user = false;
    }
    ns::unshare_namespaces(namespaces)?;
    if namespaces.user {
        ns::map_root_to(uid, gid)?;
        // Writing the maps needed a dumpable process; the init (forked from
        // here, root of the namespace) is not left open to the command's
        // ptrace or /proc access.
        proc::set_undumpable()?;
    }
    Ok(())
}

fn outer(policy: &SandboxPolicy, command: &[OsString], env_fd: RawFd) -> std::io::Result<Never> {
    // Nothing relative: a working directory of the caller's would sit under
    // the covers, and `..` from it would walk the host beneath them.
    for dir in std::iter::once(&policy.workdir).chain(&policy.home_dir) {
        if !dir.is_absolute() {
            return Err(std::io::Error::other(format!(
                "the sandbox's directory {} is not an absolute path",
                dir.display()
            )));
        }
    }
    if let Some(parent) = policy.die_with {
        ns::die_with_parent(Some(parent))?;
    }
    std::env::set_current_dir("/")
        .map_err(|e| std::io::Error::new(e.kind(), format!("chdir /: {e}")))?;
    enter_namespaces(policy)?;
    let (status_read, status_write) = std::io::pipe()?;
    match proc::fork_process()? {
        None => {
            drop(status_read);
            if policy.die_with.is_some() {
                ns::die_with_parent(None)?;
                // The outer process died before the line above took
                // effect: its end of the status pipe is gone with it.
                if crate::sys::poll::reader_gone(std::os::fd::AsFd::as_fd(&status_write)) {
                    std::process::exit(125);
                }
            }
            let code = match init(policy, command, env_fd, status_write) {
                Ok(code) => code,
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "error: sandbox: {e}");
                    125
                }
            };
            std::process::exit(code)
        }
        Some(pid) => {
            drop(status_write);
            // The command gets these through the process group; the outer
            // process only waits.
            for sig in [Signal::INTERRUPT, Signal::TERMINATE, Signal::HANGUP] {
                signal::ignore_signal(sig, true)?;
            }
            let ended = proc::wait_for(Some(pid))?;
            let mut report = [0u8; 5];
            let mut reader = status_read;
            let reported = reader.read_exact(&mut report).is_ok();
            let ended = if reported {
                let value = i32::from_le_bytes(report[1..5].try_into().expect("4 bytes"));
                if report[0] == b'S' {
                    Ended::Signaled(value)
                } else {
                    Ended::Exited(value)
                }
            } else {
                ended.map_or(Ended::Exited(125), |(_, e)| e)
            };
            match ended {
                Ended::Exited(code) => std::process::exit(code),
                Ended::Signaled(signal) => signal::die_by_signal(signal),
            }
        }
    }
}

/// PID 1 of the sandbox: mounts, then runs and reaps. Returns its exit code.
fn init(
    policy: &SandboxPolicy,
    command: &[OsString],
    env_fd: RawFd,
    mut status: std::io::PipeWriter,
) -> std::io::Result<i32> {
    setup_mounts(policy)?;
    if policy.namespaces().net {
        ns::bring_up_loopback()?;
    }
    if policy.isolation.uts_namespace {
        ns::set_hostname("sandbox")?;
    }
    let init_pid = std::process::id();
    let command_pid = match proc::fork_process()? {
        None => run_command(policy, command, env_fd, init_pid),
        Some(pid) => pid,
    };
    // Reap every process of the sandbox until the command itself ends.
    loop {
        match proc::wait_for(None)? {
            Some((pid, ended)) if pid == command_pid => {
                let (kind, value) = match ended {
                    Ended::Exited(code) => (b'E', code),
                    Ended::Signaled(signal) => (b'S', signal),
                };
                let mut report = [kind, 0, 0, 0, 0];
                report[1..].copy_from_slice(&value.to_le_bytes());
                let _ = status.write_all(&report);
                return Ok(0);
            }
            Some(_) => continue,
            None => return Ok(125),
        }
    }
}

fn setup_mounts(policy: &SandboxPolicy) -> std::io::Result<()> {
    let iso = policy.isolation;
    if !iso.mount_namespace {
        return Ok(());
    }
    ns::make_mounts_private()?;
    // The sandbox's own directories, opened in this mount namespace before
    // anything covers them (the kernel refuses binds from another one).
    let mut binds = Vec::new();
    for dir in std::iter::once(&policy.workdir).chain(&policy.home_dir) {
        binds.push((fd::open_dir_handle(dir)?, dir));
    }
    // The whole tree read-only first: what is mounted afterwards (the
    // private and bound directories) stays writable.
    if iso.read_only_system {
        ns::make_tree_read_only()?;
    }
    let mut private = Vec::new();
    let tmp_options = private_tmp_options(&policy.limits);
    if iso.private_tmp {
        for dir in PRIVATE_DIRS.map(Path::new) {
            if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
                ns::mount_tmpfs(dir, &tmp_options)?;
                private.push(dir.to_owned());
            }
        }
    }
    let hidden = covers(&policy.hide, &private)?;
    for dir in &hidden {
        ns::mount_tmpfs(dir, "mode=755,size=64k")?;
    }
    // Re-create each bound directory's path in whatever covers it now and
    // bind the real directory there, through the handle opened above.
    for (handle, dir) in binds {
        std::fs::create_dir_all(dir).map_err(|e| {
            std::io::Error::new(e.kind(), format!("mkdir -p {}: {e}", dir.display()))
        })?;
        let source = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
        ns::bind_mount(&source, dir)?;
        if iso.read_only_system {
            ns::remount_writable(dir)?;
        }
    }
    for dir in &hidden {
        ns::remount_read_only(dir, false)?;
    }
    if policy.private_devpts {
        ns::mount_private_dev(&tmp_options)?;
    } else if iso.private_tmp && Path::new("/dev/shm").is_dir() {
        ns::mount_tmpfs(Path::new("/dev/shm"), &tmp_options)?;
    }
    if iso.pid_namespace {
        ns::mount_proc()?;
    }
    Ok(())
}

/// The command process: its environment, limits, then exec. Never returns.
fn run_command(policy: &SandboxPolicy, command: &[OsString], env_fd: RawFd, init_pid: u32) -> ! {
    let prepared = (|| -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
        if let Some((uid, gid)) = policy.run_as {
            ns::become_user(uid, gid)?;
            if policy.isolation.user_namespace {
                ns::unshare_namespaces(Namespaces {
                    user: true,
                    ..Namespaces::default()
                })?;
                ns::map_root_to(uid, gid)?;
            }
        }
        std::env::set_current_dir(&policy.workdir).map_err(|e| {
            std::io::Error::new(e.kind(), format!("chdir {}: {e}", policy.workdir.display()))
        })?;
        if let Some(relative) = &policy.cwd {
            // As the sandbox's uid, resolved by the kernel beneath the
            // working directory: a link swapped in after the supervisor's
            // check leads nowhere.
            ns::chdir_beneath(&policy.workdir, relative)?;
        }
        // Last before the limits (a small address space must not refuse
        // it): everything above overlapped the supervisor's commit.
        let env = fd::read_inherited_fd(env_fd).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot read the command's environment: {e}"),
            )
        })?;
        let limits = policy.limits;
        ns::set_rlimit(Rlimit::CoreBytes, 0)?;
        let apply = |which, value: Option<u64>, scale: u64| match value {
            Some(v) => ns::set_rlimit(which, v.saturating_mul(scale)),
            None => Ok(()),
        };
        apply(Rlimit::CpuSeconds, limits.cpu_seconds, 1)?;
        apply(Rlimit::AddressSpaceBytes, limits.memory_mb, MIB)?;
        apply(Rlimit::OpenFiles, limits.open_files, 1)?;
        apply(Rlimit::FileSizeBytes, limits.file_size_mb, MIB)?;
        // RLIMIT_NPROC counts the processes of the uid in the command's
        // user namespace: with a dedicated uid (as root) or a namespace of
        // the user's own, that is the sandbox alone.
        apply(Rlimit::Processes, limits.processes, 1)?;
        ns::leave_callers_keyring()?;
        // After the uid change (which clears it) and before seccomp; an
        // init already gone by then is caught by its pid.
        if policy.die_with.is_some() {
            ns::die_with_parent(Some(init_pid))?;
        }
        ns::install_seccomp(!policy.network)?;
        // Root inside a user namespace keeps no capability: it cannot undo
        // the mounts above (unmount a cover, remount the system writable).
        ns::drop_capabilities()?;
        if policy.isolation.no_new_privs {
            ns::set_no_new_privs()?;
        }
        Ok(env)
    })();
    let blob = match prepared {
        Ok(blob) => blob,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: sandbox: {e}");
            std::process::exit(125);
        }
    };
    let Some(mut env) = env_entries(&blob) else {
        let _ = writeln!(
            std::io::stderr(),
            "error: sandbox: the command's environment did not arrive whole; not starting it"
        );
        std::process::exit(125);
    };
    // Nothing but stdio reaches the command: the init's own pipes and
    // whatever else this process holds are closed here.
    let _ = fd::close_from(3 + policy.passed_fds as i32);
    let listen_pid;
    if policy.passed_fds > 0 {
        env.retain(|entry| !entry.starts_with(b"LISTEN_PID="));
        listen_pid = format!("LISTEN_PID={}", std::process::id());
        env.push(listen_pid.as_bytes());
    }
    let error = proc::exec_program(command, &env);
    let program = command
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (code, what) = match error.kind() {
        std::io::ErrorKind::NotFound => (127, "not found".to_owned()),
        _ => (126, format!("cannot be executed: {error}")),
    };
    let _ = writeln!(std::io::stderr(), "error: program `{program}` {what}");
    std::process::exit(code)
}

/// Tries each isolation feature of `policy` on this host. Runs in the
/// `__sandbox-init --probe` process; returns one entry per feature.
pub fn probe(policy: &SandboxPolicy) -> Vec<Feature> {
    let mut features = Vec::new();
    let iso = policy.isolation;
    // As a user every namespace comes with a user namespace; as root the
    // others are created directly and the user namespace by the dropped uid.
    let base = Namespaces {
        user: policy.run_as.is_none(),
        ..Namespaces::default()
    };
    let kinds = [
        (
            "mount_namespace",
            iso.mount_namespace,
            Namespaces {
                mount: true,
                ..base
            },
        ),
        (
            "pid_namespace",
            iso.pid_namespace,
            Namespaces { pid: true, ..base },
        ),
        (
            "net_namespace",
            !policy.network,
            Namespaces { net: true, ..base },
        ),
        (
            "ipc_namespace",
            iso.ipc_namespace,
            Namespaces { ipc: true, ..base },
        ),
        (
            "uts_namespace",
            iso.uts_namespace,
            Namespaces { uts: true, ..base },
        ),
    ];
    if iso.user_namespace {
        let result = in_child(|| {
            if let Some((uid, gid)) = policy.run_as {
                ns::become_user(uid, gid)?;
            }
            ns::unshare_namespaces(Namespaces {
                user: true,
                ..Namespaces::default()
            })
        });
        features.push(feature("user_namespace", result));
    }
    for (name, wanted, namespaces) in kinds {
        if wanted {
            features.push(feature(
                name,
                in_child(|| ns::unshare_namespaces(namespaces)),
            ));
        }
    }
    if !policy.network {
        features.push(described(
            "shared_loopback",
            probe_shared_loopback(base.user),
            "the sandbox's commands share one network namespace while it lives: a server run as a background command (or by an exec still running) is reachable by the others on 127.0.0.1".to_owned(),
        ));
    }
    let mounts_wanted = iso.mount_namespace
        && (iso.private_tmp
            || iso.read_only_system
            || iso.pid_namespace
            || !policy.hide.is_empty());
    if mounts_wanted {
        // The whole mount setup, as a command would get it, with what this
        // host lacks turned off (a missing mount namespace fails it).
        let mut trial = policy.clone();
        let mut mount_namespace = true;
        for f in features.iter().filter(|f| !f.available) {
            if f.name == "mount_namespace" {
                mount_namespace = false;
            } else {
                trial.without(&f.name);
            }
        }
        let try_mounts = |trial: &SandboxPolicy| {
            if !mount_namespace {
                return Err(std::io::Error::other("no mount namespace"));
            }
            in_child(|| {
                enter_namespaces(trial)?;
                // A pid namespace applies to children: mount /proc from one.
                in_child(|| setup_mounts(trial))
            })
        };
        let devpts_wanted = trial.private_devpts;
        trial.private_devpts = false;
        let result = try_mounts(&trial);
        let covered = covers(&policy.hide, &[])
            .unwrap_or_default()
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        for (name, wanted, what) in [
            (
                "private_tmp",
                iso.private_tmp,
                format!(
                    "{} and /dev/shm are the command's own ({})",
                    PRIVATE_DIRS.join(", "),
                    private_tmp_options(&policy.limits)
                ),
            ),
            (
                "read_only_system",
                iso.read_only_system,
                "every mount of the host is read-only".to_owned(),
            ),
            (
                "hidden_home",
                !policy.hide.is_empty(),
                format!("empty: {covered}"),
            ),
        ] {
            if wanted {
                features.push(described(name, clone_result(&result), what));
            }
        }
        if devpts_wanted {
            let devpts = match &result {
                Ok(()) => {
                    trial.private_devpts = true;
                    try_mounts(&trial)
                }
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            };
            features.push(described(
                "private_dev",
                devpts,
                format!(
                    "a /dev of its own ({}, a devpts, a /dev/shm): the host's terminals and other devices are not there",
                    ns::DEVICES.join(", ")
                ),
            ));
        }
    }
    features.push(described(
        "capabilities",
        in_child(|| {
            as_the_command(policy)?;
            ns::drop_capabilities()
        }),
        "all dropped: root inside cannot undo a mount".to_owned(),
    ));
    features.push(described(
        "seccomp",
        in_child(|| {
            as_the_command(policy)?;
            ns::leave_callers_keyring()?;
            ns::install_seccomp(!policy.network)
        }),
        format!(
            "the kernel keyring, io_uring, eBPF, perf events, userfaultfd, module loading and open_by_handle_at refused{}; the caller's session keyring left behind",
            if policy.network { "" } else { ", vsock too (the network is off)" }
        ),
    ));
    features.push(supplementary_groups(policy));
    if iso.no_new_privs {
        features.push(feature("no_new_privs", in_child(ns::set_no_new_privs)));
    }
    features.push(Feature {
        name: "rlimits".to_owned(),
        available: true,
        detail: match policy.run_as {
            Some((uid, _)) => format!("applied; processes counted on the sandbox's own uid {uid}"),
            None => {
                "applied; processes counted on your user (shroud is not root, so no dedicated uid)"
                    .to_owned()
            }
        },
    });
    features.push(Feature {
        name: "cgroups".to_owned(),
        available: false,
        detail: cgroup_detail(),
    });
    features
}

fn cgroup_detail() -> String {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v2 {
        "not used: limits are rlimits (cgroup v2 is present, but shroud does not manage cgroups yet)".to_owned()
    } else {
        "not available: the host has cgroup v1 without delegation; limits are rlimits".to_owned()
    }
}

/// Tries what a sandbox's namespace holder and its commands do: one child
/// makes the namespaces and sends them over a socket, another joins them
/// and brings the loopback up.
fn probe_shared_loopback(user: bool) -> std::io::Result<()> {
    in_child(|| {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        in_child(|| holder::send(&theirs, &holder::make_namespaces(user)?))?;
        drop(theirs);
        let held = holder::receive(&ours)?;
        in_child(|| {
            holder::enter(&held)?;
            ns::bring_up_loopback()
        })
    })
}

/// In a probe's child: takes the user and user namespace a command would
/// run in (as root, the sandbox's uid and a namespace of its own; as a
/// user, the outer user namespace).
fn as_the_command(policy: &SandboxPolicy) -> std::io::Result<()> {
    match policy.run_as {
        Some((uid, gid)) => {
            ns::become_user(uid, gid)?;
            ns::unshare_namespaces(Namespaces {
                user: true,
                ..Namespaces::default()
            })?;
            ns::map_root_to(uid, gid)
        }
        None if policy.isolation.user_namespace => enter_namespaces(&SandboxPolicy {
            isolation: Isolation {
                mount_namespace: false,
                pid_namespace: false,
                ipc_namespace: false,
                uts_namespace: false,
                ..policy.isolation
            },
            network: true,
            ..policy.clone()
        }),
        None => Ok(()),
    }
}

/// What becomes of the caller's supplementary groups. As root, the command
/// drops them (setgroups). A user cannot: the kernel keeps the groups of a
/// process that creates a user namespace (it denies `setgroups` there), so
/// files and sockets those groups reach stay reachable (a `docker` group
/// member's socket, for one). Reported, never hidden.
fn supplementary_groups(policy: &SandboxPolicy) -> Feature {
    let (_, primary) = proc::ids();
    let groups: Vec<u32> = proc::supplementary_groups()
        .into_iter()
        .filter(|g| *g != primary)
        .collect();
    let (available, detail) = match (policy.run_as, groups.is_empty()) {
        (Some(_), _) => (
            true,
            "dropped: the command runs with no supplementary group".to_owned(),
        ),
        (None, true) => (true, "none to drop".to_owned()),
        (None, false) => (
            false,
            format!(
                "not available: the kernel keeps your supplementary groups inside the sandbox ({}); what they can read or connect to stays reachable",
                groups
                    .iter()
                    .map(|g| group_name(*g))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    };
    Feature {
        name: "supplementary_groups".to_owned(),
        available,
        detail,
    }
}

/// `name (gid)` from /etc/group, or the gid alone.
fn group_name(gid: u32) -> String {
    let name = std::fs::read_to_string("/etc/group").ok().and_then(|text| {
        text.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.get(2) == Some(&gid.to_string().as_str())).then(|| fields[0].to_owned())
        })
    });
    match name {
        Some(name) => format!("{name} ({gid})"),
        None => gid.to_string(),
    }
}

/// A probed feature, with `what` it gives when available.
fn described(name: &str, result: std::io::Result<()>, what: String) -> Feature {
    let mut feature = feature(name, result);
    if feature.available {
        feature.detail = format!("available: {what}");
    }
    feature
}

fn feature(name: &str, result: std::io::Result<()>) -> Feature {
    Feature {
        name: name.to_owned(),
        available: result.is_ok(),
        detail: match result {
            Ok(()) => "available".to_owned(),
            Err(e) => format!("not available: {e}"),
        },
    }
}

fn clone_result(result: &std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
    }
}

/// Runs `f` in a forked child and reports whether it succeeded.
fn in_child(f: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
    let (mut read, mut write) = std::io::pipe()?;
    match proc::fork_process()? {
        None => {
            drop(read);
            let code = match f() {
                Ok(()) => 0,
                Err(e) => {
                    let _ = write.write_all(e.to_string().as_bytes());
                    1
                }
            };
            std::process::exit(code)
        }
        Some(pid) => {
            drop(write);
            let mut message = String::new();
            let _ = read.read_to_string(&mut message);
            match proc::wait_for(Some(pid))? {
                Some((_, Ended::Exited(0))) => Ok(()),
                _ => Err(std::io::Error::other(if message.is_empty() {
                    "failed".to_owned()
                } else {
                    message
                })),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(run_as: Option<(u32, u32)>, network: bool) -> SandboxPolicy {
        SandboxPolicy {
            isolation: Isolation::default(),
            network,
            limits: Limits::default(),
            workdir: PathBuf::from("/w"),
            home_dir: None,
            hide: vec![],
            private_devpts: true,
            run_as,
            die_with: None,
            passed_fds: 0,
            cwd: None,
            shared_network: None,
        }
    }

    #[test]
    fn namespaces_follow_the_policy() {
        // As a user, the outer process needs a user namespace for the rest.
        let user = policy(None, false).namespaces();
        assert!(user.user && user.mount && user.pid && user.net && user.ipc && user.uts);
        // As root, the user namespace is the command's own, made after it
        // drops to the sandbox's uid.
        let root = policy(Some((200_001, 200_001)), false).namespaces();
        assert!(!root.user && root.mount && root.pid && root.net);
        // Network on: no network namespace.
        assert!(!policy(None, true).namespaces().net);
        let mut bare = policy(None, false);
        bare.isolation.pid_namespace = false;
        bare.isolation.uts_namespace = false;
        let ns = bare.namespaces();
        assert!(!ns.pid && !ns.uts && ns.mount);
    }

    #[test]
    fn without_turns_off_a_feature_and_what_depends_on_it() {
        let mut p = policy(None, false);
        p.without("net_namespace");
        assert!(p.network);
        p.without("private_tmp");
        assert!(
            !p.isolation.mount_namespace
                && !p.isolation.private_tmp
                && !p.isolation.read_only_system
        );
        assert!(p.isolation.pid_namespace && p.isolation.no_new_privs);
        p.without("cgroups");
        p.without("no_new_privs");
        assert!(!p.isolation.no_new_privs && p.isolation.user_namespace);
    }

    #[test]
    fn policy_round_trips_as_json_without_secrets() {
        let p = policy(Some((1, 2)), false);
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<SandboxPolicy>(&text).unwrap(), p);
    }
}
