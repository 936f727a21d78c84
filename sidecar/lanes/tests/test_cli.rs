use std::time::Duration;

use serde_json::Value;

use crate::common::{TestEnv, eventually};

fn ids(status: &Value) -> Vec<u64> {
    status["claims"].as_array().expect("claims").iter().map(|c| c["id"].as_u64().expect("id")).collect()
}

#[test]
fn claim_conflict_release_with_contract_shapes_and_exit_codes() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let granted =
        env.lanes(&repo, &["--session", "alice", "--json", "claim", "src/a.rs", "--note", "wip"]).success().json();
    let claim = &granted["claim"];
    for field in ["id", "session", "worktree", "scopes", "mode", "epoch", "expires_at", "note"] {
        assert!(claim.get(field).is_some(), "claim lacks {field}: {claim}");
    }
    assert_eq!(claim["session"], "alice");
    assert_eq!(claim["scopes"], serde_json::json!(["src/a.rs"]));
    assert_eq!(claim["mode"], "exclusive");
    assert_eq!(claim["worktree"], repo.to_string_lossy().as_ref());

    // Bob asks for the directory above: refused, exit 3, the holder named in message and conflicts.
    let refused = env.lanes(&repo, &["--session", "bob", "--json", "claim", "src"]);
    assert_eq!(refused.code, 3);
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "conflict");
    assert!(error["message"].as_str().expect("message").contains("alice"));
    let conflict = &error["conflicts"][0];
    assert_eq!(conflict["session"], "alice");
    assert_eq!(conflict["scope"], "src/a.rs");
    assert_eq!(conflict["claim_id"], claim["id"]);
    for field in ["worktree", "expires_at"] {
        assert!(conflict.get(field).is_some(), "conflict lacks {field}");
    }
    // Without --json the refusal goes to stderr and names the holder.
    let text = env.lanes(&repo, &["--session", "bob", "claim", "src/a.rs"]);
    assert_eq!(text.code, 3);
    assert!(text.stderr.contains("held by alice"), "{}", text.stderr);

    // check: exit 3 when another session holds the path, 0 when it is free or one's own.
    assert_eq!(env.lanes(&repo, &["--session", "bob", "check", "src/a.rs"]).code, 3);
    assert_eq!(env.lanes(&repo, &["--session", "alice", "check", "src/a.rs"]).code, 0);
    assert_eq!(env.lanes(&repo, &["--session", "bob", "check", "src/b.rs"]).code, 0);
    // Component-wise: src/a.rs does not cover src/a.rsx.
    env.lanes(&repo, &["--session", "bob", "claim", "src/a.rsx"]).success();

    let released = env.lanes(&repo, &["--session", "alice", "--json", "release", "--all"]).success().json();
    assert_eq!(released["released"], serde_json::json!([claim["id"]]));
    env.lanes(&repo, &["--session", "bob", "claim", "src"]).success();
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let outside = env.root().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::os::unix::fs::symlink(&outside, repo.join("escape")).expect("symlink");
    env.lanes(&repo, &["--session", "alice", "claim", "docs"]).success();
    let before = env.lanes(&repo, &["--json", "status"]).success().json();

    let cases: &[(&[&str], i32, &str)] = &[
        (&["claim", "../elsewhere"], 2, "invalid_scope"),
        (&["claim", "src/../../x"], 2, "invalid_scope"),
        (&["claim", "/etc/passwd"], 2, "invalid_scope"),
        (&["claim", "escape/file.rs"], 2, "invalid_scope"),
        (&["claim", ".git/config"], 2, "invalid_scope"),
        (&["claim", "src/[oops"], 2, "invalid_scope"),
        (&["claim", "src/a.rs", "--ttl", "0s"], 2, "invalid_argument"),
        (&["claim", "src/a.rs", "--ttl", "31d"], 2, "invalid_argument"),
        (&["claim", "src/a.rs", "--ttl", "soon"], 2, "invalid_argument"),
        (&["release", "999"], 3, "not_found"),
        (&["release", "1"], 3, "not_holder"),
        (&["renew", "1", "--epoch", "1"], 3, "not_holder"),
        (&["handoff", "1", "--to", "nobody"], 3, "not_holder"),
    ];
    for (args, code, error) in cases {
        let mut full = vec!["--session", "mallory", "--json"];
        full.extend_from_slice(args);
        let run = env.lanes(&repo, &full);
        assert_eq!(run.code, *code, "{args:?}: {}", run.stdout);
        let json = run.json();
        assert_eq!(json["error"]["code"], *error, "{args:?}: {json}");
        assert!(!json["error"]["message"].as_str().expect("message").is_empty());
    }
    let after = env.lanes(&repo, &["--json", "status"]).success().json();
    // A refused request registers nobody: the sessions are the ones there were.
    let sessions = |status: &serde_json::Value| -> Vec<String> {
        let mut names: Vec<String> = status["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(sessions(&before), sessions(&after), "a refused request registered a session");
    assert_eq!(ids(&before), ids(&after));
    assert_eq!(before["epoch"], after["epoch"]);
}

#[test]
fn renew_and_handoff_fence_old_epochs() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.lanes(&repo, &["--session", "bob", "claim", "docs/guide.md"]).success();
    let claim = env.lanes(&repo, &["--session", "alice", "--json", "claim", "src"]).success().json()["claim"].clone();
    let id = claim["id"].to_string();
    let epoch = claim["epoch"].as_u64().expect("epoch");

    let renewed = env
        .lanes(&repo, &["--session", "alice", "--json", "renew", &id, "--ttl", "2h", "--epoch", &epoch.to_string()])
        .success()
        .json();
    let new_epoch = renewed["claim"]["epoch"].as_u64().expect("epoch");
    assert!(new_epoch > epoch);
    assert!(renewed["claim"]["expires_in_secs"].as_u64().expect("secs") > 3600);
    let events = env.lanes(&repo, &["events", "--json"]).success().json()["events"].clone();
    let renewal = events.as_array().into_iter().flatten().find(|e| e["kind"] == "renew").cloned().unwrap_or_default();
    assert_eq!(renewal["session"], "alice", "the renewal's event names its holder: {renewal}");

    let stale = env.lanes(&repo, &["--session", "alice", "--json", "release", &id, "--epoch", &epoch.to_string()]);
    assert_eq!(stale.code, 3);
    assert_eq!(stale.json()["error"]["code"], "stale_epoch");

    let handed = env.lanes(&repo, &["--session", "alice", "--json", "handoff", &id, "--to", "bob"]).success().json();
    assert_eq!(handed["claim"]["session"], "bob");
    assert!(handed["claim"]["epoch"].as_u64().expect("epoch") > new_epoch);
    // The old holder is fenced, and told.
    let fenced = env.lanes(&repo, &["--session", "alice", "--json", "renew", &id]);
    assert_eq!(fenced.json()["error"]["code"], "not_holder");
    let told = env.lanes(&repo, &["--session", "alice", "--json", "inbox"]).success().json();
    assert!(told["messages"][0]["text"].as_str().expect("text").contains("now belongs to bob"), "{told}");
    // Unknown recipients are refused.
    let unknown = env.lanes(&repo, &["--session", "bob", "--json", "handoff", &id, "--to", "ghost"]);
    assert_eq!(unknown.code, 3);
    assert_eq!(unknown.json()["error"]["code"], "not_found");
}

