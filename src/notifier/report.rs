//! What an xcap-diff NOTIFY says about documents (RFC 5874 §3, §6; RFC 5875 §4.3, §4.7;
//! standards.md XD-05, XD-06, XD-14, XE-07, XE-13): per document, the chain of changes since
//! the ETag last reported, folded into `<document>` reports for the subscription's
//! diff-processing mode. Pure: change records in, reports out.
//!
//! A change extends a document's chain only when its previous ETag is the chain's end, so every
//! report starts where the last one ended (XD-14), whatever the feed replays: a change whose new
//! ETag was already reported is skipped, and so is one older than a version read directly
//! (an initial or refreshed state can be read ahead of the feed; the feed has no gaps, so the
//! change that produced the version read follows and is skipped too).

use super::request::DiffProcessing;
use crate::event::{ChangeRecord, Edit};
use crate::xcap::keys::DocKey;
use crate::xcap_diff::patch::patch_ops;
use crate::xcap_diff::{DocumentChange, DocumentReport, PatchOp, Prefixes};

/// Steps kept per document between two NOTIFYs; beyond it the chain is reported in the fetch
/// form (memory stays bounded while a NOTIFY waits for its answer).
pub const MAX_STEPS: usize = 256;

/// One change of a chain: its ETags and, for element and attribute edits, the edit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    previous: Option<String>,
    new: Option<String>,
    edit: Option<Edit>,
}

/// The changes of one document not yet reported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chain {
    key: DocKey,
    start: Option<String>,
    end: Option<String>,
    steps: Vec<Step>,
    /// False once a step was dropped (too many).
    complete: bool,
}

/// The reported ETag of every document of a subscription and the changes since.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Documents {
    /// The ETag last reported for each existing document (absent: reported as not existing,
    /// or never reported).
    reported: Reported,
    /// In order of their first change (XE-13).
    pending: Vec<Chain>,
}

impl Documents {
    /// A subscription whose client was last told these ETags.
    pub fn with_reported(reported: impl IntoIterator<Item = (DocKey, String)>) -> Documents {
        Documents {
            reported: Reported::from_iter(reported),
            pending: Vec::new(),
        }
    }

    /// The ETags reported so far.
    pub fn reported(&self) -> impl Iterator<Item = (&DocKey, &String)> {
        self.reported.0.iter().map(|(k, e)| (k, e))
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes a change of a watched document into account; false when it is not part of the
    /// chain (already reported, or older than the state reported).
    pub fn accept(&mut self, change: &ChangeRecord) -> bool {
        let i = match self.pending.iter().position(|c| c.key == change.key) {
            Some(i) => i,
            None => {
                let reported = self.reported.get(&change.key).cloned();
                self.pending.push(Chain {
                    key: change.key.clone(),
                    start: reported.clone(),
                    end: reported,
                    steps: Vec::new(),
                    complete: true,
                });
                self.pending.len() - 1
            }
        };
        let chain = &mut self.pending[i];
        if change.previous_etag != chain.end || change.new_etag == chain.end {
            if chain.steps.is_empty() && chain.complete {
                self.pending.remove(i);
            }
            return false;
        }
        chain.end = change.new_etag.clone();
        if chain.steps.len() < MAX_STEPS && chain.complete {
            chain.steps.push(Step {
                previous: change.previous_etag.clone(),
                new: change.new_etag.clone(),
                edit: change.origin.edit.clone(),
            });
        } else {
            chain.steps.clear();
            chain.complete = false;
        }
        true
    }

    /// The `<document>` reports of every pending chain, in order, for `mode`; afterwards the
    /// chains' ends count as reported. `sel_of` names a document as the subscription does
    /// (XE-11), `default_ns` gives a usage's default namespace for patch selectors (XE-12).
    pub fn take_reports<'a>(
        &mut self,
        mode: DiffProcessing,
        sel_of: impl Fn(&DocKey) -> String,
        default_ns: impl Fn(&str) -> Option<&'a str>,
        prefixes: &mut Prefixes,
    ) -> Vec<DocumentReport> {
        let mut reports = Vec::new();
        for chain in std::mem::take(&mut self.pending) {
            match &chain.end {
                Some(e) => self.reported.insert(chain.key.clone(), e.clone()),
                None => self.reported.remove(&chain.key),
            };
            if chain.start == chain.end {
                continue; // created and deleted in between: nothing the client knew changed
            }
            let sel = sel_of(&chain.key);
            let patches = match mode {
                DiffProcessing::NoPatching => None, // XE-07: never a patch
                _ => patches(&chain, default_ns(&chain.key.auid), prefixes),
            };
            match (patches, mode) {
                (Some(per_step), DiffProcessing::XcapPatching) => {
                    // XD-06: one <document> per version, applied in order.
                    for (step, ops) in chain.steps.iter().zip(per_step) {
                        reports.push(DocumentReport {
                            sel: sel.clone(),
                            previous_etag: step.previous.clone(),
                            new_etag: step.new.clone(),
                            change: patched(ops),
                        });
                    }
                }
                (Some(per_step), _) => reports.push(DocumentReport {
                    sel,
                    previous_etag: chain.start,
                    new_etag: chain.end,
                    change: patched(per_step.into_iter().flatten().collect()),
                }),
                // XD-05b/d/e: fetch (or gone), chained from the last report.
                (None, _) => reports.push(DocumentReport {
                    sel,
                    previous_etag: chain.start,
                    new_etag: chain.end,
                    change: DocumentChange::Fetch,
                }),
            }
        }
        reports
    }

