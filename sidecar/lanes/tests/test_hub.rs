//! The shared hub across "machines" on loopback: each machine is its own hermetic world (HOME, runtime dir,
//! sidecar) with its own clone of one upstream, pointing at real `lanes hub serve` processes on SQLite or
//! on a real 3-member etcd cluster. Processes are killed with kill -9.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jsonrpsee::core::client::ClientT;
use jsonrpsee::ws_client::{HeaderMap, HeaderValue, WsClientBuilder};
use serde_json::{Value, json};

use crate::common::{TestEnv, eventually, kill9};

pub(crate) const TOKEN: &str = "s3cret-hub-token-for-tests";

/// A child process killed (-9) when dropped.
pub(crate) struct Spawned {
    child: Child,
}

impl Spawned {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl From<Child> for Spawned {
    fn from(child: Child) -> Spawned {
        Spawned { child }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Starts `lanes hub serve` on `port` and waits until it listens. The token comes from the environment; the
/// log goes to `hub-<port>.log` in the test's directory.
pub(crate) fn start_hub(env: &TestEnv, store: &str, port: u16) -> (Spawned, String) {
    start_hub_with(env, store, port, &[])
}

fn start_hub_with(env: &TestEnv, store: &str, port: u16, extra: &[&str]) -> (Spawned, String) {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["hub", "serve", "--listen", &listen, "--store", store];
    args.extend(extra);
    let mut command = env.lanes_command(&env.root(), &args);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.root().join(format!("hub-{port}.log")))
        .expect("log");
    command.env("LANES_HUB_TOKEN", TOKEN).env("LANES_LOG", "lanes_hub=debug").stdout(Stdio::piped()).stderr(log);
    let mut child = command.spawn().expect("start hub");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("hub output");
    assert!(line.contains("listening on ws"), "hub did not start: {line:?}");
    let scheme = if line.contains("wss://") { "wss" } else { "ws" };
    (Spawned { child }, format!("{scheme}://{listen}"))
}

/// A hub store in the test's directory: SQLite in `file`.
pub(crate) fn sqlite_store(env: &TestEnv, file: &str) -> String {
    format!("sqlite:{}", env.root().join(file).display())
}

/// One "machine": a hermetic world with a clone of `upstream` whose sidecar uses `urls`.
pub(crate) fn machine(upstream: &Path, name: &str, urls: &[&str], extra: &str) -> (TestEnv, PathBuf) {
    let env = TestEnv::new();
    let clone = env.clone_of(upstream, name);
    std::fs::write(env.root().join("home/hub.token"), format!("{TOKEN}\n")).expect("token");
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    let config = format!("[hub]\nurls = [{}]\ntoken_file = \"~/hub.token\"\n{extra}", urls.join(", "));
    std::fs::create_dir_all(clone.join(".git/lanes")).expect("mkdir");
    std::fs::write(clone.join(".git/lanes/config.toml"), config).expect("config");
    (env, clone)
}

/// A WebSocket connection to the hub at `url`, presenting `token` as a sidecar does.
async fn hub_client(url: &str, token: Option<&str>) -> Result<jsonrpsee::ws_client::WsClient, String> {
    let mut headers = HeaderMap::new();
    if let Some(token) = token {
        headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).expect("header"));
    }
    WsClientBuilder::default().set_headers(headers).build(url).await.map_err(|e| e.to_string())
}

/// Calls the hub directly, as a sidecar would.
fn hub_call(url: &str, token: Option<&str>, method: &str, params: Value) -> Result<Value, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client = hub_client(url, token).await?;
        let params = params.as_object().cloned().unwrap_or_default();
        client.request::<Value, _>(method, params).await.map_err(|e| e.to_string())
    })
}

fn hub_status(env: &TestEnv, repo: &Path) -> Value {
    env.lanes(repo, &["status", "--json"]).success().json()["hub"].clone()
}

fn claim(env: &TestEnv, repo: &Path, session: &str, path: &str) -> crate::common::Run {
    env.lanes(repo, &["--session", session, "claim", path, "--json"])
}

#[test]
fn two_machines_share_one_claim_space_through_a_sqlite_hub() {
    let hub_env = TestEnv::new();
    let upstream = hub_env.repo("upstream");
    let store = sqlite_store(&hub_env, "hub.db");
    let (_hub, url) = start_hub(&hub_env, &store, free_port());
    let (a_env, a) = machine(&upstream, "a", &[&url], "");
    let (b_env, b) = machine(&upstream, "b", &[&url], "");

    let granted = claim(&a_env, &a, "alice", "src/a.rs").success().json();
    assert!(granted["hub_epoch"].as_u64().is_some(), "the hub confirmed the grant: {granted}");

    let refused = claim(&b_env, &b, "bob", "src/a.rs");
    assert_eq!(refused.code, 3, "{refused:?}");
    let error = refused.json();
    assert_eq!(error["error"]["code"], "conflict");
    assert_eq!(error["error"]["conflicts"][0]["session"], "alice");
    assert!(error["error"]["message"].as_str().expect("message").contains("alice"), "{error}");
    assert!(
        b_env.lanes(&b, &["--session", "bob", "status", "--json"]).success().json()["claims"]
            .as_array()
            .expect("claims")
            .is_empty(),
        "a refused claim is taken back locally too"
    );
    assert_eq!(release_reasons(&b_env, &b), ["hub_refused"], "its release says why");

    claim(&b_env, &b, "bob", "src/b.rs").success();
    let released = a_env.lanes(&a, &["--session", "alice", "--json", "release", "--all"]).success().json();
    assert_eq!(released["hub"], "released", "{released}");
    let taken = claim(&b_env, &b, "bob", "src/a.rs");
    assert_eq!(taken.code, 0, "right after alice's release was answered, bob gets src/a.rs: {taken:?}");
    assert_eq!(claim(&a_env, &a, "alice", "src/a.rs").code, 3, "now bob holds it for both machines");

    let status = hub_status(&a_env, &a);
    assert_eq!(status["connected"], url.as_str(), "{status}");
    assert_eq!(status["project"], hub_status(&b_env, &b)["project"], "two clones of one upstream share a project");
    assert!(eventually(Duration::from_secs(10), || hub_status(&a_env, &a)["outbox"] == 0), "the outbox drains");

    // `lanes hub status`: the hub's figures for the project, both machines connected.
    let project = status["project"].as_str().expect("project").to_owned();
    let mut figures = Value::Null;
    let both = eventually(Duration::from_secs(10), || {
        figures = a_env.lanes(&a, &["hub", "status", "--this", "--json"]).success().json();
        figures["projects"][0]["sidecars"] == 2
    });
    assert!(both, "both machines are connected: {figures}");
    let ours = &figures["projects"][0];
    assert_eq!(ours["project"], project.as_str(), "{figures}");
    assert_eq!(ours["claims"], 2, "bob's src/a.rs and src/b.rs: {figures}");
    assert!(ours["grants_per_s"].as_f64().is_some_and(|g| g > 0.0), "{figures}");
    assert!(ours["decision_p99_ms"].as_f64().is_some_and(|d| d >= ours["decision_p50_ms"].as_f64().unwrap_or(0.0)));
    assert_eq!(figures["store"], "sqlite", "{figures}");
    let text = b_env.lanes(&b, &["hub", "status"]).success().stdout;
    assert!(text.contains("PROJECT") && text.contains(&format!("{project} *")), "{text}");
    let alone = hub_env.lanes(&upstream, &["hub", "status"]);
    assert_eq!(alone.code, 2, "no hub configured: {alone:?}");
    assert!(alone.stderr.contains("no hub is configured"), "{alone:?}");
}

