//! Credential storage (layer L1, design §4 `CredentialStore`): users keyed by canonical XUI
//! (RFC 4825 §4, IO-01f) with a Digest realm, roles and HA1 values only — never passwords
//! (RFC 7616 §3.4.2, §5.1) — plus [`MemoryCredentials`], the in-memory backend.
//!
//! One user has one HA1 per (username spelling, algorithm): clients put different strings into
//! the Digest `username` for the same XUI (`sip:alice@example.com` from Doubango, IO-04d;
//! `alice@example.com` from sipsimple, IO-01a; a bare `alice`, IO-01d), and the HA1 covers the
//! username, so each spelling needs its own. A username spelling, realm and algorithm belong to
//! at most one user: [`CredentialStore::put_user`] refuses a credential that would take one over.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use parking_lot::RwLock;

use super::{StorageError, StoreFuture};
use std::future::ready;

/// Canonical name of the MD5 Digest algorithm (RFC 7616 §3.3).
pub const MD5: &str = "MD5";
/// Canonical name of the SHA-256 Digest algorithm (RFC 7616 §3.3).
pub const SHA_256: &str = "SHA-256";
/// The algorithms [`make_credential`] computes an HA1 for, in that order.
pub const ALGORITHMS: [&str; 2] = [MD5, SHA_256];

/// Errors of this module's own parsing (storage failures are [`StorageError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("unknown role {0:?} (expected user, admin or service)")]
    UnknownRole(String),
}

/// What an authenticated user may do; the authorization policy gives the meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    User,
    Admin,
    Service,
}

/// The principal a user with `roles` acts as (admin before service before user): the same on
/// every edge (HTTP front, SIP).
pub fn principal_of(xui: &str, roles: &[Role]) -> crate::authz::Principal {
    use crate::authz::Principal;
    if roles.contains(&Role::Admin) {
        Principal::Admin
    } else if roles.contains(&Role::Service) {
        Principal::Service(xui.to_string())
    } else {
        Principal::User(xui.to_string())
    }
}

/// The principal `xui` acts as, by its roles in `creds`; an unknown user (or a failing lookup)
/// is a plain user.
pub async fn principal_in(creds: &dyn CredentialStore, xui: &str) -> crate::authz::Principal {
    let roles = creds
        .get_user(xui)
        .await
        .ok()
        .flatten()
        .map(|c| c.roles)
        .unwrap_or_default();
    principal_of(xui, &roles)
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = CredentialError;

    /// Exactly `user`, `admin` or `service` (the stored and displayed spelling).
    fn from_str(s: &str) -> Result<Role, CredentialError> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            "service" => Ok(Role::Service),
            other => Err(CredentialError::UnknownRole(other.to_owned())),
        }
    }
}

/// One HA1 = H(username ":" realm ":" password) (RFC 7616 §3.4.2) for one username spelling.
#[derive(Clone, PartialEq, Eq)]
pub struct Ha1Entry {
    /// The Digest `username` exactly as the client sends it.
    pub username: String,
    /// [`MD5`] or [`SHA_256`].
    pub algorithm: String,
    /// Lowercase hex digest.
    pub ha1_hex: String,
}

/// A user's credential record.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// Canonical XUI, e.g. `sip:alice@example.com` (the key).
    pub xui: String,
    /// Digest realm; the user's domain by default.
    pub realm: String,
    /// One entry per (username spelling, algorithm).
    pub ha1: Vec<Ha1Entry>,
    pub roles: Vec<Role>,
    pub created_ms: u64,
    /// Bearer tokens issued (`iat`) before this time (unix seconds) are refused; a password
    /// change that revokes tokens moves it forward. 0: no token revoked.
    pub tokens_not_before: u64,
}

// An HA1 is a password equivalent for its realm (RFC 7616 §5.1): keep it out of logs.
impl fmt::Debug for Ha1Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ha1Entry")
            .field("username", &self.username)
            .field("algorithm", &self.algorithm)
            .field("ha1_hex", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("xui", &self.xui)
            .field("realm", &self.realm)
            .field("ha1", &self.ha1)
            .field("roles", &self.roles)
            .field("created_ms", &self.created_ms)
            .field("tokens_not_before", &self.tokens_not_before)
            .finish()
    }
}

