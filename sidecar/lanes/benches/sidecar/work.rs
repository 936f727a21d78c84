//! What following the work costs (DESIGN.md §5): a repository of 10,000 files with 20 worktrees, each with
//! changes of its own. Prints the claim decision with every worktree's pending paths known (no git on that
//! path), a claim+release over the socket, the shell-edit scan after a Bash call, what the pre-commit guard adds
//! to a commit, and the sidecar's CPU at idle while it keeps the 20 worktrees' pending paths current.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lanes_core::{AcquireRequest, ClaimBook, Mode, Policy, Principal, Scope, Timestamp, Worktree, WorktreeWork};
use lanes_proto::client::Client;
use serde_json::json;

use super::{World, cpu_ticks, ms, percentiles};

const FILES: usize = 10_000;
const WORKTREES: usize = 20;
/// Files each worktree changes (and leaves uncommitted), plus new files it adds.
const CHANGED: usize = 20;
const ADDED: usize = 5;

pub fn run() {
    decision_with_pending_work();
    let world = World::new("full");
    let started = Instant::now();
    let trees = repository(&world.repo);
    println!(
        "{FILES} files, {WORKTREES} worktrees with {CHANGED} changed and {ADDED} new files each (set up in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let socket = world.start();
    // Let the sidecar's first full round (cold: private index copies, fork points) see every worktree.
    std::thread::sleep(Duration::from_secs(12));
    claim_release_with_pending_work(&socket, &trees[0]);
    shell_scan(&socket, &trees[0]);
    pre_commit(&world, &trees[1]);
    // Longer than the safety-net round (60 s with the file watcher on every worktree), so one falls inside.
    idle_refresh(&world, Duration::from_secs(65));
    world.stop();
}

/// The decision alone, in the book: 10,000 live claims and 20 worktrees' pending paths (latent work).
fn decision_with_pending_work() {
    let mut book = ClaimBook::new(Policy::default());
    let now = Timestamp(1_000_000);
    let here = Worktree { root: "/repo".into(), git_dir: "/repo/.git".into() };
    for i in 0..10_000u64 {
        let request = AcquireRequest {
            holder: Principal { session: format!("s{i}"), agent: None },
            worktree: here.clone(),
            scopes: vec![Scope::parse(&format!("dir{}/file{i}.rs", i % 100)).expect("valid")],
            mode: Mode::Exclusive,
            ttl: Some(Duration::from_secs(3600)),
            note: None,
            task: None,
        };
        book.acquire(request, now).expect("no conflicts in this layout");
    }
    for w in 0..WORKTREES {
        let paths: BTreeSet<String> = (0..CHANGED + ADDED).map(|f| format!("wt{w}/changed{f}.rs")).collect();
        book.set_worktree_work(&format!("/wt{w}"), WorktreeWork { branch: Some(format!("b{w}")), paths }, now);
    }
    let asker = Principal { session: "asker".into(), agent: None };
    let mut samples = Vec::with_capacity(10_000);
    for i in 0..10_000u64 {
        let scopes = [Scope::parse(&format!("dir{}/other{i}.rs", i % 100)).expect("valid")];
        let started = Instant::now();
        std::hint::black_box(book.holders(&asker, &here, &scopes, now));
        samples.push(started.elapsed());
    }
    let (p50, p99, max) = percentiles(samples);
    println!(
        "claim decision, 10,000 claims + {WORKTREES} worktrees' pending paths: p50 {}  p99 {}  max {}",
        ms(p50),
        ms(p99),
        ms(max)
    );
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=bench", "-c", "user.email=bench@lanes.invalid"])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// The main worktree with 10,000 committed files and 20 linked worktrees, each with changes of its own.
fn repository(repo: &Path) -> Vec<std::path::PathBuf> {
    for i in 0..FILES {
        let dir = repo.join(format!("src/d{}", i / 100));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("f{i}.rs")), format!("// file {i}\n")).expect("write");
    }
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-qm", "ten thousand files"]);
    (0..WORKTREES)
        .map(|w| {
            let tree = repo.parent().expect("parent").join(format!("wt{w}"));
            git(repo, &["worktree", "add", "-q", "-b", &format!("b{w}"), &tree.to_string_lossy()]);
            for f in 0..CHANGED {
                let i = w * 400 + f;
                std::fs::write(tree.join(format!("src/d{}/f{i}.rs", i / 100)), "// changed\n").expect("write");
            }
            for f in 0..ADDED {
                std::fs::write(tree.join(format!("src/new{w}-{f}.rs")), "// new\n").expect("write");
            }
            tree
        })
        .collect()
}

