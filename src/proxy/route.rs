//! AUID routing of the Aggregation Proxy (AP-01, AP-06, AP-08, AP-13, AU-10): requests for
//! AUIDs served by a remote XDMS are forwarded to it; xcap-caps and xcap-directory are
//! answered by aggregating the local XDMS with every remote target; everything else goes to the
//! in-process XDMS.

use crate::authz::Principal;
use crate::upstream::{Upstream, UpstreamConfig, UpstreamError};
use crate::xdms::generated::Digest;
use crate::xdms::Xdms;
use crate::xml::attvalue::escape;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::middleware::Next;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// One remote XDMS and the AUIDs it serves.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub upstream: Upstream,
    pub auids: Vec<String>,
    /// Whether the authenticated identity may be asserted to this hop (AP-04).
    pub trusted_hop: bool,
}

pub struct Routes {
    root: String,
    by_auid: HashMap<String, Target>,
    targets: Vec<Target>,
    xdms: Arc<Xdms>,
}

const CAPS: &str = "xcap-caps";
const DIRECTORY: &str = "org.openmobilealliance.xcap-directory";
const AGGREGATE_MAX_BYTES: usize = 4 * 1024 * 1024;

impl Routes {
    pub fn new(root: &str, targets: Vec<Target>, xdms: Arc<Xdms>) -> Routes {
        let mut by_auid = HashMap::new();
        for t in &targets {
            for a in &t.auids {
                by_auid.insert(a.clone(), t.clone());
            }
        }
        Routes {
            root: root.trim_end_matches('/').to_string(),
            by_auid,
            targets,
            xdms,
        }
    }

    pub fn target_config(url: &str, timeout: Duration) -> UpstreamConfig {
        UpstreamConfig::target(url, timeout)
    }

    fn auid_of<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(&self.root)?.strip_prefix('/')?;
        rest.split('/').next()
    }
}

fn asserted(principal: Option<&Principal>, trusted_hop: bool) -> Option<String> {
    if !trusted_hop {
        return None;
    }
    match principal? {
        Principal::User(x) | Principal::Service(x) => Some(x.clone()),
        Principal::Admin | Principal::Anonymous => None,
    }
}

pub async fn route(State(routes): State<Arc<Routes>>, req: Request, next: Next) -> Response<Body> {
    let path = req.uri().path().to_string();
    let Some(auid) = routes.auid_of(&path).map(str::to_string) else {
        return next.run(req).await;
    };
    if routes.targets.is_empty() {
        return next.run(req).await;
    }
    let principal = req.extensions().get::<Principal>().cloned();
    if let Some(target) = routes.by_auid.get(&auid) {
        let identity = asserted(principal.as_ref(), target.trusted_hop);
        return match target
            .upstream
            .forward(req, &routes.root, identity.as_deref())
            .await
        {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                Response::from_parts(parts, Body::new(body))
            }
            Err(e) => upstream_failure(&target.name, e),
        };
    }
    let is_get =
        req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD;
    if is_get && auid == CAPS {
        return aggregate_caps(&routes, req, next).await;
    }
    if is_get && auid == DIRECTORY && !path.contains("/~~/") {
        return aggregate_directory(&routes, principal.as_ref(), req, next).await;
    }
    next.run(req).await
}

