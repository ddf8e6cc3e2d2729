//! Prometheus metrics (design.md §7; issue #3 scope 6), served on the admin listener in the text
//! exposition format 0.0.4: XCAP requests by AUID (RFC 4825 §6: the first URI segment under the
//! XCAP root), method and status, request latency by AUID, failed authentications by scheme
//! (RFC 7235 §2.1 auth-scheme), document storage latency by operation, and the document count.
//!
//! Every label set is bounded: AUIDs outside the registry are counted as `other`, and methods,
//! schemes and storage operations outside fixed lists likewise, so a client cannot grow the
//! series without limit. Plain atomics, no metrics crate.
//!
//! Also here, because they exist only to feed these metrics: [`InstrumentedStore`], a
//! [`DocumentStore`] decorator that times every storage call, and [`track_requests`], the HTTP
//! middleware that records each XCAP request.

mod cluster;
mod im;
mod sip;
pub use cluster::{ClusterMetrics, PoolUse};
pub use im::ImMetrics;
pub use sip::SipMetrics;

use crate::storage::{
    ChangeOrigin, ChangeRecord, Committed, DocKey, DocMeta, DocumentStore, Expect, SpeculativeRead,
    StorageError, StoreFuture, StoredDocument, TreeKey, WriteOutcome,
};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Response};
use axum::middleware::Next;
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` follows.
pub const DURATION_BUCKETS_SECS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The same bounds in microseconds, the unit observations arrive in.
const DURATION_BUCKETS_MICROS: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// The label value for anything outside a bounded label set.
pub const OTHER: &str = "other";

/// Request methods kept as their own label value (RFC 9110 §9: methods are case-sensitive);
/// any other method is counted as `OTHER`.
const METHODS: [&str; 6] = ["GET", "HEAD", "PUT", "DELETE", "POST", "OPTIONS"];
const OTHER_METHOD: &str = "OTHER";

/// Authentication schemes of failed attempts (lowercase; schemes compare case-insensitively,
/// RFC 7235 §2.1). `admin` is the admin API's own bearer token.
pub const AUTH_SCHEMES: [&str; 5] = ["digest", "basic", "bearer", "admin", OTHER];

/// Storage operations, one per [`DocumentStore`] method, plus `sync`: the wait from an applied
/// write until it is durable.
pub const STORAGE_OPS: [&str; 10] = [
    "get",
    "put",
    "delete",
    "sync",
    "list_user",
    "list_auid",
    "directory_exists",
    "last_seq",
    "flush",
    OTHER,
];

/// A latency histogram with the fixed [`DURATION_BUCKETS_SECS`] bounds.
#[derive(Debug, Default)]
struct Histogram {
    /// Per-bucket (not cumulative) counts; the last slot holds observations above every bound.
    buckets: [AtomicU64; DURATION_BUCKETS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, micros: u64) {
        // `le` is inclusive: a value equal to a bound belongs to that bucket.
        let slot = DURATION_BUCKETS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(DURATION_BUCKETS_MICROS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Writes `<name>_bucket`, `_sum` and `_count` samples. `_count` is the `+Inf` bucket by
    /// construction, so the two agree even while observations race with the rendering.
    fn render(&self, out: &mut String, name: &str, label: &str, value: &str) {
        let mut cumulative = 0u64;
        for (i, bound) in DURATION_BUCKETS_SECS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{label}=\"{}\",le=\"{bound}\"}} {cumulative}",
                escape_label(value)
            );
        }
        cumulative += self.buckets[DURATION_BUCKETS_MICROS.len()].load(Ordering::Relaxed);
        let value = escape_label(value);
        let _ = writeln!(
            out,
            "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "{name}_sum{{{label}=\"{value}\"}} {}",
            seconds(self.sum_micros.load(Ordering::Relaxed))
        );
        let _ = writeln!(out, "{name}_count{{{label}=\"{value}\"}} {cumulative}");
    }
}

/// Series key of `xcapd_requests_total`: AUID index, method index, status (0 = invalid).
type RequestKey = (usize, usize, u16);

/// The server's metrics. Shared as `Arc<Metrics>`; every method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    /// Known AUIDs, sorted; the index `auids.len()` stands for [`OTHER`].
    auids: Vec<String>,
    auid_index: HashMap<String, usize>,
    requests: RwLock<BTreeMap<RequestKey, AtomicU64>>,
    request_durations: Vec<Histogram>,
    auth_failures: [AtomicU64; AUTH_SCHEMES.len()],
    storage_durations: Vec<Histogram>,
    documents: AtomicI64,
    documents_known: AtomicBool,
    /// Writes refused because storage could not take writes (disk space, journal failure).
    writes_refused: AtomicU64,
    /// The SIP notifier's.
    pub sip: SipMetrics,
    /// The IM Server's.
    pub im: ImMetrics,
    /// A node's among several (fan-out lag, database pool).
    pub cluster: ClusterMetrics,
}

impl Metrics {
    /// `known_auids` are the AUIDs that get their own label value (the registry's); every other
    /// AUID is counted as `other`.
    pub fn new<I, S>(known_auids: I) -> Metrics
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut auids: Vec<String> = known_auids.into_iter().map(Into::into).collect();
        auids.sort();
        auids.dedup();
        // "other" is reserved for the overflow bucket.
        auids.retain(|a| a != OTHER);
        let auid_index = auids
            .iter()
            .enumerate()
            .map(|(i, a)| (a.clone(), i))
            .collect();
        let request_durations = (0..=auids.len()).map(|_| Histogram::default()).collect();
        Metrics {
            auid_index,
            request_durations,
            auids,
            requests: RwLock::new(BTreeMap::new()),
            auth_failures: Default::default(),
            storage_durations: STORAGE_OPS.iter().map(|_| Histogram::default()).collect(),
            documents: AtomicI64::new(0),
            documents_known: AtomicBool::new(false),
            writes_refused: AtomicU64::new(0),
            sip: SipMetrics::default(),
            im: ImMetrics::default(),
            cluster: ClusterMetrics::default(),
        }
    }

    fn auid_slot(&self, auid: &str) -> usize {
        self.auid_index
            .get(auid)
            .copied()
            .unwrap_or(self.auids.len())
    }

    fn auid_label(&self, slot: usize) -> &str {
        self.auids.get(slot).map_or(OTHER, String::as_str)
    }

    /// Records one finished XCAP request.
    pub fn observe_request(&self, auid: &str, method: &str, status: u16, micros: u64) {
        let slot = self.auid_slot(auid);
        let method = METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len());
        let status = if (100..=599).contains(&status) {
            status
        } else {
            0
        };
        let key = (slot, method, status);
        // Fast path: the series exists, a shared lock suffices.
        let counted = self
            .requests
            .read()
            .get(&key)
            .map(|c| c.fetch_add(1, Ordering::Relaxed))
            .is_some();
        if !counted {
            self.requests
                .write()
                .entry(key)
                .or_default()
                .fetch_add(1, Ordering::Relaxed);
        }
        self.request_durations[slot].observe(micros);
    }

    /// Records a failed authentication attempt (credentials were presented and refused).
    /// Counts a write refused because storage could not take writes now.
    pub fn write_refused(&self) {
        self.writes_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn auth_failure(&self, scheme: &str) {
        let scheme = scheme.to_ascii_lowercase();
        let slot = AUTH_SCHEMES
            .iter()
            .position(|s| *s == scheme)
            .unwrap_or(AUTH_SCHEMES.len() - 1);
        self.auth_failures[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Records the latency of one storage operation (one of [`STORAGE_OPS`]).
    pub fn observe_storage(&self, op: &str, micros: u64) {
        let slot = STORAGE_OPS
            .iter()
            .position(|o| *o == op)
            .unwrap_or(STORAGE_OPS.len() - 1);
        self.storage_durations[slot].observe(micros);
    }

    /// Sets the number of stored documents; from then on the `xcapd_documents` gauge is
    /// rendered and [`InstrumentedStore`] keeps it current. Call before serving requests, so
    /// no write races with the count.
    pub fn set_documents(&self, count: u64) {
        self.documents
            .store(i64::try_from(count).unwrap_or(i64::MAX), Ordering::Relaxed);
        self.documents_known.store(true, Ordering::Relaxed);
    }

    fn add_documents(&self, delta: i64) {
        self.documents.fetch_add(delta, Ordering::Relaxed);
    }

    /// The `xcapd_documents` gauge, when [`Metrics::set_documents`] was called.
    pub fn documents(&self) -> Option<u64> {
        self.documents_known
            .load(Ordering::Relaxed)
            .then(|| u64::try_from(self.documents.load(Ordering::Relaxed)).unwrap_or(0))
    }

    /// The number of requests counted for one series (tests and the admin API).
    pub fn requests_count(&self, auid: &str, method: &str, status: u16) -> u64 {
        let method = METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len());
        self.requests
            .read()
            .get(&(self.auid_slot(auid), method, status))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Renders every metric in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        family(
            &mut out,
            "xcapd_requests_total",
            "counter",
            "XCAP requests by AUID, method and response status.",
        );
        for (&(slot, method, status), count) in self.requests.read().iter() {
            let method = METHODS.get(method).copied().unwrap_or(OTHER_METHOD);
            let status = if status == 0 {
                OTHER.to_string()
            } else {
                status.to_string()
            };
            let _ = writeln!(
                out,
                "xcapd_requests_total{{auid=\"{}\",method=\"{method}\",status=\"{status}\"}} {}",
                escape_label(self.auid_label(slot)),
                count.load(Ordering::Relaxed)
            );
        }
        family(
            &mut out,
            "xcapd_request_duration_seconds",
            "histogram",
            "XCAP request latency by AUID, until the response head is ready.",
        );
        for (slot, h) in self.request_durations.iter().enumerate() {
            h.render(
                &mut out,
                "xcapd_request_duration_seconds",
                "auid",
                self.auid_label(slot),
            );
        }
        family(
            &mut out,
            "xcapd_auth_failures_total",
            "counter",
            "Refused credentials by authentication scheme.",
        );
        for (scheme, count) in AUTH_SCHEMES.iter().zip(&self.auth_failures) {
            let _ = writeln!(
                out,
                "xcapd_auth_failures_total{{scheme=\"{scheme}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        family(
            &mut out,
            "xcapd_storage_duration_seconds",
            "histogram",
            "Document storage latency by operation.",
        );
        for (op, h) in STORAGE_OPS.iter().zip(&self.storage_durations) {
            h.render(&mut out, "xcapd_storage_duration_seconds", "op", op);
        }
        family(
            &mut out,
            "xcapd_storage_writes_refused_total",
            "counter",
            "Writes refused with 503 because storage could not take writes (disk space under the reserve, journal write failure).",
        );
        let _ = writeln!(
            out,
            "xcapd_storage_writes_refused_total {}",
            self.writes_refused.load(Ordering::Relaxed)
        );
        if let Some(n) = self.documents() {
            family(
                &mut out,
                "xcapd_documents",
                "gauge",
                "Stored XCAP documents (generated documents excluded).",
            );
            let _ = writeln!(out, "xcapd_documents {n}");
        }
        self.sip.render(&mut out);
        self.im.render(&mut out);
        self.cluster.render(&mut out);
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value: backslash, double quote and line feed (exposition format 0.0.4).
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn seconds(micros: u64) -> String {
    // Integer arithmetic keeps exact digits; Prometheus parses any float notation.
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// The AUID a request addresses: the first path segment under the XCAP root (RFC 4825 §6),
/// as sent. Empty when the path is not under the root (such requests count as `other`).
pub fn auid_from_path<'a>(path_and_query: &'a str, root_path: &str) -> &'a str {
    let path = path_and_query
        .split_once(['?', '#'])
        .map_or(path_and_query, |(p, _)| p);
    let Some(rest) = path.strip_prefix(root_path.trim_end_matches('/')) else {
        return "";
    };
    let Some(rest) = rest.strip_prefix('/') else {
        return "";
    };
    rest.split('/').next().unwrap_or("")
}

/// Counts the stored documents of `auids` (for [`Metrics::set_documents`] at start-up).
pub async fn count_documents<'a>(
    store: &dyn DocumentStore,
    auids: impl IntoIterator<Item = &'a str>,
) -> Result<u64, StorageError> {
    let mut n = 0u64;
    for auid in auids {
        n += store.list_auid(auid).await?.len() as u64;
    }
    Ok(n)
}

/// A [`DocumentStore`] that times every call into [`Metrics`] and keeps the document gauge
/// current from each committed [`WriteOutcome`].
pub struct InstrumentedStore {
    inner: Arc<dyn DocumentStore>,
    metrics: Arc<Metrics>,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn DocumentStore>, metrics: Arc<Metrics>) -> InstrumentedStore {
        InstrumentedStore { inner, metrics }
    }

    /// Times a store call into the `op` storage histogram, from before the call is made (a
    /// backend may do its work when the future is created) until it resolves.
    fn timed<'a, T: Send + 'a>(
        &'a self,
        op: &'static str,
        call: impl FnOnce(&'a dyn DocumentStore) -> StoreFuture<'a, T>,
    ) -> StoreFuture<'a, T> {
        let started = Instant::now();
        let call = call(self.inner.as_ref());
        Box::pin(async move {
            let result = call.await;
            self.metrics
                .observe_storage(op, started.elapsed().as_micros() as u64);
            result
        })
    }

    fn count_refusal(&self, e: &StorageError) {
        if matches!(e, StorageError::Unavailable(_)) {
            self.metrics.write_refused();
        }
    }
}

impl DocumentStore for InstrumentedStore {
    fn get<'a>(&'a self, key: &'a DocKey) -> StoreFuture<'a, Option<StoredDocument>> {
        self.timed("get", |s| s.get(key))
    }

    fn get_speculative<'a>(&'a self, key: &'a DocKey) -> StoreFuture<'a, SpeculativeRead> {
        self.timed("get", |s| s.get_speculative(key))
    }

    /// Timed until durable (the journal's group sync included).
    fn put<'a>(
        &'a self,
        key: &'a DocKey,
        expect: &'a Expect,
        body: &'a str,
        etag: &'a str,
        modified_ms: u64,
        origin: &'a ChangeOrigin,
    ) -> StoreFuture<'a, Committed> {
        let call = self.timed("put", |s| {
            s.put(key, expect, body, etag, modified_ms, origin)
        });
        Box::pin(async move {
            let committed = call.await.inspect_err(|e| self.count_refusal(e))?;
            if committed.outcome == WriteOutcome::Created {
                self.metrics.add_documents(1);
            }
            Ok(committed)
        })
    }

    fn delete<'a>(
        &'a self,
        key: &'a DocKey,
        expect: &'a Expect,
        origin: &'a ChangeOrigin,
    ) -> StoreFuture<'a, Option<Committed>> {
        let call = self.timed("delete", |s| s.delete(key, expect, origin));
        Box::pin(async move {
            let deleted = call.await.inspect_err(|e| self.count_refusal(e))?;
            if deleted.is_some() {
                self.metrics.add_documents(-1);
            }
            Ok(deleted)
        })
    }

    fn list_user<'a>(&'a self, xui: &'a str) -> StoreFuture<'a, Vec<DocMeta>> {
        self.timed("list_user", |s| s.list_user(xui))
    }

    fn list_auid<'a>(&'a self, auid: &'a str) -> StoreFuture<'a, Vec<DocMeta>> {
        self.timed("list_auid", |s| s.list_auid(auid))
    }

    fn directory_exists<'a>(
        &'a self,
        auid: &'a str,
        tree: &'a TreeKey,
        dir: &'a str,
    ) -> StoreFuture<'a, bool> {
        self.timed("directory_exists", |s| s.directory_exists(auid, tree, dir))
    }

    fn last_seq(&self) -> StoreFuture<'_, u64> {
        self.timed("last_seq", |s| s.last_seq())
    }

    fn changes_since(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<ChangeRecord>> {
        self.timed("changes_since", |s| s.changes_since(after, limit))
    }

    fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.watch_changes()
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        self.timed("flush", |s| s.flush())
    }

    fn lock_document<'a>(
        &'a self,
        key: &'a DocKey,
    ) -> StoreFuture<'a, Option<crate::storage::DocumentLock>> {
        self.inner.lock_document(key)
    }

    fn health(&self) -> StoreFuture<'_, ()> {
        self.inner.health()
    }

    fn fatal(&self) -> Option<String> {
        self.inner.fatal()
    }
}

/// State of [`track_requests`]: where to count, and the XCAP root to find AUIDs under.
#[derive(Clone)]
pub struct RequestTracker {
    metrics: Arc<Metrics>,
    root_path: String,
}

impl RequestTracker {
    pub fn new(metrics: Arc<Metrics>, root_path: &str) -> RequestTracker {
        RequestTracker {
            metrics,
            root_path: root_path.to_string(),
        }
    }
}

/// Middleware for the XCAP listener; layer it outside authentication so refused requests are
/// counted too. A 401 answered to a request that carried credentials counts as an auth failure
/// of that scheme, unless it only reports a stale Digest nonce (RFC 7616 §3.3 `stale=true`:
/// the credentials were right and the client retries).
pub async fn track_requests(
    State(tracker): State<RequestTracker>,
    req: Request,
    next: Next,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let scheme = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split_whitespace().next().unwrap_or("").to_string());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let m = &tracker.metrics;
    m.observe_request(
        auid_from_path(&target, &tracker.root_path),
        &method,
        status,
        started.elapsed().as_micros() as u64,
    );
    if let (401, Some(scheme)) = (status, scheme) {
        let stale = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.to_ascii_lowercase()
                    .replace(' ', "")
                    .contains("stale=true")
            });
        if !stale {
            m.auth_failure(&scheme);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStore;
    use std::collections::HashSet;

    /// One parsed sample line: name, labels, value.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    /// A strict parser of the text exposition format 0.0.4 as we emit it: `# HELP`, `# TYPE`
    /// and sample lines; every sample belongs to a family whose TYPE came first; label values
    /// use only the three escapes. Panics (fails the test) on anything else.
    fn parse(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
        assert!(text.ends_with('\n'), "exposition ends with a line feed");
        let mut types = HashMap::new();
        let mut helps = HashSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has text");
                assert!(!help.is_empty());
                assert!(
                    helps.insert(name.to_string()),
                    "one HELP per family: {name}"
                );
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
                assert!(
                    ["counter", "gauge", "histogram"].contains(&kind),
                    "type {kind}"
                );
                assert!(helps.contains(name), "HELP before TYPE for {name}");
                assert!(
                    types.insert(name.to_string(), kind.to_string()).is_none(),
                    "one TYPE per family: {name}"
                );
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            samples.push(parse_sample(line));
        }
        for s in &samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    s.name
                        .strip_suffix(suffix)
                        .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(&s.name);
            assert!(types.contains_key(family), "sample {} has no TYPE", s.name);
        }
        (types, samples)
    }

    fn parse_sample(line: &str) -> Sample {
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "metric name {name:?}"
        );
        let mut labels = Vec::new();
        let mut rest = &line[name_end..];
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            let end: usize;
            loop {
                let start = chars.peek().map(|(i, _)| *i).expect("label");
                if after[start..].starts_with('}') {
                    end = start + 1;
                    break;
                }
                let eq = after[start..].find('=').expect("label =") + start;
                let label = after[start..eq].to_string();
                assert!(
                    label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "label name {label:?}"
                );
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "quoted value");
                let mut value = String::new();
                loop {
                    match chars.next().expect("unterminated label value") {
                        (_, '"') => break,
                        (_, '\\') => match chars.next().expect("escape").1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            other => panic!("bad escape \\{other}"),
                        },
                        (_, '\n') => panic!("raw newline in label value"),
                        (_, c) => value.push(c),
                    }
                }
                labels.push((label, value));
                match chars.next().expect("label separator") {
                    (_, ',') => {}
                    (i, '}') => {
                        end = i + 1;
                        break;
                    }
                    (_, c) => panic!("unexpected {c:?} after label"),
                }
            }
            rest = &after[end..];
        }
        let value = rest.strip_prefix(' ').expect("space before value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value {v:?}")),
        };
        Sample {
            name: name.to_string(),
            labels,
            value,
        }
    }

    fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
        samples.iter().find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
    }

    fn metrics() -> Metrics {
        Metrics::new(["resource-lists", "pres-rules"])
    }

    #[test]
    fn empty_registry_renders_every_family_with_help_and_type() {
        let (types, samples) = parse(&metrics().render());
        assert_eq!(types["xcapd_requests_total"], "counter");
        assert_eq!(types["xcapd_request_duration_seconds"], "histogram");
        assert_eq!(types["xcapd_auth_failures_total"], "counter");
        assert_eq!(types["xcapd_storage_duration_seconds"], "histogram");
        // The gauge appears only once the document count is known.
        assert!(!types.contains_key("xcapd_documents"));
        assert!(samples.iter().all(|s| s.value == 0.0));
    }

    #[test]
    fn requests_are_counted_by_auid_method_and_status() {
        let m = metrics();
        m.observe_request("resource-lists", "PUT", 201, 1_200);
        m.observe_request("resource-lists", "PUT", 201, 800);
        m.observe_request("resource-lists", "GET", 404, 100);
        m.observe_request("pres-rules", "GET", 200, 50);
        let (_, samples) = parse(&m.render());
        let count = |auid: &str, method: &str, status: &str| {
            find(
                &samples,
                "xcapd_requests_total",
                &[("auid", auid), ("method", method), ("status", status)],
            )
            .map(|s| s.value)
        };
        assert_eq!(count("resource-lists", "PUT", "201"), Some(2.0));
        assert_eq!(count("resource-lists", "GET", "404"), Some(1.0));
        assert_eq!(count("pres-rules", "GET", "200"), Some(1.0));
        assert_eq!(count("pres-rules", "PUT", "201"), None);
        assert_eq!(m.requests_count("resource-lists", "PUT", 201), 2);
    }

    // The label sets stay bounded whatever clients send: unknown AUIDs, methods and schemes
    // collapse into one value each.
    #[test]
    fn unknown_auids_methods_and_schemes_are_bucketed() {
        let m = metrics();
        for i in 0..500 {
            m.observe_request(&format!("made-up-{i}"), &format!("M{i}"), 404, 10);
            m.auth_failure(&format!("scheme{i}"));
        }
        m.observe_request("", "get", 999, 10);
        let (_, samples) = parse(&m.render());
        let requests: Vec<_> = samples
            .iter()
            .filter(|s| s.name == "xcapd_requests_total")
            .collect();
        assert_eq!(requests.len(), 2, "{requests:?}");
        let other = find(
            &samples,
            "xcapd_requests_total",
            &[("auid", "other"), ("method", "OTHER"), ("status", "404")],
        )
        .expect("other series");
        assert_eq!(other.value, 500.0);
        assert!(find(
            &samples,
            "xcapd_requests_total",
            &[("auid", "other"), ("method", "OTHER"), ("status", "other")],
        )
        .is_some());
        let failures = find(
            &samples,
            "xcapd_auth_failures_total",
            &[("scheme", "other")],
        )
        .expect("other scheme");
        assert_eq!(failures.value, 500.0);
        // Histogram series: the known AUIDs plus "other", no more.
        let auids: HashSet<_> = samples
            .iter()
            .filter(|s| s.name == "xcapd_request_duration_seconds_count")
            .map(|s| s.labels[0].1.clone())
            .collect();
        assert_eq!(
            auids,
            ["resource-lists", "pres-rules", "other"]
                .into_iter()
                .map(String::from)
                .collect()
        );
    }

    #[test]
    fn auth_failures_by_scheme_ignore_case() {
        let m = metrics();
        m.auth_failure("Digest");
        m.auth_failure("digest");
        m.auth_failure("BEARER");
        m.auth_failure("admin");
        let (_, samples) = parse(&m.render());
        let v = |scheme| {
            find(&samples, "xcapd_auth_failures_total", &[("scheme", scheme)])
                .map(|s| s.value)
                .unwrap_or(-1.0)
        };
        assert_eq!(v("digest"), 2.0);
        assert_eq!(v("bearer"), 1.0);
        assert_eq!(v("admin"), 1.0);
        assert_eq!(v("basic"), 0.0);
    }

    // Histogram semantics of the format: cumulative buckets, inclusive `le`, `+Inf` == `_count`,
    // `_sum` in seconds.
    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let m = metrics();
        for micros in [500, 501, 1_000, 20_000, 60_000_000] {
            m.observe_request("pres-rules", "GET", 200, micros);
        }
        let (_, samples) = parse(&m.render());
        let bucket = |le: &str| {
            find(
                &samples,
                "xcapd_request_duration_seconds_bucket",
                &[("auid", "pres-rules"), ("le", le)],
            )
            .map(|s| s.value)
            .unwrap_or_else(|| panic!("bucket {le}"))
        };
        assert_eq!(bucket("0.0005"), 1.0, "500 µs is in le=0.0005");
        assert_eq!(bucket("0.001"), 3.0);
        assert_eq!(bucket("0.025"), 4.0);
        assert_eq!(bucket("10"), 4.0);
        assert_eq!(bucket("+Inf"), 5.0);
        let mut previous = 0.0;
        for s in samples.iter().filter(|s| {
            s.name == "xcapd_request_duration_seconds_bucket" && s.labels[0].1 == "pres-rules"
        }) {
            assert!(s.value >= previous, "cumulative");
            previous = s.value;
        }
        let count = find(
            &samples,
            "xcapd_request_duration_seconds_count",
            &[("auid", "pres-rules")],
        )
        .unwrap();
        assert_eq!(count.value, 5.0);
        let sum = find(
            &samples,
            "xcapd_request_duration_seconds_sum",
            &[("auid", "pres-rules")],
        )
        .unwrap();
        assert!((sum.value - 60.022001).abs() < 1e-9, "{}", sum.value);
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new(["we\"ird\\auid\nx"]);
        m.observe_request("we\"ird\\auid\nx", "GET", 200, 1);
        let text = m.render();
        assert!(text.contains(r#"auid="we\"ird\\auid\nx""#), "{text}");
        let (_, samples) = parse(&text);
        assert!(find(
            &samples,
            "xcapd_requests_total",
            &[
                ("auid", "we\"ird\\auid\nx"),
                ("method", "GET"),
                ("status", "200")
            ],
        )
        .is_some());
    }

    #[test]
    fn auid_is_the_first_segment_under_the_root() {
        // RFC 4825 §6: <root>/<auid>/<tree>/...
        let p = "/xcap-root/resource-lists/users/sip:a@b/index?x=1";
        assert_eq!(auid_from_path(p, "/xcap-root"), "resource-lists");
        assert_eq!(auid_from_path(p, "/xcap-root/"), "resource-lists");
        assert_eq!(
            auid_from_path("/xcap-root/xcap-caps", "/xcap-root"),
            "xcap-caps"
        );
        assert_eq!(auid_from_path("/xcap-rootx/a/b", "/xcap-root"), "");
        assert_eq!(auid_from_path("/other/a", "/xcap-root"), "");
        assert_eq!(auid_from_path("/pres-rules/users/x/y", ""), "pres-rules");
    }

    #[test]
    fn instrumented_store_times_calls_and_tracks_the_document_gauge() {
        let metrics = Arc::new(metrics());
        let store = crate::storage::Blocking::new(InstrumentedStore::new(
            Arc::new(MemoryStore::new()),
            metrics.clone(),
        ));
        let key = DocKey::new(
            "resource-lists",
            TreeKey::User("sip:a@example.com".into()),
            "index",
        );
        let counted =
            crate::storage::block_on(count_documents(store.0.as_ref(), ["resource-lists"]));
        metrics.set_documents(counted.unwrap());
        assert_eq!(metrics.documents(), Some(0));
        store.put(&key, &Expect::Absent, "<a/>", "e1", 1).unwrap();
        store
            .put(&key, &Expect::Etag("e1".into()), "<b/>", "e2", 2)
            .unwrap();
        assert_eq!(
            metrics.documents(),
            Some(1),
            "a replacement is no new document"
        );
        assert!(store.get(&key).unwrap().is_some());
        // A refused CAS changes nothing.
        assert!(store.delete(&key, &Expect::Etag("nope".into())).is_err());
        assert_eq!(metrics.documents(), Some(1));
        store.delete(&key, &Expect::Any).unwrap();
        assert_eq!(metrics.documents(), Some(0));
        let (types, samples) = parse(&metrics.render());
        assert_eq!(types["xcapd_documents"], "gauge");
        assert_eq!(find(&samples, "xcapd_documents", &[]).unwrap().value, 0.0);
        let ops = |op| {
            find(
                &samples,
                "xcapd_storage_duration_seconds_count",
                &[("op", op)],
            )
            .unwrap()
            .value
        };
        assert_eq!(ops("put"), 2.0);
        assert_eq!(ops("delete"), 2.0);
        assert_eq!(ops("get"), 1.0);
        assert_eq!(ops("list_auid"), 1.0);
        assert_eq!(ops("flush"), 0.0);
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let m = Arc::new(metrics());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        let status = if i % 2 == 0 { 200 } else { 404 };
                        m.observe_request("resource-lists", "GET", status, i * t);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.requests_count("resource-lists", "GET", 200), 2000);
        assert_eq!(m.requests_count("resource-lists", "GET", 404), 2000);
        let (_, samples) = parse(&m.render());
        let count = find(
            &samples,
            "xcapd_request_duration_seconds_count",
            &[("auid", "resource-lists")],
        )
        .unwrap();
        assert_eq!(count.value, 4000.0);
    }
}
