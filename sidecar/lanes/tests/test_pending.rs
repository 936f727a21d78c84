//! Claims follow the work until it lands (DESIGN.md §5): pending work outlives its holder, survives restarts
//! and kill -9, ends when its paths land on the base by any route (merge, rebase and fast-forward,
//! cherry-pick) or are reverted, or when the worktree goes; latent work, shell edits and the commit guard.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Run, TestEnv, Wire, eventually, hook, kill9};

/// A generous bound for the sidecar's timer scan (every 9 s) to see a change made outside lanes.
const SEEN: Duration = Duration::from_secs(20);

/// Ends a session as its SessionEnd hook does.
fn end(env: &TestEnv, repo: &Path, session: &str) {
    let (socket, _) = env.start_sidecar(repo);
    let reply = Wire::connect(&socket).call("session.end", json!({"session": session}));
    assert!(reply["result"].is_object(), "{reply}");
}

/// The live and pending claims, as (holder, scopes, pending).
fn claims(env: &TestEnv, repo: &Path) -> Vec<(String, Vec<String>, bool)> {
    let status = env.lanes(repo, &["--json", "status"]).success().json();
    status["claims"]
        .as_array()
        .expect("claims")
        .iter()
        .map(|c| {
            let scopes = c["scopes"].as_array().expect("scopes").iter().map(|s| s.as_str().expect("s").to_owned());
            (c["session"].as_str().expect("session").to_owned(), scopes.collect(), c["pending"] == true)
        })
        .collect()
}

/// Session `agent` claims `path` from `dir` and gives a grant back at once: one look of a loop that waits for
/// pending work to be seen, which a grant must not outlast.
fn probe_claim(env: &TestEnv, dir: &Path, path: &str) -> Run {
    let run = env.lanes(dir, &["--session", "agent", "--json", "claim", path]);
    if run.code == 0 {
        env.lanes(dir, &["--session", "agent", "release", "--all"]).success();
    }
    run
}

/// Session `a` claims `src` in `tree`, writes `file` there, and ends.
fn leave_work(env: &TestEnv, repo: &Path, tree: &Path, file: &str) {
    env.lanes(tree, &["--session", "a", "claim", "src"]).success();
    std::fs::write(tree.join(file), "a's work\n").expect("write");
    end(env, repo, "a");
}

fn commit_all(env: &TestEnv, dir: &Path, message: &str) {
    env.git(dir, &["add", "-A"]);
    env.git(dir, &["commit", "-qm", message]);
}

#[test]
fn an_ended_session_leaves_its_uncommitted_work_claimed_across_restarts_and_kill_9() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let wt1 = env.worktree(&repo, "wt1");
    let wt2 = env.worktree(&repo, "wt2");
    leave_work(&env, &repo, &wt1, "src/shared.rs");
    assert_eq!(claims(&env, &repo), [("a".to_owned(), vec!["src/shared.rs".to_owned()], true)]);
    let refused = env.lanes(&wt2, &["--session", "b", "--json", "claim", "src/shared.rs"]);
    assert_eq!(refused.code, 3, "{}", refused.stdout);
    let error = refused.json();
    assert_eq!(error["error"]["conflicts"][0]["pending"], true, "{error}");
    assert_eq!(error["error"]["conflicts"][0]["branch"], "wt1", "{error}");
    assert!(error["error"]["message"].as_str().expect("message").contains("pending work"), "{error}");
    env.lanes(&wt2, &["--session", "b", "claim", "src/other.rs"]).success();
    let text = env.lanes(&repo, &["status"]).success().stdout;
    assert!(text.contains("pending (wt1)"), "{text}");
    let listed = env.lanes(&repo, &["--json", "worktrees"]).success().json();
    assert!(listed["worktrees"].to_string().contains("\"pending_claims\":1"), "{listed}");
    let start = hook(&env, "SessionStart", json!({"session_id": "newcomer", "cwd": wt2, "source": "startup"}));
    assert!(start.stdout.contains("has not landed") && start.stdout.contains("src/shared.rs"), "{}", start.stdout);

    env.lanes(&repo, &["sidecar", "stop"]).success();
    assert_eq!(env.lanes(&wt2, &["--session", "b", "--json", "claim", "src/shared.rs"]).code, 3, "after a restart");
    let (_, pid) = env.start_sidecar(&repo);
    kill9(pid);
    assert_eq!(env.lanes(&wt2, &["--session", "b", "--json", "claim", "src/shared.rs"]).code, 3, "after kill -9");

    // Someone editing in wt1 continues that work: it is theirs now, and they are told whose it was.
    let took = env.lanes(&wt1, &["--session", "c", "--json", "claim", "src/shared.rs"]).success().json();
    assert_eq!(took["claim"]["pending"], false, "{took}");
    assert_eq!(took["claim"]["session"], "c");
}

