//! Composition root (design.md §2, L4): builds the registry, validator, storage backend, XDMS,
//! metrics, the XCAP HTTP listener and the admin listener from the configuration, and runs them
//! until shutdown. The only module that names concrete storage backends.

use crate::admin::{AdminError, AdminState};
use crate::appusage::{Registry, RegistryError};
use crate::config::{Config, ConfigError};
use crate::decision::DecisionService;
use crate::metrics::{count_documents, track_requests, InstrumentedStore, Metrics, RequestTracker};
use crate::proxy::front::{Front, FrontError};
use crate::proxy::route::{Routes, Target};
use crate::storage::credentials::CredentialStore;
use crate::storage::messages::MessageStore;
use crate::storage::subscriptions::SubscriptionStore;
use crate::storage::{ChangeFeed, DocumentStore, StorageError};
use crate::upstream::Upstream;
use crate::xdms::http::HttpState;
use crate::xdms::{Xdms, XdmsSettings};
use crate::xsd::{Validator, XsdError};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

mod build;
mod stores;
pub use stores::{open_stores, Stores};

#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("application usages: {0}")]
    Registry(#[from] RegistryError),
    #[error("schemas: {0}")]
    Schemas(#[from] XsdError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Auth(#[from] FrontError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: SocketAddr, message: String },
    #[error("server failed: {0}")]
    Serve(String),
}

/// A started server. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    pub http_addr: SocketAddr,
    /// The admin API listener; None when `admin.listen` is empty.
    pub admin_addr: Option<SocketAddr>,
    /// The SIP listener (UDP and TCP); None when `sip.listen` is empty.
    pub sip_addr: Option<SocketAddr>,
    /// The SIP-over-TLS listener; None when `sip.tls_listen` is empty.
    pub sip_tls_addr: Option<SocketAddr>,
    /// Sends SIP requests (NOTIFY, MESSAGE) from the SIP UDP socket.
    pub sip_client: Option<Arc<crate::sip::client::Client>>,
    /// The xcap-diff notifier; None when SIP is off.
    pub notifier: Option<Arc<crate::notifier::Notifier>>,
    pub metrics: Arc<Metrics>,
    pub decisions: Arc<DecisionService>,
    pub xdms: Arc<Xdms>,
    pub credentials: Arc<dyn CredentialStore>,
    /// Every committed change, in order (design.md §2).
    pub feed: ChangeFeed,
    pub subscriptions: Arc<dyn SubscriptionStore>,
    pub messages: Arc<dyn MessageStore>,
    /// The IM Server's charging data records.
    pub charging: Arc<dyn crate::storage::charging::ChargingLog>,
    store: Arc<dyn DocumentStore>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), AppError>>,
    grace: std::time::Duration,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, and flushes storage.
    pub async fn shutdown(mut self) -> Result<(), AppError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // In-flight requests get `grace` to finish; after that they are cut off.
        let result = match tokio::time::timeout(self.grace, &mut self.task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(AppError::Serve(e.to_string())),
            Err(_) => {
                self.task.abort();
                tracing::warn!("in-flight requests did not finish within the grace period");
                Ok(())
            }
        };
        flush_within(&self.store, self.grace).await?;
        result
    }

    /// Waits until the server stops by itself (it does not, unless it fails).
    pub async fn wait(mut self) -> Result<(), AppError> {
        let result = match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(AppError::Serve(e.to_string())),
        };
        flush_within(&self.store, self.grace).await?;
        result
    }

    /// Why the store can no longer write in this process, if it cannot (see
    /// [`DocumentStore::fatal`]).
    pub fn storage_fatal(&self) -> Option<String> {
        self.store.fatal()
    }
}

/// The final flush, bounded: a store that failed fatally is not flushed at all (its journal
/// replays at the next start; sled may hang trying), and one that does not finish within
/// `grace` is left to the same replay, so a stop signal always ends the process in time.
async fn flush_within(
    store: &Arc<dyn DocumentStore>,
    grace: std::time::Duration,
) -> Result<(), AppError> {
    if let Some(why) = store.fatal() {
        tracing::warn!(%why, "storage failed: not flushed; the journal replays at the next start");
        return Ok(());
    }
    // A task of its own: if the flush hangs, the grace period still ends the wait.
    let store = Arc::clone(store);
    let flush = tokio::spawn(async move { store.flush().await });
    match tokio::time::timeout(grace, flush).await {
        Ok(Ok(r)) => Ok(r?),
        Ok(Err(e)) => Err(AppError::Serve(format!("storage flush task failed: {e}"))),
        Err(_) => {
            // The blocked task keeps its handle on the store, so no destructor waits on it.
            tracing::error!("storage flush did not finish within the grace period; the journal replays at the next start");
            Ok(())
        }
    }
}

