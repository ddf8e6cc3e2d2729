//! Charging data records of the IM Server (the seed's Charging Entity; issue #14 scope 8):
//! the [`ChargingLog`] trait, a memory backend, and [`JsonlCharging`], JSON Lines files under
//! the data directory, one per UTC day (`charging/YYYY-MM-DD.jsonl`), appended by one writer
//! thread that syncs each batch to disk once (group commit) before the appends resolve.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use parking_lot::Mutex;
use serde::Serialize;

use super::subscriptions::StoreFuture;
use super::StorageError;

/// One record: a MESSAGE's outcome or one deferred delivery (fields documented in the
/// README, "Charging records").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChargingRecord {
    /// When, as an xs:dateTime in UTC; its date names the file.
    pub time: String,
    /// `message` (a MESSAGE answered) or `deferred-delivery` (a stored message's end).
    pub event: &'static str,
    pub sender: String,
    pub recipient: String,
    /// Body bytes.
    pub size: usize,
    pub content_type: String,
    /// delivered, stored, blocked, expired or failed.
    pub outcome: &'static str,
    /// The SIP status the sender got (or the recipient's UA answered, for deliveries).
    pub code: u16,
    /// The dispositions the sender asked for (RFC 5438), e.g. `["positive-delivery"]`.
    pub imdn_requested: Vec<&'static str>,
    /// The CPIM `imdn.Message-ID`, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub call_id: String,
}

/// Durable charging records. Every method resolves once its effect is durable.
pub trait ChargingLog: Send + Sync + 'static {
    fn append(&self, record: ChargingRecord) -> StoreFuture<'_, ()>;
    /// Records of one UTC day (`YYYY-MM-DD`) as JSON lines, skipping the first `skip`, at
    /// most `limit`.
    fn read(&self, day: String, skip: usize, limit: usize) -> StoreFuture<'_, Vec<String>>;
}

/// The file day of an xs:dateTime (`2026-12-07T10:00:00Z` → `2026-12-07`).
pub(super) fn day_of(time: &str) -> String {
    time.get(..10).unwrap_or("unknown").to_string()
}

pub(super) fn valid_day(day: &str) -> bool {
    day.len() == 10
        && day.bytes().enumerate().all(|(i, b)| {
            matches!((i, b), (4 | 7, b'-')) || (i != 4 && i != 7 && b.is_ascii_digit())
        })
}

pub(super) fn line_of(record: &ChargingRecord) -> Result<String, StorageError> {
    serde_json::to_string(record).map_err(|e| StorageError::Backend(e.to_string()))
}

/// Records in memory (tests, ephemeral deployments).
#[derive(Debug, Default)]
pub struct MemoryCharging {
    days: Mutex<BTreeMap<String, Vec<String>>>,
}

impl ChargingLog for MemoryCharging {
    fn append(&self, record: ChargingRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let line = line_of(&record)?;
            self.days
                .lock()
                .entry(day_of(&record.time))
                .or_default()
                .push(line);
            Ok(())
        })
    }

    fn read(&self, day: String, skip: usize, limit: usize) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let days = self.days.lock();
            let lines = days.get(&day).map_or(&[][..], Vec::as_slice);
            Ok(lines.iter().skip(skip).take(limit).cloned().collect())
        })
    }
}

struct Append {
    day: String,
    line: String,
    done: tokio::sync::oneshot::Sender<Result<(), StorageError>>,
}

/// JSON Lines files, one per day, under a directory.
pub struct JsonlCharging {
    dir: PathBuf,
    appends: Mutex<mpsc::Sender<Append>>,
}

/// Appends written per sync at most.
const BATCH: usize = 256;

impl JsonlCharging {
    /// Records under `dir` (created when missing).
    pub fn open(dir: &Path) -> Result<JsonlCharging, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Backend(e.to_string()))?;
        let (appends, queue) = mpsc::channel::<Append>();
        let writer_dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("xcapd-charging".into())
            .spawn(move || write_loop(&writer_dir, &queue))
            .map_err(|e| StorageError::Backend(format!("cannot start the charging writer: {e}")))?;
        Ok(JsonlCharging {
            dir: dir.to_path_buf(),
            appends: Mutex::new(appends),
        })
    }
}

