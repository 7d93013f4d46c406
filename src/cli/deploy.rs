//! `shroud deploy ...` and `shroud agent ...`: the deployments and agent
//! runs of the home's supervisor, over its socket (see `client`; one is
//! started in the background when none runs).
//!
//! Each command is one request to the same routes the HTTP API serves, the
//! CLI acting as the socket's same-user peer. `deploy create` checks its
//! flags here first (slug, sockets, `--code`, readiness), so that a typo
//! never starts a supervisor.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use hyper::Method;

use super::client::{refused, Supervisor};
use super::{CliError, Context, EXIT_OK};
use crate::supervisor::deploy;

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Create a deployment and start it; prints its slug.
    Create(CreateArgs),
    /// Every deployment: state, instances, restarts, last exit, versions.
    List,
    /// The masked output of every instance, with the supervisor's events.
    Logs {
        slug: String,
        /// Keep streaming new lines.
        #[arg(long)]
        follow: bool,
        /// The last N lines only.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
    },
    /// Stop every instance (SIGTERM, SIGKILL after 10 s).
    Stop { slug: String },
    /// Start a stopped deployment.
    Start { slug: String },
    /// Replace every instance, one at a time, with no gap.
    Restart { slug: String },
    /// Stop and remove a deployment, its files and its runs.
    Rm { slug: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The deployment's name (a-z, 0-9, `-`).
    slug: String,
    /// Runtime template: environment, limits, isolation.
    #[arg(long, value_name = "T")]
    template: String,
    #[command(flatten)]
    vault: super::VaultArg,
    /// Grant a secret: NAME, or ENV=NAME. Repeatable.
    #[arg(long = "secret", value_name = "[ENV=]NAME")]
    secrets: Vec<String>,
    /// Set K=V in every instance's environment. Repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// `service` keeps instances running; `agent` starts one per `agent run`.
    #[arg(long, value_name = "service|agent", default_value = "service")]
    mode: String,
    /// Copy this directory's files into the deployment's working directory.
    #[arg(long, value_name = "DIR")]
    code: Option<PathBuf>,
    /// Instances to keep running.
    #[arg(long, value_name = "N", default_value_t = 1)]
    replicas: u32,
    /// A listening socket every instance gets (fd 3...): host:port or unix:PATH. Repeatable.
    #[arg(long = "socket", value_name = "ADDR")]
    sockets: Vec<String>,
    /// An instance is up once it sends READY=1 to $NOTIFY_SOCKET.
    #[arg(long, conflicts_with = "ready_after")]
    notify: bool,
    /// An instance is up once alive this long (default 1).
    #[arg(long, value_name = "SECS")]
    ready_after: Option<f64>,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]")]
    command: Vec<OsString>,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Start one run and stream its masked output; exits with its code.
    Run {
        slug: String,
        /// Given to the run on stdin as `message`.
        #[arg(long, value_name = "TEXT", default_value = "")]
        message: String,
        /// K=V, given as `params.K`. Repeatable.
        #[arg(long = "param", value_name = "K=V")]
        params: Vec<String>,
        /// End the run after SECS seconds (status timed_out, exit 124).
        #[arg(long, value_name = "SECS")]
        timeout: Option<String>,
    },
    /// The runs of an agent deployment.
    Runs { slug: String },
    /// A run's status and masked log.
    Log { run_id: String },
}

pub fn run_deploy(ctx: &Context, command: DeployCommand) -> Result<u8, CliError> {
    match command {
        DeployCommand::Create(args) => create(ctx, args),
        DeployCommand::List => list(ctx),
        DeployCommand::Logs { slug, follow, tail } => logs(ctx, &slug, follow, tail),
        DeployCommand::Stop { slug } => control(ctx, &slug, "stop"),
        DeployCommand::Start { slug } => control(ctx, &slug, "start"),
        DeployCommand::Restart { slug } => control(ctx, &slug, "restart"),
        DeployCommand::Rm { slug } => {
            deploy::check_slug(&slug)?;
            let supervisor = Supervisor::connect(ctx)?;
            let answer = supervisor
                .call(Method::DELETE, &format!("/api/deployments/{slug}"), None)?
                .map_err(refused)?;
            report(ctx, &answer, &format!("removed deployment {slug}"))
        }
    }
}

fn report(ctx: &Context, answer: &serde_json::Value, text: &str) -> Result<u8, CliError> {
    if ctx.out.is_json() {
        ctx.out.json(answer)?;
    } else {
        ctx.out.note(text);
    }
    Ok(EXIT_OK)
}

