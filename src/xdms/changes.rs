//! HTTP edge of the change feed (issue #13 scope 7, issue #15): `GET /changes?after=SEQ`
//! gives trusted readers on other nodes (a notifier at the Aggregation Proxy, another xcapd)
//! this node's ordered, resumable change log as JSON, with long polling (`wait`, seconds).
//! Only service and admin principals may read it (the records name principals and carry
//! document content). Trimmed changes answer 410 with the point to resync from.

use crate::authz::Principal;
use crate::event::{ChangeRecord, EditKind, Placement};
use crate::storage::{ChangeFeed, StorageError, TreeKey};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

pub const PATH: &str = "/changes";
const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 5000;
const MAX_WAIT_SECS: u64 = 30;

pub async fn changes(State(feed): State<ChangeFeed>, req: Request) -> Response<Body> {
    match req.extensions().get::<Principal>() {
        Some(Principal::Service(_)) | Some(Principal::Admin) => {}
        Some(Principal::User(_)) => {
            return reply(
                StatusCode::FORBIDDEN,
                json!({"error": "only service principals may read the change log"}),
            )
        }
        _ => {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "authentication required"}),
            )
        }
    }
    let query = req.uri().query().unwrap_or("");
    let param = |name: &str| -> Result<Option<u64>, ()> {
        match query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
        {
            None => Ok(None),
            Some((_, v)) => v.parse().map(Some).map_err(drop),
        }
    };
    let (Ok(after), Ok(limit), Ok(wait)) = (param("after"), param("limit"), param("wait")) else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "after, limit and wait are non-negative integers"}),
        );
    };
    let limit = limit.map_or(DEFAULT_LIMIT, |l| (l as usize).clamp(1, MAX_LIMIT));
    let wait = Duration::from_secs(wait.unwrap_or(0).min(MAX_WAIT_SECS));
    let after = after.unwrap_or(0);
    match feed.page(after, limit, wait).await {
        Ok(page) => reply(
            StatusCode::OK,
            json!({
                "head": feed.head(),
                "changes": page.iter().map(record_json).collect::<Vec<_>>(),
            }),
        ),
        Err(StorageError::ChangesTrimmed { through }) => reply(
            StatusCode::GONE,
            json!({"error": "trimmed", "trimmed_through": through, "head": feed.head()}),
        ),
        Err(e) => {
            tracing::error!(error = %e, "change log read failed");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal error"}),
            )
        }
    }
}

/// The JSON form of one change record.
pub fn record_json(r: &ChangeRecord) -> Value {
    let (tree, xui) = match &r.key.tree {
        TreeKey::Global => ("global", None),
        TreeKey::User(x) => ("users", Some(x.as_str())),
    };
    let edit = r.origin.edit.as_ref().map(|e| {
        json!({
            "kind": match e.kind {
                EditKind::PutElement => "put-element",
                EditKind::DeleteElement => "delete-element",
                EditKind::PutAttribute => "put-attribute",
                EditKind::DeleteAttribute => "delete-attribute",
                EditKind::ReplaceDocument => "replace-document",
            },
            "node_selector": e.node_selector,
            "namespaces": e.namespaces.iter().map(|(p, u)| json!([p, u])).collect::<Vec<_>>(),
            "value": e.value,
            "position": e.position,
            "created": e.created,
            "placement": e.placement.map(|p| match p {
                Placement::AfterPrevious => "after-previous",
                Placement::BeforeNext => "before-next",
                Placement::Append => "append",
                Placement::Prepend => "prepend",
            }),
        })
    });
    json!({
        "seq": r.seq,
        "document": r.document_selector(),
        "auid": r.key.auid,
        "tree": tree,
        "xui": xui,
        "path": r.key.path,
        "previous_etag": r.previous_etag,
        "new_etag": r.new_etag,
        "at_ms": r.at_ms,
        "principal": r.origin.principal,
        "edit": edit,
    })
}

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
