//! The hook events (DESIGN.md §7, CLAUDE-CODE.md), in Claude Code's shape: other clients' inputs arrive
//! translated by `clients.rs`. Each event is at most one or two JSON-RPC calls per edited path to the
//! repository's sidecar, within a hard time budget; the sidecar is started in the background when it is not
//! running. Anything unexpected means: allow, say nothing; an edit lanes cannot judge is refused.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lanes_proto::client::CallError;
use lanes_proto::lifecycle::Launcher;
use lanes_proto::paths::SidecarPaths;
use lanes_proto::repo::RepoLocation;
use lanes_proto::{
    AcquireParams, ActivityParams, ActivityReply, ClaimReply, ConflictView, ErrorCode, MessageView, SessionParams,
    SessionStartReply, ShellScanParams, ShellScanReply, WorktreeCreateParams, WorktreeCreateReply,
    WorktreeFinishParams, method,
};
use serde_json::{Value, json};

use crate::clients::Client;

/// The hot-path bound: connect (or start) and answer within this, or allow.
const BUDGET: Duration = Duration::from_millis(250);
/// The edit hook's bound (DESIGN.md §3): a right answer on a claim is worth waiting for under load.
const EDIT_BUDGET: Duration = Duration::from_secs(1);
/// SessionEnd may take longer: Claude Code gives it 1.5 s, and releasing claims matters.
const SESSION_END_BUDGET: Duration = Duration::from_millis(1200);
/// Making a worktree runs `git worktree add`, which takes what it takes in a large repository.
const WORKTREE_BUDGET: Duration = Duration::from_secs(20);
/// What the hook keeps of each bound for what comes after the sidecar's silence (the note in
/// `unchecked.log`, the answer, the exit), so the whole process stays within the bound even on a busy machine
/// (`tests/bench/hook_vs_node.py` prints each hook's time with the sidecar hung beside its bound).
const EXIT_MARGIN: Duration = Duration::from_millis(60);

/// The tools whose `file_path` (or `notebook_path`) is an edit.
const EDIT_TOOLS: &[&str] = &["Edit", "Write", "MultiEdit", "NotebookEdit"];

/// Handles one event (Claude Code's name for it) of `client`; returns the answer in Claude Code's format,
/// or a worktree path for WorktreeCreate.
pub fn handle(client: Client, event: &str, input: &Value) -> Option<String> {
    let started = Instant::now();
    let hook = Hook::from_input(client, input)?;
    let output = match event {
        "SessionStart" => hook.session_start(input, started),
        "PreToolUse" => hook.pre_tool_use(input, started),
        "PostToolUse" | "PostToolBatch" => hook.post_tool(event, input, started),
        "UserPromptSubmit" => hook.prompt(input, started),
        "Stop" => hook.stop(started),
        "SubagentStop" => hook.subagent_stop(started),
        "SessionEnd" => hook.session_end(started),
        "WorktreeCreate" => return hook.worktree_create(input, started),
        _ => None,
    };
    output.map(|value| value.to_string())
}

/// What every event carries: who acts, and where.
struct Hook {
    client: Client,
    session: String,
    /// `<session>` or `<session>/<agent>` for a subagent.
    principal: String,
    cwd: PathBuf,
}

impl Hook {
    fn from_input(client: Client, input: &Value) -> Option<Hook> {
        let session = input.get("session_id")?.as_str()?.to_owned();
        let cwd = PathBuf::from(input.get("cwd")?.as_str()?);
        let principal = match input.get("agent_id").and_then(Value::as_str) {
            Some(agent) if !agent.is_empty() => format!("{session}/{agent}"),
            _ => session.clone(),
        };
        Some(Hook { client, session, principal, cwd })
    }

