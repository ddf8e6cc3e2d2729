//! Keeps the layer table of design.md §2 true: the pure core does no I/O and names no
//! framework, and only the composition root names concrete storage backends.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn check(dir: &str, forbidden: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut files = Vec::new();
    if root.is_dir() {
        rust_files(&root, &mut files);
    } else {
        files.push(root.with_extension("rs"));
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for word in forbidden {
            assert!(
                !text
                    .lines()
                    .any(|l| !l.trim_start().starts_with("//") && l.contains(word)),
                "{} mentions {word}: layer violation (design.md §2)",
                f.display()
            );
        }
    }
}

const IO: &[&str] = &[
    "tokio",
    "axum",
    "hyper",
    "sled",
    "libxml",
    "std::fs",
    "std::net",
    "crate::config",
    "crate::storage::sled",
    "reqwest",
];

#[test]
fn l0_core_has_no_io() {
    check("xcap", IO);
    check("xml", IO);
    check("authz", IO);
    check("appusage/hooks", IO);
    check("policy", IO);
    check("event", IO);
    check("identity", IO);
    // The SIP syntax and transaction state machines are pure too (issue #13 scope 1).
    check("sip/message", IO);
    check("sip/header", IO);
    check("sip/transaction", IO);
    check("xcap_diff", IO);
    check("xcap_diff", &["crate::storage", "crate::xdms"]);
    check(
        "identity",
        &[
            "crate::storage",
            "crate::auth",
            "crate::policy",
            "crate::appusage",
        ],
    );
    // Issue #12 scope 5: change records and document keys are pure data of the core.
    check("event", &["crate::storage"]);
    check("xcap", &["crate::storage"]);
}

/// Adapters never call up: storage knows the core's types (keys, change records, HA1) and
/// nothing of the services, edges or composition that use it.
#[test]
fn storage_never_calls_up() {
    check(
        "storage",
        &[
            "crate::xdms",
            "crate::appusage",
            "crate::decision",
            "crate::admin",
            "crate::proxy",
            "crate::app::",
            "crate::config",
            "crate::metrics",
            "crate::upstream",
        ],
    );
}

/// Edges never import each other (design.md §2): the admin API, the XCAP HTTP handlers, the
/// decision HTTP handler and the proxy each reach only services below them.
#[test]
fn edges_do_not_import_each_other() {
    check("admin", &["crate::xdms::http", "crate::decision::http"]);
    check("xdms", &["crate::admin", "crate::decision::http"]);
    check("decision", &["crate::admin", "crate::xdms::http"]);
    check(
        "proxy",
        &["crate::admin", "crate::xdms::http", "crate::decision::http"],
    );
}

#[test]
fn only_the_composition_root_names_backends() {
    for dir in [
        "xcap", "xml", "xdms", "appusage", "xsd", "admin", "decision", "proxy", "auth", "event",
    ] {
        check(
            dir,
            &[
                "SledStore",
                "MemoryStore",
                "SledSubscriptions",
                "MemorySubscriptions",
                "SledMessages",
                "MemoryMessages",
            ],
        );
    }
}

#[test]
fn service_layer_has_no_http_types() {
    for f in [
        "xdms/service",
        "xdms/target",
        "xdms/validate",
        "xdms/generated",
    ] {
        check(f, &["axum", "hyper", "http::"]);
    }
}

/// Issue #12 scope 3: the credential verifiers are shared by every edge (HTTP front, admin,
/// SIP next), so they hold no HTTP or runtime types and import no edge.
#[test]
fn auth_is_pure_and_shared() {
    check(
        "auth",
        &[
            "tokio",
            "axum",
            "hyper",
            "http::",
            "sled",
            "libxml",
            "std::fs",
            "crate::config",
            "crate::proxy",
            "reqwest",
        ],
    );
}

/// Edges never import each other; services and adapters never import an edge.
#[test]
fn nothing_reaches_into_the_proxy_edge() {
    for dir in [
        "admin", "decision", "xdms", "storage", "upstream", "auth", "appusage", "notifier",
    ] {
        check(dir, &["crate::proxy"]);
    }
}
