//! External lists kept by a remote Shared XDMS (issue #4 scope 5): before a decision, the
//! current version of every referenced document whose AUID is routed to a remote node is
//! fetched over the proxy's pooled upstream, as the IM Server's service identity, and parsed
//! once per ETag. Nested `<external>` references in fetched lists are followed (bounded).

use super::{locate_reference, Prefetched};
use crate::storage::{DocKey, TreeKey};
use crate::upstream::Upstream;
use crate::xcap::pct::encode_path_segment;
use crate::xdms::Xdms;
use crate::xml::{Limits, ParsedDoc};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

const MAX_FETCHES: usize = 16;
const MAX_BYTES: usize = 8 * 1024 * 1024;

pub struct RemoteLists {
    /// AUID -> the Shared XDMS serving it.
    targets: HashMap<String, Upstream>,
    /// Identity asserted to the Shared XDMS; it must hold the service role there.
    identity: String,
    limits: Limits,
    parses: Mutex<HashMap<DocKey, (String, Arc<ParsedDoc>)>>,
}

impl RemoteLists {
    pub fn new(
        targets: HashMap<String, Upstream>,
        identity: String,
        limits: Limits,
    ) -> RemoteLists {
        RemoteLists {
            targets,
            identity,
            limits,
            parses: Mutex::new(HashMap::new()),
        }
    }

    pub async fn prefetch(&self, xdms: &Xdms, anchors: Vec<String>) -> Prefetched {
        let mut out = Prefetched::new();
        let mut work = anchors;
        let mut fetches = 0;
        while let Some(anchor) = work.pop() {
            let Ok((key, _)) = locate_reference(xdms, &anchor) else {
                continue;
            };
            let Some(upstream) = self.targets.get(&key.auid) else {
                continue; // served in process
            };
            if out.contains_key(&key) || fetches >= MAX_FETCHES {
                continue;
            }
            fetches += 1;
            let TreeKey::User(xui) = &key.tree else {
                continue;
            };
            let rel = format!(
                "{}/users/{}/{}",
                key.auid,
                encode_path_segment(xui),
                key.path
                    .split('/')
                    .map(encode_path_segment)
                    .collect::<Vec<_>>()
                    .join("/")
            );
            let Ok((status, headers, body)) =
                upstream.get(&rel, Some(&self.identity), MAX_BYTES).await
            else {
                continue; // unresolved: the decision reports it
            };
            if !status.is_success() {
                continue;
            }
            let etag = headers
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim_matches('"')
                .to_string();
            let cached = self
                .parses
                .lock()
                .get(&key)
                .filter(|(e, _)| !etag.is_empty() && *e == etag)
                .map(|(_, p)| p.clone());
            let parsed = match cached {
                Some(p) => p,
                None => {
                    let Ok(text) = std::str::from_utf8(&body) else {
                        continue;
                    };
                    let Ok(p) = ParsedDoc::parse(Arc::from(text), &self.limits) else {
                        continue;
                    };
                    let p = Arc::new(p);
                    self.parses
                        .lock()
                        .insert(key.clone(), (etag.clone(), p.clone()));
                    p
                }
            };
            // Follow nested references of the fetched document.
            for n in parsed.doc().descendants().filter(|n| n.is_element()) {
                match n.tag_name().name() {
                    "external" => work.extend(n.attribute("anchor").map(str::to_string)),
                    "entry-ref" => work.extend(n.attribute("ref").map(str::to_string)),
                    _ => {}
                }
            }
            out.insert(key, (etag, parsed));
        }
        out
    }
}
