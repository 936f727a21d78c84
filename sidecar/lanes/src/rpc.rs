//! The sidecar's JSON-RPC methods (DESIGN.md §6, wire contract), served through a jsonrpsee `RpcModule`.
//! Handlers check and convert parameters, resolve paths against the file system, and leave every decision
//! to the state owner.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use jsonrpsee::RpcModule;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use lanes_core::{
    AcquireRequest, Claim, ClaimId, Conflict, Ensured, Epoch, Grant, Message, Principal, Recipient, RefusalCode, Scope,
    SessionInfo, Timestamp, Worktree,
};
use lanes_proto::repo::RepoLocation;
use lanes_proto::{
    AcquireParams, ActivityParams, ActivityReply, CheckParams, CheckReply, ClaimReply, ClaimView, ConflictView,
    ErrorCode, ErrorData, EventView, EventsParams, EventsReply, HandoffParams, HelloParams, HelloReply, MessageView,
    MessagesReply, Mode, NoteView, PROTOCOL_VERSION, PeerView, ReleaseParams, ReleaseReply, RenewParams, SendParams,
    SessionEndReply, SessionParams, SessionStartReply, SessionView, SidecarView, StatusReply, WaitParams, WaitReply,
    method,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Notify;

use crate::config::Binding;
use crate::state::{Answer, Command, Failure, StateHandle, invalid, now};
use crate::{agents, checkpoints, commits, scopes, tasks};

/// Everything the handlers share.
pub struct Context {
    pub state: StateHandle,
    pub common_dir: PathBuf,
    pub sidecar: SidecarView,
    pub shutdown: Notify,
    /// When the last request arrived, in milliseconds since the Unix epoch (for the idle exit).
    pub last_request: AtomicU64,
    /// Set once the sidecar has begun to stop: no request is decided after it.
    pub stopping: AtomicBool,
    /// Requests being decided or answered right now (a stopping sidecar waits for them).
    pub in_flight: AtomicUsize,
    worktrees: Mutex<HashMap<String, (PathBuf, Worktree)>>,
    /// Serializes git work on checkpoint refs and private indexes.
    pub git: tokio::sync::Mutex<()>,
    /// Binding policy for sessions.
    pub binding_sessions: Binding,
    /// Binding policy for subagents in worktrees lanes made for them.
    pub binding_subagents: Binding,
    /// Where subagent worktrees go, relative to the main worktree.
    pub agent_worktree_dir: String,
    /// Their branch name, with `{session}` and `{agent}`.
    pub agent_branch: String,
    /// The HEAD each principal last saw in each worktree, and whether it said it would move it itself.
    heads: Mutex<HashMap<(String, String), (String, bool)>>,
    /// The shared hub, when `[hub]` is configured: it decides claims.
    pub hub: Option<Arc<crate::hub_link::HubLink>>,
    /// What the pre-commit guard does (`[git] guard`).
    pub git_guard: crate::config::Guard,
    /// Reads each worktree's pending paths for the book.
    pub scanner: Arc<crate::work::Scanner>,
    /// What each worktree's last prepare-commit-msg was told, for its post-commit.
    pending_stamps: Mutex<HashMap<String, (Vec<lanes_proto::StampView>, std::time::Instant)>>,
}

impl Context {
    pub fn new(state: StateHandle, common_dir: PathBuf, sidecar: SidecarView) -> Context {
        Context {
            state,
            common_dir,
            sidecar,
            shutdown: Notify::new(),
            last_request: AtomicU64::new(now().0),
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            worktrees: Mutex::new(HashMap::new()),
            git: tokio::sync::Mutex::new(()),
            pending_stamps: Mutex::new(HashMap::new()),
            scanner: Arc::new(crate::work::Scanner::new(None)),
            git_guard: crate::config::Guard::Refuse,
            hub: None,
            heads: Mutex::new(HashMap::new()),
            binding_sessions: Binding::Warn,
            binding_subagents: Binding::Strict,
            agent_worktree_dir: ".claude/worktrees".to_owned(),
            agent_branch: "lanes/{session}/{agent}".to_owned(),
        }
    }

    /// The branch guard: records the HEAD a principal sees in a worktree and says when it moved since its
    /// last look without the principal having announced that it would move it.
    pub(crate) fn branch_guard(&self, principal: &str, worktree: &str, head: &str, moving: bool) -> Option<String> {
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

    /// The stamps waiting for their post-commit, by worktree.
    pub(crate) fn pending_stamps(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (Vec<lanes_proto::StampView>, std::time::Instant)>> {
        self.pending_stamps.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The canonical root and identity of the worktree containing `path`, which must belong to this
    /// repository.
    pub(crate) fn worktree(&self, path: &str) -> Result<(PathBuf, Worktree), Failure> {
        let cache = || self.worktrees.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((root, worktree)) = cache().get(path).cloned()
            && root.exists()
        {
            return Ok((root, worktree));
        }
        if !path.starts_with('/') {
            return Err(invalid(format!("worktree must be an absolute path, not {path:?}")));
        }
        let location = RepoLocation::discover(Path::new(path))
            .map_err(|e| invalid(format!("worktree {path} is not usable: {e}")))?;
        if location.common_dir != self.common_dir {
            return Err(invalid(format!(
                "worktree {path} belongs to another repository ({}), not {}",
                location.common_dir.display(),
                self.common_dir.display()
            )));
        }
        let worktree = Worktree {
            root: location.worktree.to_string_lossy().into_owned(),
            git_dir: location.git_dir.to_string_lossy().into_owned(),
        };
        let mut cache = cache();
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(path.to_owned(), (location.worktree.clone(), worktree.clone()));
        Ok((location.worktree, worktree))
    }

    pub(crate) async fn ask(&self, command: Command) -> Result<Answer, ErrorObjectOwned> {
        let frees = matches!(
            command,
            Command::Release { .. } | Command::Handoff { .. } | Command::SessionEnd { .. } | Command::Renew { .. }
        );
        let answer = self.state.ask(command).await.map_err(failure_to_rpc);
        if frees && let Some(hub) = &self.hub {
            // The hub learns of releases, handoffs and renewals from the forwarder's next sync: now.
            hub.wake.notify_one();
        }
        answer
    }

    /// With a hub, a grant stands only once the hub confirms it; otherwise it is taken back and the hub's
    /// answer (a conflict, or `unavailable`) is the caller's. Returns the hub's epoch.
    pub(crate) async fn confirm_with_hub(&self, claim: &Claim) -> Result<Option<u64>, ErrorObjectOwned> {
        let Some(hub) = &self.hub else { return Ok(None) };
        match hub.confirm(crate::hub_link::hub_claim(claim, now())).await {
            Ok(epoch) => Ok(Some(epoch)),
            Err(refusal) => {
                let command =
                    Command::Release { who: claim.holder.clone(), ids: vec![claim.id], all: false, epoch: None };
                if let Err(e) = self.ask(command).await {
                    tracing::warn!(
                        "could not take back claim {} after the hub refused it: {}",
                        claim.id.0,
                        e.message()
                    );
                }
                Err(refusal)
            }
        }
    }
}

pub(crate) type RpcResult = Result<Value, ErrorObjectOwned>;

/// Builds the module with every method of the contract.
pub fn module(context: Arc<Context>) -> RpcModule<Arc<Context>> {
    let mut module = RpcModule::new(context);
    let registered = [
        module.register_async_method(method::HELLO, |p, cx, _| async move { hello(p, &cx) }).map(|_| ()),
        module
            .register_async_method(method::CLAIM_ACQUIRE, |p, cx, _| async move { acquire(p, &cx).await })
            .map(|_| ()),
        module
            .register_async_method(method::CLAIM_RELEASE, |p, cx, _| async move { release(p, &cx).await })
            .map(|_| ()),
        module.register_async_method(method::CLAIM_RENEW, |p, cx, _| async move { renew(p, &cx).await }).map(|_| ()),
        module
            .register_async_method(method::CLAIM_HANDOFF, |p, cx, _| async move { handoff(p, &cx).await })
            .map(|_| ()),
        module.register_async_method(method::CLAIM_CHECK, |p, cx, _| async move { check(p, &cx).await }).map(|_| ()),
        module.register_async_method(method::CLAIM_ENSURE, |p, cx, _| async move { ensure(p, &cx).await }).map(|_| ()),
        module
            .register_async_method(method::SESSION_ACTIVITY, |p, cx, _| async move { activity(p, &cx).await })
            .map(|_| ()),
        module.register_async_method(method::MESSAGE_SEND, |p, cx, _| async move { send(p, &cx).await }).map(|_| ()),
        module.register_async_method(method::MESSAGE_INBOX, |p, cx, _| async move { inbox(p, &cx).await }).map(|_| ()),
        module
            .register_async_method(method::COMMIT_STAMP, |p, cx, _| async move { commits::stamp(p, &cx).await })
            .map(|_| ()),
        module
            .register_async_method(method::COMMIT_RECORD, |p, cx, _| async move { commits::record(p, &cx).await })
            .map(|_| ()),
        module
            .register_async_method(method::COMMIT_EXPLAIN, |p, cx, _| async move { commits::explain(p, &cx).await })
            .map(|_| ()),
        module
            .register_async_method(
                method::CHECKPOINT_CREATE,
                |p, cx, _| async move { checkpoints::create(p, &cx).await },
            )
            .map(|_| ()),
        module
            .register_async_method(method::CHECKPOINT_LIST, |p, cx, _| async move { checkpoints::list(p, &cx).await })
            .map(|_| ()),
        module
            .register_async_method(
                method::CHECKPOINT_REWIND,
                |p, cx, _| async move { checkpoints::rewind(p, &cx).await },
            )
            .map(|_| ()),
        module
            .register_async_method(method::SESSION_START, |p, cx, _| async move { session_start(p, &cx).await })
            .map(|_| ()),
        module
            .register_async_method(method::SESSION_END, |p, cx, _| async move { session_end(p, &cx).await })
            .map(|_| ()),
        module.register_async_method(method::STATUS, |_, cx, _| async move { status(&cx).await }).map(|_| ()),
        module.register_async_method(method::EVENTS, |p, cx, _| async move { events(p, &cx).await }).map(|_| ()),
        module.register_async_method(method::SHUTDOWN, |_, cx, _| async move { shutdown(&cx) }).map(|_| ()),
        module.register_async_method(method::TASK_ADD, |p, cx, _| async move { tasks::add(p, &cx).await }).map(|_| ()),
        module
            .register_async_method(method::TASK_LIST, |p, cx, _| async move { tasks::list(p, &cx).await })
            .map(|_| ()),
        module
            .register_async_method(method::TASK_NEXT, |p, cx, _| async move { tasks::next(p, &cx).await })
            .map(|_| ()),
        module
            .register_async_method(method::TASK_DONE, |p, cx, _| async move { tasks::done(p, &cx).await })
            .map(|_| ()),
        module
            .register_async_method(method::TASK_CHANGE, |p, cx, _| async move { tasks::change(p, &cx).await })
            .map(|_| ()),
        module
            .register_async_method(method::WORKTREE_CREATE, |p, cx, _| async move { agents::create(p, &cx).await })
            .map(|_| ()),
        module
            .register_async_method(method::WORKTREE_FINISH, |p, cx, _| async move { agents::finish(p, &cx).await })
            .map(|_| ()),
        module
            .register_async_method(
                method::WORKTREE_SCAN,
                |p, cx, _| async move { crate::work::shell_scan(p, &cx).await },
            )
            .map(|_| ()),
        module
            .register_async_method(method::COMMIT_CHECK, |p, cx, _| async move { commits::check(p, &cx).await })
            .map(|_| ()),
        module
            .register_async_method(method::WORKTREE_LIST, |_, cx, _| async move { agents::list(&cx).await })
            .map(|_| ()),
        module.register_async_method(method::CLAIM_WAIT, |p, cx, _| async move { wait(p, &cx).await }).map(|_| ()),
    ];
    for result in registered {
        result.expect("method names are unique");
    }
    module
}

fn hello(params: Params<'static>, cx: &Context) -> RpcResult {
    let hello: HelloParams = parse(&params)?;
    tracing::debug!("hello from {} {} (protocol {})", hello.client, hello.version, hello.protocol);
    reply(&HelloReply { version: cx.sidecar.version.clone(), protocol: PROTOCOL_VERSION, pid: cx.sidecar.pid })
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
    let Answer::Granted(grant) = cx.ask(Command::Acquire(request)).await? else {
        unreachable!("acquire answers Granted")
    };
    let hub_epoch = cx.confirm_with_hub(&grant.claim).await?;
    grant_reply(&grant, hub_epoch)
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
    let Answer::Ensured(ensured) = cx.ask(Command::Ensure(request)).await? else {
        unreachable!("ensure answers Ensured")
    };
    let mut value = match ensured {
        Ensured::Granted(grant) => {
            let hub_epoch = cx.confirm_with_hub(&grant.claim).await?;
            grant_reply(&grant, hub_epoch)?
        }
        Ensured::Held(claim) => claim_reply(&claim, true)?,
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
        Some(path) => (Some(path), cx.binding_subagents),
        None => (bound.and_then(|b| cx.worktree(&b).ok()).map(|(_, w)| w.root), cx.binding_sessions),
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
    let Answer::Released(ids) = cx.ask(command).await? else { unreachable!("release answers Released") };
    reply(&ReleaseReply { released: ids.into_iter().map(|id| id.0).collect() })
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
        crate::hub_link::HubFailure::Refused(error) => error,
        crate::hub_link::HubFailure::Unavailable(message) => error(
            ErrorCode::Unavailable,
            format!("no hub answers ({message}): other machines' claims are unknown"),
            Vec::new(),
        ),
    })
}

async fn session_start(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: SessionParams = parse(&params)?;
    let session = principal(&p.session)?.session;
    let worktree = match &p.worktree {
        Some(path) => Some(cx.worktree(path).map_err(failure_to_rpc)?.1.root),
        None => None,
    };
    let info = SessionInfo { worktree, branch: p.branch, model: p.model, source: p.source };
    let Answer::Started(start) = cx.ask(Command::SessionStart { session: session.clone(), info }).await? else {
        unreachable!("session start answers Started")
    };
    let others = start
        .others
        .iter()
        .map(|(id, s, claims)| PeerView {
            id: id.clone(),
            worktree: s.info.worktree.clone(),
            branch: s.info.branch.clone(),
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
        (Some(worktree), Some(head)) => cx.branch_guard(&who.to_string(), worktree, head, p.moving_head),
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

/// Sends to sessions of this machine and, with a hub, of the others: a session unknown here is looked for
/// on the hub, and `--all` reaches every live session of every machine.
async fn send(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: SendParams = parse(&params)?;
    let from = principal(&p.session)?.session;
    let to = Recipient::parse(&p.to);
    let command = Command::Send { from: from.clone(), to: to.clone(), text: p.text.clone() };
    let mut messages: Vec<MessageView> = match cx.ask(command).await {
        Ok(Answer::Messages(sent)) => sent.iter().map(message_view).collect(),
        Ok(_) => unreachable!("send answers Messages"),
        Err(e) if cx.hub.is_some() && e.code() == ErrorCode::NotFound.rpc_code() => Vec::new(),
        Err(e) => return Err(e),
    };
    let Some(hub) = &cx.hub else { return reply(&MessagesReply { messages }) };
    let remote_to = match (&to, messages.is_empty()) {
        (Recipient::All, _) => "@all",
        (Recipient::Session(name), true) => name.as_str(),
        (Recipient::Session(_), false) => return reply(&MessagesReply { messages }),
    };
    match hub.send(&from, remote_to, &p.text).await {
        Ok(reached) => messages.extend(reached.into_iter().map(|to| MessageView {
            id: 0,
            from: from.clone(),
            to,
            text: lanes_core::redact(&p.text),
            sent_at: rfc3339(now()),
        })),
        // `--all`: the other machines being out of reach costs the local sends nothing.
        Err(e) if matches!(to, Recipient::All) => tracing::warn!("a message to all reached this machine only: {e:?}"),
        Err(crate::hub_link::HubFailure::Refused(e)) => return Err(e),
        Err(crate::hub_link::HubFailure::Unavailable(message)) => {
            return Err(error(
                ErrorCode::Unavailable,
                format!(
                    "no session {remote_to} is known here, and no hub answers to look on the other machines ({message})"
                ),
                Vec::new(),
            ));
        }
    }
    reply(&MessagesReply { messages })
}

async fn inbox(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: SessionParams = parse(&params)?;
    let session = principal(&p.session)?.session;
    let Answer::Messages(messages) = cx.ask(Command::Inbox { session }).await? else {
        unreachable!("inbox answers Messages")
    };
    reply(&MessagesReply { messages: messages.iter().map(message_view).collect() })
}

fn message_view(message: &Message) -> MessageView {
    MessageView {
        id: message.id,
        from: message.from.clone(),
        to: message.to.clone(),
        text: message.text.clone(),
        sent_at: rfc3339(message.sent_at),
    }
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
        crate::work::scan_now(cx, Path::new(root)).await;
    }
    let command = match who.agent {
        Some(_) => Command::PrincipalEnd { who },
        None => Command::SessionEnd { session: who.session },
    };
    let Answer::Released(ids) = cx.ask(command).await? else { unreachable!("session end answers Released") };
    reply(&SessionEndReply { released: ids.into_iter().map(|id| id.0).collect() })
}

async fn status(cx: &Context) -> RpcResult {
    let Answer::Status(snapshot) = cx.ask(Command::Status).await? else { unreachable!("status answers Status") };
    let sessions = snapshot
        .sessions
        .iter()
        .map(|line| SessionView {
            id: line.id.clone(),
            state: if line.session.live { "live" } else { "ended" }.to_owned(),
            claims: snapshot.claims.iter().filter(|c| c.holder.session == line.id).count(),
            worktree: line.session.info.worktree.clone(),
            branch: line.session.info.branch.clone(),
            unread: line.unread,
            model: line.session.info.model.clone(),
            source: line.session.info.source.clone(),
            started_at: Some(rfc3339(line.session.started_at)),
            ended_at: line.session.ended_at.map(rfc3339),
            last_checkpoint: line.last_checkpoint.clone(),
            last_prompt: line.last_prompt.clone(),
        })
        .collect();
    reply(&StatusReply {
        repo: cx.common_dir.to_string_lossy().into_owned(),
        sidecar: cx.sidecar.clone(),
        sessions,
        claims: snapshot.claims.iter().map(|c| claim_view(c, snapshot.now)).collect(),
        tasks: snapshot.tasks.iter().map(|(t, ready, stalled)| tasks::view(t, *ready, *stalled)).collect(),
        hub: match &cx.hub {
            // With a hub, status sees what the hub sees: the claims of the other machines too.
            Some(hub) => {
                let mut view = hub.view();
                if hub.refusal_while_down().is_none() {
                    view["claims"] = hub.remote_claims().await.ok().map_or(Value::Null, |c| serde_json::json!(c));
                }
                Some(view)
            }
            None => None,
        },
        epoch: snapshot.epoch.0,
    })
}

async fn events(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: EventsParams = if params.as_str().is_some() { parse(&params)? } else { EventsParams::default() };
    let limit = p.limit.unwrap_or(1000).clamp(1, 10_000);
    let Answer::Events(logged) = cx.ask(Command::Events { since: p.since, limit }).await? else {
        unreachable!("events answers Events")
    };
    let cursor = logged.last().map_or(p.since, |e| e.seq);
    reply(&EventsReply { events: logged.into_iter().map(event_view).collect(), cursor })
}

/// An event of the log as the wire shows it.
pub(crate) fn event_view(e: lanes_store::LoggedEvent) -> EventView {
    let mut data = e.data;
    // The log keeps times as epoch milliseconds; the wire shows every time as ISO 8601.
    if let Some(fields) = data.as_object_mut() {
        for (key, value) in fields.iter_mut() {
            if (key == "at" || key.ends_with("_at"))
                && let Some(ms) = value.as_u64()
            {
                *value = Value::String(rfc3339(Timestamp(ms)));
            }
        }
    }
    EventView { seq: e.seq, at: rfc3339(e.at), kind: e.kind, session: e.session, claim: e.claim, data }
}

fn shutdown(cx: &Context) -> RpcResult {
    cx.shutdown.notify_one();
    reply(&serde_json::json!({"stopping": true}))
}

pub(crate) fn parse<T: DeserializeOwned>(params: &Params<'static>) -> Result<T, ErrorObjectOwned> {
    params
        .parse()
        .map_err(|e| error(ErrorCode::InvalidArgument, format!("invalid params: {}", e.message()), Vec::new()))
}

pub(crate) fn principal(text: &str) -> Result<Principal, ErrorObjectOwned> {
    Principal::parse(text).map_err(|r| failure_to_rpc(Failure::Refused(r)))
}

pub(crate) fn resolve_all(inputs: &[String], root: &Path) -> Result<Vec<Scope>, ErrorObjectOwned> {
    if inputs.len() > lanes_core::MAX_SCOPES {
        return Err(error(
            ErrorCode::InvalidArgument,
            format!("too many scopes ({}): at most {} per request", inputs.len(), lanes_core::MAX_SCOPES),
            Vec::new(),
        ));
    }
    inputs
        .iter()
        .map(|input| scopes::resolve(input, root).map_err(|e| error(ErrorCode::InvalidScope, e.0, Vec::new())))
        .collect()
}

/// Serializes a reply object and adds `protocol`, which every reply carries.
pub(crate) fn reply<T: Serialize>(body: &T) -> RpcResult {
    lanes_proto::with_protocol(body).map_err(|e| error(ErrorCode::Internal, e.to_string(), Vec::new()))
}

/// A JSON-RPC error whose `data` carries the string code, the conflicts and the protocol version.
pub fn error(code: ErrorCode, message: String, conflicts: Vec<ConflictView>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code.rpc_code(), message, Some(ErrorData::new(code, conflicts)))
}

pub(crate) fn failure_to_rpc(failure: Failure) -> ErrorObjectOwned {
    match failure {
        Failure::Unavailable(message) => error(ErrorCode::Unavailable, message, Vec::new()),
        Failure::Refused(refusal) => {
            let code = match refusal.code {
                RefusalCode::Conflict => ErrorCode::Conflict,
                RefusalCode::StaleEpoch => ErrorCode::StaleEpoch,
                RefusalCode::NotHolder => ErrorCode::NotHolder,
                RefusalCode::NotFound => ErrorCode::NotFound,
                RefusalCode::InvalidScope => ErrorCode::InvalidScope,
                RefusalCode::InvalidArgument => ErrorCode::InvalidArgument,
                RefusalCode::Cycle => ErrorCode::Cycle,
                RefusalCode::WouldDeadlock => ErrorCode::WouldDeadlock,
            };
            let now = now();
            error(code, refusal.message, refusal.conflicts.iter().map(|c| conflict_view(c, now)).collect())
        }
    }
}

/// A claim's mode as the wire names it.
pub(crate) fn mode_view(mode: lanes_core::Mode) -> Mode {
    match mode {
        lanes_core::Mode::Exclusive => Mode::Exclusive,
        lanes_core::Mode::Shared => Mode::Shared,
    }
}

pub(crate) fn claim_view(claim: &Claim, now: Timestamp) -> ClaimView {
    ClaimView {
        id: claim.id.0,
        session: claim.holder.to_string(),
        worktree: claim.worktree.root.clone(),
        scopes: claim.scopes.iter().map(Scope::to_string).collect(),
        mode: mode_view(claim.mode),
        epoch: claim.epoch.0,
        expires_at: rfc3339(claim.expires_at),
        expires_in_secs: secs_left(claim.expires_at, now),
        note: claim.note.clone(),
        task: claim.task.clone(),
        pending: claim.pending.is_some(),
        branch: claim.pending.as_ref().and_then(|p| p.branch.clone()),
        left_at: claim.pending.as_ref().map(|p| rfc3339(p.left_at)),
    }
}

pub(crate) fn conflict_view(conflict: &Conflict, now: Timestamp) -> ConflictView {
    ConflictView {
        claim_id: conflict.claim_id.0,
        session: (!conflict.latent).then(|| conflict.holder.to_string()),
        scope: conflict.scope.to_string(),
        worktree: conflict.worktree.root.clone(),
        expires_at: rfc3339(conflict.expires_at),
        expires_in_secs: secs_left(conflict.expires_at, now),
        pending: conflict.pending.is_some(),
        latent: conflict.latent,
        branch: conflict.pending.as_ref().and_then(|p| p.branch.clone()),
        left_at: conflict.pending.as_ref().filter(|_| !conflict.latent).map(|p| rfc3339(p.left_at)),
    }
}

/// Whole seconds left, rounded up: a live claim never shows `expires in 0s`.
fn secs_left(expires_at: Timestamp, now: Timestamp) -> u64 {
    u64::try_from(expires_at.remaining(now).as_millis().div_ceil(1000)).unwrap_or(u64::MAX)
}

pub(crate) fn rfc3339(t: Timestamp) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(t.0)).to_string()
}
