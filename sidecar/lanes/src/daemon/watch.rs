//! The file watcher behind the scanner (`work.rs`): inotify reports the files that change in each worktree
//! and the refs that move in the repository, so a changed worktree is scanned within about a second, and the
//! full round over every worktree becomes a safety net that runs once a minute instead of every 9 s. Idle
//! worktrees then cost nothing. When a worktree cannot be watched (the kernel's watch limit, a file system
//! without inotify), the full round keeps its 9 s period.
//!
//! Each worktree's git dir is watched too (its `HEAD` and `index`): git writes a new worktree's index after
//! its files, so a scan caught mid-checkout would otherwise see every file as deleted until the next full
//! round, with nothing in the worktree left to change.
//!
//! A worktree is watched as its top level plus each of its top-level directories, recursively, but never its
//! `.git`: the main worktree holds the repository itself, and every commit of the sidecar's own store
//! (`.git/lanes/`), every object git writes, would otherwise wake the watcher. A top-level directory made
//! later is watched at the next full round, which its creation asks for; each full round also looks for
//! top-level directories not watched yet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use lanes_proto::repo::RepoLocation;

use crate::daemon::work::Scanner;

/// The watcher and what it covers.
#[derive(Default)]
pub struct Watch {
    inner: Mutex<Option<Inner>>,
}

/// A watched worktree: its top level and its git dir (the common dir for the main worktree).
#[derive(Clone)]
struct Watched {
    root: PathBuf,
    git_dir: PathBuf,
}

struct Inner {
    watcher: RecommendedWatcher,
    /// The worktrees watched; shared with the event handler, which maps a path to its worktree.
    roots: Arc<Mutex<Vec<Watched>>>,
    /// The top-level directories watched recursively, by worktree.
    dirs: HashMap<PathBuf, Vec<PathBuf>>,
    /// Directories made (or made again) since the last round that need a watch of their own: the handler may
    /// not call into the watcher, so it leaves them here for [`Watch::cover`].
    made: Arc<Mutex<Vec<PathBuf>>>,
    /// A worktree could not be watched: the full round keeps its short period.
    incomplete: bool,
}

