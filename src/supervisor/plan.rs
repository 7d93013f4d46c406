//! What a run is made of, before anything starts: which secrets it is granted
//! under which variable names, its environment, and the mask set of those
//! secrets.
//!
//! Every front door (`exec`, `sandbox exec`, the sandbox routes of the API,
//! deployments and agent runs) describes its run as a [`RunSpec`] (what:
//! program, arguments, the caller's environment, extra variables, grants,
//! an optional sandbox policy) and a [`RunIo`] (how: stdio, input, where the
//! output goes, who drives the run), and [`prepare`] turns the two into the
//! [`super::ExecPlan`] the run loop executes. The secrets are decrypted in
//! one audited transaction (`secret.inject`), and a missing or expired one
//! fails the whole run before any process exists. The caller's environment
//! is passed in by the front door ([`CallerEnv`]); nothing here reads the
//! environment of the process it happens to run in.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::output::{Destination, OutputMode};
use super::spawn::{self, ChildEnv, ChildSpec, EnvValue, StdioMode};
use super::{ChildStart, Control, ExecPlan, RunRequests, StartedHook};
use crate::mask::{MaskSet, MaskStyle};
use crate::sandbox::apply::SandboxPolicy;
use crate::sandbox::template::EnvPolicy;
use crate::secret::SecretValue;
use crate::store::audit::Action;
use crate::store::names::{check_env_name, ValidationError};
use crate::store::{SecretName, Store, StoreError, VaultName};

/// Why a run could not be prepared. Messages name secrets, never values.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Bad input from the caller (a flag, a field, a sandbox id).
    #[error("{0}")]
    Usage(String),
    /// Something the request names does not exist (a template).
    #[error("{0}")]
    Missing(String),
    /// The request is well formed but cannot be met here (a strict
    /// sandbox on a host that lacks a feature).
    #[error("{0}")]
    Refused(String),
    /// A sandbox's files are on the node that made it; this is another.
    #[error(
        "sandbox {id} lives on node `{node}` (this is `{here}`): send the request to that node"
    )]
    OnAnotherNode {
        id: String,
        node: String,
        here: String,
    },
    #[error("cannot {context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// One granted secret: which secret, under which variable name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretGrant {
    pub env: String,
    pub secret: SecretName,
}

impl SecretGrant {
    /// The `ENV=NAME` text this grant parses from.
    pub fn text(&self) -> String {
        format!("{}={}", self.env, self.secret)
    }

    /// Parses `NAME` (injected as `$NAME`) or `ENV=NAME`.
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let (env, name) = match text.split_once('=') {
            Some((env, name)) => (env, name),
            None => (text, text),
        };
        let secret = SecretName::parse(name)?;
        check_env_name(env).map_err(|e| {
            if env == name {
                PlanError::Usage(format!(
                    "secret `{name}` cannot be an environment variable name ({e}); grant it as ENV={name}"
                ))
            } else {
                PlanError::Invalid(e)
            }
        })?;
        Ok(SecretGrant {
            env: env.to_owned(),
            secret,
        })
    }
}

/// Parses a list of grants.
pub fn parse_grants<S: AsRef<str>>(texts: &[S]) -> Result<Vec<SecretGrant>, PlanError> {
    texts
        .iter()
        .map(|g| SecretGrant::parse(g.as_ref()))
        .collect()
}

/// `--all`: a grant of every secret of `vault` under its own name, after
/// the `explicit` ones (a secret they already grant, under any name, is
/// not granted again: `--secret A_B=a.b --all` works). A name that is not a variable name is an error
/// before anything starts.
pub fn grants_with_all(
    store: &mut crate::store::Store,
    vault: &crate::store::VaultName,
    mut explicit: Vec<SecretGrant>,
) -> Result<Vec<SecretGrant>, PlanError> {
    let granted: std::collections::HashSet<String> = explicit
        .iter()
        .flat_map(|g| [g.env.clone(), g.secret.as_str().to_owned()])
        .collect();
    for name in store.list_secret_names(vault)? {
        if granted.contains(&name) {
            continue;
        }
        let grant = SecretGrant::parse(&name).map_err(|e| match e {
            PlanError::Usage(why) => PlanError::Usage(format!("--all: {why}")),
            other => other,
        })?;
        explicit.push(grant);
    }
    Ok(explicit)
}

