//! `xcapd-bench-notify`: the xcap-diff notifier under load (issue #13 benchmarks, BENCHMARKS.md).
//! Holds many subscriptions over a few UDP sockets (each subscription its own dialog, Contact on
//! its socket), answers every NOTIFY 200, writes documents over HTTP at a fixed rate and reports
//! write → NOTIFY latency percentiles, missed changes and the server's RSS growth.
//! Development-mode server (the From URI is the subscriber). Loopback only; bounded in time.
//!
//! Usage:
//!   xcapd-bench-notify --sip ADDR --http ROOT_URL [--subscribers N] [--rate W]
//!                      [--duration SECS] [--pid PID] [--one-doc M] [--hold SECS]
//!                      [--settle SECS]
//! - default: N users with one resource-lists document each, one subscription per document;
//!   W writes/s round-robin over the documents for SECS; then every subscriber's last reported
//!   ETag is compared with the last acknowledged one;
//! - `--one-doc M`: M subscriptions to one document, one write, time until all M NOTIFYs;
//! - `--hold SECS`: subscribe, then only answer NOTIFYs for SECS (another tool writes);
//! - `--seed-only`: write the N documents and stop (a baseline with the same data);
//! - `--settle SECS` (35): wait after subscribing before the RSS is read (SIP transactions of
//!   the subscribe phase live 32 s) or, with `--one-doc`, before the write (the initial NOTIFY
//!   counts toward the notify interval).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};

const SOCKETS: usize = 8;

struct Args {
    sip: SocketAddr,
    http: String,
    subscribers: usize,
    rate: u64,
    duration: u64,
    pid: Option<u32>,
    one_doc: Option<usize>,
    hold: Option<u64>,
    settle: u64,
    seed_only: bool,
}

fn usage() -> ! {
    eprintln!("usage: xcapd-bench-notify --sip ADDR --http ROOT_URL [--subscribers N] [--rate W] [--duration S] [--pid PID] [--one-doc M] [--hold S] [--settle S] [--seed-only]");
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        sip: "127.0.0.1:5060".parse().unwrap_or_else(|_| usage()),
        http: String::new(),
        subscribers: 10_000,
        rate: 1000,
        duration: 10,
        pid: None,
        one_doc: None,
        hold: None,
        settle: 35,
        seed_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--sip" => a.sip = v().parse().unwrap_or_else(|_| usage()),
            "--http" => a.http = v(),
            "--subscribers" => a.subscribers = v().parse().unwrap_or_else(|_| usage()),
            "--rate" => a.rate = v().parse().unwrap_or_else(|_| usage()),
            "--duration" => a.duration = v().parse().unwrap_or_else(|_| usage()),
            "--pid" => a.pid = Some(v().parse().unwrap_or_else(|_| usage())),
            "--one-doc" => a.one_doc = Some(v().parse().unwrap_or_else(|_| usage())),
            "--hold" => a.hold = Some(v().parse().unwrap_or_else(|_| usage())),
            "--settle" => a.settle = v().parse().unwrap_or_else(|_| usage()),
            "--seed-only" => a.seed_only = true,
            _ => usage(),
        }
    }
    if a.http.is_empty() {
        usage()
    }
    a
}

/// What the receivers saw.
#[derive(Default)]
struct Seen {
    /// Subscription → ETags reported, in order.
    reported: HashMap<usize, Vec<String>>,
    /// ETag → when its NOTIFY arrived (first), and every arrival.
    notified_at: HashMap<String, Instant>,
    arrivals: HashMap<String, Vec<Instant>>,
    answered: HashMap<usize, u16>,
}

struct Bench {
    sockets: Vec<Arc<UdpSocket>>,
    sip: SocketAddr,
    seen: Mutex<Seen>,
    notifies: AtomicUsize,
}

fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let head = text.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn index_of(call_id: &str) -> Option<usize> {
    call_id.strip_prefix('b')?.split('@').next()?.parse().ok()
}

