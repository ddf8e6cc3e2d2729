//! sled 0.34.7 [`CredentialStore`] backend (design §4): users with per-realm HA1 values
//! (RFC 7616 §3.4.2) and roles, in trees of a `sled::Db` that may be shared with the document
//! store, so one process holds one lock and one log.
//!
//! Layout:
//! - `credentials`: `xui` → user record (version, created_ms, realm, roles, HA1 entries);
//! - `credential_usernames`: `username \0 realm \0 algorithm` → (xui, HA1), the Digest lookup
//!   index. It carries the HA1 itself so that a lookup is one read of one key, never a torn read
//!   across two trees while a password changes. NUL is rejected in every component
//!   (`validate_credential`), so the key split is unambiguous.
//!
//! Each put/delete is one sled transaction over both trees (the old user's index entries are
//! removed and the new ones written together), followed by a `flush` before returning.

use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::credentials::{
    lookup_key, validate_credential, Credential, CredentialStore, Ha1Entry, Role,
};
use super::sled_common::{
    abort, exclusively, flush_gated_async, from_sled, from_tx, utf8, Reader, TxResult,
};
use super::{StorageError, StoreFuture};
use std::future::ready;

const SEP: u8 = 0;
const RECORD_VERSION: u8 = 1;
const USERS_TREE: &str = "credentials";
const INDEX_TREE: &str = "credential_usernames";

/// Credentials in an embedded sled database.
pub struct SledCredentials {
    db: sled::Db,
    users: sled::Tree,
    usernames: sled::Tree,
}

impl std::fmt::Debug for SledCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledCredentials").finish_non_exhaustive()
    }
}

impl SledCredentials {
    /// Opens (creating if needed) the credential trees of `db`.
    pub fn new(db: &sled::Db) -> Result<Self, StorageError> {
        Ok(SledCredentials {
            db: db.clone(),
            users: db.open_tree(USERS_TREE).map_err(from_sled)?,
            usernames: db.open_tree(INDEX_TREE).map_err(from_sled)?,
        })
    }

    async fn flush(&self) -> Result<(), StorageError> {
        flush_gated_async(&self.db).await
    }
}

fn index_key(username: &str, realm: &str, algorithm: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(username.len() + realm.len() + algorithm.len() + 2);
    out.extend_from_slice(username.as_bytes());
    out.push(SEP);
    out.extend_from_slice(realm.as_bytes());
    out.push(SEP);
    out.extend_from_slice(algorithm.as_bytes());
    out
}

/// Record checks specific to credential records.
trait CredentialReader {
    fn version(&mut self, what: &str) -> Result<(), StorageError>;
    fn end(&self) -> Result<(), StorageError>;
}

impl CredentialReader for Reader<'_> {
    fn version(&mut self, what: &str) -> Result<(), StorageError> {
        match self.u8()? {
            RECORD_VERSION => Ok(()),
            v => Err(StorageError::Corrupt(format!(
                "unknown {what} record version {v}"
            ))),
        }
    }
    fn end(&self) -> Result<(), StorageError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(StorageError::Corrupt(
                "trailing bytes in credential record".into(),
            ))
        }
    }
}