/// Checks one extra environment variable (its name, and no NUL in its value).
pub fn check_env_pair(name: &str, value: &str) -> Result<(), PlanError> {
    check_env_name(name)?;
    if value.contains('\0') {
        return Err(PlanError::Usage(format!(
            "environment variable {name}: the value contains a NUL byte"
        )));
    }
    Ok(())
}

impl PlanError {
    /// A template that cannot be loaded: missing, or bad.
    pub fn template(e: crate::sandbox::template::TemplateError) -> Self {
        match e {
            e @ crate::sandbox::template::TemplateError::NotFound { .. } => {
                PlanError::Missing(e.to_string())
            }
            e => PlanError::Usage(e.to_string()),
        }
    }
}

/// How [`build_environment`] gets at the vault.
pub enum StoreAccess<'a> {
    /// Opened only when there are secrets to read (a run without grants
    /// never touches the database).
    Lazy(&'a dyn Fn() -> Result<Store, StoreError>),
    /// A store the caller already holds.
    Open(&'a mut Store),
}

/// A run's environment and the mask set of the secrets in it.
struct PreparedEnv {
    env: ChildEnv,
    mask: Arc<MaskSet>,
    /// Granted secrets too short to be masked (the caller warns about them).
    unmasked: Vec<SecretName>,
    versions: Vec<(SecretName, u64)>,
}

/// The environment of whoever asked for a run: the shell of a CLI command,
/// or the server for its API callers. The template's pass-through names
/// (PATH, HOME, LANG, TERM) are read from it; nothing else of it reaches a
/// child.
#[derive(Clone, Default)]
pub struct CallerEnv(Vec<(OsString, OsString)>);

impl std::fmt::Debug for CallerEnv {
    /// Names only: a caller's environment may hold anything.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| n))
            .finish()
    }
}

impl CallerEnv {
    /// The environment of this process, taken by a front door that runs
    /// for the person who started it (the CLI, or `serve` at its start).
    pub fn of_this_process() -> Self {
        CallerEnv(std::env::vars_os().collect())
    }

    /// These variables only.
    pub fn from_pairs(pairs: Vec<(OsString, OsString)>) -> Self {
        CallerEnv(pairs)
    }

    pub fn get(&self, name: &str) -> Option<OsString> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// What a run is: the program, its environment's layers, its grants, and
/// (for a sandboxed run) the sandbox policy its init applies.
#[derive(Debug)]
pub struct RunSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Working directory (without a sandbox; a sandbox runs in its own).
    pub cwd: Option<PathBuf>,
    pub caller_env: CallerEnv,
    pub env_policy: EnvPolicy,
    /// Variables after the template's, before the secrets.
    pub extra_env: Vec<(String, String)>,
    pub vault: VaultName,
    pub grants: Vec<SecretGrant>,
    pub mask: MaskStyle,
    /// Run through `shroud __sandbox-init` under this policy.
    pub sandbox: Option<SandboxPolicy>,
    pub timeout: Option<Duration>,
    pub output_limit: Option<u64>,
    /// Handed to the program as fds 3, 4, ... (listening sockets).
    pub pass_fds: Vec<OwnedFd>,
    /// Variables whose values hold secrets already read by the front door
    /// (a task's `Bearer ${{ secrets.T }}`), set after `extra_env`.
    pub secret_env: Vec<(String, SecretValue)>,
    /// The mask set to use instead of one built from `grants` (a front door
    /// that read every secret itself: every task of a run shares one).
    pub mask_set: Option<Arc<MaskSet>>,
    /// Secrets masked beside the grants but not given to the program (a
    /// sandbox's: every secret any of its commands was given, whose value
    /// may sit in its files or in a background command's output); read
    /// with `secret.mask` records, those still there.
    pub mask_also: Vec<SecretName>,
    /// The program dies with the thread that starts it (a sandboxed run
    /// always does, through its init).
    pub die_with_caller: bool,
}

