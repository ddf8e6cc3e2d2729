//! The xcap-diff part of a stored subscription (RFC 6665 §4.2; RFC 5874 §6 chaining across
//! restarts, XD-14): the dialog fields the `SubscriptionStore` record has no column for, the
//! diff-processing mode, the ETag last reported per document and the state last reported per
//! component. Encoded as a small versioned JSON object in `Subscription::package_state`. Pure.

use serde_json::{json, Value};

use super::request::DiffProcessing;
use crate::xcap::keys::{DocKey, TreeKey};

const VERSION: u64 = 1;

/// What a restarted notifier needs beyond the store's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub remote_uri: String,
    pub local_uri: String,
    pub mode: DiffProcessing,
    /// The Event header's `id` (RFC 6665 §8.2.1).
    pub event_id: Option<String>,
    /// ETag last reported per existing document.
    pub documents: Vec<(DocKey, String)>,
    /// Component `sel` → digest of the content last reported (`None`: reported as absent).
    pub components: Vec<(String, Option<String>)>,
}

fn mode_name(mode: DiffProcessing) -> &'static str {
    match mode {
        DiffProcessing::NoPatching => "no-patching",
        DiffProcessing::XcapPatching => "xcap-patching",
        DiffProcessing::Aggregate => "aggregate",
    }
}

impl Saved {
    pub fn encode(&self) -> Vec<u8> {
        let docs: Vec<Value> = self
            .documents
            .iter()
            .map(|(k, etag)| {
                let tree = match &k.tree {
                    TreeKey::Global => Value::Null,
                    TreeKey::User(x) => Value::String(x.clone()),
                };
                json!([k.auid, tree, k.path, etag])
            })
            .collect();
        let comps: Vec<Value> = self
            .components
            .iter()
            .map(|(sel, digest)| json!([sel, digest]))
            .collect();
        json!({
            "v": VERSION,
            "remote": self.remote_uri,
            "local": self.local_uri,
            "mode": mode_name(self.mode),
            "id": self.event_id,
            "docs": docs,
            "components": comps,
        })
        .to_string()
        .into_bytes()
    }

    /// `None` when the bytes are not a state this version wrote.
    pub fn decode(bytes: &[u8]) -> Option<Saved> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        if v.get("v")?.as_u64()? != VERSION {
            return None;
        }
        let text = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_string);
        let mode = match v.get("mode")?.as_str()? {
            "xcap-patching" => DiffProcessing::XcapPatching,
            "aggregate" => DiffProcessing::Aggregate,
            _ => DiffProcessing::NoPatching,
        };
        let mut documents = Vec::new();
        for d in v.get("docs")?.as_array()? {
            let a = d.as_array()?;
            let tree = match a.get(1)? {
                Value::Null => TreeKey::Global,
                t => TreeKey::User(t.as_str()?.to_string()),
            };
            let key = DocKey::new(a.first()?.as_str()?, tree, a.get(2)?.as_str()?.to_string());
            documents.push((key, a.get(3)?.as_str()?.to_string()));
        }
        let mut components = Vec::new();
        for c in v.get("components")?.as_array()? {
            let a = c.as_array()?;
            components.push((
                a.first()?.as_str()?.to_string(),
                a.get(1)?.as_str().map(str::to_string),
            ));
        }
        Some(Saved {
            remote_uri: text("remote")?,
            local_uri: text("local")?,
            mode,
            event_id: text("id"),
            documents,
            components,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // XD-14: what a restart needs to chain the next report survives encoding.
    #[test]
    fn xd14_round_trip() {
        let s = Saved {
            remote_uri: "sip:alice@example.com".into(),
            local_uri: "sip:alice@example.com".into(),
            mode: DiffProcessing::Aggregate,
            event_id: Some("x1".into()),
            documents: vec![
                (
                    DocKey::new(
                        "resource-lists",
                        TreeKey::User("sip:alice@example.com".into()),
                        "index",
                    ),
                    "e1".into(),
                ),
                (
                    DocKey::new("xcap-caps", TreeKey::Global, "index"),
                    "e2".into(),
                ),
            ],
            components: vec![("a/b".into(), Some("d1".into())), ("c".into(), None)],
        };
        assert_eq!(Saved::decode(&s.encode()), Some(s));
        assert_eq!(Saved::decode(b"{\"v\":99}"), None);
        assert_eq!(Saved::decode(b"junk"), None);
    }
}
