//! `lanes worktrees` and `lanes gc`: every worktree of the repository with its owner, branch, dirty files,
//! commits ahead of and behind the base branch, claims, age and lock; and a clean-up that removes only the
//! worktrees lanes made for agents that have ended, when clean and merged (with the branch lanes made), and
//! prunes ones whose directory is gone. A person's worktree, the main one, and anything with work in it
//! (unless told `--force`) are kept.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lanes_proto::WorktreeListReply;
use serde_json::{Value, json};

use crate::cli::output::{Output, table};
use crate::cli::{Env, Failure};
use crate::git;

/// One worktree as `git worktree list --porcelain` and a few more git calls describe it.
#[derive(Debug, Default)]
struct Tree {
    path: PathBuf,
    head: String,
    branch: Option<String>,
    locked: Option<String>,
    prunable: bool,
    main: bool,
    /// The repository itself of a bare clone, listed first: not a checkout.
    bare: bool,
}

/// The branch merged work reaches: the repository's base branch, else the main worktree's.
fn base_of(env: &Env, trees: &[Tree]) -> Option<String> {
    git::base_branch(&env.cwd).or_else(|| trees.iter().find(|t| !t.bare).and_then(|t| t.branch.clone()))
}

/// Whether two paths name the same directory (either may be a symlinked spelling).
fn same_path(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
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
                "bare" => tree.bare = true,
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
    let base = base_of(env, &trees);
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
            let here = || status["claims"].as_array().into_iter().flatten().filter(|c| c["worktree"] == path.as_str());
            let claims = here().count();
            let pending = here().filter(|c| c["pending"] == true).count();
            json!({
                "path": path, "main": tree.main, "branch": tree.branch, "head": tree.head,
                "owners": owners, "dirty_files": dirty, "claims": claims, "pending_claims": pending,
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
                    crate::cli::output::joined(&w["owners"], ",").chars().take(40).collect(),
                    n("dirty_files"),
                    format!("{}/{}", n("ahead"), n("behind")),
                    match w["pending_claims"].as_u64() {
                        Some(pending) if pending > 0 => format!("{} ({pending} pending)", n("claims")),
                        _ => n("claims"),
                    },
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

/// What gc does with one worktree, and why.
enum Verdict {
    Keep(String),
    Prune,
    Remove,
}

pub fn gc(env: &Env, out: &Output, force: bool, dry_run: bool) -> Result<(), Failure> {
    let trees = list(&env.cwd)?;
    let base = base_of(env, &trees);
    let status = env.call(lanes_proto::method::STATUS, &json!({}))?;
    let made: WorktreeListReply = serde_json::from_value(env.call(lanes_proto::method::WORKTREE_LIST, &json!({}))?)
        .map_err(|e| Failure::internal(format!("unexpected worktree.list reply: {e}")))?;
    let main_dir = trees.first().map(|t| t.path.clone()).unwrap_or_else(|| env.location.worktree.clone());
    let live = |session: &str| {
        status["sessions"].as_array().into_iter().flatten().any(|s| s["state"] == "live" && s["id"] == session)
    };
    let mut report = Vec::new();
    for tree in trees.iter().filter(|t| !t.main && !t.bare) {
        let path = tree.path.to_string_lossy().into_owned();
        let record = made.worktrees.iter().find(|m| same_path(Path::new(&m.path), &tree.path));
        let in_use = status["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["state"] == "live" && s["worktree"] == path.as_str())
            || status["claims"].as_array().into_iter().flatten().any(|c| c["worktree"] == path.as_str());
        let verdict = if tree.prunable || !tree.path.exists() {
            match (&tree.locked, record) {
                (Some(reason), None) => Verdict::Keep(format!(
                    "its directory is gone, but it is locked ({reason}); `git worktree unlock` it to let gc prune it"
                )),
                _ => Verdict::Prune,
            }
        } else if let Some(record) = record {
            let (dirty, ahead_behind, _) = facts(tree, base.as_deref());
            if live(&record.session) {
                Verdict::Keep(format!("its session {} is live", record.session))
            } else if in_use {
                Verdict::Keep("a live session works there or holds claims".to_owned())
            } else if dirty.unwrap_or(0) > 0 && !force {
                Verdict::Keep(format!("{} uncommitted change(s); --force removes them", dirty.unwrap_or(0)))
            } else if ahead_behind.is_none_or(|(ahead, _)| ahead > 0) && !force {
                Verdict::Keep(match ahead_behind {
                    Some((ahead, _)) => format!(
                        "{ahead} commit(s) not merged into {}; --force deletes them",
                        base.as_deref().unwrap_or("the base")
                    ),
                    None => "lanes cannot tell whether its commits are merged (no base branch)".to_owned(),
                })
            } else {
                Verdict::Remove
            }
        } else {
            Verdict::Keep("not made by lanes for an agent (a person's or a team's worktree)".to_owned())
        };
        let (action, why) = match verdict {
            Verdict::Keep(why) => ("kept", why),
            Verdict::Prune => (if dry_run { "would prune" } else { "pruned" }, "its directory is gone".to_owned()),
            Verdict::Remove => (
                if dry_run { "would remove" } else { "removed" },
                if force { "--force".to_owned() } else { "its agent ended; clean and merged".to_owned() },
            ),
        };
        if !dry_run && action != "kept" {
            if tree.locked.is_some() {
                let _ = git::run(&main_dir, &["worktree", "unlock", &path]);
            }
            if action == "pruned" {
                git::forget_worktree(&env.location.common_dir, Path::new(&path));
            } else {
                let mut args = vec!["worktree", "remove"];
                if force {
                    args.push("--force");
                }
                args.push(&path);
                git::run(&main_dir, &args).map_err(Failure::from)?;
            }
            // Only the branch lanes made for the agent goes, and never the base or one checked out elsewhere.
            if let Some(branch) = record.map(|r| r.branch.as_str())
                && tree.branch.as_deref() == Some(branch)
                && base.as_deref() != Some(branch)
                && !trees.iter().any(|t| t.path != tree.path && t.branch.as_deref() == Some(branch))
            {
                let _ = git::run(&main_dir, &["branch", if force { "-D" } else { "-d" }, branch]);
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
                    "{:<12} {}  ({})",
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
