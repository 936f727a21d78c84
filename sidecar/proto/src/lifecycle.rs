//! Finding, starting and stopping a repository's sidecar (DESIGN.md §4), shared by the CLI and the hook.
//!
//! The pidfile's *lock* says a sidecar is alive, not the file's existence. Starts are serialized by a
//! startup lock, so any number of racing clients start exactly one sidecar. A socket file is removed only
//! after a connect to it was refused, never on any other error.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::client::{CallError, Client};
use crate::paths::SidecarPaths;
use crate::{HelloParams, HelloReply, PROTOCOL_VERSION, method};

/// How often a waiting client looks again.
const POLL: Duration = Duration::from_millis(2);

/// The `LANES_*` variables that change a sidecar's settings (DESIGN.md §10). A sidecar a client starts on
/// demand runs on the config files alone, so one client's environment never becomes every client's
/// setting; `lanes sidecar start` passes them on, because there the person asked for them.
pub const SETTING_VARS: &[&str] = &[
    "LANES_CONTENTION",
    "LANES_DEFAULT_TTL",
    "LANES_DURABILITY",
    "LANES_STALL_FLAG_AFTER",
    "LANES_STALL_OFFER_AFTER",
    "LANES_KEEP_ENDED_SESSIONS",
    "LANES_IDLE_TIMEOUT",
    "LANES_HUB_URLS",
    "LANES_HUB_OFFLINE",
];

/// How to reach and, when needed, start a sidecar.
#[derive(Clone, Debug)]
pub struct Launcher<'a> {
    /// The sidecar's files.
    pub paths: &'a SidecarPaths,
    /// A directory inside the repository, given to the started sidecar.
    pub repo_dir: &'a Path,
    /// The `lanes` binary to start it with.
    pub program: &'a Path,
    /// Who is calling, for the handshake.
    pub client: &'a str,
    /// The version the sidecar must have; another version is stopped and replaced.
    pub version: &'a str,
    /// Whether a sidecar started here gets the caller's [`SETTING_VARS`] (only `lanes sidecar start`).
    pub pass_setting_vars: bool,
}

/// What a probe of the socket found.
#[derive(Debug)]
pub enum Probe {
    /// A sidecar of the expected version answered.
    Ready(Client, HelloReply),
    /// A sidecar answered with another version or protocol.
    NeedsRestart(Client, HelloReply),
    /// Nobody answered.
    Unreachable(io::Error),
}

