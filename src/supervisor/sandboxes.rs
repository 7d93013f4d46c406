//! Sandboxes as the CLI and the API share them: create, prepare an exec,
//! remove.
//!
//! A sandbox is a template, grants and environment remembered under an id,
//! with a working directory of its own (`<home>/sandboxes/<id>/work`) whose
//! files persist between execs. [`SandboxHost::create`] probes the host for
//! what the template asks (namespaces, mounts, no_new_privs, the
//! interpreter) and reports what it cannot give; nothing is dropped silently.
//! [`SandboxHost::prepare_exec`] turns one command into an [`ExecPlan`] that
//! runs `shroud __sandbox-init` (see `sandbox::apply`) under the supervisor,
//! with everything `exec` gives: environment from nothing, masking, exit
//! codes, timeouts, the output limit.
//!
//! A sandbox records who made it: the API lets only that token use it; the
//! CLI (the operator, on the host) can use any.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::output::{Destination, OutputMode};
use super::plan::{self, CallerEnv, PlanError, RunIo, RunSpec, SecretGrant, StoreAccess};
use super::spawn::StdioMode;
use super::{Control, ExecPlan};
use crate::mask::MaskStyle;
use crate::sandbox::apply::{Feature, SandboxPolicy};
use crate::sandbox::template::{EnvPolicy, Limits, Template};
use crate::sandbox::{disk, holder};
use crate::secret::SecretValue;
use crate::store::{SandboxRow, Store, StoreError, VaultName};

/// Where sandboxes live and which binary runs their init.
#[derive(Debug, Clone)]
pub struct SandboxHost {
    pub home: PathBuf,
    /// The shroud executable (it runs `__sandbox-init`).
    pub binary: PathBuf,
}

/// What a sandbox remembers (stored as JSON; never a secret value).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxConfig {
    /// `ENV=NAME` grants.
    pub grants: Vec<String>,
    pub env: Vec<(String, String)>,
    pub env_policy: EnvPolicy,
    /// The policy applied: what the template asked and the host gives.
    pub policy: SandboxPolicy,
    /// What the host gave, as probed at create.
    pub features: Vec<Feature>,
    /// Who created it: `cli`, or the API token's name.
    #[serde(default)]
    pub owner: Option<String>,
}

