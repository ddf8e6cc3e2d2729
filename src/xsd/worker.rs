//! The libxml worker thread of the XSD adapter: compiles every main schema once on its own
//! thread (libxml schema objects are neither `Send` nor `Sync`, design §6), then serves
//! validation jobs (RFC 4825 §8.2.5/§15: a document must be valid against the application
//! usage's schema) from a shared queue, each inside `catch_unwind`.

use std::collections::HashMap;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use libxml::bindings;

use super::loader::{self, Diagnostic, FileMap, Level, ServeGuard};
use super::XsdError;

/// Virtual base URL of the schema files: not a path on disk nor a network scheme, so a
/// relative `schemaLocation` resolves to `xcapd-schema:/<name>`, which only our loader serves.
const SCHEMA_BASE: &str = "xcapd-schema:/";

/// Parser options for instance documents: no recovery, no network, no entity substitution
/// (`XML_PARSE_NOENT` absent), no DTD loading (`XML_PARSE_DTDLOAD` absent); big line numbers
/// so errors past line 65535 still carry the right line.
const DOCUMENT_PARSE_OPTIONS: i32 = (bindings::xmlParserOption_XML_PARSE_NONET
    | bindings::xmlParserOption_XML_PARSE_BIG_LINES) as i32;

/// Where the answer to a job goes.
pub(super) enum Reply {
    Async(tokio::sync::oneshot::Sender<Result<(), XsdError>>),
    Blocking(mpsc::SyncSender<Result<(), XsdError>>),
}

impl Reply {
    /// True when nobody waits for the answer any more (e.g. the HTTP request was dropped).
    fn is_abandoned(&self) -> bool {
        match self {
            Reply::Async(tx) => tx.is_closed(),
            Reply::Blocking(_) => false,
        }
    }

