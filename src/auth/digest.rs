//! HTTP Digest access authentication, server side (RFC 7616; HT-02, HT-03, AP-02).
//!
//! Pure core (layer L0): no I/O, the current time comes in as unix seconds and randomness from a
//! caller-provided closure. It issues `WWW-Authenticate` challenges (RFC 7616 §3.3), parses
//! `Authorization: Digest` credentials (§3.4) and verifies them against stored HA1 values only
//! (H(username ":" realm ":" password), §3.4.2), so passwords are never stored.
//!
//! Supported: `algorithm=MD5` and `algorithm=SHA-256` (not the `-sess` variants, not SHA-512-256),
//! `qop=auth` only (§3.4.1; the RFC 2069 mode without qop is refused), `username*` in UTF-8
//! (§3.4.4). `userhash=true` (§3.4.4) and `qop=auth-int` are refused.
//!
//! Nonces are stateless to verify: `base64url(timestamp ‖ random ‖ HMAC-SHA256(secret, timestamp ‖
//! random ‖ realm))`, so a forged, tampered or foreign-realm nonce is detected without storing
//! anything, and an expired one is reported as stale (§3.3 `stale`). A nonce may be reused for many
//! requests (one 401 per client, not per request); replay protection keeps, per nonce already used
//! successfully, the highest `nc` seen (§3.4: the server "MUST" check for repeated `nc` values), in a
//! bounded table. See [`DigestAuthenticator`] for what happens when that table is full.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::Md5;
use parking_lot::Mutex;
use sha2::Sha256;

use crate::xcap::pct::hex_value;

type HmacSha256 = Hmac<Sha256>;

mod params;
pub use params::parse_authorization;
use params::{parse_nc, quote, uri_matches};

/// Longest `Authorization` value we parse; longer ones are malformed (bounds parsing work).
const MAX_HEADER_LEN: usize = 8 * 1024;
/// Bytes of randomness in a nonce.
const NONCE_RANDOM_LEN: usize = 16;
/// timestamp (8) ‖ random (16) ‖ HMAC-SHA256 (32).
const NONCE_RAW_LEN: usize = 8 + NONCE_RANDOM_LEN + 32;
/// Bytes of the HMAC kept in `opaque`.
const OPAQUE_LEN: usize = 16;
/// Domain separation between the two HMAC uses of the one secret.
const NONCE_LABEL: &[u8] = b"xcapd digest nonce\0";
const OPAQUE_LABEL: &[u8] = b"xcapd digest opaque\0";

/// Digest hash algorithm (RFC 7616 §3.3 `algorithm`, §6.1 registry). Only the non-session forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`: the default when a client omits `algorithm` (§3.3); kept for RFC 2617 clients.
    Md5,
    /// `SHA-256` (§3.3).
    Sha256,
}

impl Algorithm {
    /// The token used in `algorithm=` (§6.1).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an `algorithm` token, case-insensitively (§3.3). `-sess` and other variants: `None`.
    pub fn from_token(token: &str) -> Option<Self> {
        if token.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Length of this algorithm's lowercase hex digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }

    /// Lowercase hex of H(part0 ":" part1 ":" …), the shape of every Digest hash input (§3.4.1).
    fn hash_joined(self, parts: &[&str]) -> String {
        fn feed<D: sha2::Digest>(parts: &[&str]) -> String {
            let mut d = D::new();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(part.as_bytes());
            }
            to_hex(&d.finalize())
        }
        match self {
            Algorithm::Md5 => feed::<Md5>(parts),
            Algorithm::Sha256 => feed::<Sha256>(parts),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a Digest `Authorization` was refused. Every variant means 401 (HT-03); callers should not
/// let the body or timing tell [`DigestError::UnknownUser`] from [`DigestError::BadResponse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not a parsable Digest credential, a required parameter is missing or duplicated, or
    /// `userhash=true` (unsupported).
    #[error("malformed Digest credentials")]
    Malformed,
    /// `algorithm` is not MD5 or SHA-256, or not enabled in the configuration.
    #[error("unsupported Digest algorithm")]
    UnknownAlgorithm,
    /// The `uri` parameter does not designate the request-target (§3.4.6).
    #[error("Digest uri does not match the request-target")]
    UriMismatch,
    /// The nonce was not issued by us for this realm (forged, tampered or truncated).
    #[error("nonce not issued by this server")]
    BadNonce,
    /// `opaque` missing or not the one issued with the nonce (§3.3: returned unchanged).
    #[error("opaque does not match the nonce")]
    OpaqueMismatch,
    /// The nonce is genuine and the response correct, but the nonce expired or was forgotten:
    /// challenge again with `stale=true` (§3.3) so the client retries without asking the user.
    #[error("nonce is stale")]
    Stale,
    /// Correct response, but `nc` is not greater than the highest already accepted for this nonce.
    #[error("nonce count replayed")]
    Replay,
    /// No HA1 is stored for this username, realm and algorithm.
    #[error("unknown user")]
    UnknownUser,
    /// The `response` does not match: wrong password (or wrong method/uri in the hash).
    #[error("wrong Digest response")]
    BadResponse,
    /// `qop` missing (RFC 2069 mode) or other than `auth`.
    #[error("qop=auth is required")]
    QopRequired,
}

impl DigestError {
    /// Whether the 401 should carry `stale=true`: the client proved knowledge of the password but
    /// its nonce (or nonce count) is no longer usable (§3.3: only when the response was valid).
    pub fn is_stale(self) -> bool {
        matches!(self, DigestError::Stale | DigestError::Replay)
    }
}

/// Verifier settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestConfig {
    /// How long a nonce stays usable after it is issued.
    pub nonce_lifetime_secs: u64,
    /// Enabled algorithms; also the order of the challenges (most preferred first, §3.7).
    pub algorithms: Vec<Algorithm>,
    /// Most nonces whose highest `nc` is remembered at once (at least 1).
    pub max_tracked_nonces: usize,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            nonce_lifetime_secs: 300,
            // MD5 first: clients that read only the first challenge (Python's urllib, many
            // SIP/XCAP UAs) know MD5 but not SHA-256; clients that know both pick SHA-256.
            algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
            max_tracked_nonces: 65_536,
        }
    }
}

