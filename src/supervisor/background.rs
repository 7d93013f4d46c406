//! Background commands of sandboxes: the table the manager actor keeps.
//!
//! A background command is a sandbox exec that outlives its request: the
//! API prepares it like any exec (environment, grants, masking, limits),
//! with its masked output going to a capped log of JSON lines
//! (`<sandbox>/processes/<id>.jsonl`, beside the working directory) and a
//! [`RunHandle`] to stop it. The actor owns the handle: dropping it (the
//! sandbox deleted, expired, or the server gone) kills the command. Its
//! thread appends the exit event to the log, which ends a follower's
//! stream, and reports the exit back to the actor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::deploy::LogFile;
use super::output::ExitEvent;
use super::{ExecPlan, RunHandle};
use crate::clock::{now_ms, rfc3339};

/// SIGTERM to SIGKILL when a background command is stopped.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// A background command's log is kept up to this size (twice, with the older part).
pub const LOG_CAP_BYTES: u64 = 8 * 1024 * 1024;

/// A background command ready to start (prepared by the API).
pub struct BackgroundStart {
    pub sandbox: String,
    pub process_id: u64,
    /// The command as the caller gave it (no value: secrets travel in the
    /// environment, which is never listed).
    pub command: Vec<String>,
    pub plan: ExecPlan,
    pub handle: RunHandle,
    pub log: Arc<LogFile>,
}

/// One background command in the table.
struct Entry {
    process_id: u64,
    command: Vec<String>,
    status: &'static str,
    exit_code: Option<u8>,
    started_ms: i64,
    ended_ms: Option<i64>,
    stop_asked: bool,
    /// Held while it runs: dropping it kills the command.
    handle: Option<RunHandle>,
}

/// How a background command ended, as its thread reports it.
pub struct Ended {
    pub sandbox: String,
    pub process_id: u64,
    pub exit_code: u8,
}

/// Every sandbox's background commands.
#[derive(Default)]
pub struct Table {
    by_sandbox: HashMap<String, Vec<Entry>>,
}

impl Table {
    /// Starts `start` on a thread of its own; `ended` is called there
    /// with how it ended.
    pub fn start(&mut self, start: BackgroundStart, ended: impl FnOnce(Ended) + Send + 'static) {
        let BackgroundStart {
            sandbox,
            process_id,
            command,
            plan,
            handle,
            log,
        } = start;
        self.by_sandbox
            .entry(sandbox.clone())
            .or_default()
            .push(Entry {
                process_id,
                command,
                status: "running",
                exit_code: None,
                started_ms: now_ms(),
                ended_ms: None,
                stop_asked: false,
                handle: Some(handle),
            });
        std::thread::Builder::new()
            .name(format!("shroud-bg-{process_id}"))
            .spawn(move || {
                let (exit_code, event) = match super::run(plan) {
                    Ok(report) => (report.code, serde_json::json!(ExitEvent::of(&report))),
                    Err(e) => {
                        tracing::warn!(process = process_id, error = %e, "a background command failed to run");
                        (e.exit_code(), ExitEvent::failed(e.exit_code()))
                    }
                };
                log.append(&event);
                ended(Ended {
                    sandbox,
                    process_id,
                    exit_code,
                });
            })
            .expect("a background thread starts");
    }

    /// Records how a command ended (its handle goes).
    pub fn ended(&mut self, ended: Ended) {
        if let Some(entry) = self.by_sandbox.get_mut(&ended.sandbox).and_then(|entries| {
            entries
                .iter_mut()
                .find(|e| e.process_id == ended.process_id)
        }) {
            entry.status = if entry.stop_asked {
                "stopped"
            } else {
                "exited"
            };
            entry.exit_code = Some(ended.exit_code);
            entry.ended_ms = Some(now_ms());
            entry.handle = None;
        }
    }

    /// The sandbox's background commands, oldest first.
    pub fn list(&self, sandbox: &str) -> Vec<serde_json::Value> {
        self.by_sandbox
            .get(sandbox)
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "process_id": e.process_id,
                            "command": e.command,
                            "status": e.status,
                            "exit_code": e.exit_code,
                            "started_at": rfc3339(e.started_ms),
                            "ended_at": e.ended_ms.map(rfc3339),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asks a command to stop (SIGTERM now, SIGKILL after the grace);
    /// false when the sandbox has no such command.
    pub fn stop(&mut self, sandbox: &str, process_id: u64) -> bool {
        let Some(entry) = self
            .by_sandbox
            .get_mut(sandbox)
            .and_then(|entries| entries.iter_mut().find(|e| e.process_id == process_id))
        else {
            return false;
        };
        if let Some(handle) = &entry.handle {
            entry.stop_asked = true;
            handle.stop(STOP_GRACE);
        }
        true
    }

    /// The sandbox is gone: its commands are killed (their handles dropped).
    pub fn forget(&mut self, sandbox: &str) {
        self.by_sandbox.remove(sandbox);
    }

    /// Asks every running command to stop (the server shuts down).
    pub fn stop_all(&mut self) {
        for entry in self.by_sandbox.values_mut().flatten() {
            if let Some(handle) = &entry.handle {
                entry.stop_asked = true;
                handle.stop(STOP_GRACE);
            }
        }
    }
}