    fn send(self, result: Result<(), XsdError>) {
        // A dropped receiver only means the caller went away; nothing to do about it.
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// What a job asks the worker to do.
pub(super) enum Task {
    /// Validate `document` against the schema of the key at `key_index`.
    Validate {
        key_index: usize,
        document: Arc<str>,
    },
    /// Test hook: panic inside the job, to prove the worker survives it.
    #[cfg(test)]
    Panic,
}

impl Task {
    /// Bytes of the document the job handles.
    fn size(&self) -> usize {
        match self {
            Task::Validate { document, .. } => document.len(),
            #[cfg(test)]
            Task::Panic => 0,
        }
    }
}

pub(super) struct Job {
    pub task: Task,
    pub reply: Reply,
}

/// What every worker needs to start.
pub(super) struct Setup {
    pub files: FileMap,
    /// Main schema file name for each key index.
    pub mains: Arc<Vec<String>>,
    pub jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    pub ready: mpsc::SyncSender<Result<(), XsdError>>,
}

/// Body of a worker thread: compile, report readiness, then serve jobs until every
/// `Validator` clone (and so every job sender) is gone.
pub(super) fn run(setup: Setup) {
    loader::init_thread();
    let compiled = catch_unwind(AssertUnwindSafe(|| compile_all(&setup.files, &setup.mains)))
        .unwrap_or(Err(XsdError::Panicked));
    let schemas = match compiled {
        Ok(schemas) => {
            if setup.ready.send(Ok(())).is_err() {
                return;
            }
            schemas
        }
        Err(e) => {
            let _ = setup.ready.send(Err(e));
            return;
        }
    };
    drop(setup.ready);

    loop {
        let job = {
            // The lock is only held around `recv`, which cannot panic, so poisoning is
            // harmless: keep serving with the inner receiver.
            let queue = setup.jobs.lock().unwrap_or_else(|p| p.into_inner());
            queue.recv()
        };
        let Ok(job) = job else { return };
        if job.reply.is_abandoned() {
            continue;
        }
        let large = job.task.size() >= crate::alloc::LARGE_BODY_BYTES;
        let result = catch_unwind(AssertUnwindSafe(|| perform(&schemas, job.task)))
            .unwrap_or(Err(XsdError::Panicked));
        // Whatever a panicking job left behind must not leak into the next one.
        loader::take_diagnostics();
        job.reply.send(result);
        if large {
            crate::alloc::release_freed_memory();
        }
    }
}

fn perform(schemas: &[Rc<Schema>], task: Task) -> Result<(), XsdError> {
    match task {
        Task::Validate {
            key_index,
            document,
        } => match schemas.get(key_index) {
            Some(schema) => schema.validate(&document),
            None => Err(XsdError::UnknownKey(key_index.to_string())),
        },
        #[cfg(test)]
        Task::Panic => panic!("injected test panic"),
    }
}

/// Inline validation: each thread compiles a schema the first time it validates against it
/// and keeps it in thread-local storage, keyed by the `Inline` it belongs to (tests run several
/// validators with different schema sets on one thread).
pub(super) struct Inline {
    id: u64,
    files: FileMap,
    mains: Arc<Vec<String>>,
}

thread_local! {
    /// Inline id -> schema per key index, compiled on first use on this thread.
    static LOCAL: std::cell::RefCell<HashMap<u64, Vec<Option<Schema>>>> =
        std::cell::RefCell::new(HashMap::new());
    static THREAD_READY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Inline {
    pub(super) fn new(files: FileMap, mains: Arc<Vec<String>>) -> Inline {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Inline {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            files,
            mains,
        }
    }

    /// Validates on this thread, compiling the schema here first if needed.
    pub(super) fn validate(&self, key_index: usize, document: &str) -> Result<(), XsdError> {
        if !THREAD_READY.get() {
            loader::init_thread();
            THREAD_READY.set(true);
        }
        let result = LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            let schemas = local
                .entry(self.id)
                .or_insert_with(|| (0..self.mains.len()).map(|_| None).collect());
            let slot = schemas
                .get_mut(key_index)
                .ok_or_else(|| XsdError::UnknownKey(key_index.to_string()))?;
            catch_unwind(AssertUnwindSafe(|| {
                if slot.is_none() {
                    *slot = Some(Schema::compile(&self.files, &self.mains[key_index])?);
                }
                match slot {
                    Some(schema) => schema.validate(document),
                    None => Err(XsdError::Panicked),
                }
            }))
            .unwrap_or(Err(XsdError::Panicked))
        });
        // Whatever a panicking job left behind must not leak into the next one.
        loader::take_diagnostics();
        result
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        // This thread's copies go now; other threads' copies go when those threads end.
        let _ = LOCAL.try_with(|local| {
            if let Ok(mut local) = local.try_borrow_mut() {
                local.remove(&self.id);
            }
        });
    }
}

/// Compiles each distinct main schema once; returns one handle per key index.
fn compile_all(files: &FileMap, mains: &[String]) -> Result<Vec<Rc<Schema>>, XsdError> {
    let mut by_file: HashMap<&str, Rc<Schema>> = HashMap::new();
    let mut schemas = Vec::with_capacity(mains.len());
    for main in mains {
        let schema = match by_file.get(main.as_str()) {
            Some(s) => Rc::clone(s),
            None => {
                let s = Rc::new(Schema::compile(files, main)?);
                by_file.insert(main, Rc::clone(&s));
                s
            }
        };
        schemas.push(schema);
    }
    Ok(schemas)
}

/// A compiled schema (`xmlSchema`), owned by the thread that compiled it.
struct Schema {
    raw: bindings::xmlSchemaPtr,
}

impl Drop for Schema {
    fn drop(&mut self) {
        // SAFETY: `raw` came from xmlSchemaParse, is non-null and freed only here.
        unsafe { bindings::xmlSchemaFree(self.raw) }
    }
}

/// Frees an `xmlSchemaParserCtxt` on every exit path.
struct ParserCtxt(bindings::xmlSchemaParserCtxtPtr);
impl Drop for ParserCtxt {
    fn drop(&mut self) {
        // SAFETY: non-null pointer from xmlSchemaNewParserCtxt, freed only here.
        unsafe { bindings::xmlSchemaFreeParserCtxt(self.0) }
    }
}

/// Frees an `xmlSchemaValidCtxt` on every exit path.
struct ValidCtxt(bindings::xmlSchemaValidCtxtPtr);
impl Drop for ValidCtxt {
    fn drop(&mut self) {
        // SAFETY: non-null pointer from xmlSchemaNewValidCtxt, freed only here.
        unsafe { bindings::xmlSchemaFreeValidCtxt(self.0) }
    }
}

/// Frees an `xmlDoc` on every exit path.
struct Doc(bindings::xmlDocPtr);
impl Drop for Doc {
    fn drop(&mut self) {
        // SAFETY: non-null pointer from xmlReadMemory, freed only here.
        unsafe { bindings::xmlFreeDoc(self.0) }
    }
}

/// Name of the schema file a diagnostic points at, when it is one of ours.
fn diagnostic_file<'a>(d: &'a Diagnostic, files: &FileMap) -> Option<&'a str> {
    let name = loader::last_component(d.file.as_deref()?);
    files.contains_key(name).then_some(name)
}

fn compile_error(file: &str, message: String) -> XsdError {
    XsdError::Compile {
        file: file.to_owned(),
        message,
    }
}

