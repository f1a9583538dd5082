//! The Trellis HTTP server: JSON API under `/api/v1`, the server-rendered UI,
//! health probes.
//!
//! Architecture invariant: this is the only crate that knows HTTP, cookies and
//! JSON request shapes. It turns requests into `trellis_store` calls; every
//! authorization decision goes through `authz` from the route table in `routes`.

pub mod api;
pub mod auth;
pub mod authz;
pub mod crf;
pub mod demo;
pub mod edc;
pub mod edc_api;
pub mod edc_ui;
pub mod i18n;
pub mod odm_import;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod sdv;
pub mod source_queries;
pub mod study_ui;
pub mod subjects;
pub mod totp;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use trellis_store::Store;

/// Server settings (the binary fills them from flags, environment and config file).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Idle timeout of a browser session.
    pub session_idle: Duration,
    /// Absolute lifetime of a browser session.
    pub session_absolute: Duration,
    /// Failed sign-ins before an account is locked.
    pub lockout_after: u32,
    /// Mark cookies `Secure` (set when Trellis is served over HTTPS).
    pub secure_cookies: bool,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            session_idle: Duration::from_secs(30 * 60),
            session_absolute: Duration::from_secs(12 * 60 * 60),
            lockout_after: 5,
            secure_cookies: false,
            max_body_bytes: 1024 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    pub i18n: i18n::I18n,
    pub designs: edc::DesignCache,
}

impl AppState {
    pub fn new(store: Store, config: ServerConfig) -> Result<Self, String> {
        Ok(Self {
            store,
            config: Arc::new(config),
            i18n: i18n::I18n::load()?,
            designs: edc::DesignCache::default(),
        })
    }
}

/// The whole application, ready to serve.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
