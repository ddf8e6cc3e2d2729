//! The XCAP write operations (RFC 4825 §7.1–§7.9, §8.2): PUT and DELETE of documents,
//! elements and attributes, with the conditional checks (§7.11, ET-08), the idempotency
//! re-parse (§8.2.3, §8.2.4), validation (§8.2.5), the compare-and-swap commit with its change
//! record (design.md §2, §3), and server-wide uniqueness (RL-12).

use super::*;
use crate::event::Placement;
use crate::storage::SpeculativeRead;
use crate::xcap_diff::tree::{self, tree_patch};

/// How often a write is retried when another writer committed between our read and our
/// compare-and-swap (only possible when several processes share a store: issue #15, nodes on
/// one database), each time after a random pause of up to 2^attempt ms (at most 32 ms), so
/// writers racing on one document from several nodes take turns instead of colliding again.
const CAS_RETRIES: usize = 16;

/// The pause before attempt `attempt` (from 1) of a write that lost its compare-and-swap.
async fn pause_after_lost(attempt: usize) {
    let mut bytes = [0u8; 2];
    let _ = getrandom::getrandom(&mut bytes);
    let ceiling = 1u64 << attempt.min(5);
    let ms = u64::from(u16::from_be_bytes(bytes)) % (ceiling + 1);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// What a writer of a document holds: this process's lock of the document and, once it lost a
/// compare-and-swap to a writer in another process sharing the store (nodes on one database),
/// the store's lock across those processes.
pub(super) struct WriterHold<'a> {
    _local: tokio::sync::MutexGuard<'a, ()>,
    across: Option<crate::storage::DocumentLock>,
}