/// Loads the registry and compiles the schemas (fails on any mismatch, design.md §5).
pub fn load_usages(config: &Config) -> Result<(Arc<Registry>, Validator), AppError> {
    let (mut registry, schemas) =
        Registry::load(&config.server.app_usages_dir, &config.server.schemas_dir)?;
    registry.retain_roles(&config.server.roles);
    let validator = Validator::start(
        schemas,
        registry.validator_mains(),
        config.server.validation_workers,
    )?;
    Ok((Arc::new(registry), validator))
}

fn settings_default_domain(config: &Config) -> Option<String> {
    (!config.server.default_domain.is_empty()).then(|| config.server.default_domain.clone())
}

/// The XDMS of `config` on `store`, serving nothing (offline tools such as `xcapd import`
/// write documents through it, validated as a client's PUT would be).
pub async fn offline_xdms(
    config: &Config,
    store: Arc<dyn DocumentStore>,
) -> Result<Arc<Xdms>, AppError> {
    let (registry, validator) = load_usages(config)?;
    let settings = build::xdms_settings(config, config.server.http);
    Ok(Arc::new(
        Xdms::new(settings, registry, store, validator).await?,
    ))
}

/// Builds everything and starts serving; returns once the listener is bound.
pub async fn start(config: Config) -> Result<Running, AppError> {
    config.validate()?;
    if config.server.auth == crate::config::AuthMode::None {
        tracing::warn!(
            "DEVELOPMENT MODE: auth = \"none\" trusts the XUI in every request URI; \
             never expose this server beyond loopback"
        );
    }
    let (registry, validator) = load_usages(&config)?;
    let Stores {
        documents: store,
        credentials: creds,
        subscriptions,
        messages,
        charging,
        registrations,
        shared,
        database,
    } = open_stores(&config).await?;
    let metrics = Arc::new(Metrics::new(registry.iter().map(|u| u.auid().to_string())));
    if let Some(db) = database {
        metrics.cluster.set_pool_probe(move || {
            let s = db.pool_status();
            crate::metrics::PoolUse {
                open: s.size as u64,
                idle: s.available as u64,
                waiting: s.waiting as u64,
                max: s.max_size as u64,
            }
        });
    }
    // Counted before serving, so no write races with the count.
    metrics
        .set_documents(count_documents(store.as_ref(), registry.iter().map(|u| u.auid())).await?);
    let store: Arc<dyn DocumentStore> = Arc::new(InstrumentedStore::new(store, metrics.clone()));
    let listener = tokio::net::TcpListener::bind(config.server.http)
        .await
        .map_err(|e| AppError::Bind {
            addr: config.server.http,
            message: e.to_string(),
        })?;
    let http_addr = listener.local_addr().map_err(|e| AppError::Bind {
        addr: config.server.http,
        message: e.to_string(),
    })?;
    let sip = match config.sip.listen_addr()? {
        None => None,
        Some(addr) => {
            Some(
                crate::sip::transport::bind(addr)
                    .await
                    .map_err(|e| AppError::Bind {
                        addr,
                        message: format!("SIP: {e}"),
                    })?,
            )
        }
    };
    let sip_addr = sip.as_ref().map(|l| l.addr);
    let sip_tls = match config.sip.tls_listen_addr()? {
        None => None,
        Some(addr) => {
            let tls = crate::tls::sip_server_config(
                std::path::Path::new(&config.server.tls_cert_file),
                std::path::Path::new(&config.server.tls_key_file),
            )?;
            let (listener, bound) = bind(addr).await?;
            Some((listener, bound, tls))
        }
    };
    let sip_tls_addr = sip_tls.as_ref().map(|(_, a, _)| *a);
    let sip_tls_client = match config.sip.tls_ca_file.as_str() {
        "" => None,
        ca => Some(crate::tls::sip_client_config(std::path::Path::new(ca))?),
    };
    let settings = build::xdms_settings(&config, http_addr);
    let feed = ChangeFeed::new(store.clone());
    // Read before the indexes are built from the store: changes after it are followed.
    let indexed_through = feed.head();
    let xdms = Arc::new(Xdms::new(settings, registry, store.clone(), validator).await?);
    let follower = follow_changes(&feed, xdms.clone(), indexed_through);
    let dev_mode = config.server.auth == crate::config::AuthMode::None;
    let targets = build::routing_targets(&config)?;
    let decisions = build::decision_service(&config, &xdms, &targets);
    let routes = Arc::new(Routes::new(config.root_path(), targets, xdms.clone()));
    let history = build::history(&config, &xdms, &messages, &decisions);
    let app = build::xcap_router(
        &config, &xdms, &decisions, &feed, routes, &creds, &metrics, dev_mode, &history,
    )?;
    let im_handles: Arc<std::sync::OnceLock<crate::im::ImHandles>> = Arc::default();
    let admin = build::admin_server(
        &config,
        &xdms,
        &store,
        &creds,
        &subscriptions,
        &metrics,
        build::AdminIm {
            charging: charging.clone(),
            handles: im_handles.clone(),
        },
    )
    .await?;
    let admin_addr = admin.as_ref().map(|(_, addr, _)| *addr);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let grace = std::time::Duration::from_secs(config.server.shutdown_grace_secs);
    // One stop signal for both listeners.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        let _ = stop_rx.await;
        let _ = shutdown_tx.send(true);
    });
    let shutdown = stopped(shutdown_rx.clone());
    let conn_limits = config.limits.connection_limits();
    let task = if config.tls() {
        let tls = crate::tls::server_config(
            std::path::Path::new(&config.server.tls_cert_file),
            std::path::Path::new(&config.server.tls_key_file),
        )?;
        let listener = crate::tls::TlsListener::new(listener, tls).map_err(|e| AppError::Bind {
            addr: config.server.http,
            message: e.to_string(),
        })?;
        tokio::spawn(async move {
            crate::serve::serve(listener, app, conn_limits, shutdown).await;
            Ok(())
        })
    } else {
        use axum::serve::ListenerExt as _;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            crate::serve::serve(listener, app, conn_limits, shutdown).await;
            Ok(())
        })
    };
    let task = match admin {
        None => task,
        Some((listener, addr, app)) => {
            let admin_stop = stopped(shutdown_rx.clone());
            let admin_task = tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(admin_stop)
                    .await
                    .map_err(|e| AppError::Serve(e.to_string()))
            });
            tracing::info!(addr = %addr, "admin API listening");
            join_servers(task, admin_task)
        }
    };
    let task = abort_with(task, follower);
    let mut sip_client = None;
    let mut notifier = None;
    let (sip_endpoint, sip_transport) = build::sip_endpoint(&config);
    let task = match sip {
        None => task,
        Some(listeners) => {
            tracing::info!(addr = %listeners.addr, "SIP listening (UDP and TCP)");
            let addr = listeners.addr;
            let sent_by = (!config.sip.advertised_address.is_empty())
                .then(|| config.sip.advertised_address.clone());
            let client = crate::sip::transport::client(&listeners, sip_transport.timers, sent_by)
                .map_err(|e| AppError::Bind {
                addr,
                message: format!("SIP: {e}"),
            })?;
            // The notifier answers from the first request on: installed before serving.
            let (n, notifier_task) = build::notifier(
                &config,
                &xdms,
                &subscriptions,
                &feed,
                &client,
                &metrics,
                &creds,
                dev_mode,
                addr,
                shutdown_rx.clone(),
            )
            .await?;
            use crate::sip::endpoint::RequestHandler;
            use crate::sip::message::Method;
            let mut handlers: Vec<(Method, Arc<dyn RequestHandler>)> =
                vec![(Method::Subscribe, n.clone())];
            if config.im.registrar {
                let registrar = build::registrar(&config, &creds, dev_mode, &registrations)?;
                let uses = build::ImUses {
                    decisions: &decisions,
                    client: &client,
                    messages: &messages,
                    xdms: &xdms,
                    charging: &charging,
                    metrics: &metrics,
                    history: &history,
                };
                let (pager, deferred) = build::pager(&config, &creds, dev_mode, &registrar, uses)?;
                // Claims on a shared store may be other nodes' running deliveries: they lapse
                // after their lease instead.
                let resumed = if shared {
                    Ok(0)
                } else {
                    deferred.resume().await
                };
                match resumed {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(target: "xcapd::im", held = n, "deliveries cut short by the last stop resume")
                    }
                    Err(e) => {
                        tracing::warn!(target: "xcapd::im", error = %e, "cannot resume held deliveries")
                    }
                }
                let restoring = registrar.clone();
                tokio::spawn(async move {
                    if let Err(e) = restoring.restore().await {
                        tracing::warn!(target: "xcapd::im", error = %e, "cannot restore registrations");
                    }
                });
                let _ = im_handles.set(crate::im::ImHandles {
                    registrar: registrar.clone(),
                    deferred: deferred.clone(),
                });
                handlers.push((Method::Register, registrar.clone()));
                handlers.push((Method::Message, pager));
                if let Some(h) = &history {
                    tokio::spawn(h.clone().follow(feed.clone(), shutdown_rx.clone()));
                }
                tokio::spawn(deferred.clone().follow(feed.clone(), shutdown_rx.clone()));
                tokio::spawn(crate::im::deferred::maintain(
                    registrar,
                    deferred,
                    history.clone(),
                    shared,
                    shutdown_rx.clone(),
                ));
            }
            sip_endpoint.set_handlers(handlers);
            notifier = Some(n);
            sip_client = Some(client.clone());
            let sip_task = crate::sip::transport::spawn(
                listeners,
                Arc::clone(&sip_endpoint),
                client,
                sip_transport,
                sip_tls_client,
                shutdown_rx.clone(),
            );
            abort_with(abort_with(task, sip_task), notifier_task)
        }
    };
    // Config::validate makes SIP over TLS come with the UDP/TCP listener (its client).
    let task = match (sip_tls, sip_client.clone()) {
        (Some((listener, addr, tls)), Some(client)) => {
            tracing::info!(%addr, "SIP over TLS listening");
            abort_with(
                task,
                crate::sip::transport::spawn_tls(
                    listener,
                    tls,
                    sip_endpoint,
                    client,
                    sip_transport,
                    shutdown_rx.clone(),
                ),
            )
        }
        _ => task,
    };
    tracing::info!(addr = %http_addr, root = %config.server.xcap_root, "xcapd listening");
    Ok(Running {
        http_addr,
        admin_addr,
        sip_addr,
        sip_tls_addr,
        sip_client,
        notifier,
        metrics,
        decisions,
        xdms,
        credentials: creds,
        feed,
        subscriptions,
        messages,
        charging,
        store,
        stop: Some(stop_tx),
        task,
        grace,
    })
}

