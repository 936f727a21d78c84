//! The state owner: one task owns the claim book and the store; request handlers send it commands and
//! await its answers. It drains whatever commands are queued, decides each against the book, commits all
//! their events in one transaction (one fsync for the lot), and only then answers. A failed commit answers
//! every command of the batch with an error and reloads the book from the store, so nobody is ever told of
//! a change that is not on disk.
//!
//! It runs on the sidecar's single async thread, beside the connections. A cross-thread wake-up costs tens
//! of microseconds on a virtual machine, more than deciding a claim does; on one thread a request needs
//! none.
//!
//! A batch that grants is answered only once a sync of the write-ahead log has finished after its commit
//! (DESIGN.md §3). The log syncer thread syncs while the owner decides the next batch; syncs asked while one
//! runs are merged into one, and grants are still answered in commit order. With nothing else to decide, the
//! owner waits for the sync awake rather than asleep (see `StateOwner::wait_awake`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lanes_core::{
    AcquireRequest, AgentWorktree, Checkpoint, Claim, ClaimBook, ClaimId, Conflict, Ensured, Epoch, Grant, Message,
    Policy, Principal, Recipient, Refusal, RefusalCode, ReleaseReason, Scope, Session, SessionInfo, Task, Timestamp,
    Worktree, WorktreeWork,
};
use lanes_store::{Commit, LoggedEvent, Store, StoreError, WalSync};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

/// The most commands decided and committed together.
const MAX_BATCH: usize = 512;
/// A live session heard from within this long counts as working here, claims or not.
const RECENT: Duration = Duration::from_secs(2 * 3600);
/// How long the owner waits for a log sync awake before it sleeps (see `StateOwner::wait_awake`); a sync
/// takes ~0.1 ms on a good disk.
const SYNC_WAIT_AWAKE: Duration = Duration::from_millis(2);
/// How often the owner looks for worktrees that were removed.
const WORKTREE_SWEEP: Duration = Duration::from_secs(5);

/// What a handler asks of the state owner.
#[derive(Debug)]
pub enum Command {
    Acquire(AcquireRequest),
    Release {
        who: Principal,
        ids: Vec<ClaimId>,
        all: bool,
        epoch: Option<Epoch>,
    },
    /// A claim granted here that the hub refused, or no hub confirmed (`reason`).
    TakeBack {
        who: Principal,
        id: ClaimId,
        epoch: Epoch,
        reason: ReleaseReason,
    },
    Renew {
        who: Principal,
        id: ClaimId,
        ttl: Option<Duration>,
        epoch: Option<Epoch>,
    },
    Handoff {
        who: Principal,
        id: ClaimId,
        to: Principal,
        epoch: Option<Epoch>,
    },
    Wait {
        who: Principal,
        worktree: Worktree,
        claim: Option<ClaimId>,
        scopes: Vec<Scope>,
    },
    Check {
        who: Principal,
        worktree: Worktree,
        scopes: Vec<Scope>,
    },
    /// The caller's own live claims over these scopes.
    OwnHoldings {
        who: Principal,
        scopes: Vec<Scope>,
    },
    Ensure(AcquireRequest),
    /// What `Ensure` finds without granting: used while no hub answers, when nothing new may be granted.
    EnsureHeld(AcquireRequest),
    SessionStart {
        session: String,
        info: SessionInfo,
    },
    SessionEnd {
        session: String,
    },
    /// A subagent ended: its claims are released, except its pending work.
    PrincipalEnd {
        who: Principal,
    },
    /// The claims a principal holds (its subagents' too, for a session).
    HeldBy {
        who: Principal,
    },
    /// Give up pending work.
    ReleasePending {
        who: Principal,
        ids: Vec<ClaimId>,
    },
    /// The pending paths last read for a worktree.
    Work {
        root: String,
    },
    /// A worktree's pending paths as git shows them now; `None` when the worktree is gone.
    SetWork {
        root: String,
        work: Option<WorktreeWork>,
    },
    Activity {
        who: Principal,
        worktree: Option<String>,
        files: Vec<String>,
        turn: bool,
        deliver: bool,
        prompt: Option<String>,
    },
    Send {
        from: String,
        to: Recipient,
        text: String,
    },
    Inbox {
        session: String,
    },
    /// Tells the holders in `conflicts` that a shell command of `editor` changed `path` in `root`.
    ReportShellEdit {
        editor: Principal,
        root: String,
        path: String,
        conflicts: Vec<lanes_core::Conflict>,
    },
    /// What the landing queue did with a branch, for the log and its owner.
    RecordLanding {
        owner: String,
        branch: String,
        outcome: String,
        detail: String,
    },
    /// Messages from other machines, as (from, to, text).
    Receive {
        messages: Vec<(String, String, String)>,
    },
    RecordCheckpoint(Checkpoint),
    LastPrompt {
        session: String,
    },
    Checkpoints {
        session: Option<String>,
        limit: u32,
    },
    FindCheckpoint {
        prefix: String,
    },
    Stamp {
        session: Option<String>,
        files: Vec<String>,
        since: Timestamp,
    },
    RecordCommit {
        commit: String,
        sessions: Vec<String>,
        checkpoint: Option<String>,
        rewritten_from: Option<String>,
    },
    Explain {
        commit: String,
        sessions: Vec<String>,
    },
    AddAgentWorktree(AgentWorktree),
    AgentWorktrees {
        /// Every session's when `None`.
        session: Option<String>,
        agent: Option<String>,
    },
    RemoveAgentWorktree {
        path: String,
    },
    TaskAdd {
        title: String,
        after: Vec<u64>,
        scopes: Vec<Scope>,
    },
    Tasks,
    TaskNext {
        who: Principal,
        worktree: Worktree,
    },
    TaskDone {
        who: Principal,
        task: u64,
    },
    TaskChange {
        who: Principal,
        task: u64,
        change: TaskChange,
    },
    Status,
    Events {
        since: u64,
        limit: u32,
    },
}

