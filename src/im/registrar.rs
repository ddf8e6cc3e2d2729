//! The registrar (RFC 3261 §10.3; issue #14 scope 1): REGISTER answered with the bindings of an
//! address of record. Who registers comes from the shared SIP authentication (SIP Digest
//! against the credential store, `P-Asserted-Identity` only from `[sip] trusted_peers`, the
//! From URI in development mode); the address of record is the To URI. A user registers their
//! own address; a trusted SIP/IP core (an S-CSCF's third-party registration) anyone's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;

use super::bindings::{Binding, Durations, Location, Register, RegisterError};
use crate::identity::Xui;
use crate::sip::auth::{SipAuthenticator, SipIdentity};
use crate::sip::endpoint::{Incoming, Reply, RequestHandler};
use crate::sip::header::{delta_seconds, CSeq, NameAddr};
use crate::sip::message::Message;
use crate::storage::now_ms;
use crate::storage::registrations::{RegistrationStore, StoredBinding};

/// The registrar; install it on the endpoint for `REGISTER`.
pub struct Registrar {
    auth: SipAuthenticator,
    durations: Durations,
    default_domain: Option<String>,
    location: Mutex<Location>,
    /// Where bindings are kept across restarts.
    store: Arc<dyn RegistrationStore>,
    /// Other nodes share the store (and take REGISTERs too): it is read before every use.
    shared: bool,
    /// Told of every address of record that has bindings after a REGISTER (deferred delivery).
    on_binding: std::sync::OnceLock<BindingHook>,
}

/// What learns that an address of record is reachable.
pub type BindingHook = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

impl Registrar {
    pub fn new(
        auth: SipAuthenticator,
        durations: Durations,
        default_domain: Option<String>,
        store: Arc<dyn RegistrationStore>,
        shared: bool,
    ) -> Registrar {
        Registrar {
            auth,
            durations,
            default_domain,
            location: Mutex::new(Location::default()),
            store,
            shared,
            on_binding: std::sync::OnceLock::new(),
        }
    }

    /// Installs what is told of addresses of record with bindings (once).
    pub fn on_binding(&self, hook: BindingHook) {
        let _ = self.on_binding.set(hook);
    }

    /// Puts back the bindings stored before a restart and tells the hook of every address of
    /// record that has some (its waiting messages are delivered); how many.
    pub async fn restore(&self) -> Result<usize, crate::storage::StorageError> {
        let now = now_ms();
        let stored = self.store.all().await?;
        let mut live = Vec::new();
        {
            let mut location = self.location.lock();
            for (aor, bindings) in stored {
                location.restore(&aor, bindings.into_iter().map(from_stored).collect(), now);
                if !location.current(&aor, now).is_empty() {
                    live.push(aor);
                }
            }
        }
        if let Some(hook) = self.on_binding.get() {
            for aor in &live {
                hook(aor);
            }
        }
        Ok(live.len())
    }

    /// The live bindings of `aor` (a canonical XUI). With a shared store, as stored now
    /// (whichever node took the REGISTER); what this node knows when the store cannot be read.
    pub async fn bindings(&self, aor: &str) -> Vec<Binding> {
        self.catch_up(aor).await;
        self.location.lock().current(aor, now_ms())
    }

    /// With a shared store: this node's view of `aor` becomes the stored one.
    async fn catch_up(&self, aor: &str) {
        if !self.shared {
            return;
        }
        match self.store.get(aor.to_string()).await {
            Ok(stored) => {
                let bindings = stored.into_iter().map(from_stored).collect();
                self.location.lock().replace(aor, bindings, now_ms());
            }
            Err(e) => {
                tracing::warn!(target: "xcapd::im", error = %e, "cannot read a registration")
            }
        }
    }

    /// Forgets expired bindings (called now and then).
    pub fn sweep(&self) {
        self.location.lock().sweep(now_ms());
    }

