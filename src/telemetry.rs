//! Logging set-up (design.md §7): structured `tracing` output to stderr, filter from the
//! configuration or `RUST_LOG`. Document bodies and credentials are never logged above trace.

use tracing_subscriber::EnvFilter;

pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // A second init (tests) is harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Access log (issue #3 scope 5): one line per request with a request ID (also returned as
/// `X-Request-Id`), the principal, AUID, status and duration. Runs outermost, so 401s from
/// the authenticating front are logged too.
pub async fn access_log(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let started = std::time::Instant::now();
    let id = format!(
        "{:x}-{:x}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    );
    let method = req.method().clone();
    let uri = req.uri().path().to_string();
    let mut resp = next.run(req).await;
    let principal = resp
        .extensions()
        .get::<crate::authz::Principal>()
        .map(|p| match p {
            crate::authz::Principal::User(x) | crate::authz::Principal::Service(x) => x.clone(),
            crate::authz::Principal::Admin => "admin".to_string(),
            crate::authz::Principal::Anonymous => "-".to_string(),
        })
        .unwrap_or_else(|| "-".to_string());
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    tracing::info!(
        target: "xcapd::access",
        request_id = %id,
        method = %method,
        uri = %uri,
        auid = %auid_of(&uri),
        principal = %principal,
        status = resp.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

/// The first path segment after the XCAP root is the AUID; the log only needs a hint, so the
/// segment after the first is taken without knowing the configured root.
fn auid_of(path: &str) -> &str {
    path.split('/')
        .filter(|s| !s.is_empty())
        .nth(1)
        .unwrap_or("-")
}
