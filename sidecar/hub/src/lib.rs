//! The lanes hub (DESIGN.md §9): one claim space for the sidecars of many machines, served as JSON-RPC over
//! WebSocket, kept in SQLite (one box) or etcd (a cluster).
//!
//! The hub decides claims; the sidecars keep deciding everything else and forward their events. A hub claim
//! is named by the sidecar that made it (its `origin`) and that sidecar's claim id, which makes every write
//! idempotent: a sidecar that lost its connection states its claims again and the hub converges.

#![forbid(unsafe_code)]

mod batch;
mod etcd;
mod server;
pub mod space;
mod sqlite;
pub mod web;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonrpsee::Extensions;
use jsonrpsee::RpcModule;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use lanes_proto::MessageView;
use lanes_proto::hub::{
    HubAcquireParams, HubBoard, HubClaimsReply, HubCursor, HubEventsParams, HubEventsReply, HubGrant, HubHelloReply,
    HubMailParams, HubMailReply, HubProjectFigures, HubProjectParams, HubPushParams, HubReleaseParams, HubReleaseReply,
    HubSendParams, HubSendReply, HubStatusParams, HubStatusReply, HubSyncParams, HubSyncReply, method,
};
use lanes_proto::{ConflictView, ErrorCode, ErrorData, HelloParams, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use server::{ServeOptions, serve};
use space::{Held, plan_sync};

/// The most events one `hub.push` may carry (etcd allows 128 operations in one Txn).
pub const MAX_PUSH: usize = 100;

/// The most events the hub keeps from one sidecar: each push drops the ones older than that, so a busy team's
/// event log does not fill the store (etcd refuses every write, grants too, once its space quota is full). A
/// reader further behind starts at the oldest one kept.
pub const KEPT_EVENTS: u64 = 10_000;

/// The oldest event a push that ends at `last` keeps, when there are older ones to drop: both stores delete
/// the events before it in the push's own transaction.
fn oldest_kept_event(last: u64) -> Option<u64> {
    last.checked_sub(KEPT_EVENTS - 1).filter(|&oldest| oldest > 1)
}

/// How long a sidecar's word on its live sessions counts: it says it again every 10 s (a `hub.mail` with
/// `present`), so a sidecar silent this long is gone and its sessions get no more mail.
const PRESENCE_FRESH_MS: u64 = 30_000;

/// The most sessions one `hub.mail` may name.
const MAX_SESSIONS: usize = 1000;

/// What a sidecar last said of its live sessions (`hub.mail`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Presence {
    /// Its live sessions.
    pub sessions: Vec<String>,
    /// When it said so, Unix milliseconds.
    pub at_ms: u64,
    /// What it said of each (client, branch, worktree).
    #[serde(default)]
    pub briefs: Vec<lanes_proto::hub::HubSessionBrief>,
    /// Its task board, landing queue and pending work.
    #[serde(default)]
    pub board: lanes_proto::hub::HubBoard,
}

/// Why the hub refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Another machine's claim is in the way.
    #[error("held by another session")]
    Conflict(Vec<ConflictView>),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The store could not answer.
    #[error("{0}")]
    Unavailable(String),
    /// The claim to renew is gone from the store (its lease ran out): it has to be granted again.
    #[error("the claim lapsed on the hub")]
    Lapsed,
    /// What the request names is not there (a session no machine has live).
    #[error("{0}")]
    NotFound(String),
}

/// Where the hub keeps its state.
pub enum Store {
    /// One SQLite file.
    Sqlite(Arc<sqlite::SqliteStore>),
    /// An etcd cluster (boxed: its client is large).
    Etcd(Box<etcd::EtcdStore>),
}

impl Store {
    /// Opens `sqlite:PATH` or `etcd:URL[,URL…]`.
    pub async fn open(spec: &str) -> Result<Store, HubError> {
        if let Some(path) = spec.strip_prefix("sqlite:") {
            return Ok(Store::Sqlite(Arc::new(sqlite::SqliteStore::open(std::path::Path::new(path))?)));
        }
        if let Some(urls) = spec.strip_prefix("etcd:") {
            let endpoints: Vec<String> =
                urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect();
            if endpoints.is_empty() {
                return Err(HubError::Invalid("etcd: needs at least one URL, e.g. etcd:http://127.0.0.1:2379".into()));
            }
            return Ok(Store::Etcd(Box::new(etcd::EtcdStore::connect(&endpoints).await?)));
        }
        Err(HubError::Invalid(format!("unknown store {spec:?}: use sqlite:PATH or etcd:URL[,URL...]")))
    }

