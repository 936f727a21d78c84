use serde_json::Value;

use crate::common::TestEnv;

fn checkpoint(env: &TestEnv, repo: &std::path::Path, message: &str) -> Value {
    env.lanes(repo, &["--session", "s1", "--json", "checkpoint", "-m", message]).success().json()
}

#[test]
fn checkpoints_and_rewinds_never_touch_the_users_index_head_branches_or_stash() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    std::fs::write(repo.join("src/a.rs"), "staged change\n").expect("write");
    env.git(&repo, &["add", "src/a.rs"]);
    std::fs::write(repo.join("notes.txt"), "untracked\n").expect("write");
    std::fs::write(repo.join(".gitignore"), "*.log\n").expect("write");
    std::fs::write(repo.join("debug.log"), "ignored\n").expect("write");
    env.git(&repo, &["stash", "list"]);
    let before = (
        env.git(&repo, &["status", "--porcelain"]),
        env.git(&repo, &["rev-parse", "HEAD"]),
        env.git(&repo, &["branch", "--list"]),
    );

    let first = checkpoint(&env, &repo, "first");
    let id = first["checkpoint"]["id"].as_str().expect("id").to_owned();
    let commit = first["checkpoint"]["commit"].as_str().expect("commit").to_owned();
    let files = env.git(&repo, &["ls-tree", "-r", "--name-only", &commit]);
    assert!(files.contains("notes.txt"), "untracked files belong in a checkpoint: {files}");
    assert!(!files.contains("debug.log"), "ignored files do not: {files}");
    assert_eq!(env.git(&repo, &["show", &format!("{commit}:src/a.rs")]), "staged change\n");
    assert_eq!(env.git(&repo, &["rev-parse", "refs/lanes/checkpoints/s1"]).trim(), commit);
    // Unchanged: no new checkpoint.
    assert!(checkpoint(&env, &repo, "again")["checkpoint"].is_null());

    std::fs::write(repo.join("src/a.rs"), "broken\n").expect("write");
    std::fs::remove_file(repo.join("notes.txt")).expect("rm");
    std::fs::write(repo.join("scratch.rs"), "new\n").expect("write");
    let after = (
        env.git(&repo, &["status", "--porcelain"]),
        env.git(&repo, &["rev-parse", "HEAD"]),
        env.git(&repo, &["branch", "--list"]),
    );
    assert_eq!(before.1, after.1, "HEAD moved");
    assert_eq!(before.2, after.2, "branches changed");

    let plan = env.lanes(&repo, &["--session", "s1", "--json", "rewind", &id, "--dry-run"]).success().json();
    let mut changes: Vec<String> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| format!("{} {}", c["action"].as_str().expect("a"), c["path"].as_str().expect("p")))
        .collect();
    changes.sort();
    assert_eq!(changes, ["delete scratch.rs", "modify src/a.rs", "restore notes.txt"]);
    assert_eq!(std::fs::read_to_string(repo.join("src/a.rs")).expect("read"), "broken\n", "a dry run wrote files");

    // Another live session holds src/: refused unless --force or narrowed with --paths.
    env.lanes(&repo, &["--session", "s2", "claim", "src"]).success();
    let refused = env.lanes(&repo, &["--session", "s1", "--json", "rewind", &id]);
    assert_eq!(refused.code, 3);
    assert_eq!(refused.json()["error"]["code"], "conflict");
    let partial = env
        .lanes(&repo, &["--session", "s1", "--json", "rewind", &id, "--paths", "notes.txt", "scratch.rs"])
        .success()
        .json();
    assert!(partial["backup"].is_string(), "a rewind leaves a checkpoint of what it replaced");
    assert_eq!(std::fs::read_to_string(repo.join("notes.txt")).expect("read"), "untracked\n");
    assert!(!repo.join("scratch.rs").exists());
    assert_eq!(std::fs::read_to_string(repo.join("src/a.rs")).expect("read"), "broken\n");

    let forced = env.lanes(&repo, &["--session", "s1", "--json", "rewind", &id, "--force"]).success().json();
    assert_eq!(std::fs::read_to_string(repo.join("src/a.rs")).expect("read"), "staged change\n");
    // The rewind can be undone.
    let backup = forced["backup"].as_str().expect("backup").to_owned();
    env.lanes(&repo, &["--session", "s1", "rewind", &backup, "--force"]).success();
    assert_eq!(std::fs::read_to_string(repo.join("src/a.rs")).expect("read"), "broken\n");

    let index_now = env.git(&repo, &["diff", "--cached", "--name-only"]);
    assert_eq!(index_now.trim(), "src/a.rs", "the user's index changed");
    assert_eq!(env.git(&repo, &["show", ":src/a.rs"]), "staged change\n", "the user's staged content changed");
    assert_eq!(env.git(&repo, &["stash", "list"]), "");
    let listed = env.lanes(&repo, &["--session", "s1", "--json", "checkpoints"]).success().json();
    assert!(listed["checkpoints"].as_array().expect("list").len() >= 3);
    assert_eq!(env.lanes(&repo, &["--session", "s1", "--json", "rewind", "nothex!"]).code, 3);
}

