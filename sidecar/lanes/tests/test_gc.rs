use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::{TestEnv, Wire};

/// The action gc reported for the worktree whose path ends with `name`.
fn action(report: &Value, name: &str) -> String {
    report["worktrees"]
        .as_array()
        .expect("list")
        .iter()
        .find(|w| w["path"].as_str().is_some_and(|p| p.ends_with(name)))
        .map(|w| w["action"].as_str().expect("action").to_owned())
        .unwrap_or_else(|| panic!("{name} not in {report}"))
}

/// A worktree lanes makes for a subagent (Claude Code's WorktreeCreate), as the hook asks for it.
fn agent_worktree(env: &TestEnv, repo: &Path, session: &str, name: &str) -> PathBuf {
    let (socket, _) = env.start_sidecar(repo);
    let reply = Wire::connect(&socket)
        .call("worktree.create", json!({"session": session, "cwd": repo.to_string_lossy(), "name": name}));
    PathBuf::from(reply["result"]["path"].as_str().unwrap_or_else(|| panic!("worktree.create: {reply}")))
}

#[test]
fn worktrees_are_listed_with_their_facts() {
    let env = TestEnv::new();
    let repo = env.repo("r");
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
    assert_eq!(listed["base"], "main");
    assert_eq!(find("/r")["main"], true);
    assert_eq!(find("dirty")["dirty_files"], 1);
    assert_eq!(find("unmerged")["ahead"], 1);
    assert_eq!(find("busy")["claims"], 1);
    assert_eq!(find("gone")["locked"], "agent crashed");

    // A person's worktrees are never gc's, clean or not; a locked one whose directory is gone stays too.
    let done = env.lanes(&repo, &["--json", "gc"]).success().json();
    for name in ["dirty", "unmerged", "busy", "gone"] {
        assert_eq!(action(&done, name), "kept", "{name}: {done}");
    }
    let forced = env.lanes(&repo, &["--json", "gc", "--force"]).success().json();
    for name in ["dirty", "unmerged", "busy"] {
        assert_eq!(action(&forced, name), "kept", "--force took a person's worktree {name}: {forced}");
    }
    assert!(dirty.exists() && unmerged.exists() && busy.exists());
    assert!(env.git(&repo, &["worktree", "list"]).contains("gone"), "a locked worktree was pruned");
}

#[test]
fn gc_removes_only_finished_agent_worktrees_that_are_clean_and_merged() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let merged = agent_worktree(&env, &repo, "s1", "agent-merged");
    let dirty = agent_worktree(&env, &repo, "s1", "agent-dirty");
    let unmerged = agent_worktree(&env, &repo, "s1", "agent-unmerged");
    let live = agent_worktree(&env, &repo, "s2", "agent-live");
    let lost = agent_worktree(&env, &repo, "s1", "agent-lost");
    std::fs::remove_dir_all(&lost).expect("rm");
    let person = env.worktree(&repo, "feat3");
    // Another git's `worktree add` under way: its admin dir exists, its files not yet. A `git worktree prune`
    // would delete it under that git's feet.
    let being_added = repo.join(".git/worktrees/being-added");
    std::fs::create_dir_all(&being_added).expect("mkdir");
    let branch_of = |tree: &Path| env.git(tree, &["rev-parse", "--abbrev-ref", "HEAD"]).trim().to_owned();
    let merged_branch = branch_of(&merged);

    std::fs::write(merged.join("done.rs"), "merged work\n").expect("write");
    env.git(&merged, &["add", "done.rs"]);
    env.git(&merged, &["commit", "-qm", "merged work"]);
    env.git(&repo, &["merge", "-q", "--ff-only", &merged_branch]);
    std::fs::write(dirty.join("src/a.rs"), "uncommitted\n").expect("write");
    std::fs::write(unmerged.join("new.rs"), "work\n").expect("write");
    env.git(&unmerged, &["add", "new.rs"]);
    env.git(&unmerged, &["commit", "-qm", "unmerged"]);
    env.lanes(&repo, &["--session", "s1", "claim", "docs"]).success();
    env.lanes(&repo, &["--session", "s2", "claim", "src/b.rs"]).success();
    // s1 ends; s2 (whose agent works in `live`) stays.
    env.lanes(&repo, &["--session", "s1", "release", "--all"]).success();
    let (socket, _) = env.start_sidecar(&repo);
    Wire::connect(&socket).call("session.end", json!({"session": "s1"}));

    let plan = env.lanes(&repo, &["--json", "gc", "--dry-run"]).success().json();
    assert_eq!(action(&plan, "agent-merged"), "would remove");
    let text = env.lanes(&repo, &["gc", "--dry-run"]).success().stdout;
    assert!(text.contains("would remove") && !text.contains("removed"), "{text}");
    assert!(merged.exists(), "a dry run removed something");

    let done = env.lanes(&repo, &["--json", "gc"]).success().json();
    assert_eq!(action(&done, "agent-merged"), "removed");
    assert_eq!(action(&done, "agent-dirty"), "kept");
    assert_eq!(action(&done, "agent-unmerged"), "kept");
    assert_eq!(action(&done, "agent-live"), "kept");
    assert_eq!(action(&done, "feat3"), "kept");
    assert!(!merged.exists() && dirty.exists() && unmerged.exists() && live.exists() && person.exists());
    assert_eq!(action(&done, "agent-lost"), "pruned");
    assert!(!env.git(&repo, &["worktree", "list"]).contains("agent-lost"), "the gone worktree is still listed");
    assert!(being_added.exists(), "gc deleted the admin dir of a worktree another git was adding");
    assert!(env.git(&repo, &["branch", "--list", &merged_branch]).is_empty(), "the agent's merged branch was kept");
    assert!(env.git(&repo, &["branch", "--list", "feat3"]).contains("feat3"));
    assert!(env.git(&repo, &["branch", "--list", "main"]).contains("main"));

    let forced = env.lanes(&repo, &["--json", "gc", "--force"]).success().json();
    assert_eq!(action(&forced, "agent-dirty"), "removed");
    assert_eq!(action(&forced, "agent-unmerged"), "removed");
    assert_eq!(action(&forced, "agent-live"), "kept", "--force took a live session's worktree");
    assert_eq!(action(&forced, "feat3"), "kept");
    assert!(!dirty.exists() && !unmerged.exists() && live.exists() && person.exists());
}