#[test]
fn expiry_takes_effect_at_once_and_hands_the_note_on() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let held = env.lanes(&repo, &["--session", "alice", "--json", "claim", "src", "--note", "parser half done"]);
    let claim = held.success().json()["claim"].clone();
    assert_eq!(env.lanes(&repo, &["--session", "bob", "claim", "src/a.rs"]).code, 3);
    // Alice lets it lapse; no sweep needs to run before bob gets it (polled: a busy machine is slow, not wrong).
    let (id, epoch) = (claim["id"].to_string(), claim["epoch"].to_string());
    env.lanes(&repo, &["--session", "alice", "renew", &id, "--ttl", "1s", "--epoch", &epoch]).success();
    let mut granted = Value::Null;
    let expired = || {
        let run = env.lanes(&repo, &["--session", "bob", "--json", "claim", "src/a.rs"]);
        granted = run.json();
        run.code == 0
    };
    assert!(eventually(Duration::from_secs(20), expired), "the lapsed claim still holds: {granted}");
    assert_eq!(granted["notes"][0]["note"], "parser half done");
    assert_eq!(granted["notes"][0]["session"], "alice");
    let events = env.lanes(&repo, &["events"]).success().stdout;
    assert!(events.lines().any(|l| l.contains("\"kind\":\"expire\"")), "{events}");
}

