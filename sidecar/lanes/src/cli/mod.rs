//! The CLI's client commands: each resolves its arguments, makes one or two calls to the sidecar, and
//! prints the reply.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lanes_core::parse_ttl;
use lanes_proto::client::{CallError, Client};
use lanes_proto::lifecycle::{Launcher, Probe, sidecar_alive, wait_until_stopped};
use lanes_proto::paths::{SidecarPaths, current_uid, repo_key};
use lanes_proto::repo::RepoLocation;
use lanes_proto::{
    AcquireParams, CheckParams, CheckpointParams, CheckpointsParams, ErrorCode, EventsParams, ExplainParams,
    HandoffParams, Mode, ReleaseParams, RenewParams, RewindParams, SendParams, SessionParams, TaskAddParams,
    TaskDoneParams, TaskListParams, TaskNextParams, WaitParams, method,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::output::{Output, joined, secs, table};
use crate::config::{TEMPLATE, commented_template, local_config_path};
use crate::git;

pub mod demo;
pub mod doctor;
pub mod githooks;
pub mod hub;
pub mod output;
pub mod team;
pub mod watch;
pub mod worktrees;

/// How long a CLI command waits for the sidecar to start.
const START_BUDGET: Duration = Duration::from_secs(5);
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
#[derive(Debug)]
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
        Ok(self.connect()?.call_value(method, params)?)
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

/// One session per user and worktree, stable across runs: `cli-<user>-<hash>`.
fn default_session(worktree: &Path) -> String {
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| current_uid().to_string());
    format!("cli-{user}-{}", &repo_key(worktree)[..8])
}

fn ttl_secs(ttl: Option<String>) -> Result<Option<u64>, Failure> {
    ttl.map(|t| parse_ttl(&t).map(|d| d.as_secs()).map_err(Failure::invalid)).transpose()
}

pub fn init(env: &Env, out: &Output) -> Result<(), Failure> {
    let config = local_config_path(&env.location.common_dir);
    // The local file is the highest file layer: it holds only what the user sets there, so `.lanes.toml` and
    // the user's file take effect. A copy of the defaults an older `lanes init` wrote is commented out.
    let untouched_copy = std::fs::read_to_string(&config).is_ok_and(|text| text == TEMPLATE);
    let created = if config.exists() && !untouched_copy {
        false
    } else {
        std::fs::create_dir_all(config.parent().unwrap_or(Path::new(".")))
            .and_then(|()| {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut file =
                    std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&config)?;
                file.write_all(commented_template().as_bytes())
            })
            .map_err(|e| Failure::internal(format!("failed to write {}: {e}", config.display())))?;
        true
    };
    let hooks = githooks::install(&env.location.worktree)?;
    let hello = env.call(method::HELLO, &hello_params())?;
    let value = json!({
        "repo": env.location.common_dir,
        "config": config,
        "config_created": created,
        "git_hooks": hooks.iter().map(|h| json!({"hook": h.hook, "path": h.path, "action": h.action})).collect::<Vec<_>>(),
        "sidecar": {"pid": hello["pid"], "version": hello["version"], "socket": env.paths.socket},
        "session": env.session,
    });
    out.print(&value, |v| {
        format!(
            "lanes is set up in {}\n  config   {}{}\n  hooks    {}\n  sidecar  pid {} on {}\n  session  {} (set LANES_SESSION or --session to act as another)",
            env.location.worktree.display(),
            config.display(),
            if created { " (created)" } else { "" },
            hooks.iter().map(|h| format!("{} ({})", h.hook, h.action)).collect::<Vec<_>>().join(", "),
            v["sidecar"]["pid"],
            env.paths.socket.display(),
            env.session
        )
    });
    Ok(())
}

pub fn uninit(env: &Env, out: &Output) -> Result<(), Failure> {
    let hooks = githooks::uninstall(&env.location.worktree)?;
    let value = json!({
        "git_hooks": hooks.iter().map(|h| json!({"hook": h.hook, "path": h.path, "action": h.action})).collect::<Vec<_>>(),
    });
    out.print(&value, |_| hooks.iter().map(|h| format!("{}: {}", h.hook, h.action)).collect::<Vec<_>>().join("\n"));
    Ok(())
}

fn hello_params() -> Value {
    json!({"client": "lanes-cli", "version": env!("CARGO_PKG_VERSION"), "protocol": lanes_proto::PROTOCOL_VERSION})
}

