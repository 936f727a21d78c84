//! `lanes hub serve`: runs the hub of lanes-hub in this process until SIGINT or SIGTERM.

use std::io::Write;
use std::path::PathBuf;

use lanes_hub::ServeOptions;

use crate::cli::Failure;
use crate::output::Output;

/// Serves until told to stop. Prints one line (or JSON object) once it accepts connections.
/// The token comes from `LANES_HUB_TOKEN`, else `token_file`.
pub fn run(out: &Output, mut options: ServeOptions, token_file: Option<PathBuf>) -> Result<(), Failure> {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(crate::daemon::log_filter())
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
    options.token =
        crate::hub_link::read_token(token_file.as_deref()).map_err(|e| Failure::invalid(format!("{e:#}")))?;
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
