use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::TestEnv;

fn hooks_on_path() -> String {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_lanes")).parent().expect("bin dir").to_path_buf();
    assert!(bin.join("lanes-hook").is_file(), "lanes-hook is not built beside lanes: run the workspace tests");
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

/// Runs git with lanes-hook on PATH and, optionally, LANES_SESSION set.
fn git(env: &TestEnv, dir: &Path, session: Option<&str>, args: &[&str]) -> String {
    let mut command = Command::new("git");
    env.hermetic(&mut command).env("PATH", hooks_on_path()).current_dir(dir).args(args).stdin(Stdio::null());
    if let Some(session) = session {
        command.env("LANES_SESSION", session);
    }
    let output = command.output().expect("git");
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn message(env: &TestEnv, dir: &Path, rev: &str) -> String {
    env.git(dir, &["log", "-1", "--format=%B", rev])
}

fn trailers(env: &TestEnv, dir: &Path, key: &str) -> Vec<String> {
    message(env, dir, "HEAD").lines().filter(|l| l.starts_with(key)).map(str::to_owned).collect()
}

#[test]
fn commits_are_stamped_once_and_only_when_a_session_made_them() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.lanes(&repo, &["init"]).success();
    let checkpoint = env.lanes(&repo, &["--session", "s1", "--json", "checkpoint"]).success().json();
    let checkpoint = checkpoint["checkpoint"]["id"].as_str().map(str::to_owned);

    std::fs::write(repo.join("src/a.rs"), "fn a() { 1 }\n").expect("write");
    git(&env, &repo, Some("s1"), &["commit", "-qam", "change a", "-m", "Signed-off-by: T <t@example.com>"]);
    let body = message(&env, &repo, "HEAD");
    assert!(body.contains("Signed-off-by: T <t@example.com>\nLanes-Session: s1\n"), "{body}");
    assert_eq!(
        trailers(&env, &repo, "Lanes-Checkpoint:"),
        [format!("Lanes-Checkpoint: {}", checkpoint.expect("checkpoint"))]
    );

    // Amend keeps one copy; other trailers stay.
    git(&env, &repo, Some("s1"), &["commit", "-q", "--amend", "--no-edit"]);
    assert_eq!(trailers(&env, &repo, "Lanes-Session:").len(), 1, "{}", message(&env, &repo, "HEAD"));
    assert!(message(&env, &repo, "HEAD").contains("Signed-off-by"));

    // A message written in the editor is stamped after it is written; an empty one still aborts.
    std::fs::write(repo.join("src/a.rs"), "fn a() { 5 }\n").expect("write");
    let editor = env.root().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i '1i written in the editor' \"$1\"\n").expect("write");
    Command::new("chmod").arg("755").arg(&editor).status().expect("chmod");
    let mut command = Command::new("git");
    env.hermetic(&mut command).env("PATH", hooks_on_path()).env("LANES_SESSION", "s1").env("GIT_EDITOR", &editor);
    assert!(command.current_dir(&repo).args(["commit", "-qa"]).status().expect("git").success());
    assert!(
        message(&env, &repo, "HEAD").starts_with("written in the editor\n\nLanes-Session: s1\n"),
        "{}",
        message(&env, &repo, "HEAD")
    );
    std::fs::write(repo.join("src/a.rs"), "fn a() { 6 }\n").expect("write");
    let mut command = Command::new("git");
    env.hermetic(&mut command).env("PATH", hooks_on_path()).env("LANES_SESSION", "s1").env("GIT_EDITOR", "true");
    assert!(
        !command.current_dir(&repo).args(["commit", "-qa"]).status().expect("git").success(),
        "an empty message was committed"
    );
    env.git(&repo, &["checkout", "--", "src/a.rs"]);

    // A squash merge is left alone.
    git(&env, &repo, None, &["checkout", "-qb", "squashed", "HEAD"]);
    std::fs::write(repo.join("squash.txt"), "squash\n").expect("write");
    git(&env, &repo, None, &["add", "squash.txt"]);
    git(&env, &repo, None, &["commit", "-qm", "to squash"]);
    git(&env, &repo, None, &["checkout", "-q", "main"]);
    git(&env, &repo, Some("s7"), &["merge", "-q", "--squash", "squashed"]);
    git(&env, &repo, Some("s7"), &["commit", "-q", "--no-edit"]);
    assert!(
        !message(&env, &repo, "HEAD").contains("Lanes-Session: s7"),
        "a squash was stamped: {}",
        message(&env, &repo, "HEAD")
    );

    // A rebase replays commits without stamping them again.
    git(&env, &repo, None, &["checkout", "-qb", "topic", "HEAD~1"]);
    std::fs::write(repo.join("topic.txt"), "topic\n").expect("write");
    git(&env, &repo, None, &["add", "topic.txt"]);
    git(&env, &repo, None, &["commit", "-qm", "topic work"]);
    git(&env, &repo, Some("s8"), &["rebase", "-q", "main"]);
    assert!(trailers(&env, &repo, "Lanes-").is_empty(), "a rebase stamped: {}", message(&env, &repo, "HEAD"));
    git(&env, &repo, None, &["checkout", "-q", "main"]);

    // A revert is not stamped.
    git(&env, &repo, Some("s9"), &["revert", "--no-edit", "HEAD"]);
    assert!(trailers(&env, &repo, "Lanes-Session:").iter().all(|t| t != "Lanes-Session: s9"), "a revert was stamped");
    git(&env, &repo, None, &["reset", "-q", "--hard", "HEAD~1"]);

    // No session: no trailer.
    std::fs::write(repo.join("src/b.rs"), "fn b() { 2 }\n").expect("write");
    git(&env, &repo, None, &["commit", "-qam", "by a human"]);
    assert!(trailers(&env, &repo, "Lanes-").is_empty(), "{}", message(&env, &repo, "HEAD"));

    // A session that edited the staged file through the hook is named even without LANES_SESSION.
    let hook = PathBuf::from(env!("CARGO_BIN_EXE_lanes")).with_file_name("lanes-hook");
    let event = serde_json::json!({"session_id": "s2", "cwd": repo, "tool_name": "Write",
        "tool_input": {"file_path": repo.join("docs/guide.md"), "content": "x"}});
    for step in ["PreToolUse", "PostToolUse"] {
        let mut child = env
            .hermetic(&mut Command::new(&hook))
            .args(["claude", step])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("hook");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), event.to_string().as_bytes())
            .expect("write event");
        assert!(child.wait().expect("hook").success());
    }
    std::fs::write(repo.join("docs/guide.md"), "# guide, edited\n").expect("write");
    git(&env, &repo, None, &["commit", "-qam", "docs"]);
    assert_eq!(trailers(&env, &repo, "Lanes-Session:"), ["Lanes-Session: s2"]);

    // Merges are not stamped; cherry-picks keep what they had and get nothing new.
    git(&env, &repo, None, &["checkout", "-qb", "side", "HEAD~1"]);
    std::fs::write(repo.join("side.txt"), "side\n").expect("write");
    git(&env, &repo, None, &["add", "side.txt"]);
    git(&env, &repo, Some("s3"), &["commit", "-qm", "side work"]);
    git(&env, &repo, None, &["checkout", "-q", "main"]);
    git(&env, &repo, Some("s1"), &["merge", "-q", "--no-ff", "--no-edit", "side"]);
    assert!(!message(&env, &repo, "HEAD").contains("Lanes-Session: s1"), "a merge was stamped");
    git(&env, &repo, None, &["checkout", "-q", "side"]);
    std::fs::write(repo.join("side2.txt"), "more side\n").expect("write");
    git(&env, &repo, None, &["add", "side2.txt"]);
    git(&env, &repo, Some("s3"), &["commit", "-qm", "more side work"]);
    git(&env, &repo, None, &["checkout", "-q", "main"]);
    git(&env, &repo, Some("s1"), &["cherry-pick", "side"]);
    assert_eq!(trailers(&env, &repo, "Lanes-Session:"), ["Lanes-Session: s3"], "a cherry-pick was restamped");

    // explain: by commit and by path:line.
    let explained = env.lanes(&repo, &["--json", "explain", "docs/guide.md"]).success().json();
    assert_eq!(explained["sessions"][0]["session"], "s2");
    let by_line = env.lanes(&repo, &["--json", "explain", "src/a.rs:1"]).success().json();
    assert_eq!(by_line["sessions"][0]["session"], "s1");
    assert!(!by_line["sessions"][0]["checkpoints"].as_array().expect("checkpoints").is_empty());
    assert_eq!(env.lanes(&repo, &["--json", "explain", "no/such/file"]).code, 2);
}

