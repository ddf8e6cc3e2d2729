//! The admin HTTP API (design.md §2 L3 edge, §7; issue #3 scope 6), served on its own listener:
//! users and their Digest credentials (RFC 7616 §3.4.2: HA1 only), a user's XCAP documents
//! (RFC 4825 §6.2 home directory), backup and restore of those documents through the XDMS (so
//! restored documents pass the same validation, constraints, ETags and change events as any XCAP
//! PUT, RFC 4825 §8.2), bearer JWTs for users (RFC 7519), liveness, readiness and Prometheus
//! metrics.
//!
//! Every route but `/health` and `/ready` requires `Authorization: Bearer <admin token>`
//! (RFC 6750 §2.1), compared in constant time. Errors are JSON `{"error": "..."}` and never
//! carry internal text.

mod api;
mod auth;
mod backup;
mod im;
mod subscriptions;

pub use auth::{resolve_token, GENERATED_TOKEN_FILE, MIN_TOKEN_LEN};

use crate::auth::jwt::{JwtError, JwtIssuer, JwtSigningKey};
use crate::metrics::Metrics;
use crate::storage::credentials::CredentialStore;
use crate::storage::{DocumentStore, StorageError};
use crate::xdms::Xdms;
use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use std::sync::Arc;

/// Default largest body of `POST /users/{xui}/import`.
pub const DEFAULT_MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;

/// Everything the admin handlers use.
pub struct AdminState {
    pub xdms: Arc<Xdms>,
    pub store: Arc<dyn DocumentStore>,
    pub creds: Arc<dyn CredentialStore>,
    /// The xcap-diff notifier's subscriptions (`GET /subscriptions`).
    pub subscriptions: Arc<dyn crate::storage::subscriptions::SubscriptionStore>,
    pub metrics: Arc<Metrics>,
    /// The admin bearer token (see [`resolve_token`]).
    pub token: String,
    /// Signs user JWTs; None answers `POST /users/{xui}/token` with 501.
    pub issuer: Option<Arc<JwtIssuer>>,
    /// XCAP root path, e.g. `/xcap-root` (import builds XCAP URIs under it).
    pub root_path: String,
    /// Domain of bare user names (IO-01d) and realm of users without a domain.
    pub default_domain: Option<String>,
    /// Largest accepted import body.
    pub max_import_bytes: usize,
    /// The IM Server's charging data records (`GET /im/charging`).
    pub charging: Arc<dyn crate::storage::charging::ChargingLog>,
    /// The running IM Server (set once SIP is up; `/im/...` answer 404 without it).
    pub im: Arc<std::sync::OnceLock<crate::im::ImHandles>>,
}

// The token is a secret: keep it out of logs.
impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("token", &"<redacted>")
            .field("issuer", &self.issuer)
            .field("root_path", &self.root_path)
            .field("default_domain", &self.default_domain)
            .finish_non_exhaustive()
    }
}

/// Errors of the admin API and of its set-up. Each maps to one HTTP status; only the
/// client-facing variants show their text.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid admin bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("{0}")]
    NotImplemented(&'static str),
    #[error("storage unavailable")]
    Unavailable,
    /// Logged, answered as a bare "internal error".
    #[error("internal error: {0}")]
    Internal(String),
    /// Start-up: the admin token cannot be read, generated or is too weak.
    #[error("admin token: {0}")]
    Token(String),
    /// Start-up: the JWT signing key cannot be used.
    #[error("JWT signing key: {0}")]
    Jwt(#[from] JwtError),
}

impl From<StorageError> for AdminError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::InvalidKey(reason) => AdminError::BadRequest(reason),
            StorageError::Unavailable(_) => AdminError::Unavailable,
            other => AdminError::Internal(format!("storage: {other}")),
        }
    }
}

impl AdminError {
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            AdminError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal(_) | AdminError::Token(_) | AdminError::Jwt(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl axum::response::IntoResponse for AdminError {
    fn into_response(self) -> axum::response::Response {
        let message = match &self {
            AdminError::Internal(_) | AdminError::Token(_) | AdminError::Jwt(_) => {
                tracing::error!(target: "xcapd::admin", error = %self, "admin request failed");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let mut response = json(self.status(), &ErrorBody { error: message });
        if matches!(self, AdminError::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"xcapd-admin\""),
            );
        }
        response
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

/// A JSON response with `status`.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            let mut r = Response::new(Body::from(bytes));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::error!(target: "xcapd::admin", error = %e, "cannot serialize a response");
            let mut r = Response::new(Body::from("{\"error\":\"internal error\"}\n"));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    }
}

/// Builds the HS256 issuer of user tokens from the secret file the verifier uses
/// (`auth.jwt_hs256_secret_file`; trailing whitespace is dropped as the verifier does), with the
/// verifier's `iss` and `aud` so issued tokens are accepted. None when no file is configured.
pub fn hs256_issuer(
    secret_file: &str,
    issuer: &str,
    audience: &str,
) -> Result<Option<JwtIssuer>, AdminError> {
    if secret_file.is_empty() {
        return Ok(None);
    }
    let mut secret = std::fs::read(secret_file)
        .map_err(|e| AdminError::Jwt(JwtError::InvalidKey(format!("{secret_file}: {e}"))))?;
    while secret.last().is_some_and(|b| b.is_ascii_whitespace()) {
        secret.pop();
    }
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Ok(Some(JwtIssuer::new(
        JwtSigningKey::Hs256 { secret },
        non_empty(issuer),
        non_empty(audience),
    )?))
}

/// The admin router. `/health` and `/ready` are open; everything else, unknown paths included,
/// needs the admin token.
pub fn router(state: AdminState) -> Router {
    let state = Arc::new(state);
    let protected = Router::new()
        .route("/metrics", get(api::metrics))
        .route("/users", get(api::list_users))
        .route(
            "/users/{xui}",
            get(api::get_user)
                .put(api::put_user)
                .delete(api::delete_user),
        )
        .route("/users/{xui}/password", post(api::set_password))
        .route("/users/{xui}/documents", get(api::list_documents))
        .route("/users/{xui}/export", get(backup::export))
        .route("/users/{xui}/import", post(backup::import))
        .route("/users/{xui}/token", post(api::issue_token))
        .route("/subscriptions", get(subscriptions::list))
        .route("/im/registrations", get(im::registrations))
        .route("/im/deferred", get(im::deferred).delete(im::purge))
        .route("/im/charging", get(im::charging))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/health", get(api::health))
        .route("/ready", get(api::ready))
        .merge(protected)
        .with_state(state)
}
