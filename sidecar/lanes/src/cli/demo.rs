//! `lanes demo`: scripted agents in a throwaway repository with two worktrees claim files, collide, are
//! refused with the holder named, release, hand off and leave notes, all through a real sidecar, and the
//! demo prints what happened as a timeline.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lanes_proto::client::{CallError, Client};
use lanes_proto::lifecycle::{Launcher, wait_until_stopped};
use lanes_proto::paths::SidecarPaths;
use lanes_proto::repo::RepoLocation;
use lanes_proto::{
    AcquireParams, CheckParams, CheckpointParams, HandoffParams, LandParams, RecordParams, ReleaseParams, RenewParams,
    RewindParams, SendParams, SessionParams, TaskAddParams, TaskDoneParams, TaskNextParams, WaitParams, method,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::Failure;
use crate::cli::output::{Output, joined};

struct Agent<'a> {
    name: &'static str,
    worktree: &'a Path,
}

struct Timeline {
    started: Instant,
    client: Client,
    entries: Vec<Value>,
    json: bool,
}

impl Timeline {
    fn say(&mut self, who: &str, what: &str, outcome: &str) {
        let at = self.started.elapsed().as_secs_f64();
        if !self.json {
            crate::cli::output::line(format_args!("[{at:>6.3}s] {who:<8} {what:<34} {outcome}"));
        }
        self.entries.push(json!({"at_secs": at, "who": who, "action": what, "outcome": outcome}));
    }

    /// Makes one call for an agent and records its outcome; returns the reply, or `None` if refused.
    fn act<P: Serialize>(&mut self, who: &str, what: &str, method: &str, params: &P) -> Result<Option<Value>, Failure> {
        let result = self.client.call_value(method, params);
        self.record(who, what, method, result)
    }

    /// [`Timeline::act`] through another sidecar (another machine's).
    fn act_on<P: Serialize>(
        &mut self,
        client: &mut Client,
        who: &str,
        what: &str,
        method: &str,
        params: &P,
    ) -> Result<Option<Value>, Failure> {
        let result = client.call_value(method, params);
        self.record(who, what, method, result)
    }

    fn record(
        &mut self,
        who: &str,
        what: &str,
        method: &str,
        result: Result<Value, CallError>,
    ) -> Result<Option<Value>, Failure> {
        match result {
            Ok(reply) => {
                let outcome = describe(method, &reply);
                self.say(who, what, &outcome);
                Ok(Some(reply))
            }
            Err(CallError::Refused { code, message, .. }) => {
                let code = serde_json::to_value(code).unwrap_or_default();
                // The advice after the first `;` is for people at a prompt; the timeline keeps the facts.
                let facts = message.split("; coordinate").next().unwrap_or(&message);
                let facts = facts.split(": wait for it").next().unwrap_or(facts);
                let facts = facts.split("; that work must land").next().unwrap_or(facts);
                self.say(who, what, &format!("REFUSED ({}): {facts}", code.as_str().unwrap_or("?")));
                Ok(None)
            }
            Err(e) => Err(Failure::from(e)),
        }
    }
}

