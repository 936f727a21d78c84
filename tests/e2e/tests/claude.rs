//! The lanes plugin with the real `claude` CLI (pinned version), offline against the project's fake
//! Messages API: claims across sessions and worktrees, denial reasons the model sees, messages delivered
//! once, release at SessionEnd, sidecar auto-start, and parallel subagents in isolated worktrees.

mod common;

use std::time::Duration;

use common::{World, occurrences, tool_results};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn plugin_validates_for_the_directory_and_lists_every_hook_and_skill() {
    let Some(claude) = common::claude_or_skip() else { return };
    let checkout = common::manifest_dir().join("../..");
    let home = tempfile::tempdir().expect("home");
    let output = std::process::Command::new(claude)
        .args(["plugin", "validate", "--strict", "--profile", "directory"])
        .arg(&checkout)
        .env("HOME", home.path())
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .output()
        .expect("run claude plugin validate");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "validation failed:\n{report}");
    let hooks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(checkout.join("hooks/hooks.json")).expect("hooks.json"))
            .expect("json");
    for event in hooks["hooks"].as_object().expect("hooks").keys() {
        assert!(report.contains(&format!("hooks: {event} ")), "inventory lacks hook {event}:\n{report}");
    }
    for skill in std::fs::read_dir(checkout.join("skills")).expect("skills") {
        let name = skill.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(report.contains(&format!("skills: lanes:{name}")), "inventory lacks skill {name}:\n{report}");
    }
}

