//! Bearer JWT authentication at the Aggregation Proxy (OMA XDM Core AP-02, issue #3).
//!
//! Verifies `Authorization: Bearer <JWT>` tokens (RFC 6750 §2.1, RFC 7519, RFC 7515) signed with
//! HS256, RS256 or EdDSA (RFC 7518 §3.2/§3.3, RFC 8037). The `sub` claim is the authenticated XUI.
//!
//! Security rules enforced here:
//! - the algorithm is fixed by each configured key, never by the token: a token whose header `alg`
//!   differs from the key's algorithm is never checked against that key, which defeats algorithm
//!   confusion (an HS256 token "signed" with an RSA public key as HMAC secret) and `alg: none`
//!   (RFC 8725 §2.1, §3.1);
//! - `exp` and `sub` are required, `nbf` is honoured, `iss` and `aud` are required and checked when
//!   configured (RFC 7519 §4.1); a token carrying `aud` is rejected when no audience is configured
//!   (RFC 7519 §4.1.3: the recipient must identify itself with a value in `aud`);
//! - a `crit` header is rejected because no JWS extension is understood (RFC 7515 §4.1.11);
//! - weak keys are refused at start-up: HMAC secrets under 256 bits (RFC 7518 §3.2) and RSA moduli
//!   under 2048 bits (RFC 7518 §3.3).
//!
//! `JwtIssuer` mints tokens for the admin API ("issue a JWT for a user"), with HS256 or EdDSA.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde_json::{Map, Value};

/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// Tokens longer than this are rejected before any decoding (cheap DoS guard; real tokens are far
/// smaller, and HTTP header limits apply anyway).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
const MIN_HMAC_SECRET_LEN: usize = 32;
/// RFC 7518 §3.3: RSA keys of 2048 bits or larger must be used.
const MIN_RSA_MODULUS_BITS: usize = 2048;
/// Length of an Ed25519 public key (RFC 8032 §5.1.5).
const ED25519_PUBLIC_KEY_LEN: usize = 32;

/// Errors of JWT verification and issuance. Every verification failure maps to HTTP 401 at the
/// proxy; the variants exist for logs and metrics and must not be shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// A configured key cannot be used (bad PEM, wrong key type, too weak).
    #[error("invalid JWT key configuration: {0}")]
    InvalidKey(String),
    /// No verification key is configured at all.
    #[error("no JWT verification key configured")]
    NoKeys,
    /// The token is not a well-formed compact JWS, or is too long.
    #[error("malformed JWT")]
    Malformed,
    /// The header names a JWS algorithm we do not accept (HS384/512, RS384/512, PS*, ES*).
    /// `none` and unknown names cannot be parsed at all and surface as `Malformed`.
    #[error("unsupported JWT algorithm")]
    UnsupportedAlgorithm,
    /// The header carries `crit`, naming extensions we do not understand (RFC 7515 §4.1.11).
    #[error("JWT header has unsupported critical extensions")]
    CriticalHeader,
    /// No configured key uses the algorithm named by the token header.
    #[error("no configured key for the token's algorithm")]
    NoKeyForAlgorithm,
    /// No configured key of the right algorithm verifies the signature.
    #[error("JWT signature invalid")]
    BadSignature,
    /// A required claim is missing.
    #[error("JWT claim `{0}` missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an unusable value.
    #[error("JWT claim `{0}` invalid")]
    InvalidClaim(&'static str),
    /// `exp` is in the past (beyond the leeway).
    #[error("JWT expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("JWT not yet valid")]
    NotYetValid,
    /// `iss` does not match the configured issuer.
    #[error("JWT issuer mismatch")]
    WrongIssuer,
    /// `aud` does not contain the configured audience (or is present with none configured).
    #[error("JWT audience mismatch")]
    WrongAudience,
    /// The system clock is before the Unix epoch; fail closed.
    #[error("system clock unusable")]
    Clock,
    /// Signing a new token failed.
    #[error("JWT signing failed: {0}")]
    Signing(String),
}

/// A verification key; its variant fixes the only algorithm it accepts.
#[derive(Clone)]
pub enum JwtKey {
    /// HMAC-SHA256 shared secret (at least 32 bytes).
    Hs256 { secret: Vec<u8> },
    /// RSA public key, PEM (`PUBLIC KEY` SPKI or `RSA PUBLIC KEY` PKCS#1), at least 2048 bits.
    Rs256 { public_pem: Vec<u8> },
    /// Ed25519 public key, PEM (`PUBLIC KEY` SPKI).
    EdDsa { public_pem: Vec<u8> },
}

impl JwtKey {
    fn algorithm(&self) -> Algorithm {
        match self {
            JwtKey::Hs256 { .. } => Algorithm::HS256,
            JwtKey::Rs256 { .. } => Algorithm::RS256,
            JwtKey::EdDsa { .. } => Algorithm::EdDSA,
        }
    }
}

// Secrets never reach logs (design §7).
impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtKey::Hs256 { .. } => f.write_str("Hs256 { secret: [redacted] }"),
            JwtKey::Rs256 { public_pem } => {
                write!(f, "Rs256 {{ public_pem: {} bytes }}", public_pem.len())
            }
            JwtKey::EdDsa { public_pem } => {
                write!(f, "EdDsa {{ public_pem: {} bytes }}", public_pem.len())
            }
        }
    }
}

/// Verifier configuration.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Verification keys; a token is checked only against keys of its header's algorithm.
    pub keys: Vec<JwtKey>,
    /// When set, `iss` is required and must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` is required and must contain it.
    pub audience: Option<String>,
    /// Clock-skew allowance applied to `exp` and `nbf`.
    pub leeway_secs: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            keys: Vec::new(),
            issuer: None,
            audience: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }
}

/// The claims the proxy uses from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtClaims {
    /// The authenticated XUI, not yet normalized (IO-01).
    pub sub: String,
    /// Optional `roles` claim (array of strings); empty when absent.
    pub roles: Vec<String>,
    /// Expiry as seconds since the epoch.
    pub exp: u64,
    /// `iat` (issued at, RFC 7519 §4.1.6) rounded down, when present: compared with the
    /// user's token epoch to revoke tokens issued before a password change.
    pub iat: Option<u64>,
}

/// One prepared verification key with its algorithm-pinned validation rules.
struct PreparedKey {
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

/// Verifies bearer JWTs against the configured keys. Cheap to share (`Send + Sync`).
pub struct JwtVerifier {
    keys: Vec<PreparedKey>,
    leeway_secs: u64,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

impl JwtVerifier {
    /// Prepares every key and fails on the first unusable one, so mistakes show up at start-up
    /// rather than as 401s.
    pub fn new(cfg: JwtConfig) -> Result<Self, JwtError> {
        if cfg.keys.is_empty() {
            return Err(JwtError::NoKeys);
        }
        let mut keys = Vec::with_capacity(cfg.keys.len());
        for key in &cfg.keys {
            let algorithm = key.algorithm();
            keys.push(PreparedKey {
                algorithm,
                key: decoding_key(key)?,
                validation: validation_for(algorithm, &cfg),
            });
        }
        Ok(JwtVerifier {
            keys,
            leeway_secs: cfg.leeway_secs,
        })
    }

