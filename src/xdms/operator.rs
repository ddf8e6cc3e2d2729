//! Documents the operator writes (RFC 4825 §7.1, §8.2; issue #15 scope 5): one XCAP document
//! PUT through the XDMS as the operator, so schema validation (§8.2.5), the usage's
//! constraints, new ETags (§8.5) and change events apply exactly as for a client's PUT. The
//! admin API's import and `xcapd import` write documents this way.

use crate::authz::Principal;
use crate::xcap::error::{render_conflict, XcapError};
use crate::xcap::etag::Preconditions;
use crate::xcap::pct::encode_path_segment;

use super::{Method, XcapRequest, Xdms};

/// PUTs `body` as the document `path` of usage `auid` in `xui`'s home directory under the
/// XCAP root path `root`; (status, ETag) on success.
pub async fn put_document(
    xdms: &Xdms,
    root: &str,
    xui: &str,
    auid: &str,
    path: &str,
    body: String,
) -> Result<(u16, Option<String>), XcapError> {
    let usage = xdms
        .registry()
        .get(auid)
        .ok_or(XcapError::NotFound("unknown application usage"))?;
    let path = document_path(path)?;
    let request = XcapRequest {
        method: Method::Put,
        path_and_query: format!(
            "{}/{}/users/{}/{path}",
            root.trim_end_matches('/'),
            encode_path_segment(auid),
            encode_path_segment(xui)
        ),
        principal: Principal::Admin,
        preconditions: Preconditions::default(),
        content_type: Some(usage.descriptor.mime_type.clone()),
        body: bytes::Bytes::from(body),
    };
    let response = xdms.handle(request).await?;
    Ok((response.status, response.etag))
}

/// Encodes a document path (URI-07: '/'-separated names) for an XCAP URI. Refuses what would
/// name something else than one document: empty, `.` and `..` segments, and `~~`, which would
/// start a node selector (RFC 4825 §6, URI-09).
fn document_path(path: &str) -> Result<String, XcapError> {
    let mut out = Vec::new();
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." || segment == "~~" {
            return Err(XcapError::BadRequest(format!(
                "invalid document path {path:?}"
            )));
        }
        out.push(encode_path_segment(segment));
    }
    Ok(out.join("/"))
}

/// The error text of one refused document: the xcap-error body for 409s (what the operator
/// needs to fix the document), the reason otherwise, never internal detail.
pub fn describe(e: &XcapError) -> String {
    match e {
        XcapError::Conflict { conflict, phrase } => render_conflict(conflict, phrase.as_deref()),
        XcapError::Internal(detail) => {
            tracing::error!(target: "xcapd::admin", %detail, "operator write: internal error");
            "internal error".to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // URI-07, URI-09: a document path maps to exactly one document URI.
    #[test]
    fn document_paths_are_encoded_and_unsafe_ones_refused() {
        assert_eq!(document_path("index").unwrap(), "index");
        assert_eq!(
            document_path("oma_status-icon/rcs status").unwrap(),
            "oma_status-icon/rcs%20status"
        );
        assert_eq!(document_path("a?b#c").unwrap(), "a%3Fb%23c");
        assert_eq!(document_path("100%").unwrap(), "100%25");
        for bad in ["", "/index", "a//b", "a/", ".", "a/..", "index/~~/x", "~~"] {
            assert!(
                matches!(document_path(bad), Err(XcapError::BadRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn internal_errors_are_not_described() {
        let text = describe(&XcapError::Internal("sled: disk on fire".into()));
        assert_eq!(text, "internal error");
        let text = describe(&XcapError::conflict(
            crate::xcap::error::Conflict::SchemaValidation,
        ));
        assert!(text.contains("schema-validation-error"), "{text}");
    }
}