#[test]
fn relative_paths_resolve_from_the_current_directory() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let granted = env.lanes(&repo.join("src"), &["--session", "a", "--json", "claim", "a.rs", "*.rs"]).success().json();
    assert_eq!(granted["claim"]["scopes"], serde_json::json!(["src/a.rs", "src/*.rs"]));
    let whole = env.lanes(&repo.join("docs"), &["--session", "b", "--json", "claim", ".."]);
    assert_eq!(whole.code, 3, "`..` from docs/ is the whole repository, which overlaps a's claim");
}

#[test]
fn help_has_examples_and_init_is_idempotent() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let help = env.lanes(&repo, &["--help"]).success().stdout;
    assert!(help.contains("Examples:") && help.contains("lanes claim"), "{help}");
    let first = env.lanes(&repo, &["--json", "init"]).success().json();
    assert_eq!(first["config_created"], true);
    let second = env.lanes(&repo, &["--json", "init"]).success().json();
    assert_eq!(second["config_created"], false);
    assert_eq!(first["sidecar"]["pid"], second["sidecar"]["pid"]);
    let doctor = env.lanes(&repo, &["--json", "doctor"]);
    let report = doctor.json();
    let names: Vec<&str> =
        report["checks"].as_array().expect("checks").iter().map(|c| c["name"].as_str().expect("name")).collect();
    assert!(names.contains(&"sidecar") && names.contains(&"store"), "{report}");
    assert_eq!(report["ok"], true, "{report}");
    let outside = env.root();
    let not_repo = env.lanes(&outside, &["--json", "status"]);
    assert_eq!(not_repo.code, 2);
    assert!(not_repo.json()["error"]["message"].as_str().expect("message").contains("not inside a git repository"));
}

#[test]
fn events_follow_prints_new_events_as_they_happen() {
    use std::io::BufRead;
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.lanes(&repo, &["--session", "a", "claim", "src/a.rs"]).success();
    let mut follow =
        env.lanes_command(&repo, &["events", "--follow"]).stdout(std::process::Stdio::piped()).spawn().expect("follow");
    let mut lines = std::io::BufReader::new(follow.stdout.take().expect("stdout")).lines();
    let first: Value = serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("json");
    assert_eq!(first["kind"], "session_start");
    let grant: Value = serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("json");
    assert_eq!(grant["kind"], "grant");
    env.lanes(&repo, &["--session", "a", "release", "--all"]).success();
    let release: Value = serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("json");
    assert_eq!(release["kind"], "release");
    assert!(release["seq"].as_u64() > grant["seq"].as_u64());
    let _ = follow.kill();
    let _ = follow.wait();
}

#[test]
fn waits_tell_both_sides_and_refuse_a_deadlock() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let a = env.lanes(&repo, &["--session", "a", "--json", "claim", "src/a.rs"]).success().json();
    env.lanes(&repo, &["--session", "b", "claim", "src/b.rs"]).success();
    let waiting = env.lanes(&repo, &["--session", "a", "--json", "wait", "src/b.rs"]).success().json();
    assert_eq!(waiting["waiting_for"][0]["session"], "b");
    let told = env.lanes(&repo, &["--session", "b", "--json", "inbox"]).success().json();
    assert!(told["messages"][0]["text"].as_str().expect("text").contains("a waits for your claim"), "{told}");
    // b waiting for a's claim would close the cycle.
    let id = a["claim"]["id"].to_string();
    let deadlock = env.lanes(&repo, &["--session", "b", "--json", "wait", &id]);
    assert_eq!(deadlock.code, 3);
    assert_eq!(deadlock.json()["error"]["code"], "would_deadlock");
    // The wait clears when the claim ends, and the waiter hears of it.
    env.lanes(&repo, &["--session", "b", "release", "--all"]).success();
    let freed = env.lanes(&repo, &["--session", "a", "--json", "inbox"]).success().json();
    assert!(freed["messages"][0]["text"].as_str().expect("text").contains("has ended"), "{freed}");
    assert_eq!(env.lanes(&repo, &["--session", "a", "--json", "wait", "docs"]).json()["error"]["code"], "not_found");
}

