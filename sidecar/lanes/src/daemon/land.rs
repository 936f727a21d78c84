//! The landing queue (DESIGN.md §11): branches queued by `lanes land` are brought onto their base one at a time,
//! in queue order, in a scratch worktree of the sidecar's own (`<git-common-dir>/lanes/land/scratch`, never a
//! user's checkout, index or stash): rebased (or merged, or squashed) onto the base as it is now, tested, and
//! only then is the base moved, with a compare-and-swap `git update-ref`. Anything else (a conflict, red tests,
//! a refusing hook, a timeout) blocks the entry and leaves the base and every commit of the branch as they were.
//!
//! The queue is a versioned JSON file next to the state database, replaced atomically (write, fsync, rename) on
//! every change, so a sidecar killed mid-landing finds its queue intact and lands the cut-short entry again from
//! the start; the base is then either the old commit or the new one, never anything between.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use lanes_proto::LandEntryView;
use serde::{Deserialize, Serialize};

use crate::config::{Config, LandStrategy};
use crate::daemon::rpc::{Context, rfc3339};
use crate::daemon::state::{Answer, Command, now};

/// The stored queue's format version.
const QUEUE_VERSION: u32 = 1;
/// How many landed or blocked entries the queue keeps for `lanes queue`.
const KEEP_FINISHED: usize = 50;
/// How often a landing starts again because the base moved under it before it gives up.
const ATTEMPTS: usize = 5;
/// How much of the test output a blocked entry shows.
const TAIL_LINES: usize = 30;
/// How long a landing waits for git's lock on the base before it gives up.
const LOCK_PATIENCE: Duration = Duration::from_secs(10);
/// The most a `land.log` answer carries.
const LOG_CHUNK: u64 = 64 * 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Queue {
    version: u32,
    next_id: u64,
    entries: Vec<LandEntryView>,
}

/// What `lanes land` asked for, resolved: the branch and where it is checked out.
#[derive(Debug, Clone)]
pub struct Request {
    pub owner: String,
    pub branch: String,
    pub worktree: Option<PathBuf>,
    pub onto: String,
    pub test: Option<String>,
}

/// The queue and how it lands (`[land]`).
pub struct Lander {
    common_dir: PathBuf,
    dir: PathBuf,
    queue: Mutex<Queue>,
    /// Wakes the runner when an entry is queued.
    pub wake: tokio::sync::Notify,
    strategy: LandStrategy,
    test: Option<String>,
    timeout: Duration,
    base: Option<String>,
    /// How many entries land together at most (`[land] batch`).
    batch: usize,
}

/// How one landing ended.
#[derive(Clone, Debug)]
enum Outcome {
    Landed {
        commit: String,
        notes: Vec<String>,
    },
    Blocked {
        reason: String,
        conflicts: Vec<String>,
    },
    /// Not tried on its own (an entry below it in the batch broke the tests): back in the queue.
    Requeue,
}

impl Lander {
    /// Loads the queue; an entry a killed sidecar was landing is queued again, first in line.
    pub fn open(common_dir: &Path, config: &Config) -> Lander {
        let dir = common_dir.join("lanes").join("land");
        let mut queue: Queue = std::fs::read(dir.join("queue.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        for entry in queue.entries.iter_mut().filter(|e| e.state == "landing") {
            entry.state = "queued".to_owned();
            entry.phase = None;
        }
        queue.version = QUEUE_VERSION;
        Lander {
            common_dir: common_dir.to_path_buf(),
            dir,
            queue: Mutex::new(queue),
            wake: tokio::sync::Notify::new(),
            strategy: config.land_strategy,
            test: config.land_test.clone(),
            timeout: config.land_timeout,
            base: config.land_base.clone(),
            batch: config.land_batch,
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the queue so that a crash at any moment leaves either the old file or the new one.
    fn save(&self, queue: &Queue) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("failed to create {}", self.dir.display()))?;
        let path = self.dir.join("queue.json");
        let temporary = self.dir.join("queue.json.tmp");
        let mut file = std::fs::File::create(&temporary).context("failed to write the landing queue")?;
        file.write_all(&serde_json::to_vec_pretty(queue)?)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path).context("failed to replace the landing queue")?;
        Ok(())
    }

