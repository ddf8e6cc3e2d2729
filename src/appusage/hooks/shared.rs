//! Constraint hooks of the OMA Shared XDMS usages that schemas cannot express (standards.md
//! SX-03, SX-05, SX-07, SX-09): the user profile names its owner, presence content carries a
//! bounded base64 image of an allowed type, a group document names its group URI. Pure.

use super::{ConstraintViolation, HookContext};
use roxmltree::{Document, Node};

pub const NS_USER_PROFILE: &str = "urn:oma:xml:xdm:user-profile";
pub const NS_PRES_CONTENT: &str = "urn:oma:xml:prs:pres-content";
pub const NS_LIST_SERVICE: &str = "urn:oma:xml:poc:list-service";

/// Presence content may only carry these media types (SX-09d).
const PRES_CONTENT_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/bmp"];
/// Largest decoded presence-content payload (SX-09d): 64 KiB, the size OMA clients target.
const PRES_CONTENT_MAX_BYTES: usize = 64 * 1024;

fn child<'a, 'i>(node: Node<'a, 'i>, ns: &str, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| {
        c.is_element() && c.tag_name().namespace() == Some(ns) && c.tag_name().name() == name
    })
}

fn constraint(phrase: &str) -> ConstraintViolation {
    ConstraintViolation::Constraint(phrase.to_string())
}

/// SX-07c: `<user-profile uri>` equals the XUI of the document.
pub fn user_profile(doc: &Document, ctx: &HookContext) -> Result<(), ConstraintViolation> {
    let root = doc.root_element();
    let Some(owner) = ctx.xui else {
        return Ok(());
    };
    for profile in root.children().filter(|c| {
        c.is_element()
            && c.tag_name().namespace() == Some(NS_USER_PROFILE)
            && c.tag_name().name() == "user-profile"
    }) {
        let uri = profile.attribute("uri").unwrap_or("");
        if !same_identity(uri, owner) {
            return Err(constraint("Wrong User Profile URI"));
        }
    }
    Ok(())
}

/// SX-09d: allowed MIME type, base64 encoding, data present, bounded size.
pub fn pres_content(doc: &Document, _ctx: &HookContext) -> Result<(), ConstraintViolation> {
    let root = doc.root_element();
    if root.tag_name().namespace() != Some(NS_PRES_CONTENT) {
        return Ok(());
    }
    if let Some(mime) = child(root, NS_PRES_CONTENT, "mime-type") {
        let value = mime.text().unwrap_or("").trim().to_ascii_lowercase();
        if !PRES_CONTENT_TYPES.contains(&value.as_str()) {
            return Err(constraint("Unsupported MIME type"));
        }
    }
    if let Some(enc) = child(root, NS_PRES_CONTENT, "encoding") {
        if !enc
            .text()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("base64")
        {
            return Err(constraint("Only base64 encoding is supported"));
        }
    }
    let data = child(root, NS_PRES_CONTENT, "data")
        .and_then(|d| d.text())
        .map(|t| {
            t.chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect::<String>()
        })
        .unwrap_or_default();
    if data.is_empty() {
        return Err(constraint("Missing data"));
    }
    if !data
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        || !data.len().is_multiple_of(4)
    {
        return Err(constraint("Data is not base64"));
    }
    if data.len() / 4 * 3 > PRES_CONTENT_MAX_BYTES {
        return Err(constraint("Content too large"));
    }
    Ok(())
}

/// SX-03a: a group document names its group URI; the cross-document uniqueness (SX-05) is
/// checked by the service with [`group_uris`].
pub fn groups(doc: &Document, _ctx: &HookContext) -> Result<(), ConstraintViolation> {
    let uris = group_uris(doc);
    if uris.iter().any(|u| {
        u.is_empty() || !(u.starts_with("sip:") || u.starts_with("sips:") || u.starts_with("tel:"))
    }) {
        return Err(constraint("The group URI must be a SIP or tel URI"));
    }
    Ok(())
}

