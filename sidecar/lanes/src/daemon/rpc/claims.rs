//! Claims: `claim.acquire`, `claim.ensure` (the edit hook's), `claim.release`, `claim.renew`, `claim.handoff`,
//! `claim.check`, `claim.wait`; with a hub, every grant is confirmed there and checks look there too.

use std::time::Duration;

use jsonrpsee::types::{ErrorObjectOwned, Params};
use lanes_core::{AcquireRequest, Claim, ClaimId, Ensured, Epoch, Grant, Principal, RefusalCode, Scope};
use lanes_proto::{
    AcquireParams, CheckParams, CheckReply, ClaimReply, ConflictView, ErrorCode, ErrorData, HandoffParams, Mode,
    NoteView, ReleaseParams, ReleaseReply, RenewParams, WaitParams, WaitReply, method,
};

use super::{
    Context, Methods, RpcResult, add, claim_view, conflict_view, error, failure_to_rpc, parse, principal, reply,
    resolve_all, rfc3339,
};
use crate::config::{Binding, Config};
use crate::daemon::state::{Answer, Command, Durable, Failure, now};

/// Which worktree a principal's edits are bound to, and what an edit elsewhere gets (`[binding]`).
pub struct BindingPolicy {
    /// For sessions.
    pub sessions: Binding,
    /// For subagents in worktrees lanes made for them.
    pub subagents: Binding,
}

impl From<&Config> for BindingPolicy {
    fn from(config: &Config) -> BindingPolicy {
        BindingPolicy { sessions: config.binding_sessions, subagents: config.binding_subagents }
    }
}

pub(super) fn register(module: &mut Methods) {
    add(module, method::CLAIM_ACQUIRE, |p, cx| async move { acquire(p, &cx).await });
    add(module, method::CLAIM_ENSURE, |p, cx| async move { ensure(p, &cx).await });
    add(module, method::CLAIM_RELEASE, |p, cx| async move { release(p, &cx).await });
    add(module, method::CLAIM_RENEW, |p, cx| async move { renew(p, &cx).await });
    add(module, method::CLAIM_HANDOFF, |p, cx| async move { handoff(p, &cx).await });
    add(module, method::CLAIM_CHECK, |p, cx| async move { check(p, &cx).await });
    add(module, method::CLAIM_WAIT, |p, cx| async move { wait(p, &cx).await });
}

/// Turns `claim.acquire` parameters into a request for the book.
fn acquire_request(p: AcquireParams, cx: &Context) -> Result<AcquireRequest, ErrorObjectOwned> {
    let holder = principal(&p.session)?;
    let (root, worktree) = cx.worktree(&p.worktree).map_err(failure_to_rpc)?;
    let scopes = resolve_all(&p.scopes, &root)?;
    let mode = match p.mode.unwrap_or_default() {
        Mode::Exclusive => lanes_core::Mode::Exclusive,
        Mode::Shared => lanes_core::Mode::Shared,
    };
    let ttl = p.ttl_secs.map(Duration::from_secs);
    Ok(AcquireRequest { holder, worktree, scopes, mode, ttl, note: p.note, task: p.task })
}

async fn acquire(params: Params<'static>, cx: &Context) -> RpcResult {
    let request = acquire_request(parse(&params)?, cx)?;
    if let Some(refusal) = cx.hub.as_ref().and_then(|hub| hub.refusal_while_down()) {
        return Err(refusal);
    }
    let (Answer::Granted(grant), durable) = ask_on_fresh_work(cx, || Command::Acquire(request.clone())).await? else {
        unreachable!("acquire answers Granted")
    };
    let hub_epoch = confirm_when_durable(cx, &grant, durable).await?;
    grant_reply(&grant, hub_epoch)
}

/// A grant's answer: once it is on this disk and, with a hub, confirmed there, the two side by side.
async fn confirm_when_durable(cx: &Context, grant: &Grant, durable: Durable) -> Result<Option<u64>, ErrorObjectOwned> {
    let (on_disk, confirmed) = tokio::join!(durable.wait(), cx.confirm_with_hub(grant));
    on_disk.map_err(failure_to_rpc)?;
    confirmed
}

/// Asks the state owner for a claim; refused over pending work, scans the worktrees holding that work and asks
/// once more. A refusal then stands on a scan newer than the request, never on one the watcher has not caught
/// up with yet (a checkout that just finished, a commit that just landed). With a hub, a grant is answered
/// once committed, and the hub asked while it goes to disk.
async fn ask_on_fresh_work(cx: &Context, command: impl Fn() -> Command) -> Result<(Answer, Durable), ErrorObjectOwned> {
    let early = cx.hub.is_some();
    match cx.state.ask_early(command(), early).await {
        Err(Failure::Refused(refusal))
            if refusal.code == RefusalCode::Conflict && refusal.conflicts.iter().any(|c| c.pending.is_some()) =>
        {
            let mut roots: Vec<&str> =
                refusal.conflicts.iter().filter(|c| c.pending.is_some()).map(|c| c.worktree.root.as_str()).collect();
            roots.sort_unstable();
            roots.dedup();
            for root in roots {
                crate::daemon::work::scan_now(cx, std::path::Path::new(root)).await;
            }
            cx.state.ask_early(command(), early).await.map_err(failure_to_rpc)
        }
        answer => answer.map_err(failure_to_rpc),
    }
}

