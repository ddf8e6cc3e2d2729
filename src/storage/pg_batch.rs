//! The plan of a PostgreSQL writer batch (issue #15; RFC 4825 §7.11 compare-and-swap, design.md
//! §2 change log), no I/O: each write's precondition checked in arrival order against the
//! documents' versions (read, or assumed from what the writes name) and the batch's earlier
//! writes, the documents' final states, the change records in number order, and the answers
//! once the database drew the numbers.

use std::collections::HashMap;
use std::sync::Arc;

use super::pg_store::tree_column;
use super::sled_changes::encode;
use super::{
    check_expect, ChangeOrigin, ChangeRecord, Committed, DocKey, Expect, StorageError,
    StoredDocument, WriteOutcome,
};

/// One write: a new body (`Some((body, etag, modified_ms))`; shared with the node's read
/// cache, so a PUT copies its body once) or a delete (`None`).
pub(super) struct Write {
    pub key: DocKey,
    pub expect: Expect,
    pub change: Option<(Arc<str>, String, u64)>,
    pub origin: ChangeOrigin,
}

/// A write's answer: its commit (`None`: a delete of nothing) or why it was refused.
pub(super) type Answer = Result<Option<Committed>, StorageError>;

/// What a batch does: each write's answer (change numbers counted from 1 within the batch),
/// the documents' states after it (by key: the last write of a key wins), and its changes in
/// number order: (index of the write, previous ETag, new ETag).
pub(super) struct Plan {
    pub answers: Vec<Answer>,
    /// `Some((body, etag, modified_ms))` to store, `None` to delete.
    pub documents: HashMap<DocKey, Option<(Arc<str>, String, u64)>>,
    pub changes: Vec<(usize, Option<String>, Option<String>)>,
}

/// Checks each write's precondition against the state the earlier writes of the batch left
/// (`current`, updated), numbering the ones that hold from 1.
pub(super) fn plan(writes: &[Write], current: &mut HashMap<DocKey, Option<String>>) -> Plan {
    let mut plan = Plan {
        answers: Vec::with_capacity(writes.len()),
        documents: HashMap::new(),
        changes: Vec::new(),
    };
    for (i, w) in writes.iter().enumerate() {
        let previous = current.get(&w.key).cloned().flatten();
        if let Err(refused) = check_expect(&w.expect, previous.as_deref()) {
            plan.answers.push(Err(refused));
            continue;
        }
        let outcome = match (&w.change, &previous) {
            (None, None) => {
                plan.answers.push(Ok(None));
                continue;
            }
            (None, Some(_)) => WriteOutcome::Deleted,
            (Some(_), Some(_)) => WriteOutcome::Replaced,
            (Some(_), None) => WriteOutcome::Created,
        };
        let new_etag = w.change.as_ref().map(|(_, etag, _)| etag.clone());
        plan.changes.push((i, previous.clone(), new_etag.clone()));
        plan.documents.insert(w.key.clone(), w.change.clone());
        current.insert(w.key.clone(), new_etag);
        plan.answers.push(Ok(Some(Committed {
            outcome,
            previous_etag: previous,
            seq: plan.changes.len() as u64,
        })));
    }
    plan
}

/// The change records of the plan in number order, committed at `now`: their encodings.
pub(super) fn change_records(
    writes: &[Write],
    plan: &Plan,
    now: u64,
) -> Result<Vec<Vec<u8>>, StorageError> {
    plan.changes
        .iter()
        .map(|(i, previous, new_etag)| {
            let w = &writes[*i];
            encode(
                &w.key,
                previous.as_deref(),
                new_etag.as_deref(),
                now,
                &w.origin,
            )
        })
        .collect()
}

/// A committed batch.
pub(super) struct Done {
    /// Each write's answer, in arrival order.
    pub answers: Vec<Answer>,
    /// The feed head after it (0 when nothing was stored).
    pub head: u64,
    /// Its change records as logged, in number order.
    pub records: Vec<ChangeRecord>,
    /// Each record's new version (`None`: deleted).
    pub versions: Vec<Option<StoredDocument>>,
}

impl Done {
    /// A batch that stored nothing.
    pub(super) fn nothing(plan: Plan) -> Done {
        Done {
            answers: plan.answers,
            head: 0,
            records: Vec::new(),
            versions: Vec::new(),
        }
    }
}

/// `plan` committed with `last` as the last change number drawn, at `now`.
pub(super) fn numbered(mut plan: Plan, last: i64, writes: &[Write], now: u64) -> Done {
    let base = last - plan.changes.len() as i64;
    for answer in &mut plan.answers {
        if let Ok(Some(c)) = answer {
            c.seq += base as u64;
        }
    }
    let mut records = Vec::with_capacity(plan.changes.len());
    let mut versions = Vec::with_capacity(plan.changes.len());
    for (n, (i, previous, new_etag)) in plan.changes.iter().enumerate() {
        let w = &writes[*i];
        records.push(ChangeRecord {
            seq: base as u64 + n as u64 + 1,
            key: w.key.clone(),
            previous_etag: previous.clone(),
            new_etag: new_etag.clone(),
            at_ms: now,
            origin: w.origin.clone(),
        });
        versions.push(
            w.change
                .as_ref()
                .map(|(body, etag, modified_ms)| StoredDocument {
                    body: body.clone(),
                    etag: etag.clone(),
                    modified_ms: *modified_ms,
                }),
        );
    }
    Done {
        answers: plan.answers,
        head: last as u64,
        records,
        versions,
    }
}

/// The version a batch counts a document in while another node's writer holds its turn
/// (`DocumentStore::lock_document`): no precondition names it (an ETag never holds NUL), so
/// every write of the document that names a version loses its compare-and-swap, and its
/// writer takes turns too instead of overtaking the holder again and again.
pub(super) const TURN_ELSEWHERE: &str = "\0turn held elsewhere";

