//! The task board: tasks with dependencies (a DAG), a ready set, and `next`, which takes the first ready
//! task and claims its scopes in one step, so racing agents each get a different task. A task whose claim
//! lapses or is released before it is done goes back to the board with its progress note.

use std::collections::BTreeMap;

use crate::book::{AcquireRequest, ClaimBook, ClaimId, Event, Grant, Mode, Principal, Refusal, RefusalCode, Worktree};
use crate::scope::Scope;
use crate::time::Timestamp;

/// The longest task title accepted, in bytes.
pub const MAX_TITLE_BYTES: usize = 500;

/// Where a task stands. `Open` tasks whose dependencies are all done are *ready*.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    /// Not taken.
    Open,
    /// Taken by a principal (holding a claim on its scopes, if it has any).
    Taken,
    /// Finished.
    Done,
    /// Taken off the board (`lanes task drop`): never ready, never taken.
    Dropped,
}

/// One task of the board.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// Its id.
    pub id: u64,
    /// What to do.
    pub title: String,
    /// Where it stands.
    pub status: TaskStatus,
    /// Tasks that must be done first.
    pub after: Vec<u64>,
    /// What taking it claims.
    pub scopes: Vec<Scope>,
    /// Who took it.
    pub holder: Option<Principal>,
    /// The claim taken with it.
    pub claim: Option<ClaimId>,
    /// The progress note its last holder left.
    pub note: Option<String>,
}

/// The board's state inside the book.
#[derive(Debug, Default)]
pub(crate) struct Board {
    pub(crate) tasks: BTreeMap<u64, Task>,
    pub(crate) next_id: u64,
    /// Taken tasks flagged as stalled (kept in memory: a restart flags them again if still idle).
    stalled: std::collections::BTreeSet<u64>,
}

impl ClaimBook {
    /// Adds a task. Its dependencies must exist; one that would close a cycle is refused as `cycle`.
    pub fn add_task(
        &mut self,
        title: &str,
        after: Vec<u64>,
        scopes: Vec<Scope>,
        now: Timestamp,
    ) -> Result<Task, Refusal> {
        let title = crate::redact::redact(title.trim());
        let title = title.as_str();
        if title.is_empty() || title.len() > MAX_TITLE_BYTES {
            return Err(Refusal::new(
                RefusalCode::InvalidArgument,
                format!("a task needs a title of 1 to {MAX_TITLE_BYTES} bytes"),
            ));
        }
        let id = self.board.next_id.max(1);
        for dependency in &after {
            if *dependency == id || self.would_cycle(id, *dependency) {
                return Err(Refusal::new(
                    RefusalCode::Cycle,
                    format!("task {id} cannot wait for task {dependency}: that closes a cycle"),
                ));
            }
            if !self.board.tasks.contains_key(dependency) {
                return Err(Refusal::new(
                    RefusalCode::NotFound,
                    format!("no task {dependency}: `lanes task list` shows the board"),
                ));
            }
        }
        let mut after = after;
        after.sort_unstable();
        after.dedup();
        let task = Task {
            id,
            title: title.to_owned(),
            status: TaskStatus::Open,
            after,
            scopes,
            holder: None,
            claim: None,
            note: None,
        };
        self.board.next_id = id + 1;
        self.board.tasks.insert(id, task.clone());
        self.journal.push(Event::TaskChanged { task: task.clone(), at: now });
        Ok(task)
    }

    /// Whether `task` waiting for `dependency` would close a cycle (`dependency` already waits for `task`).
    fn would_cycle(&self, task: u64, dependency: u64) -> bool {
        let mut pending = vec![dependency];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(id) = pending.pop() {
            if id == task {
                return true;
            }
            if seen.insert(id)
                && let Some(t) = self.board.tasks.get(&id)
            {
                pending.extend(&t.after);
            }
        }
        false
    }

