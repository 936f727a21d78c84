//! Checkpoints and rewinds with the git CLI, never touching the user's index, HEAD, branches or stash: every
//! operation uses a private index file (`GIT_INDEX_FILE`) under `<git-common-dir>/lanes/index/`. These are
//! blocking calls; the sidecar runs them off its async thread.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A checkpoint commit just made.
#[derive(Debug, Clone)]
pub struct Made {
    pub commit: String,
    pub head: Option<String>,
    pub files: Vec<String>,
}

/// Runs git in `worktree` with a private index; returns trimmed stdout.
fn git(worktree: &Path, index: Option<&Path>, args: &[&str]) -> Result<String> {
    let mut command = Command::new("git");
    command.current_dir(worktree);
    if let Some(index) = index {
        // The private index is read and written on every checkpoint: its untracked cache spares reading
        // directories that did not change, and no checksum over its 100 bytes per file (git ≥ 2.40; older
        // git ignores the key) saves hashing it on each write.
        command.env("GIT_INDEX_FILE", index).args(["-c", "core.untrackedCache=true", "-c", "index.skipHash=true"]);
    }
    command.args(args);
    // Checkpoints are lanes' commits: give them an identity even where the user configured none.
    for (name, value) in [
        ("GIT_AUTHOR_NAME", "lanes"),
        ("GIT_AUTHOR_EMAIL", "lanes@localhost"),
        ("GIT_COMMITTER_NAME", "lanes"),
        ("GIT_COMMITTER_EMAIL", "lanes@localhost"),
    ] {
        command.env(name, value);
    }
    output_of(command, args)
}

/// Runs git in `worktree` (the user's own index and identity); returns trimmed stdout.
pub fn run(worktree: &Path, args: &[&str]) -> Result<String> {
    let mut command = Command::new("git");
    command.current_dir(worktree).args(args);
    output_of(command, args)
}

/// git's `worktree add`, `remove` and `prune` are not safe to run at once in one repository: one reads
/// another's half-made admin dir (`failed to read .git/worktrees/<name>/commondir`), and a prune deletes the
/// admin dir of a worktree still being added. The sidecar makes its worktree changes one at a time, here.
static WORKTREE_CHANGES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs a `git worktree` command that changes the repository's worktrees, one at a time in this process.
pub fn change_worktrees(dir: &Path, args: &[&str]) -> Result<String> {
    let _one_at_a_time = WORKTREE_CHANGES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    run(dir, args)
}

/// Removes a clean worktree, then its branch: what an agent's finished worktree leaves behind.
pub fn remove_worktree_and_branch(common_dir: &Path, path: &str, branch: &str) -> bool {
    change_worktrees(common_dir, &["worktree", "remove", path]).is_ok()
        && run(common_dir, &["branch", "-D", branch]).is_ok()
}

/// Forgets a worktree whose directory is gone: what `git worktree prune` does, for that one alone. A prune of
/// all of them could delete the admin dir of a worktree another git is adding at that moment.
pub fn forget_worktree(common_dir: &Path, path: &Path) {
    let _one_at_a_time = WORKTREE_CHANGES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Ok(admin_dirs) = std::fs::read_dir(common_dir.join("worktrees")) else { return };
    for admin in admin_dirs.flatten() {
        let gitdir = std::fs::read_to_string(admin.path().join("gitdir")).unwrap_or_default();
        if Path::new(gitdir.trim()).parent() == Some(path) && !path.exists() {
            let _ = std::fs::remove_dir_all(admin.path());
        }
    }
}