impl Schema {
    /// Compiles `main` and everything it imports or includes, from memory only.
    ///
    /// Besides libxml's errors, an import libxml could not locate is fatal here: libxml only
    /// warns and skips it, but design §5 requires `schemas/` to hold every imported schema.
    fn compile(files: &FileMap, main: &str) -> Result<Schema, XsdError> {
        if !files.contains_key(main) {
            return Err(compile_error(main, "not among the schema files".into()));
        }
        let url = CString::new(format!("{SCHEMA_BASE}{main}"))
            .map_err(|_| compile_error(main, "file name contains NUL".into()))?;

        let _serve = ServeGuard::new(Arc::clone(files));
        loader::take_diagnostics();
        loader::take_refused();

        // SAFETY: `url` outlives the call; libxml copies it.
        let pctxt = unsafe { bindings::xmlSchemaNewParserCtxt(url.as_ptr()) };
        if pctxt.is_null() {
            return Err(compile_error(main, "cannot create a schema parser".into()));
        }
        let pctxt = ParserCtxt(pctxt);
        // SAFETY: valid parser context; the document is loaded through our entity loader.
        let raw = unsafe { bindings::xmlSchemaParse(pctxt.0) };
        drop(pctxt);
        let schema = (!raw.is_null()).then_some(Schema { raw });

        let diagnostics = loader::take_diagnostics();
        let refused = loader::take_refused();
        let fatal: Vec<&Diagnostic> = diagnostics
            .iter()
            .filter(|d| {
                d.level >= Level::Error
                    || d.code == bindings::xmlParserErrors_XML_SCHEMAP_WARN_UNLOCATED_SCHEMA as i32
            })
            .collect();
        if let (Some(schema), true) = (schema, fatal.is_empty()) {
            return Ok(schema);
        }

        let file = fatal
            .first()
            .and_then(|d| diagnostic_file(d, files))
            .unwrap_or(main);
        let mut message = fatal
            .iter()
            .take(5)
            .map(|d| {
                let at = diagnostic_file(d, files).unwrap_or(main);
                match d.line {
                    Some(line) => format!("{at}:{line}: {}", d.message),
                    None => format!("{at}: {}", d.message),
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        if message.is_empty() {
            message = "libxml could not compile the schema".into();
        }
        if !refused.is_empty() {
            message.push_str(&format!(
                " (refused to load: {}; only files in schemas/ are served)",
                refused.join(", ")
            ));
        }
        if file != main {
            message.push_str(&format!(" (while compiling {main})"));
        }
        Err(compile_error(file, message))
    }

    /// Parses `document` (no recovery, nothing external) and validates it against this schema.
    fn validate(&self, document: &str) -> Result<(), XsdError> {
        loader::take_diagnostics();
        let len = i32::try_from(document.len()).map_err(|_| XsdError::Invalid {
            message: "document too large to validate".into(),
            line: None,
            all: Vec::new(),
        })?;

        // SAFETY: the buffer is valid for `len` bytes during the call; libxml copies what it
        // keeps. URL and encoding may be null (the bytes are UTF-8 or declare their encoding).
        let doc = unsafe {
            bindings::xmlReadMemory(
                document.as_ptr().cast(),
                len,
                ptr::null(),
                ptr::null(),
                DOCUMENT_PARSE_OPTIONS,
            )
        };
        let doc = (!doc.is_null()).then_some(Doc(doc));
        // libxml returns a document despite namespace errors (e.g. an undeclared prefix):
        // any error-level diagnostic makes the document unacceptable.
        let parse_errors = errors_of(loader::take_diagnostics());
        let doc = match doc {
            Some(doc) if parse_errors.is_empty() => doc,
            _ => return Err(invalid(parse_errors, "document is not well-formed XML")),
        };

        // SAFETY: `self.raw` is a valid compiled schema owned by this thread. A fresh
        // validation context per job keeps no state between documents.
        let vctxt = unsafe { bindings::xmlSchemaNewValidCtxt(self.raw) };
        if vctxt.is_null() {
            return Err(XsdError::Panicked);
        }
        let vctxt = ValidCtxt(vctxt);
        // SAFETY: both pointers are valid and owned by this thread.
        let rc = unsafe { bindings::xmlSchemaValidateDoc(vctxt.0, doc.0) };
        drop(vctxt);
        drop(doc);
        let errors = errors_of(loader::take_diagnostics());
        if rc == 0 && errors.is_empty() {
            Ok(())
        } else {
            Err(invalid(
                errors,
                &format!("schema validation failed (libxml status {rc})"),
            ))
        }
    }
}

/// Error-level diagnostics as (line, message) pairs.
fn errors_of(diagnostics: Vec<Diagnostic>) -> Vec<(Option<u32>, String)> {
    diagnostics
        .into_iter()
        .filter(|d| d.level >= Level::Error)
        .map(|d| (d.line, d.message))
        .collect()
}

fn invalid(all: Vec<(Option<u32>, String)>, fallback: &str) -> XsdError {
    let (line, message) = all
        .first()
        .cloned()
        .unwrap_or_else(|| (None, fallback.to_owned()));
    XsdError::Invalid { message, line, all }
}
