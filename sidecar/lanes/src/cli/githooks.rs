//! Installing and removing lanes' git hooks (prepare-commit-msg, commit-msg, post-commit, post-rewrite) where
//! `git rev-parse --git-path hooks` points, so core.hooksPath (husky, lefthook) and linked worktrees are
//! honoured. A hook that was already there is kept and run first; re-running changes nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const SHIM: &str = include_str!("../../../../templates/git-hook.sh");
const MARKER: &str = "# lanes: installed by `lanes init`";
/// The hooks lanes installs.
pub const HOOKS: [&str; 5] = ["pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "post-rewrite"];

/// What happened to one hook.
#[derive(Debug)]
pub struct Outcome {
    pub hook: &'static str,
    pub path: PathBuf,
    pub action: &'static str,
}

/// The directory git runs hooks from for this worktree.
pub fn hooks_dir(worktree: &Path) -> Result<PathBuf> {
    let output = Command::new("git")
        .current_dir(worktree)
        .args(["rev-parse", "--git-path", "hooks"])
        .output()
        .context("failed to run git")?;
    if !output.status.success() {
        bail!("git rev-parse --git-path hooks failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    Ok(if dir.is_absolute() { dir } else { worktree.join(dir) })
}

pub fn install(worktree: &Path) -> Result<Vec<Outcome>> {
    let dir = hooks_dir(worktree)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    HOOKS
        .iter()
        .map(|hook| {
            let path = dir.join(hook);
            let chained = dir.join(format!("{hook}.lanes-chained"));
            let shim = SHIM.replace("HOOK", hook);
            let action = match std::fs::read_to_string(&path) {
                Ok(text) if text == shim => return Ok(Outcome { hook, path, action: "already installed" }),
                // An older lanes shim: replaced by this version's.
                Ok(text) if text.contains(MARKER) => "updated",
                Ok(_) if chained.exists() => {
                    bail!(
                        "{} and {} both exist; move one away and run `lanes init` again",
                        path.display(),
                        chained.display()
                    )
                }
                Ok(_) => {
                    std::fs::rename(&path, &chained).with_context(|| format!("failed to keep {}", path.display()))?;
                    "installed; runs your existing hook first"
                }
                Err(_) => "installed",
            };
            std::fs::write(&path, shim).with_context(|| format!("failed to write {}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            Ok(Outcome { hook, path, action })
        })
        .collect()
}

pub fn uninstall(worktree: &Path) -> Result<Vec<Outcome>> {
    let dir = hooks_dir(worktree)?;
    HOOKS
        .iter()
        .map(|hook| {
            let path = dir.join(hook);
            let chained = dir.join(format!("{hook}.lanes-chained"));
            let ours = std::fs::read_to_string(&path).is_ok_and(|text| text.contains(MARKER));
            let action = if !ours {
                "not installed"
            } else if chained.exists() {
                std::fs::rename(&chained, &path).with_context(|| format!("failed to restore {}", path.display()))?;
                "removed; your previous hook is back"
            } else {
                std::fs::remove_file(&path).with_context(|| format!("failed to remove {}", path.display()))?;
                "removed"
            };
            Ok(Outcome { hook, path, action })
        })
        .collect()
}
