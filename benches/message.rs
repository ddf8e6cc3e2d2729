//! `xcapd-bench-message`: pager-mode MESSAGE under load (issue #14 benchmarks, BENCHMARKS.md
//! "IM Server"). Works against xcapd (development mode: the From URI is the sender) or any
//! SIP registrar-and-proxy (Kamailio as the ceiling): recipient UAs register on their own UDP
//! sockets and answer every MESSAGE 200 at once; a sender keeps a window of MESSAGEs in flight.
//! Loopback only; bounded in time.
//!
//! Usage:
//!   xcapd-bench-message --sip ADDR online [--recipients R] [--window W] [--duration SECS]
//!                       [--rate MSG_PER_SEC]
//!   xcapd-bench-message --sip ADDR store [--users U] [--messages N] [--window W] [--pid PID]
//!   xcapd-bench-message --sip ADDR hold [--users U] [--messages N] --pid PID
//! - `online`: R registered recipients (2), MESSAGEs round-robin to them with W (64) in flight
//!   for SECS (10): MESSAGE/s and latency percentiles (sent → final answer), non-2xx counted;
//!   with `--rate`, MESSAGEs are offered at that rate (open loop) instead of back to back;
//! - `store`: N (10,000) MESSAGEs to U (1,000) unregistered users, W in flight: stored/s (202s);
//!   then every user registers and the time until every message arrived is reported (each
//!   message once);
//! - `hold`: U users registered (and kept registered), then N messages stored for U other
//!   users who never register; reports the server's RSS (`--pid`), also 35 s later, once the
//!   burst's server transactions (Timer J) are gone.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::UdpSocket;

/// Sockets the sender and the receiving users share (users are told apart by Contact).
const SOCKETS: usize = 8;

struct Args {
    sip: SocketAddr,
    mode: String,
    recipients: usize,
    users: usize,
    messages: usize,
    window: usize,
    duration: u64,
    /// MESSAGEs per second offered (0: as fast as the window allows).
    rate: u64,
    pid: Option<u32>,
}

fn usage() -> ! {
    eprintln!("usage: xcapd-bench-message --sip ADDR (online|store|hold) [--recipients R] [--users U] [--messages N] [--window W] [--duration S] [--rate R] [--pid PID]");
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        sip: "127.0.0.1:5060".parse().unwrap_or_else(|_| usage()),
        mode: String::new(),
        recipients: 2,
        users: 1000,
        messages: 10_000,
        window: 64,
        duration: 10,
        rate: 0,
        pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--sip" => a.sip = v().parse().unwrap_or_else(|_| usage()),
            "--recipients" => a.recipients = v().parse().unwrap_or_else(|_| usage()),
            "--users" => a.users = v().parse().unwrap_or_else(|_| usage()),
            "--messages" => a.messages = v().parse().unwrap_or_else(|_| usage()),
            "--window" => a.window = v().parse().unwrap_or_else(|_| usage()),
            "--duration" => a.duration = v().parse().unwrap_or_else(|_| usage()),
            "--rate" => a.rate = v().parse().unwrap_or_else(|_| usage()),
            "--pid" => a.pid = Some(v().parse().unwrap_or_else(|_| usage())),
            "online" | "store" | "hold" => a.mode = k,
            _ => usage(),
        }
    }
    if a.mode.is_empty() {
        usage()
    }
    a
}

fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let head = text.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The shared sockets: answers to our requests resolve waiters by Call-ID; MESSAGEs to our
/// users are answered 200 and counted by body.
struct Net {
    sockets: Vec<Arc<UdpSocket>>,
    server: SocketAddr,
    waiting: Mutex<HashMap<String, tokio::sync::oneshot::Sender<u16>>>,
    received: Mutex<HashMap<String, usize>>,
    arrivals: AtomicUsize,
}

impl Net {
    async fn new(server: SocketAddr) -> Arc<Net> {
        let mut sockets = Vec::new();
        for _ in 0..SOCKETS {
            sockets.push(Arc::new(
                UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            ));
        }
        let net = Arc::new(Net {
            sockets,
            server,
            waiting: Mutex::new(HashMap::new()),
            received: Mutex::new(HashMap::new()),
            arrivals: AtomicUsize::new(0),
        });
        for k in 0..SOCKETS {
            tokio::spawn(Arc::clone(&net).receive(k));
        }
        net
    }