impl Bench {
    async fn receive(self: Arc<Self>, k: usize) {
        let socket = Arc::clone(&self.sockets[k]);
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let Some(i) = header(&text, "Call-ID").and_then(index_of) else {
                continue;
            };
            if let Some(status) = text.strip_prefix("SIP/2.0 ") {
                let code = status.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                self.seen.lock().answered.insert(i, code);
                continue;
            }
            if !text.starts_with("NOTIFY ") {
                continue;
            }
            let now = Instant::now();
            let mut reply = String::from("SIP/2.0 200 OK\r\n");
            for line in text.split("\r\n\r\n").next().unwrap_or("").lines().skip(1) {
                let name = line.split(':').next().unwrap_or("").trim();
                if ["via", "from", "to", "call-id", "cseq"]
                    .contains(&name.to_ascii_lowercase().as_str())
                {
                    reply.push_str(line);
                    reply.push_str("\r\n");
                }
            }
            reply.push_str("Content-Length: 0\r\n\r\n");
            let _ = socket.send_to(reply.as_bytes(), from).await;
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let mut seen = self.seen.lock();
            let mut rest = body;
            while let Some(p) = rest.find(" new-etag=\"") {
                rest = &rest[p + 11..];
                if let Some(etag) = rest.split('"').next() {
                    seen.notified_at.entry(etag.to_string()).or_insert(now);
                    seen.arrivals.entry(etag.to_string()).or_default().push(now);
                    seen.reported.entry(i).or_default().push(etag.to_string());
                }
            }
            drop(seen);
            self.notifies.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn subscribe(&self, i: usize, user: &str, doc: &str) -> (usize, String) {
        let k = i % SOCKETS;
        let local = self.sockets[k].local_addr().expect("bound");
        let body = format!("<?xml version=\"1.0\"?><resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list><entry uri=\"{doc}\"/></list></resource-lists>");
        let msg = format!(
            "SUBSCRIBE sip:{user} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKb{i}x{t};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}>;tag=f{i}\r\nTo: <sip:{user}>\r\nCall-ID: b{i}@bench\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:b@{local}>\r\nEvent: xcap-diff\r\nExpires: 3600\r\nContent-Type: application/resource-lists+xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len(),
            t = Instant::now().elapsed().as_nanos() % 1000,
        );
        (k, msg)
    }

    /// Subscribes `count` dialogs (user and document of each from `who`), resending any that
    /// got no answer, until each had its initial NOTIFY.
    async fn subscribe_all(&self, count: usize, who: impl Fn(usize) -> (String, String)) {
        let started = Instant::now();
        let mut pending: Vec<usize> = (0..count).collect();
        while !pending.is_empty() {
            for chunk in pending.chunks(500) {
                for &i in chunk {
                    let (user, doc) = who(i);
                    let (k, msg) = self.subscribe(i, &user, &doc);
                    let _ = self.sockets[k].send_to(msg.as_bytes(), self.sip).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let seen = self.seen.lock();
            pending
                .retain(|i| !seen.reported.contains_key(i) && seen.answered.get(i) != Some(&200));
            // An accepted subscription with an empty initial state has no ETag: counted by 200.
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "subscriptions not accepted: {} left",
                pending.len()
            );
        }
    }
}

/// One keep-alive HTTP/1.1 connection for PUTs.
struct Http {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Http {
    async fn connect(host: &str) -> Http {
        let s = TcpStream::connect(host).await.expect("HTTP connect");
        s.set_nodelay(true).ok();
        Http {
            stream: BufReader::new(s),
            host: host.to_string(),
        }
    }

    /// PUT; the ETag of a 2xx.
    async fn put(&mut self, path: &str, body: &str) -> Option<String> {
        let req = format!(
            "PUT {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/resource-lists+xml\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.stream.get_mut().write_all(req.as_bytes()).await.ok()?;
        let mut status = String::new();
        self.stream.read_line(&mut status).await.ok()?;
        let ok = status.split(' ').nth(1).is_some_and(|c| c.starts_with('2'));
        let (mut len, mut etag) = (0usize, None);
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).await.ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                match n.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "etag" => etag = Some(v.trim().trim_matches('"').to_string()),
                    _ => {}
                }
            }
        }
        let mut rest = vec![0u8; len];
        self.stream.read_exact(&mut rest).await.ok()?;
        if ok {
            etag
        } else {
            None
        }
    }
}

fn doc_body(n: u64) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"friends\"><entry uri=\"sip:v{n}@example.com\"/></list></resource-lists>")
}