/// `lanes watch` in a real terminal (tmux): it shows the live claim and quits on `q`.
#[test]
fn watch_runs_in_a_terminal_and_quits_on_q() {
    let env = TestEnv::new();
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux").env("TMUX_TMPDIR", env.root().join("run")).args(args).output()
    };
    if tmux(&["-V"]).is_err() {
        assert!(std::env::var_os("LANES_E2E_REQUIRED").is_none(), "tmux is required (tests/run-all.sh installs it)");
        return;
    }
    let repo = env.repo("r");
    env.lanes(&repo, &["--session", "watcher", "claim", "src/a.rs"]).success();
    let name = format!("lanes-watch-{}", std::process::id());
    let command = format!(
        "cd {} && HOME={} XDG_RUNTIME_DIR={} GIT_CONFIG_GLOBAL=/dev/null {} watch",
        repo.display(),
        env.root().join("home").display(),
        env.root().join("run").display(),
        env!("CARGO_BIN_EXE_lanes")
    );
    assert!(
        tmux(&["new-session", "-d", "-s", &name, "-x", "120", "-y", "40", &command]).expect("tmux").status.success()
    );
    let shown = crate::common::eventually(std::time::Duration::from_secs(10), || {
        let screen = tmux(&["capture-pane", "-p", "-t", &name])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        screen.contains("claims (1)") && screen.contains("watcher") && screen.contains("src/a.rs")
    });
    let _ = tmux(&["send-keys", "-t", &name, "q"]);
    let quit = crate::common::eventually(std::time::Duration::from_secs(5), || {
        !tmux(&["has-session", "-t", &name]).is_ok_and(|o| o.status.success())
    });
    let _ = tmux(&["kill-server"]);
    assert!(shown, "lanes watch did not show the claim");
    assert!(quit, "lanes watch did not quit on q");
}

#[test]
fn messages_survive_a_restart_and_are_delivered_once() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.lanes(&repo, &["--session", "bob", "claim", "docs"]).success();
    env.lanes(&repo, &["--session", "alice", "send", "bob", "the schema changed"]).success();
    let too_big = "x".repeat(9000);
    let refused = env.lanes(&repo, &["--session", "alice", "--json", "send", "bob", &too_big]);
    assert_eq!(refused.code, 2);
    assert!(refused.json()["error"]["message"].as_str().expect("message").contains("too long"));
    env.lanes(&repo, &["sidecar", "stop"]).success();
    let inbox = env.lanes(&repo, &["--session", "bob", "--json", "inbox"]).success().json();
    assert_eq!(inbox["messages"][0]["text"], "the schema changed");
    assert_eq!(inbox["messages"][0]["from"], "alice");
    let again = env.lanes(&repo, &["--session", "bob", "--json", "inbox"]).success().json();
    assert_eq!(again["messages"], serde_json::json!([]));
}

#[test]
fn a_holder_is_told_it_holds_and_claiming_again_renews_the_same_claim() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let first = env.lanes(&repo, &["--session", "a", "--json", "claim", "src/a.rs", "--ttl", "1h30m"]).success().json();
    assert!(first["claim"]["expires_in_secs"].as_u64().expect("secs") > 5000, "{first}");
    let again = env.lanes(&repo, &["--session", "a", "--json", "claim", "src/a.rs"]).success().json();
    assert_eq!(again["claim"]["id"], first["claim"]["id"], "a second claim on what a already holds");
    let status = env.lanes(&repo, &["--json", "status"]).success().json();
    assert_eq!(status["claims"].as_array().expect("claims").len(), 1);

    let mine = env.lanes(&repo, &["--session", "a", "check", "src/a.rs"]).success();
    assert!(mine.stdout.starts_with("you hold it: claim"), "{}", mine.stdout);
    let json = env.lanes(&repo, &["--session", "a", "--json", "check", "src/a.rs"]).success().json();
    assert_eq!(json["yours"][0]["id"], first["claim"]["id"]);
    let free = env.lanes(&repo, &["--session", "a", "check", "src/b.rs"]).success();
    assert!(free.stdout.starts_with("free"), "{}", free.stdout);

    let bare = env.lanes(&repo, &["--session", "a", "--json", "claim", "docs", "--ttl", "45"]);
    assert_eq!(bare.code, 2);
    assert!(bare.json()["error"]["message"].as_str().expect("message").contains("45s"));
}