    /// Verifies `token` against the current system time.
    pub fn verify(&self, token: &str) -> Result<JwtClaims, JwtError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| JwtError::Clock)?
            .as_secs();
        self.verify_at(token, now)
    }

    /// Verifies `token` as of `now` (seconds since the epoch).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<JwtClaims, JwtError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed);
        }
        // An unknown `alg` (including "none") fails header deserialization: jsonwebtoken has no
        // variant for it, so such tokens never reach a key.
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if header.crit.is_some() {
            return Err(JwtError::CriticalHeader);
        }
        if !matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::RS256 | Algorithm::EdDSA
        ) {
            return Err(JwtError::UnsupportedAlgorithm);
        }

        let mut saw_key = false;
        for prepared in self.keys.iter().filter(|k| k.algorithm == header.alg) {
            saw_key = true;
            match jsonwebtoken::decode::<Map<String, Value>>(
                token,
                &prepared.key,
                &prepared.validation,
            ) {
                Ok(data) => return self.check_claims(&data.claims, now),
                // Another key of the same algorithm may still match (key rotation).
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                // The signature verified (claims are checked after it), or the token is
                // malformed: the answer cannot change with another key.
                Err(e) => return Err(map_library_error(e.kind())),
            }
        }
        Err(if saw_key {
            JwtError::BadSignature
        } else {
            JwtError::NoKeyForAlgorithm
        })
    }

    /// Checks the claims jsonwebtoken leaves to us (time is checked here so `now` is injectable).
    fn check_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<JwtClaims, JwtError> {
        let sub = match claims.get("sub") {
            None | Some(Value::Null) => return Err(JwtError::MissingClaim("sub")),
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(_) => return Err(JwtError::InvalidClaim("sub")),
        };

        // An `exp` value is the last second of validity, so a token expires once `now >= exp`.
        let exp = numeric_date(claims, "exp", false)?.ok_or(JwtError::MissingClaim("exp"))?;
        if now >= exp.saturating_add(self.leeway_secs) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf", true)? {
            if now.saturating_add(self.leeway_secs) < nbf {
                return Err(JwtError::NotYetValid);
            }
        }

        // Roles grant privileges, so a malformed claim rejects the token rather than being ignored.
        let roles = match claims.get("roles") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(JwtError::InvalidClaim("roles"))?,
            Some(_) => return Err(JwtError::InvalidClaim("roles")),
        };

        let iat = numeric_date(claims, "iat", false)?;
        Ok(JwtClaims {
            sub,
            roles,
            exp,
            iat,
        })
    }
}

/// Reads a NumericDate (RFC 7519 §2): non-negative seconds, possibly fractional. Fractions round
/// toward the stricter side: `exp` down, `nbf` up.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
    round_up: bool,
) -> Result<Option<u64>, JwtError> {
    let n = match claims.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n,
        Some(_) => return Err(JwtError::InvalidClaim(name)),
    };
    if let Some(v) = n.as_u64() {
        return Ok(Some(v));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => {
            let rounded = if round_up { f.ceil() } else { f.floor() };
            // In range by the guard above; `as` saturates anyway.
            Ok(Some(rounded as u64))
        }
        _ => Err(JwtError::InvalidClaim(name)),
    }
}

/// Validation pinned to one algorithm; time checks are ours (`check_claims`), the rest is
/// jsonwebtoken's.
fn validation_for(algorithm: Algorithm, cfg: &JwtConfig) -> Validation {
    let mut v = Validation::new(algorithm);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.leeway = 0;
    v.validate_aud = true;
    let mut required = vec!["exp", "sub"];
    if let Some(iss) = &cfg.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    if let Some(aud) = &cfg.audience {
        v.set_audience(&[aud]);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

fn map_library_error(kind: &ErrorKind) -> JwtError {
    match kind {
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => JwtError::UnsupportedAlgorithm,
        ErrorKind::MissingRequiredClaim(c) => JwtError::MissingClaim(claim_name(c)),
        ErrorKind::InvalidClaimFormat(c) => JwtError::InvalidClaim(claim_name(c)),
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
        ErrorKind::InvalidAudience => JwtError::WrongAudience,
        ErrorKind::InvalidSubject => JwtError::InvalidClaim("sub"),
        _ => JwtError::Malformed,
    }
}

/// Maps jsonwebtoken's claim names onto the registered names (unknown ones never occur: only
/// registered claims are in `required_spec_claims`).
fn claim_name(name: &str) -> &'static str {
    match name {
        "exp" => "exp",
        "nbf" => "nbf",
        "sub" => "sub",
        "iss" => "iss",
        "aud" => "aud",
        _ => "unknown",
    }
}

fn decoding_key(key: &JwtKey) -> Result<DecodingKey, JwtError> {
    match key {
        JwtKey::Hs256 { secret } => {
            check_hmac_secret(secret)?;
            Ok(DecodingKey::from_secret(secret))
        }
        JwtKey::Rs256 { public_pem } => {
            let pem_key = DecodingKey::from_rsa_pem(public_pem)
                .map_err(|e| JwtError::InvalidKey(format!("RS256 public key: {e}")))?;
            let der = pem_key
                .try_get_as_bytes()
                .map_err(|e| JwtError::InvalidKey(format!("RS256 public key: {e}")))?;
            // jsonwebtoken only extracts the DER here; parse it now so a bad key fails at start-up.
            let (n, e) = (DEFAULT_PROVIDER
                .key_utils
                .rsa_pub_components_from_public_key)(der)
            .map_err(|e| JwtError::InvalidKey(format!("RS256 public key: {e}")))?;
            let bits = modulus_bits(&n);
            if bits < MIN_RSA_MODULUS_BITS {
                return Err(JwtError::InvalidKey(format!(
                    "RS256 public key has {bits} bits, at least {MIN_RSA_MODULUS_BITS} required"
                )));
            }
            Ok(DecodingKey::from_rsa_raw_components(&n, &e))
        }
        JwtKey::EdDsa { public_pem } => {
            let k = DecodingKey::from_ed_pem(public_pem)
                .map_err(|e| JwtError::InvalidKey(format!("EdDSA public key: {e}")))?;
            // jsonwebtoken slices the key to 32 bytes when verifying and would panic on a
            // shorter one, so check the length here.
            let len = k
                .try_get_as_bytes()
                .map_err(|e| JwtError::InvalidKey(format!("EdDSA public key: {e}")))?
                .len();
            if len != ED25519_PUBLIC_KEY_LEN {
                return Err(JwtError::InvalidKey(format!(
                    "EdDSA public key is {len} bytes, expected an Ed25519 key of {ED25519_PUBLIC_KEY_LEN}"
                )));
            }
            Ok(k)
        }
    }
}

fn check_hmac_secret(secret: &[u8]) -> Result<(), JwtError> {
    if secret.len() < MIN_HMAC_SECRET_LEN {
        return Err(JwtError::InvalidKey(format!(
            "HS256 secret is {} bytes, at least {MIN_HMAC_SECRET_LEN} required",
            secret.len()
        )));
    }
    Ok(())
}

/// Bit length of a big-endian unsigned integer.
fn modulus_bits(be: &[u8]) -> usize {
    let mut bytes = be;
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    match bytes.first() {
        None => 0,
        Some(first) => bytes.len() * 8 - first.leading_zeros() as usize,
    }
}

/// Extracts the token from an `Authorization` header value: `Bearer <token>`, scheme name
/// case-insensitive (RFC 6750 §2.1, RFC 7235 §2.1). Returns `None` for other schemes.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let value = authorization.trim();
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return None;
    }
    let token = rest.trim();
    if token.is_empty() || token.contains(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    Some(token)
}