    /// `sqlite` or `etcd`.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Etcd(_) => "etcd",
        }
    }

    async fn acquire(&self, project: &str, origin: &str, claim: lanes_proto::hub::HubClaim) -> Result<u64, HubError> {
        match self {
            Store::Sqlite(s) => {
                let (project, origin, now) = (project.to_owned(), origin.to_owned(), now_ms());
                blocking(s, move |s| s.acquire(&project, &origin, claim, now)).await
            }
            Store::Etcd(s) => retry(|| s.acquire(project, origin, claim.clone(), now_ms())).await,
        }
    }

    async fn renew(&self, project: &str, claim: lanes_proto::hub::HubClaim, held: Held) -> Result<(), HubError> {
        match self {
            Store::Sqlite(s) => {
                let (project, now) = (project.to_owned(), now_ms());
                blocking(s, move |s| s.renew(&project, claim, held, now)).await
            }
            Store::Etcd(s) => retry(|| s.renew(project, claim.clone(), held.clone(), now_ms())).await,
        }
    }

    async fn release(&self, project: &str, held: &Held) -> Result<(), HubError> {
        match self {
            Store::Sqlite(s) => {
                let (project, held) = (project.to_owned(), held.clone());
                blocking(s, move |s| s.release(&project, &held)).await
            }
            Store::Etcd(s) => retry(|| s.release(project, held)).await,
        }
    }

    async fn among(&self, project: &str, origin: &str, ids: &[u64]) -> Result<Vec<Held>, HubError> {
        match self {
            Store::Sqlite(s) => Ok(s.among(project, origin, ids)),
            Store::Etcd(s) => retry(|| s.among(project, origin, ids)).await,
        }
    }

    async fn of_origin(&self, project: &str, origin: &str) -> Result<Vec<Held>, HubError> {
        match self {
            Store::Sqlite(s) => Ok(s.of_origin(project, origin)),
            Store::Etcd(s) => retry(|| s.of_origin(project, origin)).await,
        }
    }

    async fn claims(&self, project: &str) -> Result<Vec<lanes_proto::hub::HubClaimView>, HubError> {
        match self {
            Store::Sqlite(s) => Ok(s.claims(project, now_ms())),
            Store::Etcd(s) => retry(|| s.claims(project, now_ms())).await,
        }
    }

    /// How many claims of `project` are live, and at most `limit` of them, those named in `first` first.
    async fn some_claims(
        &self,
        project: &str,
        first: &std::collections::BTreeSet<(String, u64)>,
        limit: usize,
    ) -> Result<space::SomeClaims, HubError> {
        match self {
            Store::Sqlite(s) => Ok(s.some_claims(project, now_ms(), first, limit)),
            Store::Etcd(s) => retry(|| s.some_claims(project, now_ms(), first, limit)).await,
        }
    }

    async fn push(
        &self,
        project: &str,
        origin: &str,
        after: u64,
        events: &[lanes_proto::EventView],
    ) -> Result<u64, HubError> {
        match self {
            Store::Sqlite(s) => {
                let (project, origin, events) = (project.to_owned(), origin.to_owned(), events.to_vec());
                blocking(s, move |s| s.push(&project, &origin, after, events)).await
            }
            Store::Etcd(s) => retry(|| s.push(project, origin, after, events)).await,
        }
    }

    async fn events(&self, p: &HubEventsParams) -> Result<(Vec<lanes_proto::EventView>, u64), HubError> {
        let limit = p.limit.unwrap_or(1000).clamp(1, 10_000);
        match self {
            Store::Sqlite(s) => s.events(&p.project, &p.origin, p.after, limit),
            Store::Etcd(s) => retry(|| s.events(&p.project, &p.origin, p.after, limit)).await,
        }
    }
}

impl Store {
    async fn set_presence(&self, project: &str, origin: &str, presence: &Presence) -> Result<(), HubError> {
        match self {
            Store::Sqlite(s) => {
                let (project, origin, presence) = (project.to_owned(), origin.to_owned(), presence.clone());
                blocking(s, move |s| s.set_presence(&project, &origin, &presence)).await
            }
            Store::Etcd(s) => retry(|| s.set_presence(project, origin, presence)).await,
        }
    }

    async fn presence(&self, project: &str) -> Result<Vec<(String, Presence)>, HubError> {
        match self {
            Store::Sqlite(s) => s.presence(project),
            Store::Etcd(s) => retry(|| s.presence(project)).await,
        }
    }

    async fn put_mail(&self, project: &str, origin: &str, messages: &[MessageView]) -> Result<(), HubError> {
        let now = now_ms();
        match self {
            Store::Sqlite(s) => {
                let (project, messages) = (project.to_owned(), messages.to_vec());
                blocking(s, move |s| s.put_mail(&project, &messages)).await
            }
            Store::Etcd(s) => retry(|| s.put_mail(project, origin, messages, now)).await,
        }
    }