#[test]
fn hub_down_answers_unavailable_at_once_and_the_edit_hook_is_told_what_to_do() {
    let hub_env = TestEnv::new();
    let upstream = hub_env.repo("upstream");
    let port = free_port();
    let url = format!("ws://127.0.0.1:{port}");
    let (a_env, a) = machine(&upstream, "a", &[&url], "offline = \"deny\"\n");
    let run = claim(&a_env, &a, "alice", "src/a.rs");
    assert_eq!(run.code, 1, "{run:?}");
    let error = run.json();
    assert_eq!(error["error"]["code"], "unavailable", "{error}");
    assert!(error["error"]["message"].as_str().expect("message").contains("nothing was claimed"), "{error}");
    let status = a_env.lanes(&a, &["status", "--json"]).success().json();
    assert!(status["claims"].as_array().expect("claims").is_empty(), "no claim is left behind");
    // Granted here and taken back when no hub answered, or (once the sidecar knows the hub is down) refused at
    // once: either way, never a release by alice.
    let reasons = release_reasons(&a_env, &a);
    assert!(reasons.iter().all(|r| r == "hub_unavailable"), "a claim taken back says why: {reasons:?}");
    assert!(status["hub"]["last_error"].as_str().is_some_and(|e| e.contains("127.0.0.1")), "{status}");

    // The hook's view of the same answer (the `[hub] offline` policy travels with it).
    let (socket, _) = a_env.start_sidecar(&a);
    let mut wire = crate::common::Wire::connect(&socket);
    let params = json!({"session": "alice", "worktree": a.to_string_lossy(), "scopes": ["src/a.rs"]});
    let reply = wire.call("claim.ensure", params);
    assert_eq!(reply["error"]["data"]["code"], "unavailable", "{reply}");
    assert_eq!(reply["error"]["data"]["offline"], "deny", "{reply}");

    // The hub comes up on that address: claims work again without restarting anything.
    let (mut hub, _) = start_hub(&hub_env, &sqlite_store(&hub_env, "hub.db"), port);
    assert!(
        eventually(Duration::from_secs(10), || claim(&a_env, &a, "alice", "src/a.rs").code == 0),
        "claims are decided again once a hub answers"
    );

    // The hub goes again: what alice already holds still covers her edits; nothing new is granted.
    hub.kill();
    let params = json!({"session": "alice", "worktree": a.to_string_lossy(), "scopes": ["src/a.rs"]});
    assert!(
        eventually(Duration::from_secs(10), || {
            let other = json!({"session": "alice", "worktree": a.to_string_lossy(), "scopes": ["src/b.rs"]});
            wire.call("claim.ensure", other)["error"]["data"]["code"] == "unavailable"
        }),
        "a new path is unavailable"
    );
    let held = wire.call("claim.ensure", params);
    assert_eq!(held["result"]["held"], true, "{held}");
    // A release with no hub answering is done here, queued for the hub, and says so.
    let released = a_env.lanes(&a, &["--session", "alice", "--json", "release", "--all"]).success().json();
    assert!(released["hub"].as_str().is_some_and(|h| h.starts_with("queued")), "{released}");
    let said = a_env.lanes(&a, &["--session", "alice", "release", "--all"]);
    assert!(said.stdout.contains("nothing to release"), "{said:?}");
}

/// Claiming again a path one holds renews the claim: when no hub answers that renewal, the claim the hub
/// confirmed before still holds here and at the hub, and another machine is still refused the path.
#[test]
fn claiming_again_while_the_hub_is_down_keeps_the_claim_held() {
    let hub_env = TestEnv::new();
    let upstream = hub_env.repo("upstream");
    let port = free_port();
    let store = sqlite_store(&hub_env, "hub.db");
    let (mut hub, url) = start_hub(&hub_env, &store, port);
    let (a_env, a) = machine(&upstream, "a", &[&url], "");
    let (b_env, b) = machine(&upstream, "b", &[&url], "");
    let id = claim(&a_env, &a, "alice", "src/a.rs").success().json()["claim"]["id"].clone();
    hub.kill();
    let again = claim(&a_env, &a, "alice", "src/a.rs");
    assert_eq!(again.code, 1, "{again:?}");
    let error = again.json();
    assert_eq!(error["error"]["code"], "unavailable", "{error}");
    let claims = a_env.lanes(&a, &["status", "--json"]).success().json()["claims"].clone();
    assert_eq!(claims[0]["id"], id, "alice's claim still holds: {claims}");

    let (_hub, _) = start_hub(&hub_env, &store, port);
    let refused = claim(&b_env, &b, "bob", "src/a.rs");
    assert_eq!(refused.code, 3, "the hub still holds alice's claim: {refused:?}");
    assert_eq!(refused.json()["error"]["conflicts"][0]["session"], "alice", "{refused:?}");
    std::thread::sleep(Duration::from_secs(6));
    let claims = a_env.lanes(&a, &["status", "--json"]).success().json()["claims"].clone();
    assert_eq!(claims[0]["id"], id, "alice's next sync keeps her claim: {claims}");
    assert_eq!(claim(&b_env, &b, "bob", "src/a.rs").code, 3, "and the hub too");
}

