//! xcapd: an XCAP (RFC 4825) / OMA XDM server suite.
//!
//! Layers (design.md §2; imports flow downward only, `tests/layers.rs` checks it):
//! - L0 pure core: [`xcap`] (URIs, selectors, keys, ETags, errors), [`identity`] (XUI, SIP and
//!   tel URIs), [`xml`] (locate, splice), [`policy`], [`auth`] (Digest, Basic, JWT, trust,
//!   throttling), [`authz`], [`event`] (change records)
//! - L1 adapters: [`xsd`] (libxml), [`storage`] (traits, change feed, sled and memory
//!   backends), [`upstream`] (XCAP HTTP client to remote XDMS nodes), [`alloc`]
//! - L2 services: [`appusage`], [`xdms::service`], [`decision`]
//! - L3 edges: [`xdms::http`], [`proxy`], [`admin`], [`body`], [`serve`], [`tls`]
//! - L4 composition: [`config`], [`app`], [`cli`], [`cli_user`], [`telemetry`], [`metrics`]
//!
//! The write path: the proxy authenticates and routes → the XDMS splices, validates and
//! commits with a compare-and-swap that journals the document and its change record in one
//! frame → the 2xx goes out once durable, and the change feed hands the record to every reader.

pub mod admin;
pub mod alloc;
pub mod app;
pub mod appusage;
pub mod auth;
pub mod authz;
pub mod body;
pub mod cli;
pub mod cli_import;
pub mod cli_user;
pub mod config;
pub mod decision;
pub mod event;
pub mod identity;
pub mod im;
pub mod import_openxcap;
pub mod metrics;
pub mod notifier;
pub mod policy;
pub mod proxy;
pub mod serve;
pub mod sip;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod xcap;
pub mod xcap_diff;
pub mod xdms;
pub mod xml;
pub mod xsd;
