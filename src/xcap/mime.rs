//! Media types of XCAP resources (RFC 4825 §15.2; standards.md table 1.2, HT-06, IO-09c, IO-13).

pub const XCAP_EL: &str = "application/xcap-el+xml";
pub const XCAP_ATT: &str = "application/xcap-att+xml";
pub const XCAP_NS: &str = "application/xcap-ns+xml";
pub const XCAP_ERROR: &str = "application/xcap-error+xml";
pub const XCAP_CAPS: &str = "application/xcap-caps+xml";

/// Compares a Content-Type header with an expected media type: type and subtype
/// case-insensitively, parameters such as `charset` ignored (HT-06).
pub fn matches(content_type: Option<&str>, expected: &str) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ht06_parameters_and_case_ignored() {
        assert!(matches(
            Some("application/xcap-el+xml; charset=\"utf-8\""),
            XCAP_EL
        ));
        assert!(matches(Some("Application/XCAP-EL+XML"), XCAP_EL));
        assert!(!matches(Some("application/xml"), XCAP_EL));
        assert!(!matches(None, XCAP_EL));
    }
}