    /// The base a landing goes onto when the request names none.
    pub fn default_base(&self, dir: &Path) -> Option<String> {
        self.base.clone().or_else(|| crate::git::base_branch(dir))
    }

    /// The test command an entry runs when the request names none.
    pub fn default_test(&self) -> Option<String> {
        self.test.clone()
    }

    /// Entries waiting or landing, in queue order, then the finished ones, newest first.
    pub fn list(&self) -> Vec<LandEntryView> {
        let queue = self.queue();
        let (mut active, mut finished): (Vec<_>, Vec<_>) =
            queue.entries.iter().cloned().partition(|e| e.state == "queued" || e.state == "landing");
        active.sort_by_key(|e| e.id);
        finished.sort_by_key(|e| std::cmp::Reverse(e.id));
        active.extend(finished);
        active
    }

    /// Queues a branch; a branch already waiting or landing keeps its place. Returns the entry and its position.
    pub fn enqueue(&self, request: Request) -> Result<(LandEntryView, Option<usize>)> {
        let mut queue = self.queue();
        let waiting = |e: &&LandEntryView| e.state == "queued" || e.state == "landing";
        let existing = queue.entries.iter().filter(waiting).find(|e| e.branch == request.branch).cloned();
        let entry = match existing {
            Some(entry) => entry,
            None => {
                queue.next_id += 1;
                let entry = LandEntryView {
                    id: queue.next_id,
                    state: "queued".to_owned(),
                    branch: request.branch,
                    worktree: request.worktree.map(|w| w.to_string_lossy().into_owned()),
                    onto: request.onto,
                    test: request.test,
                    owner: request.owner,
                    queued_at: rfc3339(now()),
                    finished_at: None,
                    phase: None,
                    result: None,
                    conflicts: Vec::new(),
                    landed: None,
                };
                queue.entries.push(entry.clone());
                prune_finished(&mut queue);
                self.save(&queue)?;
                entry
            }
        };
        let mut ids: Vec<u64> = queue.entries.iter().filter(waiting).map(|e| e.id).collect();
        ids.sort_unstable();
        let position = ids.iter().position(|id| *id == entry.id).map(|p| p + 1);
        drop(queue);
        self.wake.notify_one();
        Ok((entry, position))
    }

