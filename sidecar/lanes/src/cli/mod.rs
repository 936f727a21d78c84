//! The `lanes` command, which runs in the user's process. Each command resolves its arguments, makes one or
//! two calls to the sidecar over its socket, and prints the reply; the files here hold the commands by
//! subject (`claims.rs` has `lanes claim`, `release`, `check`, …) and this one what they share: the
//! environment ([`Env`]: repository, session, connection) and the error ([`Failure`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use lanes_core::parse_ttl;
use lanes_proto::ErrorCode;
use lanes_proto::client::{CallError, Client};
use lanes_proto::lifecycle::Launcher;
use lanes_proto::paths::{SidecarPaths, current_uid, repo_key};
use lanes_proto::repo::RepoLocation;
use serde::Serialize;
use serde_json::{Value, json};

pub mod checkpoints;
pub mod claims;
pub mod clients;
pub mod demo;
pub mod doctor;
pub mod githooks;
pub mod hub;
pub mod land;
pub mod mcp;
pub mod messages;
pub mod output;
pub mod setup;
pub mod sidecar;
pub mod status;
pub mod tasks;
pub mod team;
pub mod watch;
pub mod web;
pub mod worktrees;

/// How long a CLI command waits for the sidecar to start.
const START_BUDGET: Duration = Duration::from_secs(5);
/// How often a call is made again to a sidecar that reset its connection unread (it was restarting).
const RESET_RETRIES: u32 = 5;
/// How long a CLI command waits for one reply.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed command: its code (which gives the exit code), its message, and any details.
#[derive(Debug)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
    pub data: Value,
}

impl Failure {
    pub fn internal(message: impl Into<String>) -> Failure {
        Failure { code: ErrorCode::Internal, message: message.into(), data: Value::Null }
    }

    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure { code: ErrorCode::InvalidArgument, message: message.into(), data: Value::Null }
    }

    /// A failure whose details were already printed as the command's output; only the exit code is left.
    pub fn reported(code: ErrorCode) -> Failure {
        Failure { code, message: String::new(), data: Value::Null }
    }

    pub fn exit_code(&self) -> i32 {
        self.code.exit_code()
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::internal(format!("{e:#}"))
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Failure {
        match e {
            CallError::Refused { code, message, data } => Failure { code, message, data },
            CallError::Io(e) => Failure {
                code: ErrorCode::Unavailable,
                message: format!("cannot reach the sidecar: {e}; `lanes doctor` says what is wrong"),
                data: Value::Null,
            },
            other => Failure { code: ErrorCode::Unavailable, message: other.to_string(), data: Value::Null },
        }
    }
}

/// Where the command runs: the repository, the worktree, the acting session, the sidecar's files.
#[derive(Clone, Debug)]
pub struct Env {
    pub location: RepoLocation,
    pub cwd: PathBuf,
    pub session: String,
    pub paths: SidecarPaths,
}

impl Env {
    pub fn discover(dir: &Path, session: Option<String>) -> Result<Env, Failure> {
        let cwd = dir.canonicalize().map_err(|e| Failure::invalid(format!("cannot use {}: {e}", dir.display())))?;
        let location = RepoLocation::discover(&cwd).map_err(|e| Failure::invalid(e.to_string()))?;
        let session = session.filter(|s| !s.is_empty()).unwrap_or_else(|| default_session(&location.worktree));
        let paths = SidecarPaths::for_common_dir(&location.common_dir);
        Ok(Env { location, cwd, session, paths })
    }

    pub fn launcher<'a>(&'a self, program: &'a Path) -> Launcher<'a> {
        Launcher {
            paths: &self.paths,
            repo_dir: &self.location.worktree,
            program,
            client: "lanes-cli",
            version: env!("CARGO_PKG_VERSION"),
            pass_setting_vars: false,
        }
    }

    /// A connection to this repository's sidecar, started if needed (on the config files alone).
    pub fn connect(&self) -> Result<Client, Failure> {
        self.connect_passing(false)
    }

