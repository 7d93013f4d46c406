//! Running a checked task file: the checks that need the store and the home,
//! one audited read of every secret named, then the DAG.
//!
//! Each task is one more front door of the one prepare path: a
//! [`RunSpec`] of `bash -e /proc/self/fd/3` (or `sh -e`) whose script
//! reaches the shell through a pipe on fd 3, never argv, with its
//! resolved environment and the run's single mask set (every secret any
//! expression names, with its variants), and, with `template:`, a sandbox
//! policy of a fresh sandbox seeded from the file's folder and discarded
//! after. The run loop drives it (`Control::Detached`, a [`RunHandle`] to
//! stop it); its masked output goes to a sink that writes whole lines,
//! prefixed by the task's key, under one lock, so that parallel tasks never
//! interleave within a line.
//!
//! Scheduling: ready tasks start, at most `jobs` at once; a failure
//! (non-zero exit, or timeout) skips every task that depends on it,
//! directly or not; tasks already running finish; independent tasks still
//! run. SIGINT, SIGTERM or SIGHUP stop every running task (SIGTERM to its
//! group, SIGKILL 2 s later) and start no other; the run exits 130.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::expr::{Piece, Ref};
use super::file::{self, Problem, Task};
use crate::clock::{now_ms, rfc3339};
use crate::mask::{MaskSet, MaskStyle};
use crate::sandbox::template::Template;
use crate::secret::SecretValue;
use crate::store::audit::Action;
use crate::store::{OpenMode, SecretName, Store, StoreError, VaultName};
use crate::supervisor::output::{Destination, LineSplitter, OutputSink, Stream};
use crate::supervisor::plan::{self, CallerEnv, RunIo, RunSpec, StoreAccess};
use crate::supervisor::sandboxes::SandboxHost;
use crate::supervisor::{self, Control, RunHandle};
use crate::sys::signal::{Signal, SignalWatch};

/// How long an interrupted task has between SIGTERM and SIGKILL.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// Exit codes of `shroud run`.
pub const EXIT_SUCCEEDED: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_REFUSED: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

/// What a run needs from its front door.
pub struct RunOptions {
    pub file: PathBuf,
    pub vault: VaultName,
    pub jobs: usize,
    pub mask: MaskStyle,
    pub json: bool,
    pub home: PathBuf,
    pub binary: PathBuf,
    pub caller_env: CallerEnv,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Succeeded,
    Failed(u8),
    TimedOut,
    Skipped,
    Cancelled,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed(_) => "failed",
            Status::TimedOut => "timed_out",
            Status::Skipped => "skipped",
            Status::Cancelled => "cancelled",
        }
    }

    fn code(self) -> Option<u8> {
        match self {
            Status::Succeeded => Some(0),
            Status::Failed(code) => Some(code),
            Status::TimedOut => Some(supervisor::EXIT_TIMEOUT),
            Status::Skipped | Status::Cancelled => None,
        }
    }
}

/// Where every task's lines go: one lock, whole lines.
#[derive(Clone)]
struct Console {
    json: bool,
    lock: Arc<Mutex<()>>,
}

impl Console {
    fn line(&self, task: &str, stream: Stream, bytes: &[u8]) {
        let _held = self.lock.lock().expect("console lock");
        if self.json {
            let line = serde_json::json!({
                "ts": rfc3339(now_ms()),
                "task": task,
                "stream": stream.name(),
                "data": String::from_utf8_lossy(bytes),
            });
            let _ = writeln!(std::io::stdout(), "{line}");
        } else {
            let mut text = Vec::with_capacity(bytes.len() + task.len() + 4);
            text.extend_from_slice(format!("[{task}] ").as_bytes());
            text.extend_from_slice(bytes);
            text.push(b'\n');
            let _ = match stream {
                Stream::Stdout => std::io::stdout().write_all(&text),
                Stream::Stderr => std::io::stderr().write_all(&text),
            };
        }
    }

    fn event(&self, value: serde_json::Value) {
        if self.json {
            let _held = self.lock.lock().expect("console lock");
            let _ = writeln!(std::io::stdout(), "{value}");
        }
    }
}

/// A line longer than this is printed in pieces this long.
const MAX_LINE: usize = 64 * 1024;

