//! libxml2 process and thread set-up for the XSD adapter: the in-memory external entity
//! loader (so schema imports/includes never reach the disk or the network, design §5/§6)
//! and the per-thread structured error collector that turns libxml diagnostics into data
//! for `XsdError` instead of text on stderr.
//!
//! libxml2 keeps the entity loader in a process-wide global but its error handler in
//! per-thread state; the files the loader may serve are therefore looked up in a
//! thread-local that only a worker thread sets, and only while it compiles schemas.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::{Arc, Once};

use libxml::bindings;

/// Longest diagnostic message kept (in chars); libxml messages can quote whole content models.
const MAX_MESSAGE_CHARS: usize = 300;
/// Most diagnostics kept per operation; a pathological document must not grow memory unbounded.
const MAX_DIAGNOSTICS: usize = 50;

/// Schema files by bare file name, shared by every worker.
pub(super) type FileMap = Arc<HashMap<String, Arc<[u8]>>>;

/// Severity of a libxml diagnostic (`xmlErrorLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Level {
    Warning,
    Error,
}

/// One structured libxml diagnostic, copied out of libxml memory.
#[derive(Debug, Clone)]
pub(super) struct Diagnostic {
    pub level: Level,
    pub code: i32,
    pub line: Option<u32>,
    /// The URL libxml attributes the diagnostic to (for schemas: our virtual schema URL).
    pub file: Option<String>,
    pub message: String,
}

thread_local! {
    /// Files the entity loader may serve on this thread; `None` refuses everything.
    static SERVED: RefCell<Option<FileMap>> = const { RefCell::new(None) };
    /// URLs the loader refused on this thread since the last `take_refused`.
    static REFUSED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// Diagnostics reported by libxml on this thread since the last `take_diagnostics`.
    static DIAGNOSTICS: RefCell<Vec<Diagnostic>> = const { RefCell::new(Vec::new()) };
}

/// Process-wide libxml set-up, done exactly once whatever the number of validators.
pub(super) fn init_process() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: plain libxml2 initialisation calls; the Once makes them run once, before any
        // worker thread uses libxml (xmlSchemaInitTypes is not thread-safe when called lazily).
        unsafe {
            // Before libxml allocates anything: its many small allocations go to mimalloc
            // instead of glibc malloc, whose consolidation showed as ~12% of the CPU of a
            // durable document PUT (BENCHMARKS.md).
            bindings::xmlMemSetup(
                Some(libmimalloc_sys::mi_free),
                Some(libmimalloc_sys::mi_malloc),
                Some(libmimalloc_sys::mi_realloc),
                Some(mi_strdup),
            );
            bindings::xmlInitParser();
            bindings::xmlSchemaInitTypes();
            // Catalog resolution would read /etc/xml/catalog; nothing here may read the disk.
            bindings::xmlCatalogSetDefaults(bindings::xmlCatalogAllow_XML_CATA_ALLOW_NONE);
            bindings::xmlSetExternalEntityLoader(Some(load_entity));
        }
    });
}

/// `strdup` on mimalloc, for [`init_process`].
unsafe extern "C" fn mi_strdup(s: *const std::os::raw::c_char) -> *mut std::os::raw::c_char {
    if s.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: libxml passes a NUL-terminated string; the copy includes the terminator.
    unsafe {
        let len = std::ffi::CStr::from_ptr(s).to_bytes_with_nul().len();
        let out = libmimalloc_sys::mi_malloc(len).cast::<std::os::raw::c_char>();
        if !out.is_null() {
            ptr::copy_nonoverlapping(s, out, len);
        }
        out
    }
}

/// Per-thread set-up: route every libxml diagnostic on this thread to `DIAGNOSTICS`.
pub(super) fn init_thread() {
    // SAFETY: the handler is a plain function that never unwinds; a null context is fine as
    // the handler ignores it. libxml keeps this setting in per-thread state.
    unsafe { bindings::xmlSetStructuredErrorFunc(ptr::null_mut(), Some(on_structured_error)) }
}

/// Lets the loader serve `files` on this thread until the guard is dropped.
pub(super) struct ServeGuard(());

impl ServeGuard {
    pub(super) fn new(files: FileMap) -> Self {
        SERVED.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                *s = Some(files);
            }
        });
        ServeGuard(())
    }
}

impl Drop for ServeGuard {
    fn drop(&mut self) {
        SERVED.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                *s = None;
            }
        });
    }
}

/// Drains the diagnostics collected on this thread.
pub(super) fn take_diagnostics() -> Vec<Diagnostic> {
    DIAGNOSTICS.with(|d| {
        d.try_borrow_mut()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    })
}

/// Drains the URLs the loader refused on this thread.
pub(super) fn take_refused() -> Vec<String> {
    REFUSED.with(|r| {
        r.try_borrow_mut()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    })
}

/// The bare file name a URL or path asks for: its last path component.
pub(super) fn last_component(url: &str) -> &str {
    url.rsplit(['/', '\\']).next().unwrap_or(url)
}