/// Runs a git command; its trimmed stdout, or an error carrying its stderr.
fn output_of(mut command: Command, args: &[&str]) -> Result<String> {
    let output = command.output().context("failed to run git")?;
    if !output.status.success() {
        bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The branch checked out in the worktree whose git dir is `git_dir`, read from its `HEAD` file (no git
/// process); `None` when HEAD is detached or unreadable.
pub fn checked_out_branch(git_dir: &Path) -> Option<String> {
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    head.trim().strip_prefix("ref: refs/heads/").map(str::to_owned)
}

/// The base branch work lands on (DESIGN.md §5): the branch `origin/HEAD` names, else `main`, else `master`.
/// `None` when the repository has none of them.
pub fn base_branch(dir: &Path) -> Option<String> {
    if let Ok(origin) = run(dir, &["symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"])
        && let Some(branch) = origin.strip_prefix("origin/")
    {
        return Some(branch.to_owned());
    }
    ["main", "master"]
        .into_iter()
        .find(|b| run(dir, &["rev-parse", "--verify", "--quiet", &format!("refs/heads/{b}")]).is_ok())
        .map(str::to_owned)
}

/// A checkout: a worktree of the repository (not the repository of a bare clone) and its branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkout {
    /// Its directory.
    pub path: PathBuf,
    /// The branch checked out, `None` on a detached HEAD.
    pub branch: Option<String>,
}

/// The checkouts of the repository, from `git worktree list` (ones whose directory is gone left out, and the
/// landing queue's scratch worktree under `<git-common-dir>/lanes/`, which is lanes' own).
pub fn checkouts(common_dir: &Path) -> Result<Vec<Checkout>> {
    let list = run(common_dir, &["worktree", "list", "--porcelain"])?;
    let own = common_dir.join("lanes");
    Ok(list
        .split("\n\n")
        .filter(|block| !block.lines().any(|l| l == "bare" || l.starts_with("prunable")))
        .filter_map(|block| {
            let path = PathBuf::from(block.lines().find_map(|l| l.strip_prefix("worktree "))?);
            let branch = block.lines().find_map(|l| l.strip_prefix("branch refs/heads/")).map(str::to_owned);
            Some(Checkout { path, branch })
        })
        .filter(|c| c.path.exists() && !c.path.starts_with(&own))
        .collect())
}

/// The private index of one session (kept between checkpoints, so only changed files are hashed again).
pub fn private_index(common_dir: &Path, session: &str) -> PathBuf {
    let safe: String = session.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    common_dir.join("lanes").join("index").join(safe)
}

/// The ref a session's checkpoints are chained under.
pub fn checkpoint_ref(session: &str) -> String {
    let safe: String =
        session.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    format!("refs/lanes/checkpoints/{safe}")
}

/// The tree of the whole worktree as it is now: tracked and untracked files, ignored ones excluded.
pub fn snapshot_tree(worktree: &Path, index: &Path) -> Result<String> {
    Ok(snapshot(worktree, index)?.0)
}

/// The worktree's tree, and the paths `git add` changed in the private index on the way (added, modified or
/// removed since the index last took a snapshot).
fn snapshot(worktree: &Path, index: &Path) -> Result<(String, Vec<String>)> {
    if let Some(dir) = index.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    }
    let added = git(worktree, Some(index), &["add", "-A", "-v", "--", "."])?;
    let changed = added
        .lines()
        .filter_map(|line| line.strip_prefix("add '").or_else(|| line.strip_prefix("remove '")))
        .filter_map(|path| path.strip_suffix('\''))
        .map(str::to_owned)
        .collect();
    Ok((git(worktree, Some(index), &["write-tree"])?, changed))
}

/// Commits the worktree's state under the session's checkpoint ref, unless nothing changed since the last
/// checkpoint (then `None`). Refs and HEAD are read from files, the last tree is remembered, and the files
/// that changed since the session's last checkpoint are what `git add` reported in the session's private
/// index (which holds that checkpoint), so a checkpoint costs four git processes: add, write-tree,
/// commit-tree, update-ref.
pub fn checkpoint(worktree: &Path, index: &Path, session: &str, message: &str) -> Result<Option<Made>> {
    let (tree, changed) = snapshot(worktree, index)?;
    let reference = checkpoint_ref(session);
    let location = lanes_proto::repo::RepoLocation::discover(worktree)?;
    let previous = location.read_ref(&reference);
    let head = location.head_commit();
    let base = previous.clone().or_else(|| head.clone());
    let base_tree = match &base {
        Some(commit) => Some(tree_of(worktree, commit)?),
        None => None,
    };
    if previous.is_some() && base_tree.as_deref() == Some(tree.as_str()) {
        return Ok(None);
    }
    let files: Vec<String> = match &base_tree {
        Some(_) if previous.is_some() => changed,
        Some(base_tree) => git(worktree, None, &["diff-tree", "-r", "--name-only", base_tree, &tree])?
            .lines()
            .map(str::to_owned)
            .collect(),
        None => git(worktree, None, &["ls-tree", "-r", "--name-only", &tree])?.lines().map(str::to_owned).collect(),
    };
    let mut args = vec!["commit-tree".to_owned(), tree.clone(), "-m".to_owned(), message.to_owned()];
    if let Some(parent) = &previous {
        args.extend(["-p".to_owned(), parent.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let commit = git(worktree, None, &args)?;
    let old = previous.unwrap_or_else(|| "0".repeat(40));
    git(worktree, None, &["update-ref", &reference, &commit, &old])?;
    remember_tree(&commit, &tree);
    Ok(Some(Made { commit, head, files }))
}

/// Trees of recent checkpoint commits, so the next checkpoint need not ask git for its parent's tree.
static TREES: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
    std::sync::LazyLock::new(Default::default);

fn remember_tree(commit: &str, tree: &str) {
    let mut trees = TREES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if trees.len() > 10_000 {
        trees.clear();
    }
    trees.insert(commit.to_owned(), tree.to_owned());
}

fn tree_of(worktree: &Path, commit: &str) -> Result<String> {
    let known = TREES.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(commit).cloned();
    match known {
        Some(tree) => Ok(tree),
        None => {
            let tree = git(worktree, None, &["rev-parse", &format!("{commit}^{{tree}}")])?;
            remember_tree(commit, &tree);
            Ok(tree)
        }
    }
}

/// One path a rewind changes: `A` (restored, absent now), `M` (restored, differs now) or `D` (removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: char,
    pub path: String,
}

/// What restoring `commit` would change in a worktree whose current tree is `now_tree`.
pub fn rewind_plan(worktree: &Path, now_tree: &str, commit: &str) -> Result<Vec<Change>> {
    let out = git(
        worktree,
        None,
        &["diff-tree", "-r", "--no-renames", "--name-status", now_tree, &format!("{commit}^{{tree}}")],
    )?;
    Ok(out
        .lines()
        .filter_map(|line| {
            let (kind, path) = line.split_once('\t')?;
            Some(Change { kind: kind.chars().next()?, path: path.to_owned() })
        })
        .collect())
}

/// Writes the files of `commit` for the given changes into the worktree and removes the files it lacks,
/// through a throwaway index: the user's index is not touched.
pub fn restore(worktree: &Path, scratch_index: &Path, commit: &str, changes: &[Change]) -> Result<()> {
    let restored: Vec<&str> = changes.iter().filter(|c| c.kind != 'D').map(|c| c.path.as_str()).collect();
    if !restored.is_empty() {
        git(worktree, Some(scratch_index), &["read-tree", commit])?;
        let mut args = vec!["checkout-index", "-f", "--"];
        args.extend(restored);
        git(worktree, Some(scratch_index), &args)?;
    }
    for change in changes.iter().filter(|c| c.kind == 'D') {
        let path = worktree.join(&change.path);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("failed to remove {}", path.display()));
            }
            _ => {}
        }
    }
    let _ = std::fs::remove_file(scratch_index);
    Ok(())
}

/// Resolves a checkpoint id (a commit prefix) to a full commit id.
pub fn resolve_commit(worktree: &Path, id: &str) -> Result<String> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{id:?} is not a checkpoint id: `lanes checkpoints` lists them");
    }
    git(worktree, None, &["rev-parse", "--verify", "--quiet", &format!("{id}^{{commit}}")])
        .map_err(|_| anyhow::anyhow!("no checkpoint {id}: `lanes checkpoints` lists them"))
}
