//! TLS listener (HT-02, issue #3 scope 5): a self-signed certificate made with the openssl
//! command, a rustls client trusting it, Basic authentication offered only over TLS.

mod common;
use common::*;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use xcapd::config::AuthMode;
use xcapd::storage::credentials::{make_credential, Role};

/// A test CA and a server certificate it signed (webpki refuses a CA as end entity).
/// Returns (server chain, server key, CA certificate).
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("the openssl command (Debian package openssl) is needed for this test");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=xcapd-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    )
}

/// A TLS client trusting the test CA in `ca`.
fn connector(ca: &std::path::Path) -> tokio_rustls::TlsConnector {
    let pem = std::fs::read(ca).unwrap();
    let mut roots = RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn https_get(
    addr: std::net::SocketAddr,
    cert: &std::path::Path,
    path: &str,
    auth: Option<&str>,
) -> String {
    let connector = connector(cert);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .expect("TLS handshake");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn ht02_tls_listener_with_basic_auth_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = certificates(dir.path());
    let (c2, k2) = (cert.display().to_string(), key.display().to_string());
    let s = TestServer::start_with(move |c| {
        c.server.auth = AuthMode::Required;
        c.server.tls_cert_file = c2;
        c.server.tls_key_file = k2;
        c.auth.basic = true;
    })
    .await;
    s.running()
        .credentials
        .put_user(&make_credential(
            "sip:alice@example.com",
            "example.com",
            "pw",
            vec![Role::User],
            0,
        ))
        .await
        .unwrap();
    let addr = s.running().http_addr;
    let path = "/xcap-root/xcap-caps/global/index";
    let anon = https_get(addr, &ca, path, None).await;
    assert!(anon.starts_with("HTTP/1.1 401"), "{anon}");
    assert!(
        anon.contains("Basic realm="),
        "Basic is offered over TLS: {anon}"
    );
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice@example.com:pw")
    );
    let ok = https_get(addr, &ca, path, Some(&basic)).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("<xcap-caps"));
    // Plain HTTP on a TLS port gets nothing useful.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    s.stop().await;
}

#[tokio::test]
async fn ht02_basic_is_not_offered_on_plain_http() {
    let s = TestServer::start_with(|c| {
        c.server.auth = AuthMode::Required;
        c.auth.basic = true;
    })
    .await;
    s.running()
        .credentials
        .put_user(&make_credential(
            "sip:alice@example.com",
            "example.com",
            "pw",
            vec![Role::User],
            0,
        ))
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .get(s.url("xcap-caps/global/index"))
        .basic_auth("alice@example.com", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "Basic over plain HTTP is refused (HT-02)"
    );
    assert!(r
        .headers()
        .get_all("www-authenticate")
        .iter()
        .all(|v| !v.to_str().unwrap().starts_with("Basic")));
    s.stop().await;
}

// RFC 3261 §26.2: SIP over TLS with the server's certificate; the endpoint answers as over TCP.
#[tokio::test]
async fn sip_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = certificates(dir.path());
    let (c2, k2) = (cert.display().to_string(), key.display().to_string());
    let s = TestServer::start_with(move |c| {
        c.server.tls_cert_file = c2;
        c.server.tls_key_file = k2;
        c.sip.tls_listen = "127.0.0.1:0".into();
    })
    .await;
    let addr = s.running().sip_tls_addr.expect("SIP over TLS listening");
    let connector = connector(&ca);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let mut tls = connector
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .expect("TLS handshake");
    let req = format!(
        "OPTIONS sips:xcapd@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKtls1\r\nMax-Forwards: 70\r\nFrom: <sips:alice@example.com>;tag=t\r\nTo: <sips:xcapd@127.0.0.1>\r\nCall-ID: tls-1@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
    let resp = String::from_utf8_lossy(&buf);
    assert!(resp.starts_with("SIP/2.0 200 OK"), "{resp}");
    assert!(resp.contains("z9hG4bKtls1"));
    s.stop().await;
}