#[test]
fn the_hub_refuses_missing_and_wrong_tokens_slows_guessing_limits_connections_and_never_logs_the_token() {
    let env = TestEnv::new();
    let store = sqlite_store(&env, "hub.db");
    let port = free_port();
    let (mut hub, url) = start_hub_with(&env, &store, port, &["--rate-limit", "20"]);
    let hello = json!({"client": "test", "version": "0", "protocol": lanes_proto::PROTOCOL_VERSION});

    // One connection may send 20 requests a second, in bursts of 40: of 100 sent one after the other, the
    // first 40 pass, and at most what the bucket refilled while they were sent passes after them.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let started = std::time::Instant::now();
    let refused = runtime.block_on(async {
        let client = hub_client(&url, Some(TOKEN)).await.expect("connect");
        let mut refused = 0;
        for _ in 0..100 {
            let params = json!({"project": "p"}).as_object().cloned().unwrap_or_default();
            if let Err(e) = client.request::<Value, _>("hub.claims", params).await {
                assert!(e.to_string().contains("rate limited"), "{e}");
                refused += 1;
            }
        }
        refused
    });
    let refilled = (started.elapsed().as_secs_f64() * 20.0).ceil() as usize;
    let accepted = 100 - refused;
    assert!(accepted >= 40, "the burst was not allowed: {accepted} of 100 accepted");
    assert!(accepted <= 40 + refilled + 1, "{accepted} accepted, the bucket allows 40 + {refilled}");

    let missing = hub_call(&url, None, "hub.hello", hello.clone()).expect_err("no token, no entry");
    assert!(missing.contains("401"), "{missing}");
    let reply = hub_call(&url, Some(TOKEN), "hub.hello", hello.clone()).expect("the right token works");
    assert_eq!(reply["protocol"], lanes_proto::PROTOCOL_VERSION);
    assert_eq!(reply["store"], "sqlite");

    let old = json!({"client": "lanes-sidecar", "version": "0.0.1", "protocol": 0});
    let refused = hub_call(&url, Some(TOKEN), "hub.hello", old).expect_err("an old client is refused");
    assert!(refused.contains("upgrade lanes"), "{refused}");

    // Near misses are as wrong as any: a prefix, one byte longer, the same length with the last byte changed.
    let prefix = &TOKEN[..TOKEN.len() - 1];
    let longer = format!("{TOKEN}x");
    let same_length = format!("{prefix}X");
    let mut guesses = vec![prefix.to_owned(), longer.clone(), same_length.clone()];
    guesses.extend((3..8).map(|g| format!("guess-{g}")));
    let mut statuses = Vec::new();
    for guess in &guesses {
        let error = hub_call(&url, Some(guess), "hub.hello", hello.clone()).expect_err("wrong");
        statuses.push(if error.contains("429") {
            429
        } else if error.contains("401") {
            401
        } else {
            0
        });
    }
    // The attempt without a token counted too: four more wrong ones, then the door closes.
    assert_eq!(&statuses[..4], &[401; 4], "{statuses:?}");
    assert!(statuses[4..].iter().all(|s| *s == 429), "guessing is cut off: {statuses:?}");
    let still = hub_call(&url, Some(TOKEN), "hub.hello", hello).expect("the right token is never locked out");
    assert_eq!(still["protocol"], lanes_proto::PROTOCOL_VERSION);

    hub.kill();
    let log = std::fs::read_to_string(env.root().join(format!("hub-{port}.log"))).expect("log");
    assert!(log.contains("wrong token"), "refusals are logged: {log}");
    assert!(!log.contains(prefix) && !log.contains("guess-"), "no token in the log: {log}");

    for (args, expect) in [
        (vec!["--listen", "0.0.0.0:0"], "needs a token"),
        (vec!["--listen", "0.0.0.0:0", "--token-file", "/dev/null"], "needs a token"),
    ] {
        let mut all = vec!["hub", "serve", "--store", &store];
        all.extend(args);
        let run = env.lanes(&env.root(), &all);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains(expect), "{run:?}");
    }
    let mut command = env.lanes_command(&env.root(), &["hub", "serve", "--store", &store, "--listen", "0.0.0.0:0"]);
    let run = crate::common::run_of(command.env("LANES_HUB_TOKEN", TOKEN).output().expect("run"));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("needs TLS") && run.stderr.contains("--insecure"), "{run:?}");

    // What may start: off loopback with a token and --insecure; on loopback without any token.
    for (listen, token, extra) in [
        (format!("0.0.0.0:{}", free_port()), Some(TOKEN), vec!["--insecure"]),
        (format!("127.0.0.1:{}", free_port()), None, vec![]),
    ] {
        let mut args = vec!["hub", "serve", "--store", &store, "--listen", &listen];
        args.extend(extra);
        let mut command = env.lanes_command(&env.root(), &args);
        if let Some(token) = token {
            command.env("LANES_HUB_TOKEN", token);
        }
        let mut child = Spawned { child: command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn") };
        let mut line = String::new();
        BufReader::new(child.child.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
        assert!(line.contains("listening on ws://"), "{listen} {token:?}: {line:?}");
        child.kill();
    }
}

/// Every hub method with random params, over one authenticated connection: a well-formed reply each time
/// (a result carrying the protocol, or an error with a code and a message), and the hub stays up.
#[test]
fn every_hub_method_with_random_params_gets_a_well_formed_reply() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let env = TestEnv::new();
    let store = sqlite_store(&env, "hub.db");
    let port = free_port();
    let (_hub, url) = start_hub(&env, &store, port);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let client = runtime.block_on(hub_client(&url, Some(TOKEN))).expect("connect");
    use lanes_proto::hub::method as m;
    // Claims that parse, with hostile values: huge ids and leases, escaping scopes, long holders.
    let ttl = prop_oneof![1u64..=3600, any::<u64>()];
    let scopes = prop::collection::vec("[^\n]{0,30}|\\.\\./.*|/.*", 0..4);
    let claim = (any::<u64>(), "[^\n]{0,300}", scopes, ttl)
        .prop_map(|(id, holder, scopes, ttl)| json!({"id": id, "holder": holder, "scopes": scopes, "ttl_secs": ttl}));
    let structured = prop_oneof![
        (claim.clone(), "[a-z/]{0,12}")
            .prop_map(|(c, o)| (m::ACQUIRE, json!({"project": "p", "origin": o, "claim": c}))),
        (prop::collection::vec(claim, 0..4), any::<u64>())
            .prop_map(|(cs, upto)| (m::SYNC, json!({"project": "p", "origin": "o", "upto": upto, "claims": cs}))),
        any::<u64>().prop_map(|after| (m::EVENTS, json!({"project": "p", "origin": "o", "after": after}))),
        prop::collection::vec(any::<u64>(), 0..4)
            .prop_map(|ids| (m::RELEASE, json!({"project": "p", "origin": "o", "ids": ids}))),
    ];
    let request = prop_oneof![
        (
            prop::sample::select(vec![
                m::HELLO,
                m::ACQUIRE,
                m::SYNC,
                m::RELEASE,
                m::CLAIMS,
                m::PUSH,
                m::EVENTS,
                m::SEND,
                m::MAIL,
                m::STATUS
            ]),
            crate::common::arbitrary_params()
        ),
        structured,
    ];
    let mut runner = TestRunner::new(Config { cases: 400, failure_persistence: None, ..Config::default() });
    runner
        .run(&request, |(method, params)| {
            let params = params.as_object().cloned().unwrap_or_default();
            match runtime.block_on(client.request::<Value, _>(method, params.clone())) {
                Ok(reply) => prop_assert!(reply["protocol"].is_u64(), "{} {:?} -> {}", method, params, reply),
                Err(jsonrpsee::core::client::Error::Call(error)) => {
                    prop_assert!(!error.message().is_empty(), "{} {:?}", method, params);
                }
                Err(other) => prop_assert!(false, "{} {:?} broke the connection: {}", method, params, other),
            }
            Ok(())
        })
        .expect("every hub method answers random params with a well-formed reply");
    // A board longer than any sidecar sends is refused whole, and the machine is not recorded.
    let task = json!({"id": 1, "title": "t", "status": "open", "after": [], "scopes": [], "holder": null,
        "claim": null, "note": null});
    let board = json!({"tasks": vec![task; lanes_proto::hub::HubBoard::MAX_ITEMS + 1]});
    let mail = json!({"project": "boards", "origin": "o", "sessions": ["s"], "present": true, "board": board});
    let refused = hub_call(&url, Some(TOKEN), "hub.mail", mail);
    assert!(refused.as_ref().is_err_and(|e| e.contains("at most 200 items in each list")), "{refused:?}");
    let (_, view) =
        crate::test_web::get(port, "/api/view?project=boards", Some(&format!("Authorization: Bearer {TOKEN}")));
    let view: Value = serde_json::from_str(&view).expect("view JSON");
    assert!(view["machines"].as_array().is_none_or(Vec::is_empty), "{view}");
    let hello = json!({"client": "test", "version": "0", "protocol": lanes_proto::PROTOCOL_VERSION});
    assert!(hub_call(&url, Some(TOKEN), "hub.hello", hello).is_ok(), "the hub is still up");
}

