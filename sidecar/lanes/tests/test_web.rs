//! The web view in a real browser: headless Chromium (Debian's `chromium`) driven over the DevTools
//! protocol loads the hub's page (through its login form) and `lanes web`'s, finds a claim made a moment
//! before in the DOM, takes a screenshot, and sees a claim made afterwards appear without a reload; without
//! the token the page and the API answer 401.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{TestEnv, eventually};
use crate::test_hub::{TOKEN, free_port, machine, sqlite_store, start_hub};

/// A Chromium process group, killed (-9, every process of it: Chromium forks its renderers) when dropped,
/// also when the test fails half-way through its launch.
struct Chromium(Child);

impl Drop for Chromium {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-9", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// Headless Chromium with a DevTools connection to its one page.
struct Browser {
    _chromium: Chromium,
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium, or `None` (skip) when it is missing and the suite does not require it.
    fn launch(profile: &Path) -> Option<Browser> {
        use std::os::unix::process::CommandExt;
        let program = std::env::var_os("LANES_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "chromium".into());
        let spawned = Command::new(&program)
            .process_group(0)
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check"])
            .args(["--remote-debugging-port=0", "--window-size=1200,900"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let chromium = match spawned {
            Ok(child) => Chromium(child),
            Err(e) => {
                assert!(
                    std::env::var_os("LANES_E2E_REQUIRED").is_none(),
                    "{} cannot start ({e}); tests/run-all.sh installs Debian's chromium",
                    program.display()
                );
                eprintln!("skipped: no chromium ({e})");
                return None;
            }
        };
        let port_file = profile.join("DevToolsActivePort");
        assert!(eventually(Duration::from_secs(30), || port_file.exists()), "chromium did not open DevTools");
        let mut port = String::new();
        assert!(eventually(Duration::from_secs(5), || {
            port = std::fs::read_to_string(&port_file).unwrap_or_default();
            port.lines().count() >= 2
        }));
        let port: u16 = port.lines().next().and_then(|p| p.trim().parse().ok()).expect("DevTools port");
        let (_, body) = get(port, "/json/list", None);
        let targets: Value = serde_json::from_str(&body).expect("targets");
        let page = targets.as_array().into_iter().flatten().find(|t| t["type"] == "page").expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().expect("debugger url");
        let (socket, _) = tungstenite::connect(url).expect("DevTools connection");
        Some(Browser { _chromium: chromium, socket, next_id: 1 })
    }

    /// One DevTools command; events that arrive meanwhile are skipped.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let command = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(tungstenite::Message::text(command)).expect("send to DevTools");
        loop {
            let message = self.socket.read().expect("read from DevTools");
            let Ok(text) = message.to_text() else { continue };
            let reply: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true}))["result"]["value"]
            .clone()
    }

