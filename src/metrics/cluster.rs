//! Metrics of a node among several (issue #15 scope 6): how long a committed change takes to
//! reach this node's notifier (the fan-out lag: commit time to dispatch, by feed: this store's
//! change log, shared by the nodes on one database, or a remote XDMS node's), and how this
//! node uses its database connection pool.

use std::fmt::Write as _;
use std::sync::OnceLock;

use super::{family, Histogram};

/// The database pool now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections open (in use or idle).
    pub open: u64,
    pub idle: u64,
    /// Requests waiting for a connection.
    pub waiting: u64,
    /// Connections allowed at most.
    pub max: u64,
}

/// Reads the pool's use when the metrics are rendered.
pub struct PoolProbe(Box<dyn Fn() -> PoolUse + Send + Sync>);

impl std::fmt::Debug for PoolProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolProbe")
    }
}

#[derive(Debug, Default)]
pub struct ClusterMetrics {
    /// By feed: local, remote.
    feed_lag: [Histogram; 2],
    pool: OnceLock<PoolProbe>,
}

impl ClusterMetrics {
    /// A change committed at `at_ms` (wall clock) reached the notifier at `now_ms`; `remote`:
    /// read from a remote XDMS node's log.
    pub fn observe_feed_lag(&self, remote: bool, at_ms: u64, now_ms: u64) {
        let micros = now_ms.saturating_sub(at_ms).saturating_mul(1000);
        self.feed_lag[usize::from(remote)].observe(micros);
    }

    /// Installs how the pool's use is read (once; a store without a pool has none).
    pub fn set_pool_probe(&self, probe: impl Fn() -> PoolUse + Send + Sync + 'static) {
        let _ = self.pool.set(PoolProbe(Box::new(probe)));
    }

    pub(super) fn render(&self, out: &mut String) {
        family(
            out,
            "xcapd_change_feed_lag_seconds",
            "histogram",
            "From a change's commit to this node's notifier reading it (several nodes: the fan-out lag; wall clocks of the writing and reading nodes).",
        );
        for (feed, h) in ["local", "remote"].iter().zip(&self.feed_lag) {
            h.render(out, "xcapd_change_feed_lag_seconds", "feed", feed);
        }
        let Some(probe) = self.pool.get() else {
            return;
        };
        let used = (probe.0)();
        family(
            out,
            "xcapd_storage_pool_connections",
            "gauge",
            "Database connections of this node's pool, by state.",
        );
        let in_use = used.open.saturating_sub(used.idle);
        let _ = writeln!(
            out,
            "xcapd_storage_pool_connections{{state=\"in_use\"}} {in_use}"
        );
        let _ = writeln!(
            out,
            "xcapd_storage_pool_connections{{state=\"idle\"}} {}",
            used.idle
        );
        family(
            out,
            "xcapd_storage_pool_max_connections",
            "gauge",
            "Database connections this node's pool opens at most.",
        );
        let _ = writeln!(out, "xcapd_storage_pool_max_connections {}", used.max);
        family(
            out,
            "xcapd_storage_pool_waiting",
            "gauge",
            "Requests waiting for a database connection of this node's pool.",
        );
        let _ = writeln!(out, "xcapd_storage_pool_waiting {}", used.waiting);
    }
}
