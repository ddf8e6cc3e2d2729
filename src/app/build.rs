//! The parts of a running server, one builder per role (design.md §2, L4): the XDMS
//! settings, the routing targets of the Aggregation Proxy, the policy decision service, the
//! XCAP HTTP stack (routes, authentication, compression, metrics) and the admin API.

use super::*;

/// Settings of the in-process XDMS.
pub(super) fn xdms_settings(config: &Config, http_addr: SocketAddr) -> XdmsSettings {
    XdmsSettings {
        root_path: config.root_path().to_string(),
        public_root: config.public_root(http_addr),
        default_domain: (!config.server.default_domain.is_empty())
            .then(|| config.server.default_domain.clone()),
        limits: config.limits.xml_limits(),
        allow_foreign_references: config.xcap.allow_foreign_references,
        oma_compliant: config.xcap.oma_compliant,
        quote_attribute_values: config.xcap.quote_attribute_values,
        cache_bytes: config.storage.document_cache_mb as usize * 1024 * 1024,
    }
}

/// The remote XDMS nodes the Aggregation Proxy routes AUIDs to (AP-05).
pub(super) fn routing_targets(config: &Config) -> Result<Vec<Target>, AppError> {
    let mut targets = Vec::new();
    for t in &config.routing.targets {
        let upstream = Upstream::new(Routes::target_config(
            &t.url,
            std::time::Duration::from_secs(t.timeout_secs),
        ))
        .map_err(|e| {
            AppError::Config(ConfigError::Invalid(format!(
                "routing target {}: {e}",
                t.name
            )))
        })?;
        targets.push(Target {
            name: t.name.clone(),
            upstream,
            auids: t.auids.clone(),
            trusted_hop: t.trusted_hop,
        });
    }
    Ok(targets)
}

/// The policy decision service; external lists on remote Shared XDMS nodes are fetched from
/// the routed list AUIDs as the configured service identity.
pub(super) fn decision_service(
    config: &Config,
    xdms: &Arc<Xdms>,
    targets: &[Target],
) -> Arc<DecisionService> {
    let im_default = match config.policy.im_default.as_str() {
        "allow" => crate::policy::ImAction::Allow,
        "polite-block" => crate::policy::ImAction::PoliteBlock,
        _ => crate::policy::ImAction::Block,
    };
    let remote_lists = (!config.policy.service_identity.is_empty())
        .then(|| {
            let targets: std::collections::HashMap<String, Upstream> = targets
                .iter()
                .flat_map(|t| {
                    t.auids
                        .iter()
                        .filter(|a| {
                            *a == "resource-lists"
                                || *a == "org.openmobilealliance.group-usage-list"
                        })
                        .map(move |a| (a.clone(), t.upstream.clone()))
                })
                .collect();
            (!targets.is_empty()).then(|| {
                crate::decision::remote::RemoteLists::new(
                    targets,
                    config.policy.service_identity.clone(),
                    xdms.settings().limits,
                )
            })
        })
        .flatten();
    Arc::new(DecisionService::new(xdms.clone(), im_default, remote_lists))
}

/// The XCAP HTTP stack: decision API and XDMS routes behind the proxy's routing, the
/// authenticating front (unless in development mode), gzip, access log and request metrics.
#[allow(clippy::too_many_arguments)] // one per part of the stack
pub(super) fn xcap_router(
    config: &Config,
    xdms: &Arc<Xdms>,
    decisions: &Arc<DecisionService>,
    feed: &ChangeFeed,
    routes: Arc<Routes>,
    creds: &Arc<dyn CredentialStore>,
    metrics: &Arc<Metrics>,
    dev_mode: bool,
    history: &Option<Arc<crate::im::history::History>>,
) -> Result<axum::Router, AppError> {
    let history_state = crate::im::http::HistoryState {
        history: history.clone(),
        default_domain: settings_default_domain(config),
    };
    let mut app = axum::Router::new()
        .route(
            crate::im::http::PATH,
            axum::routing::get(crate::im::http::history).with_state(history_state),
        )
        .route(
            crate::decision::http::PATH,
            axum::routing::post(crate::decision::http::decide).with_state(decisions.clone()),
        )
        .route(
            crate::xdms::changes::PATH,
            axum::routing::get(crate::xdms::changes::changes).with_state(feed.clone()),
        )
        .merge(crate::xdms::http::router(HttpState {
            xdms: xdms.clone(),
            max_body_bytes: config.limits.max_body_bytes,
            request_timeout: std::time::Duration::from_secs(config.limits.request_timeout_secs),
            dev_mode,
        }))
        .layer(axum::middleware::from_fn_with_state(
            routes,
            crate::proxy::route::route,
        ));
    if !dev_mode {
        let front = Arc::new(Front::new(
            &config.auth,
            creds.clone(),
            settings_default_domain(config),
            config.root_path(),
            config.tls(),
        )?);
        app = app.layer(axum::middleware::from_fn_with_state(
            front,
            crate::proxy::http::authenticate,
        ));
    }
    // AP-14: gzip responses for clients that ask (Accept-Encoding). Request bodies are not
    // decoded: Jitsi sends "Content-Encoding: UTF-8", which must be ignored (IO-09c).
    let app = app
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
        .layer(axum::middleware::from_fn(crate::telemetry::access_log));
    // Outermost, so refused requests are counted too.
    Ok(app.layer(axum::middleware::from_fn_with_state(
        RequestTracker::new(metrics.clone(), config.root_path()),
        track_requests,
    )))
}