    fn local(&self, k: usize) -> SocketAddr {
        self.sockets[k % SOCKETS]
            .local_addr()
            .expect("local address")
    }

    async fn receive(self: Arc<Self>, k: usize) {
        let socket = Arc::clone(&self.sockets[k]);
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let call_id = header(&text, "Call-ID").unwrap_or("").to_string();
            if let Some(status) = text.strip_prefix("SIP/2.0 ") {
                let code: u16 = status.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                if code >= 200 {
                    if let Some(w) = self.waiting.lock().remove(&call_id) {
                        let _ = w.send(code);
                    }
                }
                continue;
            }
            if !text.starts_with("MESSAGE ") {
                continue;
            }
            let mut reply = String::from("SIP/2.0 200 OK\r\n");
            for line in text.split("\r\n\r\n").next().unwrap_or("").lines().skip(1) {
                let name = line
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                if ["via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"]
                    .contains(&name.as_str())
                {
                    reply.push_str(line);
                    if (name == "to" || name == "t") && !line.contains(";tag=") {
                        reply.push_str(";tag=r");
                    }
                    reply.push_str("\r\n");
                }
            }
            reply.push_str("Content-Length: 0\r\n\r\n");
            let _ = socket.send_to(reply.as_bytes(), from).await;
            let body = text
                .split_once("\r\n\r\n")
                .map_or("", |(_, b)| b)
                .to_string();
            *self.received.lock().entry(body).or_default() += 1;
            self.arrivals.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends `text` (its Call-ID `call_id`) from socket `k`; the final status (0: none in 10 s).
    async fn request(&self, k: usize, call_id: String, text: String) -> u16 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting.lock().insert(call_id.clone(), tx);
        let _ = self.sockets[k % SOCKETS]
            .send_to(text.as_bytes(), self.server)
            .await;
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(code)) => code,
            _ => {
                self.waiting.lock().remove(&call_id);
                0
            }
        }
    }

    async fn register(&self, user: usize, expires: u32) -> u16 {
        let k = user % SOCKETS;
        let local = self.local(k);
        let call_id = format!("reg{user}@bench");
        let text = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKr{user}x{expires};rport\r\nMax-Forwards: 70\r\nFrom: <sip:u{user}@example.com>;tag=r{user}\r\nTo: <sip:u{user}@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 REGISTER\r\nContact: <sip:u{user}@{local}>\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n"
        );
        self.request(k, call_id, text).await
    }

    async fn message(&self, n: u64, to: usize, body: &str) -> u16 {
        let k = (n as usize) % SOCKETS;
        let local = self.local(k);
        let call_id = format!("m{n}@bench");
        let text = format!(
            "MESSAGE sip:u{to}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKm{n};rport\r\nMax-Forwards: 70\r\nFrom: <sip:sender@example.com>;tag=s{n}\r\nTo: <sip:u{to}@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.request(k, call_id, text).await
    }
}