/// The documents of `writes` whose turn the database is asked about (`held`: this node's
/// writers hold it): those whose every write names a version (a write that replaces
/// whatever is stored never loses), with their turn locks.
pub(super) fn turns_to_check(
    writes: &[Write],
    held: impl Fn(&DocKey) -> bool,
    lock_of: impl Fn(&DocKey) -> i64,
) -> Vec<(i64, DocKey)> {
    let any: std::collections::HashSet<&DocKey> = writes
        .iter()
        .filter(|w| w.expect == Expect::Any)
        .map(|w| &w.key)
        .collect();
    let mut turns: Vec<(i64, DocKey)> = Vec::new();
    for w in writes {
        if !any.contains(&w.key) && !held(&w.key) && !turns.iter().any(|(_, k)| *k == w.key) {
            turns.push((lock_of(&w.key), w.key.clone()));
        }
    }
    turns
}

/// The version of each document a batch assumes when every write names the one it replaces
/// (an ETag, or absence): the one its first write of the document names. `None` when a write
/// takes any version (its previous version must be read).
pub(super) fn assumed_versions(writes: &[Write]) -> Option<HashMap<DocKey, Option<String>>> {
    let mut versions = HashMap::new();
    for w in writes {
        let version = match &w.expect {
            Expect::Etag(etag) => Some(etag.clone()),
            Expect::Absent => None,
            Expect::Any => return None,
        };
        versions.entry(w.key.clone()).or_insert(version);
    }
    Some(versions)
}

/// Assumed versions as the columns of `xcapd_expect_versions` (pg_schema migration 5), with
/// the turn locks no other node's writer may hold.
pub(super) struct Expected {
    pub auids: Vec<String>,
    pub trees: Vec<String>,
    pub paths: Vec<String>,
    pub etags: Vec<Option<String>>,
    pub turns: Vec<i64>,
}

impl Expected {
    pub(super) fn of(versions: &HashMap<DocKey, Option<String>>, turns: Vec<i64>) -> Expected {
        let mut expected = Expected {
            turns,
            auids: Vec::with_capacity(versions.len()),
            trees: Vec::with_capacity(versions.len()),
            paths: Vec::with_capacity(versions.len()),
            etags: Vec::with_capacity(versions.len()),
        };
        for (key, etag) in versions {
            expected.auids.push(key.auid.clone());
            expected.trees.push(tree_column(&key.tree).to_string());
            expected.paths.push(key.path.clone());
            expected.etags.push(etag.clone());
        }
        expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::TreeKey;

    fn write(path: &str, expect: Expect, change: Option<&str>) -> Write {
        Write {
            key: DocKey::new(
                "resource-lists",
                TreeKey::User("sip:a@example.com".into()),
                path,
            ),
            expect,
            change: change.map(|etag| (Arc::from(format!("<{etag}/>")), etag.to_string(), 1)),
            origin: ChangeOrigin::default(),
        }
    }

    // Turns (issue #15, writers on several nodes take turns): only documents whose every
    // write names a version, and whose turn this node does not hold, are asked about.
    #[test]
    fn turns_are_checked_only_where_a_write_could_lose() {
        let writes = vec![
            write("a", Expect::Absent, Some("e1")),
            write("a", Expect::Etag("e1".into()), Some("e2")),
            write("any", Expect::Etag("x".into()), Some("e3")),
            write("any", Expect::Any, None),
            write("held", Expect::Etag("y".into()), Some("e4")),
        ];
        let turns = turns_to_check(&writes, |k| k.path == "held", |k| k.path.len() as i64);
        assert_eq!(turns, vec![(1, writes[0].key.clone())]);
    }

    // RFC 4825 §7.11 within one batch: each write's precondition sees the earlier writes of
    // the batch; refused ones take no number (numbered from 1 within the batch, offset by the
    // change-number lock later); the last write of a key is its stored state.
    #[test]
    fn a_batch_checks_each_write_against_the_earlier_ones() {
        let writes = vec![
            write("index", Expect::Absent, Some("e1")),
            write("index", Expect::Absent, Some("lost")),
            write("index", Expect::Etag("e1".into()), Some("e2")),
            write("other", Expect::Any, None),
            write("old", Expect::Etag("s1".into()), None),
            write("old", Expect::Any, Some("s2")),
        ];
        let mut current: HashMap<DocKey, Option<String>> =
            writes.iter().map(|w| (w.key.clone(), None)).collect();
        current.insert(writes[4].key.clone(), Some("s1".into()));
        let plan = plan(&writes, &mut current);
        let outcomes: Vec<Option<(WriteOutcome, u64)>> = plan
            .answers
            .iter()
            .map(|a| {
                a.as_ref()
                    .ok()
                    .cloned()
                    .flatten()
                    .map(|c| (c.outcome, c.seq))
            })
            .collect();
        assert_eq!(
            outcomes,
            vec![
                Some((WriteOutcome::Created, 1)),
                None,
                Some((WriteOutcome::Replaced, 2)),
                None,
                Some((WriteOutcome::Deleted, 3)),
                Some((WriteOutcome::Created, 4)),
            ]
        );
        assert_eq!(plan.answers[1], Err(StorageError::PreconditionFailed));
        assert_eq!(plan.answers[3], Ok(None), "a delete of nothing");
        assert_eq!(plan.changes.len(), 4);
        assert_eq!(plan.changes[2], (4, Some("s1".into()), None));
        assert_eq!(plan.documents[&writes[0].key].as_ref().unwrap().1, "e2");
        assert_eq!(plan.documents[&writes[4].key].as_ref().unwrap().1, "s2");
        assert!(!plan.documents.contains_key(&writes[3].key));
    }
}
