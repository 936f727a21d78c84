//! The hermetic world every lanes test runs in (DESIGN.md §10): a temporary root with its own HOME, config
//! and runtime dirs and TMPDIR, no global or system git config, a fixed git identity; and the small helpers
//! tests of real processes need (waiting for a condition, kill -9). Shared by `sidecar/lanes/tests` and
//! `tests/e2e`, so both isolate a test the same way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A temporary root holding `home/`, `run/` (the runtime dir) and `tmp/`. Dropping it deletes everything.
pub struct Hermetic {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Hermetic {
    /// A new root under /tmp (short, so Unix socket paths inside it stay short), named `<prefix>…`. The user
    /// config sets `idle_timeout`: a sidecar a killed test run leaves behind goes away by itself.
    pub fn new(prefix: &str, idle_timeout: &str) -> Hermetic {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        for sub in ["home/.config/lanes", "run", "tmp"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        let config = format!("[sidecar]\nidle_timeout = \"{idle_timeout}\"\n");
        std::fs::write(root.join("home/.config/lanes/config.toml"), config).expect("write the user config");
        Hermetic { dir, root }
    }

    /// The root, canonical.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The temporary directory itself (kept alive as long as this value).
    pub fn dir(&self) -> &tempfile::TempDir {
        &self.dir
    }

    /// Gives `command` this world's environment and nothing of the caller's but `PATH`.
    pub fn apply<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root.join("home"))
            .env("XDG_RUNTIME_DIR", self.root.join("run"))
            .env("XDG_CONFIG_HOME", self.root.join("home/.config"))
            .env("TMPDIR", self.root.join("tmp"))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "test")
            .env("GIT_AUTHOR_EMAIL", "test@lanes.invalid")
            .env("GIT_COMMITTER_NAME", "test")
            .env("GIT_COMMITTER_EMAIL", "test@lanes.invalid")
    }

    /// Runs git in `dir` with this world's environment; it must succeed. Returns its stdout.
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        let mut command = Command::new("git");
        let output = self.apply(&mut command).current_dir(dir).args(args).output().expect("run git");
        assert!(output.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// Polls `condition` every 10 ms until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// Whether a process is gone (or a zombie waiting to be reaped).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// kill -9.
pub fn kill9(pid: u32) {
    let status = Command::new("kill").args(["-9", &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -9 {pid} failed");
}
