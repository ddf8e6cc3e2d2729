//! Handlers of the admin API: liveness and readiness, Prometheus metrics, users (canonical XUI,
//! RFC 4825 §4 / IO-01; Digest realm and HA1s, RFC 7616 §3.4.2; roles), a user's document
//! listing, and bearer JWTs for users (RFC 7519 §4.1 `sub`, `exp`).

use super::{json, AdminError, AdminState};
use crate::identity::xui::Xui;
use crate::storage::credentials::{make_credential, Credential, CredentialStore, Role};
use crate::storage::{now_ms, StorageError};
use crate::xdms::generated::rfc3339;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Largest body of the small JSON requests (users, passwords, tokens).
pub(super) const MAX_SMALL_BODY: usize = 64 * 1024;
/// Lifetime of an issued JWT when the request names none.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;
/// Longest lifetime of an issued JWT (bearer tokens cannot be revoked, RFC 6750 §5.3).
pub const MAX_TOKEN_TTL_SECS: u64 = 30 * 86_400;
/// How long `/ready` waits for the storage to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

type Shared = State<Arc<AdminState>>;

/// The normalized XUI of the `{xui}` path segment (IO-01: every spelling reaches one user).
pub(super) fn xui_param(
    state: &AdminState,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Xui, AdminError> {
    let Path(raw) =
        raw.map_err(|_| AdminError::BadRequest("malformed user identifier in the path".into()))?;
    Xui::parse(&raw, state.default_domain.as_deref())
        .map_err(|e| AdminError::BadRequest(format!("invalid user identifier {raw:?}: {e}")))
}

/// Reads a JSON body of at most `limit` bytes; an empty body is `{}`.
pub(super) async fn read_json<T: DeserializeOwned>(
    body: Body,
    limit: usize,
) -> Result<T, AdminError> {
    let bytes = crate::body::read_limited(body, limit)
        .await
        .map_err(|e| match e {
            crate::body::BodyError::TooLarge => AdminError::PayloadTooLarge,
            crate::body::BodyError::Malformed => AdminError::BadRequest(e.to_string()),
        })?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes).map_err(|e| AdminError::BadRequest(format!("invalid JSON: {e}")))
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Liveness: the process answers.
pub(super) async fn health() -> Response<Body> {
    text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into())
}

/// Readiness: the document store answers within [`READY_TIMEOUT`].
pub(super) async fn ready(State(state): Shared) -> Response<Body> {
    match tokio::time::timeout(READY_TIMEOUT, state.store.health()).await {
        Ok(Ok(())) => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ready\n".into(),
        ),
        outcome => {
            let detail = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_string(),
            };
            tracing::warn!(target: "xcapd::admin", %detail, "readiness probe failed");
            axum::response::IntoResponse::into_response(AdminError::Unavailable)
        }
    }
}

/// Prometheus text exposition format 0.0.4.
pub(super) async fn metrics(State(state): Shared) -> Response<Body> {
    text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        state.metrics.render(),
    )
}

pub(super) async fn not_found() -> AdminError {
    AdminError::NotFound("no such admin resource".into())
}

/// A user as the API shows it: never any HA1.
#[derive(Serialize)]
struct UserView {
    xui: String,
    realm: String,
    roles: Vec<&'static str>,
}

impl From<&Credential> for UserView {
    fn from(c: &Credential) -> Self {
        UserView {
            xui: c.xui.clone(),
            realm: c.realm.clone(),
            roles: c.roles.iter().map(|r| r.as_str()).collect(),
        }
    }
}

pub(super) async fn list_users(State(state): Shared) -> Result<Response<Body>, AdminError> {
    let users = state.creds.list_users().await?;
    let views: Vec<UserView> = users.iter().map(UserView::from).collect();
    Ok(json(StatusCode::OK, &views))
}

pub(super) async fn get_user(
    State(state): Shared,
    xui: Result<Path<String>, PathRejection>,
) -> Result<Response<Body>, AdminError> {
    let xui = xui_param(&state, xui)?;
    let user = state.creds.get_user(xui.as_str()).await?;
    match user {
        Some(c) => Ok(json(StatusCode::OK, &UserView::from(&c))),
        None => Err(no_such_user(&xui)),
    }
}

