//! Keys and records of the sled document store: the NUL-separated primary key of a document
//! (AUID, tree, path; URI-07) and of its per-user index entry, the primary record (version,
//! mtime, ETag, then the body inline or the size of a body kept elsewhere), the index record
//! and the change sequence. Decoding re-checks what encoding guarantees, so damage is reported
//! as `Corrupt` instead of served.

use super::sled_common::{utf8, Reader};
use super::{DocKey, DocMeta, StorageError, TreeKey};

pub(super) const SEP: u8 = 0;

pub(super) const RECORD_VERSION: u8 = 1;

/// Primary record whose body lives in the `bodies` tree (written before body files; read only).
pub(super) const RECORD_EXTERNAL: u8 = 2;

/// Primary record whose body is a body file ([`super::body_files`]).
pub(super) const RECORD_FILE: u8 = 3;

/// Bodies larger than this are kept out of `docs` and out of sled: sled rewrites a whole leaf
/// node (up to 16 entries) when it consolidates it, as a blob file once the node passes
/// 128 KiB (one 888 KB document took durable PUT of small documents from ~5,900 to ~4,700/s),
/// and sled 0.34 keeps every value it has seen in memory whatever its cache size.
pub(super) const EXTERNAL_BODY_MIN: usize = 32 * 1024;

pub(super) fn push_tree(out: &mut Vec<u8>, tree: &TreeKey) {
    match tree {
        TreeKey::Global => out.push(b'G'),
        TreeKey::User(xui) => {
            out.push(b'U');
            out.extend_from_slice(xui.as_bytes());
        }
    }
}

/// `auid \0 tree \0 path-prefix`; with the full path it is the primary key.
pub(super) fn doc_key_bytes(auid: &str, tree: &TreeKey, path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(auid.len() + path.len() + 64);
    out.extend_from_slice(auid.as_bytes());
    out.push(SEP);
    push_tree(&mut out, tree);
    out.push(SEP);
    out.extend_from_slice(path.as_bytes());
    out
}

pub(super) fn user_index_key(xui: &str, auid: &str, path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(xui.len() + auid.len() + path.len() + 2);
    out.extend_from_slice(xui.as_bytes());
    out.push(SEP);
    out.extend_from_slice(auid.as_bytes());
    out.push(SEP);
    out.extend_from_slice(path.as_bytes());
    out
}

/// The three NUL-separated components of an encoded key.
pub(super) type KeyParts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

pub(super) fn split3(bytes: &[u8]) -> Result<KeyParts<'_>, StorageError> {
    let mut parts = bytes.splitn(3, |b| *b == SEP);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(c)) => Ok((a, b, c)),
        _ => Err(StorageError::Corrupt("key without two separators".into())),
    }
}

pub(super) fn decode_doc_key(bytes: &[u8]) -> Result<DocKey, StorageError> {
    let (auid, tree, path) = split3(bytes)?;
    let tree = match tree.split_first() {
        Some((b'G', [])) => TreeKey::Global,
        Some((b'U', xui)) => TreeKey::User(utf8(xui, "xui")?),
        _ => return Err(StorageError::Corrupt("bad tree tag in key".into())),
    };
    Ok(DocKey {
        auid: utf8(auid, "auid")?,
        tree,
        path: utf8(path, "path")?,
    })
}

pub(super) fn decode_user_index_key(bytes: &[u8]) -> Result<DocKey, StorageError> {
    let (xui, auid, path) = split3(bytes)?;
    Ok(DocKey {
        auid: utf8(auid, "auid")?,
        tree: TreeKey::User(utf8(xui, "xui")?),
        path: utf8(path, "path")?,
    })
}

pub(super) fn push_string(out: &mut Vec<u8>, s: &str) -> Result<(), StorageError> {
    super::sled_common::push_bytes(out, s.as_bytes())
}

/// Primary record: version, mtime, ETag, then the body, or for a body kept in `bodies`
/// (version [`RECORD_EXTERNAL`]) its size.
pub(super) fn encode_doc(
    body: &str,
    etag: &str,
    modified_ms: u64,
) -> Result<Vec<u8>, StorageError> {
    let external = body.len() > EXTERNAL_BODY_MIN;
    let inline = if external { 8 } else { body.len() };
    let mut out = Vec::with_capacity(1 + 8 + 4 + etag.len() + inline);
    out.push(if external {
        RECORD_FILE
    } else {
        RECORD_VERSION
    });
    out.extend_from_slice(&modified_ms.to_be_bytes());
    push_string(&mut out, etag)?;
    if external {
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    } else {
        out.extend_from_slice(body.as_bytes());
    }
    Ok(out)
}

/// Where a document's body is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Body<'a> {
    Inline(&'a [u8]),
    /// In the `bodies` tree; its size.
    Tree(u64),
    /// In a body file; its size.
    File(u64),
}

/// A decoded primary record.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct DocRecord<'a> {
    pub etag: String,
    pub modified_ms: u64,
    pub body: Body<'a>,
}

impl DocRecord<'_> {
    pub(super) fn size(&self) -> u64 {
        match self.body {
            Body::Inline(b) => b.len() as u64,
            Body::Tree(n) | Body::File(n) => n,
        }
    }
}

pub(super) fn decode_doc(bytes: &[u8]) -> Result<DocRecord<'_>, StorageError> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if ![RECORD_VERSION, RECORD_EXTERNAL, RECORD_FILE].contains(&version) {
        return Err(StorageError::Corrupt(
            "unknown document record version".into(),
        ));
    }
    let modified_ms = r.u64()?;
    let etag = r.string("etag")?;
    let body = if version != RECORD_VERSION {
        let size = r.u64()?;
        if !r.0.is_empty() {
            return Err(StorageError::Corrupt("trailing bytes in record".into()));
        }
        if version == RECORD_FILE {
            Body::File(size)
        } else {
            Body::Tree(size)
        }
    } else {
        Body::Inline(r.0)
    };
    Ok(DocRecord {
        etag,
        modified_ms,
        body,
    })
}

/// Index record: version, mtime, size, ETag.
pub(super) fn encode_index(
    etag: &str,
    modified_ms: u64,
    size: u64,
) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(1 + 16 + 4 + etag.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&modified_ms.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    push_string(&mut out, etag)?;
    Ok(out)
}

pub(super) fn decode_index(key: DocKey, bytes: &[u8]) -> Result<DocMeta, StorageError> {
    let mut r = Reader(bytes);
    if r.u8()? != RECORD_VERSION {
        return Err(StorageError::Corrupt("unknown index record version".into()));
    }
    let modified_ms = r.u64()?;
    let size = r.u64()?;
    let etag = r.string("etag")?;
    Ok(DocMeta {
        key,
        etag,
        modified_ms,
        size,
    })
}

pub(super) fn decode_seq(bytes: Option<&[u8]>) -> Result<u64, StorageError> {
    match bytes {
        None => Ok(0),
        Some(b) => <[u8; 8]>::try_from(b)
            .map(u64::from_be_bytes)
            .map_err(|_| StorageError::Corrupt("bad seq record".into())),
    }
}