    fn session_start(&self, input: &Value, started: Instant) -> Option<Value> {
        let location = RepoLocation::discover(&self.cwd).ok()?;
        if let Some(env_file) = std::env::var_os("CLAUDE_ENV_FILE") {
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(env_file)
                .and_then(|mut f| writeln!(f, "export LANES_SESSION={}", shell_quote(&self.session)));
        }
        let params = SessionParams {
            session: self.session.clone(),
            worktree: Some(location.worktree.to_string_lossy().into_owned()),
            branch: current_branch(&location.git_dir),
            model: input.get("model").and_then(Value::as_str).map(str::to_owned),
            source: input.get("source").and_then(Value::as_str).map(str::to_owned),
            client: Some(self.client.name().to_owned()),
        };
        let reply: SessionStartReply = call(&location, started, BUDGET, method::SESSION_START, &params)?.ok()?;
        let mut context = start_context(&reply, &location, params.branch.as_deref());
        if let Some(warning) = &reply.warning {
            context = format!("{warning}\n\n{context}");
        }
        // A worktree made by `lanes team up` carries its role's instructions.
        if let Ok(role) = std::fs::read_to_string(location.git_dir.join("lanes-role.md")) {
            context.push_str("\n\n");
            context.push_str(role.trim());
        }
        Some(tell("SessionStart", context))
    }

    fn pre_tool_use(&self, input: &Value, started: Instant) -> Option<Value> {
        let tool = input.get("tool_name")?.as_str()?;
        let tool_input = input.get("tool_input")?;
        if tool == "Bash" {
            let command = tool_input.get("command")?.as_str()?;
            if let Some(patch) = crate::patch::in_shell_command(command) {
                return self.check_patch(patch, started);
            }
            return self.before_shell(command, started);
        }
        if tool == "apply_patch" {
            return self.check_patch(tool_input.get("patch").and_then(Value::as_str).unwrap_or_default(), started);
        }
        if EDIT_TOOLS.contains(&tool) && self.edited_path(tool, tool_input).is_none() {
            return Some(deny("lanes cannot check this edit, so it is refused: the tool call names no file".into()));
        }
        self.check_edit(&[self.edited_path(tool, tool_input)?], started)
    }

    /// A patch is checked path by path, and refused as a whole when any of its paths is; one lanes cannot
    /// read is refused with the reason.
    fn check_patch(&self, patch: &str, started: Instant) -> Option<Value> {
        let paths = match crate::patch::edited_paths(patch) {
            Ok(paths) => paths,
            Err(why) => {
                return Some(deny(format!(
                    "lanes cannot read this patch, so it is refused: {why}. Send the patch itself (`*** Begin \
                     Patch` … `*** End Patch`), or edit the files one by one."
                )));
            }
        };
        let paths: Vec<PathBuf> = paths
            .iter()
            .map(|path| if Path::new(path).is_absolute() { PathBuf::from(path) } else { self.cwd.join(path) })
            .collect();
        let answer = self.check_edit(&paths, started)?;
        let specific = &answer["hookSpecificOutput"];
        match specific["permissionDecisionReason"].as_str() {
            Some(reason) if paths.len() > 1 && specific["permissionDecision"] == "deny" => Some(deny(format!(
                "{reason}\nThe whole patch ({} files) was refused; nothing in it was applied.",
                paths.len()
            ))),
            _ => Some(answer),
        }
    }

