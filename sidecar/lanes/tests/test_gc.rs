use crate::common::TestEnv;

#[test]
fn worktrees_are_listed_and_gc_keeps_work_and_removes_the_rest() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let clean = env.worktree(&repo, "clean");
    let dirty = env.worktree(&repo, "dirty");
    let unmerged = env.worktree(&repo, "unmerged");
    let busy = env.worktree(&repo, "busy");
    let gone = env.worktree(&repo, "gone");
    std::fs::write(dirty.join("src/a.rs"), "uncommitted\n").expect("write");
    std::fs::write(unmerged.join("new.rs"), "work\n").expect("write");
    env.git(&unmerged, &["add", "new.rs"]);
    env.git(&unmerged, &["commit", "-qm", "unmerged work"]);
    env.lanes(&busy, &["--session", "worker", "claim", "src/b.rs"]).success();
    env.git(&repo, &["worktree", "lock", "--reason", "agent crashed", &gone.to_string_lossy()]);
    std::fs::remove_dir_all(&gone).expect("rm");

    let listed = env.lanes(&repo, &["--json", "worktrees"]).success().json();
    let find = |name: &str| {
        listed["worktrees"]
            .as_array()
            .expect("worktrees")
            .iter()
            .find(|w| w["path"].as_str().is_some_and(|p| p.ends_with(name)))
            .cloned()
            .expect(name)
    };
    assert_eq!(find("/r")["main"], true);
    assert_eq!(find("dirty")["dirty_files"], 1);
    assert_eq!(find("unmerged")["ahead"], 1);
    assert_eq!(find("busy")["claims"], 1);
    assert_eq!(find("gone")["locked"], "agent crashed");

    let plan = env.lanes(&repo, &["--json", "gc", "--dry-run"]).success().json();
    assert!(clean.exists(), "a dry run removed something");
    let action = |report: &serde_json::Value, name: &str| {
        report["worktrees"]
            .as_array()
            .expect("list")
            .iter()
            .find(|w| w["path"].as_str().is_some_and(|p| p.ends_with(name)))
            .map(|w| w["action"].as_str().expect("action").to_owned())
            .expect(name)
    };
    assert_eq!(action(&plan, "clean"), "removed");
    let done = env.lanes(&repo, &["--json", "gc"]).success().json();
    assert_eq!(action(&done, "clean"), "removed");
    assert_eq!(action(&done, "dirty"), "kept");
    assert_eq!(action(&done, "unmerged"), "kept");
    assert_eq!(action(&done, "busy"), "kept");
    assert_eq!(action(&done, "gone"), "pruned");
    assert!(!clean.exists() && dirty.exists() && unmerged.exists() && busy.exists());
    assert!(!env.git(&repo, &["branch", "--list", "clean"]).contains("clean"), "the clean worktree's branch was kept");
    assert!(!env.git(&repo, &["worktree", "list"]).contains("gone"));

    env.lanes(&busy, &["--session", "worker", "release", "--all"]).success();
    let forced = env.lanes(&repo, &["--json", "gc", "--force"]).success().json();
    assert_eq!(action(&forced, "dirty"), "removed");
    assert_eq!(action(&forced, "unmerged"), "removed");
    assert!(!dirty.exists() && !unmerged.exists() && !busy.exists());
}
