//! `lanes doctor`: checks each part lanes needs and, for anything wrong, says how to fix it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use lanes_proto::lifecycle::{Probe, sidecar_alive};
use lanes_proto::paths::current_uid;
use lanes_store::Store;
use serde_json::{Value, json};

use crate::cli::output::Output;
use crate::cli::{Env, Failure};
use crate::config::Config;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Fail,
}

struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>, fix: Option<String>) -> Check {
        Check { name, status, detail: detail.into(), fix }
    }
}

pub fn run(env: &Env, out: &Output) -> Result<(), Failure> {
    let checks = vec![
        Check::new(
            "repository",
            Status::Ok,
            format!("worktree {}, common dir {}", env.location.worktree.display(), env.location.common_dir.display()),
            None,
        ),
        runtime_dir(&env.paths.dir),
        sidecar(env),
        store(&env.location.common_dir.join("lanes").join("state.db"), sidecar_alive(&env.paths).unwrap_or(false)),
        config(&env.location.common_dir),
        hub(env),
        hook_binary(),
        plugin(),
        agent_clients(&env.location.worktree),
        unchecked(&env.location.common_dir),
    ];
    report(&checks, out)
}

/// `lanes doctor` outside a repository: what does not need one (the runtime directory, the hook binary,
/// the Claude Code plugin), and that the rest needs one.
pub fn run_outside(why: &str, out: &Output) -> Result<(), Failure> {
    let dir = lanes_proto::paths::runtime_dir().join(format!("v{}", lanes_proto::PROTOCOL_VERSION));
    let checks = vec![
        Check::new(
            "repository",
            Status::Warn,
            format!("not in a git repository ({why})"),
            Some("run `lanes doctor` inside a repository to check its sidecar, store and config".into()),
        ),
        runtime_dir(&dir),
        hook_binary(),
        plugin(),
    ];
    report(&checks, out)
}