    /// The claim check before an edit of `paths` (one file, or every file of a patch): one claim for all of
    /// them, granted whole or refused whole, so a refused patch leaves no claim on its other files.
    fn check_edit(&self, paths: &[PathBuf], started: Instant) -> Option<Value> {
        // Through symlinks to where the file really is: a link into another worktree is that worktree's file.
        let paths: Vec<PathBuf> = paths.iter().map(|p| real_path(p)).collect();
        let path = paths.first()?.clone();
        let location = RepoLocation::discover(existing_ancestor(&path)?).ok()?;
        let params = AcquireParams {
            session: self.principal.clone(),
            worktree: location.worktree.to_string_lossy().into_owned(),
            scopes: paths.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
            mode: None,
            ttl_secs: None,
            note: None,
            task: None,
            bound_worktree: RepoLocation::discover(&self.cwd).ok().map(|l| l.worktree.to_string_lossy().into_owned()),
        };
        let answer = match try_call::<_, ClaimReply>(&location, started, EDIT_BUDGET, method::CLAIM_ENSURE, &params) {
            Ok(answer) => answer,
            Err(why) => return Some(self.unchecked_edit(&location, &path, &why)),
        };
        match answer {
            Ok(reply) if reply.warning.is_some() => {
                let context = reply.warning.unwrap_or_default();
                Some(tell("PreToolUse", context))
            }
            Ok(reply) if !reply.notes.is_empty() => {
                let notes: Vec<String> = reply
                    .notes
                    .iter()
                    .map(|n| {
                        format!("- {} (claim {} on {}, lapsed): {}", n.session, n.claim_id, n.scopes.join(", "), n.note)
                    })
                    .collect();
                let context = format!(
                    "lanes: you now hold {}. Whoever worked here before you left notes:\n{}",
                    reply.claim.scopes.join(", "),
                    notes.join("\n")
                );
                Some(tell("PreToolUse", context))
            }
            Ok(_) => None,
            Err(CallError::Refused { code: ErrorCode::Conflict, data, .. }) => {
                let conflicts: Vec<ConflictView> =
                    serde_json::from_value(data.get("conflicts").cloned().unwrap_or_default()).unwrap_or_default();
                // The file in the way, for a patch of several.
                let held = paths
                    .iter()
                    .find(|p| {
                        let relative = p.strip_prefix(&location.worktree).unwrap_or(p).to_string_lossy().into_owned();
                        conflicts.iter().any(|c| relative.starts_with(c.scope.trim_end_matches(['*', '/'])))
                    })
                    .unwrap_or(&path);
                let reason = deny_reason(held, &location.worktree, &conflicts);
                Some(deny(reason))
            }
            // A sidecar with a hub that no hub answers: `[hub] offline` says whether the edit goes ahead.
            Err(CallError::Refused { code: ErrorCode::Unavailable, message, data })
                if data.get("offline").is_some() =>
            {
                if data.get("offline").and_then(|o| o.as_str()) == Some("deny") {
                    Some(deny(format!(
                        "lanes: {message}. This repository is set to refuse edits while no hub answers \
                         ([hub] offline = \"deny\"); try again when the hub is back."
                    )))
                } else {
                    let context = format!(
                        "lanes: {message}. The edit went ahead without a check against other machines' claims."
                    );
                    Some(tell("PreToolUse", context))
                }
            }
            Err(CallError::Refused { message, data, .. })
                if data.get("bound_worktree").is_some_and(|b| !b.is_null()) =>
            {
                Some(deny(format!("lanes: {message}")))
            }
            // An edit lanes cannot judge (a path it refuses, a session or agent id it cannot use) is refused
            // with the reason: letting it through would skip the check on a file someone may hold.
            Err(CallError::Refused { code: ErrorCode::InvalidScope | ErrorCode::InvalidArgument, message, .. }) => {
                Some(deny(format!("lanes cannot check this edit, so it is refused: {message}")))
            }
            Err(e) => Some(self.unchecked_edit(&location, &path, &e.to_string())),
        }
    }

    /// The branch guard before a shell command: a `git checkout` or `git switch` is announced (so the HEAD
    /// move that follows is not reported back as someone else's), and warned about when other live
    /// sessions work in the same worktree, since it switches their checkout too.
    fn before_shell(&self, command: &str, started: Instant) -> Option<Value> {
        self.shell_scan(true, started);
        let runs_git = |verbs: &[&str]| {
            command.split(['&', ';', '|', '\n']).any(|part| {
                let words: Vec<&str> = part.split_whitespace().collect();
                words.first() == Some(&"git") && words.iter().any(|w| verbs.contains(w))
            })
        };
        if runs_git(&["stash"]) {
            return self.before_stash(started);
        }
        if !runs_git(&["checkout", "switch"]) {
            return None;
        }
        let location = RepoLocation::discover(&self.cwd).ok()?;
        let params = ActivityParams {
            session: self.principal.clone(),
            worktree: Some(location.worktree.to_string_lossy().into_owned()),
            head: head_of(&location),
            moving_head: true,
            ..ActivityParams::default()
        };
        let reply: ActivityReply = call(&location, started, BUDGET, method::SESSION_ACTIVITY, &params)?.ok()?;
        if reply.neighbours.is_empty() {
            return None;
        }
        let context = format!(
            "lanes: {} also work(s) in {}: switching its branch changes their checkout under them. Prefer a \
             worktree of your own (`git worktree add ../<name> -b <branch>`), or agree on it first with `lanes send`.",
            reply.neighbours.join(", "),
            location.worktree.display()
        );
        Some(tell("PreToolUse", context))
    }

