//! Percent-encoding for XCAP URIs (RFC 3986 §2.1, §3.3; RFC 4825 §6, §6.3): encoding of path
//! segments and node selectors for URIs the server builds itself (`<ancestor>` in `no-parent`,
//! ER-07; `<exists field>` in `uniqueness-failure`, ER-11), and the strict decoder used when
//! parsing request URIs (URI-05, URI-11, URI-13). Pure; no I/O.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PctError {
    /// A `%` not followed by two hexadecimal digits (RFC 3986 §2.1).
    #[error("malformed percent-escape")]
    BadEscape,
    /// The decoded octets are not UTF-8 (RFC 4825 §6.3 requires UTF-8).
    #[error("percent-decoded octets are not UTF-8")]
    NotUtf8,
}

/// Every ASCII character that is not an RFC 3986 `pchar` (unreserved, sub-delims, ':' and '@').
/// Non-ASCII characters are always encoded as UTF-8 octets by `utf8_percent_encode`.
const NOT_PCHAR: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// As `NOT_PCHAR`, but '/' stays literal: it separates node-selector steps (RFC 4825 §6.3).
const NODE_SELECTOR: &AsciiSet = &NOT_PCHAR.remove(b'/');

/// Encodes one path segment (an AUID, XUI or document name): everything but `pchar` is escaped.
pub fn encode_path_segment(s: &str) -> String {
    utf8_percent_encode(s, NOT_PCHAR).to_string()
}

/// Encodes a percent-decoded node selector for use after `~~/` (RFC 4825 §6.3: `"`, `[`, `]`,
/// spaces and non-ASCII are escaped; '/' is kept). A '/' inside a quoted attribute value also
/// stays literal, which the quote-aware step tokenizer accepts (URI-12).
pub fn encode_node_selector(decoded: &str) -> String {
    utf8_percent_encode(decoded, NODE_SELECTOR).to_string()
}

/// As `NOT_PCHAR`, but '/' and '?' stay literal: the query of a URI (RFC 3986 §3.4).
const NOT_QUERY: &AsciiSet = &NOT_PCHAR.remove(b'/').remove(b'?');

/// Encodes a query component (e.g. the `xmlns()` parts of an `<exists field>`, ER-11).
pub fn encode_query(s: &str) -> String {
    utf8_percent_encode(s, NOT_QUERY).to_string()
}

/// Strict percent-decoding to UTF-8: a malformed escape or non-UTF-8 octets are errors, never
/// passed through (URI-11; 400 at the HTTP layer).
pub fn decode(s: &str) -> Result<String, PctError> {
    decode_with_offsets(s).map(|(text, _)| text)
}

/// Strict decoding that also returns, for every decoded byte, the byte offset in `s` where it
/// starts. It lets a caller cut the raw text at the position of a decoded character (IO-03).
pub(crate) fn decode_with_offsets(s: &str) -> Result<(String, Vec<usize>), PctError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut offsets = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex_value(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex_value(*b));
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    offsets.push(i);
                    i += 3;
                }
                _ => return Err(PctError::BadEscape),
            }
        } else {
            out.push(bytes[i]);
            offsets.push(i);
            i += 1;
        }
    }
    let text = String::from_utf8(out).map_err(|_| PctError::NotUtf8)?;
    Ok((text, offsets))
}

