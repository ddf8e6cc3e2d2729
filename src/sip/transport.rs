//! SIP transports (RFC 3261 §18): UDP and TCP on one address. Datagrams and framed stream
//! messages go to the [`Endpoint`]; its answers go back on the same socket or connection.
//! Bounded: messages by `max_message_bytes`, TCP connections by count and idle time; a stream
//! that cannot be framed is answered (if possible) and closed. CRLF keep-alive pings on TCP
//! get their pong (RFC 5626 §4.4.1).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::client::Client;
use super::endpoint::{Endpoint, Transport};
use super::message::{frame, parse, Limits};
use super::transaction::Timers;

/// How often completed transactions are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Bound sockets, before serving.
pub struct SipListeners {
    pub udp: UdpSocket,
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
}

/// Binds UDP and TCP to `addr`; with port 0, to one free port for both (retried if TCP finds
/// the UDP port taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<SipListeners> {
    let mut last_err = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).await?;
        let bound = udp.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => {
                return Ok(SipListeners {
                    udp,
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

/// Serves both transports until `shutdown` turns true. The returned [`Client`] sends requests
/// from the UDP socket; their responses are routed back to it here.
pub fn spawn(
    listeners: SipListeners,
    endpoint: Arc<Endpoint>,
    config: TransportConfig,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(JoinHandle<()>, Arc<Client>)> {
    let SipListeners { udp, tcp, .. } = listeners;
    let udp = Arc::new(udp);
    let client = Client::new(Arc::clone(&udp), Timers::default())?;
    let driver = tokio::spawn(Arc::clone(&client).drive());
    let udp_task = tokio::spawn(serve_udp(
        udp,
        Arc::clone(&endpoint),
        Arc::clone(&client),
        config,
        shutdown.clone(),
    ));
    let tcp_task = tokio::spawn(serve_tcp(tcp, endpoint, config, shutdown));
    let task = tokio::spawn(async move {
        let _ = tokio::join!(udp_task, tcp_task);
        driver.abort();
    });
    Ok((task, client))
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
    let mut buf = vec![0u8; config.limits.max_message_bytes.max(1024)];
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
                if buf[..n].starts_with(b"SIP/") {
                    // A response: for one of our client transactions, if any (§18.1.2).
                    if let Ok(response) = parse(&buf[..n], &config.limits) {
                        client.on_response(response);
                    }
                    continue;
                }
                if let Some(out) = endpoint.on_message(&buf[..n], source, Transport::Udp, Instant::now()) {
                    if let Err(e) = socket.send_to(&out.bytes, out.destination).await {
                        tracing::debug!(target: "xcapd::sip", error = %e, to = %out.destination, "cannot send a SIP response");
                    }
                }
            }
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    endpoint: Arc<Endpoint>,
    config: TransportConfig,
    shutdown: watch::Receiver<bool>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let stop = stopped(shutdown.clone());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                if open.load(Ordering::Acquire) >= config.max_tcp_connections {
                    tracing::warn!(target: "xcapd::sip", %peer, "SIP TCP connection limit reached: closing");
                    continue;
                }
                open.fetch_add(1, Ordering::AcqRel);
                let (endpoint, open, shutdown) = (Arc::clone(&endpoint), Arc::clone(&open), shutdown.clone());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    tokio::select! {
                        () = stopped(shutdown) => {}
                        () = serve_connection(stream, peer, &endpoint, config) => {}
                    }
                    open.fetch_sub(1, Ordering::AcqRel);
                });
            }
        }
    }
}

/// One TCP connection: frames messages out of the byte stream (RFC 3261 §18.3).
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    endpoint: &Endpoint,
    config: TransportConfig,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        loop {
            // A CRLF CRLF ping alone in the buffer gets a CRLF pong (RFC 5626 §4.4.1).
            if buf.len() >= 4 && buf.iter().all(|b| *b == b'\r' || *b == b'\n') {
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    buf.clear();
                    if stream.write_all(b"\r\n").await.is_err() {
                        return;
                    }
                }
                break;
            }
            match frame(&buf, &config.limits) {
                Ok(Some(n)) => {
                    let message: Vec<u8> = buf.drain(..n).collect();
                    if let Some(out) =
                        endpoint.on_message(&message, peer, Transport::Tcp, Instant::now())
                    {
                        if stream.write_all(&out.bytes).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Unframeable: answer 400 if the head can be read, then close (the stream
                    // cannot be resynchronised).
                    if let Some(out) = endpoint.reject(&buf, &e, peer) {
                        let _ = stream.write_all(&out.bytes).await;
                    }
                    return;
                }
            }
        }
        let read = tokio::time::timeout(config.tcp_idle_timeout, stream.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
}
