//! A hermetic test environment: a temporary HOME and runtime dir, isolated git config, git repositories
//! with worktrees, and helpers to run `lanes` and to talk to its sidecar's socket directly.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

pub use lanes_test_support::{eventually, kill9, process_gone};

/// A temporary world for one test. Dropping it stops every sidecar it started.
pub struct TestEnv {
    world: lanes_test_support::Hermetic,
    repos: std::cell::RefCell<Vec<PathBuf>>,
}

/// The result of one `lanes` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout parsed as the one JSON object `--json` promises.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not one JSON object ({e}): {:?}\nstderr: {}", self.stdout, self.stderr)
        })
    }

    #[track_caller]
    pub fn success(self) -> Run {
        assert_eq!(self.code, 0, "lanes failed\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv { world: lanes_test_support::Hermetic::new("lt", "5m"), repos: std::cell::RefCell::new(Vec::new()) }
    }

    pub fn root(&self) -> PathBuf {
        self.world.root().to_path_buf()
    }

    /// Applies the hermetic environment to a command.
    pub fn hermetic<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        self.world.apply(command)
    }

    /// A command running `lanes` in `dir`.
    pub fn lanes_command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lanes"));
        self.hermetic(&mut command).current_dir(dir).args(args).stdin(Stdio::null());
        command
    }

    /// Runs `lanes` in `dir` and collects its output.
    pub fn lanes(&self, dir: &Path, args: &[&str]) -> Run {
        let output = self.lanes_command(dir, args).output().expect("run lanes");
        run_of(output)
    }

    /// Runs git in `dir`, which must succeed.
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        self.world.git(dir, args)
    }

    /// A new repository with one commit (`src/a.rs`, `src/b.rs`, `docs/guide.md`); returns its worktree.
    pub fn repo(&self, name: &str) -> PathBuf {
        let dir = self.root().join(name);
        std::fs::create_dir_all(dir.join("src")).expect("mkdir");
        std::fs::create_dir_all(dir.join("docs")).expect("mkdir");
        std::fs::write(dir.join("src/a.rs"), "fn a() {}\n").expect("write");
        std::fs::write(dir.join("src/b.rs"), "fn b() {}\n").expect("write");
        std::fs::write(dir.join("docs/guide.md"), "# guide\n").expect("write");
        self.git(&dir, &["init", "-q", "-b", "main"]);
        self.git(&dir, &["add", "-A"]);
        self.git(&dir, &["commit", "-q", "-m", "initial"]);
        self.repos.borrow_mut().push(dir.clone());
        dir
    }

    /// A clone of `upstream` (which becomes its origin); returns its worktree.
    pub fn clone_of(&self, upstream: &Path, name: &str) -> PathBuf {
        let dir = self.root().join(name);
        self.git(&self.root(), &["clone", "-q", &upstream.to_string_lossy(), &dir.to_string_lossy()]);
        self.repos.borrow_mut().push(dir.clone());
        dir
    }

    /// Adds a linked worktree on a new branch; returns its path.
    pub fn worktree(&self, repo: &Path, name: &str) -> PathBuf {
        let path = self.root().join(name);
        self.git(repo, &["worktree", "add", "-q", "-b", name, &path.to_string_lossy()]);
        path
    }

    /// Starts the repository's sidecar and returns its socket path and pid.
    pub fn start_sidecar(&self, repo: &Path) -> (PathBuf, u32) {
        let status = self.lanes(repo, &["sidecar", "start", "--json"]).success().json();
        (PathBuf::from(status["socket"].as_str().expect("socket")), status["pid"].as_u64().expect("pid") as u32)
    }

    /// The pid of the running sidecar, if one answers.
    pub fn sidecar_pid(&self, repo: &Path) -> Option<u32> {
        let run = self.lanes(repo, &["sidecar", "status", "--json"]);
        let status = run.json();
        (status["running"] == true).then(|| status["pid"].as_u64().expect("pid") as u32)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for repo in self.repos.borrow().iter() {
            let _ = self.lanes_command(repo, &["sidecar", "stop"]).output();
        }
    }
}

pub fn run_of(output: Output) -> Run {
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `lanes-hook claude <event>` with `input` on stdin, as Claude Code would; it must exit 0.
pub fn hook(env: &TestEnv, event: &str, input: Value) -> Run {
    let hook = PathBuf::from(env!("CARGO_BIN_EXE_lanes")).with_file_name("lanes-hook");
    let mut child = env
        .hermetic(&mut Command::new(hook))
        .args(["claude", event])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hook");
    child.stdin.take().expect("stdin").write_all(input.to_string().as_bytes()).expect("write");
    let run = run_of(child.wait_with_output().expect("hook"));
    assert_eq!(run.code, 0, "lanes-hook claude {event}: {}", run.stderr);
    run
}

/// A raw line-oriented connection to a sidecar socket.
pub struct Wire {
    reader: BufReader<UnixStream>,
}

impl Wire {
    pub fn connect(socket: &Path) -> Wire {
        let stream = UnixStream::connect(socket).expect("connect to sidecar");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        Wire { reader: BufReader::new(stream) }
    }

    /// Sends raw bytes (a newline is not added).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("write");
    }

    /// Reads one reply line as JSON.
    pub fn read(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read reply");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {line:?}"))
    }

    /// Sends one request object and reads its reply.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let request = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        self.send_raw(format!("{request}\n").as_bytes());
        self.read()
    }
}

/// The uid of this process.
pub fn current_uid() -> u32 {
    lanes_proto::paths::current_uid()
}

/// Random JSON-RPC params for fuzzing: objects whose keys mostly come from the contract's field names, with
/// nested values of every JSON type (and some paths and ids that look real).
pub fn arbitrary_params() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    const KEYS: &[&str] = &[
        "session",
        "worktree",
        "scopes",
        "claims",
        "claim",
        "all",
        "epoch",
        "ttl_secs",
        "to",
        "text",
        "mode",
        "note",
        "task",
        "paths",
        "files",
        "since",
        "limit",
        "project",
        "origin",
        "id",
        "holder",
        "upto",
        "after",
        "events",
        "protocol",
        "client",
        "version",
        "title",
        "after_ids",
        "cwd",
        "name",
        "checkpoint",
        "commit",
        "dry_run",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "[^\n]{0,24}".prop_map(Value::from),
        prop::sample::select(vec!["src/a.rs", "..", "../../etc/passwd", "/", "*", "**/*.rs", "a/b", "", "exclusive"])
            .prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned), value, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}
