//! `xcapd user add|del|list|passwd` (issue #3 scope 6): manages the credential store
//! (users, Digest HA1 per realm — RFC 7616 §3.4.2 — and roles) directly in the data directory
//! while the server is stopped. XUIs are normalized as the server does (RFC 4825 §4, IO-01), and
//! HA1s are computed for every username spelling clients send (IO-01a/b/d, IO-04d).
//!
//! The functions open the credential store of the configured backend ([`Place`]): the data
//! directory's database exactly as the server does (`SledStore::open_in_data_dir`; sled locks
//! that directory for one process, so a running server makes them fail with
//! [`CliUserError::InUse`] instead of writing behind its back), or the PostgreSQL database the
//! nodes share (issue #15), where they may run while the nodes serve: every node reads users
//! from the database.

use std::path::{Path, PathBuf};

use crate::identity::xui::{Xui, XuiError};
use crate::storage::credentials::CredentialStore;
use crate::storage::credentials::{make_credential, Credential, Role};
use crate::storage::sled_credentials::SledCredentials;
use crate::storage::{now_ms, StorageError};
use crate::storage::{Blocking, SledOptions, SledStore};

/// A credential store, used synchronously (the CLI has no runtime).
type Creds = Blocking<dyn CredentialStore>;

/// Where the users are: a data directory's sled database or a PostgreSQL database.
#[derive(Debug, Clone, Copy)]
pub enum Place<'a> {
    Data(&'a Path),
    Postgres(&'a str),
}

impl<'a> From<&'a Path> for Place<'a> {
    fn from(dir: &'a Path) -> Place<'a> {
        Place::Data(dir)
    }
}

impl<'a> From<&'a PathBuf> for Place<'a> {
    fn from(dir: &'a PathBuf) -> Place<'a> {
        Place::Data(dir)
    }
}

impl std::fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Data(dir) => write!(f, "{}", dir.join("sled").display()),
            Place::Postgres(_) => f.write_str("the PostgreSQL database"),
        }
    }
}

/// An open credential store and what must outlive it (the sled store, or the runtime the
/// PostgreSQL connections live on).
struct Opened {
    store: Creds,
    _keep: Box<dyn std::any::Any>,
}

/// sled page cache of the short-lived CLI process.
const CACHE_CAPACITY_BYTES: u64 = 16 * 1024 * 1024;

/// The part of sled 0.34.7's error text when another process holds the directory lock
/// (`Config::try_lock`); sled offers no typed error for it.
const SLED_LOCK_MESSAGE: &str = "could not acquire lock";

#[derive(Debug, thiserror::Error)]
pub enum CliUserError {
    #[error("the data directory is in use: stop the server first ({})", .0.display())]
    InUse(PathBuf),
    #[error("cannot open the store in {place}: {message}")]
    Open { place: String, message: String },
    #[error("invalid user identifier {raw:?}: {source}")]
    BadXui { raw: String, source: XuiError },
    #[error("{0} has no domain to use as the realm: give one with --realm")]
    NoRealm(String),
    #[error("invalid realm {0:?}: it must be non-empty, without quotes, backslashes or control characters")]
    BadRealm(String),
    #[error("the password must not be empty")]
    EmptyPassword,
    #[error("user {0} already exists (use `xcapd user passwd` to change the password)")]
    Exists(String),
    #[error("no such user: {0}")]
    NotFound(String),
    #[error("username {username:?} in realm {realm:?} already belongs to {owner}")]
    UsernameTaken {
        username: String,
        realm: String,
        owner: String,
    },
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
}

