//! The hook binary fails open: garbage on stdin, unknown events, a directory outside any repository, or a
//! sidecar that hangs all end in exit 0 with nothing on stdout. Against a live sidecar it denies an edit of a
//! file another session holds, naming the holder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lanes-hook")).parent().expect("bin dir").to_path_buf()
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::Builder::new().prefix("lh").tempdir_in("/tmp").expect("tempdir");
        std::fs::create_dir_all(dir.path().join("run")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("repo/src")).expect("mkdir");
        let env = Env { dir };
        let status = env.command("git").args(["init", "-q"]).current_dir(env.repo()).status().expect("git init");
        assert!(status.success());
        env
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().canonicalize().expect("canonical").join("repo")
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        command
    }

    fn hook(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .command(env!("CARGO_BIN_EXE_lanes-hook"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hook");
        let _ = child.stdin.take().expect("stdin").write_all(stdin);
        child.wait_with_output().expect("hook output")
    }

    /// Runs git in `dir` as a test committer; it must succeed.
    fn git(&self, dir: &Path, args: &[&str]) {
        let status = self
            .command("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(dir)
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    }

    /// Gives the repository its first commit (`src/a.rs`), which worktrees and branches need.
    fn initial_commit(&self) {
        let repo = self.repo();
        std::fs::write(repo.join("src/a.rs"), "a\n").expect("write");
        self.git(&repo, &["add", "-A"]);
        self.git(&repo, &["commit", "-qm", "initial"]);
    }

    fn lanes(&self, args: &[&str]) -> Output {
        let lanes = bin_dir().join("lanes");
        assert!(lanes.is_file(), "lanes is not built beside lanes-hook: run the workspace tests");
        self.command(lanes).args(args).current_dir(self.repo()).output().expect("lanes")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.lanes(&["sidecar", "stop"]);
    }
}

fn assert_silent_success(output: &Output, what: &str) {
    assert_eq!(output.status.code(), Some(0), "{what}: exit code");
    assert!(output.stdout.is_empty(), "{what}: printed {:?}", String::from_utf8_lossy(&output.stdout));
}

fn edit_event(repo: &Path, session: &str, file: &str) -> Vec<u8> {
    serde_json::json!({
        "session_id": session, "cwd": repo, "hook_event_name": "PreToolUse", "tool_name": "Write",
        "tool_input": {"file_path": repo.join(file), "content": "x"},
    })
    .to_string()
    .into_bytes()
}

#[test]
fn bad_input_and_unknown_events_exit_zero_silently() {
    let env = Env::new();
    let repo = env.repo();
    assert_silent_success(&env.hook(&["claude", "PreToolUse"], b"not json at all"), "garbage");
    assert_silent_success(&env.hook(&["claude", "PreToolUse"], &[0xff, 0xfe, 0x00]), "binary");
    assert_silent_success(&env.hook(&["claude", "PreToolUse"], b"{}"), "empty object");
    assert_silent_success(&env.hook(&["claude", "PreToolUse"], b"[1,2,3]"), "array");
    assert_silent_success(&env.hook(&["claude", "NoSuchEvent"], &edit_event(&repo, "s", "src/a.rs")), "unknown event");
    assert_silent_success(&env.hook(&["nonsense"], b""), "unknown mode");
    assert_silent_success(&env.hook(&[], b""), "no arguments");
    let outside =
        serde_json::json!({"session_id": "s", "cwd": "/", "tool_name": "Write", "tool_input": {"file_path": "/tmp/x"}});
    assert_silent_success(&env.hook(&["claude", "PreToolUse"], outside.to_string().as_bytes()), "outside a repository");
    let huge = vec![b'x'; 20 * 1024 * 1024];
    assert_silent_success(&env.hook(&["claude", "PostToolUse"], &huge), "huge input");
}

#[test]
fn denies_a_held_file_naming_the_holder_and_allows_a_free_one() {
    let env = Env::new();
    let repo = env.repo();
    // The first hook finds no sidecar and starts one.
    assert_silent_success(&env.hook(&["claude", "PreToolUse"], &edit_event(&repo, "alice", "src/a.rs")), "free file");
    let denied = env.hook(&["claude", "PreToolUse"], &edit_event(&repo, "bob", "src/a.rs"));
    assert_eq!(denied.status.code(), Some(0));
    let reply: serde_json::Value = serde_json::from_slice(&denied.stdout).expect("deny JSON");
    let output = &reply["hookSpecificOutput"];
    assert_eq!(output["permissionDecision"], "deny");
    let reason = output["permissionDecisionReason"].as_str().expect("reason");
    assert!(
        reason.contains("held by session alice") && reason.contains("src/a.rs") && reason.contains("expires in"),
        "{reason}"
    );
    assert!(reason.contains("lanes send alice"), "{reason}");
    // Alice's own second edit is allowed silently; a subagent of alice may edit what she holds.
    assert_silent_success(&env.hook(&["claude", "PreToolUse"], &edit_event(&repo, "alice", "src/a.rs")), "own file");
    let mut sub = serde_json::from_slice::<serde_json::Value>(&edit_event(&repo, "alice", "src/a.rs")).expect("json");
    sub["agent_id"] = "helper".into();
    assert_silent_success(&env.hook(&["claude", "PreToolUse"], sub.to_string().as_bytes()), "parent's file");
}

#[test]
fn with_no_hub_answering_the_edit_goes_ahead_with_a_warning_or_is_refused_as_configured() {
    let env = Env::new();
    let repo = env.repo();
    let config = repo.join(".git/lanes/config.toml");
    std::fs::create_dir_all(config.parent().expect("dir")).expect("mkdir");
    // Nothing listens on port 1: the sidecar's hub calls are refused at once.
    let hub = "[hub]\nurls = [\"ws://127.0.0.1:1\"]\nproject = \"test\"\n";
    std::fs::write(&config, hub).expect("config");
    let allowed = env.hook(&["claude", "PreToolUse"], &edit_event(&repo, "alice", "src/a.rs"));
    assert_eq!(allowed.status.code(), Some(0));
    let reply: serde_json::Value = serde_json::from_slice(&allowed.stdout).expect("context JSON");
    let context = reply["hookSpecificOutput"]["additionalContext"].as_str().expect("warning");
    assert!(context.contains("no hub answers") && context.contains("without a check"), "{context}");
    assert!(reply["hookSpecificOutput"]["permissionDecision"].is_null(), "{reply}");

    std::fs::write(&config, format!("{hub}offline = \"deny\"\n")).expect("config");
    env.lanes(&["sidecar", "stop"]);
    let denied = env.hook(&["claude", "PreToolUse"], &edit_event(&repo, "alice", "src/a.rs"));
    let reply: serde_json::Value = serde_json::from_slice(&denied.stdout).expect("deny JSON");
    assert_eq!(reply["hookSpecificOutput"]["permissionDecision"], "deny", "{reply}");
    let reason = reply["hookSpecificOutput"]["permissionDecisionReason"].as_str().expect("reason");
    assert!(reason.contains("offline = \"deny\""), "{reason}");
}

#[test]
fn a_hung_sidecar_means_allow() {
    let env = Env::new();
    let repo = env.repo();
    let started: serde_json::Value =
        serde_json::from_slice(&env.lanes(&["--json", "sidecar", "start"]).stdout).expect("started");
    env.lanes(&["--session", "alice", "claim", "src/a.rs"]);
    let pid = started["pid"].to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().expect("kill").success());
    let output = env.hook(&["claude", "PreToolUse"], &edit_event(&repo, "bob", "src/a.rs"));
    assert!(Command::new("kill").args(["-CONT", &pid]).status().expect("kill").success());
    assert_eq!(output.status.code(), Some(0));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the hook answers in JSON");
    let hook = &answer["hookSpecificOutput"];
    assert!(hook.get("permissionDecision").is_none(), "a hung sidecar must not block the edit: {answer}");
    assert!(hook["additionalContext"].as_str().expect("context").contains("NOT checked"), "{answer}");
    // The sidecar is still up and still holds alice's claim; the unchecked edit is on record.
    let status: serde_json::Value = serde_json::from_slice(&env.lanes(&["--json", "status"]).stdout).expect("status");
    assert_eq!(status["sidecar"]["pid"].to_string(), pid, "the sidecar did not stay up");
    assert_eq!(status["claims"][0]["session"], "alice", "{status}");
    let log = std::fs::read_to_string(repo.join(".git/lanes/unchecked.log")).expect("unchecked.log");
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains("\"session\":\"bob\""), "{log}");
    let status: serde_json::Value = serde_json::from_slice(&env.lanes(&["--json", "status"]).stdout).expect("status");
    assert_eq!(status["unchecked_edits"]["bob"], 1, "{status}");
}

