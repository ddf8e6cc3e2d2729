//! The XCAP operations (RFC 4825 §7, §8): GET, PUT and DELETE of documents, elements,
//! attributes and namespace bindings, with authorization (§5.7), conditional requests (§7.11,
//! §8.2.6), the idempotency checks (§8.2.3, §8.2.4, §8.4), validation (§8.2.5) and ETags (§8.5).
//! Reads, authorization and the in-process indexes are here; writes in `service/write.rs`.
//! No HTTP types here: requests and responses are plain values; `xdms::respond` maps them.

use crate::appusage::{Generated, Registry};
use crate::authz::{self, Decision, Operation, Principal};
use crate::event::{ChangeOrigin, ChangeRecord, Edit, EditKind};
use crate::storage::{
    now_ms, off_runtime, Committed, DocKey, DocumentStore, Expect, StorageError, StoredDocument,
    TreeKey,
};
use crate::xcap::error::{Conflict, XcapError};
use crate::xcap::etag::{Etag, PreconditionOutcome, Preconditions};
use crate::xcap::mime;
use crate::xdms::cache::DocCache;
use crate::xdms::generated;
use crate::xdms::locks::DocLocks;
use crate::xdms::target::{Node, NodeTarget, Target};
use crate::xdms::unique::UniqueUris;
use crate::xdms::validate::{check_document, check_hooks, check_schema, xml_error, CheckContext};
use crate::xml::{self, attvalue, Limits, ParsedDoc, XmlError};
use crate::xsd::Validator;
use bytes::Bytes;
use parking_lot::Mutex;
use std::sync::Arc;

mod write;

/// Settings the XDMS needs from the configuration.
#[derive(Debug, Clone)]
pub struct XdmsSettings {
    /// XCAP root path, e.g. "/xcap-root".
    pub root_path: String,
    /// Absolute XCAP root URL, e.g. "http://127.0.0.1:8080/xcap-root".
    pub public_root: String,
    pub default_domain: Option<String>,
    pub limits: Limits,
    pub allow_foreign_references: bool,
    pub oma_compliant: bool,
    pub quote_attribute_values: bool,
    /// Budget of the parsed-document cache, in approximate bytes.
    pub cache_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    Delete,
}

/// One XCAP request, already authenticated.
#[derive(Debug, Clone)]
pub struct XcapRequest {
    pub method: Method,
    /// The request target as received (path and query, still percent-encoded).
    pub path_and_query: String,
    pub principal: Principal,
    pub preconditions: Preconditions,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// A successful XCAP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XcapResponse {
    pub status: u16,
    pub content_type: Option<String>,
    /// ETag value without quotes.
    pub etag: Option<String>,
    pub body: Option<String>,
}

pub struct Xdms {
    settings: XdmsSettings,
    registry: Arc<Registry>,
    store: Arc<dyn DocumentStore>,
    validator: Validator,
    locks: DocLocks,
    cache: DocCache,
    caps: StoredDocument,
    /// RL-12: every service URI in the store and the document that holds it.
    unique: UniqueUris,
    /// Source of randomness for ETags (ET-03).
    rng: Mutex<EtagSource>,
    /// Which documents someone watches (the notifier's subscriptions).
    watch: parking_lot::RwLock<Option<ChangeWatch>>,
}

/// Whether changes of a document are watched: only then is a whole-document PUT diffed into
/// the patch its change record carries (issue #13 scope 5; the diff costs a parse of the
/// previous version, which no one needs otherwise).
pub type ChangeWatch = Arc<dyn Fn(&DocKey) -> bool + Send + Sync>;

impl Xdms {
    pub async fn new(
        settings: XdmsSettings,
        registry: Arc<Registry>,
        store: Arc<dyn DocumentStore>,
        validator: Validator,
    ) -> Result<Xdms, StorageError> {
        let caps = generated::static_document(registry.xcap_caps_document(), "c");
        let unique = UniqueUris::build(store.as_ref()).await?;
        Ok(Xdms {
            registry,
            store,
            validator,
            locks: DocLocks::new(1024),
            cache: DocCache::new(settings.cache_bytes),
            caps,
            unique,
            rng: Mutex::new(EtagSource::default()),
            watch: parking_lot::RwLock::new(None),
            settings,
        })
    }

    /// Installs (or replaces) what says which documents are watched.
    pub fn set_change_watch(&self, watch: ChangeWatch) {
        *self.watch.write() = Some(watch);
    }

    fn watched(&self, key: &DocKey) -> bool {
        self.watch.read().as_ref().is_some_and(|w| w(key))
    }

