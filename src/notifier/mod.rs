//! The xcap-diff notifier (RFC 5875, RFC 6665; standards.md §9, XE-*), layer L2: tells
//! subscribed XDM clients of every document change, in order, read from the storage change
//! feed.
//! - [`request`]: what a SUBSCRIBE asks for (entries, Accept, diff-processing, duration);
//! - [`service`]: SUBSCRIBE answered (identity, authorization, dialog, storage), resumption;
//! - [`registry`]: live subscriptions and the change-feed reader feeding them;
//! - [`nodes`]: remote XDMS nodes whose change logs are followed over HTTP;
//! - [`actor`]: one subscription's state, sending its NOTIFYs; [`reading`]: what it reads;
//! - [`mailbox`]: what wakes a subscription (its queue, one timer schedule for all);
//! - [`report`], [`state`], [`dialog`], [`saved`]: the pure parts (document chains,
//!   component state, NOTIFY requests, the stored package state).
//!
//! The diff documents and patches themselves are [`crate::xcap_diff`].

mod actor;
pub mod dialog;
mod dormant;
mod mailbox;
pub mod nodes;
mod reading;
mod registry;
pub mod report;
pub mod request;
pub mod saved;
mod service;
pub mod state;

pub use service::{Notifier, NotifierConfig, NotifierParts};
