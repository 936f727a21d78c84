//! Parameter and reply shapes of each method. Field names are the contract of DESIGN.md §6.

use serde::{Deserialize, Serialize};

use crate::exit;

/// `hello` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HelloParams {
    /// Who is calling, e.g. `lanes-cli` or `lanes-hook`.
    pub client: String,
    /// The caller's version.
    pub version: String,
    /// The caller's protocol version.
    pub protocol: u32,
}

/// `hello` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HelloReply {
    /// The sidecar's version.
    pub version: String,
    /// The sidecar's protocol version.
    pub protocol: u32,
    /// The sidecar's process id.
    pub pid: u32,
}

/// Exclusive (default) or shared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Conflicts with every other claim on an overlapping scope.
    #[default]
    Exclusive,
    /// Conflicts only with exclusive claims.
    Shared,
}

/// `claim.acquire` parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireParams {
    /// The acting principal: `<session>` or `<session>/<agent>`.
    pub session: String,
    /// Absolute path of the caller's worktree.
    pub worktree: String,
    /// Scopes as on the CLI: paths relative to the worktree, absolute paths inside it, globs, or `.`.
    pub scopes: Vec<String>,
    /// Exclusive when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Lease length in seconds; the configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// A progress note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The task the claim is taken for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// For `claim.ensure`: the worktree the principal works in. An edit in another worktree follows the
    /// binding policy: refused (strict), allowed with a warning (warn), or allowed (off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_worktree: Option<String>,
}

/// A claim as the wire shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimView {
    /// Its id.
    pub id: u64,
    /// Its holder: `<session>` or `<session>/<agent>`.
    pub session: String,
    /// Absolute path of the worktree it was made from.
    pub worktree: String,
    /// Normalized, repo-relative scopes.
    pub scopes: Vec<String>,
    /// Exclusive or shared.
    pub mode: Mode,
    /// Its fencing epoch.
    pub epoch: u64,
    /// When it expires, RFC 3339 UTC.
    pub expires_at: String,
    /// Seconds until it expires, when the reply was made.
    pub expires_in_secs: u64,
    /// Its progress note.
    pub note: Option<String>,
    /// Its task.
    pub task: Option<String>,
    /// Pending work: its holder ended (or its lease ran out) while its paths were not on the base branch yet;
    /// the worktree holds it until they land.
    #[serde(default)]
    pub pending: bool,
    /// For pending work: the worktree's branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// For pending work: when its holder left it, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_at: Option<String>,
}

/// A note left by a lapsed claim on an overlapping scope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoteView {
    /// The lapsed claim.
    pub claim_id: u64,
    /// Its holder.
    pub session: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// The note.
    pub note: String,
    /// When it lapsed, RFC 3339 UTC.
    pub expired_at: String,
}

/// `claim.acquire` and `claim.renew` reply: `{claim}` (plus notes from lapsed predecessors).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClaimReply {
    /// The claim.
    pub claim: ClaimView,
    /// For `claim.ensure`: the caller already held the path; this is that claim (renewed if it was running
    /// down).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// A warning for the caller, e.g. an edit outside its bound worktree under `binding = "warn"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Notes from lapsed claims on overlapping scopes, shown once to the next claimant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<NoteView>,
    /// With a hub: the fencing epoch the hub gave the grant (the etcd revision on etcd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_epoch: Option<u64>,
}

/// `claim.release` parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseParams {
    /// The acting principal.
    pub session: String,
    /// The claims to release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Vec<u64>>,
    /// Release every claim the principal holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    /// Refuse unless this is the claims' current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Give up pending work instead: the claims named (anyone's), or with `all` every pending claim this
    /// session left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<bool>,
}

/// `claim.release` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReleaseReply {
    /// The claims released.
    pub released: Vec<u64>,
    /// With a hub: `released` when the hub released them too before this answer (another machine can claim
    /// the paths at once), else `queued: <why>` (the hub learns of it when it answers again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
}