    pub fn settings(&self) -> &XdmsSettings {
        &self.settings
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn store(&self) -> &Arc<dyn DocumentStore> {
        &self.store
    }

    /// The document holding `uri` among the server-wide unique URIs of `auid` (a group URI,
    /// an RLS service URI), if any (the IM Server finds groups by it).
    pub async fn unique_holder(&self, auid: &str, uri: &str) -> Option<DocKey> {
        self.unique.holder(auid, uri).await
    }

    pub async fn handle(&self, req: XcapRequest) -> Result<XcapResponse, XcapError> {
        let target = Target::resolve(
            &self.registry,
            &req.path_and_query,
            &self.settings.root_path,
            self.settings.default_domain.as_deref(),
        )?;
        match req.method {
            Method::Get | Method::Head => self.get(&target, &req).await,
            Method::Put => self.put(&target, &req).await,
            Method::Delete => self.delete(&target, &req).await,
        }
    }

    fn authorize(
        &self,
        target: &Target,
        principal: &Principal,
        op: Operation,
    ) -> Result<(), XcapError> {
        let auth = &target.usage.descriptor.authorization;
        let read = match (&target.key.tree, auth.global_read) {
            (TreeKey::Global, Some(r)) => r,
            _ => auth.read,
        };
        match authz::decide(principal, target.owner.as_deref(), read, auth.write, op) {
            Decision::Allow => Ok(()),
            Decision::Deny if *principal == Principal::Anonymous => Err(XcapError::Unauthorized),
            Decision::Deny => Err(XcapError::Forbidden(
                "not allowed by the application usage's policy",
            )),
        }
    }

    /// Whether `principal` may read the documents of `auid` in `tree` (RFC 4825 §5.7 and the
    /// usage's policy, exactly as a GET decides; XD-15): the xcap-diff notifier asks this of
    /// every subscribed resource.
    pub fn may_read(&self, principal: &Principal, auid: &str, tree: &TreeKey) -> bool {
        let Some(usage) = self.registry.get(auid) else {
            return false;
        };
        let auth = &usage.descriptor.authorization;
        let (read, owner) = match tree {
            TreeKey::Global => (auth.global_read.unwrap_or(auth.read), None),
            TreeKey::User(xui) => (auth.read, Some(xui.as_str())),
        };
        authz::decide(principal, owner, read, auth.write, Operation::Read) == Decision::Allow
    }

    /// Whether the addressed document is built by the server (read-only).
    fn generated_kind(&self, target: &Target) -> Option<Generated> {
        let d = &target.usage.descriptor;
        match target.key.tree {
            TreeKey::Global => d.generated_global.or(d.generated),
            TreeKey::User(_) => d.generated,
        }
    }

    /// Loads the addressed document, building generated ones.
    async fn load(&self, target: &Target) -> Result<Option<StoredDocument>, XcapError> {
        match self.generated_kind(target) {
            None => self.read_stored(&target.key).await,
            Some(Generated::XcapCaps) => Ok((target.key.tree == TreeKey::Global
                && target.key.path == "index")
                .then(|| self.caps.clone())),
            Some(Generated::XcapDirectory) => {
                let (TreeKey::User(xui), "directory.xml") =
                    (&target.key.tree, target.key.path.as_str())
                else {
                    return Ok(None);
                };
                Ok(Some(self.xcap_directory(xui).await.map_err(storage_error)?))
            }
            Some(Generated::RlsServicesGlobal) => {
                if target.key.path != "index" {
                    return Ok(None);
                }
                let mut sources = Vec::new();
                let metas = self.store.list_auid(&target.key.auid).await;
                for meta in metas.map_err(storage_error)? {
                    if meta.key.path != "index" || meta.key.tree == TreeKey::Global {
                        continue; // RL-15b
                    }
                    if let Some(doc) = self.store.get(&meta.key).await.map_err(storage_error)? {
                        sources.push((meta.key.tree.clone(), doc));
                    }
                }
                Ok(Some(generated::rls_services_global(&sources)))
            }
        }
    }

    /// The usages whose user documents the xcap-directory lists.
    fn directory_auids(&self) -> Vec<String> {
        self.registry
            .iter()
            .filter(|u| {
                u.descriptor.generated.is_none()
                    && u.descriptor.allows_tree(crate::appusage::TreeKind::Users)
            })
            .map(|u| u.auid().to_string())
            .collect()
    }

    async fn xcap_directory(&self, xui: &str) -> Result<StoredDocument, StorageError> {
        let docs = self.store.list_user(xui).await?;
        Ok(generated::xcap_directory(
            &self.settings.public_root,
            &self.directory_auids(),
            &docs,
        ))
    }

    /// For a generated document a subscription may watch (xcap-diff covers generated
    /// documents too, issue #13 scope 7): the `(auid, tree)`s whose changes change it, none for
    /// xcap-caps. `None` for a stored document, and for the rls-services global index, which
    /// no change of one tree can be followed to.
    pub fn generated_sources(&self, key: &DocKey) -> Option<Vec<(String, TreeKey)>> {
        let usage = self.registry.get(&key.auid)?;
        match (usage.descriptor.generated, &key.tree) {
            (Some(Generated::XcapDirectory), TreeKey::User(_)) => Some(
                self.directory_auids()
                    .into_iter()
                    .map(|auid| (auid, key.tree.clone()))
                    .collect(),
            ),
            (Some(Generated::XcapCaps), TreeKey::Global) => Some(Vec::new()),
            _ => None,
        }
    }

    /// The current ETag of a generated document of [`Xdms::generated_sources`] (`None`:
    /// there is no such document).
    pub async fn generated_etag(&self, key: &DocKey) -> Result<Option<String>, StorageError> {
        let kind = self
            .registry
            .get(&key.auid)
            .and_then(|u| u.descriptor.generated);
        match (kind, &key.tree, key.path.as_str()) {
            (Some(Generated::XcapDirectory), TreeKey::User(xui), "directory.xml") => {
                Ok(Some(self.xcap_directory(xui).await?.etag))
            }
            (Some(Generated::XcapCaps), TreeKey::Global, "index") => {
                Ok(Some(self.caps.etag.clone()))
            }
            _ => Ok(None),
        }
    }

    async fn read_stored(&self, key: &DocKey) -> Result<Option<StoredDocument>, XcapError> {
        self.store.get(key).await.map_err(storage_error)
    }

    /// The current version of a stored document with its parsed tree (read-your-writes: the
    /// store is consulted on every call, the parse is reused while the ETag is unchanged).
    /// For in-process consumers such as the policy decision service.
    pub async fn current_document(
        &self,
        key: &DocKey,
    ) -> Result<Option<(String, Arc<ParsedDoc>)>, XcapError> {
        let Some(doc) = self.store.get(key).await.map_err(storage_error)? else {
            return Ok(None);
        };
        let parsed = self.parsed(key, &doc)?;
        Ok(Some((doc.etag, parsed)))
    }

    /// The parsed tree of a loaded document version, from the cache when possible.
    fn parsed(&self, key: &DocKey, doc: &StoredDocument) -> Result<Arc<ParsedDoc>, XcapError> {
        if let Some(p) = self.cache.get(key, &doc.etag) {
            return Ok(p);
        }
        let parsed = Arc::new(
            ParsedDoc::parse(doc.body.clone(), &self.settings.limits)
                .map_err(|e| XcapError::Internal(format!("stored document does not parse: {e}")))?,
        );
        self.cache
            .insert(key.clone(), doc.etag.clone(), parsed.clone());
        Ok(parsed)
    }

    async fn get(&self, target: &Target, req: &XcapRequest) -> Result<XcapResponse, XcapError> {
        self.authorize(target, &req.principal, Operation::Read)?;
        let doc = self
            .load(target)
            .await?
            .ok_or(XcapError::NotFound("no such document"))?;
        match req.preconditions.evaluate(Some(&doc.etag), true) {
            PreconditionOutcome::Proceed => {}
            PreconditionOutcome::Failed => return Err(XcapError::PreconditionFailed),
            PreconditionOutcome::NotModified => {
                return Err(XcapError::NotModified { etag: doc.etag })
            }
        }
        let (content_type, body) = match &target.node {
            None => (
                target.usage.descriptor.mime_type.clone(),
                doc.body.to_string(),
            ),
            Some(node) => {
                let parsed = self.parsed(&target.key, &doc)?;
                let (text, tree) = (parsed.text(), parsed.doc());
                match node.kind {
                    NodeTarget::Element => (
                        mime::XCAP_EL.to_string(),
                        xml::get_element_in(text, tree, &node.selector).map_err(get_error)?,
                    ),
                    NodeTarget::Attribute => {
                        let value =
                            xml::get_attribute_in(tree, &node.selector).map_err(get_error)?;
                        let body = if self.settings.quote_attribute_values {
                            attvalue::quote(&value)
                        } else {
                            value
                        };
                        (mime::XCAP_ATT.to_string(), body)
                    }
                    NodeTarget::Namespaces => (
                        mime::XCAP_NS.to_string(),
                        xml::get_namespace_bindings_in(text, tree, &node.selector)
                            .map_err(get_error)?,
                    ),
                }
            }
        };
        Ok(XcapResponse {
            status: 200,
            content_type: Some(content_type),
            etag: Some(doc.etag),
            body: Some(body),
        })
    }

    /// Refusals that do not depend on the stored state: read-only resources (HT-07) and
    /// `namespace::*` writes (OP-37).
    fn refuse_write(&self, target: &Target) -> Result<(), XcapError> {
        if self.generated_kind(target).is_some() || target.usage.descriptor.read_only() {
            return Err(XcapError::MethodNotAllowed { allow: "GET, HEAD" });
        }
        if matches!(
            target.node.as_ref().map(|n| &n.kind),
            Some(NodeTarget::Namespaces)
        ) {
            return Err(XcapError::MethodNotAllowed { allow: "GET, HEAD" });
        }
        Ok(())
    }

    /// Brings the in-process indexes up to a change from the change feed, whoever made it
    /// (design.md §2): another process on the same store, or this one (then it is a no-op).
    /// The uniqueness index re-reads the document under its lock, so it ends up matching the
    /// store whatever order changes arrive in; the parse cache drops the version the change
    /// held before the change.
    pub async fn follow(&self, change: &ChangeRecord) -> Result<(), StorageError> {
        if let Some(old) = &change.previous_etag {
            self.cache.superseded(&change.key, old);
        }
        let mut unique = self.unique.lock_for(&change.key.auid).await;
        if let Some(g) = unique.as_mut() {
            let current = self.store.get(&change.key).await?;
            let parsed = match &current {
                Some(doc) => Some(self.parsed(&change.key, doc).map_err(|e| {
                    StorageError::Corrupt(format!("stored document does not parse: {e}"))
                })?),
                None => None,
            };
            g.record(&change.key, parsed.as_deref());
        }
        Ok(())
    }
}

impl Xdms {
    /// Rebuilds the in-process indexes from the store (after falling behind the change log).
    pub async fn resync(&self) -> Result<(), StorageError> {
        self.cache.clear();
        self.unique.rebuild(self.store.as_ref()).await
    }
}

/// Documents larger than this are parsed with the runtime told that the thread blocks.
const OFF_RUNTIME_BYTES: usize = 32 * 1024;

/// Seconds a client is asked to wait while storage cannot take writes.
const WRITES_PAUSED_RETRY_SECS: u64 = 5;

fn storage_error(e: StorageError) -> XcapError {
    match e {
        StorageError::InvalidKey(_) => XcapError::NotFound("no such document"),
        StorageError::Unavailable(reason) => {
            tracing::warn!(target: "xcapd::storage", %reason, "write refused: storage cannot accept writes now");
            XcapError::WritesPaused {
                retry_after_secs: WRITES_PAUSED_RETRY_SECS,
            }
        }
        other => XcapError::Internal(format!("storage: {other}")),
    }
}

/// GET and DELETE selector failures are 404 (NS-08, OP-31, OP-33).
fn get_error(e: XmlError) -> XcapError {
    match e {
        XmlError::NoMatch | XmlError::Ambiguous | XmlError::NoParent { .. } => {
            XcapError::NotFound("node selector selects no single node")
        }
        other => xml_error(other),
    }
}

/// ETag randomness: seeded from the OS once, then a xorshift stream mixed with a counter, so
/// tags are unique within the process and unpredictable across restarts (ET-03).
struct EtagSource {
    state: u64,
    salt: u64,
    counter: u64,
}

impl Default for EtagSource {
    fn default() -> Self {
        let mut seed = [0u8; 16];
        if getrandom::getrandom(&mut seed).is_err() {
            let t = now_ms().to_le_bytes();
            seed[..8].copy_from_slice(&t);
            seed[8..].copy_from_slice(&(std::process::id() as u64).to_le_bytes());
        }
        let state = u64::from_le_bytes(seed[..8].try_into().unwrap_or([1; 8])) | 1;
        let salt = u64::from_le_bytes(seed[8..].try_into().unwrap_or([2; 8]));
        EtagSource {
            state,
            salt,
            counter: 0,
        }
    }
}

impl EtagSource {
    fn next(&mut self) -> Etag {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.counter += 1;
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(&(self.state ^ self.salt).to_be_bytes());
        // The low 32 bits of the counter make consecutive tags distinct even if the stream
        // were to repeat.
        bytes[8..].copy_from_slice(&(self.counter as u32).to_be_bytes());
        Etag::from_random(bytes)
    }
}