fn describe(method: &str, reply: &Value) -> String {
    let claim = &reply["claim"];
    match method {
        method::CLAIM_ACQUIRE => {
            let mut text = format!("granted claim {} (epoch {})", claim["id"], claim["epoch"]);
            if let Some(epoch) = reply["hub_epoch"].as_u64() {
                text.push_str(&format!(", confirmed by the hub (hub epoch {epoch})"));
            }
            for note in reply["notes"].as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "; note from {}: \"{}\"",
                    note["session"].as_str().unwrap_or("?"),
                    note["note"].as_str().unwrap_or("")
                ));
            }
            text
        }
        method::CLAIM_RELEASE => format!("released claim {}", joined(&reply["released"], ", ")),
        method::CLAIM_HANDOFF => format!(
            "claim {} now held by {} (epoch {})",
            claim["id"],
            claim["session"].as_str().unwrap_or("?"),
            claim["epoch"]
        ),
        method::CLAIM_RENEW => format!("renewed (epoch {})", claim["epoch"]),
        method::SESSION_END => match joined(&reply["released"], ", ") {
            ids if ids.is_empty() => "ended; nothing released: its uncommitted work stays claimed".to_owned(),
            ids => format!("ended; released claim {ids}"),
        },
        method::TASK_ADD => format!("task {} added", reply["task"]["id"]),
        method::CLAIM_WAIT => format!(
            "waiting for {}",
            reply["waiting_for"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["session"].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        method::TASK_NEXT => format!(
            "took task {} \"{}\" with claim {} on {}",
            reply["task"]["id"],
            reply["task"]["title"].as_str().unwrap_or(""),
            reply["claim"]["id"],
            joined(&reply["claim"]["scopes"], ", ")
        ),
        method::TASK_DONE => format!("task {} done, its claim released", reply["task"]["id"]),
        method::MESSAGE_SEND => "queued for bob's next step".to_owned(),
        method::LAND_QUEUE => format!("queued (entry {}, position {})", reply["entry"]["id"], reply["position"]),
        method::MESSAGE_INBOX => {
            let messages: Vec<String> = reply["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    format!("from {}: \"{}\"", m["from"].as_str().unwrap_or("?"), m["text"].as_str().unwrap_or(""))
                })
                .collect();
            if messages.is_empty() { "no messages".to_owned() } else { messages.join("; ") }
        }
        method::CHECKPOINT_CREATE => {
            format!("checkpoint {}", reply["checkpoint"]["id"].as_str().unwrap_or("(unchanged)"))
        }
        method::CHECKPOINT_REWIND => {
            let changes: Vec<String> = reply["changes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{} {}", c["action"].as_str().unwrap_or("?"), c["path"].as_str().unwrap_or("?")))
                .collect();
            let verb = if reply["dry_run"] == true { "would" } else { "did" };
            format!("{verb}: {}", changes.join(", "))
        }
        method::CLAIM_CHECK => match reply["holders"].as_array().and_then(|h| h.first()) {
            Some(h) => format!("held by {} (claim {})", h["session"].as_str().unwrap_or("?"), h["claim_id"]),
            None => "free".to_owned(),
        },
        _ => reply.to_string(),
    }
}

pub fn run(out: &Output, with_hub: bool) -> Result<(), Failure> {
    let dir = tempfile::Builder::new()
        .prefix("lanes-demo-")
        .tempdir()
        .map_err(|e| Failure::internal(format!("failed to create a temporary directory: {e}")))?;
    let root = dir.path().canonicalize().map_err(|e| Failure::internal(e.to_string()))?;
    let main = root.join("app");
    let feature = root.join("app-feature");
    make_repo(&main, &feature)?;
    write_demo_config(&main, None)?;
    let hub = if with_hub { Some(DemoHub::start(&root, &main)?) } else { None };
    let location = RepoLocation::discover(&main).map_err(|e| Failure::internal(e.to_string()))?;
    let paths = SidecarPaths::for_common_dir(&location.common_dir);
    let program = std::env::current_exe().map_err(|e| Failure::internal(format!("cannot find lanes: {e}")))?;
    let launcher = Launcher {
        paths: &paths,
        repo_dir: &main,
        program: &program,
        client: "lanes-demo",
        version: env!("CARGO_PKG_VERSION"),
        pass_setting_vars: false,
    };
    if !out.json {
        crate::cli::output::line(format_args!("lanes demo: a repository with two worktrees in {}", root.display()));
        crate::cli::output::line(format_args!("  {}  (branch main: alice, carol, dave)", main.display()));
        crate::cli::output::line(format_args!("  {}  (branch feature: bob)\n", feature.display()));
    }
    let client = launcher
        .connect_or_start(Duration::from_secs(5))
        .map_err(|e| Failure::internal(format!("failed to start the demo's sidecar: {e}")))?;
    let mut timeline = Timeline { started: Instant::now(), client, entries: Vec::new(), json: out.json };
    let mut result = script(&mut timeline, &main, &feature);
    if let (Some(hub), Ok(_)) = (hub, &result) {
        let laptop = root.join("app-laptop");
        if let Err(e) = across_machines(&mut timeline, &program, hub, &main, &laptop) {
            result = Err(e);
        }
    }
    stop_sidecar(&mut timeline.client, &paths);
    let status = result?;
    out.print(&json!({"repo": main, "timeline": timeline.entries, "status": status}), |_| {
        let mut text = "\nEvery refusal named the holder, its scope and its expiry; every grant was written before it was answered.".to_owned();
        if with_hub {
            text.push_str("\nWith no hub answering, the edit hook lets edits through with a warning ([hub] offline = \"deny\" refuses them).");
        }
        text.push_str("\nTry it in your own repository: lanes init, then lanes claim <path>.");
        text
    });
    Ok(())
}

