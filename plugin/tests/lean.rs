//! Architecture invariant: the hook binary starts lean. None of the heavy crates may be in its normal
//! dependency tree (DESIGN.md §3); this test reads `cargo tree` and fails if one appears.

use std::process::Command;

#[test]
fn hook_depends_on_no_heavy_crate() {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "-p", "lanes-hook", "-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
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
