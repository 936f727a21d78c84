//! The landing queue with real git and real test commands: branches land in queue order; red tests,
//! conflicts and a dirty checkout block an entry with the reason, the base and the branch untouched; a base
//! that moves during a landing is caught by the compare-and-swap; a sidecar killed mid-landing loses nothing.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::{TestEnv, eventually, kill9};

fn commit_file(env: &TestEnv, tree: &Path, file: &str, text: &str) {
    if let Some(dir) = tree.join(file).parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(tree.join(file), text).expect("write");
    env.git(tree, &["add", "-A"]);
    env.git(tree, &["commit", "-q", "-m", &format!("add {file}")]);
}

fn rev(env: &TestEnv, repo: &Path, name: &str) -> String {
    env.git(repo, &["rev-parse", name]).trim().to_owned()
}

fn queue(env: &TestEnv, repo: &Path) -> Vec<Value> {
    env.lanes(repo, &["--json", "queue"]).success().json()["entries"].as_array().cloned().unwrap_or_default()
}

/// Waits until no entry is queued or landing; returns the entries.
fn settled(env: &TestEnv, repo: &Path) -> Vec<Value> {
    let done = eventually(Duration::from_secs(90), || {
        queue(env, repo).iter().all(|e| e["state"] == "landed" || e["state"] == "blocked")
    });
    assert!(done, "the queue did not settle: {:?}", queue(env, repo));
    queue(env, repo)
}

fn entry<'a>(entries: &'a [Value], branch: &str) -> &'a Value {
    entries.iter().find(|e| e["branch"] == branch).unwrap_or_else(|| panic!("no entry for {branch}: {entries:?}"))
}

#[test]
fn eight_branches_land_in_order_and_red_or_conflicting_ones_block_with_their_commits_intact() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let test = "test ! -e FAIL && echo all green";
    let mut trees = Vec::new();
    for i in 0..8 {
        let name = format!("w{i}");
        let tree = env.worktree(&repo, &name);
        match i {
            5 => commit_file(&env, &tree, "FAIL", "this branch breaks the tests\n"),
            6 => commit_file(&env, &tree, "src/a.rs", "fn a() { agent }\n"),
            _ => commit_file(&env, &tree, &format!("src/new{i}.rs"), &format!("fn new{i}() {{}}\n")),
        }
        trees.push((name, tree));
    }
    // A person changes src/a.rs on main outside lanes: w6's change of it now conflicts.
    commit_file(&env, &repo, "src/a.rs", "fn a() { person }\n");
    let tips: Vec<String> = trees.iter().map(|(name, _)| rev(&env, &repo, name)).collect();
    for (i, (name, tree)) in trees.iter().enumerate() {
        match i {
            // By branch name, and by a worktree path relative to where the command runs.
            7 => env.lanes(&repo, &["land", name, "--test", test]).success(),
            4 => env.lanes(&repo, &["land", &format!("../{name}"), "--test", test]).success(),
            _ => env.lanes(tree, &["land", "--test", test]).success(),
        };
    }
    let entries = settled(&env, &repo);

    let red = entry(&entries, "w5");
    assert_eq!(red["state"], "blocked", "{red}");
    let reason = red["result"].as_str().expect("reason");
    assert!(reason.contains("failed (exit 1)"), "{reason}");
    let conflict = entry(&entries, "w6");
    assert_eq!(conflict["state"], "blocked", "{conflict}");
    assert_eq!(conflict["conflicts"], serde_json::json!(["src/a.rs"]), "{conflict}");
    for (i, (name, _)) in trees.iter().enumerate() {
        if i == 5 || i == 6 {
            assert_eq!(rev(&env, &repo, name), tips[i], "{name}'s commits were touched");
        } else {
            assert_eq!(entry(&entries, name)["state"], "landed", "{entries:?}");
        }
    }
    // In queue order, one after the other, and nothing of the blocked ones.
    let subjects = env.git(&repo, &["log", "--reverse", "--format=%s", "main"]);
    let landed: Vec<&str> = subjects.lines().filter(|s| s.starts_with("add src/new")).collect();
    assert_eq!(
        landed,
        [
            "add src/new0.rs",
            "add src/new1.rs",
            "add src/new2.rs",
            "add src/new3.rs",
            "add src/new4.rs",
            "add src/new7.rs"
        ]
    );
    assert!(!repo.join("FAIL").exists() && env.git(&repo, &["show", "main:src/a.rs"]).contains("person"));
    // The main checkout of main followed, and is clean.
    assert!(repo.join("src/new7.rs").exists(), "the checkout of main was not updated");
    assert_eq!(env.git(&repo, &["status", "--porcelain"]), "");
    // Landing again re-queues a blocked entry; the scratch worktree is gone.
    let again = env.lanes(&trees[5].1, &["--json", "land", "--test", test]).success().json();
    assert_eq!(again["entry"]["state"], "queued");
    settled(&env, &repo);
    assert!(!env.git(&repo, &["worktree", "list"]).contains("lanes/land"), "the scratch worktree was left");
}

