//! `lanes worktrees` and `lanes gc`: every worktree of the repository with its owner, branch, dirty files,
//! commits ahead of and behind the base branch, claims, age and lock; and a clean-up that removes finished,
//! clean, merged worktrees (with their branches) and prunes stale ones, keeping anything with work in it
//! unless told `--force`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::cli::{Env, Failure};
use crate::git;
use crate::output::{Output, table};

/// One worktree as `git worktree list --porcelain` and a few more git calls describe it.
#[derive(Debug, Default)]
struct Tree {
    path: PathBuf,
    head: String,
    branch: Option<String>,
    locked: Option<String>,
    prunable: bool,
    main: bool,
}

fn list(dir: &Path) -> Result<Vec<Tree>, Failure> {
    let out = git::run(dir, &["worktree", "list", "--porcelain"]).map_err(Failure::from)?;
    let mut trees = Vec::new();
    for (i, block) in out.split("\n\n").enumerate() {
        let mut tree = Tree { main: i == 0, ..Tree::default() };
        for line in block.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "worktree" => tree.path = PathBuf::from(value),
                "HEAD" => tree.head = value.to_owned(),
                "branch" => tree.branch = Some(value.trim_start_matches("refs/heads/").to_owned()),
                "locked" => tree.locked = Some(if value.is_empty() { "locked".to_owned() } else { value.to_owned() }),
                "prunable" => tree.prunable = true,
                _ => {}
            }
        }
        if !tree.path.as_os_str().is_empty() {
            trees.push(tree);
        }
    }
    Ok(trees)
}

