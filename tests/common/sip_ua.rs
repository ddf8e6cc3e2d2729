//! A minimal SIP subscriber over UDP for the notifier tests, written from RFC 3261 / RFC 6665
//! independently of the server code: sends SUBSCRIBEs from its own socket (its Contact), reads
//! the responses and NOTIFYs that come back, and answers NOTIFYs with the code a test asks.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

pub struct Ua {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub user: String,
    pub call_id: String,
    pub from_tag: String,
    /// The notifier's tag, once a 2xx set up the dialog.
    pub to_tag: Option<String>,
    pub cseq: u32,
    branch: u32,
}

/// A received SIP message, split for the tests.
#[derive(Debug, Clone)]
pub struct Msg {
    pub text: String,
    pub from: SocketAddr,
}

impl Msg {
    pub fn status(&self) -> Option<u16> {
        let first = self.text.lines().next()?;
        first
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.split(' ').next()?.parse().ok())
    }

    pub fn is_notify(&self) -> bool {
        self.text.starts_with("NOTIFY ")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).into_iter().next()
    }

    pub fn headers(&self, name: &str) -> Vec<&str> {
        self.head()
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
            .collect()
    }

    fn head(&self) -> &str {
        self.text.split("\r\n\r\n").next().unwrap_or("")
    }

    pub fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    /// The `tag` parameter of a From or To value.
    pub fn tag(&self, name: &str) -> Option<String> {
        let v = self.header(name)?;
        let i = v.find(";tag=")? + 5;
        Some(v[i..].split(';').next()?.trim().to_string())
    }
}

/// The resource-lists body naming `uris`.
pub fn resource_lists(uris: &[&str]) -> String {
    let entries: String = uris
        .iter()
        .map(|u| format!("<entry uri=\"{u}\"/>"))
        .collect();
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>{entries}</list></resource-lists>")
}

/// An im-rules document (IM-26b) that allows exactly `who`; anyone else gets the default.
pub fn allow_only(who: &[&str]) -> String {
    let ids: String = who
        .iter()
        .map(|w| format!("<cr:one id=\"{w}\"/>"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cr:ruleset xmlns:cr=\"urn:ietf:params:xml:ns:common-policy\" xmlns:im=\"urn:iptel:xml:ns:im-rules\"><cr:rule id=\"friends\"><cr:conditions><cr:identity>{ids}</cr:identity></cr:conditions><cr:actions><im:im-handling>allow</im:im-handling></cr:actions></cr:rule></cr:ruleset>\n"
    )
}

/// A UA for `user` registered at `server` with its own address as the contact (600 s); the
/// contact URI.
pub async fn registered(server: SocketAddr, user: &str) -> (Ua, String) {
    let mut ua = Ua::new(server, user).await;
    let name = user
        .split(':')
        .nth(1)
        .and_then(|u| u.split('@').next())
        .unwrap_or("ua");
    let contact = format!("sip:{name}@{}", ua.local());
    let register = ua.register(&[&contact], Some(600), "");
    assert_eq!(ua.request(&register).await.0.status(), Some(200));
    (ua, contact)
}

impl Ua {
    pub async fn new(server: SocketAddr, user: &str) -> Ua {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        Ua {
            socket,
            server,
            user: user.into(),
            call_id: format!("sub-{port}@127.0.0.1"),
            from_tag: format!("ft{port}"),
            to_tag: None,
            cseq: 0,
            branch: 0,
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// A SUBSCRIBE in this UA's dialog (a refresh once `to_tag` is known).
    pub fn subscribe(
        &mut self,
        event: &str,
        expires: Option<u32>,
        extra: &str,
        body: &str,
    ) -> String {
        self.cseq += 1;
        self.branch += 1;
        let local = self.local();
        let to = match &self.to_tag {
            Some(t) => format!("<{}>;tag={t}", self.user),
            None => format!("<{}>", self.user),
        };
        let expires = expires.map_or(String::new(), |e| format!("Expires: {e}\r\n"));
        let ct = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/resource-lists+xml\r\n".to_string()
        };
        format!(
            "SUBSCRIBE {user} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKua{port}x{b};rport\r\nMax-Forwards: 70\r\nFrom: <{user}>;tag={ft}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:ua@{local}>\r\nEvent: {event}\r\n{expires}{extra}{ct}Content-Length: {len}\r\n\r\n{body}",
            user = self.user,
            port = local.port(),
            b = self.branch,
            ft = self.from_tag,
            cid = self.call_id,
            cseq = self.cseq,
            len = body.len(),
        )
    }

    /// A REGISTER for this UA's address of record (To = From) with `contacts` (`*` as is).
    pub fn register(&mut self, contacts: &[&str], expires: Option<u32>, extra: &str) -> String {
        self.cseq += 1;
        self.branch += 1;
        let local = self.local();
        let domain = self.user.rsplit_once('@').map_or("localhost", |(_, d)| d);
        let mut contact = String::new();
        for c in contacts {
            if *c == "*" {
                contact.push_str("Contact: *\r\n");
            } else {
                contact.push_str(&format!("Contact: <{c}>\r\n"));
            }
        }
        let expires = expires.map_or(String::new(), |e| format!("Expires: {e}\r\n"));
        format!(
            "REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreg{port}x{b};rport\r\nMax-Forwards: 70\r\nFrom: <{user}>;tag={ft}\r\nTo: <{user}>\r\nCall-ID: reg-{cid}\r\nCSeq: {cseq} REGISTER\r\n{contact}{expires}{extra}Content-Length: 0\r\n\r\n",
            user = self.user,
            port = local.port(),
            b = self.branch,
            ft = self.from_tag,
            cid = self.call_id,
            cseq = self.cseq,
        )
    }

    /// A MESSAGE (pager mode) from this UA's user to `to`, number `n` of its Call-IDs, with
    /// `extra` header lines (each ending in CRLF).
    pub fn message(&self, n: u32, to: &str, content_type: &str, extra: &str, body: &str) -> String {
        let local = self.local();
        format!(
            "MESSAGE {to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKm{port}x{n};rport\r\nMax-Forwards: 70\r\nFrom: <{from}>;tag=m{port}\r\nTo: <{to}>\r\nCall-ID: msg-{port}-{n}@127.0.0.1\r\nCSeq: {n} MESSAGE\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n{body}",
            port = local.port(),
            from = self.user,
            len = body.len(),
        )
    }

    pub async fn send(&self, text: &str) {
        self.socket
            .send_to(text.as_bytes(), self.server)
            .await
            .unwrap();
    }

    pub async fn recv(&self, wait: Duration) -> Option<Msg> {
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => Some(Msg {
                text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                from,
            }),
            _ => None,
        }
    }

    /// Sends `text` and waits for its final response; requests arriving meanwhile (NOTIFYs,
    /// MESSAGEs) are kept (answered later by the test).
    pub async fn request(&mut self, text: &str) -> (Msg, Vec<Msg>) {
        self.send(text).await;
        let mut notifies = Vec::new();
        loop {
            let m = self.recv(Duration::from_secs(5)).await.expect("a response");
            if m.status().is_none() {
                notifies.push(m);
                continue;
            }
            match m.status() {
                Some(code) if code >= 200 => {
                    if (200..300).contains(&code) && self.to_tag.is_none() {
                        self.to_tag = m.tag("To");
                    }
                    return (m, notifies);
                }
                _ => continue,
            }
        }
    }

    /// The NOTIFY that follows a 2xx (it may have overtaken the response: then in `early`).
    pub async fn notify_after(&self, early: Vec<Msg>) -> Msg {
        match early.into_iter().next() {
            Some(n) => n,
            None => self
                .next_notify(Duration::from_secs(10))
                .await
                .expect("a NOTIFY after the 2xx"),
        }
    }

    /// Subscribes for 600 s to `uris` (with `extra` header lines); the 2xx and the initial
    /// NOTIFY, answered 200.
    pub async fn subscribed(&mut self, event: &str, extra: &str, uris: &[&str]) -> (Msg, Msg) {
        let req = self.subscribe(event, Some(600), extra, &resource_lists(uris));
        let (resp, early) = self.request(&req).await;
        assert_eq!(resp.status(), Some(200), "{}", resp.text);
        let notify = self.notify_after(early).await;
        self.answer(&notify, 200).await;
        (resp, notify)
    }

    /// The next NOTIFY within `wait` (responses are skipped).
    pub async fn next_notify(&self, wait: Duration) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv(left).await?;
            if m.is_notify() {
                return Some(m);
            }
        }
    }

    /// Answers a NOTIFY with `code`.
    pub async fn answer(&self, notify: &Msg, code: u16) {
        self.socket
            .send_to(answer_text(notify, code).as_bytes(), notify.from)
            .await
            .unwrap();
    }
}

