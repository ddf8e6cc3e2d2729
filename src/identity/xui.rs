//! XCAP User Identifier (RFC 4825 §4, §6.2) normalization: maps the XUI spellings of real
//! clients, and the identity headers of OMA XDM Core, to one canonical home-directory key
//! (`sip:user@domain` with a lowercase domain, or `tel:number`). Pure; no I/O.
//!
//! Standards items: URI-05, IO-01a..IO-01f, IO-04b, IO-05a, IO-16.

use std::fmt;

use thiserror::Error;

use super::name_addr::identity_value;
use super::split_scheme;
use crate::xcap::pct;

/// The canonical home-directory key of a user (IO-01f).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Xui(String);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum XuiError {
    #[error("empty user identifier")]
    Empty,
    #[error("user identifier contains whitespace, a control character or a delimiter")]
    InvalidChar,
    #[error("malformed percent-encoding in the user identifier")]
    BadEncoding,
    #[error("unsupported URI scheme {0:?} in the user identifier")]
    UnsupportedScheme(String),
    #[error("no user part in the user identifier")]
    MissingUser,
    #[error("invalid host in the user identifier")]
    BadHost,
    #[error("the user identifier has no domain and no default domain is configured")]
    MissingDomain,
    #[error("invalid telephone number in a tel URI")]
    BadNumber,
    #[error("malformed identity header value")]
    MalformedHeader,
}

impl Xui {
    /// Normalizes a percent-decoded XUI (IO-01):
    /// - `sip:` / `sips:` (any case) → `sip:user@host`: user part kept as is, password, port,
    ///   URI parameters and headers dropped, host lowercased;
    /// - `user@host` without a scheme → `sip:user@host` (IO-01a);
    /// - a bare `user` → `sip:user@<default_domain>` (IO-01d, IO-01e), else `MissingDomain`;
    /// - `tel:` → `tel:` + number without visual separators or parameters;
    /// - a URI that is still percent-encoded as a whole (IO-01c) is decoded once more.
    pub fn parse(decoded: &str, default_domain: Option<&str>) -> Result<Xui, XuiError> {
        if decoded.is_empty() {
            return Err(XuiError::Empty);
        }
        // IO-01c: `sip%3Aalice%40example.com` decoded once more. A canonical key always holds a
        // literal ':' (and '@' for sip), so this never fires twice and parsing a key gives it back.
        let still_encoded = (!decoded.contains('@') || !decoded.contains(':'))
            && (contains_ignore_case(decoded, "%3a") || contains_ignore_case(decoded, "%40"));
        let text = if still_encoded {
            pct::decode(decoded).map_err(|_| XuiError::BadEncoding)?
        } else {
            decoded.to_owned()
        };
        if text.is_empty() {
            return Err(XuiError::Empty);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(XuiError::InvalidChar);
        }
        match split_scheme(&text) {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                // `sips:` shares the home directory of `sip:`.
                "sip" | "sips" => sip_key(rest),
                "tel" => tel_key(rest),
                _ => Err(XuiError::UnsupportedScheme(scheme.to_owned())),
            },
            None if text.contains('@') => sip_key(&text),
            None => {
                let domain = default_domain.ok_or(XuiError::MissingDomain)?;
                sip_key(&format!("{text}@{domain}"))
            }
        }
    }

    /// Parses an `X-3GPP-Intended-Identity` or `X-XCAP-Asserted-Identity` value (IO-16): bare
    /// (`sip:bob@x`, IO-04b), quoted (`"sip:bob@x"`, IO-05a) or a name-addr with an optional
    /// display name (`"Bob" <sip:bob@x>;tag=1`).
    pub fn from_identity_header(
        value: &str,
        default_domain: Option<&str>,
    ) -> Result<Xui, XuiError> {
        if value.trim().is_empty() {
            return Err(XuiError::Empty);
        }
        let addr = identity_value(value).ok_or(XuiError::MalformedHeader)?;
        Xui::parse(&addr, default_domain)
    }

    /// The canonical key, e.g. `sip:alice@example.com` or `tel:+12125550100`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user part of a sip key, or the number of a tel key.
    pub fn user(&self) -> &str {
        if let Some(number) = self.0.strip_prefix("tel:") {
            return number;
        }
        let addr = self.0.strip_prefix("sip:").unwrap_or(&self.0);
        addr.rsplit_once('@').map_or(addr, |(user, _)| user)
    }

    /// The lowercase domain of a sip key; None for a tel key.
    pub fn domain(&self) -> Option<&str> {
        self.0
            .strip_prefix("sip:")
            .and_then(|addr| addr.rsplit_once('@'))
            .map(|(_, host)| host)
    }
}

