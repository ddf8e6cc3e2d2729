//! The XCAP operations (RFC 4825 §7, §8): GET, PUT and DELETE of documents, elements,
//! attributes and namespace bindings, with authorization (§5.7), conditional requests (§7.11,
//! §8.2.6), the idempotency checks (§8.2.3, §8.2.4, §8.4), validation (§8.2.5) and ETags (§8.5).
//! No HTTP types here: requests and responses are plain values; `xdms::respond` maps them.

use crate::appusage::{Generated, Registry};
use crate::authz::{self, Decision, Operation, Principal};
use crate::event::{ChangeOrigin, ChangeRecord, Edit, EditKind};
use crate::storage::{
    now_ms, Committed, DocKey, DocumentStore, Expect, StorageError, StoredDocument, TreeKey,
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

/// How often a write is retried when another writer committed between our read and our
/// compare-and-swap (only possible when several processes share a store).
const CAS_RETRIES: usize = 5;

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
}

impl Xdms {
    pub fn new(
        settings: XdmsSettings,
        registry: Arc<Registry>,
        store: Arc<dyn DocumentStore>,
        validator: Validator,
    ) -> Result<Xdms, StorageError> {
        let caps = generated::static_document(registry.xcap_caps_document(), "c");
        let unique = UniqueUris::build(store.as_ref())?;
        Ok(Xdms {
            registry,
            store,
            validator,
            locks: DocLocks::new(1024),
            cache: DocCache::new(settings.cache_bytes),
            caps,
            unique,
            rng: Mutex::new(EtagSource::default()),
            settings,
        })
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
                let store = self.store.clone();
                let xui = xui.clone();
                let docs = blocking(move || store.list_user(&xui)).await?;
                let auids: Vec<String> = self
                    .registry
                    .iter()
                    .filter(|u| {
                        u.descriptor.generated.is_none()
                            && u.descriptor.allows_tree(crate::appusage::TreeKind::Users)
                    })
                    .map(|u| u.auid().to_string())
                    .collect();
                Ok(Some(generated::xcap_directory(
                    &self.settings.public_root,
                    &auids,
                    &docs,
                )))
            }
            Some(Generated::RlsServicesGlobal) => {
                if target.key.path != "index" {
                    return Ok(None);
                }
                let store = self.store.clone();
                let auid = target.key.auid.clone();
                let sources = blocking(move || {
                    let mut out = Vec::new();
                    for meta in store.list_auid(&auid)? {
                        if meta.key.path != "index" || meta.key.tree == TreeKey::Global {
                            continue; // RL-15b
                        }
                        if let Some(doc) = store.get(&meta.key)? {
                            out.push((meta.key.tree.clone(), doc));
                        }
                    }
                    Ok(out)
                })
                .await?;
                Ok(Some(generated::rls_services_global(&sources)))
            }
        }
    }

    async fn read_stored(&self, key: &DocKey) -> Result<Option<StoredDocument>, XcapError> {
        // A read is a memory lookup in both backends: no need to leave the runtime thread.
        self.store.get(key).map_err(storage_error)
    }

    /// The current version of a stored document with its parsed tree (read-your-writes: the
    /// store is consulted on every call, the parse is reused while the ETag is unchanged).
    /// For in-process consumers such as the policy decision service.
    pub fn current_document(
        &self,
        key: &DocKey,
    ) -> Result<Option<(String, Arc<ParsedDoc>)>, XcapError> {
        let Some(doc) = self.store.get(key).map_err(storage_error)? else {
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

    async fn put(&self, target: &Target, req: &XcapRequest) -> Result<XcapResponse, XcapError> {
        self.refuse_write(target)?;
        self.authorize(target, &req.principal, Operation::Write)?;
        self.check_document_name(target).await?;
        let _guard = self.locks.lock(&target.key).await;
        for _ in 0..CAS_RETRIES {
            let current = self.read_stored(&target.key).await?;
            let current_etag = current.as_ref().map(|d| d.etag.clone());
            // ET-08: preconditions before any body check.
            if req.preconditions.evaluate(current_etag.as_deref(), false)
                != PreconditionOutcome::Proceed
            {
                return Err(XcapError::PreconditionFailed);
            }
            // Parsing a large body takes milliseconds: hand this worker's other tasks to
            // another thread meanwhile (issue #11 item 5).
            let tentative = if req.body.len() > OFF_RUNTIME_BYTES {
                off_runtime(|| self.apply_put(target, req, current.as_ref()))?
            } else {
                self.apply_put(target, req, current.as_ref())?
            };
            let (new_doc, created) = self.finish(target, tentative).await?;
            let expect = match &current_etag {
                Some(e) => Expect::Etag(e.clone()),
                None => Expect::Absent,
            };
            let edit = target
                .node
                .as_ref()
                .and_then(|node| put_edit(node, &new_doc, created));
            let origin = ChangeOrigin {
                principal: req.principal.audit_name(),
                edit,
            };
            match self.commit(target, expect, new_doc, &origin).await {
                Ok((etag, _)) => {
                    return Ok(XcapResponse {
                        status: if created { 201 } else { 200 },
                        content_type: None,
                        etag: Some(etag),
                        body: None,
                    })
                }
                Err(CommitError::Lost) => continue,
                Err(CommitError::Xcap(e)) => return Err(e),
            }
        }
        Err(XcapError::Unavailable)
    }

    /// Computes the new document text for a PUT; `created` tells 201 from 200 (OP-26).
    fn apply_put(
        &self,
        target: &Target,
        req: &XcapRequest,
        current: Option<&StoredDocument>,
    ) -> Result<Tentative, XcapError> {
        let limits = &self.settings.limits;
        let ct = req.content_type.as_deref();
        match &target.node {
            None => {
                // OP-01c, HT-06.
                let expected = &target.usage.descriptor.mime_type;
                if !mime::matches(ct, expected) {
                    return Err(XcapError::UnsupportedMediaType {
                        expected: expected.clone(),
                        received: ct.map(str::to_string),
                    });
                }
                let text = xml::check_document(&req.body).map_err(xml_error)?;
                let parsed = ParsedDoc::parse(Arc::from(text), limits).map_err(xml_error)?;
                Ok(Tentative::Parsed(parsed, current.is_none()))
            }
            Some(node) => {
                let (expected, is_element) = match node.kind {
                    NodeTarget::Element => (mime::XCAP_EL, true),
                    NodeTarget::Attribute => (mime::XCAP_ATT, false),
                    NodeTarget::Namespaces => {
                        return Err(XcapError::MethodNotAllowed { allow: "GET, HEAD" })
                    }
                };
                if !mime::matches(ct, expected) {
                    return Err(XcapError::UnsupportedMediaType {
                        expected: expected.to_string(),
                        received: ct.map(str::to_string),
                    });
                }
                let Some(doc) = current else {
                    // OP-08: the document itself is missing.
                    return Err(XcapError::conflict(Conflict::NoParent {
                        ancestor: Some(target.ancestor_uri(&self.settings.public_root, None)),
                    }));
                };
                let body = std::str::from_utf8(&req.body)
                    .map_err(|_| XcapError::conflict(Conflict::NotUtf8))?;
                let parsed = self.parsed(&target.key, doc)?;
                let edit = if is_element {
                    xml::put_element_pending(
                        parsed.text(),
                        parsed.doc(),
                        &node.selector,
                        body,
                        limits,
                    )
                } else {
                    xml::put_attribute_pending(parsed.text(), parsed.doc(), &node.selector, body)
                };
                match edit {
                    Ok(edit) => Ok(Tentative::Pending(edit)),
                    Err(XmlError::NoParent { matched_steps }) => {
                        Err(XcapError::conflict(Conflict::NoParent {
                            ancestor: Some(
                                target
                                    .ancestor_uri(&self.settings.public_root, Some(matched_steps)),
                            ),
                        }))
                    }
                    Err(e) => Err(xml_error(e)),
                }
            }
        }
    }

    /// Document naming rules (AU-02g, URI-07, OP-03).
    async fn check_document_name(&self, target: &Target) -> Result<(), XcapError> {
        let d = &target.usage.descriptor;
        match target.directory() {
            None => {
                if matches!(target.key.tree, TreeKey::User(_))
                    && !d.document_names.is_empty()
                    && !d.document_names.iter().any(|n| n == target.file_name())
                {
                    return Err(XcapError::conflict_with(
                        Conflict::Constraint,
                        format!(
                            "document name must be one of: {}",
                            d.document_names.join(", ")
                        ),
                    ));
                }
            }
            Some(dir) => {
                let declared = d.directories.iter().any(|x| x == dir);
                let exists = declared
                    || self
                        .store
                        .directory_exists(&target.key.auid, &target.key.tree, dir)
                        .map_err(storage_error)?;
                if !exists {
                    // OP-03: the directory does not exist.
                    return Err(XcapError::conflict(Conflict::NoParent {
                        ancestor: Some(target.ancestor_uri(&self.settings.public_root, None)),
                    }));
                }
            }
        }
        // URI-07: a directory and a document of the same name cannot both exist.
        if self
            .store
            .directory_exists(&target.key.auid, &target.key.tree, &target.key.path)
            .map_err(storage_error)?
        {
            return Err(XcapError::conflict_with(
                Conflict::Constraint,
                "a directory of that name exists",
            ));
        }
        Ok(())
    }

    /// Checks a tentative version (OP-23): for an edit, the re-parse with its idempotency
    /// check runs here while the schema validates the new text on a worker; the idempotency
    /// verdict comes first, then the schema, then the hooks.
    async fn finish(
        &self,
        target: &Target,
        tentative: Tentative,
    ) -> Result<(Arc<ParsedDoc>, bool), XcapError> {
        let ctx = CheckContext {
            public_root: &self.settings.public_root,
            owner: target.owner.as_deref(),
            document_path: &target.key.path,
            allow_foreign_references: self.settings.allow_foreign_references,
            oma_compliant: self.settings.oma_compliant,
        };
        match tentative {
            Tentative::Parsed(doc, created) => {
                check_document(&target.usage, &self.validator, &doc, &ctx).await?;
                Ok((Arc::new(doc), created))
            }
            Tentative::Pending(edit) => {
                let Some(node) = &target.node else {
                    return Err(XcapError::Internal("edit without node selector".into()));
                };
                let text = edit.text.clone();
                let limits = &self.settings.limits;
                let large = edit.text.len() > OFF_RUNTIME_BYTES;
                let (schema, verified) =
                    tokio::join!(check_schema(&target.usage, &self.validator, text), async {
                        if large {
                            off_runtime(|| edit.verify(&node.selector, limits))
                        } else {
                            edit.verify(&node.selector, limits)
                        }
                    });
                let (doc, created) = verified.map_err(xml_error)?;
                schema?;
                check_hooks(&target.usage, &doc, &ctx)?;
                Ok((Arc::new(doc), created))
            }
        }
    }

    async fn delete(&self, target: &Target, req: &XcapRequest) -> Result<XcapResponse, XcapError> {
        self.refuse_write(target)?;
        self.authorize(target, &req.principal, Operation::Delete)?;
        let _guard = self.locks.lock(&target.key).await;
        for _ in 0..CAS_RETRIES {
            let current = self
                .read_stored(&target.key)
                .await?
                .ok_or(XcapError::NotFound("no such document"))?;
            if req.preconditions.evaluate(Some(&current.etag), false)
                != PreconditionOutcome::Proceed
            {
                return Err(XcapError::PreconditionFailed);
            }
            let expect = Expect::Etag(current.etag.clone());
            let mut origin = ChangeOrigin {
                principal: req.principal.audit_name(),
                edit: None,
            };
            let result = match &target.node {
                None => self
                    .commit_delete(target, expect, &origin)
                    .await
                    .map(|_| None),
                Some(node) => {
                    let parsed = self.parsed(&target.key, &current)?;
                    let pending =
                        xml::delete_node_pending(parsed.text(), parsed.doc(), &node.selector)
                            .map_err(get_error)?;
                    origin.edit = delete_edit(node, &parsed);
                    let (new_doc, _) = self.finish(target, Tentative::Pending(pending)).await?;
                    self.commit(target, expect, new_doc, &origin)
                        .await
                        .map(|(etag, _)| Some(etag))
                }
            };
            match result {
                // OP-05 / OP-36: no ETag once the document is gone; the new one otherwise.
                Ok(etag) => {
                    return Ok(XcapResponse {
                        status: 200,
                        content_type: None,
                        etag,
                        body: None,
                    })
                }
                Err(CommitError::Lost) => continue,
                Err(CommitError::Xcap(e)) => return Err(e),
            }
        }
        Err(XcapError::Unavailable)
    }

    fn next_etag(&self) -> Etag {
        self.rng.lock().next()
    }

    /// Durably stores a new version with its change record (design.md §3).
    async fn commit(
        &self,
        target: &Target,
        expect: Expect,
        doc: Arc<ParsedDoc>,
        origin: &ChangeOrigin,
    ) -> Result<(String, Committed), CommitError> {
        // RL-12: service URIs are unique across every document of the store; the index lock
        // is held from the check to the commit so two writers cannot claim one URI.
        // RL-12, SX-05: the index lock is held from the check to the commit.
        let mut unique = self.unique.lock_for(&target.key.auid).await;
        if let Some(g) = &unique {
            g.check(&target.key, &doc)?;
        }
        let etag = self.next_etag().0;
        // Applying is a few in-memory sled inserts; only the durability wait is long, and it
        // holds no thread.
        let (committed, durable) = self
            .store
            .put_nowait(
                &target.key,
                &expect,
                doc.shared_text(),
                &etag,
                now_ms(),
                origin,
            )
            .map_err(commit_error)?;
        durable.wait().await.map_err(commit_error)?;
        if let Some(g) = unique.as_mut() {
            g.record(&target.key, Some(&doc));
        }
        // Keep the parse of element and attribute edits for the next request on this document;
        // a whole-document PUT says nothing about what comes next, so it only drops the old one.
        if target.node.is_some() {
            self.cache.insert(target.key.clone(), etag.clone(), doc);
        } else {
            self.cache.remove(&target.key);
        }
        Ok((etag, committed))
    }

    async fn commit_delete(
        &self,
        target: &Target,
        expect: Expect,
        origin: &ChangeOrigin,
    ) -> Result<(), CommitError> {
        let mut unique = self.unique.lock_for(&target.key.auid).await;
        let Some((_, durable)) = self
            .store
            .delete_nowait(&target.key, &expect, origin)
            .map_err(commit_error)?
        else {
            return Err(CommitError::Xcap(XcapError::NotFound("no such document")));
        };
        durable.wait().await.map_err(commit_error)?;
        if let Some(g) = unique.as_mut() {
            g.record(&target.key, None);
        }
        self.cache.remove(&target.key);
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
            let current = self.store.get(&change.key)?;
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

/// The change-record edit of a node PUT (RFC 5874 §4 needs the new node and its place).
fn put_edit(node: &Node, doc: &ParsedDoc, created: bool) -> Option<Edit> {
    let (kind, value) = match node.kind {
        NodeTarget::Element => (
            EditKind::PutElement,
            xml::get_element_in(doc.text(), doc.doc(), &node.selector).ok(),
        ),
        NodeTarget::Attribute => (
            EditKind::PutAttribute,
            xml::get_attribute_in(doc.doc(), &node.selector).ok(),
        ),
        NodeTarget::Namespaces => return None,
    };
    Some(edit_of(node, kind, value, doc, created))
}

/// The change-record edit of a node DELETE, positioned in the document before the delete.
fn delete_edit(node: &Node, old: &ParsedDoc) -> Option<Edit> {
    let kind = match node.kind {
        NodeTarget::Element => EditKind::DeleteElement,
        NodeTarget::Attribute => EditKind::DeleteAttribute,
        NodeTarget::Namespaces => return None,
    };
    Some(edit_of(node, kind, None, old, false))
}

fn edit_of(
    node: &Node,
    kind: EditKind,
    value: Option<String>,
    doc: &ParsedDoc,
    created: bool,
) -> Edit {
    let position = match node.kind {
        NodeTarget::Element => xml::element_position(doc.doc(), &node.selector),
        _ => None,
    };
    Edit {
        kind,
        node_selector: node.parsed.to_string(),
        namespaces: node
            .bindings
            .iter()
            .map(|(p, u)| (p.clone(), u.clone()))
            .collect(),
        value,
        position,
        created,
    }
}

/// A new document version before its checks.
enum Tentative {
    /// A whole document PUT, already parsed.
    Parsed(ParsedDoc, bool),
    /// An element or attribute edit, not yet re-parsed.
    Pending(xml::PendingEdit),
}

enum CommitError {
    /// Another writer committed first; re-read and retry.
    Lost,
    Xcap(XcapError),
}

impl From<XcapError> for CommitError {
    fn from(e: XcapError) -> Self {
        CommitError::Xcap(e)
    }
}

fn commit_error(e: StorageError) -> CommitError {
    match e {
        StorageError::PreconditionFailed => CommitError::Lost,
        e => CommitError::Xcap(storage_error(e)),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, XcapError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(storage_error),
        Err(e) => Err(XcapError::Internal(format!("storage task failed: {e}"))),
    }
}

/// Documents larger than this are parsed with the runtime told that the thread blocks.
const OFF_RUNTIME_BYTES: usize = 32 * 1024;

/// Runs CPU-heavy `f` so that the runtime moves this worker's other tasks to another thread
/// meanwhile (`block_in_place`); inline where that is not possible (single-threaded runtime).
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

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