    /// The output of entry `id`'s landing from `offset`, and its state.
    pub fn log(&self, id: u64, offset: u64) -> Option<(String, u64, String)> {
        let state = self.queue().entries.iter().find(|e| e.id == id)?.state.clone();
        let bytes = std::fs::read(self.log_path(id)).unwrap_or_default();
        let start = usize::try_from(offset.min(bytes.len() as u64)).unwrap_or(0);
        let end = usize::try_from((offset + LOG_CHUNK).min(bytes.len() as u64)).unwrap_or(bytes.len());
        Some((String::from_utf8_lossy(&bytes[start..end]).into_owned(), end as u64, state))
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    fn scratch(&self) -> PathBuf {
        self.dir.join("scratch")
    }

    /// Changes entry `id` and saves the queue.
    fn update(&self, id: u64, change: impl FnOnce(&mut LandEntryView)) {
        let mut queue = self.queue();
        if let Some(entry) = queue.entries.iter_mut().find(|e| e.id == id) {
            change(entry);
        }
        if let Err(e) = self.save(&queue) {
            tracing::error!("the landing queue could not be saved: {e:#}");
        }
    }

    /// The next entries to land together: the first one queued, and after it (up to `[land] batch`) the queued
    /// ones with the same base and test command, in queue order.
    fn next_batch(&self) -> Vec<LandEntryView> {
        let queue = self.queue();
        let mut queued: Vec<&LandEntryView> = queue.entries.iter().filter(|e| e.state == "queued").collect();
        queued.sort_by_key(|e| e.id);
        let Some(first) = queued.first().copied() else { return Vec::new() };
        queued
            .into_iter()
            .filter(|e| e.onto == first.onto && e.test == first.test)
            .take(self.batch.max(1))
            .cloned()
            .collect()
    }
}

fn prune_finished(queue: &mut Queue) {
    let finished = queue.entries.iter().filter(|e| e.state == "landed" || e.state == "blocked").count();
    let mut drop = finished.saturating_sub(KEEP_FINISHED);
    queue.entries.retain(|e| {
        let old = drop > 0 && (e.state == "landed" || e.state == "blocked");
        if old {
            drop -= 1;
        }
        !old
    });
}

/// Lands queued entries one at a time, forever.
pub async fn run(cx: Arc<Context>) {
    let lander = Arc::clone(&cx.lander);
    loop {
        let batch = lander.next_batch();
        if batch.is_empty() {
            tokio::select! {
                () = lander.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            continue;
        }
        for entry in &batch {
            lander.update(entry.id, |e| {
                e.state = "landing".to_owned();
                e.phase = Some("rebase".to_owned());
            });
        }
        // Not under the context's git lock: a test run can take minutes, and the landing's git work stays in
        // its own scratch worktree (git's own ref locks keep the base's compare-and-swap atomic).
        let outcomes = {
            let (lander, batch) = (Arc::clone(&lander), batch.clone());
            tokio::task::spawn_blocking(move || lander.land(&batch)).await.unwrap_or_default()
        };
        for entry in &batch {
            let outcome = outcomes.iter().find(|(id, _)| *id == entry.id).map_or_else(
                || blocked("the landing stopped without an answer for this entry".to_owned(), Vec::new()),
                |(_, outcome)| outcome.clone(),
            );
            finish(&cx, entry, outcome).await;
        }
    }
}

/// Records how a landing ended, tells its owner, and tidies up after one that landed.
async fn finish(cx: &Context, entry: &LandEntryView, outcome: Outcome) {
    if matches!(outcome, Outcome::Requeue) {
        cx.lander.update(entry.id, |e| {
            e.state = "queued".to_owned();
            e.phase = None;
        });
        return;
    }
    let (state, detail) = match &outcome {
        Outcome::Landed { commit, notes } => {
            let short: String = commit.chars().take(12).collect();
            let mut detail = format!("landed on {} as {short}", entry.onto);
            for note in notes {
                detail.push_str("; ");
                detail.push_str(note);
            }
            ("landed", detail)
        }
        Outcome::Blocked { reason, .. } => ("blocked", reason.clone()),
        Outcome::Requeue => return,
    };
    cx.lander.update(entry.id, |e| {
        e.state = state.to_owned();
        e.phase = None;
        e.finished_at = Some(rfc3339(now()));
        e.result = Some(detail.clone());
        match &outcome {
            Outcome::Landed { commit, .. } => e.landed = Some(commit.clone()),
            Outcome::Blocked { conflicts, .. } => e.conflicts = conflicts.clone(),
            Outcome::Requeue => {}
        }
    });
    let command = Command::RecordLanding {
        owner: entry.owner.clone(),
        branch: entry.branch.clone(),
        outcome: state.to_owned(),
        detail,
    };
    if let Err(e) = cx.ask(command).await {
        tracing::warn!("the landing of {} could not be logged: {}", entry.branch, e.message());
    }
    if matches!(outcome, Outcome::Landed { .. }) {
        remove_landed_agent_worktree(cx, entry).await;
        // Its paths are on the base now: its pending work ends with the next look.
        if let Some(worktree) = &entry.worktree {
            crate::daemon::work::scan_now(cx, Path::new(worktree)).await;
        }
    }
}

/// A worktree lanes made for an agent, clean, whose branch just landed: its work is on the base, so it goes
/// with its branch, as `lanes gc` would remove it.
async fn remove_landed_agent_worktree(cx: &Context, entry: &LandEntryView) {
    let Some(worktree) = entry.worktree.clone() else { return };
    let Ok(Answer::AgentWorktrees(trees)) = cx.ask(Command::AgentWorktrees { session: None, agent: None }).await else {
        return;
    };
    let Some(tree) = trees.into_iter().find(|t| t.path == worktree && t.branch == entry.branch) else { return };
    let common_dir = cx.common_dir.clone();
    let removed = {
        let _serialized = cx.git.lock().await;
        let tree = tree.clone();
        tokio::task::spawn_blocking(move || {
            let clean = crate::git::run(Path::new(&tree.path), &["status", "--porcelain"]).is_ok_and(|s| s.is_empty());
            clean && crate::git::remove_worktree_and_branch(&common_dir, &tree.path, &tree.branch)
        })
        .await
        .unwrap_or(false)
    };
    if removed {
        let _ = cx.ask(Command::RemoveAgentWorktree { path: tree.path }).await;
    }
}

impl Lander {
    /// Lands a batch of entries with the same base and test command (blocking): again from the start while
    /// the base moves under it, at most [`ATTEMPTS`] times. Returns each entry's outcome.
    fn land(&self, batch: &[LandEntryView]) -> Vec<(u64, Outcome)> {
        for entry in batch {
            let _ = std::fs::remove_file(self.log_path(entry.id));
        }
        let onto = batch.first().map(|e| e.onto.clone()).unwrap_or_default();
        for attempt in 1..=ATTEMPTS {
            let result = self.attempt(batch);
            self.remove_scratch();
            match result {
                Ok(Attempt::Done(outcomes)) => return outcomes,
                Ok(Attempt::BaseMoved) => {
                    for entry in batch {
                        let line = format!("lanes: {onto} moved during the landing; again (attempt {attempt})\n");
                        append(&self.log_path(entry.id), &line);
                    }
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    return batch.iter().map(|e| (e.id, blocked(reason.clone(), Vec::new()))).collect();
                }
            }
        }
        let reason = format!("{onto} kept moving during the landing ({ATTEMPTS} attempts)");
        batch.iter().map(|e| (e.id, blocked(reason.clone(), Vec::new()))).collect()
    }

    /// One try: stack every entry of the batch onto the base, test the stack, find the longest green prefix
    /// by bisection when it is red (Bors-style: one test run when all is well), and move the base to it.
    fn attempt(&self, batch: &[LandEntryView]) -> Result<Attempt> {
        let Some(first) = batch.first() else { return Ok(Attempt::Done(Vec::new())) };
        let git = |args: &[&str]| crate::git::run(&self.common_dir, args);
        let base_ref = format!("refs/heads/{}", first.onto);
        let old = git(&["rev-parse", "--verify", &format!("{base_ref}^{{commit}}")])
            .with_context(|| format!("the base branch {} does not exist", first.onto))?;
        let scratch = self.scratch();
        self.remove_scratch();
        crate::git::change_worktrees(
            &self.common_dir,
            &["worktree", "add", "--detach", "--force", &scratch.to_string_lossy(), &old],
        )
        .context("failed to make the scratch worktree")?;
        let mut outcomes = Vec::new();
        // Each applied entry with the commit the stack reached with it.
        let mut layers: Vec<(&LandEntryView, String)> = Vec::new();
        let mut stacked = old.clone();
        for entry in batch {
            let log = self.log_path(entry.id);
            match self.apply(entry, &scratch, &stacked, &log)? {
                Applied::Onto(commit) if commit == stacked => {
                    // Everything it changes is on the base already (a landing cut short after the base moved).
                    append(&log, "lanes: nothing left to land: the base has all of it\n");
                    outcomes.push((entry.id, Outcome::Landed { commit, notes: Vec::new() }));
                }
                Applied::Onto(commit) => {
                    stacked = commit.clone();
                    layers.push((entry, commit));
                }
                Applied::Conflict(outcome) => outcomes.push((entry.id, outcome)),
            }
        }
        let green = match first.test.as_deref() {
            Some(test) if !layers.is_empty() => self.longest_green(test, &scratch, &layers, &mut outcomes)?,
            _ => layers.len(),
        };
        let Some((_, new)) = green.checked_sub(1).map(|top| &layers[top]) else { return Ok(Attempt::Done(outcomes)) };
        for (entry, _) in &layers[..green] {
            self.update(entry.id, |e| e.phase = Some("update".to_owned()));
        }
        let checkouts = checkouts_of(&self.common_dir, &first.onto)?;
        for checkout in &checkouts {
            // The two-way merge a fast-forward would do: edits the landing does not touch survive it.
            if crate::git::run(checkout, &["read-tree", "-n", "-m", "-u", &old, new]).is_err() {
                let reason = format!(
                    "the checkout of {} in {} has uncommitted changes to files the landing changes: commit or stash \
                     them there, then `lanes land` again",
                    first.onto,
                    checkout.display()
                );
                for (entry, _) in &layers[..green] {
                    append(&self.log_path(entry.id), &format!("lanes: {reason}\n"));
                    outcomes.push((entry.id, blocked(reason.clone(), Vec::new())));
                }
                return Ok(Attempt::Done(outcomes));
            }
        }
        let message = format!(
            "lanes land {}",
            layers[..green].iter().map(|(e, _)| e.branch.as_str()).collect::<Vec<_>>().join(" ")
        );
        if let Err(refused) = self.compare_and_swap(&base_ref, new, &old, &message) {
            return match refused {
                Refused::Moved => Ok(Attempt::BaseMoved),
                Refused::Locked(e) => Err(e),
            };
        }
        let mut notes = Vec::new();
        for checkout in &checkouts {
            if let Err(e) = crate::git::run(checkout, &["read-tree", "-m", "-u", &old, new]) {
                notes.push(format!(
                    "the checkout in {} was not updated ({e:#}): run `git read-tree -m -u {} {}` there",
                    checkout.display(),
                    short(&old),
                    short(new)
                ));
            }
        }
        for (entry, commit) in &layers[..green] {
            append(&self.log_path(entry.id), &format!("lanes: {} is now {}\n", entry.onto, short(new)));
            outcomes.push((entry.id, Outcome::Landed { commit: commit.clone(), notes: notes.clone() }));
        }
        Ok(Attempt::Done(outcomes))
    }

    /// Moves `base_ref` from `old` to `new`, or says why not: it moved, or git could not take its lock (another
    /// git writing it, a process killed mid-write) for a few seconds.
    fn compare_and_swap(
        &self,
        base_ref: &str,
        new: &str,
        old: &str,
        message: &str,
    ) -> std::result::Result<(), Refused> {
        let mut waited = Duration::ZERO;
        loop {
            match crate::git::run(&self.common_dir, &["update-ref", "-m", message, base_ref, new, old]) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let now =
                        crate::git::run(&self.common_dir, &["rev-parse", "--verify", base_ref]).unwrap_or_default();
                    if now != old {
                        return Err(Refused::Moved);
                    }
                    if waited >= LOCK_PATIENCE {
                        return Err(Refused::Locked(e.context(format!(
                            "could not move {base_ref}: if no git process is writing it, remove its .lock file"
                        ))));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    waited += Duration::from_millis(100);
                }
            }
        }
    }

    /// Rebases (merges, squashes) one entry onto `onto` in the scratch worktree.
    fn apply(&self, entry: &LandEntryView, scratch: &Path, onto: &str, log: &Path) -> Result<Applied> {
        let in_scratch = |args: &[&str]| crate::git::run(scratch, args);
        self.update(entry.id, |e| e.phase = Some("rebase".to_owned()));
        let tip = crate::git::run(
            &self.common_dir,
            &["rev-parse", "--verify", &format!("refs/heads/{}^{{commit}}", entry.branch)],
        )
        .with_context(|| format!("the branch {} does not exist any more", entry.branch))?;
        append(
            log,
            &format!("lanes: landing {} ({}) onto {} ({})\n", entry.branch, short(&tip), entry.onto, short(onto)),
        );
        let merged = match self.strategy {
            LandStrategy::Rebase => in_scratch(&["checkout", "--quiet", "--detach", &tip])
                .and_then(|_| in_scratch(&["rebase", "--quiet", onto])),
            LandStrategy::Merge => {
                let message = format!("Land {} onto {}", entry.branch, entry.onto);
                in_scratch(&["checkout", "--quiet", "--detach", onto])
                    .and_then(|_| in_scratch(&["merge", "--quiet", "--no-ff", "--no-verify", "-m", &message, &tip]))
            }
            LandStrategy::Squash => in_scratch(&["checkout", "--quiet", "--detach", onto])
                .and_then(|_| in_scratch(&["merge", "--quiet", "--squash", &tip]))
                .and_then(|_| {
                    let message = squash_message(&self.common_dir, onto, &tip, &entry.branch);
                    in_scratch(&["commit", "--quiet", "--no-verify", "--allow-empty", "-m", &message])
                }),
        };
        if let Err(e) = merged {
            let conflicts = conflicted_paths(scratch);
            let _ = in_scratch(&["rebase", "--abort"]);
            let _ = in_scratch(&["merge", "--abort"]);
            let _ = in_scratch(&["reset", "--quiet", "--hard"]);
            let reason = if conflicts.is_empty() {
                format!("{} does not apply onto {}: {e:#}", entry.branch, entry.onto)
            } else {
                format!(
                    "{} conflicts with {} in {}: rebase it onto {} in its worktree and resolve them, then `lanes land` again",
                    entry.branch,
                    entry.onto,
                    conflicts.join(", "),
                    entry.onto
                )
            };
            append(log, &format!("lanes: {reason}\n"));
            return Ok(Applied::Conflict(blocked(reason, conflicts)));
        }
        Ok(Applied::Onto(in_scratch(&["rev-parse", "HEAD"])?))
    }

    /// How many layers from the bottom of the stack pass the tests. The whole stack is tried first; when it is
    /// red, a bisection finds the first layer that breaks, which is blocked, and the layers above it go back to
    /// the queue (they were not tested without it).
    fn longest_green(
        &self,
        test: &str,
        scratch: &Path,
        layers: &[(&LandEntryView, String)],
        outcomes: &mut Vec<(u64, Outcome)>,
    ) -> Result<usize> {
        let run = |upto: usize| -> Result<Option<String>> {
            let (top, commit) = &layers[upto - 1];
            crate::git::run(scratch, &["checkout", "--quiet", "--detach", commit])?;
            for (entry, _) in &layers[..upto] {
                self.update(entry.id, |e| e.phase = Some("test".to_owned()));
            }
            let logs: Vec<PathBuf> = layers[..upto].iter().map(|(e, _)| self.log_path(e.id)).collect();
            self.run_test(test, scratch, &logs, &top.branch)
        };
        let Some(mut failure) = run(layers.len())? else { return Ok(layers.len()) };
        // Prefix `green` is known to pass (the base itself when 0), prefix `red` known to fail.
        let (mut green, mut red) = (0, layers.len());
        while red - green > 1 {
            let middle = (green + red) / 2;
            match run(middle)? {
                None => green = middle,
                Some(reason) => {
                    red = middle;
                    failure = reason;
                }
            }
        }
        outcomes.push((layers[red - 1].0.id, blocked(failure, Vec::new())));
        for (entry, _) in &layers[red..] {
            append(&self.log_path(entry.id), "lanes: an entry below this one broke the tests: queued again\n");
            outcomes.push((entry.id, Outcome::Requeue));
        }
        Ok(green)
    }

    /// Runs the test command in the scratch worktree, its output appended to every log of `logs` (the
    /// entries the tested stack holds). `Some(reason)` when it failed or ran out of time.
    fn run_test(&self, test: &str, scratch: &Path, logs: &[PathBuf], branch: &str) -> Result<Option<String>> {
        let Some(log) = logs.last() else { return Ok(None) };
        for other in logs {
            append(other, &format!("lanes: running `{test}`\n"));
        }
        let started = std::fs::metadata(log).map_or(0, |m| m.len());
        let output = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut child = Process::new("sh")
            .args(["-c", test])
            .current_dir(scratch)
            .env("LANES_LANDING", branch)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .process_group(0)
            .spawn()
            .with_context(|| format!("failed to run the test command `{test}`"))?;
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                // The whole group: a test runner's children must not outlive it.
                let _ = Process::new("kill").args(["-9", "--", &format!("-{}", child.id())]).status();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The other entries' logs get the same output.
        let text = std::fs::read(log).unwrap_or_default();
        let output = &text[usize::try_from(started).unwrap_or(0).min(text.len())..];
        for other in &logs[..logs.len() - 1] {
            append(other, &String::from_utf8_lossy(output));
        }
        let (line, reason) = match status {
            Some(status) if status.success() => ("lanes: the tests passed\n".to_owned(), None),
            Some(status) => {
                let code = status.code().map_or_else(|| "a signal".to_owned(), |c| format!("exit {c}"));
                (
                    format!("lanes: the tests failed ({code})\n"),
                    Some(with_output(format!("`{test}` failed ({code})"), output)),
                )
            }
            None => {
                let limit = lanes_core::human_duration(self.timeout);
                (
                    format!("lanes: the tests ran longer than {limit}\n"),
                    Some(with_output(format!("`{test}` ran longer than {limit} ([land] timeout)"), output)),
                )
            }
        };
        for other in logs {
            append(other, &line);
        }
        Ok(reason)
    }

    fn remove_scratch(&self) {
        let scratch = self.scratch();
        if scratch.exists() {
            let args = ["worktree", "remove", "--force", &scratch.to_string_lossy()];
            let _ = crate::git::change_worktrees(&self.common_dir, &args);
            let _ = std::fs::remove_dir_all(&scratch);
        }
        crate::git::forget_worktree(&self.common_dir, &scratch);
    }
}

/// Why the base did not move.
enum Refused {
    Moved,
    Locked(anyhow::Error),
}

enum Attempt {
    Done(Vec<(u64, Outcome)>),
    BaseMoved,
}

/// What applying one entry onto the stack gave.
enum Applied {
    Onto(String),
    Conflict(Outcome),
}

fn blocked(reason: String, conflicts: Vec<String>) -> Outcome {
    Outcome::Blocked { reason, conflicts }
}

fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

fn append(log: &Path, text: &str) {
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
        let _ = file.write_all(text.as_bytes());
    }
}