#[test]
fn the_web_view_lists_at_most_a_thousand_claims_and_counts_them_all() {
    let env = TestEnv::new();
    let store = sqlite_store(&env, "hub.db");
    let port = free_port();
    let (_hub, url) = start_hub(&env, &store, port);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client = hub_client(&url, Some(TOKEN)).await.expect("connect");
        for ids in (1..=1001u64).collect::<Vec<_>>().chunks(100) {
            let grants = ids.iter().map(|id| {
                let claim = json!({"id": id, "holder": "many", "scopes": [format!("src/{id}.rs")], "ttl_secs": 600});
                let params = json!({"project": "big", "origin": "m1", "claim": claim});
                client.request::<Value, _>("hub.acquire", params.as_object().cloned().unwrap_or_default())
            });
            for granted in futures::future::join_all(grants).await {
                granted.expect("grant");
            }
        }
    });
    let (code, body) =
        crate::test_web::get(port, "/api/view?project=big", Some(&format!("Authorization: Bearer {TOKEN}")));
    assert_eq!(code, 200, "{body}");
    let view: Value = serde_json::from_str(&body).expect("view JSON");
    assert_eq!(view["claims"].as_array().map(Vec::len), Some(1000), "the page lists a thousand");
    assert_eq!(view["claims_total"], 1001, "and says how many there are");
    assert_eq!(view["figures"][0]["claims"], 1001, "the figures count them all");
}

#[test]
fn a_hub_with_tls_serves_wss() {
    let hub_env = TestEnv::new();
    let root = hub_env.root();
    // A private CA and a certificate it signed for localhost.
    let (ca, cert, key) = (root.join("ca.pem"), root.join("hub.pem"), root.join("hub.key"));
    std::fs::write(root.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext");
    let path = |p: &Path| p.to_string_lossy().into_owned();
    for args in [
        vec!["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=lanes test CA"]
            .into_iter()
            .map(str::to_owned)
            .chain(["-keyout".into(), path(&root.join("ca.key")), "-out".into(), path(&ca)])
            .collect::<Vec<_>>(),
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"]
            .into_iter()
            .map(str::to_owned)
            .chain(["-keyout".into(), path(&key), "-out".into(), path(&root.join("hub.csr"))])
            .collect(),
        ["x509", "-req", "-days", "1", "-CAcreateserial"]
            .into_iter()
            .map(str::to_owned)
            .chain(["-in".into(), path(&root.join("hub.csr")), "-CA".into(), path(&ca)])
            .chain(["-CAkey".into(), path(&root.join("ca.key")), "-out".into(), path(&cert)])
            .chain(["-extfile".into(), path(&root.join("san.ext"))])
            .collect(),
    ] {
        let made = Command::new("openssl").args(&args).current_dir(&root).output().expect("openssl");
        assert!(made.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&made.stderr));
    }
    let upstream = hub_env.repo("upstream");
    let store = format!("sqlite:{}", root.join("hub.db").display());
    let port = free_port();
    let tls = ["--tls-cert", cert.to_str().expect("utf-8"), "--tls-key", key.to_str().expect("utf-8")];
    let (_hub, url) = start_hub_with(&hub_env, &store, port, &tls);
    assert_eq!(url, format!("wss://127.0.0.1:{port}"));

    // The sidecar trusts the hub's certificate through SSL_CERT_FILE, as it would a private CA.
    let (a_env, a) = machine(&upstream, "a", &[&format!("wss://localhost:{port}")], "");
    let mut command = a_env.lanes_command(&a, &["--session", "alice", "claim", "src/a.rs", "--json"]);
    let run = crate::common::run_of(command.env("SSL_CERT_FILE", &ca).output().expect("run"));
    assert_eq!(run.code, 0, "a claim over wss:// is confirmed: {run:?}");
    assert!(run.json()["hub_epoch"].as_u64().is_some(), "{run:?}");

    // A plain ws:// client with a valid hello and the right token gets nowhere.
    let hello = json!({"client": "test", "version": "0", "protocol": lanes_proto::PROTOCOL_VERSION});
    let plain = hub_call(&format!("ws://127.0.0.1:{port}"), Some(TOKEN), "hub.hello", hello);
    assert!(plain.is_err(), "plain ws:// reached a TLS hub: {plain:?}");

    // Silent connections that never start a handshake are closed after the handshake limit.
    use std::io::Read;
    let silent: Vec<std::net::TcpStream> =
        (0..50).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect")).collect();
    for mut stream in silent {
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte);
        let closed = match &read {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        assert!(closed, "a silent connection to the TLS port was not closed: {read:?}");
    }
}

#[test]
fn events_reach_the_hub_in_order_exactly_once_after_the_sidecar_and_the_hub_are_killed() {
    let hub_env = TestEnv::new();
    let upstream = hub_env.repo("upstream");
    let store = sqlite_store(&hub_env, "hub.db");
    let port = free_port();
    let (mut hub, url) = start_hub(&hub_env, &store, port);
    let (a_env, a) = machine(&upstream, "a", &[&url], "");
    claim(&a_env, &a, "alice", "src/a.rs").success();

    // With the hub down, claims are refused as unavailable, but the sidecar's other work goes on and its
    // events (tasks here) queue in its log.
    hub.kill();
    assert_eq!(claim(&a_env, &a, "alice", "docs/x.md").code, 1);
    for n in 0..5 {
        a_env.lanes(&a, &["--session", "alice", "task", "add", &format!("while the hub is down {n}")]).success();
    }
    let pid = a_env.sidecar_pid(&a).expect("sidecar runs");
    kill9(pid);
    a_env.lanes(&a, &["--session", "alice", "task", "add", "after the sidecar came back"]).success();

    let (_hub, _) = start_hub(&hub_env, &store, port);
    let local = local_seqs(&a_env, &a);
    assert!(local.len() >= 8, "{local:?}");
    let status = hub_status(&a_env, &a);
    assert!(
        eventually(Duration::from_secs(15), || hub_seqs(&url, &status).len() >= local.len()),
        "the outbox drains: hub has {:?}, sidecar {local:?}",
        hub_seqs(&url, &status)
    );
    let delivered = hub_seqs(&url, &status);
    assert_eq!(&delivered[..local.len()], &local[..], "in order, each once");
    let expected: Vec<u64> = (1..=delivered.len() as u64).collect();
    assert_eq!(delivered, expected, "no gap and no duplicate");
}

