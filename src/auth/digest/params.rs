//! Digest credentials as received (RFC 7616 §3.4, §3.4.4; auth-param syntax of RFC 9110
//! §11.2) and the comparison of their `uri` with the request-target (§3.4.6): the text-level
//! half of the verifier, kept apart from the nonce state and the hashes.

use super::*;

/// Parses `Digest` credentials (§3.4; auth-param syntax of RFC 9110 §11.2): scheme and names
/// case-insensitive, values as token or quoted-string (with quoted-pairs), optional whitespace
/// around `=` and `,`, empty list elements tolerated. Duplicate known parameters are refused:
/// two different `response` values would make the credential ambiguous.
pub fn parse_authorization(header: &str) -> Result<DigestParams, DigestError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(DigestError::Malformed);
    }
    let rest = header.trim_start_matches([' ', '\t']);
    let scheme_end = rest.find([' ', '\t']).ok_or(DigestError::Malformed)?;
    if !rest[..scheme_end].eq_ignore_ascii_case("Digest") {
        return Err(DigestError::Malformed);
    }
    let pairs = parse_auth_params(&rest[scheme_end..]).ok_or(DigestError::Malformed)?;

    let mut username = None;
    let mut username_ext = None;
    let mut realm = None;
    let mut nonce = None;
    let mut uri = None;
    let mut response = None;
    let mut p = DigestParams::default();
    let mut userhash = None;
    for (name, value) in pairs {
        let slot = match name.as_str() {
            "username" => &mut username,
            "username*" => &mut username_ext,
            "realm" => &mut realm,
            "nonce" => &mut nonce,
            "uri" => &mut uri,
            "response" => &mut response,
            "algorithm" => &mut p.algorithm,
            "cnonce" => &mut p.cnonce,
            "opaque" => &mut p.opaque,
            "qop" => &mut p.qop,
            "nc" => &mut p.nc,
            "userhash" => &mut userhash,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(DigestError::Malformed);
        }
    }
    // userhash=true would need a lookup by H(username:realm); not supported (§3.4.4).
    match userhash.as_deref() {
        None => {}
        Some(v) if v.eq_ignore_ascii_case("false") => {}
        Some(_) => return Err(DigestError::Malformed),
    }
    p.username = match (username, username_ext) {
        (Some(u), None) => u,
        (None, Some(ext)) => decode_ext_value(&ext).ok_or(DigestError::Malformed)?,
        // §3.4.4: username and username* MUST NOT both be present.
        _ => return Err(DigestError::Malformed),
    };
    p.realm = realm.ok_or(DigestError::Malformed)?;
    p.nonce = nonce.ok_or(DigestError::Malformed)?;
    p.uri = uri.ok_or(DigestError::Malformed)?;
    p.response = response.ok_or(DigestError::Malformed)?;
    Ok(p)
}

/// Parses an auth-param list (RFC 9110 §11.2, §5.6.1 list rules) into lowercase names and
/// unquoted values. `None` on any syntax error. Bare (unquoted) values are read leniently up to
/// the next comma or whitespace, since some clients leave `uri` and the like unquoted.
pub(super) fn parse_auth_params(input: &str) -> Option<Vec<(String, String)>> {
    let bytes = input.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < bytes.len() && matches!(bytes[*i], b' ' | b'\t') {
            *i += 1;
        }
    };
    loop {
        // Leading OWS and empty list elements.
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let name_start = i;
        while i < bytes.len() && is_tchar(bytes[i]) {
            i += 1;
        }
        if i == name_start {
            return None;
        }
        let name = input[name_start..i].to_ascii_lowercase();
        skip_ws(&mut i);
        if bytes.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        skip_ws(&mut i);
        let value = if bytes.get(i) == Some(&b'"') {
            i += 1;
            let mut v = String::new();
            let mut closed = false;
            // Work on chars so multi-byte UTF-8 (obs-text) stays intact.
            let mut chars = input[i..].char_indices();
            while let Some((off, c)) = chars.next() {
                match c {
                    // A quote ends the value only where the list can go on (OWS, then `,` or
                    // the end); elsewhere it is taken literally, since clients such as
                    // Python's urllib copy XCAP node selectors (`[@name="x"]`) unescaped
                    // into `uri=`.
                    '"' if closes_quoted_string(&bytes[i + off + 1..]) => {
                        i += off + 1;
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, esc)) if !is_ctl(esc) => v.push(esc),
                        _ => return None,
                    },
                    c if is_ctl(c) => return None,
                    c => v.push(c),
                }
            }
            if !closed {
                return None;
            }
            v
        } else {
            let start = i;
            while i < bytes.len() && !matches!(bytes[i], b',' | b' ' | b'\t') {
                if matches!(bytes[i], b'"' | b'\\') || bytes[i] < 0x20 || bytes[i] == 0x7f {
                    return None;
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            input[start..i].to_string()
        };
        out.push((name, value));
        skip_ws(&mut i);
        match bytes.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return None,
        }
    }
    Some(out)
}