#[test]
fn an_edit_lanes_cannot_judge_is_refused_with_the_reason() {
    let env = Env::new();
    let repo = env.repo();
    env.lanes(&["--session", "alice", "claim", "src/a.rs"]);
    let deny = |output: &Output, what: &str| {
        assert_eq!(output.status.code(), Some(0), "{what}");
        let answer: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {:?}", String::from_utf8_lossy(&output.stdout)));
        assert_eq!(answer["hookSpecificOutput"]["permissionDecision"], "deny", "{what}: {answer}");
        answer["hookSpecificOutput"]["permissionDecisionReason"].as_str().expect("reason").to_owned()
    };
    let long_session = "s".repeat(129);
    deny(&env.hook(&["claude", "PreToolUse"], &edit_event(&repo, &long_session, "src/a.rs")), "long session id");
    let mut event: serde_json::Value = serde_json::from_slice(&edit_event(&repo, "bob", "src/a.rs")).expect("json");
    event["agent_id"] = "a/b".into();
    deny(&env.hook(&["claude", "PreToolUse"], event.to_string().as_bytes()), "agent id with a slash");
    // Over the stdin limit: the path cannot be read, so the edit is refused, not let through.
    let mut huge = edit_event(&repo, "bob", "src/a.rs");
    huge.truncate(huge.len() - 3);
    huge.extend(std::iter::repeat_n(b'x', 17 * 1024 * 1024));
    huge.extend(b"\"}}");
    let reason = deny(&env.hook(&["claude", "PreToolUse"], &huge), "17 MiB write");
    assert!(reason.contains("too large"), "{reason}");
}

