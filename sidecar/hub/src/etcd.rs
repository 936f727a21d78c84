//! The hub's store for a cluster: etcd (DESIGN.md §9). Every claim is a key under its own etcd lease, so etcd
//! expires it; a grant is one Txn that puts the claim only if the project's guard key is still at the
//! revision this hub's view was read at (so no overlapping claim can have slipped in); the fencing epoch is
//! the revision of that Txn. Grants that arrive together are decided together (against the view and each
//! other) and written in one Txn: group commit, so a busy project costs one Txn per batch, not per grant. Each hub keeps a view of each project fed by a watch, which pushes every grant,
//! release and expiry to every hub on the same etcd.
//!
//! Keys, under `lanes/<project>/` (with `/` and `%` in the project escaped):
//! `claims/<origin>/<id>` (a [`Held`] as JSON), `claims/!guard`, `events/<origin>/<seq>`, `cursor/<origin>`,
//! `presence/<origin>` (a [`Presence`]), `mail/<session>/<time>-<origin>-<id>` (a message waiting).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use lanes_proto::hub::{HubClaim, HubClaimView};
use lanes_proto::{EventView, MessageView};

use crate::space::{Held, Space};
use crate::{HubError, Presence};

/// How often a grant is retried when another hub granted in between.
const GRANT_ATTEMPTS: usize = 16;
/// The most grants one Txn carries (etcd allows 128 operations in a Txn by default; one is the guard).
const MAX_BATCH: usize = 100;

/// Claims and events in etcd.
pub struct EtcdStore {
    client: Client,
    projects: tokio::sync::Mutex<HashMap<String, Arc<Project>>>,
}

/// One project's keys and this hub's view of its claims.
struct Project {
    prefix: String,
    view: Mutex<View>,
    /// Grants of one project from this hub are decided one batch at a time: batches would only defeat each
    /// other's Txn. Whoever holds it decides every grant waiting.
    granting: tokio::sync::Mutex<()>,
    /// Grants waiting for the next batch.
    waiting: Mutex<Vec<Wanted>>,
}

/// A grant waiting for its project's next decision, with its own lease and where its answer goes.
struct Wanted {
    origin: String,
    claim: HubClaim,
    lease: i64,
    now_ms: u64,
    answer: tokio::sync::oneshot::Sender<Result<u64, HubError>>,
}

impl Wanted {
    fn held(&self) -> Held {
        Held {
            origin: self.origin.clone(),
            expires_at_ms: self.now_ms + self.claim.ttl_secs * 1000,
            claim: self.claim.clone(),
            epoch: 0,
            lease: self.lease,
        }
    }
}

#[derive(Default)]
struct View {
    space: Space,
    /// The mod revision of each claim key in the view, so a late watch event never undoes a newer write.
    revisions: HashMap<(String, u64), i64>,
    /// The guard key's mod revision the view reflects.
    guard: i64,
}

fn etcd_error(e: etcd_client::Error) -> HubError {
    HubError::Unavailable(format!("etcd: {e}"))
}

impl Project {
    fn claims_prefix(&self) -> String {
        format!("{}claims/", self.prefix)
    }

    fn guard_key(&self) -> String {
        format!("{}claims/!guard", self.prefix)
    }