    async fn take_mail(&self, project: &str, sessions: &[String]) -> Result<Vec<MessageView>, HubError> {
        match self {
            Store::Sqlite(s) => {
                let (project, sessions) = (project.to_owned(), sessions.to_vec());
                blocking(s, move |s| s.take_mail(&project, &sessions)).await
            }
            // Not retried: a delete whose answer was lost took the messages with it.
            Store::Etcd(s) => s.take_mail(project, sessions).await,
        }
    }
}

/// Runs a write of the SQLite store on tokio's blocking pool: it waits for fsync, and a runtime worker waiting
/// there could not read the requests that would join the next batch (with two workers, batches of two).
async fn blocking<T: Send + 'static>(
    store: &Arc<sqlite::SqliteStore>,
    write: impl FnOnce(&sqlite::SqliteStore) -> Result<T, HubError> + Send + 'static,
) -> Result<T, HubError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || write(&store))
        .await
        .unwrap_or_else(|e| Err(HubError::Unavailable(format!("hub store: {e}"))))
}

/// Runs an etcd operation again when it could not reach the cluster: the client balances over the
/// endpoints, so the next attempt goes to another member when one died. Every operation is safe to repeat.
async fn retry<T, F: Future<Output = Result<T, HubError>>>(mut operation: impl FnMut() -> F) -> Result<T, HubError> {
    let mut attempt = 0;
    loop {
        match operation().await {
            Err(HubError::Unavailable(message)) if attempt < 6 => {
                tracing::debug!("etcd attempt {attempt} failed: {message}");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 << attempt.min(4))).await;
            }
            other => return other,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the handlers share.
pub struct Hub {
    store: Store,
    /// What the web view shows besides the store: the projects this hub served and their latest events.
    seen: std::sync::Mutex<Seen>,
}

/// The projects a hub served since it started, with what the web view shows of each.
#[derive(Default)]
struct Seen {
    projects: std::collections::BTreeMap<String, ProjectSeen>,
}

/// One project as this hub saw it: its latest events (grants, releases, what sidecars pushed), newest last,
/// and when it granted and how long each decision took, for its figures.
#[derive(Default)]
struct ProjectSeen {
    events: std::collections::VecDeque<Value>,
    grants: std::collections::VecDeque<std::time::Instant>,
    decisions: std::collections::VecDeque<Duration>,
}

/// How many claims the web view lists (pending work first); `lanes hub claims` lists them all.
const WEB_CLAIMS: usize = 1000;
/// How many events the web view keeps per project.
const RECENT_EVENTS: usize = 50;
/// How many decision times a project's percentiles are taken over.
const RECENT_DECISIONS: usize = 1000;
/// The window grants per second are counted over.
const RATE_WINDOW: Duration = Duration::from_secs(10);

impl ProjectSeen {
    /// Notes a grant that took `decided` (the conflict check and the store's write).
    fn granted(&mut self, decided: Duration) {
        let now = std::time::Instant::now();
        self.grants.push_back(now);
        while self.grants.front().is_some_and(|at| now.duration_since(*at) > RATE_WINDOW) {
            self.grants.pop_front();
        }
        if self.decisions.len() == RECENT_DECISIONS {
            self.decisions.pop_front();
        }
        self.decisions.push_back(decided);
    }

    /// Grants per second over the last [`RATE_WINDOW`], and the p50 and p99 decision times in ms.
    fn figures(&self) -> (f64, f64, f64) {
        let now = std::time::Instant::now();
        let recent = self.grants.iter().filter(|at| now.duration_since(**at) <= RATE_WINDOW).count();
        let mut times: Vec<Duration> = self.decisions.iter().copied().collect();
        times.sort();
        let at = |q: f64| {
            let i = ((times.len().saturating_sub(1)) as f64 * q).round() as usize;
            times.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        (recent as f64 / RATE_WINDOW.as_secs_f64(), at(0.5), at(0.99))
    }
}

impl Hub {
    /// A hub over `store`.
    pub fn new(store: Store) -> Hub {
        Hub { store, seen: std::sync::Mutex::new(Seen::default()) }
    }

    /// Notes `events` of `project` (made or relayed by the sidecar `origin`) for the web view.
    fn saw(&self, project: &str, origin: &str, events: impl IntoIterator<Item = Value>) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !seen.projects.contains_key(project) && seen.projects.len() >= 10_000 {
            return;
        }
        let recent = &mut seen.projects.entry(project.to_owned()).or_default().events;
        for mut event in events {
            event["machine"] = Value::from(origin);
            add_event(recent, event);
        }
    }

    /// `project`'s figures, with its `claims` and live `sidecars` counted by the caller.
    fn figures(&self, project: &str, claims: usize, sidecars: usize) -> HubProjectFigures {
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (grants_per_s, p50, p99) = seen.projects.get(project).map(ProjectSeen::figures).unwrap_or_default();
        HubProjectFigures {
            project: project.to_owned(),
            claims,
            sidecars,
            grants_per_s: (grants_per_s * 10.0).round() / 10.0,
            decision_p50_ms: (p50 * 1000.0).round() / 1000.0,
            decision_p99_ms: (p99 * 1000.0).round() / 1000.0,
        }
    }

    /// Notes a grant of `project` and how long it took.
    fn granted(&self, project: &str, decided: Duration) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(project) = seen.projects.get_mut(project) {
            project.granted(decided);
        }
    }

    fn event(kind: &str, claim: &lanes_proto::hub::HubClaim) -> Value {
        serde_json::json!({"at": space::rfc3339(now_ms()), "kind": kind, "session": claim.holder, "claim": claim.id,
            "data": {"scopes": claim.scopes}})
    }
}