#[test]
fn hooks_chain_existing_ones_work_in_linked_worktrees_and_undo_restores() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let hooks = repo.join(".git/hooks");
    std::fs::create_dir_all(&hooks).expect("mkdir");
    let log = env.root().join("old-hook.log");
    std::fs::write(hooks.join("post-commit"), format!("#!/bin/sh\necho ran >> {}\n", log.display())).expect("write");
    Command::new("chmod").arg("755").arg(hooks.join("post-commit")).status().expect("chmod");
    let first = env.lanes(&repo, &["--json", "init"]).success().json();
    let again = env.lanes(&repo, &["--json", "init"]).success().json();
    assert!(
        again["git_hooks"].as_array().expect("hooks").iter().all(|h| h["action"] == "already installed"),
        "{again}"
    );
    assert!(first["git_hooks"].to_string().contains("runs your existing hook first"));
    // A shim from an older lanes is replaced by this version's, keeping the chained hook.
    let current = std::fs::read_to_string(hooks.join("commit-msg")).expect("shim");
    std::fs::write(hooks.join("commit-msg"), current.replace("exit 0\n", "exit 0 # older\n")).expect("write");
    let updated = env.lanes(&repo, &["--json", "init"]).success().json();
    let actions: Vec<&str> =
        updated["git_hooks"].as_array().expect("hooks").iter().map(|h| h["action"].as_str().expect("action")).collect();
    assert_eq!(
        actions,
        ["already installed", "already installed", "updated", "already installed", "already installed"],
        "{updated}"
    );
    assert_eq!(std::fs::read_to_string(hooks.join("commit-msg")).expect("shim"), current);

    let feature = env.worktree(&repo, "feature");
    std::fs::write(feature.join("src/a.rs"), "fn a() { 3 }\n").expect("write");
    git(&env, &feature, Some("wt-session"), &["commit", "-qam", "in a linked worktree"]);
    assert_eq!(trailers(&env, &feature, "Lanes-Session:"), ["Lanes-Session: wt-session"]);
    assert_eq!(std::fs::read_to_string(&log).expect("old hook ran").lines().count(), 1);

    // With the sidecar down the commit still succeeds; there is nobody to ask, so no trailer.
    env.lanes(&repo, &["sidecar", "stop"]).success();
    std::fs::write(feature.join("src/b.rs"), "fn b() { 4 }\n").expect("write");
    git(&env, &feature, Some("wt-session"), &["commit", "-qam", "sidecar down"]);
    assert!(trailers(&env, &feature, "Lanes-").is_empty());

    env.lanes(&repo, &["init", "--undo"]).success();

    // core.hooksPath (husky, lefthook) is honoured: hooks go where git runs them from.
    std::fs::create_dir_all(repo.join(".husky/_")).expect("mkdir");
    env.git(&repo, &["config", "core.hooksPath", ".husky/_"]);
    env.lanes(&repo, &["init"]).success();
    assert!(repo.join(".husky/_/prepare-commit-msg").exists(), "hooks were not put under core.hooksPath");
    env.lanes(&repo, &["sidecar", "start"]).success();
    // A file the feature branch does not change: its src/b.rs is work that has not landed.
    std::fs::write(repo.join("docs/guide.md"), "# through husky\n").expect("write");
    git(&env, &repo, Some("husky-session"), &["commit", "-qam", "through core.hooksPath"]);
    assert_eq!(trailers(&env, &repo, "Lanes-Session:"), ["Lanes-Session: husky-session"]);
    let restored = std::fs::read_to_string(hooks.join("post-commit")).expect("restored");
    assert!(restored.contains("old-hook.log") && !restored.contains("lanes"), "{restored}");
    assert!(!hooks.join("prepare-commit-msg").exists());
}

