//! The sidecar's durable state in SQLite: live claims, lapsed notes, sessions, counters, and an append-only
//! event log with a sequence number.
//!
//! The store persists what the claim book decided: the caller hands it the book's events and it applies
//! them, and their log rows, in one transaction, written before anyone is told. A commit reaches the
//! write-ahead log (WAL mode, `synchronous=NORMAL`), which survives a killed process. Under
//! [`Durability::Full`] (the default, DESIGN.md §3) a commit with an epoch-bearing event (grant, renew,
//! handoff) answers [`Commit::NeedsSync`]: the caller must run [`WalSync::sync`] before it tells anyone. The
//! sync is separate from the commit so that the caller can sync on another thread and commit the next batch
//! meanwhile; one sync covers every commit before it, which is `synchronous=FULL`'s guarantee with the fsyncs
//! of concurrent batches shared. [`Durability::Process`] never asks for a sync: still safe against kill -9, and
//! a power cut may lose the last grants.
//!
//! The sidecar is the only process that opens its database (the pidfile lock makes sure), so the connection
//! takes SQLite's exclusive locking mode: no file-lock system calls per transaction.

#![forbid(unsafe_code)]

mod schema;

use std::path::Path;
use std::time::Duration;

use lanes_core::{
    AgentWorktree, Checkpoint, Claim, ClaimId, Epoch, Event, LapsedNote, Message, Mode, Pending, Principal,
    ReleaseReason, Scope, Session, SessionInfo, Snapshot, Task, TaskStatus, Timestamp, Worktree,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Value, json};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("state database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database's files could not be reached.
    #[error("state database file error: {0}")]
    Io(#[from] std::io::Error),
    /// A row could not be read back.
    #[error("state database holds an invalid row: {0}")]
    Corrupt(String),
    /// The database was written by a newer lanes.
    #[error("state database has schema version {found}, newer than this lanes ({supported}); upgrade lanes")]
    TooNew {
        /// The version found.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
}

/// One row of the event log.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedEvent {
    /// Sequence number, strictly increasing.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// `grant`, `renew`, `release`, `expire`, `handoff`, `session_start` or `session_end`.
    pub kind: String,
    /// The session concerned.
    pub session: Option<String>,
    /// The claim concerned.
    pub claim: Option<u64>,
    /// Details.
    pub data: Value,
}

/// How hard a commit tries to reach the disk before it returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Grants, renewals and handoffs are fsynced before they are answered.
    #[default]
    Full,
    /// Nothing is fsynced on commit; a commit survives the process being killed, not the machine losing power.
    Process,
}

/// What a commit leaves to do before it may be answered.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// Nothing: the commit may be answered (after any earlier commit that needs a sync).
    Done,
    /// It hands out an epoch under [`Durability::Full`]: answer it only after a [`WalSync::sync`] that started
    /// after this commit returned.
    NeedsSync,
}

/// Makes every commit so far durable, from any thread: an fdatasync of the write-ahead log. The log holds each
/// commit since the last checkpoint, and a checkpoint syncs the log before it copies it into the database and
/// the database after, so a sync of the log covers all commits that returned before it started.
#[derive(Debug)]
pub struct WalSync(std::fs::File);

