//! One adapter per agent CLI (DESIGN.md §12, OTHER-AGENTS.md): each client's hook input is turned into the
//! Claude Code shape the event handlers (`events.rs`) read, and their answer back into the client's own
//! format. Only the shapes differ: every client gets the same checks, claims and refusals.

use serde_json::{Map, Value, json};

/// The agent CLIs lanes-hook answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    Claude,
    Codex,
    Gemini,
    Copilot,
    Opencode,
}

impl Client {
    pub fn from_name(name: &str) -> Option<Client> {
        Some(match name {
            "claude" => Client::Claude,
            "codex" => Client::Codex,
            "gemini" => Client::Gemini,
            "copilot" => Client::Copilot,
            "opencode" => Client::Opencode,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Client::Claude => "claude",
            Client::Codex => "codex",
            Client::Gemini => "gemini",
            Client::Copilot => "copilot",
            Client::Opencode => "opencode",
        }
    }

    /// The Claude Code event `event` of this client is, if lanes handles it.
    pub fn event(self, event: &str) -> Option<&'static str> {
        let claude = match (self, event) {
            (Client::Gemini, "BeforeTool") => "PreToolUse",
            (Client::Gemini, "AfterTool") => "PostToolUse",
            (Client::Gemini, "BeforeAgent") => "UserPromptSubmit",
            (Client::Gemini, "AfterAgent") => "Stop",
            (Client::Copilot, "preToolUse") => "PreToolUse",
            (Client::Copilot, "postToolUse") => "PostToolUse",
            (Client::Copilot, "sessionStart") => "SessionStart",
            (Client::Copilot, "sessionEnd") => "SessionEnd",
            (Client::Copilot, "userPromptSubmitted") => "UserPromptSubmit",
            (_, other) => return CLAUDE_EVENTS.iter().copied().find(|e| *e == other),
        };
        Some(claude)
    }

