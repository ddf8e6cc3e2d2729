//! Test harness: starts the real server (HTTP on 127.0.0.1:0, sled in a temporary directory)
//! and talks to it over loopback sockets.
#![allow(dead_code)]

pub mod sip_ua;

use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use xcapd::app::{self, Running};
use xcapd::config::{Config, StorageBackend};

/// A loopback port that was free a moment ago (for servers started as child processes).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `xcapd serve` of the real binary in development mode (quiet, admin API on a free port, the
/// repository as working directory, output discarded); callers add the listeners and data.
pub fn xcapd_serve() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_xcapd"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("serve")
        .env("XCAPD_LOG", "warn")
        .env("XCAPD_AUTH", "none")
        // Not the default 127.0.0.1:8081: a server already running there must not fail the test.
        .env("XCAPD_ADMIN_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// The real binary in development mode on `http_port` and `sip`, with the config file
/// `config` (TOML text) and the data directory `dir/data` (the same ones after a kill -9).
pub fn spawn_im_server(
    dir: &std::path::Path,
    http_port: u16,
    sip: std::net::SocketAddr,
    config: &str,
) -> std::process::Child {
    let path = dir.join("xcapd.toml");
    std::fs::write(&path, config).unwrap();
    xcapd_serve()
        .arg("--config")
        .arg(&path)
        .args(["--http", &format!("127.0.0.1:{http_port}"), "--sip"])
        .arg(sip.to_string())
        .arg("--data")
        .arg(dir.join("data"))
        .spawn()
        .expect("spawn xcapd")
}

/// PUT of `user`'s im-rules document over HTTP at the XCAP root URL `base` (development mode).
pub async fn put_im_rules(http: &reqwest::Client, base: &str, user: &str, rules: &str) {
    let r = http
        .put(format!("{base}/im-rules/users/{user}/index"))
        .header("Content-Type", "application/auth-policy+xml")
        .body(rules.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "im-rules of {user}: {}",
        r.status()
    );
}

/// Waits (up to 60 s) until the server under `base` (the XCAP root URL) answers.
pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while client
        .get(format!("{base}/xcap-caps/global/index"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "server did not come up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The Prometheus text of the admin API at `admin` (its base URL), read with `token`.
pub async fn admin_metrics(client: &reqwest::Client, admin: &str, token: &str) -> String {
    client
        .get(format!("{admin}/metrics"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The real binary serving with the configuration text `config`, on `port`, with its data in
/// `dir/<name>-data` (SIP and admin on free loopback ports).
pub fn spawn_configured(
    dir: &std::path::Path,
    name: &str,
    port: u16,
    config: &str,
) -> std::process::Child {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, config).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_xcapd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--http", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir.join(format!("{name}-data")))
        .env("XCAPD_LOG", "warn")
        .env("XCAPD_ADMIN_LISTEN", "127.0.0.1:0")
        .env("XCAPD_SIP", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// `xcapd user add` into the data directory `data` (the server not running): `xui` with
/// `password` and `roles` (none: a plain user).
pub fn add_user(data: &std::path::Path, xui: &str, password: &str, roles: &[&str]) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_xcapd"));
    cmd.args(["user", "add", xui, "--password", password]);
    for r in roles {
        cmd.args(["--role", r]);
    }
    let add = cmd.arg("--data").arg(data).output().unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
}

/// A server with authentication on and `sip:alice@example.com` (password `password`) in its
/// credential store; with `trusted_sip`, loopback is the trusted SIP/IP core.
pub async fn auth_server(trusted_sip: bool, password: &str) -> TestServer {
    use xcapd::storage::credentials::{make_credential, Role};
    let s = TestServer::start_with(|c| {
        c.server.auth = xcapd::config::AuthMode::Required;
        if trusted_sip {
            c.sip.trusted_peers = vec!["127.0.0.1/32".into()];
        }
    })
    .await;
    let alice = make_credential(
        "sip:alice@example.com",
        "example.com",
        password,
        vec![Role::User],
        0,
    );
    s.running().credentials.put_user(&alice).await.unwrap();
    s
}

/// Waits (up to 60 s) until the server under `root` accepts connections, whatever it answers
/// (it may ask for credentials).
pub async fn wait_listening(client: &reqwest::Client, root: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while client
        .get(format!("{root}/xcap-caps/global/index"))
        .send()
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "{root} did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The admin token every test server uses.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub struct TestServer {
    pub running: Option<Running>,
    pub root: String,
    /// Base URL of the admin API, e.g. `http://127.0.0.1:41234` (None when disabled).
    pub admin: Option<String>,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.http = "127.0.0.1:0".parse().unwrap();
    c.server.data_dir = dir.join("data");
    c.server.default_domain = "example.com".into();
    c.server.shutdown_grace_secs = 5;
    // Protocol tests run in development mode; tests/proxy_auth.rs covers authentication.
    c.server.auth = xcapd::config::AuthMode::None;
    c.storage.backend = StorageBackend::Sled;
    c.log.level = "warn".into();
    c.admin.listen = "127.0.0.1:0".into();
    c.sip.listen = "127.0.0.1:0".into();
    c.admin.token = ADMIN_TOKEN.into();
    c
}

impl TestServer {
    /// PUT of a resource-lists document as the user `owner`, through the XDMS in process (for
    /// servers with authentication on, where the test's HTTP client has no credentials).
    pub async fn put_as(&self, owner: &str, rel: &str, body: String) -> u16 {
        self.put_typed_as(owner, rel, "application/resource-lists+xml", body)
            .await
    }

    /// PUT of any document as the user `owner`, through the XDMS in process.
    pub async fn put_typed_as(
        &self,
        owner: &str,
        rel: &str,
        content_type: &str,
        body: String,
    ) -> u16 {
        use xcapd::xdms::service::{Method, XcapRequest};
        self.running()
            .xdms
            .handle(XcapRequest {
                method: Method::Put,
                path_and_query: format!("/xcap-root/{rel}"),
                principal: xcapd::authz::Principal::User(owner.into()),
                preconditions: Default::default(),
                content_type: Some(content_type.into()),
                body: body.into(),
            })
            .await
            .map_or(0, |r| r.status)
    }

    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let running = app::start(config).await.expect("server starts");
        let root = format!("http://{}/xcap-root", running.http_addr);
        let admin = running.admin_addr.map(|a| format!("http://{a}"));
        TestServer {
            running: Some(running),
            root,
            admin,
            client: reqwest::Client::builder().build().unwrap(),
            dir,
        }
    }

    pub fn url(&self, rel: &str) -> String {
        format!("{}/{}", self.root, rel)
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// PUT of `user`'s im-rules document (201 or 200 expected).
    pub async fn put_im_rules(&self, user: &str, rules: &str) {
        put_im_rules(&self.client, &self.root, user, rules).await;
    }

    pub async fn put(&self, rel: &str, content_type: &str, body: impl Into<String>) -> Resp {
        Resp::from(
            self.client
                .put(self.url(rel))
                .header("Content-Type", content_type)
                .body(body.into())
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn put_with(
        &self,
        rel: &str,
        content_type: &str,
        body: impl Into<String>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut rb = self
            .client
            .put(self.url(rel))
            .header("Content-Type", content_type)
            .body(body.into());
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        Resp::from(rb.send().await.unwrap()).await
    }

    pub async fn get(&self, rel: &str) -> Resp {
        Resp::from(self.client.get(self.url(rel)).send().await.unwrap()).await
    }

    pub async fn get_with(&self, rel: &str, headers: &[(&str, &str)]) -> Resp {
        let mut rb = self.client.get(self.url(rel));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        Resp::from(rb.send().await.unwrap()).await
    }

    pub async fn delete(&self, rel: &str) -> Resp {
        Resp::from(self.client.delete(self.url(rel)).send().await.unwrap()).await
    }

    pub async fn delete_with(&self, rel: &str, headers: &[(&str, &str)]) -> Resp {
        let mut rb = self.client.delete(self.url(rel));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        Resp::from(rb.send().await.unwrap()).await
    }

    pub async fn request(&self, method: &str, rel: &str) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        Resp::from(self.client.request(m, self.url(rel)).send().await.unwrap()).await
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.unwrap();
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    pub async fn from(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn etag(&self) -> String {
        self.header("etag").expect("ETag header").to_string()
    }

    /// The local name of the single child of `<xcap-error>` (ER-01).
    pub fn xcap_error(&self) -> String {
        assert_eq!(self.status, 409, "body: {}", self.body);
        assert!(
            self.header("content-type")
                .unwrap_or("")
                .starts_with("application/xcap-error+xml"),
            "409 without xcap-error content type"
        );
        let doc = roxmltree::Document::parse(&self.body).expect("xcap-error body is XML");
        let root = doc.root_element();
        assert_eq!(
            root.tag_name().namespace(),
            Some("urn:ietf:params:xml:ns:xcap-error")
        );
        let children: Vec<_> = root.children().filter(|n| n.is_element()).collect();
        assert_eq!(children.len(), 1, "exactly one error element");
        children[0].tag_name().name().to_string()
    }
}

pub const RL: &str = "application/resource-lists+xml";
pub const EL: &str = "application/xcap-el+xml";
pub const ATT: &str = "application/xcap-att+xml";
pub const ALICE_LISTS: &str = "resource-lists/users/sip:alice@example.com/index";

pub fn buddy_list(entries: &[&str]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\n  <list name=\"friends\">\n",
    );
    for e in entries {
        s.push_str(&format!("    <entry uri=\"{e}\"/>\n"));
    }
    s.push_str("  </list>\n</resource-lists>\n");
    s
}

pub fn digest_client(user: &str, password: &str) -> DigestClient {
    DigestClient {
        user: user.into(),
        password: password.into(),
        challenge: None,
        nc: 0,
    }
}

fn hex_sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn param(challenge: &str, name: &str) -> Option<String> {
    let i = challenge.find(&format!("{name}="))? + name.len() + 1;
    let rest = &challenge[i..];
    if let Some(stripped) = rest.strip_prefix('"') {
        stripped.split('"').next().map(str::to_string)
    } else {
        rest.split([',', ' ']).next().map(str::to_string)
    }
}

/// A minimal RFC 7616 client (SHA-256, qop=auth) that, like common clients, reuses the nonce
/// and counts nc up; written independently of the server code.
pub struct DigestClient {
    pub user: String,
    pub password: String,
    pub challenge: Option<(String, String, String)>, // realm, nonce, opaque
    pub nc: u32,
}

impl DigestClient {
    pub fn header(&mut self, method: &str, uri: &str) -> Option<String> {
        let (realm, nonce, opaque) = self.challenge.clone()?;
        self.nc += 1;
        let nc = format!("{:08x}", self.nc);
        let cnonce = format!("c{}", self.nc);
        let ha1 = hex_sha256(&format!("{}:{realm}:{}", self.user, self.password));
        let ha2 = hex_sha256(&format!("{method}:{uri}"));
        let response = hex_sha256(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        Some(format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=SHA-256, qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\", opaque=\"{opaque}\"",
            self.user
        ))
    }

    /// Takes a SHA-256 challenge, preferring the one in the realm of the user's own domain
    /// (several are offered for global documents when users live in several realms).
    pub fn learn(&mut self, resp: &reqwest::Response) {
        let own = self.user.rsplit_once('@').map(|(_, d)| d.to_string());
        for v in resp.headers().get_all("www-authenticate") {
            let v = v.to_str().unwrap();
            if v.starts_with("Digest") && v.contains("SHA-256") {
                let realm = param(v, "realm").unwrap();
                let have_own = self
                    .challenge
                    .as_ref()
                    .is_some_and(|c| Some(&c.0) == own.as_ref());
                if have_own && Some(&realm) != own.as_ref() {
                    continue;
                }
                self.challenge = Some((
                    realm,
                    param(v, "nonce").unwrap(),
                    param(v, "opaque").unwrap_or_default(),
                ));
                self.nc = 0;
            }
        }
    }

    pub async fn send(
        &mut self,
        client: &reqwest::Client,
        method: &str,
        url: &str,
        body: Option<&str>,
    ) -> (u16, u32) {
        let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
        let mut unauthorized = 0;
        for _ in 0..2 {
            let mut rb =
                client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
            if let Some(h) = self.header(method, &path) {
                rb = rb.header("Authorization", h);
            }
            if let Some(b) = body {
                rb = rb.header("Content-Type", RL).body(b.to_string());
            }
            let resp = rb.send().await.unwrap();
            if resp.status().as_u16() == 401 {
                unauthorized += 1;
                self.learn(&resp);
                continue;
            }
            return (resp.status().as_u16(), unauthorized);
        }
        (401, unauthorized)
    }
}

/// The shipped usages users write, as (fixture directory = AUID, MIME type, document name).
pub const USER_WRITABLE_USAGES: &[(&str, &str, &str)] = &[
    ("resource-lists", "application/resource-lists+xml", "index"),
    ("rls-services", "application/rls-services+xml", "index"),
    ("pres-rules", "application/auth-policy+xml", "index"),
    (
        "org.openmobilealliance.pres-rules",
        "application/auth-policy+xml",
        "pres-rules",
    ),
    ("pidf-manipulation", "application/pidf+xml", "index"),
    (
        "org.example.notes",
        "application/vnd.example.notes+xml",
        "index",
    ),
];

/// A child process killed when this is dropped, so a failing test leaves no server behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