/// `claim.renew` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewParams {
    /// The acting principal.
    pub session: String,
    /// The claim.
    pub claim: u64,
    /// New lease length in seconds; the claim's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// Refuse unless this is the claim's current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// `claim.handoff` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffParams {
    /// The acting principal (the holder).
    pub session: String,
    /// The claim.
    pub claim: u64,
    /// The recipient: `<session>` or `<session>/<agent>`.
    pub to: String,
    /// Refuse unless this is the claim's current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// `claim.check` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckParams {
    /// The asking principal; its own claims are not reported.
    pub session: String,
    /// Absolute path of the caller's worktree.
    pub worktree: String,
    /// Paths or globs, as for `claim.acquire`.
    pub paths: Vec<String>,
}

/// `claim.check` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckReply {
    /// Live claims of others that cover the paths; empty when they are free.
    pub holders: Vec<ConflictView>,
    /// When no one else holds them: the caller's own live claims over the paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub yours: Vec<ClaimView>,
}

/// `session.start` / `session.end` parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SessionParams {
    /// The session id.
    pub session: String,
    /// Absolute path of its worktree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<String>,
    /// The branch checked out there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The model the session runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How it started: `startup`, `resume`, `clear`, `compact`, `cli`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The agent CLI it runs in: `claude`, `codex`, `gemini`, `copilot`, `opencode`, `mcp`, `cli`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// Another session, as `session.start` describes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerView {
    /// Its id.
    pub id: String,
    /// Its worktree.
    pub worktree: Option<String>,
    /// Its branch.
    pub branch: Option<String>,
    /// Its model.
    pub model: Option<String>,
    /// Its live claims.
    pub claims: Vec<ClaimView>,
}

/// `session.start` reply: what the starting session should know.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionStartReply {
    /// The session.
    pub session: String,
    /// Other live sessions of this repository, with their claims.
    pub others: Vec<PeerView>,
    /// Claims the session already holds (after a resume).
    pub own_claims: Vec<ClaimView>,
    /// Unread messages, now delivered.
    pub inbox: Vec<MessageView>,
    /// Work left in worktrees that has not landed on the base branch: its paths are taken until it does.
    #[serde(default)]
    pub pending_work: Vec<ClaimView>,
    /// Something every session must hear about (the sidecar lost its state, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// `session.activity` parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityParams {
    /// The acting principal: `<session>` or `<session>/<agent>`.
    pub session: String,
    /// Absolute path of the worktree the activity happened in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<String>,
    /// Files touched (absolute, or relative to the worktree).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// The session finished a turn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub turn: bool,
    /// Hand out unread messages (each once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deliver: bool,
    /// The user's prompt (UserPromptSubmit); the sidecar masks secrets before storing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The worktree's HEAD as the caller sees it now (`<branch>@<commit>`), for the branch guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// The caller is about to switch its worktree's branch itself (a `git checkout` or `git switch`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub moving_head: bool,
}

/// `session.activity` reply.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ActivityReply {
    /// How many claims were renewed.
    pub renewed: usize,
    /// Unread messages, now delivered (empty unless `deliver`).
    pub inbox: Vec<MessageView>,
    /// Set when the worktree's HEAD moved since the caller last saw it, and the caller did not move it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_moved: Option<String>,
    /// Other live sessions working in the same worktree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neighbours: Vec<String>,
    /// For a subagent in a worktree lanes made for it: that worktree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_worktree: Option<String>,
}

/// `message.send` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendParams {
    /// The sending session.
    pub session: String,
    /// A session id, or `@all` for every other live session.
    pub to: String,
    /// The text (at most 8 KiB).
    pub text: String,
}

/// A message between sessions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageView {
    /// Its id.
    pub id: u64,
    /// The sender (`lanes` for lanes itself).
    pub from: String,
    /// The recipient.
    pub to: String,
    /// The text.
    pub text: String,
    /// When it was sent, RFC 3339 UTC.
    pub sent_at: String,
}