async fn ensure(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: AcquireParams = parse(&params)?;
    let bound = p.bound_worktree.clone();
    let request = acquire_request(p, cx)?;
    let warning = check_binding(cx, &request, bound).await?;
    if let Some(refusal) = cx.hub.as_ref().and_then(|hub| hub.refusal_while_down()) {
        // Nothing new can be granted while no hub answers, but a claim the hub confirmed earlier still
        // covers its holder's edits: find it without writing anything.
        let Answer::Held(held) = cx.ask(Command::EnsureHeld(request)).await? else {
            unreachable!("ensure_held answers Held")
        };
        return held.map_or(Err(refusal), |claim| claim_reply(&claim, true));
    }
    let (Answer::Ensured(ensured), durable) = ask_on_fresh_work(cx, || Command::Ensure(request.clone())).await? else {
        unreachable!("ensure answers Ensured")
    };
    let mut value = match ensured {
        Ensured::Granted(grant) => {
            let hub_epoch = confirm_when_durable(cx, &grant, durable).await?;
            grant_reply(&grant, hub_epoch)?
        }
        Ensured::Held(claim) => {
            durable.wait().await.map_err(failure_to_rpc)?;
            claim_reply(&claim, true)?
        }
    };
    if let Some(warning) = warning {
        value["warning"] = match value["warning"].as_str() {
            Some(grant_warning) => format!("{warning}\n{grant_warning}"),
            None => warning,
        }
        .into();
    }
    Ok(value)
}

/// Applies the binding policy to an edit: a subagent in a worktree lanes made for it is bound to that
/// worktree, a session to the worktree it works in. Returns a warning to pass on, or refuses the edit.
async fn check_binding(
    cx: &Context,
    request: &AcquireRequest,
    bound: Option<String>,
) -> Result<Option<String>, ErrorObjectOwned> {
    let agent_tree = match &request.holder.agent {
        Some(agent) => {
            let command =
                Command::AgentWorktrees { session: Some(request.holder.session.clone()), agent: Some(agent.clone()) };
            match cx.ask(command).await? {
                Answer::AgentWorktrees(trees) => trees.into_iter().next().map(|t| t.path),
                _ => None,
            }
        }
        None => None,
    };
    let (bound, policy) = match agent_tree {
        Some(path) => (Some(path), cx.binding.subagents),
        None => (bound.and_then(|b| cx.worktree(&b).ok()).map(|(_, w)| w.root), cx.binding.sessions),
    };
    let Some(bound) = bound.filter(|b| *b != request.worktree.root) else { return Ok(None) };
    let relative: Vec<String> = request.scopes.iter().map(ToString::to_string).collect();
    let should = format!("{bound}/{}", relative.join(", "));
    let message = format!(
        "{} is in worktree {}, but {} works in {}: edit {should} instead",
        relative.join(", "),
        request.worktree.root,
        request.holder,
        bound
    );
    match policy {
        Binding::Off => Ok(None),
        Binding::Warn => Ok(Some(format!("lanes: {message} (allowed: binding = \"warn\")"))),
        Binding::Strict => {
            let data = ErrorData { bound_worktree: Some(bound), ..ErrorData::new(ErrorCode::InvalidScope, Vec::new()) };
            Err(ErrorObjectOwned::owned(ErrorCode::InvalidScope.rpc_code(), message, Some(data)))
        }
    }
}

