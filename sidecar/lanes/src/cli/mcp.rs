//! `lanes mcp`: a stdio MCP server (the official `rmcp` SDK) for any MCP client. Each tool runs the same code as
//! the CLI command of its name, over the same sidecar: a result carries what `--json` prints, and a refusal is
//! a tool error with the CLI's message and data (the holder, the scope, the expiry).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Env, Failure};
use crate::cli::output::Output;

/// The server: the directory it runs in and the session it acts as (`--session`, `LANES_SESSION`, or this
/// process's CLI identity).
#[derive(Clone)]
pub struct Lanes {
    dir: PathBuf,
    session: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct ClaimArgs {
    /// Files, directories (`src/`) or globs (`src/**/*.rs`), relative to the repository.
    pub scopes: Vec<String>,
    /// A shared claim (readers) instead of an exclusive one.
    #[serde(default)]
    pub shared: bool,
    /// How long it lasts, e.g. `30m`, `2h`.
    pub ttl: Option<String>,
    /// A progress note the next holder will see.
    pub note: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct ReleaseArgs {
    /// The claim ids to release; empty with `all` for every claim of this session.
    #[serde(default)]
    pub claims: Vec<u64>,
    #[serde(default)]
    pub all: bool,
}

#[derive(Deserialize, JsonSchema)]
pub struct PathsArgs {
    /// Paths to check.
    pub paths: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct SendArgs {
    /// A session id, or `all`.
    pub to: String,
    pub text: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct HandoffArgs {
    pub claim: u64,
    /// The session that takes it over.
    pub to: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct WaitArgs {
    /// Claim ids or paths to wait for.
    pub targets: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct TaskAddArgs {
    pub title: String,
    /// Task ids this one waits for.
    #[serde(default)]
    pub after: Vec<u64>,
    /// What the task will claim when taken.
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct TaskListArgs {
    /// Only tasks ready to take.
    #[serde(default)]
    pub ready: bool,
}

#[derive(Deserialize, JsonSchema)]
pub struct TaskArgs {
    pub id: u64,
}

#[derive(Deserialize, JsonSchema)]
pub struct LandArgs {
    /// A worktree path or branch; this directory's worktree when absent.
    pub target: Option<String>,
}

#[tool_router]
impl Lanes {
    fn new(dir: PathBuf, session: Option<String>) -> Lanes {
        Lanes { dir, session }
    }

    /// Runs a CLI command's code off the async thread with a capturing output, and answers the tool call with
    /// what it would have printed with `--json`, or its refusal as a tool error.
    async fn run(&self, command: impl FnOnce(&Env, &Output) -> Result<(), Failure> + Send + 'static) -> CallToolResult {
        let (dir, session) = (self.dir.clone(), self.session.clone());
        let ran = tokio::task::spawn_blocking(move || {
            let env = Env::discover(&dir, session)?;
            let captured = Arc::new(Mutex::new(None));
            let out = Output { json: true, capture: Some(Arc::clone(&captured)) };
            command(&env, &out)?;
            let value = captured.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            Ok::<Value, Failure>(value.unwrap_or(Value::Null))
        })
        .await;
        match ran {
            Ok(Ok(value)) => CallToolResult::success(vec![ContentBlock::text(value.to_string())]),
            Ok(Err(failure)) => {
                let error = json!({"error": {"code": failure.code, "message": failure.message, "data": failure.data}});
                CallToolResult::error(vec![ContentBlock::text(format!("lanes: {}\n{error}", failure.message))])
            }
            Err(e) => CallToolResult::error(vec![ContentBlock::text(format!("lanes: the command failed: {e}"))]),
        }
    }

    #[tool(description = "Who works on what: sessions, claims (with holders and expiry), tasks, the hub.")]
    async fn status(&self) -> CallToolResult {
        self.run(crate::cli::status::status).await
    }

    #[tool(description = "Claim files, directories or globs for this session before editing them. Refused, naming \
                          the holder, when another session holds an overlapping scope.")]
    async fn claim(&self, Parameters(args): Parameters<ClaimArgs>) -> CallToolResult {
        self.run(move |env, out| {
            crate::cli::claims::claim(env, out, &args.scopes, args.shared, args.ttl, args.note, None)
        })
        .await
    }

    #[tool(description = "Release claims of this session (by id, or all).")]
    async fn release(&self, Parameters(args): Parameters<ReleaseArgs>) -> CallToolResult {
        self.run(move |env, out| crate::cli::claims::release(env, out, args.claims, args.all, None, false)).await
    }

    #[tool(description = "Who holds these paths, without claiming them.")]
    async fn check(&self, Parameters(args): Parameters<PathsArgs>) -> CallToolResult {
        self.run(move |env, out| crate::cli::claims::check(env, out, &args.paths)).await
    }

    #[tool(description = "Send a message to another session (or `all`); it reaches them at their next step.")]
    async fn send(&self, Parameters(args): Parameters<SendArgs>) -> CallToolResult {
        self.run(move |env, out| crate::cli::messages::send(env, out, args.to, args.text)).await
    }

    #[tool(description = "Messages waiting for this session.")]
    async fn inbox(&self) -> CallToolResult {
        self.run(crate::cli::messages::inbox).await
    }

    #[tool(description = "Hand a claim of this session over to another session.")]
    async fn handoff(&self, Parameters(args): Parameters<HandoffArgs>) -> CallToolResult {
        self.run(move |env, out| crate::cli::claims::handoff(env, out, args.claim, args.to, None)).await
    }

    #[tool(description = "Wait until these claims or paths are free.")]
    async fn wait(&self, Parameters(args): Parameters<WaitArgs>) -> CallToolResult {
        self.run(move |env, out| crate::cli::claims::wait(env, out, &args.targets)).await
    }

    #[tool(description = "Add a task to the board.")]
    async fn task_add(&self, Parameters(args): Parameters<TaskAddArgs>) -> CallToolResult {
        self.run(move |env, out| crate::cli::tasks::task_add(env, out, args.title, args.after, &args.scopes)).await
    }

    #[tool(description = "The task board.")]
    async fn task_list(&self, Parameters(args): Parameters<TaskListArgs>) -> CallToolResult {
        self.run(move |env, out| crate::cli::tasks::task_list(env, out, args.ready)).await
    }

    #[tool(description = "Take the next ready task (and claim its scopes).")]
    async fn task_next(&self) -> CallToolResult {
        self.run(crate::cli::tasks::task_next).await
    }

    #[tool(description = "Mark a task of this session done (its claim is released).")]
    async fn task_done(&self, Parameters(args): Parameters<TaskArgs>) -> CallToolResult {
        self.run(move |env, out| crate::cli::tasks::task_done(env, out, args.id)).await
    }

    #[tool(description = "Queue this worktree's branch (or another) to land on the base branch, tests green.")]
    async fn land(&self, Parameters(args): Parameters<LandArgs>) -> CallToolResult {
        self.run(move |env, out| crate::cli::land::land(env, out, args.target, None, None, false)).await
    }
}

#[tool_handler]
impl ServerHandler for Lanes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// Serves MCP on stdin/stdout until the client hangs up.
pub fn serve(dir: PathBuf, session: Option<String>) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the MCP server: {e}")))?;
    runtime.block_on(async {
        let service = Lanes::new(dir, session)
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| Failure::internal(format!("the MCP handshake failed: {e}")))?;
        service.waiting().await.map_err(|e| Failure::internal(format!("the MCP server stopped: {e}")))?;
        Ok(())
    })
}
