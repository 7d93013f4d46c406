//! `shroud serve [--listen ADDR]`: the HTTP API (default 127.0.0.1:7878).
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
}

pub fn run(ctx: &Context, args: ServeArgs) -> Result<u8, CliError> {
    let state = ApiState::new(ctx.home.clone(), ctx.master_key_env.clone());
    state.check()?;
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
        api::serve(listener, state).await.map_err(io("serve"))
    })?;
    ctx.out.note("shroud serve: stopped");
    Ok(EXIT_OK)
}
