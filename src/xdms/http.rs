//! The XDMS HTTP edge (RFC 4825 §8): turns HTTP requests under the XCAP root into
//! `XcapRequest`s, enforces body limits before buffering (413), and renders results through
//! `respond`. Authentication lives in front of this layer; in development mode (`auth = none`)
//! the XUI of the URI is trusted.

use crate::authz::Principal;
use crate::body::BodyError;
use crate::identity::xui::Xui;
use crate::xcap::error::XcapError;
use crate::xcap::etag::{EntityTagList, Preconditions};
use crate::xcap::uri::{self, Tree};
use crate::xdms::respond;
use crate::xdms::service::{Method, XcapRequest, Xdms};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Response};
use axum::Router;
use std::sync::Arc;

#[derive(Clone)]
pub struct HttpState {
    pub xdms: Arc<Xdms>,
    pub max_body_bytes: usize,
    pub request_timeout: std::time::Duration,
    /// Development mode (`auth = "none"`): trust the URI's XUI when no principal is attached.
    pub dev_mode: bool,
}

pub fn router(state: HttpState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(State(state): State<HttpState>, req: Request) -> Response<Body> {
    let principal = req.extensions().get::<Principal>().cloned();
    let result = match tokio::time::timeout(state.request_timeout, serve(&state, req)).await {
        Ok(r) => r,
        Err(_) => Err(XcapError::Unavailable),
    };
    let mut response = match result {
        Ok(r) => r,
        Err(e) => respond::failure(e),
    };
    // For the access log.
    if let Some(p) = principal {
        response.extensions_mut().insert(p);
    }
    response
}

async fn serve(state: &HttpState, req: Request) -> Result<Response<Body>, XcapError> {
    let method = match req.method().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        // OP-38, HT-07c: POST and other methods on XCAP resources.
        _ => {
            return Err(XcapError::MethodNotAllowed {
                allow: "GET, HEAD, PUT, DELETE",
            })
        }
    };
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let headers = req.headers().clone();
    // The proxy front attaches the authenticated principal; without one the request is
    // anonymous, except in development mode.
    let principal = match req.extensions().get::<Principal>() {
        Some(p) => p.clone(),
        None if state.dev_mode => dev_principal(&state.xdms, &path_and_query),
        None => Principal::Anonymous,
    };
    let body = if matches!(method, Method::Put) {
        read_body(req.into_body(), &headers, state.max_body_bytes).await?
    } else {
        bytes::Bytes::new()
    };
    let xreq = XcapRequest {
        method,
        path_and_query,
        principal,
        preconditions: preconditions(&headers),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
    };
    let large = xreq.body.len() >= crate::alloc::LARGE_BODY_BYTES;
    let result = state.xdms.handle(xreq).await;
    if large {
        crate::alloc::release_freed_memory();
    }
    Ok(respond::success(result?, method == Method::Head))
}

/// Reads the body, refusing it with 413 before buffering when Content-Length is too large,
/// and as soon as the streamed size passes the limit otherwise.
async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<bytes::Bytes, XcapError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max as u64 {
            return Err(XcapError::PayloadTooLarge);
        }
    }
    crate::body::read_limited(body, max)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => XcapError::PayloadTooLarge,
            BodyError::Malformed => XcapError::BadRequest(e.to_string()),
        })
}

fn preconditions(headers: &HeaderMap) -> Preconditions {
    let list = |name: header::HeaderName| {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| EntityTagList::parse(&values.join(",")))
    };
    Preconditions {
        if_match: list(header::IF_MATCH),
        if_none_match: list(header::IF_NONE_MATCH),
    }
}

/// Development mode (`auth = "none"`): the home directory's XUI is the principal; requests to
/// the global tree act as the operator. Loopback only (enforced by the configuration).
fn dev_principal(xdms: &Xdms, path_and_query: &str) -> Principal {
    let settings = xdms.settings();
    match uri::parse(path_and_query, &settings.root_path) {
        Ok(parsed) => match parsed.tree {
            Tree::Users(raw) => Xui::parse(&raw, settings.default_domain.as_deref())
                .map(|x| Principal::User(x.as_str().to_string()))
                .unwrap_or(Principal::Anonymous),
            Tree::Global => Principal::Admin,
        },
        Err(_) => Principal::Anonymous,
    }
}
