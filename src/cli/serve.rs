//! `shroud serve [--listen ADDR] [--ca-file PEM]`: the HTTP API (default
//! 127.0.0.1:7878). `--ca-file` adds certificates (a private CA) that
//! `POST /api/fetch` trusts beside the bundled Mozilla roots.
//!
//! `serve` is also the home's supervisor: it keeps the deployments and
//! agent runs (`supervisor::manager`) and always listens on
//! `<home>/shroud.sock` (mode 0600, same-user peers only), where `deploy`
//! and `agent` find it. One supervisor per home: it holds
//! `<home>/supervisor.lock`; a second `serve` of the same home serves the
//! API on its port without deployments (and says so), and a second
//! `serve --no-listen` (how `deploy` starts one in the background) exits.
//! The lock is an flock on the home directory (deleting a file cannot take
//! it away); `<home>/supervisor.lock` holds the supervisor's pid.
//!
//! The store is opened once before listening, so a bad home or master key
//! fails at start (exit 2), not at the first request. The bound address is
//! reported on stderr (`--listen 127.0.0.1:0` picks a free port).

use clap::Args;

use super::{CliError, Context, EXIT_OK};
use crate::api::{self, ApiState};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (a host name such as localhost works).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
    listen: String,
    /// Only the supervisor's socket (<home>/shroud.sock), no TCP port: how
    /// `deploy` and `agent` start a supervisor in the background.
    #[arg(long, conflicts_with = "listen")]
    no_listen: bool,
    /// PEM certificates `POST /api/fetch` trusts too (a private CA).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<std::path::PathBuf>,
    /// A range `POST /api/fetch` may reach beside public addresses (loopback,
    /// private, link-local, multicast and unspecified ones are refused
    /// otherwise). Repeatable: `--fetch-allow 10.0.0.0/8`.
    #[arg(long = "fetch-allow", value_name = "CIDR")]
    fetch_allow: Vec<String>,
    /// Connections open at once at most; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = api::server::DEFAULT_MAX_CONNECTIONS as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// Store connections open at once at most (each request holds one while
    /// it runs; more wait for one, then get 503).
    #[arg(long, value_name = "N", default_value_t = api::DEFAULT_DB_CONNECTIONS as u32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    db_connections: u32,
    /// Sandbox commands run at once at most; more get 429.
    #[arg(long, value_name = "N", default_value_t = api::DEFAULT_MAX_RUNS as u32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_runs: u32,
    /// Agent runs at once at most; more get 429.
    #[arg(long, value_name = "N", default_value_t = crate::supervisor::manager::DEFAULT_MAX_AGENT_RUNS as u32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_agent_runs: u32,
    /// How log lines look (stderr; one per request at `info`, the
    /// default level; `SHROUD_LOG` sets another). `--json` means json.
    #[arg(long, value_enum, value_name = "text|json", default_value = "text")]
    log_format: LogFormat,
}

/// The two forms of `serve`'s log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-01T12:00:00.000Z  INFO request method=GET path=/api/health status=200 ms=0.4 token=-`
    Text,
    /// One JSON object per line.
    Json,
}

impl ServeArgs {
    /// The server logs at `info` (one line per request), as JSON with
    /// `--log-format json` or `--json`.
    pub fn log_settings(&self, json: bool) -> super::LogSettings {
        super::LogSettings {
            default_level: tracing::Level::INFO,
            json: json || self.log_format == LogFormat::Json,
        }
    }
}

pub fn run(ctx: &Context, args: ServeArgs) -> Result<u8, CliError> {
    let state = ApiState::on_store(
        ctx.home.clone(),
        ctx.master_key_env.clone(),
        ctx.location.clone(),
    );
    state.set_max_runs(args.max_runs as usize);
    state.set_db_connections(args.db_connections as usize);
    state.check()?;
    let allowed = args
        .fetch_allow
        .iter()
        .map(|text| {
            api::destinations::FetchPolicy::parse_range(text)
                .map_err(|e| CliError::Usage(format!("--fetch-allow: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pem = match &args.ca_file {
        Some(file) => Some(std::fs::read(file).map_err(|e| {
            CliError::Usage(format!("--ca-file {}: cannot read it: {e}", file.display()))
        })?),
        None => None,
    };
    let added = state
        .configure_fetch(pem.as_deref(), allowed)
        .map_err(|e| match &args.ca_file {
            Some(file) => CliError::Usage(format!("--ca-file {}: {e}", file.display())),
            None => CliError::Usage(e),
        })?;
    if added > 0 {
        tracing::info!(added, "fetch trusts extra certificates");
    }
    let io = |context| move |source| CliError::Io { context, source };
    // The lock is on the home directory itself (a file could be deleted
    // and made again under a running supervisor); the pid goes in a file
    // beside it, for people and tools.
    let lock_path = ctx.home.join(SUPERVISOR_LOCK);
    let lock =
        crate::sys::fd::try_lock_directory(&ctx.home).map_err(io("take the supervisor's lock"))?;
    if lock.is_none() {
        if args.no_listen {
            ctx.out
                .note("shroud serve: a supervisor already runs for this home");
            return Ok(EXIT_OK);
        }
        ctx.out.warn(&format!(
            "another `shroud serve` supervises the deployments of {} (see {}); this one serves the API without them",
            ctx.home.display(),
            lock_path.display()
        ));
    }
    if lock.is_some() {
        let _ = std::fs::write(&lock_path, format!("{}\n", std::process::id()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("start the async runtime"))?;
    let socket_path = ctx.home.join(SOCKET_FILE);
    runtime.block_on(async {
        let tcp = if args.no_listen {
            None
        } else {
            let listener = tokio::net::TcpListener::bind(&args.listen)
                .await
                .map_err(|e| CliError::Usage(format!("cannot listen on {}: {e}", args.listen)))?;
            let bound = listener
                .local_addr()
                .map_err(io("read the bound address"))?;
            ctx.out
                .note(&format!("shroud serve: listening on http://{bound}"));
            Some(listener)
        };
        let unix = if lock.is_some() {
            // The lock is ours: a socket file left there is a dead one's.
            let _ = std::fs::remove_file(&socket_path);
            let listener = {
                // Created 0600 (no window where another user could connect).
                let _umask = crate::sys::proc::restrictive_umask();
                tokio::net::UnixListener::bind(&socket_path)
                    .map_err(io("listen on the supervisor's socket"))?
            };
            std::fs::set_permissions(
                &socket_path,
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .map_err(io("restrict the supervisor's socket"))?;
            ctx.out.note(&format!(
                "shroud serve: supervising deployments on {}",
                socket_path.display()
            ));
            state.start_manager(
                crate::supervisor::manager::Timings::default(),
                args.max_agent_runs as usize,
            );
            Some(listener)
        } else {
            None
        };
        let options = api::server::ServeOptions {
            max_connections: args.max_connections as usize,
            ..Default::default()
        };
        api::serve_all(tcp, unix, state, options)
            .await
            .map_err(io("serve"))
    })?;
    if lock.is_some() {
        let _ = std::fs::remove_file(&socket_path);
    }
    drop(lock);
    ctx.out.note("shroud serve: stopped");
    Ok(EXIT_OK)
}

/// The supervisor's socket, in the home.
pub const SOCKET_FILE: &str = "shroud.sock";
/// The pid of the home's supervisor (which holds a lock on the home
/// directory itself while it runs).
pub const SUPERVISOR_LOCK: &str = "supervisor.lock";