fn no_such_user(xui: &Xui) -> AdminError {
    AdminError::NotFound(format!("no such user: {xui}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutUser {
    password: String,
    realm: Option<String>,
    roles: Option<Vec<String>>,
}

fn parse_roles(names: &[String]) -> Result<Vec<Role>, AdminError> {
    names
        .iter()
        .map(|n| {
            n.parse()
                .map_err(|e| AdminError::BadRequest(format!("{e}")))
        })
        .collect()
}

/// The realm goes into `WWW-Authenticate` as a quoted-string (RFC 7616 §3.3): refuse what
/// would need escaping there or cannot be stored.
fn check_realm(realm: &str) -> Result<(), AdminError> {
    let bad = realm.is_empty()
        || realm
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\');
    if bad {
        return Err(AdminError::BadRequest(format!("invalid realm {realm:?}")));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<(), AdminError> {
    if password.is_empty() {
        return Err(AdminError::BadRequest(
            "the password must not be empty".into(),
        ));
    }
    Ok(())
}

/// Stores `cred`; a username spelling held by another user in the realm is a 409 naming them.
async fn store_user(creds: &dyn CredentialStore, cred: &Credential) -> Result<(), AdminError> {
    match creds.put_user(cred).await {
        Ok(()) => Ok(()),
        Err(StorageError::PreconditionFailed) => {
            for e in &cred.ha1 {
                if let Some((owner, _)) = creds
                    .lookup_ha1(&e.username, &cred.realm, &e.algorithm)
                    .await?
                {
                    if owner != cred.xui {
                        return Err(AdminError::Conflict(format!(
                            "username {:?} in realm {:?} already belongs to {owner}",
                            e.username, cred.realm
                        )));
                    }
                }
            }
            Err(AdminError::Conflict(
                "a username of this user belongs to another user".into(),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates (201) or replaces (200) a user. Realm: given, else the XUI's domain, else the
/// default domain. Roles: given, else `user`. A replaced user keeps its creation time.
pub(super) async fn put_user(
    State(state): Shared,
    xui: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response<Body>, AdminError> {
    let xui = xui_param(&state, xui)?;
    let req: PutUser = read_json(body, MAX_SMALL_BODY).await?;
    check_password(&req.password)?;
    let roles = match &req.roles {
        Some(names) => parse_roles(names)?,
        None => vec![Role::User],
    };
    let realm = match req.realm {
        Some(realm) => realm,
        None => xui
            .domain()
            .map(str::to_string)
            .or_else(|| state.default_domain.clone())
            .ok_or_else(|| AdminError::BadRequest(format!("{xui} has no domain: give a realm")))?,
    };
    check_realm(&realm)?;
    let old = state.creds.get_user(xui.as_str()).await?;
    let created_ms = old.as_ref().map_or_else(now_ms, |c| c.created_ms);
    let cred = make_credential(xui.as_str(), &realm, &req.password, roles, created_ms);
    store_user(state.creds.as_ref(), &cred).await?;
    let created = old.is_none();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    tracing::info!(target: "xcapd::admin", xui = %cred.xui, created, "user stored");
    Ok(json(status, &UserView::from(&cred)))
}

pub(super) async fn delete_user(
    State(state): Shared,
    xui: Result<Path<String>, PathRejection>,
) -> Result<Response<Body>, AdminError> {
    let xui = xui_param(&state, xui)?;
    if !state.creds.delete_user(xui.as_str()).await? {
        return Err(no_such_user(&xui));
    }
    tracing::info!(target: "xcapd::admin", xui = %xui, "user deleted");
    #[derive(Serialize)]
    struct Deleted<'a> {
        deleted: &'a str,
    }
    Ok(json(
        StatusCode::OK,
        &Deleted {
            deleted: xui.as_str(),
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPassword {
    password: String,
    /// Refuse the user's bearer tokens issued before now (default true).
    #[serde(default = "yes")]
    revoke_tokens: bool,
}

fn yes() -> bool {
    true
}

/// Replaces a user's HA1s; realm, roles and creation time stay; earlier bearer tokens are
/// revoked unless `revoke_tokens` is false.
pub(super) async fn set_password(
    State(state): Shared,
    xui: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response<Body>, AdminError> {
    let xui = xui_param(&state, xui)?;
    let req: SetPassword = read_json(body, MAX_SMALL_BODY).await?;
    check_password(&req.password)?;
    let old = state
        .creds
        .get_user(xui.as_str())
        .await?
        .ok_or_else(|| no_such_user(&xui))?;
    let mut cred = make_credential(
        &old.xui,
        &old.realm,
        &req.password,
        old.roles.clone(),
        old.created_ms,
    );
    cred.tokens_not_before = if req.revoke_tokens {
        crate::storage::credentials::revocation_epoch()
    } else {
        old.tokens_not_before
    };
    store_user(state.creds.as_ref(), &cred).await?;
    tracing::info!(target: "xcapd::admin", xui = %cred.xui, "password changed");
    Ok(json(StatusCode::OK, &UserView::from(&cred)))
}

#[derive(Serialize)]
struct DocView {
    auid: String,
    path: String,
    etag: String,
    size: u64,
    /// xs:dateTime (UTC) of the last change.
    modified: String,
    modified_ms: u64,
}

/// Every stored document of a user's home directory (RFC 4825 §6.2), all AUIDs. Generated
/// documents (xcap-directory) are not stored and not listed.
pub(super) async fn list_documents(
    State(state): Shared,
    xui: Result<Path<String>, PathRejection>,
) -> Result<Response<Body>, AdminError> {
    let xui = xui_param(&state, xui)?;
    let docs = state.store.list_user(xui.as_str()).await?;
    let views: Vec<DocView> = docs
        .into_iter()
        .map(|m| DocView {
            auid: m.key.auid,
            path: m.key.path,
            etag: m.etag,
            size: m.size,
            modified: rfc3339(m.modified_ms),
            modified_ms: m.modified_ms,
        })
        .collect();
    Ok(json(StatusCode::OK, &views))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    ttl_secs: Option<u64>,
    roles: Option<Vec<String>>,
}

#[derive(Serialize)]
struct TokenResponse {
    token: String,
    token_type: &'static str,
    sub: String,
    expires_in: u64,
    expires_at: String,
}

/// Issues a bearer JWT with `sub` = the user's XUI. Roles: given (checked), else the stored
/// user's, else none. The user need not be in the credential store, but with
/// `auth.jwt_require_user` (the default) the token is only accepted while the user exists.
pub(super) async fn issue_token(
    State(state): Shared,
    xui: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response<Body>, AdminError> {
    let xui = xui_param(&state, xui)?;
    let req: TokenRequest = read_json(body, MAX_SMALL_BODY).await?;
    let Some(issuer) = state.issuer.clone() else {
        return Err(AdminError::NotImplemented(
            "no JWT signing key is configured (auth.jwt_hs256_secret_file)",
        ));
    };
    let ttl = req.ttl_secs.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
    if ttl == 0 || ttl > MAX_TOKEN_TTL_SECS {
        return Err(AdminError::BadRequest(format!(
            "ttl_secs must be between 1 and {MAX_TOKEN_TTL_SECS}"
        )));
    }
    let stored = state.creds.get_user(xui.as_str()).await?;
    let roles: Vec<Role> = match &req.roles {
        Some(names) => parse_roles(names)?,
        None => stored.as_ref().map(|c| c.roles.clone()).unwrap_or_default(),
    };
    let roles: Vec<String> = roles.iter().map(|r| r.as_str().to_string()).collect();
    // Not before the user's token epoch, which a revocation set up to a second ahead.
    let now = (now_ms() / 1000).max(stored.map_or(0, |c| c.tokens_not_before));
    let token = issuer
        .issue(xui.as_str(), &roles, ttl, now)
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    tracing::info!(target: "xcapd::admin", xui = %xui, ttl, "JWT issued");
    Ok(json(
        StatusCode::OK,
        &TokenResponse {
            token,
            token_type: "Bearer",
            sub: xui.as_str().to_string(),
            expires_in: ttl,
            expires_at: rfc3339(now.saturating_add(ttl).saturating_mul(1000)),
        },
    ))
}
