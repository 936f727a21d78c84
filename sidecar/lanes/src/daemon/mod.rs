//! The sidecar process (`lanes sidecar run`): one per git common dir. It holds the pidfile lock for its
//! whole life, listens on a private Unix socket, reads one JSON-RPC request per line, and exits when told
//! to, on SIGTERM/SIGINT, after an idle period with no request and no live claim, or once its repository is
//! gone.

mod hub_connection;
pub mod hub_link;
pub mod land;
pub mod rpc;
pub mod state;
pub mod watch;
pub mod work;

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use jsonrpsee::RpcModule;
use lanes_proto::lifecycle::ensure_private_dir;
use lanes_proto::paths::{SidecarPaths, current_uid};
use lanes_proto::repo::RepoLocation;
use lanes_proto::{ErrorCode, MAX_LINE_BYTES, PROTOCOL_VERSION, SidecarView};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};

use crate::config::Config;
use crate::daemon::hub_link::HubLink;
use crate::daemon::rpc::Context;
use crate::daemon::state::{Answer, Command, StateHandle, StateOwner, now};

/// Options of `lanes sidecar run`.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Log to stderr instead of the log file.
    pub foreground: bool,
    /// Report this version in `hello` instead of the real one (tests of the restart-on-mismatch path).
    pub report_version: Option<String>,
}

/// Runs the sidecar for the repository containing `dir` until it is told to stop.
pub fn run(dir: &Path, options: RunOptions) -> Result<()> {
    let location = RepoLocation::discover(dir)?;
    let paths = SidecarPaths::for_common_dir(&location.common_dir);
    ensure_private_dir(&paths.dir).with_context(|| format!("failed to create {}", paths.dir.display()))?;
    let mut pidfile = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&paths.pidfile)
        .with_context(|| format!("failed to open {}", paths.pidfile.display()))?;
    // Losing this race is normal (clients start sidecars at once); the loser leaves the winner's log alone.
    if pidfile.try_lock().is_err() {
        bail!("a sidecar is already running for {}; `lanes sidecar stop` stops it", location.common_dir.display());
    }
    pidfile.set_len(0)?;
    writeln!(pidfile, "{}\n{}", std::process::id(), env!("CARGO_PKG_VERSION"))?;

    let state_dir = location.common_dir.join("lanes");
    std::fs::create_dir_all(&state_dir).with_context(|| format!("failed to create {}", state_dir.display()))?;
    // Prompts, notes and paths live here: private to the user, whatever the umask.
    std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("failed to make {} private", state_dir.display()))?;
    init_logging(&state_dir, options.foreground);
    // A sidecar started by a client has no terminal: its reason for stopping must be in the log.
    let served =
        serve_repository(&location, &paths, options).inspect_err(|e| tracing::error!("sidecar stopped: {e:#}"));
    // The lock is held until the very end, after the socket is gone.
    drop(pidfile);
    served
}

/// Serves the repository's socket while this process holds the pidfile lock.
fn serve_repository(location: &RepoLocation, paths: &SidecarPaths, options: RunOptions) -> Result<()> {
    let config_files = crate::config::files_fingerprint(&location.common_dir);
    let config = Config::load(&location.common_dir)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }

    let data_lost = set_aside_lost_database(&location.common_dir.join("lanes"))?;
    if let Some(lost) = &data_lost {
        tracing::error!("{lost}");
    }
    let started = std::time::Instant::now();
    let (sender, inbox) = tokio::sync::mpsc::unbounded_channel();
    let owner =
        StateOwner::open(location.common_dir.clone(), &config, inbox).context("failed to open the state database")?;
    tracing::info!("restored {} claims in {:?}", owner.claim_count(), started.elapsed());
    // SQLite creates its files with the umask's mode; older versions of lanes left them 0644.
    for name in ["state.db", "state.db-wal", "state.db-shm", "sidecar.log.1", "config.toml"] {
        let file = location.common_dir.join("lanes").join(name);
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("failed to make {} private", file.display()))?;
        }
    }

    let sidecar = SidecarView {
        pid: std::process::id(),
        version: options.report_version.unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        protocol: PROTOCOL_VERSION,
        socket: paths.socket.to_string_lossy().into_owned(),
        data_lost,
        settings: config.settings(),
        from_env: config.from_env.clone(),
    };
    // From now on an empty database means its contents were lost, not that it is new.
    let _ = std::fs::write(location.common_dir.join("lanes").join(HELD_DATA_MARKER), b"");
    let mut context = Context::new(StateHandle::new(sender), location.common_dir.clone(), sidecar, &config);
    context.hub = HubLink::from_config(&location.common_dir, &config.hub)
        .context("the [hub] configuration is not usable")?
        .map(Arc::new);
    let context = Arc::new(context);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let served = runtime.block_on(async {
        tokio::spawn(owner.run());
        tokio::spawn(crate::daemon::work::refresh(Arc::clone(&context)));
        tokio::spawn(crate::daemon::land::run(Arc::clone(&context)));
        if let Some(hub) = &context.hub {
            tokio::spawn(crate::daemon::hub_link::forward(Arc::clone(hub), Arc::clone(&context)));
            tokio::spawn(crate::daemon::hub_link::take_mail(Arc::clone(hub), Arc::clone(&context)));
            tokio::spawn(crate::daemon::hub_link::reconnect(Arc::clone(hub)));
        }
        serve(&paths.socket, context, &config, config_files).await
    });
    let _ = std::fs::remove_file(&paths.socket);
    // Dropping the runtime cancels the state owner between batches, never inside a commit; a batch committed
    // and not yet answered (its sync under way) is then like one cut short by a kill: on disk, and its
    // clients see the connection close.
    drop(runtime);
    tracing::info!("sidecar stopped");
    served
}

