//! Configuration (design.md §7): TOML with every key defaulted; precedence defaults < file <
//! environment (`XCAPD_*`) < command line. Unknown keys are rejected.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// Every request is authenticated by the Aggregation Proxy front (the `[auth]` section).
    Required,
    /// Development only: the XUI in the request URI is trusted as the principal. Refuses to
    /// bind a non-loopback address.
    None,
}

/// `im.history` (IM-32): whose conversations are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HistoryMode {
    /// Nobody's (no history kept or served).
    Off,
    /// The users who ask for it with `<im:record-history>` in their im-rules, for the peers
    /// those rules match (the default).
    #[default]
    OptIn,
    /// Everybody's.
    All,
}

impl<'de> Deserialize<'de> for HistoryMode {
    /// `"off"`, `"opt-in"`, `"all"`; the booleans of earlier versions: `false` = off,
    /// `true` = all.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(false) => Ok(HistoryMode::Off),
            Raw::Flag(true) => Ok(HistoryMode::All),
            Raw::Name(n) => match n.as_str() {
                "off" => Ok(HistoryMode::Off),
                "opt-in" => Ok(HistoryMode::OptIn),
                "all" => Ok(HistoryMode::All),
                other => Err(serde::de::Error::custom(format!(
                    "im.history: {other:?} is not \"off\", \"opt-in\" or \"all\""
                ))),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageBackend {
    Sled,
    Memory,
    /// Every store in PostgreSQL (`storage.postgres_url`), shared by every node on that
    /// database (issue #15; README "Running several nodes").
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub xcap_root: String,
    /// Absolute base URL that clients use to reach `xcap_root` (used in `<ancestor>`,
    /// xcap-directory entries and reference checks). Empty = `http://<http address><xcap_root>`.
    pub public_url: String,
    /// Domain given to bare user names in XUIs (IO-01d).
    pub default_domain: String,
    pub auth: AuthMode,
    /// Extra application-usage descriptors (`*.toml`) and schemas (`*.xsd`); the shipped ones
    /// are built into the binary, and a file here replaces the built-in one of the same name.
    /// Empty: only the built-in set.
    pub app_usages_dir: PathBuf,
    pub schemas_dir: PathBuf,
    pub validation_workers: usize,
    pub shutdown_grace_secs: u64,
    /// XDMS roles served by this process (issue #4): "shared" (Shared XDMS usages) and "im"
    /// (IM XDMS usages); core usages (xcap-caps, xcap-directory) are always served. Run an
    /// IM XDMS and a Shared XDMS as separate processes by giving each one role and routing
    /// the AUIDs from the proxy.
    pub roles: Vec<String>,
    /// TLS (HT-02): PEM certificate chain and private key; both empty = plain HTTP.
    pub tls_cert_file: String,
    pub tls_key_file: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            xcap_root: "/xcap-root".into(),
            public_url: String::new(),
            default_domain: String::new(),
            auth: AuthMode::Required,
            app_usages_dir: PathBuf::new(),
            schemas_dir: PathBuf::new(),
            validation_workers: 2,
            shutdown_grace_secs: 10,
            roles: vec!["shared".into(), "im".into()],
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// sled: its page cache; PostgreSQL: the node's cache of documents read.
    pub cache_capacity_mb: u64,
    /// Write-ahead journal segment size (sled backend), see `SledOptions`.
    pub journal_segment_mb: u64,
    /// Parsed-document cache: element and attribute requests reuse the parse of a version.
    pub document_cache_mb: u64,
    /// Free space kept on the data directory's file system (sled backend): below it writes
    /// answer 503 with Retry-After and resume by themselves once space is freed. 0 = off.
    pub min_free_mb: u64,
    /// Change log retention (the feed the xcap-diff notifier and caches read): records beyond
    /// this count, or older than `change_log_max_age_hours`, are trimmed; a consumer that asks
    /// for trimmed changes resyncs from the documents.
    pub change_log_max_entries: u64,
    pub change_log_max_age_hours: u64,
    /// `backend = "postgres"`: the database (libpq URL or key=value string; env
    /// `XCAPD_POSTGRES_URL`).
    pub postgres_url: String,
    /// `backend = "postgres"`: a node not heard of for this long is taken for dead; another
    /// node ends its SIP subscriptions (`deactivated`: subscribers subscribe again).
    pub node_lease_secs: u64,
}

impl StorageConfig {
    pub fn change_retention(&self) -> crate::storage::ChangeRetention {
        crate::storage::ChangeRetention {
            max_entries: self.change_log_max_entries,
            max_age: std::time::Duration::from_secs(self.change_log_max_age_hours * 3600),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: StorageBackend::Sled,
            cache_capacity_mb: 32,
            journal_segment_mb: 16,
            document_cache_mb: 32,
            min_free_mb: 64,
            change_log_max_entries: 1_000_000,
            change_log_max_age_hours: 168,
            postgres_url: String::new(),
            node_lease_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_depth: usize,
    pub max_nodes: u32,
    /// Attributes (namespace declarations included) on one element: 409 beyond.
    pub max_attributes_per_element: usize,
    /// Attributes in one document: 413 beyond.
    pub max_attributes: usize,
    pub request_timeout_secs: u64,
    /// Time a client has to send a whole request head before the connection is closed
    /// (0 = no limit).
    pub header_read_timeout_secs: u64,
    /// Open XCAP connections per client address; more are closed at once (0 = no limit).
    pub max_connections_per_address: usize,
}

impl LimitsConfig {
    /// The bounds of the XCAP listener's connections.
    pub fn connection_limits(&self) -> crate::serve::ConnectionLimits {
        crate::serve::ConnectionLimits {
            header_read_timeout: (self.header_read_timeout_secs > 0)
                .then(|| std::time::Duration::from_secs(self.header_read_timeout_secs)),
            max_per_address: self.max_connections_per_address,
        }
    }

    /// The parser limits for stored documents and fragments.
    pub fn xml_limits(&self) -> crate::xml::Limits {
        crate::xml::Limits {
            max_depth: self.max_depth,
            max_nodes: self.max_nodes,
            max_attributes_per_element: self.max_attributes_per_element,
            max_attributes: self.max_attributes,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 4 * 1024 * 1024,
            max_depth: 64,
            max_nodes: 500_000,
            max_attributes_per_element: 256,
            max_attributes: 500_000,
            request_timeout_secs: 30,
            header_read_timeout_secs: 10,
            max_connections_per_address: 256,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XcapConfig {
    /// Allow references (entry-ref, external, external-list) to other users' documents (CP-26).
    pub allow_foreign_references: bool,
    /// OMA mode: `<list name>` required in resource-lists (SX-01).
    pub oma_compliant: bool,
    /// Attribute GET returns a quoted AttValue (RFC 4825 §7.9); false returns the bare value
    /// as openxcap does (IO-11e).
    pub quote_attribute_values: bool,
}

impl Default for XcapConfig {
    fn default() -> Self {
        XcapConfig {
            allow_foreign_references: false,
            oma_compliant: false,
            quote_attribute_values: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter, e.g. "info" or "xcapd=debug".
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Realm for challenges when the request URI names no user (global documents); users' own
    /// requests are challenged in their domain's realm. Empty: `server.default_domain`, else a
    /// challenge for each realm that has users (most users first), so everyone reads xcap-caps
    /// with the credentials of their own documents.
    pub realm: String,
    /// HTTP Digest (RFC 7616) with qop=auth.
    pub digest: bool,
    /// Offered algorithms, in challenge order ("MD5", "SHA-256"). MD5 first by default: clients
    /// that read only the first challenge (Python's urllib, many SIP/XCAP UAs) lack SHA-256.
    pub digest_algorithms: Vec<String>,
    pub nonce_lifetime_secs: u64,
    /// HTTP Basic (RFC 7617); refused on plain HTTP unless `basic_without_tls` (HT-02).
    pub basic: bool,
    pub basic_without_tls: bool,
    /// Bearer JWT keys (files); any that is set enables JWT.
    pub jwt_hs256_secret_file: String,
    pub jwt_rs256_public_key_file: String,
    pub jwt_eddsa_public_key_file: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// A bearer token's subject must be a user of the credential store, and tokens issued
    /// before the user's last revoking password change are refused. Turn off only when an
    /// external identity provider issues tokens for users this node does not store.
    pub jwt_require_user: bool,
    /// Peers (CIDR) whose X-XCAP-Asserted-Identity / X-3GPP-Asserted-Identity is honoured.
    pub trusted_peers: Vec<String>,
    /// Peers (CIDR) whose X-Forwarded-For is honoured when finding the client address.
    pub trusted_proxies: Vec<String>,
    /// Failed attempts for one user from one address within the window before that pair is
    /// locked out (0 = off). Never holds another user (issue #10 item 3).
    pub throttle_max_failures: u32,
    /// Failed attempts for one user from any address (0 = off). Users who authenticated from an
    /// address within the last week are not held by this one.
    pub throttle_user_max_failures: u32,
    /// Failed attempts from one address over every user name (password spraying; 0 = off).
    /// Users who authenticated from that address within the last week are not held by it.
    pub throttle_address_max_failures: u32,
    pub throttle_window_secs: u64,
    pub throttle_lockout_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            realm: String::new(),
            digest: true,
            digest_algorithms: vec!["MD5".into(), "SHA-256".into()],
            nonce_lifetime_secs: 300,
            basic: false,
            basic_without_tls: false,
            jwt_hs256_secret_file: String::new(),
            jwt_rs256_public_key_file: String::new(),
            jwt_eddsa_public_key_file: String::new(),
            jwt_issuer: String::new(),
            jwt_audience: String::new(),
            jwt_require_user: true,
            trusted_peers: Vec::new(),
            trusted_proxies: Vec::new(),
            throttle_max_failures: 5,
            throttle_user_max_failures: 20,
            throttle_address_max_failures: 30,
            throttle_window_secs: 60,
            throttle_lockout_secs: 30,
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    // Key file paths are not secret, but keep the habit: nothing key-like in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("realm", &self.realm)
            .field("digest", &self.digest)
            .field("basic", &self.basic)
            .field("jwt", &!self.jwt_hs256_secret_file.is_empty())
            .field("trusted_peers", &self.trusted_peers)
            .finish_non_exhaustive()
    }
}

/// A remote XDMS the proxy forwards some AUIDs to (issue #3 scope 4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTarget {
    pub name: String,
    /// Base URL of the remote XCAP root, e.g. "http://10.0.0.5:8080/xcap-root" (http only).
    pub url: String,
    pub auids: Vec<String>,
    /// Assert the authenticated identity to this hop (X-XCAP-Asserted-Identity). Only for
    /// XDMS nodes that trust this proxy's address (AP-04).
    #[serde(default)]
    pub trusted_hop: bool,
    #[serde(default = "default_upstream_timeout")]
    pub timeout_secs: u64,
    /// The service identity asserted to this node to read its change log (`GET /changes`),
    /// so xcap-diff subscriptions at this proxy cover its documents (issue #13 scope 7). The
    /// node must trust this proxy and know the identity with the `service` role. Needs
    /// `trusted_hop`.
    #[serde(default)]
    pub follow_changes_as: Option<String>,
}

fn default_upstream_timeout() -> u64 {
    10
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// AUIDs not listed in any target are served by the in-process XDMS.
    pub targets: Vec<RouteTarget>,
}

/// IM policy decisions (issue #4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Action when no rule of the recipient matches, or a broken reference decided the
    /// outcome: "block" (recommended, IM-25), "polite-block" or "allow".
    pub im_default: String,
    /// Identity asserted to a remote Shared XDMS when fetching external lists for decisions
    /// (a user with the service role there). Empty: lists on remote nodes count as unresolved.
    pub service_identity: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            im_default: "block".into(),
            service_identity: String::new(),
        }
    }
}

/// The admin API listener (issue #3 scope 6; README "Admin API").
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Admin API listener (users, backup/restore, tokens, health, metrics). Empty: disabled.
    pub listen: String,
    /// Admin bearer token. Empty: read from `token_file`; both empty: a random token kept in
    /// `<data_dir>/admin-token` (created on first start). At least 16 characters.
    pub token: String,
    pub token_file: String,
    /// Largest body of `POST /users/{xui}/import`.
    pub max_import_bytes: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:8081".into(),
            token: String::new(),
            token_file: String::new(),
            max_import_bytes: 64 * 1024 * 1024,
        }
    }
}

impl std::fmt::Debug for AdminConfig {
    // The token is a secret (design.md §7).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &(!self.token.is_empty()).then_some("<redacted>"))
            .field("token_file", &self.token_file)
            .field("max_import_bytes", &self.max_import_bytes)
            .finish()
    }
}