    fn claim_key(&self, origin: &str, id: u64) -> String {
        format!("{}claims/{origin}/{id:020}", self.prefix)
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next batch: up to [`MAX_BATCH`] waiting grants, one per claim key (a claim stated twice waits for
    /// the batch after, since one Txn may not put a key twice).
    fn take_batch(&self) -> Vec<Wanted> {
        let mut waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut batch: Vec<Wanted> = Vec::new();
        let mut later = Vec::new();
        for wanted in waiting.drain(..) {
            let twice = batch.iter().any(|b| b.origin == wanted.origin && b.claim.id == wanted.claim.id);
            if twice || batch.len() == MAX_BATCH { later.push(wanted) } else { batch.push(wanted) }
        }
        *waiting = later;
        batch
    }

    /// Applies one key's state at `revision` (a put with its value, or a delete) unless the view already
    /// holds something newer for it.
    fn apply(&self, view: &mut View, key: &str, value: Option<&[u8]>, revision: i64) {
        if key == self.guard_key() {
            view.guard = view.guard.max(revision);
            return;
        }
        let Some((origin, id)) = parse_claim_key(key, &self.claims_prefix()) else { return };
        let slot = (origin.clone(), id);
        if view.revisions.get(&slot).is_some_and(|seen| *seen >= revision) {
            return;
        }
        view.revisions.insert(slot, revision);
        match value.map(serde_json::from_slice::<Held>) {
            // A record is written before its revision is known: its epoch is the revision it was written at.
            Some(Ok(held)) if held.epoch == 0 => {
                view.space.insert(Held { epoch: u64::try_from(revision).unwrap_or(0), ..held });
            }
            Some(Ok(held)) => view.space.insert(held),
            Some(Err(e)) => tracing::warn!("skipping unreadable claim {key}: {e}"),
            None => {
                view.space.remove(&origin, id);
            }
        }
    }
}

fn parse_claim_key(key: &str, claims_prefix: &str) -> Option<(String, u64)> {
    let (origin, id) = key.strip_prefix(claims_prefix)?.rsplit_once('/')?;
    Some((origin.to_owned(), id.parse().ok()?))
}

fn escape(project: &str) -> String {
    project.replace('%', "%25").replace('/', "%2F")
}

impl EtcdStore {
    /// Connects to the cluster (any of the endpoints will do; the client fails over between them).
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore, HubError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let client = Client::connect(endpoints, Some(options)).await.map_err(etcd_error)?;
        let store = EtcdStore { client, projects: tokio::sync::Mutex::new(HashMap::new()) };
        store.client.clone().status().await.map_err(etcd_error)?;
        Ok(store)
    }

    /// The project's view, loaded and watched on first use.
    async fn project(&self, name: &str) -> Result<Arc<Project>, HubError> {
        let mut projects = self.projects.lock().await;
        if let Some(project) = projects.get(name) {
            return Ok(Arc::clone(project));
        }
        let project = Arc::new(Project {
            prefix: format!("lanes/{}/", escape(name)),
            view: Mutex::new(View::default()),
            granting: tokio::sync::Mutex::new(()),
            waiting: Mutex::new(Vec::new()),
        });
        let revision = reload(&mut self.client.clone(), &project).await?;
        tokio::spawn(watch(self.client.clone(), Arc::clone(&project), revision));
        projects.insert(name.to_owned(), Arc::clone(&project));
        Ok(project)
    }

    /// Grants a claim unless another holder's live claim overlaps it. The grant joins the project's next
    /// batch; whichever waiting caller takes the decision lock decides the whole batch.
    pub async fn acquire(&self, name: &str, origin: &str, claim: HubClaim, now_ms: u64) -> Result<u64, HubError> {
        let project = self.project(name).await?;
        let mut client = self.client.clone();
        // The lease first, before waiting for our turn: grants of many sidecars overlap in this step.
        let ttl = i64::try_from(claim.ttl_secs.max(1)).unwrap_or(i64::MAX);
        let lease = client.lease_grant(ttl, None).await.map_err(etcd_error)?.id();
        let (answer, mut answered) = tokio::sync::oneshot::channel();
        let wanted = Wanted { origin: origin.to_owned(), claim, lease, now_ms, answer };
        project.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(wanted);
        loop {
            if let Some(result) = answer_of(&mut answered) {
                return result;
            }
            let _deciding = project.granting.lock().await;
            if let Some(result) = answer_of(&mut answered) {
                return result;
            }
            let batch = project.take_batch();
            decide(&mut client, &project, batch).await;
        }
    }

    /// Renews a claim the hub holds (keeps its lease alive), taking the holder the sidecar names now.
    pub async fn renew(&self, name: &str, claim: HubClaim, held: Held, now_ms: u64) -> Result<(), HubError> {
        let project = self.project(name).await?;
        let mut client = self.client.clone();
        let (mut keeper, mut responses) = client.lease_keep_alive(held.lease).await.map_err(etcd_error)?;
        keeper.keep_alive().await.map_err(etcd_error)?;
        let alive = responses.message().await.map_err(etcd_error)?.is_some_and(|r| r.ttl() > 0);
        if !alive {
            return Err(HubError::Lapsed);
        }
        let key = project.claim_key(&held.origin, claim.id);
        let held = Held { expires_at_ms: now_ms + claim.ttl_secs * 1000, claim, ..held };
        let record = serde_json::to_vec(&held).map_err(|e| HubError::Invalid(e.to_string()))?;
        // Only while the key is still there: a put after etcd expired it would bring it back without a lease check.
        let txn = Txn::new().when([Compare::lease(key.clone(), CompareOp::Equal, held.lease)]).and_then([TxnOp::put(
            key,
            record,
            Some(PutOptions::new().with_lease(held.lease)),
        )]);
        client.txn(txn).await.map_err(etcd_error)?;
        Ok(())
    }

    /// Releases a claim: revoking its lease deletes its key.
    pub async fn release(&self, name: &str, held: &Held) -> Result<(), HubError> {
        let project = self.project(name).await?;
        let mut client = self.client.clone();
        match client.lease_revoke(held.lease).await {
            Ok(_) => {}
            // Already expired: nothing left to release.
            Err(etcd_client::Error::GRpcStatus(status)) if status.message().contains("lease not found") => {}
            Err(e) => return Err(etcd_error(e)),
        }
        project.view().space.remove(&held.origin, held.claim.id);
        Ok(())
    }

    /// The claims one sidecar holds.
    pub async fn of_origin(&self, name: &str, origin: &str) -> Result<Vec<Held>, HubError> {
        Ok(self.project(name).await?.view().space.of_origin(origin))
    }

    /// The live claims of a project.
    pub async fn claims(&self, name: &str, now_ms: u64) -> Result<Vec<HubClaimView>, HubError> {
        Ok(self.project(name).await?.view().space.live(now_ms))
    }

    /// Appends events after `after`, which must be the last one stored; returns the new cursor.
    pub async fn push(&self, name: &str, origin: &str, after: u64, events: &[EventView]) -> Result<u64, HubError> {
        let prefix = format!("lanes/{}/", escape(name));
        let cursor_key = format!("{prefix}cursor/{origin}");
        if events.is_empty() {
            // Only a question: where is the cursor? (The cursor key is written with events only, so a
            // missing key and cursor 0 are the same thing.)
            let response = self.client.clone().get(cursor_key, None).await.map_err(etcd_error)?;
            return Ok(response.kvs().first().and_then(|kv| kv.value_str().ok()?.parse().ok()).unwrap_or(0));
        }
        let expected = if after == 0 {
            Compare::version(cursor_key.clone(), CompareOp::Equal, 0)
        } else {
            Compare::value(cursor_key.clone(), CompareOp::Equal, format!("{after:020}"))
        };
        let mut last = after;
        let mut puts = Vec::with_capacity(events.len() + 1);
        for event in events {
            if event.seq <= last {
                return Err(HubError::Invalid(format!("events must be in order: {} after {last}", event.seq)));
            }
            let text = serde_json::to_vec(event).map_err(|e| HubError::Invalid(e.to_string()))?;
            puts.push(TxnOp::put(format!("{prefix}events/{origin}/{:020}", event.seq), text, None));
            last = event.seq;
        }
        puts.push(TxnOp::put(cursor_key.clone(), format!("{last:020}"), None));
        let txn = Txn::new().when([expected]).and_then(puts).or_else([TxnOp::get(cursor_key, None)]);
        let response = self.client.clone().txn(txn).await.map_err(etcd_error)?;
        if response.succeeded() {
            return Ok(last);
        }
        Ok(stored_cursor(&response.op_responses()))
    }

    /// Events from one sidecar after a cursor, and the last one stored.
    pub async fn events(
        &self,
        name: &str,
        origin: &str,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<EventView>, u64), HubError> {
        let prefix = format!("lanes/{}/", escape(name));
        let range = GetOptions::new().with_range(format!("{prefix}events/{origin}/~")).with_limit(i64::from(limit));
        let txn = Txn::new().and_then([
            TxnOp::get(format!("{prefix}events/{origin}/{:020}", after.saturating_add(1)), Some(range)),
            TxnOp::get(format!("{prefix}cursor/{origin}"), None),
        ]);
        let response = self.client.clone().txn(txn).await.map_err(etcd_error)?;
        let responses = response.op_responses();
        let mut events = Vec::new();
        if let Some(TxnOpResponse::Get(get)) = responses.first() {
            for kv in get.kvs() {
                events.push(serde_json::from_slice(kv.value()).map_err(|e| HubError::Unavailable(e.to_string()))?);
            }
        }
        Ok((events, stored_cursor(&responses[1..])))
    }

    /// Records which sessions a sidecar has live.
    pub async fn set_presence(&self, name: &str, origin: &str, presence: &Presence) -> Result<(), HubError> {
        let text = serde_json::to_vec(presence).map_err(|e| HubError::Invalid(e.to_string()))?;
        let key = format!("lanes/{}/presence/{origin}", escape(name));
        self.client.clone().put(key, text, None).await.map_err(etcd_error)?;
        Ok(())
    }

    /// What every sidecar of a project last said it has live.
    pub async fn presence(&self, name: &str) -> Result<Vec<(String, Presence)>, HubError> {
        let prefix = format!("lanes/{}/presence/", escape(name));
        let response =
            self.client.clone().get(prefix.clone(), Some(GetOptions::new().with_prefix())).await.map_err(etcd_error)?;
        Ok(response
            .kvs()
            .iter()
            .filter_map(|kv| {
                let origin = kv.key_str().ok()?.strip_prefix(&prefix)?.to_owned();
                Some((origin, serde_json::from_slice(kv.value()).ok()?))
            })
            .collect())
    }

    /// Leaves messages, each for the session it names, in Txns within etcd's operation limit.
    pub async fn put_mail(
        &self,
        name: &str,
        origin: &str,
        messages: &[MessageView],
        now_ms: u64,
    ) -> Result<(), HubError> {
        let prefix = format!("lanes/{}/mail/", escape(name));
        for chunk in messages.chunks(crate::MAX_PUSH) {
            let mut puts = Vec::with_capacity(chunk.len());
            for message in chunk {
                let text = serde_json::to_vec(message).map_err(|e| HubError::Invalid(e.to_string()))?;
                let key = format!("{prefix}{}/{now_ms:020}-{origin}-{:020}", escape(&message.to), message.id);
                puts.push(TxnOp::put(key, text, None));
            }
            self.client.clone().txn(Txn::new().and_then(puts)).await.map_err(etcd_error)?;
        }
        Ok(())
    }

    /// Takes the messages waiting for `sessions`, oldest first: a delete that returns what it deleted, so
    /// each is handed out once even when two hubs are asked at the same moment.
    pub async fn take_mail(&self, name: &str, sessions: &[String]) -> Result<Vec<MessageView>, HubError> {
        let prefix = format!("lanes/{}/mail/", escape(name));
        let mut taken = Vec::new();
        for chunk in sessions.chunks(crate::MAX_PUSH) {
            let deletes = chunk.iter().map(|session| {
                let options = DeleteOptions::new().with_prefix().with_prev_key();
                TxnOp::delete(format!("{prefix}{}/", escape(session)), Some(options))
            });
            let response = self.client.clone().txn(Txn::new().and_then(deletes.collect::<Vec<_>>())).await;
            for op in response.map_err(etcd_error)?.op_responses() {
                if let TxnOpResponse::Delete(deleted) = op {
                    for kv in deleted.prev_kvs() {
                        let sent = kv.key_str().ok().and_then(|k| k.rsplit('/').next()).unwrap_or("").to_owned();
                        if let Ok(message) = serde_json::from_slice::<MessageView>(kv.value()) {
                            taken.push((sent, message));
                        }
                    }
                }
            }
        }
        taken.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(taken.into_iter().map(|(_, message)| message).collect())
    }
}

fn stored_cursor(responses: &[TxnOpResponse]) -> u64 {
    match responses.first() {
        Some(TxnOpResponse::Get(get)) => {
            get.kvs().first().and_then(|kv| kv.value_str().ok()?.parse().ok()).unwrap_or(0)
        }
        _ => 0,
    }
}

/// The answer to a waiting grant, once its batch was decided.
fn answer_of(answered: &mut tokio::sync::oneshot::Receiver<Result<u64, HubError>>) -> Option<Result<u64, HubError>> {
    match answered.try_recv() {
        Ok(result) => Some(result),
        Err(tokio::sync::oneshot::error::TryRecvError::Empty) => None,
        Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
            Some(Err(HubError::Unavailable("the hub dropped a grant it was deciding: try again".to_owned())))
        }
    }
}