impl WalSync {
    /// Flushes the write-ahead log to the disk.
    pub fn sync(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
}

/// The sessions a commit names, and the checkpoint it names.
pub type CommitRecord = (Vec<String>, Option<String>);

/// The state database of one repository.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    durability: Durability,
    /// The counters the database holds, once this connection wrote them.
    written_counters: Option<(u64, u64)>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it to the current schema.
    pub fn open(path: &Path, durability: Durability) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // Only the sidecar opens its database: no per-transaction file locks (see the module docs).
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        // Small pages: a grant touches a few pages, and every touched page is written whole to the log and
        // synced. 1 KiB pages write a quarter of the bytes of the 4 KiB default. (Only a new database takes it.)
        conn.pragma_update(None, "page_size", 1024)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Commits reach the log; the syncs that make them durable are the caller's (see `Commit`).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        schema::migrate(&mut conn)?;
        Ok(Store { conn, durability, written_counters: None })
    }

    /// A handle on the write-ahead log for [`WalSync::sync`].
    pub fn wal_sync(&self) -> Result<WalSync, StoreError> {
        let db = self.conn.path().ok_or_else(|| StoreError::Corrupt("the state database has no file".into()))?;
        Ok(WalSync(std::fs::File::open(format!("{db}-wal"))?))
    }

    /// Reads everything needed to rebuild the claim book.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let counter = |key: &str| -> Result<u64, StoreError> {
            let value: Option<i64> =
                self.conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?;
            Ok(value.map_or(0, |v| v as u64))
        };
        let claims = self.select(
            "SELECT id, session, agent, worktree, git_dir, scopes, mode, epoch, ttl_ms, granted_at, expires_at, note, task,
                    pending_at, pending_branch
             FROM claims ORDER BY id",
            claim_from_row,
        )?;
        let lapsed = self.select(
            "SELECT claim, session, agent, scopes, note, expired_at FROM lapsed_notes ORDER BY rowid",
            |row| {
                Ok(LapsedNote {
                    claim: ClaimId(row.get::<_, i64>(0)? as u64),
                    holder: Principal { session: row.get(1)?, agent: row.get(2)? },
                    scopes: parse_scopes(&row.get::<_, String>(3)?)?,
                    note: row.get(4)?,
                    expired_at: Timestamp(row.get::<_, i64>(5)? as u64),
                })
            },
        )?;
        let sessions = self.select("SELECT id, state, started_at, info, ended_at FROM sessions", |row| {
            let info: Value = serde_json::from_str(&row.get::<_, String>(3)?).unwrap_or(Value::Null);
            let text = |key: &str| info.get(key).and_then(Value::as_str).map(str::to_owned);
            let started_at = Timestamp(row.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64);
            let session = Session {
                live: row.get::<_, String>(1)? != "ended",
                started_at,
                last_seen: started_at,
                ended_at: row.get::<_, Option<i64>>(4)?.map(|t| Timestamp(t as u64)),
                info: SessionInfo {
                    worktree: text("worktree"),
                    branch: text("branch"),
                    model: text("model"),
                    source: text("source"),
                    client: text("client"),
                },
            };
            Ok((row.get(0)?, session))
        })?;
        let inbox = self.select(
            "SELECT id, sender, recipient, text, sent_at FROM messages WHERE delivered_at IS NULL ORDER BY id",
            |row| {
                Ok(Message {
                    id: row.get::<_, i64>(0)? as u64,
                    from: row.get(1)?,
                    to: row.get(2)?,
                    text: row.get(3)?,
                    sent_at: Timestamp(row.get::<_, i64>(4)? as u64),
                })
            },
        )?;
        let last_checkpoints = self.select(
            "SELECT session, id FROM checkpoints c
             WHERE created_at = (SELECT max(created_at) FROM checkpoints WHERE session = c.session)",
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let tasks = self.select(
            "SELECT id, title, status, after, scopes, session, agent, claim, note FROM tasks ORDER BY id",
            |row| {
                let session: Option<String> = row.get(5)?;
                Ok(Task {
                    id: row.get::<_, i64>(0)? as u64,
                    title: row.get(1)?,
                    status: match row.get::<_, String>(2)?.as_str() {
                        "taken" => TaskStatus::Taken,
                        "done" => TaskStatus::Done,
                        "dropped" => TaskStatus::Dropped,
                        _ => TaskStatus::Open,
                    },
                    after: serde_json::from_str(&row.get::<_, String>(3)?)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    scopes: parse_scopes(&row.get::<_, String>(4)?)?,
                    holder: session.map(|session| Principal { session, agent: row.get(6).ok().flatten() }),
                    claim: row.get::<_, Option<i64>>(7)?.map(|c| ClaimId(c as u64)),
                    note: row.get(8)?,
                })
            },
        )?;
        let agent_worktrees =
            self.select("SELECT session, agent, path, branch, base FROM agent_worktrees ORDER BY rowid", |row| {
                Ok(AgentWorktree {
                    session: row.get(0)?,
                    agent: row.get(1)?,
                    path: row.get(2)?,
                    branch: row.get(3)?,
                    base: row.get(4)?,
                })
            })?;
        let last_message: Option<i64> = self.conn.query_row("SELECT max(id) FROM messages", [], |r| r.get(0))?;
        Ok(Snapshot {
            claims,
            lapsed,
            sessions,
            inbox,
            last_checkpoints,
            tasks,
            agent_worktrees,
            next_message_id: last_message.map_or(1, |id| id as u64 + 1),
            epoch: Epoch(counter("epoch")?),
            next_id: counter("next_id")?.max(1),
        })
    }

    /// Every row of a parameterless query, each read with `read`.
    fn select<T>(
        &self,
        sql: &str,
        mut read: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        let mut found = Vec::new();
        while let Some(row) = rows.next()? {
            found.push(read(row)?);
        }
        Ok(found)
    }

    /// Applies the book's events and appends them to the log, all in one transaction; `epoch` and `next_id`
    /// are the book's counters after them. Returns once the transaction is committed, with what is left to
    /// do before it may be answered.
    pub fn commit(&mut self, events: &[Event], epoch: Epoch, next_id: u64) -> Result<Commit, StoreError> {
        if events.is_empty() {
            return Ok(Commit::Done);
        }
        let needs_sync = self.durability == Durability::Full
            && events.iter().any(|e| {
                matches!(
                    e,
                    Event::Granted { .. } | Event::Renewed { .. } | Event::HandedOff { .. } | Event::TakenOver { .. }
                )
            });
        let tx = self.conn.transaction()?;
        for event in events {
            apply(&tx, event)?;
            let (kind, at, session, claim, data) = log_row(event);
            tx.prepare_cached("INSERT INTO events (at, kind, session, claim, data) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![at.0 as i64, kind, session, claim.map(|c| c as i64), data.to_string()])?;
        }
        // Counters that did not move (a release, a message) cost no page write.
        let counters = (epoch.0, next_id);
        if self.written_counters != Some(counters) {
            let mut set = tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?;
            set.execute(params!["epoch", epoch.0 as i64])?;
            set.execute(params!["next_id", next_id as i64])?;
        }
        tx.commit()?;
        self.written_counters = Some(counters);
        Ok(if needs_sync { Commit::NeedsSync } else { Commit::Done })
    }

    /// Up to `limit` events after sequence number `since`, in order.
    pub fn events_since(&self, since: u64, limit: u32) -> Result<Vec<LoggedEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, at, kind, session, claim, data FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        // A cursor past i64::MAX (a client's garbage) means "after everything", never a wrap to the start.
        let mut rows = stmt.query(params![i64::try_from(since).unwrap_or(i64::MAX), limit])?;
        let mut events = Vec::new();
        while let Some(row) = rows.next()? {
            let data: String = row.get(5)?;
            events.push(LoggedEvent {
                seq: row.get::<_, i64>(0)? as u64,
                at: Timestamp(row.get::<_, i64>(1)? as u64),
                kind: row.get(2)?,
                session: row.get(3)?,
                claim: row.get::<_, Option<i64>>(4)?.map(|c| c as u64),
                data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            });
        }
        Ok(events)
    }

    /// Checkpoints, newest first: of one session, or of all.
    pub fn checkpoints(&self, session: Option<&str>, limit: u32) -> Result<Vec<Checkpoint>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, commit_id, session, worktree, head, files, message, created_at, prompt FROM checkpoints
             WHERE ?1 IS NULL OR session = ?1 ORDER BY created_at DESC, rowid DESC LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![session, limit])?;
        let mut found = Vec::new();
        while let Some(row) = rows.next()? {
            let files: String = row.get(5)?;
            found.push(Checkpoint {
                id: row.get(0)?,
                commit: row.get(1)?,
                session: row.get(2)?,
                worktree: row.get(3)?,
                head: row.get(4)?,
                files: serde_json::from_str(&files).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                message: row.get(6)?,
                at: Timestamp(row.get::<_, i64>(7)? as u64),
                prompt: row.get(8)?,
            });
        }
        Ok(found)
    }

    /// One checkpoint by id prefix.
    /// The checkpoints whose id or commit starts with `prefix`, newest first (none for an empty prefix); a
    /// full id or commit matches only its own checkpoint.
    pub fn checkpoints_matching(&self, prefix: &str) -> Result<Vec<Checkpoint>, StoreError> {
        if prefix.is_empty() {
            return Ok(Vec::new());
        }
        let all = self.checkpoints(None, u32::MAX)?;
        if let Some(exact) = all.iter().find(|c| c.id == prefix || c.commit == prefix) {
            return Ok(vec![exact.clone()]);
        }
        Ok(all.into_iter().filter(|c| c.id.starts_with(prefix) || c.commit.starts_with(prefix)).collect())
    }

    /// Sessions (not subagents) that touched any of `files` after `since`, in order of first touch.
    pub fn sessions_touching(&self, files: &[String], since: Timestamp) -> Result<Vec<String>, StoreError> {
        // Edits the hooks saw, and checkpoints a session took of the files (`lanes checkpoint` from a shell),
        // in the order they happened.
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, session, files FROM (
                 SELECT at, seq AS ord, session, json_extract(data, '$.files') AS files FROM events
                     WHERE kind = 'touch' AND at > ?1
                 UNION ALL
                 SELECT created_at AS at, 0 AS ord, session, files FROM checkpoints WHERE created_at > ?1
             ) ORDER BY at, ord",
        )?;
        let mut rows = stmt.query([since.0 as i64])?;
        let mut sessions: Vec<String> = Vec::new();
        while let Some(row) = rows.next()? {
            let principal: Option<String> = row.get(1)?;
            let listed: Option<String> = row.get(2)?;
            let touched: Value = listed.and_then(|l| serde_json::from_str(&l).ok()).unwrap_or(Value::Null);
            let hit = touched
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| f.as_str().is_some_and(|f| files.iter().any(|x| x == f)));
            if let (true, Some(principal)) = (hit, principal) {
                let session = principal.split('/').next().unwrap_or_default().to_owned();
                if !sessions.contains(&session) {
                    sessions.push(session);
                }
            }
        }
        Ok(sessions)
    }

    /// The sessions and checkpoint recorded for a commit by the git hooks, if any.
    pub fn commit_record(&self, commit: &str) -> Result<Option<CommitRecord>, StoreError> {
        let data: Option<String> = self
            .conn
            .query_row(
                "SELECT data FROM events WHERE kind = 'commit' AND json_extract(data, '$.commit') = ?1 ORDER BY seq DESC LIMIT 1",
                [commit],
                |r| r.get(0),
            )
            .optional()?;
        Ok(data.and_then(|d| serde_json::from_str::<Value>(&d).ok()).map(|v| {
            let sessions =
                v["sessions"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect();
            (sessions, v["checkpoint"].as_str().map(str::to_owned))
        }))
    }

    /// The log of one session (and its subagents): grants, releases, handoffs, touches, turns.
    pub fn session_events(&self, session: &str, limit: u32) -> Result<Vec<LoggedEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq FROM events WHERE session = ?1 OR session LIKE ?2 OR json_extract(data, '$.to') = ?1 ORDER BY seq LIMIT ?3",
        )?;
        let seqs: Vec<i64> =
            stmt.query_map(params![session, format!("{session}/%"), limit], |r| r.get(0))?.collect::<Result<_, _>>()?;
        let mut events = Vec::new();
        for seq in seqs {
            events.extend(self.events_since(seq as u64 - 1, 1)?);
        }
        Ok(events)
    }

    /// Checks the database file's integrity (for `lanes doctor`).
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self.conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?)
    }

    /// The schema version on disk.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, event: &Event) -> Result<(), StoreError> {
    match event {
        Event::SessionStarted { session, info, at } => {
            tx.prepare_cached(
                "INSERT INTO sessions (id, state, started_at, info) VALUES (?1, 'live', ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET state = 'live', info = excluded.info,
                     started_at = CASE WHEN sessions.state = 'ended' THEN excluded.started_at ELSE sessions.started_at END",
            )?
            .execute(params![session, at.0 as i64, info_json(info).to_string()])?;
        }
        Event::MessageSent { message } => {
            tx.prepare_cached(
                "INSERT INTO messages (id, sender, recipient, text, sent_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                message.id as i64,
                message.from,
                message.to,
                message.text,
                message.sent_at.0 as i64
            ])?;
        }
        Event::MessagesDelivered { ids, at, .. } => {
            for id in ids {
                tx.prepare_cached("UPDATE messages SET delivered_at = ?2 WHERE id = ?1")?
                    .execute(params![*id as i64, at.0 as i64])?;
            }
        }
        Event::CheckpointRecorded { checkpoint: c } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO checkpoints (id, commit_id, session, worktree, head, files, message, created_at, prompt)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                c.id,
                c.commit,
                c.session,
                c.worktree,
                c.head,
                Value::from(c.files.clone()).to_string(),
                c.message,
                c.at.0 as i64,
                c.prompt
            ])?;
        }
        Event::AgentWorktreeCreated { worktree: w, .. } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO agent_worktrees (path, session, agent, branch, base) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![w.path, w.session, w.agent, w.branch, w.base])?;
        }
        Event::AgentWorktreeRemoved { path, .. } => {
            tx.prepare_cached("DELETE FROM agent_worktrees WHERE path = ?1")?.execute([path])?;
        }
        Event::SessionPruned { session, .. } => {
            tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?.execute([session])?;
            tx.prepare_cached("DELETE FROM checkpoints WHERE session = ?1")?.execute([session])?;
        }
        Event::TaskChanged { task, .. } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO tasks (id, title, status, after, scopes, session, agent, claim, note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                task.id as i64,
                task.title,
                task_status_name(task.status),
                Value::from(task.after.clone()).to_string(),
                scopes_json(&task.scopes),
                task.holder.as_ref().map(|h| h.session.clone()),
                task.holder.as_ref().and_then(|h| h.agent.clone()),
                task.claim.map(|c| c.0 as i64),
                task.note,
            ])?;
        }
        Event::FilesTouched { .. }
        | Event::Landing { .. }
        | Event::TurnEnded { .. }
        | Event::CommitRecorded { .. }
        | Event::PromptRecorded { .. } => {}
        Event::SessionEnded { session, at } => {
            tx.prepare_cached(
                "INSERT INTO sessions (id, state, started_at, ended_at) VALUES (?1, 'ended', ?2, ?2)
                 ON CONFLICT(id) DO UPDATE SET state = 'ended', ended_at = excluded.ended_at",
            )?
            .execute(params![session, at.0 as i64])?;
        }
        Event::Granted { claim, consumed_notes } => {
            write_claim(tx, claim)?;
            for note in consumed_notes {
                tx.prepare_cached("DELETE FROM lapsed_notes WHERE claim = ?1")?.execute([note.0 as i64])?;
            }
        }
        Event::Renewed { id, epoch, expires_at, .. } => {
            tx.prepare_cached("UPDATE claims SET epoch = ?2, expires_at = ?3 WHERE id = ?1")?.execute(params![
                id.0 as i64,
                epoch.0 as i64,
                expires_at.0 as i64
            ])?;
        }
        Event::HandedOff { id, to, epoch, expires_at, .. } => {
            tx.prepare_cached("UPDATE claims SET session = ?2, agent = ?3, epoch = ?4, expires_at = ?5 WHERE id = ?1")?
                .execute(params![id.0 as i64, to.session, to.agent, epoch.0 as i64, expires_at.0 as i64])?;
        }
        Event::Pending { claim, .. } | Event::TakenOver { claim, .. } => write_claim(tx, claim)?,
        Event::Released { claim, .. } => {
            tx.prepare_cached("DELETE FROM claims WHERE id = ?1")?.execute([claim.id.0 as i64])?;
        }
        Event::Expired { claim } => {
            tx.prepare_cached("DELETE FROM claims WHERE id = ?1")?.execute([claim.id.0 as i64])?;
            if let Some(note) = &claim.note {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO lapsed_notes (claim, session, agent, scopes, note, expired_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    claim.id.0 as i64,
                    claim.holder.session,
                    claim.holder.agent,
                    scopes_json(&claim.scopes),
                    note,
                    claim.expires_at.0 as i64
                ])?;
                tx.execute(
                    "DELETE FROM lapsed_notes WHERE rowid NOT IN (SELECT rowid FROM lapsed_notes ORDER BY rowid DESC LIMIT 1024)",
                    [],
                )?;
            }
        }
    }
    Ok(())
}

