//! The hub's store for one box: SQLite (WAL, fsync per commit). The hub process is its only writer, so the
//! claim spaces live in memory and every change is written through before it is answered.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use lanes_proto::hub::{HubClaim, HubClaimView};
use lanes_proto::{EventView, MessageView};
use rusqlite::{Connection, OptionalExtension, params};

use crate::space::{Held, Space};
use crate::{HubError, Presence};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS claims (
    project TEXT NOT NULL, origin TEXT NOT NULL, id INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (project, origin, id));
CREATE TABLE IF NOT EXISTS events (
    project TEXT NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
    PRIMARY KEY (project, origin, seq));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS presence (
    project TEXT NOT NULL, origin TEXT NOT NULL, presence TEXT NOT NULL, PRIMARY KEY (project, origin));
CREATE TABLE IF NOT EXISTS mail (
    id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, session TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS mail_by_session ON mail (project, session);
";

struct Inner {
    db: Connection,
    spaces: HashMap<String, Space>,
    epoch: u64,
}

/// Claims and events in one SQLite file.
pub struct SqliteStore {
    inner: Mutex<Inner>,
    /// Changes waiting for the next batch: whoever holds `inner` next writes them all in one transaction.
    waiting: Mutex<Vec<Wanted>>,
}

/// A change of a project's claims waiting for the next batch, and where its answer goes (a grant's epoch).
struct Wanted {
    project: String,
    change: Change,
    answer: Answer,
}

type Answer = std::sync::mpsc::Sender<Result<u64, HubError>>;

enum Change {
    Grant {
        origin: String,
        claim: HubClaim,
        now_ms: u64,
    },
    Held(HeldChange),
    /// Events of a sidecar after `after`; answered with the new cursor.
    Push {
        origin: String,
        after: u64,
        events: Vec<EventView>,
    },
}

/// A change of a claim the hub holds.
enum HeldChange {
    /// The claim with the holder and expiry the sidecar names now.
    Renew(Held),
    Release(Held),
}

/// The most changes one transaction carries.
const MAX_BATCH: usize = 256;

/// Writes a batch of changes (grants, renewals, releases, event pushes) in one transaction and answers each.
/// Grants are decided in order, each against its project's claims and the grants before it in the batch
/// ([`Space::conflicts_in_batch`]), each with an epoch of its own. The claim spaces change only once the
/// transaction is committed, so a grant still sees a claim released in its own batch (as if it had come just
/// before the release).
fn decide(inner: &mut Inner, batch: Vec<Wanted>) {
    let mut grants: std::collections::BTreeMap<String, Vec<(String, HubClaim, u64, Answer)>> = Default::default();
    let mut others: Vec<(String, HeldChange, Answer)> = Vec::new();
    let mut pushes: Vec<(String, String, u64, Vec<EventView>, Answer)> = Vec::new();
    for Wanted { project, change, answer } in batch {
        match change {
            Change::Grant { origin, claim, now_ms } => {
                grants.entry(project).or_default().push((origin, claim, now_ms, answer))
            }
            Change::Held(change) => others.push((project, change, answer)),
            Change::Push { origin, after, events } => pushes.push((project, origin, after, events, answer)),
        }
    }
    let mut granted: Vec<(String, Held, Answer)> = Vec::new();
    let mut epoch = inner.epoch;
    let mut pushed: Vec<Result<u64, HubError>> = Vec::new();
    let written = (|| -> Result<(), HubError> {
        let tx = inner.db.unchecked_transaction().map_err(db_error)?;
        for (project, wanted) in grants {
            let space = inner.spaces.entry(project.clone()).or_default();
            for expired in wanted.first().map(|(_, _, now_ms, _)| space.sweep(*now_ms)).unwrap_or_default() {
                delete_claim(&tx, &project, &expired.origin, expired.claim.id)?;
            }
            let verdicts = space.conflicts_in_batch(wanted.iter().map(|(o, c, now_ms, _)| (o.as_str(), c, *now_ms)));
            for ((origin, claim, now_ms, answer), verdict) in wanted.into_iter().zip(verdicts) {
                match verdict {
                    Ok(conflicts) if conflicts.is_empty() => {
                        epoch += 1;
                        let expires_at_ms = now_ms + claim.ttl_secs * 1000;
                        let held = Held { origin, expires_at_ms, claim, epoch, lease: 0 };
                        write_claim(&tx, &project, &held)?;
                        granted.push((project.clone(), held, answer));
                    }
                    Ok(conflicts) => drop(answer.send(Err(HubError::Conflict(conflicts)))),
                    Err(invalid) => drop(answer.send(Err(HubError::Invalid(invalid)))),
                }
            }
        }
        for (project, change, _) in &others {
            match change {
                HeldChange::Renew(held) => write_claim(&tx, project, held)?,
                HeldChange::Release(held) => delete_claim(&tx, project, &held.origin, held.claim.id)?,
            }
        }
        for (project, origin, after, events, _) in &pushes {
            pushed.push(append_events(&tx, project, origin, *after, events)?);
        }
        if epoch != inner.epoch {
            tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('epoch', ?1)", [epoch]).map_err(db_error)?;
        }
        tx.commit().map_err(db_error)
    })();
    let answers = granted.iter().map(|(_, _, a)| a).chain(others.iter().map(|(_, _, a)| a));
    if let Err(e) = written {
        let answers = answers.chain(pushes.iter().map(|(.., a)| a));
        for answer in answers {
            let _ = answer.send(Err(HubError::Unavailable(e.to_string())));
        }
        return;
    }
    inner.epoch = epoch;
    for (project, held, answer) in granted {
        let epoch = held.epoch;
        inner.spaces.entry(project).or_default().insert(held);
        let _ = answer.send(Ok(epoch));
    }
    for (project, change, answer) in others {
        let space = inner.spaces.entry(project).or_default();
        match change {
            HeldChange::Renew(held) => space.insert(held),
            HeldChange::Release(held) => drop(space.remove(&held.origin, held.claim.id)),
        }
        let _ = answer.send(Ok(0));
    }
    for ((.., answer), result) in pushes.into_iter().zip(pushed) {
        let _ = answer.send(result);
    }
}

fn db_error(e: rusqlite::Error) -> HubError {
    HubError::Unavailable(format!("hub store: {e}"))
}

impl SqliteStore {
    /// Opens (or creates) the store and loads every claim.
    pub fn open(path: &Path) -> Result<SqliteStore, HubError> {
        // A missing directory is a typo more often than a wish: make no tree of directories (as root, say).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
            return Err(HubError::Invalid(format!(
                "{} does not exist: create it first, or give the store a path in an existing directory",
                dir.display()
            )));
        }
        let db = Connection::open(path).map_err(db_error)?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(db_error)?;
        db.pragma_update(None, "synchronous", "FULL").map_err(db_error)?;
        db.execute_batch(SCHEMA).map_err(db_error)?;
        let epoch: u64 = db
            .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| r.get(0))
            .optional()
            .map_err(db_error)?
            .unwrap_or(0);
        let mut spaces: HashMap<String, Space> = HashMap::new();
        {
            let mut rows = db.prepare("SELECT project, record FROM claims").map_err(db_error)?;
            let loaded =
                rows.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(db_error)?;
            for row in loaded {
                let (project, record) = row.map_err(db_error)?;
                match serde_json::from_str::<Held>(&record) {
                    Ok(held) => spaces.entry(project).or_default().insert(held),
                    Err(e) => tracing::warn!("skipping an unreadable claim of {project}: {e}"),
                }
            }
        }
        Ok(SqliteStore { inner: Mutex::new(Inner { db, spaces, epoch }), waiting: Mutex::new(Vec::new()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Grants a claim unless another holder's live claim overlaps it; answers its epoch.
    pub fn acquire(&self, project: &str, origin: &str, claim: HubClaim, now_ms: u64) -> Result<u64, HubError> {
        self.write(project, Change::Grant { origin: origin.to_owned(), claim, now_ms })
    }

    /// Renews a claim the hub holds, taking the holder the sidecar names now.
    pub fn renew(&self, project: &str, claim: HubClaim, held: Held, now_ms: u64) -> Result<(), HubError> {
        let held = Held { expires_at_ms: now_ms + claim.ttl_secs * 1000, claim, ..held };
        self.write(project, Change::Held(HeldChange::Renew(held))).map(drop)
    }

    /// Releases a claim.
    pub fn release(&self, project: &str, held: &Held) -> Result<(), HubError> {
        self.write(project, Change::Held(HeldChange::Release(held.clone()))).map(drop)
    }

    /// Writes a change and answers once it is committed. Changes that arrive while another batch commits wait
    /// and go together in the next transaction (group commit: one fsync for the lot).
    fn write(&self, project: &str, change: Change) -> Result<u64, HubError> {
        let (answer, answered) = std::sync::mpsc::channel();
        let wanted = Wanted { project: project.to_owned(), change, answer };
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(wanted);
        let decided = || match answered.try_recv() {
            Ok(result) => Some(result),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            // Its batch failed before it was decided.
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Some(Err(HubError::Unavailable("the hub store failed while deciding: try again".to_owned())))
            }
        };
        loop {
            if let Some(result) = decided() {
                return result;
            }
            let mut inner = self.lock();
            if let Some(result) = decided() {
                return result;
            }
            let batch: Vec<Wanted> = {
                let mut waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let take = waiting.len().min(MAX_BATCH);
                waiting.drain(..take).collect()
            };
            decide(&mut inner, batch);
        }
    }

    /// Those of `ids` that one sidecar holds.
    pub fn among(&self, project: &str, origin: &str, ids: &[u64]) -> Vec<Held> {
        self.lock().spaces.get(project).map(|s| s.among(origin, ids)).unwrap_or_default()
    }

    /// The claims one sidecar holds.
    pub fn of_origin(&self, project: &str, origin: &str) -> Vec<Held> {
        self.lock().spaces.get(project).map(|s| s.of_origin(origin)).unwrap_or_default()
    }

    /// The live claims of a project.
    pub fn claims(&self, project: &str, now_ms: u64) -> Vec<HubClaimView> {
        self.lock().spaces.get(project).map(|s| s.live(now_ms)).unwrap_or_default()
    }

    /// [`crate::space::Space::some_live`] of a project.
    pub fn some_claims(
        &self,
        project: &str,
        now_ms: u64,
        first: &std::collections::BTreeSet<(String, u64)>,
        limit: usize,
    ) -> crate::space::SomeClaims {
        self.lock().spaces.get(project).map(|s| s.some_live(now_ms, first, limit)).unwrap_or_default()
    }

    /// Appends events after `after`, which must be the last one stored; returns the new cursor. Pushes join
    /// the claims' batches, so they cost no fsync of their own.
    pub fn push(&self, project: &str, origin: &str, after: u64, events: Vec<EventView>) -> Result<u64, HubError> {
        self.write(project, Change::Push { origin: origin.to_owned(), after, events })
    }

    /// Events from one sidecar after a cursor, and the last one stored.
    pub fn events(
        &self,
        project: &str,
        origin: &str,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<EventView>, u64), HubError> {
        let inner = self.lock();
        let mut statement = inner
            .db
            .prepare_cached(
                "SELECT event FROM events WHERE project = ?1 AND origin = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
            )
            .map_err(db_error)?;
        let rows =
            statement.query_map(params![project, origin, after, limit], |r| r.get::<_, String>(0)).map_err(db_error)?;
        let mut events = Vec::new();
        for row in rows {
            let text = row.map_err(db_error)?;
            events.push(serde_json::from_str(&text).map_err(|e| HubError::Unavailable(e.to_string()))?);
        }
        Ok((events, cursor(&inner.db, project, origin)?))
    }

    /// Records which sessions a sidecar has live.
    pub fn set_presence(&self, project: &str, origin: &str, presence: &Presence) -> Result<(), HubError> {
        let text = serde_json::to_string(presence).map_err(|e| HubError::Invalid(e.to_string()))?;
        self.lock()
            .db
            .execute(
                "INSERT OR REPLACE INTO presence (project, origin, presence) VALUES (?1, ?2, ?3)",
                params![project, origin, text],
            )
            .map_err(db_error)?;
        Ok(())
    }

    /// What every sidecar of a project last said it has live.
    pub fn presence(&self, project: &str) -> Result<Vec<(String, Presence)>, HubError> {
        let inner = self.lock();
        let mut statement =
            inner.db.prepare_cached("SELECT origin, presence FROM presence WHERE project = ?1").map_err(db_error)?;
        let rows = statement
            .query_map([project], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(db_error)?;
        let mut all = Vec::new();
        for row in rows {
            let (origin, text) = row.map_err(db_error)?;
            if let Ok(presence) = serde_json::from_str(&text) {
                all.push((origin, presence));
            }
        }
        Ok(all)
    }

    /// Leaves messages, each for the session it names.
    pub fn put_mail(&self, project: &str, messages: &[MessageView]) -> Result<(), HubError> {
        let inner = self.lock();
        let tx = inner.db.unchecked_transaction().map_err(db_error)?;
        for message in messages {
            let text = serde_json::to_string(message).map_err(|e| HubError::Invalid(e.to_string()))?;
            tx.execute(
                "INSERT INTO mail (project, session, message) VALUES (?1, ?2, ?3)",
                params![project, message.to, text],
            )
            .map_err(db_error)?;
        }
        tx.commit().map_err(db_error)
    }

    /// Takes the messages waiting for `sessions`, oldest first: each is handed out once.
    pub fn take_mail(&self, project: &str, sessions: &[String]) -> Result<Vec<MessageView>, HubError> {
        let inner = self.lock();
        let tx = inner.db.unchecked_transaction().map_err(db_error)?;
        let mut taken = Vec::new();
        for session in sessions {
            let mut statement = tx
                .prepare_cached("DELETE FROM mail WHERE project = ?1 AND session = ?2 RETURNING id, message")
                .map_err(db_error)?;
            let rows = statement
                .query_map([project, session], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(db_error)?;
            for row in rows {
                let (id, text) = row.map_err(db_error)?;
                if let Ok(message) = serde_json::from_str::<MessageView>(&text) {
                    taken.push((id, message));
                }
            }
        }
        tx.commit().map_err(db_error)?;
        taken.sort_by_key(|(id, _)| *id);
        Ok(taken.into_iter().map(|(_, message)| message).collect())
    }
}

fn cursor(db: &Connection, project: &str, origin: &str) -> Result<u64, HubError> {
    db.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM events WHERE project = ?1 AND origin = ?2",
        [project, origin],
        |r| r.get(0),
    )
    .map_err(db_error)
}

/// Appends a push's events in its batch's transaction. `Ok` holds the push's own answer: the new cursor, the
/// stored one when `after` is stale (nothing written), or why its events are refused (nothing written); `Err`
/// fails the batch.
fn append_events(
    tx: &Connection,
    project: &str,
    origin: &str,
    after: u64,
    events: &[EventView],
) -> Result<Result<u64, HubError>, HubError> {
    let cursor = cursor(tx, project, origin)?;
    if cursor != after {
        return Ok(Ok(cursor));
    }
    let mut last = cursor;
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        if event.seq <= last {
            return Ok(Err(HubError::Invalid(format!("events must be in order: {} after {last}", event.seq))));
        }
        match serde_json::to_string(event) {
            Ok(text) => rows.push((event.seq, text)),
            Err(e) => return Ok(Err(HubError::Invalid(e.to_string()))),
        }
        last = event.seq;
    }
    for (seq, text) in rows {
        tx.execute(
            "INSERT INTO events (project, origin, seq, event) VALUES (?1, ?2, ?3, ?4)",
            params![project, origin, seq, text],
        )
        .map_err(db_error)?;
    }
    if let Some(oldest_kept) = crate::oldest_kept_event(last) {
        tx.execute(
            "DELETE FROM events WHERE project = ?1 AND origin = ?2 AND seq < ?3",
            params![project, origin, oldest_kept],
        )
        .map_err(db_error)?;
    }
    Ok(Ok(last))
}

fn write_claim(db: &Connection, project: &str, held: &Held) -> Result<(), HubError> {
    let record = serde_json::to_string(held).map_err(|e| HubError::Invalid(e.to_string()))?;
    db.execute(
        "INSERT OR REPLACE INTO claims (project, origin, id, record) VALUES (?1, ?2, ?3, ?4)",
        params![project, held.origin, held.claim.id, record],
    )
    .map_err(db_error)?;
    Ok(())
}

fn delete_claim(db: &Connection, project: &str, origin: &str, id: u64) -> Result<(), HubError> {
    db.execute("DELETE FROM claims WHERE project = ?1 AND origin = ?2 AND id = ?3", params![project, origin, id])
        .map_err(db_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(id: u64, holder: &str, scope: &str) -> HubClaim {
        HubClaim {
            id,
            holder: holder.to_owned(),
            scopes: vec![scope.to_owned()],
            mode: lanes_proto::Mode::Exclusive,
            ttl_secs: 60,
        }
    }

    /// Grants racing from many threads are batched: of overlapping ones exactly one wins and the rest are
    /// told who holds it; disjoint ones all win, each with an epoch of its own; racing releases go in batches
    /// too; all of it survives a reopen.
    #[test]
    fn racing_grants_are_decided_in_batches_exactly_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hub.db");
        let store = std::sync::Arc::new(SqliteStore::open(&path).expect("open"));
        let race = |id: u64, scope: fn(usize) -> String| {
            let threads: Vec<_> = (0..16)
                .map(|n| {
                    let store = std::sync::Arc::clone(&store);
                    std::thread::spawn(move || {
                        store.acquire("p", &format!("m{n}"), claim(id, &format!("s{n}"), &scope(n)), 1_000)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().expect("thread")).collect::<Vec<_>>()
        };
        let overlapping = race(1, |_| "src/".to_owned());
        assert_eq!(overlapping.iter().filter(|r| r.is_ok()).count(), 1, "{overlapping:?}");
        assert!(
            overlapping.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(HubError::Conflict(c)) if !c.is_empty()))
        );
        let disjoint = race(2, |n| format!("docs/{n}.md"));
        let mut epochs: Vec<u64> = disjoint.iter().map(|r| *r.as_ref().expect("granted")).collect();
        epochs.sort_unstable();
        epochs.dedup();
        assert_eq!(epochs.len(), 16, "each grant has an epoch of its own");
        let releases: Vec<_> = (0..16)
            .filter(|n| n % 2 == 0)
            .map(|n| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    let held = store.among("p", &format!("m{n}"), &[2]).pop().expect("held");
                    store.release("p", &held)
                })
            })
            .collect();
        assert!(releases.into_iter().all(|t| t.join().expect("thread").is_ok()));
        drop(store);
        let reopened = SqliteStore::open(&path).expect("reopen");
        assert_eq!(reopened.claims("p", 1_000).len(), 9, "the winner of src/ and the 8 disjoint grants not released");
    }
}
