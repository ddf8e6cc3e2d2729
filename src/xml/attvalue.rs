//! XML AttValue handling (XML 1.0 §2.3 production [10], §4.6 predefined entities), as used by
//! XCAP attribute tests in node selectors (RFC 4825 §6.3, NS-06) and attribute PUT bodies
//! (RFC 4825 §7.7, §8.2.2, OP-20, IO-11e). Pure; no I/O.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AttValueError {
    #[error("attribute value is not quoted")]
    NotQuoted,
    #[error("attribute value contains a character not allowed in an AttValue")]
    ForbiddenChar,
    #[error("malformed entity or character reference")]
    BadReference,
}

/// Decodes a quoted AttValue (`"…"` or `'…'`): removes the quotes and expands references.
/// The closing quote must be the last character and the quote character must not occur inside.
pub fn decode_quoted(raw: &str) -> Result<String, AttValueError> {
    let quote = match raw.chars().next() {
        Some(q @ ('"' | '\'')) => q,
        _ => return Err(AttValueError::NotQuoted),
    };
    if raw.len() < 2 || !raw.ends_with(quote) {
        return Err(AttValueError::NotQuoted);
    }
    let inner = &raw[1..raw.len() - 1];
    if inner.contains(quote) {
        return Err(AttValueError::ForbiddenChar);
    }
    decode_unquoted(inner)
}

/// Expands entity and character references in AttValue content without quotes. `<` and a bare
/// `&` are refused, as the AttValue production forbids them.
pub fn decode_unquoted(inner: &str) -> Result<String, AttValueError> {
    let mut out = String::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(pos) = rest.find(['&', '<']) {
        out.push_str(&rest[..pos]);
        if rest.as_bytes()[pos] == b'<' {
            return Err(AttValueError::ForbiddenChar);
        }
        let after = &rest[pos + 1..];
        let end = after.find(';').ok_or(AttValueError::BadReference)?;
        out.push(resolve_reference(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve_reference(name: &str) -> Result<char, AttValueError> {
    let code = match name {
        "lt" => return Ok('<'),
        "gt" => return Ok('>'),
        "amp" => return Ok('&'),
        "apos" => return Ok('\''),
        "quot" => return Ok('"'),
        _ => {
            if let Some(hex) = name.strip_prefix("#x") {
                u32::from_str_radix(hex, 16).map_err(|_| AttValueError::BadReference)?
            } else if let Some(dec) = name.strip_prefix('#') {
                dec.parse::<u32>()
                    .map_err(|_| AttValueError::BadReference)?
            } else {
                return Err(AttValueError::BadReference);
            }
        }
    };
    let c = char::from_u32(code).ok_or(AttValueError::BadReference)?;
    if is_xml_char(c) {
        Ok(c)
    } else {
        Err(AttValueError::BadReference)
    }
}

/// XML 1.0 `Char` production (§2.2).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Escapes a value for use inside a double-quoted attribute. Tab, CR and LF are written as
/// character references so that attribute-value normalization gives the same value back.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    out
}

/// The quoted AttValue form returned by attribute GET (RFC 4825 §7.9, OP-29).
pub fn quote(value: &str) -> String {
    format!("\"{}\"", escape(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns06_quotes_removed_and_entities_decoded() {
        assert_eq!(decode_quoted("\"a&quot;b\"").as_deref(), Ok("a\"b"));
        assert_eq!(
            decode_quoted("'x&amp;y&#65;&#x42;'").as_deref(),
            Ok("x&yAB")
        );
    }

    #[test]
    fn er06_forbidden_content_rejected() {
        assert_eq!(decode_quoted("\"a<b\""), Err(AttValueError::ForbiddenChar));
        assert_eq!(decode_quoted("\"a&b\""), Err(AttValueError::BadReference));
        assert_eq!(decode_quoted("\"a\"b\""), Err(AttValueError::ForbiddenChar));
        assert_eq!(decode_quoted("\"abc"), Err(AttValueError::NotQuoted));
        assert_eq!(decode_quoted("abc"), Err(AttValueError::NotQuoted));
        assert_eq!(decode_unquoted("&#0;"), Err(AttValueError::BadReference));
    }

    #[test]
    fn escape_round_trips() {
        for v in [
            "plain",
            "a\"b<c&d",
            "tab\tnl\ncr\r",
            "sip:alice@example.com",
        ] {
            assert_eq!(decode_quoted(&quote(v)).as_deref(), Ok(v));
        }
    }
}