/// The event log row of an event: kind, time, session, claim and details.
fn log_row(event: &Event) -> (&'static str, Timestamp, Option<String>, Option<u64>, Value) {
    match event {
        Event::SessionStarted { session, info, at } => {
            ("session_start", *at, Some(session.clone()), None, info_json(info))
        }
        Event::MessageSent { message } => (
            "message",
            message.sent_at,
            Some(message.from.clone()),
            None,
            json!({"id": message.id, "to": message.to, "bytes": message.text.len()}),
        ),
        Event::MessagesDelivered { session, ids, at } => {
            ("delivered", *at, Some(session.clone()), None, json!({"ids": ids}))
        }
        Event::FilesTouched { principal, files, at } => {
            ("touch", *at, Some(principal.to_string()), None, json!({"files": files}))
        }
        Event::TurnEnded { session, at } => ("turn", *at, Some(session.clone()), None, json!({})),
        Event::Landing { owner, branch, outcome, detail, at } => {
            let kind = match outcome.as_str() {
                "landed" => "landed",
                "blocked" => "land_blocked",
                _ => "land_queued",
            };
            (kind, *at, Some(owner.clone()), None, json!({"branch": branch, "detail": detail}))
        }
        Event::PromptRecorded { session, prompt, at } => {
            ("prompt", *at, Some(session.clone()), None, json!({"prompt": prompt}))
        }
        Event::TaskChanged { task, at } => (
            "task",
            *at,
            task.holder.as_ref().map(Principal::to_string),
            task.claim.map(|c| c.0),
            json!({"id": task.id, "title": task.title, "status": task_status_name(task.status)}),
        ),
        Event::CommitRecorded { commit, sessions, checkpoint, rewritten_from, at } => (
            "commit",
            *at,
            sessions.first().cloned(),
            None,
            json!({"commit": commit, "sessions": sessions, "checkpoint": checkpoint, "rewritten_from": rewritten_from}),
        ),
        Event::CheckpointRecorded { checkpoint: c } => (
            "checkpoint",
            c.at,
            Some(c.session.clone()),
            None,
            json!({"id": c.id, "worktree": c.worktree, "files": c.files.len()}),
        ),
        Event::SessionEnded { session, at } => ("session_end", *at, Some(session.clone()), None, json!({})),
        Event::AgentWorktreeCreated { worktree: w, at } => (
            "worktree_create",
            *at,
            Some(format!("{}/{}", w.session, w.agent)),
            None,
            json!({"path": w.path, "branch": w.branch}),
        ),
        Event::AgentWorktreeRemoved { path, at } => ("worktree_remove", *at, None, None, json!({"path": path})),
        Event::SessionPruned { session, at } => ("session_pruned", *at, Some(session.clone()), None, json!({})),
        Event::Granted { claim, .. } => (
            "grant",
            claim.granted_at,
            Some(claim.holder.to_string()),
            Some(claim.id.0),
            json!({
                "scopes": claim.scopes.iter().map(Scope::to_string).collect::<Vec<_>>(),
                "mode": mode_name(claim.mode),
                "epoch": claim.epoch.0,
                "worktree": claim.worktree.root,
                "expires_at": claim.expires_at.0,
                "note": claim.note,
            }),
        ),
        Event::Renewed { id, holder, epoch, expires_at, at } => {
            ("renew", *at, Some(holder.to_string()), Some(id.0), json!({"epoch": epoch.0, "expires_at": expires_at.0}))
        }
        Event::Released { claim, reason, at } => (
            "release",
            *at,
            Some(claim.holder.to_string()),
            Some(claim.id.0),
            json!({
                "reason": match reason {
                    ReleaseReason::Released => "released",
                    ReleaseReason::WorktreeGone => "worktree_gone",
                    ReleaseReason::SessionEnded => "session_ended",
                    ReleaseReason::Landed => "landed",
                    ReleaseReason::HubRefused => "hub_refused",
                    ReleaseReason::HubUnavailable => "hub_unavailable",
                },
                "scopes": claim.scopes.iter().map(Scope::to_string).collect::<Vec<_>>(),
            }),
        ),
        Event::Expired { claim } => (
            "expire",
            claim.expires_at,
            Some(claim.holder.to_string()),
            Some(claim.id.0),
            json!({"scopes": claim.scopes.iter().map(Scope::to_string).collect::<Vec<_>>(), "note": claim.note}),
        ),
        Event::Pending { claim, at } => (
            "pending",
            *at,
            Some(claim.holder.to_string()),
            Some(claim.id.0),
            json!({
                "scopes": claim.scopes.iter().map(Scope::to_string).collect::<Vec<_>>(),
                "worktree": claim.worktree.root,
                "branch": claim.pending.as_ref().and_then(|p| p.branch.clone()),
            }),
        ),
        Event::TakenOver { claim, from, at } => (
            "take_over",
            *at,
            Some(claim.holder.to_string()),
            Some(claim.id.0),
            json!({
                "from": from.to_string(),
                "scopes": claim.scopes.iter().map(Scope::to_string).collect::<Vec<_>>(),
                "epoch": claim.epoch.0,
            }),
        ),
        Event::HandedOff { id, from, to, epoch, at, .. } => (
            "handoff",
            *at,
            Some(to.to_string()),
            Some(id.0),
            json!({"from": from.to_string(), "to": to.to_string(), "epoch": epoch.0}),
        ),
    }
}

