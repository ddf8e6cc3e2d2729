//! A subscription's state rebuilt from its stored record (RFC 6665 §4.2: the notifier's
//! subscription and dialog state; RFC 5874 §6 chaining across restarts, XD-14), used after a
//! restart and for idle subscriptions: an idle subscription with nothing pending is kept as
//! its record's bytes (one allocation of a few hundred bytes instead of a dozen structures)
//! and rebuilt when a message or a due time wakes it (10,000 idle subscriptions are a
//! benchmark figure, issue #13).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::actor::Actor;
use super::dialog::Dialog;
use super::report::Documents;
use super::request::parse_entries;
use super::saved::Saved;
use super::service::Shared;
use crate::storage::subscriptions::Subscription;

/// Rebuilds the subscription `sub` records, as it was when recorded; `None` when its record
/// names no entry that parses or its package state cannot be read.
pub(super) fn rebuild(shared: &Arc<Shared>, sub: Subscription) -> Option<Actor> {
    let saved = Saved::decode(&sub.package_state)?;
    let c = &shared.parts.config;
    let mut entries = Vec::new();
    for sel in &sub.resources {
        let body = resource_list(sel);
        if let Ok(mut e) = parse_entries(
            body.as_bytes(),
            &c.public_root,
            &c.root_path,
            c.default_domain.as_deref(),
        ) {
            let xdms = &shared.parts.xdms;
            entries.extend(
                e.drain(..)
                    .map(|e| e.generated(|k| xdms.generated_sources(k))),
            );
        }
    }
    if entries.is_empty() {
        return None;
    }
    let dialog = Dialog {
        id: sub.dialog,
        remote_uri: saved.remote_uri,
        local_uri: saved.local_uri,
        remote_target: sub.remote_target,
        route_set: sub.route_set,
        local_cseq: sub.local_cseq,
        remote_cseq: sub.remote_cseq,
        event_id: saved.event_id,
        flow: None,
    };
    let actor = Actor {
        shared: Arc::clone(shared),
        dialog,
        subscriber: sub.subscriber,
        entries,
        mode: saved.mode,
        // An expired one ends at its first wake-up, with its final NOTIFY.
        expires_at_ms: sub.expires_at_ms,
        docs: Documents::with_reported(saved.documents),
        components: saved.components.into_iter().collect(),
        dirty: Default::default(),
        unread: Default::default(),
        seen_seq: sub.notified_seq,
        notified_seq: sub.notified_seq,
        last_sent: None,
        failures: 0,
        resync_due: None,
    };
    Some(actor)
}

/// A one-entry resource list (stored subscriptions keep their entry URIs only).
fn resource_list(sel: &str) -> String {
    format!(
        "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list><entry uri=\"{}\"/></list></resource-lists>",
        crate::xml::attvalue::escape(sel)
    )
}

/// The state of an idle subscription while no driver works on it.
pub(super) enum Idle {
    Awake(Box<Actor>),
    Dormant(Dormant),
}

/// An idle subscription with nothing pending: its record, and what the record leaves out.
pub(super) struct Dormant {
    shared: Arc<Shared>,
    record: Box<[u8]>,
    /// The connection NOTIFYs go back on (not stored: a restart forgets it).
    flow: Option<SocketAddr>,
    /// XE-18: the next NOTIFY waits for the notify interval after this one.
    last_sent: Option<Instant>,
    failures: u32,
    seen_seq: u64,
}

impl Idle {
    /// `actor` as it waits: its record when nothing is pending (changes to report, component
    /// documents to read, a resync to retry), else as it is.
    pub fn sleep(actor: Box<Actor>) -> Idle {
        let quiet = !actor.docs.has_pending()
            && actor.dirty.is_empty()
            && actor.unread.is_empty()
            && actor.resync_due.is_none();
        if !quiet {
            return Idle::Awake(actor);
        }
        match actor.record().to_bytes() {
            Ok(record) => Idle::Dormant(Dormant {
                shared: Arc::clone(&actor.shared),
                record: record.into_boxed_slice(),
                flow: actor.dialog.flow,
                last_sent: actor.last_sent,
                failures: actor.failures,
                seen_seq: actor.seen_seq,
            }),
            Err(_) => Idle::Awake(actor),
        }
    }

    /// The subscription's state to work on; `None` if its record cannot be read back (not
    /// expected: it was written by [`Idle::sleep`]).
    pub fn wake(self) -> Option<Box<Actor>> {
        match self {
            Idle::Awake(actor) => Some(actor),
            Idle::Dormant(d) => {
                let sub = Subscription::from_bytes(&d.record).ok()?;
                let mut actor = rebuild(&d.shared, sub)?;
                actor.dialog.flow = d.flow;
                actor.last_sent = d.last_sent;
                actor.failures = d.failures;
                actor.seen_seq = d.seen_seq;
                Some(Box::new(actor))
            }
        }
    }
}
