//! The authenticating front of the Aggregation Proxy (AP-02..AP-04, HT-02, HT-03; RFC 7616,
//! RFC 7617, RFC 6750): decides who a request comes from. Trusted asserted identities are
//! honoured only from configured peers; otherwise Digest, Basic or a bearer JWT is required.
//! Failed attempts are throttled per client address and per user name.

use crate::authz::Principal;
use crate::config::AuthConfig;
use crate::proxy::basic::{basic_challenge, parse_basic, verify_basic};
use crate::proxy::digest::{Algorithm, DigestAuthenticator, DigestConfig, DigestError};
use crate::proxy::jwt::{bearer_token, JwtConfig, JwtKey, JwtVerifier};
use crate::proxy::throttle::{Throttle, ThrottleConfig, ThrottleError};
use crate::proxy::trust::{self, TrustedPeers};
use crate::storage::credentials::{CredentialStore, Role};
use crate::xcap::uri::{self, Tree};
use crate::xcap::xui::Xui;
use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FrontError {
    #[error("auth: {0}")]
    Config(String),
}

/// What the front decided about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Authenticated(Principal),
    /// 401 with these WWW-Authenticate values.
    Challenge(Vec<String>),
    /// 429 with Retry-After.
    Throttled(u64),
    /// 403: authenticated, but may not act as the intended identity (AP-03a).
    Forbidden,
}

/// The parts of a request the front looks at.
pub struct RequestInfo<'a> {
    pub method: &'a str,
    /// The request target as received (path and query).
    pub target: &'a str,
    pub headers: &'a [(String, String)],
    /// The TCP peer address.
    pub peer: IpAddr,
    /// Whether the connection is TLS (Basic is refused on plain HTTP unless configured).
    pub tls: bool,
}

pub struct Front {
    digest: Option<DigestAuthenticator>,
    basic: bool,
    basic_without_tls: bool,
    jwt: Option<JwtVerifier>,
    trusted_peers: TrustedPeers,
    trusted_proxies: TrustedPeers,
    throttle: Throttle,
    creds: Arc<dyn CredentialStore>,
    default_realm: String,
    default_domain: Option<String>,
    root_path: String,
    /// The listener is TLS: Basic may be offered (HT-02).
    tls: bool,
}

impl Front {
    pub fn new(
        cfg: &AuthConfig,
        creds: Arc<dyn CredentialStore>,
        default_domain: Option<String>,
        root_path: &str,
        tls: bool,
    ) -> Result<Front, FrontError> {
        let digest = if cfg.digest {
            let mut algorithms = Vec::new();
            for a in &cfg.digest_algorithms {
                algorithms.push(Algorithm::from_token(a).ok_or_else(|| {
                    FrontError::Config(format!("unknown digest algorithm {a:?}"))
                })?);
            }
            if algorithms.is_empty() {
                return Err(FrontError::Config("auth.digest_algorithms is empty".into()));
            }
            let mut secret = [0u8; 32];
            getrandom::getrandom(&mut secret)
                .map_err(|e| FrontError::Config(format!("no randomness for nonces: {e}")))?;
            Some(DigestAuthenticator::new(
                secret,
                DigestConfig {
                    nonce_lifetime_secs: cfg.nonce_lifetime_secs,
                    algorithms,
                    ..DigestConfig::default()
                },
                |buf| {
                    let _ = getrandom::getrandom(buf);
                },
            ))
        } else {
            None
        };
        let jwt = jwt_verifier(cfg)?;
        let parse_peers = |list: &[String], what: &str| {
            TrustedPeers::parse(list).map_err(|e| FrontError::Config(format!("{what}: {e}")))
        };
        let default_realm = if !cfg.realm.is_empty() {
            cfg.realm.clone()
        } else {
            default_domain.clone().unwrap_or_else(|| "xcapd".into())
        };
        Ok(Front {
            digest,
            basic: cfg.basic,
            basic_without_tls: cfg.basic_without_tls,
            jwt,
            trusted_peers: parse_peers(&cfg.trusted_peers, "auth.trusted_peers")?,
            trusted_proxies: parse_peers(&cfg.trusted_proxies, "auth.trusted_proxies")?,
            throttle: Throttle::new(ThrottleConfig {
                max_failures: cfg.throttle_max_failures,
                window_secs: cfg.throttle_window_secs,
                lockout_secs: cfg.throttle_lockout_secs,
                ..ThrottleConfig::default()
            }),
            creds,
            default_realm,
            default_domain,
            root_path: root_path.to_string(),
            tls,
        })
    }

