//! Git hooks: `lanes-hook git <hook> [args]` for prepare-commit-msg (stamp `Lanes-*` trailers), post-commit
//! and post-rewrite (record which sessions a commit names). A commit never fails or waits on lanes: the
//! sidecar is only asked when it already runs, within a short bound, and every error is ignored.

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

pub fn handle(hook: &str, args: &[&str]) {
    let Ok(cwd) = std::env::current_dir() else { return };
    let Ok(location) = RepoLocation::discover(&cwd) else { return };
    match hook {
        "prepare-commit-msg" => {
            if let Some(file) = args.first() {
                prepare_commit_msg(&location, Path::new(file), args.get(1).copied());
            }
        }
        "post-commit" => post_commit(&location),
        "post-rewrite" => post_rewrite(&location),
        _ => {}
    }
}

fn prepare_commit_msg(location: &RepoLocation, message_file: &Path, source: Option<&str>) {
    if matches!(source, Some("merge" | "squash")) || replaying(&location.git_dir) {
        return;
    }
    let files: Vec<String> = git(&location.worktree, &["diff", "--cached", "--name-only"])
        .map(|out| out.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    let since_ms = git(&location.worktree, &["log", "-1", "--format=%ct"])
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map_or(0, |secs| secs * 1000);
    let session = std::env::var("LANES_SESSION").ok().filter(|s| !s.is_empty());
    let Some(mut client) = connect(location) else { return };
    let params = StampParams { session, files, since_ms };
    let Ok(reply) = client.call::<_, StampReply>(method::COMMIT_STAMP, &params) else { return };
    if reply.sessions.is_empty() {
        return;
    }
    let mut args: Vec<String> =
        vec!["interpret-trailers".into(), "--in-place".into(), "--if-exists".into(), "addIfDifferent".into()];
    for stamp in &reply.sessions {
        args.extend(["--trailer".into(), format!("Lanes-Session: {}", stamp.session)]);
    }
    if let Some(checkpoint) = reply.sessions.iter().find_map(|s| s.checkpoint.clone()) {
        args.extend([
            "--if-exists".into(),
            "replace".into(),
            "--trailer".into(),
            format!("Lanes-Checkpoint: {checkpoint}"),
        ]);
    }
    args.push(message_file.to_string_lossy().into_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ = git(&location.worktree, &args);
}

fn post_commit(location: &RepoLocation) {
    let Some((commit, sessions, checkpoint)) = trailers_of(location, "HEAD") else { return };
    if sessions.is_empty() {
        return;
    }
    let Some(mut client) = connect(location) else { return };
    let params = RecordParams { commit, sessions, checkpoint, rewritten_from: None };
    let _ = client.call_value(method::COMMIT_RECORD, &params);
}

fn post_rewrite(location: &RepoLocation) {
    let mut input = String::new();
    if std::io::stdin().take(1024 * 1024).read_to_string(&mut input).is_err() {
        return;
    }
    let Some(mut client) = connect(location) else { return };
    for line in input.lines() {
        let mut parts = line.split_whitespace();
        let (Some(old), Some(new)) = (parts.next(), parts.next()) else { continue };
        let (sessions, checkpoint) = trailers_of(location, new).map(|(_, s, c)| (s, c)).unwrap_or_default();
        let params =
            RecordParams { commit: new.to_owned(), sessions, checkpoint, rewritten_from: Some(old.to_owned()) };
        let _ = client.call_value(method::COMMIT_RECORD, &params);
    }
}

/// A commit's id and the `Lanes-Session` and `Lanes-Checkpoint` trailers of its message.
fn trailers_of(location: &RepoLocation, rev: &str) -> Option<(String, Vec<String>, Option<String>)> {
    let format = "--format=%H%x00%(trailers:key=Lanes-Session,valueonly,separator=%x2C)%x00%(trailers:key=Lanes-Checkpoint,valueonly)";
    let out = git(&location.worktree, &["show", "-s", format, rev, "--"])?;
    let mut fields = out.trim_end().split('\0');
    let commit = fields.next()?.to_owned();
    let sessions =
        fields.next().unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let checkpoint = fields.next().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    Some((commit, sessions, checkpoint))
}

/// Whether git is replaying commits (rebase, cherry-pick, revert): those keep their original trailers.
fn replaying(git_dir: &Path) -> bool {
    ["rebase-merge", "rebase-apply", "CHERRY_PICK_HEAD", "REVERT_HEAD", "sequencer"]
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
