//! Typed views of the SIP header fields the endpoint acts on (RFC 3261 §20, §25.1; RFC 6665
//! §8.2.1; RFC 3581 `rport`): Via, name-addr fields (From, To, Contact, Route), CSeq, Event,
//! Expires, Max-Forwards. Pure; every parser returns `None` on malformed input.

use super::message::Method;

/// `;name[=value]` parameters in order; names compared case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// Parses `;a=b;c` (the leading `;` optional). `None` on an empty name.
    fn parse(text: &str) -> Option<Params> {
        let mut out = Vec::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"').to_string())),
                None => (part, None),
            };
            if name.is_empty() {
                return None;
            }
            out.push((name.to_string(), value));
        }
        Some(Params(out))
    }

    /// `Some(None)` for a parameter without value, `None` when absent.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn set(&mut self, name: &str, value: Option<String>) {
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    fn print(&self, out: &mut String) {
        for (n, v) in &self.0 {
            out.push(';');
            out.push_str(n);
            if let Some(v) = v {
                out.push('=');
                out.push_str(v);
            }
        }
    }
}

/// One Via value (RFC 3261 §20.42): `SIP/2.0/UDP host[:port];params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Upper-case transport, e.g. `UDP`, `TCP`, `TLS`.
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn parse(value: &str) -> Option<Via> {
        let value = value.trim();
        let (protocol, rest) = value.split_once(|c: char| c.is_ascii_whitespace())?;
        let mut proto = protocol.split('/');
        let (Some(name), Some(version), Some(transport), None) =
            (proto.next(), proto.next(), proto.next(), proto.next())
        else {
            return None;
        };
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" || transport.is_empty() {
            return None;
        }
        let rest = rest.trim_start();
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (rest[..i].trim(), &rest[i..]),
            None => (rest.trim(), ""),
        };
        let (host, port) = split_host_port(sent_by)?;
        Some(Via {
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params: Params::parse(params)?,
        })
    }

    /// The RFC 3261 magic-cookie branch, when the client sent one (§8.1.1.7).
    pub fn branch(&self) -> Option<&str> {
        self.params
            .get("branch")
            .flatten()
            .filter(|b| b.starts_with("z9hG4bK") && b.len() > 7)
    }

    pub fn to_value(&self) -> String {
        let mut out = format!("SIP/2.0/{} {}", self.transport, self.host);
        if let Some(p) = self.port {
            out.push_str(&format!(":{p}"));
        }
        self.params.print(&mut out);
        out
    }
}

/// Where a SIP or SIPS URI points (RFC 3261 §19.1.1, §8.1.2): host, port and the `transport`
/// parameter; `None` for other schemes or a URI without a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTarget {
    pub host: String,
    pub port: Option<u16>,
    pub transport: Option<String>,
    pub secure: bool,
}

impl UriTarget {
    /// Whether requests to it go over TLS: a `sips:` URI or `;transport=tls` (RFC 3261 §26.2).
    pub fn tls(&self) -> bool {
        self.secure
            || self
                .transport
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("tls"))
    }

    pub fn parse(uri: &str) -> Option<UriTarget> {
        let (scheme, rest) = uri.trim().split_once(':')?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "sip" => false,
            "sips" => true,
            _ => return None,
        };
        let rest = rest.split('?').next().unwrap_or(rest);
        let (hostport, params) = match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
        let (host, port) = split_host_port(hostport)?;
        let transport = Params::parse(params)
            .and_then(|p| p.get("transport").flatten().map(str::to_ascii_lowercase));
        Some(UriTarget {
            host,
            port,
            transport,
            secure,
        })
    }
}

/// `host[:port]`, host being a name, an IPv4 address or a bracketed IPv6 reference.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{inner}]"), port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok()?),
    };
    Some((host, port))
}

/// A name-addr or addr-spec with header parameters (RFC 3261 §20.10, §25.1): From, To,
/// Contact, Route. Without angle brackets, everything after the first `;` is a header
/// parameter, not part of the URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub params: Params,
}

impl NameAddr {
    pub fn parse(value: &str) -> Option<NameAddr> {
        let v = value.trim();
        let (display, rest) = if let Some(after) = v.strip_prefix('"') {
            let (name, rest) = crate::identity::name_addr::read_quoted(after)?;
            (Some(name), rest.trim_start())
        } else if let Some(open) = v.find('<') {
            let name = v[..open].trim();
            ((!name.is_empty()).then(|| name.to_string()), &v[open..])
        } else {
            (None, v)
        };
        let (uri, params) = if let Some(inner) = rest.strip_prefix('<') {
            let (uri, after) = inner.split_once('>')?;
            (uri.trim(), after)
        } else {
            if display.is_some() {
                return None;
            }
            match rest.find(';') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            }
        };
        if uri.is_empty() || !uri.contains(':') || uri.contains(char::is_whitespace) {
            return None;
        }
        let params = params.trim();
        if !params.is_empty() && !params.starts_with(';') {
            return None;
        }
        Some(NameAddr {
            display,
            uri: uri.to_string(),
            params: Params::parse(params)?,
        })
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }

    pub fn to_value(&self) -> String {
        let mut out = String::new();
        if let Some(d) = &self.display {
            out.push('"');
            out.push_str(&d.replace('\\', "\\\\").replace('"', "\\\""));
            out.push_str("\" ");
        }
        out.push('<');
        out.push_str(&self.uri);
        out.push('>');
        self.params.print(&mut out);
        out
    }
}

