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
use lanes_core::{Claim, ClaimId, Conflict, Grant, Principal, RefusalCode, ReleaseReason, Scope, Timestamp, Worktree};
use lanes_proto::repo::RepoLocation;
use lanes_proto::{ClaimView, ConflictView, ErrorCode, ErrorData, Mode, SidecarView};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Notify;

use crate::config::Config;
use crate::daemon::state::{Answer, Command, Failure, StateHandle, invalid, now};
use crate::scopes;

pub mod checkpoints;
pub mod claims;
pub mod commits;
pub mod land;
pub mod messages;
pub mod sessions;
pub mod sidecar;
pub mod tasks;
pub mod worktrees;

/// What every domain's handlers share; what only one domain needs is that domain's own (`binding`,
/// `branch_guard`, `commits`, `agent_worktrees`), set up from the config here.
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
    /// The shared hub, when `[hub]` is configured: it decides claims.
    pub hub: Option<Arc<crate::daemon::hub_link::HubLink>>,
    /// Reads each worktree's pending paths for the book.
    pub scanner: Arc<crate::daemon::work::Scanner>,
    /// The claims domain's binding policy.
    pub binding: claims::BindingPolicy,
    /// The sessions domain's record of the HEAD each principal saw.
    pub branch_guard: sessions::BranchGuard,
    /// The commits domain's guard policy and stamps.
    pub commits: commits::CommitState,
    /// How the worktrees domain names agent worktrees.
    pub agent_worktrees: worktrees::Naming,
    /// The landing queue (its runner is `daemon::land::run`).
    pub lander: Arc<crate::daemon::land::Lander>,
}

impl Context {
    pub fn new(state: StateHandle, common_dir: PathBuf, sidecar: SidecarView, config: &Config) -> Context {
        let lander = Arc::new(crate::daemon::land::Lander::open(&common_dir, config));
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
            hub: None,
            scanner: Arc::new(crate::daemon::work::Scanner::new(config.land_base.clone())),
            binding: claims::BindingPolicy::from(config),
            branch_guard: sessions::BranchGuard::default(),
            commits: commits::CommitState::from(config),
            agent_worktrees: worktrees::Naming::from(config),
            lander,
        }
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

    /// The branch a session works on: the one checked out in its worktree now (it may have switched since it
    /// started, and a CLI session or an MCP client never said), else the one its client said at its start.
    pub(crate) fn branch_of(&self, info: &lanes_core::SessionInfo) -> Option<String> {
        let checked_out = || {
            let (_, worktree) = self.worktree(info.worktree.as_deref()?).ok()?;
            crate::git::checked_out_branch(Path::new(&worktree.git_dir))
        };
        checked_out().or_else(|| info.branch.clone())
    }

    pub(crate) async fn ask(&self, command: Command) -> Result<Answer, ErrorObjectOwned> {
        let wake = hub_wake_for(&command);
        let answer = self.state.ask(command).await.map_err(failure_to_rpc);
        self.wake_hub(wake);
        answer
    }

    /// Releases what `command` frees (`claim.release`, a session's end, a scan that saw work land) here and,
    /// with a hub, at the hub before it answers, so another machine can claim the paths at once; the local
    /// release goes to disk meanwhile. Returns the released claims and what the hub said (none without a hub
    /// or a release).
    pub(crate) async fn release_everywhere(
        &self,
        command: Command,
    ) -> Result<(Vec<ClaimId>, Option<String>), ErrorObjectOwned> {
        let wake = hub_wake_for(&command);
        let asked = self.state.ask_early(command, self.hub.is_some()).await;
        self.wake_hub(wake);
        let (Answer::Released(ids), durable) = asked.map_err(failure_to_rpc)? else {
            unreachable!("a release answers Released")
        };
        let at_hub = async {
            match &self.hub {
                Some(link) if !ids.is_empty() => Some(crate::daemon::hub_link::release_now(link, &ids).await),
                _ => None,
            }
        };
        let (on_disk, hub) = tokio::join!(durable.wait(), at_hub);
        on_disk.map_err(failure_to_rpc)?;
        Ok((ids, hub))
    }

