//! SIP transports (RFC 3261 §18): UDP and TCP on one address. Datagrams and framed stream
//! messages go to the [`Endpoint`]; its answers go back on the same socket or connection.
//! Bounded: messages by `max_message_bytes`, TCP connections by count and idle time; a stream
//! that cannot be framed is answered (if possible) and closed. CRLF keep-alive pings on TCP
//! get their pong (RFC 5626 §4.4.1).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::ServerName;

use super::client::{Client, Flow};
use super::endpoint::{Deferred, Endpoint, Handled, Transport};
use super::message::{frame, parse, Limits, ParseError};
use super::transaction::Timers;

/// How often completed transactions are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Bound sockets, before serving.
pub struct SipListeners {
    pub udp: Arc<UdpSocket>,
    pub tcp: TcpListener,
    /// The address both are bound to (the real port when 0 was asked for).
    pub addr: SocketAddr,
}

/// Transport settings.
#[derive(Debug, Clone, Copy)]
pub struct TransportConfig {
    pub limits: Limits,
    pub max_tcp_connections: usize,
    pub tcp_idle_timeout: Duration,
    /// Client transaction timers (requests xcapd sends).
    pub timers: Timers,
}

/// UDP socket buffers asked of the kernel (capped there by `net.core.rmem_max` / `wmem_max`):
/// one write watched by a thousand subscribers sends a thousand NOTIFYs and receives their
/// thousand answers at once; the default ~200 KB drops most of them, and retransmissions
/// (Timer E) then add seconds.
const UDP_BUFFER_BYTES: usize = 4 << 20;

/// A UDP socket on `addr` with large buffers.
fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Binds UDP and TCP to `addr`; with port 0, to one free port for both (retried if TCP finds
/// the UDP port taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<SipListeners> {
    let mut last_err = None;
    for _ in 0..16 {
        let udp = udp_socket(addr)?;
        let bound = udp.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => {
                return Ok(SipListeners {
                    udp: Arc::new(udp),
                    tcp,
                    addr: bound,
                })
            }
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no free SIP port")))
}

/// The client that sends requests (NOTIFY) from the UDP socket, with `sent_by` (host[:port])
/// in its Via; the transport routes their responses to it once [`spawn`]ed.
pub fn client(
    listeners: &SipListeners,
    timers: Timers,
    sent_by: Option<String>,
) -> std::io::Result<Arc<Client>> {
    Client::new(Arc::clone(&listeners.udp), timers, sent_by)
}

/// Serves both transports until `shutdown` turns true; responses to `client`'s requests are
/// routed back to it.
/// `tls_client`: the trust for TLS connections xcapd opens (`sips:` targets); without it
/// none are opened.
pub fn spawn(
    listeners: SipListeners,
    endpoint: Arc<Endpoint>,
    client: Arc<Client>,
    config: TransportConfig,
    tls_client: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let SipListeners { udp, tcp, .. } = listeners;
    let driver = tokio::spawn(Arc::clone(&client).drive());
    let (to, weak, down) = (
        Arc::clone(&endpoint),
        Arc::downgrade(&client),
        shutdown.clone(),
    );
    client.set_connector(Arc::new(move |peer, tls_name| {
        let tls = tls_name.map(|name| (tls_client.clone(), name));
        Box::pin(connect(
            peer,
            tls,
            Arc::clone(&to),
            weak.clone(),
            config,
            down.clone(),
        ))
    }));
    let udp_task = tokio::spawn(serve_udp(
        udp,
        Arc::clone(&endpoint),
        Arc::clone(&client),
        config,
        shutdown.clone(),
    ));
    let tcp_task = tokio::spawn(serve_tcp(
        tcp,
        endpoint,
        Arc::clone(&client),
        config,
        shutdown,
    ));
    tokio::spawn(async move {
        let _ = tokio::join!(udp_task, tcp_task);
        driver.abort();
    })
}

async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

async fn serve_udp(
    socket: Arc<UdpSocket>,
    endpoint: Arc<Endpoint>,
    client: Arc<Client>,
    config: TransportConfig,
    shutdown: watch::Receiver<bool>,
) {
    // One byte more than the limit: a datagram that fills it was cut, so it is too large.
    let mut buf = vec![0u8; config.limits.max_message_bytes.max(1024) + 1];
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = sweep.tick() => endpoint.sweep(Instant::now()),
            received = socket.recv_from(&mut buf) => {
                // ICMP errors surface as receive errors on some systems: keep serving.
                let Ok((n, source)) = received else { continue };
                if n > config.limits.max_message_bytes {
                    if let Some(out) = endpoint.reject(&buf[..n], &ParseError::TooLarge, source) {
                        let _ = socket.send_to(&out.bytes, out.destination).await;
                    }
                    continue;
                }
                if buf[..n].starts_with(b"SIP/") {
                    // A response: for one of our client transactions, if any (§18.1.2).
                    if let Ok(response) = parse(&buf[..n], &config.limits) {
                        client.on_response(response);
                    }
                    continue;
                }
                match endpoint.on_message(&buf[..n], source, Transport::Udp, Instant::now()) {
                    Handled::Reply(out) => {
                        if let Err(e) = socket.send_to(&out.bytes, out.destination).await {
                            tracing::debug!(target: "xcapd::sip", error = %e, to = %out.destination, "cannot send a SIP response");
                        }
                    }
                    Handled::Deferred(deferred) => {
                        let (endpoint, socket) = (Arc::clone(&endpoint), Arc::clone(&socket));
                        tokio::spawn(async move {
                            answer_deferred(&endpoint, *deferred, |bytes, to| async move {
                                let _ = socket.send_to(&bytes, to).await;
                            })
                            .await;
                        });
                    }
                    Handled::Nothing => {}
                }
            }
        }
    }
}

