//! `xcapd-load`: a small closed-loop HTTP/1.1 load generator for the XCAP benchmarks
//! (BENCHMARKS.md). Each connection keeps one request in flight on a keep-alive socket; the
//! report gives throughput and latency percentiles. Loopback only; bounded by time or count.
//!
//! Usage:
//!   xcapd-load --url URL [--method GET|PUT|DELETE] [--body-file F | --body S]
//!              [--content-type T] [--header 'K: V']... [--connections N]
//!              [--duration SECS | --requests N] [--expect 200,201]
//! `{n}` in the URL or body is replaced by a request counter unique across connections;
//! `{n%M}` by that counter scattered over 0..M (a multiplicative hash: requests in a row read
//! keys far apart, as many users would);
//! `{c}` by the connection number. `--digest user:password` answers Digest challenges
//! (SHA-256, qop=auth) and then reuses the nonce with increasing nc, as real clients do.

use std::io::{Error, ErrorKind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Clone)]
struct Spec {
    digest: Option<(String, String)>,
    host_port: String,
    path: String,
    method: String,
    body: Option<String>,
    headers: Vec<String>,
    expect: Vec<u16>,
}

struct Shared {
    counter: AtomicU64,
    stop: AtomicBool,
    limit: Option<u64>,
}

fn usage() -> ! {
    eprintln!("usage: xcapd-load --url URL [--method M] [--body-file F|--body S] [--content-type T] [--header 'K: V'] [--connections N] [--duration S|--requests N] [--expect 200,201]");
    std::process::exit(2)
}

fn parse_args() -> (Spec, usize, Option<f64>, Option<u64>) {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut method = "GET".to_string();
    let mut body = None;
    let mut headers = Vec::new();
    let mut connections = 4;
    let mut duration = None;
    let mut requests = None;
    let mut expect = vec![200, 201, 304];
    let mut digest = None;
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--url" => url = Some(val()),
            "--method" => method = val(),
            "--body" => body = Some(val()),
            "--body-file" => {
                body = Some(std::fs::read_to_string(val()).unwrap_or_else(|e| {
                    eprintln!("cannot read body file: {e}");
                    std::process::exit(2)
                }))
            }
            "--content-type" => headers.push(format!("Content-Type: {}", val())),
            "--header" => headers.push(val()),
            "--connections" => connections = val().parse().unwrap_or_else(|_| usage()),
            "--duration" => duration = Some(val().parse().unwrap_or_else(|_| usage())),
            "--requests" => requests = Some(val().parse().unwrap_or_else(|_| usage())),
            "--digest" => {
                let v = val();
                let (u, p) = v.split_once(':').unwrap_or_else(|| usage());
                digest = Some((u.to_string(), p.to_string()));
            }
            "--expect" => {
                expect = val()
                    .split(',')
                    .filter_map(|s| s.trim().parse().ok())
                    .collect()
            }
            _ => usage(),
        }
    }
    let url = url.unwrap_or_else(|| usage());
    let rest = url.strip_prefix("http://").unwrap_or_else(|| usage());
    let (host_port, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    };
    if duration.is_none() && requests.is_none() {
        duration = Some(10.0);
    }
    (
        Spec {
            digest,
            host_port,
            path,
            method,
            body,
            headers,
            expect,
        },
        connections,
        duration,
        requests,
    )
}

/// Sends one request and reads the whole response; returns the status.
async fn exchange(
    stream: &mut BufReader<TcpStream>,
    spec: &Spec,
    path: &str,
    body: Option<&str>,
    auth: Option<&str>,
    challenge: &mut Option<String>,
) -> std::io::Result<u16> {
    let mut req = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        spec.method, path, spec.host_port
    );
    if let Some(a) = auth {
        req.push_str("Authorization: ");
        req.push_str(a);
        req.push_str("\r\n");
    }
    for h in &spec.headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    match body {
        Some(b) => req.push_str(&format!("Content-Length: {}\r\n\r\n{}", b.len(), b)),
        None => req.push_str("\r\n"),
    }
    stream.get_mut().write_all(req.as_bytes()).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, format!("bad status line {line:?}")))?;
    let mut len = 0usize;
    let mut chunked = false;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "connection closed"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
            {
                chunked = true;
            } else if k.eq_ignore_ascii_case("www-authenticate") && v.contains("SHA-256") {
                *challenge = Some(v.trim().to_string());
            }
        }
    }
    if spec.method == "HEAD" || status == 304 {
        return Ok(status);
    }
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            let mut buf = vec![0u8; size + 2];
            stream.read_exact(&mut buf).await?;
            if size == 0 {
                break;
            }
        }
    } else {
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await?;
    }
    Ok(status)
}

