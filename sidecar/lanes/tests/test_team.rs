use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::common::TestEnv;

#[test]
fn team_up_makes_role_worktrees_seeds_the_board_and_briefs_sessions() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let up = env.lanes(&repo, &["--json", "team", "up", "feature"]).success().json();
    let roles: Vec<&str> =
        up["roles"].as_array().expect("roles").iter().map(|r| r["role"].as_str().expect("role")).collect();
    assert_eq!(roles, ["planner", "backend", "frontend", "reviewer"]);
    let backend = PathBuf::from(up["roles"][1]["worktree"].as_str().expect("worktree"));
    assert!(backend.join("src/a.rs").exists(), "the backend worktree was not made");
    assert_eq!(env.git(&backend, &["branch", "--show-current"]).trim(), "team/backend");
    // Tasks with their dependencies: the review waits for both implementations.
    let board = env.lanes(&repo, &["--json", "task", "list"]).success().json();
    let tasks = board["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 4);
    assert_eq!(tasks[3]["after"], serde_json::json!([2, 3]));
    assert_eq!(tasks[0]["status"], "ready");
    // A session starting in the backend worktree gets its role.
    let hook = PathBuf::from(env!("CARGO_BIN_EXE_lanes")).with_file_name("lanes-hook");
    let mut child = env
        .hermetic(&mut Command::new(hook))
        .args(["claude", "SessionStart"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("hook");
    let event = serde_json::json!({"session_id": "b1", "cwd": backend, "source": "startup"});
    child.stdin.take().expect("stdin").write_all(event.to_string().as_bytes()).expect("write");
    let output = child.wait_with_output().expect("hook");
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout).expect("context");
    let context = reply["hookSpecificOutput"]["additionalContext"].as_str().expect("context");
    assert!(context.contains("your role: backend") && context.contains("lanes task next"), "{context}");
    // Running it again reuses the worktrees and the tasks.
    env.lanes(&repo, &["team", "up", "feature"]).success();
    assert_eq!(
        env.lanes(&repo, &["--json", "task", "list"]).success().json()["tasks"].as_array().expect("tasks").len(),
        4
    );
    assert_eq!(env.lanes(&repo, &["--json", "team", "up", "nonexistent"]).code, 2);
}
