//! The claim book: live claims, their leases and fencing epochs, the sessions that hold them, and the notes
//! left by claims that lapsed. Every change is also written to a journal of [`Event`]s that the caller
//! persists before it answers anyone (see [`ClaimBook::take_events`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use crate::index::OverlapIndex;
use crate::messages::Message;
use crate::pending::{Latent, Pending, WorktreeWork};
use crate::scope::Scope;
use crate::tasks::{Board, Task};
use crate::time::{Timestamp, check_ttl};

/// The identity of a claim, unique within a repository and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClaimId(pub u64);

impl fmt::Display for ClaimId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A fencing token: every grant, renewal and handoff takes the next value, repository-wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u64);

/// Whether a claim excludes others from its scopes or shares them with other shared claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Conflicts with every other claim on an overlapping scope.
    #[default]
    Exclusive,
    /// Conflicts only with exclusive claims.
    Shared,
}

/// Whether the same path in two worktrees of one repository is contended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Contention {
    /// One claim space for the whole repository: two worktrees editing one file will meet at merge time.
    #[default]
    Repo,
    /// Each worktree is its own claim space.
    Worktree,
}

/// The rules a book applies, from configuration.
#[derive(Clone, Debug)]
pub struct Policy {
    /// See [`Contention`].
    pub contention: Contention,
    /// The lease length of a claim that asks for none.
    pub default_ttl: Duration,
    /// What latent work does to a claim.
    pub latent: Latent,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { contention: Contention::Repo, default_ttl: Duration::from_secs(30 * 60), latent: Latent::Refuse }
    }
}

/// Who holds a claim: a session, or a subagent nested in a session (written `<session>/<agent>`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The session id.
    pub session: String,
    /// The subagent id, for a subagent.
    pub agent: Option<String>,
}

impl Principal {
    /// Parses `<session>` or `<session>/<agent>`.
    pub fn parse(text: &str) -> Result<Principal, Refusal> {
        let (session, agent) = match text.split_once('/') {
            Some((s, a)) => (s, Some(a)),
            None => (text, None),
        };
        let valid = |s: &str| !s.is_empty() && s.len() <= 128 && !s.chars().any(|c| c.is_control() || c == '/');
        if !valid(session) || !agent.is_none_or(valid) {
            return Err(Refusal::new(
                RefusalCode::InvalidArgument,
                format!(
                    "invalid session {text:?}: use `<session>` or `<session>/<agent>`, at most 128 characters each"
                ),
            ));
        }
        Ok(Principal { session: session.to_owned(), agent: agent.map(str::to_owned) })
    }

    /// A session and its subagents never contend with each other; two subagents of one session do.
    fn nested_with(&self, other: &Principal) -> bool {
        self.session == other.session && (self.agent.is_none() || other.agent.is_none() || self.agent == other.agent)
    }

    /// A principal acts for its own claims; a session also acts for its subagents' claims.
    pub(crate) fn acts_for(&self, holder: &Principal) -> bool {
        self == holder || (self.agent.is_none() && self.session == holder.session)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.agent {
            Some(agent) => write!(f, "{}/{agent}", self.session),
            None => f.write_str(&self.session),
        }
    }
}

/// The worktree a claim was made from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Worktree {
    /// Absolute path of the worktree's top level.
    pub root: String,
    /// Absolute path of the worktree's git dir.
    pub git_dir: String,
}

/// A live claim.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// Its identity.
    pub id: ClaimId,
    /// Who holds it.
    pub holder: Principal,
    /// Where it was made from.
    pub worktree: Worktree,
    /// What it covers (never empty).
    pub scopes: Vec<Scope>,
    /// Exclusive or shared.
    pub mode: Mode,
    /// Its fencing epoch: the epoch of its last grant, renewal or handoff.
    pub epoch: Epoch,
    /// The lease length a renewal extends it by.
    pub ttl: Duration,
    /// When it was first granted.
    pub granted_at: Timestamp,
    /// When it stops counting, unless renewed.
    pub expires_at: Timestamp,
    /// A progress note, shown to whoever next claims an overlapping scope after it lapses.
    pub note: Option<String>,
    /// The task it was taken for.
    pub task: Option<String>,
    /// Set once its holder ended or its lease ran out while its paths were still pending in its worktree:
    /// it is pending work now, held by that worktree until the work lands (see [`crate::pending`]).
    pub pending: Option<Pending>,
}

/// The note a lapsed claim left for the next claimant.
#[derive(Clone, Debug, PartialEq)]
pub struct LapsedNote {
    /// The claim that lapsed.
    pub claim: ClaimId,
    /// Who held it.
    pub holder: Principal,
    /// What it covered.
    pub scopes: Vec<Scope>,
    /// The note.
    pub note: String,
    /// When it lapsed.
    pub expired_at: Timestamp,
}

/// Why a claim was released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseReason {
    /// Its holder released it.
    Released,
    /// Its worktree no longer exists.
    WorktreeGone,
    /// Its session ended.
    SessionEnded,
    /// It was pending work, and its paths are no longer pending: landed on the base, or reverted.
    Landed,
    /// The hub refused it: another machine's holder has its paths (granted here, never confirmed there, or
    /// given to the other machine while this one could not reach the hub).
    HubRefused,
    /// Granted here, but no hub answered to confirm it: with a hub, a new claim stands only once it does.
    HubUnavailable,
}