impl SandboxConfig {
    /// The sandbox's directory (`<home>/sandboxes/<id>`): its working
    /// directory and home, and beside them what only the supervisor sees
    /// (lifetime, grants, process logs, the network namespace holder's
    /// socket and lock).
    pub fn dir(&self) -> PathBuf {
        self.policy
            .workdir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

/// A request to create a sandbox.
#[derive(Debug)]
pub struct CreateRequest {
    pub template: String,
    pub vault: VaultName,
    pub grants: Vec<SecretGrant>,
    pub env: Vec<(String, String)>,
    /// Refuse if the host cannot give everything the template asks for.
    pub strict: bool,
    pub owner: String,
    pub caller_env: CallerEnv,
}

/// A created sandbox.
#[derive(Debug)]
pub struct Created {
    pub id: String,
    pub template: String,
    pub workdir: PathBuf,
    pub network: bool,
    pub limits: Limits,
    /// Every feature probed, given or not.
    pub features: Vec<Feature>,
}

/// One command to run in a sandbox.
#[derive(Debug)]
pub struct ExecRequest {
    /// Secrets for this command only, beside the sandbox's own.
    pub grants: Vec<SecretGrant>,
    /// Variables for this command only, after the sandbox's own.
    pub env: Vec<(String, String)>,
    pub command: Vec<OsString>,
    /// A folder of the working directory to start in (relative; it must
    /// exist and stay inside, links resolved).
    pub cwd: Option<PathBuf>,
    /// Default: the template's `wall_seconds`.
    pub timeout: Option<Duration>,
    pub mask: MaskStyle,
    pub stdio: StdioMode,
    /// With [`StdioMode::GivenInput`]: the command's stdin.
    pub input: Option<SecretValue>,
    pub output: OutputMode,
    pub destination: Destination,
    pub control: Control,
    /// A bound on output below the template's `output_mb` (the API's
    /// buffered exec keeps output in memory).
    pub output_cap: Option<u64>,
    /// Whose environment the template's pass-through names come from.
    pub caller_env: CallerEnv,
    /// Stop and signal requests of a manager that drives the run (a
    /// background command).
    pub requests: Option<super::RunRequests>,
    /// See [`plan::RunIo::start_early`]: the caller runs the plan on the
    /// thread that prepares it.
    pub start_early: bool,
    /// With `start_early`: the init [`SandboxHost::start_on_cached_policy`]
    /// started, run if it is the right one.
    pub guessed_init: Option<plan::GuessedInit>,
}

/// A prepared exec: the plan and what the caller reports.
pub struct PreparedExec {
    pub id: String,
    pub plan: ExecPlan,
    /// Granted secrets too short to be masked.
    pub unmasked: Vec<crate::store::SecretName>,
}

impl SandboxHost {
    fn dir(&self, id: &str) -> PathBuf {
        sandbox_dir(&self.home, id)
    }

    /// Creates a sandbox from `request.template`. Every granted secret must
    /// exist in the vault now (its value is read at each exec).
    pub fn create(&self, store: &mut Store, request: CreateRequest) -> Result<Created, PlanError> {
        let template =
            Template::load(&request.template, &self.home).map_err(PlanError::template)?;
        for grant in &request.grants {
            if store.secret_meta(&request.vault, &grant.secret)?.is_none() {
                return Err(PlanError::Store(StoreError::SecretNotFound {
                    vault: request.vault.to_string(),
                    name: grant.secret.to_string(),
                }));
            }
        }
        let id = uuid::Uuid::new_v4();
        let dir = self.dir(&id.to_string());
        let io = |context| move |source| PlanError::Io { context, source };
        crate::store::home::create_private_dir(&self.home.join("sandboxes"))
            .map_err(io("create the sandboxes directory"))?;
        std::fs::create_dir_all(&dir).map_err(io("create the sandbox's directory"))?;
        let result = self.create_in(store, request, &template, id, &dir);
        if result.is_err() {
            let _ = disk::remove(&dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    /// Makes `dir` a sandbox's directory for `template` (its disk, its
    /// working directory and home, given to the sandbox's uid as root) and
    /// probes the host: the policy to apply and every feature probed.
    /// `strict` refuses what the host cannot give; `seed` picks the uid.
    pub fn provision(
        &self,
        store: &mut Store,
        template: &Template,
        dir: &Path,
        strict: bool,
        caller_env: &CallerEnv,
        seed: &[u8],
    ) -> Result<(SandboxPolicy, Vec<Feature>), PlanError> {
        let io = |context| move |source| PlanError::Io { context, source };
        let (uid, _) = crate::sys::proc::ids();
        let run_as = if uid == 0 {
            let sandbox_uid = free_sandbox_uid(store, seed)?;
            Some((sandbox_uid, sandbox_uid))
        } else {
            None
        };
        // The disk first: the working directory lives on it.
        let disk = template
            .limits
            .disk_mb
            .map(|mb| disk::create(dir, mb, run_as));
        let workdir = &dir.join("work");
        std::fs::create_dir_all(workdir).map_err(io("create the sandbox's working directory"))?;
        if let Some((u, g)) = run_as {
            std::os::unix::fs::chown(workdir, Some(u), Some(g))
                .map_err(io("give the working directory to the sandbox's uid"))?;
        }
        let mut policy = SandboxPolicy {
            isolation: template.isolation,
            network: template.network.enabled,
            limits: template.limits,
            workdir: workdir.to_owned(),
            home_dir: Some(own_home(workdir, run_as).map_err(io("create the sandbox's home"))?),
            hide: self.hidden_dirs(caller_env),
            private_devpts: true,
            run_as,
            die_with: None,
            passed_fds: 0,
            cwd: None,
            shared_network: None,
        };
        let mut features = self
            .probe(&policy)
            .map_err(io("probe the host's isolation features"))?;
        features.extend(disk);
        if let Some(interpreter) = &template.runtime.interpreter {
            let path = caller_env.get("PATH").unwrap_or_default();
            let found = std::env::split_paths(&path).any(|dir| dir.join(interpreter).is_file());
            features.push(Feature {
                name: "interpreter".to_owned(),
                available: found,
                detail: if found {
                    format!("`{interpreter}` found on PATH")
                } else {
                    format!("not available: `{interpreter}` is not on PATH")
                },
            });
        }
        // What the host cannot give is not applied, and said so.
        let missing: Vec<&Feature> = features
            .iter()
            .filter(|f| !f.available && f.name != "cgroups")
            .collect();
        for feature in &missing {
            policy.without(&feature.name);
        }
        if strict && !missing.is_empty() {
            let names: Vec<String> = missing
                .iter()
                .map(|f| format!("{} ({})", f.name, f.detail))
                .collect();
            return Err(PlanError::Refused(format!(
                "this host cannot give what template `{}` asks for: {}",
                template.name,
                names.join("; ")
            )));
        }
        Ok((policy, features))
    }

    fn create_in(
        &self,
        store: &mut Store,
        request: CreateRequest,
        template: &Template,
        id: uuid::Uuid,
        dir: &Path,
    ) -> Result<Created, PlanError> {
        let (policy, features) = self.provision(
            store,
            template,
            dir,
            request.strict,
            &request.caller_env,
            id.as_bytes(),
        )?;
        let config = SandboxConfig {
            grants: request.grants.iter().map(SecretGrant::text).collect(),
            env: request.env,
            env_policy: template.env.clone(),
            policy,
            features: features.clone(),
            owner: Some(request.owner),
        };
        store.create_sandbox(&SandboxRow {
            id: id.to_string(),
            template: template.name.clone(),
            vault: request.vault.to_string(),
            config: serde_json::to_string(&config).expect("config serializes"),
            created_at: crate::clock::now_ms(),
            last_exit: None,
            last_exec_at: None,
            node: crate::store::this_node(),
        })?;
        Ok(Created {
            id: id.to_string(),
            template: template.name.clone(),
            workdir: config.policy.workdir.clone(),
            network: config.policy.network,
            limits: config.policy.limits,
            features,
        })
    }

    /// Runs the init's `--probe` for `policy` and parses its report.
    fn probe(&self, policy: &SandboxPolicy) -> std::io::Result<Vec<Feature>> {
        let (init, init_args) = crate::sandbox::apply::init_program(&self.binary);
        let output = Command::new(init)
            .args(init_args)
            .args(["--probe", "--policy"])
            .arg(serde_json::to_string(policy).expect("policy serializes"))
            .env_clear()
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()?;
        serde_json::from_slice(&output.stdout).map_err(std::io::Error::other)
    }

    /// The sandbox `id` and its configuration.
    pub fn load(
        &self,
        store: &mut Store,
        id: &str,
    ) -> Result<(SandboxRow, SandboxConfig), PlanError> {
        let row = store.sandbox(id)?;
        let config: SandboxConfig = serde_json::from_str(&row.config).map_err(|e| {
            PlanError::Usage(format!("sandbox {id} has an unreadable configuration: {e}"))
        })?;
        Ok((row, config))
    }

    /// Everything one exec needs, resolved before anything starts: the
    /// sandbox's grants and the request's, decrypted and audited; the
    /// environment; the timeout; the init's command line.
    pub fn prepare_exec(
        &self,
        store: StoreAccess<'_>,
        row: SandboxRow,
        config: SandboxConfig,
        request: ExecRequest,
    ) -> Result<PreparedExec, PlanError> {
        if request.command.is_empty() {
            return Err(PlanError::Usage("no command to run".to_owned()));
        }
        if let Some(dir) = config.policy.workdir.parent() {
            disk::ensure_mounted(dir).map_err(|source| PlanError::Io {
                context: "mount the sandbox's disk",
                source,
            })?;
        }
        if !config.policy.workdir.is_dir() {
            return Err(PlanError::Usage(format!(
                "sandbox {} has no working directory any more",
                row.id
            )));
        }
        let vault = VaultName::parse(&row.vault)?;
        let mut grants = plan::parse_grants(&config.grants)?;
        // Downloads of its files are masked with every secret it was ever
        // given; and this call renews its lifetime.
        super::sandbox_files::record_grants(&config, &request.grants).map_err(|source| {
            PlanError::Io {
                context: "record the sandbox's grants",
                source,
            }
        })?;
        let _ = super::sandbox_files::touch(&config.dir());
        grants.extend(request.grants);
        // What is hidden follows this binary and this caller (a sandbox made
        // by an older shroud gets today's covers), and `$HOME` is the
        // sandbox's own (before the sandbox's and the request's `--env`,
        // which may set another).
        let config_for_mask = config.clone();
        let mut policy = config.policy;
        // With the network off: one network namespace for all the
        // sandbox's commands while it lives (its loopback shared).
        if !policy.network {
            policy.shared_network = Some(config_for_mask.dir());
        }
        policy.cwd = match &request.cwd {
            Some(relative) => Some(check_cwd(&policy.workdir, relative)?),
            None => None,
        };
        policy.hide = self.hidden_dirs(&request.caller_env);
        let home_dir =
            own_home(&policy.workdir, policy.run_as).map_err(|source| PlanError::Io {
                context: "create the sandbox's home",
                source,
            })?;
        let mut env = vec![("HOME".to_owned(), home_dir.display().to_string())];
        policy.home_dir = Some(home_dir);
        if request.start_early {
            self.cache_policy(&row.id, &policy);
        }
        env.extend(config.env);
        env.extend(request.env);
        let timeout = request
            .timeout
            .or_else(|| policy.limits.wall_seconds.map(Duration::from_secs));
        let limits: Limits = policy.limits;
        let template_limit = limits.output_mb.map(|mb| mb * 1024 * 1024);
        let output_limit = match (template_limit, request.output_cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut spec = RunSpec::new(request.command, request.caller_env, vault);
        spec.env_policy = config.env_policy;
        spec.extra_env = env;
        spec.grants = grants;
        // Masked too: every secret the sandbox's commands were ever given
        // (another exec's value may be in a file or on the loopback).
        spec.mask_also = super::sandbox_files::granted_names(&config_for_mask);
        spec.mask = request.mask;
        spec.sandbox = Some(policy);
        spec.timeout = timeout;
        spec.output_limit = output_limit;
        let io = RunIo {
            stdio: request.stdio,
            input: request.input,
            output: request.output,
            destination: request.destination,
            control: request.control,
            requests: request.requests,
            on_started: None,
            start_early: request.start_early,
            guessed_init: request.guessed_init,
        };
        let prepared = plan::prepare(store, &self.binary, spec, io)?;
        Ok(PreparedExec {
            id: row.id,
            plan: prepared.plan,
            unmasked: prepared.unmasked,
        })
    }

    /// The sandboxes `owner` created, oldest first.
    pub fn owned_by(&self, store: &mut Store, owner: &str) -> Result<Vec<SandboxRow>, PlanError> {
        Ok(store
            .list_sandboxes()?
            .into_iter()
            .filter(|row| {
                serde_json::from_str::<SandboxConfig>(&row.config)
                    .is_ok_and(|config| config.owner.as_deref() == Some(owner))
            })
            .collect())
    }

    /// Refuses a sandbox made on another node (its files are there; a
    /// record from before nodes were recorded is this node's).
    pub fn check_node(row: &SandboxRow) -> Result<(), PlanError> {
        let here = crate::store::this_node();
        if row.node.is_empty() || row.node == here {
            return Ok(());
        }
        Err(PlanError::OnAnotherNode {
            id: row.id.clone(),
            node: row.node.clone(),
            here,
        })
    }

    /// Removes the sandbox `id`: its files, then its record (on the node
    /// that made it only).
    pub fn remove(&self, store: &mut Store, id: &str) -> Result<(), PlanError> {
        Self::check_node(&store.sandbox(id)?)?;
        let dir = self.dir(id);
        // A command starting now waits for this lock to join the sandbox's
        // network namespace or start its holder, and then finds the
        // sandbox gone.
        let _starting = match holder::lock(&dir) {
            // No sandboxes directory: nothing of it was ever made here.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            locked => Some(locked.map_err(|source| PlanError::Io {
                context: "lock the sandbox's network namespace",
                source,
            })?),
        };
        holder::stop(&dir).map_err(|source| PlanError::Io {
            context: "stop the sandbox's network namespace holder",
            source,
        })?;
        // A namespace pinned by an older shroud.
        crate::sandbox::ns::unpin_netns(&dir.join("netns")).map_err(|source| PlanError::Io {
            context: "let go of the sandbox's network namespace",
            source,
        })?;
        disk::remove(&dir).map_err(|source| PlanError::Io {
            context: "remove the sandbox's disk",
            source,
        })?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| PlanError::Io {
                context: "remove the sandbox's files",
                source,
            })?;
        }
        store.delete_sandbox(id)?;
        holder::forget(&dir);
        Ok(())
    }

    /// Starts the init of a CLI exec of `command` in sandbox `id` before
    /// the store is open, on the policy its last CLI exec ran under (see
    /// [`plan::GuessedInit`]); `None` when there is none to go on (a first
    /// exec, an id that is not a sandbox's, its disk not mounted yet).
    /// Whatever the guess, its command never runs unless it is right: it
    /// waits for an environment that only `prepare_exec` sends, and only to
    /// the init whose command line it would have started itself. (A wrong
    /// guess may still have joined or started the sandbox's network holder,
    /// as any of its inits does.)
    pub fn start_on_cached_policy(
        &self,
        id: &str,
        command: &[OsString],
        stdio: StdioMode,
    ) -> Option<plan::GuessedInit> {
        // An id is a UUID as `create` spells it: nothing in it walks out
        // of `sandboxes/`.
        let parsed = uuid::Uuid::parse_str(id).ok()?;
        if parsed.hyphenated().to_string() != id {
            return None;
        }
        let dir = self.dir(id);
        let text = std::fs::read(policy_cache_path(&dir)).ok()?;
        let policy: SandboxPolicy = serde_json::from_slice(&text).ok()?;
        // Only this sandbox's own directories (a guess is checked before it
        // runs anything, but its init should not even start a holder or
        // bind anything elsewhere); and not a disk `prepare_exec` would
        // mount first: the init would bind the empty directory beneath it.
        if policy.workdir != dir.join("work")
            || policy
                .home_dir
                .as_ref()
                .is_some_and(|home| *home != dir.join("home"))
            || policy
                .shared_network
                .as_ref()
                .is_some_and(|net| *net != dir)
            || !disk::is_ready(&dir)
        {
            return None;
        }
        plan::GuessedInit::start(&self.binary, policy, command.to_vec(), stdio)
    }

    /// Keeps the policy a CLI exec of sandbox `id` runs under, for the next
    /// one's guess; rewritten only when it changed. Best effort: a cache.
    fn cache_policy(&self, id: &str, policy: &SandboxPolicy) {
        let path = policy_cache_path(&self.dir(id));
        let Ok(text) = serde_json::to_vec(policy) else {
            return;
        };
        if std::fs::read(&path).is_ok_and(|cached| cached == text) {
            return;
        }
        let _ = super::sandbox_files::replace_file(&path, &text);
    }
}

/// Where the policy of a sandbox's last CLI exec is kept: `<dir>/init.json`,
/// beside its working directory and out of its commands' sight, like its
/// other bookkeeping (`granted`, `active`, `lifetime`); it goes with the
/// sandbox's directory (or disk) when the sandbox is removed.
fn policy_cache_path(sandbox_dir: &Path) -> PathBuf {
    sandbox_dir.join("init.json")
}

/// How a sandbox is listed, by `sandbox list --json` and `GET /api/sandboxes`
/// alike: `{"sandboxes": [{"id", "template", "vault", "node", "created_at",
/// "last_exit", "last_exec_at"}]}` (`node`: where it lives).
pub fn listing_json(rows: &[SandboxRow]) -> serde_json::Value {
    let items: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "template": r.template,
                "vault": r.vault,
                "node": r.node,
                "created_at": crate::clock::rfc3339(r.created_at),
                "last_exit": r.last_exit,
                "last_exec_at": r.last_exec_at.map(crate::clock::rfc3339),
            })
        })
        .collect();
    serde_json::json!({ "sandboxes": items })
}