/// A deferred request is answered within this (clients give up after Timer F, 32 s).
const HANDLER_DEADLINE: Duration = Duration::from_secs(20);

/// Runs the handler for a deferred request and sends its answer with `send`; the handler
/// learns when the answer is out (its NOTIFY must come after the 2xx).
async fn answer_deferred<F, Fut>(endpoint: &Endpoint, deferred: Deferred, send: F)
where
    F: FnOnce(Vec<u8>, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(handler) = deferred
        .incoming
        .message
        .method()
        .and_then(|m| endpoint.handler_for(m))
    else {
        return;
    };
    let incoming = deferred.incoming.clone();
    // Its own task: a handler that panics or hangs still gets its request answered (and the
    // server transaction completed), with 500 (RFC 3261 §21.5.1).
    let mut handling = tokio::spawn(async move { handler.handle(incoming).await });
    let mut reply = match tokio::time::timeout(HANDLER_DEADLINE, &mut handling).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) | Err(_) => {
            handling.abort();
            tracing::error!(target: "xcapd::sip", "a SIP request handler failed or took too long");
            super::endpoint::Reply::new(500, "Server Internal Error")
        }
    };
    if let Some(out) = endpoint.finish(&deferred, &reply, Instant::now()) {
        send(out.bytes, out.destination).await;
    }
    if let Some(sent) = reply.sent.take() {
        let _ = sent.send(());
    }
}

/// Accepts connections until `shutdown`, at most `max` open at once (more are closed at once),
/// each served by `serve` in its own task.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    max: usize,
    shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let open = Arc::new(AtomicUsize::new(0));
    let stop = stopped(shutdown.clone());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                if open.load(Ordering::Acquire) >= max {
                    tracing::warn!(target: "xcapd::sip", %peer, "SIP connection limit reached: closing");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                open.fetch_add(1, Ordering::AcqRel);
                let (open, shutdown, connection) = (Arc::clone(&open), shutdown.clone(), serve(stream, peer));
                tokio::spawn(async move {
                    tokio::select! {
                        () = stopped(shutdown) => {}
                        () = connection => {}
                    }
                    open.fetch_sub(1, Ordering::AcqRel);
                });
            }
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    endpoint: Arc<Endpoint>,
    client: Arc<Client>,
    config: TransportConfig,
    shutdown: watch::Receiver<bool>,
) {
    accept_loop(
        listener,
        config.max_tcp_connections,
        shutdown,
        |stream, peer| {
            let (endpoint, client) = (Arc::clone(&endpoint), Arc::clone(&client));
            async move { serve_connection(stream, peer, "TCP", &endpoint, &client, config).await }
        },
    )
    .await;
}

