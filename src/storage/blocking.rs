//! A synchronous view of the async domain stores (design.md §4), for code that runs outside
//! the async runtime or on a thread allowed to wait: the behaviour suites, offline tools, and
//! services whose pure core calls back synchronously (the policy decision service evaluates
//! on a blocking thread). Never for a runtime worker's own task: it would stall the worker.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::credentials::{Credential, CredentialStore};
use super::{
    ChangeOrigin, ChangeRecord, Committed, DocKey, DocMeta, DocumentStore, Expect, StorageError,
    StoredDocument, TreeKey,
};

/// Runs `fut` to completion on this thread. Inside a multi-threaded tokio runtime the
/// worker hands its other tasks away first (`block_in_place`) and the runtime drives the
/// future, so futures that need the runtime (timers, `spawn_blocking`) work; elsewhere a
/// minimal executor parks the thread between polls (the stores' own futures need no runtime).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            return tokio::task::block_in_place(|| handle.block_on(fut));
        }
    }
    park_on(fut)
}

/// Runs blocking or CPU-heavy `f` so that a multi-threaded runtime moves this worker's other
/// tasks to another thread meanwhile (`block_in_place`); inline elsewhere (no runtime, a
/// current-thread runtime, a blocking thread).
pub fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

fn park_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// A [`DocumentStore`] used synchronously; writes without an origin are the server's own.
pub struct Blocking<S: ?Sized>(pub Arc<S>);

/// The store itself stays reachable (its own inherent methods, its fields in tests).
impl<S: ?Sized> std::ops::Deref for Blocking<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.0
    }
}

impl<S: ?Sized> Clone for Blocking<S> {
    fn clone(&self) -> Self {
        Blocking(Arc::clone(&self.0))
    }
}

impl<S> Blocking<S> {
    pub fn new(store: S) -> Self {
        Blocking(Arc::new(store))
    }
}

impl<S: DocumentStore + ?Sized> Blocking<S> {
    pub fn get(&self, key: &DocKey) -> Result<Option<StoredDocument>, StorageError> {
        block_on(self.0.get(key))
    }

    pub fn put(
        &self,
        key: &DocKey,
        expect: &Expect,
        body: &str,
        etag: &str,
        modified_ms: u64,
    ) -> Result<Committed, StorageError> {
        self.put_by(
            key,
            expect,
            body,
            etag,
            modified_ms,
            &ChangeOrigin::default(),
        )
    }

    pub fn put_by(
        &self,
        key: &DocKey,
        expect: &Expect,
        body: &str,
        etag: &str,
        modified_ms: u64,
        origin: &ChangeOrigin,
    ) -> Result<Committed, StorageError> {
        block_on(self.0.put(key, expect, body, etag, modified_ms, origin))
    }

    pub fn delete(&self, key: &DocKey, expect: &Expect) -> Result<Option<Committed>, StorageError> {
        self.delete_by(key, expect, &ChangeOrigin::default())
    }

    pub fn delete_by(
        &self,
        key: &DocKey,
        expect: &Expect,
        origin: &ChangeOrigin,
    ) -> Result<Option<Committed>, StorageError> {
        block_on(self.0.delete(key, expect, origin))
    }

    pub fn list_user(&self, xui: &str) -> Result<Vec<DocMeta>, StorageError> {
        block_on(self.0.list_user(xui))
    }

    pub fn list_auid(&self, auid: &str) -> Result<Vec<DocMeta>, StorageError> {
        block_on(self.0.list_auid(auid))
    }

    pub fn directory_exists(
        &self,
        auid: &str,
        tree: &TreeKey,
        dir: &str,
    ) -> Result<bool, StorageError> {
        block_on(self.0.directory_exists(auid, tree, dir))
    }

    pub fn last_seq(&self) -> Result<u64, StorageError> {
        block_on(self.0.last_seq())
    }

    pub fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ChangeRecord>, StorageError> {
        block_on(self.0.changes_since(after, limit))
    }

    pub fn flush(&self) -> Result<(), StorageError> {
        block_on(self.0.flush())
    }

    pub fn health(&self) -> Result<(), StorageError> {
        block_on(self.0.health())
    }
}

/// The credential store used synchronously (the offline `xcapd user` commands, tests).
impl<S: CredentialStore + ?Sized> Blocking<S> {
    pub fn get_user(&self, xui: &str) -> Result<Option<Credential>, StorageError> {
        block_on(self.0.get_user(xui))
    }

    pub fn lookup_ha1(
        &self,
        username: &str,
        realm: &str,
        algorithm: &str,
    ) -> Result<Option<(String, String)>, StorageError> {
        block_on(self.0.lookup_ha1(username, realm, algorithm))
    }

    pub fn put_user(&self, cred: &Credential) -> Result<(), StorageError> {
        block_on(self.0.put_user(cred))
    }

    pub fn delete_user(&self, xui: &str) -> Result<bool, StorageError> {
        block_on(self.0.delete_user(xui))
    }

    pub fn list_users(&self) -> Result<Vec<Credential>, StorageError> {
        block_on(self.0.list_users())
    }

    pub fn realms(&self) -> Result<Vec<String>, StorageError> {
        block_on(self.0.realms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The park executor drives a future that completes from another thread.
    #[test]
    fn park_on_waits_for_a_wake_from_another_thread() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(7).unwrap();
        });
        assert_eq!(block_on(rx).unwrap(), 7);
    }

    // Inside a multi-threaded runtime the runtime drives the future (timers work).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn block_on_inside_the_runtime() {
        let v = block_on(async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            3
        });
        assert_eq!(v, 3);
    }
}