impl SandboxHost {
    /// What no command of a sandbox sees: see `sandbox::apply::hidden_dirs`
    /// (the caller's own `$HOME` among them).
    pub fn hidden_dirs(&self, caller_env: &CallerEnv) -> Vec<PathBuf> {
        let caller_home = caller_env.get("HOME").map(PathBuf::from);
        crate::sandbox::apply::hidden_dirs(&self.home, caller_home.as_deref())
    }
}

/// Checks a command's starting folder: relative, no `..`, an existing
/// directory whose real path (links resolved) is inside `workdir`. The
/// command changes into it inside its own mount namespace, as its own
/// uid, so a link swapped in later leads only where the command could
/// `cd` itself.
fn check_cwd(workdir: &Path, relative: &Path) -> Result<PathBuf, PlanError> {
    let shown: String = relative.display().to_string().chars().take(64).collect();
    // The same rule as the files routes' paths (`.` for the top itself).
    let plain = relative
        .to_str()
        .filter(|text| !text.is_empty())
        .map(crate::sys::beneath::plain_relative);
    let Some(Ok(relative)) = plain else {
        return Err(PlanError::Usage(format!(
            "cwd `{shown}` must be a relative path inside the working directory, without `..`"
        )));
    };
    let outside = || {
        PlanError::Usage(format!(
            "cwd `{shown}` is not a directory inside the sandbox's working directory"
        ))
    };
    let real_root = workdir.canonicalize().map_err(|_| outside())?;
    let real = workdir
        .join(&relative)
        .canonicalize()
        .map_err(|_| outside())?;
    if !real.starts_with(&real_root) || !real.is_dir() {
        return Err(outside());
    }
    Ok(real
        .strip_prefix(&real_root)
        .map(Path::to_path_buf)
        .unwrap_or_default())
}

