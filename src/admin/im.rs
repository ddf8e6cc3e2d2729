//! The IM Server for operators (issue #14 scopes 8–9): `GET /im/registrations?user=XUI` (the
//! registrar's bindings), `GET /im/deferred?user=XUI` (messages waiting for a user) and
//! `DELETE /im/deferred?user=XUI` (purged: never delivered, the sender told `failed` when
//! asked), `GET /im/charging?day=YYYY-MM-DD[&skip=N&limit=M]` (charging data records).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::{json, AdminError, AdminState};
use crate::identity::xui::Xui;
use crate::im::ImHandles;
use crate::storage::now_ms;
use crate::xdms::generated::rfc3339;

/// Records answered per page at most.
const MAX_PAGE: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct User {
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Day {
    day: String,
    #[serde(default)]
    skip: usize,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct BindingView {
    contact: String,
    expires_in: u64,
}

#[derive(Serialize)]
struct DeferredView {
    id: u64,
    sender: String,
    content_type: String,
    size: usize,
    created: String,
    expires: String,
    /// A delivery attempt holds it until then.
    claimed_until: Option<String>,
}

type Q<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn handles(state: &AdminState) -> Result<&ImHandles, AdminError> {
    state
        .im
        .get()
        .ok_or_else(|| AdminError::NotFound("the IM Server is not running".into()))
}

fn user(state: &AdminState, q: Q<User>) -> Result<String, AdminError> {
    let Query(q) = q.map_err(|_| AdminError::BadRequest("the parameter is user=XUI".into()))?;
    let xui = Xui::parse(&q.user, state.default_domain.as_deref()).map_err(|e| {
        AdminError::BadRequest(format!("invalid user identifier {:?}: {e}", q.user))
    })?;
    Ok(xui.as_str().to_string())
}

pub(super) async fn registrations(
    State(state): State<Arc<AdminState>>,
    q: Q<User>,
) -> Result<Response<Body>, AdminError> {
    let aor = user(&state, q)?;
    let now = now_ms();
    let views: Vec<BindingView> = handles(&state)?
        .registrar
        .bindings(&aor)
        .await
        .into_iter()
        .map(|b| BindingView {
            contact: b.uri,
            expires_in: b.expires_at_ms.saturating_sub(now).div_ceil(1000),
        })
        .collect();
    Ok(json(StatusCode::OK, &views))
}

pub(super) async fn deferred(
    State(state): State<Arc<AdminState>>,
    q: Q<User>,
) -> Result<Response<Body>, AdminError> {
    let owner = user(&state, q)?;
    let now = now_ms();
    let views: Vec<DeferredView> = handles(&state)?
        .deferred
        .waiting(&owner)
        .await?
        .into_iter()
        .map(|m| DeferredView {
            id: m.id,
            sender: m.message.sender,
            content_type: m.message.content_type,
            size: m.message.body.len(),
            created: rfc3339(m.message.created_ms),
            expires: rfc3339(m.message.expires_ms),
            claimed_until: (m.claimed_until_ms > now).then(|| rfc3339(m.claimed_until_ms)),
        })
        .collect();
    Ok(json(StatusCode::OK, &views))
}

pub(super) async fn purge(
    State(state): State<Arc<AdminState>>,
    q: Q<User>,
) -> Result<Response<Body>, AdminError> {
    let owner = user(&state, q)?;
    let purged = handles(&state)?.deferred.purge(&owner).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "user": owner, "purged": purged }),
    ))
}

pub(super) async fn charging(
    State(state): State<Arc<AdminState>>,
    q: Q<Day>,
) -> Result<Response<Body>, AdminError> {
    let Query(q) = q.map_err(|_| {
        AdminError::BadRequest("parameters: day=YYYY-MM-DD, skip=N, limit=M".into())
    })?;
    let limit = q.limit.unwrap_or(1000).min(MAX_PAGE);
    let lines = state
        .charging
        .read(q.day.clone(), q.skip, limit)
        .await
        .map_err(|e| match e {
            crate::storage::StorageError::InvalidKey(why) => AdminError::BadRequest(why),
            other => other.into(),
        })?;
    let records: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let next = (lines.len() == limit).then_some(q.skip + limit);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "day": q.day, "records": records, "next_skip": next }),
    ))
}
