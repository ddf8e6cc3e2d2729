//! Credential verification shared by every edge (layer L0, no I/O, no HTTP types): the
//! Aggregation Proxy front and the admin API today, the SIP registrar and SUBSCRIBE handler
//! next (SIP Digest, RFC 3261 §22, checks the same stored HA1s).
//!
//! - `digest`: RFC 7616 challenges and verification against stored HA1s, stateless nonces with
//!   `nc` replay tracking; the one HA1 function (`digest::ha1`).
//! - `basic`: RFC 7617, checked against the same HA1s.
//! - `jwt`: bearer tokens (RFC 7519 / RFC 6750 verification and issuing).
//! - `trust`: trusted peers, client address behind trusted proxies, asserted and intended
//!   identities (AP-02..AP-04).
//! - `throttle` and `lockout`: failed-attempt counters and who may try when.
//!
//! Callers pass "now" and the request's facts in; the HTTP edge (`proxy::front`) maps headers
//! to these calls and results to responses.

pub mod basic;
pub mod digest;
pub mod jwt;
pub mod lockout;
pub mod throttle;
pub mod trust;