    /// The document is now at `current`, read directly (changes were trimmed before they were
    /// read): a step from where its chain ends to it, reported in the fetch form (XD-14 holds).
    pub fn jump(&mut self, key: &DocKey, current: Option<String>) {
        let end = match self.pending.iter().find(|c| c.key == *key) {
            Some(c) => c.end.clone(),
            None => self.reported.get(key).cloned(),
        };
        if end != current {
            self.accept(&ChangeRecord {
                seq: 0,
                key: key.clone(),
                previous_etag: end,
                new_etag: current,
                at_ms: 0,
                origin: crate::event::ChangeOrigin::default(),
            });
        }
    }

    /// Every document reported or with pending changes.
    pub fn known(&self) -> Vec<DocKey> {
        let mut keys: Vec<DocKey> = self.reported.0.iter().map(|(k, _)| k.clone()).collect();
        for c in &self.pending {
            if self.reported.get(&c.key).is_none() {
                keys.push(c.key.clone());
            }
        }
        keys
    }

    /// The state was reported again in full (a refresh, XE-16): pending chains are superseded.
    pub fn reset(&mut self, current: impl IntoIterator<Item = (DocKey, String)>) {
        self.reported = Reported::from_iter(current);
        self.pending.clear();
    }
}

/// ETags by document, sorted by key: most subscriptions watch one or a few documents, and a
/// vector of exactly that many costs a fraction of a hash table's smallest allocation (10,000
/// idle subscriptions are a benchmark figure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Reported(Vec<(DocKey, String)>);

impl Reported {
    fn from_iter(items: impl IntoIterator<Item = (DocKey, String)>) -> Reported {
        let mut items: Vec<(DocKey, String)> = items.into_iter().collect();
        // The last ETag given for a key wins: reversed, then a stable sort keeps it first.
        items.reverse();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items.dedup_by(|later, earlier| later.0 == earlier.0);
        items.shrink_to_fit();
        Reported(items)
    }

    fn find(&self, key: &DocKey) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.cmp(key))
    }

    fn get(&self, key: &DocKey) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    fn insert(&mut self, key: DocKey, etag: String) {
        match self.find(&key) {
            Ok(i) => self.0[i].1 = etag,
            Err(i) => self.0.insert(i, (key, etag)),
        }
    }

    fn remove(&mut self, key: &DocKey) {
        if let Ok(i) = self.find(key) {
            self.0.remove(i);
        }
    }
}

/// The entity-tag of a subscription's reported state (RFC 5839 §3: `SIP-ETag` on NOTIFYs,
/// matched by `Suppress-If-Match`, XE-16): a digest of every reported document ETag and
/// component state, independent of the order they were subscribed or reported in.
pub fn state_tag<'a>(
    docs: &Documents,
    components: impl Iterator<Item = (&'a String, &'a Option<String>)>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut lines: Vec<String> = docs
        .reported()
        .map(|(k, e)| format!("d\0{}\0{e}", k.document_selector()))
        .collect();
    lines.extend(components.map(|(sel, d)| format!("c\0{sel}\0{}", d.as_deref().unwrap_or("-"))));
    lines.sort();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    h.finalize()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// XD-05c: a patch with no operation (the same body PUT again) says only the ETag changed.
