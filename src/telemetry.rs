//! Logging set-up (design.md §7): structured `tracing` output to stderr, filter from the
//! configuration or `RUST_LOG`. Document bodies and credentials are never logged above trace.

use tracing_subscriber::EnvFilter;

pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // A second init (tests) is harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