    async fn register(&self, incoming: Incoming) -> Reply {
        let msg = &incoming.message;
        let now = now_ms();
        // §10.3 step 4: authentication first.
        let who = match self
            .auth
            .identify(msg, incoming.source.ip(), now / 1000)
            .await
        {
            SipIdentity::Authenticated(xui) => xui,
            SipIdentity::Challenge(challenges) => return Reply::unauthorized(challenges),
        };
        // §10.3 step 5: the address of record, and whether `who` may change its bindings.
        let domain = self.default_domain.as_deref();
        let Some(aor) = msg
            .headers
            .get("To")
            .and_then(NameAddr::parse)
            .and_then(|to| Xui::parse(&to.uri, domain).ok())
        else {
            return Reply::new(400, "Malformed To header");
        };
        let aor = aor.as_str().to_string();
        let third_party = self.auth.trusted_peers.contains(incoming.source.ip());
        if aor != who && !third_party {
            return Reply::new(403, "Forbidden: not your address of record");
        }
        let req = match parse(msg) {
            Ok(req) => req,
            Err(why) => return Reply::new(400, why),
        };
        // The bindings other nodes registered count too (§10.3 step 7 updates them all), read,
        // updated and written while no other node's registrar does the same for this AOR.
        let _held = match self.store.lock(aor.clone()).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(target: "xcapd::im", error = %e, "cannot lock a registration");
                let mut r = Reply::new(503, "Service Unavailable");
                r.headers.push("Retry-After", "5");
                return r;
            }
        };
        self.catch_up(&aor).await;
        let result = self
            .location
            .lock()
            .register(&aor, &req, self.durations, now);
        match result {
            Ok(bindings) => {
                // Kept across restarts before the 200 (a failure is logged: the registration
                // holds until then, and the UA refreshes it).
                let stored = bindings.iter().map(to_stored).collect();
                if let Err(e) = self.store.put(aor.clone(), stored).await {
                    tracing::warn!(target: "xcapd::im", error = %e, "cannot store a registration");
                }
                if let (false, Some(hook)) = (bindings.is_empty(), self.on_binding.get()) {
                    hook(&aor);
                }
                let mut r = Reply::new(200, "OK");
                // §10.3 step 8: every current binding with what is left of it.
                for b in bindings {
                    let left = b.expires_at_ms.saturating_sub(now).div_ceil(1000);
                    r.headers
                        .push("Contact", format!("{};expires={left}", b.value));
                }
                r
            }
            Err(RegisterError::IntervalTooBrief { min }) => {
                let mut r = Reply::new(423, "Interval Too Brief");
                r.headers.push("Min-Expires", min.to_string());
                r
            }
            Err(e @ RegisterError::OutOfOrder) => Reply::new(500, e.to_string()),
            Err(e @ RegisterError::Wildcard) => Reply::new(400, e.to_string()),
        }
    }
}

impl RequestHandler for Registrar {
    fn event_packages(&self) -> &[&'static str] {
        &[]
    }

    fn handle(&self, request: Incoming) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>> {
        Box::pin(self.register(request))
    }
}

fn to_stored(b: &Binding) -> StoredBinding {
    StoredBinding {
        uri: b.uri.clone(),
        value: b.value.clone(),
        expires_at_ms: b.expires_at_ms,
        call_id: b.call_id.clone(),
        cseq: b.cseq,
    }
}

fn from_stored(b: StoredBinding) -> Binding {
    Binding {
        uri: b.uri,
        value: b.value,
        expires_at_ms: b.expires_at_ms,
        call_id: b.call_id,
        cseq: b.cseq,
    }
}

/// The Contacts, Expires, Call-ID and CSeq of a REGISTER (§10.2); the reason of a 400.
fn parse(msg: &Message) -> Result<Register, &'static str> {
    let expires = match msg.headers.get("Expires") {
        None => None,
        Some(v) => Some(delta_seconds(v).ok_or("Malformed Expires header")?),
    };
    let mut contacts = Vec::new();
    let mut wildcard = false;
    for value in msg.headers.values("Contact") {
        if value.trim() == "*" {
            wildcard = true;
            continue;
        }
        let mut contact = NameAddr::parse(value).ok_or("Malformed Contact header")?;
        let asked = match contact.params.get("expires") {
            None => None,
            Some(v) => Some(
                v.and_then(delta_seconds)
                    .ok_or("Malformed expires parameter")?,
            ),
        };
        contact
            .params
            .0
            .retain(|(n, _)| !n.eq_ignore_ascii_case("expires"));
        contacts.push((contact.uri.clone(), contact.to_value(), asked));
    }
    let cseq = msg
        .headers
        .get("CSeq")
        .and_then(CSeq::parse)
        .ok_or("Malformed CSeq header")?;
    Ok(Register {
        contacts,
        wildcard,
        expires,
        call_id: msg.headers.get("Call-ID").unwrap_or_default().to_string(),
        cseq: cseq.seq,
    })
}
