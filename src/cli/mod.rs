//! The `shroud` command line: clap definitions, dispatch, and exit codes.
//!
//! Parsing happens in two steps (as ripgrep does): clap turns argv into the raw
//! [`Cli`] structs, then each command group (one file per group) validates
//! names and values into typed config before it touches the store. Every
//! command returns its exit status or a [`CliError`]; [`CliError::exit_code`]
//! is the one place errors become exit codes:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | the thing was not found, a check said no, or part of a bulk request failed |
//! | 2 | bad usage or input (flags, names, values), or a master-key problem |
//! | 125 | shroud itself failed (database, file system); for `exec`, anything that stopped the program from starting |
//!
//! `exec` exits with its child's code instead (126 cannot execute, 127 not
//! found, 124 timeout, 128 + N killed by signal N).

mod audit;
mod backup;
mod client;
mod deploy;
mod exec;
mod key;
mod output;
mod redact;
mod run;
mod sandbox;
mod secret;
mod secret_files;
mod serve;
mod token;
mod var;
mod vault;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::store::{self, OpenMode, Store, StoreConfig, StoreError, ValidationError, VaultName};

pub use output::{print_error, Output};

/// Said when a value came as a command-line argument.
pub const ARGV_WARNING: &str = "the value was given on the command line, where other local users can read it (ps, /proc/<pid>/cmdline) and where your shell may keep it in its history; pass it on stdin instead: `shroud secret set NAME` (a hidden prompt at a terminal), or `shroud secret set NAME < file`";

/// Exit status of a successful command.
pub const EXIT_OK: u8 = 0;
/// Not found, a "no" answer, or a partial failure.
pub const EXIT_FAILURE: u8 = 1;
/// Bad usage or input; master-key problems.
pub const EXIT_USAGE: u8 = 2;
/// shroud itself failed.
pub const EXIT_INTERNAL: u8 = 125;

/// shroud: run commands with only the secrets they were granted, and mask them in every output.
#[derive(Debug, Parser)]
#[command(name = "shroud", version, about, max_term_width = 100)]
pub struct Cli {
    /// Home directory (default: $SHROUD_HOME, else $XDG_DATA_HOME/shroud, else ~/.local/share/shroud).
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Machine-readable output: one JSON object per result, JSON lines for streams.
    #[arg(long, global = true)]
    pub json: bool,
    /// Where the data is: `sqlite` (the home's shroud.db, the default) or
    /// postgres://user[:password]@host:port/db[?sslmode=require] (default: $SHROUD_STORE).
    #[arg(long, global = true, value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store, read and manage secrets.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Work with whole vaults.
    #[command(subcommand)]
    Vault(vault::VaultCommand),
    /// Non-secret name/value pairs (never masked).
    #[command(subcommand)]
    Var(var::VarCommand),
    /// Show or verify the audit log.
    Audit(audit::AuditArgs),
    /// Manage the master key.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Filter stdin to stdout, masking the named secrets (and their encodings).
    Redact(redact::RedactArgs),
    /// Run a program with only the granted secrets in its environment, masking them in its output.
    Exec(exec::ExecArgs),
    /// Serve the HTTP API.
    Serve(serve::ServeArgs),
    /// Bearer tokens for the HTTP API, with grants per vault.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Isolated, template-based environments with files of their own.
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCommand),
    /// Run the CI tasks of a YAML file: a parallel DAG, secrets from `${{ }}` expressions, masked.
    Run(run::RunArgs),
    /// Long-running services and agents, supervised (see `shroud serve`).
    #[command(subcommand)]
    Deploy(deploy::DeployCommand),
    /// Runs of agent deployments.
    #[command(subcommand)]
    Agent(deploy::AgentCommand),
    /// Write a consistent copy of the store to FILE (never the master key).
    Backup(backup::BackupArgs),
    /// Put a backup back into the home (refuses a home that holds data unless --force).
    Restore(backup::RestoreArgs),
    /// Print a completion script: `source <(shroud completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

/// True when argv names an entry point shroud runs itself through (`shroud
/// __NAME ...`, never typed by a person, so never in `--help` or a
/// completion script); `sandbox::run_internal` reads those.
pub fn is_internal_invocation() -> bool {
    std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg.as_encoded_bytes().starts_with(b"__"))
}

/// How a command's log lines go to stderr: the level when `SHROUD_LOG` is
/// not set, and the form.
#[derive(Debug, Clone, Copy)]
pub struct LogSettings {
    pub default_level: tracing::Level,
    pub json: bool,
}