/// What the admin API shows of the IM Server.
pub(super) struct AdminIm {
    pub charging: Arc<dyn crate::storage::charging::ChargingLog>,
    /// Filled once the IM Server runs.
    pub handles: Arc<std::sync::OnceLock<crate::im::ImHandles>>,
}

/// The admin API listener and its router, when `admin.listen` is set.
pub(super) async fn admin_server(
    config: &Config,
    xdms: &Arc<Xdms>,
    store: &Arc<dyn DocumentStore>,
    creds: &Arc<dyn CredentialStore>,
    subscriptions: &Arc<dyn SubscriptionStore>,
    metrics: &Arc<Metrics>,
    im: AdminIm,
) -> Result<Option<(tokio::net::TcpListener, SocketAddr, axum::Router)>, AppError> {
    Ok(match config.admin.listen_addr()? {
        None => None,
        Some(addr) => {
            let token = crate::admin::resolve_token(
                &config.admin.token,
                &config.admin.token_file,
                &config.server.data_dir,
            )?;
            let issuer = crate::admin::hs256_issuer(
                &config.auth.jwt_hs256_secret_file,
                &config.auth.jwt_issuer,
                &config.auth.jwt_audience,
            )?
            .map(Arc::new);
            let (admin_listener, admin_addr) = super::bind(addr).await?;
            let admin_app = crate::admin::router(AdminState {
                xdms: xdms.clone(),
                store: store.clone(),
                creds: creds.clone(),
                subscriptions: subscriptions.clone(),
                metrics: metrics.clone(),
                token,
                issuer,
                root_path: config.root_path().to_string(),
                default_domain: settings_default_domain(config),
                max_import_bytes: config.admin.max_import_bytes,
                charging: im.charging,
                im: im.handles,
            });
            Some((admin_listener, admin_addr, admin_app))
        }
    })
}

/// The SIP endpoint and its transport settings.
pub(super) fn sip_endpoint(
    config: &Config,
) -> (
    Arc<crate::sip::endpoint::Endpoint>,
    crate::sip::transport::TransportConfig,
) {
    let limits = crate::sip::message::Limits {
        max_message_bytes: config.sip.max_message_bytes,
        ..Default::default()
    };
    let endpoint = crate::sip::endpoint::Endpoint::new(crate::sip::endpoint::EndpointConfig {
        limits,
        ..Default::default()
    });
    let transport = crate::sip::transport::TransportConfig {
        limits,
        max_tcp_connections: config.sip.max_tcp_connections,
        tcp_idle_timeout: std::time::Duration::from_secs(config.sip.tcp_idle_timeout_secs),
        timers: crate::sip::transaction::Timers {
            t1: std::time::Duration::from_millis(config.sip.timer_t1_ms),
            ..Default::default()
        },
    };
    (Arc::new(endpoint), transport)
}

/// Who sent a SIP request: P-Asserted-Identity from `sip.trusted_peers`, else SIP Digest with
/// the HTTP side's credentials (MD5 offered first: what SIP user agents implement, RFC 3261
/// §22.4), or the From URI in the development mode.
fn sip_authenticator(
    config: &Config,
    creds: &Arc<dyn CredentialStore>,
    dev_mode: bool,
) -> Result<crate::sip::auth::SipAuthenticator, AppError> {
    use crate::auth::digest::{Algorithm, DigestAuthenticator, DigestConfig};
    let mut algorithms: Vec<Algorithm> = config
        .auth
        .digest_algorithms
        .iter()
        .filter_map(|a| Algorithm::from_token(a))
        .collect();
    algorithms.sort_by_key(|a| *a != Algorithm::Md5);
    if algorithms.is_empty() {
        algorithms.push(Algorithm::Md5);
    }
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret)
        .map_err(|e| AppError::Serve(format!("no randomness for SIP nonces: {e}")))?;
    let digest = DigestAuthenticator::new(
        secret,
        DigestConfig {
            nonce_lifetime_secs: config.auth.nonce_lifetime_secs,
            algorithms,
            ..DigestConfig::default()
        },
        |buf| {
            let _ = getrandom::getrandom(buf);
        },
    );
    let trusted_peers = crate::auth::trust::TrustedPeers::parse(&config.sip.trusted_peers)
        .map_err(|e| AppError::Config(ConfigError::Invalid(format!("sip.trusted_peers: {e}"))))?;
    Ok(crate::sip::auth::SipAuthenticator {
        digest,
        creds: creds.clone(),
        trusted_peers,
        default_domain: settings_default_domain(config),
        dev_mode,
    })
}

