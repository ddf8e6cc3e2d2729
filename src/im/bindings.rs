//! The location service of the registrar (RFC 3261 §10.3 steps 6–8, §10.2.4; issue #14 scope
//! 1): the contacts bound to each address of record, with their expiry and the Call-ID and CSeq
//! of the REGISTER that last touched them. A REGISTER is applied whole or not at all. A contact
//! with `+sip.instance` and `reg-id` (RFC 5626 §6) replaces the binding of the same instance
//! and reg-id whatever its URI: a UA that restarted on a new address leaves no stale contact.
//! Pure: time comes in as milliseconds.

use std::collections::HashMap;

use thiserror::Error;

/// One contact bound to an address of record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI (where requests for the AOR go).
    pub uri: String,
    /// The Contact value as registered, without its `expires` parameter (`q`, `+sip.instance`
    /// and the like kept), for the 200's Contact list.
    pub value: String,
    pub expires_at_ms: u64,
    pub call_id: String,
    pub cseq: u32,
}

/// What one REGISTER asks (its Contacts already parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// `(uri, value without expires, expires asked for this contact)`; `None`: the Expires
    /// header or the default applies.
    pub contacts: Vec<(String, String, Option<u32>)>,
    /// `Contact: *` (remove every binding, §10.2.2).
    pub wildcard: bool,
    /// The Expires header.
    pub expires: Option<u32>,
    pub call_id: String,
    pub cseq: u32,
}

/// Durations a registrar grants (§10.2.1.1, §10.3 step 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durations {
    pub default_secs: u32,
    pub min_secs: u32,
    pub max_secs: u32,
}

/// Why a REGISTER changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegisterError {
    /// §10.3 step 7: 423 with `Min-Expires`.
    #[error("Interval Too Brief")]
    IntervalTooBrief { min: u32 },
    /// §10.3 step 6: a REGISTER older than one already applied (500).
    #[error("CSeq out of order for this Call-ID")]
    OutOfOrder,
    /// §10.3 step 6: `*` only alone and with `Expires: 0` (400).
    #[error("Contact * needs Expires: 0 and no other contact")]
    Wildcard,
}

/// Bindings by address of record.
#[derive(Debug, Default)]
pub struct Location {
    by_aor: HashMap<String, Vec<Binding>>,
}

impl Location {
    /// Applies `req` to `aor`'s bindings at `now_ms`: all of it, or nothing on an error.
    /// Returns the bindings afterwards.
    pub fn register(
        &mut self,
        aor: &str,
        req: &Register,
        durations: Durations,
        now_ms: u64,
    ) -> Result<Vec<Binding>, RegisterError> {
        let mut bindings = self.current(aor, now_ms);
        let stale = |b: &Binding| b.call_id == req.call_id && req.cseq <= b.cseq;
        if req.wildcard {
            if req.expires != Some(0) || !req.contacts.is_empty() {
                return Err(RegisterError::Wildcard);
            }
            if bindings.iter().any(stale) {
                return Err(RegisterError::OutOfOrder);
            }
            self.by_aor.remove(aor);
            return Ok(Vec::new());
        }
        for (uri, value, asked) in &req.contacts {
            let secs = match asked.or(req.expires) {
                Some(0) => 0,
                Some(s) if s < durations.min_secs => {
                    return Err(RegisterError::IntervalTooBrief {
                        min: durations.min_secs,
                    })
                }
                Some(s) => s.min(durations.max_secs),
                None => durations.default_secs,
            };
            let flow = flow_of(value);
            let existing = flow
                .as_ref()
                .and_then(|f| {
                    bindings
                        .iter()
                        .position(|b| flow_of(&b.value).as_ref() == Some(f))
                })
                .or_else(|| bindings.iter().position(|b| same_uri(&b.uri, uri)));
            match existing {
                Some(i) if stale(&bindings[i]) => return Err(RegisterError::OutOfOrder),
                Some(i) if secs == 0 => {
                    bindings.remove(i);
                }
                None if secs == 0 => {}
                _ => {
                    let binding = Binding {
                        uri: uri.clone(),
                        value: value.clone(),
                        expires_at_ms: now_ms + u64::from(secs) * 1000,
                        call_id: req.call_id.clone(),
                        cseq: req.cseq,
                    };
                    match existing {
                        Some(i) => bindings[i] = binding,
                        None => bindings.push(binding),
                    }
                }
            }
        }
        if bindings.is_empty() {
            self.by_aor.remove(aor);
        } else {
            self.by_aor.insert(aor.to_string(), bindings.clone());
        }
        Ok(bindings)
    }

