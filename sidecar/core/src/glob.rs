//! Component-wise glob matching, written so that overlap questions (may this glob match this path, or
//! something below or above it? may two globs match a common path?) have exact or conservative answers.

use globset::{Glob, GlobBuilder, GlobMatcher};

/// One component of a glob.
#[derive(Clone, Debug)]
pub(crate) enum Segment {
    /// A component without wildcards; matches only itself.
    Literal(String),
    /// A component with wildcards, such as `*.rs`; never matches across `/`.
    Pattern(GlobMatcher),
    /// `**`: zero or more whole components.
    AnyDepth,
}

impl Segment {
    pub(crate) fn parse(component: &str) -> Result<Segment, globset::Error> {
        if component == "**" {
            return Ok(Segment::AnyDepth);
        }
        if !component.contains(['*', '?', '[', '{']) {
            return Ok(Segment::Literal(component.to_owned()));
        }
        let glob: Glob = GlobBuilder::new(component).literal_separator(true).build()?;
        Ok(Segment::Pattern(glob.compile_matcher()))
    }

    fn matches(&self, component: &str) -> bool {
        match self {
            Segment::Literal(l) => l == component,
            Segment::Pattern(m) => m.is_match(component),
            Segment::AnyDepth => true,
        }
    }

    /// Whether some single component may match both segments. Two wildcard patterns are assumed to meet.
    fn may_meet(&self, other: &Segment) -> bool {
        match (self, other) {
            (Segment::Literal(a), Segment::Literal(b)) => a == b,
            (Segment::Literal(l), s) | (s, Segment::Literal(l)) => s.matches(l),
            _ => true,
        }
    }
}

/// The set of glob positions reachable after reading some path components, as a bit per position.
struct Positions(Vec<bool>);

impl Positions {
    fn start(glob: &[Segment]) -> Positions {
        let mut set = vec![false; glob.len() + 1];
        set[0] = true;
        Positions(set).closed(glob)
    }

    /// Adds the positions reachable by letting a `**` match zero components.
    fn closed(mut self, glob: &[Segment]) -> Positions {
        for (i, segment) in glob.iter().enumerate() {
            if self.0[i] && matches!(segment, Segment::AnyDepth) {
                self.0[i + 1] = true;
            }
        }
        self
    }

    fn step(&self, glob: &[Segment], component: &str) -> Positions {
        let mut next = vec![false; glob.len() + 1];
        for (i, segment) in glob.iter().enumerate() {
            if !self.0[i] {
                continue;
            }
            match segment {
                Segment::AnyDepth => next[i] = true,
                s if s.matches(component) => next[i + 1] = true,
                _ => {}
            }
        }
        Positions(next).closed(glob)
    }

    fn complete(&self) -> bool {
        self.0.last().copied().unwrap_or(false)
    }

    fn alive(&self) -> bool {
        self.0.iter().any(|&b| b)
    }
}

/// Whether the glob matches `path` or one of its ancestors (and so covers `path`).
pub(crate) fn glob_matches_prefix(path: &[String], glob: &[Segment]) -> bool {
    let mut positions = Positions::start(glob);
    for component in path {
        positions = positions.step(glob, component);
        if positions.complete() {
            return true;
        }
        if !positions.alive() {
            return false;
        }
    }
    false
}

/// Whether a path scope and a glob scope cover a common path: the glob matches the path, an ancestor of it,
/// or may match something below it.
pub(crate) fn path_meets_glob(path: &[String], glob: &[Segment]) -> bool {
    let mut positions = Positions::start(glob);
    if positions.complete() {
        return true;
    }
    for component in path {
        positions = positions.step(glob, component);
        if positions.complete() {
            return true;
        }
        if !positions.alive() {
            return false;
        }
    }
    true
}

/// Whether two globs may cover a common path. Walks both globs in step; as soon as one has matched a whole
/// path while the other is still alive, the other can match that path or something below it.
pub(crate) fn glob_meets_glob(a: &[Segment], b: &[Segment]) -> bool {
    let width = b.len() + 1;
    let mut seen = vec![false; (a.len() + 1) * width];
    let mut pending = vec![(0usize, 0usize)];
    while let Some((i, j)) = pending.pop() {
        if std::mem::replace(&mut seen[i * width + j], true) {
            continue;
        }
        if i == a.len() || j == b.len() {
            return true;
        }
        let (sa, sb) = (&a[i], &b[j]);
        if matches!(sa, Segment::AnyDepth) {
            pending.push((i + 1, j));
        }
        if matches!(sb, Segment::AnyDepth) {
            pending.push((i, j + 1));
        }
        if sa.may_meet(sb) {
            let ni = if matches!(sa, Segment::AnyDepth) { i } else { i + 1 };
            let nj = if matches!(sb, Segment::AnyDepth) { j } else { j + 1 };
            pending.push((ni, nj));
        }
    }
    false
}