fn script(t: &mut Timeline, main: &Path, feature: &Path) -> Result<Value, Failure> {
    let alice = Agent { name: "alice", worktree: main };
    let bob = Agent { name: "bob", worktree: feature };
    let carol = Agent { name: "carol", worktree: main };
    let dave = Agent { name: "dave", worktree: main };
    let claim = |agent: &Agent<'_>, scopes: &[&str], note: Option<&str>, ttl: Option<u64>| AcquireParams {
        session: agent.name.to_owned(),
        worktree: agent.worktree.to_string_lossy().into_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        mode: None,
        ttl_secs: ttl,
        note: note.map(str::to_owned),
        task: None,
        bound_worktree: None,
    };

    for agent in [&alice, &bob, &carol, &dave] {
        let params = SessionParams {
            session: agent.name.to_owned(),
            worktree: Some(agent.worktree.to_string_lossy().into_owned()),
            source: Some("demo".to_owned()),
            ..SessionParams::default()
        };
        t.client.call_value(method::SESSION_START, &params)?;
    }
    t.say("*", "alice, bob, carol, dave start sessions", "");
    let api = t.act(
        "alice",
        "claim src/api.rs",
        method::CLAIM_ACQUIRE,
        &claim(&alice, &["src/api.rs"], Some("splitting the handlers"), None),
    )?;
    let api_id = id_of(api.as_ref())?;
    t.act(
        "bob",
        "claim src/api.rs (other worktree)",
        method::CLAIM_ACQUIRE,
        &claim(&bob, &["src/api.rs"], None, None),
    )?;
    let check = CheckParams {
        session: "bob".into(),
        worktree: feature.to_string_lossy().into_owned(),
        paths: vec!["src/api.rs".into()],
    };
    t.act("bob", "check src/api.rs", method::CLAIM_CHECK, &check)?;
    let docs = t.act("bob", "claim docs/", method::CLAIM_ACQUIRE, &claim(&bob, &["docs/"], None, None))?;
    let docs_id = id_of(docs.as_ref())?;
    t.act("carol", "claim src/**/*.rs", method::CLAIM_ACQUIRE, &claim(&carol, &["src/**/*.rs"], None, None))?;
    t.act(
        "alice",
        "release src/api.rs",
        method::CLAIM_RELEASE,
        &ReleaseParams { session: "alice".into(), claims: Some(vec![api_id]), ..ReleaseParams::default() },
    )?;
    t.act("bob", "claim src/api.rs (retry)", method::CLAIM_ACQUIRE, &claim(&bob, &["src/api.rs"], None, None))?;
    t.act("carol", "claim docs/guide.md", method::CLAIM_ACQUIRE, &claim(&carol, &["docs/guide.md"], None, None))?;
    let wait = WaitParams {
        session: "carol".into(),
        worktree: main.to_string_lossy().into_owned(),
        claim: Some(docs_id),
        paths: vec![],
    };
    t.act("carol", "wait for docs/ (bob is told)", method::CLAIM_WAIT, &wait)?;
    t.act(
        "bob",
        "hand docs/ to carol",
        method::CLAIM_HANDOFF,
        &HandoffParams { session: "bob".into(), claim: docs_id, to: "carol".into(), epoch: None },
    )?;
    t.act(
        "bob",
        "renew docs/ (no longer his)",
        method::CLAIM_RENEW,
        &RenewParams { session: "bob".into(), claim: docs_id, ttl_secs: None, epoch: None },
    )?;
    t.act(
        "carol",
        "release docs/",
        method::CLAIM_RELEASE,
        &ReleaseParams { session: "carol".into(), claims: Some(vec![docs_id]), ..ReleaseParams::default() },
    )?;
    t.act(
        "carol",
        "claim docs/guide.md for 1s + note",
        method::CLAIM_ACQUIRE,
        &claim(&carol, &["docs/guide.md"], Some("sections 1-3 rewritten, 4 left"), Some(1)),
    )?;
    std::thread::sleep(Duration::from_millis(1100));
    t.say("carol", "(goes quiet; the lease runs out)", "");
    t.act("dave", "claim docs/guide.md", method::CLAIM_ACQUIRE, &claim(&dave, &["docs/guide.md"], None, None))?;

    board(t, main, feature)?;
    commit_and_rewind(t, feature)?;
    work_outlives_its_session(t, main, feature)?;
    landing(t, main)?;

    let status = t.client.call_value(method::STATUS, &json!({}))?;
    if !t.json {
        crate::cli::output::line("\nLive claims at the end:");
        for c in status["claims"].as_array().into_iter().flatten() {
            crate::cli::output::line(format_args!(
                "  claim {:<3} {:<6} {:<22} epoch {:<3} worktree {}",
                c["id"],
                c["session"].as_str().unwrap_or("?"),
                joined(&c["scopes"], " "),
                c["epoch"],
                c["worktree"].as_str().unwrap_or("?")
            ));
        }
    }
    Ok(status)
}

