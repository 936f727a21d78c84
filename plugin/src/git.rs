//! Git hooks: `lanes-hook git <hook> [args]` for prepare-commit-msg and commit-msg (stamp `Lanes-*`
//! trailers: the first for `-m`/`-F` commits, the second for messages written in the editor), post-commit
//! and post-rewrite (record which sessions a commit names). A commit never fails or waits on lanes: the
//! sidecar is only asked when it already runs, within a short bound, and every error is ignored. The hot
//! path spawns no git process when `LANES_SESSION` is set: trailers are written here, HEAD is read from files.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lanes_proto::client::Client;
use lanes_proto::paths::SidecarPaths;
use lanes_proto::repo::RepoLocation;
use lanes_proto::{RecordParams, StampParams, StampReply, method};

/// How long a git hook waits for the sidecar.
const BUDGET: Duration = Duration::from_millis(250);
const SESSION_KEY: &str = "Lanes-Session";
const CHECKPOINT_KEY: &str = "Lanes-Checkpoint";

/// Handles one git hook; `false` when the commit must not go ahead (only the pre-commit guard refuses).
pub fn handle(hook: &str, args: &[&str]) -> bool {
    let Ok(cwd) = std::env::current_dir() else { return true };
    let Ok(location) = RepoLocation::discover(&cwd) else { return true };
    match hook {
        "pre-commit" => return pre_commit(&location),
        "prepare-commit-msg" => {
            if let Some(file) = args.first() {
                prepare_commit_msg(&location, Path::new(file), args.get(1).copied());
            }
        }
        "commit-msg" => {
            if let Some(file) = args.first() {
                commit_msg(&location, Path::new(file));
            }
        }
        "post-commit" => post_commit(&location),
        "post-rewrite" => post_rewrite(&location),
        _ => {}
    }
    true
}

/// The commit guard (DESIGN.md §8): a commit that stages a path inside another principal's live claim or
/// pending work is refused, naming the holder and the way out. Merges are not checked, and with no sidecar
/// running the commit goes ahead.
fn pre_commit(location: &RepoLocation) -> bool {
    if location.git_dir.join("MERGE_HEAD").exists() {
        return true;
    }
    let Some(mut client) = connect(location) else { return true };
    let Some(staged) = git(&location.worktree, &["diff", "--cached", "--name-only", "-z", "--no-renames"]) else {
        return true;
    };
    let files: Vec<String> = staged.split('\0').filter(|f| !f.is_empty()).map(str::to_owned).collect();
    if files.is_empty() {
        return true;
    }
    let params = lanes_proto::CommitCheckParams {
        session: std::env::var("LANES_SESSION").ok().filter(|s| !s.is_empty()),
        worktree: location.worktree.to_string_lossy().into_owned(),
        files,
    };
    let Ok(reply) = client.call::<_, lanes_proto::CommitCheckReply>(method::COMMIT_CHECK, &params) else { return true };
    if reply.conflicts.is_empty() || reply.guard == "off" {
        return true;
    }
    let holders: Vec<String> = reply
        .conflicts
        .iter()
        .map(|c| match (&c.session, c.pending) {
            (None, _) => format!("  {}: uncommitted work in {} that no agent claimed", c.scope, c.worktree),
            (Some(s), true) => {
                format!("  {}: pending work of {s} in {} (claim {}), not landed", c.scope, c.worktree, c.claim_id)
            }
            (Some(s), false) => format!("  {}: claimed by {s} in {} (claim {})", c.scope, c.worktree, c.claim_id),
        })
        .collect();
    let refuse = reply.guard == "refuse";
    eprintln!(
        "lanes: this commit stages files other agents hold:\n{}\n{}",
        holders.join("\n"),
        if refuse {
            "Unstage them (`git restore --staged <path>`) or agree with the holder first (`lanes send <session> \
             <text>`); to commit anyway: `git commit --no-verify`. ([git] guard = \"warn\" only warns.)"
        } else {
            "Committing anyway ([git] guard = \"warn\")."
        }
    );
    !refuse
}

fn prepare_commit_msg(location: &RepoLocation, message_file: &Path, source: Option<&str>) {
    if matches!(source, Some("merge" | "squash")) || replaying(&location.git_dir) {
        return;
    }
    stamp(location, message_file);
}