impl Command {
    /// The session a command comes from, if it names one.
    fn session(&self) -> Option<&str> {
        match self {
            Command::Acquire(request) | Command::Ensure(request) | Command::EnsureHeld(request) => {
                Some(&request.holder.session)
            }
            Command::Release { who, .. }
            | Command::TakeBack { who, .. }
            | Command::Renew { who, .. }
            | Command::Handoff { who, .. }
            | Command::Check { who, .. }
            | Command::OwnHoldings { who, .. }
            | Command::Wait { who, .. }
            | Command::Activity { who, .. }
            | Command::TaskNext { who, .. }
            | Command::TaskDone { who, .. }
            | Command::TaskChange { who, .. } => Some(&who.session),
            Command::Send { from, .. } => Some(from),
            Command::ReportShellEdit { editor, .. } => Some(&editor.session),
            Command::Inbox { session } => Some(session),
            Command::RecordCheckpoint(checkpoint) => Some(&checkpoint.session),
            Command::LastPrompt { session } => Some(session),
            Command::PrincipalEnd { who } | Command::HeldBy { who } | Command::ReleasePending { who, .. } => {
                Some(&who.session)
            }
            Command::SessionStart { .. }
            | Command::Receive { .. }
            | Command::RecordLanding { .. }
            | Command::SetWork { .. }
            | Command::Work { .. }
            | Command::SessionEnd { .. }
            | Command::Status
            | Command::Events { .. }
            | Command::Checkpoints { .. }
            | Command::FindCheckpoint { .. }
            | Command::Stamp { .. }
            | Command::RecordCommit { .. }
            | Command::Explain { .. }
            | Command::TaskAdd { .. }
            | Command::AddAgentWorktree(_)
            | Command::AgentWorktrees { .. }
            | Command::RemoveAgentWorktree { .. }
            | Command::Tasks => None,
        }
    }
}

/// The state owner's answer.
#[derive(Debug)]
pub enum Answer {
    Granted(Grant),
    Claim(Claim),
    Released(Vec<ClaimId>),
    Holders(Vec<Conflict>),
    Claims(Vec<Claim>),
    Work(Option<WorktreeWork>),
    Ensured(Ensured),
    Held(Option<Claim>),
    Started(StartSnapshot),
    Activity { renewed: usize, inbox: Vec<Message>, neighbours: Vec<String>, bound: Option<String> },
    Messages(Vec<Message>),
    Recorded,
    Prompt(Option<String>),
    Checkpoints(Vec<Checkpoint>),
    Stamp(Vec<(String, Option<String>)>),
    AgentWorktrees(Vec<AgentWorktree>),
    Task(Task),
    Taken(Task, Option<Grant>),
    Tasks(Vec<(Task, bool, bool)>),
    Explained(Vec<SessionStory>),
    Status(StatusSnapshot),
    Events(Vec<LoggedEvent>),
}

/// A copy of the state for `status`.
#[derive(Debug)]
pub struct StatusSnapshot {
    pub claims: Vec<Claim>,
    pub sessions: Vec<SessionLine>,
    pub tasks: Vec<(Task, bool, bool)>,
    pub epoch: Epoch,
    /// Every claim made so far has a lower id (what a hub sync needs to tell old claims from new ones).
    pub next_claim_id: u64,
    pub now: Timestamp,
}