    /// Every task, by id.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.board.tasks.values()
    }

    /// One task.
    pub fn task(&self, id: u64) -> Option<&Task> {
        self.board.tasks.get(&id)
    }

    /// Whether a task is open and all its dependencies are done.
    pub fn is_ready(&self, task: &Task) -> bool {
        task.status == TaskStatus::Open
            && task.after.iter().all(|d| self.board.tasks.get(d).is_some_and(|t| t.status == TaskStatus::Done))
    }

    /// Takes the first ready task whose scopes `who` can claim, and claims them, in one step.
    pub fn next_task(
        &mut self,
        who: &Principal,
        worktree: &Worktree,
        now: Timestamp,
    ) -> Result<(Task, Option<Grant>), Refusal> {
        self.expire_due(now);
        let ready: Vec<u64> = self.board.tasks.values().filter(|t| self.is_ready(t)).map(|t| t.id).collect();
        let mut blocked = Vec::new();
        for id in ready {
            let scopes = self.board.tasks[&id].scopes.clone();
            let grant = if scopes.is_empty() {
                None
            } else {
                let request = AcquireRequest {
                    holder: who.clone(),
                    worktree: worktree.clone(),
                    scopes,
                    mode: Mode::Exclusive,
                    ttl: None,
                    note: self.board.tasks[&id].note.clone(),
                    task: Some(id.to_string()),
                };
                match self.acquire(request, now) {
                    Ok(grant) => Some(grant),
                    Err(refusal) if refusal.code == RefusalCode::Conflict => {
                        blocked.push((id, refusal.conflicts));
                        continue;
                    }
                    Err(refusal) => return Err(refusal),
                }
            };
            let task = self.board.tasks.get_mut(&id).expect("ready tasks exist");
            task.status = TaskStatus::Taken;
            task.holder = Some(who.clone());
            task.claim = grant.as_ref().map(|g| g.claim.id);
            let task = task.clone();
            self.journal.push(Event::TaskChanged { task: task.clone(), at: now });
            return Ok((task, grant));
        }
        let why = if blocked.is_empty() {
            "no task is ready: every open task waits for another, or the board is empty".to_owned()
        } else {
            let held: Vec<String> = blocked
                .iter()
                .map(|(id, conflicts)| {
                    let holders: Vec<String> =
                        conflicts.iter().map(|c| crate::book::describe_conflict(c, now)).collect();
                    format!("task {id} needs files held by {}", holders.join(", "))
                })
                .collect();
            format!("the ready tasks touch files others hold: {}; try again later", held.join("; "))
        };
        let conflicts = blocked.into_iter().flat_map(|(_, conflicts)| conflicts).collect();
        Err(Refusal { conflicts, ..Refusal::new(RefusalCode::NotFound, why) })
    }

    /// Marks a taken task done and releases its claim.
    pub fn finish_task(&mut self, who: &Principal, id: u64, now: Timestamp) -> Result<Task, Refusal> {
        if self.board.tasks.get(&id).is_some_and(|t| t.status == TaskStatus::Done) {
            return Err(Refusal::new(RefusalCode::InvalidArgument, format!("task {id} is already done")));
        }
        let task = self.taken_by(who, id)?;
        let claim = task.claim;
        let task = self.board.tasks.get_mut(&id).expect("checked above");
        task.status = TaskStatus::Done;
        task.claim = None;
        self.board.stalled.remove(&id);
        let task = task.clone();
        self.journal.push(Event::TaskChanged { task: task.clone(), at: now });
        if let Some(claim) = claim {
            let holder = task.holder.clone().expect("a taken task has a holder");
            let _ = self.release(&holder, &[claim], false, None, now);
        }
        Ok(task)
    }

    /// The task `who` took, or why `who` may not act on it.
    fn taken_by(&self, who: &Principal, id: u64) -> Result<&Task, Refusal> {
        let task =
            self.board.tasks.get(&id).ok_or_else(|| Refusal::new(RefusalCode::NotFound, format!("no task {id}")))?;
        match (&task.status, &task.holder) {
            (TaskStatus::Taken, Some(holder)) if who.acts_for(holder) => Ok(task),
            (TaskStatus::Taken, Some(holder)) => {
                Err(Refusal::new(RefusalCode::NotHolder, format!("task {id} is taken by {holder}, not {who}")))
            }
            _ => Err(Refusal::new(
                RefusalCode::InvalidArgument,
                format!("task {id} is not taken: `lanes task next` takes it"),
            )),
        }
    }

    /// Gives a taken task back to the board (`lanes task give-back`), releasing its claim and keeping `note`
    /// for whoever takes it next.
    pub fn give_back_task(
        &mut self,
        who: &Principal,
        id: u64,
        note: Option<String>,
        now: Timestamp,
    ) -> Result<Task, Refusal> {
        let claim = self.taken_by(who, id)?.claim;
        let note = note.map(|n| crate::redact::redact(&n));
        match claim {
            Some(claim) => {
                self.release(who, &[claim], false, None, now)?;
            }
            None => self.reopen(id, now),
        }
        let task = self.board.tasks.get_mut(&id).expect("checked above");
        if note.is_some() {
            task.note = note;
            let task = task.clone();
            self.journal.push(Event::TaskChanged { task, at: now });
        }
        self.board.stalled.remove(&id);
        Ok(self.board.tasks[&id].clone())
    }

    fn reopen(&mut self, id: u64, now: Timestamp) {
        if let Some(task) = self.board.tasks.get_mut(&id) {
            task.status = TaskStatus::Open;
            task.holder = None;
            task.claim = None;
            let task = task.clone();
            self.journal.push(Event::TaskChanged { task, at: now });
        }
    }

    /// Changes an open task's title or scopes (`lanes task edit`).
    pub fn edit_task(
        &mut self,
        id: u64,
        title: Option<&str>,
        scopes: Option<Vec<Scope>>,
        now: Timestamp,
    ) -> Result<Task, Refusal> {
        let task =
            self.board.tasks.get(&id).ok_or_else(|| Refusal::new(RefusalCode::NotFound, format!("no task {id}")))?;
        if task.status != TaskStatus::Open {
            return Err(Refusal::new(
                RefusalCode::InvalidArgument,
                format!("task {id} is not open: only an open task can be edited (give it back first)"),
            ));
        }
        let title = title.map(|t| crate::redact::redact(t.trim()));
        if title.as_ref().is_some_and(|t| t.is_empty() || t.len() > MAX_TITLE_BYTES) {
            return Err(Refusal::new(
                RefusalCode::InvalidArgument,
                format!("a task title is 1 to {MAX_TITLE_BYTES} bytes"),
            ));
        }
        let task = self.board.tasks.get_mut(&id).expect("checked above");
        if let Some(title) = title {
            task.title = title;
        }
        if let Some(scopes) = scopes {
            task.scopes = scopes;
        }
        let task = task.clone();
        self.journal.push(Event::TaskChanged { task: task.clone(), at: now });
        Ok(task)
    }

    /// Takes a task off the board (`lanes task drop`): an open one, or one `who` took (its claim is released).
    /// A task others wait for is refused, naming them.
    pub fn drop_task(&mut self, who: &Principal, id: u64, now: Timestamp) -> Result<Task, Refusal> {
        let task =
            self.board.tasks.get(&id).ok_or_else(|| Refusal::new(RefusalCode::NotFound, format!("no task {id}")))?;
        let waiting: Vec<String> = self
            .board
            .tasks
            .values()
            .filter(|t| t.after.contains(&id) && !matches!(t.status, TaskStatus::Done | TaskStatus::Dropped))
            .map(|t| t.id.to_string())
            .collect();
        if !waiting.is_empty() {
            return Err(Refusal::new(
                RefusalCode::InvalidArgument,
                format!("task {id} is waited for by task {}: drop or edit those first", waiting.join(", ")),
            ));
        }
        match task.status {
            TaskStatus::Taken => {
                let claim = self.taken_by(who, id)?.claim;
                if let Some(claim) = claim {
                    self.release(who, &[claim], false, None, now)?;
                }
            }
            TaskStatus::Done | TaskStatus::Dropped => {
                return Err(Refusal::new(RefusalCode::InvalidArgument, format!("task {id} is already off the board")));
            }
            TaskStatus::Open => {}
        }
        let task = self.board.tasks.get_mut(&id).expect("checked above");
        task.status = TaskStatus::Dropped;
        task.holder = None;
        task.claim = None;
        let task = task.clone();
        self.board.stalled.remove(&id);
        self.journal.push(Event::TaskChanged { task: task.clone(), at: now });
        Ok(task)
    }

    /// Puts a task back on the board when the claim taken with it ends before the task is done.
    pub(crate) fn reopen_task_of(&mut self, claim: ClaimId, note: Option<String>, now: Timestamp) {
        let Some(task) =
            self.board.tasks.values_mut().find(|t| t.status == TaskStatus::Taken && t.claim == Some(claim))
        else {
            return;
        };
        task.status = TaskStatus::Open;
        task.holder = None;
        task.claim = None;
        if note.is_some() {
            task.note = note;
        }
        let task = task.clone();
        self.journal.push(Event::TaskChanged { task, at: now });
    }

    /// Whether a taken task has been flagged as stalled.
    pub fn is_stalled(&self, id: u64) -> bool {
        self.board.stalled.contains(&id)
    }

    /// The stall supervisor: a taken task whose holder's session has shown no activity (no hook event, note
    /// or request) for `flag_after` is flagged to its holder and on the board; after `offer_after` it goes
    /// back to the board for others, with the holder's progress note and last checkpoint in its note, and its
    /// claim is released.
    pub fn supervise(&mut self, now: Timestamp, flag_after: std::time::Duration, offer_after: std::time::Duration) {
        let taken: Vec<(u64, Principal)> = self
            .board
            .tasks
            .values()
            .filter(|t| t.status == TaskStatus::Taken)
            .filter_map(|t| t.holder.clone().map(|h| (t.id, h)))
            .collect();
        for (id, holder) in taken {
            let last_seen =
                self.sessions().find(|(s, _)| *s == holder.session).map_or(Timestamp(0), |(_, s)| s.last_seen);
            let idle = std::time::Duration::from_millis(now.0.saturating_sub(last_seen.0));
            if idle >= offer_after {
                let task = self.board.tasks.get(&id).cloned().expect("listed above");
                let previous =
                    task.claim.and_then(|c| self.claim(c)).and_then(|c| c.note.clone()).or(task.note.clone());
                let checkpoint = self.last_checkpoint(&holder.session).map(str::to_owned);
                let note = format!(
                    "stalled under {holder} (no progress for {}); last checkpoint: {}; their note: {}",
                    crate::time::human_duration(idle),
                    checkpoint.as_deref().unwrap_or("none"),
                    previous.as_deref().unwrap_or("none")
                );
                self.board.stalled.remove(&id);
                if let Some(claim) = task.claim {
                    let _ = self.release(&holder, &[claim], false, None, now);
                }
                let task = self.board.tasks.get_mut(&id).expect("listed above");
                task.status = TaskStatus::Open;
                task.holder = None;
                task.claim = None;
                task.note = Some(note);
                let task = task.clone();
                self.journal.push(Event::TaskChanged { task, at: now });
                let text = format!(
                    "task {id} had no progress for {}; it is back on the board for others",
                    crate::time::human_duration(idle)
                );
                self.queue_message(crate::messages::SYSTEM_SENDER, &holder.session, text, now);
            } else if idle >= flag_after && self.board.stalled.insert(id) {
                let text = format!(
                    "task {id} has had no progress for {}: leave a note, finish it (`lanes task done {id}`) or it goes back to the board",
                    crate::time::human_duration(idle)
                );
                self.queue_message(crate::messages::SYSTEM_SENDER, &holder.session, text, now);
            }
        }
    }

    pub(crate) fn restore_tasks(&mut self, tasks: Vec<Task>) {
        for task in tasks {
            self.board.next_id = self.board.next_id.max(task.id + 1);
            self.board.tasks.insert(task.id, task);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::Policy;

    fn who(s: &str) -> Principal {
        Principal { session: s.into(), agent: None }
    }

    #[test]
    fn ready_set_next_done_and_lapse() {
        let mut book = ClaimBook::new(Policy::default());
        let now = Timestamp(1);
        let wt = Worktree { root: "/r".into(), git_dir: "/r/.git".into() };
        let a = book.add_task("schema", vec![], vec![Scope::parse("db").expect("scope")], now).expect("add");
        let b = book.add_task("api", vec![a.id], vec![Scope::parse("api").expect("scope")], now).expect("add");
        assert_eq!(book.add_task("x", vec![99], vec![], now).expect_err("missing").code, RefusalCode::NotFound);
        assert!(book.is_ready(&a) && !book.is_ready(&b));
        let (taken, grant) = book.next_task(&who("s1"), &wt, now).expect("next");
        assert_eq!(taken.id, a.id);
        assert!(grant.is_some());
        assert_eq!(book.next_task(&who("s2"), &wt, now).expect_err("none ready").code, RefusalCode::NotFound);
        assert_eq!(book.finish_task(&who("s2"), a.id, now).expect_err("not holder").code, RefusalCode::NotHolder);
        book.finish_task(&who("s1"), a.id, now).expect("done");
        assert!(book.claims().next().is_none(), "finishing releases the task's claim");
        let (taken, _) = book.next_task(&who("s2"), &wt, now).expect("next");
        assert_eq!(taken.id, b.id);
        // The holder's claim lapses: the task is back on the board.
        book.expire_due(Timestamp(u64::MAX / 2));
        assert!(book.is_ready(book.task(b.id).expect("task")));
    }
}