/// A change to the book, in the order it happened. The store keeps these as the event log.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A session started (or was seen for the first time, or resumed after it ended).
    SessionStarted {
        /// The session id.
        session: String,
        /// Where it works and with what.
        info: SessionInfo,
        /// When.
        at: Timestamp,
    },
    /// An ended session was forgotten after the retention period, with its checkpoints.
    SessionPruned {
        /// The session id.
        session: String,
        /// When.
        at: Timestamp,
    },
    /// A session ended; its claims were released just before.
    SessionEnded {
        /// The session id.
        session: String,
        /// When.
        at: Timestamp,
    },
    /// A claim was granted; the lapsed notes it was shown are consumed.
    Granted {
        /// The new claim.
        claim: Claim,
        /// Lapsed notes handed to the new holder.
        consumed_notes: Vec<ClaimId>,
    },
    /// A claim's lease was extended.
    Renewed {
        /// The claim.
        id: ClaimId,
        /// Its holder.
        holder: Principal,
        /// Its new epoch.
        epoch: Epoch,
        /// Its new expiry.
        expires_at: Timestamp,
        /// When.
        at: Timestamp,
    },
    /// A claim was released.
    Released {
        /// The claim as it was.
        claim: Claim,
        /// Why.
        reason: ReleaseReason,
        /// When.
        at: Timestamp,
    },
    /// A claim's lease ran out.
    Expired {
        /// The claim as it was.
        claim: Claim,
    },
    /// A message was queued for a session.
    MessageSent {
        /// The message.
        message: Message,
    },
    /// Messages were delivered to their recipient (each is delivered once).
    MessagesDelivered {
        /// The recipient.
        session: String,
        /// The messages.
        ids: Vec<u64>,
        /// When.
        at: Timestamp,
    },
    /// A principal touched files (recorded for attribution; no state changes).
    FilesTouched {
        /// Who.
        principal: Principal,
        /// Repo-relative paths.
        files: Vec<String>,
        /// When.
        at: Timestamp,
    },
    /// A checkpoint of a worktree was committed under a session's checkpoint ref.
    CheckpointRecorded {
        /// The checkpoint.
        checkpoint: Checkpoint,
    },
    /// The landing queue took a branch, landed it or blocked it (DESIGN.md §11).
    Landing {
        /// Who queued it.
        owner: String,
        /// The branch.
        branch: String,
        /// `queued`, `landed` or `blocked`.
        outcome: String,
        /// What it says: the landed commit, or why it was blocked.
        detail: String,
        /// When.
        at: Timestamp,
    },
    /// A commit was made (or rewritten) naming sessions (log only).
    CommitRecorded {
        /// The commit.
        commit: String,
        /// The sessions it names.
        sessions: Vec<String>,
        /// The checkpoint it names.
        checkpoint: Option<String>,
        /// The commit it replaced (amend, rebase).
        rewritten_from: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// A task was added or changed (taken, done, reopened).
    TaskChanged {
        /// The task as it is now.
        task: Task,
        /// When.
        at: Timestamp,
    },
    /// lanes made a worktree for a subagent.
    AgentWorktreeCreated {
        /// The worktree.
        worktree: AgentWorktree,
        /// When.
        at: Timestamp,
    },
    /// A subagent's worktree was removed (it held no work).
    AgentWorktreeRemoved {
        /// Its path.
        path: String,
        /// When.
        at: Timestamp,
    },
    /// A session's user prompt, redacted (log only).
    PromptRecorded {
        /// The session.
        session: String,
        /// The prompt with secrets masked.
        prompt: String,
        /// When.
        at: Timestamp,
    },
    /// A session finished a turn.
    TurnEnded {
        /// The session.
        session: String,
        /// When.
        at: Timestamp,
    },
    /// A claim became pending work, or its pending paths shrank (part of the work landed).
    Pending {
        /// The claim as it is now.
        claim: Claim,
        /// When.
        at: Timestamp,
    },
    /// Pending work was taken over by a principal editing in its worktree.
    TakenOver {
        /// The claim as it is now (live, held by the new principal).
        claim: Claim,
        /// Who left the work.
        from: Principal,
        /// When.
        at: Timestamp,
    },
    /// A claim moved to another principal.
    HandedOff {
        /// The claim.
        id: ClaimId,
        /// The old holder.
        from: Principal,
        /// The new holder.
        to: Principal,
        /// Its new epoch.
        epoch: Epoch,
        /// Its new expiry.
        expires_at: Timestamp,
        /// When.
        at: Timestamp,
    },
}

/// The kind of a refusal; the wire and the CLI spell these as in DESIGN.md §6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalCode {
    /// Another principal holds an overlapping scope.
    Conflict,
    /// The caller's epoch is not the claim's current one.
    StaleEpoch,
    /// The caller does not hold the claim.
    NotHolder,
    /// No such claim or session.
    NotFound,
    /// A scope is not valid or lies outside the repository.
    InvalidScope,
    /// Some other argument is not valid.
    InvalidArgument,
    /// A dependency would close a cycle.
    Cycle,
    /// A wait would close a cycle of waits.
    WouldDeadlock,
}

/// A live claim that stands in the way of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    /// The claim in the way.
    pub claim_id: ClaimId,
    /// Its holder.
    pub holder: Principal,
    /// Its scope that overlaps the request.
    pub scope: Scope,
    /// Its worktree.
    pub worktree: Worktree,
    /// When it expires, unless renewed.
    pub expires_at: Timestamp,
    /// Set for pending work (and latent work): the work waits to land.
    pub pending: Option<Pending>,
    /// Latent work: pending in `worktree`, and no claim covers it (`holder` is empty).
    pub latent: bool,
    /// The agent CLI its holder's session runs in, when known.
    pub client: Option<String>,
}

/// Why a request was refused; the message says what happened and what to do.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// The kind of refusal.
    pub code: RefusalCode,
    /// What happened and what to do, for a person.
    pub message: String,
    /// For [`RefusalCode::Conflict`]: the claims in the way.
    pub conflicts: Vec<Conflict>,
}

impl Refusal {
    /// A refusal without conflicts.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into(), conflicts: Vec::new() }
    }
}

/// A request for a new claim.
#[derive(Clone, Debug)]
pub struct AcquireRequest {
    /// Who asks.
    pub holder: Principal,
    /// From which worktree.
    pub worktree: Worktree,
    /// What to cover; at least one scope.
    pub scopes: Vec<Scope>,
    /// Exclusive or shared.
    pub mode: Mode,
    /// The lease length; the policy's default when absent.
    pub ttl: Option<Duration>,
    /// A progress note.
    pub note: Option<String>,
    /// The task the claim is taken for.
    pub task: Option<String>,
}

/// A granted claim, with the notes its predecessors left on overlapping scopes.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// The new claim.
    pub claim: Claim,
    /// Notes left by lapsed claims that overlapped it.
    pub notes: Vec<LapsedNote>,
    /// Pending work in the same worktree this grant took over, as it was: whose work the holder continues.
    pub continues: Vec<Claim>,
    /// With `latent = "warn"`: latent work in other worktrees that overlaps the grant.
    pub latent: Vec<Conflict>,
    /// Whether `claim` was held before this grant (claiming again what one holds renews it; an edit that
    /// continues pending work may land on a claim its editor holds): a hub that cannot be asked now does not
    /// make it any less held.
    pub held_before: bool,
}

