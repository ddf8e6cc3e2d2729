//! The Aggregation Proxy (OMA XDM Core; standards.md §12 AP-01..AP-16, RFC 4825 §8, §14):
//! authenticates XDM clients (Digest, Basic, JWT bearer, trusted asserted identity),
//! throttles failed attempts, and routes each XCAP request by AUID to an XDMS.
//!
//! The credential-checking modules (`digest`, `basic`, `jwt`, `trust`, `throttle`,
//! `lockout`) are pure;
//! `front` is the HTTP edge that combines them; `upstream` forwards to remote XDMS nodes.

pub mod basic;
pub mod digest;
pub mod front;
pub mod http;
pub mod jwt;
pub mod lockout;
pub mod route;
pub mod throttle;
pub mod trust;
pub mod upstream;