/// A task's output sink: complete lines to the console as they come.
struct TaskLines {
    key: String,
    console: Console,
    lines: LineSplitter,
}

impl OutputSink for TaskLines {
    fn write(&mut self, stream: Stream, bytes: &[u8]) {
        let (key, console) = (&self.key, &self.console);
        self.lines
            .push(stream, bytes, |line| console.line(key, stream, line));
    }

    fn finish(&mut self, stream: Stream) {
        let (key, console) = (&self.key, &self.console);
        self.lines
            .finish(stream, |line| console.line(key, stream, line));
    }
}

/// A refusal on stderr: `error:` lines (each problem, then `message`),
/// or with `--json` one object `{"error": message, "code": 2, "errors":
/// [{"error": problem}...]}`.
fn refuse(json: bool, message: &str, problems: &[String]) -> u8 {
    if json {
        let errors: Vec<_> = problems
            .iter()
            .map(|p| serde_json::json!({ "error": p }))
            .collect();
        let mut object = serde_json::json!({ "error": message, "code": EXIT_REFUSED });
        if !errors.is_empty() {
            object["errors"] = errors.into();
        }
        eprintln!("{object}");
    } else {
        for problem in problems {
            eprintln!("error: {problem}");
        }
        eprintln!("error: {message}");
    }
    EXIT_REFUSED
}

/// Reads, checks and runs a task file; answers the exit code. Refusals
/// (the file, its checks) are printed as `error:` lines, all of them (one
/// JSON object with `--json`).
pub fn run(options: RunOptions, open: &dyn Fn(OpenMode) -> Result<Store, StoreError>) -> u8 {
    let name = options.file.display().to_string();
    let json = options.json;
    let text = match read_file(&options.file) {
        Ok(text) => text,
        Err(message) => return refuse(json, &message, &[]),
    };
    let (tasks, mut problems) = file::parse(&text);
    let folder = options
        .file
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_owned();
    // The checks that need the store run whatever the file's own problems
    // were: every problem is reported at once. A home that does not exist
    // is an empty store (and is not made by a refused run).
    let mut store = match open(OpenMode::Existing) {
        Ok(store) => Some(store),
        Err(StoreError::NoHome(_)) => None,
        Err(e) => return refuse(json, &e.to_string(), &[]),
    };
    check_with_store(&tasks, &options, &folder, store.as_mut(), &mut problems);
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.pos);
        let rendered: Vec<String> = problems.iter().map(|p| p.render(&name)).collect();
        return refuse(
            json,
            &format!(
                "{} problem{} in {name}; no task was started",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ),
            &rendered,
        );
    }
    remove_orphaned_sandboxes(&options.home);
    let mut store = match store {
        Some(store) => store,
        // No home and nothing that needs one so far: made now, for the
        // audit records and the sandboxes of the run.
        None => match open(OpenMode::Create) {
            Ok(store) => store,
            Err(e) => return refuse(json, &e.to_string(), &[]),
        },
    };
    let values = match read_values(&tasks, &options, &mut store) {
        Ok(values) => values,
        Err(e) => return refuse(json, &e.to_string(), &[]),
    };
    schedule(tasks, values, &options, &folder, &mut store)
}