impl RunSpec {
    /// A run of `command` with nothing granted and the plain template.
    pub fn new(command: Vec<OsString>, caller_env: CallerEnv, vault: VaultName) -> Self {
        let mut command = command.into_iter();
        RunSpec {
            program: command.next().unwrap_or_default(),
            args: command.collect(),
            cwd: None,
            caller_env,
            env_policy: EnvPolicy::default(),
            extra_env: Vec::new(),
            vault,
            grants: Vec::new(),
            mask: MaskStyle::Label,
            sandbox: None,
            timeout: None,
            output_limit: None,
            pass_fds: Vec::new(),
            secret_env: Vec::new(),
            mask_set: None,
            mask_also: Vec::new(),
            die_with_caller: false,
        }
    }
}

/// How a run talks to the world: its stdio, where its masked output goes,
/// and what it answers to.
#[derive(Debug)]
pub struct RunIo {
    pub stdio: StdioMode,
    /// With [`StdioMode::GivenInput`]: the program's stdin.
    pub input: Option<SecretValue>,
    pub output: OutputMode,
    pub destination: Destination,
    pub control: Control,
    pub requests: Option<RunRequests>,
    pub on_started: Option<StartedHook>,
    /// The thread that prepares the run also runs it (a CLI command): a
    /// sandbox init may start before the secrets are read, and get them
    /// once their `secret.inject` records are committed. Not for a run
    /// handed to another thread: the init dies with the thread that
    /// started it (`PR_SET_PDEATHSIG`).
    pub start_early: bool,
    /// With `start_early`: an init already started on a guess, run if it
    /// is the right one (see [`GuessedInit`]).
    pub guessed_init: Option<GuessedInit>,
}

impl RunIo {
    /// A run inside the server: given input, output to `destination`,
    /// watched through `control`.
    pub fn detached(destination: Destination, control: Control) -> Self {
        RunIo {
            stdio: StdioMode::GivenInput,
            input: None,
            output: OutputMode::Streams,
            destination,
            control,
            requests: None,
            on_started: None,
            start_early: false,
            guessed_init: None,
        }
    }
}

/// A run ready to start, and what its front door reports.
#[derive(Debug)]
pub struct PreparedRun {
    pub plan: ExecPlan,
    /// Granted secrets too short to be masked.
    pub unmasked: Vec<SecretName>,
    /// The version of each granted secret the run got.
    pub versions: Vec<(SecretName, u64)>,
}

/// The one prepare path: reads every granted secret in one audited
/// transaction, builds the environment and the mask set, and wraps a
/// sandboxed run in `binary __sandbox-init`.
pub fn prepare(
    store: StoreAccess<'_>,
    binary: &Path,
    spec: RunSpec,
    io: RunIo,
) -> Result<PreparedRun, PlanError> {
    if spec.program.is_empty() {
        return Err(PlanError::Usage("no command to run".to_owned()));
    }
    let (program, args, env_through_pipe, new_session) = match spec.sandbox {
        None => (spec.program, spec.args, false, false),
        Some(policy) => {
            let (init, init_args) =
                init_command_line(binary, policy, spec.pass_fds.len(), spec.program, spec.args);
            (init, init_args, true, true)
        }
    };
    let child = ChildSpec {
        program,
        args,
        env: ChildEnv::default(),
        cwd: spec.cwd,
        stdio: io.stdio,
        env_through_pipe,
        input: io.input,
        new_session,
        pass_fds: spec.pass_fds,
        die_with_parent: spec.die_with_caller,
    };
    // A sandbox init sets the sandbox up while the secrets are read and
    // their injection is committed; its command waits for them. (Dropped
    // on an error below: the init is killed, its command never starts.)
    let child = if io.start_early && env_through_pipe {
        let stdio = child.stdio;
        let mut guess = io.guessed_init.filter(|guess| guess.is_for(&child));
        let usable = guess.as_mut().is_some_and(GuessedInit::is_waiting);
        let started = match guess {
            Some(guess) if usable => {
                tracing::debug!("the sandbox init started on the cached policy is the one to run");
                guess.started
            }
            // No guess, or one that was wrong or is gone (it met a state
            // `prepare_exec` has mended since, a home not yet made): it is
            // killed (dropped) before the init that is right starts.
            no_use => {
                drop(no_use);
                spawn::spawn_awaiting_env(child)
            }
        };
        Err((stdio, started))
    } else {
        Ok(child)
    };
    let mut prepared = build_environment(
        store,
        &spec.caller_env,
        &spec.env_policy,
        &spec.extra_env,
        VaultSecrets {
            vault: &spec.vault,
            grants: &spec.grants,
            mask_also: &spec.mask_also,
        },
        spec.mask,
    )?;
    for (name, value) in spec.secret_env {
        prepared.env.set(&name, EnvValue::Secret(value));
    }
    if let Some(set) = spec.mask_set {
        prepared.mask = set;
    }
    let child = match child {
        Err((stdio, started)) => ChildStart::Started {
            stdio,
            started,
            env: prepared.env,
        },
        Ok(mut child) => {
            child.env = prepared.env;
            ChildStart::Spec(child)
        }
    };
    Ok(PreparedRun {
        plan: ExecPlan {
            child,
            mask: prepared.mask,
            output: io.output,
            destination: io.destination,
            control: io.control,
            timeout: spec.timeout,
            output_limit: spec.output_limit,
            requests: io.requests,
            on_started: io.on_started,
        },
        unmasked: prepared.unmasked,
        versions: prepared.versions,
    })
}

