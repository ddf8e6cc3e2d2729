//! `xcapd import openxcap` (issue #15 scope 5): users and documents of an OpenXCAP /
//! OpenSIPS deployment ([`crate::import_openxcap`]) into the configured store. Every document
//! is PUT through the XDMS as the operator (schema, constraints, new ETags, change events as
//! for a client's PUT: `xdms::operator`), users become credentials of realm = their domain.
//! Progress goes to standard error; the summary names each refused row with its reason.
//! With sled the server must be stopped (the data directory is locked); with PostgreSQL the
//! nodes may serve meanwhile.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, StorageBackend};
use crate::import_openxcap::{auid_of, Source, XcapRow};
use crate::storage::{now_ms, StorageError};
use crate::xdms::operator::{describe, put_document};
use crate::xdms::Xdms;

/// Where the incumbent's tables are.
#[derive(Debug, Clone)]
pub enum From {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Documents read and PUT per page (PUTs of a page run this many at once).
const PAGE: i64 = 500;
const PARALLEL: usize = 8;

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    pub documents: usize,
    pub users: usize,
    pub refused_documents: Vec<Refused>,
    pub refused_users: Vec<Refused>,
}

impl Summary {
    /// The lines printed at the end.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "imported {} documents and {} users; refused {} documents and {} users",
            self.documents,
            self.users,
            self.refused_documents.len(),
            self.refused_users.len()
        )];
        for (what, why) in &self.refused_users {
            out.push(format!("refused user {what}: {}", one_line(why)));
        }
        for (what, why) in &self.refused_documents {
            out.push(format!("refused document {what}: {}", one_line(why)));
        }
        out
    }
}

/// A reason on one line (an xcap-error body without its XML declaration).
fn one_line(why: &str) -> String {
    why.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("<?xml"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Imports users and documents from `from` into the store `config` names.
pub fn import_openxcap(config: &Config, from: &From) -> Result<Summary, String> {
    if config.storage.backend == StorageBackend::Memory {
        return Err(
            "storage.backend = \"memory\" keeps nothing: import into sled or postgres".into(),
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let source = match from {
            From::Sqlite(path) => Source::sqlite(path),
            From::Postgres(url) => Source::postgres(url).await,
        }
        .map_err(|e| e.to_string())?;
        let stores = crate::app::open_stores(config)
            .await
            .map_err(|e| e.to_string())?;
        let xdms = crate::app::offline_xdms(config, stores.documents.clone())
            .await
            .map_err(|e| e.to_string())?;
        let mut summary = Summary::default();
        import_users(&source, stores.credentials.as_ref(), &mut summary).await?;
        import_documents(&source, &xdms, config.root_path(), &mut summary).await?;
        stores.documents.flush().await.map_err(|e| e.to_string())?;
        Ok(summary)
    })
}

async fn import_users(
    source: &Source,
    credentials: &dyn crate::storage::credentials::CredentialStore,
    summary: &mut Summary,
) -> Result<(), String> {
    let Some(rows) = source.subscribers().await.map_err(|e| e.to_string())? else {
        eprintln!("no subscriber table: no users imported");
        return Ok(());
    };
    let now = now_ms();
    for row in rows {
        let who = format!("{}@{}", row.username, row.domain);
        let stored = match row.credential(now) {
            Ok(cred) => credentials.put_user(&cred).await.map_err(|e| match e {
                StorageError::PreconditionFailed => {
                    "a username of it belongs to another user".to_string()
                }
                other => other.to_string(),
            }),
            Err(why) => Err(why),
        };
        match stored {
            Ok(()) => summary.users += 1,
            Err(why) => summary.refused_users.push((who, why)),
        }
    }
    Ok(())
}

/// A refused row: what it was and why.
type Refused = (String, String);

/// One document PUT; `Err((what, why))` when refused.
async fn import_one(xdms: Arc<Xdms>, root: String, row: XcapRow) -> Result<(), Refused> {
    let what = format!(
        "{}@{} doc_type {} {}",
        row.username, row.domain, row.doc_type, row.doc_uri
    );
    let refuse = |why: String| Err((what.clone(), why));
    let Some(auid) = auid_of(row.doc_type) else {
        return refuse("no application usage of xcapd has this doc_type".into());
    };
    let xui = match row.xui() {
        Ok(xui) => xui,
        Err(why) => return refuse(why),
    };
    let Ok(body) = String::from_utf8(row.doc) else {
        return refuse("the document is not UTF-8".into());
    };
    match put_document(&xdms, &root, &xui, auid, &row.doc_uri, body).await {
        Ok((status, _)) if status < 300 => Ok(()),
        Ok((status, _)) => refuse(format!("answered {status}")),
        Err(e) => refuse(describe(&e)),
    }
}

async fn import_documents(
    source: &Source,
    xdms: &Arc<Xdms>,
    root: &str,
    summary: &mut Summary,
) -> Result<(), String> {
    let total = source.count_documents().await.map_err(|e| e.to_string())?;
    let mut progress = Progress::new(total);
    let mut after = 0;
    loop {
        let page = source
            .documents_after(after, PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let mut running = tokio::task::JoinSet::new();
        for row in page {
            if running.len() >= PARALLEL {
                settle(running.join_next().await, summary, &mut progress);
            }
            running.spawn(import_one(xdms.clone(), root.to_string(), row));
        }
        while let Some(done) = running.join_next().await {
            settle(Some(done), summary, &mut progress);
        }
    }
    progress.finish();
    Ok(())
}

fn settle(
    done: Option<Result<Result<(), Refused>, tokio::task::JoinError>>,
    summary: &mut Summary,
    progress: &mut Progress,
) {
    match done {
        Some(Ok(Ok(()))) => summary.documents += 1,
        Some(Ok(Err(refused))) => summary.refused_documents.push(refused),
        Some(Err(e)) => summary
            .refused_documents
            .push(("a document".into(), format!("import task: {e}"))),
        None => return,
    }
    progress.step();
}

/// Documents done out of the total, on standard error: one line redrawn on a terminal,
/// otherwise a line per tenth.
struct Progress {
    total: u64,
    done: u64,
    terminal: bool,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            total,
            done: 0,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn step(&mut self) {
        self.done += 1;
        let tenth = (self.total / 10).max(1);
        if self.terminal && (self.done.is_multiple_of(100) || self.done == self.total) {
            let width = 40;
            let filled = (self.done * width / self.total.max(1)).min(width) as usize;
            let bar = format!(
                "{}{}",
                "#".repeat(filled),
                " ".repeat(width as usize - filled)
            );
            let _ = write!(
                std::io::stderr(),
                "\r[{bar}] {}/{} documents",
                self.done,
                self.total
            );
        } else if !self.terminal && self.done.is_multiple_of(tenth) {
            eprintln!("{}/{} documents", self.done, self.total);
        }
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}
