//! The outcomes of an XCAP request that are not a success (RFC 4825 §8, §11; standards.md table
//! 1.4 and 1.5, ER-01..ER-13) and the `application/xcap-error+xml` rendering of 409 conflicts.
//! Pure: mapping to HTTP responses happens in exactly one place, `xdms::respond`.

use crate::xml::attvalue::escape;
use thiserror::Error;

/// One entry of a `<uniqueness-failure>` report (RFC 4825 §11.1, ER-11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistsField {
    pub field: String,
    pub alt_values: Vec<String>,
}

/// The conflict conditions of RFC 4825 §11.1; each renders one child of `<xcap-error>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    NotWellFormed,
    NotUtf8,
    NotXmlFrag,
    NotXmlAttValue,
    /// `ancestor` is the HTTP URI of the closest existing ancestor, already percent-encoded.
    NoParent {
        ancestor: Option<String>,
    },
    CannotInsert,
    CannotDelete,
    SchemaValidation,
    Uniqueness(Vec<ExistsField>),
    Constraint,
    /// Our own errors go inside `<extension>` (ER-13); the content is a local name in our namespace.
    Extension(&'static str),
}

/// Every non-success outcome of an XCAP operation. One variant per RFC 4825 outcome.
#[derive(Debug, Error)]
pub enum XcapError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("conflict")]
    Conflict {
        conflict: Conflict,
        phrase: Option<String>,
    },
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("not modified")]
    NotModified { etag: String },
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415; `received` is the request's Content-Type (None when it sent none).
    #[error("unsupported media type: expected {expected}")]
    UnsupportedMediaType {
        expected: String,
        received: Option<String>,
    },
    #[error("service unavailable")]
    Unavailable,
    /// 503 with Retry-After: storage cannot take writes now (disk space under the reserve,
    /// journal write failing); nothing was stored and writes resume by themselves.
    #[error("storage cannot accept writes now")]
    WritesPaused { retry_after_secs: u64 },
    /// Internal failure; the text is logged, never sent to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl XcapError {
    pub fn conflict(conflict: Conflict) -> Self {
        XcapError::Conflict {
            conflict,
            phrase: None,
        }
    }

    pub fn conflict_with(conflict: Conflict, phrase: impl Into<String>) -> Self {
        XcapError::Conflict {
            conflict,
            phrase: Some(phrase.into()),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            XcapError::BadRequest(_) => 400,
            XcapError::Unauthorized => 401,
            XcapError::Forbidden(_) => 403,
            XcapError::NotFound(_) => 404,
            XcapError::MethodNotAllowed { .. } => 405,
            XcapError::Conflict { .. } => 409,
            XcapError::PreconditionFailed => 412,
            XcapError::NotModified { .. } => 304,
            XcapError::PayloadTooLarge => 413,
            XcapError::UnsupportedMediaType { .. } => 415,
            XcapError::Unavailable | XcapError::WritesPaused { .. } => 503,
            XcapError::Internal(_) => 500,
        }
    }
}

/// Namespace of our `<extension>` error elements (ER-13).
pub const EXTENSION_NS: &str = "urn:xcapd:xml:ns:xcap-error-extension";