fn read_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{shown}: no such file"),
        _ => format!("{shown}: cannot read it: {e}"),
    })?;
    if meta.is_dir() {
        return Err(format!("{shown} is a directory, not a task file"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{shown}: cannot read it: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("{shown}: not UTF-8 text"))
}

/// The checks that need the store and the home: every secret and var named
/// exists (and has not expired), every template exists, every `cwd` is a
/// directory.
fn check_with_store(
    tasks: &[Task],
    options: &RunOptions,
    folder: &Path,
    mut store: Option<&mut Store>,
    problems: &mut Vec<Problem>,
) {
    let default_vault = options.vault.as_str();
    let mut known: HashMap<Ref, Option<String>> = HashMap::new();
    for task in tasks {
        for (reference, field, pos) in task.refs() {
            let reference = reference.in_vault(default_vault);
            let verdict = known.entry(reference.clone()).or_insert_with(|| {
                let vault = reference.vault(default_vault);
                let Ok(vault_name) = VaultName::parse(vault) else {
                    return Some(format!("invalid vault `{vault}`"));
                };
                let Ok(name) = SecretName::parse(reference.name()) else {
                    return Some(format!("invalid name `{}`", reference.name()));
                };
                let found = match store.as_deref_mut() {
                    None => Ok(false),
                    Some(store) if reference.is_secret() => {
                        store.secret_meta(&vault_name, &name).map(|m| m.is_some())
                    }
                    Some(store) => match store.get_var(&vault_name, &name) {
                        Ok(_) => Ok(true),
                        Err(e) if e.is_not_found() => Ok(false),
                        Err(e) => Err(e),
                    },
                };
                match found {
                    Ok(true) => None,
                    Ok(false) => Some(format!(
                        "{} `{}` not found in vault `{vault}` (or it has expired)",
                        if reference.is_secret() {
                            "secret"
                        } else {
                            "var"
                        },
                        reference.name()
                    )),
                    Err(e) => Some(e.to_string()),
                }
            });
            if let Some(message) = verdict.clone() {
                problems.push(Problem {
                    pos,
                    task: Some(task.key.clone()),
                    field: Some(field),
                    message,
                });
            }
        }
        if let Some((template, pos)) = &task.template {
            if let Err(e) = Template::load(template, &options.home) {
                problems.push(Problem {
                    pos: *pos,
                    task: Some(task.key.clone()),
                    field: Some("template".to_owned()),
                    message: e.to_string(),
                });
            }
        }
        if let Some((cwd, pos)) = &task.cwd {
            if let Err(message) = task_dir(folder, Some(cwd), &options.home) {
                problems.push(Problem {
                    pos: *pos,
                    task: Some(task.key.clone()),
                    field: Some("cwd".to_owned()),
                    message,
                });
            }
        }
    }
}

/// The directory a task runs in (and a template task's sandbox is seeded
/// from): the file's folder, or `cwd` beneath it. Resolved with its links,
/// it must stay beneath the folder (no `..`, no absolute path, no link out:
/// a sandbox must not be seeded with `/root` or `/home`), and it is never
/// the shroud home or inside it.
fn task_dir(folder: &Path, cwd: Option<&str>, home: &Path) -> Result<PathBuf, String> {
    let base = folder
        .canonicalize()
        .map_err(|e| format!("the file's folder {}: {e}", folder.display()))?;
    let dir = match cwd {
        None => base.clone(),
        Some(cwd) => {
            let joined = base.join(cwd);
            let resolved = joined
                .canonicalize()
                .map_err(|_| format!("`{cwd}` is not a directory under the file's folder"))?;
            if !resolved.starts_with(&base) || !resolved.is_dir() {
                return Err(format!(
                    "`{cwd}` is not a directory under the file's folder"
                ));
            }
            resolved
        }
    };
    if let Ok(home) = home.canonicalize() {
        if dir.starts_with(&home) {
            return Err(format!(
                "{} is inside the shroud home; tasks do not run there",
                dir.display()
            ));
        }
    }
    Ok(dir)
}

/// Every value the file names: secrets read once each, in one audited
/// transaction per vault; vars; and the run's mask set of the secrets.
struct Values {
    secrets: HashMap<Ref, SecretValue>,
    vars: HashMap<Ref, String>,
    mask: Arc<MaskSet>,
    /// What `secrets.N` and `vars.N` mean.
    default_vault: String,
}

fn read_values(
    tasks: &[Task],
    options: &RunOptions,
    store: &mut Store,
) -> Result<Values, StoreError> {
    let default_vault = options.vault.as_str();
    let refs: BTreeSet<Ref> = tasks
        .iter()
        .flat_map(|t| {
            t.refs()
                .into_iter()
                .map(|(r, _, _)| r.in_vault(default_vault))
        })
        .collect();
    let mut by_vault: BTreeMap<String, Vec<Ref>> = BTreeMap::new();
    let mut vars = HashMap::new();
    for reference in refs {
        let vault = reference.vault(default_vault).to_owned();
        if reference.is_secret() {
            by_vault.entry(vault).or_default().push(reference);
        } else {
            let value = store.get_var(
                &VaultName::parse(&vault)?,
                &SecretName::parse(reference.name())?,
            )?;
            vars.insert(reference, value.value);
        }
    }
    let mut secrets = HashMap::new();
    let mut builder = MaskSet::builder(options.mask);
    for (vault, refs) in by_vault {
        let names = refs
            .iter()
            .map(|r| SecretName::parse(r.name()))
            .collect::<Result<Vec<_>, _>>()?;
        let values =
            store.read_secrets(Action::SecretInject, &VaultName::parse(&vault)?, &names)?;
        for (reference, revealed) in refs.into_iter().zip(values) {
            let label = if vault == default_vault {
                reference.name().to_owned()
            } else {
                format!("{vault}.{}", reference.name())
            };
            if !builder.add(&label, &revealed.value) {
                eprintln!(
                    "warning: secret `{}` is shorter than {} bytes and is not masked",
                    reference.name(),
                    crate::store::names::MIN_MASKABLE_BYTES
                );
            }
            secrets.insert(reference, revealed.value);
        }
    }
    Ok(Values {
        secrets,
        vars,
        mask: builder.build(),
        default_vault: default_vault.to_owned(),
    })
}

/// The text of `pieces` with every expression's value (zeroizing: it may
/// hold secrets).
fn render(pieces: &[Piece], values: &Values) -> SecretValue {
    let mut bytes = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => bytes.extend_from_slice(text.as_bytes()),
            Piece::Expr(reference) => match values
                .secrets
                .get(&reference.in_vault(&values.default_vault))
            {
                Some(secret) => bytes.extend_from_slice(secret.expose()),
                None => bytes.extend_from_slice(
                    values
                        .vars
                        .get(&reference.in_vault(&values.default_vault))
                        .map_or("", String::as_str)
                        .as_bytes(),
                ),
            },
        }
    }
    let value = SecretValue::from_slice(&bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    value
}

