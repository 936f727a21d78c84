//! `lanes setup <client>`: wires lanes' hook into an agent CLI's own configuration (DESIGN.md §12), merging
//! into what is there (lanes' entries are the ones whose command runs `lanes-hook`), idempotently, and
//! `--undo` takes exactly those entries out again. `lanes doctor` reads the same files.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::Failure;
use crate::cli::output::Output;

/// The agent CLIs `lanes setup` knows.
pub const CLIENTS: &[&str] = &["claude", "codex", "gemini", "copilot", "opencode"];

/// Where the configuration goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The repository's own files (shared with the team when committed).
    Project,
    /// The user's files, for every repository.
    User,
}

/// The opencode plugin: opencode runs it in-process; it asks `lanes-hook opencode` before each tool call
/// and throws the refusal, which opencode hands to the model as the tool's error. opencode has no session
/// hooks a plugin can rely on, so a session starts with its first tool call and ends with the process;
/// what lanes says after a call (or that it could not check one) is added to that tool's output.
const OPENCODE_PLUGIN: &str = r#"// lanes: written by `lanes setup opencode`; `lanes setup opencode --undo` removes it.
import { spawnSync } from "node:child_process";

const HOOK = __LANES_HOOK__;
// The sessions this opencode process told lanes about: each ends when the process does.
const sessions = new Set();
// Each running tool call's arguments (the after hook does not get them) and what to tell the model after it.
const calls = new Map();

function ask(event, payload) {
  const run = spawnSync(HOOK, ["opencode", event], { input: JSON.stringify(payload), encoding: "utf8", timeout: 5000 });
  if (run.error || run.status !== 0) {
    return { unchecked: run.error ? String(run.error) : (run.stderr.trim() || `lanes-hook exited with ${run.status}`) };
  }
  if (!run.stdout.trim()) return {};
  try { return JSON.parse(run.stdout); } catch { return { unchecked: "lanes-hook answered something that is not JSON" }; }
}

function unchecked(why) {
  return `lanes: this call was NOT checked against other agents' claims (${why}); run \`lanes status\` before you edit further.`;
}

export const LanesPlugin = async ({ directory }) => {
  process.on("exit", () => {
    for (const sessionID of sessions) ask("SessionEnd", { sessionID, cwd: directory, reason: "exit" });
  });
  return {
    "tool.execute.before": async (input, output) => {
      if (!sessions.has(input.sessionID)) {
        sessions.add(input.sessionID);
        ask("SessionStart", { sessionID: input.sessionID, cwd: directory, source: "startup" });
      }
      const answer = ask("PreToolUse", { sessionID: input.sessionID, cwd: directory, tool: input.tool, args: output.args });
      if (answer.deny) throw new Error(answer.deny);
      const notes = [answer.context, answer.unchecked && unchecked(answer.unchecked)].filter(Boolean);
      calls.set(input.callID, { args: output.args, notes });
    },
    "tool.execute.after": async (input, output) => {
      const call = calls.get(input.callID) ?? { args: input.args ?? {}, notes: [] };
      calls.delete(input.callID);
      const answer = ask("PostToolUse", { sessionID: input.sessionID, cwd: directory, tool: input.tool, args: call.args });
      const notes = [...call.notes, answer.context].filter(Boolean);
      if (notes.length && output && typeof output.output === "string") output.output += "\n\n" + notes.join("\n");
    },
  };
};
"#;

/// The file `client`'s hooks live in for `scope`.
fn config_file(client: &str, scope: Scope, repo: &Path) -> Result<PathBuf, Failure> {
    let home = || std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| Failure::internal("HOME is not set"));
    Ok(match (client, scope) {
        ("claude", Scope::Project) => repo.join(".claude/settings.json"),
        ("claude", Scope::User) => home()?.join(".claude/settings.json"),
        ("codex", Scope::Project) => repo.join(".codex/hooks.json"),
        ("codex", Scope::User) => match std::env::var_os("CODEX_HOME") {
            Some(dir) => PathBuf::from(dir).join("hooks.json"),
            None => home()?.join(".codex/hooks.json"),
        },
        ("gemini", Scope::Project) => repo.join(".gemini/settings.json"),
        ("gemini", Scope::User) => home()?.join(".gemini/settings.json"),
        ("copilot", Scope::Project) => repo.join(".github/hooks/lanes.json"),
        ("copilot", Scope::User) => home()?.join(".copilot/hooks/lanes.json"),
        ("opencode", Scope::Project) => repo.join(".opencode/plugins/lanes.js"),
        ("opencode", Scope::User) => match std::env::var_os("XDG_CONFIG_HOME") {
            Some(dir) => PathBuf::from(dir).join("opencode/plugins/lanes.js"),
            None => home()?.join(".config/opencode/plugins/lanes.js"),
        },
        _ => {
            return Err(Failure::invalid(format!("unknown client {client:?}: use one of {}", CLIENTS.join(", "))));
        }
    })
}