/// A checkpoint: a commit of a whole worktree (tracked and untracked files) made without touching the user's
/// index, HEAD or branches, chained per session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its short id (the commit's first 12 hex digits).
    pub id: String,
    /// The full commit id.
    pub commit: String,
    /// The session it belongs to.
    pub session: String,
    /// The worktree it was taken of.
    pub worktree: String,
    /// The worktree's HEAD when it was taken.
    pub head: Option<String>,
    /// Files changed since the previous checkpoint (or HEAD).
    pub files: Vec<String>,
    /// Why it was taken.
    pub message: String,
    /// The session's latest prompt then, redacted.
    pub prompt: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A worktree lanes made for a subagent (Claude Code's `Agent` with `isolation: "worktree"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentWorktree {
    /// The parent session.
    pub session: String,
    /// The subagent.
    pub agent: String,
    /// Absolute path.
    pub path: String,
    /// Its branch.
    pub branch: String,
    /// The commit it started from.
    pub base: String,
}

/// What [`ClaimBook::ensure`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Ensured {
    /// The principal already held it; that claim is kept (and was renewed if its lease was running down).
    Held(Claim),
    /// A new claim was granted.
    Granted(Grant),
}

/// The longest prompt kept, in bytes; longer ones are cut.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;

/// How many lapsed notes are kept at most; the oldest goes first.
const MAX_LAPSED_NOTES: usize = 1024;
/// The longest note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 4096;
/// The most scopes one claim may have.
pub const MAX_SCOPES: usize = 256;

/// All claims of one repository (or of one hub project).
#[derive(Debug, Default)]
pub struct ClaimBook {
    pub(crate) policy: Policy,
    pub(crate) claims: HashMap<ClaimId, Claim>,
    pub(crate) index: OverlapIndex,
    /// Each worktree's pending paths, as the caller last read them.
    pub(crate) work: HashMap<String, WorktreeWork>,
    deadlines: BTreeSet<(Timestamp, ClaimId)>,
    lapsed: Vec<LapsedNote>,
    sessions: HashMap<String, Session>,
    pub(crate) inboxes: HashMap<String, Vec<Message>>,
    last_checkpoints: HashMap<String, String>,
    last_prompts: HashMap<String, String>,
    pub(crate) board: Board,
    agent_worktrees: Vec<AgentWorktree>,
    pub(crate) waits: Vec<crate::waits::Wait>,
    pub(crate) next_message_id: u64,
    epoch: Epoch,
    next_id: u64,
    pub(crate) journal: Vec<Event>,
}

/// Where a session works and with what, as its client reported at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// Absolute path of its worktree.
    pub worktree: Option<String>,
    /// The branch checked out there.
    pub branch: Option<String>,
    /// The model it runs.
    pub model: Option<String>,
    /// How it started (`startup`, `resume`, `clear`, `compact`, `cli`).
    pub source: Option<String>,
    /// The agent CLI it runs in (`claude`, `codex`, `gemini`, `copilot`, `opencode`, `mcp`, `cli`).
    pub client: Option<String>,
}

/// What the book knows of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Started and not ended.
    pub live: bool,
    /// What its client reported.
    pub info: SessionInfo,
    /// When it (last) started.
    pub started_at: Timestamp,
    /// When it was last heard from (kept in memory only; after a restart, its start).
    pub last_seen: Timestamp,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
}

/// The state of a session, for callers that only need to know whether it is live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Started and not ended.
    Live,
    /// Ended; it can no longer receive claims.
    Ended,
}

/// Everything needed to rebuild a book after a restart.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Live claims.
    pub claims: Vec<Claim>,
    /// Lapsed notes not yet shown.
    pub lapsed: Vec<LapsedNote>,
    /// Known sessions.
    pub sessions: Vec<(String, Session)>,
    /// Messages not yet delivered.
    pub inbox: Vec<Message>,
    /// The latest checkpoint id of each session.
    pub last_checkpoints: Vec<(String, String)>,
    /// The task board.
    pub tasks: Vec<Task>,
    /// Worktrees lanes made for subagents and has not removed.
    pub agent_worktrees: Vec<AgentWorktree>,
    /// The id the next message gets.
    pub next_message_id: u64,
    /// The last epoch handed out.
    pub epoch: Epoch,
    /// The next claim id.
    pub next_id: u64,
}

impl ClaimBook {
    /// An empty book.
    pub fn new(policy: Policy) -> ClaimBook {
        ClaimBook { policy, next_id: 1, next_message_id: 1, ..ClaimBook::default() }
    }

    /// Rebuilds a book from a snapshot, as after a restart.
    pub fn restore(policy: Policy, snapshot: Snapshot) -> ClaimBook {
        let mut book = ClaimBook::new(policy);
        book.epoch = snapshot.epoch;
        book.next_id = snapshot.next_id.max(1);
        book.lapsed = snapshot.lapsed;
        book.sessions = snapshot.sessions.into_iter().collect();
        book.next_message_id = snapshot.next_message_id.max(1);
        book.last_checkpoints = snapshot.last_checkpoints.into_iter().collect();
        book.restore_tasks(snapshot.tasks);
        book.agent_worktrees = snapshot.agent_worktrees;
        for message in snapshot.inbox {
            book.next_message_id = book.next_message_id.max(message.id + 1);
            book.inboxes.entry(message.to.clone()).or_default().push(message);
        }
        for claim in snapshot.claims {
            book.next_id = book.next_id.max(claim.id.0 + 1);
            book.epoch = book.epoch.max(claim.epoch);
            book.insert(claim);
        }
        book
    }

