//! The HTTP/1.1 connection loop of the XCAP listener (RFC 9112), plain or TLS: what
//! `axum::serve` does, plus the connection-level bounds it cannot set (issue #11 item 6):
//! - a **header-read timeout**: a client that does not finish a request head in time is closed
//!   (slowloris: one header line every few seconds holds a connection forever otherwise);
//! - a **per-address connection limit**: connections beyond it are closed at once, so one
//!   address cannot take every socket and task of the server.
//!
//! Each request gets the TCP peer as `ConnectInfo<PeerAddr>` (trusted-peer checks). On shutdown
//! the loop stops accepting, asks every connection to finish its in-flight request and close,
//! and returns when all have.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::tls::PeerAddr;

/// Connection-level bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time a client has to send a complete request head; `None` disables.
    pub header_read_timeout: Option<Duration>,
    /// Open connections per client address; 0 disables.
    pub max_per_address: usize,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains the open connections.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let counts = Arc::new(PerAddress::new(limits.max_per_address));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let Some(slot) = PerAddress::acquire(&counts, peer.ip()) else {
            tracing::debug!(target: "xcapd::http", peer = %peer, "per-address connection limit reached; closing");
            drop(io);
            continue;
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
            let app = app.clone();
            async move { app.oneshot(req.map(Body::new)).await }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let _slot = slot;
            let conn = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_end(result),
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    log_end(conn.await);
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        // Header timeouts, resets and malformed requests end here: the client's doing.
        tracing::debug!(target: "xcapd::http", error = %e, "connection ended");
    }
}

/// Open connections per client address.
struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; releases its count when dropped.
struct Slot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn new(max: usize) -> PerAddress {
        PerAddress {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn acquire(table: &Arc<PerAddress>, ip: IpAddr) -> Option<Slot> {
        let mut open = table.open.lock();
        let n = open.entry(ip).or_insert(0);
        if table.max > 0 && *n >= table.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            table: Arc::clone(table),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_limit_counts_and_releases() {
        let table = Arc::new(PerAddress::new(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = PerAddress::acquire(&table, a).unwrap();
        let _s2 = PerAddress::acquire(&table, a).unwrap();
        assert!(PerAddress::acquire(&table, a).is_none());
        assert!(
            PerAddress::acquire(&table, b).is_some(),
            "other addresses unaffected"
        );
        drop(s1);
        assert!(PerAddress::acquire(&table, a).is_some());
        let unlimited = Arc::new(PerAddress::new(0));
        let held: Vec<_> = (0..100)
            .map(|_| PerAddress::acquire(&unlimited, a).unwrap())
            .collect();
        assert_eq!(unlimited.open.lock()[&a], 100);
        drop(held);
        assert!(unlimited.open.lock().is_empty(), "no entry left behind");
    }
}
