//! `shroud sandbox create|exec|list|rm`, and the hidden `__sandbox-init`.
//!
//! A sandbox is a template, grants and environment remembered under an id,
//! with a working directory of its own (`<home>/sandboxes/<id>/work`) whose
//! files persist between execs. `create` probes the host for what the
//! template asks (namespaces, mounts, no_new_privs) and reports what it
//! cannot give, on stderr and in `--json`; `--strict` refuses to create a
//! sandbox with less. Each `exec` runs the command through
//! `shroud __sandbox-init` (see `sandbox::apply`) under the supervisor, with
//! everything `exec` gives: environment from nothing, masking, exit codes,
//! signals, terminal.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use super::exec::{self, Grant, TtyMode};
use super::{CliError, Context, EXIT_OK};
use crate::clock::rfc3339;
use crate::mask::MaskStyle;
use crate::sandbox::apply::{self, Feature, SandboxPolicy};
use crate::sandbox::sys;
use crate::sandbox::template::{EnvPolicy, Limits, Template};
use crate::store::{OpenMode, SandboxRow, VaultName};
use crate::supervisor::spawn::ChildSpec;
use crate::supervisor::{self, ExecPlan};

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox from a template; prints its id.
    Create(CreateArgs),
    /// Run a command inside a sandbox.
    Exec(SandboxExecArgs),
    /// Sandboxes: id, template, created, last exit.
    List,
    /// Remove a sandbox and its files.
    Rm {
        /// The sandbox id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Template: bash, python-3, nodejs-20, or <home>/sandboxes-templates/NAME.toml.
    #[arg(long, value_name = "T")]
    template: String,
    #[command(flatten)]
    vault: super::VaultArg,
    /// A secret every command of the sandbox gets: NAME or ENV=NAME. Repeatable.
    #[arg(long = "secret", value_name = "[ENV=]NAME")]
    secrets: Vec<String>,
    /// K=V in every command's environment. Repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Fail if the host cannot give everything the template asks for.
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, Args)]
pub struct SandboxExecArgs {
    /// The sandbox id.
    id: String,
    /// An extra secret for this command: NAME or ENV=NAME. Repeatable.
    #[arg(long = "secret", value_name = "[ENV=]NAME")]
    secrets: Vec<String>,
    /// Extra K=V for this command. Repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Stop the command after SECS seconds (default: the template's wall time).
    #[arg(long, value_name = "SECS")]
    timeout: Option<String>,
    /// Replacement: `label` writes <secret:name>, `stars` writes ********.
    #[arg(long, value_name = "label|stars", default_value = "label")]
    mask: MaskStyle,
    /// Give the command a pseudo-terminal.
    #[arg(long, value_enum, default_value = "auto")]
    tty: TtyMode,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]")]
    command: Vec<OsString>,
}

/// The hidden entry point of the sandbox init process.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The policy, as JSON.
    #[arg(long)]
    policy: String,
    /// Only try each feature and print what this host gives, as JSON.
    #[arg(long)]
    probe: bool,
    #[arg(last = true)]
    command: Vec<OsString>,
}

/// What a sandbox remembers (stored as JSON; never a secret value).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SandboxConfig {
    /// `ENV=NAME` grants.
    grants: Vec<String>,
    env: Vec<(String, String)>,
    env_policy: EnvPolicy,
    /// The policy applied: what the template asked and the host gives.
    policy: SandboxPolicy,
    /// What the host gave, as probed at create.
    features: Vec<Feature>,
}

/// Runs `__sandbox-init` (it never returns).
pub fn run_init(args: InitArgs) -> Result<u8, CliError> {
    let policy: SandboxPolicy = serde_json::from_str(&args.policy)
        .map_err(|e| CliError::Usage(format!("invalid sandbox policy: {e}")))?;
    if args.probe {
        let features = apply::probe(&policy);
        println!(
            "{}",
            serde_json::to_string(&features).expect("features serialize")
        );
        return Ok(EXIT_OK);
    }
    if args.command.is_empty() {
        return Err(CliError::Usage("no command".to_owned()));
    }
    apply::run_init(&policy, &args.command)
}