    /// Changes the policy; it applies to requests from now on.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// The events recorded since the last call, oldest first. The caller persists them.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.journal)
    }

    /// The last epoch handed out.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The id the next claim will get: every claim made so far has a lower one.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Live claims, in no particular order. Claims past their expiry that [`ClaimBook::expire_due`] has not
    /// yet removed are included; check `expires_at` when that matters.
    pub fn claims(&self) -> impl Iterator<Item = &Claim> {
        self.claims.values()
    }

    /// One claim.
    pub fn claim(&self, id: ClaimId) -> Option<&Claim> {
        self.claims.get(&id)
    }

    /// Known sessions.
    pub fn sessions(&self) -> impl Iterator<Item = (&str, &Session)> {
        self.sessions.iter().map(|(id, session)| (id.as_str(), session))
    }

    /// Whether a session is known, and live.
    pub fn session_state(&self, session: &str) -> Option<SessionState> {
        self.sessions.get(session).map(|s| if s.live { SessionState::Live } else { SessionState::Ended })
    }

    /// When the next lease runs out, if any claim is live.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Records that a session started: a new one, or one resumed after it ended. Starting a live session
    /// again only updates what it reported.
    pub fn start_session(&mut self, session: &str, info: SessionInfo, now: Timestamp) {
        match self.sessions.get_mut(session) {
            Some(known) if known.live && known.info == info => {
                known.last_seen = now;
                return;
            }
            Some(known) if known.live => {
                known.info = info.clone();
                known.last_seen = now;
            }
            _ => {
                let record =
                    Session { live: true, info: info.clone(), started_at: now, last_seen: now, ended_at: None };
                self.sessions.insert(session.to_owned(), record);
            }
        }
        self.journal.push(Event::SessionStarted { session: session.to_owned(), info, at: now });
    }

    /// Forgets sessions that ended before `cutoff` (with their checkpoint records); returns their ids.
    pub fn prune_ended_sessions(&mut self, cutoff: Timestamp, now: Timestamp) -> Vec<String> {
        let mut old: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.live && s.ended_at.is_some_and(|t| t < cutoff))
            .map(|(id, _)| id.clone())
            .collect();
        old.sort();
        for session in &old {
            self.sessions.remove(session);
            self.last_checkpoints.remove(session);
            self.last_prompts.remove(session);
            self.journal.push(Event::SessionPruned { session: session.clone(), at: now });
        }
        old
    }

    /// Notes that a session was heard from (any request it makes).
    pub fn seen(&mut self, session: &str, now: Timestamp) {
        if let Some(known) = self.sessions.get_mut(session) {
            known.last_seen = known.last_seen.max(now);
        }
    }

    /// Records a session the first time it is seen (a CLI session claiming, say); never revives an ended one.
    pub fn register_session(&mut self, session: &str, now: Timestamp) {
        if !self.sessions.contains_key(session) {
            self.start_session(session, SessionInfo::default(), now);
        }
    }

    /// Ends the sessions no client hook started (CLI sessions: a `--session` name, a typo, a script) that hold
    /// no live claim and have not acted for `idle`, so they stop filling every SessionStart context. Such a
    /// session that acts again starts afresh. Returns the sessions ended.
    pub fn end_idle_sessions(&mut self, idle: std::time::Duration, now: Timestamp) -> Vec<String> {
        let mut idle_ones: Vec<String> = self
            .sessions
            .iter()
            .filter(|(id, s)| {
                s.live
                    && s.info.source.is_none()
                    && s.last_seen.after(idle) <= now
                    && !self.claims.values().any(|c| &c.holder.session == *id && c.expires_at > now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        idle_ones.sort();
        for session in &idle_ones {
            self.end_session(session, now);
        }
        idle_ones
    }

    /// Records that a principal touched files (kept in the event log for attribution).
    /// Only files the principal (or its session) holds a live claim on count: an edit that was refused never
    /// happened, so no session, trailer or explain is credited with it.
    pub fn touch(&mut self, who: &Principal, files: Vec<String>, now: Timestamp) {
        let files: Vec<String> = files
            .into_iter()
            .filter(|file| {
                let Ok(Scope::Path(path)) = Scope::parse(file) else { return false };
                let mut held = false;
                self.index.for_each_overlap(&Scope::Path(path.clone()), |id, _| {
                    held |= self.claims.get(&id).is_some_and(|c| {
                        c.expires_at > now
                            && c.pending.is_none()
                            && c.holder.nested_with(who)
                            && c.scopes.iter().any(|s| s.covers(&path))
                    });
                });
                held
            })
            .collect();
        if !files.is_empty() {
            self.journal.push(Event::FilesTouched { principal: who.clone(), files, at: now });
        }
    }

    /// Records a worktree made for a subagent.
    pub fn add_agent_worktree(&mut self, worktree: AgentWorktree, now: Timestamp) {
        self.agent_worktrees.retain(|w| w.path != worktree.path);
        self.agent_worktrees.push(worktree.clone());
        self.journal.push(Event::AgentWorktreeCreated { worktree, at: now });
    }

    /// Forgets a subagent worktree that was removed.
    pub fn remove_agent_worktree(&mut self, path: &str, now: Timestamp) {
        self.agent_worktrees.retain(|w| w.path != path);
        self.journal.push(Event::AgentWorktreeRemoved { path: path.to_owned(), at: now });
    }

    /// The worktrees lanes made for a session's subagents (or one subagent's; every session's for `None`).
    pub fn agent_worktrees(&self, session: Option<&str>, agent: Option<&str>) -> Vec<AgentWorktree> {
        self.agent_worktrees
            .iter()
            .filter(|w| session.is_none_or(|s| w.session == s) && agent.is_none_or(|a| w.agent == a))
            .cloned()
            .collect()
    }

    /// Records a user prompt of a session, secrets masked first; returns what was stored.
    pub fn record_prompt(&mut self, session: &str, prompt: &str, now: Timestamp) -> String {
        let mut redacted = crate::redact::redact(prompt);
        if redacted.len() > MAX_PROMPT_BYTES {
            let cut = (0..=MAX_PROMPT_BYTES).rev().find(|i| redacted.is_char_boundary(*i)).unwrap_or(0);
            redacted.truncate(cut);
            redacted.push_str(" [...]");
        }
        self.last_prompts.insert(session.to_owned(), redacted.clone());
        self.journal.push(Event::PromptRecorded { session: session.to_owned(), prompt: redacted.clone(), at: now });
        redacted
    }

    /// The latest (redacted) prompt of a session.
    pub fn last_prompt(&self, session: &str) -> Option<&str> {
        self.last_prompts.get(session).map(String::as_str)
    }

    /// Records a checkpoint a session just committed.
    pub fn record_checkpoint(&mut self, checkpoint: Checkpoint) {
        self.last_checkpoints.insert(checkpoint.session.clone(), checkpoint.id.clone());
        self.journal.push(Event::CheckpointRecorded { checkpoint });
    }

    /// The latest checkpoint id of a session.
    pub fn last_checkpoint(&self, session: &str) -> Option<&str> {
        self.last_checkpoints.get(session).map(String::as_str)
    }

    /// Records a commit and the sessions it names.
    pub fn record_commit(
        &mut self,
        commit: String,
        sessions: Vec<String>,
        checkpoint: Option<String>,
        rewritten_from: Option<String>,
        now: Timestamp,
    ) {
        self.journal.push(Event::CommitRecorded { commit, sessions, checkpoint, rewritten_from, at: now });
    }

    /// Logs what the landing queue did with a branch and tells its owner, if the owner is live.
    pub fn record_landing(&mut self, owner: &str, branch: &str, outcome: &str, detail: &str, now: Timestamp) {
        self.journal.push(Event::Landing {
            owner: owner.to_owned(),
            branch: branch.to_owned(),
            outcome: outcome.to_owned(),
            detail: detail.to_owned(),
            at: now,
        });
        if outcome != "queued" && self.sessions.get(owner).is_some_and(|s| s.live) {
            let text = format!("lanes land: {branch} {outcome}: {detail}");
            self.queue_message(crate::messages::SYSTEM_SENDER, owner, text, now);
        }
    }

    /// Records that a session finished a turn.
    pub fn end_turn(&mut self, session: &str, now: Timestamp) {
        self.journal.push(Event::TurnEnded { session: session.to_owned(), at: now });
    }

    /// Ends a session: releases every claim it and its subagents hold.
    pub fn end_session(&mut self, session: &str, now: Timestamp) -> Vec<ClaimId> {
        self.expire_due(now);
        let principal = Principal { session: session.to_owned(), agent: None };
        let live: Vec<ClaimId> = self
            .held_by(&principal)
            .into_iter()
            .filter(|id| self.claims.get(id).is_some_and(|c| c.pending.is_none()))
            .collect();
        let ids = self.end_claims(live, now);
        let record = self.sessions.entry(session.to_owned()).or_insert_with(|| Session {
            live: true,
            info: SessionInfo::default(),
            started_at: now,
            last_seen: now,
            ended_at: None,
        });
        if std::mem::replace(&mut record.live, false) {
            record.ended_at = Some(now);
            self.journal.push(Event::SessionEnded { session: session.to_owned(), at: now });
        }
        ids
    }

    /// Ends one principal (a subagent: SubagentStop) as [`ClaimBook::end_session`] ends a session: its claims
    /// are released, except what is pending in its worktree, which stays claimed as pending work.
    pub fn end_principal(&mut self, who: &Principal, now: Timestamp) -> Vec<ClaimId> {
        if who.agent.is_none() {
            return self.end_session(&who.session, now);
        }
        self.expire_due(now);
        let mut ids: Vec<ClaimId> =
            self.claims.values().filter(|c| &c.holder == who && c.pending.is_none()).map(|c| c.id).collect();
        ids.sort_unstable();
        self.end_claims(ids, now)
    }

    /// The claims of a holder that ended: each leaves its pending work claimed, or is released. Returns the
    /// released ones.
    fn end_claims(&mut self, ids: Vec<ClaimId>, now: Timestamp) -> Vec<ClaimId> {
        let mut released = Vec::new();
        for id in ids {
            // What the holder changed and did not land stays claimed, by its worktree.
            if !self.leave_pending(id, now) {
                self.remove(id, ReleaseReason::SessionEnded, now);
                released.push(id);
            }
        }
        released
    }

    /// The claims `who` holds (a session: its subagents' too), pending work included.
    pub fn held_claims(&self, who: &Principal) -> Vec<Claim> {
        self.held_by(who).into_iter().filter_map(|id| self.claims.get(&id).cloned()).collect()
    }

    /// Grants a claim, or refuses it naming every live claim in the way.
    pub fn acquire(&mut self, request: AcquireRequest, now: Timestamp) -> Result<Grant, Refusal> {
        self.expire_due(now);
        if request.scopes.is_empty() {
            return Err(Refusal::new(RefusalCode::InvalidArgument, "nothing to claim: give at least one scope"));
        }
        if request.scopes.len() > MAX_SCOPES {
            return Err(Refusal::new(
                RefusalCode::InvalidArgument,
                format!(
                    "too many scopes ({}): one claim takes at most {MAX_SCOPES}; use a directory or a glob",
                    request.scopes.len()
                ),
            ));
        }
        check_note(request.note.as_deref())?;
        let request = AcquireRequest { note: request.note.as_deref().map(crate::redact::redact), ..request };
        let ttl = check_ttl(request.ttl.unwrap_or(self.policy.default_ttl))
            .map_err(|bounds| Refusal::new(RefusalCode::InvalidArgument, format!("invalid ttl: {bounds}")))?;
        // A session no client hook started (the CLI, a script) that ended for idleness is the same person
        // coming back: it starts again below; any other ended session may not claim.
        let cli_session = |s: &Session| s.info.source.is_none();
        let restart = match self.sessions.get(&request.holder.session) {
            None => true,
            Some(s) => !s.live && cli_session(s),
        };
        if !restart && self.session_state(&request.holder.session) == Some(SessionState::Ended) {
            return Err(Refusal::new(
                RefusalCode::InvalidArgument,
                format!("session {} has ended; start a new session to claim files", request.holder.session),
            ));
        }
        let conflicts = self.conflicts(&request.holder, &request.worktree, &request.scopes, request.mode, now, None);
        if !conflicts.is_empty() {
            return Err(conflict_refusal(&request.scopes, conflicts, now));
        }
        let continues = self.take_over_pending(&request.holder, &request.worktree, &request.scopes, ttl, now);
        if let Some(id) = self.same_claim(&request, now) {
            // Claiming again what one holds is a renewal, not a second claim on the same files.
            let claim = self.renew(&request.holder, id, Some(ttl), None, now)?;
            return Ok(Grant { claim, notes: Vec::new(), continues, latent: Vec::new(), held_before: true });
        }
        if restart {
            // A session first seen (or seen again) claiming records the worktree it works in.
            let info = SessionInfo { worktree: Some(request.worktree.root.clone()), ..SessionInfo::default() };
            self.start_session(&request.holder.session, info, now);
        }
        let latent = if self.policy.latent == Latent::Warn {
            self.latent_conflicts(&request.worktree, &request.scopes, now)
        } else {
            Vec::new()
        };
        let (notes, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lapsed)
            .into_iter()
            .partition(|n| n.scopes.iter().any(|a| request.scopes.iter().any(|b| a.overlaps(b))));
        self.lapsed = kept;
        let claim = Claim {
            id: ClaimId(self.next_id),
            holder: request.holder,
            worktree: request.worktree,
            scopes: request.scopes,
            mode: request.mode,
            epoch: self.bump_epoch(),
            ttl,
            granted_at: now,
            expires_at: now.after(ttl),
            note: request.note,
            task: request.task,
            pending: None,
        };
        self.next_id += 1;
        self.insert(claim.clone());
        self.journal
            .push(Event::Granted { claim: claim.clone(), consumed_notes: notes.iter().map(|n| n.claim).collect() });
        Ok(Grant { claim, notes, continues, latent, held_before: false })
    }

    /// Releases the given claims (all or none), or with `all` every claim the principal holds.
    pub fn release(
        &mut self,
        who: &Principal,
        ids: &[ClaimId],
        all: bool,
        epoch: Option<Epoch>,
        now: Timestamp,
    ) -> Result<Vec<ClaimId>, Refusal> {
        self.expire_due(now);
        let ids = if all {
            self.held_by(who)
        } else {
            if ids.is_empty() {
                return Err(Refusal::new(RefusalCode::InvalidArgument, "nothing to release: give claim ids or --all"));
            }
            for id in ids {
                self.held(who, *id, epoch)?;
            }
            ids.to_vec()
        };
        for id in &ids {
            self.remove(*id, ReleaseReason::Released, now);
        }
        Ok(ids)
    }

    /// Takes back claim `id`, granted here under `epoch`, that the hub refused or no hub confirmed: its release
    /// says why (`reason`), where a holder's own release would say `released`.
    pub fn take_back(
        &mut self,
        who: &Principal,
        id: ClaimId,
        epoch: Epoch,
        reason: ReleaseReason,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        self.expire_due(now);
        self.held(who, id, Some(epoch))?;
        self.remove(id, reason, now);
        Ok(())
    }

    /// Extends a claim's lease by `ttl` (or its own lease length) from now, under a new epoch.
    pub fn renew(
        &mut self,
        who: &Principal,
        id: ClaimId,
        ttl: Option<Duration>,
        epoch: Option<Epoch>,
        now: Timestamp,
    ) -> Result<Claim, Refusal> {
        self.expire_due(now);
        self.held(who, id, epoch)?;
        let ttl = match ttl {
            Some(ttl) => Some(
                check_ttl(ttl).map_err(|b| Refusal::new(RefusalCode::InvalidArgument, format!("invalid ttl: {b}")))?,
            ),
            None => None,
        };
        let epoch = self.bump_epoch();
        let claim = self.claims.get_mut(&id).expect("held() checked the claim exists");
        self.deadlines.remove(&(claim.expires_at, id));
        if let Some(ttl) = ttl {
            claim.ttl = ttl;
        }
        claim.epoch = epoch;
        claim.expires_at = now.after(claim.ttl);
        self.deadlines.insert((claim.expires_at, id));
        self.journal.push(Event::Renewed {
            id,
            holder: claim.holder.clone(),
            epoch,
            expires_at: claim.expires_at,
            at: now,
        });
        Ok(claim.clone())
    }

    /// What an edit hook asks: if another principal holds an overlapping scope, refuse; if the principal
    /// (or its parent session) already holds a claim covering the request, keep it (refreshed if its lease
    /// is running down); otherwise grant a new claim.
    pub fn ensure(&mut self, request: AcquireRequest, now: Timestamp) -> Result<Ensured, Refusal> {
        let covering = self.covering(&request, now)?;
        let ttl = request.ttl.unwrap_or(self.policy.default_ttl);
        let continues = self.take_over_pending(&request.holder, &request.worktree, &request.scopes, ttl, now);
        if !continues.is_empty() {
            // The editor continues work another left here: say whose, on the claim that now covers the edit.
            let grant = match self.covering(&request, now)?.and_then(|id| self.claims.get(&id)).cloned() {
                Some(claim) => Grant { claim, notes: Vec::new(), continues, latent: Vec::new(), held_before: true },
                None => Grant { continues, ..self.acquire(request, now)? },
            };
            return Ok(Ensured::Granted(grant));
        }
        match covering.and_then(|id| self.claims.get(&id)) {
            Some(claim) if !running_down(claim, now) => Ok(Ensured::Held(claim.clone())),
            Some(claim) => {
                let (id, holder) = (claim.id, claim.holder.clone());
                Ok(Ensured::Held(self.renew(&holder, id, None, None, now)?))
            }
            None => Ok(Ensured::Granted(self.acquire(request, now)?)),
        }
    }

    /// What [`ClaimBook::ensure`] finds without granting anything: a conflict, the principal's own claim
    /// that covers the request, or nothing (when a grant would be needed).
    pub fn ensure_held(&mut self, request: &AcquireRequest, now: Timestamp) -> Result<Option<Claim>, Refusal> {
        let covering = self.covering(request, now)?;
        Ok(covering.and_then(|id| self.claims.get(&id)).cloned())
    }

    /// Refuses a request others are in the way of; otherwise the principal's (or its session's) live claim that
    /// covers every requested scope, if any.
    fn covering(&mut self, request: &AcquireRequest, now: Timestamp) -> Result<Option<ClaimId>, Refusal> {
        self.expire_due(now);
        let conflicts = self.conflicts(&request.holder, &request.worktree, &request.scopes, request.mode, now, None);
        if !conflicts.is_empty() {
            return Err(conflict_refusal(&request.scopes, conflicts, now));
        }
        // A covering claim overlaps the first wanted scope, so the index names every candidate.
        let Some(first) = request.scopes.first() else { return Ok(None) };
        let mut candidates = Vec::new();
        self.index.for_each_overlap(first, |id, _| candidates.push(id));
        candidates.sort_unstable();
        candidates.dedup();
        let covering = candidates.into_iter().filter_map(|id| self.claims.get(&id)).find(|c| {
            c.expires_at > now
                && (c.holder == request.holder
                    || (c.holder.agent.is_none() && c.holder.session == request.holder.session))
                && covers_all(c, &request.scopes)
        });
        Ok(covering.map(|c| c.id))
    }

    /// The principal's own live claim, in the same worktree and mode (and for the same task, if one is named),
    /// that already covers every scope of `request`.
    fn same_claim(&self, request: &AcquireRequest, now: Timestamp) -> Option<ClaimId> {
        let first = request.scopes.first()?;
        let mut candidates = Vec::new();
        self.index.for_each_overlap(first, |id, _| candidates.push(id));
        let same = candidates.into_iter().filter_map(|id| self.claims.get(&id)).find(|c| {
            c.expires_at > now
                && c.holder == request.holder
                && c.mode == request.mode
                && c.worktree.root == request.worktree.root
                && request.task.as_ref().is_none_or(|task| c.task.as_ref() == Some(task))
                && covers_all(c, &request.scopes)
        });
        same.map(|c| c.id)
    }

    /// The principal's own live claims (or its session's) that overlap `scopes`: what `lanes check` reports
    /// as "you hold it".
    pub fn own_holdings(&self, who: &Principal, scopes: &[Scope], now: Timestamp) -> Vec<Claim> {
        let mut found: Vec<Claim> = Vec::new();
        for scope in scopes {
            self.index.for_each_overlap(scope, |id, _| {
                let claim = &self.claims[&id];
                if claim.expires_at > now && claim.holder.nested_with(who) && !found.iter().any(|c| c.id == id) {
                    found.push(claim.clone());
                }
            });
        }
        found
    }

    /// Keeps the principal's leases fresh (what each hook event of a session does): renews every claim it
    /// holds whose lease is running down. A burst of hook events thus costs one renewal (and one fsync) per
    /// claim every quarter lease, not one per event.
    pub fn refresh_all(&mut self, who: &Principal, now: Timestamp) -> Vec<Claim> {
        let due: Vec<ClaimId> = self
            .held_by(who)
            .into_iter()
            .filter(|id| self.claims.get(id).is_some_and(|c| running_down(c, now)))
            .collect();
        due.into_iter().filter_map(|id| self.renew(who, id, None, None, now).ok()).collect()
    }

    /// Moves a claim to another principal under a new epoch and a fresh lease. The old holder is fenced: its
    /// epoch no longer works. Refused if the recipient is unknown or ended, or would conflict with a third
    /// principal (which can happen under worktree contention or with subagents).
    pub fn handoff(
        &mut self,
        who: &Principal,
        id: ClaimId,
        to: Principal,
        epoch: Option<Epoch>,
        now: Timestamp,
    ) -> Result<Claim, Refusal> {
        self.expire_due(now);
        self.held(who, id, epoch)?;
        match self.session_state(&to.session) {
            Some(SessionState::Live) => {}
            Some(SessionState::Ended) => {
                return Err(Refusal::new(
                    RefusalCode::NotFound,
                    format!("session {} has ended; hand the claim to a live session", to.session),
                ));
            }
            None => {
                return Err(Refusal::new(
                    RefusalCode::NotFound,
                    format!("no session {} is known here; `lanes status` lists the live sessions", to.session),
                ));
            }
        }
        let claim = self.claims[&id].clone();
        let conflicts = self.conflicts(&to, &claim.worktree, &claim.scopes, claim.mode, now, Some(id));
        if !conflicts.is_empty() {
            let mut refusal = conflict_refusal(&claim.scopes, conflicts, now);
            refusal.message = format!("cannot hand claim {id} to {to}: {}", refusal.message);
            return Err(refusal);
        }
        let epoch = self.bump_epoch();
        let claim = self.claims.get_mut(&id).expect("held() checked the claim exists");
        self.deadlines.remove(&(claim.expires_at, id));
        let from = std::mem::replace(&mut claim.holder, to.clone());
        claim.epoch = epoch;
        claim.expires_at = now.after(claim.ttl);
        self.deadlines.insert((claim.expires_at, id));
        let claim = claim.clone();
        self.clear_waits_on(id, now);
        self.journal.push(Event::HandedOff {
            id,
            from: from.clone(),
            to: to.clone(),
            epoch,
            expires_at: claim.expires_at,
            at: now,
        });
        if from.session != to.session && self.session_state(&from.session) == Some(SessionState::Live) {
            let scopes: Vec<String> = claim.scopes.iter().map(Scope::to_string).collect();
            let text = format!(
                "your claim {id} on {} now belongs to {to} (epoch {}); your epoch no longer works",
                scopes.join(", "),
                epoch.0
            );
            self.queue_message(crate::messages::SYSTEM_SENDER, &from.session, text, now);
        }
        Ok(claim)
    }

    /// Releases every claim made from a worktree that no longer exists.
    pub fn drop_worktree(&mut self, root: &str, now: Timestamp) -> Vec<ClaimId> {
        let ids: Vec<ClaimId> = self.claims.values().filter(|c| c.worktree.root == root).map(|c| c.id).collect();
        for id in &ids {
            self.remove(*id, ReleaseReason::WorktreeGone, now);
        }
        ids
    }

    /// Removes every claim whose lease has run out by `now`, recording an `Expired` event for each and
    /// keeping its note for the next claimant. Conflict checks already ignore such claims; this makes the
    /// expiry visible in the log.
    pub fn expire_due(&mut self, now: Timestamp) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            // A lease that runs out on work still pending in its worktree leaves that work claimed.
            if self.leave_pending(id, now) {
                continue;
            }
            let Some(claim) = self.take(id) else { continue };
            self.clear_waits_on(id, now);
            if let Some(note) = &claim.note {
                if self.lapsed.len() >= MAX_LAPSED_NOTES {
                    self.lapsed.remove(0);
                }
                self.lapsed.push(LapsedNote {
                    claim: claim.id,
                    holder: claim.holder.clone(),
                    scopes: claim.scopes.clone(),
                    note: note.clone(),
                    expired_at: claim.expires_at,
                });
            }
            if claim.task.is_some() {
                self.reopen_task_of(claim.id, claim.note.clone(), now);
            }
            let holder = claim.holder.session.clone();
            let text = format!(
                "your claim {} on {} expired; claim again (`lanes claim <path>`) if you still work there",
                claim.id,
                claim.scopes.iter().map(Scope::to_string).collect::<Vec<_>>().join(", ")
            );
            self.journal.push(Event::Expired { claim });
            if self.session_state(&holder) == Some(SessionState::Live) {
                self.queue_message(crate::messages::SYSTEM_SENDER, &holder, text, now);
            }
        }
    }

    /// The live claims of other principals that overlap `scopes`, as `who` would meet them on an exclusive
    /// claim from `worktree`. This is what `lanes check` and the edit hook ask.
    pub fn holders(&self, who: &Principal, worktree: &Worktree, scopes: &[Scope], now: Timestamp) -> Vec<Conflict> {
        self.conflicts(who, worktree, scopes, Mode::Exclusive, now, None)
    }

    fn conflicts(
        &self,
        who: &Principal,
        worktree: &Worktree,
        scopes: &[Scope],
        mode: Mode,
        now: Timestamp,
        exclude: Option<ClaimId>,
    ) -> Vec<Conflict> {
        let mut found: Vec<Conflict> = Vec::new();
        for scope in scopes {
            self.index.for_each_overlap(scope, |id, held| {
                let claim = &self.claims[&id];
                let other_worktree = claim.worktree.root != worktree.root;
                let counts = Some(id) != exclude
                    && claim.expires_at > now
                    && !(claim.mode == Mode::Shared && mode == Mode::Shared)
                    && match claim.pending {
                        // Pending work is the worktree's: whoever edits there takes it over; anyone else
                        // meets it, unless worktrees are independent claim spaces.
                        Some(_) => other_worktree && self.policy.contention == Contention::Repo,
                        None => {
                            let independent = self.policy.contention == Contention::Worktree && other_worktree;
                            !(claim.holder.nested_with(who) || independent)
                        }
                    };
                if counts && !found.iter().any(|c| c.claim_id == id && &c.scope == held) {
                    found.push(Conflict {
                        claim_id: id,
                        holder: claim.holder.clone(),
                        scope: held.clone(),
                        worktree: claim.worktree.clone(),
                        expires_at: claim.expires_at,
                        pending: claim.pending.clone(),
                        latent: false,
                        client: self.sessions.get(&claim.holder.session).and_then(|s| s.info.client.clone()),
                    });
                }
            });
        }
        if self.policy.latent == Latent::Refuse {
            found.extend(self.latent_conflicts(worktree, scopes, now));
        }
        found.sort_by_key(|c| c.claim_id);
        found
    }

    /// Checks that `who` may change claim `id` at `epoch`.
    fn held(&self, who: &Principal, id: ClaimId, epoch: Option<Epoch>) -> Result<(), Refusal> {
        let claim = self.claims.get(&id).ok_or_else(|| {
            Refusal::new(
                RefusalCode::NotFound,
                format!("no live claim {id}: it was released or expired; `lanes status` lists live claims"),
            )
        })?;
        if !who.acts_for(&claim.holder) {
            return Err(Refusal::new(
                RefusalCode::NotHolder,
                format!("claim {id} is held by {}, not {who}; ask its holder to release or hand it off", claim.holder),
            ));
        }
        if let Some(epoch) = epoch
            && epoch != claim.epoch
        {
            return Err(Refusal::new(
                RefusalCode::StaleEpoch,
                format!(
                    "claim {id} is at epoch {}, not {}: it was renewed or handed off since; re-read it with `lanes status`",
                    claim.epoch.0, epoch.0
                ),
            ));
        }
        Ok(())
    }

    fn held_by(&self, who: &Principal) -> Vec<ClaimId> {
        let mut ids: Vec<ClaimId> = self.claims.values().filter(|c| who.acts_for(&c.holder)).map(|c| c.id).collect();
        ids.sort_unstable();
        ids
    }

    pub(crate) fn bump_epoch(&mut self) -> Epoch {
        self.epoch.0 += 1;
        self.epoch
    }

    pub(crate) fn insert(&mut self, claim: Claim) {
        for scope in &claim.scopes {
            self.index.insert(claim.id, scope);
        }
        // Pending work does not run out: it ends when it lands (see `set_worktree_work`).
        if claim.pending.is_none() {
            self.deadlines.insert((claim.expires_at, claim.id));
        }
        self.claims.insert(claim.id, claim);
    }

    pub(crate) fn take(&mut self, id: ClaimId) -> Option<Claim> {
        let claim = self.claims.remove(&id)?;
        for scope in &claim.scopes {
            self.index.remove(id, scope);
        }
        self.deadlines.remove(&(claim.expires_at, id));
        Some(claim)
    }

    pub(crate) fn remove(&mut self, id: ClaimId, reason: ReleaseReason, now: Timestamp) {
        if let Some(claim) = self.take(id) {
            self.clear_waits_on(id, now);
            if claim.task.is_some() {
                self.reopen_task_of(claim.id, claim.note.clone(), now);
            }
            self.journal.push(Event::Released { claim, reason, at: now });
        }
    }
}

