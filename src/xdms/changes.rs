//! HTTP edge of the change feed (issue #13 scope 7, issue #15): `GET /changes?after=SEQ`
//! gives trusted readers on other nodes (a notifier at the Aggregation Proxy, another xcapd)
//! this node's ordered, resumable change log as JSON, with long polling (`wait`, seconds).
//! Only service and admin principals may read it (the records name principals and carry
//! document content). Trimmed changes answer 410 with the point to resync from.

use crate::authz::Principal;
use crate::event::{ChangeOrigin, ChangeRecord, Edit, EditKind, Placement};
use crate::storage::{ChangeFeed, DocKey, StorageError, TreeKey};
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

/// A record back from its JSON form ([`record_json`]), as a reader on another node gets it;
/// `None` when it is not one.
pub fn record_from_json(v: &Value) -> Option<ChangeRecord> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let opt = |name: &str| -> Option<Option<String>> {
        match v.get(name)? {
            Value::Null => Some(None),
            other => Some(Some(text(other)?)),
        }
    };
    let tree = match v.get("tree")?.as_str()? {
        "global" => TreeKey::Global,
        "users" => TreeKey::User(text(v.get("xui")?)?),
        _ => return None,
    };
    let edit = match v.get("edit")? {
        Value::Null => None,
        e => Some(edit_from_json(e)?),
    };
    Some(ChangeRecord {
        seq: v.get("seq")?.as_u64()?,
        key: DocKey::new(text(v.get("auid")?)?, tree, text(v.get("path")?)?),
        previous_etag: opt("previous_etag")?,
        new_etag: opt("new_etag")?,
        at_ms: v.get("at_ms")?.as_u64()?,
        origin: ChangeOrigin {
            principal: opt("principal")?,
            edit,
        },
    })
}

fn edit_from_json(e: &Value) -> Option<Edit> {
    let kind = match e.get("kind")?.as_str()? {
        "put-element" => EditKind::PutElement,
        "delete-element" => EditKind::DeleteElement,
        "put-attribute" => EditKind::PutAttribute,
        "delete-attribute" => EditKind::DeleteAttribute,
        "replace-document" => EditKind::ReplaceDocument,
        _ => return None,
    };
    let placement = match e.get("placement")? {
        Value::Null => None,
        p => Some(match p.as_str()? {
            "after-previous" => Placement::AfterPrevious,
            "before-next" => Placement::BeforeNext,
            "append" => Placement::Append,
            "prepend" => Placement::Prepend,
            _ => return None,
        }),
    };
    let namespaces = e
        .get("namespaces")?
        .as_array()?
        .iter()
        .map(|pair| {
            let pair = pair.as_array()?;
            Some((
                pair.first()?.as_str()?.to_string(),
                pair.get(1)?.as_str()?.to_string(),
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Edit {
        kind,
        node_selector: e.get("node_selector")?.as_str()?.to_string(),
        namespaces,
        value: match e.get("value")? {
            Value::Null => None,
            v => Some(v.as_str()?.to_string()),
        },
        position: match e.get("position")? {
            Value::Null => None,
            p => Some(u32::try_from(p.as_u64()?).ok()?),
        },
        created: e.get("created")?.as_bool()?,
        placement,
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

#[cfg(test)]
mod tests {
    use super::*;

    // XE-24 (issue #13 scope 7): a reader on another node gets back exactly the record the
    // node wrote: keys of both trees, creations and deletions, and the edit a patch needs.
    #[test]
    fn records_read_back_from_their_json() {
        let edit = Edit {
            kind: EditKind::PutElement,
            node_selector: "resource-lists/list[@name=\"f\"]/x:entry".into(),
            namespaces: vec![("x".into(), "urn:x".into())],
            value: Some("<entry uri=\"sip:a@x\"/>".into()),
            position: Some(3),
            created: true,
            placement: Some(Placement::BeforeNext),
        };
        let records = [
            ChangeRecord {
                seq: 7,
                key: DocKey::new("resource-lists", TreeKey::User("sip:a@x".into()), "index"),
                previous_etag: Some("e1".into()),
                new_etag: Some("e2".into()),
                at_ms: 1234,
                origin: ChangeOrigin {
                    principal: Some("sip:a@x".into()),
                    edit: Some(edit),
                },
            },
            ChangeRecord {
                seq: 8,
                key: DocKey::new("xcap-caps", TreeKey::Global, "dir/index"),
                previous_etag: None,
                new_etag: None,
                at_ms: 0,
                origin: ChangeOrigin::default(),
            },
        ];
        for r in records {
            assert_eq!(record_from_json(&record_json(&r)), Some(r));
        }
        assert_eq!(record_from_json(&json!({"seq": 1})), None);
    }
}