fn create(ctx: &Context, args: CreateArgs) -> Result<u8, CliError> {
    deploy::check_slug(&args.slug)?;
    let vault = args.vault.parse()?;
    crate::supervisor::plan::parse_grants(&args.secrets)?;
    let env = super::exec::parse_env_pairs(&args.env)?;
    for address in &args.sockets {
        deploy::check_socket_address(address)?;
    }
    let readiness = crate::api::deployments::readiness(args.notify, args.ready_after)
        .map_err(|e| CliError::Usage(e.replace("`ready_after`", "--ready-after")))?;
    let code = match &args.code {
        Some(dir) => {
            std::fs::read_dir(dir).map_err(|e| {
                CliError::Usage(format!(
                    "--code {}: cannot read the directory: {e}",
                    dir.display()
                ))
            })?;
            Some(
                crate::store::home::absolute(dir).map_err(|source| CliError::Io {
                    context: "resolve --code",
                    source,
                })?,
            )
        }
        None => None,
    };
    let mut command = Vec::with_capacity(args.command.len());
    for arg in args.command {
        command.push(arg.into_string().map_err(|_| {
            CliError::Usage("the command's arguments must be valid UTF-8".to_owned())
        })?);
    }
    let body = serde_json::json!({
        "apiSlug": args.slug,
        "templateSlug": args.template,
        "vault": vault.as_str(),
        "secrets": args.secrets,
        "env": env.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "mode": args.mode,
        "code": code,
        "replicas": args.replicas,
        "sockets": args.sockets,
        "notify": readiness == deploy::Readiness::Notify,
        "ready_after": match readiness {
            deploy::Readiness::AliveFor(ms) => Some(ms as f64 / 1000.0),
            deploy::Readiness::Notify => None,
        },
        "command": command,
    });
    let supervisor = Supervisor::connect(ctx)?;
    let answer = supervisor
        .call(Method::POST, "/api/deployments", Some(body))?
        // What the definition names and is not there (a template, a
        // secret) is bad input to `deploy create`: exit 2.
        .map_err(|refusal| match refusal.status {
            hyper::StatusCode::NOT_FOUND => CliError::Usage(refusal.error),
            _ => refused(refusal),
        })?;
    if ctx.out.is_json() {
        ctx.out.json(&answer)?;
    } else {
        println!("{}", answer["slug"].as_str().unwrap_or_default());
    }
    Ok(EXIT_OK)
}

