//! HTTP edge of the policy decision service: `POST /policy/v1/im/decide` with JSON
//! `{recipient, sender, media, anonymous}` answered by `{action, matched_rules, documents,
//! unresolved, default_applied}`. Only service and admin principals may ask.

use super::{DecideRequest, DecisionError, DecisionService};
use crate::authz::Principal;
use crate::policy::ImAction;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Response, StatusCode};
use std::sync::Arc;

pub const PATH: &str = "/policy/v1/im/decide";
const MAX_BODY: usize = 16 * 1024;

pub async fn decide(State(service): State<Arc<DecisionService>>, req: Request) -> Response<Body> {
    match req.extensions().get::<Principal>() {
        Some(Principal::Service(_)) | Some(Principal::Admin) => {}
        Some(Principal::User(_)) => {
            return json_error(
                StatusCode::FORBIDDEN,
                "only service principals may ask for decisions",
            )
        }
        _ => return json_error(StatusCode::UNAUTHORIZED, "authentication required"),
    }
    let bytes = match crate::body::read_limited(req.into_body(), MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(crate::body::BodyError::TooLarge) => {
            return json_error(StatusCode::PAYLOAD_TOO_LARGE, "request too large")
        }
        Err(crate::body::BodyError::Malformed) => {
            return json_error(StatusCode::BAD_REQUEST, "malformed request body framing")
        }
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return json_error(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let Some(recipient) = text("recipient") else {
        return json_error(StatusCode::BAD_REQUEST, "recipient is required");
    };
    let request = DecideRequest {
        recipient,
        sender: text("sender"),
        media: text("media"),
        anonymous: v
            .get("anonymous")
            .and_then(|x| x.as_bool())
            .unwrap_or(false),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // A decision is ~0.1 ms of CPU on cached parses: cheaper inline than a thread hand-off.
    match service.decide_async(&request, now).await {
        Ok(d) => {
            let body = serde_json::json!({
                "action": action_name(d.action),
                "matched_rules": d.matched_rules,
                "documents": d.documents.iter().map(|x| serde_json::json!({"uri": x.uri, "etag": x.etag})).collect::<Vec<_>>(),
                "unresolved": d.unresolved,
                "default_applied": d.default_applied,
                "allow_offline_storage": d.allow_offline_storage,
                "record_history": d.record_history,
            });
            json(StatusCode::OK, body.to_string())
        }
        Err(DecisionError::BadRequest(m)) => json_error(StatusCode::BAD_REQUEST, &m),
        Err(DecisionError::Xcap(e)) => {
            tracing::error!(error = %e, "decision failed");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

pub fn action_name(a: ImAction) -> &'static str {
    match a {
        ImAction::Block => "block",
        ImAction::PoliteBlock => "polite-block",
        ImAction::Allow => "allow",
    }
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, serde_json::json!({ "error": message }).to_string())
}