/// Creates the user `xui` with realm `realm` (default: the XUI's domain) and `roles` (default:
/// `user`). Fails if the user exists.
pub fn user_add<'a>(
    at: impl Into<Place<'a>>,
    xui: &str,
    realm: Option<&str>,
    password: &str,
    roles: &[Role],
) -> Result<String, CliUserError> {
    if password.is_empty() {
        return Err(CliUserError::EmptyPassword);
    }
    let xui = parse_xui(xui)?;
    let realm = match realm {
        Some(r) => check_realm(r)?,
        None => xui
            .domain()
            .ok_or_else(|| CliUserError::NoRealm(xui.to_string()))?
            .to_owned(),
    };
    let roles = if roles.is_empty() {
        vec![Role::User]
    } else {
        roles.to_vec()
    };
    let at = at.into();
    let Opened { store, _keep } = open_db(at, true)?.ok_or_else(|| missing_db(at))?;
    if store.get_user(xui.as_str())?.is_some() {
        return Err(CliUserError::Exists(xui.to_string()));
    }
    let cred = make_credential(xui.as_str(), &realm, password, roles, now_ms());
    store_checked(&store, &cred)?;
    Ok(format!(
        "added {} (realm {}, roles {})",
        cred.xui,
        cred.realm,
        roles_text(&cred.roles)
    ))
}

/// Deletes the user `xui`.
pub fn user_del<'a>(at: impl Into<Place<'a>>, xui: &str) -> Result<String, CliUserError> {
    let xui = parse_xui(xui)?;
    let Some(Opened { store, _keep }) = open_db(at.into(), false)? else {
        return Err(CliUserError::NotFound(xui.to_string()));
    };
    if !store.delete_user(xui.as_str())? {
        return Err(CliUserError::NotFound(xui.to_string()));
    }
    Ok(format!("deleted {xui}"))
}

/// One line per user, sorted by XUI: `xui <TAB> realm <TAB> roles` (comma-separated). No hashes.
pub fn user_list<'a>(at: impl Into<Place<'a>>) -> Result<Vec<String>, CliUserError> {
    let Some(Opened { store, _keep }) = open_db(at.into(), false)? else {
        return Ok(Vec::new());
    };
    Ok(store
        .list_users()?
        .iter()
        .map(|c| format!("{}\t{}\t{}", c.xui, c.realm, roles_text(&c.roles)))
        .collect())
}

/// Replaces the HA1s of the user `xui` with ones over `password`; realm, roles and creation time
/// stay.
pub fn user_passwd<'a>(
    at: impl Into<Place<'a>>,
    xui: &str,
    password: &str,
) -> Result<String, CliUserError> {
    if password.is_empty() {
        return Err(CliUserError::EmptyPassword);
    }
    let xui = parse_xui(xui)?;
    let Some(Opened { store, _keep }) = open_db(at.into(), false)? else {
        return Err(CliUserError::NotFound(xui.to_string()));
    };
    let old = store
        .get_user(xui.as_str())?
        .ok_or_else(|| CliUserError::NotFound(xui.to_string()))?;
    let mut cred = make_credential(
        &old.xui,
        &old.realm,
        password,
        old.roles.clone(),
        old.created_ms,
    );
    // A new password revokes the bearer tokens issued before it (issue #11 item 7).
    cred.tokens_not_before = crate::storage::credentials::revocation_epoch();
    store_checked(&store, &cred)?;
    Ok(format!(
        "password changed for {}; earlier bearer tokens revoked",
        cred.xui
    ))
}

fn parse_xui(raw: &str) -> Result<Xui, CliUserError> {
    Xui::parse(raw, None).map_err(|source| CliUserError::BadXui {
        raw: raw.to_owned(),
        source,
    })
}

/// The realm is sent in `WWW-Authenticate` as a quoted-string (RFC 7616 §3.3): refuse what
/// would need escaping there or cannot be stored.
fn check_realm(realm: &str) -> Result<String, CliUserError> {
    let bad = realm.is_empty()
        || realm
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\');
    if bad {
        return Err(CliUserError::BadRealm(realm.to_owned()));
    }
    Ok(realm.to_owned())
}