fn list(ctx: &Context) -> Result<u8, CliError> {
    let supervisor = Supervisor::connect(ctx)?;
    let answer = supervisor
        .call(Method::GET, "/api/deployments", None)?
        .map_err(refused)?;
    if ctx.out.is_json() {
        ctx.out.json(&answer)?;
        return Ok(EXIT_OK);
    }
    let empty = Vec::new();
    let deployments = answer["deployments"].as_array().unwrap_or(&empty);
    let mut out = std::io::stdout().lock();
    let io = |source| CliError::Io {
        context: "write the list",
        source,
    };
    writeln!(
        out,
        "{:<20} {:<8} {:<9} {:<9} {:<8} {:<16} VERSIONS",
        "SLUG", "MODE", "STATE", "INSTANCES", "RESTARTS", "LAST EXIT"
    )
    .map_err(io)?;
    for d in deployments {
        let instances = d["instances"].as_array().map_or(0, Vec::len);
        let last_exit = match (&d["last_exit"]["code"], &d["last_exit"]["signal"]) {
            (_, serde_json::Value::Number(signal)) => format!("signal {signal}"),
            (serde_json::Value::Number(code), _) => format!("code {code}"),
            _ => "-".to_owned(),
        };
        let versions: Vec<String> = d["secret_versions"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(name, v)| match v.as_u64() {
                        Some(v) => format!("{name}@{v}"),
                        None => format!("{name}@deleted"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut state = d["state"].as_str().unwrap_or("-").to_owned();
        if d["rotation"]["status"] == "failed" {
            state.push('!');
        }
        writeln!(
            out,
            "{:<20} {:<8} {:<9} {:<9} {:<8} {:<16} {}",
            d["slug"].as_str().unwrap_or("-"),
            d["mode"].as_str().unwrap_or("-"),
            state,
            format!("{instances}/{}", d["replicas"]),
            d["restarts"].as_u64().unwrap_or(0),
            last_exit,
            if versions.is_empty() {
                "-".to_owned()
            } else {
                versions.join(" ")
            }
        )
        .map_err(io)?;
        if d["rotation"]["status"] == "failed" {
            writeln!(
                out,
                "  rotation failed: {}",
                d["rotation"]["error"].as_str().unwrap_or("-")
            )
            .map_err(io)?;
        }
    }
    Ok(EXIT_OK)
}

fn logs(ctx: &Context, slug: &str, follow: bool, tail: Option<usize>) -> Result<u8, CliError> {
    deploy::check_slug(slug)?;
    let supervisor = Supervisor::connect(ctx)?;
    let mut query = format!("/api/deployments/{slug}/logs?follow={follow}");
    if let Some(n) = tail {
        query.push_str(&format!("&tail={n}"));
    }
    let json = ctx.out.is_json();
    let mut out = std::io::stdout().lock();
    supervisor
        .stream(&query, |line| {
            let written = if json {
                writeln!(out, "{line}")
            } else {
                let value: serde_json::Value =
                    serde_json::from_str(line).unwrap_or(serde_json::Value::Null);
                let what = match value["event"].as_str() {
                    Some(event) => format!("event {event}"),
                    None => format!(
                        "{} {}",
                        value["stream"].as_str().unwrap_or("-"),
                        value["data"].as_str().unwrap_or_default()
                    ),
                };
                writeln!(
                    out,
                    "{} {} {what}",
                    value["ts"].as_str().unwrap_or("-"),
                    value["instance"].as_str().unwrap_or("-"),
                )
            };
            written.and_then(|()| out.flush()).is_ok()
        })?
        .map_err(refused)?;
    Ok(EXIT_OK)
}

fn control(ctx: &Context, slug: &str, verb: &str) -> Result<u8, CliError> {
    deploy::check_slug(slug)?;
    let supervisor = Supervisor::connect(ctx)?;
    let answer = supervisor
        .call(
            Method::POST,
            &format!("/api/deployments/{slug}/{verb}"),
            None,
        )?
        .map_err(refused)?;
    let done = match verb {
        "stop" => "stopping",
        "start" => "starting",
        _ => "rolling",
    };
    report(ctx, &answer, &format!("{slug}: {done}"))
}

pub fn run_agent(ctx: &Context, command: AgentCommand) -> Result<u8, CliError> {
    match command {
        AgentCommand::Run {
            slug,
            message,
            params,
            timeout,
        } => {
            deploy::check_slug(&slug)?;
            let mut map = serde_json::Map::new();
            for (index, pair) in params.iter().enumerate() {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| CliError::Usage(format!("--param #{} is not K=V", index + 1)))?;
                map.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
            }
            let timeout = timeout
                .as_deref()
                .map(super::exec::parse_timeout)
                .transpose()?;
            let supervisor = Supervisor::connect(ctx)?;
            let answer = supervisor
                .call(
                    Method::POST,
                    &format!("/api/agents/{slug}/runs"),
                    Some(serde_json::json!({
                        "message": message,
                        "params": map,
                        "timeout_s": timeout.map(|t| t.as_secs_f64()),
                    })),
                )?
                .map_err(refused)?;
            let run_id = answer["run_id"].as_str().unwrap_or_default().to_owned();
            ctx.out.note(&format!("run {run_id}"));
            follow_run(ctx, &supervisor, &run_id)
        }
        AgentCommand::Runs { slug } => {
            deploy::check_slug(&slug)?;
            let supervisor = Supervisor::connect(ctx)?;
            let answer = supervisor
                .call(Method::GET, &format!("/api/agents/{slug}/runs"), None)?
                .map_err(refused)?;
            if ctx.out.is_json() {
                ctx.out.json(&answer)?;
            } else {
                let empty = Vec::new();
                println!(
                    "{:<36} {:<10} {:<5} {:<25} ENDED",
                    "RUN", "STATUS", "CODE", "STARTED"
                );
                for run in answer["runs"].as_array().unwrap_or(&empty) {
                    println!(
                        "{:<36} {:<10} {:<5} {:<25} {}",
                        run["run_id"].as_str().unwrap_or("-"),
                        run["status"].as_str().unwrap_or("-"),
                        run["exit_code"]
                            .as_u64()
                            .map_or("-".to_owned(), |c| c.to_string()),
                        run["started_at"].as_str().unwrap_or("-"),
                        run["ended_at"].as_str().unwrap_or("-"),
                    );
                }
            }
            Ok(EXIT_OK)
        }
        AgentCommand::Log { run_id } => {
            let supervisor = Supervisor::connect(ctx)?;
            let answer = supervisor
                .call(Method::GET, &format!("/api/runs/{run_id}"), None)?
                .map_err(refused)?;
            if ctx.out.is_json() {
                ctx.out.json(&answer)?;
            } else {
                print!("{}", answer["log"].as_str().unwrap_or_default());
                ctx.out.note(&format!(
                    "run {run_id}: {} (exit code {})",
                    answer["status"].as_str().unwrap_or("-"),
                    answer["exit_code"]
                ));
            }
            Ok(EXIT_OK)
        }
    }
}

/// Streams a run's masked output to stdout and stderr; answers its exit code.
fn follow_run(ctx: &Context, supervisor: &Supervisor, run_id: &str) -> Result<u8, CliError> {
    let json = ctx.out.is_json();
    let mut code = None;
    supervisor
        .stream(&format!("/api/runs/{run_id}/log?follow=true"), |line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or(serde_json::Value::Null);
            if json {
                println!("{line}");
            } else if let Some(data) = value["data"].as_str() {
                let _ = match value["stream"].as_str() {
                    Some("stderr") => writeln!(std::io::stderr(), "{data}"),
                    _ => writeln!(std::io::stdout(), "{data}"),
                };
            } else if let Some(event) = value["event"].as_str().filter(|e| *e != "exit") {
                ctx.out.note(&format!("shroud: {event}"));
            }
            if value["event"] == "exit" {
                code = value["code"].as_u64();
                return false;
            }
            true
        })?
        .map_err(refused)?;
    match code {
        Some(code) => Ok(code as u8),
        None => Err(CliError::Reported(format!(
            "the run's stream ended before the run did (agent log {run_id})"
        ))),
    }
}