impl fmt::Display for Xui {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Xui {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// `user[:password]@host[:port][;params][?headers]` → `sip:user@host` (RFC 3261 §19.1.1).
fn sip_key(addr: &str) -> Result<Xui, XuiError> {
    let addr = addr.split('?').next().unwrap_or_default();
    let (userinfo, hostport) = addr.split_once('@').ok_or(XuiError::MissingUser)?;
    if hostport.contains('@') {
        // An unescaped '@' cannot be part of a SIP user (RFC 3261 §25.1).
        return Err(XuiError::InvalidChar);
    }
    let user = userinfo.split(':').next().unwrap_or_default();
    if user.is_empty() {
        return Err(XuiError::MissingUser);
    }
    // Name-addr delimiters are never part of a SIP user, escaped or not in a real client's XUI.
    if user.contains(['<', '>', '"', '\\']) {
        return Err(XuiError::InvalidChar);
    }
    let hostport = hostport.split(';').next().unwrap_or_default();
    let host = canonical_host(hostport)?;
    Ok(Xui(format!("sip:{user}@{host}")))
}

/// Lowercase host without the port; a hostname, IPv4 address or bracketed IPv6 reference.
fn canonical_host(hostport: &str) -> Result<String, XuiError> {
    let (host, port) = if hostport.starts_with('[') {
        let close = hostport.find(']').ok_or(XuiError::BadHost)?;
        let inner = &hostport[1..close];
        if inner.is_empty()
            || !inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(XuiError::BadHost);
        }
        let after = &hostport[close + 1..];
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(XuiError::BadHost)?),
        };
        (&hostport[..=close], port)
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(XuiError::BadHost);
    }
    let bracketed = host.starts_with('[');
    if host.is_empty()
        || !(bracketed
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        return Err(XuiError::BadHost);
    }
    Ok(host.to_ascii_lowercase())
}

/// `tel:` number (RFC 3966 §3): parameters and visual separators dropped, hex digits uppercase.
fn tel_key(rest: &str) -> Result<Xui, XuiError> {
    let number: String = rest
        .split(';')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
        .collect();
    let valid = match number.strip_prefix('+') {
        Some(digits) => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        None => {
            !number.is_empty()
                && number
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b'*' || b == b'#')
        }
    };
    if !valid {
        return Err(XuiError::BadNumber);
    }
    Ok(Xui(format!("tel:{}", number.to_ascii_uppercase())))
}

/// Loose canonical form used to compare XUIs written in documents (RL-18a), where a value
/// that [`Xui::parse`] refuses still compares by text: scheme and host lowercased, a missing scheme read as
/// `sip:` (Blink writes `alice@example.com`, Jitsi `sip:alice@example.com`, IO-01a/b).
pub fn canonical_xui(raw: &str) -> String {
    let s = raw.trim();
    let (scheme, rest) = match split_scheme(s) {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("sip".to_owned(), s),
    };
    let end = rest.find([';', '?']).unwrap_or(rest.len());
    let (address, params) = rest.split_at(end);
    let address = match address.rfind('@') {
        Some(at) => format!(
            "{}@{}",
            &address[..at],
            address[at + 1..].to_ascii_lowercase()
        ),
        // `sip:example.com` names a host only.
        None if scheme == "sip" || scheme == "sips" => address.to_ascii_lowercase(),
        None => address.to_owned(),
    };
    format!("{scheme}:{address}{params}")
}

