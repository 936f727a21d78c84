//! The contract between lanes' clients (the CLI, the hook, third-party tools) and its sidecar: method names,
//! parameter and reply shapes, error codes, exit codes, where the socket lives, and a small blocking client.
//!
//! Architecture invariant: this crate depends on serde and serde_json only, so the lean hook binary can use
//! it. Changing a shape here changes the wire: add fields, never remove or rename them, and bump
//! [`PROTOCOL_VERSION`] for anything incompatible.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod hub;
pub mod lifecycle;
pub mod paths;
pub mod repo;
mod wire;

pub use wire::*;

/// The version of the wire protocol. Every reply carries it; a client that sees another one restarts the
/// sidecar (or refuses the hub). It also names the socket directory, so incompatible versions never meet.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest request or reply line accepted, in bytes. Longer lines are refused with a clear error.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Process exit codes of the `lanes` CLI (DESIGN.md §6).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// An internal error, or the sidecar or hub is unavailable.
    pub const INTERNAL: i32 = 1;
    /// Invalid input.
    pub const INVALID: i32 = 2;
    /// Refused: conflict, stale epoch, not the holder, would deadlock, cycle.
    pub const REFUSED: i32 = 3;
}

/// JSON-RPC method names.
pub mod method {
    /// Handshake: `{client, version, protocol}` → `{version, protocol, pid}`.
    pub const HELLO: &str = "hello";
    /// Acquire a claim.
    pub const CLAIM_ACQUIRE: &str = "claim.acquire";
    /// Release claims.
    pub const CLAIM_RELEASE: &str = "claim.release";
    /// Renew a claim.
    pub const CLAIM_RENEW: &str = "claim.renew";
    /// Who holds these paths.
    pub const CLAIM_CHECK: &str = "claim.check";
    /// Record that the caller waits for a claim (or whatever holds some paths).
    pub const CLAIM_WAIT: &str = "claim.wait";
    /// What an edit hook asks: refuse if another holds the path, keep (refresh) one's own claim, or grant one.
    pub const CLAIM_ENSURE: &str = "claim.ensure";
    /// A session's activity: refreshes its leases, records files touched or a finished turn, and hands out
    /// its unread messages (each once).
    pub const SESSION_ACTIVITY: &str = "session.activity";
    /// Send a message to a session or `@all`.
    pub const MESSAGE_SEND: &str = "message.send";
    /// Take the unread messages of a session (each is handed out once).
    pub const MESSAGE_INBOX: &str = "message.inbox";
    /// Hand a claim to another session.
    pub const CLAIM_HANDOFF: &str = "claim.handoff";
    /// Register a session.
    pub const SESSION_START: &str = "session.start";
    /// End a session, releasing its claims.
    pub const SESSION_END: &str = "session.end";
    /// Commit a checkpoint of the caller's worktree (unless nothing changed since the last one).
    pub const CHECKPOINT_CREATE: &str = "checkpoint.create";
    /// List checkpoints, newest first.
    pub const CHECKPOINT_LIST: &str = "checkpoint.list";
    /// Restore files from a checkpoint (or show what would change).
    pub const CHECKPOINT_REWIND: &str = "checkpoint.rewind";
    /// Which sessions a commit of these staged paths should name (git's prepare-commit-msg).
    pub const COMMIT_STAMP: &str = "commit.stamp";
    /// Record a commit's sessions (git's post-commit and post-rewrite).
    pub const COMMIT_RECORD: &str = "commit.record";
    /// What lanes knows of a commit: its sessions, their checkpoints, claims and files.
    pub const COMMIT_EXPLAIN: &str = "commit.explain";
    /// Add a task to the board.
    pub const TASK_ADD: &str = "task.add";
    /// The board (or its ready set).
    pub const TASK_LIST: &str = "task.list";
    /// Take the first ready task and claim its scopes, in one step.
    pub const TASK_NEXT: &str = "task.next";
    /// Mark a taken task done (releases its claim).
    pub const TASK_DONE: &str = "task.done";
    /// Drop a task, edit an open one, or give a taken one back to the board.
    pub const TASK_CHANGE: &str = "task.change";
    /// Make a worktree for a subagent (Claude Code's WorktreeCreate hook).
    pub const WORKTREE_CREATE: &str = "worktree.create";
    /// A subagent (or session) finished: remove its worktrees that hold no work.
    pub const WORKTREE_FINISH: &str = "worktree.finish";
    /// After a shell command: claim the paths it changed for its principal, report those others hold.
    pub const WORKTREE_SCAN: &str = "worktree.scan";
    /// The commit guard (pre-commit): which staged paths other principals hold.
    pub const COMMIT_CHECK: &str = "commit.check";
    /// The worktrees lanes made for subagents, with their session, agent and branch (what `lanes gc` may remove).
    pub const WORKTREE_LIST: &str = "worktree.list";
    /// Put a branch in the landing queue: [`crate::LandParams`] → [`crate::LandReply`] (DESIGN.md §11).
    pub const LAND_QUEUE: &str = "land.queue";
    /// The landing queue: → [`crate::QueueReply`].
    pub const LAND_LIST: &str = "land.list";
    /// The output of an entry's landing from an offset: [`crate::LandLogParams`] → [`crate::LandLogReply`].
    pub const LAND_LOG: &str = "land.log";
    /// Sessions, claims, tasks, hub.
    pub const STATUS: &str = "status";
    /// The event log after a cursor.
    pub const EVENTS: &str = "events";
    /// Ask the sidecar to exit.
    pub const SHUTDOWN: &str = "sidecar.shutdown";
}