#[test]
fn a_base_that_moves_during_the_landing_is_caught_by_the_compare_and_swap() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let tree = env.worktree(&repo, "feature");
    commit_file(&env, &tree, "src/feature.rs", "fn feature() {}\n");
    let marker = env.root().join("moved");
    // The first test run is slow enough for a person to commit on main meanwhile.
    let test = format!(
        "if [ ! -e {m} ]; then touch {m}; cd {r} && echo person > person.txt && git add person.txt && git commit -qm person; fi",
        m = marker.display(),
        r = repo.display()
    );
    let run = env.lanes(&tree, &["--json", "land", "--test", &test, "--wait"]);
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);
    let subjects = env.git(&repo, &["log", "--format=%s", "main"]);
    assert!(subjects.starts_with("add src/feature.rs\nperson\n"), "{subjects}");
    let log = env.lanes(&repo, &["--json", "queue"]).success().json();
    assert_eq!(log["entries"][0]["state"], "landed");
    assert!(repo.join("src/feature.rs").exists() && repo.join("person.txt").exists());
}

#[test]
fn a_sidecar_killed_while_a_landing_runs_its_tests_lands_the_entry_after_it_restarts() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let tree = env.worktree(&repo, "feature");
    commit_file(&env, &tree, "src/feature.rs", "fn feature() {}\n");
    let (started, killed) = (env.root().join("started"), env.root().join("killed"));
    let test = format!("[ -e {k} ] && exit 0; touch {s}; sleep 5", k = killed.display(), s = started.display());
    let (_, pid) = env.start_sidecar(&repo);
    let before = rev(&env, &repo, "main");
    env.lanes(&tree, &["land", "--test", &test]).success();
    assert!(eventually(Duration::from_secs(20), || started.exists()), "the test never started");
    kill9(pid);
    assert!(eventually(Duration::from_secs(10), || crate::common::process_gone(pid)));
    assert_eq!(rev(&env, &repo, "main"), before, "the base moved before the tests passed");
    std::fs::write(&killed, "").expect("write");
    // Any command starts the sidecar again; the entry it was landing is landed from the start.
    let entries = settled(&env, &repo);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["state"], "landed", "{entries:?}");
    assert_eq!(env.git(&repo, &["log", "--format=%s", "-1", "main"]).trim(), "add src/feature.rs");
    assert!(!env.git(&repo, &["worktree", "list"]).contains("lanes/land"), "the scratch worktree was left");
}

#[test]
fn uncommitted_edits_in_the_base_checkout_survive_a_landing_or_block_it_when_they_overlap() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let tree = env.worktree(&repo, "feature");
    commit_file(&env, &tree, "src/feature.rs", "fn feature() {}\n");
    std::fs::write(repo.join("src/a.rs"), "a person's edit\n").expect("write");
    std::fs::write(repo.join("notes.txt"), "untracked\n").expect("write");
    env.lanes(&tree, &["land", "--wait"]).success();
    assert_eq!(std::fs::read_to_string(repo.join("src/a.rs")).expect("read"), "a person's edit\n");
    assert!(repo.join("notes.txt").exists() && repo.join("src/feature.rs").exists());
    let status = env.git(&repo, &["status", "--porcelain"]);
    assert_eq!(status, " M src/a.rs\n?? notes.txt\n", "{status}");

    // An untracked file of the same name in the base checkout: landing would overwrite it, so it blocks.
    let other = env.worktree(&repo, "other");
    commit_file(&env, &other, "docs/new.md", "the branch's\n");
    std::fs::write(repo.join("docs/new.md"), "the person's\n").expect("write");
    let before = rev(&env, &repo, "main");
    let run = env.lanes(&other, &["--json", "land", "--wait"]);
    assert_eq!(run.code, 3, "{} {}", run.stdout, run.stderr);
    assert!(
        run.json()["entry"]["result"].as_str().is_some_and(|r| r.contains("uncommitted changes")),
        "{}",
        run.stdout
    );
    assert_eq!(rev(&env, &repo, "main"), before);
    assert_eq!(std::fs::read_to_string(repo.join("docs/new.md")).expect("read"), "the person's\n");
}

