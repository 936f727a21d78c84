//! Worktrees for subagents: lanes answers Claude Code's WorktreeCreate hook by making the worktree itself
//! (serialized, at a configurable place, on a `lanes/<session>/<agent>` branch), and owns the clean-up: when
//! the subagent or its session finishes, a worktree with no changes and no new commits is removed with its
//! branch, and one with work is kept for `lanes worktrees` and `lanes gc`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonrpsee::types::Params;
use lanes_core::AgentWorktree;
use lanes_proto::repo::RepoLocation;
use lanes_proto::{
    AgentWorktreeView, ErrorCode, WorktreeCreateParams, WorktreeCreateReply, WorktreeFinishParams, WorktreeListReply,
    method,
};

use super::{Context, Methods, RpcResult, add, error, parse, principal, reply};
use crate::config::Config;
use crate::daemon::state::{Answer, Command};
use crate::git;

pub(super) fn register(module: &mut Methods) {
    add(module, method::WORKTREE_CREATE, |p, cx| async move { create(p, &cx).await });
    add(module, method::WORKTREE_FINISH, |p, cx| async move { finish(p, &cx).await });
    add(module, method::WORKTREE_LIST, |_, cx| async move { list(&cx).await });
    add(module, method::WORKTREE_SCAN, |p, cx| async move { crate::daemon::work::shell_scan(p, &cx).await });
}

/// Where agent worktrees go and how their branches are named (`[worktrees]`).
pub struct Naming {
    /// Relative to the main worktree.
    dir: String,
    /// With `{session}` and `{agent}`.
    branch: String,
}

impl From<&Config> for Naming {
    fn from(config: &Config) -> Naming {
        Naming { dir: config.agent_worktree_dir.clone(), branch: config.agent_branch.clone() }
    }
}

async fn create(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: WorktreeCreateParams = parse(&params)?;
    let session = principal(&p.session)?.session;
    let agent = p.name.strip_prefix("agent-").unwrap_or(&p.name).to_owned();
    if agent.is_empty()
        || agent.starts_with('.')
        || !agent.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(error(ErrorCode::InvalidArgument, format!("invalid worktree name {:?}", p.name), Vec::new()));
    }
    let main = cx.common_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| cx.common_dir.clone());
    let path = main.join(&cx.agent_worktrees.dir).join(&p.name);
    let short: String = session.chars().take(8).collect();
    let branch = cx.agent_worktrees.branch.replace("{session}", &short).replace("{agent}", &agent);
    let cwd = PathBuf::from(&p.cwd);
    let exclude =
        (cx.common_dir.join("info").join("exclude"), format!("/{}/", cx.agent_worktrees.dir.trim_matches('/')));
    let made = {
        let _serialized = cx.git.lock().await;
        let (path, branch) = (path.clone(), branch.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            let base = RepoLocation::discover(&cwd)?
                .head_commit()
                .ok_or_else(|| anyhow::anyhow!("the session's worktree has no commit yet"))?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            exclude_locally(&exclude.0, &exclude.1)?;
            git::change_worktrees(&main, &["worktree", "add", "-q", "-b", &branch, &path.to_string_lossy(), &base])?;
            Ok(base)
        })
        .await
    };
    let base = match made {
        Ok(Ok(base)) => base,
        Ok(Err(e)) => {
            return Err(error(ErrorCode::Internal, format!("could not create the worktree: {e:#}"), Vec::new()));
        }
        Err(e) => return Err(error(ErrorCode::Internal, format!("could not create the worktree: {e}"), Vec::new())),
    };
    let path = path.to_string_lossy().into_owned();
    let record = AgentWorktree { session, agent, path: path.clone(), branch: branch.clone(), base };
    cx.ask(Command::AddAgentWorktree(record)).await?;
    reply(&WorktreeCreateReply { path, branch })
}

/// Every worktree lanes made for a subagent and still knows of (what `lanes gc` may remove).
async fn list(cx: &Context) -> RpcResult {
    let Answer::AgentWorktrees(trees) = cx.ask(Command::AgentWorktrees { session: None, agent: None }).await? else {
        unreachable!("agent worktrees answers AgentWorktrees")
    };
    let worktrees = trees
        .into_iter()
        .map(|t| AgentWorktreeView { path: t.path, session: t.session, agent: t.agent, branch: t.branch, base: t.base })
        .collect();
    reply(&WorktreeListReply { worktrees })
}

/// Schedules the clean-up and answers at once: SessionEnd has 1.5 s, and git may take longer.
async fn finish(params: Params<'static>, cx: &Arc<Context>) -> RpcResult {
    let p: WorktreeFinishParams = parse(&params)?;
    let session = principal(&p.session)?.session;
    let Answer::AgentWorktrees(trees) =
        cx.ask(Command::AgentWorktrees { session: Some(session), agent: p.agent }).await?
    else {
        unreachable!("agent worktrees answers AgentWorktrees")
    };
    let count = trees.len();
    let cx = Arc::clone(cx);
    tokio::spawn(async move {
        for tree in trees {
            let removed = {
                let _serialized = cx.git.lock().await;
                let common_dir = cx.common_dir.clone();
                let tree = tree.clone();
                tokio::task::spawn_blocking(move || remove_if_unused(&common_dir, &tree)).await.unwrap_or(false)
            };
            if removed {
                let _ = cx.ask(Command::RemoveAgentWorktree { path: tree.path.clone() }).await;
            }
        }
    });
    reply(&serde_json::json!({ "finishing": count }))
}

/// Keeps the agent worktrees out of the main checkout's `git status` and checkpoints, through the
/// repository's own `info/exclude` (never the user's `.gitignore`).
fn exclude_locally(exclude: &Path, pattern: &str) -> std::io::Result<()> {
    let current = std::fs::read_to_string(exclude).unwrap_or_default();
    if current.lines().any(|line| line.trim() == pattern) {
        return Ok(());
    }
    if let Some(dir) = exclude.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let separator = if current.is_empty() || current.ends_with('\n') { "" } else { "\n" };
    std::fs::write(exclude, format!("{current}{separator}# lanes: worktrees made for subagents\n{pattern}\n"))
}

/// Removes a subagent worktree and its branch when it holds no uncommitted change and no new commit.
fn remove_if_unused(common_dir: &Path, tree: &AgentWorktree) -> bool {
    let path = Path::new(&tree.path);
    if !path.exists() {
        git::forget_worktree(common_dir, path);
        return true;
    }
    let clean = git::run(path, &["status", "--porcelain"]).is_ok_and(|s| s.is_empty());
    let unchanged = git::run(path, &["rev-parse", "HEAD"]).is_ok_and(|head| head == tree.base);
    if !(clean && unchanged) {
        return false;
    }
    git::remove_worktree_and_branch(common_dir, &tree.path, &tree.branch)
}