#[test]
fn a_checkpoint_lists_the_files_changed_since_the_sessions_last_one() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let files = |v: &Value| -> Vec<String> {
        let mut files: Vec<String> = v["checkpoint"]["files"]
            .as_array()
            .unwrap_or_else(|| panic!("files: {v}"))
            .iter()
            .map(|f| f.as_str().expect("path").to_owned())
            .collect();
        files.sort();
        files
    };
    std::fs::write(repo.join("src/a.rs"), "changed\n").expect("write");
    assert_eq!(files(&checkpoint(&env, &repo, "one")), ["src/a.rs"], "the first one: against HEAD");
    std::fs::write(repo.join("src/b.rs"), "changed\n").expect("write");
    std::fs::write(repo.join("new file.rs"), "new\n").expect("write");
    std::fs::remove_file(repo.join("docs/guide.md")).expect("rm");
    assert_eq!(
        files(&checkpoint(&env, &repo, "two")),
        ["docs/guide.md", "new file.rs", "src/b.rs"],
        "the next: against the session's previous checkpoint"
    );
}

#[test]
fn rewind_paths_resolve_like_claims_and_a_dry_run_marks_held_files() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    std::fs::write(repo.join("src/a.rs"), "checkpointed\n").expect("write");
    let id = checkpoint(&env, &repo, "before")["checkpoint"]["id"].as_str().expect("id").to_owned();
    std::fs::write(repo.join("src/a.rs"), "changed since\n").expect("write");
    let src = repo.join("src");
    let plan =
        env.lanes(&src, &["--session", "s1", "--json", "rewind", &id, "--dry-run", "--paths", "a.rs"]).success().json();
    assert_eq!(plan["changes"][0]["path"], "src/a.rs", "--paths is relative to the current directory: {plan}");
    for (bad, why) in [("../../outside", "outside"), ("nosuch.rs", "not in checkpoint")] {
        let run = env.lanes(&src, &["--session", "s1", "--json", "rewind", &id, "--dry-run", "--paths", bad]);
        assert_eq!(run.code, 2, "{bad}: {}", run.stdout);
        assert!(run.stdout.contains(why), "{bad}: {}", run.stdout);
    }
    env.lanes(&repo, &["--session", "s2", "claim", "src/a.rs"]).success();
    let plan = env.lanes(&repo, &["--session", "s1", "--json", "rewind", &id, "--dry-run"]).success().json();
    assert_eq!(plan["changes"][0]["held_by"], "s2", "a dry run shows the plan, marking held files: {plan}");
    assert_eq!(env.lanes(&repo, &["--session", "s1", "--json", "rewind", &id]).code, 3);
    let done = env.lanes(&repo, &["--session", "s1", "--json", "rewind", &id, "--force"]).success().json();
    let backup = done["backup"].as_str().expect("backup").to_owned();
    let listed = env.lanes(&repo, &["--session", "s1", "--json", "checkpoints"]).success().json();
    let entry = listed["checkpoints"].as_array().expect("list").iter().find(|c| c["id"] == backup.as_str()).cloned();
    let files = entry.map(|c| c["files"].clone()).unwrap_or_default();
    assert!(files.as_array().is_some_and(|f| f.contains(&serde_json::json!("src/a.rs"))), "backup files: {files}");
}