/// `message.send` and `message.inbox` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MessagesReply {
    /// The messages (sent: one per recipient; inbox: the unread ones, now delivered).
    pub messages: Vec<MessageView>,
}

/// `session.end` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionEndReply {
    /// The claims released with it.
    pub released: Vec<u64>,
    /// With a hub: as [`ReleaseReply::hub`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
}

/// A session as `status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionView {
    /// Its id.
    pub id: String,
    /// `live` or `ended`.
    pub state: String,
    /// How many claims it holds.
    pub claims: usize,
    /// Its worktree.
    #[serde(default)]
    pub worktree: Option<String>,
    /// Its branch.
    #[serde(default)]
    pub branch: Option<String>,
    /// How many messages wait for it.
    #[serde(default)]
    pub unread: usize,
    /// Its model.
    #[serde(default)]
    pub model: Option<String>,
    /// How it started.
    #[serde(default)]
    pub source: Option<String>,
    /// The agent CLI it runs in.
    #[serde(default)]
    pub client: Option<String>,
    /// When it started, RFC 3339 UTC.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it ended, RFC 3339 UTC.
    #[serde(default)]
    pub ended_at: Option<String>,
    /// Its latest checkpoint.
    #[serde(default)]
    pub last_checkpoint: Option<String>,
    /// Its latest prompt, secrets masked.
    #[serde(default)]
    pub last_prompt: Option<String>,
}

/// The sidecar as `status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SidecarView {
    /// Its process id.
    pub pid: u32,
    /// Its version.
    pub version: String,
    /// Its protocol version.
    pub protocol: u32,
    /// Its socket path.
    pub socket: String,
    /// Set when the sidecar found its database had lost its contents (truncated, replaced) and started
    /// from an empty one: what happened and where the damaged file was put.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_lost: Option<String>,
    /// The settings it runs with, as a config file writes them (`"sidecar.idle_timeout": "\"30m\""`).
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
    /// The `LANES_*` variables it was started with that set something (only `lanes sidecar start` passes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_env: Vec<String>,
}

/// `status` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusReply {
    /// The repository's git common dir.
    pub repo: String,
    /// The sidecar.
    pub sidecar: SidecarView,
    /// Known sessions.
    pub sessions: Vec<SessionView>,
    /// Live claims, oldest first.
    pub claims: Vec<ClaimView>,
    /// The task board.
    pub tasks: Vec<TaskView>,
    /// The hub, when one is configured.
    pub hub: Option<serde_json::Value>,
    /// The last epoch handed out.
    pub epoch: u64,
}

/// `events` parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EventsParams {
    /// Return events after this sequence number.
    #[serde(default)]
    pub since: u64,
    /// At most this many (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One event of the log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventView {
    /// Its sequence number, strictly increasing.
    pub seq: u64,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// `grant`, `renew`, `release`, `expire`, `handoff`, `session_start`, `session_end`.
    pub kind: String,
    /// The session concerned.
    pub session: Option<String>,
    /// The claim concerned.
    pub claim: Option<u64>,
    /// Details.
    pub data: serde_json::Value,
}

/// `events` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventsReply {
    /// Events in order.
    pub events: Vec<EventView>,
    /// Pass this as `since` to resume.
    pub cursor: u64,
}

