//! The authenticating front of the Aggregation Proxy (AP-02..AP-04, HT-02, HT-03; RFC 7616,
//! RFC 7617, RFC 6750): decides who a request comes from. Trusted asserted identities are
//! honoured only from configured peers; otherwise Digest, Basic or a bearer JWT is required.
//! Failed attempts are throttled per user and address, per user and per address (`lockout`).

use crate::auth::basic::{basic_challenge, parse_basic, verify_basic};
use crate::auth::digest::{
    parse_authorization, Algorithm, DigestAuthenticator, DigestConfig, DigestError, DigestParams,
};
use crate::auth::jwt::{bearer_token, JwtConfig, JwtKey, JwtVerifier};
use crate::auth::lockout::{Lockout, LockoutConfig};
use crate::auth::throttle::ThrottleError;
use crate::auth::trust::{self, TrustedPeers};
use crate::authz::Principal;
use crate::config::AuthConfig;
use crate::identity::xui::Xui;
use crate::storage::credentials::{CredentialStore, Role};
use crate::xcap::uri::{self, Tree};
use parking_lot::Mutex;
use std::net::IpAddr;
use std::sync::Arc;
use thiserror::Error;

/// Most realms challenged at once for a request that names no user.
const MAX_GLOBAL_REALMS: usize = 8;
/// How long the credential store's realm list is reused for challenges.
const REALM_CACHE_SECS: u64 = 5;

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
    jwt_require_user: bool,
    trusted_peers: TrustedPeers,
    trusted_proxies: TrustedPeers,
    lockout: Lockout,
    creds: Arc<dyn CredentialStore>,
    /// The realm of requests that name no user, when one is configured (`auth.realm`, else
    /// `server.default_domain`); otherwise those are challenged in every realm users have.
    fixed_realm: Option<String>,
    /// The credential store's realms, and when they were read (unix seconds).
    realm_cache: Mutex<Option<(u64, Arc<[String]>)>>,
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
        let fixed_realm = if !cfg.realm.is_empty() {
            Some(cfg.realm.clone())
        } else {
            default_domain.clone()
        };
        Ok(Front {
            digest,
            basic: cfg.basic,
            basic_without_tls: cfg.basic_without_tls,
            jwt,
            jwt_require_user: cfg.jwt_require_user,
            trusted_peers: parse_peers(&cfg.trusted_peers, "auth.trusted_peers")?,
            trusted_proxies: parse_peers(&cfg.trusted_proxies, "auth.trusted_proxies")?,
            lockout: Lockout::new(LockoutConfig {
                user_address_max_failures: cfg.throttle_max_failures,
                user_max_failures: cfg.throttle_user_max_failures,
                address_max_failures: cfg.throttle_address_max_failures,
                window_secs: cfg.throttle_window_secs,
                lockout_secs: cfg.throttle_lockout_secs,
                ..LockoutConfig::default()
            }),
            creds,
            fixed_realm,
            realm_cache: Mutex::new(None),
            default_domain,
            root_path: root_path.to_string(),
            tls,
        })
    }

    /// The realms a request is challenged in, preferred first: the domain of the XUI it
    /// addresses ("realm per domain"); for global documents and anything else that names no
    /// user, [`Front::global_realms`], so every user reads xcap-caps and the other global
    /// documents with the credentials of their own documents.
    pub async fn realms_for(&self, target: &str, now: u64) -> Arc<[String]> {
        if let Ok(parsed) = uri::parse(target, &self.root_path) {
            if let Tree::Users(raw) = parsed.tree {
                if let Some(domain) = Xui::parse(&raw, self.default_domain.as_deref())
                    .ok()
                    .and_then(|x| x.domain().map(str::to_string))
                {
                    return Arc::from(vec![domain]);
                }
            }
        }
        self.global_realms(now).await
    }

    /// The configured realm; without one, the realms of the credential store (most users
    /// first, at most [`MAX_GLOBAL_REALMS`], re-read every [`REALM_CACHE_SECS`]), so a client that
    /// reads only the first challenge works whenever its users share one domain; "xcapd" when
    /// the store has no user yet.
    async fn global_realms(&self, now: u64) -> Arc<[String]> {
        if let Some(realm) = &self.fixed_realm {
            return Arc::from(vec![realm.clone()]);
        }
        if let Some((at, realms)) = self.realm_cache.lock().as_ref() {
            if now.saturating_sub(*at) < REALM_CACHE_SECS {
                return realms.clone();
            }
        }
        let mut realms = match self.creds.realms().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list realms for a challenge");
                Vec::new()
            }
        };
        realms.truncate(MAX_GLOBAL_REALMS);
        if realms.is_empty() {
            realms.push("xcapd".into());
        }
        let realms: Arc<[String]> = Arc::from(realms);
        *self.realm_cache.lock() = Some((now, realms.clone()));
        realms
    }

    pub async fn authenticate(&self, req: &RequestInfo<'_>, now: u64) -> AuthOutcome {
        let client = trust::client_address(
            req.peer,
            header(req.headers, "x-forwarded-for").as_deref(),
            &self.trusted_proxies,
        );
        // AP-04: an asserted identity counts only from a trusted hop.
        if let Some(raw) = trust::asserted_identity(client, &self.trusted_peers, req.headers) {
            return match self.principal_from_identity(&raw).await {
                Some(p) => self.check_intended(req, p),
                None => AuthOutcome::Challenge(self.challenges(req, false, now).await),
            };
        }
        let address = client.to_string();
        let Some(authorization) = header(req.headers, "authorization") else {
            return AuthOutcome::Challenge(self.challenges(req, false, now).await);
        };
        let scheme = authorization
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let basic_allowed = self.basic && (req.tls || self.tls || self.basic_without_tls);
        // Parsed once: the claimed user name feeds the lockout before verification.
        let basic_realms = if scheme == "basic" && basic_allowed {
            Some(self.realms_for(req.target, now).await)
        } else {
            None
        };
        let credentials = match scheme.as_str() {
            "digest" if self.digest.is_some() => parse_authorization(&authorization)
                .map(Credentials::Digest)
                .unwrap_or(Credentials::Unusable),
            "basic" => match (parse_basic(&authorization), basic_realms) {
                (Ok((user, password)), Some(realms)) => Credentials::Basic {
                    realms,
                    user,
                    password,
                },
                _ => Credentials::Unusable,
            },
            "bearer" if self.jwt.is_some() => Credentials::Bearer,
            _ => Credentials::Unusable,
        };
        // The user the credentials claim to be, canonical, so every spelling shares a counter.
        let claimed = match &credentials {
            Credentials::Digest(p) => Some(self.canonical_user(&p.username, &p.realm)),
            Credentials::Basic { realms, user, .. } => {
                Some(self.canonical_user(user, realms.first().map_or("", String::as_str)))
            }
            Credentials::Bearer | Credentials::Unusable => None,
        };
        if let Err(ThrottleError::RetryAfter(secs)) =
            self.lockout.check(claimed.as_deref(), &address, now)
        {
            return AuthOutcome::Throttled(secs);
        }
        let result = match credentials {
            Credentials::Digest(p) => self.digest(req, p, now).await,
            Credentials::Basic {
                realms,
                user,
                password,
            } => self.basic(&realms, &user, &password).await,
            Credentials::Bearer => self.bearer(&authorization).await,
            Credentials::Unusable => Err(Failure::Invalid),
        };
        match result {
            Ok(principal) => {
                if let Some(user) = &claimed {
                    self.lockout.success(user, &address, now);
                }
                self.check_intended(req, principal)
            }
            Err(Failure::Stale) => AuthOutcome::Challenge(self.challenges(req, true, now).await),
            Err(Failure::Invalid) => {
                self.lockout.failure(claimed.as_deref(), &address, now);
                tracing::info!(target: "xcapd::auth", client = %client, scheme = %scheme, "authentication failed");
                AuthOutcome::Challenge(self.challenges(req, false, now).await)
            }
        }
    }

    /// The canonical XUI for a user name as a client typed it (`bob`, `bob@example.com`,
    /// `sip:bob@example.com`; a bare name takes the default domain, else `realm`); names that
    /// are no XUI count under their lowercase text.
    fn canonical_user(&self, username: &str, realm: &str) -> String {
        let domain = self
            .default_domain
            .as_deref()
            .or((!realm.is_empty()).then_some(realm));
        Xui::parse(username, domain)
            .map(|x| x.as_str().to_string())
            .unwrap_or_else(|_| username.to_ascii_lowercase())
    }

    async fn challenges(&self, req: &RequestInfo<'_>, stale: bool, now: u64) -> Vec<String> {
        let realms = self.realms_for(req.target, now).await;
        let mut out = Vec::new();
        if let Some(d) = &self.digest {
            for realm in realms.iter() {
                out.extend(d.challenges(realm, stale, now));
            }
        }
        let first = realms.first().map(String::as_str).unwrap_or("xcapd");
        if self.basic && (req.tls || self.tls || self.basic_without_tls) {
            out.push(basic_challenge(first));
        }
        if self.jwt.is_some() {
            out.push(format!("Bearer realm=\"{first}\""));
        }
        out
    }

    async fn digest(
        &self,
        req: &RequestInfo<'_>,
        params: DigestParams,
        now: u64,
    ) -> Result<Principal, Failure> {
        let Some(d) = &self.digest else {
            return Err(Failure::Invalid);
        };
        let stale = |e: DigestError| {
            if e.is_stale() {
                Failure::Stale
            } else {
                Failure::Invalid
            }
        };
        // Nothing is looked up for a request whose nonce, opaque or uri are wrong.
        let checked = d.precheck(req.target, params).map_err(stale)?;
        let (user, realm, alg) = checked.lookup();
        let found = self
            .creds
            .lookup_ha1(user, realm, alg.as_str())
            .await
            .ok()
            .flatten();
        let (xui, ha1) = found.unzip();
        d.complete(checked, req.method, ha1.as_deref(), now)
            .map_err(stale)?;
        let xui = xui.ok_or(Failure::Invalid)?;
        Ok(self.principal_for(&xui).await)
    }

    async fn basic(
        &self,
        realms: &[String],
        user: &str,
        password: &str,
    ) -> Result<Principal, Failure> {
        let alg = Algorithm::Sha256;
        for realm in realms {
            if let Ok(Some((xui, ha1))) = self.creds.lookup_ha1(user, realm, alg.as_str()).await {
                if verify_basic(user, password, realm, &ha1, alg) {
                    return Ok(self.principal_for(&xui).await);
                }
            }
        }
        Err(Failure::Invalid)
    }

    async fn bearer(&self, authorization: &str) -> Result<Principal, Failure> {
        let (Some(jwt), Some(token)) = (&self.jwt, bearer_token(authorization)) else {
            return Err(Failure::Invalid);
        };
        let claims = jwt.verify(token).map_err(|_| Failure::Invalid)?;
        let xui = Xui::parse(&claims.sub, self.default_domain.as_deref())
            .map_err(|_| Failure::Invalid)?;
        if self.jwt_require_user {
            // A deleted user's tokens die with the user; a revoking password change kills
            // the tokens issued before it (issue #11 item 7).
            let user = self
                .creds
                .get_user(xui.as_str())
                .await
                .ok()
                .flatten()
                .ok_or(Failure::Invalid)?;
            if user.tokens_not_before > 0
                && claims.iat.is_none_or(|iat| iat < user.tokens_not_before)
            {
                return Err(Failure::Invalid);
            }
        }
        let roles: Vec<Role> = claims.roles.iter().filter_map(|r| r.parse().ok()).collect();
        Ok(principal_with_roles(xui.as_str(), &roles))
    }

    /// Roles come from the credential store; an unknown user is a plain user.
    async fn principal_for(&self, xui: &str) -> Principal {
        crate::storage::credentials::principal_in(self.creds.as_ref(), xui).await
    }

    async fn principal_from_identity(&self, raw: &str) -> Option<Principal> {
        let xui = Xui::from_identity_header(raw, self.default_domain.as_deref()).ok()?;
        Some(self.principal_for(xui.as_str()).await)
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

/// An `Authorization` value, parsed once, for an enabled scheme.
enum Credentials {
    Digest(DigestParams),
    /// With the realms the request is challenged in.
    Basic {
        realms: Arc<[String]>,
        user: String,
        password: String,
    },
    /// The token is checked by [`Front::bearer`].
    Bearer,
    /// A disabled or unknown scheme, or credentials that do not parse.
    Unusable,
}

enum Failure {
    Stale,
    /// Bad credentials.
    Invalid,
}

fn principal_with_roles(xui: &str, roles: &[Role]) -> Principal {
    crate::storage::credentials::principal_of(xui, roles)
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
