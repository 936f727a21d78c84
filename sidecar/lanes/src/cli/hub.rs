//! `lanes hub serve` runs the hub of lanes-hub in this process until SIGINT or SIGTERM; `lanes hub claims` and
//! `lanes hub status` ask the configured hub itself, through the sidecar's hub client.

use std::io::Write;
use std::path::{Path, PathBuf};

use lanes_hub::ServeOptions;
use lanes_proto::hub::{HubProjectParams, HubStatusParams, method};
use serde_json::Value;

use crate::cli::Failure;
use crate::cli::output::Output;
use crate::config::{Config, log_filter, read_token};
use crate::daemon::hub_link::{HubFailure, HubLink};

/// Serves until told to stop. Prints one line (or JSON object) once it accepts connections.
/// The token comes from `LANES_HUB_TOKEN`, else `token_file`.
pub fn serve(out: &Output, mut options: ServeOptions, token_file: Option<PathBuf>) -> Result<(), Failure> {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
    options.token = read_token(token_file.as_deref()).map_err(|e| Failure::invalid(format!("{e:#}")))?;
    let scheme = if options.tls.is_some() { "wss" } else { "ws" };
    let store = options.store.clone();
    let json = out.json;
    // A start that fails (a port in use, a bad certificate) leaves no new database behind.
    let new_database = store
        .strip_prefix("sqlite:")
        .map(PathBuf::from)
        .filter(|db| !db.exists() && db.parent().is_none_or(|d| d.as_os_str().is_empty() || d.is_dir()));
    let mut listening = false;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("failed to start the async runtime: {e}")))?;
    let served = runtime.block_on(lanes_hub::serve(
        options,
        |address| {
            listening = true;
            let url = format!("{scheme}://{address}");
            let line = if json {
                serde_json::json!({"listening": url, "store": store}).to_string()
            } else {
                format!("lanes hub listening on {url} (store {store}); stop it with Ctrl-C")
            };
            let mut stdout = std::io::stdout();
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        },
        async {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = async { match terminate.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        },
    ));
    if served.is_err()
        && !listening
        && let Some(db) = &new_database
    {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    }
    served.map_err(|e| match e {
        lanes_hub::HubError::Invalid(message) => Failure::invalid(message),
        other => Failure::internal(other.to_string()),
    })
}

/// Asks the hub this repository's configuration names; returns its reply and the repository's project.
fn ask_hub<P: serde::Serialize>(
    common_dir: &Path,
    method: &str,
    params: impl FnOnce(&str) -> P,
) -> Result<(Value, String), Failure> {
    let config = Config::load(common_dir).map_err(Failure::from)?;
    let link = HubLink::from_config(common_dir, &config.hub).map_err(Failure::from)?.ok_or_else(|| {
        Failure::invalid("no hub is configured: add [hub] urls to the configuration (see lanes hub serve --help)")
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("failed to start the async runtime: {e}")))?;
    let reply: Value = runtime.block_on(link.call(method, &params(&link.project))).map_err(|e| match e {
        HubFailure::Unavailable(message) => {
            Failure::internal(format!("{message}: is `lanes hub serve` running there, with the same token?"))
        }
        HubFailure::Refused(error) => Failure::internal(error.message().to_owned()),
    })?;
    Ok((reply, link.project.clone()))
}

/// `lanes hub claims`: asks the configured hub for the project's live claims.
pub fn claims(common_dir: &Path, out: &Output) -> Result<(), Failure> {
    let (reply, project) =
        ask_hub(common_dir, method::CLAIMS, |project| HubProjectParams { project: project.to_owned() })?;
    out.print(&reply, |v| {
        let rows: Vec<String> = v["claims"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{:<24} claim {:<5} {:<20} {:<30} epoch {:<6} {}s left",
                    c["origin"].as_str().unwrap_or("?"),
                    c["id"],
                    c["holder"].as_str().unwrap_or("?"),
                    crate::cli::output::joined(&c["scopes"], " "),
                    c["epoch"],
                    c["ttl_secs"]
                )
            })
            .collect();
        if rows.is_empty() { format!("no live claims on the hub for {project}") } else { rows.join("\n") }
    });
    Ok(())
}

/// `lanes hub status`: the configured hub's figures for each project it serves (this repository's with `--this`).
pub fn status(common_dir: &Path, this_project_only: bool, out: &Output) -> Result<(), Failure> {
    let (reply, project) = ask_hub(common_dir, method::STATUS, |project| HubStatusParams {
        project: this_project_only.then(|| project.to_owned()),
    })?;
    out.print(&reply, |v| {
        let mut lines = vec![format!(
            "hub: lanes {}, store {}",
            v["version"].as_str().unwrap_or("?"),
            v["store"].as_str().unwrap_or("?")
        )];
        let projects = v["projects"].as_array().cloned().unwrap_or_default();
        if projects.is_empty() {
            lines.push(format!("no project has used this hub since it started (this repository's is {project})"));
        } else {
            lines.push(format!(
                "{:<32} {:>8} {:>8} {:>9} {:>13} {:>13}",
                "PROJECT", "CLAIMS", "SIDECARS", "GRANTS/S", "DECISION P50", "DECISION P99"
            ));
            for p in projects {
                let name = p["project"].as_str().unwrap_or("?");
                let marked = if name == project { format!("{name} *") } else { name.to_owned() };
                // A JSON value ignores width: each is made a string first.
                let [claims, sidecars, grants, p50, p99] =
                    ["claims", "sidecars", "grants_per_s", "decision_p50_ms", "decision_p99_ms"]
                        .map(|k| p[k].to_string());
                lines.push(format!("{marked:<32} {claims:>8} {sidecars:>8} {grants:>9} {p50:>10} ms {p99:>10} ms"));
            }
            lines.push("* this repository's project; decision times are this hub's own grants".to_owned());
        }
        lines.join("\n")
    });
    Ok(())
}