/// The `list-service/@uri` values of a group document.
pub fn group_uris(doc: &Document) -> Vec<String> {
    let root = doc.root_element();
    if root.tag_name().namespace() != Some(NS_LIST_SERVICE) {
        return Vec::new();
    }
    root.children()
        .filter(|c| {
            c.is_element()
                && c.tag_name().namespace() == Some(NS_LIST_SERVICE)
                && c.tag_name().name() == "list-service"
        })
        .map(|c| c.attribute("uri").unwrap_or("").to_string())
        .collect()
}

/// Compares a profile URI with the canonical XUI: scheme and host case-insensitively, a
/// missing `sip:` tolerated (IO-01).
fn same_identity(uri: &str, xui: &str) -> bool {
    let norm = |s: &str| {
        let s = s.trim();
        let s = if s.contains(':') {
            s.to_string()
        } else {
            format!("sip:{s}")
        };
        match s.split_once('@') {
            Some((user, host)) => format!(
                "{}@{}",
                user.to_ascii_lowercase().replacen("sips:", "sip:", 1),
                host.to_ascii_lowercase()
            ),
            None => s.to_ascii_lowercase(),
        }
    };
    norm(uri) == norm(xui)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(xui: Option<&str>) -> HookContext<'_> {
        HookContext {
            xcap_root: "http://x/xcap-root",
            auid: "a",
            xui,
            document_path: "index",
            allow_foreign_references: false,
            oma_compliant: true,
        }
    }

    fn run(
        hook: super::super::Hook,
        xml: &str,
        xui: Option<&str>,
    ) -> Result<(), ConstraintViolation> {
        let doc = Document::parse(xml).unwrap();
        hook(&doc, &ctx(xui))
    }

    #[test]
    fn sx07c_profile_uri_must_be_the_owner() {
        let doc = |uri: &str| {
            format!("<user-profiles xmlns=\"{NS_USER_PROFILE}\"><user-profile uri=\"{uri}\"/></user-profiles>")
        };
        assert!(run(
            user_profile,
            &doc("sip:alice@example.com"),
            Some("sip:alice@example.com")
        )
        .is_ok());
        assert!(run(
            user_profile,
            &doc("alice@EXAMPLE.com"),
            Some("sip:alice@example.com")
        )
        .is_ok());
        assert_eq!(
            run(
                user_profile,
                &doc("sip:bob@example.com"),
                Some("sip:alice@example.com")
            ),
            Err(ConstraintViolation::Constraint(
                "Wrong User Profile URI".into()
            ))
        );
    }

    #[test]
    fn sx09d_pres_content_rules() {
        let doc = |mime: &str, enc: &str, data: &str| {
            format!("<content xmlns=\"{NS_PRES_CONTENT}\"><mime-type>{mime}</mime-type><encoding>{enc}</encoding><data>{data}</data></content>")
        };
        assert!(run(
            pres_content,
            &doc("image/png", "base64", "iVBORw0KGgo="),
            None
        )
        .is_ok());
        assert!(run(
            pres_content,
            &doc("text/html", "base64", "iVBORw0KGgo="),
            None
        )
        .is_err());
        assert!(run(
            pres_content,
            &doc("image/png", "quoted-printable", "iVBORw0KGgo="),
            None
        )
        .is_err());
        assert!(run(pres_content, &doc("image/png", "base64", ""), None).is_err());
        assert!(run(
            pres_content,
            &doc("image/png", "base64", "not base64!"),
            None
        )
        .is_err());
        let big = "A".repeat(PRES_CONTENT_MAX_BYTES / 3 * 4 + 8);
        assert_eq!(
            run(pres_content, &doc("image/png", "base64", &big), None),
            Err(ConstraintViolation::Constraint("Content too large".into()))
        );
    }

    #[test]
    fn sx03a_group_uri_form() {
        let doc = |uri: &str| {
            format!("<group xmlns=\"{NS_LIST_SERVICE}\"><list-service uri=\"{uri}\"/></group>")
        };
        assert!(run(groups, &doc("sip:lobby@conf.example.com"), None).is_ok());
        assert!(run(groups, &doc("http://x"), None).is_err());
        let text = doc("sip:g@x");
        let d = Document::parse(&text).unwrap();
        assert_eq!(group_uris(&d), vec!["sip:g@x".to_string()]);
    }
}