async fn serve(
    socket: &Path,
    context: Arc<Context>,
    config: &Config,
    mut config_files: Vec<Option<(std::time::SystemTime, u64)>>,
) -> Result<()> {
    let idle_timeout = config.idle_timeout;
    match std::os::unix::net::UnixStream::connect(socket) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => std::fs::remove_file(socket)?,
        Err(_) => {}
        Ok(_) => bail!("another process already serves {}", socket.display()),
    }
    let listener = UnixListener::bind(socket).with_context(|| format!("failed to bind {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    let module = Arc::new(rpc::module(Arc::clone(&context)));
    let uid = current_uid();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut idle_tick = tokio::time::interval(Duration::from_secs(1).min(idle_timeout));
    // Said once per quiet spell, so a person reading the log knows why the sidecar stays.
    let mut said_claims_keep_it = false;
    tracing::info!("listening on {}", socket.display());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors (thousands of idle clients): back off instead of spinning;
                        // connections that close free them again.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let module = Arc::clone(&module);
                let context = Arc::clone(&context);
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, &module, &context, uid).await {
                        tracing::debug!("connection ended: {e}");
                    }
                });
            }
            () = context.shutdown.notified() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = idle_tick.tick() => {
                match idleness(&context, idle_timeout).await {
                    Idleness::Idle => {
                        tracing::info!("idle for {idle_timeout:?} with no live claim: exiting");
                        break;
                    }
                    Idleness::HeldByClaims(live) if !said_claims_keep_it => {
                        tracing::info!("idle for {idle_timeout:?}, but {live} live claim(s) keep the sidecar running");
                        said_claims_keep_it = true;
                    }
                    Idleness::HeldByClaims(_) => {}
                    Idleness::Busy => said_claims_keep_it = false,
                }
                if !context.common_dir.join("HEAD").is_file() {
                    // Removed or moved away: nothing here to protect, and every git command would fail. The
                    // next client of the repository where it is now starts a sidecar there.
                    tracing::warn!("the repository at {} is gone: exiting", context.common_dir.display());
                    break;
                }
                if config_changed(&context.common_dir, config, &mut config_files) {
                    // Settings are read once, at start: stopping (after answering what is under way) lets the
                    // next client start a sidecar on the new files, with the state intact on disk.
                    tracing::info!("the configuration files changed: stopping so the next client starts on them");
                    break;
                }
            }
        }
    }
    drop(listener);
    drain(&context).await;
    Ok(())
}

/// A file beside `state.db` saying the database held data once: a database that is empty or gone while it
/// exists lost its contents (truncated, deleted, replaced), which must not pass for a new repository.
const HELD_DATA_MARKER: &str = "state.db.held-data";

