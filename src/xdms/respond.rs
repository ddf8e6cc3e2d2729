//! The one place where XCAP outcomes become HTTP responses (design.md §7; standards.md table
//! 1.5, HT-05, HT-07, HT-09, ER-01): 409s get an `application/xcap-error+xml` body, other errors
//! a short plain-text reason, 500s nothing internal.

use crate::xcap::error::{render_conflict, XcapError};
use crate::xcap::mime;
use crate::xdms::service::XcapResponse;
use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};

/// Builds the HTTP response for a successful operation. `head` drops the body (RFC 9110 §9.3.2).
pub fn success(resp: XcapResponse, head: bool) -> Response<Body> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(resp.status).unwrap_or(StatusCode::OK))
        .header(header::CACHE_CONTROL, "no-cache");
    if let Some(etag) = &resp.etag {
        builder = builder.header(header::ETAG, format!("\"{etag}\""));
    }
    if let Some(ct) = &resp.content_type {
        builder = builder.header(header::CONTENT_TYPE, ct.as_str());
    }
    let body = match resp.body {
        Some(b) if head => {
            builder = builder.header(header::CONTENT_LENGTH, b.len());
            Body::empty()
        }
        Some(b) => Body::from(b),
        None => Body::empty(),
    };
    builder.body(body).unwrap_or_else(|_| internal())
}

/// Builds the HTTP response for a failed operation.
pub fn failure(err: XcapError) -> Response<Body> {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = Response::builder()
        .status(status)
        .header(header::CACHE_CONTROL, "no-cache");
    let body = match err {
        XcapError::Conflict { conflict, phrase } => {
            builder = builder.header(header::CONTENT_TYPE, mime::XCAP_ERROR);
            Body::from(render_conflict(&conflict, phrase.as_deref()))
        }
        XcapError::NotModified { etag } => {
            builder = builder.header(header::ETAG, format!("\"{etag}\""));
            Body::empty()
        }
        XcapError::MethodNotAllowed { allow } => {
            builder = builder.header(header::ALLOW, allow);
            plain(&mut builder, "method not allowed on this resource")
        }
        XcapError::Unauthorized => plain(&mut builder, "authentication required"),
        XcapError::Internal(detail) => {
            tracing::error!(%detail, "internal error");
            plain(&mut builder, "internal server error")
        }
        XcapError::UnsupportedMediaType { expected, received } => {
            // OP-01c: tell the client author the one header to send. The echoed type is cut
            // and reduced to visible ASCII so nothing odd reaches a terminal or log.
            let received = match received {
                Some(ct) => ct
                    .chars()
                    .filter(|c| c.is_ascii_graphic() || *c == ' ')
                    .take(100)
                    .collect::<String>(),
                None => "none".into(),
            };
            plain(
                &mut builder,
                &format!(
                    "unsupported media type: this resource takes Content-Type: {expected} \
                     (received: {received})"
                ),
            )
        }
        XcapError::BadRequest(reason) => plain(&mut builder, &reason),
        XcapError::Forbidden(reason) | XcapError::NotFound(reason) => plain(&mut builder, reason),
        XcapError::PreconditionFailed => plain(&mut builder, "precondition failed"),
        XcapError::PayloadTooLarge => plain(&mut builder, "request body or document too large"),
        XcapError::Unavailable => plain(&mut builder, "service temporarily unavailable"),
        XcapError::WritesPaused { retry_after_secs } => {
            builder = builder.header(header::RETRY_AFTER, retry_after_secs.to_string());
            plain(
                &mut builder,
                "storage cannot accept writes right now (nothing was stored); retry later",
            )
        }
    };
    builder.body(body).unwrap_or_else(|_| internal())
}

fn plain(builder: &mut axum::http::response::Builder, reason: &str) -> Body {
    let b = std::mem::take(builder);
    *builder = b.header(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Body::from(format!("{reason}\n"))
}

fn internal() -> Response<Body> {
    let mut r = Response::new(Body::from("internal server error\n"));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}