/// Decides a batch of grants and answers each: every one is checked against the view and against the
/// grants before it in the batch; the ones nothing is in the way of are written in one Txn that also moves
/// the project's guard, and all get its revision as their epoch (they overlap nothing of each other, so each
/// path's epochs still only grow). A conflict is believed only after a fresh read; a Txn whose guard moved
/// (another hub granted) is decided again from a fresh read.
async fn decide(client: &mut Client, project: &Project, mut batch: Vec<Wanted>) {
    let mut reloaded = false;
    for _ in 0..GRANT_ATTEMPTS {
        let (guard, verdicts, previous) = {
            let view = project.view();
            let verdicts = view.space.conflicts_in_batch(batch.iter().map(|w| (w.origin.as_str(), &w.claim, w.now_ms)));
            let previous: Vec<Option<i64>> =
                batch.iter().map(|w| view.space.get(&w.origin, w.claim.id).map(|h| h.lease)).collect();
            (view.guard, verdicts, previous)
        };
        let refused = verdicts.iter().any(|v| v.as_ref().map_or(true, |c| !c.is_empty()));
        if refused && !reloaded {
            // The view may still show a claim another hub released or etcd expired a moment ago.
            if let Err(e) = reload(client, project).await {
                return fail_all(client, batch, &e.to_string()).await;
            }
            reloaded = true;
            continue;
        }
        let mut granting = Vec::new();
        let mut leases_before = Vec::new();
        for ((wanted, verdict), before) in batch.drain(..).zip(verdicts).zip(previous) {
            match verdict {
                Ok(conflicts) if conflicts.is_empty() => {
                    granting.push(wanted);
                    leases_before.push(before);
                }
                refusal => {
                    let _ = client.lease_revoke(wanted.lease).await;
                    let error = match refusal {
                        Ok(conflicts) => HubError::Conflict(conflicts),
                        Err(invalid) => HubError::Invalid(invalid),
                    };
                    let _ = wanted.answer.send(Err(error));
                }
            }
        }
        if granting.is_empty() {
            return;
        }
        let records: Vec<(String, Held)> =
            granting.iter().map(|w| (project.claim_key(&w.origin, w.claim.id), w.held())).collect();
        let mut puts = Vec::with_capacity(records.len() + 1);
        for (key, held) in &records {
            let record = serde_json::to_vec(held).unwrap_or_default();
            puts.push(TxnOp::put(key.clone(), record, Some(PutOptions::new().with_lease(held.lease))));
        }
        puts.push(TxnOp::put(project.guard_key(), b"batch".to_vec(), None));
        let txn = Txn::new().when([Compare::mod_revision(project.guard_key(), CompareOp::Equal, guard)]).and_then(puts);
        let response = match client.txn(txn).await {
            Ok(response) => response,
            Err(e) => return fail_all(client, granting, &etcd_error(e).to_string()).await,
        };
        if !response.succeeded() {
            if let Err(e) = reload(client, project).await {
                return fail_all(client, granting, &e.to_string()).await;
            }
            reloaded = true;
            batch = granting;
            continue;
        }
        let revision = response.header().map_or(0, |h| h.revision());
        // The epoch is the Txn's revision: the records say 0 since they cannot know it before the write.
        let epoch = u64::try_from(revision).unwrap_or(0);
        {
            let mut view = project.view();
            for (key, held) in &records {
                let record = serde_json::to_vec(&Held { epoch, ..held.clone() }).unwrap_or_default();
                project.apply(&mut view, key, Some(&record), revision);
            }
            project.apply(&mut view, &project.guard_key(), None, revision);
        }
        for (wanted, before) in granting.into_iter().zip(leases_before) {
            if let Some(old) = before.filter(|old| *old != wanted.lease && *old != 0) {
                let _ = client.lease_revoke(old).await;
            }
            let _ = wanted.answer.send(Ok(epoch));
        }
        return;
    }
    fail_all(client, batch, "too much contention on the hub: try again").await;
}