fn patched(ops: Vec<PatchOp>) -> DocumentChange {
    if ops.is_empty() {
        DocumentChange::BodyNotChanged
    } else {
        DocumentChange::Patched(ops)
    }
}

/// The patch of every step, or `None` when one step has none (a whole-document write, a
/// creation or deletion, or an edit without a patch form): then the chain is fetched.
fn patches(
    chain: &Chain,
    default_ns: Option<&str>,
    prefixes: &mut Prefixes,
) -> Option<Vec<Vec<PatchOp>>> {
    if !chain.complete || chain.start.is_none() || chain.end.is_none() {
        return None;
    }
    // Prefixes are committed only when the whole chain has patches.
    let mut scratch = prefixes.clone();
    let mut out = Vec::with_capacity(chain.steps.len());
    for step in &chain.steps {
        let edit = step.edit.as_ref()?;
        step.previous.as_ref()?;
        step.new.as_ref()?;
        out.push(patch_ops(edit, default_ns, &mut scratch).ok()?);
    }
    *prefixes = scratch;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ChangeOrigin, EditKind};
    use crate::xcap::keys::TreeKey;

    const RL: &str = "urn:ietf:params:xml:ns:resource-lists";

    fn key(path: &str) -> DocKey {
        DocKey::new(
            "resource-lists",
            TreeKey::User("sip:a@x".into()),
            path.to_string(),
        )
    }

    fn change(seq: u64, path: &str, prev: Option<&str>, new: Option<&str>) -> ChangeRecord {
        ChangeRecord {
            seq,
            key: key(path),
            previous_etag: prev.map(str::to_string),
            new_etag: new.map(str::to_string),
            at_ms: 0,
            origin: ChangeOrigin::default(),
        }
    }

    fn attr_edit(seq: u64, prev: &str, new: &str, value: &str) -> ChangeRecord {
        let mut c = change(seq, "index", Some(prev), Some(new));
        c.origin.edit = Some(Edit {
            kind: EditKind::PutAttribute,
            node_selector: "resource-lists/list/@name".into(),
            namespaces: Vec::new(),
            value: Some(value.into()),
            position: None,
            created: false,
            placement: None,
        });
        c
    }

    fn take(d: &mut Documents, mode: DiffProcessing) -> Vec<DocumentReport> {
        d.take_reports(
            mode,
            |k| k.document_selector(),
            |_| Some(RL),
            &mut Prefixes::default(),
        )
    }

    // XD-14: reports chain from the last reported ETag; replayed and older changes are
    // skipped; XD-05b: several changes in no-patching mode are one fetch report.
    #[test]
    fn xd14_chained_and_coalesced() {
        let mut d = Documents::with_reported([(key("index"), "b".to_string())]);
        assert!(
            !d.accept(&change(1, "index", Some("a"), Some("b"))),
            "reported"
        );
        assert!(!d.accept(&change(1, "index", None, Some("a"))), "older");
        assert!(!d.has_pending());
        assert!(d.accept(&change(2, "index", Some("b"), Some("c"))));
        assert!(d.accept(&change(3, "index", Some("c"), Some("d"))));
        let r = take(&mut d, DiffProcessing::NoPatching);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].previous_etag.as_deref(), r[0].new_etag.as_deref()),
            (Some("b"), Some("d"))
        );
        assert_eq!(r[0].change, DocumentChange::Fetch);
        assert!(d.accept(&change(4, "index", Some("d"), None)));
        let r = take(&mut d, DiffProcessing::XcapPatching);
        assert_eq!(
            (r[0].previous_etag.as_deref(), r[0].new_etag.as_deref()),
            (Some("d"), None),
            "XD-05e: removed"
        );
        // XD-05d: created (in a collection), then created and deleted between NOTIFYs.
        assert!(d.accept(&change(5, "other", None, Some("n"))));
        assert!(d.accept(&change(6, "gone", None, Some("g"))));
        assert!(d.accept(&change(7, "gone", Some("g"), None)));
        let r = take(&mut d, DiffProcessing::Aggregate);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].previous_etag.as_deref(), r[0].new_etag.as_deref()),
            (None, Some("n"))
        );
    }

    // XD-06, XE-07: xcap-patching gives one patched <document> per version, aggregate one for
    // all; a whole-document write in the chain makes it a fetch report; no-patching never
    // carries a patch.
    #[test]
    fn xe07_modes() {
        let edits = [attr_edit(1, "a", "b", "x"), attr_edit(2, "b", "c", "y")];
        let fresh = || Documents::with_reported([(key("index"), "a".to_string())]);
        let mut d = fresh();
        edits.iter().for_each(|e| assert!(d.accept(e)));
        let r = take(&mut d, DiffProcessing::XcapPatching);
        assert_eq!(r.len(), 2);
        assert!(matches!(&r[1].change, DocumentChange::Patched(ops) if ops.len() == 1));
        assert_eq!(r[1].previous_etag.as_deref(), Some("b"));
        let mut d = fresh();
        edits.iter().for_each(|e| assert!(d.accept(e)));
        let r = take(&mut d, DiffProcessing::Aggregate);
        assert_eq!(r.len(), 1);
        assert!(matches!(&r[0].change, DocumentChange::Patched(ops) if ops.len() == 2));
        let mut d = fresh();
        edits.iter().for_each(|e| assert!(d.accept(e)));
        assert_eq!(
            take(&mut d, DiffProcessing::NoPatching)[0].change,
            DocumentChange::Fetch
        );
        let mut d = fresh();
        assert!(d.accept(&edits[0]));
        assert!(d.accept(&change(2, "index", Some("b"), Some("w"))));
        let r = take(&mut d, DiffProcessing::XcapPatching);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].change, DocumentChange::Fetch);
        assert_eq!(
            (r[0].previous_etag.as_deref(), r[0].new_etag.as_deref()),
            (Some("a"), Some("w"))
        );
    }

    // XD-14 after trimmed changes: a jump continues from the pending chain's end.
    #[test]
    fn xd14_jump_from_the_chain_end() {
        let mut d = Documents::with_reported([(key("index"), "a".to_string())]);
        assert!(d.accept(&change(1, "index", Some("a"), Some("b"))));
        d.jump(&key("index"), Some("z".into()));
        d.jump(&key("new"), Some("n".into()));
        d.jump(&key("index"), Some("z".into())); // no change: nothing added
        let r = take(&mut d, DiffProcessing::XcapPatching);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].previous_etag.as_deref(), r[0].new_etag.as_deref()),
            (Some("a"), Some("z"))
        );
        assert_eq!(r[0].change, DocumentChange::Fetch);
        assert_eq!(r[1].new_etag.as_deref(), Some("n"));
        assert_eq!(d.known().len(), 2);
    }

    // RFC 5839 §3, XE-16: the entity-tag follows the reported state, not the order.
    #[test]
    fn xe16_state_tag() {
        let a =
            Documents::with_reported([(key("a"), "1".to_string()), (key("b"), "2".to_string())]);
        let b =
            Documents::with_reported([(key("b"), "2".to_string()), (key("a"), "1".to_string())]);
        let none: Vec<(String, Option<String>)> = Vec::new();
        let tag = |d: &Documents, c: &[(String, Option<String>)]| {
            state_tag(d, c.iter().map(|(s, v)| (s, v)))
        };
        assert_eq!(tag(&a, &none), tag(&b, &none));
        let c =
            Documents::with_reported([(key("a"), "1".to_string()), (key("b"), "3".to_string())]);
        assert_ne!(tag(&a, &none), tag(&c, &none));
        assert_ne!(tag(&a, &none), tag(&a, &[("s".into(), Some("x".into()))]));
    }

    // Memory bound: a chain longer than MAX_STEPS is reported as one fetch, still chained.
    #[test]
    fn long_chains_fall_back_to_fetch() {
        let mut d = Documents::with_reported([(key("index"), "0".to_string())]);
        for i in 0..(MAX_STEPS as u64 + 5) {
            assert!(d.accept(&attr_edit(i + 1, &i.to_string(), &(i + 1).to_string(), "v")));
        }
        let r = take(&mut d, DiffProcessing::XcapPatching);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].change, DocumentChange::Fetch);
        assert_eq!(r[0].previous_etag.as_deref(), Some("0"));
        assert_eq!(r[0].new_etag, Some((MAX_STEPS + 5).to_string()));
    }
}
