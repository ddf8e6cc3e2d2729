//! What the two sled backends (documents, credentials) share: sled error mapping, the
//! transaction result type, and a cursor over stored records in which every short read or bad
//! string is reported as corruption, never a panic.

use super::StorageError;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// Opens a sled database, waiting up to 2 s while the directory lock is held. Within one process
/// sled releases the lock of a dropped database from a background thread, so a reopen right
/// after a close can find it still taken; another process holding it still fails after the
/// wait.
pub(crate) fn open_waiting(config: &sled::Config) -> sled::Result<sled::Db> {
    let mut waited = 0;
    loop {
        match config.open() {
            Err(e) if waited < 40 && e.to_string().contains("could not acquire lock") => {
                waited += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// sled 0.34 deadlocks when a transaction or batch (which take sled's process-wide write lock)
/// queues while a flush holds sled's read lock and waits for sled's log flusher thread, which
/// cannot take the read lock behind the queued writer (found under concurrent SUBSCRIBEs with
/// gdb: issue #13). So every flush and every multi-tree transaction of ours passes this gate:
/// transactions one at a time and never during a flush; flushes together. Nothing nests.
static SLED_GATE: parking_lot::RwLock<()> = parking_lot::const_rwlock(());

/// Runs `f` (a sled transaction) when no flush of ours is running; on a multi-threaded runtime
/// the worker's other tasks move elsewhere while it waits.
pub(crate) fn exclusively<T>(f: impl FnOnce() -> T) -> T {
    super::off_runtime(|| {
        let _gate = SLED_GATE.write();
        f()
    })
}

/// Runs `f` holding the gate alone (blocking; for threads that may block).
pub(crate) fn with_gate_exclusive<T>(f: impl FnOnce() -> T) -> T {
    let _gate = SLED_GATE.write();
    f()
}

/// `db.flush()` through the gate (blocking; for threads that may block).
pub(crate) fn flush_gated(db: &sled::Db) -> Result<usize, StorageError> {
    let _gate = SLED_GATE.read();
    db.flush().map_err(from_sled)
}

/// `db.flush()` through the gate on a blocking thread when there is a runtime.
pub(crate) async fn flush_gated_async(db: &sled::Db) -> Result<(), StorageError> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let db = db.clone();
            runtime
                .spawn_blocking(move || flush_gated(&db))
                .await
                .map_err(|e| StorageError::Backend(format!("flush task: {e}")))?
                .map(drop)
        }
        Err(_) => flush_gated(db).map(drop),
    }
}

pub(crate) fn from_sled(e: sled::Error) -> StorageError {
    match e {
        sled::Error::Corruption { .. } => StorageError::Corrupt(e.to_string()),
        other => StorageError::Backend(other.to_string()),
    }
}

pub(crate) fn from_tx(e: TransactionError<StorageError>) -> StorageError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => from_sled(e),
    }
}

pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<StorageError>>;

pub(crate) fn abort<T>(e: StorageError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

pub(crate) fn utf8(bytes: &[u8], what: &str) -> Result<String, StorageError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| StorageError::Corrupt(format!("{what}: bad UTF-8")))
}

/// Cursor over a stored record.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], StorageError> {
        if self.0.len() < n {
            return Err(StorageError::Corrupt("truncated record".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, StorageError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, StorageError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, StorageError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    /// A u32 length followed by that many bytes of UTF-8.
    pub(crate) fn string(&mut self, what: &str) -> Result<String, StorageError> {
        let len = self.u32()? as usize;
        utf8(self.take(len)?, what)
    }
}

impl Reader<'_> {
    /// A flag byte (0: absent) followed, when present, by a string.
    pub(crate) fn opt_string(&mut self, what: &str) -> Result<Option<String>, StorageError> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.string(what).map(Some),
        }
    }

    /// A u32 length followed by that many bytes.
    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, StorageError> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }
}

/// A length as stored (u32): longer fields cannot be stored.
pub(crate) fn len32(n: usize) -> Result<u32, StorageError> {
    u32::try_from(n).map_err(|_| StorageError::Backend("record field over 4 GiB".into()))
}

/// Writes a u32 length and the bytes ([`Reader::bytes`], [`Reader::string`] read them).
pub(crate) fn push_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), StorageError> {
    out.extend_from_slice(&len32(b.len())?.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

/// Writes an optional string ([`Reader::opt_string`] reads it).
pub(crate) fn push_opt(out: &mut Vec<u8>, s: Option<&str>) -> Result<(), StorageError> {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            push_bytes(out, s.as_bytes())?;
        }
    }
    Ok(())
}