#[test]
fn empty_scopes_are_refused_and_root_globs_are_claimed() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    for args in [&["claim", ""][..], &["check", ""], &["task", "add", "t", "--scope", ""]] {
        let mut full = vec!["--session", "a", "--json"];
        full.extend_from_slice(args);
        let run = env.lanes(&repo, &full);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stdout);
        assert_eq!(run.json()["error"]["code"], "invalid_scope", "{args:?}");
    }
    let status = env.lanes(&repo, &["--json", "status"]).success().json();
    assert!(
        status["claims"].as_array().expect("claims").is_empty() && status["tasks"].as_array().expect("t").is_empty()
    );
    env.lanes(&repo, &["--session", "a", "claim", "*.md"]).success();
    env.lanes(&repo, &["--session", "a", "claim", "**/*.toml"]).success();
    let other = env.lanes(&repo, &["--session", "b", "--json", "claim", "docs/guide.md"]);
    assert_eq!(other.code, 3, "`*.md` at the root did not cover docs/guide.md? {}", other.stdout);
}

#[test]
fn rewind_refuses_an_empty_or_ambiguous_checkpoint() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let mut ids: Vec<String> = Vec::new();
    // Seventeen checkpoints share a first hex digit somewhere (pigeonhole); usually far fewer are needed.
    let prefix = loop {
        std::fs::write(repo.join("src/a.rs"), format!("fn a() {{ {} }}\n", ids.len())).expect("write");
        let made = env.lanes(&repo, &["--session", "a", "--json", "checkpoint"]).success().json();
        let id = made["checkpoint"]["id"].as_str().expect("id").to_owned();
        if let Some(twin) = ids.iter().find(|other| other[..1] == id[..1]) {
            break twin[..1].to_owned();
        }
        ids.push(id);
    };
    let empty = env.lanes(&repo, &["--session", "a", "--json", "rewind", ""]);
    assert_eq!(empty.code, 2, "{}", empty.stdout);
    let ambiguous = env.lanes(&repo, &["--session", "a", "--json", "rewind", &prefix, "--dry-run"]);
    assert_eq!(ambiguous.code, 2, "{}", ambiguous.stdout);
    let message = ambiguous.json()["error"]["message"].as_str().expect("message").to_owned();
    assert!(message.contains("matches") && message.matches(&format!(" {prefix}")).count() >= 1, "{message}");
}