fn client(socket: &Path) -> Client {
    Client::connect(socket, Duration::from_secs(30)).expect("connect")
}

/// claim+release over the socket while every worktree's pending paths are known.
fn claim_release_with_pending_work(socket: &Path, tree: &Path) {
    let mut client = client(socket);
    let worktree = tree.to_string_lossy().into_owned();
    let mut samples = Vec::with_capacity(1000);
    for i in 0..1000 {
        let started = Instant::now();
        super::pair(&mut client, "bench", &worktree, &format!("src/d99/f{}.rs", 9900 + i % 100));
        samples.push(started.elapsed());
    }
    let (p50, p99, max) = percentiles(samples);
    println!("claim+release with pending work known:     p50 {}  p99 {}  max {}", ms(p50), ms(p99), ms(max));
}

/// The shell-edit scan the hook asks for after a Bash call: git status of a 10,000-file worktree, then a
/// claim for each path the command changed.
fn shell_scan(socket: &Path, tree: &Path) {
    let mut client = client(socket);
    let worktree = tree.to_string_lossy().into_owned();
    let mut samples = Vec::with_capacity(50);
    for i in 0..50 {
        std::fs::write(tree.join(format!("src/shell{i}.rs")), "// made by a shell command\n").expect("write");
        let started = Instant::now();
        client.call_value("worktree.scan", &json!({"session": "shell", "worktree": worktree})).expect("worktree.scan");
        samples.push(started.elapsed());
    }
    let (p50, p99, max) = percentiles(samples);
    println!("shell-edit scan after a Bash call:         p50 {}  p99 {}  max {}", ms(p50), ms(p99), ms(max));
}

/// What the pre-commit guard adds to a commit: the whole `lanes-hook git pre-commit` process (staged paths
/// from git, one question to the sidecar), as the git hook shim runs it.
fn pre_commit(world: &World, tree: &Path) {
    let hook = std::path::PathBuf::from(env!("CARGO_BIN_EXE_lanes")).with_file_name("lanes-hook");
    if !hook.is_file() {
        println!("pre-commit guard: {} is not built (cargo build --release --workspace)", hook.display());
        return;
    }
    git(tree, &["add", "-A"]);
    let mut samples = Vec::with_capacity(50);
    for _ in 0..50 {
        let started = Instant::now();
        let status = world.command(&hook.to_string_lossy()).current_dir(tree).args(["git", "pre-commit"]).status();
        samples.push(started.elapsed());
        assert!(status.is_ok_and(|s| s.success()), "the guard refused a commit of the worktree's own work");
    }
    let (p50, p99, max) = percentiles(samples);
    println!("pre-commit guard, whole hook process:      p50 {}  p99 {}  max {}", ms(p50), ms(p99), ms(max));
}

/// The sidecar's CPU (its own and its git children's) over `span` with nothing to do but keep the 20
/// worktrees' pending paths current.
fn idle_refresh(world: &World, span: Duration) {
    let pid = world.pid();
    let ticks = || cpu_ticks(pid, true);
    let before = ticks();
    std::thread::sleep(span);
    let used = (ticks() - before) as f64 / 100.0;
    println!(
        "idle refresh of {WORKTREES} worktrees:              {:.2} s CPU in {} s = {:.1}% of one core",
        used,
        span.as_secs(),
        100.0 * used / span.as_secs_f64()
    );
}