fn claim_from_row(row: &Row<'_>) -> Result<Claim, StoreError> {
    let mode: String = row.get(6)?;
    Ok(Claim {
        id: ClaimId(row.get::<_, i64>(0)? as u64),
        holder: Principal { session: row.get(1)?, agent: row.get(2)? },
        worktree: Worktree { root: row.get(3)?, git_dir: row.get(4)? },
        scopes: parse_scopes(&row.get::<_, String>(5)?)?,
        mode: if mode == "shared" { Mode::Shared } else { Mode::Exclusive },
        epoch: Epoch(row.get::<_, i64>(7)? as u64),
        ttl: Duration::from_millis(row.get::<_, i64>(8)? as u64),
        granted_at: Timestamp(row.get::<_, i64>(9)? as u64),
        expires_at: Timestamp(row.get::<_, i64>(10)? as u64),
        note: row.get(11)?,
        task: row.get(12)?,
        pending: row
            .get::<_, Option<i64>>(13)?
            .map(|at| -> Result<Pending, StoreError> {
                Ok(Pending { left_at: Timestamp(at as u64), branch: row.get(14)? })
            })
            .transpose()?,
    })
}

/// Writes a claim as it is now (a grant, or a claim that became or stopped being pending work).
fn write_claim(tx: &rusqlite::Transaction<'_>, claim: &Claim) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO claims (id, session, agent, worktree, git_dir, scopes, mode, epoch, ttl_ms, granted_at,
                                        expires_at, note, task, pending_at, pending_branch)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        claim.id.0 as i64,
        claim.holder.session,
        claim.holder.agent,
        claim.worktree.root,
        claim.worktree.git_dir,
        scopes_json(&claim.scopes),
        mode_name(claim.mode),
        claim.epoch.0 as i64,
        claim.ttl.as_millis() as i64,
        claim.granted_at.0 as i64,
        claim.expires_at.0 as i64,
        claim.note,
        claim.task,
        claim.pending.as_ref().map(|p| p.left_at.0 as i64),
        claim.pending.as_ref().and_then(|p| p.branch.clone()),
    ])?;
    Ok(())
}

fn task_status_name(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Open => "open",
        TaskStatus::Taken => "taken",
        TaskStatus::Dropped => "dropped",
        TaskStatus::Done => "done",
    }
}

fn info_json(info: &SessionInfo) -> Value {
    json!({"worktree": info.worktree, "branch": info.branch, "model": info.model, "source": info.source,
        "client": info.client})
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Exclusive => "exclusive",
        Mode::Shared => "shared",
    }
}

fn scopes_json(scopes: &[Scope]) -> String {
    Value::from(scopes.iter().map(Scope::to_string).collect::<Vec<_>>()).to_string()
}

fn parse_scopes(text: &str) -> Result<Vec<Scope>, StoreError> {
    let texts: Vec<String> = serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    texts.iter().map(|t| Scope::parse(t).map_err(|e| StoreError::Corrupt(e.to_string()))).collect()
}
