//! The landing queue: `land.queue`, `land.list` and `land.log` (DESIGN.md §11); the landing itself is
//! `daemon::land`.

use std::path::{Path, PathBuf};

use jsonrpsee::types::Params;
use lanes_proto::{ErrorCode, LandLogParams, LandLogReply, LandParams, LandReply, QueueReply, method};

use super::{Context, Methods, RpcResult, add, error, failure_to_rpc, parse, principal, reply};
use crate::daemon::land::{Request, resolve};
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
    let target = p.target.filter(|t| !t.trim().is_empty()).map(|t| absolute(&t, &root));
    let resolved = {
        let (common_dir, onto) = (cx.common_dir.clone(), onto.clone());
        tokio::task::spawn_blocking(move || resolve(&common_dir, &root, target.as_deref(), &onto)).await
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

/// A target that names a directory relative to the caller's worktree means that directory; anything else
/// is a branch name and stays as it is.
fn absolute(target: &str, root: &Path) -> String {
    let path = PathBuf::from(target);
    let candidate = if path.is_absolute() { path } else { root.join(&path) };
    if candidate.is_dir() { candidate.to_string_lossy().into_owned() } else { target.to_owned() }
}

fn log(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: LandLogParams = parse(&params)?;
    let (text, offset, state) = cx
        .lander
        .log(p.id, p.offset)
        .ok_or_else(|| error(ErrorCode::NotFound, format!("no entry {} in the landing queue", p.id), Vec::new()))?;
    reply(&LandLogReply { text, offset, state })
}
