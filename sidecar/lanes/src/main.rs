//! `lanes`: the command-line interface and the sidecar daemon of lanes.
//!
//! The CLI is a thin synchronous client of the sidecar; `lanes sidecar run` is the daemon itself.

#![forbid(unsafe_code)]

// Code of the `lanes` command (runs in the user's process), code of the sidecar daemon (`lanes sidecar run`,
// its own process), and what both read: the config files, git, scopes. `lanes hub serve` runs the lanes-hub
// crate's server in a process of its own (cli/hub.rs).
mod cli;
mod config;
mod daemon;
mod git;
mod scopes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cli::{demo, doctor, output, team, watch, worktrees};

const EXAMPLES: &str = "\
Examples:
  lanes init                              set up this repository (idempotent)
  lanes claim src/api.rs --note 'splitting the handlers'
  lanes claim 'src/**/*.rs' --shared --ttl 2h
  lanes check src/api.rs                  who holds it? exit 3 if someone else does
  lanes status --json                     sessions and claims as one JSON object
  lanes release --all
  lanes handoff 12 --to 6f1c2d0e          give claim 12 to another session
  lanes send @all 'rebasing main soon'     a message every other live session sees once
  lanes demo                              watch scripted agents collide and coordinate

Exit codes: 0 ok, 1 internal error or unavailable, 2 invalid input, 3 refused.";

