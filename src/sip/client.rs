//! Requests xcapd sends (NOTIFY for the xcap-diff notifier, later MESSAGE for the IM Server),
//! each in a non-INVITE client transaction (RFC 3261 §17.1.2): a fresh branch in a Via naming
//! our address with `rport` (RFC 3581), responses matched by branch and method (§17.1.3),
//! Timer F giving up. Over UDP from the SIP socket with retransmissions on Timer E; over a TCP
//! or TLS connection the peer opened (a subscriber's flow, RFC 5626 §5 / RFC 5923 reuse), or a
//! TCP connection we open to a `transport=tcp` target, without. The caller awaits the outcome.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, Notify};

use super::header::{CSeq, UriTarget, Via};
use super::message::{Message, StartLine};
use super::transaction::{ClientAction, ClientTransaction, Timers};

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The final response.
    Final(Message),
    /// No final response within Timer F (RFC 3261 §8.1.3.1: treat as 408).
    Timeout,
}

struct Pending {
    tx: ClientTransaction,
    method: String,
    bytes: Vec<u8>,
    destination: SocketAddr,
    done: Option<oneshot::Sender<Outcome>>,
}

/// How a request leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A UDP datagram to this address.
    Udp(SocketAddr),
    /// On the open connection from this peer (its flow), if there still is one.
    Flow(SocketAddr),
    /// Over TCP (RFC 3261 §18.1.1, a `transport=tcp` URI): the open connection with this
    /// address, else a new one.
    Tcp(SocketAddr),
    /// Over TLS (RFC 3261 §26.2: a `sips:` or `transport=tls` URI), the certificate checked
    /// against this host name or address: an open TLS connection with the address, else a
    /// new one. Never in the clear.
    Tls(SocketAddr, String),
}

