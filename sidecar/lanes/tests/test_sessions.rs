use std::time::Duration;

use crate::common::{TestEnv, eventually};

fn hook(env: &TestEnv, event: &str, input: serde_json::Value) {
    crate::common::hook(env, event, input);
}

#[test]
fn prompts_are_stored_with_secrets_masked_and_reach_checkpoints() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    hook(
        &env,
        "SessionStart",
        serde_json::json!({"session_id": "s1", "cwd": repo, "source": "startup", "model": "claude-test"}),
    );
    let secret = "sk-ant-api03-Zx9QpL2mK8vR4tY7wN1sB6cF3hJ0gD5eAbCdEf";
    let prompt = format!("deploy with ANTHROPIC_API_KEY={secret} and password = hunter2hunter2 please");
    hook(&env, "UserPromptSubmit", serde_json::json!({"session_id": "s1", "cwd": repo, "prompt": prompt}));
    std::fs::write(repo.join("src/a.rs"), "changed\n").expect("write");
    let made = env.lanes(&repo, &["--session", "s1", "--json", "checkpoint"]).success().json();
    let stored = made["checkpoint"]["prompt"].as_str().expect("prompt").to_owned();
    assert!(stored.contains("[REDACTED]") && stored.contains("deploy with"), "{stored}");
    // The entry `lanes sessions` lists for session `id`.
    let listed = |id: &str| -> serde_json::Value {
        let sessions = env.lanes(&repo, &["--json", "sessions"]).success().json();
        let found = sessions["sessions"].as_array().expect("sessions").iter().find(|s| s["id"] == id).cloned();
        found.unwrap_or_else(|| panic!("{id} is not listed: {sessions}"))
    };
    let s1 = listed("s1");
    assert_eq!(s1["model"], "claude-test");
    assert_eq!(s1["branch"], "main");
    // A session the CLI starts (no client to say which branch) works on the branch checked out in its worktree.
    let tree = env.worktree(&repo, "feat");
    env.lanes(&tree, &["--session", "cli", "claim", "src/feat.rs"]).success();
    let cli = listed("cli");
    assert_eq!(cli["branch"], "feat", "{cli}");
    assert_eq!(s1["last_checkpoint"], made["checkpoint"]["id"]);
    // A session that switched branches since it started is listed on the one it works on now.
    env.git(&repo, &["checkout", "-q", "-b", "topic"]);
    let switched = listed("s1");
    assert_eq!(switched["branch"], "topic", "{switched}");
    let sessions = env.lanes(&repo, &["--json", "sessions"]).success().json();
    let commit = made["checkpoint"]["commit"].as_str().expect("commit");
    let message = env.git(&repo, &["log", "-1", "--format=%B", commit]);
    assert!(message.contains("Prompt: deploy with"), "{message}");
    // The secret is nowhere: not in replies, the event log, the checkpoint commit, or the database files.
    env.lanes(&repo, &["sidecar", "stop"]).success();
    let mut everything = format!("{sessions}{message}{}", env.lanes(&repo, &["events"]).stdout);
    for entry in std::fs::read_dir(repo.join(".git/lanes")).expect("state dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            everything.push_str(&String::from_utf8_lossy(&std::fs::read(&path).expect("read")));
        }
    }
    assert!(!everything.contains(secret) && !everything.contains("hunter2hunter2"), "a secret was stored");
}

#[test]
fn ended_sessions_are_forgotten_after_the_retention_period() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let mut start = env.lanes_command(&repo, &["sidecar", "start"]);
    start.env("LANES_KEEP_ENDED_SESSIONS", "1s");
    assert!(start.status().expect("start").success());
    hook(&env, "SessionStart", serde_json::json!({"session_id": "old", "cwd": repo, "source": "startup"}));
    std::fs::write(repo.join("src/a.rs"), "changed\n").expect("write");
    env.lanes(&repo, &["--session", "old", "checkpoint"]).success();
    hook(&env, "SessionEnd", serde_json::json!({"session_id": "old", "cwd": repo, "reason": "other"}));
    // It ended (the event log says so whenever this runs; a listing may come after the retention already ran).
    let events = env.lanes(&repo, &["events"]).success().stdout;
    assert!(events.lines().any(|l| l.contains("session_end") && l.contains("\"old\"")), "{events}");
    let forgotten = eventually(Duration::from_secs(20), || {
        env.lanes(&repo, &["--json", "sessions", "--all"]).json()["sessions"].as_array().is_some_and(Vec::is_empty)
    });
    assert!(forgotten, "the ended session was kept past its retention");
    assert!(eventually(Duration::from_secs(5), || env
        .git(&repo, &["for-each-ref", "refs/lanes/checkpoints/"])
        .is_empty()));
}

#[test]
fn idle_cli_sessions_end_and_come_back_when_they_claim() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    std::fs::write(repo.join(".lanes.toml"), "[sessions]\nend_idle = \"1s\"\n").expect("write");
    // A live claim keeps the session live however slow the machine is; idleness starts at the release.
    env.lanes(&repo, &["--session", "typo", "claim", "src/a.rs"]).success();
    let state = |id: &str| {
        let status = env.lanes(&repo, &["--json", "status"]).success().json();
        status["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| (s["state"].as_str().unwrap_or("?").to_owned(), s["worktree"].clone()))
    };
    let (live, worktree) = state("typo").expect("typo is known");
    assert_eq!(live, "live");
    assert_eq!(worktree, repo.to_string_lossy().as_ref(), "a CLI session records its worktree");
    env.lanes(&repo, &["--session", "typo", "release", "--all"]).success();
    assert!(
        eventually(Duration::from_secs(30), || state("typo").is_some_and(|(s, _)| s == "ended")),
        "an idle CLI session with no live claim stays live forever"
    );
    env.lanes(&repo, &["--session", "typo", "claim", "src/b.rs"]).success();
    assert_eq!(state("typo").expect("typo").0, "live", "a CLI session that acts again starts again");
}
