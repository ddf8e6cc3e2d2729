//! Identity header values (RFC 3261 §20.10, §25.1 name-addr / addr-spec; RFC 3325
//! P-Asserted-Identity; OMA XDM `X-XCAP-Asserted-Identity`, 3GPP `X-3GPP-Intended-Identity`;
//! standards item IO-16): the one parser of display names, quoted strings and `<uri>` that the
//! HTTP front, the trust checks and (next) SIP headers share. Pure.

/// Extracts the identity URI from an identity header value (IO-16). Accepted forms:
/// `sip:bob@example.com`, `"sip:bob@example.com"`, `<sip:bob@example.com>`,
/// `"Bob" <sip:bob@example.com>`, `Bob <sip:bob@example.com>`, `"<sip:bob@example.com>"`.
/// For a quoted list (`"sip:a@x", "tel:+1"`, TS 24.109 allows several) the first element is
/// taken; header parameters after `>` are dropped. Quoted-pairs (`\"`) are unescaped
/// (RFC 7230 §3.2.6). The result is not normalized
/// (IO-01 is the caller's job; [`super::Xui::from_identity_header`] does both). Returns `None` for empty or malformed values and for values
/// containing control characters.
pub fn identity_value(raw: &str) -> Option<String> {
    let v = raw.trim();
    if v.is_empty() || v.chars().any(char::is_control) {
        return None;
    }
    let id = if let Some(rest) = v.strip_prefix('"') {
        let (quoted, after) = read_quoted(rest)?;
        let after = after.trim_start();
        if after.is_empty() || after.starts_with(',') {
            // `"uri"` (or the first of a quoted list); may itself be `"<uri>"`.
            match angle_addr(&quoted) {
                Some(inner) => inner.to_owned(),
                None if quoted.contains(['<', '>']) => return None,
                None => quoted,
            }
        } else {
            // `"Display Name" <uri>`
            let (inner, tail) = angle_addr_prefix(after)?;
            if !ends_name_addr(tail) {
                return None;
            }
            inner.to_owned()
        }
    } else if let Some(pos) = v.find('<') {
        // `<uri>` or `Display Name <uri>`
        let (inner, tail) = angle_addr_prefix(&v[pos..])?;
        if !ends_name_addr(tail) {
            return None;
        }
        inner.to_owned()
    } else if v.contains(['>', '"']) {
        return None;
    } else {
        v.to_owned()
    };
    let id = id.trim();
    if id.is_empty() || id.contains(|c: char| c.is_whitespace()) {
        return None;
    }
    Some(id.to_owned())
}

/// What may follow a name-addr's `>`: nothing, header parameters (`;tag=9`, RFC 3261 §20.10)
/// or the next element of a list.
fn ends_name_addr(tail: &str) -> bool {
    let tail = tail.trim_start();
    tail.is_empty() || tail.starts_with(';') || tail.starts_with(',')
}

/// Reads a quoted-string body (RFC 3261 §25.1) after the opening quote: the content with
/// quoted-pairs unescaped, and the text after the closing quote. `None` when unterminated.
pub fn read_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            _ => out.push(c),
        }
    }
    None // unterminated
}

/// `<uri>` spanning the whole (trimmed) string.
fn angle_addr(s: &str) -> Option<&str> {
    let (inner, tail) = angle_addr_prefix(s.trim())?;
    tail.trim().is_empty().then_some(inner)
}

/// `<uri>` at the start of `s`: returns the URI and the rest after `>`.
fn angle_addr_prefix(s: &str) -> Option<(&str, &str)> {
    let rest = s.strip_prefix('<')?;
    let (inner, tail) = rest.split_once('>')?;
    if inner.contains('<') {
        return None;
    }
    Some((inner.trim(), tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identity_value_normalizes_asserted_forms_io_16() {
        assert_eq!(
            identity_value("\"sip:alice@example.com\"").as_deref(),
            Some("sip:alice@example.com")
        );
        assert_eq!(
            identity_value("sip:alice@example.com").as_deref(),
            Some("sip:alice@example.com")
        );
        assert_eq!(
            identity_value("Alice <sip:alice@example.com;user=phone>").as_deref(),
            Some("sip:alice@example.com;user=phone")
        );
    }

    // RFC 3261 §20.10: header parameters after the name-addr are not part of the identity.
    #[test]
    fn header_parameters_and_lists_after_the_name_addr() {
        assert_eq!(
            identity_value("\"A\" <sip:a@x>;tag=9").as_deref(),
            Some("sip:a@x")
        );
        assert_eq!(
            identity_value("<sip:a@x>, <tel:+1>").as_deref(),
            Some("sip:a@x")
        );
        for bad in ["<sip:a@x> junk", "<sip:a@x", "sip:a@x>", "\"open", "a b"] {
            assert_eq!(identity_value(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn identity_value_never_panics(s in ".{0,80}") {
            if let Some(v) = identity_value(&s) {
                prop_assert!(!v.is_empty());
                prop_assert!(!v.contains(char::is_whitespace));
            }
        }

        #[test]
        fn quoted_and_bare_forms_agree(user in "[a-z0-9+._-]{1,16}", host in "[a-z0-9.-]{1,20}") {
            let uri = format!("sip:{user}@{host}");
            let bare = identity_value(&uri);
            prop_assert_eq!(bare.as_deref(), Some(uri.as_str()));
            prop_assert_eq!(identity_value(&format!("\"{uri}\"")), bare.clone());
            prop_assert_eq!(identity_value(&format!("<{uri}>")), bare.clone());
            prop_assert_eq!(identity_value(&format!("\"Name\" <{uri}>")), bare);
        }

    }
}
