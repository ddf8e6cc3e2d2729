//! The databases of the incumbents, read for `xcapd import openxcap` (issue #15 scope 5):
//! OpenXCAP's storage, the OpenSIPS-compatible `xcap` table (`username, domain, doc,
//! doc_type, etag, doc_uri`), and the SIP server's `subscriber` table (Digest HA1s), in a
//! SQLite file or a PostgreSQL database. Documents are read in pages by `id`, so a database
//! of millions of documents is never held in memory at once.

use crate::identity::xui::Xui;
use crate::storage::credentials::{make_credential, validate_credential, Credential, Ha1Entry};
use crate::storage::credentials::{Role, MD5, SHA_256};

/// OpenXCAP's `doc_type` numbers (one bit per application usage) and the AUIDs they stand
/// for. Usages xcapd does not serve (e.g. 128, OpenXCAP's dialog-rules) are refused.
pub const DOC_TYPES: [(i64, &str); 6] = [
    (1 << 1, "pres-rules"),
    (1 << 2, "resource-lists"),
    (1 << 3, "rls-services"),
    (1 << 4, "pidf-manipulation"),
    (1 << 5, "org.openmobilealliance.pres-rules"),
    (1 << 6, "org.openmobilealliance.pres-content"),
];

/// The AUID of an OpenXCAP `doc_type`.
pub fn auid_of(doc_type: i64) -> Option<&'static str> {
    DOC_TYPES
        .iter()
        .find(|(n, _)| *n == doc_type)
        .map(|(_, auid)| *auid)
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the SQLite database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot read the PostgreSQL database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the source database has no `{0}` table")]
    NoTable(&'static str),
}

/// One row of the `xcap` table.
#[derive(Debug, Clone)]
pub struct XcapRow {
    pub id: i64,
    pub username: String,
    pub domain: String,
    pub doc: Vec<u8>,
    pub doc_type: i64,
    pub doc_uri: String,
}

impl XcapRow {
    /// The owner's XUI, `sip:username@domain` as xcapd spells it.
    pub fn xui(&self) -> Result<String, String> {
        xui_of(&self.username, &self.domain)
    }
}

/// One row of the `subscriber` table (the columns it has of these).
#[derive(Debug, Clone, Default)]
pub struct SubscriberRow {
    pub username: String,
    pub domain: String,
    pub password: Option<String>,
    /// MD5(username:domain:password).
    pub ha1: Option<String>,
    /// MD5(username@domain:domain:password).
    pub ha1b: Option<String>,
    /// SHA-256(username:domain:password), in newer OpenSIPS.
    pub ha1_sha256: Option<String>,
}

fn xui_of(username: &str, domain: &str) -> Result<String, String> {
    Xui::parse(&format!("sip:{username}@{domain}"), None)
        .map(|x| x.to_string())
        .map_err(|e| format!("not a user identifier: {e}"))
}

impl SubscriberRow {
    /// The credential of this subscriber in realm `domain`, role `user`: from the password
    /// when the table keeps it (every spelling and algorithm), else from its hashes (the
    /// spellings they were computed for).
    pub fn credential(&self, now_ms: u64) -> Result<Credential, String> {
        let xui = xui_of(&self.username, &self.domain)?;
        if let Some(password) = self.password.as_deref().filter(|p| !p.is_empty()) {
            return Ok(make_credential(
                &xui,
                &self.domain,
                password,
                vec![Role::User],
                now_ms,
            ));
        }
        let address = format!("{}@{}", self.username, self.domain);
        let mut ha1 = Vec::new();
        for (hash, username, algorithm) in [
            (&self.ha1, &self.username, MD5),
            (&self.ha1b, &address, MD5),
            (&self.ha1_sha256, &self.username, SHA_256),
        ] {
            if let Some(hex) = hash.as_deref().filter(|h| !h.is_empty()) {
                ha1.push(Ha1Entry {
                    username: username.clone(),
                    algorithm: algorithm.to_string(),
                    ha1_hex: hex.to_ascii_lowercase(),
                });
            }
        }
        if ha1.is_empty() {
            return Err("neither a password nor an HA1".into());
        }
        let cred = Credential {
            xui,
            realm: self.domain.clone(),
            ha1,
            roles: vec![Role::User],
            tokens_not_before: 0,
            created_ms: now_ms,
        };
        validate_credential(&cred).map_err(|e| e.to_string())?;
        Ok(cred)
    }
}