/// The script of `pieces` with each expression replaced by a variable
/// reference (`${SHROUD_SECRET_1}`, `${SHROUD_VAR_1}`: one per distinct
/// expression), and those variables: (name, value, is it a secret).
fn script_with_variables(
    pieces: &[Piece],
    values: &Values,
) -> (SecretValue, Vec<(String, SecretValue, bool)>) {
    let mut script = String::new();
    let mut names: HashMap<Ref, String> = HashMap::new();
    let mut env = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => script.push_str(text),
            Piece::Expr(reference) => {
                let reference = reference.in_vault(&values.default_vault);
                let name = names.entry(reference.clone()).or_insert_with(|| {
                    let kind = if reference.is_secret() {
                        "SECRET"
                    } else {
                        "VAR"
                    };
                    let name = format!("SHROUD_{kind}_{}", env.len() + 1);
                    let value = render(&[Piece::Expr(reference.clone())], values);
                    env.push((name.clone(), value, reference.is_secret()));
                    name
                });
                script.push_str(&format!("${{{name}}}"));
            }
        }
    }
    (SecretValue::new(script.into_bytes()), env)
}

/// The shell a script runs with: bash, or sh where there is none.
fn shell(caller_env: &CallerEnv) -> &'static str {
    let path = caller_env.get("PATH");
    if crate::sys::proc::find_program("bash".as_ref(), path.as_deref()).is_some() {
        "bash"
    } else {
        "sh"
    }
}

/// A task's sandbox, made for the run and removed after.
struct TaskSandbox {
    dir: PathBuf,
}

impl Drop for TaskSandbox {
    fn drop(&mut self) {
        remove_task_sandbox(&self.dir);
    }
}

/// Removes a task's sandbox: its disk, its files, its owner file.
fn remove_task_sandbox(dir: &Path) {
    let _ = crate::sandbox::disk::remove(dir);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(owner_file(dir));
}

/// `<id>.owner` beside a task's sandbox: the pid of the run that made it.
fn owner_file(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".owner");
    PathBuf::from(name)
}

/// Removes the task sandboxes of runs that died without cleaning up (a
/// `shroud run` killed with SIGKILL): their disks stay mounted otherwise,
/// with whatever the tasks wrote there.
fn remove_orphaned_sandboxes(home: &Path) {
    let Ok(entries) = std::fs::read_dir(home.join("task-sandboxes")) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path
            .extension()
            .is_some_and(|e| e == "owner" || e == "disk")
        {
            continue;
        }
        let owner = std::fs::read_to_string(owner_file(&path))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        let alive = owner.is_some_and(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == b"run"))
        });
        if !alive {
            remove_task_sandbox(&path);
        }
    }
}