/// After the editor: stamps a message prepare-commit-msg could not (it had no text yet).
fn commit_msg(location: &RepoLocation, message_file: &Path) {
    let merging = ["MERGE_HEAD", "SQUASH_MSG"].iter().any(|f| location.git_dir.join(f).exists());
    let stamped = std::fs::read_to_string(message_file).is_ok_and(|m| m.lines().any(|l| l.starts_with(SESSION_KEY)));
    if merging || stamped || replaying(&location.git_dir) {
        return;
    }
    stamp(location, message_file);
}

/// Asks the sidecar which sessions the commit names and writes their trailers into the message file.
fn stamp(location: &RepoLocation, message_file: &Path) {
    let Some(mut client) = connect(location) else { return };
    let session = std::env::var("LANES_SESSION").ok().filter(|s| !s.is_empty());
    // Without a session the sidecar looks for sessions that edited the staged files since the last commit.
    let (files, since_ms) = if session.is_some() {
        (Vec::new(), 0)
    } else {
        let files = git(&location.worktree, &["diff", "--cached", "--name-only"])
            .map(|out| out.lines().map(str::to_owned).collect())
            .unwrap_or_default();
        let since = git(&location.worktree, &["log", "-1", "--format=%ct"])
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map_or(0, |secs| secs * 1000);
        (files, since)
    };
    let params =
        StampParams { session, files, since_ms, worktree: Some(location.worktree.to_string_lossy().into_owned()) };
    let Ok(reply) = client.call::<_, StampReply>(method::COMMIT_STAMP, &params) else { return };
    if reply.sessions.is_empty() {
        return;
    }
    let Ok(message) = std::fs::read_to_string(message_file) else { return };
    let sessions: Vec<&str> = reply.sessions.iter().map(|s| s.session.as_str()).collect();
    let checkpoint = reply.sessions.iter().find_map(|s| s.checkpoint.as_deref());
    let style = MessageStyle::of(&location.worktree);
    if let Some(stamped) = add_trailers(&message, &sessions, checkpoint, &style) {
        let _ = std::fs::write(message_file, stamped);
    }
}

fn post_commit(location: &RepoLocation) {
    let Some(commit) = location.head_commit() else { return };
    let Some(mut client) = connect(location) else { return };
    let worktree = Some(location.worktree.to_string_lossy().into_owned());
    let params = RecordParams { commit, sessions: Vec::new(), checkpoint: None, rewritten_from: None, worktree };
    let _ = client.call_value(method::COMMIT_RECORD, &params);
}

/// Amend and rebase keep the message (and so the trailers); the sidecar copies its record of the old commit.
fn post_rewrite(location: &RepoLocation) {
    let mut input = String::new();
    if std::io::stdin().take(1024 * 1024).read_to_string(&mut input).is_err() {
        return;
    }
    let Some(mut client) = connect(location) else { return };
    for line in input.lines() {
        let mut parts = line.split_whitespace();
        let (Some(old), Some(new)) = (parts.next(), parts.next()) else { continue };
        let params = RecordParams {
            commit: new.to_owned(),
            sessions: Vec::new(),
            checkpoint: None,
            rewritten_from: Some(old.to_owned()),
            worktree: None,
        };
        let _ = client.call_value(method::COMMIT_RECORD, &params);
    }
}

/// How git will clean up the message file: what counts as a comment, and whether comments are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageStyle {
    /// `core.commentChar` (`#` by default).
    pub comment: char,
    /// `commit.cleanup = verbatim`: comment lines are part of the message.
    pub verbatim: bool,
}

impl Default for MessageStyle {
    fn default() -> MessageStyle {
        MessageStyle { comment: '#', verbatim: false }
    }
}

impl MessageStyle {
    /// Reads `commit.cleanup` and `core.commentChar` with one git call.
    fn of(worktree: &Path) -> MessageStyle {
        let mut style = MessageStyle::default();
        let config = git(worktree, &["config", "--get-regexp", r"^(commit\.cleanup|core\.commentchar)$"]);
        for line in config.unwrap_or_default().lines() {
            match line.split_once(' ') {
                Some(("commit.cleanup", mode)) => style.verbatim = mode.trim() == "verbatim",
                Some(("core.commentchar", c)) if c.trim().chars().count() == 1 => {
                    style.comment = c.trim().chars().next().unwrap_or('#');
                }
                _ => {}
            }
        }
        style
    }

