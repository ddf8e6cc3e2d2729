//! The SIP side of xcapd (RFC 3261), the stack the xcap-diff notifier (RFC 6665, RFC 5875) and
//! the IM Server stand on:
//! - [`message`], [`header`], [`transaction`]: syntax, typed header fields and non-INVITE
//!   transaction state machines; pure (layer L0), property-tested;
//! - [`endpoint`]: the user agent server (validation, server transactions, answers) (L2);
//! - [`transport`]: UDP and TCP sockets on `[sip] listen` (L1).

pub mod auth;
pub mod client;
pub mod endpoint;
pub mod header;
pub mod message;
pub mod transaction;
pub mod transport;