/// CSeq (RFC 3261 §20.16): a 32-bit sequence number and the method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(value: &str) -> Option<CSeq> {
        let mut parts = value.split_whitespace();
        let (Some(seq), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        if seq.len() > 10 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(CSeq {
            seq: seq.parse().ok()?,
            method: Method::parse(method)?,
        })
    }
}

/// Event (RFC 6665 §8.2.1): the package and its parameters (`id`, `diff-processing`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Lower-case package name, e.g. `xcap-diff`.
    pub package: String,
    pub params: Params,
}

impl Event {
    pub fn parse(value: &str) -> Option<Event> {
        let (package, params) = match value.find(';') {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, ""),
        };
        let package = package.trim();
        if package.is_empty()
            || !package
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
        {
            return None;
        }
        Some(Event {
            package: package.to_ascii_lowercase(),
            params: Params::parse(params)?,
        })
    }
}

/// A delta-seconds value (Expires, Min-Expires, Max-Forwards: RFC 3261 §20.19, §20.22).
pub fn delta_seconds(value: &str) -> Option<u32> {
    let v = value.trim();
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Larger values are read as the largest (RFC 3261 §20.19: 2**32-1 is a cap, not an error).
    Some(
        v.parse::<u64>()
            .map_or(u32::MAX, |n| n.min(u64::from(u32::MAX)) as u32),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 3261 §20.42, RFC 3581: sent-by, branch cookie, rport without value, IPv6.
    #[test]
    fn via() {
        let v = Via::parse("SIP/2.0/udp 192.0.2.1:5070;branch=z9hG4bK776;rport").unwrap();
        assert_eq!(
            (v.transport.as_str(), v.host.as_str(), v.port),
            ("UDP", "192.0.2.1", Some(5070))
        );
        assert_eq!(v.branch(), Some("z9hG4bK776"));
        assert_eq!(v.params.get("rport"), Some(None));
        let v6 = Via::parse("SIP/2.0/TCP [2001:db8::1];branch=z9hG4bKx").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("[2001:db8::1]", None));
        assert_eq!(
            Via::parse("SIP/2.0/UDP h;branch=abc").unwrap().branch(),
            None,
            "RFC 2543 branch"
        );
        for bad in [
            "SIP/2.0 h",
            "SIP/3.0/UDP h",
            "SIP/2.0/UDP ",
            "SIP/2.0/UDP h:99999",
            "SIP/2.0/UDP h;=x",
        ] {
            assert!(Via::parse(bad).is_none(), "{bad}");
        }
        let mut v = v;
        v.params.set("received", Some("10.0.0.1".into()));
        v.params.set("rport", Some("5071".into()));
        assert_eq!(
            v.to_value(),
            "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK776;rport=5071;received=10.0.0.1"
        );
    }

    // RFC 3261 §20.10: name-addr and addr-spec; parameters after an addr-spec are header
    // parameters.
    #[test]
    fn name_addr() {
        let a =
            NameAddr::parse("\"Alice \\\"A\\\"\" <sip:alice@example.com;transport=tcp>;tag=1928")
                .unwrap();
        assert_eq!(a.display.as_deref(), Some("Alice \"A\""));
        assert_eq!(a.uri, "sip:alice@example.com;transport=tcp");
        assert_eq!(a.tag(), Some("1928"));
        let b = NameAddr::parse("sip:bob@example.com;tag=x").unwrap();
        assert_eq!(
            (b.uri.as_str(), b.tag()),
            ("sip:bob@example.com", Some("x"))
        );
        let c = NameAddr::parse("Bob <sip:bob@h>").unwrap();
        assert_eq!(c.display.as_deref(), Some("Bob"));
        for bad in [
            "",
            "<sip:a@b",
            "\"open <sip:a@b>",
            "<nocolon>",
            "\"x\" sip:a@b",
            "<sip:a@b> junk",
        ] {
            assert!(NameAddr::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(NameAddr::parse(&a.to_value()), Some(a));
    }

    #[test]
    fn cseq_event_expires() {
        assert_eq!(
            CSeq::parse("63104 SUBSCRIBE"),
            Some(CSeq {
                seq: 63104,
                method: Method::Subscribe
            })
        );
        assert!(CSeq::parse("x SUBSCRIBE").is_none());
        assert!(CSeq::parse("1").is_none());
        assert!(CSeq::parse("99999999999 OPTIONS").is_none());
        let e = Event::parse("XCAP-Diff; diff-processing=aggregate;id=7").unwrap();
        assert_eq!(e.package, "xcap-diff");
        assert_eq!(e.params.get("diff-processing"), Some(Some("aggregate")));
        assert!(Event::parse(";x").is_none());
        assert_eq!(delta_seconds(" 3600 "), Some(3600));
        assert_eq!(delta_seconds("99999999999"), None);
        assert_eq!(delta_seconds("4294967296"), Some(u32::MAX));
        assert_eq!(delta_seconds("-1"), None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,80}") {
            let _ = Via::parse(&s);
            let _ = NameAddr::parse(&s);
            let _ = CSeq::parse(&s);
            let _ = Event::parse(&s);
            let _ = delta_seconds(&s);
        }
    }
}
