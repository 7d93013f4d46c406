//! `shroud serve [--listen ADDR] [--ca-file PEM]`: the HTTP API (default
//! 127.0.0.1:7878). `--ca-file` adds certificates (a private CA) that
//! `POST /api/fetch` trusts beside the bundled Mozilla roots.
//!
//! The store is opened once before listening, so a bad home or master key
//! fails at start (exit 2), not at the first request. The bound address is
//! reported on stderr (`--listen 127.0.0.1:0` picks a free port).

use clap::Args;

use super::{CliError, Context, EXIT_OK};
use crate::api::{self, ApiState};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
    listen: std::net::SocketAddr,
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("start the async runtime"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(io("listen on the address"))?;
        let bound = listener
            .local_addr()
            .map_err(io("read the bound address"))?;
        ctx.out
            .note(&format!("shroud serve: listening on http://{bound}"));
        let options = api::server::ServeOptions {
            max_connections: args.max_connections as usize,
            ..Default::default()
        };
        api::serve(listener, state, options)
            .await
            .map_err(io("serve"))
    })?;
    ctx.out.note("shroud serve: stopped");
    Ok(EXIT_OK)
}