impl Watch {
    /// Whether every worktree of the last full round is watched.
    pub fn covers_all(&self) -> bool {
        self.lock().as_ref().is_some_and(|inner| !inner.incomplete)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Inner>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Watches the worktrees in `roots` not watched yet and their top-level directories not watched yet, and
    /// stops watching the ones that are gone (blocking: a recursive watch walks the tree). The list the event
    /// handler reads is never locked across a call into the watcher, whose event thread may be waiting on it.
    pub fn cover(&self, scanner: &Arc<Scanner>, common_dir: &Path, roots: &[PathBuf]) {
        let mut guard = self.lock();
        if guard.is_none() {
            *guard = start(Arc::downgrade(scanner), common_dir);
        }
        let Some(inner) = guard.as_mut() else { return };
        let watched = inner.roots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for gone in watched.iter().filter(|w| !roots.contains(&w.root)) {
            let _ = inner.watcher.unwatch(&gone.root);
            for dir in inner.dirs.remove(&gone.root).unwrap_or_default() {
                let _ = inner.watcher.unwatch(&dir);
            }
            if gone.git_dir != common_dir {
                let _ = inner.watcher.unwatch(&gone.git_dir);
            }
        }
        let mut now_watched: Vec<Watched> = watched.into_iter().filter(|w| roots.contains(&w.root)).collect();
        inner.incomplete = false;
        let new: Vec<&PathBuf> = roots.iter().filter(|root| !now_watched.iter().any(|w| &w.root == *root)).collect();
        for root in new {
            match watch_worktree(&mut inner.watcher, common_dir, root) {
                Ok(git_dir) => now_watched.push(Watched { root: root.clone(), git_dir }),
                Err(e) => {
                    tracing::warn!("cannot watch {} ({e}); it is scanned every few seconds instead", root.display());
                    inner.incomplete = true;
                }
            }
        }
        // Published before the top-level directories are listed: one made after this reaches the handler,
        // one made before it is listed.
        *inner.roots.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = now_watched.clone();
        let made = std::mem::take(&mut *inner.made.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let linked = common_dir.join("worktrees");
        if made.contains(&linked)
            && let Err(e) = inner.watcher.watch(&linked, RecursiveMode::Recursive)
        {
            tracing::warn!("cannot watch {} ({e}): new worktrees are seen at the next full round", linked.display());
        }
        for worktree in &now_watched {
            let dirs = inner.dirs.entry(worktree.root.clone()).or_default();
            if let Err(e) = watch_top_level(&mut inner.watcher, &worktree.root, dirs, &made) {
                tracing::warn!(
                    "cannot watch all of {} ({e}); it is scanned every few seconds",
                    worktree.root.display()
                );
                inner.incomplete = true;
            }
        }
    }
}

/// Watches the top level of `root` and, for a linked worktree, its git dir; returns the git dir.
fn watch_worktree(watcher: &mut RecommendedWatcher, common_dir: &Path, root: &Path) -> Result<PathBuf, String> {
    let git_dir = RepoLocation::discover(root).map_err(|e| e.to_string())?.git_dir;
    watcher.watch(root, RecursiveMode::NonRecursive).map_err(|e| e.to_string())?;
    if git_dir != common_dir
        && let Err(e) = watcher.watch(&git_dir, RecursiveMode::NonRecursive)
    {
        let _ = watcher.unwatch(root);
        return Err(e.to_string());
    }
    Ok(git_dir)
}

/// Watches the top-level directories of `root` but `.git` that are not in `dirs` yet, and those in `made`
/// again (a directory removed and made again is a new one to inotify); forgets the ones that are gone.
fn watch_top_level(
    watcher: &mut RecommendedWatcher,
    root: &Path,
    dirs: &mut Vec<PathBuf>,
    made: &[PathBuf],
) -> Result<(), String> {
    dirs.retain(|dir| dir.is_dir());
    for entry in std::fs::read_dir(root).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let dir = entry.path();
        let known = dirs.contains(&dir);
        if entry.file_name() == ".git" || !entry.file_type().is_ok_and(|t| t.is_dir()) || known && !made.contains(&dir)
        {
            continue;
        }
        watcher.watch(&dir, RecursiveMode::Recursive).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !known {
            dirs.push(dir);
        }
    }
    Ok(())
}

/// The watcher, with the repository's refs watched (a commit anywhere, the base moving): `None` when the
/// platform gives none.
fn start(scanner: Weak<Scanner>, common_dir: &Path) -> Option<Inner> {
    let roots: Arc<Mutex<Vec<Watched>>> = Arc::default();
    let made: Arc<Mutex<Vec<PathBuf>>> = Arc::default();
    let (handler_roots, handler_made, common) = (Arc::clone(&roots), Arc::clone(&made), common_dir.to_path_buf());
    let handler = move |result: notify::Result<notify::Event>| {
        let Some(scanner) = scanner.upgrade() else { return };
        match result {
            Ok(event) if event.need_rescan() => scanner.all_soon(),
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            Ok(event) => {
                let roots = handler_roots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for path in &event.paths {
                    if matches!(event.kind, EventKind::Create(_)) && is_unwatched_dir(&common, &roots, path) {
                        handler_made.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(path.clone());
                        scanner.all_soon();
                    }
                    route(&scanner, &common, &roots, path);
                }
            }
            // Events may have been lost (the queue overflowed): look at everything.
            Err(_) => scanner.all_soon(),
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(e) => {
            tracing::warn!("no file watcher ({e}): worktrees are scanned every few seconds");
            return None;
        }
    };
    let refs = common_dir.join("refs");
    if watcher.watch(&refs, RecursiveMode::Recursive).is_err()
        || watcher.watch(common_dir, RecursiveMode::NonRecursive).is_err()
    {
        return None;
    }
    // The linked worktrees' git dirs, where a new one shows first (made later: see `is_unwatched_dir`).
    let linked = common_dir.join("worktrees");
    if linked.is_dir() && watcher.watch(&linked, RecursiveMode::Recursive).is_err() {
        return None;
    }
    Some(Inner { watcher, roots, dirs: HashMap::new(), made, incomplete: false })
}

/// Whether a path just made is a directory a recursive watch has to be added for: a top-level directory of a
/// watched worktree (not its `.git`), or the common dir's `worktrees` made by the first `git worktree add`.
fn is_unwatched_dir(common_dir: &Path, roots: &[Watched], path: &Path) -> bool {
    let top_level = roots.iter().any(|w| path.parent() == Some(w.root.as_path()))
        && path.file_name().is_some_and(|name| name != ".git");
    (top_level || path == common_dir.join("worktrees")) && path.is_dir()
}

/// What a changed path asks for. A worktree's `HEAD` or `index` in its git dir (a commit, a checkout
/// finishing) asks for that worktree's scan; elsewhere inside the git common dir only moving refs and a new
/// worktree's git dir count (the scanner's own private indexes live there too, and must not wake it);
/// anywhere else, the innermost watched worktree holding the path is scanned.
fn route(scanner: &Scanner, common_dir: &Path, roots: &[Watched], path: &Path) {
    let in_git_dir = |w: &&Watched| path.parent() == Some(w.git_dir.as_path());
    if path.file_name().is_some_and(|name| name == "HEAD" || name == "index")
        && let Some(owner) = roots.iter().find(in_git_dir)
    {
        scanner.changed(&owner.root);
        return;
    }
    if let Ok(inside) = path.strip_prefix(common_dir) {
        // A linked worktree's git dir being written that no watched worktree owns: `git worktree add` is
        // under way, and the full round that lists worktrees may have run before it was listed.
        let new_worktree = inside.starts_with("worktrees")
            && path.file_name().is_some_and(|name| name == "HEAD" || name == "index" || name == "gitdir");
        if inside.starts_with("refs") || inside == Path::new("packed-refs") || new_worktree {
            scanner.all_soon();
        }
        return;
    }
    if let Some(owner) = roots.iter().filter(|w| path.starts_with(&w.root)).max_by_key(|w| w.root.as_os_str().len()) {
        scanner.changed(&owner.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worktree_is_watched_by_its_top_level_directories_never_its_git_dir() {
        let root = tempfile::tempdir().expect("tempdir");
        for dir in ["src/deep", "docs", ".git/objects/ab", ".git/lanes"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("mkdir");
        }
        std::fs::write(root.path().join("README.md"), "top-level file\n").expect("write");
        let mut watcher = notify::recommended_watcher(|_: notify::Result<notify::Event>| {}).expect("watcher");
        let mut dirs = Vec::new();
        watch_top_level(&mut watcher, root.path(), &mut dirs, &[]).expect("watched");
        dirs.sort();
        assert_eq!(dirs, [root.path().join("docs"), root.path().join("src")]);

        // A directory made later is added by the next round; one removed is forgotten.
        std::fs::create_dir(root.path().join("fresh")).expect("mkdir");
        std::fs::remove_dir(root.path().join("docs")).expect("rmdir");
        watch_top_level(&mut watcher, root.path(), &mut dirs, &[]).expect("watched");
        dirs.sort();
        assert_eq!(dirs, [root.path().join("fresh"), root.path().join("src")]);
    }
}