    /// The text of the table `id` (empty until the page has drawn it).
    fn table(&mut self, id: &str) -> String {
        self.eval(&format!("document.getElementById('{id}')?.innerText ?? ''")).as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the table `id` shows `text`; returns how long that took.
    fn wait_for(&mut self, id: &str, text: &str, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.table(id).contains(text) {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A PNG screenshot of the page, written to `path`.
    fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png =
            base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().expect("data")).expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

/// One HTTP/1.1 exchange with 127.0.0.1:`port`: the status line's code and the body.
fn http(port: u16, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (code, body)
}

pub(crate) fn get(port: u16, path: &str, auth: Option<&str>) -> (u16, String) {
    let auth = auth.map(|a| format!("{a}\r\n")).unwrap_or_default();
    http(port, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{auth}\r\n"))
}

fn claim(env: &TestEnv, repo: &Path, session: &str, path: &str) {
    env.lanes(repo, &["--session", session, "claim", path]).success();
}

/// Asserts a claim made now (`claim`) shows on the open page without a reload, within a second; returns
/// how long it took.
fn appears_live(browser: &mut Browser, claim: impl FnOnce(), text: &str) -> Duration {
    browser.eval("window.stillTheSamePage = true");
    let started = Instant::now();
    claim();
    let shown = browser.wait_for("claims", text, Duration::from_secs(5)).map(|_| started.elapsed());
    let shown = shown.unwrap_or_else(|| panic!("{text} did not appear: {}", browser.table("claims")));
    assert_eq!(browser.eval("window.stillTheSamePage === true"), json!(true), "the page was reloaded");
    assert_eq!(browser.eval("document.getElementById('status').className"), json!("live"), "the page says it is live");
    assert!(shown <= Duration::from_secs(1), "{text} took {shown:?} to appear");
    shown
}

#[test]
fn the_hub_web_view_shows_claims_live_in_a_real_browser_behind_its_token() {
    let hub_env = TestEnv::new();
    let upstream = hub_env.repo("upstream");
    let store = sqlite_store(&hub_env, "hub.db");
    let port = free_port();
    let (_hub, url) = start_hub(&hub_env, &store, port);
    let (a_env, a) = machine(&upstream, "a", &[&url], "");
    let (b_env, b) = machine(&upstream, "b", &[&url], "");
    let (socket, _) = a_env.start_sidecar(&a);
    crate::common::Wire::connect(&socket)
        .call("session.start", json!({"session": "alice", "worktree": a.to_string_lossy(), "client": "codex"}));
    claim(&a_env, &a, "alice", "src/a.rs");

    // Without the token: the page is the login form, the API a bare 401; with it, the view.
    let (code, body) = get(port, "/", None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("<form") && !body.contains(TOKEN), "{body}");
    assert_eq!(get(port, "/api/view", None).0, 401);
    assert_eq!(get(port, "/api/view", Some("Authorization: Bearer wrong")).0, 401);
    let (code, body) = get(port, "/api/view", Some(&format!("Authorization: Bearer {TOKEN}")));
    assert_eq!(code, 200, "{body}");
    let view: Value = serde_json::from_str(&body).expect("view JSON");
    assert!(view["claims"].to_string().contains("src/a.rs"), "{view}");
    assert!(view["machines"].as_array().is_some_and(|m| !m.is_empty()), "the machine is listed: {view}");
    let figures = &view["figures"][0];
    assert!(figures["claims"] == 1 && figures["sidecars"] == 1, "the project's figures: {view}");
    assert!(figures["grants_per_s"].as_f64().is_some_and(|g| g > 0.0), "{view}");
    assert!(figures["decision_p99_ms"].as_f64().is_some_and(|d| d > 0.0), "{view}");
    // The session as its sidecar described it: which agent CLI, on which machine.
    let described = eventually(Duration::from_secs(5), || {
        let (_, body) = get(port, "/api/view", Some(&format!("Authorization: Bearer {TOKEN}")));
        let view: Value = serde_json::from_str(&body).unwrap_or_default();
        view["sessions"].as_array().is_some_and(|s| s.iter().any(|s| s["id"] == "alice" && s["client"] == "codex"))
    });
    let bearer = format!("Authorization: Bearer {TOKEN}");
    assert!(described, "alice is not listed with her client: {}", get(port, "/api/view", Some(&bearer)).1);

    let Some(mut browser) = Browser::launch(&hub_env.root().join("chromium")) else { return };
    let page = format!("http://127.0.0.1:{port}/");
    browser.navigate(&page);
    let form = eventually(Duration::from_secs(10), || browser.eval("!!document.forms[0]") == json!(true));
    assert!(form, "no login form");
    browser.eval(&format!("document.querySelector('input[name=token]').value = '{TOKEN}'; document.forms[0].submit()"));
    let shown = browser.wait_for("claims", "src/a.rs", Duration::from_secs(10));
    assert!(shown.is_some(), "the claim made before is not on the page: {}", browser.eval("document.body.innerText"));
    assert!(browser.table("claims").contains("alice"), "{}", browser.table("claims"));
    assert!(browser.table("sessions").contains("codex"), "{}", browser.table("sessions"));
    assert!(browser.table("figures").contains("sqlite"), "the project's figures: {}", browser.table("figures"));
    browser.screenshot(&hub_env.root().join("hub-view.png"));
    let took = appears_live(&mut browser, || claim(&b_env, &b, "bob", "src/b.rs"), "src/b.rs");
    eprintln!("a claim on another machine appeared on the hub's page {took:?} after it was answered");

    // What the hub shows of a machine beside its sessions: its task board, its landing queue, and a claim
    // whose holder ended before the change it protects landed (pending work, in its worktree).
    a_env.lanes(&a, &["task", "add", "Write the parser"]).success();
    // The task's event reaches the hub with a's next push; a claim on b a second later is noted at once: the
    // page still lists them by when they happened.
    std::thread::sleep(Duration::from_millis(1100));
    claim(&b_env, &b, "bob", "src/later.rs");
    // A claim the hub refuses is granted and taken back on b: its event says so.
    assert_eq!(b_env.lanes(&b, &["--session", "bob", "claim", "src/a.rs"]).code, 3, "alice holds src/a.rs");
    let tree = a_env.worktree(&a, "feat");
    std::fs::write(tree.join("feat.rs"), "fn feat() {}\n").expect("write");
    a_env.git(&tree, &["add", "-A"]);
    a_env.git(&tree, &["commit", "-q", "-m", "feat"]);
    a_env.lanes(&a, &["land", "feat"]).success();
    std::fs::create_dir_all(a.join("src")).expect("mkdir");
    std::fs::write(a.join("src/a.rs"), "changed, not committed\n").expect("write");
    let ended = crate::common::Wire::connect(&socket).call("session.end", json!({"session": "alice"}));
    assert!(ended["result"].is_object(), "{ended}");
    let shown = [
        ("tasks", "Write the parser"),
        ("queue", "feat → main"),
        ("claims", "pending work on main"),
        ("events", "src/later.rs"),
        ("events", "src/a.rs (hub refused)"),
        ("events", "src/a.rs (taken back: the hub refused it)"),
    ];
    for (table, text) in shown {
        let shown = browser.wait_for(table, text, Duration::from_secs(5));
        assert!(shown.is_some(), "{text:?} is not on the hub's page: {}", browser.table(table));
    }
    let pending_row = browser
        .eval("[...document.querySelectorAll('#claims tr')].find(r => r.innerText.includes('pending')).innerText");
    assert!(pending_row.to_string().contains(&*a.to_string_lossy()), "the pending work's worktree: {pending_row}");
    // Each grant shows once in the event stream: the hub's note of it gives way to the sidecar's own record.
    let (_, body) = get(port, "/api/view", Some(&bearer));
    let view: Value = serde_json::from_str(&body).expect("view JSON");
    let grants: Vec<(String, u64)> = view["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "grant")
        .map(|e| (e["machine"].as_str().unwrap_or_default().to_owned(), e["claim"].as_u64().unwrap_or_default()))
        .collect();
    let mut once = grants.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), grants.len(), "a grant is shown twice: {}", view["events"]);
    assert!(grants.len() >= 2, "the grants of both machines are shown: {}", view["events"]);
    let times: Vec<&str> = view["events"].as_array().into_iter().flatten().filter_map(|e| e["at"].as_str()).collect();
    assert!(times.is_sorted_by(|a, b| a >= b), "events are newest first by when they happened: {times:?}");
    let logged: Vec<(&Value, &Value, u64)> = view["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((&e["at"], &e["machine"], e["seq"].as_u64()?)))
        .collect();
    let in_order = logged.windows(2).all(|w| w[0].0 != w[1].0 || w[0].1 != w[1].1 || w[0].2 > w[1].2);
    assert!(in_order, "within a second, a machine's events are newest logged first: {logged:?}");
}

#[test]
fn lanes_web_shows_one_repository_live_in_a_real_browser() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    claim(&env, &repo, "alice", "src/a.rs");
    let mut web = env.lanes_command(&repo, &["--json", "web"]);
    let mut child = web.stdout(Stdio::piped()).spawn().expect("lanes web");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line)
        .expect("lanes web output");
    let _web = crate::test_hub::Spawned::from(child);
    let url: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let url = url["url"].as_str().expect("url").to_owned();
    let Some(mut browser) = Browser::launch(&env.root().join("chromium")) else { return };
    browser.navigate(&url);
    let shown = browser.wait_for("claims", "src/a.rs", Duration::from_secs(10));
    assert!(shown.is_some(), "the claim is not on the page: {}", browser.eval("document.body.innerText"));
    assert!(browser.table("sessions").contains("alice"), "{}", browser.table("sessions"));
    assert!(browser.table("queue").contains("none"), "the landing queue is shown: {}", browser.table("queue"));
    browser.screenshot(&env.root().join("web-view.png"));
    let took = appears_live(&mut browser, || claim(&env, &repo, "bob", "src/b.rs"), "src/b.rs");
    eprintln!("a claim appeared on lanes web's page {took:?} after it was answered");
    // A branch queued for landing shows in the queue, with its state, while its (slow) tests run.
    let tree = env.worktree(&repo, "feat");
    std::fs::write(tree.join("src/feat.rs"), "fn feat() {}\n").expect("write");
    env.git(&tree, &["add", "-A"]);
    env.git(&tree, &["commit", "-q", "-m", "feat"]);
    env.lanes(&repo, &["land", "feat", "--test", "sleep 3"]).success();
    let queued = browser.wait_for("queue", "feat → main", Duration::from_secs(5));
    assert!(queued.is_some(), "the queued branch is not on the page: {}", browser.table("queue"));
}