impl AdminConfig {
    /// The admin listener address; None when the admin API is disabled.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        optional_addr("admin.listen", &self.listen)
    }
}

/// A listen address that may be empty (the listener is off).
fn optional_addr(key: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|e| ConfigError::Invalid(format!("{key} {value:?}: {e}")))
}

/// `[sip]`: the SIP endpoint (RFC 3261) the xcap-diff notifier and the IM Server use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP and TCP listen address (same port for both); empty disables SIP. Port 0 picks a
    /// free port (logged). Overridden by `--sip` and `XCAPD_SIP`.
    pub listen: String,
    /// SIP over TLS (RFC 3261 §26.2) listen address, with `server.tls_cert_file` /
    /// `tls_key_file`; empty (default) = off. (env `XCAPD_SIP_TLS`)
    pub tls_listen: String,
    /// CA certificates (PEM) trusted for the TLS connections xcapd opens to `sips:` and
    /// `transport=tls` targets (NOTIFYs, deliveries); empty (default): such requests are not
    /// sent (never downgraded to plain UDP or TCP). (env `XCAPD_SIP_TLS_CA`)
    pub tls_ca_file: String,
    /// Largest SIP message accepted (headers and body).
    pub max_message_bytes: usize,
    /// Open SIP TCP connections at most; more are closed at once.
    pub max_tcp_connections: usize,
    /// A TCP connection that sends nothing for this long is closed.
    pub tcp_idle_timeout_secs: u64,
    /// The SIP/IP core (CIDRs, e.g. Kamailio's address): only from these peers is a
    /// P-Asserted-Identity believed (RFC 3325); everyone else authenticates with SIP Digest.
    pub trusted_peers: Vec<String>,
    /// The host[:port] xcapd puts in its Contact and Via; empty = the SIP listen address.
    pub advertised_address: String,
    /// RFC 3261 Timer T1 in ms (NOTIFY retransmissions; Timer F = 64 × T1).
    pub timer_t1_ms: u64,
    /// xcap-diff: at most one NOTIFY per subscription this often, changes coalesced in between
    /// (RFC 5875 §4.10, XE-18); the first change after a quiet period goes out at once.
    pub notify_interval_ms: u64,
    /// Subscription durations (RFC 5875 §4.5, XE-08): granted when none is asked, shortest
    /// accepted (423 below it), longest granted.
    pub subscription_default_secs: u32,
    pub subscription_min_secs: u32,
    pub subscription_max_secs: u32,
    /// Live xcap-diff subscriptions at most, in all and per subscriber (503 beyond).
    pub max_subscriptions: usize,
    pub max_subscriptions_per_user: usize,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: "127.0.0.1:5060".into(),
            tls_listen: String::new(),
            tls_ca_file: String::new(),
            max_message_bytes: 64 * 1024,
            max_tcp_connections: 1024,
            tcp_idle_timeout_secs: 300,
            trusted_peers: Vec::new(),
            advertised_address: String::new(),
            timer_t1_ms: 500,
            notify_interval_ms: 5000,
            subscription_default_secs: 3600,
            subscription_min_secs: 60,
            subscription_max_secs: 86_400,
            max_subscriptions: 100_000,
            max_subscriptions_per_user: 32,
        }
    }
}

