//! Turns scope inputs from clients (relative paths, absolute paths, globs, `.`) into repo-relative scopes,
//! refusing anything outside the worktree, including through symlinks. The domain crate does the lexical
//! part; this module does what needs the file system.

use std::path::{Component, Path, PathBuf};

use lanes_core::{Scope, ScopeError};

/// Resolves one scope input given by a client working in `worktree` (a canonical worktree root).
///
/// Paths are resolved through symlinks that exist, so `link/a.rs` and `src/a.rs` are the same claim when
/// `link` points at `src`; a path that leads out of the worktree is refused, never clamped.
pub fn resolve(input: &str, worktree: &Path) -> Result<Scope, ScopeError> {
    let relative = if input.starts_with('/') {
        let absolute = lexical_normalize(Path::new(input));
        match absolute.strip_prefix(worktree) {
            Ok(rest) if rest.as_os_str().is_empty() => ".".to_owned(),
            Ok(rest) => rest.to_string_lossy().into_owned(),
            Err(_) => {
                return Err(ScopeError(format!("{input} is outside the repository (worktree {})", worktree.display())));
            }
        }
    } else {
        input.to_owned()
    };
    let scope = Scope::parse(&relative)?;
    match &scope {
        Scope::Repo => Ok(scope),
        Scope::Path(components) => resolve_symlinks(input, components, worktree),
        Scope::Glob(_) => {
            let literal = relative.split('/').take_while(|c| !c.contains(['*', '?', '[', '{'])).collect::<Vec<_>>();
            let prefix: Vec<String> =
                literal.iter().filter(|c| !c.is_empty() && **c != ".").map(|c| (*c).to_owned()).collect();
            if prefix.is_empty() {
                // `*.md`, `**/*.toml`: the glob starts at the worktree root, which is no symlink.
                return Ok(scope);
            }
            let resolved = resolve_symlinks(input, &prefix, worktree)?;
            if resolved != Scope::parse(&prefix.join("/")).unwrap_or(Scope::Repo) {
                return Err(ScopeError(format!(
                    "{input}: the glob's directory is a symlink; claim the directory it points to instead"
                )));
            }
            Ok(scope)
        }
    }
}

/// Follows the longest existing prefix of `components` through the file system and checks it stays inside
/// the worktree; returns the scope of the real path.
///
/// This is on the edit hook's path, so it walks down from the (already canonical) worktree with one `lstat`
/// per component and leaves the full `realpath` to the rare component that is a symlink.
fn resolve_symlinks(input: &str, components: &[String], worktree: &Path) -> Result<Scope, ScopeError> {
    let mut canonical: PathBuf = worktree.to_path_buf();
    let mut existing = 0;
    for component in components {
        let next = canonical.join(component);
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => match next.canonicalize() {
                Ok(target) => canonical = target,
                // A dangling link: a write through it creates its target, so the claim is on the target,
                // resolved lexically, and refused if that leaves the worktree.
                Err(_) => {
                    let target = std::fs::read_link(&next)
                        .map_err(|e| ScopeError(format!("{input}: cannot read the symlink {}: {e}", next.display())))?;
                    canonical = lexical_normalize(&canonical.join(target));
                    existing += 1;
                    break;
                }
            },
            Ok(_) => canonical = next,
            Err(_) => break,
        }
        existing += 1;
    }
    let inside = canonical.strip_prefix(worktree).map_err(|_| {
        ScopeError(format!("{input} resolves through a symlink to {}, outside the repository", canonical.display()))
    })?;
    let mut real: Vec<String> = inside.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    real.extend(components[existing..].iter().cloned());
    if real.first().is_some_and(|c| c == ".git") {
        return Err(ScopeError(format!("{input} is inside .git; claims cover work-tree files only")));
    }
    Scope::parse(&real.join("/"))
}

/// Resolves `.` and `..` without touching the file system (`..` at the root stays at the root).
fn lexical_normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        std::fs::create_dir_all(root.join("wt/src")).expect("mkdir");
        std::fs::write(root.join("wt/src/a.rs"), "").expect("write");
        std::fs::create_dir_all(root.join("outside")).expect("mkdir");
        std::os::unix::fs::symlink(root.join("outside"), root.join("wt/escape")).expect("symlink");
        std::os::unix::fs::symlink("src", root.join("wt/alias")).expect("symlink");
        (dir, root.join("wt"))
    }

    fn ok(input: &str, wt: &Path) -> String {
        resolve(input, wt).unwrap_or_else(|e| panic!("{input}: {e}")).to_string()
    }

    #[test]
    fn resolves_relative_absolute_and_symlinked_paths() {
        let (_dir, wt) = setup();
        assert_eq!(ok("src/a.rs", &wt), "src/a.rs");
        assert_eq!(ok("./src//new.rs", &wt), "src/new.rs");
        assert_eq!(ok(&format!("{}/src/a.rs", wt.display()), &wt), "src/a.rs");
        assert_eq!(ok(&wt.display().to_string(), &wt), ".");
        assert_eq!(ok(&format!("{}/src/..", wt.display()), &wt), ".");
        assert_eq!(ok("alias/a.rs", &wt), "src/a.rs");
        assert_eq!(ok("src/**/*.rs", &wt), "src/**/*.rs");
        assert_eq!(ok("*.md", &wt), "*.md");
        assert_eq!(ok("**/*.toml", &wt), "**/*.toml");
        std::os::unix::fs::symlink("src/later.rs", wt.join("dangling")).expect("symlink");
        assert_eq!(ok("dangling", &wt), "src/later.rs", "a dangling link inside is claimed as its target");
    }

    #[test]
    fn refuses_escapes() {
        let (_dir, wt) = setup();
        std::os::unix::fs::symlink(wt.join("../outside/new"), wt.join("src/dl-out")).expect("symlink");
        for bad in
            ["../x", "/etc/passwd", "escape/file", "escape", "src/../../x", "escape/*.rs", ".git/config", "src/dl-out"]
        {
            let bad = bad.to_owned();
            assert!(resolve(&bad, &wt).is_err(), "{bad} should be refused");
        }
        let sneaky = format!("{}/../outside/x", wt.display());
        assert!(resolve(&sneaky, &wt).is_err());
    }
}