/// An open source database.
pub enum Source {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

/// A page of documents, in each dialect (PostgreSQL: the columns may be integer or text of any
/// width, so they are cast).
const DOCUMENTS_SQLITE: &str = "SELECT id, username, domain, doc, doc_type, doc_uri FROM xcap \
                                WHERE id > ?1 ORDER BY id LIMIT ?2";
const DOCUMENTS_PG: &str = "SELECT id::bigint, username::text, domain::text, doc, \
                            doc_type::bigint, doc_uri::text FROM xcap \
                            WHERE id::bigint > $1::bigint ORDER BY id LIMIT $2::bigint";

impl Source {
    /// A SQLite file, opened read-only.
    pub fn sqlite(path: &std::path::Path) -> Result<Source, ImportError> {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        Ok(Source::Sqlite(rusqlite::Connection::open_with_flags(
            path, flags,
        )?))
    }

    /// A PostgreSQL database (its connection driven on the current runtime).
    pub async fn postgres(url: &str) -> Result<Source, ImportError> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(Source::Postgres(client))
    }

    /// The column names of `table` (lowercase); `NoTable` when there is none.
    async fn columns(&self, table: &'static str) -> Result<Vec<String>, ImportError> {
        let sql = format!("SELECT * FROM {table} LIMIT 0");
        let names: Vec<String> = match self {
            Source::Sqlite(c) => c
                .prepare(&sql)
                .map_err(|_| ImportError::NoTable(table))?
                .column_names()
                .iter()
                .map(|n| n.to_string())
                .collect(),
            Source::Postgres(c) => c
                .prepare(&sql)
                .await
                .map_err(|_| ImportError::NoTable(table))?
                .columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
        };
        Ok(names.into_iter().map(|n| n.to_lowercase()).collect())
    }

    /// How many rows the `xcap` table holds.
    pub async fn count_documents(&self) -> Result<u64, ImportError> {
        self.columns("xcap").await?;
        Ok(match self {
            Source::Sqlite(c) => {
                c.query_row("SELECT count(*) FROM xcap", [], |r| r.get::<_, i64>(0))?
            }
            Source::Postgres(c) => c.query_one("SELECT count(*) FROM xcap", &[]).await?.get(0),
        } as u64)
    }