    /// Puts back `aor`'s bindings as stored (at start), those not expired at `now_ms`, unless
    /// it registered again meanwhile.
    pub fn restore(&mut self, aor: &str, bindings: Vec<Binding>, now_ms: u64) {
        if self.by_aor.contains_key(aor) {
            return;
        }
        let live: Vec<Binding> = bindings
            .into_iter()
            .filter(|b| b.expires_at_ms > now_ms)
            .collect();
        if !live.is_empty() {
            self.by_aor.insert(aor.to_string(), live);
        }
    }

    /// Replaces `aor`'s bindings with `bindings` (another node's registrar wrote them).
    pub fn replace(&mut self, aor: &str, bindings: Vec<Binding>, now_ms: u64) {
        self.by_aor.remove(aor);
        self.restore(aor, bindings, now_ms);
    }

    /// `aor`'s bindings that have not expired at `now_ms`.
    pub fn current(&self, aor: &str, now_ms: u64) -> Vec<Binding> {
        self.by_aor
            .get(aor)
            .map(|v| {
                v.iter()
                    .filter(|b| b.expires_at_ms > now_ms)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets expired bindings.
    pub fn sweep(&mut self, now_ms: u64) {
        self.by_aor.retain(|_, v| {
            v.retain(|b| b.expires_at_ms > now_ms);
            !v.is_empty()
        });
    }

    /// Addresses of record with at least one binding (expired ones may not be swept yet).
    pub fn len(&self) -> usize {
        self.by_aor.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_aor.is_empty()
    }
}

/// RFC 5626 §6: the instance (`+sip.instance`, compared as written without its quotes) and
/// `reg-id` of a Contact value, when it has both.
fn flow_of(value: &str) -> Option<(String, String)> {
    // Header parameters follow the name-addr's '>' (the first after its '<', which comes
    // before any ';'; the instance's own value holds another), or else the URI.
    let first_param = value.find(';').unwrap_or(value.len());
    let end = value
        .find('<')
        .filter(|start| *start < first_param)
        .and_then(|start| value[start..].find('>').map(|e| start + e));
    let params = match end {
        Some(end) => &value[end + 1..],
        None => value.split_once(';').map_or("", |(_, p)| p),
    };
    let (mut instance, mut reg_id) = (None, None);
    for param in params.split(';') {
        let Some((name, v)) = param.split_once('=') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "+sip.instance" => instance = Some(v.trim().trim_matches('"').to_string()),
            "reg-id" => reg_id = Some(v.trim().to_string()),
            _ => {}
        }
    }
    Some((instance?, reg_id?))
}

/// §19.1.4, simplified: scheme and host part (with its parameters) compare without case, the
/// user part as written.
fn same_uri(a: &str, b: &str) -> bool {
    fn parts(u: &str) -> (String, &str, String) {
        let (scheme, rest) = u.split_once(':').unwrap_or(("", u));
        let (user, host) = rest.rsplit_once('@').unwrap_or(("", rest));
        (scheme.to_ascii_lowercase(), user, host.to_ascii_lowercase())
    }
    parts(a) == parts(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Durations = Durations {
        default_secs: 3600,
        min_secs: 60,
        max_secs: 7200,
    };

    fn reg(contacts: &[(&str, Option<u32>)], expires: Option<u32>, cseq: u32) -> Register {
        Register {
            contacts: contacts
                .iter()
                .map(|(u, e)| (u.to_string(), format!("<{u}>"), *e))
                .collect(),
            wildcard: false,
            expires,
            call_id: "c1".into(),
            cseq,
        }
    }

    // RFC 5626 §6: a contact with the instance and reg-id of a binding replaces it, whatever
    // its URI and Call-ID (a UA restarted on a new port); another reg-id, or no instance, is
    // a binding of its own.
    #[test]
    fn one_binding_per_instance_and_reg_id_rfc5626() {
        let mut l = Location::default();
        let instance = r#";+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>""#;
        let register = |l: &mut Location, uri: &str, params: String, call_id: &str| {
            let mut r = reg(&[(uri, None)], None, 1);
            r.contacts[0].1 = format!("<{uri}>{params}");
            r.call_id = call_id.into();
            l.register("sip:a@x", &r, D, 0).unwrap()
        };
        register(
            &mut l,
            "sip:a@192.0.2.1:5060",
            format!("{instance};reg-id=1"),
            "c1",
        );
        let got = register(
            &mut l,
            "sip:a@192.0.2.1:6000",
            format!("{instance};reg-id=1"),
            "c2",
        );
        let uris: Vec<&str> = got.iter().map(|b| b.uri.as_str()).collect();
        assert_eq!(uris, ["sip:a@192.0.2.1:6000"]);
        let got = register(
            &mut l,
            "sip:a@192.0.2.1:7000",
            format!("{instance};reg-id=2"),
            "c3",
        );
        assert_eq!(got.len(), 2, "another flow of the instance");
        let got = register(&mut l, "sip:a@192.0.2.1:8000", instance.to_string(), "c4");
        assert_eq!(
            got.len(),
            3,
            "an instance without reg-id is bound by its URI"
        );
        assert_eq!(flow_of("sip:a@h;reg-id=1"), None);
        assert_eq!(
            flow_of("sip:a@h;+SIP.Instance=\"<urn:x>\";Reg-Id=3"),
            Some(("<urn:x>".to_string(), "3".to_string()))
        );
    }

    // RFC 3261 §10.3 step 7: default, capped and per-contact durations; several contacts.
    #[test]
    fn contacts_bound_with_their_durations() {
        let mut l = Location::default();
        let got = l
            .register(
                "sip:a@x",
                &reg(
                    &[("sip:a@1.2.3.4", None), ("sip:a@5.6.7.8", Some(99999))],
                    None,
                    1,
                ),
                D,
                0,
            )
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].expires_at_ms, 3_600_000);
        assert_eq!(got[1].expires_at_ms, 7_200_000);
        assert_eq!(
            l.current("sip:a@x", 3_600_000).len(),
            1,
            "the first expired"
        );
        l.sweep(7_200_001);
        assert!(l.is_empty());
    }

    // §10.3 step 7: 423 below the minimum; nothing changes.
    #[test]
    fn interval_too_brief() {
        let mut l = Location::default();
        assert_eq!(
            l.register("sip:a@x", &reg(&[("sip:a@h", Some(10))], None, 1), D, 0),
            Err(RegisterError::IntervalTooBrief { min: 60 })
        );
        assert!(l.is_empty());
    }

    // §10.3 step 6: a refresh in the same Call-ID needs a higher CSeq; another Call-ID (a
    // rebooted UA) replaces the binding; Expires 0 removes it.
    #[test]
    fn refresh_order_and_removal() {
        let mut l = Location::default();
        l.register("sip:a@x", &reg(&[("sip:a@h", None)], None, 5), D, 0)
            .unwrap();
        assert_eq!(
            l.register("sip:a@x", &reg(&[("SIP:a@H", None)], None, 5), D, 0),
            Err(RegisterError::OutOfOrder)
        );
        let mut other = reg(&[("sip:a@h", Some(120))], None, 1);
        other.call_id = "c2".into();
        let got = l.register("sip:a@x", &other, D, 0).unwrap();
        assert_eq!((got.len(), got[0].expires_at_ms), (1, 120_000));
        let mut gone = reg(&[("sip:a@h", None)], Some(0), 2);
        gone.call_id = "c2".into();
        assert_eq!(l.register("sip:a@x", &gone, D, 0), Ok(Vec::new()));
        assert!(l.is_empty());
    }

    // §10.2.2: `Contact: *` with `Expires: 0` removes every binding; anything else is 400.
    #[test]
    fn wildcard_removes_all() {
        let mut l = Location::default();
        l.register(
            "sip:a@x",
            &reg(&[("sip:a@h", None), ("sip:a@g", None)], None, 1),
            D,
            0,
        )
        .unwrap();
        let mut star = reg(&[], Some(3600), 2);
        star.wildcard = true;
        assert_eq!(
            l.register("sip:a@x", &star, D, 0),
            Err(RegisterError::Wildcard)
        );
        star.expires = Some(0);
        assert_eq!(l.register("sip:a@x", &star, D, 0), Ok(Vec::new()));
        assert!(l.current("sip:a@x", 0).is_empty());
    }
}
