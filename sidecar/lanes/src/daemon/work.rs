//! Each worktree's pending paths, read from git and handed to the book (DESIGN.md §5, "Lifetime" and
//! "Latent work"): what is changed there and not yet on the base branch. The claim decision never waits on
//! git: it uses what the last scan found. Scans run after a worktree's hook events and git hooks, before a
//! holder ends (so what it just wrote stays claimed), and on a timer for changes made outside lanes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use lanes_core::WorktreeWork;
use lanes_proto::repo::RepoLocation;

use crate::daemon::rpc::Context;
use crate::daemon::state::Command;

/// How often every worktree is scanned for changes made without any lanes activity (a person's editor, a
/// tool outside the hooks) when the file watcher does not cover them all. DESIGN.md asks for such a change to
/// be seen within 10 s.
const FULL_SCAN: Duration = Duration::from_secs(9);
/// With the file watcher on every worktree, the full round is only a safety net (a lost event).
const WATCHED_FULL_SCAN: Duration = Duration::from_secs(60);
/// A worktree the watcher reports changes in is scanned at most this often (a build writes thousands of files).
const WATCHED_SCAN_EVERY: Duration = Duration::from_secs(1);
/// Requests for a scan that arrive this close together are served by one.
const COALESCE: Duration = Duration::from_millis(100);

/// The scanner's state: which worktrees asked for a scan, and the committed paths of each branch, which only
/// change when its HEAD or the base moves.
pub struct Scanner {
    /// The configured base branch (`[land] base`); else found from the repository.
    base: Option<String>,
    wanted: Mutex<HashSet<PathBuf>>,
    /// A scan of every worktree was asked for (a commit: the base may have moved), whatever else was.
    all_wanted: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
    committed: Mutex<HashMap<PathBuf, CommittedPaths>>,
    /// Every worktree whose pending paths were handed to the book, to forget them when it goes.
    scanned: Mutex<HashSet<PathBuf>>,
    /// The base branch found from the repository, and when: finding it takes git processes, and it rarely moves.
    found_base: Mutex<Option<(std::time::Instant, Option<String>)>>,
    /// The file watcher, once a full round has listed the worktrees.
    pub watch: crate::daemon::watch::Watch,
    /// Worktrees the watcher saw change, waiting for their scan.
    changed: Mutex<HashSet<PathBuf>>,
    /// When each worktree was last scanned.
    last_scan: Mutex<HashMap<PathBuf, Instant>>,
    /// One lock per worktree, held from a scan's read of git to the book taking its result: two scans of one
    /// worktree at once (the timer's, and one before a holder ends) could otherwise hand the book the older
    /// read last, and a pending path the older read missed would be released as landed. A lock leaves the map
    /// with the last scan that held or waited for it ([`ScanTurn`]), so the map holds only worktrees in a scan.
    scanning: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// A worktree's pending paths as a principal's shell command began, by (worktree, principal): what the
    /// scan after the command compares against. Taken when used; a command that never reports back leaves
    /// one entry, replaced by its principal's next command.
    before_shell: Mutex<HashMap<(PathBuf, String), BTreeSet<String>>>,
}

/// How long a base branch found from the repository is trusted before it is looked up again.
const BASE_LIFETIME: Duration = Duration::from_secs(60);

/// A branch's paths changed since it forked from the base, keyed by (HEAD, base commit).
type CommittedPaths = ((String, String), BTreeSet<String>);

impl Scanner {
    pub fn new(base: Option<String>) -> Scanner {
        Scanner {
            base,
            wanted: Mutex::new(HashSet::new()),
            all_wanted: std::sync::atomic::AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            committed: Mutex::new(HashMap::new()),
            scanned: Mutex::new(HashSet::new()),
            found_base: Mutex::new(None),
            watch: crate::daemon::watch::Watch::default(),
            changed: Mutex::new(HashSet::new()),
            last_scan: Mutex::new(HashMap::new()),
            scanning: Mutex::new(HashMap::new()),
            before_shell: Mutex::new(HashMap::new()),
        }
    }

    /// The watcher saw `worktree` change: scan it once [`WATCHED_SCAN_EVERY`] has passed since its last scan.
    pub fn changed(&self, worktree: &Path) {
        let new = self.changed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(worktree.to_path_buf());
        if new {
            self.wake.notify_one();
        }
    }

    /// When the first changed worktree is due for its scan, from now.
    fn changed_due(&self) -> Option<Duration> {
        let changed = self.changed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = self.last_scan.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        changed
            .iter()
            .map(|root| last.get(root).map_or(Duration::ZERO, |at| WATCHED_SCAN_EVERY.saturating_sub(at.elapsed())))
            .min()
    }