#[test]
fn a_worktree_with_uncommitted_changes_or_nothing_new_is_refused_and_nothing_is_queued() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let tree = env.worktree(&repo, "feature");
    let run = env.lanes(&tree, &["--json", "land"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.json()["error"]["message"].as_str().is_some_and(|m| m.contains("nothing to land")), "{}", run.stdout);
    commit_file(&env, &tree, "src/feature.rs", "fn feature() {}\n");
    std::fs::write(tree.join("src/b.rs"), "half done\n").expect("write");
    let run = env.lanes(&tree, &["--json", "land"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let message = run.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("uncommitted changes (src/b.rs)") && message.contains("commit them first"), "{message}");
    let run = env.lanes(&repo, &["--json", "land"]);
    assert_eq!(run.code, 2);
    assert!(run.json()["error"]["message"].as_str().is_some_and(|m| m.contains("is the base")), "{}", run.stdout);
    assert!(queue(&env, &repo).is_empty());
}

#[test]
fn a_batch_lands_with_fewer_test_runs_than_entries_and_bisects_to_the_entry_that_breaks() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    std::fs::create_dir_all(repo.join(".git/lanes")).expect("mkdir");
    std::fs::write(repo.join(".git/lanes/config.toml"), "[land]\nbatch = 8\n").expect("config");
    let (gate, runs) = (env.root().join("gate"), env.root().join("runs"));
    let test = format!(
        "echo run >> {runs}; while [ ! -e {gate} ]; do sleep 0.05; done; test ! -e FAIL",
        runs = runs.display(),
        gate = gate.display()
    );
    let mut trees = Vec::new();
    for i in 0..8 {
        let tree = env.worktree(&repo, &format!("b{i}"));
        let file = if i == 2 { "FAIL".to_owned() } else { format!("src/new{i}.rs") };
        commit_file(&env, &tree, &file, "x\n");
        trees.push(tree);
    }
    // The first entry lands alone and holds the runner in its test until every other entry is queued.
    env.lanes(&trees[0], &["land", "--test", &test]).success();
    assert!(eventually(Duration::from_secs(20), || runs.exists()), "the first landing never ran its test");
    for tree in &trees[1..] {
        env.lanes(tree, &["land", "--test", &test]).success();
    }
    std::fs::write(&gate, "").expect("open the gate");
    let entries = settled(&env, &repo);
    for i in 0..8 {
        let expected = if i == 2 { "blocked" } else { "landed" };
        assert_eq!(entry(&entries, &format!("b{i}"))["state"], expected, "{entries:?}");
    }
    let test_runs = std::fs::read_to_string(&runs).expect("runs").lines().count();
    assert!(test_runs < 8, "{test_runs} test runs for 8 entries");
    let files = env.git(&repo, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(!files.contains("FAIL") && (0..8).filter(|i| *i != 2).all(|i| files.contains(&format!("src/new{i}.rs"))));
}

#[test]
fn a_landed_agent_worktree_goes_with_its_branch_its_owner_is_told_and_trailers_survive_the_rebase() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let (socket, _) = env.start_sidecar(&repo);
    let mut wire = crate::common::Wire::connect(&socket);
    wire.call("session.start", serde_json::json!({"session": "owner", "worktree": repo.to_string_lossy()}));
    let reply = wire.call(
        "worktree.create",
        serde_json::json!({"session": "owner", "cwd": repo.to_string_lossy(), "name": "agent-a1"}),
    );
    let tree = std::path::PathBuf::from(reply["result"]["path"].as_str().unwrap_or_else(|| panic!("{reply}")));
    let branch = env.git(&tree, &["rev-parse", "--abbrev-ref", "HEAD"]).trim().to_owned();
    std::fs::write(tree.join("src/agent.rs"), "fn agent() {}\n").expect("write");
    env.git(&tree, &["add", "-A"]);
    env.git(&tree, &["commit", "-q", "-m", "agent work\n\nLanes-Session: owner"]);
    // The base moves first, so the landing really rebases (new commits, the message carried over).
    commit_file(&env, &repo, "docs/other.md", "meanwhile\n");
    env.lanes(&tree, &["--session", "owner", "land", "--wait"]).success();
    let message = env.git(&repo, &["log", "-1", "--format=%B", "main"]);
    assert!(message.contains("agent work") && message.contains("Lanes-Session: owner"), "{message}");
    // The worktree goes first, then its branch.
    let gone = eventually(Duration::from_secs(10), || {
        !tree.exists() && env.git(&repo, &["branch", "--list", &branch]).trim().is_empty()
    });
    assert!(gone, "the agent worktree or its branch {branch} was kept: {}", env.git(&repo, &["branch", "--list"]));
    let inbox = env.lanes(&repo, &["--session", "owner", "--json", "inbox"]).success().json();
    let told =
        inbox["messages"].as_array().into_iter().flatten().any(|m| {
            m["from"] == "lanes" && m["text"].as_str().is_some_and(|t| t.contains(&format!("{branch} landed")))
        });
    assert!(told, "the owner was not told: {inbox}");
}