/// `[im]`: the IM Server on the SIP endpoint (issue #14).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImConfig {
    /// Answer REGISTER as the registrar of the served domains (the standalone deployment; a
    /// SIP/IP core may also copy registrations here, third-party, from `sip.trusted_peers`).
    pub registrar: bool,
    /// Registration durations (RFC 3261 §10.2.1.1, §10.3): granted when none is asked,
    /// shortest accepted (423 with Min-Expires below it), longest granted.
    pub registration_default_secs: u32,
    pub registration_min_secs: u32,
    pub registration_max_secs: u32,
    /// MESSAGE bodies above this get 413 (RFC 3428 §5: 1300 bytes over UDP, with headroom
    /// for CPIM headers).
    pub max_pager_bytes: usize,
    /// Deferred messages expire after min(their `Expires`, this) (IM-15).
    pub deferred_ttl_secs: u64,
    /// A delivery attempt holds the stored messages it took this long: after a crash they
    /// are delivered again once it lapsed.
    pub delivery_lease_secs: u64,
    /// Recipients of one recipient-list MESSAGE (RFC 5365) at most; 413 beyond.
    pub max_recipients: usize,
    /// The sender of a MESSAGE is answered within this: a recipient UA that has not answered
    /// by then has the message stored (202) while its attempt goes on until Timer F.
    pub answer_within_ms: u64,
    /// Per-recipient quota of stored messages: count and body bytes (480 beyond it).
    pub deferred_max_messages: usize,
    pub deferred_max_bytes: usize,
    /// Whether messages for offline users are stored when their rules do not say
    /// (`allow-offline-storage`, IM-15); false: 480.
    pub offline_storage: bool,
    /// Behind a SIP/IP core: messages for registered users go to this proxy (e.g.
    /// `sip:127.0.0.1:5070`), addressed to their address of record; none: to the contacts
    /// registered here.
    pub outbound_proxy: Option<String>,
    /// The IM Server's own URI (From of its IMDN notices); default `sip:im@<default domain>`.
    pub server_uri: Option<String>,
    /// Conversation history (IM-32): accepted messages kept for each party who wants them
    /// ([`HistoryMode`]), listed in their conv-history documents, read with
    /// `GET /im/v1/history/users/<xui>`.
    pub history: HistoryMode,
    pub history_retention_days: u64,
    /// Charging data records: one per MESSAGE outcome and per end of a stored message
    /// (`<data_dir>/charging/YYYY-MM-DD.jsonl`).
    pub charging: bool,
}

