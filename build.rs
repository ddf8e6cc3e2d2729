//! Build script: embeds the shipped application-usage descriptors (`app-usages/*.toml`) and
//! schemas (`schemas/*.xsd`) into the binary, so an installed `xcapd` runs from any directory
//! (issue #10 item 6). `server.app_usages_dir` / `server.schemas_dir` add to or replace them at
//! run time.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // The PostgreSQL storage suites (issue #15) are built when the tests have a database.
    println!("cargo::rustc-check-cfg=cfg(xcapd_pg)");
    println!("cargo:rerun-if-env-changed=XCAPD_TEST_POSTGRES_URL");
    if std::env::var_os("XCAPD_TEST_POSTGRES_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo:rustc-cfg=xcapd_pg");
    }
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut code = String::new();
    for (name, dir, ext) in [
        ("APP_USAGES", "app-usages", "toml"),
        ("SCHEMAS", "schemas", "xsd"),
    ] {
        let dir = Path::new(&root).join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().and_then(|e| e.to_str()) == Some(ext))
            .collect();
        files.sort();
        let _ = writeln!(code, "pub static {name}: &[(&str, &[u8])] = &[");
        for path in files {
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("UTF-8 file name");
            let _ = writeln!(
                code,
                "    ({file:?}, include_bytes!({:?})),",
                path.display().to_string()
            );
        }
        let _ = writeln!(code, "];");
    }
    std::fs::write(Path::new(&out).join("embedded_usages.rs"), code)
        .expect("cannot write embedded_usages.rs");
}