/// Who authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestIdentity {
    /// The `username` (or decoded `username*`) as sent.
    pub username: String,
    /// The realm the client answered for; callers check it is the realm they challenged with.
    pub realm: String,
    /// The algorithm used.
    pub algorithm: Algorithm,
}

/// The parameters of an `Authorization: Digest` header (RFC 7616 §3.4), unquoted, semantics
/// unchecked. Parameter names are case-insensitive; unknown parameters are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestParams {
    /// `username`, or the decoded `username*` (§3.4.4).
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The `uri` parameter: the request-target as the client hashed it (§3.4.6).
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
    pub qop: Option<String>,
    pub nc: Option<String>,
}

/// Credentials that passed [`DigestAuthenticator::precheck`], waiting for their HA1.
#[derive(Debug)]
pub struct Prechecked {
    params: DigestParams,
    alg: Algorithm,
    nc: u32,
    key: NonceKey,
}

impl Prechecked {
    /// What to look the HA1 up by: username as sent, realm, algorithm.
    pub fn lookup(&self) -> (&str, &str, Algorithm) {
        (&self.params.username, &self.params.realm, self.alg)
    }
}

/// H(A1) for the non-session algorithms, lowercase hex: H(username ":" realm ":" password)
/// (§3.4.2). This is what the credential store keeps instead of the password.
pub fn ha1(username: &str, realm: &str, password: &str, alg: Algorithm) -> String {
    alg.hash_joined(&[username, realm, password])
}

/// The `response` value for `qop=auth` (§3.4.1): KD(H(A1), nonce ":" nc ":" cnonce ":" qop ":"
/// H(A2)) with A2 = method ":" uri. `ha1_hex` is used as given (lowercase hex expected).
#[allow(clippy::too_many_arguments)] // the RFC formula's inputs, in the RFC's order
pub fn compute_response(
    alg: Algorithm,
    ha1_hex: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = alg.hash_joined(&[method, uri]);
    alg.hash_joined(&[ha1_hex, nonce, nc, cnonce, qop, &ha2])
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// Equality whose running time does not depend on where the inputs differ (lengths are public).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Identity of an issued nonce: issue time first, so map order is issue order.
type NonceKey = (u64, [u8; NONCE_RANDOM_LEN]);

/// Highest accepted `nc` per nonce, plus the largest key ever dropped from the table.
#[derive(Debug, Default)]
struct NonceTable {
    highest_nc: BTreeMap<NonceKey, u32>,
    /// Nonces at or below this key are no longer tracked and are refused as stale.
    forgotten_upto: Option<NonceKey>,
}

impl NonceTable {
    fn forget(&mut self, key: NonceKey) {
        match self.forgotten_upto {
            Some(w) if w >= key => {}
            _ => self.forgotten_upto = Some(key),
        }
    }
}

fn expired(issued: u64, now: u64, lifetime: u64) -> bool {
    now.saturating_sub(issued) >= lifetime
}

/// Random source: fills the buffer with unpredictable bytes (e.g. from `getrandom`).
type RandomFill = Box<dyn Fn(&mut [u8]) + Send + Sync>;

/// Issues Digest challenges and verifies credentials. `Send + Sync`; share it behind an `Arc`.
///
/// Replay tracking: a nonce enters the table on its first successful use (never when issued, so
/// unauthenticated clients cannot fill the table), accepted with any `nc ≥ 1`; later uses need
/// a strictly greater `nc`. Expired entries are pruned, and when the table exceeds
/// `max_tracked_nonces` the oldest-issued entry is evicted. Every dropped entry raises a
/// watermark: an untracked nonce issued at or before it is answered [`DigestError::Stale`], so a
/// forgotten nonce can never be replayed; the client just retries silently with a fresh nonce.
/// Size the table above the number of distinct nonces used within one lifetime.
pub struct DigestAuthenticator {
    secret: [u8; 32],
    cfg: DigestConfig,
    random: RandomFill,
    /// Mixed into each nonce's random part so nonces stay unique even if `random` is weak.
    counter: AtomicU64,
    nonces: Mutex<NonceTable>,
}

impl fmt::Debug for DigestAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestAuthenticator")
            .field("secret", &"<redacted>")
            .field("cfg", &self.cfg)
            .field("tracked_nonces", &self.nonces.lock().highest_nc.len())
            .finish()
    }
}

