//! The SIP side of xcapd (RFC 3261), the stack the xcap-diff notifier (RFC 6665, RFC 5875) and
//! the IM Server stand on:
//! - [`message`], [`header`], [`transaction`]: syntax, typed header fields and non-INVITE
//!   transaction state machines; pure (layer L0), property-tested;
//! - [`endpoint`]: the user agent server (validation, server transactions, answers) (L2),
//!   with [`response`]: the fields responses echo and the responses themselves;
//! - [`transport`]: UDP and TCP sockets on `[sip] listen` (L1).

pub mod auth;
pub mod client;
pub mod endpoint;
pub mod header;
pub mod message;
mod response;
pub mod transaction;
pub mod transport;

/// Gives back a transaction table's spare room once a burst is over: a hash table keeps its
/// largest capacity, and 10,000 SUBSCRIBEs or NOTIFYs at once left megabytes of empty buckets.
pub(crate) fn release_spare<K: std::hash::Hash + Eq, V>(
    table: &mut std::collections::HashMap<K, V>,
) {
    if table.capacity() > 1024 && table.len() < table.capacity() / 8 {
        table.shrink_to(table.len() * 2);
    }
}
