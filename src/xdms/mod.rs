//! The XDMS: the XCAP resource engine (RFC 4825 §7, §8) over a `DocumentStore`, and its HTTP
//! edge. `service` holds the protocol logic and knows nothing of HTTP; `http` and `respond`
//! are the only places HTTP types appear.

pub mod cache;
pub mod changes;
pub mod generated;
pub mod http;
pub mod locks;
pub mod operator;
pub mod respond;
pub mod service;
pub mod target;
pub mod unique;
pub mod validate;

pub use service::{ChangeWatch, Method, XcapRequest, XcapResponse, Xdms, XdmsSettings};