#[test]
fn a_closed_pipe_ends_a_command_quietly_and_watch_needs_a_terminal() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    for i in 0..30 {
        env.lanes(&repo, &["--session", "a", "claim", &format!("src/f{i}.rs")]).success();
    }
    for _ in 0..10 {
        let mut events = env
            .lanes_command(&repo, &["events"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("events");
        drop(events.stdout.take());
        let run = crate::common::run_of(events.wait_with_output().expect("wait"));
        assert!(run.code == 0 && !run.stderr.contains("panicked"), "exit {}: {}", run.code, run.stderr);
    }
    for args in [&["watch"][..], &["--json", "watch"]] {
        let run = env.lanes(&repo, args);
        assert_eq!(run.code, 2, "{args:?}: {} {}", run.stdout, run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

#[test]
fn init_leaves_the_lower_config_layers_in_effect() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    std::fs::write(repo.join(".lanes.toml"), "default_ttl = \"2h\"\n").expect("write");
    env.lanes(&repo, &["init"]).success();
    let claim = env.lanes(&repo, &["--session", "a", "--json", "claim", "src/a.rs"]).success().json();
    let secs = claim["claim"]["expires_in_secs"].as_u64().expect("secs");
    assert!(secs > 3600, ".lanes.toml's default_ttl = 2h was overridden by the local file: {secs}s");
}

#[test]
fn typed_secrets_are_masked_everywhere_and_state_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let repo = env.repo("r");
    let key = "AKIAIOSFODNN7EXAMPLE";
    env.lanes(&repo, &["init"]).success();
    env.lanes(&repo, &["--session", "a", "task", "add", &format!("rotate x{key}y now")]).success();
    std::fs::write(repo.join("src/a.rs"), "changed\n").expect("write");
    env.lanes(&repo, &["--session", "a", "checkpoint", "-m", &format!("before rotating {key}")]).success();
    let status = env.lanes(&repo, &["--json", "status"]).success().stdout;
    let events = env.lanes(&repo, &["--json", "events"]).success().stdout;
    let commits = env.git(&repo, &["log", "--format=%B", "refs/lanes/checkpoints/a"]);
    for (what, text) in [("status", &status), ("events", &events), ("checkpoint commit", &commits)] {
        assert!(!text.contains(key), "{what} shows the key: {text}");
    }
    assert!(status.contains("[REDACTED]"), "{status}");
    env.lanes(&repo, &["sidecar", "stop"]).success();
    let state = repo.join(".git/lanes");
    assert_eq!(std::fs::metadata(&state).expect("dir").permissions().mode() & 0o777, 0o700);
    for name in ["state.db", "sidecar.log", "config.toml"] {
        let mode = std::fs::metadata(state.join(name)).expect(name).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
    }
    let db = std::fs::read(state.join("state.db")).expect("db");
    assert!(!db.windows(key.len()).any(|w| w == key.as_bytes()), "the key is in state.db");
}

#[test]
fn usage_errors_follow_json_and_completions_man_and_claims_are_there() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let bad = env.lanes(&repo, &["--json", "claim", "src/a.rs", "--ttl"]);
    assert_eq!(bad.code, 2);
    assert_eq!(bad.json()["error"]["code"], "invalid_argument", "{}", bad.stdout);
    for shell in ["bash", "zsh", "fish"] {
        let script = env.lanes(&repo, &["completions", shell]).success().stdout;
        assert!(script.contains("claim") && script.contains("release"), "{shell}: {script}");
    }
    assert!(env.lanes(&repo, &["man"]).success().stdout.contains(".TH lanes"));
    env.lanes(&repo, &["--session", "a", "claim", "src/a.rs"]).success();
    env.lanes(&repo, &["--session", "a/sub", "claim", "docs"]).success();
    env.lanes(&repo, &["--session", "b", "claim", "src/b.rs"]).success();
    let mine = env.lanes(&repo, &["--session", "a", "--json", "claims"]).success().json();
    let scopes: Vec<String> =
        mine["claims"].as_array().expect("claims").iter().map(|c| c["scopes"][0].to_string()).collect();
    assert_eq!(scopes, ["\"src/a.rs\"", "\"docs\""], "{mine}");
    let bare = env.lanes(&repo, &["--session", "b", "claim"]).success().stdout;
    assert!(bare.contains("src/b.rs") && !bare.contains("src/a.rs"), "{bare}");
    let hook = std::path::PathBuf::from(env!("CARGO_BIN_EXE_lanes")).with_file_name("lanes-hook");
    let help = std::process::Command::new(hook).arg("--help").output().expect("lanes-hook --help");
    assert!(String::from_utf8_lossy(&help.stdout).contains("hook client of lanes"));
}

#[test]
fn event_times_are_iso_8601() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.lanes(&repo, &["--session", "a", "claim", "src/a.rs"]).success();
    let events = env.lanes(&repo, &["--json", "events"]).success().json();
    let grant = events["events"].as_array().expect("events").iter().find(|e| e["kind"] == "grant").expect("grant");
    for time in [&grant["at"], &grant["data"]["expires_at"]] {
        assert!(time.as_str().is_some_and(|t| t.contains('T') && t.ends_with('Z')), "{grant}");
    }
}