    /// [`Env::connect`]; a sidecar started here gets this process's `LANES_*` settings if `pass_setting_vars`.
    fn connect_passing(&self, pass_setting_vars: bool) -> Result<Client, Failure> {
        let program =
            std::env::current_exe().map_err(|e| Failure::internal(format!("cannot find the lanes binary: {e}")))?;
        let launcher = Launcher { pass_setting_vars, ..self.launcher(&program) };
        let client = launcher.connect_or_start(START_BUDGET).map_err(|e| Failure {
            code: ErrorCode::Unavailable,
            message: format!("cannot start the sidecar: {e}; `lanes doctor` says what is wrong"),
            data: Value::Null,
        })?;
        client.set_timeout(CALL_TIMEOUT).map_err(CallError::Io)?;
        Ok(client)
    }

    pub fn call<P: Serialize>(&self, method: &str, params: &P) -> Result<Value, Failure> {
        self.call_passing(false, method, params)
    }

    /// One call on a fresh connection ([`Env::connect_passing`]). A sidecar that resets the connection before
    /// reading the request is going away (a restart on a changed config file): the call is made again, to the
    /// sidecar that replaces it, up to [`RESET_RETRIES`] times. The request was never read, so asking again is
    /// safe. A `hello` changes nothing, so it is asked again too when the sidecar closed the connection after
    /// reading it (`lanes sidecar start` just as the sidecar restarts).
    fn call_passing<P: Serialize>(&self, pass_setting_vars: bool, method: &str, params: &P) -> Result<Value, Failure> {
        let mut tries = 0;
        loop {
            match self.connect_passing(pass_setting_vars)?.call_value(method, params) {
                Err(CallError::Io(e)) if tries < RESET_RETRIES && gone_before_answering(method, &e) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                answer => return Ok(answer?),
            }
        }
    }

    fn worktree(&self) -> String {
        self.location.worktree.to_string_lossy().into_owned()
    }

    /// A scope as the user typed it, made independent of the current directory: relative paths become
    /// absolute, relative globs become relative to the worktree root.
    /// An empty argument is refused: made absolute it would silently mean the current directory, often the
    /// whole repository (`.` says that on purpose).
    fn scope_arg(&self, input: &str) -> Result<String, Failure> {
        if input.trim().is_empty() {
            return Err(Failure {
                code: ErrorCode::InvalidScope,
                message: "empty scope: give a path, a glob, or `.` for the whole repository".to_owned(),
                data: Value::Null,
            });
        }
        Ok(self.absolute_scope(input))
    }

    fn absolute_scope(&self, input: &str) -> String {
        if input.starts_with('/') {
            return input.to_owned();
        }
        if input.contains(['*', '?', '[', '{']) {
            let here = self.cwd.strip_prefix(&self.location.worktree).unwrap_or(Path::new(""));
            return if here.as_os_str().is_empty() { input.to_owned() } else { format!("{}/{input}", here.display()) };
        }
        self.cwd.join(input).to_string_lossy().into_owned()
    }
}

/// Whether a call failed because the sidecar went away without acting on it: it reset the connection before
/// reading the request, or (for a `hello`, which changes nothing) closed it after reading.
fn gone_before_answering(method: &str, e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)
        || (method == lanes_proto::method::HELLO && e.kind() == ErrorKind::UnexpectedEof)
}

/// One session per user and worktree, stable across runs: `cli-<user>-<hash>`.
fn default_session(worktree: &Path) -> String {
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| current_uid().to_string());
    format!("cli-{user}-{}", &repo_key(worktree)[..8])
}

fn ttl_secs(ttl: Option<String>) -> Result<Option<u64>, Failure> {
    ttl.map(|t| parse_ttl(&t).map(|d| d.as_secs()).map_err(Failure::invalid)).transpose()
}

fn hello_params() -> Value {
    json!({"client": "lanes-cli", "version": env!("CARGO_PKG_VERSION"), "protocol": lanes_proto::PROTOCOL_VERSION})
}
