//! A throwaway world for driving the real `claude` CLI: a temporary HOME with the lanes plugin installed from
//! this checkout as a user would (local marketplace, user scope), the freshly built `lanes` and `lanes-hook`
//! on PATH, a private runtime dir, a git repository with worktrees, and the project's fake Messages API.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The pinned Claude Code version; the test set-up installs exactly this one.
pub const CLAUDE_VERSION: &str = "2.1.330";

pub use lanes_test_support::eventually;

pub struct World {
    world: lanes_test_support::Hermetic,
    pub root: PathBuf,
    pub repo: PathBuf,
    claude: PathBuf,
    bin_dir: PathBuf,
    server: Option<Child>,
    port: u16,
    pub log: PathBuf,
    running: Vec<Child>,
}

/// This crate's directory, from the running test's environment rather than the build's: CI reuses one target
/// dir across clones, and a binary built in another checkout must not look there.
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
}

/// The real client, or `None` when this machine lacks it and the suite does not require it.
pub fn claude_or_skip() -> Option<PathBuf> {
    match find_claude() {
        Ok(path) => Some(path),
        Err(why) if std::env::var_os("LANES_E2E_REQUIRED").is_some() => panic!("end-to-end tests required: {why}"),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// Where the real client is, or why it is not there.
fn find_claude() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("LANES_CLAUDE") {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let path = PathBuf::from(home).join(format!(
        ".cache/lanes/claude-code-{CLAUDE_VERSION}/node_modules/@anthropic-ai/claude-code-linux-x64/claude"
    ));
    if path.is_file() { Ok(path) } else { Err(format!("{} not found; tests/run-all.sh installs it", path.display())) }
}

impl World {
    /// A new world, or `None` when the real client is missing and the suite does not require it.
    pub fn new() -> Option<World> {
        let claude = claude_or_skip()?;
        let exe = std::env::current_exe().expect("test exe");
        let bin_dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
        for bin in ["lanes", "lanes-hook"] {
            assert!(
                bin_dir.join(bin).is_file(),
                "{bin} is not built in {}: run the workspace tests",
                bin_dir.display()
            );
        }
        let world = lanes_test_support::Hermetic::new("le", "10m");
        let root = world.root().to_path_buf();
        std::fs::create_dir_all(root.join("gates")).expect("mkdir");
        let repo = root.join("repo");
        let world = World {
            world,
            repo: repo.clone(),
            root: root.clone(),
            claude,
            bin_dir,
            server: None,
            port: 0,
            log: root.join("requests.jsonl"),
            running: Vec::new(),
        };
        std::fs::create_dir_all(repo.join("src")).expect("mkdir");
        std::fs::write(repo.join("src/a.rs"), "fn a() {}\n").expect("write");
        std::fs::write(repo.join(".gitignore"), ".claude/\n").expect("write");
        world.git(&repo, &["init", "-q", "-b", "main"]);
        world.git(&repo, &["add", "-A"]);
        world.git(&repo, &["commit", "-q", "-m", "initial"]);
        world.install_plugin();
        Some(world)
    }

    pub fn gate(&self, name: &str) -> PathBuf {
        self.root.join("gates").join(name)
    }

    pub fn open_gate(&self, name: &str) {
        std::fs::write(self.gate(name), "").expect("open gate");
    }

    /// The hermetic environment every process of this world gets, with the built binaries first on PATH and
    /// the fake model server as Claude Code's API.
    pub fn env<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        let path = format!("{}:{}", self.bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        self.world
            .apply(command)
            .env("PATH", path)
            .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{}", self.port))
            .env("ANTHROPIC_API_KEY", "dummy")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            // A tmux server of this world's own, with this world's environment.
            .env("TMUX_TMPDIR", self.root.join("run"))
            .stdin(Stdio::null())
    }

    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        let mut command = Command::new("git");
        let output = self.env(&mut command).current_dir(dir).args(args).output().expect("git");
        assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn worktree(&self, name: &str) -> PathBuf {
        let path = self.root.join(name);
        self.git(&self.repo, &["worktree", "add", "-q", "-b", name, &path.to_string_lossy()]);
        path
    }

    /// A tmux command talking to this world's tmux server.
    pub fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux").env("TMUX_TMPDIR", self.root.join("run")).args(args).output().expect("tmux")
    }

    /// The fake model server's port (once [`World::serve`] started it).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The real client's binary.
    pub fn claude_path(&self) -> &Path {
        &self.claude
    }

    /// Runs `lanes` with `extra` first on PATH (and tmux's sessions in this world's runtime dir).
    pub fn lanes_with_path(&self, dir: &Path, extra: &Path, args: &[&str]) -> Output {
        let mut command = Command::new(self.bin_dir.join("lanes"));
        self.env(&mut command).current_dir(dir).args(args);
        let path = format!("{}:{}", extra.display(), std::env::var("PATH").unwrap_or_default());
        command.env("PATH", format!("{}:{path}", self.bin_dir.display()));
        command.output().expect("lanes")
    }

    /// `lanes` in `dir` with this world's environment, for a caller that adds to it.
    pub fn lanes_command(&self, dir: &Path) -> Command {
        let mut command = Command::new(self.bin_dir.join("lanes"));
        self.env(&mut command).current_dir(dir);
        command
    }

    pub fn lanes(&self, dir: &Path, args: &[&str]) -> Output {
        let mut command = Command::new(self.bin_dir.join("lanes"));
        self.env(&mut command).current_dir(dir).args(args).output().expect("lanes")
    }

    fn claude_command(&self, dir: &Path) -> Command {
        let mut command = Command::new(&self.claude);
        self.env(&mut command).current_dir(dir);
        command
    }

    /// Installs the plugin from this checkout the way a user would: add it as a local marketplace, install.
    fn install_plugin(&self) {
        let checkout = manifest_dir().join("../..").canonicalize().expect("checkout");
        for args in [
            vec!["plugin", "marketplace", "add", checkout.to_str().expect("utf-8 path")],
            vec!["plugin", "install", "lanes@lanes"],
        ] {
            let output = self.claude_command(&self.root).args(&args).output().expect("claude plugin");
            assert!(
                output.status.success(),
                "claude {args:?} failed:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// Starts the fake model server with this script.
    pub fn serve(&mut self, script: &Value) {
        let (server, port) = start_fake("fake_anthropic.py", script, &self.root.join("script.json"), &self.log);
        self.server = Some(server);
        self.port = port;
    }

    /// Starts `claude -p PROMPT` in `dir`; its stream-json output goes to `<name>.out`.
    pub fn start_claude(&mut self, dir: &Path, name: &str, prompt: &str) -> usize {
        self.start_claude_with(dir, name, prompt, &[])
    }

    /// [`World::start_claude`] with `extra` arguments.
    pub fn start_claude_with(&mut self, dir: &Path, name: &str, prompt: &str, extra: &[&str]) -> usize {
        let out = std::fs::File::create(self.root.join(format!("{name}.out"))).expect("output file");
        let child = self
            .claude_command(dir)
            .args(["-p", prompt, "--permission-mode", "acceptEdits", "--output-format", "stream-json", "--verbose"])
            .arg("--include-hook-events")
            .args(extra)
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("start claude");
        self.running.push(child);
        self.running.len() - 1
    }

    /// Waits for a started `claude` to finish; panics if it takes more than `limit`.
    pub fn wait_claude(&mut self, index: usize, limit: Duration) {
        let child = &mut self.running[index];
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "claude exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "claude did not finish within {limit:?}; requests the fake server saw (session, step):\n{}",
                self.summary()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every request the fake server answered, in order.
    pub fn requests(&self) -> Vec<Value> {
        let Ok(file) = std::fs::File::open(&self.log) else { return Vec::new() };
        BufReader::new(file).lines().map_while(Result::ok).filter_map(|l| serde_json::from_str(&l).ok()).collect()
    }

    /// The request of conversation `matching` at `step`, once it arrives.
    pub fn request_at(&self, matching: &str, step: u64) -> Value {
        let mut found = None;
        let arrived = eventually(Duration::from_secs(90), || {
            found = self.requests().into_iter().find(|r| r["step"][0] == matching && r["step"][1] == step);
            found.is_some()
        });
        assert!(arrived, "no request for {matching:?} at step {step}; log:\n{}", self.summary());
        found.expect("found")
    }

    fn summary(&self) -> String {
        self.requests().iter().map(|r| format!("{} {}", r["session"], r["step"])).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for gate in ["a-done", "b-go"] {
            let _ = std::fs::write(self.gate(gate), "");
        }
        for child in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
        // The clients a test launched in this world's tmux server go with it, even when the test failed.
        let _ = self.tmux(&["kill-server"]);
        let _ = self.lanes(&self.repo, &["sidecar", "stop"]);
    }
}

/// Starts `tests/fake/<program>` answering with `answers` (written to `answers_file`), logging each request to
/// `log`; returns the process and, once it listens, its port.
pub fn start_fake(program: &str, answers: &Value, answers_file: &Path, log: &Path) -> (Child, u16) {
    std::fs::write(answers_file, answers.to_string()).expect("write the fake server's answers");
    let port_file = answers_file.with_extension("port");
    let server = Command::new("python3")
        .arg(manifest_dir().join("../fake").join(program))
        .arg(answers_file)
        .args([log, &port_file])
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    assert!(eventually(Duration::from_secs(10), || port_file.exists()), "{program} did not start");
    let port = std::fs::read_to_string(&port_file).expect("port").trim().parse().expect("port number");
    (server, port)
}

/// The text of every tool_result in a request's messages.
pub fn tool_results(request: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for message in request["body"]["messages"].as_array().into_iter().flatten() {
        for block in message["content"].as_array().into_iter().flatten() {
            if block["type"] == "tool_result" {
                found.push(match &block["content"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            }
        }
    }
    found
}

/// How often `needle` occurs in the request's messages and system prompt.
pub fn occurrences(request: &Value, needle: &str) -> usize {
    let text = format!("{}{}", request["body"]["messages"], request["body"]["system"]);
    text.matches(needle).count()
}