struct Started {
    handle: RunHandle,
    _sandbox: Option<TaskSandbox>,
}

struct Finished {
    index: usize,
    status: Status,
    duration: Duration,
}

fn schedule(
    tasks: Vec<Task>,
    values: Values,
    options: &RunOptions,
    folder: &Path,
    store: &mut Store,
) -> u8 {
    let console = Console {
        json: options.json,
        lock: Arc::new(Mutex::new(())),
    };
    let index: HashMap<String, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.key.clone(), i))
        .collect();
    let mut status: Vec<Option<Status>> = vec![None; tasks.len()];
    let mut durations = vec![Duration::ZERO; tasks.len()];
    let mut running: HashMap<usize, Started> = HashMap::new();
    let (done_tx, done_rx) = mpsc::channel::<Finished>();
    let signals = SignalWatch::install().ok();
    let mut interrupted = false;
    let run_started = Instant::now();
    loop {
        // Skip what depends on a failure, start what is ready.
        if !interrupted {
            loop {
                let mut changed = false;
                for (i, task) in tasks.iter().enumerate() {
                    if status[i].is_some() || running.contains_key(&i) {
                        continue;
                    }
                    let deps: Vec<Option<Status>> =
                        task.uses.iter().map(|u| status[index[u]]).collect();
                    if deps
                        .iter()
                        .any(|d| matches!(d, Some(s) if *s != Status::Succeeded))
                    {
                        status[i] = Some(Status::Skipped);
                        console.event(serde_json::json!({
                            "ts": rfc3339(now_ms()), "task": task.key, "event": "end",
                            "status": "skipped", "code": null, "duration_ms": 0,
                        }));
                        changed = true;
                    }
                }
                if !changed {
                    break;
                }
            }
            for (i, task) in tasks.iter().enumerate() {
                if running.len() >= options.jobs.max(1) {
                    break;
                }
                if status[i].is_some() || running.contains_key(&i) {
                    continue;
                }
                let ready = task
                    .uses
                    .iter()
                    .all(|u| status[index[u]] == Some(Status::Succeeded));
                if !ready {
                    continue;
                }
                console.event(serde_json::json!({
                    "ts": rfc3339(now_ms()), "task": task.key, "event": "start",
                }));
                match start_task(i, task, &values, options, folder, store, &console, &done_tx) {
                    Ok(started) => {
                        running.insert(i, started);
                    }
                    Err(message) => {
                        console.line(
                            &task.key,
                            Stream::Stderr,
                            format!("error: {message}").as_bytes(),
                        );
                        status[i] = Some(Status::Failed(125));
                        console.event(serde_json::json!({
                            "ts": rfc3339(now_ms()), "task": task.key, "event": "end",
                            "status": "failed", "code": 125, "duration_ms": 0,
                        }));
                    }
                }
            }
        }
        if running.is_empty() {
            let all_decided = status.iter().all(Option::is_some);
            if all_decided || interrupted {
                break;
            }
            // Nothing runs and nothing can start: what is left waits on
            // tasks that will never succeed (cannot happen after the
            // checks, but never wait forever).
            for s in status.iter_mut().filter(|s| s.is_none()) {
                *s = Some(Status::Skipped);
            }
            break;
        }
        match done_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(finished) => {
                running.remove(&finished.index);
                status[finished.index] = Some(finished.status);
                durations[finished.index] = finished.duration;
                console.event(serde_json::json!({
                    "ts": rfc3339(now_ms()),
                    "task": tasks[finished.index].key,
                    "event": "end",
                    "status": finished.status.name(),
                    "code": finished.status.code(),
                    "duration_ms": finished.duration.as_millis() as u64,
                }));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let stop = signals.as_ref().is_some_and(|s| {
            s.take()
                .iter()
                .any(|sig| [Signal::INTERRUPT, Signal::TERMINATE, Signal::HANGUP].contains(sig))
        });
        if stop && !interrupted {
            interrupted = true;
            for started in running.values() {
                started.handle.stop(INTERRUPT_GRACE);
            }
        }
    }
    if interrupted {
        for (i, s) in status.iter_mut().enumerate() {
            match s {
                None => *s = Some(Status::Skipped),
                Some(Status::Failed(_)) | Some(Status::TimedOut) if running.contains_key(&i) => {}
                _ => {}
            }
        }
    }
    summary(
        &tasks,
        &status,
        &durations,
        &console,
        interrupted,
        run_started.elapsed(),
    )
}