/// True when the percent-encoded XUI path segment names the same user as `xui`.
pub fn same_xui(segment: &str, xui: &str) -> bool {
    match pct::decode(segment) {
        Ok(decoded) => canonical_xui(&decoded) == canonical_xui(xui),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "sip:alice@example.com";

    fn key(s: &str, default: Option<&str>) -> Result<String, XuiError> {
        Xui::parse(s, default).map(|x| x.as_str().to_owned())
    }

    #[test]
    fn io01_all_client_spellings_reach_one_home_directory() {
        let spellings = [
            ("alice@example.com", None),         // IO-01a Blink/sipsimple
            ("sip:alice@example.com", None),     // IO-01b Jitsi
            ("sip%3Aalice%40example.com", None), // IO-01c RCS, still encoded
            ("sip%3aalice%40example.com", None), // IO-01c, lower-case escapes
            ("sip:alice%40example.com", None),   // only the '@' encoded
            ("alice", Some("example.com")),      // IO-01d Kamailio bare user
            ("alice", Some("Example.COM")),      // IO-01e default realm, case-folded
            ("SIP:alice@Example.COM", None),     // scheme and host case
            ("sips:alice@example.com", None),    // sips shares the key
            ("sip:alice@example.com:5061;transport=tls?subject=x", None),
            ("sip:alice:secret@example.com", None), // password dropped
            ("Alice@example.com", None),
        ];
        for (input, default) in spellings {
            let expected = if input.starts_with('A') {
                "sip:Alice@example.com"
            } else {
                KEY
            };
            assert_eq!(key(input, default).as_deref(), Ok(expected), "{input}");
        }
        // The user part keeps its case (RFC 3261 §19.1.4), so these two are different users.
        assert_ne!(key("sip:Alice@x", None), key("sip:alice@x", None));
    }

    #[test]
    fn io01f_accessors_and_display() {
        let xui = Xui::parse("sip:+1-555;phone-context=x@Host.EXAMPLE;user=phone", None).unwrap();
        assert_eq!(xui.as_str(), "sip:+1-555;phone-context=x@host.example");
        assert_eq!(xui.user(), "+1-555;phone-context=x");
        assert_eq!(xui.domain(), Some("host.example"));
        assert_eq!(xui.to_string(), xui.as_str());
        let ipv6 = Xui::parse("sip:bob@[2001:DB8::1]:5060", None).unwrap();
        assert_eq!(ipv6.as_str(), "sip:bob@[2001:db8::1]");
        assert_eq!(ipv6.domain(), Some("[2001:db8::1]"));
    }

    #[test]
    fn io01f_tel_uris_keyed_as_tel() {
        for input in [
            "tel:+1-212-555-0100",
            "TEL:+1(212)555.0100;phone-context=+1",
            "tel%3A%2B12125550100",
        ] {
            let xui = Xui::parse(input, Some("example.com")).unwrap();
            assert_eq!(xui.as_str(), "tel:+12125550100", "{input}");
            assert_eq!(xui.user(), "+12125550100");
            assert_eq!(xui.domain(), None);
        }
        assert_eq!(
            key("tel:7042;phone-context=example.com", None).as_deref(),
            Ok("tel:7042")
        );
        assert_eq!(key("tel:12ab*#", None).as_deref(), Ok("tel:12AB*#"));
        for bad in ["tel:", "tel:+", "tel:+12a", "tel:-", "tel:12x"] {
            assert_eq!(key(bad, None), Err(XuiError::BadNumber), "{bad}");
        }
    }

    #[test]
    fn io01_rejections() {
        assert_eq!(key("", None), Err(XuiError::Empty));
        assert_eq!(key("alice", None), Err(XuiError::MissingDomain));
        assert_eq!(key(" alice@x", None), Err(XuiError::InvalidChar));
        assert_eq!(key("ali ce@x", None), Err(XuiError::InvalidChar));
        assert_eq!(key("alice@x\u{0}", None), Err(XuiError::InvalidChar));
        assert_eq!(key("sip%3Aal%20ice%40x", None), Err(XuiError::InvalidChar));
        assert_eq!(key("sip:a@b@c", None), Err(XuiError::InvalidChar));
        assert_eq!(key("sip:a<b@c", None), Err(XuiError::InvalidChar));
        assert_eq!(key("a\"b@c", None), Err(XuiError::InvalidChar));
        assert_eq!(key("sip:example.com", None), Err(XuiError::MissingUser));
        assert_eq!(key("sip:@example.com", None), Err(XuiError::MissingUser));
        assert_eq!(key("sip:a@", None), Err(XuiError::BadHost));
        assert_eq!(key("sip:a@ex/ample.com", None), Err(XuiError::BadHost));
        assert_eq!(key("sip:a@host:port", None), Err(XuiError::BadHost));
        assert_eq!(key("sip:a@[zz]", None), Err(XuiError::BadHost));
        assert_eq!(key("alice", Some("bad/domain")), Err(XuiError::BadHost));
        assert_eq!(key("sip%3Aa%ZZ", None), Err(XuiError::BadEncoding));
        assert_eq!(
            key("mailto:a@b", None),
            Err(XuiError::UnsupportedScheme("mailto".into()))
        );
    }

    #[test]
    fn io16_identity_header_forms() {
        for value in [
            "sip:alice@example.com",     // IO-04b Doubango, unquoted
            "\"sip:alice@example.com\"", // IO-05a RCS, quoted
            " <sip:alice@Example.com> ",
            "\"Alice \\\"A\\\" <x>\" <sip:alice@example.com>;tag=9",
            "Alice <sips:alice@example.com;transport=tls>",
            "\"<sip:alice@example.com>\"",
            "alice@example.com",
        ] {
            assert_eq!(
                Xui::from_identity_header(value, None)
                    .map(|x| x.to_string())
                    .as_deref(),
                Ok(KEY),
                "{value}"
            );
        }
        assert_eq!(
            Xui::from_identity_header("\"alice\"", Some("example.com"))
                .map(|x| x.to_string())
                .as_deref(),
            Ok(KEY)
        );
        assert_eq!(
            Xui::from_identity_header("<tel:+1-555>", None)
                .map(|x| x.to_string())
                .as_deref(),
            Ok("tel:+1555")
        );
        for bad in ["", "  ", "\"unterminated", "<sip:a@b", "sip:a@b>"] {
            assert!(Xui::from_identity_header(bad, None).is_err(), "{bad}");
        }
        assert_eq!(
            Xui::from_identity_header("<sip:a@b", None),
            Err(XuiError::MalformedHeader)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_keys_are_fixpoints(s in any::<String>(), d in "[a-z.]{0,6}") {
            for default in [None, Some(d.as_str())] {
                if let Ok(xui) = Xui::parse(&s, default) {
                    prop_assert_eq!(Xui::parse(xui.as_str(), None), Ok(xui.clone()));
                }
            }
            let _ = Xui::from_identity_header(&s, Some("example.com"));
        }

        #[test]
        fn uri_like_inputs_are_fixpoints(
            s in "(sips?:|SIP:|tel:|)[a-zA-Z0-9+%@:;?.\\-\\[\\]<>\"()]{0,24}"
        ) {
            if let Ok(xui) = Xui::parse(&s, Some("example.com")) {
                prop_assert_eq!(Xui::parse(xui.as_str(), None), Ok(xui.clone()));
                prop_assert!(xui.as_str().starts_with("sip:") || xui.as_str().starts_with("tel:"));
                // The canonical key of an identity header in brackets is the same key.
                let header = format!("<{}>", xui.as_str());
                prop_assert_eq!(Xui::from_identity_header(&header, None), Ok(xui));
            }
            let _ = Xui::from_identity_header(&s, None);
        }
    }

    // IO-01, RL-18a: XUIs written in documents compare loosely.
    #[test]
    fn xui_canonical_forms_io01() {
        assert_eq!(canonical_xui("alice@Example.COM"), "sip:alice@example.com");
        assert_eq!(
            canonical_xui("SIP:alice@EXAMPLE.com"),
            "sip:alice@example.com"
        );
        assert_eq!(
            canonical_xui("sip:Alice@example.com"),
            "sip:Alice@example.com",
            "user part is case-sensitive"
        );
        assert_eq!(canonical_xui("tel:+1234"), "tel:+1234");
        assert_eq!(
            canonical_xui("alice@example.com:5060"),
            "sip:alice@example.com:5060"
        );
        assert!(same_xui(
            "sip%3Aalice%40example.com",
            "sip:alice@example.com"
        ));
        assert!(same_xui("alice@example.com", "sip:alice@example.com"));
        assert!(!same_xui("sip:bob@example.com", "sip:alice@example.com"));
        assert!(!same_xui("%FF", "sip:alice@example.com"));
    }

    proptest! {
        /// XUI spellings with and without `sip:`, percent-encoded or not, any host case,
        /// name the same user (IO-01).
        #[test]
        fn xui_spellings_match(user in "[a-z0-9._]{1,8}", host in "[a-zA-Z]{1,8}\\.[a-zA-Z]{2,3}") {
            let canonical = format!("sip:{user}@{}", host.to_ascii_lowercase());
            let bare = format!("{user}@{host}");
            let encoded = format!("sip%3A{user}%40{host}");
            let other = format!("sip:{user}x@{host}");
            prop_assert!(same_xui(&bare, &canonical));
            prop_assert!(same_xui(&encoded, &canonical));
            prop_assert!(!same_xui(&other, &canonical));
        }
    }
}