/// The xcap-diff notifier on the SIP endpoint (issue #13), resuming stored subscriptions.
#[allow(clippy::too_many_arguments)] // one per part it stands on
pub(super) async fn notifier(
    config: &Config,
    xdms: &Arc<Xdms>,
    store: &Arc<dyn SubscriptionStore>,
    feed: &ChangeFeed,
    client: &Arc<crate::sip::client::Client>,
    metrics: &Arc<Metrics>,
    creds: &Arc<dyn CredentialStore>,
    dev_mode: bool,
    sip_addr: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> Result<(Arc<crate::notifier::Notifier>, JoinHandle<()>), AppError> {
    use crate::notifier::{request::Durations, NotifierConfig, NotifierParts};
    let s = &config.sip;
    let host = if s.advertised_address.is_empty() {
        sip_addr.to_string()
    } else {
        s.advertised_address.clone()
    };
    let notifier_config = NotifierConfig {
        public_root: xdms.settings().public_root.clone(),
        root_path: config.root_path().to_string(),
        default_domain: settings_default_domain(config),
        durations: Durations {
            default_secs: s.subscription_default_secs,
            min_secs: s.subscription_min_secs,
            max_secs: s.subscription_max_secs,
        },
        notify_interval: std::time::Duration::from_millis(s.notify_interval_ms),
        contact: format!("sip:{host}"),
        max_subscriptions: s.max_subscriptions,
        max_subscriptions_per_user: s.max_subscriptions_per_user,
        node_lease: std::time::Duration::from_secs(config.storage.node_lease_secs),
    };
    let mut nodes = Vec::new();
    for t in &config.routing.targets {
        if let Some(identity) = &t.follow_changes_as {
            let node = crate::notifier::nodes::RemoteNode::new(
                t.name.clone(),
                t.auids.clone(),
                &t.url,
                std::time::Duration::from_secs(t.timeout_secs),
                identity.clone(),
            )
            .map_err(|e| AppError::Config(crate::config::ConfigError::Invalid(e.to_string())))?;
            nodes.push(Arc::new(node));
        }
    }
    let parts = NotifierParts {
        config: notifier_config,
        nodes: Arc::new(crate::notifier::nodes::Nodes::new(nodes)),
        xdms: xdms.clone(),
        store: store.clone(),
        feed: feed.clone(),
        client: client.clone(),
        metrics: metrics.clone(),
        shutdown,
    };
    let auth = sip_authenticator(config, creds, dev_mode)?;
    let (notifier, task) = crate::notifier::Notifier::start(parts, auth).await?;
    // Whole-document writes of watched documents carry their patch (weak: no cycle).
    let watching = Arc::downgrade(&notifier);
    xdms.set_change_watch(Arc::new(move |key| {
        watching.upgrade().is_some_and(|n| n.watches(key))
    }));
    Ok((notifier, task))
}

/// The registrar (issue #14 scope 1): the same SIP authentication as the notifier.
pub(super) fn registrar(
    config: &Config,
    creds: &Arc<dyn CredentialStore>,
    dev_mode: bool,
    registrations: &Arc<dyn crate::storage::registrations::RegistrationStore>,
) -> Result<Arc<crate::im::Registrar>, AppError> {
    let im = &config.im;
    let durations = crate::im::bindings::Durations {
        default_secs: im.registration_default_secs,
        min_secs: im.registration_min_secs,
        max_secs: im.registration_max_secs,
    };
    let auth = sip_authenticator(config, creds, dev_mode)?;
    Ok(Arc::new(crate::im::Registrar::new(
        auth,
        durations,
        settings_default_domain(config),
        registrations.clone(),
        config.storage.backend == crate::config::StorageBackend::Postgres,
    )))
}

/// Conversation history (issue #14 scope 6), unless the IM Server is off or `im.history` is
/// "off"; its documents are reconciled with the store in the background.
pub(super) fn history(
    config: &Config,
    xdms: &Arc<Xdms>,
    messages: &Arc<dyn crate::storage::messages::MessageStore>,
    decisions: &Arc<crate::decision::DecisionService>,
) -> Option<Arc<crate::im::history::History>> {
    let im = &config.im;
    let on = im.history != crate::config::HistoryMode::Off;
    if !(im.registrar && on && config.sip.listen_addr().ok().flatten().is_some()) {
        return None;
    }
    let docs = Arc::new(crate::im::documents::Projection::new(
        crate::im::documents::Kind::ConvHistory,
        xdms.clone(),
        messages.clone(),
        &config.server.xcap_root,
    ));
    let reconciling = docs.clone();
    tokio::spawn(async move {
        if let Err(why) = reconciling.reconcile().await {
            tracing::warn!(target: "xcapd::im", %why, "cannot reconcile conv-history documents");
        }
    });
    let retention_ms = im.history_retention_days.saturating_mul(86_400_000);
    Some(Arc::new(crate::im::history::History::new(
        messages.clone(),
        docs,
        retention_ms,
        im.history,
        decisions.clone(),
    )))
}

/// What the IM Server uses of the rest of the server.
pub(super) struct ImUses<'a> {
    pub decisions: &'a Arc<crate::decision::DecisionService>,
    pub client: &'a Arc<crate::sip::client::Client>,
    pub messages: &'a Arc<dyn crate::storage::messages::MessageStore>,
    pub xdms: &'a Arc<crate::xdms::service::Xdms>,
    pub charging: &'a Arc<dyn crate::storage::charging::ChargingLog>,
    pub metrics: &'a Arc<Metrics>,
    pub history: &'a Option<Arc<crate::im::history::History>>,
}