/// Whether `claim` covers every scope of `wanted`: a path by a scope that covers it, anything else only by
/// itself.
fn covers_all(claim: &Claim, wanted: &[Scope]) -> bool {
    wanted.iter().all(|wanted| match wanted {
        Scope::Path(path) => claim.scopes.iter().any(|held| held.covers(path)),
        _ => claim.scopes.contains(wanted),
    })
}

/// Whether a claim has used up a quarter of its lease, so a refresh should renew it.
fn running_down(claim: &Claim, now: Timestamp) -> bool {
    claim.expires_at.remaining(now) < claim.ttl.mul_f64(0.75)
}

fn check_note(note: Option<&str>) -> Result<(), Refusal> {
    match note {
        Some(n) if n.len() > MAX_NOTE_BYTES => Err(Refusal::new(
            RefusalCode::InvalidArgument,
            format!("note too long ({} bytes): keep it under {MAX_NOTE_BYTES} bytes", n.len()),
        )),
        _ => Ok(()),
    }
}

fn conflict_refusal(requested: &[Scope], conflicts: Vec<Conflict>, now: Timestamp) -> Refusal {
    let holders: Vec<String> = conflicts.iter().map(|c| describe_conflict(c, now)).collect();
    let requested: Vec<String> = requested.iter().map(Scope::to_string).collect();
    let live = conflicts.iter().any(|c| c.pending.is_none());
    let what_to_do = if live {
        "coordinate with `lanes send <session> <text>`, or `lanes wait <claim>` to be told when it is free"
    } else {
        "that work must land first (commit it and merge it, or `lanes land` it), or be given up with \
         `lanes release --pending <claim>`; editing the same file elsewhere would make the merge conflict"
    };
    Refusal {
        code: RefusalCode::Conflict,
        message: format!("{} is held by {}; {what_to_do}", requested.join(", "), holders.join("; ")),
        conflicts,
    }
}

/// One conflict as a refusal names it: a live holder, pending work left in a worktree, or latent work.
pub fn describe_conflict(c: &Conflict, now: Timestamp) -> String {
    let branch = |p: &Pending| p.branch.as_deref().map(|b| format!(", branch {b}")).unwrap_or_default();
    match &c.pending {
        Some(p) if c.latent => format!(
            "uncommitted or unmerged work in worktree {}{} that no claim covers (path {})",
            c.worktree.root,
            branch(p),
            c.scope
        ),
        Some(p) => format!(
            "pending work in worktree {}{} (claim {}, scope {}), left by {} {} ago, not landed yet",
            c.worktree.root,
            branch(p),
            c.claim_id,
            c.scope,
            c.holder,
            crate::time::human_duration(now.since(p.left_at))
        ),
        None => format!(
            "{} (claim {}, scope {}, worktree {}, expires in {})",
            c.holder,
            c.claim_id,
            c.scope,
            c.worktree.root,
            crate::time::human_duration(c.expires_at.remaining(now))
        ),
    }
}
