//! The IM policy decision service (issue #4 scope 5-6; standards.md IM-24..IM-28, CP-21,
//! IX-07..IX-09): "may X send an IM to Y?". It reads the recipient's `im-rules` documents and
//! the resource lists their `ocp:external-list` anchors name, evaluates them with the
//! common-policy engine and combines by maximum, falling back to the configured default when no
//! rule matched or a broken reference decided the outcome.
//!
//! Freshness: every decision asks the store for the current ETag of each document it uses and
//! reuses parses only for that exact ETag, so a write is visible to the very next decision
//! (read-your-writes) without waiting for an invalidation event.

pub mod http;
pub mod remote;

use crate::identity::xui::Xui;
use crate::policy::{
    self, evaluate_all, im_action, ImAction, ListLookup, ListResolver, Media, Ruleset,
};
use crate::storage::{block_on, off_runtime};
use crate::storage::{DocKey, TreeKey};
use crate::xcap::error::XcapError;
use crate::xdms::target::{Node, NodeError};
use crate::xdms::Xdms;
use crate::xml::{self, ParsedDoc};
use parking_lot::Mutex;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use thiserror::Error;

const IM_RULES: &str = "im-rules";
/// Nested `<external>` and `<entry-ref>` hops followed before a reference counts as broken.
const MAX_LIST_DEPTH: usize = 8;