/// `git commit -v`, `commit.verbose` and every `commit.cleanup` mode, through a scripted editor: the trailer is
/// where git keeps it, in the final trailer block of the committed message.
#[test]
fn trailers_survive_every_cleanup_mode_with_and_without_verbose() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.lanes(&repo, &["init"]).success();
    let editor = env.root().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i '1i written in the editor' \"$1\"\n").expect("write");
    Command::new("chmod").arg("755").arg(&editor).status().expect("chmod");
    let mut round = 0;
    for cleanup in ["default", "strip", "whitespace", "verbatim", "scissors"] {
        for verbose in [false, true] {
            round += 1;
            std::fs::write(repo.join("src/a.rs"), format!("fn a() {{ {round} }}\n")).expect("write");
            let mut args = vec!["-c".to_owned(), format!("commit.verbose={verbose}")];
            if cleanup != "default" {
                args.extend(["-c".to_owned(), format!("commit.cleanup={cleanup}")]);
            }
            args.extend(["commit".to_owned(), "-qa".to_owned()]);
            let mut command = Command::new("git");
            env.hermetic(&mut command)
                .env("PATH", hooks_on_path())
                .env("LANES_SESSION", "s1")
                .env("GIT_EDITOR", &editor)
                .current_dir(&repo)
                .args(&args)
                .stdin(Stdio::null());
            let output = command.output().expect("git commit");
            assert!(output.status.success(), "{cleanup} -v={verbose}: {}", String::from_utf8_lossy(&output.stderr));
            let body = message(&env, &repo, "HEAD");
            assert!(body.starts_with("written in the editor"), "{cleanup} -v={verbose}: {body}");
            let mut parse = Command::new("git");
            env.hermetic(&mut parse).current_dir(&repo).args(["interpret-trailers", "--parse"]);
            let parsed = parse
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write;
                    child.stdin.take().expect("stdin").write_all(body.as_bytes())?;
                    child.wait_with_output()
                })
                .expect("interpret-trailers");
            let trailers = String::from_utf8_lossy(&parsed.stdout);
            assert!(
                trailers.contains("Lanes-Session: s1"),
                "{cleanup} -v={verbose}: no Lanes-Session trailer in\n{body}"
            );
            assert!(!body.contains("diff --git"), "{cleanup} -v={verbose}: the diff was committed: {body}");
        }
    }
}