/// The sandbox's own home directory (`$HOME` inside): `home` beside its
/// working directory, created (and given to the sandbox's uid) if missing,
/// so that pip, npm and git have somewhere to write.
fn own_home(workdir: &Path, run_as: Option<(u32, u32)>) -> std::io::Result<PathBuf> {
    let home = workdir
        .parent()
        .map(|p| p.join("home"))
        .ok_or_else(|| std::io::Error::other("the working directory has no parent"))?;
    if !home.is_dir() {
        std::fs::create_dir_all(&home)?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&home, Some(uid), Some(gid))?;
        }
    }
    Ok(home)
}

fn sandbox_dir(home: &Path, id: &str) -> PathBuf {
    home.join("sandboxes").join(id)
}

/// The first uid sandboxes run as when shroud is root, and how many there are.
const SANDBOX_UIDS: (u32, u32) = (200_000, 800_000);

/// The unprivileged uid a sandbox runs as when shroud is root: one per
/// sandbox (so RLIMIT_NPROC counts only its processes, and two sandboxes'
/// files never share an owner), above the ranges distributions give to
/// users. It starts from a hash of the id and takes the next one no other
/// sandbox of this store uses.
fn free_sandbox_uid(store: &mut Store, bytes: &[u8]) -> Result<u32, PlanError> {
    let (first, count) = SANDBOX_UIDS;
    let mut used: std::collections::HashSet<u32> = store
        .list_sandboxes()?
        .iter()
        .filter_map(|row| serde_json::from_str::<SandboxConfig>(&row.config).ok())
        .filter_map(|config| config.policy.run_as.map(|(uid, _)| uid))
        .collect();
    // Deployments' uids too (their records keep the policy as JSON).
    for row in store.list_records(crate::store::DEPLOYMENT_KIND, None)? {
        if let Ok(data) = serde_json::from_str::<serde_json::Value>(&row.data) {
            if let Some(uid) = data["policy"]["run_as"][0].as_u64() {
                used.insert(uid as u32);
            }
        }
    }
    let bytes = [bytes, &[0u8; 4]].concat();
    let start = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) % count;
    (0..count)
        .map(|offset| first + (start + offset) % count)
        .find(|uid| !used.contains(uid))
        .ok_or_else(|| PlanError::Refused(format!("all {count} sandbox uids are in use")))
}