#[derive(Debug, Error)]
pub enum DecisionError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Xcap(#[from] XcapError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecideRequest {
    pub recipient: String,
    /// The sender's authenticated identity (P-Asserted-Identity), None when unauthenticated.
    pub sender: Option<String>,
    /// "pager", "session", "file-transfer" (CP-27a); None = unspecified.
    pub media: Option<String>,
    /// Identity privacy requested (CP-22).
    pub anonymous: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentVersion {
    pub uri: String,
    pub etag: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecideResponse {
    pub action: ImAction,
    pub matched_rules: Vec<String>,
    pub documents: Vec<DocumentVersion>,
    /// References that could not be resolved (the default applied if they mattered).
    pub unresolved: Vec<String>,
    pub default_applied: bool,
    pub allow_offline_storage: Option<bool>,
    /// The recipient asks for their conversations with this sender to be recorded (IM-32).
    pub record_history: Option<bool>,
}

pub struct DecisionService {
    xdms: Arc<Xdms>,
    default_action: ImAction,
    /// Ruleset models by document, valid for one ETag.
    rulesets: Mutex<HashMap<DocKey, (String, Arc<Ruleset>)>>,
    /// Member indexes of self-contained lists, valid for one ETag.
    lists: ListCache,
    /// Lists kept by a remote Shared XDMS (issue #4 scope 5).
    remote: Option<remote::RemoteLists>,
}

/// A ruleset model with the ETag of the document it came from.
type VersionedRuleset = (String, Arc<Ruleset>);

/// Documents fetched from a remote Shared XDMS for one decision.
type Prefetched = HashMap<DocKey, (String, Arc<ParsedDoc>)>;

impl DecisionService {
    pub fn new(
        xdms: Arc<Xdms>,
        default_action: ImAction,
        remote: Option<remote::RemoteLists>,
    ) -> DecisionService {
        DecisionService {
            xdms,
            default_action,
            rulesets: Mutex::new(HashMap::new()),
            lists: Mutex::new(HashMap::new()),
            remote,
        }
    }

    /// Decides with lists from the in-process XDMS only. The policy engine resolves lists
    /// synchronously, so this waits for each document read: call it where a thread may wait
    /// (a blocking thread, or [`DecisionService::decide_async`]).
    pub fn decide(&self, req: &DecideRequest, now: i64) -> Result<DecideResponse, DecisionError> {
        self.decide_with(req, now, &Prefetched::new())
    }

    /// Decides, first fetching the current version of every referenced list that a remote
    /// Shared XDMS keeps (each decision fetches again: read-your-writes across processes).
    pub async fn decide_async(
        &self,
        req: &DecideRequest,
        now: i64,
    ) -> Result<DecideResponse, DecisionError> {
        let Some(remote) = &self.remote else {
            return off_runtime(|| self.decide(req, now));
        };
        let recipient = self.recipient(req)?;
        let mut anchors = Vec::new();
        for (_, (_, rs)) in off_runtime(|| self.recipient_rulesets(&recipient))? {
            for rule in &rs.rules {
                for c in &rule.conditions {
                    if let policy::Condition::ExternalList(list) = c {
                        anchors.extend(list.iter().cloned());
                    }
                }
            }
        }
        let prefetched = remote.prefetch(&self.xdms, anchors).await;
        off_runtime(|| self.decide_with(req, now, &prefetched))
    }

    /// The member URIs of the lists at `externals` (XCAP URIs of `<list>` elements), resolved
    /// as `ocp:external-list` anchors are (CP-21: entries, nested lists, entry-refs and
    /// external lists, loops refused), each on its own: the members found, and why the lists
    /// that could not be resolved were not.
    pub async fn list_members(&self, externals: Vec<String>) -> (Vec<String>, Vec<String>) {
        let prefetched = match &self.remote {
            Some(remote) => remote.prefetch(&self.xdms, externals.clone()).await,
            None => Prefetched::new(),
        };
        off_runtime(|| {
            let resolver = XdmsLists {
                xdms: &self.xdms,
                prefetched: &prefetched,
                cache: &self.lists,
                memo: RefCell::new(HashMap::new()),
                used: RefCell::new(Vec::new()),
            };
            let (mut members, mut unresolved) = (Vec::new(), Vec::new());
            for anchor in &externals {
                match resolver.members(anchor, &mut HashSet::new(), 0) {
                    Ok(index) => members.extend(index.uris().cloned()),
                    Err(why) => unresolved.push(why),
                }
            }
            (members, unresolved)
        })
    }

    /// Whether some rule of `owner`'s im-rules says `<record-history>true` (IM-32): without
    /// one no decision can, so callers skip deciding (the parsed rulesets are cached).
    pub fn asks_for_history(&self, owner: &str) -> Result<bool, DecisionError> {
        let owner = self.xui(owner, "owner")?;
        let rulesets = off_runtime(|| self.recipient_rulesets(&owner))?;
        Ok(rulesets.iter().any(|(_, (_, rs))| {
            rs.rules
                .iter()
                .any(|r| r.actions.record_history == Some(true))
        }))
    }

    fn recipient(&self, req: &DecideRequest) -> Result<Xui, DecisionError> {
        self.xui(&req.recipient, "recipient")
    }

    /// `uri` as a user (`what` names it in the refusal).
    fn xui(&self, uri: &str, what: &str) -> Result<Xui, DecisionError> {
        let domain = self.xdms.settings().default_domain.clone();
        Xui::parse(uri, domain.as_deref())
            .map_err(|_| DecisionError::BadRequest(format!("{what} is not a SIP or tel URI")))
    }

    /// Every im-rules document of the recipient (all of them apply), with its key.
    fn recipient_rulesets(
        &self,
        recipient: &Xui,
    ) -> Result<Vec<(DocKey, VersionedRuleset)>, DecisionError> {
        let mut out = Vec::new();
        for meta in block_on(self.xdms.store().list_user(recipient.as_str()))
            .map_err(|e| XcapError::Internal(e.to_string()))?
        {
            if meta.key.auid != IM_RULES {
                continue;
            }
            if let Some(v) = self.ruleset(&meta.key)? {
                out.push((meta.key, v));
            }
        }
        Ok(out)
    }

    fn decide_with(
        &self,
        req: &DecideRequest,
        now: i64,
        prefetched: &Prefetched,
    ) -> Result<DecideResponse, DecisionError> {
        let recipient = self.recipient(req)?;
        let sender = match &req.sender {
            Some(s) if !s.is_empty() => Some(self.xui(s, "sender")?.as_str().to_string()),
            _ => None,
        };
        let media = match req.media.as_deref() {
            None | Some("") => None,
            Some("pager") | Some("pager-mode-message") => Some(Media::PagerModeMessage),
            Some("session") | Some("message-session") => Some(Media::MessageSession),
            Some("file-transfer") => Some(Media::FileTransfer),
            Some(other) => {
                return Err(DecisionError::BadRequest(format!(
                    "unknown media {other:?}"
                )))
            }
        };
        let mut documents = Vec::new();
        let mut rulesets = Vec::new();
        for (key, (etag, ruleset)) in self.recipient_rulesets(&recipient)? {
            documents.push(DocumentVersion {
                uri: format!(
                    "{}/{}",
                    self.xdms.settings().public_root,
                    key.document_selector()
                ),
                etag,
            });
            rulesets.push(ruleset);
        }
        let identities: Vec<String> = sender.into_iter().collect();
        let resolver = XdmsLists {
            xdms: &self.xdms,
            prefetched,
            cache: &self.lists,
            memo: RefCell::new(HashMap::new()),
            used: RefCell::new(Vec::new()),
        };
        let refs: Vec<&Ruleset> = rulesets.iter().map(|r| r.as_ref()).collect();
        let decision = evaluate_all(
            &refs,
            &policy::Request {
                identities: &identities,
                anonymous: req.anonymous || identities.is_empty(),
                media,
                service: None,
                sphere: None,
                now,
            },
            &resolver,
        );
        let action = im_action(&decision, self.default_action);
        let default_applied = decision.matched_rules.is_empty() || decision.unresolved_decisive;
        for used in resolver.used.into_inner() {
            if !documents.contains(&used) {
                documents.push(used);
            }
        }
        Ok(DecideResponse {
            action,
            matched_rules: decision.matched_rules,
            documents,
            unresolved: decision.unresolved,
            default_applied,
            allow_offline_storage: decision.allow_offline_storage,
            record_history: decision.record_history,
        })
    }

    fn ruleset(&self, key: &DocKey) -> Result<Option<(String, Arc<Ruleset>)>, DecisionError> {
        let Some((etag, parsed)) = block_on(self.xdms.current_document(key))? else {
            return Ok(None);
        };
        if let Some((cached_etag, rs)) = self.rulesets.lock().get(key) {
            if *cached_etag == etag {
                return Ok(Some((etag, rs.clone())));
            }
        }
        let rs =
            Arc::new(Ruleset::from_document(parsed.doc()).map_err(|e| {
                XcapError::Internal(format!("stored im-rules does not parse: {e}"))
            })?);
        self.rulesets
            .lock()
            .insert(key.clone(), (etag.clone(), rs.clone()));
        Ok(Some((etag, rs)))
    }
}

/// The members of one list version, indexed by a coarse key (lowercase, parameters cut,
/// tel separators dropped); candidates are confirmed with the exact CP-06 comparison.
#[derive(Debug, Default)]
pub struct ListIndex {
    by_key: HashMap<String, Vec<String>>,
}

impl ListIndex {
    fn insert(&mut self, uri: String) {
        self.by_key.entry(coarse_key(&uri)).or_default().push(uri);
    }

    fn extend(&mut self, other: &ListIndex) {
        for v in other.by_key.values() {
            for u in v {
                self.insert(u.clone());
            }
        }
    }

    fn uris(&self) -> impl Iterator<Item = &String> {
        self.by_key.values().flatten()
    }

    fn contains(&self, identity: &str) -> bool {
        self.by_key
            .get(&coarse_key(identity))
            .is_some_and(|c| c.iter().any(|m| crate::identity::uri_equal(m, identity)))
    }
}

fn coarse_key(uri: &str) -> String {
    let base = uri
        .trim()
        .split([';', '?'])
        .next()
        .unwrap_or("")
        .to_lowercase();
    if base.starts_with("tel:") {
        base.chars()
            .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
            .collect()
    } else {
        base
    }
}

type ListCache = Mutex<HashMap<(DocKey, String), (String, Arc<ListIndex>)>>;

/// Resolves `ocp:external-list` anchors against the in-process XDMS (CP-21): members are the
/// `<entry uri>` of the list, of nested lists, of `<entry-ref>` targets and of `<external>`
/// lists, with loop protection. Any failure makes the whole anchor unresolved. Self-contained
/// lists are indexed once per document version.
struct XdmsLists<'a> {
    xdms: &'a Xdms,
    prefetched: &'a Prefetched,
    cache: &'a ListCache,
    memo: RefCell<HashMap<String, Result<Arc<ListIndex>, String>>>,
    used: RefCell<Vec<DocumentVersion>>,
}

impl ListResolver for XdmsLists<'_> {
    fn contains(&self, anchor: &str, identity: &str) -> ListLookup {
        let known = self.memo.borrow().get(anchor).cloned();
        let members = match known {
            Some(m) => m,
            None => {
                let mut visited = HashSet::new();
                let m = self.members(anchor, &mut visited, 0);
                self.memo.borrow_mut().insert(anchor.to_string(), m.clone());
                m
            }
        };
        match members {
            Ok(list) if list.contains(identity) => ListLookup::Member,
            Ok(_) => ListLookup::NotMember,
            Err(reason) => ListLookup::Unresolved(reason),
        }
    }
}