/// Sends `count` MESSAGEs (`to(i)`, body `body(i)`) with `window` in flight, or until
/// `until`; the statuses and latencies (µs).
#[allow(clippy::too_many_arguments)] // one per knob of the load
async fn send_all(
    net: &Arc<Net>,
    count: usize,
    window: usize,
    rate: u64,
    until: Option<Instant>,
    to: impl Fn(u64) -> usize + Send + Sync + 'static,
    body: impl Fn(u64) -> String + Send + Sync + 'static,
) -> (HashMap<u16, usize>, Vec<u64>) {
    let next = Arc::new(AtomicU64::new(0));
    let (to, body) = (Arc::new(to), Arc::new(body));
    let results = Arc::new(Mutex::new((HashMap::<u16, usize>::new(), Vec::new())));
    let mut workers = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..window {
        let (net, next, to, body, results) = (
            Arc::clone(net),
            Arc::clone(&next),
            Arc::clone(&to),
            Arc::clone(&body),
            Arc::clone(&results),
        );
        workers.spawn(async move {
            loop {
                if until.is_some_and(|u| Instant::now() >= u) {
                    return;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n as usize >= count {
                    return;
                }
                if rate > 0 {
                    let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let started = Instant::now();
                let code = net.message(n, to(n), &body(n)).await;
                let micros = started.elapsed().as_micros() as u64;
                let mut r = results.lock();
                *r.0.entry(code).or_default() += 1;
                r.1.push(micros);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let mut r = results.lock();
    (std::mem::take(&mut r.0), std::mem::take(&mut r.1))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn rss_kb(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn register_all(net: &Arc<Net>, users: std::ops::Range<usize>) {
    let mut set = tokio::task::JoinSet::new();
    let users: Vec<usize> = users.collect();
    for chunk in users.chunks(users.len().div_ceil(32).max(1)) {
        let (net, chunk) = (Arc::clone(net), chunk.to_vec());
        set.spawn(async move {
            for u in chunk {
                let code = net.register(u, 3600).await;
                assert_eq!(code, 200, "REGISTER of u{u}");
            }
        });
    }
    while set.join_next().await.is_some() {}
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let net = Net::new(a.sip).await;
    match a.mode.as_str() {
        "online" => {
            register_all(&net, 0..a.recipients).await;
            let until = Instant::now() + Duration::from_secs(a.duration);
            let started = Instant::now();
            let r = a.recipients;
            let (codes, mut lat) = send_all(
                &net,
                usize::MAX,
                a.window,
                a.rate,
                Some(until),
                move |n| n as usize % r,
                |n| format!("hello {n}"),
            )
            .await;
            let secs = started.elapsed().as_secs_f64();
            lat.sort_unstable();
            let ok: usize = codes
                .iter()
                .filter(|(c, _)| (200..300).contains(*c))
                .map(|(_, n)| n)
                .sum();
            println!(
                "online: {} MESSAGEs in {secs:.1} s = {:.0}/s delivered (2xx), p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; answers {codes:?}",
                lat.len(),
                ok as f64 / secs,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
                percentile(&lat, 0.999),
            );
        }
        "store" => {
            let users = a.users;
            let started = Instant::now();
            let (codes, mut lat) = send_all(
                &net,
                a.messages,
                a.window,
                0,
                None,
                move |n| n as usize % users,
                |n| format!("stored {n}"),
            )
            .await;
            let secs = started.elapsed().as_secs_f64();
            lat.sort_unstable();
            let stored = codes.get(&202).copied().unwrap_or(0);
            println!(
                "store: {} MESSAGEs to {users} offline users in {secs:.1} s = {:.0} stored/s (202), p50 {:.2} ms, p99 {:.2} ms; answers {codes:?}; RSS {:?} kB",
                lat.len(),
                stored as f64 / secs,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
                rss_kb(a.pid),
            );
            let started = Instant::now();
            register_all(&net, 0..users).await;
            let registered = started.elapsed().as_secs_f64();
            let deadline = Instant::now() + Duration::from_secs(300);
            while net.received.lock().len() < stored && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let got = net.received.lock().len();
            let twice = net.arrivals.load(Ordering::Relaxed) - got;
            println!(
                "forward: {users} users registered in {registered:.1} s; {got} of {stored} stored messages delivered {:.1} s after the first REGISTER ({:.0}/s), {twice} arrived more than once",
                started.elapsed().as_secs_f64(),
                got as f64 / started.elapsed().as_secs_f64(),
            );
        }
        "hold" => {
            let before = rss_kb(a.pid);
            register_all(&net, 0..a.users).await;
            let after_registered = rss_kb(a.pid);
            let offline = a.users;
            let (codes, _) = send_all(
                &net,
                a.messages,
                a.window,
                0,
                None,
                move |n| offline + n as usize % offline,
                |n| format!("kept {n}"),
            )
            .await;
            let just_after = rss_kb(a.pid);
            // Server transactions of the burst live Timer J (32 s) before they go.
            tokio::time::sleep(Duration::from_secs(35)).await;
            let after_stored = rss_kb(a.pid);
            let kb =
                |x: Option<u64>| x.map_or("?".into(), |v| format!("{:.1} MB", v as f64 / 1024.0));
            println!(
                "hold: RSS {} at start, {} with {} registered users, {} with {} messages stored too ({} right after the burst, its transactions still kept); answers {codes:?}",
                kb(before),
                kb(after_registered),
                a.users,
                kb(after_stored),
                a.messages,
                kb(just_after),
            );
            let unique: HashSet<String> = net.received.lock().keys().cloned().collect();
            assert!(unique.is_empty(), "nobody offline got anything");
        }
        _ => usage(),
    }
}