    /// Up to `limit` rows of `xcap` with an `id` above `after`, by `id`.
    pub async fn documents_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<XcapRow>, ImportError> {
        match self {
            Source::Sqlite(c) => {
                let mut stmt = c.prepare_cached(DOCUMENTS_SQLITE)?;
                let rows = stmt.query_map([after, limit], |r| {
                    let doc = match r.get_ref(3)? {
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            t.to_vec()
                        }
                        _ => Vec::new(),
                    };
                    Ok(XcapRow {
                        id: r.get(0)?,
                        username: r.get(1)?,
                        domain: r.get(2)?,
                        doc,
                        doc_type: r.get(4)?,
                        doc_uri: r.get(5)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            }
            Source::Postgres(c) => {
                let rows = c.query(DOCUMENTS_PG, &[&after, &limit]).await?;
                rows.iter()
                    .map(|r| {
                        let doc = if r.columns()[3].type_() == &tokio_postgres::types::Type::BYTEA {
                            r.try_get::<_, Vec<u8>>(3)?
                        } else {
                            r.try_get::<_, String>(3)?.into_bytes()
                        };
                        Ok(XcapRow {
                            id: r.try_get(0)?,
                            username: r.try_get(1)?,
                            domain: r.try_get(2)?,
                            doc,
                            doc_type: r.try_get(4)?,
                            doc_uri: r.try_get(5)?,
                        })
                    })
                    .collect()
            }
        }
    }

    /// Every row of `subscriber` (`None` when there is no such table: users then come from
    /// elsewhere).
    pub async fn subscribers(&self) -> Result<Option<Vec<SubscriberRow>>, ImportError> {
        let columns = match self.columns("subscriber").await {
            Ok(columns) => columns,
            Err(ImportError::NoTable(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let optional = ["password", "ha1", "ha1b", "ha1_sha256"];
        let select: Vec<String> = optional
            .iter()
            .map(|c| {
                if columns.iter().any(|have| have == c) {
                    format!("{c}::text")
                } else {
                    "NULL".to_string()
                }
            })
            .collect();
        let sql = format!(
            "SELECT username::text, domain::text, {} FROM subscriber ORDER BY username, domain",
            select.join(", ")
        );
        let row_of = |v: [Option<String>; 6]| {
            let [username, domain, password, ha1, ha1b, ha1_sha256] = v;
            SubscriberRow {
                username: username.unwrap_or_default(),
                domain: domain.unwrap_or_default(),
                password,
                ha1,
                ha1b,
                ha1_sha256,
            }
        };
        Ok(Some(match self {
            Source::Sqlite(c) => {
                let sql = sql.replace("::text", "");
                let mut stmt = c.prepare(&sql)?;
                let rows = stmt.query_map([], |r| {
                    Ok(row_of([
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ]))
                })?;
                rows.collect::<Result<Vec<_>, _>>()?
            }
            Source::Postgres(c) => c
                .query(&sql, &[])
                .await?
                .iter()
                .map(|r| {
                    Ok(row_of([
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                    ]))
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::credentials::compute_ha1;

    #[test]
    fn doc_types_map_to_auids() {
        assert_eq!(auid_of(4), Some("resource-lists"));
        assert_eq!(auid_of(32), Some("org.openmobilealliance.pres-rules"));
        assert_eq!(auid_of(128), None);
        assert_eq!(auid_of(0), None);
    }

    // IO-01a/b: the HA1 columns become the spellings they were computed for (RFC 7616
    // §3.4.2: H(username:realm:password)); a password gives every spelling and algorithm.
    #[test]
    fn subscribers_become_credentials() {
        let ha1 = compute_ha1(MD5, "alice", "example.com", "pw").unwrap();
        let ha1b = compute_ha1(MD5, "alice@example.com", "example.com", "pw").unwrap();
        let row = SubscriberRow {
            username: "alice".into(),
            domain: "example.com".into(),
            ha1: Some(ha1.to_uppercase()),
            ha1b: Some(ha1b.clone()),
            ..SubscriberRow::default()
        };
        let c = row.credential(1).unwrap();
        assert_eq!(c.xui, "sip:alice@example.com");
        assert_eq!(c.realm, "example.com");
        let spellings: Vec<(&str, &str, &str)> = c
            .ha1
            .iter()
            .map(|e| {
                (
                    e.username.as_str(),
                    e.algorithm.as_str(),
                    e.ha1_hex.as_str(),
                )
            })
            .collect();
        assert_eq!(
            spellings,
            vec![
                ("alice", MD5, ha1.as_str()),
                ("alice@example.com", MD5, ha1b.as_str())
            ]
        );
        let with_password = SubscriberRow {
            password: Some("pw".into()),
            ..row.clone()
        };
        assert_eq!(with_password.credential(1).unwrap().ha1.len(), 6);
        let nothing = SubscriberRow {
            ha1: None,
            ha1b: None,
            ..row.clone()
        };
        assert!(nothing.credential(1).is_err());
        let bad = SubscriberRow {
            ha1: Some("xyz".into()),
            ..row
        };
        assert!(bad.credential(1).is_err());
    }
}
