//! The versioned schema. `PRAGMA user_version` records how many migrations have run; each migration runs in
//! its own transaction on open. Append new migrations; never edit a released one.

use rusqlite::Connection;

use crate::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: claims, lapsed notes, sessions, counters, the event log.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
     CREATE TABLE claims (
         id INTEGER PRIMARY KEY,
         session TEXT NOT NULL,
         agent TEXT,
         worktree TEXT NOT NULL,
         git_dir TEXT NOT NULL,
         scopes TEXT NOT NULL,
         mode TEXT NOT NULL,
         epoch INTEGER NOT NULL,
         ttl_ms INTEGER NOT NULL,
         granted_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         note TEXT,
         task TEXT
     );
     CREATE TABLE lapsed_notes (
         claim INTEGER PRIMARY KEY,
         session TEXT NOT NULL,
         agent TEXT,
         scopes TEXT NOT NULL,
         note TEXT NOT NULL,
         expired_at INTEGER NOT NULL
     );
     CREATE TABLE sessions (id TEXT PRIMARY KEY, state TEXT NOT NULL, started_at INTEGER, ended_at INTEGER);
     CREATE TABLE events (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         at INTEGER NOT NULL,
         kind TEXT NOT NULL,
         session TEXT,
         claim INTEGER,
         data TEXT NOT NULL
     );",
    // 2: what a session reported at start; messages between sessions.
    "ALTER TABLE sessions ADD COLUMN info TEXT NOT NULL DEFAULT '{}';
     CREATE TABLE messages (
         id INTEGER PRIMARY KEY,
         sender TEXT NOT NULL,
         recipient TEXT NOT NULL,
         text TEXT NOT NULL,
         sent_at INTEGER NOT NULL,
         delivered_at INTEGER
     );
     CREATE INDEX messages_undelivered ON messages (recipient) WHERE delivered_at IS NULL;",
    // 3: checkpoints.
    "CREATE TABLE checkpoints (
         id TEXT PRIMARY KEY,
         commit_id TEXT NOT NULL,
         session TEXT NOT NULL,
         worktree TEXT NOT NULL,
         head TEXT,
         files TEXT NOT NULL,
         message TEXT NOT NULL,
         created_at INTEGER NOT NULL
     );
     CREATE INDEX checkpoints_by_session ON checkpoints (session, created_at);",
    // 4: the task board.
    "CREATE TABLE tasks (
         id INTEGER PRIMARY KEY,
         title TEXT NOT NULL,
         status TEXT NOT NULL,
         after TEXT NOT NULL,
         scopes TEXT NOT NULL,
         session TEXT,
         agent TEXT,
         claim INTEGER,
         note TEXT
     );",
    // 5: the redacted prompt a checkpoint was taken after.
    "ALTER TABLE checkpoints ADD COLUMN prompt TEXT;",
    // 6: worktrees lanes made for subagents.
    "CREATE TABLE agent_worktrees (
         path TEXT PRIMARY KEY,
         session TEXT NOT NULL,
         agent TEXT NOT NULL,
         branch TEXT NOT NULL,
         base TEXT NOT NULL
     );",
    // 7: the event log without AUTOINCREMENT. Events are never deleted, so `seq` stays strictly increasing,
    // and a commit no longer rewrites sqlite_sequence (one page fewer in every transaction).
    "CREATE TABLE events_new (
         seq INTEGER PRIMARY KEY,
         at INTEGER NOT NULL,
         kind TEXT NOT NULL,
         session TEXT,
         claim INTEGER,
         data TEXT NOT NULL
     );
     INSERT INTO events_new (seq, at, kind, session, claim, data) SELECT seq, at, kind, session, claim, data FROM events;
     DROP TABLE events;
     ALTER TABLE events_new RENAME TO events;",
    // 8: pending work (a claim that outlived its holder because its paths are not on the base yet).
    "ALTER TABLE claims ADD COLUMN pending_at INTEGER;
     ALTER TABLE claims ADD COLUMN pending_branch TEXT;",
];

/// The schema version this build writes.
pub(crate) const CURRENT: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > CURRENT {
        return Err(StoreError::TooNew { found, supported: CURRENT });
    }
    for (done, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", done as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written by an older lanes keeps its event log, with the same sequence numbers, and the
    /// next event follows the last one.
    #[test]
    fn the_event_log_survives_the_migration_to_plain_rowids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).expect("open");
            for sql in &MIGRATIONS[..6] {
                conn.execute_batch(sql).expect("old migration");
            }
            conn.pragma_update(None, "user_version", 6).expect("version");
            for seq in 1..=3 {
                conn.execute(
                    "INSERT INTO events (at, kind, session, claim, data) VALUES (?1, 'grant', 's', ?1, '{}')",
                    [seq],
                )
                .expect("insert");
            }
        }
        let mut conn = Connection::open(&path).expect("reopen");
        migrate(&mut conn).expect("migrate");
        let seqs: Vec<i64> = conn
            .prepare("SELECT seq FROM events ORDER BY seq")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(seqs, [1, 2, 3]);
        conn.execute("INSERT INTO events (at, kind, data) VALUES (9, 'release', '{}')", []).expect("insert");
        let last: i64 = conn.query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0)).expect("max");
        assert_eq!(last, 4);
        // The new table hands out rowids itself: no AUTOINCREMENT, so no sqlite_sequence row to rewrite.
        let sql: String =
            conn.query_row("SELECT sql FROM sqlite_master WHERE name = 'events'", [], |r| r.get(0)).expect("schema");
        assert!(!sql.to_uppercase().contains("AUTOINCREMENT"), "{sql}");
    }
}