/// The sandbox init's command line for `policy` (which dies with this
/// process and is passed `passed_fds` descriptors) running `program`.
fn init_command_line(
    binary: &Path,
    mut policy: SandboxPolicy,
    passed_fds: usize,
    program: OsString,
    args: Vec<OsString>,
) -> (OsString, Vec<OsString>) {
    policy.die_with = Some(std::process::id());
    policy.passed_fds = passed_fds as u32;
    let (init, mut init_args) = crate::sandbox::apply::init_program(binary);
    init_args.extend([
        "--policy".into(),
        serde_json::to_string(&policy)
            .expect("policy serializes")
            .into(),
        "--".into(),
        program,
    ]);
    init_args.extend(args);
    (init.into_os_string(), init_args)
}

/// A sandbox init started on a guess of its policy (the one the sandbox's
/// previous command ran under, see `SandboxHost::start_on_cached_policy`),
/// before the store is open; it waits for its environment like any early
/// init. [`prepare`] runs it only if the policy it then builds from the
/// store gives exactly the same command line, and kills it otherwise
/// (dropped, it takes its init down), so what runs never depends on the
/// guess.
#[derive(Debug)]
pub struct GuessedInit {
    start: InitStart,
    started: Result<(spawn::Spawned, spawn::EnvSender), spawn::SpawnError>,
}

/// What of a child's start tells one sandbox init from another (all of a
/// [`ChildSpec`] but its environment, which is sent later).
#[derive(Debug, PartialEq)]
struct InitStart {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    stdio: StdioMode,
    given_input: bool,
    new_session: bool,
    passed_fds: usize,
    die_with_parent: bool,
}

impl InitStart {
    fn of(child: &ChildSpec) -> Self {
        InitStart {
            program: child.program.clone(),
            args: child.args.clone(),
            cwd: child.cwd.clone(),
            stdio: child.stdio,
            given_input: child.input.is_some(),
            new_session: child.new_session,
            passed_fds: child.pass_fds.len(),
            die_with_parent: child.die_with_parent,
        }
    }
}

impl GuessedInit {
    /// Starts the init of `policy` running `command`, with `stdio`, as
    /// [`prepare`] would for a CLI exec (no descriptors passed, no input,
    /// its own session).
    pub fn start(
        binary: &Path,
        policy: SandboxPolicy,
        command: Vec<OsString>,
        stdio: StdioMode,
    ) -> Option<Self> {
        let mut command = command.into_iter();
        let program = command.next()?;
        let (program, args) = init_command_line(binary, policy, 0, program, command.collect());
        let child = ChildSpec {
            program,
            args,
            env: ChildEnv::default(),
            cwd: None,
            stdio,
            env_through_pipe: true,
            input: None,
            new_session: true,
            pass_fds: Vec::new(),
            die_with_parent: false,
        };
        Some(GuessedInit {
            start: InitStart::of(&child),
            started: spawn::spawn_awaiting_env(child),
        })
    }

    /// Whether the init started and is still alive, waiting.
    fn is_waiting(&mut self) -> bool {
        match &mut self.started {
            Ok((spawned, _)) => matches!(spawned.child.try_wait(), Ok(None)),
            Err(_) => false,
        }
    }