/// Stores `cred`, first naming the owner of any username spelling another user holds (the store
/// itself only answers `PreconditionFailed`).
fn store_checked(store: &Creds, cred: &Credential) -> Result<(), CliUserError> {
    for e in &cred.ha1 {
        if let Some((owner, _)) = store.lookup_ha1(&e.username, &cred.realm, &e.algorithm)? {
            if owner != cred.xui {
                return Err(CliUserError::UsernameTaken {
                    username: e.username.clone(),
                    realm: cred.realm.clone(),
                    owner,
                });
            }
        }
    }
    store.put_user(cred)?;
    Ok(())
}

/// The credentials at `at`. A data directory's are in the document database opened as `xcapd
/// serve` opens it (journal replayed, format checked); without `create`, one that was never
/// created is `None` (and nothing is created on disk). A PostgreSQL database is migrated to
/// this binary's schema as a node would.
fn open_db(at: Place<'_>, create: bool) -> Result<Option<Opened>, CliUserError> {
    let data_dir = match at {
        Place::Data(dir) => dir,
        Place::Postgres(url) => return open_postgres(url).map(Some),
    };
    if !create && !SledStore::exists_in_data_dir(data_dir) {
        return Ok(None);
    }
    let opts = SledOptions {
        cache_capacity_bytes: CACHE_CAPACITY_BYTES,
        ..SledOptions::default()
    };
    match SledStore::open_in_data_dir(data_dir, opts) {
        Ok(db) => {
            let store: Creds = Blocking(std::sync::Arc::new(SledCredentials::new(db.db())?));
            Ok(Some(Opened {
                store,
                _keep: Box::new(db),
            }))
        }
        Err(StorageError::Backend(e)) if e.contains(SLED_LOCK_MESSAGE) => {
            Err(CliUserError::InUse(data_dir.to_owned()))
        }
        Err(e) => Err(CliUserError::Open {
            place: at.to_string(),
            message: e.to_string(),
        }),
    }
}

