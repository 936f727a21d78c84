//! Integration tests of the `lanes` binary and its sidecar, run as real processes in a hermetic
//! environment (temporary HOME and runtime dir, no global git config). One test binary, as in jj.

mod common;

/// Checkpoints and rewinds with a private index.
mod test_checkpoints;
/// The CLI contract: exit codes, JSON shapes, errors that change nothing.
mod test_cli;
/// kill -9 under load loses no granted claim.
mod test_crash;
/// `lanes demo` runs end to end.
mod test_demo;
/// lanes worktrees and lanes gc.
mod test_gc;
/// Git hooks: trailers, chaining, linked worktrees, explain.
mod test_git;
/// The shared hub across machines: SQLite, a 3-member etcd cluster, tokens, failover, the outbox.
mod test_hub;
/// The landing queue: order, blocked entries, a moving base, kill -9 mid-landing, a dirty base checkout.
mod test_land;
/// Auto-start, races, stale sockets, version mismatch, stop and idle exit.
mod test_lifecycle;
/// Claims follow the work: pending work, latent work, shell edits, the commit guard.
mod test_pending;
/// The source tree: which code runs in which process, and where each wire method is handled.
mod test_rooms;
/// Symlinks into other worktrees, worktree names that are paths, trace logs.
mod test_security;
/// Sessions: prompts with secrets masked, retention of ended sessions.
mod test_sessions;
/// The task board: dependencies, next, done, lapses, racing agents.
mod test_tasks;
/// Team templates.
mod test_team;
/// The web view (the hub's and `lanes web`'s) in a real headless Chromium.
mod test_web;
/// The wire: malformed JSON-RPC, unknown methods, oversized lines, disconnects, racing clients.
mod test_wire;
/// Claims keyed to worktrees; a removed worktree's claims are dropped.
mod test_worktrees;

#[test]
fn no_forgotten_test_files() {
    // The running test's directory, not the one it was compiled in: CI reuses one target dir across clones.
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("tests");
    let listed = include_str!("runner.rs");
    for entry in std::fs::read_dir(dir).expect("tests dir") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        if let Some(module) = name.strip_prefix("test_").and_then(|n| n.strip_suffix(".rs")) {
            assert!(listed.contains(&format!("mod test_{module};")), "tests/{name} is not listed in runner.rs");
        }
    }
}