/// Why the tests stopped a landing, with the last lines they printed (or that they printed nothing, so the
/// reason does not end on a dangling colon).
fn with_output(why: String, output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    if tail.trim().is_empty() {
        format!("{why}; it printed nothing")
    } else {
        format!("{why}; its output ends:\n{tail}")
    }
}

fn conflicted_paths(scratch: &Path) -> Vec<String> {
    crate::git::run(scratch, &["diff", "--name-only", "--diff-filter=U"])
        .map(|out| out.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The message of a squashed landing: the branch's commit messages, oldest first (their trailers with them).
fn squash_message(common_dir: &Path, old: &str, tip: &str, branch: &str) -> String {
    let messages =
        crate::git::run(common_dir, &["log", "--reverse", "--format=%B", &format!("{old}..{tip}")]).unwrap_or_default();
    format!("Land {branch}\n\n{messages}")
}

/// The worktrees that have `branch` checked out (`git::checkouts` leaves the scratch worktree out). A list
/// git cannot give stops the landing: moving the base under a checkout not brought along would strand it.
fn checkouts_of(common_dir: &Path, branch: &str) -> Result<Vec<PathBuf>> {
    let checkouts = crate::git::checkouts(common_dir).context("cannot list the checkouts of the base")?;
    Ok(checkouts.into_iter().filter(|c| c.branch.as_deref() == Some(branch)).map(|c| c.path).collect())
}

/// What `lanes land` names: a worktree (the caller's, by default) or a branch.
#[derive(Debug)]
pub enum Target {
    /// The root of a worktree of this repository.
    Worktree(PathBuf),
    /// A branch name.
    Branch(String),
}

/// Resolves a [`Target`] to a branch and the worktree it is checked out in, refusing what cannot land
/// (blocking).
pub fn resolve(common_dir: &Path, target: Target, onto: &str) -> Result<(String, Option<PathBuf>)> {
    let (branch, worktree) = match target {
        Target::Worktree(root) => {
            let location = lanes_proto::repo::RepoLocation::discover(&root)?;
            let head = std::fs::read_to_string(location.git_dir.join("HEAD")).unwrap_or_default();
            let branch = head.trim().strip_prefix("ref: refs/heads/").map(str::to_owned).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} is on a detached HEAD: check out a branch to land (git switch -c <name>)",
                    root.display()
                )
            })?;
            (branch, Some(root))
        }
        Target::Branch(branch) => {
            let branch = branch.strip_prefix("refs/heads/").unwrap_or(&branch).to_owned();
            crate::git::run(common_dir, &["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}")])
                .map_err(|_| anyhow::anyhow!("no branch {branch} and no worktree at {branch}"))?;
            let checkouts = crate::git::checkouts(common_dir)?;
            let worktree = checkouts.into_iter().find(|c| c.branch.as_deref() == Some(branch.as_str())).map(|c| c.path);
            (branch, worktree)
        }
    };
    if branch == onto {
        bail!("{branch} is the base it would land on: land a branch of your work onto it instead");
    }
    crate::git::run(common_dir, &["rev-parse", "--verify", "--quiet", &format!("refs/heads/{onto}")])
        .map_err(|_| anyhow::anyhow!("the base branch {onto} does not exist: pass --onto, or set [land] base"))?;
    if let Some(worktree) = &worktree {
        let status = crate::daemon::work::git_raw(worktree, &["status", "--porcelain=v1", "-z", "--no-renames"])?;
        let paths: Vec<&str> = status.split('\0').filter_map(|entry| entry.get(3..)).collect();
        if !paths.is_empty() {
            bail!(
                "{} has uncommitted changes ({}{}): commit them first (`git add -A && git commit`), then `lanes land`",
                worktree.display(),
                paths[..paths.len().min(5)].join(", "),
                if paths.len() > 5 { ", …" } else { "" }
            );
        }
    }
    let ahead =
        crate::git::run(common_dir, &["rev-list", "--count", &format!("refs/heads/{onto}..refs/heads/{branch}")])?;
    if ahead.trim() == "0" {
        bail!("{branch} has no commits that {onto} lacks: nothing to land");
    }
    Ok((branch, worktree))
}

#[cfg(test)]
mod tests {
    use super::{TAIL_LINES, with_output};

    #[test]
    fn a_failed_test_run_gives_its_last_lines_or_says_it_printed_nothing() {
        assert_eq!(with_output("`make` failed (exit 1)".to_owned(), b""), "`make` failed (exit 1); it printed nothing");
        assert_eq!(with_output("`t` failed".to_owned(), b"\n  \n"), "`t` failed; it printed nothing");
        let printed: String = (1..=TAIL_LINES + 5).map(|n| format!("line {n}\n")).collect();
        let why = with_output("`t` failed".to_owned(), printed.as_bytes());
        assert!(why.starts_with("`t` failed; its output ends:\nline 6\n"), "{why}");
        assert!(why.ends_with(&format!("line {}", TAIL_LINES + 5)), "{why}");
    }
}