/// A hub for `lanes demo --hub`: served by this process on a loopback port, kept in the demo's directory.
struct DemoHub {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl DemoHub {
    /// Starts the hub and points the demo repository's sidecar at it.
    fn start(root: &Path, main: &Path) -> Result<DemoHub, Failure> {
        let options = lanes_hub::ServeOptions {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            store: format!("sqlite:{}", root.join("hub.db").display()),
            token: None,
            tls: None,
            insecure: false,
            rate_limit: 5000,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, address) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            let failed = ready.clone();
            let served = runtime.block_on(lanes_hub::serve(
                options,
                move |address| {
                    let _ = ready.send(Ok(address));
                },
                async {
                    let _ = stopped.await;
                },
            ));
            if let Err(e) = served {
                let _ = failed.send(Err(e.to_string()));
            }
        });
        let address = address
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| Failure::internal("the demo's hub did not start".to_owned()))?
            .map_err(|e| Failure::internal(format!("the demo's hub did not start: {e}")))?;
        let url = format!("ws://{address}");
        write_demo_config(main, Some(&url))?;
        Ok(DemoHub { url, stop, thread })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Pins the demo repository to the embedded defaults (plus the demo's own hub, or none), in its local config
/// layer, above whatever the user's `~/.config/lanes/config.toml` says: a `[hub]` there, a stricter binding or
/// another contention would change the story, or stop the demo's sidecar from starting at all.
fn write_demo_config(repo: &Path, hub_url: Option<&str>) -> Result<(), Failure> {
    let dir = repo.join(".git/lanes");
    std::fs::create_dir_all(&dir).map_err(|e| Failure::internal(e.to_string()))?;
    let hub = match hub_url {
        Some(url) => format!("[hub]\nurls = [\"{url}\"]\nproject = \"lanes-demo\"\n"),
        None => "[hub]\nurls = []\n".to_owned(),
    };
    let config = format!("{}\n{hub}", crate::config::TEMPLATE);
    std::fs::write(dir.join("config.toml"), config).map_err(|e| Failure::internal(e.to_string()))
}

/// `--hub`: erin works on a second machine (a clone with its own sidecar); the hub keeps one claim space.
fn across_machines(t: &mut Timeline, program: &Path, hub: DemoHub, main: &Path, laptop: &Path) -> Result<(), Failure> {
    git(main.parent().unwrap_or(main), &["clone", "-q", &main.to_string_lossy(), &laptop.to_string_lossy()])?;
    write_demo_config(laptop, Some(&hub.url))?;
    let location = RepoLocation::discover(laptop).map_err(|e| Failure::internal(e.to_string()))?;
    let paths = SidecarPaths::for_common_dir(&location.common_dir);
    let launcher = Launcher {
        paths: &paths,
        repo_dir: laptop,
        program,
        client: "lanes-demo",
        version: env!("CARGO_PKG_VERSION"),
        pass_setting_vars: false,
    };
    let mut erin = launcher
        .connect_or_start(Duration::from_secs(5))
        .map_err(|e| Failure::internal(format!("failed to start the second machine's sidecar: {e}")))?;
    t.say("*", "--- a second machine ---", &format!("{} shares claims through the hub {}", laptop.display(), hub.url));
    let claim = |session: &str, worktree: &Path, scope: &str| AcquireParams {
        session: session.to_owned(),
        worktree: worktree.to_string_lossy().into_owned(),
        scopes: vec![scope.to_owned()],
        ..AcquireParams::default()
    };
    let outcome = (|| {
        t.act_on(
            &mut erin,
            "erin",
            "claim docs/guide.md (laptop)",
            method::CLAIM_ACQUIRE,
            &claim("erin", laptop, "docs/guide.md"),
        )?;
        t.act_on(
            &mut erin,
            "erin",
            "claim src/metrics.rs (laptop)",
            method::CLAIM_ACQUIRE,
            &claim("erin", laptop, "src/metrics.rs"),
        )?;
        t.act("dave", "claim src/metrics.rs", method::CLAIM_ACQUIRE, &claim("dave", main, "src/metrics.rs"))?;
        let release = ReleaseParams { session: "dave".into(), all: Some(true), ..ReleaseParams::default() };
        t.act("dave", "release all", method::CLAIM_RELEASE, &release)?;
        // The hub hears of the release from dave's sidecar a moment later: erin retries until it has.
        let retry = claim("erin", laptop, "docs/guide.md");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut result = erin.call_value(method::CLAIM_ACQUIRE, &retry);
        while result.is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            result = erin.call_value(method::CLAIM_ACQUIRE, &retry);
        }
        t.record("erin", "claim docs/guide.md (retry)", method::CLAIM_ACQUIRE, result)?;
        Ok::<(), Failure>(())
    })();
    hub.stop();
    t.say("*", "(the hub goes away)", "");
    let offline = outcome.and_then(|()| {
        t.act_on(
            &mut erin,
            "erin",
            "claim README.md (laptop)",
            method::CLAIM_ACQUIRE,
            &claim("erin", laptop, "README.md"),
        )
    });
    stop_sidecar(&mut erin, &paths);
    offline.map(|_| ())
}

