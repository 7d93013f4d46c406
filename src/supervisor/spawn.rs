//! Starting the child: its environment, its process group, its stdio.
//!
//! The environment is built from nothing: the template's pass-through names
//! (copied from the caller when set there, `SHROUD_*` never), the template's
//! fixed values, `--env`, then the granted secrets, each later layer winning.
//! The child gets a process group of its own (pipes), a session of its own
//! with no controlling terminal (a sandboxed command), or a session of its
//! own with a pseudo-terminal as its controlling terminal (pty), so that the
//! supervisor can signal everything it started at once. Whatever the mode,
//! it starts with its stdio and nothing else: every other descriptor, those
//! shroud inherited included, is closed at its exec.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};

use thiserror::Error;

use crate::sandbox::template::EnvPolicy;
use crate::secret::SecretValue;
use crate::sys::{fd, proc, pty, signal};

/// Used when neither the caller nor the template provides PATH.
pub const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Why the child could not be started, with the exit code it maps to.
#[derive(Debug, Error)]
pub enum SpawnError {
    #[error("program `{0}` not found")]
    NotFound(String),
    #[error("program `{program}` cannot be executed: {source}")]
    NotExecutable {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start `{program}`: {source}")]
    Other {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

impl SpawnError {
    /// 127 not found, 126 not executable, 125 anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::NotFound(_) => 127,
            SpawnError::NotExecutable { .. } => 126,
            SpawnError::Other { .. } => 125,
        }
    }
}

/// One environment variable of the child. Secret values stay zeroizing.
pub enum EnvValue {
    Plain(OsString),
    Secret(SecretValue),
}

impl std::fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvValue::Plain(v) => write!(f, "{v:?}"),
            EnvValue::Secret(v) => write!(f, "{v:?}"),
        }
    }
}

/// The child's environment, in order; a later entry replaces an earlier one.
/// Indexed by name: a run with a thousand grants sets a thousand names.
#[derive(Debug, Default)]
pub struct ChildEnv {
    entries: Vec<(String, EnvValue)>,
    position: std::collections::HashMap<String, usize>,
}

impl ChildEnv {
    /// The template layer: pass-through names from `caller`, then fixed values.
    pub fn from_template(policy: &EnvPolicy, caller: impl Fn(&str) -> Option<OsString>) -> Self {
        let mut env = ChildEnv::default();
        for name in &policy.pass {
            if name.starts_with("SHROUD_") {
                tracing::warn!(%name, "template asks to pass a SHROUD_ variable; it is never passed");
                continue;
            }
            if let Some(value) = caller(name) {
                env.set(name, EnvValue::Plain(value));
            }
        }
        for (name, value) in &policy.set {
            env.set(name, EnvValue::Plain(value.into()));
        }
        if env.get("PATH").is_none() {
            env.set("PATH", EnvValue::Plain(FALLBACK_PATH.into()));
        }
        env
    }

    /// Sets (or replaces) a variable.
    /// A replaced variable moves to the end, as if unset and set again.
    pub fn set(&mut self, name: &str, value: EnvValue) {
        if let Some(at) = self.position.get(name).copied() {
            self.entries.remove(at);
            for (moved, (n, _)) in self.entries.iter().enumerate().skip(at) {
                self.position.insert(n.clone(), moved);
            }
        }
        self.position.insert(name.to_owned(), self.entries.len());
        self.entries.push((name.to_owned(), value));
    }

    pub fn get(&self, name: &str) -> Option<&EnvValue> {
        self.position.get(name).map(|&at| &self.entries[at].1)
    }

    /// The names, in order (safe to log).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// The environment as the sandbox init reads it
    /// ([`crate::sandbox::apply::env_entries`]): its length, then
    /// `NAME=VALUE` entries, each ended by NUL.
    fn to_entries(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let header = crate::sandbox::apply::ENV_LENGTH_BYTES;
        let mut blob = zeroize::Zeroizing::new(vec![0u8; header]);
        for (name, value) in &self.entries {
            blob.extend_from_slice(name.as_bytes());
            blob.push(b'=');
            match value {
                EnvValue::Plain(v) => blob.extend_from_slice(v.as_encoded_bytes()),
                EnvValue::Secret(v) => blob.extend_from_slice(v.expose()),
            }
            blob.push(0);
        }
        let length = (blob.len() - header) as u64;
        blob[..header].copy_from_slice(&length.to_le_bytes());
        blob
    }