fn rss_kb(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let a = args();
    let (host, root) = {
        let rest = a.http.strip_prefix("http://").unwrap_or_else(|| usage());
        let (h, p) = rest.split_once('/').unwrap_or((rest, ""));
        (h.to_string(), format!("/{p}"))
    };
    let mut sockets = Vec::new();
    for _ in 0..SOCKETS {
        let s = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a UDP socket");
        sockets.push(Arc::new(s));
    }
    let bench = Arc::new(Bench {
        sockets,
        sip: a.sip,
        seen: Mutex::new(Seen::default()),
        notifies: AtomicUsize::new(0),
    });
    for k in 0..SOCKETS {
        tokio::spawn(Arc::clone(&bench).receive(k));
    }
    let mut http = Http::connect(&host).await;

    if let Some(m) = a.one_doc {
        let path = format!("{root}/resource-lists/users/sip:hot@example.com/index");
        http.put(&path, &doc_body(0))
            .await
            .expect("seed the document");
        bench
            .subscribe_all(m, |_| {
                (
                    "hot@example.com".into(),
                    "resource-lists/users/sip:hot@example.com/index".into(),
                )
            })
            .await;
        // Past the notify interval (the initial NOTIFY counts, RFC 5875 §4.10).
        tokio::time::sleep(Duration::from_secs(a.settle)).await;
        let etag = http.put(&path, &doc_body(1)).await.expect("the write");
        let acked = Instant::now();
        let deadline = acked + Duration::from_secs(30);
        loop {
            let got = {
                let seen = bench.seen.lock();
                (0..m)
                    .filter(|i| seen.reported.get(i).and_then(|r| r.last()) == Some(&etag))
                    .count()
            };
            if got == m || Instant::now() > deadline {
                let mut at: Vec<Duration> = bench
                    .seen
                    .lock()
                    .arrivals
                    .get(&etag)
                    .map(|v| {
                        v.iter()
                            .map(|t| t.saturating_duration_since(acked))
                            .collect()
                    })
                    .unwrap_or_default();
                at.sort();
                println!(
                    "one document, {m} subscribers: {got}/{m} NOTIFYs with the new ETag, the last {:.1} ms after the write was acknowledged (p50 {:.1} ms, p90 {:.1} ms)",
                    acked.elapsed().as_secs_f64() * 1000.0,
                    percentile(&at, 0.5).as_secs_f64() * 1000.0,
                    percentile(&at, 0.9).as_secs_f64() * 1000.0,
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        return;
    }

    let n = a.subscribers;
    let user = |i: usize| format!("u{i}@example.com");
    let doc = |i: usize| format!("resource-lists/users/sip:u{i}@example.com/index");
    // Seed every document (4 connections).
    let t = Instant::now();
    let mut seeders = Vec::new();
    for c in 0..4 {
        let (host, root) = (host.clone(), root.clone());
        seeders.push(tokio::spawn(async move {
            let mut http = Http::connect(&host).await;
            for i in (c..n).step_by(4) {
                let path = format!("{root}/resource-lists/users/sip:u{i}@example.com/index");
                http.put(&path, &doc_body(0)).await.expect("seed");
            }
        }));
    }
    for s in seeders {
        s.await.expect("seeder");
    }
    eprintln!("seeded {n} documents in {:.1} s", t.elapsed().as_secs_f64());
    if a.seed_only {
        return;
    }
    let rss_before = rss_kb(a.pid);
    let t = Instant::now();
    bench.subscribe_all(n, |i| (user(i), doc(i))).await;
    let accepted_in = t.elapsed();
    // Past the SIP transactions' lifetimes (Timer J: 32 s), so the figure is the steady state.
    tokio::time::sleep(Duration::from_secs(a.settle)).await;
    let rss_after = rss_kb(a.pid);
    println!(
        "{n} subscriptions accepted in {:.1} s; server RSS {} → {} (+{} MB) {} s later",
        accepted_in.as_secs_f64(),
        rss_before.map_or("?".into(), |k| format!("{} MB", k / 1024)),
        rss_after.map_or("?".into(), |k| format!("{} MB", k / 1024)),
        match (rss_before, rss_after) {
            (Some(b), Some(a)) => format!("{:.1}", (a as f64 - b as f64) / 1024.0),
            _ => "?".into(),
        },
        a.settle
    );
    if let Some(hold) = a.hold {
        let before = bench.notifies.load(Ordering::Relaxed);
        println!("holding {n} subscriptions for {hold} s (READY)");
        tokio::time::sleep(Duration::from_secs(hold)).await;
        println!(
            "answered {} NOTIFYs while holding",
            bench.notifies.load(Ordering::Relaxed) - before
        );
        return;
    }

    // Writes at a fixed rate, round-robin over the documents, from 4 connections.
    let total = a.rate * a.duration;
    let acks: Arc<Mutex<Vec<(usize, String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut writers = Vec::new();
    for c in 0..4u64 {
        let (host, root, acks) = (host.clone(), root.clone(), Arc::clone(&acks));
        let rate = a.rate;
        writers.push(tokio::spawn(async move {
            let mut http = Http::connect(&host).await;
            let mut k = c;
            while k < total {
                let due = start + Duration::from_secs_f64(k as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                let i = (k as usize) % n;
                let path = format!("{root}/resource-lists/users/sip:u{i}@example.com/index");
                if let Some(etag) = http.put(&path, &doc_body(k + 1)).await {
                    acks.lock().push((i, etag, Instant::now()));
                }
                k += 4;
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let elapsed = start.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let acks = acks.lock().clone();
    let seen = bench.seen.lock();
    let mut latencies: Vec<Duration> = acks
        .iter()
        .filter_map(|(_, etag, at)| {
            seen.notified_at
                .get(etag)
                .map(|n| n.saturating_duration_since(*at))
        })
        .collect();
    latencies.sort();
    let mut last_acked: HashMap<usize, &String> = HashMap::new();
    for (i, etag, _) in &acks {
        last_acked.insert(*i, etag);
    }
    let missed = last_acked
        .iter()
        .filter(|(i, etag)| seen.reported.get(i).and_then(|r| r.last()) != Some(etag))
        .count();
    println!(
        "{} writes in {:.1} s ({:.0}/s) to {n} watched documents: {} NOTIFYs matched, write→NOTIFY p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; subscribers whose last reported ETag is not the stored one: {missed}",
        acks.len(),
        elapsed.as_secs_f64(),
        acks.len() as f64 / elapsed.as_secs_f64(),
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.9).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
}
