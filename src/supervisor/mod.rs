//! The supervisor: runs one child with its granted secrets, masks its output,
//! and maps how it ended to an exit code.
//!
//! [`run`] is one event loop on one thread. It polls the child's output
//! (two pipes, or one pseudo-terminal), and what the run answers to
//! ([`Control`]): for a command at a shell, a wake-up pipe fed by signal
//! handlers (`sys::signal::SignalWatch`) and, with a pty, shroud's own stdin; for a run
//! started by the server, the child's pidfd and a cancel pipe (no handler of
//! the shared process is touched). Output is read as it comes (both streams
//! at once: reading one after the other deadlocks at a full pipe), masked
//! per stream and written out at once to its [`output::Destination`]:
//! shroud's stdout and stderr, a buffer, or a channel to an HTTP response.
//! What a run is made of (grants, environment, mask set) is built by
//! [`plan`]; sandboxes by [`sandboxes`].
//!
//! Endings: the child's own code; 128 + N when signal N killed it; 124 when
//! `--timeout` passed (SIGTERM to the group, SIGKILL 10 s later). SIGINT,
//! SIGTERM and SIGHUP sent to shroud go to the child's group; a second SIGINT
//! kills the group at once. When the child exits, the rest of its group is
//! killed and its pipes get 100 ms to close; a descendant that escaped the
//! group and holds them open does not keep shroud waiting.

pub mod background;
pub mod deploy;
pub mod manager;
pub mod output;
pub mod plan;
pub mod sandbox_files;
pub mod sandboxes;
pub mod spawn;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::mask::MaskSet;
use crate::sys::fd::{self, ReadOutcome};
use crate::sys::signal::{signal_group, Signal, SignalWatch};
use crate::sys::{poll, proc, term};
use output::{Captured, Destination, ExitEvent, OutputMode, OutputSinks, Stream};
use spawn::{ChildSpec, SpawnError, StdioMode};

/// Exit code when `--timeout` ended the run.
pub const EXIT_TIMEOUT: u8 = 124;
/// Time between SIGTERM and SIGKILL after a timeout.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(10);
/// How long the child's pipes may stay open and silent after it exited
/// (what is still in them is read, however slow the reader of shroud's
/// output; a descendant that escaped the group and holds them open does
/// not keep shroud waiting longer).
pub const DRAIN_BOUND: Duration = Duration::from_millis(100);
/// How long output may keep coming after the child exited, at most.
pub const DRAIN_MAX: Duration = Duration::from_secs(10);
const READ_BLOCK: usize = 256 * 1024;

#[derive(Debug, Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("supervisor: {0}")]
    Io(#[from] std::io::Error),
}

impl SupervisorError {
    /// 127/126 for spawn failures, 125 for the supervisor's own.
    pub fn exit_code(&self) -> u8 {
        match self {
            SupervisorError::Spawn(e) => e.exit_code(),
            SupervisorError::Io(_) => 125,
        }
    }
}

/// Who a run answers to.
#[derive(Debug)]
pub enum Control {
    /// A command at a shell: SIGINT, SIGTERM and SIGHUP sent to shroud go to
    /// the child's group, the child reads shroud's stdin (with a pty, shroud
    /// forwards it), and SIGWINCH resizes the child's terminal.
    Process,
    /// A run inside the server: no signal handler is touched (the process
    /// is shared), shroud's stdin is not the child's (see
    /// `StdioMode::GivenInput`), the child's exit is
    /// watched through a pidfd, and the run is killed when any of its
    /// [`CancelGuard`]s is dropped (say, the HTTP client went away, or the
    /// server is shutting down).
    Detached(Vec<CancelWatch>),
}

/// Ends a detached run when dropped.
#[derive(Debug)]
pub struct CancelGuard {
    _write_end: OwnedFd,
}

/// The supervisor's side of a [`CancelGuard`]: readable (hung up) once the
/// guard is gone.
#[derive(Debug)]
pub struct CancelWatch {
    read_end: OwnedFd,
}

impl CancelWatch {
    /// Another watch on the same guard (one guard can end many runs).
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(CancelWatch {
            read_end: self.read_end.try_clone()?,
        })
    }
}

/// What a manager asks of a run it drives (see [`RunHandle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunRequest {
    /// SIGTERM to the group now, SIGKILL once `grace` has passed (a
    /// shorter grace of a later stop wins).
    Stop { grace: Duration },
    /// A signal to the group.
    Signal(Signal),
}