/// Answers every grant of `batch` with `unavailable` and gives back their leases.
async fn fail_all(client: &mut Client, batch: Vec<Wanted>, why: &str) {
    for wanted in batch {
        let _ = client.lease_revoke(wanted.lease).await;
        let _ = wanted.answer.send(Err(HubError::Unavailable(why.to_owned())));
    }
}

/// Reads the project's claims afresh into its view; returns the revision they were read at.
async fn reload(client: &mut Client, project: &Project) -> Result<i64, HubError> {
    let txn = Txn::new().and_then([TxnOp::get(project.claims_prefix(), Some(GetOptions::new().with_prefix()))]);
    let response = client.txn(txn).await.map_err(etcd_error)?;
    let revision = response.header().map_or(0, |h| h.revision());
    let mut view = View::default();
    if let Some(TxnOpResponse::Get(get)) = response.op_responses().first() {
        for kv in get.kvs() {
            let key = kv.key_str().unwrap_or_default();
            project.apply(&mut view, key, Some(kv.value()), kv.mod_revision());
        }
    }
    *project.view() = view;
    Ok(revision)
}

/// Follows a project's claim keys from `revision` on; starts over from a fresh read when the watch breaks
/// (a member died, the cluster compacted past it).
async fn watch(mut client: Client, project: Arc<Project>, mut revision: i64) {
    loop {
        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        match client.watch(project.claims_prefix(), Some(options)).await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(response)) if response.canceled() => break,
                    Ok(Some(response)) => {
                        let mut view = project.view();
                        for event in response.events() {
                            let Some(kv) = event.kv() else { continue };
                            let key = kv.key_str().unwrap_or_default();
                            let value = (event.event_type() == EventType::Put).then(|| kv.value());
                            project.apply(&mut view, key, value, kv.mod_revision());
                            revision = revision.max(kv.mod_revision());
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("watch of {} broke: {e}", project.prefix);
                        break;
                    }
                }
            },
            Err(e) => tracing::warn!("watch of {} failed: {e}", project.prefix),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        match reload(&mut client, &project).await {
            Ok(fresh) => revision = fresh,
            Err(e) => tracing::warn!("reload of {} failed: {}", project.prefix, e),
        }
    }
}