impl web::Source for Hub {
    fn view(&self, project: Option<&str>) -> web::ViewFuture<'_> {
        let project = project.map(str::to_owned);
        Box::pin(async move {
            let (projects, only) = {
                let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let projects: Vec<String> = seen.projects.keys().cloned().collect();
                let only = (projects.len() == 1).then(|| projects[0].clone());
                (projects, only)
            };
            let Some(project) = project.or(only) else {
                return Ok(serde_json::json!({"title": "lanes hub: choose a project", "projects": projects}));
            };
            let presence = self.store.presence(&project).await.map_err(|e| e.to_string())?;
            // The page lists pending work first, and at most WEB_CLAIMS claims: a project can hold 100,000, and
            // the view is read again every 200 ms while a page is open. The figures count them all.
            let pending: std::collections::BTreeSet<(String, u64)> = presence
                .iter()
                .flat_map(|(origin, p)| p.board.pending.iter().map(move |v| (origin.clone(), v.id)))
                .collect();
            let some = self.store.some_claims(&project, &pending, WEB_CLAIMS).await.map_err(|e| e.to_string())?;
            let now = now_ms();
            let live = live(&presence, now);
            let machines: Vec<Value> = live
                .iter()
                .map(|(origin, p)| {
                    serde_json::json!({"machine": origin, "sessions": p.sessions, "seen": space::rfc3339(p.at_ms)})
                })
                .collect();
            let sessions: Vec<Value> = live
                .iter()
                .flat_map(|(origin, p)| p.sessions.iter().map(move |session| (origin, p, session)))
                .map(|(origin, p, session)| {
                    let held = some.per_session.get(&(origin.clone(), session.clone())).copied().unwrap_or(0);
                    let brief = p.briefs.iter().find(|b| b.id == *session);
                    serde_json::json!({"id": session, "machine": origin, "claims": held,
                        "client": brief.and_then(|b| b.client.as_deref()),
                        "branch": brief.and_then(|b| b.branch.as_deref()),
                        "worktree": brief.and_then(|b| b.worktree.as_deref())})
                })
                .collect();
            // A claim's worktree: the pending work's, as its machine said, else its holder's session's.
            let said_by: std::collections::HashMap<&str, &Presence> =
                presence.iter().map(|(origin, p)| (origin.as_str(), p)).collect();
            let claims: Vec<Value> = some
                .shown
                .iter()
                .map(|c| {
                    let said = said_by.get(c.origin.as_str()).copied();
                    let pending = said.and_then(|p| p.board.pending.iter().find(|v| v.id == c.claim.id));
                    let session = space::session_of(&c.claim.holder);
                    let brief = said.and_then(|p| p.briefs.iter().find(|b| b.id == session));
                    let worktree = pending.map(|v| v.worktree.as_str()).or(brief.and_then(|b| b.worktree.as_deref()));
                    serde_json::json!({"id": c.claim.id, "holder": c.claim.holder, "scopes": c.claim.scopes,
                        "mode": c.claim.mode, "machine": c.origin, "epoch": c.epoch,
                        "expires_in_secs": c.claim.ttl_secs, "worktree": worktree, "pending": pending.is_some(),
                        "branch": pending.and_then(|v| v.branch.as_deref())})
                })
                .collect();
            let tasks = on_machines(&live, |board| &board.tasks);
            let queue = on_machines(&live, |board| &board.queue);
            let mut events = {
                let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let this = seen.projects.get(&project);
                this.map(|p| p.events.iter().rev().cloned().collect::<Vec<_>>()).unwrap_or_default()
            };
            events.sort_by_cached_key(newest_first);
            let mut figures =
                serde_json::to_value(self.figures(&project, some.total, machines.len())).map_err(|e| e.to_string())?;
            figures["store"] = Value::from(self.store.kind());
            Ok(serde_json::json!({"title": format!("lanes hub: {project}"), "project": project, "projects": projects,
                "figures": [figures], "machines": machines, "sessions": sessions, "claims": claims, "claims_total": some.total, "tasks": tasks,
                "queue": queue, "events": events}))
        })
    }
}

