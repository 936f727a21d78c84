use std::time::Duration;

use crate::common::{TestEnv, eventually};

#[test]
fn claims_record_their_worktree_and_contend_across_worktrees() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let feature = env.worktree(&repo, "feature");
    let claim = env.lanes(&feature, &["--session", "bob", "--json", "claim", "src/a.rs"]).success().json();
    assert_eq!(claim["claim"]["worktree"], feature.to_string_lossy().as_ref());
    // Repo-wide contention by default: the same file in the main worktree is refused.
    let refused = env.lanes(&repo, &["--session", "alice", "--json", "claim", "src/a.rs"]);
    assert_eq!(refused.code, 3);
    assert_eq!(refused.json()["error"]["conflicts"][0]["worktree"], feature.to_string_lossy().as_ref());
    // Both worktrees share one sidecar.
    assert_eq!(env.sidecar_pid(&repo), env.sidecar_pid(&feature));
}

#[test]
fn worktree_contention_makes_worktrees_independent() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    std::fs::create_dir_all(repo.join(".git/lanes")).expect("mkdir");
    std::fs::write(repo.join(".git/lanes/config.toml"), "contention = \"worktree\"\n").expect("write config");
    let feature = env.worktree(&repo, "feature");
    env.lanes(&feature, &["--session", "bob", "claim", "src/a.rs"]).success();
    env.lanes(&repo, &["--session", "alice", "claim", "src/a.rs"]).success();
    assert_eq!(env.lanes(&feature, &["--session", "carol", "claim", "src/a.rs"]).code, 3);
}

#[test]
fn claims_of_a_removed_worktree_are_dropped() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let feature = env.worktree(&repo, "feature");
    env.lanes(&feature, &["--session", "bob", "claim", "src/a.rs"]).success();
    env.git(&repo, &["worktree", "remove", "--force", &feature.to_string_lossy()]);
    let freed = eventually(Duration::from_secs(15), || {
        env.lanes(&repo, &["--session", "alice", "claim", "src/a.rs"]).code == 0
    });
    assert!(
        freed,
        "the removed worktree's claim still blocks: {} {}",
        env.lanes(&repo, &["--json", "status"]).stdout,
        std::fs::read_to_string(repo.join(".git/lanes/sidecar.log")).unwrap_or_default()
    );
    let events = env.lanes(&repo, &["events"]).success().stdout;
    assert!(events.contains("worktree_gone"), "{events}");
}
