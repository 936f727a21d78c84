//! Finds the git worktree, git dir and common dir around a path by reading `.git` files, without running
//! git: the hook runs on every tool call and cannot afford a process spawn.

use std::io;
use std::path::{Path, PathBuf};

/// Where a path sits in git terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoLocation {
    /// The worktree's top level.
    pub worktree: PathBuf,
    /// The worktree's git dir (`.git` of the main worktree, `.git/worktrees/<name>` of a linked one).
    pub git_dir: PathBuf,
    /// The repository's common dir, shared by all its worktrees; it keys the sidecar.
    pub common_dir: PathBuf,
}

impl RepoLocation {
    /// Finds the worktree containing `start` (a directory), walking up. All paths are canonical.
    pub fn discover(start: &Path) -> io::Result<RepoLocation> {
        let start = start.canonicalize()?;
        for dir in start.ancestors() {
            let dot_git = dir.join(".git");
            let Ok(meta) = std::fs::metadata(&dot_git) else { continue };
            let git_dir = if meta.is_dir() { dot_git } else { read_gitdir_file(&dot_git)? };
            let common_dir = match std::fs::read_to_string(git_dir.join("commondir")) {
                Ok(text) => git_dir.join(text.trim()).canonicalize()?,
                Err(_) => git_dir.clone(),
            };
            return Ok(RepoLocation { worktree: dir.to_path_buf(), git_dir, common_dir });
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not inside a git repository: run lanes from a git worktree", start.display()),
        ))
    }
}

impl RepoLocation {
    /// A ref's commit, read from its loose file or from packed-refs, without running git (`None` if the
    /// ref does not exist).
    pub fn read_ref(&self, reference: &str) -> Option<String> {
        for dir in [&self.git_dir, &self.common_dir] {
            if let Ok(commit) = std::fs::read_to_string(dir.join(reference)) {
                return Some(commit.trim().to_owned());
            }
        }
        let packed = std::fs::read_to_string(self.common_dir.join("packed-refs")).ok()?;
        packed.lines().find_map(|line| {
            let (commit, name) = line.split_once(' ')?;
            (name == reference).then(|| commit.to_owned())
        })
    }

    /// The commit this worktree's HEAD points at (`None` before the first commit).
    pub fn head_commit(&self) -> Option<String> {
        let head = std::fs::read_to_string(self.git_dir.join("HEAD")).ok()?;
        match head.trim().strip_prefix("ref: ") {
            Some(reference) => self.read_ref(reference),
            None => Some(head.trim().to_owned()),
        }
    }
}

/// Reads a `.git` file (`gitdir: <path>`, relative to the file's directory when not absolute).
fn read_gitdir_file(dot_git: &Path) -> io::Result<PathBuf> {
    let text = std::fs::read_to_string(dot_git)?;
    let target = text.strip_prefix("gitdir:").map(str::trim).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a valid .git file", dot_git.display()))
    })?;
    let base = dot_git.parent().unwrap_or(Path::new("/"));
    base.join(target).canonicalize()
}