/// The hook program, as the client should run it: `lanes-hook` beside this `lanes` when it is there (an
/// absolute path needs no PATH), else from PATH.
fn hook_program() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("lanes-hook")))
        .filter(|hook| hook.is_file())
        .map_or_else(|| "lanes-hook".to_owned(), |hook| hook.to_string_lossy().into_owned())
}

/// The events lanes hooks in `client`, with a tool matcher where the event takes one.
fn events(client: &str) -> &'static [(&'static str, Option<&'static str>)] {
    match client {
        "claude" => &[
            ("SessionStart", None),
            ("PreToolUse", Some("Edit|Write|MultiEdit|NotebookEdit|Bash")),
            ("PostToolUse", Some("Edit|Write|MultiEdit|NotebookEdit|Bash")),
            ("UserPromptSubmit", None),
            ("Stop", None),
            ("SessionEnd", None),
        ],
        "codex" => &[
            ("SessionStart", None),
            ("PreToolUse", Some("*")),
            ("PostToolUse", Some("*")),
            ("UserPromptSubmit", None),
            ("Stop", None),
            ("SessionEnd", None),
        ],
        "gemini" => &[
            ("SessionStart", None),
            ("BeforeTool", Some("write_file|replace|run_shell_command")),
            ("AfterTool", Some("write_file|replace|run_shell_command")),
            ("BeforeAgent", None),
            ("SessionEnd", None),
        ],
        "copilot" => &[
            ("sessionStart", None),
            ("preToolUse", None),
            ("postToolUse", None),
            ("userPromptSubmitted", None),
            ("sessionEnd", None),
        ],
        _ => &[],
    }
}

/// Whether a hook entry is lanes'.
fn is_lanes(entry: &Value) -> bool {
    entry.to_string().contains("lanes-hook")
}

/// `settings` with lanes' hooks for `client` in (`undo`: out), keeping every other entry as it was.
fn merged(client: &str, mut settings: Value, hook: &str, undo: bool) -> Value {
    if !settings.is_object() {
        settings = json!({});
    }
    let root = settings.as_object_mut().expect("an object");
    if client == "copilot" {
        root.insert("version".into(), json!(1));
    }
    let hooks = root.entry("hooks").or_insert_with(|| json!({}));
    if !hooks.is_object() {
        *hooks = json!({});
    }
    let hooks = hooks.as_object_mut().expect("an object");
    for (event, matcher) in events(client) {
        let list = hooks.entry(*event).or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        let list = list.as_array_mut().expect("an array");
        list.retain(|entry| !is_lanes(entry));
        if undo {
            continue;
        }
        let command = format!("{hook} {client} {event}");
        let entry = if client == "copilot" {
            json!({"type": "command", "bash": command, "timeoutSec": 10})
        } else {
            let mut hook = json!({"type": "command", "command": command});
            if client == "gemini" {
                // Gemini's timeout is in milliseconds.
                hook["timeout"] = json!(5000);
            }
            let mut entry = json!({"hooks": [hook]});
            if let Some(matcher) = matcher {
                entry["matcher"] = json!(matcher);
            }
            entry
        };
        list.push(entry);
    }
    hooks.retain(|_, list| list.as_array().is_none_or(|l| !l.is_empty()));
    if hooks.is_empty() {
        root.remove("hooks");
    }
    if client == "copilot" && root.len() == 1 {
        root.remove("version");
    }
    settings
}