impl Cli {
    /// Every command logs warnings only, as text; `serve` logs each
    /// request (see `ServeArgs::log_settings`).
    pub fn log_settings(&self) -> LogSettings {
        match &self.command {
            Command::Serve(args) => args.log_settings(self.json),
            _ => LogSettings {
                default_level: tracing::Level::WARN,
                json: false,
            },
        }
    }
}

/// The `--vault` flag (alias `--scope`) shared by every command touching secrets.
#[derive(Debug, Clone, clap::Args)]
pub struct VaultArg {
    /// Vault (namespace) to use.
    #[arg(long = "vault", visible_alias = "scope", value_name = "VAULT", default_value = store::names::DEFAULT_VAULT)]
    pub vault: String,
}

impl VaultArg {
    pub fn parse(&self) -> Result<VaultName, CliError> {
        Ok(VaultName::parse(&self.vault)?)
    }
}

/// An error that ends a command, mapped to an exit code in one place.
#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot {context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The command already reported its failures (e.g. per item); exit 1.
    #[error("{0}")]
    Reported(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Store(e) if e.is_key_error() => EXIT_USAGE,
            CliError::Store(StoreError::Invalid(_) | StoreError::ReferenceTtl(_)) => EXIT_USAGE,
            CliError::Store(e) if e.is_not_found() => EXIT_FAILURE,
            CliError::Store(
                StoreError::Decrypt { .. }
                | StoreError::NoHome(_)
                | StoreError::TokenExists(_)
                | StoreError::Backup(_),
            ) => EXIT_FAILURE,
            CliError::Store(_) => EXIT_INTERNAL,
            CliError::Invalid(_) | CliError::Usage(_) => EXIT_USAGE,
            CliError::Io { .. } => EXIT_INTERNAL,
            CliError::Reported(_) => EXIT_FAILURE,
        }
    }

    /// True when output went to a closed pipe (`shroud secret list | head -1`):
    /// not worth an error line.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl From<crate::supervisor::plan::PlanError> for CliError {
    fn from(e: crate::supervisor::plan::PlanError) -> Self {
        use crate::supervisor::plan::PlanError;
        match e {
            PlanError::Store(e) => CliError::Store(e),
            PlanError::Invalid(e) => CliError::Invalid(e),
            PlanError::Usage(m) | PlanError::Missing(m) => CliError::Usage(m),
            PlanError::Refused(m) => CliError::Reported(m),
            e @ PlanError::OnAnotherNode { .. } => CliError::Reported(e.to_string()),
            PlanError::Io { context, source } => CliError::Io { context, source },
        }
    }
}

/// What every command needs: where the home is, how to print, the key source.
pub struct Context {
    pub home: PathBuf,
    pub out: Output,
    pub(crate) master_key_env: Option<Zeroizing<String>>,
    /// Where the store is (`--store`, `$SHROUD_STORE`; the home by default).
    pub location: store::StoreLocation,
    /// The text `location` came from (a supervisor started in the
    /// background gets it through its environment).
    pub store_text: String,
}

impl Context {
    /// Opens the store as the CLI actor.
    pub fn open_store(&self, mode: OpenMode) -> Result<Store, CliError> {
        Ok(Store::open(self.store_config(), mode)?)
    }

    /// The shroud executable (sandboxes run its `__sandbox-init`).
    pub fn binary(&self) -> PathBuf {
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("shroud"))
    }

    /// The store's configuration for the CLI actor.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            home: self.home.clone(),
            master_key_env: self.master_key_env.clone(),
            actor: store::CLI_ACTOR.to_owned(),
            location: self.location.clone(),
        }
    }
}

/// The shells `shroud completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl CompletionShell {
    /// The completion script for this shell, generated from the same clap
    /// definitions as the parser (so it never lags behind a flag).
    fn script(self) -> Vec<u8> {
        use clap::CommandFactory;
        let shell = match self {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        };
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "shroud", &mut script);
        script
    }
}

/// Writes the completion script for `shell`.
fn print_completions(shell: CompletionShell) -> Result<u8, CliError> {
    Output::new(false).bytes(&shell.script())?;
    Ok(EXIT_OK)
}

