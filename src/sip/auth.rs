//! Who sent a SIP request (issue #13 scope 2): a P-Asserted-Identity counts only from a peer in
//! `sip.trusted_peers`, the SIP/IP core (RFC 3325 §5, §6; IM-30) and is ignored from anyone
//! else; otherwise SIP Digest (RFC 3261 §22.2, §22.4) against the same credential store and
//! HA1s as HTTP, through the shared verifier ([`crate::auth::digest`]). In the development
//! mode the From URI is trusted, as the XUI in the URI is on the HTTP side.

use std::net::IpAddr;
use std::sync::Arc;

use super::header::NameAddr;
use super::message::Message;
use crate::auth::digest::{parse_authorization, DigestAuthenticator, DigestError};
use crate::auth::trust::TrustedPeers;
use crate::identity::Xui;
use crate::storage::credentials::CredentialStore;

/// The answer about a request's sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipIdentity {
    /// The canonical XUI of the sender.
    Authenticated(String),
    /// 401 with these `WWW-Authenticate` values (`stale=true` when only the nonce expired).
    Challenge(Vec<String>),
}

/// Identifies SIP senders.
pub struct SipAuthenticator {
    pub digest: DigestAuthenticator,
    pub creds: Arc<dyn CredentialStore>,
    pub trusted_peers: TrustedPeers,
    pub default_domain: Option<String>,
    /// `auth = "none"`: the From URI is the sender (loopback only, like HTTP).
    pub dev_mode: bool,
}