    /// The realm a request is challenged in: the domain of the XUI it addresses, else the
    /// default realm ("realm per domain").
    pub fn realm_for(&self, target: &str) -> String {
        match uri::parse(target, &self.root_path) {
            Ok(parsed) => match parsed.tree {
                Tree::Users(raw) => Xui::parse(&raw, self.default_domain.as_deref())
                    .ok()
                    .and_then(|x| x.domain().map(str::to_string))
                    .unwrap_or_else(|| self.default_realm.clone()),
                Tree::Global => self.default_realm.clone(),
            },
            Err(_) => self.default_realm.clone(),
        }
    }

    pub fn authenticate(&self, req: &RequestInfo<'_>, now: u64) -> AuthOutcome {
        let client = trust::client_address(
            req.peer,
            header(req.headers, "x-forwarded-for").as_deref(),
            &self.trusted_proxies,
        );
        // AP-04: an asserted identity counts only from a trusted hop.
        if let Some(raw) = trust::asserted_identity(client, &self.trusted_peers, req.headers) {
            return match self.principal_from_identity(&raw) {
                Some(p) => self.check_intended(req, p),
                None => AuthOutcome::Challenge(self.challenges(req, false, now)),
            };
        }
        let ip_key = format!("ip:{client}");
        if let Err(ThrottleError::RetryAfter(secs)) = self.throttle.check(&ip_key, now) {
            return AuthOutcome::Throttled(secs);
        }
        let Some(authorization) = header(req.headers, "authorization") else {
            return AuthOutcome::Challenge(self.challenges(req, false, now));
        };
        let scheme = authorization
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let result = match scheme.as_str() {
            "digest" if self.digest.is_some() => self.digest(req, &authorization, now),
            "basic" if self.basic && (req.tls || self.tls || self.basic_without_tls) => {
                self.basic(req, &authorization, now)
            }
            "bearer" if self.jwt.is_some() => self.bearer(&authorization),
            _ => Err(Failure::Invalid(None)),
        };
        match result {
            Ok(principal) => {
                self.throttle.record_success(&ip_key);
                self.check_intended(req, principal)
            }
            Err(Failure::Stale) => AuthOutcome::Challenge(self.challenges(req, true, now)),
            Err(Failure::Throttled(secs)) => AuthOutcome::Throttled(secs),
            Err(Failure::Invalid(user)) => {
                self.throttle.record_failure(&ip_key, now);
                if let Some(u) = user {
                    self.throttle.record_failure(&format!("user:{u}"), now);
                }
                tracing::info!(target: "xcapd::auth", client = %client, scheme = %scheme, "authentication failed");
                AuthOutcome::Challenge(self.challenges(req, false, now))
            }
        }
    }

    fn challenges(&self, req: &RequestInfo<'_>, stale: bool, now: u64) -> Vec<String> {
        let realm = self.realm_for(req.target);
        let mut out = Vec::new();
        if let Some(d) = &self.digest {
            out.extend(d.challenges(&realm, stale, now));
        }
        if self.basic && (req.tls || self.tls || self.basic_without_tls) {
            out.push(basic_challenge(&realm));
        }
        if self.jwt.is_some() {
            out.push(format!("Bearer realm=\"{realm}\""));
        }
        out
    }

    fn digest(
        &self,
        req: &RequestInfo<'_>,
        authorization: &str,
        now: u64,
    ) -> Result<Principal, Failure> {
        let Some(d) = &self.digest else {
            return Err(Failure::Invalid(None));
        };
        let username = crate::proxy::digest::parse_authorization(authorization)
            .map(|p| p.username)
            .map_err(|_| Failure::Invalid(None))?;
        self.check_user_throttle(&username, now)?;
        let found: RefCell<Option<String>> = RefCell::new(None);
        let verified = d.verify(
            req.method,
            req.target,
            authorization,
            now,
            |user, realm, alg| match self.creds.lookup_ha1(user, realm, alg.as_str()) {
                Ok(Some((xui, ha1))) => {
                    *found.borrow_mut() = Some(xui);
                    Some(ha1)
                }
                _ => None,
            },
        );
        match verified {
            Ok(_) => {
                let xui = found
                    .into_inner()
                    .ok_or(Failure::Invalid(Some(username.clone())))?;
                self.throttle.record_success(&format!("user:{username}"));
                Ok(self.principal_for(&xui))
            }
            Err(DigestError::Stale) => Err(Failure::Stale),
            Err(e) if e.is_stale() => Err(Failure::Stale),
            Err(_) => Err(Failure::Invalid(Some(username))),
        }
    }

