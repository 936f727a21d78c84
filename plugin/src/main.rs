//! `lanes-hook`: the per-event client that the agent CLIs and git hooks run. Plain std, fail-open: whatever
//! goes wrong (garbage input, an unknown event, a sidecar that is down or slow) it exits 0 and prints
//! nothing, so an editor or a commit never waits on lanes beyond a hard bound; an edit it cannot judge is
//! refused with the reason.
//!
//! Usage: `lanes-hook <claude|codex|gemini|copilot|opencode> <Event>` with that client's hook JSON on stdin;
//! `lanes-hook git <hook> [args]` from the git hooks `lanes init` installs.

#![forbid(unsafe_code)]

mod clients;
mod events;
mod git;
mod patch;

use std::io::Read;
use std::process::ExitCode;

use clients::Client;

/// The most stdin read; hook inputs carry file contents and can be large, but not this large.
const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [client, event] if Client::from_name(client).is_some() => {
            let client = Client::from_name(client).unwrap_or(Client::Claude);
            if let Some(output) = answer(client, event) {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        ["git", hook, rest @ ..] => {
            if git::handle(hook, rest) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        ["--help" | "-h" | "help"] => {
            println!(
                "lanes-hook {}: the hook client of lanes, run by Claude Code and git, not by hand.\n\n\
                 Usage:\n  lanes-hook claude <Event>      a Claude Code hook event, its JSON on stdin\n  \
                 lanes-hook codex <Event>       the same for Codex CLI, gemini for Gemini CLI, copilot for\n  \
                 \x20                             Copilot CLI, opencode for opencode's plugin\n  \
                 lanes-hook git <hook> [args]   a git hook installed by `lanes init`\n\n\
                 It answers within a hard time bound and lets the work go ahead when lanes cannot answer.\n\
                 Set-up and diagnosis: `lanes init`, `lanes setup <client>`, `lanes doctor`.",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        ["--version"] => {
            println!("lanes-hook {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        // Unknown arguments: never fail the caller.
        _ => ExitCode::SUCCESS,
    }
}

/// Reads `client`'s hook input for `event` and answers it in that client's format.
fn answer(client: Client, event: &str) -> Option<String> {
    let claude_event = client.event(event)?;
    let mut input = Vec::new();
    std::io::stdin().take(MAX_INPUT_BYTES + 1).read_to_end(&mut input).ok()?;
    if input.len() as u64 > MAX_INPUT_BYTES {
        // Too large to read whole, so the edited path is unknown: an edit is refused rather than let through
        // unchecked; other events carry nothing that needs a check.
        return client
            .is_before_tool(event)
            .then(|| client.render(event, events::too_large_to_check(MAX_INPUT_BYTES)))
            .flatten()
            .map(|v| v.to_string());
    }
    let input = serde_json::from_slice::<serde_json::Value>(&input).ok()?;
    let output = events::handle(client, claude_event, &client.normalize(&input))?;
    if claude_event == "WorktreeCreate" {
        return Some(output);
    }
    let answer = serde_json::from_str(&output).ok()?;
    client.render(event, answer).map(|v| v.to_string())
}
