//! The supervisor: runs one child with its granted secrets, masks its output,
//! and maps how it ended to an exit code.
//!
//! [`run`] is one event loop on one thread. It polls the child's output
//! (two pipes, or one pseudo-terminal), a wake-up pipe fed by signal handlers
//! ([`signals`]), and, with a pty, shroud's own stdin. Output is read as it
//! comes (both streams at once: reading one after the other deadlocks at a
//! full pipe), masked per stream and written out at once ([`output`]).
//!
//! Endings: the child's own code; 128 + N when signal N killed it; 124 when
//! `--timeout` passed (SIGTERM to the group, SIGKILL 10 s later). SIGINT,
//! SIGTERM and SIGHUP sent to shroud go to the child's group; a second SIGINT
//! kills the group at once. When the child exits, the rest of its group is
//! killed and its pipes get 100 ms to close; a descendant that escaped the
//! group and holds them open does not keep shroud waiting.

pub mod output;
pub mod signals;
pub mod spawn;

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use thiserror::Error;

use crate::mask::MaskSet;
use crate::sandbox::sys::{self, ReadOutcome};
use output::{ExitEvent, OutputMode, OutputSinks, Stream};
use spawn::{ChildSpec, SpawnError, StdioMode};

/// Exit code when `--timeout` ended the run.
pub const EXIT_TIMEOUT: u8 = 124;
/// Time between SIGTERM and SIGKILL after a timeout.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(10);
/// How long the child's pipes may stay open after it exited.
pub const DRAIN_BOUND: Duration = Duration::from_millis(100);
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