impl Credential {
    /// True if the user holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Domain-level credential storage. Listings are sorted by XUI. Async like every domain
/// store (design.md §4); writes resolve once durable.
pub trait CredentialStore: Send + Sync + 'static {
    fn get_user<'a>(&'a self, xui: &'a str) -> StoreFuture<'a, Option<Credential>>;
    /// Finds the HA1 for a Digest username as the client sent it (any spelling registered),
    /// realm and algorithm; returns (xui, ha1 hex). Usernames and realms compare exactly; the
    /// algorithm goes through [`canonical_algorithm`], so `md5-sess` finds the MD5 HA1 that the
    /// session variant is built on (RFC 7616 §3.4.2). Unknown algorithms and names that cannot be
    /// stored (empty, NUL) are `Ok(None)`: they come from the client.
    fn lookup_ha1<'a>(
        &'a self,
        username: &'a str,
        realm: &'a str,
        algorithm: &'a str,
    ) -> StoreFuture<'a, Option<(String, String)>>;
    /// Creates or replaces the user `cred.xui`; the previous HA1 spellings of that user are
    /// dropped. `InvalidKey` when [`validate_credential`] fails, `PreconditionFailed` (nothing
    /// stored) when a (username, realm, algorithm) of `cred` already belongs to another user.
    fn put_user<'a>(&'a self, cred: &'a Credential) -> StoreFuture<'a, ()>;
    /// True if the user existed.
    fn delete_user<'a>(&'a self, xui: &'a str) -> StoreFuture<'a, bool>;
    fn list_users(&self) -> StoreFuture<'_, Vec<Credential>>;
    /// The realms that hold at least one user, most users first (ties by name). Used to
    /// challenge requests that name no user (global documents) in every realm users have.
    fn realms(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
            for cred in self.list_users().await? {
                *counts.entry(cred.realm).or_default() += 1;
            }
            let mut realms: Vec<(String, usize)> = counts.into_iter().collect();
            realms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            Ok(realms.into_iter().map(|(r, _)| r).collect())
        })
    }
}

/// Maps a Digest `algorithm` token (case-insensitive, RFC 7616 §3.3) to the canonical name of the
/// stored HA1: the `-sess` variants use the same H(username:realm:password). None if unsupported.
pub fn canonical_algorithm(token: &str) -> Option<&'static str> {
    let base = match token.len().checked_sub(5) {
        Some(cut) if token.is_char_boundary(cut) && token[cut..].eq_ignore_ascii_case("-sess") => {
            &token[..cut]
        }
        _ => token,
    };
    ALGORITHMS
        .into_iter()
        .find(|alg| alg.eq_ignore_ascii_case(base))
}

/// HA1 = H(username ":" realm ":" password) in lowercase hex (RFC 7616 §3.4.2); None for an
/// algorithm [`canonical_algorithm`] does not know. A `-sess` token gives this same base value
/// (the stored one), not the per-nonce session HA1.
pub fn compute_ha1(algorithm: &str, username: &str, realm: &str, password: &str) -> Option<String> {
    let alg = crate::auth::digest::Algorithm::from_token(canonical_algorithm(algorithm)?)?;
    Some(crate::auth::digest::ha1(username, realm, password, alg))
}

/// The Digest usernames clients use for a canonical XUI (IO-01, IO-04d), most specific first:
/// `sip:alice@example.com` → the XUI, `alice@example.com`, `alice`; `tel:+1555` → the XUI and
/// `+1555`; anything else → itself.
pub fn username_spellings(xui: &str) -> Vec<String> {
    let mut out = vec![xui.to_owned()];
    if let Some(addr) = xui.strip_prefix("sip:") {
        out.push(addr.to_owned());
        if let Some((user, _)) = addr.rsplit_once('@') {
            out.push(user.to_owned());
        }
    } else if let Some(number) = xui.strip_prefix("tel:") {
        out.push(number.to_owned());
    }
    out.retain(|s| !s.is_empty());
    out.dedup();
    out
}