/// The value of one hex digit (either case).
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // URI-13, ER-11: field names in `<exists field>` are escaped like path segments; the
    // xmlns() query keeps '/' and '?'.
    #[test]
    fn path_and_query_encoding_uri13() {
        assert_eq!(encode_path_segment("list[1]"), "list%5B1%5D");
        assert_eq!(encode_path_segment("a b\"%"), "a%20b%22%25");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
        assert_eq!(encode_path_segment("sip:a@b;x=y"), "sip:a@b;x=y");
        assert_eq!(encode_path_segment("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(encode_query("a/b?c"), "a/b?c");
        assert_eq!(encode_query("xmlns(p=urn:x y)"), "xmlns(p=urn:x%20y)");
    }

    /// RFC 3986 §3.3 `pchar` minus percent-escapes.
    fn is_pchar(c: char) -> bool {
        c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c)
    }

    #[test]
    fn rfc3986_pchar_kept_in_segment() {
        let pchars = "AZaz09-._~!$&'()*+,;=:@";
        assert_eq!(encode_path_segment(pchars), pchars);
        assert_eq!(
            encode_path_segment("sip:alice@example.com"),
            "sip:alice@example.com"
        );
    }

    #[test]
    fn uri05_segment_escapes_slash_query_and_space() {
        assert_eq!(encode_path_segment("a/b?c d#e%"), "a%2Fb%3Fc%20d%23e%25");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
    }

    #[test]
    fn er07_node_selector_keeps_slash_and_escapes_quotes_brackets() {
        // RFC 4825 §6.3 example encoding (URI-13).
        assert_eq!(
            encode_node_selector(r#"resource-lists/list[@name="friends"]"#),
            "resource-lists/list%5B@name=%22friends%22%5D"
        );
        assert_eq!(
            encode_node_selector("a[@b=\"x y<>?#%\u{1}ü\"]"),
            "a%5B@b=%22x%20y%3C%3E%3F%23%25%01%C3%BC%22%5D"
        );
        assert_eq!(encode_node_selector("a[@b='c']"), "a%5B@b='c'%5D");
    }

    #[test]
    fn uri11_strict_decode_rejects_bad_escapes_and_non_utf8() {
        assert_eq!(decode("a%2fb%7E").as_deref(), Ok("a/b~"));
        assert_eq!(decode("%zz"), Err(PctError::BadEscape));
        assert_eq!(decode("abc%4"), Err(PctError::BadEscape));
        assert_eq!(decode("%"), Err(PctError::BadEscape));
        assert_eq!(decode("%C3"), Err(PctError::NotUtf8));
        assert_eq!(decode("%FF%FE"), Err(PctError::NotUtf8));
        // Raw non-ASCII passes through unchanged (URI-13).
        assert_eq!(decode("ü%C3%BC").as_deref(), Ok("üü"));
    }

    #[test]
    fn io03_offsets_point_into_raw_text() {
        let raw = "b:baz%3Fxmlns(a)";
        let (text, offsets) = decode_with_offsets(raw).unwrap();
        let q = text.find('?').unwrap();
        assert_eq!(&raw[..offsets[q]], "b:baz");
        assert_eq!(offsets.len(), text.len());
    }

    proptest! {
        #[test]
        fn segment_encode_then_decode_is_identity(s in any::<String>()) {
            let enc = encode_path_segment(&s);
            prop_assert!(enc.chars().all(|c| is_pchar(c) || c == '%'));
            prop_assert!(!enc.contains('/'));
            prop_assert_eq!(decode(&enc), Ok(s.clone()));
            let lenient = percent_encoding::percent_decode_str(&enc).decode_utf8();
            prop_assert_eq!(lenient.ok().map(|c| c.into_owned()), Some(s));
        }

        #[test]
        fn node_selector_encode_then_decode_is_identity(s in any::<String>()) {
            let enc = encode_node_selector(&s);
            prop_assert!(enc.chars().all(|c| is_pchar(c) || c == '%' || c == '/'));
            prop_assert_eq!(enc.matches('/').count(), s.matches('/').count());
            prop_assert_eq!(decode(&enc), Ok(s));
        }

        #[test]
        fn decode_never_panics(s in any::<String>()) {
            let _ = decode(&s);
            let _ = decode_with_offsets(&s);
        }

        #[test]
        fn decode_never_panics_on_escape_soup(s in "[%0-9a-fA-FzZ/ü]{0,40}") {
            if let Ok((text, offsets)) = decode_with_offsets(&s) {
                prop_assert_eq!(text.len(), offsets.len());
            }
        }
    }
}