/// Adds `event` (with its `machine`) to a project's recent events, newest last, each fact once.
///
/// The hub notes a grant or release (no `seq`) the moment it makes it; the sidecar's own record of it (with
/// its `seq`), pushed later, takes the note's place. A note of something already shown (the record came first,
/// or a sync granted the same claim again) is dropped.
fn add_event(recent: &mut std::collections::VecDeque<Value>, event: Value) {
    let relayed = event.get("seq").is_some();
    let twin = recent.iter().position(|e| {
        !(relayed && e.get("seq").is_some())
            // The claim id first: it tells most events apart at once (this runs for each of the last 50 on
            // every grant and release).
            && ["claim", "kind", "machine"].into_iter().all(|key| e.get(key) == event.get(key))
    });
    match twin {
        Some(i) if relayed => recent[i] = event,
        Some(_) => {}
        None => {
            if recent.len() == RECENT_EVENTS {
                recent.pop_front();
            }
            recent.push_back(event);
        }
    }
}

/// The order of the web view's events: newest first by when they happened, not by when the hub heard of them (a
/// machine's events arrive in pushes, later than other machines' news). Times are whole seconds, so within one
/// second they go by machine, each machine's newest logged first, after the hub's notes of its grants not yet
/// pushed.
fn newest_first(event: &Value) -> (std::cmp::Reverse<String>, String, std::cmp::Reverse<u64>) {
    let text = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
    (std::cmp::Reverse(text("at")), text("machine"), std::cmp::Reverse(event["seq"].as_u64().unwrap_or(u64::MAX)))
}

/// The machines that said they are here within [`PRESENCE_FRESH_MS`].
fn live(presence: &[(String, Presence)], now: u64) -> Vec<&(String, Presence)> {
    presence.iter().filter(|(_, p)| now.saturating_sub(p.at_ms) < PRESENCE_FRESH_MS).collect()
}

/// One list of every live machine's board, each item with its `machine`.
fn on_machines<T: Serialize>(live: &[&(String, Presence)], list: impl Fn(&HubBoard) -> &Vec<T>) -> Vec<Value> {
    live.iter()
        .flat_map(|(origin, presence)| list(&presence.board).iter().map(move |item| (origin, item)))
        .filter_map(|(origin, item)| {
            let mut value = serde_json::to_value(item).ok()?;
            value["machine"] = Value::from(origin.as_str());
            Some(value)
        })
        .collect()
}

type RpcResult = Result<Value, ErrorObjectOwned>;

/// The hub's methods.
pub fn module(hub: Arc<Hub>) -> RpcModule<Arc<Hub>> {
    let mut module = RpcModule::new(hub);
    let registered = [
        module.register_async_method(method::HELLO, |p, hub, ext| async move { hello(p, &hub, &ext) }).map(|_| ()),
        module
            .register_async_method(method::ACQUIRE, |p, hub, ext| async move { acquire(p, &hub, &ext).await })
            .map(|_| ()),
        module.register_async_method(method::SYNC, |p, hub, ext| async move { sync(p, &hub, &ext).await }).map(|_| ()),
        module
            .register_async_method(method::RELEASE, |p, hub, ext| async move { release(p, &hub, &ext).await })
            .map(|_| ()),
        module
            .register_async_method(method::CLAIMS, |p, hub, ext| async move { claims(p, &hub, &ext).await })
            .map(|_| ()),
        module.register_async_method(method::PUSH, |p, hub, ext| async move { push(p, &hub, &ext).await }).map(|_| ()),
        module
            .register_async_method(method::EVENTS, |p, hub, ext| async move { events(p, &hub, &ext).await })
            .map(|_| ()),
        module.register_async_method(method::SEND, |p, hub, ext| async move { send(p, &hub, &ext).await }).map(|_| ()),
        module.register_async_method(method::MAIL, |p, hub, ext| async move { mail(p, &hub, &ext).await }).map(|_| ()),
        module
            .register_async_method(method::STATUS, |p, hub, ext| async move { status(p, &hub, &ext).await })
            .map(|_| ()),
    ];
    for result in registered {
        result.expect("method names are unique");
    }
    module
}