fn open_postgres(url: &str) -> Result<Opened, CliUserError> {
    let failed = |message: String| CliUserError::Open {
        place: Place::Postgres(url).to_string(),
        message,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let db = runtime
        .block_on(crate::storage::pg_db::PgDb::open(url))
        .map_err(|e| failed(e.to_string()))?;
    let store: Creds = Blocking(std::sync::Arc::new(
        crate::storage::pg_credentials::PgCredentials::new(db),
    ));
    Ok(Opened {
        store,
        _keep: Box::new(runtime),
    })
}

fn missing_db(at: Place<'_>) -> CliUserError {
    CliUserError::Open {
        place: at.to_string(),
        message: "store not created".into(),
    }
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::credentials::{compute_ha1, MD5, SHA_256};
    use crate::storage::{SledOptions, SledStore};

    const ALICE: &str = "sip:alice@example.com";

    fn store_at(dir: &Path) -> (sled::Db, Blocking<SledCredentials>) {
        // sled releases the previous opener's file lock from a background thread: wait for it.
        let config = sled::Config::new().path(dir.join("sled"));
        let db = crate::storage::sled_common::open_waiting(&config).unwrap();
        let creds = crate::storage::Blocking::new(SledCredentials::new(&db).unwrap());
        (db, creds)
    }

    // IO-01a/b/d, IO-04d: a user added under any XUI spelling authenticates with every Digest
    // username spelling, in the default realm (the XUI's domain), with both algorithms.
    #[test]
    fn add_normalizes_xui_defaults_realm_and_role_and_hashes_every_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let msg = user_add(dir.path(), "alice@Example.COM", None, "pw 1", &[]).unwrap();
        assert_eq!(
            msg,
            "added sip:alice@example.com (realm example.com, roles user)"
        );
        let (_db, creds) = store_at(dir.path());
        let c = creds.get_user(ALICE).unwrap().unwrap();
        assert_eq!(
            (c.realm.as_str(), c.roles.as_slice()),
            ("example.com", &[Role::User][..])
        );
        assert!(c.created_ms > 0);
        for username in [ALICE, "alice@example.com", "alice"] {
            for alg in [MD5, SHA_256] {
                let want = compute_ha1(alg, username, "example.com", "pw 1").unwrap();
                assert_eq!(
                    creds.lookup_ha1(username, "example.com", alg).unwrap(),
                    Some((ALICE.to_owned(), want))
                );
            }
        }
    }

    #[test]
    fn add_with_realm_and_roles_then_list_shows_no_hashes() {
        let dir = tempfile::tempdir().unwrap();
        user_add(
            dir.path(),
            "sip:bob@example.com",
            Some("XCAP Realm"),
            "pb",
            &[Role::Admin, Role::Service],
        )
        .unwrap();
        user_add(dir.path(), "tel:+1-555", Some("example.com"), "pt", &[]).unwrap();
        user_add(dir.path(), ALICE, None, "pa", &[Role::User]).unwrap();
        let lines = user_list(dir.path()).unwrap();
        assert_eq!(
            lines,
            vec![
                "sip:alice@example.com\texample.com\tuser",
                "sip:bob@example.com\tXCAP Realm\tadmin,service",
                "tel:+1555\texample.com\tuser",
            ]
        );
        let (_db, creds) = store_at(dir.path());
        let all = lines.join("\n");
        for c in creds.list_users().unwrap() {
            for e in &c.ha1 {
                assert!(!all.contains(&e.ha1_hex));
            }
        }
    }

    #[test]
    fn add_rejections() {
        let dir = tempfile::tempdir().unwrap();
        user_add(dir.path(), ALICE, None, "pw", &[]).unwrap();
        assert!(matches!(
            user_add(dir.path(), "sip:alice@EXAMPLE.com", None, "pw2", &[]),
            Err(CliUserError::Exists(x)) if x == ALICE
        ));
        assert!(matches!(
            user_add(dir.path(), "bob", None, "pw", &[]),
            Err(CliUserError::BadXui {
                source: XuiError::MissingDomain,
                ..
            })
        ));
        assert!(matches!(
            user_add(dir.path(), "tel:+1555", None, "pw", &[]),
            Err(CliUserError::NoRealm(x)) if x == "tel:+1555"
        ));
        for realm in ["", "a\"b", "a\\b", "a\nb", "a\0b"] {
            assert!(
                matches!(
                    user_add(dir.path(), "sip:bob@example.com", Some(realm), "pw", &[]),
                    Err(CliUserError::BadRealm(_))
                ),
                "{realm:?}"
            );
        }
        assert!(matches!(
            user_add(dir.path(), "sip:bob@example.com", None, "", &[]),
            Err(CliUserError::EmptyPassword)
        ));
        // A bare username already held in a shared realm names its owner; nothing is stored.
        user_add(dir.path(), "sip:carol@a.example", Some("shared"), "pw", &[]).unwrap();
        let err =
            user_add(dir.path(), "sip:carol@b.example", Some("shared"), "pw", &[]).unwrap_err();
        assert!(
            matches!(&err, CliUserError::UsernameTaken { username, owner, .. }
                if username == "carol" && owner == "sip:carol@a.example"),
            "{err:?}"
        );
        assert_eq!(user_list(dir.path()).unwrap().len(), 2);
    }

    // RFC 7616 §3.4.2: a new password replaces every HA1; realm, roles and created_ms stay.
    #[test]
    fn passwd_rehashes_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        user_add(dir.path(), ALICE, Some("r"), "old", &[Role::Admin]).unwrap();
        let before = store_at(dir.path()).1.get_user(ALICE).unwrap().unwrap();
        assert_eq!(
            user_passwd(dir.path(), "alice@example.com", "new").unwrap(),
            "password changed for sip:alice@example.com; earlier bearer tokens revoked"
        );
        let (_db, creds) = store_at(dir.path());
        let after = creds.get_user(ALICE).unwrap().unwrap();
        assert_eq!(before.tokens_not_before, 0);
        assert!(
            after.tokens_not_before > 1_700_000_000,
            "issue #11 item 7: tokens revoked"
        );
        assert_eq!(
            (&after.realm, &after.roles, after.created_ms),
            (&before.realm, &before.roles, before.created_ms)
        );
        assert_eq!(after.ha1.len(), before.ha1.len());
        for e in &after.ha1 {
            assert_eq!(
                Some(e.ha1_hex.clone()),
                compute_ha1(&e.algorithm, &e.username, "r", "new")
            );
            assert_eq!(
                creds.lookup_ha1(&e.username, "r", &e.algorithm).unwrap(),
                Some((ALICE.to_owned(), e.ha1_hex.clone()))
            );
        }
        drop((_db, creds));
        assert!(matches!(
            user_passwd(dir.path(), ALICE, ""),
            Err(CliUserError::EmptyPassword)
        ));
        assert!(matches!(
            user_passwd(dir.path(), "sip:nobody@example.com", "x"),
            Err(CliUserError::NotFound(_))
        ));
    }

    #[test]
    fn del_removes_user_and_lookups() {
        let dir = tempfile::tempdir().unwrap();
        user_add(dir.path(), ALICE, None, "pw", &[]).unwrap();
        user_add(dir.path(), "sip:bob@example.com", None, "pw", &[]).unwrap();
        assert_eq!(
            user_del(dir.path(), "sip%3Aalice%40example.com").unwrap(),
            "deleted sip:alice@example.com"
        );
        assert!(matches!(
            user_del(dir.path(), ALICE),
            Err(CliUserError::NotFound(x)) if x == ALICE
        ));
        assert_eq!(
            user_list(dir.path()).unwrap(),
            vec!["sip:bob@example.com\texample.com\tuser"]
        );
        let (_db, creds) = store_at(dir.path());
        assert_eq!(creds.lookup_ha1("alice", "example.com", MD5).unwrap(), None);
    }

    /// Reading commands on a data directory that never held a store create nothing.
    #[test]
    fn fresh_data_dir_is_empty_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert_eq!(user_list(&data).unwrap(), Vec::<String>::new());
        assert!(matches!(
            user_del(&data, ALICE),
            Err(CliUserError::NotFound(_))
        ));
        assert!(matches!(
            user_passwd(&data, ALICE, "pw"),
            Err(CliUserError::NotFound(_))
        ));
        assert!(!data.exists());
        user_add(&data, ALICE, None, "pw", &[]).unwrap();
        assert!(data.join("sled").is_dir());
    }

    /// A running server holds the sled lock: every command refuses with a clear message.
    #[test]
    fn locked_data_dir_is_reported_as_in_use() {
        let dir = tempfile::tempdir().unwrap();
        user_add(dir.path(), ALICE, None, "pw", &[]).unwrap();
        let server = SledStore::open(&dir.path().join("sled"), SledOptions::default()).unwrap();
        let results = [
            user_add(dir.path(), "sip:bob@example.com", None, "pw", &[]).map(drop),
            user_del(dir.path(), ALICE).map(drop),
            user_list(dir.path()).map(drop),
            user_passwd(dir.path(), ALICE, "x").map(drop),
        ];
        for r in results {
            let err = r.unwrap_err();
            assert!(matches!(err, CliUserError::InUse(_)), "{err:?}");
            assert!(err
                .to_string()
                .starts_with("the data directory is in use: stop the server first"));
        }
        // What the CLI wrote is visible to the server through the shared Db.
        let creds = crate::storage::Blocking::new(SledCredentials::new(server.db()).unwrap());
        assert!(creds.get_user(ALICE).unwrap().is_some());
        drop(creds);
        drop(server);
        assert_eq!(user_list(dir.path()).unwrap().len(), 1);
    }
}