#[test]
fn pending_work_ends_when_it_lands_by_merge_rebase_or_cherry_pick_or_is_reverted_or_its_worktree_goes() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    for (round, route) in ["merge", "rebase", "cherry-pick", "revert", "remove"].into_iter().enumerate() {
        let name = format!("wt{round}");
        let file = format!("src/shared{round}.rs");
        let free = || env.lanes(&repo, &["--session", "probe", "--json", "check", &file]).code == 0;
        let tree = env.worktree(&repo, &name);
        leave_work(&env, &repo, &tree, &file);
        assert!(!free(), "{route}: the work is not claimed before it lands");
        match route {
            "merge" => {
                commit_all(&env, &tree, "a's work");
                env.git(&repo, &["merge", "-q", "--no-ff", "-m", "merge", &name]);
            }
            "rebase" => {
                commit_all(&env, &tree, "a's work");
                env.git(&tree, &["rebase", "-q", "main"]);
                env.git(&repo, &["merge", "-q", "--ff-only", &name]);
            }
            "cherry-pick" => {
                commit_all(&env, &tree, "a's work");
                env.git(&repo, &["cherry-pick", &name]);
            }
            "revert" => {
                env.git(&tree, &["clean", "-fdq", "src"]);
            }
            _ => {
                env.git(&repo, &["worktree", "remove", "--force", &tree.to_string_lossy()]);
            }
        }
        assert!(
            eventually(SEEN, free),
            "{route}: the path stays claimed: {:?} {}",
            claims(&env, &repo),
            env.lanes(&repo, &["--session", "probe", "--json", "check", &file]).stdout
        );
    }
}

#[test]
fn a_persons_uncommitted_edit_in_another_worktree_blocks_a_claim_within_seconds() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let person = env.worktree(&repo, "person");
    env.start_sidecar(&repo);
    std::fs::write(person.join("docs/guide.md"), "a person's edit\n").expect("write");
    let blocked = || {
        let run = probe_claim(&env, &repo, "docs/guide.md");
        run.code == 3 && run.stdout.contains("no claim covers")
    };
    assert!(eventually(SEEN, blocked), "latent work in another worktree was not seen");
    let refused = env.lanes(&repo, &["--session", "agent", "--json", "claim", "docs"]).json();
    let conflict = &refused["error"]["conflicts"][0];
    assert!(conflict["session"].is_null() && conflict["pending"] == true, "{refused}");
    assert_eq!(conflict["worktree"], person.to_string_lossy().as_ref());

    std::fs::write(repo.join(".lanes.toml"), "[claims]\nlatent = \"off\"\n").expect("write");
    assert!(
        eventually(SEEN, || env.lanes(&repo, &["--session", "agent", "--json", "claim", "docs/guide.md"]).code == 0),
        "latent = \"off\" still refuses"
    );
}

/// The main worktree is watched without its `.git` (the sidecar's own store is there), one top-level directory
/// at a time: a directory made after the sidecar started is watched too, so an edit deep inside it is seen
/// within seconds, not at the full round a minute later.
#[test]
fn an_edit_in_a_directory_made_after_the_start_is_seen_within_seconds() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let other = env.worktree(&repo, "other");
    env.start_sidecar(&repo);
    let blocked = |path: &str| {
        let run = probe_claim(&env, &other, path);
        run.code == 3 && run.stdout.contains("pending")
    };
    // Once an edit in the main worktree is seen, the watcher covers it.
    std::fs::write(repo.join("docs/guide.md"), "edited\n").expect("write");
    assert!(eventually(SEEN, || blocked("docs/guide.md")), "the edit was not seen");
    std::fs::create_dir_all(repo.join("fresh/deep")).expect("mkdir");
    // The scan the new directory asks for comes and goes: only the directory's own watch can see what follows.
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(repo.join("fresh/deep/new.md"), "made later\n").expect("write");
    assert!(
        eventually(Duration::from_secs(10), || blocked("fresh/deep/new.md")),
        "an edit in a new directory was not seen"
    );
}

