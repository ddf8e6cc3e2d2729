//! `xcapd-bench-decide`: the policy-decision benchmark of issue #4 (BENCHMARKS.md). Starts the
//! real server in process (sled in a temporary directory), stores a recipient with 50 IM rules
//! and two 1,000-entry external lists, measures in-process decisions, then serves HTTP so that
//! `xcapd-load` can drive `POST /policy/v1/im/decide` (it prints `READY <url>` and serves for
//! the given number of seconds).
//!
//!   xcapd-bench-decide [serve-seconds]

use std::time::{Duration, Instant};
use xcapd::config::{AuthMode, Config};
use xcapd::decision::DecideRequest;

const BOB: &str = "sip:bob@example.com";

fn lists() -> String {
    let mut s = String::from("<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\n");
    for name in ["blocked", "granted"] {
        s.push_str(&format!("<list name=\"{name}\">\n"));
        for i in 0..1000 {
            s.push_str(&format!("<entry uri=\"sip:{name}{i}@example.com\"/>\n"));
        }
        s.push_str("</list>\n");
    }
    s.push_str("</resource-lists>\n");
    s
}

fn rules(root: &str) -> String {
    let anc = |n: &str| {
        format!(
            "{root}/resource-lists/users/{BOB}/index/~~/resource-lists/list%5B@name=%22{n}%22%5D"
        )
    };
    let mut s = String::from(
        "<cp:ruleset xmlns:cp=\"urn:ietf:params:xml:ns:common-policy\" xmlns:ocp=\"urn:oma:xml:xdm:common-policy\" xmlns:im=\"urn:xcapd:xml:ns:im-rules\">\n",
    );
    for i in 0..47 {
        s.push_str(&format!(
            "<cp:rule id=\"r{i}\"><cp:conditions><cp:identity><cp:one id=\"sip:friend{i}@example.com\"/></cp:identity></cp:conditions><cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>\n"
        ));
    }
    s.push_str(&format!("<cp:rule id=\"blocked\"><cp:conditions><ocp:external-list><ocp:entry anc=\"{}\"/></ocp:external-list></cp:conditions><cp:actions><im:im-handling>block</im:im-handling></cp:actions></cp:rule>\n", anc("blocked")));
    s.push_str(&format!("<cp:rule id=\"granted\"><cp:conditions><ocp:external-list><ocp:entry anc=\"{}\"/></ocp:external-list></cp:conditions><cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>\n", anc("granted")));
    s.push_str("<cp:rule id=\"unlisted\"><cp:conditions><ocp:other-identity/></cp:conditions><cp:actions><im:im-handling>polite-block</im:im-handling></cp:actions></cp:rule>\n</cp:ruleset>\n");
    s
}

fn pct(sorted: &[u128], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let serve_secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("xcapd-bench-decide-{}", std::process::id()));
    let mut c = Config::default();
    c.server.http = "127.0.0.1:0"
        .parse()
        .unwrap_or_else(|_| std::process::exit(2));
    c.server.data_dir = dir.clone();
    c.sip.listen = "127.0.0.1:0".into();
    c.server.auth = AuthMode::Required;
    c.auth.trusted_peers = vec!["127.0.0.1/32".into()];
    c.log.level = "warn".into();
    c.admin.listen = "127.0.0.1:0".into();
    let running = xcapd::app::start(c).await.unwrap_or_else(|e| {
        eprintln!("start: {e}");
        std::process::exit(1)
    });
    let root = format!("http://{}/xcap-root", running.http_addr);
    let im = xcapd::storage::credentials::make_credential(
        "sip:im@example.com",
        "example.com",
        "unused",
        vec![xcapd::storage::credentials::Role::Service],
        0,
    );
    if let Err(e) = running.credentials.put_user(&im).await {
        eprintln!("credentials: {e}");
        std::process::exit(1)
    }
    let client_put = |url: String, ct: &'static str, body: String| async move {
        let mut s = tokio::net::TcpStream::connect(
            url.trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or(""),
        )
        .await
        .ok()?;
        let path = format!("/{}", url.splitn(4, '/').nth(3).unwrap_or(""));
        let req = format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nX-XCAP-Asserted-Identity: <{BOB}>\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out.lines().next().unwrap_or("").to_string())
    };
    println!(
        "{:?}",
        client_put(
            format!("{root}/resource-lists/users/{BOB}/index"),
            "application/resource-lists+xml",
            lists()
        )
        .await
    );
    println!(
        "{:?}",
        client_put(
            format!("{root}/im-rules/users/{BOB}/index"),
            "application/auth-policy+xml",
            rules(&root)
        )
        .await
    );

    let senders: Vec<String> = (0..1000)
        .map(|i| match i % 4 {
            0 => format!("sip:blocked{}@example.com", i % 1000),
            1 => format!("sip:granted{}@example.com", (i * 7) % 1000),
            2 => format!("sip:friend{}@example.com", i % 47),
            _ => format!("sip:stranger{i}@example.com"),
        })
        .collect();
    let svc = running.decisions.clone();
    let mut lat = Vec::with_capacity(20_000);
    let started = Instant::now();
    for i in 0..20_000 {
        let req = DecideRequest {
            recipient: BOB.into(),
            sender: Some(senders[i % senders.len()].clone()),
            media: Some("pager".into()),
            anonymous: false,
        };
        let t = Instant::now();
        let d = svc.decide(&req, 0).unwrap_or_else(|e| {
            eprintln!("decide: {e}");
            std::process::exit(1)
        });
        lat.push(t.elapsed().as_micros());
        std::hint::black_box(d);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "in-process decisions: n=20000 per_sec={:.0} p50_ms={:.3} p99_ms={:.3} (50 rules, two 1,000-entry external lists, one thread)",
        20_000.0 / secs,
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    if serve_secs > 0 {
        println!("READY http://{}/policy/v1/im/decide", running.http_addr);
        tokio::time::sleep(Duration::from_secs(serve_secs)).await;
    }
    let _ = running.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
