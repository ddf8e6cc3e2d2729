//! The IM Server (OMA IM; issue #14), layer L2, on the SIP endpoint:
//! - [`bindings`]: the registrar's location service (pure);
//! - [`registrar`]: REGISTER answered (RFC 3261 §10.3), standalone or as the application
//!   server a SIP/IP core copies registrations to;
//! - [`pager`]: MESSAGE through the recipient's policy to their registered contacts;
//! - [`deferred`]: store and forward for recipients no contact of whom took a message.
//!
//! IMDN, history and groups follow (issue #14).

pub mod bindings;
pub mod deferred;
pub mod pager;
pub mod registrar;

pub use deferred::Deferred;
pub use pager::{Pager, PagerParts};
pub use registrar::Registrar;