/// One run.
#[derive(Debug)]
pub struct ExecPlan {
    pub child: ChildSpec,
    pub mask: Arc<MaskSet>,
    pub output: OutputMode,
    pub timeout: Option<Duration>,
    /// Bytes of output (both streams) after which the group is killed.
    pub output_limit: Option<u64>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitReport {
    /// shroud's exit code for it.
    pub code: u8,
    /// The signal that ended the child, if one did.
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// The output limit was reached and the group killed.
    pub output_limit_reached: bool,
    pub duration: Duration,
}

/// Runs the plan to the end.
pub fn run(plan: ExecPlan) -> Result<ExitReport, SupervisorError> {
    // Handlers first, so no SIGCHLD or SIGINT is missed.
    let signals = signals::SignalWatch::install()?;
    let pty = matches!(plan.child.stdio, StdioMode::Pty(_));
    let started = Instant::now();
    let mut spawned = spawn::spawn(plan.child)?;
    tracing::debug!(pid = spawned.pgid, pty, "child started");
    let pgid = spawned.pgid;
    let mut sinks = OutputSinks::new(plan.output, &plan.mask);
    let stdin = std::io::stdin();
    let _raw_terminal = if pty && sys::is_terminal(stdin.as_fd()) {
        sys::raw_mode(stdin.as_fd()).ok()
    } else {
        None
    };
    // With pipes, the child reads shroud's terminal directly: it must be the
    // terminal's foreground job, or reading would stop it (SIGTTIN).
    let _terminal = if !pty && sys::is_terminal(stdin.as_fd()) {
        sys::give_terminal_to(stdin.as_fd(), pgid)
    } else {
        None
    };

    let deadline = plan.timeout.map(|t| started + t);
    let mut timed_out = false;
    let mut kill_at: Option<Instant> = None;
    let mut exited = None;
    let mut drain_until: Option<Instant> = None;
    let mut out_open = true;
    let mut err_open = spawned.stderr.is_some();
    let mut stdin_open = pty;
    let mut stdin_last = b'\n';
    let mut interrupts = 0u32;
    let mut output_total = 0u64;
    let mut output_limit_reached = false;
    let mut buf = vec![0u8; READ_BLOCK];

    loop {
        let now = Instant::now();
        if exited.is_none() {
            if let Some(status) = spawned.child.try_wait()? {
                exited = Some(status);
                // Whatever is left in the group goes with the child.
                sys::signal_group(pgid, Signal::SIGKILL)?;
                drain_until = Some(now + DRAIN_BOUND);
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
                sys::signal_group(pgid, Signal::SIGTERM)?;
                kill_at = Some(now + TIMEOUT_GRACE);
            }
        }
        if kill_at.is_some_and(|at| now >= at) {
            sys::signal_group(pgid, Signal::SIGKILL)?;
            kill_at = None;
        }

        let wake_at = [deadline.filter(|_| !timed_out), kill_at, drain_until]
            .into_iter()
            .flatten()
            .min();
        let timeout = wake_at.map(|at| at.saturating_duration_since(now));
        let mut fds: Vec<BorrowedFd<'_>> = vec![signals.wake_fd()];
        let out_slot = out_open.then(|| {
            fds.push(spawned.stdout.as_fd());
            fds.len() - 1
        });
        let err_slot = match (&spawned.stderr, err_open) {
            (Some(fd), true) => {
                fds.push(fd.as_fd());
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let stdin_slot = (stdin_open && exited.is_none()).then(|| {
            fds.push(stdin.as_fd());
            fds.len() - 1
        });
        let ready = sys::wait_readable(&fds, timeout)?;
        drop(fds);

        if ready[0] {
            for signal in signals.take() {
                match signal {
                    Signal::SIGCHLD => {}
                    Signal::SIGWINCH if pty => {
                        if let Some(size) = sys::window_size(std::io::stdout().as_fd()) {
                            let _ = sys::set_window_size(spawned.stdout.as_fd(), &size);
                        }
                    }
                    Signal::SIGWINCH => {}
                    Signal::SIGINT => {
                        interrupts += 1;
                        let forward = if interrupts >= 2 {
                            Signal::SIGKILL
                        } else {
                            Signal::SIGINT
                        };
                        sys::signal_group(pgid, forward)?;
                    }
                    other => sys::signal_group(pgid, other)?,
                }
            }
        }
        for (slot, stream) in [(out_slot, Stream::Stdout), (err_slot, Stream::Stderr)] {
            let Some(slot) = slot else { continue };
            if !ready[slot] {
                continue;
            }
            let fd = match stream {
                Stream::Stdout => spawned.stdout.as_fd(),
                Stream::Stderr => spawned.stderr.as_ref().expect("stderr pipe").as_fd(),
            };
            match sys::read_some(fd, &mut buf)? {
                ReadOutcome::Data(n) if output_limit_reached => {
                    let _ = n; // over the limit: drained, not forwarded
                }
                ReadOutcome::Data(n) => {
                    let allowed = plan
                        .output_limit
                        .map_or(n as u64, |limit| (limit - output_total).min(n as u64));
                    sinks.write(stream, &buf[..allowed as usize]);
                    output_total += n as u64;
                    if plan.output_limit.is_some_and(|limit| output_total > limit) {
                        output_limit_reached = true;
                        sys::signal_group(pgid, Signal::SIGKILL)?;
                    }
                }
                ReadOutcome::WouldBlock => {}
                ReadOutcome::Closed => {
                    sinks.finish(stream);
                    match stream {
                        Stream::Stdout => out_open = false,
                        Stream::Stderr => err_open = false,
                    }
                }
            }
        }
        if let Some(slot) = stdin_slot {
            if ready[slot] {
                // With a pty, shroud forwards its stdin to the child's terminal.
                match sys::read_some(stdin.as_fd(), &mut buf)? {
                    ReadOutcome::Data(n) => {
                        stdin_last = buf[n - 1];
                        let _ = sys::write_all_fd(spawned.stdout.as_fd(), &buf[..n]);
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
                        let _ = sys::write_all_fd(spawned.stdout.as_fd(), eof);
                        stdin_open = false;
                    }
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
    let report = ExitReport {
        code: if timed_out { EXIT_TIMEOUT } else { code },
        signal,
        timed_out,
        output_limit_reached,
        duration: started.elapsed(),
    };
    sinks.exit_event(&ExitEvent {
        ts: crate::clock::rfc3339(crate::clock::now_ms()),
        event: "exit",
        code: report.code,
        signal: report.signal,
        duration_ms: report.duration.as_millis() as u64,
        timed_out: report.timed_out,
    });
    Ok(report)
}