/// Parses params after the per-connection rate limit let the request through.
fn admit<T: serde::de::DeserializeOwned>(params: &Params<'static>, ext: &Extensions) -> Result<T, ErrorObjectOwned> {
    if let Some(limiter) = ext.get::<Arc<server::RateLimiter>>()
        && !limiter.admit()
    {
        return Err(error(ErrorCode::Unavailable, "rate limited: this connection sends too many requests".into()));
    }
    params.parse().map_err(|e| error(ErrorCode::InvalidArgument, format!("invalid params: {}", e.message())))
}

/// Checks the names every request carries: its project and, where there is one, the sidecar's origin.
fn names(project: &str, origin: Option<&str>) -> Result<(), ErrorObjectOwned> {
    if project.is_empty() || project.len() > 512 {
        return Err(error(ErrorCode::InvalidArgument, "project must be 1 to 512 bytes".into()));
    }
    if origin.is_some_and(|o| o.is_empty() || o.len() > 128 || o.contains('/')) {
        return Err(error(ErrorCode::InvalidArgument, "origin must be 1 to 128 bytes, without '/'".into()));
    }
    Ok(())
}

fn hello(params: Params<'static>, hub: &Hub, ext: &Extensions) -> RpcResult {
    let hello: HelloParams = admit(&params, ext)?;
    if hello.protocol != PROTOCOL_VERSION {
        return Err(error(
            ErrorCode::InvalidArgument,
            format!(
                "this hub speaks lanes protocol {PROTOCOL_VERSION} and {} {} speaks {}: upgrade lanes on the older side",
                hello.client, hello.version, hello.protocol
            ),
        ));
    }
    reply(&HubHelloReply {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: PROTOCOL_VERSION,
        store: hub.store.kind().to_owned(),
    })
}

async fn acquire(params: Params<'static>, hub: &Hub, ext: &Extensions) -> RpcResult {
    let p: HubAcquireParams = admit(&params, ext)?;
    names(&p.project, Some(&p.origin))?;
    space::check_claim(&p.claim).map_err(|e| error(ErrorCode::InvalidArgument, e))?;
    let event = Hub::event("grant", &p.claim);
    let started = std::time::Instant::now();
    let epoch = hub.store.acquire(&p.project, &p.origin, p.claim).await.map_err(to_rpc)?;
    hub.saw(&p.project, &p.origin, [event]);
    hub.granted(&p.project, started.elapsed());
    reply(&HubGrant { epoch })
}

async fn sync(params: Params<'static>, hub: &Hub, ext: &Extensions) -> RpcResult {
    let p: HubSyncParams = admit(&params, ext)?;
    names(&p.project, Some(&p.origin))?;
    let (valid, invalid): (Vec<_>, Vec<_>) = p.claims.into_iter().partition(|c| space::check_claim(c).is_ok());
    let known = hub.store.of_origin(&p.project, &p.origin).await.map_err(to_rpc)?;
    let plan = plan_sync(known, p.upto, valid, now_ms());
    tracing::debug!(
        "sync from {}: {} current, {} to renew, {} to grant, {} to release",
        p.origin,
        plan.current.len(),
        plan.renew.len(),
        plan.acquire.len(),
        plan.release.len()
    );
    let refused = invalid.into_iter().map(|c| c.id).collect();
    let mut answer = HubSyncReply { held: plan.current, refused, ..HubSyncReply::default() };
    let (project, origin) = (&p.project, &p.origin);
    // Each step's writes go to the store at once, so they join one batch rather than one after another.
    let mut again = plan.acquire;
    let renewals = plan.renew.into_iter().map(|(claim, held)| async move {
        let renewed = hub.store.renew(project, claim.clone(), held).await;
        (claim, renewed)
    });
    for (claim, renewed) in futures::future::join_all(renewals).await {
        match renewed {
            Ok(()) => answer.held.push(claim.id),
            Err(HubError::Lapsed) => again.push(claim),
            Err(e) => return Err(to_rpc(e)),
        }
    }
    let mut seen = Vec::new();
    let grants = again.into_iter().map(|claim| async move {
        let event = Hub::event("grant", &claim);
        (claim.id, event, hub.store.acquire(project, origin, claim).await)
    });
    for (id, event, granted) in futures::future::join_all(grants).await {
        match granted {
            Ok(_) => {
                seen.push(event);
                answer.held.push(id);
            }
            Err(HubError::Conflict(_) | HubError::Invalid(_)) => answer.refused.push(id),
            Err(e) => return Err(to_rpc(e)),
        }
    }
    answer.released = release_all(hub, project, origin, plan.release, seen).await?;
    reply(&answer)
}