#[expect(
    clippy::too_many_arguments,
    reason = "one task's start needs the run's values, options, store, console and channel"
)]
fn start_task(
    i: usize,
    task: &Task,
    values: &Values,
    options: &RunOptions,
    folder: &Path,
    store: &mut Store,
    console: &Console,
    done: &mpsc::Sender<Finished>,
) -> Result<Started, String> {
    // Expressions in the script become variables of the task: the shell
    // expands `${SHROUD_SECRET_1}` to exactly the value, where pasting the
    // value into the script would have made it shell code (`$`, `&`, a
    // quote in a password: run as commands, and no longer masked).
    let (script, script_env) = script_with_variables(&task.run, values);
    let (read_end, write_end) = crate::sys::fd::pipe().map_err(|e| e.to_string())?;
    let shell = shell(&options.caller_env);
    let command: Vec<OsString> = vec![shell.into(), "-e".into(), "/proc/self/fd/3".into()];
    let mut spec = RunSpec::new(command, options.caller_env.clone(), options.vault.clone());
    let mut extra_env = Vec::new();
    let mut secret_env = Vec::new();
    for (name, pieces, _) in &task.env {
        let holds_secret = pieces
            .iter()
            .any(|p| matches!(p, Piece::Expr(r) if r.is_secret()));
        let value = render(pieces, values);
        if holds_secret {
            secret_env.push((name.clone(), value));
        } else {
            extra_env.push((
                name.clone(),
                String::from_utf8_lossy(value.expose()).into_owned(),
            ));
        }
    }
    let mut sandbox = None;
    let work_from = task_dir(
        folder,
        task.cwd.as_ref().map(|(c, _)| c.as_str()),
        &options.home,
    )?;
    match &task.template {
        None => {
            spec.cwd = Some(work_from.clone());
        }
        Some((template, _)) => {
            let template = Template::load(template, &options.home).map_err(|e| e.to_string())?;
            let host = SandboxHost {
                home: options.home.clone(),
                binary: options.binary.clone(),
            };
            let id = uuid::Uuid::new_v4();
            let dir = options.home.join("task-sandboxes").join(id.to_string());
            crate::store::home::create_private_dir(&options.home.join("task-sandboxes"))
                .map_err(|e| e.to_string())?;
            std::fs::write(owner_file(&dir), format!("{}\n", std::process::id()))
                .map_err(|e| e.to_string())?;
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let made = TaskSandbox { dir: dir.clone() };
            let (mut policy, _) = host
                .provision(
                    store,
                    &template,
                    &dir,
                    false,
                    &options.caller_env,
                    id.as_bytes(),
                )
                .map_err(|e| e.to_string())?;
            let seed = work_from.clone();
            crate::supervisor::deploy::copy_tree_except(
                &seed,
                &policy.workdir,
                policy.run_as,
                Some(&options.home),
            )
            .map_err(|e| format!("cannot seed the sandbox from {}: {e}", seed.display()))?;
            policy.hide = host.hidden_dirs(&options.caller_env);
            extra_env.insert(
                0,
                (
                    "HOME".to_owned(),
                    policy
                        .home_dir
                        .as_ref()
                        .map(|h| h.display().to_string())
                        .unwrap_or_default(),
                ),
            );
            // The shell reopens the script's pipe through /proc/self/fd/3,
            // as the sandbox's uid: the pipe is given to it.
            if let Some((uid, gid)) = policy.run_as {
                crate::sys::fd::chown_fd(std::os::fd::AsFd::as_fd(&read_end), uid, gid)
                    .map_err(|e| e.to_string())?;
            }
            spec.env_policy = template.env.clone();
            spec.sandbox = Some(policy);
            sandbox = Some(made);
        }
    }
    for (name, value, secret) in script_env {
        if secret {
            secret_env.push((name, value));
        } else {
            extra_env.push((name, String::from_utf8_lossy(value.expose()).into_owned()));
        }
    }
    spec.extra_env = extra_env;
    spec.secret_env = secret_env;
    spec.mask = options.mask;
    spec.mask_set = Some(Arc::clone(&values.mask));
    spec.timeout = task.timeout;
    spec.pass_fds = vec![read_end];
    // A task never outlives its run, even if shroud is killed with SIGKILL.
    spec.die_with_caller = true;
    let (handle, requests) = supervisor::run_handle().map_err(|e| e.to_string())?;
    let sink = TaskLines {
        key: task.key.clone(),
        console: console.clone(),
        lines: LineSplitter::new(MAX_LINE),
    };
    let mut io = RunIo::detached(
        Destination::Sink(Box::new(sink)),
        Control::Detached(Vec::new()),
    );
    io.requests = Some(requests);
    let no_store = || -> Result<Store, StoreError> {
        unreachable!("a task has no grants: every secret was read before the run")
    };
    let prepared = plan::prepare(StoreAccess::Lazy(&no_store), &options.binary, spec, io)
        .map_err(|e| e.to_string())?;
    // The script, through the pipe, from a thread of its own (the shell may
    // read it slowly); closed once written.
    std::thread::spawn(move || {
        let mut pipe = std::fs::File::from(write_end);
        let _ = pipe.write_all(script.expose());
    });
    let done = done.clone();
    let key = task.key.clone();
    std::thread::Builder::new()
        .name(format!("shroud-task-{key}"))
        .spawn(move || {
            let started = Instant::now();
            let status = match supervisor::run(prepared.plan) {
                Ok(report) if report.timed_out => Status::TimedOut,
                Ok(report) if report.stopped || report.cancelled => Status::Cancelled,
                Ok(report) if report.code == 0 => Status::Succeeded,
                Ok(report) => Status::Failed(report.code),
                Err(e) => Status::Failed(e.exit_code()),
            };
            let _ = done.send(Finished {
                index: i,
                status,
                duration: started.elapsed(),
            });
        })
        .map_err(|e| e.to_string())?;
    Ok(Started {
        handle,
        _sandbox: sandbox,
    })
}