/// A session as `status` lists it.
#[derive(Debug)]
pub struct SessionLine {
    pub id: String,
    pub session: Session,
    pub unread: usize,
    pub last_checkpoint: Option<String>,
    pub last_prompt: Option<String>,
}

/// What a starting session should know: the other live sessions with their claims, its own claims, and its
/// unread messages (now delivered).
#[derive(Debug)]
pub struct StartSnapshot {
    pub others: Vec<(String, Session, Vec<Claim>)>,
    pub own_claims: Vec<Claim>,
    /// Work left in worktrees that has not landed, whoever left it.
    pub pending: Vec<Claim>,
    pub inbox: Vec<Message>,
    pub now: Timestamp,
}

/// What `task.change` does to a task.
#[derive(Debug)]
pub enum TaskChange {
    Drop,
    Edit { title: Option<String>, scopes: Option<Vec<Scope>> },
    GiveBack { note: Option<String> },
}

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    Refused(Refusal),
    Unavailable(String),
}

pub type Job = (Command, Reply);
/// A decided batch: each reply with what it will say.
type Answers = Vec<(Reply, Result<Answer, Failure>)>;

/// Where a command's answer goes. A command is answered once what it changed is on disk, unless it asked to
/// be told early (a grant the hub must confirm too): then it gets its answer once committed and `durable`
/// once on disk, so the hub's confirmation and the log sync run side by side. Its caller still answers its
/// client only after both.
pub struct Reply {
    answer: oneshot::Sender<Result<Answer, Failure>>,
    durable: Option<oneshot::Sender<Result<(), Failure>>>,
}

impl Reply {
    /// Answers now: nothing it changed waits for the disk.
    fn finish(self, answer: Result<Answer, Failure>) {
        let _ = self.answer.send(answer);
        if let Some(durable) = self.durable {
            let _ = durable.send(Ok(()));
        }
    }

    fn fail(self, failure: Failure) {
        let _ = self.answer.send(Err(failure));
    }

    /// Its batch is committed and waits for a sync: an early reply is told its answer now.
    fn committed(self, answer: Result<Answer, Failure>) -> OnSync {
        match self.durable {
            Some(durable) => {
                let _ = self.answer.send(answer);
                OnSync::Durable(durable)
            }
            None => OnSync::Answer(self.answer, Box::new(answer)),
        }
    }
}

/// What a sync of the log finishes: an answer to give, or an early answer's `durable` to tell.
enum OnSync {
    // Boxed: an answer is large beside a `durable`.
    Answer(oneshot::Sender<Result<Answer, Failure>>, Box<Result<Answer, Failure>>),
    Durable(oneshot::Sender<Result<(), Failure>>),
}

impl OnSync {
    fn synced(self) {
        match self {
            OnSync::Answer(reply, answer) => {
                let _ = reply.send(*answer);
            }
            OnSync::Durable(durable) => {
                let _ = durable.send(Ok(()));
            }
        }
    }

    fn failed(self, message: String) {
        match self {
            OnSync::Answer(reply, _) => {
                let _ = reply.send(Err(Failure::Unavailable(message)));
            }
            OnSync::Durable(durable) => {
                let _ = durable.send(Err(Failure::Unavailable(message)));
            }
        }
    }
}

/// The current instant.
pub fn now() -> Timestamp {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
}

/// The state owner's task: its inbox, book and store.
pub struct StateOwner {
    inbox: UnboundedReceiver<Job>,
    book: ClaimBook,
    store: Store,
    policy: Policy,
    keep_ended: Duration,
    common_dir: PathBuf,
    stall: (Duration, Duration),
    /// A session no hook started ends after this long without acting (and without a live claim).
    idle_sessions: Duration,
    /// Committed batches that wait for a log sync, oldest first, each with the number of its sync.
    unanswered: VecDeque<(u64, Vec<OnSync>)>,
    /// Log syncs asked for so far, and the newest one finished.
    syncs_asked: u64,
    syncs_done: u64,
    /// Started at the first sync.
    syncer: Option<Syncer>,
}

impl StateOwner {
    /// Opens the store and rebuilds the book; expiries that fell due while no sidecar ran are recorded now.
    pub fn open(
        common_dir: PathBuf,
        config: &crate::config::Config,
        inbox: UnboundedReceiver<Job>,
    ) -> Result<StateOwner, StoreError> {
        let db_path = common_dir.join("lanes").join("state.db");
        let policy = config.policy();
        let mut store = Store::open(&db_path, config.durability)?;
        let mut book = ClaimBook::restore(policy.clone(), store.load()?);
        book.expire_due(now());
        if store.commit(&book.take_events(), book.epoch(), book.next_id())? == Commit::NeedsSync {
            store.wal_sync()?.sync()?;
        }
        Ok(StateOwner {
            inbox,
            book,
            store,
            policy,
            keep_ended: config.keep_ended_sessions,
            common_dir,
            stall: (config.stall_flag_after, config.stall_offer_after),
            idle_sessions: config.end_idle_sessions,
            unanswered: VecDeque::new(),
            syncs_asked: 0,
            syncs_done: 0,
            syncer: None,
        })
    }