/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves SIP over TLS (RFC 3261 §26.2, `sips:` on 5061 by convention) on `listener` with the
/// server certificate in `tls`, until `shutdown`; connections follow the TCP connection cap
/// and framing rules.
pub fn spawn_tls(
    listener: TcpListener,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    endpoint: Arc<Endpoint>,
    client: Arc<Client>,
    config: TransportConfig,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        accept_loop(
            listener,
            config.max_tcp_connections,
            shutdown,
            |stream, peer| {
                let (endpoint, acceptor) = (Arc::clone(&endpoint), acceptor.clone());
                let client = Arc::clone(&client);
                async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    if let Ok(Ok(tls)) = handshake.await {
                        serve_connection(tls, peer, "TLS", &endpoint, &client, config).await;
                    }
                }
            },
        )
        .await;
    })
}

/// A request may take this long to arrive whole over TCP (slow senders cannot hold a slot).
const MESSAGE_DEADLINE: Duration = Duration::from_secs(30);
/// A response must be written within this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers queued for one connection at most (deferred answers wait for room).
const CONNECTION_QUEUE: usize = 64;

/// One TCP connection: frames messages out of the byte stream (RFC 3261 §18.3). Leading CRLFs
/// are dropped as they come (a CRLF CRLF ping gets its pong, RFC 5626 §4.4.1); a message that
/// cannot be framed or parsed is answered if possible and ends the connection, since the
/// stream cannot be trusted to resynchronise. Answers the handler gives later come back
/// through a queue and are written between reads.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    transport: &'static str,
    endpoint: &Arc<Endpoint>,
    client: &Arc<Client>,
    config: TransportConfig,
) {
    let (queue, queued) = mpsc::channel::<Vec<u8>>(CONNECTION_QUEUE);
    // Requests to this peer (NOTIFYs) go back on this connection while it is open.
    client.flows.open(
        peer,
        Flow {
            queue: queue.clone(),
            transport,
            verified_name: None,
        },
    );
    read_connection(
        stream,
        peer,
        endpoint,
        client,
        config,
        queue.clone(),
        queued,
    )
    .await;
    client.flows.close(peer, &queue);
}

/// A connection must be open within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a TCP connection to `peer` for requests to a `transport=tcp` target (RFC 3261
/// §18.1.1), or a TLS one for a `sips:` or `transport=tls` target (§26.2: the peer's
/// certificate must be valid for the target's host and signed by a trusted CA), and serves it
/// like an accepted one until it closes or `shutdown`; true once it is an open flow.
async fn connect(
    peer: SocketAddr,
    tls: Option<(Option<Arc<tokio_rustls::rustls::ClientConfig>>, String)>,
    endpoint: Arc<Endpoint>,
    client: std::sync::Weak<Client>,
    config: TransportConfig,
    shutdown: watch::Receiver<bool>,
) -> bool {
    let Some(client) = client.upgrade() else {
        return false;
    };
    let tls = match tls {
        None => None,
        Some((Some(trust), name)) => match ServerName::try_from(name) {
            Ok(name) => Some((trust, name)),
            Err(e) => {
                tracing::info!(target: "xcapd::sip", %peer, error = %e, "no TLS server name in the target");
                return false;
            }
        },
        Some((None, _)) => {
            tracing::warn!(target: "xcapd::sip", %peer, "a sips: target needs TLS and no sip.tls_ca_file is configured: not sent");
            return false;
        }
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::info!(target: "xcapd::sip", %peer, error = %e, "cannot connect over TCP");
            return false;
        }
        Err(_) => {
            tracing::info!(target: "xcapd::sip", %peer, "TCP connect timed out");
            return false;
        }
    };
    let _ = stream.set_nodelay(true);
    match tls {
        None => {
            serve_opened(
                stream,
                peer,
                ("TCP", None),
                endpoint,
                client,
                config,
                shutdown,
            );
            true
        }
        Some((trust, name)) => {
            let verified = name.to_str().into_owned();
            let handshake = tokio_rustls::TlsConnector::from(trust).connect(name, stream);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => {
                    let transport = ("TLS", Some(verified));
                    serve_opened(stream, peer, transport, endpoint, client, config, shutdown);
                    true
                }
                Ok(Err(e)) => {
                    tracing::info!(target: "xcapd::sip", %peer, error = %e, "TLS handshake failed");
                    false
                }
                Err(_) => {
                    tracing::info!(target: "xcapd::sip", %peer, "TLS handshake timed out");
                    false
                }
            }
        }
    }
}