/// Stops a demo repository's sidecar. Its throwaway repository's key is never used again: nothing is left
/// behind in the runtime dir.
fn stop_sidecar(client: &mut Client, paths: &SidecarPaths) {
    let _ = client.call_value(method::SHUTDOWN, &json!({}));
    if wait_until_stopped(paths, Instant::now() + Duration::from_secs(5)).is_ok() {
        let _ = std::fs::remove_file(&paths.pidfile);
        let _ = std::fs::remove_file(&paths.startup_lock);
    }
}

/// The task board and messages: alice plans two tasks, carol and dave take them in order, bob hears.
fn board(t: &mut Timeline, main: &Path, feature: &Path) -> Result<(), Failure> {
    let wt = |p: &Path| p.to_string_lossy().into_owned();
    let add = |title: &str, after: Vec<u64>, scope: &str| TaskAddParams {
        session: "alice".into(),
        worktree: wt(main),
        title: title.into(),
        after,
        scopes: vec![scope.into()],
    };
    let first =
        t.act("alice", "task add: add the db index", method::TASK_ADD, &add("add the db index", vec![], "src/db.rs"))?;
    let first_id = first.as_ref().and_then(|r| r["task"]["id"].as_u64()).unwrap_or(1);
    t.act(
        "alice",
        "task add: use it in the API (after 1)",
        method::TASK_ADD,
        &add("use the index in the API", vec![first_id], "src/db.rs"),
    )?;
    let next = |who: &str, dir: &Path| TaskNextParams { session: who.into(), worktree: wt(dir) };
    t.act("carol", "task next", method::TASK_NEXT, &next("carol", main))?;
    t.act("dave", "task next (task 2 waits for 1)", method::TASK_NEXT, &next("dave", main))?;
    t.act("carol", "task done 1", method::TASK_DONE, &TaskDoneParams { session: "carol".into(), task: first_id })?;
    t.act("dave", "task next", method::TASK_NEXT, &next("dave", main))?;
    let send = SendParams {
        session: "alice".into(),
        to: "bob".into(),
        text: "the db index is in; rebase when you can".into(),
    };
    t.act("alice", "send bob a message", method::MESSAGE_SEND, &send)?;
    let inbox = SessionParams { session: "bob".into(), worktree: Some(wt(feature)), ..SessionParams::default() };
    t.act("bob", "(next step) inbox", method::MESSAGE_INBOX, &inbox)?;
    Ok(())
}

