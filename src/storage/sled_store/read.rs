//! The read path of the sled document store (RFC 4825 §6; design §4): a document with its
//! body (inline, in a body file, or in the legacy `bodies` tree, re-read when a concurrent
//! apply replaced it between the two reads), and the listings by user, by AUID and below a
//! directory (URI-07, OP-03). Readers see applied, durable versions only.

use super::*;

impl SledStore {
    pub(super) fn get_now(&self, key: &DocKey) -> Result<Option<StoredDocument>, StorageError> {
        key.validate()?;
        let pkey = doc_key_bytes(&key.auid, &key.tree, &key.path);
        // A large body lives in another tree, and the flusher may apply a newer version
        // between the two reads: read again before calling that damage.
        let mut attempts = 0;
        loop {
            let Some(raw) = self.docs.get(&pkey).map_err(from_sled)? else {
                return Ok(None);
            };
            let record = decode_doc(&raw)?;
            let external;
            let body = match record.body {
                Body::Inline(b) => b,
                Body::Tree(size) | Body::File(size) => {
                    external = if matches!(record.body, Body::File(_)) {
                        // File I/O: let the runtime move other tasks off this worker.
                        off_runtime(|| self.target.files.read(&pkey, &record.etag)).map_err(
                            |e| StorageError::Backend(format!("document body file: {e}")),
                        )?
                    } else {
                        self.bodies
                            .get(&pkey)
                            .map_err(from_sled)?
                            .map(|v| v.to_vec())
                    };
                    match &external {
                        Some(b) if b.len() as u64 == size => &b[..],
                        _ if attempts < 3 => {
                            attempts += 1;
                            std::thread::yield_now();
                            continue;
                        }
                        None => {
                            return Err(StorageError::Corrupt(
                                "document body missing from bodies".into(),
                            ))
                        }
                        Some(_) => {
                            return Err(StorageError::Corrupt("document body size differs".into()))
                        }
                    }
                }
            };
            let body = std::str::from_utf8(body)
                .map_err(|_| StorageError::Corrupt("document body: bad UTF-8".into()))?;
            return Ok(Some(StoredDocument {
                body: Arc::from(body),
                etag: record.etag,
                modified_ms: record.modified_ms,
            }));
        }
    }

    pub(super) fn list_user_now(&self, xui: &str) -> Result<Vec<DocMeta>, StorageError> {
        validate_xui(xui)?;
        let mut prefix = xui.as_bytes().to_vec();
        prefix.push(SEP);
        self.by_user
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item.map_err(from_sled)?;
                decode_index(decode_user_index_key(&k)?, &v)
            })
            .collect()
    }

    pub(super) fn list_auid_now(&self, auid: &str) -> Result<Vec<DocMeta>, StorageError> {
        validate_auid(auid)?;
        let mut prefix = auid.as_bytes().to_vec();
        prefix.push(SEP);
        self.docs
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item.map_err(from_sled)?;
                let key = decode_doc_key(&k)?;
                let d = decode_doc(&v)?;
                let size = d.size();
                Ok(DocMeta {
                    key,
                    etag: d.etag,
                    modified_ms: d.modified_ms,
                    size,
                })
            })
            .collect()
    }

    pub(super) fn directory_exists_now(
        &self,
        auid: &str,
        tree: &TreeKey,
        dir: &str,
    ) -> Result<bool, StorageError> {
        validate_auid(auid)?;
        validate_tree(tree)?;
        let prefix = doc_key_bytes(auid, tree, &directory_prefix(dir)?);
        match self.docs.scan_prefix(prefix).keys().next() {
            None => Ok(false),
            Some(k) => k.map(|_| true).map_err(from_sled),
        }
    }
}
