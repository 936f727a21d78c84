//! Architecture invariant: the hook binary starts lean. None of the heavy crates may be in its normal
//! dependency tree (DESIGN.md §3); this test reads `cargo tree` and fails if one appears.

use std::process::Command;

#[test]
fn hook_depends_on_no_heavy_crate() {
    // From the running test's environment, not the build's: CI reuses one target dir across clones, and a
    // binary built in another checkout must not look there.
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["tree", "-p", "lanes-hook", "-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .output()
        .expect("run cargo tree");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(tree.contains("lanes-proto"), "unexpected tree:\n{tree}");
    for heavy in ["tokio", "clap", "jsonrpsee", "git2", "tracing-subscriber", "rusqlite"] {
        let found = tree.lines().any(|line| line.split_whitespace().next() == Some(heavy));
        assert!(!found, "lanes-hook depends on {heavy}:\n{tree}");
    }
}