/// A 3-member etcd cluster on loopback.
struct Etcd {
    members: Vec<Spawned>,
    clients: Vec<String>,
}

fn etcd_cluster(env: &TestEnv) -> Option<Etcd> {
    if Command::new("etcd").arg("--version").output().is_err() {
        assert!(std::env::var_os("LANES_E2E_REQUIRED").is_none(), "etcd is required (apt-get install etcd-server)");
        eprintln!("skipping: etcd is not installed");
        return None;
    }
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let cluster: Vec<String> =
        ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect();
    let mut members = Vec::new();
    let mut clients = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let data = env.root().join(format!("etcd-{i}"));
        let child = Command::new("etcd")
            .args(["--name", &format!("m{i}"), "--data-dir", &data.to_string_lossy()])
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        members.push(Spawned { child });
        clients.push(format!("http://127.0.0.1:{client}"));
    }
    let healthy = |client: &String| {
        let address = client.trim_start_matches("http://");
        let Ok(mut stream) = std::net::TcpStream::connect(address) else { return false };
        let request = format!("GET /health HTTP/1.0\r\nHost: {address}\r\n\r\n");
        let mut answer = String::new();
        std::io::Write::write_all(&mut stream, request.as_bytes()).is_ok()
            && std::io::Read::read_to_string(&mut stream, &mut answer).is_ok()
            && answer.contains("\"health\":\"true\"")
    };
    assert!(eventually(Duration::from_secs(30), || clients.iter().all(healthy)), "etcd cluster did not come up");
    Some(Etcd { members, clients })
}

#[test]
fn hubs_on_a_three_member_etcd_cluster_share_claims_survive_a_member_and_fail_over() {
    let hub_env = TestEnv::new();
    let Some(mut etcd) = etcd_cluster(&hub_env) else { return };
    let upstream = hub_env.repo("upstream");
    let store = format!("etcd:{}", etcd.clients.join(","));
    let (mut hub1, url1) = start_hub(&hub_env, &store, free_port());
    let (_hub2, url2) = start_hub(&hub_env, &store, free_port());
    let (a_env, a) = machine(&upstream, "a", &[&url1, &url2], "");
    let (b_env, b) = machine(&upstream, "b", &[&url2, &url1], "");

    let granted = claim(&a_env, &a, "alice", "src/a.rs").success().json();
    assert!(granted["hub_epoch"].as_u64().is_some_and(|e| e > 0), "the epoch is an etcd revision: {granted}");
    let refused = claim(&b_env, &b, "bob", "src/").json();
    assert_eq!(refused["error"]["code"], "conflict", "a claim through hub 1 blocks one through hub 2: {refused}");

    // One member dies: the other two keep a quorum and grants go on, still exclusive.
    kill9(etcd.members[0].child.id());
    let _ = etcd.members[0].child.wait();
    assert!(
        eventually(Duration::from_secs(20), || claim(&b_env, &b, "bob", "docs/guide.md").code == 0),
        "grants go on with one member down"
    );
    assert_eq!(claim(&a_env, &a, "alice", "docs/").json()["error"]["code"], "conflict");
    let first = claim(&b_env, &b, "bob", "src/b.rs").success().json()["hub_epoch"].as_u64().expect("epoch");
    let second = claim(&b_env, &b, "bob", "docs/other.md").success().json()["hub_epoch"].as_u64().expect("epoch");
    assert!(second > first, "epochs only grow: {first} then {second}");

    // Hub 1 dies: alice's sidecar fails over to hub 2.
    hub1.kill();
    claim(&a_env, &a, "alice", "README.md").success();
    assert_eq!(hub_status(&a_env, &a)["connected"], url2.as_str());
    a_env.lanes(&a, &["--session", "alice", "release", "--all"]).success();
    let mut last = None;
    let freed = eventually(Duration::from_secs(10), || {
        let run = claim(&b_env, &b, "bob", "src/a.rs");
        let granted = run.code == 0;
        last = Some(run);
        granted
    });
    let logs: Vec<String> = std::fs::read_dir(hub_env.root())
        .expect("dir")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|text| text.contains("lanes_hub"))
        .collect();
    assert!(
        freed,
        "a release through hub 2 frees the path for bob: {last:?} {}\n{}",
        hub_status(&a_env, &a),
        logs.join("\n")
    );

    // Alice's events went through both hubs into etcd: all of them, in order, once.
    let local = local_seqs(&a_env, &a);
    let status = hub_status(&a_env, &a);
    assert!(
        eventually(Duration::from_secs(15), || hub_seqs(&url2, &status).len() >= local.len()),
        "the outbox drains into etcd"
    );
    let delivered = hub_seqs(&url2, &status);
    assert_eq!(&delivered[..local.len()], &local[..]);
    assert_eq!(delivered, (1..=delivered.len() as u64).collect::<Vec<_>>(), "no gap, no duplicate");
}

/// A release answered to its client is released at the hub too: another machine claims the path at once
/// (no waiting for a sync), through either of two hubs on one etcd, both ways round.
#[test]
fn a_release_frees_the_path_for_other_machines_at_once_through_either_hub() {
    let hub_env = TestEnv::new();
    let Some(etcd) = etcd_cluster(&hub_env) else { return };
    let upstream = hub_env.repo("upstream");
    let store = format!("etcd:{}", etcd.clients.join(","));
    let (_hub1, url1) = start_hub(&hub_env, &store, free_port());
    let (_hub2, url2) = start_hub(&hub_env, &store, free_port());
    let (a_env, a) = machine(&upstream, "a", &[&url1, &url2], "");
    let (b_env, b) = machine(&upstream, "b", &[&url2, &url1], "");
    let machines = [(&a_env, &a, "alice"), (&b_env, &b, "bob")];
    for round in 0..6 {
        let path = format!("src/shared{round}.rs");
        let (holder, taker) = if round % 2 == 0 { (machines[0], machines[1]) } else { (machines[1], machines[0]) };
        claim(holder.0, holder.1, holder.2, &path).success();
        assert_eq!(claim(taker.0, taker.1, taker.2, &path).code, 3, "round {round}: held on the other machine");
        let released =
            holder.0.lanes(holder.1, &["--session", holder.2, "--json", "release", "--all"]).success().json();
        assert_eq!(released["hub"], "released", "round {round}: {released}");
        let taken = claim(taker.0, taker.1, taker.2, &path);
        assert_eq!(taken.code, 0, "round {round}: the path was not free at once after the release: {taken:?}");
        taker.0.lanes(taker.1, &["--session", taker.2, "release", "--all"]).success();
    }
}