/// git writes a new worktree's index after its files: a scan caught in between sees every file deleted, and
/// only the index changes afterwards. That write must bring the next scan, not the full round a minute later.
#[test]
fn index_only_changes_are_seen_and_a_refusal_over_pending_work_rests_on_a_fresh_scan() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.start_sidecar(&repo);
    let late = env.root().join("late");
    env.git(&repo, &["worktree", "add", "-q", "--no-checkout", "-b", "late", &late.to_string_lossy()]);
    for file in ["src/a.rs", "src/b.rs", "docs/guide.md"] {
        std::fs::create_dir_all(late.join(file).parent().expect("parent")).expect("mkdir");
        std::fs::copy(repo.join(file), late.join(file)).expect("copy");
    }
    let claim = || env.lanes(&repo, &["--session", "agent", "--json", "claim", "docs/guide.md"]);
    let refused = || probe_claim(&env, &repo, "docs/guide.md").code == 3;
    assert!(eventually(SEEN, refused), "a worktree without an index was not seen as pending work");
    // The refusals just rescanned `late`, so the watcher's own scan of it waits a second: a claim now is
    // granted only because a refusal over pending work stands on a fresh scan, never on a stale one.
    env.git(&late, &["read-tree", "HEAD"]);
    assert_eq!(claim().code, 0, "refused on a scan older than the request");
    env.lanes(&repo, &["--session", "agent", "release", "--all"]).success();

    // Index-only changes reach the sidecar through the watcher (nothing in the worktree changes).
    let held = || {
        let check = env.lanes(&repo, &["--session", "agent", "--json", "check", "docs/guide.md"]).json();
        check["holders"].as_array().is_some_and(|h| !h.is_empty())
    };
    env.git(&late, &["rm", "-q", "--cached", "docs/guide.md"]);
    assert!(eventually(SEEN, held), "an index-only change was not seen");
    env.git(&late, &["add", "docs/guide.md"]);
    assert!(eventually(SEEN, || !held()), "an index-only change back was not seen");
}

#[test]
fn a_shell_command_claims_what_it_changed_and_reports_what_others_hold() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let other = env.worktree(&repo, "other");
    env.lanes(&other, &["--session", "holder", "claim", "src/a.rs"]).success();
    // The agent's Bash command changes a free file and a held one (`sed -i`, `cat >`).
    std::fs::write(repo.join("docs/guide.md"), "rewritten by a script\n").expect("write");
    std::fs::write(repo.join("src/a.rs"), "changed by sed\n").expect("write");
    let bash = json!({"session_id": "agent", "cwd": repo, "hook_event_name": "PostToolUse", "tool_name": "Bash",
        "tool_input": {"command": "sed -i s/a/b/ src/a.rs; cat > docs/guide.md"}, "tool_response": {}});
    let run = hook(&env, "PostToolUse", bash);
    let answer: Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    let context = answer["hookSpecificOutput"]["additionalContext"].as_str().expect("context").to_owned();
    assert!(context.contains("changed src/a.rs") && context.contains("holder"), "{context}");
    assert!(context.contains("git checkout -- src/a.rs"), "{context}");
    assert!(context.contains("docs/guide.md; claimed for you"), "{context}");
    assert!(claims(&env, &repo).contains(&("agent".to_owned(), vec!["docs/guide.md".to_owned()], false)));
    let inbox = env.lanes(&other, &["--session", "holder", "--json", "inbox"]).success().json();
    assert!(inbox["messages"].to_string().contains("changed src/a.rs"), "the holder was not told: {inbox}");
}

/// The file watcher may scan the worktree while the command still runs: what the command changed is judged
/// against the worktree as it stood when the command began, not against that scan.
#[test]
fn a_shell_command_is_judged_against_its_start_even_when_the_watcher_saw_its_change_first() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let other = env.worktree(&repo, "other");
    env.lanes(&other, &["--session", "holder", "claim", "src/a.rs"]).success();
    let bash = |event: &str| {
        json!({"session_id": "agent", "cwd": repo, "hook_event_name": event, "tool_name": "Bash",
            "tool_input": {"command": "./rewrite.sh"}, "tool_response": {}})
    };
    hook(&env, "PreToolUse", bash("PreToolUse"));
    std::fs::write(repo.join("docs/guide.md"), "rewritten by a script\n").expect("write");
    std::fs::write(repo.join("src/a.rs"), "changed by the script\n").expect("write");
    let seen = || {
        let check = env.lanes(&other, &["--session", "third", "--json", "check", "docs/guide.md"]).json();
        check["holders"].as_array().is_some_and(|h| !h.is_empty())
    };
    assert!(eventually(SEEN, seen), "the watcher did not see the command's change");
    let run = hook(&env, "PostToolUse", bash("PostToolUse"));
    let answer: Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    let context = answer["hookSpecificOutput"]["additionalContext"].as_str().expect("context").to_owned();
    assert!(context.contains("changed src/a.rs") && context.contains("holder"), "{context}");
    assert!(context.contains("docs/guide.md; claimed for you"), "{context}");
    let inbox = env.lanes(&other, &["--session", "holder", "--json", "inbox"]).success().json();
    assert!(inbox["messages"].to_string().contains("changed src/a.rs"), "the holder was not told: {inbox}");
}