/// A session that checkpointed the files from a shell (`lanes checkpoint`) is named by the commit a person
/// then makes of them, without LANES_SESSION.
#[test]
fn a_commit_after_a_sessions_checkpoint_of_its_files_names_that_session() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.lanes(&repo, &["init"]).success();
    std::fs::write(repo.join("src/a.rs"), "fn a() { 7 }\n").expect("write");
    env.lanes(&repo, &["--session", "s5", "checkpoint", "-m", "shell work"]).success();
    git(&env, &repo, None, &["commit", "-qam", "committed by hand"]);
    assert_eq!(trailers(&env, &repo, "Lanes-Session:"), ["Lanes-Session: s5"], "{}", message(&env, &repo, "HEAD"));
}

/// A rebase keeps the trailers of stamped commits, and post-rewrite links each new commit to the session that
/// made the old one, so `lanes explain` of the rebased commit still names it.
#[test]
fn trailers_and_the_commits_session_survive_a_rebase() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.lanes(&repo, &["init"]).success();
    git(&env, &repo, None, &["checkout", "-qb", "topic"]);
    for (file, text) in [("src/a.rs", "fn a() { 1 }\n"), ("src/b.rs", "fn b() { 2 }\n")] {
        std::fs::write(repo.join(file), text).expect("write");
        git(&env, &repo, Some("s1"), &["commit", "-qam", &format!("change {file}")]);
    }
    git(&env, &repo, None, &["checkout", "-q", "main"]);
    std::fs::write(repo.join("docs/guide.md"), "# moved on\n").expect("write");
    git(&env, &repo, None, &["commit", "-qam", "main moves"]);
    let before = env.git(&repo, &["rev-parse", "topic"]).trim().to_owned();
    git(&env, &repo, None, &["checkout", "-q", "topic"]);
    git(&env, &repo, None, &["rebase", "-q", "main"]);
    let after = env.git(&repo, &["rev-parse", "HEAD"]).trim().to_owned();
    assert_ne!(before, after, "the rebase made new commits");
    for rev in ["HEAD", "HEAD~1"] {
        let body = message(&env, &repo, rev);
        assert_eq!(body.matches("Lanes-Session: s1").count(), 1, "{rev}: {body}");
    }
    let explained = env.lanes(&repo, &["--json", "explain", "HEAD"]).success().json();
    let text = explained.to_string();
    assert!(text.contains("s1"), "explain of the rebased commit lost its session: {text}");
    let events = env.lanes(&repo, &["events"]).success().stdout;
    let linked = events.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).any(|e| {
        e["kind"] == "commit" && e["data"]["commit"] == after.as_str() && e["data"]["rewritten_from"] == before.as_str()
    });
    assert!(linked, "post-rewrite did not link {after} to {before}: {events}");
}