    /// This client's hook input in the shape of Claude Code's: `session_id`, `cwd`, `tool_name` (`Write` for a
    /// one-file edit, `apply_patch` for a patch, `Bash` for a shell command) and `tool_input`.
    pub fn normalize(self, input: &Value) -> Value {
        let mut out = match input {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        let text = |keys: &[&str]| keys.iter().find_map(|k| input.get(*k).and_then(Value::as_str)).map(str::to_owned);
        if let Some(session) = text(&["session_id", "sessionId", "sessionID"]) {
            out.insert("session_id".into(), session.into());
        }
        let (tool, args) = match self {
            Client::Claude | Client::Codex | Client::Gemini => (text(&["tool_name"]), input.get("tool_input").cloned()),
            // Copilot's camelCase hooks send `toolArgs` as an object or as a JSON string.
            Client::Copilot => {
                let args = input.get("toolArgs").or_else(|| input.get("tool_input")).cloned();
                let args = match args {
                    Some(Value::String(s)) => serde_json::from_str(&s).ok().or(Some(Value::String(s))),
                    other => other,
                };
                (text(&["toolName", "tool_name"]), args)
            }
            Client::Opencode => {
                (text(&["tool", "tool_name"]), input.get("args").or_else(|| input.get("tool_input")).cloned())
            }
        };
        if let Some(tool) = tool {
            let args = args.unwrap_or(Value::Null);
            let (name, tool_input) = self.tool(&tool, &args);
            out.insert("tool_name".into(), name.into());
            out.insert("tool_input".into(), tool_input);
        }
        Value::Object(out)
    }

    /// A tool call as Claude Code would name it, with the fields the handlers read.
    fn tool(self, tool: &str, args: &Value) -> (String, Value) {
        let field = |keys: &[&str]| keys.iter().find_map(|k| args.get(*k).and_then(Value::as_str)).map(str::to_owned);
        let edit = |keys: &[&str]| match field(keys) {
            Some(path) => ("Write".to_owned(), json!({"file_path": path})),
            // An edit tool without a path lanes can read: the handlers refuse what they cannot judge.
            None => ("Write".to_owned(), json!({"file_path": ""})),
        };
        let patch = |keys: &[&str]| {
            let text = field(keys).or_else(|| args.as_str().map(str::to_owned)).unwrap_or_default();
            ("apply_patch".to_owned(), json!({"patch": text}))
        };
        let shell = || ("Bash".to_owned(), json!({"command": field(&["command", "cmd"]).unwrap_or_default()}));
        match (self, tool) {
            (Client::Claude, _) => (tool.to_owned(), args.clone()),
            (Client::Codex, "apply_patch") => patch(&["command", "patch", "input"]),
            (Client::Codex, "Bash" | "shell" | "exec_command" | "local_shell") => shell(),
            (Client::Codex, _) => (tool.to_owned(), args.clone()),
            (Client::Gemini, "write_file" | "replace") => edit(&["file_path", "absolute_path"]),
            (Client::Gemini, "run_shell_command") => shell(),
            (Client::Copilot, "edit" | "create" | "write") => edit(&["path", "file_path"]),
            (Client::Copilot, "apply_patch") => patch(&["input", "patch", "command"]),
            (Client::Copilot, "bash" | "shell") => shell(),
            (Client::Opencode, "edit" | "write") => edit(&["filePath", "file_path"]),
            (Client::Opencode, "apply_patch") => patch(&["patchText", "patch"]),
            (Client::Opencode, "bash") => shell(),
            (_, other) => (other.to_owned(), args.clone()),
        }
    }

    /// The handlers' answer (Claude Code's format) in this client's: a structured deny on exit 0, and
    /// context for the model where the client takes it.
    pub fn render(self, client_event: &str, answer: Value) -> Option<Value> {
        let specific = answer.get("hookSpecificOutput");
        let denied = specific
            .filter(|s| s.get("permissionDecision").and_then(Value::as_str) == Some("deny"))
            .and_then(|s| s.get("permissionDecisionReason"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let context = specific.and_then(|s| s.get("additionalContext")).and_then(Value::as_str).map(str::to_owned);
        match self {
            Client::Claude | Client::Codex => Some(answer),
            Client::Gemini => match (denied, context) {
                (Some(reason), _) => Some(json!({"decision": "deny", "reason": reason})),
                // BeforeTool takes no context beside an allow; the other events do.
                (None, Some(context)) if client_event != "BeforeTool" => Some(json!({"hookSpecificOutput": {
                    "hookEventName": client_event, "additionalContext": context}})),
                _ => None,
            },
            Client::Copilot => {
                denied.map(|reason| json!({"permissionDecision": "deny", "permissionDecisionReason": reason}))
            }
            Client::Opencode => match (denied, context) {
                (Some(reason), _) => Some(json!({"deny": reason})),
                (None, Some(context)) => Some(json!({"context": context})),
                _ => None,
            },
        }
    }

    /// Whether `event` (this client's name for it) is the one before a tool runs.
    pub fn is_before_tool(self, event: &str) -> bool {
        self.event(event) == Some("PreToolUse")
    }
}

/// The Claude Code events the handlers know; other clients reuse these names where theirs are the same.
const CLAUDE_EVENTS: &[&str] = &[
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_clients_edit_tools_become_paths_and_shells_become_bash() {
        let cases = [
            (
                Client::Gemini,
                json!({"session_id": "g", "tool_name": "write_file", "tool_input": {"file_path": "/r/a.rs"}}),
                "Write",
                "file_path",
                "/r/a.rs",
            ),
            (
                Client::Gemini,
                json!({"session_id": "g", "tool_name": "run_shell_command", "tool_input": {"command": "ls"}}),
                "Bash",
                "command",
                "ls",
            ),
            (
                Client::Copilot,
                json!({"sessionId": "c", "toolName": "edit", "toolArgs": {"path": "/r/a.rs"}}),
                "Write",
                "file_path",
                "/r/a.rs",
            ),
            (
                Client::Copilot,
                json!({"sessionId": "c", "toolName": "create", "toolArgs": "{\"path\":\"/r/b.rs\"}"}),
                "Write",
                "file_path",
                "/r/b.rs",
            ),
            (
                Client::Opencode,
                json!({"sessionID": "o", "tool": "apply_patch", "args": {"patchText": "P"}}),
                "apply_patch",
                "patch",
                "P",
            ),
            (
                Client::Opencode,
                json!({"sessionID": "o", "tool": "write", "args": {"filePath": "/r/c.rs"}}),
                "Write",
                "file_path",
                "/r/c.rs",
            ),
            (
                Client::Codex,
                json!({"session_id": "x", "tool_name": "apply_patch", "tool_input": {"command": "P"}}),
                "apply_patch",
                "patch",
                "P",
            ),
        ];
        for (client, input, tool, field, value) in cases {
            let normal = client.normalize(&input);
            assert_eq!(normal["tool_name"], tool, "{client:?} {input}");
            assert_eq!(normal["tool_input"][field], value, "{client:?} {input}");
            assert!(normal["session_id"].is_string(), "{client:?} {input}");
        }
    }

    #[test]
    fn a_deny_is_said_in_each_clients_format() {
        let deny = json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
            "permissionDecisionReason": "held by s1"}});
        assert_eq!(Client::Codex.render("PreToolUse", deny.clone()), Some(deny.clone()));
        assert_eq!(
            Client::Gemini.render("BeforeTool", deny.clone()),
            Some(json!({"decision": "deny", "reason": "held by s1"}))
        );
        assert_eq!(
            Client::Copilot.render("preToolUse", deny.clone()),
            Some(json!({"permissionDecision": "deny", "permissionDecisionReason": "held by s1"}))
        );
        assert_eq!(Client::Opencode.render("PreToolUse", deny), Some(json!({"deny": "held by s1"})));
        let tell = json!({"hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": "hi"}});
        assert_eq!(Client::Gemini.render("BeforeTool", tell.clone()), None);
        assert_eq!(
            Client::Gemini
                .render("SessionStart", tell.clone())
                .and_then(|v| v["hookSpecificOutput"]["additionalContext"].as_str().map(str::to_owned)),
            Some("hi".to_owned())
        );
        assert_eq!(Client::Copilot.render("sessionStart", tell), None);
    }

    #[test]
    fn events_map_to_claude_codes() {
        assert_eq!(Client::Gemini.event("BeforeTool"), Some("PreToolUse"));
        assert_eq!(Client::Copilot.event("preToolUse"), Some("PreToolUse"));
        assert_eq!(Client::Copilot.event("PreToolUse"), Some("PreToolUse"));
        assert_eq!(Client::Codex.event("SessionEnd"), Some("SessionEnd"));
        assert_eq!(Client::Gemini.event("Notification"), None);
    }
}