async fn release(params: Params<'static>, hub: &Hub, ext: &Extensions) -> RpcResult {
    let p: HubReleaseParams = admit(&params, ext)?;
    names(&p.project, Some(&p.origin))?;
    let mut ids = p.ids;
    ids.sort_unstable();
    ids.dedup();
    let held = hub.store.among(&p.project, &p.origin, &ids).await.map_err(to_rpc)?;
    let released = release_all(hub, &p.project, &p.origin, held, Vec::new()).await?;
    reply(&HubReleaseReply { released })
}

/// Releases `held` (all at once, so they join one batch) and tells the live view, with the events `seen`
/// before; the ids released.
async fn release_all(
    hub: &Hub,
    project: &str,
    origin: &str,
    held: Vec<Held>,
    mut seen: Vec<Value>,
) -> Result<Vec<u64>, ErrorObjectOwned> {
    let releases = held.iter().map(|h| hub.store.release(project, h));
    for released in futures::future::join_all(releases).await {
        released.map_err(to_rpc)?;
    }
    let ids = held.iter().map(|h| h.claim.id).collect();
    seen.extend(held.iter().map(|h| Hub::event("release", &h.claim)));
    hub.saw(project, origin, seen);
    Ok(ids)
}

async fn claims(params: Params<'static>, hub: &Hub, ext: &Extensions) -> RpcResult {
    let p: HubProjectParams = admit(&params, ext)?;
    names(&p.project, None)?;
    reply(&HubClaimsReply { claims: hub.store.claims(&p.project).await.map_err(to_rpc)? })
}

async fn push(params: Params<'static>, hub: &Hub, ext: &Extensions) -> RpcResult {
    let p: HubPushParams = admit(&params, ext)?;
    names(&p.project, Some(&p.origin))?;
    if p.events.len() > MAX_PUSH {
        return Err(error(ErrorCode::InvalidArgument, format!("at most {MAX_PUSH} events per push")));
    }
    let cursor = hub.store.push(&p.project, &p.origin, p.after, &p.events).await.map_err(to_rpc)?;
    hub.saw(&p.project, &p.origin, p.events.iter().filter_map(|e| serde_json::to_value(e).ok()));
    tracing::debug!("push from {} after {} ({} events): cursor {cursor}", p.origin, p.after, p.events.len());
    reply(&HubCursor { cursor })
}

async fn events(params: Params<'static>, hub: &Hub, ext: &Extensions) -> RpcResult {
    let p: HubEventsParams = admit(&params, ext)?;
    names(&p.project, Some(&p.origin))?;
    let (events, cursor) = hub.store.events(&p).await.map_err(to_rpc)?;
    reply(&HubEventsReply { events, cursor })
}

/// Leaves a message for a session live on another machine of the project (or, to `@all`, for each of them).
async fn send(params: Params<'static>, hub: &Hub, ext: &Extensions) -> RpcResult {
    let p: HubSendParams = admit(&params, ext)?;
    names(&p.project, Some(&p.origin))?;
    if p.message.text.len() > lanes_core::MAX_MESSAGE_BYTES || p.message.to.is_empty() || p.message.to.len() > 256 {
        return Err(error(ErrorCode::InvalidArgument, "a message needs a recipient and at most 8 KiB of text".into()));
    }
    let now = now_ms();
    let mut live: Vec<String> = hub
        .store
        .presence(&p.project)
        .await
        .map_err(to_rpc)?
        .into_iter()
        .filter(|(origin, presence)| *origin != p.origin && now.saturating_sub(presence.at_ms) < PRESENCE_FRESH_MS)
        .flat_map(|(_, presence)| presence.sessions)
        .filter(|session| *session != p.message.from)
        .collect();
    live.sort();
    live.dedup();
    let to: Vec<String> = match p.message.to.as_str() {
        "@all" => live,
        one if live.iter().any(|s| s == one) => vec![one.to_owned()],
        one => {
            return Err(to_rpc(HubError::NotFound(format!(
                "no session {one} is live on this machine or any other of the project; `lanes status` lists them"
            ))));
        }
    };
    let messages: Vec<MessageView> =
        to.iter().map(|session| MessageView { to: session.clone(), ..p.message.clone() }).collect();
    hub.store.put_mail(&p.project, &p.origin, &messages).await.map_err(to_rpc)?;
    reply(&HubSendReply { to })
}

