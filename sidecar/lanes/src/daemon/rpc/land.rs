//! The landing queue: `land.queue`, `land.list` and `land.log` (DESIGN.md §11); the landing itself is
//! `daemon::land`.

use std::path::{Path, PathBuf};

use jsonrpsee::types::Params;
use lanes_proto::{ErrorCode, LandLogParams, LandLogReply, LandParams, LandReply, QueueReply, method};

use super::{Context, Methods, RpcResult, add, error, failure_to_rpc, parse, principal, reply};
use crate::daemon::land::{Request, Target, resolve};
use crate::daemon::state::Command;

pub(super) fn register(module: &mut Methods) {
    add(module, method::LAND_QUEUE, |p, cx| async move { queue(p, &cx).await });
    add(module, method::LAND_LIST, |_, cx| async move { reply(&QueueReply { entries: cx.lander.list() }) });
    add(module, method::LAND_LOG, |p, cx| async move { log(p, &cx) });
}

async fn queue(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: LandParams = parse(&params)?;
    let owner = principal(&p.session)?.session;
    let (root, _) = cx.worktree(&p.worktree).map_err(failure_to_rpc)?;
    let invalid = |message: String| error(ErrorCode::InvalidArgument, message, Vec::new());
    let onto = match p.onto.filter(|o| !o.trim().is_empty()) {
        Some(onto) => onto,
        None => cx.lander.default_base(&root).ok_or_else(|| {
            invalid("this repository has no base branch (no origin/HEAD, main or master): pass --onto".to_owned())
        })?,
    };
    let test = p.test.or_else(|| cx.lander.default_test()).filter(|t| !t.trim().is_empty());
    let target = match p.target.filter(|t| !t.trim().is_empty()) {
        None => Target::Worktree(root),
        Some(t) => match directory(&t, &root) {
            Some(dir) => Target::Worktree(cx.worktree(&dir).map_err(failure_to_rpc)?.0),
            None => Target::Branch(t),
        },
    };
    let resolved = {
        let (common_dir, onto) = (cx.common_dir.clone(), onto.clone());
        tokio::task::spawn_blocking(move || resolve(&common_dir, target, &onto)).await
    };
    let (branch, worktree) = match resolved {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return Err(invalid(format!("{e:#}"))),
        Err(e) => return Err(error(ErrorCode::Internal, format!("the landing check failed: {e}"), Vec::new())),
    };
    let (entry, position) = cx
        .lander
        .enqueue(Request { owner: owner.clone(), branch: branch.clone(), worktree, onto, test })
        .map_err(|e| error(ErrorCode::Internal, format!("{e:#}"), Vec::new()))?;
    let detail = format!("entry {}, position {}", entry.id, position.unwrap_or(0));
    let _ = cx.ask(Command::RecordLanding { owner, branch, outcome: "queued".to_owned(), detail }).await;
    reply(&LandReply { entry, position })
}

/// The directory a target names (relative to the caller's worktree), if it names one; else it is a branch.
fn directory(target: &str, root: &Path) -> Option<String> {
    let path = PathBuf::from(target);
    let candidate = if path.is_absolute() { path } else { root.join(&path) };
    candidate.is_dir().then(|| candidate.to_string_lossy().into_owned())
}

fn log(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: LandLogParams = parse(&params)?;
    let (text, offset, state) = cx
        .lander
        .log(p.id, p.offset)
        .ok_or_else(|| error(ErrorCode::NotFound, format!("no entry {} in the landing queue", p.id), Vec::new()))?;
    reply(&LandLogReply { text, offset, state })
}