    fn post_tool(&self, event: &str, input: &Value, started: Instant) -> Option<Value> {
        let mut files = Vec::new();
        if let (Some(tool), Some(tool_input)) =
            (input.get("tool_name").and_then(Value::as_str), input.get("tool_input"))
        {
            files.extend(self.edited_path(tool, tool_input));
        }
        for call in input.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            if let (Some(tool), Some(tool_input)) =
                (call.get("tool_name").and_then(Value::as_str), call.get("tool_input"))
            {
                files.extend(self.edited_path(tool, tool_input));
            }
        }
        let shell = input.get("tool_name").and_then(Value::as_str) == Some("Bash");
        let found = if shell { self.after_shell(started) } else { Vec::new() };
        let files = files.iter().map(|f| f.to_string_lossy().into_owned()).collect();
        self.activity_with(event, files, false, true, None, found, started)
    }

    /// An edit that went ahead because lanes could not answer (`why`): recorded, and said to the model.
    fn unchecked_edit(&self, location: &RepoLocation, path: &Path, why: &str) -> Value {
        record_unchecked(location, &self.principal, path);
        tell(
            "PreToolUse",
            format!(
                "lanes: this edit of {} was NOT checked against other agents' claims ({why}); it went ahead \
                 unchecked. Run `lanes status` to see who works on what before you edit further.",
                path.display()
            ),
        )
    }

    /// `git stash` while other live sessions work in the repository: the stash is one list shared by every
    /// worktree, so a `git stash pop` may take someone else's changes. Said to the model before it runs.
    fn before_stash(&self, started: Instant) -> Option<Value> {
        let location = RepoLocation::discover(&self.cwd).ok()?;
        let status: lanes_proto::StatusReply = call(&location, started, BUDGET, method::STATUS, &json!({}))?.ok()?;
        let others: Vec<String> = status
            .sessions
            .iter()
            .filter(|s| s.state == "live" && s.id != self.session)
            .map(|s| format!("{} ({})", s.id, s.worktree.as_deref().unwrap_or("?")))
            .collect();
        if others.is_empty() {
            return None;
        }
        let context = format!(
            "lanes: careful with `git stash`: the stash is one list shared by every worktree of this repository, and \
             other sessions work here: {}. A `git stash pop` or `apply` may take their changes, and theirs yours. \
             Prefer a commit on your own branch; if you stash, use `git stash push -m <your session>` and pop only \
             that entry.",
            others.join(", ")
        );
        Some(tell("PreToolUse", context))
    }

    /// The shell-edit scan (DESIGN.md §5): what the command changed is claimed for this principal; what it
    /// changed in others' claims or pending work is said to the model at once, with how to undo it.
    fn after_shell(&self, started: Instant) -> Vec<String> {
        let Some(reply) = self.shell_scan(false, started) else { return Vec::new() };
        let mut notes = Vec::new();
        for taken in &reply.taken {
            let reason = deny_reason(Path::new(&taken.path), Path::new(""), &taken.holders);
            notes.push(format!(
                "lanes: your shell command changed {}, which you may not change: {} Undo your change now: \
                 `git checkout -- {}` if git tracks the file, or delete it if your command created it. Its holder \
                 has been told.",
                taken.path,
                reason.trim_start_matches("lanes: "),
                taken.path
            ));
        }
        if !reply.claimed.is_empty() {
            notes.push(format!(
                "lanes: your shell command changed {}; claimed for you, as an edit would be.",
                reply.claimed.join(", ")
            ));
        }
        notes
    }

    /// `worktree.scan` for this principal's worktree: `before` a shell command (the sidecar notes what is
    /// pending so far), or after it (what it changed).
    fn shell_scan(&self, before: bool, started: Instant) -> Option<ShellScanReply> {
        let location = RepoLocation::discover(&self.cwd).ok()?;
        let params = ShellScanParams {
            session: self.principal.clone(),
            worktree: location.worktree.to_string_lossy().into_owned(),
            before,
        };
        let budget = if before { BUDGET } else { EDIT_BUDGET };
        call::<_, ShellScanReply>(&location, started, budget, method::WORKTREE_SCAN, &params)?.ok()
    }

    /// Records the prompt (the sidecar masks secrets before storing it) and hands out unread messages.
    fn prompt(&self, input: &Value, started: Instant) -> Option<Value> {
        let prompt = input.get("prompt").and_then(Value::as_str).map(str::to_owned);
        self.activity_with("UserPromptSubmit", Vec::new(), false, true, prompt, Vec::new(), started)
    }

    fn stop(&self, started: Instant) -> Option<Value> {
        self.activity("Stop", Vec::new(), true, false, started)
    }

    fn activity(&self, event: &str, files: Vec<String>, turn: bool, deliver: bool, started: Instant) -> Option<Value> {
        self.activity_with(event, files, turn, deliver, None, Vec::new(), started)
    }

    /// Renews the principal's claims, records files, prompts and turns, and hands out unread messages as
    /// context, after `notes` the caller already has for the model.
    #[expect(clippy::too_many_arguments, reason = "each event sets a different few of them")]
    fn activity_with(
        &self,
        event: &str,
        files: Vec<String>,
        turn: bool,
        deliver: bool,
        prompt: Option<String>,
        mut notes: Vec<String>,
        started: Instant,
    ) -> Option<Value> {
        let location = RepoLocation::discover(&self.cwd).ok()?;
        let params = ActivityParams {
            session: self.principal.clone(),
            worktree: Some(location.worktree.to_string_lossy().into_owned()),
            files,
            turn,
            deliver,
            prompt,
            // Stop cannot show context: leave the HEAD comparison to the next event that can.
            head: if event == "Stop" { None } else { head_of(&location) },
            moving_head: false,
        };
        let reply: ActivityReply = match call(&location, started, BUDGET, method::SESSION_ACTIVITY, &params) {
            Some(Ok(reply)) => reply,
            _ if notes.is_empty() => return None,
            _ => ActivityReply::default(),
        };
        notes.extend(reply.head_moved);
        if event == "PostToolBatch" {
            notes.extend(stray_changes(&location, reply.bound_worktree.as_deref()));
        }
        if !reply.inbox.is_empty() {
            notes.push(inbox_context(&reply.inbox));
        }
        if notes.is_empty() || event == "Stop" {
            return None;
        }
        Some(tell(event, notes.join("\n")))
    }

    /// A finished subagent ends as a session does: its claims are released, except its pending work (what it
    /// changed in its worktree and has not landed), which stays claimed by that worktree.
    fn subagent_stop(&self, started: Instant) -> Option<Value> {
        if self.principal == self.session {
            return None;
        }
        let location = RepoLocation::discover(&self.cwd).ok()?;
        let params = SessionParams { session: self.principal.clone(), ..SessionParams::default() };
        let _ = call::<_, Value>(&location, started, SESSION_END_BUDGET, method::SESSION_END, &params);
        self.finish_worktree(&location, started);
        None
    }

    /// Lets the sidecar remove the subagent's worktree if lanes made it and it holds no work.
    fn finish_worktree(&self, location: &RepoLocation, started: Instant) {
        let agent = self.principal.split_once('/').map(|(_, agent)| agent.to_owned());
        let params = WorktreeFinishParams { session: self.session.clone(), agent };
        let _ = call::<_, Value>(location, started, BUDGET, method::WORKTREE_FINISH, &params);
    }

    fn session_end(&self, started: Instant) -> Option<Value> {
        let location = RepoLocation::discover(&self.cwd).ok()?;
        let params = SessionParams { session: self.session.clone(), ..SessionParams::default() };
        let _ = call::<_, Value>(&location, started, SESSION_END_BUDGET, method::SESSION_END, &params);
        let finish = WorktreeFinishParams { session: self.session.clone(), agent: None };
        let _ = call::<_, Value>(&location, started, SESSION_END_BUDGET, method::WORKTREE_FINISH, &finish);
        None
    }

    /// Claude Code asks for a subagent's worktree: lanes makes it (through the sidecar, which serializes
    /// and records it) and prints its path. Claude Code needs a worktree either way, so if the sidecar cannot
    /// answer, the hook makes one with git itself.
    fn worktree_create(&self, input: &Value, started: Instant) -> Option<String> {
        let name = input.get("name")?.as_str()?.to_owned();
        let location = RepoLocation::discover(&self.cwd).ok()?;
        let params = WorktreeCreateParams {
            session: self.session.clone(),
            cwd: self.cwd.to_string_lossy().into_owned(),
            name: name.clone(),
        };
        match call::<_, WorktreeCreateReply>(&location, started, WORKTREE_BUDGET, method::WORKTREE_CREATE, &params) {
            Some(Ok(reply)) => Some(reply.path),
            // The sidecar refused the name: so does the fallback.
            Some(Err(CallError::Refused { .. })) => None,
            _ => {
                // The same rule as the sidecar's: a plain name, never a path (`/tmp/evil`, `../x`).
                let agent = name.strip_prefix("agent-").unwrap_or(&name);
                if agent.is_empty()
                    || agent.starts_with('.')
                    || !agent.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return None;
                }
                let main = location.common_dir.parent()?.to_path_buf();
                let path = main.join(".claude/worktrees").join(&name);
                let status = std::process::Command::new("git")
                    .current_dir(&main)
                    .args(["worktree", "add", "-q", "-b", &format!("worktree-{name}")])
                    .arg(&path)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .ok()?;
                status.success().then(|| path.to_string_lossy().into_owned())
            }
        }
    }

    /// The absolute path an edit tool is about to change, if `tool` is one and names a file.
    fn edited_path(&self, tool: &str, tool_input: &Value) -> Option<PathBuf> {
        if !EDIT_TOOLS.contains(&tool) {
            return None;
        }
        let raw = tool_input.get("file_path").or_else(|| tool_input.get("notebook_path"))?.as_str()?;
        if raw.trim().is_empty() {
            return None;
        }
        let path = Path::new(raw);
        Some(if path.is_absolute() { path.to_path_buf() } else { self.cwd.join(path) })
    }
}