/// Coordinate several coding agents in one git repository: claims on files, held by a per-repo sidecar.
#[derive(Debug, Parser)]
#[command(name = "lanes", version, after_help = EXAMPLES)]
struct Cli {
    /// Print exactly one JSON object on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Act as this session (`<session>` or `<session>/<agent>`); default: $LANES_SESSION, else one per user
    /// and worktree.
    #[arg(long, global = true, env = "LANES_SESSION", hide_env_values = true)]
    session: Option<String>,
    /// Run as if started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Set up this repository: local config, git hooks that stamp commits with `Lanes-*` trailers, and a
    /// running sidecar. Safe to re-run.
    Init {
        /// Remove lanes' git hooks and restore the ones that were there before.
        #[arg(long)]
        undo: bool,
    },
    /// Wire lanes' hook into an agent CLI's own configuration: Claude Code, Codex, Gemini CLI, Copilot CLI
    /// or opencode. Merges into what is there and says what it changed; safe to re-run.
    #[command(after_help = "\
Examples:
  lanes setup codex                  this repository's .codex/hooks.json
  lanes setup gemini --user          ~/.gemini/settings.json, for every repository
  lanes setup opencode --undo        take lanes' plugin out again

Files: claude .claude/settings.json, codex .codex/hooks.json ($CODEX_HOME/hooks.json), gemini
.gemini/settings.json, copilot .github/hooks/lanes.json (~/.copilot/hooks/lanes.json), opencode
.opencode/plugins/lanes.js (~/.config/opencode/plugins/lanes.js). For Claude Code the plugin (install.sh)
is the usual way; this writes the same hooks into settings instead.")]
    Setup {
        /// The agent CLI.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(cli::clients::CLIENTS))]
        client: String,
        /// The repository's files (the default).
        #[arg(long, conflicts_with = "user")]
        project: bool,
        /// The user's files, for every repository.
        #[arg(long)]
        user: bool,
        /// Take lanes' hooks out again, leaving everything else as it was.
        #[arg(long)]
        undo: bool,
    },
    /// Serve lanes' tools (status, claim, release, check, send, inbox, handoff, wait, task_*, land) to an MCP
    /// client over stdin/stdout.
    #[command(after_help = "\
Examples:
  claude mcp add lanes -- lanes mcp               Claude Code
  [mcp_servers.lanes] command = \"lanes\", args = [\"mcp\"]   Codex (config.toml)

Each tool answers with what the CLI command of its name prints with --json; a refusal is a tool error naming
the holder. The tools act as --session, LANES_SESSION, or this process's CLI session.")]
    Mcp,
    /// Run scripted agents in a throwaway repository and print what happens.
    #[command(
        after_help = "Examples:\n  lanes demo\n  lanes demo --hub      also a second machine sharing claims through a local hub"
    )]
    Demo {
        /// Also run a local hub and a second "machine" (a clone with its own sidecar) that shares claims
        /// through it.
        #[arg(long)]
        hub: bool,
    },
    /// Claim files, directories or globs for this session.
    #[command(
        after_help = "Examples:\n  lanes claim src/api.rs\n  lanes claim src/ docs/guide.md --ttl 2h --note 'moving docs'\n  lanes claim '**/*.toml' --shared"
    )]
    Claim {
        /// Paths (relative to here, or absolute inside the repository), globs, or `.` for everything. None:
        /// list this session's claims (as `lanes claims`).
        #[arg(value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Share the scopes with other shared claims (exclusive by default).
        #[arg(long)]
        shared: bool,
        /// Lease length: 90s, 5m, 2h, 1d (1s to 30d); default from config (30m).
        #[arg(long, value_name = "D")]
        ttl: Option<String>,
        /// A progress note, shown to whoever claims these scopes after this claim lapses.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// The task this claim is for.
        #[arg(long, value_name = "ID")]
        task: Option<String>,
    },
    /// This session's live claims (with `--session`, another's).
    Claims,
    /// Release claims of this session.
    #[command(
        after_help = "Examples:\n  lanes release 12 13\n  lanes release --all\n  lanes release 12 --epoch 40\n  lanes release --pending 7         give up pending work: its paths are free again, the changes stay"
    )]
    Release {
        /// Claim ids.
        #[arg(value_name = "CLAIM", required_unless_present = "all")]
        claims: Vec<u64>,
        /// Release every claim of this session (with --pending: every pending work it left).
        #[arg(long, conflicts_with = "claims")]
        all: bool,
        /// Refuse unless the claim is still at this epoch.
        #[arg(long, value_name = "N")]
        epoch: Option<u64>,
        /// Give up pending work (changes left in a worktree that have not landed), anyone's, by claim id.
        #[arg(long)]
        pending: bool,
    },
    /// Extend a claim's lease.
    Renew {
        /// Claim id.
        claim: u64,
        /// New lease length (default: the claim's own).
        #[arg(long, value_name = "D")]
        ttl: Option<String>,
        /// Refuse unless the claim is still at this epoch.
        #[arg(long, value_name = "N")]
        epoch: Option<u64>,
    },
    /// Show who holds paths; exit 3 if another live session does.
    Check {
        /// Paths or globs.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Record that this session waits for a claim (or for whoever holds some paths): the holder is told,
    /// you are told when it ends; a wait that would deadlock is refused.
    #[command(after_help = "Examples:\n  lanes wait 12\n  lanes wait src/api.rs")]
    Wait {
        /// A claim id, or paths.
        #[arg(required = true, value_name = "CLAIM|PATH")]
        targets: Vec<String>,
    },
    /// Sessions, claims, tasks and hub of this repository.
    Status,
    /// Every session lanes knows: live and recently ended, with worktree, branch, model, claims, latest
    /// checkpoint and prompt (secrets masked).
    Sessions {
        /// Also ended sessions (kept for `[sessions] keep_ended`, default 7 days).
        #[arg(long)]
        all: bool,
    },
    /// Give a claim to another session; the old holder's epoch stops working.
    Handoff {
        /// Claim id.
        claim: u64,
        /// The receiving session.
        #[arg(long, value_name = "SESSION")]
        to: String,
        /// Refuse unless the claim is still at this epoch.
        #[arg(long, value_name = "N")]
        epoch: Option<u64>,
    },
    /// The task board: add tasks with dependencies, take the next ready one (claiming its scopes), finish it.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Team templates: `lanes team up feature` makes a worktree per role, seeds the board, and gives each
    /// role its instructions at SessionStart.
    #[command(subcommand)]
    Team(TeamCmd),
    /// Send a message to a session (or `@all`); it reaches the recipient's next hook, once.
    #[command(
        after_help = "Examples:\n  lanes send 6f1c2d0e 'I need src/api.rs for 10 minutes, can you release it?'\n  lanes send @all 'main is green again, rebase now'"
    )]
    Send {
        /// A session id, or `@all` for every other live session.
        #[arg(value_name = "SESSION|@all")]
        to: String,
        /// The message (at most 8 KiB).
        #[arg(value_name = "TEXT")]
        text: String,
    },
    /// Show this session's unread messages (each is shown once).
    Inbox,
    /// Commit a checkpoint of this worktree (tracked and untracked files) without touching your index,
    /// HEAD or branches. Claude Code sessions get one at the end of every turn that changed something.
    Checkpoint {
        /// Why.
        #[arg(short, long, value_name = "MSG")]
        message: Option<String>,
    },
    /// List checkpoints, newest first (this session's; `--all` for every session's).
    Checkpoints {
        /// Every session's checkpoints.
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Restore files to a checkpoint. Shows what changes, refuses files other live sessions hold (unless
    /// --force), and first checkpoints the state it replaces, so a rewind can be undone.
    #[command(
        after_help = "Examples:\n  lanes rewind 3f2a9c1e0b7d --dry-run\n  lanes rewind 3f2a9c1e0b7d --paths src/api.rs docs/"
    )]
    Rewind {
        /// A checkpoint id from `lanes checkpoints`.
        checkpoint: String,
        /// Only show what would change.
        #[arg(long)]
        dry_run: bool,
        /// Only these paths (relative to the current directory, or absolute inside the repository; a
        /// directory covers what is below it).
        #[arg(long, num_args = 1.., value_name = "PATH")]
        paths: Vec<String>,
        /// Also overwrite files inside other live sessions' claims.
        #[arg(long)]
        force: bool,
    },
    /// Which session made a commit, from which checkpoints and under which claims; or, for a file (or one
    /// line of it), the same for the commit that last changed it.
    #[command(
        after_help = "Examples:\n  lanes explain HEAD\n  lanes explain src/api.rs\n  lanes explain src/api.rs:42"
    )]
    Explain {
        /// A commit, or PATH, or PATH:LINE.
        #[arg(value_name = "COMMIT|PATH[:LINE]")]
        target: String,
    },
    /// Put a branch in the landing queue: rebased onto the base, tested, and landed only when green.
    #[command(
        after_help = "The sidecar lands queued branches one at a time in a scratch worktree of its own (never your checkout);\na conflict, red tests or a timeout block the entry and leave the base and the branch as they were.\n\nExamples:\n  lanes land                                the current worktree's branch\n  lanes land feature-x --test 'cargo test' --wait\n  lanes land ../wt-api --onto develop"
    )]
    Land {
        /// A worktree or a branch; default: the current worktree's branch.
        #[arg(value_name = "WORKTREE|BRANCH")]
        target: Option<String>,
        /// The branch to land on; default: [land] base, else origin/HEAD's branch, main or master.
        #[arg(long, value_name = "BASE")]
        onto: Option<String>,
        /// The test command to run before the base moves; default: [land] test.
        #[arg(long, value_name = "CMD")]
        test: Option<String>,
        /// Follow the landing until it lands (exit 0) or blocks (exit 3), with its output.
        #[arg(long)]
        wait: bool,
    },
    /// The landing queue: position, state, branch, owner and last result.
    #[command(after_help = "Examples:\n  lanes queue\n  lanes queue --follow      each landing's output as it runs")]
    Queue {
        /// Stream each landing's output until the queue is empty.
        #[arg(long, short)]
        follow: bool,
    },
    /// Print the event log (grants, renewals, releases, expiries, handoffs) as NDJSON.
    Events {
        /// Start after this sequence number.
        #[arg(long, default_value_t = 0, value_name = "CURSOR")]
        since: u64,
        /// At most this many events per read.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Keep printing new events as they happen (Ctrl-C stops).
        #[arg(long, short)]
        follow: bool,
    },
    /// Every worktree with its owner, branch, dirty files, commits ahead/behind the base, claims, age, lock.
    Worktrees,
    /// Remove finished, clean, merged worktrees and their branches; prune stale ones. Keeps uncommitted or
    /// unmerged work unless --force, and says what it kept and why.
    Gc {
        /// Also remove worktrees with uncommitted changes or unmerged commits (never one in use).
        #[arg(long)]
        force: bool,
        /// Only say what would happen.
        #[arg(long)]
        dry_run: bool,
    },
    /// A live terminal view: sessions, claims with time left, the task board and the event stream.
    Watch,
    /// The live web view of this repository (sessions, claims, pending work, tasks, the landing queue,
    /// events) on loopback; prints its URL and serves until Ctrl-C.
    #[command(after_help = "Examples:\n  lanes web\n  lanes web --port 7879")]
    Web {
        /// The loopback port to serve on (0: any free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Check the set-up and say what is wrong and how to fix it.
    Doctor,
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  lanes completions bash > ~/.local/share/bash-completion/completions/lanes\n  lanes completions zsh > ~/.zfunc/_lanes\n  lanes completions fish > ~/.config/fish/completions/lanes.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    #[command(after_help = "Examples:\n  lanes man | man -l -\n  lanes man > ~/.local/share/man/man1/lanes.1")]
    Man,
    /// Run, start, stop or inspect this repository's sidecar.
    #[command(subcommand)]
    Sidecar(SidecarCmd),
    /// Serve a shared hub, so claims hold across machines.
    #[command(subcommand)]
    Hub(HubCmd),
}