impl Launcher<'_> {
    /// Why a sidecar that exited as it started did so: the last line of its log, and where the log is.
    fn start_failure(&self, status: &str) -> String {
        let log = crate::repo::RepoLocation::discover(self.repo_dir)
            .map(|l| l.common_dir.join("lanes").join("sidecar.log"))
            .unwrap_or_else(|_| Path::new("<git common dir>/lanes/sidecar.log").to_path_buf());
        let last = std::fs::read_to_string(&log)
            .ok()
            .and_then(|text| text.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_owned));
        match last {
            Some(line) => format!("the sidecar exited as it started ({status}): {line} (log: {})", log.display()),
            None => format!("the sidecar exited as it started ({status}); its log, {}, says why", log.display()),
        }
    }

    /// Connects and says hello, without starting anything.
    pub fn probe(&self, timeout: Duration) -> Probe {
        let mut client = match Client::connect(&self.paths.socket, timeout) {
            Ok(client) => client,
            Err(e) => return Probe::Unreachable(e),
        };
        let hello = HelloParams {
            client: self.client.to_owned(),
            version: self.version.to_owned(),
            protocol: PROTOCOL_VERSION,
        };
        match client.call::<_, HelloReply>(method::HELLO, &hello) {
            Ok(reply) if reply.version == self.version => Probe::Ready(client, reply),
            Ok(reply) => Probe::NeedsRestart(client, reply),
            Err(CallError::ProtocolMismatch { theirs }) => {
                Probe::NeedsRestart(client, HelloReply { version: String::from("unknown"), protocol: theirs, pid: 0 })
            }
            Err(CallError::Io(e)) => Probe::Unreachable(e),
            Err(e) => Probe::Unreachable(io::Error::other(e.to_string())),
        }
    }

    /// Connects without a handshake when a sidecar listens, else starts one (with a handshake). The hot path
    /// of the hook: it saves a round trip, and the protocol version every reply carries still catches a
    /// sidecar of another protocol (the caller then uses [`Launcher::connect_or_start`], which replaces it).
    pub fn connect_fast(&self, budget: Duration) -> io::Result<Client> {
        match Client::connect(&self.paths.socket, budget) {
            Ok(client) => Ok(client),
            Err(_) => self.connect_or_start(budget),
        }
    }

    /// Returns a connection to a sidecar of the right version, starting (or restarting) one if needed, all
    /// within `budget`.
    pub fn connect_or_start(&self, budget: Duration) -> io::Result<Client> {
        let deadline = Instant::now() + budget;
        match self.probe(budget) {
            Probe::Ready(client, _) => return Ok(client),
            Probe::NeedsRestart(mut client, _) => {
                let _ = client.call_value(method::SHUTDOWN, &serde_json::json!({}));
                drop(client);
                wait_until_stopped(self.paths, deadline)?;
            }
            Probe::Unreachable(_) => {}
        }
        ensure_private_dir(&self.paths.dir)?;
        let startup = OpenOptions::new().create(true).truncate(false).write(true).open(&self.paths.startup_lock)?;
        lock_before(&startup, deadline)?;
        let result = self.start_locked(deadline);
        let _ = startup.unlock();
        result
    }

    fn start_locked(&self, deadline: Instant) -> io::Result<Client> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Probe::Ready(client, _) = self.probe(remaining) {
            return Ok(client);
        }
        let mut spawned: Option<Child> = None;
        loop {
            // A killed sidecar holds its pidfile lock until its last thread is gone, which can be a moment
            // after it stops answering: look again on every round instead of waiting for a socket nobody binds.
            if spawned.is_none() && !sidecar_alive(self.paths)? {
                remove_stale_socket(&self.paths.socket)?;
                let mut command = Command::new(self.program);
                if !self.pass_setting_vars {
                    for name in SETTING_VARS {
                        command.env_remove(name);
                    }
                }
                let child = command
                    .args(["sidecar", "run"])
                    .current_dir(self.repo_dir)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0)
                    .spawn()?;
                spawned = Some(child);
            }
            // The one we started gave up, and no other took its place: say so now rather than at the deadline.
            if let Some(status) = spawned.as_mut().and_then(|child| child.try_wait().ok().flatten())
                && !sidecar_alive(self.paths)?
            {
                return Err(io::Error::other(self.start_failure(&status.to_string())));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.probe(remaining.max(POLL)) {
                Probe::Ready(client, _) => return Ok(client),
                Probe::NeedsRestart(_, reply) => {
                    return Err(io::Error::other(format!(
                        "the sidecar that started reports version {} (protocol {}), expected {}: is another lanes first on PATH?",
                        reply.version, reply.protocol, self.version
                    )));
                }
                Probe::Unreachable(e) if Instant::now() >= deadline => {
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        format!("the sidecar did not come up in time ({e}); see `lanes doctor`"),
                    ));
                }
                Probe::Unreachable(_) => sleep(POLL),
            }
        }
    }
}

/// Whether a sidecar holds the pidfile lock.
pub fn sidecar_alive(paths: &SidecarPaths) -> io::Result<bool> {
    let file = match File::open(&paths.pidfile) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Waits until no sidecar holds the pidfile lock, or the deadline passes.
pub fn wait_until_stopped(paths: &SidecarPaths, deadline: Instant) -> io::Result<()> {
    while sidecar_alive(paths)? {
        if Instant::now() >= deadline {
            return Err(io::Error::new(ErrorKind::TimedOut, "the sidecar did not stop in time"));
        }
        sleep(POLL);
    }
    Ok(())
}

/// Creates `dir` with mode 0700 if needed, tightens one that others can enter, and refuses one that
/// belongs to another user (someone could have planted it in a shared /tmp).
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    // Made one level at a time, so neither the runtime directory nor its parent is ever someone else's.
    if let Some(parent) = dir.parent() {
        if let Some(base) = parent.parent().filter(|base| !base.exists()) {
            std::fs::create_dir_all(base)?;
        }
        make_private(parent)?;
    }
    make_private(dir)
}

fn make_private(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let meta = std::fs::symlink_metadata(dir)?;
    // Ours but too open (an old umask, a chmod): tighten it; anyone else's is refused below.
    if meta.file_type().is_dir() && meta.uid() == crate::paths::current_uid() && meta.permissions().mode() & 0o077 != 0
    {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    crate::paths::check_private(dir)
}

/// Removes a socket file nobody listens on; leaves one that accepts connections.
fn remove_stale_socket(socket: &Path) -> io::Result<()> {
    match std::os::unix::net::UnixStream::connect(socket) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => match std::fs::remove_file(socket) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

fn lock_before(file: &File, deadline: Instant) -> io::Result<()> {
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => sleep(POLL),
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(ErrorKind::TimedOut, "another client is starting the sidecar"));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}
