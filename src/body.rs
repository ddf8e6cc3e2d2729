//! Reading request bodies at the HTTP edges (RFC 9112 §6, §7.1): a body over the limit is 413,
//! a body whose framing is broken (bad chunk size, chunk longer than announced, bare LF in the
//! chunked coding, a connection cut mid-body) is a malformed request, 400 (issue #11 item 8).
//! Shared by the XCAP, admin and decision edges so they answer alike.

use axum::body::Body;
use bytes::Bytes;
use http_body_util::LengthLimitError;

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Longer than the limit: 413.
    #[error("request body too large")]
    TooLarge,
    /// Broken message framing: 400.
    #[error("malformed request body framing")]
    Malformed,
}

/// Buffers at most `limit` bytes of `body`.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if is_length_limit(&e) {
            BodyError::TooLarge
        } else {
            BodyError::Malformed
        }
    })
}

/// Whether the length limit, and not the transport, ended the read.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}
