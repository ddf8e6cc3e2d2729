//! The IM Server (OMA IM; issue #14), layer L2, on the SIP endpoint:
//! - [`bindings`]: the registrar's location service (pure);
//! - [`registrar`]: REGISTER answered (RFC 3261 §10.3), standalone or as the application
//!   server a SIP/IP core copies registrations to;
//! - [`pager`]: MESSAGE through the recipient's policy to their registered contacts;
//! - [`deferred`]: store and forward for recipients no contact of whom took a message;
//! - [`history`]: conversation history when enabled;
//! - [`documents`]: the users' `deferred-list` and `conv-history` documents;
//! - [`route`]: where requests go (registered contacts, or back through the SIP/IP core);
//! - [`cpim`], [`imdn`], [`expected`]: CPIM read, the IM Server's own disposition notices,
//!   and the recipients' notices senders asked for;
//! - [`charging`]: a charging data record per outcome.
//!
//! - [`recipient_list`], [`groups`]: one message to several recipients (RFC 5365, IM-13).

pub mod bindings;
pub mod charging;
pub mod cpim;
pub mod deferred;
pub mod documents;
pub mod expected;
pub mod groups;
pub mod history;
pub mod http;
pub mod imdn;
pub mod pager;
pub mod recipient_list;
pub mod registrar;
pub mod route;

pub use deferred::Deferred;
pub use pager::{Pager, PagerParts};
pub use registrar::Registrar;
pub use route::Router;

/// What the admin API reaches of a running IM Server.
pub struct ImHandles {
    pub registrar: std::sync::Arc<Registrar>,
    pub deferred: std::sync::Arc<Deferred>,
}