pub fn claim(
    env: &Env,
    out: &Output,
    scopes: &[String],
    shared: bool,
    ttl: Option<String>,
    note: Option<String>,
    task: Option<String>,
) -> Result<(), Failure> {
    let params = AcquireParams {
        session: env.session.clone(),
        worktree: env.worktree(),
        scopes: scopes.iter().map(|s| env.scope_arg(s)).collect::<Result<_, _>>()?,
        mode: shared.then_some(Mode::Shared),
        ttl_secs: ttl_secs(ttl)?,
        note,
        task,
        bound_worktree: None,
    };
    let value = env.call(method::CLAIM_ACQUIRE, &params)?;
    out.print(&value, |v| {
        let c = &v["claim"];
        let mut text = format!(
            "claim {} granted on {} ({}, epoch {}, expires in {})",
            c["id"],
            joined(&c["scopes"], ", "),
            c["mode"].as_str().unwrap_or("exclusive"),
            c["epoch"],
            secs(&c["expires_in_secs"])
        );
        if let Some(epoch) = v["hub_epoch"].as_u64() {
            text.push_str(&format!("; confirmed by the hub, hub epoch {epoch}"));
        }
        for note in v["notes"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "\nnote left by {} (claim {}, lapsed {}): {}",
                note["session"].as_str().unwrap_or("?"),
                note["claim_id"],
                note["expired_at"].as_str().unwrap_or("?"),
                note["note"].as_str().unwrap_or("")
            ));
        }
        text
    });
    Ok(())
}

pub fn release(
    env: &Env,
    out: &Output,
    claims: Vec<u64>,
    all: bool,
    epoch: Option<u64>,
    pending: bool,
) -> Result<(), Failure> {
    let params = ReleaseParams {
        session: env.session.clone(),
        claims: (!claims.is_empty()).then_some(claims),
        all: all.then_some(true),
        epoch,
        pending: pending.then_some(true),
    };
    let value = env.call(method::CLAIM_RELEASE, &params)?;
    out.print(&value, |v| match (joined(&v["released"], ", "), pending) {
        (ids, true) if ids.is_empty() => "no pending work to give up".to_owned(),
        (ids, true) => format!("gave up pending work {ids}: its paths are free (the changes themselves stay)"),
        (ids, false) if ids.is_empty() => "nothing to release".to_owned(),
        (ids, false) => format!("released claim {ids}"),
    });
    Ok(())
}

pub fn renew(env: &Env, out: &Output, claim: u64, ttl: Option<String>, epoch: Option<u64>) -> Result<(), Failure> {
    let params = RenewParams { session: env.session.clone(), claim, ttl_secs: ttl_secs(ttl)?, epoch };
    let value = env.call(method::CLAIM_RENEW, &params)?;
    out.print(&value, |v| {
        let c = &v["claim"];
        format!("claim {} renewed (epoch {}, expires in {})", c["id"], c["epoch"], secs(&c["expires_in_secs"]))
    });
    Ok(())
}

pub fn handoff(env: &Env, out: &Output, claim: u64, to: String, epoch: Option<u64>) -> Result<(), Failure> {
    let params = HandoffParams { session: env.session.clone(), claim, to, epoch };
    let value = env.call(method::CLAIM_HANDOFF, &params)?;
    out.print(&value, |v| {
        let c = &v["claim"];
        format!("claim {} handed to {} (epoch {})", c["id"], c["session"].as_str().unwrap_or("?"), c["epoch"])
    });
    Ok(())
}