impl SipAuthenticator {
    /// Who sent `request` from `source` at `now` (unix seconds).
    pub async fn identify(&self, request: &Message, source: IpAddr, now: u64) -> SipIdentity {
        let from = request.headers.get("From").and_then(NameAddr::parse);
        let domain = self.default_domain.as_deref();
        if self.dev_mode {
            if let Some(xui) = from.as_ref().and_then(|f| Xui::parse(&f.uri, domain).ok()) {
                return SipIdentity::Authenticated(xui.as_str().to_string());
            }
        }
        if self.trusted_peers.contains(source) {
            let asserted = request
                .headers
                .get("P-Asserted-Identity")
                .and_then(|v| Xui::from_identity_header(v, domain).ok());
            if let Some(xui) = asserted {
                return SipIdentity::Authenticated(xui.as_str().to_string());
            }
        }
        // The realm: the sender's domain (the same realm-per-domain rule as HTTP).
        let realm = from
            .as_ref()
            .and_then(|f| Xui::parse(&f.uri, domain).ok())
            .and_then(|x| x.domain().map(str::to_string))
            .or_else(|| self.default_domain.clone())
            .unwrap_or_else(|| "xcapd".into());
        let (uri, method) = match &request.start {
            super::message::StartLine::Request { uri, method } => (uri.as_str(), method.as_str()),
            super::message::StartLine::Response { .. } => {
                return SipIdentity::Challenge(self.digest.challenges(&realm, false, now))
            }
        };
        let authorization = request.headers.get_all("Authorization").find(|v| {
            v.trim_start()
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("digest "))
        });
        let Some(params) = authorization.and_then(|a| parse_authorization(a).ok()) else {
            return SipIdentity::Challenge(self.digest.challenges(&realm, false, now));
        };
        let challenge_realm = params.realm.clone();
        // RFC 3261 §22.4: the digest-uri is the Request-URI; forged nonces end here.
        let checked = match self.digest.precheck(uri, params) {
            Ok(c) => c,
            Err(e) => return self.refused(e, &challenge_realm, &realm, now),
        };
        let (user, user_realm, alg) = checked.lookup();
        let found = self
            .creds
            .lookup_ha1(user, user_realm, alg.as_str())
            .await
            .ok()
            .flatten();
        let (xui, ha1) = found.unzip();
        match self.digest.complete(checked, method, ha1.as_deref(), now) {
            Ok(_) => match xui {
                Some(xui) => SipIdentity::Authenticated(xui),
                None => SipIdentity::Challenge(self.digest.challenges(&realm, false, now)),
            },
            Err(e) => self.refused(e, &challenge_realm, &realm, now),
        }
    }

    /// The principal `xui` acts as: its roles in the credential store (a `service` user such
    /// as the IM Server may watch anyone's documents, issue #13 scope 4); unknown users, and
    /// asserted identities without an account, are plain users.
    pub async fn principal(&self, xui: &str) -> crate::authz::Principal {
        crate::storage::credentials::principal_in(self.creds.as_ref(), xui).await
    }

    fn refused(&self, e: DigestError, asked: &str, realm: &str, now: u64) -> SipIdentity {
        let realm = if asked.is_empty() { realm } else { asked };
        SipIdentity::Challenge(self.digest.challenges(realm, e.is_stale(), now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::digest::{compute_response, Algorithm, DigestConfig};
    use crate::sip::message::{parse, Limits};
    use crate::storage::credentials::{make_credential, MemoryCredentials, Role};
    use crate::storage::Blocking;

    const NOW: u64 = 1_700_000_000;

    fn authenticator(trusted: &[&str], dev_mode: bool) -> SipAuthenticator {
        let creds = Blocking::new(MemoryCredentials::new());
        creds
            .put_user(&make_credential(
                "sip:alice@example.com",
                "example.com",
                "secret",
                vec![Role::User],
                1,
            ))
            .unwrap();
        SipAuthenticator {
            digest: DigestAuthenticator::new([7; 32], DigestConfig::default(), |b| b.fill(3)),
            creds: creds.0,
            trusted_peers: TrustedPeers::parse(
                &trusted.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .unwrap(),
            default_domain: Some("example.com".into()),
            dev_mode,
        }
    }

    fn subscribe(extra: &str) -> Message {
        let text = format!(
            "SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: c\r\nCSeq: 1 SUBSCRIBE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        parse(text.as_bytes(), &Limits::default()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn param<'a>(challenge: &'a str, name: &str) -> &'a str {
        let start = challenge.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let rest = &challenge[start..];
        &rest[..rest.find('"').unwrap()]
    }

    // RFC 3325 §5 (IM-30): P-Asserted-Identity from the SIP core only; elsewhere a challenge.
    #[tokio::test]
    async fn asserted_identity_only_from_trusted_peers() {
        let a = authenticator(&["10.0.0.0/8"], false);
        let req = subscribe("P-Asserted-Identity: <sip:Alice@EXAMPLE.com>\r\n");
        assert_eq!(
            a.identify(&req, ip("10.1.2.3"), NOW).await,
            SipIdentity::Authenticated("sip:Alice@example.com".into())
        );
        assert!(matches!(
            a.identify(&req, ip("192.0.2.1"), NOW).await,
            SipIdentity::Challenge(_)
        ));
    }

    // RFC 3261 §22.4: Digest over the Request-URI and the SIP method, with the HTTP HA1s.
    #[tokio::test]
    async fn sip_digest_with_the_shared_credentials() {
        let a = authenticator(&[], false);
        let SipIdentity::Challenge(ch) = a.identify(&subscribe(""), ip("192.0.2.1"), NOW).await
        else {
            panic!("challenge expected")
        };
        let md5 = ch.iter().find(|c| c.contains("MD5")).unwrap();
        assert_eq!(param(md5, "realm"), "example.com");
        let (nonce, opaque) = (param(md5, "nonce"), param(md5, "opaque"));
        let ha1 = crate::auth::digest::ha1("alice", "example.com", "secret", Algorithm::Md5);
        let uri = "sip:alice@example.com";
        let answer = |method: &str, pass_ha1: &str| {
            let response = compute_response(
                Algorithm::Md5,
                pass_ha1,
                nonce,
                "00000001",
                "c0ffee",
                "auth",
                method,
                uri,
            );
            format!("Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\", opaque=\"{opaque}\"\r\n")
        };
        assert_eq!(
            a.identify(&subscribe(&answer("SUBSCRIBE", &ha1)), ip("192.0.2.1"), NOW)
                .await,
            SipIdentity::Authenticated("sip:alice@example.com".into())
        );
        // Computed for another method, or with a wrong password: challenged again.
        let wrong = crate::auth::digest::ha1("alice", "example.com", "nope", Algorithm::Md5);
        for bad in [answer("REGISTER", &ha1), answer("SUBSCRIBE", &wrong)] {
            assert!(matches!(
                a.identify(&subscribe(&bad), ip("192.0.2.1"), NOW).await,
                SipIdentity::Challenge(_)
            ));
        }
    }

    #[tokio::test]
    async fn dev_mode_trusts_from() {
        let a = authenticator(&[], true);
        assert_eq!(
            a.identify(&subscribe(""), ip("127.0.0.1"), NOW).await,
            SipIdentity::Authenticated("sip:alice@example.com".into())
        );
    }
}