fn hooks_path() -> String {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_lanes")).parent().expect("bin dir").to_path_buf();
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

/// `git commit` with lanes' hooks on PATH; returns its exit code and stderr.
fn commit(env: &TestEnv, dir: &Path, args: &[&str]) -> (i32, String) {
    let mut command = Command::new("git");
    env.hermetic(&mut command).env("PATH", hooks_path()).current_dir(dir).arg("commit").args(args);
    let output = command.stdin(Stdio::null()).output().expect("git commit");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn the_commit_guard_refuses_another_agents_files_and_chains_existing_hooks() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let hooks = repo.join(".git/hooks");
    std::fs::create_dir_all(&hooks).expect("hooks");
    std::fs::write(hooks.join("pre-commit"), "#!/bin/sh\necho ran-existing-pre-commit >&2\n").expect("write");
    Command::new("chmod").arg("755").arg(hooks.join("pre-commit")).status().expect("chmod");
    env.lanes(&repo, &["init"]).success();
    let other = env.worktree(&repo, "other");
    env.lanes(&other, &["--session", "holder", "claim", "src/a.rs"]).success();

    std::fs::write(repo.join("src/a.rs"), "taken\n").expect("write");
    env.git(&repo, &["add", "src/a.rs"]);
    let (code, stderr) = commit(&env, &repo, &["-qm", "takes a held file"]);
    assert_ne!(code, 0, "the commit of a held file went ahead");
    assert!(stderr.contains("holder") && stderr.contains("--no-verify"), "{stderr}");
    assert!(stderr.contains("ran-existing-pre-commit"), "the existing pre-commit hook did not run: {stderr}");

    std::fs::write(repo.join(".lanes.toml"), "[git]\nguard = \"warn\"\n").expect("write");
    // The sidecar restarts on the changed config; git hooks never start it, so the test does.
    let warned = eventually(SEEN, || {
        env.lanes(&repo, &["sidecar", "start"]).success();
        let (code, stderr) = commit(&env, &repo, &["-qm", "warned"]);
        if code == 0 {
            env.git(&repo, &["reset", "-q", "--soft", "HEAD~1"]);
        }
        code == 0 && stderr.contains("Committing anyway")
    });
    assert!(warned, "guard = \"warn\" still refuses");
    std::fs::remove_file(repo.join(".lanes.toml")).expect("rm");
    let refused_again = eventually(SEEN, || {
        env.lanes(&repo, &["sidecar", "start"]).success();
        let (code, stderr) = commit(&env, &repo, &["-qm", "again"]);
        if code == 0 {
            env.git(&repo, &["reset", "-q", "--soft", "HEAD~1"]);
        }
        code != 0 && stderr.contains("--no-verify")
    });
    assert!(refused_again, "refuse is back");
    let (code, stderr) = commit(&env, &repo, &["-qm", "overridden", "--no-verify"]);
    assert_eq!(code, 0, "--no-verify: {stderr}");

    // A merge is not checked.
    env.git(&other, &["commit", "-qm", "empty side", "--allow-empty"]);
    let merged = Command::new("git")
        .args(["merge", "--no-ff", "-m", "merge", "other"])
        .current_dir(&repo)
        .env("PATH", hooks_path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .expect("merge");
    assert!(merged.status.success(), "{}", String::from_utf8_lossy(&merged.stderr));

    // With no sidecar running the commit goes ahead (and the git hook starts none).
    env.lanes(&repo, &["sidecar", "stop"]).success();
    std::fs::write(repo.join("src/a.rs"), "taken again\n").expect("write");
    env.git(&repo, &["add", "src/a.rs"]);
    let (code, stderr) = commit(&env, &repo, &["-qm", "sidecar down"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(env.sidecar_pid(&repo), None, "a git hook started the sidecar");
}