#[test]
fn a_subagents_claims_end_with_it_except_the_work_it_left() {
    let env = Env::new();
    let repo = env.repo();
    let git = |dir: &Path, args: &[&str]| env.git(dir, args);
    env.initial_commit();
    let stop = |cwd: &Path, agent: &str| {
        let event = serde_json::json!({"session_id": "alice", "agent_id": agent, "cwd": cwd, "hook_event_name": "SubagentStop"});
        assert_silent_success(&env.hook(&["claude", "SubagentStop"], event.to_string().as_bytes()), "SubagentStop");
    };
    let edit = |cwd: &Path, agent: &str, file: &str| {
        let mut event: serde_json::Value = serde_json::from_slice(&edit_event(cwd, "alice", file)).expect("json");
        event["agent_id"] = agent.into();
        assert_silent_success(&env.hook(&["claude", "PreToolUse"], event.to_string().as_bytes()), "edit");
    };
    let claims = || -> Vec<(String, bool)> {
        let status: serde_json::Value =
            serde_json::from_slice(&env.lanes(&["--json", "status"]).stdout).expect("status");
        status["claims"]
            .as_array()
            .expect("claims")
            .iter()
            .map(|c| (c["session"].as_str().expect("session").to_owned(), c["pending"] == true))
            .collect()
    };
    // A subagent that claimed a file and changed nothing: its claim ends with it.
    let idle = repo.parent().expect("root").join("wt-idle");
    git(&repo, &["worktree", "add", "-q", "-b", "idle", &idle.to_string_lossy()]);
    edit(&idle, "idle", "src/idle.rs");
    assert_eq!(claims(), [("alice/idle".to_owned(), false)]);
    stop(&idle, "idle");
    assert!(claims().is_empty());
    // A subagent that wrote a file (committed or not) and ended: the file stays claimed as pending work.
    for (name, commit) in [("dirty", false), ("committed", true)] {
        let tree = repo.parent().expect("root").join(format!("wt-{name}"));
        git(&repo, &["worktree", "add", "-q", "-b", name, &tree.to_string_lossy()]);
        let file = format!("src/{name}.rs");
        edit(&tree, name, &file);
        std::fs::write(tree.join(&file), "work\n").expect("write");
        if commit {
            git(&tree, &["add", "-A"]);
            git(&tree, &["commit", "-qm", "subagent work"]);
        }
        stop(&tree, name);
        assert!(claims().contains(&(format!("alice/{name}"), true)), "{name}: {:?}", claims());
    }
}

