//! Sessions: `session.start`, `session.activity` (every hook's step: renewals, inbox, the branch guard, the
//! turn's checkpoint) and `session.end`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use jsonrpsee::types::Params;
use lanes_core::SessionInfo;
use lanes_proto::{ActivityParams, ActivityReply, PeerView, SessionEndReply, SessionParams, SessionStartReply, method};

use super::messages::message_view;
use super::{Context, Methods, RpcResult, add, checkpoints, claim_view, failure_to_rpc, parse, principal, reply};
use crate::daemon::state::{Answer, Command};

pub(super) fn register(module: &mut Methods) {
    add(module, method::SESSION_START, |p, cx| async move { session_start(p, &cx).await });
    add(module, method::SESSION_ACTIVITY, |p, cx| async move { activity(p, &cx).await });
    add(module, method::SESSION_END, |p, cx| async move { session_end(p, &cx).await });
}

/// The branch guard: the HEAD each principal last saw in each worktree, and whether it said it would move
/// it itself.
#[derive(Default)]
pub struct BranchGuard {
    heads: Mutex<HashMap<(String, String), (String, bool)>>,
}

impl BranchGuard {
    /// Records the HEAD a principal sees in a worktree and says when it moved since its last look without
    /// the principal having announced that it would move it.
    fn saw(&self, principal: &str, worktree: &str, head: &str, moving: bool) -> Option<String> {
        let mut heads = self.heads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if heads.len() > 10_000 {
            heads.clear();
        }
        let key = (principal.to_owned(), worktree.to_owned());
        let previous = heads.insert(key, (head.to_owned(), moving));
        match previous {
            Some((seen, expected)) if seen != head && !expected => Some(format!(
                "lanes: HEAD of your worktree {worktree} moved from {seen} to {head} since your last step, and not by \
                 you: another session or a person switched it. Check `git status` before you go on."
            )),
            _ => None,
        }
    }
}

async fn session_start(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: SessionParams = parse(&params)?;
    let session = principal(&p.session)?.session;
    let worktree = match &p.worktree {
        Some(path) => Some(cx.worktree(path).map_err(failure_to_rpc)?.1.root),
        None => None,
    };
    let info = SessionInfo { worktree, branch: p.branch, model: p.model, source: p.source, client: p.client };
    let Answer::Started(start) = cx.ask(Command::SessionStart { session: session.clone(), info }).await? else {
        unreachable!("session start answers Started")
    };
    let others = start
        .others
        .iter()
        .map(|(id, s, claims)| PeerView {
            id: id.clone(),
            worktree: s.info.worktree.clone(),
            branch: cx.branch_of(&s.info),
            model: s.info.model.clone(),
            claims: claims.iter().map(|c| claim_view(c, start.now)).collect(),
        })
        .collect();
    reply(&SessionStartReply {
        session,
        others,
        own_claims: start.own_claims.iter().map(|c| claim_view(c, start.now)).collect(),
        inbox: start.inbox.iter().map(message_view).collect(),
        pending_work: start.pending.iter().map(|c| claim_view(c, start.now)).collect(),
        warning: cx.sidecar.data_lost.clone(),
    })
}

async fn activity(params: Params<'static>, cx: &Arc<Context>) -> RpcResult {
    let p: ActivityParams = parse(&params)?;
    let who = principal(&p.session)?;
    let root = match &p.worktree {
        Some(path) => Some(cx.worktree(path).map_err(failure_to_rpc)?.0),
        None => None,
    };
    let files = p
        .files
        .iter()
        .take(lanes_core::MAX_SCOPES)
        .map(|f| match &root {
            Some(root) => {
                Path::new(f).strip_prefix(root).map_or_else(|_| f.clone(), |r| r.to_string_lossy().into_owned())
            }
            None => f.clone(),
        })
        .collect();
    let session = who.session.clone();
    let worktree = root.as_ref().map(|r| r.to_string_lossy().into_owned());
    let head_moved = match (&worktree, &p.head) {
        (Some(worktree), Some(head)) => cx.branch_guard.saw(&who.to_string(), worktree, head, p.moving_head),
        _ => None,
    };
    if let Some(root) = &root {
        cx.scanner.soon(root);
    }
    let command = Command::Activity { who, worktree, files, turn: p.turn, deliver: p.deliver, prompt: p.prompt };
    let Answer::Activity { renewed, inbox, neighbours, bound } = cx.ask(command).await? else {
        unreachable!("activity answers Activity")
    };
    if p.turn
        && let Some(root) = root
    {
        // The turn's checkpoint is taken in the background: the Stop hook does not wait for git.
        let cx = Arc::clone(cx);
        tokio::spawn(async move {
            if let Err(e) = checkpoints::take(&cx, &session, &root, "end of turn").await {
                tracing::warn!("checkpoint of {} for {session} failed: {}", root.display(), e.message());
            }
        });
    }
    let inbox = inbox.iter().map(message_view).collect();
    reply(&ActivityReply { renewed, inbox, head_moved, neighbours, bound_worktree: bound })
}

async fn session_end(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: SessionParams = parse(&params)?;
    let who = principal(&p.session)?;
    // What the holder wrote a moment ago must be seen before its claims end, or it would not stay claimed.
    let Answer::Claims(held) = cx.ask(Command::HeldBy { who: who.clone() }).await? else {
        unreachable!("held by answers Claims")
    };
    let mut roots: Vec<&str> = held.iter().map(|c| c.worktree.root.as_str()).collect();
    roots.sort_unstable();
    roots.dedup();
    for root in roots {
        crate::daemon::work::scan_now(cx, Path::new(root)).await;
    }
    let command = match who.agent {
        Some(_) => Command::PrincipalEnd { who },
        None => Command::SessionEnd { session: who.session },
    };
    // What the session leaves is free on other machines as soon as this is answered, as for `claim.release`.
    let (ids, hub) = cx.release_everywhere(command).await?;
    reply(&SessionEndReply { released: ids.into_iter().map(|id| id.0).collect(), hub })
}