/// The sequence numbers of a sidecar's event log.
fn local_seqs(env: &TestEnv, repo: &Path) -> Vec<u64> {
    seqs_of(&env.lanes(repo, &["events", "--json"]).success().json())
}

/// The sequence numbers the hub holds from the sidecar whose `status.hub` this is.
fn hub_seqs(url: &str, hub_status: &Value) -> Vec<u64> {
    let params = json!({"project": hub_status["project"], "origin": hub_status["origin"]});
    hub_call(url, Some(TOKEN), "hub.events", params).map_or_else(|_| Vec::new(), |reply| seqs_of(&reply))
}

/// The sequence numbers of the events of a `hub.events` reply, or of `lanes events --json`.
fn seqs_of(reply: &Value) -> Vec<u64> {
    reply["events"].as_array().expect("events").iter().map(|e| e["seq"].as_u64().expect("seq")).collect()
}

/// A hub that lost its state (a fresh store behind the same address) lets another machine take a path; the
/// sidecar that held it learns so at its next sync and lets its claim go.
#[test]
fn a_claim_the_hub_gave_away_is_released_by_its_old_holder() {
    let hub_env = TestEnv::new();
    let upstream = hub_env.repo("upstream");
    let port = free_port();
    let (mut hub, url) = start_hub(&hub_env, &sqlite_store(&hub_env, "one.db"), port);
    let (a_env, a) = machine(&upstream, "a", &[&url], "");
    let (b_env, b) = machine(&upstream, "b", &[&url], "");
    claim(&a_env, &a, "alice", "src/a.rs").success();
    hub.kill();
    let (_hub, _) = start_hub(&hub_env, &sqlite_store(&hub_env, "two.db"), port);
    assert!(
        eventually(Duration::from_secs(10), || claim(&b_env, &b, "bob", "src/a.rs").code == 0),
        "the fresh hub knows nothing of alice's claim"
    );
    let claims = |env: &TestEnv, repo: &Path| env.lanes(repo, &["status", "--json"]).success().json()["claims"].clone();
    assert!(
        eventually(Duration::from_secs(15), || claims(&a_env, &a).as_array().is_some_and(Vec::is_empty)),
        "alice's sidecar lets the claim go: {}",
        claims(&a_env, &a)
    );
    let refused = claim(&a_env, &a, "alice", "src/a.rs").json();
    assert_eq!(refused["error"]["conflicts"][0]["session"], "bob", "{refused}");
    let why = "alice released neither: the hub gave the first away, and refused the second";
    assert_eq!(release_reasons(&a_env, &a), ["hub_refused", "hub_refused"], "{why}");
}

/// The reasons of the releases in a machine's event log, oldest first.
fn release_reasons(env: &TestEnv, repo: &Path) -> Vec<String> {
    let events = env.lanes(repo, &["events", "--json"]).success().json()["events"].clone();
    let releases = events.as_array().into_iter().flatten().filter(|e| e["kind"] == "release");
    releases.map(|e| e["data"]["reason"].as_str().unwrap_or_default().to_owned()).collect()
}

#[test]
fn with_a_hub_subagents_use_their_sessions_claims_and_check_and_wait_see_other_machines() {
    let hub_env = TestEnv::new();
    let upstream = hub_env.repo("upstream");
    let store = sqlite_store(&hub_env, "hub.db");
    let (_hub, url) = start_hub(&hub_env, &store, free_port());
    let (a_env, a) = machine(&upstream, "a", &[&url], "");
    let (b_env, b) = machine(&upstream, "b", &[&url], "");

    claim(&a_env, &a, "bob", "docs").success();
    let nested = claim(&a_env, &a, "bob/sub1", "docs/a.md");
    assert_eq!(nested.code, 0, "a subagent was refused its own session's claim: {nested:?}");
    claim(&a_env, &a, "bob/sub1", "src/x.rs").success();
    assert_eq!(claim(&a_env, &a, "bob/sub2", "src/x.rs").code, 3, "sibling subagents contend at the hub too");

    let check = b_env.lanes(&b, &["--session", "carol", "--json", "check", "docs/guide.md"]);
    assert_eq!(check.code, 3, "check on machine b says free for what machine a holds: {}", check.stdout);
    assert_eq!(check.json()["holders"][0]["session"], "bob", "{}", check.stdout);
    let wait = b_env.lanes(&b, &["--session", "carol", "--json", "wait", "docs/guide.md"]).success().json();
    assert_eq!(wait["waiting_for"][0]["session"], "bob", "{wait}");
    let status = b_env.lanes(&b, &["--json", "status"]).success().json();
    let remote = status["hub"]["claims"].as_array().cloned().unwrap_or_default();
    assert!(remote.iter().any(|c| c["holder"] == "bob"), "status on machine b does not show a's claims: {status}");
    assert!(b_env.lanes(&b, &["status"]).success().stdout.contains("bob holds docs"));
}

