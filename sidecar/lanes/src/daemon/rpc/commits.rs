//! What the git hooks ask (which sessions a commit names; record a commit or its rewrite) and what
//! `lanes explain` shows of a commit.

use jsonrpsee::types::Params;
use lanes_core::Timestamp;
use lanes_proto::{
    ExplainParams, ExplainReply, RecordParams, SessionStory, StampParams, StampReply, StampView, method,
};

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::checkpoints::view;
use super::sidecar::event_view;
use super::{Context, Methods, RpcResult, add, parse, principal, reply};
use crate::config::{Config, Guard};
use crate::daemon::state::{Answer, Command};

pub(super) fn register(module: &mut Methods) {
    add(module, method::COMMIT_STAMP, |p, cx| async move { stamp(p, &cx).await });
    add(module, method::COMMIT_RECORD, |p, cx| async move { record(p, &cx).await });
    add(module, method::COMMIT_EXPLAIN, |p, cx| async move { explain(p, &cx).await });
    add(module, method::COMMIT_CHECK, |p, cx| async move { check(p, &cx).await });
}

/// What the commits domain keeps: the guard's policy, and what each worktree's last prepare-commit-msg was
/// told, for its post-commit.
pub struct CommitState {
    /// `[git] guard`.
    guard: Guard,
    stamps: Mutex<HashMap<String, (Vec<StampView>, Instant)>>,
}

impl From<&Config> for CommitState {
    fn from(config: &Config) -> CommitState {
        CommitState { guard: config.git_guard, stamps: Mutex::new(HashMap::new()) }
    }
}

impl CommitState {
    /// The stamps waiting for their post-commit, by worktree.
    fn stamps(&self) -> MutexGuard<'_, HashMap<String, (Vec<StampView>, Instant)>> {
        self.stamps.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long a stamp waits for its commit's post-commit.
const PENDING_STAMP_LIFETIME: Duration = Duration::from_secs(600);

async fn stamp(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: StampParams = parse(&params)?;
    let session = match p.session.filter(|s| !s.is_empty()) {
        Some(s) => Some(principal(&s)?.session),
        None => None,
    };
    let command = Command::Stamp { session, files: p.files, since: Timestamp(p.since_ms) };
    let Answer::Stamp(found) = cx.ask(command).await? else { unreachable!("stamp answers Stamp") };
    let sessions: Vec<StampView> =
        found.into_iter().map(|(session, checkpoint)| StampView { session, checkpoint }).collect();
    if let Some(worktree) = p.worktree {
        cx.commits.stamps().insert(worktree, (sessions.clone(), Instant::now()));
    }
    reply(&StampReply { sessions })
}

async fn record(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: RecordParams = parse(&params)?;
    let (mut sessions, mut checkpoint) = (p.sessions, p.checkpoint);
    // A post-commit names no sessions: it takes what its prepare-commit-msg was told, if that was just now.
    if sessions.is_empty()
        && let Some((stamped, at)) = p.worktree.and_then(|w| cx.commits.stamps().remove(&w))
        && at.elapsed() < PENDING_STAMP_LIFETIME
    {
        checkpoint = stamped.iter().find_map(|s| s.checkpoint.clone());
        sessions = stamped.into_iter().map(|s| s.session).collect();
    }
    let command = Command::RecordCommit { commit: p.commit, sessions, checkpoint, rewritten_from: p.rewritten_from };
    cx.ask(command).await?;
    // A commit on the base lands work of every worktree; one on a branch moves that branch's pending paths.
    cx.scanner.all_soon();
    reply(&serde_json::json!({}))
}

async fn explain(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: ExplainParams = parse(&params)?;
    let Answer::Explained(stories) =
        cx.ask(Command::Explain { commit: p.commit.clone(), sessions: p.sessions }).await?
    else {
        unreachable!("explain answers Explained")
    };
    let sessions = stories
        .into_iter()
        .map(|story| {
            let claims = story
                .events
                .iter()
                .filter(|e| matches!(e.kind.as_str(), "grant" | "release" | "expire" | "handoff"))
                .cloned()
                .map(event_view)
                .collect();
            let mut files: Vec<String> = story
                .events
                .iter()
                .filter(|e| e.kind == "touch")
                .flat_map(|e| e.data["files"].as_array().cloned().unwrap_or_default())
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect();
            files.sort();
            files.dedup();
            SessionStory {
                session: story.session,
                worktree: story.info.worktree,
                branch: story.info.branch,
                model: story.info.model,
                checkpoints: story.checkpoints.iter().map(view).collect(),
                claims,
                files,
            }
        })
        .collect();
    reply(&ExplainReply { commit: p.commit, sessions })
}

/// `commit.check`, the pre-commit guard (DESIGN.md §8): the staged paths inside another principal's live
/// claim or pending work. Without a session (a person committing), claims made in the committing worktree are
/// its own work, not another's; a session's commit meets every other principal's claims.
async fn check(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: lanes_proto::CommitCheckParams = parse(&params)?;
    let guard = match cx.commits.guard {
        Guard::Refuse => "refuse",
        Guard::Warn => "warn",
        Guard::Off => "off",
    };
    let (root, worktree) = cx.worktree(&p.worktree).map_err(super::failure_to_rpc)?;
    if cx.commits.guard == Guard::Off || p.files.is_empty() {
        return reply(&lanes_proto::CommitCheckReply { conflicts: Vec::new(), guard: guard.to_owned() });
    }
    let who = match &p.session {
        Some(session) => principal(session)?,
        None => lanes_core::Principal { session: "git commit".to_owned(), agent: None },
    };
    let scopes = super::resolve_all(&p.files.iter().take(lanes_core::MAX_SCOPES).cloned().collect::<Vec<_>>(), &root)?;
    let Answer::Holders(holders) = cx.ask(Command::Check { who, worktree: worktree.clone(), scopes }).await? else {
        unreachable!("check answers Holders")
    };
    let now = crate::daemon::state::now();
    let conflicts = holders
        .iter()
        .filter(|c| p.session.is_some() || c.worktree.root != worktree.root)
        .map(|c| super::conflict_view(c, now))
        .collect();
    reply(&lanes_proto::CommitCheckReply { conflicts, guard: guard.to_owned() })
}