    /// git's scissors line (`git commit -v`, `commit.cleanup = scissors`): everything from it on is cut.
    fn is_scissors(&self, line: &str) -> bool {
        line.strip_prefix(self.comment) == Some(" ------------------------ >8 ------------------------")
    }
}

/// Adds `Lanes-Session` (one per session, never duplicated) and `Lanes-Checkpoint` (replacing an older one)
/// to the message's final trailer block, or starts one. Comment lines at the end stay at the end, and the
/// trailers go above git's scissors line (whatever is below it is cut); with `commit.cleanup = verbatim`
/// comments are message text and the trailers follow its last line. A message with no text yet gets
/// nothing, so an empty commit message still aborts the commit.
pub fn add_trailers(
    message: &str,
    sessions: &[&str],
    checkpoint: Option<&str>,
    style: &MessageStyle,
) -> Option<String> {
    // Split on '\n' alone: a '\r' is part of a line's text, so stamping twice gives what stamping once did.
    let mut lines: Vec<&str> = message.split('\n').collect();
    let cut: Vec<&str> = match lines.iter().position(|l| style.is_scissors(l)) {
        Some(scissors) => lines.split_off(scissors),
        None => Vec::new(),
    };
    if cut.is_empty() && lines.last() == Some(&"") {
        lines.pop();
    }
    let is_comment = |line: &str| !style.verbatim && line.starts_with(style.comment);
    let last_text = lines.iter().rposition(|l| !l.trim().is_empty() && !is_comment(l))?;
    let (body, tail) = lines.split_at(last_text + 1);
    let block_start = body.iter().rposition(|l| l.trim().is_empty()).map_or(0, |blank| blank + 1);
    let block: Vec<&str> = body[block_start..].iter().copied().filter(|l| !is_comment(l)).collect();
    let is_trailer_block = block_start > 0 && !block.is_empty() && block.iter().all(|l| is_trailer_line(l));

    let mut out: Vec<String> = body.iter().map(|l| (*l).to_owned()).collect();
    if is_trailer_block {
        if checkpoint.is_some() {
            let start = block_start;
            let kept: Vec<String> =
                out.split_off(start).into_iter().filter(|l| trailer_key(l) != Some(CHECKPOINT_KEY)).collect();
            out.extend(kept);
        }
    } else {
        out.push(String::new());
    }
    for session in sessions {
        let line = format!("{SESSION_KEY}: {session}");
        if !(is_trailer_block && body[block_start..].contains(&line.as_str())) {
            out.push(line);
        }
    }
    if let Some(checkpoint) = checkpoint {
        out.push(format!("{CHECKPOINT_KEY}: {checkpoint}"));
    }
    out.extend(tail.iter().map(|l| (*l).to_owned()));
    out.extend(cut.iter().map(|l| (*l).to_owned()));
    let mut text = out.join("\n");
    if cut.is_empty() {
        text.push('\n');
    }
    Some(text)
}

fn trailer_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once(':')?;
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then_some(key)
}

/// `Key: value`, or a continuation line of the previous trailer.
fn is_trailer_line(line: &str) -> bool {
    trailer_key(line).is_some() || line.starts_with([' ', '\t'])
}

/// Whether git is replaying or merging commits (rebase, cherry-pick, revert, merge): those keep their original
/// trailers. A single revert leaves no REVERT_HEAD, but its message comes through MERGE_MSG like the others.
fn replaying(git_dir: &Path) -> bool {
    ["rebase-merge", "rebase-apply", "CHERRY_PICK_HEAD", "REVERT_HEAD", "MERGE_MSG", "sequencer"]
        .iter()
        .any(|p| git_dir.join(p).exists())
}