impl DigestAuthenticator {
    /// `secret` keys the nonce MAC; keep it stable across restarts only together with
    /// [`DigestAuthenticator::forget_nonces_before`] (the replay table is in memory). `random`
    /// supplies nonce randomness.
    pub fn new(
        secret: [u8; 32],
        cfg: DigestConfig,
        random: impl Fn(&mut [u8]) + Send + Sync + 'static,
    ) -> Self {
        DigestAuthenticator {
            secret,
            cfg,
            random: Box::new(random),
            counter: AtomicU64::new(0),
            nonces: Mutex::new(NonceTable::default()),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &DigestConfig {
        &self.cfg
    }

    /// Refuses (as stale) every nonce issued before `ts` that is not being tracked. Call it at
    /// start-up with the current time when the secret survives restarts, because the replay
    /// table does not.
    pub fn forget_nonces_before(&self, ts: u64) {
        self.nonces.lock().forget((ts, [0; NONCE_RANDOM_LEN]));
    }

    /// `WWW-Authenticate` values, one per enabled algorithm in preference order (§3.3, §3.7), all
    /// sharing one fresh nonce and opaque for `realm`; `stale=true` when the previous nonce was
    /// stale (see [`DigestError::is_stale`]).
    pub fn challenges(&self, realm: &str, stale: bool, now: u64) -> Vec<String> {
        let nonce = self.issue_nonce(realm, now);
        let opaque = self.opaque_for(&nonce);
        let realm = quote(realm);
        let stale = if stale { ", stale=true" } else { "" };
        self.cfg
            .algorithms
            .iter()
            .map(|alg| {
                format!(
                    "Digest realm={realm}, qop=\"auth\", algorithm={alg}, nonce=\"{nonce}\", \
                     opaque=\"{opaque}\"{stale}"
                )
            })
            .collect()
    }

    /// Verifies `Authorization: Digest …` for `method` and the raw request-target `uri`.
    /// `ha1` returns the stored lowercase-hex HA1 for (username, realm, algorithm), or `None`.
    ///
    /// The replay table is only touched after the response proved knowledge of the password,
    /// so failed attempts cannot disturb legitimate clients' nonce counts.
    pub fn verify(
        &self,
        method: &str,
        uri: &str,
        header: &str,
        now: u64,
        ha1: impl Fn(&str, &str, Algorithm) -> Option<String>,
    ) -> Result<DigestIdentity, DigestError> {
        self.verify_params(method, uri, parse_authorization(header)?, now, ha1)
    }

    /// [`DigestAuthenticator::verify`] for credentials already parsed with
    /// [`parse_authorization`] (callers that look at the user name first parse once).
    pub fn verify_params(
        &self,
        method: &str,
        uri: &str,
        p: DigestParams,
        now: u64,
        ha1: impl Fn(&str, &str, Algorithm) -> Option<String>,
    ) -> Result<DigestIdentity, DigestError> {
        let checked = self.precheck(uri, p)?;
        let (user, realm, alg) = checked.lookup();
        let stored = ha1(user, realm, alg);
        self.complete(checked, method, stored.as_deref(), now)
    }

    /// The first half of verification, everything that needs no stored credential: algorithm,
    /// `qop`, `nc`, `cnonce`, the `uri` against the request-target, the nonce's authenticity
    /// and `opaque`. A forged or foreign request ends here without a credential lookup; a
    /// caller whose lookup is I/O does it between this and [`DigestAuthenticator::complete`].
    pub fn precheck(&self, uri: &str, p: DigestParams) -> Result<Prechecked, DigestError> {
        let alg = match p.algorithm.as_deref() {
            None => Algorithm::Md5, // §3.3: absent means MD5
            Some(token) => Algorithm::from_token(token).ok_or(DigestError::UnknownAlgorithm)?,
        };
        if !self.cfg.algorithms.contains(&alg) {
            return Err(DigestError::UnknownAlgorithm);
        }
        let qop = p.qop.as_deref().ok_or(DigestError::QopRequired)?;
        if !qop.eq_ignore_ascii_case("auth") {
            return Err(DigestError::QopRequired);
        }
        let nc_text = p.nc.as_deref().ok_or(DigestError::Malformed)?;
        let nc = parse_nc(nc_text).ok_or(DigestError::Malformed)?;
        if p.cnonce.as_deref().unwrap_or("").is_empty() {
            return Err(DigestError::Malformed);
        }
        if !uri_matches(uri, &p.uri) {
            return Err(DigestError::UriMismatch);
        }
        let key = self.open_nonce(&p.nonce, &p.realm)?;
        let opaque_ok = p
            .opaque
            .as_deref()
            .is_some_and(|o| ct_eq(o.as_bytes(), self.opaque_for(&p.nonce).as_bytes()));
        if !opaque_ok {
            return Err(DigestError::OpaqueMismatch);
        }
        Ok(Prechecked {
            params: p,
            alg,
            nc,
            key,
        })
    }

    /// The second half: the `response` against the stored HA1 (`None`: no such user), then
    /// nonce expiry and the replay table.
    pub fn complete(
        &self,
        checked: Prechecked,
        method: &str,
        stored_ha1: Option<&str>,
        now: u64,
    ) -> Result<DigestIdentity, DigestError> {
        let Prechecked {
            params: p,
            alg,
            nc,
            key,
        } = checked;
        let stored = stored_ha1
            .ok_or(DigestError::UnknownUser)?
            .to_ascii_lowercase();
        // The client hashed the values exactly as it sent them (nc, qop case included).
        let (nc_text, cnonce, qop) = (
            p.nc.as_deref().unwrap_or(""),
            p.cnonce.as_deref().unwrap_or(""),
            p.qop.as_deref().unwrap_or(""),
        );
        let expected =
            compute_response(alg, &stored, &p.nonce, nc_text, cnonce, qop, method, &p.uri);
        if !ct_eq(
            expected.as_bytes(),
            p.response.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(DigestError::BadResponse);
        }
        if expired(key.0, now, self.cfg.nonce_lifetime_secs) {
            return Err(DigestError::Stale);
        }
        self.track(key, nc, now)?;
        Ok(DigestIdentity {
            username: p.username,
            realm: p.realm,
            algorithm: alg,
        })
    }

    /// Records `nc` for a genuine, unexpired nonce; see the type docs for the policy.
    fn track(&self, key: NonceKey, nc: u32, now: u64) -> Result<(), DigestError> {
        let mut table = self.nonces.lock();
        // Prune with the same expiry rule as `verify`, so a pruned nonce is refused even if
        // another thread passes a slightly earlier `now` (the watermark covers it).
        while let Some((&oldest, _)) = table.highest_nc.first_key_value() {
            if !expired(oldest.0, now, self.cfg.nonce_lifetime_secs) {
                break;
            }
            table.highest_nc.remove(&oldest);
            table.forget(oldest);
        }
        if let Some(highest) = table.highest_nc.get_mut(&key) {
            if nc <= *highest {
                return Err(DigestError::Replay);
            }
            *highest = nc;
            return Ok(());
        }
        if table.forgotten_upto.is_some_and(|w| key <= w) {
            return Err(DigestError::Stale);
        }
        if nc == 0 {
            return Err(DigestError::Replay);
        }
        table.highest_nc.insert(key, nc);
        while table.highest_nc.len() > self.cfg.max_tracked_nonces.max(1) {
            match table.highest_nc.pop_first() {
                Some((evicted, _)) => table.forget(evicted),
                None => break,
            }
        }
        Ok(())
    }

    fn nonce_mac(&self, ts: u64, random: &[u8], realm: &str) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail; fall back to the default
        // key rather than panicking should that ever change.
        let mut mac = HmacSha256::new_from_slice(&self.secret)
            .unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        mac.update(NONCE_LABEL);
        mac.update(&ts.to_be_bytes());
        mac.update(random);
        mac.update(realm.as_bytes());
        mac
    }

    fn issue_nonce(&self, realm: &str, now: u64) -> String {
        let mut random = [0u8; NONCE_RANDOM_LEN];
        (self.random)(&mut random);
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        for (r, c) in random.iter_mut().zip(count.to_be_bytes()) {
            *r ^= c;
        }
        let tag = self.nonce_mac(now, &random, realm).finalize().into_bytes();
        let mut raw = Vec::with_capacity(NONCE_RAW_LEN);
        raw.extend_from_slice(&now.to_be_bytes());
        raw.extend_from_slice(&random);
        raw.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a nonce's MAC for `realm` and returns its key (issue time, random part).
    fn open_nonce(&self, nonce: &str, realm: &str) -> Result<NonceKey, DigestError> {
        let raw = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| DigestError::BadNonce)?;
        if raw.len() != NONCE_RAW_LEN {
            return Err(DigestError::BadNonce);
        }
        let (ts_bytes, rest) = raw.split_at(8);
        let (random, tag) = rest.split_at(NONCE_RANDOM_LEN);
        let ts = u64::from_be_bytes(ts_bytes.try_into().map_err(|_| DigestError::BadNonce)?);
        self.nonce_mac(ts, random, realm)
            .verify_slice(tag)
            .map_err(|_| DigestError::BadNonce)?;
        let random: [u8; NONCE_RANDOM_LEN] =
            random.try_into().map_err(|_| DigestError::BadNonce)?;
        Ok((ts, random))
    }

    /// The `opaque` issued with `nonce`: a MAC of it, so it needs no storage either.
    fn opaque_for(&self, nonce: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.secret)
            .unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        mac.update(OPAQUE_LABEL);
        mac.update(nonce.as_bytes());
        let tag = mac.finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(&tag[..OPAQUE_LEN])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use params::parse_auth_params;
    use proptest::prelude::*;
    use sha2::Digest as _;
    use std::sync::atomic::AtomicU8;

    const REALM: &str = "example.com";
    const USER: &str = "alice@example.com";
    const PASS: &str = "s3cret pass";
    const T0: u64 = 1_700_000_000;

    // Independent hashing for the test client, so tests do not just check
    // `compute_response` against itself.
    fn h(alg: Algorithm, s: &str) -> String {
        match alg {
            Algorithm::Md5 => to_hex(&Md5::digest(s.as_bytes())),
            Algorithm::Sha256 => to_hex(&Sha256::digest(s.as_bytes())),
        }
    }

    fn authenticator(cfg: DigestConfig) -> DigestAuthenticator {
        let seed = AtomicU8::new(1);
        DigestAuthenticator::new([7u8; 32], cfg, move |buf: &mut [u8]| {
            for b in buf.iter_mut() {
                *b = seed.fetch_add(37, Ordering::Relaxed);
            }
        })
    }

    fn store(user: &str, realm: &str, alg: Algorithm) -> Option<String> {
        (user == USER && realm == REALM).then(|| ha1(USER, REALM, PASS, alg))
    }

    /// The challenge's parameters, read with the module's own list parser.
    fn challenge_params(challenge: &str) -> BTreeMap<String, String> {
        let rest = challenge.strip_prefix("Digest ").expect("Digest scheme");
        parse_auth_params(rest)
            .expect("challenge parses")
            .into_iter()
            .collect()
    }

    /// What a client such as Python requests sends (quoted algorithm and qop, like requests).
    #[allow(clippy::too_many_arguments)]
    fn client_header(
        challenge: &str,
        user: &str,
        pass: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let c = challenge_params(challenge);
        let alg = Algorithm::from_token(&c["algorithm"]).expect("known algorithm");
        let (realm, nonce) = (&c["realm"], &c["nonce"]);
        let nc = format!("{nc:08x}");
        let ha1 = h(alg, &format!("{user}:{realm}:{pass}"));
        let ha2 = h(alg, &format!("{method}:{uri}"));
        let resp = h(alg, &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", opaque=\"{}\", algorithm=\"{alg}\", qop=\"auth\", nc={nc}, \
             cnonce=\"{cnonce}\"",
            c["opaque"]
        )
    }

    fn md5_challenge(a: &DigestAuthenticator, now: u64) -> String {
        a.challenges(REALM, false, now)
            .into_iter()
            .find(|c| c.contains("algorithm=MD5"))
            .expect("MD5 challenge")
    }

    // RFC 7616 §3.9.1 example: the same request answered with MD5 and SHA-256.
    const RFC_AUTH_MD5: &str = r#"Digest username="Mufasa",
        realm="http-auth@example.org",
        uri="/dir/index.html",
        algorithm=MD5,
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        nc=00000001,
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        qop=auth,
        response="8ca523f5e9506fed4657c9700eebdbec",
        opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    #[test]
    fn rfc7616_3_9_1_md5_and_sha256_vectors() {
        // The header is folded in the RFC; folding becomes single spaces on the wire.
        let header = RFC_AUTH_MD5
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let p = parse_authorization(&header).expect("RFC example parses");
        assert_eq!(p.username, "Mufasa");
        assert_eq!(p.realm, "http-auth@example.org");
        assert_eq!(
            p.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
        for (alg, expected) in [
            (Algorithm::Md5, p.response.as_str()),
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let ha1 = ha1(&p.username, &p.realm, "Circle of Life", alg);
            let got = compute_response(
                alg,
                &ha1,
                &p.nonce,
                p.nc.as_deref().unwrap_or_default(),
                p.cnonce.as_deref().unwrap_or_default(),
                p.qop.as_deref().unwrap_or_default(),
                "GET",
                &p.uri,
            );
            assert_eq!(got, expected, "{alg}");
        }
        assert_eq!(p.response, "8ca523f5e9506fed4657c9700eebdbec");
    }

    // RFC 7616 §3.4: a credential whose nonce we did not issue is refused in the first half,
    // so a caller whose HA1 lookup is I/O never looks anything up for it.
    #[test]
    fn precheck_refuses_a_foreign_nonce_before_any_lookup() {
        let a = authenticator(DigestConfig::default());
        let header = RFC_AUTH_MD5
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let p = parse_authorization(&header).unwrap();
        assert_eq!(
            a.precheck("/dir/index.html", p).map(|_| ()),
            Err(DigestError::BadNonce)
        );
        // And a genuine one passes it, naming what to look up.
        let challenge = md5_challenge(&a, T0);
        let header = client_header(&challenge, USER, PASS, "GET", "/a", 1, "c0ffee");
        let checked = a
            .precheck("/a", parse_authorization(&header).unwrap())
            .unwrap();
        assert_eq!(checked.lookup(), (USER, REALM, Algorithm::Md5));
        let stored = ha1(USER, REALM, PASS, Algorithm::Md5);
        assert!(a.complete(checked, "GET", Some(&stored), T0).is_ok());
    }

    #[test]
    fn rfc7616_3_9_1_foreign_nonce_is_bad_nonce() {
        // A genuine RFC credential, but its nonce was not issued by us.
        let a = authenticator(DigestConfig::default());
        let header = RFC_AUTH_MD5
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let r = a.verify("GET", "/dir/index.html", &header, T0, |_, _, alg| {
            Some(ha1(
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life",
                alg,
            ))
        });
        assert_eq!(r, Err(DigestError::BadNonce));
    }

    #[test]
    fn ht03_valid_request_both_algorithms() {
        let a = authenticator(DigestConfig::default());
        let challenges = a.challenges(REALM, false, T0);
        assert_eq!(challenges.len(), 2);
        // §3.7: preference order (see s3_7_md5_challenge_first_by_default).
        for (i, c) in challenges.iter().enumerate() {
            assert!(c.starts_with("Digest realm=\"example.com\", qop=\"auth\""));
            assert!(!c.contains("stale"));
            let nc = u32::try_from(i).unwrap() + 1; // the two share one nonce
            let hdr = client_header(c, USER, PASS, "GET", "/xcap-root/x", nc, "abc");
            let id = a
                .verify("GET", "/xcap-root/x", &hdr, T0 + 1, store)
                .unwrap();
            assert_eq!(id.username, USER);
            assert_eq!(id.realm, REALM);
            assert_eq!(
                id.algorithm,
                Algorithm::from_token(&challenge_params(c)["algorithm"]).unwrap()
            );
        }
    }

    #[test]
    fn issue3_hundred_requests_one_nonce_increasing_nc() {
        // Python requests reuses the nonce and increments nc: one 401 per client.
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        for nc in 1..=100u32 {
            let uri = format!("/xcap-root/doc{nc}?x=1");
            let hdr = client_header(&c, USER, PASS, "GET", &uri, nc, &format!("cn{nc}"));
            a.verify("GET", &uri, &hdr, T0 + u64::from(nc), store)
                .unwrap_or_else(|e| panic!("nc={nc}: {e}"));
        }
    }

    #[test]
    fn s3_4_replayed_nc_is_replay() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        assert!(a.verify("GET", "/a", &hdr, T0, store).is_ok());
        assert_eq!(
            a.verify("GET", "/a", &hdr, T0, store),
            Err(DigestError::Replay)
        );
        assert!(DigestError::Replay.is_stale());
    }

    #[test]
    fn s3_4_lower_nc_is_replay() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let h5 = client_header(&c, USER, PASS, "GET", "/a", 5, "x");
        let h4 = client_header(&c, USER, PASS, "GET", "/a", 4, "y");
        let h6 = client_header(&c, USER, PASS, "GET", "/a", 6, "z");
        assert!(a.verify("GET", "/a", &h5, T0, store).is_ok());
        assert_eq!(
            a.verify("GET", "/a", &h4, T0, store),
            Err(DigestError::Replay)
        );
        assert!(a.verify("GET", "/a", &h6, T0, store).is_ok());
    }

