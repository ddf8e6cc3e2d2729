//! How an xcap-diff subscription is woken (RFC 6665 §4.2.2; standards.md XE-17, XE-18, XE-23)
//! without a task of its own: its queue, its state while idle, and one timer schedule for the
//! coalescing deadlines and expiries of every subscription. A message, or a due time, starts a
//! short task (the driver) that takes the state, does what is due and puts it back. An idle
//! subscription costs its state and a few words (10,000 of them are a benchmark figure).
//! One driver at a time per subscription: its NOTIFYs stay one in flight (XE-17).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::AbortHandle;

use super::actor::Actor;
use super::dormant::Idle;
use super::request::{DiffProcessing, Entry};
use crate::event::ChangeRecord;

/// What a subscription is told.
pub(super) enum Msg {
    /// A new subscription: the full state once its 2xx is out (the receiver fires then).
    Start(oneshot::Receiver<()>),
    /// A committed change of a document in a watched usage and tree.
    Change(Arc<ChangeRecord>),
    /// The same from a remote node's log (its sequence numbers are not this node's).
    Remote(Arc<ChangeRecord>),
    /// An accepted refresh (or `Expires: 0`): the full state follows once the 2xx is out.
    Refresh(Box<Refresh>),
    /// Changes were trimmed before they were read: compare with the documents themselves.
    Resync,
    /// A time it asked to be woken at came (a coalescing deadline or its expiry).
    Tick,
    /// The node that served it stopped: the changes since its last NOTIFY, then its end
    /// (`deactivated`).
    Deactivate,
}

pub(super) struct Refresh {
    /// RFC 5839: the subscriber holds the current state; no NOTIFY follows (204 was sent).
    pub suppress: bool,
    /// The stream connection the refresh came over (the latest flow), if any.
    pub flow: Option<std::net::SocketAddr>,
    /// A new Contact (a refresh is a target refresh, RFC 3261 §12.2.2).
    pub remote_target: Option<String>,
    pub expires_at_ms: u64,
    pub entries: Option<Vec<Entry>>,
    pub mode: DiffProcessing,
    pub remote_cseq: u32,
    pub sent: oneshot::Receiver<()>,
}

/// One subscription's queue and, while no driver works on it, its state.
pub(super) struct Mailbox {
    /// Orders timer entries of equal times.
    id: u64,
    inner: Mutex<Inner>,
}

struct Inner {
    queue: VecDeque<Msg>,
    /// The state, taken by the driver while it runs.
    idle: Option<Idle>,
    /// A driver runs (or was started): messages only queue up.
    running: bool,
    /// The subscription ended: messages are refused.
    closed: bool,
    /// Its entry in the timer schedule.
    wake_at: Option<Instant>,
    /// The running driver (stopped at shutdown).
    driver: Option<AbortHandle>,
}

impl Mailbox {
    pub fn new(actor: Box<Actor>) -> Arc<Mailbox> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(Mailbox {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                idle: Some(Idle::Awake(actor)),
                running: false,
                closed: false,
                wake_at: None,
                driver: None,
            }),
        })
    }

    /// Queues `msg` and starts a driver when none runs; false when the subscription has ended.
    pub fn send(self: &Arc<Self>, msg: Msg) -> bool {
        let mut inner = self.inner.lock();
        if inner.closed {
            return false;
        }
        inner.queue.push_back(msg);
        if !inner.running {
            inner.running = true;
            let task = tokio::spawn(drive(Arc::clone(self)));
            inner.driver = Some(task.abort_handle());
        }
        true
    }

    pub fn try_recv(&self) -> Option<Msg> {
        self.inner.lock().queue.pop_front()
    }

    /// Later messages are refused.
    pub fn close(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        inner.queue.clear();
    }

    /// Stops its driver (shutdown: the stored state is where it resumes).
    pub fn stop(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        if let Some(driver) = inner.driver.take() {
            driver.abort();
        }
    }
}

/// Works on one subscription until nothing is due, then leaves its state in the mailbox with
/// a wake-up time, or ends it.
async fn drive(mailbox: Arc<Mailbox>) {
    let Some(idle) = mailbox.inner.lock().idle.take() else {
        return;
    };
    let Some(mut actor) = idle.wake() else {
        tracing::warn!(target: "xcapd::notifier", "an idle subscription's record cannot be read back: ended");
        mailbox.close();
        return;
    };
    let mut unfinished = Unfinished(Some(Arc::clone(&mailbox)));
    loop {
        match actor.work(&mailbox).await {
            Some(wake_at) => {
                let timers = Arc::clone(&actor.shared.timers);
                timers.set(&mailbox, Some(wake_at));
                let mut inner = mailbox.inner.lock();
                if inner.queue.is_empty() || inner.closed {
                    // An idle queue holds no buffer (10,000 of them are a benchmark figure).
                    inner.queue = VecDeque::new();
                    inner.idle = Some(Idle::sleep(actor));
                    inner.running = false;
                    // The handle would keep the finished task's memory.
                    inner.driver = None;
                    unfinished.0 = None;
                    return;
                }
                // A message came in meanwhile: this driver takes it.
            }
            None => {
                unfinished.0 = None;
                mailbox.close();
                actor.shared.timers.set(&mailbox, None);
                return actor.end().await;
            }
        }
    }
}

/// A driver that stopped holding the state (a panic; an abort at shutdown) closes its
/// mailbox: later messages are refused (a refresh gets 481) instead of queueing for no one.
struct Unfinished(Option<Arc<Mailbox>>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(mailbox) = self.0.take() {
            mailbox.close();
        }
    }
}

/// The wake-up times of every subscription, served by one task.
#[derive(Default)]
pub(super) struct Timers {
    schedule: Mutex<BTreeMap<(Instant, u64), Weak<Mailbox>>>,
    earlier: Notify,
}

impl Timers {
    /// `mailbox` is woken at `at` (replacing its earlier time), or never.
    fn set(&self, mailbox: &Arc<Mailbox>, at: Option<Instant>) {
        let previous = std::mem::replace(&mut mailbox.inner.lock().wake_at, at);
        if previous == at {
            return; // the usual case: still the expiry
        }
        let mut schedule = self.schedule.lock();
        if let Some(p) = previous {
            schedule.remove(&(p, mailbox.id));
        }
        if let Some(at) = at {
            let first = schedule.first_key_value().is_none_or(|(k, _)| at < k.0);
            schedule.insert((at, mailbox.id), Arc::downgrade(mailbox));
            if first {
                self.earlier.notify_one();
            }
        }
    }

    /// Wakes every subscription whose time came, until shutdown.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let now = Instant::now();
            let (due, next) = {
                let mut schedule = self.schedule.lock();
                let later = schedule.split_off(&(now, u64::MAX));
                let due = std::mem::replace(&mut *schedule, later);
                (due, schedule.first_key_value().map(|(k, _)| k.0))
            };
            for ((at, _), mailbox) in due {
                let Some(mailbox) = mailbox.upgrade() else {
                    continue;
                };
                {
                    // No longer scheduled: setting the same time again must schedule it anew.
                    let mut inner = mailbox.inner.lock();
                    if inner.wake_at == Some(at) {
                        inner.wake_at = None;
                    }
                }
                mailbox.send(Msg::Tick);
            }
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => {}
                () = self.earlier.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
