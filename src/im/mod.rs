//! The IM Server (OMA IM; issue #14), layer L2, on the SIP endpoint:
//! - [`bindings`]: the registrar's location service (pure);
//! - [`registrar`]: REGISTER answered (RFC 3261 §10.3), standalone or as the application
//!   server a SIP/IP core copies registrations to.
//!
//! MESSAGE handling, store-and-forward, IMDN and history follow (issue #14).

pub mod bindings;
pub mod registrar;

pub use registrar::Registrar;
