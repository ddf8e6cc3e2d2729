//! Returning memory to the operating system after large requests (issue #11 item 4). The
//! binary allocates through mimalloc (also libxml2's allocations, `xsd::loader`), which purges
//! freed pages only when the same thread allocates again after a delay: a server that went
//! quiet after a burst of multi-megabyte documents kept ~70 MB it no longer used. Threads that
//! just handled a large body call [`release_freed_memory`]; small requests never do.

/// Bodies at least this large make the handling thread give freed memory back.
pub const LARGE_BODY_BYTES: usize = 1 << 20;

// In the mimalloc library that `libmimalloc-sys` builds and links; its binding sits behind
// that crate's `extended` feature, which would add a dependency for one function.
extern "C" {
    fn mi_collect(force: bool);
}

/// Purges the memory this thread freed (mimalloc's `mi_collect`, forced: abandoned segments too).
pub fn release_freed_memory() {
    // SAFETY: mi_collect only walks and purges the calling thread's own heap; it is safe to
    // call at any time, also when mimalloc is not the global allocator (then it has little to do).
    unsafe { mi_collect(true) }
}

/// Called when a runtime thread goes idle: at most every few seconds per thread, it gives back
/// what the thread freed since (a burst of 10,000 SUBSCRIBEs left ~30 MB of freed pages on
/// threads that had nothing more to allocate).
pub fn release_when_idle() {
    use std::cell::Cell;
    use std::time::{Duration, Instant};
    const EVERY: Duration = Duration::from_secs(2);
    thread_local!(static LAST: Cell<Option<Instant>> = const { Cell::new(None) });
    let now = Instant::now();
    LAST.with(|last| {
        if last.get().is_none_or(|t| now.duration_since(t) >= EVERY) {
            last.set(Some(now));
            release_freed_memory();
        }
    });
}
