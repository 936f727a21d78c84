//! The hub's store for a cluster: etcd (DESIGN.md §9). A claim is a key that carries its own expiry; the
//! keys of one sidecar (origin) share one etcd lease that this hub keeps alive, so a claim costs no lease
//! grant or revoke of its own and etcd still drops everything of a hub that is gone for good. A grant is put
//! only if the guard keys of its part of the tree (see `Project::guards_of`) are still at the revisions this
//! hub's view knows (so no overlapping claim can have slipped in), and moves them; grants in unrelated
//! directories touch unrelated guard keys, so two hubs granting side by side rarely defeat each other's Txn.
//! The fencing epoch is the revision of that Txn. Grants, renewals and releases that arrive together are
//! decided together (against the view and each other) and written in one Txn: group commit, so a busy project
//! costs one Txn per batch, not per claim. Each hub keeps a view of each project fed by a watch, which pushes
//! every grant, release and expiry to every hub on the same etcd. Another watch, of the project's mail keys,
//! tells which sessions have messages waiting, so the sidecars' question for mail every second costs etcd
//! nothing while none waits.
//!
//! Keys, under `lanes/<project>/` (with `/` and `%` in the project escaped):
//! `claims/<origin>/<id>` (a [`Held`] as JSON), `claims/!guard[/<dir>[/<dir>]]` (guard keys),
//! `events/<origin>/<seq>` (a push's events as a JSON array, named by its last), `cursor/<origin>`, `presence/<origin>` (a [`Presence`]),
//! `mail/<session>/<time>-<origin>-<id>` (a message waiting).

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

/// How many pushes (keys of up to `MAX_PUSH` events) one read of the event log takes.
const PUSHES_PER_READ: i64 = 16;
/// How often a batch is decided again when another hub wrote in between.
const GRANT_ATTEMPTS: usize = 16;
/// The most changes one batch takes (a Txn also carries their guard keys; see [`MAX_TXN_OPS`]).
const MAX_BATCH: usize = 100;
/// The most operations, and the most compares, one Txn carries: etcd allows 128 of each by default.
const MAX_TXN_OPS: usize = 120;
/// How many leading path components a claim's guard key names (see `Project::guards_of`).
const GUARD_DEPTH: usize = 2;
/// How long a sidecar's shared lease outlives this hub. The hub renews it every third of that; a sidecar
/// that moves to another hub has its claims put under that hub's lease at its next sync (every 5 s), so only
/// claims nobody syncs for this long go with the lease before their own expiry.
const LEASE_TTL_SECS: i64 = 60;
/// How many claims one read of a project's view takes (a page is about 1.5 MiB; gRPC allows 4 MiB).
const RELOAD_PAGE: i64 = 5_000;
/// How long a defeated Txn waits for the watch to bring what defeated it before the project is read whole.
const CATCH_UP: Duration = Duration::from_secs(1);
/// How often the hub renews its leases and deletes the claims whose own expiry has passed.
const KEEPER_EVERY: Duration = Duration::from_secs(2);

/// The projects this hub has served, each loaded (view read and watched) once, on first use.
type Projects = Arc<tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<Project>>>>>>;

/// Claims and events in etcd.
pub struct EtcdStore {
    client: Client,
    projects: Projects,
    leases: Arc<Leases>,
    /// Each project's [`MailIndex`], set up on its first question for mail.
    mail: Mutex<HashMap<String, Arc<MailIndex>>>,
}

/// The etcd leases this hub keeps its claims under: one per sidecar, shared by all of its claims.
#[derive(Default)]
struct Leases {
    by_origin: Mutex<HashMap<String, i64>>,
}

impl Leases {
    fn get(&self, origin: &str) -> Option<i64> {
        self.by_origin.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(origin).copied()
    }

    /// The lease `origin`'s claims go under, granted on first use.
    async fn of(&self, client: &mut Client, origin: &str) -> Result<i64, HubError> {
        if let Some(lease) = self.get(origin) {
            return Ok(lease);
        }
        let granted = client.lease_grant(LEASE_TTL_SECS, None).await.map_err(etcd_error)?.id();
        let mut by_origin = self.by_origin.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Two first grants of one origin may race: the first lease recorded wins (the other expires unused).
        Ok(*by_origin.entry(origin.to_owned()).or_insert(granted))
    }

    /// Forgets leases etcd no longer has, so the next grant takes a new one.
    fn forget(&self, leases: &[i64]) {
        self.by_origin.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|_, l| !leases.contains(l));
    }

    fn all(&self) -> Vec<i64> {
        self.by_origin.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().copied().collect()
    }
}

/// One project's keys and this hub's view of its claims.
struct Project {
    prefix: String,
    view: Mutex<View>,
    /// Changes of one project from this hub are decided one batch at a time: batches would only defeat each
    /// other's Txn. Whoever holds it decides every change waiting.
    deciding: tokio::sync::Mutex<()>,
    /// Changes waiting for the next batch.
    waiting: Mutex<Vec<Wanted>>,
    /// Told whenever the view's revision moves on (the watch brought changes, or a whole read).
    advanced: tokio::sync::Notify,
}

/// What a sidecar asks of one of its claims.
enum Change {
    /// Grant it unless another holder's live claim overlaps it.
    Grant(HubClaim),
    /// Extend it (and take the holder the sidecar names now), keeping its epoch; it must still be live.
    Renew(HubClaim),
    /// Delete it.
    Release(u64),
}

/// One guard compare of a grant's Txn: the guard key (or, with `end`, the range of guard keys) it reads.
struct Guard {
    key: String,
    end: Option<String>,
    compare: Compare,
}