/// Opens a TCP connection to an address (over TLS, checking the certificate against the
/// name, when one is given) and serves it as the transport serves accepted ones (responses
/// and requests read from it); true once it is an open flow.
pub type Connector = Arc<
    dyn Fn(
            SocketAddr,
            Option<String>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
        + Send
        + Sync,
>;

/// The open TCP and TLS connections by peer address, for requests sent back on them.
#[derive(Default)]
pub struct Flows {
    open: Mutex<HashMap<SocketAddr, Flow>>,
}

/// One connection's outgoing queue and its Via transport token.
#[derive(Clone)]
pub struct Flow {
    pub queue: tokio::sync::mpsc::Sender<Vec<u8>>,
    /// `TCP` or `TLS` (RFC 3261 §20.42).
    pub transport: &'static str,
    /// For a TLS connection xcapd opened: the name the peer's certificate was verified for
    /// (RFC 5922 §7); a `sips:` request reuses only a connection verified for its host.
    /// `None` for accepted connections (the peer was not authenticated by certificate).
    pub verified_name: Option<String>,
}

impl Flows {
    pub fn open(&self, peer: SocketAddr, flow: Flow) {
        self.open.lock().insert(peer, flow);
    }

    /// The connection whose queue is `queue` closed (a newer one to the same peer stays).
    pub fn close(&self, peer: SocketAddr, queue: &tokio::sync::mpsc::Sender<Vec<u8>>) {
        let mut open = self.open.lock();
        if open.get(&peer).is_some_and(|f| f.queue.same_channel(queue)) {
            open.remove(&peer);
        }
    }

    fn get(&self, peer: SocketAddr) -> Option<Flow> {
        self.open.lock().get(&peer).cloned()
    }
}

/// The transactions by branch, and when each wants its timers run next (entries may be stale:
/// a popped one is checked against its transaction), so the driver touches only the due ones.
#[derive(Default)]
struct Table {
    pending: HashMap<String, Pending>,
    schedule: BTreeSet<(Instant, String)>,
}

impl Table {
    /// Schedules `branch` at its transaction's next wake; true when that is the earliest.
    fn schedule(&mut self, branch: &str) -> bool {
        let Some(at) = self.pending.get(branch).and_then(|p| p.tx.next_wake()) else {
            return false;
        };
        let earliest = self.schedule.first().is_none_or(|(first, _)| at < *first);
        self.schedule.insert((at, branch.to_string()));
        earliest
    }
}

/// Sends requests from the endpoint's UDP socket.
pub struct Client {
    socket: Arc<UdpSocket>,
    /// host[:port] of our Via (RFC 3261 §18.1.1 sent-by).
    sent_by: String,
    timers: Timers,
    table: Mutex<Table>,
    wake: Notify,
    /// Open TCP and TLS connections (peers' and ours).
    pub flows: Arc<Flows>,
    /// How connections are opened (set by the transport).
    connector: std::sync::OnceLock<Connector>,
    /// One connection attempt per peer at a time (many NOTIFYs to one next hop).
    connecting: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<()>>>>,
    /// Peers a connection to failed lately, and when: requests queued behind a failed attempt
    /// fail at once instead of each waiting out its own connect and handshake timeouts.
    unreachable: Mutex<HashMap<SocketAddr, Instant>>,
}

/// How long a failed connection attempt answers for its peer.
const UNREACHABLE_FOR: std::time::Duration = std::time::Duration::from_secs(5);

impl Client {
    /// A client on `socket` (shared with the server side, so responses arrive there and are
    /// handed in with [`Client::on_response`]). Spawn [`Client::drive`] once.
    /// `sent_by` defaults to the socket's address.
    pub fn new(
        socket: Arc<UdpSocket>,
        timers: Timers,
        sent_by: Option<String>,
    ) -> std::io::Result<Arc<Client>> {
        let sent_by = match sent_by {
            Some(s) => s,
            None => socket.local_addr()?.to_string(),
        };
        Ok(Arc::new(Client {
            socket,
            sent_by,
            timers,
            table: Mutex::new(Table::default()),
            wake: Notify::new(),
            flows: Arc::new(Flows::default()),
            connector: std::sync::OnceLock::new(),
            connecting: Mutex::new(HashMap::new()),
            unreachable: Mutex::new(HashMap::new()),
        }))
    }

    /// Sends `request` to `destination` over UDP and waits for its outcome.
    pub async fn request(&self, request: Message, destination: SocketAddr) -> Outcome {
        // A UDP route always sends.
        self.request_as(request, Route::Udp(destination), None)
            .await
            .unwrap_or(Outcome::Timeout)
    }

    /// Sends `request` to a target URI (RFC 3263 without SRV: its host and port, 5060 or 5061
    /// for SIPS): over TLS for a `sips:` URI or `transport=tls` (RFC 3261 §26.2), over TCP when
    /// the URI says `transport=tcp`, else UDP (RFC 3261 §18.1.1); `None` when the host does
    /// not resolve. No connection counts as a timeout.
    pub async fn request_to(&self, request: Message, target: &UriTarget) -> Option<Outcome> {
        self.request_to_as(request, target, None).await
    }

    /// [`Client::request_to`] with the caller's `branch` (see [`Client::request_as`]).
    pub async fn request_to_as(
        &self,
        request: Message,
        target: &UriTarget,
        branch: Option<String>,
    ) -> Option<Outcome> {
        let destination = resolve(target).await?;
        let transport = target.transport.as_deref().unwrap_or("");
        // §26.2.2: a sips: Request-URI goes over TLS on every hop, whatever the next hop says.
        let route = if target.tls() || is_sips(&request) {
            let name = target.host.trim_matches(['[', ']']).to_string();
            Route::Tls(destination, name)
        } else if transport.eq_ignore_ascii_case("tcp") {
            Route::Tcp(destination)
        } else {
            Route::Udp(destination)
        };
        Some(
            self.request_as(request, route, branch)
                .await
                .unwrap_or(Outcome::Timeout),
        )
    }

    /// Installs how TCP connections are opened (once; later calls are ignored).
    pub fn set_connector(&self, connector: Connector) {
        let _ = self.connector.set(connector);
    }

    /// The open connection with `peer`, else a new one; with `tls` (the name its certificate
    /// must carry) only a TLS connection will do.
    async fn connected(&self, peer: SocketAddr, tls: Option<String>) -> Option<Flow> {
        let usable = |flow: &Flow| match &tls {
            None => true,
            Some(name) => flow
                .verified_name
                .as_deref()
                .is_some_and(|v| v.eq_ignore_ascii_case(name)),
        };
        if let Some(flow) = self.flows.get(peer).filter(usable) {
            return Some(flow);
        }
        let connect = self.connector.get()?;
        let failed_lately = |c: &Client| {
            let mut unreachable = c.unreachable.lock();
            unreachable.retain(|_, at| at.elapsed() < UNREACHABLE_FOR);
            unreachable.contains_key(&peer)
        };
        if failed_lately(self) {
            return None;
        }
        let gate = Arc::clone(self.connecting.lock().entry(peer).or_default());
        let _turn = gate.lock().await;
        // Another request may have connected, or failed to, while this one waited.
        if self.flows.get(peer).filter(usable).is_none() {
            if failed_lately(self) {
                return None;
            }
            if !connect(peer, tls.clone()).await {
                self.unreachable.lock().insert(peer, Instant::now());
                self.connecting.lock().remove(&peer);
                return None;
            }
        }
        self.connecting.lock().remove(&peer);
        self.flows.get(peer).filter(usable)
    }

    /// Sends `request` by `route` and waits for its outcome (`None`: the flow is closed, or
    /// no connection could be opened). The top Via is set here.
    pub async fn request_via(&self, request: Message, route: Route) -> Option<Outcome> {
        self.request_as(request, route, None).await
    }

    /// [`Client::request_via`] with the caller's `branch` (magic cookie included) in the Via
    /// instead of a fresh one: a request sent again, even by the next run after a crash,
    /// stays one transaction for the peer (RFC 3261 §17.2.3), which answers it again instead
    /// of taking it twice. A branch already in use here gets a fresh one.
    pub async fn request_as(
        &self,
        mut request: Message,
        route: Route,
        branch: Option<String>,
    ) -> Option<Outcome> {
        let (destination, flow) = match route {
            Route::Udp(addr) => (addr, None),
            // A sips: request never leaves on a connection that is not TLS (§26.2.2).
            Route::Flow(peer) => (
                peer,
                Some(
                    self.flows
                        .get(peer)
                        .filter(|f| f.transport == "TLS" || !is_sips(&request))?,
                ),
            ),
            Route::Tcp(peer) => (peer, Some(self.connected(peer, None).await?)),
            Route::Tls(peer, name) => (peer, Some(self.connected(peer, Some(name)).await?)),
        };
        let branch = match branch {
            Some(b) if !self.table.lock().pending.contains_key(&b) => b,
            _ => new_branch(),
        };
        let method = match &request.start {
            StartLine::Request { method, .. } => method.as_str().to_string(),
            StartLine::Response { .. } => return Some(Outcome::Timeout),
        };
        let token = flow.as_ref().map_or("UDP", |f| f.transport);
        let via = format!("SIP/2.0/{token} {};branch={branch};rport", self.sent_by);
        let mut headers = super::message::Headers::new();
        headers.push("Via", via);
        for (n, v) in request.headers.iter() {
            if !n.eq_ignore_ascii_case("Via") {
                headers.push(n, v);
            }
        }
        request.headers = headers;
        let bytes = request.to_bytes();
        // Nothing but the bytes is kept while the answer is awaited (thousands may be).
        drop(request);
        let (done, outcome) = oneshot::channel();
        let (tx, _) = ClientTransaction::start_with(self.timers, flow.is_some(), Instant::now());
        let earliest = {
            let mut table = self.table.lock();
            table.pending.insert(
                branch.clone(),
                Pending {
                    tx,
                    method,
                    bytes: bytes.clone(),
                    destination,
                    done: Some(done),
                },
            );
            table.schedule(&branch)
        };
        if earliest {
            self.wake.notify_one();
        }
        match flow {
            // A full queue or a closed connection: Timer F ends the transaction.
            Some(flow) => {
                let _ = flow.queue.send(bytes).await;
            }
            None => {
                if let Err(e) = self.socket.send_to(&bytes, destination).await {
                    tracing::debug!(target: "xcapd::sip", error = %e, %destination, "cannot send a SIP request");
                }
                drop(bytes);
            }
        }
        Some(outcome.await.unwrap_or(Outcome::Timeout))
    }

    /// A response arrived on the socket: hands it to its transaction (§17.1.3: the top Via's
    /// branch and the CSeq method). Unmatched responses are dropped.
    pub fn on_response(&self, response: Message) {
        let Some(code) = response.status() else {
            return;
        };
        let branch = response
            .headers
            .get("Via")
            .and_then(Via::parse)
            .and_then(|v| v.branch().map(str::to_string));
        let method = response
            .headers
            .get("CSeq")
            .and_then(CSeq::parse)
            .map(|c| c.method.as_str().to_string());
        let (Some(branch), Some(method)) = (branch, method) else {
            return;
        };
        let mut table = self.table.lock();
        let Some(p) = table.pending.get_mut(&branch) else {
            return;
        };
        if p.method != method {
            return;
        }
        if let Some(ClientAction::Final(_)) = p.tx.on_response(code, Instant::now()) {
            if let Some(done) = p.done.take() {
                let _ = done.send(Outcome::Final(response));
            }
            // Completed (Timer K) absorbs answers only: the request is not sent again.
            p.bytes = Vec::new();
        }
        // Timer K now (or nothing): usually later than what is scheduled, so no wake-up.
        if table.schedule(&branch) {
            self.wake.notify_one();
        }
    }

    /// Runs the timers of the transactions that are due: retransmissions, timeouts, and
    /// forgetting completed ones. Runs until the task is dropped.
    pub async fn drive(self: Arc<Self>) {
        loop {
            let mut resend = Vec::new();
            let next = {
                let now = Instant::now();
                let mut table = self.table.lock();
                while let Some((at, branch)) = table.schedule.first().cloned() {
                    if at > now {
                        break;
                    }
                    table.schedule.pop_first();
                    let Some(p) = table.pending.get_mut(&branch) else {
                        continue;
                    };
                    match p.tx.poll(now) {
                        Some(ClientAction::Send) => resend.push((p.bytes.clone(), p.destination)),
                        Some(ClientAction::Timeout) => {
                            if let Some(done) = p.done.take() {
                                let _ = done.send(Outcome::Timeout);
                            }
                        }
                        _ => {}
                    }
                    if p.tx.next_wake().is_none() {
                        table.pending.remove(&branch);
                        super::release_spare(&mut table.pending);
                    } else {
                        table.schedule(&branch);
                    }
                }
                table.schedule.first().map(|(at, _)| *at)
            };
            for (bytes, destination) in resend {
                let _ = self.socket.send_to(&bytes, destination).await;
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    pub fn pending(&self) -> usize {
        self.table.lock().pending.len()
    }
}

/// The socket address of a target URI: its host (an address, or a name looked up) and port.
pub async fn resolve(target: &UriTarget) -> Option<SocketAddr> {
    // RFC 3263 §4.2 without SRV: 5061 for TLS, else 5060.
    let port = target
        .port
        .unwrap_or(if target.tls() { 5061 } else { 5060 });
    let host = target.host.trim_matches(['[', ']']).to_string();
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    let mut found = tokio::net::lookup_host((host.as_str(), port)).await.ok()?;
    found.next()
}

/// Whether `request`'s Request-URI is a `sips:` URI.
fn is_sips(request: &Message) -> bool {
    match &request.start {
        StartLine::Request { uri, .. } => uri
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("sips:")),
        StartLine::Response { .. } => false,
    }
}

/// A branch with the RFC 3261 magic cookie and 96 random bits.
fn new_branch() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No randomness: still unique within the process.
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        bytes[..8].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("z9hG4bK{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse, Headers, Limits, Method};
    use std::time::Duration;

    fn options() -> Message {
        let mut headers = Headers::new();
        headers.push("From", "<sip:xcapd@127.0.0.1>;tag=1");
        headers.push("To", "<sip:peer@127.0.0.1>");
        headers.push("Call-ID", "c1@127.0.0.1");
        headers.push("CSeq", "1 OPTIONS");
        headers.push("Max-Forwards", "70");
        Message {
            start: StartLine::Request {
                method: Method::Options,
                uri: "sip:peer@127.0.0.1".into(),
            },
            headers,
            body: Vec::new(),
        }
    }

    // RFC 3263 §4.2 (no SRV): 5061 for a sips: URI or ;transport=tls, else 5060; RFC 3261
    // §26.2.2: a sips: Request-URI is recognized whatever its case.
    #[tokio::test]
    async fn tls_targets_default_to_5061() {
        for (uri, port) in [
            ("sip:a@127.0.0.1", 5060),
            ("sip:a@127.0.0.1;transport=tcp", 5060),
            ("sip:a@127.0.0.1;transport=TLS", 5061),
            ("sips:a@127.0.0.1", 5061),
            ("sips:a@127.0.0.1:7000", 7000),
        ] {
            let target = UriTarget::parse(uri).unwrap();
            assert_eq!(resolve(&target).await.unwrap().port(), port, "{uri}");
        }
        let mut m = options();
        assert!(!is_sips(&m));
        m.start = StartLine::Request {
            method: Method::Options,
            uri: "SIPS:peer@127.0.0.1".into(),
        };
        assert!(is_sips(&m));
    }

    fn fast() -> Timers {
        Timers {
            t1: Duration::from_millis(40),
            t2: Duration::from_millis(320),
            t4: Duration::from_millis(100),
        }
    }

    /// A client on a UDP socket whose incoming responses are handed to it.
    // Many requests to one peer that cannot be reached: one connection attempt; those queued
    // behind it, and those coming soon after, fail at once (not a connect timeout each).
    #[tokio::test]
    async fn a_failed_connection_answers_for_its_peer_a_while() {
        let c = client().await;
        let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&attempts);
        c.set_connector(Arc::new(move |_, _| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                false
            })
        }));
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut all = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let c = Arc::clone(&c);
            all.spawn(async move { c.request_via(options(), Route::Tcp(peer)).await });
        }
        while let Some(outcome) = all.join_next().await {
            assert!(outcome.unwrap().is_none(), "no connection, no outcome");
        }
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(c.request_via(options(), Route::Tcp(peer)).await.is_none());
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    async fn client() -> Arc<Client> {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let client = Client::new(Arc::clone(&socket), fast(), None).unwrap();
        tokio::spawn(Arc::clone(&client).drive());
        let c = Arc::clone(&client);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                if let Ok(m) = parse(&buf[..n], &Limits::default()) {
                    c.on_response(m);
                }
            }
        });
        client
    }

    // RFC 3261 §17.1.2.2: retransmitted (Timer E) until the peer answers; the final response
    // is the outcome; the answer echoes our Via branch.
    #[tokio::test]
    async fn retransmits_until_answered() {
        let c = client().await;
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dest = peer.local_addr().unwrap();
        let waiter = {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.request(options(), dest).await })
        };
        let mut buf = vec![0u8; 65536];
        let mut copies = Vec::new();
        for _ in 0..3 {
            let (n, from) = peer.recv_from(&mut buf).await.unwrap();
            copies.push((parse(&buf[..n], &Limits::default()).unwrap(), from));
        }
        assert!(
            copies.windows(2).all(|w| w[0].0 == w[1].0),
            "the same request each time"
        );
        let (req, from) = &copies[0];
        let via = req.headers.get("Via").unwrap().to_string();
        assert!(
            via.contains(";branch=z9hG4bK") && via.contains(";rport"),
            "{via}"
        );
        let reply = format!(
            "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: <sip:xcapd@127.0.0.1>;tag=1\r\nTo: <sip:peer@127.0.0.1>;tag=2\r\nCall-ID: c1@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        peer.send_to(reply.as_bytes(), from).await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .unwrap()
            .unwrap();
        match outcome {
            Outcome::Final(m) => assert_eq!(m.status(), Some(200)),
            other => panic!("{other:?}"),
        }
        // Timer K forgets the transaction.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(c.pending(), 0);
    }

    // RFC 3261 §17.1.2.2: Timer F ends a request nobody answers; a response for another
    // branch or method is not ours.
    #[tokio::test]
    async fn times_out_and_ignores_foreign_responses() {
        let c = client().await;
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dest = peer.local_addr().unwrap();
        let started = Instant::now();
        let waiter = {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.request(options(), dest).await })
        };
        let mut buf = vec![0u8; 65536];
        let (n, from) = peer.recv_from(&mut buf).await.unwrap();
        let req = parse(&buf[..n], &Limits::default()).unwrap();
        let via = req
            .headers
            .get("Via")
            .unwrap()
            .replace("z9hG4bK", "z9hG4bKother");
        let foreign = format!(
            "SIP/2.0 200 OK\r\nVia: {via}\r\nCall-ID: c1@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        peer.send_to(foreign.as_bytes(), from).await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcome, Outcome::Timeout);
        assert!(started.elapsed() >= fast().t1 * 64);
        assert_eq!(c.pending(), 0);
    }
}
