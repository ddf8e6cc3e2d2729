//! The admin API's bearer token (RFC 6750 §2.1): where it comes from (configuration, a file, or
//! one generated on first start and kept in the data directory) and the constant-time check
//! that guards every protected route.

use super::{AdminError, AdminState};
use crate::auth::jwt::bearer_token;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

/// Shortest admin token accepted: guessing must stay out of reach even without throttling.
pub const MIN_TOKEN_LEN: usize = 16;
/// Name of the generated token file inside the data directory.
pub const GENERATED_TOKEN_FILE: &str = "admin-token";

/// Picks the admin token: `token` when set, else the content of `token_file` (surrounding
/// whitespace dropped), else the one in `<data_dir>/admin-token`, generated (256 random bits,
/// hex, file mode 0600) when that file does not exist yet. Setting both `token` and
/// `token_file` is refused as ambiguous; so is a token shorter than [`MIN_TOKEN_LEN`] or with
/// characters that cannot travel in an HTTP header unchanged.
pub fn resolve_token(token: &str, token_file: &str, data_dir: &Path) -> Result<String, AdminError> {
    let token = match (token.is_empty(), token_file.is_empty()) {
        (false, false) => {
            return Err(AdminError::Token(
                "set either admin.token or admin.token_file, not both".into(),
            ))
        }
        (false, true) => token.to_string(),
        (true, false) => read_token_file(Path::new(token_file))?,
        (true, true) => generated_token(data_dir)?,
    };
    check_token(&token)?;
    Ok(token)
}

fn check_token(token: &str) -> Result<(), AdminError> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(AdminError::Token(format!(
            "the admin token must have at least {MIN_TOKEN_LEN} characters"
        )));
    }
    // RFC 6750 §2.1 b64token characters are a subset of visible ASCII; refuse whitespace and
    // controls, which would never match what a client sends.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AdminError::Token(
            "the admin token must be visible ASCII without spaces".into(),
        ));
    }
    Ok(())
}

fn read_token_file(path: &Path) -> Result<String, AdminError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AdminError::Token(format!("cannot read {}: {e}", path.display())))?;
    warn_if_readable_by_others(path);
    Ok(text.trim().to_string())
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                target: "xcapd::admin",
                path = %path.display(),
                "the admin token file is readable by other users; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Reads `<data_dir>/admin-token`, creating it with a fresh random token first if needed.
fn generated_token(data_dir: &Path) -> Result<String, AdminError> {
    let path = data_dir.join(GENERATED_TOKEN_FILE);
    if path.exists() {
        return read_token_file(&path);
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| AdminError::Token(format!("cannot create {}: {e}", data_dir.display())))?;
    let mut random = [0u8; 32];
    getrandom::getrandom(&mut random)
        .map_err(|e| AdminError::Token(format!("no randomness: {e}")))?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{token}\n").as_bytes()).map(|_| f))
        .and_then(|f| f.sync_all());
    match written {
        Ok(()) => {
            tracing::info!(
                target: "xcapd::admin",
                path = %path.display(),
                "generated the admin API token"
            );
            Ok(token)
        }
        // Another process created it between our check and our create: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_token_file(&path),
        Err(e) => Err(AdminError::Token(format!(
            "cannot write {}: {e}",
            path.display()
        ))),
    }
}

/// Compares a presented token with the admin token without leaking, through timing, how much
/// of it matched: both are hashed to 32 bytes, which are compared in full.
pub(super) fn token_matches(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Middleware of the protected routes: 401 with a JSON body unless the request carries
/// `Authorization: Bearer <admin token>`. Refused tokens are counted as `admin` auth failures.
pub(super) async fn require_token(
    State(state): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().ok().and_then(bearer_token));
    match presented {
        Some(Some(token)) if token_matches(token, &state.token) => next.run(req).await,
        Some(_) => {
            state.metrics.auth_failure("admin");
            tracing::info!(target: "xcapd::auth", "admin API: token refused");
            AdminError::Unauthorized.into_response()
        }
        None => AdminError::Unauthorized.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_is_exact() {
        let t = "0123456789abcdef-token";
        assert!(token_matches(t, t));
        assert!(!token_matches("0123456789abcdef-tokeN", t));
        assert!(!token_matches("0123456789abcdef-token ", t));
        assert!(!token_matches("", t));
        assert!(!token_matches(&t[..t.len() - 1], t));
    }

    #[test]
    fn configured_token_wins_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let t = resolve_token("a-long-enough-token", "", dir.path()).unwrap();
        assert_eq!(t, "a-long-enough-token");
        assert!(matches!(
            resolve_token("short", "", dir.path()),
            Err(AdminError::Token(_))
        ));
        assert!(matches!(
            resolve_token("has a space in it!!", "", dir.path()),
            Err(AdminError::Token(_))
        ));
        // Nothing was generated when a token is configured.
        assert!(!dir.path().join(GENERATED_TOKEN_FILE).exists());
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        std::fs::write(&file, "  file-token-0123456789\n").unwrap();
        let t = resolve_token("", file.to_str().unwrap(), dir.path()).unwrap();
        assert_eq!(t, "file-token-0123456789");
        assert!(matches!(
            resolve_token("x-long-enough-token", file.to_str().unwrap(), dir.path()),
            Err(AdminError::Token(_))
        ));
        assert!(matches!(
            resolve_token("", dir.path().join("missing").to_str().unwrap(), dir.path()),
            Err(AdminError::Token(_))
        ));
    }

    #[test]
    fn generated_token_is_random_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = resolve_token("", "", &data).unwrap();
        assert_eq!(first.len(), 64);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        // A restart keeps the token the scripts already use.
        assert_eq!(resolve_token("", "", &data).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data.join(GENERATED_TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().unwrap();
        assert_ne!(resolve_token("", "", other.path()).unwrap(), first);
    }
}
