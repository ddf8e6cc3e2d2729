//! Documents the server builds instead of storing: xcap-caps (RFC 4825 §12, AU-07/AU-08), the
//! per-user xcap-directory (OMA XDM Core, AP-07/AP-08) and the rls-services global index
//! (RFC 4826 §4.4.7–4.4.8, RL-15). Their ETags are digests of what they were built from, so they
//! change whenever a contributing document changes (RL-15c).

use crate::storage::{DocMeta, StoredDocument, TreeKey};
use crate::xml::attvalue::escape;
use std::sync::Arc;

/// FNV-1a over a sequence of byte strings; used only to derive generated-document ETags.
pub struct Digest(u64, u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325, 0x6c62_272e_07bb_0142)
    }
}

impl Digest {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().chain(std::iter::once(&0xffu8)) {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            self.1 =
                (self.1 ^ (b as u64).rotate_left(7)).wrapping_mul(0x0000_0100_0000_01b3 ^ 0x9e37);
        }
    }

    pub fn etag(&self, prefix: &str) -> String {
        format!("{prefix}{:016x}{:016x}", self.0, self.1)
    }
}

pub fn static_document(body: String, prefix: &str) -> StoredDocument {
    let mut d = Digest::default();
    d.update(body.as_bytes());
    StoredDocument {
        etag: d.etag(prefix),
        body: Arc::from(body),
        modified_ms: 0,
    }
}

/// xcap-directory for one user (AP-07): one folder per AUID in `auids`, each listing the
/// user's documents of that AUID with absolute URIs (AP-08).
pub fn xcap_directory(public_root: &str, auids: &[String], docs: &[DocMeta]) -> StoredDocument {
    let mut digest = Digest::default();
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-directory xmlns=\"urn:oma:xml:xdm:xcap-directory\">\n",
    );
    for auid in auids {
        s.push_str(&format!("  <folder auid=\"{}\">\n", escape(auid)));
        for meta in docs.iter().filter(|m| &m.key.auid == auid) {
            digest.update(meta.etag.as_bytes());
            s.push_str(&format!(
                "    <entry uri=\"{}\" etag=\"{}\" last-modified=\"{}\" size=\"{}\"/>\n",
                escape(&format!("{public_root}/{}", meta.key.document_selector())),
                escape(&meta.etag),
                rfc3339(meta.modified_ms),
                meta.size
            ));
        }
        s.push_str("  </folder>\n");
    }
    s.push_str("</xcap-directory>\n");
    digest.update(s.as_bytes());
    StoredDocument {
        etag: digest.etag("d"),
        body: Arc::from(s),
        modified_ms: docs.iter().map(|m| m.modified_ms).max().unwrap_or(0),
    }
}

/// The rls-services global index (RL-15): every `<service>` of every user document named
/// exactly `index`, copied byte for byte, with the namespace declarations it inherited from
/// its own document added to its start tag so that it means the same in the new document.
pub fn rls_services_global(sources: &[(TreeKey, StoredDocument)]) -> StoredDocument {
    const RLS_NS: &str = "urn:ietf:params:xml:ns:rls-services";
    let mut digest = Digest::default();
    let mut s =
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rls-services xmlns=\"{RLS_NS}\">\n");
    for (tree, doc) in sources {
        if let TreeKey::User(xui) = tree {
            digest.update(xui.as_bytes());
        }
        digest.update(doc.etag.as_bytes());
        let Ok(parsed) = roxmltree::Document::parse(&doc.body) else {
            continue;
        };
        let root = parsed.root_element();
        for service in root.children().filter(|n| {
            n.is_element()
                && n.tag_name().name() == "service"
                && n.tag_name().namespace() == Some(RLS_NS)
        }) {
            let text = &doc.body[service.range()];
            s.push_str("  ");
            s.push_str(&with_inherited_namespaces(text, service));
            s.push('\n');
        }
    }
    s.push_str("</rls-services>\n");
    StoredDocument {
        etag: digest.etag("g"),
        body: Arc::from(s),
        modified_ms: sources
            .iter()
            .map(|(_, d)| d.modified_ms)
            .max()
            .unwrap_or(0),
    }
}

/// Adds to the element's start tag every namespace binding in scope that the element does not
/// declare itself.
fn with_inherited_namespaces(text: &str, node: roxmltree::Node) -> String {
    let parent = match node.parent_element() {
        Some(p) => p,
        None => return text.to_string(),
    };
    let mut decls = String::new();
    for ns in parent.namespaces() {
        let declared_here = node_declares(text, ns.name());
        if declared_here || ns.name() == Some("xml") {
            continue;
        }
        match ns.name() {
            Some(p) => decls.push_str(&format!(" xmlns:{p}=\"{}\"", escape(ns.uri()))),
            None => decls.push_str(&format!(" xmlns=\"{}\"", escape(ns.uri()))),
        }
    }
    let name_end = text[1..]
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .map(|i| i + 1)
        .unwrap_or(text.len());
    format!("{}{}{}", &text[..name_end], decls, &text[name_end..])
}

/// Whether the element's own start tag declares the given prefix (None = default namespace).
fn node_declares(text: &str, prefix: Option<&str>) -> bool {
    let tag_end = text.find('>').unwrap_or(text.len());
    let start_tag = &text[..tag_end];
    match prefix {
        Some(p) => start_tag.contains(&format!("xmlns:{p}=")),
        None => {
            start_tag.contains(" xmlns=")
                || start_tag.contains("\txmlns=")
                || start_tag.contains("\nxmlns=")
        }
    }
}

/// Formats milliseconds since the Unix epoch as an xs:dateTime in UTC.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_072_000_000), "2025-11-25T12:00:00Z");
    }

    #[test]
    fn rl15_global_index_unions_services_and_keeps_namespaces() {
        let a = StoredDocument {
            body: Arc::from(
                "<rls-services xmlns=\"urn:ietf:params:xml:ns:rls-services\" xmlns:rl=\"urn:ietf:params:xml:ns:resource-lists\"><service uri=\"sip:a@x\"><list><rl:entry uri=\"sip:b@x\"/></list><packages><package>presence</package></packages></service></rls-services>",
            ),
            etag: "e1".into(),
            modified_ms: 1,
        };
        let b = StoredDocument {
            body: Arc::from(
                "<r:rls-services xmlns:r=\"urn:ietf:params:xml:ns:rls-services\"><r:service uri=\"sip:c@x\"><r:resource-list>http://x/y</r:resource-list></r:service></r:rls-services>",
            ),
            etag: "e2".into(),
            modified_ms: 2,
        };
        let g = rls_services_global(&[
            (TreeKey::User("sip:a@x".into()), a.clone()),
            (TreeKey::User("sip:c@x".into()), b),
        ]);
        let doc = roxmltree::Document::parse(&g.body).unwrap();
        let services: Vec<_> = doc
            .root_element()
            .children()
            .filter(|n| n.is_element())
            .collect();
        assert_eq!(services.len(), 2);
        assert_eq!(services[1].attribute("uri"), Some("sip:c@x"));
        let entry = doc
            .descendants()
            .find(|n| n.tag_name().name() == "entry")
            .unwrap();
        assert_eq!(
            entry.tag_name().namespace(),
            Some("urn:ietf:params:xml:ns:resource-lists")
        );
        // RL-15c: the ETag follows the contributing documents.
        let g2 = rls_services_global(&[(TreeKey::User("sip:a@x".into()), a)]);
        assert_ne!(g.etag, g2.etag);
    }
}