impl XdmsLists<'_> {
    /// Resolves an absolute XCAP URI (or one relative to the XCAP root) to its document
    /// version, parse and node selector.
    fn resolve(&self, uri: &str) -> Result<(DocKey, String, Arc<ParsedDoc>, Node), String> {
        let settings = self.xdms.settings();
        let (key, node) = locate_reference(self.xdms, uri)?;
        let (etag, parsed) = match self.prefetched.get(&key) {
            Some((etag, doc)) => (etag.clone(), doc.clone()),
            None => block_on(self.xdms.current_document(&key))
                .map_err(|_| format!("{uri}: unreadable"))?
                .ok_or_else(|| format!("{uri}: no such document"))?,
        };
        let target_key = key.clone();
        let version = DocumentVersion {
            uri: format!(
                "{}/{}",
                settings.public_root,
                target_key.document_selector()
            ),
            etag: etag.clone(),
        };
        if !self.used.borrow().contains(&version) {
            self.used.borrow_mut().push(version);
        }
        Ok((target_key, etag, parsed, node))
    }

    /// The `uri` of the entry an `<entry-ref ref>` points at.
    fn entry_uri(&self, reference: &str) -> Result<String, String> {
        let (_, _, doc, entry) = self.resolve(reference)?;
        xml::select_element(doc.doc(), &entry.selector)
            .ok()
            .and_then(|e| e.attribute("uri").map(str::to_string))
            .ok_or_else(|| format!("{reference}: no entry with a uri"))
    }

    fn members(
        &self,
        anchor: &str,
        visited: &mut HashSet<String>,
        depth: usize,
    ) -> Result<Arc<ListIndex>, String> {
        if depth > MAX_LIST_DEPTH || !visited.insert(anchor.to_string()) {
            return Err(format!("{anchor}: reference loop or too deep"));
        }
        let (key, etag, parsed, node) = self.resolve(anchor)?;
        let cache_key = (key, node.parsed.to_string());
        if let Some((e, idx)) = self.cache.lock().get(&cache_key) {
            if *e == etag {
                return Ok(idx.clone());
            }
        }
        let list = xml::select_element(parsed.doc(), &node.selector)
            .map_err(|_| format!("{anchor}: selects no element"))?;
        let mut index = ListIndex::default();
        let mut follow: Vec<(bool, String)> = Vec::new(); // (is external anchor, reference)
        let mut stack = vec![list];
        while let Some(n) = stack.pop() {
            for c in n.children().filter(|c| c.is_element()) {
                match c.tag_name().name() {
                    "entry" => {
                        if let Some(u) = c.attribute("uri") {
                            index.insert(u.to_string());
                        }
                    }
                    "list" => stack.push(c),
                    "entry-ref" => {
                        follow.extend(c.attribute("ref").map(|r| (false, r.to_string())))
                    }
                    "external" => {
                        follow.extend(c.attribute("anchor").map(|a| (true, a.to_string())))
                    }
                    _ => {}
                }
            }
        }
        let self_contained = follow.is_empty();
        for (external, reference) in follow {
            if external {
                let nested = self.members(&reference, visited, depth + 1)?;
                index.extend(&nested);
            } else {
                index.insert(self.entry_uri(&reference)?);
            }
        }
        let index = Arc::new(index);
        if self_contained {
            self.cache.lock().insert(cache_key, (etag, index.clone()));
        }
        Ok(index)
    }
}

