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
