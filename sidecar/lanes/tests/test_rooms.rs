//! The folder tree says which process runs which code (ARCHITECTURE.md, "Code map"): `src/cli/` runs in the
//! user's `lanes` process, `src/daemon/` in the sidecar, and what both read (`config.rs`, `git.rs`,
//! `scopes.rs`) names neither. Each wire method is registered by exactly one domain file of
//! `src/daemon/rpc/`.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    // The running test's directory, not the one it was compiled in: CI reuses one target dir across clones.
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("src")
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the source dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read a source file");
            found.push((path, text));
        }
    }
    found
}

#[test]
fn the_daemon_never_uses_the_cli_and_shared_code_uses_neither() {
    let src = src();
    for (path, text) in sources(&src.join("daemon")) {
        assert!(!text.contains("crate::cli"), "{} (sidecar code) uses the CLI", path.display());
    }
    for name in ["config.rs", "git.rs", "scopes.rs"] {
        let text = std::fs::read_to_string(src.join(name)).expect("read");
        assert!(!text.contains("crate::cli") && !text.contains("crate::daemon"), "{name} is shared code");
    }
    // The CLI talks to the sidecar over its socket; only `lanes hub claims` borrows the sidecar's hub client.
    for (path, text) in sources(&src.join("cli")) {
        let allowed = path.ends_with("cli/hub.rs");
        assert!(allowed || !text.contains("crate::daemon"), "{} (CLI code) uses the sidecar's code", path.display());
    }
}

#[test]
fn each_wire_method_is_registered_by_one_domain_file() {
    let rpc = src().join("daemon/rpc");
    let registrations: Vec<(String, String)> = sources(&rpc)
        .into_iter()
        .flat_map(|(path, text)| {
            let file = path.file_name().expect("name").to_string_lossy().into_owned();
            text.lines()
                .filter_map(|line| line.trim().strip_prefix("add(module, method::"))
                .map(|rest| rest.split(',').next().unwrap_or_default().to_owned())
                .map(|name| (name, file.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let proto = std::fs::read_to_string(src().join("../../proto/src/lib.rs")).expect("read the protocol crate");
    let methods =
        proto.split("pub mod method {").nth(1).expect("the method module").split("\n}").next().unwrap_or_default();
    let names: Vec<&str> = methods
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert!(names.len() > 20, "the method list was not found: {names:?}");
    for name in names {
        let files: Vec<&str> = registrations.iter().filter(|(n, _)| n == name).map(|(_, f)| f.as_str()).collect();
        assert_eq!(files.len(), 1, "method::{name} is registered in {files:?}, not in exactly one domain file");
        assert_ne!(files[0], "mod.rs", "method::{name} is registered in the kernel, not in its domain");
    }
}