fn report(checks: &[Check], out: &Output) -> Result<(), Failure> {
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    let value = json!({
        "ok": !failed,
        "checks": checks.iter().map(|c| json!({
            "name": c.name,
            "status": match c.status { Status::Ok => "ok", Status::Warn => "warn", Status::Fail => "fail" },
            "detail": c.detail,
            "fix": c.fix,
        })).collect::<Vec<Value>>(),
    });
    out.print(&value, |_| {
        checks
            .iter()
            .map(|c| {
                let mark = match c.status {
                    Status::Ok => "ok  ",
                    Status::Warn => "warn",
                    Status::Fail => "FAIL",
                };
                let fix = c.fix.as_ref().map(|f| format!("\n        fix: {f}")).unwrap_or_default();
                format!("[{mark}] {:<11} {}{fix}", c.name, c.detail)
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    if failed { Err(Failure::reported(lanes_proto::ErrorCode::Internal)) } else { Ok(()) }
}

fn runtime_dir(dir: &Path) -> Check {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.uid() != current_uid() => Check::new(
            "runtime dir",
            Status::Fail,
            format!("{} belongs to uid {}, not you", dir.display(), meta.uid()),
            Some(format!("remove {} or set XDG_RUNTIME_DIR to a private directory", dir.display())),
        ),
        Ok(meta) if meta.mode() & 0o077 != 0 => Check::new(
            "runtime dir",
            Status::Fail,
            format!("{} has mode {:o}; others can reach the socket", dir.display(), meta.mode() & 0o777),
            Some(format!("chmod 700 {}", dir.display())),
        ),
        Ok(_) => Check::new("runtime dir", Status::Ok, format!("{} (private)", dir.display()), None),
        Err(_) => Check::new(
            "runtime dir",
            Status::Warn,
            format!("{} does not exist yet", dir.display()),
            Some("any lanes command creates it".into()),
        ),
    }
}

fn sidecar(env: &Env) -> Check {
    let program = std::env::current_exe().unwrap_or_default();
    match env.launcher(&program).probe(Duration::from_secs(2)) {
        Probe::Ready(mut client, hello) => {
            let status = client.call_value(lanes_proto::method::STATUS, &json!({})).unwrap_or_default();
            if let Some(lost) = status["sidecar"]["data_lost"].as_str() {
                return Check::new(
                    "sidecar",
                    Status::Fail,
                    lost.to_owned(),
                    Some(
                        "once you have re-claimed (or restored the file), `lanes sidecar stop`: the warning ends"
                            .into(),
                    ),
                );
            }
            if let Some(differences) = settings_unlike_files(&status["sidecar"], &env.location.common_dir) {
                return Check::new(
                    "sidecar",
                    Status::Warn,
                    format!("pid {} runs on other settings than the config files: {differences}", hello.pid),
                    Some("`lanes sidecar stop`: the next lanes command starts one on the config files".into()),
                );
            }
            Check::new(
                "sidecar",
                Status::Ok,
                format!(
                    "pid {}, version {}, protocol {}, socket {}",
                    hello.pid,
                    hello.version,
                    hello.protocol,
                    env.paths.socket.display()
                ),
                None,
            )
        }
        Probe::NeedsRestart(_, hello) => Check::new(
            "sidecar",
            Status::Warn,
            format!(
                "pid {} runs version {} (protocol {}), this lanes is {}",
                hello.pid,
                hello.version,
                hello.protocol,
                env!("CARGO_PKG_VERSION")
            ),
            Some("the next lanes command restarts it; or run `lanes sidecar stop`".into()),
        ),
        Probe::Unreachable(e) if sidecar_alive(&env.paths).unwrap_or(false) => Check::new(
            "sidecar",
            Status::Fail,
            format!(
                "a sidecar holds {} but does not answer on {}: {e}",
                env.paths.pidfile.display(),
                env.paths.socket.display()
            ),
            Some(format!(
                "kill the process whose pid is in {}; the next lanes command starts a new one",
                env.paths.pidfile.display()
            )),
        ),
        Probe::Unreachable(_) => Check::new(
            "sidecar",
            Status::Ok,
            "not running (it starts on demand and exits when idle)",
            Some("`lanes sidecar start` starts it now".into()),
        ),
    }
}

/// How the running sidecar's settings (its `status`) differ from what the config files say, if they do
/// (`sidecar.idle_timeout = "1s" (the files say "30m")`, and the `LANES_*` variables it was started with).
fn settings_unlike_files(sidecar: &Value, common_dir: &Path) -> Option<String> {
    let files = Config::load_files(common_dir).ok()?.settings();
    let running = sidecar["settings"].as_object()?;
    let differences: Vec<String> = files
        .iter()
        .filter_map(|(key, wanted)| {
            let runs = running.get(key)?.as_str()?;
            (runs != wanted).then(|| format!("{key} = {runs} (the files say {wanted})"))
        })
        .collect();
    if differences.is_empty() {
        return None;
    }
    let from_env: Vec<&str> = sidecar["from_env"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let started = match from_env.as_slice() {
        [] => String::new(),
        names => format!("; it was started with {} set", names.join(", ")),
    };
    Some(format!("{}{started}", differences.join(", ")))
}

/// The hub as the running sidecar sees it: connected or not, and how many events wait in its outbox.
fn hub(env: &Env) -> Check {
    let Ok(config) = Config::load(&env.location.common_dir) else {
        return Check::new("hub", Status::Warn, "the configuration does not load (see config)", None);
    };
    if config.hub.urls.is_empty() {
        return Check::new("hub", Status::Ok, "none configured: claims hold on this machine only", None);
    }
    let urls = config.hub.urls.join(", ");
    let Ok(status) = env.call(lanes_proto::method::STATUS, &json!({})) else {
        return Check::new("hub", Status::Warn, format!("{urls}: the sidecar could not be asked"), None);
    };
    let hub = &status["hub"];
    let waiting = hub["outbox"].as_u64();
    let outbox = waiting.unwrap_or(0);
    match hub["connected"].as_str() {
        Some(url) if outbox == 0 => Check::new(
            "hub",
            Status::Ok,
            format!("connected to {url}, project {}, outbox empty", hub["project"].as_str().unwrap_or("?")),
            None,
        ),
        Some(url) => Check::new(
            "hub",
            Status::Warn,
            format!("connected to {url}; {outbox} events still wait in the outbox"),
            Some("they are sent in the background; check again in a few seconds".into()),
        ),
        None => Check::new(
            "hub",
            Status::Warn,
            format!(
                "no hub answers ({}); {}; claims are refused as unavailable",
                hub["last_error"].as_str().unwrap_or("not tried yet"),
                waiting.map_or_else(
                    || "the event log waits to be sent".to_owned(),
                    |n| format!("{n} events wait in the outbox")
                )
            ),
            Some(format!(
                "make sure `lanes hub serve` runs at {urls} and that LANES_HUB_TOKEN or [hub] token_file holds its token"
            )),
        ),
    }
}

fn unchecked(common_dir: &Path) -> Check {
    let counts = crate::cli::status::unchecked_edits(common_dir);
    if counts.is_empty() {
        return Check::new("unchecked edits", Status::Ok, "every edit was checked", None);
    }
    let listed: Vec<String> = counts.iter().map(|(session, n)| format!("{session}: {n}")).collect();
    Check::new(
        "unchecked edits",
        Status::Warn,
        format!("edits that went ahead while lanes could not answer: {}", listed.join(", ")),
        Some(format!(
            "see why the sidecar did not answer in {}; remove {} once you have looked",
            common_dir.join("lanes/sidecar.log").display(),
            common_dir.join("lanes/unchecked.log").display()
        )),
    )
}

fn store(db: &Path, sidecar_running: bool) -> Check {
    if !db.exists() {
        return Check::new(
            "store",
            Status::Warn,
            format!("{} not created yet", db.display()),
            Some("`lanes init` creates it".into()),
        );
    }
    if sidecar_running {
        // The sidecar holds its database exclusively; it opened (and migrated) it at start.
        return Check::new(
            "store",
            Status::Ok,
            format!("{} (open in the running sidecar)", db.display()),
            Some("`lanes sidecar stop`, then `lanes doctor`, also checks its integrity".into()),
        );
    }
    match Store::open(db, lanes_store::Durability::Full).and_then(|s| Ok((s.integrity_check()?, s.schema_version()?))) {
        Ok((integrity, version)) if integrity == "ok" => {
            Check::new("store", Status::Ok, format!("{} (schema {version}, integrity ok)", db.display()), None)
        }
        Ok((integrity, _)) => Check::new(
            "store",
            Status::Fail,
            format!("{}: {integrity}", db.display()),
            Some(format!(
                "`lanes sidecar stop`, then `mv {0} {0}.corrupt` (and its -wal and -shm files), then any lanes \
                 command starts on a fresh database (the claims in the old one are lost; keep it for recovery)",
                db.display()
            )),
        ),
        Err(e) => Check::new(
            "store",
            Status::Fail,
            format!("{}: {e}", db.display()),
            Some(format!(
                "if it is damaged: `lanes sidecar stop`, then `mv {0} {0}.corrupt` (and its -wal and -shm files); \
                 the next lanes command starts on a fresh database",
                db.display()
            )),
        ),
    }
}

fn config(common_dir: &Path) -> Check {
    match Config::load(common_dir) {
        Ok(config) if config.warnings.is_empty() => Check::new(
            "config",
            Status::Ok,
            format!(
                "contention = \"{}\", default_ttl = \"{}\"; read {}",
                match config.contention {
                    lanes_core::Contention::Repo => "repo",
                    lanes_core::Contention::Worktree => "worktree",
                },
                lanes_core::human_duration(config.default_ttl),
                if config.sources.is_empty() {
                    "no config file (built-in defaults)".to_owned()
                } else {
                    config.sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                }
            ),
            None,
        ),
        Ok(config) => {
            Check::new("config", Status::Warn, config.warnings.join("; "), Some("remove or fix the keys named".into()))
        }
        Err(e) => Check::new("config", Status::Fail, format!("{e:#}"), Some("fix the file named".into())),
    }
}

/// The agent CLIs on PATH besides Claude Code's plugin, and whether lanes is wired into each.
fn agent_clients(repo: &std::path::Path) -> Check {
    let found: Vec<_> = crate::cli::clients::wired(repo).into_iter().filter(|(name, _, _)| name != "claude").collect();
    if found.is_empty() {
        return Check::new(
            "clients",
            Status::Ok,
            "no other agent CLI (codex, gemini, copilot, opencode) on PATH",
            None,
        );
    }
    let unwired: Vec<&str> = found.iter().filter(|(_, on, _)| !on).map(|(name, _, _)| name.as_str()).collect();
    let summary = found
        .iter()
        .map(|(name, on, file)| match file {
            Some(file) if *on => format!("{name} (wired in {})", file.display()),
            _ => format!("{name} (not wired)"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    if unwired.is_empty() {
        Check::new("clients", Status::Ok, summary, None)
    } else {
        let fix = unwired.iter().map(|name| format!("lanes setup {name}")).collect::<Vec<_>>().join("; ");
        Check::new("clients", Status::Warn, summary, Some(fix))
    }
}

/// Whether Claude Code has the lanes plugin installed and enabled, from its user settings.
fn plugin() -> Check {
    let Some(home) = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf()) else {
        return Check::new("plugin", Status::Warn, "cannot find the home directory", None);
    };
    let settings = home.join(".claude/settings.json");
    let enabled = std::fs::read_to_string(&settings)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| v["enabledPlugins"].as_object().cloned())
        .and_then(|plugins| {
            plugins.iter().find(|(id, _)| id.starts_with("lanes@")).map(|(id, on)| (id.clone(), on == true))
        });
    match enabled {
        Some((id, true)) => Check::new("plugin", Status::Ok, format!("{id} is installed and enabled in Claude Code"), None),
        Some((id, false)) => Check::new(
            "plugin",
            Status::Warn,
            format!("{id} is installed but disabled"),
            Some(format!("claude plugin enable {id}")),
        ),
        None => Check::new(
            "plugin",
            Status::Warn,
            format!("the lanes plugin is not enabled in {}", settings.display()),
            Some("run install.sh from the lanes checkout (or: claude plugin marketplace add <checkout> && claude plugin install lanes@lanes)".into()),
        ),
    }
}

fn hook_binary() -> Check {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("lanes-hook")).find(|p| p.is_file()))
        .unwrap_or_default();
    match found {
        Some(path) => Check::new("hook", Status::Ok, format!("lanes-hook at {}", path.display()), None),
        None => Check::new(
            "hook",
            Status::Warn,
            "lanes-hook is not on PATH; Claude Code hooks cannot run it",
            Some("run install.sh from the lanes checkout".into()),
        ),
    }
}