/// Moves a database that lost its contents aside (`state.db.lost-<time>`) so the sidecar can start on a
/// fresh one, and returns what to tell everyone. A database that was never used is left alone.
fn set_aside_lost_database(state_dir: &Path) -> Result<Option<String>> {
    let db = state_dir.join("state.db");
    let empty = std::fs::metadata(&db).map_or(true, |m| m.len() == 0);
    if !empty || !state_dir.join(HELD_DATA_MARKER).exists() {
        return Ok(None);
    }
    let stamp = crate::daemon::rpc::rfc3339(now()).replace(':', "-");
    let kept = state_dir.join(format!("state.db.lost-{stamp}"));
    let moved = if db.exists() {
        std::fs::rename(&db, &kept).with_context(|| format!("failed to move {} aside", db.display()))?;
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::rename(state_dir.join(format!("state.db{suffix}")), format!("{}{suffix}", kept.display()));
        }
        format!("kept as {}", kept.display())
    } else {
        "the file is gone".to_owned()
    };
    Ok(Some(format!(
        "lanes lost its state: {} was empty although it held claims and sessions before ({moved}); it started \
         from an empty database, so every earlier claim is gone. Re-claim what you work on; restore a backup of \
         the file if you have one (stop the sidecar first: `lanes sidecar stop`).",
        db.display()
    )))
}

/// Whether the config files changed into a valid configuration other than the running one. A change that
/// does not load is logged and the running configuration kept.
fn config_changed(common_dir: &Path, running: &Config, seen: &mut Vec<Option<(std::time::SystemTime, u64)>>) -> bool {
    let now = crate::config::files_fingerprint(common_dir);
    if now == *seen {
        return false;
    }
    *seen = now;
    match Config::load(common_dir) {
        Ok(config) => config != *running,
        Err(e) => {
            tracing::warn!("the changed configuration is not usable, keeping the running one: {e:#}");
            false
        }
    }
}

/// How long a stopping sidecar waits for the requests it is deciding to be answered.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Stops deciding and lets every request already being decided reach its client: a client must never be
/// told the sidecar went away for a claim it was in fact granted. Requests that arrive from now on are
/// refused as `unavailable` without being decided.
async fn drain(context: &Context) {
    context.stopping.store(true, Ordering::SeqCst);
    let started = Instant::now();
    while context.in_flight.load(Ordering::SeqCst) > 0 && started.elapsed() < DRAIN_LIMIT {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Whether the sidecar may exit: quiet for the idle timeout, with no live claim to keep.
enum Idleness {
    Busy,
    HeldByClaims(usize),
    Idle,
}

async fn idleness(context: &Context, idle_timeout: Duration) -> Idleness {
    let quiet_ms = now().0.saturating_sub(context.last_request.load(Ordering::Relaxed));
    if Duration::from_millis(quiet_ms) < idle_timeout {
        return Idleness::Busy;
    }
    match context.state_status().await {
        Some(0) => Idleness::Idle,
        Some(live) => Idleness::HeldByClaims(live),
        None => Idleness::Busy,
    }
}

async fn serve_connection(
    stream: UnixStream,
    module: &RpcModule<Arc<Context>>,
    context: &Context,
    uid: u32,
) -> std::io::Result<()> {
    let peer = stream.peer_cred()?;
    if peer.uid() != uid {
        tracing::warn!("refused a connection from uid {} (pid {:?})", peer.uid(), peer.pid());
        return Ok(());
    }
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut line).await?;
        if read == 0 {
            return Ok(());
        }
        let too_long = line.len() > MAX_LINE_BYTES;
        let reply = if too_long {
            Some(error_reply(
                Value::Null,
                -32600,
                ErrorCode::InvalidArgument,
                format!("request line exceeds the {MAX_LINE_BYTES}-byte limit; the connection is closed"),
            ))
        } else {
            context.last_request.store(now().0, Ordering::Relaxed);
            // Counted before the stop flag is read, so a stopping sidecar either sees this request in flight
            // and waits for its answer, or this request sees the flag and is not decided (see `drain`).
            context.in_flight.fetch_add(1, Ordering::SeqCst);
            if context.stopping.load(Ordering::SeqCst) {
                context.in_flight.fetch_sub(1, Ordering::SeqCst);
                let id = serde_json::from_slice::<Value>(&line).ok().and_then(|r| r.get("id").cloned());
                let reply = error_reply(
                    id.unwrap_or(Value::Null),
                    ErrorCode::Unavailable.rpc_code(),
                    ErrorCode::Unavailable,
                    "the sidecar is stopping; nothing was decided: retry".into(),
                );
                write.write_all(format!("{reply}\n").as_bytes()).await?;
                return Ok(());
            }
            handle_line(module, &line).await
        };
        let written = match reply {
            Some(mut reply) => {
                reply.push('\n');
                write.write_all(reply.as_bytes()).await
            }
            None => Ok(()),
        };
        if !too_long {
            context.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        written?;
        if too_long {
            return Ok(());
        }
        // With no request buffered and none of any client being answered, wait for the next one awake for a
        // moment before going to sleep. A busy sidecar does not: the CPU it would poll on is its other clients'.
        if reader.buffer().is_empty() && context.in_flight.load(Ordering::SeqCst) == 0 {
            linger(reader.get_ref(), LINGER).await;
        }
    }
}

/// How long a connection keeps polling for its client's next request after a reply before it sleeps. A client
/// in a conversation (claim, then release) sends again within tens of microseconds, less than a sleeping
/// thread takes to be woken on a virtual machine. The polling yields between tries, so other connections and
/// the state owner run meanwhile. Only an otherwise idle sidecar polls: with 32 clients on 2 cores, polling
/// after every reply cost 12% of the pairs answered (5,820 against 6,747 pairs/s without a hub).
const LINGER: Duration = Duration::from_micros(60);

/// Returns when `read` is readable (a request, or the client hung up), or after `window` either way.
async fn linger(read: &OwnedReadHalf, window: Duration) {
    let started = Instant::now();
    while started.elapsed() < window {
        tokio::select! {
            biased;
            _ = read.readable() => return,
            () = tokio::task::yield_now() => {}
        }
    }
}

/// Answers one request line; `None` for a notification or a blank line.
async fn handle_line(module: &RpcModule<Arc<Context>>, line: &[u8]) -> Option<String> {
    let Ok(text) = std::str::from_utf8(line) else {
        return Some(error_reply(Value::Null, -32700, ErrorCode::InvalidArgument, "parse error: not UTF-8".into()));
    };
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let request: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            return Some(error_reply(Value::Null, -32700, ErrorCode::InvalidArgument, format!("parse error: {e}")));
        }
    };
    let Some(object) = request.as_object() else {
        let message =
            if request.is_array() { "batch requests are not supported" } else { "a request must be an object" };
        return Some(error_reply(Value::Null, -32600, ErrorCode::InvalidArgument, message.into()));
    };
    let id = object.get("id")?.clone();
    match module.raw_json_request(text, 1).await {
        Ok((response, _)) => Some(with_protocol_in_error(response.get())),
        Err(e) => Some(error_reply(id, -32600, ErrorCode::InvalidArgument, format!("invalid request: {e}"))),
    }
}