/// The pager-mode MESSAGE handler (issue #14 scopes 1–5), on the registrar's bindings or
/// back through the SIP/IP core (`im.outbound_proxy`).
pub(super) fn pager(
    config: &Config,
    creds: &Arc<dyn CredentialStore>,
    dev_mode: bool,
    registrar: &Arc<crate::im::Registrar>,
    uses: ImUses<'_>,
) -> Result<(Arc<crate::im::Pager>, Arc<crate::im::Deferred>), AppError> {
    let ImUses {
        decisions,
        client,
        messages,
        xdms,
        charging,
        metrics,
        history,
    } = uses;
    let im = &config.im;
    let charging =
        crate::im::charging::Charging::new(im.charging.then(|| charging.clone()), metrics.clone());
    let domain = settings_default_domain(config);
    let server_uri = im
        .server_uri
        .clone()
        .unwrap_or_else(|| format!("sip:im@{}", domain.as_deref().unwrap_or("localhost")));
    let proxy = im
        .outbound_proxy
        .as_deref()
        .and_then(crate::sip::header::UriTarget::parse);
    let router = Arc::new(crate::im::Router::new(
        client.clone(),
        registrar.clone(),
        proxy,
        server_uri,
    ));
    let limits = crate::im::deferred::Limits {
        ttl_secs: im.deferred_ttl_secs,
        lease_ms: im.delivery_lease_secs.saturating_mul(1000),
        max_messages: im.deferred_max_messages,
        max_bytes: im.deferred_max_bytes,
    };
    let list = Arc::new(crate::im::documents::Projection::new(
        crate::im::documents::Kind::DeferredList,
        xdms.clone(),
        messages.clone(),
        &config.server.xcap_root,
    ));
    let reconciling = list.clone();
    tokio::spawn(async move {
        match reconciling.reconcile().await {
            Ok(n) => {
                tracing::debug!(target: "xcapd::im", owners = n, "deferred-list documents reconciled")
            }
            Err(why) => {
                tracing::warn!(target: "xcapd::im", %why, "cannot reconcile deferred-list documents")
            }
        }
    });
    let deferred = crate::im::Deferred::new(
        messages.clone(),
        router.clone(),
        limits,
        Some(list),
        charging.clone(),
    );
    // A registration delivers what waits (weak: the registrar does not keep it alive).
    let waiting = Arc::downgrade(&deferred);
    registrar.on_binding(Arc::new(move |aor: &str| {
        if let Some(d) = waiting.upgrade() {
            d.wake(aor);
        }
    }));
    let pager = Arc::new(crate::im::Pager::new(crate::im::PagerParts {
        auth: sip_authenticator(config, creds, dev_mode)?,
        router,
        decisions: decisions.clone(),
        default_domain: domain,
        max_pager_bytes: im.max_pager_bytes,
        deferred: Some(deferred.clone()),
        offline_storage_default: im.offline_storage,
        max_recipients: im.max_recipients,
        answer_within: std::time::Duration::from_millis(im.answer_within_ms),
        attempt_lasts: std::time::Duration::from_millis(
            config
                .sip
                .timer_t1_ms
                .saturating_mul(64)
                .saturating_add(5_000),
        ),
        groups: Some(xdms.clone()),
        history: history.clone(),
        expected: crate::im::expected::Expected::new(
            100_000,
            im.deferred_ttl_secs.saturating_mul(1000),
        ),
        charging: charging.clone(),
    }));
    Ok((pager, deferred))
}