/// The token epoch ([`Credential::tokens_not_before`]) that revokes every bearer token issued
/// until now. Tokens carry whole-second `iat`s, so it is the next second: a token issued in the
/// same second as the revocation is refused too (the admin API issues new ones at the epoch).
pub fn revocation_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_add(1)
}

/// Builds a credential with an HA1 per username spelling ([`username_spellings`]) and algorithm
/// ([`ALGORITHMS`]). The password is hashed and not kept. Duplicate roles are dropped.
pub fn make_credential(
    xui: &str,
    realm: &str,
    password: &str,
    roles: Vec<Role>,
    now_ms: u64,
) -> Credential {
    let mut ha1 = Vec::new();
    for username in username_spellings(xui) {
        for algorithm in ALGORITHMS {
            // Only fails for unknown algorithms; ALGORITHMS holds known ones.
            if let Some(ha1_hex) = compute_ha1(algorithm, &username, realm, password) {
                ha1.push(Ha1Entry {
                    username: username.clone(),
                    algorithm: algorithm.to_owned(),
                    ha1_hex,
                });
            }
        }
    }
    let mut unique_roles = Vec::with_capacity(roles.len());
    for role in roles {
        if !unique_roles.contains(&role) {
            unique_roles.push(role);
        }
    }
    Credential {
        xui: xui.to_owned(),
        realm: realm.to_owned(),
        ha1,
        roles: unique_roles,
        created_ms: now_ms,
        tokens_not_before: 0,
    }
}

/// The rules every backend relies on: non-empty, NUL-free XUI, realm and usernames (NUL separates
/// index keys), canonical algorithm names, lowercase hex HA1 of the algorithm's length, and no
/// (username, algorithm) twice.
pub fn validate_credential(cred: &Credential) -> Result<(), StorageError> {
    component("XUI", &cred.xui)?;
    component("realm", &cred.realm)?;
    for (i, e) in cred.ha1.iter().enumerate() {
        component("username", &e.username)?;
        let hex_len = match e.algorithm.as_str() {
            MD5 => 32,
            SHA_256 => 64,
            other => {
                return Err(StorageError::InvalidKey(format!(
                    "unsupported HA1 algorithm {other:?}"
                )))
            }
        };
        let lower_hex = e
            .ha1_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if e.ha1_hex.len() != hex_len || !lower_hex {
            return Err(StorageError::InvalidKey(format!(
                "HA1 of {:?}/{} is not {hex_len} lowercase hex digits",
                e.username, e.algorithm
            )));
        }
        if cred.ha1[..i]
            .iter()
            .any(|p| p.username == e.username && p.algorithm == e.algorithm)
        {
            return Err(StorageError::InvalidKey(format!(
                "two HA1 entries for {:?}/{}",
                e.username, e.algorithm
            )));
        }
    }
    Ok(())
}

fn component(what: &str, value: &str) -> Result<(), StorageError> {
    if value.is_empty() {
        return Err(StorageError::InvalidKey(format!("empty {what}")));
    }
    if value.contains('\0') {
        return Err(StorageError::InvalidKey(format!("NUL in {what}")));
    }
    Ok(())
}

/// Normalizes the arguments of `lookup_ha1` into an index key (username, realm, canonical
/// algorithm); None when nothing can be stored under them.
pub(crate) fn lookup_key<'a>(
    username: &'a str,
    realm: &'a str,
    algorithm: &str,
) -> Option<(&'a str, &'a str, &'static str)> {
    let storable = |s: &str| !s.is_empty() && !s.contains('\0');
    if !storable(username) || !storable(realm) {
        return None;
    }
    Some((username, realm, canonical_algorithm(algorithm)?))
}

/// Credentials held in memory (tests, ephemeral deployments).
#[derive(Debug, Default)]
pub struct MemoryCredentials {
    state: RwLock<MemoryState>,
}

type IndexKey = (String, String, String);

#[derive(Debug, Default)]
struct MemoryState {
    users: BTreeMap<String, Credential>,
    /// (username, realm, algorithm) → (xui, ha1 hex): the lookup path of Digest verification.
    by_username: BTreeMap<IndexKey, (String, String)>,
}

fn index_key(cred: &Credential, e: &Ha1Entry) -> IndexKey {
    (e.username.clone(), cred.realm.clone(), e.algorithm.clone())
}