/// jsonrpsee's own errors (method not found, invalid params shape) carry no `data`; every reply carries
/// `protocol` (ARCHITECTURE.md), so they get it here. Replies of our handlers pass through untouched.
fn with_protocol_in_error(response: &str) -> String {
    if !response.contains("\"error\"") {
        return response.to_owned();
    }
    let Ok(mut reply) = serde_json::from_str::<Value>(response) else { return response.to_owned() };
    let error = &mut reply["error"];
    if error.is_object() && error["data"]["protocol"].is_null() {
        if !error["data"].is_object() {
            error["data"] = json!({"code": ErrorCode::InvalidArgument});
        }
        error["data"]["protocol"] = json!(PROTOCOL_VERSION);
        return reply.to_string();
    }
    response.to_owned()
}

fn error_reply(id: Value, rpc_code: i32, code: ErrorCode, message: String) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": rpc_code, "message": message, "data": {"code": code, "protocol": PROTOCOL_VERSION}},
    })
    .to_string()
}

fn init_logging(state_dir: &Path, foreground: bool) {
    let builder = tracing_subscriber::fmt().with_env_filter(crate::config::log_filter()).with_ansi(false);
    if foreground {
        let _ = builder.with_writer(std::io::stderr).try_init();
        return;
    }
    let log = log_path(state_dir);
    if std::fs::metadata(&log).is_ok_and(|m| m.len() > 5 * 1024 * 1024) {
        let _ = std::fs::rename(&log, log.with_extension("log.1"));
    }
    match OpenOptions::new().create(true).append(true).mode(0o600).open(&log) {
        Ok(file) => {
            let _ = builder.with_writer(std::sync::Mutex::new(file)).try_init();
        }
        Err(_) => {
            let _ = builder.with_writer(std::io::sink).try_init();
        }
    }
}

/// `<git-common-dir>/lanes/sidecar.log`.
pub fn log_path(state_dir: &Path) -> PathBuf {
    state_dir.join("sidecar.log")
}

impl Context {
    /// How many live claims there are, or `None` when the state owner did not answer.
    async fn state_status(&self) -> Option<usize> {
        match self.state.ask(Command::Status).await {
            Ok(Answer::Status(snapshot)) => Some(snapshot.claims.len()),
            _ => None,
        }
    }
}