/// A live claim standing in the way, as in a refusal's `conflicts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictView {
    /// The claim in the way (0 for latent work, which no claim covers).
    pub claim_id: u64,
    /// Its holder (for pending work, the session that left it); `null` for latent work.
    pub session: Option<String>,
    /// Its scope that overlaps.
    pub scope: String,
    /// Its worktree.
    pub worktree: String,
    /// When it expires, RFC 3339 UTC.
    pub expires_at: String,
    /// Seconds until it expires.
    pub expires_in_secs: u64,
    /// Pending work (or latent work): changes in `worktree` that have not landed on the base branch.
    #[serde(default)]
    pub pending: bool,
    /// Latent work: pending in `worktree`, and no claim covers it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub latent: bool,
    /// The branch of that worktree, for pending and latent work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// When its holder left the pending work, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_at: Option<String>,
    /// The agent CLI its holder's session runs in (`claude`, `codex`, …), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// Why a request failed; the string codes of DESIGN.md §6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Another principal holds an overlapping scope.
    Conflict,
    /// The epoch given is not the claim's current one.
    StaleEpoch,
    /// The caller does not hold the claim.
    NotHolder,
    /// No such claim, session or task.
    NotFound,
    /// A scope is invalid or outside the repository.
    InvalidScope,
    /// Another argument is invalid.
    InvalidArgument,
    /// The sidecar or hub could not answer.
    Unavailable,
    /// Waiting would close a cycle of waits.
    WouldDeadlock,
    /// A task dependency would close a cycle.
    Cycle,
    /// Something went wrong inside lanes.
    Internal,
}

impl ErrorCode {
    /// The process exit code for this error.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::InvalidScope | ErrorCode::InvalidArgument => exit::INVALID,
            ErrorCode::Conflict
            | ErrorCode::StaleEpoch
            | ErrorCode::NotHolder
            | ErrorCode::NotFound
            | ErrorCode::WouldDeadlock
            | ErrorCode::Cycle => exit::REFUSED,
            ErrorCode::Unavailable | ErrorCode::Internal => exit::INTERNAL,
        }
    }

    /// The JSON-RPC numeric error code (application range).
    pub fn rpc_code(self) -> i32 {
        match self {
            ErrorCode::Conflict => -32001,
            ErrorCode::StaleEpoch => -32002,
            ErrorCode::NotHolder => -32003,
            ErrorCode::NotFound => -32004,
            ErrorCode::InvalidScope => -32005,
            ErrorCode::InvalidArgument => -32006,
            ErrorCode::Unavailable => -32007,
            ErrorCode::WouldDeadlock => -32008,
            ErrorCode::Cycle => -32009,
            ErrorCode::Internal => -32010,
        }
    }
}

/// `error.data` of a refusal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorData {
    /// The string code.
    pub code: ErrorCode,
    /// For `conflict`: the claims in the way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<ConflictView>,
    /// The sidecar's protocol version.
    pub protocol: u32,
    /// For an edit refused by the binding policy: the worktree the principal is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_worktree: Option<String>,
    /// For `unavailable` from a sidecar with a hub: what the hook should do, `allow` or `deny`
    /// (`[hub] offline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline: Option<String>,
}

impl ErrorData {
    /// The data of a refusal with `code` (and, for `conflict`, the claims in the way), at this protocol.
    pub fn new(code: ErrorCode, conflicts: Vec<ConflictView>) -> ErrorData {
        ErrorData { code, conflicts, protocol: crate::PROTOCOL_VERSION, bound_worktree: None, offline: None }
    }
}

/// A reply body as JSON with `protocol` added, which every reply of the sidecar and of the hub carries.
pub fn with_protocol<T: Serialize>(body: &T) -> serde_json::Result<serde_json::Value> {
    let mut value = serde_json::to_value(body)?;
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("protocol".into(), crate::PROTOCOL_VERSION.into());
    }
    Ok(value)
}

/// A checkpoint as the wire shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointView {
    /// Its id (12 hex digits of its commit).
    pub id: String,
    /// Its full commit id (under `refs/lanes/checkpoints/<session>`).
    pub commit: String,
    /// Its session.
    pub session: String,
    /// The worktree it was taken of.
    pub worktree: String,
    /// The worktree's HEAD then.
    pub head: Option<String>,
    /// Files changed since the previous checkpoint.
    pub files: Vec<String>,
    /// Why it was taken.
    pub message: String,
    /// The session's latest prompt then, secrets masked.
    #[serde(default)]
    pub prompt: Option<String>,
    /// When, RFC 3339 UTC.
    pub at: String,
}