/// The key of a user's im-rules document, for callers that write one.
pub fn im_rules_key(xui: &str, path: &str) -> DocKey {
    DocKey {
        auid: IM_RULES.to_string(),
        tree: TreeKey::User(xui.to_string()),
        path: path.to_string(),
    }
}

/// Default document namespaces of the list usages, for references to usages this process does
/// not serve itself (its registry then does not know them).
fn list_namespace(auid: &str) -> Option<&'static str> {
    match auid {
        "resource-lists" | "org.openmobilealliance.group-usage-list" => {
            Some("urn:ietf:params:xml:ns:resource-lists")
        }
        _ => None,
    }
}

/// The document and node an XCAP reference names (absolute, or relative to the XCAP root).
pub(crate) fn locate_reference(xdms: &Xdms, uri: &str) -> Result<(DocKey, Node), String> {
    let settings = xdms.settings();
    let rel = uri
        .strip_prefix(&settings.public_root)
        .map(|r| r.trim_start_matches('/'))
        .or_else(|| (!uri.contains("://")).then_some(uri.trim_start_matches('/')))
        .ok_or_else(|| format!("{uri}: not under this XCAP root"))?;
    let path = format!("{}/{rel}", settings.root_path);
    let parsed = crate::xcap::uri::parse(&path, &settings.root_path)
        .map_err(|_| format!("{uri}: not an XCAP URI"))?;
    let crate::xcap::uri::Tree::Users(raw) = &parsed.tree else {
        return Err(format!("{uri}: not in a users tree"));
    };
    let xui = Xui::parse(raw, settings.default_domain.as_deref())
        .map_err(|_| format!("{uri}: bad XUI"))?;
    let default_ns = match xdms.registry().get(&parsed.auid) {
        Some(u) => u.descriptor.default_namespace.clone(),
        None => list_namespace(&parsed.auid).map(str::to_string),
    };
    let text = parsed
        .node_selector
        .as_deref()
        .ok_or_else(|| format!("{uri}: no node selector"))?;
    let node = Node::resolve(text, parsed.query.as_deref(), default_ns.as_deref()).map_err(
        |e| match e {
            NodeError::UnboundPrefix => format!("{uri}: unbound prefix"),
            _ => format!("{uri}: bad node selector"),
        },
    )?;
    let key = DocKey {
        auid: parsed.auid.clone(),
        tree: TreeKey::User(xui.as_str().to_string()),
        path: parsed.doc_path.join("/"),
    };
    Ok((key, node))
}