fn grant_reply(grant: &Grant, hub_epoch: Option<u64>) -> RpcResult {
    let now = now();
    let notes = grant
        .notes
        .iter()
        .map(|n| NoteView {
            claim_id: n.claim.0,
            session: n.holder.to_string(),
            scopes: n.scopes.iter().map(Scope::to_string).collect(),
            note: n.note.clone(),
            expired_at: rfc3339(n.expired_at),
        })
        .collect();
    let mut warnings: Vec<String> = grant
        .latent
        .iter()
        .map(|c| {
            format!(
                "lanes: {} is also changed in worktree {}{} and no one claimed it there; the merge may conflict \
                 (allowed: [claims] latent = \"warn\")",
                c.scope,
                c.worktree.root,
                c.pending
                    .as_ref()
                    .and_then(|p| p.branch.as_deref())
                    .map(|b| format!(" (branch {b})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    warnings.extend(grant.continues.iter().map(|c| {
        format!(
            "lanes: you continue the work {} left in this worktree on {} (not landed yet)",
            c.holder,
            c.scopes.iter().map(Scope::to_string).collect::<Vec<_>>().join(", ")
        )
    }));
    let warning = (!warnings.is_empty()).then(|| warnings.join("\n"));
    reply(&ClaimReply { claim: claim_view(&grant.claim, now), held: false, warning, notes, hub_epoch })
}

/// A claim as `claim.renew`, `claim.handoff` and a held `claim.ensure` answer it.
fn claim_reply(claim: &Claim, held: bool) -> RpcResult {
    reply(&ClaimReply { claim: claim_view(claim, now()), held, warning: None, notes: Vec::new(), hub_epoch: None })
}

async fn release(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: ReleaseParams = parse(&params)?;
    let who = principal(&p.session)?;
    let ids: Vec<ClaimId> = p.claims.unwrap_or_default().into_iter().map(ClaimId).collect();
    let command = if p.pending.unwrap_or(false) {
        if ids.is_empty() && !p.all.unwrap_or(false) {
            let message = "give the pending claims to give up, or --all for every one this session left".to_owned();
            return Err(error(ErrorCode::InvalidArgument, message, Vec::new()));
        }
        Command::ReleasePending { who, ids }
    } else {
        Command::Release { who, ids, all: p.all.unwrap_or(false), epoch: p.epoch.map(Epoch) }
    };
    let (ids, hub) = cx.release_everywhere(command).await?;
    reply(&ReleaseReply { released: ids.into_iter().map(|id| id.0).collect(), hub })
}

async fn renew(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: RenewParams = parse(&params)?;
    let command = Command::Renew {
        who: principal(&p.session)?,
        id: ClaimId(p.claim),
        ttl: p.ttl_secs.map(Duration::from_secs),
        epoch: p.epoch.map(Epoch),
    };
    let Answer::Claim(claim) = cx.ask(command).await? else { unreachable!("renew answers Claim") };
    claim_reply(&claim, false)
}

async fn handoff(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: HandoffParams = parse(&params)?;
    let command = Command::Handoff {
        who: principal(&p.session)?,
        id: ClaimId(p.claim),
        to: principal(&p.to)?,
        epoch: p.epoch.map(Epoch),
    };
    let Answer::Claim(claim) = cx.ask(command).await? else { unreachable!("handoff answers Claim") };
    claim_reply(&claim, false)
}

async fn check(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: CheckParams = parse(&params)?;
    let who = principal(&p.session)?;
    let (root, worktree) = cx.worktree(&p.worktree).map_err(failure_to_rpc)?;
    let scopes = resolve_all(&p.paths, &root)?;
    let command = Command::Check { who: who.clone(), worktree, scopes: scopes.clone() };
    let Answer::Holders(holders) = cx.ask(command).await? else { unreachable!("check answers Holders") };
    let now = now();
    let mut holders: Vec<ConflictView> = holders.iter().map(|c| conflict_view(c, now)).collect();
    holders.extend(hub_holders(cx, &who, &scopes).await?);
    let yours = if holders.is_empty() {
        let Answer::Claims(own) = cx.ask(Command::OwnHoldings { who, scopes }).await? else {
            unreachable!("own holdings answers Claims")
        };
        own
    } else {
        Vec::new()
    };
    reply(&CheckReply { holders, yours: yours.iter().map(|c| claim_view(c, now)).collect() })
}

async fn wait(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: WaitParams = parse(&params)?;
    let who = principal(&p.session)?;
    let (root, worktree) = cx.worktree(&p.worktree).map_err(failure_to_rpc)?;
    let scopes = resolve_all(&p.paths, &root)?;
    let command = Command::Wait { who: who.clone(), worktree, claim: p.claim.map(ClaimId), scopes: scopes.clone() };
    let conflicts = match cx.ask(command).await {
        Ok(Answer::Holders(conflicts)) => conflicts,
        Ok(_) => unreachable!("wait answers Holders"),
        // Nobody here holds the paths: another machine may, through the hub.
        Err(refused) if cx.hub.is_some() && !scopes.is_empty() => {
            let remote = hub_holders(cx, &who, &scopes).await?;
            if remote.is_empty() {
                return Err(refused);
            }
            return reply(&WaitReply { waiting_for: remote });
        }
        Err(refused) => return Err(refused),
    };
    let now = now();
    reply(&WaitReply { waiting_for: conflicts.iter().map(|c| conflict_view(c, now)).collect() })
}

/// With a hub, the claims other machines hold over `scopes` (none without a hub). No hub answering is
/// `unavailable`: "free" would be a guess.
async fn hub_holders(cx: &Context, who: &Principal, scopes: &[Scope]) -> Result<Vec<ConflictView>, ErrorObjectOwned> {
    let Some(hub) = &cx.hub else { return Ok(Vec::new()) };
    let scopes: Vec<String> = scopes.iter().map(ToString::to_string).collect();
    hub.holders(&who.to_string(), &scopes).await.map_err(|e| match e {
        crate::daemon::hub_link::HubFailure::Refused(error) => error,
        crate::daemon::hub_link::HubFailure::Unavailable(message) => error(
            ErrorCode::Unavailable,
            format!("no hub answers ({message}): other machines' claims are unknown"),
            Vec::new(),
        ),
    })
}