#[test]
fn queue_follow_streams_the_test_output_and_ends_when_the_queue_is_empty() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let tree = env.worktree(&repo, "feature");
    commit_file(&env, &tree, "src/feature.rs", "fn feature() {}\n");
    env.lanes(&tree, &["land", "--test", "echo hello from the test; exit 3"]).success();
    let followed = env.lanes(&repo, &["queue", "--follow"]).success();
    assert!(followed.stdout.contains("hello from the test"), "{}", followed.stdout);
    assert!(
        followed.stdout.contains("feature blocked: `echo hello from the test; exit 3` failed (exit 3)"),
        "{}",
        followed.stdout
    );
    assert!(followed.stdout.trim_end().ends_with("the landing queue is empty"), "{}", followed.stdout);
    let listed = env.lanes(&repo, &["queue"]).success().stdout;
    assert!(listed.contains("blocked") && listed.contains("feature → main"), "{listed}");
}

/// kill -9 of the sidecar while git rebases in the scratch worktree, and while it moves the base: after the
/// restart the entry lands once, and the base was only ever the old commit or the new one.
#[test]
fn a_sidecar_killed_mid_rebase_or_mid_update_ref_loses_nothing() {
    for (hook, condition) in
        [("post-rewrite", "true"), ("reference-transaction", "[ \"$1\" = prepared ] && grep -q refs/heads/main")]
    {
        let env = TestEnv::new();
        let repo = env.repo("r");
        let tree = env.worktree(&repo, "feature");
        commit_file(&env, &tree, "src/feature.rs", "fn feature() {}\n");
        commit_file(&env, &repo, "docs/moved.md", "the base moved, so the landing rebases\n");
        let (started, killed) = (env.root().join("started"), env.root().join("killed"));
        let script = format!(
            "#!/bin/sh\n[ -e {k} ] && exit 0\nif {condition}; then touch {s}; sleep 3; fi\nexit 0\n",
            k = killed.display(),
            s = started.display()
        );
        let path = repo.join(".git/hooks").join(hook);
        std::fs::write(&path, script).expect("hook");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let (_, pid) = env.start_sidecar(&repo);
        let old = rev(&env, &repo, "main");
        env.lanes(&tree, &["land"]).success();
        assert!(eventually(Duration::from_secs(20), || started.exists()), "{hook}: the hook never ran");
        kill9(pid);
        assert!(eventually(Duration::from_secs(10), || crate::common::process_gone(pid)));
        std::fs::write(&killed, "").expect("write");
        let entries = settled(&env, &repo);
        assert_eq!(entries[0]["state"], "landed", "{hook}: {entries:?}");
        let log = env.git(&repo, &["log", "--format=%s", &format!("{old}..main")]);
        assert_eq!(log.lines().filter(|l| *l == "add src/feature.rs").count(), 1, "{hook}: landed once? {log}");
        assert!(!env.git(&repo, &["worktree", "list"]).contains("lanes/land"), "{hook}: the scratch was left");
    }
}

#[test]
fn a_test_run_past_the_timeout_blocks_the_entry() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    std::fs::create_dir_all(repo.join(".git/lanes")).expect("mkdir");
    std::fs::write(repo.join(".git/lanes/config.toml"), "[land]\ntimeout = \"1s\"\n").expect("config");
    let tree = env.worktree(&repo, "feature");
    commit_file(&env, &tree, "src/feature.rs", "fn feature() {}\n");
    let before = rev(&env, &repo, "main");
    let run = env.lanes(&tree, &["--json", "land", "--test", "echo still going; sleep 60", "--wait"]);
    assert_eq!(run.code, 3, "{}", run.stdout);
    let result = run.json()["entry"]["result"].as_str().unwrap_or_default().to_owned();
    assert!(result.contains("ran longer than 1s ([land] timeout)") && result.contains("still going"), "{result}");
    assert_eq!(rev(&env, &repo, "main"), before);
}