#[test]
fn sessions_in_two_worktrees_coordinate_through_claims_and_messages() {
    let Some(mut world) = World::new() else { return };
    let main = world.repo.clone();
    let wt_b = world.worktree("wt-b");
    let (a_rs, b_rs) = (main.join("src/a.rs"), wt_b.join("src/a.rs"));
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    world.serve(&json!({"conversations": [
        {"match": "task A", "steps": [
            {"tools": [{"name": "Read", "input": {"file_path": s(&a_rs)}}]},
            {"tools": [{"name": "Edit", "input": {"file_path": s(&a_rs), "old_string": "fn a() {}", "new_string": "fn a() { /* A */ }"}}]},
            {"wait_for_file": s(&world.gate("a-done")), "text": "DONE"}
        ]},
        {"match": "task B1", "steps": [
            {"tools": [{"name": "Read", "input": {"file_path": s(&b_rs)}}]},
            {"tools": [{"name": "Edit", "input": {"file_path": s(&b_rs), "old_string": "fn a() {}", "new_string": "fn a() { /* B */ }"}}]},
            {"tools": [{"name": "Write", "input": {"file_path": s(&wt_b.join("src/free.rs")), "content": "fn free() {}\n"}}]},
            {"wait_for_file": s(&world.gate("b-go")), "tools": [{"name": "Write", "input": {"file_path": s(&wt_b.join("src/free2.rs")), "content": "fn free2() {}\n"}}]},
            {"text": "DONE"}
        ]},
        {"match": "task B2", "steps": [
            {"tools": [{"name": "Read", "input": {"file_path": s(&b_rs)}}]},
            {"tools": [{"name": "Edit", "input": {"file_path": s(&b_rs), "old_string": "fn a() {}", "new_string": "fn a() { /* B */ }"}}]},
            {"text": "DONE"}
        ]}
    ]}));
    let status = world.lanes(&main, &["--json", "sidecar", "status"]);
    assert_eq!(status.status.code(), Some(1), "no sidecar runs before the first hook");

    // A edits src/a.rs and keeps working (its model call waits on a gate), so it holds the claim.
    let a = world.start_claude(&main, "a", "task A: edit a.rs");
    let a_waiting = world.request_at("task A", 2);
    let a_session = a_waiting["session"].as_str().expect("A's session id").to_owned();
    assert_eq!(std::fs::read_to_string(&a_rs).expect("read"), "fn a() { /* A */ }\n");
    let first = world.request_at("task A", 0);
    assert!(
        occurrences(&first, "lanes: you are session") > 0,
        "SessionStart context missing: the hook that started the sidecar did not answer in time"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&world.lanes(&main, &["--json", "status"]).stdout).expect("status");
    let held: Vec<_> =
        status["claims"].as_array().expect("claims").iter().filter(|c| c["session"] == a_session.as_str()).collect();
    assert_eq!(held.len(), 1, "{status}");
    assert_eq!(held[0]["scopes"], json!(["src/a.rs"]));

    // B, in another worktree of the same repository, sees A's claim at start and is denied the same file.
    let b = world.start_claude(&wt_b, "b", "task B1: edit a.rs too");
    let b_start = world.request_at("task B1", 0);
    assert!(
        occurrences(&b_start, &format!("{a_session} in {}", main.display())) > 0,
        "B's SessionStart context does not show A"
    );
    assert!(occurrences(&b_start, "holds src/a.rs") > 0, "B's SessionStart context does not show A's claim");
    let after_denial = world.request_at("task B1", 2);
    let denial =
        tool_results(&after_denial).into_iter().find(|r| r.contains("is held by")).expect("the model saw no denial");
    assert!(denial.contains(&format!("held by claude session {a_session}")), "{denial}");
    assert!(denial.contains("lanes send"), "{denial}");
    assert_eq!(std::fs::read_to_string(&b_rs).expect("read"), "fn a() {}\n", "the denied edit changed the file");
    world.request_at("task B1", 3);
    assert!(wt_b.join("src/free.rs").exists(), "B could not write a free file");

    // A message sent now reaches B's next request, once.
    let b_session = world.request_at("task B1", 3)["session"].as_str().expect("B's session id").to_owned();
    let sent = world.lanes(&main, &["--session", &a_session, "send", &b_session, "ping-7f3a: a.rs is mine until noon"]);
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    world.open_gate("b-go");
    world.wait_claude(b, LIMIT);
    let last = world.request_at("task B1", 4);
    assert_eq!(occurrences(&last, "ping-7f3a"), 1, "the message should appear exactly once in B's next request");

    // A ends with its change uncommitted: the claim follows the work, so src/a.rs stays claimed as pending
    // work of A's worktree; once the change lands on main, the path is free and B's edit goes through.
    world.open_gate("a-done");
    world.wait_claude(a, LIMIT);
    let claims_of_a = || -> Vec<serde_json::Value> {
        let status: serde_json::Value =
            serde_json::from_slice(&world.lanes(&main, &["--json", "status"]).stdout).expect("status");
        status["claims"]
            .as_array()
            .expect("claims")
            .iter()
            .filter(|c| c["session"] == a_session.as_str())
            .cloned()
            .collect()
    };
    let left = claims_of_a();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["pending"], true, "A's uncommitted change was released with its session: {left:?}");
    assert_eq!(left[0]["scopes"], json!(["src/a.rs"]));
    let check = world.lanes(&wt_b, &["--session", "someone", "--json", "check", "src/a.rs"]);
    assert_eq!(check.status.code(), Some(3), "another worktree may take A's pending work");
    world.git(&main, &["commit", "-qam", "A's change"]);
    assert!(
        common::eventually(Duration::from_secs(20), || claims_of_a().is_empty()),
        "A's work landed on main but stays claimed: {:?}",
        claims_of_a()
    );
    // A's turn changed a file, so its Stop hook left a checkpoint of the worktree.
    let checkpointed = common::eventually(Duration::from_secs(20), || {
        let listed: serde_json::Value =
            serde_json::from_slice(&world.lanes(&main, &["--json", "checkpoints", "--all"]).stdout).unwrap_or_default();
        listed["checkpoints"].as_array().into_iter().flatten().any(|c| {
            c["session"] == a_session.as_str() && c["files"].as_array().is_some_and(|f| f.contains(&json!("src/a.rs")))
        })
    });
    assert!(checkpointed, "no end-of-turn checkpoint for A");
    let b2 = world.start_claude(&wt_b, "b2", "task B2: edit a.rs again");
    world.wait_claude(b2, LIMIT);
    assert_eq!(std::fs::read_to_string(&b_rs).expect("read"), "fn a() { /* B */ }\n");
}