/// `checkpoint.create` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointParams {
    /// The session.
    pub session: String,
    /// Absolute path of the worktree to checkpoint.
    pub worktree: String,
    /// Why (default: "checkpoint").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `checkpoint.create` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointReply {
    /// The new checkpoint; `null` when nothing changed since the last one.
    pub checkpoint: Option<CheckpointView>,
}

/// `checkpoint.list` parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointsParams {
    /// Only this session's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// At most this many (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `checkpoint.list` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointsReply {
    /// Newest first.
    pub checkpoints: Vec<CheckpointView>,
}

/// `checkpoint.rewind` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewindParams {
    /// The acting session.
    pub session: String,
    /// Absolute path of the worktree to restore.
    pub worktree: String,
    /// The checkpoint id (or a prefix of it).
    pub checkpoint: String,
    /// Restore only these paths (repo-relative; a directory covers what is below it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Only say what would change.
    #[serde(default)]
    pub dry_run: bool,
    /// Overwrite files inside other live sessions' claims too.
    #[serde(default)]
    pub force: bool,
}

/// One file a rewind changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeView {
    /// `restore` (the file comes back), `modify` (it is put back as it was) or `delete` (it did not exist).
    pub action: String,
    /// Repo-relative path.
    pub path: String,
    /// Who else holds the path (a dry run shows the plan anyway; a real rewind refuses it without --force).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
}

/// `checkpoint.rewind` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RewindReply {
    /// The checkpoint restored.
    pub checkpoint: String,
    /// What changes (or would change).
    pub changes: Vec<ChangeView>,
    /// Nothing was written.
    pub dry_run: bool,
    /// The checkpoint of the state the rewind replaced: rewind to it to undo.
    pub backup: Option<String>,
}

/// `commit.stamp` parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampParams {
    /// `$LANES_SESSION` of the committer, if set: then only that session is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Staged paths, repo-relative.
    #[serde(default)]
    pub files: Vec<String>,
    /// Only edits after this instant count (the worktree's last commit), in ms since the Unix epoch.
    #[serde(default)]
    pub since_ms: u64,
    /// The committing worktree: the stamp is kept for its post-commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<String>,
}

/// A session a commit names, with its latest checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StampView {
    /// The session.
    pub session: String,
    /// Its latest checkpoint, if any.
    pub checkpoint: Option<String>,
}

/// `commit.stamp` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StampReply {
    /// The sessions to name, in order; empty: no trailer.
    pub sessions: Vec<StampView>,
}

/// `commit.record` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordParams {
    /// The new commit.
    pub commit: String,
    /// The sessions it names.
    pub sessions: Vec<String>,
    /// The checkpoint it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The commit it replaces (amend, rebase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten_from: Option<String>,
    /// The committing worktree: with no sessions given, the stamp its prepare-commit-msg got is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<String>,
}

/// `commit.explain` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainParams {
    /// The commit.
    pub commit: String,
    /// Sessions its trailers name (the caller reads them from git).
    #[serde(default)]
    pub sessions: Vec<String>,
}

/// `commit.explain` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExplainReply {
    /// The commit.
    pub commit: String,
    /// Each session the commit names, with what lanes recorded of it.
    pub sessions: Vec<SessionStory>,
}

/// What lanes recorded of one session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionStory {
    /// The session.
    pub session: String,
    /// Where and with what it worked.
    pub worktree: Option<String>,
    /// Its branch.
    pub branch: Option<String>,
    /// Its model.
    pub model: Option<String>,
    /// Its checkpoints, oldest first.
    pub checkpoints: Vec<CheckpointView>,
    /// Its claim grants, handoffs and releases, oldest first.
    pub claims: Vec<EventView>,
    /// Files it touched.
    pub files: Vec<String>,
}