/// The manager's side of a driven run: requests go in, and dropping every
/// handle kills the run (its manager is gone: nothing it started may
/// outlive it).
#[derive(Debug, Clone)]
pub struct RunHandle {
    requests: std::sync::mpsc::Sender<RunRequest>,
    wake: Arc<OwnedFd>,
}

impl RunHandle {
    /// Sends `request`; false once the run has ended.
    pub fn send(&self, request: RunRequest) -> bool {
        if self.requests.send(request).is_err() {
            return false;
        }
        let _ = fd::write_some(self.wake.as_fd(), &[1]);
        true
    }

    /// Stop with a grace: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&self, grace: Duration) -> bool {
        self.send(RunRequest::Stop { grace })
    }
}

/// The run's side of a [`RunHandle`], given in [`ExecPlan::requests`].
#[derive(Debug)]
pub struct RunRequests {
    requests: std::sync::mpsc::Receiver<RunRequest>,
    wake: OwnedFd,
}

/// A handle for the manager and the requests for the plan.
pub fn run_handle() -> std::io::Result<(RunHandle, RunRequests)> {
    let (read_end, write_end) = fd::nonblocking_pipe()?;
    let (sender, receiver) = std::sync::mpsc::channel();
    Ok((
        RunHandle {
            requests: sender,
            wake: Arc::new(write_end),
        },
        RunRequests {
            requests: receiver,
            wake: read_end,
        },
    ))
}

/// Called with the child's pid (its process group) once it has started.
pub struct StartedHook(pub Box<dyn FnOnce(u32) + Send>);

impl std::fmt::Debug for StartedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StartedHook")
    }
}

/// A guard for the caller and the watch for [`Control::Detached`].
pub fn cancel_pair() -> std::io::Result<(CancelGuard, CancelWatch)> {
    let (read_end, write_end) = fd::nonblocking_pipe()?;
    Ok((
        CancelGuard {
            _write_end: write_end,
        },
        CancelWatch { read_end },
    ))
}

/// One run.
#[derive(Debug)]
pub struct ExecPlan {
    pub child: ChildStart,
    pub mask: Arc<MaskSet>,
    pub output: OutputMode,
    pub destination: Destination,
    pub control: Control,
    pub timeout: Option<Duration>,
    /// Bytes of output (both streams) after which the group is killed.
    pub output_limit: Option<u64>,
    /// Requests of the manager driving this run (stop with a grace, a
    /// signal); the run is killed once every handle is gone.
    pub requests: Option<RunRequests>,
    /// Told the child's pid once it has started.
    pub on_started: Option<StartedHook>,
}

/// The child of a plan: started by [`run`], or already started by
/// [`plan::prepare`] ([`plan::RunIo::start_early`]).
#[derive(Debug)]
pub enum ChildStart {
    Spec(ChildSpec),
    /// A sandbox init started before its secrets were read; [`run`] sends
    /// it `env` once its signal handlers are in place.
    Started {
        stdio: StdioMode,
        started: Result<(spawn::Spawned, spawn::EnvSender), SpawnError>,
        env: spawn::ChildEnv,
    },
}

impl ChildStart {
    fn stdio(&self) -> StdioMode {
        match self {
            ChildStart::Spec(spec) => spec.stdio,
            ChildStart::Started { stdio, .. } => *stdio,
        }
    }

