//! `lanes hub serve` runs the hub of lanes-hub in this process until SIGINT or SIGTERM; `lanes hub claims`
//! asks the configured hub itself, through the sidecar's hub client.

use std::io::Write;
use std::path::{Path, PathBuf};

use lanes_hub::ServeOptions;
use lanes_proto::hub::method;
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

/// `lanes hub claims`: asks the configured hub for the project's live claims.
pub fn claims(common_dir: &Path, out: &Output) -> Result<(), Failure> {
    let config = Config::load(common_dir).map_err(Failure::from)?;
    let link = HubLink::from_config(common_dir, &config.hub).map_err(Failure::from)?.ok_or_else(|| {
        Failure::invalid("no hub is configured: add [hub] urls to the configuration (see lanes hub serve --help)")
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("failed to start the async runtime: {e}")))?;
    let params = lanes_proto::hub::HubProjectParams { project: link.project.clone() };
    let reply: Value = runtime.block_on(link.call(method::CLAIMS, &params)).map_err(|e| match e {
        HubFailure::Unavailable(message) => {
            Failure::internal(format!("{message}: is `lanes hub serve` running there, with the same token?"))
        }
        HubFailure::Refused(error) => Failure::internal(error.message().to_owned()),
    })?;
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
        if rows.is_empty() { format!("no live claims on the hub for {}", link.project) } else { rows.join("\n") }
    });
    Ok(())
}