pub fn check(env: &Env, out: &Output, paths: &[String]) -> Result<(), Failure> {
    let params = CheckParams {
        session: env.session.clone(),
        worktree: env.worktree(),
        paths: paths.iter().map(|p| env.scope_arg(p)).collect::<Result<_, _>>()?,
    };
    let value = env.call(method::CLAIM_CHECK, &params)?;
    let holders = value["holders"].as_array().cloned().unwrap_or_default();
    out.print(&value, |v| {
        if let Some(own) = v["yours"].as_array().filter(|own| holders.is_empty() && !own.is_empty()) {
            let claims: Vec<String> = own
                .iter()
                .map(|c| {
                    format!(
                        "claim {} on {}, expires in {}",
                        c["id"],
                        joined(&c["scopes"], ", "),
                        secs(&c["expires_in_secs"])
                    )
                })
                .collect();
            return format!("you hold it: {}", claims.join("; "));
        }
        if holders.is_empty() {
            return format!("free: {}", paths.join(", "));
        }
        holders
            .iter()
            .map(|h| {
                format!(
                    "held by {} (claim {}, scope {}, worktree {}, expires in {})",
                    h["session"].as_str().unwrap_or("?"),
                    h["claim_id"],
                    h["scope"].as_str().unwrap_or("?"),
                    h["worktree"].as_str().unwrap_or("?"),
                    secs(&h["expires_in_secs"])
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    if holders.is_empty() { Ok(()) } else { Err(Failure::reported(ErrorCode::Conflict)) }
}

pub fn wait(env: &Env, out: &Output, targets: &[String]) -> Result<(), Failure> {
    let claim = match targets {
        [one] if one.chars().all(|c| c.is_ascii_digit()) => one.parse::<u64>().ok(),
        _ => None,
    };
    let paths = if claim.is_some() {
        Vec::new()
    } else {
        targets.iter().map(|t| env.scope_arg(t)).collect::<Result<_, _>>()?
    };
    let params = WaitParams { session: env.session.clone(), worktree: env.worktree(), claim, paths };
    let value = env.call(method::CLAIM_WAIT, &params)?;
    out.print(&value, |v| {
        let holders: Vec<String> = v["waiting_for"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} (claim {} on {})",
                    c["session"].as_str().unwrap_or("?"),
                    c["claim_id"],
                    c["scope"].as_str().unwrap_or("?")
                )
            })
            .collect();
        format!("waiting for {}; they are told, and you are told when it ends", holders.join(", "))
    });
    Ok(())
}

/// `lanes claims`: the acting session's live claims (its subagents' too).
pub fn claims(env: &Env, out: &Output) -> Result<(), Failure> {
    let status = env.call(method::STATUS, &json!({}))?;
    let mine = |c: &&Value| {
        c["session"].as_str().is_some_and(|holder| {
            holder == env.session || holder.strip_prefix(env.session.as_str()).is_some_and(|r| r.starts_with('/'))
        })
    };
    let claims: Vec<Value> = status["claims"].as_array().into_iter().flatten().filter(mine).cloned().collect();
    out.print(&json!({ "session": env.session, "claims": claims }), |v| {
        let rows: Vec<Vec<String>> = v["claims"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                vec![
                    c["id"].to_string(),
                    joined(&c["scopes"], " "),
                    c["mode"].as_str().unwrap_or("?").to_owned(),
                    secs(&c["expires_in_secs"]),
                    c["note"].as_str().unwrap_or("").to_owned(),
                ]
            })
            .collect();
        if rows.is_empty() {
            format!("{} holds no claims", env.session)
        } else {
            crate::cli::output::table(&["CLAIM", "SCOPES", "MODE", "LEFT", "NOTE"], &rows)
        }
    });
    Ok(())
}

pub fn status(env: &Env, out: &Output) -> Result<(), Failure> {
    let mut value = env.call(method::STATUS, &json!({}))?;
    value["unchecked_edits"] = json!(unchecked_edits(&env.location.common_dir));
    out.print(&value, |v| render_status(v, &env.session));
    Ok(())
}

/// How many edits each session made that lanes could not check (the hook found no sidecar answering and
/// let them through), from `<git-common-dir>/lanes/unchecked.log`.
pub fn unchecked_edits(common_dir: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    let log = std::fs::read_to_string(common_dir.join("lanes").join("unchecked.log")).unwrap_or_default();
    for line in log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        if let Some(session) = line["session"].as_str() {
            *counts.entry(session.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

pub fn sessions(env: &Env, out: &Output, all: bool) -> Result<(), Failure> {
    let status = env.call(method::STATUS, &json!({}))?;
    let sessions: Vec<Value> =
        status["sessions"].as_array().into_iter().flatten().filter(|s| all || s["state"] == "live").cloned().collect();
    out.print(&json!({ "sessions": sessions }), |v| {
        let rows: Vec<Vec<String>> = v["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let text = |key: &str| s[key].as_str().unwrap_or("-").to_owned();
                let prompt: String = s["last_prompt"].as_str().unwrap_or("-").chars().take(40).collect();
                vec![
                    text("id"),
                    text("state"),
                    text("started_at"),
                    s["claims"].to_string(),
                    text("branch"),
                    text("model"),
                    text("last_checkpoint"),
                    prompt,
                ]
            })
            .collect();
        if rows.is_empty() {
            "no sessions".to_owned()
        } else {
            table(&["SESSION", "STATE", "STARTED", "CLAIMS", "BRANCH", "MODEL", "CHECKPOINT", "LAST PROMPT"], &rows)
        }
    });
    Ok(())
}

fn render_status(v: &Value, me: &str) -> String {
    let sidecar = &v["sidecar"];
    let mut text = format!(
        "repo     {}\nsidecar  pid {}, version {}, protocol {}\nyou      {me}\n",
        v["repo"].as_str().unwrap_or("?"),
        sidecar["pid"],
        sidecar["version"].as_str().unwrap_or("?"),
        sidecar["protocol"]
    );
    if let Some(lost) = sidecar["data_lost"].as_str() {
        text.push_str(&format!("WARNING  {lost}\n"));
    }
    if let Some(unchecked) = v["unchecked_edits"].as_object().filter(|u| !u.is_empty()) {
        let counts: Vec<String> = unchecked.iter().map(|(session, n)| format!("{session} {n}")).collect();
        text.push_str(&format!("unchecked edits (went ahead while lanes could not answer): {}\n", counts.join(", ")));
    }
    let hub = &v["hub"];
    if hub.is_object() {
        let outbox =
            hub["outbox"].as_u64().map_or_else(|| "not sent yet".to_owned(), |n| format!("{n} events waiting"));
        let line = match hub["connected"].as_str() {
            Some(url) => {
                format!("hub      {url}, project {}, outbox: {outbox}\n", hub["project"].as_str().unwrap_or("?"))
            }
            None => format!(
                "hub      NOT CONNECTED ({}); claims are refused as unavailable; outbox: {outbox}\n",
                hub["last_error"].as_str().unwrap_or("not tried yet")
            ),
        };
        text.push_str(&line);
        for claim in hub["claims"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "         {} holds {} on {} (claim {}, {}s left)\n",
                claim["holder"].as_str().unwrap_or("?"),
                joined(&claim["scopes"], " "),
                claim["origin"].as_str().unwrap_or("?"),
                claim["id"],
                claim["ttl_secs"]
            ));
        }
    }
    let live: Vec<&Value> = v["sessions"].as_array().into_iter().flatten().filter(|s| s["state"] == "live").collect();
    if !live.is_empty() {
        let rows: Vec<Vec<String>> = live
            .iter()
            .map(|s| {
                vec![
                    s["id"].as_str().unwrap_or("?").to_owned(),
                    s["claims"].to_string(),
                    s["unread"].to_string(),
                    s["branch"].as_str().unwrap_or("-").to_owned(),
                    s["worktree"].as_str().unwrap_or("-").to_owned(),
                ]
            })
            .collect();
        text.push('\n');
        text.push_str(&table(&["SESSION", "CLAIMS", "UNREAD", "BRANCH", "WORKTREE"], &rows));
        text.push('\n');
    }
    if v["tasks"].as_array().is_some_and(|t| !t.is_empty()) {
        text.push('\n');
        text.push_str(&render_tasks(&v["tasks"]));
        text.push('\n');
    }
    let claims = v["claims"].as_array().cloned().unwrap_or_default();
    if claims.is_empty() {
        text.push_str("\nno live claims\n");
    } else {
        let rows: Vec<Vec<String>> = claims
            .iter()
            .map(|c| {
                let expires = if c["pending"] == true {
                    format!("pending ({})", c["branch"].as_str().unwrap_or("no branch"))
                } else {
                    secs(&c["expires_in_secs"])
                };
                vec![
                    c["id"].to_string(),
                    c["session"].as_str().unwrap_or("?").to_owned(),
                    c["mode"].as_str().unwrap_or("?").to_owned(),
                    expires,
                    c["epoch"].to_string(),
                    joined(&c["scopes"], " "),
                    c["worktree"].as_str().unwrap_or("?").to_owned(),
                ]
            })
            .collect();
        text.push('\n');
        text.push_str(&table(&["CLAIM", "SESSION", "MODE", "EXPIRES", "EPOCH", "SCOPES", "WORKTREE"], &rows));
        text.push('\n');
        if claims.iter().any(|c| c["pending"] == true) {
            text.push_str(
                "pending: the session ended (or its lease ran out) before its changes landed; the paths stay taken \
                 until they are merged into the base, reverted, or given up (`lanes release --pending <claim>`)\n",
            );
        }
    }
    text
}

/// Prints the event log as NDJSON (one compact line per event), from `since`; with `follow`, keeps polling
/// one connection and prints new events as they come, so a reader can stop and resume at any cursor.
pub fn events(env: &Env, out: &Output, since: u64, limit: u32, follow: bool) -> Result<(), Failure> {
    let mut client = env.connect()?;
    let mut cursor = since;
    loop {
        let value = client.call_value(method::EVENTS, &EventsParams { since: cursor, limit: Some(limit) })?;
        if out.json && !follow {
            out.print(&value, |_| String::new());
            return Ok(());
        }
        for event in value["events"].as_array().into_iter().flatten() {
            crate::cli::output::line(event);
        }
        cursor = value["cursor"].as_u64().unwrap_or(cursor);
        if !follow {
            return Ok(());
        }
        if value["events"].as_array().is_none_or(Vec::is_empty) {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
}

pub fn send(env: &Env, out: &Output, to: String, text: String) -> Result<(), Failure> {
    let value = env.call(method::MESSAGE_SEND, &SendParams { session: env.session.clone(), to, text })?;
    out.print(&value, |v| {
        let recipients: Vec<&str> =
            v["messages"].as_array().into_iter().flatten().filter_map(|m| m["to"].as_str()).collect();
        if recipients.is_empty() {
            "no other live session to send to".to_owned()
        } else {
            format!("sent to {}; they see it at their next step", recipients.join(", "))
        }
    });
    Ok(())
}

pub fn inbox(env: &Env, out: &Output) -> Result<(), Failure> {
    let params = SessionParams { session: env.session.clone(), ..SessionParams::default() };
    let value = env.call(method::MESSAGE_INBOX, &params)?;
    out.print(&value, |v| {
        let messages = v["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            return "no unread messages".to_owned();
        }
        messages
            .iter()
            .map(|m| {
                let at = m["sent_at"].as_str().unwrap_or("?");
                format!("[{at}] {}: {}", m["from"].as_str().unwrap_or("?"), m["text"].as_str().unwrap_or(""))
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

pub fn checkpoint(env: &Env, out: &Output, message: Option<String>) -> Result<(), Failure> {
    let params = CheckpointParams { session: env.session.clone(), worktree: env.worktree(), message };
    let value = env.call(method::CHECKPOINT_CREATE, &params)?;
    out.print(&value, |v| match v["checkpoint"].as_object() {
        Some(c) => format!(
            "checkpoint {} of {} ({} files changed)",
            c["id"].as_str().unwrap_or("?"),
            c["worktree"].as_str().unwrap_or("?"),
            c["files"].as_array().map_or(0, Vec::len)
        ),
        None => "nothing changed since the last checkpoint".to_owned(),
    });
    Ok(())
}

pub fn checkpoints(env: &Env, out: &Output, all: bool, limit: u32) -> Result<(), Failure> {
    let params = CheckpointsParams { session: (!all).then(|| env.session.clone()), limit: Some(limit) };
    let value = env.call(method::CHECKPOINT_LIST, &params)?;
    out.print(&value, |v| {
        let rows: Vec<Vec<String>> = v["checkpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                vec![
                    c["id"].as_str().unwrap_or("?").to_owned(),
                    c["at"].as_str().unwrap_or("?").to_owned(),
                    c["session"].as_str().unwrap_or("?").to_owned(),
                    c["files"].as_array().map_or(0, Vec::len).to_string(),
                    c["message"].as_str().unwrap_or("").to_owned(),
                ]
            })
            .collect();
        if rows.is_empty() {
            "no checkpoints yet".to_owned()
        } else {
            table(&["CHECKPOINT", "AT", "SESSION", "FILES", "WHY"], &rows)
        }
    });
    Ok(())
}

pub fn rewind(
    env: &Env,
    out: &Output,
    checkpoint: String,
    dry_run: bool,
    paths: Vec<String>,
    force: bool,
) -> Result<(), Failure> {
    let paths = paths.iter().map(|p| env.scope_arg(p)).collect::<Result<_, _>>()?;
    let params =
        RewindParams { session: env.session.clone(), worktree: env.worktree(), checkpoint, paths, dry_run, force };
    let value = env.call(method::CHECKPOINT_REWIND, &params)?;
    out.print(&value, |v| {
        let changes: Vec<String> = v["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let held = c["held_by"].as_str().map(|h| format!("   (held by {h})")).unwrap_or_default();
                format!("  {:<7} {}{held}", c["action"].as_str().unwrap_or("?"), c["path"].as_str().unwrap_or("?"))
            })
            .collect();
        let target = v["checkpoint"].as_str().unwrap_or("?");
        if changes.is_empty() {
            return format!("the worktree already matches checkpoint {target}");
        }
        let head = if v["dry_run"] == true {
            format!("rewinding to {target} would change:")
        } else {
            format!("rewound to {target}:")
        };
        let undo = match v["backup"].as_str() {
            Some(backup) => format!("\nundo with: lanes rewind {backup}"),
            None => String::new(),
        };
        format!("{head}\n{}{undo}", changes.join("\n"))
    });
    Ok(())
}

pub fn explain(env: &Env, out: &Output, target: &str) -> Result<(), Failure> {
    let dir = &env.cwd;
    let commit = match git::run(dir, &["rev-parse", "--verify", "--quiet", &format!("{target}^{{commit}}")]) {
        Ok(commit) => commit,
        Err(_) => commit_of_path(dir, target)?,
    };
    let format = "--format=%H%x00%s%x00%an%x00%aI%x00%(trailers:key=Lanes-Session,valueonly,separator=%x2C)%x00%(trailers:key=Lanes-Checkpoint,valueonly)";
    let shown =
        git::run(dir, &["show", "-s", format, &commit, "--"]).map_err(|e| Failure::invalid(format!("{e:#}")))?;
    let fields: Vec<&str> = shown.split('\0').collect();
    let sessions: Vec<String> =
        fields.get(4).unwrap_or(&"").split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let mut value = env.call(method::COMMIT_EXPLAIN, &ExplainParams { commit: commit.clone(), sessions })?;
    value["subject"] = json!(fields.get(1).unwrap_or(&""));
    value["author"] = json!(fields.get(2).unwrap_or(&""));
    value["date"] = json!(fields.get(3).unwrap_or(&""));
    value["checkpoint"] = json!(fields.get(5).map(|c| c.trim()).filter(|c| !c.is_empty()));
    out.print(&value, render_explain);
    Ok(())
}

/// The commit that last changed `PATH` (or line `LINE` of it, through blame).
fn commit_of_path(dir: &Path, target: &str) -> Result<String, Failure> {
    let (path, line) = match target.rsplit_once(':') {
        Some((path, line)) if line.parse::<u32>().is_ok() => (path, Some(line)),
        _ => (target, None),
    };
    let found = match line {
        Some(line) => git::run(dir, &["blame", "--porcelain", "-L", &format!("{line},{line}"), "--", path])
            .map(|out| out.split_whitespace().next().unwrap_or_default().to_owned()),
        None => git::run(dir, &["log", "-1", "--format=%H", "--", path]),
    };
    match found {
        Ok(commit) if !commit.is_empty() && !commit.starts_with("0000000") => Ok(commit),
        Ok(_) => Err(Failure::invalid(format!("{target} has no commit yet: it is not committed"))),
        Err(e) => Err(Failure::invalid(format!("{target} is neither a commit nor a committed path: {e:#}"))),
    }
}

fn render_explain(v: &Value) -> String {
    let mut text = format!(
        "commit {}\n  {}\n  by {} on {}",
        v["commit"].as_str().unwrap_or("?"),
        v["subject"].as_str().unwrap_or(""),
        v["author"].as_str().unwrap_or("?"),
        v["date"].as_str().unwrap_or("?")
    );
    let sessions = v["sessions"].as_array().cloned().unwrap_or_default();
    if sessions.is_empty() {
        text.push_str(
            "\n\nno lanes session is recorded for this commit (made outside a lanes session, or before `lanes init`)",
        );
        return text;
    }
    for s in &sessions {
        text.push_str(&format!(
            "\n\nsession {}\n  worktree {}  branch {}  model {}",
            s["session"].as_str().unwrap_or("?"),
            s["worktree"].as_str().unwrap_or("?"),
            s["branch"].as_str().unwrap_or("?"),
            s["model"].as_str().unwrap_or("?")
        ));
        for c in s["checkpoints"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "\n  checkpoint {} {}  {} ({} files)",
                c["id"].as_str().unwrap_or("?"),
                c["at"].as_str().unwrap_or("?"),
                c["message"].as_str().unwrap_or(""),
                c["files"].as_array().map_or(0, Vec::len)
            ));
        }
        for e in s["claims"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "\n  {} {:<8} claim {} {}",
                e["at"].as_str().unwrap_or("?"),
                e["kind"].as_str().unwrap_or("?"),
                e["claim"],
                joined(&e["data"]["scopes"], " ")
            ));
        }
        let files = joined(&s["files"], ", ");
        if !files.is_empty() {
            text.push_str(&format!("\n  files touched: {files}"));
        }
    }
    text
}

pub fn task_add(env: &Env, out: &Output, title: String, after: Vec<u64>, scopes: &[String]) -> Result<(), Failure> {
    let scopes = scopes.iter().map(|s| env.scope_arg(s)).collect::<Result<_, _>>()?;
    let params = TaskAddParams { session: env.session.clone(), worktree: env.worktree(), title, after, scopes };
    let value = env.call(method::TASK_ADD, &params)?;
    out.print(&value, |v| format!("task {} added: {}", v["task"]["id"], v["task"]["title"].as_str().unwrap_or("")));
    Ok(())
}

pub fn task_list(env: &Env, out: &Output, ready: bool) -> Result<(), Failure> {
    let value = env.call(method::TASK_LIST, &TaskListParams { ready })?;
    out.print(&value, |v| render_tasks(&v["tasks"]));
    Ok(())
}

fn render_tasks(tasks: &Value) -> String {
    let rows: Vec<Vec<String>> = tasks
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                t["id"].to_string(),
                t["status"].as_str().unwrap_or("?").to_owned(),
                t["title"].as_str().unwrap_or("").to_owned(),
                joined(&t["after"], ","),
                joined(&t["scopes"], " "),
                t["holder"].as_str().unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    if rows.is_empty() {
        "the board is empty: `lanes task add <title>`".to_owned()
    } else {
        table(&["TASK", "STATUS", "TITLE", "AFTER", "SCOPES", "HOLDER"], &rows)
    }
}

pub fn task_next(env: &Env, out: &Output) -> Result<(), Failure> {
    let value =
        env.call(method::TASK_NEXT, &TaskNextParams { session: env.session.clone(), worktree: env.worktree() })?;
    out.print(&value, |v| {
        let mut text = format!("took task {}: {}", v["task"]["id"], v["task"]["title"].as_str().unwrap_or(""));
        if let Some(claim) = v["claim"].as_object() {
            text.push_str(&format!("\nclaim {} on {}", claim["id"], joined(&claim["scopes"], ", ")));
        }
        if let Some(note) = v["task"]["note"].as_str() {
            text.push_str(&format!("\nnote from the last holder: {note}"));
        }
        text
    });
    Ok(())
}

pub fn task_done(env: &Env, out: &Output, id: u64) -> Result<(), Failure> {
    let value = env.call(method::TASK_DONE, &TaskDoneParams { session: env.session.clone(), task: id })?;
    out.print(&value, |v| format!("task {} done; its claim is released", v["task"]["id"]));
    Ok(())
}

pub fn task_change(
    env: &Env,
    out: &Output,
    id: u64,
    action: &str,
    title: Option<String>,
    scopes: &[String],
    note: Option<String>,
) -> Result<(), Failure> {
    let scopes = if scopes.is_empty() {
        None
    } else {
        Some(scopes.iter().map(|s| env.scope_arg(s)).collect::<Result<Vec<_>, _>>()?)
    };
    let params = lanes_proto::TaskChangeParams {
        session: env.session.clone(),
        worktree: env.worktree(),
        task: id,
        action: action.to_owned(),
        title,
        scopes,
        note,
    };
    let value = env.call(method::TASK_CHANGE, &params)?;
    out.print(&value, |v| {
        let task = &v["task"];
        match action {
            "drop" => format!("task {} dropped from the board", task["id"]),
            "give_back" => format!("task {} is back on the board; its claim is released", task["id"]),
            _ => format!(
                "task {} is now \"{}\" on {}",
                task["id"],
                task["title"].as_str().unwrap_or(""),
                joined(&task["scopes"], ", ")
            ),
        }
    });
    Ok(())
}

pub fn task_show(env: &Env, out: &Output, id: u64) -> Result<(), Failure> {
    let value = env.call(method::TASK_LIST, &TaskListParams { ready: false })?;
    let task = value["tasks"].as_array().into_iter().flatten().find(|t| t["id"] == id).cloned();
    let Some(task) = task else {
        return Err(Failure {
            code: ErrorCode::NotFound,
            message: format!("no task {id}: `lanes task list` shows the board"),
            data: Value::Null,
        });
    };
    out.print(&json!({ "task": task }), |v| {
        let t = &v["task"];
        format!(
            "task {} ({})\n  {}\n  after: {}\n  scopes: {}\n  holder: {}\n  note: {}",
            t["id"],
            t["status"].as_str().unwrap_or("?"),
            t["title"].as_str().unwrap_or(""),
            joined(&t["after"], ", "),
            joined(&t["scopes"], " "),
            t["holder"].as_str().unwrap_or("-"),
            t["note"].as_str().unwrap_or("-")
        )
    });
    Ok(())
}

/// Starts the sidecar with this shell's `LANES_*` settings: the one place a client's environment reaches it.
pub fn sidecar_start(env: &Env, out: &Output) -> Result<(), Failure> {
    let hello = env.connect_passing(true)?.call_value(method::HELLO, &hello_params())?;
    out.print(
        &json!({"running": true, "pid": hello["pid"], "version": hello["version"], "socket": env.paths.socket}),
        |v| format!("sidecar running (pid {}) on {}", v["pid"], env.paths.socket.display()),
    );
    Ok(())
}

pub fn sidecar_stop(env: &Env, out: &Output) -> Result<(), Failure> {
    let program = std::env::current_exe().unwrap_or_default();
    let pid = match env.launcher(&program).probe(Duration::from_secs(2)) {
        Probe::Ready(mut client, hello) | Probe::NeedsRestart(mut client, hello) => {
            let _ = client.call_value(method::SHUTDOWN, &json!({}));
            Some(hello.pid)
        }
        Probe::Unreachable(_) => None,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let timed_out = |why: String| Failure {
        code: ErrorCode::Unavailable,
        message: format!("{why}; its pid is in {}", env.paths.pidfile.display()),
        data: Value::Null,
    };
    match pid {
        // Wait for the exit of the sidecar that was told to stop (its lock goes just before), so `stop` then
        // `start` never overlap. A client racing the stop may already have started the next one; that one is
        // not this command's to wait for.
        Some(pid) => {
            while process_alive(pid) {
                if Instant::now() >= deadline {
                    return Err(timed_out(format!("the sidecar (pid {pid}) did not stop in time")));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        None => wait_until_stopped(&env.paths, deadline).map_err(|e| timed_out(e.to_string()))?,
    }
    out.print(&json!({"stopped": pid.is_some(), "pid": pid}), |_| match pid {
        Some(pid) => format!("sidecar stopped (pid {pid})"),
        None => "no sidecar was running".to_owned(),
    });
    Ok(())
}

/// Whether a process runs (and is not a zombie waiting to be reaped), from /proc.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
}

pub fn sidecar_status(env: &Env, out: &Output) -> Result<(), Failure> {
    let program = std::env::current_exe().unwrap_or_default();
    let value = match env.launcher(&program).probe(Duration::from_secs(2)) {
        Probe::Ready(_, hello) | Probe::NeedsRestart(_, hello) => json!({
            "running": true, "pid": hello.pid, "version": hello.version, "protocol": hello.protocol,
            "socket": env.paths.socket, "current": hello.version == env!("CARGO_PKG_VERSION"),
        }),
        Probe::Unreachable(e) => json!({
            "running": false,
            "locked": sidecar_alive(&env.paths).unwrap_or(false),
            "socket": env.paths.socket,
            "reason": e.to_string(),
        }),
    };
    let running = value["running"] == true;
    out.print(&value, |v| {
        if running {
            format!(
                "sidecar running: pid {}, version {}, socket {}",
                v["pid"],
                v["version"].as_str().unwrap_or("?"),
                env.paths.socket.display()
            )
        } else {
            "sidecar not running (any lanes command starts it)".to_owned()
        }
    });
    if running { Ok(()) } else { Err(Failure::reported(ErrorCode::Unavailable)) }
}
