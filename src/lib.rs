//! xcapd: an XCAP (RFC 4825) / OMA XDM server suite.
//!
//! Layers (design.md §2; imports flow downward only):
//! - L0 pure core: [`xcap`], [`xml`], [`policy`], [`auth`], [`event`], [`authz`]
//! - L1 adapters: [`xsd`] (libxml), [`storage`] (sled, memory), [`upstream`] (XCAP HTTP client
//!   to remote XDMS nodes), [`alloc`]
//! - L2 services: [`appusage`], [`xdms::service`], [`decision`]
//! - L3 edges: [`xdms::http`], [`proxy`], [`admin`], [`body`]
//! - L4 composition: [`config`], [`app`], [`serve`], [`cli`], [`telemetry`], [`metrics`]

pub mod admin;
pub mod alloc;
pub mod app;
pub mod appusage;
pub mod auth;
pub mod authz;
pub mod body;
pub mod cli;
pub mod cli_user;
pub mod config;
pub mod decision;
pub mod event;
pub mod identity;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod serve;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod xcap;
pub mod xdms;
pub mod xml;
pub mod xsd;