#[derive(Debug, Subcommand)]
enum HubCmd {
    /// Serve the hub: JSON-RPC over WebSocket, claims kept in SQLite or etcd.
    #[command(after_help = "\
Examples:
  lanes hub serve                                         loopback, ./lanes-hub.db, no token needed
  lanes hub serve --store etcd:http://10.0.0.5:2379,http://10.0.0.6:2379 --listen 0.0.0.0:7878 \\
      --token-file /etc/lanes/hub.token --tls-cert hub.pem --tls-key hub.key
Sidecars use it with, in <repo>/.git/lanes/config.toml or ~/.config/lanes/config.toml:
  [hub]
  urls = [\"ws://127.0.0.1:7878\"]

The token comes from --token-file or LANES_HUB_TOKEN, never from the command line.")]
    Serve {
        /// Address to listen on. Anything but loopback needs a token, and TLS or --insecure.
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: std::net::SocketAddr,
        /// `sqlite:PATH` (one box) or `etcd:URL[,URL...]` (a cluster).
        #[arg(long, default_value = "sqlite:lanes-hub.db")]
        store: String,
        /// File holding the token clients must present.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Certificate chain (PEM) for wss://.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// Private key (PEM) for wss://.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Allow plain ws:// on a non-loopback address.
        #[arg(long)]
        insecure: bool,
        /// Requests per second one connection may send.
        #[arg(long, default_value_t = 5000)]
        rate_limit: u32,
    },
    /// The live claims the hub holds for this repository's project, from every machine.
    #[command(after_help = "Examples:\n  lanes hub claims\n  lanes hub claims --json | jq '.claims[].scopes'")]
    Claims,
    /// The configured hub's figures for each project it serves: claims, connected sidecars, grants/s and
    /// p50/p99 decision time.
    #[command(
        after_help = "Examples:\n  lanes hub status\n  lanes hub status --this --json | jq '.projects[0].grants_per_s'"
    )]
    Status {
        /// Only this repository's project.
        #[arg(long)]
        this: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TeamCmd {
    /// Bring a team up from a template (built in: feature; or a path to a .toml file).
    #[command(after_help = "Examples:\n  lanes team up feature\n  lanes team up ./teams/migration.toml --launch")]
    Up {
        /// Template name or path.
        template: String,
        /// Also start a Claude Code session per role, in tmux windows.
        #[arg(long)]
        launch: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TaskCmd {
    /// Add a task.
    #[command(
        after_help = "Examples:\n  lanes task add 'design the schema' --scope db/\n  lanes task add 'write the API' --after 1 --scope src/api/"
    )]
    Add {
        /// What to do.
        title: String,
        /// A task that must be done first (repeatable).
        #[arg(long, value_name = "ID")]
        after: Vec<u64>,
        /// A path or glob taking the task claims (repeatable).
        #[arg(long, value_name = "S")]
        scope: Vec<String>,
    },
    /// List the board.
    List {
        /// Only ready tasks (open, their dependencies done).
        #[arg(long)]
        ready: bool,
    },
    /// Take the first ready task and claim its scopes, in one step.
    Next,
    /// Mark a task you took done (releases its claim).
    Done {
        /// Task id.
        id: u64,
    },
    /// Show one task.
    Show {
        /// Task id.
        id: u64,
    },
    /// Take a task off the board (an open one, or one you took: its claim is released).
    Drop {
        /// Task id.
        id: u64,
    },
    /// Change an open task's title or scopes.
    #[command(
        after_help = "Examples:\n  lanes task edit 3 --title 'write the API and its tests'\n  lanes task edit 3 --scope src/api/ --scope tests/api/"
    )]
    Edit {
        /// Task id.
        id: u64,
        /// The new title.
        #[arg(long)]
        title: Option<String>,
        /// The new scopes (repeatable; replaces the old ones).
        #[arg(long, value_name = "S")]
        scope: Vec<String>,
    },
    /// Give a task you took back to the board (its claim is released), with a note for whoever takes it next.
    #[command(
        name = "give-back",
        after_help = "Examples:\n  lanes task give-back 3 --note 'schema done, API half written'"
    )]
    GiveBack {
        /// Task id.
        id: u64,
        /// A progress note for the next taker.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SidecarCmd {
    /// Run the sidecar in this process (what auto-start runs, detached).
    Run {
        /// Log to stderr instead of <git-common-dir>/lanes/sidecar.log.
        #[arg(long)]
        foreground: bool,
        /// Report this version in the handshake (for tests of the upgrade path).
        #[arg(long, hide = true)]
        report_version: Option<String>,
    },
    /// Start the sidecar in the background if it is not running.
    Start,
    /// Stop the sidecar and wait until it is gone.
    Stop,
    /// Whether the sidecar runs, and its pid, version and socket.
    Status,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // With --json a script gets one JSON object even for a usage error; help and --version print as usual.
        Err(e) if e.use_stderr() && std::env::args_os().any(|a| a == "--json") => {
            let message = e.render().to_string();
            let first = message.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            output::failure(&cli::Failure::invalid(format!("{first} (see lanes --help)")), true);
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let json = cli.json;
    let result = match cli.dir.clone().map_or_else(std::env::current_dir, Ok) {
        Ok(dir) => dispatch(cli, dir),
        Err(e) => Err(cli::Failure::internal(format!("cannot read the current directory: {e}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            output::failure(&failure, json);
            ExitCode::from(u8::try_from(failure.exit_code()).unwrap_or(1))
        }
    }
}

fn dispatch(cli: Cli, dir: PathBuf) -> Result<(), cli::Failure> {
    let out = output::Output { json: cli.json, capture: None };
    match cli.command {
        Cmd::Sidecar(SidecarCmd::Run { foreground, report_version }) => {
            daemon::run(&dir, daemon::RunOptions { foreground, report_version }).map_err(cli::Failure::from)
        }
        Cmd::Demo { hub } => demo::run(&out, hub),
        Cmd::Hub(HubCmd::Serve { listen, store, token_file, tls_cert, tls_key, insecure, rate_limit }) => {
            let tls = tls_cert.zip(tls_key);
            let options = lanes_hub::ServeOptions { listen, store, token: None, tls, insecure, rate_limit };
            cli::hub::serve(&out, options, token_file)
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "lanes", &mut script);
            output::bytes(&script);
            Ok(())
        }
        Cmd::Man => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| cli::Failure::internal(format!("cannot render the manual page: {e}")))?;
            output::bytes(&page);
            Ok(())
        }
        Cmd::Mcp => cli::mcp::serve(dir, cli.session),
        Cmd::Setup { client, user: true, undo, .. } => {
            cli::clients::setup(&out, &dir, &client, cli::clients::Scope::User, undo)
        }
        Cmd::Doctor => match cli::Env::discover(&dir, cli.session) {
            Ok(env) => doctor::run(&env, &out),
            Err(outside) => doctor::run_outside(&outside.message, &out),
        },
        command => {
            let env = cli::Env::discover(&dir, cli.session)?;
            match command {
                Cmd::Init { undo: false } => cli::setup::init(&env, &out),
                Cmd::Init { undo: true } => cli::setup::uninit(&env, &out),
                Cmd::Setup { client, undo, .. } => {
                    cli::clients::setup(&out, &env.location.worktree, &client, cli::clients::Scope::Project, undo)
                }
                Cmd::Claims => cli::claims::claims(&env, &out),
                Cmd::Claim { scopes, .. } if scopes.is_empty() => cli::claims::claims(&env, &out),
                Cmd::Claim { scopes, shared, ttl, note, task } => {
                    cli::claims::claim(&env, &out, &scopes, shared, ttl, note, task)
                }
                Cmd::Release { claims, all, epoch, pending } => {
                    cli::claims::release(&env, &out, claims, all, epoch, pending)
                }
                Cmd::Renew { claim, ttl, epoch } => cli::claims::renew(&env, &out, claim, ttl, epoch),
                Cmd::Check { paths } => cli::claims::check(&env, &out, &paths),
                Cmd::Status => cli::status::status(&env, &out),
                Cmd::Wait { targets } => cli::claims::wait(&env, &out, &targets),
                Cmd::Sessions { all } => cli::status::sessions(&env, &out, all),
                Cmd::Handoff { claim, to, epoch } => cli::claims::handoff(&env, &out, claim, to, epoch),
                Cmd::Events { since, limit, follow } => cli::status::events(&env, &out, since, limit, follow),
                Cmd::Send { to, text } => cli::messages::send(&env, &out, to, text),
                Cmd::Land { target, onto, test, wait } => cli::land::land(&env, &out, target, onto, test, wait),
                Cmd::Queue { follow } => cli::land::queue(&env, &out, follow),
                Cmd::Inbox => cli::messages::inbox(&env, &out),
                Cmd::Explain { target } => cli::checkpoints::explain(&env, &out, &target),
                Cmd::Team(TeamCmd::Up { template, launch }) => team::up(&env, &out, &template, launch),
                Cmd::Task(TaskCmd::Add { title, after, scope }) => {
                    cli::tasks::task_add(&env, &out, title, after, &scope)
                }
                Cmd::Task(TaskCmd::List { ready }) => cli::tasks::task_list(&env, &out, ready),
                Cmd::Task(TaskCmd::Next) => cli::tasks::task_next(&env, &out),
                Cmd::Task(TaskCmd::Done { id }) => cli::tasks::task_done(&env, &out, id),
                Cmd::Task(TaskCmd::Show { id }) => cli::tasks::task_show(&env, &out, id),
                Cmd::Task(TaskCmd::Drop { id }) => cli::tasks::task_change(&env, &out, id, "drop", None, &[], None),
                Cmd::Task(TaskCmd::Edit { id, title, scope }) => {
                    cli::tasks::task_change(&env, &out, id, "edit", title, &scope, None)
                }
                Cmd::Task(TaskCmd::GiveBack { id, note }) => {
                    cli::tasks::task_change(&env, &out, id, "give_back", None, &[], note)
                }
                Cmd::Checkpoint { message } => cli::checkpoints::checkpoint(&env, &out, message),
                Cmd::Checkpoints { all, limit } => cli::checkpoints::checkpoints(&env, &out, all, limit),
                Cmd::Rewind { checkpoint, dry_run, paths, force } => {
                    cli::checkpoints::rewind(&env, &out, checkpoint, dry_run, paths, force)
                }
                Cmd::Watch => watch::run(&env, out.json),
                Cmd::Web { port } => cli::web::run(&env, &out, port),
                Cmd::Worktrees => worktrees::worktrees(&env, &out),
                Cmd::Gc { force, dry_run } => worktrees::gc(&env, &out, force, dry_run),
                Cmd::Sidecar(SidecarCmd::Start) => cli::sidecar::sidecar_start(&env, &out),
                Cmd::Sidecar(SidecarCmd::Stop) => cli::sidecar::sidecar_stop(&env, &out),
                Cmd::Sidecar(SidecarCmd::Status) => cli::sidecar::sidecar_status(&env, &out),
                Cmd::Hub(HubCmd::Claims) => cli::hub::claims(&env.location.common_dir, &out),
                Cmd::Hub(HubCmd::Status { this }) => cli::hub::status(&env.location.common_dir, this, &out),
                Cmd::Sidecar(SidecarCmd::Run { .. })
                | Cmd::Demo { .. }
                | Cmd::Doctor
                | Cmd::Mcp
                | Cmd::Completions { .. }
                | Cmd::Man
                | Cmd::Hub(HubCmd::Serve { .. }) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}