/// One SIP message from a TLS stream (headers, then Content-Length bytes of body).
async fn read_sip<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf[..end + 4 + len]).to_string();
            }
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("a SIP message within 5 s")
            .unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Alice's UA subscribed (200) to her resource-lists document with `contact` as its Contact;
/// the UA and the document.
async fn subscribed_with_contact(
    sip: std::net::SocketAddr,
    contact: &str,
) -> (common::sip_ua::Ua, &'static str) {
    use common::sip_ua::*;
    let mut ua = Ua::new(sip, "sip:alice@example.com").await;
    let doc = "resource-lists/users/sip:alice@example.com/index";
    let req = ua
        .subscribe("xcap-diff", Some(600), "", &resource_lists(&[doc]))
        .replace(
            &format!("Contact: <sip:ua@{}>", ua.local()),
            &format!("Contact: <{contact}>"),
        );
    assert!(req.contains(contact), "{req}");
    let (resp, _) = ua.request(&req).await;
    assert_eq!(resp.status(), Some(200), "{}", resp.text);
    (ua, doc)
}

// RFC 3261 §26.2 (XE-10): a subscriber whose Contact is a `sips:` URI gets its NOTIFYs over a
// TLS connection xcapd opens, the subscriber's certificate checked against the CA of
// `sip.tls_ca_file`; never in the clear over UDP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_to_a_sips_contact_goes_over_tls() {
    use common::sip_ua::*;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = certificates(dir.path());
    let ca_file = ca.display().to_string();
    let s = TestServer::start_with(move |c| c.sip.tls_ca_file = ca_file).await;
    // The subscriber's TLS listener, with a certificate for 127.0.0.1 from the same CA.
    let acceptor =
        tokio_rustls::TlsAcceptor::from(xcapd::tls::sip_server_config(&cert, &key).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let contact = format!("sips:ua@{}", listener.local_addr().unwrap());
    let sip = s.running().sip_addr.unwrap();
    let (ua, doc) = subscribed_with_contact(sip, &contact).await;
    let (tcp, _) = tokio::time::timeout(std::time::Duration::from_secs(5), listener.accept())
        .await
        .expect("xcapd connects to the sips: Contact")
        .unwrap();
    let mut tls = acceptor
        .accept(tcp)
        .await
        .expect("TLS handshake with xcapd");
    let notify = read_sip(&mut tls).await;
    assert!(
        notify.starts_with(&format!("NOTIFY {contact} SIP/2.0")),
        "{notify}"
    );
    assert!(notify.contains("Via: SIP/2.0/TLS "), "{notify}");
    assert!(notify.contains("Subscription-State: active"), "{notify}");
    let answer = answer_text(
        &Msg {
            text: notify.clone(),
            from: sip,
        },
        200,
    );
    tls.write_all(answer.as_bytes()).await.unwrap();
    // The next change goes over the same connection.
    let r = s
        .put(
            doc,
            "application/resource-lists+xml",
            buddy_list(&["sip:bob@example.com"]),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let notify = read_sip(&mut tls).await;
    assert!(notify.contains("new-etag="), "{notify}");
    assert!(
        ua.recv(std::time::Duration::from_millis(200))
            .await
            .is_none(),
        "nothing in the clear"
    );
    s.stop().await;
}

// Without a configured trust (`sip.tls_ca_file`), a `sips:` Contact gets nothing: no NOTIFY
// downgraded to UDP or TCP, the subscriber's listener sees no connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tls_trust_no_notify_in_the_clear() {
    let s = TestServer::start_with(|c| c.sip.timer_t1_ms = 50).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let udp = tokio::net::UdpSocket::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let contact = format!("sips:ua@127.0.0.1:{port}");
    let _ua = subscribed_with_contact(s.running().sip_addr.unwrap(), &contact).await;
    let mut buf = [0u8; 2048];
    let wait = std::time::Duration::from_millis(1500);
    assert!(tokio::time::timeout(wait, listener.accept()).await.is_err());
    assert!(tokio::time::timeout(wait, udp.recv_from(&mut buf))
        .await
        .is_err());
    s.stop().await;
}