#[test]
fn gc_in_a_bare_repository_keeps_the_only_checkout_and_its_branch() {
    let env = TestEnv::new();
    let source = env.repo("src");
    let bare = env.root().join("bare.git");
    env.git(&env.root(), &["clone", "-q", "--bare", &source.to_string_lossy(), &bare.to_string_lossy()]);
    let checkout = env.root().join("bare-wt");
    env.git(&bare, &["worktree", "add", "-q", &checkout.to_string_lossy(), "main"]);

    let done = env.lanes(&checkout, &["--json", "gc"]).success().json();
    assert_eq!(action(&done, "bare-wt"), "kept", "{done}");
    assert!(checkout.join("src/a.rs").exists(), "gc removed the user's checkout");
    assert!(env.git(&bare, &["branch", "--list", "main"]).contains("main"), "gc deleted main");
    env.lanes(&checkout, &["sidecar", "stop"]).success();
}

#[test]
fn team_worktrees_are_not_offered_for_removal() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.lanes(&repo, &["team", "up", "feature"]).success();
    let plan = env.lanes(&repo, &["--json", "gc", "--dry-run"]).success().json();
    let trees = plan["worktrees"].as_array().expect("list");
    assert!(!trees.is_empty());
    assert!(trees.iter().all(|w| w["action"] == "kept"), "{plan}");
}

/// `--force` never takes a worktree someone holds a claim in, even when the agent that made it ended; and a
/// worktree whose only change is an untracked file counts as dirty.
#[test]
fn gc_force_keeps_a_worktree_with_a_live_claim_and_untracked_files_count_as_changes() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let claimed = agent_worktree(&env, &repo, "s3", "agent-claimed");
    let untracked = agent_worktree(&env, &repo, "s3", "agent-untracked");
    std::fs::write(untracked.join("notes.txt"), "only an untracked file\n").expect("write");
    let (socket, _) = env.start_sidecar(&repo);
    Wire::connect(&socket).call("session.end", json!({"session": "s3"}));
    env.lanes(&claimed, &["--session", "s4", "claim", "src/a.rs"]).success();

    let plan = env.lanes(&repo, &["--json", "gc"]).success().json();
    assert_eq!(action(&plan, "agent-untracked"), "kept", "{plan}");
    assert!(plan.to_string().contains("uncommitted change"), "{plan}");
    let forced = env.lanes(&repo, &["--json", "gc", "--force"]).success().json();
    assert_eq!(action(&forced, "agent-claimed"), "kept", "--force took a worktree with a live claim: {forced}");
    assert!(claimed.exists());
    assert_eq!(action(&forced, "agent-untracked"), "removed");
}
