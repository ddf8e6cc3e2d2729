//! Opening the sled document store (design §4): the format check and upgrade, the replay of
//! the journal a crash left, the repairs an unclean shutdown needs (per-user index, orphaned
//! body files), then the journal and change log started with their hooks.

use super::*;

pub(super) const FORMAT_KEY: &[u8] = b"format";
/// `-4`: the journal has change-log ops, so a binary without the change log must not open the
/// database. `-3` (body files), `-2` (journal, bodies in sled; still readable) and `-1` (no
/// journal) are upgraded on open; their earlier changes count as trimmed from the log.
const FORMAT_VERSION: &[u8] = b"xcapd-docs-4";
const FORMAT_VERSIONS_UPGRADED: [&[u8]; 3] = [b"xcapd-docs-3", b"xcapd-docs-2", b"xcapd-docs-1"];
impl SledStore {
    pub(super) fn from_db(
        db: sled::Db,
        path: &Path,
        opts: &SledOptions,
        temporary: Option<PathBuf>,
    ) -> Result<SledStore, StorageError> {
        let docs = db.open_tree("docs").map_err(from_sled)?;
        let by_user = db.open_tree("docs_by_user").map_err(from_sled)?;
        let bodies = db.open_tree("bodies").map_err(from_sled)?;
        let meta = db.open_tree("meta").map_err(from_sled)?;
        let changes_tree = db.open_tree("changes").map_err(from_sled)?;
        match meta.get(FORMAT_KEY).map_err(from_sled)? {
            Some(v) if v.as_ref() == FORMAT_VERSION => {}
            None => {
                meta.insert(FORMAT_KEY, FORMAT_VERSION).map_err(from_sled)?;
                db.flush().map_err(from_sled)?;
            }
            Some(v) if FORMAT_VERSIONS_UPGRADED.contains(&v.as_ref()) => {
                meta.insert(FORMAT_KEY, FORMAT_VERSION).map_err(from_sled)?;
                db.flush().map_err(from_sled)?;
            }
            Some(v) => {
                return Err(StorageError::Corrupt(format!(
                    "unsupported storage format {:?}",
                    String::from_utf8_lossy(&v)
                )))
            }
        }
        let files = BodyFiles::open(&path.join(BODIES_DIR)).map_err(|e| {
            StorageError::Backend(format!(
                "cannot open {}: {e}",
                path.join(BODIES_DIR).display()
            ))
        })?;
        let target = ApplyTarget {
            docs: docs.clone(),
            by_user: by_user.clone(),
            bodies: bodies.clone(),
            meta: meta.clone(),
            changes: changes_tree.clone(),
            files: Arc::new(files),
        };
        let journal_dir = path.join(JOURNAL_DIR);
        let records = journal::recover(&journal_dir)?;
        let clean = meta.get(STATE_KEY).map_err(from_sled)?.as_deref() == Some(STATE_CLOSED);
        if !records.is_empty() {
            target.replay(&records)?;
            tracing::info!(target: "xcapd::storage", records = records.len(), "replayed the write-ahead journal");
        }
        if !clean {
            let mended = repair_user_index(&docs, &by_user)?;
            if mended > 0 {
                tracing::warn!(target: "xcapd::storage", entries = mended, "repaired the per-user index after an unclean shutdown");
            }
            let live = live_body_files(&docs)?;
            match target.files.remove_orphans(&live) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(target: "xcapd::storage", files = n, "removed body files no document points at")
                }
                Err(e) => {
                    tracing::warn!(target: "xcapd::storage", error = %e, "cannot clean the body files")
                }
            }
        }
        meta.insert(STATE_KEY, STATE_OPEN).map_err(from_sled)?;
        // Replayed body files and sled durable before the journal that holds them goes.
        target.flush(&db)?;
        let last = decode_seq(meta.get(SEQ_KEY).map_err(from_sled)?.as_deref())?;
        let changes = Arc::new(SledChanges::open(
            changes_tree,
            meta.clone(),
            opts.change_retention,
            last,
        )?);
        let overlay = Arc::new(Mutex::new(Overlay {
            docs: HashMap::new(),
            next_seq: last,
            applied_seq: last,
        }));
        let checkpoint = {
            let (db, target) = (db.clone(), target.clone());
            Box::new(move || target.flush(&db).map_err(|e| e.to_string()))
        };
        let apply = {
            let target = target.clone();
            let overlay = Arc::clone(&overlay);
            let changes = Arc::clone(&changes);
            Box::new(move |records: &[journal::Record]| {
                target.replay(records).map_err(|e| e.to_string())?;
                let applied = {
                    let mut overlay = overlay.lock();
                    overlay.applied(records);
                    overlay.applied_seq
                };
                changes.applied(applied, now_ms());
                Ok(())
            })
        };
        let discard = {
            let overlay = Arc::clone(&overlay);
            Box::new(move || overlay.lock().discard())
        };
        let journal = Journal::start(
            &journal_dir,
            opts.journal_segment_bytes,
            opts.min_free_bytes,
            Hooks {
                checkpoint,
                apply,
                discard,
            },
        )?;
        Ok(SledStore {
            db,
            docs,
            by_user,
            bodies,
            meta,
            journal,
            journal_dir,
            damaged: AtomicBool::new(false),
            space: SpaceGuard::new(path, opts.min_free_bytes),
            overlay,
            target,
            changes,
            temporary,
        })
    }
}

/// After a crash sled may hold a document change whose index change it lost, or the
/// reverse, from a commit that never reached the journal (so was never acknowledged). Makes
/// `docs_by_user` exactly the index of the user documents in `docs`; returns the entries fixed.
fn repair_user_index(docs: &sled::Tree, by_user: &sled::Tree) -> Result<u64, StorageError> {
    let mut fixed = 0;
    for item in docs.iter() {
        let (k, v) = item.map_err(from_sled)?;
        let key = decode_doc_key(&k)?;
        let TreeKey::User(xui) = &key.tree else {
            continue;
        };
        let d = decode_doc(&v)?;
        let ikey = user_index_key(xui, &key.auid, &key.path);
        let want = encode_index(&d.etag, d.modified_ms, d.size())?;
        if by_user.get(&ikey).map_err(from_sled)?.as_deref() != Some(want.as_slice()) {
            by_user.insert(ikey, want).map_err(from_sled)?;
            fixed += 1;
        }
    }
    for item in by_user.iter() {
        let (k, _) = item.map_err(from_sled)?;
        let key = decode_user_index_key(&k)?;
        let pkey = doc_key_bytes(&key.auid, &key.tree, &key.path);
        if !docs.contains_key(pkey).map_err(from_sled)? {
            by_user.remove(k).map_err(from_sled)?;
            fixed += 1;
        }
    }
    Ok(fixed)
}

/// The body-file keys of every stored record whose body is a file (orphan cleanup).
fn live_body_files(docs: &sled::Tree) -> Result<Vec<Vec<u8>>, StorageError> {
    let mut live = Vec::new();
    for item in docs.iter() {
        let (k, v) = item.map_err(from_sled)?;
        let d = decode_doc(&v)?;
        if matches!(d.body, Body::File(_)) {
            live.push(body_files::file_key(&k, &d.etag));
        }
    }
    Ok(live)
}