impl MemoryCredentials {
    pub fn new() -> Self {
        Self::default()
    }
}

impl MemoryCredentials {
    fn get_user_now(&self, xui: &str) -> Result<Option<Credential>, StorageError> {
        component("XUI", xui)?;
        Ok(self.state.read().users.get(xui).cloned())
    }

    fn lookup_ha1_now(
        &self,
        username: &str,
        realm: &str,
        algorithm: &str,
    ) -> Result<Option<(String, String)>, StorageError> {
        let Some((username, realm, algorithm)) = lookup_key(username, realm, algorithm) else {
            return Ok(None);
        };
        let key = (username.to_owned(), realm.to_owned(), algorithm.to_owned());
        Ok(self.state.read().by_username.get(&key).cloned())
    }

    fn put_user_now(&self, cred: &Credential) -> Result<(), StorageError> {
        validate_credential(cred)?;
        let mut state = self.state.write();
        let taken = cred.ha1.iter().any(|e| {
            state
                .by_username
                .get(&index_key(cred, e))
                .is_some_and(|(owner, _)| owner != &cred.xui)
        });
        if taken {
            return Err(StorageError::PreconditionFailed);
        }
        if let Some(old) = state.users.remove(&cred.xui) {
            for e in &old.ha1 {
                state.by_username.remove(&index_key(&old, e));
            }
        }
        for e in &cred.ha1 {
            state
                .by_username
                .insert(index_key(cred, e), (cred.xui.clone(), e.ha1_hex.clone()));
        }
        state.users.insert(cred.xui.clone(), cred.clone());
        Ok(())
    }

    fn delete_user_now(&self, xui: &str) -> Result<bool, StorageError> {
        component("XUI", xui)?;
        let mut state = self.state.write();
        let Some(old) = state.users.remove(xui) else {
            return Ok(false);
        };
        for e in &old.ha1 {
            state.by_username.remove(&index_key(&old, e));
        }
        Ok(true)
    }

    fn list_users_now(&self) -> Result<Vec<Credential>, StorageError> {
        Ok(self.state.read().users.values().cloned().collect())
    }
}

impl CredentialStore for MemoryCredentials {
    fn get_user<'a>(&'a self, xui: &'a str) -> StoreFuture<'a, Option<Credential>> {
        Box::pin(ready(self.get_user_now(xui)))
    }