/// Makes one call to the sidecar of `location`'s repository, starting it if needed, all within what is left
/// of `budget` since `started`. A sidecar of another protocol is replaced and the call made again. `None`
/// means the sidecar could not be reached in time: fail open.
fn call<P: serde::Serialize, R: serde::de::DeserializeOwned>(
    location: &RepoLocation,
    started: Instant,
    budget: Duration,
    method: &str,
    params: &P,
) -> Option<Result<R, CallError>> {
    try_call(location, started, budget, method, params).ok()
}

/// [`call`], saying why lanes could not answer when it could not.
fn try_call<P: serde::Serialize, R: serde::de::DeserializeOwned>(
    location: &RepoLocation,
    started: Instant,
    budget: Duration,
    method: &str,
    params: &P,
) -> Result<Result<R, CallError>, String> {
    let paths = SidecarPaths::for_common_dir(&location.common_dir);
    let program = lanes_program();
    let launcher = Launcher {
        paths: &paths,
        repo_dir: &location.worktree,
        program: &program,
        client: "lanes-hook",
        version: env!("CARGO_PKG_VERSION"),
        pass_setting_vars: false,
    };
    let out_of_time = || format!("the sidecar did not answer within {} ms", budget.as_millis());
    let deadline = budget.saturating_sub(EXIT_MARGIN);
    let remaining = || deadline.checked_sub(started.elapsed()).filter(|d| !d.is_zero()).ok_or_else(out_of_time);
    let mut client = launcher.connect_fast(remaining()?).map_err(|e| e.to_string())?;
    client.set_timeout(remaining()?).map_err(|e| e.to_string())?;
    match client.call(method, params) {
        Err(CallError::ProtocolMismatch { .. }) => {
            let mut client = launcher.connect_or_start(remaining()?).map_err(|e| e.to_string())?;
            client.set_timeout(remaining()?).map_err(|e| e.to_string())?;
            Ok(client.call(method, params))
        }
        Err(CallError::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            Err(out_of_time())
        }
        Err(CallError::Io(e)) => Err(e.to_string()),
        result => Ok(result),
    }
}