/// Whether a `"` followed by `rest` can close a quoted-string: only OWS, then `,` or the end.
fn closes_quoted_string(rest: &[u8]) -> bool {
    rest.iter()
        .find(|b| !matches!(b, b' ' | b'\t'))
        .is_none_or(|b| *b == b',')
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ctl(c: char) -> bool {
    (c < ' ' && c != '\t') || c == '\x7f'
}

/// Decodes an RFC 8187 ext-value (`UTF-8''%e2%82%ac`); only the UTF-8 charset is accepted.
fn decode_ext_value(ext: &str) -> Option<String> {
    let mut parts = ext.splitn(3, '\'');
    let charset = parts.next()?;
    let _language = parts.next()?;
    let encoded = parts.next()?;
    if !charset.eq_ignore_ascii_case("UTF-8") {
        return None;
    }
    let raw = encoded.as_bytes();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hi = hex_value(*raw.get(i + 1)?)?;
            let lo = hex_value(*raw.get(i + 2)?)?;
            bytes.push(hi << 4 | lo);
            i += 3;
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(bytes).ok()?;
    if s.is_empty() || s.chars().any(is_ctl) {
        return None;
    }
    Some(s)
}

/// Parses `nc`: exactly 8 hex digits (§3.4 `nc-value = 8LHEX`; uppercase tolerated).
pub(super) fn parse_nc(nc: &str) -> Option<u32> {
    if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(nc, 16).ok()
}

/// A request-target split for comparison: optional authority (absolute-form), path, `?query`.
fn split_target(target: &str) -> (Option<&str>, &str, &str) {
    let (authority, rest) = match target.find("://") {
        Some(idx)
            if !target.starts_with('/')
                && idx > 0
                && target[..idx]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
        {
            let after = &target[idx + 3..];
            let end = after.find(['/', '?']).unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        }
        _ => (None, target),
    };
    let (path, query) = match rest.find('?') {
        Some(q) => (&rest[..q], &rest[q..]),
        None => (rest, ""),
    };
    // An absolute-form target with an empty path means "/" (RFC 9112 §3.2.2).
    let path = if path.is_empty() && authority.is_some() {
        "/"
    } else {
        path
    };
    (authority, path, query)
}

/// Whether the Digest `uri` designates the request-target (§3.4.6): equal, or equal after reducing
/// an absolute-form to origin-form and percent-decoding both (clients such as Python's urllib
/// hash `[`, `]` and `"` raw while the request line carries them encoded, or the reverse); two
/// absolute forms must also agree on the authority. Octets that change how an XCAP URI splits
/// (`/`, `?`, `%`) stay encoded, so the two can never name different resources (URI-05, IO-03).
pub(super) fn uri_matches(request_target: &str, digest_uri: &str) -> bool {
    let (ra, rp, rq) = split_target(request_target);
    let (da, dp, dq) = split_target(digest_uri);
    if let (Some(ra), Some(da)) = (ra, da) {
        if !ra.eq_ignore_ascii_case(da) {
            return false;
        }
    }
    (rp == dp && rq == dq)
        || (decode_for_comparison(rp) == decode_for_comparison(dp)
            && decode_for_comparison(rq) == decode_for_comparison(dq))
}

/// Percent-decodes `s` for [`uri_matches`], except the escapes of `/`, `?` and `%`, which are kept
/// (with uppercase hex); malformed escapes are kept as they are.
fn decode_for_comparison(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex_value),
                b.get(i + 2).copied().and_then(hex_value),
            ) {
                let octet = (h << 4) | l;
                if matches!(octet, b'/' | b'?' | b'%') {
                    out.push(b'%');
                    out.extend_from_slice(format!("{octet:02X}").as_bytes());
                } else {
                    out.push(octet);
                }
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Escapes a value for use inside a quoted-string.
pub(super) fn quote(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}
