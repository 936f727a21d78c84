//! The other agent CLIs in one claim space with a real Claude Code session (DESIGN.md §12): the real Codex CLI
//! (against the project's fake Responses API), the real Gemini CLI (its own `--fake-responses`), the real
//! Copilot CLI (offline, against the fake Messages API the Claude tests use) and the real opencode (against a
//! fake Chat Completions API), each wired by `lanes setup`, in the same throwaway world as the Claude tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{World, start_fake, tool_results};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(240);
/// The pinned versions; the test set-up installs exactly these.
const CODEX_VERSION: &str = "0.169.0";
const GEMINI_VERSION: &str = "0.61.0";
const COPILOT_VERSION: &str = "1.0.102";
const OPENCODE_VERSION: &str = "1.18.33";

/// A client's binary: `$variable`, or the test set-up's cache; `None` (skip) when missing and not required.
fn client(variable: &str, cached: &str) -> Option<PathBuf> {
    let path = std::env::var_os(variable).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/lanes").join(cached)
    });
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("LANES_E2E_REQUIRED").is_none(),
        "{} not found ({variable}); tests/run-all.sh installs it",
        path.display()
    );
    eprintln!("skipped: {} not found", path.display());
    None
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The claims of the repository, as (session, scopes, pending).
fn claims(world: &World) -> Vec<(String, Vec<String>)> {
    let status: Value =
        serde_json::from_slice(&world.lanes(&world.repo, &["--json", "status"]).stdout).expect("status");
    status["claims"]
        .as_array()
        .expect("claims")
        .iter()
        .map(|c| {
            let scopes = c["scopes"].as_array().expect("scopes").iter().map(|s| s.as_str().unwrap_or("").to_owned());
            (c["session"].as_str().unwrap_or("").to_owned(), scopes.collect())
        })
        .collect()
}

/// The session that holds `file`, when it is a session of `client_name` (as the session records it).
fn holder_of(world: &World, file: &str, client_name: &str) -> Option<String> {
    let holder = claims(world).into_iter().find(|(_, scopes)| scopes.iter().any(|s| s == file))?.0;
    let listed: Value =
        serde_json::from_slice(&world.lanes(&world.repo, &["--json", "sessions", "--all"]).stdout).ok()?;
    let session = listed["sessions"].as_array()?.iter().find(|s| s["id"] == holder.as_str())?;
    (session["client"] == client_name).then_some(holder)
}