fn push_u32(out: &mut Vec<u8>, n: usize, what: &str) -> Result<(), StorageError> {
    let n = u32::try_from(n)
        .map_err(|_| StorageError::InvalidKey(format!("{what} too large for a record")))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn push_string(out: &mut Vec<u8>, s: &str) -> Result<(), StorageError> {
    push_u32(out, s.len(), "string")?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// User record: version, created_ms, realm, role count + names, entry count + (username,
/// algorithm, HA1) — all strings u32-length-prefixed. The XUI is the key, not repeated.
pub(super) fn encode_user(cred: &Credential) -> Result<Vec<u8>, StorageError> {
    let mut out = vec![RECORD_VERSION];
    out.extend_from_slice(&cred.created_ms.to_be_bytes());
    push_string(&mut out, &cred.realm)?;
    push_u32(&mut out, cred.roles.len(), "role list")?;
    for role in &cred.roles {
        push_string(&mut out, role.as_str())?;
    }
    push_u32(&mut out, cred.ha1.len(), "HA1 list")?;
    for e in &cred.ha1 {
        push_string(&mut out, &e.username)?;
        push_string(&mut out, &e.algorithm)?;
        push_string(&mut out, &e.ha1_hex)?;
    }
    // Optional trailer, written only when set, so records that never revoked a token stay
    // readable by binaries that predate it.
    if cred.tokens_not_before != 0 {
        out.extend_from_slice(&cred.tokens_not_before.to_be_bytes());
    }
    Ok(out)
}

/// Decodes a user record and re-checks it against the rules it was written under, so a damaged
/// record is reported instead of served.
pub(super) fn decode_user(xui: &[u8], bytes: &[u8]) -> Result<Credential, StorageError> {
    let mut r = Reader(bytes);
    r.version("credential")?;
    let created_ms = r.u64()?;
    let realm = r.string("realm")?;
    // Counts are bounded by the record length (each item takes at least 4 bytes), so a corrupt
    // count cannot make us reserve huge vectors.
    let roles_n = r.u32()? as usize;
    let mut roles = Vec::with_capacity(roles_n.min(r.0.len() / 4));
    for _ in 0..roles_n {
        let name = r.string("role")?;
        let role = name
            .parse::<Role>()
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        roles.push(role);
    }
    let ha1_n = r.u32()? as usize;
    let mut ha1 = Vec::with_capacity(ha1_n.min(r.0.len() / 12));
    for _ in 0..ha1_n {
        ha1.push(Ha1Entry {
            username: r.string("username")?,
            algorithm: r.string("algorithm")?,
            ha1_hex: r.string("HA1")?,
        });
    }
    let tokens_not_before = if r.0.is_empty() { 0 } else { r.u64()? };
    r.end()?;
    let cred = Credential {
        xui: utf8(xui, "xui")?,
        realm,
        ha1,
        roles,
        tokens_not_before,
        created_ms,
    };
    validate_credential(&cred).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    Ok(cred)
}

/// Index record: version, xui, HA1.
fn encode_index(xui: &str, ha1_hex: &str) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(1 + 8 + xui.len() + ha1_hex.len());
    out.push(RECORD_VERSION);
    push_string(&mut out, xui)?;
    push_string(&mut out, ha1_hex)?;
    Ok(out)
}

fn decode_index(bytes: &[u8]) -> Result<(String, String), StorageError> {
    let mut r = Reader(bytes);
    r.version("credential index")?;
    let xui = r.string("xui")?;
    let ha1 = r.string("HA1")?;
    r.end()?;
    Ok((xui, ha1))
}

/// An encoded (key, value) pair of `credential_usernames`.
type IndexEntry = (Vec<u8>, Vec<u8>);

/// The index entries of `cred`.
fn index_entries(cred: &Credential) -> Result<Vec<IndexEntry>, StorageError> {
    cred.ha1
        .iter()
        .map(|e| {
            Ok((
                index_key(&e.username, &cred.realm, &e.algorithm),
                encode_index(&cred.xui, &e.ha1_hex)?,
            ))
        })
        .collect()
}

/// Inside a transaction: the stored user `xui`, if any.
fn current_user(users: &TransactionalTree, xui: &str) -> TxResult<Option<Credential>> {
    match users.get(xui.as_bytes())? {
        None => Ok(None),
        Some(v) => match decode_user(xui.as_bytes(), &v) {
            Ok(c) => Ok(Some(c)),
            Err(e) => abort(e),
        },
    }
}

/// Inside a transaction: removes the index entries of `old` that still point at its XUI.
fn remove_index_entries(usernames: &TransactionalTree, old: &Credential) -> TxResult<()> {
    for e in &old.ha1 {
        let key = index_key(&e.username, &old.realm, &e.algorithm);
        if let Some(v) = usernames.get(key.as_slice())? {
            match decode_index(&v) {
                Ok((owner, _)) if owner == old.xui => {
                    usernames.remove(key.as_slice())?;
                }
                Ok(_) => {}
                Err(e) => return abort(e),
            }
        }
    }
    Ok(())
}

fn validate_xui(xui: &str) -> Result<(), StorageError> {
    if xui.is_empty() {
        return Err(StorageError::InvalidKey("empty XUI".into()));
    }
    if xui.contains('\0') {
        return Err(StorageError::InvalidKey("NUL in XUI".into()));
    }
    Ok(())
}

impl SledCredentials {
    fn get_user_now(&self, xui: &str) -> Result<Option<Credential>, StorageError> {
        validate_xui(xui)?;
        match self.users.get(xui.as_bytes()).map_err(from_sled)? {
            None => Ok(None),
            Some(v) => decode_user(xui.as_bytes(), &v).map(Some),
        }
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
        self.usernames
            .get(index_key(username, realm, algorithm))
            .map_err(from_sled)?
            .map(|v| decode_index(&v))
            .transpose()
    }

    fn put_user_now(&self, cred: &Credential) -> Result<(), StorageError> {
        validate_credential(cred)?;
        let record = encode_user(cred)?;
        let entries = index_entries(cred)?;
        exclusively(|| {
            (&self.users, &self.usernames).transaction(|(users, usernames)| {
                for (key, _) in &entries {
                    if let Some(v) = usernames.get(key.as_slice())? {
                        match decode_index(&v) {
                            Ok((owner, _)) if owner != cred.xui => {
                                return abort(StorageError::PreconditionFailed)
                            }
                            Ok(_) => {}
                            Err(e) => return abort(e),
                        }
                    }
                }
                if let Some(old) = current_user(users, &cred.xui)? {
                    remove_index_entries(usernames, &old)?;
                }
                for (key, value) in &entries {
                    usernames.insert(key.as_slice(), value.as_slice())?;
                }
                users.insert(cred.xui.as_bytes(), record.as_slice())?;
                Ok(())
            })
        })
        .map_err(from_tx)
    }

    fn delete_user_now(&self, xui: &str) -> Result<bool, StorageError> {
        validate_xui(xui)?;
        let existed = exclusively(|| {
            (&self.users, &self.usernames).transaction(|(users, usernames)| {
                let Some(old) = current_user(users, xui)? else {
                    return Ok(false);
                };
                remove_index_entries(usernames, &old)?;
                users.remove(xui.as_bytes())?;
                Ok(true)
            })
        })
        .map_err(from_tx)?;
        Ok(existed)
    }

    fn list_users_now(&self) -> Result<Vec<Credential>, StorageError> {
        self.users
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(from_sled)?;
                decode_user(&k, &v)
            })
            .collect()
    }
}