fn summary(
    tasks: &[Task],
    status: &[Option<Status>],
    durations: &[Duration],
    console: &Console,
    interrupted: bool,
    elapsed: Duration,
) -> u8 {
    let all_ok = status.iter().all(|s| *s == Some(Status::Succeeded));
    let code = if interrupted {
        EXIT_INTERRUPTED
    } else if all_ok {
        EXIT_SUCCEEDED
    } else {
        EXIT_FAILED
    };
    let overall = match code {
        EXIT_SUCCEEDED => "succeeded",
        EXIT_INTERRUPTED => "interrupted",
        _ => "failed",
    };
    if console.json {
        let items: Vec<_> = tasks
            .iter()
            .zip(status)
            .zip(durations)
            .map(|((task, s), d)| {
                let s = s.unwrap_or(Status::Skipped);
                serde_json::json!({
                    "task": task.key,
                    "status": s.name(),
                    "code": s.code(),
                    "duration_ms": d.as_millis() as u64,
                })
            })
            .collect();
        console.event(serde_json::json!({
            "ts": rfc3339(now_ms()),
            "event": "summary",
            "status": overall,
            "duration_ms": elapsed.as_millis() as u64,
            "tasks": items,
        }));
        return code;
    }
    let width = tasks.iter().map(|t| t.key.len()).max().unwrap_or(4).max(4);
    let _held = console.lock.lock().expect("console lock");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "summary: {overall} in {:.2} s", elapsed.as_secs_f64());
    for ((task, s), d) in tasks.iter().zip(status).zip(durations) {
        let s = s.unwrap_or(Status::Skipped);
        let what = match s {
            Status::Failed(code) => format!("failed (exit {code})"),
            Status::TimedOut => "timed out".to_owned(),
            other => other.name().to_owned(),
        };
        let duration = match s {
            Status::Skipped => "-".to_owned(),
            _ => format!("{:.2} s", d.as_secs_f64()),
        };
        let _ = writeln!(out, "  {:<width$}  {:<18} {duration}", task.key, what);
    }
    code
}