async fn connection(c: usize, spec: Spec, shared: Arc<Shared>) -> std::io::Result<(Vec<u32>, u64)> {
    let mut stream = BufReader::new(TcpStream::connect(&spec.host_port).await?);
    stream.get_ref().set_nodelay(true)?;
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut unexpected = 0u64;
    let mut challenges = 0u64;
    let mut digest = spec.digest.clone().map(|(user, password)| DigestState {
        user,
        password,
        realm: String::new(),
        nonce: String::new(),
        opaque: String::new(),
        nc: 0,
    });
    while !shared.stop.load(Ordering::Relaxed) {
        let n = shared.counter.fetch_add(1, Ordering::Relaxed);
        if shared.limit.is_some_and(|l| n >= l) {
            break;
        }
        let subst = |s: &str| {
            spread(s, n)
                .replace("{n}", &n.to_string())
                .replace("{c}", &c.to_string())
        };
        let path = subst(&spec.path);
        let body = spec.body.as_deref().map(subst);
        let t = Instant::now();
        let mut status = 0;
        for _ in 0..2 {
            let auth = digest
                .as_mut()
                .and_then(|d| d.authorization(&spec.method, &path));
            let mut challenge = None;
            status = match exchange(
                &mut stream,
                &spec,
                &path,
                body.as_deref(),
                auth.as_deref(),
                &mut challenge,
            )
            .await
            {
                Ok(s) => s,
                Err(_) => {
                    // Reconnect once after a dropped keep-alive connection.
                    stream = BufReader::new(TcpStream::connect(&spec.host_port).await?);
                    exchange(
                        &mut stream,
                        &spec,
                        &path,
                        body.as_deref(),
                        auth.as_deref(),
                        &mut challenge,
                    )
                    .await?
                }
            };
            match (status, challenge, digest.as_mut()) {
                (401, Some(c), Some(d)) => {
                    challenges += 1;
                    d.learn(&c);
                }
                _ => break,
            }
        }
        latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if !spec.expect.contains(&status) {
            unexpected += 1;
            if unexpected <= 3 {
                eprintln!("unexpected status {status} for {} {path}", spec.method);
            }
        }
    }
    if challenges > 1 {
        eprintln!("connection {c}: {challenges} digest challenges");
    }
    Ok((latencies, unexpected))
}

/// Client side of RFC 7616 (SHA-256, qop=auth) with nonce reuse.
struct DigestState {
    user: String,
    password: String,
    realm: String,
    nonce: String,
    opaque: String,
    nc: u32,
}

impl DigestState {
    fn learn(&mut self, challenge: &str) {
        let param = |name: &str| -> String {
            challenge
                .find(&format!("{name}=\""))
                .map(|i| &challenge[i + name.len() + 2..])
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        self.realm = param("realm");
        self.nonce = param("nonce");
        self.opaque = param("opaque");
        self.nc = 0;
    }

    fn authorization(&mut self, method: &str, uri: &str) -> Option<String> {
        if self.nonce.is_empty() {
            return None;
        }
        self.nc += 1;
        let h = |s: String| -> String {
            use sha2::Digest as _;
            sha2::Sha256::digest(s.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let nc = format!("{:08x}", self.nc);
        let cnonce = format!("{:x}", self.nc.wrapping_mul(2_654_435_761));
        let ha1 = h(format!("{}:{}:{}", self.user, self.realm, self.password));
        let ha2 = h(format!("{method}:{uri}"));
        let response = h(format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce));
        Some(format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm=SHA-256, qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\", opaque=\"{}\"",
            self.user, self.realm, self.nonce, self.opaque
        ))
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let (spec, connections, duration, requests) = parse_args();
    let shared = Arc::new(Shared {
        counter: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        limit: requests,
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        tasks.push(tokio::spawn(connection(c, spec.clone(), shared.clone())));
    }
    if let Some(d) = duration {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(d)).await;
            shared.stop.store(true, Ordering::Relaxed);
        });
    }
    let mut all = Vec::new();
    let mut unexpected = 0;
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok(Ok((l, u))) => {
                all.extend(l);
                unexpected += u;
            }
            Ok(Err(e)) => {
                eprintln!("connection failed: {e}");
                failed += 1;
            }
            Err(e) => {
                eprintln!("task failed: {e}");
                failed += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "requests={} seconds={:.2} rps={:.0} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} unexpected={} failed_connections={}",
        all.len(),
        elapsed,
        all.len() as f64 / elapsed,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        all.last().map(|&m| m as f64 / 1000.0).unwrap_or(0.0),
        unexpected,
        failed
    );
    if unexpected > 0 || failed > 0 {
        std::process::exit(1);
    }
}

/// Replaces each `{n%M}` in `s` with request `n` scattered over `0..M`.
fn spread(s: &str, n: u64) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("{n%") {
        let Some(end) = rest[at..].find('}') else {
            break;
        };
        match rest[at + 3..at + end].parse::<u64>() {
            Ok(m) if m > 0 => {
                out.push_str(&rest[..at]);
                let scattered = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
                out.push_str(&(scattered % m).to_string());
            }
            _ => out.push_str(&rest[..at + end + 1]),
        }
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    out
}