/// Renders the `application/xcap-error+xml` body (RFC 4825 §11.2 schema, ER-01, HT-09).
pub fn render_conflict(conflict: &Conflict, phrase: Option<&str>) -> String {
    let phrase_attr = phrase
        .map(|p| format!(" phrase=\"{}\"", escape(p)))
        .unwrap_or_default();
    let simple = |name: &str| format!("<{name}{phrase_attr}/>");
    let inner = match conflict {
        Conflict::NotWellFormed => simple("not-well-formed"),
        Conflict::NotUtf8 => simple("not-utf-8"),
        Conflict::NotXmlFrag => simple("not-xml-frag"),
        Conflict::NotXmlAttValue => simple("not-xml-att-value"),
        Conflict::CannotInsert => simple("cannot-insert"),
        Conflict::CannotDelete => simple("cannot-delete"),
        Conflict::SchemaValidation => simple("schema-validation-error"),
        Conflict::Constraint => simple("constraint-failure"),
        Conflict::NoParent { ancestor: None } => simple("no-parent"),
        Conflict::NoParent {
            ancestor: Some(uri),
        } => format!(
            "<no-parent{phrase_attr}><ancestor>{}</ancestor></no-parent>",
            escape_text(uri)
        ),
        Conflict::Uniqueness(fields) => {
            let mut s = format!("<uniqueness-failure{phrase_attr}>");
            for f in fields {
                if f.alt_values.is_empty() {
                    s.push_str(&format!("<exists field=\"{}\"/>", escape(&f.field)));
                } else {
                    s.push_str(&format!("<exists field=\"{}\">", escape(&f.field)));
                    for alt in &f.alt_values {
                        s.push_str(&format!("<alt-value>{}</alt-value>", escape_text(alt)));
                    }
                    s.push_str("</exists>");
                }
            }
            s.push_str("</uniqueness-failure>");
            s
        }
        Conflict::Extension(name) => {
            format!("<extension><x:{name} xmlns:x=\"{EXTENSION_NS}\"{phrase_attr}/></extension>")
        }
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-error xmlns=\"urn:ietf:params:xml:ns:xcap-error\">{inner}</xcap-error>\n"
    )
}

/// Escapes character data.
pub fn escape_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn er01_root_and_single_child() {
        let body = render_conflict(&Conflict::NotUtf8, None);
        let doc = roxmltree::Document::parse(&body).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "xcap-error");
        assert_eq!(
            root.tag_name().namespace(),
            Some("urn:ietf:params:xml:ns:xcap-error")
        );
        assert_eq!(root.children().filter(|n| n.is_element()).count(), 1);
    }

    #[test]
    fn er11_uniqueness_failure_with_alt_values_rfc4825_s11_1() {
        let body = render_conflict(
            &Conflict::Uniqueness(vec![ExistsField {
                field: "rls-services/service[1]/@uri".into(),
                alt_values: vec!["sip:mybuddies@example.com".into()],
            }]),
            Some("service uri \"taken\""),
        );
        let doc = roxmltree::Document::parse(&body).unwrap();
        let uf = doc.root_element().first_element_child().unwrap();
        assert_eq!(uf.tag_name().name(), "uniqueness-failure");
        assert_eq!(uf.attribute("phrase"), Some("service uri \"taken\""));
        let exists = uf.first_element_child().unwrap();
        assert_eq!(
            exists.attribute("field"),
            Some("rls-services/service[1]/@uri")
        );
        assert_eq!(
            exists.first_element_child().unwrap().text(),
            Some("sip:mybuddies@example.com")
        );
    }

    #[test]
    fn er07_no_parent_carries_ancestor() {
        let body = render_conflict(
            &Conflict::NoParent {
                ancestor: Some(
                    "http://x/xcap-root/resource-lists/users/sip:a@b/index/~~/resource-lists"
                        .into(),
                ),
            },
            None,
        );
        let doc = roxmltree::Document::parse(&body).unwrap();
        let anc = doc
            .descendants()
            .find(|n| n.has_tag_name("ancestor"))
            .unwrap();
        assert!(anc.text().unwrap().ends_with("~~/resource-lists"));
    }

    #[test]
    fn status_codes_follow_table_1_5() {
        assert_eq!(XcapError::conflict(Conflict::CannotDelete).status(), 409);
        assert_eq!(XcapError::PreconditionFailed.status(), 412);
        assert_eq!(XcapError::MethodNotAllowed { allow: "GET" }.status(), 405);
        assert_eq!(
            XcapError::UnsupportedMediaType {
                expected: "x".into(),
                received: None,
            }
            .status(),
            415
        );
    }
}