#[test]
fn a_hub_start_that_fails_makes_no_directories_and_leaves_no_database() {
    let env = TestEnv::new();
    let missing = env.root().join("no/such/dir/h.db");
    let store = format!("sqlite:{}", missing.display());
    let run = env.lanes(&env.root(), &["hub", "serve", "--listen", "127.0.0.1:0", "--store", &store]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    assert!(!env.root().join("no").exists(), "the hub made the directory tree");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = taken.local_addr().expect("addr").to_string();
    let db = env.root().join("h.db");
    let store = format!("sqlite:{}", db.display());
    let run = env.lanes(&env.root(), &["hub", "serve", "--listen", &listen, "--store", &store]);
    assert_ne!(run.code, 0, "the hub started on a port in use");
    assert!(!db.exists(), "a failed start left {} behind", db.display());
}

#[test]
fn pending_work_left_on_one_machine_holds_at_the_hub_for_the_others() {
    let hub_env = TestEnv::new();
    let upstream = hub_env.repo("upstream");
    let store = sqlite_store(&hub_env, "hub.db");
    let (_hub, url) = start_hub(&hub_env, &store, free_port());
    let (a_env, a) = machine(&upstream, "a", &[&url], "");
    let (b_env, b) = machine(&upstream, "b", &[&url], "");
    // A short lease: once it has run out at the hub, only the pending work the sidecar synced can refuse b.
    a_env.lanes(&a, &["--session", "alice", "claim", "src/shared.rs", "--ttl", "3s"]).success();
    // The control: a path alice claimed and did not change is free at the hub once she ends.
    a_env.lanes(&a, &["--session", "alice", "claim", "src/untouched.rs", "--ttl", "3s"]).success();
    std::fs::write(a.join("src/shared.rs"), "alice's uncommitted work\n").expect("write");
    let (socket, _) = a_env.start_sidecar(&a);
    let ended = crate::common::Wire::connect(&socket).call("session.end", json!({"session": "alice"}));
    assert!(ended["result"].is_object(), "{ended}");
    let status = a_env.lanes(&a, &["--json", "status"]).success().json();
    let claims = status["claims"].as_array().expect("claims");
    assert_eq!(claims.len(), 1, "{status}");
    assert_eq!(claims[0]["pending"], true, "{status}");
    std::thread::sleep(Duration::from_secs(5));
    let refused = claim(&b_env, &b, "bob", "src/shared.rs");
    assert_eq!(refused.code, 3, "another machine took alice's pending work: {}", refused.stdout);
    claim(&b_env, &b, "bob", "src/untouched.rs").success();
}

/// `lanes send` reaches a session of another machine through the hub, once, redacted; `@all` reaches every
/// machine; a session no machine has is refused naming it. On SQLite and on a real etcd cluster.
#[test]
fn a_message_reaches_a_session_on_another_machine_through_sqlite_and_etcd_hubs() {
    let hub_env = TestEnv::new();
    let upstream = hub_env.repo("upstream");
    let sqlite = sqlite_store(&hub_env, "hub.db");
    let (_sqlite_hub, sqlite_url) = start_hub(&hub_env, &sqlite, free_port());
    messages_cross_machines(&upstream, &[&sqlite_url]);
    let Some(etcd) = etcd_cluster(&hub_env) else { return };
    let store = format!("etcd:{}", etcd.clients.join(","));
    let (_hub1, url1) = start_hub(&hub_env, &store, free_port());
    let (_hub2, url2) = start_hub(&hub_env, &store, free_port());
    messages_cross_machines(&upstream, &[&url1, &url2]);
}

fn messages_cross_machines(upstream: &Path, urls: &[&str]) {
    let (a_env, a) = machine(upstream, "a", urls, "");
    let b_urls: Vec<&str> = urls.iter().rev().copied().collect();
    let (b_env, b) = machine(upstream, "b", &b_urls, "");
    claim(&a_env, &a, "alice", "src/a.rs").success();
    claim(&b_env, &b, "carol", "src/b.rs").success();

    let unknown = a_env.lanes(&a, &["--session", "alice", "--json", "send", "nobody", "hi"]);
    assert_eq!(unknown.json()["error"]["code"], "not_found", "{unknown:?}");
    assert!(unknown.json()["error"]["message"].as_str().is_some_and(|m| m.contains("no session nobody")));

    // carol is known at the hub once b's sidecar has said so (within its sync round).
    let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyz";
    let text = format!("carol, I need src/b.rs after you; token {secret}");
    let mut last = None;
    let sent = eventually(Duration::from_secs(20), || {
        let run = a_env.lanes(&a, &["--session", "alice", "--json", "send", "carol", &text]);
        let ok = run.code == 0;
        last = Some(run);
        ok
    });
    assert!(sent, "a message to a session of another machine was refused: {last:?}");
    assert_eq!(last.expect("sent").json()["messages"][0]["to"], "carol");

    let mut inbox = Vec::new();
    let arrived = eventually(Duration::from_secs(20), || {
        let run = b_env.lanes(&b, &["--session", "carol", "--json", "inbox"]).success().json();
        inbox.extend(run["messages"].as_array().cloned().unwrap_or_default());
        !inbox.is_empty()
    });
    assert!(arrived, "the message never reached carol on machine b");
    assert_eq!(inbox.len(), 1, "delivered once: {inbox:?}");
    assert_eq!(inbox[0]["from"], "alice");
    let got = inbox[0]["text"].as_str().expect("text");
    assert!(got.starts_with("carol, I need src/b.rs") && !got.contains(secret), "{got}");

    let all = a_env.lanes(&a, &["--session", "alice", "--json", "send", "@all", "main is green"]).success().json();
    let reached: Vec<&str> =
        all["messages"].as_array().expect("messages").iter().filter_map(|m| m["to"].as_str()).collect();
    assert_eq!(reached, ["carol"], "{all}");
    let arrived = eventually(Duration::from_secs(20), || {
        let run = b_env.lanes(&b, &["--session", "carol", "--json", "inbox"]).success().json();
        run["messages"][0]["text"] == "main is green"
    });
    assert!(arrived, "a message to @all never reached machine b");
    // Nothing comes twice: what arrives before a later message is that message alone (mail keeps its order).
    a_env.lanes(&a, &["--session", "alice", "send", "carol", "last one"]).success();
    let mut later = Vec::new();
    let arrived = eventually(Duration::from_secs(20), || {
        let run = b_env.lanes(&b, &["--session", "carol", "--json", "inbox"]).success().json();
        later.extend(
            run["messages"].as_array().into_iter().flatten().filter_map(|m| m["text"].as_str().map(str::to_owned)),
        );
        !later.is_empty()
    });
    assert!(arrived, "the last message never reached machine b");
    assert_eq!(later, ["last one"], "a message came twice");
}

/// An etcd hub knows which sessions have mail from a watch, not by asking etcd each time: mail left through
/// another hub before this one started, and mail left while it runs, is handed out once each.
#[test]
fn mail_left_through_one_etcd_hub_is_taken_through_another_once() {
    let hub_env = TestEnv::new();
    let Some(etcd) = etcd_cluster(&hub_env) else { return };
    let store = format!("etcd:{}", etcd.clients.join(","));
    let (_hub1, url1) = start_hub(&hub_env, &store, free_port());
    let mail = |url: &str, session: &str| -> Vec<String> {
        let params = json!({"project": "p", "origin": "m2", "sessions": [session], "present": true});
        let reply = hub_call(url, Some(TOKEN), "hub.mail", params).expect("hub.mail");
        reply["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect()
    };
    let send = |id: u64, text: &str| {
        let message =
            json!({"id": id, "from": "alice", "to": "carol", "text": text, "sent_at": "2026-12-06T00:00:00Z"});
        hub_call(&url1, Some(TOKEN), "hub.send", json!({"project": "p", "origin": "m1", "message": message}))
            .expect("hub.send");
    };
    assert!(mail(&url1, "carol").is_empty(), "carol is live on m2, with no mail yet");
    send(1, "left before the second hub started");
    let (_hub2, url2) = start_hub(&hub_env, &store, free_port());
    // The second hub's first question sets its index up from the mail keys there are; the next one asks it.
    assert!(mail(&url2, "dave").is_empty());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(mail(&url2, "carol"), ["left before the second hub started"]);
    for (id, text) in [(2, "left while both run"), (3, "and another after that")] {
        send(id, text);
        let mut got = Vec::new();
        let arrived = eventually(Duration::from_secs(5), || {
            got.extend(mail(&url2, "carol"));
            !got.is_empty()
        });
        assert!(arrived, "{text:?} never reached the second hub's answer");
        std::thread::sleep(Duration::from_millis(300));
        got.extend(mail(&url2, "carol"));
        got.extend(mail(&url1, "carol"));
        assert_eq!(got, [text], "handed out once");
    }
}

/// A `hub.acquire` of one claim, as a sidecar with `origin` would send it.
fn acquire_params(project: &str, origin: &str, scope: &str, ttl_secs: u64) -> Value {
    json!({"project": project, "origin": origin,
        "claim": {"id": 1, "holder": format!("{origin}-session"), "scopes": [scope], "ttl_secs": ttl_secs}})
}

/// The claims a hub lists for `project`, as (origin, scopes).
fn hub_claims(url: &str, project: &str) -> Vec<(String, Value)> {
    let listed = hub_call(url, Some(TOKEN), "hub.claims", json!({"project": project})).expect("hub.claims");
    listed["claims"]
        .as_array()
        .expect("claims")
        .iter()
        .map(|c| (c["origin"].to_string(), c["scopes"].clone()))
        .collect()
}

/// Two hubs on one etcd decide overlapping claims together: of sixteen sidecars racing through both hubs for
/// scopes that all overlap (a directory, a file in it, a glob), exactly one wins each round and every other is
/// told `conflict` (the Txn's guard keys, and
/// the retry from a fresh read when the other hub's grant has not reached this hub's view yet); both hubs then
/// list that one claim. A claim whose hub was killed ends when its etcd lease does.
#[test]
fn two_hubs_on_one_etcd_grant_each_overlap_once_and_claims_end_with_their_lease() {
    let hub_env = TestEnv::new();
    let Some(etcd) = etcd_cluster(&hub_env) else { return };
    let store = format!("etcd:{}", etcd.clients.join(","));
    let (mut hub1, url1) = start_hub(&hub_env, &store, free_port());
    let (_hub2, url2) = start_hub(&hub_env, &store, free_port());
    let urls = [url1.clone(), url2.clone()];

    for round in 0..8 {
        let project = format!("race-{round}");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
        let racers: Vec<_> = (0..16)
            .map(|racer: usize| {
                let (url, barrier, project) = (urls[racer % 2].clone(), barrier.clone(), project.clone());
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
                    runtime.block_on(async {
                        let client = hub_client(&url, Some(TOKEN)).await.expect("ws");
                        // A directory, a file in it, and a glob from the top: guard keys at three depths.
                        let scope = match racer % 5 {
                            0 | 3 => "src",
                            1 => "**/a.rs",
                            _ => "src/a.rs",
                        };
                        let params = acquire_params(&project, &format!("m{racer}"), scope, 60);
                        barrier.wait();
                        let params = params.as_object().cloned().unwrap_or_default();
                        client.request::<Value, _>("hub.acquire", params).await.map_err(|e| e.to_string())
                    })
                })
            })
            .collect();
        let answers: Vec<Result<Value, String>> = racers.into_iter().map(|r| r.join().expect("racer")).collect();
        let granted = answers.iter().filter(|a| a.is_ok()).count();
        let winners: Vec<&Value> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
        assert_eq!(granted, 1, "round {round}: {granted} grants for overlapping scopes: {winners:?}");
        for refused in answers.iter().filter_map(|a| a.as_ref().err()) {
            assert!(refused.contains(r#""code":"conflict""#), "round {round}: a loser not told conflict: {refused}");
        }
        for url in &urls {
            assert!(
                eventually(Duration::from_secs(10), || hub_claims(url, &project).len() == 1),
                "round {round}: {url} lists {:?}",
                hub_claims(url, &project)
            );
        }
    }

    // A claim through hub 1 with a 2 s lease; hub 1 dies, so nothing renews or releases it.
    hub_call(&url1, Some(TOKEN), "hub.acquire", acquire_params("lease", "gone", "docs", 2)).expect("grant");
    hub1.kill();
    let refused = hub_call(&url2, Some(TOKEN), "hub.acquire", acquire_params("lease", "next", "docs/guide.md", 60));
    assert!(refused.is_err(), "the live lease did not hold: {refused:?}");
    let freed = eventually(Duration::from_secs(20), || {
        hub_call(&url2, Some(TOKEN), "hub.acquire", acquire_params("lease", "next", "docs/guide.md", 60)).is_ok()
    });
    assert!(freed, "the claim outlived its etcd lease: {:?}", hub_claims(&url2, "lease"));
    assert_eq!(hub_claims(&url2, "lease").len(), 1, "the expired claim is still listed");
}

/// The hub keeps the newest `KEPT_EVENTS` of each sidecar, on either store: a team's log, pushed all day,
/// does not fill the store (a full etcd refuses grants too); the cursor still says where the sidecar is.
#[test]
fn the_hub_keeps_only_the_newest_events_of_each_sidecar_on_sqlite_and_etcd() {
    let hub_env = TestEnv::new();
    let etcd = etcd_cluster(&hub_env);
    let mut stores = vec![sqlite_store(&hub_env, "events.db")];
    stores.extend(etcd.iter().map(|etcd| format!("etcd:{}", etcd.clients.join(","))));
    let kept = lanes_hub::KEPT_EVENTS;
    let pushed = kept + 250;
    for store in stores {
        let (_hub, url) = start_hub(&hub_env, &store, free_port());
        for first in (1..=pushed).step_by(lanes_hub::MAX_PUSH) {
            let events: Vec<Value> = (first..(first + lanes_hub::MAX_PUSH as u64).min(pushed + 1))
                .map(|seq| {
                    json!({"seq": seq, "at": "2026-12-03T00:00:00Z", "kind": "grant", "session": "s",
                    "claim": seq, "data": {}})
                })
                .collect();
            let params = json!({"project": "p", "origin": "m1", "after": first - 1, "events": events});
            let cursor = hub_call(&url, Some(TOKEN), "hub.push", params).expect("push");
            assert_eq!(cursor["cursor"], first + events.len() as u64 - 1, "{store}: pushed in order");
        }
        let params = json!({"project": "p", "origin": "m1", "after": 0, "limit": 5});
        let reply = hub_call(&url, Some(TOKEN), "hub.events", params).expect("events");
        let seqs = seqs_of(&reply);
        let oldest = pushed - kept + 1;
        assert_eq!(seqs, (oldest..oldest + 5).collect::<Vec<_>>(), "{store}: the oldest events are gone");
        assert_eq!(reply["cursor"], pushed, "{store}: the cursor is the last event pushed");
        // On etcd a push is one key: 2,000 events from the middle of one span more keys than one read takes.
        let params = json!({"project": "p", "origin": "m1", "after": oldest + 9, "limit": 2000});
        let reply = hub_call(&url, Some(TOKEN), "hub.events", params).expect("events");
        let seqs = seqs_of(&reply);
        assert_eq!(seqs, (oldest + 10..oldest + 2010).collect::<Vec<_>>(), "{store}: a long read, in order");
        let params = json!({"project": "p", "origin": "m1", "after": pushed - 2});
        let reply = hub_call(&url, Some(TOKEN), "hub.events", params).expect("events");
        assert_eq!(reply["events"].as_array().map(Vec::len), Some(2), "{store}: the newest are all there");
    }
}
