//! `lanes-hook`: the per-event client that Claude Code and git hooks run. Plain std, fail-open: whatever
//! goes wrong, it exits 0 and prints nothing, so an editor or a commit never waits on lanes.

#![forbid(unsafe_code)]

fn main() {}
