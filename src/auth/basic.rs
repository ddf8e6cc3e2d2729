//! HTTP Basic authentication (RFC 7617), opt-in for TLS deployments only (HT-02: Basic is never
//! accepted without TLS; enforcing that is the caller's job).
//!
//! Pure core (layer L0): parses `Authorization: Basic` credentials (§2) and checks the password
//! against the stored Digest HA1 (RFC 7616 §3.4.2), so Basic needs no stored passwords either.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use super::digest::{ct_eq, ha1, Algorithm};

/// Longest `Authorization` value we decode.
const MAX_HEADER_LEN: usize = 4 * 1024;

/// Standard alphabet (RFC 7617 §2 uses RFC 4648 base64); padding optional, as some clients omit it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why Basic credentials could not be read. Every variant means 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BasicError {
    /// The scheme is not `Basic`, or no credentials follow it.
    #[error("not Basic credentials")]
    NotBasic,
    /// The token is not base64, too long, or the decoded text has no `:` separator.
    #[error("malformed Basic credentials")]
    Malformed,
    /// The decoded user-pass is not UTF-8 (we announce `charset="UTF-8"`, §2.1).
    #[error("Basic credentials are not UTF-8")]
    NotUtf8,
    /// The user-id or password contains a control character (§2: MUST NOT).
    #[error("control character in Basic credentials")]
    ControlCharacter,
}

/// The `WWW-Authenticate` value offering Basic for `realm`, announcing UTF-8 (§2.1).
pub fn basic_challenge(realm: &str) -> String {
    let mut s = String::with_capacity(realm.len() + 32);
    s.push_str("Basic realm=\"");
    for c in realm.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push_str("\", charset=\"UTF-8\"");
    s
}

/// Parses `Basic <base64(user-id ":" password)>` (§2) into (user-id, password). The scheme is
/// case-insensitive; the user-id ends at the first colon, the password may contain colons.
pub fn parse_basic(header: &str) -> Result<(String, String), BasicError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(BasicError::Malformed);
    }
    let rest = header.trim_matches([' ', '\t']);
    let (scheme, token) = rest.split_once([' ', '\t']).ok_or(BasicError::NotBasic)?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return Err(BasicError::NotBasic);
    }
    let token = token.trim_start_matches([' ', '\t']);
    if token.is_empty() {
        return Err(BasicError::NotBasic);
    }
    let decoded = BASE64.decode(token).map_err(|_| BasicError::Malformed)?;
    let text = String::from_utf8(decoded).map_err(|_| BasicError::NotUtf8)?;
    if text.chars().any(char::is_control) {
        return Err(BasicError::ControlCharacter);
    }
    let (user, password) = text.split_once(':').ok_or(BasicError::Malformed)?;
    Ok((user.to_string(), password.to_string()))
}

/// Whether `password` matches the stored HA1 (hex, any case) of (`user`, `realm`) for `alg`.
/// The comparison is constant-time.
pub fn verify_basic(
    user: &str,
    password: &str,
    realm: &str,
    stored_ha1: &str,
    alg: Algorithm,
) -> bool {
    let computed = ha1(user, realm, password, alg);
    ct_eq(
        computed.as_bytes(),
        stored_ha1.trim().to_ascii_lowercase().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;

    #[test]
    fn rfc7617_2_aladdin_example() {
        // §2: user-id "Aladdin", password "open sesame".
        assert_eq!(
            parse_basic("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Ok(("Aladdin".into(), "open sesame".into()))
        );
        // Scheme case-insensitive, extra whitespace, padding optional.
        assert_eq!(
            parse_basic("  bAsIc   QWxhZGRpbjpvcGVuIHNlc2FtZQ "),
            Ok(("Aladdin".into(), "open sesame".into()))
        );
    }

    #[test]
    fn rfc7617_2_1_utf8_example() {
        // §2.1: user-id "test", password "123£" in UTF-8.
        assert_eq!(
            parse_basic("Basic dGVzdDoxMjPCow=="),
            Ok(("test".into(), "123£".into()))
        );
        assert_eq!(
            basic_challenge("foo"),
            "Basic realm=\"foo\", charset=\"UTF-8\""
        );
        assert_eq!(
            basic_challenge("a\"b"),
            "Basic realm=\"a\\\"b\", charset=\"UTF-8\""
        );
    }

    #[test]
    fn rfc7617_2_password_may_contain_colons() {
        let token = STANDARD.encode("bob:pa:ss:");
        assert_eq!(
            parse_basic(&format!("Basic {token}")),
            Ok(("bob".into(), "pa:ss:".into()))
        );
    }

    #[test]
    fn rejections() {
        assert_eq!(parse_basic(""), Err(BasicError::NotBasic));
        assert_eq!(parse_basic("Basic"), Err(BasicError::NotBasic));
        assert_eq!(parse_basic("Basic   "), Err(BasicError::NotBasic));
        assert_eq!(
            parse_basic("Digest QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Err(BasicError::NotBasic)
        );
        assert_eq!(parse_basic("Basic !!!"), Err(BasicError::Malformed));
        assert_eq!(
            parse_basic(&format!("Basic {}", STANDARD.encode("nocolon"))),
            Err(BasicError::Malformed)
        );
        assert_eq!(
            parse_basic(&format!("Basic {}", STANDARD.encode([0x61, 0x3a, 0xff]))),
            Err(BasicError::NotUtf8)
        );
        assert_eq!(
            parse_basic(&format!("Basic {}", STANDARD.encode("a:b\nc"))),
            Err(BasicError::ControlCharacter)
        );
        assert_eq!(
            parse_basic(&format!("Basic {}", "QUFB".repeat(2000))),
            Err(BasicError::Malformed)
        );
    }

    #[test]
    fn ht02_verify_against_stored_ha1_both_algorithms() {
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let stored = ha1("alice@example.com", "example.com", "pw:1", alg);
            assert!(verify_basic(
                "alice@example.com",
                "pw:1",
                "example.com",
                &stored,
                alg
            ));
            assert!(verify_basic(
                "alice@example.com",
                "pw:1",
                "example.com",
                &stored.to_ascii_uppercase(),
                alg
            ));
            assert!(!verify_basic(
                "alice@example.com",
                "pw:2",
                "example.com",
                &stored,
                alg
            ));
            assert!(!verify_basic(
                "alice@example.com",
                "pw:1",
                "other.org",
                &stored,
                alg
            ));
            assert!(!verify_basic(
                "bob@example.com",
                "pw:1",
                "example.com",
                &stored,
                alg
            ));
            assert!(!verify_basic(
                "alice@example.com",
                "pw:1",
                "example.com",
                "",
                alg
            ));
        }
        // An HA1 of the other algorithm never matches.
        let md5 = ha1("u", "r", "p", Algorithm::Md5);
        assert!(!verify_basic("u", "r", "p", &md5, Algorithm::Sha256));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = parse_basic(&s);
            let _ = parse_basic(&format!("Basic {s}"));
        }

        #[test]
        fn round_trip(user in "[^:\u{0}-\u{1f}\u{7f}-\u{9f}]{0,20}", pass in "[^\u{0}-\u{1f}\u{7f}-\u{9f}]{0,20}") {
            let token = STANDARD.encode(format!("{user}:{pass}"));
            prop_assert_eq!(parse_basic(&format!("Basic {token}")), Ok((user, pass)));
        }
    }
}