/// Notes a sidecar's live sessions and hands it the messages waiting for them.
async fn mail(params: Params<'static>, hub: &Hub, ext: &Extensions) -> RpcResult {
    let p: HubMailParams = admit(&params, ext)?;
    names(&p.project, Some(&p.origin))?;
    if p.sessions.len() > MAX_SESSIONS {
        return Err(error(ErrorCode::InvalidArgument, format!("at most {MAX_SESSIONS} sessions per request")));
    }
    let board = p.board.unwrap_or_default();
    let too_long = [board.tasks.len(), board.queue.len(), board.pending.len()].iter().any(|n| *n > HubBoard::MAX_ITEMS);
    if too_long || board.bytes() > HubBoard::MAX_BYTES {
        let (items, bytes) = (HubBoard::MAX_ITEMS, HubBoard::MAX_BYTES);
        return Err(error(
            ErrorCode::InvalidArgument,
            format!("a board has at most {items} items in each list and {bytes} bytes"),
        ));
    }
    if p.present {
        let presence = Presence { sessions: p.sessions.clone(), at_ms: now_ms(), briefs: p.briefs, board };
        hub.store.set_presence(&p.project, &p.origin, &presence).await.map_err(to_rpc)?;
    }
    let messages = hub.store.take_mail(&p.project, &p.sessions).await.map_err(to_rpc)?;
    hub.saw(&p.project, &p.origin, []);
    reply(&HubMailReply { messages })
}

/// The figures of each project this hub served since it started (or of the one asked for).
async fn status(params: Params<'static>, hub: &Hub, ext: &Extensions) -> RpcResult {
    let p: HubStatusParams = admit(&params, ext)?;
    let names: Vec<String> = {
        let seen = hub.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.projects.keys().filter(|name| p.project.as_ref().is_none_or(|only| only == *name)).cloned().collect()
    };
    let mut projects = Vec::with_capacity(names.len());
    for name in names {
        let claims = hub.store.some_claims(&name, &Default::default(), 0).await.map_err(to_rpc)?.total;
        let sidecars = live(&hub.store.presence(&name).await.map_err(to_rpc)?, now_ms()).len();
        projects.push(hub.figures(&name, claims, sidecars));
    }
    reply(&HubStatusReply {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        store: hub.store.kind().to_owned(),
        projects,
    })
}

/// Serializes a reply object and adds `protocol`, which every reply carries.
fn reply<T: Serialize>(body: &T) -> RpcResult {
    lanes_proto::with_protocol(body).map_err(|e| error(ErrorCode::Internal, e.to_string()))
}

fn error(code: ErrorCode, message: String) -> ErrorObjectOwned {
    with_conflicts(code, message, Vec::new())
}

fn with_conflicts(code: ErrorCode, message: String, conflicts: Vec<ConflictView>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code.rpc_code(), message, Some(ErrorData::new(code, conflicts)))
}

fn to_rpc(e: HubError) -> ErrorObjectOwned {
    match e {
        HubError::Conflict(conflicts) => {
            let names: Vec<String> = conflicts
                .iter()
                .map(|c| {
                    format!(
                        "{} is held by {} on {}, {}s left",
                        c.scope,
                        c.session.as_deref().unwrap_or("?"),
                        c.worktree,
                        c.expires_in_secs
                    )
                })
                .collect();
            let message = format!("{}: wait for it, or ask the holder to release or hand it off", names.join("; "));
            with_conflicts(ErrorCode::Conflict, message, conflicts)
        }
        HubError::Invalid(message) => error(ErrorCode::InvalidArgument, message),
        HubError::Unavailable(message) => error(ErrorCode::Unavailable, message),
        HubError::Lapsed => error(ErrorCode::NotFound, HubError::Lapsed.to_string()),
        HubError::NotFound(message) => error(ErrorCode::NotFound, message),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kinds(recent: &std::collections::VecDeque<Value>) -> Vec<String> {
        recent
            .iter()
            .map(|e| format!("{}{}#{}", e["kind"], e["claim"], e.get("seq").map_or(0, |s| s.as_u64().unwrap_or(0))))
            .collect()
    }

    #[test]
    fn each_grant_shows_once_whether_noted_twice_or_its_record_comes_before_or_after_the_note() {
        let note = |claim: u64| json!({"kind": "grant", "claim": claim, "machine": "m1"});
        let record = |claim: u64, seq: u64| json!({"kind": "grant", "claim": claim, "machine": "m1", "seq": seq});
        let mut recent = std::collections::VecDeque::new();
        add_event(&mut recent, note(1));
        add_event(&mut recent, note(1)); // a sync granted claim 1 again before its record came
        add_event(&mut recent, record(1, 5)); // the record takes the note's place
        add_event(&mut recent, record(2, 6));
        add_event(&mut recent, note(2)); // the note after its record
        add_event(&mut recent, record(1, 9)); // claim 1 granted again later: a fact of its own
        assert_eq!(kinds(&recent), ["\"grant\"1#5", "\"grant\"2#6", "\"grant\"1#9"]);
    }
}
