//! The sidecar's side of the shared hub (DESIGN.md §9). With `[hub]` configured, the hub decides claims:
//! a new claim the sidecar grants is confirmed by the hub before it is answered, and rolled back when the hub
//! refuses it or cannot be reached. A forwarder task keeps the hub in step: it states the sidecar's whole
//! claim set (`hub.sync`, which renews, re-grants after an outage and releases) and sends the event log
//! (sessions, claims, checkpoints, messages) after the hub's cursor. The event log is the durable outbox:
//! it is in the store before anything is answered, and the hub's cursor makes delivery exactly once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use jsonrpsee::client_transport::ws::{HeaderMap, HeaderValue};
use jsonrpsee::types::ErrorObjectOwned;
use lanes_proto::hub::{
    HubAcquireParams, HubBoard, HubClaim, HubCursor, HubGrant, HubHelloReply, HubMailParams, HubMailReply,
    HubPushParams, HubReleaseParams, HubReleaseReply, HubSendParams, HubSendReply, HubSessionBrief, HubSyncParams,
    HubSyncReply, method,
};
use lanes_proto::{ClaimView, ErrorCode, ErrorData, EventView, HelloParams, PROTOCOL_VERSION};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::config::HubConfig;
use crate::daemon::hub_connection::{CallFailure, HubConnection};
use crate::daemon::rpc::{self, Context};
use crate::daemon::state::{Answer, Command};

/// After no hub answered, calls fail at once for this long (so hooks do not wait on a dead hub).
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often [`reconnect`] tries the hubs again while none answers.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long connecting to one hub may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the forwarder syncs when nothing wakes it.
const SYNC_EVERY: Duration = Duration::from_secs(5);
/// How often the sidecar asks the hub for messages other machines left for its sessions.
const MAIL_EVERY: Duration = Duration::from_secs(1);
/// How often the sidecar tells the hub its live sessions again when they did not change (the hub forgets a
/// sidecar silent for 30 s).
const PRESENCE_EVERY: Duration = Duration::from_secs(10);
/// The most event bytes one push carries (the hub accepts requests of up to 4 MiB).
const MAX_PUSH_BYTES: usize = 1024 * 1024;
/// How long the forwarder gathers events after being woken before it pushes them: a push is an etcd write,
/// and the live view learns of grants and releases from the hub's own answers, not from the push.
const GATHER: Duration = Duration::from_millis(50);

/// Why a hub call failed.
#[derive(Debug)]
pub enum HubFailure {
    /// No hub answered.
    Unavailable(String),
    /// The hub answered with an error (a conflict, say).
    Refused(ErrorObjectOwned),
}

#[derive(Default)]
struct Connection {
    client: Option<Arc<HubConnection>>,
    url: usize,
}

/// What `lanes status` and `lanes doctor` show of the hub.
#[derive(Clone, Debug, Default)]
struct LinkState {
    connected: Option<String>,
    last_error: Option<String>,
    cursor: Option<u64>,
    last_event: u64,
    refused: Vec<u64>,
    /// After no hub answered: until when calls fail at once.
    down_until: Option<Instant>,
}

/// The sidecar's connection to its hubs.
pub struct HubLink {
    urls: Vec<String>,
    headers: HeaderMap,
    /// The repository's identity on the hub.
    pub project: String,
    /// This sidecar's identity on the hub (stable across restarts).
    pub origin: String,
    offline_deny: bool,
    connection: tokio::sync::Mutex<Connection>,
    state: Mutex<LinkState>,
    /// Wakes the forwarder (after a release, a handoff, new events).
    pub wake: tokio::sync::Notify,
    /// Wakes [`reconnect`] when no hub answered.
    went_down: tokio::sync::Notify,
    /// Whether the forwarder's next round syncs the claim set (after a handoff, a renewal, a release the hub
    /// did not take), not only pushes events.
    resync: std::sync::atomic::AtomicBool,
    /// A sync states the whole claim set as it was when read: a grant confirmed or a release made while one
    /// is under way would be undone by it (a released claim granted again), so they take turns with it.
    turn: tokio::sync::RwLock<()>,
    /// The id of the next message sent through the hub: unique for this origin (it starts at the start time
    /// in microseconds, so a restarted sidecar never reuses one).
    next_message: std::sync::atomic::AtomicU64,
}

