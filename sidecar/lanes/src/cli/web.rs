//! `lanes web`: the hub's web view (lanes-hub's `web` module) for this repository's sidecar, on loopback:
//! live sessions with their client, claims with pending work, the task board, the landing queue and the
//! event stream, read from the sidecar as `lanes watch` reads them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::watch::View;
use super::{Env, Failure};
use crate::cli::output::Output;

/// How many events the page shows, newest first.
const EVENTS_SHOWN: usize = 50;

/// The sidecar as the page's source: one connection, made again when it breaks.
struct Sidecar {
    env: Env,
    state: Mutex<(Option<lanes_proto::client::Client>, View)>,
}

impl Sidecar {
    fn read(&self) -> Result<Value, Failure> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (client, view) = &mut *state;
        let mut connection = match client.take() {
            Some(connection) => connection,
            None => self.env.connect()?,
        };
        view.refresh(&mut connection)?;
        *client = Some(connection);
        let live: Vec<&Value> =
            view.status["sessions"].as_array().into_iter().flatten().filter(|s| s["state"] == "live").collect();
        Ok(json!({
            "title": format!("lanes: {}", self.env.location.common_dir.parent().unwrap_or(&self.env.location.worktree).display()),
            "sessions": live,
            "claims": view.status["claims"],
            "tasks": view.status["tasks"],
            "queue": view.queue["entries"],
            "events": view.events.iter().rev().take(EVENTS_SHOWN).collect::<Vec<_>>(),
        }))
    }
}

impl lanes_hub::web::Source for Sidecar {
    fn view(&self, _project: Option<&str>) -> lanes_hub::web::ViewFuture<'_> {
        Box::pin(async move {
            // The client is blocking: read on this thread, briefly (the sidecar answers in well under 1 ms).
            tokio::task::block_in_place(|| self.read()).map_err(|e| e.message)
        })
    }
}

pub fn run(env: &Env, out: &Output, port: u16) -> Result<(), Failure> {
    // Fail now, with the CLI's message, if the sidecar cannot be reached or started.
    let source = Sidecar { env: env.clone(), state: Mutex::new((Some(env.connect()?), View::default())) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(e.to_string()))?;
    runtime.block_on(async {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| Failure::invalid(format!("cannot listen on {address}: {e}; pick another --port")))?;
        let bound = listener.local_addr().map_err(|e| Failure::internal(e.to_string()))?;
        let url = format!("http://{bound}/");
        out.print(&json!({"url": url}), |_| format!("lanes web: {url} (Ctrl-C stops it)"));
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        lanes_hub::web::serve_alone(listener, Arc::new(lanes_hub::web::Shared::new(Arc::new(source))), stop)
            .await
            .map_err(|e| Failure::internal(e.to_string()))
    })
}
