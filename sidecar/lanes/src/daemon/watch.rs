//! The file watcher behind the scanner (`work.rs`): inotify reports the files that change in each worktree
//! and the refs that move in the repository, so a changed worktree is scanned within about a second, and the
//! full round over every worktree becomes a safety net that runs once a minute instead of every 9 s. Idle
//! worktrees then cost nothing. When a worktree cannot be watched (the kernel's watch limit, a file system
//! without inotify), the full round keeps its 9 s period.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::daemon::work::Scanner;

/// The watcher and what it covers.
#[derive(Default)]
pub struct Watch {
    inner: Mutex<Option<Inner>>,
}

struct Inner {
    watcher: RecommendedWatcher,
    /// The worktree roots watched; shared with the event handler, which maps a path to its worktree.
    roots: Arc<Mutex<Vec<PathBuf>>>,
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

    /// Watches the worktrees in `roots` not watched yet, and stops watching the ones that are gone (blocking:
    /// a recursive watch walks the tree). The list the event handler reads is never locked across a call into
    /// the watcher, whose event thread may be waiting on it.
    pub fn cover(&self, scanner: &Arc<Scanner>, common_dir: &Path, roots: &[PathBuf]) {
        let mut guard = self.lock();
        if guard.is_none() {
            *guard = start(Arc::downgrade(scanner), common_dir);
        }
        let Some(inner) = guard.as_mut() else { return };
        let watched = inner.roots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for gone in watched.iter().filter(|root| !roots.contains(root)) {
            let _ = inner.watcher.unwatch(gone);
        }
        let mut now_watched: Vec<PathBuf> = watched.into_iter().filter(|root| roots.contains(root)).collect();
        inner.incomplete = false;
        let new: Vec<&PathBuf> = roots.iter().filter(|root| !now_watched.contains(root)).collect();
        for root in new {
            match inner.watcher.watch(root, RecursiveMode::Recursive) {
                Ok(()) => now_watched.push(root.clone()),
                Err(e) => {
                    tracing::warn!("cannot watch {} ({e}); it is scanned every few seconds instead", root.display());
                    inner.incomplete = true;
                }
            }
        }
        *inner.roots.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = now_watched;
    }
}

/// The watcher, with the repository's refs watched (a commit anywhere, the base moving): `None` when the
/// platform gives none.
fn start(scanner: Weak<Scanner>, common_dir: &Path) -> Option<Inner> {
    let roots: Arc<Mutex<Vec<PathBuf>>> = Arc::default();
    let (handler_roots, common) = (Arc::clone(&roots), common_dir.to_path_buf());
    let handler = move |result: notify::Result<notify::Event>| {
        let Some(scanner) = scanner.upgrade() else { return };
        match result {
            Ok(event) if event.need_rescan() => scanner.all_soon(),
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            Ok(event) => {
                let roots = handler_roots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                for path in &event.paths {
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
    Some(Inner { watcher, roots, incomplete: false })
}

/// What a changed path asks for. Inside the git common dir only moving refs and the main worktree's HEAD or
/// index count (the scanner's own private indexes live there too, and must not wake it); elsewhere, the
/// innermost watched worktree holding the path is scanned.
fn route(scanner: &Scanner, common_dir: &Path, roots: &[PathBuf], path: &Path) {
    if let Ok(inside) = path.strip_prefix(common_dir) {
        if inside.starts_with("refs") || inside == Path::new("packed-refs") {
            scanner.all_soon();
        } else if (inside == Path::new("HEAD") || inside == Path::new("index"))
            && let Some(main) = common_dir.parent().filter(|main| roots.iter().any(|r| r == main))
        {
            scanner.changed(main);
        }
        return;
    }
    if let Some(root) = roots.iter().filter(|root| path.starts_with(root)).max_by_key(|root| root.as_os_str().len()) {
        scanner.changed(root);
    }
}