impl HubLink {
    /// The link `[hub]` asks for, or `None` when no hub is configured.
    pub fn from_config(common_dir: &Path, config: &HubConfig) -> Result<Option<HubLink>> {
        if config.urls.is_empty() {
            return Ok(None);
        }
        let project = match &config.project {
            Some(project) => project.clone(),
            None => origin_project(common_dir)?,
        };
        let mut headers = HeaderMap::new();
        if let Some(token) = token(config)? {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).context("the hub token is not valid text")?;
            headers.insert("authorization", value);
        }
        Ok(Some(HubLink {
            urls: config.urls.clone(),
            headers,
            project,
            origin: origin_id(common_dir)?,
            offline_deny: config.offline_deny,
            connection: tokio::sync::Mutex::new(Connection::default()),
            state: Mutex::new(LinkState::default()),
            wake: tokio::sync::Notify::new(),
            went_down: tokio::sync::Notify::new(),
            resync: std::sync::atomic::AtomicBool::new(false),
            turn: tokio::sync::RwLock::new(()),
            next_message: std::sync::atomic::AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            ),
        }))
    }

    /// Wakes the forwarder to push events, and to sync the claim set too when `resync`.
    pub fn wake(&self, resync: bool) {
        if resync {
            self.resync.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.wake.notify_one();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connected client, connecting (in URL order, from the one after `skip`) if needed.
    async fn client(&self, skip: Option<&Arc<HubConnection>>) -> Result<Arc<HubConnection>, HubFailure> {
        // Checked before waiting for the connection: while no hub answers, [`reconnect`] may hold it for a
        // connect of its own, and a hook must not wait on that.
        if let Some(message) = self.down() {
            return Err(HubFailure::Unavailable(message));
        }
        let mut connection = self.connection.lock().await;
        if let Some(client) = &connection.client {
            let stale = skip.is_some_and(|s| Arc::ptr_eq(s, client)) || !client.is_connected();
            if !stale {
                return Ok(Arc::clone(client));
            }
            connection.client = None;
            connection.url = (connection.url + 1) % self.urls.len();
        }
        self.connect_in_order(&mut connection).await
    }

    /// Connects to the first hub that answers, in URL order from the current one; when none does, calls fail
    /// at once for [`RETRY_AFTER`].
    async fn connect_in_order(&self, connection: &mut Connection) -> Result<Arc<HubConnection>, HubFailure> {
        let mut errors = Vec::new();
        for step in 0..self.urls.len() {
            let index = (connection.url + step) % self.urls.len();
            let url = &self.urls[index];
            match self.connect(url).await {
                Ok(client) => {
                    let client = Arc::new(client);
                    connection.client = Some(Arc::clone(&client));
                    connection.url = index;
                    let mut state = self.state();
                    state.connected = Some(url.clone());
                    state.last_error = None;
                    state.down_until = None;
                    return Ok(client);
                }
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        let message = errors.join("; ");
        let mut state = self.state();
        state.connected = None;
        state.last_error = Some(message.clone());
        state.down_until = Some(Instant::now() + RETRY_AFTER);
        self.went_down.notify_one();
        Err(HubFailure::Unavailable(format!("no hub answers ({message})")))
    }

    async fn connect(&self, url: &str) -> Result<HubConnection, String> {
        let client = HubConnection::connect(url, self.headers.clone(), CONNECT_TIMEOUT, REQUEST_TIMEOUT).await?;
        let hello = HelloParams {
            client: "lanes-sidecar".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol: PROTOCOL_VERSION,
        };
        let reply: HubHelloReply = client.request(method::HELLO, &raw(&hello)?).await.map_err(|e| match e {
            CallFailure::Refused(error) => error.message().to_owned(),
            CallFailure::Lost(why) => why,
        })?;
        tracing::info!("connected to hub {url} ({} store, lanes {})", reply.store, reply.version);
        Ok(client)
    }

    /// One request to the hub, failing over to the next URL when the current hub is gone.
    pub async fn call<P: Serialize, R: DeserializeOwned>(&self, name: &str, params: &P) -> Result<R, HubFailure> {
        let params = raw(params).map_err(HubFailure::Unavailable)?;
        let mut failed: Option<Arc<HubConnection>> = None;
        for _ in 0..=self.urls.len() {
            let client = self.client(failed.as_ref()).await?;
            match client.request::<R>(name, &params).await {
                Ok(reply) => return Ok(reply),
                Err(CallFailure::Refused(error)) => return Err(HubFailure::Refused(error)),
                Err(CallFailure::Lost(why)) => {
                    tracing::warn!("hub call {name} failed: {why}");
                    self.state().last_error = Some(why);
                    failed = Some(client);
                }
            }
        }
        Err(HubFailure::Unavailable(self.state().last_error.clone().unwrap_or_default()))
    }

    /// While no hub answered a moment ago: why, for the answer that says so.
    fn down(&self) -> Option<String> {
        let state = self.state();
        let down = state.down_until.is_some_and(|until| Instant::now() < until);
        down.then(|| format!("no hub answers ({})", state.last_error.as_deref().unwrap_or("")))
    }

    /// The `unavailable` answer to give at once while no hub answers, if none does.
    pub fn refusal_while_down(&self) -> Option<ErrorObjectOwned> {
        self.down().map(|message| self.unavailable(&message))
    }

    /// Asks the hub for a claim the sidecar just granted; `Err` is the answer to give instead.
    pub async fn confirm(&self, claim: HubClaim) -> Result<u64, ErrorObjectOwned> {
        let params = HubAcquireParams { project: self.project.clone(), origin: self.origin.clone(), claim };
        let _turn = self.turn.read().await;
        match self.call::<_, HubGrant>(method::ACQUIRE, &params).await {
            Ok(grant) => Ok(grant.epoch),
            Err(HubFailure::Refused(error)) => Err(error),
            Err(HubFailure::Unavailable(message)) => Err(self.unavailable(&message)),
        }
    }

    /// The live claims other machines hold at the hub (this sidecar's own are the local book's).
    pub async fn remote_claims(&self) -> Result<Vec<lanes_proto::hub::HubClaimView>, HubFailure> {
        let params = lanes_proto::hub::HubProjectParams { project: self.project.clone() };
        let reply: lanes_proto::hub::HubClaimsReply = self.call(method::CLAIMS, &params).await?;
        Ok(reply.claims.into_iter().filter(|c| c.origin != self.origin).collect())
    }

    /// Leaves a message at the hub for `to`, a session of another machine (or `@all`, every one of them);
    /// returns the sessions it was left for.
    pub async fn send(&self, from: &str, to: &str, text: &str) -> Result<Vec<String>, HubFailure> {
        let message = lanes_proto::MessageView {
            id: self.next_message.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            from: from.to_owned(),
            to: to.to_owned(),
            text: lanes_core::redact(text),
            sent_at: rpc::rfc3339(crate::daemon::state::now()),
        };
        let params = HubSendParams { project: self.project.clone(), origin: self.origin.clone(), message };
        let reply: HubSendReply = self.call(method::SEND, &params).await?;
        Ok(reply.to)
    }

    /// The claims of other machines, held at the hub, that stand in `who`'s way on `scopes`: what `lanes check`
    /// and `lanes wait` add to the local answer. This sidecar's own claims are the local book's to report.
    pub async fn holders(&self, who: &str, scopes: &[String]) -> Result<Vec<lanes_proto::ConflictView>, HubFailure> {
        let now_ms = crate::daemon::state::now().0;
        let mut space = lanes_hub::space::Space::default();
        for view in self.remote_claims().await? {
            let expires_at_ms = now_ms + view.claim.ttl_secs * 1000;
            space.insert(lanes_hub::space::Held {
                origin: view.origin,
                claim: view.claim,
                epoch: view.epoch,
                expires_at_ms,
                lease: 0,
            });
        }
        let probe = HubClaim {
            id: u64::MAX,
            holder: who.to_owned(),
            scopes: scopes.to_vec(),
            mode: lanes_proto::Mode::Exclusive,
            ttl_secs: 1,
        };
        space.conflicts(&self.origin, &probe, now_ms).map_err(|e| {
            HubFailure::Refused(ErrorObjectOwned::owned(
                ErrorCode::InvalidScope.rpc_code(),
                e,
                Some(ErrorData::new(ErrorCode::InvalidScope, Vec::new())),
            ))
        })
    }

    /// `unavailable`, with what `[hub] offline` tells the edit hook to do.
    fn unavailable(&self, message: &str) -> ErrorObjectOwned {
        let offline = Some(if self.offline_deny { "deny" } else { "allow" }.to_owned());
        let data = ErrorData { offline, ..ErrorData::new(ErrorCode::Unavailable, Vec::new()) };
        ErrorObjectOwned::owned(
            ErrorCode::Unavailable.rpc_code(),
            format!("the hub decides claims and {message}: nothing was claimed"),
            Some(data),
        )
    }

    /// The hub's part of `lanes status`.
    pub fn view(&self) -> Value {
        let state = self.state().clone();
        json!({
            "urls": self.urls,
            "project": self.project,
            "origin": self.origin,
            "connected": state.connected,
            "last_error": state.last_error,
            "cursor": state.cursor,
            "outbox": state.cursor.map(|c| state.last_event.saturating_sub(c)),
            "refused": state.refused,
        })
    }
}

/// `params` as the JSON text of a request's parameters.
fn raw<P: Serialize>(params: &P) -> Result<Box<serde_json::value::RawValue>, String> {
    serde_json::value::to_raw_value(params).map_err(|e| format!("could not write the request: {e}"))
}

/// The token `[hub] token_file` names (`~` is the home directory), unless `LANES_HUB_TOKEN` gives one.
fn token(config: &HubConfig) -> Result<Option<String>> {
    let path = match config.token_file.as_deref() {
        Some(file) => Some(match file.strip_prefix("~/") {
            Some(rest) => directories::BaseDirs::new().context("no home directory")?.home_dir().join(rest),
            None => PathBuf::from(file),
        }),
        None => None,
    };
    crate::config::read_token(path.as_deref())
}

/// The sidecar's identity on the hub: `<host>-<random>`, made once and kept under the common dir.
fn origin_id(common_dir: &Path) -> Result<String> {
    let path = common_dir.join("lanes").join("hub-origin");
    if let Ok(text) = std::fs::read_to_string(&path)
        && !text.trim().is_empty()
    {
        return Ok(text.trim().to_owned());
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "host".to_owned());
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(32).collect();
    let mut random = [0u8; 4];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut random)?;
    let id = format!("{host}-{}", random.iter().map(|b| format!("{b:02x}")).collect::<String>());
    std::fs::write(&path, &id).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(id)
}

/// The repository's identity from its origin remote, so clones on different machines agree.
fn origin_project(common_dir: &Path) -> Result<String> {
    let url = crate::git::run(common_dir, &["config", "--get", "remote.origin.url"]).unwrap_or_default();
    if url.is_empty() {
        bail!("the hub needs to know which project this is: set `project` under [hub], or add an origin remote");
    }
    Ok(normalize_remote(&url))
}

/// `git@github.com:acme/api.git`, `https://user@github.com/acme/api` and `ssh://git@github.com/acme/api.git`
/// all become `github.com/acme/api`.
pub fn normalize_remote(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix(".git").unwrap_or(url);
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.to_owned(),
        // scp-like `user@host:path`, but not a local path.
        None if !url.starts_with('/') && url.contains(':') => url.replacen(':', "/", 1),
        None => url.to_owned(),
    };
    let rest = match rest.split_once('@') {
        Some((user, host)) if !user.contains('/') => host.to_owned(),
        _ => rest,
    };
    match rest.split_once('/') {
        Some((host, path)) => format!("{}/{path}", host.to_lowercase()),
        None => rest.to_lowercase(),
    }
}

/// A local claim as the hub sees it.
pub fn hub_claim(claim: &lanes_core::Claim, now: lanes_core::Timestamp) -> HubClaim {
    HubClaim {
        id: claim.id.0,
        holder: claim.holder.to_string(),
        scopes: claim.scopes.iter().map(ToString::to_string).collect(),
        mode: rpc::mode_view(claim.mode),
        // Pending work does not run out; the hub holds it a lease at a time, renewed by every sync.
        ttl_secs: claim.expires_at.remaining(now).as_secs().clamp(1, lanes_core::MAX_TTL.as_secs()),
    }
}

/// While no hub answers, tries the hubs again every [`PROBE_EVERY`]: the link is back within that time of a
/// hub coming back (a restarted hub, say), not only after [`RETRY_AFTER`], while calls meanwhile still fail at
/// once.
pub async fn reconnect(link: Arc<HubLink>) {
    loop {
        link.went_down.notified().await;
        while link.down().is_some() {
            tokio::time::sleep(PROBE_EVERY).await;
            let mut connection = link.connection.lock().await;
            if connection.client.is_none() && link.connect_in_order(&mut connection).await.is_ok() {
                tracing::info!("a hub answers again");
            }
        }
    }
}

/// The forwarder: keeps the hub's view of this sidecar's claims and events current, forever.
pub async fn forward(link: Arc<HubLink>, cx: Arc<Context>) {
    let mut synced: Option<Instant> = None;
    loop {
        if let Err(e) = push_events(&link, &cx).await {
            tracing::debug!("event forwarding paused: {e}");
        }
        let due = synced.is_none_or(|at| at.elapsed() >= SYNC_EVERY);
        if link.resync.swap(false, std::sync::atomic::Ordering::SeqCst) || due {
            synced = Some(Instant::now());
            if let Err(e) = sync_claims(&link, &cx).await {
                tracing::debug!("claim sync paused: {e}");
            }
        }
        tokio::select! {
            () = link.wake.notified() => {
                // Changes come in bursts (a session ending, a task done): one round carries them all.
                tokio::time::sleep(GATHER).await;
            }
            () = tokio::time::sleep(SYNC_EVERY) => {}
        }
    }
}

async fn push_events(link: &HubLink, cx: &Context) -> Result<(), String> {
    loop {
        let after = link.state().cursor.unwrap_or(0);
        let command = Command::Events { since: after, limit: u32::try_from(lanes_hub::MAX_PUSH).unwrap_or(100) };
        let mut events: Vec<EventView> = match cx.ask(command).await {
            Ok(Answer::Events(logged)) => logged.into_iter().map(rpc::sidecar::event_view).collect(),
            _ => return Err("could not read the event log".to_owned()),
        };
        let read = events.len();
        // Keep a push well under the hub's request limit, whatever the events carry (prompts can be long).
        let mut bytes = 0;
        let fits = events
            .iter()
            .position(|e| {
                bytes += serde_json::to_string(e).map_or(0, |t| t.len());
                bytes > MAX_PUSH_BYTES
            })
            .unwrap_or(events.len());
        events.truncate(fits.max(1));
        if let Some(last) = events.last() {
            let mut state = link.state();
            state.last_event = state.last_event.max(last.seq);
        }
        let first_contact = link.state().cursor.is_none();
        if events.is_empty() && !first_contact {
            return Ok(());
        }
        let params = HubPushParams { project: link.project.clone(), origin: link.origin.clone(), after, events };
        let sent = params.events.len();
        let last_sent = params.events.last().map(|e| e.seq);
        let reply: HubCursor = link.call(method::PUSH, &params).await.map_err(|e| format!("{e:?}"))?;
        link.state().cursor = Some(reply.cursor);
        // A cursor other than the one we sent from means the hub had more (or less) than we thought:
        // go round again from where it is.
        if reply.cursor == after {
            return if sent == 0 { Ok(()) } else { Err(format!("the hub did not take events after {after}")) };
        }
        // Only a push that left events behind goes round again at once. Events logged while it was on its way
        // wait for the next wake's gathering: going round for them made one etcd write per few events under
        // load, and with one agent an extra write every five pairs.
        let left_behind = read == lanes_hub::MAX_PUSH || sent < read;
        if last_sent == Some(reply.cursor) && !left_behind {
            return Ok(());
        }
    }
}

/// How long a release waits for the hub to release it too before it answers anyway (within the edit hook's
/// and SessionEnd's bounds).
const RELEASE_BOUND: Duration = Duration::from_millis(500);

/// Brings the release of `ids` to the hub before it is answered, so another machine can claim the paths at
/// once: what the reply's `hub` says (`released`, or `queued: <why>` when no hub answered in time; the
/// forwarder's next sync carries it then).
pub async fn release_now(link: &HubLink, ids: &[lanes_core::ClaimId]) -> String {
    let release = async {
        let _turn = link.turn.read().await;
        let ids = ids.iter().map(|id| id.0).collect();
        let params = HubReleaseParams { project: link.project.clone(), origin: link.origin.clone(), ids };
        link.call::<_, HubReleaseReply>(method::RELEASE, &params).await.map(|_| ()).map_err(|e| format!("{e:?}"))
    };
    let why = match tokio::time::timeout(RELEASE_BOUND, release).await {
        Ok(Ok(())) => return "released".to_owned(),
        Ok(Err(why)) => why,
        Err(_) => format!("the hub did not answer within {} ms", RELEASE_BOUND.as_millis()),
    };
    link.wake(true);
    format!("queued: {why}")
}

async fn sync_claims(link: &HubLink, cx: &Context) -> Result<(), String> {
    let _turn = link.turn.write().await;
    let Ok(Answer::Status(snapshot)) = cx.ask(Command::Status).await else {
        return Err("could not read the claims".to_owned());
    };
    let params = HubSyncParams {
        project: link.project.clone(),
        origin: link.origin.clone(),
        upto: snapshot.next_claim_id.saturating_sub(1),
        claims: snapshot.claims.iter().map(|c| hub_claim(c, snapshot.now)).collect(),
    };
    let reply: HubSyncReply = link.call(method::SYNC, &params).await.map_err(|e| format!("{e:?}"))?;
    // Another machine took these paths while this sidecar could not reach the hub: the local claims no
    // longer hold, so they go; the holder's next edit there is refused naming the other machine's holder.
    for claim in snapshot.claims.iter().filter(|c| reply.refused.contains(&c.id.0)) {
        tracing::warn!(
            "claim {} of {} was given to another machine while the hub was away: released",
            claim.id.0,
            claim.holder
        );
        let reason = lanes_core::ReleaseReason::HubRefused;
        let command = Command::TakeBack { who: claim.holder.clone(), id: claim.id, epoch: claim.epoch, reason };
        if let Err(e) = cx.ask(command).await {
            tracing::warn!("could not release claim {}: {}", claim.id.0, e.message());
        }
    }
    link.state().refused = reply.refused;
    Ok(())
}

/// Keeps the hub told which sessions are live here (and what its web view shows of this machine) and queues
/// the messages other machines leave for them, forever.
pub async fn take_mail(link: Arc<HubLink>, cx: Arc<Context>) {
    let mut told: Option<Told> = None;
    loop {
        match take_mail_once(&link, &cx, told.as_ref()).await {
            Ok(Some(now)) => told = Some(now),
            Ok(None) => {}
            Err(e) => tracing::debug!("mail from other machines paused: {e}"),
        }
        tokio::time::sleep(MAIL_EVERY).await;
    }
}

/// What the hub was last told of this machine (`hub.mail` with `present`), and when.
struct Told {
    sessions: Vec<String>,
    board: HubBoard,
    at: Instant,
}

impl Told {
    /// Whether the hub must be told again: something changed, or it is time to say it is still here.
    fn stale(&self, sessions: &[String], board: &HubBoard) -> bool {
        // Pending work's seconds left tick down every round; that alone is no news.
        let steady = |b: &HubBoard| -> Vec<ClaimView> {
            b.pending.iter().map(|c| ClaimView { expires_in_secs: 0, ..c.clone() }).collect()
        };
        self.sessions != sessions
            || self.board.tasks != board.tasks
            || self.board.queue != board.queue
            || steady(&self.board) != steady(board)
            || self.at.elapsed() >= PRESENCE_EVERY
    }
}

/// One round of [`take_mail`]; returns what it told the hub, if it did.
async fn take_mail_once(link: &HubLink, cx: &Context, told: Option<&Told>) -> Result<Option<Told>, String> {
    let Ok(Answer::Status(snapshot)) = cx.ask(Command::Status).await else {
        return Err("could not read the sessions".to_owned());
    };
    let mut board = HubBoard {
        tasks: snapshot
            .tasks
            .iter()
            .take(HubBoard::MAX_ITEMS)
            .map(|(task, ready, stalled)| rpc::tasks::view(task, *ready, *stalled))
            .collect(),
        queue: cx.lander.list().into_iter().take(HubBoard::MAX_ITEMS).collect(),
        pending: snapshot
            .claims
            .iter()
            .filter(|claim| claim.pending.is_some())
            .take(HubBoard::MAX_ITEMS)
            .map(|claim| rpc::claim_view(claim, snapshot.now))
            .collect(),
    };
    board.fit();
    let briefs: Vec<HubSessionBrief> = snapshot
        .sessions
        .into_iter()
        .filter(|line| line.session.live)
        .map(|line| {
            let branch = cx.branch_of(&line.session.info);
            let info = line.session.info;
            HubSessionBrief { id: line.id, client: info.client, branch, worktree: info.worktree }
        })
        .collect();
    let sessions: Vec<String> = briefs.iter().map(|brief| brief.id.clone()).collect();
    let present = told.is_none_or(|told| told.stale(&sessions, &board));
    let params = HubMailParams {
        project: link.project.clone(),
        origin: link.origin.clone(),
        sessions: sessions.clone(),
        present,
        briefs: if present { briefs } else { Vec::new() },
        board: present.then(|| board.clone()),
    };
    let reply: HubMailReply = link.call(method::MAIL, &params).await.map_err(|e| format!("{e:?}"))?;
    if !reply.messages.is_empty() {
        let messages = reply.messages.into_iter().map(|m| (m.from, m.to, m.text)).collect();
        cx.ask(Command::Receive { messages }).await.map_err(|e| e.message().to_owned())?;
    }
    Ok(present.then(|| Told { sessions, board, at: Instant::now() }))
}

#[cfg(test)]
mod tests {
    use super::normalize_remote;

    #[test]
    fn remotes_of_one_repository_normalize_alike() {
        for url in [
            "git@github.com:acme/api.git",
            "https://github.com/acme/api",
            "https://user@GitHub.com/acme/api.git/",
            "ssh://git@github.com/acme/api.git",
        ] {
            assert_eq!(normalize_remote(url), "github.com/acme/api", "{url}");
        }
        assert_eq!(normalize_remote("/srv/git/api.git"), "/srv/git/api");
    }
}
