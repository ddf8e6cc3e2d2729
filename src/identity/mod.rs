//! Identities (layer L0, pure): the one place that parses, canonicalizes and compares the
//! identities XCAP, policy, trust and SIP deal in.
//! - [`xui`]: XCAP User Identifiers (RFC 4825 §4, §6.2; IO-01, IO-16) as home-directory keys,
//!   and the loose comparison of XUIs written in documents (RL-18a).
//! - [`compare`]: URI equality by scheme (SIP/SIPS per RFC 3261 §19.1.4, tel per RFC 3966 §4;
//!   RFC 4745 §7.1.2, CP-06) and domain comparison with IDNA ToASCII (CP-10).
//! - [`name_addr`]: identity header values (RFC 3261 §20.10 name-addr / addr-spec, quoted
//!   strings; IO-16).

pub mod compare;
pub mod name_addr;
pub mod xui;

pub use compare::{domain_equal, domain_to_ascii, uri_domain, uri_equal};
pub use name_addr::identity_value;
pub use xui::{Xui, XuiError};

/// Splits `scheme:rest` when the text before the first ':' is a URI scheme (RFC 3986 §3.1):
/// `alice@example.com:5060` has none ('@' is not a scheme character).
pub fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
    #[test]
    fn schemes() {
        assert_eq!(split_scheme("sip:a@b"), Some(("sip", "a@b")));
        assert_eq!(split_scheme("SIPS:a@b:5061"), Some(("SIPS", "a@b:5061")));
        assert_eq!(split_scheme("x-y.z+1:v"), Some(("x-y.z+1", "v")));
        assert_eq!(split_scheme("alice@example.com:5060"), None);
        assert_eq!(split_scheme("1sip:a"), None);
        assert_eq!(split_scheme(":a"), None);
        assert_eq!(split_scheme("nocolon"), None);
    }
}