#[test]
fn edits_outside_the_bound_worktree_follow_the_binding_policy() {
    let env = Env::new();
    let repo = env.repo();
    env.initial_commit();
    let event = |session: &str, agent: Option<&str>, cwd: &Path, file: &Path| {
        let mut event = serde_json::json!({"session_id": session, "cwd": cwd, "tool_name": "Write",
            "tool_input": {"file_path": file, "content": "x"}});
        if let Some(agent) = agent {
            event["agent_id"] = agent.into();
        }
        event.to_string().into_bytes()
    };
    // lanes makes a subagent worktree (WorktreeCreate prints its path) ...
    let create = serde_json::json!({"session_id": "boss", "cwd": repo, "hook_event_name": "WorktreeCreate", "name": "agent-helper"});
    let made = env.hook(&["claude", "WorktreeCreate"], create.to_string().as_bytes());
    let tree = PathBuf::from(String::from_utf8_lossy(&made.stdout).trim());
    assert!(tree.join("src/a.rs").exists(), "WorktreeCreate printed {tree:?}");
    let status = env.command("git").args(["status", "--porcelain"]).current_dir(&repo).output().expect("git status");
    assert!(
        String::from_utf8_lossy(&status.stdout).trim().is_empty(),
        "the agent worktree shows in the main checkout's status"
    );
    // ... the subagent may edit there, and is refused in the main checkout (strict), told where to edit.
    assert_silent_success(
        &env.hook(&["claude", "PreToolUse"], &event("boss", Some("helper"), &tree, &tree.join("src/a.rs"))),
        "own worktree",
    );
    let denied = env.hook(&["claude", "PreToolUse"], &event("boss", Some("helper"), &tree, &repo.join("src/b.rs")));
    let reply: serde_json::Value = serde_json::from_slice(&denied.stdout).expect("deny JSON");
    assert_eq!(reply["hookSpecificOutput"]["permissionDecision"], "deny");
    let reason = reply["hookSpecificOutput"]["permissionDecisionReason"].as_str().expect("reason");
    assert!(reason.contains(&format!("{}/src/b.rs", tree.display())), "{reason}");
    // A session working in the main checkout that edits in the subagent's worktree is warned, not refused.
    let warned = env.hook(&["claude", "PreToolUse"], &event("boss", None, &repo, &tree.join("src/c.rs")));
    let reply: serde_json::Value = serde_json::from_slice(&warned.stdout).expect("warning JSON");
    assert!(reply["hookSpecificOutput"]["permissionDecision"].is_null(), "{reply}");
    assert!(reply["hookSpecificOutput"]["additionalContext"].as_str().expect("context").contains("binding"), "{reply}");
}

#[test]
fn the_branch_guard_reports_a_head_moved_by_someone_else_and_warns_before_a_shared_switch() {
    let env = Env::new();
    let repo = env.repo();
    let git = |args: &[&str]| env.git(&repo, args);
    env.initial_commit();
    let run = |event: &str, input: serde_json::Value| -> serde_json::Value {
        let output = env.hook(&["claude", event], input.to_string().as_bytes());
        assert_eq!(output.status.code(), Some(0), "{event}");
        // Nothing said is Null; anything said must be the hook's JSON.
        if output.stdout.is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{event}: not JSON ({e}): {:?}", String::from_utf8_lossy(&output.stdout)))
    };
    for session in ["alice", "bob"] {
        run("SessionStart", serde_json::json!({"session_id": session, "cwd": repo, "source": "startup"}));
    }
    run("UserPromptSubmit", serde_json::json!({"session_id": "alice", "cwd": repo, "prompt": "work"}));
    // Someone else switches the branch: alice hears about it at her next step, once.
    git(&["checkout", "-qb", "elsewhere"]);
    let told = run("UserPromptSubmit", serde_json::json!({"session_id": "alice", "cwd": repo, "prompt": "more"}));
    let context = told["hookSpecificOutput"]["additionalContext"].as_str().unwrap_or_default().to_owned();
    assert!(context.contains("moved from ") && context.contains(" to elsewhere@"), "{told}");
    let again = run("UserPromptSubmit", serde_json::json!({"session_id": "alice", "cwd": repo, "prompt": "again"}));
    assert!(again.is_null(), "reported twice: {again}");
    // Alice switches it herself: warned that bob works there too, and not told her own move later.
    let bash = serde_json::json!({"session_id": "alice", "cwd": repo, "tool_name": "Bash",
        "tool_input": {"command": "git switch -"}});
    let warned = run("PreToolUse", bash);
    assert!(warned["hookSpecificOutput"]["additionalContext"].as_str().unwrap_or_default().contains("bob"), "{warned}");
    git(&["switch", "-q", "-"]);
    let quiet = run("UserPromptSubmit", serde_json::json!({"session_id": "alice", "cwd": repo, "prompt": "after"}));
    assert!(quiet.is_null(), "her own switch was reported: {quiet}");
}

