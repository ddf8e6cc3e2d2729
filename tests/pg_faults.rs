//! The database of a node crashes under a write load (issue #15 scope 4): PostgreSQL is
//! stopped the way a crash stops it (`pg_ctl stop -m immediate`) while writers go on. Every
//! request is answered (no hang): 503 with Retry-After while the database is gone, never a 500
//! or internal text; the node serves again by itself once the database is back; and every
//! write acknowledged before, during or after is there. The test runs its own scratch cluster
//! (it must stop it). Built when the tests have PostgreSQL (cfg `xcapd_pg`).
#![cfg(xcapd_pg)]

mod common;
use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn scratch(args: &[&str]) -> String {
    let out = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/pg-scratch.sh"
        ))
        .args(args)
        .output()
        .expect("scripts/pg-scratch.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A scratch cluster, crashed and removed at the end.
struct Cluster(tempfile::TempDir);

impl Drop for Cluster {
    fn drop(&mut self) {
        scratch(&["stop", self.0.path().join("pg").to_str().unwrap()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_crash_under_load_loses_nothing_acknowledged() {
    let cluster = Cluster(tempfile::tempdir().unwrap());
    let pg = cluster.0.path().join("pg");
    let pg = pg.to_str().unwrap();
    let pg_port = free_port().to_string();
    let url = scratch(&["start", pg, &pg_port]);
    let port = free_port();
    let _node = KillOnDrop(
        xcapd_serve()
            .args(["--http", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(cluster.0.path().join("data"))
            .env("XCAPD_STORAGE", "postgres")
            .env("XCAPD_POSTGRES_URL", &url)
            .env("XCAPD_SIP", "127.0.0.1:0")
            .spawn()
            .unwrap(),
    );
    let root = format!("http://127.0.0.1:{port}/xcap-root");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    wait_ready(&http, &root).await;

    // Four writers, each PUTting new documents until told to stop; what was acknowledged.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let answers: Arc<Mutex<Vec<(u16, bool, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let (http, root) = (http.clone(), root.clone());
        let (acknowledged, answers, stop) = (acknowledged.clone(), answers.clone(), stop.clone());
        writers.spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let doc = format!("resource-lists/users/sip:w{w}@example.com/d{n}");
                let r = http
                    .put(format!("{root}/{doc}"))
                    .header("Content-Type", "application/resource-lists+xml")
                    .body(buddy_list(&["sip:x@example.com"]))
                    .send()
                    .await
                    .expect("every request is answered");
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let body = r.text().await.unwrap_or_default();
                if status == 201 {
                    acknowledged.lock().unwrap().push(doc);
                } else {
                    answers.lock().unwrap().push((status, retry_after, body));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
    }
    let acknowledged_count = || acknowledged.lock().unwrap().len();
    while acknowledged_count() < 50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    scratch(&["crash", pg]);
    let crashed_at = Instant::now();
    // While it is down, writes are refused with 503 (not 500, not a hang).
    while answers.lock().unwrap().is_empty() {
        assert!(
            crashed_at.elapsed() < Duration::from_secs(20),
            "no refusal while the database is down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_restart = acknowledged_count();
    scratch(&["start", pg, &pg_port]);
    // The node serves again by itself.
    let restarted = Instant::now();
    while acknowledged_count() < before_restart + 20 {
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "the node did not recover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    while writers.join_next().await.is_some() {}

    for (status, retry_after, body) in answers.lock().unwrap().iter() {
        assert_eq!(*status, 503, "{body}");
        assert!(retry_after, "503 with Retry-After");
        assert!(!body.contains("postgres"), "no internal text: {body}");
    }
    let all = acknowledged.lock().unwrap().clone();
    eprintln!(
        "{} writes acknowledged, {} refused while the database was down",
        all.len(),
        answers.lock().unwrap().len()
    );
    for doc in &all {
        let r = http.get(format!("{root}/{doc}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "acknowledged {doc} is gone");
    }
}