#[test]
fn parallel_subagents_in_isolated_worktrees_contend_like_sessions() {
    let Some(mut world) = World::new() else { return };
    let agent = |which: &str| {
        json!({"name": "Agent", "input": {
            "description": format!("sub {which}"),
            "prompt": format!("sub {which}: write shared"),
            "subagent_type": "general-purpose",
            "isolation": "worktree",
        }})
    };
    world.serve(&json!({"conversations": [
        {"match": "task S", "steps": [{"tools": [agent("one"), agent("two"), agent("three")]}, {"text": "DONE"}]},
        {"match": "sub three: write shared", "steps": [
            {"tools": [{"name": "Write", "input": {"file_path": format!("{}/src/intrusion.rs", world.repo.display()), "content": "not mine\n"}}]},
            {"text": "DONE"}
        ]},
        {"match": "sub one: write shared", "steps": [
            {"tools": [{"name": "Write", "input": {"file_path": "{cwd}/src/shared.rs", "content": "one\n"}}]},
            {"after": ["sub two: write shared", 1], "text": "DONE"}
        ]},
        {"match": "sub two: write shared", "steps": [
            {"after": ["sub one: write shared", 1], "tools": [{"name": "Write", "input": {"file_path": "{cwd}/src/shared.rs", "content": "two\n"}}]},
            {"text": "DONE"}
        ]}
    ]}));
    let repo = world.repo.clone();
    let doctor: serde_json::Value =
        serde_json::from_slice(&world.lanes(&repo, &["--json", "doctor"]).stdout).expect("doctor");
    let plugin =
        doctor["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "plugin").expect("plugin check");
    assert_eq!(plugin["status"], "ok", "lanes doctor does not see the installed plugin: {plugin}");
    let parent = world.start_claude(&repo, "s", "task S: two helpers");
    world.wait_claude(parent, LIMIT);

    let one = world.request_at("sub one: write shared", 1);
    let two = world.request_at("sub two: write shared", 1);
    let (one_dir, two_dir) = (one["cwd"].as_str().expect("cwd"), two["cwd"].as_str().expect("cwd"));
    assert_ne!(one_dir, two_dir, "each subagent works in its own worktree");
    assert_ne!(one_dir, repo.to_string_lossy(), "subagents run in isolated worktrees");
    let session = one["session"].as_str().expect("session");
    let denial =
        tool_results(&two).into_iter().find(|r| r.contains("is held by")).expect("the second subagent was not denied");
    assert!(
        denial.contains(&format!("held by claude session {session}/")),
        "the denial names the first subagent: {denial}"
    );
    assert_eq!(std::fs::read_to_string(format!("{one_dir}/src/shared.rs")).expect("first write"), "one\n");
    // The third subagent, isolated in its own worktree, may not write into the main checkout. Claude Code
    // 2.1.330 stops that itself before any hook runs; lanes' binding (plugin/tests/hook.rs) stops the same
    // edit for subagents and sessions it does not isolate.
    let three = world.request_at("sub three: write shared", 1);
    let results = tool_results(&three);
    assert!(
        results.iter().any(|r| r.contains("tool_use_error") || r.contains("works in")),
        "the write into the main checkout was not refused: {results:?}"
    );
    assert!(!world.repo.join("src/intrusion.rs").exists(), "the subagent wrote into the main checkout");
    assert!(!std::path::Path::new(&format!("{two_dir}/src/shared.rs")).exists(), "the denied write happened");

    // lanes made the worktrees (WorktreeCreate), on lanes/ branches; the one without work is gone
    // afterwards, the one with work is kept and listed.
    for dir in [one_dir, two_dir] {
        assert!(dir.starts_with(&format!("{}/.claude/worktrees/agent-", repo.display())), "{dir}");
    }
    let gone = common::eventually(Duration::from_secs(20), || !std::path::Path::new(two_dir).exists());
    assert!(gone, "the subagent worktree without work was not removed");
    let listed: serde_json::Value =
        serde_json::from_slice(&world.lanes(&repo, &["--json", "worktrees"]).stdout).expect("worktrees");
    let kept = listed["worktrees"]
        .as_array()
        .expect("list")
        .iter()
        .find(|w| w["path"] == one_dir)
        .cloned()
        .expect("kept worktree listed");
    assert!(kept["branch"].as_str().expect("branch").starts_with("lanes/"), "{kept}");
    assert_eq!(kept["dirty_files"], 1);
}

/// With `binding.sessions = "strict"`, a session working in one worktree that writes into another checkout of
/// the same repository is refused by lanes' PreToolUse hook (the refusal names the worktree to use), while
/// its own worktree stays open to it. Claude Code itself lets a session write outside its directory here, so
/// the refusal the model sees is lanes'.
#[test]
fn a_strictly_bound_session_is_refused_an_edit_in_another_worktree() {
    let Some(mut world) = World::new() else { return };
    let main = world.repo.clone();
    let wt_b = world.worktree("wt-b");
    std::fs::create_dir_all(main.join(".git/lanes")).expect("mkdir");
    std::fs::write(main.join(".git/lanes/config.toml"), "[binding]\nsessions = \"strict\"\n").expect("config");
    let intrusion = main.join("src/intrusion.rs");
    let own = wt_b.join("src/own.rs");
    world.serve(&json!({"conversations": [
        {"match": "task bound", "steps": [
            {"tools": [{"name": "Write", "input": {"file_path": intrusion.to_string_lossy(), "content": "not mine\n"}}]},
            {"tools": [{"name": "Write", "input": {"file_path": own.to_string_lossy(), "content": "mine\n"}}]},
            {"text": "DONE"}
        ]}
    ]}));
    let session = world.start_claude(&wt_b, "bound", "task bound: write into main");
    world.wait_claude(session, LIMIT);
    let after = world.request_at("task bound", 1);
    let results = tool_results(&after);
    let refusal =
        results.iter().find(|r| r.contains("works in")).unwrap_or_else(|| panic!("no lanes refusal: {results:?}"));
    assert!(refusal.contains(&format!("edit {}/src/intrusion.rs instead", wt_b.display())), "{refusal}");
    assert!(!intrusion.exists(), "the strictly bound session wrote into the main checkout");
    assert_eq!(std::fs::read_to_string(&own).expect("own write"), "mine\n", "its own worktree was refused");
}

/// `lanes team up feature --launch` opens a tmux window per role running the real `claude` in that role's
/// worktree; past the client's first screens (a returning user who trusts the team's worktrees), the role's
/// SessionStart hook gives the model its brief and its edit is claimed for that role's session.
#[test]
fn team_up_launches_a_claude_per_role_in_tmux() {
    let Some(mut world) = World::new() else { return };
    world.serve(&json!({"conversations": [
        {"match": "team backend:", "steps": [
            {"tools": [{"name": "Write", "input": {"file_path": "{cwd}/src/server.rs", "content": "fn serve() {}\n"}}]},
            {"text": "DONE"}
        ]}
    ]}));
    let repo = world.repo.clone();
    let bin = world.root.join("claude-bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::os::unix::fs::symlink(world.claude_path(), bin.join("claude")).expect("symlink");
    let roles = ["planner", "backend", "frontend", "reviewer"];
    // The interactive client checks its connection to the real service during onboarding, asks whether to use
    // the API key it finds, and whether to trust each folder; this world is offline (loopback only), so its
    // state says what a returning user's says: onboarding done, the key approved, the team's worktrees trusted,
    // edits accepted without a prompt (and no offer of auto mode).
    let state = world.root.join("home/.claude.json");
    let mut config: Value =
        std::fs::read_to_string(&state).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_else(|| json!({}));
    config["hasCompletedOnboarding"] = json!(true);
    config["customApiKeyResponses"] = json!({"approved": ["dummy"], "rejected": []});
    for role in roles {
        let worktree = world.root.join(format!("repo-{role}"));
        config["projects"][worktree.to_string_lossy().as_ref()] = json!({"hasTrustDialogAccepted": true});
    }
    std::fs::write(&state, config.to_string()).expect("write client state");
    let settings_path = world.root.join("home/.claude/settings.json");
    let mut settings: Value = std::fs::read_to_string(&settings_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}));
    settings["permissions"]["defaultMode"] = json!("acceptEdits");
    settings["permissions"]["disableAutoMode"] = json!("disable");
    std::fs::write(&settings_path, settings.to_string()).expect("write client settings");

    let session = "lanes-feature";
    let up = world.lanes_with_path(&repo, &bin, &["--json", "team", "up", "feature", "--launch"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let report: Value = serde_json::from_slice(&up.stdout).expect("json");
    assert_eq!(report["tmux"], session);
    let mut windows = String::new();
    let all_there = common::eventually(Duration::from_secs(10), || {
        windows = String::from_utf8_lossy(
            &world.tmux(&["list-windows", "-t", session, "-F", "#{window_name} #{pane_current_path}"]).stdout,
        )
        .into_owned();
        roles.iter().all(|role| windows.lines().any(|l| l.starts_with(role) && l.ends_with(&format!("repo-{role}"))))
    });
    assert!(all_there, "a window per role, each in its worktree:\n{windows}");
    // The real client waits for its first prompt in the backend window, past every first screen.
    let window = format!("{session}:backend");
    let pane = || String::from_utf8_lossy(&world.tmux(&["capture-pane", "-p", "-t", &window]).stdout).into_owned();
    let mut screen = String::new();
    let ready = common::eventually(Duration::from_secs(30), || {
        screen = pane();
        screen.contains("accept edits on")
    });
    assert!(ready, "claude did not reach its prompt in the backend window:\n{screen}");
    world.tmux(&["send-keys", "-t", &window, "-l", "team backend: write the server"]);
    std::thread::sleep(Duration::from_millis(300));
    world.tmux(&["send-keys", "-t", &window, "Enter"]);
    let first = world.request_at("team backend:", 0);
    assert!(
        occurrences(&first, "Team feature — your role: backend") > 0
            && occurrences(&first, "You implement server-side work") > 0,
        "the backend role's brief did not reach the model: {}",
        first["body"]["messages"]
    );
    let after = world.request_at("team backend:", 1);
    let results = tool_results(&after);
    let server = world.root.join("repo-backend/src/server.rs");
    let written = std::fs::read_to_string(&server).unwrap_or_default();
    let status: Value = serde_json::from_slice(&world.lanes(&repo, &["--json", "status"]).stdout).expect("status");
    let screen = pane();
    assert_eq!(written, "fn serve() {}\n", "the backend's write: {results:?}\n{screen}");
    let claim = status["claims"]
        .as_array()
        .expect("claims")
        .iter()
        .find(|c| c["scopes"].as_array().is_some_and(|s| s.iter().any(|s| s == "src/server.rs")))
        .unwrap_or_else(|| panic!("src/server.rs is not claimed: {status}"));
    let holder = claim["session"].as_str().expect("session");
    let sessions: Value =
        serde_json::from_slice(&world.lanes(&repo, &["--json", "sessions", "--all"]).stdout).expect("sessions");
    let record = sessions["sessions"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["id"] == holder))
        .unwrap_or_else(|| panic!("no session {holder}: {sessions}"));
    assert!(
        record["worktree"].as_str().is_some_and(|w| w.ends_with("repo-backend")),
        "the claim is not the backend window's session: {record}"
    );
}

/// The scenario of the "claims follow the work" report: eight real sessions in eight worktrees start together;
/// each writes one shared new file, then one of its own. Exactly one worktree gets the shared file: the others
/// are refused while its session works, and still refused once that session has ended with the file
/// uncommitted (pending work); every own file is written. `tests/bench/eight_sessions.sh 20` runs it 20 times.
#[test]
fn eight_sessions_in_eight_worktrees_end_with_one_shared_file() {
    const SESSIONS: usize = 8;
    let Some(mut world) = World::new() else { return };
    let trees: Vec<_> = (1..=SESSIONS).map(|n| world.worktree(&format!("w{n}"))).collect();
    let conversations: Vec<_> = (1..=SESSIONS)
        .map(|n| {
            let gate = world.gate(&format!("retry-{n}"));
            json!({"match": format!("eight {n}:"), "steps": [
                {"tools": [{"name": "Write", "input": {"file_path": "{cwd}/src/shared.rs", "content": format!("shared, from {n}\n")}}]},
                {"tools": [{"name": "Write", "input": {"file_path": format!("{{cwd}}/src/own{n}.rs"), "content": format!("own {n}\n")}}]},
                {"wait_for_file": gate.to_string_lossy(), "tools": [{"name": "Write", "input": {"file_path": "{cwd}/src/shared.rs", "content": format!("shared again, from {n}\n")}}]},
                {"text": "DONE"}
            ]})
        })
        .collect();
    world.serve(&json!({ "conversations": conversations }));
    let runs: Vec<usize> = (1..=SESSIONS)
        .map(|n| world.start_claude(&trees[n - 1], &format!("eight-{n}"), &format!("eight {n}: shared then own")))
        .collect();
    for n in 1..=SESSIONS {
        world.request_at(&format!("eight {n}:"), 2);
    }
    let holders: Vec<usize> = (1..=SESSIONS).filter(|n| trees[n - 1].join("src/shared.rs").exists()).collect();
    assert_eq!(holders.len(), 1, "worktrees holding src/shared.rs after the race: {holders:?}");
    let winner = holders[0];

    // The winner writes its file again (its own claim) and ends with the change uncommitted.
    world.open_gate(&format!("retry-{winner}"));
    world.wait_claude(runs[winner - 1], LIMIT);
    // Every other session tries again now: the claim followed the work, so they are refused again.
    for n in (1..=SESSIONS).filter(|n| *n != winner) {
        world.open_gate(&format!("retry-{n}"));
    }
    for n in (1..=SESSIONS).filter(|n| *n != winner) {
        world.wait_claude(runs[n - 1], LIMIT);
    }
    let holders: Vec<usize> = (1..=SESSIONS).filter(|n| trees[n - 1].join("src/shared.rs").exists()).collect();
    assert_eq!(holders, [winner], "a second worktree wrote src/shared.rs after the first session ended");
    for n in 1..=SESSIONS {
        assert!(trees[n - 1].join(format!("src/own{n}.rs")).exists(), "session {n} could not write its own file");
        if n == winner {
            continue;
        }
        let first = tool_results(&world.request_at(&format!("eight {n}:"), 1)).join("\n");
        assert!(first.contains("is held by"), "session {n} was not refused the shared file: {first}");
        let retry = tool_results(&world.request_at(&format!("eight {n}:"), 3)).join("\n");
        assert!(
            retry.contains("pending work") && retry.contains(&trees[winner - 1].to_string_lossy().into_owned()),
            "session {n}'s retry after the winner ended was not refused as pending work: {retry}"
        );
    }
}
