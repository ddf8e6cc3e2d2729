//! XCAP protocol core (RFC 4825): request URIs, node selectors, XUIs and percent-encoding.
//! Pure layer (L0): no I/O.

pub mod error;
pub mod etag;
pub mod keys;
pub mod mime;
pub mod pct;
pub mod selector;
pub mod uri;