/// A task as the wire shows it: `{"task":{"id","title","status","after":[…],"scopes":[…],"holder"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    /// Its id.
    pub id: u64,
    /// What to do.
    pub title: String,
    /// `open`, `ready` (open, its dependencies done), `taken`, `stalled` (taken, no progress lately) or `done`.
    pub status: String,
    /// Tasks that must be done first.
    pub after: Vec<u64>,
    /// What taking it claims.
    pub scopes: Vec<String>,
    /// Who took it.
    pub holder: Option<String>,
    /// The claim taken with it.
    pub claim: Option<u64>,
    /// The progress note its last holder left.
    pub note: Option<String>,
}

/// `task.add` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskAddParams {
    /// The adding session.
    pub session: String,
    /// Absolute path of the worktree the scopes are relative to.
    pub worktree: String,
    /// What to do.
    pub title: String,
    /// Tasks that must be done first.
    #[serde(default)]
    pub after: Vec<u64>,
    /// What taking it claims.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `task.list` parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskListParams {
    /// Only ready tasks.
    #[serde(default)]
    pub ready: bool,
}

/// `task.next` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskNextParams {
    /// The taking principal.
    pub session: String,
    /// Absolute path of its worktree.
    pub worktree: String,
}

/// `task.done` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDoneParams {
    /// The holder.
    pub session: String,
    /// The task.
    pub task: u64,
}

/// `task.change` parameters: `action` is `drop` (off the board), `edit` (an open task's title or scopes) or
/// `give_back` (a taken task back to the board, its claim released, with an optional note for the next taker).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskChangeParams {
    /// The acting principal.
    pub session: String,
    /// Absolute path of the worktree new scopes are relative to.
    pub worktree: String,
    /// The task.
    pub task: u64,
    /// `drop`, `edit` or `give_back`.
    pub action: String,
    /// A new title (`edit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// New scopes (`edit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// A note for whoever takes it next (`give_back`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `task.add` and `task.done` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskReply {
    /// The task.
    pub task: TaskView,
}

/// `task.next` reply: the task, and the claim on its scopes (`null` when it has none).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskNextReply {
    /// The task taken.
    pub task: TaskView,
    /// The claim taken with it.
    pub claim: Option<ClaimView>,
}

/// `task.list` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TasksReply {
    /// The tasks, by id.
    pub tasks: Vec<TaskView>,
}

/// `worktree.create` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorktreeCreateParams {
    /// The parent session.
    pub session: String,
    /// The session's current directory (its worktree's HEAD is the new worktree's base).
    pub cwd: String,
    /// The name Claude Code gives it, `agent-<agent_id>`.
    pub name: String,
}

/// `worktree.create` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorktreeCreateReply {
    /// Absolute path of the new worktree.
    pub path: String,
    /// Its branch.
    pub branch: String,
}

/// `worktree.scan` parameters: a principal's shell command (or any tool whose edits the hook cannot see)
/// just ran in `worktree`, or is about to (`before`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellScanParams {
    /// The acting principal.
    pub session: String,
    /// Absolute path of its worktree.
    pub worktree: String,
    /// The command is about to run: remember the worktree's pending paths as they stand (no git; the reply is
    /// empty), so the scan after it counts only what the command changed, even if the file watcher saw the
    /// change first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub before: bool,
}

/// A path a shell command changed that another principal holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TakenPath {
    /// The repo-relative path.
    pub path: String,
    /// Who holds it.
    pub holders: Vec<ConflictView>,
}

/// `worktree.scan` reply.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ShellScanReply {
    /// Paths that became pending and are now claimed for the principal.
    pub claimed: Vec<String>,
    /// Paths that became pending inside another principal's claim or pending work (its holder is told).
    pub taken: Vec<TakenPath>,
}