    /// The changed worktrees that are due, taken out of the waiting set.
    fn take_due_changes(&self) -> Vec<PathBuf> {
        let mut changed = self.changed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = self.last_scan.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let due: Vec<PathBuf> = changed
            .iter()
            .filter(|root| last.get(*root).is_none_or(|at| at.elapsed() >= WATCHED_SCAN_EVERY))
            .cloned()
            .collect();
        changed.retain(|root| !due.contains(root));
        due
    }

    /// Asks for a scan of `worktree` soon (after a hook event there).
    pub fn soon(&self, worktree: &Path) {
        self.wanted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(worktree.to_path_buf());
        self.wake.notify_one();
    }

    /// Asks for a scan of every worktree soon (after a commit: the base may have moved).
    pub fn all_soon(&self) {
        self.all_wanted.store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The base branch for `dir`'s repository.
    fn base(&self, dir: &Path) -> Option<String> {
        if self.base.is_some() {
            return self.base.clone();
        }
        let mut found = self.found_base.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*found {
            Some((at, base)) if at.elapsed() < BASE_LIFETIME => base.clone(),
            _ => {
                let base = crate::git::base_branch(dir);
                *found = Some((std::time::Instant::now(), base.clone()));
                base
            }
        }
    }

    /// Reads one worktree's pending paths from git (blocking).
    pub fn read(&self, root: &Path) -> Result<WorktreeWork> {
        let location = RepoLocation::discover(root)?;
        let branch = crate::git::checked_out_branch(&location.git_dir);
        let mut paths = uncommitted(&location)?;
        if let Some(base) = self.base(root).filter(|base| branch.as_deref() != Some(base.as_str())) {
            paths.extend(self.committed_since_fork(root, &location, &base)?);
        }
        Ok(WorktreeWork { branch, paths })
    }

    /// Paths the branch changed since it forked from `base`, cached by HEAD and base commit.
    fn committed_since_fork(&self, root: &Path, location: &RepoLocation, base: &str) -> Result<BTreeSet<String>> {
        let (Some(head), Some(base_commit)) =
            (location.head_commit(), location.read_ref(&format!("refs/heads/{base}")))
        else {
            return Ok(BTreeSet::new());
        };
        let key = (head.clone(), base_commit.clone());
        let cache = || self.committed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((cached, paths)) = cache().get(root)
            && *cached == key
        {
            return Ok(paths.clone());
        }
        let paths = match crate::git::run(root, &["merge-base", &head, &base_commit]) {
            Ok(fork) => {
                // Changed on the branch since it forked, and still different on the base: a change that
                // reached the base by another commit (cherry-pick, squash, rebase) has landed.
                let changed =
                    nul_separated(&git_raw(root, &["diff", "--name-only", "-z", "--no-renames", &fork, &head])?);
                let differs =
                    nul_separated(&git_raw(root, &["diff", "--name-only", "-z", "--no-renames", &base_commit, &head])?);
                changed.intersection(&differs).cloned().collect()
            }
            // No common history (an orphan branch): nothing to compare with.
            Err(_) => BTreeSet::new(),
        };
        cache().insert(root.to_path_buf(), (key, paths.clone()));
        Ok(paths)
    }
}

/// Uncommitted paths: modified, added, deleted, untracked and not ignored (renames as their two paths).
///
/// git reads them against a private copy of the worktree's index (`<common dir>/lanes/scan/`), taken again
/// whenever the real one changes. git may refresh that copy's file stats and keep its untracked cache there,
/// which makes the next scan of an unchanged tree a fraction of the first, without ever writing (or locking)
/// the index the user's git commands use.
fn uncommitted(location: &RepoLocation) -> Result<BTreeSet<String>> {
    let private = scan_index(location)?;
    let output = std::process::Command::new("git")
        .current_dir(&location.worktree)
        .env("GIT_INDEX_FILE", &private)
        .args(["-c", "core.quotepath=off", "-c", "core.untrackedCache=true"])
        .args(["status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"])
        .output()
        .context("failed to run git")?;
    if !output.status.success() {
        anyhow::bail!("git status failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let status = String::from_utf8_lossy(&output.stdout);
    Ok(status.split('\0').filter_map(|entry| entry.get(3..)).filter(|p| !p.is_empty()).map(str::to_owned).collect())
}

/// The private copy of `location`'s index for scans, copied again when the real index is newer or another
/// size (a worktree without an index yet gets none: git then sees every file as untracked, as it is).
fn scan_index(location: &RepoLocation) -> Result<PathBuf> {
    let real = location.git_dir.join("index");
    let dir = location.common_dir.join("lanes").join("scan");
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let private = dir.join(format!("{}.index", lanes_proto::paths::repo_key(&location.git_dir)));
    let stamp = |path: &Path| std::fs::metadata(path).ok().map(|m| (m.modified().ok(), m.len()));
    let copied = dir.join(format!("{}.source", lanes_proto::paths::repo_key(&location.git_dir)));
    let source = stamp(&real).map(|(time, len)| format!("{time:?} {len}"));
    let seen = std::fs::read_to_string(&copied).ok();
    if source.is_none() {
        let _ = std::fs::remove_file(&private);
    } else if seen != source || !private.exists() {
        std::fs::copy(&real, &private).with_context(|| format!("failed to copy {}", real.display()))?;
        std::fs::write(&copied, source.unwrap_or_default())?;
    }
    Ok(private)
}

fn nul_separated(text: &str) -> BTreeSet<String> {
    text.split('\0').filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

/// Runs git without trimming its output (paths may end in spaces), and without taking the index lock or
/// refreshing the index: a scan must never get in the way of the user's own git commands.
pub(crate) fn git_raw(root: &Path, args: &[&str]) -> Result<String> {
    let output = std::process::Command::new("git")
        .current_dir(root)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .args(["-c", "core.quotepath=off"])
        .args(args)
        .output()
        .context("failed to run git")?;
    if !output.status.success() {
        anyhow::bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The worktrees of the repository (its checkouts, not lanes' own scratch worktree); `None` when git could
/// not list them, which must never read as "every worktree is gone".
fn worktrees(common_dir: &Path) -> Option<Vec<PathBuf>> {
    match crate::git::checkouts(common_dir) {
        Ok(checkouts) => Some(checkouts.into_iter().map(|c| c.path).collect()),
        Err(e) => {
            tracing::warn!("could not list the worktrees: {e:#}");
            None
        }
    }
}

/// One scan's hold on its worktree's lock in [`Scanner::scanning`].
struct ScanTurn<'a> {
    scanner: &'a Scanner,
    root: PathBuf,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl ScanTurn<'_> {
    async fn take<'a>(scanner: &'a Scanner, root: &Path) -> ScanTurn<'a> {
        let lock = Arc::clone(
            scanner
                .scanning
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(root.to_path_buf())
                .or_default(),
        );
        ScanTurn { scanner, root: root.to_path_buf(), held: Some(lock.lock_owned().await) }
    }
}

impl Drop for ScanTurn<'_> {
    /// Lets the next scan go, and takes the lock out of the map when no other scan holds or waits for it:
    /// one that comes for it later makes a new one, which is safe since this scan is done.
    fn drop(&mut self) {
        let Some(held) = self.held.take() else { return };
        let lock = Arc::clone(tokio::sync::OwnedMutexGuard::mutex(&held));
        drop(held);
        let mut scanning = self.scanner.scanning.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Two holders left: the map and `lock`.
        if scanning.get(&self.root).is_some_and(|kept| Arc::ptr_eq(kept, &lock)) && Arc::strong_count(&lock) == 2 {
            scanning.remove(&self.root);
        }
    }
}

/// Scans `root` now and hands the result to the book. Returns what was found.
pub async fn scan_now(cx: &Context, root: &Path) -> Option<WorktreeWork> {
    let _turn = ScanTurn::take(&cx.scanner, root).await;
    cx.scanner
        .last_scan
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(root.to_path_buf(), Instant::now());
    let read = {
        let (scanner, root) = (Arc::clone(&cx.scanner), root.to_path_buf());
        tokio::task::spawn_blocking(move || scanner.read(&root)).await
    };
    match read {
        Ok(Ok(work)) => {
            let command = Command::SetWork { root: root.to_string_lossy().into_owned(), work: Some(work.clone()) };
            // Claims whose work landed are released here and, with a hub, at the hub before the scan is done:
            // the claim that asked for this scan (or another machine's) must not be refused by them there.
            cx.release_everywhere(command).await.ok()?;
            cx.scanner.scanned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(root.to_path_buf());
            Some(work)
        }
        Ok(Err(e)) if !root.exists() => {
            // Gone (removed as the watcher saw it go): what an earlier scan caught mid-removal must not linger
            // as latent work until the next full round.
            tracing::debug!("{} is gone: {e:#}", root.display());
            forget(cx, root).await;
            None
        }
        Ok(Err(e)) => {
            tracing::debug!("cannot read the pending paths of {}: {e:#}", root.display());
            None
        }
        Err(e) => {
            tracing::warn!("the scan of {} failed: {e}", root.display());
            None
        }
    }
}

/// Forgets a worktree that is gone: its pending paths, and what the scanner kept for it.
async fn forget(cx: &Context, root: &Path) {
    cx.scanner.scanned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(root);
    cx.scanner.last_scan.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(root);
    let _ = cx.ask(Command::SetWork { root: root.to_string_lossy().into_owned(), work: None }).await;
}

/// Keeps every worktree's pending paths current, forever: the ones a hook event asked for at once, the ones
/// the file watcher saw change within [`WATCHED_SCAN_EVERY`], and all of them every [`FULL_SCAN`] (every
/// [`WATCHED_FULL_SCAN`] while the watcher covers them all), whatever else wakes the scanner meanwhile.
pub async fn refresh(cx: Arc<Context>) {
    let mut last_full: Option<Instant> = None;
    loop {
        let every = if cx.scanner.watch.covers_all() { WATCHED_FULL_SCAN } else { FULL_SCAN };
        let full_in = last_full.map_or(Duration::ZERO, |at| every.saturating_sub(at.elapsed()));
        let wait = cx.scanner.changed_due().map_or(full_in, |due| due.min(full_in));
        if !wait.is_zero() && tokio::time::timeout(wait, cx.scanner.wake.notified()).await.is_ok() {
            tokio::time::sleep(COALESCE).await;
        }
        let mut roots: Vec<PathBuf> =
            cx.scanner.wanted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain().collect();
        roots.extend(cx.scanner.take_due_changes());
        let asked = cx.scanner.all_wanted.swap(false, std::sync::atomic::Ordering::SeqCst);
        if asked || last_full.is_none_or(|at| at.elapsed() >= every) {
            let common_dir = cx.common_dir.clone();
            // A round whose listing failed counts as done too: tried again at once, it spawned git without end.
            last_full = Some(Instant::now());
            let Some(listed) = tokio::task::spawn_blocking(move || worktrees(&common_dir)).await.ok().flatten() else {
                continue;
            };
            let (scanner, common_dir, watched) = (Arc::clone(&cx.scanner), cx.common_dir.clone(), listed.clone());
            let _ = tokio::task::spawn_blocking(move || scanner.watch.cover(&scanner, &common_dir, &watched)).await;
            // Worktrees that went away (unlisted, their directory gone) take their pending paths with them.
            let gone: Vec<PathBuf> = {
                let scanned = cx.scanner.scanned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                scanned.iter().filter(|root| !listed.contains(root) && !root.exists()).cloned().collect()
            };
            for root in gone {
                forget(&cx, &root).await;
            }
            roots = listed;
        }
        roots.sort();
        roots.dedup();
        for root in roots {
            scan_now(&cx, &root).await;
        }
    }
}

/// `worktree.scan`, after a shell command (DESIGN.md §5, "Shell edits"): the paths that became pending in the
/// principal's worktree are claimed for it as an edit would be; a path inside another principal's claim or
/// pending work is reported back, and its holder is told.
pub async fn shell_scan(params: jsonrpsee::types::Params<'static>, cx: &Context) -> crate::daemon::rpc::RpcResult {
    use lanes_proto::{ShellScanParams, ShellScanReply, TakenPath};

    use crate::daemon::rpc::{conflict_view, failure_to_rpc, parse, principal, reply};
    use crate::daemon::state::{Answer, Failure};
    let p: ShellScanParams = parse(&params)?;
    let who = principal(&p.session)?;
    let (root, worktree) = cx.worktree(&p.worktree).map_err(failure_to_rpc)?;
    let root_text = root.to_string_lossy().into_owned();
    let Answer::Work(known) = cx.ask(Command::Work { root: root_text.clone() }).await? else {
        unreachable!("work answers Work")
    };
    let known = known.map(|w| w.paths).unwrap_or_default();
    let before = {
        let mut baselines = cx.scanner.before_shell.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (root.clone(), who.to_string());
        if p.before {
            baselines.insert(key, known);
            return reply(&ShellScanReply::default());
        }
        // Without a baseline (a client that says nothing before its commands) the last scan stands in for it.
        baselines.remove(&key).unwrap_or(known)
    };
    let Some(after) = scan_now(cx, &root).await else { return reply(&ShellScanReply::default()) };
    let mut answer = ShellScanReply::default();
    for path in after.paths.difference(&before) {
        let Ok(scope) = lanes_core::Scope::parse(path) else { continue };
        let request = lanes_core::AcquireRequest {
            holder: who.clone(),
            worktree: worktree.clone(),
            scopes: vec![scope],
            mode: lanes_core::Mode::Exclusive,
            ttl: None,
            note: None,
            task: None,
        };
        match cx.state.ask(Command::Ensure(request)).await {
            // With a hub, a new grant stands only once the hub confirms it, as for an edit.
            Ok(Answer::Ensured(lanes_core::Ensured::Granted(grant))) => match cx.confirm_with_hub(&grant).await {
                Ok(_) => answer.claimed.push(path.clone()),
                Err(refused) => {
                    let holders = refused
                        .data()
                        .and_then(|d| serde_json::from_str::<serde_json::Value>(d.get()).ok())
                        .and_then(|d| serde_json::from_value(d["conflicts"].clone()).ok())
                        .unwrap_or_default();
                    answer.taken.push(TakenPath { path: path.clone(), holders });
                }
            },
            Ok(_) => answer.claimed.push(path.clone()),
            Err(Failure::Refused(refusal)) if refusal.code == lanes_core::RefusalCode::Conflict => {
                let now = crate::daemon::state::now();
                let report = Command::ReportShellEdit {
                    editor: who.clone(),
                    root: root_text.clone(),
                    path: path.clone(),
                    conflicts: refusal.conflicts.clone(),
                };
                let _ = cx.ask(report).await;
                let holders = refusal.conflicts.iter().map(|c| conflict_view(c, now)).collect();
                answer.taken.push(TakenPath { path: path.clone(), holders });
            }
            Err(e) => tracing::debug!("shell scan of {path}: {}", failure_to_rpc(e).message()),
        }
    }
    reply(&answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let status = std::process::Command::new("git")
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    }

    #[test]
    fn reads_uncommitted_and_committed_paths_until_they_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().canonicalize().expect("canonical").join("r");
        std::fs::create_dir_all(repo.join("src")).expect("mkdir");
        std::fs::write(repo.join("src/a.rs"), "a\n").expect("write");
        std::fs::write(repo.join("gone.rs"), "g\n").expect("write");
        std::fs::write(repo.join(".gitignore"), "target/\n").expect("write");
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "initial"]);
        let scanner = Scanner::new(None);
        assert!(scanner.read(&repo).expect("read").paths.is_empty());

        git(&repo, &["checkout", "-qb", "feat"]);
        std::fs::write(repo.join("src/a.rs"), "changed\n").expect("write");
        std::fs::write(repo.join("new file.rs"), "n\n").expect("write");
        std::fs::remove_file(repo.join("gone.rs")).expect("rm");
        std::fs::create_dir_all(repo.join("target")).expect("mkdir");
        std::fs::write(repo.join("target/ignored"), "i\n").expect("write");
        let work = scanner.read(&repo).expect("read");
        assert_eq!(work.branch.as_deref(), Some("feat"));
        let paths: Vec<&str> = work.paths.iter().map(String::as_str).collect();
        assert_eq!(paths, ["gone.rs", "new file.rs", "src/a.rs"]);

        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "work"]);
        assert_eq!(scanner.read(&repo).expect("read").paths.len(), 3, "committed on the branch, not on main yet");
        git(&repo, &["checkout", "-q", "main"]);
        git(&repo, &["merge", "-q", "--ff-only", "feat"]);
        git(&repo, &["checkout", "-q", "feat"]);
        assert!(scanner.read(&repo).expect("read").paths.is_empty(), "landed on main");
    }

    /// Scans of one worktree take turns, and its lock stays in the map only while a scan holds or waits for
    /// it, so removed worktrees leave nothing behind and a waiter never gets a lock of its own.
    #[test]
    fn scan_turns_take_turns_and_leave_nothing_behind() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let scanner = Arc::new(Scanner::new(None));
            let root = Path::new("/repo/wt");
            let kept = |scanner: &Scanner| scanner.scanning.lock().expect("lock").len();
            let first = ScanTurn::take(&scanner, root).await;
            let (started, mut started_rx) = tokio::sync::oneshot::channel();
            let second = tokio::spawn({
                let scanner = Arc::clone(&scanner);
                async move {
                    let _ = started.send(());
                    let _turn = ScanTurn::take(&scanner, Path::new("/repo/wt")).await;
                    kept(&scanner)
                }
            });
            (&mut started_rx).await.expect("second started");
            tokio::task::yield_now().await;
            assert!(!second.is_finished(), "the second scan waits for the first");
            drop(first);
            assert_eq!(second.await.expect("second"), 1, "the waiter's lock stayed in the map");
            assert_eq!(kept(&scanner), 0, "the last turn took the lock out");
        });
    }
}