/// `lanes setup <client>`: writes (or, with `undo`, removes) lanes' hooks in that client's configuration.
pub fn setup(out: &Output, repo: &Path, client: &str, scope: Scope, undo: bool) -> Result<(), Failure> {
    let file = config_file(client, scope, repo)?;
    let hook = hook_program();
    let before = std::fs::read_to_string(&file).ok();
    let after: Option<String> = if client == "opencode" {
        (!undo).then(|| OPENCODE_PLUGIN.replace("__LANES_HOOK__", &serde_json::to_string(&hook).unwrap_or_default()))
    } else {
        let current: Value = match &before {
            Some(text) if !text.trim().is_empty() => serde_json::from_str(text).map_err(|e| {
                Failure::invalid(format!(
                    "{} is not valid JSON ({e}); fix it first, lanes changes nothing",
                    file.display()
                ))
            })?,
            _ => json!({}),
        };
        let next = merged(client, current, &hook, undo);
        (next.as_object().is_some_and(|o| !o.is_empty()) || before.is_some())
            .then(|| serde_json::to_string_pretty(&next).unwrap_or_default() + "\n")
    };
    let action = match (&before, &after) {
        (Some(old), Some(new)) if old == new => "unchanged",
        (None, None) => "unchanged",
        (_, None) => {
            std::fs::remove_file(&file)
                .map_err(|e| Failure::internal(format!("failed to remove {}: {e}", file.display())))?;
            "removed"
        }
        (old, Some(new)) => {
            write_file(&file, new)?;
            if old.is_some() { if undo { "restored" } else { "updated" } } else { "created" }
        }
    };
    let value = json!({"client": client, "scope": if scope == Scope::User { "user" } else { "project" },
        "file": file, "action": action, "hook": hook, "undo": undo});
    out.print(&value, |_| {
        let what = if undo { "lanes' hooks taken out of" } else { "lanes' hooks in" };
        format!("{client}: {what} {} ({action})", file.display())
    });
    Ok(())
}

fn write_file(file: &Path, text: &str) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::internal(format!("failed to write {}: {e}", file.display()));
    std::fs::create_dir_all(file.parent().unwrap_or(Path::new("."))).map_err(fail)?;
    let temporary = file.with_extension("lanes-tmp");
    std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, file)).map_err(fail)
}

/// For `lanes doctor`: each client found on PATH, and whether lanes is wired into it (project or user scope).
pub fn wired(repo: &Path) -> Vec<(String, bool, Option<PathBuf>)> {
    CLIENTS
        .iter()
        .filter(|client| on_path(client))
        .map(|client| {
            let found = [Scope::Project, Scope::User]
                .into_iter()
                .filter_map(|scope| config_file(client, scope, repo).ok())
                .find(|file| std::fs::read_to_string(file).is_ok_and(|text| text.contains("lanes-hook")));
            ((*client).to_owned(), found.is_some(), found)
        })
        .collect()
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_keeps_other_hooks_is_idempotent_and_undo_restores() {
        let theirs = json!({"model": "x", "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "mine"}]}]}});
        let once = merged("codex", theirs.clone(), "/bin/lanes-hook", false);
        assert_eq!(merged("codex", once.clone(), "/bin/lanes-hook", false), once, "not idempotent");
        assert_eq!(once["hooks"]["PreToolUse"].as_array().map(Vec::len), Some(2));
        assert_eq!(once["hooks"]["PreToolUse"][1]["hooks"][0]["command"], "/bin/lanes-hook codex PreToolUse");
        assert_eq!(merged("codex", once, "/bin/lanes-hook", true), theirs, "undo did not restore");
        let copilot = merged("copilot", json!({}), "/bin/lanes-hook", false);
        assert_eq!(copilot["version"], 1);
        assert_eq!(copilot["hooks"]["preToolUse"][0]["bash"], "/bin/lanes-hook copilot preToolUse");
        assert_eq!(merged("copilot", copilot, "/bin/lanes-hook", true), json!({}));
        let gemini = merged("gemini", json!({}), "/bin/lanes-hook", false);
        assert_eq!(gemini["hooks"]["BeforeTool"][0]["matcher"], "write_file|replace|run_shell_command");
    }

    /// A user's file keeps its own key order (serde_json's `preserve_order`): lanes adds to it, never sorts it.
    #[test]
    fn setup_keeps_the_files_key_order() {
        let theirs: Value =
            serde_json::from_str(r#"{"zeta": 1, "general": {"b": 1, "a": 2}, "alpha": true}"#).expect("json");
        let once = merged("gemini", theirs, "/bin/lanes-hook", false);
        let keys: Vec<&String> = once.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["zeta", "general", "alpha", "hooks"]);
        let inner: Vec<&String> = once["general"].as_object().expect("object").keys().collect();
        assert_eq!(inner, ["b", "a"]);
    }
}
