//! The proxy's HTTP middleware: runs the front on every request, answers 401 (with one
//! WWW-Authenticate per offered scheme), 403 or 429 itself, and otherwise passes the request on
//! with the `Principal` attached and the client's credentials and identity headers removed
//! (AP-04).

use crate::auth::trust::{
    X_3GPP_ASSERTED_IDENTITY, X_3GPP_INTENDED_IDENTITY, X_XCAP_ASSERTED_IDENTITY,
};
use crate::proxy::front::{AuthOutcome, Front, RequestInfo};
use crate::tls::PeerAddr;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::middleware::Next;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub async fn authenticate(
    State(front): State<Arc<Front>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    mut req: Request,
    next: Next,
) -> Response<Body> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let method = req.method().as_str().to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let outcome = front
        .authenticate(
            &RequestInfo {
                method: &method,
                target: &target,
                headers: &headers,
                peer: peer.ip(),
                tls: false,
            },
            now,
        )
        .await;
    let principal = match outcome {
        AuthOutcome::Authenticated(p) => p,
        AuthOutcome::Challenge(challenges) => {
            let mut r = plain(StatusCode::UNAUTHORIZED, "authentication required");
            for c in challenges {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    r.headers_mut().append(header::WWW_AUTHENTICATE, v);
                }
            }
            return r;
        }
        AuthOutcome::Throttled(secs) => {
            let mut r = plain(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed authentication attempts",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return r;
        }
        AuthOutcome::Forbidden => {
            return plain(
                StatusCode::FORBIDDEN,
                "not allowed to act as the intended identity",
            );
        }
    };
    let h = req.headers_mut();
    h.remove(header::AUTHORIZATION);
    h.remove(X_XCAP_ASSERTED_IDENTITY);
    h.remove(X_3GPP_ASSERTED_IDENTITY);
    h.remove(X_3GPP_INTENDED_IDENTITY);
    req.extensions_mut().insert(principal);
    next.run(req).await
}

fn plain(status: StatusCode, reason: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("{reason}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