    #[test]
    fn s3_4_nc_zero_is_replay() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 0, "x");
        assert_eq!(
            a.verify("GET", "/a", &hdr, T0, store),
            Err(DigestError::Replay)
        );
    }

    #[test]
    fn failed_attempts_do_not_advance_nc() {
        // A wrong-password request with a high nc must not lock the real client out.
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let bad = client_header(&c, USER, "guess", "GET", "/a", 0xffff_fff0, "x");
        assert_eq!(
            a.verify("GET", "/a", &bad, T0, store),
            Err(DigestError::BadResponse)
        );
        let good = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        assert!(a.verify("GET", "/a", &good, T0, store).is_ok());
    }

    #[test]
    fn tampered_nonce_is_bad_nonce() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let nonce = challenge_params(&c)["nonce"].clone();
        let mut raw = URL_SAFE_NO_PAD.decode(&nonce).unwrap();
        for idx in [0usize, 7, 8, 23, 24, NONCE_RAW_LEN - 1] {
            let mut t = raw.clone();
            t[idx] ^= 1; // timestamp, random part and MAC each covered
            let forged = URL_SAFE_NO_PAD.encode(&t);
            let hdr = client_header(&c.replace(&nonce, &forged), USER, PASS, "GET", "/a", 1, "x");
            assert_eq!(
                a.verify("GET", "/a", &hdr, T0, store),
                Err(DigestError::BadNonce),
                "byte {idx}"
            );
        }
        raw.truncate(40);
        let short = URL_SAFE_NO_PAD.encode(&raw);
        let hdr = client_header(&c.replace(&nonce, &short), USER, PASS, "GET", "/a", 1, "x");
        assert_eq!(
            a.verify("GET", "/a", &hdr, T0, store),
            Err(DigestError::BadNonce)
        );
        let hdr = client_header(
            &c.replace(&nonce, "!!notbase64"),
            USER,
            PASS,
            "GET",
            "/a",
            1,
            "x",
        );
        assert_eq!(
            a.verify("GET", "/a", &hdr, T0, store),
            Err(DigestError::BadNonce)
        );
    }

    #[test]
    fn nonce_from_other_secret_or_realm_is_bad_nonce() {
        let a = authenticator(DigestConfig::default());
        let other = DigestAuthenticator::new([9u8; 32], DigestConfig::default(), |b| b.fill(3));
        let c = md5_challenge(&other, T0);
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        assert_eq!(
            a.verify("GET", "/a", &hdr, T0, store),
            Err(DigestError::BadNonce)
        );
        // A nonce issued for another realm, answered for ours.
        let c = a
            .challenges("other.org", false, T0)
            .pop()
            .unwrap()
            .replace("realm=\"other.org\"", "realm=\"example.com\"");
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        assert_eq!(
            a.verify("GET", "/a", &hdr, T0, store),
            Err(DigestError::BadNonce)
        );
    }

    #[test]
    fn s3_3_opaque_must_be_returned() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        let opaque = challenge_params(&c)["opaque"].clone();
        let wrong = hdr.replace(&opaque, "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(
            a.verify("GET", "/a", &wrong, T0, store),
            Err(DigestError::OpaqueMismatch)
        );
        let missing = hdr.replace(&format!(", opaque=\"{opaque}\""), "");
        assert_eq!(
            a.verify("GET", "/a", &missing, T0, store),
            Err(DigestError::OpaqueMismatch)
        );
        assert!(a.verify("GET", "/a", &hdr, T0, store).is_ok());
    }

    #[test]
    fn s3_3_expired_nonce_is_stale_only_with_valid_response() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        let late = T0 + 300;
        assert_eq!(
            a.verify("GET", "/a", &hdr, late, store),
            Err(DigestError::Stale)
        );
        assert!(DigestError::Stale.is_stale());
        let bad = client_header(&c, USER, "nope", "GET", "/a", 1, "x");
        assert_eq!(
            a.verify("GET", "/a", &bad, late, store),
            Err(DigestError::BadResponse)
        );
        // Just inside the lifetime it is fine.
        assert!(a.verify("GET", "/a", &hdr, T0 + 299, store).is_ok());
        // The stale challenge carries stale=true (§3.3).
        let again = a.challenges(REALM, true, late);
        assert!(again.iter().all(|c| c.ends_with(", stale=true")));
    }

    #[test]
    fn ht03_wrong_password_is_bad_response() {
        let a = authenticator(DigestConfig::default());
        for c in a.challenges(REALM, false, T0) {
            let hdr = client_header(&c, USER, "wrong", "GET", "/a", 1, "x");
            assert_eq!(
                a.verify("GET", "/a", &hdr, T0, store),
                Err(DigestError::BadResponse)
            );
        }
    }

    #[test]
    fn wrong_method_is_bad_response() {
        // A2 covers the method: a GET credential cannot authorize a DELETE.
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        assert_eq!(
            a.verify("DELETE", "/a", &hdr, T0, store),
            Err(DigestError::BadResponse)
        );
    }

    #[test]
    fn unknown_user() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let hdr = client_header(&c, "mallory@example.com", PASS, "GET", "/a", 1, "x");
        assert_eq!(
            a.verify("GET", "/a", &hdr, T0, store),
            Err(DigestError::UnknownUser)
        );
    }

    #[test]
    fn stored_ha1_uppercase_accepted() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        let upper = |u: &str, r: &str, alg| store(u, r, alg).map(|s| s.to_ascii_uppercase());
        assert!(a.verify("GET", "/a", &hdr, T0, upper).is_ok());
    }

    #[test]
    fn s3_4_6_uri_mismatch() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        for target in ["/b", "/a?x=1", "/a/", "http://host/b"] {
            assert_eq!(
                a.verify("GET", target, &hdr, T0, store),
                Err(DigestError::UriMismatch),
                "{target}"
            );
        }
    }

    #[test]
    fn s3_4_6_absolute_form_equivalent_to_origin_form() {
        assert!(uri_matches("http://xcap.example.com/a?b=c", "/a?b=c"));
        assert!(uri_matches("/a?b=c", "HTTPS://xcap.example.com/a?b=c"));
        assert!(uri_matches("http://H:8080", "/"));
        assert!(uri_matches("http://h/x", "http://H/x"));
        assert!(!uri_matches("http://h1/x", "http://h2/x"));
        assert!(!uri_matches("/a?b=c", "/a?b=d"));
        assert!(!uri_matches("/a", "/a?"));
        assert!(uri_matches("*", "*"));
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let hdr = client_header(&c, USER, PASS, "PUT", "/r/x", 1, "x");
        assert!(a
            .verify("PUT", "http://xcap.example.com/r/x", &hdr, T0, store)
            .is_ok());
    }

    /// RFC 7616 §3.4.6: the server checks that `uri` and the request-target identify the same
    /// resource. Percent-encoding differences (issue #10 item 5) are the same resource; a
    /// decoded `/`, `?` or `%` changes how an XCAP URI splits (URI-05, IO-03), so it is not.
    #[test]
    fn s3_4_6_percent_encoding_names_the_same_resource() {
        let enc = "/xcap-root/resource-lists/users/sip:a@b/index/~~/resource-lists/list%5B@name=%22f%22%5D";
        let raw =
            r#"/xcap-root/resource-lists/users/sip:a@b/index/~~/resource-lists/list[@name="f"]"#;
        assert!(uri_matches(enc, raw));
        assert!(uri_matches(raw, enc));
        assert!(uri_matches("/a%5b1%5D", "/a[1]"));
        assert!(uri_matches("/users/sip%3Aa%40b/x", "/users/sip:a@b/x"));
        assert!(uri_matches("/a?xmlns(p=urn:x)", "/a?xmlns%28p=urn:x%29"));
        assert!(uri_matches("/a%2fb", "/a%2Fb"));
        // Never a different resource.
        assert!(!uri_matches("/a%2Fb", "/a/b"));
        assert!(!uri_matches("/a%3Fb", "/a?b"));
        assert!(!uri_matches("/a%25%35%42", "/a%5B"));
        assert!(!uri_matches("/a%5B1%5D", "/a[2]"));
        assert!(!uri_matches("/a%5B", "/a%5"));
        assert!(!uri_matches("/a?b%3Dc", "/a?b=d"));
    }

    /// What Python's urllib sends for a URL with an unencoded node selector: the raw `"` of the
    /// selector inside the quoted `uri=` value (issue #10 items 1 and 5).
    #[test]
    fn s3_4_6_raw_quotes_inside_uri_value_from_urllib() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let raw = r#"/x/index/~~/l/list[@name="f"]/entry[@uri="sip:b@c"]"#;
        let hdr = client_header(&c, USER, PASS, "GET", raw, 1, "x");
        assert_eq!(parse_authorization(&hdr).unwrap().uri, raw);
        let encoded = "/x/index/~~/l/list%5B@name=%22f%22%5D/entry%5B@uri=%22sip:b@c%22%5D";
        assert!(a.verify("GET", encoded, &hdr, T0, store).is_ok());
        let hdr = client_header(&c, USER, PASS, "GET", raw, 2, "x");
        assert!(a.verify("GET", raw, &hdr, T0, store).is_ok());
        // An escaped quote still ends nothing, and a well-formed list still splits as before.
        let p = parse_auth_params(r#"a="x\"y", b="z""#).unwrap();
        assert_eq!(
            p,
            vec![("a".into(), "x\"y".into()), ("b".into(), "z".into())]
        );
    }

    #[test]
    fn s3_7_md5_challenge_first_by_default() {
        let a = authenticator(DigestConfig::default());
        let c = a.challenges(REALM, false, T0);
        assert!(c[0].contains("algorithm=MD5"), "{c:?}");
        assert!(c[1].contains("algorithm=SHA-256"), "{c:?}");
    }

    #[test]
    fn s3_4_qop_required() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        let no_qop = hdr.replace("qop=\"auth\", ", "");
        assert_eq!(
            a.verify("GET", "/a", &no_qop, T0, store),
            Err(DigestError::QopRequired)
        );
        let int = hdr.replace("qop=\"auth\"", "qop=auth-int");
        assert_eq!(
            a.verify("GET", "/a", &int, T0, store),
            Err(DigestError::QopRequired)
        );
    }

    #[test]
    fn s3_3_algorithms() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        // Absent algorithm means MD5 (§3.3).
        let absent = hdr.replace(", algorithm=\"MD5\"", "");
        assert!(a.verify("GET", "/a", &absent, T0, store).is_ok());
        for other in ["MD5-sess", "SHA-256-sess", "SHA-512-256", "SHA"] {
            let h = hdr.replace("algorithm=\"MD5\"", &format!("algorithm={other}"));
            assert_eq!(
                a.verify("GET", "/a", &h, T0, store),
                Err(DigestError::UnknownAlgorithm)
            );
        }
        // MD5 disabled by configuration: no MD5 challenge, MD5 credentials refused.
        let sha_only = authenticator(DigestConfig {
            algorithms: vec![Algorithm::Sha256],
            ..DigestConfig::default()
        });
        assert_eq!(sha_only.challenges(REALM, false, T0).len(), 1);
        let c = sha_only
            .challenges(REALM, false, T0)
            .remove(0)
            .replace("SHA-256", "MD5");
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        assert_eq!(
            sha_only.verify("GET", "/a", &hdr, T0, store),
            Err(DigestError::UnknownAlgorithm)
        );
    }

    #[test]
    fn eviction_makes_forgotten_nonce_stale_never_replayable() {
        let a = authenticator(DigestConfig {
            max_tracked_nonces: 2,
            ..DigestConfig::default()
        });
        let c1 = md5_challenge(&a, T0);
        let c2 = md5_challenge(&a, T0 + 1);
        let c3 = md5_challenge(&a, T0 + 2);
        let h1 = client_header(&c1, USER, PASS, "GET", "/a", 1, "x");
        assert!(a.verify("GET", "/a", &h1, T0 + 3, store).is_ok());
        assert!(a
            .verify(
                "GET",
                "/a",
                &client_header(&c2, USER, PASS, "GET", "/a", 1, "x"),
                T0 + 3,
                store
            )
            .is_ok());
        assert!(a
            .verify(
                "GET",
                "/a",
                &client_header(&c3, USER, PASS, "GET", "/a", 1, "x"),
                T0 + 3,
                store
            )
            .is_ok());
        // c1 (oldest issued) was evicted: its replay, and even its next nc, are stale.
        assert_eq!(
            a.verify("GET", "/a", &h1, T0 + 3, store),
            Err(DigestError::Stale)
        );
        let h1b = client_header(&c1, USER, PASS, "GET", "/a", 2, "x");
        assert_eq!(
            a.verify("GET", "/a", &h1b, T0 + 3, store),
            Err(DigestError::Stale)
        );
        // A newer nonce never used before is still accepted.
        let c4 = md5_challenge(&a, T0 + 4);
        let h4 = client_header(&c4, USER, PASS, "GET", "/a", 1, "x");
        assert!(a.verify("GET", "/a", &h4, T0 + 4, store).is_ok());
        assert_eq!(a.nonces.lock().highest_nc.len(), 2);
    }

    #[test]
    fn expired_entries_pruned_and_forget_before() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        assert!(a.verify("GET", "/a", &hdr, T0, store).is_ok());
        let later = md5_challenge(&a, T0 + 400);
        let h2 = client_header(&later, USER, PASS, "GET", "/a", 1, "x");
        assert!(a.verify("GET", "/a", &h2, T0 + 400, store).is_ok());
        assert_eq!(a.nonces.lock().highest_nc.len(), 1, "expired entry pruned");

        let b = authenticator(DigestConfig::default());
        let old = md5_challenge(&b, T0);
        b.forget_nonces_before(T0 + 1);
        let h = client_header(&old, USER, PASS, "GET", "/a", 1, "x");
        assert_eq!(
            b.verify("GET", "/a", &h, T0 + 2, store),
            Err(DigestError::Stale)
        );
        let new = md5_challenge(&b, T0 + 2);
        let h = client_header(&new, USER, PASS, "GET", "/a", 1, "x");
        assert!(b.verify("GET", "/a", &h, T0 + 2, store).is_ok());
    }

    #[test]
    fn nonces_unique_even_with_constant_randomness() {
        let a = DigestAuthenticator::new([1; 32], DigestConfig::default(), |b| b.fill(0));
        let n1 = challenge_params(&md5_challenge(&a, T0))["nonce"].clone();
        let n2 = challenge_params(&md5_challenge(&a, T0))["nonce"].clone();
        assert_ne!(n1, n2);
        assert!(format!("{a:?}").contains("<redacted>"));
    }

    #[test]
    fn authenticator_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<DigestAuthenticator>();
    }

    #[test]
    fn parse_is_lenient_about_whitespace_case_and_quoting() {
        let p = parse_authorization(
            "  dIgEsT  USERNAME = \"a\\\"b\" ,, Realm=r,nonce=\"n\",uri=\"/x, y\",\tresponse=ABC ,qop=auth , nc=00000001,cnonce=\"c\",x-ext=\"ignored\",",
        )
        .unwrap();
        assert_eq!(p.username, "a\"b");
        assert_eq!(p.realm, "r");
        assert_eq!(p.uri, "/x, y");
        assert_eq!(p.response, "ABC");
        assert_eq!(p.qop.as_deref(), Some("auth"));
        assert_eq!(p.nc.as_deref(), Some("00000001"));
    }

    #[test]
    fn parse_rejections() {
        let base = "username=\"u\", realm=\"r\", nonce=\"n\", uri=\"/\", response=\"x\"";
        assert!(parse_authorization(&format!("Digest {base}")).is_ok());
        for bad in [
            String::new(),
            "Digest".to_string(),
            format!("Basic {base}"),
            format!("Digest {base}, realm=\"again\""), // duplicate
            format!("Digest {base}, userhash=true"),   // §3.4.4 unsupported
            format!("Digest {base}, userhash=maybe"),
            format!("Digest {base}, username*=UTF-8''x"), // both forms
            format!("Digest {base}, opaque=\"unterminated"),
            format!("Digest {base} junk"),
            format!("Digest {base}, =x"),
            format!("Digest {base}, a=\"ctl\u{1}\""),
            "Digest realm=\"r\", nonce=\"n\", uri=\"/\", response=\"x\"".to_string(),
            format!("Digest {base}, {}", "a".repeat(MAX_HEADER_LEN)),
        ] {
            assert_eq!(
                parse_authorization(&bad),
                Err(DigestError::Malformed),
                "{bad:?}"
            );
        }
        assert!(parse_authorization(&format!("Digest {base}, userhash=FALSE")).is_ok());
    }

    #[test]
    fn s3_4_4_username_star_utf8() {
        let p = parse_authorization(
            "Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm=\"r\", nonce=\"n\", uri=\"/\", response=\"x\"",
        )
        .unwrap();
        assert_eq!(p.username, "Jäsøn Doe");
        for bad in [
            "ISO-8859-1''x",
            "UTF-8''%C3",
            "UTF-8''%zz",
            "UTF-8",
            "UTF-8''",
        ] {
            let h = format!(
                "Digest username*={bad}, realm=\"r\", nonce=\"n\", uri=\"/\", response=\"x\""
            );
            assert_eq!(
                parse_authorization(&h),
                Err(DigestError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn nc_must_be_eight_hex_digits() {
        let a = authenticator(DigestConfig::default());
        let c = md5_challenge(&a, T0);
        let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
        for nc in ["1", "0000000g", "000000001", "-0000001"] {
            let h = hdr.replace("nc=00000001", &format!("nc={nc}"));
            assert_eq!(
                a.verify("GET", "/a", &h, T0, store),
                Err(DigestError::Malformed),
                "{nc}"
            );
        }
        let no_cnonce = hdr.replace(", cnonce=\"x\"", "");
        assert_eq!(
            a.verify("GET", "/a", &no_cnonce, T0, store),
            Err(DigestError::Malformed)
        );
    }

    #[test]
    fn challenge_realm_is_quoted() {
        let a = authenticator(DigestConfig::default());
        let c = a.challenges("we\"ird\\realm", false, T0).remove(0);
        assert_eq!(challenge_params(&c)["realm"], "we\"ird\\realm");
    }

    #[test]
    fn concurrent_clients_share_nothing_but_the_table() {
        let a = std::sync::Arc::new(authenticator(DigestConfig::default()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || {
                    let c = md5_challenge(&a, T0);
                    for nc in 1..=50 {
                        let hdr = client_header(&c, USER, PASS, "GET", "/a", nc, "x");
                        assert!(a.verify("GET", "/a", &hdr, T0 + 1, store).is_ok());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(a.nonces.lock().highest_nc.len(), 4);
    }

    proptest! {
        #[test]
        fn malformed_headers_never_panic(s in ".{0,300}") {
            let a = authenticator(DigestConfig::default());
            let _ = parse_authorization(&s);
            let r = a.verify("GET", "/a", &s, T0, store);
            prop_assert!(r.is_err());
            let _ = a.verify("GET", "/a", &format!("Digest {s}"), T0, store);
        }

        #[test]
        fn near_valid_headers_never_panic(
            cut in 0usize..400,
            junk in "[ ,=\"\\\\a-z0-9*%']{0,8}",
        ) {
            // Truncations and splices of a real header reach deep parser states.
            let a = authenticator(DigestConfig::default());
            let c = md5_challenge(&a, T0);
            let hdr = client_header(&c, USER, PASS, "GET", "/a", 1, "x");
            let mut cut = cut.min(hdr.len());
            while !hdr.is_char_boundary(cut) { cut -= 1; }
            let spliced = format!("{}{}{}", &hdr[..cut], junk, &hdr[cut..]);
            let _ = a.verify("GET", "/a", &spliced, T0, store);
            let _ = a.verify("GET", "/a", &hdr[..cut], T0, store);
        }

        #[test]
        fn round_trip_any_credentials(
            user in "[^\u{0}-\u{1f}\u{7f}]{1,20}",
            pass in ".{0,20}",
            path in "/[a-z0-9/%~._-]{0,30}(\\?[a-z=&]{0,10})?",
            nc in 1u32..=u32::MAX,
            sha in any::<bool>(),
        ) {
            let a = authenticator(DigestConfig::default());
            let alg = if sha { Algorithm::Sha256 } else { Algorithm::Md5 };
            let c = a.challenges(REALM, false, T0).into_iter()
                .find(|c| c.contains(&format!("algorithm={alg},"))).unwrap();
            let quoted_user = quote(&user);
            let hdr = client_header(&c, &user, &pass, "PUT", &path, nc, "cn")
                .replacen(&format!("username=\"{user}\""), &format!("username={quoted_user}"), 1);
            let lookup = |u: &str, r: &str, al| (u == user && r == REALM).then(|| ha1(&user, REALM, &pass, al));
            let id = a.verify("PUT", &path, &hdr, T0, lookup);
            prop_assert_eq!(id.map(|i| (i.username, i.algorithm)), Ok((user.clone(), alg)));
            let wrong = client_header(&c, &user, &format!("{pass}x"), "PUT", &path, nc, "cn")
                .replacen(&format!("username=\"{user}\""), &format!("username={quoted_user}"), 1);
            prop_assert_eq!(a.verify("PUT", &path, &wrong, T0, lookup), Err(DigestError::BadResponse));
        }
    }
}