/// The answer to a PreToolUse whose input is over `limit` bytes.
pub fn too_large_to_check(limit: u64) -> Value {
    deny(format!(
        "lanes cannot check this tool call: its input is over {} MiB, too large to read. Write the file in \
         smaller parts (Write a first part, then Edit to add the rest).",
        limit / (1024 * 1024)
    ))
}

/// Context for the model on `event` (what the hooks that cannot refuse say).
fn tell(event: &str, context: impl Into<String>) -> Value {
    json!({"hookSpecificOutput": {"hookEventName": event, "additionalContext": context.into()}})
}

/// A PreToolUse deny with its reason.
fn deny(reason: String) -> Value {
    json!({"hookSpecificOutput": {
        "hookEventName": "PreToolUse",
        "permissionDecision": "deny",
        "permissionDecisionReason": reason,
    }})
}

/// Notes an edit that went ahead without a check, for `lanes status` and `lanes doctor` to count: one line
/// per edit in `<git-common-dir>/lanes/unchecked.log`, written without the sidecar (which did not answer).
fn record_unchecked(location: &RepoLocation, principal: &str, path: &Path) {
    let log = location.common_dir.join("lanes").join("unchecked.log");
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let line = json!({"at": at, "session": principal, "path": path}).to_string();
    let _ = std::fs::create_dir_all(log.parent().unwrap_or(Path::new("."))).and_then(|()| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&log)?;
        writeln!(file, "{line}")
    });
}

