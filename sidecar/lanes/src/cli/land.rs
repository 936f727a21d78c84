//! `lanes land` (queue a branch; `--wait` follows it until it lands or blocks) and `lanes queue` (`--follow`
//! streams each landing's output as it runs).

use std::time::Duration;

use lanes_proto::{ErrorCode, LandLogParams, LandParams, method};
use serde_json::{Value, json};

use super::{Env, Failure};
use crate::cli::output::{Output, table};

/// How often a waiting client asks for more output.
const POLL: Duration = Duration::from_millis(20);

pub fn land(
    env: &Env,
    out: &Output,
    target: Option<String>,
    onto: Option<String>,
    test: Option<String>,
    wait: bool,
) -> Result<(), Failure> {
    // A worktree given relative to where the command runs; a branch name goes as it is.
    let target = target.map(|t| {
        let dir = env.cwd.join(&t);
        if dir.is_dir() { dir.to_string_lossy().into_owned() } else { t }
    });
    let params = LandParams {
        session: env.session.clone(),
        worktree: env.location.worktree.to_string_lossy().into_owned(),
        target,
        onto,
        test,
    };
    let queued = env.call(method::LAND_QUEUE, &params)?;
    if !wait {
        out.print(&queued, |v| {
            let entry = &v["entry"];
            format!(
                "queued {} onto {} (entry {}, position {}); `lanes queue --follow` shows the landing",
                text(&entry["branch"]),
                text(&entry["onto"]),
                entry["id"],
                v["position"]
            )
        });
        return Ok(());
    }
    let id = queued["entry"]["id"].as_u64().unwrap_or_default();
    if !out.json {
        crate::cli::output::line(format_args!(
            "queued {} onto {} (entry {id}, position {})",
            text(&queued["entry"]["branch"]),
            text(&queued["entry"]["onto"]),
            queued["position"]
        ));
    }
    let entry = follow(env, out, id)?;
    finished(out, &entry)
}

/// Streams entry `id`'s output (on a terminal, not with `--json`) until it lands or blocks; returns the entry.
fn follow(env: &Env, out: &Output, id: u64) -> Result<Value, Failure> {
    let mut offset = 0;
    loop {
        let log = env.call(method::LAND_LOG, &LandLogParams { id, offset })?;
        if let Some(chunk) = log["text"].as_str().filter(|t| !t.is_empty() && !out.json) {
            crate::cli::output::bytes(chunk.as_bytes());
        }
        offset = log["offset"].as_u64().unwrap_or(offset);
        let state = log["state"].as_str().unwrap_or_default();
        if (state == "landed" || state == "blocked") && log["text"].as_str().is_some_and(str::is_empty) {
            let queue = env.call(method::LAND_LIST, &json!({}))?;
            let entry = queue["entries"].as_array().into_iter().flatten().find(|e| e["id"] == id).cloned();
            return entry.ok_or_else(|| Failure::internal(format!("entry {id} left the queue")));
        }
        if log["text"].as_str().is_some_and(str::is_empty) {
            std::thread::sleep(POLL);
        }
    }
}

/// Prints how an entry ended; blocked is exit 3.
fn finished(out: &Output, entry: &Value) -> Result<(), Failure> {
    out.print(&json!({ "entry": entry }), |v| {
        let e = &v["entry"];
        format!("{} {}: {}", text(&e["branch"]), text(&e["state"]), text(&e["result"]))
    });
    if entry["state"] == "landed" { Ok(()) } else { Err(Failure::reported(ErrorCode::Conflict)) }
}

pub fn queue(env: &Env, out: &Output, follow_all: bool) -> Result<(), Failure> {
    if !follow_all {
        let value = env.call(method::LAND_LIST, &json!({}))?;
        out.print(&value, render);
        return Ok(());
    }
    let mut done = Vec::new();
    loop {
        let value = env.call(method::LAND_LIST, &json!({}))?;
        let active = value["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| (e["state"] == "landing" || e["state"] == "queued") && !done.contains(&e["id"]))
            .cloned();
        let Some(entry) = active else {
            if !out.json {
                crate::cli::output::line("the landing queue is empty");
            }
            return Ok(());
        };
        let id = entry["id"].as_u64().unwrap_or_default();
        if !out.json {
            crate::cli::output::line(format_args!(
                "--- entry {id}: {} onto {}",
                text(&entry["branch"]),
                text(&entry["onto"])
            ));
        }
        let ended = follow(env, out, id)?;
        let _ = finished(out, &ended);
        done.push(entry["id"].clone());
    }
}

fn render(v: &Value) -> String {
    let entries = v["entries"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        return "the landing queue is empty; `lanes land` queues the current worktree's branch".to_owned();
    }
    let mut position = 0;
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let waiting = e["state"] == "queued" || e["state"] == "landing";
            position += usize::from(waiting);
            vec![
                if waiting { position.to_string() } else { "-".to_owned() },
                e["id"].to_string(),
                state_label(e),
                format!("{} → {}", text(&e["branch"]), text(&e["onto"])),
                text(&e["owner"]),
                result_line(e),
            ]
        })
        .collect();
    table(&["#", "ENTRY", "STATE", "BRANCH", "OWNER", "RESULT"], &rows)
}

/// An entry's state as `lanes queue` and `lanes watch` show it: `landing (test)` while it lands.
pub fn state_label(entry: &Value) -> String {
    match entry["phase"].as_str() {
        Some(phase) if entry["state"] == "landing" => format!("landing ({phase})"),
        _ => text(&entry["state"]),
    }
}

/// The first line of an entry's result (the rest is the test output's tail).
pub fn result_line(entry: &Value) -> String {
    entry["result"].as_str().and_then(|r| r.lines().next()).unwrap_or("").to_owned()
}

fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}