/// Runs a parsed command line; returns the exit code on success.
pub fn run(cli: Cli) -> Result<u8, CliError> {
    let command = match cli.command {
        Command::Completions { .. } if cli.json => {
            return Err(CliError::Usage(
                "--json: a completion script is shell code; it has no JSON form".to_owned(),
            ))
        }
        Command::Completions { shell } => return print_completions(shell),
        other => other,
    };
    let env_path = |name: &str| std::env::var_os(name).map(PathBuf::from);
    let home = store::home::resolve_home(
        cli.home,
        env_path("SHROUD_HOME"),
        env_path("XDG_DATA_HOME"),
        env_path("HOME"),
    )
    .ok_or_else(|| {
        CliError::Usage("no home directory: pass --home DIR or set SHROUD_HOME or HOME".to_owned())
    })?;
    let home = store::home::absolute(&home).map_err(|source| CliError::Io {
        context: "resolve the home directory",
        source,
    })?;
    let master_key_env = match std::env::var("SHROUD_MASTER_KEY") {
        Ok(text) if !text.is_empty() => Some(Zeroizing::new(text)),
        Ok(_) | Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(CliError::Store(StoreError::BadMasterKey {
                key_source: store::home::KeySource::Env,
                reason: "it is not valid base64",
            }))
        }
    };
    let store_text = cli
        .store
        .clone()
        .or_else(|| std::env::var("SHROUD_STORE").ok())
        .unwrap_or_default();
    let location = store::StoreLocation::parse(&store_text)
        .map_err(|e| CliError::Usage(format!("--store: {e}")))?;
    let ctx = Context {
        home,
        out: Output::new(cli.json),
        master_key_env,
        location,
        store_text,
    };
    match command {
        Command::Completions { .. } => unreachable!("handled above"),
        Command::Sandbox(cmd) => sandbox::run(&ctx, cmd),
        Command::Token(cmd) => token::run(&ctx, cmd),
        Command::Serve(args) => serve::run(&ctx, args),
        Command::Secret(cmd) => secret::run(&ctx, cmd),
        Command::Vault(cmd) => vault::run(&ctx, cmd),
        Command::Var(cmd) => var::run(&ctx, cmd),
        Command::Audit(args) => audit::run(&ctx, args),
        Command::Key(cmd) => key::run(&ctx, cmd),
        Command::Redact(args) => redact::run(&ctx, args),
        Command::Exec(args) => exec::run(&ctx, args),
        Command::Run(args) => run::run(&ctx, args),
        Command::Deploy(cmd) => deploy::run_deploy(&ctx, cmd),
        Command::Agent(cmd) => deploy::run_agent(&ctx, cmd),
        Command::Backup(args) => backup::run_backup(&ctx, args),
        Command::Restore(args) => backup::run_restore(&ctx, args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The man pages in `doc/man/` (`shroud.1`, and one per command and
    /// subcommand: `shroud-secret.1`, `shroud-secret-set.1`...) are
    /// generated from the parser's own definitions; run with
    /// `SHROUD_WRITE_MAN=1` to rewrite them after a change to a flag or a
    /// help text.
    #[test]
    fn the_man_pages_are_current() {
        fn pages(command: &clap::Command, name: &str, out: &mut Vec<(String, Vec<u8>)>) {
            let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
            let page = command.clone().name(leaked);
            let mut text = Vec::new();
            clap_mangen::Man::new(page).render(&mut text).unwrap();
            out.push((format!("{name}.1"), text));
            for sub in command.get_subcommands() {
                if sub.get_name() != "help" {
                    pages(sub, &format!("{name}-{}", sub.get_name()), out);
                }
            }
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("doc/man");
        let mut command = super::Cli::command();
        // Global flags (--home, --json, --store) shown on every page.
        command.build();
        let mut rendered = Vec::new();
        pages(&command, "shroud", &mut rendered);
        let write = std::env::var_os("SHROUD_WRITE_MAN").is_some();
        if write {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
        }
        let expected: std::collections::BTreeSet<String> =
            rendered.iter().map(|(file, _)| file.clone()).collect();
        for (file, text) in rendered {
            let path = dir.join(&file);
            if write {
                std::fs::write(&path, &text).unwrap();
            }
            assert!(
                std::fs::read(&path).unwrap_or_default() == text,
                "doc/man/{file} is not what the parser defines: run `SHROUD_WRITE_MAN=1 cargo test --lib man_pages` and commit it"
            );
        }
        let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(on_disk, expected, "doc/man holds a page of no command");
    }

    #[test]
    fn the_completion_scripts_cover_every_public_command() {
        use super::CompletionShell;
        let command = super::Cli::command();
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let script = String::from_utf8(shell.script()).unwrap();
            for sub in command.get_subcommands() {
                assert!(
                    script.contains(sub.get_name()),
                    "{shell:?}: {}",
                    sub.get_name()
                );
            }
            assert!(!script.contains("__sandbox-init") && !script.contains("__netns-holder"));
        }
    }
}