impl Xdms {
    /// The writer's hold of `key`: this process's lock, and the store's lock across the
    /// processes sharing it only while `key` is contended. Writers on one node take turns
    /// locally; a write on another node at the same moment is rare, so a first attempt is
    /// optimistic (the commit's compare-and-swap catches it) and spares the two round trips
    /// of the database lock.
    async fn hold_writer(&self, key: &DocKey) -> Result<WriterHold<'_>, XcapError> {
        let local = self.locks.lock(key).await;
        let across = if self.locks.is_contended(key) {
            self.store.lock_document(key).await.map_err(storage_error)?
        } else {
            None
        };
        Ok(WriterHold {
            _local: local,
            across,
        })
    }

    /// Before attempt `attempt` of a write that lost its compare-and-swap: the document is
    /// contended; the first time, the writer takes turns with the other processes' writers
    /// from now on (their lock, held to the end of the write) and tries again at once (the
    /// winner committed already; holders of the lock retry at once: a pause would only hand
    /// the document to optimistic writers elsewhere); without such a lock, a random pause.
    async fn after_lost(
        &self,
        key: &DocKey,
        hold: &mut WriterHold<'_>,
        attempt: usize,
    ) -> Result<(), XcapError> {
        self.locks.mark_contended(key);
        if hold.across.is_none() {
            hold.across = self.store.lock_document(key).await.map_err(storage_error)?;
        }
        if hold.across.is_none() {
            pause_after_lost(attempt).await;
        }
        Ok(())
    }

    pub(super) async fn put(
        &self,
        target: &Target,
        req: &XcapRequest,
    ) -> Result<XcapResponse, XcapError> {
        self.refuse_write(target)?;
        self.authorize(target, &req.principal, Operation::Write)?;
        self.check_document_name(target).await?;
        self.read_modify_write(&target.key, |current| {
            self.put_attempt(target, req, current)
        })
        .await
    }

    /// Runs `attempt` on the stored version of `key` until its compare-and-swap holds (at
    /// most [`CAS_RETRIES`] lost ones). The first version read may lag another process's
    /// write (no round trip to learn the store's head) unless the document is contended: an
    /// error answered from such a version is tried again on the current version, so only a
    /// current version decides an error; a loss counts as any loss.
    async fn read_modify_write<F, Fut>(
        &self,
        key: &DocKey,
        mut attempt: F,
    ) -> Result<XcapResponse, XcapError>
    where
        F: FnMut(Option<StoredDocument>) -> Fut,
        Fut: std::future::Future<Output = Result<XcapResponse, CommitError>>,
    {
        let mut held = self.hold_writer(key).await?;
        // A contended document was just written elsewhere: the cache likely lags it.
        let mut speculative = held.across.is_none();
        let mut lost = 0;
        loop {
            let read = if speculative {
                self.store.get_speculative(key).await
            } else {
                self.store
                    .get(key)
                    .await
                    .map(|doc| SpeculativeRead { doc, current: true })
            }
            .map_err(storage_error)?;
            match attempt(read.doc).await {
                Ok(response) => return Ok(response),
                // A loss is a loss (another node wrote the document moments ago: its
                // writers here take turns with that node's from now on, see `after_lost`);
                // any other answer from a version that may lag is not answered.
                Err(CommitError::Xcap(e)) if !read.current && about_the_version(&e) => {
                    speculative = false
                }
                Err(CommitError::Lost) => {
                    speculative = false;
                    lost += 1;
                    if lost >= CAS_RETRIES {
                        return Err(XcapError::Unavailable);
                    }
                    self.after_lost(key, &mut held, lost).await?;
                }
                Err(CommitError::Xcap(e)) => return Err(e),
            }
        }
    }

    /// One PUT on `current`, the stored version read for it.
    async fn put_attempt(
        &self,
        target: &Target,
        req: &XcapRequest,
        current: Option<StoredDocument>,
    ) -> Result<XcapResponse, CommitError> {
        if current.is_none() {
            self.check_no_directory(target).await?;
        }
        let current_etag = current.as_ref().map(|d| d.etag.clone());
        // ET-08: preconditions before any body check.
        if req.preconditions.evaluate(current_etag.as_deref(), false)
            != PreconditionOutcome::Proceed
        {
            return Err(XcapError::PreconditionFailed.into());
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
        let edit = match (&target.node, &current) {
            (Some(node), _) => put_edit(node, &new_doc, created),
            (None, Some(old))
                if req.body.len() <= OFF_RUNTIME_BYTES && self.watched(&target.key) =>
            {
                // The parse kept from the last write of a watched document, else a new one.
                let previous = self.cache.get(&target.key, &old.etag);
                replace_edit(old, previous, &new_doc, &self.settings.limits)
            }
            (None, _) => None,
        };
        let origin = ChangeOrigin {
            principal: req.principal.audit_name(),
            edit,
        };
        let (etag, _) = self.commit(target, expect, new_doc, &origin).await?;
        Ok(XcapResponse {
            status: if created { 201 } else { 200 },
            content_type: None,
            etag: Some(etag),
            body: None,
        })
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
                        .await
                        .map_err(storage_error)?;
                if !exists {
                    // OP-03: the directory does not exist.
                    return Err(XcapError::conflict(Conflict::NoParent {
                        ancestor: Some(target.ancestor_uri(&self.settings.public_root, None)),
                    }));
                }
            }
        }
        Ok(())
    }

    /// URI-07: a directory and a document of the same name cannot both exist. Asked only
    /// while the document is absent (a stored document was checked when it was created).
    async fn check_no_directory(&self, target: &Target) -> Result<(), XcapError> {
        if self
            .store
            .directory_exists(&target.key.auid, &target.key.tree, &target.key.path)
            .await
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

    pub(super) async fn delete(
        &self,
        target: &Target,
        req: &XcapRequest,
    ) -> Result<XcapResponse, XcapError> {
        self.refuse_write(target)?;
        self.authorize(target, &req.principal, Operation::Delete)?;
        self.read_modify_write(&target.key, |current| {
            self.delete_attempt(target, req, current)
        })
        .await
    }

    /// One DELETE on `current`, the stored version read for it.
    async fn delete_attempt(
        &self,
        target: &Target,
        req: &XcapRequest,
        current: Option<StoredDocument>,
    ) -> Result<XcapResponse, CommitError> {
        let current = current.ok_or(XcapError::NotFound("no such document"))?;
        if req.preconditions.evaluate(Some(&current.etag), false) != PreconditionOutcome::Proceed {
            return Err(XcapError::PreconditionFailed.into());
        }
        let expect = Expect::Etag(current.etag.clone());
        let mut origin = ChangeOrigin {
            principal: req.principal.audit_name(),
            edit: None,
        };
        // OP-05 / OP-36: no ETag once the document is gone; the new one otherwise.
        let etag = match &target.node {
            None => {
                self.commit_delete(target, expect, &origin).await?;
                None
            }
            Some(node) => {
                let parsed = self.parsed(&target.key, &current)?;
                let pending = xml::delete_node_pending(parsed.text(), parsed.doc(), &node.selector)
                    .map_err(get_error)?;
                origin.edit = delete_edit(node, &parsed);
                let (new_doc, _) = self.finish(target, Tentative::Pending(pending)).await?;
                let (etag, _) = self.commit(target, expect, new_doc, &origin).await?;
                Some(etag)
            }
        };
        Ok(XcapResponse {
            status: 200,
            content_type: None,
            etag,
            body: None,
        })
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
        // Resolves once durable; the wait holds no thread.
        let committed = self
            .store
            .put(
                &target.key,
                &expect,
                doc.shared_text(),
                &etag,
                now_ms(),
                origin,
            )
            .await
            .map_err(commit_error)?;
        if let Some(g) = unique.as_mut() {
            g.record(&target.key, Some(&doc));
        }
        // Keep the parse of element and attribute edits for the next request on this document;
        // an unwatched whole-document PUT says nothing about what comes next, so it only drops
        // the old one.
        // A watched document keeps it too: its next whole-document PUT is diffed against it.
        if target.node.is_some() || origin.edit.is_some() {
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
        let deleted = self
            .store
            .delete(&target.key, &expect, origin)
            .await
            .map_err(commit_error)?;
        if deleted.is_none() {
            return Err(CommitError::Xcap(XcapError::NotFound("no such document")));
        }
        if let Some(g) = unique.as_mut() {
            g.record(&target.key, None);
        }
        self.cache.remove(&target.key);
        Ok(())
    }
}

/// The change-record edit of a node PUT (RFC 5874 §4 needs the new node and its place).
fn put_edit(node: &Node, doc: &ParsedDoc, created: bool) -> Option<Edit> {
    let (kind, value, position, placement) = match node.kind {
        // One selector evaluation for everything the record keeps of the element.
        NodeTarget::Element => {
            let facts = xml::element_facts(doc.text(), doc.doc(), &node.selector).ok();
            let (value, position, placement) = match facts {
                Some(f) => (Some(f.text), f.position, f.placement.filter(|_| created)),
                None => (None, None, None),
            };
            (EditKind::PutElement, value, position, placement)
        }
        NodeTarget::Attribute => (
            EditKind::PutAttribute,
            xml::get_attribute_in(doc.doc(), &node.selector).ok(),
            None,
            None,
        ),
        NodeTarget::Namespaces => return None,
    };
    Some(edit_of(node, kind, value, position, created, placement))
}

/// The change-record edit of a whole-document PUT that replaced `old`: the RFC 5261 patch
/// from it (XD-05a), when there is one smaller than the new document.
fn replace_edit(
    old: &StoredDocument,
    parsed: Option<Arc<ParsedDoc>>,
    new: &ParsedDoc,
    limits: &Limits,
) -> Option<Edit> {
    let ops = if *old.body == *new.text() {
        Vec::new()
    } else {
        let previous = match parsed {
            Some(p) => p,
            None => Arc::new(ParsedDoc::parse(old.body.clone(), limits).ok()?),
        };
        tree_patch(previous.text(), previous.doc(), new.text(), new.doc())?
    };
    Some(Edit {
        kind: EditKind::ReplaceDocument,
        node_selector: String::new(),
        namespaces: Vec::new(),
        value: Some(tree::encode(&ops)),
        position: None,
        created: false,
        placement: None,
    })
}

/// The change-record edit of a node DELETE, positioned in the document before the delete.
fn delete_edit(node: &Node, old: &ParsedDoc) -> Option<Edit> {
    let (kind, position) = match node.kind {
        NodeTarget::Element => (
            EditKind::DeleteElement,
            xml::element_position(old.doc(), &node.selector),
        ),
        NodeTarget::Attribute => (EditKind::DeleteAttribute, None),
        NodeTarget::Namespaces => return None,
    };
    Some(edit_of(node, kind, None, position, false, None))
}

fn edit_of(
    node: &Node,
    kind: EditKind,
    value: Option<String>,
    position: Option<u32>,
    created: bool,
    placement: Option<Placement>,
) -> Edit {
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
        placement,
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

/// Whether `e` may answer the request about the version the attempt was given, rather than
/// be the store refusing the write.
fn about_the_version(e: &XcapError) -> bool {
    !matches!(
        e,
        XcapError::Unavailable | XcapError::WritesPaused { .. } | XcapError::Internal(_)
    )
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