fn upstream_failure(target: &str, e: UpstreamError) -> Response<Body> {
    tracing::warn!(target: "xcapd::proxy", xdms = %target, error = %e, "upstream XDMS failed");
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = Response::new(Body::from(format!("{}\n", e.reason())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// AU-10: the union of AUIDs and namespaces of the local XDMS and every remote target.
async fn aggregate_caps(routes: &Routes, req: Request, next: Next) -> Response<Body> {
    let local = next.run(req).await;
    if local.status() != StatusCode::OK {
        return local;
    }
    let mut auids: BTreeSet<String> = routes
        .xdms
        .registry()
        .iter()
        .map(|u| u.auid().to_string())
        .collect();
    let mut namespaces: BTreeSet<String> = BTreeSet::new();
    namespaces.insert("urn:ietf:params:xml:ns:xcap-caps".into());
    for u in routes.xdms.registry().iter() {
        namespaces.extend(u.descriptor.namespaces.iter().cloned());
    }
    for t in &routes.targets {
        auids.extend(t.auids.iter().cloned());
        if let Ok((StatusCode::OK, _, body)) = t
            .upstream
            .get(&format!("{CAPS}/global/index"), None, AGGREGATE_MAX_BYTES)
            .await
        {
            if let Ok(text) = std::str::from_utf8(&body) {
                if let Ok(doc) = roxmltree::Document::parse(text) {
                    namespaces.extend(
                        doc.descendants()
                            .filter(|n| n.has_tag_name("namespace"))
                            .filter_map(|n| n.text().map(str::to_string)),
                    );
                }
            }
        }
    }
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-caps xmlns=\"urn:ietf:params:xml:ns:xcap-caps\">\n  <auids>\n",
    );
    for a in &auids {
        s.push_str(&format!("    <auid>{}</auid>\n", escape(a)));
    }
    s.push_str("  </auids>\n  <namespaces>\n");
    for n in &namespaces {
        s.push_str(&format!("    <namespace>{}</namespace>\n", escape(n)));
    }
    s.push_str("  </namespaces>\n</xcap-caps>\n");
    xml_response(s, "application/xcap-caps+xml", "a")
}

/// AP-08: folders of remotely served AUIDs come from their XDMS (or carry `<error-code>` when
/// it does not answer); the rest from the local XDMS.
async fn aggregate_directory(
    routes: &Routes,
    principal: Option<&Principal>,
    req: Request,
    next: Next,
) -> Response<Body> {
    let rel = req
        .uri()
        .path()
        .strip_prefix(&routes.root)
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    let local = next.run(req).await;
    if local.status() != StatusCode::OK {
        return local;
    }
    let Ok(bytes) = axum::body::to_bytes(local.into_body(), AGGREGATE_MAX_BYTES).await else {
        return upstream_failure("local", UpstreamError::TooLarge);
    };
    let local_text = String::from_utf8_lossy(&bytes).to_string();
    let mut folders: BTreeMap<String, String> = folders_of(&local_text);
    for t in &routes.targets {
        let identity = asserted(principal, t.trusted_hop);
        let remote = t
            .upstream
            .get(&rel, identity.as_deref(), AGGREGATE_MAX_BYTES)
            .await;
        let remote_folders = match remote {
            Ok((StatusCode::OK, _, body)) => folders_of(&String::from_utf8_lossy(&body)),
            _ => BTreeMap::new(),
        };
        for auid in &t.auids {
            let folder = remote_folders.get(auid).cloned().unwrap_or_else(|| {
                format!(
                    "<folder auid=\"{}\"><error-code>503</error-code></folder>",
                    escape(auid)
                )
            });
            folders.insert(auid.clone(), folder);
        }
    }
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-directory xmlns=\"urn:oma:xml:xdm:xcap-directory\">\n",
    );
    for f in folders.values() {
        s.push_str("  ");
        s.push_str(f);
        s.push('\n');
    }
    s.push_str("</xcap-directory>\n");
    xml_response(s, "application/vnd.oma.xcap-directory+xml", "d")
}

/// The `<folder>` elements of an xcap-directory document, by AUID, as written.
fn folders_of(text: &str) -> BTreeMap<String, String> {
    let Ok(doc) = roxmltree::Document::parse(text) else {
        return BTreeMap::new();
    };
    doc.root_element()
        .children()
        .filter(|n| n.has_tag_name("folder"))
        .filter_map(|n| {
            n.attribute("auid")
                .map(|a| (a.to_string(), text[n.range()].to_string()))
        })
        .collect()
}

fn xml_response(body: String, content_type: &'static str, etag_prefix: &str) -> Response<Body> {
    let mut d = Digest::default();
    d.update(body.as_bytes());
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", d.etag(etag_prefix))) {
        h.insert(header::ETAG, v);
    }
    r
}
