//! Checkpoint and rewind requests: the git work runs on a blocking thread (serialized by the context's git
//! lock), the metadata goes through the state owner like every other change.

use std::path::Path;

use jsonrpsee::types::{ErrorObjectOwned, Params};
use lanes_core::{Checkpoint, Principal, Scope};
use lanes_proto::{
    ChangeView, CheckpointParams, CheckpointReply, CheckpointView, CheckpointsParams, CheckpointsReply, ErrorCode,
    RewindParams, RewindReply, method,
};

use super::{Context, Methods, RpcResult, add, conflict_view, error, failure_to_rpc, parse, principal, reply, rfc3339};
use crate::daemon::state::{Answer, Command, now};
use crate::git;

pub(super) fn register(module: &mut Methods) {
    add(module, method::CHECKPOINT_CREATE, |p, cx| async move { create(p, &cx).await });
    add(module, method::CHECKPOINT_LIST, |p, cx| async move { list(p, &cx).await });
    add(module, method::CHECKPOINT_REWIND, |p, cx| async move { rewind(p, &cx).await });
}

async fn create(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: CheckpointParams = parse(&params)?;
    let session = principal(&p.session)?.session;
    let (root, _) = cx.worktree(&p.worktree).map_err(failure_to_rpc)?;
    let made = take(cx, &session, &root, p.message.as_deref().unwrap_or("checkpoint")).await?;
    reply(&CheckpointReply { checkpoint: made.as_ref().map(view) })
}

async fn list(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: CheckpointsParams = if params.as_str().is_some() { parse(&params)? } else { CheckpointsParams::default() };
    let limit = p.limit.unwrap_or(50).clamp(1, 10_000);
    let Answer::Checkpoints(found) = cx.ask(Command::Checkpoints { session: p.session, limit }).await? else {
        unreachable!("checkpoints answers Checkpoints")
    };
    reply(&CheckpointsReply { checkpoints: found.iter().map(view).collect() })
}

async fn rewind(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: RewindParams = parse(&params)?;
    let who = principal(&p.session)?;
    let (root, worktree) = cx.worktree(&p.worktree).map_err(failure_to_rpc)?;
    if p.checkpoint.trim().is_empty() {
        let message = "give the checkpoint to rewind to: `lanes checkpoints` lists them".to_owned();
        return Err(error(ErrorCode::InvalidArgument, message, Vec::new()));
    }
    let Answer::Checkpoints(found) = cx.ask(Command::FindCheckpoint { prefix: p.checkpoint.clone() }).await? else {
        unreachable!("find answers Checkpoints")
    };
    let target = match found.as_slice() {
        [checkpoint] => checkpoint.commit.clone(),
        [_, _, ..] => {
            let candidates: Vec<String> =
                found.iter().map(|c| format!("{} ({}, {}: {})", c.id, c.session, rfc3339(c.at), c.message)).collect();
            let message = format!(
                "{:?} matches {} checkpoints; give more of the id: {}",
                p.checkpoint,
                found.len(),
                candidates.join("; ")
            );
            return Err(error(ErrorCode::InvalidArgument, message, Vec::new()));
        }
        [] => blocking(cx, {
            let (root, id) = (root.clone(), p.checkpoint.clone());
            move || git::resolve_commit(&root, &id)
        })
        .await
        .map_err(|e| error(ErrorCode::NotFound, e.message().to_owned(), Vec::new()))?,
    };
    let index = git::private_index(&cx.common_dir, &who.session);
    let now_tree = blocking(cx, {
        let (root, index) = (root.clone(), index.clone());
        move || git::snapshot_tree(&root, &index)
    })
    .await?;
    let plan = blocking(cx, {
        let (root, target) = (root.clone(), target.clone());
        move || git::rewind_plan(&root, &now_tree, &target)
    })
    .await?;
    // Paths as claims take them (relative to the caller's directory, or absolute), inside the repository.
    let wanted: Vec<String> = super::resolve_all(&p.paths, &root)?.iter().map(ToString::to_string).collect();
    let changes: Vec<git::Change> = plan.into_iter().filter(|c| selected(&c.path, &wanted)).collect();
    for path in wanted.iter().filter(|w| !changes.iter().any(|c| selected(&c.path, std::slice::from_ref(*w)))) {
        let known = blocking(cx, {
            let (root, spec) = (root.clone(), format!("{target}:{path}"));
            move || Ok(git::run(&root, &["cat-file", "-e", &spec]).is_ok())
        })
        .await?;
        if !known && path != "." {
            return Err(error(
                ErrorCode::InvalidArgument,
                format!(
                    "{path} is not in checkpoint {}: `lanes checkpoints` lists what each one holds",
                    short(&target)
                ),
                Vec::new(),
            ));
        }
    }
    let scopes: Vec<Scope> = changes.iter().filter_map(|c| Scope::parse(&c.path).ok()).collect();
    let holders = if scopes.is_empty() {
        Vec::new()
    } else {
        let Answer::Holders(holders) = cx.ask(Command::Check { who: who.clone(), worktree, scopes }).await? else {
            unreachable!("check answers Holders")
        };
        holders
    };
    if !p.force && !p.dry_run && !holders.is_empty() {
        let now = now();
        let names: Vec<String> = holders.iter().map(|h| format!("{} ({})", h.scope, h.holder)).collect();
        return Err(error(
            ErrorCode::Conflict,
            format!(
                "the rewind would overwrite files other live sessions hold: {}; ask them, narrow it with --paths, or pass --force",
                names.join(", ")
            ),
            holders.iter().map(|h| conflict_view(h, now)).collect(),
        ));
    }
    let views = changes
        .iter()
        .map(|c| ChangeView {
            action: match c.kind {
                'A' => "restore",
                'D' => "delete",
                _ => "modify",
            }
            .to_owned(),
            path: c.path.clone(),
            held_by: Scope::parse(&c.path)
                .ok()
                .and_then(|scope| holders.iter().find(|h| h.scope.overlaps(&scope)).map(|h| h.holder.to_string())),
        })
        .collect();
    if p.dry_run || changes.is_empty() {
        return reply(&RewindReply { checkpoint: short(&target), changes: views, dry_run: p.dry_run, backup: None });
    }
    let overwritten: Vec<String> = changes.iter().map(|c| c.path.clone()).collect();
    let message = format!("before rewind to {}", short(&target));
    let backup = take_with(cx, &who.session, &root, &message, &overwritten).await?;
    let backup_id = match backup {
        Some(made) => Some(made.id),
        None => found_last(cx, &who).await,
    };
    let scratch = index.with_extension("rewind");
    let restored = short(&target);
    blocking(cx, move || git::restore(&root, &scratch, &target, &changes)).await?;
    reply(&RewindReply { checkpoint: restored, changes: views, dry_run: false, backup: backup_id })
}