    fn basic(
        &self,
        req: &RequestInfo<'_>,
        authorization: &str,
        now: u64,
    ) -> Result<Principal, Failure> {
        let (user, password) = parse_basic(authorization).map_err(|_| Failure::Invalid(None))?;
        self.check_user_throttle(&user, now)?;
        let realm = self.realm_for(req.target);
        let alg = Algorithm::Sha256;
        match self.creds.lookup_ha1(&user, &realm, alg.as_str()) {
            Ok(Some((xui, ha1))) if verify_basic(&user, &password, &realm, &ha1, alg) => {
                self.throttle.record_success(&format!("user:{user}"));
                Ok(self.principal_for(&xui))
            }
            _ => Err(Failure::Invalid(Some(user))),
        }
    }

    fn bearer(&self, authorization: &str) -> Result<Principal, Failure> {
        let (Some(jwt), Some(token)) = (&self.jwt, bearer_token(authorization)) else {
            return Err(Failure::Invalid(None));
        };
        let claims = jwt.verify(token).map_err(|_| Failure::Invalid(None))?;
        let xui = Xui::parse(&claims.sub, self.default_domain.as_deref())
            .map_err(|_| Failure::Invalid(None))?;
        let roles: Vec<Role> = claims.roles.iter().filter_map(|r| r.parse().ok()).collect();
        Ok(principal_with_roles(xui.as_str(), &roles))
    }

    fn check_user_throttle(&self, user: &str, now: u64) -> Result<(), Failure> {
        match self.throttle.check(&format!("user:{user}"), now) {
            Ok(()) => Ok(()),
            Err(ThrottleError::RetryAfter(secs)) => Err(Failure::Throttled(secs)),
        }
    }

    /// Roles come from the credential store; an unknown user is a plain user.
    fn principal_for(&self, xui: &str) -> Principal {
        let roles = self
            .creds
            .get_user(xui)
            .ok()
            .flatten()
            .map(|c| c.roles)
            .unwrap_or_default();
        principal_with_roles(xui, &roles)
    }

    fn principal_from_identity(&self, raw: &str) -> Option<Principal> {
        let value = trust::identity_value(raw)?;
        let xui = Xui::from_identity_header(&value, self.default_domain.as_deref()).ok()?;
        Some(self.principal_for(xui.as_str()))
    }

    /// AP-03: an authenticated user may act only as itself; admins and services as anyone.
    fn check_intended(&self, req: &RequestInfo<'_>, principal: Principal) -> AuthOutcome {
        let Some(raw) = trust::intended_identity(req.headers) else {
            return AuthOutcome::Authenticated(principal);
        };
        match &principal {
            Principal::Admin | Principal::Service(_) => AuthOutcome::Authenticated(principal),
            Principal::User(me) => {
                match Xui::from_identity_header(&raw, self.default_domain.as_deref()) {
                    Ok(x) if x.as_str() == me => AuthOutcome::Authenticated(principal),
                    _ => AuthOutcome::Forbidden,
                }
            }
            Principal::Anonymous => AuthOutcome::Forbidden,
        }
    }
}

enum Failure {
    Stale,
    Throttled(u64),
    /// Bad credentials; the user name when one was given.
    Invalid(Option<String>),
}

fn principal_with_roles(xui: &str, roles: &[Role]) -> Principal {
    if roles.contains(&Role::Admin) {
        Principal::Admin
    } else if roles.contains(&Role::Service) {
        Principal::Service(xui.to_string())
    } else {
        Principal::User(xui.to_string())
    }
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn jwt_verifier(cfg: &AuthConfig) -> Result<Option<JwtVerifier>, FrontError> {
    let read = |path: &str| {
        std::fs::read(path).map_err(|e| FrontError::Config(format!("cannot read {path}: {e}")))
    };
    let mut keys = Vec::new();
    if !cfg.jwt_hs256_secret_file.is_empty() {
        let mut secret = read(&cfg.jwt_hs256_secret_file)?;
        while secret.last().is_some_and(|b| b.is_ascii_whitespace()) {
            secret.pop();
        }
        keys.push(JwtKey::Hs256 { secret });
    }
    if !cfg.jwt_rs256_public_key_file.is_empty() {
        keys.push(JwtKey::Rs256 {
            public_pem: read(&cfg.jwt_rs256_public_key_file)?,
        });
    }
    if !cfg.jwt_eddsa_public_key_file.is_empty() {
        keys.push(JwtKey::EdDsa {
            public_pem: read(&cfg.jwt_eddsa_public_key_file)?,
        });
    }
    if keys.is_empty() {
        return Ok(None);
    }
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    JwtVerifier::new(JwtConfig {
        keys,
        issuer: non_empty(&cfg.jwt_issuer),
        audience: non_empty(&cfg.jwt_audience),
        ..JwtConfig::default()
    })
    .map(Some)
    .map_err(|e| FrontError::Config(format!("jwt: {e}")))
}