/// `path` with its longest existing prefix resolved through symlinks (the file itself may not exist yet).
fn real_path(path: &Path) -> PathBuf {
    for ancestor in path.ancestors() {
        if let Ok(real) = ancestor.canonicalize() {
            let rest = path.strip_prefix(ancestor).unwrap_or(Path::new(""));
            return if rest.as_os_str().is_empty() { real } else { real.join(rest) };
        }
    }
    path.to_path_buf()
}

/// The `lanes` binary: beside this one (where the installer puts both), else whatever PATH finds.
fn lanes_program() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("lanes")))
        .filter(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("lanes"))
}

/// The nearest directory at or above `path` that exists (a file being created has no directory entry yet).
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.parent()?.ancestors().find(|dir| dir.is_dir())
}

/// The cwd trap: a subagent bound to its own worktree whose command ran in another one (its shell fell back
/// to the main checkout, say). Only then, and only that one worktree, is scanned for the changes it left.
fn stray_changes(location: &RepoLocation, bound: Option<&str>) -> Option<String> {
    let bound = bound?;
    if location.worktree == Path::new(bound) {
        return None;
    }
    let output = std::process::Command::new("git")
        .current_dir(&location.worktree)
        .args(["status", "--porcelain", "--untracked-files=all"])
        .output()
        .ok()?;
    let changed: Vec<String> =
        String::from_utf8_lossy(&output.stdout).lines().take(20).map(|l| l.trim().to_owned()).collect();
    if changed.is_empty() {
        return None;
    }
    Some(format!(
        "lanes: your last command ran in {}, but you work in {bound}. That worktree now has changes: {}. If they are \
         yours, redo them under {bound} and undo them here.",
        location.worktree.display(),
        changed.join("; ")
    ))
}

/// `<branch>@<commit>` of a worktree, read from files: what the branch guard compares.
fn head_of(location: &RepoLocation) -> Option<String> {
    let commit = location.head_commit()?;
    let branch = current_branch(&location.git_dir).unwrap_or_else(|| "(detached)".to_owned());
    Some(format!("{branch}@{}", commit.chars().take(12).collect::<String>()))
}

/// The branch checked out in a worktree, read from its `HEAD` file.
fn current_branch(git_dir: &Path) -> Option<String> {
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    head.trim().strip_prefix("ref: refs/heads/").map(str::to_owned)
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn human_secs(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        _ => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
    }
}

fn deny_reason(path: &Path, worktree: &Path, conflicts: &[ConflictView]) -> String {
    let shown = path.strip_prefix(worktree).unwrap_or(path).display().to_string();
    let branch = |c: &ConflictView| c.branch.as_deref().map(|b| format!(", branch {b}")).unwrap_or_default();
    // "codex session 7f3a…": the holder's agent CLI, when the sidecar knows it.
    let session_of = |c: &ConflictView| {
        c.client.as_deref().map(|client| format!("{client} session")).unwrap_or_else(|| "session".to_owned())
    };
    let holders: Vec<String> = conflicts
        .iter()
        .map(|c| match (&c.session, c.pending) {
            (None, _) => format!(
                "uncommitted or unmerged changes in worktree {}{} that no agent claimed (a person's or a tool's)",
                c.worktree,
                branch(c)
            ),
            (Some(left_by), true) => format!(
                "pending work in worktree {}{} (claim {} on {}): {} {left_by} changed it and ended before it landed",
                c.worktree,
                branch(c),
                c.claim_id,
                c.scope,
                session_of(c)
            ),
            (Some(session), false) => format!(
                "{} {session} (claim {} on {}, worktree {}, expires in {})",
                session_of(c),
                c.claim_id,
                c.scope,
                c.worktree,
                human_secs(c.expires_in_secs)
            ),
        })
        .collect();
    if conflicts.iter().all(|c| c.pending) {
        let claim =
            conflicts.iter().find(|c| !c.latent).map_or_else(|| "<claim>".to_owned(), |c| c.claim_id.to_string());
        return format!(
            "lanes: {shown} is held by {}. Do not edit it: that change has not landed on the base branch yet, and a \
             second change to the same file would make the merge conflict. Work on another file; the path is free \
             once that work is merged (`lanes land`), or after a person gives it up (`lanes release --pending {claim}`).",
            holders.join("; ")
        );
    }
    let holder = conflicts.iter().find_map(|c| c.session.as_deref().filter(|_| !c.pending)).unwrap_or("<session>");
    let claim = conflicts.first().map_or_else(|| "<claim>".to_owned(), |c| c.claim_id.to_string());
    format!(
        "lanes: {shown} is held by {}. Do not edit it now. Ask the holder: `lanes send {holder} \"<what you need>\"`, \
         run `lanes wait {claim}` to be told when it is free, and work on another file meanwhile.",
        holders.join("; ")
    )
}