/// bob commits through the git hooks (trailers name his session and checkpoint), then rewinds a bad edit.
fn commit_and_rewind(t: &mut Timeline, feature: &Path) -> Result<(), Failure> {
    let wt = feature.to_string_lossy().into_owned();
    crate::cli::githooks::install(feature).map_err(Failure::from)?;
    std::fs::write(feature.join("src/api.rs"), "pub fn handle() {\n    // uses the new index\n}\n")
        .map_err(|e| Failure::internal(e.to_string()))?;
    let made = t.act(
        "bob",
        "checkpoint",
        method::CHECKPOINT_CREATE,
        &CheckpointParams { session: "bob".into(), worktree: wt.clone(), message: Some("api uses the index".into()) },
    )?;
    let checkpoint = made.as_ref().and_then(|r| r["checkpoint"]["id"].as_str()).unwrap_or_default().to_owned();
    git_as(feature, Some("bob"), &["commit", "-qam", "api: use the db index"])?;
    let message = git_output(feature, &["log", "-1", "--format=%(trailers:only,unfold)"])?;
    t.say(
        "bob",
        "git commit (hooks installed by lanes init)",
        &format!("trailers: {}", message.trim().replace('\n', ", ")),
    );
    std::fs::write(feature.join("src/api.rs"), "this edit broke everything\n")
        .map_err(|e| Failure::internal(e.to_string()))?;
    t.say("bob", "(a bad edit to src/api.rs)", "");
    let rewind = |dry_run| RewindParams {
        session: "bob".into(),
        worktree: wt.clone(),
        checkpoint: checkpoint.clone(),
        paths: vec![],
        dry_run,
        force: false,
    };
    t.act("bob", "rewind --dry-run", method::CHECKPOINT_REWIND, &rewind(true))?;
    t.act("bob", "rewind", method::CHECKPOINT_REWIND, &rewind(false))?;
    let restored = std::fs::read_to_string(feature.join("src/api.rs")).unwrap_or_default();
    t.say("bob", "(src/api.rs after the rewind)", restored.lines().nth(1).unwrap_or("").trim());
    Ok(())
}