/// The answer to a request (RFC 3261 §8.2.6: Via, From, To, Call-ID, CSeq copied).
pub fn answer_text(request: &Msg, code: u16) -> String {
    let mut out = format!("SIP/2.0 {code} Answer\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for v in request.headers(name) {
            out.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// Reads one SIP message from a stream: headers, then Content-Length bytes of body (RFC 3261
/// §18.3); leading CRLFs skipped; `None` on a closed connection or after 5 s.
pub async fn read_message(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    use tokio::io::AsyncReadExt;
    loop {
        let start = buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        buf.drain(..start);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    let n = n.trim();
                    (n.eq_ignore_ascii_case("Content-Length") || n == "l")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let msg: Vec<u8> = buf.drain(..end + 4 + len).collect();
                return Some(String::from_utf8_lossy(&msg).into_owned());
            }
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An `Authorization` header line (with CRLF) answering the MD5 challenge among
/// `challenges` for `method` on `uri` (RFC 3261 §22.4, RFC 2617 qop=auth).
pub fn digest_authorization(
    challenges: &[&str],
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> String {
    let challenge = challenges
        .iter()
        .find(|c| c.contains("MD5"))
        .expect("an MD5 challenge");
    let param = |name: &str| {
        let i = challenge.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        challenge[i..].split('"').next().unwrap().to_string()
    };
    let (realm, nonce, opaque) = (param("realm"), param("nonce"), param("opaque"));
    let md5 = |s: String| {
        use md5::Digest as _;
        format!("{:x}", md5::Md5::digest(s.as_bytes()))
    };
    let ha1 = md5(format!("{username}:{realm}:{password}"));
    let ha2 = md5(format!("{method}:{uri}"));
    let response = md5(format!("{ha1}:{nonce}:00000001:c1:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c1\", response=\"{response}\", opaque=\"{opaque}\"\r\n"
    )
}