    fn lookup_ha1<'a>(
        &'a self,
        username: &'a str,
        realm: &'a str,
        algorithm: &'a str,
    ) -> StoreFuture<'a, Option<(String, String)>> {
        Box::pin(ready(self.lookup_ha1_now(username, realm, algorithm)))
    }

    fn put_user<'a>(&'a self, cred: &'a Credential) -> StoreFuture<'a, ()> {
        Box::pin(ready(self.put_user_now(cred)))
    }

    fn delete_user<'a>(&'a self, xui: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(ready(self.delete_user_now(xui)))
    }

    fn list_users(&self) -> StoreFuture<'_, Vec<Credential>> {
        Box::pin(ready(self.list_users_now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Md5;
    use sha2::{Digest, Sha256};

    /// Hash helpers written apart from the HA1 code under test.
    fn digest_parts<D: Digest>(parts: &[&str]) -> Vec<u8> {
        let mut hasher = D::new();
        for part in parts {
            hasher.update(part.as_bytes());
        }
        hasher.finalize().to_vec()
    }

    fn hex(bytes: &[u8]) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        out
    }

    const ALICE: &str = "sip:alice@example.com";

    // RFC 7616 §3.9.1: the published responses for Mufasa / "Circle of Life", recomputed from our
    // HA1, so a wrong HA1 (separator, order, encoding) cannot pass.
    #[test]
    fn rfc7616_3_9_1_responses_from_computed_ha1() {
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        for (alg, expected) in [
            (MD5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                SHA_256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let ha1 =
                compute_ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life").unwrap();
            let h = |parts: &[&str]| match alg {
                MD5 => hex(&digest_parts::<Md5>(parts)),
                _ => hex(&digest_parts::<Sha256>(parts)),
            };
            let ha2 = h(&["GET:/dir/index.html"]);
            let response = h(&[&ha1, ":", nonce, ":00000001:", cnonce, ":auth:", &ha2]);
            assert_eq!(response, expected, "{alg}");
        }
        // RFC 2617 §3.5 HA1, known from outside this code.
        assert_eq!(
            compute_ha1("md5", "Mufasa", "testrealm@host.com", "Circle Of Life").as_deref(),
            Some("939e7578ed9e3c518a452acee763bce9")
        );
        assert_eq!(compute_ha1("SHA-512-256", "a", "b", "c"), None);
    }

    // RFC 7616 §3.3: algorithm tokens; -sess variants share the base HA1 (§3.4.2).
    #[test]
    fn canonical_algorithm_table() {
        for (token, want) in [
            ("MD5", Some(MD5)),
            ("md5", Some(MD5)),
            ("MD5-sess", Some(MD5)),
            ("SHA-256", Some(SHA_256)),
            ("sha-256-SESS", Some(SHA_256)),
            ("SHA-512-256", None),
            ("-sess", None),
            ("", None),
            ("MD5-sesss", None),
            ("é-sess", None),
            ("ééé", None),
        ] {
            assert_eq!(canonical_algorithm(token), want, "{token:?}");
        }
    }

    // IO-01a/b/d, IO-04d: the Digest usernames each client family sends for one XUI.
    #[test]
    fn io01_username_spellings() {
        assert_eq!(
            username_spellings(ALICE),
            vec![ALICE, "alice@example.com", "alice"]
        );
        assert_eq!(username_spellings("tel:+1555"), vec!["tel:+1555", "+1555"]);
        assert_eq!(username_spellings("opaque"), vec!["opaque"]);
    }

    // RFC 7616 §3.4.2: one HA1 per spelling and algorithm, each over that spelling; no password.
    #[test]
    fn make_credential_hashes_every_spelling_and_keeps_no_password() {
        let c = make_credential(
            ALICE,
            "example.com",
            "s3cret-pw",
            vec![Role::Admin, Role::User, Role::Admin],
            7,
        );
        assert_eq!(c.ha1.len(), 6);
        for e in &c.ha1 {
            assert_eq!(
                Some(e.ha1_hex.clone()),
                compute_ha1(&e.algorithm, &e.username, "example.com", "s3cret-pw")
            );
        }
        let distinct: std::collections::BTreeSet<_> = c.ha1.iter().map(|e| &e.ha1_hex).collect();
        assert_eq!(distinct.len(), 6);
        assert_eq!(c.roles, vec![Role::Admin, Role::User]);
        assert_eq!(c.created_ms, 7);
        assert!(!format!("{c:?}").contains("s3cret-pw"));
        assert_eq!(validate_credential(&c), Ok(()));
    }

    #[test]
    fn role_parse_and_display_round_trip() {
        for role in [Role::User, Role::Admin, Role::Service] {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
        }
        assert_eq!(
            "Admin".parse::<Role>(),
            Err(CredentialError::UnknownRole("Admin".into()))
        );
    }

    #[test]
    fn validate_rejects_unstorable_credentials() {
        let good = make_credential(ALICE, "example.com", "pw", vec![Role::User], 0);
        let mut cases: Vec<Credential> = Vec::new();
        let mut c = good.clone();
        c.xui.clear();
        cases.push(c);
        let mut c = good.clone();
        c.realm = "ex\0ample".into();
        cases.push(c);
        let mut c = good.clone();
        c.ha1[0].username = String::new();
        cases.push(c);
        let mut c = good.clone();
        c.ha1[0].algorithm = "md5".into();
        cases.push(c);
        let mut c = good.clone();
        c.ha1[0].ha1_hex = c.ha1[0].ha1_hex.to_ascii_uppercase();
        cases.push(c);
        let mut c = good.clone();
        c.ha1[1].ha1_hex.pop();
        cases.push(c);
        let mut c = good.clone();
        c.ha1.push(c.ha1[0].clone());
        cases.push(c);
        for bad in cases {
            assert!(
                matches!(validate_credential(&bad), Err(StorageError::InvalidKey(_))),
                "{bad:?}"
            );
        }
    }
}

#[cfg(test)]
macro_rules! credential_store_suite {
    ($suite:ident, $make:expr) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            use std::sync::Arc;
            use $crate::storage::credentials::{
                compute_ha1, make_credential, Credential, CredentialStore, Role, MD5, SHA_256,
            };
            use $crate::storage::StorageError;

            fn store() -> $crate::storage::Blocking<dyn CredentialStore> {
                $crate::storage::Blocking(Arc::new(($make)()))
            }

            const ALICE: &str = "sip:alice@example.com";
            const BOB: &str = "sip:bob@example.com";
            const REALM: &str = "example.com";

            fn alice(password: &str) -> Credential {
                make_credential(ALICE, REALM, password, vec![Role::User], 100)
            }

            fn ha1(alg: &str, username: &str, realm: &str, password: &str) -> String {
                compute_ha1(alg, username, realm, password).unwrap()
            }

            /// Every spelling × algorithm resolves to (`xui`, HA1 over `password`) in `realm`.
            fn assert_resolves(
                s: &$crate::storage::Blocking<dyn CredentialStore>,
                xui: &str,
                realm: &str,
                password: &str,
            ) {
                for username in $crate::storage::credentials::username_spellings(xui) {
                    for alg in [MD5, SHA_256] {
                        assert_eq!(
                            s.lookup_ha1(&username, realm, alg).unwrap(),
                            Some((xui.to_owned(), ha1(alg, &username, realm, password))),
                            "{username} {alg}"
                        );
                    }
                }
            }

            fn assert_unresolved(
                s: &$crate::storage::Blocking<dyn CredentialStore>,
                xui: &str,
                realm: &str,
            ) {
                for username in $crate::storage::credentials::username_spellings(xui) {
                    for alg in [MD5, SHA_256] {
                        assert_eq!(
                            s.lookup_ha1(&username, realm, alg).unwrap(),
                            None,
                            "{username} {alg}"
                        );
                    }
                }
            }

            #[test]
            fn missing_user_is_none() {
                let s = store();
                assert_eq!(s.get_user(ALICE).unwrap(), None);
                assert_eq!(s.lookup_ha1("alice", REALM, MD5).unwrap(), None);
                assert!(!s.delete_user(ALICE).unwrap());
                assert!(s.list_users().unwrap().is_empty());
            }

            #[test]
            fn put_then_get_returns_the_same_credential() {
                let s = store();
                let c = make_credential(ALICE, REALM, "pw", vec![Role::Admin, Role::Service], 42);
                s.put_user(&c).unwrap();
                assert_eq!(s.get_user(ALICE).unwrap(), Some(c));
            }

            // IO-01a/b/d, IO-04d: every spelling and algorithm reaches the same XUI; RFC 7616
            // §3.4.2: the HA1 returned is the one over the spelling asked for.
            #[test]
            fn lookup_by_each_spelling_and_algorithm() {
                let s = store();
                s.put_user(&alice("pw")).unwrap();
                assert_resolves(&s, ALICE, REALM, "pw");
                // RFC 7616 §3.3: case-insensitive tokens, -sess uses the base HA1.
                assert_eq!(
                    s.lookup_ha1("alice", REALM, "sha-256-sess").unwrap(),
                    Some((ALICE.to_owned(), ha1(SHA_256, "alice", REALM, "pw")))
                );
                assert_eq!(s.lookup_ha1("alice", REALM, "SHA-512-256").unwrap(), None);
            }

            // RFC 7616 §3.4.2: the HA1 is per realm; usernames compare exactly.
            #[test]
            fn wrong_realm_or_unknown_spelling_is_none() {
                let s = store();
                s.put_user(&alice("pw")).unwrap();
                assert_unresolved(&s, ALICE, "other.example.com");
                assert_unresolved(&s, ALICE, "Example.com");
                for username in ["Alice", "alice@Example.com", "sip:alice", "", "al\0ice"] {
                    assert_eq!(
                        s.lookup_ha1(username, REALM, MD5).unwrap(),
                        None,
                        "{username:?}"
                    );
                }
                assert_eq!(s.lookup_ha1("alice", "", MD5).unwrap(), None);
                assert_eq!(s.lookup_ha1("alice", "a\0b", MD5).unwrap(), None);
            }

            // RFC 7616 §5.1: an HA1 is a password equivalent; Debug must not show it.
            #[test]
            fn debug_redacts_ha1() {
                let s = store();
                s.put_user(&alice("pw")).unwrap();
                let c = s.get_user(ALICE).unwrap().unwrap();
                let shown = format!("{c:?} {:?}", s.list_users().unwrap());
                for e in &c.ha1 {
                    assert!(!shown.contains(&e.ha1_hex), "{shown}");
                }
                assert!(
                    shown.contains(ALICE) && shown.contains("redacted"),
                    "{shown}"
                );
            }

            // Replacement (password change, realm change) drops the old HA1s and spellings.
            #[test]
            fn replace_updates_hashes_and_removes_old_index_entries() {
                let s = store();
                s.put_user(&alice("old")).unwrap();
                s.put_user(&alice("new")).unwrap();
                assert_resolves(&s, ALICE, REALM, "new");
                // Realm change: nothing left under the old realm.
                let moved = make_credential(ALICE, "xcap.example.com", "new", vec![Role::User], 1);
                s.put_user(&moved).unwrap();
                assert_unresolved(&s, ALICE, REALM);
                assert_resolves(&s, ALICE, "xcap.example.com", "new");
                // Fewer spellings: the dropped ones no longer resolve.
                let mut only_full = moved.clone();
                only_full.ha1.retain(|e| e.username == ALICE);
                s.put_user(&only_full).unwrap();
                assert!(s
                    .lookup_ha1(ALICE, "xcap.example.com", MD5)
                    .unwrap()
                    .is_some());
                for username in ["alice@example.com", "alice"] {
                    assert_eq!(
                        s.lookup_ha1(username, "xcap.example.com", MD5).unwrap(),
                        None
                    );
                }
                assert_eq!(s.get_user(ALICE).unwrap(), Some(only_full));
                // The freed spelling can be taken by another user of that realm.
                let mut other = make_credential(
                    "sip:alice@other.example.com",
                    "xcap.example.com",
                    "x",
                    vec![],
                    2,
                );
                other.ha1.retain(|e| e.username == "alice");
                s.put_user(&other).unwrap();
                assert_eq!(
                    s.lookup_ha1("alice", "xcap.example.com", MD5)
                        .unwrap()
                        .map(|r| r.0),
                    Some("sip:alice@other.example.com".to_owned())
                );
            }

            // A spelling belongs to one user per realm and algorithm: no silent takeover.
            #[test]
            fn taken_spelling_is_refused_and_nothing_stored() {
                let s = store();
                let shared = "shared.example.com";
                let a = make_credential(ALICE, shared, "pa", vec![Role::User], 1);
                s.put_user(&a).unwrap();
                let b = make_credential("sip:alice@example.org", shared, "pb", vec![], 2);
                assert_eq!(s.put_user(&b), Err(StorageError::PreconditionFailed));
                assert_eq!(s.get_user("sip:alice@example.org").unwrap(), None);
                assert_resolves(&s, ALICE, shared, "pa");
                // The same XUI spelling in another realm is independent.
                let c = make_credential("sip:alice@example.org", REALM, "pc", vec![], 3);
                s.put_user(&c).unwrap();
                assert_resolves(&s, "sip:alice@example.org", REALM, "pc");
            }

            #[test]
            fn delete_removes_user_and_every_index_entry() {
                let s = store();
                s.put_user(&alice("pw")).unwrap();
                let bob = make_credential(BOB, REALM, "pb", vec![Role::User], 1);
                s.put_user(&bob).unwrap();
                assert!(s.delete_user(ALICE).unwrap());
                assert!(!s.delete_user(ALICE).unwrap());
                assert_eq!(s.get_user(ALICE).unwrap(), None);
                assert_unresolved(&s, ALICE, REALM);
                assert_resolves(&s, BOB, REALM, "pb");
                // The spellings are free again.
                let again = make_credential(ALICE, REALM, "pw2", vec![], 5);
                s.put_user(&again).unwrap();
                assert_resolves(&s, ALICE, REALM, "pw2");
            }

            #[test]
            fn list_is_sorted_by_xui_and_complete() {
                let s = store();
                let users: Vec<Credential> = ["sip:carol@x", BOB, ALICE, "tel:+1555"]
                    .iter()
                    .enumerate()
                    .map(|(i, x)| make_credential(x, "r", "pw", vec![Role::User], i as u64))
                    .collect();
                for u in &users {
                    s.put_user(u).unwrap();
                }
                let mut expected = users.clone();
                expected.sort_by(|a, b| a.xui.cmp(&b.xui));
                assert_eq!(s.list_users().unwrap(), expected);
                s.delete_user(BOB).unwrap();
                expected.retain(|c| c.xui != BOB);
                assert_eq!(s.list_users().unwrap(), expected);
            }

            #[test]
            fn invalid_credentials_and_keys_are_rejected() {
                let s = store();
                let mut bad = alice("pw");
                bad.ha1[0].ha1_hex = "zz".into();
                assert!(matches!(s.put_user(&bad), Err(StorageError::InvalidKey(_))));
                assert_eq!(s.get_user(ALICE).unwrap(), None);
                assert!(matches!(s.get_user(""), Err(StorageError::InvalidKey(_))));
                assert!(matches!(
                    s.delete_user("a\0b"),
                    Err(StorageError::InvalidKey(_))
                ));
                // A user without HA1 (no Digest login) is storable.
                let mut none = alice("pw");
                none.ha1.clear();
                s.put_user(&none).unwrap();
                assert_eq!(s.get_user(ALICE).unwrap(), Some(none));
                assert_unresolved(&s, ALICE, REALM);
            }

            // Concurrent creators of users sharing a spelling: exactly one wins (atomic check and
            // write), and concurrent password changes leave a consistent index.
            #[test]
            fn concurrent_claims_and_replaces_stay_consistent() {
                let s = Arc::new(store());
                let shared = "shared.example.com";
                let handles: Vec<_> = (0..8)
                    .map(|t| {
                        let s = Arc::clone(&s);
                        std::thread::spawn(move || {
                            let xui = format!("sip:alice@d{t}.example.com");
                            let c = make_credential(&xui, shared, "pw", vec![], t);
                            s.put_user(&c).is_ok()
                        })
                    })
                    .collect();
                let wins = handles
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .filter(|won| *won)
                    .count();
                assert_eq!(wins, 1);
                let users = s.list_users().unwrap();
                assert_eq!(users.len(), 1, "{users:?}");
                let (owner, _) = s.lookup_ha1("alice", shared, MD5).unwrap().unwrap();
                assert_eq!(owner, users[0].xui);

                let handles: Vec<_> = (0..4)
                    .map(|t| {
                        let s = Arc::clone(&s);
                        std::thread::spawn(move || {
                            for i in 0..20 {
                                let pw = format!("pw{t}-{i}");
                                let xui = if t % 2 == 0 { ALICE } else { BOB };
                                let c = make_credential(xui, REALM, &pw, vec![], 0);
                                s.put_user(&c).unwrap();
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().unwrap();
                }
                for xui in [ALICE, BOB] {
                    let c = s.get_user(xui).unwrap().unwrap();
                    for e in &c.ha1 {
                        assert_eq!(
                            s.lookup_ha1(&e.username, REALM, &e.algorithm).unwrap(),
                            Some((xui.to_owned(), e.ha1_hex.clone()))
                        );
                    }
                }
            }
        }
    };
}

#[cfg(test)]
pub(crate) use credential_store_suite;

#[cfg(test)]
mod backend_suites {
    //! The behaviour suite above run against every backend.
    super::credential_store_suite!(
        memory_credentials_suite,
        super::super::MemoryCredentials::new
    );
    super::credential_store_suite!(sled_credentials_suite, || {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("temporary sled db");
        crate::storage::sled_credentials::SledCredentials::new(&db).expect("sled credentials")
    });
    #[cfg(xcapd_pg)]
    super::credential_store_suite!(pg_credentials_suite, || {
        crate::storage::pg_credentials::PgCredentials::new(crate::storage::pg_test::db())
    });
}