    /// How many claims the book holds (for start-up logging).
    pub fn claim_count(&self) -> usize {
        self.book.claims().count()
    }

    /// Serves commands until every sender is gone.
    pub async fn run(mut self) {
        let mut last_worktree_sweep = std::time::Instant::now();
        // Short stall periods (tests, small teams) get a sweep often enough to honour them.
        let sweep = WORKTREE_SWEEP.min(self.stall.0 / 2).max(Duration::from_millis(200));
        loop {
            let wait = self
                .book
                .next_deadline()
                .map_or(sweep, |t| Duration::from_millis(t.0.saturating_sub(now().0)).min(sweep));
            let first = tokio::select! {
                job = self.inbox.recv() => match job {
                    Some(job) => Some(job),
                    None => return,
                },
                synced = next_sync(&mut self.syncer) => {
                    self.synced(synced);
                    continue;
                }
                () = tokio::time::sleep(wait.max(Duration::from_millis(1))) => None,
            };
            if first.is_some() {
                // Let connections that are ready submit too, so they share this batch's commit.
                tokio::task::yield_now().await;
            }
            let mut batch: Vec<Job> = first.into_iter().collect();
            while batch.len() < MAX_BATCH {
                match self.inbox.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let now = now();
            self.book.expire_due(now);
            if last_worktree_sweep.elapsed() >= sweep {
                last_worktree_sweep = std::time::Instant::now();
                self.drop_removed_worktrees(now);
                self.prune_ended_sessions(now);
                self.book.end_idle_sessions(self.idle_sessions, now);
                self.book.supervise(now, self.stall.0, self.stall.1);
            }
            let (replies, commands): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|(command, reply)| (reply, command)).unzip();
            // A bug that panics while deciding must not take the state owner down with it: the batch is
            // answered with an error and the book is rebuilt from the store, which holds only committed state.
            let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                commands.into_iter().map(|command| self.decide(command, now)).collect::<Vec<_>>()
            }));
            let Ok(decisions) = decided else {
                tracing::error!("a request panicked the state owner; its batch is refused and the state reloaded");
                self.book.take_events();
                self.reload();
                for reply in replies {
                    reply.fail(Failure::Unavailable("internal error in the sidecar; see its log".into()));
                }
                continue;
            };
            let answers: Vec<_> = replies.into_iter().zip(decisions).collect();
            let events = self.book.take_events();
            match self.store.commit(&events, self.book.epoch(), self.book.next_id()) {
                Ok(commit) => self.answer_when_durable(commit, answers).await,
                Err(e) => {
                    tracing::error!("failed to commit {} events: {e}", events.len());
                    for (reply, _) in answers {
                        reply.fail(Failure::Unavailable(format!("the sidecar could not save the change: {e}")));
                    }
                    self.reload();
                }
            }
        }
    }

    fn decide(&mut self, command: Command, now: Timestamp) -> Result<Answer, Failure> {
        let book = &mut self.book;
        if let Some(session) = command.session() {
            book.seen(session, now);
        }
        let answer = match command {
            Command::Acquire(request) => Answer::Granted(book.acquire(request, now).map_err(Failure::Refused)?),
            Command::Release { who, ids, all, epoch } => {
                Answer::Released(book.release(&who, &ids, all, epoch, now).map_err(Failure::Refused)?)
            }
            Command::TakeBack { who, id, epoch, reason } => {
                book.take_back(&who, id, epoch, reason, now).map_err(Failure::Refused)?;
                Answer::Released(vec![id])
            }
            Command::Renew { who, id, ttl, epoch } => {
                Answer::Claim(book.renew(&who, id, ttl, epoch, now).map_err(Failure::Refused)?)
            }
            Command::Handoff { who, id, to, epoch } => {
                Answer::Claim(book.handoff(&who, id, to, epoch, now).map_err(Failure::Refused)?)
            }
            Command::Check { who, worktree, scopes } => Answer::Holders(book.holders(&who, &worktree, &scopes, now)),
            Command::OwnHoldings { who, scopes } => Answer::Claims(book.own_holdings(&who, &scopes, now)),
            Command::Wait { who, worktree, claim, scopes } => {
                let conflicts = match claim {
                    Some(id) => {
                        let held = book.claim(id).filter(|c| c.expires_at > now).ok_or_else(|| {
                            Failure::Refused(Refusal::new(RefusalCode::NotFound, format!("no live claim {id}")))
                        })?;
                        let scopes = held.scopes.clone();
                        book.holders(&who, &worktree, &scopes, now).into_iter().filter(|c| c.claim_id == id).collect()
                    }
                    None => book.holders(&who, &worktree, &scopes, now),
                };
                book.wait_for(&who, &conflicts, now).map_err(Failure::Refused)?;
                Answer::Holders(conflicts)
            }
            Command::Ensure(request) => Answer::Ensured(book.ensure(request, now).map_err(Failure::Refused)?),
            Command::EnsureHeld(request) => Answer::Held(book.ensure_held(&request, now).map_err(Failure::Refused)?),
            Command::SessionStart { session, info } => {
                book.start_session(&session, info, now);
                let (pending, live): (Vec<Claim>, Vec<Claim>) =
                    live_claims(book, now).into_iter().partition(|c| c.pending.is_some());
                let mut others: Vec<(String, Session, Vec<Claim>)> = book
                    .sessions()
                    .filter(|(id, s)| s.live && *id != session)
                    .map(|(id, s)| {
                        let claims: Vec<Claim> = live.iter().filter(|c| c.holder.session == id).cloned().collect();
                        (id.to_owned(), s.clone(), claims)
                    })
                    .filter(|(_, s, claims)| {
                        !claims.is_empty() || now.0.saturating_sub(s.last_seen.0) < RECENT.as_millis() as u64
                    })
                    .collect();
                others.sort_by(|a, b| a.0.cmp(&b.0));
                let own_claims = live.into_iter().filter(|c| c.holder.session == session).collect();
                let inbox = book.take_inbox(&session, now);
                Answer::Started(StartSnapshot { others, own_claims, pending, inbox, now })
            }
            Command::SessionEnd { session } => Answer::Released(book.end_session(&session, now)),
            Command::PrincipalEnd { who } => Answer::Released(book.end_principal(&who, now)),
            Command::HeldBy { who } => Answer::Claims(book.held_claims(&who)),
            Command::ReleasePending { who, ids } => Answer::Released(book.release_pending(&who, &ids, now)),
            Command::SetWork { root, work: Some(work) } => Answer::Released(book.set_worktree_work(&root, work, now)),
            Command::Work { root } => Answer::Work(book.worktree_work(&root).cloned()),
            Command::SetWork { root, work: None } => {
                book.forget_worktree_work(&root);
                Answer::Released(Vec::new())
            }
            Command::Activity { who, worktree, files, turn, deliver, prompt } => {
                let renewed = book.refresh_all(&who, now).len();
                if let Some(prompt) = prompt.filter(|p| !p.trim().is_empty()) {
                    book.record_prompt(&who.session, &prompt, now);
                }
                book.touch(&who, files, now);
                if turn {
                    book.end_turn(&who.session, now);
                }
                let inbox = if deliver { book.take_inbox(&who.session, now) } else { Vec::new() };
                let mut neighbours: Vec<String> = book
                    .sessions()
                    .filter(|(id, s)| s.live && *id != who.session && worktree.is_some() && s.info.worktree == worktree)
                    .map(|(id, _)| id.to_owned())
                    .collect();
                neighbours.sort();
                let bound = who
                    .agent
                    .as_deref()
                    .and_then(|agent| book.agent_worktrees(Some(&who.session), Some(agent)).into_iter().next())
                    .map(|w| w.path);
                Answer::Activity { renewed, inbox, neighbours, bound }
            }
            Command::Send { from, to, text } => {
                Answer::Messages(book.send_message(&from, &to, &text, now).map_err(Failure::Refused)?)
            }
            Command::Inbox { session } => Answer::Messages(book.take_inbox(&session, now)),
            Command::ReportShellEdit { editor, root, path, conflicts } => {
                Answer::Messages(book.report_shell_edit(&editor, &root, &path, &conflicts, now))
            }
            Command::RecordLanding { owner, branch, outcome, detail } => {
                book.record_landing(&owner, &branch, &outcome, &detail, now);
                Answer::Recorded
            }
            Command::Receive { messages } => Answer::Messages(
                messages.iter().filter_map(|(from, to, text)| book.receive_message(from, to, text, now)).collect(),
            ),
            Command::LastPrompt { session } => Answer::Prompt(book.last_prompt(&session).map(str::to_owned)),
            Command::RecordCheckpoint(checkpoint) => {
                book.record_checkpoint(checkpoint);
                Answer::Recorded
            }
            Command::Checkpoints { session, limit } => Answer::Checkpoints(
                self.store.checkpoints(session.as_deref(), limit).map_err(|e| Failure::Unavailable(e.to_string()))?,
            ),
            Command::AddAgentWorktree(worktree) => {
                book.add_agent_worktree(worktree, now);
                Answer::Recorded
            }
            Command::AgentWorktrees { session, agent } => {
                Answer::AgentWorktrees(book.agent_worktrees(session.as_deref(), agent.as_deref()))
            }
            Command::RemoveAgentWorktree { path } => {
                book.remove_agent_worktree(&path, now);
                Answer::Recorded
            }
            Command::TaskAdd { title, after, scopes } => {
                Answer::Task(book.add_task(&title, after, scopes, now).map_err(Failure::Refused)?)
            }
            Command::Tasks => Answer::Tasks(tasks_with_readiness(book)),
            Command::TaskNext { who, worktree } => {
                let (task, grant) = book.next_task(&who, &worktree, now).map_err(Failure::Refused)?;
                Answer::Taken(task, grant)
            }
            Command::TaskDone { who, task } => {
                Answer::Task(book.finish_task(&who, task, now).map_err(Failure::Refused)?)
            }
            Command::TaskChange { who, task, change } => Answer::Task(
                match change {
                    TaskChange::Drop => book.drop_task(&who, task, now),
                    TaskChange::Edit { title, scopes } => book.edit_task(task, title.as_deref(), scopes, now),
                    TaskChange::GiveBack { note } => book.give_back_task(&who, task, note, now),
                }
                .map_err(Failure::Refused)?,
            ),
            Command::Stamp { session, files, since } => {
                let sessions = match session {
                    Some(session) => vec![session],
                    None => self.store.sessions_touching(&files, since).map_err(unavailable)?,
                };
                let book = &self.book;
                Answer::Stamp(
                    sessions.into_iter().map(|s| (s.clone(), book.last_checkpoint(&s).map(str::to_owned))).collect(),
                )
            }
            Command::RecordCommit { commit, sessions, checkpoint, rewritten_from } => {
                let (sessions, checkpoint) = match (&rewritten_from, sessions.is_empty()) {
                    (Some(old), true) => {
                        self.store.commit_record(old).map_err(unavailable)?.unwrap_or((sessions, checkpoint))
                    }
                    _ => (sessions, checkpoint),
                };
                if !sessions.is_empty() {
                    self.book.record_commit(commit, sessions, checkpoint, rewritten_from, now);
                }
                Answer::Recorded
            }
            Command::Explain { commit, sessions } => {
                let sessions = if sessions.is_empty() {
                    self.store.commit_record(&commit).map_err(unavailable)?.map(|(s, _)| s).unwrap_or_default()
                } else {
                    sessions
                };
                let mut stories = Vec::new();
                for session in sessions {
                    let info = self.book.sessions().find(|(id, _)| *id == session).map(|(_, s)| s.info.clone());
                    let mut checkpoints = self.store.checkpoints(Some(&session), 1000).map_err(unavailable)?;
                    checkpoints.reverse();
                    let events = self.store.session_events(&session, 10_000).map_err(unavailable)?;
                    stories.push(SessionStory { session, info: info.unwrap_or_default(), checkpoints, events });
                }
                Answer::Explained(stories)
            }
            Command::FindCheckpoint { prefix } => Answer::Checkpoints(
                self.store.checkpoints_matching(&prefix).map_err(|e| Failure::Unavailable(e.to_string()))?,
            ),
            Command::Status => {
                let claims = live_claims(book, now);
                let mut sessions: Vec<SessionLine> = book
                    .sessions()
                    .map(|(id, s)| SessionLine {
                        id: id.to_owned(),
                        session: s.clone(),
                        unread: book.unread(id),
                        last_checkpoint: book.last_checkpoint(id).map(str::to_owned),
                        last_prompt: book.last_prompt(id).map(str::to_owned),
                    })
                    .collect();
                sessions.sort_by(|a, b| a.id.cmp(&b.id));
                let tasks = tasks_with_readiness(book);
                Answer::Status(StatusSnapshot {
                    claims,
                    sessions,
                    tasks,
                    epoch: book.epoch(),
                    next_claim_id: book.next_id(),
                    now,
                })
            }
            Command::Events { since, limit } => Answer::Events(
                self.store
                    .events_since(since, limit)
                    .map_err(|e| Failure::Unavailable(format!("could not read the event log: {e}")))?,
            ),
        };
        Ok(answer)
    }

    /// Forgets sessions that ended longer ago than the retention period, and deletes their checkpoint refs
    /// and private indexes (off the async thread).
    fn prune_ended_sessions(&mut self, now: Timestamp) {
        let cutoff = Timestamp(now.0.saturating_sub(self.keep_ended.as_millis() as u64));
        let pruned = self.book.prune_ended_sessions(cutoff, now);
        if pruned.is_empty() {
            return;
        }
        let common_dir = self.common_dir.clone();
        tokio::task::spawn_blocking(move || {
            for session in pruned {
                let _ = std::process::Command::new("git")
                    .arg("--git-dir")
                    .arg(&common_dir)
                    .args(["update-ref", "-d", &crate::git::checkpoint_ref(&session)])
                    .output();
                let _ = std::fs::remove_file(crate::git::private_index(&common_dir, &session));
            }
        });
    }

    fn drop_removed_worktrees(&mut self, now: Timestamp) {
        let mut roots: Vec<String> = self.book.claims().map(|c| c.worktree.root.clone()).collect();
        roots.sort();
        roots.dedup();
        for root in roots {
            if !PathBuf::from(&root).join(".git").exists() {
                let dropped = self.book.drop_worktree(&root, now);
                tracing::warn!("worktree {root} is gone: dropped {} claims", dropped.len());
            }
        }
    }

    /// Answers a committed batch once the disk holds what it needs: at once if nothing needs a sync, else after
    /// a sync of the log that starts after the commit. Batches that grant are answered in commit order; the
    /// others need not wait for them, since the grants they might see were never answered.
    async fn answer_when_durable(&mut self, commit: Commit, answers: Answers) {
        if commit == Commit::Done {
            for (reply, answer) in answers {
                reply.finish(answer);
            }
            return;
        }
        self.syncs_asked += 1;
        // Only a lone request waits for its sync awake: under load the owner has batches to decide meanwhile,
        // and the CPU it would spin on is the clients'. An early reply's caller waits for the hub, which takes
        // longer than the sync: spinning would only take the CPU the hub's answer needs.
        let alone = answers.len() == 1 && self.unanswered.is_empty() && answers[0].0.durable.is_none();
        let sync = self.syncs_asked;
        self.unanswered.push_back((sync, answers.into_iter().map(|(reply, answer)| reply.committed(answer)).collect()));
        match self.syncer().and_then(|syncer| syncer.ask(sync)) {
            Ok(()) if alone => self.wait_awake().await,
            Ok(()) => {}
            Err(e) => self.synced(Err(e)),
        }
    }

    /// The log syncer thread, started at the first sync.
    fn syncer(&mut self) -> std::io::Result<&Syncer> {
        if self.syncer.is_none() {
            self.syncer = Some(Syncer::spawn(self.store.wal_sync().map_err(std::io::Error::other)?));
        }
        self.syncer.as_ref().ok_or_else(syncer_gone)
    }

    /// Waits for the syncs asked so far without sleeping, while no request comes in, for up to `SYNC_WAIT_AWAKE`.
    /// A thread that sleeps through a sync is woken when the disk answers, and on a virtual machine waking an
    /// idle CPU takes 25–50 µs, a third of the sync; kept busy, the CPU takes the wake-up of the syncer thread
    /// in a few. A request that comes in ends the wait: it is decided while the disk works.
    async fn wait_awake(&mut self) {
        let started = Instant::now();
        while self.syncs_done < self.syncs_asked && self.inbox.is_empty() && started.elapsed() < SYNC_WAIT_AWAKE {
            let Some(syncer) = &mut self.syncer else { return };
            match syncer.done.try_recv() {
                Ok(result) => self.synced(result),
                Err(TryRecvError::Empty) => {
                    // Give the CPU to the syncer thread if it is ready here, then let connections run.
                    std::thread::yield_now();
                    tokio::task::yield_now().await;
                }
                // The owner's loop reports the syncer's end.
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Answers every batch the finished syncs made durable. A failed sync ends the sidecar: the kernel may have
    /// dropped the pages it could not write, so what the disk holds is unknown, and only a restart that reads
    /// the disk again is safe (PostgreSQL learned this as "fsyncgate").
    fn synced(&mut self, result: std::io::Result<u64>) {
        match result {
            Ok(done) => {
                self.syncs_done = self.syncs_done.max(done);
                while self.unanswered.front().is_some_and(|(needs, _)| *needs <= self.syncs_done) {
                    for waiting in self.unanswered.pop_front().into_iter().flat_map(|(_, waiting)| waiting) {
                        waiting.synced();
                    }
                }
            }
            Err(e) => {
                tracing::error!("failed to sync the state database to disk: {e}; exiting so a restart reads it again");
                for waiting in self.unanswered.drain(..).flat_map(|(_, waiting)| waiting) {
                    waiting.failed(format!(
                        "the sidecar could not write its state to disk ({e}) and exits; the next command restarts it"
                    ));
                }
                std::process::exit(1);
            }
        }
    }

    /// After a failed commit (rolled back): the book again as the store has it, through the same connection
    /// (it holds the database's exclusive lock).
    fn reload(&mut self) {
        match self.store.load() {
            Ok(snapshot) => self.book = ClaimBook::restore(self.policy.clone(), snapshot),
            Err(e) => tracing::error!("failed to reload state after a failed commit: {e}"),
        }
    }
}

/// A thread that syncs the write-ahead log while the state owner goes on deciding.
struct Syncer {
    ask: std::sync::mpsc::Sender<u64>,
    done: UnboundedReceiver<std::io::Result<u64>>,
}

impl Syncer {
    fn spawn(wal: WalSync) -> Syncer {
        let (ask, asked) = std::sync::mpsc::channel::<u64>();
        let (finished, done) = tokio::sync::mpsc::unbounded_channel();
        // If the thread cannot start, `ask` fails and the owner treats it as a failed sync.
        let _ = std::thread::Builder::new().name("lanes-log-sync".into()).spawn(move || {
            while let Ok(mut upto) = asked.recv() {
                // One sync covers every commit before it: merge the asks that queued up meanwhile.
                upto = asked.try_iter().fold(upto, u64::max);
                if finished.send(wal.sync().map(|()| upto)).is_err() {
                    return;
                }
            }
        });
        Syncer { ask, done }
    }

    fn ask(&self, sync: u64) -> std::io::Result<()> {
        self.ask.send(sync).map_err(|_| syncer_gone())
    }
}

fn syncer_gone() -> std::io::Error {
    std::io::Error::other("the log syncer thread is gone")
}

/// The next finished sync; never, while no syncer runs.
async fn next_sync(syncer: &mut Option<Syncer>) -> std::io::Result<u64> {
    match syncer {
        Some(syncer) => syncer.done.recv().await.unwrap_or_else(|| Err(syncer_gone())),
        None => std::future::pending().await,
    }
}

/// Every task, with whether it is ready.
fn tasks_with_readiness(book: &ClaimBook) -> Vec<(Task, bool, bool)> {
    book.tasks().map(|t| (t.clone(), book.is_ready(t), book.is_stalled(t.id))).collect()
}

/// Live claims, oldest first.
fn live_claims(book: &ClaimBook, now: Timestamp) -> Vec<Claim> {
    let mut claims: Vec<Claim> = book.claims().filter(|c| c.expires_at > now).cloned().collect();
    claims.sort_by_key(|c| c.id);
    claims
}

/// What lanes recorded of one session, for `lanes explain`.
#[derive(Debug)]
pub struct SessionStory {
    pub session: String,
    pub info: SessionInfo,
    pub checkpoints: Vec<Checkpoint>,
    pub events: Vec<LoggedEvent>,
}

fn unavailable(e: StoreError) -> Failure {
    Failure::Unavailable(format!("the state database failed: {e}"))
}

/// The handlers' side: sends commands to the state owner.
#[derive(Clone, Debug)]
pub struct StateHandle {
    sender: UnboundedSender<Job>,
}

impl StateHandle {
    pub fn new(sender: UnboundedSender<Job>) -> StateHandle {
        StateHandle { sender }
    }

    /// Sends a command and waits for its answer.
    pub async fn ask(&self, command: Command) -> Result<Answer, Failure> {
        self.ask_early(command, false).await.map(|(answer, _)| answer)
    }

    /// Sends a command and waits for its answer; `early`, the answer comes once it is committed, and the
    /// [`Durable`] says when it is on disk (else it comes on disk, and the [`Durable`] is done).
    pub async fn ask_early(&self, command: Command, early: bool) -> Result<(Answer, Durable), Failure> {
        let (answer, answered) = oneshot::channel();
        let (durable, on_disk) = if early {
            let (durable, on_disk) = oneshot::channel();
            (Some(durable), Some(on_disk))
        } else {
            (None, None)
        };
        self.sender.send((command, Reply { answer, durable })).map_err(|_| shutting_down())?;
        let answer = answered.await.map_err(|_| shutting_down())??;
        Ok((answer, Durable(on_disk)))
    }
}

/// When an early answer's change is on disk.
pub struct Durable(Option<oneshot::Receiver<Result<(), Failure>>>);

impl Durable {
    pub async fn wait(self) -> Result<(), Failure> {
        match self.0 {
            Some(on_disk) => on_disk.await.map_err(|_| shutting_down())?,
            None => Ok(()),
        }
    }
}

fn shutting_down() -> Failure {
    Failure::Unavailable("the sidecar is shutting down".into())
}

/// A refusal for an input that names no valid principal or claim.
pub fn invalid(message: impl Into<String>) -> Failure {
    Failure::Refused(Refusal::new(RefusalCode::InvalidArgument, message))
}
