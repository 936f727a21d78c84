//! `lanes-hook`: the per-event client that Claude Code (and, later, git hooks) run. Plain std, fail-open:
//! whatever goes wrong (garbage input, an unknown event, a sidecar that is down or slow) it exits 0 and
//! prints nothing, so an editor or a commit never waits on lanes beyond a hard bound.
//!
//! Usage: `lanes-hook claude <Event>` with Claude Code's hook JSON on stdin; `lanes-hook git <hook> [args]`
//! from the git hooks `lanes init` installs.

#![forbid(unsafe_code)]

mod claude;
mod git;

use std::io::Read;
use std::process::ExitCode;

/// The most stdin read; hook inputs carry file contents and can be large, but not this large.
const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["claude", event] => {
            let mut input = Vec::new();
            if std::io::stdin().take(MAX_INPUT_BYTES + 1).read_to_end(&mut input).is_err() {
                return ExitCode::SUCCESS;
            }
            if input.len() as u64 > MAX_INPUT_BYTES {
                // Too large to read whole, so the edited path is unknown: an edit is refused rather than let
                // through unchecked; other events carry nothing that needs a check.
                if *event == "PreToolUse" {
                    println!("{}", claude::too_large_to_check(MAX_INPUT_BYTES));
                }
                return ExitCode::SUCCESS;
            }
            let Ok(input) = serde_json::from_slice::<serde_json::Value>(&input) else {
                return ExitCode::SUCCESS;
            };
            if let Some(output) = claude::handle(event, &input) {
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
                 lanes-hook git <hook> [args]   a git hook installed by `lanes init`\n\n\
                 It answers within a hard time bound and lets the work go ahead when lanes cannot answer.\n\
                 Set-up and diagnosis: `lanes init`, `lanes doctor`.",
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