/// A signing key for `JwtIssuer`; its variant fixes the algorithm.
#[derive(Clone)]
pub enum JwtSigningKey {
    /// HMAC-SHA256 shared secret (at least 32 bytes).
    Hs256 { secret: Vec<u8> },
    /// Ed25519 private key, PEM (`PRIVATE KEY` PKCS#8).
    EdDsa { private_pem: Vec<u8> },
}

impl fmt::Debug for JwtSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtSigningKey::Hs256 { .. } => f.write_str("Hs256 { secret: [redacted] }"),
            JwtSigningKey::EdDsa { .. } => f.write_str("EdDsa { private_pem: [redacted] }"),
        }
    }
}

/// Mints tokens that `JwtVerifier` (configured with the matching key, issuer and audience)
/// accepts. `Send + Sync`.
pub struct JwtIssuer {
    algorithm: Algorithm,
    key: EncodingKey,
    issuer: Option<String>,
    audience: Option<String>,
}

impl fmt::Debug for JwtIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtIssuer")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
}

impl JwtIssuer {
    /// Prepares the signing key and proves it can sign, so a bad key fails at start-up.
    /// `issuer`/`audience`, when set, go into `iss`/`aud` of every token.
    pub fn new(
        key: JwtSigningKey,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, JwtError> {
        let (algorithm, key) = match &key {
            JwtSigningKey::Hs256 { secret } => {
                check_hmac_secret(secret)?;
                (Algorithm::HS256, EncodingKey::from_secret(secret))
            }
            JwtSigningKey::EdDsa { private_pem } => {
                let k = EncodingKey::from_ed_pem(private_pem)
                    .map_err(|e| JwtError::InvalidKey(format!("EdDSA private key: {e}")))?;
                (Algorithm::EdDSA, k)
            }
        };
        jsonwebtoken::crypto::sign(b"key check", &key, algorithm)
            .map_err(|e| JwtError::InvalidKey(format!("signing key unusable: {e}")))?;
        Ok(JwtIssuer {
            algorithm,
            key,
            issuer,
            audience,
        })
    }

    /// Issues a token for `sub` valid from `now` for `ttl_secs` seconds.
    pub fn issue(
        &self,
        sub: &str,
        roles: &[String],
        ttl_secs: u64,
        now: u64,
    ) -> Result<String, JwtError> {
        if sub.trim().is_empty() {
            return Err(JwtError::InvalidClaim("sub"));
        }
        if ttl_secs == 0 {
            return Err(JwtError::InvalidClaim("exp"));
        }
        let claims = IssuedClaims {
            sub,
            iat: now,
            exp: now.saturating_add(ttl_secs),
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
            roles,
        };
        let mut header = Header::new(self.algorithm);
        header.typ = Some("JWT".to_owned());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| JwtError::Signing(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Test keys generated on this machine with OpenSSL 3.0 (`openssl genpkey`); test-only.
    const RSA_PUB: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuTUi5EdkzQY+kfQt+WI8
Io4ivqHgVx5fSmb9Quo4qcBYdDJr0AQMrL2GbbfLy2T0NGFgGxCKycuSTwasgnsq
rqbwrXr5r0dISUvIMJhGQhetLN4CaCABLP3k4LBfsbBSZhOQU70VhCI94Qb/fJ+0
xKsSS5WmI6wwH7yVpWNbdMf7moz8BZtqOs/8GYj3x05uViXvnsHHri7KRngx2/0R
NYT+RbxTenAvP10CZCCXDdZ65bPKWnR5IHXa+htL6vDoLkLrKVTmsEPIdwS+trzW
ICiAVpgzis1HG9YY1jD+8GHokhAcpbNcWW4kuKaue2Q3GlnlzM8GF04zYTqeljex
8QIDAQAB
-----END PUBLIC KEY-----
";
    const RSA_PRIV: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC5NSLkR2TNBj6R
9C35YjwijiK+oeBXHl9KZv1C6jipwFh0MmvQBAysvYZtt8vLZPQ0YWAbEIrJy5JP
BqyCeyqupvCtevmvR0hJS8gwmEZCF60s3gJoIAEs/eTgsF+xsFJmE5BTvRWEIj3h
Bv98n7TEqxJLlaYjrDAfvJWlY1t0x/uajPwFm2o6z/wZiPfHTm5WJe+ewceuLspG
eDHb/RE1hP5FvFN6cC8/XQJkIJcN1nrls8padHkgddr6G0vq8OguQuspVOawQ8h3
BL62vNYgKIBWmDOKzUcb1hjWMP7wYeiSEByls1xZbiS4pq57ZDcaWeXMzwYXTjNh
Op6WN7HxAgMBAAECggEAHZ9yXH1P0dwrE1ixJsdv014VEBUfpweIWcPlw7dnRz1o
2HL9HAkdxt5Me02PttFHnv4pK0MG09Zv6Rxp6LfPAJ7adYDrIT4fQXvxwdYFPMqB
LCE5VNKzpXDZlBeZwrevQjzkU4R1hcwdRhoCsLnxpZgwJa9CoseGbfkRnWGqLeAN
ad5l0eFtbUfuK+auw7IpKkkZ+kS6/NviJIFoKu8ieJxTcQQKWmOEat000VpBLZQF
yW2vge4FZiQ7wiKg75Yig02CJ9HP7DMxHoL/l072XIv5o9VhwO8I9HSNlybneNUb
9sWSW+KdY8Qgl+imVmGJJ9X3EyQw3X1xJissJH5avQKBgQD4jLIXSHE7AeQaH9Rg
7iubnff9BHIvmHGc78qW7SEWjIAxp2y+nM/+FMz1KmWxdzaxPcmeJqYeZwDk6Fnm
7CX8DqtATlly5pNMKdLdWQOJimpv+aB4sP4rGncF2sVyycOj6ZGH/xxLqN0rVEFm
R2zhE/UGgJGQz0RSr8Zh60ZhtQKBgQC+wl7avlGc3fO6weXn6idvq5bjw2og8eiZ
jNVPwMkUIfse5pnjrZJycyYPkZAYmrpyqLP5pUC1qBuVmT8mI6/UXkJnfzj6a9aK
MVziqLq0lKjd8Se6y1Twm3aalnJNpHhbjpNS/It4WlGaFvDP/vkWYj49C8umfN/s
SoGnz2YkzQKBgCqc1JuxS9h2BomEE4Fa1BcmCjJS5NDMLg5d/jnKBfY7uG7K6ZX0
hKRnJIyT7EN00OeqVDrNHYXw2vJj86Xnrst8KFgqFqPgbDiOoxxX+odGN+FixuRq
U+lH7EgQrfF0LhqYHN9YGZ3PIbwgAeZrMHuWVFf9Cvfs0SXsBPMcx0BRAoGALfFS
NwyvS0CJeulIHdrfNJ328VQXM2gPxSuOFG8x/o9Qk9imJ5eeNcJV4FoGgmaBkSvg
bLfIJfge7KDD/MOLjXJGO/cAGg/u08mfvVc14FgNc6apEuv1wR0wK3sgfGKoOiTU
hqAcVxgpnxr3VKDsDOAMbVdx7N8Wbypin6/rweECgYA0js9hgBtaDEVbs8tabrd2
X1wmfIjN3GhFJ9K5v3b1zOaGa/4ZRnTno3Y6Y1Ner12avneaQkg4pANdxUHCFtyQ
zfw3MDrrGEomiqjXQLBWuPEMmOFvSX+Gd6pYyIlHEcipv/6eqestEPbWHn8PcXiD
BI3j+RGG7NkjY1u1c2Zz/g==
-----END PRIVATE KEY-----
";
    /// A second RSA key pair (private half only): signs the "wrong key" tokens.
    const RSA2_PRIV: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCXFB4xysNUxumF
hh6Hp1K1OZD8hyihsvxUjLp3KvtGfX6gU0LwshXHmACFhA11DZfMUkLj4UBqMHxP
IeNrNlQ/9UwmWTvjBa0x9vahdkczR6yQH1IsMFWPDr3s2eg+qUOLnjFgdt0Dfq2T
AgbG7mvnrtp0ttheU4GDZQyL2LGVKShhyjlRTHEIqxJvriWkYMV4rAlGnDI7qVjS
gyir+wRe1bakixTDopIsrYXTq16osKS5OKAlgrzmotEO6BBGPPW4rT/GjwDHKLVJ
wOmAQmrJnI7v6NbdumcybvcqUgb35anKO0PlPuvJLny1laxYr4xtCZG1ae/XL3Qo
hMmRV9+XAgMBAAECggEARzZc6zR7sRzXmzA2eNPWiQTbAiWFcf7HsOTqydwxOC9U
PicxAPq4iG3uJQEzRK8FE/Lcg8S707IKDlTXeURRHxq1a8gZEfAtjMUvyLjTY+kP
fpm85oZb9gRJYvjt34dyhr+o36L3l7ug/o/weNmOdFU3tNcxEvlCrZg2ez7HqhpU
TMxv4cv5NiDDSulbEs++gV2q1h9VcZd+ZJ9ObpsG/H+a+I0nzNxd9J9aSRx05+pm
+ec1HZP/+3FFohwQuOmFdab4sTqnlVfCOmroth1AdEOhkLV+Hp3BKepZUFvI4pyU
O99qbXYRiZ1njNdtKUbvrHP7ZTJVpGUrZj5jJfucSQKBgQDN+PNVv1n8UXXsKF9w
5EyXl8g50JfZtCCUklO8qEHw+ruZMaHweNlsbBWcvxzbaHy6Qu2LbTdyESzYLVt/
BpxsxHxJxWv6ICov2BgHXRHkh7XQw3ujcjqonm5KxYmuOKI47QiXoBInZt8d3ivU
cxPTfBLZNqNSVRLXaCcA2Ka+HwKBgQC7xfNx1y/PJb/BbGhNAMtHhZs8FePDwJZL
nWnCIE89ppWSaDk2cNBPG+kDPA4UXeFgp2SEl8yvpYFuvaCMhE3dPo5LnMLObtA3
eDBTfe/51CnLgj4qNTtvmufY/BQs6/wi1VpdkaXh9YSThCQafoddmzMX3p9HI3Vb
KPWO+V2/iQKBgEC7rhZT5j8ThwEqixxa0+uMy2PIOAE2yEqJVoHjS54l3xG9dIy0
Hnkh2wUBV1tpklGjuS5pq9RQq4xhbPEWLdFNS1aQEmhw9XFF8/9Uc8wkDrNGzLPI
scDO0hDz1lqH+Av2Cw5EQ5BYl2S2r4W8iQ2dX/seXeQBUsOaOy/b50O3AoGBAJxw
oo+A8aMK10TGFeu5sqLG7HtV3Wn0pQMghcEne/1oMYtF7AywVszh+vMn8K8FPEVz
kOprMixQnpJtyDnp7Jlcid7zHtYwOqdMKi8VaH7jRWL5AuPVb8xe6bS85+45Odqn
mF8GfobQL4FbgVzVd+AD8sB7SIZTQ24MpPFWTsXJAoGBALYYaK/PiNO2apzotK/l
XyrwC04k0COgvh3UmSxN7/m6AqZ76UcGdCSgrK189b+l2Hu3XwFd3Jwxv3Y0vFry
RFBylJeh7YL+zwwII8O2j+Uj5WpQlInTPymUHtvbMT1uPrO2vyL+ChTahVXbgNJo
H3TIfRkcPnuyXkjpWzJKzsWA
-----END PRIVATE KEY-----
";
    /// A 1024-bit RSA public key: too weak per RFC 7518 §3.3.
    const RSA1024_PUB: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDbDrvRYGRYwfD32eENLS2u/U+p
KAMH9SqfuY+fGwXNfudH3RPfAJ99oLQodE8yhkpkRZ23dy+HRwi455cK4vlX1FeM
ruTb22GQPDZA5sZPgeDkajUjK2KksmmnzFu5+ConA3HbZL5vLDX4ZjTAY7sbLvfx
TOQnds+7/sN9fxoFlwIDAQAB
-----END PUBLIC KEY-----
";
    const ED_PRIV: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIIndpGaA7/Y0OrR4zEtaA0xpNjVqOss8ZKVcooty9hAt
-----END PRIVATE KEY-----
";
    const ED_PUB: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAF4CFzNVn8KE3D2vnMODidAcC4Gr02vnhSAl1PxG6rcI=
-----END PUBLIC KEY-----
";
    const ED2_PRIV: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEILL4yWpUvqbkpIWl76AcilE4qTqjsNzJtsHxwuixjcqF
-----END PRIVATE KEY-----
";

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-hs256-test";
    const OTHER_SECRET: &[u8] = b"fedcba9876543210fedcba9876543210-other-key";
    const NOW: u64 = 1_700_000_000;

    fn hs_key() -> JwtKey {
        JwtKey::Hs256 {
            secret: SECRET.to_vec(),
        }
    }
    fn rs_key() -> JwtKey {
        JwtKey::Rs256 {
            public_pem: RSA_PUB.as_bytes().to_vec(),
        }
    }
    fn ed_key() -> JwtKey {
        JwtKey::EdDsa {
            public_pem: ED_PUB.as_bytes().to_vec(),
        }
    }

    fn verifier(keys: Vec<JwtKey>) -> JwtVerifier {
        let cfg = JwtConfig {
            keys,
            ..JwtConfig::default()
        };
        JwtVerifier::new(cfg).unwrap()
    }

    fn verifier_with(
        keys: Vec<JwtKey>,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> JwtVerifier {
        JwtVerifier::new(JwtConfig {
            keys,
            issuer: issuer.map(str::to_owned),
            audience: audience.map(str::to_owned),
            leeway_secs: DEFAULT_LEEWAY_SECS,
        })
        .unwrap()
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
    }
    fn hs(claims: &Value) -> String {
        sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
    }
    fn rs(claims: &Value) -> String {
        sign(
            Algorithm::RS256,
            &EncodingKey::from_rsa_pem(RSA_PRIV.as_bytes()).unwrap(),
            claims,
        )
    }
    fn ed(claims: &Value) -> String {
        sign(
            Algorithm::EdDSA,
            &EncodingKey::from_ed_pem(ED_PRIV.as_bytes()).unwrap(),
            claims,
        )
    }

    fn claims(sub: &str) -> Value {
        serde_json::json!({ "sub": sub, "exp": NOW + 600, "iat": NOW })
    }

    /// base64url without padding (RFC 7515 §2), to hand-craft hostile tokens.
    fn b64url(data: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    fn raw_token(header: &Value, claims: &Value, sig: &str) -> String {
        format!(
            "{}.{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes()),
            sig
        )
    }

    #[test]
    fn b64url_matches_rfc4648_vectors() {
        // RFC 4648 §10 test vectors, unpadded.
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(b"foob"), "Zm9vYg");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }

    // --- valid tokens (AP-02: the AP authenticates the XDMC; `sub` is the XUI) ---

    #[test]
    fn valid_hs256_token_yields_sub_and_roles() {
        let v = verifier(vec![hs_key()]);
        let mut c = claims("sip:alice@example.com");
        c["roles"] = serde_json::json!(["admin", "user"]);
        let got = v.verify_at(&hs(&c), NOW).unwrap();
        assert_eq!(got.sub, "sip:alice@example.com");
        assert_eq!(got.roles, vec!["admin".to_owned(), "user".to_owned()]);
        assert_eq!(got.exp, NOW + 600);
    }

    #[test]
    fn valid_rs256_token() {
        let v = verifier(vec![rs_key()]);
        let got = v
            .verify_at(&rs(&claims("sip:bob@example.com")), NOW)
            .unwrap();
        assert_eq!(got.sub, "sip:bob@example.com");
        assert!(got.roles.is_empty());
    }

    #[test]
    fn valid_eddsa_token() {
        let v = verifier(vec![ed_key()]);
        let got = v.verify_at(&ed(&claims("alice@example.com")), NOW).unwrap();
        assert_eq!(got.sub, "alice@example.com");
    }

    #[test]
    fn each_algorithm_verified_with_mixed_key_set() {
        let v = verifier(vec![hs_key(), rs_key(), ed_key()]);
        for token in [hs(&claims("a@x")), rs(&claims("a@x")), ed(&claims("a@x"))] {
            assert_eq!(v.verify_at(&token, NOW).unwrap().sub, "a@x");
        }
    }

    #[test]
    fn key_rotation_second_key_of_same_algorithm_matches() {
        let v = verifier(vec![
            JwtKey::Hs256 {
                secret: OTHER_SECRET.to_vec(),
            },
            hs_key(),
        ]);
        assert!(v.verify_at(&hs(&claims("a@x")), NOW).is_ok());
    }

    #[test]
    fn verify_uses_system_clock() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let v = verifier(vec![hs_key()]);
        let fresh = serde_json::json!({ "sub": "a@x", "exp": now + 600 });
        assert!(v.verify(&hs(&fresh)).is_ok());
        let stale = serde_json::json!({ "sub": "a@x", "exp": now - 3600 });
        assert_eq!(v.verify(&hs(&stale)), Err(JwtError::Expired));
    }

    // --- rejected tokens (issue #3 acceptance: each of these becomes 401) ---

    #[test]
    fn alg_none_rejected_rfc8725_2_1() {
        let v = verifier(vec![hs_key(), rs_key(), ed_key()]);
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = serde_json::json!({ "alg": alg, "typ": "JWT" });
            for sig in ["", "AAAA"] {
                let t = raw_token(&header, &claims("a@x"), sig);
                assert_eq!(
                    v.verify_at(&t, NOW),
                    Err(JwtError::Malformed),
                    "alg={alg} sig={sig:?}"
                );
            }
        }
    }

    #[test]
    fn unsigned_token_with_stripped_signature_rejected() {
        let v = verifier(vec![hs_key()]);
        let t = hs(&claims("a@x"));
        let unsigned = &t[..=t.rfind('.').unwrap()];
        assert_eq!(v.verify_at(unsigned, NOW), Err(JwtError::BadSignature));
    }

    #[test]
    fn wrong_key_rejected_each_algorithm() {
        let hs_wrong = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(OTHER_SECRET),
            &claims("a@x"),
        );
        let rs_wrong = sign(
            Algorithm::RS256,
            &EncodingKey::from_rsa_pem(RSA2_PRIV.as_bytes()).unwrap(),
            &claims("a@x"),
        );
        let ed_wrong = sign(
            Algorithm::EdDSA,
            &EncodingKey::from_ed_pem(ED2_PRIV.as_bytes()).unwrap(),
            &claims("a@x"),
        );
        let v = verifier(vec![hs_key(), rs_key(), ed_key()]);
        for t in [hs_wrong, rs_wrong, ed_wrong] {
            assert_eq!(v.verify_at(&t, NOW), Err(JwtError::BadSignature));
        }
    }

    #[test]
    fn tampered_payload_rejected() {
        let v = verifier(vec![ed_key()]);
        let t = ed(&claims("sip:alice@example.com"));
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64url(claims("sip:mallory@example.com").to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(v.verify_at(&forged, NOW), Err(JwtError::BadSignature));
    }

    #[test]
    fn token_for_algorithm_without_key_rejected() {
        let v = verifier(vec![rs_key()]);
        assert_eq!(
            v.verify_at(&ed(&claims("a@x")), NOW),
            Err(JwtError::NoKeyForAlgorithm)
        );
    }

    #[test]
    fn other_algorithms_of_same_family_rejected() {
        // HS512/RS512 are valid JWS algorithms but not configured: the key fixes HS256/RS256.
        let v = verifier(vec![hs_key(), rs_key()]);
        let hs512 = sign(
            Algorithm::HS512,
            &EncodingKey::from_secret(SECRET),
            &claims("a@x"),
        );
        assert_eq!(
            v.verify_at(&hs512, NOW),
            Err(JwtError::UnsupportedAlgorithm)
        );
        let ps256 = sign(
            Algorithm::PS256,
            &EncodingKey::from_rsa_pem(RSA_PRIV.as_bytes()).unwrap(),
            &claims("a@x"),
        );
        assert_eq!(
            v.verify_at(&ps256, NOW),
            Err(JwtError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn algorithm_confusion_hs256_with_rsa_public_key_as_secret_rejected() {
        // The classic attack (RFC 8725 §2.1): HMAC keyed with the RSA public key the server trusts.
        let v = verifier(vec![rs_key()]);
        let pem_secret = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(RSA_PUB.as_bytes()),
            &claims("a@x"),
        );
        assert_eq!(
            v.verify_at(&pem_secret, NOW),
            Err(JwtError::NoKeyForAlgorithm)
        );
        // Same with the DER bytes jsonwebtoken would hold for the RSA key.
        let der = DecodingKey::from_rsa_pem(RSA_PUB.as_bytes()).unwrap();
        let der_secret = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(der.try_get_as_bytes().unwrap()),
            &claims("a@x"),
        );
        assert!(v.verify_at(&der_secret, NOW).is_err());
        // And with an HS256 key also configured: the token must not verify against the RSA key.
        let v2 = verifier(vec![rs_key(), hs_key()]);
        assert_eq!(v2.verify_at(&pem_secret, NOW), Err(JwtError::BadSignature));
    }

    #[test]
    fn algorithm_confusion_eddsa_public_key_as_hmac_secret_rejected() {
        let v = verifier(vec![ed_key()]);
        let t = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(ED_PUB.as_bytes()),
            &claims("a@x"),
        );
        assert!(v.verify_at(&t, NOW).is_err());
    }

    #[test]
    fn header_alg_relabelled_rejected() {
        // An RS256 signature relabelled as EdDSA (or vice versa) never checks out.
        let v = verifier(vec![rs_key(), ed_key()]);
        let t = rs(&claims("a@x"));
        let parts: Vec<&str> = t.split('.').collect();
        let relabelled = format!(
            "{}.{}.{}",
            b64url(
                serde_json::json!({ "alg": "EdDSA", "typ": "JWT" })
                    .to_string()
                    .as_bytes()
            ),
            parts[1],
            parts[2]
        );
        assert!(v.verify_at(&relabelled, NOW).is_err());
    }

    #[test]
    fn expired_rejected_rfc7519_4_1_4() {
        let v = verifier(vec![hs_key()]);
        let c = serde_json::json!({ "sub": "a@x", "exp": NOW - 100 });
        assert_eq!(v.verify_at(&hs(&c), NOW), Err(JwtError::Expired));
    }

    #[test]
    fn exp_boundary_and_leeway() {
        let v = verifier(vec![hs_key()]);
        let t = hs(&serde_json::json!({ "sub": "a@x", "exp": NOW }));
        // Within the 30 s leeway, then expired exactly at exp + leeway.
        assert!(v.verify_at(&t, NOW + DEFAULT_LEEWAY_SECS - 1).is_ok());
        assert_eq!(
            v.verify_at(&t, NOW + DEFAULT_LEEWAY_SECS),
            Err(JwtError::Expired)
        );
        let strict = JwtVerifier::new(JwtConfig {
            keys: vec![hs_key()],
            leeway_secs: 0,
            ..JwtConfig::default()
        })
        .unwrap();
        assert!(strict.verify_at(&t, NOW - 1).is_ok());
        assert_eq!(strict.verify_at(&t, NOW), Err(JwtError::Expired));
    }

    #[test]
    fn missing_exp_rejected() {
        let v = verifier(vec![hs_key()]);
        let c = serde_json::json!({ "sub": "a@x" });
        assert_eq!(
            v.verify_at(&hs(&c), NOW),
            Err(JwtError::MissingClaim("exp"))
        );
    }

    #[test]
    fn non_numeric_exp_rejected() {
        let v = verifier(vec![hs_key()]);
        for exp in [
            serde_json::json!("9999999999"),
            serde_json::json!(-5),
            serde_json::json!(true),
        ] {
            let c = serde_json::json!({ "sub": "a@x", "exp": exp });
            assert!(v.verify_at(&hs(&c), NOW).is_err(), "exp={exp}");
        }
    }

    #[test]
    fn fractional_exp_accepted_and_rounded_down() {
        let v = JwtVerifier::new(JwtConfig {
            keys: vec![hs_key()],
            leeway_secs: 0,
            ..JwtConfig::default()
        })
        .unwrap();
        let t = hs(&serde_json::json!({ "sub": "a@x", "exp": (NOW as f64) + 10.9 }));
        assert_eq!(v.verify_at(&t, NOW).unwrap().exp, NOW + 10);
        assert_eq!(v.verify_at(&t, NOW + 10), Err(JwtError::Expired));
    }

    #[test]
    fn nbf_in_future_rejected_rfc7519_4_1_5() {
        let v = verifier(vec![hs_key()]);
        let c = serde_json::json!({ "sub": "a@x", "exp": NOW + 3600, "nbf": NOW + 600 });
        assert_eq!(v.verify_at(&hs(&c), NOW), Err(JwtError::NotYetValid));
        // Once the time (less leeway) has come, the same token is fine.
        assert!(v
            .verify_at(&hs(&c), NOW + 600 - DEFAULT_LEEWAY_SECS)
            .is_ok());
        assert_eq!(
            v.verify_at(&hs(&c), NOW + 600 - DEFAULT_LEEWAY_SECS - 1),
            Err(JwtError::NotYetValid)
        );
    }

    #[test]
    fn wrong_audience_rejected_rfc7519_4_1_3() {
        let v = verifier_with(vec![hs_key()], None, Some("xcapd"));
        let mut c = claims("a@x");
        c["aud"] = serde_json::json!("other-service");
        assert_eq!(v.verify_at(&hs(&c), NOW), Err(JwtError::WrongAudience));
        c["aud"] = serde_json::json!(["other", "another"]);
        assert_eq!(v.verify_at(&hs(&c), NOW), Err(JwtError::WrongAudience));
        c["aud"] = serde_json::json!(["other", "xcapd"]);
        assert!(v.verify_at(&hs(&c), NOW).is_ok());
        c["aud"] = serde_json::json!("xcapd");
        assert!(v.verify_at(&hs(&c), NOW).is_ok());
    }

    #[test]
    fn missing_audience_rejected_when_configured() {
        let v = verifier_with(vec![hs_key()], None, Some("xcapd"));
        assert_eq!(
            v.verify_at(&hs(&claims("a@x")), NOW),
            Err(JwtError::MissingClaim("aud"))
        );
    }

    #[test]
    fn audience_present_but_none_configured_rejected() {
        let v = verifier(vec![hs_key()]);
        let mut c = claims("a@x");
        c["aud"] = serde_json::json!("anything");
        assert_eq!(v.verify_at(&hs(&c), NOW), Err(JwtError::WrongAudience));
    }

    #[test]
    fn wrong_issuer_rejected_rfc7519_4_1_1() {
        let v = verifier_with(vec![hs_key()], Some("https://idp.example.com"), None);
        let mut c = claims("a@x");
        c["iss"] = serde_json::json!("https://evil.example.com");
        assert_eq!(v.verify_at(&hs(&c), NOW), Err(JwtError::WrongIssuer));
        c.as_object_mut().unwrap().remove("iss");
        assert_eq!(
            v.verify_at(&hs(&c), NOW),
            Err(JwtError::MissingClaim("iss"))
        );
        c["iss"] = serde_json::json!("https://idp.example.com");
        assert!(v.verify_at(&hs(&c), NOW).is_ok());
    }

    #[test]
    fn missing_or_bad_sub_rejected() {
        let v = verifier(vec![hs_key()]);
        let c = serde_json::json!({ "exp": NOW + 600 });
        assert_eq!(
            v.verify_at(&hs(&c), NOW),
            Err(JwtError::MissingClaim("sub"))
        );
        for sub in [
            serde_json::json!(""),
            serde_json::json!("   "),
            serde_json::json!(42),
            serde_json::json!(["a"]),
        ] {
            let c = serde_json::json!({ "sub": sub, "exp": NOW + 600 });
            assert!(v.verify_at(&hs(&c), NOW).is_err(), "sub={sub}");
        }
    }

    #[test]
    fn malformed_roles_rejected() {
        let v = verifier(vec![hs_key()]);
        for roles in [
            serde_json::json!("admin"),
            serde_json::json!([1, 2]),
            serde_json::json!({ "a": 1 }),
        ] {
            let mut c = claims("a@x");
            c["roles"] = roles.clone();
            assert_eq!(
                v.verify_at(&hs(&c), NOW),
                Err(JwtError::InvalidClaim("roles")),
                "roles={roles}"
            );
        }
    }

    #[test]
    fn crit_header_rejected_rfc7515_4_1_11() {
        let v = verifier(vec![hs_key()]);
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp".to_owned()]);
        let t = jsonwebtoken::encode(&header, &claims("a@x"), &EncodingKey::from_secret(SECRET))
            .unwrap();
        assert_eq!(v.verify_at(&t, NOW), Err(JwtError::CriticalHeader));
    }

    #[test]
    fn oversized_and_empty_tokens_rejected() {
        let v = verifier(vec![hs_key()]);
        assert_eq!(v.verify_at("", NOW), Err(JwtError::Malformed));
        let mut c = claims("a@x");
        c["pad"] = serde_json::json!("x".repeat(MAX_TOKEN_LEN));
        assert_eq!(v.verify_at(&hs(&c), NOW), Err(JwtError::Malformed));
    }

    #[test]
    fn garbage_tokens_rejected() {
        let v = verifier(vec![hs_key(), rs_key(), ed_key()]);
        for t in [
            "a",
            "a.b",
            "a.b.c",
            "a.b.c.d",
            "...",
            "..",
            "eyJhbGciOiJIUzI1NiJ9..",
            "eyJhbGciOiJFZERTQSJ9.e30.AAAA",
            "eyJhbGciOiJSUzI1NiJ9.e30.",
            "\u{0}\u{1}.\u{ffff}.é",
        ] {
            assert!(v.verify_at(t, NOW).is_err(), "{t:?} accepted");
        }
        // A signed token whose payload is not a JSON object.
        let header = b64url(br#"{"alg":"HS256"}"#);
        let payload = b64url(b"[1,2,3]");
        let t = format!("{header}.{payload}.AAAA");
        assert!(v.verify_at(&t, NOW).is_err());
    }

    // --- key configuration ---

    #[test]
    fn weak_or_bad_keys_refused_at_startup() {
        let bad = [
            JwtKey::Hs256 {
                secret: b"short".to_vec(),
            },
            JwtKey::Hs256 { secret: Vec::new() },
            JwtKey::Rs256 {
                public_pem: RSA1024_PUB.as_bytes().to_vec(),
            },
            JwtKey::Rs256 {
                public_pem: ED_PUB.as_bytes().to_vec(),
            },
            JwtKey::Rs256 {
                public_pem: b"not a pem".to_vec(),
            },
            JwtKey::EdDsa {
                public_pem: RSA_PUB.as_bytes().to_vec(),
            },
            JwtKey::EdDsa {
                public_pem: ED_PRIV.as_bytes().to_vec(),
            },
        ];
        for key in bad {
            let desc = format!("{key:?}");
            let r = JwtVerifier::new(JwtConfig {
                keys: vec![key],
                ..JwtConfig::default()
            });
            assert!(matches!(r, Err(JwtError::InvalidKey(_))), "{desc} accepted");
        }
        assert!(matches!(
            JwtVerifier::new(JwtConfig::default()),
            Err(JwtError::NoKeys)
        ));
    }

    #[test]
    fn truncated_ed25519_key_refused_not_panicking() {
        // SPKI with the Ed25519 OID but a 16-byte key: jsonwebtoken would slice [..32] and panic.
        let mut der = vec![
            0x30, 0x1a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x11, 0x00,
        ];
        der.extend_from_slice(&[7u8; 16]);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            std_b64(&der)
        );
        let r = JwtVerifier::new(JwtConfig {
            keys: vec![JwtKey::EdDsa {
                public_pem: pem.into_bytes(),
            }],
            ..JwtConfig::default()
        });
        assert!(matches!(r, Err(JwtError::InvalidKey(_))), "{r:?}");
    }

    fn std_b64(data: &[u8]) -> String {
        let mut s = b64url(data).replace('-', "+").replace('_', "/");
        let pad = (4 - s.len() % 4) % 4;
        s.push_str(&"=".repeat(pad));
        s
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let cfg = JwtConfig {
            keys: vec![hs_key()],
            ..JwtConfig::default()
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        let issuer = JwtSigningKey::Hs256 {
            secret: SECRET.to_vec(),
        };
        assert!(!format!("{issuer:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn verifier_and_issuer_are_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<JwtVerifier>();
        assert_send_sync::<JwtIssuer>();
    }

    // --- issuer (admin API) ---

    #[test]
    fn issued_hs256_token_round_trips() {
        let issuer = JwtIssuer::new(
            JwtSigningKey::Hs256 {
                secret: SECRET.to_vec(),
            },
            Some("xcapd".to_owned()),
            Some("xcap".to_owned()),
        )
        .unwrap();
        let roles = vec!["admin".to_owned()];
        let t = issuer
            .issue("sip:alice@example.com", &roles, 300, NOW)
            .unwrap();
        let v = verifier_with(vec![hs_key()], Some("xcapd"), Some("xcap"));
        let got = v.verify_at(&t, NOW + 10).unwrap();
        assert_eq!(
            got,
            JwtClaims {
                sub: "sip:alice@example.com".to_owned(),
                roles,
                exp: NOW + 300,
                iat: Some(NOW),
            }
        );
        assert_eq!(
            v.verify_at(&t, NOW + 300 + DEFAULT_LEEWAY_SECS),
            Err(JwtError::Expired)
        );
        // A verifier expecting another audience refuses it.
        let other = verifier_with(vec![hs_key()], Some("xcapd"), Some("elsewhere"));
        assert_eq!(other.verify_at(&t, NOW), Err(JwtError::WrongAudience));
    }

    #[test]
    fn issued_eddsa_token_round_trips_and_header_is_eddsa() {
        let issuer = JwtIssuer::new(
            JwtSigningKey::EdDsa {
                private_pem: ED_PRIV.as_bytes().to_vec(),
            },
            None,
            None,
        )
        .unwrap();
        let t = issuer.issue("bob@example.com", &[], 60, NOW).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&t).unwrap().alg,
            Algorithm::EdDSA
        );
        let got = verifier(vec![ed_key()]).verify_at(&t, NOW).unwrap();
        assert_eq!(got.sub, "bob@example.com");
        assert!(got.roles.is_empty());
        // Not accepted by a verifier holding only the RSA key.
        assert!(verifier(vec![rs_key()]).verify_at(&t, NOW).is_err());
    }

    #[test]
    fn issuer_refuses_bad_keys_and_claims() {
        assert!(JwtIssuer::new(
            JwtSigningKey::Hs256 {
                secret: b"short".to_vec()
            },
            None,
            None
        )
        .is_err());
        assert!(JwtIssuer::new(
            JwtSigningKey::EdDsa {
                private_pem: ED_PUB.as_bytes().to_vec()
            },
            None,
            None
        )
        .is_err());
        assert!(JwtIssuer::new(
            JwtSigningKey::EdDsa {
                private_pem: RSA_PRIV.as_bytes().to_vec()
            },
            None,
            None
        )
        .is_err());
        let issuer = JwtIssuer::new(
            JwtSigningKey::Hs256 {
                secret: SECRET.to_vec(),
            },
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            issuer.issue("", &[], 60, NOW),
            Err(JwtError::InvalidClaim("sub"))
        );
        assert_eq!(
            issuer.issue("a@x", &[], 0, NOW),
            Err(JwtError::InvalidClaim("exp"))
        );
    }

    // --- Authorization header ---

    #[test]
    fn bearer_token_extraction_rfc6750_2_1() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("bearer   abc.def.ghi "), Some("abc.def.ghi"));
        assert_eq!(bearer_token("BEARER\tabc"), Some("abc"));
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer a b"), None);
        assert_eq!(bearer_token("Basic YWxhZGRpbjpvcGVuc2VzYW1l"), None);
        assert_eq!(bearer_token("Digest username=\"a\""), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn modulus_bits_counts_significant_bits() {
        assert_eq!(modulus_bits(&[]), 0);
        assert_eq!(modulus_bits(&[0, 0]), 0);
        assert_eq!(modulus_bits(&[1]), 1);
        assert_eq!(modulus_bits(&[0, 0x80, 0]), 16);
        assert_eq!(modulus_bits(&[0x7f, 0xff]), 15);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary strings never panic the verifier and never verify.
        #[test]
        fn garbage_never_panics(s in ".{0,300}") {
            let v = verifier(vec![hs_key(), rs_key(), ed_key()]);
            prop_assert!(v.verify_at(&s, NOW).is_err());
        }

        /// Three base64url-looking segments (the shape a real token has) never panic or verify.
        #[test]
        fn jws_shaped_garbage_never_panics(
            h in "[A-Za-z0-9_-]{0,80}",
            p in "[A-Za-z0-9_-]{0,80}",
            s in "[A-Za-z0-9_-]{0,120}",
        ) {
            let v = verifier(vec![hs_key(), rs_key(), ed_key()]);
            let t = format!("{h}.{p}.{s}");
            prop_assert!(v.verify_at(&t, NOW).is_err());
        }

        /// Arbitrary JSON headers/claims with a junk signature never panic or verify, whatever
        /// `alg` they name.
        #[test]
        fn crafted_headers_never_verify(
            alg in prop::sample::select(vec!["HS256", "RS256", "EdDSA", "none", "ES256", "PS256", "", "HS256 "]),
            sub in ".{0,20}",
            exp in any::<u64>(),
            sig in "[A-Za-z0-9_-]{0,100}",
        ) {
            let v = verifier(vec![hs_key(), rs_key(), ed_key()]);
            let t = raw_token(&serde_json::json!({ "alg": alg }), &serde_json::json!({ "sub": sub, "exp": exp }), &sig);
            prop_assert!(v.verify_at(&t, NOW).is_err());
        }

        /// Any one-character change anywhere in a valid token makes it fail.
        #[test]
        fn any_single_byte_change_invalidates(pos in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_.-]") {
            let v = verifier(vec![hs_key()]);
            let t = hs(&claims("sip:alice@example.com"));
            let i = pos.index(t.len());
            let mut bytes = t.clone().into_bytes();
            bytes[i] = replacement.as_bytes()[0];
            let changed = String::from_utf8(bytes).unwrap();
            prop_assume!(changed != t);
            // Even the spare low bits of the last signature character count: jsonwebtoken
            // decodes base64url strictly (non-canonical trailing bits are an error).
            prop_assert!(v.verify_at(&changed, NOW).is_err());
        }
    }
}