    /// The child, running, its environment sent.
    fn start(self) -> Result<spawn::Spawned, SpawnError> {
        match self {
            ChildStart::Spec(spec) => spawn::spawn(spec),
            ChildStart::Started { started, env, .. } => {
                let (spawned, sender) = started?;
                sender.send(&env);
                Ok(spawned)
            }
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitReport {
    /// shroud's exit code for it.
    pub code: u8,
    /// The signal that ended the child, if one did.
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// The output limit was reached and the group killed.
    pub output_limit_reached: bool,
    /// A detached run was cancelled (its guard dropped, or its channel's
    /// reader gone) and the group killed.
    pub cancelled: bool,
    /// Its manager asked it to stop ([`RunRequest::Stop`]).
    pub stopped: bool,
    pub duration: Duration,
    /// The masked output, with [`Destination::Capture`].
    pub captured: Captured,
}

/// How often a detached run looks at its child when the kernel has no
/// pidfd, and at a full output channel.
const TICK: Duration = Duration::from_millis(5);
/// How long the last output may wait for room in a full channel.
const FINAL_FLUSH: Duration = Duration::from_secs(30);

/// Adds `fd` to the poll set; returns its index.
fn slot<'a>(fds: &mut Vec<BorrowedFd<'a>>, fd: BorrowedFd<'a>) -> usize {
    fds.push(fd);
    fds.len() - 1
}

/// Writes what `pending` holds into the child's stdin pipe, as far as it
/// takes it now; closes the pipe once everything is written and shroud's
/// own input has ended (`more` false), or when the child closed its end.
fn relay_input(relay: &mut Option<OwnedFd>, pending: &mut Vec<u8>, more: bool) {
    let Some(pipe) = relay else {
        pending.clear();
        return;
    };
    match fd::write_some(pipe.as_fd(), pending) {
        Ok(n) => {
            pending.drain(..n);
        }
        Err(_) => {
            // The child closed its stdin: nothing more reaches it.
            *relay = None;
            pending.clear();
            return;
        }
    }
    if pending.is_empty() && !more {
        *relay = None;
    }
}

/// Runs the plan to the end.
pub fn run(plan: ExecPlan) -> Result<ExitReport, SupervisorError> {
    let ExecPlan {
        child,
        mask,
        output,
        destination,
        control,
        timeout,
        output_limit,
        requests,
        on_started,
    } = plan;
    // Handlers first, so no SIGCHLD or SIGINT is missed.
    let (signals, cancels) = match control {
        Control::Process => (Some(SignalWatch::install()?), Vec::new()),
        Control::Detached(watches) => (None, watches),
    };
    let attached = signals.is_some();
    let pty = matches!(child.stdio(), StdioMode::Pty(_));
    let direct_stdin = child.stdio() == StdioMode::Pipes;
    let started = Instant::now();
    let mut spawned = child.start()?;
    // The set compiles beside the run from here, after the fork (see
    // `MaskSetBuilder::build_deferred`); the first output waits for it.
    mask.start_compiling();
    tracing::debug!(pid = spawned.pgid, pty, attached, "child started");
    let pgid = spawned.pgid;
    if let Some(StartedHook(hook)) = on_started {
        hook(pgid);
    }
    // Detached: the child's exit wakes the poll through a pidfd (without
    // one, the loop looks every TICK).
    let pidfd = if attached {
        None
    } else {
        proc::pidfd_open(pgid).ok()
    };
    let mut sinks = OutputSinks::new(output, destination, &mask);
    let stdin = std::io::stdin();
    let stdin_terminal = attached && term::is_terminal(stdin.as_fd());
    let _raw_terminal = if pty && stdin_terminal {
        term::raw_mode(stdin.as_fd()).ok()
    } else {
        None
    };
    // With pipes, the child reads shroud's terminal directly: it must be the
    // terminal's foreground job, or reading would stop it (SIGTTIN).
    let _terminal = if direct_stdin && stdin_terminal {
        term::give_terminal_to(stdin.as_fd(), pgid)
    } else {
        None
    };

    let deadline = timeout.map(|t| started + t);
    let mut timed_out = false;
    let mut cancelled = false;
    let mut stopped = false;
    let mut requests_open = requests.is_some();
    let mut kill_at: Option<Instant> = None;
    let mut exited = None;
    let mut drain_until: Option<Instant> = None;
    let mut drain_limit: Option<Instant> = None;
    let mut out_open = true;
    let mut err_open = spawned.stderr.is_some();
    // Relayed input: what shroud read on its stdin and the child's pipe has
    // not taken yet (shroud's stdin is read only while this is empty).
    let mut relay = spawned.stdin.take();
    let mut relay_pending: Vec<u8> = Vec::new();
    let mut stdin_open = (pty && attached) || relay.is_some();
    let mut stdin_last = b'\n';
    let mut interrupts = 0u32;
    let mut output_total = 0u64;
    let mut output_limit_reached = false;
    let mut buf = vec![0u8; READ_BLOCK];
    // Whether the child may have exited since it was last looked at: at
    // the start, then only when its SIGCHLD or its pidfd says so. (Without
    // either, every round looks: a `wait4` a round was a quarter of the
    // loop's system calls under a fast writer.)
    let mut exit_to_check = true;

    loop {
        sinks.flush();
        if !cancelled && sinks.reader_gone() {
            tracing::debug!("the output's reader is gone; killing the run");
            cancelled = true;
            signal_group(pgid, Signal::KILL)?;
        }
        let now = Instant::now();
        if exited.is_none() && exit_to_check {
            exit_to_check = signals.is_none() && pidfd.is_none();
            if let Some(status) = spawned.child.try_wait()? {
                exited = Some(status);
                // Whatever is left in the group goes with the child.
                signal_group(pgid, Signal::KILL)?;
                drain_until = Some(now + DRAIN_BOUND);
                drain_limit = Some(now + DRAIN_MAX);
            }
        }
        if exited.is_some() && !out_open && !err_open {
            break;
        }
        if drain_until.is_some_and(|until| now >= until) {
            tracing::debug!("output still open after the child exited; not waiting for it");
            break;
        }
        if let Some(deadline) = deadline {
            if !timed_out && exited.is_none() && now >= deadline {
                timed_out = true;
                signal_group(pgid, Signal::TERMINATE)?;
                kill_at = Some(now + TIMEOUT_GRACE);
            }
        }
        if kill_at.is_some_and(|at| now >= at) {
            signal_group(pgid, Signal::KILL)?;
            kill_at = None;
        }

        // A full output channel: stop reading the child (its pipes fill and
        // it waits, as under a slow terminal) and retry soon.
        let backlogged = sinks.backlogged();
        // Both outputs closed and the child not seen to exit: look every
        // TICK as well, in case its SIGCHLD cannot come (a signal mask
        // inherited with SIGCHLD blocked) or its pidfd never wakes.
        let outputs_closed = !out_open && !err_open;
        if outputs_closed && exited.is_none() {
            exit_to_check = true;
        }
        let tick = (backlogged
            || (exited.is_none() && (outputs_closed || (!attached && pidfd.is_none()))))
        .then(|| now + TICK);
        let wake_at = [deadline.filter(|_| !timed_out), kill_at, drain_until, tick]
            .into_iter()
            .flatten()
            .min();
        let poll_timeout = wake_at.map(|at| at.saturating_duration_since(now));
        if exited.is_some() {
            relay = None;
        }
        let mut fds: Vec<BorrowedFd<'_>> = Vec::with_capacity(7);
        let signal_slot = signals.as_ref().map(|s| slot(&mut fds, s.wake_fd()));
        let request_slot = match (&requests, requests_open && exited.is_none()) {
            (Some(r), true) => Some(slot(&mut fds, r.wake.as_fd())),
            _ => None,
        };
        let cancel_slots: Vec<usize> = if cancelled {
            Vec::new()
        } else {
            cancels
                .iter()
                .map(|c| slot(&mut fds, c.read_end.as_fd()))
                .collect()
        };
        // The pidfd only wakes the loop: `try_wait` above reaps the child.
        let pidfd_slot = match (&pidfd, &exited) {
            (Some(pidfd), None) => Some(slot(&mut fds, pidfd.as_fd())),
            _ => None,
        };
        let out_slot = (out_open && !backlogged).then(|| slot(&mut fds, spawned.stdout.as_fd()));
        let err_slot = match (&spawned.stderr, err_open && !backlogged) {
            (Some(fd), true) => Some(slot(&mut fds, fd.as_fd())),
            _ => None,
        };
        let stdin_slot = (stdin_open && exited.is_none() && relay_pending.is_empty())
            .then(|| slot(&mut fds, stdin.as_fd()));
        let mut interests: Vec<(BorrowedFd<'_>, poll::Interest)> =
            fds.iter().map(|fd| (*fd, poll::Interest::Read)).collect();
        let relay_slot = match (&relay, relay_pending.is_empty()) {
            (Some(pipe), false) => {
                interests.push((pipe.as_fd(), poll::Interest::Write));
                Some(interests.len() - 1)
            }
            _ => None,
        };
        let ready = poll::wait(&interests, poll_timeout)?;
        drop(interests);
        drop(fds);
        let is_ready = |slot: Option<usize>| slot.is_some_and(|i| ready[i]);
        if is_ready(pidfd_slot) {
            exit_to_check = true;
        }

        if let (true, Some(r)) = (is_ready(request_slot), &requests) {
            fd::drain(r.wake.as_fd());
            loop {
                match r.requests.try_recv() {
                    Ok(RunRequest::Stop { grace }) => {
                        stopped = true;
                        signal_group(pgid, Signal::TERMINATE)?;
                        let at = Instant::now() + grace;
                        kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
                    }
                    Ok(RunRequest::Signal(signal)) => signal_group(pgid, signal)?,
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        requests_open = false;
                        if !cancelled {
                            tracing::debug!("the run's manager is gone; killing it");
                            cancelled = true;
                            signal_group(pgid, Signal::KILL)?;
                        }
                        break;
                    }
                }
            }
        }
        if cancel_slots.iter().any(|&i| ready[i]) {
            tracing::debug!("run cancelled; killing it");
            cancelled = true;
            signal_group(pgid, Signal::KILL)?;
        }
        if let (true, Some(signals)) = (is_ready(signal_slot), &signals) {
            for signal in signals.take() {
                match signal {
                    Signal::CHILD => exit_to_check = true,
                    Signal::WINDOW_CHANGE if pty => {
                        if let Some(size) = term::window_size(std::io::stdout().as_fd()) {
                            let _ = term::set_window_size(spawned.stdout.as_fd(), size);
                        }
                    }
                    Signal::WINDOW_CHANGE => {}
                    Signal::INTERRUPT => {
                        interrupts += 1;
                        let forward = if interrupts >= 2 {
                            Signal::KILL
                        } else {
                            Signal::INTERRUPT
                        };
                        signal_group(pgid, forward)?;
                    }
                    other => signal_group(pgid, other)?,
                }
            }
        }
        for (slot, stream) in [(out_slot, Stream::Stdout), (err_slot, Stream::Stderr)] {
            if !is_ready(slot) {
                continue;
            }
            let fd = match stream {
                Stream::Stdout => spawned.stdout.as_fd(),
                Stream::Stderr => spawned.stderr.as_ref().expect("stderr pipe").as_fd(),
            };
            match fd::read_some(fd, &mut buf)? {
                ReadOutcome::Data(n) if output_limit_reached => {
                    let _ = n; // over the limit: drained, not forwarded
                }
                ReadOutcome::Data(n) => {
                    let allowed =
                        output_limit.map_or(n as u64, |limit| (limit - output_total).min(n as u64));
                    sinks.write(stream, &buf[..allowed as usize]);
                    output_total += n as u64;
                    if output_limit.is_some_and(|limit| output_total > limit) {
                        output_limit_reached = true;
                        signal_group(pgid, Signal::KILL)?;
                    }
                    // Output still coming after the exit: read on, while
                    // it keeps coming (up to DRAIN_MAX).
                    if let (Some(until), Some(limit)) = (&mut drain_until, drain_limit) {
                        *until = (Instant::now() + DRAIN_BOUND).min(limit);
                    }
                }
                ReadOutcome::WouldBlock => {}
                ReadOutcome::Closed => {
                    sinks.finish(stream);
                    // Most often the child's exit closed it.
                    exit_to_check = true;
                    match stream {
                        Stream::Stdout => out_open = false,
                        Stream::Stderr => err_open = false,
                    }
                }
            }
        }
        if is_ready(relay_slot) {
            relay_input(&mut relay, &mut relay_pending, stdin_open);
        }
        if is_ready(stdin_slot) && !pty {
            // Relayed: into the child's pipe, as far as it takes it now.
            match fd::read_some(stdin.as_fd(), &mut buf) {
                Ok(ReadOutcome::Data(n)) => {
                    relay_pending.extend_from_slice(&buf[..n]);
                    relay_input(&mut relay, &mut relay_pending, true);
                }
                Ok(ReadOutcome::WouldBlock) => {}
                // End of input, or a stdin that cannot be read (closed, a
                // directory): the child sees end of file.
                Ok(ReadOutcome::Closed) | Err(_) => {
                    stdin_open = false;
                    relay_input(&mut relay, &mut relay_pending, false);
                }
            }
            if relay.is_none() {
                stdin_open = false;
            }
        } else if is_ready(stdin_slot) {
            // With a pty, shroud forwards its stdin to the child's terminal.
            match fd::read_some(stdin.as_fd(), &mut buf)? {
                ReadOutcome::Data(n) => {
                    stdin_last = buf[n - 1];
                    let _ = fd::write_all_fd(spawned.stdout.as_fd(), &buf[..n]);
                }
                ReadOutcome::WouldBlock => {}
                ReadOutcome::Closed => {
                    // End of input: the terminal's EOF character (twice
                    // after a partial line: once to send it, once for EOF).
                    let eof: &[u8] = if stdin_last == b'\n' {
                        b"\x04"
                    } else {
                        b"\x04\x04"
                    };
                    let _ = fd::write_all_fd(spawned.stdout.as_fd(), eof);
                    stdin_open = false;
                }
            }
        }
    }
    sinks.finish(Stream::Stdout);
    sinks.finish(Stream::Stderr);
    let status = match exited {
        Some(status) => status,
        None => spawned.child.wait()?,
    };
    let (code, signal) = spawn::exit_code(status);
    let mut report = ExitReport {
        code: if timed_out { EXIT_TIMEOUT } else { code },
        signal,
        timed_out,
        output_limit_reached,
        cancelled,
        stopped,
        duration: started.elapsed(),
        captured: Captured::default(),
    };
    sinks.exit_event(&ExitEvent::of(&report));
    sinks.flush_within(FINAL_FLUSH);
    report.captured = sinks.into_captured();
    Ok(report)
}
