//! The xcap-diff notifier (RFC 5875, RFC 6665; standards.md §9, XE-*), layer L2: tells
//! subscribed XDM clients of every document change, in order, read from the storage change
//! feed. Built in steps (issue #13); so far:
//! - [`request`]: what a SUBSCRIBE asks for (entries, Accept, diff-processing, duration);
//! - [`state`]: the reported state of a subscribed component.
//!
//! The diff documents and patches themselves are [`crate::xcap_diff`].

pub mod request;
pub mod state;