#[test]
fn a_subagent_whose_command_ran_in_the_main_checkout_is_told_what_it_changed_there() {
    let env = Env::new();
    let repo = env.repo();
    env.initial_commit();
    let create = serde_json::json!({"session_id": "boss", "cwd": repo, "hook_event_name": "WorktreeCreate", "name": "agent-helper"});
    let made = env.hook(&["claude", "WorktreeCreate"], create.to_string().as_bytes());
    let tree = PathBuf::from(String::from_utf8_lossy(&made.stdout).trim());
    let batch = |cwd: &Path| {
        let event = serde_json::json!({"session_id": "boss", "agent_id": "helper", "cwd": cwd, "hook_event_name": "PostToolBatch",
            "tool_calls": [{"tool_name": "Bash", "tool_input": {"command": "echo hi > stray.txt"}}]});
        env.hook(&["claude", "PostToolBatch"], event.to_string().as_bytes())
    };
    assert_silent_success(&batch(&tree), "command in its own worktree");
    std::fs::write(repo.join("stray.txt"), "hi\n").expect("write");
    let told = batch(&repo);
    let reply: serde_json::Value = serde_json::from_slice(&told.stdout).expect("context JSON");
    let context = reply["hookSpecificOutput"]["additionalContext"].as_str().expect("context");
    assert!(context.contains("stray.txt") && context.contains(&tree.display().to_string()), "{context}");
}

/// Whatever arrives on stdin, for every event, the hook exits 0 (and the sidecar it may start stays up).
#[test]
fn random_stdin_for_every_event_exits_zero() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let env = Env::new();
    let repo = env.repo();
    let events = [
        "SessionStart",
        "PreToolUse",
        "PostToolUse",
        "PostToolBatch",
        "UserPromptSubmit",
        "Stop",
        "SubagentStop",
        "SessionEnd",
        "WorktreeCreate",
    ];
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[^\u{0}]{0,30}".prop_map(serde_json::Value::from),
    ];
    let input = (
        prop::sample::select(events.to_vec()),
        prop::option::of("[a-z0-9/-]{0,12}"),
        prop::option::of(prop::sample::select(vec![
            repo.to_string_lossy().into_owned(),
            "/".into(),
            "relative".into(),
        ])),
        prop::collection::hash_map("[a-z_]{1,12}", value, 0..5),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config { cases: 120, failure_persistence: None, ..Config::default() });
    runner
        .run(&input, |(event, session, cwd, extra, garble)| {
            let mut object: serde_json::Map<String, serde_json::Value> = extra.into_iter().collect();
            if let Some(session) = session {
                object.insert("session_id".into(), session.into());
            }
            if let Some(cwd) = cwd {
                object.insert("cwd".into(), cwd.into());
            }
            let mut bytes = serde_json::Value::Object(object).to_string().into_bytes();
            if garble {
                bytes.truncate(bytes.len() / 2);
            }
            let output = env.hook(&["claude", event], &bytes);
            prop_assert_eq!(output.status.code(), Some(0), "{} exited {:?}", event, output.status);
            Ok(())
        })
        .expect("the hook always exits 0");
}

/// The reason a client's answer refuses with, read from that client's own format.
fn refusal(client: &str, output: &Output) -> Option<String> {
    assert_eq!(output.status.code(), Some(0), "{client}: a deny is a structured answer on exit 0");
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let reason = match client {
        "claude" | "codex" => &reply["hookSpecificOutput"]["permissionDecisionReason"],
        "gemini" => &reply["reason"],
        "copilot" => &reply["permissionDecisionReason"],
        _ => &reply["deny"],
    };
    reason.as_str().map(str::to_owned)
}