/// A connection to the sidecar if it is running; a git hook never starts one.
fn connect(location: &RepoLocation) -> Option<Client> {
    let paths = SidecarPaths::for_common_dir(&location.common_dir);
    Client::connect(&paths.socket, BUDGET).ok()
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").current_dir(dir).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{MessageStyle, add_trailers};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// Stamping keeps every line of the message, adds the session once however often it runs, and a
        /// message with text always ends up with exactly one Lanes-Checkpoint.
        #[test]
        fn stamping_is_idempotent_and_keeps_the_message(
            lines in prop::collection::vec("(#.{0,10}|[A-Za-z-]{1,8}: .{0,10}|.{0,20}|)", 0..8),
        ) {
            let message = lines.join("\n");
            if let Some(once) = add_trailers(&message, &["s1"], Some("abc"), &MessageStyle::default()) {
                let twice = add_trailers(&once, &["s1"], Some("abc"), &MessageStyle::default()).expect("still has text");
                prop_assert_eq!(&once, &twice);
                prop_assert_eq!(once.lines().filter(|l| *l == "Lanes-Session: s1").count(), 1);
                prop_assert_eq!(once.lines().filter(|l| l.starts_with("Lanes-Checkpoint:")).count(), 1);
                for line in message.split('\n').filter(|l| !l.is_empty() && !l.starts_with("Lanes-")) {
                    prop_assert!(once.split('\n').any(|l| l == line), "lost {:?}", line);
                }
            } else {
                prop_assert!(message.lines().all(|l| l.trim().is_empty() || l.starts_with('#')));
            }
        }
    }

    #[test]
    fn trailers_join_the_final_block_once() {
        let stamp = |m: &str| {
            add_trailers(m, &["s1"], Some("abc"), &MessageStyle::default()).unwrap_or_else(|| "<none>".into())
        };
        assert_eq!(stamp("subject\n"), "subject\n\nLanes-Session: s1\nLanes-Checkpoint: abc\n");
        assert_eq!(
            stamp("subject\n\nbody text\n\nSigned-off-by: A <a@x>\n"),
            "subject\n\nbody text\n\nSigned-off-by: A <a@x>\nLanes-Session: s1\nLanes-Checkpoint: abc\n"
        );
        // Amend: the session is not repeated, the checkpoint is replaced.
        assert_eq!(
            stamp("subject\n\nLanes-Session: s1\nLanes-Checkpoint: old\nCo-authored-by: B <b@x>\n"),
            "subject\n\nLanes-Session: s1\nCo-authored-by: B <b@x>\nLanes-Checkpoint: abc\n"
        );
        // A subject that looks like a trailer is not a trailer block.
        assert_eq!(stamp("fix: the parser\n"), "fix: the parser\n\nLanes-Session: s1\nLanes-Checkpoint: abc\n");
        // Comments (an editor commit) stay last.
        assert_eq!(
            stamp("subject\n# Please enter the commit message\n# Lines starting with '#' are ignored\n"),
            "subject\n\nLanes-Session: s1\nLanes-Checkpoint: abc\n# Please enter the commit message\n# Lines starting with '#' are ignored\n"
        );
        // Nothing written yet: nothing added, so git still aborts an empty message.
        assert_eq!(stamp("\n# Please enter the commit message\n"), "<none>");
        assert_eq!(
            add_trailers("s\n", &["a", "b"], None, &MessageStyle::default()).as_deref(),
            Some("s\n\nLanes-Session: a\nLanes-Session: b\n")
        );
    }

    #[test]
    fn trailers_go_above_the_scissors_line_and_after_verbatim_comments() {
        let verbose = "subject\n\n# Please enter the commit message\n# ------------------------ >8 ------------------------\n# Do not modify or remove the line above.\ndiff --git a/x b/x\n+added\n";
        let stamped = add_trailers(verbose, &["s1"], None, &MessageStyle::default()).expect("stamped");
        assert_eq!(
            stamped,
            "subject\n\nLanes-Session: s1\n\n# Please enter the commit message\n# ------------------------ >8 ------------------------\n# Do not modify or remove the line above.\ndiff --git a/x b/x\n+added\n"
        );
        let verbatim = MessageStyle { verbatim: true, ..MessageStyle::default() };
        assert_eq!(
            add_trailers("subject\n# kept as text\n", &["s1"], None, &verbatim).as_deref(),
            Some("subject\n# kept as text\n\nLanes-Session: s1\n")
        );
        let semicolon = MessageStyle { comment: ';', verbatim: false };
        assert_eq!(
            add_trailers(
                "subject\n; ------------------------ >8 ------------------------\nx\n",
                &["s1"],
                None,
                &semicolon
            )
            .as_deref(),
            Some("subject\n\nLanes-Session: s1\n; ------------------------ >8 ------------------------\nx\n")
        );
    }
}
