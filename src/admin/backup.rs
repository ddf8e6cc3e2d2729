//! Backup and restore of one user's XCAP documents (RFC 4825 §6.2 home directory). Export reads
//! the stored documents; import writes each one as an XCAP document PUT through the XDMS
//! (RFC 4825 §7.1, §8.2) acting as the operator, so schema validation (§8.2.5), the usage's
//! constraints, new ETags (§8.5) and change events apply exactly as for a client's PUT.
//!
//! An export is consistent per document, not across documents: writes that land while it runs
//! may or may not be in it.

use super::api::{read_json, xui_param};
use super::{json, AdminError, AdminState};
use crate::storage::now_ms;
use crate::xdms::generated::rfc3339;
use crate::xdms::operator::{describe, put_document};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Content type of exported documents whose AUID the registry no longer knows.
const UNKNOWN_USAGE_TYPE: &str = "application/xml";

#[derive(Serialize)]
struct Export {
    xui: String,
    /// xs:dateTime (UTC) when the export started.
    exported: String,
    documents: Vec<ExportedDocument>,
}

#[derive(Serialize)]
struct ExportedDocument {
    auid: String,
    path: String,
    content_type: String,
    etag: String,
    body: String,
}

/// `GET /users/{xui}/export`: every stored document of the user with its body.
pub(super) async fn export(
    State(state): State<Arc<AdminState>>,
    xui: Result<Path<String>, PathRejection>,
) -> Result<Response<Body>, AdminError> {
    let xui = xui_param(&state, xui)?;
    let exported = rfc3339(now_ms());
    let mut stored = Vec::new();
    for meta in state.store.list_user(xui.as_str()).await? {
        // A document deleted since the listing is simply not in the export.
        if let Some(doc) = state.store.get(&meta.key).await? {
            stored.push((meta.key, doc));
        }
    }
    let registry = state.xdms.registry();
    let documents = stored
        .into_iter()
        .map(|(key, doc)| ExportedDocument {
            content_type: registry
                .get(&key.auid)
                .map_or(UNKNOWN_USAGE_TYPE.to_string(), |u| {
                    u.descriptor.mime_type.clone()
                }),
            auid: key.auid,
            path: key.path,
            etag: doc.etag,
            body: doc.body.to_string(),
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &Export {
            xui: xui.as_str().to_string(),
            exported,
            documents,
        },
    ))
}

/// The import body: an export. Its `xui` is informational (documents go to the XUI of the URL,
/// so a backup can be restored into another account); other unknown fields are ignored.
#[derive(Deserialize)]
struct Import {
    documents: Vec<ImportedDocument>,
}

#[derive(Deserialize)]
struct ImportedDocument {
    auid: String,
    path: String,
    body: String,
}

#[derive(Serialize)]
struct ImportReport {
    xui: String,
    imported: usize,
    failed: usize,
    documents: Vec<DocumentResult>,
}

#[derive(Serialize)]
struct DocumentResult {
    auid: String,
    path: String,
    /// The HTTP status the XCAP PUT got (201 created, 200 replaced, 409 refused...).
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `POST /users/{xui}/import`: PUTs every document of an export into the user's home
/// directory, in order. 200 when all were stored, 422 when any was refused; the body reports
/// each document either way. Documents of the user that are not in the import stay.
pub(super) async fn import(
    State(state): State<Arc<AdminState>>,
    xui: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response<Body>, AdminError> {
    let xui = xui_param(&state, xui)?;
    let import: Import = read_json(body, state.max_import_bytes).await?;
    let root = state.root_path.trim_end_matches('/');
    let mut results = Vec::with_capacity(import.documents.len());
    for doc in import.documents {
        let outcome = put_document(
            &state.xdms,
            root,
            xui.as_str(),
            &doc.auid,
            &doc.path,
            doc.body.clone(),
        )
        .await;
        results.push(match outcome {
            Ok((status, etag)) => DocumentResult {
                auid: doc.auid,
                path: doc.path,
                status,
                etag,
                error: None,
            },
            Err(e) => DocumentResult {
                auid: doc.auid,
                path: doc.path,
                status: e.status(),
                etag: None,
                error: Some(describe(&e)),
            },
        });
    }
    let failed = results.iter().filter(|r| r.status >= 300).count();
    let report = ImportReport {
        xui: xui.as_str().to_string(),
        imported: results.len() - failed,
        failed,
        documents: results,
    };
    tracing::info!(
        target: "xcapd::admin",
        xui = %xui,
        imported = report.imported,
        failed = report.failed,
        "documents imported"
    );
    let status = if failed == 0 {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(json(status, &report))
}