pub fn run(ctx: &Context, command: SandboxCommand) -> Result<u8, CliError> {
    match command {
        SandboxCommand::Create(args) => create(ctx, args),
        SandboxCommand::Exec(args) => match prepare_exec(ctx, args) {
            Ok((id, plan)) => {
                let result = supervisor::run(plan);
                if let Ok(report) = &result {
                    if let Ok(mut store) = ctx.open_store(OpenMode::Existing) {
                        let _ = store.record_sandbox_exit(&id, i64::from(report.code));
                    }
                }
                exec::report_run(ctx, result)
            }
            Err(e) => {
                ctx.out.note(&format!("error: {e}"));
                Ok(exec::EXIT_SHROUD_FAILED)
            }
        },
        SandboxCommand::List => list(ctx),
        SandboxCommand::Rm { id } => {
            let mut store = ctx.open_store(OpenMode::Existing)?;
            store.sandbox(&id)?;
            let dir = sandbox_dir(&ctx.home, &id);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|source| CliError::Io {
                    context: "remove the sandbox's files",
                    source,
                })?;
            }
            store.delete_sandbox(&id)?;
            if ctx.out.is_json() {
                ctx.out
                    .json(&serde_json::json!({ "id": id, "removed": true }))?;
            } else {
                ctx.out.note(&format!("removed sandbox {id}"));
            }
            Ok(EXIT_OK)
        }
    }
}

fn sandbox_dir(home: &Path, id: &str) -> PathBuf {
    home.join("sandboxes").join(id)
}

/// The unprivileged uid a sandbox runs as when shroud is root: one per
/// sandbox (so RLIMIT_NPROC counts only its processes), above the ranges
/// distributions give to users.
fn sandbox_uid(id: &uuid::Uuid) -> u32 {
    let bytes = id.as_bytes();
    200_000 + u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) % 800_000
}

fn create(ctx: &Context, args: CreateArgs) -> Result<u8, CliError> {
    let vault = args.vault.parse()?;
    let template =
        Template::load(&args.template, &ctx.home).map_err(|e| CliError::Usage(e.to_string()))?;
    let grants = exec::parse_grants(&args.secrets)?;
    let env = exec::parse_env_pairs(&args.env)?;
    let mut store = ctx.open_store(OpenMode::Create)?;
    for grant in &grants {
        if store.secret_meta(&vault, &grant.secret)?.is_none() {
            return Err(CliError::Store(crate::store::StoreError::SecretNotFound {
                vault: vault.to_string(),
                name: grant.secret.to_string(),
            }));
        }
    }

    let id = uuid::Uuid::new_v4();
    let dir = sandbox_dir(&ctx.home, &id.to_string());
    let workdir = dir.join("work");
    let io = |context| move |source| CliError::Io { context, source };
    crate::store::home::create_private_dir(&ctx.home.join("sandboxes"))
        .map_err(io("create the sandboxes directory"))?;
    std::fs::create_dir_all(&workdir).map_err(io("create the sandbox's working directory"))?;
    let (uid, _) = sys::ids();
    let run_as = (uid == 0).then(|| {
        let sandbox_uid = sandbox_uid(&id);
        (sandbox_uid, sandbox_uid)
    });
    if let Some((u, g)) = run_as {
        std::os::unix::fs::chown(&workdir, Some(u), Some(g))
            .map_err(io("give the working directory to the sandbox's uid"))?;
    }
    let mut policy = SandboxPolicy {
        isolation: template.isolation,
        network: template.network.enabled,
        limits: template.limits,
        workdir: workdir.clone(),
        hide: vec![ctx.home.clone()],
        run_as,
    };
    let mut features = probe(&policy).map_err(io("probe the host's isolation features"))?;
    if let Some(interpreter) = &template.runtime.interpreter {
        let path = std::env::var_os("PATH").unwrap_or_default();
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
    if args.strict && !missing.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
        let names: Vec<String> = missing
            .iter()
            .map(|f| format!("{} ({})", f.name, f.detail))
            .collect();
        return Err(CliError::Reported(format!(
            "--strict: this host cannot give what template `{}` asks for: {}",
            template.name,
            names.join("; ")
        )));
    }
    let config = SandboxConfig {
        grants: grants.iter().map(Grant::text).collect(),
        env,
        env_policy: template.env.clone(),
        policy,
        features: features.clone(),
    };
    store.create_sandbox(&SandboxRow {
        id: id.to_string(),
        template: template.name.clone(),
        vault: vault.to_string(),
        config: serde_json::to_string(&config).expect("config serializes"),
        created_at: crate::clock::now_ms(),
        last_exit: None,
        last_exec_at: None,
    })?;
    if ctx.out.is_json() {
        ctx.out.json(&serde_json::json!({
            "id": id.to_string(),
            "template": template.name,
            "workdir": workdir,
            "network": config.policy.network,
            "limits": config.policy.limits,
            "isolation": features,
        }))?;
    } else {
        ctx.out.line(&id.to_string())?;
    }
    for feature in &features {
        if feature.available {
            ctx.out
                .note(&format!("  {}: {}", feature.name, feature.detail));
        } else {
            ctx.out
                .warn(&format!("{}: {}", feature.name, feature.detail));
        }
    }
    Ok(EXIT_OK)
}