/// A change waiting for its project's next decision, and where its answer (the claim's epoch) goes.
struct Wanted {
    origin: String,
    change: Change,
    now_ms: u64,
    answer: tokio::sync::oneshot::Sender<Result<u64, HubError>>,
}

impl Wanted {
    fn id(&self) -> u64 {
        match &self.change {
            Change::Grant(claim) | Change::Renew(claim) => claim.id,
            Change::Release(id) => *id,
        }
    }

    fn claim(&self) -> Option<&HubClaim> {
        match &self.change {
            Change::Grant(claim) | Change::Renew(claim) => Some(claim),
            Change::Release(_) => None,
        }
    }
}

#[derive(Default)]
struct View {
    space: Space,
    /// The mod revision of each claim key in the view, so a late watch event never undoes a newer write.
    revisions: HashMap<(String, u64), i64>,
    /// The mod revision of each guard key the view knows (a key it does not know is taken to be absent).
    guards: HashMap<String, i64>,
    /// The revision through which the watch (or the last read) brought every change: the view knows every
    /// key written at or below it.
    revision: i64,
}

impl View {
    /// Takes from `watched` (the view the watch kept while this one was read at `self.revision`) every
    /// change newer than that read: claims put or deleted after it, guards moved after it.
    fn keep_newer(&mut self, watched: View) {
        let read_at = self.revision;
        for (slot, revision) in watched.revisions {
            if revision <= read_at || self.revisions.get(&slot).is_some_and(|seen| *seen >= revision) {
                continue;
            }
            match watched.space.get(&slot.0, slot.1) {
                Some(held) => self.space.insert(held.clone()),
                None => {
                    self.space.remove(&slot.0, slot.1);
                }
            }
            self.revisions.insert(slot, revision);
        }
        for (key, revision) in watched.guards {
            let known = self.guards.entry(key).or_insert(0);
            *known = (*known).max(revision);
        }
        self.revision = self.revision.max(watched.revision);
    }
}

fn etcd_error(e: etcd_client::Error) -> HubError {
    HubError::Unavailable(format!("etcd: {e}"))
}

impl Project {
    fn claims_prefix(&self) -> String {
        format!("{}claims/", self.prefix)
    }

    /// The guard key of a region of the tree (no components: the whole repository).
    fn guard_key(&self, region: &[String]) -> String {
        let mut key = format!("{}claims/!guard", self.prefix);
        for component in region {
            key.push('/');
            key.push_str(component);
        }
        key
    }

    /// What a grant or renewal of `claim` must find unchanged, and which guard keys it moves (DESIGN.md §9):
    /// each of its regions (a scope's index key cut to [`GUARD_DEPTH`] components) and every region above
    /// it must be at the revision the view knows, and for a region shallower than the depth, no guard below
    /// it may have moved since the view's revision. Two claims can overlap only if one's region lies within
    /// the other's, so grants in unrelated parts of the tree never contend for a key.
    fn guards_of(&self, view: &View, claim: &HubClaim) -> (Vec<Guard>, Vec<String>) {
        let mut regions: Vec<Vec<String>> = crate::space::check_claim(claim)
            .unwrap_or_default()
            .iter()
            .map(|scope| scope.index_key().iter().take(GUARD_DEPTH).cloned().collect())
            .collect();
        regions.sort();
        regions.dedup();
        let mut compares = Vec::new();
        for region in &regions {
            for depth in 0..=region.len() {
                let key = self.guard_key(&region[..depth]);
                let known = view.guards.get(&key).copied().unwrap_or(0);
                let compare = Compare::mod_revision(key.clone(), CompareOp::Equal, known);
                compares.push(Guard { key, end: None, compare });
            }
            if region.len() < GUARD_DEPTH {
                let below = format!("{}/", self.guard_key(region));
                let end = format!("{}0", self.guard_key(region));
                let compare =
                    Compare::mod_revision(below.clone(), CompareOp::Less, view.revision + 1).with_range(end.clone());
                compares.push(Guard { key: below, end: Some(end), compare });
            }
        }
        (compares, regions.iter().map(|region| self.guard_key(region)).collect())
    }