    fn apply(&self, command: &mut Command) {
        command.env_clear();
        for (name, value) in &self.entries {
            let value: &OsStr = match value {
                EnvValue::Plain(v) => v,
                EnvValue::Secret(v) => std::os::unix::ffi::OsStrExt::from_bytes(v.expose()),
            };
            command.env(name, value);
        }
    }
}

/// How the child's stdio is wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdioMode {
    /// stdin inherited (the caller's terminal included), stdout and stderr
    /// through two pipes: `exec`, a command the operator trusts.
    Pipes,
    /// stdin relayed by the supervisor from shroud's own stdin through a
    /// pipe, stdout and stderr through two pipes: a sandboxed command at a
    /// shell never holds the caller's terminal (no TIOCSTI, no reading the
    /// user's next keystrokes after it should have ended, no changing the
    /// terminal's modes), nor any other kind of descriptor the caller had
    /// on stdin (a directory, a socket).
    RelayedInput,
    /// stdin is [`ChildSpec::input`] (or /dev/null without it), stdout and
    /// stderr through two pipes: runs started by the server, whose own
    /// stdin is nobody's.
    GivenInput,
    /// One pseudo-terminal for all three, sized like this.
    Pty(Option<crate::sys::term::WindowSize>),
}

/// What to start.
#[derive(Debug)]
pub struct ChildSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: ChildEnv,
    pub cwd: Option<std::path::PathBuf>,
    pub stdio: StdioMode,
    /// The child starts with only `SHROUD_ENV_FD=N` in its environment and
    /// `env` reaches it through a pipe on fd N instead (`NAME=VALUE`, each
    /// ended by NUL). For `__sandbox-init`, which must not itself be shaped
    /// by what a caller puts in the command's environment (`LD_PRELOAD`).
    pub env_through_pipe: bool,
    /// With [`StdioMode::GivenInput`]: what the child reads on stdin, then
    /// end of file.
    pub input: Option<SecretValue>,
    /// A session of its own with no controlling terminal (a sandboxed
    /// command) instead of a process group in shroud's session. With a pty
    /// the child always leads a session, on that pty.
    pub new_session: bool,
    /// Descriptors the child gets as fds 3, 4, ... (listening sockets, see
    /// `supervisor::deploy`); at most [`fd::MAX_PASSED_FDS`].
    pub pass_fds: Vec<OwnedFd>,
    /// Killed when the thread that starts it ends, shroud killed by SIGKILL
    /// included (the tasks of `shroud run`).
    pub die_with_parent: bool,
}

/// A started child and the supervisor's ends of its output.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    /// The process group (the child's pid).
    pub pgid: u32,
    /// Pipes: stdout and stderr. Pty: the master (both streams, and stdin).
    pub stdout: OwnedFd,
    pub stderr: Option<OwnedFd>,
    /// [`StdioMode::RelayedInput`]: the writing end of the child's stdin
    /// (non-blocking), for the supervisor to feed.
    pub stdin: Option<OwnedFd>,
}

