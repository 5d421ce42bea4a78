//! kaizen's own `/health` (JSON) and `/metrics` (Prometheus text) over HTTP, for `kaizen run`
//! and for any host embedding the runtime (mount [`router`] into its own axum app, or run
//! [`serve`] on a listener of its own).
//!
//! # Invariants
//! - Answers never wait for the loop: both are read from the snapshot the runtime took after
//!   its last step, so a wedged step cannot wedge the monitoring of it (it shows as a loop that
//!   stopped finishing cycles, and `/health` turns `degraded`).
//! - Read-only: nothing served here changes kaizen's state.
//! - Loopback by default ([`kaizen_core::config::DEFAULT_LISTEN`]); any other address is the
//!   operator's explicit choice and is logged as such.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kaizen_core::runtime::Handle;
use std::net::SocketAddr;

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The HTTP endpoint could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound (taken, or not this host's).
    #[error("cannot serve /health and /metrics on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped on an I/O error.
    #[error("the /health and /metrics server failed: {0}")]
    Io(#[source] std::io::Error),
}

/// The routes `/health` and `/metrics` for `handle`, to serve alone or merge into a host's app.
pub fn router(handle: Handle) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(handle)
}

/// Binds `addr` (a non-loopback address is logged: it exposes kaizen's state to the network).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "kaizen stage=serve serving /health and /metrics on {addr}, which is not loopback"
        );
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves [`router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: Handle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    axum::serve(listener, router(handle))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Io)
}

fn unavailable(handle: &Handle) -> Response {
    let why = if handle.is_running() {
        "kaizen is starting: no snapshot yet"
    } else {
        "the kaizen runtime is not running"
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "status": "unavailable", "why": [why] }).to_string(),
    )
        .into_response()
}

/// `/health`: 200 with the snapshot (running, paused or degraded — a degraded kaizen is alive
/// and says why); 503 when the runtime is not running.
async fn health(State(handle): State<Handle>) -> Response {
    match handle.health() {
        Some(h) if handle.is_running() => match serde_json::to_string_pretty(&h) {
            Ok(body) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        _ => unavailable(&handle),
    }
}

/// `/metrics`: the Prometheus text exposition.
async fn metrics(State(handle): State<Handle>) -> Response {
    match handle.metrics() {
        Some(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
            text,
        )
            .into_response(),
        None => unavailable(&handle),
    }
}