/// Runs `__sandbox-init --probe` for `policy` and parses its report.
fn probe(policy: &SandboxPolicy) -> std::io::Result<Vec<Feature>> {
    let output = Command::new(std::env::current_exe()?)
        .args(["__sandbox-init", "--probe", "--policy"])
        .arg(serde_json::to_string(policy).expect("policy serializes"))
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    serde_json::from_slice(&output.stdout).map_err(std::io::Error::other)
}

fn load(ctx: &Context, id: &str) -> Result<(SandboxRow, SandboxConfig), CliError> {
    let store = ctx.open_store(OpenMode::Existing)?;
    let row = store.sandbox(id)?;
    let config: SandboxConfig = serde_json::from_str(&row.config).map_err(|e| {
        CliError::Usage(format!("sandbox {id} has an unreadable configuration: {e}"))
    })?;
    Ok((row, config))
}

fn prepare_exec(ctx: &Context, args: SandboxExecArgs) -> Result<(String, ExecPlan), CliError> {
    let (row, config) = load(ctx, &args.id)?;
    if !config.policy.workdir.is_dir() {
        return Err(CliError::Usage(format!(
            "sandbox {} has no working directory any more",
            row.id
        )));
    }
    let vault = VaultName::parse(&row.vault)?;
    let mut grants = exec::parse_grants(&config.grants)?;
    grants.extend(exec::parse_grants(&args.secrets)?);
    let mut env = config.env.clone();
    env.extend(exec::parse_env_pairs(&args.env)?);
    let timeout = match &args.timeout {
        Some(text) => Some(exec::parse_timeout(text)?),
        None => config.policy.limits.wall_seconds.map(Duration::from_secs),
    };
    let (child_env, mask) =
        exec::build_environment(ctx, &config.env_policy, &env, &vault, &grants, args.mask)?;
    let mut init_args: Vec<OsString> = vec![
        "__sandbox-init".into(),
        "--policy".into(),
        serde_json::to_string(&config.policy)
            .expect("policy serializes")
            .into(),
        "--".into(),
    ];
    init_args.extend(args.command);
    let program = std::env::current_exe().map_err(|source| CliError::Io {
        context: "find the shroud binary",
        source,
    })?;
    let limits: Limits = config.policy.limits;
    Ok((
        row.id,
        ExecPlan {
            child: ChildSpec {
                program: program.into_os_string(),
                args: init_args,
                env: child_env,
                cwd: None,
                stdio: exec::stdio_mode(ctx, args.tty),
            },
            mask,
            output: exec::output_mode(ctx),
            timeout,
            output_limit: limits.output_mb.map(|mb| mb * 1024 * 1024),
        },
    ))
}

fn list(ctx: &Context) -> Result<u8, CliError> {
    let store = ctx.open_store(OpenMode::Existing)?;
    let rows = store.list_sandboxes()?;
    if ctx.out.is_json() {
        let items: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id,
                    "template": r.template,
                    "vault": r.vault,
                    "created_at": rfc3339(r.created_at),
                    "last_exit": r.last_exit,
                    "last_exec_at": r.last_exec_at.map(rfc3339),
                })
            })
            .collect();
        ctx.out.json(&serde_json::json!({ "sandboxes": items }))?;
    } else {
        ctx.out.lines(rows.iter().map(|r| {
            let last = r.last_exit.map_or("-".to_owned(), |c| c.to_string());
            format!(
                "{}\t{}\t{}\t{}",
                r.id,
                r.template,
                rfc3339(r.created_at),
                last
            )
        }))?;
    }
    Ok(EXIT_OK)
}
