//! common-policy engine, pure core (layer L0): the owned model of a `<ruleset>` and its
//! evaluation (RFC 4745; RFC 5025 §3; OMA XDM common-policy extensions; standards items
//! CP-01..CP-27, IX-07..IX-09, IM-24..IM-29).
//!
//! No I/O: "now" and the request's facts are passed in, and `ocp:external-list` membership
//! comes from an injected [`ListResolver`].
//!
//! - [`model`]: parse a `<ruleset>` from roxmltree into an owned, cacheable [`Ruleset`].
//! - [`eval`]: [`evaluate`] / [`evaluate_all`] give a [`Decision`] (permissions combined by
//!   maximum, CP-13).
//! - [`im`]: the IM action and its default (IM-25).
//! - [`crate::identity::compare`]: URI equality (CP-06) and domain comparison (CP-10).
//! - [`datetime`]: `xs:dateTime` for `<validity>` (CP-12).

pub mod datetime;
pub mod eval;
pub mod im;
pub mod model;

#[cfg(test)]
mod tests;

pub use eval::{evaluate, evaluate_all, Decision, ListLookup, ListResolver, NoLists, Request};
pub use im::{im_action, ImAction};
pub use model::{
    Actions, Condition, IdentityItem, ImHandling, Media, ModelError, Rule, Ruleset, SubHandling,
};