/// Pause of the index follower between pages of the change log.
const FOLLOW_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Keeps the XDMS's in-process indexes (parse cache, server-wide uniqueness) in step with the
/// change feed, so a write another process made on the same store reaches them too.
fn follow_changes(feed: &ChangeFeed, xdms: Arc<Xdms>, from: u64) -> JoinHandle<()> {
    let feed = feed.clone();
    tokio::spawn(async move {
        let mut cursor = feed.subscribe_from(from);
        loop {
            match cursor.next().await {
                Ok(change) => {
                    if let Err(e) = xdms.follow(&change).await {
                        tracing::warn!(seq = change.seq, error = %e, "cannot follow a change");
                    }
                    // Read the log in pages, not once per journal batch: this process's own
                    // writes are in the indexes already, others' may wait a few ms.
                    if cursor.buffered() == 0 {
                        tokio::time::sleep(FOLLOW_PAUSE).await;
                    }
                }
                Err(StorageError::ChangesTrimmed { through }) => {
                    tracing::warn!(
                        through,
                        "fell behind the change log: rebuilding the indexes"
                    );
                    let head = feed.head();
                    if let Err(e) = xdms.resync().await {
                        tracing::warn!(error = %e, "cannot rebuild the indexes");
                    }
                    cursor = feed.subscribe_from(head);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the change log; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    })
}

/// `server`, which also aborts `helper` when it ends or is aborted.
fn abort_with(
    server: JoinHandle<Result<(), AppError>>,
    helper: JoinHandle<()>,
) -> JoinHandle<Result<(), AppError>> {
    tokio::spawn(async move {
        let _abort = AbortOnDrop(vec![server.abort_handle(), helper.abort_handle()]);
        server.await.map_err(|e| AppError::Serve(e.to_string()))?
    })
}

async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), AppError> {
    let bind_error = |e: std::io::Error| AppError::Bind {
        addr,
        message: e.to_string(),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

/// Resolves once shutdown is signalled (or the signal can no longer come).
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Aborts the tasks it holds when dropped (after they finished, that does nothing).
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// One task for both servers: it ends when both have stopped, with the first failure, and
/// aborting it (the shutdown grace ran out) aborts both.
fn join_servers(
    xcap: JoinHandle<Result<(), AppError>>,
    admin: JoinHandle<Result<(), AppError>>,
) -> JoinHandle<Result<(), AppError>> {
    tokio::spawn(async move {
        let _abort = AbortOnDrop(vec![xcap.abort_handle(), admin.abort_handle()]);
        let (xcap, admin) = tokio::join!(xcap, admin);
        for result in [xcap, admin] {
            result.map_err(|e| AppError::Serve(e.to_string()))??;
        }
        Ok(())
    })
}

/// Runs until `signal` resolves, then shuts down gracefully; or until storage fails in a way
/// this process cannot undo (fail-stop): then it stops with an error, so that a supervisor
/// restarts it and the journal replay restores every acknowledged write.
pub async fn run_until(config: Config, signal: impl Future<Output = ()>) -> Result<(), AppError> {
    let running = start(config).await?;
    let store = Arc::clone(&running.store);
    let failed = async move {
        loop {
            if let Some(why) = store.fatal() {
                return why;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    };
    tokio::select! {
        () = signal => {
            tracing::info!("shutting down: finishing in-flight requests and flushing storage");
            running.shutdown().await
        }
        why = failed => {
            tracing::error!(%why, "storage failed and cannot recover in this process: stopping (exit status 1) so that a supervisor restarts xcapd; the journal restores every acknowledged write at the next start");
            let _ = running.shutdown().await;
            Err(AppError::Storage(StorageError::Backend(why)))
        }
    }
}
