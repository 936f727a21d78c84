//! Scopes: what a claim covers. A repo-relative path (itself and everything below it), a glob, or the whole
//! repository.

use std::fmt;

use crate::glob::{self, Segment};

/// What a claim covers, normalized and relative to the repository root.
#[derive(Clone)]
pub enum Scope {
    /// The whole repository, written `.`.
    Repo,
    /// A path and everything below it, as normalized components.
    Path(Vec<String>),
    /// A glob such as `src/**/*.rs`; everything a matched path covers is covered too.
    Glob(GlobScope),
}

/// A glob scope: its normalized text and its components, matched one path component at a time.
#[derive(Clone)]
pub struct GlobScope {
    components: Vec<String>,
    literal_prefix_len: usize,
    pub(crate) segments: Vec<Segment>,
}

/// Why an input is not a valid scope. The message is ready to show to a user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScopeError(pub String);

const GLOB_META: &[char] = &['*', '?', '[', '{'];

impl Scope {
    /// Parses and normalizes a repo-relative scope: `./` and empty components are dropped, `..` is resolved,
    /// and a trailing `/` is ignored. Anything that would leave the repository is refused, never clamped.
    ///
    /// Absolute paths are the caller's job: it must make them relative to the worktree first, because only
    /// it can look at the file system (and at symlinks).
    pub fn parse(input: &str) -> Result<Scope, ScopeError> {
        if input.is_empty() {
            return Err(ScopeError("empty scope: give a path, a glob, or `.` for the whole repository".into()));
        }
        if input.contains('\0') {
            return Err(ScopeError(format!("invalid scope {input:?}: it contains a NUL byte")));
        }
        if input.starts_with('/') {
            return Err(ScopeError(format!("{input:?} is an absolute path outside the repository")));
        }
        let is_glob = input.contains(GLOB_META);
        let mut components: Vec<String> = Vec::new();
        for part in input.split('/') {
            match part {
                "" | "." => {}
                ".." if is_glob => {
                    return Err(ScopeError(format!("invalid glob {input:?}: `..` is not allowed in a glob")));
                }
                ".." => {
                    if components.pop().is_none() {
                        return Err(ScopeError(format!("{input:?} resolves outside the repository")));
                    }
                }
                _ => components.push(part.to_owned()),
            }
        }
        if !is_glob {
            return Ok(if components.is_empty() { Scope::Repo } else { Scope::Path(components) });
        }
        let segments = components
            .iter()
            .map(|c| Segment::parse(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ScopeError(format!("invalid glob {input:?}: {e}")))?;
        let literal_prefix_len = segments.iter().take_while(|s| matches!(s, Segment::Literal(_))).count();
        Ok(Scope::Glob(GlobScope { components, literal_prefix_len, segments }))
    }

    /// Whether some path is covered by both scopes. Conservative for two globs: it may say yes when no file
    /// can match both, never no when one can.
    pub fn overlaps(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::Repo, _) | (_, Scope::Repo) => true,
            (Scope::Path(a), Scope::Path(b)) => a.iter().zip(b).all(|(x, y)| x == y),
            (Scope::Path(p), Scope::Glob(g)) | (Scope::Glob(g), Scope::Path(p)) => {
                glob::path_meets_glob(p, &g.segments)
            }
            (Scope::Glob(a), Scope::Glob(b)) => glob::glob_meets_glob(&a.segments, &b.segments),
        }
    }

    /// Whether this scope covers `path` (a file or directory path relative to the repository root).
    pub fn covers(&self, path: &[String]) -> bool {
        match self {
            Scope::Repo => true,
            Scope::Path(p) => p.len() <= path.len() && p.iter().zip(path).all(|(x, y)| x == y),
            Scope::Glob(g) => glob::glob_matches_prefix(path, &g.segments),
        }
    }

    /// The components under which everything this scope covers lies: the path itself, or a glob's leading
    /// literal components. The overlap index files the scope under this key.
    pub fn index_key(&self) -> &[String] {
        match self {
            Scope::Repo => &[],
            Scope::Path(p) => p,
            Scope::Glob(g) => g.literal_prefix(),
        }
    }
}

impl GlobScope {
    fn literal_prefix(&self) -> &[String] {
        &self.components[..self.literal_prefix_len]
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Repo => f.write_str("."),
            Scope::Path(components) => f.write_str(&components.join("/")),
            Scope::Glob(g) => f.write_str(&g.components.join("/")),
        }
    }
}

/// Shows the normalized text: the compiled matchers inside a glob are noise in test failures and logs.
impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({:?})", self.to_string())
    }
}

/// Scopes are equal when their normalized text is: `src/` and `./src` are the same scope.
impl PartialEq for Scope {
    fn eq(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::Repo, Scope::Repo) => true,
            (Scope::Path(a), Scope::Path(b)) => a == b,
            (Scope::Glob(a), Scope::Glob(b)) => a.components == b.components,
            _ => false,
        }
    }
}

impl Eq for Scope {}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> Scope {
        Scope::parse(s).expect("valid scope")
    }

    #[test]
    fn normalizes_lexically() {
        assert_eq!(scope("./src//a.rs").to_string(), "src/a.rs");
        assert_eq!(scope("src/").to_string(), "src");
        assert_eq!(scope("src/x/../a.rs").to_string(), "src/a.rs");
        assert_eq!(scope(".").to_string(), ".");
        assert_eq!(scope("./").to_string(), ".");
        assert_eq!(scope("a/..").to_string(), ".");
        assert_eq!(scope("src//**/*.rs").to_string(), "src/**/*.rs");
    }

    #[test]
    fn refuses_escapes_and_garbage() {
        for bad in ["..", "../x", "a/../../b", "/etc/passwd", "", "a\0b", "src/../*.rs"] {
            assert!(Scope::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Scope::parse("src/[a").is_err());
    }

    #[test]
    fn paths_cover_component_wise() {
        assert!(scope("src/a.rs").overlaps(&scope("src/a.rs")));
        assert!(scope("src").overlaps(&scope("src/a.rs")));
        assert!(!scope("src/a.rs").overlaps(&scope("src/a.rsx")));
        assert!(!scope("src/a").overlaps(&scope("src/ab")));
        assert!(scope(".").overlaps(&scope("x/y")));
    }

    #[test]
    fn globs_against_paths() {
        assert!(scope("src/**/*.rs").overlaps(&scope("src/a/b.rs")));
        assert!(scope("src/**/*.rs").overlaps(&scope("src")));
        assert!(scope("src/*.rs").overlaps(&scope("src/a.rs")));
        assert!(!scope("src/*.rs").overlaps(&scope("src/a.txt")));
        assert!(!scope("src/*.rs").overlaps(&scope("docs")));
        // A matched directory covers what is below it, as a path scope would.
        assert!(scope("src/*").overlaps(&scope("src/sub/deep.rs")));
        assert!(scope("**").overlaps(&scope("anything/at/all")));
    }

    #[test]
    fn globs_against_globs() {
        assert!(scope("src/*.rs").overlaps(&scope("src/a.*")));
        assert!(scope("**/*.rs").overlaps(&scope("docs/*.md/x.rs")));
        assert!(!scope("src/*.rs").overlaps(&scope("docs/*.rs")));
        assert!(!scope("src/a/*.rs").overlaps(&scope("src/b/*.rs")));
        assert!(scope("src/**").overlaps(&scope("src/b/*.rs")));
    }
}