/// Shortens a libxml message: no trailing newline, at most `MAX_MESSAGE_CHARS` chars.
fn shorten(message: &str) -> String {
    let trimmed = message.trim();
    match trimmed.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

/// Copies a C string owned by libxml, if any.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string valid for the duration of the call.
unsafe fn owned_string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: non-null and NUL-terminated per the caller's contract.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

/// libxml 2.9–2.11 pass `xmlError *`, 2.12+ `const xmlError *`; the handler accepts both.
trait ErrorPtr: Copy {
    fn as_const(self) -> *const bindings::_xmlError;
}
impl ErrorPtr for *mut bindings::_xmlError {
    fn as_const(self) -> *const bindings::_xmlError {
        self
    }
}
impl ErrorPtr for *const bindings::_xmlError {
    fn as_const(self) -> *const bindings::_xmlError {
        self
    }
}

/// Structured error handler: copies the diagnostic into the thread-local collector.
/// It must never unwind into C, hence the `catch_unwind`.
unsafe extern "C" fn on_structured_error<P: ErrorPtr>(_ctx: *mut c_void, error: P) {
    let error = error.as_const();
    if error.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: libxml hands a valid xmlError for the duration of the callback.
        let e = unsafe { &*error };
        let level = if e.level >= bindings::xmlErrorLevel_XML_ERR_ERROR {
            Level::Error
        } else if e.level == bindings::xmlErrorLevel_XML_ERR_WARNING {
            Level::Warning
        } else {
            return;
        };
        // SAFETY: message and file are null or NUL-terminated strings owned by the xmlError.
        let message = unsafe { owned_string(e.message) }.unwrap_or_default();
        let file = unsafe { owned_string(e.file) };
        let diagnostic = Diagnostic {
            level,
            code: e.code,
            line: u32::try_from(e.line).ok().filter(|l| *l > 0),
            file,
            message: shorten(&message),
        };
        DIAGNOSTICS.with(|d| {
            if let Ok(mut d) = d.try_borrow_mut() {
                if d.len() < MAX_DIAGNOSTICS {
                    d.push(diagnostic);
                }
            }
        });
    }));
}

/// The process-wide external entity loader. It serves only the schema files registered on
/// the calling thread, matched by the last path component of the requested URL, and refuses
/// (returns NULL) everything else: no file, HTTP or catalog access ever happens through it.
unsafe extern "C" fn load_entity(
    url: *const c_char,
    _id: *const c_char,
    ctxt: bindings::xmlParserCtxtPtr,
) -> bindings::xmlParserInputPtr {
    if url.is_null() || ctxt.is_null() {
        return ptr::null_mut();
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: libxml passes a NUL-terminated URL valid for the call.
        let requested = unsafe { CStr::from_ptr(url) }
            .to_string_lossy()
            .into_owned();
        let bytes = SERVED.with(|s| {
            s.try_borrow().ok().and_then(|s| {
                s.as_ref()
                    .and_then(|files| files.get(last_component(&requested)).cloned())
            })
        });
        let Some(bytes) = bytes else {
            REFUSED.with(|r| {
                if let Ok(mut r) = r.try_borrow_mut() {
                    if r.len() < MAX_DIAGNOSTICS {
                        r.push(requested);
                    }
                }
            });
            return ptr::null_mut();
        };
        let Ok(len) = i32::try_from(bytes.len()) else {
            return ptr::null_mut();
        };
        // SAFETY: libxml copies `len` bytes from our buffer into its own input buffer; the
        // stream takes ownership of that buffer, and of the xmlStrdup'ed filename, which
        // becomes the base URL against which nested imports are resolved.
        unsafe {
            let buffer = bindings::xmlParserInputBufferCreateMem(
                bytes.as_ptr().cast(),
                len,
                bindings::xmlCharEncoding_XML_CHAR_ENCODING_NONE,
            );
            if buffer.is_null() {
                return ptr::null_mut();
            }
            let input = bindings::xmlNewIOInputStream(
                ctxt,
                buffer,
                bindings::xmlCharEncoding_XML_CHAR_ENCODING_NONE,
            );
            if input.is_null() {
                bindings::xmlFreeParserInputBuffer(buffer);
                return ptr::null_mut();
            }
            (*input).filename = bindings::xmlStrdup(url.cast()).cast_const().cast();
            input
        }
    }))
    .unwrap_or(ptr::null_mut())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_component_of_urls_and_paths() {
        assert_eq!(last_component("xml.xsd"), "xml.xsd");
        assert_eq!(last_component("http://www.w3.org/2001/xml.xsd"), "xml.xsd");
        assert_eq!(last_component("xcapd-schema:/a/b/common.xsd"), "common.xsd");
        assert_eq!(last_component("C:\\x\\y.xsd"), "y.xsd");
        assert_eq!(last_component("http://h/dir/"), "");
    }

    #[test]
    fn shorten_trims_and_caps() {
        assert_eq!(shorten("oops\n"), "oops");
        let long = "é".repeat(1000);
        let s = shorten(&long);
        assert_eq!(s.chars().count(), MAX_MESSAGE_CHARS + 3);
        assert!(s.ends_with("..."));
    }
}