/// The claim follows the work: erin ends with a new file uncommitted, alice (another worktree) is refused it,
/// erin's work is committed and merged into main, and the path is free again.
fn work_outlives_its_session(t: &mut Timeline, main: &Path, feature: &Path) -> Result<(), Failure> {
    let erin = SessionParams {
        session: "erin".into(),
        worktree: Some(feature.to_string_lossy().into_owned()),
        source: Some("demo".into()),
        ..SessionParams::default()
    };
    t.client.call_value(method::SESSION_START, &erin)?;
    let claim = |who: &str, dir: &Path| AcquireParams {
        session: who.to_owned(),
        worktree: dir.to_string_lossy().into_owned(),
        scopes: vec!["src/cache.rs".into()],
        mode: None,
        ttl_secs: None,
        note: None,
        task: None,
        bound_worktree: None,
    };
    t.act("erin", "claim src/cache.rs (feature)", method::CLAIM_ACQUIRE, &claim("erin", feature))?;
    std::fs::write(feature.join("src/cache.rs"), "pub struct Cache;\n")
        .map_err(|e| Failure::internal(e.to_string()))?;
    t.say("erin", "(writes src/cache.rs, does not commit)", "");
    t.act(
        "erin",
        "session ends",
        method::SESSION_END,
        &SessionParams { session: "erin".into(), ..SessionParams::default() },
    )?;
    t.act("alice", "claim src/cache.rs (main)", method::CLAIM_ACQUIRE, &claim("alice", main))?;
    git_as(feature, Some("erin"), &["add", "src/cache.rs"])?;
    git_as(feature, Some("erin"), &["commit", "-qm", "cache: a first cut"])?;
    git(main, &["merge", "-q", "--no-ff", "--no-edit", "feature"])?;
    t.say("*", "erin's commit is merged into main", "");
    // What main's post-commit hook tells the sidecar; it then reads every worktree's changes again.
    let merged = git_output(main, &["rev-parse", "HEAD"])?;
    let record = RecordParams {
        commit: merged.trim().to_owned(),
        sessions: Vec::new(),
        checkpoint: None,
        rewritten_from: None,
        worktree: Some(main.to_string_lossy().into_owned()),
    };
    t.client.call_value(method::COMMIT_RECORD, &record)?;
    let check = CheckParams {
        session: "alice".into(),
        worktree: main.to_string_lossy().into_owned(),
        paths: vec!["src/cache.rs".into()],
    };
    for _ in 0..50 {
        let holders = t.client.call_value(method::CLAIM_CHECK, &check)?;
        if holders["holders"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    t.act("alice", "claim src/cache.rs (landed)", method::CLAIM_ACQUIRE, &claim("alice", main))?;
    Ok(())
}

/// Two agents' branches go through the landing queue with a test command: one lands, one is blocked by its
/// red test and stays as it was.
fn landing(t: &mut Timeline, main: &Path) -> Result<(), Failure> {
    let root = main.parent().unwrap_or(main);
    let agents = [("frank", "src/search.rs", "pub fn search() {}\n"), ("gina", "BROKEN", "this breaks the tests\n")];
    // Both branches are made before either is queued: git cannot add a worktree while the landing adds its own.
    for (agent, file, text) in agents {
        let tree = root.join(format!("app-{agent}"));
        git(main, &["worktree", "add", "-q", "-b", agent, &tree.to_string_lossy()])?;
        std::fs::write(tree.join(file), text).map_err(|e| Failure::internal(e.to_string()))?;
        git_as(&tree, Some(agent), &["add", "-A"])?;
        git_as(&tree, Some(agent), &["commit", "-qm", &format!("{agent}: {file}")])?;
    }
    let mut queued = Vec::new();
    for (agent, _, _) in agents {
        let tree = root.join(format!("app-{agent}"));
        let params = LandParams {
            session: agent.to_owned(),
            worktree: tree.to_string_lossy().into_owned(),
            test: Some("test ! -e BROKEN".to_owned()),
            ..LandParams::default()
        };
        let what = format!("land {agent} (test: no BROKEN file)");
        if let Some(reply) = t.act(agent, &what, method::LAND_QUEUE, &params)? {
            queued.push((agent, reply["entry"]["id"].clone()));
        }
    }
    let mut reported = Vec::new();
    for _ in 0..300 {
        let queue = t.client.call_value(method::LAND_LIST, &json!({}))?;
        for (agent, id) in &queued {
            let Some(entry) = queue["entries"].as_array().into_iter().flatten().find(|e| e["id"] == *id) else {
                continue;
            };
            let state = entry["state"].as_str().unwrap_or_default();
            if (state == "landed" || state == "blocked") && !reported.contains(agent) {
                let result = entry["result"].as_str().and_then(|r| r.lines().next()).unwrap_or_default();
                t.say("*", &format!("the queue: {agent} {state}"), result);
                reported.push(*agent);
            }
        }
        if reported.len() == queued.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn id_of(reply: Option<&Value>) -> Result<u64, Failure> {
    reply
        .and_then(|r| r["claim"]["id"].as_u64())
        .ok_or_else(|| Failure::internal("the demo script expected a grant here"))
}

fn make_repo(main: &Path, feature: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(main.join("src")).map_err(|e| Failure::internal(e.to_string()))?;
    std::fs::create_dir_all(main.join("docs")).map_err(|e| Failure::internal(e.to_string()))?;
    for (path, text) in [
        ("src/api.rs", "pub fn handle() {}\n"),
        ("src/db.rs", "pub fn connect() {}\n"),
        ("docs/guide.md", "# Guide\n"),
        ("README.md", "# app\n"),
    ] {
        std::fs::write(main.join(path), text).map_err(|e| Failure::internal(e.to_string()))?;
    }
    git(main, &["init", "-q", "-b", "main"])?;
    git(main, &["add", "-A"])?;
    git(main, &["commit", "-q", "-m", "initial commit"])?;
    git(main, &["worktree", "add", "-q", "-b", "feature", &feature.to_string_lossy()])?;
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> Result<(), Failure> {
    git_as(dir, None, args)
}

fn git_output(dir: &Path, args: &[&str]) -> Result<String, Failure> {
    crate::git::run(dir, args).map_err(Failure::from)
}

/// Runs git as the demo's committer, as `session` when given, with this lanes' hook client on PATH.
fn git_as(dir: &Path, session: Option<&str>, args: &[&str]) -> Result<(), Failure> {
    let bin_dir = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)).unwrap_or_default();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new("git");
    if let Some(session) = session {
        command.env("LANES_SESSION", session);
    }
    let output = command
        .env("PATH", path)
        .args(["-c", "user.name=lanes demo", "-c", "user.email=demo@lanes.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .map_err(|e| Failure::internal(format!("the demo needs git on PATH: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Failure::internal(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}