impl Drop for Spawned {
    /// A run cut short by an error of the supervisor's own: nothing it
    /// started may outlive it, and the child is reaped (no zombie piles up
    /// in a long-lived server). A finished run's child was reaped already
    /// (`try_wait` then returns its status again).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = signal::signal_group(self.pgid, signal::Signal::KILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Kernel buffer asked for on the child's output pipes.
const PIPE_BYTES: usize = 1024 * 1024;

/// The writing end of a child's environment pipe
/// ([`ChildSpec::env_through_pipe`]): its command waits for what is sent
/// here, and does not start if this is dropped unsent.
#[derive(Debug)]
pub struct EnvSender(OwnedFd);

impl EnvSender {
    /// Sends `env` and closes the pipe.
    pub fn send(self, env: &ChildEnv) {
        let blob = env.to_entries();
        // A closed pipe means the child is already gone, which the
        // supervisor will see.
        let _ = std::fs::File::from(self.0).write_all(&blob);
    }
}

/// Starts the child.
pub fn spawn(mut spec: ChildSpec) -> Result<Spawned, SpawnError> {
    let env = std::mem::take(&mut spec.env);
    match start(spec, &env)? {
        (spawned, Some(sender)) => {
            sender.send(&env);
            Ok(spawned)
        }
        (spawned, None) => Ok(spawned),
    }
}

/// Starts a child that gets its environment through a pipe
/// ([`ChildSpec::env_through_pipe`], the sandbox init) before that
/// environment is known: `spec.env` is not used; the environment goes
/// through the returned sender.
pub fn spawn_awaiting_env(spec: ChildSpec) -> Result<(Spawned, EnvSender), SpawnError> {
    assert!(spec.env_through_pipe, "only a piped environment can wait");
    let (spawned, sender) = start(spec, &ChildEnv::default())?;
    Ok((spawned, sender.expect("a piped environment has a sender")))
}

/// Starts the child; with [`ChildSpec::env_through_pipe`], returns the
/// pipe's writing end unwritten. `env` is the environment the program is
/// looked up with (`PATH`) and, without a pipe, started with.
fn start(spec: ChildSpec, env: &ChildEnv) -> Result<(Spawned, Option<EnvSender>), SpawnError> {
    let program_text = spec.program.to_string_lossy().into_owned();
    let path = match env.get("PATH") {
        Some(EnvValue::Plain(path)) => Some(path.as_os_str()),
        _ => None,
    };
    let mut command = match proc::find_program(&spec.program, path) {
        Some(resolved) => {
            let mut command = Command::new(resolved);
            command.arg0(&spec.program);
            command
        }
        None => Command::new(&spec.program),
    };
    command.args(&spec.args);
    let mut env_pipe = None;
    if spec.env_through_pipe {
        let (read, write) = fd::high_pipe().map_err(|source| SpawnError::Other {
            program: program_text.clone(),
            source,
        })?;
        command.env_clear().env(
            crate::sandbox::apply::ENV_FD_VAR,
            read.as_raw_fd().to_string(),
        );
        env_pipe = Some((read, write));
    } else {
        env.apply(&mut command);
    }
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let other = |source| SpawnError::Other {
        program: program_text.clone(),
        source,
    };
    let mut pty_master = None;
    match spec.stdio {
        StdioMode::Pipes | StdioMode::RelayedInput | StdioMode::GivenInput => {
            let stdin = match (spec.stdio, &spec.input) {
                (StdioMode::Pipes, _) => Stdio::inherit(),
                (StdioMode::RelayedInput, _) | (_, Some(_)) => Stdio::piped(),
                (_, None) => Stdio::null(),
            };
            if !spec.new_session {
                command.process_group(0);
            }
            command
                .stdin(stdin)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
        StdioMode::Pty(size) => {
            let (master, slave) = pty::open_pty(size).map_err(other)?;
            command
                .stdin(Stdio::from(slave.try_clone().map_err(other)?))
                .stdout(Stdio::from(slave.try_clone().map_err(other)?))
                .stderr(Stdio::from(slave));
            // SAFETY: the closure makes only async-signal-safe calls
            // (setsid, ioctl) between fork and exec.
            unsafe {
                command.pre_exec(|| pty::become_session_leader_on(0));
            }
            pty_master = Some(master);
        }
    }
    let new_session = spec.new_session && pty_master.is_none();
    let env_fd = env_pipe.as_ref().map(|(read, _)| read.as_raw_fd());
    if spec.pass_fds.len() > fd::MAX_PASSED_FDS {
        return Err(other(std::io::Error::other(format!(
            "{} descriptors to pass; at most {} can be",
            spec.pass_fds.len(),
            fd::MAX_PASSED_FDS
        ))));
    }
    // High copies first, so that moving them to 3, 4, ... in the child
    // never overwrites one that is still to be moved.
    let passed: Vec<OwnedFd> = spec
        .pass_fds
        .iter()
        .map(|passed| fd::high_copy(std::os::fd::AsFd::as_fd(passed)))
        .collect::<std::io::Result<_>>()
        .map_err(other)?;
    let passed_raw: Vec<i32> = passed.iter().map(|f| f.as_raw_fd()).collect();
    let die_with = spec.die_with_parent.then(std::process::id);
    // SAFETY: setsid, dup2, fcntl and close_range are async-signal-safe;
    // `env_pipe` and `passed` outlive the spawn; the closure allocates
    // nothing.
    unsafe {
        command.pre_exec(move || {
            if new_session {
                pty::become_session_leader()?;
            }
            if let Some(parent) = die_with {
                proc::die_with_parent_in_child(parent)?;
            }
            if let Some(fd) = env_fd {
                fd::place_for_exec(fd, fd)?;
            }
            for (index, &fd) in passed_raw.iter().enumerate() {
                fd::place_for_exec(fd, 3 + index as i32)?;
            }
            fd::cloexec_from(3 + passed_raw.len() as i32, env_fd)
        });
    }
    let spawned = command.spawn();
    drop(passed);
    // Drop our copies of the pty slave now, so the master sees EOF when the
    // child and its descendants close theirs.
    drop(command);
    let mut child = spawned.map_err(|source| match source.raw_os_error() {
        Some(nix::libc::ENOENT) => SpawnError::NotFound(program_text.clone()),
        Some(nix::libc::EACCES | nix::libc::ENOEXEC | nix::libc::EISDIR | nix::libc::ETXTBSY) => {
            SpawnError::NotExecutable {
                program: program_text.clone(),
                source,
            }
        }
        _ => other(source),
    })?;
    let sender = env_pipe.map(|(read, write)| {
        drop(read);
        fd::enlarge_pipe(std::os::fd::AsFd::as_fd(&write), PIPE_BYTES);
        EnvSender(write)
    });
    let mut relay = None;
    if spec.stdio == StdioMode::RelayedInput {
        if let Some(stdin) = child.stdin.take() {
            let stdin = OwnedFd::from(stdin);
            fd::set_nonblocking(stdin.as_raw_fd()).map_err(other)?;
            relay = Some(stdin);
        }
    } else if let (Some(input), Some(stdin)) = (spec.input, child.stdin.take()) {
        feed_input(input, stdin);
    }
    let pgid = child.id();
    let (stdout, stderr) = match pty_master {
        Some(master) => (master, None),
        None => {
            let out = OwnedFd::from(child.stdout.take().expect("piped stdout"));
            let err = OwnedFd::from(child.stderr.take().expect("piped stderr"));
            (out, Some(err))
        }
    };
    for fd in std::iter::once(&stdout).chain(stderr.as_ref()) {
        fd::set_nonblocking(fd.as_raw_fd()).map_err(other)?;
        if !matches!(spec.stdio, StdioMode::Pty(_)) {
            fd::enlarge_pipe(std::os::fd::AsFd::as_fd(fd), PIPE_BYTES);
        }
    }
    let spawned = Spawned {
        child,
        pgid,
        stdout,
        stderr,
        stdin: relay,
    };
    Ok((spawned, sender))
}

/// Writes `input` to the child's stdin from a thread of its own (the child
/// may read it slowly, or not at all), then closes it. A child that exits
/// without reading it all ends the write with EPIPE, and the thread with it.
fn feed_input(input: SecretValue, mut stdin: std::process::ChildStdin) {
    let spawned = std::thread::Builder::new()
        .name("shroud-stdin".to_owned())
        .spawn(move || {
            let _ = stdin.write_all(input.expose());
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the thread feeding stdin; the child gets none");
    }
}

/// The exit code for a finished child (the child's code, or 128 + signal)
/// and the signal that ended it, if any.
pub fn exit_code(status: ExitStatus) -> (u8, Option<i32>) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code as u8, None),
        (None, Some(signal)) => ((128 + signal) as u8, Some(signal)),
        (None, None) => (125, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> EnvValue {
        EnvValue::Plain(text.into())
    }

    #[test]
    fn a_replaced_variable_moves_to_the_end_and_keeps_one_entry() {
        let mut env = ChildEnv::default();
        env.set("A", plain("1"));
        env.set("B", plain("2"));
        env.set("C", plain("3"));
        env.set("A", plain("4"));
        assert_eq!(env.names().collect::<Vec<_>>(), ["B", "C", "A"]);
        assert!(matches!(env.get("A"), Some(EnvValue::Plain(v)) if v == "4"));
        assert!(matches!(env.get("B"), Some(EnvValue::Plain(v)) if v == "2"));
        env.set("B", plain("5"));
        assert_eq!(env.names().collect::<Vec<_>>(), ["C", "A", "B"]);
        assert!(matches!(env.get("C"), Some(EnvValue::Plain(v)) if v == "3"));
        assert!(matches!(env.get("B"), Some(EnvValue::Plain(v)) if v == "5"));
        assert!(env.get("D").is_none());
        // Framed as the sandbox init reads it: the length, then the entries.
        let blob = env.to_entries();
        assert_eq!(&blob[..8], &12u64.to_le_bytes());
        assert_eq!(&blob[8..], b"C=3\0A=4\0B=5\0");
        assert_eq!(
            crate::sandbox::apply::env_entries(&blob),
            Some(vec![&b"C=3"[..], b"A=4", b"B=5"])
        );
    }
}