impl Default for ImConfig {
    fn default() -> Self {
        ImConfig {
            registrar: true,
            registration_default_secs: 3600,
            registration_min_secs: 60,
            registration_max_secs: 86_400,
            max_pager_bytes: 2048,
            deferred_ttl_secs: 7 * 86_400,
            delivery_lease_secs: 60,
            max_recipients: 100,
            answer_within_ms: 4000,
            deferred_max_messages: 1000,
            deferred_max_bytes: 1 << 20,
            offline_storage: true,
            outbound_proxy: None,
            server_uri: None,
            charging: true,
            history: HistoryMode::OptIn,
            history_retention_days: 90,
        }
    }
}

impl SipConfig {
    /// The SIP listen address; None when SIP is disabled.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        optional_addr("sip.listen", &self.listen)
    }

    /// The SIP-over-TLS listen address; None when off.
    pub fn tls_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        optional_addr("sip.tls_listen", &self.tls_listen)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub sip: SipConfig,
    pub im: ImConfig,
    pub policy: PolicyConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
    pub routing: RoutingConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub xcap: XcapConfig,
    pub log: LogConfig,
}

impl Config {
    pub fn from_toml(path: &str, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Config::from_toml(&path.display().to_string(), &text)
    }

    /// Applies `XCAPD_HTTP`, `XCAPD_SIP`, `XCAPD_DATA_DIR`, `XCAPD_XCAP_ROOT`,
    /// `XCAPD_PUBLIC_URL`, `XCAPD_DEFAULT_DOMAIN`, `XCAPD_STORAGE`, `XCAPD_AUTH`, `XCAPD_LOG`,
    /// `XCAPD_ADMIN_LISTEN`, `XCAPD_ADMIN_TOKEN_FILE`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let env_err = |name: &str, message: String| ConfigError::Env {
            name: name.to_string(),
            message,
        };
        if let Some(v) = get("XCAPD_HTTP") {
            self.server.http = v
                .parse()
                .map_err(|e| env_err("XCAPD_HTTP", format!("{e}")))?;
        }
        if let Some(v) = get("XCAPD_DATA_DIR") {
            self.server.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("XCAPD_XCAP_ROOT") {
            self.server.xcap_root = v;
        }
        if let Some(v) = get("XCAPD_PUBLIC_URL") {
            self.server.public_url = v;
        }
        if let Some(v) = get("XCAPD_DEFAULT_DOMAIN") {
            self.server.default_domain = v;
        }
        if let Some(v) = get("XCAPD_STORAGE") {
            self.storage.backend = match v.as_str() {
                "sled" => StorageBackend::Sled,
                "memory" => StorageBackend::Memory,
                "postgres" => StorageBackend::Postgres,
                other => {
                    return Err(env_err(
                        "XCAPD_STORAGE",
                        format!("unknown backend {other:?}"),
                    ))
                }
            };
        }
        if let Some(v) = get("XCAPD_POSTGRES_URL") {
            self.storage.postgres_url = v;
        }
        if let Some(v) = get("XCAPD_AUTH") {
            self.server.auth = match v.as_str() {
                "required" => AuthMode::Required,
                "none" => AuthMode::None,
                other => return Err(env_err("XCAPD_AUTH", format!("unknown mode {other:?}"))),
            };
        }
        if let Some(v) = get("XCAPD_LOG") {
            self.log.level = v;
        }
        if let Some(v) = get("XCAPD_ADMIN_LISTEN") {
            self.admin.listen = v;
        }
        if let Some(v) = get("XCAPD_SIP") {
            self.sip.listen = v;
        }
        if let Some(v) = get("XCAPD_SIP_TLS") {
            self.sip.tls_listen = v;
        }
        if let Some(v) = get("XCAPD_SIP_TLS_CA") {
            self.sip.tls_ca_file = v;
        }
        if let Some(v) = get("XCAPD_ADMIN_TOKEN_FILE") {
            self.admin.token_file = v;
        }
        Ok(())
    }

    /// Checks cross-field rules; called after all sources are merged.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let root = &self.server.xcap_root;
        if !root.starts_with('/') || root.contains(['?', '#']) {
            return Err(ConfigError::Invalid(format!(
                "server.xcap_root {root:?} must be an absolute path without query (URI-01)"
            )));
        }
        if self.server.auth == AuthMode::None && !self.server.http.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "auth = \"none\" trusts every client; refusing to listen on non-loopback address {}",
                self.server.http
            )));
        }
        if self.storage.backend == StorageBackend::Postgres && self.storage.postgres_url.is_empty()
        {
            return Err(ConfigError::Invalid(
                "storage.backend = \"postgres\" needs storage.postgres_url (or XCAPD_POSTGRES_URL)"
                    .into(),
            ));
        }
        if self.storage.node_lease_secs == 0 {
            return Err(ConfigError::Invalid(
                "storage.node_lease_secs must be at least 1".into(),
            ));
        }
        if !["block", "polite-block", "allow"].contains(&self.policy.im_default.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "policy.im_default {:?} must be block, polite-block or allow",
                self.policy.im_default
            )));
        }
        if self.server.tls_cert_file.is_empty() != self.server.tls_key_file.is_empty() {
            return Err(ConfigError::Invalid(
                "server.tls_cert_file and server.tls_key_file go together".into(),
            ));
        }
        let im = &self.im;
        if !(im.registration_min_secs <= im.registration_default_secs
            && im.registration_default_secs <= im.registration_max_secs)
        {
            return Err(ConfigError::Invalid(
                "im: registration_min_secs <= registration_default_secs <= registration_max_secs"
                    .into(),
            ));
        }
        if im.delivery_lease_secs == 0 {
            return Err(ConfigError::Invalid(
                "im.delivery_lease_secs must be at least 1".into(),
            ));
        }
        if let Some(proxy) = &im.outbound_proxy {
            if crate::sip::header::UriTarget::parse(proxy).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "im.outbound_proxy {proxy:?} is not a SIP URI such as sip:127.0.0.1:5070"
                )));
            }
        }
        if let Some(t) = self
            .routing
            .targets
            .iter()
            .find(|t| t.follow_changes_as.is_some() && !t.trusted_hop)
        {
            return Err(ConfigError::Invalid(format!(
                "routing target {:?}: follow_changes_as asserts an identity, so it needs trusted_hop = true",
                t.name
            )));
        }
        if let Some(admin) = self.admin.listen_addr()? {
            if admin == self.server.http && admin.port() != 0 {
                return Err(ConfigError::Invalid(format!(
                    "admin.listen {admin} is the XCAP listener's address"
                )));
            }
        }
        if !self.admin.token.is_empty() && !self.admin.token_file.is_empty() {
            return Err(ConfigError::Invalid(
                "set either admin.token or admin.token_file, not both".into(),
            ));
        }
        if let Some(sip) = self.sip.listen_addr()? {
            if self.server.auth == AuthMode::None && !sip.ip().is_loopback() {
                return Err(ConfigError::Invalid(format!(
                    "auth = \"none\" trusts every client; refusing SIP on non-loopback address {sip}"
                )));
            }
            if sip.port() != 0 && sip == self.server.http {
                // Different protocols may share a port number, but TCP cannot.
                return Err(ConfigError::Invalid(format!(
                    "sip.listen {sip} is the XCAP listener's address"
                )));
            }
        }
        if let Some(tls) = self.sip.tls_listen_addr()? {
            if self.sip.listen_addr()?.is_none() {
                return Err(ConfigError::Invalid(
                    "sip.tls_listen needs sip.listen too (its UDP socket sends the notifier's requests)"
                        .into(),
                ));
            }
            if self.server.tls_cert_file.is_empty() {
                return Err(ConfigError::Invalid(
                    "sip.tls_listen needs server.tls_cert_file and server.tls_key_file".into(),
                ));
            }
            if self.server.auth == AuthMode::None && !tls.ip().is_loopback() {
                return Err(ConfigError::Invalid(format!(
                    "auth = \"none\" trusts every client; refusing SIP on non-loopback address {tls}"
                )));
            }
        }
        let s = &self.sip;
        if s.subscription_min_secs > s.subscription_default_secs
            || s.subscription_default_secs > s.subscription_max_secs
            || s.subscription_min_secs == 0
        {
            return Err(ConfigError::Invalid(
                "sip.subscription_min_secs ≤ subscription_default_secs ≤ subscription_max_secs, min > 0"
                    .into(),
            ));
        }
        if s.timer_t1_ms == 0 || s.timer_t1_ms > 60_000 {
            return Err(ConfigError::Invalid(
                "sip.timer_t1_ms must be between 1 and 60000".into(),
            ));
        }
        if s.notify_interval_ms > 3_600_000 {
            return Err(ConfigError::Invalid(
                "sip.notify_interval_ms must be at most 3600000 (one hour)".into(),
            ));
        }
        if let Some(sip) = s.listen_addr()? {
            if sip.ip().is_unspecified() && s.advertised_address.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "sip.listen {sip} is a wildcard address: set sip.advertised_address to the host[:port] peers reach"
                )));
            }
        }
        crate::auth::trust::TrustedPeers::parse(&s.trusted_peers)
            .map_err(|e| ConfigError::Invalid(format!("sip.trusted_peers: {e}")))?;
        if self.sip.max_message_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "sip.max_message_bytes must be at least 1024".into(),
            ));
        }
        if self.storage.change_log_max_entries == 0 || self.storage.change_log_max_age_hours == 0 {
            return Err(ConfigError::Invalid(
                "storage.change_log_max_entries and change_log_max_age_hours must be at least 1"
                    .into(),
            ));
        }
        if self.server.validation_workers == 0 {
            return Err(ConfigError::Invalid(
                "server.validation_workers must be at least 1".into(),
            ));
        }
        if self.storage.journal_segment_mb == 0 {
            return Err(ConfigError::Invalid(
                "storage.journal_segment_mb must be at least 1".into(),
            ));
        }
        if self.limits.max_depth < 4 || self.limits.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "limits are too small to store any document".into(),
            ));
        }
        Ok(())
    }

    /// The XCAP root path without a trailing slash ("" for "/").
    pub fn root_path(&self) -> &str {
        self.server.xcap_root.trim_end_matches('/')
    }

    pub fn tls(&self) -> bool {
        !self.server.tls_cert_file.is_empty()
    }

    /// The absolute URL of the XCAP root, without trailing slash.
    pub fn public_root(&self, bound: SocketAddr) -> String {
        if self.server.public_url.is_empty() {
            let scheme = if self.tls() { "https" } else { "http" };
            format!("{scheme}://{bound}{}", self.root_path())
        } else {
            self.server.public_url.trim_end_matches('/').to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_require_authentication() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.server.auth, AuthMode::Required);
    }

    /// Issue #15: the PostgreSQL backend needs its database, from the file or the environment.
    #[test]
    fn postgres_needs_a_url() {
        let mut c = Config::from_toml("t", "[storage]\nbackend = \"postgres\"\n").unwrap();
        assert!(c.validate().is_err());
        c.apply_env(|k| (k == "XCAPD_POSTGRES_URL").then(|| "postgres://x@127.0.0.1/x".into()))
            .unwrap();
        assert_eq!(c.storage.postgres_url, "postgres://x@127.0.0.1/x");
        c.validate().unwrap();
        let mut c = Config::default();
        c.apply_env(|k| (k == "XCAPD_STORAGE").then(|| "postgres".into()))
            .unwrap();
        assert_eq!(c.storage.backend, StorageBackend::Postgres);
    }

    /// IM-32: `im.history` names a mode; the booleans of earlier versions still read.
    #[test]
    fn history_modes_im32() {
        let mode = |v: &str| {
            Config::from_toml("t", &format!("[im]\nhistory = {v}\n")).map(|c| c.im.history)
        };
        assert_eq!(Config::default().im.history, HistoryMode::OptIn);
        assert_eq!(mode("\"off\"").unwrap(), HistoryMode::Off);
        assert_eq!(mode("\"opt-in\"").unwrap(), HistoryMode::OptIn);
        assert_eq!(mode("\"all\"").unwrap(), HistoryMode::All);
        assert_eq!(mode("true").unwrap(), HistoryMode::All);
        assert_eq!(mode("false").unwrap(), HistoryMode::Off);
        assert!(mode("\"some\"").is_err());
        assert!(mode("3").is_err());
    }

    #[test]
    fn unknown_keys_rejected() {
        assert!(Config::from_toml("t", "[server]\nbogus = 1\n").is_err());
        assert!(Config::from_toml("t", "[nope]\n").is_err());
    }

    #[test]
    fn env_overrides_file() {
        let mut c = Config::from_toml("t", "[server]\nhttp = \"127.0.0.1:9000\"\n").unwrap();
        c.apply_env(|k| (k == "XCAPD_HTTP").then(|| "127.0.0.1:9100".to_string()))
            .unwrap();
        assert_eq!(c.server.http.port(), 9100);
    }

    #[test]
    fn admin_listener_defaults_to_loopback_and_can_be_disabled() {
        let c = Config::default();
        assert_eq!(
            c.admin.listen_addr().unwrap(),
            Some("127.0.0.1:8081".parse().unwrap())
        );
        let c = Config::from_toml("t", "[admin]\nlisten = \"\"\n").unwrap();
        assert_eq!(c.admin.listen_addr().unwrap(), None);
        c.validate().unwrap();
        let c = Config::from_toml("t", "[admin]\nlisten = \"nope\"\n").unwrap();
        assert!(c.validate().is_err());
        let c = Config::from_toml("t", "[admin]\ntoken = \"a\"\ntoken_file = \"b\"\n").unwrap();
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.apply_env(|k| (k == "XCAPD_ADMIN_LISTEN").then(String::new))
            .unwrap();
        assert_eq!(c.admin.listen_addr().unwrap(), None);
    }

    // `[sip] listen`: loopback 5060 by default, XCAPD_SIP overrides, "" disables; it may not
    // take the XCAP listener's TCP address.
    #[test]
    fn sip_listener_default_env_and_clash() {
        let mut c = Config::default();
        assert_eq!(
            c.sip.listen_addr().unwrap(),
            Some("127.0.0.1:5060".parse().unwrap())
        );
        c.apply_env(|k| (k == "XCAPD_SIP").then(|| "127.0.0.1:0".to_string()))
            .unwrap();
        assert_eq!(c.sip.listen_addr().unwrap().map(|a| a.port()), Some(0));
        c.sip.listen = String::new();
        assert_eq!(c.sip.listen_addr().unwrap(), None);
        c.sip.listen = "127.0.0.1:8080".into();
        assert!(matches!(c.validate(), Err(ConfigError::Invalid(_))));
        c.sip.listen = "not an address".into();
        assert!(c.validate().is_err());
        c.sip.listen = "0.0.0.0:5060".into();
        c.server.auth = AuthMode::None;
        assert!(
            c.validate().is_err(),
            "development mode stays on loopback for SIP too"
        );
    }

    #[test]
    fn admin_token_is_redacted_in_debug() {
        let c = Config::from_toml("t", "[admin]\ntoken = \"s3cret-admin-token\"\n").unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn dev_auth_refuses_non_loopback() {
        let c =
            Config::from_toml("t", "[server]\nhttp = \"0.0.0.0:8080\"\nauth = \"none\"\n").unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::Invalid(_))));
    }

    // The shipped example names every key with its default and parses as it is.
    #[test]
    fn example_config_parses_with_the_defaults() {
        let text = include_str!("../config/xcapd.example.toml");
        let c: Config = toml::from_str(text).expect("the example parses");
        let d = SipConfig::default();
        assert_eq!(c.sip.notify_interval_ms, d.notify_interval_ms);
        assert_eq!(c.sip.timer_t1_ms, d.timer_t1_ms);
        assert_eq!(c.sip.subscription_max_secs, d.subscription_max_secs);
        c.validate().expect("the example is valid");
    }
}
