//! `GET /subscriptions[?user=XUI]` (issue #13 scope 9): the stored SIP subscriptions (RFC 6665
//! §4.2 dialogs of the xcap-diff notifier), all or one subscriber's, for operators.

use super::{json, AdminError, AdminState};
use crate::identity::xui::Xui;
use crate::xdms::generated::rfc3339;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Filter {
    user: Option<String>,
}

#[derive(Serialize)]
struct SubscriptionView {
    subscriber: String,
    event: String,
    call_id: String,
    local_tag: String,
    remote_tag: String,
    resources: Vec<String>,
    remote_target: String,
    route_set: Vec<String>,
    expires: String,
    expires_ms: u64,
    /// The change-feed position reported up to.
    notified_seq: u64,
}

pub(super) async fn list(
    State(state): State<Arc<AdminState>>,
    filter: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response<Body>, AdminError> {
    let Query(filter) =
        filter.map_err(|_| AdminError::BadRequest("the only parameter is user=XUI".into()))?;
    let subs = match filter.user {
        Some(raw) => {
            let xui = Xui::parse(&raw, state.default_domain.as_deref()).map_err(|e| {
                AdminError::BadRequest(format!("invalid user identifier {raw:?}: {e}"))
            })?;
            state
                .subscriptions
                .by_subscriber(xui.as_str().to_string())
                .await?
        }
        None => state.subscriptions.all().await?,
    };
    let views: Vec<SubscriptionView> = subs
        .into_iter()
        .map(|s| SubscriptionView {
            subscriber: s.subscriber,
            event: s.event,
            call_id: s.dialog.call_id,
            local_tag: s.dialog.local_tag,
            remote_tag: s.dialog.remote_tag,
            resources: s.resources,
            remote_target: s.remote_target,
            route_set: s.route_set,
            expires: rfc3339(s.expires_at_ms),
            expires_ms: s.expires_at_ms,
            notified_seq: s.notified_seq,
        })
        .collect();
    Ok(json(StatusCode::OK, &views))
}
