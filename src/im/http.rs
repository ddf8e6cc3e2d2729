//! HTTP edge of the conversation history (issue #14 scope 6; IM-32), behind the Aggregation
//! Proxy's authentication: `GET /im/v1/history/users/{xui}[?peer=URI&after=ID&limit=N]`
//! answers the owner (or a service or admin principal; anyone in development mode) with
//! `{owner, peer, messages: [{id, time, direction, from, to, content_type, body |
//! body_base64}], next_after}`, oldest first. Others get 403; 404 when history is off.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Response, StatusCode};
use base64::Engine as _;
use serde_json::json;

use super::history::History;
use crate::authz::Principal;
use crate::identity::Xui;
use crate::xdms::generated::rfc3339;

pub const PATH: &str = "/im/v1/history/users/{xui}";
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// What the handler needs.
#[derive(Clone)]
pub struct HistoryState {
    pub history: Option<Arc<History>>,
    pub default_domain: Option<String>,
}

pub async fn history(
    State(state): State<HistoryState>,
    Path(raw): Path<String>,
    req: Request,
) -> Response<Body> {
    let Some(history) = &state.history else {
        return error(StatusCode::NOT_FOUND, "conversation history is not enabled");
    };
    let Ok(owner) = Xui::parse(&raw, state.default_domain.as_deref()) else {
        return error(StatusCode::BAD_REQUEST, "not a user identifier");
    };
    let owner = owner.as_str().to_string();
    match req.extensions().get::<Principal>() {
        Some(Principal::User(me)) if *me != owner => {
            return error(StatusCode::FORBIDDEN, "only the owner reads a history")
        }
        Some(Principal::Anonymous) => {
            return error(StatusCode::UNAUTHORIZED, "authentication required")
        }
        // The owner, a service or the admin; no principal: development mode.
        _ => {}
    }
    let query = req.uri().query().unwrap_or("");
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_encoding::percent_decode_str(v).decode_utf8_lossy())
    };
    let number = |name: &str| param(name).map(|v| v.parse::<u64>());
    let (after, limit) = match (number("after"), number("limit")) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => {
            return error(
                StatusCode::BAD_REQUEST,
                "after and limit are non-negative integers",
            )
        }
        (a, l) => (
            a.and_then(Result::ok).unwrap_or(0),
            l.and_then(Result::ok)
                .map_or(DEFAULT_LIMIT, |l| (l as usize).clamp(1, MAX_LIMIT)),
        ),
    };
    let peer = param("peer").map(|p| p.into_owned());
    let (messages, next) = match history.page(&owner, peer.as_deref(), after, limit).await {
        Ok(page) => page,
        Err(e) => {
            tracing::error!(target: "xcapd::im", error = %e, "history read failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable");
        }
    };
    let items: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let msg = &m.message;
            let sent = msg.sender == owner;
            // RFC 3323: a sender who asked for privacy stays anonymous to the recipient.
            let hidden = !sent
                && msg.headers.iter().any(|(n, v)| {
                    n.eq_ignore_ascii_case("Privacy")
                        && v.split([';', ','])
                            .any(|t| t.trim().eq_ignore_ascii_case("id"))
                });
            let from = if hidden {
                "sip:anonymous@anonymous.invalid"
            } else {
                msg.sender.as_str()
            };
            let mut item = json!({
                "id": m.id,
                "time": rfc3339(msg.created_ms),
                "direction": if sent { "sent" } else { "received" },
                "from": from,
                "to": msg.recipient,
                "content_type": msg.content_type,
            });
            match std::str::from_utf8(&msg.body) {
                Ok(text) => item["body"] = json!(text),
                Err(_) => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&msg.body);
                    item["body_base64"] = json!(b64)
                }
            }
            item
        })
        .collect();
    let body = json!({"owner": owner, "peer": peer, "messages": items, "next_after": next});
    reply(StatusCode::OK, &body)
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    reply(status, &json!({ "error": message }))
}

fn reply(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("{body}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
