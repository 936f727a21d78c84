//! What a careless user or another local process could try: an edit through a symlink into another worktree,
//! a WorktreeCreate name that is a path, a trace log that would copy prompts.

use serde_json::json;

use crate::common::{TestEnv, hook};

#[test]
fn an_edit_through_a_symlink_into_another_worktree_is_decided_there() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let wt2 = env.worktree(&repo, "wt2");
    env.lanes(&wt2, &["--session", "holder", "claim", "docs/new.md"]).success();
    std::os::unix::fs::symlink(&wt2, repo.join("wt2link")).expect("symlink");
    let edit = json!({"session_id": "bob", "cwd": repo, "hook_event_name": "PreToolUse", "tool_name": "Write",
        "tool_input": {"file_path": repo.join("wt2link/docs/new.md"), "content": "x"}});
    let answer: serde_json::Value = serde_json::from_str(hook(&env, "PreToolUse", edit).stdout.trim()).expect("JSON");
    let decision = &answer["hookSpecificOutput"];
    assert_eq!(decision["permissionDecision"], "deny", "{answer}");
    assert!(decision["permissionDecisionReason"].as_str().expect("reason").contains("holder"), "{answer}");
}

#[test]
fn a_worktree_name_that_is_a_path_makes_no_worktree_even_when_the_sidecar_cannot_answer() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let evil = env.root().join("evil");
    let create = json!({"session_id": "s", "cwd": repo, "hook_event_name": "WorktreeCreate", "name": evil});
    assert!(hook(&env, "WorktreeCreate", create.clone()).stdout.trim().is_empty(), "the sidecar made it");
    assert!(!evil.exists());
    if crate::common::current_uid() != 0 {
        eprintln!("skipped the fallback half: needs root to give the runtime dir to another uid");
        return;
    }
    // A runtime dir of another uid is refused by every client, so the hook falls back to git itself: the
    // fallback applies the same name check.
    env.lanes(&repo, &["sidecar", "stop"]).success();
    let runtime = env.root().join("run/lanes");
    std::os::unix::fs::chown(&runtime, Some(65534), Some(65534)).expect("chown");
    assert!(hook(&env, "WorktreeCreate", create).stdout.trim().is_empty(), "the fallback made it");
    assert!(!evil.exists(), "the fallback made a worktree at {}", evil.display());
    let good = json!({"session_id": "s", "cwd": repo, "hook_event_name": "WorktreeCreate", "name": "agent-fine"});
    let made = hook(&env, "WorktreeCreate", good).stdout;
    assert!(made.trim().ends_with("agent-fine"), "the fallback refused a plain name: {made:?}");
    std::os::unix::fs::chown(&runtime, Some(0), Some(0)).expect("chown back");
}

#[test]
fn a_trace_log_never_holds_a_prompt_as_sent_nor_feeds_on_itself() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let mut start = env.lanes_command(&repo, &["sidecar", "start"]);
    assert!(start.env("LANES_LOG", "trace").status().expect("start").success());
    let key = "sk-ant-api03-Zx9QpL2mK8vR4tY7wN1sB6cF3hJ0gD5eAbCdEf";
    hook(&env, "SessionStart", json!({"session_id": "s1", "cwd": repo, "source": "startup"}));
    hook(&env, "UserPromptSubmit", json!({"session_id": "s1", "cwd": repo, "prompt": format!("use {key}")}));
    // The log is in the watched git dir: an idle sidecar whose watcher logged each event it saw there wrote
    // ~14 MB a second, each line an event for the next.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let idle = std::fs::metadata(repo.join(".git/lanes/sidecar.log")).expect("log").len();
    assert!(idle < 1024 * 1024, "an idle sidecar at trace wrote {idle} bytes of log in 2 s");
    env.lanes(&repo, &["sidecar", "stop"]).success();
    let log = std::fs::read_to_string(repo.join(".git/lanes/sidecar.log")).expect("log");
    assert!(!log.is_empty(), "LANES_LOG=trace wrote nothing");
    assert!(!log.contains(key), "the sidecar log holds the prompt's key");
}