    /// Whether this is the init `child` describes.
    fn is_for(&self, child: &ChildSpec) -> bool {
        self.start == InitStart::of(child)
    }
}

/// What a run reads from its vault: the secrets it is given, and those it
/// only masks (see [`RunSpec::mask_also`]).
struct VaultSecrets<'a> {
    vault: &'a VaultName,
    grants: &'a [SecretGrant],
    mask_also: &'a [SecretName],
}

/// Builds the child's environment: the template layer (pass-through names
/// from the caller's environment, then fixed values), `extra_env`, then the
/// granted secrets, decrypted from `vault` with one `secret.inject` audit
/// record each. `store` is only opened when there are grants.
fn build_environment(
    store: StoreAccess<'_>,
    caller_env: &CallerEnv,
    policy: &EnvPolicy,
    extra_env: &[(String, String)],
    secrets: VaultSecrets<'_>,
    style: MaskStyle,
) -> Result<PreparedEnv, PlanError> {
    let VaultSecrets {
        vault,
        grants,
        mask_also,
    } = secrets;
    let mut env = ChildEnv::from_template(policy, |name| caller_env.get(name));
    for (name, value) in extra_env {
        env.set(name, EnvValue::Plain(value.into()));
    }
    let mut builder = MaskSet::builder(style);
    let mut unmasked = Vec::new();
    let mut versions = Vec::new();
    let masked_only: Vec<&SecretName> = mask_also
        .iter()
        .filter(|name| !grants.iter().any(|g| &g.secret == *name))
        .collect();
    if grants.is_empty() && masked_only.is_empty() {
        return Ok(PreparedEnv {
            env,
            mask: builder.build(),
            unmasked,
            versions,
        });
    }
    let mut opened;
    let store: &mut Store = match store {
        StoreAccess::Lazy(open) => {
            opened = open()?;
            &mut opened
        }
        StoreAccess::Open(store) => store,
    };
    if !masked_only.is_empty() {
        let present: std::collections::BTreeSet<String> =
            store.list_secret_names(vault)?.into_iter().collect();
        let names: Vec<SecretName> = masked_only
            .into_iter()
            .filter(|name| present.contains(name.as_str()))
            .cloned()
            .collect();
        if !names.is_empty() {
            for (name, revealed) in
                names
                    .iter()
                    .zip(store.read_secrets(Action::SecretMask, vault, &names)?)
            {
                builder.add(name.as_str(), &revealed.value);
            }
        }
    }
    if !grants.is_empty() {
        let names: Vec<SecretName> = grants.iter().map(|g| g.secret.clone()).collect();
        let values = store.read_secrets(Action::SecretInject, vault, &names)?;
        for (grant, revealed) in grants.iter().zip(values) {
            if !builder.add(grant.secret.as_str(), &revealed.value) {
                unmasked.push(grant.secret.clone());
            }
            versions.push((grant.secret.clone(), revealed.version));
            env.set(&grant.env, EnvValue::Secret(revealed.value));
        }
    }
    tracing::debug!(env = ?env.names().collect::<Vec<_>>(), "child environment (names only)");
    Ok(PreparedEnv {
        env,
        // Compiled once the command is spawned (`supervisor::run`).
        mask: builder.build_deferred(),
        unmasked,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse() {
        let g = SecretGrant::parse("API_KEY").unwrap();
        assert_eq!((g.env.as_str(), g.secret.as_str()), ("API_KEY", "API_KEY"));
        let g = SecretGrant::parse("DB=db.password").unwrap();
        assert_eq!((g.env.as_str(), g.secret.as_str()), ("DB", "db.password"));
        let err = SecretGrant::parse("db.password").unwrap_err().to_string();
        assert!(err.contains("ENV=db.password"), "{err}");
        assert!(SecretGrant::parse("1X=NAME").is_err());
        assert!(SecretGrant::parse("X=").is_err());
    }

    #[test]
    fn env_pairs_are_checked() {
        assert!(check_env_pair("GOOD_NAME", "any value").is_ok());
        assert!(check_env_pair("1BAD", "v").is_err());
        assert!(check_env_pair("NUL", "a\0b").is_err());
    }
}