/// Each client's adapter reads its own hook input and refuses a held file in its own format, naming the holder
/// and its client; a free file goes through and is claimed for that client's session.
#[test]
fn every_client_is_refused_a_held_file_in_its_own_format_and_claims_free_ones() {
    let env = Env::new();
    let repo = env.repo();
    let start =
        serde_json::json!({"session_id": "cc1", "cwd": repo, "hook_event_name": "SessionStart", "source": "startup"});
    env.hook(&["claude", "SessionStart"], start.to_string().as_bytes());
    assert_silent_success(&env.hook(&["claude", "PreToolUse"], &edit_event(&repo, "cc1", "src/a.rs")), "claude claims");
    let path = |file: &str| repo.join(file).to_string_lossy().into_owned();
    let inputs = |file: &str| {
        [
            (
                "codex",
                "PreToolUse",
                serde_json::json!({"session_id": "cx1", "cwd": repo, "tool_name": "apply_patch",
                "tool_input": {"command": format!("*** Begin Patch\n*** Update File: {file}\n@@\n-a\n+b\n*** End Patch\n")}}),
            ),
            (
                "gemini",
                "BeforeTool",
                serde_json::json!({"session_id": "gm1", "cwd": repo, "tool_name": "write_file",
                "tool_input": {"file_path": path(file), "content": "x"}}),
            ),
            (
                "copilot",
                "preToolUse",
                serde_json::json!({"sessionId": "cp1", "cwd": repo, "toolName": "edit",
                "toolArgs": serde_json::json!({"path": path(file), "old_str": "a", "new_str": "b"}).to_string()}),
            ),
            (
                "opencode",
                "PreToolUse",
                serde_json::json!({"sessionID": "oc1", "cwd": repo, "tool": "write",
                "args": {"filePath": path(file), "content": "x"}}),
            ),
        ]
    };
    for (client, event, input) in inputs("src/a.rs") {
        let reason = refusal(client, &env.hook(&[client, event], input.to_string().as_bytes()))
            .unwrap_or_else(|| panic!("{client} was not refused the held file"));
        assert!(reason.contains("held by claude session cc1"), "{client}: {reason}");
    }
    for (i, (client, event, input)) in inputs("src/b.rs").into_iter().enumerate() {
        let output = env.hook(&[client, event], input.to_string().as_bytes());
        if i == 0 {
            assert_silent_success(&output, "a free file for the first client");
        } else {
            let reason =
                refusal(client, &output).unwrap_or_else(|| panic!("{client} took a file the first client claimed"));
            assert!(reason.contains("cx1"), "{client}: {reason}");
        }
    }
}

/// A patch is refused as a whole when one of its files is held, and one lanes cannot read is refused with the
/// reason, whether it comes as a tool call or inside a shell command (Codex sends `apply_patch <<'EOF'`).
#[test]
fn a_patch_touching_a_held_file_or_unreadable_is_refused_whole() {
    let env = Env::new();
    let repo = env.repo();
    assert_silent_success(&env.hook(&["claude", "PreToolUse"], &edit_event(&repo, "holder", "src/a.rs")), "claim");
    let shell = |command: &str| {
        serde_json::json!({"session_id": "cx", "cwd": repo, "tool_name": "Bash", "tool_input": {"command": command}})
            .to_string()
    };
    let both = "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: src/new.rs\n+x\n*** Update File: src/a.rs\n@@\n-a\n+b\n*** End Patch\nEOF\n";
    let reason = refusal("codex", &env.hook(&["codex", "PreToolUse"], shell(both).as_bytes())).expect("refused");
    assert!(reason.contains("held by session holder") && reason.contains("whole patch (2 files)"), "{reason}");
    let status = env.lanes(&["--json", "status"]);
    assert!(!String::from_utf8_lossy(&status.stdout).contains("src/new.rs"), "a refused patch claimed its other file");
    let unknown = "apply_patch <<'EOF'\n*** Begin Patch\n*** Rename File: src/b.rs\n*** End Patch\nEOF\n";
    let reason = refusal("codex", &env.hook(&["codex", "PreToolUse"], shell(unknown).as_bytes())).expect("refused");
    assert!(reason.contains("cannot read this patch") && reason.contains("Rename File"), "{reason}");
    let from_file = refusal("codex", &env.hook(&["codex", "PreToolUse"], shell("apply_patch < fix.diff").as_bytes()));
    assert!(from_file.is_some_and(|r| r.contains("Begin Patch")), "a patch lanes cannot see went through");
    assert_silent_success(&env.hook(&["codex", "PreToolUse"], shell("cargo test").as_bytes()), "a plain command");
}