/// The writer thread: appends a batch to the day files, syncs each file it touched once,
/// then resolves the batch.
fn write_loop(dir: &Path, queue: &mpsc::Receiver<Append>) {
    let mut open: Option<(String, std::fs::File)> = None;
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let mut result: Result<(), String> = Ok(());
        let mut touched = Vec::new();
        for a in &batch {
            if result.is_err() {
                break;
            }
            if open.as_ref().is_none_or(|(d, _)| *d != a.day) {
                if let Some((_, f)) = open.take() {
                    touched.push(f);
                }
                let path = dir.join(format!("{}.jsonl", a.day));
                match std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                {
                    Ok(f) => open = Some((a.day.clone(), f)),
                    Err(e) => result = Err(e.to_string()),
                }
            }
            if let Some((_, f)) = open.as_mut() {
                if let Err(e) = f.write_all(format!("{}\n", a.line).as_bytes()) {
                    result = Err(e.to_string());
                }
            }
        }
        for f in touched.iter().chain(open.as_ref().map(|(_, f)| f)) {
            if let Err(e) = f.sync_data() {
                result = Err(e.to_string());
            }
        }
        for a in batch {
            let _ = a.done.send(result.clone().map_err(StorageError::Backend));
        }
    }
}

impl ChargingLog for JsonlCharging {
    fn append(&self, record: ChargingRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let line = line_of(&record)?;
            let (done, result) = tokio::sync::oneshot::channel();
            let append = Append {
                day: day_of(&record.time),
                line,
                done,
            };
            let stopped = || StorageError::Backend("the charging writer stopped".into());
            self.appends.lock().send(append).map_err(|_| stopped())?;
            result.await.map_err(|_| stopped())?
        })
    }

    fn read(&self, day: String, skip: usize, limit: usize) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            if !valid_day(&day) {
                return Err(StorageError::InvalidKey(format!("bad day {day:?}")));
            }
            let path = self.dir.join(format!("{day}.jsonl"));
            tokio::task::spawn_blocking(move || {
                let file = match std::fs::File::open(path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(StorageError::Backend(e.to_string())),
                };
                std::io::BufReader::new(file)
                    .lines()
                    .skip(skip)
                    .take(limit)
                    .map(|l| l.map_err(|e| StorageError::Backend(e.to_string())))
                    .collect()
            })
            .await
            .map_err(|e| StorageError::Backend(e.to_string()))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time: &str, outcome: &'static str) -> ChargingRecord {
        ChargingRecord {
            time: time.into(),
            event: "message",
            sender: "sip:alice@example.com".into(),
            recipient: "sip:bob@example.com".into(),
            size: 5,
            content_type: "text/plain".into(),
            outcome,
            code: 200,
            imdn_requested: vec!["positive-delivery"],
            message_id: None,
            call_id: "c1".into(),
        }
    }

    async fn days_and_paging(log: &dyn ChargingLog) {
        log.append(record("2026-12-07T23:59:59Z", "delivered"))
            .await
            .unwrap();
        log.append(record("2026-12-08T00:00:00Z", "stored"))
            .await
            .unwrap();
        log.append(record("2026-12-08T00:00:01Z", "blocked"))
            .await
            .unwrap();
        let day = log.read("2026-12-08".into(), 0, 10).await.unwrap();
        assert_eq!(day.len(), 2);
        let v: serde_json::Value = serde_json::from_str(&day[0]).unwrap();
        assert_eq!(v["outcome"], "stored");
        assert_eq!(v["imdn_requested"][0], "positive-delivery");
        assert!(v.get("message_id").is_none());
        let rest = log.read("2026-12-08".into(), 1, 10).await.unwrap();
        assert_eq!(rest, day[1..]);
        assert_eq!(log.read("2026-12-07".into(), 0, 10).await.unwrap().len(), 1);
        assert!(log
            .read("2026-01-01".into(), 0, 10)
            .await
            .unwrap()
            .is_empty());
    }

    /// One file per UTC day, read back in order and in pages (issue #14 scope 8).
    #[tokio::test]
    async fn records_are_filed_by_day() {
        days_and_paging(&MemoryCharging::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let log = JsonlCharging::open(dir.path()).unwrap();
        days_and_paging(&log).await;
        assert!(dir.path().join("2026-12-08.jsonl").exists());
        assert!(log.read("../etc".into(), 0, 1).await.is_err());
    }

    /// The same on PostgreSQL (issue #15 scope 1).
    #[cfg(xcapd_pg)]
    #[tokio::test]
    async fn records_are_filed_by_day_on_postgres() {
        let log = crate::storage::pg_records::PgCharging::new(crate::storage::pg_test::db());
        days_and_paging(&log).await;
        assert!(log.read("../etc".into(), 0, 1).await.is_err());
    }
}