    fn claim_key(&self, origin: &str, id: u64) -> String {
        format!("{}claims/{origin}/{id:020}", self.prefix)
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next batch: up to [`MAX_BATCH`] waiting changes, one per claim key (a claim changed twice waits for
    /// the batch after, since one Txn may not touch a key twice).
    fn take_batch(&self) -> Vec<Wanted> {
        let mut waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut batch: Vec<Wanted> = Vec::new();
        let mut later = Vec::new();
        for wanted in waiting.drain(..) {
            let twice = batch.iter().any(|b| b.origin == wanted.origin && b.id() == wanted.id());
            if twice || batch.len() == MAX_BATCH { later.push(wanted) } else { batch.push(wanted) }
        }
        *waiting = later;
        batch
    }

    /// Applies one key's state at `revision` (a put with its value, or a delete) unless the view already
    /// holds something newer for it.
    fn apply(&self, view: &mut View, key: &str, value: Option<&[u8]>, revision: i64) {
        let guards = self.guard_key(&[]);
        if key == guards || key.strip_prefix(&guards).is_some_and(|rest| rest.starts_with('/')) {
            let known = view.guards.entry(key.to_owned()).or_insert(0);
            *known = (*known).max(revision);
            return;
        }
        let Some((origin, id)) = parse_claim_key(key, &self.claims_prefix()) else { return };
        let slot = (origin.clone(), id);
        if view.revisions.get(&slot).is_some_and(|seen| *seen >= revision) {
            return;
        }
        view.revisions.insert(slot, revision);
        match value.map(serde_json::from_slice::<Held>) {
            // A grant is written before its revision is known: its epoch is the revision it was written at.
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

    /// Queues a change and waits for its answer; whichever waiting caller takes the decision lock decides
    /// every change waiting.
    async fn change(
        &self,
        client: &mut Client,
        leases: &Leases,
        origin: &str,
        change: Change,
        now_ms: u64,
    ) -> Result<u64, HubError> {
        let (answer, mut answered) = tokio::sync::oneshot::channel();
        let wanted = Wanted { origin: origin.to_owned(), change, now_ms, answer };
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(wanted);
        loop {
            if let Some(result) = answer_of(&mut answered) {
                return result;
            }
            let _deciding = self.deciding.lock().await;
            if let Some(result) = answer_of(&mut answered) {
                return result;
            }
            let batch = self.take_batch();
            decide(client, self, leases, batch).await;
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
    /// Connects to the cluster (any of the endpoints will do; the client fails over between them) and starts
    /// the keeper that renews this hub's leases and deletes expired claims.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore, HubError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let client = Client::connect(endpoints, Some(options)).await.map_err(etcd_error)?;
        let store = EtcdStore {
            client,
            projects: Arc::new(tokio::sync::Mutex::new(HashMap::new())),
            leases: Arc::new(Leases::default()),
            mail: Mutex::default(),
        };
        store.client.clone().status().await.map_err(etcd_error)?;
        tokio::spawn(keep(store.client.clone(), Arc::clone(&store.projects), Arc::clone(&store.leases)));
        Ok(store)
    }

    /// The project's [`MailIndex`], watched from first use.
    fn mail_index(&self, name: &str) -> Arc<MailIndex> {
        let mut indexes = self.mail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let index = indexes.entry(name.to_owned()).or_insert_with(|| {
            let index = Arc::new(MailIndex::default());
            let prefix = format!("lanes/{}/mail/", escape(name));
            tokio::spawn(watch_mail(self.client.clone(), prefix, Arc::clone(&index)));
            index
        });
        Arc::clone(index)
    }

    /// The project's view, loaded and watched on first use. Projects load side by side: the map's lock is
    /// held only to find a project's cell, never while etcd answers.
    async fn project(&self, name: &str) -> Result<Arc<Project>, HubError> {
        let cell = Arc::clone(self.projects.lock().await.entry(name.to_owned()).or_default());
        let project = cell
            .get_or_try_init(|| async {
                let project = Arc::new(Project {
                    prefix: format!("lanes/{}/", escape(name)),
                    view: Mutex::new(View::default()),
                    deciding: tokio::sync::Mutex::new(()),
                    waiting: Mutex::new(Vec::new()),
                    advanced: tokio::sync::Notify::new(),
                });
                let revision = reload(&mut self.client.clone(), &project).await?;
                tokio::spawn(watch(self.client.clone(), Arc::clone(&project), revision));
                Ok::<_, HubError>(project)
            })
            .await?;
        Ok(Arc::clone(project))
    }

    /// Grants a claim unless another holder's live claim overlaps it; answers its epoch.
    pub async fn acquire(&self, name: &str, origin: &str, claim: HubClaim, now_ms: u64) -> Result<u64, HubError> {
        let project = self.project(name).await?;
        project.change(&mut self.client.clone(), &self.leases, origin, Change::Grant(claim), now_ms).await
    }

    /// Renews a claim the hub holds, taking the holder the sidecar names now; [`HubError::Lapsed`] when it is
    /// gone or expired (it has to be granted again).
    pub async fn renew(&self, name: &str, claim: HubClaim, held: Held, now_ms: u64) -> Result<(), HubError> {
        let project = self.project(name).await?;
        let change = Change::Renew(claim);
        project.change(&mut self.client.clone(), &self.leases, &held.origin, change, now_ms).await.map(|_| ())
    }

    /// Releases a claim: deletes its key (in the project's next batch).
    pub async fn release(&self, name: &str, held: &Held) -> Result<(), HubError> {
        let project = self.project(name).await?;
        let change = Change::Release(held.claim.id);
        project.change(&mut self.client.clone(), &self.leases, &held.origin, change, 0).await.map(|_| ())
    }

    /// Those of `ids` that one sidecar holds.
    pub async fn among(&self, name: &str, origin: &str, ids: &[u64]) -> Result<Vec<Held>, HubError> {
        Ok(self.project(name).await?.view().space.among(origin, ids))
    }

    /// The claims one sidecar holds.
    /// A claim under a lease this hub does not keep alive (another hub granted it, or this hub's earlier
    /// life) shows as running out, so the sidecar's sync renews it under this hub's lease.
    pub async fn of_origin(&self, name: &str, origin: &str) -> Result<Vec<Held>, HubError> {
        let ours = self.leases.get(origin);
        let mut held = self.project(name).await?.view().space.of_origin(origin);
        for claim in held.iter_mut().filter(|h| Some(h.lease) != ours) {
            claim.expires_at_ms = 0;
        }
        Ok(held)
    }

    /// The live claims of a project.
    pub async fn claims(&self, name: &str, now_ms: u64) -> Result<Vec<HubClaimView>, HubError> {
        Ok(self.project(name).await?.view().space.live(now_ms))
    }

    /// [`Space::some_live`] of a project.
    pub async fn some_claims(
        &self,
        name: &str,
        now_ms: u64,
        first: &std::collections::BTreeSet<(String, u64)>,
        limit: usize,
    ) -> Result<crate::space::SomeClaims, HubError> {
        Ok(self.project(name).await?.view().space.some_live(now_ms, first, limit))
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
        for event in events {
            if event.seq <= last {
                return Err(HubError::Invalid(format!("events must be in order: {} after {last}", event.seq)));
            }
            last = event.seq;
        }
        // The whole push is one key (a push holds at most `MAX_PUSH` events), named by its last event: a key
        // per event made the event log most of etcd's writes, two per claim and release.
        let text = serde_json::to_vec(events).map_err(|e| HubError::Invalid(e.to_string()))?;
        let mut puts = vec![TxnOp::put(format!("{prefix}events/{origin}/{last:020}"), text, None)];
        puts.push(TxnOp::put(cursor_key.clone(), format!("{last:020}"), None));
        if let Some(oldest_kept) = crate::oldest_kept_event(last) {
            let range = DeleteOptions::new().with_range(format!("{prefix}events/{origin}/{oldest_kept:020}"));
            puts.push(TxnOp::delete(format!("{prefix}events/{origin}/"), Some(range)));
        }
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
        let end = format!("{prefix}events/{origin}/~");
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let (mut events, mut cursor) = (Vec::new(), None);
        // The first key past `after` holds the first event past it (a key is named by its push's last event).
        let mut from = format!("{prefix}events/{origin}/{:020}", after.saturating_add(1)).into_bytes();
        loop {
            let range = GetOptions::new().with_range(end.clone()).with_limit(PUSHES_PER_READ);
            let txn = Txn::new().and_then([
                TxnOp::get(from.clone(), Some(range)),
                TxnOp::get(format!("{prefix}cursor/{origin}"), None),
            ]);
            let response = self.client.clone().txn(txn).await.map_err(etcd_error)?;
            let responses = response.op_responses();
            let last_stored = *cursor.get_or_insert_with(|| stored_cursor(&responses[1..]));
            // A push deletes the keys whose events are all older than it keeps; a key it kept may hold some.
            let oldest_kept = crate::oldest_kept_event(last_stored).unwrap_or(0);
            let Some(TxnOpResponse::Get(got)) = responses.first() else { break };
            for kv in got.kvs() {
                let pushed = stored_events(kv.value())?.into_iter();
                events.extend(pushed.filter(|event| event.seq > after && event.seq >= oldest_kept));
            }
            // The next read starts just past the last key read (by its name, so even a key whose events do not
            // match it cannot make the reads go round in place).
            if let Some(last) = got.kvs().last() {
                from = [last.key(), &[0]].concat();
            }
            if events.len() >= limit || !got.more() {
                break;
            }
        }
        events.truncate(limit);
        Ok((events, cursor.unwrap_or(0)))
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
        let index = self.mail_index(name);
        let mut taken = Vec::new();
        for chunk in sessions.chunks(crate::MAX_PUSH) {
            // Every sidecar asks every second, and most times nothing waits: the index knows without etcd.
            // Without it, asking first is a read (no raft write, no fsync); only sessions with mail are written.
            let with_mail = match index.with_mail(chunk) {
                Some(with_mail) => with_mail,
                None => {
                    let counts = chunk.iter().map(|session| {
                        TxnOp::get(
                            format!("{prefix}{}/", escape(session)),
                            Some(GetOptions::new().with_prefix().with_count_only()),
                        )
                    });
                    let counted = self.client.clone().txn(Txn::new().and_then(counts.collect::<Vec<_>>())).await;
                    chunk
                        .iter()
                        .zip(counted.map_err(etcd_error)?.op_responses())
                        .filter(|(_, counted)| !matches!(counted, TxnOpResponse::Get(got) if got.count() == 0))
                        .map(|(session, _)| session)
                        .collect()
                }
            };
            if with_mail.is_empty() {
                continue;
            }
            let deletes = with_mail.iter().map(|session| {
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

/// The events one key holds: a push's (or, written before pushes were kept whole, a single one).
fn stored_events(value: &[u8]) -> Result<Vec<EventView>, HubError> {
    let unreadable = |e: serde_json::Error| HubError::Unavailable(format!("unreadable events in etcd: {e}"));
    if value.first() == Some(&b'[') {
        serde_json::from_slice(value).map_err(unreadable)
    } else {
        serde_json::from_slice(value).map(|event| vec![event]).map_err(unreadable)
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

/// How one change of a batch was decided.
enum Verdict {
    /// Write it: a put of the claim (keeping `epoch`, or 0 for a grant, which takes the Txn's revision), only
    /// while the key is still at `revision` for a renewal; or a delete.
    Put {
        epoch: u64,
        revision: Option<i64>,
    },
    Delete,
    /// Refuse it.
    Refuse(HubError),
}

/// Decides a batch and answers each change: grants and renewals are checked against the view and against
/// the ones before them in the batch (a renewal also needs its claim still live in the view); what may be
/// written goes in one Txn that also moves their guard keys, and every grant gets its revision as its
/// epoch (they overlap nothing of each other, so each path's epochs still only grow). A refusal is believed
/// only after the claims it rests on are read again; a Txn whose guards or renewed keys moved (another hub
/// wrote) is decided again once the view caught up with those writes. Neither reads the whole project.
async fn decide(client: &mut Client, project: &Project, leases: &Leases, mut batch: Vec<Wanted>) {
    let mut reread = false;
    for _ in 0..GRANT_ATTEMPTS {
        let verdicts = {
            let view = project.view();
            let checked = batch.iter().filter_map(|w| Some((w.origin.as_str(), w.claim()?, w.now_ms)));
            let mut conflicts = view.space.conflicts_in_batch(checked).into_iter();
            let verdicts: Vec<Verdict> = batch
                .iter()
                .map(|wanted| {
                    let Some(claim) = wanted.claim() else { return Verdict::Delete };
                    let checked = conflicts.next().unwrap_or(Ok(Vec::new()));
                    let renewed = matches!(wanted.change, Change::Renew(_));
                    let live = view.space.get(&wanted.origin, claim.id).filter(|h| h.expires_at_ms > wanted.now_ms);
                    match (checked, renewed, live) {
                        (Err(invalid), ..) => Verdict::Refuse(HubError::Invalid(invalid)),
                        (Ok(_), true, None) => Verdict::Refuse(HubError::Lapsed),
                        // Someone else holds part of it now: the claim is lost, the sidecar learns so by granting again.
                        (Ok(c), true, Some(_)) if !c.is_empty() => Verdict::Refuse(HubError::Lapsed),
                        (Ok(c), false, _) if !c.is_empty() => Verdict::Refuse(HubError::Conflict(c)),
                        (Ok(_), true, Some(held)) => Verdict::Put {
                            epoch: held.epoch,
                            revision: view.revisions.get(&(wanted.origin.clone(), claim.id)).copied(),
                        },
                        (Ok(_), false, _) => Verdict::Put { epoch: 0, revision: None },
                    }
                })
                .collect();
            verdicts
        };
        let refused = verdicts.iter().any(|v| matches!(v, Verdict::Refuse(_)));
        if refused && !reread {
            // The view may still show a claim another hub released or that expired a moment ago, or not yet
            // show one another hub renewed: read again just the claims the refusals rest on.
            let keys = refusal_grounds(project, &batch, &verdicts);
            if let Err(e) = refresh(client, project, &keys).await {
                return fail_all(batch, &e.to_string());
            }
            reread = true;
            continue;
        }
        let mut writing = Vec::new();
        for (wanted, verdict) in batch.drain(..).zip(verdicts) {
            match verdict {
                Verdict::Refuse(error) => {
                    let _ = wanted.answer.send(Err(error));
                }
                verdict => writing.push((wanted, verdict)),
            }
        }
        if writing.is_empty() {
            return;
        }
        let mut compares: Vec<Guard> = Vec::new();
        let mut renewed: Vec<(String, Compare)> = Vec::new();
        let mut moved: Vec<String> = Vec::new();
        let mut ops = Vec::with_capacity(writing.len() + 1);
        let mut records = Vec::with_capacity(writing.len());
        let mut used_leases = Vec::new();
        let mut later = Vec::new();
        for (wanted, verdict) in std::mem::take(&mut writing) {
            let key = project.claim_key(&wanted.origin, wanted.id());
            let (Verdict::Put { epoch, revision }, Some(claim)) = (&verdict, wanted.claim()) else {
                if ops.len() + moved.len() >= MAX_TXN_OPS {
                    later.push(wanted);
                    continue;
                }
                ops.push(TxnOp::delete(key.clone(), None));
                records.push((key, None));
                writing.push((wanted, verdict));
                continue;
            };
            let (needs, moves) = project.guards_of(&project.view(), claim);
            let new_compares = needs.iter().filter(|n| !compares.iter().any(|c| c.key == n.key)).count();
            let new_moves = moves.iter().filter(|k| !moved.contains(k)).count();
            let too_many = compares.len() + renewed.len() + new_compares + 1 > MAX_TXN_OPS
                || ops.len() + moved.len() + new_moves + 1 > MAX_TXN_OPS;
            if too_many {
                later.push(wanted);
                continue;
            }
            let lease = match leases.of(client, &wanted.origin).await {
                Ok(lease) => lease,
                Err(e) => {
                    let mut failed: Vec<Wanted> = writing.into_iter().map(|(w, _)| w).collect();
                    failed.push(wanted);
                    failed.append(&mut later);
                    return fail_all(failed, &e.to_string());
                }
            };
            used_leases.push(lease);
            for guard in needs {
                if !compares.iter().any(|c| c.key == guard.key) {
                    compares.push(guard);
                }
            }
            for k in moves {
                if !moved.contains(&k) {
                    moved.push(k);
                }
            }
            if let Some(revision) = revision {
                renewed.push((key.clone(), Compare::mod_revision(key.clone(), CompareOp::Equal, *revision)));
            }
            let held = Held {
                origin: wanted.origin.clone(),
                claim: claim.clone(),
                epoch: *epoch,
                expires_at_ms: wanted.now_ms + claim.ttl_secs * 1000,
                lease,
            };
            let record = serde_json::to_vec(&held).unwrap_or_default();
            ops.push(TxnOp::put(key.clone(), record, Some(PutOptions::new().with_lease(lease))));
            records.push((key, Some(held)));
            writing.push((wanted, verdict));
        }
        // What did not fit in this Txn goes first in the next batch.
        if !later.is_empty() {
            let mut waiting = project.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            later.append(&mut waiting);
            *waiting = later;
        }
        for key in &moved {
            ops.push(TxnOp::put(key.clone(), b"batch".to_vec(), None));
        }
        let when: Vec<Compare> =
            compares.iter().map(|g| g.compare.clone()).chain(renewed.iter().map(|(_, c)| c.clone())).collect();
        let response = match client.txn(Txn::new().when(when).and_then(ops)).await {
            Ok(response) => response,
            Err(e) => {
                if e.to_string().contains("lease not found") {
                    // A lease this hub kept ran out (etcd was away too long): take new ones when decided again.
                    leases.forget(&used_leases);
                }
                return fail_all(writing.into_iter().map(|(w, _)| w).collect(), &etcd_error(e).to_string());
            }
        };
        if !response.succeeded() {
            let renewed: Vec<String> = renewed.into_iter().map(|(key, _)| key).collect();
            if let Err(e) = catch_up(client, project, &compares, &renewed).await {
                return fail_all(writing.into_iter().map(|(w, _)| w).collect(), &e.to_string());
            }
            reread = true;
            batch = writing.into_iter().map(|(w, _)| w).collect();
            continue;
        }
        let revision = response.header().map_or(0, |h| h.revision());
        // A grant's epoch is the Txn's revision: its record says 0 since it cannot know it before the write.
        let epoch = u64::try_from(revision).unwrap_or(0);
        let mut answers = Vec::with_capacity(records.len());
        {
            let mut view = project.view();
            for (key, held) in records {
                let Some(held) = held else {
                    project.apply(&mut view, &key, None, revision);
                    answers.push(0);
                    continue;
                };
                let held = Held { epoch: if held.epoch == 0 { epoch } else { held.epoch }, ..held };
                answers.push(held.epoch);
                let record = serde_json::to_vec(&held).unwrap_or_default();
                project.apply(&mut view, &key, Some(&record), revision);
            }
            for key in &moved {
                project.apply(&mut view, key, None, revision);
            }
        }
        for ((wanted, _), epoch) in writing.into_iter().zip(answers) {
            let _ = wanted.answer.send(Ok(epoch));
        }
        return;
    }
    fail_all(batch, "too much contention on the hub: try again");
}

/// The claim keys the refusals of a batch rest on: the claims in the way of each refused grant or renewal,
/// and a refused renewal's own claim (the view may not know it was renewed through another hub).
fn refusal_grounds(project: &Project, batch: &[Wanted], verdicts: &[Verdict]) -> Vec<String> {
    let view = project.view();
    let mut keys = Vec::new();
    for (wanted, verdict) in batch.iter().zip(verdicts) {
        let (Verdict::Refuse(_), Some(claim)) = (verdict, wanted.claim()) else { continue };
        if matches!(wanted.change, Change::Renew(_)) {
            keys.push(project.claim_key(&wanted.origin, claim.id));
        }
        for (origin, id) in view.space.blockers(&wanted.origin, claim, wanted.now_ms) {
            keys.push(project.claim_key(&origin, id));
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Reads `keys` afresh into the view (a read-only Txn of gets, [`MAX_TXN_OPS`] at a time): a key that is
/// gone is applied as deleted at the read's revision.
async fn refresh(client: &mut Client, project: &Project, keys: &[String]) -> Result<(), HubError> {
    for chunk in keys.chunks(MAX_TXN_OPS) {
        let gets: Vec<TxnOp> = chunk.iter().map(|key| TxnOp::get(key.clone(), None)).collect();
        let response = client.txn(Txn::new().and_then(gets)).await.map_err(etcd_error)?;
        let revision = response.header().map_or(0, |h| h.revision());
        let mut view = project.view();
        for (key, answer) in chunk.iter().zip(response.op_responses()) {
            let TxnOpResponse::Get(got) = answer else { continue };
            match got.kvs().first() {
                Some(kv) => project.apply(&mut view, key, Some(kv.value()), kv.mod_revision()),
                None => project.apply(&mut view, key, None, revision),
            }
        }
    }
    Ok(())
}

/// Brings the view up to what defeated a Txn: the renewed claims it compared are read again, and the view
/// waits for the watch to bring every change up to the newest write of the guard keys it compared (the
/// claims another hub granted with them come in the same revisions), so a busy project is not read whole.
/// A guard key is only ever learnt through the watch or a whole read, never alone: a view that knew a
/// guard's new revision but not the claim written with it would let an overlapping grant through.
async fn catch_up(
    client: &mut Client,
    project: &Project,
    guards: &[Guard],
    renewed: &[String],
) -> Result<(), HubError> {
    refresh(client, project, renewed).await?;
    let reads: Vec<TxnOp> = guards
        .iter()
        .map(|guard| {
            let options = GetOptions::new().with_keys_only();
            let options = match &guard.end {
                Some(end) => options.with_range(end.clone()),
                None => options,
            };
            TxnOp::get(guard.key.clone(), Some(options))
        })
        .collect();
    let response = client.txn(Txn::new().and_then(reads)).await.map_err(etcd_error)?;
    let target = response
        .op_responses()
        .iter()
        .filter_map(|answer| match answer {
            TxnOpResponse::Get(got) => got.kvs().iter().map(|kv| kv.mod_revision()).max(),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        let advanced = project.advanced.notified();
        tokio::pin!(advanced);
        advanced.as_mut().enable();
        if project.view().revision >= target {
            tracing::debug!("{}: a defeated Txn waited for the watch to reach revision {target}", project.prefix);
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, advanced).await.is_err() {
            tracing::warn!(
                "{}: the watch did not reach revision {target} within {CATCH_UP:?}: reading it whole",
                project.prefix
            );
            return reload(client, project).await.map(|_| ());
        }
    }
}

/// Answers every change of `batch` with `unavailable`.
fn fail_all(batch: Vec<Wanted>, why: &str) {
    for wanted in batch {
        let _ = wanted.answer.send(Err(HubError::Unavailable(why.to_owned())));
    }
}

/// Renews this hub's leases every third of their time and deletes the claims whose own expiry passed (each
/// only while it is still the version that expired, so a renewal that came in between stands). Runs for the
/// life of the hub.
async fn keep(mut client: Client, projects: Projects, leases: Arc<Leases>) {
    let renew_every = Duration::from_secs(u64::try_from(LEASE_TTL_SECS / 3).unwrap_or(20));
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(KEEPER_EVERY).await;
        if renewed.elapsed() >= renew_every {
            renewed = tokio::time::Instant::now();
            let mut lost = Vec::new();
            for lease in leases.all() {
                match renew_lease(&mut client, lease).await {
                    Ok(true) => {}
                    Ok(false) => lost.push(lease),
                    Err(e) => tracing::warn!("could not renew lease {lease:x}: {e}"),
                }
            }
            leases.forget(&lost);
        }
        let ready: Vec<Arc<Project>> = projects.lock().await.values().filter_map(|cell| cell.get().cloned()).collect();
        let now = crate::now_ms();
        for project in ready {
            let expired: Vec<(String, i64)> = {
                let view = project.view();
                view.space
                    .expired(now)
                    .into_iter()
                    .take(MAX_BATCH)
                    .filter_map(|(origin, id)| {
                        let revision = view.revisions.get(&(origin.clone(), id)).copied()?;
                        Some((project.claim_key(&origin, id), revision))
                    })
                    .collect()
            };
            for (key, revision) in expired {
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.clone(), CompareOp::Equal, revision)])
                    .and_then([TxnOp::delete(key, None)]);
                if let Err(e) = client.txn(txn).await {
                    tracing::warn!("could not delete an expired claim: {e}");
                }
            }
        }
    }
}

/// Keeps one lease alive for another term; false when etcd no longer has it.
async fn renew_lease(client: &mut Client, lease: i64) -> Result<bool, etcd_client::Error> {
    let (mut keeper, mut responses) = client.lease_keep_alive(lease).await?;
    keeper.keep_alive().await?;
    Ok(responses.message().await?.is_some_and(|r| r.ttl() > 0))
}

/// Reads the project's claims afresh into its view; returns the revision they were read at. What the watch
/// brought meanwhile, newer than that read, stays (see [`View::keep_newer`]), so a read while the watch runs
/// never loses a change.
async fn reload(client: &mut Client, project: &Project) -> Result<i64, HubError> {
    // In pages, all at the first page's revision: a big project's claims do not fit in one gRPC message
    // (4 MiB, about 16,000 claims). The next page is on its way while this one is parsed.
    let prefix = project.claims_prefix();
    // The end of the prefix range: its last byte, `/`, plus one.
    let end = format!("{}0", prefix.trim_end_matches('/'));
    let page = |client: &Client, from: Vec<u8>, revision: i64| {
        let mut client = client.clone();
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(RELOAD_PAGE);
        if revision != 0 {
            options = options.with_revision(revision);
        }
        tokio::spawn(async move { client.get(from, Some(options)).await })
    };
    let mut fresh = View::default();
    let mut next = page(client, prefix.into_bytes(), 0);
    let mut revision = 0;
    loop {
        let response = next
            .await
            .map_err(|e| HubError::Unavailable(format!("reading the view failed: {e}")))?
            .map_err(etcd_error)?;
        if revision == 0 {
            revision = response.header().map_or(0, |h| h.revision());
        }
        let more = match response.kvs().last() {
            Some(last) if response.more() => Some(page(client, [last.key(), b"\0"].concat(), revision)),
            _ => None,
        };
        for kv in response.kvs() {
            project.apply(&mut fresh, kv.key_str().unwrap_or_default(), Some(kv.value()), kv.mod_revision());
        }
        match more {
            Some(page) => next = page,
            None => break,
        }
    }
    fresh.revision = revision;
    {
        let mut view = project.view();
        let watched = std::mem::take(&mut *view);
        fresh.keep_newer(watched);
        *view = fresh;
    }
    project.advanced.notify_waiters();
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
                            view.revision = view.revision.max(revision);
                        }
                        drop(view);
                        project.advanced.notify_waiters();
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

/// Which sessions of one project have mail waiting, as this hub knows from a watch of the project's mail keys,
/// so the sidecars' question every second (most times: nothing waits) costs etcd nothing. A message left
/// through another hub is known here once the watch brings it, a few ms later; it waits for the sidecar's next
/// question then, as a message left during a question does anyway.
#[derive(Default)]
struct MailIndex {
    /// How many messages wait for each (escaped) session; `None` while the watch is not set up (not yet, or
    /// broken): then etcd is asked.
    waiting: Mutex<Option<HashMap<String, usize>>>,
}

impl MailIndex {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Option<HashMap<String, usize>>> {
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Of `sessions`, those with mail waiting; `None` when the index cannot tell.
    fn with_mail<'s>(&self, sessions: &'s [String]) -> Option<Vec<&'s String>> {
        let waiting = self.waiting();
        let waiting = waiting.as_ref()?;
        Some(sessions.iter().filter(|session| waiting.contains_key(&escape(session))).collect())
    }

    /// Starts over from the sessions of every mail key there is (one each).
    fn reset<'k>(&self, keys_of: impl Iterator<Item = &'k str>) {
        let mut waiting = HashMap::new();
        for session in keys_of {
            *waiting.entry(session.to_owned()).or_insert(0) += 1;
        }
        *self.waiting() = Some(waiting);
    }

    /// A mail key of `session` was made (`true`) or deleted.
    fn count(&self, session: &str, made: bool) {
        let mut waiting = self.waiting();
        let Some(waiting) = waiting.as_mut() else { return };
        if made {
            *waiting.entry(session.to_owned()).or_insert(0) += 1;
        } else if let Some(count) = waiting.get_mut(session) {
            *count -= 1;
            if *count == 0 {
                waiting.remove(session);
            }
        }
    }

    /// Until the next [`MailIndex::reset`], the index cannot tell.
    fn forget(&self) {
        *self.waiting() = None;
    }
}

/// The escaped session a mail key (`<prefix><session>/<time>-<origin>-<id>`) is for.
fn mail_session<'k>(prefix: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix(prefix)?.split_once('/').map(|(session, _)| session)
}

/// Keeps `index` current with the mail keys under `prefix`, forever: while the watch is broken, the index
/// cannot tell, and every question goes to etcd.
async fn watch_mail(mut client: Client, prefix: String, index: Arc<MailIndex>) {
    loop {
        let why = follow_mail(&mut client, &prefix, &index).await;
        // Not a warning: without the index every question goes to etcd, as it did before there was one, and a
        // cluster that is away says so through every other request.
        tracing::debug!("mail index of {prefix}: {why}");
        index.forget();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads the mail keys under `prefix` into `index`, then follows them with a watch from that read's revision
/// until it ends; returns why it ended.
async fn follow_mail(client: &mut Client, prefix: &str, index: &MailIndex) -> String {
    let read = match client.get(prefix, Some(GetOptions::new().with_prefix().with_keys_only())).await {
        Ok(read) => read,
        Err(e) => return format!("the read failed: {e}"),
    };
    index.reset(read.kvs().iter().filter_map(|kv| mail_session(prefix, kv.key_str().ok()?)));
    let revision = read.header().map_or(0, |h| h.revision());
    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let mut stream = match client.watch(prefix, Some(options)).await {
        Ok(stream) => stream,
        Err(e) => return format!("the watch failed: {e}"),
    };
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) if !response.canceled() => response,
            Ok(_) => return "the watch ended".to_owned(),
            Err(e) => return format!("the watch broke: {e}"),
        };
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let Some(session) = kv.key_str().ok().and_then(|key| mail_session(prefix, key)) else { continue };
            match event.event_type() {
                // A put of a key already there (version above 1) changes no count.
                EventType::Put if kv.version() == 1 => index.count(session, true),
                EventType::Put => {}
                EventType::Delete => index.count(session, false),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mail_index_counts_each_sessions_waiting_keys_and_cannot_tell_until_read() {
        let index = MailIndex::default();
        let asked = ["carol".to_owned(), "dave".to_owned(), "a/b".to_owned()];
        assert_eq!(index.with_mail(&asked), None, "not read yet: etcd is asked");
        let prefix = "lanes/p/mail/";
        let keys = ["lanes/p/mail/carol/1-m1-1", "lanes/p/mail/carol/2-m1-2", "lanes/p/mail/a%2Fb/3-m1-3"];
        index.reset(keys.iter().filter_map(|key| mail_session(prefix, key)));
        assert_eq!(index.with_mail(&asked), Some(vec![&asked[0], &asked[2]]), "sessions are matched escaped");
        index.count("carol", false);
        assert_eq!(index.with_mail(&asked[..1]), Some(vec![&asked[0]]), "one of carol's two is left");
        index.count("carol", false);
        index.count("dave", false);
        assert_eq!(index.with_mail(&asked[..2]), Some(vec![]), "a delete of nothing counted changes nothing");
        index.count("dave", true);
        assert_eq!(index.with_mail(&asked[..2]), Some(vec![&asked[1]]));
        index.forget();
        assert_eq!(index.with_mail(&asked), None, "a broken watch: etcd is asked again");
        assert_eq!(mail_session(prefix, "lanes/p/mailbox"), None);
    }

    fn held(origin: &str, id: u64, scope: &str) -> Held {
        let claim = HubClaim {
            id,
            holder: format!("{origin}-agent"),
            scopes: vec![scope.to_owned()],
            mode: lanes_proto::Mode::Exclusive,
            ttl_secs: 60,
        };
        Held { origin: origin.to_owned(), claim, epoch: 5, expires_at_ms: u64::MAX, lease: 0 }
    }

    fn view_with(revision: i64, claims: &[(Held, i64)], deleted: &[((&str, u64), i64)]) -> View {
        let mut view = View { revision, ..View::default() };
        for (claim, at) in claims {
            view.revisions.insert((claim.origin.clone(), claim.claim.id), *at);
            view.space.insert(claim.clone());
        }
        for ((origin, id), at) in deleted {
            view.revisions.insert(((*origin).to_owned(), *id), *at);
        }
        view
    }

    #[test]
    fn a_whole_read_keeps_what_the_watch_brought_after_it() {
        // Read at revision 10: a was put at 4, b at 6.
        let mut fresh = view_with(10, &[(held("a", 1, "src/a.rs"), 4), (held("b", 1, "src/b.rs"), 6)], &[]);
        // Meanwhile the watch brought b's release (12) and c's grant (11), and still shows a put it saw at 4.
        let mut watched =
            view_with(12, &[(held("a", 1, "src/a.rs"), 4), (held("c", 1, "src/c.rs"), 11)], &[(("b", 1), 12)]);
        watched.guards.insert("g".to_owned(), 11);
        fresh.guards.insert("g".to_owned(), 3);
        fresh.keep_newer(watched);
        assert!(fresh.space.get("a", 1).is_some());
        assert!(fresh.space.get("b", 1).is_none(), "a release after the read stands");
        assert!(fresh.space.get("c", 1).is_some(), "a grant after the read stands");
        assert_eq!(fresh.guards["g"], 11);
        assert_eq!(fresh.revision, 12);
    }

    #[test]
    fn a_whole_read_wins_over_what_the_watch_had_before_it() {
        // The watch still showed b (put at 6); the read at 10 no longer has it: it was released by then.
        let mut fresh = view_with(10, &[], &[]);
        let watched = view_with(8, &[(held("b", 1, "src/b.rs"), 6)], &[]);
        fresh.keep_newer(watched);
        assert!(fresh.space.get("b", 1).is_none());
        assert_eq!(fresh.revision, 10);
    }
}