/// `commit.check` parameters (the pre-commit guard).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitCheckParams {
    /// The committing session (`$LANES_SESSION`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Absolute path of the committing worktree.
    pub worktree: String,
    /// The staged paths, repo-relative.
    pub files: Vec<String>,
}

/// `commit.check` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommitCheckReply {
    /// Claims and pending work of others over the staged paths.
    pub conflicts: Vec<ConflictView>,
    /// `[git] guard`: `refuse`, `warn` or `off`.
    pub guard: String,
}

/// One worktree lanes made for a subagent, as `worktree.list` answers it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgentWorktreeView {
    /// Absolute path.
    pub path: String,
    /// The parent session.
    pub session: String,
    /// The subagent.
    pub agent: String,
    /// The branch lanes made for it.
    pub branch: String,
    /// The commit it started from.
    pub base: String,
}

/// `worktree.list` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorktreeListReply {
    /// Every worktree lanes made for a subagent and has not removed yet.
    pub worktrees: Vec<AgentWorktreeView>,
}

/// `worktree.finish` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorktreeFinishParams {
    /// The parent session.
    pub session: String,
    /// The subagent; every subagent of the session when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// `claim.wait` parameters: a claim id, or paths (the claims holding them).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// The waiting principal.
    pub session: String,
    /// Absolute path of its worktree.
    pub worktree: String,
    /// The claim to wait for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<u64>,
    /// Or paths whose holders to wait for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

/// `claim.wait` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WaitReply {
    /// The claims now waited for (their holders were told).
    pub waiting_for: Vec<ConflictView>,
}

/// `land.queue` params.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandParams {
    /// The session queueing it (told when it lands or blocks).
    pub session: String,
    /// Absolute path of the caller's worktree: what lands when `target` is absent.
    pub worktree: String,
    /// A worktree path or a branch name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The branch to land on; default `[land] base`, else the repository's base branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onto: Option<String>,
    /// The test command; default `[land] test`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
}

/// One entry of the landing queue (also its stored form, in `<git-common-dir>/lanes/land/queue.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LandEntryView {
    /// Its id.
    pub id: u64,
    /// `queued`, `landing`, `landed` or `blocked`.
    pub state: String,
    /// The branch that lands.
    pub branch: String,
    /// The worktree it is checked out in, if any.
    pub worktree: Option<String>,
    /// The branch it lands on.
    pub onto: String,
    /// The test command it runs, if any.
    pub test: Option<String>,
    /// The session that queued it.
    pub owner: String,
    /// When it was queued, RFC 3339 UTC.
    pub queued_at: String,
    /// When it landed or blocked.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// While landing: `rebase`, `test` or `update`.
    #[serde(default)]
    pub phase: Option<String>,
    /// Why it is blocked, or what landing it did (the tail of the test output included).
    #[serde(default)]
    pub result: Option<String>,
    /// The paths that conflicted, when it is blocked by a conflict.
    #[serde(default)]
    pub conflicts: Vec<String>,
    /// The base's new commit, once landed.
    #[serde(default)]
    pub landed: Option<String>,
}

/// `land.queue` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LandReply {
    /// The entry (an already queued entry of the same branch is returned as it is).
    pub entry: LandEntryView,
    /// Its place among the entries waiting (1 = next), once queued.
    pub position: Option<usize>,
}

/// `land.list` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueueReply {
    /// Entries waiting or landing first, in queue order, then the last finished ones, newest first.
    pub entries: Vec<LandEntryView>,
}

/// `land.log` params.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandLogParams {
    /// The entry.
    pub id: u64,
    /// Bytes already read.
    #[serde(default)]
    pub offset: u64,
}

/// `land.log` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LandLogReply {
    /// The output from `offset` on (at most 64 KiB).
    pub text: String,
    /// Where the next read starts.
    pub offset: u64,
    /// The entry's state now.
    pub state: String,
}
