//! The accept loop of `shroud serve`: HTTP/1.1 connections under two bounds
//! a slow or hostile client cannot lift.
//!
//! - **Headers in time.** A request's headers must arrive within
//!   [`ServeOptions::header_timeout`] (10 s) of the connection waiting for
//!   them, the first request's and every keep-alive request's alike;
//!   otherwise the connection is closed. A client that opens a connection
//!   and sends half a request holds it for that long, no longer.
//! - **Connections bounded.** At most [`ServeOptions::max_connections`]
//!   are open at once; the next waits in the listen backlog, unaccepted,
//!   until one closes (so the server's descriptors and memory stay bounded
//!   however many clients connect).
//!
//! hyper's own HTTP/1 connection does the parsing and the header timer (with
//! tokio's timer; axum's `serve` sets none, so its timeout never fires).
//! Shutdown stops accepting and lets the connections in flight finish. The
//! loop is generic over axum's `Listener`, so the TCP listener and (for the
//! local supervisor) a Unix socket share it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::serve::Listener;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt as _;

/// How long a request's headers may take to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The bounds of [`serve_on`].
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: HEADER_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for
/// the connections in flight (idle keep-alive ones are closed at once).
pub async fn serve_on<L>(
    mut listener: L,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first: beyond the bound, connections wait unaccepted.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        tracing::trace!(?peer, "connection accepted");
        let app = router.clone();
        let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                app.clone().oneshot(request.map(Body::new))
            });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_timeout)
            .serve_connection(TokioIo::new(io), service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The supervisor's Unix socket listener: a peer whose uid is not this
/// process's is dropped as it connects (SO_PEERCRED), whatever the mode of
/// the socket file says.
pub struct PeerCheckedUnixListener {
    inner: tokio::net::UnixListener,
    uid: u32,
}

impl PeerCheckedUnixListener {
    pub fn new(inner: tokio::net::UnixListener) -> Self {
        PeerCheckedUnixListener {
            inner,
            uid: crate::sys::proc::ids().0,
        }
    }
}

impl Listener for PeerCheckedUnixListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = Listener::accept(&mut self.inner).await;
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == self.uid => return (stream, addr),
                Ok(cred) => {
                    tracing::warn!(uid = cred.uid(), "refused a connection from another user");
                }
                Err(e) => tracing::warn!(error = %e, "cannot read a peer's credentials"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
