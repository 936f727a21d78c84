//! `checkpoint`, `checkpoints`, `rewind` and `explain`.

use std::path::Path;

use lanes_proto::{CheckpointParams, CheckpointsParams, ExplainParams, RewindParams, method};
use serde_json::{Value, json};

use super::{Env, Failure};
use crate::cli::output::{Output, joined, table};
use crate::git;

pub fn checkpoint(env: &Env, out: &Output, message: Option<String>) -> Result<(), Failure> {
    let params = CheckpointParams { session: env.session.clone(), worktree: env.worktree(), message };
    let value = env.call(method::CHECKPOINT_CREATE, &params)?;
    out.print(&value, |v| match v["checkpoint"].as_object() {
        Some(c) => format!(
            "checkpoint {} of {} ({} files changed)",
            c["id"].as_str().unwrap_or("?"),
            c["worktree"].as_str().unwrap_or("?"),
            c["files"].as_array().map_or(0, Vec::len)
        ),
        None => "nothing changed since the last checkpoint".to_owned(),
    });
    Ok(())
}

pub fn checkpoints(env: &Env, out: &Output, all: bool, limit: u32) -> Result<(), Failure> {
    let params = CheckpointsParams { session: (!all).then(|| env.session.clone()), limit: Some(limit) };
    let value = env.call(method::CHECKPOINT_LIST, &params)?;
    out.print(&value, |v| {
        let rows: Vec<Vec<String>> = v["checkpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                vec![
                    c["id"].as_str().unwrap_or("?").to_owned(),
                    c["at"].as_str().unwrap_or("?").to_owned(),
                    c["session"].as_str().unwrap_or("?").to_owned(),
                    c["files"].as_array().map_or(0, Vec::len).to_string(),
                    c["message"].as_str().unwrap_or("").to_owned(),
                ]
            })
            .collect();
        if rows.is_empty() {
            "no checkpoints yet".to_owned()
        } else {
            table(&["CHECKPOINT", "AT", "SESSION", "FILES", "WHY"], &rows)
        }
    });
    Ok(())
}

pub fn rewind(
    env: &Env,
    out: &Output,
    checkpoint: String,
    dry_run: bool,
    paths: Vec<String>,
    force: bool,
) -> Result<(), Failure> {
    let paths = paths.iter().map(|p| env.scope_arg(p)).collect::<Result<_, _>>()?;
    let params =
        RewindParams { session: env.session.clone(), worktree: env.worktree(), checkpoint, paths, dry_run, force };
    let value = env.call(method::CHECKPOINT_REWIND, &params)?;
    out.print(&value, |v| {
        let changes: Vec<String> = v["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let held = c["held_by"].as_str().map(|h| format!("   (held by {h})")).unwrap_or_default();
                format!("  {:<7} {}{held}", c["action"].as_str().unwrap_or("?"), c["path"].as_str().unwrap_or("?"))
            })
            .collect();
        let target = v["checkpoint"].as_str().unwrap_or("?");
        if changes.is_empty() {
            return format!("the worktree already matches checkpoint {target}");
        }
        let head = if v["dry_run"] == true {
            format!("rewinding to {target} would change:")
        } else {
            format!("rewound to {target}:")
        };
        let undo = match v["backup"].as_str() {
            Some(backup) => format!("\nundo with: lanes rewind {backup}"),
            None => String::new(),
        };
        format!("{head}\n{}{undo}", changes.join("\n"))
    });
    Ok(())
}

pub fn explain(env: &Env, out: &Output, target: &str) -> Result<(), Failure> {
    let dir = &env.cwd;
    let commit = match git::run(dir, &["rev-parse", "--verify", "--quiet", &format!("{target}^{{commit}}")]) {
        Ok(commit) => commit,
        Err(_) => commit_of_path(dir, target)?,
    };
    let format = "--format=%H%x00%s%x00%an%x00%aI%x00%(trailers:key=Lanes-Session,valueonly,separator=%x2C)%x00%(trailers:key=Lanes-Checkpoint,valueonly)";
    let shown =
        git::run(dir, &["show", "-s", format, &commit, "--"]).map_err(|e| Failure::invalid(format!("{e:#}")))?;
    let fields: Vec<&str> = shown.split('\0').collect();
    let sessions: Vec<String> =
        fields.get(4).unwrap_or(&"").split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let mut value = env.call(method::COMMIT_EXPLAIN, &ExplainParams { commit: commit.clone(), sessions })?;
    value["subject"] = json!(fields.get(1).unwrap_or(&""));
    value["author"] = json!(fields.get(2).unwrap_or(&""));
    value["date"] = json!(fields.get(3).unwrap_or(&""));
    value["checkpoint"] = json!(fields.get(5).map(|c| c.trim()).filter(|c| !c.is_empty()));
    out.print(&value, render_explain);
    Ok(())
}

/// The commit that last changed `PATH` (or line `LINE` of it, through blame).
fn commit_of_path(dir: &Path, target: &str) -> Result<String, Failure> {
    let (path, line) = match target.rsplit_once(':') {
        Some((path, line)) if line.parse::<u32>().is_ok() => (path, Some(line)),
        _ => (target, None),
    };
    let found = match line {
        Some(line) => git::run(dir, &["blame", "--porcelain", "-L", &format!("{line},{line}"), "--", path])
            .map(|out| out.split_whitespace().next().unwrap_or_default().to_owned()),
        None => git::run(dir, &["log", "-1", "--format=%H", "--", path]),
    };
    match found {
        Ok(commit) if !commit.is_empty() && !commit.starts_with("0000000") => Ok(commit),
        Ok(_) => Err(Failure::invalid(format!("{target} has no commit yet: it is not committed"))),
        Err(e) => Err(Failure::invalid(format!("{target} is neither a commit nor a committed path: {e:#}"))),
    }
}

fn render_explain(v: &Value) -> String {
    let mut text = format!(
        "commit {}\n  {}\n  by {} on {}",
        v["commit"].as_str().unwrap_or("?"),
        v["subject"].as_str().unwrap_or(""),
        v["author"].as_str().unwrap_or("?"),
        v["date"].as_str().unwrap_or("?")
    );
    let sessions = v["sessions"].as_array().cloned().unwrap_or_default();
    if sessions.is_empty() {
        text.push_str(
            "\n\nno lanes session is recorded for this commit (made outside a lanes session, or before `lanes init`)",
        );
        return text;
    }
    for s in &sessions {
        text.push_str(&format!(
            "\n\nsession {}\n  worktree {}  branch {}  model {}",
            s["session"].as_str().unwrap_or("?"),
            s["worktree"].as_str().unwrap_or("?"),
            s["branch"].as_str().unwrap_or("?"),
            s["model"].as_str().unwrap_or("?")
        ));
        for c in s["checkpoints"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "\n  checkpoint {} {}  {} ({} files)",
                c["id"].as_str().unwrap_or("?"),
                c["at"].as_str().unwrap_or("?"),
                c["message"].as_str().unwrap_or(""),
                c["files"].as_array().map_or(0, Vec::len)
            ));
        }
        for e in s["claims"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "\n  {} {:<8} claim {} {}",
                e["at"].as_str().unwrap_or("?"),
                e["kind"].as_str().unwrap_or("?"),
                e["claim"],
                joined(&e["data"]["scopes"], " ")
            ));
        }
        let files = joined(&s["files"], ", ");
        if !files.is_empty() {
            text.push_str(&format!("\n  files touched: {files}"));
        }
    }
    text
}
