//! Entity tags and conditional-request evaluation (RFC 4825 §7.11, §8.2.6, §8.5; RFC 2616
//! §3.11, §13.3.3, §14.24, §14.26; standards.md ET-01..ET-09, IO-05b, IO-11b). Pure; the random
//! source is passed in so tests are deterministic.

/// A strong entity tag value without quotes. Unique across every version of every document
/// (ET-03): 96 random bits, never derived from content, so a document that returns to an
/// earlier state still gets a new tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Etag(pub String);

impl Etag {
    pub fn from_random(bytes: [u8; 12]) -> Etag {
        let mut s = String::with_capacity(24);
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        Etag(s)
    }

    /// The header form: `"<value>"`.
    pub fn header_value(&self) -> String {
        format!("\"{}\"", self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One side of an If-Match / If-None-Match header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityTagList {
    Any,
    /// Opaque values with quotes removed; weak tags are kept with their `W/` marker so they
    /// never match strongly.
    Tags(Vec<String>),
}

impl EntityTagList {
    /// Parses a header value tolerantly: quoted or unquoted values (IO-11b), one extra level of
    /// quotes as RCS sends (IO-05b), comma-separated lists.
    pub fn parse(header: &str) -> EntityTagList {
        let trimmed = header.trim();
        if trimmed == "*" {
            return EntityTagList::Any;
        }
        let mut tags = Vec::new();
        for part in split_list(trimmed) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (weak, rest) = match part.strip_prefix("W/") {
                Some(r) => (true, r),
                None => (false, part),
            };
            let mut v = rest.trim();
            // Strip up to two levels of quotes (IO-05b).
            for _ in 0..2 {
                if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                    v = &v[1..v.len() - 1];
                }
            }
            tags.push(if weak {
                format!("W/{v}")
            } else {
                v.to_string()
            });
        }
        EntityTagList::Tags(tags)
    }

    /// Strong comparison (RFC 2616 §13.3.3).
    pub fn matches(&self, current: Option<&str>) -> bool {
        match (self, current) {
            (_, None) => false,
            (EntityTagList::Any, Some(_)) => true,
            (EntityTagList::Tags(tags), Some(cur)) => tags.iter().any(|t| t == cur),
        }
    }
}

/// Splits an entity-tag list at commas outside quotes.
fn split_list(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The conditional headers of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub if_match: Option<EntityTagList>,
    pub if_none_match: Option<EntityTagList>,
}

/// What a precondition check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreconditionOutcome {
    Proceed,
    /// 412 (ET-04, ET-05, ET-06).
    Failed,
    /// 304 for GET/HEAD (ET-07).
    NotModified,
}

impl Preconditions {
    /// Evaluates against the current ETag of the enclosing document (ET-06: element and
    /// attribute resources share the document's tag). `safe` is true for GET and HEAD.
    pub fn evaluate(&self, current: Option<&str>, safe: bool) -> PreconditionOutcome {
        if let Some(im) = &self.if_match {
            if !im.matches(current) {
                return PreconditionOutcome::Failed;
            }
        }
        if let Some(inm) = &self.if_none_match {
            if inm.matches(current) {
                return if safe {
                    PreconditionOutcome::NotModified
                } else {
                    PreconditionOutcome::Failed
                };
            }
        }
        PreconditionOutcome::Proceed
    }

    /// The compare-and-swap condition the storage write must hold, given the ETag the edit was
    /// computed from. Always pins the version read, so concurrent writers cannot interleave.
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(im: Option<&str>, inm: Option<&str>) -> Preconditions {
        Preconditions {
            if_match: im.map(EntityTagList::parse),
            if_none_match: inm.map(EntityTagList::parse),
        }
    }

    #[test]
    fn et04_if_match_mismatch_and_star_on_absent() {
        assert_eq!(
            pre(Some("\"a\""), None).evaluate(Some("b"), false),
            PreconditionOutcome::Failed
        );
        assert_eq!(
            pre(Some("\"a\""), None).evaluate(Some("a"), false),
            PreconditionOutcome::Proceed
        );
        assert_eq!(
            pre(Some("*"), None).evaluate(None, false),
            PreconditionOutcome::Failed
        );
        assert_eq!(
            pre(Some("*"), None).evaluate(Some("x"), false),
            PreconditionOutcome::Proceed
        );
    }

    #[test]
    fn et05_if_none_match_star_put() {
        assert_eq!(
            pre(None, Some("*")).evaluate(None, false),
            PreconditionOutcome::Proceed
        );
        assert_eq!(
            pre(None, Some("*")).evaluate(Some("e"), false),
            PreconditionOutcome::Failed
        );
    }

    #[test]
    fn et07_conditional_get() {
        assert_eq!(
            pre(None, Some("\"e\"")).evaluate(Some("e"), true),
            PreconditionOutcome::NotModified
        );
        assert_eq!(
            pre(None, Some("\"x\"")).evaluate(Some("e"), true),
            PreconditionOutcome::Proceed
        );
        assert_eq!(
            pre(None, Some("*")).evaluate(Some("e"), true),
            PreconditionOutcome::NotModified
        );
    }

    #[test]
    fn et09_weak_tags_never_match_strongly() {
        assert_eq!(
            pre(Some("W/\"e\""), None).evaluate(Some("e"), false),
            PreconditionOutcome::Failed
        );
    }

    #[test]
    fn io05b_io11b_tolerant_quoting() {
        assert!(EntityTagList::parse("\"\"e\"\"").matches(Some("e")));
        assert!(EntityTagList::parse("e").matches(Some("e")));
        assert!(EntityTagList::parse("\"x\", \"e\"").matches(Some("e")));
    }

    #[test]
    fn et03_random_tags_are_hex_and_distinct() {
        let a = Etag::from_random([1; 12]);
        let b = Etag::from_random([2; 12]);
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 24);
        assert_eq!(a.header_value(), format!("\"{}\"", a.as_str()));
    }
}