/// Registers a connection xcapd opened as a flow (before returning, so the request that asked
/// finds it) and serves it until it closes or `shutdown`.
fn serve_opened<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: SocketAddr,
    (transport, verified_name): (&'static str, Option<String>),
    endpoint: Arc<Endpoint>,
    client: Arc<Client>,
    config: TransportConfig,
    shutdown: watch::Receiver<bool>,
) {
    let (queue, queued) = mpsc::channel::<Vec<u8>>(CONNECTION_QUEUE);
    client.flows.open(
        peer,
        Flow {
            queue: queue.clone(),
            transport,
            verified_name,
        },
    );
    tokio::spawn(async move {
        let mine = queue.clone();
        tokio::select! {
            () = stopped(shutdown) => {}
            () = read_connection(stream, peer, &endpoint, &client, config, queue, queued) => {}
        }
        client.flows.close(peer, &mine);
    });
}

/// The loop of [`serve_connection`].
async fn read_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    endpoint: &Arc<Endpoint>,
    client: &Arc<Client>,
    config: TransportConfig,
    queue: mpsc::Sender<Vec<u8>>,
    mut queued: mpsc::Receiver<Vec<u8>>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut crlfs = 0usize;
    let mut partial_since: Option<Instant> = None;
    loop {
        loop {
            let leading = buf
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            if leading > 0 {
                crlfs += leading;
                let ping = buf[..leading].windows(4).any(|w| w == b"\r\n\r\n") || crlfs >= 4;
                buf.drain(..leading);
                if ping && buf.is_empty() {
                    crlfs = 0;
                    if !write(&mut stream, b"\r\n").await {
                        return;
                    }
                }
            }
            if buf.is_empty() {
                break;
            }
            crlfs = 0;
            match frame(&buf, &config.limits) {
                Ok(Some(n)) => {
                    let message: Vec<u8> = buf.drain(..n).collect();
                    let answer = match parse(&message, &config.limits) {
                        // A response: for a request we sent on this flow (§18.1.2).
                        Ok(m) if m.status().is_some() => {
                            client.on_response(m);
                            Handled::Nothing
                        }
                        Ok(m) => endpoint.on_parsed(m, peer, Transport::Tcp, Instant::now()),
                        Err(e) => {
                            if let Some(out) = endpoint.reject(&message, &e, peer) {
                                let _ = write(&mut stream, &out.bytes).await;
                            }
                            return;
                        }
                    };
                    match answer {
                        Handled::Reply(out) => {
                            if !write(&mut stream, &out.bytes).await {
                                return;
                            }
                        }
                        Handled::Deferred(deferred) => {
                            let (endpoint, queue) = (Arc::clone(endpoint), queue.clone());
                            tokio::spawn(async move {
                                answer_deferred(&endpoint, *deferred, |bytes, _| async move {
                                    let _ = queue.send(bytes).await;
                                })
                                .await;
                            });
                        }
                        Handled::Nothing => {}
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if let Some(out) = endpoint.reject(&buf, &e, peer) {
                        let _ = write(&mut stream, &out.bytes).await;
                    }
                    return;
                }
            }
        }
        partial_since = match (buf.is_empty(), partial_since) {
            (true, _) => None,
            (false, None) => Some(Instant::now()),
            (false, since) => since,
        };
        let wait = match partial_since {
            Some(since) => MESSAGE_DEADLINE
                .saturating_sub(since.elapsed())
                .min(config.tcp_idle_timeout),
            None => config.tcp_idle_timeout,
        };
        tokio::select! {
            read = tokio::time::timeout(wait, stream.read(&mut chunk)) => match read {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            },
            Some(bytes) = queued.recv() => {
                if !write(&mut stream, &bytes).await {
                    return;
                }
            }
        }
    }
}

/// Writes with a deadline; false when the connection should close.
async fn write<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await,
        Ok(Ok(()))
    )
}