/// Facts about one worktree: dirty files, ahead/behind the base, age in seconds.
fn facts(tree: &Tree, base: Option<&str>) -> (Option<usize>, Option<(u64, u64)>, Option<u64>) {
    if tree.prunable || !tree.path.exists() {
        return (None, None, None);
    }
    let dirty =
        git::run(&tree.path, &["status", "--porcelain"]).ok().map(|s| s.lines().filter(|l| !l.is_empty()).count());
    let ahead_behind = base.filter(|b| tree.branch.as_deref() != Some(*b)).and_then(|base| {
        let counts = git::run(&tree.path, &["rev-list", "--left-right", "--count", &format!("HEAD...{base}")]).ok()?;
        let mut parts = counts.split_whitespace().filter_map(|n| n.parse::<u64>().ok());
        Some((parts.next()?, parts.next()?))
    });
    let age = std::fs::metadata(tree.path.join(".git"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|d| d.as_secs());
    (dirty, ahead_behind, age)
}

pub fn worktrees(env: &Env, out: &Output) -> Result<(), Failure> {
    let trees = list(&env.cwd)?;
    let base = trees.first().and_then(|t| t.branch.clone());
    let status = env.call(lanes_proto::method::STATUS, &json!({}))?;
    let rows: Vec<Value> = trees
        .iter()
        .map(|tree| {
            let (dirty, ahead_behind, age) = facts(tree, base.as_deref());
            let path = tree.path.to_string_lossy().into_owned();
            let owners: Vec<&str> = status["sessions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["state"] == "live" && s["worktree"] == path.as_str())
                .filter_map(|s| s["id"].as_str())
                .collect();
            let claims =
                status["claims"].as_array().into_iter().flatten().filter(|c| c["worktree"] == path.as_str()).count();
            json!({
                "path": path, "main": tree.main, "branch": tree.branch, "head": tree.head,
                "owners": owners, "dirty_files": dirty, "claims": claims,
                "ahead": ahead_behind.map(|(a, _)| a), "behind": ahead_behind.map(|(_, b)| b),
                "age_secs": age, "locked": tree.locked, "prunable": tree.prunable,
            })
        })
        .collect();
    out.print(&json!({ "base": base, "worktrees": rows }), |v| {
        let lines: Vec<Vec<String>> = v["worktrees"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| {
                let n = |key: &str| w[key].as_u64().map_or("-".to_owned(), |n| n.to_string());
                vec![
                    w["path"].as_str().unwrap_or("?").to_owned(),
                    w["branch"].as_str().unwrap_or("(detached)").to_owned(),
                    crate::output::joined(&w["owners"], ",").chars().take(40).collect(),
                    n("dirty_files"),
                    format!("{}/{}", n("ahead"), n("behind")),
                    n("claims"),
                    w["age_secs"]
                        .as_u64()
                        .map_or("-".to_owned(), |s| lanes_core::human_duration(std::time::Duration::from_secs(s))),
                    w["locked"].as_str().map_or_else(
                        || if w["prunable"] == true { "prunable".to_owned() } else { "-".to_owned() },
                        str::to_owned,
                    ),
                ]
            })
            .collect();
        table(&["WORKTREE", "BRANCH", "OWNER", "DIRTY", "AHEAD/BEHIND", "CLAIMS", "AGE", "LOCK"], &lines)
    });
    Ok(())
}

pub fn gc(env: &Env, out: &Output, force: bool, dry_run: bool) -> Result<(), Failure> {
    let trees = list(&env.cwd)?;
    let base = trees.first().and_then(|t| t.branch.clone());
    let status = env.call(lanes_proto::method::STATUS, &json!({}))?;
    let main_dir = trees.first().map(|t| t.path.clone()).unwrap_or_else(|| env.location.worktree.clone());
    let mut report = Vec::new();
    for tree in trees.iter().filter(|t| !t.main) {
        let path = tree.path.to_string_lossy().into_owned();
        let in_use = status["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["state"] == "live" && s["worktree"] == path.as_str())
            || status["claims"].as_array().into_iter().flatten().any(|c| c["worktree"] == path.as_str());
        let (dirty, ahead_behind, _) = facts(tree, base.as_deref());
        let (action, why) = if tree.prunable || !tree.path.exists() {
            ("pruned", "its directory is gone".to_owned())
        } else if in_use {
            ("kept", "a live session works there or holds claims".to_owned())
        } else if dirty.unwrap_or(0) > 0 && !force {
            ("kept", format!("{} uncommitted change(s); --force removes them", dirty.unwrap_or(0)))
        } else if ahead_behind.is_some_and(|(ahead, _)| ahead > 0) && !force {
            (
                "kept",
                format!(
                    "{} commit(s) not merged into {}; --force deletes them",
                    ahead_behind.map_or(0, |a| a.0),
                    base.as_deref().unwrap_or("the base")
                ),
            )
        } else {
            ("removed", if force { "--force".to_owned() } else { "finished, clean and merged".to_owned() })
        };
        if !dry_run {
            match action {
                "pruned" => {
                    if tree.locked.is_some() {
                        let _ = git::run(&main_dir, &["worktree", "unlock", &path]);
                    }
                    git::run(&main_dir, &["worktree", "prune"]).map_err(Failure::from)?;
                }
                "removed" => {
                    if tree.locked.is_some() {
                        let _ = git::run(&main_dir, &["worktree", "unlock", &path]);
                    }
                    let mut args = vec!["worktree", "remove"];
                    if force {
                        args.push("--force");
                    }
                    args.push(&path);
                    git::run(&main_dir, &args).map_err(Failure::from)?;
                    if let Some(branch) = &tree.branch {
                        let _ = git::run(&main_dir, &["branch", if force { "-D" } else { "-d" }, branch]);
                    }
                }
                _ => {}
            }
        }
        report.push(json!({"path": path, "branch": tree.branch, "action": action, "why": why}));
    }
    out.print(&json!({ "dry_run": dry_run, "worktrees": report }), |v| {
        let lines: Vec<String> = v["worktrees"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| {
                format!(
                    "{:<8} {}  ({})",
                    w["action"].as_str().unwrap_or("?"),
                    w["path"].as_str().unwrap_or("?"),
                    w["why"].as_str().unwrap_or("")
                )
            })
            .collect();
        if lines.is_empty() { "no linked worktrees".to_owned() } else { lines.join("\n") }
    });
    Ok(())
}