fn inbox_context(messages: &[MessageView]) -> String {
    let lines: Vec<String> =
        messages.iter().map(|m| format!("- from {} ({}): {}", m.from, m.sent_at, m.text)).collect();
    format!("lanes: new messages for you:\n{}\nReply with `lanes send <session> <text>`.", lines.join("\n"))
}

fn start_context(reply: &SessionStartReply, location: &RepoLocation, branch: Option<&str>) -> String {
    let mut text = format!(
        "lanes: you are session {} in worktree {}{}. Files you edit are claimed for you; an edit to a file another \
         session holds is refused with the holder named. Coordinate with `lanes send <session> <text>`; `lanes status` \
         shows everyone.",
        reply.session,
        location.worktree.display(),
        branch.map(|b| format!(" (branch {b})")).unwrap_or_default()
    );
    let here = location.worktree.to_string_lossy();
    let neighbours: Vec<&str> =
        reply.others.iter().filter(|p| p.worktree.as_deref() == Some(here.as_ref())).map(|p| p.id.as_str()).collect();
    if !neighbours.is_empty() {
        text.push_str(&format!(
            "\nCareful: {} also work(s) in this worktree; you share its files, index and branch, so coordinate before \
             switching branches or committing.",
            neighbours.join(", ")
        ));
    }
    if reply.others.is_empty() {
        text.push_str("\nNo other session is working in this repository right now.");
    } else {
        text.push_str("\nOther sessions working in this repository:");
        const SHOWN: usize = 20;
        for peer in reply.others.iter().take(SHOWN) {
            let held: Vec<String> = peer
                .claims
                .iter()
                .map(|c| {
                    format!("{} (claim {}, expires in {})", c.scopes.join(", "), c.id, human_secs(c.expires_in_secs))
                })
                .collect();
            text.push_str(&format!(
                "\n- {} in {}{}: {}",
                peer.id,
                peer.worktree.as_deref().unwrap_or("an unknown worktree"),
                peer.branch.as_deref().map(|b| format!(" (branch {b})")).unwrap_or_default(),
                if held.is_empty() { "no claims".to_owned() } else { format!("holds {}", held.join("; ")) }
            ));
        }
        if reply.others.len() > SHOWN {
            text.push_str(&format!("\n- and {} more (`lanes status` lists them all)", reply.others.len() - SHOWN));
        }
    }
    if !reply.pending_work.is_empty() {
        text.push_str(
            "\nWork left in worktrees that has not landed on the base branch yet; its files are taken until it does \
             (editing them elsewhere would make the merge conflict):",
        );
        for work in reply.pending_work.iter().take(20) {
            let mine = work.worktree == location.worktree.to_string_lossy();
            text.push_str(&format!(
                "\n- {} in {}{}, left by {}{}",
                work.scopes.join(", "),
                work.worktree,
                work.branch.as_deref().map(|b| format!(" (branch {b})")).unwrap_or_default(),
                work.session,
                if mine { " — in your worktree: editing it continues that work" } else { "" }
            ));
        }
    }
    if !reply.own_claims.is_empty() {
        let own: Vec<String> =
            reply.own_claims.iter().map(|c| format!("{} (claim {})", c.scopes.join(", "), c.id)).collect();
        text.push_str(&format!("\nYou already hold: {}.", own.join("; ")));
    }
    if !reply.inbox.is_empty() {
        text.push('\n');
        text.push_str(&inbox_context(&reply.inbox));
    }
    text
}