/// Runs `codex exec` once in the repository against a fake Responses server that answers with `items`.
fn run_codex(
    world: &World,
    tree: &Path,
    codex: &Path,
    home: &Path,
    name: &str,
    items: &[Value],
    extra_config: &str,
) -> (Output, Vec<Value>) {
    let dir = world.root.join(format!("codex-{name}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let log = dir.join("requests.jsonl");
    let (mut server, port) =
        start_fake("fake_responses.py", &Value::from(items.to_vec()), &dir.join("items.json"), &log);
    std::fs::write(
        home.join("config.toml"),
        format!(
            "model = \"gpt-5.1-codex\"\nmodel_provider = \"fake\"\n[model_providers.fake]\nname = \"fake\"\n\
             base_url = \"http://127.0.0.1:{port}/v1\"\nwire_api = \"responses\"\n{extra_config}"
        ),
    )
    .expect("codex config");
    let mut command = Command::new(codex);
    world.env(&mut command).current_dir(tree).env("CODEX_HOME", home).env("OPENAI_API_KEY", "dummy");
    let output = command
        .args(["exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox"])
        .args(["--dangerously-bypass-hook-trust", &format!("codex task {name}")])
        .output()
        .expect("codex");
    let _ = server.kill();
    let _ = server.wait();
    let requests = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    (output, requests)
}

/// A Codex shell call (`exec_command`), as these models send patches and commands.
fn exec_command(command: &str) -> Value {
    json!({"type": "function_call", "name": "exec_command", "call_id": "call_1",
        "arguments": json!({"cmd": command}).to_string()})
}

/// What the model was told about its tool calls, in every request after the first.
fn codex_tool_outputs(requests: &[Value]) -> Vec<String> {
    requests
        .iter()
        .flat_map(|r| r["body"]["input"].as_array().cloned().unwrap_or_default())
        .filter(|x| x["type"] == "function_call_output")
        .map(|x| x["output"].to_string())
        .collect()
}

/// A file a Claude Code session holds is refused to Codex (a two-file patch, refused whole) and to Gemini
/// (`write_file`), each told the reason naming the Claude session; free files are written and claimed for
/// their sessions, which record their client; their shell commands that change the held file are reported to
/// its holder; and the Claude session is then refused the files they wrote, naming each session.
#[test]
fn codex_and_gemini_share_one_claim_space_with_a_claude_session() {
    let Some(codex) = client("LANES_CODEX", &format!("codex-{CODEX_VERSION}/node_modules/.bin/codex")) else {
        return;
    };
    let Some(gemini) = client("LANES_GEMINI", &format!("gemini-cli-{GEMINI_VERSION}/node_modules/.bin/gemini")) else {
        return;
    };
    let Some(mut world) = World::new() else { return };
    let repo = world.repo.clone();
    let path = |file: &str| repo.join(file).to_string_lossy().into_owned();
    world.serve(&json!({"conversations": [
        {"match": "task hold", "steps": [
            {"tools": [{"name": "Edit", "input": {"file_path": path("src/a.rs"), "old_string": "fn a() {}", "new_string": "fn a() { /* claude */ }"}}]},
            {"wait_for_file": world.gate("others-done").to_string_lossy(), "tools": [
                {"name": "Write", "input": {"file_path": path("src/codex.rs"), "content": "claude was here\n"}},
                {"name": "Write", "input": {"file_path": path("src/gem.rs"), "content": "claude was here\n"}}]},
            {"text": "DONE"}
        ]}
    ]}));
    let claude = world.start_claude(&repo, "hold", "task hold: edit a.rs and keep it");
    let claude_session = world.request_at("task hold", 1)["session"].as_str().expect("session").to_owned();
    assert!(claims(&world).iter().any(|(s, scopes)| *s == claude_session && scopes == &["src/a.rs"]));

    // Codex works in a worktree of its own, wired by `lanes setup codex --user` (its hooks.json in CODEX_HOME).
    let wt_codex = world.worktree("wt-codex");
    let codex_home = world.root.join("codex-home");
    std::fs::create_dir_all(&codex_home).expect("mkdir");
    let mut setup = world.lanes_command(&wt_codex);
    setup.env("CODEX_HOME", &codex_home);
    let wired = setup.args(["setup", "codex", "--user"]).output().expect("lanes setup codex");
    assert!(wired.status.success(), "{}", text(&wired));

    let patch = "apply_patch <<'EOF'\n*** Begin Patch\n*** Update File: src/a.rs\n@@\n-fn a() { /* claude */ }\n+fn a() { /* codex */ }\n*** Add File: src/other.rs\n+fn other() {}\n*** End Patch\nEOF\n";
    let (_, requests) = run_codex(&world, &wt_codex, &codex, &codex_home, "patch", &[exec_command(patch)], "");
    let told = codex_tool_outputs(&requests);
    assert!(
        told.iter()
            .any(|o| o.contains(&format!("held by claude session {claude_session}")) && o.contains("whole patch")),
        "Codex was not told the patch was refused: {told:?}"
    );
    assert_eq!(std::fs::read_to_string(wt_codex.join("src/a.rs")).expect("a.rs"), "fn a() {}\n");
    assert!(!wt_codex.join("src/other.rs").exists(), "part of a refused patch was applied");

    let add = "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: src/codex.rs\n+fn codex() {}\n*** End Patch\nEOF\n";
    let (output, _) = run_codex(&world, &wt_codex, &codex, &codex_home, "free", &[exec_command(add)], "");
    let written = std::fs::read_to_string(wt_codex.join("src/codex.rs")).ok();
    assert_eq!(written.as_deref(), Some("fn codex() {}\n"), "{}", text(&output));
    let codex_session = holder_of(&world, "src/codex.rs", "codex")
        .unwrap_or_else(|| panic!("the file Codex wrote is not claimed for a codex session: {:?}", claims(&world)));

    // A shell command that changes the file the Claude session holds: the shell-edit scan tells its holder.
    let (_, _) =
        run_codex(&world, &wt_codex, &codex, &codex_home, "shell", &[exec_command("echo '// codex' >> src/a.rs")], "");
    assert_holder_told(&world, &claude_session, &wt_codex);

    // Gemini, in a worktree of its own, wired by `lanes setup gemini` (that worktree's .gemini/settings.json).
    let wt_gemini = world.worktree("wt-gemini");
    let gem_path = |file: &str| wt_gemini.join(file).to_string_lossy().into_owned();
    let wired = world.lanes(&wt_gemini, &["setup", "gemini"]);
    assert!(wired.status.success(), "{}", text(&wired));
    let call = |name: &str, args: Value| {
        json!({"method": "generateContentStream", "response": [{"candidates": [{"content": {"role": "model",
            "parts": [{"functionCall": {"name": name, "args": args}}]}, "finishReason": "STOP"}]}]})
    };
    let done = json!({"method": "generateContentStream", "response": [{"candidates": [{"content": {"role": "model",
        "parts": [{"text": "DONE"}]}, "finishReason": "STOP"}]}]});
    let fake = [
        call("write_file", json!({"file_path": gem_path("src/a.rs"), "content": "fn a() { /* gemini */ }\n"})),
        call("write_file", json!({"file_path": gem_path("src/gem.rs"), "content": "fn gem() {}\n"})),
        call("run_shell_command", json!({"command": "echo '// gemini' >> src/a.rs"})),
        done,
    ];
    let fake_file = world.root.join("gemini-fake.jsonl");
    std::fs::write(&fake_file, fake.iter().map(Value::to_string).collect::<Vec<_>>().join("\n") + "\n").expect("fake");
    let mut command = Command::new(&gemini);
    world
        .env(&mut command)
        .current_dir(&wt_gemini)
        .env("GEMINI_API_KEY", "dummy")
        .env("GEMINI_CLI_TRUST_WORKSPACE", "true");
    let output = command
        .args([
            "-p",
            "gemini task: edit a.rs",
            "-m",
            "gemini-3.1-pro-preview",
            "--yolo",
            "--output-format",
            "stream-json",
        ])
        .arg("--fake-responses")
        .arg(&fake_file)
        .output()
        .expect("gemini");
    let stream = text(&output);
    assert!(
        stream.lines().any(|l| l.contains("\"tool_result\"")
            && l.contains("\"error\"")
            && l.contains(&format!("held by claude session {claude_session}"))),
        "Gemini was not told the file is held: {stream}"
    );
    // The refused write left the file alone; the shell command after it appended a line.
    assert_eq!(std::fs::read_to_string(wt_gemini.join("src/a.rs")).expect("a.rs"), "fn a() {}\n// gemini\n");
    let written = std::fs::read_to_string(wt_gemini.join("src/gem.rs")).ok();
    assert_eq!(written.as_deref(), Some("fn gem() {}\n"), "{stream}");
    let gemini_session = holder_of(&world, "src/gem.rs", "gemini")
        .unwrap_or_else(|| panic!("the file Gemini wrote is not claimed for a gemini session: {:?}", claims(&world)));
    assert_holder_told(&world, &claude_session, &wt_gemini);

    // The Claude session now wants the files Codex and Gemini wrote in their worktrees (their work has not
    // landed): refused, naming each one's session.
    world.open_gate("others-done");
    world.wait_claude(claude, LIMIT);
    let results = tool_results(&world.request_at("task hold", 2));
    for (who, session, file) in [("codex", &codex_session, "src/codex.rs"), ("gemini", &gemini_session, "src/gem.rs")] {
        assert!(
            results.iter().any(|r| r.contains(&format!("{who} session {session}"))),
            "the Claude session was not refused {who}'s file: {results:?}"
        );
        assert!(!repo.join(file).exists(), "the Claude session wrote the file {who}'s work holds");
    }
}

/// A shell command run in `tree` changed `src/a.rs`, which `holder` holds: the holder was told (the
/// shell-edit scan), naming that worktree; the change is then undone.
fn assert_holder_told(world: &World, holder: &str, tree: &Path) {
    let inbox: Value =
        serde_json::from_slice(&world.lanes(&world.repo, &["--session", holder, "--json", "inbox"]).stdout)
            .expect("inbox");
    let told = inbox["messages"].as_array().into_iter().flatten().any(|m| {
        let text = m["text"].as_str().unwrap_or_default();
        text.contains("changed src/a.rs") && text.contains(&format!("in {}", tree.display()))
    });
    assert!(told, "the holder was not told of the shell change in {}: {inbox}", tree.display());
    world.git(tree, &["checkout", "--", "src/a.rs"]);
}

/// `lanes mcp` driven by the real `claude` as its MCP client: the model's `mcp__lanes__claim` of a file
/// another session holds is a tool error naming the holder, and a free file is claimed for the MCP session.
#[test]
fn the_mcp_server_claims_and_refuses_for_a_real_claude_session() {
    let Some(mut world) = World::new() else { return };
    let repo = world.repo.clone();
    let held = world.lanes(&repo, &["--session", "holder", "claim", "src/a.rs"]);
    assert!(held.status.success(), "{}", text(&held));
    world.serve(&json!({"conversations": [
        {"match": "task mcp", "steps": [
            {"tools": [{"name": "mcp__lanes__claim", "input": {"scopes": ["src/a.rs"]}}]},
            {"tools": [{"name": "mcp__lanes__claim", "input": {"scopes": ["src/b.rs"], "note": "mcp was here"}}]},
            {"text": "DONE"}
        ]}
    ]}));
    let lanes = world.lanes_command(&repo).get_program().to_string_lossy().into_owned();
    let config =
        json!({"mcpServers": {"lanes": {"command": lanes, "args": ["mcp"], "env": {"LANES_SESSION": "mcp-claude"}}}});
    let config_file = world.root.join("mcp.json");
    std::fs::write(&config_file, config.to_string()).expect("mcp config");
    let config_arg = config_file.to_string_lossy().into_owned();
    let extra = ["--mcp-config", &config_arg, "--allowedTools", "mcp__lanes__claim"];
    let claude = world.start_claude_with(&repo, "mcp", "task mcp: claim through MCP", &extra);
    world.wait_claude(claude, LIMIT);
    let refused = tool_results(&world.request_at("task mcp", 1));
    assert!(
        refused.iter().any(|r| r.contains("held by holder") && r.contains("conflict")),
        "the MCP claim of a held file was not refused naming the holder: {refused:?}"
    );
    let granted = tool_results(&world.request_at("task mcp", 2));
    assert!(granted.iter().any(|r| r.contains("mcp was here") && r.contains("mcp-claude")), "no grant: {granted:?}");
    assert!(
        claims(&world).iter().any(|(s, scopes)| s == "mcp-claude" && scopes == &["src/b.rs"]),
        "the MCP session holds no claim on src/b.rs: {:?}",
        claims(&world)
    );
}

/// Runs `opencode run` once in `tree` against a fake Chat Completions server that answers with `calls`, the
/// model named `model` (opencode offers `write` and `edit` to most models, `apply_patch` to GPT ones);
/// returns its JSON event stream.
fn run_opencode(world: &World, tree: &Path, opencode: &Path, model: &str, calls: &[Value]) -> String {
    let dir = world.root.join(format!("opencode-{model}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (calls_file, log) = (dir.join("calls.json"), dir.join("requests.jsonl"));
    let (mut server, port) = start_fake("fake_chat.py", &Value::from(calls.to_vec()), &calls_file, &log);
    let config = json!({"model": format!("fake/{model}"), "provider": {"fake": {"npm": "@ai-sdk/openai-compatible",
        "name": "fake", "options": {"baseURL": format!("http://127.0.0.1:{port}/v1"), "apiKey": "dummy"},
        "models": {model: {"name": model, "tool_call": true}}}},
        "permission": {"edit": "allow", "bash": "allow"}});
    std::fs::write(tree.join("opencode.json"), config.to_string()).expect("opencode config");
    // opencode fetches its provider package from npm on first use: keep it where the next run finds it.
    let cache = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
        .join(format!(".cache/lanes/opencode-{OPENCODE_VERSION}/cache"));
    let mut command = Command::new(opencode);
    world.env(&mut command).current_dir(tree).env("XDG_CACHE_HOME", cache);
    let output = command.args(["run", "--format", "json", "opencode task: write"]).output().expect("opencode");
    let _ = server.kill();
    let _ = server.wait();
    text(&output)
}

/// A file a Claude Code session holds is refused to the real Copilot CLI (`edit`; the run says "Denied by
/// preToolUse hook" with the reason) and to the real opencode (`write`, and a two-file `apply_patch` refused
/// whole; the tool's error is the reason), each naming the Claude session; their shell commands that change it
/// are reported to it; the free files they write are claimed for their sessions, which record their client;
/// and the Claude session is then refused those files, naming each session.
#[test]
fn copilot_and_opencode_share_one_claim_space_with_a_claude_session() {
    let Some(copilot) = client("LANES_COPILOT", &format!("copilot-{COPILOT_VERSION}/node_modules/.bin/copilot")) else {
        return;
    };
    let Some(opencode) = client("LANES_OPENCODE", &format!("opencode-{OPENCODE_VERSION}/node_modules/.bin/opencode"))
    else {
        return;
    };
    let Some(mut world) = World::new() else { return };
    let repo = world.repo.clone();
    let path = |file: &str| repo.join(file).to_string_lossy().into_owned();
    let wt_copilot = world.worktree("wt-copilot");
    let cop_path = |file: &str| wt_copilot.join(file).to_string_lossy().into_owned();
    world.serve(&json!({"conversations": [
        {"match": "task hold", "steps": [
            {"tools": [{"name": "Edit", "input": {"file_path": path("src/a.rs"), "old_string": "fn a() {}", "new_string": "fn a() { /* claude */ }"}}]},
            {"wait_for_file": world.gate("others-done").to_string_lossy(), "tools": [
                {"name": "Write", "input": {"file_path": path("src/copilot.rs"), "content": "claude was here\n"}},
                {"name": "Write", "input": {"file_path": path("src/opencode.rs"), "content": "claude was here\n"}}]},
            {"text": "DONE"}
        ]},
        {"match": "copilot task", "steps": [
            {"tools": [{"name": "edit", "input": {"path": cop_path("src/a.rs"), "old_str": "fn a() {}", "new_str": "fn a() { /* copilot */ }"}}]},
            {"tools": [{"name": "create", "input": {"path": cop_path("src/copilot.rs"), "file_text": "fn copilot() {}\n"}}]},
            {"tools": [{"name": "bash", "input": {"command": "echo '// copilot' >> src/a.rs", "description": "append a line"}}]},
            {"text": "DONE"}
        ]}
    ]}));
    let claude = world.start_claude(&repo, "hold", "task hold: edit a.rs and keep it");
    let claude_session = world.request_at("task hold", 1)["session"].as_str().expect("session").to_owned();
    assert!(claims(&world).iter().any(|(s, scopes)| *s == claude_session && scopes == &["src/a.rs"]));
    let held_by_claude = format!("held by claude session {claude_session}");

    // Copilot, wired by `lanes setup copilot --user` (~/.copilot/hooks/lanes.json: its `-p` mode runs user
    // hooks), offline against the same fake Messages API.
    let wired = world.lanes(&wt_copilot, &["setup", "copilot", "--user"]);
    assert!(wired.status.success(), "{}", text(&wired));
    let mut command = Command::new(&copilot);
    world
        .env(&mut command)
        .current_dir(&wt_copilot)
        .env("COPILOT_OFFLINE", "true")
        .env("COPILOT_PROVIDER_TYPE", "anthropic")
        .env("COPILOT_PROVIDER_BASE_URL", format!("http://127.0.0.1:{}", world.port()))
        .env("COPILOT_PROVIDER_API_KEY", "dummy")
        .env("COPILOT_MODEL", "claude-sonnet-4.5");
    let output = command.args(["-p", "copilot task: edit a.rs", "--allow-all-tools"]).output().expect("copilot");
    let said = text(&output);
    let flat = said.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("Denied by preToolUse hook") && flat.contains(&held_by_claude),
        "Copilot was not told the file is held: {said}"
    );
    // The refused write left the file alone; the shell command after it appended a line.
    assert_eq!(std::fs::read_to_string(wt_copilot.join("src/a.rs")).expect("a.rs"), "fn a() {}\n// copilot\n");
    let written = std::fs::read_to_string(wt_copilot.join("src/copilot.rs")).ok();
    assert_eq!(written.as_deref(), Some("fn copilot() {}\n"), "{said}");
    let copilot_session = holder_of(&world, "src/copilot.rs", "copilot")
        .unwrap_or_else(|| panic!("the file Copilot wrote is not claimed for a copilot session: {:?}", claims(&world)));
    assert_holder_told(&world, &claude_session, &wt_copilot);

    // opencode, in a worktree of its own, wired by `lanes setup opencode` (the worktree's plugin file).
    let wt_opencode = world.worktree("wt-opencode");
    let wired = world.lanes(&wt_opencode, &["setup", "opencode"]);
    assert!(wired.status.success(), "{}", text(&wired));
    let oc_path = |file: &str| wt_opencode.join(file).to_string_lossy().into_owned();
    let calls = [
        json!({"name": "write", "arguments": {"filePath": oc_path("src/a.rs"), "content": "fn a() { /* opencode */ }\n"}}),
        json!({"name": "write", "arguments": {"filePath": oc_path("src/opencode.rs"), "content": "fn opencode() {}\n"}}),
    ];
    let refused_naming = |stream: &str, needle: &str| {
        stream.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).any(|p| {
            p["part"]["state"]["status"] == "error"
                && p["part"]["state"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains(&held_by_claude) && e.contains(needle))
        })
    };
    let stream = run_opencode(&world, &wt_opencode, &opencode, "fake-model", &calls);
    assert!(refused_naming(&stream, "src/a.rs"), "opencode was not told the file is held: {stream}");
    assert_eq!(std::fs::read_to_string(wt_opencode.join("src/a.rs")).expect("a.rs"), "fn a() {}\n");
    let written = std::fs::read_to_string(wt_opencode.join("src/opencode.rs")).ok();
    assert_eq!(written.as_deref(), Some("fn opencode() {}\n"), "{stream}");
    let opencode_session = holder_of(&world, "src/opencode.rs", "opencode").unwrap_or_else(|| {
        panic!("the file opencode wrote is not claimed for an opencode session: {:?}", claims(&world))
    });
    // A GPT model gets `apply_patch`: a patch touching the held file is refused whole; then a shell command
    // that changes the held file is reported to its holder.
    let patch = "*** Begin Patch\n*** Update File: src/a.rs\n@@\n-fn a() {}\n+fn a() { /* opencode */ }\n\
                 *** Add File: src/other.rs\n+fn other() {}\n*** End Patch\n";
    let calls = [
        json!({"name": "apply_patch", "arguments": {"patchText": patch}}),
        json!({"name": "bash", "arguments": {"command": "echo '// opencode' >> src/a.rs", "description": "append"}}),
    ];
    let stream = run_opencode(&world, &wt_opencode, &opencode, "gpt-5.1", &calls);
    assert!(refused_naming(&stream, "whole patch"), "opencode's patch was not refused whole: {stream}");
    assert!(!wt_opencode.join("src/other.rs").exists(), "part of a refused patch was applied");
    assert_holder_told(&world, &claude_session, &wt_opencode);
    // Its session ended with the process: the file stays claimed as its pending work.
    let sessions: Value =
        serde_json::from_slice(&world.lanes(&repo, &["--json", "sessions", "--all"]).stdout).expect("sessions");
    let record =
        sessions["sessions"].as_array().and_then(|all| all.iter().find(|s| s["id"] == opencode_session.as_str()));
    assert_eq!(record.map(|r| r["state"].clone()), Some(json!("ended")), "{sessions}");

    // The Claude session now wants the files Copilot and opencode left uncommitted in their worktrees: refused,
    // naming each one's session.
    world.open_gate("others-done");
    world.wait_claude(claude, LIMIT);
    let results = tool_results(&world.request_at("task hold", 2));
    for (who, session, file) in
        [("copilot", &copilot_session, "src/copilot.rs"), ("opencode", &opencode_session, "src/opencode.rs")]
    {
        assert!(
            results.iter().any(|r| r.contains(&format!("{who} session {session}"))),
            "the Claude session was not refused {who}'s file: {results:?}"
        );
        assert!(!repo.join(file).exists(), "the Claude session wrote the file {who}'s work holds");
    }
}

/// `lanes mcp` driven by the real Codex as its MCP client (`[mcp_servers.lanes]` in its config; Codex starts
/// MCP servers with a trimmed environment, so `env_vars` passes the runtime dir that finds the sidecar): a
/// claim of a held file is refused naming the holder, a free one is granted to the MCP session.
#[test]
fn the_mcp_server_claims_and_refuses_for_a_real_codex_session() {
    let Some(codex) = client("LANES_CODEX", &format!("codex-{CODEX_VERSION}/node_modules/.bin/codex")) else {
        return;
    };
    let Some(world) = World::new() else { return };
    let repo = world.repo.clone();
    let held = world.lanes(&repo, &["--session", "holder", "claim", "src/a.rs"]);
    assert!(held.status.success(), "{}", text(&held));
    let home = world.root.join("codex-home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let lanes = world.lanes_command(&repo).get_program().to_string_lossy().into_owned();
    let mcp = format!(
        "[mcp_servers.lanes]\ncommand = {lanes:?}\nargs = [\"mcp\"]\nenv = {{ LANES_SESSION = \"mcp-codex\" }}\n\
         env_vars = [\"XDG_RUNTIME_DIR\"]\n"
    );
    let claim = |scope: &str| {
        json!({"type": "function_call", "namespace": "mcp__lanes", "name": "claim", "call_id": "call_1",
            "arguments": json!({"scopes": [scope]}).to_string()})
    };
    let (_, requests) = run_codex(&world, &repo, &codex, &home, "mcp-held", &[claim("src/a.rs")], &mcp);
    let told = codex_tool_outputs(&requests);
    assert!(
        told.iter().any(|o| o.contains("src/a.rs is held by holder")),
        "the MCP claim of a held file was not refused naming the holder: {told:?}"
    );
    let (output, requests) = run_codex(&world, &repo, &codex, &home, "mcp-free", &[claim("src/c.rs")], &mcp);
    assert!(
        claims(&world).iter().any(|(s, scopes)| s == "mcp-codex" && scopes == &["src/c.rs"]),
        "the MCP session holds no claim on src/c.rs: {:?}\n{:?}\n{}",
        claims(&world),
        codex_tool_outputs(&requests),
        text(&output)
    );
}