/// Takes a checkpoint of `root` for `session` and records it; `None` when nothing changed.
pub async fn take(
    cx: &Context,
    session: &str,
    root: &Path,
    message: &str,
) -> Result<Option<Checkpoint>, ErrorObjectOwned> {
    take_with(cx, session, root, message, &[]).await
}

/// [`take`], recording `files` among its files too: the backup before a rewind records what the rewind
/// overwrites, which its private index (just refreshed for the plan) no longer shows as changed.
async fn take_with(
    cx: &Context,
    session: &str,
    root: &Path,
    message: &str,
    files: &[String],
) -> Result<Option<Checkpoint>, ErrorObjectOwned> {
    // Typed by a person or an agent: masked before it reaches the store or the checkpoint commit.
    let message = lanes_core::redact(message);
    let message = message.as_str();
    let index = git::private_index(&cx.common_dir, session);
    let Answer::Prompt(prompt) = cx.ask(Command::LastPrompt { session: session.to_owned() }).await? else {
        unreachable!("last prompt answers Prompt")
    };
    let mut body = format!("lanes checkpoint: {message}\n\n");
    if let Some(prompt) = &prompt {
        body.push_str(&format!("Prompt: {}\n\n", prompt.chars().take(2000).collect::<String>()));
    }
    body.push_str(&format!("Lanes-Session: {session}\n"));
    let made = blocking(cx, {
        let (root, session) = (root.to_path_buf(), session.to_owned());
        move || git::checkpoint(&root, &index, &session, &body)
    })
    .await?;
    let Some(made) = made else { return Ok(None) };
    let checkpoint = Checkpoint {
        id: short(&made.commit),
        commit: made.commit,
        session: session.to_owned(),
        worktree: root.to_string_lossy().into_owned(),
        head: made.head,
        files: {
            let mut all = made.files;
            all.extend(files.iter().filter(|f| !all.contains(f)).cloned().collect::<Vec<_>>());
            all
        },
        message: message.to_owned(),
        prompt,
        at: now(),
    };
    cx.ask(Command::RecordCheckpoint(checkpoint.clone())).await?;
    Ok(Some(checkpoint))
}

/// The latest checkpoint of a principal's session (the state a rewind replaced, when it was unchanged).
async fn found_last(cx: &Context, who: &Principal) -> Option<String> {
    match cx.ask(Command::Checkpoints { session: Some(who.session.clone()), limit: 1 }).await {
        Ok(Answer::Checkpoints(found)) => found.first().map(|c| c.id.clone()),
        _ => None,
    }
}

/// Runs git work on a blocking thread, one job at a time.
async fn blocking<T: Send + 'static>(
    cx: &Context,
    job: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ErrorObjectOwned> {
    let _serialized = cx.git.lock().await;
    match tokio::task::spawn_blocking(job).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(error(ErrorCode::Internal, format!("{e:#}"), Vec::new())),
        Err(e) => Err(error(ErrorCode::Internal, format!("git work failed: {e}"), Vec::new())),
    }
}

fn selected(path: &str, wanted: &[String]) -> bool {
    wanted.is_empty()
        || wanted.iter().any(|w| {
            let w = w.trim_end_matches('/');
            w == "." || path == w || path.starts_with(&format!("{w}/"))
        })
}

fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

pub(crate) fn view(c: &Checkpoint) -> CheckpointView {
    CheckpointView {
        id: c.id.clone(),
        commit: c.commit.clone(),
        session: c.session.clone(),
        worktree: c.worktree.clone(),
        head: c.head.clone(),
        files: c.files.clone(),
        message: c.message.clone(),
        prompt: c.prompt.clone(),
        at: rfc3339(c.at),
    }
}