impl CredentialStore for SledCredentials {
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

    /// Durable when it resolves (sled flushed).
    fn put_user<'a>(&'a self, cred: &'a Credential) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.put_user_now(cred)?;
            self.flush().await
        })
    }

    fn delete_user<'a>(&'a self, xui: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let existed = self.delete_user_now(xui)?;
            if existed {
                self.flush().await?;
            }
            Ok(existed)
        })
    }

    fn list_users(&self) -> StoreFuture<'_, Vec<Credential>> {
        Box::pin(ready(self.list_users_now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::credentials::{make_credential, MD5, SHA_256};
    use crate::storage::{Blocking, DocKey, Expect, SledOptions, SledStore, TreeKey};
    use proptest::prelude::*;

    const ALICE: &str = "sip:alice@example.com";
    const REALM: &str = "example.com";

    fn open(path: &std::path::Path) -> (sled::Db, Blocking<SledCredentials>) {
        // sled releases its file lock from a background thread after the last handle drops;
        // a reopen right after a drop may have to wait for it on a loaded machine.
        let mut attempt = 0;
        let db = loop {
            match sled::Config::new().path(path).open() {
                Ok(db) => break db,
                Err(e) if attempt < 100 => {
                    attempt += 1;
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("reopen: {e}"),
            }
        };
        let creds = Blocking::new(SledCredentials::new(&db).unwrap());
        (db, creds)
    }

    /// Every index entry as (username, realm, algorithm, xui, ha1), read from the tree itself.
    fn index_dump(c: &Blocking<SledCredentials>) -> Vec<(String, String, String, String, String)> {
        c.0.usernames
            .iter()
            .map(|item| {
                let (k, v) = item.unwrap();
                let mut parts = k.split(|b| *b == SEP);
                let mut next = || String::from_utf8(parts.next().unwrap().to_vec()).unwrap();
                let (u, r, a) = (next(), next(), next());
                let (xui, ha1) = decode_index(&v).unwrap();
                (u, r, a, xui, ha1)
            })
            .collect()
    }

    /// The index holds exactly one entry per HA1 entry of every stored user, and nothing else.
    fn assert_index_matches_users(c: &Blocking<SledCredentials>) {
        let mut expected: Vec<_> = c
            .list_users()
            .unwrap()
            .into_iter()
            .flat_map(|u| {
                u.ha1
                    .iter()
                    .map(|e| {
                        (
                            e.username.clone(),
                            u.realm.clone(),
                            e.algorithm.clone(),
                            u.xui.clone(),
                            e.ha1_hex.clone(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        expected.sort();
        assert_eq!(index_dump(c), expected);
    }

    /// Durability across reopen, also after replace and delete.
    #[test]
    fn reopen_keeps_users_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let bob = make_credential("sip:bob@example.com", REALM, "pb", vec![Role::Admin], 2);
        let alice2 = make_credential(ALICE, "xcap.example.com", "new", vec![Role::User], 3);
        {
            let (_db, c) = open(dir.path());
            c.put_user(&make_credential(ALICE, REALM, "old", vec![Role::User], 1))
                .unwrap();
            c.put_user(&bob).unwrap();
            c.put_user(&make_credential("tel:+1555", REALM, "pt", vec![], 4))
                .unwrap();
            c.put_user(&alice2).unwrap();
            assert!(c.delete_user("tel:+1555").unwrap());
        }
        let (_db, c) = open(dir.path());
        assert_eq!(c.list_users().unwrap(), vec![alice2.clone(), bob.clone()]);
        assert_eq!(
            c.lookup_ha1("alice", "xcap.example.com", SHA_256).unwrap(),
            Some((ALICE.to_owned(), alice2.ha1[5].ha1_hex.clone()))
        );
        assert_eq!(c.lookup_ha1("alice", REALM, MD5).unwrap(), None);
        assert_eq!(c.lookup_ha1("+1555", REALM, MD5).unwrap(), None);
        assert_index_matches_users(&c);
    }

    // Index consistency after replace (old spellings and realm gone) and delete, checked on the
    // raw index tree rather than through lookups.
    #[test]
    fn index_tree_matches_records_after_replace_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, c) = open(dir.path());
        c.put_user(&make_credential(ALICE, REALM, "a", vec![], 0))
            .unwrap();
        c.put_user(&make_credential(
            "sip:bob@example.com",
            REALM,
            "b",
            vec![],
            0,
        ))
        .unwrap();
        assert_eq!(index_dump(&c).len(), 12);
        assert_index_matches_users(&c);
        let mut fewer = make_credential(ALICE, "r2", "a2", vec![], 0);
        fewer.ha1.retain(|e| e.username != "alice");
        c.put_user(&fewer).unwrap();
        assert_eq!(index_dump(&c).len(), 10);
        assert_index_matches_users(&c);
        assert!(c.delete_user(ALICE).unwrap());
        assert_eq!(index_dump(&c).len(), 6);
        assert_index_matches_users(&c);
        let refused = make_credential("sip:bob@example.net", REALM, "x", vec![], 0);
        assert_eq!(c.put_user(&refused), Err(StorageError::PreconditionFailed));
        assert_index_matches_users(&c);
    }

    /// One sled Db holds documents and credentials side by side.
    #[test]
    fn shares_the_document_store_db() {
        let dir = tempfile::tempdir().unwrap();
        let key = DocKey::new("resource-lists", TreeKey::User(ALICE.into()), "index");
        {
            let docs = Blocking::new(SledStore::open(dir.path(), SledOptions::default()).unwrap());
            let creds = Blocking::new(SledCredentials::new(docs.db()).unwrap());
            docs.put(&key, &Expect::Absent, "<a/>", "e1", 1).unwrap();
            creds
                .put_user(&make_credential(ALICE, REALM, "pw", vec![Role::User], 1))
                .unwrap();
        }
        let docs = Blocking::new(SledStore::open(dir.path(), SledOptions::default()).unwrap());
        let creds = Blocking::new(SledCredentials::new(docs.db()).unwrap());
        assert_eq!(docs.get(&key).unwrap().unwrap().etag, "e1");
        assert_eq!(docs.list_user(ALICE).unwrap().len(), 1);
        assert!(creds.get_user(ALICE).unwrap().is_some());
    }

    /// Issue #11 item 7: the token epoch round-trips; records without it (older binaries)
    /// read as 0, and a record that never revoked a token is written without it.
    #[test]
    fn token_epoch_round_trips_and_is_optional() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let c = Blocking::new(SledCredentials::new(&db).unwrap());
        let plain = make_credential(ALICE, REALM, "pw", vec![Role::User], 9);
        let plain_record = encode_user(&plain).unwrap();
        let revoked = Credential {
            tokens_not_before: 1_700_000_123,
            ..plain.clone()
        };
        assert_eq!(encode_user(&revoked).unwrap().len(), plain_record.len() + 8);
        c.put_user(&revoked).unwrap();
        assert_eq!(
            c.get_user(ALICE).unwrap().unwrap().tokens_not_before,
            1_700_000_123
        );
        c.put_user(&plain).unwrap();
        assert_eq!(c.get_user(ALICE).unwrap().unwrap().tokens_not_before, 0);
        let mut torn = plain_record.clone();
        torn.extend_from_slice(&[1, 2, 3]);
        assert!(decode_user(ALICE.as_bytes(), &torn).is_err());
    }

    #[test]
    fn damaged_records_are_corrupt_errors() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let c = Blocking::new(SledCredentials::new(&db).unwrap());
        let good = make_credential(ALICE, REALM, "pw", vec![Role::User], 9);
        c.put_user(&good).unwrap();
        let record = encode_user(&good).unwrap();
        let mut bad_version = record.clone();
        bad_version[0] = 2;
        let mut bad_role = encode_user(&Credential {
            roles: vec![],
            ..good.clone()
        })
        .unwrap();
        // Splice an unknown role name in: role count 1, "root".
        let roles_at = 1 + 8 + 4 + REALM.len();
        bad_role.splice(
            roles_at..roles_at + 4,
            [0, 0, 0, 1, 0, 0, 0, 4, b'r', b'o', b'o', b't'],
        );
        let mut trailing = record.clone();
        trailing.push(0);
        let mut bad_hex = good.clone();
        bad_hex.ha1[0].ha1_hex = "x".repeat(32);
        for raw in [
            record[..record.len() - 1].to_vec(),
            bad_version,
            bad_role,
            trailing,
            encode_user(&bad_hex).unwrap(),
            Vec::new(),
        ] {
            c.0.users.insert(ALICE, raw.clone()).unwrap();
            assert!(
                matches!(c.get_user(ALICE), Err(StorageError::Corrupt(_))),
                "{raw:?}"
            );
            assert!(matches!(c.list_users(), Err(StorageError::Corrupt(_))));
            assert!(matches!(
                c.delete_user(ALICE),
                Err(StorageError::Corrupt(_))
            ));
        }
        c.0.usernames
            .insert(index_key("alice", REALM, MD5), &[1, 0, 0][..])
            .unwrap();
        assert!(matches!(
            c.lookup_ha1("alice", REALM, MD5),
            Err(StorageError::Corrupt(_))
        ));
    }

    fn credential() -> impl Strategy<Value = Credential> {
        (
            "[a-z]{1,8}",
            "\\PC{1,12}",
            "\\PC{1,8}",
            proptest::collection::vec(0usize..3, 0..4),
            any::<u64>(),
        )
            .prop_map(|(user, realm, password, roles, created)| {
                let roles = roles
                    .into_iter()
                    .map(|i| [Role::User, Role::Admin, Role::Service][i])
                    .collect();
                make_credential(
                    &format!("sip:{user}@example.com"),
                    &realm,
                    &password,
                    roles,
                    created,
                )
            })
    }

    proptest! {
        #[test]
        fn user_records_round_trip_and_any_truncation_is_corrupt(c in credential()) {
            let rec = encode_user(&c).unwrap();
            prop_assert_eq!(decode_user(c.xui.as_bytes(), &rec), Ok(c.clone()));
            for cut in 0..rec.len() {
                prop_assert!(matches!(
                    decode_user(c.xui.as_bytes(), &rec[..cut]),
                    Err(StorageError::Corrupt(_))
                ));
            }
            let idx = encode_index(&c.xui, "00ff").unwrap();
            prop_assert_eq!(decode_index(&idx), Ok((c.xui.clone(), "00ff".to_owned())));
            prop_assert!(decode_index(&idx[..idx.len() - 1]).is_err());
        }
    }
}
