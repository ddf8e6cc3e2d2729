//! The Aggregation Proxy (OMA XDM Core; standards.md §12 AP-01..AP-16, RFC 4825 §8, §14):
//! authenticates XDM clients and routes each XCAP request by AUID to an XDMS.
//!
//! `front` maps an HTTP request onto the shared verifiers of [`crate::auth`] (Digest, Basic,
//! JWT bearer, trusted asserted identity, lockout) and decides who is asking; `http` is the
//! axum middleware around it; `route` forwards by AUID through [`crate::upstream`].

pub mod front;
pub mod http;
pub mod route;