    fn wake_hub(&self, wake: Option<bool>) {
        if let (Some(resync), Some(hub)) = (wake, &self.hub) {
            hub.wake(resync);
        }
    }

    /// With a hub, a grant stands only once the hub confirms it; otherwise it is taken back and the hub's
    /// answer (a conflict, or `unavailable`) is the caller's. A claim held before the grant (claimed again) is
    /// taken back only when the hub gave its paths away: a hub that does not answer leaves it as it was, and
    /// the renewal reaches the hub with the next sync. Returns the hub's epoch.
    pub(crate) async fn confirm_with_hub(&self, grant: &Grant) -> Result<Option<u64>, ErrorObjectOwned> {
        let Some(hub) = &self.hub else { return Ok(None) };
        let claim = &grant.claim;
        match hub.confirm(crate::daemon::hub_link::hub_claim(claim, now())).await {
            Ok(epoch) => Ok(Some(epoch)),
            Err(refusal) if grant.held_before && refusal.code() == ErrorCode::Unavailable.rpc_code() => {
                Err(ErrorObjectOwned::owned(
                    refusal.code(),
                    format!("{}; claim {} still holds as before", refusal.message(), claim.id.0),
                    refusal.data(),
                ))
            }
            Err(refusal) => {
                let reason = if refusal.code() == ErrorCode::Unavailable.rpc_code() {
                    ReleaseReason::HubUnavailable
                } else {
                    ReleaseReason::HubRefused
                };
                let command = Command::TakeBack { who: claim.holder.clone(), id: claim.id, epoch: claim.epoch, reason };
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

/// Whether the hub's forwarder should go round after `command`, and with a full sync: the hub learns of
/// handoffs, renewals and session ends (claims left pending hold on with a new expiry) from the next sync, of
/// releases from `release_now` (a claim taken back, it never held or no longer holds); the events of all of
/// them go with the next push.
fn hub_wake_for(command: &Command) -> Option<bool> {
    match command {
        Command::Handoff { .. } | Command::Renew { .. } | Command::SessionEnd { .. } => Some(true),
        Command::Release { .. } | Command::TakeBack { .. } => Some(false),
        _ => None,
    }
}

pub(crate) type RpcResult = Result<Value, ErrorObjectOwned>;

/// The methods, as each domain registers them.
pub(super) type Methods = RpcModule<Arc<Context>>;

/// Builds the module with every method of the contract: each domain registers its own.
pub fn module(context: Arc<Context>) -> Methods {
    let mut module = RpcModule::new(context);
    sidecar::register(&mut module);
    claims::register(&mut module);
    sessions::register(&mut module);
    messages::register(&mut module);
    checkpoints::register(&mut module);
    commits::register(&mut module);
    tasks::register(&mut module);
    worktrees::register(&mut module);
    land::register(&mut module);
    module
}

/// Registers `handler` as the method `name` (a name of the contract, [`lanes_proto::method`]).
fn add<F, Fut>(module: &mut Methods, name: &'static str, handler: F)
where
    F: Fn(Params<'static>, Arc<Context>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = RpcResult> + Send + 'static,
{
    if let Err(e) = module.register_async_method(name, move |params, cx, _| handler(params, Arc::clone(&cx))) {
        unreachable!("method {name} registered twice: {e}");
    }
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
        client: conflict.client.clone(),
    }
}

/// Whole seconds left, rounded up: a live claim never shows `expires in 0s`.
fn secs_left(expires_at: Timestamp, now: Timestamp) -> u64 {
    u64::try_from(expires_at.remaining(now).as_millis().div_ceil(1000)).unwrap_or(u64::MAX)
}

pub(crate) fn rfc3339(t: Timestamp) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(t.0)).to_string()
}
